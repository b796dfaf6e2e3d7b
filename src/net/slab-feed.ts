/*
 * A socket's small chunks (64 KiB plain reads, 16 KiB TLS records) gathered into large reused slabs before they
 * are written to a file. Every chunk a socket emits is a fresh ArrayBuffer; the ones still queued for the disk
 * when the young generation is collected (a slow disk, a busy machine) are promoted, and 200 MiB of promoted
 * buffers start V8 major collections: 59 mark-compacts in 8 × 200 MiB STOR under load (--trace-gc), ~40 % of
 * the server's CPU (perf: concurrent marking threads). Copied into a slab at once, a chunk dies young; the
 * copy (a memcpy) costs far less than the collections did, and the disk gets SLAB-sized writes.
 *
 * A slab is reused only after its write's callback (the bytes are in the file). Backpressure: when PER_FEED
 * slabs are waiting for the disk, push() answers false and `onRoom` is called once one is back.
 */
import net from 'node:net';
import type { Writable } from 'node:stream';

export const SLAB = 1024 * 1024;
/** slabs one feed may have in flight: the buffering between the socket and the disk is at most this × SLAB */
const PER_FEED = 4;
/** spare slabs kept for the next feeds (all feeds of the process together) */
const POOL_MAX = 16;
const pool: Buffer[] = [];
/** a slab with less room than this is written out (read-into mode) */
const MIN_READ = 64 * 1024;
/** where a read lands when no slab is free or no feed is attached (copied or dropped at once) */
const scratch = Buffer.allocUnsafeSlow(MIN_READ);

/** What a socket made by readableIntoSlabs reads into: a feed, once one is attached. */
const readers = new WeakMap<net.Socket, { feed: SlabFeed | null }>();

/**
 * A plain TCP socket that reads straight into the slabs of the SlabFeed later attached to it (net.Socket's
 * `onread`: no ArrayBuffer per read, no copy; 4× less CPU than 'data' events plus a copy for 200 MiB in a local
 * test). Node creates accepted sockets itself, without `onread`, so the accepted socket's handle is moved to a
 * new Socket made with it (paused, half-open allowed, counted by its server as before); `fresh` must not have
 * read anything yet. Until a feed is attached, nothing is read (the socket stays paused; a resume without a feed
 * drops what arrives).
 */
export function readableIntoSlabs(fresh: net.Socket): net.Socket {
  const s0 = fresh as net.Socket & { _handle: unknown; _server?: unknown; server?: unknown };
  const slot: { feed: SlabFeed | null } = { feed: null };
  const socket = new net.Socket({
    handle: s0._handle,
    allowHalfOpen: true,
    pauseOnCreate: true,
    onread: {
      buffer: () => slot.feed?.next() ?? scratch,
      callback: (n: number, buf: Uint8Array) => (slot.feed ? slot.feed.landed(n, buf as Buffer) : true),
    },
  } as net.SocketConstructorOpts & { handle: unknown; pauseOnCreate: boolean }) as net.Socket & { _server?: unknown; server?: unknown };
  // the old object lets go of the handle; the new one takes its place in its server's connection count
  s0._handle = null;
  socket._server = s0._server;
  socket.server = s0.server;
  readers.set(socket, slot);
  return socket;
}

/** Attach `feed` to a socket made by readableIntoSlabs; false for any other socket (use 'data' + push then). */
export function attachFeed(socket: net.Socket, feed: SlabFeed): boolean {
  const slot = readers.get(socket);
  if (!slot) return false;
  slot.feed = feed;
  return true;
}

export class SlabFeed {
  private slab: Buffer | null = null;
  private used = 0;
  private inFlight = 0;
  private waiting = false;
  private closed = false;

  /** `onRoom`: called after push() answered false, once there is room again */
  constructor(
    private readonly sink: Writable,
    private readonly onRoom: () => void,
  ) {}

  /** Copy `chunk` in; full slabs are written to the sink. false: pause the source until onRoom. */
  push(chunk: Buffer): boolean {
    let off = 0;
    while (off < chunk.length) {
      if (!this.slab) {
        if (this.inFlight >= PER_FEED) {
          // the source did not pause in time: the rest goes as a private copy
          this.writeOut(Buffer.from(chunk.subarray(off)), null);
          break;
        }
        this.slab = pool.pop() ?? Buffer.allocUnsafeSlow(SLAB);
        this.used = 0;
      }
      const n = chunk.copy(this.slab, this.used, off);
      this.used += n;
      off += n;
      if (this.used === SLAB) this.writeSlab();
    }
    if (this.inFlight >= PER_FEED) {
      this.waiting = true;
      return false;
    }
    return true;
  }

  /**
   * Read-into mode (a socket made by `readableIntoSlabs`): the buffer the next socket read lands in, the free
   * part of the current slab, so that nothing is allocated or copied per read.
   */
  next(): Buffer {
    if (this.closed) return scratch;
    if (!this.slab) {
      if (this.inFlight >= PER_FEED) return scratch; // not expected: the socket is paused then
      this.slab = pool.pop() ?? Buffer.allocUnsafeSlow(SLAB);
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }

  /** A read of `n` bytes landed in `buf` (what next() gave, or another buffer: then copied). false: pause. */
  landed(n: number, buf: Buffer): boolean {
    if (this.closed) return true; // the upload is over: what still arrives is dropped
    if (this.slab && buf.buffer === this.slab.buffer && buf.byteOffset === this.slab.byteOffset + this.used) {
      this.used += n;
      if (SLAB - this.used < MIN_READ) this.writeSlab();
      if (this.inFlight >= PER_FEED) {
        this.waiting = true;
        return false;
      }
      return true;
    }
    return this.push(buf.subarray(0, n));
  }

  /** Write what the current slab holds (before ending the sink). */
  flush(): void {
    if (this.slab && this.used > 0) this.writeSlab();
  }

  /** No more writes; slabs in flight go back to the pool when their writes finish. */
  close(): void {
    this.closed = true;
    // The current slab is not reused: a socket reading into it may still hold it as its next read's buffer.
    this.slab = null;
  }

  private writeSlab(): void {
    const slab = this.slab!;
    const used = this.used;
    this.slab = null;
    this.used = 0;
    this.writeOut(slab.subarray(0, used), slab);
  }

  private writeOut(data: Buffer, slab: Buffer | null): void {
    if (this.closed) return;
    this.inFlight++;
    this.sink.write(data, (err) => {
      this.inFlight--;
      // after a failed write the slab is not reused (a write of the failing sink might still hold it)
      if (!err && slab && pool.length < POOL_MAX) pool.push(slab);
      if (this.waiting && this.inFlight < PER_FEED) {
        this.waiting = false;
        if (!this.closed) this.onRoom();
      }
    });
  }
}
