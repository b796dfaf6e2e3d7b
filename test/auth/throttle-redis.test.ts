/*
 * Login throttling shared through Redis (issue 17 item 3), with a real redis-server started privately on
 * loopback and three Gatehouse instances on it (A and B with state_store.on_error local, C with refuse), driven
 * by Python's smtplib from loopback aliases:
 *   - alice logs in on A from 127.0.0.20 (familiar there), then wrong passwords from 127.0.0.30 alternate
 *     between A and B: five checked failures in all, then the temporary reply on both (counted as one);
 *   - alice from 127.0.0.20 on B still gets in (the familiar address learned on A); from 127.0.0.40 on B she
 *     is throttled; `throttle list` and `user show` (the CLI connects to Redis itself) show it;
 *   - Redis stopped: A answers from its own counters (wrong then right password work as without a store), C
 *     answers 454 under state_store.unavailable, status says down; nothing crashes; Redis back: C logs in.
 */
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { printThrottles, showUser } from '../../src/cli/throttle.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { redisInstalled, TestRedis } from '../helpers/redis.js';
import { runPython } from '../nntp/client.js';

const CLIENT = `
import smtplib, time
def attempt(port, src, user, pw):
    s = smtplib.SMTP('127.0.0.1', port, source_address=(src, 0), timeout=20)
    s.ehlo(); s.starttls(context=ctx); s.ehlo()
    s.user, s.password = user, pw
    try:
        code, msg = s.auth('PLAIN', s.auth_plain, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as e:
        code, msg = e.smtp_code, e.smtp_error
    try:
        s.quit()
    except Exception:
        s.close()
    return '%d %s' % (code, msg.decode())
A = int(os.environ['PORT_A']); B = int(os.environ['PORT_B']); C = int(os.environ['PORT_C'])
`;

async function py(script: string, ports: Record<string, number>): Promise<Record<string, unknown>> {
  const r = await runPython(CLIENT + script, { PASSWORD, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) }, 90_000);
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

const waitFor = async (pred: () => boolean, ms = 15_000) => {
  const until = Date.now() + ms;
  while (!pred() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return pred();
};

const TEMPORARY = '454 4.7.0 Temporary authentication failure, try again later';
const WRONG = '535 5.7.8 Error: authentication failed';

describe.skipIf(!redisInstalled)('login throttling shared through Redis by several instances', () => {
  let redis: TestRedis;
  let a: TestGatehouse;
  let b: TestGatehouse;
  let c: TestGatehouse;
  let ports: Record<string, number>;

  beforeAll(async () => {
    redis = await TestRedis.start();
    const cfg = (onError: 'local' | 'refuse') => ({
      auth: { bcrypt_cost: 10, delay: { base_ms: 10, max_ms: 40 } },
      state_store: { url: redis.url, on_error: onError },
      ftp: { enabled: false },
      nntp: { enabled: false },
    });
    const users = [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD },
    ];
    [a, b, c] = await Promise.all([startGatehouse(cfg('local'), users), startGatehouse(cfg('local'), users), startGatehouse(cfg('refuse'), users)]);
    for (const t of [a, b, c]) expect(await waitFor(() => t.gh.runtime.store?.up === true)).toBe(true);
    ports = { PORT_A: a.port('smtp'), PORT_B: b.port('smtp'), PORT_C: c.port('smtp') };
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([a, b, c].filter(Boolean).map((t) => t.stop()));
    await redis?.cleanup();
  }, 30_000);

  it('failures spread over two instances throttle as if one; a familiar address learned on A works on B', async () => {
    const out = await py(
      `
res = {'first': attempt(A, '127.0.0.20', 'alice', PASSWORD)}
res['attack'] = [attempt(A if i % 2 == 0 else B, '127.0.0.30', 'alice', 'wrong-%d' % i) for i in range(10)]
res['familiar_on_b'] = attempt(B, '127.0.0.20', 'alice', PASSWORD)
res['new_on_b'] = attempt(B, '127.0.0.40', 'alice', PASSWORD)
print(json.dumps(res))
`,
      ports,
    );
    expect(out.first).toMatch(/^235 /);
    expect(out.attack).toEqual([...Array(5).fill(WRONG), ...Array(5).fill(TEMPORARY)]);
    expect(out.familiar_on_b).toMatch(/^235 /);
    expect(out.new_on_b).toBe(TEMPORARY);
    // both instances refused under the throttle rules: the count was shared
    for (const t of [a, b]) expect(t.decisions.some((d) => d.phase === 'authenticate' && d.rule.startsWith('auth.throttle_') && d.ip === '127.0.0.30')).toBe(true);
    expect(b.decisions.find((d) => d.phase === 'authenticate' && d.ip === '127.0.0.40')?.rule).toBe('auth.throttle_user');
  }, 120_000);

  it('throttle list and user show read the shared store (the CLI connects to Redis itself)', async () => {
    const config = loadConfig(a.configFile);
    const text = async (fn: (out: PassThrough) => Promise<number>) => {
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (d: Buffer) => chunks.push(d));
      expect(await fn(out)).toBe(0);
      return Buffer.concat(chunks).toString('utf8');
    };
    // the same listing from either instance's config: it is Redis that answers, not the files
    const list = await text((out) => printThrottles(loadConfig(b.configFile), out));
    expect(list).toMatch(/name alice from 127\.0\.0\.30\t5 failures/);
    expect(list).toMatch(/name alice from unfamiliar addresses/);
    expect(list).not.toContain('saved by the daemon');
    const show = await text((out) => showUser(config, 'alice', { kind: 'found', entry: { name: 'alice', source: 'local', groups: ['users'] } }, out));
    expect(show).toMatch(/127\.0\.0\.20\tlast login/);
  }, 30_000);

  it('Redis stopped mid-run: local counts per instance, refuse answers 454 under state_store.unavailable; back up afterwards', async () => {
    await redis.stop();
    for (const t of [a, c]) expect(await waitFor(() => t.gh.runtime.store?.up === false)).toBe(true);
    const out = await py(
      `
res = {'a_wrong': attempt(A, '127.0.0.66', 'bob', 'wrong'), 'a_right': attempt(A, '127.0.0.66', 'bob', PASSWORD)}
res['c_right'] = attempt(C, '127.0.0.20', 'bob', PASSWORD)
print(json.dumps(res))
`,
      ports,
    );
    expect(out.a_wrong).toBe(WRONG);
    expect(out.a_right).toMatch(/^235 /);
    expect(out.c_right).toBe(TEMPORARY);
    expect(c.decisions.find((d) => d.phase === 'authenticate' && d.user === 'bob')).toMatchObject({ rule: 'state_store.unavailable', verdict: 'deny' });
    expect(c.gh.runtime.store?.status()).toMatchObject({ configured: true, up: false, onError: 'refuse' });
    // the CLI says it could not reach the shared store instead of failing
    const out2 = new PassThrough();
    const chunks: Buffer[] = [];
    out2.on('data', (d: Buffer) => chunks.push(d));
    expect(await printThrottles(loadConfig(a.configFile), out2)).toBe(0);
    expect(Buffer.concat(chunks).toString()).toContain('shared state store is unreachable');
    await redis.resume();
    expect(await waitFor(() => c.gh.runtime.store?.up === true)).toBe(true);
    const back = await py(`print(json.dumps({'c': attempt(C, '127.0.0.20', 'bob', PASSWORD)}))`, ports);
    expect(back.c).toMatch(/^235 /);
  }, 120_000);
});
