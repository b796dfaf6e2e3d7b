import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EMBEDDED, loadConfig, parseConfig, type Config } from '../../src/config/load.js';
import { ROOT, runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-check-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

describe('gatehouse check on the shipped configs', () => {
  it.each(['config/gatehouse.yaml', 'config/profiles/office-relay.yaml', 'config/profiles/lab-dropbox.yaml', 'config/profiles/training.yaml'])(
    '%s passes with no warning',
    async (cfg) => {
      const r = await runCli(['--config', path.join(ROOT, cfg), 'check']);
      expect(r.stdout).not.toMatch(/warning/);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^ok: /m);
    },
  );

  it('insecure-demo.yaml is valid but warns about each weak setting (exit 1)', async () => {
    const r = await runCli(['--config', path.join(ROOT, 'config/profiles/insecure-demo.yaml'), 'check']);
    expect(r.code).toBe(1);
    for (const key of [
      'smtp.listen',
      'smtp.auth_requires_tls',
      'smtp.trusted_networks',
      'smtp.relay.smarthost.tls',
      'ftp.tls_required',
      'ftp.active_mode',
      'ftp.anonymous.enabled',
      'ftp.anonymous.write',
      'nntp.auth_requires_tls',
      'auth.bcrypt_cost',
    ]) {
      expect(r.stdout).toContain(`warning: ${key}: `);
    }
    expect(r.stdout).toMatch(/anonymous FTP write access/);
    expect(r.stdout).toMatch(/plain text/);
  });

  it('the embedded defaults are clean when no config file exists', async () => {
    const r = await runCli(['check'], { cwd: tmp, env: { GATEHOUSE_CONFIG: '' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/embedded defaults/);
  });

  it('the embedded defaults (in the code, so in every install) are exactly config/gatehouse.yaml', () => {
    const dir = path.join(ROOT, 'config');
    const strip = ({ source: _source, ...rest }: Config) => JSON.parse(JSON.stringify(rest, (_k, v: unknown) => (v instanceof Map ? [...(v as Map<unknown, unknown>)] : v))) as unknown;
    expect(strip(loadConfig(path.join(dir, 'gatehouse.yaml')))).toEqual(strip(parseConfig({}, EMBEDDED, dir)));
  });
});

describe('gatehouse check on broken configs: exit 2, file + key path + value + expectation, no stack trace', () => {
  const cases: Array<[string, string, RegExp[]]> = [
    ['typo-key.yaml', 'ftp:\n  anonymus: { enabled: true }\n', [/ftp\.anonymus: unknown key/]],
    ['bad-listen.yaml', 'smtp:\n  listen: localhost:25\n', [/smtp\.listen: got "localhost:25"; expected ADDRESS:PORT/]],
    ['octal-ip.yaml', 'access:\n  deny: ["012.0.0.1"]\n', [/access\.deny\.0: got "012\.0\.0\.1"; expected an IPv4 or IPv6 address/]],
    ['bad-type.yaml', 'smtp:\n  limits:\n    message_bytes: lots\n', [/smtp\.limits\.message_bytes: got "lots"/]],
    ['bad-enum.yaml', 'ftp:\n  anonymous:\n    write: everything\n', [/ftp\.anonymous\.write: got "everything"/]],
    ['open-relay.yaml', 'smtp:\n  trusted_networks: [0.0.0.0/0]\n', [/open relay/]],
    ['not-yaml.yaml', 'smtp: [unclosed\n', [/not valid YAML/]],
    ['top-list.yaml', '- a\n- b\n', [/mapping/]],
    ['half-tls.yaml', 'tls:\n  cert: some.crt\n', [/cert and key must both be set/]],
  ];
  it.each(cases)('%s', async (name, text, patterns) => {
    const f = file(name, text);
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(f);
    for (const p of patterns) expect(r.stderr).toMatch(p);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a named config file that does not exist is an error', async () => {
    const r = await runCli(['--config', path.join(tmp, 'missing.yaml'), 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read config file \(ENOENT\)/);
  });

  it('a TLS pair that does not match is refused', async () => {
    const { default: selfsigned } = await import('selfsigned');
    const a = await selfsigned.generate([{ name: 'commonName', value: 'a.test' }], { keySize: 2048 });
    const b = await selfsigned.generate([{ name: 'commonName', value: 'b.test' }], { keySize: 2048 });
    file('a.crt', a.cert);
    file('b.key', b.private);
    const f = file('mismatch.yaml', 'tls:\n  cert: a.crt\n  key: b.key\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not match/);
  });
});
