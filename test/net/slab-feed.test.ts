// SlabFeed (src/net/slab-feed.ts): small chunks copied into 1 MiB slabs, written in order and exactly; the
// source is paused while four slabs wait for the disk and resumed once one is back; a failing sink fails the
// writes (the upload's error path answers 451/426, never 226) and its slabs are not reused.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SLAB, SlabFeed } from '../../src/net/slab-feed.js';

/** A sink that holds each write's callback until release() (a slow disk); it copies what it got. */
function slowSink(fail = false) {
  const got: Buffer[] = [];
  const held: ((err?: Error | null) => void)[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _e, cb) {
      got.push(Buffer.from(chunk));
      held.push(fail ? () => cb(new Error('EIO: write failed')) : cb);
    },
  });
  sink.on('error', () => undefined);
  return { sink, got, release: () => held.shift()?.() , held };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SlabFeed', () => {
  it('writes the bytes in order, in slab-sized writes, the tail on flush', async () => {
    const s = slowSink();
    let rooms = 0;
    const feed = new SlabFeed(s.sink, () => rooms++);
    const data = Buffer.alloc(2 * SLAB + 1000);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i >>> 0, i);
    for (let off = 0; off < data.length; off += 65536) expect(feed.push(data.subarray(off, off + 65536))).toBe(true);
    feed.flush();
    // Writable serialises writes: release them one by one
    for (let i = 0; i < 10 && s.held.length + s.got.length < 3; i++) await tick();
    while (s.held.length > 0) {
      s.release();
      await tick();
    }
    expect(s.got.map((b) => b.length)).toEqual([SLAB, SLAB, 1000]);
    expect(Buffer.concat(s.got).equals(data)).toBe(true);
    feed.close();
    expect(rooms).toBe(0);
  });

  it('asks the source to pause while four slabs wait for the disk, and calls onRoom once one is back', async () => {
    const s = slowSink();
    let rooms = 0;
    const feed = new SlabFeed(s.sink, () => rooms++);
    const chunk = Buffer.alloc(SLAB / 2, 7);
    const answers: boolean[] = [];
    for (let i = 0; i < 8; i++) answers.push(feed.push(chunk));
    expect(answers).toEqual([true, true, true, true, true, true, true, false]);
    await tick();
    s.release();
    await tick();
    await tick();
    expect(rooms).toBe(1);
    while (s.held.length > 0) {
      s.release();
      await tick();
    }
    expect(Buffer.concat(s.got).equals(Buffer.alloc(4 * SLAB, 7))).toBe(true);
    feed.close();
  });

  it('a failing sink: the sink errors (the upload fails), no onRoom after close, nothing more is written', async () => {
    const s = slowSink(true);
    let rooms = 0;
    const feed = new SlabFeed(s.sink, () => rooms++);
    const errored = new Promise<Error>((r) => s.sink.once('error', r));
    feed.push(Buffer.alloc(SLAB, 1));
    await tick();
    s.release();
    expect((await errored).message).toMatch(/EIO/);
    feed.close();
    const before = s.got.length;
    feed.push(Buffer.alloc(SLAB, 2));
    feed.flush();
    await tick();
    expect(s.got.length).toBe(before);
    expect(rooms).toBe(0);
  });
});
