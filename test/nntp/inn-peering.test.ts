/*
 * A real INN (Debian inn2, innd 2.7) as a feed peer of Gatehouse in both directions (test/helpers/inn.ts starts
 * it privately as `news` under a temp folder):
 *   INN → Gatehouse   an article POSTed to INN's nnrpd (nntplib) is streamed by innfeed to Gatehouse, which
 *                     stores it under its own numbers (Xref names gatehouse.test, never INN's numbers)
 *   Gatehouse → INN   an article POSTed on Gatehouse (nntplib, STARTTLS + AUTHINFO) leaves through the durable
 *                     per-peer queue (MODE STREAM, CHECK / TAKETHIS, since innd offers STREAMING) and INN stores
 *                     it under its own numbers (history, storage manager, nnrpd)
 *   loops             INN's article is never queued back to INN (its Path holds inn.test), Gatehouse's is never
 *                     offered back by INN; duplicate offers are answered 435 / 438 / 439 on both sides
 *   IHAVE             INN refusing streaming (incoming.conf streaming: false, reloaded): Gatehouse falls back
 *   refused for good  a group the other side does not carry: 439 from INN drains the queue; feed.carried here
 *   burst             100 articles each way, each stored once on each side
 *   deferral          INN throttled (ctlinnd throttle): the article stays queued and arrives after ctlinnd go
 *   passwords         a second pair with a shared secret both ways (incoming.conf password, innfeed.conf
 *                     username/password, Gatehouse password_file) on plain NNTP, as INN speaks it
 * INN numbers its groups from 101 (lab.results) and 51 (lab.misc) so its numbering cannot pass for Gatehouse's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { innAvailable, TestInn } from '../helpers/inn.js';
import { freePort } from '../smtp/listener-client.js';
import { FeedQueue } from '../../src/nntp/feed-queue.js';
import { RawClient, runPython, secureLogin } from './client.js';

const GROUPS = [
  { name: 'lab.results', read: ['authenticated'], post: ['authenticated'] },
  { name: 'lab.misc', read: ['authenticated'], post: ['authenticated'] },
  { name: 'lab.ghonly', read: ['authenticated'], post: ['authenticated'] }, // not carried by INN
];
let t: TestGatehouse;
let inn: TestInn;

beforeAll(async () => {
  if (!innAvailable) return;
  const innPort = await freePort();
  t = await startGatehouse(
    {
      hostname: 'gatehouse.test',
      nntp: {
        listen: '127.0.0.1:0',
        groups: GROUPS,
        limits: { posts_per_minute: 10_000 },
        // innd speaks plain NNTP to its peers (no TLS); the peer's name is INN's path name (pathhost)
        peers: [{ name: 'inn.test', host: '127.0.0.1', port: innPort, tls: false, groups: ['lab.*'], direction: 'both' }],
      },
    },
    [{ name: 'alice', password: PASSWORD }],
  );
  inn = await TestInn.start({
    pathhost: 'inn.test',
    port: innPort,
    groups: [
      { name: 'lab.results', next: 101 },
      { name: 'lab.misc', next: 51 },
      { name: 'lab.innonly' }, // not carried by Gatehouse
    ],
    peer: { name: 'gatehouse.test', address: '127.0.0.1', port: t.port('nntp') },
  });
}, 60_000);

afterAll(async () => {
  await inn?.stop();
  await t?.stop();
}, 60_000);

async function waitFor(what: () => Promise<boolean> | boolean, ms: number, label: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) {
      const feed = t.decisions.filter((d) => d.phase.startsWith('feed')).map((d) => `${d.phase} ${d.verdict} ${d.rule} ${d.object ?? ''}`);
      throw new Error(`timed out after ${ms} ms waiting for ${label}\n${inn.logs()}\n== Gatehouse feed decisions (last 40 of ${feed.length})\n${feed.slice(-40).join('\n')}\n== Gatehouse feed log\n${events('nntp_feed_error').concat(events('nntp_feed_sent')).map((e) => JSON.stringify(e)).slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** HEAD of a Message-ID on Gatehouse (logged in over TLS), or null when it answers 430. */
