/*
 * One FTP control session in front of ftp-srv's command table. It replaces ftp-srv's data handler with a
 * bounded line reader (line length, pipelined-line count, strict UTF-8, one command at a time, plaintext
 * lines pipelined behind AUTH TLS discarded) and handles itself every command whose ftp-srv version is
 * unsafe or lacks a policy hook: USER/PASS (TLS rule, policy core, delay, failure cap), PORT/EPRT/PASV/EPSV
 * (no bounce, no data theft), STOR/APPE/STOU (atomic, quota), SITE (refused), LIST/NLST/MLSD/MLST (own
 * formats, RFC 3659 facts), FEAT/HELP/OPTS/SYST (what this session really offers). The rest goes to ftp-srv,
 * whose file calls land in the JailFs.
 */
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { Config } from '../config/load.js';
import { metrics } from '../ops/metrics.js';
import type { AuditContext, Decision, Identity, Policy } from '../policy/index.js';
import { ANONYMOUS, NOBODY, identityLabel, isTemporaryAuthFailure } from '../policy/index.js';
import type { UploadNoticeSink } from '../runtime.js';
import { allow, deny } from '../policy/decision.js';
import { decideJail } from '../policy/paths.js';
import { jailSpecOf } from './jail-spec.js';
import { claimHome } from './home-owners.js';
import { switchPending } from './isolation.js';
import { decideLineDeadline, decideSessionBudget } from '../policy/limits.js';
import { decideControlInput, decideDataProtection, decideIsolationSwitch, decideProt, decideSite } from '../policy/ftp.js';
import { PassivePort, connectActive, createPassive, endedCleanly, parseEprt, parsePort, type DataConnector, type DataProxy } from './data-channel.js';
import { SlabFeed, attachFeed } from '../net/slab-feed.js';
import { FileSource } from './file-source.js';
import { FtpReplyError, JailFs, QuotaExceeded, type Upload } from './jail-fs.js';
import { MLST_DEFAULT, lsLine, mlstFeature, mlsxFacts, selectFacts, type MlstFact } from './listing.js';
import type { QuotaBook } from './quota.js';


export const MAX_LINE_BYTES = 2048;
const MAX_QUEUED_LINES = 64;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

export interface SessionDeps {
  readonly config: () => Config;
  readonly policy: () => Policy;
  readonly tlsContext: () => tls.SecureContext;
  /** the options tlsContext was made from: each session makes its own context from them at AUTH TLS */
  readonly tlsOptions: () => tls.SecureContextOptions;
  readonly quota: QuotaBook;
  /** upload notices (issue 18): journaled after the commit, before the 226 */
  readonly notices?: () => UploadNoticeSink | null;
  /** the PROXY protocol peer that relayed this client (logged beside its address), if any */
  readonly proxy?: string;
  /** PROXY headers on passive data connections from listed peers (ftp.proxy_protocol) */
  readonly dataProxy?: DataProxy;
}

