/*
 * Upload notices survive a crash between the 226 and the queueing (the "recover at start-up" design of
 * ftp/notices.ts): Gatehouse runs as operators run it (`src/cli/main.ts start` in a child process), three
 * uploads get their 226, the process is killed with SIGKILL before the digest window closes, and after a restart
 * exactly one digest listing the three files reaches the reader's Maildir. Every wait is bounded; children are
 * killed in afterAll.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { noticesDir } from '../../src/ftp/notices.js';
import { UserStore } from '../../src/identity/users.js';
import { randomPassiveRange } from '../helpers/gatehouse.js';
import { freePort, maildirMessages, waitUntil } from '../smtp/listener-client.js';
import { PASSWORD, basicLogin } from './ftp-helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const DIGEST_S = 15;

describe('upload notices across kill -9', () => {
  let dir: string;
  let configFile: string;
  let stateDir: string;
  let ftpPort: number;
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-notice-crash-'));
    fs.mkdirSync(path.join(dir, 'config'));
    configFile = path.join(dir, 'config', 'gatehouse.yaml');
    stateDir = path.join(dir, 'var');
    ftpPort = await freePort();
    const data = {
      hostname: 'gatehouse.test',
      state_dir: '../var',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false, level: 'info' },
      smtp: { listen: `127.0.0.1:${await freePort()}`, local_domains: ['local.test'], queue: { retry_s: [1] } },
      ftp: {
        listen: `127.0.0.1:${ftpPort}`,
        passive: { ports: randomPassiveRange() },
        shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { bob: ['write'] }, notify: { to: ['alice'], digest_s: DIGEST_S } }],
      },
      nntp: { enabled: false },
    };
    fs.writeFileSync(configFile, stringify(data));
    const config = parseConfig(data, configFile, path.dirname(configFile));
    const users = new UserStore(config.paths.usersFile, 10);
    await users.add('alice', PASSWORD, []);
    await users.add('bob', PASSWORD, []);
  });

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function startProcess(): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', () => children.delete(child));
    const up = await waitUntil(() => child.exitCode !== null || stderr.includes('is up'), 30_000);
    if (!up || child.exitCode !== null) throw new Error(`gatehouse did not start: ${stderr}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(ftpPort, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (!ok) throw new Error('gatehouse is up but the FTP port does not answer');
    return child;
  }

  async function kill9(child: ChildProcess): Promise<void> {
    const gone = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    expect(child.signalCode).toBe('SIGKILL');
  }

  it('a notice owed for uploads that got their 226 is sent once after kill -9 and restart', async () => {
    const first = await startProcess();
    const started = Date.now();
    const bob = await basicLogin(ftpPort, 'bob');
    try {
      for (const n of ['a.txt', 'b.txt', 'c.txt']) await bob.uploadFrom(Readable.from([Buffer.from(`file ${n}\n`)]), `/dropbox/${n}`);
    } finally {
      bob.close();
    }
    // killed inside the digest window: nothing was queued yet, the journal holds the three records
    expect(Date.now() - started).toBeLessThan(DIGEST_S * 1000);
    await kill9(first);
    expect(fs.readdirSync(noticesDir(stateDir)).filter((n) => n.endsWith('.json'))).toHaveLength(3);
    expect(maildirMessages(stateDir, 'alice')).toHaveLength(0);

    const second = await startProcess();
    expect(await waitUntil(() => maildirMessages(stateDir, 'alice').length >= 1, (DIGEST_S + 40) * 1000)).toBe(true);
    await new Promise((r) => setTimeout(r, 2500));
    const mails = maildirMessages(stateDir, 'alice');
    expect(mails).toHaveLength(1);
    const text = mails[0]!.toString('utf8');
    expect(text).toContain('Subject: [Gatehouse] 3 uploads to /dropbox');
    for (const n of ['a.txt', 'b.txt', 'c.txt']) expect(text).toContain(`"/dropbox/${n}"`);
    expect(fs.readdirSync(noticesDir(stateDir)).filter((n) => n.endsWith('.json'))).toEqual([]);
    await kill9(second);
  }, 150_000);
});
