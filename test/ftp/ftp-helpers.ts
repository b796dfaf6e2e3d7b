// Helpers for the FTP integration tests: a raw control-channel client (with AUTH TLS and a chosen source
// address), a basic-ftp login, and small disk/process utilities. Every wait is bounded.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Client } from 'basic-ftp';
import { PASSWORD } from '../helpers/gatehouse.js';

export { PASSWORD };

export interface Reply {
  readonly code: number;
  readonly text: string;
}

export class RawFtp {
  private buf = '';
  private waiters: (() => void)[] = [];
  private closedFlag = false;
  socket: net.Socket;
  /**
   * The control connection's latest TLS session (TLS 1.3 tickets arrive after the handshake): a PROT P data
   * connection must resume it (ftp.tls.require_session_reuse), as lftp, curl and basic-ftp do.
   */
  tlsSession: Buffer | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  static async connect(port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): Promise<RawFtp> {
    const socket = net.connect({ port, host, localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawFtp(socket);
  }

  /** Next complete reply (multi-line aware); null when the server closed the connection. */
  async read(timeoutMs = 10_000): Promise<Reply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.buf.split('\r\n');
      for (let i = 0; i < lines.length - 1; i++) {
        const m = /^(\d{3}) /.exec(lines[i]!);
        if (m) {
          const text = lines.slice(0, i + 1).join('\n');
          this.buf = lines.slice(i + 1).join('\r\n');
          return { code: Number(m[1]), text };
        }
      }
      if (this.closedFlag) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms (buffer ${JSON.stringify(this.buf)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async cmd(line: string | Buffer, timeoutMs?: number): Promise<Reply | null> {
    this.socket.write(typeof line === 'string' ? `${line}\r\n` : line);
    return this.read(timeoutMs);
  }

  async authTls(): Promise<Reply | null> {
    const r = await this.cmd('AUTH TLS');
    if (r?.code !== 234) return r;
    const raw = this.socket;
    raw.removeAllListeners('data');
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
    secure.on('session', (session: Buffer) => (this.tlsSession = session));
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
    return r;
  }

  async login(user: string, password = PASSWORD, secure = true): Promise<Reply | null> {
    await this.read();
    if (secure) await this.authTls();
    const u = await this.cmd(`USER ${user}`);
    if (u?.code !== 331) return u;
    return this.cmd(`PASS ${password}`);
  }

  /** PASV; returns the data port. */
  async pasv(): Promise<number> {
    const r = await this.cmd('PASV');
    const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(r?.text ?? '');
    if (!m) throw new Error(`bad PASV reply ${r?.text}`);
    return Number(m[5]) * 256 + Number(m[6]);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Connect a data socket; resolves with everything received until close (bounded). `secure`: TLS, resuming
 * the given session (a RawFtp's tlsSession) when it is a Buffer, a fresh TLS session when `true`.
 */
export function collect(port: number, localAddress = '127.0.0.1', timeoutMs = 10_000, secure: boolean | Buffer = false): Promise<{ data: Buffer; error: string | null }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const raw = net.connect({ port, host: '127.0.0.1', localAddress });
    const sock: net.Socket = secure ? tls.connect({ socket: raw, rejectUnauthorized: false, session: Buffer.isBuffer(secure) ? secure : undefined }) : raw;
    const t = setTimeout(() => sock.destroy(new Error('timeout')), timeoutMs);
    let error: string | null = null;
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (e) => (error = e.message));
    sock.on('close', () => {
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), error });
    });
  });
}

export async function basicLogin(port: number, user: string, password = PASSWORD): Promise<Client> {
  const c = new Client(15_000);
  await c.access({ host: '127.0.0.1', port, user, password, secure: true, secureOptions: { rejectUnauthorized: false } });
  return c;
}

export function has(cmd: string): boolean {
  try {
    return fs.existsSync(path.join('/usr/bin', cmd)) || fs.existsSync(path.join('/usr/local/bin', cmd));
  } catch {
    return false;
  }
}

export function run(cmd: string, args: string[], timeoutMs = 30_000, input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Snapshot of a folder tree: relative path → size (dirs -1); symlinks listed, never followed. */
export function tree(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const rel = path.relative(root, p);
      if (e.isDirectory()) {
        out[rel] = -1;
        walk(p);
      } else out[rel] = fs.lstatSync(p).size;
    }
  };
  if (fs.existsSync(root)) walk(root);
  return out;
}

/** Read the contents of every regular file under `root` (a disk fingerprint to compare after refusals). */
export function fingerprint(root: string): string {
  const t = tree(root);
  return JSON.stringify(
    Object.keys(t)
      .sort()
      .map((k) => [k, t[k], t[k]! >= 0 && fs.lstatSync(path.join(root, k)).isFile() ? fs.readFileSync(path.join(root, k), 'base64') : null]),
  );
}

export const PY = process.env.PYTHON ?? 'python3';

/**
 * The named fixture for Python's ftplib over PROT P: ftplib cannot resume the control connection's TLS
 * session on a data connection (ntransfercmd wraps the socket without `session`), so with the default
 * `ftp.tls.require_session_reuse: true` its transfers are refused. Tests that drive ftplib transfers with
 * PROT P start their Gatehouse with these overrides (merged into `ftp:`).
 */
export const FTPLIB_NO_SESSION_REUSE = { tls: { require_session_reuse: false } } as const;
