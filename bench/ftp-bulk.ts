/*
 * Big FTP transfers at the machine's speed (issue 19 item 3): `npm run bench:ftp -- --bulk` (or
 * `npx tsx bench/ftp-bulk.ts`). Side by side in one run, in alternating rounds (the order of the servers flips
 * every round): `dd if=/dev/zero bs=1M count=N conv=fdatasync` into Gatehouse's FTP folder (the disk's durable
 * ceiling, same disk), plain STOR / plain RETR / FTPS STOR / FTPS RETR of an N MiB file to and from Gatehouse (a
 * child process, as in production) and the vsftpd anchor (vsftpd does NOT fsync: its STOR's 226 comes with the
 * file still in the page cache; every Gatehouse 226 comes after fdatasync + rename + folder fsync).
 *
 * The client is bench/ftp-client.py (Python's ftplib for the control dialogue, one process per transfer, timed
 * from EPSV to the 226, login excluded), the same for all servers: STOR 1 MiB `sendall` of one block in memory,
 * RETR 1 MiB `recv_into`. That is the fastest client measured here: into the minimal sink that discards
 * (bench/ftp-floor.py) it moves 3,700–4,400 MiB/s, above dd's 1,500–1,900; BENCH_FTP_CLIENT=sendfile sends a
 * source file made here once (in the page cache) with os.sendfile instead, zero copy on the sending side but
 * 1,800–2,100 MiB/s into the same sink (the receiver then copies from 200 MiB of page cache, not from a block in
 * the CPU's cache); BENCH_FTP_BLOCK_KIB sets the sendall block (64 KiB–4 MiB measured: 1 MiB best).
 *
 * Env: BENCH_FTP_MIB (default 200), BENCH_FTP_ROUNDS (default 3), BENCH_FTP_TARGET (the vsftpd anchor's
 * target.json; default /work/shared/anchors/vsftpd/target.json when it exists, else Gatehouse only),
 * BENCH_FTP_TARGET=none: Gatehouse only; BENCH_FTP_ONLY="FTP RETR,FTPS STOR,dd": only those (profiling);
 * BENCH_FTP_BASE=<another checkout of this repo> adds that code as a second Gatehouse in the same rounds
 * (before/after), BENCH_FTP_SERVER_ARGS adds node flags to the Gatehouse child (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/p"). Run it under `flock /tmp/heavy.lock`.
 */
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PASSWORD } from '../test/helpers/gatehouse.js';

const MIB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_FTP_MIB ?? 200);
const ROUNDS = Number(process.env.BENCH_FTP_ROUNDS ?? 3);
const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = path.join(here, 'ftp-client.py');
const SENDALL = process.env.BENCH_FTP_CLIENT !== 'sendfile';
/** plain STOR's source file (sendfile), made once per run */
let source = '-';

interface Server {
  readonly name: string;
  readonly kind: 'gatehouse' | 'anchor' | 'floor';
  readonly host: string;
  readonly plainPort: number;
  readonly tlsPort: number;
  readonly user: string;
  readonly password: string;
  /** a folder on the disk the server writes to (dd's target) */
  readonly dir: string;
  readonly pid?: number | undefined;
  cpu?: () => Promise<number>;
  stop(): Promise<void>;
}

