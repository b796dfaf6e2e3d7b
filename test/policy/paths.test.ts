// Table-driven tests of the FTP path jail: lexical resolution, rights per mount, and disk containment.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJail, confine, decideJail, decidePath, locate, permFacts, resolveVirtual, rightsFor, type Jail, type JailSpec, type PathAction } from '../../src/policy/paths.js';
import type { Identity } from '../../src/policy/types.js';

const alice: Identity = { kind: 'user', name: 'alice', groups: ['staff'] };
const bob: Identity = { kind: 'user', name: 'bob', groups: ['students'] };

describe('resolveVirtual', () => {
  const rows: [cwd: string, input: string, expected: string | { rule: string }][] = [
    ['/', 'a.txt', '/a.txt'],
    ['/', '/a.txt', '/a.txt'],
    ['/sub', 'a.txt', '/sub/a.txt'],
    ['/sub', '..', '/'],
    ['/sub', '../a', '/a'],
    ['/', 'x/./y//z', '/x/y/z'],
    ['/', '', '/'],
    ['/', '.', '/'],
    ['/', '/etc/passwd', '/etc/passwd'],
    ['/', '..', { rule: 'paths.escape' }],
    ['/', '../../etc/passwd', { rule: 'paths.escape' }],
    ['/a', '../../b', { rule: 'paths.escape' }],
    ['/', '/..', { rule: 'paths.escape' }],
    ['/', 'a/../../b', { rule: 'paths.escape' }],
    ['/', '..\\..\\etc', { rule: 'paths.syntax' }],
    ['/', 'a\\b', { rule: 'paths.syntax' }],
    ['/', '%2e%2e/etc', { rule: 'paths.syntax' }],
    ['/', '%2E%2E%2Fetc', { rule: 'paths.syntax' }],
    ['/', 'a%00b', { rule: 'paths.syntax' }],
    ['/', 'a\u0000b', { rule: 'paths.syntax' }],
    ['/', 'a\nb', { rule: 'paths.syntax' }],
    ['/', 'a\rb', { rule: 'paths.syntax' }],
    ['/', '\uFFFD\uFFFD/etc', { rule: 'paths.syntax' }],
    ['/', 'a\uD800b', { rule: 'paths.syntax' }],
    ['/', 'x'.repeat(256), { rule: 'paths.syntax' }],
    ['/', 'a/'.repeat(600), { rule: 'paths.syntax' }],
    ['/', '50% off.txt', '/50% off.txt'],
    ['/', 'ünïcødé.txt', '/ünïcødé.txt'],
    ['/', '...', '/...'],
  ];
  it.each(rows)('cwd %j + %j', (cwd, input, expected) => {
    const r = resolveVirtual(cwd, input);
    if (typeof expected === 'string') {
      expect(r.ok && r.virtual).toBe(expected);
    } else {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.decision.rule).toBe(expected.rule);
    }
  });
});

describe('rightsFor', () => {
  const rights = { 'group:students': ['write'], alice: ['read', 'list', 'delete'], authenticated: ['mkdir'], anonymous: ['read'] } as const;
  const rows: [Identity, string[]][] = [
    [alice, ['read', 'list', 'delete', 'mkdir']],
    [bob, ['write', 'mkdir']],
    [{ kind: 'user', name: 'carol', groups: [] }, ['mkdir']],
    [{ kind: 'anonymous' }, ['read']],
    [{ kind: 'none' }, []],
  ];
  it.each(rows)('%j', (identity, expected) => {
    expect([...rightsFor(identity, rights)].sort()).toEqual([...expected].sort());
  });
});

