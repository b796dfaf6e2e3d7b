import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { configKeys, formatWarning, lintConfig, type Warning } from '../../src/config/lint.js';
import { schemaKeys } from '../../src/config/safety.js';
import { configSchema } from '../../src/config/schema.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-safety-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Set a dotted key in a plain object, creating sections on the way. */
function withKey(base: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const data = structuredClone(base);
  const parts = key.split('.');
  let cur = data;
  for (const p of parts.slice(0, -1)) {
    cur[p] ??= {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
  return data;
}

function lint(data: Record<string, unknown>): Warning[] {
  return lintConfig(parseConfig({ state_dir: 'var', ...data }, 'test.yaml', tmp));
}

describe('the direction-of-safety table covers every key', () => {
  it('every key of the schema declares how it weakens (add one line beside its default in src/config/schema.ts)', () => {
    const missing = schemaKeys(configSchema)
      .filter((k) => k.safety === null)
      .map((k) => k.key);
    // The message names each key without a declaration, so whoever added it knows exactly what to write.
    expect(missing, `keys without a direction of safety (wrap their schema in raised/lowered/enabled/disabled/ranked/grown/exposed/judged/neutral from src/config/safety.ts): ${missing.join(', ')}`).toEqual([]);
  });

  it('the walk sees the keys it should (a sample, and no section twice)', () => {
    const keys = configKeys().map((k) => k.key);
    for (const k of ['smtp.limits.recipients', 'auth.lockout.window_s', 'ftp.anonymous.write', 'smtp.relay.smarthost.tls', 'nntp.groups', 'ftp.shares', 'ftp.allowed_roots', 'metrics.listen']) expect(keys).toContain(k);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('every key is written out (and so commented) in config/gatehouse.yaml', () => {
    const doc = parse(fs.readFileSync(path.join(import.meta.dirname, '../../config/gatehouse.yaml'), 'utf8')) as Record<string, unknown>;
    const missing = configKeys()
      .filter((k) => {
        let cur: unknown = doc;
        for (const p of k.path) {
          if (cur === null) return false; // inside a section written as null (smtp.relay.smarthost)
          if (typeof cur !== 'object' || !(p in (cur))) return true;
          cur = (cur as Record<string, unknown>)[p];
        }
        return false;
      })
      .map((k) => k.key);
    expect(missing, `keys missing from config/gatehouse.yaml: ${missing.join(', ')}`).toEqual([]);
  });

  it('the secure defaults give no warning', () => {
    expect(lint({})).toEqual([]);
  });
});

describe('every declared direction fires when its key is weakened, and only then', () => {
  // A base where every section exists, so keys inside optional sections can be weakened on their own.
  const base = { ftp: { anonymous: { enabled: true } }, smtp: { relay: { smarthost: { host: 'smarthost.test' } } } };
  const baseKeys = new Set(lint(base).map((w) => w.key));
  const weaker = (kind: string, dflt: unknown, order?: readonly string[]): unknown => {
    switch (kind) {
      case 'raised':
        return (dflt as number) + 1;
      case 'lowered':
        return (dflt as number) - 1;
      case 'enabled':
        return true;
      case 'disabled':
        return false;
      case 'ranked':
        return order![order!.length - 1];
      case 'exposed':
        return '0.0.0.0:9325';
      case 'grown':
        return ['/srv/gatehouse-extra'];
      default:
        return undefined;
    }
  };
  const rows = configKeys()
    .filter((k) => k.safety && k.safety.kind !== 'neutral' && k.safety.kind !== 'judged')
    .map((k) => [k.key, k] as const);

  it.each(rows)('%s', (key, k) => {
    const s = k.safety!;
    const dflt = (() => {
      let cur: unknown = configSchema.parse({});
      for (const p of k.path) cur = cur === null || cur === undefined ? undefined : (cur as Record<string, unknown>)[p];
      return cur ?? k.ownDefault;
    })();
    const value = weaker(s.kind, dflt, s.kind === 'ranked' ? s.order : undefined);
    if (JSON.stringify(value) === JSON.stringify(dflt)) {
      // the default is already the weakest choice the schema allows (tls.min_version: TLSv1.2): nothing to flag
      expect(lint(withKey(base, key, value)).filter((w) => w.key === key)).toEqual([]);
      return;
    }
    let data = withKey(base, key, value);
    if (key === 'metrics.listen') data = withKey(data, 'metrics.password_file', 'metrics.pw');
    let warnings: Warning[];
    try {
      warnings = lint(data);
    } catch (err) {
      // no weaker value is valid (greet_pause_ms is already 0; raised caps such as log.keep): the schema is the limit
      expect(String(err)).toMatch(/invalid configuration/);
      return;
    }
    if (key === 'access.allow') {
      // the default already allows every address: no list can be wider
      expect(warnings.filter((w) => w.key === key)).toEqual([]);
      return;
    }
    const hit = warnings.find((w) => w.key === key);
    expect(hit, `${key}: ${JSON.stringify(value)} gave no warning`).toBeDefined();
    if (!baseKeys.has(key)) {
      // names the key, the value, the default and the risk in plain words
      const line = formatWarning(hit!);
      expect(line.startsWith(`${key}: `)).toBe(true);
      expect(line).toContain('(default ');
      expect(hit!.risk.length).toBeGreaterThan(20);
    }
  });
});

describe('each weakening named in issue 14 is a warning with key, value, default and risk', () => {
  const rows: Array<[string, Record<string, unknown>, string, string, string]> = [
    ['recipients 1000', { smtp: { limits: { recipients: 1000 } } }, 'smtp.limits.recipients', '1000', '100'],
    ['article_bytes huge', { nntp: { limits: { article_bytes: 1e12 } } }, 'nntp.limits.article_bytes', '1000000000000', '1048576'],
    ['smtp idle timeout of a day', { smtp: { limits: { idle_timeout_s: 86400 } } }, 'smtp.limits.idle_timeout_s', '86400', '300'],
    ['ftp idle timeout of a day', { ftp: { limits: { idle_timeout_s: 86400 } } }, 'ftp.limits.idle_timeout_s', '86400', '300'],
    ['nntp idle timeout of a day', { nntp: { limits: { idle_timeout_s: 86400 } } }, 'nntp.limits.idle_timeout_s', '86400', '300'],
    ['smtp connections_per_ip raised', { smtp: { limits: { connections_per_ip: 11 } } }, 'smtp.limits.connections_per_ip', '11', '10'],
    ['ftp connections_per_ip raised', { ftp: { limits: { connections_per_ip: 6 } } }, 'ftp.limits.connections_per_ip', '6', '5'],
    ['nntp connections_per_ip raised', { nntp: { limits: { connections_per_ip: 500 } } }, 'nntp.limits.connections_per_ip', '500', '5'],
    ['max_login_failures raised', { ftp: { limits: { max_login_failures: 10 } } }, 'ftp.limits.max_login_failures', '10', '3'],
    ['max_errors 100000', { smtp: { limits: { max_errors: 100000 } } }, 'smtp.limits.max_errors', '100000', '10'],
    ['line_deadline_s 86400 (smtp)', { smtp: { limits: { line_deadline_s: 86400 } } }, 'smtp.limits.line_deadline_s', '86400', '300'],
    ['line_deadline_s 86400 (ftp)', { ftp: { limits: { line_deadline_s: 86400 } } }, 'ftp.limits.line_deadline_s', '86400', '300'],
    ['line_deadline_s 86400 (nntp)', { nntp: { limits: { line_deadline_s: 86400 } } }, 'nntp.limits.line_deadline_s', '86400', '300'],
    ['quota 10^15', { ftp: { quota_bytes: 1e15 } }, 'ftp.quota_bytes', '1000000000000000', '1073741824'],
    ['lockout.window_s 1', { auth: { lockout: { window_s: 1 } } }, 'auth.lockout.window_s', '1', '900'],
    ['posts_per_minute 10^6', { nntp: { limits: { posts_per_minute: 1e6 } } }, 'nntp.limits.posts_per_minute', '1000000', '30'],
    ['message_bytes raised', { smtp: { limits: { message_bytes: 10_485_761 } } }, 'smtp.limits.message_bytes', '10485761', '10485760'],
    ['lockout.failures raised', { auth: { lockout: { failures: 6 } } }, 'auth.lockout.failures', '6', '5'],
    ['lock_s lowered', { auth: { lockout: { lock_s: 899 } } }, 'auth.lockout.lock_s', '899', '900'],
    ['bcrypt_cost lowered', { auth: { bcrypt_cost: 11 } }, 'auth.bcrypt_cost', '11', '12'],
    ['cache_ttl_s raised', { auth: { cache_ttl_s: 86400 } }, 'auth.cache_ttl_s', '86400', '300'],
    ['TLS 1.2 when the default is raised? no: min_version is the default, so a profile at 1.3 is stricter', { tls: { min_version: 'TLSv1.3' } }, '', '', ''],
    ['metrics on a public address with a password', { metrics: { listen: '0.0.0.0:9325', password_file: 'pw' } }, 'metrics.listen', '0.0.0.0:9325', 'null'],
    ['smarthost certificate not verified', { smtp: { relay: { smarthost: { host: 'relay.test', verify_cert: false } } } }, 'smtp.relay.smarthost.verify_cert', 'false', 'true'],
    ['trusted_networks_warn_wider_than lowered', { smtp: { trusted_networks_warn_wider_than: 4 } }, 'smtp.trusted_networks_warn_wider_than', '4', '8'],
    ['allowed_roots widened', { ftp: { allowed_roots: ['/srv/ftp'] } }, 'ftp.allowed_roots', '/srv/ftp', '[]'],
  ];
  it.each(rows)('%s', (_name, data, key, value, dflt) => {
    const warnings = lint(data);
    if (key === '') {
      expect(warnings).toEqual([]);
      return;
    }
    const w = warnings.find((x) => x.key === key);
    expect(w, JSON.stringify(warnings)).toBeDefined();
    expect(w!.value).toBe(value);
    expect(w!.default).toBe(dflt);
    expect(formatWarning(w!)).toBe(`${key}: ${value} (default ${dflt}): ${w!.risk}`);
    expect(w!.risk).toMatch(/^(limit raised|limit lowered|feature enabled|check disabled|weaker choice|list widened|reachable from the network): .{20,}/);
  });

  it('a stricter value is no warning (lower limits, shorter timeouts, TLS 1.3)', () => {
    expect(
      lint({
        smtp: { limits: { recipients: 10, idle_timeout_s: 60, max_errors: 3 } },
        ftp: { limits: { max_login_failures: 1 }, quota_bytes: 1000 },
        auth: { bcrypt_cost: 13, lockout: { failures: 3, window_s: 3600, lock_s: 3600 } },
        tls: { min_version: 'TLSv1.3' },
      }),
    ).toEqual([]);
  });

  it('a disabled service is not judged (its keys cannot weaken anything)', () => {
    expect(lint({ ftp: { enabled: false, tls_required: false, limits: { idle_timeout_s: 86400 } } })).toEqual([]);
    expect(lint({ ftp: { anonymous: { enabled: false, write: 'dropbox' } } })).toEqual([]);
  });
});

describe('nntp.peers is judged by the nntp_peers rule', () => {
  const peer = { name: 'lab2', host: '127.0.0.40', groups: ['lab.*'], password_file: '/etc/gatehouse/lab2.secret' };
  it.each([
    ['a TLS peer with a secret and named groups', peer, []],
    ['plain text', { ...peer, tls: false }, ['nntp.peer_plaintext']],
    ['no secret', { ...peer, password_file: null }, ['nntp.peer_no_password']],
    ['every group', { ...peer, groups: ['*'] }, ['nntp.peer_all_groups']],
    ['an outgoing-only peer feeds us nothing', { ...peer, tls: false, password_file: null, groups: ['*'], direction: 'out' }, []],
  ] as Array<[string, Record<string, unknown>, string[]]>)('%s', (_n, p, ids) => {
    const got = lint({ nntp: { peers: [p] } }).map((w) => w.id).filter((id) => id?.startsWith('nntp.peer'));
    expect(got.sort()).toEqual([...ids].sort());
  });
});
