/*
 * The edges of the draft threshold (a message is written to the spool as it arrives once its body reaches 1 MiB)
 * through the real listener and its DATA scanner, by a raw client: a fake end (<LF>.<LF>, <CR>.<CR>,
 * <LF>.<CRLF>, <CRLF>.<LF>) just before or just after the threshold is never an end (550 for the bare line
 * ending, nothing queued, nothing left in tmp/, the session goes on); a dot-stuffed line across the threshold
 * arrives unstuffed and whole; a second transaction pipelined behind the end of a drafted message in the same
 * write is parsed as commands, as the library does, and both messages reach the smarthost byte for byte; a
 * drafted message for a local user reaches the Maildir byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { ehlo, maildirMessages, openData, RawSmtp, type Sink, spoolEntries, startSink, waitUntil } from './listener-client.js';

const MIB = 1024 * 1024;

/** a body of 78-octet CRLF lines of about `bytes` octets (the first line is the subject) */
function lines(bytes: number, subject: string): Buffer {
  const head = `Subject: ${subject}\r\n\r\n`;
  const line = `${'t'.repeat(76)}\r\n`;
  return Buffer.from(head + line.repeat(Math.ceil((bytes - head.length) / 78)), 'latin1');
}

describe('DATA at the draft threshold', () => {
  let t: TestGatehouse;
  let sink: Sink;
  let tmpDir: string;

  beforeAll(async () => {
    sink = await startSink();
    t = await startGatehouse(
      {
        smtp: { local_domains: ['local.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] }, limits: { message_bytes: 4 * MIB } },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
    tmpDir = path.join(t.gh.config.paths.spoolDir, 'tmp');
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  async function inData(c: RawSmtp): Promise<void> {
    expect((await c.cmd('MAIL FROM:<app@example.org>')).code).toBe(250);
    expect((await c.cmd('RCPT TO:<bob@example.net>')).code).toBe(250);
    expect((await c.cmd('DATA')).code).toBe(354);
  }

  it('a fake end just before or after the threshold ends nothing: 550, nothing queued or left in tmp/', async () => {
    // one session per fake end (each 550 counts against limits.max_errors)
    for (const fake of ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n']) {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        await c.read();
        await ehlo(c);
        for (const at of [MIB - 80, MIB - 2, MIB + 1, MIB + 80]) {
          await inData(c);
          const body = lines(2 * MIB, 'fake');
          // the fake end replaces the CRLF of the line around `at`, a second transaction behind it
          const cut = body.lastIndexOf('\r\n', at);
          c.write(Buffer.concat([body.subarray(0, cut), Buffer.from(`${fake}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n`), body.subarray(cut + 2), Buffer.from('.\r\n')]));
          const r = await c.read(20_000);
          expect(r.code, `${JSON.stringify(fake)} at ${at}`).toBe(550);
          expect((await c.cmd('NOOP')).code).toBe(250);
        }
      } finally {
        c.close();
      }
    }
    expect(await waitUntil(() => !fs.existsSync(tmpDir) || fs.readdirSync(tmpDir).length === 0, 10_000)).toBe(true);
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
    expect(t.decisions.filter((d) => d.rule === 'smtp.queued')).toEqual([]);
  });

  it('a dot-stuffed line across the threshold, then a pipelined second transaction in the same write: both whole', async () => {
    const before = sink.messages.length;
    const first = lines(MIB + 200, 'straddle');
    // the line that crosses 1 MiB starts with a dot (sent stuffed: "..")
    const lineStart = first.lastIndexOf('\r\n', MIB - 10) + 2;
    expect(first.toString('latin1', lineStart - 2, lineStart)).toBe('\r\n');
    const sent = Buffer.concat([first.subarray(0, lineStart), Buffer.from('..'), first.subarray(lineStart + 2)]);
    const want1 = Buffer.concat([first.subarray(0, lineStart), Buffer.from('.'), first.subarray(lineStart + 2)]);
    const want2 = Buffer.from('Subject: second\r\n\r\nsmall\r\n.dot\r\n');
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      await inData(c);
      c.write(Buffer.concat([sent, Buffer.from('.\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nSubject: second\r\n\r\nsmall\r\n..dot\r\n.\r\nQUIT\r\n')]));
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await c.read(20_000)).code);
      expect(codes).toEqual([250, 250, 250, 354, 250, 221]);
    } finally {
      c.close();
    }
    const msgs = await sink.waitFor(before + 2, 20_000);
    expect(msgs).toHaveLength(before + 2);
    const bodies = msgs.slice(before).map((m) => m.data.subarray(m.data.indexOf(Buffer.from('Subject: '))));
    expect(bodies.some((b) => b.equals(want1))).toBe(true);
    expect(bodies.some((b) => b.equals(want2))).toBe(true);
  });

  it('a drafted message for a local user lands in the Maildir byte for byte (after the delivery headers and Received:)', async () => {
    const body = lines(2 * MIB, 'local');
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c, 'app@example.org', 'alice@local.test');
      c.write(Buffer.concat([body, Buffer.from('.\r\n')]));
      expect((await c.read(20_000)).code).toBe(250);
    } finally {
      c.close();
    }
    const stateDir = t.gh.config.paths.stateDir;
    expect(await waitUntil(() => maildirMessages(stateDir, 'alice').length === 1, 20_000)).toBe(true);
    const got = maildirMessages(stateDir, 'alice')[0]!;
    const at = got.indexOf(Buffer.from('Subject: local'));
    expect(got.subarray(0, at).toString('latin1')).toMatch(/^Return-Path: <app@example\.org>\r\n(?:[\w-]+: [^\r]*\r\n)*Received: /);
    expect(got.subarray(at).equals(body)).toBe(true);
  });
});
