/*
 * The verification cache: a reconnecting client with the right password skips bcrypt; everything else (wrong
 * password, unknown user, changed or removed user, expired entry, cache off) pays exactly one bcrypt comparison.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcrypt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UserStore, VerifiedCache } from '../../src/identity/users.js';

const PASSWORD = 'correct horse battery';
const OTHER = 'another long password';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-cache-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function storeWith(ttlS: number, clock: () => number = Date.now): Promise<UserStore> {
  const file = path.join(dir, `users-${Math.random().toString(36).slice(2)}.yaml`);
  await UserStore.load(file, 10).add('alice', PASSWORD, ['staff']);
  const store = new UserStore(file, 10, ttlS, clock);
  store.reload();
  await store.warm();
  return store;
}

/** Runs `verify` and reports its answer and how many bcrypt comparisons it made. */
async function verifyCounting(store: UserStore, name: string, password: string): Promise<{ ok: boolean; compares: number }> {
  const spy = vi.spyOn(bcrypt, 'compare');
  try {
    const identity = await store.verify(name, password);
    return { ok: identity !== null, compares: spy.mock.calls.length };
  } finally {
    spy.mockRestore();
  }
}

describe('UserStore verification cache', () => {
  it('skips bcrypt only for a repeat of an accepted password', async () => {
    const store = await storeWith(300);
    const rows: [string, string, boolean, number][] = [
      // name, password, accepted, bcrypt comparisons
      ['alice', PASSWORD, true, 1], // first login: bcrypt, then remembered
      ['alice', PASSWORD, true, 0], // repeat: from the cache
      ['alice', OTHER, false, 1], // wrong password: full bcrypt, like an unknown user
      ['alice', PASSWORD, true, 0], // a failure does not evict the good entry
      ['mallory', PASSWORD, false, 1], // unknown user: dummy bcrypt
      ['alice', `${PASSWORD}\0`, false, 1], // unusable password: bcrypt of a placeholder
    ];
    for (const [name, password, ok, compares] of rows) {
      expect(await verifyCounting(store, name, password), `${name} / ${JSON.stringify(password)}`).toEqual({ ok, compares });
    }
  });

  it('forgets an entry when it expires', async () => {
    let now = 1_000_000;
    const store = await storeWith(60, () => now);
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 1 });
    now += 59_000;
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 0 });
    now += 2_000;
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 1 });
  });

  it('never matches an entry after the password changed or the user was removed', async () => {
    const store = await storeWith(300);
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 1 });
    await store.passwd('alice', OTHER);
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: false, compares: 1 });
    expect(await verifyCounting(store, 'alice', OTHER)).toEqual({ ok: true, compares: 1 });
    await store.remove('alice');
    expect(await verifyCounting(store, 'alice', OTHER)).toEqual({ ok: false, compares: 1 });
  });

  it('is off with a lifetime of 0', async () => {
    const store = await storeWith(0);
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 1 });
    expect(await verifyCounting(store, 'alice', PASSWORD)).toEqual({ ok: true, compares: 1 });
    expect(store.verified.size).toBe(0);
  });

  it('keeps at most max entries, dropping the oldest', () => {
    const cache = new VerifiedCache(60_000, 2);
    const user = (name: string) => ({ name, hash: `hash-of-${name}`, groups: [] });
    cache.remember(user('a'), PASSWORD);
    cache.remember(user('b'), PASSWORD);
    cache.remember(user('c'), PASSWORD);
    expect(cache.size).toBe(2);
    expect(cache.has(user('a'), PASSWORD)).toBe(false);
    expect(cache.has(user('b'), PASSWORD)).toBe(true);
    expect(cache.has(user('c'), PASSWORD)).toBe(true);
    expect(cache.has(user('c'), OTHER)).toBe(false);
  });
});
