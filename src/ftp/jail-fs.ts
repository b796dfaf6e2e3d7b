/*
 * The jailed file system ftp-srv talks to (it replaces ftp-srv's FileSystem, whose resolver is lexical and
 * follows symlinks). Every client path goes through policy/paths: resolveVirtual → decidePath → confine,
 * and only the JailPath that comes out is ever handed to node:fs. Every decision is recorded. Uploads are
 * written by `Upload` (temp name in the same folder, fsync, atomic rename or no-replace link, fsync folder).
 */
import crypto from 'node:crypto';
import fs, { constants as C, type Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Decision } from '../policy/index.js';
import {
  TEMP_PREFIX,
  confine,
  decidePath,
  isDropBox,
  listable,
  locate,
  permFacts,
  resolveVirtual,
  type Jail,
  type JailPath,
  type Mount,
  type PathAction,
} from '../policy/paths.js';
import { fdCall, writevAll, writevAllSync } from '../net/fd-io.js';
import { FileSource } from './file-source.js';
import { QuotaExceeded, type QuotaBook } from './quota.js';

export class FtpReplyError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export type Recorder = (phase: string, decision: Decision, object: string) => void;

type Mode = 'existing' | 'create' | 'maybe';

const DENIED = 'Permission denied';
const MISSING = 'No such file or directory';

function noWriteMount(mount: Mount): boolean {
  return isDropBox(mount) || mount.kind === 'incoming';
}

export class JailFs {
  private cwd = '/';

  constructor(
    readonly connection: unknown,
    private readonly jail: Jail,
    private readonly record: Recorder,
    private readonly quota: QuotaBook,
  ) {}

  get root(): string {
    return this.jail.root.dir;
  }

  currentDirectory(): string {
    return this.cwd;
  }

