/*
 * What a shared counter costs (`npm run bench:state-store`): one limiter consume() through state_store on a
 * private redis-server (started here on a free loopback port, stopped at the end) against the in-process
 * limiter, N sequential calls each after a warm-up; prints mean, median and p99 per call. Then the login
 * throttle's accounting of one failed login (the store calls policy/index.ts makes: read the four counters,
 * the familiar address, count name/address/pair in advance, count the miss) through RedisThrottleStore (behind
 * SharedThrottleStore, as an instance runs it) against the in-process MemoryThrottleStore. Never asserts.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore } from '../src/net/state-store.js';
import { throttleStoreFor } from '../src/net/redis-throttle-store.js';
import { DEFAULT_STORE_LIMITS, MemoryThrottleStore, type ThrottleStore } from '../src/policy/throttle-store.js';
import { throttleKeys } from '../src/policy/throttle.js';
import { freePort } from './fuzz/proc.js';

const N = Number(process.argv[2] ?? 5000);
const quiet = { warn: () => undefined, info: () => undefined };

async function timeCalls(store: StateStore): Promise<number[]> {
  const lim = store.limiter('bench', 1_000_000_000, 60);
  for (let i = 0; i < 500; i++) await lim.consume(`k${i % 50}`);
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await lim.consume(`user:u${i % 200}`);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

/** One failed login's store calls, for attempt i (200 names from 50 addresses, as an attack spreads them). */
async function failedLogin(store: ThrottleStore, i: number): Promise<void> {
  const k = throttleKeys(`u${i % 200}`, `10.0.${(i >> 8) & 255}.${i % 50}`);
  const now = Date.now();
  await store.read([k.pair, k.user, k.addr, k.misses], now);
  await store.familiarSeen(`u${i % 200}`, k.addr);
  await store.hit([k.pair, k.user, k.addr], now, 900_000);
  await store.hit([k.misses], now, 900_000);
}

async function timeLogins(store: ThrottleStore): Promise<number[]> {
  for (let i = 0; i < 500; i++) await failedLogin(store, i);
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await failedLogin(store, i);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

const fmt = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return `mean ${mean.toFixed(3)} ms, median ${xs[xs.length >> 1]!.toFixed(3)} ms, p99 ${xs[Math.floor(xs.length * 0.99)]!.toFixed(3)} ms`;
};

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-redis-'));
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  try {
    const until = Date.now() + 10_000;
    while (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG') {
      if (Date.now() > until) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const shared = new StateStore({ url: `redis://127.0.0.1:${port}/0`, on_error: 'refuse' }, quiet);
    while (!shared.up) await new Promise((r) => setTimeout(r, 20));
    const local = new StateStore({ url: null, on_error: 'local' }, quiet);
    const l = await timeCalls(local);
    const r = await timeCalls(shared);
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    process.stdout.write(
      [
        `state_store limiter, one consume() per call, ${N} sequential calls (Node ${process.version}, ${os.cpus().length} cores, load average ${load})`,
        `  in-process (no url):          ${fmt(l)}`,
        `  Redis on loopback (redis://): ${fmt(r)}`,
        `  added by the shared store:    ${((r.reduce((a, b) => a + b, 0) - l.reduce((a, b) => a + b, 0)) / N).toFixed(3)} ms per call (mean)`,
      ].join('\n') + '\n',
    );
    const mem = new MemoryThrottleStore(DEFAULT_STORE_LIMITS);
    const viaRedis = throttleStoreFor(shared, new MemoryThrottleStore(DEFAULT_STORE_LIMITS), { maxFamiliarPerUser: 20, familiarTtlMs: 30 * 86_400_000 });
    const tl = await timeLogins(mem);
    const tr = await timeLogins(viaRedis);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    process.stdout.write(
      [
        `login throttle, the store calls of one failed login (read 4 counters, familiar, hit 3, hit miss), ${N} sequential logins`,
        `  in-process (MemoryThrottleStore): ${fmt(tl)}`,
        `  Redis on loopback (RedisThrottleStore): ${fmt(tr)}`,
        `  added by the shared store:    ${((sum(tr) - sum(tl)) / N).toFixed(3)} ms per failed login (mean), ${(tr[tr.length >> 1]! - tl[tl.length >> 1]!).toFixed(3)} ms (median)`,
      ].join('\n') + '\n',
    );
    await shared.close();
  } finally {
    redis.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:state-store failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
