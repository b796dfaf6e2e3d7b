/*
 * Byte quotas per storage root (a user's home, each share, the anonymous incoming folder). The first use of
 * a root walks it once (bounded); afterwards the count is kept up to date by the upload and delete paths,
 * including bytes still in flight, so two parallel uploads cannot both squeeze under the limit. The walk
 * also removes upload temp files (`.gh-part-*`) left by a crash of an earlier run: they were never
 * acknowledged, and nobody can name them.
 */
import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { TEMP_PREFIX } from '../policy/paths.js';

const STARTED = Date.now();

const MAX_WALK_ENTRIES = 200_000;

export class QuotaExceeded extends Error {
  constructor() {
    super('quota exceeded');
  }
}

export class QuotaBook {
  private readonly usage = new Map<string, number>();
  private readonly pending = new Map<string, Promise<number>>();

  constructor(private limit: number) {}

  configure(limit: number): void {
    this.limit = limit;
  }

  get limitBytes(): number {
    return this.limit;
  }

  async used(root: string): Promise<number> {
    const known = this.usage.get(root);
    if (known !== undefined) return known;
    let p = this.pending.get(root);
    if (!p) {
      p = walk(root);
      this.pending.set(root, p);
    }
    const n = await p;
    this.pending.delete(root);
    if (!this.usage.has(root)) this.usage.set(root, n);
    return this.usage.get(root)!;
  }

  /** Count `bytes` more against `root`; throws QuotaExceeded (and counts nothing) when over the limit. */
  take(root: string, bytes: number): void {
    const now = this.usage.get(root) ?? 0;
    if (now + bytes > this.limit) throw new QuotaExceeded();
    this.usage.set(root, now + bytes);
  }

  give(root: string, bytes: number): void {
    const now = this.usage.get(root);
    if (now !== undefined) this.usage.set(root, Math.max(0, now - bytes));
  }
}

async function walk(root: string): Promise<number> {
  let total = 0;
  let seen = 0;
  const stack = [root];
  while (stack.length > 0 && seen < MAX_WALK_ENTRIES) {
    const dir = stack.pop()!;
    let entries: Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      seen++;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) {
        try {
          const st = await fs.lstat(p);
          if (e.name.startsWith(TEMP_PREFIX) && st.mtimeMs < STARTED) await fs.unlink(p);
          else total += st.size;
        } catch {
          /* vanished */
        }
      }
    }
  }
  return total;
}
