/*
 * One NNTP session. nntp-server's own session layer reads unbounded lines into an unbounded queue, has no
 * timeouts and cannot swap its socket for STARTTLS, so this class owns the socket: a bounded pull-based line
 * reader (512-octet commands, article_bytes in POST), back-pressure instead of a queue, an idle timeout and
 * the STARTTLS upgrade (input pipelined before the handshake is discarded). It also plays the role of the
 * library's "server" object, so the library's reader commands (ARTICLE, GROUP, HDR, LISTGROUP, ...) run unchanged
 * against the article store, with every visibility question answered by the policy core.
 */
import type net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { lineStart } from '../net/line-deadline.js';
import { peerOf } from '../net/proxy-gate.js';
import type { LineResult } from '../net/line-reader.js';
import { NOBODY, isTemporaryAuthFailure, type AuditContext, type Decision, type Identity } from '../policy/index.js';
import { deny } from '../policy/decision.js';
import { normalizeIp } from '../policy/network.js';
import { decideArticleSize, decideLineDeadline, decidePostRate, type ConnectionSlots } from '../policy/limits.js';
import { metrics } from '../ops/metrics.js';
import { newSessionId, type Runtime } from '../runtime.js';
import { bodyLines, parseHead, prepareArticle, splitArticle, stuff, unfold } from './article.js';
import { NntpInput, type ArticleResult } from './input.js';
import { postRateOk, type PostWindow } from './post-window.js';
import type { ArticleStore, StoredArticle } from './store.js';
import { COMMANDS, OVERVIEW_FMT, type Reply } from './commands.js';
import { peerLogin, plainPeerLogin } from './feed-in.js';
import { enqueueFeeds } from './feed-out.js';

/** RFC 3977 §3.1: command lines are at most 512 octets including CRLF. */
export const MAX_COMMAND_LINE = 510;
/** A multi-line reply is written in pieces of about this size (each waits for the socket to drain). */
const SEND_CHUNK = 256 * 1024;
/** Wrong password and throttled login alike (RFC 4643 has no temporary 4xx for AUTHINFO). */
export const AUTH_REFUSED = '481 Authentication failed or temporarily refused; try again later';
/** Unconsumed input above this pauses the socket (bounds pipelining). */
const HIGH_WATER = 64 * 1024;
/**
 * Streamed articles (TAKETHIS) of one session being checked and stored at once: more wait before the next is read.
 * innfeed keeps up to 200 in flight; a batch this size shares one store commit.
 */
export const MAX_IN_FLIGHT = 256;
/** ... and at most this many article octets (each is held until its commit): big articles make a smaller window. */
export const MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024;
/** Commands that may be read while streamed articles are still being stored (RFC 4644 §2.3: replies in any order). */
const STREAMING = new Set(['TAKETHIS', 'CHECK']);

export interface NntpShared {
  rt: Runtime;
  readonly store: ArticleStore;
  readonly slots: ConnectionSlots;
  secureContext: tls.SecureContext;
  readonly postTimes: Map<string, PostWindow>;
  readonly sessions: Set<NntpSession>;
}

/** What the library's commands see as a message. */
export interface LibMessage {
  readonly index: number;
  readonly entry: StoredArticle;
}

interface GroupCursor {
  name: string | null;
  min_index: number;
  max_index: number;
  total: number;
  description: string;
  current_article: number;
}

const EMPTY_GROUP: GroupCursor = { name: null, min_index: 0, max_index: 0, total: 0, description: '', current_article: 0 };
const heads = new WeakMap<StoredArticle, Map<string, string>>();

