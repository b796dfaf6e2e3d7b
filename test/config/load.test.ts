import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig, parseConfigText } from '../../src/config/load.js';
import { checkPrincipals } from '../../src/config/lint.js';
import { GatehouseError } from '../../src/errors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-load-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const FILE = path.join(tmp, 'gatehouse.yaml');

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as GatehouseError).exitCode).toBe(2);
    return (err as Error).message;
  }
  throw new Error('expected a config error');
}

const load = (data: Record<string, unknown>) => parseConfig({ state_dir: 'var', ...data }, FILE, tmp);

describe('YAML errors name the file, the key and the line', () => {
  it('a duplicate key names the full key path and the line of the second one', () => {
    const msg = errorOf(() => parseConfigText('state_dir: var\nsmtp:\n  limits:\n    recipients: 5\n    recipients: 6\n', FILE));
    expect(msg).toContain(FILE);
    expect(msg).toMatch(/line 5, column 5: smtp\.limits\.recipients: key written twice/);
  });

  it('a duplicate top-level key', () => {
    expect(errorOf(() => parseConfigText('smtp: {}\nftp: {}\nsmtp: {}\n', FILE))).toMatch(/line 3, column 1: smtp: key written twice/);
  });

  it('an alias bomb (billion laughs) is a config error, not a crash', () => {
    const bomb = ['a: &a [x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]', 'f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]'].join('\n');
    const t0 = Date.now();
    expect(errorOf(() => parseConfigText(bomb, FILE))).toMatch(/aliases expand to more than 100/);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('a syntax error names the key it is under and the line', () => {
    expect(errorOf(() => parseConfigText('state_dir: var\nsmtp:\n  limits: [unclosed\n', FILE))).toMatch(/line \d+, column \d+: smtp(\.limits)?: not valid YAML/);
  });

  it('a schema error names the key and the line it is on', () => {
    expect(errorOf(() => parseConfigText('state_dir: var\nsmtp:\n  limits:\n    recipients: lots\n', FILE))).toMatch(/smtp\.limits\.recipients: got "lots"; .*\(line 4\)/);
    expect(errorOf(() => parseConfigText('state_dir: var\nftp:\n  anonymus: { enabled: true }\n', FILE))).toMatch(/ftp\.anonymus: unknown key .*\(line 3\)/);
  });

  it('recipients per message above 1,000 is a config error (a longer envelope would not be read back after a restart)', () => {
    expect(errorOf(() => parseConfigText('state_dir: var\nsmtp:\n  limits:\n    recipients: 1001\n', FILE))).toMatch(/smtp\.limits\.recipients: .*1000.*\(line 4\)/);
    expect(() => load({ smtp: { limits: { recipients: 1000 } } })).not.toThrow();
  });
});

describe('a relay that trusts everyone does not start, however it is written', () => {
  it.each([['0.0.0.0/0'], ['0.0.0.0/00'], ['::/0'], ['0::0/0'], ['::ffff:0.0.0.0/96'], ['::ffff:0:0/96'], ['0:0:0:0:0:ffff:0:0/96'], ['0.0.0.0/1,128.0.0.0/1'], ['0.0.0.0/2,64.0.0.0/2,128.0.0.0/1']])('%s', (list) => {
    expect(errorOf(() => load({ smtp: { trusted_networks: list.split(',') } }))).toMatch(/smtp\.trusted_networks: .*cover every IPv[46] address: that is an open relay/);
  });

  it('three quarters of IPv4 loads (and check warns about it)', () => {
    expect(() => load({ smtp: { trusted_networks: ['0.0.0.0/1', '128.0.0.0/2'] } })).not.toThrow();
  });
});

describe('metrics.listen off loopback without a password: refused at load, as start refuses it', () => {
  it.each([['0.0.0.0:9325'], ['192.0.2.1:9325'], ['[::]:9325']])('%s', (listen) => {
    expect(errorOf(() => load({ metrics: { listen } }))).toMatch(/metrics\.listen: .* is not a loopback address; set metrics\.password_file/);
  });
  it('loopback, or a password, loads', () => {
    expect(() => load({ metrics: { listen: '127.0.0.1:9325' } })).not.toThrow();
    expect(() => load({ metrics: { listen: '[::1]:9325' } })).not.toThrow();
    expect(() => load({ metrics: { listen: '0.0.0.0:9325', password_file: 'pw' } })).not.toThrow();
  });
});

describe('FTP folders resolve inside state_dir or ftp.allowed_roots', () => {
  const share = (dir: string) => ({ ftp: { shares: [{ path: '/x', dir, rights: { authenticated: ['read'] } }] } });
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a share at /', share('/'), /ftp\.shares\.0\.dir: got "\/".*\/ is a system folder/],
    ['a share at ../../..', share('../../../../../../..'), /ftp\.shares\.0\.dir: .*resolves to \/: \/ is a system folder/],
    ['a share in /etc', share('/etc/ssl'), /inside the system folder \/etc/],
    ['a share outside state_dir', share('/srv/elsewhere'), /outside state_dir .*ftp\.allowed_roots/],
    ["a share inside another user's home", share('ftp/home/bob'), /inside the homes folder/],
    ['a share that contains the homes', share('ftp'), /contains the homes folder/],
    ['a share that is the state folder', share('.'), /contains .*(spool|mail|tls|log|news|users)/],
    ['homes at /', { ftp: { homes: '/' } }, /ftp\.homes: .*\/ is a system folder/],
    ['homes = state_dir', { ftp: { homes: '.' } }, /ftp\.homes: .*(contains|a folder of their own)/],
    ['anonymous root inside the homes', { ftp: { anonymous: { enabled: true, root: 'ftp/home' } } }, /ftp\.anonymous\.root: .*(inside|contains) the homes folder/],
    ['an allowed root that is a system folder', { ftp: { allowed_roots: ['/usr'] } }, /ftp\.allowed_roots\.0: .*\/usr is a system folder/],
    ['an allowed root of /', { ftp: { allowed_roots: ['/'] } }, /ftp\.allowed_roots\.0: .*\/ is a system folder/],
    ['state_dir at /', { state_dir: '/' }, /state_dir: resolves to \/: a system folder/],
    ['state_dir at /usr', { state_dir: '/usr' }, /state_dir: resolves to \/usr: a system folder/],
  ])('%s is refused', (_name, data, re) => {
    expect(errorOf(() => load(data))).toMatch(re);
  });

  it('folders under state_dir, or under an allowed root, load', () => {
    expect(() => load(share('ftp/dropbox'))).not.toThrow();
    expect(() => load({ ftp: { allowed_roots: ['/srv/ftp'], shares: [{ path: '/x', dir: '/srv/ftp/team', rights: { authenticated: ['read'] } }] } })).not.toThrow();
  });

  it('a symlink inside state_dir that leads out is judged by where it leads', () => {
    const state = path.join(tmp, 'var');
    fs.mkdirSync(state, { recursive: true });
    fs.symlinkSync('/etc', path.join(state, 'sneaky'));
    expect(errorOf(() => load(share('sneaky')))).toMatch(/resolves to \/etc/);
  });

  it('a disabled FTP is not judged', () => {
    expect(() => load({ ftp: { enabled: false, shares: [{ path: '/x', dir: '/', rights: {} }] } })).not.toThrow();
  });
});

