/*
 * An LDAP / Active Directory server as an identity source (ldapts). Only over an encrypted connection
 * (ldaps://, or ldap:// + StartTLS) whose certificate verifies against `ca_file` or the system store, unless
 * `insecure_plaintext` says otherwise. A user is found with the service account (`bind_dn` +
 * `bind_password_file`) under `user_base` with `user_filter`, the login name escaped per RFC 4515; the
 * password is checked by binding as the found DN (never by reading a hash). An unknown name binds a dummy DN
 * with the given password, so it costs what a known one costs. Groups come from `memberOf` (or a group
 * search) through `group_map`; the home from msIIS-FTPRoot/msIIS-FTPDir or `home.attribute`, inside
 * `ftp.allowed_roots`. Found entries (never passwords, never failures) are cached for `cache_s`.
 *
 * A directory that cannot be reached, refuses TLS, or refuses the service bind makes every answer
 * `unavailable`: the listeners give a temporary reply, and the log says which of the three it was.
 */
import fs from 'node:fs';
import net from 'node:net';
import type tls from 'node:tls';
import type { Client, Entry } from 'ldapts';
import type { Config } from '../config/load.js';
import type { DirectoryConfig } from '../config/schema.js';
import { GatehouseError } from '../errors.js';
import type { Logger } from '../net/log.js';
import { homeFromAttributes } from './home.js';
import { escapeDnValue, fillFilter, firstRdnValue, normalizeDn } from './ldap-escape.js';
import type { IdentitySource, Lookup, UserEntry, Verify } from './source.js';
import { identityOf } from './source.js';
import { checkUserName } from './users.js';

export const MAX_LOGIN_CHARS = 64;

/*
 * ldapts and the metrics (prom-client) are loaded when first used, not with this file: `gatehouse check` and
 * `explain` build identity sources without ever connecting, and should not pay ~50 ms of module loading for it.
 * `start` has loaded the metrics already (the ops listener), so a count lands at once.
 */
let ldaptsModule: Promise<typeof import('ldapts')> | null = null;
const ldapts = (): Promise<typeof import('ldapts')> => (ldaptsModule ??= import('ldapts'));
function countError(reason: Failure | 'home_refused'): void {
  import('../ops/metrics.js').then(
    ({ metrics }) => metrics.count('directory_errors', { reason }),
    () => undefined,
  );
}
const MAX_PASSWORD_BYTES = 1024;

export interface DirectoryOptions {
  readonly config: DirectoryConfig;
  readonly servicePassword: string;
  readonly ca: Buffer | null;
  readonly minVersion: tls.SecureVersion;
  /** homes are only taken from entries when ftp.isolation is `directory` */
  readonly homes: boolean;
  readonly allowedRoots: readonly string[];
  readonly log: Logger;
  readonly clock?: () => number;
}

type Failure = 'unavailable' | 'tls' | 'service_bind';

class Unavailable extends Error {
  constructor(
    readonly why: Failure,
    message: string,
  ) {
    super(message);
  }
}

