/*
 * `gatehouse log [--follow] [--service S] [--verdict allow|deny] [--lines N] [--json]`: the decision log
 * (<state_dir>/log/decisions.log, rotated to decisions.log.1 …) as one readable line per decision.
 * Without --follow it prints every generation, oldest first (or the last N with --lines); with --follow
 * it prints the last N (default 10) and then tails the file, following rotation and truncation, until
 * SIGINT/SIGTERM. Reads are bounded: lines longer than MAX_LINE are skipped (and counted), and fields are
 * printed with control characters escaped, so a hostile user name cannot drive the operator's terminal.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import type { DecisionRecord } from '../policy/audit.js';
import { usageError } from './io.js';

export const MAX_LINE = 64 * 1024;
const CHUNK = 64 * 1024;
const POLL_MS = 200;
const MAX_GENERATIONS = 100;
const FIELD = 512;

/** Splits a byte stream into lines; a line longer than `max` is dropped whole and counted in `skipped`. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private discarding = false;
  skipped = 0;

  constructor(private readonly max = MAX_LINE) {}

  push(chunk: Buffer): string[] {
    const out: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.discarding) {
        const piece = chunk.subarray(start, end);
        if (this.size + piece.length > this.max) {
          this.discarding = true;
          this.parts = [];
          this.size = 0;
        } else if (piece.length > 0) {
          this.parts.push(piece);
          this.size += piece.length;
        }
      }
      if (nl < 0) break;
      if (this.discarding) this.skipped++;
      else out.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts = [];
      this.size = 0;
      this.discarding = false;
      start = nl + 1;
    }
    return out;
  }

  /** Forget a partial line (the file it came from is gone). */
  reset(): void {
    this.parts = [];
    this.size = 0;
    this.discarding = false;
  }
}

const STR_FIELDS = ['time', 'service', 'phase', 'verdict', 'rule', 'reason', 'ip', 'user', 'session'] as const;

export function parseRecord(line: string): DecisionRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  for (const k of STR_FIELDS) if (typeof o[k] !== 'string') return null;
  if (o.object !== undefined && typeof o.object !== 'string') return null;
  if (o.proxy !== undefined && typeof o.proxy !== 'string') return null;
  return o as unknown as DecisionRecord;
}

