/*
 * Incoming NNTP feeds: IHAVE (RFC 3977 §6.3.2) and streaming MODE STREAM / CHECK / TAKETHIS (RFC 4644), for the
 * peers listed in nntp.peers only. Who may feed and which articles are taken is decided by policy/feed.ts; this
 * file gathers the facts (the connection's address, TLS, peer login, the parsed article, the store, the
 * per-peer rate), records the decision and answers with the code the decision names. An article is acknowledged
 * (235 / 239) only after the store's durable write, the same one POST uses. TAKETHIS articles are stored while the
 * session reads on (session.ts MAX_IN_FLIGHT), so a streaming peer's window shares the store's group commit; each
 * 239 follows its own commit, in whatever order the commits complete (RFC 4644 §2.5 allows it).
 *
 *   IHAVE <id>     435 have it · 436 try later · 335 send it → 235 stored · 436 not stored, retry · 437 refused
 *   MODE STREAM    203 streaming permitted
 *   CHECK <id>     238 send it · 431 try later · 438 not wanted
 *   TAKETHIS <id>  (article follows) 239 stored · 439 not stored (do not retry)
 *   anyone who is not a listed peer: 502 (TAKETHIS also closes: its article must not be read as commands)
 */
import crypto from 'node:crypto';
import dns from 'node:dns/promises';
import fsp from 'node:fs/promises';
import { deny } from '../policy/decision.js';
import { decideOffer, decidePeer, decidePeerSecret, decidePlainLogin, decideWant, offerAnswer, type PeerView } from '../policy/feed.js';
import { normalizeIp } from '../policy/network.js';
import type { Decision } from '../policy/types.js';
import type { NntpConfig } from '../config/schema.js';
import { prepareArticle, splitArticle } from './article.js';
import { enqueueFeeds } from './feed-out.js';
import type { ArticleResult } from './input.js';
import type { NntpSession, NntpShared } from './session.js';

type PeerConfig = NntpConfig['peers'][number];

/** the peer name a session logged in as with that peer's secret */
const logins = new WeakMap<NntpSession, string>();
/** Arrival times (ms, ascending) of a peer's articles in the last minute: expiring the oldest is O(1), not a splice. */
class Recent {
  private times: number[] = [];
  private head = 0;