export class NntpSession {
  readonly ctx: { service: 'nntp'; ip: string; identity: Identity; session: string; proxy?: string };
  /** the library's commands call session.server._getArticle(...) etc.; this session answers them */
  readonly server = this;
  group: GroupCursor = { ...EMPTY_GROUP };
  tls: boolean;
  private socket: net.Socket;
  private readonly reader = new NntpInput();
  private busy = false;
  /** when the line being received began (ms), 0 between lines: see checkLineDeadline */
  private partialSince = 0;
  private closed = false;
  private upgrading = false;
  private slotHeld = false;
  private authUser: string | null = null;
  /** AUTHINFO USER was taken on a plain connection as a plain peer's login (only its secret may follow) */
  private plainPeerUser = false;
  /** groups readable by this identity, computed once per command */
  private readableCache: Set<string> | null = null;
  /** after a 340 (POST), 335 (IHAVE) or TAKETHIS: the input is an article, given to this handler */
  private onArticle: ((a: ArticleResult) => Promise<void>) | null = null;
  /** the next article is stored while the following commands are read (TAKETHIS) */
  private articleStreamed = false;
  /** streamed articles being checked and stored (each answers for itself when its store commit is durable) */
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  /** wakes the pump when a streamed article has been answered (instead of a Promise.race over the whole window) */
  private answered: (() => void) | null = null;
  /** replies are being gathered for one write at the end of this tick */
  private corked = false;
  private readonly onData = (chunk: Buffer) => this.feed(chunk);

