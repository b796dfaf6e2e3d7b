/*
 * Mail-to-news (issue 18 part 2), end to end with real clients: swaks and Python smtplib submit mail to
 * <group>@news.office.test, Python nntplib reads the article back. Refusals bounce through the queue's DSN code
 * into the sender's Maildir; a hidden group bounces exactly like a missing one; an unauthenticated client outside
 * the trusted networks is refused at RCPT (relay rules) and nothing is queued; a mail carrying our own Path is a
 * loop; a Message-ID already in the store bounces.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { maildirMessages, spoolEntries, waitUntil } from '../smtp/listener-client.js';
import { runPython } from './client.js';

const run = promisify(execFile);
let t: TestGatehouse;
let stateDir: string;

const GROUPS = [
  { name: 'lab.results', read: ['authenticated'], post: ['group:lab'], description: 'Results' },
  { name: 'office.staff', read: ['alice'], post: ['alice'], description: 'Staff only' },
  { name: 'office.readonly', read: ['authenticated'], post: [], description: 'Read only' },
];

beforeAll(async () => {
  t = await startGatehouse(
    {
      smtp: { local_domains: ['local.test'], queue: { retry_s: [1] } },
      ftp: { enabled: false },
      nntp: { groups: GROUPS, mail_gateway: { domain: 'news.office.test' }, limits: { posts_per_minute: 4 } },
    },
    [
      { name: 'alice', password: PASSWORD, groups: ['lab'] },
      { name: 'bob', password: PASSWORD },
    ],
  );
  stateDir = t.gh.config.paths.stateDir;
}, 60_000);
afterAll(async () => {
  await t?.stop();
});

/** Send with smtplib (STARTTLS + AUTH when user is set); prints the refused recipients or SENT. */
async function smtp(opts: { user?: string; from: string; to: string[]; message: string; source?: string }): Promise<string> {
  const script = `
import smtplib, ssl, sys, json
port = int(sys.argv[1]); user = sys.argv[2]; pw = sys.argv[3]; src = sys.argv[4]
frm = sys.argv[5]; to = json.loads(sys.argv[6]); msg = sys.argv[7].encode()
s = smtplib.SMTP("127.0.0.1", port, source_address=(src, 0), timeout=15)
s.ehlo("py.client.test")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx); s.ehlo("py.client.test")
if user: s.login(user, pw)
try:
    s.sendmail(frm, to, msg)
    print("SENT")
except smtplib.SMTPRecipientsRefused as e:
    print("REFUSED", json.dumps({k: [v[0], v[1].decode()] for k, v in e.recipients.items()}))
s.quit()
`;
  const { stdout } = await run('python3', ['-c', script, String(t.port('smtp')), opts.user ?? '', PASSWORD, opts.source ?? '127.0.0.1', opts.from, JSON.stringify(opts.to), opts.message], { timeout: 30_000 });
  return stdout.trim();
}

