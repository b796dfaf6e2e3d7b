/*
 * `gatehouse config`, like Postfix's postconf: `config show` prints the effective config (every key, defaults
 * filled in), `config show --changed` only the keys that differ from the defaults (postconf -n), and
 * `config show KEY…` the named keys (a section name prints the keys under it). One `key = value` line each, values
 * as YAML flow; `--json` prints an object instead. Secrets are never printed: keys named like a password, secret
 * or token show `<hidden>` (a `*_file` key shows the file's path, never its contents), and a password inside a
 * URL is masked.
 */
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config/load.js';
import { configKeys, effectiveDefaults, nearest, valueAt } from '../config/lint.js';
import { usageError } from './io.js';

const USAGE = 'usage: gatehouse config show [--changed] [--json] [KEY…]';

const SECRET_KEY = /(password|passwd|secret|token|passphrase|private_key|credential)(?!.*_file$)/i;

/** A value safe to print: secrets hidden, URL passwords masked. */
export function redact(key: string, value: unknown): unknown {
  const last = key.split('.').pop() ?? key;
  if (value !== null && SECRET_KEY.test(last) && !/_file$/.test(last)) return '<hidden>';
  if (typeof value === 'string') return value.replace(/(\w+:\/\/[^/@:\s]*:)[^/@\s]*@/g, '$1<hidden>@');
  if (Array.isArray(value)) return value.map((v) => redact(key, v));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, redact(`${key}.${k}`, v)]));
  }
  return value;
}

/** YAML flow style for one value (strings quoted only when YAML would misread them). */
export function flow(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return /^[A-Za-z0-9_./:@<>+-][A-Za-z0-9_./:@<> +-]*$/.test(value) && !/^(true|false|null|~|yes|no|on|off)$/i.test(value) && !/^[\d.+-]+$/.test(value) && !/: /.test(value) ? value : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(flow).join(', ')}]`;
  if (typeof value === 'object') return `{ ${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${/^[a-z0-9_]+$/i.test(k) ? k : JSON.stringify(k)}: ${flow(v)}`).join(', ')} }`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return 'null';
}

interface Entry {
  readonly key: string;
  readonly value: unknown;
  readonly changed: boolean;
}

/** Every key of the effective config, in schema order; a null section (smtp.relay.smarthost: null) is one entry. */
export function configEntries(config: Config): Entry[] {
  const defaults = effectiveDefaults();
  const out: Entry[] = [];
  const seen = new Set<string>();
  for (const k of configKeys()) {
    let path = k.path;
    let value = valueAt(config, path);
    if (value === undefined) {
      // inside a section that is null: print the section once
      for (let i = 1; i < path.length; i++) {
        if (valueAt(config, path.slice(0, i)) === null) {
          path = path.slice(0, i);
          value = null;
          break;
        }
      }
    }
    const key = path.join('.');
    if (seen.has(key)) continue;
    seen.add(key);
    const dflt = path === k.path && valueAt(defaults, path) === undefined ? k.ownDefault : valueAt(defaults, path);
    out.push({ key, value, changed: JSON.stringify(value) !== JSON.stringify(dflt === undefined ? null : dflt) });
  }
  return out;
}

export function configCommand(args: string[], configFile: string | undefined): Promise<number> {
  try {
    return Promise.resolve(configShow(args, configFile));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function configShow(args: string[], configFile: string | undefined): number {
  const [sub, ...rest] = args;
  if (sub !== 'show') throw usageError(sub === undefined ? `config: name a subcommand\n${USAGE}` : `config: unknown subcommand ${JSON.stringify(sub)}\n${USAGE}`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, changed: { type: 'boolean', short: 'n' }, json: { type: 'boolean' } }, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageError(`config show: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const config = loadConfig(values.config ?? configFile);
  const entries = configEntries(config);
  let picked = values.changed ? entries.filter((e) => e.changed) : entries;
  if (positionals.length > 0) {
    const keys = entries.map((e) => e.key);
    const sections = new Set(keys.flatMap((k) => k.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));
    for (const want of positionals) {
      if (!keys.includes(want) && !sections.has(want)) {
        const hint = nearest(want, [...keys, ...sections]);
        throw usageError(`config show: ${JSON.stringify(want)}: no such key${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''}`);
      }
    }
    picked = picked.filter((e) => positionals.some((want) => e.key === want || e.key.startsWith(`${want}.`)));
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(Object.fromEntries(picked.map((e) => [e.key, redact(e.key, e.value)])), null, 2)}\n`);
  } else {
    for (const e of picked) process.stdout.write(`${e.key} = ${flow(redact(e.key, e.value))}\n`);
  }
  return 0;
}
