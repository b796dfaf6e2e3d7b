/*
 * The audit probes: what an outside tester would try against the running listeners, from loopback,
 * with the untrusted source address 127.0.0.20. Each probe returns PASS (the gateway refused), FAIL (it
 * let the trick through) or SKIP (cannot be tried from outside with what the audit has), what was tried,
 * what the server answered, and the rule that held (from the decision log). Probes leave nothing behind:
 * relay probes stop at RCPT and RSET (no DATA, nothing queued), an upload probe deletes its file.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { parseListen, type Config } from '../../config/load.js';
import { lintConfig } from '../../config/lint.js';
import type { Service } from '../../policy/index.js';
import { LEGACY_TLS, LineClient } from './client.js';
import { DecisionTail, ruleOf } from './decision-log.js';
import { directoryFromConfig } from '../../identity/directory.js';
import { silentLog } from '../../net/log.js';

export type Status = 'PASS' | 'FAIL' | 'SKIP';

export interface ProbeResult {
  readonly id: string;
  readonly service: Service | 'config';
  readonly status: Status;
  readonly tried: string;
  readonly answer: string;
  readonly rule: string;
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface AuditTargets {
  readonly smtp?: { plain: Endpoint | null; implicit: Endpoint | null };
  readonly ftp?: { plain: Endpoint | null };
  readonly nntp?: { plain: Endpoint | null; implicit: Endpoint | null };
}

export interface AuditOptions {
  readonly config: Config;
  readonly targets: AuditTargets;
  /** source address of the "outside" client (default 127.0.0.20) */
  readonly untrusted?: string;
  /** source address of the TLS probes, which must get past connect access rules (default 127.0.0.1) */
  readonly tlsSource?: string;
  /** a test user for the FTP jail probes (traversal, PORT, symlink), or null */
  readonly ftpUser?: { readonly name: string; readonly password: string } | null;
  readonly timeoutMs?: number;
}

interface Outcome {
  readonly status: Status;
  readonly answer: string;
}

const PROBE_SENDER = 'gatehouse-audit@example.org';
const first = (r: { code: number; lines: string[] }) => (r.lines[0] ?? '').slice(0, 200);
const pass = (answer: string): Outcome => ({ status: 'PASS', answer });
const fail = (answer: string): Outcome => ({ status: 'FAIL', answer });
const skip = (answer: string): Outcome => ({ status: 'SKIP', answer });

/** Where to probe, from the config: a wildcard address is probed on loopback; port 0 cannot be probed. */
export function targetsFromConfig(c: Config): AuditTargets {
  const ep = (listen: string | null): Endpoint | null => {
    if (listen === null) return null;
    const { host, port } = parseListen(listen);
    if (port === 0) return null;
    return { host: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host, port };
  };
  return {
    smtp: c.smtp.enabled ? { plain: ep(c.smtp.listen), implicit: ep(c.smtp.implicit_tls_listen) } : undefined,
    ftp: c.ftp.enabled ? { plain: ep(c.ftp.listen) } : undefined,
    nntp: c.nntp.enabled ? { plain: ep(c.nntp.listen), implicit: ep(c.nntp.implicit_tls_listen) } : undefined,
  };
}

type Kind = 'smtp' | 'ftp' | 'nntp' | 'implicit';

async function greet(c: LineClient, kind: Kind): Promise<{ ok: boolean; answer: string }> {
  const g = await c.reply();
  const ok = kind === 'nntp' ? g.code === 200 || g.code === 201 : g.code === 220;
  return { ok, answer: first(g) };
}

