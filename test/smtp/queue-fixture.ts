/*
 * Test fixture for the queue tests: a real Runtime (config, users, policy, TLS, silent log) in a temp dir,
 * plus envelope helpers. Every test file that uses it must call `cleanup()` in afterAll.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { prepareStateDir } from '../../src/gatehouse.js';
import { UserStore } from '../../src/identity/users.js';
import { createLogging } from '../../src/net/log.js';
import { loadTls } from '../../src/net/tls.js';
import { normalizeAddress } from '../../src/policy/address.js';
import { Policy, type NormalizedAddress } from '../../src/policy/index.js';
import type { Runtime } from '../../src/runtime.js';
import type { Envelope } from '../../src/smtp/queue-types.js';

export const PASSWORD = 'correct-horse-battery';

export interface QueueFixture {
  readonly dir: string;
  readonly rt: Runtime;
  cleanup(): void;
}

export async function makeRuntime(smtp: Record<string, unknown> = {}, users: readonly string[] = [], dir?: string): Promise<QueueFixture> {
  const base = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-queue-'));
  const configDir = path.join(base, 'config');
  fs.mkdirSync(configDir, { recursive: true });
  const data = { hostname: 'gatehouse.test', state_dir: '../var', auth: { bcrypt_cost: 10 }, log: { stdout: false }, smtp: { local_domains: ['office.test'], ...smtp } };
  const config = parseConfig(data, path.join(configDir, 'gatehouse.yaml'), configDir);
  prepareStateDir(config);
  const store = UserStore.load(config.paths.usersFile, 10);
  for (const u of users) if (!store.has(u)) await store.add(u, PASSWORD, []);
  const logging = createLogging({ level: 'silent', dir: null, maxBytes: 1_000_000, keep: 1, stdout: false });
  const policy = new Policy(config, store, logging.decision);
  const tls = await loadTls(config);
  const rt: Runtime = { config, policy, users: store, tls, log: logging.log, logging };
  return { dir: base, rt, cleanup: () => fs.rmSync(base, { recursive: true, force: true }) };
}

export function addr(a: string): NormalizedAddress {
  const r = normalizeAddress(a);
  if (!r.ok) throw new Error(`bad test address ${a}: ${r.reason}`);
  return r.address;
}

export function envelope(sender: string, recipients: readonly string[]): Envelope {
  return { sender, recipients: recipients.map(addr), clientIp: '127.0.0.1', helo: 'client.test', user: null, tls: false, session: 'test' };
}

export function message(subject: string, body = 'Hello.\r\n'): Buffer {
  return Buffer.from(`From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\n${body}`);
}

/** Poll until `fn` returns a truthy value or the bound runs out. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export interface SinkMessage {
  readonly from: string;
  readonly to: string[];
  readonly data: Buffer;
  readonly secure: boolean;
  readonly user: string | null;
}

export interface Sink {
  readonly port: number;
  readonly messages: SinkMessage[];
  /** per recipient: reply to RCPT with this code (e.g. 451, 550) while it returns a number */
  rcptReply: (address: string) => number | null;
  /** when true, DATA is read but never answered (a hung server) */
  stall: boolean;
  /** password the sink expects for AUTH (if any) */
  readonly authSeen: Array<{ user: string; pass: string }>;
  /** the messages once at least n arrived, or what there is after timeoutMs (bounded wait; the test asserts) */
  waitFor(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  close(): Promise<void>;
}

export interface SinkOptions {
  readonly tls?: { key: Buffer | string; cert: Buffer | string };
  readonly auth?: { user: string; pass: string };
  readonly secure?: boolean;
  /** a fixed port (a test that restarts Gatehouse against the same sink); default 0 = any free one */
  readonly port?: number;
}

/** A real SMTP server (smtp-server) on 127.0.0.1:0 that records what arrives, byte for byte. */
export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  const { SMTPServer } = await import('smtp-server');
  const messages: SinkMessage[] = [];
  const authSeen: Array<{ user: string; pass: string }> = [];
  const sink = { messages, authSeen, stall: false, rcptReply: (_a: string): number | null => null };
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    size: 50 * 1024 * 1024,
    secure: opts.secure ?? false,
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    disabledCommands: [...(opts.tls ? [] : ['STARTTLS']), ...(opts.auth ? [] : ['AUTH'])],
    authOptional: !opts.auth,
    allowInsecureAuth: false,
    onAuth(auth, _session, cb) {
      authSeen.push({ user: auth.username ?? '', pass: auth.password ?? '' });
      if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) cb(null, { user: auth.username });
      else cb(Object.assign(new Error('Invalid credentials'), { responseCode: 535 }));
    },
    onRcptTo(address, _session, cb) {
      const code = sink.rcptReply(address.address);
      if (code) cb(Object.assign(new Error(code >= 500 ? '5.1.1 No such user' : '4.2.0 Try again later'), { responseCode: code }));
      else cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          user: (session.user as string | undefined) ?? null,
        });
        if (!sink.stall) cb();
      });
    },
  });
  server.on('error', () => {
    /* client resets are fine */
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as { port: number }).port;
  return Object.assign(sink, {
    port,
    async waitFor(n: number, timeoutMs = 15_000): Promise<SinkMessage[]> {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return messages;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of server.connections) c.close();
      }),
  });
}
