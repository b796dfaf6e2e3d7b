/*
 * Relay decisions with real clients: every address trick from an untrusted client (127.0.0.20) is refused
 * with the right code and nothing reaches the spool; trusted (127.0.0.1) and authenticated clients relay
 * through a real SMTP sink (the smarthost) that receives the message byte for byte; local mail is
 * accepted from anyone and lands in the Maildir. Clients: raw socket, nodemailer, Python smtplib, swaks.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawSmtp, ehlo, maildirMessages, spoolEntries, startSink, waitUntil, type Sink } from './listener-client.js';

const run = promisify(execFile);
const REMOTE = '127.0.0.20';

function rawMessage(tag: string): Buffer {
  return Buffer.from(
    [`From: sender@example.org`, `To: bob@example.net`, `Subject: relay test ${tag}`, `Message-ID: <${tag}@example.org>`, '', `Body line for ${tag}.`, '.leading dot line', '..two dots', 'last line', ''].join('\r\n'),
  );
}

async function hasCommand(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

describe('smtp relay policy', () => {
  let t: TestGatehouse;
  let sink: Sink;
  let stateDir: string;

  beforeAll(async () => {
    sink = await startSink();
    t = await startGatehouse(
      {
        smtp: {
          local_domains: ['local.test'],
          relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
          queue: { retry_s: [1] },
        },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
    stateDir = t.gh.config.paths.stateDir;
  });
  afterAll(async () => {
    await t?.stop();
    await sink?.close();
  });

  async function session(localAddress: string): Promise<RawSmtp> {
    const c = await RawSmtp.connect(t.port('smtp'), { localAddress });
    expect((await c.read()).code).toBe(220);
    await ehlo(c);
    return c;
  }

  // [recipient as sent inside RCPT TO:<...>, expected code(s) (0 = any 5xx), expected enhanced code or null].
  // 501 is smtp-server's own syntax refusal (before the policy core is asked), 553 the policy core's.
  const SYNTAX = [501, 553];
  const tricks: [string, number | number[], string | null][] = [
    ['bob@example.net', 554, '5.7.1'],
    ['bob%example.net@local.test', 553, '5.1.3'],
    ['example.net!bob@local.test', 553, '5.1.3'],
    ['@local.test:bob@example.net', 0, null],
    ['@local.test,@relay.example:bob@example.net', 0, null],
    ['"bob@example.net"@local.test', 0, null],
    ['"bob%example.net"@local.test', 0, null],
    ['"example.net!bob"@local.test', 0, null],
    ['"alice"@local.test', 0, null],
    ['bob@[127.0.0.1]', 0, null],
    ['bob@[IPv6:::1]', 0, null],
    ['bob@127.0.0.1', 553, '5.1.3'],
    ['bob@example.net.', SYNTAX, '5.1.3'],
    ['alice@local.test.', SYNTAX, '5.1.3'],
    ['bob@example.net@local.test', 0, null],
    ['alice@local.test@example.net', 0, null],
    ['user@local.test@evil', 0, null],
    ['alice@local.test.example.net', 554, '5.7.1'],
    ['alice@sub.local.test', 554, '5.7.1'],
    ['ALICE@LOCAL.TEST.', SYNTAX, '5.1.3'],
    ['bob@LOCAL.TEST', 550, '5.1.1'],
    ['Bob%Example.NET@Local.Test', 553, '5.1.3'],
    ['bob@example.net%local.test', 0, null],
    ['bob@exa_mple.net', SYNTAX, '5.1.3'],
    ['bób@example.net', 0, null],
    ['bob@example.net ', 0, null],
    ['bob@example.net>,<carol@example.net', 0, null],
  ];

  for (const [rcpt, code, enhanced] of tricks) {
    it(`refuses RCPT TO:<${rcpt}> from an untrusted client${code ? ` with ${String(code)}` : ''}`, async () => {
      const c = await session(REMOTE);
      try {
        expect((await c.cmd('MAIL FROM:<someone@example.org>')).code).toBe(250);
        const r = await c.cmd(`RCPT TO:<${rcpt}>`);
        if (Array.isArray(code)) expect(code).toContain(r.code);
        else if (code) expect(r.code).toBe(code);
        else expect(r.code).toBeGreaterThanOrEqual(500);
        expect(r.code).toBeLessThan(600);
        if (enhanced) expect(r.text).toContain(` ${enhanced} `);
        const data = await c.cmd('DATA');
        expect(data.code).toBe(503);
      } finally {
        c.close();
      }
      expect(spoolEntries(stateDir)).toEqual([]);
    });
  }

  it('logs every relay refusal with the rule that made it', () => {
    const rules = new Set(t.decisions.filter((d) => d.phase === 'rcpt' && d.verdict === 'deny').map((d) => d.rule));
    expect(rules).toContain('relay.default');
    expect(rules).toContain('relay.unknown_local_user');
    expect(rules).toContain('address.percent_hack');
    expect(rules).toContain('address.bang_path');
    expect(rules).toContain('address.syntax');
  });

  it('refuses a local-domain sender from an untrusted, unauthenticated client with 553 5.7.1', async () => {
    const c = await session(REMOTE);
    try {
      const r = await c.cmd('MAIL FROM:<alice@local.test>');
      expect(r.code).toBe(553);
      expect(r.text).toContain('5.7.1');
    } finally {
      c.close();
    }
  });

  it('caps recipients per message with 452 4.5.3', async () => {
    const t2 = await startGatehouse({ smtp: { local_domains: ['local.test'], limits: { recipients: 2 } } }, [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD },
      { name: 'carol', password: PASSWORD },
    ]);
    try {
      const c = await RawSmtp.connect(t2.port('smtp'), { localAddress: REMOTE });
      try {
        await c.read();
        await ehlo(c);
        expect((await c.cmd('MAIL FROM:<x@example.org>')).code).toBe(250);
        expect((await c.cmd('RCPT TO:<alice@local.test>')).code).toBe(250);
        expect((await c.cmd('RCPT TO:<bob@local.test>')).code).toBe(250);
        const third = await c.cmd('RCPT TO:<carol@local.test>');
        expect(third.code).toBe(452);
        expect(third.text).toContain('4.5.3');
      } finally {
        c.close();
      }
    } finally {
      await t2.stop();
    }
  });

  it('accepts mail for a local user from an untrusted client and delivers it to the Maildir', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, localAddress: REMOTE, tls: { rejectUnauthorized: false } });
    const body = rawMessage('local1');
    const info = await transport.sendMail({ envelope: { from: 'someone@example.org', to: ['alice@local.test'] }, raw: body });
    transport.close();
    expect(info.response).toMatch(/^250 2\.6\.0 Ok: queued as \S+/);
    expect(await waitUntil(() => maildirMessages(stateDir, 'alice').length >= 1)).toBe(true);
    const got = maildirMessages(stateDir, 'alice').find((m) => m.includes(Buffer.from('relay test local1')));
    expect(got).toBeDefined();
    const text = got!.toString('latin1');
    // the Maildir writer may add its own trace lines (Return-Path, Delivered-To) above ours
    expect(text).toMatch(/(^|\r\n)Received: from /);
    expect(text).toContain(`[${REMOTE}]`);
    expect(text).toContain('with ESMTPS');
    expect(text).toMatch(/\(using TLSv1\.[23] with cipher /);
    expect(got!.subarray(got!.length - body.length).equals(body)).toBe(true);
  });

  it('relays from a trusted network (127.0.0.1) to the smarthost, byte for byte', async () => {
    const before = sink.messages.length;
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, ignoreTLS: true });
    const body = rawMessage('trusted1');
    const info = await transport.sendMail({ envelope: { from: 'app@example.org', to: ['bob@example.net'] }, raw: body });
    transport.close();
    expect(info.accepted).toEqual(['bob@example.net']);
    const msgs = await sink.waitFor(before + 1);
    const m = msgs.find((x) => x.data.includes(Buffer.from('relay test trusted1')));
    expect(m).toBeDefined();
    expect(m!.from).toBe('app@example.org');
    expect(m!.to).toEqual(['bob@example.net']);
    const text = m!.data.toString('latin1');
    const header = text.slice(0, text.indexOf('From: sender@example.org'));
    expect(header).toMatch(/^Received: from client|^Received: from \S+ \(\[127\.0\.0\.1\]\)/);
    expect(header).toMatch(/\tby gatehouse\.test \(Gatehouse\) with ESMTP id [0-9a-z]{8,64}\r\n/);
    expect(header).toContain('for <bob@example.net>;');
    expect(m!.data.subarray(m!.data.length - body.length).equals(body)).toBe(true);
    expect(await waitUntil(() => spoolEntries(stateDir).length === 0)).toBe(true);
  });

  it('relays for an authenticated user from an untrusted address; Received: names the queue id, neither login nor password', async () => {
    const before = sink.messages.length;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: t.port('smtp'),
      secure: false,
      requireTLS: true,
      localAddress: REMOTE,
      auth: { user: 'alice', pass: PASSWORD },
      tls: { rejectUnauthorized: false },
    });
    const body = rawMessage('auth1');
    const info = (await transport.sendMail({ envelope: { from: 'alice@local.test', to: ['carol@example.net'] }, raw: body })) as { response: string };
    transport.close();
    const queueId = /queued as (\S+)$/.exec(info.response)?.[1];
    expect(queueId).toMatch(/^[0-9a-z]{8,64}$/);
    const msgs = await sink.waitFor(before + 1);
    const m = msgs.find((x) => x.data.includes(Buffer.from('relay test auth1')));
    expect(m).toBeDefined();
    const text = m!.data.toString('latin1');
    // smtp.received.show_auth_user is off by default (Postfix smtpd_sasl_authenticated_header = no)
    expect(text).not.toContain('Authenticated sender');
    expect(text).toContain(`with ESMTPSA id ${queueId}\r\n`);
    expect(text).not.toContain(PASSWORD);
    expect(m!.data.subarray(m!.data.length - body.length).equals(body)).toBe(true);
  });

  it('refuses relay for the same untrusted client before it authenticates (nodemailer)', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: t.port('smtp'), secure: false, localAddress: REMOTE, tls: { rejectUnauthorized: false } });
    await expect(transport.sendMail({ envelope: { from: 'x@example.org', to: ['bob@example.net'] }, raw: rawMessage('noauth') })).rejects.toThrow(/554 5\.7\.1/);
    transport.close();
    expect(spoolEntries(stateDir)).toEqual([]);
  });

  it('works with Python smtplib: STARTTLS, AUTH, relay from 127.0.0.20; refused without AUTH', async () => {
    const before = sink.messages.length;
    const script = `
import smtplib, ssl, sys
port = int(sys.argv[1]); user = sys.argv[2]; pw = sys.argv[3]
msg = b"From: alice@local.test\\r\\nTo: dave@example.net\\r\\nSubject: relay test python1\\r\\n\\r\\nhello from smtplib\\r\\n"
s = smtplib.SMTP("127.0.0.1", port, source_address=("${REMOTE}", 0), timeout=10)
s.ehlo("py.client.test")
try:
    s.sendmail("x@example.org", ["dave@example.net"], msg)
    print("UNEXPECTED-ACCEPT")
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print("REFUSED", code, text.decode())
s.rset()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo("py.client.test")
s.login(user, pw)
s.sendmail("alice@local.test", ["dave@example.net"], msg)
print("SENT")
s.quit()
`;
    const { stdout } = await run('python3', ['-c', script, String(t.port('smtp')), 'alice', PASSWORD], { timeout: 20_000 });
    expect(stdout).toContain('REFUSED 554 5.7.1 Relay access denied');
    expect(stdout).toContain('SENT');
    const msgs = await sink.waitFor(before + 1);
    expect(msgs.some((m) => m.data.includes(Buffer.from('hello from smtplib')) && m.to.includes('dave@example.net'))).toBe(true);
  });

  it('works with swaks: relays from 127.0.0.1, refused from 127.0.0.20', async (ctx) => {
    if (!(await hasCommand('swaks'))) {
      ctx.skip('swaks is not installed (apt-get install swaks; CI installs it)');
      return;
    }
    const before = sink.messages.length;
    const port = String(t.port('smtp'));
    const ok = await run('swaks', ['--to', 'erin@example.net', '--from', 'app@example.org', '--server', `127.0.0.1:${port}`, '--header', 'Subject: relay test swaks1', '--hide-all'], { timeout: 20_000 });
    expect(ok.stderr).toBe('');
    const msgs = await sink.waitFor(before + 1);
    expect(msgs.some((m) => m.data.includes(Buffer.from('relay test swaks1')))).toBe(true);
    let refused = '';
    try {
      await run('swaks', ['--to', 'erin@example.net', '--from', 'x@example.org', '--server', `127.0.0.1:${port}`, '--local-interface', REMOTE], { timeout: 20_000 });
    } catch (err) {
      refused = String((err as { stdout?: string }).stdout ?? '');
    }
    expect(refused).toContain('554 5.7.1 Relay access denied');
  });
});
