/*
 * NAME
 *   policy — the policy core every listener asks. No listener decides alone.
 *
 * DESCRIPTION
 *   `Policy` compiles the config once into rule inputs (CIDR prefixes, sets, maps) and exposes one method per
 *   question a listener may ask. Each method is a pure decision function (policy/*.ts) plus two duties done
 *   here so no adapter can forget them: any exception becomes a deny (fail closed), and every decision is
 *   written to the audit sink with the session it belongs to. The only state is the login throttle's store
 *   (policy/throttle-store.ts, reached through async calls so it may be shared); the only other I/O is the
 *   user store's bcrypt comparison.
 *
 *   A login is always: precheck (TLS) -> throttle (policy/throttle.ts, before any password is looked at)
 *   -> verify (the identity source) -> record (counters, familiarity). `authenticate` is that sequence.
 */
import type { Config } from '../config/load.js';
import type { UserStore } from '../identity/users.js';
import { IdentitySources } from '../identity/source.js';
import { LocalSource } from '../identity/local.js';
import { decideAuthPrecheck, decideAuthResult } from './auth.js';
import type { AuditContext, AuditSink } from './audit.js';
import { toRecord } from './audit.js';
import { deny, failClosed, makeDecision } from './decision.js';
import { decideActiveTarget, decideAnonymousLogin, decideDataTls, decidePassiveSource, type ActiveFacts } from './ftp.js';
import { decideMailToNews, decideNoticeRecipient } from './gateway.js';
import { normalizeAddress } from './address.js';
import { decideGroup, decidePostCommand, groupPostableAfterLogin, mayPostAfterLogin, mayPostSomewhere, readableGroups, type GroupRights } from './groups.js';
import { cidrMatches, compileCidr, compileLists, decideConnect, normalizeIp, type CompiledAccess, type CidrRule } from './network.js';
import { decideProxy, type ProxyFacts } from './proxy.js';
import { decideRecipient, decideSender, type RelayScope, type RecipientDecision } from './relay.js';
import {
  addressKey,
  countersHit,
  decideThrottle,
  describeKey,
  explainThrottle,
  isExempt,
  missDelayMs,
  reservationOver,
  throttleKeys,
  throttleName,
  throttlesStarted,
  type CounterKind,
  type ThrottleFacts,
  type ThrottleKeys,
  type ThrottleSettings,
} from './throttle.js';
import { MemoryThrottleStore, ThrottleStoreUnavailable, type ThrottleStore } from './throttle-store.js';
import type { Decision, Identity, Service } from './types.js';

export type { Decision, Identity, Service } from './types.js';
export { NOBODY, ANONYMOUS, identityLabel } from './types.js';
export type { AuditContext, AuditSink, DecisionRecord } from './audit.js';
export type { NormalizedAddress } from './address.js';

export interface AuthOutcome {
  readonly decision: Decision;
  readonly identity: Identity | null;
  /** how long the listener should wait before replying to a failure (progressive delay) */
  readonly delayMs: number;
  /** throttled: the password was not checked; answer with the protocol's temporary refusal */
  readonly temporary: boolean;
}

/** A live throttle, for listings (CLI, status page, metrics). */
export interface ThrottleEntry {
  readonly kind: CounterKind;
  readonly address: string | null;
  readonly name: string | null;
  readonly count: number;
  readonly until: number;
}

export function throttleSettingsOf(config: Config): ThrottleSettings {
  const a = config.auth;
  return {
    failures: a.lockout.failures,
    addressFailures: a.throttle.address_failures,
    exemptAddressFailures: a.throttle.exempt_address_failures,
    windowMs: a.lockout.window_s * 1000,
    lockMs: a.lockout.lock_s * 1000,
    familiarMs: a.familiar.days * 86_400_000,
    delayBaseMs: a.delay.base_ms,
    delayMaxMs: Math.max(a.delay.base_ms, a.delay.max_ms),
    exempt: a.throttle_exempt.map((c, i) => compileCidr(`auth.throttle_exempt[${i}]`, c)),
  };
}

export function storeLimitsOf(config: Config) {
  return { maxKeys: config.auth.throttle.max_keys, maxFamiliarPerUser: config.auth.familiar.max_per_user, maxFamiliarUsers: config.auth.familiar.max_users };
}

