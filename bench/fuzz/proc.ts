/*
 * Load and fault tooling: Gatehouse as operators run it (`node --import tsx src/cli/main.ts start` in a child
 * process, so its RSS is its own and kill -9 is real), a temp config on fixed free loopback ports (a restart
 * keeps them), RSS from /proc, and a small bounded line client for raw protocol work. Shared by
 * bench/load.ts and test/ops/{fuzz,slowloris,chaos}.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig, type Config } from '../../src/config/load.js';
import { UserStore } from '../../src/identity/users.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const PASSWORD = 'correct-horse-battery';
export type Proto = 'smtp' | 'ftp' | 'nntp';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface Setup {
  readonly dir: string;
  readonly configFile: string;
  readonly config: Config;
  readonly ports: Record<Proto, number>;
  remove(): void;
}

/** A temp dir with config/gatehouse.yaml on free 127.0.0.1 ports, users `alice` (and any others) added. */
export async function makeSetup(overrides: Record<string, unknown> = {}, users: readonly string[] = ['alice']): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-load-'));
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir);
  const ports = { smtp: await freePort(), ftp: await freePort(), nntp: await freePort() };
  const lo = 40_000 + Math.floor(Math.random() * 200) * 100;
  const base: Record<string, unknown> = {
    hostname: 'gatehouse.test',
    state_dir: '../var',
    auth: { bcrypt_cost: 10 },
    log: { stdout: false, level: 'warn' },
    smtp: { listen: `127.0.0.1:${ports.smtp}` },
    ftp: { listen: `127.0.0.1:${ports.ftp}`, passive: { ports: `${lo}-${lo + 99}` } },
    nntp: { listen: `127.0.0.1:${ports.nntp}` },
  };
  const data = merge(base, overrides);
  const configFile = path.join(configDir, 'gatehouse.yaml');
  fs.writeFileSync(configFile, stringify(data));
  const config = parseConfig(data, configFile, configDir);
  const store = new UserStore(config.paths.usersFile, 10);
  for (const u of users) await store.add(u, PASSWORD, []);
  return { dir, configFile, config, ports, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  alive(): boolean;
  rssMb(): number;
  kill9(): Promise<void>;
  stop(): Promise<void>;
  stderr(): string;
}

const running = new Set<ChildProcess>();
/** Kill every child still running (afterAll / bench exit). */
export function killAll(): void {
  for (const c of running) c.kill('SIGKILL');
}

export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Start `gatehouse start` and wait (bounded) until it printed its banner and every port accepts. */
export async function startProc(setup: Setup, timeoutMs = 40_000): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--config', setup.configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let err = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err = (err + d).slice(-20_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => running.delete(child));
  const deadline = Date.now() + timeoutMs;
  while (!err.includes('is up') && child.exitCode === null && Date.now() < deadline) await sleep(50);
  if (!err.includes('is up')) {
    child.kill('SIGKILL');
    throw new Error(`gatehouse did not start: ${err}`);
  }
  for (const p of Object.values(setup.ports)) {
    const c = await LineConn.connect(p).catch(() => null);
    if (!c) throw new Error(`port ${p} does not answer`);
    c.close();
  }
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid: child.pid!,
    alive,
    rssMb: () => rssOf(child.pid!),
    stderr: () => err,
    async kill9() {
      if (!alive()) return;
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(5000)]);
    },
    async stop() {
      if (!alive()) return;
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(12_000)]);
      if (alive()) child.kill('SIGKILL');
      await Promise.race([exited, sleep(3000)]);
    },
  };
}

/** A bounded raw line client: every wait has a timeout; a close wakes every waiter. */
export class LineConn {
  buf = '';
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.setNoDelay(true);
    socket.on('data', (d: string) => {
      this.buf += d;
      if (this.buf.length > 1_000_000) this.buf = this.buf.slice(-100_000);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, localAddress = '127.0.0.1', timeoutMs = 10_000): Promise<LineConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new LineConn(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait until `pred(buf)` holds or the socket closed; false on timeout. */
  async until(pred: (buf: string) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.buf) && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  /** The next complete reply (last line "NNN " or a single line), consumed from the buffer; null on close/timeout. */
  async reply(timeoutMs = 10_000): Promise<string | null> {
    const find = (b: string): number => {
      let start = 0;
      for (;;) {
        const nl = b.indexOf('\n', start);
        if (nl < 0) return -1;
        const line = b.slice(start, nl);
        if (!/^\d{3}-/.test(line)) return nl + 1;
        start = nl + 1;
      }
    };
    await this.until((b) => find(b) >= 0, timeoutMs);
    const end = find(this.buf);
    if (end < 0) return null;
    const r = this.buf.slice(0, end);
    this.buf = this.buf.slice(end);
    return r.trimEnd();
  }

  /** Lines up to a lone "." (NNTP multi-line block), consumed; null on close/timeout. */
  async block(timeoutMs = 10_000): Promise<string[] | null> {
    await this.until((b) => b.startsWith('.\r\n') || b.includes('\r\n.\r\n'), timeoutMs);
    const i = this.buf.startsWith('.\r\n') ? 0 : this.buf.indexOf('\r\n.\r\n');
    if (i < 0) return null;
    const text = i === 0 ? '' : this.buf.slice(0, i);
    this.buf = this.buf.slice(i === 0 ? 3 : i + 5);
    return text === '' ? [] : text.split('\r\n');
  }

  write(s: string | Buffer): void {
    if (!this.closed) this.socket.write(s);
  }

  async cmd(line: string, timeoutMs = 10_000): Promise<string | null> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A well-behaved session of each protocol (greeting + a command + QUIT); returns ms, or null when refused/hung. */
export async function probe(proto: Proto, port: number, localAddress = '127.0.0.1', timeoutMs = 10_000): Promise<number | null> {
  const t0 = performance.now();
  const c = await LineConn.connect(port, localAddress, timeoutMs).catch(() => null);
  if (!c) return null;
  try {
    const greet = await c.reply(timeoutMs);
    if (!greet || !/^(220|200|201)/.test(greet)) return null;
    const r = await c.cmd(proto === 'smtp' ? 'EHLO probe.test' : proto === 'ftp' ? 'NOOP' : 'DATE', timeoutMs);
    if (!r || !/^(250|200|111)/.test(r)) return null;
    await c.cmd('QUIT', timeoutMs);
    return performance.now() - t0;
  } finally {
    c.close();
  }
}

/** Loopback source addresses 127.0.1.1 … 127.0.1.n. */
export function sourceAddresses(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`);
}
