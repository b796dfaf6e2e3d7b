/*
 * The session input: an article taken whole after a 340 gives the same verdicts and the same stored bytes as the
 * per-line definition (shared LineReader, unstuff each line, count it against article_bytes), for random articles
 * cut into random reads; plus the dot line split across reads, pipelined commands after it, and the bound.
 */
import { describe, expect, it } from 'vitest';
import { LineReader } from '../../src/net/line-reader.js';
import { prepareArticle, splitArticle, type ReceivedLine } from '../../src/nntp/article.js';
import { NntpInput } from '../../src/nntp/input.js';

const ctx = { hostname: 'gh.test', user: 'alice', ip: '127.0.0.1', session: 's1', now: new Date('2026-12-01T10:00:00Z') };

/** The per-line definition (what the session did before articles were taken whole). */
function byLines(chunks: Buffer[], limit: number): { tooBig: boolean; lines: ReceivedLine[]; rest: string[] } {
  const r = new LineReader();
  let lines: ReceivedLine[] = [];
  let bytes = 0;
  let tooBig = false;
  let done = false;
  const rest: string[] = [];
  for (const c of chunks) {
    r.push(c);
    for (let item = r.next(done ? 510 : limit); item; item = r.next(done ? 510 : limit)) {
      if (done) {
        rest.push(item.kind === 'line' ? item.line.toString('latin1') : 'OVERFLOW');
        continue;
      }
      if (item.kind === 'overflow') {
        tooBig = true;
        lines = [];
        continue;
      }
      let line = item.line;
      if (line.length === 1 && line[0] === 0x2e) {
        done = true;
        continue;
      }
      if (tooBig) continue;
      if (line[0] === 0x2e) line = line.subarray(1);
      bytes += line.length + 2;
      if (bytes > limit) {
        tooBig = true;
        lines = [];
        continue;
      }
      lines.push({ line, end: item.end });
    }
  }
  expect(done).toBe(true);
  return { tooBig, lines, rest };
}

/** The whole-article path, fed read by read as the session's pump does. */
function whole(chunks: Buffer[], limit: number): { tooBig: boolean; split: ReturnType<typeof splitArticle> | null; rest: string[] } {
  const input = new NntpInput();
  let result: ReturnType<NntpInput['article']> = null;
  const rest: string[] = [];
  for (const c of chunks) {
    input.push(c);
    if (!result) result = input.article(limit);
    if (result) for (let item = input.next(510); item; item = input.next(510)) rest.push(item.kind === 'line' ? item.line.toString('latin1') : 'OVERFLOW');
  }
  expect(result).not.toBeNull();
  const split = result!.kind === 'article' ? splitArticle(result!.raw) : null;
  return { tooBig: !split || split.bytes > limit, split, rest };
}

