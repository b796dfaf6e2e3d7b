/*
 * Login throttling, table-driven with the clock injected: each row is a history of attempts (name, address,
 * right or wrong password, time) fed through the policy core exactly as a listener does, then one probe whose
 * decision rule, reply kind and counters are checked. Passwords are checked by a stand-in user store, so the
 * rows run in microseconds.
 */
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { UserStore, type UserRecord } from '../../src/identity/users.js';
import { Policy, listThrottles } from '../../src/policy/index.js';
import type { DecisionRecord } from '../../src/policy/audit.js';
import { addressKey, decideThrottle, EMPTY_COUNTER, missDelayMs, throttleKeys, type ThrottleFacts } from '../../src/policy/throttle.js';
import { MemoryThrottleStore } from '../../src/policy/throttle-store.js';
import type { Identity } from '../../src/policy/types.js';

const GOOD = 'right-password-123';
/** nothing is written there: the policy core does no I/O; the config just needs a state folder of its own */
const STATE = path.join(os.tmpdir(), 'gatehouse-throttle-unit');
const MIN = 60_000;
const DAY = 86_400_000;

class FakeUsers extends UserStore {
  verifications = 0;
  constructor() {
    super('/nonexistent/users.yaml', 10);
  }
  // alice and bob exist (the policy asks the users file, as an identity source, who is known)
  override has(name: string): boolean {
    return name === 'alice' || name === 'bob';
  }
  override get(name: string): UserRecord | undefined {
    return this.has(name) ? { name, hash: '', groups: [] } : undefined;
  }
  override verify(name: string, password: string): Promise<Identity | null> {
    this.verifications++;
    return Promise.resolve((name === 'alice' || name === 'bob') && password === GOOD ? { kind: 'user', name, groups: [] } : null);
  }
}

function makePolicy(auth: Record<string, unknown> = {}, store?: MemoryThrottleStore) {
  const config = parseConfig({ state_dir: STATE, auth: { bcrypt_cost: 10, ...auth } }, '<test>', STATE);
  const users = new FakeUsers();
  const log: DecisionRecord[] = [];
  let now = 1_000 * DAY;
  const policy = new Policy(config, users, (r) => log.push(r), () => now, store);
  return {
    policy,
    users,
    log,
    at: (t: number) => (now = 1_000 * DAY + t),
    async attempt(name: string, ip: string, ok = false) {
      return policy.authenticate({ service: 'smtp', ip, identity: { kind: 'none' }, session: 't' }, name, ok ? GOOD : 'wrong-password', true);
    },
  };
}

type Step = [name: string, ip: string, ok: boolean, t: number, times?: number];
interface Row {
  readonly what: string;
  readonly auth?: Record<string, unknown>;
  readonly history: readonly Step[];
  readonly probe: Step;
  /** the deciding rule of the probe */
  readonly rule: string;
}

