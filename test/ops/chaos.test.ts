/*
 * kill -9 during mixed SMTP/FTP/NNTP load, short form (bench:load runs more rounds): two rounds of SIGKILL
 * at a seeded moment and restart; every message that got 250 is in the queue exactly once, every upload
 * that got 226 is on disk with its bytes, every article that got 240 is in the store exactly once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { chaosSetup, runChaos } from '../../bench/fuzz/chaos.js';
import { killAll, type Proc, type Setup } from '../../bench/fuzz/proc.js';

let setup: Setup | null = null;
let proc: Proc | null = null;

afterAll(async () => {
  await proc?.stop();
  killAll();
  setup?.remove();
}, 30_000);

describe('kill -9 under mixed load', () => {
  it('loses and duplicates nothing acknowledged over two kill rounds', async () => {
    setup = await chaosSetup();
    const r = await runChaos(setup, { rounds: 2, seed: 4242, minMs: 1200, maxMs: 2500, workers: { smtp: 2, ftp: 1, nntp: 1 } });
    proc = r.proc;
    expect(r.mail.acked).toBeGreaterThan(0);
    expect(r.uploads.acked).toBeGreaterThan(0);
    expect(r.articles.acked).toBeGreaterThan(0);
    expect(r.mail).toMatchObject({ lost: 0, duplicated: 0 });
    expect(r.uploads).toMatchObject({ lost: 0, wrongBytes: 0 });
    expect(r.articles).toMatchObject({ lost: 0, duplicated: 0 });
    expect(proc.alive()).toBe(true);
  }, 120_000);
});