/** Connect, greet and (for plain listeners) ask for TLS; resolves with the negotiated protocol. */
async function negotiate(kind: Kind, ep: Endpoint, src: string, timeoutMs: number, options: tls.ConnectionOptions = {}): Promise<{ protocol: string | null; answer: string }> {
  let c: LineClient | null = null;
  try {
    if (kind === 'implicit') {
      c = await LineClient.connect({ ...ep, localAddress: src, implicitTls: true, tls: options, timeoutMs });
      return { protocol: c.tlsSocket?.getProtocol() ?? null, answer: 'TLS handshake on connect' };
    }
    c = await LineClient.connect({ ...ep, localAddress: src, timeoutMs });
    const g = await greet(c, kind);
    if (!g.ok) return { protocol: null, answer: `greeting: ${g.answer}` };
    if (kind === 'smtp') {
      const ehlo = await c.command('EHLO audit.gatehouse.invalid');
      if (!ehlo.lines.some((l) => /^250[ -]STARTTLS\b/i.test(l))) return { protocol: null, answer: 'STARTTLS not offered after EHLO' };
      const r = await c.command('STARTTLS');
      if (r.code !== 220) return { protocol: null, answer: `STARTTLS: ${first(r)}` };
    } else if (kind === 'ftp') {
      const r = await c.command('AUTH TLS');
      if (r.code !== 234) return { protocol: null, answer: `AUTH TLS: ${first(r)}` };
    } else {
      const caps = await c.command('CAPABILITIES');
      const list = caps.code === 101 ? await c.block() : [];
      if (!list.some((l) => /^STARTTLS$/i.test(l))) return { protocol: null, answer: 'STARTTLS not in CAPABILITIES' };
      const r = await c.command('STARTTLS');
      if (r.code !== 382) return { protocol: null, answer: `STARTTLS: ${first(r)}` };
    }
    const s = await c.startTls(options);
    return { protocol: s.getProtocol(), answer: 'upgraded' };
  } catch (err) {
    return { protocol: null, answer: `TLS failed: ${err instanceof Error ? err.message.split('\n')[0]! : String(err)}` };
  } finally {
    c?.close();
  }
}

async function tlsProbe(kind: Kind, ep: Endpoint, src: string, timeoutMs: number): Promise<Outcome> {
  const modern = await negotiate(kind, ep, src, timeoutMs);
  if (modern.protocol === null) return fail(modern.answer);
  if (modern.protocol !== 'TLSv1.2' && modern.protocol !== 'TLSv1.3') return fail(`negotiated ${modern.protocol}`);
  const legacy = await negotiate(kind, ep, src, timeoutMs, LEGACY_TLS);
  if (legacy.protocol !== null) return fail(`negotiated ${modern.protocol}, but a TLS 1.1 client was accepted (${legacy.protocol})`);
  return pass(`negotiated ${modern.protocol}; a TLS 1.0/1.1-only client was refused`);
}

async function withClient<T>(ep: Endpoint, src: string, timeoutMs: number, fn: (c: LineClient) => Promise<T>): Promise<T> {
  const c = await LineClient.connect({ ...ep, localAddress: src, timeoutMs });
  try {
    return await fn(c);
  } finally {
    c.send('QUIT');
    c.close();
  }
}

async function smtpRelay(ep: Endpoint, src: string, timeoutMs: number, rcpt: string): Promise<Outcome> {
  return withClient(ep, src, timeoutMs, async (c) => {
    const g = await greet(c, 'smtp');
    if (!g.ok) return pass(`refused at connect: ${g.answer}`);
    await c.command('EHLO audit.gatehouse.invalid');
    const mail = await c.command(`MAIL FROM:<${PROBE_SENDER}>`);
    if (mail.code < 200 || mail.code >= 300) return pass(`MAIL FROM refused: ${first(mail)}`);
    const r = await c.command(`RCPT TO:<${rcpt}>`);
    await c.command('RSET');
    return r.code >= 200 && r.code < 300 ? fail(`${first(r)} (would relay; nothing was sent)`) : pass(first(r));
  });
}

async function smtpAuthPlain(ep: Endpoint, src: string, timeoutMs: number): Promise<Outcome> {
  return withClient(ep, src, timeoutMs, async (c) => {
    const g = await greet(c, 'smtp');
    if (!g.ok) return pass(`refused at connect: ${g.answer}`);
    const ehlo = await c.command('EHLO audit.gatehouse.invalid');
    const offered = ehlo.lines.some((l) => /^250[ -]AUTH\b/i.test(l));
    const token = Buffer.from('\u0000gatehouse-audit\u0000not-a-password-audit').toString('base64');
    const r = await c.command(`AUTH PLAIN ${token}`);
    if (r.code === 535 || r.code === 235) return fail(`${offered ? 'AUTH offered before STARTTLS; ' : ''}credentials checked over plain text: ${first(r)}`);
    if (offered) return fail(`AUTH offered before STARTTLS (${first(r)})`);
    return pass(`AUTH not offered before STARTTLS; AUTH PLAIN → ${first(r)}`);
  });
}

interface FtpLogin {
  readonly client: LineClient;
  readonly secure: boolean;
}

