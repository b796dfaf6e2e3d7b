/*
 * Before login throttling (policy/throttle.ts) locks were mirrored to <state_dir>/lockouts.json. That file is
 * still read once at start (identity/throttle-files.ts turns its locks into throttles) so an upgrade keeps
 * them; nothing writes it any more. `signalDaemon` tells a running daemon to reload (SIGHUP).
 */
import fs from 'node:fs';
import path from 'node:path';

export interface LegacyLock {
  readonly kind: 'ip' | 'user';
  readonly key: string;
  readonly until: number;
  readonly failures: number;
}

export function lockoutsFile(stateDir: string): string {
  return path.join(stateDir, 'lockouts.json');
}

export function readLockouts(stateDir: string): LegacyLock[] {
  try {
    const data: unknown = JSON.parse(fs.readFileSync(lockoutsFile(stateDir), 'utf8'));
    if (!Array.isArray(data)) return [];
    return (data as unknown[]).flatMap((e) => {
      if (typeof e !== 'object' || e === null) return [];
      const r = e as Record<string, unknown>;
      if ((r.kind !== 'ip' && r.kind !== 'user') || typeof r.key !== 'string' || typeof r.until !== 'number') return [];
      return [{ kind: r.kind, key: r.key, until: r.until, failures: typeof r.failures === 'number' ? r.failures : 0 }];
    });
  } catch {
    return [];
  }
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
