/*
 * The transport wrapper for the PROXY protocol (ARCHITECTURE.md "Transport wrappers"): it sits in front of a
 * listener's net.Server, before smtp-server, ftp-srv, tls.Server or our own NNTP sessions see a socket, and
 * hands them a socket whose remoteAddress/remotePort are the client's (the header's) and whose proxy is
 * remembered (peerOf). The decision is the policy core's (policy/proxy.ts); this file only reads bytes.
 *
 * - From a peer in `<service>.proxy_protocol.from`: the header is read before anything else (before the TLS
 *   handshake on an implicit-TLS port), at most MAX_HEADER_BYTES and `header_timeout_s`; what follows it is
 *   put back for the protocol. No header, half a header, a bad one, or one without a TCP client: refused and
 *   logged. LOCAL (the balancer's health check): answered here by a tiny script of the protocol's greeting,
 *   HELO/NOOP and QUIT, never handed to the listener and never a decision line (one per check would bury the log).
 * - From anyone else: an implicit-TLS port looks at the first bytes before the handshake (the client speaks
 *   first there); a plain port greets as usual and the first data the client sends is looked at before the
 *   protocol's parser gets it. A PROXY signature there is refused (`proxy.unexpected`); nothing else is
 *   delayed or changed. A header is never believed from a peer that is not listed.
 * - A service with an empty `from` (the default) passes every socket straight through.
 */
import type net from 'node:net';
import type { Policy, Service } from '../policy/index.js';
import { NOBODY } from '../policy/index.js';
import { normalizeIp } from '../policy/network.js';
import type { ProxyHeaderOutcome } from '../policy/proxy.js';
import { MAX_HEADER_BYTES, parseProxyHeader, startsWithProxySignature, type ProxyParse } from './proxy-protocol.js';
import { randomHex } from './random.js';

export interface ProxyPeer {
  /** the client, from the header (IPv4-mapped addresses as IPv4) */
  readonly client: string;
  readonly clientPort: number;
  /** the TCP peer that sent the header */
  readonly proxy: string;
  readonly version: 1 | 2;
}

export interface ProxyGateSettings {
  readonly policy: Policy;
  readonly timeoutMs: number;
  readonly hostname: string;
}

export interface ProxyGateOptions {
  readonly service: Service;
  /** TLS starts at once on this port (SMTPS, NNTPS): nothing is written in clear there */
  readonly implicitTls: boolean;
  /** asked per connection, so a reload applies to the next one */
  readonly settings: () => ProxyGateSettings;
}

const peers = new WeakMap<net.Socket, ProxyPeer>();

/** The proxy peer behind this socket (or behind the TCP socket a TLS socket wraps), if any. */
export function peerOf(socket: net.Socket | null | undefined): ProxyPeer | undefined {
  if (!socket) return undefined;
  return peers.get(socket) ?? peers.get((socket as { _parent?: net.Socket })._parent as net.Socket);
}

function assume(socket: net.Socket, peer: ProxyPeer): void {
  peers.set(socket, peer);
  Object.defineProperty(socket, 'remoteAddress', { value: peer.client, configurable: true });
  Object.defineProperty(socket, 'remotePort', { value: peer.clientPort, configurable: true });
  Object.defineProperty(socket, 'remoteFamily', { value: peer.client.includes(':') ? 'IPv6' : 'IPv4', configurable: true });
}

/** A TLS socket made over a proxied TCP socket reports the client too (its own getpeername sees the proxy). */
export function adoptPeer(socket: net.Socket): void {
  const peer = peerOf(socket);
  if (peer && !peers.has(socket)) assume(socket, peer);
}

const REFUSAL: Record<Service, string> = {
  smtp: '554 5.7.0 PROXY protocol error\r\n',
  ftp: '421 PROXY protocol error\r\n',
  nntp: '502 PROXY protocol error\r\n',
};

interface HealthScript {
  greeting(host: string): string;
  /** the reply to a command verb; `end` closes after it */
  answer(verb: string, host: string): { reply: string; end: boolean };
}

