/*
 * Data connections. Passive: a listener on a random port of `passive.ports`, on the control connection's
 * local address, moved to a fresh random port at every PASV/EPSV (kept only when the range is nearly used
 * up) and closed with the session (PassivePort), that accepts one connection per
 * PASV/EPSV and only from the control connection's own client address (others are dropped and
 * logged, the session keeps waiting for its client) and speaks TLS when the session chose PROT P. Active: only to the client's own address and a port >= 1024, and
 * only when `active_mode: true` (otherwise PORT/EPRT are refused before this file is reached).
 *
 * A TLS data connection becomes the transfer's socket only after its handshake, and only when the policy
 * core admits it (`admitTls`: its TLS session resumed from the control connection's, vsftpd's
 * require_ssl_reuse). Until then no byte of the transfer is written to it, and the transfer keeps waiting for
 * its client: a same-address thief that connected first is refused while the real client's connection, which
 * resumes, carries the data. Two steps for the session: `waitForArrival` (a connection from the client's
 * address is there: the 150 may go, lftp and ftplib start TLS only after it) and `waitForConnection` (the
 * admitted socket).
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { headerOutcome, readProxyHeader } from '../net/proxy-gate.js';
import { readableIntoSlabs } from '../net/slab-feed.js';
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
/** TLS handshakes in progress for one armed transfer (the client's and, at worst, a few intruders') */
const MAX_PENDING = 4;
/** after a refused TLS data connection, how much longer the transfer waits for its client's own */
const REFUSED_GRACE_MS = 5_000;

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
  /** set when ftp.proxy_protocol lists peers */
  readonly proxy?: DataProxy | undefined;
  readonly ports: readonly [number, number];
  /** asked at accept time: the TLS context when the data channel is protected (PROT P), else null */
  readonly tls: () => tls.SecureContext | null;
  /** asked for every connection to the passive port: is it from the session's client (policy core, ftp.pasv_*)? */
  readonly admitSource: (ip: string) => boolean;
  /** asked after a TLS data connection's handshake: may it carry the transfer (policy core, ftp.data_tls_*)? */
  readonly admitTls: (resumed: boolean, ip: string) => boolean;
  readonly idleMs: number;
}

export interface DataConnector {
  dataServer: net.Server | null;
  dataSocket: (net.Socket & { connected?: boolean }) | null;
  readonly socket: (net.Socket & { connected?: boolean }) | null;
  waitForConnection(opts?: { timeout?: number; delay?: number }): Promise<net.Socket>;
  /** resolves once a connection from the client is there, before its TLS handshake (see the header) */
  waitForArrival?(opts?: { timeout?: number }): Promise<void>;
  /** set when a data connection was refused by `admitTls` (the 425 says why) */
  refusedTls?: boolean;
  end(): void;
}

/** The arrival half of a connector: flag plus waiters. */
interface Arrival {
  arrived: boolean;
  wake: (() => void)[];
}

const arrivals = new WeakMap<DataConnector, Arrival>();

function arrive(connector: DataConnector): void {
  const a = arrivals.get(connector);
  if (!a || a.arrived) return;
  a.arrived = true;
  for (const f of a.wake.splice(0)) f();
}

function waitArrival(connector: DataConnector, timeout: number): Promise<void> {
  const a = arrivals.get(connector);
  if (!a || a.arrived || connector.dataSocket) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      a.wake = a.wake.filter((f) => f !== done);
      reject(new Error('timed out waiting for the data connection'));
    }, timeout);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    a.wake.push(done);
  });
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

/** Every passive listener open now (all sessions), with its port. */
const live = new Map<net.Server, number>();

/** Is the passive range (nearly) used up, so that a session should keep its port rather than take a new one? */
function nearlyFull([lo, hi]: readonly [number, number]): boolean {
  const width = hi - lo + 1;
  let used = 0;
  for (const port of live.values()) if (port >= lo && port <= hi) used++;
  return used >= width - Math.max(1, Math.floor(width / 10));
}

