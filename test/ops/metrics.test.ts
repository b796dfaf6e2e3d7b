/*
 * Metrics over real HTTP: decisions, connections, auth failures and lockouts counted from the decision
 * log; queue depth/age from the spool; listener counters via metrics.count; default process metrics.
 * Listeners are disabled so only the ops listener runs; decisions come from the real policy core.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANONYMOUS, NOBODY } from '../../src/policy/types.js';
import { Metrics, isThrottle, metrics } from '../../src/ops/metrics.js';
import { Spool, newQueueId, type QueueEntry } from '../../src/smtp/spool.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

const run = promisify(execFile);
const OFF = { smtp: { enabled: false }, ftp: { enabled: false }, nntp: { enabled: false } };

let t: TestGatehouse;
let base: string;

async function scrape(): Promise<string> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-D', '-', `${base}/metrics`], { timeout: 15_000 });
  expect(stdout).toMatch(/^HTTP\/1\.1 200/);
  expect(stdout).toMatch(/content-type: text\/plain; version=0\.0\.4/i);
  return stdout;
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

beforeAll(async () => {
  t = await startGatehouse({ ...OFF, metrics: { listen: '127.0.0.1:0' }, access: { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.66/32'] }, auth: { bcrypt_cost: 10, lockout: { failures: 3 }, delay: { base_ms: 5, max_ms: 20 } } }, [{ name: 'alice', password: PASSWORD }]);
  const a = t.gh.ops!.address;
  expect(a.host).toBe('127.0.0.1');
  base = `http://127.0.0.1:${a.port}`;
});

afterAll(async () => {
  await t?.stop();
});

describe('metrics listener', () => {
  it('counts decisions, connections, auth failures and lockouts from the decision log', async () => {
    const before = await scrape();
    const p = t.gh.runtime.policy;
    const ctx = (ip: string) => ({ service: 'smtp' as const, ip, identity: NOBODY, session: 'test' });
    expect(p.connect(ctx('127.0.0.66')).allow).toBe(false);
    expect(p.connect(ctx('127.0.0.66')).allow).toBe(false);
    expect(p.connect(ctx('127.0.0.20')).allow).toBe(true);
    for (let i = 0; i < 3; i++) {
      const r = await p.authenticate({ service: 'ftp', ip: '127.0.0.21', identity: ANONYMOUS, session: 'test' }, 'alice', 'wrong-password-123', true);
      expect(r.decision.allow).toBe(false);
    }
    const after = await scrape();
    const d = (s: string) => value(after, s) - value(before, s);
    expect(d('gatehouse_connections_total{service="smtp",verdict="deny"}')).toBe(2);
    expect(d('gatehouse_connections_total{service="smtp",verdict="allow"}')).toBe(1);
    const denyRule = t.decisions.find((r) => r.ip === '127.0.0.66')!.rule;
    expect(d(`gatehouse_decisions_total{service="smtp",phase="connect",verdict="deny",rule="${denyRule}"}`)).toBe(2);
    const logged = t.decisions.filter((r) => r.service === 'ftp');
    expect(d('gatehouse_auth_failures_total{service="ftp"}')).toBe(logged.filter((r) => r.rule === 'auth.bad_credentials').length);
    expect(d('gatehouse_auth_failures_total{service="ftp"}')).toBeGreaterThanOrEqual(2);
    const lockouts = logged.filter((r) => r.phase === 'lockout');
    expect(lockouts.length).toBeGreaterThanOrEqual(1);
    for (const kind of ['pair', 'user', 'address']) {
      expect(d(`gatehouse_lockouts_total{service="ftp",kind="${kind}"}`)).toBe(lockouts.filter((r) => r.rule === `auth.throttle_${kind}`).length);
    }
    expect(value(after, 'gatehouse_throttles{kind="user"}') + value(after, 'gatehouse_throttles{kind="pair"}')).toBeGreaterThanOrEqual(1);
    // a throttled attempt is counted per rule
    const r = await p.authenticate({ service: 'ftp', ip: '127.0.0.21', identity: ANONYMOUS, session: 'test' }, 'alice', 'wrong-password-123', true);
    expect(r.temporary).toBe(true);
    const third = await scrape();
    expect(value(third, `gatehouse_auth_throttled_total{service="ftp",rule="${r.decision.rule}"}`) - value(after, `gatehouse_auth_throttled_total{service="ftp",rule="${r.decision.rule}"}`)).toBe(1);
  });

  it('shows queue depth and the age of the oldest entry (read from the spool)', async () => {
    const spool = new Spool(t.gh.config.paths.spoolDir);
    spool.ensure();
    const created = Date.now() - 3_600_000;
    const entry = (id: string): QueueEntry => ({
      version: 1,
      id,
      createdAt: created,
      sender: 'a@gatehouse.test',
      recipients: [{ address: 'b@example.net', local: 'b', domain: 'example.net', state: 'pending', attempts: 0, lastError: null, notified: false, status: null }],
      clientIp: '127.0.0.1',
      helo: 'test',
      user: null,
      tls: false,
      session: 'test',
      size: 5,
      attempts: 0,
      nextAttemptAt: Date.now() + 86_400_000,
      lastAttemptAt: null,
      lastError: null,
      bounces: 0,
    });
    await spool.create(entry(newQueueId(created)), Buffer.from('hello'));
    await spool.create(entry(newQueueId(Date.now())), Buffer.from('hello'));
    fs.writeFileSync(path.join(spool.msgDir, 'NOT-AN-ID'), '{}');
    await new Promise((r) => setTimeout(r, 1100)); // the queue summary is cached for 1 s
    const text = await scrape();
    expect(value(text, 'gatehouse_queue_depth')).toBe(2);
    const age = value(text, 'gatehouse_queue_oldest_age_seconds');
    expect(age).toBeGreaterThanOrEqual(3599);
    expect(age).toBeLessThan(3700);
    const state = (await (await fetch(`${base}/api/state`)).json()) as { queue: { depth: number; oldest: { recipients: number; pending: number; ageSeconds: number }[] } };
    expect(state.queue.depth).toBe(2);
    expect(state.queue.oldest).toHaveLength(2);
    expect(state.queue.oldest[0]).toMatchObject({ recipients: 1, pending: 1 });
    expect(state.queue.oldest[0]!.ageSeconds).toBeGreaterThanOrEqual(3599);
  });

  it('exposes listener counters (FTP bytes, NNTP posts, delivery attempts) and default process metrics', async () => {
    metrics.count('ftp_bytes', { direction: 'upload' }, 1234);
    metrics.count('nntp_posts', { outcome: 'accepted' });
    metrics.count('delivery_attempts', { outcome: 'deferred' }, 2);
    metrics.count('ftp_bytes', { direction: 'upload' }, -5); // ignored
    const text = await scrape();
    expect(value(text, 'gatehouse_ftp_bytes_total{direction="upload"}')).toBe(1234);
    expect(value(text, 'gatehouse_nntp_posts_total{outcome="accepted"}')).toBe(1);
    expect(value(text, 'gatehouse_delivery_attempts_total{outcome="deferred"}')).toBe(2);
    expect(text).toMatch(/^# TYPE gatehouse_delivery_attempts_total counter$/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
  });
});

describe('Metrics label bounds', () => {
  it('maps hostile label values to "other" and caps the number of series', async () => {
    const m = new Metrics();
    const rec = (rule: string) => ({ time: '', service: 'smtp' as const, phase: 'rcpt', verdict: 'deny' as const, rule, reason: '', ip: '127.0.0.1', user: '-', session: 's' });
    m.observe(rec('x"}\nevil 1'));
    for (let i = 0; i < 600; i++) m.observe(rec(`rule.n${i}`));
    const text = await m.text();
    expect(text).not.toContain('evil');
    const series = text.split('\n').filter((l) => l.startsWith('gatehouse_decisions_total{'));
    expect(series.length).toBeLessThanOrEqual(501);
    expect(text).toContain('rule="other"');
  });
});

describe('Metrics trends (the status page charts)', () => {
  const rec = (service: 'smtp' | 'ftp' | 'nntp', phase: string, verdict: 'allow' | 'deny', rule: string) => ({ time: '', service, phase, verdict, rule, reason: '', ip: '127.0.0.1', user: '-', session: 's' });

  it.each([
    ['a lockout refusal', rec('smtp', 'authenticate', 'deny', 'auth.lockout_ip'), true],
    ['a lockout starting', rec('ftp', 'lockout', 'deny', 'auth.lockout_user'), true],
    ['a connection cap', rec('nntp', 'connect', 'deny', 'limits.connections_per_ip'), true],
    ['a post rate', rec('nntp', 'post', 'deny', 'limits.posts_per_minute'), true],
    ['a rule named as a throttle', rec('smtp', 'connect', 'deny', 'throttle.address'), true],
    ['a relay denial', rec('smtp', 'rcpt', 'deny', 'relay.default'), false],
    ['a wrong password', rec('smtp', 'authenticate', 'deny', 'auth.bad_credentials'), false],
    ['an allow', rec('smtp', 'connect', 'allow', 'limits.ok'), false],
  ])('%s is a throttle: %s', (_what, r, expected) => {
    expect(isThrottle(r)).toBe(expected);
  });

  it('counts decisions per service and verdict, auth failures and throttles, and samples gauges, per minute', () => {
    let now = Date.UTC(2026, 11, 6, 3, 0, 30);
    const m = new Metrics(() => now);
    m.observe(rec('smtp', 'rcpt', 'deny', 'relay.default'));
    m.observe(rec('smtp', 'connect', 'allow', 'access.allow'));
    m.observe(rec('ftp', 'authenticate', 'deny', 'auth.bad_credentials'));
    m.observe(rec('nntp', 'connect', 'deny', 'limits.connections'));
    m.sampleTrends({ queueDepth: 4, queueOldestSeconds: 90, sessions: { smtp: 2, ftp: 1, nntp: 0 } });
    now += 60_000;
    m.observe(rec('smtp', 'rcpt', 'deny', 'relay.default'));
    m.sampleTrends({ queueDepth: 1, queueOldestSeconds: 150, sessions: { smtp: 0, ftp: 0, nntp: 3 } });
    const s = m.trendSnapshot().series;
    const lastTwo = (k: string) => s[k]!.slice(-2);
    expect(s['smtp.deny']!.length).toBe(60);
    expect(lastTwo('smtp.deny')).toEqual([1, 1]);
    expect(lastTwo('smtp.allow')).toEqual([1, 0]);
    expect(lastTwo('ftp.deny')).toEqual([1, 0]);
    expect(lastTwo('nntp.deny')).toEqual([1, 0]);
    expect(lastTwo('auth_failures')).toEqual([1, 0]);
    expect(lastTwo('throttles')).toEqual([1, 0]);
    expect(lastTwo('queue_depth')).toEqual([4, 1]);
    expect(lastTwo('queue_oldest_s')).toEqual([90, 150]);
    expect(lastTwo('sessions.smtp')).toEqual([2, 0]);
    expect(lastTwo('sessions.nntp')).toEqual([0, 3]);
  });
});
