/*
 * A real NNTP client, Python's nntplib, against the listener: STARTTLS + AUTHINFO, posting and reading back,
 * the hidden-group rules, implicit TLS (NNTP_SSL) and anonymous reading when configured.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { GROUPS, runPython } from './client.js';

let t: TestGatehouse;
let env: Record<string, string>;

beforeAll(async () => {
  t = await startGatehouse(
    { nntp: { listen: '127.0.0.1:0', implicit_tls_listen: '127.0.0.1:0', groups: GROUPS } },
    [
      { name: 'alice', password: PASSWORD, groups: ['staff'] },
      { name: 'bob', password: PASSWORD },
    ],
  );
  env = { PORT: String(t.port('nntp')), TLS_PORT: String(t.port('nntp', 'implicit_tls')), PASSWORD };
});

afterAll(async () => {
  await t?.stop();
});

async function py(script: string, extra: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await runPython(script, { ...env, ...extra });
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('nntplib', () => {
  it('STARTTLS, AUTHINFO, POST and read back with dot-stuffed lines intact', async () => {
    const out = await py(`
s = nntplib.NNTP('127.0.0.1', PORT, readermode=False, usenetrc=False)
res = {'welcome': s.getwelcome()[:3], 'caps_plain': sorted(s.getcapabilities())}
try:
    s.login('alice', PASSWORD)
    res['plain_login'] = 'accepted'
except nntplib.NNTPError as e:
    res['plain_login'] = str(e)[:3]
s.starttls(ctx)
res['caps_tls'] = sorted(s.getcapabilities())
s.login('alice', PASSWORD)
res['caps_auth'] = sorted(s.getcapabilities())
body = b'.\\r\\n..dots\\r\\n.x\\r\\nline\\r\\n'
art = b'From: Alice <alice@gatehouse.test>\\r\\nNewsgroups: office.general,office.staff\\r\\nSubject: nntplib post\\r\\n\\r\\n' + body
res['post'] = s.post(io.BytesIO(art))[:3]
resp, count, first, last, name = s.group('office.general')
res['group'] = [count, first, last]
resp, info = s.article(last)
lines = info.lines
sep = lines.index(b'')
res['body'] = [l.decode() for l in lines[sep+1:]]
res['xref'] = [l.decode() for l in lines[:sep] if l.lower().startswith(b'xref:')]
resp, over = s.over((first, last))
res['over_subject'] = over[-1][1]['subject']
resp, hdrs = s.xhdr('subject', '%d-%d' % (first, last))
res['xhdr'] = hdrs[-1][1]
res['list'] = sorted(g.group for g in s.list()[1])
s.quit()
print(json.dumps(res))
`);
    expect(out.welcome).toBe('200'); // office.general takes posts from any logged-in user
    expect(out.caps_plain).toContain('STARTTLS');
    expect(out.caps_plain).not.toContain('AUTHINFO');
    expect(out.plain_login).toBe('483');
    expect(out.caps_tls).toContain('AUTHINFO');
    expect(out.caps_tls).not.toContain('STARTTLS');
    expect(out.caps_auth).toContain('POST');
    expect(out.caps_auth).not.toContain('AUTHINFO');
    expect(out.post).toBe('240');
    expect(out.body).toEqual(['.', '..dots', '.x', 'line']);
    expect((out.xref as string[])[0]).toMatch(/^Xref: gatehouse\.test office\.general:\d+ office\.staff:\d+$/);
    expect(out.over_subject).toBe('nntplib post');
    expect(out.xhdr).toBe('nntplib post');
    expect(out.list).toEqual(['lab.announce', 'office.general', 'office.staff']);
  });

  it('hides what bob may not read, and refuses his wrong password with 481', async () => {
    const out = await py(`
res = {}
s = nntplib.NNTP('127.0.0.1', PORT, usenetrc=False)
s.starttls(ctx)
try:
    s.login('bob', 'not-bobs-password')
except nntplib.NNTPError as e:
    res['bad'] = str(e)[:3]
s.login('bob', PASSWORD)
res['list'] = sorted(g.group for g in s.list()[1])
res['desc'] = sorted(s.descriptions('*')[1].keys())
for name in ['office.staff', 'office.none']:
    try:
        s.group(name)
        res[name] = 'selected'
    except nntplib.NNTPError as e:
        res[name] = str(e)[:3]
resp, count, first, last, name = s.group('office.general')
resp, info = s.article(last)
mid = [l for l in info.lines if l.lower().startswith(b'message-id:')][0].split(b' ', 1)[1].decode()
xref = [l.decode() for l in info.lines if l.lower().startswith(b'xref:')]
res['xref'] = xref
res['newsgroups'] = [l.decode() for l in info.lines if l.lower().startswith(b'newsgroups:')]
res['xhdr_ng'] = s.xhdr('newsgroups', mid)[1][0][1]
try:
    s.post(io.BytesIO(b'From: b@x\\r\\nNewsgroups: office.staff\\r\\nSubject: hi\\r\\n\\r\\nx\\r\\n'))
    res['post_hidden'] = 'posted'
except nntplib.NNTPError as e:
    res['post_hidden'] = str(e)[:3]
s.quit()
print(json.dumps(res))
`);
    expect(out.bad).toBe('481');
    expect(out.list).toEqual(['lab.announce', 'office.general']);
    expect(out.desc).toEqual(['lab.announce', 'office.general']);
    expect(out['office.staff']).toBe('411');
    expect(out['office.none']).toBe('411');
    // the cross-post is visible in office.general, but its Xref does not name the hidden group
    expect((out.xref as string[])[0]).toMatch(/^Xref: gatehouse\.test office\.general:\d+$/);
    // ... nor does its Newsgroups header, as served to bob
    expect(out.newsgroups).toEqual(['Newsgroups: office.general']);
    expect(out.xhdr_ng).toBe('office.general');
    expect(out.post_hidden).toBe('441');
  });

  it('speaks implicit TLS (NNTP_SSL) and posts', async () => {
    const out = await py(`
s = nntplib.NNTP_SSL('127.0.0.1', TLS_PORT, ssl_context=ctx, usenetrc=False)
s.login('alice', PASSWORD)
r = s.post(io.BytesIO(b'From: a@x\\r\\nNewsgroups: office.staff\\r\\nSubject: over tls\\r\\n\\r\\nhi\\r\\n'))
resp, count, first, last, name = s.group('office.staff')
resp, over = s.over((last, last))
print(json.dumps({'post': r[:3], 'subject': over[0][1]['subject'], 'date': str(s.date()[1].year)}))
s.quit()
`);
    expect(out).toEqual({ post: '240', subject: 'over tls', date: expect.stringMatching(/^\d{4}$/) });
  });
});

describe('nntplib with anonymous reading configured', () => {
  let anon: TestGatehouse;
  beforeAll(async () => {
    anon = await startGatehouse({
      nntp: { listen: '127.0.0.1:0', groups: [{ name: 'public.news', read: ['anonymous', 'authenticated'], post: ['authenticated'] }, ...GROUPS] },
    });
  });
  afterAll(async () => {
    await anon?.stop();
  });

  it('lists and reads only the anonymous group without logging in, and answers POST with 480 (log in first)', async () => {
    const r = await runPython(
      `
s = nntplib.NNTP('127.0.0.1', PORT, usenetrc=False)
res = {'welcome': s.getwelcome()[:3], 'list': sorted(g.group for g in s.list()[1])}
res['group'] = s.group('public.news')[0][:3]
try:
    s.group('office.general')
except nntplib.NNTPError as e:
    res['hidden'] = str(e)[:3]
try:
    s.post(io.BytesIO(b'From: a@x\\r\\nNewsgroups: public.news\\r\\nSubject: s\\r\\n\\r\\nx\\r\\n'))
except nntplib.NNTPError as e:
    res['post'] = str(e)[:3]
s.quit()
print(json.dumps(res))
`,
      { PORT: String(anon.port('nntp')) },
    );
    expect(r.code, r.stderr).toBe(0);
    // 200: a login could post; POST before it is 480 (log in), as INN answers when authenticating would help
    expect(JSON.parse(r.stdout)).toEqual({ welcome: '200', list: ['public.news'], group: '211', hidden: '411', post: '480' });
  });
});
