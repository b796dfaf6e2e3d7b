/*
 * Data connections. Passive: a listener on a random port of `passive.ports`, on the control connection's
 * local address, kept by the session across its transfers (PassivePort), that accepts one connection per
 * PASV/EPSV and only from the control connection's own client address (others are dropped and
 * logged, the session keeps waiting for its client) and speaks TLS when the session chose PROT P. Active: only to the client's own address and a port >= 1024, and
 * only when `active_mode: true` (otherwise PORT/EPRT are refused before this file is reached).
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { headerOutcome, readProxyHeader } from '../net/proxy-gate.js';
import type { Decision } from '../policy/index.js';
import { normalizeIp } from '../policy/network.js';
import type { ProxyHeaderOutcome } from '../policy/proxy.js';

const require = createRequire(import.meta.url);
// ftp-srv's connectors keep the contract its ABOR handler and ftp-srv itself expect (waitForConnection, end()).
const PassiveBase = require('ftp-srv/src/connector/passive.js') as new (connection: any) => any;
const ActiveBase = require('ftp-srv/src/connector/active.js') as new (connection: any) => any;

const ACCEPT_WINDOW_MS = 30_000;
const MAX_INTRUDERS = 20;
const HANDSHAKE_MS = 10_000;

/**
 * Passive data connections through a balancer (ftp.proxy_protocol): a connection from a listed peer must start
 * with a PROXY header, and the header's address is what is matched against the control connection's client.
 */
export interface DataProxy {
  listed(ip: string): boolean;
  readonly timeoutMs: number;
  /** the policy core's word on a data connection's header (the caller logs refusals) */
  decide(peer: string, header: ProxyHeaderOutcome): Decision;
}

export interface PassiveOptions {
  readonly clientIp: string;
  /** set when ftp.proxy_protocol lists peers */
  readonly proxy?: DataProxy | undefined;
  readonly ports: readonly [number, number];
  /** asked at accept time: the TLS context when the data channel is protected (PROT P), else null */
  readonly tls: () => tls.SecureContext | null;
  readonly onForeign: (ip: string) => void;
  readonly idleMs: number;
}

export interface DataConnector {
  dataServer: net.Server | null;
  dataSocket: (net.Socket & { connected?: boolean }) | null;
  readonly socket: (net.Socket & { connected?: boolean }) | null;
  waitForConnection(opts?: { timeout?: number; delay?: number }): Promise<net.Socket>;
  end(): void;
}

/**
 * ftp-srv's closeSocket calls end() even on a socket whose writable side is already finished (a STOR
 * socket the client ended: allowHalfOpen is off), which builds an ERR_STREAM_ALREADY_FINISHED with its
 * stack on every upload. Same effect without that: end what is still open, then destroy.
 */
function closeSocket(this: DataConnector): void {
  const socket = this.dataSocket;
  if (!socket) return;
  this.dataSocket = null;
  if (socket.destroyed || socket.writableEnded) socket.destroy();
  else socket.end(() => socket.destroy());
}

/** TLS data connection → the TCP socket under it (see endedCleanly). */
const transports = new WeakMap<net.Socket, net.Socket>();
const EMPTY = Buffer.alloc(0);

/**
 * Did the client end the data connection (FIN) rather than reset it? libuv reports a reset that follows a short
 * read as an ordinary end of stream (its POLLHUP shortcut: no read ever returns ECONNRESET), so a client that died
 * mid-upload would look exactly like one that finished, and a truncated file would get its 226. A zero-length
 * write on the TCP socket puts nothing on the wire for a live peer and fails at once (ECONNRESET, EPIPE) on a reset
 * one. The TCP sockets of data connections allow half-open, so the write is still possible after the end of
 * the stream.
 */
export function endedCleanly(socket: net.Socket): Promise<boolean> {
  const tcp = transports.get(socket) ?? socket;
  if (tcp.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 5_000);
    tcp.write(EMPTY, (err) => {
      clearTimeout(timer);
      resolve(!err);
    });
  });
}

/** How long a session's passive listener stays open with no transfer armed (then the next PASV opens another). */
const PARK_MS = 10_000;

/** Every session's listener that is open with nothing armed: a PASV that finds the range full closes them. */
const parked = new Set<PassivePort>();

interface Armed {
  readonly connector: DataConnector;
  readonly opts: PassiveOptions;
  readonly timer: NodeJS.Timeout;
  intruders: number;
}

/**
 * One session's passive listener, kept open across its consecutive transfers (listening on a fresh socket per
 * PASV/EPSV cost more than the rest of the command). It accepts a connection only while a transfer is armed
 * (from the PASV/EPSV reply until the first connection from the client's address), never more than one per
 * transfer, and only from the control connection's address: anything else is dropped at once (a foreign
 * address is logged). Closed when the session ends, or after PARK_MS with nothing armed.
 */
export class PassivePort {
  private server: net.Server | null = null;
  private host = '';
  private port = 0;
  private armed: Armed | null = null;
  /** the options of the last transfer armed (who the client is, where to log a foreign address) */
  private last: PassiveOptions | null = null;
  private parkTimer: NodeJS.Timeout | null = null;
  private closed = false;

