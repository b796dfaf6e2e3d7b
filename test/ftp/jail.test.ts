// The jail from the outside: traversal in every spelling and planted symlinks/hard links, tried with every
// path-taking command over a real FTPS session; after each battery the disk outside (and inside) is unchanged.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { PASSWORD, PY, RawFtp, basicLogin, fingerprint, run } from './ftp-helpers.js';
import net from 'node:net';
import tls from 'node:tls';

let t: TestGatehouse;
let port: number;
let homes: string;
let outside: string;

beforeAll(async () => {
  t = await startGatehouse({ smtp: { enabled: false }, nntp: { enabled: false } }, [
    { name: 'alice', password: PASSWORD },
    { name: 'bob', password: PASSWORD },
  ]);
  port = t.port('ftp');
  homes = path.join(t.dir, 'var/ftp/home');
  outside = path.join(t.dir, 'outside');
  fs.mkdirSync(path.join(outside, 'dir'), { recursive: true });
  fs.writeFileSync(path.join(outside, 'secret'), 'TOPSECRET\n');
  const alice = path.join(homes, 'alice');
  const bob = path.join(homes, 'bob');
  fs.mkdirSync(path.join(alice, 'sub'), { recursive: true, mode: 0o700 });
  fs.mkdirSync(bob, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(bob, 'private'), 'BOBPRIVATE\n');
  fs.writeFileSync(path.join(alice, 'ok.txt'), 'ok\n');
  fs.symlinkSync(outside, path.join(alice, 'out'));
  fs.symlinkSync(path.join(outside, 'secret'), path.join(alice, 'secretlink'));
  fs.symlinkSync(bob, path.join(alice, 'bobhome'));
  fs.symlinkSync(path.join(outside, 'newfile'), path.join(alice, 'dangling'));
  fs.symlinkSync('/etc/passwd', path.join(alice, 'sub/passwd'));
  fs.linkSync(path.join(outside, 'secret'), path.join(alice, 'hard'));
});
afterAll(async () => {
  await t?.stop();
});

const TRAVERSAL = [
  '../x',
  '../../../../etc/passwd',
  '/../../etc/passwd',
  'sub/../../x',
  '..\\..\\etc\\passwd',
  'sub\\..\\..\\x',
  '%2e%2e/x',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '..%2f..%2fetc',
  '..%5c..%5cx',
  'x%00.txt',
  '%c0%ae%c0%ae/x',
];
const PLANTED = ['out', 'out/secret', 'out/dir', 'out/newdir', 'secretlink', 'bobhome', 'bobhome/private', 'dangling', 'hard', 'sub/passwd'];

