import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deliverToMaildir, maildirName, maildirOf } from '../../src/smtp/maildir.js';
import { createMailQueue, type MailQueueImpl } from '../../src/smtp/queue.js';
import { envelope, makeRuntime, message, startSink, waitFor, type QueueFixture } from './queue-fixture.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(users: string[], smtp: Record<string, unknown> = {}): Promise<{ fx: QueueFixture; q: MailQueueImpl }> {
  const fx = await makeRuntime({ queue: { retry_s: [1] }, ...smtp }, users);
  cleanups.push(() => fx.cleanup());
  const q = createMailQueue(fx.rt, { tickMs: 100 });
  cleanups.push(() => q.stop(1000));
  return { fx, q };
}

function newFiles(mailDir: string, user: string): string[] {
  const dir = path.join(mailDir, user, 'new');
  return fs.existsSync(dir) ? fs.readdirSync(dir).map((n) => path.join(dir, n)) : [];
}

describe('Maildir delivery', () => {
  it('delivers local recipients into <mailDir>/<user>/new with private modes and exact contents', async () => {
    const { fx, q } = await setup(['alice', 'bob']);
    q.start();
    const data = message('local');
    await q.enqueue(envelope('sender@example.org', ['Alice@office.test', 'bob@OFFICE.test']), data);
    const mailDir = fx.rt.config.paths.mailDir;
    await waitFor(() => newFiles(mailDir, 'alice').length === 1 && newFiles(mailDir, 'bob').length === 1);
    const file = newFiles(mailDir, 'alice')[0]!;
    expect(fs.readFileSync(file).equals(Buffer.concat([Buffer.from('Return-Path: <sender@example.org>\r\nDelivered-To: Alice@office.test\r\n'), data]))).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    for (const sub of ['', 'tmp', 'new', 'cur']) expect(fs.statSync(path.join(mailDir, 'alice', sub)).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.join(mailDir, 'alice', 'tmp'))).toEqual([]);
    await waitFor(() => q.spool.idsSync().length === 0);
    expect(q.stats().delivered).toBe(2);
  });

  it('an unknown local user fails permanently and the sender (a local user) gets the DSN in her Maildir', async () => {
    const { fx, q } = await setup(['alice']);
    q.start();
    await q.enqueue(envelope('alice@office.test', ['ghost@office.test']), message('ghost'));
    const mailDir = fx.rt.config.paths.mailDir;
    const [file] = await waitFor(() => (newFiles(mailDir, 'alice').length === 1 ? newFiles(mailDir, 'alice') : null));
    const text = fs.readFileSync(file!, 'latin1');
    expect(text).toMatch(/^Return-Path: <>\r\nDelivered-To: alice@office\.test\r\n/);
    expect(text).toContain('report-type=delivery-status');
    expect(text).toContain('Final-Recipient: rfc822; ghost@office.test');
    expect(text).toContain('Status: 5.1.1');
    expect(fs.existsSync(path.join(mailDir, 'ghost'))).toBe(false);
    await waitFor(() => q.spool.idsSync().length === 0);
  });

  it('mixes local and remote recipients in one message', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const { fx, q } = await setup(['alice'], { relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } } });
    q.start();
    const data = message('mixed');
    await q.enqueue(envelope('x@example.org', ['alice@office.test', 'far@example.net']), data);
    await waitFor(() => sink.messages.length === 1 && newFiles(fx.rt.config.paths.mailDir, 'alice').length === 1);
    expect(sink.messages[0]!.to).toEqual(['far@example.net']);
    expect(sink.messages[0]!.data.equals(data)).toBe(true);
  });

  it('refuses unsafe mailbox names and makes unique file names', async () => {
    for (const bad of ['../etc', 'a/b', 'Alice', '', '.x', 'a..b']) expect(() => maildirOf('/tmp/m', bad)).toThrow(/unsafe mailbox/);
    const names = new Set(Array.from({ length: 500 }, () => maildirName('host/with:odd')));
    expect(names.size).toBe(500);
    for (const n of names) expect(n).not.toMatch(/[/:]/);
    const fx = await makeRuntime();
    cleanups.push(() => fx.cleanup());
    const files = await Promise.all(
      Array.from({ length: 10 }, (_, i) => deliverToMaildir({ mailDir: fx.rt.config.paths.mailDir, user: 'carol', hostname: 'h', sender: 'a\r\nBcc: x@y', recipient: 'carol@office.test', data: Buffer.from(`m${i}\r\n`) })),
    );
    expect(new Set(files).size).toBe(10);
    expect(fs.readFileSync(files[0]!, 'latin1')).toMatch(/^Return-Path: <aBcc: x@y>\r\n/);
  });
});
