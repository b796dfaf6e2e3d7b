// SlabFeed (src/net/slab-feed.ts): small chunks copied into 1 MiB slabs, written in order and exactly; the
// source is paused while four slabs wait for the disk and resumed once one is back; a failing sink fails the
// writes (the upload's error path answers 451/426, never 226) and its slabs are not reused.
import net from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SLAB, SlabFeed, attachFeed, readableIntoSlabs } from '../../src/net/slab-feed.js';

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

describe('readableIntoSlabs', () => {
  it('an accepted socket reads straight into the slabs: every byte, in order, through a slow disk (pause/resume)', async () => {
    const data = Buffer.alloc(9 * SLAB + 4321);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const got: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 1,
      // a slow disk: each write takes a few ms, so the feed fills and the socket is paused and resumed
      write: (chunk: Buffer, _e, cb) => {
        got.push(Buffer.from(chunk));
        setTimeout(cb, 3);
      },
    });
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const done = new Promise<{ attached: boolean; other: boolean }>((resolve) => {
      server.once('connection', (s0) => {
        const s = readableIntoSlabs(s0);
        const feed = new SlabFeed(sink, () => s.resume());
        const attached = attachFeed(s, feed);
        const other = attachFeed(s0, feed); // the old object is not a slab reader
        s.once('end', () => {
          feed.flush();
          sink.end(() => {
            feed.close();
            s.destroy();
            resolve({ attached, other });
          });
        });
        s.resume();
      });
    });
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    client.end(data);
    const r = await done;
    server.close();
    expect(r).toEqual({ attached: true, other: false });
    expect(Buffer.concat(got).equals(data)).toBe(true);
    // slab-sized writes, not one per read (the last is the rest)
    expect(got.length).toBeLessThanOrEqual(Math.ceil(data.length / (SLAB - 65536)) + 1);
  });
});
