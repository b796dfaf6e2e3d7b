/*
 * NAME
 *   net/redis-throttle-store — the login throttle's state (policy/throttle-store.ts) on Redis/Valkey.
 *
 * DESCRIPTION
 *   When `state_store.url` is set, failure counters, throttles and familiar addresses live in Redis so every
 *   instance behind a balancer counts the same guesses. Each counter is a hash `<prefix>c:<key>` with fields
 *   count, resetAt and until (ms), changed only by small Lua scripts (one round trip, atomic across
 *   instances) and expiring on its own when both its window and its throttle are over (PEXPIRE). Familiar
 *   addresses are a hash per user `<prefix>f:<name>` (address → last login, kept to the hour), bounded to
 *   maxFamiliarPerUser fields (the oldest go first) and expiring after the familiar period without a login.
 *   Times come from the caller's clock (the rules' `now`), expiries are relative, so instances with slightly
 *   different clocks agree on windows.
 *
 *   SharedThrottleStore puts the Redis store and an in-process MemoryThrottleStore behind one ThrottleStore:
 *   while the state store is reachable Redis answers; when it is not, `on_error: local` answers from the
 *   in-process store (per-instance counters) and `refuse` throws ThrottleStoreUnavailable, which the policy
 *   core turns into the temporary refusal `state_store.unavailable`.
 */
import type { Redis } from 'ioredis';
import type { CounterState } from '../policy/throttle.js';
import { EMPTY_COUNTER } from '../policy/throttle.js';
import {
  FAMILIAR_RESOLUTION_MS,
  ThrottleStoreUnavailable,
  type FamiliarAddress,
  type MemoryThrottleStore,
  type StoredCounter,
  type ThrottleStore,
} from '../policy/throttle-store.js';
import { keyMatches } from '../identity/throttle-files.js';
import type { StateStore } from './state-store.js';

export const DEFAULT_PREFIX = 'gatehouse:throttle:';

// KEYS: counters; ARGV: now, windowMs. A window opens at the first event; the key lives while window or throttle does.
const HIT = `
local now = tonumber(ARGV[1]); local win = tonumber(ARGV[2]); local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'count', 'resetAt', 'until')
  local c = tonumber(v[1]) or 0; local r = tonumber(v[2]) or 0; local u = tonumber(v[3]) or 0
  if r <= now then c = 0; r = now + win end
  c = c + 1
  redis.call('HSET', k, 'count', c, 'resetAt', r, 'until', u)
  redis.call('PEXPIRE', k, math.max(r, u) - now)
  out[i] = c
end
return out`;

// KEYS: counters; ARGV: now. Take back one event where the window is still open.
const UNDO = `
local now = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'count', 'resetAt')
  local c = tonumber(v[1]) or 0; local r = tonumber(v[2]) or 0
  if r > now and c > 0 then redis.call('HINCRBY', k, 'count', -1) end
end
return 0`;

// KEYS[1]: counter; ARGV: until, now. Never shortens a longer throttle.
const BLOCK = `
local u = tonumber(ARGV[1]); local now = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'count', 'resetAt', 'until')
local c = tonumber(v[1]) or 0; local r = tonumber(v[2]) or 0; local old = tonumber(v[3]) or 0
if r <= now then c = 0; r = 0 end
if old > u then u = old end
redis.call('HSET', KEYS[1], 'count', c, 'resetAt', r, 'until', u)
redis.call('PEXPIRE', KEYS[1], math.max(math.max(r, u) - now, 1))
return 0`;

// KEYS[1]: a user's familiar hash; ARGV: address, now, resolutionMs, maxPerUser, ttlMs.
const TOUCH = `
local a = ARGV[1]; local now = tonumber(ARGV[2]); local res = tonumber(ARGV[3]); local max = tonumber(ARGV[4])
local before = tonumber(redis.call('HGET', KEYS[1], a))
if before == nil or now - before >= res then redis.call('HSET', KEYS[1], a, now) end
local n = redis.call('HLEN', KEYS[1])
if n > max then
  local all = redis.call('HGETALL', KEYS[1]); local list = {}
  for i = 1, #all, 2 do if all[i] ~= a then list[#list + 1] = { all[i], tonumber(all[i + 1]) } end end
  table.sort(list, function(x, y) return x[2] < y[2] end)
  for i = 1, n - max do redis.call('HDEL', KEYS[1], list[i][1]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0`;

