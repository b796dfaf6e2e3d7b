import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

describe('gatehouse check on proxy_protocol (issue 17)', () => {
  it('a balancer given as one host per entry, with passive.address set, is clean', async () => {
    const f = file('proxy-ok.yaml', 'smtp:\n  proxy_protocol: { from: [127.0.0.1/32] }\nftp:\n  proxy_protocol: { from: [127.0.0.1] }\n  passive: { address: 127.0.0.40 }\nnntp:\n  proxy_protocol: { from: ["::1/128"] }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.stdout).not.toMatch(/warning/);
    expect(r.code).toBe(0);
  });

  it('warns when from is wider than a host, and when FTP behind a balancer advertises its own address', async () => {
    const f = file('proxy-wide.yaml', 'smtp:\n  proxy_protocol: { from: [10.0.0.0/8] }\nftp:\n  proxy_protocol: { from: [127.0.0.1/32] }\nnntp:\n  proxy_protocol: { from: ["fd00::/64"] }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('warning: smtp.proxy_protocol.from.0: 10.0.0.0/8 is wider than one host');
    expect(r.stdout).toContain('warning: nntp.proxy_protocol.from.0: fd00::/64 is wider than one host');
    expect(r.stdout).toContain('warning: ftp.passive.address: ftp.proxy_protocol is on but passive.address is null');
  });

  it('a header timeout under 3 s is a config error (the spec asks receivers to wait at least 3 s)', async () => {
    const f = file('proxy-timeout.yaml', 'smtp:\n  proxy_protocol: { from: [127.0.0.1/32], header_timeout_s: 1 }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/smtp\.proxy_protocol\.header_timeout_s/);
  });
});

describe('gatehouse check on state_store (issue 17)', () => {
  it('explains on_error local and warns about a plain-text store off the box', async () => {
    const f = file('store.yaml', 'state_store: { url: "redis://10.0.0.20:6379/0" }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('warning: state_store.url: redis:// to 10.0.0.20 without TLS');
    expect(r.stdout).toContain('warning: state_store.on_error: local: while the store is unreachable each instance counts alone');
  });

  it('rediss:// with on_error refuse is clean; a URL that is not redis is a config error', async () => {
    const ok = await runCli(['--config', file('store-ok.yaml', 'state_store: { url: "rediss://10.0.0.20:6380/0", on_error: refuse }\n'), 'check']);
    expect(ok.stdout).not.toMatch(/warning/);
    expect(ok.code).toBe(0);
    const bad = await runCli(['--config', file('store-bad.yaml', 'state_store: { url: "http://10.0.0.20/" }\n'), 'check']);
    expect(bad.code).toBe(2);
    expect(bad.stdout + bad.stderr).toMatch(/state_store\.url/);
  });
});
