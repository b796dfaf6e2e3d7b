/*
 * Remote delivery with nodemailer's SMTP transport: to the configured smarthost (STARTTLS required /
 * implicit TLS / plain, optional AUTH with the password read from its file at each attempt and never
 * logged), or, without a smarthost, straight to each recipient domain's MX hosts (node's resolver; no MX →
 * the domain's A/AAAA; null MX → permanent failure). The stored bytes are sent as-is (`raw` + `envelope`).
 * Every recipient comes back with an outcome: delivered, temporary failure (4xx, connection/DNS trouble) or
 * permanent failure (5xx).
 */
import dnsPromises from 'node:dns/promises';
import fsp from 'node:fs/promises';
import net from 'node:net';
import type nodemailerModule from 'nodemailer';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Config } from '../config/load.js';
import { statusOf } from './bounce.js';

export interface Outcome {
  readonly address: string;
  readonly result: 'delivered' | 'temporary' | 'permanent';
  /** the server reply or error text (no secrets) */
  readonly detail: string;
  /** enhanced status code for failures */
  readonly status: string | null;
}

export interface MxResolver {
  resolveMx(domain: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(domain: string): Promise<string[]>;
  resolve6(domain: string): Promise<string[]>;
}

export interface DeliveryOptions {
  /** direct delivery port (25; tests point it at a loopback sink) */
  readonly mxPort?: number;
  readonly resolver?: MxResolver;
  readonly connectionTimeoutMs?: number;
  /** deliver to MX hosts on loopback/unspecified/link-local addresses (tests only: in production that is a mail loop) */
  readonly allowLoopbackMx?: boolean;
  readonly socketTimeoutMs?: number;
}

export interface RemoteJob {
  readonly config: Config;
  readonly sender: string;
  readonly recipients: readonly string[];
  /** the message bytes, sent as they are */
  readonly data: Buffer;
  /** registers a canceller so stop(grace) can abandon an attempt */
  readonly onTransport?: (close: () => void) => void;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  recipient?: string;
  command?: string;
  rejectedErrors?: SmtpError[];
}

function describe(err: SmtpError): string {
  return (err.response ?? `${err.code ?? 'error'}: ${err.message}`).replace(/[\r\n]+/g, ' ').slice(0, 500);
}

function failure(address: string, err: SmtpError): Outcome {
  const detail = describe(err);
  // our side's TLS or AUTH set-up failing is a configuration problem, not the recipient's: defer (as Postfix does)
  if (err.code === 'ETLS' || err.code === 'EAUTH' || /^(STARTTLS|AUTH)/i.test(err.command ?? '')) {
    return { address, result: 'temporary', detail: `${err.code ?? 'error'} (${err.command ?? 'connect'}): ${detail}`, status: err.code === 'EAUTH' ? '4.7.0' : '4.7.4' };
  }
  const permanent = typeof err.responseCode === 'number' && err.responseCode >= 500 && err.responseCode < 600;
  return { address, result: permanent ? 'permanent' : 'temporary', detail, status: statusOf(err.response ?? '', permanent) };
}

async function smarthostPassword(config: Config): Promise<string | null> {
  const file = config.paths.smarthostPasswordFile;
  if (!file) return null;
  const text = await fsp.readFile(file, 'utf8');
  return text.replace(/\r?\n$/, '');
}

type TransportOptions = Parameters<typeof nodemailerModule.createTransport>[0];

type Transport = ReturnType<typeof nodemailerModule.createTransport>;

interface Mailer {
  readonly nodemailer: typeof nodemailerModule;
  readonly SMTPConnection: typeof SMTPConnection;
}
let mailer: Promise<Mailer> | null = null;
/** nodemailer is loaded on the first delivery, not at start: a daemon that only receives never pays for it. */
function loadMailer(): Promise<Mailer> {
  mailer ??= Promise.all([import('nodemailer'), import('nodemailer/lib/smtp-connection')]).then(([n, c]) => ({ nodemailer: n.default, SMTPConnection: c.default }));
  return mailer;
}

interface SendInfo {
  accepted?: Array<string | { address: string }>;
  response?: string;
  rejectedErrors?: SmtpError[];
}

/** One pooled smarthost connection. */
interface PooledConnection {
  readonly conn: SMTPConnection;
  readonly generation: number;
  messages: number;
  dead: boolean;
  /** called once when the connection goes away (a RSET answer that never comes must not hang an attempt) */
  onDead: (() => void) | null;
  /** while idle in the pool: closes it (QUIT) after `smtp.relay.smarthost.idle_s` */
  idleTimer: NodeJS.Timeout | null;
}

/** Messages per smarthost connection before it is replaced (as nodemailer's pool `maxMessages`). */
const MESSAGES_PER_CONNECTION = 1000;

/**
 * Pooled connections to the smarthost (as Postfix's connection cache): smtp-server and most MTAs delay
 * the greeting, so a fresh connection per message would cap throughput. The stored bytes go straight to
 * nodemailer's SMTP connection (no Mailer / MIME compiler in between: it only re-read, re-wrapped and
 * re-streamed a message we already have as bytes, a fifth of the process's CPU under load). One connection
 * carries one transaction at a time; idle ones are reused, a new one is opened when none is idle (the queue
 * bounds how many attempts run at once), each is replaced after MESSAGES_PER_CONNECTION messages, one left
 * idle is closed with QUIT after `smtp.relay.smarthost.idle_s` (Postfix's smtp_connection_cache_time_limit,
 * 2 s: the smarthost's slots are not held by a quiet gateway), and all are dropped when the settings change.
 */
export class SmarthostPool {
  private key = '';
  private generation = 0;
  private idle: PooledConnection[] = [];
  private readonly open = new Set<PooledConnection>();
  /** how long a connection may sit idle before it is closed (ms); 0 closes it after each transaction */
  private idleMs = 2000;

