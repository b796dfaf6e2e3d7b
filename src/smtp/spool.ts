/*
 * The on-disk queue. Layout under <spoolDir>:
 *   tmp/            files being written (removed at start-up: garbage from a crash)
 *   msg/<id>        the message bytes, exactly as they will be delivered
 *   env/<id>.json   envelope + per-recipient delivery state; its presence makes the entry complete
 *   corrupt/        entries whose envelope could not be parsed (moved aside at start-up, never delivered)
 *   flush           marker written by `gatehouse queue flush`; the running worker polls for it
 * An entry is written data first (tmp → fsync → rename → fsync msg/), envelope last (tmp → fsync → rename →
 * fsync env/), so a crash leaves a complete entry or garbage. State updates rewrite env/<id>.json atomically.
 * Removal deletes the envelope first, so a crash mid-removal leaves only an orphan message file, which
 * start-up deletes. Nothing here trusts a name it did not make: ids must match ID_PATTERN.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ensureDir, fsyncDir } from '../net/atomic.js';

export const ID_PATTERN = /^[0-9a-z]{8,64}$/;

export function isSafeId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Time-ordered (base36 ms, fixed width) + 64 random bits: unique, sortable, safe as a file name. */
export function newQueueId(now = Date.now()): string {
  return now.toString(36).padStart(9, '0') + crypto.randomBytes(8).toString('hex');
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

export class Spool {
  readonly tmpDir: string;
  readonly msgDir: string;
  readonly envDir: string;
  readonly flushMarker: string;

  constructor(readonly dir: string) {
    this.tmpDir = path.join(dir, 'tmp');
    this.msgDir = path.join(dir, 'msg');
    this.envDir = path.join(dir, 'env');
    this.flushMarker = path.join(dir, 'flush');
  }

  private ensured = false;

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
    return path.join(this.tmpDir, `${safe(id)}.${kind}.${crypto.randomBytes(4).toString('hex')}`);
  }

  private async writeTmp(id: string, kind: string, data: string | Uint8Array): Promise<string> {
    const tmp = this.tmpPath(id, kind);
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
    return tmp;
  }

  /** Store a new entry durably; resolves only when data and envelope are on disk. */
  async create(entry: QueueEntry, data: Buffer): Promise<void> {
    const id = safe(entry.id);
    if (!this.ensured) this.ensure();
    const msgTmp = await this.writeTmp(id, 'msg', data);
    try {
      await fsp.link(msgTmp, this.msgPath(id)); // link fails if the name exists: never overwrite an entry
    } finally {
      await fsp.rm(msgTmp, { force: true });
    }
    await fsyncDir(this.msgDir);
    await this.writeEnvelope(entry, true);
  }

  /** Does an entry with this id exist (complete)? */
  async exists(id: string): Promise<boolean> {
    try {
      await fsp.access(this.envPath(id));
      return true;
    } catch {
      return false;
    }
  }

  /** Atomically (re)write the envelope/state file. */
  async writeEnvelope(entry: QueueEntry, fresh = false): Promise<void> {
    const id = safe(entry.id);
    const tmp = await this.writeTmp(id, 'env', `${JSON.stringify(entry)}\n`);
    try {
      if (fresh) {
        await fsp.link(tmp, this.envPath(id));
        await fsp.rm(tmp, { force: true });
      } else {
        await fsp.rename(tmp, this.envPath(id));
      }
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    await fsyncDir(this.envDir);
  }

  /** Read one entry; null when it does not exist (deleted) or cannot be parsed. */
  async read(id: string): Promise<QueueEntry | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.envPath(id), 'utf8');
    } catch {
      return null;
    }
    return parseEntry(text);
  }

  readSync(id: string): QueueEntry | null {
    let text: string;
    try {
      text = fs.readFileSync(this.envPath(id), 'utf8');
    } catch {
      return null;
    }
    return parseEntry(text);
  }

  /** Ids of complete entries (oldest first). */
  idsSync(): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.envDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .filter(isSafeId)
      .sort();
  }

  listSync(): QueueEntry[] {
    const out: QueueEntry[] = [];
    for (const id of this.idsSync()) {
      const e = this.readSync(id);
      if (e) out.push(e);
    }
    return out;
  }

  /** Remove an entry: envelope first (then it no longer exists), then the data. */
  async remove(id: string): Promise<boolean> {
    let existed = true;
    try {
      await fsp.unlink(this.envPath(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      existed = false;
    }
    await fsyncDir(this.envDir);
    // no fsync needed here: a message file that comes back after a crash is an orphan, removed at start-up
    await fsp.rm(this.msgPath(id), { force: true });
    return existed;
  }

  /**
   * Start-up recovery (daemon only, before any enqueue): delete everything in tmp/ and message files
   * that have no envelope. Returns what was removed, for the log.
   */
  recoverSync(): { tmp: number; orphans: number } {
    this.ensure();
    let tmp = 0;
    for (const n of fs.readdirSync(this.tmpDir)) {
      fs.rmSync(path.join(this.tmpDir, n), { force: true, recursive: true });
      tmp++;
    }
    const complete = new Set(this.idsSync());
    let orphans = 0;
    for (const n of fs.readdirSync(this.msgDir)) {
      if (!complete.has(n)) {
        fs.rmSync(path.join(this.msgDir, n), { force: true, recursive: true });
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
      [this.envPath(id), path.join(dir, `${safe(id)}.json`)],
      [this.msgPath(id), path.join(dir, safe(id))],
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

function safe(id: string): string {
  if (!isSafeId(id)) throw new Error(`unsafe queue id ${JSON.stringify(id)}`);
  return id;
}

function parseEntry(text: string): QueueEntry | null {
  try {
    const r = entrySchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
