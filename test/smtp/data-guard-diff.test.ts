/*
 * The data guard scans line by line with Buffer.indexOf; this checks it against the plain per-byte
 * definition (below) on random messages made of the bytes that matter (CR, LF, NUL, dots, letters) and long
 * lines, each split into random chunks: same verdict, same byte count, same stored body.
 */
import { describe, expect, it } from 'vitest';
import { DataGuard, type GuardFault } from '../../src/smtp/data-guard.js';

/** The definition: one byte at a time; the size limit is checked as each chunk arrives (as the guard does). */
function reference(chunks: Buffer[], maxBytes: number, maxLine: number): GuardFault | null {
  let seen = 0;
  let pendingCr = false;
  let line = 0;
  for (const chunk of chunks) {
    seen += chunk.length;
    if (seen > maxBytes) return 'too_big';
    for (const b of chunk) {
      if (pendingCr) {
        pendingCr = false;
        if (b !== 0x0a) return 'bare_cr';
        line = 0;
        continue;
      }
      if (b === 0x0d) pendingCr = true;
      else if (b === 0x0a) return 'bare_lf';
      else if (b === 0x00) return 'nul';
      else if (++line > maxLine) return 'line_too_long';
    }
  }
  return pendingCr ? 'bare_cr' : null;
}

/** Small deterministic PRNG so a failure can be reproduced from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomMessage(r: () => number, maxLine: number): Buffer {
  const parts: Buffer[] = [];
  const lines = 1 + Math.floor(r() * 12);
  for (let i = 0; i < lines; i++) {
    const long = r() < 0.15;
    const n = long ? maxLine - 2 + Math.floor(r() * 5) : Math.floor(r() * 20);
    parts.push(Buffer.alloc(n, 'a'.charCodeAt(0) + Math.floor(r() * 26)));
    const roll = r();
    if (roll < 0.04) parts.push(Buffer.from([0x00]));
    else if (roll < 0.08) parts.push(Buffer.from([0x0a]));
    else if (roll < 0.12) parts.push(Buffer.from([0x0d, 0x78]));
    else if (roll < 0.14) parts.push(Buffer.from([0x0d]));
    if (r() < 0.9 || i < lines - 1) parts.push(Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

describe('data guard scan', () => {
  it('agrees with the per-byte definition on random messages and chunkings', () => {
    const maxLine = 40;
    let faults = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const r = rng(seed);
      const data = randomMessage(r, maxLine);
      const maxBytes = r() < 0.1 ? Math.floor(data.length / 2) + 1 : 1 << 20;
      const g = new DataGuard(maxBytes, maxLine);
      const chunks: Buffer[] = [];
      for (let p = 0; p < data.length; ) {
        const n = 1 + Math.floor(r() * (r() < 0.3 ? 3 : 60));
        chunks.push(data.subarray(p, p + n));
        p += n;
      }
      for (const c of chunks) g.write(c);
      const v = g.end();
      const want = reference(chunks, maxBytes, maxLine);
      expect({ seed, fault: v.fault }).toEqual({ seed, fault: want });
      expect(v.bytes).toBe(data.length);
      if (want === null) expect(g.body().equals(data)).toBe(true);
      else faults++;
    }
    expect(faults).toBeGreaterThan(300); // the generator does exercise every fault
  });

  it('finds each kind of fault at a chunk boundary', () => {
    const cases: Array<[string[], GuardFault | null]> = [
      [['abc\r', '\ndef\r\n'], null],
      [['abc\r', 'x\r\n'], 'bare_cr'],
      [['abc', '\n'], 'bare_lf'],
      [['abc\r'], 'bare_cr'],
      [['ab', '\0\r\n'], 'nul'],
      [['x'.repeat(998), '\r\n'], null],
      [['x'.repeat(998), 'y\r\n'], 'line_too_long'],
      [['x'.repeat(500), 'x'.repeat(499), '\r\n'], 'line_too_long'],
    ];
    for (const [chunks, fault] of cases) {
      const g = new DataGuard(1 << 20);
      for (const c of chunks) g.write(Buffer.from(c, 'latin1'));
      expect(g.end().fault).toBe(fault);
    }
  });
});
