/*
 * Limits and failure paths of the SMTP listener: SIZE and over-size DATA (552, nothing queued), NUL bytes,
 * long lines, the idle timeout; with a controllable queue: 250 only after enqueue resolved, 451 4.3.0 when
 * it fails, stop(grace) letting an in-flight DATA finish, and reload taking effect for new sessions only.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { createListener } from '../../src/smtp/listener.js';
import type { Envelope, MailQueue } from '../../src/smtp/queue-types.js';
import { RawSmtp, ehlo, maildirMessages, spoolEntries, waitUntil } from './listener-client.js';

async function openData(c: RawSmtp, rcpt = 'alice@local.test'): Promise<void> {
  await c.read();
  await ehlo(c);
  expect((await c.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
  expect((await c.cmd(`RCPT TO:<${rcpt}>`)).code).toBe(250);
  expect((await c.cmd('DATA')).code).toBe(354);
}

describe('smtp limits', () => {
  let t: TestGatehouse;
  let stateDir: string;

  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'], limits: { message_bytes: 4096, idle_timeout_s: 1 } } }, [{ name: 'alice', password: PASSWORD }]);
    stateDir = t.gh.config.paths.stateDir;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('refuses MAIL FROM with a SIZE over the limit', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      expect(await ehlo(c)).toContain('SIZE 4096');
      const r = await c.cmd('MAIL FROM:<x@example.org> SIZE=5000');
      expect(r.code).toBe(552);
    } finally {
      c.close();
    }
  });

  it.each([
    ['MAIL FROM:<x@example.org> FOO=BAR', 555, '5.5.4 Unsupported option: FOO'],
    ['MAIL FROM:<x@example.org> SMTPUTF8', 555, '5.5.4 Unsupported option: SMTPUTF8'], // not announced
    ['MAIL FROM:<x@example.org> RET=HDRS', 555, '5.5.4 Unsupported option: RET'], // DSN is not announced
    ['MAIL FROM:<x@example.org> BODY=BINARYMIME', 501, '5.5.4 Error: BODY must be 7BIT or 8BITMIME'], // refused by smtp-server itself, in our words
    ['MAIL FROM:<x@example.org> SIZE=100 BODY=8BITMIME AUTH=<>', 250, '2.1.0'],
    ['MAIL FROM:<x@example.org> body=7bit', 250, '2.1.0'],
  ])('MAIL parameters: %s → %i', async (line, code, text) => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      const r = await c.cmd(line);
      expect(r.code).toBe(code);
      expect(r.text).toContain(text);
    } finally {
      c.close();
    }
  });

  it('RCPT takes no parameters (NOTIFY/ORCPT belong to DSN, which is not announced): 555, audited', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
      const r = await c.cmd('RCPT TO:<alice@local.test> NOTIFY=NEVER');
      expect(r.code).toBe(555);
      expect(r.text).toContain('5.5.4 Unsupported option: NOTIFY');
      expect((await c.cmd('RCPT TO:<alice@local.test>')).code).toBe(250);
    } finally {
      c.close();
    }
    expect(t.decisions.some((d) => d.rule === 'esmtp.parameter' && d.phase === 'rcpt' && d.verdict === 'deny')).toBe(true);
  });

  it.each(['HELO', 'EHLO', 'HELO two words'])('%s without one host name: 501 with an enhanced status code', async (line) => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      const r = await c.cmd(line);
      expect(r.code).toBe(501);
      expect(r.text).toMatch(/^501 5\.5\.4 /);
    } finally {
      c.close();
    }
  });

  it('refuses an over-size message with 552 and queues nothing', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c);
      c.write(`Subject: big\r\n\r\n${`${'x'.repeat(70)}\r\n`.repeat(100)}.\r\n`);
      const r = await c.read();
      expect(r.code).toBe(552);
      expect(r.text).toContain('5.3.4');
      expect((await c.cmd('NOOP')).code).toBe(250);
    } finally {
      c.close();
    }
    expect(spoolEntries(stateDir)).toEqual([]);
    expect(t.decisions.some((d) => d.rule === 'limits.message_bytes')).toBe(true);
  });

  it('refuses NUL bytes and lines over 998 octets with 550 5.6.0', async () => {
    for (const body of ['Subject: nul\r\n\r\na\0b\r\n', `Subject: long\r\n\r\n${'y'.repeat(999)}\r\n`]) {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        await openData(c);
        c.write(`${body}.\r\n`);
        const r = await c.read();
        expect(r.code).toBe(550);
        expect(r.text).toContain('5.6.0');
      } finally {
        c.close();
      }
    }
    expect(spoolEntries(stateDir)).toEqual([]);
  });

  it('accepts a 998-octet line and delivers it unchanged', async () => {
    const line = 'z'.repeat(998);
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c);
      c.write(`Subject: edge\r\n\r\n${line}\r\n.\r\n`);
      const r = await c.read();
      expect(r.code).toBe(250);
      expect(r.text).toMatch(/^250 2\.6\.0 Ok: queued as \S+$/);
    } finally {
      c.close();
    }
    expect(await waitUntil(() => maildirMessages(stateDir, 'alice').some((m) => m.includes(Buffer.from(`\r\n${line}\r\n`))))).toBe(true);
  });

  it('closes an idle session with 421 after idle_timeout_s', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      const r = await c.read(5000);
      expect(r.code).toBe(421);
      expect(await c.waitClosed(3000)).toBe(true);
    } finally {
      c.close();
    }
  });
});

interface Deferred {
  envelope: Envelope;
  data: Buffer;
  /** the queue id the listener chose (and named in Received:) */
  id: string | undefined;
  resolve(id: string): void;
  reject(err: Error): void;
}

