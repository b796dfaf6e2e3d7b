/*
 * Replies to pipelined commands leave in one write (the listener corks the socket for the rest of the tick):
 * MAIL, RCPT and DATA sent in one packet are answered 250, 250, 354 in order with one write of the server's
 * socket; a refusal in the middle of a batch keeps its place.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

/** A raw socket that records every chunk as it arrives. */
async function open(port: number): Promise<{ sock: net.Socket; chunks: string[]; until(re: RegExp): Promise<string> }> {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.setEncoding('latin1');
  const chunks: string[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (d: string) => {
    chunks.push(d);
    wake?.();
  });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const until = async (re: RegExp): Promise<string> => {
    const deadline = Date.now() + 5000;
    while (!re.test(chunks.join(''))) {
      if (Date.now() > deadline) throw new Error(`timeout, got ${JSON.stringify(chunks.join(''))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return chunks.join('');
  };
  return { sock, chunks, until };
}

type WriteFn = (this: net.Socket, ...args: unknown[]) => unknown;

/** Count the writes the server's sockets (local port `port`) hand to the OS: one per _write or _writev call. */
function countServerWrites(port: () => number): { count: () => number; restore: () => void } {
  const proto = net.Socket.prototype as unknown as { _write: WriteFn; _writev: WriteFn };
  const orig = { _write: proto._write, _writev: proto._writev };
  let n = 0;
  for (const k of ['_write', '_writev'] as const) {
    proto[k] = function (this: net.Socket, ...args: unknown[]) {
      if (this.localPort === port()) n++;
      return orig[k].apply(this, args);
    };
  }
  return {
    count: () => n,
    restore: () => {
      proto._write = orig._write;
      proto._writev = orig._writev;
    },
  };
}

describe('smtp reply batching', () => {
  let t: TestGatehouse;
  let spy: ReturnType<typeof countServerWrites> | null = null;
  afterEach(() => {
    spy?.restore();
    spy = null;
  });
  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'] } }, [{ name: 'alice', password: 'correct-horse-battery' }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers pipelined MAIL, RCPT, DATA with 250, 250, 354 in one packet, then queues the message', async () => {
    const c = await open(t.port('smtp'));
    try {
      await c.until(/^220 /m);
      c.sock.write('EHLO client.test\r\n');
      await c.until(/^250 /m);
      const before = c.chunks.length;
      spy = countServerWrites(() => t.port('smtp'));
      c.sock.write('MAIL FROM:<x@example.org>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n');
      await c.until(/^354 /m);
      expect(spy.count()).toBe(1); // three replies, one write
      const replies = c.chunks.slice(before).join('');
      expect(replies.split('\r\n').filter(Boolean).map((l) => l.slice(0, 3))).toEqual(['250', '250', '354']);
      c.sock.write('Subject: batch\r\n\r\nhello\r\n.\r\nQUIT\r\n');
      const all = await c.until(/^221 /m);
      expect(all).toMatch(/^250 .*queued as/m);
    } finally {
      c.sock.destroy();
    }
  });

  it('keeps the order of a refusal in the middle of a batch', async () => {
    const c = await open(t.port('smtp'));
    try {
      await c.until(/^220 /m);
      c.sock.write('EHLO client.test\r\n');
      await c.until(/^250 /m);
      const before = c.chunks.length;
      c.sock.write('MAIL FROM:<x@example.org>\r\nRCPT TO:<nobody@local.test>\r\nRCPT TO:<alice@local.test>\r\nRSET\r\n');
      await c.until(/^250 .*\r\n(?:.*\r\n)*250 .*\r\n(?:.*\r\n)*250 /m);
      const lines = c.chunks.slice(before).join('').split('\r\n').filter(Boolean).map((l) => l.slice(0, 3));
      expect(lines).toEqual(['250', '550', '250', '250']);
    } finally {
      c.sock.destroy();
    }
  });
});
