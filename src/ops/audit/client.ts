/*
 * A tiny line-based protocol client for the audit probes (SMTP, FTP control, NNTP): connect from a
 * chosen loopback source address, read bounded CRLF lines with a timeout, upgrade to TLS in place.
 * Certificates are not verified: the audit checks what the server offers, not who it is.
 */
import net from 'node:net';
import tls from 'node:tls';

const MAX_LINE = 8192;
const MAX_LINES = 20_000;

export interface ConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly localAddress?: string;
  readonly implicitTls?: boolean;
  readonly tls?: tls.ConnectionOptions;
  readonly timeoutMs?: number;
}

export class ProbeError extends Error {}

export class LineClient {
  private buf = '';
  private lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private ended = false;
  private error: Error | null = null;

  private constructor(
    private socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.attach(socket);
  }

  static async connect(o: ConnectOptions): Promise<LineClient> {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const local = o.localAddress && net.isIPv4(o.host) ? o.localAddress : undefined;
    const raw = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: o.host, port: o.port, localAddress: local }, () => resolve(s));
      s.setTimeout(timeoutMs, () => s.destroy(new ProbeError('timed out')));
      s.once('error', reject);
    });
    raw.removeAllListeners('error');
    const client = new LineClient(raw, timeoutMs);
    if (o.implicitTls) {
      try {
        await client.startTls(o.tls);
      } catch (err) {
        raw.destroy();
        throw err;
      }
    }
    return client;
  }

  get tlsSocket(): tls.TLSSocket | null {
    return this.socket instanceof tls.TLSSocket ? this.socket : null;
  }

  private attach(s: net.Socket): void {
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.push(this.buf.slice(0, i).replace(/\r$/, ''));
        this.buf = this.buf.slice(i + 1);
      }
      if (this.buf.length > MAX_LINE) {
        this.push(this.buf.slice(0, MAX_LINE));
        this.buf = '';
      }
    });
    s.on('error', (err) => {
      this.error = err;
      this.finish();
    });
    s.on('close', () => this.finish());
    s.on('end', () => this.finish());
  }

  private push(line: string): void {
    if (this.lines.length >= MAX_LINES) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(line);
    } else this.lines.push(line);
  }

  private finish(): void {
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(null);
    }
  }

  /** The next line, or null when the server closed the connection. */
  readLine(): Promise<string | null> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, this.timeoutMs);
      this.waiter = (line) => {
        clearTimeout(t);
        resolve(line);
      };
    });
  }

  /** SMTP/FTP style reply: `ddd-...` continuation lines up to `ddd ...`. */
  async reply(): Promise<{ code: number; lines: string[] }> {
    const lines: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const l = await this.readLine();
      if (l === null) return { code: 0, lines: lines.length ? lines : [this.error ? `connection error: ${this.error.message}` : 'connection closed'] };
      lines.push(l);
      const m = /^(\d{3})([ -]|$)/.exec(l);
      if (m && m[2] !== '-') return { code: Number(m[1]), lines };
    }
    return { code: 0, lines };
  }

  /** NNTP multi-line data block up to the lone dot. */
  async block(max = 10_000): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < max; i++) {
      const l = await this.readLine();
      if (l === null || l === '.') break;
      out.push(l.startsWith('..') ? l.slice(1) : l);
    }
    return out;
  }

  send(line: string): void {
    if (!this.ended) this.socket.write(`${line}\r\n`);
  }

  async command(line: string): Promise<{ code: number; lines: string[] }> {
    this.send(line);
    return this.reply();
  }

  /** Upgrade in place (after STARTTLS / AUTH TLS was accepted). */
  async startTls(options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    raw.removeAllListeners('end');
    raw.removeAllListeners('error');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: raw, rejectUnauthorized: false, ...options }, () => resolve(s));
      s.once('error', reject);
      raw.once('error', reject);
    });
    secure.removeAllListeners('error');
    secure.setTimeout(this.timeoutMs, () => secure.destroy(new ProbeError('timed out')));
    this.socket = secure;
    this.buf = '';
    this.attach(secure);
    return secure;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Options that make the client offer only TLS 1.0/1.1 (to see whether the server would accept them). */
export const LEGACY_TLS: tls.ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' };
