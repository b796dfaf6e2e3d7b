/*
 * Durability of a streaming feed: the real CLI as a child process takes pipelined TAKETHIS from a listed peer
 * (127.0.0.40), 128 in flight, whose articles share store commits; kill -9 while articles are still arriving,
 * restart. Every article that got a 239 is readable, whole, with the number a reader saw before the crash; every
 * article in the group is one that was sent, whole and once (nothing half-stored); the peer's retry of what got
 * no 239 stores the missing ones and is told 439 for the ones that had reached the disk; numbering continues.
 */
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { PASSWORD } from '../helpers/gatehouse.js';
import { ChildGatehouses, writeConfigDir, type ConfigDir } from '../helpers/process.js';
import { GROUPS, secureLogin, type RawClient } from './client.js';

const procs = new ChildGatehouses();
let cfg: ConfigDir | undefined;
const sockets: net.Socket[] = [];

afterAll(() => {
  for (const s of sockets) s.destroy();
  procs.killAll();
  if (cfg) fs.rmSync(cfg.dir, { recursive: true, force: true });
});

async function setup(): Promise<void> {
  cfg = await writeConfigDir(
    'gatehouse-feed-crash-',
    {
      hostname: 'gatehouse.test',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false },
      smtp: { enabled: false },
      ftp: { enabled: false },
      nntp: {
        listen: '127.0.0.1:0',
        groups: GROUPS,
        peers: [{ name: 'lab2', host: '127.0.0.40', tls: false, groups: ['office.*'], direction: 'in', articles_per_minute: 10_000_000 }],
      },
    },
    [{ name: 'alice', password: PASSWORD, groups: ['staff'] }],
  );
}

async function start() {
  const g = await procs.start(cfg!.configFile, 20_000);
  return { child: g.child, port: g.port('nntp') };
}

const RUN = Date.now().toString(36);
const body = (i: number) => Array.from({ length: 20 }, (_, k) => `line ${k} of article ${i} ${'x'.repeat(60)}`).join('\r\n');
const idOf = (i: number) => `<crash${i}.${RUN}@lab2.test>`;
function wire(i: number): string {
  return [
    'Path: lab2.test!not-for-mail',
    'From: Feeder <feed@lab2.test>',
    'Newsgroups: office.general',
    `Subject: streamed ${i}`,
    `Message-ID: ${idOf(i)}`,
    'Date: Sun, 06 Dec 2026 05:00:00 +0000',
    '',
    body(i),
    '.',
    '',
  ].join('\r\n');
}

/**
 * A streaming peer from 127.0.0.40: sends TAKETHIS for `ids`, `window` in flight, calls `onReply` per reply line;
 * resolves when every id is answered or the connection closes.
 */
function feed(port: number, ids: readonly number[], onReply: (line: string) => void, window = 128): Promise<void> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.40' });
    sockets.push(sock);
    let buf = '';
    let state: 'greeting' | 'mode' | 'stream' = 'greeting';
    let next = 0;
    let open = 0;
    let answered = 0;
    const pump = () => {
      let out = '';
      while (next < ids.length && open < window) {
        out += `TAKETHIS ${idOf(ids[next]!)}\r\n${wire(ids[next]!)}`;
        next++;
        open++;
      }
      if (out) sock.write(out);
    };
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      let at: number;
      while ((at = buf.indexOf('\r\n')) >= 0) {
        const l = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (state === 'greeting') {
          state = 'mode';
          sock.write('MODE STREAM\r\n');
        } else if (state === 'mode') {
          if (!l.startsWith('203')) throw new Error(`MODE STREAM: ${l}`);
          state = 'stream';
          pump();
        } else {
          onReply(l);
          open--;
          answered++;
          if (answered === ids.length) {
            sock.end('QUIT\r\n');
            resolve();
            return;
          }
          pump();
        }
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve());
  });
}

/** The office.general number in the reply to a (pipelined) `HDR Xref <message-id>`. */
async function numberOf(c: RawClient): Promise<number> {
  const r = await c.line(10_000);
  expect(r).toMatch(/^225/);
  const rows = await c.block();
  expect(rows).toHaveLength(1);
  return Number(/ office\.general:(\d+)/.exec(rows[0]!)?.[1] ?? NaN);
}

