/*
 * The on-disk queue. Layout under <spoolDir>:
 *   tmp/            files being written (removed at start-up: garbage from a crash)
 *   msg/<id>        one file per entry: the envelope as one JSON line, then the message bytes exactly as they
 *                   will be delivered. Its presence makes the entry exist. (An entry written while its message
 *                   arrived, spool-draft.ts, has its JSON padded with spaces before the newline.)
 *   env/<id>.json   the latest delivery state (same JSON), once there is any; it wins over the header line
 *   corrupt/        entries that could not be parsed (moved aside at start-up, never delivered)
 *   flush           marker written by `gatehouse queue flush`; the running worker polls for it
 * Enqueue is one file: tmp → write → link into msg/ (never over an existing name) → fsync of the file → fsync
 * msg/ (one fsync shared by concurrent enqueues and removals that asked while the previous one ran); only then
 * is the entry acknowledged and handed to delivery. Linking before the file's fsync lets one journal commit
 * carry data, inode and name (fsync of the new file commits the link too, and the folder's fsync then finds
 * little or nothing left to commit) where fsync-then-link needed two in sequence. The price: after a crash
 * msg/ may hold an entry that was never acknowledged, written only in part; every entry therefore states its
 * length (the envelope's `size`), and one whose file is not exactly envelope line + size bytes is incomplete:
 * never delivered, moved to corrupt/ at start-up. The daemon runs these steps, and removals, on a writer thread
 * (SpoolWriter) so the listener's event loop only posts a job and gets the answer. A crash leaves complete
 * entries, incomplete ones that were never acknowledged, or garbage in tmp/. State updates rewrite
 * env/<id>.json atomically (tmp → fsync → rename → fsync env/). Removal unlinks msg/<id> first (then the entry is gone) and fsyncs msg/; a state
 * file left behind is an orphan that start-up deletes, and a state write racing a delete cannot revive the
 * entry. Nothing here trusts a name it did not make: ids must match ID_PATTERN.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import { ensureDir, fsyncDir } from '../net/atomic.js';
import { randomHex } from '../net/random.js';
import { SpoolDraft } from './spool-draft.js';

export const ID_PATTERN = /^[0-9a-z]{8,64}$/;

export function isSafeId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Time-ordered (base36 ms, fixed width) + 64 random bits: unique, sortable, safe as a file name. */
export function newQueueId(now = Date.now()): string {
  return now.toString(36).padStart(9, '0') + randomHex(8);
}

const recipientSchema = z.object({
  address: z.string(),
  local: z.string(),
  domain: z.string(),
  /** pending = not yet delivered (never tried or temp-failed); delivered and failed are final */
  state: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int().nonnegative(),
  lastError: z.string().nullable(),
  /** for failed recipients: a bounce covering it has been enqueued */
  notified: z.boolean(),
  /** enhanced status code of the final failure, e.g. 5.1.1 */
  status: z.string().nullable(),
});

export const entrySchema = z.object({
  version: z.literal(1),
  id: z.string().regex(ID_PATTERN),
  createdAt: z.number(),
  sender: z.string(),
  recipients: z.array(recipientSchema).min(1),
  clientIp: z.string(),
  helo: z.string(),
  user: z.string().nullable(),
  tls: z.boolean(),
  session: z.string(),
  size: z.number().int().nonnegative(),
  attempts: z.number().int().nonnegative(),
  nextAttemptAt: z.number(),
  lastAttemptAt: z.number().nullable(),
  lastError: z.string().nullable(),
  /** number of bounces generated so far (bounce ids are derived from it, so a retry never duplicates one) */
  bounces: z.number().int().nonnegative(),
});

export type RecipientState = z.infer<typeof recipientSchema>;
export type QueueEntry = z.infer<typeof entrySchema>;

export interface StoredMessage {
  readonly entry: QueueEntry;
  readonly data: Buffer;
}

/**
 * The longest envelope line accepted when reading (100 recipients need ~30 KiB; smtp.limits.recipients is capped
 * at 1,000, ~2.2 MiB with every address and last error at their longest). Nothing longer is ever written:
 * `envelopeLine` refuses it, so an entry the spool could not read back is never acknowledged.
 */
export const MAX_HEADER = 4 * 1024 * 1024;

/** An entry's envelope line (JSON and LF); throws rather than write one longer than the spool reads back. */
export function envelopeLine(entry: QueueEntry): string {
  const line = `${JSON.stringify(entry)}\n`;
  if (Buffer.byteLength(line) > MAX_HEADER) throw new Error(`queue entry ${entry.id}: envelope of ${Buffer.byteLength(line)} bytes is longer than the ${MAX_HEADER} the spool reads back`);
  return line;
}

