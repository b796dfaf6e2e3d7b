/*
 * Loading: read YAML, validate against the contract, resolve every path against the config file's folder,
 * deep-freeze. Errors name the file, the key path, the bad value and what was expected.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isMap, isPair, isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { GatehouseError } from '../errors.js';
import { coverage, normalizeIp } from '../policy/network.js';
import { configSchema, type RawConfig } from './schema.js';

export interface ConfigPaths {
  readonly configDir: string;
  readonly stateDir: string;
  readonly usersFile: string;
  readonly spoolDir: string;
  readonly mailDir: string;
  readonly ftpHomes: string;
  readonly ftpAnonRoot: string;
  readonly newsDir: string;
  readonly tlsDir: string;
  readonly logDir: string;
  readonly tlsCert: string | null;
  readonly tlsKey: string | null;
  readonly smarthostPasswordFile: string | null;
  readonly directoryPasswordFile: string | null;
  readonly directoryCaFile: string | null;
  /** ftp.isolation: shared — the one root */
  readonly ftpSharedRoot: string;
  readonly stateStorePasswordFile: string | null;
  readonly metricsPasswordFile: string | null;
  /** ftp.allowed_roots, resolved */
  readonly ftpAllowedRoots: readonly string[];
  /** share virtual path → absolute folder */
  readonly shares: ReadonlyMap<string, string>;
}

export interface Config extends RawConfig {
  /** The file this came from, or `<embedded defaults>`. */
  readonly source: string;
  readonly paths: ConfigPaths;
}

export const EMBEDDED = '<embedded defaults>';

/** The default config location: $GATEHOUSE_CONFIG, else ./config/gatehouse.yaml. */
export function defaultConfigPath(): string {
  return path.resolve(process.env.GATEHOUSE_CONFIG || path.join('config', 'gatehouse.yaml'));
}

/**
 * Load the config. With `explicit` false a missing default file means "run on the embedded defaults"
 * (what `npm start` on a fresh clone does if the file was removed); a named file that is missing is an error.
 */
