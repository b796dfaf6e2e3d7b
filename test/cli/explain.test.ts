import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { UserStore } from '../../src/identity/users.js';
import { explainWithThrottle, type ExplainRequest } from '../../src/cli/explain.js';
import { Policy } from '../../src/policy/index.js';
import { runCli as runCliBounded } from '../helpers/cli.js';

// Each row spawns the CLI: generous bounds, as a loaded machine can take many seconds per spawn.
vi.setConfig({ testTimeout: 120_000 });
const runCli = (args: string[]) => runCliBounded(args, { timeoutMs: 90_000 });

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-explain-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(
  cfg,
  `state_dir: var
auth: { bcrypt_cost: 10 }
access: { allow: ["0.0.0.0/0", "::/0"], deny: [127.0.0.66/32] }
smtp: { local_domains: [office.test] }
nntp:
  groups:
    - { name: office.general, read: [authenticated], post: [authenticated] }
    - { name: office.staff, read: ["group:staff"], post: ["group:staff"] }
`,
);
beforeAll(async () => {
  const store = new UserStore(path.join(tmp, 'users.yaml'), 10);
  await store.add('alice', 'a-long-passphrase', ['staff']);
  await store.add('bob', 'a-long-passphrase', []);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// [service, ip, action, user, tls, object, allow, rule]
const rows: Array<[ExplainRequest['service'], string, string, string | undefined, boolean, string | undefined, boolean, string]> = [
  ['smtp', '203.0.113.9', 'relay', undefined, false, 'bob@example.net', false, 'relay.default'],
  ['smtp', '127.0.0.1', 'relay', undefined, false, 'bob@example.net', true, 'relay.trusted_networks'],
  ['smtp', '127.0.0.20', 'relay', 'alice', true, 'bob@example.net', true, 'relay.authenticated'],
  ['smtp', '127.0.0.20', 'relay', undefined, false, 'alice@office.test', true, 'relay.local_domain'],
  ['smtp', '127.0.0.20', 'relay', undefined, false, 'carol@office.test', false, 'relay.unknown_local_user'],
  ['smtp', '127.0.0.20', 'relay', undefined, false, 'bob%example.net@office.test', false, 'address.percent_hack'],
  ['smtp', '127.0.0.66', 'relay', undefined, false, 'alice@office.test', false, 'access.deny'],
  ['smtp', '127.0.0.66', 'connect', undefined, false, undefined, false, 'access.deny'],
  ['ftp', '2001:db8::1', 'connect', undefined, false, undefined, true, 'access.allow'],
  ['smtp', '127.0.0.20', 'authenticate', 'alice', false, undefined, false, 'auth.tls_required'],
  ['nntp', '127.0.0.20', 'authenticate', 'alice', true, undefined, true, 'auth.password'],
  ['nntp', '127.0.0.20', 'read', 'bob', true, 'office.staff', false, 'group.default'],
  ['nntp', '127.0.0.20', 'read', 'alice', true, 'office.staff', true, 'group.read'],
  ['nntp', '127.0.0.20', 'post', undefined, false, 'office.general', false, 'group.default'],
];

describe('gatehouse explain gives the verdict of the policy functions the listeners call', () => {
  it.each(rows)('%s %s %s %s tls=%s %s', async (service, ip, action, user, tls, object, allow, rule) => {
    const args = ['--config', cfg, 'explain', '--service', service, '--ip', ip, '--action', action];
    if (user) args.push('--user', user);
    if (tls) args.push('--tls');
    if (object) args.push('--object', object);
    const r = await runCli([...args, '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { allow: boolean; rule: string; trace: unknown[] };
    expect([out.allow, out.rule]).toEqual([allow, rule]);
    expect(r.code).toBe(allow ? 0 : 1);

    // The same question asked in-process gets the same answer.
    const config = loadConfig(cfg);
    const users = UserStore.load(config.paths.usersFile, 10);
    const { decision: d } = await explainWithThrottle(new Policy(config, users, () => {}), users, { service, ip, action, tls, ...(user && { user }), ...(object && { object }) });
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });

  it('prints a readable trace of every rule consulted', async () => {
    const r = await runCli(['--config', cfg, 'explain', '--service', 'smtp', '--ip', '203.0.113.9', '--action', 'relay', '--object', 'bob@example.net']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^DENY {2}smtp relay bob@example\.net from 203\.0\.113\.9/);
    expect(r.stdout).toMatch(/rule: {3}relay\.default/);
    expect(r.stdout).toMatch(/dunno +relay\.trusted_networks/);
  });

  it('usage errors exit 2', async () => {
    expect((await runCli(['--config', cfg, 'explain', '--service', 'smtp'])).code).toBe(2);
    expect((await runCli(['--config', cfg, 'explain', '--service', 'smtp', '--ip', '127.0.0.1', '--action', 'relay'])).code).toBe(2);
  });
});

describe('gatehouse explain for FTP', () => {
  const ftpCfg = path.join(tmp, 'ftp.yaml');
  fs.writeFileSync(
    ftpCfg,
    `state_dir: var
auth: { bcrypt_cost: 10 }
ftp:
  shares:
    - { path: /dropbox, dir: ftp/dropbox, rights: { "group:staff": [write] } }
`,
  );
  // [arguments, allow, rule, stage that decided]
  const rows: Array<[string[], boolean, string, string]> = [
    [['--user', 'alice', '--tls', '--action', 'write', '--object', '/dropbox/hw.txt'], true, 'paths.ok', 'action'],
    [['--user', 'alice', '--tls', '--action', 'list', '--object', '/dropbox'], false, 'paths.rights', 'action'],
    [['--user', 'alice', '--tls', '--action', 'overwrite', '--object', '/dropbox/hw.txt'], false, 'paths.dropbox', 'action'],
    [['--user', 'bob', '--tls', '--action', 'write', '--object', '/dropbox/x'], true, 'paths.ok', 'action'],
    [['--user', 'alice', '--tls', '--action', 'read', '--object', '/../bob/secret'], false, 'paths.escape', 'action'],
    [['--user', 'alice', '--tls', '--action', 'read', '--object', '/a%2e%2e/x'], false, 'paths.syntax', 'action'],
    [['--action', 'read', '--object', '/x'], false, 'paths.no_jail', 'action'],
    [['--user', 'anonymous', '--action', 'authenticate'], false, 'anonymous.disabled', 'authenticate'],
    [['--action', 'active_mode', '--object', '127.0.0.30:40000'], false, 'ftp.active_mode', 'action'],
    // The whole session, not one stage: anonymous FTP off refuses the login before any path is looked at, and a
    // password without TLS is refused before the action.
    [['--user', 'anonymous', '--action', 'read', '--object', '/x'], false, 'anonymous.disabled', 'authenticate'],
    [['--user', 'alice', '--action', 'write', '--object', '/dropbox/hw.txt'], false, 'auth.tls_required', 'authenticate'],
    [['--user', 'carol', '--tls', '--action', 'write', '--object', '/dropbox/hw.txt'], false, 'auth.bad_credentials', 'authenticate'],
    [['--user', 'alice'], false, 'auth.tls_required', 'authenticate'],
    [['--user', 'alice', '--tls'], true, 'auth.password', 'authenticate'],
    // --stage asks one stage alone.
    [['--user', 'alice', '--action', 'write', '--object', '/dropbox/hw.txt', '--stage', 'action'], true, 'paths.ok', 'action'],
    [['--user', 'anonymous', '--action', 'read', '--object', '/x', '--stage', 'action'], true, 'paths.ok', 'action'], // the path rules alone (what explain used to answer)
    [['--user', 'alice', '--action', 'write', '--object', '/dropbox/hw.txt', '--stage', 'connect'], true, 'access.allow', 'connect'],
    [['--user', 'alice', '--tls', '--stage', 'tls'], true, 'tls.offered', 'tls'],
  ];
  it.each(rows)('%j → %s %s at %s', async (args, allow, rule, stage) => {
    const r = await runCli(['--config', ftpCfg, 'explain', '--service', 'ftp', '--ip', '127.0.0.20', ...args, '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.split('\n').filter((l) => l.startsWith('{'))[0]!) as { allow: boolean; rule: string; stage: string };
    expect([out.allow, out.rule, out.stage]).toEqual([allow, rule, stage]);
    expect(r.code).toBe(allow ? 0 : 1);
  });

  it('prints the stages the session passed, the one that refused, and those not reached', async () => {
    const r = await runCli(['--config', ftpCfg, 'explain', '--service', 'ftp', '--ip', '127.0.0.20', '--user', 'anonymous', '--action', 'read', '--object', '/x']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^DENY {2}ftp read \/x from 127\.0\.0\.20 as anonymous$/m);
    expect(r.stdout).toMatch(/stage: {2}authenticate \(the first stage that refuses\)/);
    expect(r.stdout).toMatch(/^ {4}connect +permit +access\.allow/m);
    expect(r.stdout).toMatch(/^ {4}tls +skip +plain-text session/m);
    expect(r.stdout).toMatch(/^ {4}authenticate +reject +anonymous\.disabled/m);
    expect(r.stdout).toMatch(/^ {4}read +not reached/m);
  });

  it.each([
    [['--stage', 'bogus', '--action', 'connect'], /--stage: expected one of connect, tls, throttle, authenticate, action/],
    [['--stage', 'authenticate'], /nothing to check for this session: not logged in/],
    [['--stage', 'action'], /--stage action needs --action/],
    [['--action', 'read'], /--action read needs --object PATH/],
    [['--action', 'fly', '--object', 'x'], /no action "fly" for ftp/],
  ])('misuse %j exits 2 with usage', async (args, message) => {
    const r = await runCli(['--config', ftpCfg, 'explain', '--service', 'ftp', '--ip', '127.0.0.66', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/usage: /);
  });
});
