/*
 * A read-only look at the SMTP queue for metrics and the status page (layout: src/smtp/spool.ts): how many
 * entries (spool/msg/<id>, whose first line is the envelope), how old the oldest is (queue ids start with
 * their creation time in base36 ms), and a few of the oldest envelopes (the state file spool/env/<id>.json
 * wins over the header line; read with the queue's own reader). Bounded: at most MAX_SCAN names are looked
 * at, at most SAMPLE envelopes are read. Results are cached briefly so a page refresh or a scrape storm does
 * not turn into a directory-walk storm.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ID_PATTERN, Spool } from '../smtp/spool.js';

export const MAX_SCAN = 100_000;
const SAMPLE = 10;
const CACHE_MS = 1000;

export interface QueueItem {
  readonly id: string;
  readonly ageSeconds: number;
  readonly size: number;
  readonly recipients: number;
  readonly pending: number;
  readonly attempts: number;
  readonly lastError: string | null;
}

export interface QueueSummary {
  readonly depth: number;
  /** true when more than MAX_SCAN names were present (depth is then a lower bound) */
  readonly truncated: boolean;
  readonly oldestAgeSeconds: number;
  readonly oldest: readonly QueueItem[];
}

/** Creation time encoded in a queue id (9 base36 digits of ms), or null if it does not look like one. */
export function idTime(id: string): number | null {
  if (!ID_PATTERN.test(id) || id.length < 9) return null;
  const t = parseInt(id.slice(0, 9), 36);
  return Number.isFinite(t) && t > 0 ? t : null;
}

export async function summarizeQueue(spoolDir: string, now = Date.now()): Promise<QueueSummary> {
  const ids: { id: string; t: number }[] = [];
  let truncated = false;
  try {
    const dir = await fsp.opendir(path.join(spoolDir, 'msg'), { bufferSize: 256 });
    for await (const ent of dir) {
      if (!ent.isFile()) continue;
      const id = ent.name;
      const t = idTime(id);
      if (t === null) continue;
      if (ids.length >= MAX_SCAN) {
        truncated = true;
        break;
      }
      ids.push({ id, t });
    }
  } catch {
    return { depth: 0, truncated: false, oldestAgeSeconds: 0, oldest: [] };
  }
  ids.sort((a, b) => a.t - b.t || a.id.localeCompare(b.id));
  const spool = new Spool(spoolDir);
  const oldest: QueueItem[] = [];
  for (const { id, t } of ids.slice(0, SAMPLE)) {
    try {
      const e = spool.readSync(id); // header line + state file, as the queue itself reads them
      if (!e) continue;
      oldest.push({
        id,
        ageSeconds: Math.max(0, Math.round((now - (e.createdAt || t)) / 1000)),
        size: e.size,
        recipients: e.recipients.length,
        pending: e.recipients.filter((r) => r.state === 'pending').length,
        attempts: e.attempts,
        lastError: e.lastError === null ? null : e.lastError.slice(0, 200),
      });
    } catch {
      /* removed while we looked, or unreadable: skip */
    }
  }
  const first = ids[0];
  return { depth: ids.length, truncated, oldestAgeSeconds: first ? Math.max(0, Math.round((now - first.t) / 1000)) : 0, oldest };
}

/** summarizeQueue with a short cache (one walk per CACHE_MS however many callers). */
export function cachedQueueSummary(spoolDir: () => string): () => Promise<QueueSummary> {
  let at = 0;
  let pending: Promise<QueueSummary> | null = null;
  return () => {
    const now = Date.now();
    if (!pending || now - at > CACHE_MS) {
      at = now;
      pending = summarizeQueue(spoolDir(), now);
    }
    return pending;
  };
}