async function gatehouse(name: string, script: string): Promise<Server> {
  const extra = (process.env.BENCH_FTP_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = fork(script, [], { env: { ...process.env, BENCH_FTP_ROLE: 'server' }, execArgv: [...process.execArgv, ...extra] });
  const m = await new Promise<{ port: number; dir?: string }>((resolve, reject) => {
    child.once('message', (msg) => resolve(msg as { port: number; dir?: string }));
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  const cpu = () =>
    new Promise<number>((resolve) => {
      child.once('message', (msg) => {
        const u = (msg as { cpu: NodeJS.CpuUsage }).cpu;
        resolve((u.user + u.system) / 1000);
      });
      child.send('cpu');
    });
  return {
    name,
    kind: 'gatehouse',
    host: '127.0.0.1',
    plainPort: m.port,
    tlsPort: m.port,
    user: 'bench',
    password: PASSWORD,
    dir: m.dir ?? os.tmpdir(),
    pid: child.pid,
    ...(m.dir ? { cpu } : {}),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.send('stop');
      }),
  };
}

function anchor(file: string): Server {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    name: string;
    host: string;
    port: number;
    port_plain: number;
    users: Record<string, string>;
    disk_access: { alice_home: string };
  };
  const [user, password] = Object.entries(j.users)[0]!;
  return { name: j.name.split(' ')[0]!, kind: 'anchor', host: j.host, plainPort: j.port_plain, tlsPort: j.port, user, password, dir: j.disk_access.alice_home, stop: () => Promise.resolve() };
}

/**
 * bench/ftp-floor.py: a minimal upload sink (plain STOR only) with the same client: "durable" receives in a
 * C-speed loop of 1 MiB recv_into + write, then fdatasync, rename, folder fsync, 226 (what dd does plus the
 * receive); "discard" drops what it receives (the client + loopback ceiling).
 */
