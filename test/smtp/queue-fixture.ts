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
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
