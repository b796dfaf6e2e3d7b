/*
 * Large messages through the real listener, written to the spool as they arrive (MailQueue.draft, once a
 * message passes 1 MiB): an honest one sent by a real client (nodemailer, which dot-stuffs) reaches the
 * smarthost byte for byte behind our Received: header (also after STARTTLS); one with a bare LF deep inside, one over the size
 * limit, and one whose client goes away in the middle are refused or dropped and leave nothing in the spool
 * (msg/ nor tmp/); the session stays usable after a refusal. With a queue the test controls: a draft that
 * cannot be made leaves the message in memory (queued whole, tried once); a commit that fails answers 451.
 */
import fs from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createListener } from '../../src/smtp/listener.js';
import type { MailQueue, QueueDraft } from '../../src/smtp/queue-types.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { openData, RawSmtp, type Sink, spoolEntries, startSink, waitUntil } from './listener-client.js';

const MIB = 1024 * 1024;

/** `mib` MiB of 78-octet CRLF lines, every 1000th starting with a dot; headers first */
function bigMessage(mib: number, subject: string): Buffer {
  const head = `From: <app@example.org>\r\nTo: <bob@example.net>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n`;
  const lines: string[] = [];
  for (let n = 0; head.length + lines.length * 78 < mib * MIB; n++) {
    const text = `${n.toString(36)}-${'x'.repeat(70)}`.slice(0, 76);
    lines.push(n % 1000 === 999 ? `.${text.slice(1)}` : text);
  }
  return Buffer.from(`${head}${lines.join('\r\n')}\r\n`, 'latin1');
}

describe('large DATA written to the spool as it arrives', () => {
  let t: TestGatehouse;
  let sink: Sink;
  let tmpDir: string;

  beforeAll(async () => {
    sink = await startSink();
    t = await startGatehouse({
      smtp: { local_domains: ['local.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] }, limits: { message_bytes: 12 * MIB } },
    });
    tmpDir = path.join(t.gh.config.paths.spoolDir, 'tmp');
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  const tmpEmpty = () => waitUntil(() => !fs.existsSync(tmpDir) || fs.readdirSync(tmpDir).length === 0, 10_000);

  it('delivers an honest 6 MiB message byte for byte behind the Received: header', async () => {
    const raw = bigMessage(6, 'big');
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, ignoreTLS: true, logger: false });
    const info = await client.sendMail({ envelope: { from: 'app@example.org', to: ['bob@example.net'] }, raw });
    client.close();
    expect(info.response).toMatch(/^250 2\.6\.0 Ok: queued as \w+/);
    const msgs = await sink.waitFor(1, 20_000);
    expect(msgs).toHaveLength(1);
    const got = msgs[0]!.data;
    expect(got.subarray(0, 10).toString()).toBe('Received: ');
    const at = got.indexOf(Buffer.from('From: <app@example.org>'));
    expect(at).toBeGreaterThan(0);
    expect(got.subarray(at).equals(raw)).toBe(true);
    const queued = t.decisions.find((d) => d.rule === 'smtp.queued');
    expect(queued?.reason).toContain(`(${got.length} bytes, 1 recipient(s))`);
    expect(await waitUntil(() => spoolEntries(t.gh.config.paths.stateDir).length === 0, 10_000)).toBe(true);
    expect(await tmpEmpty()).toBe(true);
  });

  it('delivers a large message sent after STARTTLS (a new parser) byte for byte', async () => {
    const raw = bigMessage(3, 'bigtls');
    const before = sink.messages.length;
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, logger: false });
    const info = await client.sendMail({ envelope: { from: 'app@example.org', to: ['bob@example.net'] }, raw });
    client.close();
    expect(info.response).toMatch(/^250 /);
    const msgs = await sink.waitFor(before + 1, 20_000);
    const got = msgs[before]!;
    expect(got.data.subarray(got.data.indexOf(Buffer.from('From: <app@example.org>'))).equals(raw)).toBe(true);
    expect(got.data.toString('latin1', 0, 400)).toMatch(/using TLS/);
  });

  it('takes three large messages at once, each whole and in its own entry', async () => {
    const before = sink.messages.length;
    const raws = ['para', 'parb', 'parc'].map((tag, i) => bigMessage(2 + i, tag));
    await Promise.all(
      raws.map(async (raw) => {
        const client = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, ignoreTLS: true, logger: false });
        try {
          const info = await client.sendMail({ envelope: { from: 'app@example.org', to: ['bob@example.net'] }, raw });
          expect(info.response).toMatch(/^250 /);
        } finally {
          client.close();
        }
      }),
    );
    const msgs = await sink.waitFor(before + 3, 30_000);
    expect(msgs).toHaveLength(before + 3);
    for (const raw of raws) {
      const subject = raw.subarray(0, 200).toString('latin1').match(/Subject: (\w+)/)![1]!;
      const got = msgs.slice(before).filter((m) => m.data.includes(Buffer.from(`Subject: ${subject}\r\n`)));
      expect(got).toHaveLength(1);
      expect(got[0]!.data.subarray(got[0]!.data.indexOf(Buffer.from('From: <app@example.org>'))).equals(raw)).toBe(true);
    }
    expect(await tmpEmpty()).toBe(true);
  });

  it('refuses a large message with a bare LF deep inside (550), drops what was written, and the session goes on', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      const body = bigMessage(4, 'smuggle');
      c.write(Buffer.concat([body.subarray(0, 3 * MIB), Buffer.from('\r\nx\n.\nMAIL FROM:<evil@example.org>\r\n'), body.subarray(3 * MIB), Buffer.from('.\r\n')]));
      const r = await c.read();
      expect(r.code).toBe(550);
      expect(r.text).toMatch(/bare <LF>/);
      expect((await c.cmd('NOOP')).code).toBe(250);
    } finally {
      c.close();
    }
    expect(await tmpEmpty()).toBe(true);
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
  });

  it('refuses a message over the size limit (552) after streaming part of it, and drops it', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      c.write(Buffer.concat([bigMessage(13, 'huge'), Buffer.from('.\r\n')]));
      const r = await c.read();
      expect(r.code).toBe(552);
    } finally {
      c.close();
    }
    expect(await tmpEmpty()).toBe(true);
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
  });

  it('drops a large message whose client goes away before its end', async () => {
    const before = t.decisions.filter((d) => d.rule === 'smtp.queued').length;
    const c = await RawSmtp.connect(t.port('smtp'));
    await openData(c, 'app@example.org', 'bob@example.net');
    c.write(bigMessage(3, 'gone'));
    // the server has started the draft once something is in tmp/
    expect(await waitUntil(() => fs.existsSync(tmpDir) && fs.readdirSync(tmpDir).length > 0, 10_000)).toBe(true);
    c.close();
    expect(await tmpEmpty()).toBe(true);
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
    expect(t.decisions.filter((d) => d.rule === 'smtp.queued').length).toBe(before);
  });
});

