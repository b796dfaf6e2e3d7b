/*
 * The SMTP listener on loopback, driven by a raw client: greeting, ESMTP features, STARTTLS and AUTH
 * ordering, implicit TLS, access denial at greeting, connection caps, the STARTTLS injection defence
 * (CVE-2011-0411), unknown commands and the error budget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawSmtp, ehlo, freePort } from './listener-client.js';

const plainAuth = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

describe('smtp listener', () => {
  let t: TestGatehouse;
  let implicitPort: number;

  beforeAll(async () => {
    implicitPort = await freePort();
    t = await startGatehouse(
      {
        access: { allow: ['127.0.0.0/8', '::1/128'], deny: ['127.0.0.66/32'] },
        smtp: {
          implicit_tls_listen: `127.0.0.1:${implicitPort}`,
          local_domains: ['local.test'],
          limits: { connections_per_ip: 3, max_errors: 4, message_bytes: 65_536 },
        },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
  });
  afterAll(async () => {
    await t?.stop();
  });

  const connect = (localAddress = '127.0.0.1') => RawSmtp.connect(t.port('smtp'), { localAddress });

  it('greets with the configured host name and offers the ESMTP features, AUTH only after STARTTLS', async () => {
    const c = await connect();
    try {
      const greeting = await c.read();
      expect(greeting.code).toBe(220);
      expect(greeting.text).toMatch(/^220 gatehouse\.test ESMTP/);
      const features = await ehlo(c);
      for (const f of ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'SIZE 65536']) expect(features).toContain(f);
      expect(features.some((f) => f.startsWith('AUTH'))).toBe(false);
      expect(features.some((f) => /XCLIENT|XFORWARD|SMTPUTF8/.test(f))).toBe(false);
      const early = await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`);
      expect(early.code).toBe(530);
      expect(early.text).toContain('5.7.0');
      expect((await c.cmd('STARTTLS')).code).toBe(220);
      await c.upgrade();
      const secure = await ehlo(c);
      expect(secure).toContain('AUTH PLAIN LOGIN');
      expect(secure).not.toContain('STARTTLS');
      const ok = await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`);
      expect(ok.code).toBe(235);
    } finally {
      c.close();
    }
  });

  it('gives the same 535 5.7.8 reply for a wrong password and an unknown user', async () => {
    const replies: string[] = [];
    for (const [user, pass] of [
      ['alice', 'wrong-password-123'],
      ['nobody', 'wrong-password-123'],
    ] as const) {
      const c = await connect('127.0.0.24');
      try {
        await c.read();
        await ehlo(c);
        expect((await c.cmd('STARTTLS')).code).toBe(220);
        await c.upgrade();
        await ehlo(c);
        const r = await c.cmd(`AUTH PLAIN ${plainAuth(user, pass)}`, 15_000);
        expect(r.code).toBe(535);
        replies.push(r.text);
        // AUTH LOGIN takes the same path
        expect((await c.cmd('AUTH LOGIN')).code).toBe(334);
        expect((await c.cmd(Buffer.from(user).toString('base64'))).code).toBe(334);
        const login = await c.cmd(Buffer.from(pass).toString('base64'), 15_000);
        expect(login.code).toBe(535);
        replies.push(login.text);
      } finally {
        c.close();
      }
    }
    expect(new Set(replies).size).toBe(1);
    expect(replies[0]).toMatch(/^535 5\.7\.8 /);
    const authLines = t.decisions.filter((d) => d.phase === 'authenticate' && d.verdict === 'deny');
    expect(authLines.length).toBeGreaterThanOrEqual(4);
    expect(JSON.stringify(t.decisions)).not.toContain('wrong-password-123');
  }, 60_000);

  it('refuses PLAIN proxy logins (authzid ≠ user), unsupported mechanisms and a second STARTTLS', async () => {
    // its own source address: the failure counts towards that address's lockout
    const c = await connect('127.0.0.23');
    try {
      await c.read();
      await ehlo(c);
      expect((await c.cmd('STARTTLS')).code).toBe(220);
      await c.upgrade();
      await ehlo(c);
      expect((await c.cmd('STARTTLS')).code).toBe(503);
      const proxy = await c.cmd(`AUTH PLAIN ${Buffer.from(`bob\0alice\0${PASSWORD}`).toString('base64')}`);
      expect(proxy.code).toBe(535);
      expect((await c.cmd('AUTH CRAM-MD5')).code).toBe(504);
      expect((await c.cmd('AUTH XOAUTH2 dG9rZW4=')).code).toBe(504);
      expect(t.decisions.some((d) => d.rule === 'auth.authzid')).toBe(true);
    } finally {
      c.close();
    }
  });

  it('refuses AUTH in the middle of a mail transaction', async () => {
    const c = await connect();
    try {
      await c.read();
      await ehlo(c);
      expect((await c.cmd('STARTTLS')).code).toBe(220);
      await c.upgrade();
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
      const during = await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`);
      expect(during.text).toMatch(/^503 5\.5\.1 /);
      expect((await c.cmd('RSET')).code).toBe(250);
      expect((await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`)).code).toBe(235);
    } finally {
      c.close();
    }
  });

  it('drops a command line longer than the limit instead of buffering it', async () => {
    const c = await connect();
    try {
      await c.read();
      c.write(`EHLO ${'a'.repeat(5000)}\r\n`);
      const r = await c.read();
      expect(r.code).toBeGreaterThanOrEqual(400);
      expect(await c.waitClosed()).toBe(true);
    } finally {
      c.close();
    }
  });

  it('serves implicit TLS on its own port with AUTH offered at once', async () => {
    const c = await RawSmtp.connect(t.port('smtp', 'implicit_tls'), { tls: true });
    try {
      expect((await c.read()).code).toBe(220);
      const features = await ehlo(c);
      expect(features).toContain('AUTH PLAIN LOGIN');
      expect(features).not.toContain('STARTTLS');
      expect((await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`)).code).toBe(235);
    } finally {
      c.close();
    }
  });

  it('greets once and records one connect decision per session (an allowed greeting leaves at accept)', async () => {
    const before = t.decisions.length;
    const c = await connect('127.0.0.30');
    try {
      expect((await c.read()).text).toBe('220 gatehouse.test ESMTP');
      expect((await c.cmd('EHLO once.test')).code).toBe(250);
      expect((await c.cmd('NOOP')).code).toBe(250);
      expect((await c.cmd('QUIT')).code).toBe(221);
      expect(await c.waitClosed()).toBe(true);
      expect(c.pending()).toBe(''); // the library's own greeting was not sent as well
    } finally {
      c.close();
    }
    const mine = t.decisions.slice(before).filter((d) => d.ip === '127.0.0.30' && d.phase === 'connect');
    expect(mine.map((d) => [d.verdict, d.rule])).toEqual([['allow', mine[0]?.rule]]);
    expect(mine[0]?.session).toMatch(/^[0-9a-f]{12}$/);
  });

  it('refuses a denied address with 554 at greeting and closes the socket', async () => {
    const c = await connect('127.0.0.66');
    try {
      const r = await c.read();
      expect(r.code).toBe(554);
      expect(await c.waitClosed()).toBe(true);
      const d = t.decisions.find((x) => x.phase === 'connect' && x.ip === '127.0.0.66');
      expect(d?.verdict).toBe('deny');
      expect(d?.rule).toBe('access.deny');
    } finally {
      c.close();
    }
  });

  it('caps connections per IP with 421 4.7.0 and frees the slot on close', async () => {
    const held: RawSmtp[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await connect('127.0.0.21');
        held.push(c);
        expect((await c.read()).code).toBe(220);
      }
      const extra = await connect('127.0.0.21');
      held.push(extra);
      const r = await extra.read();
      expect(r.code).toBe(421);
      expect(r.text).toContain('4.7.0');
      expect(await extra.waitClosed()).toBe(true);
      // another address is not affected
      const other = await connect('127.0.0.22');
      held.push(other);
      expect((await other.read()).code).toBe(220);
      // closing one session frees a slot
      held[0]!.write('QUIT\r\n');
      expect(await held[0]!.waitClosed()).toBe(true);
      let again: RawSmtp | null = null;
      for (let i = 0; i < 20; i++) {
        again = await connect('127.0.0.21');
        held.push(again);
        const g = await again.read();
        if (g.code === 220) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      expect(again && !again.closed).toBe(true);
    } finally {
      for (const c of held) c.close();
    }
  });

  it('gives the connection slot back after a failed STARTTLS handshake', async () => {
    for (let i = 0; i < 5; i++) {
      const c = await connect('127.0.0.25');
      try {
        expect((await c.read()).code).toBe(220);
        await ehlo(c);
        expect((await c.cmd('STARTTLS')).code).toBe(220);
        c.write('this is not a TLS client hello\r\n\r\n');
        expect(await c.waitClosed()).toBe(true);
      } finally {
        c.close();
      }
    }
    // five failed handshakes with a per-IP cap of 3: the address still gets in
    const c = await connect('127.0.0.25');
    try {
      expect((await c.read()).code).toBe(220);
    } finally {
      c.close();
    }
  });

  it('discards commands pipelined behind STARTTLS (CVE-2011-0411)', async () => {
    const c = await connect();
    try {
      await c.read();
      await ehlo(c);
      c.write('STARTTLS\r\nMAIL FROM:<attacker@example.org>\r\nRSET\r\nNOOP\r\n');
      const r = await c.read();
      expect(r.code).toBe(220);
      await c.upgrade();
      // nothing injected in plaintext may have produced a reply inside TLS
      await new Promise((res) => setTimeout(res, 300));
      expect(c.pending()).toBe('');
      await ehlo(c);
      // the injected MAIL FROM did not survive: RCPT needs a MAIL first
      const rcpt = await c.cmd('RCPT TO:<alice@local.test>');
      expect(rcpt.code).toBe(503);
    } finally {
      c.close();
    }
  });

  it('discards a pipelined AUTH behind STARTTLS as well', async () => {
    const c = await connect();
    try {
      await c.read();
      await ehlo(c);
      c.write(`STARTTLS\r\nAUTH PLAIN ${plainAuth('alice', PASSWORD)}\r\n`);
      expect((await c.read()).code).toBe(220);
      await c.upgrade();
      await new Promise((res) => setTimeout(res, 300));
      expect(c.pending()).toBe('');
      const features = await ehlo(c);
      // still not authenticated: AUTH is still offered
      expect(features).toContain('AUTH PLAIN LOGIN');
    } finally {
      c.close();
    }
  });

  it('answers unknown commands with 500 5.5.2 and disconnects after max_errors', async () => {
    const c = await connect();
    try {
      await c.read();
      await ehlo(c);
      const first = await c.cmd('FOO bar');
      expect(first.code).toBe(500);
      expect(first.text).toContain('5.5.2');
      expect((await c.cmd('XCLIENT ADDR=10.0.0.1')).code).toBe(500);
      expect((await c.cmd('WIZ secret')).code).toBe(500);
      const last = await c.cmd('BAR');
      expect(last.code).toBe(500);
      // the fourth error ends the session
      const bye = await c.read();
      expect(bye.code).toBe(421);
      expect(bye.text).toContain('4.7.0');
      expect(await c.waitClosed()).toBe(true);
      expect(t.decisions.some((d) => d.rule === 'limits.max_errors')).toBe(true);
    } finally {
      c.close();
    }
  });

  it('refuses MAIL before HELO and RCPT before MAIL with 503', async () => {
    const c = await connect();
    try {
      await c.read();
      expect((await c.cmd('MAIL FROM:<a@example.org>')).code).toBe(503);
      await ehlo(c);
      expect((await c.cmd('RCPT TO:<alice@local.test>')).code).toBe(503);
      expect((await c.cmd('DATA')).code).toBe(503);
    } finally {
      c.close();
    }
  });
});

describe('smtp listener with auth_requires_tls: false and a global cap of 2', () => {
  let t: TestGatehouse;
  beforeAll(async () => {
    t = await startGatehouse({ smtp: { auth_requires_tls: false, local_domains: ['local.test'], limits: { connections: 2 } } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('offers and accepts AUTH in plaintext only when the config says so', async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      const features = await ehlo(c);
      expect(features).toContain('AUTH PLAIN LOGIN');
      expect((await c.cmd(`AUTH PLAIN ${plainAuth('alice', PASSWORD)}`)).code).toBe(235);
    } finally {
      c.close();
    }
  });

  it('caps connections globally with 421 4.7.0 (an audited policy refusal)', async () => {
    const held: RawSmtp[] = [];
    try {
      for (const ip of ['127.0.0.31', '127.0.0.32']) {
        const c = await RawSmtp.connect(t.port('smtp'), { localAddress: ip });
        held.push(c);
        expect((await c.read()).code).toBe(220);
      }
      const extra = await RawSmtp.connect(t.port('smtp'), { localAddress: '127.0.0.33' });
      held.push(extra);
      const r = await extra.read();
      expect(r.text).toMatch(/^421 4\.7\.0 /);
      expect(await extra.waitClosed()).toBe(true);
      expect(t.decisions.some((d) => d.rule === 'limits.connections' && d.ip === '127.0.0.33')).toBe(true);
    } finally {
      for (const c of held) c.close();
    }
  });
});