  /** Every fs error becomes a generic reply: ftp-srv would send err.message, which names server paths. */
  private async guard<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FtpReplyError || err instanceof QuotaExceeded) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      const text = code === 'EEXIST' ? 'File exists' : code === 'ENOENT' ? MISSING : code === 'ENOTEMPTY' ? 'Directory not empty' : code === 'ENOTDIR' ? 'Not a directory' : 'Requested action not taken';
      throw new FtpReplyError(550, text);
    }
  }

  get(fileName: string): Promise<Stats & { name: string }> {
    return this.guard(() => this.getImpl(fileName));
  }

  list(dir = '.'): Promise<(Stats & { name: string })[]> {
    return this.guard(() => this.listImpl(dir));
  }

  chdir(dir = '.'): Promise<string> {
    return this.guard(() => this.chdirImpl(dir));
  }

  read(fileName: string, opts: { start?: number } = {}): Promise<{ stream: Readable & { bytesRead: number }; clientPath: string }> {
    return this.guard(() => this.readImpl(fileName, opts));
  }

  delete(target: string): Promise<void> {
    return this.guard(() => this.deleteImpl(target));
  }

  mkdir(dir: string): Promise<string> {
    return this.guard(() => this.mkdirImpl(dir));
  }

  rename(from: string, to: string): Promise<void> {
    return this.guard(() => this.renameImpl(from, to));
  }

  openUpload(fileName: string, kind: 'stor' | 'appe', restOffset: number): Promise<Upload> {
    return this.guard(() => this.openUploadImpl(fileName, kind, restOffset));
  }

  /** Resolve, decide and confine one client path; throws an FtpReplyError on refusal. */
  resolve(input: string | null | undefined, action: PathAction, mode: Mode): JailPath {
    const raw = input ?? '.';
    const lex = resolveVirtual(this.cwd, raw);
    if (!lex.ok) {
      this.record(action, lex.decision, raw);
      throw new FtpReplyError(553, 'File name not allowed');
    }
    const target = locate(this.jail, lex);
    const d = decidePath(target, action);
    if (!d.allow) {
      this.record(action, d, lex.virtual);
      throw new FtpReplyError(550, DENIED);
    }
    const c = confine(target, mode);
    if (!c.ok) {
      this.record(action, c.decision, lex.virtual);
      throw new FtpReplyError(550, c.missing ? MISSING : DENIED);
    }
    this.record(action, d, lex.virtual);
    return c.path;
  }

  /** The canonical virtual path of a client path, or null (no decision: the get/list that follows decides). */
  virtualOf(input: string | null | undefined): string | null {
    const lex = resolveVirtual(this.cwd, input ?? '.');
    return lex.ok ? lex.virtual : null;
  }

  /** RFC 3659 `perm` letters of the entry at `virtual` (a canonical virtual path), from policy/paths. */
  perm(virtual: string, dir: boolean): string {
    const lex = resolveVirtual('/', virtual);
    return lex.ok ? permFacts(locate(this.jail, lex), dir ? 'dir' : 'file') : '';
  }

  private named(st: Stats, name: string): Stats & { name: string } {
    return Object.assign(st, { name });
  }

  private async getImpl(fileName: string): Promise<Stats & { name: string }> {
    const p = this.resolve(fileName, 'stat', 'existing');
    return this.named(p.stat ?? (await fsp.lstat(p.abs)), path.posix.basename(p.virtual) || '/');
  }

  private async listImpl(dir = '.'): Promise<(Stats & { name: string })[]> {
    const p = this.resolve(dir, 'list', 'existing');
    if (!p.stat?.isDirectory()) return [this.named(p.stat ?? (await fsp.lstat(p.abs)), path.posix.basename(p.virtual))];
    // Names a client could not have created (control characters) are not shown: they would break NLST framing.
    const names = (await fsp.readdir(p.abs)).filter((n) => !n.startsWith(TEMP_PREFIX) && !/[\u0000-\u001f\u007f]/.test(n)).slice(0, 20_000);
    const out: (Stats & { name: string })[] = [];
    const mountedHere = p.virtual === '/' && p.mount === this.jail.root;
    for (const name of names) {
      if (mountedHere && this.jail.mounts.has(name)) continue;
      const st = listable(p, name);
      if (st) out.push(this.named(st, name));
    }
    if (mountedHere) {
      for (const [name, m] of this.jail.mounts) {
        try {
          out.push(this.named(await fsp.stat(m.dir), name));
        } catch {
          /* share folder missing: not shown */
        }
      }
    }
    return out;
  }

  private chdirImpl(dir = '.'): string {
    const p = this.resolve(dir, 'cwd', 'existing');
    if (!p.stat?.isDirectory()) throw new FtpReplyError(550, 'Not a directory');
    this.cwd = p.virtual;
    return this.cwd;
  }

  private async readImpl(fileName: string, { start }: { start?: number } = {}): Promise<{ stream: Readable & { bytesRead: number }; clientPath: string }> {
    const p = this.resolve(fileName, 'read', 'existing');
    if (!p.stat?.isFile()) throw new FtpReplyError(550, 'Not a plain file');
    // open and fstat for reading never wait for the disk journal: done inline (no thread-pool round trips).
    const fd = fs.openSync(p.abs, C.O_RDONLY | C.O_NOFOLLOW);
    let st: Stats;
    try {
      st = fs.fstatSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    if (!st.isFile() || st.ino !== p.stat.ino || st.nlink > 1) {
      fs.closeSync(fd);
      throw new FtpReplyError(550, DENIED);
    }
    // Uploads land by rename, so the opened inode does not change: reading exactly its size saves the
    // end-of-file read.
    const from = start && start > 0 ? start : 0;
    const left = Math.max(st.size - from, 0);
    if (left <= SMALL_READ) {
      // A small file is read whole (one pool round trip) before the 150, so that 150, data and 226 leave
      // back to back; the descriptor is closed inline.
      let data: Buffer;
      try {
        data = left === 0 ? Buffer.alloc(0) : await readAt(fd, left, from);
      } finally {
        fs.closeSync(fd);
      }
      const stream = Object.assign(new Readable({ read() {} }), { bytesRead: data.length });
      if (data.length > 0) stream.push(data);
      stream.push(null);
      return { stream, clientPath: p.virtual };
    }
    // a big file: read in CHUNK-sized turns into reused buffers (file-source.ts), the descriptor closed inline at the end
    return { stream: new FileSource(fd, from, st.size), clientPath: p.virtual };
  }

  write(): never {
    throw new FtpReplyError(502, 'Not supported');
  }

  private async deleteImpl(target: string): Promise<void> {
    const p = this.resolve(target, 'delete', 'existing');
    if (p.stat?.isDirectory()) {
      await fsp.rmdir(p.abs).catch((err: NodeJS.ErrnoException) => {
        throw new FtpReplyError(550, err.code === 'ENOTEMPTY' ? 'Directory not empty' : 'Cannot remove directory');
      });
    } else {
      await fsp.unlink(p.abs);
      this.quota.give(p.mount.dir, p.stat?.size ?? 0);
    }
    await syncFolder(path.dirname(p.abs)).catch(() => undefined);
  }

  private async mkdirImpl(dir: string): Promise<string> {
    const p = this.resolve(dir, 'mkdir', 'create');
    await fsp.mkdir(p.abs, { mode: 0o700 });
    await syncFolder(path.dirname(p.abs)).catch(() => undefined);
    return p.virtual;
  }

  private async renameImpl(from: string, to: string): Promise<void> {
    const a = this.resolve(from, 'rename_from', 'existing');
    const b = this.resolve(to, 'rename_to', 'create');
    if (a.mount !== b.mount) throw new FtpReplyError(553, 'Cannot move between folders of different mounts');
    if (a.stat?.isDirectory() && (b.abs + path.sep).startsWith(a.abs + path.sep)) throw new FtpReplyError(553, 'Cannot move a folder into itself');
    // No-replace: the target was proven absent; link+unlink would not work for folders, so re-check late.
    if (fs.existsSync(b.abs)) throw new FtpReplyError(553, 'File exists');
    await fsp.rename(a.abs, b.abs);
    await syncFolder(path.dirname(b.abs)).catch(() => undefined);
    if (path.dirname(a.abs) !== path.dirname(b.abs)) await syncFolder(path.dirname(a.abs)).catch(() => undefined);
  }

  getUniqueName(): string {
    return `upload-${crypto.randomBytes(6).toString('hex')}`;
  }

  /**
   * Prepare an upload (STOR/APPE/STOU) before any byte is read: decide, confine, pick create vs overwrite,
   * and open the temp file. `offset` is REST (STOR) or the current size (APPE): that prefix is copied.
   */
  private async openUploadImpl(fileName: string, kind: 'stor' | 'appe', restOffset: number): Promise<Upload> {
    const created = this.resolve(fileName, 'create', 'maybe');
    let target = created;
    const exists = created.stat !== null;
    const noReplace = noWriteMount(created.mount);
    // In a drop box a clash of any kind just gets another name (a refusal would reveal what is there).
    if (exists && !noReplace && !created.stat.isFile()) throw new FtpReplyError(550, 'Not a plain file');
    if (exists && !noReplace) target = this.resolve(fileName, kind === 'appe' ? 'append' : 'overwrite', 'existing');
    if (noReplace && (kind === 'appe' || restOffset > 0)) {
      this.record('append', decidePath({ virtual: created.virtual, mount: created.mount, rest: [path.basename(created.abs)], isJailRoot: false }, 'append'), created.virtual);
      throw new FtpReplyError(550, DENIED);
    }
    await this.quota.used(target.mount.dir);
    let prefix = 0;
    if (exists && !noReplace) {
      const size = target.stat?.size ?? 0;
      prefix = kind === 'appe' ? size : restOffset;
      if (prefix > size) throw new FtpReplyError(554, 'Restart offset beyond the end of the file');
    } else if (restOffset > 0) {
      throw new FtpReplyError(554, 'Restart offset beyond the end of the file');
    }
    // The temp file is created (and a REST/APPE prefix copied) while the 150 goes out: writes wait for it.
    return new Upload(target, noReplace, exists && !noReplace ? (target.stat?.size ?? 0) : 0, this.quota, prefix);
  }
}

