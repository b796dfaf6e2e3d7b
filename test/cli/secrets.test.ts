import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

// Never log a password: run good and bad logins through the policy core, then grep every log file.
const GOOD = 'good-secret-Zq8xK2vP';
const BAD = 'bad-secret-Wm3nR7tY';
let t: TestGatehouse;

beforeAll(async () => {
  t = await startGatehouse({}, [{ name: 'alice', password: GOOD }]);
});
afterAll(async () => {
  await t?.stop();
});

function allLogs(dir: string): string {
  let out = '';
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out += fs.readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

describe('secrets stay out of the logs', () => {
  it('good and bad logins are logged as decisions, without the passwords', async () => {
    const policy = t.gh.runtime.policy;
    const ctx = { service: 'smtp' as const, ip: '127.0.0.20', identity: { kind: 'none' as const }, session: 'test' };
    const ok = await policy.authenticate(ctx, 'alice', GOOD, true);
    const wrong = await policy.authenticate(ctx, 'alice', BAD, true);
    const unknown = await policy.authenticate(ctx, 'mallory', BAD, true);
    const plain = await policy.authenticate(ctx, 'alice', GOOD, false);
    expect(ok.decision.allow).toBe(true);
    expect([wrong.decision.rule, wrong.decision.reason]).toEqual([unknown.decision.rule, unknown.decision.reason]);
    expect(plain.decision.rule).toBe('auth.tls_required');
    t.gh.runtime.log.info({ password: GOOD, auth: { password: BAD } }, 'a careless log call');
    const logs = allLogs(t.gh.config.paths.logDir);
    expect(logs).toMatch(/auth\.bad_credentials/);
    expect(logs).toMatch(/auth\.password/);
    expect(logs).not.toContain(GOOD);
    expect(logs).not.toContain(BAD);
    expect(logs).not.toMatch(/\$2[aby]\$/);
  });
});
