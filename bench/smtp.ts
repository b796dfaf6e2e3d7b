/*
 * SMTP benchmark (`npm run bench:smtp`). Gatehouse runs as operators run it (`src/cli/main.ts start` in a
 * child process, durable queue on, relaying to a loopback smtp-server sink in this process). Measured:
 *   (a) messages/s accepted from 127.0.0.1: 10 concurrent sessions, one connection each, 4 KiB messages;
 *   (b) end-to-end: time until all of those 2,000 messages reached the sink;
 *   (c) one session's connect → greeting → EHLO → QUIT latency (median of 200, sessions to Gatehouse and the
 *       anchor taken in turns), and the part after the greeting.
 * Each server first takes --warmup untimed sessions and messages (default 2000): a just-started Node process runs
 * cold, unoptimised code for its first few hundred sessions, Postfix's C does not. Gatehouse logs at the shipped
 * default level (info; BENCH_LOG_LEVEL overrides), as Postfix logs every message to its maillog.
 * With `--anchor <target.json>` (or env SMTP_ANCHOR) the same workloads also run against an already started
 * anchor (e.g. the Postfix one from ../shared/anchors: host/port from target.json, its relayhost sink served
 * here on target.sink), interleaved in the same run, and a table with the ratios Gatehouse/anchor is printed.
 * Prints the figures; never asserts. Talks only to 127.0.0.0/8. Options: --messages N --sessions N --latency N --warmup N --rounds N (of (a)+(b), default 3; who goes first alternates, each run after a sync and a quiet second).
 * `--only c`: the warm-up sessions and (c) only (no messages), with each side's server CPU per session.
 * `--runtime dist` (default) starts the compiled server (dist/cli/main.js, as `npm start` does; refused when a
 * source file is newer than the build), `--runtime tsx` runs src/ through the tsx loader (before 2026-12-06).
 * `--haproxy` (issue 17): (a)+(b) through a real HAProxy (send-proxy-v2, roundrobin) to two Gatehouse processes,
 * against one of them direct, taken in turns in one run; prints msg/s of each, the ratio, and the CPU each
 * process (both instances, HAProxy, this client) used per wall second, which says what bounds the figure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { haproxyAvailable, startHaproxy } from './haproxy.js';
import { freePort } from './fuzz/proc.js';
import { Sink, serverEntry as libServerEntry, startChild as libStartChild, stopChild, treeCpuMs, writeConfig as writeSmtpConfig } from './lib/smtp.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '10' },
    latency: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    anchor: { type: 'string', default: process.env.SMTP_ANCHOR ?? '' },
    haproxy: { type: 'boolean', default: false },
    only: { type: 'string', default: '' },
    runtime: { type: 'string', default: 'dist' },
  },
});
/** `--only c`: warm-up sessions and (c) only, no messages ((a)+(b) skipped) */
const ONLY_C = values.only === 'c';
if (values.only && !ONLY_C) throw new Error(`--only: expected "c", got ${values.only}`);
if (values.runtime !== 'dist' && values.runtime !== 'tsx') throw new Error(`--runtime: expected dist or tsx, got ${values.runtime}`);
/** `--runtime dist` (default): the compiled server, as `npm start` runs it; `tsx`: src/ through the loader */
const RUNTIME: 'dist' | 'tsx' = values.runtime;
const MESSAGES = Number(values.messages);
const SESSIONS = Number(values.sessions);
const LATENCY_ROUNDS = Number(values.latency);
/** untimed sessions and messages per server first: a just-started Node process runs cold code (Postfix is C) */
const WARMUP = Number(values.warmup);
const ROUNDS = Math.max(1, Number(values.rounds));
const SETTLE_MS = 1000;
const ANCHOR_FILE = values.anchor;
const ROOT = path.resolve(import.meta.dirname, '..');

