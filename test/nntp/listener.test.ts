/*
 * The NNTP listener over real sockets, byte by byte: greeting and refusals, line limits, STARTTLS (and
 * injection), AUTHINFO ordering and enumeration, capabilities per state, hidden groups, the reader commands
 * (incl. NEXT/LAST/NEWNEWS/NEWGROUPS, which nntp-server lacks or gets wrong) and POST validation.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { metrics } from '../../src/ops/metrics.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { GROUPS, RawClient, secureLogin } from './client.js';

let t: TestGatehouse;
let port: number;
let tlsPort: number;

beforeAll(async () => {
  t = await startGatehouse(
    {
      nntp: {
        listen: '127.0.0.1:0',
        implicit_tls_listen: '127.0.0.1:0',
        access: { deny: ['127.0.0.66/32'] },
        groups: GROUPS,
        limits: { article_bytes: 4096, posts_per_minute: 1000 },
      },
    },
    [
      { name: 'alice', password: PASSWORD, groups: ['staff'] },
      { name: 'bob', password: PASSWORD },
    ],
  );
  port = t.port('nntp');
  tlsPort = t.port('nntp', 'implicit_tls');
});

afterAll(async () => {
  await t?.stop();
});

const article = (groups: string, subject: string, extra: string[] = [], body: string[] = ['hello']) => [`From: Alice <alice@gatehouse.test>`, `Newsgroups: ${groups}`, `Subject: ${subject}`, ...extra, '', ...body];

describe('connection', () => {
  it('greets 200 before authentication when a login could post (RFC 3977 §5.1.1, as INN)', async () => {
    const c = await RawClient.connect(port);
    expect(await c.line()).toMatch(/^200 /);
    expect(await c.cmd('QUIT')).toMatch(/^205/);
    expect(await c.line()).toBeNull();
  });

  it('refuses a denied address with 502 and closes', async () => {
    const c = await RawClient.connect(port, { localAddress: '127.0.0.66' });
    expect(await c.line()).toMatch(/^502 /);
    expect(await c.line()).toBeNull();
    expect(t.decisions.some((d) => d.service === 'nntp' && d.phase === 'connect' && d.verdict === 'deny' && d.ip === '127.0.0.66')).toBe(true);
  });

  it('refuses a denied address on the implicit-TLS port too', async () => {
    const c = await RawClient.connect(tlsPort, { tls: true, localAddress: '127.0.0.66' });
    expect(await c.line()).toMatch(/^502 /);
    expect(await c.line()).toBeNull();
  });

  it('answers thousands of pipelined commands in order without losing any', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    const n = 3000;
    c.write(Array.from({ length: n }, (_, i) => (i % 2 ? 'DATE\r\n' : 'NOPE\r\n')).join(''));
    for (let i = 0; i < n; i++) expect(await c.line()).toMatch(i % 2 ? /^111/ : /^500/);
    expect(await c.cmd('DATE')).toMatch(/^111/);
    c.close();
  });

  it('answers 500 to unknown commands and 501 to bad syntax', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    expect(await c.cmd('FROBNICATE')).toMatch(/^500/);
    expect(await c.cmd('ARTICLEX 1')).toMatch(/^500/);
    expect(await c.cmd('GROUP')).toMatch(/^501/);
    expect(await c.cmd('DATE')).toMatch(/^111 \d{14}$/);
    c.close();
  });

  it('refuses an over-long command line and keeps the session usable', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    expect(await c.cmd(`GROUP ${'a'.repeat(600)}`)).toMatch(/^501/);
    c.write(`HELP ${'x'.repeat(100_000)}\r\n`);
    expect(await c.line()).toMatch(/^501/);
    expect(await c.cmd('DATE')).toMatch(/^111/);
    c.close();
  });

  it('answers pipelined commands in order', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    c.write('DATE\r\nFOO\r\nHELP\r\n');
    expect(await c.line()).toMatch(/^111/);
    expect(await c.line()).toMatch(/^500/);
    expect(await c.line()).toMatch(/^100/);
    expect((await c.block()).length).toBeGreaterThan(5);
    c.close();
  });

  it('refuses IHAVE (no peering)', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    expect(await c.cmd('IHAVE <x@y>')).toMatch(/^502/);
    c.close();
  });
});

describe('TLS and AUTHINFO', () => {
  it('shows STARTTLS but not AUTHINFO before TLS, and refuses AUTHINFO with 483', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    expect(await c.cmd('CAPABILITIES')).toMatch(/^101/);
    const caps = await c.block();
    expect(caps).toContain('STARTTLS');
    expect(caps.some((l) => l.startsWith('AUTHINFO'))).toBe(false);
    // POST is offered because a login could post (tin 2.6 offers posting only then); POST itself answers 480
    expect(caps).toContain('POST');
    expect(await c.cmd('AUTHINFO USER alice')).toMatch(/^483/);
    expect(await c.cmd('AUTHINFO PASS x')).toMatch(/^483/);
    c.close();
  });

  it('discards commands pipelined after STARTTLS (injection)', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    c.write('STARTTLS\r\nAUTHINFO USER alice\r\nDATE\r\n');
    expect(await c.line()).toMatch(/^382/);
    await c.upgrade();
    // Nothing from before the handshake is answered: the first reply is to what we send now.
    expect(await c.cmd('HELP')).toMatch(/^100/);
    await c.block();
    expect(await c.cmd('CAPABILITIES')).toMatch(/^101/);
    const caps = await c.block();
    expect(caps).not.toContain('STARTTLS');
    expect(caps).toContain('AUTHINFO USER');
    expect(await c.cmd('STARTTLS')).toMatch(/^502/);
    c.close();
  });

  it('gives the same 481 for unknown user and wrong password, and 281 for the right one', async () => {
    const c = await secureLogin(port, 'bob', PASSWORD);
    expect(await c.cmd('AUTHINFO USER bob')).toMatch(/^502/);
    c.close();
    const d = await RawClient.connect(tlsPort, { tls: true });
    await d.line();
    expect(await d.cmd('AUTHINFO PASS x')).toMatch(/^482/);
    const wrong = await d.login('alice', 'wrong-password-123');
    const unknown = await d.login('nosuchuser', PASSWORD);
    expect(wrong).toMatch(/^481/);
    expect(unknown).toBe(wrong);
    d.close();
  });

  it('speaks implicit TLS with the same commands', async () => {
    const c = await RawClient.connect(tlsPort, { tls: true });
    expect(await c.line()).toMatch(/^20[01] /);
    expect(await c.cmd('CAPABILITIES')).toMatch(/^101/);
    const caps = await c.block();
    expect(caps).not.toContain('STARTTLS');
    expect(caps).toContain('AUTHINFO USER');
    expect(await c.login('alice', PASSWORD)).toMatch(/^281/);
    expect(await c.cmd('CAPABILITIES')).toMatch(/^101/);
    const after = await c.block();
    expect(after).toContain('POST');
    expect(after.some((l) => l.startsWith('AUTHINFO'))).toBe(false);
    c.close();
  });
});

describe('rights and hidden groups', () => {
  let staffId = '';

  beforeAll(async () => {
    const a = await secureLogin(port, 'alice', PASSWORD);
    const [, r] = await a.post(article('office.staff', 'staff secret'));
    staffId = /<[^>]+>/.exec(r ?? '')?.[0] ?? '';
    a.close();
    expect(staffId).not.toBe('');
  });

  it('asks for authentication before reading', async () => {
    const c = await RawClient.connect(port);
    await c.line();
    expect(await c.cmd('LIST')).toMatch(/^480/);
    expect(await c.cmd('GROUP office.general')).toMatch(/^480/);
    expect(await c.cmd(`ARTICLE ${staffId}`)).toMatch(/^480/);
    expect(await c.cmd('POST')).toMatch(/^480/);
    c.close();
  });

  it('hides a group bob may not read: absent from lists, 411 on GROUP, 430 for its articles', async () => {
    const c = await secureLogin(port, 'bob', PASSWORD);
    expect(await c.cmd('LIST ACTIVE')).toMatch(/^215/);
    const active = (await c.block()).map((l) => l.split(' ')[0]);
    expect(active).toEqual(['lab.announce', 'office.general']);
    expect(await c.cmd('LIST NEWSGROUPS')).toMatch(/^215/);
    expect((await c.block()).join('\n')).not.toContain('office.staff');
    expect(await c.cmd('LIST ACTIVE.TIMES')).toMatch(/^215/);
    expect((await c.block()).map((l) => l.split(' ')[0])).toEqual(['lab.announce', 'office.general']);
    expect(await c.cmd('NEWGROUPS 19700101 000000 GMT')).toMatch(/^231/);
    expect((await c.block()).join('\n')).not.toContain('office.staff');
    const hidden = await c.cmd('GROUP office.staff');
    const missing = await c.cmd('GROUP office.nothere');
    expect(hidden).toMatch(/^411/);
    expect(hidden).toBe(missing.replace('office.nothere', 'office.staff'));
    expect(await c.cmd(`ARTICLE ${staffId}`)).toBe(await c.cmd('ARTICLE <nothere@gatehouse.test>'));
    expect(await c.cmd(`STAT ${staffId}`)).toMatch(/^430/);
    expect(await c.cmd(`OVER ${staffId}`)).toMatch(/^430/);
    expect(await c.cmd(`HDR Subject ${staffId}`)).toMatch(/^430/);
    expect(await c.cmd('NEWNEWS * 19700101 000000 GMT')).toMatch(/^230/);
    expect(await c.block()).not.toContain(staffId);
    // Posting into a hidden group reads exactly like posting into a missing one.
    const [, r1] = await c.post(article('office.staff', 'x'));
    const [, r2] = await c.post(article('office.nothere', 'x'));
    expect(r1).toMatch(/^441/);
    expect(r1).toBe(r2!.replace('office.nothere', 'office.staff'));
    c.close();
  });

  it('shows the group to alice, with y/n posting flags', async () => {
    const c = await secureLogin(port, 'alice', PASSWORD);
    expect(await c.cmd('LIST')).toMatch(/^215/);
    const lines = await c.block();
    expect(lines.find((l) => l.startsWith('office.staff '))).toMatch(/ y$/);
    expect(await c.cmd(`STAT ${staffId}`)).toMatch(/^223 0 /);
    c.close();
    const b = await secureLogin(port, 'bob', PASSWORD);
    expect(await b.cmd('LIST ACTIVE lab.*')).toMatch(/^215/);
    expect(await b.block()).toEqual([expect.stringMatching(/^lab\.announce \d+ \d+ n$/)]);
    b.close();
  });

  it('refuses a cross-post through a group the poster may not post to, as a whole', async () => {
    const c = await secureLogin(port, 'bob', PASSWORD);
    expect(await c.cmd('GROUP office.general')).toMatch(/^211/);
    const before = await c.cmd('GROUP office.general');
    const seen = t.decisions.length;
    const [, r] = await c.post(article('office.general,lab.announce', 'sneaky'));
    expect(r).toMatch(/^441 .*lab\.announce/);
    // every group's decision is recorded, in order, by the time the reply arrives
    expect(t.decisions.slice(seen).filter((d) => d.phase === 'post').map((d) => [d.verdict, d.object])).toEqual([
      ['allow', 'office.general'],
      ['deny', 'lab.announce'],
    ]);
    expect(await c.cmd('GROUP office.general')).toBe(before);
    c.close();
  });

  it('shows a cross-post in OVER with the Xref each reader may see (alice first, so her row is cached)', async () => {
    const a = await secureLogin(port, 'alice', PASSWORD);
    const seen = t.decisions.length;
    const [, r] = await a.post(article('office.general,office.staff', 'cross over'));
    expect(r).toMatch(/^240/);
    // the allows are recorded while the spool is written, and before the 240
    expect(t.decisions.slice(seen).filter((d) => d.phase === 'post').map((d) => [d.verdict, d.object, d.user])).toEqual([
      ['allow', 'office.general', 'alice'],
      ['allow', 'office.staff', 'alice'],
    ]);
    const id = /<[^>]+>/.exec(r!)![0];
    const xrefOf = async (c: RawClient) => {
      expect(await c.cmd(`OVER ${id}`)).toMatch(/^224/);
      const row = await c.block();
      expect(row).toHaveLength(1);
      return row[0]!.split('\t')[8];
    };
    expect(await xrefOf(a)).toMatch(/^Xref: gatehouse\.test office\.general:\d+ office\.staff:\d+$/);
    a.close();
    const b = await secureLogin(port, 'bob', PASSWORD);
    expect(await xrefOf(b)).toMatch(/^Xref: gatehouse\.test office\.general:\d+$/);
    b.close();
  });

  it('never removes an article because of a forged Control: cancel', async () => {
    const a = await secureLogin(port, 'alice', PASSWORD);
    const [, r] = await a.post(article('office.general', 'keep me'));
    const id = /<[^>]+>/.exec(r!)![0];
    a.close();
    const b = await secureLogin(port, 'bob', PASSWORD);
    await b.post(article('office.general', `cmsg cancel ${id}`, [`Control: cancel ${id}`]));
    expect(await b.cmd(`STAT ${id}`)).toMatch(/^223/);
    b.close();
  });
});

describe('POST', () => {
  let c: RawClient;
  beforeAll(async () => {
    c = await secureLogin(port, 'bob', PASSWORD);
  });
  afterAll(() => c.close());

  const refused: [string, string[]][] = [
    ['missing From', ['Newsgroups: office.general', 'Subject: s', '', 'b']],
    ['missing Subject', ['From: b@x', 'Newsgroups: office.general', '', 'b']],
    ['missing Newsgroups', ['From: b@x', 'Subject: s', '', 'b']],
    ['two Newsgroups headers', ['From: b@x', 'Subject: s', 'Newsgroups: office.general', 'Newsgroups: office.staff', '', 'b']],
    ['a malformed header line', ['From: b@x', 'Subject: s', 'Newsgroups: office.general', 'no colon here', '', 'b']],
    ['a bad Message-ID', ['From: b@x', 'Subject: s', 'Newsgroups: office.general', 'Message-ID: not-an-id', '', 'b']],
    ['an unknown group', ['From: b@x', 'Subject: s', 'Newsgroups: no.such.group', '', 'b']],
    ['a group bob may not post to', ['From: b@x', 'Subject: s', 'Newsgroups: lab.announce', '', 'b']],
  ];
  for (const [what, lines] of refused) {
    it(`refuses an article with ${what} (441)`, async () => {
      const [first, second] = await c.post(lines);
      expect(first).toMatch(/^340/);
      expect(second).toMatch(/^441 /);
    });
  }

  it('refuses bare CR and bare LF in the header', async () => {
    expect(await c.cmd('POST')).toMatch(/^340/);
    c.write('From: b@x\r\nSubject: s\rInjected: yes\r\nNewsgroups: office.general\r\n\r\nbody\r\n.\r\n');
    expect(await c.line()).toMatch(/^441 .*bare CR/);
    expect(await c.cmd('POST')).toMatch(/^340/);
    c.write('From: b@x\nSubject: s\r\nNewsgroups: office.general\r\n\r\nbody\r\n.\r\n');
    expect(await c.line()).toMatch(/^441 .*bare LF/);
  });

  it('takes POST, its article and the next commands pipelined in one write, the dot line in pieces', async () => {
    const art = 'From: b@x\r\nSubject: piped\r\nNewsgroups: office.general\r\n\r\nline one\r\n..dot\r\n';
    c.write(`POST\r\n${art}.\r\nDATE\r\nPOST\r\n`);
    expect(await c.line()).toMatch(/^340/);
    const r = await c.line();
    expect(r).toMatch(/^240 /);
    expect(await c.line()).toMatch(/^111 /);
    expect(await c.line()).toMatch(/^340/);
    c.write(`${art}\r`);
    await new Promise((res) => setTimeout(res, 30));
    c.write('\n.');
    await new Promise((res) => setTimeout(res, 30));
    c.write('\r\n');
    expect(await c.line()).toMatch(/^240 /);
    const id = /<[^>]+>/.exec(r!)![0];
    expect(await c.cmd(`BODY ${id}`)).toMatch(/^222 /);
    expect(await c.block()).toEqual(['line one', '.dot']);
  });

  it('refuses an article over article_bytes and stays in sync', async () => {
    const [, r] = await c.post(article('office.general', 'big', [], Array.from({ length: 100 }, () => 'x'.repeat(70))));
    expect(r).toMatch(/^441 .*larger/);
    expect(await c.cmd('DATE')).toMatch(/^111/);
  });

  it('adds and strips headers, keeps the body byte for byte (dot-stuffing)', async () => {
    const body = ['.', '..', '.leading', 'trailing space ', '', 'caf\xe9 8-bit', '. .'];
    const [, r] = await c.post(article('office.general', 'round trip', ['Xref: evil office.staff:1', 'Injection-Info: forged', 'Path: forged!path'], body));
    expect(r).toMatch(/^240 /);
    const id = /<[^>]+>/.exec(r!)![0];
    expect(await c.cmd(`ARTICLE ${id}`)).toMatch(new RegExp(`^220 0 ${id.replace(/[.$]/g, '\\$&')}`));
    const lines = await c.block();
    const sep = lines.indexOf('');
    const head = lines.slice(0, sep);
    expect(lines.slice(sep + 1)).toEqual(body);
    expect(head).toContain('Path: gatehouse.test!not-for-mail');
    expect(head.filter((h) => /^Xref:/i.test(h))).toEqual([expect.stringMatching(/^Xref: gatehouse\.test office\.general:\d+$/)]);
    expect(head.filter((h) => /^Injection-Info:/i.test(h))).toEqual([expect.stringContaining('posting-account="bob"')]);
    expect(head.some((h) => h.startsWith('Injection-Date: '))).toBe(true);
    expect(head.some((h) => h.startsWith('Date: '))).toBe(true);
    expect(head.join('\n')).not.toContain(PASSWORD);
    const [, dup] = await c.post(article('office.general', 'again', [`Message-ID: ${id}`]));
    expect(dup).toMatch(/^441 .*[Dd]uplicate/);
  });

  it('counts accepted and rejected posts for /metrics', async () => {
    const text = await metrics.text();
    expect(text).toMatch(/gatehouse_nntp_posts_total\{outcome="accepted"\} [1-9]/);
    expect(text).toMatch(/gatehouse_nntp_posts_total\{outcome="rejected"\} [1-9]/);
  });

  it('keeps a client Message-ID and Date', async () => {
    const id = `<own.${Date.now()}@client.example>`;
    const [, r] = await c.post(article('office.general', 'mine', [`Message-ID: ${id}`, 'Date: Mon, 30 Nov 2026 10:00:00 +0000']));
    expect(r).toBe(`240 Article received ${id}`);
    expect(await c.cmd(`HEAD ${id}`)).toMatch(/^221/);
    expect(await c.block()).toContain('Date: Mon, 30 Nov 2026 10:00:00 +0000');
  });
});

describe('reader commands from the store', () => {
  it('navigates with GROUP, NEXT, LAST, LISTGROUP, OVER, HDR, BODY', async () => {
    const c = await secureLogin(port, 'alice', PASSWORD);
    for (const s of ['one', 'two', 'three']) expect((await c.post(article('lab.announce', s)))[1]).toMatch(/^240/);
    const g = await c.cmd('GROUP lab.announce');
    const [, count, low, high] = g.split(' ').map(Number) as [number, number, number, number];
    expect(count).toBe(3);
    expect(high - low).toBe(2);
    expect(await c.cmd('LAST')).toMatch(/^422/);
    expect(await c.cmd('NEXT')).toMatch(new RegExp(`^223 ${low + 1} <`));
    expect(await c.cmd('NEXT')).toMatch(new RegExp(`^223 ${high} <`));
    expect(await c.cmd('NEXT')).toMatch(/^421/);
    expect(await c.cmd('LAST')).toMatch(new RegExp(`^223 ${low + 1} <`));
    expect(await c.cmd('LISTGROUP')).toMatch(/^211/);
    expect(await c.block()).toEqual([String(low), String(low + 1), String(high)]);
    expect(await c.cmd(`OVER ${low}-${high}`)).toMatch(/^224/);
    const over = await c.block();
    expect(over.map((l) => l.split('\t')[1])).toEqual(['one', 'two', 'three']);
    expect(await c.cmd(`XOVER ${high}`)).toMatch(/^224/);
    expect(await c.block()).toHaveLength(1);
    const mid = over[0]!.split('\t')[4]!;
    expect(await c.cmd(`OVER ${mid}`)).toMatch(/^224/);
    expect((await c.block())[0]).toMatch(/^0\tone\t/);
    expect(await c.cmd('OVER')).toMatch(/^224/);
    expect((await c.block())[0]).toMatch(new RegExp(`^${low + 1}\ttwo\t`));
    expect(await c.cmd(`OVER ${high + 1}-`)).toMatch(/^423/);
    expect(await c.cmd(`HDR Subject ${low}-`)).toMatch(/^225/);
    expect(await c.block()).toEqual([`${low} one`, `${low + 1} two`, `${high} three`]);
    expect(await c.cmd(`BODY ${high}`)).toMatch(new RegExp(`^222 ${high} <`));
    expect(await c.block()).toEqual(['hello']);
    expect(await c.cmd('ARTICLE 999999')).toMatch(/^423/);
    expect(await c.cmd('LIST OVERVIEW.FMT')).toMatch(/^215/);
    expect((await c.block())[0]).toBe('Subject:');
    expect(await c.cmd('LIST HEADERS')).toMatch(/^215/);
    await c.block();
    expect(await c.cmd('NEWNEWS lab.* 19700101 000000')).toMatch(/^230/);
    expect(await c.block()).toHaveLength(3);
    const future = new Date(Date.now() + 40 * 24 * 3600 * 1000);
    const ymd = future.toISOString().slice(0, 10).replace(/-/g, '');
    expect(await c.cmd(`NEWNEWS * ${ymd} 000000 GMT`)).toMatch(/^230/);
    expect(await c.block()).toEqual([]);
    c.close();
  });

  it('needs a selected group for numbers (412)', async () => {
    const c = await secureLogin(port, 'bob', PASSWORD);
    expect(await c.cmd('ARTICLE 1')).toMatch(/^412/);
    expect(await c.cmd('NEXT')).toMatch(/^412/);
    c.close();
  });
});

describe('idle clients', () => {
  it('closes an idle connection after idle_timeout_s', async () => {
    const idle = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: GROUPS, limits: { idle_timeout_s: 1 } } });
    try {
      const c = await RawClient.connect(idle.port('nntp'));
      await c.line();
      expect(await c.line(8000)).toMatch(/^400 /);
      expect(await c.line(8000)).toBeNull();
    } finally {
      await idle.stop();
    }
  });
});

describe('trickling clients (nntp.limits.line_deadline_s)', () => {
  /** Send `text` a byte every 200 ms; the reply line once the server gives up, or null after 8 s. */
  async function trickle(c: RawClient, text: string): Promise<string | null> {
    for (let i = 0; i < 40; i++) {
      c.write(text[i % text.length]!);
      const l = await c.line(200).catch(() => null);
      if (l !== null) return l;
    }
    return null;
  }

  it('ends a session whose line never completes, before and after STARTTLS; whole lines sent slowly are fine', async () => {
    const g = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: GROUPS, limits: { line_deadline_s: 1, idle_timeout_s: 30 } } });
    try {
      const slow = await RawClient.connect(g.port('nntp'));
      await slow.line();
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 700));
        expect(await slow.cmd('DATE')).toMatch(/^111 /);
      }
      slow.close();

      const plain = await RawClient.connect(g.port('nntp'));
      await plain.line();
      const t0 = Date.now();
      expect(await trickle(plain, 'LIST ACTIVE')).toMatch(/^400 /);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(await plain.line(5000)).toBeNull(); // and closed
      plain.close();

      const tls = await RawClient.connect(g.port('nntp'));
      await tls.line();
      expect(await tls.cmd('STARTTLS')).toMatch(/^382/);
      await tls.upgrade();
      expect(await trickle(tls, 'CAPABILITIES')).toMatch(/^400 /);
      tls.close();
      expect(g.decisions.filter((d) => d.rule === 'limits.line_deadline' && d.verdict === 'deny')).toHaveLength(2);
    } finally {
      await g.stop();
    }
  });
});

