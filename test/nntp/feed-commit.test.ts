/*
 * Group commit for a streaming peer: the store's commit (one O_DSYNC write for everything queued while the last
 * one ran) serves a whole window of pipelined TAKETHIS articles, and a failed commit fails every article in it:
 * none of them is answered 239 (the session says 400 and closes, so the peer retries; IHAVE says 436), nothing
 * of the failed batch is readable, and the store takes nothing more until it is reopened.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ArticleStore } from '../../src/nntp/store.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawClient } from './client.js';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-commit-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
  failing.clear();
});

const writerOf = (s: ArticleStore) => (s as unknown as { writer: FileHandle | null }).writer;
const eio = () => Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });

/** The store's spool writes are fs.write calls on its writer's fd: count them, and fail those to the fds in `failing`. */
const failing = new Set<number>();
function spyWrites(): { count: (fd: number) => number } {
  const real = fs.write;
  const spy = vi.spyOn(fs, 'write').mockImplementation(((fd: number, ...rest: unknown[]) => {
    const cb = rest[rest.length - 1] as (err: Error | null, n?: number) => void;
    if (failing.has(fd)) {
      setImmediate(() => cb(eio()));
      return;
    }
    (real as (...a: unknown[]) => void)(fd, ...rest);
  }));
  return { count: (fd) => spy.mock.calls.filter((c) => c[0] === fd).length };
}

async function put(s: ArticleStore, id: string): Promise<unknown> {
  expect(s.reserve(id)).toBe(true);
  return s.add(id, ['a'], `Message-ID: ${id}`, Buffer.from(`Message-ID: ${id}\r\n\r\nbody of ${id}\r\n`), 1);
}

describe('the store commit shared by many waiters', () => {
  it('commits 200 concurrent articles in far fewer writes than articles, each readable with its own number', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a']);
    const writes = spyWrites();
    const fd = writerOf(s)!.fd;
    const ids = Array.from({ length: 200 }, (_, i) => `<w${i}@x>`);
    await Promise.all(ids.map((id) => put(s, id)));
    expect(writes.count(fd)).toBeGreaterThanOrEqual(1);
    expect(writes.count(fd)).toBeLessThanOrEqual(10);
    const nums = ids.map((id) => s.byMessageId(id)!.numbers.a!);
    expect(new Set(nums).size).toBe(200);
    for (const id of ids) expect((await s.read(s.byMessageId(id)!)).toString()).toContain(`body of ${id}`);
    await s.close();
  });

  it('fails every waiter of a failed commit, acknowledges none, and takes nothing more until reopened', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a']);
    await put(s, '<before@x>');
    spyWrites();
    failing.add(writerOf(s)!.fd);
    const ids = Array.from({ length: 50 }, (_, i) => `<f${i}@x>`);
    const results = await Promise.allSettled(ids.map((id) => put(s, id)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    for (const id of ids) expect(s.byMessageId(id)).toBeNull();
    s.release('<late@x>');
    await expect(put(s, '<late@x>')).rejects.toThrow(/closed/);
    await s.close();
    const again = await ArticleStore.open(dir, ['a']);
    expect(again.group('a')).toMatchObject({ count: 1, high: 1 });
    expect(again.byMessageId('<before@x>')).not.toBeNull();
    await again.close();
  });
});

describe('a streaming peer when the store commit fails', () => {
  let t: TestGatehouse;
  let port: number;

  beforeAll(async () => {
    t = await startGatehouse(
      {
        nntp: {
          listen: '127.0.0.1:0',
          auth_requires_tls: false,
          groups: [{ name: 'lab.results', read: ['authenticated'], post: ['authenticated'] }],
          peers: [{ name: 'lab2', host: '127.0.0.40', tls: false, groups: ['lab.*'], direction: 'in', articles_per_minute: 100_000 }],
        },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
    port = t.port('nntp');
  });
  afterAll(async () => {
    await t?.stop();
  });

  const art = (i: number) =>
    [
      'Path: lab2.test!not-for-mail',
      'From: Bob <bob@lab2.test>',
      'Newsgroups: lab.results',
      `Subject: fed ${i}`,
      `Message-ID: <fail${i}@lab2.test>`,
      'Date: Sun, 06 Dec 2026 04:00:00 +0000',
      '',
      `body ${i}`,
      '.',
      '',
    ].join('\r\n');

  it('answers no 239 for a pipelined window whose commit failed (400 and close), then 436 to IHAVE', async () => {
    // the first commit of this store fails as a disk would (EIO on the write)
    // eslint-disable-next-line @typescript-eslint/unbound-method -- applied to the store below
    const add = ArticleStore.prototype.add;
    spyWrites();
    vi.spyOn(ArticleStore.prototype, 'add').mockImplementation(function (this: ArticleStore, ...args: Parameters<ArticleStore['add']>) {
      const w = writerOf(this);
      if (w) failing.add(w.fd);
      return add.apply(this, args);
    });
    const c = await RawClient.connect(port, { localAddress: '127.0.0.40' });
    expect(await c.line()).toMatch(/^20[01] /);
    expect(await c.cmd('MODE STREAM')).toMatch(/^203/);
    c.write(Array.from({ length: 100 }, (_, i) => `TAKETHIS <fail${i}@lab2.test>\r\n${art(i)}`).join(''));
    const replies: string[] = [];
    for (;;) {
      const l = await c.line(15_000);
      if (l === null) break;
      replies.push(l);
    }
    expect(replies.filter((l) => l.startsWith('239'))).toEqual([]);
    expect(replies).toContain('400 Service temporarily unavailable, try again later');
    expect(t.decisions.some((d) => d.phase === 'feed_article' && d.rule === 'feed.store' && d.verdict === 'deny')).toBe(true);

    const i = await RawClient.connect(port, { localAddress: '127.0.0.40' });
    expect(await i.line()).toMatch(/^20[01] /);
    expect(await i.cmd('IHAVE <fail-ihave@lab2.test>')).toMatch(/^335/);
    i.write(art(1000).replace('<fail1000@lab2.test>', '<fail-ihave@lab2.test>'));
    expect(await i.line(15_000)).toMatch(/^436 /);
    i.close();

    const r = await RawClient.connect(port);
    await r.line();
    expect(await r.login('alice', PASSWORD)).toMatch(/^281/);
    expect(await r.cmd('GROUP lab.results')).toMatch(/^211 0 /);
    for (const n of [0, 50, 99]) expect(await r.cmd(`STAT <fail${n}@lab2.test>`)).toMatch(/^430/);
    r.close();
  });
});