describe('decidePath', () => {
  const spec = {
    homes: '/srv/homes',
    anonRoot: '/srv/pub',
    anonWrite: 'dropbox' as const,
    shares: [{ path: '/dropbox', dir: '/srv/drop', rights: { 'group:students': ['write' as const], alice: ['read' as const, 'list' as const, 'delete' as const] } }],
  };
  const jails: Record<string, Jail> = {
    alice: buildJail(alice, spec)!,
    bob: buildJail(bob, spec)!,
    anon: buildJail({ kind: 'anonymous' }, spec)!,
  };
  const rows: [who: string, virtual: string, action: PathAction, rule: string][] = [
    ['bob', '/notes.txt', 'read', 'paths.ok'],
    ['bob', '/notes.txt', 'overwrite', 'paths.ok'],
    ['bob', '/', 'delete', 'paths.mount_root'],
    ['bob', '/dropbox/x', 'create', 'paths.ok'],
    ['bob', '/dropbox/x', 'overwrite', 'paths.dropbox'],
    ['bob', '/dropbox/x', 'append', 'paths.dropbox'],
    ['bob', '/dropbox/x', 'read', 'paths.rights'],
    ['bob', '/dropbox', 'list', 'paths.rights'],
    ['bob', '/dropbox/x', 'stat', 'paths.rights'],
    ['bob', '/dropbox/x', 'delete', 'paths.rights'],
    ['bob', '/dropbox/x', 'rename_from', 'paths.rights'],
    ['bob', '/dropbox/x', 'rename_to', 'paths.rights'],
    ['bob', '/dropbox/d', 'mkdir', 'paths.rights'],
    ['bob', '/dropbox', 'cwd', 'paths.ok'],
    ['bob', '/dropbox', 'delete', 'paths.mount_root'],
    ['alice', '/dropbox', 'list', 'paths.ok'],
    ['alice', '/dropbox/x', 'read', 'paths.ok'],
    ['alice', '/dropbox/x', 'delete', 'paths.ok'],
    ['alice', '/dropbox/x', 'create', 'paths.rights'],
    ['alice', '/dropbox', 'rename_from', 'paths.mount_root'],
    ['anon', '/', 'list', 'paths.ok'],
    ['anon', '/file', 'read', 'paths.ok'],
    ['anon', '/file', 'create', 'paths.rights'],
    ['anon', '/file', 'delete', 'paths.rights'],
    ['anon', '/d', 'mkdir', 'paths.rights'],
    ['anon', '/file', 'rename_from', 'paths.rights'],
    ['anon', '/incoming/up', 'create', 'paths.ok'],
    ['anon', '/incoming/up', 'overwrite', 'paths.dropbox'],
    ['anon', '/incoming', 'list', 'paths.rights'],
    ['anon', '/incoming/up', 'read', 'paths.rights'],
    ['anon', '/incoming/up', 'delete', 'paths.rights'],
    ['anon', '/dropbox/x', 'create', 'paths.rights'], // not mounted for anonymous: falls to the read-only root
  ];
  it.each(rows)('%s %s %s → %s', (who, virtual, action, rule) => {
    const lex = resolveVirtual('/', virtual);
    if (!lex.ok) throw new Error('bad row');
    const d = decidePath(locate(jails[who]!, lex), action);
    expect(d.rule).toBe(rule);
    expect(d.allow).toBe(rule === 'paths.ok');
  });

  // RFC 3659 perm facts: derived from the same rules, so MLSD never promises what the commands refuse
  const perms: [who: string, virtual: string, type: 'file' | 'dir', perm: string][] = [
    ['bob', '/notes.txt', 'file', 'adfrw'],
    ['bob', '/sub', 'dir', 'cdeflmp'],
    ['bob', '/', 'dir', 'celmp'], // the home itself: never deleted or renamed
    ['bob', '/dropbox', 'dir', 'ce'], // a drop box: create and enter, no list, no read
    ['bob', '/dropbox/x', 'file', ''],
    ['alice', '/dropbox', 'dir', 'elp'],
    ['alice', '/dropbox/x', 'file', 'dr'],
    ['anon', '/', 'dir', 'el'],
    ['anon', '/file', 'file', 'r'],
    ['anon', '/incoming', 'dir', 'ce'],
  ];
  it.each(perms)('perm of %s %s (%s) is %s', (who, virtual, type, perm) => {
    const lex = resolveVirtual('/', virtual);
    if (!lex.ok) throw new Error('bad row');
    expect(permFacts(locate(jails[who]!, lex), type)).toBe(perm);
  });

  it('maps homes per user and gives nobody no jail', () => {
    expect(jails.alice!.root.dir).toBe('/srv/homes/alice');
    expect(jails.bob!.mounts.has('dropbox')).toBe(true);
    expect(jails.anon!.mounts.has('dropbox')).toBe(false);
    expect(buildJail({ kind: 'none' }, spec)).toBeNull();
    expect(buildJail({ kind: 'user', name: '../x', groups: [] }, spec)).toBeNull();
  });

  const isolationRows: Array<[string, 'isolated' | 'directory' | 'shared', { home?: string | null; groups?: string[] }, string | null, string[]]> = [
    ['isolated ignores a directory home', 'isolated', { home: '/srv/ftp/users/alice' }, '/srv/homes/alice', ['delete', 'list', 'mkdir', 'read', 'rename', 'write']],
    ['directory: the home the source gave', 'directory', { home: '/srv/ftp/users/alice' }, '/srv/ftp/users/alice', ['delete', 'list', 'mkdir', 'read', 'rename', 'write']],
    ['directory: a refused home (null) means no jail', 'directory', { home: null }, null, []],
    ['directory: a relative home is never used', 'directory', { home: 'srv/alice' }, null, []],
    ['directory: a local user (no home given) keeps <homes>/<name>', 'directory', {}, '/srv/homes/alice', ['delete', 'list', 'mkdir', 'read', 'rename', 'write']],
    ['shared: one root, only the rights granted', 'shared', {}, '/srv/shared', ['list']],
    ['shared: group rights add up', 'shared', { groups: ['staff'] }, '/srv/shared', ['list', 'read', 'write']],
  ];
  it.each(isolationRows)('ftp.isolation %s', (_name, isolation, who, dir, rights) => {
    const identity = { kind: 'user' as const, name: 'alice', groups: who.groups ?? [], ...('home' in who && { home: who.home }) };
    const jail = buildJail(identity, { ...spec, isolation, sharedRoot: '/srv/shared', sharedRights: { authenticated: ['list'], 'group:staff': ['read', 'write'] } });
    expect(jail?.root.dir ?? null).toBe(dir);
    expect([...(jail?.root.rights ?? [])].sort()).toEqual(rights);
  });
});