/** Escape C0/C1 controls and bidi overrides; cap the length. */
export function clean(s: string, max = FIELD): string {
  const t = s.length > max ? `${s.slice(0, max)}…` : s;
  return t.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatRecord(r: DecisionRecord): string {
  const time = clean(r.time, 40).replace('T', ' ').replace(/Z$/, '');
  const cols = [time.padEnd(23), clean(r.service, 8).padEnd(4), clean(r.phase, 32).padEnd(12), (r.verdict === 'deny' ? 'DENY' : 'allow').padEnd(5), clean(r.rule, 80).padEnd(24), (r.proxy === undefined ? clean(r.ip, 64) : `${clean(r.ip, 64)} via ${clean(r.proxy, 64)}`).padEnd(15), clean(r.user, 64).padEnd(10)];
  const obj = r.object === undefined ? '' : ` [${clean(r.object)}]`;
  return `${cols.join(' ')} ${clean(r.reason)}${obj}`;
}

export interface LogFilter {
  readonly service?: string;
  readonly verdict?: string;
}

export function matches(r: DecisionRecord, f: LogFilter): boolean {
  return (f.service === undefined || r.service === f.service) && (f.verdict === undefined || r.verdict === f.verdict);
}

/** The rotated generations that exist, oldest first, then the current file. */
export function generations(file: string): string[] {
  const out: string[] = [];
  for (let i = MAX_GENERATIONS; i >= 1; i--) if (fs.existsSync(`${file}.${i}`)) out.push(`${file}.${i}`);
  out.push(file);
  return out;
}

/** Read fd from `pos` to `end` (or EOF) in bounded chunks; returns the new position. */
function drain(fd: number, pos: number, splitter: LineSplitter, onLine: (l: string) => void, end = Infinity): number {
  const buf = Buffer.alloc(CHUNK);
  for (;;) {
    const want = Math.min(CHUNK, end - pos);
    if (want <= 0) return pos;
    const n = fs.readSync(fd, buf, 0, want, pos);
    if (n <= 0) return pos;
    pos += n;
    for (const l of splitter.push(buf.subarray(0, n))) onLine(l);
  }
}

function readFileLines(file: string, splitter: LineSplitter, onLine: (l: string) => void): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return;
  }
  try {
    drain(fd, 0, splitter, onLine);
    splitter.reset();
  } finally {
    fs.closeSync(fd);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Tail `file` from byte `pos` of the already open `fd` (or from the start of whatever file appears),
 * switching to the new file when the name is rotated away, starting over when it is truncated.
 */
export async function follow(file: string, start: { fd: number; pos: number } | null, splitter: LineSplitter, onLine: (l: string) => void, signal: AbortSignal): Promise<void> {
  let fd = start?.fd ?? null;
  let pos = start?.pos ?? 0;
  let ino = fd === null ? -1 : fs.fstatSync(fd).ino;
  try {
    while (!signal.aborted) {
      if (fd === null) {
        try {
          fd = fs.openSync(file, 'r');
          ino = fs.fstatSync(fd).ino;
          pos = 0;
          splitter.reset();
        } catch {
          await sleep(POLL_MS, signal);
          continue;
        }
      }
      if (fs.fstatSync(fd).size < pos) {
        pos = 0;
        splitter.reset();
      }
      pos = drain(fd, pos, splitter, onLine);
      let current = -1;
      try {
        current = fs.statSync(file).ino;
      } catch {
        /* rotated away and not yet recreated */
      }
      if (current !== ino) {
        pos = drain(fd, pos, splitter, onLine); // whatever was written before the rename
        fs.closeSync(fd);
        fd = null;
        if (current !== -1) continue;
      }
      await sleep(POLL_MS, signal);
    }
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

export async function logCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      follow: { type: 'boolean', short: 'f' },
      service: { type: 'string' },
      verdict: { type: 'string' },
      lines: { type: 'string', short: 'n' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.service !== undefined && !['smtp', 'ftp', 'nntp'].includes(values.service)) throw usageError(`--service: expected smtp, ftp or nntp, got ${JSON.stringify(values.service)}`);
  if (values.verdict !== undefined && !['allow', 'deny'].includes(values.verdict)) throw usageError(`--verdict: expected allow or deny, got ${JSON.stringify(values.verdict)}`);
  let last: number | null = values.follow ? 10 : null;
  if (values.lines !== undefined) {
    if (!/^\d{1,7}$/.test(values.lines)) throw usageError(`--lines: expected a number, got ${JSON.stringify(values.lines)}`);
    last = Number(values.lines);
  }
  const config = loadConfig(values.config ?? configFile);
  const file = path.join(config.paths.logDir, 'decisions.log');
  const filter: LogFilter = { service: values.service, verdict: values.verdict };

  const ac = new AbortController();
  let broken = false;
  const onStdoutError = () => {
    broken = true; // e.g. `gatehouse log | head`: the reader left
    ac.abort();
  };
  process.stdout.on('error', onStdoutError);
  const print = (text: string) => {
    if (!broken) process.stdout.write(`${text}\n`);
  };
  const render = (line: string): string | null => {
    const rec = parseRecord(line);
    if (!rec || !matches(rec, filter)) return null;
    return values.json ? JSON.stringify(rec) : formatRecord(rec);
  };

  const splitter = new LineSplitter();
  const tail: string[] = [];
  const collect = (line: string) => {
    const out = render(line);
    if (out === null) return;
    if (last === null) return print(out);
    tail.push(out);
    if (tail.length > last) tail.shift();
  };
  const gens = generations(file);
  for (const g of gens.slice(0, -1)) readFileLines(g, splitter, collect);
  let start: { fd: number; pos: number } | null = null;
  try {
    const fd = fs.openSync(file, 'r');
    start = { fd, pos: drain(fd, 0, splitter, collect, fs.fstatSync(fd).size) };
  } catch {
    if (!values.follow) process.stderr.write(`gatehouse: no decision log yet at ${file}\n`);
  }
  for (const t of tail) print(t);

  if (values.follow) {
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await follow(file, start, splitter, (line) => {
        const out = render(line);
        if (out !== null) print(out);
      }, ac.signal);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  } else if (start) {
    fs.closeSync(start.fd);
  }
  process.stdout.off('error', onStdoutError);
  if (splitter.skipped > 0) process.stderr.write(`gatehouse: skipped ${splitter.skipped} line(s) longer than ${MAX_LINE} bytes\n`);
  return 0;
}
