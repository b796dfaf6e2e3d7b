/*
 * NAME
 *   policy/feed — NNTP peering: who may feed us articles, and which offered articles we take.
 *
 * SYNOPSIS
 *   decidePeer(facts)  → { decision, peer }   before IHAVE, MODE STREAM, CHECK, TAKETHIS
 *   decideWant(facts)  → Decision             for an offered Message-ID (IHAVE before 335, CHECK)
 *   decideOffer(facts) → Decision             for each offered article (after it was parsed)
 *   decidePlainLogin(facts) → Decision        AUTHINFO without TLS where logins need it: a plain peer's login only
 *   decidePeerSecret(facts) → Decision        AUTHINFO PASS as a feeding peer: its secret, from its address
 *   groupMatches(patterns, group)             the peer's wildmat list, last match wins, ! excludes
 *
 * DESCRIPTION
 *   A feed is accepted only from a configured peer (nntp.peers, direction in or both) whose address the
 *   connection comes from; over TLS when the peer's `tls` is set; after AUTHINFO as the peer's name when it has
 *   a password_file. Everyone else is refused (the listener answers 502).
 *
 *   An offered article is taken when, in order:
 *     feed.format      it passed the RFC 5536 checks POST applies (the listener's parse result)
 *     feed.duplicate   its Message-ID is not stored or being stored (435 / 438 / 439: the sender stops)
 *     feed.loop        our own path name is not in its Path (it has been here: never accepted back)
 *     feed.groups      each of its newsgroups is within the peer's patterns
 *     feed.carried     at least one of its newsgroups is carried here
 *     feed.rate        the peer sent fewer than articles_per_minute in the last minute (436 / 431: retry)
 *   The rule that decided names the answer: feed.duplicate = "have it", feed.rate = "try later", any other
 *   reject = "refused, do not retry".
 *
 *   A peer's login (AUTHINFO with the peer's name and the first line of its password_file as the password):
 *     feed.login_secret     reject   not a listed incoming peer with a password at this address, its secret cannot
 *                                    be read, or the secret is wrong (a TLS session then tries the name as a user;
 *                                    a plain one is refused here: see decidePlainLogin)
 *     feed.login_secret_ok  permit   the peer's secret, from the peer's address
 *
 *   Pure: the clock is the caller's (the rate facts are counts the listener keeps).
 */
import { dunno, evaluate, permit, reject, type Rule } from './decision.js';
import type { Decision } from './types.js';

export type FeedDirection = 'in' | 'out' | 'both';

export interface PeerView {
  readonly name: string;
  /** addresses the peer's host resolves to (normalised) */
  readonly addresses: readonly string[];
  readonly tls: boolean;
  readonly needsPassword: boolean;
  readonly direction: FeedDirection;
}

export interface PeerFacts {
  readonly ip: string;
  readonly tls: boolean;
  /** the AUTHINFO user this session authenticated as with a peer's password, or null */
  readonly peerLogin: string | null;
  readonly peers: readonly PeerView[];
}

export function decidePeer(f: PeerFacts): { decision: Decision; peer: PeerView | null } {
  const candidates = f.peers.filter((p) => p.direction !== 'out' && p.addresses.includes(f.ip));
  const peer = candidates.find((p) => p.name === f.peerLogin) ?? candidates[0] ?? null;
  const rules: Rule<PeerView | null>[] = [
    { name: 'feed.peer_listed', check: (p) => (p ? dunno() : reject(`${f.ip} is not a listed incoming peer`)) },
    { name: 'feed.peer_tls', check: (p) => (p!.tls && !f.tls ? reject(`peer ${p!.name} must feed over TLS`) : dunno()) },
    { name: 'feed.peer_auth', check: (p) => (p!.needsPassword && f.peerLogin !== p!.name ? reject(`peer ${p!.name} must authenticate first`) : dunno()) },
    { name: 'feed.peer', check: (p) => permit(`listed peer ${p!.name}`) },
  ];
  const decision = evaluate(rules, peer, { rule: 'feed.peer_listed', reason: 'not a peer' });
  return { decision, peer: decision.allow ? peer : null };
}

export interface PlainLoginFacts {
  readonly ip: string;
  /** the AUTHINFO USER name */
  readonly user: string;
  readonly peers: readonly PeerView[];
}

/** the incoming peer with a password this login names, from its own address */
const loginPeer = (f: PlainLoginFacts): PeerView | undefined => f.peers.find((p) => p.name === f.user && p.direction !== 'out' && p.needsPassword && p.addresses.includes(f.ip));

const PLAIN_LOGIN_RULES: readonly Rule<PlainLoginFacts>[] = [
  { name: 'feed.login_peer', check: (f) => (loginPeer(f) ? dunno() : reject(`${f.user} is not a peer with a password at ${f.ip}: logins need TLS`)) },
  {
    name: 'feed.login_plain',
    check: (f) => {
      const p = loginPeer(f)!;
      return p.tls ? reject(`peer ${p.name} is configured for TLS: its secret never crosses a plain connection`) : permit(`peer ${p.name} is configured without TLS`);
    },
  },
];

/**
 * AUTHINFO on a connection without TLS where logins need TLS: only the peer login of a listed incoming peer that
 * is configured without TLS (`tls: false`: innd and innfeed speak no TLS) and has a password_file, from that
 * peer's own address. The secret is taken from that address only, so a secret read off the wire gives nobody
 * more than the peer's address alone would; a user's password never crosses a plain connection.
 */
