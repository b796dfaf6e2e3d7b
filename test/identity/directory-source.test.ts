// The directory identity source on its own, against a real slapd: StartTLS, CA verification (a mismatch
// refuses to bind, with a log line), the service bind, the positive cache (never failures, never passwords),
// group search for directories without memberOf, home.attribute, and the config rules around it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { lintConfig } from '../../src/config/lint.js';
import { directorySchema, type DirectoryConfig } from '../../src/config/schema.js';
import { DirectorySource, readBindPassword } from '../../src/identity/directory.js';
import type { UserEntry } from '../../src/identity/source.js';
import { ADMIN_DN, ADMIN_PW, destroySlapd, SERVICE_DN, SERVICE_PW, startSlapd, SUFFIX, type Slapd } from '../helpers/slapd.js';

let slapd: Slapd;
let work: string;
const lines: string[] = [];
const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });

function source(over: Partial<DirectoryConfig> = {}, opts: { ca?: string | null; homes?: boolean; clock?: () => number; password?: string } = {}): DirectorySource {
  const config = directorySchema.parse({ url: slapd.ldapsUrl, bind_dn: SERVICE_DN, bind_password_file: 'x', user_base: `ou=people,${SUFFIX}`, group_map: { staff: 'staff', lab: 'lab' }, ...over });
  const ca = opts.ca === undefined ? slapd.caFile : opts.ca;
  return new DirectorySource({
    config,
    servicePassword: opts.password ?? SERVICE_PW,
    ca: ca ? fs.readFileSync(ca) : null,
    minVersion: 'TLSv1.2',
    homes: opts.homes ?? false,
    allowedRoots: ['/srv/ftp'],
    log,
    ...(opts.clock && { clock: opts.clock }),
  });
}