/**
 * fsync of one folder shared by concurrent callers (group commit): every caller waits for a sync that
 * started after it asked, so whatever it linked or unlinked before asking is covered.
 */
class FolderSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) return this.start();
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.start();
      });
    return this.next;
  }

  private start(): Promise<void> {
    const p: Promise<void> = fsyncDir(this.dir).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}

/**
 * The enqueue writer, on a worker thread: for each new entry the same steps as `Spool.createInline`
 * (open tmp/ exclusively, write, link into msg/ never over an existing name, unlink the tmp name, fsync,
 * close; a failed fsync unlinks the entry again; entries concurrently, so their fsyncs share journal commits),
 * then one fsync of msg/ shared by every entry linked before it started, then the answer. Seven thread-pool
 * round trips on the listener's event loop become one message each way. Plain JavaScript (no build step, no
 * loader).
 */
const WRITER_SOURCE = `
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const { dirFd } = workerData; // msg/, opened (and closed) by the thread's owner
// file calls that never wait for the journal (open, write, link, unlink, close) are made directly on this
// thread; only the fsyncs go to the thread pool, so concurrent entries' fsyncs still share journal commits
const fsync = (fd) => new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
// names linked into or unlinked from msg/, waiting for a folder fsync that starts after that (group commit)
let changed = [];
let syncing = false;
async function syncFolder() {
  syncing = true;
  while (changed.length > 0) {
    const batch = changed;
    changed = [];
    let error = null;
    try {
      await fsync(dirFd);
    } catch (err) {
      error = err;
    }
    parentPort.postMessage(batch.map((r) => (error ? { seq: r.seq, error: 'fsync of msg/: ' + String(error.message || error), code: error.code } : r)));
  }
  syncing = false;
}
async function create(job) {
  const fd = fs.openSync(job.tmp, 'wx', 0o600);
  let linked = false;
  try {
    fs.writevSync(fd, [Buffer.from(job.header, 'utf8'), job.data]);
    try {
      fs.linkSync(job.tmp, job.dest); // fails if the name exists: never overwrite an entry
      linked = true;
    } finally {
      fs.unlinkSync(job.tmp);
    }
    await fsync(fd); // after the link: one journal commit carries data, inode and name
  } catch (err) {
    if (linked) try { fs.unlinkSync(job.dest); } catch {}
    throw err;
  } finally {
    fs.closeSync(fd);
  }
  return true;
}
async function remove(job) {
  try {
    fs.unlinkSync(job.dest);
    return true;
  } catch (err) {
    if (err && err.code === 'ENOENT') return false;
    throw err;
  }
}
function run(job) {
  (job.kind === 'create' ? create(job) : remove(job)).then(
    (changedName) => {
      if (!changedName) return parentPort.postMessage([{ seq: job.seq, existed: false }]);
      changed.push({ seq: job.seq, existed: true });
      if (!syncing) void syncFolder();
    },
    (err) => {
      if (job.kind === 'create') try { fs.unlinkSync(job.tmp); } catch {}
      parentPort.postMessage([{ seq: job.seq, error: String((err && err.message) || err), code: err && err.code }]);
    },
  );
}
parentPort.on('message', (jobs) => {
  for (const job of jobs) run(job);
});
`;

type WriterJob =
  | { readonly kind: 'create'; readonly seq: number; readonly tmp: string; readonly dest: string; readonly header: string; readonly data: Uint8Array }
  | { readonly kind: 'remove'; readonly seq: number; readonly dest: string };

interface WriterResult {
  readonly seq: number;
  readonly existed?: boolean;
  readonly error?: string;
  readonly code?: string;
}

interface Waiter {
  resolve(existed: boolean): void;
  reject(err: Error): void;
}

/** One running writer thread and what it still owes. */
interface WriterThread {
  readonly worker: Worker;
  readonly waiting: Map<number, Waiter>;
  outbox: WriterJob[];
  /** memory moved (not copied) to the thread with the outbox's jobs */
  transfer: ArrayBuffer[];
}

/**
 * One writer thread per spool, started on first use. Jobs of one turn of the event loop go over in one
 * message (every message wakes the thread: on two busy cores that wake-up is the expensive part). The thread
 * is unref'd while it owes nothing, so it never keeps the process alive.
 */
class SpoolWriter {
  private thread: WriterThread | null = null;
  private seq = 0;

  constructor(private readonly msgDir: string) {}

