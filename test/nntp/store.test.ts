/* The article store: numbering, cross-posts, restart, torn journal, orphans, unknown/hidden groups. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { ArticleStore, PREALLOCATE } from '../../src/nntp/store.js';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-news-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function put(s: ArticleStore, id: string, groups: string[]) {
  expect(s.reserve(id)).toBe(true);
  return s.add(id, groups, `Message-ID: ${id}`, Buffer.from(`Message-ID: ${id}\r\n\r\nbody\r\n`), 1);
}

describe('ArticleStore', () => {
  it('numbers per group, shares one file for a cross-post and keeps numbers across a restart', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a', 'b']);
    expect(s.group('a')).toMatchObject({ low: 1, high: 0, count: 0 });
    await put(s, '<1@x>', ['a']);
    const x = await put(s, '<2@x>', ['a', 'b']);
    expect(x.numbers).toEqual({ a: 2, b: 1 });
    expect(fs.readFileSync(path.join(dir, 'spool'), 'latin1').match(/body/g)).toHaveLength(2);
    expect(s.reserve('<2@x>')).toBe(false);
    await s.close();
    const again = await ArticleStore.open(dir, ['a', 'b']);
    expect(again.group('a')).toMatchObject({ low: 1, high: 2, count: 2 });
    expect(again.byNumber('b', 1)?.messageId).toBe('<2@x>');
    expect((await put(again, '<3@x>', ['b'])).numbers).toEqual({ b: 2 });
    expect(again.range('a', 0, 100)).toEqual([1, 2]);
    expect(again.step('a', 1, 1)).toBe(2);
    expect(again.step('a', 1, -1)).toBeNull();
    expect((await again.read(again.byMessageId('<1@x>')!)).toString()).toContain('body');
    await again.close();
  });

  const torn: [string, string][] = [
    ['a torn record head', '{"m":"<2@x>","g":{"a":2'],
    ['a record head without its article bytes', '{"m":"<2@x>","g":{"a":2},"t":1,"h":"Message-ID: <2@x>","b":500,"l":1}\nMessage-ID: <2@x>\r\n\r\nbo'],
    ['article bytes without the closing LF', '{"m":"<2@x>","g":{"a":2},"t":1,"h":"H: x","b":4,"l":0}\nH: xZ'],
  ];
  for (const [what, tail] of torn) {
    it(`cuts ${what} at open (never acknowledged) and reuses nothing`, async () => {
      const dir = tmp();
      const s = await ArticleStore.open(dir, ['a']);
      await put(s, '<1@x>', ['a']);
      await s.close();
      const good = fs.statSync(path.join(dir, 'spool')).size;
      fs.appendFileSync(path.join(dir, 'spool'), tail);
      const again = await ArticleStore.open(dir, ['a']);
      expect(again.group('a')).toMatchObject({ count: 1, high: 1 });
      expect(again.has('<2@x>')).toBe(false);
      expect(fs.statSync(path.join(dir, 'spool')).size).toBe(good);
      expect((await put(again, '<2@x>', ['a'])).numbers).toEqual({ a: 2 });
      expect((await again.read(again.byMessageId('<2@x>')!)).toString()).toContain('body');
      expect((await again.read(again.byMessageId('<1@x>')!)).toString()).toContain('<1@x>');
      await again.close();
    });
  }

  it('cuts a record whose article bytes reached the disk with a hole (CRC mismatch), never acknowledged', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a']);
    await put(s, '<1@x>', ['a']);
    await s.close();
    const good = fs.statSync(path.join(dir, 'spool')).size;
    const bytes = Buffer.from('Message-ID: <2@x>\r\n\r\nbody line\r\n');
    const head = JSON.stringify({ m: '<2@x>', g: { a: 2 }, t: 1, h: 'Message-ID: <2@x>', b: bytes.length, l: 1, c: crc32(bytes) });
    bytes.fill(0, 20, 28); // a page that never reached the disk
    fs.appendFileSync(path.join(dir, 'spool'), Buffer.concat([Buffer.from(`${head}\n`), bytes, Buffer.from('\n')]));
    const again = await ArticleStore.open(dir, ['a']);
    expect(again.has('<2@x>')).toBe(false);
    expect(again.group('a')).toMatchObject({ count: 1, high: 1 });
    expect(fs.statSync(path.join(dir, 'spool')).size).toBe(good);
    await again.close();
  });

  it('keeps zero-filled space after the last record while open, and a copy taken mid-run (a crash) opens cleanly', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a']);
    await put(s, '<1@x>', ['a']);
    await put(s, '<2@x>', ['a']);
    const spool = fs.readFileSync(path.join(dir, 'spool'));
    const end = spool.lastIndexOf('body\r\n\n') + 7;
    // The first commit grew the file by PREALLOCATE past its record; the second wrote into that space.
    const first = spool.indexOf('body\r\n\n') + 7;
    expect(spool.length).toBe(first + PREALLOCATE);
    expect(spool.subarray(end).every((b) => b === 0)).toBe(true);
    const crashed = tmp();
    fs.writeFileSync(path.join(crashed, 'spool'), spool);
    const copy = await ArticleStore.open(crashed, ['a']);
    expect(copy.group('a')).toMatchObject({ count: 2, high: 2 });
    expect(fs.statSync(path.join(crashed, 'spool')).size).toBe(end);
    expect((await put(copy, '<3@x>', ['a'])).numbers).toEqual({ a: 3 });
    expect((await copy.read(copy.byMessageId('<2@x>')!)).toString()).toContain('<2@x>');
    await copy.close();
    await s.close();
    expect(fs.statSync(path.join(dir, 'spool')).size).toBe(end);
  });

  it('keeps a group removed from config (articles and numbers) and remembers creation times', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a', 'gone']);
    await put(s, '<1@x>', ['gone']);
    const created = s.group('gone')!.created;
    await s.close();
    const again = await ArticleStore.open(dir, ['a']);
    expect(again.group('gone')).toMatchObject({ high: 1, count: 1, created });
    await again.close();
  });

  it('lets concurrent posts share commits without losing or duplicating numbers', async () => {
    const dir = tmp();
    const s = await ArticleStore.open(dir, ['a']);
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => put(s, `<c${i}@x>`, ['a'])));
    expect(all.map((a) => a.numbers.a).sort((x, y) => x! - y!)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await s.close();
    const again = await ArticleStore.open(dir, ['a']);
    expect(again.group('a')).toMatchObject({ count: 20, low: 1, high: 20 });
    await again.close();
  });
});