export function loadConfig(file: string | undefined): Config {
  const explicit = file !== undefined;
  const target = path.resolve(file ?? defaultConfigPath());
  let text: string | null = null;
  try {
    text = fs.readFileSync(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (explicit || code !== 'ENOENT') {
      throw new GatehouseError('GH_ERR_CONFIG', `${target}: cannot read config file (${code ?? String(err)})`);
    }
  }
  if (text === null) return parseConfig({}, EMBEDDED, path.resolve('config'));
  return parseConfigText(text, target);
}

/** The key path (a.b.c) a node at this offset sits under, for YAML error messages. */
function keyPathAt(doc: Document, offset: number): string {
  let best: string[] = [];
  visit(doc, {
    Pair(_key, pair, ancestors) {
      const k = pair.key;
      const v = pair.value as { range?: [number, number, number] } | null;
      if (!isScalar(k) || !k.range) return;
      const kr = k.range;
      const end = v?.range?.[2] ?? kr[2];
      if (offset < kr[0] || offset > end) return;
      const names: string[] = [];
      for (const a of ancestors) {
        if (isPair(a) && isScalar(a.key)) names.push(String(a.key.value));
      }
      names.push(String(k.value));
      if (names.length > best.length) best = names;
    },
  });
  return best.join('.');
}

/** The largest number of aliases a config may expand (a config has none; a billion-laughs file has millions). */
const MAX_ALIAS_COUNT = 100;

export function parseConfigText(text: string, file: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const pos = first.linePos?.[0];
    const where = pos ? ` line ${pos.line}, column ${pos.col}` : '';
    if (first.code === 'DUPLICATE_KEY') {
      const name = (/^[^:\n]*/.exec(text.slice(first.pos[0]))?.[0] ?? '').trim().replace(/^["']|["']$/g, '') || '?';
      const parent = keyPathAt(doc, first.pos[0]).split('.').slice(0, -1).join('.');
      const key = parent ? `${parent}.${name}` : name;
      throw new GatehouseError('GH_ERR_CONFIG', `${file}:${where}: ${key}: key written twice (each key once; the second would silently win)`);
    }
    const key = keyPathAt(doc, first.pos[0]);
    throw new GatehouseError('GH_ERR_CONFIG', `${file}:${where}:${key ? ` ${key}:` : ''} not valid YAML: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    // yaml throws a ReferenceError for alias expansion past maxAliasCount (the "billion laughs" file)
    throw new GatehouseError('GH_ERR_CONFIG', `${file}: not valid YAML for a config: ${err instanceof Error ? err.message : String(err)} (YAML aliases expand to more than ${MAX_ALIAS_COUNT} nodes)`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new GatehouseError('GH_ERR_CONFIG', `${file}: expected a mapping of keys at the top level`);
  }
  const lineOf = (keyPath: readonly PropertyKey[]): number | null => {
    for (let n = keyPath.length; n > 0; n--) {
      const node = doc.getIn(keyPath.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lineCounter.linePos(node.range[0]).line;
      // a key whose value is a map: find the key scalar itself
      const parent = n > 1 ? (doc.getIn(keyPath.slice(0, n - 1) as unknown[], true)) : doc.contents;
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(keyPath[n - 1]));
        if (pair && isScalar(pair.key) && pair.key.range) return lineCounter.linePos(pair.key.range[0]).line;
      }
    }
    return null;
  };
  return parseConfig(data, file, path.dirname(file), lineOf);
}

export function parseConfig(data: unknown, source: string, configDir: string, lineOf: (keyPath: readonly PropertyKey[]) => number | null = () => null): Config {
  // jitless: zod would otherwise compile a parser per object schema (new Function) that pays off only over many
  // parses; a config is parsed once per start, reload or CLI call (~10 ms saved on each)
  const result = configSchema.safeParse(data, { jitless: true });
  if (!result.success) {
    throw new GatehouseError('GH_ERR_CONFIG', formatIssues(source, data, result.error.issues, lineOf));
  }
  const raw = result.data;
  const paths = resolvePaths(raw, configDir);
  checkSemantics(source, raw, paths);
  const config: Config = { ...raw, source, paths };
  return deepFreeze(config);
}

function formatIssues(source: string, data: unknown, issues: readonly z.core.$ZodIssue[], lineOf: (keyPath: readonly PropertyKey[]) => number | null): string {
  const at = (keyPath: readonly PropertyKey[]) => {
    const line = lineOf(keyPath);
    return line === null ? '' : ` (line ${line})`;
  };
  const lines = issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const base = issue.path.map(String).join('.');
      return issue.keys
        .map((k) => `${source}: ${base ? `${base}.` : ''}${k}: unknown key (check the spelling; see config/gatehouse.yaml for the keys)${at([...issue.path, k])}`)
        .join('\n');
    }
    const keyPath = issue.path.map(String).join('.') || '(top level)';
    const value = valueAt(data, issue.path);
    const got = value === undefined ? '' : ` got ${JSON.stringify(value)};`;
    return `${source}: ${keyPath}:${got} ${issue.message}${at(issue.path)}`;
  });
  return `invalid configuration\n${lines.join('\n')}`;
}

function valueAt(data: unknown, keyPath: readonly PropertyKey[]): unknown {
  let cur: unknown = data;
  for (const k of keyPath) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

/** Rules that span keys, in the spirit of Postfix's smtpd_check_init: refuse configs that cannot be safe. */
function checkSemantics(source: string, raw: RawConfig, paths: ConfigPaths): void {
  const errors: string[] = [];
  if ((raw.tls.cert === null) !== (raw.tls.key === null)) {
    errors.push(`${source}: tls: cert and key must both be set or both be null (null = self-signed pair)`);
  }
  // Judged by what the list covers, not how it is spelled: 0.0.0.0/00, ::ffff:0.0.0.0/96, 0.0.0.0/1 + 128.0.0.0/1, 0::0/0.
  const trusted = coverage('smtp.trusted_networks', raw.smtp.trusted_networks);
  if (trusted.everything) {
    errors.push(
      `${source}: smtp.trusted_networks: got ${JSON.stringify(raw.smtp.trusted_networks)}; together these cover every ${trusted.ipv4 === 1n << 32n ? 'IPv4' : 'IPv6'} address: that is an open relay and Gatehouse refuses to start with it`,
    );
  }
  const metricsListen = raw.metrics.listen;
  if (metricsListen !== null && raw.metrics.password_file === null && !isLoopbackListen(metricsListen)) {
    errors.push(`${source}: metrics.listen: ${metricsListen} is not a loopback address; set metrics.password_file (or listen on 127.0.0.1) — the status page is not for the open network`);
  }
  errors.push(...checkFolders(source, raw, paths));
  const sh = raw.smtp.relay.smarthost;
  if (sh && (sh.user === null) !== (sh.password_file === null)) {
    errors.push(`${source}: smtp.relay.smarthost: user and password_file must be set together`);
  }
  const seen = new Set<string>();
  raw.nntp.groups.forEach((g, i) => {
    if (seen.has(g.name)) errors.push(`${source}: nntp.groups.${i}.name: got ${JSON.stringify(g.name)}; group listed twice`);
    seen.add(g.name);
  });
  const sharePaths = new Set<string>();
  raw.ftp.shares.forEach((s, i) => {
    if (sharePaths.has(s.path)) errors.push(`${source}: ftp.shares.${i}.path: got ${JSON.stringify(s.path)}; share mounted twice`);
    sharePaths.add(s.path);
  });
  const dir = raw.directory;
  if (raw.identity.sources.includes('directory') && dir === null) {
    errors.push(`${source}: identity.sources: lists directory but no directory: section is configured`);
  }
  if (dir) {
    const plain = dir.url.startsWith('ldap://');
    if (plain && !dir.starttls && !dir.insecure_plaintext) {
      errors.push(`${source}: directory.url: got ${JSON.stringify(dir.url)}; binds would send passwords in clear. Use ldaps://, or starttls: true, or (only on a trusted link) insecure_plaintext: true`);
    }
    if (!plain && dir.starttls) errors.push(`${source}: directory.starttls: ldaps:// is already encrypted; starttls is for ldap:// URLs`);
  }
  raw.ftp.allowed_roots.forEach((r, i) => {
    if (!path.isAbsolute(r) || path.normalize(r) !== r.replace(/(.)\/+$/, '$1')) errors.push(`${source}: ftp.allowed_roots.${i}: got ${JSON.stringify(r)}; expected an absolute, normalised folder such as /srv/ftp/users`);
  });
  if (raw.ftp.isolation === 'directory') {
    if (!raw.identity.sources.includes('directory')) errors.push(`${source}: ftp.isolation: directory needs identity.sources to include directory`);
    if (raw.ftp.allowed_roots.length === 0) errors.push(`${source}: ftp.isolation: directory needs ftp.allowed_roots (the folders directory homes may lie in)`);
  }
  const [lo, hi] = raw.ftp.passive.ports.split('-').map(Number) as [number, number];
  if (hi - lo > 10_000) errors.push(`${source}: ftp.passive.ports: range wider than 10000 ports`);
  if (errors.length > 0) throw new GatehouseError('GH_ERR_CONFIG', `invalid configuration\n${errors.join('\n')}`);
}

function resolvePaths(raw: RawConfig, configDir: string): ConfigPaths {
  const rel = (p: string, base = configDir) => path.resolve(base, p);
  const stateDir = rel(raw.state_dir);
  return {
    configDir,
    stateDir,
    usersFile: rel(raw.users_file),
    spoolDir: path.join(stateDir, 'spool'),
    mailDir: path.join(stateDir, 'mail'),
    ftpHomes: rel(raw.ftp.homes, stateDir),
    ftpAnonRoot: rel(raw.ftp.anonymous.root, stateDir),
    newsDir: path.join(stateDir, 'news'),
    tlsDir: path.join(stateDir, 'tls'),
    logDir: path.join(stateDir, 'log'),
    tlsCert: raw.tls.cert === null ? null : rel(raw.tls.cert),
    tlsKey: raw.tls.key === null ? null : rel(raw.tls.key),
    smarthostPasswordFile: raw.smtp.relay.smarthost?.password_file ? rel(raw.smtp.relay.smarthost.password_file) : null,
    directoryPasswordFile: raw.directory ? rel(raw.directory.bind_password_file) : null,
    directoryCaFile: raw.directory?.ca_file ? rel(raw.directory.ca_file) : null,
    ftpSharedRoot: rel(raw.ftp.shared.root, stateDir),
    stateStorePasswordFile: raw.state_store.password_file ? rel(raw.state_store.password_file) : null,
    metricsPasswordFile: raw.metrics.password_file === null ? null : rel(raw.metrics.password_file),
    ftpAllowedRoots: raw.ftp.allowed_roots.map((r) => path.resolve(r)),
    shares: new Map(raw.ftp.shares.map((s) => [s.path, rel(s.dir, stateDir)])),
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof Map) && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Parse `ADDRESS:PORT` (already validated by the schema). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  if (!m) throw new GatehouseError('GH_ERR_CONFIG', `bad listen address ${JSON.stringify(value)}`);
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

function isLoopbackListen(value: string): boolean {
  const host = parseListen(value).host;
  if (net.isIP(host) === 4) return host.startsWith('127.');
  return normalizeIp(host) === '::1' || (normalizeIp(host) ?? '').startsWith('127.');
}

/** System folders FTP must never serve, nor hold state in: the folder itself and everything under it. */
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/root', '/run', '/sbin', '/sys', '/usr'];
/** Folders that are system folders themselves but may hold ours below them (/var/lib/gatehouse, /srv/ftp, /home/x). */
const SYSTEM_EXACT = ['/', '/var', '/var/lib', '/srv', '/home', '/opt', '/tmp', '/mnt', '/media'];

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function exactlySystem(dir: string): boolean {
  return SYSTEM_EXACT.includes(dir) || SYSTEM_TREES.includes(dir);
}

/** Why a folder is (or is inside) a system folder, or null. */
function systemFolder(dir: string): string | null {
  if (SYSTEM_EXACT.includes(dir)) return `${dir} is a system folder`;
  const tree = SYSTEM_TREES.find((t) => inside(dir, t));
  return tree ? `${dir} is ${dir === tree ? 'a system folder' : `inside the system folder ${tree}`}` : null;
}

/** The real path of the longest existing prefix of a path (so a symlink on the way is seen through). */
function realish(p: string): string {
  let cur = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Where FTP may serve from (like `postfix check` for its queue folders): homes, the anonymous root and every
 * share dir must resolve inside state_dir or one of ftp.allowed_roots; never `/` or a system folder; a share
 * never inside (or above) the homes folder, where it would open users' homes to others; and none above the
 * state folder's private parts (spool, mail, tls, log, news, the users file).
 */
function checkFolders(source: string, raw: RawConfig, p: ConfigPaths): string[] {
  const errors: string[] = [];
  if (exactlySystem(p.stateDir)) errors.push(`${source}: state_dir: resolves to ${p.stateDir}: a system folder; give Gatehouse a folder of its own`);
  p.ftpAllowedRoots.forEach((r, i) => {
    const why = systemFolder(r);
    if (why) errors.push(`${source}: ftp.allowed_roots.${i}: got ${JSON.stringify(raw.ftp.allowed_roots[i])}: ${why}; FTP must never serve it`);
  });
  if (!raw.ftp.enabled) return errors;
  const roots = [p.stateDir, ...p.ftpAllowedRoots].map(realish);
  const privateParts = [p.spoolDir, p.mailDir, p.tlsDir, p.logDir, p.newsDir, p.usersFile, p.configDir].map(realish);
  const homes = realish(p.ftpHomes);
  const judge = (key: string, written: string, dir: string, what: 'homes' | 'anonymous' | 'share') => {
    const real = realish(dir);
    const where = `got ${JSON.stringify(written)}, which resolves to ${real}`;
    if (exactlySystem(real) || exactlySystem(dir)) return errors.push(`${source}: ${key}: ${where}: ${real} is a system folder; FTP must never serve it`);
    if (!roots.some((r) => inside(real, r))) {
      const sys = systemFolder(real);
      if (sys) return errors.push(`${source}: ${key}: ${where}: ${sys}; FTP must never serve it`);
      return errors.push(`${source}: ${key}: ${where}: outside state_dir (${p.stateDir})${p.ftpAllowedRoots.length ? ' and every ftp.allowed_roots entry' : ''}; list the folder in ftp.allowed_roots to serve it`);
    }
    const exposed = privateParts.find((x) => inside(x, real));
    if (exposed) return errors.push(`${source}: ${key}: ${where}: it contains ${exposed}, which FTP must never serve`);
    if (what !== 'homes' && inside(homes, real)) return errors.push(`${source}: ${key}: ${where}: it contains the homes folder ${homes}: every user's home would be open to others`);
    if (what !== 'homes' && inside(real, homes)) return errors.push(`${source}: ${key}: ${where}: it is inside the homes folder ${homes}: a user's home would be open to others`);
    if (what === 'homes' && real === roots[0]) return errors.push(`${source}: ${key}: ${where}: homes must be a folder of their own, not state_dir itself`);
    return 0;
  };
  judge('ftp.homes', raw.ftp.homes, p.ftpHomes, 'homes');
  if (raw.ftp.anonymous.enabled) judge('ftp.anonymous.root', raw.ftp.anonymous.root, p.ftpAnonRoot, 'anonymous');
  raw.ftp.shares.forEach((s, i) => judge(`ftp.shares.${i}.dir`, s.dir, p.shares.get(s.path) ?? path.resolve(p.stateDir, s.dir), 'share'));
  if (raw.ftp.isolation === 'shared') judge('ftp.shared.root', raw.ftp.shared.root, p.ftpSharedRoot, 'share');
  return errors;
}
