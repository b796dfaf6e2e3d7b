/*
 * Issue 15 (10, 11): the RFC 2980 commands older readers use, and the greeting.
 *  - XHDR answers 221 (RFC 2980 §2.6, as INN), HDR 225 (RFC 3977 §8.5); XOVER as OVER; XPAT (RFC 2980 §2.9);
 *  - LIST OVERVIEW.FMT and LIST HEADERS agree with what OVER and HDR serve (every OVER column equals HDR of
 *    the field OVERVIEW.FMT names for it; every LIST HEADERS entry works in HDR);
 *  - a hidden group stays hidden in all of them: Newsgroups/Xref values cut, its articles 430, XPAT cannot
 *    match its name;
 *  - the greeting and MODE READER say 200 when a login could post, 201 when nobody can.
 * Raw client for the exact bytes, Python's nntplib (xhdr, xpat, xover) as the real client.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simpleWildmat } from '../../src/nntp/commands.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { GROUPS, RawClient, secureLogin } from './client.js';

let t: TestGatehouse;
let crossId = '';
let staffId = '';

beforeAll(async () => {
  t = await startGatehouse(
    { nntp: { listen: '127.0.0.1:0', groups: GROUPS, limits: { posts_per_minute: 1000 } } },
    [
      { name: 'alice', password: PASSWORD, groups: ['staff'] },
      { name: 'bob', password: PASSWORD },
    ],
  );
  const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
  const post = async (lines: string[]) => {
    const [, r] = await c.post(lines);
    expect(r).toMatch(/^240 /);
    return /<[^>]+>/.exec(r!)![0];
  };
  await post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: office.general', 'Subject: first note', '', 'one']);
  crossId = await post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: office.general,office.staff', 'Followup-To: office.staff', 'Subject: staff and all', '', 'two', 'lines']);
  await post(['From: Carol <carol@example.org>', 'Newsgroups: office.general', 'Subject: Re: first note', 'References: <x@y>', '', 'three']);
  staffId = await post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: office.staff', 'Subject: staff only', '', 'secret']);
  c.close();
});

afterAll(async () => {
  await t?.stop();
});

async function bob(): Promise<RawClient> {
  const c = await secureLogin(t.port('nntp'), 'bob', PASSWORD);
  expect(await c.cmd('GROUP office.general')).toMatch(/^211 3 1 3 office\.general/);
  return c;
}

describe('XHDR, HDR, XPAT, XOVER', () => {
  it('XHDR answers 221 with "number value" rows; HDR 225 and a row for every article', async () => {
    const c = await bob();
    try {
      expect(await c.cmd('XHDR Subject 1-3')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['1 first note', '2 staff and all', '3 Re: first note']);
      expect(await c.cmd('HDR Subject 1-3')).toMatch(/^225 /);
      expect(await c.block()).toEqual(['1 first note', '2 staff and all', '3 Re: first note']);
      // an absent header: XHDR leaves the article out (as INN), HDR answers an empty value (RFC 3977)
      expect(await c.cmd('XHDR References 1-')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['3 <x@y>']);
      expect(await c.cmd('HDR References 1-')).toMatch(/^225 /);
      expect(await c.block()).toEqual(['1 ', '2 ', '3 <x@y>']);
      // by message-id: HDR says 0, XHDR the number in the current group
      expect(await c.cmd(`HDR Subject ${crossId}`)).toMatch(/^225 /);
      expect(await c.block()).toEqual(['0 staff and all']);
      expect(await c.cmd(`XHDR Subject ${crossId}`)).toMatch(/^221 /);
      expect(await c.block()).toEqual(['2 staff and all']);
      // the current article, and errors
      expect(await c.cmd('XHDR Subject')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['1 first note']);
      expect(await c.cmd('XHDR Subject 99')).toMatch(/^221 /);
      expect(await c.block()).toEqual([]);
      expect(await c.cmd('HDR Subject 99')).toMatch(/^423 /);
      expect(await c.cmd('XHDR Subject <nope@x>')).toMatch(/^430 /);
      expect(await c.cmd('XHDR')).toMatch(/^501 /);
    } finally {
      c.close();
    }
  });

  it('XPAT matches a wildmat on a header, 221; patterns with spaces, sets and ? work', async () => {
    const c = await bob();
    try {
      expect(await c.cmd('XPAT Subject 1- *first*')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['1 first note', '3 Re: first note']);
      expect(await c.cmd('XPAT Subject 1-3 Re: *')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['3 Re: first note']);
      expect(await c.cmd('XPAT From 1-3 *[Cc]arol*')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['3 Carol <carol@example.org>']);
      expect(await c.cmd(`XPAT Subject ${crossId} st?ff*`)).toMatch(/^221 /);
      expect(await c.block()).toEqual(['2 staff and all']);
      expect(await c.cmd('XPAT Subject 1-3 nothing*')).toMatch(/^221 /);
      expect(await c.block()).toEqual([]);
      expect(await c.cmd('XPAT Subject 1-3')).toMatch(/^501 /);
    } finally {
      c.close();
    }
  });

  it('before GROUP: 412; before login (nothing anonymous): 480', async () => {
    const c = await secureLogin(t.port('nntp'), 'bob', PASSWORD);
    try {
      for (const cmd of ['XHDR Subject 1-3', 'XPAT Subject 1-3 *', 'XOVER 1-3', 'HDR Subject 1-3']) expect(await c.cmd(cmd)).toMatch(/^412 /);
    } finally {
      c.close();
    }
    const anon = await RawClient.connect(t.port('nntp'));
    try {
      await anon.line();
      for (const cmd of ['XHDR Subject 1-3', 'XPAT Subject 1-3 *', 'XOVER 1-3', 'LIST OVERVIEW.FMT', 'LIST HEADERS']) expect(await anon.cmd(cmd)).toMatch(/^480 /);
    } finally {
      anon.close();
    }
  });

  it('a hidden group stays hidden: Newsgroups, Followup-To and Xref cut, its articles 430, XPAT cannot find its name', async () => {
    const c = await bob();
    try {
      expect(await c.cmd('XHDR Newsgroups 1-3')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['1 office.general', '2 office.general', '3 office.general']);
      expect(await c.cmd('XHDR Xref 2')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['2 gatehouse.test office.general:2']);
      expect(await c.cmd('HDR Followup-To 2')).toMatch(/^225 /);
      expect(await c.block()).toEqual(['2 ']);
      for (const f of ['Newsgroups', 'Xref', 'Followup-To']) {
        expect(await c.cmd(`XPAT ${f} 1-3 *staff*`)).toMatch(/^221 /);
        expect(await c.block()).toEqual([]);
      }
      expect(await c.cmd('XOVER 2')).toMatch(/^224 /);
      const [row] = await c.block();
      expect(row).not.toContain('office.staff');
      for (const cmd of [`XHDR Subject ${staffId}`, `HDR Subject ${staffId}`, `XPAT Subject ${staffId} *`]) expect(await c.cmd(cmd)).toMatch(/^430 /);
      expect(await c.cmd('GROUP office.staff')).toMatch(/^411 /);
    } finally {
      c.close();
    }
    // alice sees both groups in the same values
    const a = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    try {
      await a.cmd('GROUP office.general');
      expect(await a.cmd('XHDR Newsgroups 2')).toMatch(/^221 /);
      expect(await a.block()).toEqual(['2 office.general,office.staff']);
      expect(await a.cmd(`XHDR Subject ${staffId}`)).toMatch(/^221 /);
      expect(await a.block()).toEqual(['0 staff only']);
    } finally {
      a.close();
    }
  });
});

describe('LIST OVERVIEW.FMT and LIST HEADERS agree with OVER and HDR', () => {
  it('every OVER column is HDR of the field OVERVIEW.FMT names for it; every LIST HEADERS entry works in HDR', async () => {
    const c = await bob();
    try {
      expect(await c.cmd('LIST OVERVIEW.FMT')).toMatch(/^215 /);
      const fmt = await c.block();
      // RFC 2980's names for the metadata (RFC 3977 §8.4.2 allows them; slrn needs them)
      expect(fmt).toEqual(['Subject:', 'From:', 'Date:', 'Message-ID:', 'References:', 'Bytes:', 'Lines:', 'Xref:full']);
      expect(await c.cmd('OVER 1-3')).toMatch(/^224 /);
      const rows = (await c.block()).map((r) => r.split('\t'));
      expect(await c.cmd('XOVER 1-3')).toMatch(/^224 /);
      expect((await c.block()).map((r) => r.split('\t'))).toEqual(rows);
      for (const [i, f] of fmt.entries()) {
        const field = f.replace(/:full$/, '').replace(/:$/, '');
        expect(await c.cmd(`HDR ${field} 1-3`)).toMatch(/^225 /);
        const values = (await c.block()).map((l) => l.slice(l.indexOf(' ') + 1));
        // Xref:full carries the name in OVER (RFC 3977 §8.4.2), HDR gives the value
        const column = rows.map((r) => (f.endsWith(':full') ? r[i + 1]!.replace(/^Xref: /, '') : r[i + 1]!));
        expect(values, f).toEqual(column);
      }
      expect(await c.cmd('LIST HEADERS')).toMatch(/^215 /);
      const headers = await c.block();
      expect(headers).toEqual([':', ':bytes', ':lines']);
      for (const h of headers.filter((x) => x !== ':')) {
        expect(await c.cmd(`HDR ${h} 1`)).toMatch(/^225 /);
        expect((await c.block())[0]).toMatch(/^1 \d+$/);
      }
      // the old overview names Bytes/Lines are the same metadata
      expect(await c.cmd('XHDR Lines 1-3')).toMatch(/^221 /);
      expect((await c.block()).map((l) => l.split(' ')[1])).toEqual(rows.map((r) => r[7]));
      expect(await c.cmd('LIST HEADERS MSGID')).toMatch(/^215 /);
      expect(await c.block()).toEqual(headers);
    } finally {
      c.close();
    }
  });
});

describe('Python nntplib: xhdr, XPAT, xover', () => {
  it('parses our 221 replies and rows', async () => {
    const script = `
import json, nntplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = nntplib.NNTP('127.0.0.1', int(sys.argv[1]), usenetrc=False)
welcome = s.getwelcome()[:3]
s.starttls(ctx)
s.login('bob', sys.argv[2])
s.group('office.general')
resp, rows = s.xhdr('subject', '1-3')
resp2, pat = s._longcmdstring('XPAT subject 1-3 *first*')  # Python 3's nntplib dropped xpat(); its long-reply reader
resp3, over = s.xover(1, 3)
s.quit()
print(json.dumps({'welcome': welcome, 'xhdr': [resp[:3], rows], 'xpat': [resp2[:3], pat], 'xover': [resp3[:3], [o[1]['subject'] for o in over]]}))
`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile('python3', ['-W', 'ignore', '-c', script, String(t.port('nntp')), PASSWORD], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
    });
    expect(JSON.parse(out)).toEqual({
      welcome: '200',
      xhdr: ['221', [['1', 'first note'], ['2', 'staff and all'], ['3', 'Re: first note']]],
      xpat: ['221', ['1 first note', '3 Re: first note']],
      xover: ['224', ['first note', 'staff and all', 'Re: first note']],
    });
  });
});

describe('greeting and MODE READER: 200 when a login could post, 201 when nobody can', () => {
  let ro: TestGatehouse;
  beforeAll(async () => {
    ro = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: [{ name: 'read.only', read: ['authenticated'], post: [] }] } }, [{ name: 'bob', password: PASSWORD }]);
  });
  afterAll(async () => {
    await ro?.stop();
  });

  it('says 200 before login where a login could post; a user who may not post gets 201 from MODE READER', async () => {
    const c = await RawClient.connect(t.port('nntp'));
    try {
      expect(await c.line()).toMatch(/^200 Posting allowed/);
      expect(await c.cmd('MODE READER')).toMatch(/^200 /);
      expect(await c.cmd('POST')).toMatch(/^480 /);
    } finally {
      c.close();
    }
    const groupsNoPostForBob = await startGatehouse({ nntp: { listen: '127.0.0.1:0', groups: [{ name: 'g.one', read: ['authenticated'], post: ['alice'] }] } }, [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD },
    ]);
    try {
      const b = await secureLogin(groupsNoPostForBob.port('nntp'), 'bob', PASSWORD);
      try {
        expect(await b.cmd('MODE READER')).toMatch(/^201 /);
        expect(await b.cmd('POST')).toMatch(/^440 /);
      } finally {
        b.close();
      }
    } finally {
      await groupsNoPostForBob.stop();
    }
  });

  it('says 201 where no group takes posts, before and after login', async () => {
    const c = await RawClient.connect(ro.port('nntp'));
    try {
      expect(await c.line()).toMatch(/^201 Posting not allowed/);
      expect(await c.cmd('MODE READER')).toMatch(/^201 /);
    } finally {
      c.close();
    }
    const b = await secureLogin(ro.port('nntp'), 'bob', PASSWORD);
    try {
      expect(await b.cmd('MODE READER')).toMatch(/^201 /);
    } finally {
      b.close();
    }
  });
});

describe('simpleWildmat (XPAT patterns)', () => {
  const rows: Array<[string, string, boolean]> = [
    ['abc', 'abc', true],
    ['abc', 'a*', true],
    ['abc', '*c', true],
    ['abc', '*b*', true],
    ['abc', 'a?c', true],
    ['abc', 'a?', false],
    ['abc', '[ab]bc', true],
    ['abc', '[^a]bc', false],
    ['abc', '[!x]bc', true],
    ['a-c', 'a[-]c', true],
    ['abc', 'a[a-c]c', true],
    ['a*c', 'a\\*c', true],
    ['abc', 'a\\*c', false],
    ['', '*', true],
    ['', '?', false],
    ['[x', '[x', true],
    ['Re: first note', 'Re: *', true],
    ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab', '*a*a*a*a*a*a*a*a*a*a*a*a*c', false],
  ];
  it.each(rows)('%j ~ %j = %s', (text, pattern, expected) => {
    expect(simpleWildmat(text, pattern)).toBe(expected);
  });
});
