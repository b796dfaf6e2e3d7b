/*
 * NAME
 *   policy/throttle-store — where the throttle counters and familiar addresses live.
 *
 * DESCRIPTION
 *   The rules (policy/throttle.ts) are pure; this is the state they read. The interface is small, async and
 *   made of atomic per-key operations with expiries, so a shared implementation (Redis: INCR + PEXPIRE NX for
 *   `hit`, SET PX for `block`, a hash per user for familiarity) can replace the in-process one without any
 *   change to the rules or the listeners. MemoryThrottleStore keeps everything in this process, bounded:
 *   at most `maxKeys` counters (the least recently touched go first), at most `maxFamiliarPerUser` addresses
 *   per user (the oldest go first) and `maxFamiliarUsers` users. It does no I/O; identity/throttle-files.ts
 *   persists its `dump()` and feeds it back with `load()`.
 */
import type { CounterState } from './throttle.js';
import { EMPTY_COUNTER } from './throttle.js';

export interface StoredCounter {
  readonly key: string;
  readonly count: number;
  readonly resetAt: number;
  readonly until: number;
}

export interface FamiliarAddress {
  readonly address: string;
  readonly lastSeen: number;
}

export interface ThrottleStore {
  /** Read several counters at once (missing or expired → zeros). */
  read(keys: readonly string[], now: number): Promise<CounterState[]>;
  /** Count one event on each key; a window opens at the first event and lasts windowMs. Returns the new counts. */
  hit(keys: readonly string[], now: number, windowMs: number): Promise<number[]>;
  /** Take back one event from each key (an attempt counted in advance that turned out not to be a failure). */
  undo(keys: readonly string[], now: number): Promise<void>;
  /** Throttle a key until `until` (never shortens a longer throttle). */
  block(key: string, until: number, now: number): Promise<void>;
  /** Forget a key's count and throttle (a success clears the pair; `throttle clear`). */
  reset(keys: readonly string[]): Promise<number>;
  /** Forget every key of a name (`user:NAME`, `pair:*|NAME`) or an address (`addr:A`, `miss:A`, `pair:A|*`). */
  clear(target: { name: string } | { address: string }): Promise<number>;
  /** Counters with a live throttle or an open window (listing, status page, explain). */
  entries(now: number): Promise<StoredCounter[]>;
  /** Last successful login of `name` from `address` (0 = never). */
  familiarSeen(name: string, address: string): Promise<number>;
  /** Every familiar address of a name, newest first. */
  familiar(name: string): Promise<FamiliarAddress[]>;
  /** Record a successful login. */
  touchFamiliar(name: string, address: string, now: number): Promise<void>;
  /** Drop familiar addresses older than maxAgeMs. */
  expireFamiliar(now: number, maxAgeMs: number): Promise<void>;
}

/** The shared store is unreachable and `state_store.on_error` is `refuse`: the core refuses with a temporary reply. */
export class ThrottleStoreUnavailable extends Error {
  constructor() {
    super('the shared state store is unreachable (state_store.on_error: refuse)');
    this.name = 'ThrottleStoreUnavailable';
  }
}

interface Counter {
  count: number;
  resetAt: number;
  until: number;
}

export interface MemoryStoreLimits {
  readonly maxKeys: number;
  readonly maxFamiliarPerUser: number;
  readonly maxFamiliarUsers: number;
}

/** Last-seen times are kept to the hour: a user logging in every minute does not rewrite the file each time. */
export const FAMILIAR_RESOLUTION_MS = 3_600_000;
/** At most this many counters are persisted (every live throttle first, then the most recently used). */
export const MAX_PERSISTED_COUNTERS = 20_000;

export const DEFAULT_STORE_LIMITS: MemoryStoreLimits = { maxKeys: 100_000, maxFamiliarPerUser: 20, maxFamiliarUsers: 100_000 };

export interface ThrottleDump {
  readonly counters: StoredCounter[];
  readonly familiar: Record<string, FamiliarAddress[]>;
}