  constructor(
    readonly shared: NntpShared,
    socket: net.Socket,
    isTls: boolean,
    private readonly plainPort: boolean,
  ) {
    this.socket = socket;
    this.tls = isTls;
    const ip = normalizeIp(socket.remoteAddress ?? '') ?? socket.remoteAddress ?? '?';
    const proxy = peerOf(socket)?.proxy;
    this.ctx = { service: 'nntp', ip, identity: NOBODY, session: newSessionId(), ...(proxy === undefined ? {} : { proxy }) };
    shared.sessions.add(this);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.onClose());
    this.start();
  }

  get rt(): Runtime {
    return this.shared.rt;
  }

  get audit(): AuditContext {
    return this.ctx;
  }

  get authenticated(): boolean {
    return this.ctx.identity.kind === 'user';
  }

  get canStartTls(): boolean {
    return this.plainPort && !this.tls && !this.authenticated;
  }

  /** AUTHINFO may be offered and used now: not logged in, and the core's TLS rule for passwords (auth.tls_required) allows it */
  get authUsable(): boolean {
    return !this.authenticated && this.rt.policy.authPrecheck(this.ctx, '', this.tls).allow;
  }

  private start(): void {
    const { policy } = this.rt;
    const decision = policy.connect(this.ctx);
    if (!decision.allow) {
      this.socket.end('502 Access denied\r\n');
      return;
    }
    const slot = this.shared.slots.acquire(this.ctx.ip);
    policy.record(this.ctx, 'limits', slot);
    if (!slot.allow) {
      this.socket.end('400 Too many connections, try again later\r\n');
      return;
    }
    this.slotHeld = true;
    this.attach(this.socket);
    // 200 when this session could post, now or after AUTHINFO (RFC 3977 §5.1.1; INN does the same, and tin and
    // slrn only offer posting when the greeting says 200)
    this.write(`${this.postingOffered() ? '200 Posting allowed' : '201 Posting not allowed'} - ${this.rt.config.hostname} Gatehouse NNTP ready\r\n`);
  }

  private attach(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setTimeout(this.rt.config.nntp.limits.idle_timeout_s * 1000);
    socket.on('timeout', () => {
      if (this.closed) return;
      socket.end('400 Idle timeout, closing connection\r\n');
      setTimeout(() => socket.destroy(), 2000).unref();
    });
    socket.on('data', this.onData);
  }

  private onClose(): void {
    this.closed = true;
    this.shared.sessions.delete(this);
    if (this.slotHeld) {
      this.slotHeld = false;
      this.shared.slots.release(this.ctx.ip);
    }
  }

  /**
   * `nntp.limits.line_deadline_s`: a line (command or article) still incomplete that long after its first byte
   * ends the session (400), so a client trickling a byte at a time cannot hold it by never going idle.
   */
  checkLineDeadline(now: number): void {
    if (this.closed || this.partialSince === 0) return;
    const d = decideLineDeadline(this.partialSince, now, this.rt.config.nntp.limits.line_deadline_s);
    if (d.allow) return;
    this.partialSince = 0;
    this.rt.policy.record(this.ctx, 'line', d);
    this.closed = true;
    this.socket.end('400 Line not completed in time, closing connection\r\n');
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Close now (listener stop). */
  destroy(): void {
    this.socket.destroy();
  }

  private write(text: string): boolean {
    if (this.closed || this.socket.destroyed) return false;
    // Streamed articles' replies come in bursts (a store commit answers a whole batch): one write(2) per burst.
    if (this.inFlight.size > 0 && !this.corked) {
      this.corked = true;
      const socket = this.socket;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    return this.socket.write(text, 'latin1');
  }

  private feed(chunk: Buffer): void {
    if (this.upgrading) return;
    this.partialSince = lineStart(this.partialSince, chunk, Date.now());
    this.reader.push(chunk);
    if (this.reader.buffered > HIGH_WATER) this.socket.pause();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.closed && !this.upgrading) {
        if (this.onArticle) {
          // The article is taken whole once its dot line is in.
          const a = this.reader.article(this.rt.config.nntp.limits.article_bytes);
          if (!a) break;
          const handler = this.onArticle;
          this.onArticle = null;
          if (this.articleStreamed) {
            this.articleStreamed = false;
            this.streamed(handler(a), a.kind === 'article' ? a.raw.length : 0);
            // bounded: a full window waits for one to be answered (the socket pauses at HIGH_WATER meanwhile)
            while (this.inFlight.size >= MAX_IN_FLIGHT || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES) await this.nextAnswered();
          } else await handler(a);
          continue;
        }
        const item = this.reader.next(MAX_COMMAND_LINE);
        if (!item) break;
        await this.handle(item);
      }
    } catch (err) {
      this.rt.log.error({ event: 'nntp_error', session: this.ctx.session, error: String(err) }, 'nntp session error');
      this.write('403 Internal fault\r\n');
    } finally {
      this.busy = false;
    }
    // The loop only ends when no complete line is held: more input is needed, whatever is buffered.
    if (!this.closed && !this.upgrading && this.socket.isPaused()) this.socket.resume();
  }

  /** Track a streamed article's handling; a failure there ends the session (the peer retries what got no 239). */
  private streamed(work: Promise<void>, bytes: number): void {
    this.inFlightBytes += bytes;
    const p: Promise<void> = work
      .catch((err: unknown) => {
        this.rt.log.error({ event: 'nntp_error', session: this.ctx.session, error: String(err) }, 'nntp streamed article failed');
        this.endWith('400 Service temporarily unavailable, try again later');
      })
      .finally(() => {
        this.inFlight.delete(p);
        this.inFlightBytes -= bytes;
        const wake = this.answered;
        this.answered = null;
        wake?.();
      });
    this.inFlight.add(p);
  }

  /** Wait until every streamed article has been answered. */
  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await this.nextAnswered();
  }

  /** Resolves when the next streamed article has been answered (only the pump waits, so one waiter at most). */
  private nextAnswered(): Promise<void> {
    return new Promise<void>((resolve) => (this.answered = resolve));
  }

  private async handle(item: LineResult): Promise<void> {
    if (item.kind === 'overflow') {
      this.rt.policy.record(this.ctx, 'command', deny('nntp.line_length', `command line longer than ${MAX_COMMAND_LINE + 2} octets`));
      this.write('501 Command line too long\r\n');
      return;
    }
    await this.command(item.line.toString('utf8'));
  }

  private async command(raw: string): Promise<void> {
    this.readableCache = null;
    const text = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    const words = text.split(/[ \t]+/);
    const first = (words[0] ?? '').toUpperCase();
    const second = words.length > 1 ? `${first} ${words[1]!.toUpperCase()}` : null;
    const name = second && COMMANDS.has(second) ? second : first;
    const cmd = COMMANDS.get(name);
    // Only streaming commands overtake streamed articles still being stored; any other command (QUIT, MODE
    // READER, ...) is answered after all of theirs.
    if (this.inFlight.size > 0 && !STREAMING.has(name)) await this.drain();
    if (!cmd) {
      await this.send('500 Unknown command');
      return;
    }
    // AUTHINFO keeps its argument verbatim (a password may contain runs of spaces).
    const line = name.startsWith('AUTHINFO') ? text : words.join(' ');
    if (!cmd.validate.test(line)) {
      await this.send('501 Syntax error');
      return;
    }
    if (cmd.reader && !this.mayRead()) {
      await this.send('480 Authentication required');
      return;
    }
    let reply: Reply;
    try {
      reply = await cmd.run(this, line);
    } catch (err) {
      this.rt.log.error({ event: 'nntp_command_error', session: this.ctx.session, command: name, error: String(err) }, 'nntp command failed');
      reply = '403 Internal fault';
    }
    if (reply !== null) await this.send(reply); // null: the command answers later itself (TAKETHIS, STARTTLS)
    this.readableCache = null;
  }

  /** Flatten a reply (strings, arrays, object-mode streams of lines) and write it with back-pressure. */
  async send(reply: Reply): Promise<void> {
    if (typeof reply === 'string') return this.flush(`${reply}\r\n`); // the common one-line reply
    const lines: string[] = [];
    await flatten(reply, lines);
    let buf = '';
    for (const l of lines) {
      buf += `${l}\r\n`;
      if (buf.length >= SEND_CHUNK) {
        await this.flush(buf);
        buf = '';
      }
    }
    if (buf) await this.flush(buf);
  }

  private async flush(text: string): Promise<void> {
    if (this.write(text)) return;
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  // ---- state questions -------------------------------------------------------------------------------

  readableSet(): Set<string> {
    if (this.readableCache) return this.readableCache;
    return (this.readableCache = new Set(this.rt.policy.readableGroups(this.ctx.identity).filter((g) => this.shared.store.group(g) !== null)));
  }

  mayRead(): boolean {
    return this.authenticated || this.rt.policy.readableGroups(NOBODY).length > 0;
  }

  mayPostNow(): boolean {
    return this.rt.policy.mayPost(this.ctx.identity);
  }

  /** The greeting's and MODE READER's 200/201: may post now, or could after logging in. */
  postingOffered(): boolean {
    return this.rt.policy.mayPostAfterLogin(this.ctx.identity);
  }

  // ---- AUTHINFO -------------------------------------------------------------------------------------

  async authinfoUser(user: string): Promise<string> {
    if (this.authenticated) return '502 Already authenticated';
    // without TLS where logins need it, only a plain peer's login (innd/innfeed speak no TLS; feed-in.ts)
    this.plainPeerUser = false;
    const tlsRule = this.rt.policy.authPrecheck(this.ctx, user, this.tls);
    if (!tlsRule.allow) {
      const peer = await plainPeerLogin(this, user);
      if (peer === null) {
        // not a peer's address: the core's TLS rule refused the login (recorded once, as FTP's USER before AUTH TLS)
        this.rt.policy.record(this.ctx, 'authenticate', tlsRule);
        return '483 Encryption required: use STARTTLS first';
      }
      if (!peer.allow) return '483 Encryption required: use STARTTLS first';
      this.plainPeerUser = true;
    }
    this.authUser = user;
    return '381 Password required';
  }

  async authinfoPass(password: string): Promise<string> {
    if (this.authenticated) return '502 Already authenticated';
    const plainPeer = this.plainPeerUser && !this.authUsable;
    if (!this.authUsable && !plainPeer) return '483 Encryption required: use STARTTLS first';
    const user = this.authUser;
    if (user === null) return '482 Send AUTHINFO USER first';
    this.authUser = null;
    this.plainPeerUser = false;
    // a feeding peer's shared secret (nntp.peers password_file): a peer login, not a user (feed-in.ts)
    const peer = await peerLogin(this, user, password);
    if (peer.allow) return '281 Authentication accepted';
    // a plain connection: never a user's password check; the core's refusal of the secret is the last word
    if (plainPeer) {
      this.rt.policy.record(this.ctx, 'feed_login', peer);
      return AUTH_REFUSED;
    }
    // precheck (TLS) -> throttle -> verify -> record, inside policy.authenticate; a throttled login is never verified
    const out = await this.rt.policy.authenticate(this.ctx, user, password, this.tls);
    // RFC 4643 §2.3.2 gives no temporary AUTHINFO code; 403 (RFC 3977 "internal fault or problem preventing action") is the temporary one
    if (isTemporaryAuthFailure(out.decision)) return '403 Authentication temporarily unavailable (user directory unreachable); try again later';
    if (!out.decision.allow || !out.identity) {
      if (out.delayMs > 0) await new Promise((r) => setTimeout(r, Math.min(out.delayMs, 30_000)));
      // RFC 4643 has no temporary code: wrong and throttled get the same 481, whose text says it may be temporary
      return AUTH_REFUSED;
    }
    this.ctx.identity = out.identity;
    return '281 Authentication accepted';
  }

  // ---- STARTTLS (RFC 4642) --------------------------------------------------------------------------

  startTls(): string | null {
    if (!this.plainPort || this.tls) return '502 TLS already active';
    if (this.authenticated) return '502 Already authenticated';
    const raw = this.socket;
    this.upgrading = true;
    raw.off('data', this.onData);
    raw.pause();
    raw.setTimeout(0);
    raw.removeAllListeners('timeout');
    // Anything the client pipelined after STARTTLS is plaintext injection: drop it.
    this.reader.clear();
    raw.write('382 Continue with TLS negotiation\r\n', () => {
      if (this.closed) return;
      const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.shared.secureContext });
      const timer = setTimeout(() => secure.destroy(), this.rt.config.nntp.limits.idle_timeout_s * 1000);
      timer.unref();
      secure.on('error', () => {
        clearTimeout(timer);
        secure.destroy();
        raw.destroy();
      });
      secure.once('secure', () => {
        clearTimeout(timer);
        this.socket = secure;
        this.tls = true;
        this.group = { ...EMPTY_GROUP };
        this.authUser = null;
        this.upgrading = false;
        this.attach(secure);
      });
    });
    return null;
  }

  /** The next input is an article (after the reply now being sent): feed-in.ts for IHAVE and TAKETHIS. */
  expectArticle(handler: (a: ArticleResult) => Promise<void>, streamed = false): void {
    this.onArticle = handler;
    this.articleStreamed = streamed;
  }

  /** Answer and close (a refused TAKETHIS: its article must not be read as commands). */
  endWith(line: string): void {
    if (this.closed) return;
    this.socket.end(`${line}\r\n`);
    this.closed = true;
  }

  quit(): void {
    this.socket.end('205 Closing connection\r\n');
    this.closed = true;
  }

  // ---- POST -----------------------------------------------------------------------------------------

  beginPost(): string | Promise<string> {
    const { policy } = this.rt;
    const may = policy.decidePostCommand(this.ctx.identity);
    if (!may.allow) {
      policy.record(this.ctx, 'post', may);
      // not logged in, and a login could post (the greeting said 200): 480 makes readers authenticate and retry
      if (!this.authenticated && this.postingOffered()) return '480 Authentication required';
      return this.authenticated || this.mayRead() ? '440 Posting not permitted' : '480 Authentication required';
    }
    if (this.rt.store?.configured) return this.beginSharedPost();
    return this.postRateAnswer(this.rateOk(false) ? 'ok' : 'limited');
  }

  /** The policy core's word on the poster's rate (refusals recorded), and POST's answer to it. */
  private postRateAnswer(counter: 'ok' | 'limited' | 'unavailable'): string {
    const rate = decidePostRate({ counter, limit: this.rt.config.nntp.limits.posts_per_minute });
    if (!rate.allow) {
      this.rt.policy.record(this.ctx, 'post', rate);
      return counter === 'unavailable' ? '403 Posting temporarily unavailable, try again later' : '440 Posting rate limit reached, try again later';
    }
    this.expectArticle((a) => this.postArticle(a));
    return '340 Send article to be posted; end with <CR-LF>.<CR-LF>';
  }

  /** posts_per_minute counted in the shared state store (state_store), across every instance */
  private postLimiter() {
    return this.rt.store!.limiter('nntp_posts', this.rt.config.nntp.limits.posts_per_minute, 60);
  }

  private async beginSharedPost(): Promise<string> {
    return this.postRateAnswer(await this.postLimiter().check(this.rateKey()));
  }

  private rateKey(): string {
    return this.ctx.identity.kind === 'user' ? `user:${this.ctx.identity.name}` : `ip:${this.ctx.ip}`;
  }

  private rateOk(record: boolean): boolean {
    return postRateOk(this.shared.postTimes, this.rateKey(), this.rt.config.nntp.limits.posts_per_minute, record);
  }

  private async postArticle(a: ArticleResult): Promise<void> {
    const reply = await this.finishPost(a);
    const sent = this.flush(`${reply}\r\n`);
    // A counter, not a decision (those are recorded in finishPost, before the reply): bumped once the reply is out.
    metrics.count('nntp_posts', { outcome: reply.startsWith('240') ? 'accepted' : 'rejected' });
    await sent;
  }

  private async finishPost(a: ArticleResult): Promise<string> {
    const { policy, config } = this.rt;
    const refuse = (rule: string, reason: string) => {
      policy.record(this.ctx, 'post', deny(rule, reason));
      return `441 ${reason}`;
    };
    const split = a.kind === 'article' ? splitArticle(a.raw) : null;
    const size = decideArticleSize({ bytes: split ? split.bytes : null, limit: config.nntp.limits.article_bytes });
    if (!size.allow || !split) {
      policy.record(this.ctx, 'post', size);
      return `441 ${size.reason}`;
    }
    const ident = this.ctx.identity;
    const prepared = prepareArticle(split.lines, {
      hostname: config.hostname,
      user: ident.kind === 'user' ? ident.name : null,
      ip: this.ctx.ip,
      session: this.ctx.session,
      now: new Date(),
    }, split.body);
    if (!prepared.ok) return refuse('nntp.article_format', prepared.reason);
    // The core decides every group first; its allows are recorded below, once the write is under way.
    const allowed: Decision[] = [];
    for (const g of prepared.groups) {
      const d = policy.group(this.ctx, 'post', g, false);
      if (d.allow) {
        allowed.push(d);
        continue;
      }
      this.recordGroups(prepared.groups, allowed);
      policy.record(this.ctx, 'post', d, g);
      // A group the poster cannot read gets the same words as one that does not exist.
      const readable = policy.group(this.ctx, 'read', g, false).allow;
      return `441 ${readable ? `Posting to ${g} not allowed` : `No such newsgroup ${g}`}`;
    }
    const { store } = this.shared;
    if (!store.reserve(prepared.messageId)) {
      this.recordGroups(prepared.groups, allowed);
      return refuse('nntp.duplicate', `Duplicate Message-ID ${prepared.messageId}`);
    }
    let stored: StoredArticle;
    try {
      // store.add hands the record to the disk before it returns its promise: the audit records of the allows
      // are made while the device writes (each is still recorded before the reply, as every decision is).
      const adding = store.add(prepared.messageId, prepared.groups, prepared.head, prepared.article, prepared.lines);
      this.recordGroups(prepared.groups, allowed);
      stored = await adding;
    } catch (err) {
      store.release(prepared.messageId);
      this.rt.log.error({ event: 'nntp_store_error', session: this.ctx.session, error: String(err) }, 'article not stored');
      return '441 Article could not be stored, try again later';
    }
    // queued for the outgoing peers before the 240 (a crash in between is recovered at start: feed-out.ts)
    await enqueueFeeds(store, stored).catch((err: unknown) => this.rt.log.error({ event: 'nntp_feed_queue_error', error: String(err) }, 'article not queued for peers'));
    if (this.rt.store?.configured) await this.postLimiter().consume(this.rateKey());
    else this.rateOk(true);
    return `240 Article received ${prepared.messageId}`;
  }

  /** Audit records of the groups' post decisions made so far (`decided[i]` is the decision for `groups[i]`). */
  private recordGroups(groups: readonly string[], decided: readonly Decision[]): void {
    for (let i = 0; i < decided.length; i++) this.rt.policy.record(this.ctx, 'post', decided[i]!, groups[i]);
  }

  // ---- what nntp-server's commands call -------------------------------------------------------------

  _selectGroup(_s: unknown, raw: string): boolean {
    const name = raw.toLowerCase();
    if (!this.rt.policy.group(this.ctx, 'read', name).allow) return false;
    const g = this.shared.store.group(name);
    if (!g) return false;
    const conf = this.rt.config.nntp.groups.find((c) => c.name === name);
    this.group = { name, min_index: g.low, max_index: g.high, total: g.count, description: conf?.description ?? '', current_article: g.count > 0 ? g.low : 0 };
    return true;
  }

  /** The current group, if it is still readable (a reload may have hidden it). */
  currentGroup(): string | null {
    const name = this.group.name;
    return name && this.readableSet().has(name) ? name : null;
  }

  visible(entry: StoredArticle, readable = this.readableSet()): boolean {
    return Object.keys(entry.numbers).some((g) => readable.has(g));
  }

  _getArticle(_s: unknown, id: string): Promise<LibMessage | null> {
    const { store } = this.shared;
    if (id.startsWith('<')) {
      const entry = store.byMessageId(id);
      if (!entry || !this.visible(entry)) return Promise.resolve(null);
      const here = this.group.name ? entry.numbers[this.group.name] : undefined;
      return Promise.resolve({ index: here ?? 0, entry });
    }
    const group = this.currentGroup();
    const n = Number(id);
    const entry = group ? store.byNumber(group, n) : null;
    return Promise.resolve(entry ? { index: n, entry } : null);
  }

  _getRange(_s: unknown, first: number, last: number): Promise<LibMessage[]> {
    const group = this.currentGroup();
    if (!group) return Promise.resolve([]);
    const { store } = this.shared;
    return Promise.resolve(store.range(group, first, last).map((n) => ({ index: n, entry: store.byNumber(group, n)! })));
  }

  _getGroups(_s: unknown, _time?: unknown, wildmat?: RegExp | null): Promise<{ name: string; description: string }[]> {
    const readable = [...this.readableSet()].filter((n) => !wildmat || wildmat.test(n)).sort();
    return Promise.resolve(readable.map((name) => ({ name, description: this.rt.config.nntp.groups.find((c) => c.name === name)?.description ?? '' })));
  }

  xref(entry: StoredArticle): string {
    const readable = this.readableSet();
    const parts = Object.entries(entry.numbers)
      .filter(([g]) => readable.has(g))
      .map(([g, n]) => `${g}:${n}`);
    return `${this.rt.config.hostname} ${parts.join(' ')}`;
  }

  /** A Newsgroups / Followup-To value as this identity may see it (hidden groups left out), or null if unchanged. */
  private visibleGroups(value: string): string | null {
    const readable = this.readableSet();
    const all = value.split(',').map((g) => g.trim());
    const shown = all.filter((g) => readable.has(g) || g === 'poster');
    return shown.length === all.length ? null : shown.join(',');
  }

  _buildHead(_s: unknown, msg: LibMessage): string[] {
    const lines = msg.entry.head.split('\r\n');
    const out: string[] = [];
    for (let i = 0; i < lines.length; i++) {
      const m = /^(newsgroups|followup-to):/i.exec(lines[i]!);
      if (!m) {
        out.push(lines[i]!);
        continue;
      }
      const raw = [lines[i]!];
      while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1]!)) raw.push(lines[++i]!);
      const name = m[1]!;
      const shown = this.visibleGroups(unfold(raw, name));
      if (shown === null) out.push(...raw);
      else if (shown) out.push(`${raw[0]!.slice(0, name.length)}: ${shown}`);
    }
    out.push(`Xref: ${this.xref(msg.entry)}`);
    return out.map(stuff);
  }

  _buildBody(_s: unknown, msg: LibMessage): Readable {
    const store = this.shared.store;
    return Readable.from(
      (async function* () {
        for (const line of bodyLines(await store.read(msg.entry))) yield stuff(line);
      })(),
    );
  }

  _buildHeaderField(_s: unknown, msg: LibMessage, field: string): string {
    const e = msg.entry;
    if (field === ':bytes') return String(e.bytes);
    if (field === ':lines') return String(e.lines);
    if (field === 'xref') return this.xref(e);
    let parsed = heads.get(e);
    if (!parsed) heads.set(e, (parsed = parseHead(e.head)));
    const value = parsed.get(field) ?? '';
    return field === 'newsgroups' || field === 'followup-to' ? (this.visibleGroups(value) ?? value) : value;
  }

  _getOverviewFmt(): string[] {
    return [...OVERVIEW_FMT];
  }
}

async function flatten(reply: Reply, out: string[]): Promise<void> {
  if (reply === null || reply === undefined) return;
  if (Array.isArray(reply)) {
    // Strings (every row of OVER, HDR, LIST) without an await each; only streams need one.
    for (const r of reply) {
      if (typeof r === 'string') out.push(r);
      else await flatten(r, out);
    }
    return;
  }
  if (reply instanceof Readable) {
    for await (const chunk of reply) out.push(String(chunk));
    return;
  }
  out.push(String(reply));
}
