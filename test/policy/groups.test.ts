import { describe, expect, it } from 'vitest';
import { decideGroup, mayPostSomewhere, readableGroups, type GroupRights } from '../../src/policy/groups.js';
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
