/*
 * The composition root: load config, users and TLS; build the policy core; start the enabled listeners;
 * reload on demand; stop cleanly. Everything the CLI's `start` and the integration tests do goes through
 * this class, so the tests exercise exactly what operators run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig, type Config } from './config/load.js';
import { GatehouseError } from './errors.js';
import { UserStore } from './identity/users.js';
import { buildIdentitySources } from './identity/index.js';
import { lockoutsFile } from './identity/lockouts.js';
import { familiarFile, pendingClears, readCounters, readFamiliar, removeRequest, serializeCounters, serializeFamiliar, throttleFile } from './identity/throttle-files.js';
import { SerialWriter } from './net/serial-writer.js';
import { MemoryThrottleStore } from './policy/throttle-store.js';
import { ensureDir } from './net/atomic.js';
import { createLogging } from './net/log.js';
import { StateStore } from './net/state-store.js';
import { throttleStoreFor } from './net/redis-throttle-store.js';
import { loadTls } from './net/tls.js';
import { Policy, storeLimitsOf } from './policy/index.js';
import type { Service } from './policy/index.js';
import type { BoundAddress, Listener, ListenerFactory, Runtime } from './runtime.js';
import { createSmtpListener } from './smtp/index.js';
import { createFtpListener } from './ftp/index.js';
import { createNntpListener } from './nntp/index.js';
import { startOps, type OpsServer } from './ops/server.js';
import { UploadNotices } from './ftp/notices.js';
import type { ServiceHub } from './runtime.js';

export const FACTORIES: Record<Service, ListenerFactory> = {
  smtp: createSmtpListener,
  ftp: createFtpListener,
  nntp: createNntpListener,
};

export interface StartOptions {
  /** config file; undefined = default location or embedded defaults */
  readonly configFile?: string;
  /** an already parsed config (tests) */
  readonly config?: Config;
  /** log to stdout as well as to <state_dir>/log (default: config.log.stdout) */
  readonly stdout?: boolean;
}

export function prepareStateDir(config: Config): void {
  const p = config.paths;
  for (const dir of [p.stateDir, p.spoolDir, p.mailDir, p.ftpHomes, p.newsDir, p.tlsDir, p.logDir]) ensureDir(dir);
  try {
    fs.chmodSync(p.stateDir, 0o700);
  } catch {
    /* not ours to change (e.g. a mounted volume); the folders we create are 0700 anyway */
  }
}

export class Gatehouse {
  private listeners: Listener[] = [];
  private bound = new Map<Service, BoundAddress[]>();
  private rt: Runtime;
  private stopping = false;
  private familiarTimer: NodeJS.Timeout | null = null;
  /** durable mirrors of the throttle store (identity/throttle-files.ts); null when the store is shared */
  private writers: SerialWriter[] = [];
  /** metrics + status page listener (null unless metrics.listen is set) */
  ops: OpsServer | null = null;
  /** drop-box upload notices (journal + digester; see ftp/notices.ts) */
  readonly notices: UploadNotices;

  private constructor(
    rt: Runtime,
    private readonly options: StartOptions,
  ) {
    this.rt = rt;
    this.notices = new UploadNotices(() => this.rt, rt.hub!);
    rt.hub!.notices = this.notices;
  }

