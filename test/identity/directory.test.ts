// Directory users against a real OpenLDAP slapd (LDAPS, test CA, memberof overlay, msIIS-FTPRoot/FTPDir):
// FTP (lftp, curl, basic-ftp) lands in the home from the entry; SMTP AUTH (nodemailer) and NNTP AUTHINFO;
// group rights from memberOf; injection strings as login names; homes outside ftp.allowed_roots or over
// another user's home; the directory stopped mid-run (temporary replies, local users unaffected).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listThrottles } from '../../src/policy/index.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { destroySlapd, startSlapd, SERVICE_DN, SERVICE_PW, SUFFIX, type Slapd } from '../helpers/slapd.js';
import { basicLogin, has, run, RawFtp } from '../ftp/ftp-helpers.js';
import { RawClient, runPython } from '../nntp/client.js';

const ALICE_PW = 'alice-directory-pw';
const BOB_PW = 'bob-directory-pw';
const CAROL_PW = 'carol-directory-pw';
const LOCAL_PW = 'local-user-password-1';

let slapd: Slapd;
let t: TestGatehouse;
let work: string;
let roots: string;

function smtpTransport(user: string, pass: string) {
  return nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, auth: { user, pass }, connectionTimeout: 10_000, greetingTimeout: 10_000 });
}

async function smtpAuth(user: string, pass: string): Promise<number> {
  const tr = smtpTransport(user, pass);
  try {
    await tr.verify();
    return 235;
  } catch (err) {
    return (err as { responseCode?: number }).responseCode ?? -1;
  } finally {
    tr.close();
  }
}