/** The node arguments that start Gatehouse's CLI (bench/lib/smtp.ts) in this run's --runtime */
const serverEntry = (): string[] => libServerEntry(RUNTIME);

interface Anchor {
  name: string;
  host: string;
  port: number;
  sink: { host: string; port: number };
  /** the anchor's master process (target.json `pids.postfix_master`, a pid file), for its CPU figure */
  masterPid: number | null;
}

function loopback(host: unknown): string {
  if (typeof host !== 'string' || !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) throw new Error(`anchor host ${String(host)} is not on 127.0.0.0/8`);
  return host;
}

function readAnchor(file: string): Anchor {
  const t = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown; host?: unknown; port?: unknown; sink?: { host?: unknown; port?: unknown }; pids?: { postfix_master?: unknown } };
  if (typeof t.port !== 'number' || typeof t.sink?.port !== 'number') throw new Error(`${file}: needs "port" and "sink.port"`);
  let masterPid: number | null = null;
  try {
    if (typeof t.pids?.postfix_master === 'string') masterPid = Number(fs.readFileSync(t.pids.postfix_master, 'utf8').trim()) || null;
  } catch {
    masterPid = null;
  }
  return { name: typeof t.name === 'string' ? t.name : 'anchor', host: loopback(t.host), port: t.port, sink: { host: loopback(t.sink.host), port: t.sink.port }, masterPid };
}

/** `dir`/config/gatehouse.yaml for an SMTP-only instance on `port` relaying to the sink; `smtp` is merged into its smtp section. */
const writeConfig = (dir: string, port: number, sinkPort: number, smtp: Record<string, unknown> = {}): string =>
  writeSmtpConfig(dir, port, sinkPort, { connections_per_ip: Math.max(10, SESSIONS + 2) }, smtp);

