/*
 * FTP benchmark (npm run bench:ftp): a real Gatehouse on 127.0.0.1, in a child process of its own, driven
 * by basic-ftp from this process. Prints (a) RETR/STOR of a 200 MiB file with and without TLS, (b) 1,000 ×
 * 4 KiB uploads and downloads with 1 and 8 clients, (c) connect+login latency, beside the plain loopback TCP
 * throughput as the ceiling. Figures only, no assertions. Env: BENCH_FTP_MIB (default 200), BENCH_FTP_FILES
 * (default 1000); BENCH_FTP_TARGET=<anchor target.json> drives that server (e.g. the vsftpd anchor: FTPS on
 * `port`, plain on `port_plain`, its first user) with the same client code instead of Gatehouse;
 * BENCH_FTP_SERVER_ARGS adds node flags to the Gatehouse server child (profiling: "--cpu-prof --cpu-prof-dir=D").
 * `npm run bench:ftp -- --bulk`: big transfers only, against vsftpd and dd side by side, in rounds (bench/ftp-bulk.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Client, enterPassiveModeIPv6 } from 'basic-ftp';
import { PASSWORD, startGatehouse } from '../test/helpers/gatehouse.js';

const MIB = 1024 * 1024;
const BIG_MIB = Number(process.env.BENCH_FTP_MIB ?? 200);
const FILES = Number(process.env.BENCH_FTP_FILES ?? 1000);

const chunk = crypto.randomBytes(MIB);
const bigSource = () => Readable.from((function* () { for (let i = 0; i < BIG_MIB; i++) yield chunk; })());
const sink = () => new Writable({ write: (_c, _e, cb) => cb(), highWaterMark: 4 * MIB });

/**
 * Plain loopback TCP ceiling, measured the way the FTP RETR figures are: a sender in another process (a
 * child, as the Gatehouse server is) writes BIG_MIB in 256 KiB writes (Gatehouse's RETR read size) and this
 * process reads it into the same sink as a download. Best of `rounds` (shared, noisy CPUs).
 */
async function tcpCeiling(rounds: number): Promise<number> {
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, BENCH_FTP_ROLE: 'ceiling' } });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`ceiling sender exited with ${code}`)));
  });
  let best = 0;
  try {
    for (let i = 0; i < rounds; i++) {
      const secs = await timed(
        () =>
          new Promise<void>((resolve, reject) => {
            const s = net.connect(port, '127.0.0.1');
            s.on('error', reject);
            s.pipe(sink()).on('finish', () => resolve());
          }),
      );
      best = Math.max(best, BIG_MIB / secs);
    }
  } finally {
    // SIGKILL: the sender is ours and holds nothing; a SIGTERM was once left pending under the loader and the bench hung
    child.kill('SIGKILL');
  }
  return best;
}

async function ceilingSender(): Promise<void> {
  const block = crypto.randomBytes(256 * 1024);
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    let i = 0;
    const pump = () => {
      while (i < BIG_MIB * 4) {
        i++;
        if (!s.write(block)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  process.send!({ port: (server.address() as net.AddressInfo).port });
}

interface Target {
  readonly name: string;
  readonly host: string;
  readonly tlsPort: number;
  readonly plainPort: number;
  readonly user: string;
  readonly password: string;
  /** give each of several clients its own source address (vsftpd's max_per_ip is 5) */
  readonly spread: boolean;
  stop(): Promise<void>;
}

// Source address for the sockets a client opens (control and data), set per client with run().
const source = new AsyncLocalStorage<string>();
const proto = net.Socket.prototype as unknown as { connect: (this: net.Socket, ...args: unknown[]) => net.Socket };
const connect = proto.connect;
proto.connect = function (this: net.Socket, ...args: unknown[]) {
  const local = source.getStore();
  if (local && typeof args[0] === 'object' && args[0] !== null) args[0] = { ...args[0], localAddress: local };
  return connect.apply(this, args);
};

async function login(target: Target, secure: boolean, local?: string): Promise<Client> {
  const c = new Client(60_000);
  const port = secure ? target.tlsPort : target.plainPort;
  const access = () => c.access({ host: target.host, port, user: target.user, password: target.password, secure, secureOptions: { rejectUnauthorized: false } });
  if (local === undefined) await access();
  else {
    await source.run(local, access);
    // EPSV, as basic-ftp picks by default; the data socket is opened in this (source-address) context
    c.prepareTransfer = (ftp) => source.run(local, () => enterPassiveModeIPv6(ftp));
  }
  return c;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function smallFiles(target: Target, clients: number, secure: boolean): Promise<{ up: number; down: number }> {
  const cs = await Promise.all(Array.from({ length: clients }, (_, i) => login(target, secure, target.spread && clients > 1 ? `127.0.0.${10 + i}` : undefined)));
  const body = crypto.randomBytes(4096);
  const per = Math.ceil(FILES / clients);
  await Promise.all(cs.map((c, i) => c.ensureDir(`/small-${clients}-${i}`)));
  const up = await timed(() => Promise.all(cs.map(async (c, i) => { for (let k = 0; k < per; k++) await c.uploadFrom(Readable.from([body]), `/small-${clients}-${i}/f${k}`); })));
  const down = await timed(() => Promise.all(cs.map(async (c, i) => { for (let k = 0; k < per; k++) await c.downloadTo(sink(), `/small-${clients}-${i}/f${k}`); })));
  await Promise.all(cs.map((c, i) => c.removeDir(`/small-${clients}-${i}`)));
  for (const c of cs) c.close();
  return { up, down };
}

/** Gatehouse in a child process (as in production: the server does not share an event loop with the clients). */
async function gatehouseTarget(): Promise<Target> {
  // BENCH_FTP_SERVER_ARGS: extra node flags for the server child only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p")
  const extra = (process.env.BENCH_FTP_SERVER_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, BENCH_FTP_ROLE: 'server' }, execArgv: [...process.execArgv, ...extra] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  return {
    name: 'Gatehouse',
    host: '127.0.0.1',
    tlsPort: port,
    plainPort: port,
    user: 'bench',
    password: PASSWORD,
    spread: false,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.send('stop');
      }),
  };
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
    // 'cpu' (bulk mode): this process's CPU so far; anything else stops it
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
    else void t.stop().finally(() => process.exit(0));
  });
  process.send!({ port: t.port('ftp'), dir: t.dir });
}

