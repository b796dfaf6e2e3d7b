/*
 * The lint of `gatehouse check`, derived from the direction-of-safety table (safety.ts, declared beside each
 * default in schema.ts): one warning per setting weaker than the secure default, naming the key, the value,
 * the default and the risk in plain words. A config that passes with no warning is as strict as the embedded
 * defaults (or stricter). Keys a direction cannot judge name a rule in JUDGES below. Each warning has a stable id
 * so tests and `audit` can refer to it.
 */
import net from 'node:net';
import { cidrMatches, compileCidr, coverage, normalizeIp, type CidrRule } from '../policy/network.js';
import type { Config } from './load.js';
import { parseListen } from './load.js';
import { KIND_WORDS, schemaKeys, type JudgeName, type SchemaKey } from './safety.js';
import { configSchema, type RawConfig } from './schema.js';

export interface Warning {
  readonly id: string;
  readonly key: string;
  /** the value as written (or the part of it that weakens) */
  readonly value: string;
  /** the default, for comparison */
  readonly default: string;
  /** plain words: the direction and what it opens */
  readonly risk: string;
}

/** `KEY: VALUE (default D): RISK`, the line `check` prints after `warning: `. */
export function formatWarning(w: Warning): string {
  return `${w.key}: ${w.value} (default ${w.default}): ${w.risk}`;
}

/** A value printed the way it would be written in the YAML file. */
export function show(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || typeof value === 'string') return String(value);
  return JSON.stringify(value) ?? 'null';
}

export function isLoopbackHost(host: string): boolean {
  const ip = normalizeIp(host);
  if (!ip) return false;
  if (net.isIP(ip) === 6) return ip === '::1';
  return ip.startsWith('127.');
}

const LOOPBACK = [compileCidr('loopback', '127.0.0.0/8'), compileCidr('loopback', '::1/128')];

/** Is the CIDR inside one of the rules (or loopback)? */
function within(cidr: string, rules: readonly CidrRule[]): boolean {
  let r: CidrRule;
  try {
    r = compileCidr('entry', cidr);
  } catch {
    return false;
  }
  return rules.some((o) => o.family === r.family && o.prefix <= r.prefix && cidrMatches(o, networkText(r)));
}

function networkText(r: CidrRule): string {
  if (r.family === 'ipv4') {
    const x = r.network[0];
    return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  }
  return r.network.flatMap((w) => [(w >>> 16).toString(16), (w & 0xffff).toString(16)]).join(':');
}

/** Host bits set (e.g. 10.0.0.1/8): usually a typo for another network. */
function hasHostBits(cidr: string): boolean {
  try {
    const r = compileCidr('entry', cidr);
    const max = r.family === 'ipv4' ? 32 : 128;
    let left = max - r.prefix;
    for (let i = (r.family === 'ipv4' ? 1 : 4) - 1; i >= 0 && left > 0; i--) {
      const take = Math.min(32, left);
      const mask = take === 32 ? 0xffffffff : (1 << take) - 1;
      if ((r.network[i]! & mask) >>> 0 !== 0) return true;
      left -= take;
    }
    return false;
  } catch {
    return false;
  }
}

let defaultsCache: RawConfig | null = null;
/** The effective defaults (what an empty file gives). */
export function effectiveDefaults(): RawConfig {
  defaultsCache ??= configSchema.parse({}, { jitless: true }); // one parse: see parseConfig
  return defaultsCache;
}

let keysCache: SchemaKey[] | null = null;
export function configKeys(): SchemaKey[] {
  keysCache ??= schemaKeys(configSchema);
  return keysCache;
}

