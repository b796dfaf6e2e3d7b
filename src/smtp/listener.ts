/*
 * The smtp-server adapter. Every question (connect, AUTH, MAIL, RCPT) goes to the policy core and the
 * decision becomes the reply; DATA goes through the data guard, gets a Received: header and is answered 250
 * only after the queue has it on disk. The library's quirks that are ours to close (LIBRARIES.md §4):
 * AUTH is hidden and refused before STARTTLS, XCLIENT/XFORWARD/PROXY stay off, reverse lookups are off,
 * replies carry our enhanced status codes, and every session has an error budget.
 */
import type net from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerAuthenticationResponse, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { parseListen } from '../config/load.js';
import { lineStart } from '../net/line-deadline.js';
import { adoptPeer, peerOf, ProxyGate } from '../net/proxy-gate.js';
import { serverTlsOptions } from '../net/tls.js';
import { NOBODY, type AuditContext, type Decision, type Identity, type NormalizedAddress } from '../policy/index.js';
import { allow, deny } from '../policy/decision.js';
import { decideAuthzid } from '../policy/auth.js';
import { ConnectionSlots, decideLineDeadline, decideMessageSize, decideRecipientCount, decideSessionBudget } from '../policy/limits.js';
import { normalizeIp } from '../policy/network.js';
import { decideGreeting, decideParameters } from '../policy/smtp.js';
import { newSessionId, type BoundAddress, type Listener, type Runtime } from '../runtime.js';
import { DataGuard } from './data-guard.js';
import { useFastDataScan, useSafeContinue } from './data-scan.js';
import type { Envelope, MailQueue, QueueDraft } from './queue-types.js';
import { receivedHeader } from './received.js';
import { newQueueId } from './spool.js';
import {
  AUTH_FAILED,
  AUTH_IN_TRANSACTION,
  AUTH_NEEDS_TLS,
  AUTH_TEMPORARY,
  INTERNAL,
  LINE_TOO_SLOW,
  QUEUE_FAILED,
  SHUTTING_DOWN,
  TOO_MANY_RECIPIENTS,
  connectReply,
  guardReply,
  ownReply,
  recipientReply,
  senderReply,
  smtpError,
  type SmtpReply,
  tooManyErrors,
  unsupportedParameterReply,
} from './replies.js';

type Connection = SMTPServer['connections'] extends Set<infer C> ? C : never;
type Callback = (err?: Error | null) => void;

/** Commands no session may use: sendmail jokes and the proxy commands that let a client rewrite its address. */
const ALWAYS_DISABLED = ['WIZ', 'SHELL', 'KILL', 'XCLIENT', 'XFORWARD'];
/** The disabledCommands lists, shared by all servers and sessions (smtp-server only reads them) */
const DISABLED_WITH_AUTH = [...ALWAYS_DISABLED, 'AUTH'];

const MAX_COMMAND_LINE = 2048;
/** a message that reaches this many bytes is written to the spool as it arrives (see onData) */
const STREAM_FROM = 1024 * 1024;

interface SessionState {
  readonly id: string;
  readonly ip: string;
  /** the PROXY protocol peer that relayed this client, if any */
  proxy: string | undefined;
  readonly rt: Runtime;
  identity: Identity;
  errors: number;
  slot: boolean;
  inData: boolean;
  dropping: boolean;
  conn: Connection | null;
  /** when the line being received began (ms), 0 between lines: see watchLines */
  partialSince: number;
}

type Parser = ReturnType<Connection['_createParser']>;
type MailParams = Parameters<Connection['_validateMailParams']>[0];

/** smtp-server's connection class, or a listener's subclass of it (see createListener's ListenerConnection). */
export type ConnectionClass = typeof SMTPConnection;

/**
 * Replace smtp-server's fixed 100 ms early-talker wait (hard-coded in `SMTPConnection.init`) with
 * `smtp.limits.greet_pause_ms`: 0 greets at once (as Postfix smtpd), more keeps the check for that long (a
 * client that talks before the greeting gets 421 (the library's "You talk too soon", rewritten by ownReply) and is dropped).
 * It relies on smtp-server internals (3.21), as do acceptDirectly and the listener's connection subclass and
 * early greeting (createListener): `SMTPServer.connect` (called by the
 * library for every accepted, PROXY-parsed and TLS-handshaken socket), `SMTPConnection._setListeners` (socket
 * handlers, idle timer, parser pipe, STARTTLS for `needsUpgrade`) and `connectionReady` (reverse lookup,
 * onConnect, greeting). It mirrors `connect` and `init` of the library but for the timer, keeping init's
 * maxClients check. test/smtp/greet-pause.test.ts fails if an upgrade changes any of this.
 */
