/*
 * A real HAProxy (Debian `haproxy`) started privately for a test or a benchmark: a throwaway config in a temp
 * folder, foreground (-db), an admin socket to read server states, stopped by stop(). Nothing under /etc.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface HaproxyServer {
  readonly name: string;
  readonly host: string;
  /** null: the port the client connected to (the FTP passive range mapping) */
  readonly port: number | null;
}

export interface HaproxyFrontend {
  readonly name: string;
  /** `ADDR:PORT` or `ADDR:LOW-HIGH` */
  readonly bind: string;
  readonly servers: readonly HaproxyServer[];
  /** health check lines for the backend (e.g. `option smtpchk HELO haproxy.test`); none: no `check` */
  readonly check?: readonly string[];
  readonly balance?: string;
}

/** A TCP-mode config like contrib/haproxy/haproxy.cfg, with every server behind `send-proxy-v2`. */
export function haproxyConfig(dir: string, fronts: readonly HaproxyFrontend[]): string {
  const out = [
    'global',
    '  maxconn 4000',
    `  stats socket ${path.join(dir, 'admin.sock')} mode 600 level admin`,
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  timeout check 5s',
  ];
  for (const f of fronts) {
    out.push(`frontend ${f.name}`, `  bind ${f.bind}`, `  default_backend ${f.name}`);
    out.push(`backend ${f.name}`, `  balance ${f.balance ?? 'roundrobin'}`);
    for (const line of f.check ?? []) out.push(`  ${line}`);
    for (const s of f.servers) {
      const addr = s.port === null ? s.host : `${s.host}:${s.port}`;
      out.push(`  server ${s.name} ${addr} send-proxy-v2${f.check ? ' check inter 1s fall 2 rise 1' : ''}`);
    }
  }
  return `${out.join('\n')}\n`;
}

export interface Haproxy {
  readonly dir: string;
  readonly pid: number;
  /** `show stat` as rows (pxname, svname, status, scur, stot, ...) */
  stat(): Promise<Array<Record<string, string>>>;
  /** Wait until every server of every backend is UP; false after timeoutMs. */
  waitUp(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
  readonly log: () => string;
}

export function haproxyAvailable(): boolean {
  return spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
}

function ask(sock: string, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let out = '';
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error('haproxy admin socket timeout'));
    }, timeoutMs);
    c.on('connect', () => c.write(`${command}\n`));
    c.on('data', (d) => (out += d.toString()));
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    c.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

export async function startHaproxy(fronts: readonly HaproxyFrontend[]): Promise<Haproxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, haproxyConfig(dir, fronts));
  const checked = spawnSync('haproxy', ['-c', '-q', '-f', cfg], { encoding: 'utf8' });
  if (checked.status !== 0) throw new Error(`haproxy config invalid: ${checked.stderr}${checked.stdout}`);
  const child: ChildProcess = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  child.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const sock = path.join(dir, 'admin.sock');
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(sock)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const stat = async () => {
    const text = await ask(sock, 'show stat');
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    const head = (lines.shift() ?? '').replace(/^# /, '').split(',');
    return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [head[i] ?? String(i), v])));
  };
  return {
    dir,
    pid: child.pid ?? 0,
    log: () => log,
    stat,
    async waitUp(timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const rows = (await stat().catch(() => [])).filter((r) => r.svname !== 'FRONTEND' && r.svname !== 'BACKEND');
        if (rows.length > 0 && rows.every((r) => r.status === 'UP' || r.status === 'no check')) return true;
        await new Promise((r) => setTimeout(r, 200));
      }
      return false;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