interface Armed {
  readonly connector: DataConnector;
  readonly opts: PassiveOptions;
  readonly timer: NodeJS.Timeout;
  intruders: number;
  /** TLS data connections still in their handshake */
  readonly pending: Set<tls.TLSSocket>;
}

/**
 * One session's passive listener. Each PASV/EPSV opens a fresh random port (so a transfer's port cannot be
 * guessed from the previous one) and closes the previous listener; only when the range is nearly used up
 * (nearlyFull) does the session keep its port. It accepts a connection only while a transfer is armed
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
    const fits = this.server !== null && this.host === host && this.port >= lo && this.port <= hi;
    if (!fits) {
      this.shut();
      await this.open(host, opts.ports);
    } else if (!nearlyFull(opts.ports)) {
      // A fresh random port for every PASV/EPSV, so the next transfer's port cannot be predicted from this
      // one's; the old listener stays open until the new one is, so the new port is never the old one.
      const old = this.server!;
      try {
        await this.tryOpen(host, opts.ports);
        live.delete(old);
        old.close();
      } catch {
        /* the range is full after all: keep the port this session has */
      }
    }
    if (this.closed) throw new Error('session ended');
    if (this.parkTimer) clearTimeout(this.parkTimer);
    this.parkTimer = null;
    parked.delete(this);
    const timer = setTimeout(() => {
      if (!connector.dataSocket) connector.end();
    }, ACCEPT_WINDOW_MS);
    timer.unref();
    this.armed = { connector, opts, timer, intruders: 0, pending: new Set() };
    this.last = opts;
    return this.port;
  }

  /** No transfer expects a connection any more (all of them, or only `connector`'s). */
  disarm(connector?: DataConnector): void {
    const a = this.armed;
    if (!a || (connector && a.connector !== connector)) return;
    clearTimeout(a.timer);
    this.armed = null;
    for (const s of a.pending) s.destroy();
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
    if (this.server) live.delete(this.server);
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
      live.set(server, port);
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
      this.last?.admitSource(ip);
      socket.destroy();
      return;
    }
    const { connector, opts } = a;
    if (!opts.admitSource(ip)) {
      socket.destroy();
      if (++a.intruders >= MAX_INTRUDERS) connector.end();
      return;
    }
    if (connector.dataSocket) {
      socket.destroy();
      return;
    }
    const context = opts.tls();
    if (context) {
      if (a.pending.size >= MAX_PENDING) {
        socket.destroy();
        return;
      }
      // Handshake after the 150 reply, as vsftpd does (lftp waits for the 150 before it starts TLS): the
      // arrival lets the 150 go; the socket carries the transfer only once the handshake is done and the
      // policy core admitted it, so nothing is written to a connection that did not resume the session.
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
      transports.set(secure, socket);
      a.pending.add(secure);
      socket.on('error', () => secure.destroy());
      secure.on('error', () => secure.destroy());
      const handshake = setTimeout(() => secure.destroy(new Error('TLS handshake timeout')), HANDSHAKE_MS);
      secure.once('close', () => {
        clearTimeout(handshake);
        a.pending.delete(secure);
      });
      secure.once('secure', () => {
        clearTimeout(handshake);
        a.pending.delete(secure);
        if (!opts.admitTls(secure.isSessionReused(), ip)) {
          connector.refusedTls = true;
          secure.destroy();
          if (++a.intruders >= MAX_INTRUDERS) connector.end();
          else (connector as { refused?: () => void }).refused?.();
          return;
        }
        if (this.armed !== a || connector.dataSocket) {
          secure.destroy();
          return;
        }
        // one data connection per transfer: the next one needs the next PASV/EPSV
        this.disarm();
        // Adopted on the next turn of the loop: 'secure' is emitted from inside the handshake's own
        // processing, and a transfer written from there can overtake the TLS 1.3 session tickets the
        // handshake is still sending (Python's ssl then fails its shutdown: SHUTDOWN_WHILE_IN_INIT).
        setImmediate(() => {
          if (secure.destroyed || connector.dataSocket) secure.destroy();
          else adopt(connector, secure, opts.idleMs);
        });
      });
      arrive(connector);
      return;
    }
    // one data connection per transfer: the next one needs the next PASV/EPSV
    this.disarm();
    // a plain connection that has read nothing yet reads straight into an upload's slabs (net/slab-feed.ts)
    adopt(connector, socket.readableLength === 0 ? readableIntoSlabs(socket) : socket, opts.idleMs);
  }
}