/** Live throttles in a store, as listings show them. */
export async function listThrottles(store: ThrottleStore, now: number): Promise<ThrottleEntry[]> {
  const out: ThrottleEntry[] = [];
  for (const c of await store.entries(now)) {
    const k = describeKey(c.key);
    if (!k || k.kind === 'misses' || c.until <= now) continue;
    out.push({ kind: k.kind, address: k.address, name: k.name, count: c.count, until: c.until });
  }
  return out.sort((a, b) => a.until - b.until);
}

/** The listener's reply must be temporary (SMTP 454, FTP 421, NNTP 403): the identity source could not be asked. */
export function isTemporaryAuthFailure(d: Decision): boolean {
  return d.rule === 'auth.unavailable';
}

interface Compiled {
  readonly access: CompiledAccess;
  readonly relay: RelayScope;
  readonly groups: ReadonlyMap<string, GroupRights>;
  readonly trusted: readonly CidrRule[];
  readonly proxies: Readonly<Record<Service, readonly CidrRule[]>>;
}

export class Policy {
  private compiled!: Compiled;
  private identities!: IdentitySources;
  private throttleSettings!: ThrottleSettings;
  /** running estimate of how long a failed password check takes (a throttled reply waits as long) */
  private verifyMs = 0;
  readonly throttle: ThrottleStore;

  constructor(
    private config: Config,
    private users: UserStore,
    private sink: AuditSink,
    private readonly clock: () => number = Date.now,
    store?: ThrottleStore,
  ) {
    this.throttle = store ?? new MemoryThrottleStore(storeLimitsOf(config));
    this.configure(config, users);
  }

  /**
   * Swap in a new config and user store (SIGHUP). Counters survive a reload. `identities`: the sources that
   * verify passwords (identity.sources); default: the users file alone.
   */
  configure(config: Config, users: UserStore, identities?: IdentitySources): void {
    this.identities = identities ?? new IdentitySources([new LocalSource(users)]);
    const trusted = config.smtp.trusted_networks.map((c, i) => compileCidr(`smtp.trusted_networks[${i}]`, c));
    this.compiled = {
      access: {
        global: compileLists('access', config.access),
        services: {
          smtp: compileLists('smtp.access', config.smtp.access),
          ftp: compileLists('ftp.access', config.ftp.access),
          nntp: compileLists('nntp.access', config.nntp.access),
        },
      },
      trusted,
      proxies: {
        smtp: config.smtp.proxy_protocol.from.map((c, i) => compileCidr(`smtp.proxy_protocol.from[${i}]`, c)),
        ftp: config.ftp.proxy_protocol.from.map((c, i) => compileCidr(`ftp.proxy_protocol.from[${i}]`, c)),
        nntp: config.nntp.proxy_protocol.from.map((c, i) => compileCidr(`nntp.proxy_protocol.from[${i}]`, c)),
      },
      relay: {
        localDomains: new Set(config.smtp.local_domains.map((d) => d.toLowerCase())),
        trustedNetworks: trusted,
        localUserExists: (local) => this.users.has(local),
      },
      groups: new Map(config.nntp.groups.map((g) => [g.name, { name: g.name, read: g.read, post: g.post }])),
    };
    this.config = config;
    this.users = users;
    this.throttleSettings = throttleSettingsOf(config);
  }

  get throttleConfig(): ThrottleSettings {
    return this.throttleSettings;
  }

  get currentConfig(): Config {
    return this.config;
  }

  setSink(sink: AuditSink): void {
    this.sink = sink;
  }

  /** Log a decision made by the core (or a listener-level refusal that cites a core rule). */
  record(ctx: AuditContext, phase: string, decision: Decision, object?: string): Decision {
    try {
      this.sink(toRecord(ctx, phase, decision, object));
    } catch {
      // The audit sink must never turn an answer into a crash; the decision stands.
    }
    return decision;
  }

  private decide(ctx: AuditContext, phase: string, object: string | undefined, fn: () => Decision): Decision {
    return this.record(ctx, phase, failClosed(`${ctx.service}.${phase}`, fn), object);
  }

  connect(ctx: AuditContext): Decision {
    return this.decide(ctx, 'connect', undefined, () => decideConnect(this.compiled.access, ctx.service, ctx.ip));
  }

