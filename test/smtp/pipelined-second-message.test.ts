/*
 * Two messages and more commands pipelined in one write (the second MAIL/RCPT/DATA, its content and end, then
 * NOOP and QUIT, all behind the first message's end): every command gets its reply, in order, as with one
 * message. smtp-server 3.21's SMTPStream.continue() runs the continuation (the commands behind the first end)
 * and then clears `_continueCallback`; with our synchronous MAIL/RCPT handlers that continuation runs the second
 * DATA to its end inside the call, whose own continuation was then wiped: the commands behind the second
 * message were never read and the session hung until its idle timeout (src/smtp/data-scan.ts: useSafeContinue).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { openData, RawSmtp, type Sink, startSink, waitUntil } from './listener-client.js';

const MIB = 1024 * 1024;
const second = 'MAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nSubject: second\r\n\r\ny\r\n.\r\n';

describe('a second message pipelined behind the first, then more commands', () => {
  let t: TestGatehouse;
  let sink: Sink;

  beforeAll(async () => {
    sink = await startSink();
    t = await startGatehouse({
      smtp: { local_domains: ['local.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] }, limits: { message_bytes: 4 * MIB } },
    });
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  for (const [name, first] of [
    ['small', 'Subject: first\r\n\r\nx\r\n'],
    ['large (drafted)', `Subject: first\r\n\r\n${`${'z'.repeat(76)}\r\n`.repeat(20_000)}`],
  ] as const) {
    it(`after a ${name} first message: both queued, NOOP and QUIT answered`, async () => {
      const before = sink.messages.length;
      const c = await RawSmtp.connect(t.port('smtp'));
      const codes: number[] = [];
      try {
        await openData(c, 'app@example.org', 'bob@example.net');
        c.write(`${first}.\r\n${second}${second}NOOP\r\nQUIT\r\n`);
        for (let i = 0; i < 11; i++) codes.push((await c.read(10_000)).code);
      } finally {
        c.close();
      }
      expect(codes).toEqual([250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 221]);
      const msgs = await sink.waitFor(before + 3, 20_000);
      expect(msgs).toHaveLength(before + 3);
      expect(await waitUntil(() => sink.messages.length === before + 3, 1000)).toBe(true);
    });
  }
});
