/*
 * SMTP benchmark (`npm run bench:smtp`). Gatehouse runs as operators run it (`src/cli/main.ts start` in a
 * child process, durable queue on, relaying to a loopback smtp-server sink in this process). Measured:
 *   (a) messages/s accepted from 127.0.0.1: 10 concurrent sessions, one connection each, 4 KiB messages;
 *   (b) end-to-end: time until all of those 2,000 messages reached the sink;
 *   (c) one session's connect → greeting → EHLO → QUIT latency (median of 50).
 * Prints the figures; never asserts. Talks only to 127.0.0.1. Options: --messages N --sessions N.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '2000' }, sessions: { type: 'string', default: '10' }, latency: { type: 'string', default: '50' } } });
const MESSAGES = Number(values.messages);
const SESSIONS = Number(values.sessions);
const LATENCY_ROUNDS = Number(values.latency);
const ROOT = path.resolve(import.meta.dirname, '..');

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A minimal pipelining SMTP client over one connection. */
class Client {
  private buf = '';
  private wait: (() => void) | null = null;
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wait?.();
    });
    sock.on('close', () => this.wait?.());
    sock.on('error', () => this.wait?.());
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Client(s)));
      s.once('error', reject);
      s.setNoDelay(true);
    });
  }

  async reply(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m.index + m[0].length);
        return Number(m[1]);
      }
      if (this.sock.destroyed || Date.now() > deadline) throw new Error(`no reply (buffer ${JSON.stringify(this.buf.slice(0, 200))})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.wait = () => {
          clearTimeout(t);
          this.wait = null;
          r();
        };
      });
    }
  }

  write(s: string): void {
    this.sock.write(s);
  }

  async expect(code: number): Promise<void> {
    const got = await this.reply();
    if (got !== code) throw new Error(`expected ${code}, got ${got}`);
  }

  close(): void {
    this.sock.destroy();
  }

  closed(): Promise<void> {
    return new Promise((r) => (this.sock.destroyed ? r() : this.sock.once('close', () => r())));
  }
}

function message(i: number): string {
  const head = `From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench ${i}\r\nMessage-ID: <bench-${i}@example.org>\r\n\r\n`;
  const line = `${'0123456789abcdef'.repeat(4)}\r\n`; // 66 bytes
  let body = '';
  while (head.length + body.length + line.length <= 4096) body += line;
  return head + body + 'x'.repeat(4096 - head.length - body.length - 2) + '\r\n';
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
  const smtpPort = await freePort();
  let received = 0;
  let allArrived: () => void = () => undefined;
  const arrived = new Promise<void>((r) => (allArrived = r));
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    disableReverseLookup: true,
    onData(stream, _session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        received++;
        if (received >= MESSAGES) allArrived();
        cb();
      });
    },
  });
  sink.on('error', () => undefined);
  sink.server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const sinkPort = (sink.server.address() as net.AddressInfo).port;

  fs.mkdirSync(path.join(dir, 'config'));
  const configFile = path.join(dir, 'config', 'gatehouse.yaml');
  fs.writeFileSync(
    configFile,
    stringify({
      hostname: 'gatehouse.test',
      state_dir: '../var',
      log: { stdout: false, level: 'warn' },
      smtp: {
        listen: `127.0.0.1:${smtpPort}`,
        relay: { smarthost: { host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        limits: { connections_per_ip: Math.max(10, SESSIONS + 2) },
        queue: { retry_s: [1] },
      },
      ftp: { enabled: false },
      nntp: { enabled: false },
    }),
  );

  let child: ChildProcess | null = null;
  try {
    const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
    child = spawn(process.execPath, [...extra, '--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('is up')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gatehouse did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    // (c) first, on an idle server
    const latencies: number[] = [];
    for (let i = 0; i < LATENCY_ROUNDS; i++) {
      const t0 = performance.now();
      const c = await Client.open(smtpPort);
      await c.expect(220);
      c.write('EHLO bench.test\r\n');
      await c.expect(250);
      c.write('QUIT\r\n');
      await c.expect(221);
      await c.closed();
      latencies.push(performance.now() - t0);
    }
    latencies.sort((a, b) => a - b);

    // (a) + (b)
    const bodies = Array.from({ length: MESSAGES }, (_, i) => message(i));
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: SESSIONS }, async () => {
        const c = await Client.open(smtpPort);
        await c.expect(220);
        c.write('EHLO bench.test\r\n');
        await c.expect(250);
        for (;;) {
          const i = next++;
          if (i >= MESSAGES) break;
          c.write('MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n');
          await c.expect(250);
          await c.expect(250);
          await c.expect(354);
          c.write(`${bodies[i]}.\r\n`);
          await c.expect(250);
        }
        c.write('QUIT\r\n');
        await c.reply().catch(() => 0);
        c.close();
      }),
    );
    const accepted = performance.now() - t0;
    await Promise.race([arrived, new Promise((r) => setTimeout(r, 300_000))]);
    const endToEnd = performance.now() - t0;

    const median = latencies[Math.floor(latencies.length / 2)]!;
    const p90 = latencies[Math.floor(latencies.length * 0.9)]!;
    const out = [
      `SMTP benchmark (Node ${process.version}, ${os.cpus().length} cores, ${MESSAGES} messages of 4 KiB, ${SESSIONS} sessions from 127.0.0.1, durable queue on)`,
      `  (a) accepted:     ${(MESSAGES / (accepted / 1000)).toFixed(0)} msg/s (${(accepted / 1000).toFixed(2)} s for ${MESSAGES})`,
      `  (b) end to end:   ${received}/${MESSAGES} at the sink in ${(endToEnd / 1000).toFixed(2)} s`,
      `  (c) connect→QUIT: median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms (${LATENCY_ROUNDS} sessions)`,
      `  Postfix anchor (same kind of machine, anchors README): 662 msg/s accepted; 2,000 at the sink in 5.0 s; connect-to-QUIT 3.3 ms`,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    if (child && child.exitCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    sink.options.closeTimeout = 100;
    await new Promise<void>((r) => sink.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:smtp failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
