/*
 * nntp.limits.article_bytes is the policy core's decision (policy/limits decideArticleSize) on both ways an article
 * comes in: NNTP POST (Python nntplib: 441, the session stays usable) and mail-to-news (Python smtplib: the mail
 * bounces with 5.3.4). Each refusal is audited exactly once, as nntp.article_bytes with the core's reason (the
 * mail-to-news one was not audited before).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { maildirMessages, waitUntil } from '../smtp/listener-client.js';
import { GROUPS, runPython } from './client.js';

const run = promisify(execFile);
const LIMIT = 2048;

describe('nntp.article_bytes decided by the policy core', () => {
  let t: TestGatehouse;
  let stateDir: string;
  const records = (from: number) => t.decisions.slice(from).filter((d) => d.rule === 'nntp.article_bytes');

  beforeAll(async () => {
    t = await startGatehouse(
      {
        smtp: { local_domains: ['local.test'], queue: { retry_s: [1] } },
        ftp: { enabled: false },
        nntp: { groups: GROUPS, mail_gateway: { domain: 'news.office.test' }, limits: { article_bytes: LIMIT, posts_per_minute: 100 } },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
    stateDir = t.gh.config.paths.stateDir;
  }, 60_000);
  afterAll(async () => {
    await t?.stop();
  });

  it('POST over the limit: 441 with the core reason, audited once; a small one after it is posted', async () => {
    const from = t.decisions.length;
    const r = await runPython(
      `
s = nntplib.NNTP('127.0.0.1', PORT, usenetrc=False)
s.starttls(ctx)
s.login('alice', PASSWORD)
def art(subject, lines):
    return io.BytesIO(('From: alice@local.test\\r\\nNewsgroups: office.general\\r\\nSubject: ' + subject + '\\r\\n\\r\\n' + 'x' * 70 + '\\r\\n').encode() + (('y' * 70 + '\\r\\n') * lines).encode())
try:
    s.post(art('too big', 40))
    print('UNEXPECTED-POSTED')
except nntplib.NNTPTemporaryError as e:
    print('REFUSED', str(e))
print(s.post(art('small', 2)).split()[0])
s.quit()
`,
      { PORT: String(t.port('nntp')), PASSWORD },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([`REFUSED 441 article larger than ${LIMIT} octets`, '240']);
    const recs = records(from);
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ service: 'nntp', phase: 'post', verdict: 'deny', user: 'alice', reason: `article larger than ${LIMIT} octets` });
  }, 30_000);

  it('mail-to-news over the limit: the mail bounces with 5.3.4, audited once', async () => {
    const from = t.decisions.length;
    const bounces = () => maildirMessages(stateDir, 'alice').map((m) => m.toString('latin1')).filter((m) => m.includes('Content-Type: multipart/report'));
    const before = bounces().length;
    const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test', timeout=15)
s.starttls(context=ctx); s.ehlo(); s.login('alice', sys.argv[2])
s.sendmail('alice@local.test', ['office.general@news.office.test'], b'From: alice@local.test\\r\\nSubject: big by mail\\r\\n\\r\\n' + (b'z' * 70 + b'\\r\\n') * 40)
print('SENT')
s.quit()
`;
    const { stdout } = await run('python3', ['-c', script, String(t.port('smtp')), PASSWORD], { timeout: 30_000 });
    expect(stdout.trim()).toBe('SENT');
    expect(await waitUntil(() => bounces().length > before, 30_000)).toBe(true);
    const bounce = bounces().find((m) => m.includes('Final-Recipient: rfc822; office.general@news.office.test'));
    expect(bounce).toMatch(/Status: 5\.3\.4/);
    expect(bounce).toContain(`article larger than ${LIMIT} octets`);
    const recs = records(from);
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ service: 'nntp', phase: 'post', verdict: 'deny', object: 'office.general', reason: `article larger than ${LIMIT} octets` });
  }, 60_000);
});