const HEALTH: Record<Service, HealthScript> = {
  smtp: {
    greeting: (h) => `220 ${h} ESMTP Gatehouse health check\r\n`,
    answer: (v, h) =>
      v === 'HELO' || v === 'EHLO' ? { reply: `250 ${h}\r\n`, end: false } : v === 'NOOP' || v === 'RSET' ? { reply: '250 2.0.0 Ok\r\n', end: false } : v === 'QUIT' ? { reply: '221 2.0.0 Bye\r\n', end: true } : { reply: '502 5.5.1 Health check connection\r\n', end: true },
  },
  ftp: {
    greeting: () => '220 Gatehouse FTP health check\r\n',
    answer: (v) => (v === 'NOOP' ? { reply: '200 NOOP ok\r\n', end: false } : v === 'QUIT' ? { reply: '221 Goodbye\r\n', end: true } : { reply: '502 Health check connection\r\n', end: true }),
  },
  nntp: {
    greeting: (h) => `201 ${h} Gatehouse NNTP health check\r\n`,
    answer: (v) => (v === 'QUIT' ? { reply: '205 Bye\r\n', end: true } : { reply: '502 Health check connection\r\n', end: true }),
  },
};

const HEALTH_MAX_BYTES = 512;
const HEALTH_MS = 10_000;
const LINGER_MS = 2_000;

type ReadOutcome = { readonly parse: ProxyParse | 'timeout' | 'closed'; readonly buffered: Buffer };

/**
 * Read from `socket` until the bytes so far are a whole header, not a header, or invalid; bounded by
 * MAX_HEADER_BYTES and `timeoutMs`. What was read is returned; the caller puts back what is not the header.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number): Promise<ReadOutcome> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (parse: ReadOutcome['parse']) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('end', onClosed);
      socket.removeListener('close', onClosed);
      socket.removeListener('error', onClosed);
      if (parse === 'closed' || parse === 'timeout') socket.on('error', () => undefined);
      resolve({ parse, buffered: buf });
    };
    const onClosed = () => finish('closed');
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!done && (chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const p = parseProxyHeader(buf);
        if (p.kind !== 'incomplete') finish(p);
        else if (buf.length > MAX_HEADER_BYTES) finish({ kind: 'invalid', reason: `no complete header in ${MAX_HEADER_BYTES} bytes` });
      }
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    timer.unref();
    socket.on('error', onClosed);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.on('readable', onReadable);
  });
}

/** What the policy core is told about a read. */
export function headerOutcome(parse: ProxyParse | 'timeout'): ProxyHeaderOutcome {
  if (parse === 'timeout') return { kind: 'timeout' };
  switch (parse.kind) {
    case 'none':
    case 'incomplete':
      return { kind: 'none' };
    case 'invalid':
      return { kind: 'malformed', reason: parse.reason };
    case 'header':
      if (parse.command === 'local') return { kind: 'local' };
      return { kind: 'proxy', version: parse.version, client: parse.source ? normalizeIp(parse.source.ip) : null };
  }
}

