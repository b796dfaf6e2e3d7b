import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailQueue } from '../../src/smtp/queue.js';
import { isSafeId, newQueueId, Spool } from '../../src/smtp/spool.js';
import { envelope, makeRuntime, message, type QueueFixture } from './queue-fixture.js';

describe('durable enqueue', () => {
  let fx: QueueFixture;
  beforeAll(async () => {
    fx = await makeRuntime();
  });
  afterAll(() => fx.cleanup());

  it('writes the bytes and the envelope into the spool before resolving', async () => {
    const q = createMailQueue(fx.rt);
    const data = message('durable');
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net', 'c@example.net']), data);
    expect(isSafeId(id)).toBe(true);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    expect(spool.readDataSync(id)!.equals(data)).toBe(true);
    expect(fs.readdirSync(spool.envDir)).toEqual([]); // no state file until the first attempt
    const entry = spool.readSync(id);
    expect(entry?.sender).toBe('a@example.org');
    expect(entry?.recipients.map((r) => [r.address, r.state])).toEqual([
      ['b@example.net', 'pending'],
      ['c@example.net', 'pending'],
    ]);
    expect(fs.readdirSync(spool.tmpDir)).toEqual([]);
    expect(fs.statSync(spool.msgPath(id)).mode & 0o777).toBe(0o600);
    expect(fs.statSync(spool.dir).mode & 0o777).toBe(0o700);
    await q.stop(0);
  });

  it('gives unique ids', async () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newQueueId()));
    expect(ids.size).toBe(1000);
    const q = createMailQueue(fx.rt);
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => q.enqueue(envelope('', ['x@example.net']), message(`m${i}`))));
    expect(new Set(many).size).toBe(20);
    await q.stop(0);
  });

  it('start-up removes tmp garbage and orphan state files, keeps complete entries', async () => {
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const q1 = createMailQueue(fx.rt);
    const kept = await q1.enqueue(envelope('a@example.org', ['b@example.net']), message('kept'));
    await q1.stop(0);
    fs.writeFileSync(path.join(spool.tmpDir, 'half-written.msg.1234'), 'partial');
    const orphan = newQueueId();
    fs.writeFileSync(spool.envPath(orphan), '{"state of an entry that was deleted":1}');
    const q2 = createMailQueue(fx.rt);
    expect(fs.readdirSync(spool.tmpDir)).toEqual([]);
    expect(fs.existsSync(spool.envPath(orphan))).toBe(false);
    expect(spool.idsSync()).toContain(kept);
    expect(q2.stats().depth).toBe(spool.idsSync().length);
    await q2.stop(0);
  });

  it('moves unreadable entries to corrupt/ instead of delivering them', async () => {
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const q1 = createMailQueue(fx.rt);
    const ok = await q1.enqueue(envelope('a@example.org', ['b@example.net']), message('ok'));
    await q1.stop(0);
    const truncated = newQueueId();
    fs.writeFileSync(spool.msgPath(truncated), '{"version":1,"id":"trunc');
    const garbage = newQueueId();
    fs.writeFileSync(spool.msgPath(garbage), 'not json\ndata');
    const misnamed = newQueueId(); // someone copied an entry under another name
    fs.copyFileSync(spool.msgPath(ok), spool.msgPath(misnamed));
    const q2 = createMailQueue(fx.rt);
    const ids = spool.idsSync();
    expect(ids).toContain(ok);
    for (const bad of [truncated, garbage, misnamed]) expect(ids).not.toContain(bad);
    expect(fs.readdirSync(path.join(spool.dir, 'corrupt')).sort()).toEqual([truncated, garbage, misnamed].sort());
    await q2.stop(0);
  });

  it('never delivers an entry whose body is shorter or longer than its envelope says (linked, not yet synced, then a crash)', async () => {
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const q1 = createMailQueue(fx.rt);
    const ok = await q1.enqueue(envelope('a@example.org', ['b@example.net']), message('whole'));
    await q1.stop(0);
    const file = fs.readFileSync(spool.msgPath(ok));
    const nl = file.indexOf(0x0a);
    const headerOnly = newQueueId();
    const cut = newQueueId();
    const longer = newQueueId();
    const retag = (id: string, bytes: Buffer) => Buffer.from(bytes.toString('latin1').replace(ok, id), 'latin1');
    fs.writeFileSync(spool.msgPath(headerOnly), retag(headerOnly, file.subarray(0, nl + 1))); // the data never reached the disk
    fs.writeFileSync(spool.msgPath(cut), retag(cut, file.subarray(0, file.length - 1))); // one byte short
    fs.writeFileSync(spool.msgPath(longer), Buffer.concat([retag(longer, file), Buffer.from('X')]));
    for (const id of [headerOnly, cut, longer]) {
      expect(spool.readSync(id)).toBeNull();
      expect(await spool.readMessage(id)).toBeNull();
    }
    expect(spool.readSync(ok)?.id).toBe(ok);
    const q2 = createMailQueue(fx.rt);
    const ids = spool.idsSync();
    expect(ids).toContain(ok);
    for (const bad of [headerOnly, cut, longer]) {
      expect(ids).not.toContain(bad);
      expect(fs.existsSync(path.join(spool.dir, 'corrupt', bad))).toBe(true);
    }
    await q2.stop(0);
  });

  it('refuses unsafe ids everywhere', () => {
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    for (const bad of ['../../etc/passwd', 'a/b', '', 'ABC123456789', '.hidden123', 'x'.repeat(65)]) {
      expect(isSafeId(bad)).toBe(false);
      expect(() => spool.envPath(bad)).toThrow(/unsafe queue id/);
    }
  });
});
