/*
 * `gatehouse feed list | flush` (the real CLI) against a running sender whose peer is down, then up: the queue
 * holds every posted article while the peer is unreachable (retried with backoff), `feed flush` ends the backoff
 * and the queue drains to the peer, which then has each article once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { runCli } from '../helpers/cli.js';
import { RawClient } from './client.js';
import { freePort } from '../smtp/listener-client.js';

const GROUPS = [{ name: 'lab.results', read: ['authenticated'], post: ['authenticated'] }];
let sender: TestGatehouse;
let receiver: TestGatehouse | null = null;
let peerPort: number;


beforeAll(async () => {
  peerPort = await freePort();
  sender = await startGatehouse(
    { hostname: 'a.test', nntp: { listen: '127.0.0.1:0', auth_requires_tls: false, groups: GROUPS, peers: [{ name: 'b.test', host: '127.0.0.1', port: peerPort, tls: false, groups: ['lab.*'], direction: 'out' }] } },
    [{ name: 'alice', password: PASSWORD }],
  );
});

afterAll(async () => {
  await sender?.stop();
  await receiver?.stop();
});

async function login(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.line();
  expect(await c.login('alice', PASSWORD)).toMatch(/^281/);
  return c;
}

async function listJson(): Promise<Array<{ peer: string; queued: number; oldest: string | null }>> {
  const r = await runCli(['--config', sender.configFile, 'feed', 'list', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Array<{ peer: string; queued: number; oldest: string | null }>;
}

describe('gatehouse feed', () => {
  it('lists what is queued while the peer is down; flush drains it once the peer is up', async () => {
    const c = await login(sender.port('nntp'));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [, r] = await c.post(['From: a@lab.test', 'Newsgroups: lab.results', `Subject: queued ${i}`, '', 'x']);
      expect(r).toMatch(/^240 /);
      ids.push(/<[^>]+>/.exec(r!)![0]);
    }
    c.close();
    // the feeder has tried (connection refused) and is backing off
    await new Promise((r) => setTimeout(r, 2500));
    const rows = await listJson();
    expect(rows).toEqual([expect.objectContaining({ peer: 'b.test', queued: 3, oldest: ids[0] })]);
    const text = await runCli(['--config', sender.configFile, 'feed', 'list']);
    expect(text.stdout).toMatch(/^b\.test\t127\.0\.0\.1:\d+\tno\t3\t</m);

    receiver = await startGatehouse(
      { hostname: 'b.test', nntp: { listen: `127.0.0.1:${peerPort}`, auth_requires_tls: false, groups: GROUPS, peers: [{ name: 'a.test', host: '127.0.0.1', tls: false, groups: ['lab.*'], direction: 'in' }] } },
      [{ name: 'alice', password: PASSWORD }],
    );
    const f = await runCli(['--config', sender.configFile, 'feed', 'flush']);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toMatch(/flush requested: 3 queued/);
    const deadline = Date.now() + 20_000;
    while ((await listJson())[0]!.queued > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect((await listJson())[0]!.queued).toBe(0);
    const rc = await login(peerPort);
    expect(await rc.cmd('GROUP lab.results')).toBe('211 3 1 3 lab.results');
    for (const id of ids) expect(await rc.cmd(`STAT ${id}`)).toMatch(/^223 /);
    rc.close();
  }, 60_000);

  it('refuses an unknown subcommand with the usage (exit 2)', async () => {
    const r = await runCli(['--config', sender.configFile, 'feed', 'frob']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: gatehouse feed list/);
  });
});
