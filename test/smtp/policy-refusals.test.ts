/*
 * The SMTP refusals the policy core decides for the listener (policy/limits decideRecipientCount and
 * decideMessageSize, policy/smtp decideParameters and decideGreeting, policy/auth decideAuthzid), end to end with
 * Python's smtplib: the reply (code and enhanced status code) and exactly one audit record per refusal, with the
 * core's rule and reason. The early talker is a raw socket: no real client talks before the greeting.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import type { DecisionRecord } from '../../src/policy/audit.js';
import { RawSmtp, ehlo, spoolEntries } from './listener-client.js';

const run = promisify(execFile);

/** Runs `body` (Python, with `s` an smtplib.SMTP connected and greeted, `port` and `pw` set); returns what it printed. */
async function smtplib(port: number, body: string): Promise<string> {
  const script = `
import smtplib, ssl, sys, base64
port = int(sys.argv[1]); pw = sys.argv[2]
s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=15)
s.ehlo()
${body}
s.quit()
`;
  const { stdout } = await run('python3', ['-c', script, String(port), PASSWORD], { timeout: 20_000 });
  return stdout.trim();
}

describe('smtp refusals decided by the policy core', () => {
  let t: TestGatehouse;
  let stateDir: string;
  /** the records of `rule` since `from` (an index into t.decisions) */
  const since = (from: number, rule: string): DecisionRecord[] => t.decisions.slice(from).filter((d) => d.rule === rule);

  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'], limits: { message_bytes: 4096, recipients: 2 } } }, [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD },
      { name: 'carol', password: PASSWORD },
    ]);
    stateDir = t.gh.config.paths.stateDir;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('relies on the smtp-server method the SIZE= check hooks (SMTPConnection._validateMailParams)', () => {
    expect(typeof SMTPConnection.prototype._validateMailParams).toBe('function');
  });

  it('limits.recipients: a third recipient gets 452 4.5.3, audited once; the message goes to the other two', async () => {
    const from = t.decisions.length;
    const out = await smtplib(
      t.port('smtp'),
      `refused = s.sendmail('x@example.org', ['alice@local.test', 'ALICE@local.test', 'bob@local.test', 'carol@local.test'], b'Subject: three\\r\\n\\r\\nbody\\r\\n')
for a, (code, text) in refused.items(): print('REFUSED', a, code, text.decode())`,
    );
    // the repeat (other case) is no new recipient; the third distinct one is over the limit of 2
    expect(out).toBe('REFUSED carol@local.test 452 4.5.3 Error: too many recipients');
    const recs = since(from, 'limits.recipients');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ service: 'smtp', phase: 'rcpt', verdict: 'deny', reason: 'more than 2 recipients in one message', object: 'carol@local.test' });
    expect(since(from, 'smtp.queued')).toHaveLength(1);
  });

  it('limits.message_bytes at MAIL FROM: a SIZE= over the limit gets 552 5.3.4, audited once (it was not audited before)', async () => {
    const from = t.decisions.length;
    // smtplib declares SIZE= itself (the server announces SIZE 4096)
    const out = await smtplib(
      t.port('smtp'),
      `try:
    s.sendmail('x@example.org', ['alice@local.test'], b'Subject: big\\r\\n\\r\\n' + b'x' * 70 * 100 + b'\\r\\n')
    print('UNEXPECTED-ACCEPT')
except smtplib.SMTPSenderRefused as e:
    print('REFUSED', e.smtp_code, e.smtp_error.decode())`,
    );
    expect(out).toBe('REFUSED 552 5.3.4 Error: message exceeds fixed maximum message size 4096');
    const recs = since(from, 'limits.message_bytes');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ phase: 'mail', verdict: 'deny', object: 'x@example.org' });
    expect(recs[0]!.reason).toMatch(/^declared message size \d+ exceeds 4096$/);
  });

  it('limits.message_bytes in DATA (no SIZE= declared): 552 5.3.4, audited once, nothing queued', async () => {
    const from = t.decisions.length;
    const out = await smtplib(
      t.port('smtp'),
      `s.mail('x@example.org'); s.rcpt('alice@local.test')
code, text = s.data(b'Subject: big\\r\\n\\r\\n' + (b'x' * 70 + b'\\r\\n') * 100)
print(code, text.decode())
print(s.noop()[0])`,
    );
    expect(out).toBe('552 5.3.4 Error: message exceeds fixed maximum message size 4096\n250');
    const recs = since(from, 'limits.message_bytes');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ phase: 'data', verdict: 'deny' });
    expect(recs[0]!.reason).toMatch(/^message of \d+\+ bytes exceeds 4096$/);
    expect(since(from, 'smtp.queued')).toHaveLength(0);
    expect(spoolEntries(stateDir)).toEqual([]);
  });

  it('esmtp.parameter: MAIL and RCPT parameters EHLO did not announce get 555 5.5.4, each audited once', async () => {
    const from = t.decisions.length;
    const out = await smtplib(
      t.port('smtp'),
      `print(*s.mail('x@example.org', ['FOO=BAR']))
print(*s.mail('x@example.org', ['SIZE=100', 'BODY=8BITMIME']))
print(*s.rcpt('alice@local.test', ['NOTIFY=NEVER']))
print(*s.rcpt('alice@local.test'))`,
    );
    expect(out.split('\n')).toEqual(["555 b'5.5.4 Unsupported option: FOO'", "250 b'2.1.0 Ok'", "555 b'5.5.4 Unsupported option: NOTIFY'", "250 b'2.1.5 Ok'"]);
    const recs = since(from, 'esmtp.parameter');
    expect(recs.map((r) => [r.phase, r.verdict, r.reason, r.object])).toEqual([
      ['mail', 'deny', 'parameter FOO was not announced in EHLO', 'x@example.org'],
      ['rcpt', 'deny', 'parameter NOTIFY was not announced in EHLO', 'alice@local.test'],
    ]);
  });

  it('auth.authzid: AUTH PLAIN acting for another user gets 535 5.7.8, audited once, the password never checked', async () => {
    const from = t.decisions.length;
    const out = await smtplib(
      t.port('smtp'),
      `ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx); s.ehlo()
try:
    s.auth('PLAIN', lambda challenge=None: 'bob\\0alice\\0' + pw, initial_response_ok=True)
    print('UNEXPECTED-LOGIN')
except smtplib.SMTPAuthenticationError as e:
    print('REFUSED', e.smtp_code, e.smtp_error.decode())
s.login('alice', pw)
print('LOGGED-IN')`,
    );
    expect(out).toBe('REFUSED 535 5.7.8 Error: authentication failed\nLOGGED-IN');
    const recs = since(from, 'auth.authzid');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ phase: 'authenticate', verdict: 'deny', reason: 'PLAIN authorization identity differs from the user; proxy login is not allowed' });
    // refused before the password: no bad_credentials line for it; the right login after it succeeds
    expect(since(from, 'auth.bad_credentials')).toHaveLength(0);
    expect(since(from, 'auth.password')).toHaveLength(1);
  }, 30_000);
});

