// SIGHUP reload keeps sessions open: hold a session of each protocol across a reload that changes the
// access lists, check each still answers, and that new connections see the new config.
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Client } from 'basic-ftp';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

/** A line-oriented protocol client on a raw socket: enough for SMTP and NNTP conversations. */
class LineClient {
  private buf = '';
  private waiters: Array<() => void> = [];
  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }
  static connect(port: number, localAddress = '127.0.0.1'): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(new LineClient(s)));
      s.once('error', reject);
    });
  }
  /** Wait for a complete reply whose last line matches `done`. */
  async reply(done = /^\d{3} [^\r\n]*\r\n/m, ms = 10_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const m = done.exec(this.buf);
      if (m) {
        const out = this.buf.slice(0, m.index + m[0].length);
        this.buf = this.buf.slice(m.index + m[0].length);
        return out;
      }
      if (this.socket.destroyed) return this.buf;
      if (Date.now() - t0 > ms) throw new Error(`no reply: ${this.buf}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }
  async cmd(line: string, done?: RegExp): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply(done);
  }
  close(): void {
    this.socket.destroy();
  }
}

let t: TestGatehouse;
const clients: Array<{ close(): void }> = [];

beforeAll(async () => {
  t = await startGatehouse({ nntp: { groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }] } }, [{ name: 'alice', password: PASSWORD }]);
});
afterAll(async () => {
  for (const c of clients) c.close();
  await t?.stop();
});

describe('reload (SIGHUP) across all three listeners', () => {
  it('keeps a session of each protocol open and applies the new config to new connections', async () => {
    const smtp = await LineClient.connect(t.port('smtp'), '127.0.0.20');
    clients.push(smtp);
    expect(await smtp.reply()).toMatch(/^220 /);
    expect(await smtp.cmd('EHLO reload.test', /^250 [^\r\n]*\r\n/m)).toMatch(/250-STARTTLS/);

    const nntp = await LineClient.connect(t.port('nntp'), '127.0.0.20');
    clients.push(nntp);
    expect(await nntp.reply()).toMatch(/^20[01] /);

    const ftp = new Client(10_000);
    clients.push(ftp);
    await ftp.access({ host: '127.0.0.1', port: t.port('ftp'), user: 'alice', password: PASSWORD, secure: true, secureOptions: { rejectUnauthorized: false } });
    await ftp.uploadFrom((await import('node:stream')).Readable.from([Buffer.from('before reload\n')]), 'before.txt');

    // New config: 127.0.0.20 is now denied everywhere.
    const data = parse(fs.readFileSync(t.configFile, 'utf8')) as Record<string, unknown>;
    data.access = { allow: ['0.0.0.0/0', '::/0'], deny: ['127.0.0.20/32'] };
    fs.writeFileSync(t.configFile, stringify(data));
    const result = await t.gh.reload();
    expect(result).toEqual({ ok: true, message: 'configuration reloaded' });

    // The old sessions go on.
    expect(await smtp.cmd('NOOP')).toMatch(/^250 /);
    expect(await nntp.cmd('DATE')).toMatch(/^111 \d{14}/);
    const list = await ftp.list();
    expect(list.map((f) => f.name)).toContain('before.txt');

    // New sessions from the now-denied address are refused at greeting.
    const smtp2 = await LineClient.connect(t.port('smtp'), '127.0.0.20');
    clients.push(smtp2);
    expect(await smtp2.reply()).toMatch(/^554 /);
    const nntp2 = await LineClient.connect(t.port('nntp'), '127.0.0.20');
    clients.push(nntp2);
    expect(await nntp2.reply()).toMatch(/^502 /);
    const ftp2 = await LineClient.connect(t.port('ftp'), '127.0.0.20');
    clients.push(ftp2);
    expect(await ftp2.reply()).toMatch(/^421 /);

    expect(await smtp.cmd('QUIT')).toMatch(/^221 /);
    expect(await nntp.cmd('QUIT')).toMatch(/^205 /);
    ftp.close();
  });
});
