/*
 * A seeded, reproducible protocol fuzzer for the three listeners. `fuzzInputs(proto, n, seed)` is a pure
 * function of its arguments (same seed = same inputs): valid commands of the protocol, mutated ones (bit
 * flips, truncation, repetition, control bytes, huge arguments, bare CR/LF, NUL, 8-bit bytes) and random
 * lines. `runFuzz` drives a running listener with them over W parallel connections (input i goes to worker
 * i mod W, in order) and after every input sends a sentinel command (NOOP/DATE) so each input is known to
 * have got a reply or a close within `boundMs`; inputs that put the session in data mode (354 / 340) or a
 * SASL exchange (334 / 383) are ended with "*" and a lone dot. A connection the server closes is reopened. Sessions may start logged in.
 */
import { LineConn, PASSWORD, type Proto } from './proc.js';

/** mulberry32: small, fast, good enough for test input. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CORPUS: Record<Proto, string[]> = {
  smtp: [
    'EHLO fuzz.test', 'HELO fuzz.test', 'MAIL FROM:<a@example.org>', 'MAIL FROM:<>', 'MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME',
    'RCPT TO:<bob@example.net>', 'RCPT TO:<alice@gatehouse.test>', 'RCPT TO:<postmaster>', 'RCPT TO:<"a b"@example.net>',
    'RCPT TO:<@relay.example:bob@example.net>', 'RCPT TO:<bob%example.net@gatehouse.test>', 'RCPT TO:<bob@[127.0.0.1]>',
    'DATA', 'RSET', 'NOOP', 'VRFY alice', 'EXPN staff', 'HELP', 'STARTTLS', 'AUTH PLAIN', 'AUTH LOGIN', 'AUTH CRAM-MD5',
    'AUTH PLAIN AGFsaWNlAHdyb25n', 'BDAT 10 LAST', 'ETRN example.org', 'XCLIENT ADDR=1.2.3.4', 'TURN', 'QUIT',
  ],
  ftp: [
    'USER alice', `PASS ${PASSWORD}`, 'USER anonymous', 'PASS x@y', 'SYST', 'FEAT', 'PWD', 'CWD /', 'CWD ..', 'CWD ../../etc',
    'CDUP', 'TYPE I', 'TYPE A', 'TYPE L 8', 'MODE S', 'STRU F', 'PASV', 'EPSV', 'EPSV ALL', 'PORT 127,0,0,1,200,10',
    'PORT 10,0,0,1,0,21', 'EPRT |1|127.0.0.1|9|', 'LIST', 'NLST', 'MLSD', 'MLST /', 'SIZE x', 'MDTM x', 'RETR ../../etc/passwd',
    'STOR fuzz.bin', 'APPE fuzz.bin', 'STOU', 'REST 100', 'RNFR a', 'RNTO b', 'DELE a', 'MKD d', 'RMD d', 'SITE CHMOD 777 x',
    'AUTH TLS', 'PBSZ 0', 'PROT P', 'PROT C', 'CCC', 'ABOR', 'STAT', 'STAT /', 'HELP', 'OPTS UTF8 ON', 'ALLO 100', 'NOOP', 'QUIT',
  ],
  nntp: [
    'CAPABILITIES', 'MODE READER', 'LIST', 'LIST ACTIVE', 'LIST NEWSGROUPS', 'LIST OVERVIEW.FMT', 'LIST ACTIVE.TIMES', 'LIST HEADERS',
    'GROUP office.general', 'GROUP office.staff', 'GROUP no.such', 'LISTGROUP office.general', 'ARTICLE 1', 'HEAD 1', 'BODY 1',
    'STAT 1', 'ARTICLE <x@y>', 'NEXT', 'LAST', 'OVER 1-', 'XOVER 1-10', 'HDR Subject 1-', 'XHDR Subject 1-', 'NEWGROUPS 20200101 000000',
    'NEWNEWS * 20200101 000000', 'DATE', 'HELP', 'POST', 'IHAVE <x@y>', 'AUTHINFO USER alice', `AUTHINFO PASS ${PASSWORD}`,
    'AUTHINFO SASL PLAIN', 'STARTTLS', 'QUIT',
  ],
};

const JUNK = ['\x00', '\x01', '\x7f', '\xff', '\xc3\x28', '\r', '\n', '\t', ' ', '%', '<', '>', '"', '\\', '..', '/', ':', '*', '\x1b[2J', '\xf2'];

function mutate(line: string, r: () => number): string {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const n = 1 + Math.floor(r() * 3);
  let s = line;
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * (s.length + 1));
    switch (Math.floor(r() * 9)) {
      case 0:
        s = s.slice(0, i) + pick(JUNK) + s.slice(i);
        break;
      case 1:
        s = s.slice(0, i);
        break;
      case 2:
        s = s.slice(0, i) + 'A'.repeat(pick([64, 513, 1001, 4097, 20_000])) + s.slice(i);
        break;
      case 3: {
        const code = s.charCodeAt(i) ^ (1 << Math.floor(r() * 8));
        s = s.slice(0, i) + String.fromCharCode(code & 0xff) + s.slice(i + 1);
        break;
      }
      case 4:
        s = `${s} ${pick(CORPUS.smtp.concat(CORPUS.ftp, CORPUS.nntp))}`;
        break;
      case 5:
        s = s.toLowerCase();
        break;
      case 6:
        s = `${s}\r\n${pick(CORPUS.smtp.concat(CORPUS.ftp, CORPUS.nntp))}`;
        break;
      case 7:
        s = s.replace(/ /g, pick(['  ', '\t', '']));
        break;
      default:
        s = s.slice(0, i) + s.slice(i).split('').reverse().join('');
    }
  }
  return s;
}

function randomLine(r: () => number): string {
  const len = Math.floor(r() * (r() < 0.1 ? 3000 : 80));
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(r() < 0.8 ? 32 + Math.floor(r() * 95) : Math.floor(r() * 256));
  return s;
}

/** `n` inputs for `proto`, a pure function of (proto, n, seed). Each is sent followed by CRLF. */
export function fuzzInputs(proto: Proto, n: number, seed: number): string[] {
  const r = rng(seed ^ { smtp: 0x51, ftp: 0xf7, nntp: 0x22 }[proto]);
  const corpus = CORPUS[proto];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    const valid = corpus[Math.floor(r() * corpus.length)]!;
    out.push(x < 0.35 ? valid : x < 0.85 ? mutate(valid, r) : randomLine(r));
  }
  return out;
}