// KEYS[1]: a user's familiar hash; ARGV: oldest last-seen kept.
const EXPIRE_FAMILIAR = `
local min = tonumber(ARGV[1]); local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do if tonumber(all[i + 1]) < min then redis.call('HDEL', KEYS[1], all[i]) end end
return 0`;

export interface RedisThrottleOptions {
  readonly prefix?: string;
  readonly maxFamiliarPerUser: number;
  /** a user's familiar addresses expire this long after the last login (auth.familiar.days) */
  readonly familiarTtlMs: number;
}

const num = (v: string | null | undefined): number => (v ? Number(v) || 0 : 0);

export class RedisThrottleStore implements ThrottleStore {
  private readonly prefix: string;

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisThrottleOptions,
  ) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
  }

  private c(key: string): string {
    return `${this.prefix}c:${key}`;
  }

  private f(name: string): string {
    return `${this.prefix}f:${name}`;
  }

  /** Every key under a pattern (SCAN, never KEYS: it does not block the server). */
  private async scan(match: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
    return [...new Set(out)];
  }

  private static state(v: (string | null)[], now: number): CounterState {
    const count = num(v[0]);
    const resetAt = num(v[1]);
    const until = num(v[2]);
    if (resetAt <= now && until <= now) return EMPTY_COUNTER;
    return resetAt > now ? { count, resetAt, until: until > now ? until : 0 } : { count: 0, resetAt: 0, until };
  }

  async read(keys: readonly string[], now: number): Promise<CounterState[]> {
    if (keys.length === 0) return [];
    const p = this.redis.pipeline();
    for (const k of keys) p.hmget(this.c(k), 'count', 'resetAt', 'until');
    const res = (await p.exec()) ?? [];
    return keys.map((_, i) => {
      const [err, v] = res[i] ?? [new Error('no reply'), null];
      if (err) throw err;
      return RedisThrottleStore.state(v as (string | null)[], now);
    });
  }

  async hit(keys: readonly string[], now: number, windowMs: number): Promise<number[]> {
    if (keys.length === 0) return [];
    const out = (await this.redis.eval(HIT, keys.length, ...keys.map((k) => this.c(k)), now, windowMs)) as number[];
    return out.map(Number);
  }

  async undo(keys: readonly string[], now: number): Promise<void> {
    if (keys.length === 0) return;
    await this.redis.eval(UNDO, keys.length, ...keys.map((k) => this.c(k)), now);
  }

  async block(key: string, until: number, now: number): Promise<void> {
    await this.redis.eval(BLOCK, 1, this.c(key), until, now);
  }

  async reset(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.redis.del(...keys.map((k) => this.c(k)));
  }

  async clear(target: { name: string } | { address: string }): Promise<number> {
    const keys = (await this.scan(`${this.prefix}c:*`)).filter((k) => keyMatches(k.slice(this.prefix.length + 2), target));
    return keys.length === 0 ? 0 : this.redis.del(...keys);
  }

  async entries(now: number): Promise<StoredCounter[]> {
    const names = await this.scan(`${this.prefix}c:*`);
    const out: StoredCounter[] = [];
    const p = this.redis.pipeline();
    for (const k of names) p.hmget(k, 'count', 'resetAt', 'until');
    const res = names.length > 0 ? ((await p.exec()) ?? []) : [];
    names.forEach((k, i) => {
      const [err, v] = res[i] ?? [null, null];
      if (err || !v) return;
      const [count, resetAt, until] = (v as (string | null)[]).map(num) as [number, number, number];
      if (until > now || resetAt > now) out.push({ key: k.slice(this.prefix.length + 2), count: resetAt > now ? count : 0, resetAt, until: until > now ? until : 0 });
    });
    return out;
  }

  async familiarSeen(name: string, address: string): Promise<number> {
    return num(await this.redis.hget(this.f(name), address));
  }

  async familiar(name: string): Promise<FamiliarAddress[]> {
    const all = await this.redis.hgetall(this.f(name));
    return Object.entries(all)
      .map(([address, seen]) => ({ address, lastSeen: num(seen) }))
      .sort((a, b) => b.lastSeen - a.lastSeen);
  }

  async touchFamiliar(name: string, address: string, now: number): Promise<void> {
    await this.redis.eval(TOUCH, 1, this.f(name), address, now, FAMILIAR_RESOLUTION_MS, Math.max(1, this.options.maxFamiliarPerUser), Math.max(1, Math.round(this.options.familiarTtlMs)));
  }

  async expireFamiliar(now: number, maxAgeMs: number): Promise<void> {
    for (const k of await this.scan(`${this.prefix}f:*`)) await this.redis.eval(EXPIRE_FAMILIAR, 1, k, now - maxAgeMs);
  }
}