export function valueAt(data: unknown, keyPath: readonly PropertyKey[]): unknown {
  let cur: unknown = data;
  for (const k of keyPath) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

/** A key is moot when an enclosing section is switched off (`ftp.enabled: false`, `ftp.anonymous.enabled: false`). */
function switchedOff(c: RawConfig, path: readonly string[]): boolean {
  for (let i = 1; i < path.length; i++) {
    if (i === path.length - 1 && path[i] === 'enabled') break;
    const section = valueAt(c, path.slice(0, i));
    if (section && typeof section === 'object' && (section as Record<string, unknown>).enabled === false) return true;
  }
  return false;
}

type Judge = (c: Config, key: string, defaults: RawConfig) => Warning[];

function listeners(c: RawConfig): string[] {
  const out: string[] = [];
  if (c.smtp.enabled) out.push(c.smtp.listen, ...(c.smtp.implicit_tls_listen ? [c.smtp.implicit_tls_listen] : []));
  if (c.ftp.enabled) out.push(c.ftp.listen);
  if (c.nntp.enabled) out.push(c.nntp.listen, ...(c.nntp.implicit_tls_listen ? [c.nntp.implicit_tls_listen] : []));
  return out;
}

const JUDGES: Record<JudgeName, Judge> = {
  trusted_networks: (c, key, d) => {
    const w: Warning[] = [];
    const def = show(d.smtp.trusted_networks);
    const cov = coverage(key, c.smtp.trusted_networks.filter((n) => !within(n, LOOPBACK)));
    const pub = new Set(cov.publicEntries);
    for (const n of c.smtp.trusted_networks) {
      if (within(n, LOOPBACK)) continue;
      if (pub.has(n)) {
        w.push({ id: 'smtp.trusted_public', key, value: n, default: def, risk: `list widened: ${n} includes public addresses: hosts on the internet may relay mail anywhere without a password` });
      } else {
        w.push({ id: 'smtp.trusted_wide', key, value: n, default: def, risk: `list widened: every host in ${n} may relay mail anywhere without a password` });
      }
    }
    const limit = c.smtp.trusted_networks_warn_wider_than;
    if (cov.shareBits < limit) {
      const parts = [cov.ipv4 > 0n ? `${cov.ipv4} IPv4 addresses` : '', cov.ipv6 > 0n ? `${cov.ipv6} IPv6 addresses` : ''].filter(Boolean).join(' and ');
      w.push({
        id: 'smtp.trusted_share',
        key,
        value: show(c.smtp.trusted_networks),
        default: def,
        risk: `list widened: together ${parts}, more than a /${limit} share of the address space (smtp.trusted_networks_warn_wider_than), may relay without a password`,
      });
    }
    return w;
  },
  tls_cert: (c, key) =>
    c.tls.cert === null && !listeners(c).every((v) => isLoopbackHost(parseListen(v).host))
      ? [{ id: 'tls.self_signed_public', key, value: 'null (self-signed)', default: 'null, on loopback only', risk: 'self-signed certificate on a non-loopback listener: clients cannot tell the server from an impostor' }]
      : [],
  // Where FTP folders may be is a refusal at load time (load.ts checkFolders); nothing left to warn about.
  ftp_folder: () => [],
  identity_sources: (c, key) => {
    const s = c.identity.sources;
    return s.includes('directory') && s.indexOf('directory') < s.indexOf('local')
      ? [{ id: 'identity.directory_first', key, value: show(s), default: '[local]', risk: 'the directory is asked before the users file: a directory entry with the name of a local user takes that name over' }]
      : [];
  },
  ftp_shared_rights: (c, key) => {
    const w: Warning[] = [];
    if (c.ftp.isolation !== 'shared') return w;
    for (const [who, rights] of Object.entries(c.ftp.shared.rights)) {
      const writes = rights.filter((r) => r === 'write' || r === 'delete' || r === 'rename');
      if (writes.length > 0 && (who === 'authenticated' || who.startsWith('group:'))) {
        w.push({ id: 'ftp.shared_write', key: `${key}.${who}`, value: show(rights), default: '[list]', risk: `ftp.isolation shared gives ${who} ${writes.join(',')} on the one shared root: each of them can change or delete the others' files` });
      }
    }
    return w;
  },
  ftp_shares: (c, key) => {
    const w: Warning[] = [];
    c.ftp.shares.forEach((s, i) => {
      for (const [who, rights] of Object.entries(s.rights)) {
        const k = `${key}.${i}.rights.${who}`;
        if (who === 'anonymous' && rights.length > 0) w.push({ id: 'ftp.share_anonymous', key: k, value: show(rights), default: '[]', risk: `share ${s.path} grants ${rights.join(',')} to anonymous users` });
        if (rights.includes('write') && (rights.includes('read') || rights.includes('list')) && (who === 'authenticated' || who.startsWith('group:'))) {
          w.push({ id: 'ftp.share_open_dropbox', key: k, value: show(rights), default: '[write]', risk: `share ${s.path} gives ${who} both write and read/list: uploaders see each other's files (not a drop box)` });
        }
      }
      const remote = (s.notify?.to ?? []).filter((t) => t.includes('@') && !c.smtp.local_domains.includes(t.slice(t.lastIndexOf('@') + 1).toLowerCase()));
      if (remote.length > 0) w.push({ id: 'ftp.share_notify_remote', key: `${key}.${i}.notify.to`, value: show(remote), default: '(none)', risk: `upload notices of ${s.path} (file names, sizes, uploader names) leave this server by mail to ${remote.join(', ')}` });
    });
    return w;
  },
  nntp_mail_gateway: (c, key) =>
    c.nntp.mail_gateway
      ? [{ id: 'nntp.mail_gateway', key: `${key}.domain`, value: c.nntp.mail_gateway.domain, default: 'null', risk: `mail to <group>@${c.nntp.mail_gateway.domain} from authenticated SMTP users and trusted networks is posted to news (group rights still apply)` }]
      : [],
  // an exempt network gets the higher per-address login limit; wider than /24 (IPv4) or /48 (IPv6) is more than an office
  throttle_exempt: (c, key) =>
    c.auth.throttle_exempt.flatMap((cidr, i) => {
      let r: CidrRule;
      try {
        r = compileCidr(key, cidr);
      } catch {
        return [];
      }
      const widest = r.family === 'ipv4' ? 24 : 48;
      return r.prefix < widest
        ? [{ id: 'auth.wide_exempt', key: `${key}.${i}`, value: cidr, default: '[]', risk: `list widened: wider than /${widest}: every address in it gets auth.throttle.exempt_address_failures, attackers' included` }]
        : [];
    }),
  proxy_from: (c, key) => {
    const w: Warning[] = [];
    const svc = key.split('.')[0] as 'smtp' | 'ftp' | 'nntp';
    const from = c[svc].proxy_protocol.from;
    from.forEach((cidr, i) => {
      if (hasHostBits(cidr)) w.push({ id: 'cidr.host_bits', key: `${key}.${i}`, value: cidr, default: '[]', risk: `${cidr} has host bits set; did you mean a different network?` });
      let wide = false;
      try {
        const r = compileCidr('entry', cidr);
        wide = r.prefix < (r.family === 'ipv4' ? 32 : 128);
      } catch {
        wide = false;
      }
      if (wide) w.push({ id: 'proxy.from_wide', key: `${key}.${i}`, value: cidr, default: '[]', risk: `${cidr} is wider than one host: any machine there can send a PROXY header and pose as any client address (a trusted network included); list each balancer's own address` });
    });
    if (svc === 'ftp' && from.length > 0 && c.ftp.passive.address === null) {
      w.push({ id: 'proxy.ftp_passive_address', key: 'ftp.passive.address', value: 'null', default: 'null', risk: "ftp.proxy_protocol is on but passive.address is null: PASV advertises this instance's own address, which clients behind the balancer cannot reach; set the balancer's public address and map the passive range in HAProxy" });
    }
    return w;
  },
  state_store: (c, key) => {
    const w: Warning[] = [];
    const store = c.state_store;
    if (store.url === null) return w;
    let host = '';
    try {
      host = new URL(store.url).hostname.replace(/^\[|\]$/g, '');
    } catch {
      host = '';
    }
    if (store.url.startsWith('redis://') && !isLoopbackHost(host)) {
      w.push({ id: 'state_store.plaintext', key, value: store.url.replace(/\/\/[^@/]*@/, '//***@'), default: 'null', risk: `redis:// to ${host || 'a remote host'} without TLS: the shared counters (and the store's password) cross the network in plain text; use rediss://` });
    }
    if (store.on_error === 'local') {
      w.push({ id: 'state_store.local_fallback', key: 'state_store.on_error', value: 'local', default: 'local', risk: 'local: while the store is unreachable each instance counts alone (logged once a minute, gatehouse_state_store_up 0), so limits and login failures spread over instances count less (a guesser gets more tries); refuse fails closed instead (posts refused with 403, logins with the temporary reply, until it is back)' });
    }
    return w;
  },
  nntp_groups: (c, key) => {
    const w: Warning[] = [];
    c.nntp.groups.forEach((g, i) => {
      if (g.read.includes('anonymous')) w.push({ id: 'nntp.anonymous_read', key: `${key}.${i}.read`, value: show(g.read), default: '[]', risk: `${g.name} is readable without logging in` });
      if (g.post.includes('anonymous')) w.push({ id: 'nntp.anonymous_post', key: `${key}.${i}.post`, value: show(g.post), default: '[]', risk: `${g.name} accepts posts without logging in: spam and forged authors` });
    });
    return w;
  },
  nntp_peers: (c, key) => {
    const w: Warning[] = [];
    c.nntp.peers.forEach((p, i) => {
      if (p.direction === 'out') return;
      if (!p.tls) w.push({ id: 'nntp.peer_plaintext', key: `${key}.${i}.tls`, value: 'false', default: 'true', risk: `articles from peer ${p.name} are accepted without TLS: anyone on the path can inject them${p.password_file === null ? '' : '; its secret crosses the wire in clear (taken from its address only)'}` });
      if (p.password_file === null) w.push({ id: 'nntp.peer_no_password', key: `${key}.${i}.password_file`, value: 'null', default: 'a file', risk: `peer ${p.name} is recognised by its address alone` });
      if (p.groups.some((g) => g === '*')) w.push({ id: 'nntp.peer_all_groups', key: `${key}.${i}.groups`, value: show(p.groups), default: 'named groups', risk: `peer ${p.name} may feed every group` });
    });
    return w;
  },
};

export function lintConfig(c: Config): Warning[] {
  const defaults = effectiveDefaults();
  const w: Warning[] = [];
  for (const k of configKeys()) {
    const s = k.safety;
    if (s === null || s.kind === 'neutral') continue;
    if (switchedOff(c, k.path)) continue;
    if (s.kind === 'judged') {
      w.push(...JUDGES[s.judge](c, k.key, defaults));
      continue;
    }
    const value = valueAt(c, k.path);
    if (value === undefined) continue; // inside a section that is null (smtp.relay.smarthost)
    const dflt = valueAt(defaults, k.path) ?? k.ownDefault;
    const add = (v: unknown) => w.push({ id: s.id ?? k.key, key: k.key, value: show(v), default: show(dflt), risk: `${KIND_WORDS[s.kind]}: ${s.risk}` });
    switch (s.kind) {
      case 'raised':
        if (typeof value === 'number' && typeof dflt === 'number' && value > dflt) add(value);
        break;
      case 'lowered':
        if (typeof value === 'number' && typeof dflt === 'number' && value < dflt) add(value);
        break;
      case 'enabled':
        if (value === true && dflt !== true) add(value);
        break;
      case 'disabled':
        if (value === false && dflt !== false) add(value);
        break;
      case 'ranked':
        if (typeof value === 'string' && s.order.indexOf(value) > s.order.indexOf(String(dflt))) add(value);
        break;
      case 'grown': {
        const base = Array.isArray(dflt) ? (dflt as unknown[]).map(String) : [];
        const baseRules = base.flatMap((b) => {
          try {
            return [compileCidr('default', b)];
          } catch {
            return [];
          }
        });
        for (const entry of Array.isArray(value) ? (value as unknown[]).map(String) : []) {
          if (!base.includes(entry) && !within(entry, baseRules)) add(entry);
        }
        break;
      }
      case 'exposed':
        if (typeof value === 'string' && !isLoopbackHost(parseListen(value).host)) {
          w.push({ id: s.id ?? 'listen.public', key: k.key, value, default: show(dflt), risk: `${KIND_WORDS.exposed}: ${parseListen(value).host} is not loopback, so ${s.risk}` });
        }
        break;
    }
  }
  const lists: Array<[string, readonly string[]]> = [
    ['access.allow', c.access.allow],
    ['access.deny', c.access.deny],
    ['smtp.trusted_networks', c.smtp.trusted_networks],
    ...(['smtp', 'ftp', 'nntp'] as const).flatMap((s): Array<[string, readonly string[]]> => [
      [`${s}.access.allow`, c[s].access.allow],
      [`${s}.access.deny`, c[s].access.deny],
    ]),
  ];
  for (const [key, list] of lists) {
    for (const cidr of list) {
      if (hasHostBits(cidr)) w.push({ id: 'cidr.host_bits', key, value: cidr, default: '-', risk: `${cidr} has host bits set: the whole network is meant; did you mean a different one?` });
    }
  }
  return w;
}

/** Levenshtein distance, for "did you mean". */
export function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

export function nearest(name: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(name, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

/** Words people write for "everyone" that are not a right name. */
const EVERYONE_WORDS = new Set(['everyone', 'everybody', 'all', 'any', 'anyone', 'anybody', 'public', 'world', 'guest', 'guests', 'users', 'user', 'nobody', 'none', 'auth', 'anon', 'group']);

export interface PrincipalReport {
  /** unknown names: config errors (exit 2) */
  readonly errors: string[];
  /** names that cannot be checked yet (no users): printed, exit unchanged */
  readonly notes: string[];
}

/**
 * NNTP read/post names and FTP share rights must be `anonymous`, `authenticated`, a known user or
 * `group:<known group>`. Anything else would silently match nobody (a group readable by no one, a share
 * nobody can use). With no users yet, only the look-alikes of the keywords are errors; the rest is a note.
 */
export function checkPrincipals(c: RawConfig, source: string, users: ReadonlyArray<{ name: string; groups: readonly string[] }>): PrincipalReport {
  const errors: string[] = [];
  const notes: string[] = [];
  const userNames = users.map((u) => u.name);
  // with a directory, its mapped groups are known too, and a user name the users file lacks may be a directory user
  const directory = c.directory !== null && c.identity.sources.includes('directory');
  const mapped = directory ? Object.values(c.directory?.group_map ?? {}) : [];
  const groupNames = [...new Set([...users.flatMap((u) => u.groups), ...mapped])].map((g) => `group:${g}`);
  const known = ['anonymous', 'authenticated', ...userNames, ...groupNames];
  const judge = (key: string, who: string) => {
    if (known.includes(who)) return;
    if (directory && !who.startsWith('group:') && !EVERYONE_WORDS.has(who) && !['anonymous', 'authenticated'].some((k) => distance(who, k) <= 3)) {
      notes.push(`${key}: ${JSON.stringify(who)} is not in the users file; it may be a directory user (not checked)`);
      return;
    }
    const suggestion = nearest(who, who.startsWith('group:') && groupNames.length > 0 ? groupNames : known);
    const hint = EVERYONE_WORDS.has(who)
      ? '; for every logged-in user write authenticated, for anyone at all anonymous'
      : suggestion
        ? `; did you mean ${JSON.stringify(suggestion)}?`
        : '';
    const keyword = ['anonymous', 'authenticated'].some((k) => distance(who, k) <= 3) || EVERYONE_WORDS.has(who);
    if (users.length === 0 && !keyword) {
      notes.push(`${key}: ${JSON.stringify(who)} cannot be checked yet: the users file has no users (it matches nobody until one is added)`);
      return;
    }
    const what = who.startsWith('group:') ? `no user is in group ${who.slice(6)}` : keyword ? 'not a right name' : 'no such user';
    errors.push(`${source}: ${key}: got ${JSON.stringify(who)}: ${what}; expected anonymous, authenticated, a user name or group:NAME of a known group${hint}`);
  };
  if (c.nntp.enabled) {
    c.nntp.groups.forEach((g, i) => {
      g.read.forEach((who) => judge(`nntp.groups.${i}.read`, who));
      g.post.forEach((who) => judge(`nntp.groups.${i}.post`, who));
    });
  }
  if (c.ftp.enabled) {
    c.ftp.shares.forEach((s, i) => {
      for (const who of Object.keys(s.rights)) judge(`ftp.shares.${i}.rights`, who);
    });
  }
  return { errors, notes };
}
