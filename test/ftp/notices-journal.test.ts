// The pending-notice journal on its own (no listeners): records found at start are recovered, an unreadable
// one is moved aside (never a crash), records of a share that no longer asks for notices are dropped, and due
// records are handed to the SMTP queue's enqueue once and then removed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { UploadNotices, noticesDir } from '../../src/ftp/notices.js';
import { UserStore } from '../../src/identity/users.js';
import { createLogging } from '../../src/net/log.js';
import { Policy } from '../../src/policy/index.js';
import type { Runtime, ServiceHub } from '../../src/runtime.js';
import type { Envelope } from '../../src/smtp/queue-types.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-notice-journal-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('notice journal', () => {
  it('recovers records, moves a corrupt one aside, drops orphans, enqueues due ones once', async () => {
    const config = parseConfig(
      {
        state_dir: 'var',
        smtp: { local_domains: ['local.test'] },
        ftp: { shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { bob: ['write'] }, notify: { to: ['alice'], digest_s: 5 } }] },
      },
      path.join(tmp, 'gatehouse.yaml'),
      tmp,
    );
    const users = new UserStore(config.paths.usersFile, 10);
    await users.add('alice', 'correct-horse-battery', []);
    const loaded = UserStore.load(config.paths.usersFile, 10, 0);
    const dir = noticesDir(config.paths.stateDir);
    fs.mkdirSync(dir, { recursive: true });
    const old = Date.now() - 60_000;
    const rec = (share: string, name: string, time: number) => JSON.stringify({ v: 1, share, name, bytes: 3, sha256: 'a'.repeat(64), uploader: 'bob', ip: '127.0.0.1', time, session: 's' });
    fs.writeFileSync(path.join(dir, `${old}-000000000001.json`), rec('/dropbox', '/dropbox/a', old));
    fs.writeFileSync(path.join(dir, `${old + 1}-000000000002.json`), rec('/dropbox', '/dropbox/b', old + 1));
    fs.writeFileSync(path.join(dir, `${old + 2}-000000000003.json`), '{"v":1,"sha'); // torn by a crash
    fs.writeFileSync(path.join(dir, `${old + 3}-000000000004.json`), rec('/gone', '/gone/x', old + 3));
    const logging = createLogging({ level: 'fatal', dir: null, maxBytes: 1 << 20, keep: 1, stdout: false });
    const policy = new Policy(config, loaded, logging.decision);
    const sent: Array<{ env: Envelope; data: Buffer }> = [];
    const hub: ServiceHub = { mail: null, news: null, notices: null };
    const rt = { config, policy, users: loaded, tls: null, log: logging.log, logging, hub } as unknown as Runtime;
    const notices = new UploadNotices(() => rt, hub, 60_000);
    expect(fs.existsSync(path.join(dir, `${old + 2}-000000000003.json.corrupt`))).toBe(true);

    // no SMTP queue yet: records wait
    notices.tick();
    await notices.stop();
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.json'))).toHaveLength(2); // orphan of /gone dropped
    hub.mail = {
      enqueue: (env, data) => {
        sent.push({ env, data });
        return Promise.resolve('q1');
      },
    };
    notices.tick();
    await notices.stop();
    notices.tick();
    await notices.stop();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.env.recipients.map((r) => r.address)).toEqual(['alice@local.test']);
    expect(sent[0]!.env.sender).toBe('');
    const text = sent[0]!.data.toString();
    expect(text).toContain('Subject: [Gatehouse] 2 uploads to /dropbox');
    expect(text).toContain('"/dropbox/a"');
    expect(text).toContain('"/dropbox/b"');
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.json'))).toEqual([]);
    logging.close();
  });
});