  /** the port listened on, 0 when closed */
  get listening(): number {
    return this.server ? this.port : 0;
  }

  /** Arm the listener (opening one when none fits `host` and `opts.ports`) for `connector`'s next connection. */
  async arm(connector: DataConnector, opts: PassiveOptions, host: string): Promise<number> {
    this.disarm();
    const [lo, hi] = opts.ports;
    if (!this.server || this.host !== host || this.port < lo || this.port > hi) {
      this.shut();
      await this.open(host, opts.ports);
    }
    if (this.closed) throw new Error('session ended');
    if (this.parkTimer) clearTimeout(this.parkTimer);
    this.parkTimer = null;
    parked.delete(this);
    const timer = setTimeout(() => {
      if (!connector.dataSocket) connector.end();
    }, ACCEPT_WINDOW_MS);
    timer.unref();
    this.armed = { connector, opts, timer, intruders: 0 };
    this.last = opts;
    return this.port;
  }

  /** No transfer expects a connection any more (all of them, or only `connector`'s). */
  disarm(connector?: DataConnector): void {
    const a = this.armed;
    if (!a || (connector && a.connector !== connector)) return;
    clearTimeout(a.timer);
    this.armed = null;
    this.park();
  }

  /** The session ended: stop listening for good. */
  close(): void {
    this.closed = true;
    this.disarm();
    this.shut();
  }

  private park(): void {
    if (this.parkTimer || !this.server) return;
    parked.add(this);
    this.parkTimer = setTimeout(() => {
      this.parkTimer = null;
      if (!this.armed) this.shut();
    }, PARK_MS);
    this.parkTimer.unref();
  }

  private shut(): void {
    if (this.parkTimer) clearTimeout(this.parkTimer);
    this.parkTimer = null;
    parked.delete(this);
    this.server?.close();
    this.server = null;
    this.port = 0;
  }

  private async open(host: string, range: readonly [number, number]): Promise<void> {
    try {
      await this.tryOpen(host, range);
    } catch (err) {
      // The range is full. Listeners other sessions keep between their transfers hold ports nobody is
      // waiting on: close them (their next PASV opens another) and try once more.
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || parked.size === 0) throw err;
      for (const p of [...parked]) if (p !== this) p.shut();
      await this.tryOpen(host, range);
    }
  }

  private async tryOpen(host: string, [lo, hi]: readonly [number, number]): Promise<void> {
    const width = hi - lo + 1;
    const first = Math.floor(Math.random() * width);
    let lastErr: unknown = null;
    for (let i = 0; i < Math.min(width, 64); i++) {
      const port = lo + ((first + i) % width);
      const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.accept(socket));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ port, host, exclusive: true }, () => {
            server.removeListener('error', reject);
            resolve();
          });
        });
      } catch (err) {
        lastErr = err;
        server.close();
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || (err as NodeJS.ErrnoException).code === 'EACCES') continue;
        throw err;
      }
      server.on('error', () => undefined);
      if (this.closed) {
        server.close();
        throw new Error('session ended');
      }
      this.server = server;
      this.host = host;
      this.port = port;
      return;
    }
    throw lastErr instanceof Error ? lastErr : new Error('no free passive port');
  }

  private accept(socket: net.Socket): void {
    const peer = normalizeIp(socket.remoteAddress) ?? String(socket.remoteAddress);
    const proxy = (this.armed?.opts ?? this.last)?.proxy;
    if (!proxy?.listed(peer)) return this.admit(socket, peer);
    // from the balancer: the header (bounded in size and time) names the client; nothing else is believed
    socket.on('error', () => socket.destroy());
    void readProxyHeader(socket, proxy.timeoutMs).then(({ parse, buffered }) => {
      if (parse === 'closed') return socket.destroy();
      const header = headerOutcome(parse);
      if (header.kind === 'local' || parse === 'timeout' || parse.kind !== 'header') {
        if (header.kind !== 'local') proxy.decide(peer, header);
        return socket.destroy();
      }
      const d = proxy.decide(peer, header);
      if (!d.allow || header.kind !== 'proxy' || !header.client || this.closed) return socket.destroy();
      const rest = buffered.subarray(parse.length);
      if (rest.length > 0) socket.unshift(rest);
      this.admit(socket, header.client);
    });
  }

  private admit(socket: net.Socket, ip: string): void {
    const a = this.armed;
    if (!a) {
      // nothing armed: not a transfer of this session (a stray or late connection, or someone probing)
      if (this.last && ip !== this.last.clientIp) this.last.onForeign(ip);
      socket.destroy();
      return;
    }
    const { connector, opts } = a;
    if (ip !== opts.clientIp) {
      opts.onForeign(ip);
      socket.destroy();
      if (++a.intruders >= MAX_INTRUDERS) connector.end();
      return;
    }
    if (connector.dataSocket) {
      socket.destroy();
      return;
    }
    // one data connection per transfer: the next one needs the next PASV/EPSV
    this.disarm();
    const context = opts.tls();
    if (context) {
      // Handshake after the 150 reply, as vsftpd does (lftp waits for the 150 before it starts TLS). The
      // socket counts as connected now; no application byte passes before the handshake succeeds, so a
      // client that skipped PROT P and talks plaintext gets nothing and sends nothing that is kept.
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
      transports.set(secure, socket);
      socket.on('error', () => secure.destroy());
      const handshake = setTimeout(() => secure.destroy(new Error('TLS handshake timeout')), HANDSHAKE_MS);
      secure.once('secure', () => clearTimeout(handshake));
      secure.once('close', () => clearTimeout(handshake));
      adopt(connector, secure, opts.idleMs);
      return;
    }
    adopt(connector, socket, opts.idleMs);
  }
}

