/*
 * The operator's side of login throttling against a real (in-process) daemon's state files: `user show`,
 * `throttle list`, `explain` (verdict and why), `throttle clear` queued and applied on reload, and familiarity
 * and throttles surviving a restart. The pid file is removed first, so the CLI cannot signal the test runner;
 * the test calls the daemon's reload itself, as its SIGHUP handler would.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gatehouse } from '../../src/gatehouse.js';
import { NOBODY } from '../../src/policy/index.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { runCli } from '../helpers/cli.js';
import { clearThrottle, printThrottles } from '../../src/cli/throttle.js';
import { PassThrough } from 'node:stream';

let t: TestGatehouse;
const off = { enabled: false };
const ctx = (ip: string) => ({ service: 'smtp' as const, ip, identity: NOBODY, session: 'test' });

beforeAll(async () => {
  t = await startGatehouse({ auth: { bcrypt_cost: 10, delay: { base_ms: 1, max_ms: 2 } }, ftp: off, nntp: off }, [{ name: 'alice', password: PASSWORD }]);
  const p = t.gh.runtime.policy;
  expect((await p.authenticate(ctx('127.0.0.20'), 'alice', PASSWORD, true)).decision.allow).toBe(true);
  for (let i = 0; i < 5; i++) await p.authenticate(ctx('127.0.0.30'), 'alice', 'wrong-password-x', true);
  await t.gh.flushState();
  fs.rmSync(path.join(t.gh.config.paths.stateDir, 'gatehouse.pid'), { force: true });
});

afterAll(async () => {
  await t?.stop();
});

const cli = (...args: string[]) => runCli(['--config', t.configFile, ...args]);

describe('throttle state seen from the command line', { timeout: 90_000 }, () => {
  it('user show: familiar addresses with last login, and the throttles on the name', async () => {
    const r = await cli('user', 'show', 'alice');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^user alice\tgroups: -/);
    expect(r.stdout).toMatch(/familiar addresses \(login within 30 days\): \n {2}127\.0\.0\.20\tlast login \d{4}-\d\d-\d\dT/);
    expect(r.stdout).toMatch(/name alice from 127\.0\.0\.30\t5 failures/);
    expect(r.stdout).toMatch(/name alice from unfamiliar addresses\t5 failures/);
    // one command: the identity part (which source, FTP home) and the throttle part, for a local user
    expect(r.stdout).toContain(`source:  local (${t.gh.config.paths.usersFile})`);
    expect(r.stdout).toContain(`ftp home: ${t.gh.config.paths.ftpHomes}/alice`);
    expect(r.stdout).not.toMatch(/^dn:/m);
    expect(r.stdout).not.toContain(PASSWORD);
    const unknown = await cli('user', 'show', 'nosuchuser');
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toMatch(/not in the users file[\s\S]*familiar addresses[^\n]*none[\s\S]*throttles: none/);
  });

  it('throttle list', async () => {
    const r = await cli('throttle', 'list');
    expect(r.stdout).toMatch(/name alice from unfamiliar addresses\t5 failures\tuntil /);
    expect(r.stdout).toMatch(/state as saved by the daemon at /);
  });

  it('explain states the verdict and why: familiar or not, counts, limits, window', async () => {
    const from40 = await cli('explain', '--service', 'smtp', '--ip', '127.0.0.40', '--user', 'alice', '--action', 'authenticate', '--tls');
    expect(from40.code).toBe(1);
    expect(from40.stdout).toMatch(/rule: {3}auth\.throttle_user/);
    expect(from40.stdout).toMatch(/familiar for alice: no/);
    expect(from40.stdout).toMatch(/failures of alice from unfamiliar addresses: 5\/5 \(window ends in \d+ s; THROTTLED for \d+ s more\)/);
    const from20 = await cli('explain', '--service', 'smtp', '--ip', '127.0.0.20', '--user', 'alice', '--action', 'authenticate', '--tls', '--json');
    const j = JSON.parse(from20.stdout) as { allow: boolean; rule: string; throttle: string[]; stages: Array<{ stage: string; rule: string | null }> };
    // explain walks the session: the throttle stage lets the familiar address through, then the login succeeds.
    expect([j.allow, j.rule]).toEqual([true, 'auth.password']);
    expect(j.stages.find((s) => s.stage === 'throttle')?.rule).toBe('auth.throttle_familiar');
    expect(j.throttle[0]).toMatch(/familiar for alice: yes, last login/);
  });

  it('throttle clear is queued, applied by the daemon on reload, and the name may log in again', async () => {
    const r = await cli('throttle', 'clear', 'alice');
    expect(r.stdout).toMatch(/name alice: 2 throttle\(s\) cleared \(no running gatehouse; applied at its next start\)/);
    const p = t.gh.runtime.policy;
    expect((await p.authenticate(ctx('127.0.0.40'), 'alice', PASSWORD, true)).decision.rule).toBe('auth.throttle_user');
    await t.gh.reload();
    expect(fs.readdirSync(path.join(t.gh.config.paths.stateDir, 'throttle-clear'))).toEqual([]);
    expect((await p.authenticate(ctx('127.0.0.40'), 'alice', PASSWORD, true)).decision.rule).toBe('auth.password');
  });

  it('an IPv6 client is throttled per /64, listed and cleared as such', async () => {
    const p = t.gh.runtime.policy;
    for (let i = 0; i < 20; i++) await p.authenticate(ctx(`2001:db8:0:1::${i + 1}`), `v6guess${i}`, 'wrong-password-x', true);
    await t.gh.flushState();
    const out = () => {
      const s = new PassThrough();
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      return { s, text: () => text };
    };
    const list = out();
    await printThrottles(t.gh.config, list.s);
    expect(list.text()).toMatch(/address 2001:db8:0:1::\/64\t20 failures/);
    const clear = out();
    await clearThrottle(t.gh.config, '2001:db8:0:1::/64', clear.s);
    expect(clear.text()).toMatch(/^address 2001:db8:0:1::\/64: 1 throttle\(s\) cleared/);
  });

  it('familiarity and throttles survive a restart', async () => {
    const p = t.gh.runtime.policy;
    for (let i = 0; i < 20; i++) await p.authenticate(ctx('127.0.0.31'), `guess${i}`, 'wrong-password-x', true);
    await t.gh.flushState();
    const again = await Gatehouse.create({ configFile: t.configFile, stdout: false });
    try {
      const q = again.runtime.policy;
      expect((await q.throttleFacts('alice', '127.0.0.20')).facts.familiarSeen).toBeGreaterThan(0);
      expect((await q.throttles()).map((e) => `${e.kind} ${e.address ?? e.name ?? ''}`)).toContain('address 127.0.0.31');
    } finally {
      await again.stop(0);
    }
  });
});
