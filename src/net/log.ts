/*
 * Logging: pino JSON lines to stdout and to <state_dir>/log/gatehouse.log; decisions also to
 * <state_dir>/log/decisions.log (the audit trail `gatehouse log` reads). Both files are size-capped and
 * rotated (name.1 … name.N), so a flood of refusals cannot fill the disk. Nothing here ever sees a
 * password: listeners log decisions and events, not payloads, and `redact` removes the usual suspects
 * should one slip into an object anyway.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import type { DecisionRecord } from '../policy/audit.js';
import { ensureDir } from './atomic.js';

export type { Logger } from 'pino';

/** Lines a coalescing window holds at most; more leave at the end of the turn. */
const MAX_PENDING_LINES = 1000;
/** The decision log's window (RotatingFile coalesceMs): an allowed connect's line is at most this late. */
export const DECISION_LOG_COALESCE_MS = 10;

/** Files with lines not yet written; flushed on process exit too (the loop may not turn again). */
const unflushed = new Set<RotatingFile>();
let exitHook = false;

/**
 * An append-only file that rotates itself when it passes `maxBytes`. Lines written in one turn of the event
 * loop leave in one write(2) at the end of that turn (setImmediate), not one each: a decision, its log line
 * and the reply's events cost one system call, not six (each was 25-60 µs on a slow core). A process that
 * exits flushes first; only a kill -9 can lose the lines of the turn it interrupts (the file never had an
 * fsync: a power cut could lose more before, too). `close()` flushes.
 *
 * With `coalesceMs`, a line written as `deferrable` (the decision log's allowed connects: one per connection,
 * the bulk of the file, and never the rule anyone looks for) that comes less than that after the last write
 * waits for the end of that window instead, with whatever deferrable lines the next turns add: a file written
 * now and then still gets each turn's lines at the end of the turn, one under a steady stream of connections (a
 * session every 0.4 ms) gets one write(2) per window instead of one per session (each write ~5 µs plus the
 * flush's own turn). Any other line ends the wait: it and everything held before it leave at the end of its
 * turn, in order, as without a window (readers such as `gatehouse audit` expect a refusal or a transaction's
 * decision right after the reply). Held lines are at most `coalesceMs` late, at most MAX_PENDING_LINES wait;
 * exit and `close()` flush.
 */
export class RotatingFile {
  private fd: number | null = null;
  private size = 0;
  private pending: string[] = [];
  private flushTimer: NodeJS.Immediate | null = null;
  /** a window's timer (coalesceMs), instead of flushTimer */
  private windowTimer: NodeJS.Timeout | null = null;
  /** when the last flush wrote (performance.now() ms) */
  private lastWrite = -Infinity;

  constructor(
    readonly file: string,
    private readonly maxBytes: number,
    private readonly keep: number,
    private readonly coalesceMs = 0,
  ) {}

  private open(): number {
    if (this.fd === null) {
      ensureDir(path.dirname(this.file));
      this.fd = fs.openSync(this.file, 'a', 0o600);
      this.size = fs.fstatSync(this.fd).size;
    }
    return this.fd;
  }