describe('rights names: anonymous, authenticated, a known user, group:<known group>', () => {
  const users = [
    { name: 'alice', groups: ['staff'] },
    { name: 'bob', groups: ['students'] },
  ];
  const groups = (read: string[], post: string[] = []) => load({ nntp: { groups: [{ name: 'office.general', read, post }] } });
  it.each<[string[], RegExp | null]>([
    [['authenticated', 'anonymous', 'alice', 'group:staff'], null],
    [['everyone'], /"everyone": not a right name; .*authenticated/],
    [['authenticted'], /"authenticted": .*did you mean "authenticated"/],
    [['group:staf'], /"group:staf": no user is in group staf; .*did you mean "group:staff"/],
    [['alcie'], /"alcie": no such user; .*did you mean "alice"/],
  ])('%j', (read, re) => {
    const r = checkPrincipals(groups(read), FILE, users);
    if (re === null) expect(r.errors).toEqual([]);
    else expect(r.errors.join('\n')).toMatch(re);
  });

  it('FTP share rights are judged the same way', () => {
    const c = load({ ftp: { shares: [{ path: '/x', dir: 'ftp/x', rights: { 'group:studnets': ['write'] } }] } });
    expect(checkPrincipals(c, FILE, users).errors.join('\n')).toMatch(/ftp\.shares\.0\.rights: got "group:studnets".*did you mean "group:students"/);
  });

  it('with no users yet, only keyword look-alikes are errors; names are notes', () => {
    const r = checkPrincipals(groups(['group:staff', 'carol', 'everyone']), FILE, []);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/everyone/);
    expect(r.notes).toHaveLength(2);
  });
});
