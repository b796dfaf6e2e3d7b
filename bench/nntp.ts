/*
 * NNTP benchmark (`npm run bench:nntp`): starts `gatehouse start` as a child process on loopback with a
 * temporary state folder, then measures (a) POST of 2 KiB articles with 1 and 4 clients (the one-client cycle
 * also split into its two round trips, POST → 340 and article → 240), (b) ARTICLE by message-id and by number
 * (lock-step and pipelined 16 deep), (c) OVER of 1,000 rows, (d) connect + STARTTLS + AUTHINFO latency. With NNTP_ANCHOR=<anchors target.json> the same workload runs against INN too and the
 * ratios are printed. Prints figures; asserts nothing. The server runs compiled (dist/, as `npm start` runs it;
 * `npm run build` first), or through tsx with NNTP_BENCH_TSX=1. Options (environment): NNTP_BENCH_WARMUP,
 * NNTP_BENCH_ONLY, NNTP_BENCH_SCALE, NNTP_BENCH_PROF, NNTP_BENCH_BASE, NNTP_BENCH_TSX (see below).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import { UserStore } from '../src/identity/users.js';
import { RawClient, secureLogin } from '../test/nntp/client.js';
import { runFeed, type FeedTarget } from './nntp-feed.js';

const PASSWORD = 'bench-password-long-enough';
const BCRYPT_COST = 12;
const root = path.resolve(import.meta.dirname, '..');

/** The feed mode's peer and group (bench/nntp-feed.ts): the bench's own address feeds office.general. */
const FEED_NNTP = {
  groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }],
  peers: [{ name: 'peer.bench.test', host: '127.0.0.1', tls: false, groups: ['*'], direction: 'in', articles_per_minute: 100_000_000 }],
};

async function startServer(dir: string, cwd = root, feed = false): Promise<{ child: ChildProcess; port: number }> {
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir, { recursive: true });
  const configFile = path.join(configDir, 'gatehouse.yaml');
  const data = {
    hostname: 'gatehouse.test',
    state_dir: '../var',
    auth: { bcrypt_cost: BCRYPT_COST },
    log: { stdout: false, level: 'warn' },
    smtp: { enabled: false },
    ftp: { enabled: false },
    nntp: {
      listen: '127.0.0.1:0',
      groups: [{ name: 'bench.test', read: ['authenticated'], post: ['authenticated'] }, ...(feed ? FEED_NNTP.groups : [])],
      ...(feed ? { peers: FEED_NNTP.peers } : {}),
      limits: { posts_per_minute: 1_000_000, connections_per_ip: 50 },
    },
  };
  fs.writeFileSync(configFile, stringify(data));
  const config = parseConfig(data, configFile, configDir);
  await new UserStore(config.paths.usersFile, BCRYPT_COST).add('bench', PASSWORD, []);
  // NNTP_BENCH_PROF=<dir>: the server writes a V8 CPU profile (--cpu-prof) into <dir> when it stops.
  // The compiled server (dist/, what `npm start` runs); NNTP_BENCH_TSX=1 runs the sources through tsx instead.
  const entry = process.env.NNTP_BENCH_TSX === '1' ? ['--import', 'tsx', 'src/cli/main.ts'] : ['dist/cli/main.js'];
  if (!fs.existsSync(path.join(cwd, entry[entry.length - 1]!))) throw new Error(`${cwd}: ${entry[entry.length - 1]} is missing (npm run build)`);
  const child = spawn(process.execPath, [...(process.env.NNTP_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.NNTP_BENCH_PROF}`] : []), ...entry, '--config', configFile, 'start', '--quiet'], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no banner: ${err}`)), 30_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
      const m = /NNTP 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
}

const body = Array.from({ length: 26 }, (_, i) => `${String(i).padStart(2, '0')} ${'lorem ipsum dolor sit amet '.repeat(3).slice(0, 72)}`);

interface Target {
  readonly name: string;
  /** a Gatehouse child: its CPU time is read from /proc around each POST block */
  readonly pid?: number;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly group: string;
}

const article = (t: Target, subject: string) => [`From: Bench <bench@gatehouse.test>`, `Newsgroups: ${t.group}`, `Subject: ${subject}`, '', ...body];

/** CPU time of a process so far, µs: all threads (/proc/<pid>/stat) and its main thread (/proc/<pid>/schedstat). */
function cpuUs(pid: number | undefined): { all: number; main: number } | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const tick = 1e6 / 100; // USER_HZ
    const all = (Number(f[11]) + Number(f[12])) * tick;
    const main = Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
    return { all, main };
  } catch {
    return null;
  }
}