export function installGreetPause(server: SMTPServer, pauseMs: () => number, onEarlyTalker?: (remoteAddress: string) => void, onConnection?: (connection: Connection) => void, Conn: ConnectionClass = SMTPConnection): void {
  server.connect = (socket, socketOptions) => {
    adoptPeer(socket); // a TLS socket over a PROXY-protocol connection reports the client, as its TCP socket does
    const connection = new Conn(server, socket, socketOptions);
    server.connections.add(connection);
    onConnection?.(connection);
    connection.on('error', (err: Error) => server._onError(err));
    connection.on('connect', (data: Parameters<SMTPServer['_onClientConnect']>[0]) => server._onClientConnect(data));
    connection._setListeners(() => {
      if (server.options.maxClients && server.connections.size > server.options.maxClients) {
        return connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false);
      }
      const pause = pauseMs();
      if (pause <= 0) return connection.connectionReady();
      // during the pause the only reply the library can send on its own is the early talker's 421
      const own = Object.getOwnPropertyDescriptor(connection, 'send')?.value as Connection['send'] | undefined;
      const send = connection.send.bind(connection);
      connection.send = (code, data, context) => {
        if (code === 421 && !connection._ready) onEarlyTalker?.(connection.remoteAddress);
        send(code, data, context);
      };
      setTimeout(() => {
        // back to the writer that was there before the pause (the class's, or one onConnection set)
        if (own) connection.send = own;
        else delete (connection as { send?: unknown }).send;
        if (!connection._closing && !connection._closed) connection.connectionReady();
      }, pause).unref();
    });
  };
}

/**
 * A plain listener (no PROXY parsing by the library, no ignoredHosts, no TLS handshake before the session: always
 * so here) hands each accepted socket to `connect` at once, as smtp-server's own accept handler ends up doing
 * for such a socket, minus what that handler spends per connection for nothing: a crypto id (`randomBytes`, and
 * with it a getpid(2), turned into a BigInt), its PROXY and ignoredHosts checks and a setImmediate hop before
 * the greeting. The connection id is one from our pool instead, and a listener bound to one address passes it as
 * the local address. An implicit-TLS listener keeps the library's
 * handler (its handshake guard and timeout). Must run before anything wraps the 'connection' listeners
 * (ProxyGate.interpose); test/smtp/greet-pause.test.ts pins the library behaviour this mirrors.
 */
export function acceptDirectly(server: SMTPServer, beforeConnect?: (socket: net.Socket) => void): void {
  const o = server.options;
  if ((o.secure && !o.needsUpgrade) || o.useProxy || (o.ignoredHosts?.length ?? 0) > 0) throw new Error('smtp: acceptDirectly is for plain listeners without useProxy or ignoredHosts');
  server.server.removeAllListeners('connection');
  // a listener bound to one address: that is every accepted socket's local address (no getsockname(2) each)
  let local: { localAddress: string; localPort: number } | null | undefined;
  server.server.on('connection', (socket: net.Socket) => {
    if (local === undefined) {
      const a = server.server.address();
      local = a && typeof a === 'object' && a.address !== '0.0.0.0' && a.address !== '::' ? { localAddress: a.address, localPort: a.port } : null;
    }
    beforeConnect?.(socket);
    server.connect(socket, local ? { id: newSessionId(), localAddress: local.localAddress, localPort: local.localPort } : { id: newSessionId() });
  });
}

/** The queue may take a new runtime on reload (the real one does; test doubles need not). */
export type ListenerQueue = MailQueue & { reload?(rt: Runtime): void };

