import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireFileLock, withFileLock } from '../../src/net/file-lock.js';
import { GatehouseError } from '../../src/errors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-lock-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid;
const lockText = (pid: number, host = os.hostname(), b = boot) => `pid=${pid} host=${host} boot=${b} token=0123456789abcdef\n`;

describe('file lock between processes', () => {
  it('serialises holders in one process and leaves nothing behind', async () => {
    const lock = path.join(tmp, 'a.lock');
    const counter = path.join(tmp, 'a.count');
    fs.writeFileSync(counter, '0');
    await Promise.all(
      Array.from({ length: 30 }, () =>
        withFileLock(lock, async () => {
          const n = Number(fs.readFileSync(counter, 'utf8'));
          await new Promise((r) => setTimeout(r, 1));
          fs.writeFileSync(counter, String(n + 1));
        }),
      ),
    );
    expect(fs.readFileSync(counter, 'utf8')).toBe('30');
    expect(fs.readdirSync(tmp).sort()).toEqual(['a.count']);
  });

  it('breaks a lock whose holder is dead, or from before a reboot', async () => {
    const lock = path.join(tmp, 'b.lock');
    for (const stale of [lockText(deadPid()), lockText(process.ppid, os.hostname(), '00000000-0000-0000-0000-000000000000')]) {
      fs.writeFileSync(lock, stale);
      const held = await acquireFileLock(lock, { timeoutMs: 2_000 });
      expect(fs.readFileSync(lock, 'utf8')).toMatch(new RegExp(`^pid=${process.pid} `));
      held.release();
      expect(fs.existsSync(lock)).toBe(false);
    }
  });

  it('waits for a live holder in another process, then gets the lock', async () => {
    const lock = path.join(tmp, 'c.lock');
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(lock, lockText(child.pid!));
      const t0 = Date.now();
      setTimeout(() => child.kill('SIGKILL'), 600);
      const held = await acquireFileLock(lock, { timeoutMs: 20_000 });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
      held.release();
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('gives up after the bounded wait with an error naming the holder (exit 75); never breaks another host\'s lock', async () => {
    const lock = path.join(tmp, 'd.lock');
    for (const holder of [lockText(process.ppid), lockText(deadPid(), 'some-other-host')]) {
      fs.writeFileSync(lock, holder);
      const err = await acquireFileLock(lock, { timeoutMs: 300, what: 'users.yaml' }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GatehouseError);
      expect((err as GatehouseError).exitCode).toBe(75);
      expect((err as GatehouseError).message).toMatch(/users\.yaml is being changed by process \d+ on \S+; gave up after 0 s\. Try again; if no gatehouse command is running, remove /);
      expect(fs.readFileSync(lock, 'utf8')).toBe(holder);
    }
    fs.rmSync(lock);
  });
});
