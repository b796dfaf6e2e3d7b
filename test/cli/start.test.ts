import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, TSX, runCli } from '../helpers/cli.js';
import { greeting } from '../helpers/process.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-start-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
const yaml = (extra = '') =>
  `state_dir: var\nlog: { stdout: false }\nauth: { bcrypt_cost: 10 }\nsmtp: { listen: "127.0.0.1:0" }\nftp: { listen: "127.0.0.1:0", passive: { ports: "31000-31009" } }\nnntp: { listen: "127.0.0.1:0" }\n${extra}`;
fs.writeFileSync(cfg, yaml());
let child: ChildProcess | null = null;

afterAll(() => {
  child?.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

function waitFor(get: () => string, re: RegExp, ms: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const m = get().match(re);
      if (m) return resolve(m);
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${re}: ${get()}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

describe('gatehouse start', () => {
  it('prints what listens where, the certificate and how to add a user; reloads on SIGHUP; stops on SIGTERM', async () => {
    child = spawn(process.execPath, ['--import', TSX, CLI, '--config', cfg, 'start'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const m = await waitFor(() => err, /SMTP 127\.0\.0\.1:(\d+)/, 20_000);
    expect(err).toMatch(/FTP {2}127\.0\.0\.1:\d+/);
    expect(err).toMatch(/NNTP 127\.0\.0\.1:\d+/);
    expect(err).toMatch(/TLS {2}self-signed certificate .*selfsigned\.crt/);
    expect(err).toMatch(/user add alice --password-stdin/);
    const port = Number(m[1]);
    expect(await greeting(port)).toMatch(/^(220|554)/);
    expect(fs.statSync(path.join(tmp, 'var/tls/selfsigned.key')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(tmp, 'var')).mode & 0o777).toBe(0o700);

    // An invalid config on SIGHUP keeps the old one running and says why.
    fs.writeFileSync(cfg, yaml('smtp2: {}\n'));
    child.kill('SIGHUP');
    const logFile = path.join(tmp, 'var/log/gatehouse.log');
    await waitFor(() => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''), /reload refused/, 10_000);
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(/smtp2: unknown key/);
    expect(await greeting(port)).toMatch(/^(220|554)/);

    // A valid one is taken.
    fs.writeFileSync(cfg, yaml());
    child.kill('SIGHUP');
    await waitFor(() => fs.readFileSync(logFile, 'utf8'), /configuration reloaded/, 10_000);

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(code).toBe(0);
    child = null;
    expect(fs.existsSync(path.join(tmp, 'var/gatehouse.pid'))).toBe(false);
    // log.stdout: false is honoured by `start` (the command's own default used to override it)
    expect(out).not.toMatch(/"level"/);
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(/"level"/);
  });

  it('refuses to start when the users file is readable by every account (exit 2, names the file)', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'modes-'));
    const users = path.join(dir, 'users.yaml');
    fs.writeFileSync(users, 'users: {}\n', { mode: 0o644 });
    fs.chmodSync(users, 0o644);
    const conf = path.join(dir, 'gatehouse.yaml');
    fs.writeFileSync(conf, `state_dir: var\nusers_file: users.yaml\nlog: { stdout: false }\nsmtp: { listen: "127.0.0.1:0" }\nftp: { enabled: false }\nnntp: { enabled: false }\n`);
    const r = await runCli(['--config', conf, 'start']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to start/);
    expect(r.stderr).toContain(`${users} is mode 0644`);
    expect(fs.existsSync(path.join(dir, 'var/gatehouse.pid'))).toBe(false);
  });
});
