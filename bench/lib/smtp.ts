/*
 * What the SMTP benchmarks share (bench/smtp.ts, bench/smtp-bulk.ts): the command that starts Gatehouse's CLI,
 * the config of an SMTP-only instance relaying to a sink, the loopback sink, starting and stopping the child, and
 * the CPU a process tree used. Nothing here runs on import.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');

export type Runtime = 'dist' | 'tsx';

/**
 * The node arguments that start Gatehouse's CLI: dist/cli/main.js (refused when a source file is newer than the
 * build, which would measure old code) or src/cli/main.ts through tsx.
 */
export function serverEntry(runtime: Runtime): string[] {
  if (runtime === 'tsx') return ['--import', 'tsx', 'src/cli/main.ts'];
  const main = path.join(ROOT, 'dist', 'cli', 'main.js');
  const built = fs.existsSync(main) ? fs.statSync(main).mtimeMs : 0;
  if (!built) throw new Error(`${main} is missing: npm run build (or --runtime tsx)`);
  const src = path.join(ROOT, 'src');
  const newer = fs.readdirSync(src, { recursive: true }).find((f) => String(f).endsWith('.ts') && fs.statSync(path.join(src, String(f))).mtimeMs > built);
  if (newer) throw new Error(`src/${String(newer)} is newer than dist/: npm run build first (or --runtime tsx)`);
  return ['dist/cli/main.js'];
}

/**
 * `dir`/config/gatehouse.yaml for an SMTP-only instance on `port` relaying to the sink; `smtp` is merged into its
 * smtp section, `limits` is its smtp.limits.
 */
export function writeConfig(dir: string, port: number, sinkPort: number, limits: Record<string, unknown>, smtp: Record<string, unknown> = {}): string {
  fs.mkdirSync(path.join(dir, 'config'), { recursive: true });
  const configFile = path.join(dir, 'config', 'gatehouse.yaml');
  fs.writeFileSync(
    configFile,
    stringify({
      hostname: 'gatehouse.test',
      state_dir: '../var',
      log: { stdout: false, level: process.env.BENCH_LOG_LEVEL ?? 'info' },
      smtp: {
        listen: `127.0.0.1:${port}`,
        ...smtp,
        relay: { smarthost: { host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        limits,
        queue: { retry_s: [1] },
      },
      ftp: { enabled: false },
      nntp: { enabled: false },
    }),
  );
  return configFile;
}

/** A loopback smtp-server that counts what it is handed; `expect(n)` resolves once n more arrived. */
export class Sink {
  received = 0;
  private target = Infinity;
  private done: () => void = () => undefined;
  readonly server: SMTPServer;

  constructor() {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      disableReverseLookup: true,
      onData: (stream, _session, cb) => {
        stream.on('data', () => undefined);
        stream.on('end', () => {
          this.received++;
          if (this.received >= this.target) this.done();
          cb();
        });
      },
    });
    this.server.on('error', () => undefined);
    this.server.server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    return (this.server.server.address() as net.AddressInfo).port;
  }

  /** Resolves when `n` messages beyond the current count have arrived (true), or after `timeoutMs` (false). */
  expect(n: number, timeoutMs: number): Promise<boolean> {
    this.target = this.received + n;
    return new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), timeoutMs);
      this.done = () => {
        clearTimeout(t);
        r(true);
      };
      if (this.received >= this.target) this.done();
    });
  }

  close(): Promise<void> {
    this.server.options.closeTimeout = 100;
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** Start Gatehouse's CLI (`serverEntry`) with `start` on a config; resolves once it says it is up. */
export async function startChild(configFile: string, runtime: Runtime): Promise<ChildProcess> {
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...extra, ...serverEntry(runtime), '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!stderr.includes('is up')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`gatehouse did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

export async function stopChild(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/**
 * CPU (user + system, all threads) of a process and all its descendants, including the ones that exited and
 * were reaped (their time is in the parent's cutime/cstime): Linux /proc only, null elsewhere. For Gatehouse
 * that is one process; for Postfix the master, its smtpd/cleanup/qmgr/smtp children and what they reaped.
 */
export function treeCpuMs(root: number | null | undefined): number | null {
  if (!root) return null;
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  try {
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const f = fs.readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
        parent.set(Number(name), Number(f[1]));
        ticks.set(Number(name), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
      } catch {
        /* gone meanwhile */
      }
    }
  } catch {
    return null;
  }
  if (!ticks.has(root)) return null;
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (p === root) return true;
    return false;
  };
  let total = 0;
  for (const [pid, t] of ticks) if (inTree(pid)) total += t;
  return (total * 1000) / 100; // clock ticks (USER_HZ 100)
}