  /**
   * Queue one line (with its newline); it reaches the file at the end of this loop turn, or, when `deferrable` and
   * the file has a coalescing window that is open, at the end of the window.
   */
  write(line: string, deferrable = false): void {
    this.pending.push(line);
    const hold = deferrable && this.coalesceMs > 0 && this.pending.length < MAX_PENDING_LINES;
    if (this.windowTimer !== null) {
      if (hold) return;
      clearTimeout(this.windowTimer); // this line, and what the window held, leave at the end of this turn
      this.windowTimer = null;
    }
    if (this.flushTimer === null) {
      const wait = hold ? this.lastWrite + this.coalesceMs - performance.now() : 0;
      if (wait > 0) this.windowTimer = setTimeout(() => this.flushQuietly(), wait).unref();
      else this.flushTimer = setImmediate(() => this.flushQuietly());
      unflushed.add(this);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const f of unflushed) f.flushQuietly();
        });
      }
    }
  }

  /** Write what is queued now, rotating between lines exactly where one write per line would have. */
  flush(): void {
    if (this.flushTimer !== null) clearImmediate(this.flushTimer);
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.flushTimer = null;
    this.windowTimer = null;
    unflushed.delete(this);
    const lines = this.pending;
    this.pending = [];
    if (lines.length > 0) this.lastWrite = performance.now();
    let chunk = '';
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = Buffer.byteLength(line);
      this.open();
      if (this.size + chunkBytes + bytes > this.maxBytes && this.size + chunkBytes > 0) {
        if (chunkBytes > 0) this.append(chunk, chunkBytes);
        chunk = '';
        chunkBytes = 0;
        this.rotate();
        this.open();
      }
      chunk += line;
      chunkBytes += bytes;
    }
    if (chunkBytes > 0) this.append(chunk, chunkBytes);
  }

  /** flush() for timers and exit: disk trouble must not kill the daemon (the lines are dropped). */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch {
      /* ignore */
    }
  }

  private append(text: string, bytes: number): void {
    fs.writeSync(this.open(), text);
    this.size += bytes;
  }

  private rotate(): void {
    this.closeFd();
    for (let i = this.keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      } catch {
        /* a missing generation is fine */
      }
    }
    try {
      fs.renameSync(this.file, `${this.file}.1`);
    } catch {
      /* nothing to rotate */
    }
    try {
      fs.rmSync(`${this.file}.${this.keep + 1}`, { force: true });
    } catch {
      /* ignore */
    }
  }

  close(): void {
    this.flushQuietly();
    this.closeFd();
  }

  private closeFd(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
}

export interface LogSettings {
  readonly level: string;
  readonly dir: string | null;
  readonly maxBytes: number;
  readonly keep: number;
  readonly stdout: boolean;
}

export interface Logging {
  readonly log: Logger;
  readonly decision: (rec: DecisionRecord) => void;
  /** Extra listeners of decisions (status page, metrics, tests). */
  readonly subscribe: (fn: (rec: DecisionRecord) => void) => () => void;
  close(): void;
}

export const REDACT = ['password', 'pass', 'pwd', '*.password', '*.pass', 'auth.password', 'credentials', '*.credentials', 'authorization'];

export function createLogging(settings: LogSettings): Logging {
  const files: RotatingFile[] = [];
  const targets: Writable[] = [];
  if (settings.stdout) targets.push(new Writable({ write: (chunk: Buffer, _e, cb) => { process.stdout.write(chunk); cb(); } }));
  let decisionsFile: RotatingFile | null = null;
  if (settings.dir) {
    const main = new RotatingFile(path.join(settings.dir, 'gatehouse.log'), settings.maxBytes, settings.keep);
    decisionsFile = new RotatingFile(path.join(settings.dir, 'decisions.log'), settings.maxBytes, settings.keep, DECISION_LOG_COALESCE_MS);
    files.push(main, decisionsFile);
    targets.push(new Writable({ write: (chunk: Buffer, _e, cb) => { try { main.write(chunk.toString()); } catch { /* disk trouble must not kill the daemon */ } cb(); } }));
  }
  const stream = new Writable({
    write(chunk: Buffer, enc, cb) {
      for (const t of targets) t.write(chunk);
      cb();
    },
  });
  const log = pino({ level: settings.level, base: { name: 'gatehouse' }, redact: { paths: REDACT, censor: '[redacted]' } }, stream);
  const subscribers = new Set<(rec: DecisionRecord) => void>();
  return {
    log,
    decision(rec) {
      if (decisionsFile) {
        try {
          // an allowed connect may wait for the coalescing window; any other decision ends it (see RotatingFile)
          decisionsFile.write(`${JSON.stringify(rec)}\n`, rec.verdict === 'allow' && rec.phase === 'connect');
        } catch {
          /* ignore */
        }
      }
      // every decision is in decisions.log; the operational log repeats the refusals (warn), the allows only at
      // debug (at info they doubled the lines per message: the queue's own lines already say what was accepted)
      const level = rec.verdict === 'deny' ? 'warn' : 'debug';
      if (log.isLevelEnabled(level)) log[level]({ decision: rec }, `${rec.service} ${rec.phase} ${rec.verdict} ${rec.rule}`);
      for (const fn of subscribers) {
        try {
          fn(rec);
        } catch {
          /* a broken subscriber must not break decisions */
        }
      }
    },
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    close() {
      for (const f of files) f.close();
    },
  };
}

/** A logger that writes nothing (CLI helpers whose failures are reported another way). */
export function silentLog(): Logger {
  return pino({ level: 'silent' });
}
