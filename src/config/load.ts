/*
 * Loading: read YAML, validate against the contract, resolve every path against the config file's folder,
 * deep-freeze. Errors name the file, the key path, the bad value and what was expected.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { GatehouseError } from '../errors.js';
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

export function parseConfigText(text: string, file: string): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const where = first.linePos?.[0] ? ` line ${first.linePos[0].line}, column ${first.linePos[0].col}` : '';
    throw new GatehouseError('GH_ERR_CONFIG', `${file}:${where}: not valid YAML: ${first.message.split('\n')[0]}`);
  }
  const data: unknown = doc.toJS() ?? {};
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new GatehouseError('GH_ERR_CONFIG', `${file}: expected a mapping of keys at the top level`);
  }
  return parseConfig(data, file, path.dirname(file));
}

export function parseConfig(data: unknown, source: string, configDir: string): Config {
  const result = configSchema.safeParse(data);
  if (!result.success) {
    throw new GatehouseError('GH_ERR_CONFIG', formatIssues(source, data, result.error.issues));
  }
  const raw = result.data;
  checkSemantics(source, raw);
  const config: Config = { ...raw, source, paths: resolvePaths(raw, configDir) };
  return deepFreeze(config);
}

function formatIssues(source: string, data: unknown, issues: readonly z.core.$ZodIssue[]): string {
  const lines = issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const base = issue.path.map(String).join('.');
      return issue.keys
        .map((k) => `${source}: ${base ? `${base}.` : ''}${k}: unknown key (check the spelling; see config/gatehouse.yaml for the keys)`)
        .join('\n');
    }
    const keyPath = issue.path.map(String).join('.') || '(top level)';
    const value = valueAt(data, issue.path);
    const got = value === undefined ? '' : ` got ${JSON.stringify(value)};`;
    return `${source}: ${keyPath}:${got} ${issue.message}`;
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
function checkSemantics(source: string, raw: RawConfig): void {
  const errors: string[] = [];
  if ((raw.tls.cert === null) !== (raw.tls.key === null)) {
    errors.push(`${source}: tls: cert and key must both be set or both be null (null = self-signed pair)`);
  }
  if (raw.smtp.trusted_networks.some((n) => n === '0.0.0.0/0' || n === '::/0')) {
    errors.push(`${source}: smtp.trusted_networks: got a match-everything network; that is an open relay and Gatehouse refuses to start with it`);
  }
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
  if (raw.ftp.anonymous.enabled && raw.ftp.anonymous.write === 'dropbox' && raw.ftp.anonymous.root === raw.ftp.homes) {
    errors.push(`${source}: ftp.anonymous.root: must not be the homes folder`);
  }
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
    if (path.resolve(r) === '/') errors.push(`${source}: ftp.allowed_roots.${i}: the whole file system is not a home root`);
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
