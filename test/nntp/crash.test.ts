/*
 * Durability: the real CLI as a child process, kill -9 after 240, restart; every acknowledged article is
 * present exactly once with the number it was given, and numbering continues after it.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { PASSWORD } from '../helpers/gatehouse.js';
import { ChildGatehouses, writeConfigDir, type ConfigDir } from '../helpers/process.js';
import { GROUPS, secureLogin } from './client.js';

const procs = new ChildGatehouses();
let cfg: ConfigDir | undefined;

afterAll(() => {
  procs.killAll();
  if (cfg) fs.rmSync(cfg.dir, { recursive: true, force: true });
});

async function setup(): Promise<void> {
  cfg = await writeConfigDir(
    'gatehouse-crash-',
    {
      hostname: 'gatehouse.test',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false },
      smtp: { enabled: false },
      ftp: { enabled: false },
      nntp: { listen: '127.0.0.1:0', groups: GROUPS },
    },
    [{ name: 'alice', password: PASSWORD, groups: ['staff'] }],
  );
}

/** Start `gatehouse start` and resolve with its NNTP port (read from its startup banner). */
async function start() {
  const g = await procs.start(cfg!.configFile, 20_000);
  return { child: g.child, port: g.port('nntp') };
}

const kill9 = (child: ChildProcess) => procs.kill9(child);

const art = (subject: string) => ['From: a@x', 'Newsgroups: office.general,office.staff', `Subject: ${subject}`, '', 'body'];

describe('kill -9 after 240', () => {
  it('keeps every acknowledged article exactly once with the same numbers', async () => {
    await setup();
    let { child, port } = await start();
    let c = await secureLogin(port, 'alice', PASSWORD);
    const [, r] = await c.post(art('first'));
    expect(r).toMatch(/^240 /);
    const id = /<[^>]+>/.exec(r!)![0];
    expect(await c.cmd('GROUP office.general')).toBe('211 1 1 1 office.general');

    // A burst from four clients, killed while posts are still in flight.
    const acked: string[] = [];
    const clients = await Promise.all([0, 1, 2, 3].map(() => secureLogin(port, 'alice', PASSWORD)));
    let stop = false;
    const bursts = clients.map(async (cl, i) => {
      for (let n = 0; n < 50 && !stop; n++) {
        const [, rr] = await cl.post(art(`burst ${i}.${n}`)).catch(() => ['', null] as [string, null]);
        if (rr?.startsWith('240')) acked.push(/<[^>]+>/.exec(rr)![0]);
        else break;
        if (acked.length >= 12) stop = true;
      }
    });
    const deadline = Date.now() + 20_000;
    while (acked.length < 12 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
    await kill9(child);
    await Promise.allSettled(bursts);
    for (const cl of clients) cl.close();
    c.close();

    ({ child, port } = await start());
    c = await secureLogin(port, 'alice', PASSWORD);
    expect(await c.cmd(`STAT ${id}`)).toMatch(/^223 0 /);
    expect(await c.cmd('GROUP office.general')).toMatch(/^211 /);
    expect(await c.cmd('STAT 1')).toBe(`223 1 ${id}`);
    for (const g of ['office.general', 'office.staff']) {
      expect(await c.cmd(`LISTGROUP ${g}`)).toMatch(/^211 /);
      const nums = (await c.block()).map(Number);
      expect(new Set(nums).size).toBe(nums.length);
      expect(nums.length).toBeGreaterThanOrEqual(1 + acked.length);
      expect(await c.cmd(`HDR Message-ID 1-`)).toMatch(/^225/);
      const ids = (await c.block()).map((l) => l.split(' ')[1]);
      expect(ids.filter((x) => x === id)).toHaveLength(1);
      for (const a of acked) expect(ids.filter((x) => x === a)).toHaveLength(1);
    }
    const before = Number((await c.cmd('GROUP office.general')).split(' ')[3]);
    const [, r2] = await c.post(art('after restart'));
    expect(r2).toMatch(/^240 /);
    expect((await c.cmd('GROUP office.general')).split(' ')[3]).toBe(String(before + 1));
    c.close();
    await kill9(child);
  }, 60_000);
});
