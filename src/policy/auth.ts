/*
 * NAME
 *   policy/auth — may this client try a password now, and what does a failure cost it?
 *
 * THREAT
 *   Password sniffing (plaintext AUTH), online guessing and user enumeration. Passwords are only taken over
 *   TLS unless a listener is explicitly configured otherwise; failures are counted per client address and
 *   per user name inside a sliding window; past the limit the address or the name is locked out for
 *   `lock_s`, and every failure adds a growing delay before the reply. Unknown user and wrong password are
 *   one outcome (`auth.bad_credentials`) with one reason, so the reply cannot tell them apart.
 *
 * RULES before the password is checked (first non-dunno wins)
 *   auth.tls_required   reject   the session is not encrypted and the service requires TLS for passwords
 *   auth.lockout_ip     reject   this client address is locked out
 *   auth.lockout_user   reject   this user name is locked out
 *   auth.precheck       permit   go on and verify the password
 *
 * RULES after (decideAuthResult)
 *   auth.password          permit   the identity source accepted the password
 *   auth.bad_credentials   reject   unknown user or wrong password (one outcome)
 *   auth.unavailable       reject   the identity source that knows names (a directory) could not be asked:
 *                                   a temporary refusal, not counted as a failure (an outage must not lock
 *                                   everyone out); listeners answer with their temporary code
 */
import { evaluate, permit, reject, dunno, allow, deny } from './decision.js';
import type { Decision } from './types.js';

export interface LockoutSettings {
  readonly failures: number;
  readonly windowMs: number;
  readonly lockMs: number;
}

interface Counter {
  times: number[];
  lockedUntil: number;
}

export interface LockEntry {
  readonly kind: 'ip' | 'user';
  readonly key: string;
  readonly until: number;
  readonly failures: number;
}

/**
 * The one piece of mutable state in the policy core: failure counters. Time is passed in, so tests and
 * `explain` drive it deterministically. Memory is bounded: stale counters are swept, and at most
 * `maxKeys` names/addresses are tracked (the oldest are forgotten first).
 */
export class FailureCounters {
  private readonly ips = new Map<string, Counter>();
  private readonly users = new Map<string, Counter>();

  constructor(
    private settings: LockoutSettings,
    private readonly maxKeys = 100_000,
  ) {}

  configure(settings: LockoutSettings): void {
    this.settings = settings;
  }

  lockedUntil(kind: 'ip' | 'user', key: string, now: number): number {
    const c = (kind === 'ip' ? this.ips : this.users).get(key);
    return c && c.lockedUntil > now ? c.lockedUntil : 0;
  }

  recentFailures(kind: 'ip' | 'user', key: string, now: number): number {
    const c = (kind === 'ip' ? this.ips : this.users).get(key);
    return c ? c.times.filter((t) => now - t < this.settings.windowMs).length : 0;
  }

  /** Count one failure; returns the entries that became locked by it. */
  recordFailure(ip: string, user: string | null, now: number): LockEntry[] {
    const locked: LockEntry[] = [];
    const bump = (map: Map<string, Counter>, kind: 'ip' | 'user', key: string) => {
      let c = map.get(key);
      if (!c) {
        if (map.size >= this.maxKeys) map.delete(map.keys().next().value!);
        c = { times: [], lockedUntil: 0 };
        map.set(key, c);
      }
      c.times = c.times.filter((t) => now - t < this.settings.windowMs);
      c.times.push(now);
      if (c.times.length >= this.settings.failures && c.lockedUntil <= now) {
        c.lockedUntil = now + this.settings.lockMs;
        locked.push({ kind, key, until: c.lockedUntil, failures: c.times.length });
      }
    };
    bump(this.ips, 'ip', ip);
    if (user) bump(this.users, 'user', user.toLowerCase());
    return locked;
  }

  /** A success clears the user's counter, not the address's (one good account must not launder guessing). */
  recordSuccess(user: string): void {
    this.users.delete(user.toLowerCase());
  }

  /** Re-impose a lock read back from disk (locks survive a restart). */
  restore(entry: LockEntry, now: number): void {
    if (entry.until <= now) return;
    const map = entry.kind === 'ip' ? this.ips : this.users;
    const c = map.get(entry.key) ?? { times: [], lockedUntil: 0 };
    c.lockedUntil = Math.max(c.lockedUntil, entry.until);
    map.set(entry.key, c);
  }

  unlock(kind: 'ip' | 'user', key: string): boolean {
    return (kind === 'ip' ? this.ips : this.users).delete(kind === 'user' ? key.toLowerCase() : key);
  }

  /** Progressive delay before answering a failure: 0.5 s, 1 s, 2 s … capped at 8 s. */
  delayMs(ip: string, now: number): number {
    const n = this.recentFailures('ip', ip, now);
    return n === 0 ? 0 : Math.min(8000, 250 * 2 ** Math.min(n, 5));
  }

  locks(now: number): LockEntry[] {
    const out: LockEntry[] = [];
    for (const [kind, map] of [['ip', this.ips], ['user', this.users]] as const) {
      for (const [key, c] of map) if (c.lockedUntil > now) out.push({ kind, key, until: c.lockedUntil, failures: c.times.length });
    }
    return out;
  }

  sweep(now: number): void {
    for (const map of [this.ips, this.users]) {
      for (const [key, c] of map) {
        if (c.lockedUntil <= now && c.times.every((t) => now - t >= this.settings.windowMs)) map.delete(key);
      }
    }
  }
}

export interface AuthFacts {
  readonly ip: string;
  readonly user: string;
  readonly tls: boolean;
  readonly requiresTls: boolean;
  readonly now: number;
}

export function decideAuthPrecheck(counters: FailureCounters, f: AuthFacts): Decision {
  return evaluate(
    [
      {
        name: 'auth.tls_required',
        check: (x: AuthFacts) => (x.requiresTls && !x.tls ? reject('passwords are only accepted over TLS (use STARTTLS / AUTH TLS first)') : dunno(x.tls ? 'session is encrypted' : 'TLS not required by config')),
      },
      {
        name: 'auth.lockout_ip',
        check: (x: AuthFacts) => {
          const until = counters.lockedUntil('ip', x.ip, x.now);
          return until ? reject(`client ${x.ip} is locked out for ${Math.ceil((until - x.now) / 1000)} s after repeated failures`) : dunno();
        },
      },
      {
        name: 'auth.lockout_user',
        check: (x: AuthFacts) => {
          const until = counters.lockedUntil('user', x.user.toLowerCase(), x.now);
          return until ? reject(`user ${x.user} is locked out for ${Math.ceil((until - x.now) / 1000)} s after repeated failures`) : dunno();
        },
      },
      { name: 'auth.precheck', check: () => permit('credentials may be checked') },
    ],
    f,
    { rule: 'auth.default', reason: 'authentication refused' },
  );
}

/** The verdict after the password was compared. Unknown user and wrong password share rule and reason. */
export function decideAuthResult(precheck: Decision, verified: boolean | 'unavailable', user: string): Decision {
  if (verified === 'unavailable') return deny('auth.unavailable', 'the user directory cannot be reached; try again later', precheck.trace);
  return verified
    ? allow('auth.password', `authenticated as ${user}`, precheck.trace)
    : deny('auth.bad_credentials', 'user name or password not accepted', precheck.trace);
}
