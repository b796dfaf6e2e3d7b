/*
 * The same table of ThrottleStore behaviours run against MemoryThrottleStore and RedisThrottleStore (a real
 * redis-server started privately on loopback, stopped in afterAll), so the shared store is a drop-in for the
 * in-process one. Then SharedThrottleStore's choice when the store is down: local answers, refuse throws.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisThrottleStore, SharedThrottleStore } from '../../src/net/redis-throttle-store.js';
import { FAMILIAR_RESOLUTION_MS, MemoryThrottleStore, ThrottleStoreUnavailable, type ThrottleStore } from '../../src/policy/throttle-store.js';
import { redisInstalled, TestRedis } from '../helpers/redis.js';

const T0 = 1_700_000_000_000;
const WIN = 60_000;
const LIMITS = { maxKeys: 1000, maxFamiliarPerUser: 3, maxFamiliarUsers: 1000 };

type Case = { name: string; run: (s: ThrottleStore) => Promise<void> };

const cases: Case[] = [
  {
    name: 'hit opens a window at the first event and counts within it',
    run: async (s) => {
      expect(await s.hit(['user:a', 'addr:1.2.3.4'], T0, WIN)).toEqual([1, 1]);
      expect(await s.hit(['user:a'], T0 + 1000, WIN)).toEqual([2]);
      expect(await s.read(['user:a', 'addr:1.2.3.4', 'user:none'], T0 + 2000)).toEqual([
        { count: 2, resetAt: T0 + WIN, until: 0 },
        { count: 1, resetAt: T0 + WIN, until: 0 },
        { count: 0, resetAt: 0, until: 0 },
      ]);
    },
  },
  {
    name: 'a closed window reads as zero and the next hit starts a new one',
    run: async (s) => {
      await s.hit(['user:a'], T0, WIN);
      await s.hit(['user:a'], T0, WIN);
      expect((await s.read(['user:a'], T0 + WIN))[0]!.count).toBe(0);
      expect(await s.hit(['user:a'], T0 + WIN, WIN)).toEqual([1]);
      expect((await s.read(['user:a'], T0 + WIN))[0]).toEqual({ count: 1, resetAt: T0 + 2 * WIN, until: 0 });
    },
  },
  {
    name: 'undo takes back one event and never goes below zero',
    run: async (s) => {
      await s.hit(['pair:1.2.3.4|a'], T0, WIN);
      await s.hit(['pair:1.2.3.4|a'], T0, WIN);
      await s.undo(['pair:1.2.3.4|a', 'user:never'], T0);
      expect((await s.read(['pair:1.2.3.4|a'], T0))[0]!.count).toBe(1);
      await s.undo(['pair:1.2.3.4|a'], T0);
      await s.undo(['pair:1.2.3.4|a'], T0);
      expect((await s.read(['pair:1.2.3.4|a'], T0))[0]!.count).toBe(0);
    },
  },
  {
    name: 'block throttles until a time, never shortens a longer throttle, and ends',
    run: async (s) => {
      await s.hit(['addr:9.9.9.9'], T0, WIN);
      await s.block('addr:9.9.9.9', T0 + 300_000, T0);
      await s.block('addr:9.9.9.9', T0 + 100_000, T0);
      expect((await s.read(['addr:9.9.9.9'], T0 + 1))[0]).toEqual({ count: 1, resetAt: T0 + WIN, until: T0 + 300_000 });
      // the window closed, the throttle still holds
      expect((await s.read(['addr:9.9.9.9'], T0 + WIN + 1))[0]).toEqual({ count: 0, resetAt: 0, until: T0 + 300_000 });
      expect((await s.read(['addr:9.9.9.9'], T0 + 300_000))[0]).toEqual({ count: 0, resetAt: 0, until: 0 });
      await s.block('user:b', T0 + 5000, T0);
      expect((await s.read(['user:b'], T0))[0]).toEqual({ count: 0, resetAt: 0, until: T0 + 5000 });
    },
  },
  {
    name: 'reset forgets counts and throttles and says how many keys it dropped',
    run: async (s) => {
      await s.hit(['pair:1.1.1.1|a', 'user:a'], T0, WIN);
      await s.block('pair:1.1.1.1|a', T0 + 300_000, T0);
      expect(await s.reset(['pair:1.1.1.1|a', 'user:nobody'])).toBe(1);
      expect((await s.read(['pair:1.1.1.1|a', 'user:a'], T0)).map((c) => c.count)).toEqual([0, 1]);
    },
  },
  {
    name: 'clear by name and by address drops exactly that name or address',
    run: async (s) => {
      await s.hit(['user:a', 'pair:1.1.1.1|a', 'pair:2.2.2.2|b', 'addr:1.1.1.1', 'miss:1.1.1.1', 'user:b'], T0, WIN);
      expect(await s.clear({ name: 'a' })).toBe(2);
      expect(await s.clear({ address: '1.1.1.1' })).toBe(2);
      const left = (await s.entries(T0)).map((e) => e.key).sort();
      expect(left).toEqual(['pair:2.2.2.2|b', 'user:b']);
    },
  },
  {
    name: 'entries lists open windows and live throttles, not finished ones',
    run: async (s) => {
      await s.hit(['user:open'], T0, WIN);
      await s.block('addr:5.5.5.5', T0 + 10 * WIN, T0);
      await s.hit(['user:old'], T0 - 2 * WIN, WIN);
      const got = (await s.entries(T0)).sort((x, y) => x.key.localeCompare(y.key));
      expect(got).toEqual([
        { key: 'addr:5.5.5.5', count: 0, resetAt: 0, until: T0 + 10 * WIN },
        { key: 'user:open', count: 1, resetAt: T0 + WIN, until: 0 },
      ]);
    },
  },
  {
    name: 'familiar addresses: last login kept to the hour, newest first, bounded per user, expired by age',
    run: async (s) => {
      expect(await s.familiarSeen('alice', '10.0.0.1')).toBe(0);
      await s.touchFamiliar('alice', '10.0.0.1', T0);
      await s.touchFamiliar('alice', '10.0.0.1', T0 + 60_000); // within the hour: unchanged
      expect(await s.familiarSeen('alice', '10.0.0.1')).toBe(T0);
      await s.touchFamiliar('alice', '10.0.0.1', T0 + FAMILIAR_RESOLUTION_MS);
      expect(await s.familiarSeen('alice', '10.0.0.1')).toBe(T0 + FAMILIAR_RESOLUTION_MS);
      await s.touchFamiliar('alice', '10.0.0.2', T0 + 2 * FAMILIAR_RESOLUTION_MS);
      await s.touchFamiliar('alice', '10.0.0.3', T0 + 3 * FAMILIAR_RESOLUTION_MS);
      await s.touchFamiliar('alice', '10.0.0.4', T0 + 4 * FAMILIAR_RESOLUTION_MS); // 4 > maxFamiliarPerUser 3: oldest goes
      expect((await s.familiar('alice')).map((f) => f.address)).toEqual(['10.0.0.4', '10.0.0.3', '10.0.0.2']);
      expect(await s.familiar('bob')).toEqual([]);
      await s.expireFamiliar(T0 + 5 * FAMILIAR_RESOLUTION_MS, 2.5 * FAMILIAR_RESOLUTION_MS);
      expect((await s.familiar('alice')).map((f) => f.address)).toEqual(['10.0.0.4', '10.0.0.3']);
    },
  },
];

describe('MemoryThrottleStore: the store behaviours', () => {
  for (const c of cases) it(c.name, () => c.run(new MemoryThrottleStore(LIMITS)));
});

describe.skipIf(!redisInstalled)('RedisThrottleStore on a real redis-server: the same behaviours', () => {
  let server: TestRedis;
  let client: Redis;
  let n = 0;
  beforeAll(async () => {
    server = await TestRedis.start();
    client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.cleanup();
  });
  for (const c of cases) it(c.name, () => c.run(new RedisThrottleStore(client, { prefix: `t${++n}:`, maxFamiliarPerUser: LIMITS.maxFamiliarPerUser, familiarTtlMs: 30 * 86_400_000 })));

  it('keys carry the prefix and expire on their own', async () => {
    const s = new RedisThrottleStore(client, { prefix: 'exp:', maxFamiliarPerUser: 3, familiarTtlMs: 86_400_000 });
    await s.hit(['user:x'], T0, 2_000);
    await s.touchFamiliar('x', '10.0.0.1', T0);
    const ttl = await client.pttl('exp:c:user:x');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2_000);
    expect(await client.pttl('exp:f:x')).toBeGreaterThan(86_000_000);
  });
});

describe('SharedThrottleStore: the store is down', () => {
  const broken: ThrottleStore = new Proxy({} as ThrottleStore, { get: () => () => Promise.reject(new Error('connection is closed')) });
  it('on_error local: the in-process store answers, and a failing command falls back too', async () => {
    const local = new MemoryThrottleStore(LIMITS);
    const failures: unknown[] = [];
    const down = new SharedThrottleStore(broken, local, { up: false, onError: 'local', failed: (e) => failures.push(e) });
    expect(await down.hit(['user:a'], T0, WIN)).toEqual([1]);
    const flaky = new SharedThrottleStore(broken, local, { up: true, onError: 'local', failed: (e) => failures.push(e) });
    expect(await flaky.hit(['user:a'], T0, WIN)).toEqual([2]);
    expect(failures).toHaveLength(1);
  });
  it('on_error refuse: every operation throws ThrottleStoreUnavailable, the local store is not touched', async () => {
    const local = new MemoryThrottleStore(LIMITS);
    const s = new SharedThrottleStore(broken, local, { up: true, onError: 'refuse', failed: () => undefined });
    await expect(s.hit(['user:a'], T0, WIN)).rejects.toBeInstanceOf(ThrottleStoreUnavailable);
    await expect(s.read(['user:a'], T0)).rejects.toBeInstanceOf(ThrottleStoreUnavailable);
    await expect(s.familiarSeen('a', '1.1.1.1')).rejects.toBeInstanceOf(ThrottleStoreUnavailable);
    expect(local.size).toBe(0);
  });
});