const rows: Row[] = [
  { what: 'a fresh name and address may try', history: [], probe: ['alice', '127.0.0.40', false, 0], rule: 'auth.bad_credentials' },
  { what: 'the right password from a fresh address logs in', history: [], probe: ['alice', '127.0.0.40', true, 0], rule: 'auth.password' },
  { what: 'four failures are not yet a throttle', history: [['alice', '127.0.0.30', false, 0, 4]], probe: ['alice', '127.0.0.30', true, MIN], rule: 'auth.password' },
  { what: 'lockout.failures from one address throttle that name there', history: [['alice', '127.0.0.30', false, 0, 5]], probe: ['alice', '127.0.0.30', true, MIN], rule: 'auth.throttle_pair' },
  {
    what: 'failures elsewhere throttle the name from an unfamiliar address',
    history: [['alice', '127.0.0.30', false, 0, 20]],
    probe: ['alice', '127.0.0.40', true, MIN],
    rule: 'auth.throttle_user',
  },
  {
    what: 'failures elsewhere never block a familiar address',
    history: [['alice', '127.0.0.20', true, 0], ['alice', '127.0.0.30', false, MIN, 20]],
    probe: ['alice', '127.0.0.20', true, 2 * MIN],
    rule: 'auth.password',
  },
  {
    what: 'a familiar address still counts its own failures (per name and address)',
    history: [['alice', '127.0.0.20', true, 0], ['alice', '127.0.0.20', false, MIN, 5]],
    probe: ['alice', '127.0.0.20', true, 2 * MIN],
    rule: 'auth.throttle_pair',
  },
  {
    what: 'failures from a familiar address do not count against the name elsewhere',
    history: [['alice', '127.0.0.20', true, 0], ['alice', '127.0.0.20', false, MIN, 5]],
    probe: ['alice', '127.0.0.40', true, 2 * MIN],
    rule: 'auth.password',
  },
  {
    what: 'familiarity ends after auth.familiar.days',
    history: [['alice', '127.0.0.20', true, 0], ['alice', '127.0.0.30', false, 31 * DAY, 5]],
    probe: ['alice', '127.0.0.20', true, 31 * DAY + MIN],
    rule: 'auth.throttle_user',
  },
  {
    what: 'familiarity off: failures anywhere throttle the name everywhere but its own pair',
    auth: { familiar: { days: 0 } },
    history: [['alice', '127.0.0.20', true, 0], ['alice', '127.0.0.30', false, MIN, 5]],
    probe: ['alice', '127.0.0.20', true, 2 * MIN],
    rule: 'auth.throttle_user',
  },
  {
    what: 'an unknown name is throttled exactly like a known one',
    history: [['nosuchuser', '127.0.0.30', false, 0, 20]],
    probe: ['nosuchuser', '127.0.0.40', false, MIN],
    rule: 'auth.throttle_user',
  },
  {
    what: 'names are counted case-insensitively',
    history: [['ALICE', '127.0.0.30', false, 0, 3], ['Alice', '127.0.0.31', false, 0, 2]],
    probe: ['alice', '127.0.0.40', true, MIN],
    rule: 'auth.throttle_user',
  },
  {
    what: 'address_failures over many names throttle the address',
    history: Array.from({ length: 20 }, (_, i): Step => [`guess${i}`, '127.0.0.30', false, i]),
    probe: ['bob', '127.0.0.30', true, MIN],
    rule: 'auth.throttle_address',
  },
  {
    what: 'a throttled address does not block a user familiar with it (one bad client, one office)',
    history: [['bob', '127.0.0.30', true, 0], ...Array.from({ length: 20 }, (_, i): Step => [`guess${i}`, '127.0.0.30', false, MIN + i])],
    probe: ['bob', '127.0.0.30', true, 2 * MIN],
    rule: 'auth.password',
  },
  {
    what: 'an exempt address gets the higher limit',
    auth: { throttle_exempt: ['127.0.0.0/29'] },
    history: Array.from({ length: 20 }, (_, i): Step => [`guess${i}`, '127.0.0.5', false, i]),
    probe: ['bob', '127.0.0.5', true, MIN],
    rule: 'auth.password',
  },
  {
    what: 'an exempt address is never unlimited',
    auth: { throttle_exempt: ['127.0.0.0/29'], throttle: { exempt_address_failures: 30 } },
    history: Array.from({ length: 30 }, (_, i): Step => [`guess${i}`, '127.0.0.5', false, i]),
    probe: ['bob', '127.0.0.5', true, MIN],
    rule: 'auth.throttle_address',
  },
  {
    what: 'failures outside the window do not add up',
    auth: { lockout: { window_s: 60 } },
    history: [['alice', '127.0.0.30', false, 0, 4], ['alice', '127.0.0.30', false, 61_000]],
    probe: ['alice', '127.0.0.30', true, 62_000],
    rule: 'auth.password',
  },
  {
    what: 'a throttle ends after lock_s',
    auth: { lockout: { lock_s: 300, window_s: 300 } },
    history: [['alice', '127.0.0.30', false, 0, 5]],
    probe: ['alice', '127.0.0.30', true, 301_000],
    rule: 'auth.password',
  },
  {
    what: 'a success clears the name+address counter',
    history: [['alice', '127.0.0.30', false, 0, 4], ['alice', '127.0.0.30', true, 1], ['alice', '127.0.0.30', false, 2, 4]],
    probe: ['alice', '127.0.0.30', true, MIN],
    rule: 'auth.password',
  },
  {
    what: 'IPv6 addresses count per /64',
    history: [['alice', '2001:db8:0:1::1', false, 0, 3], ['alice', '2001:db8:0:1:ffff::2', false, 0, 2]],
    probe: ['alice', '2001:db8:0:1::99', true, MIN],
    rule: 'auth.throttle_pair',
  },
  {
    what: 'another /64 is another address (but the name is throttled from unfamiliar places)',
    auth: { lockout: { failures: 6 } },
    history: [['alice', '2001:db8:0:1::1', false, 0, 5]],
    probe: ['alice', '2001:db8:0:2::1', true, MIN],
    rule: 'auth.password',
  },
  {
    what: 'IPv4-mapped IPv6 is the IPv4 address',
    history: [['alice', '::ffff:127.0.0.30', false, 0, 5]],
    probe: ['alice', '127.0.0.30', true, MIN],
    rule: 'auth.throttle_pair',
  },
];

