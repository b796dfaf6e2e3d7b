/*
 * `npm run bench:cli`: what a user waits for and what the daemon costs, before (the code at REF as it shipped:
 * built with its own `npm run build` and run as `node bin/gatehouse.js` when REF has a `prepare` build, else
 * through tsx, `bin/gatehouse.js` spawning `node --import tsx src/cli/main.ts`) and after (this tree, compiled:
 * `node bin/gatehouse.js`, one process), side by side in one run, alternating:
 *   - `gatehouse check` and `gatehouse explain` wall time per call (median of --runs; neither hashes);
 *   - start to listening (spawn until SMTP, FTP and NNTP all accept; the TLS pair already exists), median of 3;
 *   - RSS of the server at rest (3 s and --rest (60) s after listening: V8's memory reducer shrinks an idle heap some 30 s after start);
 *   - RSS of the server with --idle sessions open, SMTP/FTP/NNTP mixed, from 20 loopback addresses.
 * The "before" tree is `git archive REF` into a temp folder using this clone's node_modules.
 * Options: --before REF (default main) --runs N (default 15) --idle N (default 1000) --rest S (default 60)
 * Prints figures, asserts nothing; run it under `flock /tmp/heavy.lock`.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, killAll, rssOf, sleep, type Setup } from './fuzz/proc.js';
import { loadSetup, openIdle } from './fuzz/slowloris.js';

const { values } = parseArgs({
  options: {
    before: { type: 'string', default: 'main' },
    runs: { type: 'string', default: '15' },
    idle: { type: 'string', default: '1000' },
    rest: { type: 'string', default: '60' },
  },
});
const RUNS = Number(values.runs);
const IDLE = Number(values.idle);
const REST_S = Number(values.rest);
const out = (s: string) => process.stdout.write(`${s}\n`);
process.on('exit', killAll);

interface Variant {
  readonly name: string;
  readonly root: string;
  /** argv (after node) of the `gatehouse` command as users ran it */
  readonly cli: readonly string[];
  /** argv (after node) of the server process itself */
  readonly server: readonly string[];
}

/** REF's tree in a temp folder with this clone's node_modules; built as REF builds itself when it has a `prepare`. */
function prepareBefore(ref: string): { dir: string; compiled: boolean } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-before-'));
  execFileSync('sh', ['-c', `git archive ${JSON.stringify(ref)} | tar -x -C ${JSON.stringify(dir)}`], { cwd: ROOT });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const compiled = Boolean(pkg.scripts?.prepare && pkg.scripts.build);
  if (compiled) execFileSync('npm', ['run', '--silent', 'build'], { cwd: dir, stdio: 'inherit' });
  return { dir, compiled };
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const fmt = (n: number, d = 0) => n.toFixed(d);

const TIME = '/usr/bin/time';
const HAVE_TIME = fs.existsSync(TIME);
const timeFile = path.join(os.tmpdir(), `gatehouse-bench-cli-${process.pid}.time`);

/** Wall time of one call, and its CPU time (user + sys, all its processes) when /usr/bin/time exists: on a
 * box shared with other work the CPU time says what the command costs, the wall time what a user waited. */
