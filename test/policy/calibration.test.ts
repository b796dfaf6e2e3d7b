/*
 * The password-check calibration (Policy.calibrate) runs after the listeners are up, not before: a login that
 * arrives while it runs must wait for it, so a throttled reply is never answered faster than a failed password
 * check because the calibration had not measured one yet. A stand-in user store whose calibration comparison
 * takes a known time.
 */
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { UserStore, type UserRecord } from '../../src/identity/users.js';
import { Policy } from '../../src/policy/index.js';
import { missDelayMs } from '../../src/policy/throttle.js';
import type { Identity } from '../../src/policy/types.js';

const STATE = path.join(os.tmpdir(), 'gatehouse-calibration-unit');
const CHECK_MS = 150;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class SlowUsers extends UserStore {
  warmed = false;
  constructor() {
    super('/nonexistent/users.yaml', 10);
  }
  override has(name: string): boolean {
    return name === 'alice';
  }
  override get(name: string): UserRecord | undefined {
    return this.has(name) ? { name, hash: '', groups: [] } : undefined;
  }
  override async warm(): Promise<void> {
    await sleep(CHECK_MS);
    this.warmed = true;
  }
  // every check of a password takes CHECK_MS, the calibration's too (a bcrypt comparison)
  override async verify(name: string, password: string): Promise<Identity | null> {
    await sleep(name.startsWith('\u0000') ? CHECK_MS : 1);
    return name === 'alice' && password === 'right-password-123' ? { kind: 'user', name, groups: [] } : null;
  }
}

function makePolicy() {
  const config = parseConfig({ state_dir: STATE, auth: { bcrypt_cost: 10 } }, '<test>', STATE);
  const users = new SlowUsers();
  const policy = new Policy(config, users, () => undefined);
  const attempt = (ip: string) => policy.authenticate({ service: 'smtp', ip, identity: { kind: 'none' }, session: 't' }, 'alice', 'wrong-password', true);
  return { policy, users, attempt };
}

describe('calibration after listening', () => {
  it('a login that arrives during the calibration waits for it, and a throttled one then waits the measured check time', async () => {
    const { policy, users, attempt } = makePolicy();
    // alice throttled from 127.0.0.30 before the calibration starts (the stand-in store answers at once)
    for (let i = 0; i < 5; i++) await attempt('127.0.0.30');
    const t0 = performance.now();
    const calibrated = policy.calibrate();
    const first = attempt('127.0.0.30');
    let done = false;
    void first.then(() => (done = true));
    await sleep(CHECK_MS / 2);
    expect(done).toBe(false); // still waiting for the calibration (warm-up + one check)
    const out = await first;
    await calibrated;
    expect(users.warmed).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * CHECK_MS - 5);
    expect(out.temporary).toBe(true);
    expect(out.decision.rule).toBe('auth.throttle_pair');
    // the throttled reply waits the miss delay plus a password check as measured (not 0 as before calibrating)
    const miss = out.delayMs - missDelayMs(6, { delayBaseMs: 500, delayMaxMs: 8000 });
    expect(miss).toBeGreaterThanOrEqual(CHECK_MS - 5);
    expect(miss).toBeLessThan(CHECK_MS * 20);
  });

  it('runs once: later logins do not wait again', async () => {
    const { policy, attempt } = makePolicy();
    await policy.calibrate();
    const again = policy.calibrate();
    const t0 = performance.now();
    await again;
    await attempt('127.0.0.40');
    expect(performance.now() - t0).toBeLessThan(CHECK_MS);
  });
});
