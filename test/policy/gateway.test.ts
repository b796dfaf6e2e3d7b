import { describe, expect, it } from 'vitest';
import { allow, deny } from '../../src/policy/decision.js';
import { decideMailToNews, decideNoticeRecipient, type MailToNewsFacts, type NoticeRecipientFacts } from '../../src/policy/gateway.js';
import { carriesOwnPath } from '../../src/nntp/gateway.js';

const base: MailToNewsFacts = { group: 'lab.results', user: 'alice', trusted: false, loop: false, readable: true, postable: true };

describe('decideMailToNews', () => {
  const rows: Array<[string, Partial<MailToNewsFacts>, boolean, string]> = [
    ['authenticated user with post right', {}, true, 'gateway.post'],
    ['trusted network without login, group allows it', { user: null, trusted: true }, true, 'gateway.post'],
    ['neither logged in nor trusted', { user: null, trusted: false }, false, 'gateway.origin'],
    ['neither, even where posting is open', { user: null, trusted: false, readable: true, postable: true }, false, 'gateway.origin'],
    ['loop wins over everything', { loop: true }, false, 'gateway.loop'],
    ['loop from a trusted network', { loop: true, user: null, trusted: true }, false, 'gateway.loop'],
    ['hidden or missing group', { readable: false, postable: false }, false, 'gateway.group'],
    ['readable, not postable', { postable: false }, false, 'gateway.default'],
    ['postable blind (post without read)', { readable: false, postable: true }, true, 'gateway.post'],
  ];
  it.each(rows)('%s', (_n, facts, ok, rule) => {
    const d = decideMailToNews({ ...base, ...facts });
    expect(d.allow).toBe(ok);
    expect(d.rule).toBe(rule);
  });

  it('a hidden group reads exactly like a missing one', () => {
    const hidden = decideMailToNews({ ...base, group: 'office.staff', readable: false, postable: false });
    const missing = decideMailToNews({ ...base, group: 'no.such', readable: false, postable: false });
    expect(hidden.reason.replace('office.staff', 'G')).toBe(missing.reason.replace('no.such', 'G'));
  });
});

describe('decideNoticeRecipient', () => {
  const rows: Array<[string, NoticeRecipientFacts, boolean, string]> = [
    ['local user', { address: 'alice@local.test', local: true, userExists: true, relay: null }, true, 'notice.local'],
    ['unknown local user', { address: 'zed@local.test', local: true, userExists: false, relay: null }, false, 'notice.local_unknown'],
    ['remote, relay permits', { address: 'x@example.net', local: false, userExists: false, relay: allow('relay.trusted_networks', 'trusted') }, true, 'notice.relay'],
    ['remote, relay refuses', { address: 'x@example.net', local: false, userExists: false, relay: deny('relay.default', 'no') }, false, 'notice.relay'],
    ['remote without a verdict fails closed', { address: 'x@example.net', local: false, userExists: false, relay: null }, false, 'notice.default'],
  ];
  it.each(rows)('%s', (_n, facts, ok, rule) => {
    const d = decideNoticeRecipient(facts);
    expect(d.allow).toBe(ok);
    expect(d.rule).toBe(rule);
  });
});

describe('carriesOwnPath', () => {
  const rows: Array<[string[], boolean]> = [
    [['peer.example!gatehouse.test!not-for-mail'], true],
    [['GATEHOUSE.TEST!not-for-mail'], true],
    [['gatehouse.test.evil!not-for-mail'], false],
    [['evil-gatehouse.test!x'], false],
    [[], false],
    [['a!b', 'c!gatehouse.test'], true],
  ];
  it.each(rows)('%j -> %s', (paths, loop) => expect(carriesOwnPath(paths, 'gatehouse.test')).toBe(loop));
});
