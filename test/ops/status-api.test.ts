/*
 * The status page's HTTP side over real HTTP: /api/state (listeners, queue, locks, no secrets), /api/trends,
 * /events (server-sent decisions), read-only methods, the DNS-rebinding Host guard, security headers,
 * password protection, and the refusal to listen off loopback without a password.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANONYMOUS, NOBODY } from '../../src/policy/types.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

const OFF = { ftp: { enabled: false }, nntp: { enabled: false } };
const ACCESS = { access: { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.66/32'] } };

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, pathName: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathName, method: options.method ?? 'GET', headers: options.headers, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Open /events and resolve with the first decision event matching `want`. */
function nextEvent(port: number, want: (rec: Record<string, unknown>) => boolean, trigger: () => void, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/events', headers }, (res) => {
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!/^event: decision$/m.test(block) || !data) continue;
          const rec = JSON.parse(data) as Record<string, unknown>;
          if (want(rec)) {
            clearTimeout(timer);
            req.destroy();
            resolve(rec);
          }
        }
      });
      trigger();
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('no matching event within 10 s'));
    }, 10_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
  });
}

describe('status API on loopback', () => {
  let t: TestGatehouse;
  let port: number;
  beforeAll(async () => {
    t = await startGatehouse({ ...OFF, ...ACCESS, metrics: { listen: '127.0.0.1:0' }, auth: { bcrypt_cost: 10, lockout: { failures: 2 } } }, [{ name: 'alice', password: PASSWORD }]);
    port = t.gh.ops!.address.port;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('reports listeners, queue and throttled addresses/names without secrets', async () => {
    for (let i = 0; i < 2; i++) await t.gh.runtime.policy.authenticate({ service: 'smtp', ip: '127.0.0.21', identity: ANONYMOUS, session: 'x' }, 'alice', 'not-the-password', true);
    const r = await request(port, '/api/state');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const s = JSON.parse(r.body) as { listeners: Record<string, { enabled: boolean; bound: { name: string; port: number }[] }>; queue: { depth: number }; throttles: { kind: string; address: string | null; name: string | null }[] };
    expect(s.listeners.smtp!.enabled).toBe(true);
    expect(s.listeners.smtp!.bound).toEqual([expect.objectContaining({ name: 'plain', port: t.port('smtp') })]);
    expect(s.listeners.ftp).toEqual({ enabled: false, bound: [] });
    expect(s.queue.depth).toBe(0);
    expect(s.throttles).toEqual(
      expect.arrayContaining([expect.objectContaining({ kind: 'user', name: 'alice', address: null }), expect.objectContaining({ kind: 'pair', name: 'alice', address: '127.0.0.21' })]),
    );
    expect(r.body).not.toContain('not-the-password');
    expect(r.body).not.toMatch(/\$2[aby]\$/);
  });

  it('streams live decisions as server-sent events', async () => {
    const rec = await nextEvent(
      port,
      (e) => e.ip === '127.0.0.66' && e.verdict === 'deny',
      () => t.gh.runtime.policy.connect({ service: 'smtp', ip: '127.0.0.66', identity: NOBODY, session: 'sse' }),
    );
    expect(rec).toMatchObject({ service: 'smtp', phase: 'connect', verdict: 'deny', session: 'sse' });
  });

  it('replays recent decisions to a new viewer, but not what a reconnecting one has seen (Last-Event-ID)', async () => {
    const replayed = await nextEvent(port, () => true, () => {});
    expect(replayed.session).not.toBe('after');
    const first = await nextEvent(
      port,
      () => true,
      () => t.gh.runtime.policy.connect({ service: 'smtp', ip: '127.0.0.66', identity: NOBODY, session: 'after' }),
      { 'Last-Event-ID': '1000000' },
    );
    expect(first.session).toBe('after');
  });

  it('serves the charts\' series: the last hour per minute, counting the decisions made (lockouts as throttles)', async () => {
    const get = async () => JSON.parse((await request(port, '/api/trends')).body) as { start: number; stepMs: number; series: Record<string, (number | null)[]> };
    const before = await get();
    expect(before.stepMs).toBe(60_000);
    expect(Object.keys(before.series).sort()).toEqual(
      ['auth_failures', 'ftp.allow', 'ftp.deny', 'nntp.allow', 'nntp.deny', 'queue_depth', 'queue_oldest_s', 'sessions.ftp', 'sessions.nntp', 'sessions.smtp', 'smtp.allow', 'smtp.deny', 'throttles'].sort(),
    );
    for (const v of Object.values(before.series)) expect(v).toHaveLength(60);
    const hour = (t: typeof before, k: string) => t.series[k]!.reduce<number>((a, v) => a + (v ?? 0), 0);
    t.gh.runtime.policy.connect({ service: 'smtp', ip: '127.0.0.66', identity: NOBODY, session: 'trend' });
    await t.gh.runtime.policy.authenticate({ service: 'smtp', ip: '127.0.0.22', identity: ANONYMOUS, session: 'trend' }, 'nobody-here', 'not-the-password', true);
    const after = await get();
    expect(hour(after, 'smtp.deny') - hour(before, 'smtp.deny')).toBeGreaterThanOrEqual(2);
    expect(hour(after, 'auth_failures') - hour(before, 'auth_failures')).toBe(1);
    expect(hour(before, 'throttles')).toBeGreaterThanOrEqual(1); // the lockouts of the first test
    expect(after.series['sessions.smtp']!.at(-1)).toBe(0);
    expect((await request(port, '/charts.js')).headers['content-type']).toMatch(/^text\/javascript/);
  });

  it('serves the page with a strict CSP and is read-only', async () => {
    const page = await request(port, '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<script src="/status.js"');
    expect(page.body).not.toMatch(/<script>(?!<)/);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect((await request(port, '/status.js')).headers['content-type']).toMatch(/^text\/javascript/);
    for (const method of ['POST', 'PUT', 'DELETE']) expect((await request(port, '/api/state', { method })).status).toBe(405);
    expect((await request(port, '/nope')).status).toBe(404);
  });

  it('keeps serving across a reload (SIGHUP path) with the new runtime', async () => {
    const before = t.gh.runtime;
    const r = await t.gh.reload();
    expect(r.ok).toBe(true);
    expect(t.gh.runtime).not.toBe(before);
    const rec = await nextEvent(
      port,
      (e) => e.session === 'reloaded',
      () => t.gh.runtime.policy.connect({ service: 'smtp', ip: '127.0.0.66', identity: NOBODY, session: 'reloaded' }),
    );
    expect(rec.verdict).toBe('deny');
    expect((await request(port, '/api/state')).status).toBe(200);
  });

  it('refuses Host names other than IP literals and localhost (DNS rebinding)', async () => {
    expect((await request(port, '/api/state', { headers: { Host: 'attacker.example:8080' } })).status).toBe(421);
    expect((await request(port, '/metrics', { headers: { Host: `localhost:${port}` } })).status).toBe(200);
  });
});

describe('status API with a password', () => {
  let t: TestGatehouse;
  let port: number;
  const secret = 'status-page-secret-42';
  beforeAll(async () => {
    const pwDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-ops-pw-'));
    const pwFile = path.join(pwDir, 'metrics.pw');
    fs.writeFileSync(pwFile, `${secret}\n`, { mode: 0o600 });
    t = await startGatehouse({ ...OFF, smtp: { enabled: false }, metrics: { listen: '127.0.0.1:0', password_file: pwFile } });
    port = t.gh.ops!.address.port;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('asks for HTTP Basic auth and accepts only the configured password', async () => {
    const none = await request(port, '/metrics');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Basic realm="gatehouse"/);
    const basic = (pw: string) => ({ Authorization: `Basic ${Buffer.from(`ops:${pw}`).toString('base64')}` });
    expect((await request(port, '/metrics', { headers: basic('wrong-password-x') })).status).toBe(401);
    const ok = await request(port, '/metrics', { headers: basic(secret) });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('gatehouse_decisions_total');
    expect(ok.body).not.toContain(secret);
  });
});

describe('metrics.listen off loopback', () => {
  it('refuses to start without metrics.password_file', async () => {
    await expect(startGatehouse({ smtp: { enabled: false }, ...OFF, metrics: { listen: '0.0.0.0:0' } })).rejects.toThrow(/not a loopback address; set metrics\.password_file/);
  });
});