export function createListener(initial: Runtime, queue: ListenerQueue): Listener {
  let rt = initial;
  const limits = () => rt.config.smtp.limits;
  const slots = new ConnectionSlots(limits().connections, limits().connections_per_ip);
  const states = new WeakMap<SMTPServerSession, SessionState>();
  const live = new Set<SessionState>();
  const senders = new WeakMap<SMTPServerAddress, string>();
  const recipients = new WeakMap<SMTPServerAddress, NormalizedAddress>();
  const inflight = new Set<Promise<unknown>>();
  const servers: SMTPServer[] = [];
  let stopping = false;

  const ctxOf = (s: SessionState): AuditContext => (s.proxy === undefined ? { service: 'smtp', ip: s.ip, identity: s.identity, session: s.id } : { service: 'smtp', ip: s.ip, identity: s.identity, session: s.id, proxy: s.proxy });
  const disabledIn = (r: Runtime, secure: boolean) => (r.config.smtp.auth_requires_tls && !secure ? DISABLED_WITH_AUTH : ALWAYS_DISABLED);
  const disabledFor = (s: SessionState, secure: boolean) => disabledIn(s.rt, secure);
  /**
   * A server's own list is what its sessions start with (AUTH off on a plain port when auth_requires_tls), so a
   * session sets its own only when it differs (STARTTLS, a reload): smtp-server checks a session's list entry by
   * entry with string conversions on every command, the server's with one `includes`.
   */
  const useDisabled = (session: SMTPServerSession, server: SMTPServer | undefined, list: string[]) => {
    if (server?.options.disabledCommands !== list || session.disabledCommands !== undefined) session.disabledCommands = list;
  };

  function stateOf(session: SMTPServerSession): SessionState {
    const s = states.get(session);
    if (!s) throw new Error('smtp: session without state');
    return s;
  }

  /** Guard a handler: any exception is a temporary failure, never a crash or a silent accept. */
  function guarded<A extends unknown[]>(fn: (...args: A) => void, fail: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (err) {
        rt.log.error({ event: 'smtp_handler_error', error: err instanceof Error ? err.message : String(err) }, 'smtp handler failed; answering with a temporary error');
        fail(...args);
      }
    };
  }

  /** Connection → its session, once onConnect has run (replies before that have no error budget yet). */
  const sessionOf = new WeakMap<Connection, SessionState>();

  /**
   * The listener's connections: smtp-server's SMTPConnection with our reply writer and line watch as methods of
   * the class, so a connection gets no closures or redefined properties of its own (per connection they cost
   * more than the rest of our session set-up). Relies on `send` being the library's one write site for replies,
   * on `_createParser` (the parser of the session and the one STARTTLS makes) and on `_validateMailParams` (MAIL
   * FROM's parameter checks, before onMailFrom); test/smtp/line-deadline.test.ts, test/smtp/replies-own.test.ts and
   * test/smtp/policy-refusals.test.ts pin them.
   */
  class ListenerConnection extends SMTPConnection {
    override send(code: number, data?: string | string[] | null, context?: string | false): void {
      reply(this, code, data, context);
    }

    /** the library's writer, for `reply` */
    librarySend(code: number, data?: string | string[] | null, context?: string | false): void {
      super.send(code, data, context);
    }

    /**
     * with our DATA scanner (data-scan.ts; test/smtp/data-scan.test.ts pins the parser internals it uses) and a
     * continue() that keeps the continuation of a second pipelined message (test/smtp/pipelined-second-message.test.ts)
     */
    override _createParser(): Parser {
      return watchLines(this, useSafeContinue(useFastDataScan(super._createParser())));
    }

    /**
     * The library's own size check at the end of DATA, against the limit the message started with (its
     * parser's, the one behind `sizeExceeded` that onData refuses on), not the server's option, which a reload in
     * the middle of the message may have lowered: else a message onData queued would be answered 552
     * (test/smtp/data-reload-size.test.ts).
     */
    override _isOversized(dataBytes: number): boolean {
      const parser = this._parser;
      return parser ? dataBytes > parser._maxBytes : super._isOversized(dataBytes);
    }

    /** MAIL FROM's SIZE= is the core's to refuse (declaredSize); smtp-server's own checks follow as they were */
    override _validateMailParams(parsed: MailParams): ReturnType<Connection['_validateMailParams']> {
      return declaredSize(this, parsed) ?? super._validateMailParams(parsed);
    }
  }
  // smtp-server's own budget of 10 unrecognised (and unauthenticated) commands is switched off, so the configured
  // limits.max_errors is the only one: the library's counters read 0 and its writes to them go nowhere
  for (const counter of ['_unrecognizedCommands', '_unauthenticatedCommands']) {
    Object.defineProperty(ListenerConnection.prototype, counter, { get: () => 0, set: () => undefined, configurable: true });
  }

  /**
   * A SIZE= over the session's smtp.limits.message_bytes (RFC 1870 §6.1: 552 at MAIL FROM), asked before smtp-server
   * compares it with its own option (the server's current limit, lower than the session's after a reload: a fact
   * for the core too, so the library's check never refuses alone); a malformed SIZE is left to the library's 501.
   */
  function declaredSize(conn: Connection, parsed: MailParams): ReturnType<Connection['_validateMailParams']> {
    const s = sessionOf.get(conn);
    const declared = parsed.args ? parsed.args.SIZE : undefined;
    if (!s || typeof declared !== 'string' || !/^\d{1,20}$/.test(declared)) return null;
    const maxBytes = s.rt.config.smtp.limits.message_bytes;
    const bytes = Number(declared);
    const serverLimit = Number(conn._server.options.size) || 0;
    const d = decideMessageSize({ stage: 'mail', bytes, limit: maxBytes, overServerLimit: serverLimit > 0 && bytes > serverLimit });
    if (d.allow) return null;
    s.rt.policy.record(ctxOf(s), 'mail', d, parsed.address);
    const r = guardReply('too_big', maxBytes);
    return { code: r.code, message: r.text, enhancedCode: null };
  }

  /**
   * Note, for `smtp.limits.line_deadline_s`, when a line starts and ends: every cleartext chunk the library's
   * parser gets (before and after STARTTLS, which makes a new parser) passes here first, once the session has
   * its state (onConnect; nothing is parsed before, but a pregreet talker's 421).
   */
  function watchLines(conn: Connection, parser: Parser): Parser {
    const write = parser.write.bind(parser) as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
    parser.write = ((chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
      const s = sessionOf.get(conn);
      if (s && Buffer.isBuffer(chunk)) s.partialSince = lineStart(s.partialSince, chunk, Date.now());
      return write(chunk, encoding, cb);
    }) as Parser['write'];
    return parser;
  }

  /**
   * The connection's reply writer (every reply smtp-server sends, from the moment the connection exists) goes
   * through `ownReply` (our texts as they are, the library's own texts replaced by ours: nothing on the wire names
   * or dates smtp-server), AUTH before STARTTLS gets 530 instead of "unknown command", and every 4xx/5xx counts
   * against `limits.max_errors`.
   */
  function reply(conn: ListenerConnection, code: number, data?: string | string[] | null, context?: string | false): void {
    if (code === 220 && greetingSent.delete(conn)) return; // the library's greeting: ours went out at accept
    const s = sessionOf.get(conn);
    const cfg = (s?.rt ?? rt).config;
    let inCode = code;
    let inData = data;
    if (code === 500 && context === 'AUTH' && !conn.session.secure) {
      inCode = AUTH_NEEDS_TLS.code;
      inData = AUTH_NEEDS_TLS.text;
      // AUTH is switched off before STARTTLS (disabledIn): the core's TLS rule for passwords, recorded once
      const tlsRule = s?.rt.policy.authPrecheck(ctxOf(s), '', false);
      if (s && tlsRule && !tlsRule.allow) s.rt.policy.record(ctxOf(s), 'authenticate', tlsRule);
    }
    if (s && (context === 'MAILBOX_SYNTAX_ERROR' || context === 'SENDER_SYNTAX_ERROR')) {
      // refused by the library's parser before the policy core was asked: still one audit line
      s.rt.policy.record(ctxOf(s), context === 'SENDER_SYNTAX_ERROR' ? 'mail' : 'rcpt', deny('address.syntax', 'address refused by the SMTP command parser'));
    }
    const secure = Boolean(conn.secure);
    const out = ownReply(inCode, inData, {
      host: cfg.hostname,
      context,
      secure,
      authUsable: !conn.session.user && (secure || !cfg.smtp.auth_requires_tls),
      message_bytes: cfg.smtp.limits.message_bytes,
    });
    if (out.unmapped !== undefined) {
      rt.log.warn({ event: 'smtp_reply_unmapped', code, text: out.unmapped.slice(0, 200) }, 'smtp-server sent a reply text Gatehouse does not know; sent a generic one');
    }
    batch(conn, out.code, Array.isArray(out.text));
    conn.librarySend(out.code, out.text, false);
    if (s && out.code >= 400 && out.code !== 421 && !s.dropping) {
      s.errors++;
      const budget = decideSessionBudget({ errors: s.errors, maxErrors: cfg.smtp.limits.max_errors });
      if (!budget.allow) {
        s.dropping = true;
        s.rt.policy.record(ctxOf(s), 'errors', budget);
        const bye = tooManyErrors(cfg.hostname);
        conn.librarySend(bye.code, bye.text, false);
      }
    }
  }

  /** A socket greeted at accept: the core's decision that let it in, its address, its session once onConnect ran */
  interface EarlyGreeting {
    readonly decision: Decision;
    readonly ip: string;
    session: SessionState | null;
  }
  /** Plain sockets greeted at accept (greetEarly), with the core's connect decision that let them in */
  const greetedEarly = new WeakMap<net.Socket, EarlyGreeting>();
  /** Their connections, until the library's own greeting (dropped by `reply`) */
  const greetingSent = new WeakSet<Connection>();

  /**
   * The greeting of an allowed client leaves as soon as the socket is accepted, before smtp-server builds its
   * connection, parser and stream plumbing (~40 µs of a session's ~0.45 ms here): the same decision and slot
   * as onConnect's (which then records the decision and goes on as usual), and the same text (`ownReply`) as
   * the library's greeting, which `reply` drops. The library's set-up that follows runs in the same turn,
   * before any byte from the client can be read. Anything else (a refusal, no free slot, greet_pause_ms,
   * shutting down) takes the library's path unchanged.
   */
  function greetEarly(socket: net.Socket): void {
    if (stopping || limits().greet_pause_ms > 0 || socket.destroyed) return;
    const ip = normalizeIp(socket.remoteAddress);
    if (ip === null) return;
    const decision = rt.policy.explainConnect('smtp', ip);
    if (!decision.allow) return;
    const slot = slots.acquire(ip);
    if (!slot.allow) return;
    const early: EarlyGreeting = { decision, ip, session: null };
    // the slot is the session's once onConnect has run (released as any session's, here too when the socket
    // closes); until then it goes back with the socket (the library's maxClients backstop can end a connection
    // before onConnect). One listener for both: a connection costs one 'close' listener of ours, not two.
    socket.once('close', () => {
      if (early.session) release(early.session);
      else slots.release(ip);
    });
    socket.write(greetingLine(rt.config));
    greetedEarly.set(socket, early);
  }

  /** The greeting line for a configuration (built once per config object: it is the same for every client) */
  let greetingFor: { readonly config: Runtime['config']; readonly line: string } | null = null;
  function greetingLine(cfg: Runtime['config']): string {
    if (greetingFor?.config !== cfg) {
      const greeting = ownReply(220, `${cfg.hostname} ESMTP`, { host: cfg.hostname, context: false, secure: false, authUsable: !cfg.smtp.auth_requires_tls, message_bytes: cfg.smtp.limits.message_bytes });
      greetingFor = { config: cfg, line: `220 ${String(greeting.text)}\r\n` };
    }
    return greetingFor.line;
  }

  /** A new connection (before the library's set-up): known by its session object from now on */
  function adopt(conn: Connection): void {
    connections.set(conn.session, conn);
    if (greetedEarly.has(conn._socket)) greetingSent.add(conn);
  }

  /**
   * Replies to pipelined commands (MAIL, RCPT, DATA arrive in one packet and are answered in the same tick)
   * leave in one write, as Postfix flushes only when its input is drained: the socket is corked on the first
   * reply of a tick and uncorked on the next. Not around a greeting/STARTTLS 220 (the socket is about to be
   * wrapped in TLS) nor a 221/421 (the library ends the socket right after, which flushes anyway). The EHLO
   * reply (the one multi-line reply) ends a pipelined group (RFC 2920 §3.1: EHLO comes last in one), so it leaves
   * at once unless it joins a batch already corked: the client waits for it, and nothing follows it in the tick.
   */
  function batch(conn: Connection, code: number, endsGroup: boolean): void {
    const socket = conn._socket;
    if (code === 220 || code === 221 || code === 421 || conn._upgrading) {
      while (socket.writableCorked > 0) socket.uncork(); // what was batched goes first, in plain text
      return;
    }
    if (socket.writableCorked > 0 || socket.destroyed || endsGroup) return;
    socket.cork();
    process.nextTick(() => socket.uncork());
  }

  /** The connection of a session (smtp-server keeps one session object per connection, from its constructor on) */
  const connections = new WeakMap<SMTPServerSession, Connection>();
  function findConnection(session: SMTPServerSession): Connection | null {
    const known = connections.get(session);
    if (known) return known;
    for (const server of servers) {
      for (const c of server.connections) if (c.session === session) return c;
    }
    return null;
  }

  function onConnect(session: SMTPServerSession, cb: Callback): void {
    const conn = findConnection(session);
    const early = conn ? greetedEarly.get(conn._socket) : undefined;
    // greeted at accept: the address greetEarly normalised (the same socket's, as the library's session has it)
    const ip = early ? early.ip : (normalizeIp(session.remoteAddress) ?? session.remoteAddress);
    const s: SessionState = { id: newSessionId(), ip, proxy: undefined, rt, identity: NOBODY, errors: 0, slot: false, inData: false, dropping: false, conn, partialSince: 0 };
    states.set(session, s);
    live.add(s);
    s.proxy = peerOf(conn?._socket)?.proxy;
    if (conn) sessionOf.set(conn, s);
    if (early && conn) {
      // greeted at accept (greetEarly): its decision, and its slot, now the session's (released by greetEarly's
      // 'close' listener from now on)
      greetedEarly.delete(conn._socket);
      early.session = s;
      s.slot = true;
      useDisabled(session, conn._server, disabledFor(s, session.secure));
      cb();
      s.rt.policy.record(ctxOf(s), 'connect', early.decision);
      return;
    }
    if (stopping) return cb(smtpError(SHUTTING_DOWN));
    // the core's connect decision; its audit record (the same one policy.connect makes) is made below
    const ctx = ctxOf(s);
    const decision = s.rt.policy.explainConnect('smtp', ip);
    if (!decision.allow) {
      s.rt.policy.record(ctx, 'connect', decision);
      return cb(smtpError(connectReply(decision)));
    }
    const slot = slots.acquire(ip);
    if (!slot.allow) {
      s.rt.policy.record(ctx, 'connect', decision);
      s.rt.policy.record(ctx, 'connect', slot);
      return cb(smtpError(connectReply(slot)));
    }
    s.slot = true;
    // the slot goes back when the TCP socket closes, whatever happened on top of it (e.g. a failed handshake)
    s.conn?._socket.once('close', () => release(s));
    useDisabled(session, s.conn?._server, disabledFor(s, session.secure));
    cb();
    // An allowed connection is recorded once its greeting is written (cb writes it): in the same synchronous
    // turn, so the audit trail and its subscribers get the same record before anything else of the session
    // runs, and the greeting does not wait for the record and its log line to be built.
    s.rt.policy.record(ctx, 'connect', decision);
  }

  function release(s: SessionState): void {
    live.delete(s);
    if (s.slot) {
      s.slot = false;
      slots.release(s.ip);
    }
  }

  function onSecure(_socket: unknown, session: SMTPServerSession, cb: Callback): void {
    const s = stateOf(session);
    // The library forgets the pre-TLS identity (RFC 3207 4.2); so do we.
    s.identity = NOBODY;
    session.disabledCommands = disabledFor(s, true);
    cb();
  }

  function onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void {
    const s = stateOf(session);
    const fail = (r: SmtpReply) => cb(null, { responseCode: r.code, message: r.text });
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return fail(AUTH_FAILED);
    if (session.envelope.mailFrom) return fail(AUTH_IN_TRANSACTION);
    const authzid = decideAuthzid({ mechanism: auth.method, authcid: auth.authcid, authzid: auth.authzid });
    if (!authzid.allow) {
      s.rt.policy.record(ctxOf(s), 'authenticate', authzid);
      s.rt.policy.noteFailure(ctxOf(s), auth.authcid ?? '').catch((err: unknown) => rt.log.error({ event: 'smtp_auth_error', error: String(err) }, 'cannot count a failed login'));
      return fail(AUTH_FAILED);
    }
    // precheck (TLS) -> throttle -> verify -> record: all inside policy.authenticate; a throttled login is never verified
    s.rt.policy
      .authenticate(ctxOf(s), auth.username ?? '', auth.password ?? '', session.secure)
      .then(
        async (out) => {
          if (out.decision.allow && out.identity?.kind === 'user') {
            s.identity = out.identity;
            return cb(null, { user: out.identity.name });
          }
          if (out.delayMs > 0) await new Promise((r) => setTimeout(r, Math.min(out.delayMs, 30_000)));
          fail(out.decision.rule === 'auth.tls_required' ? AUTH_NEEDS_TLS : out.temporary ? AUTH_TEMPORARY : AUTH_FAILED);
        },
        () => fail(AUTH_TEMPORARY),
      )
      .catch((err: unknown) => rt.log.error({ event: 'smtp_auth_error', error: String(err) }, 'AUTH reply failed'));
  }

  /** RFC 5321 §4.1.1.11: a MAIL/RCPT parameter that was not announced is refused with 555 (policy/smtp decides). */
  function unsupportedParameter(s: SessionState, stage: 'mail' | 'rcpt', address: SMTPServerAddress): Error | null {
    const { decision, parameter } = decideParameters({ stage, params: address.args });
    if (decision.allow) return null;
    s.rt.policy.record(ctxOf(s), stage, decision, address.address);
    return smtpError(unsupportedParameterReply(parameter ?? '?'));
  }

  function onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    const s = stateOf(session);
    const bad = unsupportedParameter(s, 'mail', address);
    if (bad) return cb(bad);
    const r = s.rt.policy.sender(ctxOf(s), address.address);
    if (!r.decision.allow) return cb(smtpError(senderReply(r.decision)));
    senders.set(address, r.address ? r.address.address : '');
    cb();
  }

  function onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    const s = stateOf(session);
    const rcpts = session.envelope.rcptTo;
    const key = address.address.toLowerCase();
    const bad = unsupportedParameter(s, 'rcpt', address);
    if (bad) return cb(bad);
    const count = decideRecipientCount({ count: rcpts.length, limit: s.rt.config.smtp.limits.recipients, repeat: rcpts.some((a) => a.address.toLowerCase() === key) });
    if (!count.allow) {
      s.rt.policy.record(ctxOf(s), 'rcpt', count, address.address);
      return cb(smtpError(TOO_MANY_RECIPIENTS));
    }
    const r = s.rt.policy.recipient(ctxOf(s), address.address);
    if (!r.decision.allow || !r.address) return cb(smtpError(recipientReply(r.decision)));
    recipients.set(address, r.address);
    cb();
  }

  /**
   * DATA: every chunk goes through the data guard; a message that reaches STREAM_FROM bytes (with an envelope
   * the core approved) is written to the spool as it arrives (MailQueue.draft: what the guard kept so far, then
   * each chunk), so that after its end only the tail and an fsync stand between it and the 250. Smaller ones are
   * kept in memory and queued whole at the end, as before. The guard's verdict at the end decides either way: a
   * refused message's draft is dropped (as soon as the guard fails), never committed.
   */
  function onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const s = stateOf(session);
    const maxBytes = s.rt.config.smtp.limits.message_bytes;
    const guard = new DataGuard(maxBytes);
    let draft: Drafted | null = null;
    /** a draft was started or could not be (then the message stays in memory): never tried twice */
    let drafted = false;
    let ended = false;
    let finished = false;
    const finish = (err: Error | null, message?: string) => {
      if (finished) return;
      finished = true;
      s.inData = false;
      cb(err, message);
    };
    s.inData = true;
    stream.on('data', (chunk: Buffer) => {
      guard.write(chunk);
      if (guard.failed) {
        draft?.queued.abort();
        draft = null;
      } else if (draft) {
        if (!draft.queued.write(chunk)) {
          stream.pause();
          draft.queued.onRoom(() => stream.resume());
        }
      } else if (!drafted && guard.storedBytes >= STREAM_FROM && queue.draft) {
        drafted = true;
        draft = startDraft(s, session, guard);
      }
    });
    stream.on('error', () => {
      draft?.queued.abort();
      finish(smtpError(INTERNAL));
    });
    // the connection went away in the middle of the message (the library destroys the stream): no entry
    stream.on('close', () => {
      if (!ended) draft?.queued.abort();
    });
    stream.on('end', () => {
      ended = true;
      accept(s, session, stream, guard, maxBytes, draft)
        .then(
          (id) => finish(null, `2.6.0 Ok: queued as ${id}`),
          (err: unknown) => {
            draft?.queued.abort(); // refused (or not stored): the draft never becomes an entry
            finish(err instanceof Error && 'responseCode' in err ? err : smtpError(INTERNAL));
          },
        )
        .catch((err: unknown) => rt.log.error({ event: 'smtp_data_error', error: String(err) }, 'DATA reply failed'));
    });
  }

  async function accept(s: SessionState, session: SMTPServerSession, stream: SMTPServerDataStream, guard: DataGuard, maxBytes: number, draft: Drafted | null): Promise<string> {
    const verdict = guard.end();
    const ctx = ctxOf(s);
    const size = decideMessageSize({ stage: 'data', bytes: verdict.bytes, limit: maxBytes, overServerLimit: stream.sizeExceeded });
    if (!size.allow) {
      s.rt.policy.record(ctx, 'data', size);
      throw smtpError(guardReply('too_big', maxBytes));
    }
    if (verdict.fault) {
      s.rt.policy.record(ctx, 'data', deny(`smtp.data.${verdict.fault}`, `message refused: ${verdict.fault.replace(/_/g, ' ')}`));
      throw smtpError(guardReply(verdict.fault, maxBytes));
    }
    const p = draft ?? prepare(s, session);
    if (!p) {
      s.rt.policy.record(ctx, 'data', deny('smtp.data.envelope', 'envelope was not approved by the policy core; failing closed'));
      throw smtpError(INTERNAL);
    }
    const bytes = p.header.length + verdict.bytes;
    // without a draft: `data` is handed over, the queue may move a large one to its writer thread without a copy
    const pending = draft ? draft.queued.commit() : queue.enqueue(p.envelope, guard.body(p.header), p.queueId, { handOver: true });
    inflight.add(pending);
    let id: string;
    try {
      id = await pending;
    } catch (err) {
      s.rt.log.error({ event: 'smtp_enqueue_failed', session: s.id, error: err instanceof Error ? err.message : String(err) }, 'could not queue message; answered 451');
      s.rt.policy.record(ctx, 'data', deny('smtp.queue', 'queue write failed; client told to retry'));
      throw smtpError(QUEUE_FAILED);
    } finally {
      inflight.delete(pending);
    }
    s.rt.policy.record(ctx, 'data', allow('smtp.queued', `queued as ${id} (${bytes} bytes, ${p.envelope.recipients.length} recipient(s))`), id);
    return id;
  }

  /** What a message is queued with: the core's envelope, its queue id and its Received: header. */
  interface Prepared {
    readonly envelope: Envelope;
    readonly queueId: string;
    readonly header: Buffer;
  }
  /** A message being written to the spool as it arrives */
  interface Drafted extends Prepared {
    readonly queued: QueueDraft;
  }

  /** The envelope of the session's transaction as the core approved it; null when it did not (fail closed). */
  function prepare(s: SessionState, session: SMTPServerSession): Prepared | null {
    const env = session.envelope;
    const sender = env.mailFrom ? senders.get(env.mailFrom) : undefined;
    const rcpts = env.rcptTo.map((a) => recipients.get(a));
    if (sender === undefined || rcpts.length === 0 || rcpts.some((r) => r === undefined)) return null;
    const approved = rcpts as NormalizedAddress[];
    const user = s.identity.kind === 'user' ? s.identity.name : null;
    const cipher = session.secure && session.tlsOptions ? session.tlsOptions : null;
    const queueId = newQueueId();
    const header = receivedHeader({
      helo: session.hostNameAppearsAs || '',
      clientIp: s.ip,
      hostname: s.rt.config.hostname,
      opening: session.openingCommand || 'HELO',
      tls: cipher ? { version: cipher.version, cipher: cipher.standardName || cipher.name } : null,
      user,
      showAuthUser: s.rt.config.smtp.received.show_auth_user,
      queueId,
      recipients: approved.map((r) => r.address),
    });
    const envelope: Envelope = { sender, recipients: approved, clientIp: s.ip, helo: session.hostNameAppearsAs || '', user, tls: session.secure, session: s.id };
    return { envelope, queueId, header: Buffer.from(header, 'latin1') };
  }

  /** Start writing a large message to the spool: the Received: header, what the guard kept, then each chunk. */
  function startDraft(s: SessionState, session: SMTPServerSession, guard: DataGuard): Drafted | null {
    const p = prepare(s, session);
    if (!p || !queue.draft) return null;
    let queued: QueueDraft;
    try {
      queued = queue.draft(p.envelope, p.queueId);
    } catch (err) {
      s.rt.log.warn({ event: 'smtp_draft_failed', session: s.id, error: err instanceof Error ? err.message : String(err) }, 'cannot write the message to the spool as it arrives; keeping it in memory');
      return null;
    }
    queued.write(p.header);
    for (const chunk of guard.detach()) queued.write(chunk);
    return { ...p, queued };
  }

  function onClose(session: SMTPServerSession): void {
    const s = states.get(session);
    if (s) release(s);
  }

  function options(secure: boolean): SMTPServerOptions {
    const c = rt.config.smtp;
    return {
      ...serverTlsOptions(rt.tls),
      secure,
      name: rt.config.hostname,
      size: c.limits.message_bytes,
      rejectOversized: true,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      allowInsecureAuth: !c.auth_requires_tls,
      disabledCommands: [...ALWAYS_DISABLED],
      hideSTARTTLS: false,
      hidePIPELINING: false,
      hide8BITMIME: false,
      hideSMTPUTF8: true,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideREQUIRETLS: true,
      disableReverseLookup: true,
      useXClient: false,
      useXForward: false,
      // PROXY protocol is read by net/proxy-gate.ts (v1 and v2, decided by policy/proxy.ts), never by smtp-server (v1 only)
      useProxy: false,
      // our own cap (policy/limits: audited, 421 4.7.0) answers first; the library's is a backstop
      maxClients: c.limits.connections + 1,
      socketTimeout: c.limits.idle_timeout_s * 1000,
      closeTimeout: 10_000,
      maxCommandLength: MAX_COMMAND_LINE,
      lenientAddressParsing: false,
      logger: false,
      onConnect: guarded(onConnect, (_s, cb) => cb(smtpError({ code: 421, text: INTERNAL.text }))),
      onSecure: guarded(onSecure, (_sock, _s, cb) => cb(smtpError(INTERNAL))),
      onAuth: guarded(onAuth, (_a, _s, cb) => cb(null, { responseCode: AUTH_FAILED.code, message: AUTH_FAILED.text })),
      onMailFrom: guarded(onMailFrom, (_a, _s, cb) => cb(smtpError(INTERNAL))),
      onRcptTo: guarded(onRcptTo, (_a, _s, cb) => cb(smtpError(INTERNAL))),
      onData: guarded(onData, (stream, _s, cb) => {
        stream.resume();
        cb(smtpError(INTERNAL));
      }),
      onClose: guarded(onClose, () => undefined),
    };
  }

  function makeServer(secure: boolean): SMTPServer {
    const server = new SMTPServer(options(secure));
    server.options.disabledCommands = disabledIn(rt, secure); // after the constructor, which copies the list
    if (!secure) acceptDirectly(server, greetEarly);
    // PROXY protocol (smtp.proxy_protocol) is read before smtp-server (and the SMTPS handshake) sees a socket
    new ProxyGate({
      service: 'smtp',
      implicitTls: secure,
      settings: () => ({ policy: rt.policy, timeoutMs: rt.config.smtp.proxy_protocol.header_timeout_s * 1000, hostname: rt.config.hostname }),
    }).interpose(server.server);
    installGreetPause(
      server,
      () => rt.config.smtp.limits.greet_pause_ms,
      (remote) => {
        const ip = normalizeIp(remote) ?? remote;
        rt.policy.record({ service: 'smtp', ip, identity: NOBODY, session: newSessionId() }, 'connect', decideGreeting({ talkedBeforeGreeting: true, greetPauseMs: rt.config.smtp.limits.greet_pause_ms }));
      },
      adopt,
      ListenerConnection,
    );
    // Replies are written one by one; without this, Nagle × delayed ACK stalls every pipelined batch ~40 ms.
    server.server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
    server.on('error', (err: Error & { code?: string }) => {
      rt.log.debug({ event: 'smtp_socket_error', code: err.code, error: err.message }, 'smtp connection error');
    });
    servers.push(server);
    return server;
  }

  async function listen(server: SMTPServer, name: string, address: string): Promise<BoundAddress> {
    const { host, port } = parseListen(address);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.server.once('error', onError);
      server.listen(port, host, () => {
        server.server.off('error', onError);
        resolve();
      });
    });
    const bound = server.server.address();
    return { name, host, port: typeof bound === 'object' && bound ? bound.port : port };
  }

  function closeServer(server: SMTPServer): Promise<void> {
    return new Promise((resolve) => {
      if (!server.server.listening) return resolve();
      server.close(() => resolve());
    });
  }

  /** Once a second: a line that has been arriving for longer than line_deadline_s ends its session (421). */
  let sweeper: NodeJS.Timeout | null = null;
  function sweepSlowLines(): void {
    const now = Date.now();
    for (const s of live) {
      if (s.partialSince === 0 || s.dropping || !s.conn) continue;
      const d = decideLineDeadline(s.partialSince, now, s.rt.config.smtp.limits.line_deadline_s);
      if (d.allow) continue;
      s.dropping = true;
      s.rt.policy.record(ctxOf(s), 'line', d);
      s.conn.send(LINE_TOO_SLOW.code, LINE_TOO_SLOW.text, false);
      s.conn.close();
    }
  }

  return {
    service: 'smtp',
    activeSessions: () => slots.active,
    async start(): Promise<BoundAddress[]> {
      sweeper ??= setInterval(sweepSlowLines, 1000).unref();
      const out: BoundAddress[] = [await listen(makeServer(false), 'plain', rt.config.smtp.listen)];
      const implicit = rt.config.smtp.implicit_tls_listen;
      if (implicit) out.push(await listen(makeServer(true), 'implicit_tls', implicit));
      queue.start();
      return out;
    },
    reload(next: Runtime): void {
      rt = next;
      const c = next.config.smtp;
      slots.configure(c.limits.connections, c.limits.connections_per_ip);
      for (const server of servers) {
        const list = disabledIn(next, Boolean(server.options.secure));
        if (server.options.disabledCommands !== list) {
          // the sessions that use the server's list keep the one they started with
          for (const conn of server.connections) conn.session.disabledCommands ??= server.options.disabledCommands;
          server.options.disabledCommands = list;
        }
        server.updateSecureContext(serverTlsOptions(next.tls));
        Object.assign(server.options, {
          name: next.config.hostname,
          size: c.limits.message_bytes,
          maxClients: c.limits.connections + 1,
          socketTimeout: c.limits.idle_timeout_s * 1000,
          allowInsecureAuth: !c.auth_requires_tls,
        });
      }
      queue.reload?.(next);
    },
    async stop(graceMs: number): Promise<void> {
      if (stopping) return;
      stopping = true;
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
      const grace = Math.max(0, graceMs);
      for (const server of servers) server.options.closeTimeout = Math.max(grace, 50);
      const closed = Promise.all(servers.map(closeServer));
      // Idle sessions are told at once; a session in the middle of DATA gets the grace period.
      const kickIdle = () => {
        for (const s of live) {
          if (!s.inData && s.conn && !s.dropping) {
            s.dropping = true;
            s.conn.send(SHUTTING_DOWN.code, SHUTTING_DOWN.text, false);
          }
        }
      };
      kickIdle();
      const timer = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
      const deadline = Date.now() + grace;
      while ([...live].some((s) => s.inData) && Date.now() < deadline) {
        await Promise.race([Promise.allSettled([...inflight]), timer(Math.min(50, Math.max(1, deadline - Date.now())))]);
        kickIdle();
      }
      kickIdle();
      await Promise.race([closed, timer(Math.max(0, deadline - Date.now()) + 100)]);
      await queue.stop(grace);
    },
  };
}
