/*
 * The durable outgoing feed queue of one peer, beside the article store: <news>/feeds/<peer>.journal and
 * <peer>.cursor.
 *
 *   journal   append-only, one Message-ID and a LF per article to send; opened O_DSYNC, so an append returns
 *             once it is on disk (appends are serialised and batched: those waiting share the next write).
 *             A torn last line (crash mid-write, never acknowledged) is cut at open.
 *   cursor    "<offset> <last-id>": every entry before offset was answered by the peer (sent, duplicate or
 *             refused); written atomically (temp file, fsync, rename, fsync dir) after the answers, so a crash
 *             resends at most what was in flight: at-least-once, and the peer's duplicate answer ends it.
 *             last-id is the last Message-ID ever queued, so a queue emptied and compacted still knows where
 *             the store's arrivals stood (start-up recovery, feed-out.ts).
 *
 * When everything is answered and the journal is past COMPACT_BYTES, it is truncated and the cursor reset; a
 * crash between the two leaves a cursor beyond the journal's end, read as 0.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ensureDir, writeFileDurable } from '../net/atomic.js';

const COMPACT_BYTES = 1024 * 1024;
const O_DSYNC = fs.constants.O_DSYNC ?? 0;

export interface QueueEntry {
  readonly id: string;
  /** journal offset just after this entry */
  readonly end: number;
}

export class FeedQueue {
  private entries: QueueEntry[] = [];
  private size = 0;
  private cursor = 0;
  private last: string | null = null;
  private writer: fsp.FileHandle | null = null;
  private waiting: { ids: string[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;

  private constructor(
    readonly peer: string,
    private readonly journal: string,
    private readonly cursorFile: string,
  ) {}

  static async open(newsDir: string, peer: string): Promise<FeedQueue> {
    const dir = path.join(newsDir, 'feeds');
    ensureDir(dir);
    const q = new FeedQueue(peer, path.join(dir, `${peer}.journal`), path.join(dir, `${peer}.cursor`));
    await q.load();
    return q;
  }

  /** Read-only view for `gatehouse feed list` (the daemon may be appending meanwhile: nothing is changed). */
  static inspect(newsDir: string, peer: string): { pending: string[]; lastId: string | null } {
    const dir = path.join(newsDir, 'feeds');
    let data = Buffer.alloc(0);
    let cursor = 0;
    let last: string | null = null;
    try {
      data = fs.readFileSync(path.join(dir, `${peer}.journal`));
    } catch {
      /* no journal yet */
    }
    try {
      const [off, l] = fs.readFileSync(path.join(dir, `${peer}.cursor`), 'utf8').trim().split(' ');
      cursor = Number(off) || 0;
      last = l || null;
    } catch {
      /* no cursor yet */
    }
    const complete = data.lastIndexOf(0x0a) + 1;
    if (cursor > complete) cursor = 0;
    const lines = data.subarray(0, complete).toString('latin1').split('\n').filter((l) => l.length > 0);
    if (lines.length > 0) last = lines[lines.length - 1]!;
    const pending = data.subarray(cursor, complete).toString('latin1').split('\n').filter((l) => l.length > 0);
    return { pending, lastId: last };
  }

  private async load(): Promise<void> {
    let data = Buffer.alloc(0);
    try {
      data = await fsp.readFile(this.journal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const complete = data.lastIndexOf(0x0a) + 1;
    try {
      const [off, last] = (await fsp.readFile(this.cursorFile, 'utf8')).trim().split(' ');
      this.cursor = Number(off) || 0;
      this.last = last ?? null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (this.cursor > complete) this.cursor = 0; // compaction cut the journal before the cursor was reset
    this.writer = await fsp.open(this.journal, fs.constants.O_WRONLY | fs.constants.O_CREAT | O_DSYNC, 0o600);
    if (complete < data.length) {
      await this.writer.truncate(complete);
      if (!O_DSYNC) await this.writer.datasync();
    }
    this.size = complete;
    let pos = 0;
    for (let nl = data.indexOf(0x0a); nl >= 0 && nl < complete; nl = data.indexOf(0x0a, pos)) {
      const id = data.subarray(pos, nl).toString('latin1');
      pos = nl + 1;
      this.last = id;
      if (pos > this.cursor && id.length > 0) this.entries.push({ id, end: pos });
    }
  }

  /** Entries not yet answered by the peer, oldest first. */
  pending(max = Infinity): QueueEntry[] {
    return this.entries.slice(0, max);
  }

  get length(): number {
    return this.entries.length;
  }

  /** The last Message-ID ever queued (null for a queue that never had one). */
  get lastId(): string | null {
    return this.last;
  }

  /** Queue Message-IDs; resolves once they are on disk. */
  append(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting.push({ ids: [...ids], resolve, reject });
      this.writing ??= this.writeLoop();
    });
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting;
        this.waiting = [];
        const ids = batch.flatMap((b) => b.ids);
        try {
          if (!this.writer) throw new Error('feed queue is closed');
          const data = Buffer.from(ids.map((i) => `${i}\n`).join(''), 'latin1');
          let done = 0;
          while (done < data.length) done += (await this.writer.write(data, done, data.length - done, this.size + done)).bytesWritten;
          if (!O_DSYNC) await this.writer.datasync();
          let at = this.size;
          for (const id of ids) {
            at += Buffer.byteLength(id, 'latin1') + 1;
            this.entries.push({ id, end: at });
          }
          this.size = at;
          this.last = ids[ids.length - 1]!;
          batch.forEach((b) => b.resolve());
        } catch (err) {
          batch.forEach((b) => b.reject(err));
        }
      }
    } finally {
      this.writing = null;
    }
  }

  /** Every entry up to and including `upTo` has been answered: move the cursor durably. */
  async done(upTo: QueueEntry): Promise<void> {
    const i = this.entries.indexOf(upTo);
    if (i < 0) return;
    this.entries.splice(0, i + 1);
    this.cursor = upTo.end;
    await writeFileDurable(this.cursorFile, `${this.cursor} ${this.last ?? ''}\n`, 0o600);
    if (this.entries.length === 0 && this.size >= COMPACT_BYTES && !this.writing && this.writer) {
      await this.writer.truncate(0);
      await this.writer.sync();
      this.size = 0;
      this.cursor = 0;
      await writeFileDurable(this.cursorFile, `0 ${this.last ?? ''}\n`, 0o600);
    }
  }

  async close(): Promise<void> {
    while (this.writing) await this.writing;
    await this.writer?.close();
    this.writer = null;
  }
}
