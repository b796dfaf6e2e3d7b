/*
 * Prometheus metrics (prom-client). Decision counters are fed from the decision log (one record = one
 * increment, so metrics can never disagree with the audit trail); listeners add what the log does not
 * carry (FTP bytes, NNTP posts, delivery attempts) with `metrics.count(name, labels, n)`. Label values are
 * bounded: anything that is not a short `[a-z0-9_.-]` token becomes `other`, and each metric stops taking
 * new label sets past MAX_SERIES, so a hostile client cannot blow up the series count.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecisionRecord } from '../policy/audit.js';
import type { ThrottleEntry } from '../policy/index.js';
import { MinuteSeries, type SeriesSnapshot } from '../net/series.js';
import type { QueueSummary } from './queue-summary.js';

export const MAX_SERIES = 500;

/** The counters listeners may bump; labels are fixed per name. */
export interface CountLabels {
  /** bytes moved over FTP data connections */
  ftp_bytes: { direction: 'upload' | 'download' };
  /** NNTP POST/IHAVE outcomes */
  nntp_posts: { outcome: 'accepted' | 'rejected' };
  /** SMTP delivery attempts per recipient */
  delivery_attempts: { outcome: 'delivered' | 'deferred' | 'failed' | 'bounced' };
  /** the directory identity source could not be used (unreachable, TLS refused, service bind refused), or refused a home */
  directory_errors: { reason: 'unavailable' | 'tls' | 'service_bind' | 'home_refused' };
}
export type CountName = keyof CountLabels;

const LABEL = /^[a-z0-9_.:-]{1,64}$/;

function label(value: string): string {
  return LABEL.test(value) ? value : 'other';
}

/** The status page's charts: per-minute series of the last hour (see net/series.ts). */
export const TREND_COUNTERS = [
  'smtp.allow',
  'smtp.deny',
  'ftp.allow',
  'ftp.deny',
  'nntp.allow',
  'nntp.deny',
  'auth_failures',
  'throttles',
] as const;
export const TREND_GAUGES = ['queue_depth', 'queue_oldest_s', 'sessions.smtp', 'sessions.ftp', 'sessions.nntp'] as const;
export type TrendName = (typeof TREND_COUNTERS)[number] | (typeof TREND_GAUGES)[number];
export const TREND_MINUTES = 60;

/**
 * A throttle is a refusal that limits a client's rate or count rather than judging its request: a lockout,
 * a connection cap, a post rate, a line deadline, or any rule whose name says it throttles.
 */
export function isThrottle(rec: Pick<DecisionRecord, 'verdict' | 'rule' | 'phase'>): boolean {
  if (rec.verdict !== 'deny') return rec.phase === 'lockout';
  return rec.phase === 'lockout' || /^(limits\.|auth\.lockout)/.test(rec.rule) || rec.rule.includes('throttl');
}

/** What the sampler reads every few seconds for the gauges. */
export interface TrendSample {
  readonly queueDepth: number;
  readonly queueOldestSeconds: number;
  readonly sessions: Readonly<Record<'smtp' | 'ftp' | 'nntp', number>>;
}

export interface MetricsSources {
  queue(): Promise<QueueSummary>;
  throttles(): Promise<ThrottleEntry[]>;
  /** the shared state store (state_store), null when not configured */
  stateStore?(): { configured: boolean; up: boolean; onError: 'local' | 'refuse' } | null;
}

export class Metrics {
  readonly registry = new Registry();
  private defaults = false;
  private sources: MetricsSources | null = null;
  private readonly seen = new Map<string, Set<string>>();
  private readonly trends: MinuteSeries<TrendName>;