  static async create(options: StartOptions = {}): Promise<Gatehouse> {
    const config = options.config ?? loadConfig(options.configFile);
    prepareStateDir(config);
    const logging = createLogging({
      level: config.log.level,
      dir: config.paths.logDir,
      maxBytes: config.log.max_bytes,
      keep: config.log.keep,
      stdout: options.stdout ?? config.log.stdout,
    });
    const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost, config.auth.cache_ttl_s);
    const tls = await loadTls(config);
    const store = new MemoryThrottleStore(storeLimitsOf(config));
    const now = Date.now();
    store.loadCounters(readCounters(config.paths.stateDir), now);
    store.loadFamiliar(readFamiliar(config.paths.stateDir));
    const storePasswordFile = config.paths.stateStorePasswordFile;
    let storePassword: string | null = null;
    try {
      storePassword = storePasswordFile ? fs.readFileSync(storePasswordFile, 'utf8').trim() : null;
    } catch (err) {
      throw new GatehouseError('GH_ERR_CONFIG', `state_store.password_file: cannot read ${storePasswordFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    const stateStore = new StateStore({ ...config.state_store, password: storePassword }, logging.log);
    await stateStore.waitReady(2_000); // a store that is up at start answers the first logins
    const throttleStore = throttleStoreFor(stateStore, store, { maxFamiliarPerUser: config.auth.familiar.max_per_user, familiarTtlMs: Math.max(1, config.auth.familiar.days) * 86_400_000 });
    const policy = new Policy(config, users, logging.decision, Date.now, throttleStore);
    policy.configure(config, users, buildIdentitySources(config, users, logging.log));
    const hub: ServiceHub = { mail: null, news: null, notices: null };
    const gh = new Gatehouse({ config, policy, users, tls, log: logging.log, logging, store: stateStore, hub }, options);
    gh.persist(store);
    await gh.applyClears();
    if (fs.existsSync(lockoutsFile(config.paths.stateDir))) {
      await gh.flushState();
      fs.rmSync(lockoutsFile(config.paths.stateDir), { force: true }); // its locks now live in throttle.json
    }
    return gh;
  }

  /** Mirror the in-process throttle store to <state_dir>/throttle.json and familiar.json (serialised, durable). */
  private persist(store: MemoryThrottleStore): void {
    const stateDir = this.rt.config.paths.stateDir;
    const warn = (file: string) => (err: unknown) => this.rt.log.warn({ event: 'throttle_save_failed', file, error: String(err) }, 'cannot save throttle state');
    const counters = new SerialWriter(throttleFile(stateDir), () => serializeCounters(store.dumpCounters(Date.now()), Date.now()), warn(throttleFile(stateDir)), 1000);
    const familiar = new SerialWriter(familiarFile(stateDir), () => serializeFamiliar(store.dumpFamiliar(), Date.now()), warn(familiarFile(stateDir)), 1000);
    this.writers = [counters, familiar];
    store.onChange = (what) => (what === 'counters' ? counters : familiar).schedule();
    counters.schedule();
    const expire = () =>
      void this.rt.policy.throttle.expireFamiliar(Date.now(), Math.max(1, this.rt.config.auth.familiar.days) * 86_400_000).catch((err: unknown) => this.rt.log.warn({ event: 'familiar_expire_failed', error: String(err) }, 'cannot expire familiar addresses'));
    expire();
    this.familiarTimer = setInterval(expire, 3_600_000);
    this.familiarTimer.unref();
  }

  /** Apply `gatehouse throttle clear` requests (identity/throttle-files.ts), then delete them. */
  async applyClears(): Promise<void> {
    const stateDir = this.rt.config.paths.stateDir;
    for (const req of pendingClears(stateDir)) {
      const target = req.target;
      let n: number;
      try {
        n = 'name' in target ? (target.name ? await this.rt.policy.throttle.clear(target) : 0) : await this.rt.policy.throttle.clear(target);
      } catch (err) {
        // the shared store is down (on_error: refuse): the request stays queued for the next SIGHUP or start
        this.rt.log.warn({ event: 'throttle_clear_failed', error: String(err) }, 'cannot apply a throttle clear request now');
        continue;
      }
      this.rt.log.info({ event: 'throttle_clear', ...target, counters: n }, 'throttle cleared by operator');
      try {
        removeRequest(req.file);
      } catch (err) {
        this.rt.log.warn({ event: 'throttle_clear_failed', error: String(err) }, 'cannot remove a throttle clear request');
      }
    }
  }

  /** Write pending throttle state now (stop, tests). */
  async flushState(): Promise<void> {
    await Promise.all(this.writers.map((w) => w.flush()));
  }

  get runtime(): Runtime {
    return this.rt;
  }

  get config(): Config {
    return this.rt.config;
  }

  addresses(service: Service): BoundAddress[] {
    return this.bound.get(service) ?? [];
  }

  /** The port of a bound address (tests: listen on port 0, then ask). */
  port(service: Service, name = 'plain'): number {
    const a = this.addresses(service).find((b) => b.name === name);
    if (!a) throw new Error(`${service} has no ${name} listener`);
    return a.port;
  }

  async start(): Promise<void> {
    const services: Service[] = ['smtp', 'ftp', 'nntp'];
    try {
      for (const service of services) {
        if (!this.rt.config[service].enabled) continue;
        const listener = FACTORIES[service](this.rt);
        this.listeners.push(listener);
        let addrs: BoundAddress[];
        try {
          addrs = await listener.start();
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          throw new GatehouseError('GH_ERR_LISTEN', `${service}: cannot listen (${e.code ?? e.message}); check ${service}.listen in ${this.rt.config.source}`);
        }
        this.bound.set(service, addrs);
      }
      this.ops = await startOps(
        this.rt,
        (s) => this.addresses(s),
        undefined,
        (s) => this.listeners.find((l) => l.service === s)?.activeSessions?.() ?? 0,
      );
      this.notices.start();
      // the bcrypt warm-up and timing calibration, now the listeners answer; a login that comes first waits for it
      void this.rt.policy.calibrate();
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    this.writePid();
  }

  private writePid(): void {
    try {
      fs.writeFileSync(path.join(this.rt.config.paths.stateDir, 'gatehouse.pid'), `${process.pid}\n`, { mode: 0o600 });
    } catch {
      /* informational only */
    }
  }

  /**
   * Re-read config, users and TLS. An invalid config keeps the old one (and says why); listen addresses
   * and enabled services are not changed by a reload (that needs a restart, as with Postfix's inet_interfaces).
   */
  async reload(): Promise<{ ok: boolean; message: string }> {
    const old = this.rt;
    try {
      await this.applyClears();
      const config = this.options.config && !this.options.configFile ? this.options.config : loadConfig(this.options.configFile ?? (old.config.source.startsWith('<') ? undefined : old.config.source));
      const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost, config.auth.cache_ttl_s);
      const tls = await loadTls(config);
      old.policy.configure(config, users, buildIdentitySources(config, users, old.log));
      const was = old.config.state_store;
      if (was.url !== config.state_store.url || was.on_error !== config.state_store.on_error) {
        old.log.warn({ event: 'state_store_reload' }, 'state_store changed: takes effect at the next restart');
      }
      const rt: Runtime = { ...old, config, users, tls };
      this.rt = rt;
      for (const l of this.listeners) l.reload(rt);
      this.ops?.reload(rt);
      old.log.info({ event: 'reload' }, 'configuration reloaded');
      return { ok: true, message: 'configuration reloaded' };
    } catch (err) {
      const message = err instanceof GatehouseError ? err.message : String(err);
      old.log.error({ event: 'reload_failed', error: message }, 'reload refused; keeping the running configuration');
      return { ok: false, message };
    }
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.notices.stop(); // before the SMTP queue goes: a digest in progress finishes its enqueue
    await Promise.allSettled(this.listeners.map((l) => l.stop(graceMs)));
    this.listeners = [];
    if (this.familiarTimer) clearInterval(this.familiarTimer);
    await this.flushState().catch(() => {});
    await this.ops?.stop();
    this.ops = null;
    await this.rt.store?.close();
    try {
      fs.rmSync(path.join(this.rt.config.paths.stateDir, 'gatehouse.pid'), { force: true });
    } catch {
      /* ignore */
    }
    this.rt.logging.close();
  }
}