export interface FuzzResult {
  readonly proto: Proto;
  readonly seed: number;
  readonly inputs: number;
  /** inputs with no reply and no close within the bound */
  readonly hangs: number;
  readonly hangSamples: string[];
  /** connections the server closed (421, errors, TLS junk...) and the fuzzer reopened */
  readonly closes: number;
  readonly refusedConnects: number;
  /** inputs answered "go ahead with TLS" (session ended there) */
  readonly tlsStarts: number;
  readonly maxReplyMs: number;
  readonly ms: number;
}

const SENTINEL: Record<Proto, { cmd: string; ok: RegExp }> = {
  smtp: { cmd: 'NOOP', ok: /(^|\n)250 2\.0\.0 Ok\r?\n$/ },
  ftp: { cmd: 'NOOP', ok: /(^|\n)200[ -][^\n]*\r?\n$/ },
  nntp: { cmd: 'DATE', ok: /(^|\n)111 \d{14}\r?\n$/ },
};

/** "go ahead with TLS" (the pipelined sentinel is then a protocol violation: the session ends here) */
const TLS_START: Record<Proto, RegExp> = { smtp: /(^|\n)220[ -]/, ftp: /(^|\n)234[ -]/, nntp: /(^|\n)382[ -]/ };

/** the input opened a message body (ended with a lone dot) or a SASL exchange (aborted with "*") */
const DATA_MODE: Record<Proto, RegExp | null> = { smtp: /(^|\n)(354|334)[ -]/, ftp: null, nntp: /(^|\n)(340|335|383)[ -]/ };

