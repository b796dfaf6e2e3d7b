/*
 * The throttle state on disk, so it survives a restart and other processes (`gatehouse throttle list`,
 * `user show`, `explain`) can read it:
 *   <state_dir>/throttle.json   counters and throttles (policy/throttle-store.ts StoredCounter), live ones only
 *   <state_dir>/familiar.json   familiar addresses per user with last-seen times
 *   <state_dir>/throttle-clear/ one file per `gatehouse throttle clear` request
 * The daemon is the only writer of the two state files (net/serial-writer.ts: serialised temp+fsync+rename).
 * The CLI never rewrites them: it drops a request file (created atomically, nothing to merge) and sends
 * SIGHUP; the daemon applies every request on reload and at start, then deletes it. Readers apply requests
 * still pending, so a listing is right even before the daemon has acted (or when none runs).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureDir, writeFileDurableSync } from '../net/atomic.js';
import { MemoryThrottleStore, type FamiliarAddress, type MemoryStoreLimits, type StoredCounter } from '../policy/throttle-store.js';
import { addressKey, throttleName } from '../policy/throttle.js';
import { readLockouts } from './lockouts.js';

export type ClearTarget = { readonly name: string } | { readonly address: string };

export const throttleFile = (stateDir: string) => path.join(stateDir, 'throttle.json');
export const familiarFile = (stateDir: string) => path.join(stateDir, 'familiar.json');
const clearDir = (stateDir: string) => path.join(stateDir, 'throttle-clear');

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  } catch {
    return null; // missing or unreadable: no state (a corrupt file must not stop the daemon; it is rewritten)
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export function serializeCounters(counters: readonly StoredCounter[], now: number): string {
  return `${JSON.stringify({ version: 1, savedAt: now, counters })}\n`;
}

export function serializeFamiliar(familiar: Record<string, readonly FamiliarAddress[]>, now: number): string {
  return `${JSON.stringify({ version: 1, savedAt: now, users: familiar })}\n`;
}

/** Counters from throttle.json, plus locks from a pre-throttle lockouts.json (kind ip → address, user → name). */
export function readCounters(stateDir: string): StoredCounter[] {
  const data = readJson(throttleFile(stateDir));
  const out: StoredCounter[] = [];
  if (isRecord(data) && Array.isArray(data.counters)) {
    for (const c of data.counters as unknown[]) {
      if (isRecord(c) && typeof c.key === 'string' && c.key.length < 256 && isNum(c.count) && isNum(c.resetAt) && isNum(c.until)) {
        out.push({ key: c.key, count: c.count, resetAt: c.resetAt, until: c.until });
      }
    }
  }
  for (const l of readLockouts(stateDir)) out.push({ key: l.kind === 'ip' ? `addr:${addressKey(l.key)}` : `user:${throttleName(l.key)}`, count: l.failures, resetAt: l.until, until: l.until });
  return out;
}

export function readFamiliar(stateDir: string): Record<string, FamiliarAddress[]> {
  const data = readJson(familiarFile(stateDir));
  const out: Record<string, FamiliarAddress[]> = {};
  if (!isRecord(data) || !isRecord(data.users)) return out;
  for (const [name, list] of Object.entries(data.users)) {
    if (!Array.isArray(list)) continue;
    const good = (list as unknown[]).filter((f): f is FamiliarAddress => isRecord(f) && typeof f.address === 'string' && isNum(f.lastSeen));
    if (good.length > 0) out[name] = good.map((f) => ({ address: f.address, lastSeen: f.lastSeen }));
  }
  return out;
}

/** Queue a clear for the daemon (atomic create; no shared file is rewritten). */
export function requestClear(stateDir: string, target: ClearTarget, now = Date.now()): void {
  const dir = clearDir(stateDir);
  ensureDir(dir);
  const file = path.join(dir, `${now}-${crypto.randomBytes(6).toString('hex')}.json`);
  writeFileDurableSync(file, `${JSON.stringify({ target, at: now })}\n`, 0o600);
}

export interface PendingClear {
  readonly file: string;
  readonly target: ClearTarget;
}

export function pendingClears(stateDir: string): PendingClear[] {
  let names: string[];
  try {
    names = fs.readdirSync(clearDir(stateDir)).filter((n) => /^\d+-[0-9a-f]{12}\.json$/.test(n)).sort();
  } catch {
    return [];
  }
  const out: PendingClear[] = [];
  for (const n of names.slice(0, 10_000)) {
    const file = path.join(clearDir(stateDir), n);
    const data = readJson(file);
    const t = isRecord(data) && isRecord(data.target) ? data.target : null;
    if (t && typeof t.name === 'string') out.push({ file, target: { name: t.name } });
    else if (t && typeof t.address === 'string') out.push({ file, target: { address: t.address } });
    else out.push({ file, target: { name: '' } }); // unreadable: removed without effect
  }
  return out;
}

export function removeRequest(file: string): void {
  fs.rmSync(file, { force: true });
}

/** Does a key belong to a clear target? (the same match as MemoryThrottleStore.clear) */
export function keyMatches(key: string, target: ClearTarget): boolean {
  if ('name' in target) return key === `user:${target.name}` || (key.startsWith('pair:') && key.slice(key.indexOf('|') + 1) === target.name);
  return key === `addr:${target.address}` || key === `miss:${target.address}` || key.startsWith(`pair:${target.address}|`);
}

/**
 * The daemon's throttle state as another process sees it: the two files with every pending clear applied.
 * (`gatehouse throttle list`, `user show`, `explain`.)
 */
export async function storeFromFiles(stateDir: string, limits: MemoryStoreLimits, now = Date.now()): Promise<{ store: MemoryThrottleStore; savedAt: number | null }> {
  const store = new MemoryThrottleStore(limits);
  store.loadCounters(readCounters(stateDir), now);
  store.loadFamiliar(readFamiliar(stateDir));
  for (const req of pendingClears(stateDir)) if (!('name' in req.target) || req.target.name) await store.clear(req.target);
  const data = readJson(throttleFile(stateDir));
  return { store, savedAt: isRecord(data) && isNum(data.savedAt) ? data.savedAt : null };
}