/** Read the service password: the file must exist, hold one line, and be readable by its owner only. */
export function readBindPassword(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new GatehouseError('GH_ERR_CONFIG', `directory.bind_password_file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (!st.isFile()) throw new GatehouseError('GH_ERR_CONFIG', `directory.bind_password_file: ${file} is not a file`);
  if ((st.mode & 0o077) !== 0) {
    throw new GatehouseError('GH_ERR_CONFIG', `directory.bind_password_file: ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; expected 0600 or stricter (chmod 600 ${file})`);
  }
  const pw = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  if (pw === '' || pw.includes('\n')) throw new GatehouseError('GH_ERR_CONFIG', `directory.bind_password_file: ${file} must hold the password on one line`);
  return pw;
}

/** Build the directory source of a config (reads the password file and CA); null when none is configured. */
export function directoryFromConfig(config: Config, log: Logger, homes = config.ftp.isolation === 'directory'): DirectorySource | null {
  const d = config.directory;
  if (!d || !config.identity.sources.includes('directory')) return null;
  const servicePassword = readBindPassword(config.paths.directoryPasswordFile!);
  let ca: Buffer | null = null;
  if (config.paths.directoryCaFile) {
    try {
      ca = fs.readFileSync(config.paths.directoryCaFile);
    } catch (err) {
      throw new GatehouseError('GH_ERR_CONFIG', `directory.ca_file: cannot read ${config.paths.directoryCaFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  return new DirectorySource({
    config: d,
    servicePassword,
    ca,
    minVersion: config.tls.min_version,
    homes,
    allowedRoots: config.ftp.allowed_roots,
    log,
  });
}

function first(entry: Entry, attr: string): string | undefined {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key === undefined ? undefined : entry[key];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : Buffer.isBuffer(one) ? one.toString('utf8') : one;
}

function all(entry: Entry, attr: string): string[] {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key === undefined ? undefined : entry[key];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : x));
}

function isTlsError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|HOSTNAME|DEPTH_ZERO/.test(code) || /certificate|altnames|SSL routines/i.test(String((err as Error | undefined)?.message ?? ''));
}

function isNetworkError(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  return typeof e?.code === 'string' || /connect|timeout|timed out|closed|socket|ECONN|EPIPE|EHOST|ENET/i.test(String(e?.message ?? ''));
}

export class DirectorySource implements IdentitySource {
  readonly name = 'directory' as const;
  private readonly cache = new Map<string, { entry: UserEntry; expires: number }>();
  private readonly host: string;
  private readonly clock: () => number;
  private lastFailure: string | null = null;

  constructor(private readonly o: DirectoryOptions) {
    this.host = new URL(o.config.url).hostname.replace(/^\[|\]$/g, '');
    this.clock = o.clock ?? Date.now;
  }

  private tlsOptions(): tls.ConnectionOptions {
    const base: tls.ConnectionOptions = { minVersion: this.o.minVersion, rejectUnauthorized: true, ...(this.o.ca && { ca: this.o.ca }) };
    // StartTLS upgrades an existing socket: the name to check the certificate against must be given
    return this.o.config.starttls ? { ...base, host: this.host, ...(net.isIP(this.host) === 0 && { servername: this.host }) } : base;
  }

  /** A connected (and, with StartTLS, upgraded) client; throws Unavailable. */
  private async connect(): Promise<Client> {
    const ms = this.o.config.timeout_s * 1000;
    const { Client } = await ldapts();
    // ldapts: tlsOptions on the constructor mean ldaps (TLS from the first byte); StartTLS takes them in startTLS() only
    const client = new Client({ url: this.o.config.url, timeout: ms, connectTimeout: ms, strictDN: true, ...(this.o.config.url.startsWith('ldaps://') && { tlsOptions: this.tlsOptions() }) });
    try {
      if (this.o.config.starttls) await client.startTLS(this.tlsOptions());
      return client;
    } catch (err) {
      await client.unbind().catch(() => undefined);
      throw this.unavailable(err);
    }
  }

  private unavailable(err: unknown, why?: Failure): Unavailable {
    if (err instanceof Unavailable) return err;
    const kind: Failure = why ?? (isTlsError(err) ? 'tls' : 'unavailable');
    const detail = err instanceof Error ? err.message : String(err);
    const message =
      kind === 'tls'
        ? `directory ${this.o.config.url}: TLS refused (${detail}); the certificate does not verify against ${this.o.ca ? 'directory.ca_file' : 'the system CA store'} — not binding`
        : kind === 'service_bind'
          ? `directory ${this.o.config.url}: service bind as ${this.o.config.bind_dn} refused (${detail}); check directory.bind_dn and bind_password_file`
          : `directory ${this.o.config.url}: unreachable (${detail})`;
    return new Unavailable(kind, message);
  }