export class MemoryThrottleStore implements ThrottleStore {
  private readonly counters = new Map<string, Counter>();
  private readonly familiarMap = new Map<string, Map<string, number>>();
  private ops = 0;
  /** called after every change (persistence hooks debounce it) */
  onChange: (what: 'counters' | 'familiar') => void = () => {};

  constructor(private readonly limits: MemoryStoreLimits = DEFAULT_STORE_LIMITS) {}

  get size(): number {
    return this.counters.size;
  }

  private get(key: string, now: number): Counter | undefined {
    const c = this.counters.get(key);
    if (!c) return undefined;
    if (c.resetAt <= now && c.until <= now) {
      this.counters.delete(key);
      return undefined;
    }
    if (c.resetAt <= now) {
      c.count = 0;
      c.resetAt = 0;
    }
    return c;
  }

  /** Insert or refresh a key as most recently used; evict the least recently used past maxKeys. */
  private put(key: string, c: Counter, now: number): void {
    this.counters.delete(key);
    this.counters.set(key, c);
    if (++this.ops % 1024 === 0) this.sweep(now);
    while (this.counters.size > this.limits.maxKeys) this.evictOne(now);
  }

  /**
   * Forget the least recently used counter, preferring one without a live throttle (looking at the 64 oldest),
   * so a flood of fresh names or addresses cannot push an attacker's throttle out of memory.
   */
  private evictOne(now: number): void {
    let scanned = 0;
    let victim: string | undefined;
    for (const [key, c] of this.counters) {
      victim ??= key;
      if (c.until <= now) {
        victim = key;
        break;
      }
      if (++scanned >= 64) break;
    }
    if (victim !== undefined) this.counters.delete(victim);
  }

  sweep(now: number): void {
    for (const [key, c] of this.counters) if (c.resetAt <= now && c.until <= now) this.counters.delete(key);
  }

  read(keys: readonly string[], now: number): Promise<CounterState[]> {
    return Promise.resolve(
      keys.map((k) => {
        const c = this.get(k, now);
        return c ? { count: c.count, resetAt: c.resetAt, until: c.until > now ? c.until : 0 } : EMPTY_COUNTER;
      }),
    );
  }

  hit(keys: readonly string[], now: number, windowMs: number): Promise<number[]> {
    if (keys.length === 0) return Promise.resolve([]);
    const out = keys.map((k) => {
      const c = this.get(k, now) ?? { count: 0, resetAt: 0, until: 0 };
      if (c.resetAt <= now) c.resetAt = now + windowMs;
      c.count += 1;
      this.put(k, c, now);
      return c.count;
    });
    this.onChange('counters');
    return Promise.resolve(out);
  }

