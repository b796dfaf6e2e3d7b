/*
 * SMTP smuggling (CVE-2023-51764 family) against the running listener, from the trusted network (the
 * client that could relay a smuggled second message): every non-standard end-of-data variant is sent with
 * a complete second transaction behind it. The whole DATA must be refused with a 5xx, the session must stay
 * usable, and neither the spool nor the smarthost sink may ever see the second message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { ehlo, openData, RawSmtp, type Sink, spoolEntries, startSink } from './listener-client.js';

const VARIANTS: [string, string][] = [
  ['<LF>.<LF>', '\n.\n'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR>.<CR><LF>', '\r.\r\n'],
  ['<CR><LF>.<CR>', '\r\n.\r'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<LF>.<CR>', '\n.\r'],
  ['<CR><LF>.<CR><CR><LF>', '\r\n.\r\r\n'],
];

describe('smtp smuggling defence', () => {
  let t: TestGatehouse;
  let sink: Sink;

  beforeAll(async () => {
    sink = await startSink();
    t = await startGatehouse(
      { smtp: { local_domains: ['local.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } } },
      [{ name: 'alice', password: PASSWORD }],
    );
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  for (const [name, end] of VARIANTS) {
    it(`refuses DATA with a ${name} fake end and never queues the smuggled message`, async () => {
      const c = await RawSmtp.connect(t.port('smtp'));
      try {
        await openData(c, 'app@example.org', 'bob@example.net');
        const smuggled = `MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled ${name}\r\n\r\nsmuggled body\r\n`;
        c.write(`Subject: cover\r\n\r\ncover text${end}${smuggled}.\r\n`);
        const r = await c.read();
        expect(r.code).toBeGreaterThanOrEqual(500);
        expect(r.code).toBeLessThan(600);
        expect(r.text).toMatch(/^550 5\.6\.0 .*bare <(LF|CR)>/);
        // no second reply: nothing after the fake end was taken as a command
        const noop = await c.cmd('NOOP');
        expect(noop.code).toBe(250);
        // the session is still usable for an honest message
        expect((await c.cmd('MAIL FROM:<app@example.org>')).code).toBe(250);
      } finally {
        c.close();
      }
      expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
    });
  }

  it('also refuses a smuggling attempt split across TCP segments at the fake end', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      c.write('MAIL FROM:<app@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n');
      expect((await c.read()).code).toBe(250);
      expect((await c.read()).code).toBe(250);
      expect((await c.read()).code).toBe(354);
      for (const part of ['Subject: split\r\n\r\ntext', '\n', '.', '\n', 'MAIL FROM:<evil@example.org>\r\n', 'RCPT TO:<victim@example.net>\r\nDATA\r\n', 'x\r\n', '.\r\n']) {
        c.write(part);
        await new Promise((res) => setTimeout(res, 20));
      }
      const r = await c.read();
      expect(r.code).toBe(550);
    } finally {
      c.close();
    }
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
  });

  it('delivers an honest message with dot-stuffed lines intact and nothing smuggled ever reached the sink', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      c.write('Subject: honest\r\n\r\n..\r\n...dots\r\nend\r\n.\r\n');
      const r = await c.read();
      expect(r.code).toBe(250);
    } finally {
      c.close();
    }
    const msgs = await sink.waitFor(1);
    expect(msgs).toHaveLength(1);
    const text = msgs[0]!.data.toString('latin1');
    expect(text.endsWith('Subject: honest\r\n\r\n.\r\n..dots\r\nend\r\n')).toBe(true);
    expect(sink.messages.some((m) => m.data.includes(Buffer.from('smuggled')) || m.to.includes('victim@example.net'))).toBe(false);
  });
});