  private report(u: Unavailable): Lookup & { kind: 'unavailable' } {
    countError(u.why);
    // one line per failure kind until the directory works again, then one line saying so
    if (this.lastFailure !== u.message) this.o.log.error({ event: 'directory_unavailable', reason: u.why, url: this.o.config.url }, u.message);
    this.lastFailure = u.message;
    return { kind: 'unavailable', reason: u.message };
  }

  private recovered(): void {
    if (this.lastFailure === null) return;
    this.lastFailure = null;
    this.o.log.info({ event: 'directory_available', url: this.o.config.url }, `directory ${this.o.config.url} reachable again`);
  }

  /** Search with the service account. */
  private async withService<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const client = await this.connect();
    try {
      try {
        await client.bind(this.o.config.bind_dn, this.o.servicePassword);
      } catch (err) {
        throw err instanceof (await ldapts()).ResultCodeError ? this.unavailable(err, 'service_bind') : this.unavailable(err);
      }
      try {
        return await fn(client);
      } catch (err) {
        throw this.unavailable(err);
      }
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }

  private groupsOf(dns: readonly string[]): string[] {
    const map = new Map(Object.entries(this.o.config.group_map).map(([k, v]) => [k.includes('=') ? normalizeDn(k) : k.toLowerCase(), v]));
    const out = new Set<string>();
    for (const dn of dns) {
      const byDn = map.get(normalizeDn(dn));
      const rdn = firstRdnValue(dn);
      const byCn = rdn && rdn.attr === 'cn' ? map.get(rdn.value.toLowerCase()) : undefined;
      const g = byDn ?? byCn;
      if (g) out.add(g);
    }
    return [...out].sort();
  }

  async lookup(name: string): Promise<Lookup> {
    const login = name.toLowerCase();
    if (name.length === 0 || name.length > MAX_LOGIN_CHARS) return { kind: 'unknown' };
    const hit = this.cache.get(login);
    if (hit && hit.expires > this.clock()) return { kind: 'found', entry: hit.entry };
    this.cache.delete(login);
    const c = this.o.config;
    const attrs = ['1.1'];
    const wanted = [c.member_of_attribute, ...(this.o.homes ? (c.home.attribute ? [c.home.attribute] : [c.home.root_attribute, c.home.dir_attribute]) : [])].filter((a): a is string => a !== null);
    try {
      const result = await this.withService(async (client) => {
        let searchEntries: Entry[];
        try {
          ({ searchEntries } = await client.search(c.user_base, { scope: 'sub', filter: fillFilter(c.user_filter, { user: name }), attributes: wanted.length ? wanted : attrs, sizeLimit: 2 }));
        } catch (err) {
          // more entries than the size limit: ambiguous, the same as two (a user_filter too wide), never an outage
          if (err instanceof (await ldapts()).SizeLimitExceededError) return { entry: null, groups: [] as string[], count: 3 };
          throw err;
        }
        if (searchEntries.length !== 1) return { entry: null, groups: [] as string[], count: searchEntries.length };
        const e = searchEntries[0]!;
        let groupDns = c.member_of_attribute ? all(e, c.member_of_attribute) : [];
        if (c.group_search) {
          const g = await client.search(c.group_search.base, { scope: 'sub', filter: fillFilter(c.group_search.filter, { dn: e.dn }), attributes: ['1.1'], sizeLimit: 1000 });
          groupDns = groupDns.concat(g.searchEntries.map((x) => x.dn));
        }
        return { entry: e, groups: groupDns, count: 1 };
      });
      this.recovered();
      if (!result.entry) {
        if (result.count > 1) this.o.log.warn({ event: 'directory_ambiguous', user: login.replace(/[^\x21-\x7e]/g, '?') }, 'directory: more than one entry matches this login name; refused');
        return { kind: 'unknown' };
      }
      const badName = checkUserName(login);
      if (badName !== null) {
        // also the reserved names (anonymous, authenticated, root, …): a directory entry must not become them
        this.o.log.warn({ event: 'directory_bad_name', dn: result.entry.dn }, `directory: login name not usable as a Gatehouse user name (${badName}); refused`);
        return { kind: 'unknown' };
      }
      const entry = this.entryOf(login, result.entry, result.groups);
      if (c.cache_s > 0) this.cache.set(login, { entry, expires: this.clock() + c.cache_s * 1000 });
      return { kind: 'found', entry };
    } catch (err) {
      return this.report(this.unavailable(err));
    }
  }