async function ftpAnonymousLogin(ep: Endpoint, src: string, timeoutMs: number): Promise<{ login: FtpLogin | null; answer: string }> {
  const c = await LineClient.connect({ ...ep, localAddress: src, timeoutMs });
  const g = await greet(c, 'ftp');
  if (!g.ok) {
    c.close();
    return { login: null, answer: `refused at connect: ${g.answer}` };
  }
  // Gatehouse takes anonymous logins over plain text when they are enabled (the password is an address),
  // so a 530 here means "off"; going on over TLS would only count a login failure against the probe.
  const secure = false;
  const u = await c.command('USER anonymous');
  if (u.code !== 331 && u.code !== 230) {
    c.close();
    return { login: null, answer: `USER anonymous → ${first(u)}` };
  }
  const p = u.code === 230 ? u : await c.command(`PASS ${PROBE_SENDER}`);
  if (p.code !== 230) {
    c.close();
    return { login: null, answer: `PASS → ${first(p)}` };
  }
  return { login: { client: c, secure }, answer: `anonymous login accepted${secure ? ' (over TLS)' : ' over plain text'}: ${first(p)}` };
}

/** STOR a small file over PASV; returns the final reply (226 = stored). */
async function ftpStore(l: FtpLogin, ep: Endpoint, src: string, name: string): Promise<{ code: number; text: string }> {
  const c = l.client;
  if (l.secure) {
    await c.command('PBSZ 0');
    await c.command('PROT P');
  }
  const pasv = await c.command('PASV');
  const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(pasv.lines.join(' '));
  if (pasv.code !== 227 || !m) return { code: pasv.code, text: `PASV → ${first(pasv)}` };
  const port = Number(m[5]) * 256 + Number(m[6]);
  const raw = await new Promise<net.Socket>((resolve, reject) => {
    // from the control connection's own address: the listener refuses data connections from anyone else
    const s = net.connect({ host: ep.host, port, localAddress: net.isIPv4(ep.host) ? src : undefined }, () => resolve(s));
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy());
  });
  raw.on('error', () => {});
  c.send(`STOR ${name}`);
  const start = await c.reply();
  if (start.code !== 150 && start.code !== 125) {
    raw.destroy();
    return { code: start.code, text: `STOR → ${first(start)}` };
  }
  const data: net.Socket = l.secure
    ? await new Promise<tls.TLSSocket>((resolve, reject) => {
        // resume the control connection's TLS session, as real clients do (ftp.tls.require_session_reuse)
        const s = tls.connect({ socket: raw, rejectUnauthorized: false, session: c.tlsSocket?.getSession() }, () => resolve(s));
        s.once('error', reject);
      })
    : raw;
  data.on('error', () => {});
  await new Promise<void>((resolve) => data.end('gatehouse audit probe: safe to delete\r\n', () => resolve()));
  const done = await c.reply();
  return { code: done.code, text: `STOR → ${first(done)}` };
}

function removeUpload(config: Config, virtualPath: string): boolean {
  const rel = virtualPath.replace(/^\/+/, '');
  if (rel.includes('..')) return false;
  const abs = path.join(config.paths.ftpAnonRoot, rel);
  try {
    fs.rmSync(abs);
    return true;
  } catch {
    return false;
  }
}