/** How the shared store is reached: is it up now, and what to do when it is not. */
export interface SharedStoreState {
  readonly up: boolean;
  readonly onError: 'local' | 'refuse';
  /** note a failed command (logs at most once a minute) */
  failed(err: unknown): void;
}

/**
 * Redis while it answers; otherwise the in-process store (`local`) or ThrottleStoreUnavailable (`refuse`).
 * A command that fails half-way is not retried elsewhere under `refuse`; under `local` it is answered locally.
 */
export class SharedThrottleStore implements ThrottleStore {
  constructor(
    readonly shared: ThrottleStore,
    readonly local: MemoryThrottleStore,
    private readonly state: SharedStoreState,
  ) {}

  private async use<T>(fn: (s: ThrottleStore) => Promise<T>): Promise<T> {
    if (this.state.up) {
      try {
        return await fn(this.shared);
      } catch (err) {
        this.state.failed(err);
      }
    }
    if (this.state.onError === 'local') return fn(this.local);
    throw new ThrottleStoreUnavailable();
  }

  read(keys: readonly string[], now: number) {
    return this.use((s) => s.read(keys, now));
  }
  hit(keys: readonly string[], now: number, windowMs: number) {
    return this.use((s) => s.hit(keys, now, windowMs));
  }
  undo(keys: readonly string[], now: number) {
    return this.use((s) => s.undo(keys, now));
  }
  block(key: string, until: number, now: number) {
    return this.use((s) => s.block(key, until, now));
  }
  reset(keys: readonly string[]) {
    return this.use((s) => s.reset(keys));
  }
  clear(target: { name: string } | { address: string }) {
    // an operator's clear goes to both: what was counted locally while Redis was down is cleared too
    return this.use(async (s) => (s === this.local ? 0 : await this.local.clear(target)) + (await s.clear(target)));
  }
  entries(now: number) {
    return this.use((s) => s.entries(now));
  }
  familiarSeen(name: string, address: string) {
    return this.use((s) => s.familiarSeen(name, address));
  }
  familiar(name: string) {
    return this.use((s) => s.familiar(name));
  }
  touchFamiliar(name: string, address: string, now: number) {
    return this.use((s) => s.touchFamiliar(name, address, now));
  }
  expireFamiliar(now: number, maxAgeMs: number) {
    return Promise.all([this.local.expireFamiliar(now, maxAgeMs), this.use((s) => (s === this.local ? Promise.resolve() : s.expireFamiliar(now, maxAgeMs)))]).then(() => undefined);
  }
}

/** The throttle store an instance uses: in-process without `state_store.url`, else Redis with `local` behind it. */
export function throttleStoreFor(stateStore: StateStore, local: MemoryThrottleStore, options: RedisThrottleOptions): ThrottleStore {
  const client = stateStore.client;
  if (!client) return local;
  return new SharedThrottleStore(new RedisThrottleStore(client, options), local, {
    get up() {
      return stateStore.up;
    },
    onError: stateStore.config.on_error,
    failed: (err) => stateStore.failed(err),
  });
}
