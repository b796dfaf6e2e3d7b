import { describe, expect, it } from 'vitest';
import { decideGroup, decidePostCommand, groupPostableAfterLogin, mayPostAfterLogin, mayPostSomewhere, readableGroups, type GroupRights } from '../../src/policy/groups.js';
import { ANONYMOUS, NOBODY, type Identity } from '../../src/policy/types.js';

const groups = new Map<string, GroupRights>(
  [
    { name: 'office.general', read: ['authenticated'], post: ['authenticated'] },
    { name: 'office.staff', read: ['alice'], post: ['alice'] },
    { name: 'lab.announce', read: ['authenticated'], post: ['group:staff'] },
    { name: 'public.news', read: ['anonymous', 'authenticated'], post: [] },
  ].map((g) => [g.name, g]),
);
const alice: Identity = { kind: 'user', name: 'alice', groups: [] };
const bob: Identity = { kind: 'user', name: 'bob', groups: ['staff'] };

describe('decideGroup', () => {
  const rows: Array<[string, Identity, 'read' | 'post', string, boolean, string]> = [
    ['authenticated reads general', bob, 'read', 'office.general', true, 'group.read'],
    ['nobody cannot read general', NOBODY, 'read', 'office.general', false, 'group.default'],
    ['alice reads staff', alice, 'read', 'office.staff', true, 'group.read'],
    ['bob cannot read staff', bob, 'read', 'office.staff', false, 'group.default'],
    ['group:staff posts announce', bob, 'post', 'lab.announce', true, 'group.post'],
    ['alice cannot post announce', alice, 'post', 'lab.announce', false, 'group.default'],
    ['anonymous reads public', ANONYMOUS, 'read', 'public.news', true, 'group.read'],
    ['unauthenticated reads public', NOBODY, 'read', 'public.news', true, 'group.read'],
    ['nobody posts public', bob, 'post', 'public.news', false, 'group.default'],
    ['unknown group', alice, 'read', 'no.such.group', false, 'group.unknown'],
    ['case-insensitive lookup', alice, 'read', 'OFFICE.STAFF', true, 'group.read'],
  ];
  it.each(rows)('%s', (_n, id, right, name, allow, rule) => {
    const d = decideGroup(groups, id, right, name);
    expect(d.allow).toBe(allow);
    expect(d.rule).toBe(rule);
  });

  it('a hidden group reads exactly like a missing one', () => {
    const hidden = decideGroup(groups, bob, 'read', 'office.staff');
    const missing = decideGroup(groups, bob, 'read', 'office.staff2');
    expect(hidden.reason.replace('office.staff', 'X')).toBe(missing.reason.replace('office.staff2', 'X'));
  });
});

describe('listing helpers', () => {
  it('readableGroups hides what the identity cannot read', () => {
    expect(readableGroups(groups, bob).sort()).toEqual(['lab.announce', 'office.general', 'public.news']);
    expect(readableGroups(groups, NOBODY)).toEqual(['public.news']);
  });
  it('mayPostSomewhere', () => {
    expect(mayPostSomewhere(groups, bob)).toBe(true);
    expect(mayPostSomewhere(groups, NOBODY)).toBe(false);
  });
});

describe('mayPostAfterLogin (the NNTP greeting: 200 or 201)', () => {
  const only = (post: string[]) => new Map<string, GroupRights>([['g', { name: 'g', read: ['authenticated'], post }]]);
  const rows: Array<[string, ReadonlyMap<string, GroupRights>, Identity, boolean]> = [
    ['not logged in, authenticated users may post: 200', only(['authenticated']), NOBODY, true],
    ['not logged in, a named user may post: 200', only(['alice']), NOBODY, true],
    ['not logged in, a user group may post: 200', only(['group:staff']), NOBODY, true],
    ['not logged in, anonymous may post: 200', only(['anonymous']), NOBODY, true],
    ['not logged in, nobody may post: 201', only([]), NOBODY, false],
    ['anonymous FTP-style identity, authenticated may post: 200', only(['authenticated']), ANONYMOUS, true],
    ['logged in and may post: 200', only(['alice']), alice, true],
    ['logged in and may not post anywhere: 201', only(['alice']), bob, false],
    ['logged in, only anonymous may post: 201', only(['anonymous']), bob, false],
    ['no groups at all: 201', new Map<string, GroupRights>(), NOBODY, false],
  ];
  it.each(rows)('%s', (_n, g, id, expected) => {
    expect(mayPostAfterLogin(g, id)).toBe(expected);
  });
});

describe('groupPostableAfterLogin (LIST ACTIVE posting flag)', () => {
  const rows: Array<[string, Identity, string, boolean]> = [
    ['not logged in, general takes posts from any user: y', NOBODY, 'office.general', true],
    ['not logged in, staff takes posts from alice: y', NOBODY, 'office.staff', true],
    ['not logged in, public takes no posts: n', NOBODY, 'public.news', false],
    ['bob (staff group) may post to announce: y', bob, 'lab.announce', true],
    ['alice (no staff group) may not post to announce: n', alice, 'lab.announce', false],
    ['unknown group: n', NOBODY, 'no.such.group', false],
  ];
  it.each(rows)('%s', (_n, id, name, expected) => {
    expect(groupPostableAfterLogin(groups, id, name)).toBe(expected);
  });
});

describe('decidePostCommand (POST before its 340)', () => {
  const readOnly = new Map<string, GroupRights>([['public.news', { name: 'public.news', read: ['anonymous', 'authenticated'], post: [] }]]);
  const rows: Array<[string, ReadonlyMap<string, GroupRights>, Identity, boolean, string]> = [
    ['a user some group lets post', groups, alice, true, 'nntp.post_somewhere'],
    ['a user allowed only through group:staff', groups, bob, true, 'nntp.post_somewhere'],
    ['not logged in', groups, NOBODY, false, 'nntp.post_not_allowed'],
    ['anonymous, no group lists anonymous for posting', groups, ANONYMOUS, false, 'nntp.post_not_allowed'],
    ['a server whose groups are all read-only', readOnly, alice, false, 'nntp.post_not_allowed'],
    ['no groups at all', new Map<string, GroupRights>(), alice, false, 'nntp.post_not_allowed'],
  ];
  it.each(rows)('%s', (_n, g, id, allow, rule) => {
    const d = decidePostCommand(g, id);
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});