/** Close a refused socket: the protocol's error line where a clear-text reply can be read, then a short linger. */
function refuse(socket: net.Socket, line: string | null): void {
  socket.on('error', () => undefined);
  socket.removeAllListeners('data');
  if (line && socket.writable) socket.end(line);
  else socket.destroy();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

export class ProxyGate {
  constructor(private readonly opts: ProxyGateOptions) {}

  /**
   * Put the gate in front of `server`: its 'connection' listeners (the library's accept handler; tls.Server's
   * handshake) run only for sockets the gate lets through, with the client's address in place.
   */
  interpose(server: net.Server): void {
    const inner = server.listeners('connection') as Array<(socket: net.Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: net.Socket) => {
      this.accept(socket, () => {
        for (const fn of inner) fn.call(server, socket);
      });
    });
  }

  accept(socket: net.Socket, next: () => void): void {
    const s = this.opts.settings();
    const { service } = this.opts;
    if (!s.policy.proxyEnabled(service)) return next();
    const peer = normalizeIp(socket.remoteAddress);
    // no peer address: the connection was reset before it was accepted (getpeername fails); nobody to answer
    if (peer === null) return void socket.destroy();
    // the socket is ours until next(): a reset meanwhile must not become an unhandled 'error'
    socket.on('error', () => undefined);
    const ctx = { service, ip: peer, identity: NOBODY, session: randomHex(6) };
    const refusal = this.opts.implicitTls ? null : REFUSAL[service];
    if (!s.policy.proxyListed(service, peer)) {
      if (!this.opts.implicitTls) {
        this.screen(socket, () => {
          s.policy.proxy(ctx, { peer, listed: false, header: { kind: 'malformed', reason: 'signature seen' } });
          refuse(socket, refusal);
        });
        return next();
      }
      void readProxyHeader(socket, s.timeoutMs).then(({ parse, buffered }) => {
        if (parse === 'closed') return socket.destroy();
        if (parse !== 'timeout' && parse.kind !== 'none') {
          s.policy.proxy(ctx, { peer, listed: false, header: headerOutcome(parse) });
          return refuse(socket, null);
        }
        if (buffered.length > 0) socket.unshift(buffered);
        next();
      });
      return;
    }
    void readProxyHeader(socket, s.timeoutMs).then(({ parse, buffered }) => {
      if (parse === 'closed') return socket.destroy();
      const header = headerOutcome(parse);
      if (header.kind === 'local') {
        const d = s.policy.proxy(ctx, { peer, listed: true, header }, false);
        if (!d.allow || parse === 'timeout' || parse.kind !== 'header') return refuse(socket, refusal);
        const rest = buffered.subarray(parse.length);
        if (rest.length > 0) socket.unshift(rest);
        return this.healthCheck(socket, s.hostname);
      }
      const client = header.kind === 'proxy' ? header.client : null;
      const d = s.policy.proxy(client ? { ...ctx, ip: client, proxy: peer } : ctx, { peer, listed: true, header });
      if (!d.allow || !client || parse === 'timeout' || parse.kind !== 'header') return refuse(socket, refusal);
      const rest = buffered.subarray(parse.length);
      if (rest.length > 0) socket.unshift(rest);
      assume(socket, { client, clientPort: parse.source?.port ?? 0, proxy: peer, version: parse.version });
      next();
    });
  }

  /**
   * A plain port, a peer that is not listed: the first chunk of data is looked at before any 'data' listener
   * (the protocol's parser) gets it. One wrapped emit, removed at the first chunk.
   */
  private screen(socket: net.Socket, onHeader: () => void): void {
    const own = socket as unknown as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
    const original = own.emit;
    own.emit = function screened(this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'data') return original.call(this, event, ...args);
      delete (own as { emit?: unknown }).emit;
      const chunk = args[0];
      if (Buffer.isBuffer(chunk) && startsWithProxySignature(chunk)) {
        onHeader();
        return false;
      }
      return original.call(this, event, ...args);
    };
  }

  /** LOCAL: answer the balancer's health check with the protocol's greeting, HELO/NOOP and QUIT; nothing else. */
  private healthCheck(socket: net.Socket, host: string): void {
    const script = HEALTH[this.opts.service];
    socket.on('error', () => socket.destroy());
    socket.setTimeout(HEALTH_MS, () => socket.destroy());
    let seen = 0;
    let pending = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > HEALTH_MAX_BYTES) return socket.destroy();
      pending += chunk.toString('latin1');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        const verb = (line.split(' ')[0] ?? '').toUpperCase();
        const { reply, end } = script.answer(verb, host);
        if (end) {
          socket.removeListener('data', onData);
          socket.end(reply);
          setTimeout(() => socket.destroy(), LINGER_MS).unref();
          return;
        }
        socket.write(reply);
      }
    };
    socket.on('data', onData);
    socket.on('end', () => socket.end());
    if (this.opts.implicitTls) {
      // a TLS port's health check is a TCP connect (HAProxy `check` with send-proxy-v2): nothing to say in clear
      socket.end();
      return;
    }
    socket.write(script.greeting(host));
  }
}
