/*
 * `gatehouse audit` against real running instances of the shipped profiles: the deliberately weak
 * insecure-demo fails the probes a trainer expects (open relay from an untrusted address, plain-text AUTH,
 * anonymous FTP upload, weak settings) and leaves nothing behind; every secure profile passes them all.
 * The last case runs the real CLI against a config with fixed (free) ports.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runAudit, type ProbeResult } from '../../src/ops/audit/probes.js';
import type { Service } from '../../src/policy/index.js';
import { ROOT, runCli } from '../helpers/cli.js';
import { PASSWORD, randomPassiveRange, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

type Yaml = Record<string, Record<string, unknown>>;

function profile(name: string, extra: Yaml = {}): Yaml {
  const p = parse(fs.readFileSync(path.join(ROOT, 'config/profiles', `${name}.yaml`), 'utf8')) as Yaml;
  const out: Yaml = { ...p, state_dir: '../var' as never, users_file: 'users.yaml' as never, log: { stdout: false } };
  for (const svc of ['smtp', 'ftp', 'nntp'] as const) {
    const s = { ...(p[svc] ?? {}) };
    if (s.enabled === false) {
      out[svc] = s;
      continue;
    }
    s.listen = '127.0.0.1:0';
    if (s.implicit_tls_listen) s.implicit_tls_listen = '127.0.0.1:0';
    if (svc === 'ftp') s.passive = { ...(s.passive as object), ports: randomPassiveRange() };
    out[svc] = s;
  }
  for (const [k, v] of Object.entries(extra)) out[k] = { ...(out[k] ?? {}), ...v };
  return out;
}

async function audit(t: TestGatehouse, ftpUser: { name: string; password: string } | null = null): Promise<ProbeResult[]> {
  const ep = (svc: Service, name: string) => {
    const a = t.gh.addresses(svc).find((b) => b.name === name);
    return a ? { host: a.host, port: a.port } : null;
  };
  const c = t.gh.config;
  return runAudit({
    config: c,
    targets: {
      smtp: c.smtp.enabled ? { plain: ep('smtp', 'plain'), implicit: ep('smtp', 'implicit_tls') } : undefined,
      ftp: c.ftp.enabled ? { plain: ep('ftp', 'plain') } : undefined,
      nntp: c.nntp.enabled ? { plain: ep('nntp', 'plain'), implicit: ep('nntp', 'implicit_tls') } : undefined,
    },
    ftpUser,
  });
}

const running: TestGatehouse[] = [];
afterAll(async () => {
  for (const t of running) await t.stop();
});

const byId = (rs: ProbeResult[]) => new Map(rs.map((r) => [r.id, r]));

describe('gatehouse audit', () => {
  it('fails the insecure-demo profile where a trainer expects, and cleans up after itself', async () => {
    const t = await startGatehouse(profile('insecure-demo'));
    running.push(t);
    const results = await audit(t);
    const r = byId(results);
    // 127.0.0.0/8 is trusted here, so plain relaying from the "outside" address works: the hole.
    for (const trick of ['plain', 'source_route']) {
      expect(r.get(`smtp.relay.${trick}`), trick).toMatchObject({ status: 'FAIL', rule: 'relay.trusted_networks' });
    }
    // The address parser still refuses the routing tricks, whoever sends them.
    for (const trick of ['percent_hack', 'bang_path', 'ip_literal']) {
      expect(r.get(`smtp.relay.${trick}`), trick).toMatchObject({ status: 'PASS', rule: `address.${trick}` });
    }
    for (const trick of ['quoted_local', 'trailing_dot']) expect(r.get(`smtp.relay.${trick}`)!.status, trick).toBe('PASS');
    expect(r.get('smtp.auth_plaintext')!.status).toBe('FAIL');
    expect(r.get('smtp.tls')!.status).toBe('PASS');
    expect(r.get('ftp.anonymous')!.status).toBe('FAIL');
    expect(r.get('ftp.anonymous_write')!.status).toBe('FAIL');
    expect(r.get('ftp.anonymous_write')!.answer).toContain('probe file removed');
    expect(r.get('ftp.login_plaintext')!.status).toBe('FAIL');
    expect(r.get('ftp.traversal')!.status).toBe('PASS');
    expect(r.get('nntp.auth_plaintext')!.status).toBe('FAIL');
    expect(r.get('nntp.hidden_groups')!.status).toBe('PASS');
    expect(results.filter((x) => x.id.startsWith('config.') && x.status === 'FAIL').map((x) => x.id)).toEqual(expect.arrayContaining(['config.smtp.plaintext_auth', 'config.auth.weak_cost']));
    // nothing left behind: no queued mail, no uploaded file
    const p = t.gh.config.paths;
    for (const sub of ['msg', 'env']) {
      const dir = path.join(p.spoolDir, sub);
      expect(fs.existsSync(dir) ? fs.readdirSync(dir) : [], sub).toEqual([]);
    }
    const incoming = path.join(p.ftpAnonRoot, 'incoming');
    expect(fs.existsSync(incoming) ? fs.readdirSync(incoming) : []).toEqual([]);
  }, 90_000);

  for (const name of ['office-relay', 'lab-dropbox', 'training']) {
    it(`passes every probe against the ${name} profile`, async () => {
      const t = await startGatehouse(profile(name, { auth: { bcrypt_cost: 12 } }));
      running.push(t);
      const results = await audit(t);
      expect(results.filter((x) => x.status === 'FAIL')).toEqual([]);
      expect(results.filter((x) => x.status === 'PASS').length).toBeGreaterThanOrEqual(3);
      if (t.gh.config.smtp.enabled) expect(byId(results).get('smtp.relay.plain')).toMatchObject({ status: 'PASS', rule: 'relay.default' });
    }, 90_000);
  }

  it('with a test user, runs the FTP jail probes in her home (traversal, PORT bounce, planted symlink) and removes the symlink', async () => {
    const t = await startGatehouse(profile('training', { auth: { bcrypt_cost: 12 } }), [{ name: 'alice', password: PASSWORD, groups: ['students'] }]);
    running.push(t);
    const results = await audit(t, { name: 'alice', password: PASSWORD });
    const r = byId(results);
    expect(results.filter((x) => x.status === 'FAIL')).toEqual([]);
    expect(r.get('ftp.traversal')).toMatchObject({ status: 'PASS' });
    expect(r.get('ftp.traversal')!.tried).toContain('as alice');
    expect(r.get('ftp.port_foreign')).toMatchObject({ status: 'PASS', rule: 'ftp.active_mode' });
    expect(r.get('ftp.symlink')!.status).toBe('PASS');
    expect(r.get('ftp.symlink')!.answer).toMatch(/^CWD → 550/);
    const home = path.join(t.gh.config.paths.ftpHomes, 'alice');
    expect(fs.readdirSync(home).filter((n) => n.startsWith('.gatehouse-audit'))).toEqual([]);
    const wrong = byId(await audit(t, { name: 'alice', password: 'not-her-password' }));
    expect(wrong.get('ftp.symlink')).toMatchObject({ status: 'SKIP' });
    expect(wrong.get('ftp.symlink')!.answer).toMatch(/login as alice failed: 530/);
  }, 90_000);

  it('counts a refusal at connect as a pass, and still checks TLS from an allowed address', async () => {
    const t = await startGatehouse(profile('office-relay', { auth: { bcrypt_cost: 12 }, access: { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.20/32'] } }));
    running.push(t);
    const r = byId(await audit(t));
    expect(r.get('smtp.relay.plain')!.status).toBe('PASS');
    expect(r.get('smtp.relay.plain')!.answer).toMatch(/^refused at connect: 5\d\d/);
    expect(r.get('smtp.relay.plain')!.rule).toMatch(/^access\.deny/);
    expect(r.get('smtp.tls')!.status).toBe('PASS');
    expect(r.get('smtp.implicit_tls')!.status).toBe('PASS');
  }, 60_000);

  it('refuses a bad --ftp-user and a user without --password-stdin (exit 2)', async () => {
    const bad = await runCli(['audit', '--ftp-user', 'Alice\r\nDELE x', '--password-stdin'], { input: 'x' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--ftp-user: .* is not a user name/);
    const nopw = await runCli(['audit', '--ftp-user', 'alice']);
    expect(nopw.code).toBe(2);
    expect(nopw.stderr).toMatch(/needs --password-stdin/);
  }, 60_000);

  it('runs as a CLI against the config file, prints a report card and exits 0', async () => {
    const free = () =>
      new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const { port } = s.address() as net.AddressInfo;
          s.close(() => resolve(port));
        });
      });
    const over = profile('office-relay', { auth: { bcrypt_cost: 12 }, smtp: { listen: `127.0.0.1:${await free()}`, implicit_tls_listen: `127.0.0.1:${await free()}` } });
    const t = await startGatehouse(over);
    running.push(t);
    const r = await runCli(['--config', t.configFile, 'audit'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^PASS {2}smtp\.relay\.plain +RCPT TO:<audit-victim@example\.net> from 127\.0\.0\.20$/m);
    expect(r.stdout).toMatch(/→ 5\d\d .*\[rule: relay\.default\]/);
    expect(r.stdout).toMatch(/^PASS {2}smtp\.implicit_tls /m);
    expect(r.stdout).toMatch(/\d+ passed, 0 failed, \d+ skipped/);
    const j = await runCli(['--config', t.configFile, 'audit', '--json'], { timeoutMs: 60_000 });
    expect((JSON.parse(j.stdout) as { ok: boolean }).ok).toBe(true);
  }, 120_000);
});
