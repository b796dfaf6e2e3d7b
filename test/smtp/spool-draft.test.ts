/*
 * The queue's draft (a large DATA written to the spool as it arrives, src/smtp/spool-draft.ts): a committed
 * draft is an entry like any other (same bytes, readable envelope line although padded, recovered by a new
 * queue at start-up, not quarantined); an aborted one leaves nothing in msg/ or tmp/; a commit never replaces an
 * existing entry; and a draft linked but never completed (a crash before its envelope line) is never delivered.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailQueue } from '../../src/smtp/queue.js';
import { envelopeLine, MAX_HEADER, newQueueId, Spool, type QueueEntry } from '../../src/smtp/spool.js';
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

  it('an envelope of many long recipients (a reserve of ~200 KiB, beyond one read of the header) fits its padded line and reads back', async () => {
    const q = createMailQueue(fx.rt);
    const id = newQueueId();
    // 1000 recipients of 64-octet local parts at 180-octet domains, JSON-escaped characters in the HELO
    const rcpts = Array.from({ length: 1000 }, (_, i) => `${`r${i}-`.padEnd(64, 'x')}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(55)}.example`);
    const env = { ...envelope('a@example.org', rcpts), helo: '"quoted\\helo"\u0001' };
    const d = q.draft!(env, id);
    const parts = [message('many'), ...chunks(2)];
    for (const p of parts) d.write(p);
    expect(await d.commit()).toBe(id);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const file = fs.readFileSync(spool.msgPath(id));
    expect(file.indexOf(0x0a)).toBeGreaterThan(128 * 1024);
    const entry = spool.readSync(id);
    expect(entry?.recipients).toHaveLength(1000);
    expect(entry?.recipients[999]?.address).toBe(rcpts[999]);
    expect(entry?.helo).toBe(env.helo);
    expect(spool.readDataSync(id)!.equals(Buffer.concat(parts))).toBe(true);
    await q.stop(0);
    const q2 = createMailQueue(fx.rt);
    expect(q2.stats().depth).toBe(1);
    await q2.stop(0);
    await spool.remove(id, false);
  });

  it('the longest envelope smtp.limits.recipients allows (1,000 recipients, every field at its longest and JSON-escaped) is one the spool reads back', () => {
    // 254-octet addresses that are mostly backslashes (each doubled in JSON), and a last error of 580 quotes
    const worst = `"${'\\'.repeat(240)}"@${'d'.repeat(10)}`;
    const recipient = { address: worst, local: worst, domain: 'd'.repeat(254), state: 'failed' as const, attempts: 99, lastError: '"'.repeat(580), notified: true, status: '5.1.1' };
    const entry: QueueEntry = {
      version: 1, id: newQueueId(), createdAt: Date.now(), sender: worst, recipients: Array.from({ length: 1000 }, () => recipient), clientIp: '::ffff:127.0.0.1',
      helo: '\\'.repeat(512), user: 'u'.repeat(256), tls: true, session: 's'.repeat(64), size: Number.MAX_SAFE_INTEGER, attempts: 99,
      nextAttemptAt: Date.now(), lastAttemptAt: Date.now(), lastError: '"'.repeat(580), bounces: 99,
    };
    expect(Buffer.byteLength(envelopeLine(entry))).toBeLessThanOrEqual(MAX_HEADER);
    // and a longer one is refused before anything is written, never acknowledged and then lost at start-up
    expect(() => envelopeLine({ ...entry, recipients: Array.from({ length: 2000 }, () => recipient) })).toThrow(/longer than the \d+ the spool reads back/);
  });

  it('an envelope too long to read back is refused by enqueue and by draft, and nothing reaches msg/', async () => {
    const q = createMailQueue(fx.rt);
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const before = fs.readdirSync(spool.msgDir).length;
    const rcpts = Array.from({ length: 9000 }, (_, i) => `${`r${i}-`.padEnd(64, 'x')}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(55)}.example`);
    await expect(q.enqueue(envelope('a@example.org', rcpts), message('huge'))).rejects.toThrow(/spool reads back/);
    expect(() => q.draft!(envelope('a@example.org', rcpts), newQueueId())).toThrow(/spool reads back/);
    expect(fs.readdirSync(spool.msgDir)).toHaveLength(before);
    expect(fs.readdirSync(spool.tmpDir)).toEqual([]);
    await q.stop(0);
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