/** Files up to this size are read whole before the 150 (RETR). */
const SMALL_READ = 64 * 1024;

/** Read exactly `length` bytes at `position` (fewer only at an unexpected end of file). */
async function readAt(fd: number, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = await fdCall<number>((cb) => fs.read(fd, buf, got, length - got, position + got, cb));
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/** fsync of a folder entry; open and close inline (they never wait for the disk), the fsync in the pool. */
async function syncFolder(dir: string): Promise<void> {
  const fd = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
  } finally {
    fs.closeSync(fd);
  }
}

/** Background fdatasync cadence of an upload in progress (bytes). */
const SYNC_EVERY = 4 * 1024 * 1024;

/**
 * Inline writes. A plain upload's bytes are written into the page cache by the event loop itself, right after they
 * were received into the slab (net/slab-feed.ts): the slab is still in this core's cache, and no thread-pool round trip
 * is made. Through the pool, another core copies a slab it has never seen, and every write is a hand-off each way:
 * side by side on this box (bench/README, 2026-12-06 box D, durable STOR), inline writes took 91–128 ms of server
 * CPU per 200 MiB against 114–309 ms and moved 1,419–1,903 MiB/s against 693–1,814. A write into the page cache
 * normally costs what copying the bytes costs (~0.3 ms per MiB); it waits for the disk when the kernel throttles
 * writers (too much dirty data) or the journal holds it (here: one write in ~200 took 30–40 ms). The time inline
 * writes spend beyond INLINE_SLOW_MS per MiB comes out of a budget of the event loop's time (STALL_BUDGET_MS,
 * refilled at STALL_REFILL_PER_S ms per second: at most 1 % on average); when it is spent, every upload of the
 * process writes through the pool for INLINE_PAUSE_MS, so that the event loop (all sessions) does not keep waiting
 * for a slow disk, and they stay there until a stall longer than the budget has been paid back. fdatasync always
 * runs in the pool.
 */
