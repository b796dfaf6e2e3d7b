/*
 * The durable article store under <state_dir>/news.
 *
 *   spool          append-only: per article one JSON line (message-id, per-group numbers, arrival time,
 *                  header block, b = article size, line count, c = CRC-32 of the article bytes) followed by
 *                  the b article bytes and a LF. A cross-post is one record (one copy) with several group
 *                  numbers. The file is kept zero-filled PREALLOCATE bytes beyond its last record, so that a
 *                  commit overwrites allocated blocks and its data sync needs no journal commit (size and
 *                  block map unchanged: about half the cost of a sync that grows the file).
 *   groups.json    every group ever configured, with its creation time (NEWGROUPS); written atomically
 *
 * An article is acknowledged only after its record is on disk: the spool is opened O_DSYNC, so the one write of
 * a batch returns once its bytes are durable (group commit: posts that arrive while one write runs share the
 * next). The record is the commit point, so there is nothing to rename: on open the spool is replayed and a
 * torn tail (crash mid-write; never acknowledged) is cut off together with the zero-filled space after it.
 * Written into preallocated space, an unsynced batch can reach the disk with holes (pages missing, zeros in
 * their place) rather than only short, so a record counts only if its CRC matches. Numbers are never reused: a
 * group's high-water mark is the highest number in the spool. Only the overview is held in memory; article
 * bytes are read from the spool by offset.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { ensureDir, fsyncDir, writeFileDurable } from '../net/atomic.js';

export interface StoredArticle {
  readonly messageId: string;
  /** where the article bytes are in the spool */
  readonly offset: number;
  /** group name → article number in that group */
  readonly numbers: Readonly<Record<string, number>>;
  /** arrival time, ms since epoch */
  readonly arrived: number;
  /** header block as a binary (latin1) string, lines joined by CRLF, no trailing blank line */
  readonly head: string;
  readonly bytes: number;
  readonly lines: number;
}

export interface GroupState {
  readonly name: string;
  readonly created: number;
  low: number;
  high: number;
  count: number;
}

interface RecordHead {
  m: string;
  g: Record<string, number>;
  t: number;
  h: string;
  b: number;
  l: number;
  /** CRC-32 of the article bytes (records written before it was added have none) */
  c?: number;
}

interface Pending {
  /** the whole record: head line, article bytes, LF */
  readonly record: Buffer;
  /** length of the head line (where the article bytes start in `record`) */
  readonly headBytes: number;
  readonly resolve: (offset: number) => void;
  readonly reject: (err: unknown) => void;
}

export class ArticleStore {
  private readonly byId = new Map<string, StoredArticle>();
  private readonly perGroup = new Map<string, { nums: number[]; map: Map<number, StoredArticle> }>();
  private readonly groups = new Map<string, GroupState>();
  private readonly high = new Map<string, number>();
  private readonly reserved = new Set<string>();
  private pending: Pending[] = [];
  private committing: Promise<void> | null = null;
  private writer: fs.promises.FileHandle | null = null;
  private reader: fs.promises.FileHandle | null = null;
  /** end of the last record: where the next batch is written */
  private size = 0;
  /** file size: [size, allocated) is zero-filled */
  private allocated = 0;
  private arrivals: StoredArticle[] = [];

  private constructor(
    readonly dir: string,
    private readonly clock: () => number,
  ) {}

  private get spoolFile(): string {
    return path.join(this.dir, 'spool');
  }

  private get groupsFile(): string {
    return path.join(this.dir, 'groups.json');
  }

  static async open(dir: string, groupNames: readonly string[], clock: () => number = Date.now): Promise<ArticleStore> {
    const store = new ArticleStore(dir, clock);
    ensureDir(dir);
    await store.loadGroups();
    store.writer = await fsp.open(store.spoolFile, fs.constants.O_RDWR | fs.constants.O_CREAT | O_DSYNC, 0o600);
    await fsyncDir(dir);
    store.reader = await fsp.open(store.spoolFile, 'r');
    await store.replay();
    await store.syncGroups(groupNames);
    return store;
  }

  private async loadGroups(): Promise<void> {
    let data: Record<string, { created: number }> = {};
    try {
      data = JSON.parse(await fsp.readFile(this.groupsFile, 'utf8')) as Record<string, { created: number }>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const [name, g] of Object.entries(data)) {
      this.groups.set(name, { name, created: Number(g.created) || 0, low: 1, high: 0, count: 0 });
    }
  }

  /** Read and check the records one by one; cut a torn tail and the zero-filled space after the last record. */
  private async replay(): Promise<void> {
    const fh = this.reader!;
    const total = (await fh.stat()).size;
    let pos = 0;
    while (pos < total) {
      const rec = await this.readRecordHead(pos, total);
      if (!rec) break;
      this.index({ messageId: rec.m, offset: rec.start, numbers: rec.g, arrived: rec.t, head: rec.h, bytes: rec.b, lines: rec.l });
      pos = rec.start + rec.b + 1;
    }
    if (pos < total) {
      await fh.close();
      await fsp.truncate(this.spoolFile, pos);
      await this.writer!.sync();
      this.reader = await fsp.open(this.spoolFile, 'r');
    }
    this.size = pos;
    this.allocated = pos;
  }

