/*
 * Drop-box upload notices (issue 18 part 1), end to end: real FTPS uploads with basic-ftp into a share with
 * `notify`, the notice goes through the durable SMTP queue to local Maildirs (a user and a group) and, for a
 * remote reader, to a real SMTP sink (the smarthost). 50 uploads make one digest; refused and aborted uploads
 * make none; names cannot inject headers; the uploader learns nothing. Crash recovery (kill -9 between the 226
 * and the digest) is in notices-crash.test.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDigest, escapeName, noticesDir } from '../../src/ftp/notices.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { maildirMessages, startSink, waitUntil, type Sink } from '../smtp/listener-client.js';
import { PASSWORD, RawFtp, basicLogin } from './ftp-helpers.js';

const DIGEST_S = 20;
let t: TestGatehouse;
let sink: Sink;
let stateDir: string;

beforeAll(async () => {
  sink = await startSink();
  t = await startGatehouse(
    {
      smtp: { local_domains: ['local.test'], relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } },
      nntp: { enabled: false },
      ftp: {
        shares: [
          {
            path: '/dropbox',
            dir: 'ftp/dropbox',
            rights: { 'group:students': ['write'], alice: ['read', 'list'] },
            notify: { to: ['alice', 'group:staff', 'lab-lead@example.net'], digest_s: DIGEST_S },
          },
          { path: '/quiet', dir: 'ftp/quiet', rights: { 'group:students': ['write'] } },
        ],
      },
    },
    [
      { name: 'alice', password: PASSWORD },
      { name: 'bob', password: PASSWORD, groups: ['students'] },
      { name: 'carol', password: PASSWORD, groups: ['staff'] },
      { name: 'dave', password: PASSWORD, groups: ['staff'] },
    ],
  );
  stateDir = t.gh.config.paths.stateDir;
}, 60_000);
afterAll(async () => {
  await t?.stop();
  await sink?.close();
});

const journal = () => fs.readdirSync(noticesDir(stateDir)).filter((n) => n.endsWith('.json'));
const headOf = (m: Buffer) => m.subarray(0, m.indexOf('\r\n\r\n')).toString('utf8');

describe('upload notices', () => {
  it('50 uploads within the window make one digest per reader, listing every file with size and SHA-256', async () => {
    const bob = await basicLogin(t.port('ftp'), 'bob');
    const files = new Map<string, Buffer>();
    const started = Date.now();
    const replies: string[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        // names a header injector would try; FTP cannot carry CR/LF in a name (the unit test below covers them)
        // the last one clashes with result-48.csv: the drop box stores it as result-48.csv.1, and the notice says so
        const name = i === 0 ? '=?utf-8?b?U3ViamVjdDogcHduZWQ=?=.txt' : i === 1 ? 'Bcc: victim@example.org.txt' : `result-${i === 49 ? 48 : i}.csv`;
        const data = crypto.randomBytes(100 + i);
        files.set(i === 49 ? `${name}.1` : name, data);
        const r = await bob.uploadFrom(Readable.from([data]), `/dropbox/${name}`);
        replies.push(r.message);
      }
    } finally {
      bob.close();
    }
    const tookS = (Date.now() - started) / 1000;
    expect(tookS).toBeLessThan(DIGEST_S); // all inside one window (generous for a loaded machine)
    // committed uploads are journaled before their 226
    expect(journal().length).toBe(50);
    // the uploader is told nothing about the readers
    expect(replies.join('\n')).not.toMatch(/alice|carol|dave|lab-lead|example\.net/);

    expect(await waitUntil(() => maildirMessages(stateDir, 'alice').length >= 1 && maildirMessages(stateDir, 'carol').length >= 1 && maildirMessages(stateDir, 'dave').length >= 1 && sink.messages.length >= 1, (DIGEST_S + 30) * 1000)).toBe(true);
    // one more window: still exactly one message each (no second digest)
    await new Promise((r) => setTimeout(r, 3000));
    expect(maildirMessages(stateDir, 'alice')).toHaveLength(1);
    expect(maildirMessages(stateDir, 'carol')).toHaveLength(1);
    expect(maildirMessages(stateDir, 'dave')).toHaveLength(1);
    expect(maildirMessages(stateDir, 'bob')).toHaveLength(0);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]!.to).toEqual(['lab-lead@example.net']);
    expect(journal()).toEqual([]);

    const mail = maildirMessages(stateDir, 'alice')[0]!;
    const head = headOf(mail);
    const text = mail.toString('utf8');
    expect(head).toContain('Subject: [Gatehouse] 50 uploads to /dropbox');
    expect(head).toContain('To: undisclosed-recipients:;');
    expect(head).not.toMatch(/carol|dave|lab-lead/);
    // no uploaded name reached the header block
    expect(head).not.toContain('=?utf-8?b?U3ViamVjdDogcHduZWQ=?=');
    expect(head).not.toMatch(/^Bcc:/m);
    expect(head.split('\r\n').filter((l) => /^Subject:/i.test(l))).toHaveLength(1);
    expect(text.match(/^file: /gm)).toHaveLength(50);
    for (const [name, data] of files) {
      expect(text).toContain(`file:     ${JSON.stringify(`/dropbox/${name}`)}`);
      expect(text).toContain(`sha256:   ${crypto.createHash('sha256').update(data).digest('hex')}`);
    }
    expect(text).toContain('uploader: "bob"');
    expect(text).toContain('client:   "127.0.0.1"');
    expect(text).toContain(`size:     ${files.get('result-48.csv.1')!.length} bytes`);
    // the remote copy is the same digest, through the relay path
    expect(sink.messages[0]!.data.toString('utf8')).toContain('Subject: [Gatehouse] 50 uploads to /dropbox');
    expect(t.decisions.some((d) => d.phase === 'notice_rcpt' && d.rule === 'notice.relay' && d.verdict === 'allow')).toBe(true);
  }, 120_000);

  it('refused and aborted uploads, and uploads to a share without notify, make no notice', async () => {
    const before = maildirMessages(stateDir, 'alice').length;
    // refused: alice may not write the drop box
    const alice = await basicLogin(t.port('ftp'), 'alice');
    await expect(alice.uploadFrom(Readable.from([Buffer.from('x')]), '/dropbox/refused.txt')).rejects.toThrow();
    alice.close();
    // no notify on /quiet
    const bob = await basicLogin(t.port('ftp'), 'bob');
    await bob.uploadFrom(Readable.from([Buffer.from('quiet')]), '/quiet/q.txt');
    bob.close();
    // aborted: the TLS data connection is reset mid-upload (426, nothing kept)
    const c = await RawFtp.connect(t.port('ftp'));
    expect((await c.login('bob', PASSWORD, true))?.code).toBe(230);
    expect((await c.cmd('PBSZ 0'))?.code).toBe(200);
    expect((await c.cmd('PROT P'))?.code).toBe(200);
    const dport = await c.pasv();
    const sock = net.connect({ port: dport, host: '127.0.0.1' });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    expect((await c.cmd('STOR /dropbox/aborted.bin'))?.code).toBe(150);
    const secure = tls.connect({ socket: sock, rejectUnauthorized: false, session: c.tlsSession });
    secure.on('error', () => undefined);
    await new Promise<void>((resolve) => secure.once('secureConnect', () => resolve()));
    await new Promise<void>((resolve) => secure.write(Buffer.alloc(300_000, 5), () => resolve()));
    sock.resetAndDestroy();
    expect((await c.read(15_000))?.code).toBe(426);
    c.close();
    expect(fs.existsSync(path.join(stateDir, 'ftp/dropbox/aborted.bin'))).toBe(false);
    expect(journal()).toEqual([]);
    await new Promise((r) => setTimeout(r, 2500));
    expect(maildirMessages(stateDir, 'alice').length).toBe(before);
  }, 60_000);
});

describe('digest text', () => {
  it('escapes CR, LF, controls and quotes in names so nothing can start a header line', () => {
    const evil = 'a.txt\r\nBcc: victim@example.org\r\n\r\nX';
    const msg = buildDigest('gatehouse.test', '/dropbox', [{ v: 1, share: '/dropbox', name: `/dropbox/${evil}`, bytes: 1, sha256: '0'.repeat(64), uploader: 'bob\nBcc: x@y', ip: '127.0.0.1', time: 0, session: 's' }], new Date(0));
    const text = msg.toString('utf8');
    const head = headOf(msg);
    expect(head).not.toMatch(/Bcc/i);
    expect(text).not.toMatch(/^Bcc:/m);
    // every CR is part of a CRLF line end, and the only blank line is the one after the header
    expect(text.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    expect(text).toContain(String.raw`a.txt\r\nBcc: victim@example.org\r\n\r\nX`);
    expect(escapeName('x\u0085\u2028y')).toBe(String.raw`"x\u0085\u2028y"`);
  });
});
