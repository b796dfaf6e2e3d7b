/*
 * Two Gatehouse instances behind a real HAProxy (Debian `haproxy`, started here on loopback with a throwaway
 * config, TCP mode, send-proxy-v2, health checks): the balancer listens on 127.0.0.40, the instances on
 * 127.0.0.1, and 127.0.0.1 is the one listed proxy. Clients come from 127.0.0.20 (a remote client) and
 * 127.0.0.66 (denied by smtp.access.deny). Checked: the real client address is in every decision (with the
 * proxy beside it), allow/deny and relay rules work on it although the balancer's address is a trusted
 * network, a PROXY header sent straight to an instance from an address that is not listed is refused, a
 * listed peer without (or with half) a header is refused, health checks (LOCAL) keep both servers UP without a
 * decision line, and an FTPS upload and download go through HAProxy in passive mode with lftp (homes on one
 * shared folder, as two instances would have on shared storage).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haproxyAvailable, startHaproxy, type Haproxy } from '../../bench/haproxy.js';
import { buildProxyHeader } from '../../src/net/proxy-protocol.js';
import type { DecisionRecord } from '../../src/policy/audit.js';
import { has, run } from '../ftp/ftp-helpers.js';
import { PASSWORD, randomPassiveRange, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { freePort } from '../smtp/listener-client.js';
import { Conn } from '../helpers/line-conn.js';

const BALANCER = '127.0.0.40';
const CLIENT = '127.0.0.20';
const DENIED = '127.0.0.66';
const STRANGER = '127.0.0.30';
const enabled = haproxyAvailable();
if (!enabled) console.warn('SKIP haproxy tests: haproxy not installed (apt-get install haproxy)');

let a: TestGatehouse;
let b: TestGatehouse;
let hap: Haproxy;
let shared: string;
const front = { smtp: 0, smtps: 0, ftp: 0, nntp: 0, nntps: 0 };
const all = (): DecisionRecord[] => [...a.decisions, ...b.decisions];
const waitFor = async (pred: () => boolean, ms = 10_000) => {
  const until = Date.now() + ms;
  while (!pred() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return pred();
};

describe.skipIf(!enabled)('two instances behind HAProxy (PROXY protocol v2)', () => {
  beforeAll(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-shared-homes-'));
    const range = randomPassiveRange(20);
    const lo = Number(range.split('-')[0]);
    const proxy = { from: ['127.0.0.1/32'], header_timeout_s: 3 };
    const overrides = (ports: string) => ({
      smtp: { implicit_tls_listen: '127.0.0.1:0', proxy_protocol: proxy, access: { deny: [`${DENIED}/32`] }, local_domains: ['gatehouse.test'] },
      ftp: { proxy_protocol: proxy, passive: { ports, address: BALANCER }, homes: path.join(shared, 'home'), allowed_roots: [shared] },
      nntp: { implicit_tls_listen: '127.0.0.1:0', proxy_protocol: proxy, groups: [{ name: 'office.general', read: ['authenticated'], post: ['authenticated'] }] },
    });
    a = await startGatehouse(overrides(`${lo}-${lo + 9}`), [{ name: 'alice', password: PASSWORD }]);
    b = await startGatehouse(overrides(`${lo + 10}-${lo + 19}`), [{ name: 'alice', password: PASSWORD }]);
    for (const k of Object.keys(front) as Array<keyof typeof front>) front[k] = await freePort();
    const two = (svc: 'smtp' | 'ftp' | 'nntp', name = 'plain') => [
      { name: 'a', host: '127.0.0.1', port: a.port(svc, name) },
      { name: 'b', host: '127.0.0.1', port: b.port(svc, name) },
    ];
    hap = await startHaproxy([
      { name: 'smtp', bind: `${BALANCER}:${front.smtp}`, servers: two('smtp'), check: ['option smtpchk HELO haproxy.test'] },
      { name: 'smtps', bind: `${BALANCER}:${front.smtps}`, servers: two('smtp', 'implicit_tls'), check: [] },
      { name: 'ftp', bind: `${BALANCER}:${front.ftp}`, servers: two('ftp'), check: ['option tcp-check', 'tcp-check expect string 220'] },
      { name: 'ftp_data_a', bind: `${BALANCER}:${lo}-${lo + 9}`, servers: [{ name: 'a', host: '127.0.0.1', port: null }] },
      { name: 'ftp_data_b', bind: `${BALANCER}:${lo + 10}-${lo + 19}`, servers: [{ name: 'b', host: '127.0.0.1', port: null }] },
      { name: 'nntp', bind: `${BALANCER}:${front.nntp}`, servers: two('nntp'), check: ['option tcp-check', 'tcp-check expect rstring ^20[01]'] },
      { name: 'nntps', bind: `${BALANCER}:${front.nntps}`, servers: two('nntp', 'implicit_tls'), check: [] },
    ]);
    const up = await hap.waitUp(30_000);
    if (!up) throw new Error(`haproxy servers not UP: ${JSON.stringify((await hap.stat()).map((r) => [r.pxname, r.svname, r.status, r.check_status]))}\n${hap.log()}`);
  }, 90_000);

  afterAll(async () => {
    await hap?.stop();
    await a?.stop();
    await b?.stop();
    if (shared) fs.rmSync(shared, { recursive: true, force: true });
  }, 30_000);

  it('health checks (LOCAL headers) keep every server UP and write no decision line', async () => {
    const rows = (await hap.stat()).filter((r) => ['smtp', 'ftp', 'nntp'].includes(r.pxname!) && r.svname !== 'FRONTEND' && r.svname !== 'BACKEND');
    expect(rows.map((r) => [r.pxname, r.svname, r.status, r.check_status?.replace(/^\* /, '')])).toEqual(['smtp', 'ftp', 'nntp'].flatMap((p) => ['a', 'b'].map((s) => [p, s, 'UP', 'L7OK'])));
    // checks ran (inter 1s) but none became a decision: no record from the balancer's side of the link
    expect(all().filter((r) => r.ip === '127.0.0.1')).toEqual([]);
  });

  it('SMTP: the client address from the header is the client of every decision, the proxy logged beside it; both instances serve', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await Conn.open(BALANCER, front.smtp, CLIENT);
      expect(await c.reply()).toMatch(/^220 /);
      expect(await c.cmd('EHLO client.test')).toMatch(/^250 /);
      expect(await c.cmd('MAIL FROM:<someone@example.org>')).toMatch(/^250 /);
      // the balancer (127.0.0.1) is a trusted network; the client is not, so relaying is refused
      expect(await c.cmd('RCPT TO:<victim@example.net>')).toMatch(/^554 5\.7\.1/);
      await c.cmd('QUIT');
      c.close();
    }
    expect(await waitFor(() => all().filter((r) => r.service === 'smtp' && r.phase === 'rcpt').length >= 2)).toBe(true);
    for (const t of [a, b]) {
      const connect = t.decisions.find((r) => r.service === 'smtp' && r.phase === 'connect');
      expect(connect).toMatchObject({ ip: CLIENT, proxy: '127.0.0.1', verdict: 'allow' });
      expect(t.decisions.find((r) => r.service === 'smtp' && r.phase === 'proxy')).toMatchObject({ ip: CLIENT, proxy: '127.0.0.1', rule: 'proxy.accepted' });
    }
    const rcpts = all().filter((r) => r.phase === 'rcpt');
    expect(rcpts.every((r) => r.ip === CLIENT && r.proxy === '127.0.0.1' && r.rule === 'relay.default')).toBe(true);
  });

  it('SMTP: access.deny works on the real client address behind the balancer', async () => {
    const c = await Conn.open(BALANCER, front.smtp, DENIED);
    expect(await c.reply()).toMatch(/^554 /);
    c.close();
    expect(await waitFor(() => all().some((r) => r.ip === DENIED && r.phase === 'connect'))).toBe(true);
    expect(all().find((r) => r.ip === DENIED && r.phase === 'connect')).toMatchObject({ verdict: 'deny', rule: 'service.access.deny', proxy: '127.0.0.1' });
  });

  it('SMTPS and NNTPS: the header is read before the TLS handshake', async () => {
    const s = await Conn.open(BALANCER, front.smtps, CLIENT, true);
    expect(await s.reply()).toMatch(/^220 /);
    s.close();
    const n = await Conn.open(BALANCER, front.nntps, CLIENT, true);
    expect(await n.reply()).toMatch(/^20[01] /);
    n.close();
    expect(await waitFor(() => all().some((r) => r.service === 'nntp' && r.phase === 'connect' && r.ip === CLIENT))).toBe(true);
    expect(all().filter((r) => r.service === 'smtp' && r.phase === 'connect').every((r) => r.ip !== '127.0.0.1')).toBe(true);
  });

  it('NNTP plain through the balancer', async () => {
    const n = await Conn.open(BALANCER, front.nntp, CLIENT);
    expect(await n.reply()).toMatch(/^20[01] /);
    expect(await n.cmd('DATE')).toMatch(/^111 /);
    n.close();
  });

  it('a PROXY header sent straight to an instance from an address that is not listed is refused', async () => {
    const forged = buildProxyHeader(2, { ip: '127.0.0.1', port: 1 }, { ip: '127.0.0.1', port: 25 });
    // plain SMTP: greeted as a direct client, then the header is seen before the SMTP parser gets it
    const c = await Conn.open('127.0.0.1', a.port('smtp'), STRANGER, false, forged);
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.reply()).toMatch(/^554 5\.7\.0 PROXY/);
    expect(await c.waitClosed()).toBe(true);
    // SMTPS: looked at before the handshake; nothing in clear, the connection is closed
    const s = net.connect({ host: '127.0.0.1', port: a.port('smtp', 'implicit_tls'), localAddress: STRANGER });
    s.on('error', () => undefined);
    s.write(buildProxyHeader(1, { ip: '127.0.0.1', port: 1 }, { ip: '127.0.0.1', port: 25 }));
    await new Promise<void>((r) => s.once('close', () => r()));
    // FTP and NNTP alike
    const f = await Conn.open('127.0.0.1', a.port('ftp'), STRANGER, false, forged);
    expect(await f.reply()).toMatch(/^220 /);
    expect(await f.reply()).toMatch(/^421 PROXY/);
    const n = await Conn.open('127.0.0.1', a.port('nntp'), STRANGER, false, forged);
    expect(await n.reply()).toMatch(/^20[01] /);
    expect(await n.reply()).toMatch(/^502 PROXY/);
    expect(await waitFor(() => a.decisions.filter((r) => r.rule === 'proxy.unexpected').length >= 4)).toBe(true);
    const refused = a.decisions.filter((r) => r.rule === 'proxy.unexpected');
    expect(refused.every((r) => r.ip === STRANGER && r.verdict === 'deny')).toBe(true);
    expect(new Set(refused.map((r) => r.service))).toEqual(new Set(['smtp', 'ftp', 'nntp']));
    // a direct client without a header is still an ordinary client
    const d = await Conn.open('127.0.0.1', a.port('smtp'), STRANGER);
    expect(await d.reply()).toMatch(/^220 /);
    expect(await d.cmd('EHLO direct.test')).toMatch(/^250 /);
    d.close();
  });

  it('a listed peer speaking PROXY v1 (send-proxy) is believed too, TLVs of v2 are skipped', async () => {
    const v1 = await Conn.open('127.0.0.1', a.port('smtp'), '127.0.0.1', false, buildProxyHeader(1, { ip: '192.0.2.31', port: 5555 }, { ip: '127.0.0.1', port: 25 }));
    expect(await v1.reply()).toMatch(/^220 /);
    v1.close();
    const tlv = Buffer.from([0x05, 0x00, 0x04, 0x61, 0x62, 0x63, 0x64, 0x01, 0x00, 0x02, 0x68, 0x32]);
    const v2 = await Conn.open('127.0.0.1', a.port('nntp'), '127.0.0.1', false, buildProxyHeader(2, { ip: '2001:db8::7', port: 5555 }, { ip: '::1', port: 119 }, tlv));
    expect(await v2.reply()).toMatch(/^20[01] /);
    v2.close();
    expect(await waitFor(() => a.decisions.some((r) => r.service === 'nntp' && r.phase === 'connect' && r.ip === '2001:db8::7'))).toBe(true);
    expect(a.decisions.find((r) => r.service === 'smtp' && r.phase === 'connect' && r.ip === '192.0.2.31')).toMatchObject({ proxy: '127.0.0.1', verdict: 'allow' });
  });

  it('a listed proxy without a header, or with half a header, is refused', async () => {
    const c = await Conn.open('127.0.0.1', b.port('smtp'), '127.0.0.1', false, Buffer.from('EHLO sneaky.test\r\n'));
    expect(await c.reply()).toMatch(/^554 5\.7\.0 PROXY/);
    expect(await c.waitClosed()).toBe(true);
    const half = buildProxyHeader(2, { ip: '127.0.0.20', port: 1 }, { ip: '127.0.0.1', port: 25 }).subarray(0, 20);
    const t0 = Date.now();
    const h = await Conn.open('127.0.0.1', b.port('nntp'), '127.0.0.1', false, half);
    expect(await h.reply(8000)).toMatch(/^502 PROXY/);
    expect(await h.waitClosed()).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2500); // header_timeout_s: 3
    expect(await waitFor(() => b.decisions.some((r) => r.rule === 'proxy.timeout'))).toBe(true);
    expect(b.decisions.find((r) => r.rule === 'proxy.missing')).toMatchObject({ service: 'smtp', ip: '127.0.0.1', verdict: 'deny' });
    expect(b.decisions.find((r) => r.rule === 'proxy.timeout')).toMatchObject({ service: 'nntp', ip: '127.0.0.1', verdict: 'deny' });
  }, 20_000);

  it.skipIf(!has('lftp'))('FTPS upload and download through HAProxy in passive mode (lftp from 127.0.0.20)', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-lftp-'));
    try {
      const src = path.join(work, 'up.bin');
      const body = Buffer.alloc(300_000, 7);
      body.write('through the balancer');
      fs.writeFileSync(src, body);
      const base = `set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:passive-mode true; set net:socket-bind-ipv4 ${CLIENT}; set net:max-retries 1; set net:timeout 15`;
      const up = await run('lftp', ['-e', `${base}; put ${src} -o up.bin; get up.bin -o ${path.join(work, 'down1.bin')}; bye`, '-u', `alice,${PASSWORD}`, '-p', String(front.ftp), BALANCER], 60_000);
      expect(up.code, up.stderr).toBe(0);
      expect(fs.readFileSync(path.join(work, 'down1.bin')).equals(body)).toBe(true);
      expect(fs.readFileSync(path.join(shared, 'home', 'alice', 'up.bin')).equals(body)).toBe(true);
      // a second session may land on the other instance: the homes are shared
      const down = await run('lftp', ['-e', `${base}; get up.bin -o ${path.join(work, 'down2.bin')}; bye`, '-u', `alice,${PASSWORD}`, '-p', String(front.ftp), BALANCER], 60_000);
      expect(down.code, down.stderr).toBe(0);
      expect(fs.readFileSync(path.join(work, 'down2.bin')).equals(body)).toBe(true);
      const ftp = all().filter((r) => r.service === 'ftp');
      expect(ftp.some((r) => r.phase === 'authenticate' && r.verdict === 'allow' && r.ip === CLIENT && r.proxy === '127.0.0.1')).toBe(true);
      expect(ftp.filter((r) => r.rule === 'ftp.pasv_foreign' || r.phase === 'data_proxy')).toEqual([]);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 90_000);

  it('FTP data: a connection through the balancer from another address is not taken as the client\'s', async () => {
    const script = [
      'import ftplib, socket, ssl, sys',
      'host, port, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3]',
      `f = ftplib.FTP_TLS(context=ssl._create_unverified_context(), source_address=('${CLIENT}', 0), timeout=15)`,
      'f.connect(host, port); f.login("alice", pw); f.prot_p()',
      'r = f.sendcmd("EPSV"); p = int(r.split("|")[3])',
      `s = socket.create_connection((host, p), source_address=('${STRANGER}', 0), timeout=10)`,
      'print("thief", repr(s.recv(10)))',
      'f.quit()',
    ].join('\n');
    const r = await run('python3', ['-c', script, BALANCER, String(front.ftp), PASSWORD], 40_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("thief b''");
    expect(await waitFor(() => all().some((d) => d.rule === 'ftp.pasv_foreign' && d.object === STRANGER))).toBe(true);
    expect(all().find((d) => d.rule === 'ftp.pasv_foreign')).toMatchObject({ ip: CLIENT, proxy: '127.0.0.1' });
  }, 60_000);
});