function timeCall(v: Variant, args: readonly string[]): Promise<{ wall: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const argv = [...v.cli, ...args];
    const child = HAVE_TIME
      ? spawn(TIME, ['-f', '%U %S', '-o', timeFile, process.execPath, ...argv], { cwd: v.root, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, argv, { cwd: v.root, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const wall = performance.now() - t0;
      if (code !== 0 && code !== 1) return reject(new Error(`${v.name} ${args.join(' ')} exited ${code}: ${err}`));
      let cpu = NaN;
      if (HAVE_TIME) {
        const [u, sy] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number];
        cpu = (u + sy) * 1000;
      }
      resolve({ wall, cpu });
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

interface Server {
  readonly pid: number;
  readonly listeningMs: number;
  stop(): Promise<void>;
}

async function startServer(v: Variant, setup: Setup): Promise<Server> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...v.server, '--config', setup.configFile, 'start', '--quiet'], { cwd: v.root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-10_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  const ports = Object.values(setup.ports);
  const up = new Set<number>();
  while (up.size < ports.length) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${v.name} did not start: ${err}`);
    }
    for (const p of ports) if (!up.has(p) && (await accepts(p))) up.add(p);
    if (up.size < ports.length) await sleep(5);
  }
  const listeningMs = performance.now() - t0;
  return {
    pid: child.pid!,
    listeningMs,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(20_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

out('bench:cli — building dist/ (npm run build) …');
execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
const { dir: beforeRoot, compiled: beforeCompiled } = prepareBefore(values.before);
const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
const beforeRev = execFileSync('git', ['rev-parse', '--short', values.before], { cwd: ROOT, encoding: 'utf8' }).trim();
const tsxLoader = path.join(ROOT, 'node_modules/tsx/dist/loader.mjs');
const variants: Variant[] = [
  beforeCompiled
    ? { name: `before (${values.before} ${beforeRev}, compiled)`, root: beforeRoot, cli: ['bin/gatehouse.js'], server: ['bin/gatehouse.js'] }
    : { name: `before (${values.before} ${beforeRev}, tsx)`, root: beforeRoot, cli: ['bin/gatehouse.js'], server: ['--import', tsxLoader, 'src/cli/main.ts'] },
  { name: `after (${head}, compiled)`, root: ROOT, cli: ['bin/gatehouse.js'], server: ['bin/gatehouse.js'] },
];
out(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

const setup = await loadSetup(Math.max(IDLE, 100), 100);
try {
  // the TLS pair is made once, outside the timed starts
  await (await startServer(variants[1]!, setup)).stop();

  const explainArgs = ['--config', setup.configFile, 'explain', '--service', 'smtp', '--ip', '203.0.113.9', '--action', 'relay', '--object', 'bob@example.net'];
  const checkArgs = ['--config', setup.configFile, 'check'];
  const calls: Record<string, Record<string, number[]>> = { check: {}, explain: {}, 'check cpu': {}, 'explain cpu': {} };
  for (const v of variants) for (const c of Object.keys(calls)) calls[c]![v.name] = [];
  for (let i = 0; i < RUNS; i++) {
    for (const v of variants) {
      for (const [name, args] of [['check', checkArgs], ['explain', explainArgs]] as const) {
        const t = await timeCall(v, args);
        calls[name]![v.name]!.push(t.wall);
        calls[`${name} cpu`]![v.name]!.push(t.cpu);
      }
    }
  }

  const starts: Record<string, number[]> = {};
  for (const v of variants) starts[v.name] = [];
  for (let i = 0; i < 3; i++) {
    for (const v of variants) {
      const s = await startServer(v, setup);
      starts[v.name]!.push(s.listeningMs);
      await s.stop();
    }
  }

  const rest: Record<string, { at3: number; atRest: number; idle: number; greeted: number }> = {};
  for (const v of variants) {
    const s = await startServer(v, setup);
    try {
      await sleep(3000);
      const at3 = rssOf(s.pid);
      await sleep(Math.max(0, REST_S - 3) * 1000);
      const atRest = rssOf(s.pid);
      const idle = await openIdle(setup, IDLE, 20);
      await sleep(5000);
      const idleRss = rssOf(s.pid);
      for (const c of idle.conns) c.close();
      rest[v.name] = { at3, atRest, idle: idleRss, greeted: idle.greeted };
    } finally {
      await s.stop();
    }
  }

  const [b, a] = variants.map((v) => v.name) as [string, string];
  const row = (what: string, aim: string, bv: number, av: number, unit: string, d = 0) =>
    out(`| ${what} | ${fmt(bv, d)} ${unit} | ${fmt(av, d)} ${unit} | ${(av / bv).toFixed(2)}× | ${aim} |`);
  out('');
  out(`| figure | ${b} | ${a} | after/before | aim |`);
  out('|---|---|---|---|---|');
  row(`\`gatehouse check\`, median of ${RUNS}`, '≤ 300 ms', median(calls.check![b]!), median(calls.check![a]!), 'ms');
  row(`\`gatehouse explain\`, median of ${RUNS}`, '≤ 300 ms', median(calls.explain![b]!), median(calls.explain![a]!), 'ms');
  if (HAVE_TIME) {
    row('`check` CPU time (user+sys, all processes), median', '', median(calls['check cpu']![b]!), median(calls['check cpu']![a]!), 'ms');
    row('`explain` CPU time (user+sys, all processes), median', '', median(calls['explain cpu']![b]!), median(calls['explain cpu']![a]!), 'ms');
  }
  row('start → SMTP, FTP, NNTP all accept, median of 3', '≤ 1 s', median(starts[b]!), median(starts[a]!), 'ms');
  row('server RSS 3 s after listening', '', rest[b]!.at3, rest[a]!.at3, 'MB', 1);
  row(`server RSS at rest (${REST_S} s after listening)`, '≤ 70 MB', rest[b]!.atRest, rest[a]!.atRest, 'MB', 1);
  row(`server RSS with ${IDLE} idle sessions (SMTP/FTP/NNTP mixed; greeted ${rest[b]!.greeted} / ${rest[a]!.greeted})`, '≤ 100 MB', rest[b]!.idle, rest[a]!.idle, 'MB', 1);
  out('');
  for (const c of Object.keys(calls)) for (const v of variants) out(`${c} ${v.name}: ${calls[c]![v.name]!.map((x) => fmt(x)).join(' ')} ms`);
  for (const v of variants) out(`start ${v.name}: ${starts[v.name]!.map((x) => fmt(x)).join(' ')} ms`);
  out(`load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  fs.rmSync(timeFile, { force: true });
  setup.remove();
  fs.rmSync(beforeRoot, { recursive: true, force: true });
}