  /** `move`: transfer `data`'s memory to the thread instead of copying it (only when it owns all of it). */
  create(tmp: string, dest: string, header: string, data: Uint8Array, move = false): Promise<void> {
    const transfer = move && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer ? data.buffer : null;
    return this.submit((seq) => ({ kind: 'create', seq, tmp, dest, header, data }), transfer).then(() => undefined);
  }

  /** Unlink `dest` from msg/ and fsync msg/; false when it did not exist. */
  remove(dest: string): Promise<boolean> {
    return this.submit((seq) => ({ kind: 'remove', seq, dest }));
  }

  private submit(make: (seq: number) => WriterJob, transfer: ArrayBuffer | null = null): Promise<boolean> {
    const t = this.start();
    const job = make(++this.seq);
    return new Promise<boolean>((resolve, reject) => {
      if (t.waiting.size === 0) t.worker.ref(); // pending answers keep the process alive
      t.waiting.set(job.seq, { resolve, reject });
      t.outbox.push(job);
      if (transfer) t.transfer.push(transfer);
      if (t.outbox.length === 1) {
        setImmediate(() => {
          const jobs = t.outbox;
          const moved = t.transfer;
          t.outbox = [];
          t.transfer = [];
          if (jobs.length === 0) return;
          try {
            t.worker.postMessage(jobs, moved);
          } catch (err) {
            // memory that cannot be moved (never expected: only whole, unpooled buffers are offered) is copied
            try {
              t.worker.postMessage(jobs);
            } catch {
              for (const j of jobs) {
                t.waiting.get(j.seq)?.reject(err as Error);
                t.waiting.delete(j.seq);
              }
            }
          }
        });
      }
    });
  }

  private start(): WriterThread {
    if (this.thread) return this.thread;
    const dirFd = fs.openSync(this.msgDir, 'r');
    const worker = new Worker(WRITER_SOURCE, { eval: true, workerData: { dirFd } });
    worker.unref();
    const t: WriterThread = { worker, waiting: new Map(), outbox: [], transfer: [] };
    worker.on('message', (results: WriterResult[]) => {
      for (const r of results) {
        const w = t.waiting.get(r.seq);
        if (!w) continue;
        t.waiting.delete(r.seq);
        if (r.error === undefined) w.resolve(r.existed !== false);
        else w.reject(Object.assign(new Error(r.error), { code: r.code }));
      }
      if (t.waiting.size === 0) worker.unref();
    });
    const fail = (err: Error) => {
      if (this.thread === t) this.thread = null;
      t.outbox = [];
      t.transfer = [];
      for (const w of t.waiting.values()) w.reject(err);
      t.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      fs.closeSync(dirFd); // the thread is gone, whether closed or crashed
      fail(new Error(`spool writer exited (${code})`));
    });
    this.thread = t;
    return t;
  }

  async close(): Promise<void> {
    const t = this.thread;
    this.thread = null;
    if (t) await t.worker.terminate(); // its exit closes dirFd
  }
}

export class Spool {
  readonly tmpDir: string;
  readonly msgDir: string;
  readonly envDir: string;
  readonly flushMarker: string;
  private ensured = false;
  private readonly msgSync: FolderSync;
  private readonly writer: SpoolWriter;

  constructor(readonly dir: string) {
    this.tmpDir = path.join(dir, 'tmp');
    this.msgDir = path.join(dir, 'msg');
    this.envDir = path.join(dir, 'env');
    this.flushMarker = path.join(dir, 'flush');
    this.msgSync = new FolderSync(this.msgDir);
    this.writer = new SpoolWriter(this.msgDir);
  }

  /** Stop the writer thread (the queue's stop; a later create starts a new one). */
  async close(): Promise<void> {
    await this.writer.close();
  }

  /** Create the folders (0700). Safe to call from the CLI: it never removes anything. */
  ensure(): void {
    for (const d of [this.dir, this.tmpDir, this.msgDir, this.envDir]) ensureDir(d);
    this.ensured = true;
  }

  msgPath(id: string): string {
    return path.join(this.msgDir, safe(id));
  }

  envPath(id: string): string {
    return path.join(this.envDir, `${safe(id)}.json`);
  }

  private tmpPath(id: string, kind: string): string {
    return path.join(this.tmpDir, `${safe(id)}.${kind}.${randomHex(4)}`);
  }