async function articleOf(c: RawClient, ref: string): Promise<{ id: string; body: string } | null> {
  const r = await c.cmd(`ARTICLE ${ref}`);
  if (!r.startsWith('220')) return null;
  const lines = await c.block();
  const blank = lines.indexOf('');
  const id = lines.slice(0, blank).find((l) => /^message-id:/i.test(l))!.replace(/^message-id:\s*/i, '');
  return { id, body: lines.slice(blank + 1).join('\r\n') };
}

describe('kill -9 during a streaming feed (TAKETHIS, 128 in flight)', () => {
  it('keeps every 239-acknowledged article with its number; nothing half-stored or twice; the retry completes the feed', async () => {
    await setup();
    let { child, port } = await start();
    const N = 20_000;
    const all = Array.from({ length: N }, (_, i) => i);
    const acked = new Set<number>();
    const bad: string[] = [];
    const indexOf = (l: string) => Number(/<crash(\d+)\./.exec(l)?.[1] ?? NaN);
    let seenNumbers = new Map<number, number>();
    let reader: RawClient | null = null;
    let killedAt = -1;
    const fed = feed(port, all, (l) => {
      if (l.startsWith('239 ')) acked.add(indexOf(l));
      else bad.push(l);
    });
    // Once some hundreds are acknowledged: a reader notes their numbers, then the server is killed mid-feed.
    const deadline = Date.now() + 30_000;
    while (acked.size < 400 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
    expect(acked.size).toBeGreaterThanOrEqual(400);
    reader = await secureLogin(port, 'alice', PASSWORD);
    expect(await reader.cmd('GROUP office.general')).toMatch(/^211 /);
    const noted = [...acked].slice(0, 300);
    reader.write(noted.map((i) => `HDR Xref ${idOf(i)}\r\n`).join(''));
    seenNumbers = new Map();
    for (const i of noted) seenNumbers.set(i, await numberOf(reader));
    reader.close();
    killedAt = acked.size;
    await procs.kill9(child);
    await fed;
    expect(bad).toEqual([]);
    // mid-feed: the kill cut the stream (else this test proves nothing about in-flight articles)
    expect(killedAt).toBeLessThan(N);
    const ackedBefore = new Set(acked);

    ({ child, port } = await start());
    reader = await secureLogin(port, 'alice', PASSWORD);
    expect(await reader.cmd('GROUP office.general')).toMatch(/^211 /);
    expect(await reader.cmd('LISTGROUP office.general')).toMatch(/^211 /);
    const nums = (await reader.block()).map(Number);
    expect(new Set(nums).size).toBe(nums.length);
    expect(nums.length).toBeGreaterThanOrEqual(ackedBefore.size);
    // every stored article is one that was sent, whole, once
    const storedIdx = new Set<number>();
    for (const n of nums) {
      const a = await articleOf(reader, String(n));
      expect(a).not.toBeNull();
      const i = indexOf(a!.id);
      expect(a!.body).toBe(body(i));
      expect(storedIdx.has(i)).toBe(false);
      storedIdx.add(i);
      if (seenNumbers.has(i)) expect(n).toBe(seenNumbers.get(i));
    }
    for (const i of ackedBefore) expect(storedIdx.has(i)).toBe(true);
    reader.write([...seenNumbers.keys()].map((i) => `HDR Xref ${idOf(i)}\r\n`).join(''));
    for (const n of seenNumbers.values()) expect(await numberOf(reader)).toBe(n);
    const high = Math.max(...nums);

    // The peer retries everything that got no 239: stored now, or 439 when it had reached the disk unanswered.
    const retry = all.filter((i) => !ackedBefore.has(i));
    const replies = new Map<number, string>();
    await feed(port, retry, (l) => replies.set(indexOf(l), l.slice(0, 3)));
    expect(replies.size).toBe(retry.length);
    for (const i of retry) expect(replies.get(i)).toBe(storedIdx.has(i) ? '439' : '239');
    const g = (await reader.cmd('GROUP office.general')).split(' ');
    expect(Number(g[1])).toBe(N);
    expect(Number(g[3])).toBe(high + retry.filter((i) => !storedIdx.has(i)).length);
    reader.close();
    await procs.kill9(child);
  }, 120_000);
});
