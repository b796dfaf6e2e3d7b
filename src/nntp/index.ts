/*
 * The NNTP listener: a plain port (with STARTTLS) and an optional implicit-TLS port (NNTPS, RFC 8143), both
 * feeding NntpSession, sharing one article store, one set of connection slots and one post-rate table.
 */
import net from 'node:net';
import tls from 'node:tls';
import { parseListen } from '../config/load.js';
import { adoptPeer, ProxyGate } from '../net/proxy-gate.js';
import { serverTlsOptions } from '../net/tls.js';
import { ConnectionSlots } from '../policy/limits.js';
import type { BoundAddress, Listener, Runtime } from '../runtime.js';
import { NntpSession, type NntpShared } from './session.js';
import { FeedOut } from './feed-out.js';
import { ArticleStore } from './store.js';
import { createNewsPoster } from './gateway.js';

const HANDSHAKE_TIMEOUT_MS = 30_000;

export function createNntpListener(rt: Runtime): Listener {
  const limits = rt.config.nntp.limits;
  let shared: NntpShared | null = null;
  let feeds: FeedOut | null = null;
  const servers: net.Server[] = [];

  /** once a second: sessions whose line has been arriving for too long (NntpSession.checkLineDeadline) */
  let sweeper: NodeJS.Timeout | null = null;
  const secureContextOf = (r: Runtime) => tls.createSecureContext(serverTlsOptions(r.tls));

  async function listen(server: net.Server, address: string, name: string): Promise<BoundAddress> {
    const { host, port } = parseListen(address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    servers.push(server);
    return { name, host, port: (server.address() as net.AddressInfo).port };
  }

  return {
    service: 'nntp',
    activeSessions: () => shared?.slots.active ?? 0,
    async start(): Promise<BoundAddress[]> {
      const store = await ArticleStore.open(
        rt.config.paths.newsDir,
        rt.config.nntp.groups.map((g) => g.name),
      );
      const s: NntpShared = {
        rt,
        store,
        slots: new ConnectionSlots(limits.connections, limits.connections_per_ip),
        secureContext: secureContextOf(rt),
        postTimes: new Map(),
        sessions: new Set(),
      };
      shared = s;
      feeds = await FeedOut.start(rt, store);
      if (rt.hub) rt.hub.news = createNewsPoster(() => s.rt, store, s.postTimes); // mail-to-news posts through this store
      sweeper = setInterval(() => {
        const now = Date.now();
        for (const session of s.sessions) session.checkLineDeadline(now);
      }, 1000).unref();
      const bound: BoundAddress[] = [];
      // PROXY protocol (nntp.proxy_protocol) is read before a session (or the NNTPS handshake) sees a socket
      const gate = (implicitTls: boolean) =>
        new ProxyGate({
          service: 'nntp',
          implicitTls,
          settings: () => ({ policy: s.rt.policy, timeoutMs: s.rt.config.nntp.proxy_protocol.header_timeout_s * 1000, hostname: s.rt.config.hostname }),
        });
      const plain = net.createServer((socket) => void new NntpSession(s, socket, false, true));
      gate(false).interpose(plain);
      plain.on('error', (err) => s.rt.log.error({ event: 'nntp_listener_error', error: String(err) }, 'nntp listener error'));
      bound.push(await listen(plain, rt.config.nntp.listen, 'plain'));
      const implicit = rt.config.nntp.implicit_tls_listen;
      if (implicit) {
        const server = tls.createServer({ ...serverTlsOptions(rt.tls), handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, (socket) => {
          adoptPeer(socket);
          void new NntpSession(s, socket, true, false);
        });
        gate(true).interpose(server);
        // Slots are taken after the handshake; until then the global cap bounds half-open TLS sockets.
        server.maxConnections = limits.connections;
        server.on('tlsClientError', (_err, socket) => socket.destroy());
        server.on('error', (err) => s.rt.log.error({ event: 'nntp_listener_error', error: String(err) }, 'nntps listener error'));
        bound.push(await listen(server, implicit, 'implicit_tls'));
      }
      return bound;
    },
    reload(next: Runtime): void {
      if (!shared) return;
      const s = shared;
      s.rt = next;
      s.slots.configure(next.config.nntp.limits.connections, next.config.nntp.limits.connections_per_ip);
      s.secureContext = secureContextOf(next);
      for (const server of servers) {
        if (!(server instanceof tls.Server)) continue;
        server.setSecureContext(serverTlsOptions(next.tls));
        server.maxConnections = next.config.nntp.limits.connections;
      }
      feeds?.configure(next).catch((err: unknown) => {
        next.log.error({ event: 'nntp_reload_error', error: String(err) }, 'could not start new feeds');
      });
      s.store.syncGroups(next.config.nntp.groups.map((g) => g.name)).catch((err: unknown) => {
        next.log.error({ event: 'nntp_reload_error', error: String(err) }, 'could not create new newsgroups');
      });
    },
    async stop(graceMs: number): Promise<void> {
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
      const closing = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      const s = shared;
      if (rt.hub) rt.hub.news = null;
      if (s) {
        const deadline = Date.now() + graceMs;
        while (s.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        for (const session of [...s.sessions]) session.destroy();
      }
      await Promise.all(closing);
      await feeds?.stop();
      feeds = null;
      if (s) await s.store.close();
      servers.length = 0;
      shared = null;
    },
  };
}