describe('login throttle rules', () => {
  it.each(rows)('$what', async (row) => {
    const p = makePolicy(row.auth);
    for (const [name, ip, ok, t, times = 1] of row.history) {
      p.at(t);
      for (let i = 0; i < times; i++) await p.attempt(name, ip, ok);
    }
    p.at(row.probe[3]);
    const before = p.users.verifications;
    const out = await p.attempt(row.probe[0], row.probe[1], row.probe[2]);
    expect(out.decision.rule).toBe(row.rule);
    const throttled = row.rule.startsWith('auth.throttle_');
    expect(out.temporary).toBe(throttled);
    // a throttled attempt never reaches the password check (nor a directory behind it)
    expect(p.users.verifications - before).toBe(throttled ? 0 : 1);
    if (!out.decision.allow) expect(out.delayMs).toBeGreaterThan(0);
  });

  it('logs each throttle as it starts (phase lockout) and the verdict names the rule', async () => {
    const p = makePolicy();
    for (let i = 0; i < 5; i++) await p.attempt('alice', '127.0.0.30');
    const starts = p.log.filter((r) => r.phase === 'lockout').map((r) => r.rule).sort();
    expect(starts).toEqual(['auth.throttle_pair', 'auth.throttle_user']);
    await p.attempt('alice', '127.0.0.30', true);
    expect(p.log.at(-1)).toMatchObject({ phase: 'authenticate', verdict: 'deny', rule: 'auth.throttle_pair' });
    const list = await p.policy.throttles();
    expect(list.map((t) => t.kind).sort()).toEqual(['pair', 'user']);
  });

  it('throttled attempts are not failures: they never extend the name counters', async () => {
    const p = makePolicy();
    for (let i = 0; i < 20; i++) await p.attempt('alice', '127.0.0.30');
    const { facts } = await p.policy.throttleFacts('alice', '127.0.0.30');
    expect(facts.pair.count).toBe(5);
    expect(facts.user.count).toBe(5);
    expect(facts.misses.count).toBe(20); // but every miss raises the address's delay
  });
});