async function headOnGatehouse(id: string): Promise<string[] | null> {
  const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
  try {
    const r = await c.cmd(`HEAD ${id}`);
    return r.startsWith('221') ? await c.block() : null;
  } finally {
    c.close();
  }
}

/** nntplib against INN's nnrpd: JSON out. */
async function onInn(script: string, env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await runPython(`s = nntplib.NNTP('127.0.0.1', PORT, readermode=True, usenetrc=False)\n${script}\ns.quit()\n`, { PORT: String(inn.readerPort), ...env });
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}\n${inn.logs()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** HEAD of a Message-ID on INN (nnrpd), or null. */
async function headOnInn(id: string): Promise<string[] | null> {
  const out = await onInn(
    `
try:
    resp, info = s.head(os.environ['ID'])
    print(json.dumps({'head': [l.decode('latin1') for l in info.lines]}))
except nntplib.NNTPTemporaryError:
    print(json.dumps({'head': None}))
`,
    { ID: id },
  );
  return out.head as string[] | null;
}

const field = (head: readonly string[], name: string) => head.find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}: `)) ?? null;

/** The Message-IDs ever queued for INN on Gatehouse (its journal for the peer). */
function queuedForInn(): string[] {
  const file = path.join(t.gh.runtime.config.paths.newsDir, 'feeds', 'inn.test.journal');
  return fs.existsSync(file) ? fs.readFileSync(file, 'latin1').split('\n').filter(Boolean) : [];
}

/** Gatehouse's log lines (JSON) with this event for the INN peer. */
function events(event: string): Record<string, unknown>[] {
  const file = path.join(t.gh.runtime.config.paths.logDir, 'gatehouse.log');
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  return text
    .split('\n')
    .filter((l) => l.includes(`"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.event === event && e.peer === 'inn.test');
}

const stamp = Date.now().toString(36);
const innId = `<inn-post.${stamp}@inn.test>`;
let ghId = '';

