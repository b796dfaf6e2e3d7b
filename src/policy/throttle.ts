/*
 * NAME
 *   policy/throttle — may this name try a password from this address now, and what does an attempt cost?
 *
 * THREAT
 *   Online password guessing, and the reverse: an attacker turning the guard against the users it protects
 *   (locking a name from anywhere, locking a shared office address, telling "locked" from "wrong" by timing).
 *   Modelled on Dovecot's auth_penalty (delay, never an instant answer), fail2ban (per-address bans) and
 *   Entra smart lockout (failures from unfamiliar places never lock the user out of familiar ones).
 *
 * MODEL
 *   An address is an IPv4 /32 or an IPv6 /64 (addressKey). It is *familiar* for a user when that user logged
 *   in successfully from it within `auth.familiar.days`. Three fixed-window counters (the window starts at the
 *   first counted event and lasts `auth.lockout.window_s`, as a Redis INCR+PEXPIRE would):
 *     pair     failures of one name from one address           limit auth.lockout.failures
 *     user     failures of one name from its UNFAMILIAR places  limit auth.lockout.failures
 *     address  failures from one address, all names together    limit auth.throttle.address_failures
 *                                                               (auth.throttle.exempt_address_failures for
 *                                                               addresses in auth.throttle_exempt)
 *   Reaching a limit throttles that key for `auth.lockout.lock_s`. An attempt is counted before its password
 *   is checked (reservationOver), so parallel attempts cannot overrun a limit. A throttled attempt is not checked (no
 *   password comparison, no directory query), is not a failure, and is answered with a temporary refusal after
 *   the same delay a failure would get: the delay grows with the address's misses (failures and throttled
 *   attempts together) in the window: base_ms, 2·base_ms, 4·base_ms … capped at max_ms. Counters are keyed by
 *   the name as typed (lower-cased), never by whether the user exists, so an unknown name behaves exactly like
 *   a known one.
 *
 * RULES (first non-dunno wins; they run after auth.tls_required and before any password check)
 *   auth.throttle_pair      reject  this name failed too often from this address (familiar or not)
 *   auth.throttle_familiar  permit  the address is familiar for this name: user and address throttles do not apply
 *   auth.throttle_user      reject  this name failed too often from unfamiliar addresses
 *   auth.throttle_address   reject  this address failed too often, over all names
 *   auth.throttle_none      permit  no throttle applies: the password may be checked
 *
 * All functions here are pure: the counters come in as a snapshot (ThrottleFacts), time as `now`.
 */
import { evaluate, permit, reject, dunno } from './decision.js';
import { addressWords, cidrMatches, normalizeIp, type CidrRule } from './network.js';
import type { Decision } from './types.js';

export interface ThrottleSettings {
  /** auth.lockout.failures: per (name, address) and per name from unfamiliar addresses */
  readonly failures: number;
  /** auth.throttle.address_failures */
  readonly addressFailures: number;
  /** auth.throttle.exempt_address_failures */
  readonly exemptAddressFailures: number;
  readonly windowMs: number;
  readonly lockMs: number;
  /** 0 = familiarity off (every address is unfamiliar) */
  readonly familiarMs: number;
  readonly delayBaseMs: number;
  readonly delayMaxMs: number;
  readonly exempt: readonly CidrRule[];
}

export type CounterKind = 'pair' | 'user' | 'address';

/** One counter as read from the store: events in the current window and the throttle end (0 = none). */
export interface CounterState {
  readonly count: number;
  /** when the current window ends (0 = no window open) */
  readonly resetAt: number;
  readonly until: number;
}

export const EMPTY_COUNTER: CounterState = Object.freeze({ count: 0, resetAt: 0, until: 0 });

/** Everything the rules look at, read from the store in one go before the password is touched. */
export interface ThrottleFacts {
  /** lower-cased name as typed (may not exist) */
  readonly name: string;
  /** addressKey() of the client */
  readonly address: string;
  readonly exempt: boolean;
  /** last successful login of `name` from `address` (0 = never) */
  readonly familiarSeen: number;
  readonly pair: CounterState;
  readonly user: CounterState;
  readonly addr: CounterState;
  /** misses (failures + throttled attempts) from the address in the window */
  readonly misses: CounterState;
  readonly now: number;
}

/** The store keys of one attempt. Addresses never contain `|`, so `pair:ADDRESS|NAME` splits unambiguously. */
export interface ThrottleKeys {
  readonly pair: string;
  readonly user: string;
  readonly addr: string;
  readonly misses: string;
}

