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
import type { Writable } from 'node:stream';

export const SLAB = 1024 * 1024;
/** slabs one feed may have in flight: the buffering between the socket and the disk is at most this × SLAB */
const PER_FEED = 4;
/** spare slabs kept for the next feeds (all feeds of the process together) */
const POOL_MAX = 16;
const pool: Buffer[] = [];

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

  /** Write what the current slab holds (before ending the sink). */
  flush(): void {
    if (this.slab && this.used > 0) this.writeSlab();
  }

  /** No more writes; slabs in flight go back to the pool when their writes finish. */
  close(): void {
    this.closed = true;
    // the current slab was never handed to the sink: free to reuse
    if (this.slab && pool.length < POOL_MAX) pool.push(this.slab);
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
