/*
 * An exclusive lock between processes for a read-modify-write of a shared file (the users file, lockouts.json).
 *
 * The lock is a file `<name>.lock` created whole or not at all: its content (pid, host, boot id, a random token)
 * is written to a temporary file first, which is then hard-linked to the lock name; link(2) fails with EEXIST when
 * the lock is held, so no process ever sees an empty or half-written lock. Node has no flock(2), and the packages
 * that add it are native builds (fs-ext); mkdir locks with mtime staleness (proper-lockfile) take a lock away from
 * a holder that is merely slow. Here a lock is stale only when its holder is provably gone: same host and the
 * pid no longer exists, or the machine has rebooted since (boot id). Breaking a stale lock is itself serialised by
 * a short-lived `<name>.lock.break` file and re-checks the content under it, so two waiters that both saw the same
 * stale lock cannot remove a fresh lock a third process has just taken.
 *
 * Waiting is bounded: after `timeoutMs` the caller gets a GatehouseError naming the holder (exit 75, "try again").
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatehouseError } from '../errors.js';

export interface FileLockOptions {
  /** give up after this long (default 15 s, or $GATEHOUSE_LOCK_TIMEOUT_MS) */
  readonly timeoutMs?: number;
  /** what is being changed, for the error message */
  readonly what?: string;
}

interface Holder {
  readonly raw: string;
  readonly pid: number;
  readonly host: string;
  readonly boot: string;
}

/** A break file older than this belongs to a process that died in the few microseconds it is held. */
const BREAK_STALE_MS = 5_000;
/** A lock file that cannot be parsed (written by something else) is stale after this long. */
const GARBLED_STALE_MS = 30_000;

let bootIdCache: string | undefined;
function bootId(): string {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootIdCache = '-';
    }
  }
  return bootIdCache;
}

function defaultTimeout(): number {
  const env = Number(process.env.GATEHOUSE_LOCK_TIMEOUT_MS);
  return Number.isFinite(env) && env > 0 ? env : 15_000;
}

function readRaw(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null; // released in the meantime
  }
}

function readHolder(lockFile: string): Holder | null | 'garbled' {
  const raw = readRaw(lockFile);
  if (raw === null) return null;
  const m = /^pid=(\d+) host=(\S+) boot=(\S+) token=[0-9a-f]+\n$/.exec(raw);
  return m ? { raw, pid: Number(m[1]), host: m[2]!, boot: m[3]! } : 'garbled';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Provably gone: never guess about another host's processes. */
function isStale(h: Holder): boolean {
  if (h.host !== os.hostname()) return false;
  if (h.boot !== '-' && bootId() !== '-' && h.boot !== bootId()) return true;
  return !alive(h.pid);
}

function ageMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Create `file` with `content` atomically, or return false when it exists. */
function createWhole(file: string, content: string): boolean {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}`);
  fs.writeFileSync(tmp, content, { mode: 0o600, flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Remove `lockFile` only if it still holds exactly `observed`, with every breaker serialised. */
function breakStale(lockFile: string, observed: string): void {
  const breaker = `${lockFile}.break`;
  let got: boolean;
  try {
    got = createWhole(breaker, `pid=${process.pid}\n`);
  } catch {
    return;
  }
  if (!got) {
    if (ageMs(breaker) > BREAK_STALE_MS) fs.rmSync(breaker, { force: true });
    return;
  }
  try {
    if (readRaw(lockFile) === observed) fs.rmSync(lockFile, { force: true });
  } finally {
    fs.rmSync(breaker, { force: true });
  }
}

export interface HeldLock {
  release(): void;
}

export async function acquireFileLock(lockFile: string, options: FileLockOptions = {}): Promise<HeldLock> {
  const timeoutMs = options.timeoutMs ?? defaultTimeout();
  const content = `pid=${process.pid} host=${os.hostname()} boot=${bootId()} token=${crypto.randomBytes(8).toString('hex')}\n`;
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    let got: boolean;
    try {
      got = createWhole(lockFile, content);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new GatehouseError('GH_ERR_LOCKED', `${lockFile}: cannot create the lock file (${e.code ?? e.message}); is ${path.dirname(lockFile)} writable?`, 1);
    }
    if (got) {
      return {
        release: () => {
          try {
            if (readRaw(lockFile) === content) fs.rmSync(lockFile, { force: true });
          } catch {
            /* a lock we cannot remove is broken as stale once this process is gone */
          }
        },
      };
    }
    const holder = readHolder(lockFile);
    if (holder === 'garbled') {
      const raw = readRaw(lockFile);
      if (raw !== null && ageMs(lockFile) > GARBLED_STALE_MS) breakStale(lockFile, raw);
    } else if (holder && isStale(holder)) {
      breakStale(lockFile, holder.raw);
      continue;
    }
    if (Date.now() >= deadline) {
      const who = holder && holder !== 'garbled' ? `process ${holder.pid} on ${holder.host}` : 'another process';
      throw new GatehouseError(
        'GH_ERR_LOCKED',
        `${options.what ?? lockFile} is being changed by ${who}; gave up after ${Math.round(timeoutMs / 1000)} s. Try again; if no gatehouse command is running, remove ${lockFile}`,
        75,
      );
    }
    // Jittered back-off, capped low: the lock is held for a read, a write and an fsync, not for a bcrypt hash.
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())) * (0.5 + Math.random()));
    delay = Math.min(delay * 2, 50);
  }
}

/** Run `fn` while holding the lock; the lock is released however `fn` ends. */
export async function withFileLock<T>(lockFile: string, fn: () => Promise<T> | T, options: FileLockOptions = {}): Promise<T> {
  const lock = await acquireFileLock(lockFile, options);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