export function throttleKeys(name: string, address: string): ThrottleKeys {
  return { pair: `pair:${address}|${name}`, user: `user:${name}`, addr: `addr:${address}`, misses: `miss:${address}` };
}

/** Parse a store key back into what it throttles (for listings). */
export function describeKey(key: string): { kind: CounterKind | 'misses'; address: string | null; name: string | null } | null {
  const colon = key.indexOf(':');
  const kind = key.slice(0, colon);
  const rest = key.slice(colon + 1);
  if (kind === 'pair') {
    const bar = rest.indexOf('|');
    return bar < 0 ? null : { kind: 'pair', address: rest.slice(0, bar), name: rest.slice(bar + 1) };
  }
  if (kind === 'user') return { kind: 'user', address: null, name: rest };
  if (kind === 'addr') return { kind: 'address', address: rest, name: null };
  if (kind === 'miss') return { kind: 'misses', address: rest, name: null };
  return null;
}

/** A login name as the counters see it: lower-cased, at most 64 characters, nothing unprintable. */
export function throttleName(user: string): string {
  return user.slice(0, 64).toLowerCase().replace(/[^\x21-\x7e]/g, '?');
}

/** IPv4: the address itself; IPv6: its /64 (one customer network, as every provider hands out). */
export function addressKey(rawIp: string): string {
  const ip = normalizeIp(rawIp);
  if (ip === null) return `invalid:${rawIp.slice(0, 64).replace(/[^\x21-\x7e]/g, '?').replace(/\|/g, '?')}`;
  if (!ip.includes(':')) return ip;
  const w = addressWords(ip, 6);
  if (!w) return ip;
  const hex = (n: number) => [(n >>> 16).toString(16), (n & 0xffff).toString(16)];
  return `${[...hex(w[0]), ...hex(w[1])].join(':')}::/64`;
}

export function isExempt(settings: ThrottleSettings, rawIp: string): boolean {
  const ip = normalizeIp(rawIp);
  return ip !== null && settings.exempt.some((r) => cidrMatches(r, ip));
}

const live = (c: CounterState, now: number) => c.until > now;
const secs = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

export function isFamiliar(f: ThrottleFacts, s: ThrottleSettings): boolean {
  return s.familiarMs > 0 && f.familiarSeen > 0 && f.now - f.familiarSeen < s.familiarMs;
}

export function addressLimit(f: { exempt: boolean }, s: ThrottleSettings): number {
  return f.exempt ? s.exemptAddressFailures : s.addressFailures;
}

export function decideThrottle(f: ThrottleFacts, s: ThrottleSettings): Decision {
  const familiar = isFamiliar(f, s);
  return evaluate(
    [
      {
        name: 'auth.throttle_pair',
        check: (x: ThrottleFacts) =>
          live(x.pair, x.now)
            ? reject(`${x.name} from ${x.address}: ${s.failures} failures within ${secs(s.windowMs)} s; throttled for ${secs(x.pair.until - x.now)} s more`)
            : dunno(`${x.name} from ${x.address}: ${x.pair.count}/${s.failures} failures in the window`),
      },
      {
        name: 'auth.throttle_familiar',
        check: (x: ThrottleFacts) =>
          familiar
            ? permit(`${x.address} is familiar for ${x.name} (last login ${new Date(x.familiarSeen).toISOString()}); failures elsewhere and from other names here do not block it`)
            : dunno(s.familiarMs === 0 ? 'familiarity is off (auth.familiar.days: 0)' : `${x.address} is not familiar for ${x.name}`),
      },
      {
        name: 'auth.throttle_user',
        check: (x: ThrottleFacts) =>
          live(x.user, x.now)
            ? reject(`${x.name}: ${s.failures} failures from unfamiliar addresses within ${secs(s.windowMs)} s; unfamiliar addresses throttled for ${secs(x.user.until - x.now)} s more`)
            : dunno(`${x.name}: ${x.user.count}/${s.failures} failures from unfamiliar addresses in the window`),
      },
      {
        name: 'auth.throttle_address',
        check: (x: ThrottleFacts) => {
          const limit = addressLimit(x, s);
          const label = x.exempt ? ' (auth.throttle_exempt)' : '';
          return live(x.addr, x.now)
            ? reject(`${x.address}${label}: ${limit} failures over all names within ${secs(s.windowMs)} s; throttled for ${secs(x.addr.until - x.now)} s more`)
            : dunno(`${x.address}${label}: ${x.addr.count}/${limit} failures over all names in the window`);
        },
      },
      { name: 'auth.throttle_none', check: () => permit('no throttle applies; the password may be checked') },
    ],
    f,
    { rule: 'auth.throttle_default', reason: 'authentication refused' },
  );
}