const INLINE_SLOW_MS = 4;
/**
 * Only writes of at least this size go inline (the slabs of plain uploads, ~1 MiB). Smaller chunks (FTPS: 16 KiB
 * records piped in) go through the pool, where the ones that arrive during a write are gathered into one writev;
 * inline, each would be a syscall of its own (measured: more CPU per FTPS STOR).
 */
const INLINE_MIN = 256 * 1024;
const STALL_BUDGET_MS = 100;
const STALL_REFILL_PER_S = 10;
const INLINE_PAUSE_MS = 10_000;

/** The inline-write state: the budget left (ms) at `at` (performance.now()), and no inline write before `after`. */
export interface InlineState {
  readonly budget: number;
  readonly at: number;
  readonly after: number;
}

let inline: InlineState = { budget: STALL_BUDGET_MS, at: 0, after: 0 };

/**
 * The state after an inline write of `bytes` that took `ms`, ending at `now`. Pure (table-tested): the budget is
 * refilled for the time since `at` (capped), a write slower than INLINE_SLOW_MS per MiB (at least per MiB) takes
 * its time out of it, and a spent budget stops inline writes for INLINE_PAUSE_MS.
 */
export function afterInlineWrite(s: InlineState, now: number, ms: number, bytes: number): InlineState {
  let budget = refilled(s, now);
  if (ms > INLINE_SLOW_MS * Math.max(1, bytes / (1024 * 1024))) budget -= ms;
  return { budget, at: now, after: budget < 0 ? Math.max(s.after, now + INLINE_PAUSE_MS) : s.after };
}

/**
 * May a write go inline at `now`? Not during a pause, nor while the budget, refilled to now, is still overdrawn
 * (after a stall far longer than the budget, writes stay in the pool until it has been paid back). Pure.
 */
export function inlineAllowed(s: InlineState, now: number): boolean {
  return now >= s.after && refilled(s, now) >= 0;
}

function refilled(s: InlineState, now: number): number {
  return Math.min(STALL_BUDGET_MS, s.budget + ((now - s.at) / 1000) * STALL_REFILL_PER_S);
}

/** Tests: make every upload write through the pool for `ms` (0: inline again at once, with a full budget). */
export function pauseInlineWrites(ms: number): void {
  inline = { budget: STALL_BUDGET_MS, at: performance.now(), after: ms > 0 ? performance.now() + ms : 0 };
}

/**
 * A Writable that lands bytes in `<folder>/.gh-part-<random>`, and on end fsyncs it and moves it to the
 * final name: rename (may replace, only when overwrite was granted) or link (never replaces: a clash gets
 * `name.1`, `name.2`, …), then fsyncs the folder. Destroyed before the end → the temp file is removed and
 * the final name was never touched.
 */
export class Upload extends Writable {
  /** the temp file's descriptor: raw, so that the close after the final fdatasync is an inline syscall */
  private fd: number | null = null;
  /** every descriptor operation in flight; the descriptor is closed only once they have settled */
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly temp: string;
  private written = 0;
  private committed = false;
  /** bytes written when the last background fdatasync was started */
  private syncedMark = 0;
  private syncing: Promise<void> | null = null;
  private syncError: Error | null = null;
  /** the replaced file, held open from before the rename until release() (see holdReplaced) */
  private replaced: number | null = null;
  finalName: string;

