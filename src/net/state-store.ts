/*
 * Shared state for several instances behind a balancer (`state_store`): one Redis/Valkey connection (ioredis) and
 * rate limiters on it (rate-limiter-flexible: one atomic script per consume, keys that expire on their own), so a
 * limit counts across every instance. No home-made replication: Redis is the one place the counters live.
 *
 * Without `state_store.url` (the default) there is no connection and every limiter is in-process. When Redis is
 * unreachable, `on_error` decides: `local` (default) — each limiter answers from its in-process twin (per-instance
 * counters, as without a store); `refuse` — the limiter answers `unavailable` and the caller refuses with a
 * temporary error (fail closed). Either way `up` is false (metric gatehouse_state_store_up 0, status page), and the
 * log says so once a minute while it lasts. ioredis reconnects by itself; commands are never queued while down.
 */
import type { Redis } from 'ioredis';
import type { RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';

export interface StateStoreConfig {
  readonly url: string | null;
  readonly on_error: 'local' | 'refuse';
  /** the store's password, read from state_store.password_file */
  readonly password?: string | null;
}

export interface StoreLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** `ok`: counted; `limited`: over the limit; `unavailable`: the shared store is down and on_error is refuse. */
export type LimitVerdict = 'ok' | 'limited' | 'unavailable';

export interface SharedLimiter {
  /** Count one event for `key` and say whether it was within the limit. */
  consume(key: string): Promise<LimitVerdict>;
  /** Is `key` still under the limit (nothing counted)? */
  check(key: string): Promise<LimitVerdict>;
}

const LOG_EVERY_MS = 60_000;

/** rate-limiter-flexible (~40 files) is loaded by the first limiter that counts something, not at start. */
let rlfModule: Promise<typeof import('rate-limiter-flexible')> | null = null;
const rlf = (): Promise<typeof import('rate-limiter-flexible')> => (rlfModule ??= import('rate-limiter-flexible'));

export class StateStore {
  /** set once ioredis is loaded (only when a store is configured: most instances have none, and skip its ~60 files) */
  private redis: Redis | null = null;
  private readonly loading: Promise<void> | null;
  private closed = false;
  private ready = false;
  private downSince = 0;
  private lastLog = 0;
  private readonly timer: NodeJS.Timeout | null;
  private readonly limiters = new Map<string, SharedLimiter>();

  constructor(
    readonly config: StateStoreConfig,
    private readonly log: StoreLog,
  ) {
    if (!config.url) {
      this.loading = null;
      this.timer = null;
      return;
    }
    const url = config.url;
    this.downSince = Date.now();
    this.loading = import('ioredis').then(({ Redis }) => {
      if (this.closed) return;
      const redis = new Redis(url, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: 2_000,
        retryStrategy: (times) => Math.min(times * 200, 2_000),
        lazyConnect: false,
        ...(config.password ? { password: config.password } : {}),
      });
      redis.on('ready', () => {
        if (!this.ready && this.lastLog > 0) this.log.info({ event: 'state_store_up', store: redact(url) }, 'shared state store reachable again');
        this.ready = true;
        this.downSince = 0;
      });
      const down = (err?: Error) => {
        if (this.ready || this.downSince === 0) this.downSince = Date.now();
        this.ready = false;
        this.note(err);
      };
      redis.on('error', down);
      redis.on('close', () => down());
      this.redis = redis;
    });
    this.timer = setInterval(() => this.note(), LOG_EVERY_MS);
    this.timer.unref();
  }

  /** Is a shared store configured at all? */
  get configured(): boolean {
    return this.loading !== null;
  }

  /** Configured and reachable (false when not configured). */
  get up(): boolean {
    return this.redis !== null && this.ready;
  }

  /** Wait (bounded) until the connection is ready; false when not configured or not ready in time. */
  async waitReady(ms: number): Promise<boolean> {
    if (!this.loading) return false;
    const t0 = Date.now();
    await this.loading;
    const redis = this.redis;
    if (!redis) return false;
    if (this.ready) return true;
    ms = Math.max(0, ms - (Date.now() - t0));
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(this.ready), ms);
      redis.on('ready', onReady);
    });
  }

  /** The connection (null when no store is configured, or before `waitReady`): the login throttle's shared store uses it too. */
  get client(): Redis | null {
    return this.redis;
  }

  /** A command on the connection failed (logged at most once a minute while the store is down). */
  failed(err: unknown): void {
    this.note(err instanceof Error ? err : undefined);
  }

  /** For the status page and metrics. */
  status(): { configured: boolean; up: boolean; onError: 'local' | 'refuse'; downSince: string | null } {
    return { configured: this.configured, up: this.up, onError: this.config.on_error, downSince: this.configured && !this.ready && this.downSince > 0 ? new Date(this.downSince).toISOString() : null };
  }

  /** Log (at most once a minute) that the store is down and what that means. */
  private note(err?: Error): void {
    if (!this.loading || this.ready) return;
    const now = Date.now();
    if (now - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = now;
    const mode = this.config.on_error === 'local' ? 'counting per instance until it is back' : 'refusing what needs it until it is back';
    this.log.warn({ event: 'state_store_down', store: redact(this.config.url), error: err?.message, since: new Date(this.downSince || now).toISOString() }, `shared state store unreachable: ${mode}`);
  }

  /** A limiter of `points` events per `durationS` seconds per key, shared when a store is configured. */
  limiter(name: string, points: number, durationS: number): SharedLimiter {
    const id = `${name}:${points}:${durationS}`;
    const cached = this.limiters.get(id);
    if (cached) return cached;
    let memory: RateLimiterAbstract | null = null;
    let shared: RateLimiterAbstract | null = null;
    // The Redis limiter once the connection exists. In the moment before ioredis is loaded (start waits for it)
    // the store counts as down: on_error local answers from the in-process twin, refuse answers unavailable.
    const pick = async (): Promise<RateLimiterAbstract> => {
      const { RateLimiterMemory, RateLimiterRedis } = await rlf();
      memory ??= new RateLimiterMemory({ keyPrefix: name, points, duration: durationS });
      if (!this.loading) return memory;
      if (shared === null && this.redis) {
        shared = new RateLimiterRedis({
          storeClient: this.redis,
          keyPrefix: `gatehouse:${name}`,
          points,
          duration: durationS,
          rejectIfRedisNotReady: true,
          ...(this.config.on_error === 'local' ? { insuranceLimiter: memory } : {}),
        });
      }
      if (shared) return shared;
      if (this.config.on_error === 'local') return memory;
      throw new Error('shared state store not connected yet');
    };
    const verdict = async (fn: () => Promise<RateLimiterRes | null>, within: (r: RateLimiterRes | null) => boolean): Promise<LimitVerdict> => {
      try {
        return within(await fn()) ? 'ok' : 'limited';
      } catch (err) {
        if (err instanceof (await rlf()).RateLimiterRes) return 'limited';
        this.note(err instanceof Error ? err : undefined);
        return 'unavailable';
      }
    };
    const limiter: SharedLimiter = {
      consume: (key) => verdict(async () => (await pick()).consume(key), () => true),
      check: (key) =>
        verdict(
          async () => (await pick()).get(key),
          (r) => r === null || r.consumedPoints < points,
        ),
    };
    this.limiters.set(id, limiter);
    return limiter;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (!this.redis) return;
    this.redis.removeAllListeners('close');
    this.redis.on('error', () => undefined);
    this.redis.disconnect(false);
    await Promise.resolve();
  }
}

/** The URL without its password, for logs and the status page. */
export function redact(url: string | null): string {
  if (!url) return '';
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://?';
  }
}