  private async writeTmp(id: string, kind: string, data: string | Uint8Array | readonly Uint8Array[]): Promise<string> {
    const tmp = this.tmpPath(id, kind);
    const fh = await fsp.open(tmp, 'wx', 0o600);
    try {
      if (Array.isArray(data)) await fh.writev(data as Uint8Array[]);
      else await fh.writeFile(data as string | Uint8Array);
      await fh.sync();
    } catch (err) {
      await fh.close();
      await unlinkIfPresent(tmp);
      throw err;
    }
    await fh.close();
    return tmp;
  }

  /**
   * Store a new entry durably (one file, one fsync of it and one of its folder shared by a batch), on the
   * writer thread; resolves once the entry is on disk. `move`: `data` is moved to the thread, not copied
   * (a large message: one copy less; the caller's Buffer is empty afterwards).
   */
  async create(entry: QueueEntry, data: Buffer, move = false): Promise<void> {
    const id = safe(entry.id);
    if (!this.ensured) this.ensure();
    await this.writer.create(this.tmpPath(id, 'msg'), this.msgPath(id), envelopeLine(entry), data, move);
  }

  /**
   * A new entry written while its message arrives (spool-draft.ts: a large SMTP DATA), committed with the same
   * steps as `create`; `reserve`: bytes kept for the envelope line.
   */
  draft(id: string, reserve: number): SpoolDraft {
    const safeId = safe(id);
    if (!this.ensured) this.ensure();
    return new SpoolDraft(this.tmpPath(safeId, 'msg'), this.msgPath(safeId), reserve, () => this.msgSync.sync());
  }

  /** The same steps on the event loop's thread pool (tests compare the two; kept as the reference). */
  async createInline(entry: QueueEntry, data: Buffer): Promise<void> {
    const id = safe(entry.id);
    if (!this.ensured) this.ensure();
    const tmp = this.tmpPath(id, 'msg');
    const dest = this.msgPath(id);
    const fh = await fsp.open(tmp, 'wx', 0o600);
    let linked = false;
    try {
      await fh.writev([Buffer.from(envelopeLine(entry)), data]);
      try {
        await fsp.link(tmp, dest); // link fails if the name exists: never overwrite an entry
        linked = true;
      } finally {
        await unlinkIfPresent(tmp);
      }
      await fh.sync();
    } catch (err) {
      if (linked) await unlinkIfPresent(dest).catch(() => undefined);
      throw err;
    } finally {
      await fh.close();
    }
    await this.msgSync.sync();
  }

  /** Does an entry with this id exist? (A lookup of a cached folder entry: synchronous, no journal.) */
  async exists(id: string): Promise<boolean> {
    return Promise.resolve(fs.existsSync(this.msgPath(id)));
  }

  /** Atomically record the delivery state of an existing entry. */
  async writeEnvelope(entry: QueueEntry): Promise<void> {
    const id = safe(entry.id);
    if (!this.ensured) this.ensure();
    const tmp = await this.writeTmp(id, 'env', envelopeLine(entry));
    try {
      await fsp.rename(tmp, this.envPath(id));
    } catch (err) {
      await unlinkIfPresent(tmp);
      throw err;
    }
    await fsyncDir(this.envDir);
  }

  /** Entry and message bytes; null when the entry does not exist (deleted) or cannot be parsed. */
  async readMessage(id: string): Promise<StoredMessage | null> {
    let file: Buffer;
    try {
      file = await fsp.readFile(this.msgPath(id));
    } catch {
      return null;
    }
    const nl = file.indexOf(0x0a);
    if (nl < 0) return null;
    const header = parseEntry(file.subarray(0, nl).toString('utf8'));
    if (!header || !isWhole(header, nl, file.length)) return null;
    let entry: QueueEntry | null = header;
    try {
      entry = parseEntry(await fsp.readFile(this.envPath(id), 'utf8')) ?? entry;
    } catch {
      /* no state yet: the header line is the state */
    }
    return entry && entry.id === id ? { entry, data: file.subarray(nl + 1) } : null;
  }

  async read(id: string): Promise<QueueEntry | null> {
    return (await this.readMessage(id))?.entry ?? null;
  }

