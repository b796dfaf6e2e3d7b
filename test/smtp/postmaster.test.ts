// RFC 5321 §4.5.1: RCPT TO:<Postmaster> without a domain is accepted and lands in the postmaster's Maildir.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawSmtp, ehlo, maildirMessages, waitUntil } from './listener-client.js';

let t: TestGatehouse;
beforeAll(async () => {
  t = await startGatehouse({ smtp: { local_domains: ['office.test'] }, ftp: { enabled: false }, nntp: { enabled: false } }, [{ name: 'postmaster', password: PASSWORD }]);
});
afterAll(async () => {
  await t?.stop();
});

describe('postmaster', () => {
  it('accepts <Postmaster> from a remote client and delivers it to the postmaster mailbox', async () => {
    const c = await RawSmtp.connect(t.port('smtp'), { localAddress: '127.0.0.20' });
    try {
      expect((await c.read()).code).toBe(220);
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<someone@example.net>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<Postmaster>')).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
      expect((await c.cmd('Subject: hello postmaster\r\n\r\nabuse report\r\n.')).code).toBe(250);
      expect((await c.cmd('QUIT')).code).toBe(221);
    } finally {
      c.close();
    }
    expect(await waitUntil(() => maildirMessages(t.gh.config.paths.stateDir, 'postmaster').length === 1, 15_000)).toBe(true);
    const [msg] = maildirMessages(t.gh.config.paths.stateDir, 'postmaster');
    expect(msg!.toString('latin1')).toMatch(/Delivered-To: postmaster@office\.test/);
    expect(msg!.toString('latin1')).toMatch(/abuse report/);
  });
});
