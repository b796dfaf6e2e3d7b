/*
 * Where a small FTP transfer's time goes (a diagnostic for bench/ftp.ts, not part of the figures): a raw
 * client on plain FTP times each step of N 4 KiB uploads and downloads (EPSV → 229, data connect, STOR/RETR
 * → 150, 150 → 226) and prints the medians, for Gatehouse (a child process, as in bench:ftp) and, with
 * BENCH_FTP_TARGET=<anchor target.json>, that server in the same run. Env: PHASES_N (default 400),
 * PHASES_CLIENTS (default 1; more run concurrently, each from its own 127.0.0.x when the anchor needs it),
 * PHASES_ROUNDS (default 1: the servers take turns this many times, medians over all rounds),
 * PHASES_BASE=<another checkout of this repo, with this file in its bench/>: that code as a second Gatehouse
 * in the same rounds (before/after).
 *   flock /tmp/heavy.lock npx tsx bench/ftp-phases.ts
 */
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { PASSWORD, startGatehouse } from '../test/helpers/gatehouse.js';

const N = Number(process.env.PHASES_N ?? 400);
const CLIENTS = Number(process.env.PHASES_CLIENTS ?? 1);
const MIB = 1024 * 1024;

class Ctl {
  private buf = '';
  private waiter: (() => void) | null = null;
  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      const w = this.waiter;
      this.waiter = null;
      w?.();
    });
  }
  async read(): Promise<string> {
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buf);
      if (m) {
        const end = m.index + m[0].length;
        const line = this.buf.slice(m.index, end - 2);
        this.buf = this.buf.slice(end);
        return line;
      }
      await new Promise<void>((r) => (this.waiter = r));
    }
  }
  cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

async function open(host: string, port: number, local: string | undefined, user: string, password: string): Promise<Ctl> {
  const s = net.connect({ host, port, localAddress: local });
  await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
  const c = new Ctl(s);
  await c.read();
  await c.cmd(`USER ${user}`);
  const r = await c.cmd(`PASS ${password}`);
  if (!r.startsWith('230')) throw new Error(`login: ${r}`);
  await c.cmd('TYPE I');
  return c;
}

function dataConnect(host: string, port: number, local: string | undefined): Promise<net.Socket> {
  const s = net.connect({ host, port, localAddress: local });
  s.setNoDelay(true);
  return new Promise((r, j) => s.once('connect', () => r(s)).once('error', j));
}

type Phases = Record<string, number[]>;

async function client(host: string, port: number, local: string | undefined, user: string, password: string, dir: string, k: number, ph: Phases): Promise<void> {
  const c = await open(host, port, local, user, password);
  await c.cmd(`MKD ${dir}`);

  const body = crypto.randomBytes(4096);
  const add = (k: string, v: number) => (ph[k] ??= []).push(v);
  for (const op of ['up', 'down'] as const) {
    for (let i = 0; i < N; i++) {
      const t0 = now();
      const r = await c.cmd('EPSV');
      const t1 = now();
      const dport = Number(/\|\|\|(\d+)\|/.exec(r)![1]);
      const d = await dataConnect(host, dport, local);
      const t2 = now();
      const got: Buffer[] = [];
      const closed = new Promise<void>((res) => d.once('close', () => res()));
      d.on('data', (b: Buffer) => got.push(b));
      d.on('error', () => undefined);
      const first = await c.cmd(op === 'up' ? `STOR ${dir}/c${k}-f${i}` : `RETR ${dir}/c${k}-f${i}`);
      const t3 = now();
      if (!first.startsWith('150')) throw new Error(`${op}: ${first}`);
      if (op === 'up') d.end(body);
      const last = await c.read();
      const t4 = now();
      if (!last.startsWith('226')) throw new Error(`${op}: ${last}`);
      await closed;
      add(`${op} EPSV→229`, t1 - t0);
      add(`${op} connect`, t2 - t1);
      add(`${op} ${op === 'up' ? 'STOR' : 'RETR'}→150`, t3 - t2);
      add(`${op} 150→226`, t4 - t3);
      add(`${op} total`, t4 - t0);
    }
  }
  for (let i = 0; i < N; i++) await c.cmd(`DELE ${dir}/c${k}-f${i}`);
  await c.cmd(`RMD ${dir}`);
  c.socket.destroy();
}

async function measure(name: string, host: string, port: number, user: string, password: string, spread: boolean, ph: Phases): Promise<void> {
  const tag = crypto.randomBytes(3).toString('hex');
  const t0 = now();
  // PHASES_SHARED=1: every client in one folder (a drop box's load: their folder fsyncs can be shared)
  const shared = process.env.PHASES_SHARED === '1';
  await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => client(host, port, spread && CLIENTS > 1 ? `127.0.0.${10 + i}` : undefined, user, password, shared ? `ph-${tag}` : `ph-${tag}-${i}`, i, ph)),
  );
  (ph['wall per transfer (all clients)'] ??= []).push((now() - t0) / (2 * N * CLIENTS));
  console.error(`${name}: done`);
}