describe('limits', () => {
  let lim: TestGatehouse;
  beforeAll(async () => {
    lim = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: GROUPS, limits: { posts_per_minute: 2, connections_per_ip: 2 } } }, [{ name: 'bob', password: PASSWORD }]);
  });
  afterAll(async () => {
    await lim?.stop();
  });

  it('limits posts per minute per user (440) and connections per address (400)', async () => {
    const c = await secureLogin(lim.port('nntp'), 'bob', PASSWORD);
    expect((await c.post(article('office.general', 'a')))[1]).toMatch(/^240/);
    expect((await c.post(article('office.general', 'b')))[1]).toMatch(/^240/);
    expect((await c.post(article('office.general', 'c')))[0]).toMatch(/^440/);
    const second = await RawClient.connect(lim.port('nntp'));
    expect(await second.line()).toMatch(/^20[01]/);
    const third = await RawClient.connect(lim.port('nntp'));
    expect(await third.line()).toMatch(/^400 /);
    expect(await third.line()).toBeNull();
    second.close();
    c.close();
  });

});

describe('long article lines', () => {
  it('takes a single body line far above the pipelining buffer, up to article_bytes, byte for byte', async () => {
    const g = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: GROUPS } }, [{ name: 'bob', password: PASSWORD }]);
    try {
      const c = await secureLogin(g.port('nntp'), 'bob', PASSWORD);
      const long = 'z'.repeat(300_000);
      expect(await c.cmd('POST')).toMatch(/^340/);
      c.write(`From: b@x\r\nNewsgroups: office.general\r\nSubject: long\r\n\r\n${long}\r\n.\r\n`);
      const r = await c.line(15_000);
      expect(r).toMatch(/^240 /);
      expect(await c.cmd(`BODY ${/<[^>]+>/.exec(r!)![0]}`)).toMatch(/^222/);
      expect(await c.block()).toEqual([long]);
      c.close();
    } finally {
      await g.stop();
    }
  });
});