/**
 * A passive connector on the session's PassivePort. `listen` arms the port (and answers its number); `end()`
 * (ftp-srv's contract: closes the data socket) disarms it and leaves it listening for the session's next
 * transfer.
 */
export function createPassive(connection: unknown, port: PassivePort, opts: PassiveOptions): DataConnector & { listen(host: string): Promise<number> } {
  const connector = new PassiveBase(connection) as DataConnector & { listen(host: string): Promise<number>; ready?: () => void; refused?: () => void; closeSocket(): void };
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
      const fail = () => {
        connector.ready = undefined;
        connector.refused = undefined;
        reject(new Error('timed out waiting for the data connection'));
      };
      let timer = setTimeout(fail, timeout);
      // after a refused connection, the client's own (if it is still coming) gets REFUSED_GRACE_MS more
      const deadline = Date.now() + timeout;
      connector.refused = () => {
        clearTimeout(timer);
        timer = setTimeout(fail, Math.min(REFUSED_GRACE_MS, Math.max(0, deadline - Date.now())));
      };
      const check = () => {
        const socket = connector.dataSocket;
        if (socket?.connected) {
          clearTimeout(timer);
          connector.ready = undefined;
          connector.refused = undefined;
          resolve(socket);
        } else connector.ready = check;
      };
      check();
    });
  };
  arrivals.set(connector, { arrived: false, wake: [] });
  connector.waitForArrival = ({ timeout = 5000 } = {}) => waitArrival(connector, timeout);
  connector.listen = (host: string) => port.arm(connector, opts, host);
  return connector;
}

function adopt(connector: DataConnector, socket: net.Socket & { connected?: boolean }, idleMs: number): void {
  socket.on('error', () => socket.destroy());
  socket.setNoDelay(true);
  socket.setTimeout(idleMs, () => socket.destroy());
  connector.dataSocket = socket;
  socket.connected = true;
  arrive(connector);
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
  opts: { readonly tls: () => tls.SecureContext | null; readonly idleMs: number; readonly admitTls: (resumed: boolean, ip: string) => boolean },
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
  if (!context) {
    const socket: net.Socket & { connected?: boolean } = raw;
    socket.on('error', () => socket.destroy());
    socket.setTimeout(opts.idleMs, () => socket.destroy());
    socket.connected = true;
    connector.dataSocket = socket;
    connector.waitForConnection = () => Promise.resolve(socket);
    return connector;
  }
  // TLS: as for passive, the socket carries the transfer only after its handshake and the policy's admission
  const secure: tls.TLSSocket & { connected?: boolean } = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
  transports.set(secure, raw);
  secure.on('error', () => secure.destroy());
  secure.setTimeout(opts.idleMs, () => secure.destroy());
  connector.dataSocket = secure;
  const admitted = new Promise<net.Socket>((resolve, reject) => {
    const handshake = setTimeout(() => secure.destroy(new Error('TLS handshake timeout')), HANDSHAKE_MS);
    secure.once('close', () => {
      clearTimeout(handshake);
      reject(new Error('data connection closed before its TLS handshake'));
    });
    secure.once('secure', () => {
      clearTimeout(handshake);
      if (!opts.admitTls(secure.isSessionReused(), target.host)) {
        connector.refusedTls = true;
        secure.destroy();
        return;
      }
      secure.connected = true;
      // on the next turn: see the passive side (session tickets first, then the transfer)
      setImmediate(() => resolve(secure));
    });
  });
  admitted.catch(() => undefined);
  connector.waitForArrival = () => Promise.resolve();
  connector.waitForConnection = ({ timeout = 5000 } = {}) =>
    new Promise<net.Socket>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for the TLS handshake')), timeout);
      admitted.then(
        (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  return connector;
}