function medians(ph: Phases): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(ph)) {
    v.sort((a, b) => a - b);
    out.set(k, v[Math.floor(v.length / 2)]!);
  }
  return out;
}

async function gatehouse(script = fileURLToPath(import.meta.url)): Promise<{ port: number; cpu: () => Promise<number>; stop: () => Promise<void> }> {
  const extra = (process.env.BENCH_FTP_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = fork(script, [], { env: { ...process.env, PHASES_ROLE: 'server' }, execArgv: [...process.execArgv, ...extra] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const cpu = () =>
    new Promise<number>((r) => {
      child.once('message', (m) => {
        const u = (m as { cpu: NodeJS.CpuUsage }).cpu;
        if (process.env.PHASES_CPU_SPLIT) console.error(`server CPU user ${(u.user / 1000).toFixed(0)} ms, system ${(u.system / 1000).toFixed(0)} ms`);
        r((u.user + u.system) / 1000);
      });
      child.send('cpu');
    });
  return { port, cpu, stop: () => new Promise<void>((r) => (child.once('exit', () => r()), child.send('stop'))) };
}

async function serve(): Promise<void> {
  const t = await startGatehouse(
    {
      smtp: { enabled: false },
      nntp: { enabled: false },
      log: { stdout: false, level: 'warn' },
      ftp: { tls_required: false, quota_bytes: 8 * 1024 * MIB, limits: { connections_per_ip: 20, connections: 50 } },
    },
    [{ name: 'bench', password: PASSWORD }],
  );
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
    else void t.stop().finally(() => process.exit(0));
  });
  process.send!({ port: t.port('ftp') });
}

async function main(): Promise<void> {
  const rounds = Number(process.env.PHASES_ROUNDS ?? 1);
  const targets: { name: string; ph: Phases; run: (ph: Phases) => Promise<void> }[] = [];
  const servers: { port: number; stop: () => Promise<void> }[] = [];
  /** server CPU ms per transfer (Gatehouse children only) */
  const withCpu = (g: { cpu: () => Promise<number> }, run: (ph: Phases) => Promise<void>) => async (ph: Phases) => {
    const before = await g.cpu();
    await run(ph);
    (ph['server CPU ms per transfer'] ??= []).push(((await g.cpu()) - before) / (2 * N * CLIENTS));
  };
  try {
    const g = await gatehouse();
    servers.push(g);
    targets.push({ name: 'Gatehouse', ph: {}, run: withCpu(g, (ph) => measure('Gatehouse', '127.0.0.1', g.port, 'bench', PASSWORD, false, ph)) });
    if (process.env.PHASES_BASE) {
      const b = await gatehouse(`${process.env.PHASES_BASE}/bench/ftp-phases.ts`);
      servers.push(b);
      targets.push({ name: 'base', ph: {}, run: withCpu(b, (ph) => measure('base', '127.0.0.1', b.port, 'bench', PASSWORD, false, ph)) });
    }
    if (process.env.BENCH_FTP_TARGET) {
      const j = JSON.parse(fs.readFileSync(process.env.BENCH_FTP_TARGET, 'utf8')) as { name: string; host: string; port_plain: number; users: Record<string, string> };
      const [user, password] = Object.entries(j.users)[0]!;
      targets.push({ name: j.name.split(' ')[0]!, ph: {}, run: (ph) => measure(j.name, j.host, j.port_plain, user, password, true, ph) });
    }
    for (let r = 0; r < rounds; r++) for (const t of r % 2 === 0 ? targets : [...targets].reverse()) await t.run(t.ph);
  } finally {
    for (const s of servers) await s.stop();
  }
  const results = targets.map((t) => [t.name, medians(t.ph)] as const);
  const keys = [...results[0]![1].keys()];
  const w = Math.max(...keys.map((k) => k.length));
  const others = results.slice(1);
  console.log(`# p50 ms per step, ${N} transfers each way, ${CLIENTS} client(s), ${rounds} round(s)`);
  console.log(`${''.padEnd(w)}  ${results.map(([n]) => n.padStart(12)).join('')}${others.map(([n]) => `  ÷${n}`.padStart(12)).join('')}`);
  for (const k of keys) {
    const vals = results.map(([, m]) => m.get(k) ?? NaN);
    console.log(`${k.padEnd(w)}  ${vals.map((v) => v.toFixed(3).padStart(12)).join('')}${vals.slice(1).map((v) => (vals[0]! / v).toFixed(2).padStart(12)).join('')}`);
  }
}

(process.env.PHASES_ROLE === 'server' ? serve() : main()).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