function modify(ldif: string): void {
  execFileSync('/usr/bin/ldapmodify', ['-x', '-H', slapd.ldapUrl, '-D', ADMIN_DN, '-w', ADMIN_PW], { input: ldif, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function found(s: DirectorySource, name: string): Promise<UserEntry> {
  const r = await s.lookup(name);
  if (r.kind !== 'found') throw new Error(`${name}: ${r.kind}`);
  return r.entry;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-dirsrc-'));
  slapd = await startSlapd([
    { uid: 'alice', password: 'alice-pw-1', groups: ['staff', 'lab'], homeDirectory: '/srv/ftp/alice' },
    { uid: 'bob', password: 'bob-pw-1', groups: ['lab'] },
  ]);
}, 60_000);

afterAll(async () => {
  await destroySlapd(slapd);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('directory source', () => {
  it('LDAPS with the test CA: groups from memberOf mapped by CN; the password checked by binding', async () => {
    const s = source();
    const e = await found(s, 'alice');
    expect(e.dn).toBe(`uid=alice,ou=people,${SUFFIX}`);
    expect(e.groups).toEqual(['lab', 'staff']);
    expect((await s.verify(e, 'alice-pw-1')).kind).toBe('ok');
    expect((await s.verify(e, 'wrong')).kind).toBe('bad');
    expect((await s.verify(e, '')).kind).toBe('bad');
    expect((await s.verify(e, 'alice-pw-1\u0000x')).kind).toBe('bad');
    expect((await s.lookup('nobody')).kind).toBe('unknown');
    expect((await s.dummy('nobody', 'alice-pw-1')).kind).toBe('bad');
    expect((await s.dummy('*)(uid=*', 'x')).kind).toBe('bad');
  });

  it('ldap:// + StartTLS verifies the certificate too', async () => {
    const s = source({ url: slapd.ldapUrl, starttls: true });
    const e = await found(s, 'bob');
    expect((await s.verify(e, 'bob-pw-1')).kind).toBe('ok');
    const bad = source({ url: slapd.ldapUrl, starttls: true }, { ca: slapd.otherCaFile });
    expect((await bad.lookup('bob')).kind).toBe('unavailable');
  });

  it('a certificate that does not verify (another CA, or the system store) refuses to bind, with a clear log line', async () => {
    lines.length = 0;
    for (const ca of [slapd.otherCaFile, null]) {
      const r = await source({}, { ca }).lookup('alice');
      expect(r.kind).toBe('unavailable');
      expect(r.kind === 'unavailable' && r.reason).toMatch(/TLS refused/);
    }
    const logged = lines.map((l) => JSON.parse(l) as { event?: string; reason?: string; msg?: string });
    expect(logged.filter((l) => l.event === 'directory_unavailable' && l.reason === 'tls')).toHaveLength(2);
    expect(logged[0]!.msg).toMatch(/certificate does not verify against directory.ca_file — not binding/);
    expect(lines.join('')).not.toContain(SERVICE_PW);
  });

  it('a refused service bind is unavailable (not "unknown user"), and the password is not logged', async () => {
    lines.length = 0;
    const r = await source({}, { password: 'not-the-service-password' }).lookup('alice');
    expect(r.kind).toBe('unavailable');
    expect(lines.join('')).toContain('service_bind');
    expect(lines.join('')).not.toContain('not-the-service-password');
  });

  it('cache_s remembers found entries only: never failures, never passwords', async () => {
    let now = 1_000_000;
    const s = source({ cache_s: 60 }, { clock: () => now });
    const before = await found(s, 'bob');
    expect(before.groups).toEqual(['lab']);
    modify(`dn: cn=staff,ou=groups,${SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,${SUFFIX}\n`);
    expect((await found(s, 'bob')).groups).toEqual(['lab']);
    now += 61_000;
    expect((await found(s, 'bob')).groups).toEqual(['lab', 'staff']);
    // a changed password counts at once: passwords are always checked by the directory
    modify(`dn: uid=bob,ou=people,${SUFFIX}\nchangetype: modify\nreplace: userPassword\nuserPassword: bob-pw-2\n`);
    const cached = await found(s, 'bob');
    expect((await s.verify(cached, 'bob-pw-1')).kind).toBe('bad');
    expect((await s.verify(cached, 'bob-pw-2')).kind).toBe('ok');
    // an unknown name is not remembered as unknown
    expect((await s.lookup('zed')).kind).toBe('unknown');
    slapd.ldif(`dn: uid=zed,ou=people,${SUFFIX}\nobjectClass: inetOrgPerson\nuid: zed\ncn: zed\nsn: zed\nuserPassword: zed-pw-1\n`);
    expect((await s.lookup('zed')).kind).toBe('found');
  });

  it('a user_filter matching several entries is ambiguous: refused as unknown (never an outage, never the first entry)', async () => {
    const s = source({ user_filter: '(|(uid={user})(objectClass=inetOrgPerson))' });
    expect((await s.lookup('alice')).kind).toBe('unknown');
    const two = source({ user_filter: '(|(uid={user})(uid=bob))' });
    expect((await two.lookup('alice')).kind).toBe('unknown');
  });

  it('an entry whose name is reserved (anonymous, authenticated, root) never becomes that identity', async () => {
    slapd.ldif(`dn: uid=anonymous,ou=people,${SUFFIX}\nobjectClass: inetOrgPerson\nuid: anonymous\ncn: a\nsn: a\nuserPassword: anon-pw-1\n`);
    expect((await source().lookup('anonymous')).kind).toBe('unknown');
    expect(lines.join('')).toContain('directory_bad_name');
  });

  it('group_search for directories without memberOf; group_map by full DN', async () => {
    const s = source({ member_of_attribute: null, group_search: { base: `ou=groups,${SUFFIX}`, filter: '(&(objectClass=groupOfNames)(member={dn}))' }, group_map: { [`CN=Lab,OU=Groups,${SUFFIX}`]: 'lab' } });
    expect((await found(s, 'alice')).groups).toEqual(['lab']);
  });

  it('home.attribute gives the home only when ftp.isolation is directory, and only inside allowed_roots', async () => {
    expect((await found(source({ home: { attribute: 'gatehouseHome', root_attribute: 'x', dir_attribute: 'y' } }), 'alice')).home).toBeUndefined();
    const s = source({ home: { attribute: 'gatehouseHome', root_attribute: 'x', dir_attribute: 'y' } }, { homes: true });
    expect((await found(s, 'alice')).home).toBe('/srv/ftp/alice');
    const bob = await found(s, 'bob');
    expect(bob.home).toBeNull();
    expect(bob.homeProblem).toMatch(/empty|no home/);
  });

  it('the directory down: unavailable, then available again', async () => {
    const s = source({ cache_s: 0, timeout_s: 2 });
    await slapd.stop();
    try {
      const r = await s.lookup('alice');
      expect(r.kind).toBe('unavailable');
    } finally {
      await slapd.start();
    }
    expect((await s.lookup('alice')).kind).toBe('found');
    expect(lines.some((l) => l.includes('directory_available'))).toBe(true);
  });
});

describe('directory config', () => {
  const base = { bind_dn: SERVICE_DN, bind_password_file: 'bind.pw', user_base: SUFFIX };
  const parse = (directory: Record<string, unknown>, extra: Record<string, unknown> = {}) => parseConfig({ identity: { sources: ['local', 'directory'] }, directory: { ...base, ...directory }, ...extra }, 'test.yaml', work);

  it('a plaintext ldap:// URL is refused unless starttls or insecure_plaintext; check flags insecure_plaintext', () => {
    expect(() => parse({ url: 'ldap://127.0.0.1:389' })).toThrow(/directory.url.*in clear/);
    expect(() => parse({ url: 'ldaps://127.0.0.1', starttls: true })).toThrow(/directory.starttls/);
    expect(parse({ url: 'ldap://127.0.0.1', starttls: true }).directory?.starttls).toBe(true);
    const c = parse({ url: 'ldap://127.0.0.1', insecure_plaintext: true });
    expect(lintConfig(c).map((w) => w.id)).toContain('directory.insecure_plaintext');
    expect(lintConfig(parse({ url: 'ldaps://127.0.0.1' })).map((w) => w.id)).not.toContain('directory.insecure_plaintext');
  });

  it('identity.sources: directory needs a directory section; ftp.isolation: directory needs allowed_roots', () => {
    expect(() => parseConfig({ identity: { sources: ['local', 'directory'] } }, 'test.yaml', work)).toThrow(/no directory: section/);
    expect(() => parse({ url: 'ldaps://h' }, { ftp: { isolation: 'directory' } })).toThrow(/allowed_roots/);
    expect(() => parse({ url: 'ldaps://h' }, { ftp: { isolation: 'directory', allowed_roots: ['relative/dir'] } })).toThrow(/allowed_roots.0/);
    expect(() => parse({ url: 'ldaps://h' }, { ftp: { isolation: 'directory', allowed_roots: ['/'] } })).toThrow(/ftp.allowed_roots.0/);
    expect(parse({ url: 'ldaps://h' }, { ftp: { isolation: 'directory', allowed_roots: ['/srv/ftp'] } }).ftp.isolation).toBe('directory');
  });

  it('bind_password_file must be mode 0600 or stricter', () => {
    const f = path.join(work, 'bind.pw');
    fs.writeFileSync(f, 'pw\n', { mode: 0o644 });
    fs.chmodSync(f, 0o644);
    expect(() => readBindPassword(f)).toThrow(/mode 0644; expected 0600/);
    fs.chmodSync(f, 0o600);
    expect(readBindPassword(f)).toBe('pw');
    expect(() => readBindPassword(path.join(work, 'missing'))).toThrow(/cannot read/);
  });
});