/** A queue the test controls: every enqueue waits until the test resolves or rejects it. */
function controlledQueue() {
  const calls: Deferred[] = [];
  let stopped = false;
  const queue: MailQueue = {
    enqueue: (envelope, data, id) =>
      new Promise<string>((resolve, reject) => {
        calls.push({ envelope, data, id, resolve, reject });
      }),
    start() {},
    stop() {
      stopped = true;
      return Promise.resolve();
    },
  };
  return { queue, calls, isStopped: () => stopped };
}

describe('smtp listener and its queue', () => {
  let t: TestGatehouse;

  beforeAll(async () => {
    // Gatehouse without its own SMTP listener: the test builds one around a controllable queue.
    t = await startGatehouse({ smtp: { enabled: false, local_domains: ['local.test'] } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers 250 only after the queue has the message, with the queue id', async () => {
    const q = controlledQueue();
    const l = createListener(t.gh.runtime, q.queue);
    const [addr] = await l.start();
    try {
      const c = await RawSmtp.connect(addr!.port);
      try {
        await openData(c);
        c.write('Subject: wait\r\n\r\nbody\r\n.\r\n');
        expect(await waitUntil(() => q.calls.length === 1, 5000)).toBe(true);
        await new Promise((r) => setTimeout(r, 200));
        expect(c.pending()).toBe('');
        const call = q.calls[0]!;
        expect(call.envelope.sender).toBe('x@example.org');
        expect(call.envelope.recipients.map((r) => r.address)).toEqual(['alice@local.test']);
        expect(call.envelope.clientIp).toBe('127.0.0.1');
        expect(call.envelope.helo).toBe('client.test');
        expect(call.envelope.user).toBeNull();
        expect(call.id).toMatch(/^[0-9a-z]{8,64}$/);
        expect(call.data.toString('latin1')).toMatch(new RegExp(`^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\r\n\tby gatehouse\\.test \\(Gatehouse\\) with ESMTP id ${call.id}\r\n\tfor <alice@local\\.test>; \\w{3}, \\d{2} \\w{3} \\d{4} \\d{2}:\\d{2}:\\d{2} \\+0000\r\nSubject: wait\r\n\r\nbody\r\n$`));
        call.resolve(call.id!);
        const r = await c.read();
        expect(r.text).toBe(`250 2.6.0 Ok: queued as ${call.id}`);
      } finally {
        c.close();
      }
    } finally {
      await l.stop(100);
    }
    expect(q.isStopped()).toBe(true);
  });

  it('answers 451 4.3.0 and acknowledges nothing when the queue fails', async () => {
    const q = controlledQueue();
    const l = createListener(t.gh.runtime, q.queue);
    const [addr] = await l.start();
    try {
      const c = await RawSmtp.connect(addr!.port);
      try {
        await openData(c);
        c.write('Subject: fail\r\n\r\nbody\r\n.\r\n');
        expect(await waitUntil(() => q.calls.length === 1, 5000)).toBe(true);
        q.calls[0]!.reject(new Error('ENOSPC: no space left on device'));
        const r = await c.read();
        expect(r.code).toBe(451);
        expect(r.text).toContain('4.3.0');
        expect(r.text).not.toContain('ENOSPC');
        expect((await c.cmd('NOOP')).code).toBe(250);
      } finally {
        c.close();
      }
    } finally {
      await l.stop(100);
    }
  });

  it('stop(grace) tells idle sessions 421 at once and lets an in-flight DATA finish', async () => {
    const q = controlledQueue();
    const l = createListener(t.gh.runtime, q.queue);
    const [addr] = await l.start();
    const idle = await RawSmtp.connect(addr!.port);
    const busy = await RawSmtp.connect(addr!.port);
    try {
      expect((await idle.read()).code).toBe(220);
      await openData(busy);
      busy.write('Subject: inflight\r\n\r\nbody\r\n.\r\n');
      expect(await waitUntil(() => q.calls.length === 1, 5000)).toBe(true);
      const stopping = l.stop(3000);
      const bye = await idle.read();
      expect(bye.code).toBe(421);
      q.calls[0]!.resolve('inflight01');
      const r = await busy.read();
      expect(r.text).toBe('250 2.6.0 Ok: queued as inflight01');
      await stopping;
      expect(q.isStopped()).toBe(true);
      await expect(RawSmtp.connect(addr!.port)).rejects.toThrow();
    } finally {
      idle.close();
      busy.close();
      await l.stop(0);
    }
  });

  it('reload: new sessions get the new config, an open session keeps its own', async () => {
    const q = controlledQueue();
    const l = createListener(t.gh.runtime, q.queue);
    const [addr] = await l.start();
    const old = await RawSmtp.connect(addr!.port);
    try {
      expect((await old.read()).code).toBe(220);
      await ehlo(old);
      const raw = parse(fs.readFileSync(t.configFile, 'utf8')) as Record<string, any>;
      raw.smtp.limits = { ...(raw.smtp.limits ?? {}), recipients: 1 };
      raw.hostname = 'reloaded.test';
      fs.writeFileSync(t.configFile, stringify(raw));
      const res = await t.gh.reload();
      expect(res.ok).toBe(true);
      l.reload(t.gh.runtime);
      const fresh = await RawSmtp.connect(addr!.port);
      try {
        expect((await fresh.read()).text).toMatch(/^220 reloaded\.test /);
        await ehlo(fresh);
        expect((await fresh.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
        expect((await fresh.cmd('RCPT TO:<alice@local.test>')).code).toBe(250);
        expect((await fresh.cmd('RCPT TO:<Alice2@local.test>')).code).toBe(452);
      } finally {
        fresh.close();
      }
      // the old session still has the recipient limit it started with (100)
      expect((await old.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
      expect((await old.cmd('RCPT TO:<alice@local.test>')).code).toBe(250);
      expect((await old.cmd('RCPT TO:<nobody@local.test>')).code).toBe(550);
    } finally {
      old.close();
      await l.stop(100);
    }
  });
});
