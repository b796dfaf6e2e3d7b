/*
 * Our DATA scanner (src/smtp/data-scan.ts) against smtp-server's own (SMTPStream's `_feedDataStream`): the same
 * streams (hand-written edge cases, the smuggling battery, random ones made of the bytes that matter), split at
 * every boundary, byte by byte, and at random, through a library parser and through one with our scanner must
 * give the same content, the same end (or none), the same byte count and size flag, and the same commands
 * after the end. It also pins the library internals the scanner relies on: should an upgrade change them, the
 * library side and ours part ways here.
 */
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { feedDataStream, useFastDataScan, useSafeContinue } from '../../src/smtp/data-scan.js';

interface Outcome {
  /** the content the data stream gave, in latin1 */
  data: string;
  /** the data stream ended (the parser found the end of DATA) */
  ended: boolean;
  dataBytes: number;
  sizeExceeded: boolean;
  /** command lines the parser handed over after the end, in latin1 */
  commands: string[];
}

/** Feed `chunks` (in DATA mode from the start) through a parser; the fast one when `fast`. */
async function run(chunks: readonly Buffer[], fast: boolean, maxBytes = 1 << 30): Promise<Outcome> {
  const parser = new SMTPStream();
  if (fast) useFastDataScan(parser);
  const commands: string[] = [];
  parser.oncommand = (cmd: Buffer, cb?: () => void) => {
    commands.push(cmd.toString('latin1'));
    cb?.();
  };
  const stream = parser.startDataMode(maxBytes);
  const got: Buffer[] = [];
  let ended = false;
  stream.on('data', (d: Buffer) => got.push(d));
  const end = new Promise<void>((resolve) => {
    stream.on('end', () => {
      ended = true;
      parser.continue();
      resolve();
    });
  });
  for (const c of chunks) parser.write(c);
  const finished = new Promise<void>((resolve) => parser.once('finish', () => resolve()));
  parser.end();
  // a stream without an end never finishes its DATA: the parser stays in data mode with its writes done
  await Promise.race([Promise.all([end, finished]), finished.then(() => new Promise((r) => setImmediate(r)))]);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return { data: Buffer.concat(got).toString('latin1'), ended, dataBytes: parser.dataBytes, sizeExceeded: stream.sizeExceeded, commands };
}

/** Split `data` at the given offsets. */
function split(data: Buffer, at: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let last = 0;
  for (const i of [...at, data.length]) {
    if (i > last) out.push(data.subarray(last, i));
    last = Math.max(last, i);
  }
  return out;
}

/** Small deterministic PRNG, so that a failure can be reproduced from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

async function same(chunks: readonly Buffer[], label: string, maxBytes?: number): Promise<Outcome> {
  const lib = await run(chunks, false, maxBytes);
  const ours = await run(chunks, true, maxBytes);
  expect(ours, `${label}: ${JSON.stringify(chunks.map((c) => c.toString('latin1')))}`).toEqual(lib);
  return lib;
}

/** Every split in two, every split in three around the interesting bytes, byte by byte, the whole. */
async function everySplit(text: string, label: string): Promise<Outcome> {
  const data = Buffer.from(text, 'latin1');
  const whole = await same([data], `${label} whole`);
  await same(split(data, Array.from({ length: data.length }, (_, i) => i + 1)), `${label} byte by byte`);
  for (let i = 1; i < data.length; i++) await same(split(data, [i]), `${label} at ${i}`);
  const marks: number[] = [];
  for (let i = 0; i < data.length; i++) if (data[i] === 0x2e || data[i] === 0x0d || data[i] === 0x0a) marks.push(i);
  for (const a of marks) for (const b of marks) if (b > a + 1) await same(split(data, [a, a + 1, b, b + 1]), `${label} around ${a} and ${b}`);
  return whole;
}