async function readGroup(group: string, user = 'alice'): Promise<{ heads: string[][]; bodies: string[][] }> {
  const r = await runPython(
    `
s = nntplib.NNTP('127.0.0.1', PORT, usenetrc=False)
s.starttls(ctx)
s.login('${user}', PASSWORD)
resp, count, first, last, name = s.group('${group}')
res = {'heads': [], 'bodies': []}
for n in range(first, last + 1) if count else []:
    resp, info = s.article(n)
    lines = [l.decode('latin1') for l in info.lines]
    sep = lines.index('')
    res['heads'].append(lines[:sep]); res['bodies'].append(lines[sep+1:])
s.quit()
print(json.dumps(res))
`,
    { PORT: String(t.port('nntp')), PASSWORD },
  );
  if (r.code !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { heads: string[][]; bodies: string[][] };
}

const bounces = (user: string) => maildirMessages(stateDir, user).map((m) => m.toString('latin1')).filter((m) => m.includes('Content-Type: multipart/report'));
/** the bounces that arrived since `before` (a Maildir lists its files in no particular order) */
const newSince = (before: readonly string[], now: readonly string[]) => now.filter((m) => !before.includes(m));
const diag = (m: string) => /Diagnostic-Code: smtp; (.*)/.exec(m)?.[1] ?? '';

describe('mail to news', () => {
  it('swaks (STARTTLS, AUTH) into lab.results: posted with the Message-ID kept, read back with nntplib', async () => {
    const { stdout } = await run(
      'swaks',
      ['--server', `127.0.0.1:${t.port('smtp')}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', PASSWORD, '--from', 'alice@local.test', '--to', 'lab.results@news.office.test',
        '--header', 'Subject: run 42 finished', '--header', 'Message-Id: <run42@lab.example>', '--body', 'All 42 samples passed.\n.dot line\nend', '--suppress-data'],
      { timeout: 30_000 },
    );
    expect(stdout).toMatch(/<~ +250 /);
    let got = { heads: [] as string[][], bodies: [] as string[][] };
    expect(await waitUntil(() => spoolEntries(stateDir).length === 0, 20_000)).toBe(true);
    got = await readGroup('lab.results');
    const i = got.heads.findIndex((h) => h.includes('Message-ID: <run42@lab.example>') && h.includes('Subject: run 42 finished'));
    expect(i).toBeGreaterThanOrEqual(0);
    const head = got.heads[i]!;
    expect(head).toContain('Subject: run 42 finished');
    expect(head).toContain('Newsgroups: lab.results');
    expect(head.find((h) => h.startsWith('Path: '))).toMatch(/^Path: gatehouse\.test!/);
    const info = head.find((h) => h.startsWith('Injection-Info: '))!;
    expect(info).toContain('posting-account="alice"');
    expect(info).toContain('via="mail"');
    expect(head.some((h) => h.startsWith('Injection-Date: '))).toBe(true);
    expect(head.some((h) => /^Received:/i.test(h))).toBe(false);
    expect(got.bodies[i]!.slice(0, 3)).toEqual(['All 42 samples passed.', '.dot line', 'end']);
    expect(t.decisions.some((d) => d.phase === 'mail_to_news' && d.rule === 'gateway.post' && d.verdict === 'allow')).toBe(true);
  }, 60_000);

  it('a mail without a Message-ID gets one derived from its queue id', async () => {
    expect(await smtp({ user: 'alice', from: 'alice@local.test', to: ['lab.results@news.office.test'], message: 'From: alice@local.test\r\nSubject: no id\r\n\r\nbody\r\n' })).toBe('SENT');
    expect(await waitUntil(() => spoolEntries(stateDir).length === 0, 20_000)).toBe(true);
    const got = await readGroup('lab.results');
    const head = got.heads.find((h) => h.includes('Subject: no id'))!;
    expect(head.find((h) => h.startsWith('Message-ID: '))).toMatch(/^Message-ID: <[^@]+\.mail@gatehouse\.test>$/);
  }, 60_000);

  it('bounces (DSN) a post without the right, and a hidden group exactly like a missing one', async () => {
    const before = bounces('bob');
    for (const to of ['lab.results@news.office.test', 'office.staff@news.office.test', 'no.such.group@news.office.test']) {
      expect(await smtp({ user: 'bob', from: 'bob@local.test', to: [to], message: `From: bob@local.test\r\nSubject: try ${to}\r\n\r\nhello\r\n` })).toBe('SENT');
    }
    expect(await waitUntil(() => bounces('bob').length >= before.length + 3, 30_000)).toBe(true);
    const got = newSince(before, bounces('bob'));
    const byGroup = (g: string) => got.find((m) => m.includes(`Final-Recipient: rfc822; ${g}@news.office.test`))!;
    expect(diag(byGroup('lab.results'))).toContain('posting to lab.results is not allowed');
    const hidden = diag(byGroup('office.staff'));
    const missing = diag(byGroup('no.such.group'));
    expect(hidden).toContain('no such newsgroup office.staff');
    expect(hidden.replace('office.staff', 'G')).toBe(missing.replace('no.such.group', 'G'));
    expect(byGroup('office.staff')).toMatch(/Status: 5\.1\.1/);
    expect(byGroup('no.such.group')).toMatch(/Status: 5\.1\.1/);
    const staff = await readGroup('office.staff');
    expect(staff.heads.flat().join('\n')).not.toContain('try office.staff');
  }, 60_000);

  it('refuses at RCPT an unauthenticated client outside the trusted networks; nothing is queued', async () => {
    const out = await smtp({ from: 'x@example.org', to: ['lab.results@news.office.test'], message: 'Subject: spam\r\n\r\nspam\r\n', source: '127.0.0.20' });
    expect(out).toMatch(/^REFUSED .*554.*5\.7\.1/);
    expect(spoolEntries(stateDir)).toEqual([]);
  });

  it('a trusted network without login posts only under the anonymous rights: bounced here', async () => {
    const before = bounces('bob');
    expect(await smtp({ from: 'bob@local.test', to: ['lab.results@news.office.test'], message: 'From: bob@local.test\r\nSubject: trusted\r\n\r\nx\r\n' })).toBe('SENT');
    expect(await waitUntil(() => bounces('bob').length > before.length, 30_000)).toBe(true);
    const fresh = newSince(before, bounces('bob'));
    expect(fresh).toHaveLength(1);
    expect(diag(fresh[0]!)).toContain('no such newsgroup lab.results'); // NOBODY cannot even see it
  }, 60_000);

  it('bounces a loop (our own Path) and a duplicate Message-ID', async () => {
    const before = bounces('alice');
    expect(await smtp({ user: 'alice', from: 'alice@local.test', to: ['lab.results@news.office.test'], message: 'From: alice@local.test\r\nPath: peer.example!gatehouse.test!not-for-mail\r\nSubject: looped\r\n\r\nx\r\n' })).toBe('SENT');
    expect(await smtp({ user: 'alice', from: 'alice@local.test', to: ['lab.results@news.office.test'], message: 'From: alice@local.test\r\nMessage-ID: <run42@lab.example>\r\nSubject: again\r\n\r\nx\r\n' })).toBe('SENT');
    const ok = await waitUntil(() => bounces('alice').length >= before.length + 2, 30_000);
    expect(ok).toBe(true);
    const diags = newSince(before, bounces('alice')).map(diag);
    expect(diags.some((d) => d.includes('5.4.6') && d.includes('loop'))).toBe(true);
    expect(diags.some((d) => d.includes('duplicate Message-ID <run42@lab.example>'))).toBe(true);
    const got = await readGroup('lab.results');
    expect(got.heads.flat().join('\n')).not.toMatch(/Subject: (looped|again)/);
  }, 60_000);

  it('counts mail posts against posts_per_minute: over it the mail waits in the queue (no bounce)', async () => {
    // alice has 2 posts this minute (swaks, no id); 2 more fit under 4, the next one is deferred
    const bouncesBefore = bounces('alice').length;
    for (const n of [1, 2, 3]) {
      expect(await smtp({ user: 'alice', from: 'alice@local.test', to: ['lab.results@news.office.test'], message: `From: alice@local.test\r\nSubject: burst ${n}\r\n\r\nx\r\n` })).toBe('SENT');
      if (n < 3) expect(await waitUntil(() => spoolEntries(stateDir).length === 0, 20_000)).toBe(true);
    }
    expect(await waitUntil(() => t.decisions.some((d) => d.rule === 'limits.posts_per_minute' && d.session.startsWith('mail:')), 20_000)).toBe(true);
    expect(spoolEntries(stateDir).length).toBeGreaterThan(0);
    const got = await readGroup('lab.results');
    const subjects = got.heads.flat().filter((h) => h.startsWith('Subject: burst'));
    expect(subjects).toEqual(['Subject: burst 1', 'Subject: burst 2']);
    expect(bounces('alice').length).toBe(bouncesBefore);
  }, 90_000);
});
