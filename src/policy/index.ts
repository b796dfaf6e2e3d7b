/*
 * NAME
 *   policy — the policy core every listener asks. No listener decides alone.
 *
 * DESCRIPTION
 *   `Policy` compiles the config once into rule inputs (CIDR prefixes, sets, maps) and exposes one method per
 *   question a listener may ask. Each method is a pure decision function (policy/*.ts) plus two duties done
 *   here so no adapter can forget them: any exception becomes a deny (fail closed), and every decision is
 *   written to the audit sink with the session it belongs to. The only state is the failure counters of
 *   policy/auth; the only I/O is the user store's bcrypt comparison.
 */
import type { Config } from '../config/load.js';
import type { UserStore } from '../identity/users.js';
import { IdentitySources } from '../identity/source.js';
import { LocalSource } from '../identity/local.js';
import { FailureCounters, decideAuthPrecheck, decideAuthResult, type LockEntry } from './auth.js';
import type { AuditContext, AuditSink } from './audit.js';
import { toRecord } from './audit.js';
import { deny, failClosed } from './decision.js';
import { decideActiveTarget, decideAnonymousLogin, type ActiveFacts } from './ftp.js';
import { decideGroup, mayPostSomewhere, readableGroups, type GroupRights } from './groups.js';
import { cidrMatches, compileCidr, compileLists, decideConnect, normalizeIp, type CompiledAccess, type CidrRule } from './network.js';
import { decideRecipient, decideSender, type RelayScope, type RecipientDecision } from './relay.js';
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
}

export class Policy {
  private compiled!: Compiled;
  private identities!: IdentitySources;
  readonly counters: FailureCounters;

  constructor(
    private config: Config,
    private users: UserStore,
    private sink: AuditSink,
    private readonly clock: () => number = Date.now,
  ) {
    this.counters = new FailureCounters(lockoutOf(config));
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
      relay: {
        localDomains: new Set(config.smtp.local_domains.map((d) => d.toLowerCase())),
        trustedNetworks: trusted,
        localUserExists: (local) => this.users.has(local),
      },
      groups: new Map(config.nntp.groups.map((g) => [g.name, { name: g.name, read: g.read, post: g.post }])),
    };
    this.config = config;
    this.users = users;
    this.counters.configure(lockoutOf(config));
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

  /** Pure variant for `explain` and tests: no audit line. */
  explainConnect(service: Service, ip: string): Decision {
    return failClosed(`${service}.connect`, () => decideConnect(this.compiled.access, service, ip));
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

  /** Precheck without verifying a password (used to decide whether to offer AUTH at all). */
  authPrecheck(ctx: AuditContext, user: string, tls: boolean): Decision {
    return failClosed(`${ctx.service}.authenticate`, () =>
      decideAuthPrecheck(this.counters, { ip: normalizeIp(ctx.ip) ?? ctx.ip, user, tls, requiresTls: this.requiresTls(ctx.service), now: this.clock() }),
    );
  }

  /**
   * Check a user name and password: TLS rule, lockout, then one bcrypt comparison (a dummy one for unknown
   * users). Failures are counted; the caller must wait `delayMs` before answering and must give the same
   * reply for every failure with rule `auth.bad_credentials`.
   */
  async authenticate(ctx: AuditContext, user: string, password: string, tls: boolean): Promise<AuthOutcome> {
    const ip = normalizeIp(ctx.ip) ?? ctx.ip;
    const name = user.slice(0, 64);
    const logCtx = { ...ctx, identity: { kind: 'user', name: name.replace(/[^\x21-\x7e]/g, '?'), groups: [] } } as const;
    let decision: Decision;
    let identity: Identity | null = null;
    try {
      const pre = this.authPrecheck(ctx, name, tls);
      if (!pre.allow) {
        this.record(logCtx, 'authenticate', pre);
        return { decision: pre, identity: null, delayMs: pre.rule === 'auth.tls_required' ? 0 : this.counters.delayMs(ip, this.clock()) };
      }
      const verified = await this.identities.verify(name, password);
      identity = verified.kind === 'ok' ? verified.identity : null;
      decision = decideAuthResult(pre, verified.kind === 'unavailable' ? 'unavailable' : identity !== null, name);
    } catch (err) {
      decision = deny(`${ctx.service}.authenticate`, `policy error (${err instanceof Error ? err.message : String(err)}); failing closed`);
      identity = null;
    }
    const now = this.clock();
    if (decision.allow) {
      this.counters.recordSuccess(name);
    } else if (decision.rule !== 'auth.unavailable') {
      for (const lock of this.counters.recordFailure(ip, name, now)) {
        this.record(logCtx, 'lockout', deny(`auth.lockout_${lock.kind}`, `${lock.kind} ${lock.key} locked out after ${lock.failures} failures`));
      }
    }
    this.record(logCtx, 'authenticate', decision);
    return { decision, identity: decision.allow ? identity : null, delayMs: decision.allow ? 0 : this.counters.delayMs(ip, now) };
  }

  /** Count a failure that did not go through `authenticate` (e.g. a login refused before the password). */
  noteFailure(ip: string, user: string | null): LockEntry[] {
    return this.counters.recordFailure(normalizeIp(ip) ?? ip, user, this.clock());
  }

  locks(): LockEntry[] {
    return this.counters.locks(this.clock());
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
}

function lockoutOf(config: Config) {
  const l = config.auth.lockout;
  return { failures: l.failures, windowMs: l.window_s * 1000, lockMs: l.lock_s * 1000 };
}
