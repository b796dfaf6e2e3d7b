/*
 * The operations listener (`metrics.listen`, off unless configured): GET /metrics (Prometheus text),
 * GET / (read-only status page), GET /events (server-sent events of live decisions), GET /api/state
 * (listeners, queue summary, login throttles), GET /api/trends (the charts: per-minute series of the last hour).
 * Nothing here writes anything or shows a secret. It refuses to
 * start on a non-loopback address unless `metrics.password_file` is set; with a password every request
 * needs HTTP Basic auth (any user name). Host headers that are not an IP literal or `localhost` are
 * refused, so a DNS-rebinding web page cannot read the page through the operator's browser.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { parseListen } from '../config/load.js';
import { GatehouseError } from '../errors.js';
import type { DecisionRecord } from '../policy/audit.js';
import type { Service } from '../policy/index.js';
import type { BoundAddress, Runtime } from '../runtime.js';
import { metrics as defaultMetrics, type Metrics } from './metrics.js';
import { cachedQueueSummary } from './queue-summary.js';
import { STATUS_CSS, STATUS_HTML, STATUS_JS } from './status-page.js';
import { CHARTS_JS } from './status-charts.js';

const SERVICES: readonly Service[] = ['smtp', 'ftp', 'nntp'];
const RECENT = 100;
const MAX_SSE_CLIENTS = 32;
const MAX_SSE_BUFFER = 1 << 20;
const MAX_CONNECTIONS = 64;
const KEEPALIVE_MS = 15_000;
/** how often the charts' gauges (queue, sessions) are sampled; each minute keeps its highest sample */
const TREND_SAMPLE_MS = 5_000;

const HEADERS: http.OutgoingHttpHeaders = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

