/*
 * The queue's draft (a large DATA written to the spool as it arrives, src/smtp/spool-draft.ts): a committed
 * draft is an entry like any other (same bytes, readable envelope line although padded, recovered by a new
 * queue at start-up, not quarantined); an aborted one leaves nothing in msg/ or tmp/; a commit never replaces an
 * existing entry; and a draft linked but never completed (a crash before its envelope line) is never delivered.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailQueue } from '../../src/smtp/queue.js';
import { newQueueId, Spool } from '../../src/smtp/spool.js';
import { envelope, makeRuntime, message, waitFor, type QueueFixture } from './queue-fixture.js';

describe('spool draft', () => {
  let fx: QueueFixture;
  beforeAll(async () => {
    fx = await makeRuntime();
  });
  afterAll(() => fx.cleanup());

  /** `mib` MiB of CRLF lines, in 64 KiB chunks (fresh buffers: the draft keeps them until written) */
  function chunks(mib: number): Buffer[] {
    const all = Buffer.alloc(mib * 1024 * 1024);
    for (let i = 0; i < all.length; i++) all[i] = i % 78 === 76 ? 0x0d : i % 78 === 77 ? 0x0a : 0x41 + (i % 26);
    const out: Buffer[] = [];
    for (let off = 0; off < all.length; off += 65536) out.push(Buffer.from(all.subarray(off, off + 65536)));
    return out;
  }

  it('commits an entry with exactly the bytes written, readable and recovered like any other', async () => {
    const q = createMailQueue(fx.rt);
    const id = newQueueId();
    const head = message('draft');
    const parts = [head, ...chunks(9)];
    const d = q.draft!(envelope('a@example.org', ['b@example.net', 'c@example.net']), id);
    for (const p of parts) d.write(p);
    expect(await d.commit()).toBe(id);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const want = Buffer.concat(parts);
    expect(spool.readDataSync(id)!.equals(want)).toBe(true);
    const entry = spool.readSync(id);
    expect(entry?.size).toBe(want.length);
    expect(entry?.recipients.map((r) => r.address)).toEqual(['b@example.net', 'c@example.net']);
    expect((await spool.readMessage(id))?.data.equals(want)).toBe(true);
    // the envelope line is padded with spaces up to its reserve, then the newline
    const file = fs.readFileSync(spool.msgPath(id));
    const line = file.subarray(0, file.indexOf(0x0a)).toString('latin1');
    expect(line).toMatch(/^\{.*\} +$/);
    expect(fs.readdirSync(spool.tmpDir)).toEqual([]);
    expect(fs.statSync(spool.msgPath(id)).mode & 0o777).toBe(0o600);
    await q.stop(0);
    // a new queue (start-up) finds it whole
    const q2 = createMailQueue(fx.rt);
    expect(q2.stats().depth).toBe(1);
    expect(fs.existsSync(spool.msgPath(id))).toBe(true);
    await q2.stop(0);
    await spool.remove(id, false);
  });

  it('abort leaves nothing behind, before or after its file is open', async () => {
    const q = createMailQueue(fx.rt);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const early = q.draft!(envelope('a@example.org', ['b@example.net']), newQueueId());
    early.abort();
    const late = q.draft!(envelope('a@example.org', ['b@example.net']), newQueueId());
    for (const p of chunks(5)) late.write(p);
    await new Promise((r) => setTimeout(r, 20));
    late.abort();
    await waitFor(() => fs.readdirSync(spool.tmpDir).length === 0, 10_000);
    expect(fs.readdirSync(spool.msgDir)).toEqual([]);
    await expect(late.commit()).rejects.toThrow();
    expect(fs.readdirSync(spool.msgDir)).toEqual([]);
    await q.stop(0);
  });

  it('never replaces an existing entry', async () => {
    const q = createMailQueue(fx.rt);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const id = newQueueId();
    fs.writeFileSync(spool.msgPath(id), 'someone else\n');
    const d = q.draft!(envelope('a@example.org', ['b@example.net']), id);
    d.write(message('clash'));
    await expect(d.commit()).rejects.toThrow(/EEXIST/);
    expect(fs.readFileSync(spool.msgPath(id), 'utf8')).toBe('someone else\n');
    await waitFor(() => fs.readdirSync(spool.tmpDir).length === 0, 10_000);
    fs.unlinkSync(spool.msgPath(id));
    await q.stop(0);
  });

  it('pushes back once 8 MiB wait for the disk, and calls onRoom when there is room', async () => {
    const q = createMailQueue(fx.rt);
    const d = q.draft!(envelope('a@example.org', ['b@example.net']), newQueueId());
    let answer = true;
    for (const p of chunks(12)) answer = d.write(p) && answer;
    expect(answer).toBe(false);
    let room = false;
    d.onRoom(() => (room = true));
    await waitFor(() => room, 10_000);
    const id = await d.commit();
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    expect(spool.readSync(id)?.size).toBe(12 * 1024 * 1024);
    await q.stop(0);
    await spool.remove(id, false);
  });

  it('an entry linked before its envelope line was written (a crash) is quarantined, never delivered', async () => {
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const id = newQueueId();
    // what a crash between link and the envelope line's write leaves: a reserved line of zeros, then content
    fs.writeFileSync(spool.msgPath(id), Buffer.concat([Buffer.alloc(300), message('half')]));
    const q = createMailQueue(fx.rt);
    expect(q.stats().depth).toBe(0);
    expect(fs.existsSync(spool.msgPath(id))).toBe(false);
    await q.stop(0);
  });
});