async function openSession(proto: Proto, port: number, localAddress: string, login: boolean): Promise<LineConn | null> {
  const c = await LineConn.connect(port, localAddress).catch(() => null);
  if (!c) return null;
  const greet = await c.reply(10_000);
  if (!greet || !/^(220|200|201)/.test(greet)) {
    c.close();
    return null;
  }
  if (login) {
    if (proto === 'smtp') {
      await c.cmd('EHLO fuzz.test');
      await c.cmd(`AUTH PLAIN ${Buffer.from(`\0alice\0${PASSWORD}`).toString('base64')}`, 15_000);
    } else if (proto === 'ftp') {
      await c.cmd('USER alice');
      await c.cmd(`PASS ${PASSWORD}`, 15_000);
    } else {
      await c.cmd('AUTHINFO USER alice');
      await c.cmd(`AUTHINFO PASS ${PASSWORD}`, 15_000);
    }
  }
  c.buf = '';
  return c;
}

export interface FuzzOptions {
  readonly proto: Proto;
  readonly port: number;
  readonly n: number;
  readonly seed: number;
  readonly workers?: number;
  readonly boundMs?: number;
  /** share of sessions that log in first (alice / PASSWORD) */
  readonly loginShare?: number;
  readonly localAddresses?: readonly string[];
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const inputs = fuzzInputs(o.proto, o.n, o.seed);
  const W = o.workers ?? 8;
  const bound = o.boundMs ?? 15_000;
  const addrs = o.localAddresses ?? Array.from({ length: W }, (_, w) => `127.0.2.${w + 1}`);
  const sentinel = SENTINEL[o.proto];
  const dataMode = DATA_MODE[o.proto];
  const tlsStart = TLS_START[o.proto];
  let hangs = 0;
  let closes = 0;
  let tlsStarts = 0;
  let refused = 0;
  let maxReply = 0;
  const hangSamples: string[] = [];
  const t0 = performance.now();

  const worker = async (w: number) => {
    const r = rng(o.seed + w * 7919);
    let c: LineConn | null = null;
    for (let i = w; i < inputs.length; i += W) {
      for (let attempt = 0; !c && attempt < 20; attempt++) {
        c = await openSession(o.proto, o.port, addrs[(w + attempt) % addrs.length]!, r() < (o.loginShare ?? 0.3));
        if (!c) {
          refused++;
          await new Promise((res) => setTimeout(res, 100));
        }
      }
      if (!c) throw new Error(`${o.proto}: cannot open a session (server gone?)`);
      const conn: LineConn = c;
      const start = performance.now();
      conn.write(`${inputs[i]}\r\n`);
      conn.write(`${sentinel.cmd}\r\n`);
      let finished = false;
      let reactions = 0;
      const deadline = Date.now() + bound;
      while (!finished && Date.now() < deadline) {
        const got = await conn.until((b) => sentinel.ok.test(b) || tlsStart.test(b) || (!!dataMode && reactions < 3 && dataMode.test(b)), deadline - Date.now());
        if (!got) break;
        if (!conn.closed && tlsStart.test(conn.buf)) {
          finished = true;
          tlsStarts++;
          conn.close();
          c = null;
        } else if (conn.closed) {
          finished = true;
          closes++;
          conn.close();
          c = null;
        } else if (sentinel.ok.test(conn.buf)) {
          finished = true;
          conn.buf = '';
        } else if (dataMode && reactions < 3 && dataMode.test(conn.buf)) {
          // the input (or the sentinel) opened a message body or a SASL exchange: end it, then ask again
          reactions++;
          conn.buf = '';
          conn.write(`*\r\n\r\n.\r\n${sentinel.cmd}\r\n`);
        }
      }
      if (!finished) {
        hangs++;
        if (hangSamples.length < 5) hangSamples.push(JSON.stringify(inputs[i]!.slice(0, 120)));
        conn.close();
        c = null;
      }
      maxReply = Math.max(maxReply, performance.now() - start);
    }
    c?.close();
  };
  await Promise.all(Array.from({ length: W }, (_, w) => worker(w)));
  return { proto: o.proto, seed: o.seed, inputs: inputs.length, hangs, hangSamples, closes, tlsStarts, refusedConnects: refused, maxReplyMs: Math.round(maxReply), ms: Math.round(performance.now() - t0) };
}
