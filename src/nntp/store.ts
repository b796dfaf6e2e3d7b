/*
 * The durable article store under <state_dir>/news.
 *
 *   articles/<sha256(message-id)>.art   one file per article (cross-posts share it), written atomically
 *   overview.jsonl                      append-only journal: one JSON line per article with its per-group
 *                                       numbers, arrival time, header block, size and line count
 *   groups.json                         every group ever configured, with its creation time (NEWGROUPS)
 *
 * An article is acknowledged only after its file is fsynced and renamed into place, the articles folder is
 * fsynced, AND its journal line is fsynced (group commit: concurrent posts share the folder and journal fsyncs). On open the journal is replayed; a torn last line
 * (crash mid-append) is cut off, and article files with no journal line (never acknowledged) are removed.
 * Numbers are never reused: a group's high-water mark is the highest number in the journal.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ensureDir, fsyncDir, tempName, writeFileDurable } from '../net/atomic.js';

export interface StoredArticle {
  readonly messageId: string;
  readonly file: string;
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

interface JournalLine {
  m: string;
  f: string;
  g: Record<string, number>;
  t: number;
  h: string;
  b: number;
  l: number;
}

interface Pending {
  readonly line: string;
  readonly resolve: () => void;
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
  private journal: fs.promises.FileHandle | null = null;
  private arrivals: StoredArticle[] = [];

  private constructor(
    readonly dir: string,
    private readonly clock: () => number,
  ) {}

  get articleDir(): string {
    return path.join(this.dir, 'articles');
  }

  private get journalFile(): string {
    return path.join(this.dir, 'overview.jsonl');
  }

  private get groupsFile(): string {
    return path.join(this.dir, 'groups.json');
  }

  static async open(dir: string, groupNames: readonly string[], clock: () => number = Date.now): Promise<ArticleStore> {
    const store = new ArticleStore(dir, clock);
    ensureDir(dir);
    ensureDir(store.articleDir);
    await store.loadGroups();
    await store.replay();
    await store.removeOrphans();
    await store.syncGroups(groupNames);
    store.journal = await fsp.open(store.journalFile, 'a', 0o600);
    await fsyncDir(dir);
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

  private async replay(): Promise<void> {
    let text: Buffer;
    try {
      text = await fsp.readFile(this.journalFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let good = 0;
    let offset = 0;
    while (offset < text.length) {
      const nl = text.indexOf(0x0a, offset);
      if (nl < 0) break; // torn tail
      const raw = text.subarray(offset, nl).toString('utf8');
      offset = nl + 1;
      try {
        const j = JSON.parse(raw) as JournalLine;
        if (typeof j.m === 'string' && typeof j.f === 'string' && j.g && typeof j.h === 'string') {
          this.index({ messageId: j.m, file: j.f, numbers: j.g, arrived: j.t, head: j.h, bytes: j.b, lines: j.l });
        }
        good = offset;
      } catch {
        if (offset >= text.length) break; // torn last line
        good = offset; // a damaged line in the middle: skip it, keep the rest
      }
    }
    if (good < text.length) {
      await fsp.truncate(this.journalFile, good);
      const fh = await fsp.open(this.journalFile, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }

  private async removeOrphans(): Promise<void> {
    const known = new Set([...this.byId.values()].map((a) => a.file));
    for (const name of await fsp.readdir(this.articleDir)) {
      if (!known.has(name)) await fsp.rm(path.join(this.articleDir, name), { force: true });
    }
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
    return fsp.readFile(path.join(this.articleDir, a.file));
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
   * Store an article in the given groups; resolves once file and journal line are on disk. The caller must
   * hold a reservation for the message-id.
   */
  async add(messageId: string, groups: readonly string[], head: string, article: Buffer, lines: number): Promise<StoredArticle> {
    const file = `${crypto.createHash('sha256').update(messageId).digest('hex')}.art`;
    await writeAndRename(path.join(this.articleDir, file), article);
    const numbers: Record<string, number> = {};
    for (const g of groups) {
      const n = (this.high.get(g) ?? 0) + 1;
      this.high.set(g, n);
      numbers[g] = n;
    }
    const a: StoredArticle = { messageId, file, numbers, arrived: this.clock(), head, bytes: article.length, lines };
    const j: JournalLine = { m: a.messageId, f: a.file, g: numbers, t: a.arrived, h: head, b: a.bytes, l: lines };
    await this.append(`${JSON.stringify(j)}\n`);
    this.index(a);
    this.reserved.delete(messageId);
    return a;
  }

  private append(line: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      if (!this.committing) this.committing = this.commitLoop();
    });
  }

  /** Group commit: everything queued while one fsync runs shares the next one. */
  private async commitLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        try {
          if (!this.journal) throw new Error('article store is closed');
          // One folder fsync makes every renamed article file of the batch durable before its journal line.
          await fsyncDir(this.articleDir);
          await this.journal.write(batch.map((p) => p.line).join(''));
          await this.journal.sync();
          for (const p of batch) p.resolve();
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.committing = null;
    }
  }

  async close(): Promise<void> {
    while (this.committing) await this.committing;
    const j = this.journal;
    this.journal = null;
    if (j) {
      await j.close();
      await fsyncDir(this.dir);
    }
  }
}

/** Write a temporary file, fsync it, rename it into place; the caller fsyncs the folder. */
async function writeAndRename(file: string, data: Buffer): Promise<void> {
  const tmp = tempName(file);
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await fsp.rename(tmp, file);
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