describe('large DATA and a queue that cannot take a draft', () => {
  let t: TestGatehouse;

  beforeAll(async () => {
    // Gatehouse without its own SMTP listener: the test builds one around a queue it controls
    t = await startGatehouse({ smtp: { enabled: false, local_domains: ['local.test'], limits: { message_bytes: 12 * MIB } } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('keeps the message in memory and queues it whole when the draft cannot be made', async () => {
    const got: Buffer[] = [];
    let drafts = 0;
    const queue: MailQueue = {
      enqueue: (_e, data, id) => {
        got.push(Buffer.from(data));
        return Promise.resolve(id ?? 'x');
      },
      draft: () => {
        drafts++;
        throw new Error('EMFILE: too many open files');
      },
      start() {},
      stop: () => Promise.resolve(),
    };
    const l = createListener(t.gh.runtime, queue);
    const [addr] = await l.start();
    try {
      const c = await RawSmtp.connect(addr!.port);
      try {
        await openData(c, 'x@example.org', 'alice@local.test');
        const raw = bigMessage(3, 'fallback');
        c.write(Buffer.concat([raw, Buffer.from('.\r\n')]));
        const r = await c.read();
        expect(r.code).toBe(250);
        expect(drafts).toBe(1); // tried once, not for every chunk after
        expect(got).toHaveLength(1);
        expect(got[0]!.subarray(got[0]!.indexOf(Buffer.from('From: <app@example.org>'))).equals(raw)).toBe(true);
      } finally {
        c.close();
      }
    } finally {
      await l.stop(100);
    }
  });

  it('answers 451 and acknowledges nothing when the draft cannot be committed', async () => {
    const written: number[] = [];
    let aborted = 0;
    const queue: MailQueue = {
      enqueue: () => Promise.reject(new Error('not expected: the message is drafted')),
      draft: (): QueueDraft => ({
        write: (chunk) => {
          written.push(chunk.length);
          return true;
        },
        onRoom: () => undefined,
        commit: () => Promise.reject(new Error('EIO: fsync failed')),
        abort: () => {
          aborted++;
        },
      }),
      start() {},
      stop: () => Promise.resolve(),
    };
    const l = createListener(t.gh.runtime, queue);
    const [addr] = await l.start();
    try {
      const c = await RawSmtp.connect(addr!.port);
      try {
        await openData(c, 'x@example.org', 'alice@local.test');
        const raw = bigMessage(3, 'eio');
        c.write(Buffer.concat([raw, Buffer.from('.\r\n')]));
        const r = await c.read();
        expect(r.code).toBe(451);
        expect(r.text).not.toContain('EIO');
        expect(written.reduce((a, b) => a + b, 0)).toBeGreaterThan(raw.length); // Received: + the message
        expect((await c.cmd('NOOP')).code).toBe(250);
      } finally {
        c.close();
      }
    } finally {
      await l.stop(100);
    }
    expect(t.decisions.some((d) => d.rule === 'smtp.queue')).toBe(true);
    expect(aborted).toBe(1); // the listener drops a draft that did not become an entry
  });
});
