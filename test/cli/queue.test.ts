import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { createMailQueue, entryFromEnvelope } from '../../src/smtp/queue.js';
import { newQueueId, Spool } from '../../src/smtp/spool.js';
import { envelope, makeRuntime, message, startSink, waitFor } from '../smtp/queue-fixture.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A runtime plus the same config written where the CLI reads it. */
async function setup(smtp: Record<string, unknown> = {}) {
  const fx = await makeRuntime(smtp);
  cleanups.push(() => fx.cleanup());
  const cfg = path.join(fx.dir, 'config', 'gatehouse.yaml');
  fs.writeFileSync(cfg, stringify({ hostname: 'gatehouse.test', state_dir: '../var', auth: { bcrypt_cost: 10 }, log: { stdout: false }, smtp: { local_domains: ['office.test'], ...smtp } }));
  const gh = (args: string[]) => runCli(['--config', cfg, 'queue', ...args]);
  return { fx, gh, spool: new Spool(fx.rt.config.paths.spoolDir) };
}

describe('gatehouse queue', () => {
  it('list shows id, age, sender, recipients, attempts and last error, read straight from the spool', async () => {
    const { gh, spool } = await setup();
    const empty = await gh(['list']);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/queue is empty/);
    const id = newQueueId(Date.now() - 3 * 3600_000);
    const e = entryFromEnvelope(id, envelope('a@example.org', ['b@example.net', 'c@example.net']), 1, Date.now() - 3 * 3600_000);
    e.attempts = 4;
    e.recipients[1]!.state = 'delivered';
    e.recipients[0]!.lastError = '451 4.2.0 Try again later\x1b[31m';
    e.lastError = e.recipients[0]!.lastError;
    e.nextAttemptAt = Date.now() + 600_000;
    await spool.create(e, Buffer.from('x'));
    const bounce = entryFromEnvelope(newQueueId(), envelope('', ['a@example.org']), 1);
    await spool.create(bounce, Buffer.from('y'));
    const r = await gh(['list']);
    expect(r.code).toBe(0);
    const line = r.stdout.split('\n').find((l) => l.startsWith(id))!;
    expect(line.split('\t')).toEqual([id, '3h', 'a@example.org', 'b@example.net (+1 done)', '4', expect.stringMatching(/^451 4\.2\.0 Try again later\?\[31m next in (9|10)m$/)]);
    expect(r.stdout).toMatch(new RegExp(`^${bounce.id}\t\\d+s\t<>\ta@example.org\t0\t-$`, 'm'));
    expect(r.stdout).toContain('2 message(s)');
    const j = await gh(['list', '--json']);
    expect((JSON.parse(j.stdout) as Array<{ id: string }>).map((x) => x.id).sort()).toEqual([id, bounce.id].sort());
  });

  it('delete removes one entry; unknown id → 1; unsafe id or bad usage → 2', async () => {
    const { gh, spool } = await setup();
    const id = newQueueId();
    await spool.create(entryFromEnvelope(id, envelope('a@example.org', ['b@example.net']), 1), Buffer.from('x'));
    const ok = await gh(['delete', id]);
    expect(ok.code).toBe(0);
    expect(spool.idsSync()).toEqual([]);
    expect(fs.existsSync(spool.msgPath(id))).toBe(false);
    expect((await gh(['delete', id])).code).toBe(1);
    for (const bad of ['../../etc/passwd', 'ABCDEFGHIJ']) {
      const r = await gh(['delete', '--', bad]);
      expect(r.code).toBe(2);
    }
    expect((await gh([])).code).toBe(2);
    expect((await gh(['frobnicate'])).code).toBe(2);
    expect((await gh(['delete'])).code).toBe(2);
  });

  it('flush makes the running worker retry a deferred message now', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    let refusals = 0;
    sink.rcptReply = () => (refusals++ < 1 ? 451 : null);
    const smtp = { relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [3600] } };
    const { fx, gh } = await setup(smtp);
    const q = createMailQueue(fx.rt, { tickMs: 200 });
    cleanups.push(() => q.stop(1000));
    q.start();
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), message('cli-flush'));
    await waitFor(() => (q.spool.readSync(id)?.attempts ?? 0) >= 1);
    const listed = await gh(['list']);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\t.*\t1\t451 4\\.2\\.0 Try again later next in (59|60)m$`, 'm'));
    const r = await gh(['flush']);
    expect(r.code).toBe(0);
    await waitFor(() => sink.messages.length === 1);
    await waitFor(() => q.spool.idsSync().length === 0);
  });
});
