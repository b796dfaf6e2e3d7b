// RFC 4515 filter values, RFC 4514 DN values, and directory homes confined to ftp.allowed_roots: table-driven.
import { describe, expect, it } from 'vitest';
import { escapeDnValue, escapeFilterValue, fillFilter, firstRdnValue, normalizeDn } from '../../src/identity/ldap-escape.js';
import { homeFromAttributes } from '../../src/identity/home.js';

describe('escapeFilterValue (RFC 4515)', () => {
  const rows: Array<[string, string]> = [
    ['alice', 'alice'],
    ['*', '\\2a'],
    ['*)(uid=*', '\\2a\\29\\28uid=\\2a'],
    ['admin)(|(uid=*', 'admin\\29\\28|\\28uid=\\2a'],
    ['a\\b', 'a\\5cb'],
    ['a\u0000b', 'a\\00b'],
    ['alïce', 'al\\c3\\afce'],
    ['tab\there', 'tab\\09here'],
    ['\u007f', '\\7f'],
  ];
  it.each(rows)('%j → %s', (input, out) => {
    expect(escapeFilterValue(input)).toBe(out);
  });

  it('an escaped value can never close or open a filter component', () => {
    for (const evil of ['*)(uid=*', ')(|(objectClass=*)', '\\29', 'x\u0000)(', '(((', ')))']) {
      const f = fillFilter('(|(uid={user})(sAMAccountName={user}))', { user: evil });
      const parens = f.replace(/\\[0-9a-f]{2}/g, '');
      expect(parens.split('(').length - 1, evil).toBe(3);
      expect(parens.split(')').length - 1, evil).toBe(3);
      expect(f).not.toMatch(/=\*/);
    }
  });
});

describe('escapeDnValue (RFC 4514)', () => {
  const rows: Array<[string, string]> = [
    ['alice', 'alice'],
    ['a,b', 'a\\,b'],
    ['a+b=c', 'a\\+b\\=c'],
    ['"q";<x>', '\\"q\\"\\;\\<x\\>'],
    ['back\\slash', 'back\\\\slash'],
    [' lead', '\\ lead'],
    ['#hash', '\\#hash'],
    ['trail ', 'trail\\ '],
    ['nul\u0000', 'nul\\00'],
    ['ï', '\\c3\\af'],
  ];
  it.each(rows)('%j → %s', (input, out) => {
    expect(escapeDnValue(input)).toBe(out);
  });

  it('round-trips through firstRdnValue', () => {
    for (const v of ['a,b', ' x ', '#1', 'q"+;<>=\\', 'ünï', 'admin)(|(uid=*']) {
      expect(firstRdnValue(`cn=${escapeDnValue(v)},dc=example,dc=test`)).toEqual({ attr: 'cn', value: v });
    }
  });

  it('normalizeDn compares DNs without case or spacing', () => {
    expect(normalizeDn('CN=Staff, OU=Groups,DC=Example,DC=test')).toBe(normalizeDn('cn=staff,ou=groups,dc=example,dc=test'));
  });
});

describe('homeFromAttributes (directory homes inside ftp.allowed_roots)', () => {
  const roots = ['/srv/ftp/users'];
  const rows: Array<[string, { root?: string; dir?: string; single?: string }, string | null]> = [
    ['IIS pair', { root: '/srv/ftp/users', dir: 'alice' }, '/srv/ftp/users/alice'],
    ['Windows separators in FTPDir', { root: '/srv/ftp/users', dir: 'staff\\alice' }, '/srv/ftp/users/staff/alice'],
    ['single attribute', { single: '/srv/ftp/users/bob' }, '/srv/ftp/users/bob'],
    ['root outside', { root: '/etc', dir: 'ssh' }, null],
    ['climb out with ..', { root: '/srv/ftp/users', dir: '../../../etc' }, null],
    ['climb out with Windows ..', { root: '/srv/ftp/users', dir: '..\\..\\etc' }, null],
    ['the allowed root itself', { root: '/srv/ftp', dir: 'users' }, null],
    ['prefix trick', { root: '/srv/ftp', dir: 'users-evil/x' }, null],
    ['absolute dir', { root: '/srv/ftp/users', dir: '/etc' }, null],
    ['drive letter', { root: 'D:\\ftp', dir: 'alice' }, null],
    ['UNC', { single: '\\\\server\\share\\alice' }, null],
    ['relative single', { single: 'alice' }, null],
    ['control char', { root: '/srv/ftp/users', dir: 'al\nice' }, null],
    ['no dir', { root: '/srv/ftp/users' }, null],
    ['no root', { dir: 'alice' }, null],
    ['empty single', { single: '' }, null],
  ];
  it.each(rows)('%s', (_name, values, expected) => {
    const r = homeFromAttributes(values, roots);
    expect(r.ok ? r.home : null).toBe(expected);
    if (!r.ok) expect(r.problem.length).toBeGreaterThan(5);
  });

  it('nothing is allowed when no root is configured', () => {
    expect(homeFromAttributes({ single: '/srv/ftp/users/alice' }, []).ok).toBe(false);
  });
});