async function ftpProbes(o: Required<AuditOptions>, ep: Endpoint, run: Runner): Promise<void> {
  const src = o.untrusted;
  const t = o.timeoutMs;
  await run('ftp.tls', 'ftp', `AUTH TLS on ${ep.host}:${ep.port}, then a TLS 1.1-only client`, o.tlsSource, () => tlsProbe('ftp', ep, o.tlsSource, t));
  await run('ftp.login_plaintext', 'ftp', 'USER gatehouse-audit over plain text (no password sent)', src, () =>
    withClient(ep, src, t, async (c) => {
      const g = await greet(c, 'ftp');
      if (!g.ok) return pass(`refused at connect: ${g.answer}`);
      const u = await c.command('USER gatehouse-audit');
      return u.code === 331 ? fail(`asks for a password over plain text: ${first(u)}`) : pass(first(u));
    }),
  );
  let login: FtpLogin | null = null;
  await run('ftp.anonymous', 'ftp', 'USER anonymous / PASS <address>', src, async () => {
    const r = await ftpAnonymousLogin(ep, src, t);
    login = r.login;
    return r.login ? fail(r.answer) : pass(r.answer);
  });
  const anon = login as FtpLogin | null;
  const user = o.ftpUser ? await ftpUserLogin(ep, src, t, o.ftpUser) : null;
  const session = user?.login ?? anon;
  const noLogin = `needs a login; anonymous FTP is off${user ? ` and ${user.answer}` : ' (give a test user: --ftp-user NAME --password-stdin)'}`;
  const noSession = (id: string, tried: string) => run(id, 'ftp', tried, src, () => Promise.resolve(skip(noLogin)));
  try {
    if (!session) {
      await noSession('ftp.traversal', 'CWD/SIZE outside the root');
      await noSession('ftp.port_foreign', 'PORT to a third-party address');
    } else {
      const c = session.client;
      const who = user?.login ? `as ${o.ftpUser!.name}` : 'as anonymous';
      await run('ftp.traversal', 'ftp', `CWD ../../../.., PWD, SIZE ../../../../etc/passwd, CWD /etc ${who}`, src, async () => {
        await c.command('CWD ../../../..');
        const pwd = await c.command('PWD');
        const size = await c.command('SIZE ../../../../../../etc/passwd');
        const cwd = await c.command('CWD /etc');
        await c.command('CWD /');
        const root = /"\/"/.test(first(pwd));
        const answer = `PWD → ${first(pwd)}; SIZE → ${first(size)}; CWD /etc → ${first(cwd)}`;
        return root && size.code !== 213 && cwd.code !== 250 ? pass(answer) : fail(answer);
      });
      await run('ftp.port_foreign', 'ftp', `PORT 192,0,2,1,4,1 (a third-party address: FTP bounce) ${who}`, src, async () => {
        const r = await c.command('PORT 192,0,2,1,4,1');
        return r.code >= 200 && r.code < 300 ? fail(first(r)) : pass(first(r));
      });
    }
    if (!anon) await run('ftp.anonymous_write', 'ftp', 'STOR as anonymous', src, () => Promise.resolve(pass('anonymous login refused (see ftp.anonymous), so no anonymous uploads')));
    else {
      const c = anon.client;
      const name = `gatehouse-audit-${crypto.randomBytes(4).toString('hex')}.txt`;
      await run('ftp.anonymous_write', 'ftp', `STOR ${name} and /incoming/${name} as anonymous`, src, async () => {
        for (const target of [`/${name}`, `/incoming/${name}`]) {
          const r = await ftpStore(anon, ep, src, target);
          if (r.code === 226 || r.code === 250) {
            const dele = await c.command(`DELE ${target}`);
            const removed = dele.code === 250 || removeUpload(o.config, target);
            return fail(`${target}: ${r.text} (anonymous upload accepted; probe file ${removed ? 'removed' : 'could NOT be removed'})`);
          }
          if (r.code === 0) return skip(`${target}: ${r.text}`);
        }
        return pass('anonymous uploads refused');
      });
    }
    const u = user?.login;
    if (!u) {
      await run('ftp.symlink', 'ftp', 'follow a symlink planted in a test user home out of the jail', src, () => Promise.resolve(skip(user ? user.answer : 'needs a test user: --ftp-user NAME --password-stdin')));
    } else {
      const name = o.ftpUser!.name;
      const link = `.gatehouse-audit-${crypto.randomBytes(4).toString('hex')}`;
      await run('ftp.symlink', 'ftp', `symlink ~${name}/${link} → /etc, then CWD ${link}, SIZE ${link}/passwd`, src, async () => {
        const abs = path.join(o.config.paths.ftpHomes, name, link);
        try {
          fs.symlinkSync('/etc', abs);
        } catch (err) {
          return skip(`cannot plant the symlink in ${path.dirname(abs)} (${(err as NodeJS.ErrnoException).code ?? String(err)}); run the audit as the gateway's user`);
        }
        try {
          const cwd = await u.client.command(`CWD ${link}`);
          const size = await u.client.command(`SIZE ${link}/passwd`);
          await u.client.command('CWD /');
          const answer = `CWD → ${first(cwd)}; SIZE → ${first(size)} (symlink removed)`;
          return cwd.code === 250 || size.code === 213 ? fail(answer) : pass(answer);
        } finally {
          fs.rmSync(abs, { force: true });
        }
      });
    }
  } finally {
    for (const l of [anon, user?.login ?? null]) {
      l?.client.send('QUIT');
      l?.client.close();
    }
  }
}

