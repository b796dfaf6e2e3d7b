/*
 * Incoming feeds over real sockets: Python's nntplib (IHAVE) and a raw-socket streaming feeder (MODE STREAM,
 * CHECK, TAKETHIS, pipelined) from a listed peer address (127.0.0.40), a peer that must log in (127.0.0.20,
 * with a password_file) and an unlisted address (127.0.0.30): 502 for the unlisted, duplicates 435/438/439,
 * Path loops, groups outside the peer's patterns and malformed articles refused, the article readable after 235/239.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { MAX_IN_FLIGHT } from '../../src/nntp/session.js';
import { RawClient, runPython } from './client.js';

let t: TestGatehouse;
let port: number;
let tmp: string;
const SECRET = 'peer-secret-0123456789';

const GROUPS = [
  { name: 'lab.results', read: ['authenticated'], post: ['authenticated'] },
  { name: 'lab.secret', read: ['authenticated'], post: ['authenticated'] },
  { name: 'office.general', read: ['authenticated'], post: ['authenticated'] },
];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-feed-'));
  const secretFile = path.join(tmp, 'lab3.secret');
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  t = await startGatehouse(
    {
      nntp: {
        listen: '127.0.0.1:0',
        auth_requires_tls: false,
        groups: GROUPS,
        peers: [
          { name: 'lab2', host: '127.0.0.40', tls: false, groups: ['lab.*', '!lab.secret'], direction: 'in', articles_per_minute: 1000 },
          { name: 'lab3', host: '127.0.0.20', tls: false, groups: ['*'], direction: 'both', password_file: secretFile },
        ],
      },
    },
    [{ name: 'alice', password: PASSWORD }],
  );
  port = t.port('nntp');
});

afterAll(async () => {
  await t?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

let seq = 0;
function art(opts: { id?: string; groups?: string; path?: string; drop?: string } = {}): { id: string; lines: string[] } {
  const id = opts.id ?? `<feed${++seq}.${Date.now()}@lab2.test>`;
  const h = [
    `Path: ${opts.path ?? 'lab2.test!not-for-mail'}`,
    'From: Bob <bob@lab2.test>',
    `Newsgroups: ${opts.groups ?? 'lab.results'}`,
    `Subject: fed ${id}`,
    `Message-ID: ${id}`,
    'Date: Sun, 06 Dec 2026 04:00:00 +0000',
    'Injection-Info: lab2.test; posting-host="10.0.0.1"',
  ].filter((l) => !opts.drop || !l.startsWith(opts.drop));
  return { id, lines: [...h, '', 'body line', '.dot line'] };
}
const block = (lines: string[]) => lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join('') + '.\r\n';

async function peer(local: string): Promise<RawClient> {
  const c = await RawClient.connect(port, { localAddress: local });
  expect(await c.line()).toMatch(/^20[01] /);
  return c;
}

async function stored(id: string): Promise<string[] | null> {
  const c = await RawClient.connect(port);
  await c.line();
  await c.login('alice', PASSWORD);
  const r = await c.cmd(`ARTICLE ${id}`);
  const out = r.startsWith('220') ? await c.block() : null;
  c.close();
  return out;
}

describe('who may feed', () => {
  it('an unlisted address gets 502 to IHAVE, MODE STREAM, CHECK, and TAKETHIS closes the session', async () => {
    const c = await peer('127.0.0.30');
    expect(await c.cmd('CAPABILITIES')).toMatch(/^101/);
    const caps = await c.block();
    expect(caps).not.toContain('IHAVE');
    expect(await c.cmd('IHAVE <x@y>')).toMatch(/^502/);
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    expect(await c.cmd('CHECK <x@y>')).toMatch(/^502/);
    const a = art();
    c.write(`TAKETHIS ${a.id}\r\n${block(a.lines)}`);
    expect(await c.line()).toMatch(/^502/);
    expect(await c.line()).toBeNull();
    expect(await stored(a.id)).toBeNull();
    expect(t.decisions.some((d) => d.phase === 'feed' && d.verdict === 'deny' && d.rule === 'feed.peer_listed' && d.ip === '127.0.0.30')).toBe(true);
  });

  it("a peer's secret is no login from another address", async () => {
    const c = await peer('127.0.0.30');
    expect(await c.login('lab3', SECRET)).toMatch(/^481/);
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    c.close();
  });

  it('a peer with a password_file is refused until it logs in with the secret', async () => {
    const c = await peer('127.0.0.20');
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    expect(await c.login('lab3', 'wrong-secret')).toMatch(/^481/);
    expect(await c.cmd('MODE STREAM')).toMatch(/^502/);
    expect(await c.login('lab3', SECRET)).toMatch(/^281/);
    expect(await c.cmd('MODE STREAM')).toMatch(/^203/);
    const a = art({ groups: 'office.general' });
    expect(await c.cmd(`CHECK ${a.id}`)).toBe(`238 ${a.id}`);
    c.write(`TAKETHIS ${a.id}\r\n${block(a.lines)}`);
    expect(await c.line()).toBe(`239 ${a.id}`);
    c.close();
    expect(await stored(a.id)).not.toBeNull();
  });
});

describe('IHAVE with nntplib from a listed peer', () => {
  it('335/235, then 435 for the same Message-ID; 437 for a loop, a refused group, a malformed article', async () => {
    const good = art();
    const loop = art({ path: 'lab2.test!gatehouse.test!origin' });
    const outside = art({ groups: 'lab.results,lab.secret' });
    const noDate = art({ drop: 'Date:' });
    const env = { PORT: String(port), ARTS: JSON.stringify([good, good, loop, outside, noDate].map((a) => [a.id, a.lines.join('\r\n') + '\r\n'])) };
    const r = await runPython(`
import socket
real = socket.create_connection
socket.create_connection = lambda addr, timeout=None, source_address=None: real(addr, timeout, ('127.0.0.40', 0))
s = nntplib.NNTP('127.0.0.1', PORT, readermode=False, usenetrc=False)
out = ['IHAVE' in s.getcapabilities(), 'STREAMING' in s.getcapabilities()]
for mid, text in json.loads(os.environ['ARTS']):
    try:
        out.append(s.ihave(mid, io.BytesIO(text.encode('latin1')))[:3])
    except nntplib.NNTPError as e:
        out.append(str(e)[:3])
s.quit()
print(json.dumps(out))
`, env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual([true, true, '235', '435', '437', '437', '437']);
    const got = await stored(good.id);
    expect(got).not.toBeNull();
    // our name first in Path, the sender's headers kept, the body intact
    expect(got!.find((l) => l.startsWith('Path:'))).toBe('Path: gatehouse.test!lab2.test!not-for-mail');
    expect(got!.some((l) => l.startsWith('Injection-Info: lab2.test'))).toBe(true);
    expect(got!.slice(-2)).toEqual(['body line', '.dot line']);
    for (const a of [loop, outside, noDate]) expect(await stored(a.id)).toBeNull();
    const rules = t.decisions.filter((d) => d.phase === 'feed_article' && d.verdict === 'deny').map((d) => d.rule);
    expect(rules).toEqual(expect.arrayContaining(['feed.loop', 'feed.groups', 'feed.format']));
    expect(t.decisions.some((d) => d.phase === 'feed_want' && d.rule === 'feed.duplicate' && d.object === good.id)).toBe(true);
  });
});

describe('streaming (RFC 4644) from a listed peer', () => {
  it('takes a window larger than MAX_IN_FLIGHT (300 pipelined), answers each once, and answers QUIT after all of them', async () => {
    const c = await peer('127.0.0.40');
    expect(await c.cmd('MODE STREAM')).toMatch(/^203/);
    const arts = Array.from({ length: MAX_IN_FLIGHT + 44 }, () => art());
    c.write(arts.map((a) => `TAKETHIS ${a.id}\r\n${block(a.lines)}`).join('') + 'QUIT\r\n');
    const replies: string[] = [];
    for (let i = 0; i <= arts.length; i++) replies.push((await c.line(20_000))!);
    expect(replies.pop()).toMatch(/^205/);
    expect(replies.sort()).toEqual(arts.map((a) => `239 ${a.id}`).sort());
    expect(await c.line()).toBeNull();
    for (const a of [arts[0]!, arts[arts.length - 1]!]) expect(await stored(a.id)).not.toBeNull();
  });

  it('MODE STREAM 203; pipelined CHECK/TAKETHIS each answered for its message-id; duplicates 438/439; each stored once', async () => {
    const c = await peer('127.0.0.40');
    expect(await c.cmd('MODE STREAM')).toMatch(/^203/);
    const arts = Array.from({ length: 50 }, () => art());
    c.write(arts.map((a) => `CHECK ${a.id}\r\n`).join(''));
    for (const a of arts) expect(await c.line()).toBe(`238 ${a.id}`);
    // pipelined: all 50 articles in one write, plus one sent twice
    c.write(arts.map((a) => `TAKETHIS ${a.id}\r\n${block(a.lines)}`).join('') + `TAKETHIS ${arts[0]!.id}\r\n${block(arts[0]!.lines)}`);
    // RFC 4644 §2.5: TAKETHIS replies need not come in command order (each names its message-id): the stored
    // articles' 239s wait for their commit, the duplicate's 439 does not
    const replies: string[] = [];
    for (let i = 0; i <= arts.length; i++) replies.push((await c.line(15_000))!);
    expect(replies.sort()).toEqual([...arts.map((a) => `239 ${a.id}`), `439 ${arts[0]!.id}`].sort());
    expect(await c.cmd(`CHECK ${arts[1]!.id}`)).toBe(`438 ${arts[1]!.id}`);
    expect(await c.cmd(`IHAVE ${arts[2]!.id}`)).toMatch(/^435/);
    // a TAKETHIS whose article carries another Message-ID is refused
    const other = art();
    c.write(`TAKETHIS <not-${other.id.slice(1)}\r\n${block(other.lines)}`);
    expect(await c.line()).toBe(`439 <not-${other.id.slice(1)}`);
    c.close();
    const reader = await RawClient.connect(port);
    await reader.line();
    await reader.login('alice', PASSWORD);
    const g = (await reader.cmd('GROUP lab.results')).split(' ');
    const nums = await (async () => {
      expect(await reader.cmd(`LISTGROUP lab.results`)).toMatch(/^211/);
      return reader.block();
    })();
    reader.close();
    // every streamed article exactly once (plus the IHAVE one): numbers and count agree
    expect(Number(g[1])).toBe(nums.length);
    for (const a of arts) expect(await stored(a.id)).not.toBeNull();
  });
});