describe.skipIf(!innAvailable)('INN (innd 2.7) as a feed peer in both directions', () => {
  it('an article posted on INN reaches Gatehouse through innfeed, numbered by Gatehouse', async () => {
    const posted = await onInn(
      `
art = ('From: Bob <bob@inn.test>\\r\\nNewsgroups: lab.results,lab.misc\\r\\nSubject: posted on INN\\r\\n'
       'Message-ID: ' + os.environ['ID'] + '\\r\\n\\r\\nfrom INN\\r\\n.dot line\\r\\n').encode()
resp = s.post(io.BytesIO(art))
resp2, info = s.head(os.environ['ID'])
print(json.dumps({'post': resp[:3], 'head': [l.decode('latin1') for l in info.lines]}))
`,
      { ID: innId },
    );
    expect(posted.post).toBe('240');
    const innHead = posted.head as string[];
    expect(field(innHead, 'Xref')).toBe('Xref: inn.test lab.results:101 lab.misc:51');
    expect(field(innHead, 'Path')).toMatch(/^Path: inn\.test!/);

    await waitFor(async () => (await headOnGatehouse(innId)) !== null, 90_000, 'the INN article on Gatehouse');
    const head = (await headOnGatehouse(innId))!;
    // our name in front of INN's Path; INN's Xref replaced by ours, with our numbers
    expect(field(head, 'Path')).toMatch(/^Path: gatehouse\.test!inn\.test!/);
    const xref = /^Xref: gatehouse\.test lab\.results:(\d+) lab\.misc:(\d+)$/.exec(field(head, 'Xref') ?? '');
    expect(xref, field(head, 'Xref') ?? 'no Xref').not.toBeNull();
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    expect(await c.cmd('GROUP lab.results')).toBe('211 1 1 1 lab.results');
    expect(xref![1]).toBe('1');
    expect(await c.cmd(`STAT ${xref![1]}`)).toBe(`223 1 ${innId}`);
    expect(await c.cmd('GROUP lab.misc')).toBe('211 1 1 1 lab.misc');
    expect(await c.cmd('ARTICLE 1')).toMatch(/^220 1 /);
    const art = await c.block();
    expect(art.slice(-2)).toEqual(['from INN', '.dot line']);
    c.close();
    // taken as a listed peer's feed, recorded by the policy core
    expect(t.decisions.some((d) => d.phase === 'feed_article' && d.verdict === 'allow' && d.object === innId)).toBe(true);
  }, 120_000);

  it('an article posted on Gatehouse reaches INN through the outgoing queue (streaming), numbered by INN', async () => {
    const out = await (async () => {
      const r = await runPython(
        `
s = nntplib.NNTP('127.0.0.1', PORT, readermode=False, usenetrc=False)
s.starttls(ctx)
s.login('alice', PASSWORD)
art = b'From: Alice <alice@gatehouse.test>\\r\\nNewsgroups: lab.results\\r\\nSubject: posted on Gatehouse\\r\\n\\r\\nfrom Gatehouse\\r\\n.dot line\\r\\n'
resp = s.post(io.BytesIO(art))
s.quit()
print(json.dumps({'post': resp}))
`,
        { PORT: String(t.port('nntp')), PASSWORD },
      );
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim()) as { post: string };
    })();
    expect(out.post).toMatch(/^240 /);
    ghId = /<[^>]+>/.exec(out.post)![0];
    expect(field((await headOnGatehouse(ghId))!, 'Xref')).toBe('Xref: gatehouse.test lab.results:2');

    await waitFor(() => inn.history(ghId) !== null, 90_000, 'the Gatehouse article in INN history');
    const stored = inn.article(ghId);
    expect(stored, inn.logs()).not.toBeNull();
    expect(stored).toContain('from Gatehouse');
    const head = (await headOnInn(ghId))!;
    expect(head).not.toBeNull();
    expect(field(head, 'Xref')).toBe('Xref: inn.test lab.results:102');
    expect(field(head, 'Path')).toMatch(/^Path: inn\.test!(?:[^!]*!)*gatehouse\.test!not-for-mail$/);
    expect(field(head, 'Message-ID')).toBe(`Message-ID: ${ghId}`);
    // sent by streaming: innd offers STREAMING to its listed peer
    await waitFor(() => events('nntp_feed_sent').length > 0, 10_000, 'the feed run log line');
    expect(events('nntp_feed_sent').map((e) => e.mode)).toContain('stream');
    expect(events('nntp_feed_sent').map((e) => e.mode)).not.toContain('ihave');
  }, 120_000);

  it('loops: INN\'s article is never queued back to INN; Gatehouse\'s is never offered back to Gatehouse', async () => {
    expect(ghId).not.toBe('');
    const queued = queuedForInn();
    expect(queued).toContain(ghId); // the journal is the real one (not vacuous)
    expect(queued).not.toContain(innId);
    // a later INN article arrives; innfeed sends in order, so had INN offered Gatehouse's back, it would be seen by now
    const laterId = `<inn-later.${stamp}@inn.test>`;
    await onInn(
      `
art = ('From: Bob <bob@inn.test>\\r\\nNewsgroups: lab.results\\r\\nSubject: later\\r\\nMessage-ID: ' + os.environ['ID'] + '\\r\\n\\r\\nlater\\r\\n').encode()
print(json.dumps({'post': s.post(io.BytesIO(art))[:3]}))
`,
      { ID: laterId },
    );
    await waitFor(async () => (await headOnGatehouse(laterId)) !== null, 90_000, 'the later INN article on Gatehouse');
    expect(t.decisions.filter((d) => (d.phase === 'feed_want' || d.phase === 'feed_article') && d.object === ghId)).toEqual([]);
    expect(queuedForInn()).not.toContain(laterId);
  }, 120_000);

  it('duplicate offers: 435 / 438 / 439 from Gatehouse and from INN', async () => {
    // to Gatehouse, from INN's (listed) address
    const g = await RawClient.connect(t.port('nntp'));
    expect(await g.line()).toMatch(/^20[01] /);
    expect(await g.cmd(`IHAVE ${innId}`)).toMatch(/^435/);
    expect(await g.cmd('MODE STREAM')).toMatch(/^203/);
    expect(await g.cmd(`CHECK ${innId}`)).toBe(`438 ${innId}`);
    expect(await g.cmd(`CHECK ${ghId}`)).toBe(`438 ${ghId}`);
    g.close();
    // to innd, from Gatehouse's (listed) address
    const i = await RawClient.connect(inn.port);
    expect(await i.line()).toMatch(/^200 /);
    expect(await i.cmd(`IHAVE ${ghId}`)).toMatch(/^435/);
    expect(await i.cmd(`IHAVE ${innId}`)).toMatch(/^435/);
    expect(await i.cmd('MODE STREAM')).toMatch(/^203/);
    expect(await i.cmd(`CHECK ${ghId}`)).toMatch(new RegExp(`^438 ${ghId.replace(/[.$]/g, '\\$&')}`));
    const again = inn.article(ghId)!.replace(/\r?\n/g, '\r\n');
    i.write(`TAKETHIS ${ghId}\r\n${again.split('\r\n').map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n').replace(/(\r\n)?$/, '\r\n')}.\r\n`);
    expect(await i.line(15_000)).toMatch(/^439 /);
    i.close();
    // each stored once on each side
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    expect(await c.cmd('GROUP lab.results')).toBe('211 3 1 3 lab.results');
    c.close();
    const counts = await onInn(`print(json.dumps({'group': list(s.group('lab.results')[1:4])}))`);
    expect(counts.group).toEqual([3, 101, 103]);
  }, 60_000);

  it('INN without streaming (incoming.conf streaming: false): the queue is sent by IHAVE', async () => {
    inn.setStreaming(false);
    try {
      const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
      const [, r] = await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: lab.results', 'Subject: by IHAVE', '', 'ihave body']);
      c.close();
      expect(r).toMatch(/^240 /);
      const id = /<[^>]+>/.exec(r!)![0];
      await waitFor(() => inn.history(id) !== null, 90_000, 'the IHAVE article in INN history');
      expect(field((await headOnInn(id))!, 'Xref')).toBe('Xref: inn.test lab.results:104');
      await waitFor(() => events('nntp_feed_sent').some((e) => e.mode === 'ihave'), 10_000, 'an IHAVE feed run');
    } finally {
      inn.setStreaming(true);
    }
  }, 120_000);

  it('refused for good: INN refuses a group it does not carry, the entry leaves the queue (no retries)', async () => {
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    const [, r] = await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: lab.ghonly', 'Subject: not for INN', '', 'x']);
    c.close();
    expect(r).toMatch(/^240 /);
    const id = /<[^>]+>/.exec(r!)![0];
    expect(queuedForInn()).toContain(id); // lab.* is the peer's pattern: it is offered
    const newsDir = t.gh.runtime.config.paths.newsDir;
    await waitFor(() => FeedQueue.inspect(newsDir, 'inn.test').pending.length === 0, 60_000, 'the queue to drain');
    expect(inn.history(id)).toBeNull();
    const errors = events('nntp_feed_error').length;
    await new Promise((res) => setTimeout(res, 1500));
    expect(events('nntp_feed_error').length).toBe(errors);
  }, 90_000);

  it('refused for good: Gatehouse refuses an INN article for a group it does not carry (feed.carried)', async () => {
    const id = `<inn-only.${stamp}@inn.test>`;
    const posted = await onInn(
      `
art = ('From: Bob <bob@inn.test>\\r\\nNewsgroups: lab.innonly\\r\\nSubject: INN only\\r\\nMessage-ID: ' + os.environ['ID'] + '\\r\\n\\r\\nx\\r\\n').encode()
print(json.dumps({'post': s.post(io.BytesIO(art))[:3]}))
`,
      { ID: id },
    );
    expect(posted.post).toBe('240');
    await waitFor(() => t.decisions.some((d) => d.phase === 'feed_article' && d.object === id), 90_000, 'the offer of the INN-only article');
    expect(t.decisions.filter((d) => d.phase === 'feed_article' && d.object === id).map((d) => [d.verdict, d.rule])).toEqual([['deny', 'feed.carried']]);
    expect(await headOnGatehouse(id)).toBeNull();
  }, 120_000);

  it('a cross-post to a group Gatehouse carries and one it does not: stored in the carried one, Xref names only it', async () => {
    const id = `<inn-cross.${stamp}@inn.test>`;
    const posted = await onInn(
      `
art = ('From: Bob <bob@inn.test>\\r\\nNewsgroups: lab.innonly,lab.results\\r\\nSubject: cross\\r\\nMessage-ID: ' + os.environ['ID'] + '\\r\\n\\r\\nx\\r\\n').encode()
resp = s.post(io.BytesIO(art))
print(json.dumps({'post': resp[:3], 'head': [l.decode('latin1') for l in s.head(os.environ['ID'])[1].lines]}))
`,
      { ID: id },
    );
    expect(posted.post).toBe('240');
    expect(field(posted.head as string[], 'Xref')).toMatch(/^Xref: inn\.test lab\.innonly:\d+ lab\.results:\d+$/);
    await waitFor(async () => (await headOnGatehouse(id)) !== null, 90_000, 'the cross-post on Gatehouse');
    const head = (await headOnGatehouse(id))!;
    // a reader is shown only the groups that exist for it here (a group not carried is never named)
    expect(field(head, 'Newsgroups')).toBe('Newsgroups: lab.results');
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    const g = (await c.cmd('GROUP lab.results')).split(' ');
    c.close();
    expect(field(head, 'Xref')).toBe(`Xref: gatehouse.test lab.results:${g[3]}`);
  }, 120_000);

  it('a burst both ways (100 articles each): all arrive, each once, numbered on each side', async () => {
    const N = 100;
    const tag = `burst.${stamp}`;
    const r = await runPython(
      `
s = nntplib.NNTP('127.0.0.1', PORT, readermode=True, usenetrc=False)
out = []
for n in range(int(os.environ['N'])):
    mid = '<%s.%d@inn.test>' % (os.environ['TAG'], n)
    art = ('From: Bob <bob@inn.test>\\r\\nNewsgroups: lab.misc\\r\\nSubject: burst %d\\r\\nMessage-ID: %s\\r\\n\\r\\nx\\r\\n' % (n, mid)).encode()
    out.append(s.post(io.BytesIO(art))[:3])
s.quit()
print(json.dumps(out))
`,
      { PORT: String(inn.readerPort), N: String(N), TAG: tag },
      60_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual(Array(N).fill('240'));
    const fromGh: string[] = [];
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    for (let n = 0; n < N; n++) {
      const [, p] = await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: lab.misc', `Subject: burst ${n}`, '', 'y']);
      expect(p).toMatch(/^240 /);
      fromGh.push(/<[^>]+>/.exec(p!)![0]);
    }
    const ids = async (): Promise<string[]> => {
      expect(await c.cmd('GROUP lab.misc')).toMatch(/^211 /);
      expect(await c.cmd('HDR Message-ID 1-')).toMatch(/^225/);
      return (await c.block()).map((l) => l.split(' ')[1]!);
    };
    await waitFor(async () => (await ids()).filter((i) => i.includes(tag)).length === N, 120_000, 'the INN burst on Gatehouse');
    const onGh = await ids();
    expect(new Set(onGh).size).toBe(onGh.length); // nothing twice
    c.close();
    await waitFor(() => fromGh.every((i) => inn.history(i) !== null), 120_000, 'the Gatehouse burst in INN');
    const counts = await onInn(`print(json.dumps({'group': list(s.group('lab.misc')[1:4])}))`);
    // INN: the first INN article (51), the burst from INN and from Gatehouse, each once
    expect(counts.group).toEqual([1 + 2 * N, 51, 51 + 2 * N]);
  }, 300_000);

  it('INN throttled: the article stays queued on Gatehouse and arrives after ctlinnd go', async () => {
    inn.ctl('throttle', 'peering test');
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    const [, r] = await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: lab.misc', 'Subject: while INN is throttled', '', 'deferred']);
    c.close();
    expect(r).toMatch(/^240 /);
    const id = /<[^>]+>/.exec(r!)![0];
    // the feeder tries, INN refuses (400 throttled), the article stays queued
    await waitFor(() => events('nntp_feed_error').length > 0, 30_000, 'a refused feed run');
    expect(inn.history(id)).toBeNull();
    expect(queuedForInn()).toContain(id);
    inn.ctl('go', 'peering test');
    await waitFor(() => inn.history(id) !== null, 90_000, 'the deferred article in INN history');
    const head = (await headOnInn(id))!;
    expect(field(head, 'Xref')).toBe('Xref: inn.test lab.misc:252');
  }, 150_000);
});