describe('decideJail (a login\'s jail)', () => {
  const spec = { homes: '/srv/homes', anonRoot: '/srv/pub', anonWrite: 'none' as const, shares: [] };
  const user = (extra: { name?: string; home?: string | null } = {}) => ({ kind: 'user' as const, name: extra.name ?? 'alice', groups: [], ...('home' in extra && { home: extra.home }) });
  const rows: Array<[string, Identity, Partial<JailSpec>, boolean, string, string]> = [
    ['a user: the home under homes', user(), {}, true, 'paths.jail', 'home jail with 0 mount(s)'],
    ['anonymous: the public root', { kind: 'anonymous' }, {}, true, 'paths.jail', 'anonymous jail with 0 mount(s)'],
    ['nobody', { kind: 'none' }, {}, false, 'paths.no_jail', 'not logged in: no file access at all'],
    ['a name no home can be made of', user({ name: '../x' }), {}, false, 'paths.no_jail', 'identity has no jail'],
    ['shared isolation without a root', user(), { isolation: 'shared' }, false, 'paths.no_jail', 'identity has no jail'],
    ['directory: the home was refused', user({ home: null }), { isolation: 'directory' }, false, 'paths.no_jail', 'the directory gives this user no usable home (see the directory_home_refused log line)'],
    ['directory: a relative home', user({ home: 'srv/alice' }), { isolation: 'directory' }, false, 'paths.no_jail', 'identity has no jail'],
    ['directory: the home the source gave', user({ home: '/srv/ftp/alice' }), { isolation: 'directory' }, true, 'paths.jail', 'home jail with 0 mount(s)'],
    ['isolated: a refused directory home does not matter', user({ home: null }), { isolation: 'isolated' }, true, 'paths.jail', 'home jail with 0 mount(s)'],
  ];
  it.each(rows)('%s', (_n, identity, extra, allowed, rule, reason) => {
    const { decision: d, jail } = decideJail(identity, { ...spec, ...extra });
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
    expect(jail !== null).toBe(allowed);
  });
});

describe('confine (disk)', () => {
  let dir: string;
  let jail: Jail;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-paths-'));
    for (const d of ['homes/alice/sub', 'homes/bob', 'outside', 'drop']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.writeFileSync(path.join(dir, 'outside/secret'), 'secret');
    fs.writeFileSync(path.join(dir, 'homes/bob/private'), 'bob');
    fs.writeFileSync(path.join(dir, 'homes/alice/ok.txt'), 'ok');
    fs.symlinkSync(path.join(dir, 'outside'), path.join(dir, 'homes/alice/out'));
    fs.symlinkSync(path.join(dir, 'outside/secret'), path.join(dir, 'homes/alice/secret'));
    fs.symlinkSync(path.join(dir, 'homes/bob'), path.join(dir, 'homes/alice/bob'));
    fs.symlinkSync(path.join(dir, 'outside/new'), path.join(dir, 'homes/alice/dangling'));
    fs.symlinkSync('ok.txt', path.join(dir, 'homes/alice/inner'));
    fs.linkSync(path.join(dir, 'outside/secret'), path.join(dir, 'homes/alice/hard'));
    fs.symlinkSync(path.join(dir, 'homes/alice/ok.txt'), path.join(dir, 'drop/link'));
    jail = buildJail(alice, {
      homes: path.join(dir, 'homes'),
      anonRoot: path.join(dir, 'pub'),
      anonWrite: 'none',
      shares: [{ path: '/drop', dir: path.join(dir, 'drop'), rights: { alice: ['write'] } }],
    })!;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const rows: [virtual: string, mode: 'existing' | 'create' | 'maybe', rule: string | null][] = [
    ['/ok.txt', 'existing', null],
    ['/sub', 'existing', null],
    ['/inner', 'existing', null],
    ['/new.txt', 'create', null],
    ['/sub/new.txt', 'create', null],
    ['/missing', 'existing', 'paths.missing'],
    ['/out', 'existing', 'paths.outside'],
    ['/out/secret', 'existing', 'paths.outside'],
    ['/out/new', 'create', 'paths.outside'],
    ['/secret', 'existing', 'paths.outside'],
    ['/secret', 'create', 'paths.symlink'],
    ['/bob/private', 'existing', 'paths.outside'],
    ['/bob', 'existing', 'paths.outside'],
    ['/dangling', 'create', 'paths.symlink'],
    ['/dangling', 'maybe', 'paths.outside'],
    ['/hard', 'existing', 'paths.hardlink'],
    ['/drop/link', 'maybe', 'paths.symlink'],
  ];
  it.each(rows)('%s (%s) → %s', (virtual, mode, rule) => {
    const lex = resolveVirtual('/', virtual);
    if (!lex.ok) throw new Error('bad row');
    const r = confine(locate(jail, lex), mode);
    if (rule === null) {
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.path.abs.startsWith(fs.realpathSync(path.join(dir, 'homes/alice')))).toBe(true);
    } else {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.decision.rule).toBe(rule);
    }
  });
});