/** Log in as a test user over explicit FTPS. */
async function ftpUserLogin(ep: Endpoint, src: string, timeoutMs: number, u: { name: string; password: string }): Promise<{ login: FtpLogin | null; answer: string }> {
  const c = await LineClient.connect({ ...ep, localAddress: src, timeoutMs });
  const fail = (answer: string) => {
    c.close();
    return { login: null, answer };
  };
  const g = await greet(c, 'ftp');
  if (!g.ok) return fail(`refused at connect: ${g.answer}`);
  const a = await c.command('AUTH TLS');
  if (a.code !== 234) return fail(`AUTH TLS → ${first(a)}`);
  await c.startTls();
  const user = await c.command(`USER ${u.name}`);
  if (user.code !== 331) return fail(`USER ${u.name} → ${first(user)}`);
  const pw = await c.command(`PASS ${u.password}`);
  if (pw.code !== 230) return fail(`login as ${u.name} failed: ${first(pw)}`);
  return { login: { client: c, secure: true }, answer: `logged in as ${u.name}` };
}

async function nntpProbes(o: Required<AuditOptions>, ep: Endpoint, run: Runner): Promise<void> {
  const src = o.untrusted;
  const t = o.timeoutMs;
  await run('nntp.tls', 'nntp', `STARTTLS on ${ep.host}:${ep.port}, then a TLS 1.1-only client`, o.tlsSource, () => tlsProbe('nntp', ep, o.tlsSource, t));
  await run('nntp.auth_plaintext', 'nntp', 'AUTHINFO USER gatehouse-audit over plain text (no password sent)', src, () =>
    withClient(ep, src, t, async (c) => {
      const g = await greet(c, 'nntp');
      if (!g.ok) return pass(`refused at connect: ${g.answer}`);
      const r = await c.command('AUTHINFO USER gatehouse-audit');
      return r.code === 381 ? fail(`asks for a password over plain text: ${first(r)}`) : pass(first(r));
    }),
  );
  const hidden = o.config.nntp.groups.filter((g) => !g.read.includes('anonymous')).map((g) => g.name);
  await run('nntp.hidden_groups', 'nntp', `LIST ACTIVE and GROUP ${hidden[0] ?? '<none>'} before authentication`, src, async () => {
    if (hidden.length === 0) return skip('no restricted groups configured');
    return withClient(ep, src, t, async (c) => {
      const g = await greet(c, 'nntp');
      if (!g.ok) return pass(`refused at connect: ${g.answer}`);
      const list = await c.command('LIST ACTIVE');
      const names = list.code === 215 ? (await c.block()).map((l) => l.split(' ')[0]!) : [];
      const leaked = names.filter((n) => hidden.includes(n));
      const grp = await c.command(`GROUP ${hidden[0]!}`);
      const answer = `LIST ACTIVE → ${list.code === 215 ? `${names.length} group(s)` : first(list)}; GROUP ${hidden[0]!} → ${first(grp)}`;
      if (leaked.length > 0) return fail(`${answer}; restricted groups listed: ${leaked.join(', ')}`);
      return grp.code === 211 ? fail(answer) : pass(answer);
    });
  });
}

/**
 * The rule that held, read from the decision log. The server writes its log lines at the end of the loop turn
 * that answered (src/net/log.ts), so a reply can arrive a moment before its line: look again for up to 250 ms
 * (bounded) before settling for `-`.
 */
async function ruleAfter(tail: DecisionTail, mark: number, src: string | null, refused: boolean): Promise<string> {
  let rule = '-';
  for (let i = 0; i < 26 && rule === '-'; i++) {
    await new Promise((r) => (i === 0 ? setImmediate(r) : setTimeout(r, 10)));
    rule = ruleOf(tail.since(mark, src), refused);
  }
  return rule;
}

type Runner = (id: string, service: ProbeResult['service'], tried: string, src: string | null, fn: () => Promise<Outcome>) => Promise<void>;