describe('lockout', () => {
  it('throttles a name through the policy core: the right password then gets the same 481, never checked', async () => {
    const g = await startGatehouse({ auth: { lockout: { failures: 2 }, delay: { base_ms: 5, max_ms: 20 } }, nntp: { listen: '127.0.0.1:0', groups: GROUPS } }, [{ name: 'carol', password: PASSWORD }]);
    try {
      const c = await RawClient.connect(g.port('nntp'));
      await c.line();
      expect(await c.cmd('STARTTLS')).toMatch(/^382/);
      await c.upgrade();
      const first = await c.login('carol', 'wrong-password-1');
      expect(first).toBe('481 Authentication failed or temporarily refused; try again later');
      expect(await c.login('carol', 'wrong-password-2')).toBe(first);
      expect(await c.login('carol', PASSWORD)).toBe(first);
      expect(g.decisions.some((d) => d.service === 'nntp' && d.phase === 'lockout')).toBe(true);
      expect(g.decisions.at(-1)).toMatchObject({ phase: 'authenticate', rule: 'auth.throttle_pair' });
      expect(JSON.stringify(g.decisions)).not.toContain(PASSWORD);
      c.close();
    } finally {
      await g.stop();
    }
  });
});

describe('groups and reload', () => {
  it('hides a group removed from config without deleting its articles, and shows them again when it returns', async () => {
    const g = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: GROUPS } }, [{ name: 'alice', password: PASSWORD, groups: ['staff'] }]);
    try {
      const a = await secureLogin(g.port('nntp'), 'alice', PASSWORD);
      const [, r] = await a.post(article('office.staff', 'survives'));
      const id = /<[^>]+>/.exec(r!)![0];
      a.close();
      const rewrite = (groups: unknown[]) => {
        const doc = parse(fs.readFileSync(g.configFile, 'utf8')) as { nntp: { groups: unknown[] } };
        doc.nntp.groups = groups;
        fs.writeFileSync(g.configFile, stringify(doc));
      };
      rewrite(GROUPS.filter((x) => x.name !== 'office.staff'));
      expect((await g.gh.reload()).ok).toBe(true);
      const b = await secureLogin(g.port('nntp'), 'alice', PASSWORD);
      expect(await b.cmd('GROUP office.staff')).toMatch(/^411/);
      expect(await b.cmd(`STAT ${id}`)).toMatch(/^430/);
      expect(await b.cmd('LIST')).toMatch(/^215/);
      expect((await b.block()).join('\n')).not.toContain('office.staff');
      rewrite([...GROUPS, { name: 'new.group', read: ['authenticated'], post: ['authenticated'] }]);
      expect((await g.gh.reload()).ok).toBe(true);
      expect(await b.cmd('GROUP office.staff')).toBe('211 1 1 1 office.staff');
      expect(await b.cmd(`STAT ${id}`)).toMatch(/^223/);
      // the new group is created asynchronously by the reload: poll, bounded
      let reply = '';
      for (let i = 0; i < 50 && !reply.startsWith('211'); i++) {
        reply = await b.cmd('GROUP new.group');
        if (!reply.startsWith('211')) await new Promise((res) => setTimeout(res, 50));
      }
      expect(reply).toBe('211 0 1 0 new.group');
      b.close();
    } finally {
      await g.stop();
    }
  });
});