  /** Pure variant (no audit line) for `explain`, tests, and a listener that records the decision itself. */
  explainConnect(service: Service, ip: string): Decision {
    return failClosed(`${service}.connect`, () => decideConnect(this.compiled.access, service, ip));
  }

  /** Is `ip` a peer that must start its connections to `service` with a PROXY header? */
  proxyListed(service: Service, ip: string): boolean {
    const n = normalizeIp(ip);
    return n !== null && this.compiled.proxies[service].some((r) => cidrMatches(r, n));
  }

  /** Does `service` take PROXY headers from anyone at all? */
  proxyEnabled(service: Service): boolean {
    return this.compiled.proxies[service].length > 0;
  }

  /** Believe this connection's PROXY header (or its absence)? Logged unless `log` is false (health checks). */
  proxy(ctx: AuditContext, facts: Omit<ProxyFacts, 'key'>, log = true): Decision {
    const fn = () => decideProxy({ ...facts, key: `${ctx.service}.proxy_protocol.from` });
    return log ? this.decide(ctx, 'proxy', undefined, fn) : failClosed(`${ctx.service}.proxy`, fn);
  }

  isTrusted(ip: string): boolean {
    const n = normalizeIp(ip);
    return n !== null && this.compiled.trusted.some((r) => cidrMatches(r, n));
  }

  requiresTls(service: Service): boolean {
    if (service === 'smtp') return this.config.smtp.auth_requires_tls;
    if (service === 'ftp') return this.config.ftp.tls_required;
    return this.config.nntp.auth_requires_tls;
  }

  /** The TLS rule, asked before any password is read (and to decide whether to offer AUTH at all). */
  authPrecheck(ctx: AuditContext, _user: string, tls: boolean): Decision {
    return failClosed(`${ctx.service}.authenticate`, () => decideAuthPrecheck({ tls, requiresTls: this.requiresTls(ctx.service) }));
  }

  /** Read everything the throttle rules look at for (name, address), in one go. */
  async throttleFacts(user: string, ip: string, now = this.clock()): Promise<{ facts: ThrottleFacts; keys: ThrottleKeys }> {
    const name = throttleName(user);
    const address = addressKey(ip);
    const keys = throttleKeys(name, address);
    const [pair, userC, addr, misses] = await this.throttle.read([keys.pair, keys.user, keys.addr, keys.misses], now);
    const familiarSeen = this.throttleSettings.familiarMs > 0 ? await this.throttle.familiarSeen(name, address) : 0;
    const facts: ThrottleFacts = { name, address, exempt: isExempt(this.throttleSettings, ip), familiarSeen, pair: pair!, user: userC!, addr: addr!, misses: misses!, now };
    return { facts, keys };
  }

  /** For `explain`: the throttle verdict for (name, address) and the lines that say why. No audit line. */
  async explainThrottle(user: string, ip: string): Promise<{ decision: Decision; lines: string[] }> {
    try {
      const { facts } = await this.throttleFacts(user, ip);
      return { decision: decideThrottle(facts, this.throttleSettings), lines: explainThrottle(facts, this.throttleSettings) };
    } catch (err) {
      return { decision: deny('auth.throttle_default', `policy error (${err instanceof Error ? err.message : String(err)}); failing closed`), lines: [] };
    }
  }

  private calibration: Promise<void> | null = null;

  /**
   * Time one password check of a name that cannot exist, so throttled replies take as long as failures from the
   * start: warm the dummy hash, then one comparison. Runs once; `Gatehouse.start` runs it once the listeners are up
   * (two bcrypt operations no longer delay listening), and `authenticate` waits for it while it runs, so a login
   * that arrives first waits for the calibration and is then answered exactly as later ones.
   */
  calibrate(): Promise<void> {
    this.calibration ??= (async () => {
      await this.users.warm();
      const t0 = performance.now();
      await this.users.verify('\u0000calibrate', 'calibrate-password');
      this.verifyMs = performance.now() - t0;
    })().catch(() => {
      /* verifyMs then learns from the first failed logins (authenticate) */
    });
    return this.calibration;
  }

