/*
 * Locks on disk: <state_dir>/lockouts.json mirrors the running daemon's lockouts so they survive a restart
 * and so `gatehouse user unlock` (a separate process) can lift one: it removes the entry from the file and
 * sends SIGHUP; on reload the daemon drops every lock that is no longer in the file.
 *
 * Both writers (the daemon mirroring its locks, `user unlock` removing one) change the file only inside
 * `updateLockouts`: the writers' lock, a fresh read, the change, an atomic write. The daemon also compares the file
 * with what it last wrote: an entry it wrote that is gone was removed by an operator, and it is lifted in memory
 * before the daemon writes again, so a save racing an unlock cannot put the lock back.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { LockEntry } from '../policy/auth.js';
import { writeFileDurableSync } from '../net/atomic.js';
import { withFileLock } from '../net/file-lock.js';

export function lockoutsFile(stateDir: string): string {
  return path.join(stateDir, 'lockouts.json');
}

export function readLockouts(stateDir: string): LockEntry[] {
  try {
    const data: unknown = JSON.parse(fs.readFileSync(lockoutsFile(stateDir), 'utf8'));
    if (!Array.isArray(data)) return [];
    return (data as unknown[]).filter((e): e is LockEntry => {
      if (typeof e !== 'object' || e === null) return false;
      const r = e as Record<string, unknown>;
      return (r.kind === 'ip' || r.kind === 'user') && typeof r.key === 'string' && typeof r.until === 'number';
    });
  } catch {
    return [];
  }
}

export function writeLockouts(stateDir: string, entries: readonly LockEntry[]): void {
  writeFileDurableSync(lockoutsFile(stateDir), `${JSON.stringify(entries, null, 1)}\n`, 0o600);
}

/** Signal a running daemon (pid file in the state folder) to reload. Returns false if none runs. */
export function signalDaemon(stateDir: string, signal: NodeJS.Signals = 'SIGHUP'): boolean {
  try {
    const pid = Number(fs.readFileSync(path.join(stateDir, 'gatehouse.pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return false;
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Read-modify-write of lockouts.json under the writers' lock; returns what was on disk and what was written. */
export async function updateLockouts(stateDir: string, change: (onDisk: LockEntry[]) => LockEntry[]): Promise<{ before: LockEntry[]; after: LockEntry[] }> {
  const file = lockoutsFile(stateDir);
  return withFileLock(
    `${file}.lock`,
    () => {
      const before = readLockouts(stateDir);
      const after = change(before);
      writeLockouts(stateDir, after);
      return { before, after };
    },
    { what: file },
  );
}

/** Identity of one lock as written: the same name locked again later is a different entry. */
export function lockId(l: LockEntry): string {
  return `${l.kind}:${l.key}:${l.until}`;
}

/**
 * The daemon's side: entries it wrote last time (`lastWritten`) that are no longer on disk were removed by an
 * operator; returns them so the caller lifts them before writing its current locks.
 */
export function removedByOperator(lastWritten: ReadonlyMap<string, LockEntry>, onDisk: readonly LockEntry[]): LockEntry[] {
  const there = new Set(onDisk.map(lockId));
  return [...lastWritten].filter(([id]) => !there.has(id)).map(([, l]) => l);
}