interface Conn {
  commandSocket: net.Socket;
  secure: boolean;
  authenticated?: boolean;
  fs?: JailFs;
  connector: DataConnector;
  restByteCount: number | undefined;
  commands: { handle(cmd: unknown): Promise<unknown>; parse(line: string): { directive: string; arg: string | null; flags: string[]; raw: string } };
  reply(code: number | object, ...letters: unknown[]): Promise<unknown>;
  close(code?: number, message?: string): Promise<unknown>;
  /** ftp-srv's reply encoding (OPTS UTF8 switches it) */
  encoding?: BufferEncoding;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class FtpSession {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly queue: Buffer[] = [];
  private busy = false;
  private closed = false;
  private user: string | null = null;
  private anonymousUser = false;
  private failures = 0;
  private identity: Identity = NOBODY;
  private upload: Upload | null = null;
  private download: net.Socket | null = null;
  private epsvAll = false;
  private pbsz = false;
  private protP = false;
  private idleTimer: NodeJS.Timeout | null = null;
  /** runs while a command line is incomplete (ftp.limits.line_deadline_s): trickled bytes keep resetting the idle timer */
  private lineTimer: NodeJS.Timeout | null = null;
  /** the passive listener (a fresh port per PASV/EPSV unless the range is nearly used up) */
  private passivePort: PassivePort | null = null;
  /**
   * This session's own TLS context (made at AUTH TLS, same certificate and settings, its own session-ticket
   * keys): a data connection can resume only a TLS session this control connection (or one of its data
   * connections) was given, never another client's, so "resumed" proves it is this session's client.
   */
  private tlsCtx: tls.SecureContext | null = null;
  /** the facts MLST/MLSD show (OPTS MLST) */
  private mlstFacts: MlstFact[] = [...MLST_DEFAULT];

  constructor(
    private readonly conn: Conn,
    private readonly ip: string,
    private readonly session: string,
    private readonly deps: SessionDeps,
  ) {
    const socket = conn.commandSocket;
    socket.removeAllListeners('data');
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.once('close', () => {
      this.closed = true;
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.lineDone();
      this.upload?.destroy(new Error('control connection closed'));
      this.passivePort?.close();
    });
    // the client's FIN on the control connection comes before 'close': an upload still open is abandoned then,
    // not committed because the data connection's end happened to be read first
    socket.once('end', () => this.upload?.destroy(new Error('control connection closed')));
    this.touch();
  }

  /** Idle timeout between commands; a transfer in progress keeps the session (data sockets time out themselves). */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.deps.config().ftp.limits.idle_timeout_s * 1000;
    this.idleTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.busy) {
        this.touch();
        return;
      }
      this.record('idle', deny('limits.idle_timeout', `no command for ${ms / 1000} s`));
      this.shut(421, 'Timeout: closing control connection');
    }, ms);
    this.idleTimer.unref();
  }

  /** A command line has begun and is not complete: it must be within ftp.limits.line_deadline_s. */
  private lineStarted(): void {
    if (this.lineTimer) return;
    const since = Date.now();
    const limitS = this.deps.config().ftp.limits.line_deadline_s;
    this.lineTimer = setTimeout(() => {
      this.lineTimer = null;
      if (this.closed) return;
      const d = decideLineDeadline(since, Date.now(), limitS);
      if (!d.allow) {
        this.record('line', d);
        this.shut(421, 'Command line not completed in time: closing control connection');
      }
    }, limitS * 1000 + 10); // a little past the deadline, so the decision sees it passed
    this.lineTimer.unref();
  }

  private lineDone(): void {
    if (this.lineTimer) clearTimeout(this.lineTimer);
    this.lineTimer = null;
  }

  /**
   * One single-line reply, as ftp-srv's connection.reply writes it (`<code> <text>` CRLF, the connection's
   * encoding, resolved once written, never rejected), without its per-reply bluebird map/series chain and
   * getsockname call: three of these per transfer.
   */
  private reply(code: number, message: string): Promise<void> {
    const socket = this.conn.commandSocket;
    if (!socket.writable) return Promise.resolve();
    return new Promise<void>((resolve) => {
      socket.write(`${code} ${message}\r\n`, this.conn.encoding ?? 'utf8', () => resolve());
    });
  }

  /** A multi-line reply (RFC 959 §4.2): `code-first`, the lines (each starting with a space), `code last`. */
  private replyLines(code: number, first: string, lines: readonly string[], last: string): Promise<void> {
    const socket = this.conn.commandSocket;
    if (!socket.writable) return Promise.resolve();
    const text = `${code}-${first}\r\n${lines.map((l) => `${l}\r\n`).join('')}${code} ${last}\r\n`;
    return new Promise<void>((resolve) => {
      socket.write(text, this.conn.encoding ?? 'utf8', () => resolve());
    });
  }

  private get ctx(): AuditContext {
    const ctx: AuditContext = { service: 'ftp', ip: this.ip, identity: this.identity, session: this.session };
    return this.deps.proxy === undefined ? ctx : { ...ctx, proxy: this.deps.proxy };
  }

  private record(phase: string, decision: Decision, object?: string): Decision {
    return this.deps.policy().record(this.ctx, phase, decision, object);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.touch();
    let start = 0;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, start)) {
      this.chunks.push(chunk.subarray(start, i));
      const line = Buffer.concat(this.chunks);
      // ABOR (possibly behind Telnet IP/Synch) must reach a running upload now, not after it.
      if ((this.upload || this.download) && /^(?:\xff[\xf2\xf4])*\s*ABOR\s*$/i.test(line.toString('latin1'))) {
        this.upload?.destroy(new Error('aborted by ABOR'));
        this.download?.destroy();
      }
      this.queue.push(line);
      this.chunks = [];
      this.buffered = 0;
      start = i + 1;
    }
    if (start < chunk.length) {
      this.chunks.push(chunk.subarray(start));
      this.buffered += chunk.length - start;
      if (start > 0) this.lineDone(); // a line ended in this chunk and a new one began: its own deadline
      this.lineStarted();
    } else {
      this.lineDone();
    }
    const input = decideControlInput({ longestLine: this.queue.reduce((m, l) => Math.max(m, l.length), this.buffered), maxLine: MAX_LINE_BYTES, queued: this.queue.length, maxQueued: MAX_QUEUED_LINES });
    if (!input.allow) {
      this.record('command', input);
      if (input.rule === 'ftp.pipelining') this.shut(421, 'Too many commands');
      else this.shut(500, 'Command line too long');
      return;
    }
    void this.pump();
  }

  private shut(code: number, message: string): void {
    this.closed = true;
    this.queue.length = 0;
    this.chunks = [];
    this.conn.close(code, message).catch(() => this.conn.commandSocket.destroy());
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const raw = this.queue.shift()!;
        const wasSecure = this.conn.secure;
        try {
          await this.handle(raw);
        } catch (err) {
          this.deps.policy().record(this.ctx, 'command', deny('ftp.error', err instanceof Error ? err.message : String(err)));
          await this.reply(451, 'Local error').catch(() => undefined);
        }
        if (!wasSecure && this.conn.secure) {
          // STARTTLS-injection class: anything sent in plaintext behind AUTH TLS is dropped, not executed.
          this.queue.length = 0;
          this.chunks = [];
          this.buffered = 0;
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private async handle(input: Buffer): Promise<void> {
    // Telnet IP/Synch (IAC IP, IAC DM) that clients put before ABOR are not part of the command.
    let skip = 0;
    while (skip + 1 < input.length && input[skip] === 0xff && input[skip + 1]! >= 0xf0 && input[skip + 1]! <= 0xfe) skip += 2;
    const raw = input.subarray(skip);
    let line: string;
    try {
      line = UTF8.decode(raw[raw.length - 1] === 13 ? raw.subarray(0, -1) : raw);
    } catch {
      this.record('command', deny('ftp.utf8', 'command is not valid UTF-8'));
      await this.reply(501, 'Command is not valid UTF-8');
      return;
    }
    if (line.trim() === '') return;
    const sp = line.indexOf(' ');
    const directive = (sp === -1 ? line : line.slice(0, sp)).trim().toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1);
    if (!/^[A-Z]{3,4}$/.test(directive)) {
      await this.reply(500, 'Syntax error, command unrecognized');
      return;
    }
    // SYST is not among these: vsftpd answers it only after login (530 before), and so does Gatehouse.
    const needsLogin = !['USER', 'PASS', 'AUTH', 'PBSZ', 'PROT', 'FEAT', 'NOOP', 'QUIT', 'HELP', 'OPTS', 'TYPE', 'STAT', 'ACCT'].includes(directive);
    if (needsLogin && !this.conn.authenticated) {
      await this.reply(530, 'Please login with USER and PASS');
      return;
    }
    switch (directive) {
      case 'USER':
        return this.onUser(arg.trim());
      case 'PASS':
        return this.onPass(arg);
      case 'AUTH':
        return this.onAuth(arg.trim().toUpperCase());
      case 'PBSZ':
      case 'PROT':
        return this.onProtection(directive, arg.trim().toUpperCase());
      case 'ACCT':
        await this.reply(502, 'ACCT not implemented');
        return;
      case 'FEAT':
        return this.onFeat();
      case 'HELP':
        return this.onHelp(arg.trim().toUpperCase());
      case 'OPTS':
        return this.onOpts(arg.trim());
      case 'SYST':
        await this.reply(215, 'UNIX Type: L8');
        return;
      case 'MLST':
        return this.onMlst(arg);
      case 'SITE':
        this.record('site', decideSite(), arg.slice(0, 64));
        await this.reply(502, 'SITE commands are not supported');
        return;
      case 'LIST':
      case 'NLST':
      case 'MLSD':
      case 'RETR':
      case 'STOR':
      case 'APPE':
      case 'STOU':
        if (!(await this.dataAllowed())) return;
        break;
    }
    switch (directive) {
      case 'PORT':
      case 'EPRT':
        return this.onActive(directive, arg);
      case 'PASV':
      case 'EPSV':
        return this.onPassive(directive, arg);
      case 'STOR':
      case 'APPE':
        return this.onStore(directive === 'APPE' ? 'appe' : 'stor', arg);
      case 'STOU':
        return this.onStore('stou', arg);
      case 'LIST':
      case 'NLST': {
        const cleaned = arg.replace(/^(\s*-[A-Za-z]+)+\s*/, '');
        return this.onList(directive, cleaned === '' ? '.' : cleaned);
      }
      case 'MLSD':
        return this.onMlsd(arg === '' ? '.' : arg);
      case 'RETR':
        return this.onRetr(arg);
      case 'STAT':
        if (arg !== '' && !(await this.precheck(arg, 'stat', false))) return;
        return this.delegate(line, { directive, arg: arg === '' ? null : arg, flags: [], raw: line });
      default:
        return this.delegate(line, { ...this.conn.commands.parse(line), arg: arg === '' ? null : arg });
    }
  }

  /** Refuse early with 550 (ftp-srv would answer 451/551/450 after waiting for the data connection). */
  private async precheck(arg: string, action: 'stat' | 'read', data: boolean): Promise<boolean> {
    const jfs = this.conn.fs;
    if (!jfs) return false;
    try {
      jfs.resolve(arg, action, 'existing');
      return true;
    } catch (err) {
      await this.replyError(err, 550);
      if (data) this.conn.connector.end();
      return false;
    }
  }

  private async delegate(_line: string, command: unknown): Promise<void> {
    await this.conn.commands.handle(command);
  }

  /** RFC 2389 FEAT: only what this listener really does (RFC 3659: REST STREAM, MLST facts; UTF8, RFC 2640). */
  private async onFeat(): Promise<void> {
    const cfg = this.deps.config().ftp;
    const features = ['AUTH TLS', 'EPSV', ...(cfg.active_mode ? ['EPRT'] : []), 'MDTM', mlstFeature(), 'PBSZ', 'PROT', 'REST STREAM', 'SIZE', 'UTF8'];
    await this.replyLines(211, 'Features:', features.sort().map((f) => ` ${f}`), 'End');
  }

  /** The commands this session may use now (PORT/EPRT only with active mode and before EPSV ALL; never SITE). */
  private helpCommands(): string[] {
    const cfg = this.deps.config().ftp;
    const commands = ['ABOR', 'ALLO', 'APPE', 'AUTH', 'CDUP', 'CWD', 'DELE', 'EPSV', 'FEAT', 'HELP', 'LIST', 'MDTM', 'MKD', 'MLSD', 'MLST', 'MODE', 'NLST', 'NOOP', 'OPTS', 'PASS', 'PASV', 'PBSZ', 'PROT', 'PWD', 'QUIT', 'REST', 'RETR', 'RMD', 'RNFR', 'RNTO', 'SIZE', 'STAT', 'STOR', 'STOU', 'STRU', 'SYST', 'TYPE', 'USER'];
    if (cfg.active_mode && !this.epsvAll) commands.push('EPRT', 'PORT');
    return commands.sort();
  }

  private async onHelp(topic: string): Promise<void> {
    const commands = this.helpCommands();
    if (topic !== '') {
      if (commands.includes(topic)) await this.reply(214, `${topic} is available; see RFC 959, 2228, 2389, 2428, 3659`);
      else await this.reply(502, `Unknown command ${topic.replace(/[^A-Z]/g, '').slice(0, 8)}`);
      return;
    }
    const lines: string[] = [];
    for (let i = 0; i < commands.length; i += 8) lines.push(` ${commands.slice(i, i + 8).join(' ')}`);
    await this.replyLines(214, 'The following commands are recognized.', lines, 'Help OK.');
  }

  /** OPTS UTF8 ON (before login too: lftp sends it first; names are always UTF-8 here) and OPTS MLST (§7.9). */
  private async onOpts(arg: string): Promise<void> {
    const sp = arg.indexOf(' ');
    const option = (sp === -1 ? arg : arg.slice(0, sp)).toUpperCase();
    const value = sp === -1 ? '' : arg.slice(sp + 1).trim();
    if (option === 'UTF8' || option === 'UTF-8') {
      if (value.toUpperCase() === 'ON' || value === '') await this.reply(200, 'Always in UTF8 mode');
      else await this.reply(504, 'UTF8 cannot be switched off');
      return;
    }
    if (option === 'MLST') {
      this.mlstFacts = selectFacts(value);
      await this.reply(200, `MLST OPTS ${this.mlstFacts.map((f) => `${f};`).join('')}`.trimEnd());
      return;
    }
    await this.reply(501, 'Option not understood');
  }

  /** MLST (RFC 3659 §7.2): the facts of one file or folder on the control connection. */
  private async onMlst(arg: string): Promise<void> {
    const jfs = this.conn.fs!;
    const target = arg === '' ? '.' : arg;
    let line: string;
    let virtual: string;
    try {
      const st = await jfs.get(target);
      virtual = jfs.virtualOf(target) ?? '/';
      line = ` ${mlsxFacts(st, jfs.perm(virtual, st.isDirectory()), this.mlstFacts)} ${virtual}`;
    } catch (err) {
      await this.replyError(err, 550);
      return;
    }
    await this.replyLines(250, `Listing ${virtual}`, [line], 'End');
  }

  /** MLSD (RFC 3659 §7.2): a folder's entries as facts over the data connection; the same rights as LIST. */
  private async onMlsd(arg: string): Promise<void> {
    const jfs = this.conn.fs!;
    let text = '';
    try {
      const st = await jfs.get(arg);
      if (!st.isDirectory()) {
        await this.reply(501, 'Not a folder: use MLST for a file');
        this.conn.connector.end();
        return;
      }
      const dir = jfs.virtualOf(arg) ?? '/';
      for (const e of await jfs.list(arg)) {
        text += `${mlsxFacts(e, jfs.perm(path.posix.join(dir, e.name), e.isDirectory()), this.mlstFacts)} ${e.name}\r\n`;
      }
    } catch (err) {
      await this.replyError(err, 550);
      this.conn.connector.end();
      return;
    }
    await this.send(Readable.from([Buffer.from(text, 'utf8')]), 'Here comes the listing');
  }

  /**
   * AUTH TLS. ftp-srv's version wraps the socket only after the 234 is written, so a fast client's
   * ClientHello can arrive first and be read as a command line; pausing before the reply keeps those bytes
   * in the socket's buffer, where the TLS socket picks them up.
   */
  private async onAuth(mechanism: string): Promise<void> {
    if (mechanism !== 'TLS' && mechanism !== 'TLS-C' && mechanism !== 'SSL') {
      await this.reply(504, 'Only AUTH TLS is supported');
      return;
    }
    if (this.conn.secure) {
      await this.reply(503, 'Already using TLS');
      return;
    }
    const raw = this.conn.commandSocket;
    raw.pause();
    await this.reply(234, 'AUTH TLS ok, start negotiation');
    // The TLS socket drains the raw socket's buffer with read(), which would also emit it as 'data'.
    raw.removeAllListeners('data');
    this.tlsCtx = tls.createSecureContext(this.deps.tlsOptions());
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.tlsCtx });
    secure.on('data', (chunk: Buffer) => this.onData(chunk));
    for (const event of ['end', 'close', 'drain', 'error'] as const) {
      secure.on(event, (...args: unknown[]) => raw.emit(event, ...args));
    }
    this.conn.commandSocket = secure;
    this.conn.secure = true;
  }

  /** RFC 4217: PBSZ 0, then PROT P (private) or C (clear; refused when tls_required). */
  private async onProtection(directive: 'PBSZ' | 'PROT', level: string): Promise<void> {
    if (!this.conn.secure) {
      await this.reply(503, `${directive} needs AUTH TLS first`);
      return;
    }
    if (directive === 'PBSZ') {
      this.pbsz = true;
      await this.reply(200, 'PBSZ=0');
      return;
    }
    if (!this.pbsz) {
      await this.reply(503, 'PBSZ first');
      return;
    }
    const prot = decideProt({ level, tlsRequired: this.deps.config().ftp.tls_required });
    if (prot.allow) {
      this.protP = prot.rule === 'ftp.prot_private';
      await this.reply(200, this.protP ? 'Protection level set to Private' : 'Protection level set to Clear');
    } else if (prot.rule === 'ftp.prot_clear') {
      this.record('prot', prot);
      await this.reply(536, 'Data connections must be encrypted (PROT P)');
    } else {
      this.record('prot', prot);
      await this.reply(level === 'S' || level === 'E' ? 536 : 504, 'Only PROT P (or C when TLS is optional)');
    }
  }

  /** With tls_required, a TLS session must have chosen PROT P before any data transfer (vsftpd: 522). */
  private async dataAllowed(): Promise<boolean> {
    const protection = decideDataProtection({ tlsRequired: this.deps.config().ftp.tls_required, secure: this.conn.secure, protP: this.protP });
    if (protection.allow) return true;
    this.record('data_connect', protection);
    await this.reply(522, 'Data connections must be encrypted: send PBSZ 0 and PROT P');
    this.conn.connector.end();
    return false;
  }

  private async onUser(name: string): Promise<void> {
    if (this.conn.authenticated) {
      await this.reply(503, 'Already logged in');
      return;
    }
    if (name === '' || name.length > 64) {
      await this.reply(501, 'Syntax: USER name');
      return;
    }
    const cfg = this.deps.config().ftp;
    // Anonymous sessions are exempt from tls_required (like vsftpd's force_anon_logins_ssl=NO): they carry no
    // secret, and read-only public files or an upload-only drop box gain nothing from a forced handshake that
    // plain anonymous clients (browsers, curl ftp://) cannot do. They may still use AUTH TLS if they wish.
    this.anonymousUser = cfg.anonymous.enabled && (name === 'anonymous' || name === 'ftp');
    if (!cfg.anonymous.enabled && (name === 'anonymous' || name === 'ftp')) {
      // Both names are reserved (no user can have them), so this is the anonymous login, and it is off: say so
      // with the core's rule (as `gatehouse explain` does) instead of a TLS refusal or a failed password.
      this.deps.policy().anonymousLogin(this.ctx);
      this.user = null;
      await this.reply(530, 'This FTP server does not allow anonymous logins');
      this.countFailure();
      return;
    }
    if (!this.anonymousUser && this.refusedForTls(name, 'USER before AUTH TLS; the password is not asked for')) {
      this.user = null;
      await this.reply(530, 'Non-anonymous sessions must use encryption: send AUTH TLS first');
      this.countFailure();
      return;
    }
    this.user = name;
    await this.reply(331, this.anonymousUser ? 'Anonymous login ok, send any password' : 'Password required');
  }

  /** The policy core's TLS rule for passwords (auth.tls_required), asked before any password is read. */
  private refusedForTls(name: string, reason: string): boolean {
    const pre = this.deps.policy().authPrecheck(this.ctx, name, this.conn.secure);
    if (pre.rule !== 'auth.tls_required') return false;
    this.record('authenticate', deny(pre.rule, `${reason}: ${pre.reason}`));
    return true;
  }

  private async onPass(password: string): Promise<void> {
    if (this.conn.authenticated) {
      await this.reply(503, 'Already logged in');
      return;
    }
    const name = this.user;
    if (name === null) {
      await this.reply(503, 'Login with USER first');
      return;
    }
    this.user = null;
    if (this.anonymousUser) {
      if (!this.deps.policy().anonymousLogin(this.ctx).allow) {
        await this.reply(530, 'Login incorrect');
        return;
      }
      this.identity = ANONYMOUS;
      await this.enterJail();
      return;
    }
    if (this.refusedForTls(name, 'PASS before AUTH TLS; password not checked')) {
      await this.reply(530, 'Non-anonymous sessions must use encryption: send AUTH TLS first');
      return;
    }
    // `gatehouse ftp isolation` may be moving homes to a mode this server has not reloaded into yet
    const settled = decideIsolationSwitch(switchPending(this.deps.config()));
    if (!settled.allow) {
      this.record('authenticate', settled);
      this.shut(421, 'Service not available: home folders are being moved, try again shortly');
      return;
    }
    // precheck (TLS) -> throttle -> verify -> record, inside policy.authenticate; a throttled login is never verified
    const outcome = await this.deps.policy().authenticate(this.ctx, name, password, this.conn.secure);
    if (isTemporaryAuthFailure(outcome.decision)) {
      // the user directory could not be asked: temporary, not a failed login (RFC 959 421 closes the session)
      this.shut(421, 'Service not available: user directory unreachable, try again later');
      return;
    }
    if (!outcome.decision.allow || outcome.identity === null) {
      if (outcome.delayMs > 0) await sleep(Math.min(outcome.delayMs, 30_000));
      if (this.closed) return;
      if (outcome.temporary) {
        // throttled (password not checked), for known and unknown names alike: RFC 959's 421, then close
        this.shut(421, 'Temporary authentication failure, try again later; closing control connection');
        return;
      }
      await this.reply(530, 'Login incorrect');
      this.countFailure();
      return;
    }
    this.identity = outcome.identity;
    await this.enterJail();
  }

  private countFailure(): void {
    this.failures++;
    const budget = decideSessionBudget({ loginFailures: this.failures, maxLoginFailures: this.deps.config().ftp.limits.max_login_failures });
    if (!budget.allow) {
      this.record('authenticate', budget);
      this.shut(421, 'Too many failed logins');
    }
  }

  private async enterJail(): Promise<void> {
    const config = this.deps.config();
    const { decision, jail } = decideJail(this.identity, jailSpecOf(config));
    if (!decision.allow || jail === null) {
      this.record('authenticate', decision);
      this.identity = NOBODY;
      await this.reply(530, 'Login incorrect');
      return;
    }
    try {
      if (this.identity.kind === 'user' && typeof this.identity.home === 'string' && jail.root.dir === this.identity.home) {
        const problem = await claimHome(config.paths.stateDir, jail.root.dir, this.identity.name, config.ftp.allowed_roots);
        if (problem) throw new Error(problem);
      }
      await prepareRoot(jail.root.dir, jail.root.kind === 'home' ? 0o700 : 0o755, path.dirname(jail.root.dir));
      const incoming = jail.mounts.get('incoming');
      if (incoming?.kind === 'incoming') await prepareRoot(incoming.dir, 0o700, null);
    } catch (err) {
      this.record('authenticate', deny('paths.no_jail', `jail not usable (${err instanceof Error ? err.message : String(err)})`));
      this.identity = NOBODY;
      await this.reply(530, 'Login incorrect');
      return;
    }
    this.conn.fs = new JailFs(this.conn, jail, (phase, d, object) => this.record(phase, d, object), this.deps.quota);
    this.conn.authenticated = true;
    await this.reply(230, 'Login successful');
  }

  private async onActive(directive: 'PORT' | 'EPRT', arg: string): Promise<void> {
    const policy = this.deps.policy();
    const off = policy.activeTarget(this.ctx, null, null, this.epsvAll, false);
    if (off.rule === 'ftp.active_mode') {
      policy.record(this.ctx, 'active_mode', off, arg.slice(0, 64));
      await this.reply(502, `${directive} is disabled here; use PASV or EPSV`);
      return;
    }
    const target = directive === 'PORT' ? parsePort(arg) : parseEprt(arg);
    if (!target) {
      await this.reply(501, `Syntax error in ${directive} arguments`);
      return;
    }
    const decision = policy.activeTarget(this.ctx, target.host, target.port, this.epsvAll);
    if (!decision.allow) {
      await this.reply(501, decision.rule === 'ftp.port_privileged' ? 'Illegal PORT command: port below 1024' : 'Illegal PORT command: not your address');
      return;
    }
    this.conn.connector.end();
    try {
      this.conn.connector = await connectActive(this.conn, target, {
        tls: () => this.dataTls(),
        idleMs: this.deps.config().ftp.limits.idle_timeout_s * 1000,
        admitTls: (resumed, peer) => this.deps.policy().dataTls(this.ctx, resumed, peer).allow,
      });
      await this.reply(200, `${directive} command successful`);
    } catch {
      await this.reply(425, 'Cannot open data connection');
    }
  }

  /** The TLS context of this session's data connections (its own, see tlsCtx), or null without PROT P. */
  private dataTls(): tls.SecureContext | null {
    return this.conn.secure && this.protP ? (this.tlsCtx ?? this.deps.tlsContext()) : null;
  }

  private async onPassive(directive: 'PASV' | 'EPSV', arg: string): Promise<void> {
    if (directive === 'EPSV' && arg.trim().toUpperCase() === 'ALL') {
      this.epsvAll = true;
      await this.reply(200, 'EPSV ALL ok');
      return;
    }
    const cfg = this.deps.config().ftp;
    const local = this.conn.commandSocket.localAddress ?? '127.0.0.1';
    const localV4 = local.startsWith('::ffff:') ? local.slice(7) : local;
    const advertised = cfg.passive.address ?? localV4;
    if (directive === 'PASV' && !net.isIPv4(advertised)) {
      await this.reply(425, 'PASV needs IPv4; use EPSV');
      return;
    }
    const [lo, hi] = cfg.passive.ports.split('-').map(Number) as [number, number];
    this.conn.connector.end();
    this.passivePort ??= new PassivePort();
    const connector = createPassive(this.conn, this.passivePort, {
      ports: [lo, hi],
      tls: () => this.dataTls(),
      idleMs: cfg.limits.idle_timeout_s * 1000,
      proxy: this.deps.dataProxy,
      admitTls: (resumed, peer) => this.deps.policy().dataTls(this.ctx, resumed, peer).allow,
      admitSource: (ip) => this.deps.policy().dataSource(this.ctx, ip).allow,
    });
    let port: number;
    try {
      port = await connector.listen(local);
    } catch {
      await this.reply(425, 'Cannot open passive connection');
      return;
    }
    this.conn.connector = connector;
    if (directive === 'EPSV') {
      await this.reply(229, `Entering Extended Passive Mode (|||${port}|)`);
    } else {
      await this.reply(227, `Entering Passive Mode (${advertised.split('.').join(',')},${port >> 8},${port & 255})`);
    }
  }

  private async onList(directive: 'LIST' | 'NLST', arg: string): Promise<void> {
    const jfs = this.conn.fs!;
    let text: string;
    try {
      const st = await jfs.get(arg);
      const entries = st.isDirectory() ? await jfs.list(arg) : [st];
      const now = Date.now();
      text = entries.map((e) => (directive === 'NLST' ? e.name : lsLine(e, e.name, now))).join('\r\n');
      if (text !== '') text += '\r\n';
    } catch (err) {
      await this.replyError(err, 550);
      this.conn.connector.end();
      return;
    }
    await this.send(Readable.from([Buffer.from(text, 'utf8')]), 'Here comes the listing');
  }

  /** 150, stream `source` into the data connection, 226 (or 425/426); always closes the data channel. */
  private async send(source: Readable, opening: string): Promise<boolean> {
    const socket = await this.openData(opening);
    if (!socket) {
      source.destroy();
      return false;
    }
    this.download = socket;
    try {
      // a big file goes out through reused buffers (file-source.ts); anything else (listings, small files) is piped
      await (source instanceof FileSource ? source.sendTo(socket) : pipeTo(source, socket));
      await this.reply(226, 'Transfer complete');
      return true;
    } catch {
      source.destroy();
      await this.reply(426, 'Connection closed; transfer aborted');
      return false;
    } finally {
      this.download = null;
      this.conn.connector.end();
    }
  }

  /**
   * The data connection of a transfer: wait for the client's connection to arrive, send the 150, then wait
   * for the socket to be admitted (a TLS one after its handshake, see data-channel.ts). null after a 425.
   */
  private async openData(opening: string): Promise<net.Socket | null> {
    const connector = this.conn.connector;
    try {
      if (connector.waitForArrival) await connector.waitForArrival({ timeout: 10_000 });
      else await connector.waitForConnection({ timeout: 10_000 });
    } catch {
      this.conn.connector.end();
      await this.reply(425, 'No data connection');
      return null;
    }
    await this.reply(150, opening);
    try {
      return await connector.waitForConnection({ timeout: 20_000 });
    } catch {
      const refused = connector.refusedTls === true;
      connector.end();
      await this.reply(425, refused ? "Data connection refused: its TLS session must be resumed from this control connection's" : 'No data connection');
      return null;
    }
  }

  private async onRetr(arg: string): Promise<void> {
    const jfs = this.conn.fs!;
    const rest = this.conn.restByteCount ?? 0;
    this.conn.restByteCount = 0;
    let stream: Readable & { bytesRead: number };
    try {
      ({ stream } = await jfs.read(arg, { start: rest }));
    } catch (err) {
      await this.replyError(err, 550);
      this.conn.connector.end();
      return;
    }
    if (await this.send(stream, 'Opening data connection')) {
      metrics.count('ftp_bytes', { direction: 'download' }, stream.bytesRead);
    }
  }

  private async onStore(kind: 'stor' | 'appe' | 'stou', arg: string): Promise<void> {
    const jfs = this.conn.fs;
    if (!jfs) {
      await this.reply(530, 'Please login');
      return;
    }
    const rest = this.conn.restByteCount ?? 0;
    this.conn.restByteCount = 0;
    const name = kind === 'stou' ? jfs.getUniqueName() : arg;
    if (name === '') {
      await this.reply(501, 'Syntax: STOR name');
      this.conn.connector.end();
      return;
    }
    let upload: Upload;
    try {
      upload = await jfs.openUpload(name, kind === 'appe' ? 'appe' : 'stor', rest);
    } catch (err) {
      await this.replyError(err, 550);
      this.conn.connector.end();
      return;
    }
    this.upload = upload;
    upload.on('error', () => undefined);
    const idleMs = this.deps.config().ftp.limits.idle_timeout_s * 1000;
    const socket = await this.openData(kind === 'stou' ? `FILE: ${name}` : 'Ok to send data');
    if (!socket) {
      upload.destroy();
      this.upload = null;
      return;
    }
    const result = await new Promise<'ok' | Error>((resolve) => {
      let done = false;
      const finish = (r: 'ok' | Error) => {
        if (done) return;
        done = true;
        resolve(r);
      };
      socket.setTimeout(idleMs, () => socket.destroy(new Error('data connection idle')));
      // A plain data socket's chunks are copied into 1 MiB slabs at once (net/slab-feed.ts), written to the upload
      // as they fill; a TLS one is piped as before (its 16 KiB records through the feed measured slower: bench/README).
      const feed = socket instanceof tls.TLSSocket ? null : new SlabFeed(upload, () => socket.resume());
      upload.once('finish', () => finish('ok'));
      upload.once('error', (err) => {
        socket.destroy();
        finish(err);
      });
      upload.once('close', () => finish(new Error('upload aborted')));
      socket.once('end', () => {
        void endedCleanly(socket).then((clean) => {
          const control = this.conn.commandSocket;
          if (!clean) upload.destroy(new Error('data connection reset'));
          else if (this.closed || control.readableEnded || control.destroyed) upload.destroy(new Error('control connection closed'));
          else {
            feed?.flush();
            upload.end();
          }
          feed?.close();
        });
      });
      socket.once('close', () => {
        if (!socket.readableEnded) upload.destroy(new Error('data connection broken'));
      });
      socket.on('error', () => undefined);
      if (upload.destroyed) {
        // failed before these listeners (creating the temp file runs while the 150 is sent)
        socket.destroy();
        finish(upload.errored ?? new Error('upload aborted'));
        return;
      }
      if (feed) {
        // a passive plain socket reads straight into the feed's slabs; any other one emits 'data' to copy in
        if (!attachFeed(socket, feed)) {
          socket.on('data', (chunk: Buffer) => {
            if (!feed.push(chunk)) socket.pause();
          });
        }
        upload.once('close', () => feed.close());
      } else socket.pipe(upload, { end: false });
      socket.resume();
    });
    this.upload = null;
    this.conn.connector.end();
    if (result === 'ok') {
      try {
        // the 226 is written (one syscall, inside reply) before the decision line is. A drop box stores a
        // clashing name as name.1, name.2…: the 226 names what was stored, as STOU's 150 does.
        const stored = path.basename(upload.finalName);
        const renamed = upload.finalName !== upload.target.abs;
        const virtual = renamed ? path.posix.join(path.posix.dirname(upload.target.virtual), stored) : upload.target.virtual;
        // upload notices (issue 18): journaled durably after the commit, before the 226, under the stored name
        await this.deps.notices?.()?.uploaded({ mount: upload.target.mount.virtual, virtual, abs: upload.finalName, bytes: upload.bytes, uploader: identityLabel(this.identity), ip: this.ip, session: this.session });
        const sent = this.reply(226, renamed ? `Transfer complete; stored as FILE: ${stored}` : 'Transfer complete');
        this.record('upload', allow('ftp.upload_complete', `${upload.bytes} bytes stored durably${renamed ? ` as ${stored}` : ''}`), virtual);
        metrics.count('ftp_bytes', { direction: 'upload' }, upload.bytes);
        await sent;
      } finally {
        // the file the upload replaced is freed now, after the 226 (jail-fs.ts, holdReplaced)
        upload.release();
      }
      return;
    }
    upload.destroy();
    if (result instanceof QuotaExceeded) {
      this.record('upload', deny('ftp.quota', `quota of ${this.deps.quota.limitBytes} bytes exceeded`), upload.target.virtual);
      await this.reply(552, 'Quota exceeded; upload discarded');
      return;
    }
    if (upload.openFailed) {
      this.record('upload', deny('ftp.upload_aborted', `temp file not created: ${result.message}`), upload.target.virtual);
      await this.reply(451, 'Local error; file not stored');
      return;
    }
    this.record('upload', deny('ftp.upload_aborted', result.message), upload.target.virtual);
    await this.reply(426, 'Connection closed; transfer aborted, nothing kept');
  }

  private async replyError(err: unknown, fallback: number): Promise<void> {
    if (err instanceof FtpReplyError) await this.reply(err.code, err.message);
    else if (err instanceof QuotaExceeded) await this.reply(552, 'Quota exceeded');
    else await this.reply(fallback, 'Requested action not taken');
  }
}

/**
 * `source.pipe(socket)` until the socket has taken every byte (its 'finish'); rejects when either side fails
 * or the socket closes first. (stream/promises' pipeline does the same with an AbortController per call,
 * whose DOMException alone cost more than the rest of a 4 KiB download.)
 */
function pipeTo(source: Readable, socket: net.Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('finish', onFinish);
      socket.removeListener('close', onClose);
      socket.removeListener('error', settle);
      source.removeListener('error', settle);
      if (err) {
        source.unpipe(socket);
        reject(err);
      } else resolve();
    };
    const onFinish = () => settle(null);
    const onClose = () => settle(new Error('data connection closed'));
    socket.once('finish', onFinish);
    socket.once('close', onClose);
    socket.once('error', settle);
    source.once('error', settle);
    source.pipe(socket);
  });
}

/** Create a jail root on first use (0700 for homes); refuse one that is a symlink or not a folder. */
async function prepareRoot(dir: string, mode: number, parent: string | null): Promise<void> {
  if (parent) await fs.mkdir(parent, { recursive: true, mode: 0o700 });
  try {
    await fs.mkdir(dir, { mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = await fs.lstat(dir);
  if (!st.isDirectory()) throw new Error('jail root is not a folder');
}
