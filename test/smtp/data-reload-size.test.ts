/*
 * A reload that changes smtp.limits.message_bytes while a session is in the middle of DATA: the session keeps
 * the limit it started the message with (as it keeps the rest of its config), and the client's answer always
 * matches what happened to the message: a 250 only with an entry in the queue (delivered once), a 552 only
 * with nothing queued. Before the fix, smtp-server judged the end of DATA against the server's *new* size
 * option while the listener judged it against the session's old limit: a message between the two was queued
 * and delivered, and the client was told 552 (so it would send it again: a duplicate).
 */
import fs from 'node:fs';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { openData, RawSmtp, type Sink, spoolEntries, startSink, waitUntil } from './listener-client.js';

const MIB = 1024 * 1024;

function body(bytes: number, subject: string): Buffer {
  const lines = [`Subject: ${subject}`, ''];
  let n = lines.join('\r\n').length;
  for (let i = 0; n < bytes; i++) {
    const l = `${i.toString(36)}-${'y'.repeat(70)}`;
    lines.push(l);
    n += l.length + 2;
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1');
}

async function setLimit(t: TestGatehouse, bytes: number): Promise<void> {
  const raw = parse(fs.readFileSync(t.configFile, 'utf8')) as { smtp: { limits?: Record<string, unknown> } };
  raw.smtp.limits = { ...(raw.smtp.limits ?? {}), message_bytes: bytes };
  fs.writeFileSync(t.configFile, stringify(raw));
  const res = await t.gh.reload();
  expect(res.ok).toBe(true);
}

describe('reload of the size limit in the middle of DATA', () => {
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

  async function inData(): Promise<RawSmtp> {
    const c = await RawSmtp.connect(t.port('smtp'));
    await openData(c, 'app@example.org', 'bob@example.net');
    return c;
  }

  for (const [name, bytes] of [
    ['small (kept in memory)', 300 * 1024],
    ['large (drafted)', 2 * MIB],
  ] as const) {
    it(`a ${name} message under the old limit, over the new one: the session's limit decides, and the reply matches the queue`, async () => {
      await setLimit(t, 4 * MIB);
      const before = sink.messages.length;
      const c = await inData();
      try {
        const msg = body(bytes, `reload-${bytes}`);
        c.write(msg.subarray(0, msg.length >> 1));
        await setLimit(t, 100 * 1024);
        c.write(Buffer.concat([msg.subarray(msg.length >> 1), Buffer.from('.\r\n')]));
        const r = await c.read();
        expect(r.code).toBe(250);
        const msgs = await sink.waitFor(before + 1, 20_000);
        expect(msgs.length).toBe(before + 1);
        expect(msgs[before]!.data.includes(msg)).toBe(true);
        expect((await c.cmd('NOOP')).code).toBe(250);
      } finally {
        c.close();
      }
      expect(await waitUntil(() => spoolEntries(t.gh.config.paths.stateDir).length === 0, 10_000)).toBe(true);
    });
  }

  it('a message over the old limit is refused (552) and nothing is queued, also when the limit grew meanwhile', async () => {
    await setLimit(t, 1 * MIB);
    const c = await inData();
    try {
      const msg = body(2 * MIB, 'reload-grow');
      c.write(msg.subarray(0, MIB >> 1));
      await setLimit(t, 8 * MIB);
      c.write(Buffer.concat([msg.subarray(MIB >> 1), Buffer.from('.\r\n')]));
      expect((await c.read()).code).toBe(552);
    } finally {
      c.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
    expect(sink.messages.some((m) => m.data.includes(Buffer.from('Subject: reload-grow')))).toBe(false);
  });
});