/**
 * A passive connector on the session's PassivePort. `listen` arms the port (and answers its number); `end()`
 * (ftp-srv's contract: closes the data socket) disarms it and leaves it listening for the session's next
 * transfer.
 */
export function createPassive(connection: unknown, port: PassivePort, opts: PassiveOptions): DataConnector & { listen(host: string): Promise<number> } {
  const connector = new PassiveBase(connection) as DataConnector & { listen(host: string): Promise<number>; ready?: () => void; closeSocket(): void };
  connector.closeSocket = closeSocket;
  const end = connector.end.bind(connector);
  connector.end = () => {
    port.disarm(connector);
    end();
  };
  // Event-driven instead of ftp-srv's 50 ms polling (which costs up to 50 ms per transfer), and a native
  // promise: bluebird's .timeout() settles a loop turn later (setImmediate), ~0.3 ms per transfer here.
  connector.waitForConnection = ({ timeout = 5000 } = {}) => {
    const now = connector.dataSocket;
    if (now?.connected) return Promise.resolve(now);
    return new Promise<net.Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        connector.ready = undefined;
        reject(new Error('timed out waiting for the data connection'));
      }, timeout);
      const check = () => {
        const socket = connector.dataSocket;
        if (socket?.connected) {
          clearTimeout(timer);
          connector.ready = undefined;
          resolve(socket);
        } else connector.ready = check;
      };
      check();
    });
  };
  connector.listen = (host: string) => port.arm(connector, opts, host);
  return connector;
}

function adopt(connector: DataConnector, socket: net.Socket & { connected?: boolean }, idleMs: number): void {
  socket.on('error', () => socket.destroy());
  socket.setNoDelay(true);
  socket.setTimeout(idleMs, () => socket.destroy());
  connector.dataSocket = socket;
  socket.connected = true;
  const ready = (connector as { ready?: () => void }).ready;
  if (ready) ready();
}

export interface ActiveTarget {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parse PORT h1,h2,h3,h4,p1,p2 strictly (decimal 0..255, six fields). */
export function parsePort(arg: string): ActiveTarget | null {
  const parts = arg.trim().split(',');
  if (parts.length !== 6 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  const host = parts.slice(0, 4).map(Number).join('.');
  if (net.isIPv4(host) === false) return null;
  return { host, port: Number(parts[4]) * 256 + Number(parts[5]), family: 4 };
}

/** Parse EPRT |1|a.b.c.d|port| or |2|ipv6|port| strictly. */
export function parseEprt(arg: string): ActiveTarget | null {
  const m = /^\|([12])\|([^|]+)\|(\d{1,5})\|$/.exec(arg.trim());
  if (!m) return null;
  const family = m[1] === '1' ? 4 : 6;
  if (net.isIP(m[2]!) !== family) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[2]!, port, family };
}

/**
 * Connect to the (already vetted) client address for an active-mode transfer. TLS follows PROT as for
 * passive; the connector keeps ftp-srv's end()/closeSocket contract and resolves waitForConnection on the
 * connect event instead of ftp-srv's 250 ms polling.
 */
export async function connectActive(
  connection: unknown,
  target: ActiveTarget,
  opts: { readonly tls: () => tls.SecureContext | null; readonly idleMs: number },
): Promise<DataConnector> {
  const connector = new ActiveBase(connection) as DataConnector & { closeSocket(): void };
  connector.closeSocket = closeSocket;
  const raw = net.connect({ host: target.host, port: target.port, family: target.family, allowHalfOpen: true });
  raw.on('error', () => raw.destroy());
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      raw.destroy();
      reject(new Error('active connect timeout'));
    }, 10_000);
    raw.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    raw.once('close', () => {
      clearTimeout(timer);
      reject(new Error('active connect failed'));
    });
  });
  raw.setNoDelay(true);
  raw.pause();
  const context = opts.tls();
  const socket: net.Socket & { connected?: boolean } = context ? new tls.TLSSocket(raw, { isServer: true, secureContext: context }) : raw;
  if (socket !== raw) transports.set(socket, raw);
  socket.on('error', () => socket.destroy());
  socket.setTimeout(opts.idleMs, () => socket.destroy());
  socket.connected = true;
  connector.dataSocket = socket;
  connector.waitForConnection = () => Promise.resolve(socket);
  return connector;
}