  /**
   * Check a user name and password: TLS rule, throttle rules, then one comparison (a dummy one for unknown
   * users) — only if no throttle applies. The caller must wait `delayMs` before answering a failure, give the
   * same reply for every failure with rule `auth.bad_credentials`, and the protocol's temporary refusal when
   * `temporary` (throttled: password not checked). Both kinds of refusal wait alike: the delay grows with the
   * address's misses, and a throttled reply also waits as long as a password check takes.
   */
  async authenticate(ctx: AuditContext, user: string, password: string, tls: boolean): Promise<AuthOutcome> {
    if (this.calibration) await this.calibration;
    const name = user.slice(0, 64);
    const logCtx = { ...ctx, identity: { kind: 'user', name: name.replace(/[^\x21-\x7e]/g, '?'), groups: [] } } as const;
    const s = this.throttleSettings;
    let decision: Decision;
    let identity: Identity | null = null;
    try {
      const pre = this.authPrecheck(ctx, name, tls);
      if (!pre.allow) {
        this.record(logCtx, 'authenticate', pre);
        return { decision: pre, identity: null, delayMs: 0, temporary: false };
      }
      const { facts, keys } = await this.throttleFacts(name, ctx.ip);
      const verdict = failClosed('auth.throttle_default', () => decideThrottle(facts, s));
      let gate = makeDecision(verdict.allow, verdict.rule, verdict.reason, [...pre.trace, ...verdict.trace]);
      // count the attempt as a failure before the password is checked, so parallel attempts cannot overrun a limit
      const reserved = gate.allow ? countersHit(facts, 'failure', s).filter((k) => k !== 'misses') : [];
      const counts = await this.throttle.hit(reserved.map((k) => keys[k]), facts.now, s.windowMs);
      const byKey: Partial<Record<keyof ThrottleKeys, number>> = Object.fromEntries(reserved.map((k, i) => [k, counts[i]!]));
      const over = gate.allow ? reservationOver(facts, byKey, s) : null;
      if (over !== null) {
        await this.throttle.undo(reserved.map((k) => keys[k]), facts.now);
        gate = deny(`auth.throttle_${over}`, `the ${over} limit was reached by attempts running at the same time`, gate.trace.slice(0, -1));
      }
      if (!gate.allow) {
        const [misses] = await this.throttle.hit([keys.misses], facts.now, s.windowMs);
        this.record(logCtx, 'authenticate', gate);
        return { decision: gate, identity: null, delayMs: missDelayMs(misses ?? 1, s) + Math.round(this.verifyMs), temporary: true };
      }
      const t0 = performance.now();
      const v = await this.identities.verify(name, password);
      if (v.kind === 'unavailable') {
        // the directory could not be asked: not a failure (an outage must not throttle everyone); give back the reservation
        await this.throttle.undo(reserved.map((k) => keys[k]), facts.now);
        decision = decideAuthResult(gate, 'unavailable', name);
        this.record(logCtx, 'authenticate', decision);
        return { decision, identity: null, delayMs: 0, temporary: true };
      }
      identity = v.kind === 'ok' ? v.identity : null;
      decision = decideAuthResult(gate, identity !== null, name);
      if (!decision.allow) this.verifyMs = this.verifyMs === 0 ? performance.now() - t0 : this.verifyMs * 0.8 + (performance.now() - t0) * 0.2;
      let delayMs = 0;
      if (decision.allow) {
        await this.throttle.undo(reserved.filter((k) => k !== 'pair').map((k) => keys[k]), facts.now);
        await this.throttle.reset([keys.pair]);
        await this.throttle.touchFamiliar(facts.name, facts.address, facts.now);
      } else {
        delayMs = await this.recordFailure(logCtx, facts, keys, byKey);
      }
      this.record(logCtx, 'authenticate', decision);
      return { decision, identity: decision.allow ? identity : null, delayMs, temporary: false };
    } catch (err) {
      if (err instanceof ThrottleStoreUnavailable) {
        // fail closed while the shared state cannot be read or counted: a temporary refusal, password not checked
        decision = deny('state_store.unavailable', 'the shared state store is unreachable and state_store.on_error is refuse');
        this.record(logCtx, 'authenticate', decision);
        return { decision, identity: null, delayMs: 0, temporary: true };
      }
      decision = deny(`${ctx.service}.authenticate`, `policy error (${err instanceof Error ? err.message : String(err)}); failing closed`);
      this.record(logCtx, 'authenticate', decision);
      return { decision, identity: null, delayMs: s.delayMaxMs, temporary: true };
    }
  }

