/*
 * Issue 15 (8), end to end with Python's smtplib (STARTTLS, AUTH PLAIN): the Received: header carries the queue
 * id the 250 named (`with ESMTPSA id <id>`), and the login name only when smtp.received.show_auth_user is on
 * (Postfix's smtpd_sasl_authenticated_header; default off).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { maildirMessages, waitUntil } from './listener-client.js';

const run = promisify(execFile);

const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=15)
s.starttls(context=ctx)
s.login('alice', sys.argv[2])
s.mail('alice@local.test')
s.rcpt('alice@local.test')
code, msg = s.data(b'Subject: ' + sys.argv[3].encode() + b'\\r\\n\\r\\nbody\\r\\n')
print(code, msg.decode())
s.quit()
`;

async function sendAndRead(t: TestGatehouse, subject: string): Promise<{ reply: string; header: string }> {
  const { stdout } = await run('python3', ['-c', script, String(t.port('smtp')), PASSWORD, subject], { timeout: 20_000 });
  const stateDir = t.gh.config.paths.stateDir;
  expect(await waitUntil(() => maildirMessages(stateDir, 'alice').some((m) => m.includes(Buffer.from(subject))))).toBe(true);
  const text = maildirMessages(stateDir, 'alice').find((m) => m.includes(Buffer.from(subject)))!.toString('latin1');
  return { reply: stdout.trim(), header: text.slice(0, text.indexOf('Subject:')) };
}

describe.each([
  ['default (off)', {}, false],
  ['show_auth_user: true', { received: { show_auth_user: true } }, true],
] as const)('Received: with %s', (_name, extra, shown) => {
  let t: TestGatehouse;
  beforeAll(async () => {
    t = await startGatehouse({ smtp: { local_domains: ['local.test'], ...extra } }, [{ name: 'alice', password: PASSWORD }]);
  });
  afterAll(async () => {
    await t?.stop();
  });

  it(`names the queue id${shown ? ' and the login' : ', not the login'}`, async () => {
    const { reply, header } = await sendAndRead(t, `received ${String(shown)}`);
    const id = /^250 2\.6\.0 Ok: queued as ([0-9a-z]+)$/.exec(reply)?.[1];
    expect(id, reply).toBeDefined();
    expect(header).toMatch(new RegExp(`(?:^|\\n)Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\t\\(using TLSv1\\.[23] with cipher \\S+\\)\\r\\n${shown ? '\\t\\(Authenticated sender: alice\\)\\r\\n' : ''}\\tby gatehouse\\.test \\(Gatehouse\\) with ESMTPSA id ${id}\\r\\n\\tfor <alice@local\\.test>; `));
    if (!shown) expect(header).not.toContain('alice)');
  });
});
