import { describe, expect, it } from 'vitest';
import { decideOffer, decidePeer, decidePeerSecret, decidePlainLogin, decideWant, groupMatches, offerAnswer, type OfferFacts, type PeerView } from '../../src/policy/feed.js';

const lab2: PeerView = { name: 'lab2', addresses: ['127.0.0.40'], tls: false, needsPassword: false, direction: 'both' };
const secure: PeerView = { name: 'secure', addresses: ['127.0.0.30'], tls: true, needsPassword: true, direction: 'in' };
const outOnly: PeerView = { name: 'up', addresses: ['127.0.0.20'], tls: false, needsPassword: false, direction: 'out' };
const peers = [lab2, secure, outOnly];

describe('decidePeer', () => {
  const rows: Array<[string, string, boolean, string | null, boolean, string, string | null]> = [
    ['listed address, no tls needed', '127.0.0.40', false, null, true, 'feed.peer', 'lab2'],
    ['unlisted address', '127.0.0.66', true, 'lab2', false, 'feed.peer_listed', null],
    ['out-only peer may not feed us', '127.0.0.20', false, null, false, 'feed.peer_listed', null],
    ['tls peer without tls', '127.0.0.30', false, 'secure', false, 'feed.peer_tls', null],
    ['tls peer not logged in', '127.0.0.30', true, null, false, 'feed.peer_auth', null],
    ['tls peer logged in as another name', '127.0.0.30', true, 'lab2', false, 'feed.peer_auth', null],
    ['tls peer logged in', '127.0.0.30', true, 'secure', true, 'feed.peer', 'secure'],
  ];
  it.each(rows)('%s', (_n, ip, tls, login, ok, rule, peer) => {
    const r = decidePeer({ ip, tls, peerLogin: login, peers });
    expect(r.decision.allow).toBe(ok);
    expect(r.decision.rule).toBe(rule);
    expect(r.peer?.name ?? null).toBe(peer);
  });
});

describe('decideOffer', () => {
  const base: OfferFacts = {
    peer: 'lab2',
    patterns: ['lab.*', '!lab.secret'],
    formatError: null,
    duplicate: false,
    path: ['lab2.test', 'not-for-mail'],
    pathName: 'gatehouse.test',
    groups: ['lab.results'],
    carried: new Set(['lab.results', 'lab.secret']),
    recentFromPeer: 0,
    perMinute: 10,
  };
  const rows: Array<[string, Partial<OfferFacts>, string, string]> = [
    ['a good article', {}, 'feed.accept', 'accept'],
    ['malformed', { formatError: 'missing From header' }, 'feed.format', 'reject'],
    ['duplicate', { duplicate: true }, 'feed.duplicate', 'duplicate'],
    ['duplicate wins over loop', { duplicate: true, path: ['gatehouse.test'] }, 'feed.duplicate', 'duplicate'],
    ['our name in Path', { path: ['lab2.test', 'GATEHOUSE.test', 'x'] }, 'feed.loop', 'reject'],
    ['a group outside the patterns', { groups: ['lab.results', 'office.general'] }, 'feed.groups', 'reject'],
    ['an excluded group', { groups: ['lab.secret'] }, 'feed.groups', 'reject'],
    ['not carried', { groups: ['lab.other'] }, 'feed.carried', 'reject'],
    ['rate reached', { recentFromPeer: 10 }, 'feed.rate', 'retry'],
    ['just under the rate', { recentFromPeer: 9 }, 'feed.accept', 'accept'],
  ];
  it.each(rows)('%s', (_n, patch, rule, answer) => {
    const d = decideOffer({ ...base, ...patch });
    expect(d.rule).toBe(rule);
    expect(offerAnswer(d)).toBe(answer);
  });
});

