import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flow, redact } from '../../src/cli/config.js';
import { ROOT, runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const conf = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(
  conf,
  'state_dir: var\nsmtp:\n  limits: { recipients: 50 }\n  relay:\n    smarthost: { host: relay.test, user: office, password_file: relay.pw }\nmetrics:\n  listen: 127.0.0.1:9325\n  password_file: metrics.pw\n',
);
fs.writeFileSync(path.join(tmp, 'relay.pw'), 'the-relay-secret-123\n', { mode: 0o600 });
fs.writeFileSync(path.join(tmp, 'metrics.pw'), 'the-metrics-secret-123\n', { mode: 0o600 });

// several CLI runs per test: generous bounds for a loaded machine
describe('gatehouse config show (postconf)', { timeout: 120_000 }, () => {
  it('prints every key of the effective config, defaults filled in, one `key = value` line each', async () => {
    const r = await runCli(['--config', conf, 'config', 'show']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^smtp\.limits\.recipients = 50$/m);
    expect(r.stdout).toMatch(/^smtp\.limits\.connections_per_ip = 10$/m); // a default
    expect(r.stdout).toMatch(/^ftp\.passive\.ports = "30000-30099"$/m);
    expect(r.stdout).toMatch(/^access\.allow = \[0\.0\.0\.0\/0, ::\/0\]$/m);
    expect(r.stdout).toMatch(/^smtp\.relay\.smarthost\.tls = starttls$/m);
    expect(r.stdout).not.toMatch(/secret-123/); // the password files' contents are never read or printed
  });

  it('--changed prints only what differs from the defaults (postconf -n)', async () => {
    const r = await runCli(['--config', conf, 'config', 'show', '--changed']);
    expect(r.code).toBe(0);
    const keys = r.stdout.trim().split('\n').map((l) => l.split(' = ')[0]);
    expect(keys).toEqual(['state_dir', 'metrics.listen', 'metrics.password_file', 'smtp.relay.smarthost.host', 'smtp.relay.smarthost.user', 'smtp.relay.smarthost.password_file', 'smtp.limits.recipients']);
  });

  it('the shipped default config has nothing changed but where it keeps its files', async () => {
    const r = await runCli(['--config', path.join(ROOT, 'config/gatehouse.yaml'), 'config', 'show', '--changed']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
  });

  it('KEY prints one value; a section prints its keys; --json', async () => {
    let r = await runCli(['--config', conf, 'config', 'show', 'smtp.limits.recipients']);
    expect(r.stdout).toBe('smtp.limits.recipients = 50\n');
    r = await runCli(['--config', conf, 'config', 'show', 'auth.lockout']);
    expect(r.stdout).toBe('auth.lockout.failures = 5\nauth.lockout.window_s = 900\nauth.lockout.lock_s = 900\n');
    r = await runCli(['--config', conf, 'config', 'show', '--json', 'smtp.limits.recipients', 'ftp.shares']);
    expect(JSON.parse(r.stdout)).toEqual({ 'smtp.limits.recipients': 50, 'ftp.shares': [] });
  });

  it('an unknown key, subcommand or option exits 2 with a suggestion or usage', async () => {
    let r = await runCli(['--config', conf, 'config', 'show', 'smtp.limits.recipent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no such key; did you mean "smtp\.limits\.recipients"\?/);
    r = await runCli(['--config', conf, 'config', 'shwo']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: gatehouse config show/);
    r = await runCli(['--config', conf, 'config', 'show', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/unexpected error/);
  });

  it('a null section is one line', async () => {
    const r = await runCli(['config', 'show', 'smtp.relay'], { cwd: tmp, env: { GATEHOUSE_CONFIG: '' } });
    expect(r.stdout).toBe('smtp.relay.smarthost = null\n');
  });
});

describe('secrets are never printed', () => {
  it.each<[string, unknown, unknown]>([
    ['directory.bind_password', 'hunter2hunter2', '<hidden>'],
    ['state_store.url', 'redis://user:s3cret@127.0.0.1:6379/0', 'redis://user:<hidden>@127.0.0.1:6379/0'],
    ['x.api_token', 'abc', '<hidden>'],
    ['metrics.password_file', 'metrics.pw', 'metrics.pw'],
    ['x.client_secret', null, null],
    ['smtp.relay.smarthost', { host: 'h', password: 'p' }, { host: 'h', password: '<hidden>' }],
  ])('%s', (key, value, shown) => {
    expect(redact(key, value)).toEqual(shown);
  });

  it('flow() writes YAML that reads back', () => {
    expect(flow(['a', 'b:c', 'yes', '1.5', 'x y'])).toBe('[a, b:c, "yes", "1.5", x y]');
    expect(flow({ 'group:staff': ['read'] })).toBe('{ "group:staff": [read] }');
  });
});