/** A minimal pipelining SMTP client over one connection. */
class Client {
  private buf = '';
  private wait: (() => void) | null = null;
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wait?.();
    });
    sock.on('close', () => this.wait?.());
    sock.on('error', () => this.wait?.());
  }

  static open(host: string, port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(new Client(s)));
      s.once('error', reject);
      s.setNoDelay(true);
    });
  }

  async reply(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m.index + m[0].length);
        return Number(m[1]);
      }
      if (this.sock.destroyed || Date.now() > deadline) throw new Error(`no reply (buffer ${JSON.stringify(this.buf.slice(0, 200))})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.wait = () => {
          clearTimeout(t);
          this.wait = null;
          r();
        };
      });
    }
  }

  write(s: string): void {
    this.sock.write(s);
  }

  async expect(code: number): Promise<void> {
    const got = await this.reply();
    if (got !== code) throw new Error(`expected ${code}, got ${got}`);
  }

  close(): void {
    this.sock.destroy();
  }

  closed(): Promise<void> {
    return new Promise((r) => (this.sock.destroyed ? r() : this.sock.once('close', () => r())));
  }
}

function message(i: number): string {
  const head = `From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench ${i}\r\nMessage-ID: <bench-${i}@example.org>\r\n\r\n`;
  const line = `${'0123456789abcdef'.repeat(4)}\r\n`; // 66 bytes
  let body = '';
  while (head.length + body.length + line.length <= 4096) body += line;
  return head + body + 'x'.repeat(4096 - head.length - body.length - 2) + '\r\n';
}

interface Target {
  label: string;
  host: string;
  port: number;
  sink: Sink;
}

interface Latency {
  total: number[];
  afterGreeting: number[];
}

interface Throughput {
  acceptedMs: number;
  /** messages at the sink when the last one had been accepted */
  arrivedWhileAccepting: number;
  endToEndMs: number;
  arrived: number;
}

/** (c): connect → 220 → EHLO → 250 → QUIT → 221 → close, one session at a time. */
/** One session's connect → greeting → EHLO → QUIT; [total, after the greeting] in ms. */
async function oneSession(t: Target): Promise<[number, number]> {
  const t0 = performance.now();
  const c = await Client.open(t.host, t.port);
  await c.expect(220);
  const t1 = performance.now();
  c.write('EHLO bench.test\r\n');
  await c.expect(250);
  c.write('QUIT\r\n');
  await c.expect(221);
  await c.closed();
  const t2 = performance.now();
  return [t2 - t0, t2 - t1];
}

/**
 * (c) for each target, their sessions taken in turns (one session on each, then the next round), so that
 * whatever else the box is doing hits every target alike.
 */
async function latency(targets: readonly Target[], rounds = LATENCY_ROUNDS): Promise<Latency[]> {
  const out = targets.map(() => ({ total: [] as number[], afterGreeting: [] as number[] }));
  for (let i = 0; i < rounds; i++) {
    for (const [k, t] of targets.entries()) {
      const [total, after] = await oneSession(t);
      out[k]!.total.push(total);
      out[k]!.afterGreeting.push(after);
    }
  }
  for (const l of out) {
    l.total.sort((a, b) => a - b);
    l.afterGreeting.sort((a, b) => a - b);
  }
  return out;
}

/** (a) + (b): MESSAGES over SESSIONS concurrent connections, MAIL/RCPT/DATA pipelined; then wait for the sink. */
async function throughput(t: Target, bodies: string[], count = MESSAGES): Promise<Throughput> {
  const before = t.sink.received;
  const arrived = t.sink.expect(count, 300_000);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: SESSIONS }, async () => {
      const c = await Client.open(t.host, t.port);
      await c.expect(220);
      c.write('EHLO bench.test\r\n');
      await c.expect(250);
      for (;;) {
        const i = next++;
        if (i >= count) break;
        c.write('MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n');
        await c.expect(250);
        await c.expect(250);
        await c.expect(354);
        c.write(`${bodies[i]}.\r\n`);
        await c.expect(250);
      }
      c.write('QUIT\r\n');
      await c.reply().catch(() => 0);
      c.close();
    }),
  );
  const acceptedMs = performance.now() - t0;
  const arrivedWhileAccepting = t.sink.received - before;
  await arrived;
  return { acceptedMs, arrivedWhileAccepting, endToEndMs: performance.now() - t0, arrived: t.sink.received - before };
}

const pick = (xs: number[], q: number): number => xs[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
const rate = (r: Throughput): number => MESSAGES / (r.acceptedMs / 1000);

/** Between timed runs: flush what the previous one left dirty, then a quiet second, so no run pays for another. */
async function settle(): Promise<void> {
  await new Promise<void>((resolve) => {
    const p = spawn('sync', [], { stdio: 'ignore' });
    p.once('exit', () => resolve());
    p.once('error', () => resolve());
  });
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

/** The rounds' medians: (a) and (b) each their own median; arrived is the fewest that arrived in any round. */
function medianRun(runs: readonly Throughput[]): Throughput {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  return {
    acceptedMs: med(runs.map((r) => r.acceptedMs)),
    arrivedWhileAccepting: med(runs.map((r) => r.arrivedWhileAccepting)),
    endToEndMs: med(runs.map((r) => r.endToEndMs)),
    arrived: Math.min(...runs.map((r) => r.arrived)),
  };
}

function describe(label: string, l: Latency, r: Throughput): string[] {
  return [
    `  ${label}`,
    `    (a) accepted:     ${rate(r).toFixed(0)} msg/s (${(r.acceptedMs / 1000).toFixed(2)} s for ${MESSAGES})`,
    `    (b) end to end:   ${r.arrived}/${MESSAGES} at the sink in ${(r.endToEndMs / 1000).toFixed(2)} s (${r.arrivedWhileAccepting} of them while accepting)`,
    `    (c) connect→QUIT: median ${pick(l.total, 0.5).toFixed(1)} ms, p90 ${pick(l.total, 0.9).toFixed(1)} ms; after the greeting: median ${pick(l.afterGreeting, 0.5).toFixed(1)} ms (${LATENCY_ROUNDS} sessions)`,
  ];
}

function table(anchor: string, g: [Latency, Throughput], a: [Latency, Throughput], cpu: [number | null, number | null, number | null, number | null]): string[] {
  const rows: [string, number, number, number][] = [
    ['(a) accepted, msg/s (higher is better)', rate(g[1]), rate(a[1]), 0],
    [`(b) ${MESSAGES} at the sink, s (lower is better)`, g[1].endToEndMs / 1000, a[1].endToEndMs / 1000, 2],
    ['(c) connect→QUIT median, ms (lower is better)', pick(g[0].total, 0.5), pick(a[0].total, 0.5), 2],
    ['(c) of that after the greeting, ms', pick(g[0].afterGreeting, 0.5), pick(a[0].afterGreeting, 0.5), 2],
  ];
  // CPU per session and per message: what the work costs, whatever else runs on the box (the processes' own clocks)
  if (cpu[0] !== null && cpu[1] !== null) rows.push(['server CPU per message in (a)+(b), ms (lower is better)', cpu[0], cpu[1], 2]);
  if (cpu[2] != null && cpu[3] != null) rows.push(['server CPU per (c) session, ms (lower is better)', cpu[2], cpu[3], 2]);
  const w = Math.max(...rows.map((r) => r[0].length));
  const fmt = (v: number, digits: number) => v.toFixed(digits);
  const head = `  ${'figure'.padEnd(w)}  ${'Gatehouse'.padStart(10)}  ${anchor.padStart(14)}  ${'Gatehouse/anchor'.padStart(16)}`;
  return [
    head,
    ...rows.map(([name, gv, av, f]) => `  ${name.padEnd(w)}  ${fmt(gv, f).padStart(10)}  ${fmt(av, f).padStart(14)}  ${(gv / av).toFixed(2).padStart(16)}`),
    `  ${g[1].arrived !== MESSAGES || a[1].arrived !== MESSAGES ? `WARNING: not every message reached a sink (Gatehouse ${g[1].arrived}, anchor ${a[1].arrived})` : ''}`.trimEnd(),
  ].filter(Boolean);
}

async function main(): Promise<void> {
  const anchor = ANCHOR_FILE ? readAnchor(ANCHOR_FILE) : null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  const smtpPort = await freePort();
  const sink = new Sink();
  const anchorSink = anchor ? new Sink() : null;
  const sinkPort = await sink.listen('127.0.0.1', 0);
  if (anchor && anchorSink) await anchorSink.listen(anchor.sink.host, anchor.sink.port);

  const configFile = writeConfig(dir, smtpPort, sinkPort);

  let child: ChildProcess | null = null;
  try {
    const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
    child = spawn(process.execPath, [...extra, ...serverEntry(), '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('is up')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gatehouse did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const gate: Target = { label: 'Gatehouse', host: '127.0.0.1', port: smtpPort, sink };
    const other: Target | null = anchor && anchorSink ? { label: anchor.name, host: anchor.host, port: anchor.port, sink: anchorSink } : null;
    const load0 = os.loadavg();

    // warm-up (untimed, both servers), then (c) on idle servers, then (a)+(b), one server at a time so they do
    // not share the CPU
    const bodies = Array.from({ length: MESSAGES }, (_, i) => message(i));
    if (WARMUP > 0) {
      for (const t of other ? [gate, other] : [gate]) {
        await latency([t], WARMUP);
        if (!ONLY_C) await throughput(t, bodies, Math.min(WARMUP, MESSAGES));
      }
    }
    const lc0 = [treeCpuMs(child.pid), treeCpuMs(anchor?.masterPid)];
    const lats = await latency(other ? [gate, other] : [gate]);
    const lc1 = [treeCpuMs(child.pid), treeCpuMs(anchor?.masterPid)];
    const perSession = (k: number) => {
      const a = lc0[k];
      const b = lc1[k];
      return a != null && b != null ? (b - a) / LATENCY_ROUNDS : null;
    };
    const gLat = lats[0]!;
    const aLat = lats[1] ?? null;
    if (ONLY_C) {
      const load1 = os.loadavg();
      const line = (label: string, l: Latency, cpu: number | null) =>
        `  ${label}: (c) connect→QUIT median ${pick(l.total, 0.5).toFixed(2)} ms, p90 ${pick(l.total, 0.9).toFixed(2)} ms; after the greeting ${pick(l.afterGreeting, 0.5).toFixed(2)} ms; server CPU ${cpu === null ? '?' : cpu.toFixed(2)} ms per session`;
      const out = [
        `SMTP benchmark, (c) only (Node ${process.version}, ${RUNTIME === 'dist' ? 'compiled dist/' : 'src/ through tsx'}, ${os.cpus().length} cores, load average ${load0.map((x) => x.toFixed(1)).join(' ')} → ${load1.map((x) => x.toFixed(1)).join(' ')}; ${WARMUP} untimed sessions per server first, then ${LATENCY_ROUNDS} in turns)`,
        line('Gatehouse', gLat, perSession(0)),
      ];
      if (other && aLat) {
        out.push(line(other.label, aLat, perSession(1)));
        const g = perSession(0);
        const a = perSession(1);
        out.push(
          `  Gatehouse/${other.label}: (c) ${(pick(gLat.total, 0.5) / pick(aLat.total, 0.5)).toFixed(2)}× the time, after the greeting ${(pick(gLat.afterGreeting, 0.5) / pick(aLat.afterGreeting, 0.5)).toFixed(2)}×; server CPU per session ${g !== null && a ? (g / a).toFixed(2) : '?'}×`,
        );
      }
      process.stdout.write(`${out.join('\n')}\n`);
      return;
    }
    // (a)+(b) ROUNDS times per server, taken in turns: a noisy shared box hits
    // both alike; the figures are the medians, every round's ratio is printed too
    const gRuns: Throughput[] = [];
    const aRuns: Throughput[] = [];
    let gCpuMs = 0;
    let aCpuMs: number | null = other ? 0 : null;
    const runGate = async () => {
      await settle();
      const cpu0 = treeCpuMs(child!.pid);
      gRuns.push(await throughput(gate, bodies));
      const cpu1 = treeCpuMs(child!.pid);
      gCpuMs += cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : NaN;
    };
    const runAnchor = async () => {
      if (!other) return;
      await settle();
      const acpu0 = treeCpuMs(anchor?.masterPid);
      aRuns.push(await throughput(other, bodies));
      const acpu1 = treeCpuMs(anchor?.masterPid);
      aCpuMs = aCpuMs !== null && acpu0 !== null && acpu1 !== null ? aCpuMs + acpu1 - acpu0 : null;
    };
    // who goes first alternates (G A, A G, G A, …): a run leaves work behind in the kernel (writeback, the
    // discards of the files it deleted) that the next run would pay for
    for (let r = 0; r < ROUNDS; r++) {
      if (r % 2 === 0) {
        await runGate();
        await runAnchor();
      } else {
        await runAnchor();
        await runGate();
      }
    }
    const gRun = medianRun(gRuns);
    const aRun = other ? medianRun(aRuns) : null;
    const perMessage = (ms: number | null) => (ms !== null && Number.isFinite(ms) ? ms / (MESSAGES * ROUNDS) : null);
    const gCpu = perMessage(gCpuMs);
    const aCpu = perMessage(aCpuMs);
    const load1 = os.loadavg();

    const loads = `load average ${load0.map((x) => x.toFixed(1)).join(' ')} → ${load1.map((x) => x.toFixed(1)).join(' ')}`;
    const out = [
      `SMTP benchmark (Node ${process.version}, ${os.cpus().length} cores, ${loads}; ${MESSAGES} messages of 4 KiB, ${SESSIONS} sessions from 127.0.0.1, durable queue on; ${WARMUP} untimed sessions and messages per server first)`,
      ...describe('Gatehouse', gLat, gRun),
      ...(ROUNDS > 1 ? [`    rounds: (a) ${gRuns.map((r) => rate(r).toFixed(0)).join(' / ')} msg/s; (b) ${gRuns.map((r) => (r.endToEndMs / 1000).toFixed(2)).join(' / ')} s`] : []),
      ...(gCpu !== null ? [`    CPU during (a)+(b): ${gCpu.toFixed(2)} ms per message (the Gatehouse process, all threads)`] : []),
    ];
    if (other && aLat && aRun) {
      out.push(...describe(`${other.label} (anchor ${other.host}:${other.port}, sink :${anchor!.sink.port})`, aLat, aRun));
      if (ROUNDS > 1) out.push(`    rounds: (a) ${aRuns.map((r) => rate(r).toFixed(0)).join(' / ')} msg/s; (b) ${aRuns.map((r) => (r.endToEndMs / 1000).toFixed(2)).join(' / ')} s`);
      if (aCpu !== null) out.push(`    CPU during (a)+(b): ${aCpu.toFixed(2)} ms per message (the master process and every process under it)`);
      out.push('', ...table(other.label, [gLat, gRun], [aLat, aRun], [gCpu, aCpu, perSession(0), perSession(1)]));
      const ratios = (f: (g: Throughput, a: Throughput) => number) => gRuns.map((g, i) => f(g, aRuns[i]!).toFixed(2)).join(' / ');
      out.push(`  per round (${ROUNDS}, taken in turns): (a) ${ratios((g, a) => rate(g) / rate(a))}; (b) ${ratios((g, a) => g.endToEndMs / a.endToEndMs)}`);
    } else {
      out.push('  Postfix anchor (same kind of machine, anchors README): 662 msg/s accepted; 2,000 at the sink in 5.0 s; connect-to-QUIT 3.3 ms', '  (side by side: --anchor /tmp/anchors/postfix/target.json after its up.sh)');
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    if (child && child.exitCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await sink.close();
    await anchorSink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Start Gatehouse on a config (this run's --runtime); resolves once it says it is up. */
const startChild = (configFile: string): Promise<ChildProcess> => libStartChild(configFile, RUNTIME);

/**
 * --haproxy: two instances behind HAProxy vs one instance direct. HAProxy connects from 127.0.0.40 (`source`),
 * the one address both instances list in smtp.proxy_protocol.from; the bench client is 127.0.0.1 (a trusted
 * network, as in the default mode), direct to instance A or through the balancer, where the header says 127.0.0.1.
 */
async function mainHaproxy(): Promise<void> {
  if (!haproxyAvailable()) throw new Error('haproxy is not installed (apt-get install haproxy)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-hap-'));
  const sink = new Sink();
  const sinkPort = await sink.listen('127.0.0.1', 0);
  const children: ChildProcess[] = [];
  let hap: Awaited<ReturnType<typeof startHaproxy>> | null = null;
  try {
    const ports: number[] = [];
    for (const name of ['a', 'b']) {
      const port = await freePort();
      ports.push(port);
      const configFile = writeConfig(path.join(dir, name), port, sinkPort, { proxy_protocol: { from: ['127.0.0.40/32'] } });
      children.push(await startChild(configFile));
    }
    const front = await freePort();
    hap = await startHaproxy([
      {
        name: 'smtp',
        bind: `127.0.0.1:${front}`,
        servers: ports.map((port, i) => ({ name: `gh${i}`, host: '127.0.0.1', port })),
        check: ['option smtpchk HELO bench.test', 'source 127.0.0.40'],
      },
    ]);
    if (!(await hap.waitUp(30_000))) throw new Error(`haproxy servers not up: ${hap.log()}`);
    const direct: Target = { label: 'one instance, direct', host: '127.0.0.1', port: ports[0]!, sink };
    const balanced: Target = { label: 'two instances through HAProxy', host: '127.0.0.1', port: front, sink };
    const bodies = Array.from({ length: MESSAGES }, (_, i) => message(i));
    if (WARMUP > 0) {
      await throughput(direct, bodies, Math.min(WARMUP, MESSAGES));
      await throughput({ ...direct, port: ports[1]! }, bodies, Math.min(WARMUP, MESSAGES));
      await throughput(balanced, bodies, Math.min(WARMUP, MESSAGES));
    }
    const load0 = os.loadavg();
    const pids = [children[0]!.pid, children[1]!.pid, hap.pid];
    const runs: Record<'direct' | 'balanced', { r: Throughput; cpu: (number | null)[]; self: number }[]> = { direct: [], balanced: [] };
    const one = async (key: 'direct' | 'balanced', t: Target) => {
      await settle();
      const c0 = pids.map((p) => treeCpuMs(p));
      const s0 = process.cpuUsage();
      const r = await throughput(t, bodies);
      const s1 = process.cpuUsage(s0);
      const c1 = pids.map((p) => treeCpuMs(p));
      runs[key].push({ r, cpu: c0.map((v, i) => (v !== null && c1[i] !== null ? c1[i]! - v : null)), self: (s1.user + s1.system) / 1000 });
    };
    for (let r = 0; r < ROUNDS; r++) {
      if (r % 2 === 0) {
        await one('direct', direct);
        await one('balanced', balanced);
      } else {
        await one('balanced', balanced);
        await one('direct', direct);
      }
    }
    const load1 = os.loadavg();
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const line = (key: 'direct' | 'balanced', label: string) => {
      const rs = runs[key];
      const m = medianRun(rs.map((x) => x.r));
      const wall = rs.reduce((a, x) => a + x.r.acceptedMs, 0);
      const cores = (i: number) => rs.reduce((a, x) => a + (x.cpu[i] ?? 0), 0) / wall;
      const self = rs.reduce((a, x) => a + x.self, 0) / wall;
      return [
        `  ${label}: (a) ${rate(m).toFixed(0)} msg/s accepted (rounds ${rs.map((x) => rate(x.r).toFixed(0)).join(' / ')}); (b) ${m.arrived}/${MESSAGES} at the sink in ${(m.endToEndMs / 1000).toFixed(2)} s`,
        `    CPU while accepting, in cores: instance A ${cores(0).toFixed(2)}, instance B ${cores(1).toFixed(2)}, HAProxy ${cores(2).toFixed(2)}, this client ${self.toFixed(2)}; total ${(cores(0) + cores(1) + cores(2) + self).toFixed(2)} of ${os.cpus().length}`,
      ];
    };
    const ratio = med(runs.balanced.map((x, i) => rate(x.r) / rate(runs.direct[i]!.r)));
    process.stdout.write(
      [
        `SMTP through HAProxy (Node ${process.version}, HAProxy send-proxy-v2 roundrobin, ${os.cpus().length} cores, load average ${load0.map((x) => x.toFixed(1)).join(' ')} → ${load1.map((x) => x.toFixed(1)).join(' ')}; ${MESSAGES} messages of 4 KiB, ${SESSIONS} sessions, durable queue on, ${ROUNDS} rounds taken in turns)`,
        ...line('direct', 'one instance, direct'),
        ...line('balanced', 'two instances through HAProxy'),
        `  through the balancer / direct: ${ratio.toFixed(2)} (median of the rounds' ratios)`,
      ].join('\n') + '\n',
    );
  } finally {
    await hap?.stop();
    for (const c of children) await stopChild(c);
    await sink.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

(values.haproxy ? mainHaproxy() : main()).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:smtp failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
