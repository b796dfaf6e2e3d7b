// Protocol conformance with real clients: MLST/MLSD (RFC 3659 §7) with perm from the policy, FEAT/HELP/OPTS/SYST,
// LIST's owner columns, the drop box's 226 naming the stored file, and PROT P data connections bound to the control
// connection's TLS session (a same-address thief is refused while the real transfer completes byte-exact).
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { PASSWORD, RawFtp, basicLogin, has, run } from './ftp-helpers.js';

let t: TestGatehouse;
let port: number;
let home: string;
let drop: string;
let work: string;
const BIG = crypto.randomBytes(700_000);

beforeAll(async () => {
  t = await startGatehouse(
    {
      smtp: { enabled: false },
      nntp: { enabled: false },
      ftp: { shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { 'group:students': ['write'], alice: ['read', 'list', 'delete'] } }] },
    },
    [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD, groups: ['students'] },
    ],
  );
  port = t.port('ftp');
  home = path.join(t.dir, 'var/ftp/home/alice');
  drop = path.join(t.dir, 'var/ftp/dropbox');
  fs.mkdirSync(path.join(home, 'sub'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(home, 'a.txt'), 'hello\n');
  fs.writeFileSync(path.join(home, 'sub/b.bin'), BIG.subarray(0, 5000));
  fs.writeFileSync(path.join(home, 'big.bin'), BIG);
  fs.writeFileSync(path.join(home, '.gh-part-0123'), 'upload in progress');
  fs.mkdirSync(path.join(t.dir, 'outside'));
  fs.writeFileSync(path.join(t.dir, 'outside/secret'), 'TOPSECRET\n');
  fs.symlinkSync(path.join(t.dir, 'outside'), path.join(home, 'out'));
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-ftp-conf-'));
});
afterAll(async () => {
  await t?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A logged-in raw FTPS session with PBSZ 0 / PROT P. */
async function secureSession(user: string, from = '127.0.0.1'): Promise<RawFtp> {
  const c = await RawFtp.connect(port, from);
  expect((await c.login(user))?.code).toBe(230);
  expect((await c.cmd('PBSZ 0'))?.code).toBe(200);
  expect((await c.cmd('PROT P'))?.code).toBe(200);
  return c;
}

/** EPSV + `line` over a TLS data connection that resumes the control connection's session; the bytes and the replies. */
async function transfer(c: RawFtp, line: string): Promise<{ codes: number[]; data: Buffer }> {
  const r = await c.cmd('EPSV');
  const dport = Number(/\|\|\|(\d+)\|/.exec(r?.text ?? '')?.[1]);
  const raw = net.connect({ port: dport, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', () => resolve());
    raw.once('error', reject);
  });
  const first = await c.cmd(line);
  const codes = [first?.code ?? 0];
  if (first?.code !== 150) {
    raw.destroy();
    return { codes, data: Buffer.alloc(0) };
  }
  const chunks: Buffer[] = [];
  const secure = tls.connect({ socket: raw, rejectUnauthorized: false, session: c.tlsSession });
  secure.on('data', (d: Buffer) => chunks.push(d));
  secure.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => secure.on('close', () => resolve()));
  setTimeout(() => secure.destroy(), 15_000).unref();
  codes.push((await c.read(20_000))?.code ?? 0);
  await closed;
  return { codes, data: Buffer.concat(chunks) };
}

describe('FEAT, OPTS, HELP, SYST', () => {
  it('FEAT before login lists what is really there: REST STREAM, EPSV, MLST facts, UTF8; no EPRT with active mode off', async () => {
    const c = await RawFtp.connect(port);
    await c.read();
    const r = await c.cmd('FEAT');
    expect(r?.code).toBe(211);
    const lines = r!.text.split('\n');
    expect(lines[0]).toMatch(/^211-/);
    expect(lines[lines.length - 1]).toBe('211 End');
    const features = lines.slice(1, -1).map((l) => l.trim());
    for (const f of ['REST STREAM', 'EPSV', 'MLST type*;size*;modify*;perm*;unique;', 'UTF8', 'AUTH TLS', 'PBSZ', 'PROT', 'SIZE', 'MDTM']) expect(features).toContain(f);
    expect(features).not.toContain('EPRT');
    expect(lines.slice(1, -1).every((l) => l.startsWith(' '))).toBe(true);
    c.close();
  });

  it('accepts OPTS UTF8 ON before login (lftp sends it first), refuses SYST until login (as vsftpd), then answers UNIX Type: L8', async () => {
    const c = await RawFtp.connect(port);
    await c.read();
    expect(await c.cmd('OPTS UTF8 ON')).toEqual({ code: 200, text: '200 Always in UTF8 mode' });
    expect((await c.cmd('OPTS UTF8 OFF'))?.code).toBe(504);
    expect((await c.cmd('OPTS NOSUCH x'))?.code).toBe(501);
    expect((await c.cmd('SYST'))?.code).toBe(530);
    await c.authTls();
    expect((await c.cmd('USER alice'))?.code).toBe(331);
    expect((await c.cmd(`PASS ${PASSWORD}`))?.code).toBe(230);
    expect(await c.cmd('SYST')).toEqual({ code: 215, text: '215 UNIX Type: L8' });
    c.close();
  });

  it('HELP lists only what this session may use: MLSD and EPSV, never PORT/EPRT (active mode off) or SITE', async () => {
    const c = await RawFtp.connect(port);
    await c.read();
    const r = await c.cmd('HELP');
    expect(r?.code).toBe(214);
    const words = r!.text.split('\n').slice(1, -1).join(' ').trim().split(/\s+/);
    for (const w of ['MLSD', 'MLST', 'EPSV', 'PASV', 'RETR', 'STOR', 'FEAT', 'OPTS']) expect(words).toContain(w);
    for (const w of ['PORT', 'EPRT', 'SITE', 'ACCT']) expect(words).not.toContain(w);
    expect((await c.cmd('HELP MLSD'))?.code).toBe(214);
    expect((await c.cmd('HELP SITE'))?.code).toBe(502);
    expect((await c.cmd('HELP PORT'))?.code).toBe(502);
    expect((await c.cmd('SITE CHMOD 777 x'))?.code).toBe(530);
    c.close();
  });
});

describe('MLST / MLSD (RFC 3659 §7)', () => {
  const FACT_LINE = /^((?:[a-z]+=[^;\s]*;)+) (.+)$/;
  const facts = (line: string): Record<string, string> => {
    const m = FACT_LINE.exec(line);
    if (!m) throw new Error(`not a fact line: ${JSON.stringify(line)}`);
    return Object.fromEntries(
      m[1]!
        .split(';')
        .filter((f) => f !== '')
        .map((f) => f.split('=') as [string, string]),
    );
  };

  it('MLST answers one file or folder on the control connection; escapes and links out are refused', async () => {
    const c = await secureSession('alice');
    const r = await c.cmd('MLST a.txt');
    expect(r?.code).toBe(250);
    const lines = r!.text.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]!.startsWith(' ')).toBe(true);
    const f = facts(lines[1]!.slice(1));
    expect(f).toMatchObject({ type: 'file', size: '6', perm: 'adfrw' });
    expect(f.modify).toMatch(/^\d{14}$/);
    expect(lines[1]!.endsWith(' /a.txt')).toBe(true);
    const root = await c.cmd('MLST');
    expect(facts(root!.text.split('\n')[1]!.slice(1))).toMatchObject({ type: 'dir', perm: 'celmp' });
    for (const bad of ['out/secret', 'out', '../../outside/secret', '../bob', '.gh-part-0123']) expect((await c.cmd(`MLST ${bad}`))?.code).toBeGreaterThanOrEqual(550);
    c.close();
  });

  it('OPTS MLST selects the facts (unknown ones ignored) and MLST shows exactly those', async () => {
    const c = await secureSession('alice');
    expect(await c.cmd('OPTS MLST size;unique;nosuch;type;')).toEqual({ code: 200, text: '200 MLST OPTS type;size;unique;' });
    const line = (await c.cmd('MLST a.txt'))!.text.split('\n')[1]!;
    expect(line).toMatch(/^ type=file;size=6;unique=[0-9a-f]{16}; \/a\.txt$/);
    expect(await c.cmd('OPTS MLST')).toEqual({ code: 200, text: '200 MLST OPTS' });
    // entry = [facts] SP pathname, after the line's own leading space (§7.2)
    expect((await c.cmd('MLST a.txt'))!.text.split('\n')[1]).toBe('  /a.txt');
    c.close();
  });

  it('MLSD lists facts over the data connection; hidden names and links out of the jail never appear', async () => {
    const c = await secureSession('alice');
    const { codes, data } = await transfer(c, 'MLSD');
    expect(codes).toEqual([150, 226]);
    const lines = data.toString('utf8').split('\r\n').filter((l) => l !== '');
    const byName = Object.fromEntries(lines.map((l) => [FACT_LINE.exec(l)![2]!, facts(l)]));
    expect(Object.keys(byName).sort()).toEqual(['a.txt', 'big.bin', 'dropbox', 'sub']);
    expect(byName['a.txt']).toMatchObject({ type: 'file', size: '6', perm: 'adfrw' });
    expect(byName['sub']).toMatchObject({ type: 'dir', perm: 'cdeflmp' });
    expect(byName['dropbox']).toMatchObject({ type: 'dir', perm: 'elp' }); // alice collects: list, read inside, delete
    expect(byName['a.txt']!.unique).toBeUndefined();
    expect((await transfer(c, 'MLSD a.txt')).codes).toEqual([501]);
    expect((await transfer(c, 'MLSD ../..')).codes[0]).toBeGreaterThanOrEqual(550);
    c.close();
  });

  it("a drop box shows perm=ce (no l, no r) to its uploaders, and MLSD inside it is refused exactly as LIST", async () => {
    const c = await secureSession('bob');
    const { data } = await transfer(c, 'MLSD /');
    const line = data
      .toString('utf8')
      .split('\r\n')
      .find((l) => l.endsWith(' dropbox'));
    expect(line).toBeDefined();
    expect(facts(line!)).toMatchObject({ type: 'dir', perm: 'ce' });
    expect((await transfer(c, 'MLSD /dropbox')).codes).toEqual([550]);
    expect((await transfer(c, 'LIST /dropbox')).codes).toEqual([550]);
    expect((await c.cmd('MLST /dropbox'))?.code).toBe(550);
    c.close();
  });

  it("basic-ftp's list() uses MLSD and reads types and sizes", async () => {
    const c = await basicLogin(port, 'alice');
    const sent: string[] = [];
    const send = c.ftp.send.bind(c.ftp);
    c.ftp.send = (command: string) => {
      sent.push(command);
      send(command);
    };
    const list = await c.list();
    expect(sent).toContain('MLSD');
    const files = Object.fromEntries(list.map((f) => [f.name, f]));
    expect(Object.keys(files).sort()).toEqual(['a.txt', 'big.bin', 'dropbox', 'sub']);
    expect(files['a.txt']!.size).toBe(6);
    expect(files['big.bin']!.size).toBe(BIG.length);
    expect(files['sub']!.isDirectory).toBe(true);
    c.close();
  });

  it.skipIf(!has('lftp'))('lftp cls and mirror go over MLSD and mirror the tree byte-exact', async () => {
    const dest = path.join(work, 'mirror');
    const r = await run(
      'lftp',
      [
        '-e',
        `set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:use-mlsd true; set net:max-retries 1; set net:timeout 10; debug 9; cls -1; mirror --exclude dropbox/ / ${dest}; bye`,
        '-u',
        `alice,${PASSWORD}`,
        '-p',
        String(port),
        '127.0.0.1',
      ],
      60_000,
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('---> MLSD');
    expect(r.stdout.split('\n')).toEqual(expect.arrayContaining(['a.txt', 'big.bin', 'sub/']));
    expect(fs.readFileSync(path.join(dest, 'big.bin')).equals(BIG)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'sub/b.bin')).equals(BIG.subarray(0, 5000))).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('hello\n');
    expect(fs.existsSync(path.join(dest, 'out'))).toBe(false);
  });
});

