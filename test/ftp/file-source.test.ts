// FileSource (src/ftp/file-source.ts): a big RETR through reused buffers. Whole and exact over a real loopback
// socket, the descriptor closed in every outcome, and a broken connection or a failing read rejects (→ 426,
// never 226).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK, FileSource } from '../../src/ftp/file-source.js';

let dir: string;
let file: string;
const data = Buffer.alloc(3 * CHUNK + 12_344);
for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-file-source-'));
  file = path.join(dir, 'big.bin');
  fs.writeFileSync(file, data);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const isOpen = (fd: number) => {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

/** A loopback pair: `server` is the side FileSource writes to; `received` resolves with what the client got. */
async function pair(onClient?: (c: net.Socket) => void): Promise<{ server: net.Socket; received: Promise<Buffer>; close: () => void }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  const parts: Buffer[] = [];
  const received = new Promise<Buffer>((resolve) => {
    client.on('data', (d: Buffer) => parts.push(d));
    client.on('close', () => resolve(Buffer.concat(parts)));
  });
  const server = await accepted;
  server.on('error', () => undefined);
  onClient?.(client);
  return {
    server,
    received,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

describe('FileSource', () => {
  it('sends the whole range, exactly, ends the socket and closes the descriptor', async () => {
    const p = await pair();
    const fd = fs.openSync(file, 'r');
    const src = new FileSource(fd, 0, data.length);
    await src.sendTo(p.server);
    expect(src.bytesRead).toBe(data.length);
    expect(isOpen(fd)).toBe(false);
    expect((await p.received).equals(data)).toBe(true);
    p.close();
  });

  it('a REST offset sends the tail only', async () => {
    const p = await pair();
    const from = CHUNK + 77;
    const src = new FileSource(fs.openSync(file, 'r'), from, data.length);
    await src.sendTo(p.server);
    expect((await p.received).equals(data.subarray(from))).toBe(true);
    p.close();
  });

  it('rejects when the client goes away mid-transfer, and still closes the descriptor', async () => {
    // the client reads the first bytes, then resets: the sender's writes fail or its socket closes
    const p = await pair((c) => c.once('data', () => c.resetAndDestroy()));
    const big = path.join(dir, 'huge.bin');
    fs.writeFileSync(big, Buffer.alloc(64 * CHUNK, 1));
    const fd = fs.openSync(big, 'r');
    const src = new FileSource(fd, 0, 64 * CHUNK);
    await expect(src.sendTo(p.server)).rejects.toThrow();
    expect(src.bytesRead).toBeLessThan(64 * CHUNK);
    expect(isOpen(fd)).toBe(false);
    p.close();
  });

  it('a read that fails rejects (no clean end for the client) and closes the descriptor', async () => {
    const p = await pair();
    const fd = fs.openSync(dir, 'r'); // a folder: read() fails with EISDIR
    const src = new FileSource(fd, 0, CHUNK);
    await expect(src.sendTo(p.server)).rejects.toThrow(/EISDIR/);
    expect(isOpen(fd)).toBe(false);
    p.close();
  });

  it('still works as a plain Readable (pipe), and destroy() closes an unused descriptor', async () => {
    const parts: Buffer[] = [];
    const fd = fs.openSync(file, 'r');
    const src = new FileSource(fd, 5, data.length);
    const closed = new Promise((r) => src.once('close', r));
    await new Promise<void>((resolve, reject) => {
      src
        .pipe(new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) }))
        .on('finish', () => resolve())
        .on('error', reject);
    });
    expect(Buffer.concat(parts).equals(data.subarray(5))).toBe(true);
    await closed;
    expect(isOpen(fd)).toBe(false);

    const fd2 = fs.openSync(file, 'r');
    const unused = new FileSource(fd2, 0, data.length);
    unused.destroy();
    await new Promise((r) => unused.once('close', r));
    expect(isOpen(fd2)).toBe(false);
  });
});
