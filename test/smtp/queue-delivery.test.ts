import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMailQueue, type MailQueueImpl } from '../../src/smtp/queue.js';
import { envelope, makeRuntime, message, startSink, waitFor, type QueueFixture, type Sink } from './queue-fixture.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(smtp: Record<string, unknown>, users: string[] = [], sinkOpts = {}): Promise<{ fx: QueueFixture; sink: Sink; q: MailQueueImpl }> {
  const sink = await startSink(sinkOpts);
  cleanups.push(() => sink.close());
  const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] }, ...smtp }, users);
  cleanups.push(() => fx.cleanup());
  const q = createMailQueue(fx.rt, { tickMs: 100 });
  cleanups.push(() => q.stop(1000));
  return { fx, sink, q };
}

/** Nothing on disk and nothing in memory or in flight (the index is updated just after the files go). */
function spoolEmpty(q: MailQueueImpl): boolean {
  const st = q.stats();
  return st.depth === 0 && st.inFlight === 0 && q.spool.idsSync().length === 0 && fs.readdirSync(q.spool.msgDir).length === 0 && fs.readdirSync(q.spool.envDir).length === 0;
}

describe('delivery through a smarthost', () => {
  it('sends the stored bytes as-is with the stored envelope, then removes the entry', async () => {
    const { sink, q } = await setup({});
    q.start();
    const data = Buffer.concat([message('bytes'), Buffer.from('.leading dot line\r\n8bit: \xe9\xe8\r\nlast line\r\n', 'latin1')]);
    await q.enqueue(envelope('Sender@Example.org', ['one@example.net', 'Two@Example.com']), data);
    await waitFor(() => sink.messages.length === 1);
    const got = sink.messages[0]!;
    expect(got.data.equals(data)).toBe(true);
    expect(got.from.toLowerCase()).toBe('sender@example.org');
    expect(got.to).toEqual(['one@example.net', 'Two@example.com']);
    await waitFor(() => spoolEmpty(q));
    expect(q.stats()).toMatchObject({ depth: 0, delivered: 2 });
  });

  it('uses STARTTLS and AUTH with the password from the password file', async () => {
    const fx0 = await makeRuntime();
    cleanups.push(() => fx0.cleanup());
    const real = await startSink({ auth: { user: 'relayuser', pass: 's3cret-from-file' }, tls: { key: fx0.rt.tls.key, cert: fx0.rt.tls.cert } });
    cleanups.push(() => real.close());
    const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: real.port, tls: 'starttls', verify_cert: false, user: 'relayuser', password_file: 'smarthost.pass' } }, queue: { retry_s: [1] } });
    cleanups.push(() => fx.cleanup());
    fs.writeFileSync(path.join(fx.rt.config.paths.configDir, 'smarthost.pass'), 's3cret-from-file\n', { mode: 0o600 });
    const q = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q.stop(1000));
    q.start();
    await q.enqueue(envelope('a@example.org', ['b@example.net']), message('tls-auth'));
    await waitFor(() => real.messages.length === 1);
    expect(real.messages[0]!.secure).toBe(true);
    expect(real.messages[0]!.user).toBe('relayuser');
    expect(real.authSeen).toEqual([{ user: 'relayuser', pass: 's3cret-from-file' }]);
  });

  it('implicit TLS smarthost; a certificate that fails verification defers instead of sending', async () => {
    const fx0 = await makeRuntime();
    cleanups.push(() => fx0.cleanup());
    const tlsSink = await startSink({ secure: true, tls: { key: fx0.rt.tls.key, cert: fx0.rt.tls.cert } });
    cleanups.push(() => tlsSink.close());
    const mk = async (verify: boolean) => {
      const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: tlsSink.port, tls: 'implicit', verify_cert: verify } }, queue: { retry_s: [3600] } });
      cleanups.push(() => fx.cleanup());
      const q = createMailQueue(fx.rt, { tickMs: 100 });
      cleanups.push(() => q.stop(1000));
      q.start();
      return q;
    };
    const strict = await mk(true);
    const id = await strict.enqueue(envelope('a@example.org', ['b@example.net']), message('verify'));
    const e = await waitFor(() => {
      const x = strict.spool.readSync(id);
      return x && x.attempts >= 1 ? x : null;
    });
    expect(e.recipients[0]!.state).toBe('pending');
    expect(e.recipients[0]!.lastError).toMatch(/certificate|self.signed/i);
    expect(tlsSink.messages).toHaveLength(0);
    const lax = await mk(false);
    await lax.enqueue(envelope('a@example.org', ['b@example.net']), message('implicit'));
    await waitFor(() => tlsSink.messages.length === 1);
    expect(tlsSink.messages[0]!.secure).toBe(true);
  });

  it('refuses to send in clear text when STARTTLS is required but not offered (temporary failure, retried)', async () => {
    const sink = await startSink({});
    cleanups.push(() => sink.close());
    const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'starttls' } }, queue: { retry_s: [3600] } });
    cleanups.push(() => fx.cleanup());
    const q2 = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q2.stop(1000));
    q2.start();
    const id = await q2.enqueue(envelope('a@example.org', ['b@example.net']), message('needs-tls'));
    const entry = await waitFor(() => {
      const e = q2.spool.readSync(id);
      return e && e.attempts >= 1 ? e : null;
    });
    expect(entry.recipients[0]!.state).toBe('pending');
    expect(entry.recipients[0]!.lastError).toMatch(/STARTTLS|TLS/i);
    expect(sink.messages).toHaveLength(0);
  });

  it('retries a temporary failure (451) on the schedule and delivers once', async () => {
    const { sink, q } = await setup({});
    let refusals = 0;
    sink.rcptReply = (a) => (a === 'later@example.net' && refusals++ < 1 ? 451 : null);
    q.start();
    const id = await q.enqueue(envelope('a@example.org', ['later@example.net', 'now@example.net']), message('retry'));
    await waitFor(() => sink.messages.length === 2);
    expect(sink.messages[0]!.to).toEqual(['now@example.net']);
    expect(sink.messages[1]!.to).toEqual(['later@example.net']);
    await waitFor(() => spoolEmpty(q));
    expect(refusals).toBe(2);
    expect(q.spool.readSync(id)).toBeNull();
  });

  it('bounces a permanent failure (550) with an RFC 3464 report to the remote sender, null sender', async () => {
    const { sink, q } = await setup({});
    sink.rcptReply = (a) => (a === 'nobody@example.net' ? 550 : null);
    q.start();
    const id = await q.enqueue(envelope('sender@example.org', ['nobody@example.net']), message('perm'));
    await waitFor(() => sink.messages.length === 1);
    const dsn = sink.messages[0]!;
    expect(dsn.from).toBe('');
    expect(dsn.to).toEqual(['sender@example.org']);
    const text = dsn.data.toString('latin1');
    expect(text).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@gatehouse\.test>\r\n/);
    expect(text).toMatch(/Content-Type: multipart\/report; report-type=delivery-status; boundary="/);
    expect(text).toContain('Content-Type: message/delivery-status');
    expect(text).toContain('Final-Recipient: rfc822; nobody@example.net');
    expect(text).toContain('Action: failed');
    expect(text).toContain('Status: 5.1.1');
    expect(text).toMatch(/Diagnostic-Code: smtp; 550 5\.1\.1 No such user/);
    expect(text).toContain(`X-Gatehouse-Queue-ID: ${id}`);
    expect(text).toContain('Subject: perm');
    expect(text).not.toContain('Hello.');
    await waitFor(() => spoolEmpty(q));
    expect(q.stats().bounces).toBe(1);
  });

  it('does not bounce a failed message with the null sender', async () => {
    const { sink, q } = await setup({});
    sink.rcptReply = () => 550;
    q.start();
    await q.enqueue(envelope('', ['nobody@example.net']), message('bounce-of-bounce'));
    await waitFor(() => q.stats().failed === 1);
    await waitFor(() => spoolEmpty(q));
    expect(q.stats().bounces).toBe(0);
    expect(sink.messages).toHaveLength(0);
  });

  it('bounces mail older than max_age_s with status 4.4.7', async () => {
    const { sink, q } = await setup({ queue: { retry_s: [1], max_age_s: 1 } });
    sink.rcptReply = (a) => (a === 'slow@example.net' ? 451 : null);
    q.start();
    await q.enqueue(envelope('sender@example.org', ['slow@example.net']), message('expiry'));
    await waitFor(() => sink.messages.length === 1, 15_000);
    const text = sink.messages[0]!.data.toString('latin1');
    expect(sink.messages[0]!.to).toEqual(['sender@example.org']);
    expect(text).toContain('Status: 4.4.7');
    expect(text).toMatch(/expired after \d+ s/);
    await waitFor(() => spoolEmpty(q));
  });

  it('flush makes a deferred entry due now', async () => {
    const { sink, q } = await setup({ queue: { retry_s: [3600] } });
    let refusals = 0;
    sink.rcptReply = () => (refusals++ < 1 ? 451 : null);
    q.start();
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), message('flush'));
    await waitFor(() => (q.spool.readSync(id)?.attempts ?? 0) >= 1);
    expect(sink.messages).toHaveLength(0);
    q.spool.requestFlushSync();
    await waitFor(() => sink.messages.length === 1);
    await waitFor(() => spoolEmpty(q));
    expect(fs.existsSync(q.spool.flushMarker)).toBe(false);
  });
});

describe('stop(grace)', () => {
  it('stops picking, abandons a hung delivery after the grace period, and keeps the entry for the next start', async () => {
    const { sink, q, fx } = await setup({ queue: { retry_s: [1] } });
    sink.stall = true;
    q.start();
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), message('hung'));
    await waitFor(() => sink.messages.length === 1);
    expect(q.stats().inFlight).toBe(1);
    const t0 = Date.now();
    await q.stop(200);
    expect(Date.now() - t0).toBeLessThan(5000);
    const e = q.spool.readSync(id);
    expect(e?.recipients[0]!.state).toBe('pending');
    // the next start delivers it (the hung server never said 250, so a second copy is correct SMTP behaviour)
    sink.stall = false;
    const q2 = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q2.stop(1000));
    q2.start();
    await waitFor(() => q2.spool.idsSync().length === 0);
    expect(sink.messages.length).toBe(2);
  });
});
