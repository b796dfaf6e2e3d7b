/*
 * Locks on disk: <state_dir>/lockouts.json mirrors the running daemon's lockouts so they survive a restart
 * and so `gatehouse user unlock` (a separate process) can lift one: it removes the entry from the file and
 * sends SIGHUP; on reload the daemon drops every lock that is no longer in the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { LockEntry } from '../policy/auth.js';
import { writeFileDurableSync } from '../net/atomic.js';

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
