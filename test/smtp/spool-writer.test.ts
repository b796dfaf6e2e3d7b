/*
 * The spool's writer thread (Spool.create): many concurrent creates all land complete in msg/ with the same
 * bytes and header as the reference steps (createInline), nothing is left in tmp/, an existing entry is never
 * overwritten (the create fails and the old bytes stay), and close() stops the thread while a later create
 * starts a new one.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { entryFromEnvelope } from '../../src/smtp/queue.js';
import { newQueueId, Spool } from '../../src/smtp/spool.js';
import { envelope, message } from './queue-fixture.js';

const dirs: string[] = [];
const spools: Spool[] = [];
afterEach(async () => {
  for (const s of spools.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function spool(): Spool {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-writer-'));
  dirs.push(dir);
  const s = new Spool(path.join(dir, 'spool'));
  s.ensure();
  spools.push(s);
  return s;
}

describe('spool writer thread', () => {
  it('stores concurrent creates completely, byte for byte as the inline steps do', async () => {
    const s = spool();
    const env = envelope('a@example.org', ['b@example.net']);
    const items = Array.from({ length: 50 }, (_, i) => {
      const id = newQueueId();
      const data = message(`writer ${i}`, `${'x'.repeat(i * 10)}\r\n`);
      return { id, entry: entryFromEnvelope(id, env, data.length), data };
    });
    await Promise.all(items.map((it) => s.create(it.entry, it.data)));
    const ref = newQueueId();
    const refData = message('reference');
    await s.createInline(entryFromEnvelope(ref, env, refData.length), refData);
    for (const it of items) {
      expect(s.readDataSync(it.id)!.equals(it.data)).toBe(true);
      expect(s.readSync(it.id)).toEqual(it.entry);
      expect(fs.statSync(s.msgPath(it.id)).mode & 0o777).toBe(0o600);
    }
    const header = (id: string) => fs.readFileSync(s.msgPath(id), 'utf8').split('\n', 1)[0]!;
    expect(JSON.parse(header(items[0]!.id))).toEqual(items[0]!.entry);
    expect(Object.keys(JSON.parse(header(items[0]!.id)) as object)).toEqual(Object.keys(JSON.parse(header(ref)) as object));
    expect(fs.readdirSync(s.tmpDir)).toEqual([]);
    expect(s.idsSync()).toHaveLength(51);
  });

  it('never overwrites an existing entry', async () => {
    const s = spool();
    const id = newQueueId();
    const entry = entryFromEnvelope(id, envelope('a@example.org', ['b@example.net']), message('first').length);
    await s.create(entry, message('first'));
    await expect(s.create(entry, message('second'))).rejects.toThrow(/EEXIST|exists/);
    await expect(s.createInline(entry, message('third'))).rejects.toThrow(/EEXIST|exists/);
    expect(s.readDataSync(id)!.equals(message('first'))).toBe(true);
    expect(s.readSync(id)).toEqual(entry);
    expect(fs.readdirSync(s.tmpDir)).toEqual([]);
  });

  it("moves a large message to the thread without a copy (the caller's buffer is emptied), copies a slice of a pool", async () => {
    const s = spool();
    const env = envelope('a@example.org', ['b@example.net']);
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 0x41);
    const expected = Buffer.from(big);
    const id = newQueueId();
    await s.create(entryFromEnvelope(id, env, big.length), big, true);
    expect(big.length).toBe(0); // moved, not copied
    expect(s.readDataSync(id)!.equals(expected)).toBe(true);
    // a view onto part of a larger buffer is never moved (that would take the rest away from its owner)
    const pool = Buffer.alloc(8192, 0x42);
    const part = pool.subarray(100, 4100);
    const id2 = newQueueId();
    await s.create(entryFromEnvelope(id2, env, part.length), part, true);
    expect(part.length).toBe(4000);
    expect(pool.length).toBe(8192);
    expect(s.readDataSync(id2)!.equals(Buffer.alloc(4000, 0x42))).toBe(true);
  });

  it('a moved message whose create fails (the name exists) is refused and the old entry stays', async () => {
    const s = spool();
    const env = envelope('a@example.org', ['b@example.net']);
    const id = newQueueId();
    const entry = entryFromEnvelope(id, env, message('first').length);
    await s.create(entry, message('first'));
    await expect(s.create(entry, Buffer.alloc(1024 * 1024, 0x43), true)).rejects.toThrow(/EEXIST|exists/);
    expect(s.readDataSync(id)!.equals(message('first'))).toBe(true);
    expect(fs.readdirSync(s.tmpDir)).toEqual([]);
  });

  it('starts again after close', async () => {
    const s = spool();
    const env = envelope('a@example.org', ['b@example.net']);
    const a = newQueueId();
    await s.create(entryFromEnvelope(a, env, message('before').length), message('before'));
    await s.close();
    const b = newQueueId();
    await s.create(entryFromEnvelope(b, env, message('after').length), message('after'));
    expect(s.idsSync().sort()).toEqual([a, b].sort());
  });

  it('closes what it opened when the thread stops (no descriptor left behind per restart)', async () => {
    const s = spool();
    const env = envelope('a@example.org', ['b@example.net']);
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    await s.create(entryFromEnvelope(newQueueId(), env, message('warm').length), message('warm'));
    await s.close();
    const before = fds();
    for (let i = 0; i < 5; i++) {
      await s.create(entryFromEnvelope(newQueueId(), env, message(`r${i}`).length), message(`r${i}`));
      await s.close();
    }
    await new Promise((r) => setTimeout(r, 50)); // the exit event of the last thread
    expect(fds()).toBeLessThanOrEqual(before);
    expect(s.idsSync()).toHaveLength(6);
  });
});