  private entryOf(name: string, e: Entry, groupDns: readonly string[]): UserEntry {
    const base = { name, source: 'directory' as const, dn: e.dn, groups: this.groupsOf(groupDns) };
    if (!this.o.homes) return base;
    const h = this.o.config.home;
    const r = homeFromAttributes(h.attribute ? { single: first(e, h.attribute) } : { root: first(e, h.root_attribute), dir: first(e, h.dir_attribute) }, this.o.allowedRoots);
    if (r.ok) return { ...base, home: r.home };
    countError('home_refused');
    this.o.log.warn({ event: 'directory_home_refused', user: name, dn: e.dn, problem: r.problem }, `directory: home of ${name} refused: ${r.problem}`);
    return { ...base, home: null, homeProblem: r.problem };
  }

  private usable(password: string): boolean {
    // an empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which many servers accept
    return password.length > 0 && !password.includes('\0') && Buffer.byteLength(password, 'utf8') <= MAX_PASSWORD_BYTES;
  }

  private async bindAs(dn: string, password: string): Promise<'ok' | 'bad'> {
    const client = await this.connect();
    try {
      await client.bind(dn, password);
      return 'ok';
    } catch (err) {
      const { InvalidCredentialsError, ResultCodeError } = await ldapts();
      if (err instanceof InvalidCredentialsError || err instanceof ResultCodeError) return 'bad';
      if (isTlsError(err) || isNetworkError(err)) throw this.unavailable(err);
      // anything else (e.g. a DN the client library will not encode) is a refusal, not an outage
      return 'bad';
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }

  async verify(entry: UserEntry, password: string): Promise<Verify> {
    if (!entry.dn) return { kind: 'bad' };
    try {
      const r = await this.bindAs(entry.dn, this.usable(password) ? password : 'x');
      this.recovered();
      return r === 'ok' && this.usable(password) ? { kind: 'ok', identity: identityOf(entry) } : { kind: 'bad' };
    } catch (err) {
      return this.report(this.unavailable(err));
    }
  }

  /** Unknown name: a bind to a DN that does not exist, with the given password (same round trips as a real one). */
  async dummy(name: string, password: string): Promise<Verify> {
    const dn = `cn=${escapeDnValue(`gatehouse-absent-${name.slice(0, MAX_LOGIN_CHARS)}`)},${this.o.config.user_base}`;
    try {
      await this.bindAs(dn, this.usable(password) ? password : 'x');
    } catch (err) {
      return this.report(this.unavailable(err));
    }
    return { kind: 'bad' };
  }

  /** `gatehouse audit`: connect the way logins do and bind the service account; never a user's password. */
  async checkBind(): Promise<{ ok: boolean; detail: string }> {
    const how = this.o.config.url.startsWith('ldaps://') ? 'LDAPS' : this.o.config.starttls ? 'StartTLS' : 'no TLS';
    try {
      await this.withService(() => Promise.resolve());
      this.recovered();
      return { ok: how !== 'no TLS', detail: how === 'no TLS' ? `service bind to ${this.o.config.url} succeeded IN CLEAR (insecure_plaintext)` : `service bind over ${how}, certificate verified against ${this.o.ca ? 'directory.ca_file' : 'the system CA store'}` };
    } catch (err) {
      return { ok: false, detail: this.unavailable(err).message };
    }
  }

  /** Forget cached entries (reload, tests). */
  clear(): void {
    this.cache.clear();
  }
}
