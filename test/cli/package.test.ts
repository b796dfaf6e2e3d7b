/*
 * The command as users get it, not as the tests run it (through tsx):
 * - `npm pack` (which runs `prepare`, the build into dist/), `npm install -g` of that tarball into a temp
 *   prefix, then the installed `gatehouse` run from another folder: `check` and `explain` answer, `start`
 *   listens, SIGHUP reloads and SIGTERM stops the very process that was started (one process: no child, no
 *   TypeScript loader, nothing resolved from the working directory).
 * - `npm start` in the clone runs the compiled code in one process: the pid it prints is `node bin/gatehouse.js`,
 *   SIGHUP to that pid reloads, SIGTERM to npm stops the server.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { greeting } from '../helpers/process.js';

const run = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-pkg-'));
const prefix = path.join(tmp, 'prefix');
const elsewhere = path.join(tmp, 'elsewhere');
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

function waitFor<T>(get: () => T | null | undefined | false, what: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const v = get();
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

function exited(child: ChildProcess, ms: number): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

/** Child pids of `pid`, from /proc (no child = one process). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

const config = (ports: string) =>
  `state_dir: var\nlog: { stdout: false }\nauth: { bcrypt_cost: 10 }\nsmtp: { listen: "127.0.0.1:0" }\nftp: { listen: "127.0.0.1:0", passive: { ports: "${ports}" } }\nnntp: { listen: "127.0.0.1:0" }\n`;

describe('the packed tarball, installed into a temp prefix, run from another folder', () => {
  let bin = '';
  beforeAll(async () => {
    fs.mkdirSync(elsewhere, { recursive: true });
    const packed = await run('npm', ['pack', '--pack-destination', tmp, '--no-audit', '--no-fund'], { cwd: ROOT, timeout: 240_000, maxBuffer: 1 << 24 });
    const tgz = packed.stdout.trim().split('\n').pop()!;
    await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, tgz)], { cwd: elsewhere, timeout: 240_000, maxBuffer: 1 << 24 });
    bin = path.join(prefix, 'bin', 'gatehouse');
  }, 480_000);

  it('ships compiled code, the default config and no TypeScript loader or sources', () => {
    const pkg = path.join(prefix, 'lib', 'node_modules', 'gatehouse');
    expect(fs.existsSync(path.join(pkg, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(fs.existsSync(path.join(pkg, 'config', 'gatehouse.yaml'))).toBe(true);
    expect(fs.existsSync(path.join(pkg, 'src'))).toBe(false);
    expect(fs.existsSync(path.join(pkg, 'node_modules', 'tsx'))).toBe(false);
    expect(fs.existsSync(path.join(pkg, 'config', 'users.yaml'))).toBe(false);
  });

  it('check and explain answer from another folder (embedded defaults: no config/ there)', async () => {
    const check = await run(bin, ['check'], { cwd: elsewhere, timeout: 30_000 });
    expect(check.stdout).toMatch(/ok: <embedded defaults> is valid/);
    const explain = await run(bin, ['explain', '--service', 'smtp', '--ip', '203.0.113.9', '--action', 'relay', '--object', 'bob@example.net'], { cwd: elsewhere, timeout: 30_000 }).then(
      () => null,
      (e: { code: number; stdout: string }) => e,
    );
    expect(explain?.code).toBe(1); // deny
    expect(explain?.stdout).toMatch(/^DENY {2}smtp relay bob@example\.net/);
    expect(explain?.stdout).toMatch(/rule: {3}relay\.default/);
  }, 60_000);

  it('start listens, SIGHUP reloads and SIGTERM stops the process that was started', async () => {
    fs.writeFileSync(path.join(elsewhere, 'g.yaml'), config('31300-31309'));
    const child = spawn(bin, ['--config', 'g.yaml', 'start'], { cwd: elsewhere, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const m = await waitFor(() => /SMTP 127\.0\.0\.1:(\d+)/.exec(err), `"is up" in ${err}`, 30_000);
    expect(err).toContain(`pid ${child.pid}:`); // the server is the process we started
    expect(childrenOf(child.pid!)).toEqual([]);
    expect(err).toMatch(/\| gatehouse user add alice --password-stdin/);
    expect(await greeting(Number(m[1]))).toMatch(/^220 /);

    const log = path.join(elsewhere, 'var/log/gatehouse.log');
    child.kill('SIGHUP');
    await waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('configuration reloaded'), 'reload in the log', 15_000);
    child.kill('SIGTERM');
    expect(await exited(child, 20_000)).toBe(0);
    expect(fs.existsSync(path.join(elsewhere, 'var/gatehouse.pid'))).toBe(false);
  }, 60_000);
});

describe('npm start in the clone', () => {
  it('runs compiled JavaScript in one process; SIGHUP to its pid reloads, SIGTERM to npm stops it', async () => {
    const dir = path.join(tmp, 'npm-start');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'g.yaml'), config('31310-31319'));
    const npm = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: { ...process.env, GATEHOUSE_CONFIG: path.join(dir, 'g.yaml') }, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(npm);
    let err = '';
    npm.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const m = await waitFor(() => /is up \(pid (\d+):/.exec(err), `"is up" in ${err}`, 30_000);
    const pid = Number(m[1]);
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline.slice(1, 3)).toEqual(['bin/gatehouse.js', 'start']);
    expect(cmdline.join(' ')).not.toMatch(/tsx/);
    expect(childrenOf(pid)).toEqual([]);
    expect(err).toMatch(/npm run gatehouse -- user add alice/);

    const log = path.join(dir, 'var/log/gatehouse.log');
    process.kill(pid, 'SIGHUP');
    const logText = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '(no log)');
    await waitFor(() => logText().includes('configuration reloaded'), 'reload in the log', 30_000).catch((e: Error) => {
      throw new Error(`${e.message}; server ${fs.existsSync(`/proc/${pid}`) ? 'alive' : 'gone'}; stderr: ${err}; log: ${logText().slice(-2000)}`);
    });
    npm.kill('SIGTERM');
    await exited(npm, 20_000);
    await waitFor(() => !fs.existsSync(`/proc/${pid}`), 'the server to exit', 20_000);
    expect(fs.readFileSync(log, 'utf8')).toMatch(/"signal":"SIGTERM"/);
  }, 90_000);
});

describe('npx gatehouse in the clone', () => {
  it('starts the compiled server; SIGTERM to npx stops it (npm passes it only to a shell that drops it)', async () => {
    const dir = path.join(tmp, 'npx');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'g.yaml'), config('31320-31329'));
    const npx = spawn('npx', ['gatehouse', '--config', path.join(dir, 'g.yaml'), 'start'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(npx);
    let err = '';
    npx.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // the first npx in a clone links the project into npm's cache and runs its `prepare` (the build) once
    const m = await waitFor(() => /is up \(pid (\d+):/.exec(err), `"is up" in ${err}`, 120_000);
    const pid = Number(m[1]);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toMatch(/tsx/);
    npx.kill('SIGTERM');
    await exited(npx, 20_000);
    await waitFor(() => !fs.existsSync(`/proc/${pid}`) || /^Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^State:\s+(\S)/m)?.[1] ?? ''), 'the server to exit', 20_000);
    expect(fs.readFileSync(path.join(dir, 'var/log/gatehouse.log'), 'utf8')).toMatch(/"event":"stop","signal":"parent exited"/);
  }, 180_000);
});
