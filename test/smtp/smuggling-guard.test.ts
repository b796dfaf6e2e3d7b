/*
 * Unit tests of the DATA guard: bare CR / bare LF in every position and across chunk boundaries, NUL,
 * line length, size, and that an honest message comes out byte for byte.
 */
import { describe, expect, it } from 'vitest';
import { DataGuard, MAX_LINE_OCTETS, checkData } from '../../src/smtp/data-guard.js';

function feedSplit(data: Buffer, at: number[], max = 1 << 20) {
  const g = new DataGuard(max);
  let last = 0;
  for (const i of [...at, data.length]) {
    g.write(data.subarray(last, i));
    last = i;
  }
  return { verdict: g.end(), body: g.body() };
}

describe('data guard', () => {
  const honest = Buffer.from('Subject: x\r\n\r\nline one\r\n.\r\nline three\r\n');

  it('passes an honest CRLF message unchanged, however it is chunked', () => {
    for (let i = 0; i <= honest.length; i++) {
      const { verdict, body } = feedSplit(honest, [i]);
      expect(verdict.ok).toBe(true);
      expect(body.equals(honest)).toBe(true);
    }
  });

  it.each([
    ['\n.\n', 'bare_lf'],
    ['\n.\r\n', 'bare_lf'],
    ['\r.\r\n', 'bare_cr'],
    ['\r\n.\r', 'bare_cr'],
    ['\r\n.\n', 'bare_lf'],
    ['\r\r\n', 'bare_cr'],
    ['\n', 'bare_lf'],
  ])('refuses %j inside the body, at every chunk boundary', (seq, fault) => {
    const data = Buffer.from(`Subject: x\r\n\r\nbefore${seq}MAIL FROM:<e@example.org>\r\nafter\r\n`);
    for (let i = 0; i <= data.length; i++) {
      const { verdict } = feedSplit(data, [i]);
      expect(verdict.ok).toBe(false);
      expect(verdict.fault).toBe(fault);
    }
  });

  it('refuses a CR as the very last byte', () => {
    expect(checkData(Buffer.from('a\r\nb\r'), 1000).fault).toBe('bare_cr');
  });

  it('refuses NUL bytes', () => {
    expect(checkData(Buffer.from('a\r\nb\0c\r\n'), 1000).fault).toBe('nul');
  });

  it('allows 998 octets per line and refuses 999', () => {
    expect(checkData(Buffer.from(`${'a'.repeat(MAX_LINE_OCTETS)}\r\n`), 1 << 20).ok).toBe(true);
    expect(checkData(Buffer.from(`${'a'.repeat(MAX_LINE_OCTETS + 1)}\r\n`), 1 << 20).fault).toBe('line_too_long');
    const split = Buffer.from(`x\r\n${'b'.repeat(MAX_LINE_OCTETS + 1)}\r\n`);
    expect(feedSplit(split, [500, 900]).verdict.fault).toBe('line_too_long');
  });

  it('refuses more than the size limit and stops keeping bytes', () => {
    const g = new DataGuard(10);
    g.write(Buffer.from('12345\r\n'));
    g.write(Buffer.from('67890\r\n'));
    const v = g.end();
    expect(v.fault).toBe('too_big');
    expect(v.bytes).toBe(14);
    expect(g.body().length).toBe(0);
  });

  it('accepts an empty message', () => {
    expect(checkData(Buffer.alloc(0), 10).ok).toBe(true);
  });
});
