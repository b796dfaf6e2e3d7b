/*
 * Test tools for the SMTP listener: a raw line client (bind any loopback source address, pipeline, send
 * exact bytes, STARTTLS by hand), a real SMTP sink on smtp-server, and spool inspection. Every read is
 * bounded by a timeout so a broken server fails the test instead of hanging it.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { expect } from 'vitest';

export interface Reply {
  readonly code: number;
  readonly lines: string[];
  /** all lines joined by \n */
  readonly text: string;
}

export class RawSmtp {
  private buffer = '';
  private waiters: (() => void)[] = [];
  private closedFlag = false;
  socket: net.Socket | tls.TLSSocket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  private attach(socket: net.Socket | tls.TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.wake();
    });
    socket.on('error', () => {
      this.closedFlag = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(port: number, opts: { localAddress?: string; host?: string; tls?: boolean } = {}): Promise<RawSmtp> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host, port, localAddress: opts.localAddress });
      const socket = opts.tls ? tls.connect({ socket: tcp, rejectUnauthorized: false, servername: 'localhost' }) : tcp;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('connect timeout'));
      }, 5000);
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve(new RawSmtp(socket));
      });
      socket.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Whatever was received and not consumed yet. */
  pending(): string {
    return this.buffer;
  }

  /** Read one (possibly multi-line) reply. */
  async read(timeoutMs = 5000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.take();
      if (reply) return reply;
      if (this.closedFlag) throw new Error(`connection closed while waiting for a reply (buffer: ${JSON.stringify(this.buffer)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for a reply (buffer: ${JSON.stringify(this.buffer)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private take(): Reply | null {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = this.buffer.indexOf('\r\n', pos);
      if (nl < 0) return null;
      const line = this.buffer.slice(pos, nl);
      pos = nl + 2;
      lines.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        this.buffer = this.buffer.slice(pos);
        return { code: Number(line.slice(0, 3)), lines, text: lines.join('\n') };
      }
      if (!/^\d{3}-/.test(line)) {
        this.buffer = this.buffer.slice(pos);
        return { code: 0, lines, text: lines.join('\n') };
      }
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  /** Wait until the server closes the connection (bounded). */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closedFlag && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.closedFlag;
  }

  /** After a 220 to STARTTLS: run the TLS handshake on the same socket. */
  async upgrade(): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('TLS handshake timeout')), 5000);
      secure.once('secureConnect', () => {
        clearTimeout(t);
        resolve();
      });
      secure.once('error', (e: Error) => {
        clearTimeout(t);
        reject(e);
      });
    });
    this.buffer = '';
    this.socket = secure;
    this.attach(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** EHLO and return the capability lines (without the code). */
export async function ehlo(c: RawSmtp, name = 'client.test'): Promise<string[]> {
  const r = await c.cmd(`EHLO ${name}`);
  if (r.code !== 250) throw new Error(`EHLO failed: ${r.text}`);
  return r.lines.map((l) => l.slice(4));
}

/**
 * The opening of one transaction on a fresh connection: the greeting, EHLO, MAIL FROM, one RCPT TO, DATA, each
 * answered as a willing server answers (220, 250, 250, 250, 354); a test then writes the message.
 */
export async function openData(c: RawSmtp, from: string, to: string): Promise<void> {
  expect((await c.read()).code).toBe(220);
  await ehlo(c);
  expect((await c.cmd(`MAIL FROM:<${from}>`)).code).toBe(250);
  expect((await c.cmd(`RCPT TO:<${to}>`)).code).toBe(250);
  expect((await c.cmd('DATA')).code).toBe(354);
}

// The SMTP sink (a real smtp-server that keeps each message's bytes) is the queue tests' one.
export { startSink, type Sink, type SinkMessage } from './queue-fixture.js';

/** Find a free loopback port (for configs that must name one before starting). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/**
 * Queue entries on disk: files in spool/msg (the entry) and spool/env (its delivery state). The crash test
 * asserts this sees an acknowledged message, so a change of spool layout cannot make "nothing queued" vacuous.
 */
export function spoolEntries(stateDir: string): string[] {
  const env = path.join(stateDir, 'spool', 'env');
  const msg = path.join(stateDir, 'spool', 'msg');
  const list = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : []);
  return [...list(env), ...list(msg)];
}

/** Messages delivered to a local Maildir (new/ and cur/). */
export function maildirMessages(stateDir: string, user: string): Buffer[] {
  const base = path.join(stateDir, 'mail', user);
  const out: Buffer[] = [];
  for (const sub of ['new', 'cur']) {
    const d = path.join(base, sub);
    if (!fs.existsSync(d)) continue;
    for (const n of fs.readdirSync(d).sort()) out.push(fs.readFileSync(path.join(d, n)));
  }
  return out;
}

export async function waitUntil(pred: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return pred();
}
