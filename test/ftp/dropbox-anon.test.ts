// Shares, drop boxes and anonymous access, driven with basic-ftp (FTPS) and Python ftplib (anonymous).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from 'basic-ftp';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { PASSWORD, PY, basicLogin, fingerprint, run } from './ftp-helpers.js';

let t: TestGatehouse;
let port: number;
let drop: string;
let pub: string;
let work: string;

beforeAll(async () => {
  t = await startGatehouse(
    {
      smtp: { enabled: false },
      nntp: { enabled: false },
      ftp: {
        anonymous: { enabled: true, write: 'dropbox' },
        shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { 'group:students': ['write'], alice: ['read', 'list', 'delete'] } }],
      },
    },
    [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD, groups: ['students'] },
      { name: 'carol', password: PASSWORD, groups: ['students'] },
      { name: 'dave', password: PASSWORD },
    ],
  );
  port = t.port('ftp');
  drop = path.join(t.dir, 'var/ftp/dropbox');
  pub = path.join(t.dir, 'var/ftp/public');
  fs.writeFileSync(path.join(pub, 'readme.txt'), 'public file\n');
  fs.mkdirSync(path.join(t.dir, 'outside'));
  fs.writeFileSync(path.join(t.dir, 'outside/secret'), 'TOPSECRET\n');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-ftp-drop-'));
});
afterAll(async () => {
  await t?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

const up = (c: Client, text: string, name: string) => c.uploadFrom(Readable.from([Buffer.from(text)]), name);
const code = async (p: Promise<unknown>): Promise<number> => {
  try {
    await p;
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
};

describe('drop box', () => {
  it('accepts uploads from the group and refuses list, read, overwrite, rename, delete, mkdir', async () => {
    const bob = await basicLogin(port, 'bob');
    await up(bob, 'bob report\n', '/dropbox/report.txt');
    expect(fs.readFileSync(path.join(drop, 'report.txt'), 'utf8')).toBe('bob report\n');
    const before = fingerprint(drop);
    expect(await code(bob.list('/dropbox'))).toBe(550);
    expect(await code(bob.downloadTo(path.join(work, 'x'), '/dropbox/report.txt'))).toBe(550);
    expect(await code(bob.size('/dropbox/report.txt'))).toBe(550);
    expect(await code(bob.lastMod('/dropbox/report.txt'))).toBe(550);
    expect(await code(bob.remove('/dropbox/report.txt'))).toBe(550);
    expect(await code(bob.rename('/dropbox/report.txt', '/dropbox/other.txt'))).toBe(550);
    expect(await code(bob.appendFrom(Readable.from([Buffer.from('more')]), '/dropbox/report.txt'))).toBe(550);
    expect(await code(bob.send('MKD /dropbox/sub'))).toBe(550);
    await bob.cd('/dropbox');
    expect(await bob.pwd()).toBe('/dropbox');
    // a clash never overwrites, not even the uploader's own file
    await up(bob, 'bob again\n', 'report.txt');
    bob.close();
    const carol = await basicLogin(port, 'carol');
    await up(carol, 'carol report\n', '/dropbox/report.txt');
    carol.close();
    expect(fs.readFileSync(path.join(drop, 'report.txt'), 'utf8')).toBe('bob report\n');
    const names = fs.readdirSync(drop).sort();
    expect(names).toEqual(['report.txt', 'report.txt.1', 'report.txt.2']);
    expect(names.map((n) => fs.readFileSync(path.join(drop, n), 'utf8')).sort()).toEqual(['bob again\n', 'bob report\n', 'carol report\n']);
    expect(before).not.toBe(fingerprint(drop));
    expect(t.decisions.some((d) => d.rule === 'paths.dropbox' && d.user === 'bob')).toBe(true);
  });

  it('lets the collector list, read and delete, but not upload', async () => {
    const alice = await basicLogin(port, 'alice');
    const names = (await alice.list('/dropbox')).map((f) => f.name).sort();
    expect(names).toEqual(['report.txt', 'report.txt.1', 'report.txt.2']);
    await alice.downloadTo(path.join(work, 'got.txt'), '/dropbox/report.txt');
    expect(fs.readFileSync(path.join(work, 'got.txt'), 'utf8')).toBe('bob report\n');
    await alice.remove('/dropbox/report.txt.2');
    expect(await code(up(alice, 'x', '/dropbox/new.txt'))).toBe(550);
    alice.close();
    expect(fs.existsSync(path.join(drop, 'report.txt.2'))).toBe(false);
    expect(fs.existsSync(path.join(drop, 'new.txt'))).toBe(false);
  });

  it('refuses planted symlinks and hard links in the drop box, and hides them', async () => {
    fs.symlinkSync(path.join(t.dir, 'outside/secret'), path.join(drop, 'link'));
    fs.linkSync(path.join(t.dir, 'outside/secret'), path.join(drop, 'hard'));
    const alice = await basicLogin(port, 'alice');
    const names = (await alice.list('/dropbox')).map((f) => f.name);
    expect(names).not.toContain('link');
    expect(names).not.toContain('hard');
    expect(await code(alice.downloadTo(path.join(work, 'l'), '/dropbox/link'))).toBe(550);
    expect(await code(alice.downloadTo(path.join(work, 'h'), '/dropbox/hard'))).toBe(550);
    alice.close();
    const bob = await basicLogin(port, 'bob');
    expect(await code(up(bob, 'overwrite?', '/dropbox/link'))).toBe(550);
    bob.close();
    expect(fs.readFileSync(path.join(t.dir, 'outside/secret'), 'utf8')).toBe('TOPSECRET\n');
    fs.rmSync(path.join(drop, 'link'));
    fs.rmSync(path.join(drop, 'hard'));
  });

  it('is invisible to users without rights on it', async () => {
    const dave = await basicLogin(port, 'dave');
    expect((await dave.list('/')).map((f) => f.name)).not.toContain('dropbox');
    expect(await code(dave.cd('/dropbox'))).toBe(550);
    expect(await code(up(dave, 'x', '/dropbox/x.txt'))).toBe(550); // resolves in dave's own home, where there is no such folder
    dave.close();
    expect(fs.existsSync(path.join(drop, 'x.txt'))).toBe(false);
  });
});

describe('anonymous', () => {
  it('reads the public root, uploads only into incoming/, and touches nothing else (ftplib, no TLS)', async () => {
    const before = fingerprint(path.join(t.dir, 'var/ftp/home'));
    const script = `
import ftplib, io
f = ftplib.FTP(source_address=('127.0.0.41', 0), timeout=10)
f.connect('127.0.0.1', ${port}); print(f.login())
out = io.BytesIO(); f.retrbinary('RETR readme.txt', out.write); print('READ', out.getvalue().decode().strip())
print('LIST', sorted(f.nlst()))
def attempt(fn):
    try:
        fn(); return 'OK'
    except ftplib.all_errors as e:
        return str(e)[:3]
print('STOR', attempt(lambda: f.storbinary('STOR x.txt', io.BytesIO(b'x'))))
print('DELE', attempt(lambda: f.delete('readme.txt')))
print('RNFR', attempt(lambda: f.rename('readme.txt', 'y.txt')))
print('MKD', attempt(lambda: f.mkd('newdir')))
print('RMD', attempt(lambda: f.rmd('incoming')))
print('HOME', attempt(lambda: f.retrbinary('RETR ../home/alice/x', io.BytesIO().write)))
print('UP', attempt(lambda: f.storbinary('STOR incoming/up.txt', io.BytesIO(b'anon upload'))))
print('UP2', attempt(lambda: f.storbinary('STOR incoming/up.txt', io.BytesIO(b'second'))))
print('INLIST', attempt(lambda: f.nlst('incoming')))
print('INREAD', attempt(lambda: f.retrbinary('RETR incoming/up.txt', io.BytesIO().write)))
print('INDELE', attempt(lambda: f.delete('incoming/up.txt')))
print('INREN', attempt(lambda: f.rename('incoming/up.txt', 'incoming/z.txt')))
print('INMKD', attempt(lambda: f.mkd('incoming/d')))
f.quit()
`;
    const r = await run(PY, ['-c', script]);
    expect(r.stderr).toBe('');
    const out = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => [l.split(' ')[0], l.slice(l.indexOf(' ') + 1)]),
    );
    expect(r.stdout.split('\n')[0]).toMatch(/^230/);
    expect(out).toMatchObject({ READ: 'public file', STOR: '550', DELE: '550', RNFR: '550', MKD: '550', RMD: '550', UP: 'OK', UP2: 'OK', INLIST: '550', INREAD: '550', INDELE: '550', INREN: '550', INMKD: '550' });
    expect(out.HOME).toMatch(/^55\d$/);
    expect(out.LIST).toContain('readme.txt');
    const incoming = path.join(pub, 'incoming');
    expect(fs.readdirSync(incoming).sort()).toEqual(['up.txt', 'up.txt.1']);
    expect(fs.readFileSync(path.join(incoming, 'up.txt'), 'utf8')).toBe('anon upload');
    expect(fs.readFileSync(path.join(pub, 'readme.txt'), 'utf8')).toBe('public file\n');
    expect(fingerprint(path.join(t.dir, 'var/ftp/home'))).toBe(before);
    expect(fs.existsSync(path.join(pub, 'x.txt'))).toBe(false);
  });
});
