import { describe, expect, it } from 'vitest';
import { FailureCounters, decideAuthPrecheck, decideAuthResult } from '../../src/policy/auth.js';

const settings = { failures: 3, windowMs: 60_000, lockMs: 300_000 };

describe('decideAuthPrecheck', () => {
  const rows: Array<[string, { tls: boolean; requiresTls: boolean; lockIp?: boolean; lockUser?: boolean }, boolean, string]> = [
    ['plaintext refused when TLS is required', { tls: false, requiresTls: true }, false, 'auth.tls_required'],
    ['TLS session may try', { tls: true, requiresTls: true }, true, 'auth.precheck'],
    ['plaintext allowed only when configured', { tls: false, requiresTls: false }, true, 'auth.precheck'],
    ['locked address refused', { tls: true, requiresTls: true, lockIp: true }, false, 'auth.lockout_ip'],
    ['locked user refused from a fresh address', { tls: true, requiresTls: true, lockUser: true }, false, 'auth.lockout_user'],
    ['TLS rule is checked before lockouts', { tls: false, requiresTls: true, lockIp: true }, false, 'auth.tls_required'],
  ];
  it.each(rows)('%s', (_n, f, allow, rule) => {
    const c = new FailureCounters(settings);
    const now = 1_000_000;
    if (f.lockIp) for (let i = 0; i < 3; i++) c.recordFailure('127.0.0.20', `u${i}`, now);
    if (f.lockUser) for (let i = 0; i < 3; i++) c.recordFailure(`127.0.0.${30 + i}`, 'alice', now);
    const d = decideAuthPrecheck(c, { ip: f.lockUser ? '127.0.0.99' : '127.0.0.20', user: 'alice', tls: f.tls, requiresTls: f.requiresTls, now });
    expect(d.allow).toBe(allow);
    expect(d.rule).toBe(rule);
  });
});

describe('FailureCounters', () => {
  it('locks after `failures` inside the window, and the lock expires', () => {
    const c = new FailureCounters(settings);
    const t = 5_000_000;
    expect(c.recordFailure('127.0.0.20', 'alice', t)).toEqual([]);
    expect(c.recordFailure('127.0.0.20', 'alice', t + 1)).toEqual([]);
    const locked = c.recordFailure('127.0.0.20', 'alice', t + 2);
    expect(locked.map((l) => l.kind).sort()).toEqual(['ip', 'user']);
    expect(c.lockedUntil('ip', '127.0.0.20', t + 3)).toBe(t + 2 + settings.lockMs);
    expect(c.lockedUntil('ip', '127.0.0.20', t + 2 + settings.lockMs)).toBe(0);
  });

  it('failures outside the window do not add up', () => {
    const c = new FailureCounters(settings);
    c.recordFailure('127.0.0.20', 'alice', 0);
    c.recordFailure('127.0.0.20', 'alice', 1);
    expect(c.recordFailure('127.0.0.20', 'alice', 70_000)).toEqual([]);
  });

  it('user names are counted case-insensitively', () => {
    const c = new FailureCounters(settings);
    c.recordFailure('127.0.0.21', 'Alice', 0);
    c.recordFailure('127.0.0.22', 'ALICE', 0);
    c.recordFailure('127.0.0.23', 'alice', 0);
    expect(c.lockedUntil('user', 'alice', 1)).toBeGreaterThan(0);
  });

  it('success clears the user counter but not the address counter', () => {
    const c = new FailureCounters(settings);
    c.recordFailure('127.0.0.20', 'alice', 0);
    c.recordFailure('127.0.0.20', 'alice', 0);
    c.recordSuccess('alice');
    expect(c.recentFailures('user', 'alice', 1)).toBe(0);
    expect(c.recentFailures('ip', '127.0.0.20', 1)).toBe(2);
  });

  it('delay grows with failures and is capped', () => {
    const c = new FailureCounters({ ...settings, failures: 100 });
    expect(c.delayMs('127.0.0.20', 0)).toBe(0);
    c.recordFailure('127.0.0.20', null, 0);
    const one = c.delayMs('127.0.0.20', 1);
    for (let i = 0; i < 20; i++) c.recordFailure('127.0.0.20', null, 0);
    const many = c.delayMs('127.0.0.20', 1);
    expect(one).toBeGreaterThan(0);
    expect(many).toBeGreaterThan(one);
    expect(many).toBeLessThanOrEqual(8000);
  });

  it('unlock and restore', () => {
    const c = new FailureCounters(settings);
    c.restore({ kind: 'user', key: 'bob', until: 10_000, failures: 3 }, 0);
    expect(c.lockedUntil('user', 'bob', 1)).toBe(10_000);
    expect(c.unlock('user', 'BOB')).toBe(true);
    expect(c.lockedUntil('user', 'bob', 1)).toBe(0);
  });

  it('tracks a bounded number of keys', () => {
    const c = new FailureCounters(settings, 10);
    for (let i = 0; i < 50; i++) c.recordFailure(`10.0.0.${i}`, null, 0);
    expect(c.recentFailures('ip', '10.0.0.0', 1)).toBe(0);
    expect(c.recentFailures('ip', '10.0.0.49', 1)).toBe(1);
  });
});

describe('decideAuthResult', () => {
  it('unknown user and wrong password are the same outcome', () => {
    const c = new FailureCounters(settings);
    const pre = decideAuthPrecheck(c, { ip: '127.0.0.1', user: 'x', tls: true, requiresTls: true, now: 0 });
    const a = decideAuthResult(pre, false, 'nosuchuser');
    const b = decideAuthResult(pre, false, 'alice');
    expect([a.allow, a.rule, a.reason]).toEqual([b.allow, b.rule, b.reason]);
    expect(decideAuthResult(pre, true, 'alice').rule).toBe('auth.password');
  });

  const rows: Array<[string, boolean | 'unavailable', boolean, string]> = [
    ['password accepted', true, true, 'auth.password'],
    ['unknown user or wrong password', false, false, 'auth.bad_credentials'],
    ['identity source could not be asked: temporary, not bad credentials', 'unavailable', false, 'auth.unavailable'],
  ];
  it.each(rows)('%s', (_name, verified, allow, rule) => {
    const pre = decideAuthPrecheck(new FailureCounters(settings), { ip: '127.0.0.1', user: 'x', tls: true, requiresTls: true, now: 0 });
    const d = decideAuthResult(pre, verified, 'alice');
    expect([d.allow, d.rule]).toEqual([allow, rule]);
    expect(d.trace.map((s) => s.rule)).toContain('auth.precheck');
  });
});
