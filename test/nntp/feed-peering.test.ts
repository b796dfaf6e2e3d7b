/*
 * Two Gatehouse instances peering both ways over real sockets: A is the real CLI in a child process, B runs in
 * this process. Articles posted on either side appear on the other (streaming feed), not fed back. Then A is
 * killed with SIGKILL while it is feeding a burst and started again: every article A acknowledged (240)
 * reaches B, and none is stored twice on B.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { ChildGatehouses, writeConfigDir, type ConfigDir } from '../helpers/process.js';
import { freePort } from '../smtp/listener-client.js';
import { RawClient } from './client.js';

const procs = new ChildGatehouses();
const GROUPS = [{ name: 'lab.results', read: ['authenticated'], post: ['authenticated'] }];
let cfg: ConfigDir | undefined;
let b: TestGatehouse;
let portA: number;
let portB: number;

beforeAll(async () => {
  portA = await freePort();
  b = await startGatehouse(
    {
      hostname: 'b.test',
      nntp: { listen: '127.0.0.1:0', auth_requires_tls: false, groups: GROUPS, peers: [{ name: 'a.test', host: '127.0.0.1', port: portA, tls: false, groups: ['lab.*'], direction: 'both' }] },
    },
    [{ name: 'alice', password: PASSWORD }],
  );
  portB = b.port('nntp');
  cfg = await writeConfigDir(
    'gatehouse-peering-',
    {
      hostname: 'a.test',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false },
      smtp: { enabled: false },
      ftp: { enabled: false },
      nntp: {
        listen: `127.0.0.1:${portA}`,
        auth_requires_tls: false,
        groups: GROUPS,
        limits: { posts_per_minute: 10_000 },
        peers: [{ name: 'b.test', host: '127.0.0.1', port: portB, tls: false, groups: ['lab.*'], direction: 'both' }],
      },
    },
    [{ name: 'alice', password: PASSWORD }],
  );
});

afterAll(async () => {
  procs.killAll();
  await b?.stop();
  if (cfg) fs.rmSync(cfg.dir, { recursive: true, force: true });
});

const startA = async () => (await procs.start(cfg!.configFile)).child;
const kill9 = (child: ChildProcess) => procs.kill9(child);

async function reader(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.line();
  expect(await c.login('alice', PASSWORD)).toMatch(/^281/);
  return c;
}

/** Message-IDs in lab.results on a server, in number order. */
async function ids(port: number): Promise<string[]> {
  const c = await reader(port);
  const g = await c.cmd('GROUP lab.results');
  const out: string[] = [];
  if (!g.startsWith('211 0 ')) {
    expect(await c.cmd('XHDR Message-ID 1-')).toMatch(/^221/);
    for (const l of await c.block()) out.push(l.split(' ')[1]!);
  }
  c.close();
  return out;
}

async function waitFor(what: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const art = (subject: string) => ['From: Alice <alice@lab.test>', 'Newsgroups: lab.results', `Subject: ${subject}`, '', 'body', '.dot'];

describe('two instances peering both ways', () => {
  it('feeds A → B and B → A, never back; kill -9 of A mid-feed loses nothing and stores nothing twice', async () => {
    let a = await startA();
    const ca = await reader(portA);
    const [, ra] = await ca.post(art('from A'));
    expect(ra).toMatch(/^240 /);
    const idA = /<[^>]+>/.exec(ra!)![0];
    const cb = await reader(portB);
    const [, rb] = await cb.post(art('from B'));
    expect(rb).toMatch(/^240 /);
    const idB = /<[^>]+>/.exec(rb!)![0];
    cb.close();
    await waitFor(async () => (await ids(portB)).includes(idA) && (await ids(portA)).includes(idB), 30_000);
    // each once on each side (B's article was not fed back to B, A's not back to A)
    expect((await ids(portA)).sort()).toEqual([idA, idB].sort());
    expect((await ids(portB)).sort()).toEqual([idA, idB].sort());
    const onB = await reader(portB);
    expect(await onB.cmd(`HEAD ${idA}`)).toMatch(/^221/);
    expect((await onB.block()).find((l) => l.startsWith('Path:'))).toBe('Path: b.test!a.test!not-for-mail');
    onB.close();

    // a burst on A; kill -9 once B has some of it but A is still posting and feeding
    const acked: string[] = [];
    let stop = false;
    const burst = (async () => {
      for (let n = 0; n < 400 && !stop; n++) {
        const [, r] = await ca.post(art(`burst ${n}`)).catch(() => ['', null] as [string, null]);
        if (!r?.startsWith('240')) break;
        acked.push(/<[^>]+>/.exec(r)![0]);
      }
    })();
    await waitFor(async () => (await ids(portB)).length >= 12, 30_000);
    stop = true;
    await kill9(a);
    await burst;
    ca.close();
    const before = (await ids(portB)).length;
    expect(acked.length).toBeGreaterThan(0);

    a = await startA();
    const want = new Set([idA, idB, ...acked]);
    await waitFor(async () => {
      const got = new Set(await ids(portB));
      return [...want].every((i) => got.has(i));
    }, 60_000);
    const final = await ids(portB);
    expect(new Set(final).size).toBe(final.length); // nothing stored twice
    expect(final.length).toBeGreaterThanOrEqual(before);
    for (const i of want) expect(final).toContain(i);
    await kill9(a);
  }, 180_000);
});
