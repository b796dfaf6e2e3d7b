/*
 * The FTP listener: ftp-srv configured from `ftp:`, with the policy core asked at connect (421 + close when
 * denied or over the connection caps) and an FtpSession in front of ftp-srv's command table for login,
 * TLS ordering, data connections, uploads and the jailed file system.
 */
import type { EventEmitter } from 'node:events';
import fs, { type Stats } from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import { FtpSrv, type FtpServerOptions } from 'ftp-srv';
import { parseListen } from '../config/load.js';
import { ensureDir } from '../net/atomic.js';
import { peerOf, ProxyGate } from '../net/proxy-gate.js';
import { serverTlsOptions } from '../net/tls.js';
import { NOBODY, type Policy } from '../policy/index.js';
import { ConnectionSlots } from '../policy/limits.js';
import { normalizeIp } from '../policy/network.js';
import { newSessionId, type BoundAddress, type Listener, type Runtime } from '../runtime.js';
import type { DataProxy } from './data-channel.js';
import { lsLine } from './listing.js';
import { QuotaBook } from './quota.js';
import { FtpSession } from './session.js';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;

export function createFtpListener(initial: Runtime): Listener {
  let rt = initial;
  const cfg = () => rt.config;
  const slots = new ConnectionSlots(rt.config.ftp.limits.connections, rt.config.ftp.limits.connections_per_ip);
  const quota = new QuotaBook(rt.config.ftp.quota_bytes);
  let tlsOptions = serverTlsOptions(rt.tls);
  let tlsContext = tls.createSecureContext(tlsOptions);
  let tlsMaterial = rt.tls;
  const { host, port } = parseListen(rt.config.ftp.listen);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const sockets = new Set<net.Socket>();

  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const server = new FtpSrv({
    url: `ftp://${urlHost}:${port}`,
    log: rt.log.child({ service: 'ftp', lib: 'ftp-srv' }, { level: 'fatal' }),
    tls: tlsOptions,
    anonymous: false,
    blacklist: ['SITE', 'PORT', 'EPRT', 'STOR', 'APPE', 'STOU'],
    timeout: 0,
    pasv_url: '127.0.0.1',
    // STAT <path> (ftp-srv's) lists with this: the same lines as LIST, `ftp ftp` rather than numeric ids
    file_format: (st: Stats & { name: string }) => lsLine(st, st.name),
  } as unknown as FtpServerOptions);
  // ftp-srv installs handlers that call process.exit on these signals; the composition root owns them.
  for (const s of SIGNALS) for (const fn of process.listeners(s)) if (!before.get(s)!.has(fn)) process.removeListener(s, fn);

  const policy = (): Policy => rt.policy;
  const events = server as unknown as EventEmitter;
  // PROXY protocol (ftp.proxy_protocol) is read before ftp-srv sees a control connection
  new ProxyGate({
    service: 'ftp',
    implicitTls: false,
    settings: () => ({ policy: rt.policy, timeoutMs: rt.config.ftp.proxy_protocol.header_timeout_s * 1000, hostname: rt.config.hostname }),
  }).interpose((server as unknown as { server: net.Server }).server);

  events.on('connect', ({ connection }: { connection: any }) => {
    const socket: net.Socket = connection.commandSocket;
    const ip = normalizeIp(socket.remoteAddress) ?? String(socket.remoteAddress);
    const session = newSessionId();
    const proxy = peerOf(socket)?.proxy;
    const ctx = { service: 'ftp' as const, ip, identity: NOBODY, session, ...(proxy === undefined ? {} : { proxy }) };
    socket.on('error', () => socket.destroy());
    socket.setNoDelay(true);
    const refuse = (message: string) => {
      socket.removeAllListeners('data');
      socket.end(`421 ${message}\r\n`);
      setTimeout(() => socket.destroy(), 2000).unref();
    };
    const d = policy().connect(ctx);
    if (!d.allow) {
      refuse('Service not available, closing control connection');
      return;
    }
    const slot = slots.acquire(ip);
    if (!slot.allow) {
      policy().record(ctx, 'connect', slot);
      refuse('Too many connections, try again later');
      return;
    }
    sockets.add(socket);
    socket.once('close', () => {
      slots.release(ip);
      sockets.delete(socket);
    });
    try {
      const dataProxy: DataProxy | undefined = policy().proxyEnabled('ftp')
        ? {
            listed: (peer) => policy().proxyListed('ftp', peer),
            timeoutMs: cfg().ftp.proxy_protocol.header_timeout_s * 1000,
            decide: (peer, header) => {
              const d = policy().proxy(ctx, { peer, listed: true, header }, false);
              if (!d.allow) policy().record({ ...ctx, ip: peer }, 'data_proxy', d);
              return d;
            },
          }
        : undefined;
      new FtpSession(connection, ip, session, { config: cfg, policy, tlsContext: () => tlsContext, tlsOptions: () => tlsOptions, quota, proxy, dataProxy, notices: () => rt.hub?.notices ?? null });
    } catch {
      refuse('Local error');
    }
  });
  events.on('client-error', () => undefined);
  events.on('server-error', () => undefined);

  return {
    service: 'ftp',
    activeSessions: () => slots.active,
    async start(): Promise<BoundAddress[]> {
      const p = rt.config.paths;
      ensureDir(p.ftpHomes);
      for (const dir of p.shares.values()) ensureDir(dir);
      if (rt.config.ftp.anonymous.enabled) fs.mkdirSync(p.ftpAnonRoot, { recursive: true, mode: 0o755 });
      await server.listen();
      const addr = (server as unknown as { server: net.Server }).server.address() as net.AddressInfo;
      return [{ name: 'plain', host, port: addr.port }];
    },
    reload(next: Runtime): void {
      rt = next;
      slots.configure(next.config.ftp.limits.connections, next.config.ftp.limits.connections_per_ip);
      quota.configure(next.config.ftp.quota_bytes);
      if (next.tls !== tlsMaterial) {
        tlsMaterial = next.tls;
        tlsOptions = serverTlsOptions(next.tls);
        tlsContext = tls.createSecureContext(tlsOptions);
        // ftp-srv's active connector reads its TLS options from here
        (server as unknown as { options: { tls: tls.TlsOptions } }).options.tls = tlsOptions;
      }
    },
    async stop(graceMs: number): Promise<void> {
      const inner = (server as unknown as { server: net.Server }).server;
      const closed = new Promise<void>((resolve) => inner.close(() => resolve()));
      const deadline = Date.now() + graceMs;
      while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
