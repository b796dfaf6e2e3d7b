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

  it('warns when PROT P data connections need not resume the TLS session (ftp.tls.require_session_reuse: false)', async () => {
    const f = file('no-reuse.yaml', 'ftp:\n  tls:\n    require_session_reuse: false\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('warning: ftp.tls.require_session_reuse: ');
    expect(r.stdout).toMatch(/passive port first/);
  });

  it('warns about every login-throttle setting weaker than the default, naming the risk', async () => {
    const f = file(
      'lax-throttle.yaml',
      `state_dir: ./var
auth:
  lockout: { failures: 6 }
  throttle: { address_failures: 21, exempt_address_failures: 201 }
  throttle_exempt: [192.0.2.0/24, 10.0.0.0/16, "2001:db8:1::/48", "2001:db8::/32"]
  familiar: { days: 0 }
  delay: { base_ms: 100, max_ms: 8000 }
`,
    );
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning: auth\.lockout\.failures: 6 \(default 5\): limit raised: .*password guessing/);
    expect(r.stdout).toMatch(/warning: auth\.throttle\.address_failures: 21 \(default 20\): limit raised: /);
    expect(r.stdout).toMatch(/warning: auth\.throttle\.exempt_address_failures: 201 \(default 200\): limit raised: /);
    expect(r.stdout).toMatch(/warning: auth\.throttle_exempt\.1: 10\.0\.0\.0\/16 \(default \[\]\): list widened: wider than \/24/);
    expect(r.stdout).toMatch(/warning: auth\.throttle_exempt\.3: 2001:db8::\/32 \(default \[\]\): list widened: wider than \/48/);
    expect(r.stdout).not.toMatch(/throttle_exempt\.[02]/);
    expect(r.stdout).toMatch(/warning: auth\.familiar\.days: 0 \(default 30\): limit lowered: .*familiarity off.*denial of service/);
    expect(r.stdout).toMatch(/warning: auth\.delay\.base_ms: 100 \(default 500\): limit lowered: .*guessing runs faster/);
    expect(r.stdout).not.toMatch(/auth\.delay\.max_ms/);
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
    fs.chmodSync(file('b.key', b.private), 0o600);
    const f = file('mismatch.yaml', 'tls:\n  cert: a.crt\n  key: b.key\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not match/);
  });
});