describe('limits.message_bytes after a reload lowered the limit', () => {
  let t: TestGatehouse;
  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'], limits: { message_bytes: 8192 } } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("a session opened before it: a SIZE= under its own limit but over the server's new one is the core's refusal, audited once", async () => {
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      await c.read();
      expect(await ehlo(c)).toContain('SIZE 8192');
      const raw = parse(fs.readFileSync(t.configFile, 'utf8')) as { smtp: { limits: Record<string, unknown> } };
      raw.smtp.limits.message_bytes = 4096;
      fs.writeFileSync(t.configFile, stringify(raw));
      expect((await t.gh.reload()).ok).toBe(true);
      const from = t.decisions.length;
      const r = await c.cmd('MAIL FROM:<x@example.org> SIZE=5000');
      expect(r.code).toBe(552);
      expect(r.text).toMatch(/^552 5\.3\.4 /);
      const recs = t.decisions.slice(from).filter((d) => d.rule === 'limits.message_bytes');
      expect(recs.map((d) => [d.phase, d.verdict, d.reason])).toEqual([['mail', 'deny', "declared message size 5000 exceeds the server's current limit (lowered by a reload)"]]);
    } finally {
      c.close();
    }
  });
});

describe('AUTH before STARTTLS: the core\'s TLS rule, recorded', () => {
  let t: TestGatehouse;
  beforeAll(async () => {
    t = await startGatehouse({}, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('AUTH PLAIN on a plain connection gets 530 5.7.0 and one auth.tls_required record; no password is compared', async () => {
    const from = t.decisions.length;
    const out = await smtplib(
      t.port('smtp'),
      `print(s.has_extn('auth'))
code, msg = s.docmd('AUTH', 'PLAIN ' + base64.b64encode(('\\0alice\\0' + pw).encode()).decode())
print(code, msg.decode())`,
    );
    expect(out).toBe('False\n530 5.7.0 Must issue a STARTTLS command first');
    const mine = t.decisions.slice(from).filter((d) => d.phase === 'authenticate');
    expect(mine.map((d) => [d.verdict, d.rule])).toEqual([['deny', 'auth.tls_required']]);
  });
});

describe('smtp.pregreet decided by the policy core', () => {
  let t: TestGatehouse;
  beforeAll(async () => {
    t = await startGatehouse({ smtp: { limits: { greet_pause_ms: 300 } } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('a client that pipelines commands before the greeting gets one 421 4.7.0 and one audit record', async () => {
    const from = t.decisions.length;
    const c = await RawSmtp.connect(t.port('smtp'));
    try {
      c.write('EHLO early.test\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<y@example.org>\r\n');
      const r = await c.read();
      expect(r.text).toBe('421 4.7.0 gatehouse.test Error: talked before the greeting');
      expect(await c.waitClosed()).toBe(true);
      expect(c.pending()).toBe('');
    } finally {
      c.close();
    }
    const recs = t.decisions.slice(from).filter((d) => d.rule === 'smtp.pregreet');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ service: 'smtp', phase: 'connect', verdict: 'deny', reason: 'client talked before the greeting (greet_pause_ms 300)' });
  });
});
