/*
 * A queue entry written while its message is still arriving (a large SMTP DATA): the bytes go to a file in
 * tmp/ as they come, so that when the message ends only the tail and one fsync remain before the 250, instead of
 * joining the whole message in memory and then writing it. The file is the one Spool.create makes (spool.ts):
 * the envelope as one JSON line, then the message bytes. The envelope is known at DATA but its `size` is not, so
 * the file starts with a reserved line (`reserve` bytes) that `commit` fills with the envelope JSON padded with
 * spaces before its newline (JSON allows trailing white space; readers take the line up to the newline and
 * check the file is that line + `size` bytes, so a padded line reads as any other).
 * Writes go in order, one at a time, each taking what arrived while the previous one ran (one writev); an fdatasync starts in the background every SYNC_EVERY
 * bytes (one at a time, as the FTP upload does), so the one before the 250 has only the tail left. A failed
 * write or background sync fails the commit (after a failed fsync Linux may mark the pages clean).
 * commit: the tail written, the envelope line written at offset 0, link into msg/ (never over an existing
 * name), unlink the tmp name, fsync of the file, close, then the folder fsync (shared, `syncFolder`) — the
 * order of Spool.create, so the crash reasoning of spool.ts holds (a linked but unsynced file has a short or
 * unreadable envelope line and is never delivered). abort: close and unlink; nothing reaches msg/.
 */
import fs from 'node:fs';
import { fdCall, writevAll } from '../net/fd-io.js';

/** Background fdatasync cadence (bytes) */
const SYNC_EVERY = 4 * 1024 * 1024;
/** above this many bytes not yet written, `write` answers false (the caller pauses its source) */
const HIGH_WATER = 8 * 1024 * 1024;

export class SpoolDraft {
  private fd: number | null = null;
  private readonly opened: Promise<number>;
  /** bytes waiting to be written, and how many */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** where the next write lands */
  private position: number;
  /** the write in flight, if any */
  private writing: Promise<void> | null = null;
  private syncing: Promise<void> | null = null;
  private syncedMark = 0;
  private error: Error | null = null;
  /** no more writes: committing or aborted */
  private done = false;
  /** committed or aborted */
  private finished = false;
  private room: (() => void) | null = null;
  /** message bytes taken so far */
  bytes = 0;

  constructor(
    private readonly tmp: string,
    private readonly dest: string,
    /** bytes kept free at the start of the file for the envelope line */
    readonly reserve: number,
    private readonly syncFolder: () => Promise<void>,
  ) {
    this.position = reserve;
    this.opened = fdCall<number>((cb) => fs.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600, cb));
    this.opened.then(
      (fd) => {
        if (this.done && this.error) {
          // aborted before the open finished
          fs.close(fd, () => undefined);
          fs.unlink(tmp, () => undefined);
          return;
        }
        this.fd = fd;
        this.flush();
      },
      (err: Error) => this.fail(err),
    );
  }

  /** Take `chunk` (not copied: the caller must not reuse it). false: pause the source until `onRoom`'s callback. */
  write(chunk: Buffer): boolean {
    if (this.done || this.error) return true;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.bytes += chunk.length;
    if (this.writing === null && this.fd !== null) this.flush();
    return this.pendingBytes < HIGH_WATER;
  }

  /** Called once, after `write` answered false, when the bytes waiting fell below half the high-water mark. */
  onRoom(fn: () => void): void {
    this.room = fn;
  }

  private flush(): void {
    const fd = this.fd;
    if (fd === null || this.writing !== null || this.pendingBytes === 0 || this.error) return;
    const bufs = this.pending;
    const n = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const at = this.position;
    this.position += n;
    this.writing = writevAll(fd, bufs, at).then(
      () => {
        this.writing = null;
        this.backgroundSync(fd);
        if (this.room && this.pendingBytes < HIGH_WATER / 2) {
          const room = this.room;
          this.room = null;
          room();
        }
        this.flush(); // what arrived meanwhile, in one writev
      },
      (err: Error) => {
        this.writing = null;
        this.fail(err);
      },
    );
  }

  private backgroundSync(fd: number): void {
    if (this.syncing !== null || this.done || this.position - this.syncedMark < SYNC_EVERY) return;
    this.syncedMark = this.position;
    this.syncing = fdCall<void>((cb) => fs.fdatasync(fd, (err) => cb(err, undefined))).then(
      () => {
        this.syncing = null;
      },
      (err: Error) => {
        this.syncing = null;
        this.fail(err);
      },
    );
  }

  private fail(err: Error): void {
    this.error ??= err;
    this.pending = [];
    this.pendingBytes = 0;
    const room = this.room;
    this.room = null;
    room?.(); // a paused source goes on (its bytes are dropped): the commit reports the failure
  }

  /** Everything taken is in the file (or the draft failed). */
  private async drain(): Promise<void> {
    await this.opened.catch(() => undefined);
    for (;;) {
      this.throwIfFailed();
      if (this.writing) await this.writing.catch(() => undefined);
      else if (this.pendingBytes > 0) {
        this.flush();
        if (!this.writing) throw new Error('spool draft: the file is not open');
      } else break;
    }
    if (this.syncing) await this.syncing.catch(() => undefined);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.error) throw this.error;
  }

  /**
   * Make it a queue entry: `line` (the envelope JSON, no newline, at most reserve - 1 bytes) padded into the
   * reserved line, link into msg/, fsync of file and folder. Resolves once the entry is durable.
   */
  async commit(line: string): Promise<void> {
    const head = Buffer.alloc(this.reserve, 0x20);
    const n = head.write(line, 0, 'utf8');
    if (n !== Buffer.byteLength(line) || n > this.reserve - 1) throw new Error('spool draft: envelope line longer than its reserve');
    head[this.reserve - 1] = 0x0a;
    try {
      await this.drain();
      this.done = true;
      const fd = this.fd!;
      await writevAll(fd, [head], 0);
      let linked = false;
      try {
        await fdCall<void>((cb) => fs.link(this.tmp, this.dest, (err) => cb(err, undefined))); // never over an existing entry
        linked = true;
      } finally {
        await fdCall<void>((cb) => fs.unlink(this.tmp, (err) => cb(err, undefined))).catch(() => undefined);
      }
      try {
        await fdCall<void>((cb) => fs.fsync(fd, (err) => cb(err, undefined))); // after the link: data, inode and name in one commit
      } catch (err) {
        if (linked) await fdCall<void>((cb) => fs.unlink(this.dest, (e) => cb(e, undefined))).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      this.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    this.finished = true;
    this.closeFd();
    await this.syncFolder();
  }

  /** Give up: no entry is made; the tmp file goes (start-up removes it should this fail). */
  abort(reason: Error = new Error('spool draft aborted')): void {
    if (this.finished) return;
    this.finished = true;
    this.done = true;
    this.fail(reason);
    void Promise.allSettled([this.writing, this.syncing]).then(() => {
      this.closeFd();
      fs.unlink(this.tmp, () => undefined);
    });
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.close(fd, () => undefined);
  }
}