  /**
   * Count a failure (its name, address and pair counters may already be counted in `counted`); start and log
   * (phase `lockout`) every throttle it completes. Returns the delay before the reply.
   */
  private async recordFailure(logCtx: AuditContext, facts: ThrottleFacts, keys: ThrottleKeys, counted: Partial<Record<keyof ThrottleKeys, number>>): Promise<number> {
    const s = this.throttleSettings;
    const which = countersHit(facts, 'failure', s).filter((k) => counted[k] === undefined);
    const counts = await this.throttle.hit(which.map((k) => keys[k]), facts.now, s.windowMs);
    const byKey = { ...counted, ...Object.fromEntries(which.map((k, i) => [k, counts[i]!])) } as Partial<Record<keyof ThrottleKeys, number>>;
    for (const t of throttlesStarted(facts, byKey, s)) {
      const key = t.kind === 'pair' ? keys.pair : t.kind === 'user' ? keys.user : keys.addr;
      await this.throttle.block(key, t.until, facts.now);
      const who = t.kind === 'pair' ? `${facts.name} from ${facts.address}` : t.kind === 'user' ? `${facts.name} from unfamiliar addresses` : `address ${facts.address}`;
      this.record(logCtx, 'lockout', deny(`auth.throttle_${t.kind}`, `${who} throttled for ${Math.ceil(s.lockMs / 1000)} s after ${t.count} failures`));
    }
    return missDelayMs(byKey.misses ?? 1, s);
  }

  /** Count a failure that did not go through `authenticate` (e.g. a login refused before the password). */
  async noteFailure(ctx: AuditContext, user: string): Promise<void> {
    const { facts, keys } = await this.throttleFacts(user, ctx.ip);
    await this.recordFailure(ctx, facts, keys, {});
  }

  /** Live throttles (status page, metrics, listings). */
  throttles(): Promise<ThrottleEntry[]> {
    return listThrottles(this.throttle, this.clock());
  }

  sender(ctx: AuditContext, raw: string): RecipientDecision {
    let out: RecipientDecision = { decision: deny('smtp.mail', 'not evaluated'), address: null };
    this.decide(ctx, 'mail', raw, () => (out = decideSender(this.compiled.relay, normalizeIp(ctx.ip) ?? ctx.ip, ctx.identity, raw)).decision);
    return out;
  }

  recipient(ctx: AuditContext, raw: string): RecipientDecision {
    let out: RecipientDecision = { decision: deny('smtp.rcpt', 'not evaluated'), address: null };
    const decision = this.decide(ctx, 'rcpt', raw, () => (out = decideRecipient(this.compiled.relay, normalizeIp(ctx.ip) ?? ctx.ip, ctx.identity, raw)).decision);
    return decision === out.decision ? out : { decision, address: null };
  }

  /** Pure variants for `explain`. */
  explainRecipient(ip: string, identity: Identity, raw: string): Decision {
    return failClosed('smtp.rcpt', () => decideRecipient(this.compiled.relay, normalizeIp(ip) ?? ip, identity, raw).decision);
  }

  explainSender(ip: string, identity: Identity, raw: string): Decision {
    return failClosed('smtp.mail', () => decideSender(this.compiled.relay, normalizeIp(ip) ?? ip, identity, raw).decision);
  }

  isLocalDomain(domain: string): boolean {
    return this.compiled.relay.localDomains.has(domain.toLowerCase());
  }

  /** FTP: may USER anonymous / ftp log in at all? */
  anonymousLogin(ctx: AuditContext, log = true): Decision {
    const fn = () => decideAnonymousLogin(this.config.ftp.anonymous.enabled);
    return log ? this.decide(ctx, 'authenticate', 'anonymous', fn) : failClosed('ftp.anonymous', fn);
  }

  /** FTP: may the server open an active data connection to host:port (PORT / EPRT)? */
  activeTarget(ctx: AuditContext, host: string | null, port: number | null, epsvAll: boolean, log = true): Decision {
    const facts: ActiveFacts = { activeMode: this.config.ftp.active_mode, epsvAll, clientIp: ctx.ip, host, port };
    const fn = () => decideActiveTarget(facts);
    return log ? this.decide(ctx, 'active_mode', `${host ?? '?'}:${port ?? '?'}`, fn) : failClosed('ftp.active_mode', fn);
  }

