// The operator's view of directory users, with the real CLI against a real slapd: `user show`, `explain
// --user` (groups and home from the directory), `check` (insecure_plaintext), and `audit`'s directory probe.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { runAudit } from '../../src/ops/audit/probes.js';
import { runCli } from '../helpers/cli.js';
import { destroySlapd, SERVICE_DN, SERVICE_PW, startSlapd, SUFFIX, type Slapd } from '../helpers/slapd.js';

let slapd: Slapd;
let work: string;
let configFile: string;
let roots: string;

function config(directory: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    state_dir: '../var',
    log: { stdout: false },
    identity: { sources: ['local', 'directory'] },
    directory: { url: slapd.ldapsUrl, ca_file: slapd.caFile, bind_dn: SERVICE_DN, bind_password_file: path.join(work, 'bind.pw'), user_base: `ou=people,${SUFFIX}`, group_map: { staff: 'staff' }, ...directory },
    ftp: { isolation: 'directory', allowed_roots: [roots] },
    nntp: { groups: [{ name: 'office.staff', read: ['group:staff'], post: ['group:staff'] }] },
  };
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-dircli-'));
  roots = path.join(work, 'homes');
  fs.mkdirSync(roots);
  slapd = await startSlapd([
    { uid: 'alice', password: 'alice-pw-1', groups: ['staff'], ftpRoot: roots, ftpDir: 'alice' },
    { uid: 'mallory', password: 'mallory-pw-1', ftpRoot: '/etc', ftpDir: 'ssh' },
  ]);
  fs.writeFileSync(path.join(work, 'bind.pw'), `${SERVICE_PW}\n`, { mode: 0o600 });
  fs.mkdirSync(path.join(work, 'config'));
  configFile = path.join(work, 'config', 'gatehouse.yaml');
  fs.writeFileSync(configFile, stringify(config()));
}, 60_000);

afterAll(async () => {
  await destroySlapd(slapd);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('CLI with directory users', () => {
  it('user show: source, DN, groups, home; a refused home says why; unknown → 1; no secrets', async () => {
    const r = await runCli(['--config', configFile, 'user', 'show', 'alice']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`dn:      uid=alice,ou=people,${SUFFIX}`);
    expect(r.stdout).toMatch(/source: +directory \(ldaps:/);
    expect(r.stdout).toMatch(/groups: +staff/);
    expect(r.stdout).toContain(`ftp home: ${path.join(roots, 'alice')} (from the directory)`);
    expect(r.stdout).not.toMatch(/alice-pw-1|service-secret|userPassword/);
    const m = await runCli(['--config', configFile, 'user', 'show', 'mallory']);
    expect(m.stdout).toMatch(/ftp home: none — refused: home \/etc\/ssh is not inside ftp.allowed_roots/);
    const u = await runCli(['--config', configFile, 'user', 'show', 'nobody']);
    expect(u.code).toBe(1);
  });

  it('explain --user: groups and home come from the directory', async () => {
    const read = await runCli(['--config', configFile, 'explain', '--service', 'nntp', '--ip', '127.0.0.1', '--action', 'read', '--object', 'office.staff', '--user', 'alice', '--tls']);
    expect(read.code).toBe(0);
    expect(read.stdout).toMatch(/alice is a directory user \(uid=alice/);
    const ftp = await runCli(['--config', configFile, 'explain', '--service', 'ftp', '--ip', '127.0.0.1', '--action', 'write', '--object', '/report.txt', '--user', 'alice', '--tls']);
    expect(ftp.code).toBe(0);
    expect(ftp.stdout).toContain(path.join(roots, 'alice'));
    const mallory = await runCli(['--config', configFile, 'explain', '--service', 'ftp', '--ip', '127.0.0.1', '--action', 'read', '--object', '/x', '--user', 'mallory', '--tls']);
    expect(mallory.code).toBe(1);
    expect(mallory.stdout).toMatch(/home refused/);
  });

  it('check flags insecure_plaintext; audit passes an encrypted directory bind and fails a plaintext one', async () => {
    const plain = path.join(work, 'config', 'plain.yaml');
    fs.writeFileSync(plain, stringify(config({ url: slapd.ldapUrl, ca_file: null, insecure_plaintext: true })));
    const c = await runCli(['--config', plain, 'check']);
    expect(c.stdout).toMatch(/directory.insecure_plaintext/);
    const ok = await runAudit({ config: parseConfig(config(), configFile, path.dirname(configFile)), targets: {} });
    expect(ok.find((r) => r.id === 'directory.bind_encrypted')?.status).toBe('PASS');
    const bad = await runAudit({ config: parseConfig(config({ url: slapd.ldapUrl, ca_file: null, insecure_plaintext: true }), plain, path.dirname(plain)), targets: {} });
    expect(bad.find((r) => r.id === 'directory.bind_encrypted')?.status).toBe('FAIL');
    const mismatch = await runAudit({ config: parseConfig(config({ ca_file: slapd.otherCaFile }), configFile, path.dirname(configFile)), targets: {} });
    expect(mismatch.find((r) => r.id === 'directory.bind_encrypted')?.answer).toMatch(/TLS refused/);
  });

  it('a world-readable bind_password_file is refused at start with a clear config error (exit 2)', async () => {
    const loose = path.join(work, 'loose.pw');
    fs.writeFileSync(loose, `${SERVICE_PW}\n`);
    fs.chmodSync(loose, 0o644);
    const f = path.join(work, 'config', 'loose.yaml');
    fs.writeFileSync(f, stringify(config({ bind_password_file: loose })));
    const r = await runCli(['--config', f, 'user', 'show', 'alice']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/directory.bind_password_file: .*mode 0644; expected 0600/);
  });
});
