/*
 * lockouts.json has two writers: the daemon mirroring its locks and `gatehouse user unlock`. A daemon save that
 * lands between an unlock's write and the SIGHUP must not put the lock back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLockouts, updateLockouts } from '../../src/identity/lockouts.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

let t: TestGatehouse;
beforeAll(async () => {
  t = await startGatehouse({ smtp: { enabled: false }, ftp: { enabled: false }, nntp: { enabled: false } });
});
afterAll(async () => {
  await t?.stop();
});

describe('daemon lockouts mirror and user unlock', () => {
  it('a save after an unlock lifts the lock instead of writing it back; a lock taken again later stays', async () => {
    const policy = t.gh.runtime.policy;
    const stateDir = t.gh.config.paths.stateDir;
    const now = Date.now();
    for (let i = 0; i < 5; i++) policy.counters.recordFailure('127.0.0.20', 'carol', now);
    await t.gh.saveLockouts();
    expect(readLockouts(stateDir).map((l) => `${l.kind}:${l.key}`).sort()).toEqual(['ip:127.0.0.20', 'user:carol']);

    // The operator's unlock (what `gatehouse user unlock carol` does), then the daemon saves for another reason
    // before it has handled the SIGHUP.
    await updateLockouts(stateDir, (locks) => locks.filter((l) => !(l.kind === 'user' && l.key === 'carol')));
    await t.gh.saveLockouts();
    expect(readLockouts(stateDir).map((l) => `${l.kind}:${l.key}`)).toEqual(['ip:127.0.0.20']);
    expect(policy.counters.lockedUntil('user', 'carol', Date.now())).toBe(0);
    expect(policy.counters.lockedUntil('ip', '127.0.0.20', Date.now())).toBeGreaterThan(0);

    // Locked again after the unlock: a different entry, kept.
    await updateLockouts(stateDir, () => []);
    const later = Date.now() + 10;
    for (let i = 0; i < 5; i++) policy.counters.recordFailure('127.0.0.30', 'carol', later);
    await t.gh.saveLockouts();
    const keys = readLockouts(stateDir).map((l) => `${l.kind}:${l.key}`);
    expect(keys).toContain('user:carol');
    expect(keys).not.toContain('ip:127.0.0.20');
  });
});
