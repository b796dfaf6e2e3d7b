/*
 * Upload notices survive a crash between the 226 and the queueing (the "recover at start-up" design of
 * ftp/notices.ts): Gatehouse runs as operators run it (`src/cli/main.ts start` in a child process), three
 * uploads get their 226, the process is killed with SIGKILL before the digest window closes, and after a restart
 * exactly one digest listing the three files reaches the reader's Maildir. Every wait is bounded; children are
 * killed in afterAll.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noticesDir } from '../../src/ftp/notices.js';
import { randomPassiveRange } from '../helpers/gatehouse.js';
import { ChildGatehouses, writeConfigDir, type ConfigDir } from '../helpers/process.js';
import { freePort, maildirMessages, waitUntil } from '../smtp/listener-client.js';
import { PASSWORD, basicLogin } from './ftp-helpers.js';

const DIGEST_S = 15;

describe('upload notices across kill -9', () => {
  let cfg: ConfigDir;
  let stateDir: string;
  let ftpPort: number;
  const procs = new ChildGatehouses();

  beforeAll(async () => {
    ftpPort = await freePort();
    cfg = await writeConfigDir(
      'gatehouse-notice-crash-',
      {
        hostname: 'gatehouse.test',
        auth: { bcrypt_cost: 10 },
        log: { stdout: false, level: 'info' },
        smtp: { listen: `127.0.0.1:${await freePort()}`, local_domains: ['local.test'], queue: { retry_s: [1] } },
        ftp: {
          listen: `127.0.0.1:${ftpPort}`,
          passive: { ports: randomPassiveRange() },
          shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { bob: ['write'] }, notify: { to: ['alice'], digest_s: DIGEST_S } }],
        },
        nntp: { enabled: false },
      },
      [
        { name: 'alice', password: PASSWORD },
        { name: 'bob', password: PASSWORD },
      ],
    );
    stateDir = cfg.stateDir;
  });

  afterAll(() => {
    procs.killAll();
    fs.rmSync(cfg.dir, { recursive: true, force: true });
  });

  const startProcess = async () => (await procs.start(cfg.configFile)).child;
  const kill9 = (child: ChildProcess) => procs.kill9(child);

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
