/*
 * SMTP DATA of large messages (issue 19 item 3): `npm run bench:smtp-bulk`. Gatehouse (src/cli/main.ts start in
 * a child, durable queue, relaying to a sink here) and, with SMTP_ANCHOR=<target.json> (e.g. a Postfix anchor
 * started from ../shared/anchors/postfix/up.sh with message_size_limit raised above the message size: the
 * shipped fixture has 1 MiB), the anchor, side by side in alternating rounds. Each round sends one message
 * of BENCH_SMTP_MIB (default 50) MiB, 78-octet CRLF lines, from 127.0.0.1 to a relayed recipient, and times
 * the content (after the 354) to the 250: MiB/s to the acknowledgement (both servers answer 250 only once the
 * message is on disk: Postfix's cleanup fsyncs the queue file, Gatehouse's spool fdatasyncs). Then it waits
 * until the server relayed the message to the sink (a minimal SMTP sink here that only counts bytes), so that
 * one server's delivery does not run during the other's measurement. The client is this process (one
 * socket.write of the whole message: not the bound). Env: BENCH_SMTP_MIB, BENCH_SMTP_ROUNDS (default 3),
 * BENCH_NODE_ARGS (flags for the Gatehouse child, e.g. --cpu-prof).
 *   flock /tmp/heavy.lock npm run bench:smtp-bulk
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const MIB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_SMTP_MIB ?? 50);
const ROUNDS = Number(process.env.BENCH_SMTP_ROUNDS ?? 3);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A minimal SMTP sink: answers everything, counts the messages whose end (CRLF.CRLF) it saw. */
class Sink {
  received = 0;
  private waiters: (() => void)[] = [];
  private readonly server = net.createServer((s) => this.session(s));

  listen(port: number): Promise<number> {
    return new Promise((resolve) => this.server.listen(port, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)));
  }

  private session(s: net.Socket): void {
    s.on('error', () => undefined);
    s.write('220 sink ESMTP\r\n');
    let inData = false;
    let tail = '';
    let line = '';
    s.on('data', (d: Buffer) => {
      if (inData) {
        const t = tail + d.subarray(Math.max(0, d.length - 5)).toString('latin1');
        tail = t.slice(-5);
        if (tail === '\r\n.\r\n' || (d.length <= 3 && t.endsWith('\r\n.\r\n'))) {
          inData = false;
          tail = '';
          this.received++;
          s.write('250 ok\r\n');
          for (const w of this.waiters.splice(0)) w();
        }
        return;
      }
      line += d.toString('latin1');
      let i: number;
      while ((i = line.indexOf('\r\n')) >= 0) {
        const cmd = line.slice(0, i).toUpperCase();
        line = line.slice(i + 2);
        if (cmd.startsWith('EHLO')) s.write('250-sink\r\n250-8BITMIME\r\n250 SIZE 1073741824\r\n');
        else if (cmd === 'DATA') {
          inData = true;
          s.write('354 go\r\n');
        } else if (cmd === 'QUIT') s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      }
    });
  }

  async waitFor(n: number, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.received < n) {
      if (Date.now() > deadline) return false;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 500);
      });
    }
    return true;
  }

  close(): void {
    this.server.close();
  }
}

/** A client line reader on one socket. */
class Conn {
  private buf = '';
  private wake: (() => void) | null = null;
  constructor(readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    sock.on('close', () => this.wake?.());
  }
  async expect(code: number, ms = 300_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m.index + m[0].length);
        if (Number(m[1]) !== code) throw new Error(`expected ${code}, got ${m[0].trim()}`);
        return;
      }
      if (this.sock.destroyed || Date.now() > deadline) throw new Error(`no ${code} (have ${JSON.stringify(this.buf.slice(0, 200))})`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 1000);
      });
    }
  }
}