async function dataCommand(c: RawFtp, line: string, upload: string | null): Promise<{ codes: number[]; data: string }> {
  const dport = await c.pasv();
  let received = '';
  const done = new Promise<void>((resolve) => {
    const raw = net.connect({ port: dport, host: '127.0.0.1' });
    const s = tls.connect({ socket: raw, rejectUnauthorized: false, session: c.tlsSession });
    s.on('data', (d: Buffer) => (received += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => resolve());
    s.on('secureConnect', () => {
      if (upload !== null) s.end(upload);
    });
    setTimeout(() => s.destroy(), 10_000).unref();
  });
  const codes: number[] = [];
  const first = await c.cmd(line);
  codes.push(first?.code ?? 0);
  if (first && first.code < 200) codes.push((await c.read())?.code ?? 0);
  await done;
  return { codes, data: received };
}

describe('traversal and symlink batteries', () => {
  it('refuses every escape with every command and leaves the disk untouched', async () => {
    const before = { ftp: fingerprint(path.join(t.dir, 'var/ftp')), outside: fingerprint(outside) };
    const c = await RawFtp.connect(port, '127.0.0.31');
    expect((await c.login('alice'))?.code).toBe(230);
    expect((await c.cmd('PBSZ 0'))?.code).toBe(200);
    expect((await c.cmd('PROT P'))?.code).toBe(200);
    const failures: string[] = [];
    const expectRefused = (what: string, codes: number[]) => {
      if (!codes.every((x) => x >= 400) || codes.length === 0) failures.push(`${what} → ${codes.join(',')}`);
    };
    for (const p of [...TRAVERSAL, ...PLANTED]) {
      for (const verb of ['CWD', 'SIZE', 'MDTM', 'DELE', 'RMD', 'MKD', 'RNFR', 'STAT']) {
        if (verb === 'MKD' && !p.includes('..') && !p.startsWith('out') && !p.startsWith('bobhome') && !PLANTED.includes(p)) continue;
        if (verb === 'STAT' && !PLANTED.includes(p) && !p.includes('..')) continue;
        const r = await c.cmd(`${verb} ${p}`);
        expectRefused(`${verb} ${p}`, [r?.code ?? 0]);
        if (verb === 'STAT' && r?.text.includes('TOPSECRET')) failures.push('STAT leaked');
      }
      expect((await c.cmd('RNFR ok.txt'))?.code).toBe(350);
      expectRefused(`RNTO ${p}`, [(await c.cmd(`RNTO ${p}`))?.code ?? 0]);
      expectRefused(`SITE CHMOD 777 ${p}`, [(await c.cmd(`SITE CHMOD 777 ${p}`))?.code ?? 0]);
      for (const verb of ['RETR', 'LIST', 'NLST']) {
        const r = await dataCommand(c, `${verb} ${p}`, null);
        expectRefused(`${verb} ${p}`, r.codes);
        if (r.data.includes('TOPSECRET') || r.data.includes('BOBPRIVATE') || r.data.includes('root:')) failures.push(`${verb} ${p} leaked data`);
      }
      for (const verb of ['STOR', 'APPE']) {
        const r = await dataCommand(c, `${verb} ${p}`, 'EVIL');
        expectRefused(`${verb} ${p}`, r.codes);
      }
    }
    for (const verb of ['MLSD', 'MLST out', 'SITE SYMLINK ok.txt /etc/x', 'SITE CHMOD 777 ok.txt']) expectRefused(verb, [(await c.cmd(verb))?.code ?? 0]);
    // overlong UTF-8 sent as raw bytes (C0 AE = '.'), never decoded to '..'
    const overlong = Buffer.concat([Buffer.from('CWD '), Buffer.from([0xc0, 0xae, 0xc0, 0xae]), Buffer.from('\r\n')]);
    expectRefused('CWD <overlong ..>', [(await c.cmd(overlong))?.code ?? 0]);
    expect((await c.cmd('PWD'))?.text).toContain('"/"');
    c.close();
    expect(failures).toEqual([]);
    expect(fingerprint(outside)).toBe(before.outside);
    expect(fingerprint(path.join(t.dir, 'var/ftp'))).toBe(before.ftp);
    expect(fs.existsSync(path.join(outside, 'newfile'))).toBe(false);
    expect(fs.existsSync(path.join(outside, 'newdir'))).toBe(false);
    expect(t.decisions.some((d) => d.rule === 'paths.outside')).toBe(true);
    expect(t.decisions.some((d) => d.rule === 'paths.escape')).toBe(true);
    expect(t.decisions.some((d) => d.rule === 'paths.syntax')).toBe(true);
    expect(t.decisions.some((d) => d.rule === 'paths.hardlink')).toBe(true);
  }, 120_000);

  it('hides escaping links from listings but keeps legitimate navigation', async () => {
    const c = await basicLogin(port, 'alice');
    const names = (await c.list()).map((f) => f.name).sort();
    expect(names).toEqual(['ok.txt', 'sub']);
    await c.cd('sub');
    expect(await c.pwd()).toBe('/sub');
    await c.cd('..');
    expect(await c.pwd()).toBe('/');
    await c.cd('/');
    await expect(c.cd('..')).rejects.toThrow(/553|550/);
    c.close();
  });

  it('keeps users apart: bob sees only his home, alice cannot reach it (ftplib from another address)', async () => {
    const script = `
import ftplib, io, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, source_address=('127.0.0.32', 0), timeout=10)
f.connect('127.0.0.1', ${port}); f.auth(); f.login('alice', '${PASSWORD}'); f.prot_p()
res = []
for cmd in ['RETR ../bob/private', 'RETR /../bob/private', 'RETR bobhome/private', 'RETR ../../outside/secret']:
    try:
        out = io.BytesIO(); f.retrbinary(cmd, out.write); res.append('LEAK ' + out.getvalue().decode())
    except ftplib.error_perm as e:
        res.append(str(e)[:3])
for d in ['..', '../bob', '/..']:
    try:
        f.cwd(d); res.append('CWD ' + f.pwd())
    except ftplib.error_perm as e:
        res.append(str(e)[:3])
print(' '.join(res)); f.quit()
`;
    const r = await run(PY, ['-c', script]);
    expect(r.stderr).toBe('');
    const parts = r.stdout.trim().split(' ');
    expect(parts).toHaveLength(7);
    for (const p of parts) expect(p).toMatch(/^55\d$/);
    const bob = await basicLogin(port, 'bob');
    expect((await bob.list()).map((f) => f.name)).toEqual(['private']);
    bob.close();
  });

  it('a home that is a symlink is refused at login', async () => {
    const before = fingerprint(outside);
    fs.symlinkSync(outside, path.join(homes, 'mallory'));
    await t.gh.runtime.users.add('mallory', PASSWORD, []);
    const c = await RawFtp.connect(port, '127.0.0.33');
    const r = await c.login('mallory');
    expect(r?.code).toBe(530);
    c.close();
    expect(fingerprint(outside)).toBe(before);
    expect(t.decisions.some((d) => d.rule === 'paths.no_jail')).toBe(true);
  });

});
