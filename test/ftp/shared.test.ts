// ftp.isolation: shared — every user sees the same root with only the rights ftp.shared.rights grants
// (here: everyone lists and reads, group:staff also writes). basic-ftp as the client.
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse, PASSWORD } from '../helpers/gatehouse.js';
import { basicLogin } from './ftp-helpers.js';

let t: TestGatehouse;

beforeAll(async () => {
  t = await startGatehouse({ ftp: { isolation: 'shared', shared: { rights: { authenticated: ['list', 'read'], 'group:staff': ['write', 'mkdir'] } } } }, [
    { name: 'alice', password: PASSWORD, groups: ['staff'] },
    { name: 'bob', password: PASSWORD },
  ]);
});

afterAll(async () => {
  await t?.stop();
});

describe('ftp.isolation: shared', () => {
  it('staff write into the one shared root; everyone lists and reads it; others cannot write', async () => {
    const a = await basicLogin(t.port('ftp'), 'alice');
    try {
      await a.uploadFrom(Readable.from([Buffer.from('notice\n')]), 'notice.txt');
    } finally {
      a.close();
    }
    expect(fs.readFileSync(path.join(t.dir, 'var/ftp/shared/notice.txt'), 'utf8')).toBe('notice\n');
    expect(fs.existsSync(path.join(t.dir, 'var/ftp/home/alice'))).toBe(false);
    const b = await basicLogin(t.port('ftp'), 'bob');
    try {
      expect((await b.list()).map((f) => f.name)).toEqual(['notice.txt']);
      const chunks: Buffer[] = [];
      await b.downloadTo(new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }), 'notice.txt');
      expect(Buffer.concat(chunks).toString()).toBe('notice\n');
      await expect(b.uploadFrom(Readable.from([Buffer.from('x')]), 'mine.txt')).rejects.toThrow(/^55\d/);
      await expect(b.remove('notice.txt')).rejects.toThrow(/^55\d/);
    } finally {
      b.close();
    }
    expect(fs.readdirSync(path.join(t.dir, 'var/ftp/shared'))).toEqual(['notice.txt']);
  });
});
