import { describe, expect, it } from 'vitest';
import { decideAuthPrecheck, decideAuthResult, decideAuthzid } from '../../src/policy/auth.js';

describe('decideAuthPrecheck', () => {
  const rows: Array<[string, { tls: boolean; requiresTls: boolean }, boolean, string]> = [
    ['plaintext refused when TLS is required', { tls: false, requiresTls: true }, false, 'auth.tls_required'],
    ['TLS session may try', { tls: true, requiresTls: true }, true, 'auth.precheck'],
    ['plaintext allowed only when configured', { tls: false, requiresTls: false }, true, 'auth.precheck'],
  ];
  it.each(rows)('%s', (_n, f, allow, rule) => {
    const d = decideAuthPrecheck(f);
    expect(d.allow).toBe(allow);
    expect(d.rule).toBe(rule);
  });
});

describe('decideAuthResult', () => {
  it('unknown user and wrong password are the same outcome', () => {
    const pre = decideAuthPrecheck({ tls: true, requiresTls: true });
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
    const pre = decideAuthPrecheck({ tls: true, requiresTls: true });
    const d = decideAuthResult(pre, verified, 'alice');
    expect([d.allow, d.rule]).toEqual([allow, rule]);
    expect(d.trace.map((s) => s.rule)).toContain('auth.precheck');
  });
});

describe('decideAuthzid (AUTH PLAIN authorization identity, RFC 4616)', () => {
  const refused = 'PLAIN authorization identity differs from the user; proxy login is not allowed';
  const rows: Array<[string, { mechanism: string; authcid?: string; authzid?: string }, boolean, string, string]> = [
    ['PLAIN, no authzid', { mechanism: 'PLAIN', authcid: 'alice', authzid: '' }, true, 'auth.authzid_ok', 'no authorization identity'],
    ['PLAIN, authzid absent', { mechanism: 'PLAIN', authcid: 'alice' }, true, 'auth.authzid_ok', 'no authorization identity'],
    ['PLAIN, authzid is the user', { mechanism: 'PLAIN', authcid: 'alice', authzid: 'alice' }, true, 'auth.authzid_ok', 'the authorization identity is the user'],
    ['PLAIN, acting for another user', { mechanism: 'PLAIN', authcid: 'alice', authzid: 'bob' }, false, 'auth.authzid', refused],
    ['PLAIN, case differs (no folding: another identity)', { mechanism: 'PLAIN', authcid: 'alice', authzid: 'Alice' }, false, 'auth.authzid', refused],
    ['LOGIN has no authzid', { mechanism: 'LOGIN', authcid: 'alice', authzid: 'bob' }, true, 'auth.authzid_ok', 'LOGIN carries no authorization identity'],
  ];
  it.each(rows)('%s', (_n, f, allowed, rule, reason) => {
    const d = decideAuthzid(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
  });
});