describe('groupMatches', () => {
  it.each([
    [['*'], 'a.b', true],
    [['lab.*'], 'lab', false],
    [['lab*'], 'lab', true],
    [['lab.*', '!lab.secret'], 'lab.secret', false],
    [['!lab.secret', 'lab.*'], 'lab.secret', true],
    [['lab.?'], 'lab.x', true],
    [['lab.?'], 'lab.xy', false],
    [[], 'lab.x', false],
    [['(.*)+'], 'lab', false],
  ] as Array<[string[], string, boolean]>)('%j %s → %s', (p, g, want) => {
    expect(groupMatches(p, g)).toBe(want);
  });
});

describe('decideWant', () => {
  const base = { peer: 'lab2', stored: false, inProgress: false, recentFromPeer: 0, perMinute: 5 };
  it.each([
    ['new', {}, 'feed.want', 'accept'],
    ['stored', { stored: true }, 'feed.duplicate', 'duplicate'],
    ['stored wins over rate', { stored: true, recentFromPeer: 5 }, 'feed.duplicate', 'duplicate'],
    ['being stored', { inProgress: true }, 'feed.in_progress', 'retry'],
    ['rate', { recentFromPeer: 5 }, 'feed.rate', 'retry'],
  ] as Array<[string, object, string, string]>)('%s', (_n, patch, rule, answer) => {
    const d = decideWant({ ...base, ...patch });
    expect(d.rule).toBe(rule);
    expect(offerAnswer(d)).toBe(answer);
  });
});

describe('decidePlainLogin (AUTHINFO without TLS where logins need it)', () => {
  const inn: PeerView = { name: 'inn.test', addresses: ['127.0.0.50'], tls: false, needsPassword: true, direction: 'both' };
  const innOut: PeerView = { ...inn, name: 'inn-out', addresses: ['127.0.0.51'], direction: 'out' };
  const open: PeerView = { ...inn, name: 'open', addresses: ['127.0.0.52'], needsPassword: false };
  const all = [inn, innOut, open, secure, lab2];
  it.each([
    ['a plain peer with a password, from its address', '127.0.0.50', 'inn.test', true, 'feed.login_plain'],
    ['the same name from another address', '127.0.0.66', 'inn.test', false, 'feed.login_peer'],
    ['a user name from the peer address', '127.0.0.50', 'alice', false, 'feed.login_peer'],
    ['an out-only peer (never logs in to us)', '127.0.0.51', 'inn-out', false, 'feed.login_peer'],
    ['a peer without a password', '127.0.0.52', 'open', false, 'feed.login_peer'],
    ['a TLS peer: its secret never goes plain', '127.0.0.30', 'secure', false, 'feed.login_plain'],
    ['another peer name from the peer address', '127.0.0.50', 'secure', false, 'feed.login_peer'],
  ] as Array<[string, string, string, boolean, string]>)('%s', (_n, ip, user, allow, rule) => {
    const d = decidePlainLogin({ ip, user, peers: all });
    expect(d.allow).toBe(allow);
    expect(d.rule).toBe(rule);
  });
});

describe('decidePeerSecret (AUTHINFO PASS as a feeding peer)', () => {
  it.each([
    ['the secret, from the peer address', { user: 'inn.test', peerAtAddress: true, secret: 'match' }, true, 'feed.login_secret_ok', 'peer inn.test logged in with its secret'],
    ['a wrong secret', { user: 'inn.test', peerAtAddress: true, secret: 'mismatch' }, false, 'feed.login_secret', 'wrong secret for peer inn.test'],
    ['the password_file cannot be read', { user: 'inn.test', peerAtAddress: true, secret: 'unreadable' }, false, 'feed.login_secret', 'the secret of peer inn.test cannot be read (password_file)'],
    ['not from the peer address (the secret is not even compared)', { user: 'inn.test', peerAtAddress: false }, false, 'feed.login_secret', 'inn.test is not a peer with a password at this address'],
    ['a user name', { user: 'alice', peerAtAddress: false }, false, 'feed.login_secret', 'alice is not a peer with a password at this address'],
    ['a peer at its address, secret not compared: fails closed', { user: 'inn.test', peerAtAddress: true }, false, 'feed.login_secret', 'wrong secret for peer inn.test'],
  ] as const)('%s', (_n, f, allowed, rule, reason) => {
    const d = decidePeerSecret(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
  });
});