/** A small deterministic PRNG, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

const HEADERS = ['From: a@x', 'Subject: s', 'Newsgroups: office.general', 'Message-ID: <fixed@x>', 'X-Dot: .x', '..X-Stuffed: y', 'X-CR: a\rb', '\tfolded', 'Date: Tue, 01 Dec 2026 10:00:00 +0000'];
const BODY = ['', '..', '...', '.x', '..x', 'text', 'a\rb', 'a\r', 'x'.repeat(60), ' lead', 'tail .', '\0nul'];

function randomWire(next: () => number): Buffer {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!;
  const end = () => (next() < 0.9 ? '\r\n' : '\n');
  let s = '';
  const base = next() < 0.8;
  if (base) s += ['From: a@x', 'Subject: s', 'Newsgroups: office.general', 'Message-ID: <fixed@x>'].map((h) => `${h}\r\n`).join('');
  for (let i = Math.floor(next() * 3); i > 0; i--) s += pick(HEADERS) + end();
  if (next() < 0.95) s += next() < 0.9 ? '\r\n' : '\n';
  for (let i = Math.floor(next() * 12); i > 0; i--) s += pick(BODY) + (next() < 0.85 ? '\r\n' : end());
  s += next() < 0.9 ? '.\r\n' : '.\n';
  if (next() < 0.5) s += 'DATE\r\nGROUP x';
  return Buffer.from(s, 'latin1');
}

function cut(buf: Buffer, next: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = next() < 0.3 ? 1 + Math.floor(next() * 4) : 1 + Math.floor(next() * 400);
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

describe('NntpInput.article + splitArticle', () => {
  it('agree with the per-line definition on random articles and reads (verdict, stored bytes, what follows)', () => {
    for (let seed = 1; seed <= 3000; seed++) {
      const next = rng(seed);
      const wire = randomWire(next);
      const chunks = cut(wire, next);
      const limit = next() < 0.5 ? 100_000 : 40 + Math.floor(next() * 400);
      const a = byLines(chunks, limit);
      const b = whole(chunks, limit);
      const label = `seed ${seed}: ${JSON.stringify(wire.toString('latin1'))} limit ${limit}`;
      expect(b.tooBig, label).toBe(a.tooBig);
      expect(b.rest, label).toEqual(a.rest);
      if (a.tooBig) continue;
      const pa = prepareArticle(a.lines, ctx);
      const pb = prepareArticle(b.split!.lines, ctx, b.split!.body);
      if (!pa.ok || !pb.ok) {
        expect(pb, label).toEqual(pa);
        continue;
      }
      expect(pb.head, label).toBe(pa.head);
      expect(pb.article.equals(pa.article), label).toBe(true);
      expect(pb.lines, label).toBe(pa.lines);
      expect(pb.groups, label).toEqual(pa.groups);
    }
  });

  it('finds the dot line split at every point across two reads, and keeps the next command', () => {
    const wire = Buffer.from('From: a@x\r\nSubject: s\r\nNewsgroups: g\r\n\r\nbody\r\n..dot\r\n.\r\nDATE\r\n');
    for (let at = 1; at < wire.length; at++) {
      const input = new NntpInput();
      input.push(wire.subarray(0, at));
      let r = input.article(1000);
      input.push(wire.subarray(at));
      r ??= input.article(1000);
      expect(r?.kind, `cut at ${at}`).toBe('article');
      if (r?.kind !== 'article') continue;
      expect(r.raw.toString()).toBe('From: a@x\r\nSubject: s\r\nNewsgroups: g\r\n\r\nbody\r\n..dot\r\n');
      const cmd = input.next(510);
      expect(cmd?.kind === 'line' && cmd.line.toString()).toBe('DATE');
    }
  });

  it('takes an empty article and one whose first line is dot-stuffed', () => {
    const input = new NntpInput();
    input.push(Buffer.from('.\r\n'));
    expect(input.article(100)).toEqual({ kind: 'article', raw: Buffer.alloc(0) });
    input.push(Buffer.from('..x\r\n.\n'));
    const r = input.article(100);
    expect(r?.kind === 'article' && splitArticle(r.raw).lines.map((l) => l.line.toString())).toEqual(['.x']);
  });

  it('holds at most about twice the limit of an oversized article and reports it once its dot line arrives', () => {
    const input = new NntpInput();
    const line = Buffer.from(`${'y'.repeat(98)}\r\n`);
    let held = 0;
    for (let i = 0; i < 1000; i++) {
      input.push(line);
      expect(input.article(1000)).toBeNull();
      held = Math.max(held, (input as unknown as { scannedBytes: number }).scannedBytes);
    }
    expect(held).toBeLessThanOrEqual(2 * 1000 + 4 + line.length);
    input.push(Buffer.from('.\r\nQUIT\r\n'));
    expect(input.article(1000)).toEqual({ kind: 'too_big' });
    const q = input.next(510);
    expect(q?.kind === 'line' && q.line.toString()).toBe('QUIT');
  });
});