describe('attempts at the same time', () => {
  it('parallel attempts cannot overrun a limit: each is counted before its password is checked', async () => {
    const p = makePolicy();
    const outs = await Promise.all(Array.from({ length: 12 }, () => p.attempt('alice', '127.0.0.30')));
    expect(p.users.verifications).toBe(5);
    expect(outs.filter((o) => o.temporary).length).toBe(7);
    expect(outs.filter((o) => o.temporary).every((o) => o.decision.rule === 'auth.throttle_pair' && o.delayMs > 0)).toBe(true);
    expect((await p.attempt('alice', '127.0.0.30', true)).decision.rule).toBe('auth.throttle_pair');
  });

  it('a success takes back what was counted in advance', async () => {
    const p = makePolicy();
    for (let i = 0; i < 4; i++) await p.attempt('alice', '127.0.0.30');
    expect((await p.attempt('alice', '127.0.0.40', true)).decision.rule).toBe('auth.password');
    const { facts } = await p.policy.throttleFacts('alice', '127.0.0.41');
    expect(facts.user.count).toBe(4);
    expect((await p.policy.throttleFacts('alice', '127.0.0.40')).facts.addr.count).toBe(0);
  });
});

describe('delay: throttled and wrong are answered alike', () => {
  it('the n-th miss from an address waits base·2^(n-1), capped', () => {
    const s = { delayBaseMs: 500, delayMaxMs: 8000 };
    expect([0, 1, 2, 3, 4, 5, 6, 40].map((n) => missDelayMs(n, s))).toEqual([0, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('a throttled attempt waits what a failure in its place would have waited', async () => {
    const wrong = makePolicy();
    const locked = makePolicy();
    for (let i = 0; i < 5; i++) await locked.attempt('alice', '127.0.0.30'); // alice now throttled from unfamiliar places
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < 6; i++) {
      a.push((await wrong.attempt('bob', '127.0.0.40')).delayMs); // plain failures
      const out = await locked.attempt('alice', '127.0.0.40');
      expect(out.temporary).toBe(true);
      b.push(out.delayMs);
    }
    // the throttled side adds the measured password-check time, ~0 with the stand-in store
    expect(b.map((d) => Math.round(d / 100))).toEqual(a.map((d) => Math.round(d / 100)));
  });

  it('configurable (auth.delay)', async () => {
    const p = makePolicy({ delay: { base_ms: 10, max_ms: 40 } });
    const d: number[] = [];
    for (let i = 0; i < 5; i++) d.push((await p.attempt('alice', '127.0.0.30')).delayMs);
    expect(d).toEqual([10, 20, 40, 40, 40]);
  });
});

describe('decideThrottle (pure)', () => {
  const settings = { failures: 5, addressFailures: 20, exemptAddressFailures: 200, windowMs: 900_000, lockMs: 900_000, familiarMs: 30 * DAY, delayBaseMs: 500, delayMaxMs: 8000, exempt: [] };
  const base: ThrottleFacts = { name: 'alice', address: '127.0.0.40', exempt: false, familiarSeen: 0, pair: EMPTY_COUNTER, user: EMPTY_COUNTER, addr: EMPTY_COUNTER, misses: EMPTY_COUNTER, now: 10 * DAY };
  const on = { count: 5, resetAt: 10 * DAY + 1000, until: 10 * DAY + 1000 };
  const cases: Array<[string, Partial<ThrottleFacts>, string]> = [
    ['nothing applies', {}, 'auth.throttle_none'],
    ['pair beats familiarity', { pair: on, familiarSeen: 10 * DAY - 1 }, 'auth.throttle_pair'],
    ['familiar skips user and address', { user: on, addr: on, familiarSeen: 10 * DAY - DAY }, 'auth.throttle_familiar'],
    ['user', { user: on }, 'auth.throttle_user'],
    ['address', { addr: on }, 'auth.throttle_address'],
    ['an expired throttle is no throttle', { user: { ...on, until: 10 * DAY } }, 'auth.throttle_none'],
  ];
  it.each(cases)('%s', (_n, f, rule) => {
    expect(decideThrottle({ ...base, ...f }, settings).rule).toBe(rule);
  });

  it('addressKey: IPv4 /32, IPv6 /64, mapped IPv4', () => {
    expect(addressKey('127.0.0.30')).toBe('127.0.0.30');
    expect(addressKey('::ffff:127.0.0.30')).toBe('127.0.0.30');
    expect(addressKey('2001:db8:0:1:2:3:4:5')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:DB8:0:1::9')).toBe('2001:db8:0:1::/64');
    expect(addressKey('garbage|x')).not.toContain('|');
  });
});

describe('MemoryThrottleStore bounds', () => {
  it('keeps at most maxKeys counters, least recently used first out', async () => {
    const s = new MemoryThrottleStore({ maxKeys: 10, maxFamiliarPerUser: 3, maxFamiliarUsers: 2 });
    for (let i = 0; i < 50; i++) await s.hit([`addr:10.0.0.${i}`], 0, 1000);
    expect(s.size).toBe(10);
    expect((await s.read(['addr:10.0.0.0', 'addr:10.0.0.49'], 1)).map((c) => c.count)).toEqual([0, 1]);
  });

  it('keeps at most maxFamiliarPerUser addresses (newest) and maxFamiliarUsers users', async () => {
    const s = new MemoryThrottleStore({ maxKeys: 10, maxFamiliarPerUser: 3, maxFamiliarUsers: 2 });
    for (let i = 0; i < 5; i++) await s.touchFamiliar('alice', `10.0.0.${i}`, i);
    expect((await s.familiar('alice')).map((f) => f.address)).toEqual(['10.0.0.4', '10.0.0.3', '10.0.0.2']);
    await s.touchFamiliar('bob', '10.0.0.9', 9);
    await s.touchFamiliar('carol', '10.0.0.9', 10);
    expect(await s.familiar('alice')).toEqual([]);
    expect(await s.familiarSeen('carol', '10.0.0.9')).toBe(10);
  });

  it('expires counters with their window and clears by name or address', async () => {
    const s = new MemoryThrottleStore();
    const k = throttleKeys('alice', '127.0.0.30');
    await s.hit([k.pair, k.user, k.addr, k.misses], 0, 1000);
    await s.block(k.user, 5000, 0);
    expect((await s.read([k.pair], 999))[0]!.count).toBe(1);
    expect((await s.read([k.pair], 1000))[0]!.count).toBe(0);
    expect((await listThrottles(s, 10)).map((t) => t.kind)).toEqual(['user']);
    expect(await s.clear({ name: 'alice' })).toBeGreaterThanOrEqual(1);
    expect(await listThrottles(s, 10)).toEqual([]);
    await s.hit([k.pair, k.addr], 0, 1000);
    expect(await s.clear({ address: '127.0.0.30' })).toBe(3); // pair, addr and miss keys of that address
  });
});

describe('MemoryThrottleStore under a flood', () => {
  it('a flood of fresh keys does not push a live throttle out of memory', async () => {
    const s = new MemoryThrottleStore({ maxKeys: 10, maxFamiliarPerUser: 3, maxFamiliarUsers: 2 });
    await s.block('user:alice', 10_000, 0);
    for (let i = 0; i < 100; i++) await s.hit([`addr:10.0.1.${i}`], 1, 1000);
    expect(s.size).toBe(10);
    expect((await s.read(['user:alice'], 2))[0]!.until).toBe(10_000);
  });

  it('a known familiar address is re-persisted at most hourly', async () => {
    const s = new MemoryThrottleStore();
    let writes = 0;
    s.onChange = (what) => void (what === 'familiar' && writes++);
    await s.touchFamiliar('alice', '127.0.0.20', 0);
    for (let i = 1; i < 60; i++) await s.touchFamiliar('alice', '127.0.0.20', i * 60_000);
    expect(writes).toBe(1);
    expect(await s.familiarSeen('alice', '127.0.0.20')).toBe(0);
    await s.touchFamiliar('alice', '127.0.0.20', 3_600_000);
    await s.touchFamiliar('alice', '127.0.0.21', 3_600_001);
    expect(writes).toBe(3);
    expect(await s.familiarSeen('alice', '127.0.0.20')).toBe(3_600_000);
  });
});