  undo(keys: readonly string[], now: number): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    for (const k of keys) {
      const c = this.get(k, now);
      if (c && c.count > 0) c.count -= 1;
    }
    this.onChange('counters');
    return Promise.resolve();
  }

  block(key: string, until: number, now: number): Promise<void> {
    const c = this.get(key, now) ?? { count: 0, resetAt: 0, until: 0 };
    c.until = Math.max(c.until, until);
    this.put(key, c, now);
    this.onChange('counters');
    return Promise.resolve();
  }

  reset(keys: readonly string[]): Promise<number> {
    let n = 0;
    for (const k of keys) if (this.counters.delete(k)) n++;
    if (n > 0) this.onChange('counters');
    return Promise.resolve(n);
  }

  clear(target: { name: string } | { address: string }): Promise<number> {
    const match =
      'name' in target
        ? (k: string) => k === `user:${target.name}` || (k.startsWith('pair:') && k.slice(k.indexOf('|') + 1) === target.name)
        : (k: string) => k === `addr:${target.address}` || k === `miss:${target.address}` || k.startsWith(`pair:${target.address}|`);
    let n = 0;
    for (const k of [...this.counters.keys()]) {
      if (match(k)) {
        this.counters.delete(k);
        n++;
      }
    }
    if (n > 0) this.onChange('counters');
    return Promise.resolve(n);
  }

  entries(now: number): Promise<StoredCounter[]> {
    const out: StoredCounter[] = [];
    for (const [key, c] of this.counters) {
      if (c.until > now || c.resetAt > now) out.push({ key, count: c.resetAt > now ? c.count : 0, resetAt: c.resetAt, until: c.until > now ? c.until : 0 });
    }
    return Promise.resolve(out);
  }

  familiarSeen(name: string, address: string): Promise<number> {
    return Promise.resolve(this.familiarMap.get(name)?.get(address) ?? 0);
  }

  familiar(name: string): Promise<FamiliarAddress[]> {
    const m = this.familiarMap.get(name);
    return Promise.resolve(m ? [...m].map(([address, lastSeen]) => ({ address, lastSeen })).sort((a, b) => b.lastSeen - a.lastSeen) : []);
  }

  touchFamiliar(name: string, address: string, now: number): Promise<void> {
    let m = this.familiarMap.get(name);
    const before = m?.get(address);
    if (m) this.familiarMap.delete(name);
    m ??= new Map();
    this.familiarMap.set(name, m); // most recently active user last
    const fresh = before === undefined || now - before >= FAMILIAR_RESOLUTION_MS;
    m.delete(address);
    m.set(address, fresh ? now : before); // most recent address last; last-seen kept to the hour
    while (m.size > this.limits.maxFamiliarPerUser) m.delete(m.keys().next().value as string);
    while (this.familiarMap.size > this.limits.maxFamiliarUsers) this.familiarMap.delete(this.familiarMap.keys().next().value as string);
    // a new address is persisted at once; a known one only when its last-seen time moved by an hour or more
    if (fresh) this.onChange('familiar');
    return Promise.resolve();
  }

  expireFamiliar(now: number, maxAgeMs: number): Promise<void> {
    let changed = false;
    for (const [name, m] of this.familiarMap) {
      for (const [address, seen] of m) {
        if (now - seen >= maxAgeMs) {
          m.delete(address);
          changed = true;
        }
      }
      if (m.size === 0) this.familiarMap.delete(name);
    }
    if (changed) this.onChange('familiar');
    return Promise.resolve();
  }

  /** A plain-data copy for persistence: live entries only, at most MAX_PERSISTED_COUNTERS counters. */
  dumpCounters(now: number): StoredCounter[] {
    const blocked: StoredCounter[] = [];
    const open: StoredCounter[] = [];
    for (const [key, c] of this.counters) {
      if (c.until > now) blocked.push({ key, count: c.count, resetAt: c.resetAt, until: c.until });
      else if (c.resetAt > now) open.push({ key, count: c.count, resetAt: c.resetAt, until: 0 });
    }
    return [...blocked.slice(-MAX_PERSISTED_COUNTERS), ...open.slice(-Math.max(0, MAX_PERSISTED_COUNTERS - blocked.length))];
  }

  dumpFamiliar(): Record<string, FamiliarAddress[]> {
    const familiar: Record<string, FamiliarAddress[]> = {};
    for (const [name, m] of this.familiarMap) familiar[name] = [...m].map(([address, lastSeen]) => ({ address, lastSeen }));
    return familiar;
  }

  dump(now: number): ThrottleDump {
    return { counters: this.dumpCounters(now), familiar: this.dumpFamiliar() };
  }

  loadCounters(counters: readonly StoredCounter[], now: number): void {
    for (const c of counters) {
      if (c.until > now || c.resetAt > now) this.put(c.key, { count: c.resetAt > now ? c.count : 0, resetAt: c.resetAt > now ? c.resetAt : 0, until: c.until }, now);
    }
  }

  loadFamiliar(familiar: Record<string, readonly FamiliarAddress[]>): void {
    for (const [name, list] of Object.entries(familiar)) {
      const m = new Map<string, number>();
      for (const f of [...list].sort((a, b) => a.lastSeen - b.lastSeen)) m.set(f.address, f.lastSeen);
      while (m.size > this.limits.maxFamiliarPerUser) m.delete(m.keys().next().value as string);
      this.familiarMap.set(name, m);
    }
    while (this.familiarMap.size > this.limits.maxFamiliarUsers) this.familiarMap.delete(this.familiarMap.keys().next().value as string);
  }
}
