/*
 * Test helpers for the NNTP suites: a raw line client (plain, STARTTLS, implicit TLS, chosen source address)
 * for protocol details no library client exposes, a Python nntplib runner, and the group config the
 * suites share.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';

export const GROUPS = [
  { name: 'office.general', read: ['authenticated'], post: ['authenticated'], description: 'Office talk' },
  { name: 'office.staff', read: ['alice'], post: ['alice'], description: 'Staff only' },
  { name: 'lab.announce', read: ['authenticated'], post: ['group:staff'], description: 'Announcements' },
];

export class RawClient {
  private buf = '';
  private pos = 0;
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(private sock: net.Socket) {
    this.listen(sock);
  }

  private listen(sock: net.Socket): void {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(port: number, opts: { tls?: boolean; localAddress?: string } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const sock = opts.tls
        ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) } as tls.ConnectionOptions, () => resolve(new RawClient(sock)))
        : net.connect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, () => resolve(new RawClient(sock)));
      sock.once('error', reject);
    });
  }

  /** Read one line (without CRLF); null when the server closed. Bounded by timeoutMs. */
  async line(timeoutMs = 5000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.buf.indexOf('\r\n', this.pos);
      if (at >= 0) {
        const l = this.buf.slice(this.pos, at);
        this.pos = at + 2;
        if (this.pos > 65536 || this.pos === this.buf.length) {
          this.buf = this.buf.slice(this.pos);
          this.pos = 0;
        }
        return l;
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for a line (have ${JSON.stringify(this.buf.slice(this.pos, this.pos + 200))})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Read a multi-line block after its status line, un-stuffed, without the terminating dot. */
  async block(): Promise<string[]> {
    const out: string[] = [];
    for (;;) {
      const l = await this.line();
      if (l === null) throw new Error('closed inside a multi-line block');
      if (l === '.') return out;
      out.push(l.startsWith('.') ? l.slice(1) : l);
    }
  }

  write(text: string): void {
    this.sock.write(text, 'latin1');
  }

  async cmd(text: string): Promise<string> {
    this.write(`${text}\r\n`);
    const l = await this.line();
    if (l === null) throw new Error(`closed after ${text}`);
    return l;
  }

  /** STARTTLS on this connection (after the 382 has been read). */
  async upgrade(): Promise<void> {
    const raw = this.sock;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    this.buf = '';
    this.pos = 0;
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: raw, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.sock = secure;
    this.listen(secure);
  }

  async login(user: string, password: string): Promise<string> {
    const r = await this.cmd(`AUTHINFO USER ${user}`);
    if (!r.startsWith('381')) return r;
    return this.cmd(`AUTHINFO PASS ${password}`);
  }

  /** POST an article given as lines (dot-stuffed here); returns [reply to POST, reply to the article]. */
  async post(lines: string[]): Promise<[string, string | null]> {
    const first = await this.cmd('POST');
    if (!first.startsWith('340')) return [first, null];
    this.write(lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join('') + '.\r\n');
    return [first, await this.line()];
  }

  close(): void {
    this.sock.destroy();
  }
}

/** A secure, logged-in raw client (STARTTLS on the plain port). */
export async function secureLogin(port: number, user: string, password: string): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.line();
  const r = await c.cmd('STARTTLS');
  if (!r.startsWith('382')) throw new Error(`STARTTLS: ${r}`);
  await c.upgrade();
  const l = await c.login(user, password);
  if (!l.startsWith('281')) throw new Error(`login: ${l}`);
  return c;
}

/** Run a Python script with nntplib available; `PORT`, `TLS_PORT`, `PASSWORD` are passed in the environment. */
export function runPython(script: string, env: Record<string, string>, timeoutMs = 25_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const prelude = [
    'import warnings',
    "warnings.simplefilter('ignore')",
    'import nntplib, ssl, io, os, sys, json',
    'ctx = ssl.create_default_context()',
    'ctx.check_hostname = False',
    'ctx.verify_mode = ssl.CERT_NONE',
    "PORT = int(os.environ.get('PORT', '0'))",
    "TLS_PORT = int(os.environ.get('TLS_PORT', '0'))",
    "PASSWORD = os.environ.get('PASSWORD', '')",
    '',
  ].join('\n');
  return new Promise((resolve) => {
    execFile('python3', ['-W', 'ignore', '-c', prelude + script], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