/** SIZE MiB of 78-octet lines (76 + CRLF), none starting with a dot, headers first. */
function bigMessage(): Buffer {
  const head = Buffer.from('From: bench@example.org\r\nTo: sink@example.net\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n', 'latin1');
  const line = Buffer.from(`${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.repeat(2).slice(0, 76)}\r\n`, 'latin1');
  const lines = Math.floor((SIZE * MIB - head.length) / line.length);
  const body = Buffer.allocUnsafe(lines * line.length);
  for (let i = 0; i < lines; i++) line.copy(body, i * line.length);
  return Buffer.concat([head, body, Buffer.from('.\r\n', 'latin1')]);
}

/** One message: MiB/s from the first content byte to the 250. */
async function send(port: number, msg: Buffer): Promise<number> {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise<void>((r, j) => sock.once('connect', () => r()).once('error', j));
  const c = new Conn(sock);
  try {
    await c.expect(220);
    sock.write('EHLO bench.example.org\r\n');
    await c.expect(250);
    sock.write('MAIL FROM:<bench@example.org>\r\n');
    await c.expect(250);
    sock.write('RCPT TO:<sink@example.net>\r\n');
    await c.expect(250);
    sock.write('DATA\r\n');
    await c.expect(354);
    const t0 = process.hrtime.bigint();
    sock.write(msg);
    await c.expect(250);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    sock.end('QUIT\r\n');
    return msg.length / MIB / secs;
  } finally {
    sock.destroy();
  }
}

async function main(): Promise<void> {
  const anchorFile = process.env.SMTP_ANCHOR ?? '';
  const anchor = anchorFile ? (JSON.parse(fs.readFileSync(anchorFile, 'utf8')) as { name: string; port: number; sink: { port: number } }) : null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  const sink = new Sink();
  const sinkPort = await sink.listen(0);
  const anchorSink = anchor ? new Sink() : null;
  if (anchor && anchorSink) await anchorSink.listen(anchor.sink.port);
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
  const smtpPort = (free.address() as net.AddressInfo).port;
  await new Promise<void>((r) => free.close(() => r()));
  fs.mkdirSync(path.join(dir, 'config'));
  const configFile = path.join(dir, 'config', 'gatehouse.yaml');
  fs.writeFileSync(
    configFile,
    stringify({
      hostname: 'gatehouse.test',
      state_dir: '../var',
      log: { stdout: false, level: 'info' },
      smtp: {
        listen: `127.0.0.1:${smtpPort}`,
        relay: { smarthost: { host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        limits: { message_bytes: (SIZE + 10) * MIB },
        queue: { retry_s: [1] },
      },
      ftp: { enabled: false },
      nntp: { enabled: false },
    }),
  );
  let child: ChildProcess | null = null;
  const results = new Map<string, number[]>();
  try {
    const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    child = spawn(process.execPath, [...extra, '--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('is up')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gatehouse did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const msg = bigMessage();
    const targets = [{ name: 'Gatehouse', port: smtpPort, sink }, ...(anchor && anchorSink ? [{ name: anchor.name, port: anchor.port, sink: anchorSink }] : [])];
    console.log(`# SMTP DATA of one ${(msg.length / MIB).toFixed(1)} MiB message, ${ROUNDS} rounds, ${targets.map((t) => t.name).join(' vs ')}, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
        const before = t.sink.received;
        const v = await send(t.port, msg);
        (results.get(t.name) ?? results.set(t.name, []).get(t.name)!).push(v);
        if (!(await t.sink.waitFor(before + 1, 120_000))) console.error(`${t.name}: message not at the sink after 120 s`);
      }
    }
    console.log(`# MiB/s from the first content byte to the 250 (load at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);
    for (const [k, v] of results) console.log(`${k.padEnd(16)} ${v.map((x) => x.toFixed(0)).join(' / ')}`);
    if (anchor) {
      const g = results.get('Gatehouse')!;
      const a = results.get(anchor.name)!;
      const ratios = g.map((x, i) => x / a[i]!);
      console.log(`Gatehouse ÷ ${anchor.name}: ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`);
    }
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    sink.close();
    anchorSink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
