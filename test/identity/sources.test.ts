// The order of identity sources (identity.sources): the first that knows a name answers; sources asked before
// it spend their dummy verification, and an unknown name spends every dummy (equal cost); an unreachable
// source is `unavailable` unless an earlier source knew the name. Fake sources record what was asked.
import { describe, expect, it } from 'vitest';
import { IdentitySources, type IdentitySource, type Lookup, type UserEntry, type Verify } from '../../src/identity/source.js';

function fake(name: 'local' | 'directory', users: Record<string, string>, calls: string[], down = false): IdentitySource {
  return {
    name,
    lookup(n: string): Promise<Lookup> {
      calls.push(`${name}.lookup`);
      if (down) return Promise.resolve({ kind: 'unavailable', reason: 'down' });
      return Promise.resolve(n in users ? { kind: 'found', entry: { name: n, source: name, groups: [] } } : { kind: 'unknown' });
    },
    verify(e: UserEntry, pw: string): Promise<Verify> {
      calls.push(`${name}.verify`);
      return Promise.resolve(users[e.name] === pw ? { kind: 'ok', identity: { kind: 'user', name: e.name, groups: [] } } : { kind: 'bad' });
    },
    dummy(): Promise<Verify> {
      calls.push(`${name}.dummy`);
      return Promise.resolve(down ? { kind: 'unavailable', reason: 'down' } : { kind: 'bad' });
    },
  };
}

describe('IdentitySources', () => {
  const rows: Array<[string, string, string, boolean, string, string[]]> = [
    ['local user, right password', 'lou', 'lou-pw', false, 'ok', ['local.lookup', 'local.verify']],
    ['local user: the directory is never asked, even when down', 'lou', 'lou-pw', true, 'ok', ['local.lookup', 'local.verify']],
    ['directory user: the local dummy runs alongside', 'dan', 'dan-pw', false, 'ok', ['local.lookup', 'directory.lookup', 'directory.verify', 'local.dummy']],
    ['directory user, wrong password', 'dan', 'nope', false, 'bad', ['local.lookup', 'directory.lookup', 'directory.verify', 'local.dummy']],
    ['unknown name: every dummy', 'zed', 'x', false, 'bad', ['local.lookup', 'directory.lookup', 'local.dummy', 'directory.dummy']],
    ['directory down, name not local: unavailable', 'dan', 'dan-pw', true, 'unavailable', ['local.lookup', 'directory.lookup']],
  ];
  it.each(rows)('%s', async (_n, user, pw, down, kind, expected) => {
    const calls: string[] = [];
    const s = new IdentitySources([fake('local', { lou: 'lou-pw' }, calls), fake('directory', { dan: 'dan-pw' }, calls, down)]);
    expect((await s.verify(user, pw)).kind).toBe(kind);
    expect(calls).toEqual(expected);
  });
});
