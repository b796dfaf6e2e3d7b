/*
 * smtp.limits.line_deadline_s: a command line, or a line of DATA, must be complete within the deadline of its
 * first byte. A client trickling a byte at a time resets the idle timer forever (slowloris); this ends it with
 * 421 4.4.2, before and after STARTTLS (the library makes a new parser then) and inside DATA (nothing queued),
 * while a slow client that sends whole lines is left alone. Also pins the smtp-server internals watchLines uses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawSmtp, ehlo, spoolEntries } from './listener-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Send `text` a byte every `everyMs` until the server closes or `maxMs` passes; true when it closed. */
async function trickle(c: RawSmtp, text: string, everyMs: number, maxMs: number): Promise<boolean> {
  const until = Date.now() + maxMs;
  for (let i = 0; Date.now() < until; i++) {
    c.write(text[i % text.length]!);
    if (await c.waitClosed(everyMs)) return true;
  }
  return false;
}

describe('smtp line deadline', () => {
  let t: TestGatehouse;

  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'], limits: { line_deadline_s: 1, idle_timeout_s: 30 } } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('ends a session whose command line trickles in a byte at a time: 421 4.4.2, audited', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      const t0 = Date.now();
      expect(await trickle(c, 'EHLO slow.example.org', 200, 8000)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(c.pending()).toMatch(/^421 4\.4\.2 /m);
    } finally {
      c.close();
    }
    expect(t.decisions.some((d) => d.rule === 'limits.line_deadline' && d.verdict === 'deny')).toBe(true);
  });

  it('leaves a slow client alone while its lines arrive whole', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      for (let i = 0; i < 4; i++) {
        await sleep(700); // longer than nothing, shorter than the idle timeout; each line in one piece
        expect((await c.cmd('NOOP')).code).toBe(250);
      }
    } finally {
      c.close();
    }
  });

  it('also after STARTTLS (a new parser) and inside DATA, where nothing is queued', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      await ehlo(c);
      expect((await c.cmd('STARTTLS')).code).toBe(220);
      await c.upgrade();
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<alice@local.test>')).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
      c.write('Subject: slow\r\n\r\nfirst line arrives whole\r\n');
      expect(await trickle(c, 'and this one never ends', 200, 8000)).toBe(true);
      expect(c.pending()).toMatch(/^421 4\.4\.2 /m);
    } finally {
      c.close();
    }
    expect(spoolEntries(t.gh.config.paths.stateDir)).toEqual([]);
  });
});