describe('LIST and drop-box replies', () => {
  it.skipIf(!has('curl'))('LIST (curl, PROT P resuming the session) shows ftp ftp, never numeric ids', async () => {
    const r = await run('curl', ['-sS', '--ssl-reqd', '-k', '-u', `alice:${PASSWORD}`, `ftp://127.0.0.1:${port}/`]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split(/\r?\n/).filter((l) => l !== '');
    expect(lines.length).toBe(4);
    for (const l of lines) expect(l).toMatch(/^[-d][-rwx]{9} +\d+ ftp +ftp +\d+ [A-Z][a-z]{2} [ \d]\d [ \d]\d[:\d]\d\d? .+$/);
    expect(lines.find((l) => l.endsWith(' a.txt'))).toMatch(/ ftp +ftp +6 /);
  });

  it('STAT <folder> on the control connection lists the same way (ftp ftp)', async () => {
    const c = await secureSession('alice');
    const r = await c.cmd('STAT /');
    expect(r?.code).toBe(213);
    const entries = r!.text.split('\n').slice(1, -1);
    expect(entries.length).toBe(4);
    for (const l of entries) expect(l).toMatch(/^[-d][-rwx]{9} +\d+ ftp +ftp +\d+ /);
    c.close();
  });

  it('a drop-box upload stored under another name (name.1) gets a 226 that names it', async () => {
    const bob = await basicLogin(port, 'bob');
    const first = await bob.uploadFrom(Readable.from([Buffer.from('one\n')]), '/dropbox/clash.txt');
    expect(first.message).toMatch(/^226 Transfer complete$/);
    const second = await bob.uploadFrom(Readable.from([Buffer.from('two\n')]), '/dropbox/clash.txt');
    expect(second.code).toBe(226);
    expect(second.message).toContain('clash.txt.1');
    bob.close();
    expect(fs.readFileSync(path.join(drop, 'clash.txt.1'), 'utf8')).toBe('two\n');
    expect(t.decisions.some((d) => d.rule === 'ftp.upload_complete' && d.object === '/dropbox/clash.txt.1')).toBe(true);
  });
});

/** EPSV on `c`, then a function that opens a raw TCP connection to the port it named (a client's or a thief's). */
async function passivePort(c: RawFtp): Promise<() => Promise<net.Socket>> {
  const r = await c.cmd('EPSV');
  const dport = Number(/\|\|\|(\d+)\|/.exec(r?.text ?? '')?.[1]);
  return async () => {
    const raw = net.connect({ port: dport, host: '127.0.0.1' });
    raw.on('error', () => undefined);
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    return raw;
  };
}

describe('PROT P data connections bound to the control session (ftp.tls.require_session_reuse)', () => {
  it('a same-address thief that connects first is refused (own rule) while the real transfer completes byte-exact', async () => {
    const c = await secureSession('alice');
    // another program on the client's address with a session of its own: its ticket is not this session's
    const other = await secureSession('bob');
    const before = t.decisions.filter((d) => d.rule === 'ftp.data_tls_not_resumed').length;
    const connect = await passivePort(c);
    // both thieves are there before the client; all start TLS once the 150 is out (as lftp does)
    const thiefRaw = await connect();
    const thief2Raw = await connect();
    const clientRaw = await connect();
    const opened = await c.cmd('RETR big.bin');
    expect(opened?.code).toBe(150);
    const receive = (raw: net.Socket, session: Buffer | undefined) =>
      new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        const s = tls.connect({ socket: raw, rejectUnauthorized: false, session });
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('error', () => undefined);
        s.on('close', () => resolve(Buffer.concat(chunks)));
        setTimeout(() => s.destroy(), 20_000).unref();
      });
    const thief = receive(thiefRaw, undefined);
    const thief2 = receive(thief2Raw, other.tlsSession);
    await new Promise((r) => setTimeout(r, 300)); // the thieves finish their handshakes first
    const real = receive(clientRaw, c.tlsSession);
    expect((await c.read(20_000))?.code).toBe(226);
    expect((await real).equals(BIG)).toBe(true);
    expect((await thief).length).toBe(0);
    expect((await thief2).length).toBe(0);
    const refused = t.decisions.filter((d) => d.rule === 'ftp.data_tls_not_resumed');
    expect(refused.length).toBe(before + 2);
    expect(refused.every((d) => d.verdict === 'deny' && d.phase === 'data_connect')).toBe(true);
    c.close();
    other.close();
  });

  it('an upload takes no byte from a thief that connected first: the stored file is exactly what the client sent', async () => {
    const c = await secureSession('alice');
    const before = t.decisions.filter((d) => d.rule === 'ftp.data_tls_not_resumed').length;
    const connect = await passivePort(c);
    const thiefRaw = await connect();
    const clientRaw = await connect();
    expect((await c.cmd('STOR upload.bin'))?.code).toBe(150);
    const thief = tls.connect({ socket: thiefRaw, rejectUnauthorized: false });
    thief.on('error', () => undefined);
    thief.once('secureConnect', () => thief.end(Buffer.alloc(100_000, 0x45)));
    await new Promise((r) => setTimeout(r, 300));
    const real = tls.connect({ socket: clientRaw, rejectUnauthorized: false, session: c.tlsSession });
    real.on('error', () => undefined);
    real.once('secureConnect', () => real.end(BIG));
    expect((await c.read(20_000))?.code).toBe(226);
    expect(fs.readFileSync(path.join(home, 'upload.bin')).equals(BIG)).toBe(true);
    expect(t.decisions.filter((d) => d.rule === 'ftp.data_tls_not_resumed').length).toBe(before + 1);
    c.close();
  });

  it('a PROT P data connection that does not resume gets 425 after the 150 and receives nothing', async () => {
    const c = await secureSession('alice');
    const r = await c.cmd('EPSV');
    const dport = Number(/\|\|\|(\d+)\|/.exec(r?.text ?? '')?.[1]);
    const raw = net.connect({ port: dport, host: '127.0.0.1' });
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    expect((await c.cmd('RETR a.txt'))?.code).toBe(150);
    const chunks: Buffer[] = [];
    const s = tls.connect({ socket: raw, rejectUnauthorized: false });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    const done = await c.read(20_000);
    expect(done?.code).toBe(425);
    expect(done?.text).toMatch(/TLS session/);
    expect(Buffer.concat(chunks).length).toBe(0);
    c.close();
  });

  it.skipIf(!has('curl'))('curl resumes the session: download byte-exact with the check on', async () => {
    const out = path.join(work, 'curl-big.bin');
    const r = await run('curl', ['-sS', '--ssl-reqd', '-k', '-u', `alice:${PASSWORD}`, '-o', out, `ftp://127.0.0.1:${port}/big.bin`]);
    expect(r.stderr).toBe('');
    expect(fs.readFileSync(out).equals(BIG)).toBe(true);
  });

  it('basic-ftp resumes the session: upload and download byte-exact with the check on', async () => {
    const c = await basicLogin(port, 'alice');
    await c.uploadFrom(Readable.from([BIG]), 'basic.bin');
    const parts: Buffer[] = [];
    await c.downloadTo(new Writable({ write: (d: Buffer, _e, cb) => (parts.push(d), cb()) }), 'basic.bin');
    expect(Buffer.concat(parts).equals(BIG)).toBe(true);
    c.close();
  });
});