async function floor(mode: 'durable' | 'discard', dir: string): Promise<Server> {
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn('python3', [path.join(here, 'ftp-floor.py'), dir, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`ftp-floor.py ${mode} exited with ${code}`)));
  });
  // the sink's CPU so far (ms), from /proc: user + system ticks
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  const cpu = () => {
    const f = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Promise.resolve((Number(f[11]) + Number(f[12])) * tick);
  };
  return {
    cpu,
    name: `floor-${mode}`,
    kind: 'floor',
    host: '127.0.0.1',
    plainPort: port,
    tlsPort: port,
    user: 'x',
    password: 'x',
    dir,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** One transfer by the Python client: MiB/s from EPSV to the 226. */
function transfer(s: Server, tls: boolean, op: 'stor' | 'retr'): number {
  const r = spawnSync('python3', [CLIENT, s.host, String(tls ? s.tlsPort : s.plainPort), s.user, s.password, tls ? 'tls' : 'plain', op, 'big.bin', String(SIZE), source], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`${s.name} ${tls ? 'FTPS' : 'FTP'} ${op}: ${r.stderr || r.error?.message}`);
  const [secs, bytes, cpu] = r.stdout.trim().split(' ').map(Number) as [number, number, number];
  if (bytes !== SIZE * MIB) throw new Error(`${s.name} ${op}: ${bytes} bytes`);
  lastClientCpu = cpu;
  return SIZE / secs;
}

/** the client's CPU (ms) in the last transfer's timed part */
let lastClientCpu = 0;

/** CPU (ms) of this process's waited-for children so far (dd), from /proc */
function childrenCpu(): number {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * (1000 / TICKS);
}
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/**
 * Before each timed step: `sync`, so that no step pays for the one before it (vsftpd's STOR leaves 200 MiB dirty
 * in the page cache; written back during the next step it would slow that step's disk). BENCH_FTP_SETTLE=0: off.
 */
function settle(): void {
  if (process.env.BENCH_FTP_SETTLE !== '0') execFileSync('sync');
}

/** dd's durable write rate into `dir` (MiB/s): the disk's ceiling for a durable STOR. */
function dd(dir: string): number {
  const file = path.join(dir, `.dd-${process.pid}`);
  try {
    const t0 = process.hrtime.bigint();
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${SIZE}`, 'conv=fdatasync'], { stdio: 'ignore' });
    return SIZE / (Number(process.hrtime.bigint() - t0) / 1e9);
  } finally {
    fs.rmSync(file, { force: true });
  }
}

const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' / ');
const range = (xs: number[]) => (xs.length === 0 ? '-' : `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`);

export async function main(): Promise<void> {
  const defaultTarget = '/work/shared/anchors/vsftpd/target.json';
  const t = process.env.BENCH_FTP_TARGET;
  const targetFile = t === 'none' ? '' : (t ?? (fs.existsSync(defaultTarget) ? defaultTarget : ''));
  // BENCH_FTP_ONLY=<comma-separated labels, e.g. "FTP RETR,FTPS STOR">: just those transfers (profiling)
  const only = (process.env.BENCH_FTP_ONLY ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  const ddOn = only.length === 0 || only.includes('dd');
  const servers: Server[] = [];
  const figures = new Map<string, number[]>();
  const add = (k: string, v: number) => (figures.get(k) ?? figures.set(k, []).get(k)!).push(v);
  const cpuPer = new Map<string, number[]>();
  const clientCpu = new Map<string, number[]>();
  const srcDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ftp-bulk-src-'));
  try {
    if (!SENDALL) {
      source = path.join(srcDir, 'source.bin');
      const fd = fs.openSync(source, 'w', 0o600);
      try {
        for (let i = 0; i < SIZE; i++) fs.writeSync(fd, crypto.randomBytes(MIB));
      } finally {
        fs.closeSync(fd);
      }
    }
    const g = await gatehouse('Gatehouse', path.join(here, 'ftp.ts'));
    if (!g.cpu) throw new Error('the Gatehouse child did not name its folder');
    // BENCH_FTP_PIDFILE=<file>: the Gatehouse child's pid is written there (perf / strace -p), then a 2 s pause
    if (process.env.BENCH_FTP_PIDFILE) {
      fs.writeFileSync(process.env.BENCH_FTP_PIDFILE, String(g.pid));
      await new Promise((r) => setTimeout(r, 2000));
    }
    servers.push(g);
    if (process.env.BENCH_FTP_BASE) servers.push(await gatehouse('base', path.join(process.env.BENCH_FTP_BASE, 'bench', 'ftp.ts')));
    if (targetFile) servers.push(anchor(targetFile));
    // BENCH_FTP_FLOOR=0: without the two minimal sinks (bench/ftp-floor.py) beside the servers
    if (process.env.BENCH_FTP_FLOOR !== '0') {
      servers.push(await floor('durable', path.join(g.dir, 'floor')));
      servers.push(await floor('discard', path.join(g.dir, 'floor-discard')));
    }
    console.log(`# FTP bulk: ${SIZE} MiB, ${ROUNDS} rounds, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, Node ${process.version}, load ${load()}`);
    console.log(`# servers: ${servers.map((s) => s.name).join(', ')}; client: python3 ftplib, STOR ${SENDALL ? `${Number(process.env.BENCH_FTP_BLOCK_KIB ?? 1024)} KiB sendall` : 'plain: sendfile from a cached file'}, RETR 1 MiB recv_into (bench/ftp-client.py)`);
    const transfers = [
      [false, 'stor'],
      [false, 'retr'],
      [true, 'stor'],
      [true, 'retr'],
    ] as const;
    const wanted = (s: Server, tls: boolean, op: 'stor' | 'retr') =>
      (only.length === 0 || only.includes(`${tls ? 'FTPS' : 'FTP'} ${op.toUpperCase()}`)) && !(s.kind === 'floor' && (tls || op !== 'stor'));
    // Untimed first: one dd (the run's first burst of writes is slow for whoever makes it: dd 340–400 MiB/s, then
    // 1,300–1,900) and one pass of every transfer on every server (a fresh Node process compiles its hot paths
    // during its first transfers: ~220 ms of CPU for the first 200 MiB STOR against ~130 for the next ones).
    // BENCH_FTP_WARMUP=0: none; the warm-up figures are printed apart.
    const warm: string[] = [];
    if (process.env.BENCH_FTP_WARMUP !== '0') {
      if (ddOn) {
        settle();
        warm.push(`dd ${dd(g.dir).toFixed(0)}`);
      }
      for (const [tls, op] of transfers)
        for (const s of servers)
          if (wanted(s, tls, op)) {
            settle();
            warm.push(`${s.name} ${tls ? 'FTPS' : 'FTP'} ${op.toUpperCase()} ${transfer(s, tls, op).toFixed(0)}`);
          }
      console.log(`# warm-up pass (MiB/s, not in the figures): ${warm.join(', ')}`);
    }
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? servers : [...servers].reverse();
      if (ddOn) {
        settle();
        const c0 = childrenCpu();
        add('dd conv=fdatasync', dd(g.dir));
        (cpuPer.get('dd conv=fdatasync') ?? cpuPer.set('dd conv=fdatasync', []).get('dd conv=fdatasync')!).push(childrenCpu() - c0);
      }
      for (const [tls, op] of transfers) {
        for (const s of order) {
          if (!wanted(s, tls, op)) continue;
          const before = s.cpu ? await s.cpu() : 0;
          settle();
          const v = transfer(s, tls, op);
          const label = `${tls ? 'FTPS' : 'FTP '} ${op.toUpperCase()}`;
          add(`${s.name} ${label}`, v);
          (clientCpu.get(`${s.name} ${label}`) ?? clientCpu.set(`${s.name} ${label}`, []).get(`${s.name} ${label}`)!).push(lastClientCpu);
          if (s.cpu) (cpuPer.get(`${s.name} ${label}`) ?? cpuPer.set(`${s.name} ${label}`, []).get(`${s.name} ${label}`)!).push((await s.cpu()) - before);
        }
      }
      console.error(`round ${r + 1} done, load ${load()}`);
    }
  } finally {
    for (const s of servers) await s.stop();
    if (targetFile) fs.rmSync(path.join(anchor(targetFile).dir, 'big.bin'), { force: true });
    fs.rmSync(srcDir, { recursive: true, force: true });
  }
  console.log(`# MiB/s per round (load at the end ${load()}); CPU ms per transfer: server (dd: dd itself) in [ ], client in { }`);
  const w = Math.max(...[...figures.keys()].map((k) => k.length));
  for (const [k, v] of figures) {
    const cpu = cpuPer.get(k);
    const ccpu = clientCpu.get(k);
    console.log(`${k.padEnd(w)}  ${fmt(v)}${cpu ? `  [${fmt(cpu)}]` : ''}${ccpu ? `  {${fmt(ccpu)}}` : ''}`);
  }
  const ddv = figures.get('dd conv=fdatasync') ?? [];
  const ratio = (a: string, b: string) => {
    const x = figures.get(a);
    const y = b === 'dd' ? ddv : figures.get(b);
    return x && y ? x.map((v, i) => v / y[i]!) : [];
  };
  console.log('# ratios per round (range)');
  const a = servers.find((x) => x.kind === 'anchor');
  if (a) console.log(`${a.name} (unsynced) FTP STOR ÷ dd: ${range(ratio(`${a.name} FTP  STOR`, 'dd'))}`);
  for (const f of servers.filter((x) => x.kind === 'floor')) console.log(`${f.name} FTP STOR ÷ dd: ${range(ratio(`${f.name} FTP  STOR`, 'dd'))}`);
  if (servers.some((x) => x.name === 'floor-durable')) console.log(`Gatehouse durable FTP STOR ÷ floor-durable: ${range(ratio('Gatehouse FTP  STOR', 'floor-durable FTP  STOR'))}`);
  for (const s of servers.filter((x) => x.kind === 'gatehouse')) {
    console.log(`${s.name} durable FTP STOR ÷ dd: ${range(ratio(`${s.name} FTP  STOR`, 'dd'))}`);
    if (!a) continue;
    for (const label of ['FTP  STOR', 'FTP  RETR', 'FTPS STOR', 'FTPS RETR']) {
      console.log(`${s.name} ${label} ÷ ${a.name}: ${range(ratio(`${s.name} ${label}`, `${a.name} ${label}`))}`);
    }
  }
}
