/* A line-oriented test client from a chosen source address, optionally over TLS from the start. */
import net from 'node:net';
import tls from 'node:tls';

/** A line-oriented client from a chosen source address, optionally over TLS from the start. */
export class Conn {
  buf = '';
  closed = false;
  private wake: (() => void) | null = null;
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }
  static open(host: string, port: number, localAddress: string, secure = false, first?: Buffer): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const raw = net.connect({ host, port, localAddress });
      const t = setTimeout(() => {
        raw.destroy();
        reject(new Error('connect timeout'));
      }, 10_000);
      raw.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      raw.once('connect', () => {
        if (first) raw.write(first);
        if (!secure) {
          clearTimeout(t);
          return resolve(new Conn(raw));
        }
        const s = tls.connect({ socket: raw, rejectUnauthorized: false });
        s.once('secureConnect', () => {
          clearTimeout(t);
          resolve(new Conn(s));
        });
        s.once('error', (e: Error) => {
          clearTimeout(t);
          reject(e);
        });
      });
    });
  }
  async until(pred: (b: string) => boolean, ms = 10_000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!pred(this.buf) && !this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return pred(this.buf);
  }
  /** the next reply line whose code is followed by a space */
  async reply(ms = 10_000): Promise<string> {
    const re = /^(\d{3}) .*\r\n/m;
    await this.until((b) => re.test(b), ms);
    const m = re.exec(this.buf);
    if (!m) return `(none; closed=${this.closed}) ${this.buf}`;
    const end = m.index + m[0].length;
    this.buf = this.buf.slice(end);
    return m[0].trimEnd();
  }
  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }
  async waitClosed(ms = 15_000): Promise<boolean> {
    await this.until(() => false, ms);
    return this.closed;
  }
  close(): void {
    this.socket.destroy();
  }
}

