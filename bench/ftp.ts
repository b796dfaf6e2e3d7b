/*
 * FTP benchmark (npm run bench:ftp): a real Gatehouse on 127.0.0.1 driven by basic-ftp.
 * Prints (a) RETR/STOR of a 200 MiB file with and without TLS, (b) 1,000 × 4 KiB uploads and downloads with
 * 1 and 8 clients, (c) connect+login latency, beside the plain loopback TCP throughput as the ceiling.
 * Figures only, no assertions. Env: BENCH_FTP_MIB (default 200), BENCH_FTP_FILES (default 1000).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { Client } from 'basic-ftp';
import { PASSWORD, startGatehouse } from '../test/helpers/gatehouse.js';

const MIB = 1024 * 1024;
const BIG_MIB = Number(process.env.BENCH_FTP_MIB ?? 200);
const FILES = Number(process.env.BENCH_FTP_FILES ?? 1000);

const chunk = crypto.randomBytes(MIB);
const bigSource = () => Readable.from((function* () { for (let i = 0; i < BIG_MIB; i++) yield chunk; })());
const sink = () => new Writable({ write: (_c, _e, cb) => cb(), highWaterMark: 4 * MIB });

async function tcpCeiling(): Promise<number> {
  const server = net.createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      let i = 0;
      const pump = () => {
        while (i < BIG_MIB) {
          i++;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  server.close();
  return BIG_MIB / secs;
}

async function login(port: number, secure: boolean): Promise<Client> {
  const c = new Client(60_000);
  await c.access({ host: '127.0.0.1', port, user: 'bench', password: PASSWORD, secure, secureOptions: { rejectUnauthorized: false } });
  return c;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function smallFiles(port: number, clients: number, secure: boolean): Promise<{ up: number; down: number }> {
  const cs = await Promise.all(Array.from({ length: clients }, () => login(port, secure)));
  const body = crypto.randomBytes(4096);
  const per = Math.ceil(FILES / clients);
  await Promise.all(cs.map((c, i) => c.ensureDir(`/small-${clients}-${i}`)));
  const up = await timed(() => Promise.all(cs.map(async (c, i) => { for (let k = 0; k < per; k++) await c.uploadFrom(Readable.from([body]), `/small-${clients}-${i}/f${k}`); })));
  const down = await timed(() => Promise.all(cs.map(async (c, i) => { for (let k = 0; k < per; k++) await c.downloadTo(sink(), `/small-${clients}-${i}/f${k}`); })));
  for (const c of cs) c.close();
  return { up, down };
}

async function main(): Promise<void> {
  const t = await startGatehouse(
    {
      smtp: { enabled: false },
      nntp: { enabled: false },
      log: { stdout: false, level: 'warn' },
      ftp: { tls_required: false, quota_bytes: 8 * 1024 * MIB, limits: { connections_per_ip: 20, connections: 50 } },
    },
    [{ name: 'bench', password: PASSWORD }],
  );
  const port = t.port('ftp');
  const rows: [string, string][] = [];
  try {
    console.log(`# FTP benchmark on ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, Node ${process.version}`);
    let ceiling = 0;
    for (let i = 0; i < 3; i++) ceiling = Math.max(ceiling, await tcpCeiling()); // best of 3 (warm-up, noisy shared CPUs)
    rows.push(['plain loopback TCP (ceiling)', `${ceiling.toFixed(0)} MiB/s`]);
    for (const secure of [false, true]) {
      const label = secure ? 'FTPS' : 'FTP ';
      const c = await login(port, secure);
      const stor = await timed(() => c.uploadFrom(bigSource(), 'big.bin'));
      rows.push([`${label} STOR ${BIG_MIB} MiB`, `${(BIG_MIB / stor).toFixed(0)} MiB/s (${((BIG_MIB / stor / ceiling) * 100).toFixed(0)}% of ceiling)`]);
      const retr = await timed(() => c.downloadTo(sink(), 'big.bin'));
      rows.push([`${label} RETR ${BIG_MIB} MiB`, `${(BIG_MIB / retr).toFixed(0)} MiB/s (${((BIG_MIB / retr / ceiling) * 100).toFixed(0)}% of ceiling)`]);
      await c.remove('big.bin');
      c.close();
    }
    for (const secure of [false, true]) {
      for (const n of [1, 8]) {
        const r = await smallFiles(port, n, secure);
        rows.push([`${secure ? 'FTPS' : 'FTP '} ${FILES} x 4 KiB, ${n} client(s)`, `up ${r.up.toFixed(2)} s (${(FILES / r.up).toFixed(0)}/s), down ${r.down.toFixed(2)} s (${(FILES / r.down).toFixed(0)}/s)`]);
      }
    }
    for (const secure of [false, true]) {
      const samples: number[] = [];
      for (let i = 0; i < 30; i++) {
        const s = await timed(async () => (await login(port, secure)).close());
        samples.push(s * 1000);
      }
      samples.sort((a, b) => a - b);
      rows.push([`${secure ? 'FTPS' : 'FTP '} connect+login (bcrypt cost 10)`, `p50 ${samples[14]!.toFixed(1)} ms, p95 ${samples[28]!.toFixed(1)} ms`]);
    }
  } finally {
    await t.stop();
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-bench-ftp-'));
main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