const EDGE_CASES: [string, string][] = [
  ['empty message', '.\r\nQUIT\r\n'],
  ['one empty line', '\r\n.\r\nNOOP\r\n'],
  ['a single dot line, stuffed', '..\r\n.\r\nNOOP\r\n'],
  ['a leading stuffed dot then text', '..x\r\n.\r\n'],
  ['three dots at the start', '...\r\n.\r\n'],
  ['plain', 'Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n'],
  ['stuffed lines', 'a\r\n..\r\n...dots\r\n..\r\n.\r\nRSET\r\n'],
  ['stuffed after bare LF', 'a\n..b\n...\r\n.\r\n'],
  ['stuffed bare-LF lines back to back', 'a\n..\n..\n..b\r\n.\r\n'],
  ['LF then dots at the very start', '\n..\r\n.\r\n'],
  ['CR LF then dots at the very start', '\r\n..x\r\n.\r\n'],
  ['dot lines back to back', 'a\r\n..\r\n..\r\n..\r\n.\r\nNOOP\r\n'],
  ['end right after a stuffed line', 'x\r\n..\r\n.\r\n'],
  ['dot not at line start', 'a.b\r\n.a\r\nb.\r\n.\r\n'],
  ['no end at all', 'Subject: x\r\n\r\nbody without end\r\n..\r\n'],
  ['end without the final CRLF', 'body\r\n.'],
  ['end cut after the dot CR', 'body\r\n.\r'],
  ['pipelined commands after the end', 'x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n'],
  ['short', 'ab'],
  ['four bytes then end', 'abcd\r\n.\r\n'],
];

/** The smuggling battery's fake ends (test/smtp/smuggling.test.ts), each with a second transaction behind it. */
const FAKE_ENDS = ['\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r', '\r\n.\n', '\r.\r', '\n.\r', '\r\n.\r\r\n', '\r\n..\r\n', '\n..\n'];

