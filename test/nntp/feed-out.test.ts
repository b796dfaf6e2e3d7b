/*
 * Outgoing feed negotiation: feedMode's table (CAPABILITIES answer → stream / try MODE STREAM / IHAVE), and a
 * scripted peer that speaks like a server older than RFC 3977 (INN 2.4: "500 What?" to CAPABILITIES, yet 203 to
 * MODE STREAM): Gatehouse streams to it instead of falling back to IHAVE. (INN 2.7 itself, with and without
 * streaming, is driven in inn-peering.test.ts.)
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { feedMode } from '../../src/nntp/feed-out.js';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { secureLogin } from './client.js';

describe('feedMode', () => {
  const rows: Array<[string, string, string[], 'stream' | 'try' | 'ihave']> = [
    ['lists STREAMING', '101 Capability list:', ['VERSION 2', 'IHAVE', 'STREAMING'], 'stream'],
    ['lower case, trailing blank', '101 caps', ['VERSION 2', 'streaming '], 'stream'],
    ['no STREAMING (INN 2.7 with streaming: false)', '101 Capability list:', ['VERSION 2', 'IHAVE'], 'ihave'],
    ['a word that only starts with STREAMING', '101 caps', ['STREAMINGX'], 'ihave'],
    ['CAPABILITIES unknown: 500 (INN 2.4)', '500 What?', [], 'try'],
    ['CAPABILITIES unknown: 501', '501 Syntax error', [], 'try'],
    ['refused before login', '480 Authentication required', [], 'ihave'],
    ['access denied', '502 Permission denied', [], 'ihave'],
  ];
  it.each(rows)('%s', (_n, reply, caps, mode) => {
    expect(feedMode(reply, caps)).toBe(mode);
  });
});

/** A pre-RFC 3977 streaming peer: records the commands it gets. */
function oldPeer(checkReply = (id: string) => `238 ${id}`): Promise<{ server: net.Server; port: number; commands: string[] }> {
  const commands: string[] = [];
  const server = net.createServer((sock) => {
    let buf = '';
    let inArticle = false;
    let id = '';
    sock.write('200 old.test InterNetNews server INN 2.4.6 ready\r\n');
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (inArticle) {
          if (line === '.') {
            inArticle = false;
            sock.write(`239 ${id}\r\n`);
          }
          continue;
        }
        commands.push(line.split(' ')[0]!.toUpperCase());
        const [cmd, arg = ''] = line.split(' ');
        switch (cmd!.toUpperCase()) {
          case 'MODE':
            sock.write('203 StreamOK.\r\n');
            break;
          case 'CHECK':
            sock.write(`${checkReply(arg)}\r\n`);
            break;
          case 'TAKETHIS':
            inArticle = true;
            id = arg;
            break;
          case 'QUIT':
            sock.end('205 .\r\n');
            break;
          default:
            sock.write('500 What?\r\n');
        }
      }
    });
    sock.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as net.AddressInfo).port, commands })));
}

/** A sender whose one outgoing peer is `oldPeer(answer)`; stopped (both) in afterAll. */
function senderTo(answer?: Parameters<typeof oldPeer>[0]): { peer: () => Awaited<ReturnType<typeof oldPeer>>; t: () => TestGatehouse } {
  let peer: Awaited<ReturnType<typeof oldPeer>> | undefined;
  let t: TestGatehouse | undefined;
  beforeAll(async () => {
    peer = await oldPeer(answer);
    t = await startGatehouse(
      {
        nntp: {
          listen: '127.0.0.1:0',
          groups: [{ name: 'lab.results', read: ['authenticated'], post: ['authenticated'] }],
          peers: [{ name: 'old.test', host: '127.0.0.1', port: peer.port, tls: false, groups: ['lab.*'], direction: 'out' }],
        },
      },
      [{ name: 'alice', password: PASSWORD }],
    );
  });
  afterAll(async () => {
    await t?.stop();
    await new Promise((r) => peer?.server.close(r));
  });
  return { peer: () => peer!, t: () => t! };
}

describe('a peer that does not know CAPABILITIES', () => {
  const { peer: peerOf, t: gh } = senderTo();

  it('is asked MODE STREAM and fed by CHECK / TAKETHIS (not IHAVE)', async () => {
    const peer = peerOf();
    const t = gh();
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    const [, r] = await c.post(['From: a@lab.test', 'Newsgroups: lab.results', 'Subject: to an old peer', '', 'x']);
    c.close();
    expect(r).toMatch(/^240 /);
    const deadline = Date.now() + 20_000;
    while (!peer.commands.includes('TAKETHIS') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(peer.commands.slice(0, 4)).toEqual(['CAPABILITIES', 'MODE', 'CHECK', 'TAKETHIS']);
    expect(peer.commands).not.toContain('IHAVE');
  });
});

describe('a peer that stops the batch with a reply other than 238 / 438', () => {
  // innd asks a peer with a password first
  const { peer: peerOf, t: gh } = senderTo(() => '480 Authentication required for command');

  it('keeps the article queued and names the reply in the log', async () => {
    const peer = peerOf();
    const t = gh();
    const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
    const [, r] = await c.post(['From: a@lab.test', 'Newsgroups: lab.results', 'Subject: refused for now', '', 'x']);
    c.close();
    const id = /<[^>]+>/.exec(r!)![0];
    const log = path.join(t.gh.runtime.config.paths.logDir, 'gatehouse.log');
    const errors = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '').split('\n').filter((l) => l.includes('"nntp_feed_error"'));
    const deadline = Date.now() + 20_000;
    while (errors().length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    const e = JSON.parse(errors()[0]!) as { error: string; queued: number };
    expect(e.error).toBe(`Error: peer asked to try later: CHECK ${id}: 480 Authentication required for command`);
    expect(e.queued).toBe(1);
    expect(peer.commands).not.toContain('TAKETHIS');
  });
});