  private readonly decisions = new Counter({
    name: 'gatehouse_decisions_total',
    help: 'Policy decisions by service, phase, verdict and deciding rule',
    labelNames: ['service', 'phase', 'verdict', 'rule'] as const,
    registers: [this.registry],
  });
  private readonly connections = new Counter({
    name: 'gatehouse_connections_total',
    help: 'Client connections by service and connect verdict',
    labelNames: ['service', 'verdict'] as const,
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({
    name: 'gatehouse_auth_failures_total',
    help: 'Failed logins (rule auth.bad_credentials) by service',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  private readonly lockouts = new Counter({
    name: 'gatehouse_lockouts_total',
    help: 'Login throttles started, by service and kind (pair = a name from one address, user = a name from unfamiliar addresses, address)',
    labelNames: ['service', 'kind'] as const,
    registers: [this.registry],
  });
  private readonly throttled = new Counter({
    name: 'gatehouse_auth_throttled_total',
    help: 'Login attempts refused by a throttle rule (password not checked), by service and rule',
    labelNames: ['service', 'rule'] as const,
    registers: [this.registry],
  });
  private readonly counters: { [K in CountName]: Counter<string> } = {
    ftp_bytes: new Counter({ name: 'gatehouse_ftp_bytes_total', help: 'Bytes moved over FTP data connections', labelNames: ['direction'], registers: [this.registry] }),
    nntp_posts: new Counter({ name: 'gatehouse_nntp_posts_total', help: 'NNTP articles offered, by outcome', labelNames: ['outcome'], registers: [this.registry] }),
    delivery_attempts: new Counter({ name: 'gatehouse_delivery_attempts_total', help: 'SMTP delivery attempts per recipient, by outcome', labelNames: ['outcome'], registers: [this.registry] }),
    directory_errors: new Counter({ name: 'gatehouse_directory_errors_total', help: 'Directory (LDAP) failures by reason: unavailable, tls, service_bind, home_refused', labelNames: ['reason'], registers: [this.registry] }),
  };

  constructor(private readonly clock: () => number = Date.now) {
    this.trends = new MinuteSeries<TrendName>(TREND_COUNTERS, TREND_GAUGES, TREND_MINUTES, clock());
    const src = () => this.sources;
    new Gauge({
      name: 'gatehouse_queue_depth',
      help: 'Messages in the SMTP queue (entries under spool/msg)',
      registers: [this.registry],
      async collect() {
        const q = await src()?.queue();
        this.set(q?.depth ?? 0);
      },
    });
    new Gauge({
      name: 'gatehouse_queue_oldest_age_seconds',
      help: 'Age of the oldest queued message (0 when the queue is empty)',
      registers: [this.registry],
      async collect() {
        const q = await src()?.queue();
        this.set(q?.oldestAgeSeconds ?? 0);
      },
    });
    new Gauge({
      name: 'gatehouse_state_store_up',
      help: 'Shared state store (state_store) reachable: 1 up, 0 down (counting per instance or refusing, per on_error); absent when not configured',
      labelNames: ['on_error'],
      registers: [this.registry],
      collect() {
        const st = src()?.stateStore?.() ?? null;
        this.reset();
        if (st?.configured) this.set({ on_error: st.onError }, st.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'gatehouse_throttles',
      help: 'Login throttles in force, by kind (pair, user, address)',
      labelNames: ['kind'],
      registers: [this.registry],
      async collect() {
        const list = (await src()?.throttles()) ?? [];
        for (const kind of ['pair', 'user', 'address'] as const) this.set({ kind }, list.filter((t) => t.kind === kind).length);
      },
    });
  }

  /** Process metrics incl. event-loop lag (nodejs_eventloop_lag_*), once per registry. */
  enableDefaultMetrics(): void {
    if (this.defaults) return;
    this.defaults = true;
    collectDefaultMetrics({ register: this.registry });
  }

  attach(sources: MetricsSources | null): void {
    this.sources = sources;
  }

  /** False once a metric holds MAX_SERIES label sets and this one is new. */
  private admit(metric: string, labels: Record<string, string>): boolean {
    const key = Object.values(labels).join('\u0000');
    let set = this.seen.get(metric);
    if (!set) this.seen.set(metric, (set = new Set()));
    if (set.has(key)) return true;
    if (set.size >= MAX_SERIES) return false;
    set.add(key);
    return true;
  }

  private inc(counter: Counter<string>, metric: string, labels: Record<string, string>, n = 1): void {
    const safe = Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, label(v)]));
    counter.inc(this.admit(metric, safe) ? safe : Object.fromEntries(Object.keys(safe).map((k) => [k, 'other'])), n);
  }

  /** Feed one decision record (subscribe this to `rt.logging.subscribe`). */
  observe(rec: DecisionRecord): void {
    this.inc(this.decisions, 'decisions', { service: rec.service, phase: rec.phase, verdict: rec.verdict, rule: rec.rule });
    if (rec.phase === 'connect') this.inc(this.connections, 'connections', { service: rec.service, verdict: rec.verdict });
    if (rec.rule === 'auth.bad_credentials') this.inc(this.authFailures, 'auth', { service: rec.service });
    if (rec.phase === 'lockout') this.inc(this.lockouts, 'lockouts', { service: rec.service, kind: rec.rule.replace(/^auth\.throttle_/, '') });
    if (rec.phase === 'authenticate' && rec.verdict === 'deny' && rec.rule.startsWith('auth.throttle_')) this.inc(this.throttled, 'throttled', { service: rec.service, rule: rec.rule });
    const now = this.clock();
    if (rec.service === 'smtp' || rec.service === 'ftp' || rec.service === 'nntp') this.trends.add(`${rec.service}.${rec.verdict === 'deny' ? 'deny' : 'allow'}`, 1, now);
    if (rec.rule === 'auth.bad_credentials') this.trends.add('auth_failures', 1, now);
    if (isThrottle(rec)) this.trends.add('throttles', 1, now);
  }

  /** Record the gauges of the charts (the ops listener calls this every few seconds and on each read). */
  sampleTrends(s: TrendSample): void {
    const now = this.clock();
    this.trends.sample('queue_depth', s.queueDepth, now);
    this.trends.sample('queue_oldest_s', s.queueOldestSeconds, now);
    for (const svc of ['smtp', 'ftp', 'nntp'] as const) this.trends.sample(`sessions.${svc}`, s.sessions[svc], now);
  }

  /** The last hour, per minute, oldest first. */
  trendSnapshot(): SeriesSnapshot {
    return this.trends.snapshot(this.clock());
  }

  /** For listeners: `metrics.count('ftp_bytes', { direction: 'upload' }, n)`. Never throws. */
  count<K extends CountName>(name: K, labels: CountLabels[K], n = 1): void {
    if (!Number.isFinite(n) || n <= 0) return;
    try {
      this.inc(this.counters[name], name, labels, n);
    } catch {
      /* metrics must never break a session */
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** The process-wide instance listeners import. */
export const metrics = new Metrics();