export function decidePlainLogin(f: PlainLoginFacts): Decision {
  return evaluate(PLAIN_LOGIN_RULES, f, { rule: 'feed.login_peer', reason: 'logins need TLS' });
}

export interface PeerSecretFacts {
  /** the AUTHINFO USER name */
  readonly user: string;
  /** a listed incoming peer of that name with a password_file, and the connection comes from its address */
  readonly peerAtAddress: boolean;
  /** the password against the peer's secret (asked only for a peer at its address) */
  readonly secret?: 'match' | 'mismatch' | 'unreadable';
}

const PEER_SECRET_RULES: readonly Rule<PeerSecretFacts>[] = [
  {
    name: 'feed.login_secret',
    check: (f) =>
      !f.peerAtAddress ? reject(`${f.user} is not a peer with a password at this address`)
      : f.secret === 'unreadable' ? reject(`the secret of peer ${f.user} cannot be read (password_file)`)
      : f.secret !== 'match' ? reject(`wrong secret for peer ${f.user}`)
      : dunno(),
  },
  { name: 'feed.login_secret_ok', check: (f) => permit(`peer ${f.user} logged in with its secret`) },
];

/** AUTHINFO PASS with a peer's name: is this that peer, with its secret, from its address? */
export function decidePeerSecret(f: PeerSecretFacts): Decision {
  return evaluate(PEER_SECRET_RULES, f, { rule: 'feed.login_secret', reason: 'peer login refused' });
}

export interface OfferFacts {
  readonly peer: string;
  readonly patterns: readonly string[];
  /** the parse result: null when it passed the RFC 5536 checks, else the reason */
  readonly formatError: string | null;
  readonly duplicate: boolean;
  /** Path header elements, in order (empty when the article has none) */
  readonly path: readonly string[];
  /** this server's path name (hostname) */
  readonly pathName: string;
  readonly groups: readonly string[];
  readonly carried: ReadonlySet<string>;
  readonly recentFromPeer: number;
  readonly perMinute: number;
}

const OFFER_RULES: readonly Rule<OfferFacts>[] = [
  { name: 'feed.format', check: (f) => (f.formatError === null ? dunno() : reject(f.formatError)) },
  { name: 'feed.duplicate', check: (f) => (f.duplicate ? reject('already have it') : dunno()) },
  {
    name: 'feed.loop',
    check: (f) => (f.path.some((e) => e.toLowerCase() === f.pathName.toLowerCase()) ? reject(`Path already holds ${f.pathName} (loop)`) : dunno()),
  },
  {
    name: 'feed.groups',
    check: (f) => {
      const outside = f.groups.find((g) => !groupMatches(f.patterns, g));
      return outside === undefined ? dunno() : reject(`${outside} is outside peer ${f.peer}'s groups`);
    },
  },
  { name: 'feed.carried', check: (f) => (f.groups.some((g) => f.carried.has(g)) ? dunno() : reject('no newsgroup of it is carried here')) },
  { name: 'feed.rate', check: (f) => (f.recentFromPeer >= f.perMinute ? reject(`peer ${f.peer} sent ${f.perMinute} articles in the last minute`) : dunno()) },
  { name: 'feed.accept', check: (f) => permit(`from peer ${f.peer}`) },
];

export function decideOffer(f: OfferFacts): Decision {
  return evaluate(OFFER_RULES, f, { rule: 'feed.accept', reason: 'no rule accepted it' });
}

export interface WantFacts {
  readonly peer: string;
  readonly stored: boolean;
  /** being stored right now (from another session): ask again later */
  readonly inProgress: boolean;
  readonly recentFromPeer: number;
  readonly perMinute: number;
}

const WANT_RULES: readonly Rule<WantFacts>[] = [
  { name: 'feed.duplicate', check: (f) => (f.stored ? reject('already have it') : dunno()) },
  { name: 'feed.in_progress', check: (f) => (f.inProgress ? reject('being stored now') : dunno()) },
  { name: 'feed.rate', check: (f) => (f.recentFromPeer >= f.perMinute ? reject(`peer ${f.peer} sent ${f.perMinute} articles in the last minute`) : dunno()) },
  { name: 'feed.want', check: () => permit('not here yet') },
];

/** Before the article: do we want this Message-ID now? (CHECK 238/438/431, IHAVE 335/435/436) */
export function decideWant(f: WantFacts): Decision {
  return evaluate(WANT_RULES, f, { rule: 'feed.want', reason: 'no rule wanted it' });
}

/** What the listener answers for a decided offer or want. */
export function offerAnswer(d: Decision): 'accept' | 'duplicate' | 'retry' | 'reject' {
  if (d.allow) return 'accept';
  if (d.rule === 'feed.duplicate') return 'duplicate';
  if (d.rule === 'feed.rate' || d.rule === 'feed.in_progress') return 'retry';
  return 'reject';
}

/**
 * A peer's group patterns (INN newsfeeds style): each a wildmat of `*` and `?`, `!` in front excludes; the last
 * pattern that matches decides; none matching = not wanted. No regular expression is built from the pattern.
 */
export function groupMatches(patterns: readonly string[], group: string): boolean {
  let result = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    if (glob(negate ? raw.slice(1) : raw, group)) result = !negate;
  }
  return result;
}

function glob(p: string, t: string): boolean {
  let pi = 0;
  let ti = 0;
  let star = -1;
  let mark = 0;
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = ti;
    } else if (star >= 0) {
      pi = star + 1;
      ti = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}