  constructor(
    readonly target: JailPath,
    private readonly noReplace: boolean,
    private readonly replacedBytes: number,
    private readonly quota: QuotaBook,
    private readonly prefix = 0,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.temp = path.join(path.dirname(target.abs), `${TEMP_PREFIX}${crypto.randomBytes(8).toString('hex')}`);
    this.finalName = target.abs;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /** true when the temp file could not be created or the prefix not copied (nothing was stored) */
  openFailed = false;

  override _construct(cb: (err?: Error | null) => void): void {
    this.open(this.prefix).then(
      () => cb(),
      (err: Error) => {
        this.openFailed = true;
        cb(err);
      },
    );
  }

  private async open(prefix: number): Promise<void> {
    // O_CREAT waits for the journal (inode allocation): in the pool
    this.fd = await this.track(fdCall<number>((cb) => fs.open(this.temp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600, cb)));
    if (prefix > 0) {
      this.quota.take(this.target.mount.dir, prefix);
      this.written += prefix;
      const src = await fsp.open(this.target.abs, C.O_RDONLY | C.O_NOFOLLOW);
      try {
        const buf = Buffer.allocUnsafe(1024 * 1024);
        let pos = 0;
        while (pos < prefix) {
          const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, prefix - pos), pos);
          if (bytesRead === 0) break;
          await this.track(writevAll(this.fd, [buf.subarray(0, bytesRead)]));
          pos += bytesRead;
        }
      } finally {
        await src.close();
      }
    }
  }

  get bytes(): number {
    return this.written;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk }], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => c.chunk);
    const n = bufs.reduce((a, b) => a + b.length, 0);
    try {
      this.quota.take(this.target.mount.dir, n);
    } catch (err) {
      cb(err as QuotaExceeded);
      return;
    }
    this.written += n;
    if (this.fd === null) {
      cb(new Error('upload closed'));
      return;
    }
    const t0 = performance.now();
    if (n >= INLINE_MIN && inlineAllowed(inline, t0)) {
      try {
        writevAllSync(this.fd, bufs);
      } catch (err) {
        cb(err as Error);
        return;
      }
      const t1 = performance.now();
      inline = afterInlineWrite(inline, t1, t1 - t0, n);
      this.wrote(cb);
      return;
    }
    this.track(writevAll(this.fd, bufs)).then(
      () => this.wrote(cb),
      (err: Error) => cb(err),
    );
  }

  /**
   * After a write: once SYNC_EVERY more bytes are in the page cache, start an fdatasync in the background
   * (one at a time) while the transfer goes on, so the one before the 226 only has the tail to flush. A
   * failed background sync fails the upload (after a failed fsync Linux may mark the pages clean, so a
   * later fsync's success would prove nothing).
   */
  private wrote(cb: (err?: Error | null) => void): void {
    if (this.syncError) {
      cb(this.syncError);
      return;
    }
    const fd = this.fd;
    if (fd !== null && this.syncing === null && this.written - this.syncedMark >= SYNC_EVERY) {
      this.syncedMark = this.written;
      this.syncing = this.track(fdCall<void>((done) => fs.fdatasync(fd, done))).then(
        () => {
          this.syncing = null;
        },
        (err: Error) => {
          this.syncError = err;
          this.syncing = null;
        },
      );
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.commit().then(
      () => cb(),
      (err: Error) => cb(err),
    );
  }

  private async commit(): Promise<void> {
    const fd = this.fd!;
    if (this.syncing) await this.syncing;
    if (this.syncError) throw this.syncError;
    // fdatasync: the bytes and the size (what reading them back needs) reach the disk before the rename.
    await this.track(fdCall<void>((done) => fs.fdatasync(fd, done)));
    if (this.fd !== fd) throw new Error('upload destroyed');
    this.fd = null;
    fs.closeSync(fd);
    if (this.noReplace) {
      const base = this.target.abs;
      for (let i = 0; ; i++) {
        const name = i === 0 ? base : `${base}.${i}`;
        try {
          await fsp.link(this.temp, name);
          this.finalName = name;
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 999) throw err;
        }
      }
      await fsp.unlink(this.temp);
    } else {
      this.holdReplaced();
      await fsp.rename(this.temp, this.target.abs);
      this.quota.give(this.target.mount.dir, this.replacedBytes);
    }
    this.committed = true;
    await syncFolder(path.dirname(this.target.abs));
  }

  /**
   * The file a rename replaces is held open across the rename, so that its data is freed by `release()` after the
   * 226 rather than inside the rename: dropping the last link of a 200 MiB file frees its pages and blocks in that
   * syscall (~40 ms on this box's ext4, a third of the whole transfer). Best effort: a name that cannot be opened
   * (none, or a special file) is simply not held.
   */
  private holdReplaced(): void {
    try {
      this.replaced = fs.openSync(this.target.abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch {
      this.replaced = null;
    }
  }

  /** Let go of the replaced file (its data is freed in the thread pool); once the 226 is out. Idempotent. */
  release(): void {
    const fd = this.replaced;
    this.replaced = null;
    if (fd !== null) fs.close(fd, () => undefined);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const cleanup = async () => {
      // a write, sync or open still running on the descriptor finishes before it is closed (no reuse race)
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
      const fd = this.fd;
      this.fd = null;
      if (fd !== null) fs.closeSync(fd);
      if (!this.committed) {
        this.release();
        await fsp.rm(this.temp, { force: true }).catch(() => undefined);
        this.quota.give(this.target.mount.dir, this.written);
      }
    };
    cleanup().then(
      () => cb(err),
      () => cb(err),
    );
  }
}

export { QuotaExceeded };