function anchorTarget(file: string): Target {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { name: string; host: string; port: number; port_plain: number; users: Record<string, string> };
  const [user, password] = Object.entries(j.users)[0]!;
  return { name: j.name, host: j.host, tlsPort: j.port, plainPort: j.port_plain, user, password, spread: true, stop: () => Promise.resolve() };
}

async function main(): Promise<void> {
  const target = process.env.BENCH_FTP_TARGET ? anchorTarget(process.env.BENCH_FTP_TARGET) : await gatehouseTarget();
  const rows: [string, string][] = [];
  try {
    console.log(`# FTP benchmark of ${target.name} on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    const ceiling = await tcpCeiling(5);
    rows.push(['plain loopback TCP (ceiling)', `${ceiling.toFixed(0)} MiB/s`]);
    for (const secure of [false, true]) {
      const label = secure ? 'FTPS' : 'FTP ';
      const c = await login(target, secure);
      const stor = await timed(() => c.uploadFrom(bigSource(), 'big.bin'));
      rows.push([`${label} STOR ${BIG_MIB} MiB`, `${(BIG_MIB / stor).toFixed(0)} MiB/s (${((BIG_MIB / stor / ceiling) * 100).toFixed(0)}% of ceiling)`]);
      const retr = await timed(() => c.downloadTo(sink(), 'big.bin'));
      rows.push([`${label} RETR ${BIG_MIB} MiB`, `${(BIG_MIB / retr).toFixed(0)} MiB/s (${((BIG_MIB / retr / ceiling) * 100).toFixed(0)}% of ceiling)`]);
      await c.remove('big.bin');
      c.close();
    }
    for (const secure of [false, true]) {
      for (const n of [1, 8]) {
        const r = await smallFiles(target, n, secure);
        rows.push([`${secure ? 'FTPS' : 'FTP '} ${FILES} x 4 KiB, ${n} client(s)`, `up ${r.up.toFixed(2)} s (${(FILES / r.up).toFixed(0)}/s), down ${r.down.toFixed(2)} s (${(FILES / r.down).toFixed(0)}/s)`]);
      }
    }
    for (const secure of [false, true]) {
      const samples: number[] = [];
      for (let i = 0; i < 30; i++) {
        const s = await timed(async () => (await login(target, secure)).close());
        samples.push(s * 1000);
      }
      samples.sort((a, b) => a - b);
      rows.push([`${secure ? 'FTPS' : 'FTP '} connect+login`, `p50 ${samples[14]!.toFixed(1)} ms, p95 ${samples[28]!.toFixed(1)} ms`]);
    }
  } finally {
    await target.stop();
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}

const role = process.env.BENCH_FTP_ROLE;
// `npm run bench:ftp -- --bulk`: big transfers against vsftpd and dd side by side (bench/ftp-bulk.ts)
const bulk = () => import('./ftp-bulk.js').then((m) => m.main());
(role === 'server' ? serve() : role === 'ceiling' ? ceilingSender() : process.argv.includes('--bulk') ? bulk() : main()).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