export interface OpsServer {
  readonly address: BoundAddress;
  reload(rt: Runtime): void;
  stop(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  if (net.isIPv4(host)) return host.startsWith('127.');
  const h = host.toLowerCase();
  return h === '::1' || h.startsWith('::ffff:127.');
}

function readPassword(rt: Runtime): string | null {
  const file = rt.config.metrics.password_file;
  if (file === null) return null;
  const abs = path.resolve(rt.config.paths.configDir, file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (err) {
    throw new GatehouseError('GH_ERR_CONFIG', `metrics.password_file: cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const pw = text.replace(/\r?\n$/, '');
  if (pw.length < 12) throw new GatehouseError('GH_ERR_CONFIG', `metrics.password_file: ${abs} must hold a password of at least 12 characters`);
  return pw;
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s).digest();
}

function authorized(req: http.IncomingMessage, password: string | null): boolean {
  if (password === null) return true;
  const m = /^Basic ([A-Za-z0-9+/=]{1,1024})$/.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const given = colon < 0 ? '' : decoded.slice(colon + 1);
  return crypto.timingSafeEqual(digest(given), digest(password));
}

/** Host must be an IP literal or localhost (with an optional port): the DNS-rebinding guard. */
export function hostAllowed(host: string | undefined): boolean {
  if (!host) return false;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+))(?::\d{1,5})?$/.exec(host);
  const name = m?.[1] ?? m?.[2];
  if (!name) return false;
  return name.toLowerCase() === 'localhost' || net.isIP(name) !== 0;
}

/**
 * Start the listener if `metrics.listen` is set (else null). `addresses` gives each service's bound
 * addresses (the composition root's view), `sessions` how many sessions each has open now (for the charts).
 */
export async function startOps(
  initial: Runtime,
  addresses: (s: Service) => readonly BoundAddress[],
  m: Metrics = defaultMetrics,
  sessions: (s: Service) => number = () => 0,
): Promise<OpsServer | null> {
  const listen = initial.config.metrics.listen;
  if (listen === null) return null;
  const { host, port } = parseListen(listen);
  let rt = initial;
  let password = readPassword(rt);
  if (!isLoopback(host) && password === null) {
    throw new GatehouseError('GH_ERR_CONFIG', `metrics.listen: ${listen} is not a loopback address; set metrics.password_file (or listen on 127.0.0.1) — the status page is not for the open network`);
  }
  const startedAt = new Date();
  const recent: { seq: number; rec: DecisionRecord }[] = [];
  let seq = 0;
  const clients = new Set<http.ServerResponse>();
  const queue = cachedQueueSummary(() => rt.config.paths.spoolDir);

  m.enableDefaultMetrics();
  m.attach({ queue, throttles: () => rt.policy.throttles(), stateStore: () => rt.store?.status() ?? null });

  const send = (res: http.ServerResponse, item: { seq: number; rec: DecisionRecord }) => {
    if (res.writableLength > MAX_SSE_BUFFER) {
      res.destroy(); // a viewer that does not read must not make the daemon buffer without end
      return;
    }
    res.write(`id: ${item.seq}\nevent: decision\ndata: ${JSON.stringify(item.rec)}\n\n`);
  };
  const unsubscribe = rt.logging.subscribe((rec) => {
    m.observe(rec);
    const item = { seq: ++seq, rec };
    recent.push(item);
    if (recent.length > RECENT) recent.shift();
    for (const res of clients) send(res, item);
  });
  const keepalive = setInterval(() => {
    for (const res of clients) res.write(': keepalive\n\n');
  }, KEEPALIVE_MS);
  keepalive.unref();

  // The charts' gauges: sampled on a timer and on each read of /api/trends (each minute keeps its highest).
  const sampleTrends = async () => {
    const q = await queue();
    m.sampleTrends({ queueDepth: q.depth, queueOldestSeconds: q.oldestAgeSeconds, sessions: { smtp: sessions('smtp'), ftp: sessions('ftp'), nntp: sessions('nntp') } });
  };
  const sampler = setInterval(() => {
    sampleTrends().catch((err: unknown) => rt.log.warn({ event: 'ops_error', error: String(err) }, 'trend sample failed'));
  }, TREND_SAMPLE_MS);
  sampler.unref();
  void sampleTrends().catch(() => undefined);

  const state = async () => ({
    hostname: rt.config.hostname,
    startedAt: startedAt.toISOString(),
    now: new Date().toISOString(),
    listeners: Object.fromEntries(SERVICES.map((s) => [s, { enabled: rt.config[s].enabled, bound: addresses(s).map((a) => ({ name: a.name, host: a.host, port: a.port })) }])),
    queue: await queue(),
    stateStore: rt.store?.status() ?? null,
    throttles: (await rt.policy.throttles()).map((t) => ({ kind: t.kind, address: t.address, name: t.name, failures: t.count, until: new Date(t.until).toISOString() })),
  });

  const reply = (res: http.ServerResponse, status: number, type: string, body: string | Buffer, extra: http.OutgoingHttpHeaders = {}) => {
    res.writeHead(status, { ...HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!hostAllowed(req.headers.host)) return reply(res, 421, 'text/plain; charset=utf-8', 'use an IP address or localhost in the URL\n');
    if (!authorized(req, password)) return reply(res, 401, 'text/plain; charset=utf-8', 'password required\n', { 'WWW-Authenticate': 'Basic realm="gatehouse", charset="UTF-8"' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'text/plain; charset=utf-8', 'read-only\n', { Allow: 'GET, HEAD' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/':
        return reply(res, 200, 'text/html; charset=utf-8', STATUS_HTML);
      case '/status.js':
        return reply(res, 200, 'text/javascript; charset=utf-8', STATUS_JS);
      case '/charts.js':
        return reply(res, 200, 'text/javascript; charset=utf-8', CHARTS_JS);
      case '/api/trends':
        await sampleTrends();
        return reply(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(m.trendSnapshot())}\n`);
      case '/status.css':
        return reply(res, 200, 'text/css; charset=utf-8', STATUS_CSS);
      case '/metrics':
        return reply(res, 200, m.contentType, await m.text());
      case '/api/state':
        return reply(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(await state(), null, 2)}\n`);
      case '/events': {
        if (clients.size >= MAX_SSE_CLIENTS) return reply(res, 503, 'text/plain; charset=utf-8', 'too many status page viewers\n');
        res.writeHead(200, { ...HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
        if (req.method === 'HEAD') return res.end();
        req.socket.setTimeout(0);
        clients.add(res);
        res.on('close', () => clients.delete(res));
        res.write('retry: 3000\n\n');
        // a reconnecting EventSource says what it has seen: replay only what it missed
        const seen = Number(req.headers['last-event-id'] ?? 0);
        for (const item of recent) if (!(item.seq <= seen)) send(res, item);
        return;
      }
      default:
        return reply(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };

  const server = http.createServer({ maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      rt.log.warn({ event: 'ops_error', error: String(err) }, 'status page request failed');
      if (!res.headersSent) reply(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = 5_000;
  server.on('clientError', (_err, socket) => socket.destroy());

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    unsubscribe();
    clearInterval(keepalive);
    clearInterval(sampler);
    m.attach(null);
    throw new GatehouseError('GH_ERR_LISTEN', `metrics: cannot listen on ${listen} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const a = server.address() as net.AddressInfo;
  const address: BoundAddress = { name: 'http', host: a.address, port: a.port };
  rt.log.info({ event: 'listening', service: 'ops', host: a.address, port: a.port }, `metrics and status page on http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`);

  return {
    address,
    reload(next) {
      try {
        const pw = readPassword(next);
        if (pw === null && !isLoopback(host)) throw new Error('metrics.password_file removed while listening on a non-loopback address');
        password = pw;
      } catch (err) {
        next.log.error({ event: 'ops_reload_failed', error: String(err) }, 'keeping the previous status page password');
      }
      rt = next;
    },
    async stop() {
      unsubscribe();
      clearInterval(keepalive);
      clearInterval(sampler);
      m.attach(null);
      for (const res of clients) res.end();
      clients.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