describe.skipIf(!innAvailable)('INN as a peer with passwords both ways (AUTHINFO on plain NNTP, as innd and innfeed speak it)', () => {
  const SECRET = 'inn-peer-secret-5521';
  let g: TestGatehouse;
  let i: TestInn;
  let secretDir = '';
  beforeAll(async () => {
    const innPort = await freePort();
    secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-inn-secret-'));
    const secretFile = path.join(secretDir, 'inn2.secret');
    fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
    g = await startGatehouse(
      {
        hostname: 'gh2.test',
        // auth_requires_tls stays true (the default): users log in over TLS only
        nntp: { listen: '127.0.0.1:0', groups: GROUPS.slice(0, 1), peers: [{ name: 'inn2.test', host: '127.0.0.1', port: innPort, tls: false, groups: ['lab.*'], direction: 'both', password_file: secretFile }] },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
    i = await TestInn.start({
      pathhost: 'inn2.test',
      port: innPort,
      groups: [{ name: 'lab.results', next: 11 }],
      peer: { name: 'gh2.test', address: '127.0.0.1', port: g.port('nntp') },
      login: { user: 'inn2.test', password: SECRET },
    });
  }, 60_000);
  afterAll(async () => {
    await i?.stop();
    await g?.stop();
    if (secretDir) fs.rmSync(secretDir, { recursive: true, force: true });
  }, 60_000);

  it('a plain connection from the peer address: no feed before the login, a user still gets 483, a wrong secret 481', async () => {
    const c = await RawClient.connect(g.port('nntp'));
    expect(await c.line()).toMatch(/^20[01] /);
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    expect(await c.cmd('AUTHINFO USER alice')).toMatch(/^483/);
    expect(await c.login('inn2.test', 'wrong-secret')).toMatch(/^481/);
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    c.close();
    const logins = g.decisions.filter((d) => d.phase === 'feed_login').map((d) => [d.verdict, d.rule]);
    expect(logins).toEqual(expect.arrayContaining([['deny', 'feed.login_peer'], ['deny', 'feed.login_secret']]));
    // the wrong secret never reached the users' password check
    expect(g.decisions.some((d) => d.phase === 'authenticate')).toBe(false);
  });

  it('innfeed logs in with the secret and feeds; Gatehouse logs in to innd with it and feeds back', async () => {
    const id = `<inn2-post.${stamp}@inn2.test>`;
    const r = await runPython(
      `
s = nntplib.NNTP('127.0.0.1', PORT, readermode=True, usenetrc=False)
art = ('From: Bob <bob@inn2.test>\\r\\nNewsgroups: lab.results\\r\\nSubject: from INN with a password\\r\\nMessage-ID: ' + os.environ['ID'] + '\\r\\n\\r\\nx\\r\\n').encode()
print(json.dumps({'post': s.post(io.BytesIO(art))[:3]}))
s.quit()
`,
      { PORT: String(i.readerPort), ID: id },
    );
    expect(r.code, r.stderr).toBe(0);
    const deadline = Date.now() + 90_000;
    const onG = async () => {
      const c = await secureLogin(g.port('nntp'), 'alice', PASSWORD);
      const h = await c.cmd(`STAT ${id}`);
      c.close();
      return h.startsWith('223');
    };
    while (!(await onG())) {
      if (Date.now() > deadline) throw new Error(`INN article not on Gatehouse\n${i.logs()}`);
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(g.decisions.some((d) => d.phase === 'feed_login' && d.verdict === 'allow' && d.rule === 'feed.login_plain')).toBe(true);

    const c = await secureLogin(g.port('nntp'), 'alice', PASSWORD);
    const [, p] = await c.post(['From: Alice <alice@gh2.test>', 'Newsgroups: lab.results', 'Subject: to INN with a password', '', 'y']);
    c.close();
    expect(p).toMatch(/^240 /);
    const ghPost = /<[^>]+>/.exec(p!)![0];
    const until = Date.now() + 90_000;
    while (i.history(ghPost) === null) {
      if (Date.now() > until) throw new Error(`Gatehouse article not in INN\n${i.logs()}`);
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(i.article(ghPost)).toMatch(/^Xref: inn2\.test lab\.results:12$/m);
  }, 120_000);
});