describe('gatehouse check on proxy_protocol (issue 17)', () => {
  it('a balancer given as one host per entry, with passive.address set, is clean', async () => {
    const f = file('proxy-ok.yaml', 'state_dir: var\nsmtp:\n  proxy_protocol: { from: [127.0.0.1/32] }\nftp:\n  proxy_protocol: { from: [127.0.0.1] }\n  passive: { address: 127.0.0.40 }\nnntp:\n  proxy_protocol: { from: ["::1/128"] }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.stdout).not.toMatch(/warning/);
    expect(r.code).toBe(0);
  });

  it('warns when from is wider than a host, and when FTP behind a balancer advertises its own address', async () => {
    const f = file('proxy-wide.yaml', 'state_dir: var\nsmtp:\n  proxy_protocol: { from: [10.0.0.0/8] }\nftp:\n  proxy_protocol: { from: [127.0.0.1/32] }\nnntp:\n  proxy_protocol: { from: ["fd00::/64"] }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^warning: smtp\.proxy_protocol\.from\.0: 10\.0\.0\.0\/8 .*is wider than one host/m);
    expect(r.stdout).toMatch(/^warning: nntp\.proxy_protocol\.from\.0: fd00::\/64 .*is wider than one host/m);
    expect(r.stdout).toMatch(/^warning: ftp\.passive\.address: .*ftp\.proxy_protocol is on but passive\.address is null/m);
  });

  it('a header timeout under 3 s is a config error (the spec asks receivers to wait at least 3 s)', async () => {
    const f = file('proxy-timeout.yaml', 'state_dir: var\nsmtp:\n  proxy_protocol: { from: [127.0.0.1/32], header_timeout_s: 1 }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/smtp\.proxy_protocol\.header_timeout_s/);
  });
});

describe('gatehouse check on state_store (issue 17)', () => {
  it('explains on_error local and warns about a plain-text store off the box', async () => {
    const f = file('store.yaml', 'state_dir: var\nstate_store: { url: "redis://10.0.0.20:6379/0" }\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^warning: state_store\.url: .*redis:\/\/ to 10\.0\.0\.20 without TLS/m);
    expect(r.stdout).toMatch(/^warning: state_store\.on_error: .*while the store is unreachable each instance counts alone/m);
  });

  it('rediss:// with on_error refuse is clean; a URL that is not redis is a config error', async () => {
    const ok = await runCli(['--config', file('store-ok.yaml', 'state_dir: var\nstate_store: { url: "rediss://10.0.0.20:6380/0", on_error: refuse }\n'), 'check']);
    expect(ok.stdout).not.toMatch(/warning/);
    expect(ok.code).toBe(0);
    const bad = await runCli(['--config', file('store-bad.yaml', 'state_dir: var\nstate_store: { url: "http://10.0.0.20/" }\n'), 'check']);
    expect(bad.code).toBe(2);
    expect(bad.stdout + bad.stderr).toMatch(/state_store\.url/);
  });
});

const HASH = `$2b$10$${'a'.repeat(53)}`;
function usersFile(name: string, users: Record<string, string[]>, mode = 0o600): string {
  const f = file(name, `users:\n${Object.entries(users).map(([u, g]) => `  ${u}: { hash: "${HASH}", groups: [${g.join(', ')}] }`).join('\n')}\n`);
  fs.chmodSync(f, mode);
  return f;
}

// several CLI runs per test: generous bounds for a loaded machine
describe('gatehouse check judges meaning, files and names (issue 14)', { timeout: 120_000 }, () => {
  it.each([['0.0.0.0/00'], ['"0::0/0"'], ['"::ffff:0.0.0.0/96"'], ['0.0.0.0/1, 128.0.0.0/1']])('trusted_networks [%s] refuses like 0.0.0.0/0 (exit 2), and explain cannot allow relaying', async (list) => {
    const f = file(`everything-${list.replace(/\W/g, '')}.yaml`, `state_dir: var\nsmtp:\n  trusted_networks: [${list}]\n`);
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/open relay/);
    const e = await runCli(['--config', f, 'explain', '--service', 'smtp', '--ip', '198.51.100.7', '--action', 'relay', '--object', 'bob@example.net']);
    expect(e.code).toBe(2);
    expect(e.stdout).not.toMatch(/ALLOW/);
  });

  it('a deny entry in a long mapped spelling denies the client it names, in explain', async () => {
    const f = file('mapped-deny.yaml', 'state_dir: var\naccess:\n  deny: ["0:0:0:0:0:ffff:cb00:7100/120"]\n');
    const r = await runCli(['--config', f, 'explain', '--service', 'smtp', '--ip', '203.0.113.5', '--action', 'connect']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^DENY/);
    expect(r.stdout).toMatch(/access\.deny/);
    const mapped = await runCli(['--config', f, 'explain', '--service', 'smtp', '--ip', '::ffff:203.0.113.5', '--action', 'connect']);
    expect(mapped.code).toBe(1);
  });

  it('a public trusted network warns, naming value and default', async () => {
    const f = file('public-trusted.yaml', 'state_dir: var\nsmtp:\n  trusted_networks: ["::ffff:198.51.100.0/120"]\n');
    const r = await runCli(['--config', f, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning: smtp\.trusted_networks: ::ffff:198\.51\.100\.0\/120 \(default \[127\.0\.0\.1\/32, ::1\/128\]\): list widened: .*public addresses/);
  });

  it('metrics.listen 0.0.0.0 without a password: check refuses it as start does', async () => {
    const r = await runCli(['--config', file('metrics.yaml', 'state_dir: var\nmetrics:\n  listen: 0.0.0.0:9325\n'), 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/metrics\.listen: 0\.0\.0\.0:9325 is not a loopback address/);
  });

  it('a YAML alias bomb and a duplicate key are config errors (exit 2) naming key and line', async () => {
    const bomb = file('bomb.yaml', 'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n');
    const r = await runCli(['--config', bomb, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/unexpected error/);
    const dup = await runCli(['--config', file('dup.yaml', 'ftp:\n  enabled: true\n  enabled: false\n'), 'check']);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/line 3, column 3: ftp\.enabled: key written twice/);
  });

  it('users file, TLS key readable by others: exit 2; config writable by others and an open state folder: warnings', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'modes-'));
    const users = path.join(dir, 'users.yaml');
    fs.writeFileSync(users, 'users: {}\n');
    fs.chmodSync(users, 0o644);
    const conf = path.join(dir, 'gatehouse.yaml');
    fs.writeFileSync(conf, 'state_dir: var\nusers_file: users.yaml\n');
    let r = await runCli(['--config', conf, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/users_file: .*users\.yaml is mode 0644: the users file \(password hashes\) is readable by every account/);

    fs.chmodSync(users, 0o600);
    fs.chmodSync(conf, 0o666);
    fs.mkdirSync(path.join(dir, 'var/spool'), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(dir, 'var'), 0o777);
    r = await runCli(['--config', conf, 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning: config file: .* mode 0666 \(default 0644 or stricter\): writable by every account/);
    expect(r.stdout).toMatch(/warning: state_dir: .*var mode 0777/);
    expect(r.stdout).toMatch(/warning: state_dir: .*spool mode 0755 \(default 0700\)/);

    fs.mkdirSync(path.join(dir, 'var/tls'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'var/tls/selfsigned.key'), 'x');
    fs.chmodSync(path.join(dir, 'var/tls/selfsigned.key'), 0o644);
    r = await runCli(['--config', conf, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/tls\.key \(self-signed\): .*selfsigned\.key is mode 0644: the TLS private key is readable/);
  });

  it('NNTP rights and share rights: unknown names are errors with the nearest known name', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'rights-'));
    fs.copyFileSync(usersFile('rights-users.yaml', { alice: ['staff'], bob: ['students'] }), path.join(dir, 'users.yaml'));
    fs.chmodSync(path.join(dir, 'users.yaml'), 0o600);
    const conf = path.join(dir, 'gatehouse.yaml');
    fs.writeFileSync(
      conf,
      'state_dir: var\nusers_file: users.yaml\nnntp:\n  groups:\n    - { name: a.b, read: [everyone], post: [authenticted] }\n    - { name: a.c, read: ["group:staf"], post: [alice] }\nftp:\n  shares:\n    - { path: /d, dir: ftp/d, rights: { "group:student": [write] } }\n',
    );
    const r = await runCli(['--config', conf, 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nntp\.groups\.0\.read: got "everyone"/);
    expect(r.stderr).toMatch(/nntp\.groups\.0\.post: got "authenticted".*did you mean "authenticated"/);
    expect(r.stderr).toMatch(/nntp\.groups\.1\.read: got "group:staf".*did you mean "group:staff"/);
    expect(r.stderr).toMatch(/ftp\.shares\.0\.rights: got "group:student".*did you mean "group:students"/);
    fs.writeFileSync(conf, 'state_dir: var\nusers_file: users.yaml\nnntp:\n  groups:\n    - { name: a.c, read: ["group:staff", bob], post: [alice] }\n');
    expect((await runCli(['--config', conf, 'check'])).code).toBe(0);
  });

  it('an FTP share at / or ../../.. is refused (exit 2)', async () => {
    for (const dir of ['/', '../../../../../../..']) {
      const r = await runCli(['--config', file('share-root.yaml', `state_dir: var\nftp:\n  shares:\n    - { path: /all, dir: "${dir}", rights: { authenticated: [read] } }\n`), 'check']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/ftp\.shares\.0\.dir: .*\/ is a system folder/);
    }
  });

  it('the shipped profiles give what README says: container 4 warnings, insecure-demo 17', async () => {
    const container = await runCli(['--config', path.join(ROOT, 'config/profiles/container.yaml'), 'check']);
    expect(container.code).toBe(1);
    expect(container.stdout.match(/^warning: /gm)).toHaveLength(4);
    const demo = await runCli(['--config', path.join(ROOT, 'config/profiles/insecure-demo.yaml'), 'check']);
    expect(demo.stdout.match(/^warning: /gm)).toHaveLength(17);
    expect(demo.stdout).toMatch(/17 setting\(s\) weaker than the defaults/);
  });
});