/** Is this decision a throttle refusal (temporary reply, password not checked)? */
export function isThrottled(d: Decision): boolean {
  return !d.allow && d.rule.startsWith('auth.throttle_');
}

export type AttemptOutcome = 'success' | 'failure' | 'throttled';

/** Which counters one attempt adds to (pure). A success adds nothing: it clears the pair and makes the address familiar. */
export function countersHit(f: ThrottleFacts, outcome: AttemptOutcome, s: ThrottleSettings): Array<keyof ThrottleKeys> {
  if (outcome === 'success') return [];
  if (outcome === 'throttled') return ['misses'];
  return isFamiliar(f, s) ? ['pair', 'addr', 'misses'] : ['pair', 'user', 'addr', 'misses'];
}

/** The throttles an attempt starts, given the counts after it was counted (pure). */
export function throttlesStarted(f: ThrottleFacts, counts: Partial<Record<keyof ThrottleKeys, number>>, s: ThrottleSettings): Array<{ kind: CounterKind; until: number; count: number }> {
  const out: Array<{ kind: CounterKind; until: number; count: number }> = [];
  const until = f.now + s.lockMs;
  const check = (kind: CounterKind, key: 'pair' | 'user' | 'addr', limit: number) => {
    const n = counts[key];
    if (n !== undefined && n >= limit && !live(f[key], f.now)) out.push({ kind, until, count: n });
  };
  check('pair', 'pair', s.failures);
  check('user', 'user', s.failures);
  check('address', 'addr', addressLimit(f, s));
  return out;
}

/**
 * An attempt is counted as a failure *before* its password is checked (and uncounted if it succeeds), so that
 * attempts running at the same time cannot all slip under a limit. Given the counts including this attempt,
 * the counter whose limit was already full (pure); null when the attempt may go on to the password check.
 */
export function reservationOver(f: ThrottleFacts, counts: Partial<Record<keyof ThrottleKeys, number>>, s: ThrottleSettings): CounterKind | null {
  if ((counts.pair ?? 0) > s.failures) return 'pair';
  if (isFamiliar(f, s)) return null;
  if ((counts.user ?? 0) > s.failures) return 'user';
  if ((counts.addr ?? 0) > addressLimit(f, s)) return 'address';
  return null;
}

/**
 * The delay before answering a failure or a throttled attempt: the n-th miss from an address inside the window
 * waits base·2^(n-1), capped at max. `misses` counts this attempt.
 */
export function missDelayMs(misses: number, s: Pick<ThrottleSettings, 'delayBaseMs' | 'delayMaxMs'>): number {
  if (misses <= 0) return 0;
  return Math.min(s.delayMaxMs, s.delayBaseMs * 2 ** Math.min(misses - 1, 30));
}

/** The lines `gatehouse explain` prints under the verdict: familiarity, each counter, its limit and window. */
export function explainThrottle(f: ThrottleFacts, s: ThrottleSettings): string[] {
  const fmt = (c: CounterState, limit: number) => {
    const window = c.resetAt > f.now ? `window ends in ${secs(c.resetAt - f.now)} s` : 'no window open';
    const thr = live(c, f.now) ? `; THROTTLED for ${secs(c.until - f.now)} s more` : '';
    return `${c.resetAt > f.now ? c.count : 0}/${limit} (${window}${thr})`;
  };
  const familiar = isFamiliar(f, s);
  return [
    `address ${f.address}${f.exempt ? ' (in auth.throttle_exempt)' : ''}; familiar for ${f.name}: ${familiar ? `yes, last login ${new Date(f.familiarSeen).toISOString()}` : s.familiarMs === 0 ? 'no (familiarity off)' : 'no'}`,
    `failures of ${f.name} from ${f.address}: ${fmt(f.pair, s.failures)}`,
    `failures of ${f.name} from unfamiliar addresses: ${fmt(f.user, s.failures)}${familiar ? ' — does not apply here' : ''}`,
    `failures from ${f.address} over all names: ${fmt(f.addr, addressLimit(f, s))}${familiar ? ' — does not apply here' : ''}`,
    `next miss from ${f.address} is answered after ${missDelayMs((f.misses.resetAt > f.now ? f.misses.count : 0) + 1, s)} ms; counters window ${secs(s.windowMs)} s, throttles last ${secs(s.lockMs)} s`,
  ];
}