export async function runAudit(options: AuditOptions): Promise<ProbeResult[]> {
  const o: Required<AuditOptions> = { untrusted: '127.0.0.20', tlsSource: '127.0.0.1', timeoutMs: 10_000, ftpUser: null, ...options };
  const tail = new DecisionTail(o.config.paths.logDir);
  const results: ProbeResult[] = [];
  const run: Runner = async (id, service, tried, src, fn) => {
    const mark = tail.mark();
    let out: Outcome;
    try {
      out = await fn();
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      out = fail(`probe could not talk to the listener: ${e.code ?? e.message}`);
    }
    const rule = out.status === 'SKIP' ? '-' : await ruleAfter(tail, mark, src, out.status === 'PASS');
    results.push({ id, service, status: out.status, tried, answer: out.answer, rule });
  };
  const src = o.untrusted;
  const t = o.timeoutMs;
  const unprobeable = (svc: Service, which: string) => run(`${svc}.listen`, svc, which, null, () => Promise.resolve(skip('listen port is 0 (chosen at start); cannot be probed from the config alone')));

  const smtp = o.targets.smtp;
  if (smtp) {
    const ep = smtp.plain;
    if (ep) {
      const local = o.config.smtp.local_domains[0] ?? o.config.hostname;
      const tricks: [string, string][] = [
        ['plain', 'audit-victim@example.net'],
        ['percent_hack', `audit-victim%example.net@${local}`],
        ['bang_path', `example.net!audit-victim@${local}`],
        ['source_route', `@${local}:audit-victim@example.net`],
        ['quoted_local', `"audit-victim@example.net"@${local}`],
        ['ip_literal', 'audit-victim@[192.0.2.1]'],
        ['trailing_dot', 'audit-victim@example.net.'],
      ];
      for (const [name, rcpt] of tricks) {
        await run(`smtp.relay.${name}`, 'smtp', `RCPT TO:<${rcpt}> from ${src}`, src, () => smtpRelay(ep, src, t, rcpt));
      }
      await run('smtp.auth_plaintext', 'smtp', 'EHLO, then AUTH PLAIN with a made-up user before STARTTLS', src, () => smtpAuthPlain(ep, src, t));
      await run('smtp.tls', 'smtp', `STARTTLS on ${ep.host}:${ep.port}, then a TLS 1.1-only client`, o.tlsSource, () => tlsProbe('smtp', ep, o.tlsSource, t));
    } else await unprobeable('smtp', 'smtp.listen');
    if (smtp.implicit) {
      const ep2 = smtp.implicit;
      await run('smtp.implicit_tls', 'smtp', `TLS on connect to ${ep2.host}:${ep2.port}, then a TLS 1.1-only client`, o.tlsSource, () => tlsProbe('implicit', ep2, o.tlsSource, t));
    }
  }
  const ftp = o.targets.ftp;
  if (ftp) {
    if (ftp.plain) await ftpProbes(o, ftp.plain, run);
    else await unprobeable('ftp', 'ftp.listen');
  }
  const nntp = o.targets.nntp;
  if (nntp) {
    if (nntp.plain) await nntpProbes(o, nntp.plain, run);
    else await unprobeable('nntp', 'nntp.listen');
    if (nntp.implicit) {
      const ep2 = nntp.implicit;
      await run('nntp.implicit_tls', 'nntp', `TLS on connect to ${ep2.host}:${ep2.port}, then a TLS 1.1-only client`, o.tlsSource, () => tlsProbe('implicit', ep2, o.tlsSource, t));
    }
  }
  const d = o.config.directory;
  if (d && o.config.identity.sources.includes('directory')) {
    await run('directory.bind_encrypted', 'config', `service bind to ${d.url}${d.starttls ? ' with StartTLS' : ''}`, null, async () => {
      if (d.url.startsWith('ldap://') && !d.starttls) return fail('directory binds are not encrypted (ldap:// without starttls, insecure_plaintext): passwords cross the network in clear');
      let src;
      try {
        src = directoryFromConfig(o.config, silentLog());
      } catch (err) {
        return fail(err instanceof Error ? err.message : String(err));
      }
      if (!src) return skip('no directory source');
      const r = await src.checkBind();
      return r.ok ? pass(r.detail) : fail(r.detail);
    });
  }
  const warnings = lintConfig(o.config);
  if (warnings.length === 0) results.push({ id: 'config.check', service: 'config', status: 'PASS', tried: 'gatehouse check (weak settings)', answer: 'no setting weaker than the defaults', rule: '-' });
  for (const w of warnings) results.push({ id: `config.${w.id}`, service: 'config', status: 'FAIL', tried: `gatehouse check: ${w.key}`, answer: w.risk, rule: '-' });
  return results;
}
