// When an upload's writes go inline (event loop) or through the thread pool again: inlinePause, table-tested.
import { describe, expect, it } from 'vitest';
import { inlinePause } from '../../src/ftp/jail-fs.js';

const MiB = 1024 * 1024;

describe('inlinePause: a slow inline write sends every upload through the pool for 10 s', () => {
  const cases: [string, { now: number; ms: number; bytes: number; after: number }, number][] = [
    ['a fast 1 MiB write changes nothing', { now: 1000, ms: 0.4, bytes: MiB, after: 0 }, 0],
    ['4 ms for 1 MiB is still fine', { now: 1000, ms: 4, bytes: MiB, after: 0 }, 0],
    ['a 1 MiB write over 4 ms pauses inline writes until now + 10 s', { now: 1000, ms: 4.5, bytes: MiB, after: 0 }, 11_000],
    ['a small write is allowed the time of 1 MiB', { now: 1000, ms: 3, bytes: 16 * 1024, after: 0 }, 0],
    ['a small write slower than that pauses', { now: 1000, ms: 5, bytes: 16 * 1024, after: 0 }, 11_000],
    ['3 MiB in 10 ms (3.3 ms per MiB) is fine', { now: 1000, ms: 10, bytes: 3 * MiB, after: 0 }, 0],
    ['3 MiB in 13 ms pauses', { now: 1000, ms: 13, bytes: 3 * MiB, after: 0 }, 11_000],
    ['a pause already running further is kept', { now: 1000, ms: 50, bytes: MiB, after: 20_000 }, 20_000],
    ['a fast write does not end a pause', { now: 1000, ms: 0.2, bytes: MiB, after: 5000 }, 5000],
  ];
  for (const [name, f, want] of cases) {
    it(name, () => {
      expect(inlinePause(f.now, f.ms, f.bytes, f.after)).toBe(want);
    });
  }
});