async function nntpLogin(user: string, pass: string): Promise<{ reply: string; client: RawClient }> {
  const c = await RawClient.connect(t.port('nntp'));
  await c.line();
  const r = await c.cmd('STARTTLS');
  if (!r.startsWith('382')) throw new Error(`STARTTLS: ${r}`);
  await c.upgrade();
  return { reply: await c.login(user, pass), client: c };
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-dir-'));
  roots = path.join(work, 'ftproot');
  fs.mkdirSync(roots);
  slapd = await startSlapd([
    { uid: 'alice', password: ALICE_PW, groups: ['staff'], ftpRoot: roots, ftpDir: 'alice' },
    { uid: 'bob', password: BOB_PW, groups: ['students'], ftpRoot: roots, ftpDir: 'users\\bob' },
    { uid: 'carol', password: CAROL_PW, groups: [], ftpRoot: '/etc', ftpDir: 'ssh' },
    { uid: 'eve', password: 'eve-directory-pw', ftpRoot: roots, ftpDir: 'alice' },
    { uid: 'dave', password: 'dave-directory-pw', ftpRoot: roots, ftpDir: '../../etc' },
  ]);
  const pwFile = path.join(work, 'bind.pw');
  fs.writeFileSync(pwFile, `${SERVICE_PW}\n`, { mode: 0o600 });
  t = await startGatehouse(
    {
      auth: { bcrypt_cost: 10, lockout: { failures: 1000, window_s: 60, lock_s: 300 } },
      identity: { sources: ['local', 'directory'] },
      directory: {
        url: slapd.ldapsUrl,
        ca_file: slapd.caFile,
        bind_dn: SERVICE_DN,
        bind_password_file: pwFile,
        user_base: `ou=people,${SUFFIX}`,
        group_map: { staff: 'staff', [`cn=students,ou=groups,${SUFFIX}`]: 'students' },
        cache_s: 30,
      },
      ftp: { isolation: 'directory', allowed_roots: [roots] },
      nntp: {
        groups: [
          { name: 'office.general', read: ['authenticated'], post: ['authenticated'] },
          { name: 'office.staff', read: ['group:staff'], post: ['group:staff'] },
        ],
      },
    },
    [{ name: 'lou', password: LOCAL_PW }],
  );
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await destroySlapd(slapd);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('directory users', () => {
  it.skipIf(!has('lftp'))('FTP with lftp: alice lands in the home from msIIS-FTPRoot/msIIS-FTPDir', async () => {
    const src = path.join(work, 'up.txt');
    fs.writeFileSync(src, 'from lftp\n');
    const r = await run('lftp', ['-e', `set ssl:verify-certificate no; set ftp:ssl-force true; set net:max-retries 1; set net:timeout 10; put ${src} -o up.txt; cls -1; bye`, '-u', `alice,${ALICE_PW}`, '-p', String(t.port('ftp')), '127.0.0.1']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('up.txt');
    expect(fs.readFileSync(path.join(roots, 'alice', 'up.txt'), 'utf8')).toBe('from lftp\n');
    expect(fs.existsSync(path.join(t.dir, 'var/ftp/home/alice'))).toBe(false);
  });

  it.skipIf(!has('curl'))('FTP with curl: a Windows-style msIIS-FTPDir (users\\bob) lands in <root>/users/bob', async () => {
    fs.mkdirSync(path.join(roots, 'users', 'bob'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(roots, 'users', 'bob', 'bob.txt'), 'bob data\n');
    const r = await run('curl', ['-s', '--ssl-reqd', '-k', '--max-time', '20', '-u', `bob:${BOB_PW}`, `ftp://127.0.0.1:${t.port('ftp')}/bob.txt`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('bob data\n');
  });

  it('FTP: a home pointing outside ftp.allowed_roots (/etc/ssh) or climbing out with .. is refused and logged', async () => {
    for (const user of ['carol', 'dave']) {
      const c = await RawFtp.connect(t.port('ftp'));
      const r = await c.login(user, user === 'carol' ? CAROL_PW : 'dave-directory-pw');
      c.close();
      expect(r?.code).toBe(530);
    }
    const refusals = t.decisions.filter((d) => d.rule === 'paths.no_jail' && (d.user === 'carol' || d.user === 'dave'));
    expect(refusals).toHaveLength(2);
    expect(fs.readdirSync(roots).sort()).toEqual(['alice', 'users']);
    const log = fs.readFileSync(path.join(t.dir, 'var/log/gatehouse.log'), 'utf8');
    expect(log).toMatch(/directory_home_refused.*carol|carol.*directory_home_refused/);
  });

  it("FTP: an entry pointing at another user's claimed home (eve → alice's) is refused; alice's files stay hers", async () => {
    const c = await RawFtp.connect(t.port('ftp'));
    const r = await c.login('eve', 'eve-directory-pw');
    c.close();
    expect(r?.code).toBe(530);
    const d = t.decisions.find((x) => x.user === 'eve' && x.rule === 'paths.no_jail');
    expect(d?.reason).toMatch(/overlaps the home of alice/);
    const owners = JSON.parse(fs.readFileSync(path.join(t.dir, 'var/ftp/home-owners.json'), 'utf8')) as Record<string, string>;
    expect(owners[path.join(roots, 'alice')]).toBe('alice');
  });

  it('FTP with basic-ftp: the same home on the next login', async () => {
    const c = await basicLogin(t.port('ftp'), 'alice', ALICE_PW);
    try {
      const names = (await c.list()).map((f) => f.name);
      expect(names).toContain('up.txt');
    } finally {
      c.close();
    }
  });

  it('SMTP AUTH (nodemailer): directory and local users; wrong password refused', async () => {
    expect(await smtpAuth('alice', ALICE_PW)).toBe(235);
    expect(await smtpAuth('Alice', ALICE_PW)).toBe(235);
    expect(await smtpAuth('lou', LOCAL_PW)).toBe(235);
    expect(await smtpAuth('alice', 'wrong-password')).toBe(535);
    expect(await smtpAuth('alice', '')).not.toBe(235);
  });

  it('NNTP AUTHINFO: a directory user; group rights from memberOf via group_map (group:staff)', async () => {
    const a = await nntpLogin('alice', ALICE_PW);
    expect(a.reply).toMatch(/^281/);
    expect((await a.client.cmd('GROUP office.staff')).slice(0, 3)).toBe('211');
    a.client.close();
    const b = await nntpLogin('bob', BOB_PW);
    expect(b.reply).toMatch(/^281/);
    expect((await b.client.cmd('GROUP office.staff')).slice(0, 3)).toBe('411');
    expect((await b.client.cmd('GROUP office.general')).slice(0, 3)).toBe('211');
    b.client.close();
    const bad = await nntpLogin('bob', ALICE_PW);
    expect(bad.reply).toMatch(/^481/);
    bad.client.close();
  });

  it('NNTP with python nntplib: STARTTLS, AUTHINFO as a directory user, a group:staff group', async () => {
    const r = await runPython(
      [
        "s = nntplib.NNTP('127.0.0.1', PORT, readermode=False)",
        's.starttls(ctx)',
        "s.login('alice', PASSWORD, usenetrc=False)",
        "resp, count, first, last, name = s.group('office.staff')",
        'print(resp[:3], name)',
        's.quit()',
      ].join('\n'),
      { PORT: String(t.port('nntp')), PASSWORD: ALICE_PW },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('211 office.staff');
  });

  it('injection strings as login names never match an entry (with the password of alice)', async () => {
    const names = ['*', '*)(uid=*', 'admin)(|(uid=*', 'alice)(uid=*', 'al*', '*)(|(objectClass=*', 'alice\\', 'alice\u0000', 'alice)', '(uid=alice)', 'alïce', 'ALICE*', 'alice\u0000)(uid=*', `uid=alice,ou=people,${SUFFIX}`];
    let i = 0;
    for (const name of names) {
      const ip = `198.51.100.${++i}`;
      const out = await t.gh.runtime.policy.authenticate({ service: 'smtp', ip, identity: { kind: 'none' }, session: `inj${i}` }, name, ALICE_PW, true);
      expect(out.decision.rule, name).toBe('auth.bad_credentials');
      expect(out.identity, name).toBeNull();
    }
    // and through a real listener too
    expect(await smtpAuth('*)(uid=*', ALICE_PW)).toBe(535);
    expect(await smtpAuth('admin)(|(uid=*', ALICE_PW)).toBe(535);
  });

  it('directory stopped mid-run: SMTP 454 4.7.0, FTP 421, NNTP 403, a log line and a metric; local users keep working', async () => {
    const store = t.gh.runtime.policy.throttle;
    const countsOf = async () => (await store.entries(Date.now())).filter((e) => /^(user|pair|addr):/.test(e.key) && e.count > 0).map((e) => `${e.key} ${e.count}`).sort();
    const before = await countsOf();
    await slapd.stop();
    try {
      expect(await smtpAuth('alice', ALICE_PW)).toBe(454);
      expect(await smtpAuth('nobody-here', 'some-password')).toBe(454);
      expect(await smtpAuth('lou', LOCAL_PW)).toBe(235);
      const c = await RawFtp.connect(t.port('ftp'));
      const r = await c.login('bob', BOB_PW);
      expect(r?.code).toBe(421);
      c.close();
      const n = await nntpLogin('alice', ALICE_PW);
      expect(n.reply).toMatch(/^403 /);
      n.client.close();
      const l = await nntpLogin('lou', LOCAL_PW);
      expect(l.reply).toMatch(/^281/);
      l.client.close();
      expect(t.decisions.some((d) => d.rule === 'auth.unavailable' && d.user === 'alice')).toBe(true);
      const log = fs.readFileSync(path.join(t.dir, 'var/log/gatehouse.log'), 'utf8');
      expect(log).toContain('directory_unavailable');
      const { metrics } = await import('../../src/ops/metrics.js');
      expect(await metrics.text()).toMatch(/gatehouse_directory_errors_total\{reason="unavailable"\} [1-9]/);
      // an outage is not a failed login: nobody gets locked out by it
      expect(await listThrottles(store, Date.now())).toEqual([]);
      // the failures reserved before the directory was asked were given back (lou's successes reset only lou's pair)
      expect((await countsOf()).filter((e) => !e.includes('|lou '))).toEqual(before.filter((e) => !e.includes('|lou ')));
      // throttling runs before the directory is asked: a throttled name gets the throttle, not the outage
      await store.block('user:bob', Date.now() + 60_000, Date.now());
      const locked = await t.gh.runtime.policy.authenticate({ service: 'smtp', ip: '198.51.100.200', identity: { kind: 'none' }, session: 'lock' }, 'bob', BOB_PW, true);
      expect(locked.decision.rule).toBe('auth.throttle_user');
      await store.clear({ name: 'bob' });
    } finally {
      await slapd.start();
    }
    expect(await smtpAuth('alice', ALICE_PW)).toBe(235);
  });
});