describe('fast DATA scanner: same results as smtp-server’s parser', () => {
  it('relies on SMTPStream internals that are still there (the library calls _feedDataStream in data mode)', async () => {
    const parser = useFastDataScan(new SMTPStream());
    expect(Object.getOwnPropertyDescriptor(parser, '_feedDataStream')?.value).toBe(feedDataStream);
    expect(typeof SMTPStream.prototype._feedDataStream).toBe('function');
    expect(typeof SMTPStream.prototype._endDataMode).toBe('function');
    expect(typeof SMTPStream.prototype._countDataBytes).toBe('function');
    let calls = 0;
    parser._feedDataStream = function (this: SMTPStream, chunk, done) {
      calls++;
      feedDataStream.call(this, chunk, done);
    };
    const stream = parser.startDataMode();
    expect(parser._atDataStart).toBe(true);
    expect(parser._lastBytes).toBe(false);
    const got: Buffer[] = [];
    stream.on('data', (d: Buffer) => got.push(d));
    const ended = new Promise<void>((r) => stream.on('end', () => r()));
    parser.write(Buffer.from('hello\r\n..world\r\n.\r\n'));
    await ended;
    expect(calls).toBe(1);
    expect(Buffer.concat(got).toString()).toBe('hello\r\n.world\r\n');
    expect(stream.byteLength).toBe(15);
  });

  it('useSafeContinue: a continuation set while the previous one runs survives (the library clears it after the call)', () => {
    const lib = new SMTPStream();
    const ours = useSafeContinue(new SMTPStream());
    for (const parser of [lib, ours]) {
      expect(parser._continueCallback).toBe(false);
      parser.continue(); // before the end: remembered as true, as the library does
      expect(parser._continueCallback).toBe(true);
    }
    const runs: string[] = [];
    for (const [name, parser] of [['lib', lib], ['ours', ours]] as const) {
      parser._continueCallback = () => {
        runs.push(`${name} first`);
        parser._continueCallback = () => runs.push(`${name} second`); // a second pipelined DATA ended meanwhile
      };
      parser.continue();
      parser.continue();
    }
    // the library loses the second continuation (the defect pinned: should an upgrade fix it, this says so)
    expect(runs).toEqual(['lib first', 'ours first', 'ours second']);
    expect(lib._continueCallback).toBe(true);
    expect(ours._continueCallback).toBe(false);
  });

  for (const [name, text] of EDGE_CASES) {
    it(`${name}: same at every split`, async () => {
      await everySplit(text, name);
    });
  }

  it('the smuggling battery: no fake end ends DATA, with either parser, at any split', async () => {
    for (const fake of FAKE_ENDS) {
      const text = `Subject: cover\r\n\r\ncover text${fake}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nsmuggled\r\n.\r\nNOOP\r\n`;
      const out = await everySplit(text, JSON.stringify(fake));
      expect(out.ended).toBe(true);
      // the only end is the real CRLF.CRLF: the smuggled transaction is content, only NOOP is a command
      expect(out.commands).toEqual(['NOOP']);
      expect(out.data).toContain('MAIL FROM:<evil@example.org>');
    }
  });

  it('random streams of CR, LF, dots and letters, split at random: the same', async () => {
    const alphabet = ['\r', '\n', '.', '.', 'a', '\r\n', '\r\n.', '\r\n..', '\n..', '\r\n.\r\n'];
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      let text = '';
      const parts = 1 + Math.floor(r() * 14);
      for (let i = 0; i < parts; i++) text += alphabet[Math.floor(r() * alphabet.length)]!;
      if (r() < 0.7) text += '\r\n.\r\nNOOP\r\n';
      const data = Buffer.from(text, 'latin1');
      await same([data], `seed ${seed} whole`);
      await same(split(data, Array.from({ length: data.length }, (_, i) => i + 1)), `seed ${seed} byte by byte`);
      for (let k = 0; k < 6; k++) {
        const cuts = Array.from({ length: 1 + Math.floor(r() * 4) }, () => Math.floor(r() * data.length)).sort((a, b) => a - b);
        await same(split(data, cuts), `seed ${seed} cuts ${cuts.join(',')}`);
      }
      for (let i = 1; i < data.length; i++) await same(split(data, [i]), `seed ${seed} at ${i}`);
    }
  });

  it('longer random streams in chunks of 8 to 24 bytes (the kept bytes read across the seam): the same', async () => {
    const alphabet = ['\r', '\n', '.', 'a', 'bc', '\r\n', '\r\n.', '\r\n..', '\n..', '\n.', '\r\n.\r'];
    for (let seed = 1000; seed < 1600; seed++) {
      const r = rng(seed);
      let text = '';
      while (text.length < 120) text += alphabet[Math.floor(r() * alphabet.length)]!;
      text += r() < 0.5 ? '\r\n.\r\nNOOP\r\n' : '\r\n.\r';
      const data = Buffer.from(text, 'latin1');
      const cuts: number[] = [];
      for (let at = 1 + Math.floor(r() * 24); at < data.length; at += 8 + Math.floor(r() * 17)) cuts.push(at);
      await same(split(data, cuts), `seed ${seed} cuts ${cuts.join(',')}`);
    }
  });

  it('a large message with stuffed lines, in socket-sized and odd chunks, and the size flag', async () => {
    const r = rng(7);
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++) lines.push(r() < 0.01 ? `..${'x'.repeat(Math.floor(r() * 80))}` : 'y'.repeat(Math.floor(r() * 120)));
    const data = Buffer.from(`${lines.join('\r\n')}\r\n.\r\nQUIT\r\n`, 'latin1');
    for (const size of [65536, 16384, 4093, 1000, 77]) {
      const cuts: number[] = [];
      for (let i = size; i < data.length; i += size) cuts.push(i);
      const out = await same(split(data, cuts), `chunks of ${size}`);
      expect(out.ended).toBe(true);
      expect(out.commands).toEqual(['QUIT']);
    }
    const over = await same([data], 'over the limit', 100_000);
    expect(over.sizeExceeded).toBe(true);
  });
});
