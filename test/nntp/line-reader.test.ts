/* The bounded line reader: splitting, limits, overflow recovery, clearing. */
import { describe, expect, it } from 'vitest';
import { LineReader, type LineResult } from '../../src/net/line-reader.js';

function drain(r: LineReader, max: number): string[] {
  const out: string[] = [];
  for (let x: LineResult | null; (x = r.next(max)); ) out.push(x.kind === 'line' ? `${x.line.toString()}|${x.end}` : 'OVERFLOW');
  return out;
}

describe('LineReader', () => {
  it('splits CRLF and bare LF lines across chunks', () => {
    const r = new LineReader();
    r.push(Buffer.from('AB'));
    r.push(Buffer.from('C\r\nDE'));
    expect(drain(r, 10)).toEqual(['ABC|crlf']);
    r.push(Buffer.from('F\nG\r'));
    expect(drain(r, 10)).toEqual(['DEF|lf']);
    r.push(Buffer.from('\n'));
    expect(drain(r, 10)).toEqual(['G|crlf']);
    expect(r.buffered).toBe(0);
  });

  it('accepts a line of exactly max octets and refuses max+1', () => {
    const r = new LineReader();
    r.push(Buffer.from('12345\r\n123456\r\nok\r\n'));
    expect(drain(r, 5)).toEqual(['12345|crlf', 'OVERFLOW', 'ok|crlf']);
  });

  it('reports an unterminated over-long line once and resynchronises at its LF', () => {
    const r = new LineReader();
    r.push(Buffer.from('x'.repeat(20)));
    expect(drain(r, 5)).toEqual(['OVERFLOW']);
    expect(r.buffered).toBe(0);
    r.push(Buffer.from('y'.repeat(1000)));
    expect(drain(r, 5)).toEqual([]);
    expect(r.buffered).toBe(0);
    r.push(Buffer.from('zz\r\nnext\r\n'));
    expect(drain(r, 5)).toEqual(['next|crlf']);
  });

  it('finds the LF of an over-long line inside the same chunk', () => {
    const r = new LineReader();
    r.push(Buffer.from(`${'a'.repeat(50)}\r\nDATE\r\n`));
    expect(drain(r, 10)).toEqual(['OVERFLOW', 'DATE|crlf']);
  });

  it('drops everything on clear (STARTTLS)', () => {
    const r = new LineReader();
    r.push(Buffer.from('AUTHINFO USER x\r\nDATE\r\n'));
    r.clear();
    expect(drain(r, 100)).toEqual([]);
  });
});
