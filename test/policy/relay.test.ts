// Table-driven, in the manner of Postfix's smtpd_check.in/.ref: facts → expected decision, one row per rule and trick.
import { describe, expect, it } from 'vitest';
import { normalizeAddress } from '../../src/policy/address.js';
import { compileCidr } from '../../src/policy/network.js';
import { decideRecipient, decideSender, type RelayScope } from '../../src/policy/relay.js';
import { NOBODY, ANONYMOUS, type Identity } from '../../src/policy/types.js';

const scope: RelayScope = {
  localDomains: new Set(['office.test', 'lab.test']),
  trustedNetworks: [compileCidr('smtp.trusted_networks[0]', '127.0.0.1/32'), compileCidr('smtp.trusted_networks[1]', '::1/128')],
  localUserExists: (u) => ['alice', 'bob', 'postmaster'].includes(u),
};
const alice: Identity = { kind: 'user', name: 'alice', groups: [] };
const REMOTE = '127.0.0.20';
const TRUSTED = '127.0.0.1';

describe('normalizeAddress refuses every address trick', () => {
  const tricks: Array<[string, string]> = [
    ['user%example.net@office.test', 'address.percent_hack'],
    ['example.net!user@office.test', 'address.bang_path'],
    ['@office.test:user@example.net', 'address.source_route'],
    ['@a.test,@b.test:user@example.net', 'address.source_route'],
    ['"user@example.net"@office.test', 'address.quoted'],
    ['"user%example.net"@office.test', 'address.quoted'],
    ['"user!x"@office.test', 'address.quoted'],
    ['"plain"@office.test', 'address.quoted'],
    ['user@[192.0.2.1]', 'address.ip_literal'],
    ['user@[IPv6:2001:db8::1]', 'address.ip_literal'],
    ['user@127.0.0.1', 'address.ip_literal'],
    ['user@office.test.', 'address.trailing_dot'],
    ['user@example.net@office.test', 'address.multiple_at'],
    ['user', 'address.no_domain'],
    ['@office.test', 'address.source_route'],
    ['us er@office.test', 'address.control'],
    ['user\r\n@office.test', 'address.control'],
    ['user\0@office.test', 'address.control'],
    ['üser@office.test', 'address.non_ascii'],
    ['user@offiсe.test', 'address.non_ascii'], // Cyrillic с
    ['.user@office.test', 'address.local_syntax'],
    ['us..er@office.test', 'address.local_syntax'],
    ['user@-office.test', 'address.domain_syntax'],
    ['user@office..test', 'address.domain_syntax'],
    ['user@office_test', 'address.domain_syntax'],
    [`${'a'.repeat(65)}@office.test`, 'address.local_too_long'],
    [`user@${'a'.repeat(250)}.test`, 'address.too_long'],
    ['', 'address.empty'],
  ];
  it.each(tricks)('%j → %s', (input, trick) => {
    const r = normalizeAddress(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.trick).toBe(trick);
  });

  it('lower-cases the domain and keeps the local part', () => {
    const r = normalizeAddress('Alice.Smith@OFFICE.Test');
    expect(r.ok && r.address.address).toBe('Alice.Smith@office.test');
  });
});

