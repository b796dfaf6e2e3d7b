/*
 * A big download (RETR) from an open file descriptor to the data socket at the machine's speed. Node has no
 * sendfile, so every byte is copied twice (page cache → buffer → socket); what this file saves is the rest:
 * fs.ReadStream allocates a fresh 64–256 KiB ArrayBuffer per read, and 200 MiB of those drive V8 into major
 * garbage collections (external-memory pressure: a third of the server's CPU in a 200 MiB RETR, perf) and one
 * thread-pool round trip plus one socket write per small chunk. Here two CHUNK buffers from a small shared
 * pool take turns: the next chunk is read (thread pool) while the previous one is written to the socket, and
 * a buffer is read into again only after the socket's write callback said the kernel has taken all of it.
 *
 * FileSource is still a Readable (bytesRead, destroy(), pipe() for any other consumer: it then reads into
 * fresh buffers, as before); the FTP session calls `sendTo(socket)` instead of piping.
 */
import fs from 'node:fs';
import type net from 'node:net';
import { Readable } from 'node:stream';

/** read / write size of a big download */
export const CHUNK = 1024 * 1024;
/** spare CHUNK buffers kept between downloads (the rest are left to the garbage collector) */
const POOL_MAX = 8;
const pool: Buffer[] = [];

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function give(b: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(b);
}

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

export class FileSource extends Readable {
  bytesRead = 0;
  private pos: number;
  private readonly end: number;
  private fd: number | null;
  /** a read in flight (its descriptor is closed only after it settled) */
  private inflight: Promise<unknown> | null = null;
  private sending = false;

  /** `fd` is owned from here on (closed when done or destroyed); bytes [start, end) are sent. */
  constructor(fd: number, start: number, end: number) {
    super({ highWaterMark: CHUNK });
    this.fd = fd;
    this.pos = start;
    this.end = end;
  }

  /** Plain Readable use (any consumer other than sendTo): fresh buffers, one read at a time. */
  override _read(): void {
    const fd = this.fd;
    const left = this.end - this.pos;
    if (fd === null || left <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
    const p = readAt(fd, buf, buf.length, this.pos);
    this.inflight = p;
    p.then(
      (n) => {
        this.inflight = null;
        if (this.destroyed) return;
        this.pos += n;
        this.bytesRead += n;
        if (n === 0) this.push(null);
        else this.push(n === buf.length ? buf : buf.subarray(0, n));
      },
      (err: Error) => {
        this.inflight = null;
        this.destroy(err);
      },
    );
  }

  /**
   * Write the whole range to `socket` and end it; resolves once the socket has taken every byte (its
   * 'finish'), rejects when the socket fails or closes first, or a read fails. The descriptor is closed
   * either way. (A file that shrank meanwhile ends early, as fs.ReadStream did.)
   */
  async sendTo(socket: net.Socket): Promise<void> {
    const fd = this.fd;
    if (fd === null || this.sending) throw new Error('file source already used');
    this.sending = true;
    const bufs = [take(), take()] as const;
    const state: { broken: Error | null } = { broken: null };
    const onClose = () => (state.broken ??= new Error('data connection closed'));
    const onError = (err: Error) => (state.broken ??= err);
    const broken = () => state.broken;
    socket.on('close', onClose);
    socket.on('error', onError);
    let reading: Promise<number> | null = null;
    try {
      let i = 0;
      const next = (k: number): Promise<number> | null => {
        const left = this.end - this.pos;
        if (left <= 0) return null;
        const p = readAt(fd, bufs[k]!, Math.min(CHUNK, left), this.pos);
        this.inflight = p;
        return p;
      };
      reading = next(0);
      while (reading) {
        const n = await reading;
        reading = null;
        if (n === 0 || state.broken || this.destroyed) break;
        this.pos += n;
        this.bytesRead += n;
        reading = next(1 - i);
        await write(socket, bufs[i]!.subarray(0, n), broken);
        i = 1 - i;
      }
      if (state.broken) throw state.broken;
      if (this.destroyed) throw new Error('download aborted');
      await finish(socket, broken);
    } finally {
      socket.removeListener('close', onClose);
      socket.removeListener('error', onError);
      // a read still running into one of the buffers finishes before they are reused or the descriptor closed
      if (reading) await reading.catch(() => undefined);
      this.inflight = null;
      give(bufs[0]);
      give(bufs[1]);
      this.closeFd();
      this.push(null);
    }
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.closeSync(fd);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.sending) {
      // sendTo closes the descriptor itself, after its read in flight
      cb(err);
      return;
    }
    const p = this.inflight;
    if (!p) {
      this.closeFd();
      cb(err);
      return;
    }
    p.then(
      () => (this.closeFd(), cb(err)),
      () => (this.closeFd(), cb(err)),
    );
  }
}

/** socket.write with its callback as a promise; rejects at once when the connection broke meanwhile. */
function write(socket: net.Socket, chunk: Buffer, broken: () => Error | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const gone = broken();
    if (gone || socket.destroyed) {
      reject(gone ?? new Error('data connection closed'));
      return;
    }
    let settled = false;
    const done = (err?: Error | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    // a destroyed socket does not always call back a write in flight: its 'close' settles it
    const onClose = () => done(broken() ?? new Error('data connection closed'));
    socket.once('close', onClose);
    socket.write(chunk, done);
  });
}

/** end() the socket and wait for its 'finish' (every byte handed to the kernel, FIN queued). */
function finish(socket: net.Socket, broken: () => Error | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const gone = broken();
    if (gone || socket.destroyed) {
      reject(gone ?? new Error('data connection closed'));
      return;
    }
    const onClose = () => {
      socket.removeListener('finish', onFinish);
      reject(broken() ?? new Error('data connection closed'));
    };
    const onFinish = () => {
      socket.removeListener('close', onClose);
      resolve();
    };
    socket.once('finish', onFinish);
    socket.once('close', onClose);
    socket.end();
  });
}