  private async readRecordHead(pos: number, total: number): Promise<(RecordHead & { start: number }) | null> {
    const fh = this.reader!;
    for (let want = 4096; want <= 4 * 1024 * 1024; want *= 4) {
      const len = Math.min(want, total - pos);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, pos);
      if (buf[0] !== 0x7b) return null; // not a record head: the zero-filled tail (or damage)
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (pos + len >= total) return null; // torn head line
        continue;
      }
      let j: RecordHead;
      try {
        j = JSON.parse(buf.subarray(0, nl).toString('latin1')) as RecordHead;
      } catch {
        return null;
      }
      if (typeof j.m !== 'string' || typeof j.h !== 'string' || !j.g || !Number.isInteger(j.b) || j.b < 0) return null;
      if (j.c !== undefined && !Number.isInteger(j.c)) return null;
      const start = pos + nl + 1;
      if (start + j.b + 1 > total) return null; // torn article bytes
      // The article bytes and their LF: from the buffer when they are in it, else one more read.
      let bytes: Buffer;
      if (nl + 1 + j.b < len) bytes = buf.subarray(nl + 1, nl + 2 + j.b);
      else {
        const n = j.c === undefined ? 1 : j.b + 1; // an old record without CRC: only its LF is checked
        bytes = Buffer.alloc(n);
        if ((await fh.read(bytes, 0, n, start + j.b + 1 - n)).bytesRead !== n) return null;
      }
      if (bytes[bytes.length - 1] !== 0x0a) return null;
      if (j.c !== undefined && crc32(bytes.subarray(0, j.b)) !== j.c) return null; // a hole in an unsynced write
      return { ...j, start };
    }
    return null;
  }

  /** Create the groups named in config that the store has never seen (creation time = now). */
  async syncGroups(names: readonly string[]): Promise<void> {
    let changed = false;
    for (const name of names) {
      if (this.groups.has(name)) continue;
      this.groups.set(name, { name, created: this.clock(), low: 1, high: this.high.get(name) ?? 0, count: 0 });
      this.recount(name);
      changed = true;
    }
    if (!changed) return;
    const data: Record<string, { created: number }> = {};
    for (const g of this.groups.values()) data[g.name] = { created: g.created };
    await writeFileDurable(this.groupsFile, JSON.stringify(data), 0o600);
  }

  private recount(name: string): void {
    const g = this.groups.get(name);
    const pg = this.perGroup.get(name);
    if (!g) return;
    g.high = Math.max(g.high, this.high.get(name) ?? 0);
    if (pg && pg.nums.length > 0) {
      g.low = pg.nums[0]!;
      g.count = pg.nums.length;
    } else {
      g.low = g.high + 1;
      g.count = 0;
    }
  }

  private index(a: StoredArticle): void {
    if (this.byId.has(a.messageId)) return;
    this.byId.set(a.messageId, a);
    this.arrivals.push(a);
    for (const [group, n] of Object.entries(a.numbers)) {
      let pg = this.perGroup.get(group);
      if (!pg) this.perGroup.set(group, (pg = { nums: [], map: new Map() }));
      if (pg.map.has(n)) continue;
      pg.map.set(n, a);
      const last = pg.nums[pg.nums.length - 1];
      if (last === undefined || n > last) pg.nums.push(n);
      else pg.nums.splice(lowerBound(pg.nums, n), 0, n);
      this.high.set(group, Math.max(this.high.get(group) ?? 0, n));
      if (!this.groups.has(group)) this.groups.set(group, { name: group, created: 0, low: 1, high: 0, count: 0 });
      this.recount(group);
    }
  }

  group(name: string): GroupState | null {
    return this.groups.get(name) ?? null;
  }

  /** True when the message-id is stored or being stored. */
  has(messageId: string): boolean {
    return this.byId.has(messageId) || this.reserved.has(messageId);
  }

  byMessageId(messageId: string): StoredArticle | null {
    return this.byId.get(messageId) ?? null;
  }

  byNumber(group: string, n: number): StoredArticle | null {
    return this.perGroup.get(group)?.map.get(n) ?? null;
  }

  /** Numbers in [lo, hi] of a group, ascending. */
  range(group: string, lo: number, hi: number): number[] {
    const pg = this.perGroup.get(group);
    if (!pg || hi < lo) return [];
    const out: number[] = [];
    for (let i = lowerBound(pg.nums, lo); i < pg.nums.length && pg.nums[i]! <= hi; i++) out.push(pg.nums[i]!);
    return out;
  }

  /** The next number after n (dir 1) or before n (dir -1) in a group, or null. */
  step(group: string, n: number, dir: 1 | -1): number | null {
    const pg = this.perGroup.get(group);
    if (!pg) return null;
    const i = lowerBound(pg.nums, n);
    if (dir === 1) {
      const j = pg.nums[i] === n ? i + 1 : i;
      return pg.nums[j] ?? null;
    }
    return i > 0 ? pg.nums[i - 1]! : null;
  }

  /** Articles that arrived at or after `since` (ms), oldest first. */
  arrivedSince(since: number): StoredArticle[] {
    const out: StoredArticle[] = [];
    for (let i = this.arrivals.length - 1; i >= 0 && this.arrivals[i]!.arrived >= since; i--) out.push(this.arrivals[i]!);
    return out.reverse();
  }

  async read(a: StoredArticle): Promise<Buffer> {
    const fh = this.reader;
    if (!fh) throw new Error('article store is closed');
    const buf = Buffer.alloc(a.bytes);
    const { bytesRead } = await fh.read(buf, 0, a.bytes, a.offset);
    if (bytesRead !== a.bytes) throw new Error(`short read of ${a.messageId}`);
    return buf;
  }

  /** Reserve a message-id while its article is being stored (duplicates are refused meanwhile). */
  reserve(messageId: string): boolean {
    if (this.has(messageId)) return false;
    this.reserved.add(messageId);
    return true;
  }

  release(messageId: string): void {
    this.reserved.delete(messageId);
  }

  /**
   * Store an article in the given groups; resolves once its record is on disk. The caller must hold a
   * reservation for the message-id.
   */
  async add(messageId: string, groups: readonly string[], head: string, article: Buffer, lines: number): Promise<StoredArticle> {
    const numbers: Record<string, number> = {};
    for (const g of groups) {
      const n = (this.high.get(g) ?? 0) + 1;
      this.high.set(g, n);
      numbers[g] = n;
    }
    const arrived = this.clock();
    const rec: RecordHead = { m: messageId, g: numbers, t: arrived, h: head, b: article.length, l: lines, c: crc32(article) };
    // One buffer per record (head line, article, LF): a lone record is written as it is, without a batch copy.
    const line = `${JSON.stringify(rec)}\n`;
    const headBytes = Buffer.byteLength(line, 'latin1');
    const record = Buffer.allocUnsafe(headBytes + article.length + 1);
    record.write(line, 0, 'latin1');
    article.copy(record, headBytes);
    record[record.length - 1] = 0x0a;
    const offset = await this.append(record, headBytes);
    const a: StoredArticle = { messageId, offset, numbers, arrived, head, bytes: article.length, lines };
    this.index(a);
    this.reserved.delete(messageId);
    return a;
  }

  /** Queue a record; resolves with the offset of its article bytes once it is on disk. */
  private append(record: Buffer, headBytes: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.pending.push({ record, headBytes, resolve, reject });
      if (!this.committing) this.committing = this.commitLoop();
    });
  }

  /** Group commit: everything queued while one write runs shares the next one. */
  private async commitLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        const parts: Buffer[] = [];
        const offsets: number[] = [];
        let at = this.size;
        for (const p of batch) {
          parts.push(p.record);
          offsets.push(at + p.headBytes);
          at += p.record.length;
        }
        // Past the zero-filled space: the same write extends it (one sync that grows the file per PREALLOCATE).
        if (at > this.allocated) parts.push(ZEROS);
        try {
          if (!this.writer) throw new Error('article store is closed');
          const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
          let done = 0;
          const fd = this.writer.fd;
          while (done < data.length) done += await writeAt(fd, data, done, this.size + done);
          if (!O_DSYNC) await this.writer.datasync();
          this.allocated = Math.max(this.allocated, this.size + data.length);
          this.size = at;
          batch.forEach((p, i) => p.resolve(offsets[i]!));
        } catch (err) {
          // The tail may now hold a partial batch: it is cut at the next open; stop accepting meanwhile.
          await this.writer?.close().catch(() => undefined);
          this.writer = null;
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.committing = null;
    }
  }

  async close(): Promise<void> {
    while (this.committing) await this.committing;
    const w = this.writer;
    const r = this.reader;
    this.writer = null;
    this.reader = null;
    // Leave no zero-filled tail behind (a crash leaves one; the next open cuts it).
    if (w && this.allocated > this.size) await w.truncate(this.size);
    await w?.close();
    await r?.close();
  }
}

/** Zero-filled space kept after the last record. */
export const PREALLOCATE = 1024 * 1024;
const ZEROS = Buffer.alloc(PREALLOCATE);
/** Synchronous data writes where the platform has them (Linux, macOS); elsewhere a datasync follows each write. */
const O_DSYNC = fs.constants.O_DSYNC ?? 0;

/**
 * One pwrite on the thread pool (fs.write with a callback: the same request as FileHandle.write without its two
 * async frames and promise per call on the event loop); resolves with the bytes written.
 */
function writeAt(fd: number, data: Buffer, from: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, data, from, data.length - from, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function lowerBound(nums: readonly number[], n: number): number {
  let lo = 0;
  let hi = nums.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (nums[mid]! < n) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
