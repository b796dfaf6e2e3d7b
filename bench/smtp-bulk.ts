/*
 * SMTP DATA of large messages (issue 19 item 3): `npm run bench:smtp-bulk`. Gatehouse (the compiled CLI's start
 * in a child, as bench:smtp runs it: `npm run build` first, or BENCH_RUNTIME=tsx; durable queue, relaying to a sink
 * here) and, with SMTP_ANCHOR=<target.json> (e.g. a Postfix anchor
 * started from ../shared/anchors/postfix/up.sh with message_size_limit raised above the message size: the
 * shipped fixture has 1 MiB), the anchor, side by side in alternating rounds. Each round sends one message
 * of BENCH_SMTP_MIB (default 50) MiB, 78-octet CRLF lines, from 127.0.0.1 to a relayed recipient, and times
 * the content (after the 354) to the 250: MiB/s to the acknowledgement (both servers answer 250 only once the
 * message is on disk: Postfix's cleanup fsyncs the queue file, Gatehouse's spool fdatasyncs). Then it waits
 * until the server relayed the message to the sink (bench:smtp's loopback sink, bench/lib/smtp.ts), so that
 * one server's delivery does not run during the other's measurement. The client is this process (one
 * socket.write of the whole message: not the bound). Also printed: each server's CPU per MiB in that time (its
 * process tree, from /proc; Postfix's from target.json's pids.postfix_master). Env: BENCH_SMTP_MIB, BENCH_SMTP_ROUNDS (default 3),
 * BENCH_NODE_ARGS (flags for the Gatehouse child, e.g. --cpu-prof).
 *   flock /tmp/heavy.lock npm run bench:smtp-bulk
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './fuzz/proc.js';
import { Sink, startChild, stopChild, treeCpuMs, writeConfig } from './lib/smtp.js';

const MIB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_SMTP_MIB ?? 50);
const ROUNDS = Number(process.env.BENCH_SMTP_ROUNDS ?? 3);

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
  const anchor = anchorFile ? (JSON.parse(fs.readFileSync(anchorFile, 'utf8')) as { name: string; port: number; sink: { port: number }; pids?: { postfix_master?: string } }) : null;
  /** the anchor's master process (target.json `pids.postfix_master`, a pid file), for its CPU figure */
  let anchorPid: number | null = null;
  try {
    if (anchor?.pids?.postfix_master) anchorPid = Number(fs.readFileSync(anchor.pids.postfix_master, 'utf8').trim()) || null;
  } catch {
    anchorPid = null;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  const sink = new Sink();
  const sinkPort = await sink.listen('127.0.0.1', 0);
  const anchorSink = anchor ? new Sink() : null;
  if (anchor && anchorSink) await anchorSink.listen('127.0.0.1', anchor.sink.port);
  const smtpPort = await freePort();
  const configFile = writeConfig(dir, smtpPort, sinkPort, { message_bytes: (SIZE + 10) * MIB });
  let child: ChildProcess | null = null;
  const results = new Map<string, number[]>();
  /** server CPU (ms, the process and everything under it) from the first content byte to the 250, per MiB */
  const cpu = new Map<string, (number | null)[]>();
  try {
    child = await startChild(configFile, process.env.BENCH_RUNTIME === 'tsx' ? 'tsx' : 'dist');
    const msg = bigMessage();
    const targets = [{ name: 'Gatehouse', port: smtpPort, sink, pid: child.pid }, ...(anchor && anchorSink ? [{ name: anchor.name, port: anchor.port, sink: anchorSink, pid: anchorPid }] : [])];
    console.log(`# SMTP DATA of one ${(msg.length / MIB).toFixed(1)} MiB message, ${ROUNDS} rounds, ${targets.map((t) => t.name).join(' vs ')}, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
        const arrived = t.sink.expect(1, 120_000);
        const cpu0 = treeCpuMs(t.pid);
        const v = await send(t.port, msg);
        const cpu1 = treeCpuMs(t.pid);
        (results.get(t.name) ?? results.set(t.name, []).get(t.name)!).push(v);
        (cpu.get(t.name) ?? cpu.set(t.name, []).get(t.name)!).push(cpu0 !== null && cpu1 !== null ? (cpu1 - cpu0) / (msg.length / MIB) : null);
        if (!(await arrived)) console.error(`${t.name}: message not at the sink after 120 s`);
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
    // what receiving costs, whatever else runs on the box (the processes' own clocks, /proc ticks of 10 ms)
    console.log('# server CPU per MiB, ms, first content byte to the 250 (the process and all under it)');
    for (const [k, v] of cpu) console.log(`${k.padEnd(16)} ${v.map((x) => (x === null ? '?' : x.toFixed(2))).join(' / ')}`);
  } finally {
    await stopChild(child);
    await sink.close();
    await anchorSink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