describe('decideRecipient', () => {
  const rows: Array<[string, string, Identity, string, boolean, string]> = [
    ['local user from a remote client', REMOTE, NOBODY, 'alice@office.test', true, 'relay.local_domain'],
    ['local user, mixed-case domain', REMOTE, NOBODY, 'alice@OFFICE.TEST', true, 'relay.local_domain'],
    ['local user, mixed-case local part', REMOTE, NOBODY, 'Alice@office.test', true, 'relay.local_domain'],
    ['unknown local user', REMOTE, NOBODY, 'mallory@office.test', false, 'relay.unknown_local_user'],
    ['unknown local user even when trusted', TRUSTED, NOBODY, 'mallory@office.test', false, 'relay.unknown_local_user'],
    ['external from remote: relay denied', REMOTE, NOBODY, 'bob@example.net', false, 'relay.default'],
    ['external from anonymous: relay denied', REMOTE, ANONYMOUS, 'bob@example.net', false, 'relay.default'],
    ['external from trusted network', TRUSTED, NOBODY, 'bob@example.net', true, 'relay.trusted_networks'],
    ['external from trusted IPv6 loopback', '::1', NOBODY, 'bob@example.net', true, 'relay.trusted_networks'],
    ['external from trusted v4-mapped', '::ffff:127.0.0.1', NOBODY, 'bob@example.net', true, 'relay.trusted_networks'],
    ['external when authenticated', REMOTE, alice, 'bob@example.net', true, 'relay.authenticated'],
    ['sub-domain of a local domain is not local', REMOTE, NOBODY, 'alice@evil.office.test', false, 'relay.default'],
    ['local domain as a prefix is not local', REMOTE, NOBODY, 'alice@office.test.evil.net', false, 'relay.default'],
    ['%-hack through a local domain', REMOTE, NOBODY, 'bob%example.net@office.test', false, 'address.percent_hack'],
    ['bang path through a local domain', REMOTE, NOBODY, 'example.net!bob@office.test', false, 'address.bang_path'],
    ['source route', REMOTE, NOBODY, '@office.test:bob@example.net', false, 'address.source_route'],
    ['quoted local part', REMOTE, NOBODY, '"bob@example.net"@office.test', false, 'address.quoted'],
    ['IP literal', REMOTE, NOBODY, 'bob@[127.0.0.1]', false, 'address.ip_literal'],
    ['trailing dot', REMOTE, NOBODY, 'alice@office.test.', false, 'address.trailing_dot'],
    ['two @', REMOTE, NOBODY, 'bob@example.net@office.test', false, 'address.multiple_at'],
    ['tricks are refused even for trusted clients', TRUSTED, NOBODY, 'bob%example.net@office.test', false, 'address.percent_hack'],
    ['tricks are refused even for authenticated users', REMOTE, alice, 'example.net!bob@office.test', false, 'address.bang_path'],
    ['<Postmaster> without a domain (RFC 5321 4.5.1)', REMOTE, NOBODY, 'Postmaster', true, 'relay.local_domain'],
    ['postmaster at a local domain', REMOTE, NOBODY, 'postmaster@lab.test', true, 'relay.local_domain'],
    ['another bare local part is still refused', REMOTE, NOBODY, 'root', false, 'address.no_domain'],
  ];
  it.each(rows)('%s', (_name, ip, identity, rcpt, allow, rule) => {
    const { decision, address } = decideRecipient(scope, ip, identity, rcpt);
    expect(decision.allow).toBe(allow);
    expect(decision.rule).toBe(rule);
    expect(decision.reason.length).toBeGreaterThan(0);
    if (allow) expect(address).not.toBeNull();
  });
});

describe('postmaster', () => {
  it('<Postmaster> is the postmaster of the first local domain, refused when there is no local domain', () => {
    expect(decideRecipient(scope, REMOTE, NOBODY, 'POSTMASTER').address?.address).toBe('postmaster@office.test');
    const none = decideRecipient({ ...scope, localDomains: new Set() }, REMOTE, NOBODY, 'postmaster');
    expect([none.decision.allow, none.decision.rule]).toEqual([false, 'address.no_domain']);
  });
});

describe('decideSender', () => {
  const rows: Array<[string, string, Identity, string, boolean, string]> = [
    ['null sender', REMOTE, NOBODY, '', true, 'mail.null_sender'],
    ['external sender from remote', REMOTE, NOBODY, 'someone@example.net', true, 'mail.sender'],
    ['local sender from remote, unauthenticated', REMOTE, NOBODY, 'alice@office.test', false, 'mail.local_sender'],
    ['local sender from trusted', TRUSTED, NOBODY, 'alice@office.test', true, 'mail.sender'],
    ['local sender authenticated', REMOTE, alice, 'alice@office.test', true, 'mail.sender'],
    ['sender with %-hack', REMOTE, NOBODY, 'a%b@example.net', false, 'address.percent_hack'],
    ['sender with control chars', REMOTE, NOBODY, 'a\r\nRCPT@example.net', false, 'address.control'],
  ];
  it.each(rows)('%s', (_name, ip, identity, sender, allow, rule) => {
    const { decision } = decideSender(scope, ip, identity, sender);
    expect(decision.allow).toBe(allow);
    expect(decision.rule).toBe(rule);
  });
});