interface Block {
  secs: number;
  /** server CPU µs in the block (all threads, main thread), when known */
  cpu: { all: number; main: number } | null;
}

/**
 * The one-client POST cycle split where the client sees it, per POST (µs): POST sent → 340 read (the command's
 * round trip), and 340 read → 240 read (the article's: sending it, the server storing it, the reply). Kept for
 * the timed blocks of every target, so the two halves can be compared side by side (median, mean, p90).
 */
const splits = new Map<string, { cmd: number[]; art: number[] }>();

/** Time (and server CPU) `clients` logged-in clients take to POST `perClient` articles each, lock-step. */
async function postMany(t: Target, clients: number, perClient: number, split = false): Promise<Block> {
  const cs = await Promise.all(Array.from({ length: clients }, () => secureLogin(t.port, t.user, t.password)));
  let halves = splits.get(t.name);
  if (!halves) splits.set(t.name, (halves = { cmd: [], art: [] }));
  const c0 = cpuUs(t.pid);
  const t0 = performance.now();
  await Promise.all(
    cs.map(async (c, i) => {
      for (let n = 0; n < perClient; n++) {
        const lines = article(t, `c${i} n${n} ${Date.now()}`);
        const a = performance.now();
        const first = await c.cmd('POST');
        if (!first.startsWith('340')) throw new Error(`${t.name} POST: ${first}`);
        const b = performance.now();
        c.write(lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join('') + '.\r\n');
        const r = await c.line();
        if (!r?.startsWith('240')) throw new Error(`${t.name} POST: ${r}`);
        if (split) {
          halves.cmd.push((b - a) * 1000);
          halves.art.push((performance.now() - b) * 1000);
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const c1 = cpuUs(t.pid);
  for (const c of cs) c.close();
  return { secs, cpu: c0 && c1 ? { all: c1.all - c0.all, main: c1.main - c0.main } : null };
}

async function fetches(c: RawClient, ids: string[], depth: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += depth) {
    const batch = ids.slice(i, i + depth);
    c.write(batch.map((id) => `ARTICLE ${id}\r\n`).join(''));
    for (const _ of batch) {
      const l = await c.line();
      if (!l?.startsWith('220')) throw new Error(`ARTICLE: ${l}`);
      await c.block();
    }
  }
  return ids.length / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** NNTP_BENCH_ONLY=post measures the POST rows only (for profiling and quick iterations). */
const postOnly = process.env.NNTP_BENCH_ONLY === 'post';
/** NNTP_BENCH_SCALE multiplies the number of POSTs (default 1: 400 lock-step, 4 × 150 concurrent). */
const scale = Number(process.env.NNTP_BENCH_SCALE ?? '1') || 1;

/**
 * NNTP_BENCH_WARMUP: untimed POSTs before the timed ones (default 600: 300 from one client, then 4 × 75), so both
 * servers are measured warm (Gatehouse's JIT has compiled the POST path; INN has its caches); 0 = cold start.
 */
const warmup = Number(process.env.NNTP_BENCH_WARMUP ?? '600');

/**
 * The POST rows: the targets take turns in POST_ROUNDS blocks (NNTP_BENCH_ROUNDS, default 4), each round starting
 * with the next target, so a change in the shared box's load hits all of them alike.
 */
const POST_ROUNDS = Math.max(1, Number(process.env.NNTP_BENCH_ROUNDS ?? '4') || 4);

type PostRates = Record<'one' | 'four' | 'cpuOne' | 'cpuFour' | 'mainOne' | 'mainFour' | 'cmdMed' | 'artMed' | 'artMean' | 'artP90', number>;

/** The one-client cycle's halves of a target (see `splits`). */
function halves(name: string): Partial<PostRates> {
  const h = splits.get(name);
  if (!h || h.art.length === 0) return {};
  const art = [...h.art].sort((a, b) => a - b);
  return { cmdMed: median(h.cmd), artMed: median(art), artMean: art.reduce((a, b) => a + b, 0) / art.length, artP90: art[Math.floor(art.length * 0.9)]! };
}

async function measurePosts(targets: readonly Target[]): Promise<Partial<PostRates>[]> {
  for (const t of targets) {
    if (warmup === 0) continue;
    await postMany(t, 1, Math.ceil(warmup / 2));
    await postMany(t, 4, Math.ceil(warmup / 8));
  }
  const n1 = Math.max(1, Math.round((400 * scale) / POST_ROUNDS));
  const n4 = Math.max(1, Math.round((150 * scale) / POST_ROUNDS));
  const sum = targets.map(() => ({ one: 0, four: 0, cpuOne: 0, cpuFour: 0, mainOne: 0, mainFour: 0, cpu: true }));
  for (let r = 0; r < POST_ROUNDS; r++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (r + k) % targets.length;
      const t = targets[i]!;
      const s = sum[i]!;
      const a = await postMany(t, 1, n1, true);
      const b = await postMany(t, 4, n4);
      s.one += a.secs;
      s.four += b.secs;
      if (a.cpu && b.cpu) {
        s.cpuOne += a.cpu.all;
        s.mainOne += a.cpu.main;
        s.cpuFour += b.cpu.all;
        s.mainFour += b.cpu.main;
      } else s.cpu = false;
    }
  }
  const p1 = POST_ROUNDS * n1;
  const p4 = POST_ROUNDS * 4 * n4;
  return sum.map((x, i) => ({
    one: p1 / x.one,
    four: p4 / x.four,
    ...halves(targets[i]!.name),
    ...(x.cpu ? { cpuOne: x.cpuOne / p1, mainOne: x.mainOne / p1, cpuFour: x.cpuFour / p4, mainFour: x.mainFour / p4 } : {}),
  }));
}

async function measure(t: Target, posts: Partial<PostRates>): Promise<Record<string, number>> {
  if (postOnly) return posts;
  const c = await secureLogin(t.port, t.user, t.password);
  const g = (await c.cmd(`GROUP ${t.group}`)).split(' ');
  const high = Number(g[3]);
  const low = high - 999;
  await c.cmd(`HDR Message-ID ${low}-${high}`);
  const ids = (await c.block()).map((l) => l.split(' ')[1]!);
  const sample = ids.slice(0, 400);
  const nums = Array.from({ length: 400 }, (_, i) => String(low + i));
  const byIdLock = await fetches(c, sample, 1);
  const byNumLock = await fetches(c, nums, 1);
  const byIdPipe = await fetches(c, sample, 16);
  const byNumPipe = await fetches(c, nums, 16);
  const overMs: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const r = await c.cmd(`OVER ${low}-${high}`);
    const rows = await c.block();
    if (!r.startsWith('224') || rows.length !== 1000) throw new Error(`OVER: ${r} ${rows.length}`);
    overMs.push(performance.now() - t0);
  }
  c.close();
  const loginMs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    const l = await secureLogin(t.port, t.user, t.password);
    loginMs.push(performance.now() - t0);
    l.close();
  }
  const tlsMs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    const l = await RawClient.connect(t.port);
    await l.line();
    await l.cmd('STARTTLS');
    await l.upgrade();
    tlsMs.push(performance.now() - t0);
    l.close();
  }
  return { ...posts, byIdLock, byIdPipe, byNumLock, byNumPipe, over: median(overMs), login: median(loginMs), tls: median(tlsMs) };
}

const ROWS: [string, string, string][] = [
  ['one', 'POST 2 KiB, 1 client', 'articles/s'],
  ['four', 'POST 2 KiB, 4 clients', 'articles/s'],
  ['cmdMed', '  1 client: POST → 340, median', 'µs'],
  ['artMed', '  1 client: article → 240, median', 'µs'],
  ['artMean', '  1 client: article → 240, mean', 'µs'],
  ['artP90', '  1 client: article → 240, p90', 'µs'],
  ['cpuOne', 'server CPU per POST, 1 client', 'µs'],
  ['mainOne', '  of it main thread', 'µs'],
  ['cpuFour', 'server CPU per POST, 4 clients', 'µs'],
  ['mainFour', '  of it main thread', 'µs'],
  ['byIdLock', 'ARTICLE by message-id, lock-step', '/s'],
  ['byIdPipe', 'ARTICLE by message-id, 16 deep', '/s'],
  ['byNumLock', 'ARTICLE by number, lock-step', '/s'],
  ['byNumPipe', 'ARTICLE by number, 16 deep', '/s'],
  ['over', 'OVER of 1,000 rows', 'ms'],
  ['login', 'connect + STARTTLS + AUTHINFO', 'ms'],
  ['tls', 'connect + STARTTLS only', 'ms'],
];

/** INN side by side when NNTP_ANCHOR names the anchors' target.json (see ../shared/anchors/README.md). */
function innTarget(): Target | null {
  const file = process.env.NNTP_ANCHOR;
  if (!file) return null;
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { name: string; port: number; users: Record<string, string>; groups: { rw: string } };
  return { name: j.name, port: j.port, user: 'alice', password: j.users.alice!, group: j.groups.rw };
}

/**
 * NNTP_BENCH_BASE=<another checkout> (e.g. a `git worktree` of the commit to compare with, with node_modules linked):
 * a second Gatehouse is started from it and measured in the same rounds, for before/after of a change.
 */
const baseRoot = process.env.NNTP_BENCH_BASE;

/**
 * `npm run bench:nntp -- feed` (or NNTP_BENCH_ONLY=feed): the feed rows only (bench/nntp-feed.ts), Gatehouse as a
 * listed peer's receiver vs INN's innd (NNTP_ANCHOR's target.json: innd on pids.innd's port 11190 unless
 * NNTP_ANCHOR_INND says otherwise, reads through its nnrpd).
 */
async function mainFeed(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-feed-'));
  let child: ChildProcess | null = null;
  try {
    const s = await startServer(path.join(dir, 'new'), root, true);
    child = s.child;
    const targets: FeedTarget[] = [{ name: 'gatehouse', pid: child.pid, feedPort: s.port, readPort: s.port, user: 'bench', password: PASSWORD, group: 'office.general' }];
    const file = process.env.NNTP_ANCHOR;
    if (file) {
      const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { name: string; port: number; users: Record<string, string>; groups: { rw: string }; pids: { innd: string } };
      const pid = Number(fs.readFileSync(j.pids.innd, 'utf8').trim()) || undefined;
      targets.push({ name: j.name, pid, feedPort: Number(process.env.NNTP_ANCHOR_INND ?? '11190'), readPort: j.port, user: 'alice', password: j.users.alice!, group: j.groups.rw });
    }
    process.stdout.write(`${await runFeed(targets)}\n`);
  } finally {
    child?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    if (child && child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-nntp-'));
  const children: ChildProcess[] = [];
  try {
    const { child, port } = await startServer(path.join(dir, 'new'));
    children.push(child);
    const targets: Target[] = [{ name: 'gatehouse', pid: child.pid, port, user: 'bench', password: PASSWORD, group: 'bench.test' }];
    if (baseRoot) {
      const b = await startServer(path.join(dir, 'base'), path.resolve(baseRoot));
      children.push(b.child);
      targets.push({ name: 'gh-base', pid: b.child.pid, port: b.port, user: 'bench', password: PASSWORD, group: 'bench.test' });
    }
    const inn = innTarget();
    if (inn) targets.push(inn);
    const results: Record<string, number>[] = [];
    const posts = await measurePosts(targets);
    for (const [i, t] of targets.entries()) results.push(await measure(t, posts[i]!));
    const f = (n: number) => (n < 100 ? n.toFixed(1) : n.toFixed(0));
    const better = (unit: string, a: number, b: number | undefined) => (b === undefined ? '' : `${(unit === 'ms' || unit === 'µs' ? b / a : a / b).toFixed(2)}x`).padStart(10);
    const out = [`NNTP benchmark (127.0.0.1; 2 KiB articles; ${warmup} warm-up POSTs; Gatehouse bcrypt cost ${BCRYPT_COST}; load average ${os.loadavg()[0]!.toFixed(1)})`];
    out.push(`  ${''.padEnd(36)}${targets.map((t) => t.name.padStart(14)).join('')}${inn ? '     ratio' : ''}${baseRoot ? '   vs base' : ''}`);
    for (const [key, label, unit] of ROWS) {
      if (results[0]![key] === undefined) continue;
      const vals = results.map((r) => r[key]);
      const ratio = inn ? better(unit, vals[0]!, vals[vals.length - 1]) : '';
      const vsBase = baseRoot ? better(unit, vals[0]!, vals[1]) : '';
      out.push(`  ${`${label} (${unit})`.padEnd(36)}${vals.map((v) => (v === undefined ? '-' : f(v)).padStart(14)).join('')}${ratio}${vsBase}`);
    }
    if (inn || baseRoot) out.push('  ratio > 1: Gatehouse better');
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('feed') || process.env.NNTP_BENCH_ONLY === 'feed') await mainFeed();
else await main();