  /** The envelope line of msg/<id> (reads only as far as the first newline) and the file's length. */
  private headerSync(id: string): { line: string; fileBytes: number } | null {
    let fd: number;
    try {
      fd = fs.openSync(this.msgPath(id), 'r');
    } catch {
      return null;
    }
    try {
      const fileBytes = fs.fstatSync(fd).size;
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const buf = Buffer.alloc(64 * 1024);
        const n = fs.readSync(fd, buf, 0, buf.length, total);
        if (n === 0) return null;
        const chunk = buf.subarray(0, n);
        const nl = chunk.indexOf(0x0a);
        if (nl >= 0) {
          chunks.push(chunk.subarray(0, nl));
          return { line: Buffer.concat(chunks).toString('utf8'), fileBytes };
        }
        chunks.push(chunk);
        total += n;
        if (total > MAX_HEADER) return null;
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The entry's state; null when it does not exist, cannot be parsed or is incomplete (see the top). */
  readSync(id: string): QueueEntry | null {
    const header = this.headerSync(id);
    if (header === null) return null;
    const first = parseEntry(header.line);
    if (!first || !isWhole(first, Buffer.byteLength(header.line), header.fileBytes)) return null;
    let entry: QueueEntry | null = first;
    try {
      entry = parseEntry(fs.readFileSync(this.envPath(id), 'utf8')) ?? entry;
    } catch {
      /* no state yet */
    }
    return entry && entry.id === id ? entry : null;
  }

  /** The message bytes of an entry (tests, tools). */
  readDataSync(id: string): Buffer | null {
    try {
      const file = fs.readFileSync(this.msgPath(id));
      const nl = file.indexOf(0x0a);
      return nl < 0 ? null : file.subarray(nl + 1);
    } catch {
      return null;
    }
  }

  /** Ids of existing entries (oldest first). */
  idsSync(): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.msgDir);
    } catch {
      return [];
    }
    return names.filter(isSafeId).sort();
  }

  listSync(): QueueEntry[] {
    const out: QueueEntry[] = [];
    for (const id of this.idsSync()) {
      const e = this.readSync(id);
      if (e) out.push(e);
    }
    return out;
  }

  /**
   * Remove an entry: the message file first (then it no longer exists), then its state (`hasState` false:
   * the caller knows no env/<id>.json was ever written, so there is nothing to unlink).
   */
  async remove(id: string, hasState = true): Promise<boolean> {
    // on the writer thread: unlink, then an fsync of msg/ (shared with the enqueues of the moment)
    const existed = await this.writer.remove(this.msgPath(id));
    // no fsync needed here: a state file that comes back after a crash is an orphan, removed at start-up
    if (hasState) await unlinkIfPresent(this.envPath(id));
    return existed;
  }

  /**
   * Start-up recovery (daemon only, before any enqueue): delete everything in tmp/ and state files whose
   * entry is gone. Returns what was removed, for the log.
   */
  recoverSync(): { tmp: number; orphans: number } {
    this.ensure();
    let tmp = 0;
    for (const n of fs.readdirSync(this.tmpDir)) {
      fs.rmSync(path.join(this.tmpDir, n), { force: true, recursive: true });
      tmp++;
    }
    const present = new Set(this.idsSync());
    let orphans = 0;
    for (const n of fs.readdirSync(this.envDir)) {
      if (!n.endsWith('.json') || !present.has(n.slice(0, -5))) {
        fs.rmSync(path.join(this.envDir, n), { force: true, recursive: true });
        orphans++;
      }
    }
    return { tmp, orphans };
  }

  /** Move an unreadable entry aside to corrupt/ (kept for the operator, never delivered). */
  quarantineSync(id: string): void {
    const dir = path.join(this.dir, 'corrupt');
    ensureDir(dir);
    for (const [from, to] of [
      [this.msgPath(id), path.join(dir, safe(id))],
      [this.envPath(id), path.join(dir, `${safe(id)}.json`)],
    ] as const) {
      try {
        fs.renameSync(from, to);
      } catch {
        /* the part may be missing */
      }
    }
  }

  /** Ask the running worker to retry everything now (it polls for this file). */
  requestFlushSync(): void {
    this.ensure();
    fs.writeFileSync(this.flushMarker, `${Date.now()}\n`, { mode: 0o600 });
  }

  /** Worker side: true (and the marker removed) when a flush was requested. */
  takeFlushRequestSync(): boolean {
    try {
      fs.unlinkSync(this.flushMarker);
      return true;
    } catch {
      return false;
    }
  }
}

/** unlink, ENOENT ignored (fsp.rm with force goes through rimraf: an lstat and more per call). */
async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function safe(id: string): string {
  if (!isSafeId(id)) throw new Error(`unsafe queue id ${JSON.stringify(id)}`);
  return id;
}

/** Envelope line, its newline, then exactly `size` message bytes; anything else was cut short (never acknowledged). */
function isWhole(entry: QueueEntry, lineBytes: number, fileBytes: number): boolean {
  return fileBytes === lineBytes + 1 + entry.size;
}

function parseEntry(text: string): QueueEntry | null {
  try {
    const r = entrySchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
