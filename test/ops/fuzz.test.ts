/*
 * Short seeded form of the protocol fuzzer (bench:load runs 10,000 inputs per listener): 400 inputs per
 * listener against a real gatehouse child process; every input gets a reply or a close within the bound,
 * the process stays alive and each listener still answers a well-behaved session afterwards. The inputs
 * are a pure function of the seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzInputs, runFuzz } from '../../bench/fuzz/fuzzer.js';
import { freePort, killAll, makeSetup, probe, startProc, type Proc, type Proto, type Setup } from '../../bench/fuzz/proc.js';

const SEED = 20_261_201;
let setup: Setup | null = null;
let proc: Proc | null = null;

beforeAll(async () => {
  const closed = await freePort();
  setup = await makeSetup({
    auth: { bcrypt_cost: 10, lockout: { failures: 1_000_000 } },
    smtp: { auth_requires_tls: false, local_domains: ['gatehouse.test'], relay: { smarthost: { host: '127.0.0.1', port: closed, tls: 'none' } }, limits: { connections_per_ip: 20 } },
    ftp: { tls_required: false, limits: { connections_per_ip: 20, max_login_failures: 1_000_000 } },
    nntp: { auth_requires_tls: false, groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }], limits: { connections_per_ip: 20, posts_per_minute: 100_000 } },
  });
  proc = await startProc(setup);
}, 60_000);

afterAll(async () => {
  await proc?.stop();
  killAll();
  setup?.remove();
}, 30_000);

describe('protocol fuzzer (seeded)', () => {
  it('generates the same inputs for the same seed and different ones for another', () => {
    for (const p of ['smtp', 'ftp', 'nntp'] as const) {
      const a = fuzzInputs(p, 200, SEED);
      expect(fuzzInputs(p, 200, SEED)).toEqual(a);
      expect(fuzzInputs(p, 200, SEED + 1)).not.toEqual(a);
      expect(new Set(a).size).toBeGreaterThan(100);
    }
  });

  for (const proto of ['smtp', 'ftp', 'nntp'] as Proto[]) {
    it(`${proto}: 400 inputs, no hang, process alive and still answering`, async () => {
      const r = await runFuzz({ proto, port: setup!.ports[proto], n: 400, seed: SEED, workers: proto === 'ftp' ? 12 : 6, boundMs: 15_000 });
      expect(r.inputs).toBe(400);
      expect(r.hangSamples).toEqual([]);
      expect(r.hangs).toBe(0);
      expect(proc!.alive()).toBe(true);
      expect(await probe(proto, setup!.ports[proto])).not.toBeNull();
    }, 60_000);
  }
});
