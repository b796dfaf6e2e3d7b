/*
 * state_store on a real redis-server (Debian `redis-server`, started here on a free loopback port with a
 * throwaway config, stopped in afterAll): nntp.limits.posts_per_minute counted across two instances; Redis
 * stopped mid-run: on_error local keeps posting with per-instance counters, on_error refuse answers 403 (and
 * 481 to a new login: the login throttle's state is shared too) and logs the refusal, both report the store down (status, metric); nothing crashes; Redis back: both up again.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/ops/metrics.js';
import { Conn } from '../helpers/line-conn.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { freePort } from '../smtp/listener-client.js';

const enabled = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
if (!enabled) console.warn('SKIP state_store tests: redis-server not installed (apt-get install redis-server)');

let redis: ChildProcess | null = null;
let redisPort = 0;
let redisDir = '';
let a: TestGatehouse;
let b: TestGatehouse;
let c: TestGatehouse;

async function startRedis(): Promise<void> {
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir, '--daemonize', 'no'], { stdio: 'ignore' });
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    if (spawnSync('redis-cli', ['-p', String(redisPort), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('redis-server did not start');
}

async function stopRedis(): Promise<void> {
  const r = redis;
  redis = null;
  if (!r || r.exitCode !== null) return;
  const gone = new Promise((res) => r.once('exit', res));
  r.kill('SIGTERM');
  await Promise.race([gone, new Promise((res) => setTimeout(res, 5000))]);
  if (r.exitCode === null) r.kill('SIGKILL');
}

const waitFor = async (pred: () => boolean, ms = 15_000) => {
  const until = Date.now() + ms;
  while (!pred() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return pred();
};

let seq = 0;
/** Log in on `t`'s NNTP port and POST one article; the POST reply and, after 340, the final reply. */
async function post(t: TestGatehouse): Promise<string> {
  const conn = await Conn.open('127.0.0.1', t.port('nntp'), '127.0.0.1');
  try {
    await conn.reply();
    expect(await conn.cmd('AUTHINFO USER alice')).toMatch(/^381 /);
    expect(await conn.cmd(`AUTHINFO PASS ${PASSWORD}`)).toMatch(/^281 /);
    const r = await conn.cmd('POST');
    if (!r.startsWith('340')) return r;
    conn.socket.write(`From: alice@gatehouse.test\r\nNewsgroups: office.general\r\nSubject: shared count ${++seq}\r\n\r\nbody ${seq}\r\n.\r\n`);
    return await conn.reply();
  } finally {
    conn.close();
  }
}

describe.skipIf(!enabled)('state_store on Redis: nntp.limits.posts_per_minute across instances', () => {
  beforeAll(async () => {
    redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-redis-'));
    redisPort = await freePort();
    await startRedis();
    const cfg = (onError: 'local' | 'refuse') => ({
      // one instance serves metrics (they feed from a process-wide registry): the refusing one
      ...(onError === 'refuse' ? { metrics: { listen: '127.0.0.1:0' } } : {}),
      state_store: { url: `redis://127.0.0.1:${redisPort}/0`, on_error: onError },
      nntp: { auth_requires_tls: false, groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }], limits: { posts_per_minute: 3 } },
      smtp: { enabled: false },
      ftp: { enabled: false },
    });
    const users = [{ name: 'alice', password: PASSWORD }];
    a = await startGatehouse(cfg('local'), users);
    b = await startGatehouse(cfg('local'), users);
    c = await startGatehouse(cfg('refuse'), users);
    for (const t of [a, b, c]) expect(await waitFor(() => t.gh.runtime.store?.up === true)).toBe(true);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await c?.stop();
    await stopRedis();
    if (redisDir) fs.rmSync(redisDir, { recursive: true, force: true });
  }, 30_000);

  it('posts on one instance count on the other', async () => {
    expect(await post(a)).toMatch(/^240 /);
    expect(await post(b)).toMatch(/^240 /);
    expect(await post(a)).toMatch(/^240 /);
    expect(await post(b)).toMatch(/^440 .*rate limit/);
    expect(await post(c)).toMatch(/^440 .*rate limit/);
    expect(b.decisions.find((r) => r.rule === 'limits.posts_per_minute')).toMatchObject({ service: 'nntp', verdict: 'deny', user: 'alice' });
  }, 30_000);

  it('Redis stopped mid-run: local counts per instance, refuse answers 403; both report the store down; back up afterwards', async () => {
    // a session on the refusing instance logged in while the store was up (its logins need the store too)
    const early = await Conn.open('127.0.0.1', c.port('nntp'), '127.0.0.1');
    await early.reply();
    expect(await early.cmd('AUTHINFO USER alice')).toMatch(/^381 /);
    expect(await early.cmd(`AUTHINFO PASS ${PASSWORD}`)).toMatch(/^281 /);
    await stopRedis();
    for (const t of [a, b, c]) expect(await waitFor(() => t.gh.runtime.store?.up === false)).toBe(true);
    // local: the in-process twin counts from zero on this instance alone
    expect(await post(a)).toMatch(/^240 /);
    // refuse: fail closed, with its own rule in the log: POST in the session already logged in, and a new login
    try {
      expect(await early.cmd('POST')).toMatch(/^403 /);
    } finally {
      early.close();
    }
    expect(c.decisions.find((r) => r.rule === 'state_store.unavailable')).toMatchObject({ verdict: 'deny', phase: 'post' });
    expect(await post(c).catch((e: unknown) => String(e))).toMatch(/481/);
    expect(c.decisions.find((r) => r.rule === 'state_store.unavailable' && r.phase === 'authenticate')).toMatchObject({ verdict: 'deny' });
    expect(c.gh.runtime.store?.status()).toMatchObject({ configured: true, up: false, onError: 'refuse' });
    expect(c.gh.runtime.store?.status().downSince).toMatch(/^\d{4}-/);
    const text = await metrics.registry.getSingleMetricAsString('gatehouse_state_store_up');
    expect(text).toMatch(/gatehouse_state_store_up\{on_error="refuse"\} 0/);
    const log = fs.readFileSync(path.join(a.dir, 'var', 'log', 'gatehouse.log'), 'utf8');
    expect(log).toContain('"event":"state_store_down"');
    await startRedis();
    for (const t of [a, b, c]) expect(await waitFor(() => t.gh.runtime.store?.up === true)).toBe(true);
    expect(await post(c)).toMatch(/^(240|440) /);
    expect(await metrics.registry.getSingleMetricAsString('gatehouse_state_store_up')).toMatch(/gatehouse_state_store_up\{on_error="refuse"\} 1/);
  }, 60_000);
});
