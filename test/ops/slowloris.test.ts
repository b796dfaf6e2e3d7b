/*
 * Slowloris, short form: 60 sockets from 127.0.1.1-10 trickle a never-ending command line one byte at a
 * time into all three listeners while a well-behaved client on 127.0.0.1 runs full sessions; every one of
 * its sessions is served and the gatehouse process stays up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, startProc, type Proc, type Setup } from '../../bench/fuzz/proc.js';
import { loadSetup, runSlowloris } from '../../bench/fuzz/slowloris.js';

let setup: Setup | null = null;
let proc: Proc | null = null;

beforeAll(async () => {
  setup = await loadSetup(100, 10);
  proc = await startProc(setup);
}, 60_000);

afterAll(async () => {
  await proc?.stop();
  killAll();
  setup?.remove();
}, 30_000);

describe('slowloris', () => {
  it('keeps serving a well-behaved client while 60 sockets trickle bytes', async () => {
    const f = await runSlowloris(setup!, proc!, { sockets: 60, addresses: 10, seconds: 6, intervalMs: 500 });
    expect(f.connected).toBe(60);
    expect(f.client.refused).toBe(0);
    expect(f.client.sessions).toBeGreaterThanOrEqual(3);
    expect(proc!.alive()).toBe(true);
  }, 60_000);
});