  /**
   * FTP: may a TLS data connection of a PROT P session carry the transfer? Refusals, and connections let in only
   * because ftp.tls.require_session_reuse is off, are written to the audit log under their own rules; a resumed
   * session (the ordinary case, once per transfer) is not.
   */
  /** A connection to this session's passive port from `from`: the client's own address, or a thief (recorded). */
  dataSource(ctx: AuditContext, from: string): Decision {
    const d = failClosed('ftp.pasv_foreign', () => decidePassiveSource({ clientIp: ctx.ip, from }));
    return d.allow ? d : this.record(ctx, 'data_connect', d, from);
  }

  dataTls(ctx: AuditContext, resumed: boolean, peer: string): Decision {
    const fn = () => decideDataTls({ requireReuse: this.config.ftp.tls.require_session_reuse, resumed });
    const d = failClosed('ftp.data_tls', fn);
    return d.allow && d.rule === 'ftp.data_tls_resumed' ? d : this.record(ctx, 'data_connect', d, peer);
  }

  group(ctx: AuditContext, right: 'read' | 'post', name: string, log = true): Decision {
    const fn = () => decideGroup(this.compiled.groups, ctx.identity, right, name);
    return log ? this.decide(ctx, right === 'read' ? 'group_read' : 'post', name, fn) : failClosed(`nntp.${right}`, fn);
  }

  readableGroups(identity: Identity): string[] {
    try {
      return readableGroups(this.compiled.groups, identity);
    } catch {
      return [];
    }
  }

  mayPost(identity: Identity): boolean {
    try {
      return mayPostSomewhere(this.compiled.groups, identity);
    } catch {
      return false;
    }
  }

  /** POST (before its 340): may this identity post at all? (policy/groups decidePostCommand; fails closed) */
  decidePostCommand(identity: Identity): Decision {
    return failClosed('nntp.post_not_allowed', () => decidePostCommand(this.compiled.groups, identity));
  }

  /**
   * Mail-to-news: may this queued mail (SMTP login `user`, client ctx.ip, identity ctx.identity mapped from the
   * login) be posted to `group`? `loop`: the mail carries this server's news Path. See policy/gateway.
   */
  mailToNews(ctx: AuditContext, group: string, user: string | null, loop: boolean): Decision {
    return this.decide(ctx, 'mail_to_news', group, () =>
      decideMailToNews({
        group,
        user,
        trusted: this.isTrusted(ctx.ip),
        loop,
        readable: decideGroup(this.compiled.groups, ctx.identity, 'read', group).allow,
        postable: decideGroup(this.compiled.groups, ctx.identity, 'post', group).allow,
      }),
    );
  }

  /** Upload notices: may a notice go to this reader address? Remote readers get the relay verdict of the server's own origin (loopback). */
  noticeRecipient(ctx: AuditContext, raw: string): RecipientDecision {
    const parsed = normalizeAddress(raw);
    if (!parsed.ok) return { decision: this.record(ctx, 'notice_rcpt', deny('notice.address', parsed.reason), raw), address: null };
    const a = parsed.address;
    const local = this.isLocalDomain(a.domain);
    const decision = this.decide(ctx, 'notice_rcpt', a.address, () =>
      decideNoticeRecipient({
        address: a.address,
        local,
        userExists: local && this.users.has(a.local.toLowerCase()),
        relay: local ? null : decideRecipient(this.compiled.relay, '127.0.0.1', ctx.identity, a.address).decision,
      }),
    );
    return { decision, address: decision.allow ? a : null };
  }

  /** NNTP LIST ACTIVE posting flag: may this identity post to `name` now, or after AUTHINFO? */
  groupPostableAfterLogin(identity: Identity, name: string): boolean {
    try {
      return groupPostableAfterLogin(this.compiled.groups, identity, name);
    } catch {
      return false;
    }
  }

  /** NNTP greeting: may this identity post now, or after AUTHINFO? (groups.ts mayPostAfterLogin) */
  mayPostAfterLogin(identity: Identity): boolean {
    try {
      return mayPostAfterLogin(this.compiled.groups, identity);
    } catch {
      return false;
    }
  }
}