  setIdle(ms: number): void {
    this.idleMs = Math.max(0, ms);
  }

  /** Connections open now, idle ones included (tests, status). */
  get size(): number {
    return this.open.size;
  }

  /** Send one transaction; a reused connection that turns out to be gone gets one retry on a fresh one. */
  async send(options: Record<string, unknown>, envelope: { from: string; to: string[] }, data: Buffer, onTransport?: (close: () => void) => void): Promise<SendInfo> {
    const key = JSON.stringify(options);
    if (key !== this.key) {
      this.close();
      this.key = key;
    }
    const reused = this.idle.pop();
    if (reused) this.stopIdle(reused);
    const pc = reused ?? (await this.connect(options, onTransport));
    try {
      return await this.transact(pc, envelope, data, onTransport);
    } catch (e) {
      const err = e as SmtpError;
      // the server closed a cached connection (idle timeout, restart): as nodemailer's pool, try a fresh one
      if (reused && (err.responseCode === 421 || err.code === 'ECONNECTION' || err.code === 'ESOCKET' || err.code === 'ETIMEDOUT')) {
        return this.transact(await this.connect(options, onTransport), envelope, data, onTransport);
      }
      throw err;
    }
  }

  private async connect(options: Record<string, unknown>, onTransport?: (close: () => void) => void): Promise<PooledConnection> {
    const conn = new (await loadMailer()).SMTPConnection(options);
    const pc: PooledConnection = { conn, generation: this.generation, messages: 0, dead: false, onDead: null, idleTimer: null };
    this.open.add(pc);
    const drop = () => this.drop(pc);
    conn.on('error', drop); // the failing call reports the error itself
    conn.once('end', drop);
    onTransport?.(() => conn.close());
    const auth = options.auth as { user: string; pass: string } | undefined;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: SmtpError) => {
        if (settled) return;
        settled = true;
        this.drop(pc);
        conn.close();
        reject(err);
      };
      const ready = () => {
        if (settled) return;
        settled = true;
        resolve(pc);
      };
      // nodemailer reports a failed connect, greeting, STARTTLS or EHLO through 'error' (or just 'end')
      conn.on('error', fail);
      conn.once('end', () => fail(Object.assign(new Error('Connection closed during set-up'), { code: 'ECONNECTION' })));
      conn.connect((err) => {
        if (err) return fail(err);
        if (!auth || !conn.allowsAuth) return ready();
        conn.login({ credentials: { user: auth.user, pass: auth.pass } }, (e) => (e ? fail(e) : ready()));
      });
    });
  }

  private transact(pc: PooledConnection, envelope: { from: string; to: string[] }, data: Buffer, onTransport?: (close: () => void) => void): Promise<SendInfo> {
    if (pc.dead) return Promise.reject(Object.assign(new Error('Connection closed'), { code: 'ECONNECTION' }));
    onTransport?.(() => pc.conn.close());
    return new Promise((resolve, reject) => {
      pc.conn.send(envelope, data, (err, info) => {
        pc.messages++;
        if (!err) {
          this.release(pc);
          return resolve(info);
        }
        const e = err as SmtpError;
        if ((e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && e.responseCode !== 421 && !pc.dead) {
          // refused transaction, healthy connection: reset it and keep it (before answering, so the next
          // attempt finds it idle)
          pc.onDead = () => reject(e);
          return pc.conn.reset((resetErr) => {
            pc.onDead = null;
            if (resetErr) this.discard(pc);
            else this.release(pc);
            reject(e);
          });
        }
        this.discard(pc);
        reject(e);
      });
    });
  }

  private release(pc: PooledConnection): void {
    if (pc.dead || pc.generation !== this.generation || pc.messages >= MESSAGES_PER_CONNECTION || this.idleMs <= 0) return this.discard(pc, true);
    this.idle.push(pc);
    pc.idleTimer = setTimeout(() => {
      pc.idleTimer = null;
      if (this.idle.includes(pc)) this.discard(pc, true);
    }, this.idleMs);
    pc.idleTimer.unref();
  }

  private stopIdle(pc: PooledConnection): void {
    if (pc.idleTimer) clearTimeout(pc.idleTimer);
    pc.idleTimer = null;
  }

  private discard(pc: PooledConnection, polite = false): void {
    this.drop(pc);
    if (polite) pc.conn.quit();
    else pc.conn.close();
  }

  private drop(pc: PooledConnection): void {
    pc.dead = true;
    this.stopIdle(pc);
    const onDead = pc.onDead;
    pc.onDead = null;
    onDead?.();
    this.open.delete(pc);
    const i = this.idle.indexOf(pc);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Close every connection (settings changed, or the queue stops). */
  close(): void {
    this.generation++;
    const all = [...this.open];
    this.idle = [];
    for (const pc of all) {
      this.drop(pc);
      pc.conn.close();
    }
  }
}

async function sendVia(options: Record<string, unknown>, job: RemoteJob, recipients: readonly string[], pool?: SmarthostPool): Promise<Outcome[]> {
  const transport: Transport | null = pool ? null : (await loadMailer()).nodemailer.createTransport(options as TransportOptions);
  if (transport) job.onTransport?.(() => transport.close());
  const envelope = { from: job.sender, to: [...recipients] };
  try {
    const info = pool ? await pool.send(options, envelope, job.data, job.onTransport) : ((await transport!.sendMail({ envelope, raw: job.data })) as unknown as SendInfo);
    const accepted = new Set((info.accepted ?? []).map((a) => (typeof a === 'string' ? a : a.address)));
    const rejected = new Map((info.rejectedErrors ?? []).map((e) => [e.recipient ?? '', e]));
    return recipients.map((r) => {
      const rej = rejected.get(r);
      if (rej) return failure(r, rej);
      if (accepted.has(r)) return { address: r, result: 'delivered' as const, detail: (info.response ?? '250 ok').slice(0, 500), status: null };
      return { address: r, result: 'temporary' as const, detail: 'recipient not confirmed by the server', status: '4.0.0' };
    });
  } catch (e) {
    const err = e as SmtpError;
    if (err.rejectedErrors && err.rejectedErrors.length > 0) {
      const rejected = new Map(err.rejectedErrors.map((x) => [x.recipient ?? '', x]));
      return recipients.map((r) => failure(r, rejected.get(r) ?? err));
    }
    return recipients.map((r) => failure(r, err));
  } finally {
    transport?.close();
  }
}

function baseOptions(config: Config, opts: DeliveryOptions): Record<string, unknown> {
  return {
    name: config.hostname,
    connectionTimeout: opts.connectionTimeoutMs ?? 30_000,
    greetingTimeout: opts.connectionTimeoutMs ?? 30_000,
    socketTimeout: opts.socketTimeoutMs ?? 120_000,
    logger: false,
    debug: false,
    disableUrlAccess: true,
  };
}

/** Deliver to the smarthost: one transaction for every recipient. */
export async function deliverSmarthost(job: RemoteJob, opts: DeliveryOptions = {}, pool?: SmarthostPool): Promise<Outcome[]> {
  const sh = job.config.smtp.relay.smarthost;
  if (!sh) throw new Error('no smarthost configured');
  let pass: string | null;
  try {
    pass = await smarthostPassword(job.config);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    return job.recipients.map((r) => ({ address: r, result: 'temporary' as const, detail: `cannot read smarthost password file (${code})`, status: '4.3.5' }));
  }
  const options: Record<string, unknown> = {
    ...baseOptions(job.config, opts),
    host: sh.host,
    port: sh.port,
    secure: sh.tls === 'implicit',
    requireTLS: sh.tls === 'starttls',
    ignoreTLS: sh.tls === 'none',
    tls: { rejectUnauthorized: sh.verify_cert, servername: sh.host },
  };
  if (sh.user && pass !== null) options.auth = { user: sh.user, pass };
  pool?.setIdle(sh.idle_s * 1000);
  return sendVia(options, job, job.recipients, pool);
}

type Hosts = { hosts: string[] } | { error: string; permanent: boolean; status: string };

/** MX hosts of a domain in preference order; no MX → the domain itself if it has A/AAAA. */
export async function mxHosts(domain: string, resolver: MxResolver = dnsPromises): Promise<Hosts> {
  try {
    const mx = await resolver.resolveMx(domain);
    if (mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.')) {
      return { error: `${domain} does not accept mail (null MX)`, permanent: true, status: '5.1.10' };
    }
    if (mx.length > 0) return { hosts: [...mx].sort((a, b) => a.priority - b.priority).map((m) => m.exchange) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND') return { error: `domain ${domain} not found`, permanent: true, status: '5.1.2' };
    if (code !== 'ENODATA') return { error: `DNS lookup of MX for ${domain} failed (${code ?? 'error'})`, permanent: false, status: '4.4.3' };
  }
  const addrs: string[] = [];
  let tempFail = false;
  for (const fn of [resolver.resolve4.bind(resolver), resolver.resolve6.bind(resolver)]) {
    try {
      addrs.push(...(await fn(domain)));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENODATA' && code !== 'ENOTFOUND') tempFail = true;
    }
  }
  if (addrs.length > 0) return { hosts: addrs };
  if (tempFail) return { error: `DNS lookup of ${domain} failed`, permanent: false, status: '4.4.3' };
  return { error: `${domain} has no MX and no address records`, permanent: true, status: '5.1.2' };
}

const LOCAL = new net.BlockList();
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('0.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addAddress('::', 'ipv6');
LOCAL.addSubnet('fe80::', 10, 'ipv6');

/** Loopback, unspecified or link-local: an MX there means the mail would loop back (or go somewhere odd). */
export function isLocalAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 0) return false;
  return LOCAL.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}

async function addressesOf(host: string, resolver: MxResolver): Promise<string[]> {
  if (net.isIP(host)) return [host];
  const out: string[] = [];
  for (const fn of [resolver.resolve4.bind(resolver), resolver.resolve6.bind(resolver)]) {
    try {
      out.push(...(await fn(host)));
    } catch {
      /* this family has no address */
    }
  }
  return out;
}

/** Deliver straight to the recipients' MX hosts, one transaction per domain. */
export async function deliverDirect(job: RemoteJob, opts: DeliveryOptions = {}): Promise<Outcome[]> {
  const resolver = opts.resolver ?? dnsPromises;
  const byDomain = new Map<string, string[]>();
  for (const r of job.recipients) {
    const domain = r.slice(r.lastIndexOf('@') + 1).toLowerCase();
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), r]);
  }
  const results: Outcome[] = [];
  for (const [domain, rcpts] of byDomain) {
    const found = await mxHosts(domain, resolver);
    if ('error' in found) {
      for (const r of rcpts) results.push({ address: r, result: found.permanent ? 'permanent' : 'temporary', detail: found.error, status: found.status });
      continue;
    }
    let outcome: Outcome[] | null = null;
    let local = 0;
    let tried = 0;
    hosts: for (const host of found.hosts.slice(0, 5)) {
      const all = await addressesOf(host, resolver);
      const usable = opts.allowLoopbackMx ? all : all.filter((ip) => !isLocalAddress(ip));
      local += all.length - usable.length;
      for (const ip of usable.slice(0, 2)) {
        tried++;
        const options = {
          ...baseOptions(job.config, opts),
          host: ip,
          port: opts.mxPort ?? 25,
          secure: false,
          // opportunistic STARTTLS, as Postfix's smtp_tls_security_level=may: encrypt when offered, no verification
          tls: { rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) },
        };
        outcome = await sendVia(options, job, rcpts);
        // a connection-level failure (no SMTP reply at all) → try the next address / MX
        const noReply = outcome.every((o) => o.result === 'temporary' && !/^\d{3}/.test(o.detail));
        if (!noReply) break hosts;
      }
    }
    if (tried === 0 && local > 0) {
      for (const r of rcpts) results.push({ address: r, result: 'permanent', detail: `mail for ${domain} loops back to myself (its MX is a local address)`, status: '5.4.6' });
      continue;
    }
    results.push(...(outcome ?? rcpts.map((r) => ({ address: r, result: 'temporary' as const, detail: `no MX host of ${domain} reachable`, status: '4.4.1' }))));
  }
  return results;
}