  /** how many arrived after `now` - 60 s */
  count(now: number): number {
    const t = this.times;
    while (this.head < t.length && t[this.head]! <= now - 60_000) this.head++;
    if (this.head > 1024 && this.head * 2 > t.length) {
      this.times = t.slice(this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }

  push(at: number): void {
    this.times.push(at);
  }
}

/** per listener: peer name → its articles' arrival times in the last minute */
const rates = new WeakMap<NntpShared, Map<string, Recent>>();
/**
 * per session: the last peer decision and what it was made from (config, TLS, peer login; at most one
 * RESOLVE_TTL_MS old, as host names are looked up again after it). A streaming peer sends a CHECK or TAKETHIS
 * per article: the decision is made and recorded once, not once per command.
 */
const peerDecisions = new WeakMap<NntpSession, { config: unknown; tls: boolean; login: string | undefined; at: number; result: { decision: Decision; peer: PeerConfig | null } }>();
/** host name → addresses, with when they were looked up */
const resolved = new Map<string, { at: number; addresses: string[] }>();
const RESOLVE_TTL_MS = 60_000;

async function addressesOf(host: string): Promise<string[]> {
  const literal = normalizeIp(host);
  if (literal) return [literal];
  const hit = resolved.get(host);
  if (hit && Date.now() - hit.at < RESOLVE_TTL_MS) return hit.addresses;
  let addresses: string[] = [];
  try {
    addresses = (await dns.lookup(host, { all: true })).flatMap((a) => normalizeIp(a.address) ?? []);
  } catch {
    addresses = []; // unresolvable: the peer cannot be recognised (fail closed)
  }
  resolved.set(host, { at: Date.now(), addresses });
  return addresses;
}

async function peerViews(peers: readonly PeerConfig[]): Promise<PeerView[]> {
  return Promise.all(
    peers.map(async (p) => ({ name: p.name, addresses: await addressesOf(p.host), tls: p.tls, needsPassword: p.password_file !== null, direction: p.direction })),
  );
}

/** Is this session a feeding peer? The decision is recorded. */
async function peerOf(s: NntpSession, phase: string): Promise<{ decision: Decision; peer: PeerConfig | null }> {
  const { config } = s.rt;
  const login = logins.get(s);
  const now = Date.now();
  const last = peerDecisions.get(s);
  if (last && last.config === config && last.tls === s.tls && last.login === login && now - last.at < RESOLVE_TTL_MS) return last.result;
  const peers = config.nntp.peers;
  const r = decidePeer({ ip: s.ctx.ip, tls: s.tls, peerLogin: login ?? null, peers: await peerViews(peers) });
  s.rt.policy.record(s.ctx, phase, r.decision);
  const result = { decision: r.decision, peer: r.peer ? (peers.find((p) => p.name === r.peer!.name) ?? null) : null };
  peerDecisions.set(s, { config, tls: s.tls, login, at: now, result });
  return result;
}

/** The peer's shared secret (first line of its password_file), or null when it cannot be read. */
async function secretOf(p: PeerConfig): Promise<string | null> {
  if (p.password_file === null) return null;
  try {
    const line = (await fsp.readFile(p.password_file, 'utf8')).split(/\r?\n/)[0] ?? '';
    return line.length > 0 ? line : null;
  } catch {
    return null;
  }
}

function sameSecret(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}

/**
 * AUTHINFO with a peer's name and secret, from that peer's address (policy/feed decidePeerSecret): an allowed one is
 * remembered as a peer login (not a user identity). The caller records a refusal where it is the last word.
 */
export async function peerLogin(s: NntpSession, user: string, password: string): Promise<Decision> {
  const p = s.rt.config.nntp.peers.find((x) => x.name === user && x.direction !== 'out' && x.password_file !== null);
  // only from the peer's own address: the secret cannot be guessed from elsewhere (this check runs before the
  // login throttle of policy.authenticate, which a wrong secret then falls through to)
  const atAddress = p !== undefined && (await addressesOf(p.host)).includes(s.ctx.ip);
  let secret: 'match' | 'mismatch' | 'unreadable' | undefined;
  if (p && atAddress) {
    const known = await secretOf(p);
    secret = known === null ? 'unreadable' : sameSecret(known, password) ? 'match' : 'mismatch';
  }
  const d = decidePeerSecret(secret === undefined ? { user, peerAtAddress: atAddress } : { user, peerAtAddress: atAddress, secret });
  if (!d.allow || !p) return d;
  logins.set(s, p.name);
  s.rt.log.info({ event: 'nntp_peer_login', session: s.ctx.session, peer: p.name, ip: s.ctx.ip }, 'peer logged in');
  return d;
}

/**
 * AUTHINFO USER on a plain connection where logins need TLS: may this be a peer's login (policy/feed.ts
 * decidePlainLogin)? Asked only from a listed incoming peer's address, and then recorded; null from anyone else
 * (not a peer's question: the session's TLS rule answers them).
 */
export async function plainPeerLogin(s: NntpSession, user: string): Promise<Decision | null> {
  const views = await peerViews(s.rt.config.nntp.peers);
  if (!views.some((p) => p.direction !== 'out' && p.addresses.includes(s.ctx.ip))) return null;
  return s.rt.policy.record(s.ctx, 'feed_login', decidePlainLogin({ ip: s.ctx.ip, user, peers: views }));
}

function rateOf(s: NntpSession, peer: string): Recent {
  let m = rates.get(s.shared);
  if (!m) rates.set(s.shared, (m = new Map()));
  let recent = m.get(peer);
  if (!recent) m.set(peer, (recent = new Recent()));
  return recent;
}

/** The configured group names, as a set, per config. */
const carriedSets = new WeakMap<object, Set<string>>();
function carriedOf(config: { nntp: { groups: readonly { name: string }[] } }): Set<string> {
  let set = carriedSets.get(config);
  if (!set) carriedSets.set(config, (set = new Set(config.nntp.groups.map((g) => g.name))));
  return set;
}

function wanted(s: NntpSession, peer: PeerConfig, id: string): Decision {
  const { store } = s.shared;
  const stored = store.byMessageId(id) !== null;
  const d = decideWant({ peer: peer.name, stored, inProgress: !stored && store.has(id), recentFromPeer: rateOf(s, peer.name).count(Date.now()), perMinute: peer.articles_per_minute });
  s.rt.policy.record(s.ctx, 'feed_want', d, id);
  return d;
}

const refused = '502 Transfer permission denied';

export async function ihave(s: NntpSession, line: string): Promise<string | null> {
  const id = line.split(' ')[1]!;
  const { peer } = await peerOf(s, 'feed');
  if (!peer) return refused;
  const want = offerAnswer(wanted(s, peer, id));
  if (want === 'duplicate') return '435 Duplicate';
  if (want !== 'accept') return '436 Try again later';
  s.expectArticle(async (a) => {
    const r = await receive(s, peer, id, a);
    await s.send(r === 'accept' ? '235 Article transferred OK' : r === 'duplicate' ? '435 Duplicate' : r === 'retry' ? '436 Transfer failed, try again later' : '437 Transfer rejected; do not retry');
  });
  return '335 Send article to be transferred; end with <CR-LF>.<CR-LF>';
}

export async function modeStream(s: NntpSession): Promise<string> {
  const { peer } = await peerOf(s, 'feed');
  return peer ? '203 Streaming permitted' : refused;
}

export async function check(s: NntpSession, line: string): Promise<string> {
  const id = line.split(' ')[1]!;
  const { peer } = await peerOf(s, 'feed');
  if (!peer) return refused;
  const want = offerAnswer(wanted(s, peer, id));
  return want === 'accept' ? `238 ${id}` : want === 'retry' ? `431 ${id}` : `438 ${id}`;
}

export async function takethis(s: NntpSession, line: string): Promise<string | null> {
  const id = line.split(' ')[1]!;
  const { peer } = await peerOf(s, 'feed');
  if (!peer) {
    s.endWith(refused);
    return null;
  }
  s.expectArticle(async (a) => {
    const r = await receive(s, peer, id, a);
    // 439 says "do not retry": a store failure (or the rate) instead ends the session, so the sender retries later
    if (r === 'retry') s.endWith('400 Service temporarily unavailable, try again later');
    else await s.send(r === 'accept' ? `239 ${id}` : `439 ${id}`);
  }, true); // streamed: the next commands are read while this one is stored (its 239 may overtake or follow theirs)
  return null;
}

/** Check, decide, store durably. */
async function receive(s: NntpSession, peer: PeerConfig, id: string, a: ArticleResult): Promise<'accept' | 'duplicate' | 'retry' | 'reject'> {
  const { rt } = s;
  const { config, policy } = rt;
  const limit = config.nntp.limits.article_bytes;
  const split = a.kind === 'article' ? splitArticle(a.raw) : null;
  let formatError: string | null = null;
  let prepared = null;
  if (!split || split.bytes > limit) formatError = `article larger than ${limit} octets`;
  else {
    const p = prepareArticle(split.lines, { hostname: config.hostname, user: null, ip: s.ctx.ip, session: s.ctx.session, now: new Date(), relay: true }, split.body);
    if (!p.ok) formatError = p.reason;
    else if (p.messageId !== id) formatError = `Message-ID ${p.messageId} is not the offered ${id}`;
    else prepared = p;
  }
  const { store } = s.shared;
  const times = rateOf(s, peer.name);
  const decision = decideOffer({
    peer: peer.name,
    patterns: peer.groups,
    formatError,
    duplicate: store.has(id),
    path: prepared?.path ?? [],
    pathName: config.hostname,
    groups: prepared?.groups ?? [],
    carried: carriedOf(config),
    recentFromPeer: times.count(Date.now()),
    perMinute: peer.articles_per_minute,
  });
  policy.record(s.ctx, 'feed_article', decision, id);
  const answer = offerAnswer(decision);
  if (answer !== 'accept' || !prepared) return answer;
  if (!store.reserve(id)) return 'duplicate';
  const carried = carriedOf(config);
  const groups = prepared.groups.filter((g) => carried.has(g));
  try {
    const stored = await store.add(id, groups, prepared.head, prepared.article, prepared.lines);
    await enqueueFeeds(store, stored).catch((err: unknown) => rt.log.error({ event: 'nntp_feed_queue_error', error: String(err) }, 'article not queued for peers'));
  } catch (err) {
    store.release(id);
    rt.log.error({ event: 'nntp_store_error', session: s.ctx.session, error: String(err) }, 'fed article not stored');
    policy.record(s.ctx, 'feed_article', deny('feed.store', 'the article store failed'), id);
    return 'retry';
  }
  times.push(Date.now());
  return 'accept';
}

/** CAPABILITIES: IHAVE and STREAMING are listed for a session from a listed peer's address. */
export async function feedCapabilities(s: NntpSession): Promise<string[]> {
  const views = await peerViews(s.rt.config.nntp.peers);
  return views.some((p) => p.direction !== 'out' && p.addresses.includes(s.ctx.ip)) ? ['IHAVE', 'STREAMING'] : [];
}
