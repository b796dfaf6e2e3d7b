/*
 * The mail queue: durable enqueue (see spool.ts for the layout and crash reasoning) and the delivery worker.
 * The worker keeps an in-memory index of the spool, picks due entries with bounded concurrency, delivers each
 * pending recipient (Maildir for local users, smarthost or MX otherwise), records every outcome durably right
 * after it happens, schedules retries on `queue.retry_s`, bounces permanent failures and expired mail
 * (RFC 3464), and removes an entry only when every recipient is final.
 */
import { metrics } from '../ops/metrics.js';
import type { Runtime } from '../runtime.js';
import type { Logger } from '../net/log.js';
import { normalizeAddress } from '../policy/address.js';
import { buildBounce, type FailedRecipient } from './bounce.js';
import { deliverDirect, deliverSmarthost, SmarthostPool, type DeliveryOptions, type Outcome } from './delivery.js';
import { deliverToMaildir } from './maildir.js';
import { deliverToNews, isNewsRecipient } from './news-route.js';
import type { Envelope, MailQueue, QueueDraft } from './queue-types.js';
import { envelopeLine, isSafeId, MAX_HEADER, newQueueId, Spool, type QueueEntry, type RecipientState } from './spool.js';

export interface QueueStats {
  /** entries in the queue */
  readonly depth: number;
  /** age of the oldest entry in seconds (0 when empty) */
  readonly oldestAgeS: number;
  readonly inFlight: number;
  readonly delivered: number;
  readonly deferred: number;
  readonly failed: number;
  readonly bounces: number;
}

export interface MailQueueImpl extends MailQueue {
  reload(rt: Runtime): void;
  stats(): QueueStats;
  readonly spool: Spool;
}

export function entryFromEnvelope(id: string, envelope: Envelope, size: number, now = Date.now()): QueueEntry {
  return {
    version: 1,
    id,
    createdAt: now,
    sender: envelope.sender,
    recipients: envelope.recipients.map((r) => ({
      address: r.address,
      local: r.local,
      domain: r.domain,
      state: 'pending' as const,
      attempts: 0,
      lastError: null,
      notified: false,
      status: null,
    })),
    clientIp: envelope.clientIp,
    helo: envelope.helo,
    user: envelope.user,
    tls: envelope.tls,
    session: envelope.session,
    size,
    attempts: 0,
    nextAttemptAt: now,
    lastAttemptAt: null,
    lastError: null,
    bounces: 0,
  };
}

export interface QueueOptions {
  /** how often the worker looks for due entries and the flush marker (ms) */
  readonly tickMs?: number;
  readonly delivery?: DeliveryOptions;
}

/**
 * Bytes of freshly queued messages kept for their first delivery attempt (so it need not read back what was
 * just written and fsynced); beyond this many bytes in total, attempts read the spool as usual.
 */
const FRESH_BYTES = 32 * 1024 * 1024;

/** Thrown when the entry disappeared under us (deleted by `gatehouse queue delete`). */
class EntryGone extends Error {}

class Queue implements MailQueueImpl {
  readonly spool: Spool;
  private log: Logger;
  private readonly index = new Map<string, QueueEntry>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly cancellers = new Map<string, Set<() => void>>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly pool = new SmarthostPool();
  private counts = { delivered: 0, deferred: 0, failed: 0, bounces: 0 };
  /** message bytes of entries queued by this process and not yet attempted (see FRESH_BYTES) */
  private readonly fresh = new Map<string, Buffer>();
  private freshBytes = 0;
  /** entries queued by this process that have no env/<id>.json (nothing to unlink on removal) */
  private readonly stateless = new Set<string>();

  constructor(
    private rt: Runtime,
    private readonly options: QueueOptions = {},
  ) {
    this.spool = new Spool(rt.config.paths.spoolDir);
    this.log = rt.log.child({ svc: 'smtp', component: 'queue' });
    const removed = this.spool.recoverSync();
    let corrupt = 0;
    for (const id of this.spool.idsSync()) {
      const e = this.spool.readSync(id);
      if (e) {
        this.index.set(id, e);
      } else {
        corrupt++;
        this.spool.quarantineSync(id);
        this.log.error({ event: 'queue_corrupt', id }, 'unreadable or incomplete queue entry moved to spool/corrupt');
      }
    }
    this.log.info({ event: 'queue_recover', entries: this.index.size, corrupt, tmpRemoved: removed.tmp, orphansRemoved: removed.orphans }, 'queue loaded');
  }

  /**
   * Store a message durably and hand it to delivery. `handOver`: the caller no longer uses `data` (nor its
   * length) after this call, so a message too large for the fresh cache is moved to the spool's writer thread
   * instead of copied (its Buffer is empty afterwards).
   */
  async enqueue(envelope: Envelope, data: Buffer, presetId?: string, opts: { handOver?: boolean } = {}): Promise<string> {
    if (envelope.recipients.length === 0) throw new Error('enqueue: no recipients');
    const id = presetId ?? newQueueId();
    if (!isSafeId(id) || this.index.has(id)) throw new Error('enqueue: bad or duplicate queue id');
    const size = data.length;
    const entry = entryFromEnvelope(id, envelope, size);
    // moved only when it would not be kept in the fresh cache anyway (a moved Buffer is empty afterwards)
    const move = opts.handOver === true && this.freshBytes + size > FRESH_BYTES;
    await this.spool.create(entry, data, move);
    if (!move && this.freshBytes + size <= FRESH_BYTES) {
      this.fresh.set(id, data);
      this.freshBytes += size;
    }
    return this.admit(entry, envelope);
  }

  /** A new entry is on disk: index it, log it, wake the worker; resolves enqueue and a draft's commit alike. */
  private admit(entry: QueueEntry, envelope: Envelope): string {
    this.index.set(entry.id, entry);
    this.stateless.add(entry.id);
    this.log.info({ event: 'queued', id: entry.id, from: envelope.sender, rcpts: envelope.recipients.length, size: entry.size, session: envelope.session }, 'message queued');
    this.kick();
    return entry.id;
  }

  /**
   * A large message written to the spool as it arrives (MailQueue.draft, spool-draft.ts). The envelope line is
   * reserved at its longest (the size at its largest; only size and times differ at commit); the bytes are not
   * kept for the first attempt (delivery reads the file).
   */
  draft(envelope: Envelope, id: string): QueueDraft {
    if (envelope.recipients.length === 0) throw new Error('enqueue: no recipients');
    if (!isSafeId(id) || this.index.has(id)) throw new Error('enqueue: bad or duplicate queue id');
    // envelopeLine refuses a line the spool could not read back; the reserve never passes that bound either.
    const reserve = Math.min(Buffer.byteLength(envelopeLine(entryFromEnvelope(id, envelope, Number.MAX_SAFE_INTEGER))) + 32, MAX_HEADER);
    const d = this.spool.draft(id, reserve);
    return {
      write: (chunk) => d.write(chunk),
      onRoom: (fn) => d.onRoom(fn),
      abort: () => d.abort(),
      commit: async () => {
        if (this.index.has(id)) {
          d.abort();
          throw new Error('enqueue: duplicate queue id');
        }
        const entry = entryFromEnvelope(id, envelope, d.bytes);
        await d.commit(JSON.stringify(entry));
        return this.admit(entry, envelope);
      },
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.timer = setInterval(() => {
      this.resync();
      this.takeFlush();
      this.pump();
    }, this.options.tickMs ?? 1000);
    this.timer.unref();
    this.takeFlush();
    this.pump();
  }

  async stop(graceMs: number): Promise<void> {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const all = () => Promise.allSettled([...this.inFlight.values()]);
    if (this.inFlight.size === 0) {
      this.pool.close();
      await this.spool.close();
      return;
    }
    let timeout: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timeout = setTimeout(() => resolve(true), Math.max(0, graceMs));
    });
    const late = await Promise.race([all().then(() => false), expired]);
    clearTimeout(timeout);
    if (late) {
      this.log.warn({ event: 'queue_stop_abandon', inFlight: this.inFlight.size }, 'abandoning in-flight deliveries; they are retried on the next start');
      for (const set of this.cancellers.values()) for (const cancel of set) cancel();
      await Promise.race([all(), new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    this.pool.close();
    await this.spool.close();
  }

  reload(rt: Runtime): void {
    this.rt = rt;
    this.log = rt.log.child({ svc: 'smtp', component: 'queue' });
  }

  stats(): QueueStats {
    const now = Date.now();
    let oldest = now;
    for (const e of this.index.values()) oldest = Math.min(oldest, e.createdAt);
    return { depth: this.index.size, oldestAgeS: Math.floor((now - oldest) / 1000), inFlight: this.inFlight.size, ...this.counts };
  }

  /** Forget entries removed from the spool behind our back (`gatehouse queue delete`). */
  private resync(): void {
    if (this.index.size === 0) return;
    const onDisk = new Set(this.spool.idsSync());
    for (const id of this.index.keys()) {
      if (!onDisk.has(id) && !this.inFlight.has(id)) {
        this.forget(id);
        this.log.info({ event: 'queue_gone', id }, 'entry was removed from the spool');
      }
    }
  }

  private forget(id: string): void {
    this.index.delete(id);
    this.stateless.delete(id);
    this.takeFresh(id);
  }

  /** The bytes enqueue kept for this entry's first attempt, if any; they are handed out (and counted off) once. */
  private takeFresh(id: string): Buffer | undefined {
    const data = this.fresh.get(id);
    if (data) {
      this.fresh.delete(id);
      this.freshBytes -= data.length;
    }
    return data;
  }

  private kick(): void {
    if (this.running) setImmediate(() => this.pump());
  }

  /** The flush marker is polled on the tick only (not on every pump: one failing syscall per message otherwise). */
  private takeFlush(): void {
    if (!this.spool.takeFlushRequestSync()) return;
    this.log.info({ event: 'queue_flush', entries: this.index.size }, 'flush requested: every entry is due now');
    for (const e of this.index.values()) e.nextAttemptAt = 0;
  }

  /** Pick due entries up to the concurrency bound. Never throws. */
  private pump(): void {
    if (!this.running) return;
    const now = Date.now();
    const limit = this.rt.config.smtp.queue.concurrency;
    if (this.inFlight.size >= limit) return;
    // Map order is arrival order: the oldest due entries go first, without sorting the whole queue each time
    for (const e of this.index.values()) {
      if (this.inFlight.size >= limit) break;
      if (e.nextAttemptAt > now || this.inFlight.has(e.id)) continue;
      const id = e.id;
      const p = this.attempt(id)
        .catch((err: unknown) => {
          if (err instanceof EntryGone) {
            this.forget(id);
            this.log.info({ event: 'queue_gone', id }, 'entry was removed from the spool during delivery');
            return;
          }
          this.log.error({ event: 'queue_error', id, error: err instanceof Error ? err.message : String(err) }, 'delivery attempt failed');
          const entry = this.index.get(id);
          if (entry) entry.nextAttemptAt = Date.now() + this.retryDelayMs(entry.attempts);
        })
        .finally(() => {
          this.inFlight.delete(id);
          this.cancellers.delete(id);
          this.kick();
        });
      this.inFlight.set(id, p);
    }
  }

  private retryDelayMs(attempts: number): number {
    const schedule = this.rt.config.smtp.queue.retry_s;
    return schedule[Math.min(Math.max(attempts, 1) - 1, schedule.length - 1)]! * 1000;
  }

  private async persist(entry: QueueEntry): Promise<void> {
    if (!(await this.spool.exists(entry.id))) throw new EntryGone();
    this.stateless.delete(entry.id);
    await this.spool.writeEnvelope(entry);
  }

  private record(entry: QueueEntry, r: RecipientState, o: Outcome, via: string): void {
    r.attempts++;
    if (o.result === 'delivered') {
      r.state = 'delivered';
      r.lastError = null;
      this.counts.delivered++;
      metrics.count('delivery_attempts', { outcome: 'delivered' });
      this.log.info({ event: 'delivered', id: entry.id, to: r.address, via, attempt: entry.attempts, reply: o.detail }, 'delivered');
    } else if (o.result === 'permanent') {
      r.state = 'failed';
      r.lastError = o.detail;
      r.status = o.status ?? '5.0.0';
      this.counts.failed++;
      metrics.count('delivery_attempts', { outcome: 'failed' });
      this.log.warn({ event: 'delivery_failed', id: entry.id, to: r.address, via, attempt: entry.attempts, status: r.status, error: o.detail }, 'permanent failure');
    } else {
      r.lastError = o.detail;
      r.status = o.status;
      this.counts.deferred++;
      metrics.count('delivery_attempts', { outcome: 'deferred' });
      this.log.info({ event: 'deferred', id: entry.id, to: r.address, via, attempt: entry.attempts, error: o.detail }, 'temporary failure; will retry');
    }
  }

  /** Entry and bytes for an attempt: what enqueue just wrote (if still there), else read from the spool. */
  private async load(id: string): Promise<{ entry: QueueEntry; data: Buffer } | null> {
    const data = this.takeFresh(id);
    const entry = this.index.get(id);
    if (data && entry && entry.attempts === 0) {
      // never attempted, no state written: the index entry is the header line of msg/<id>; still make sure
      // `gatehouse queue delete` has not removed it meanwhile
      return (await this.spool.exists(id)) ? { entry, data } : null;
    }
    return this.spool.readMessage(id);
  }

  private async attempt(id: string): Promise<void> {
    const stored = await this.load(id);
    if (!stored) throw new EntryGone();
    const { entry, data } = stored;
    this.index.set(id, entry);
    const rt = this.rt;
    const now = Date.now();
    entry.attempts++;
    entry.lastAttemptAt = now;
    const all = entry.recipients.filter((r) => r.state === 'pending');
    const news = all.filter((r) => isNewsRecipient(rt, r)); // mail-to-news (nntp.mail_gateway)
    const pending = news.length > 0 ? all.filter((r) => !news.includes(r)) : all;
    const local = pending.filter((r) => rt.policy.isLocalDomain(r.domain));
    const remote = pending.filter((r) => !rt.policy.isLocalDomain(r.domain));

    if (news.length > 0) {
      const outcomes = await deliverToNews(rt, entry, news, data);
      for (const r of news) this.record(entry, r, outcomes.get(r.address) ?? { address: r.address, result: 'temporary', detail: 'no outcome', status: '4.0.0' }, 'news');
      await this.persist(entry); // posted is on record before anything else is tried
    }

    for (const r of local) {
      const user = r.local.toLowerCase();
      if (!rt.users.has(user)) {
        this.record(entry, r, { address: r.address, result: 'permanent', detail: `550 5.1.1 <${r.address}>: no such user here`, status: '5.1.1' }, 'maildir');
        continue;
      }
      try {
        await deliverToMaildir({ mailDir: rt.config.paths.mailDir, user, hostname: rt.config.hostname, sender: entry.sender, recipient: r.address, data });
        this.record(entry, r, { address: r.address, result: 'delivered', detail: `maildir ${user}`, status: null }, 'maildir');
        await this.persist(entry); // exactly once: the delivery is on record right after the rename
      } catch (err) {
        if (err instanceof EntryGone) throw err;
        const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : 'error');
        this.record(entry, r, { address: r.address, result: 'temporary', detail: `maildir write failed (${code})`, status: '4.3.0' }, 'maildir');
      }
    }

    if (remote.length > 0) {
      const sh = rt.config.smtp.relay.smarthost;
      const via = sh ? `smarthost ${sh.host}:${sh.port}` : 'mx';
      const cancels = new Set<() => void>();
      this.cancellers.set(id, cancels);
      const job = { config: rt.config, sender: entry.sender, recipients: remote.map((r) => r.address), data, onTransport: (c: () => void) => cancels.add(c) };
      this.log.debug({ event: 'delivery_attempt', id, via, rcpts: remote.length, attempt: entry.attempts }, 'delivering'); // the outcome line names via and attempt
      const outcomes = sh ? await deliverSmarthost(job, this.options.delivery, this.pool) : await deliverDirect(job, this.options.delivery);
      const byAddress = new Map(outcomes.map((o) => [o.address, o]));
      for (const r of remote) {
        this.record(entry, r, byAddress.get(r.address) ?? { address: r.address, result: 'temporary', detail: 'no outcome', status: '4.0.0' }, via);
      }
    }

    const stillPending = entry.recipients.filter((r) => r.state === 'pending');
    const ageS = (Date.now() - entry.createdAt) / 1000;
    if (stillPending.length > 0 && ageS > rt.config.smtp.queue.max_age_s) {
      for (const r of stillPending) {
        r.state = 'failed';
        r.lastError = `message expired after ${Math.floor(ageS)} s in the queue; last error: ${r.lastError ?? 'none'}`;
        r.status = '4.4.7';
        this.counts.failed++;
        this.log.warn({ event: 'expired', id, to: r.address, ageS: Math.floor(ageS) }, 'message expired in the queue');
      }
    }
    const left = entry.recipients.filter((r) => r.state === 'pending');
    entry.lastError = left.find((r) => r.lastError)?.lastError ?? entry.recipients.find((r) => r.state === 'failed')?.lastError ?? null;
    if (left.length > 0) entry.nextAttemptAt = Date.now() + this.retryDelayMs(entry.attempts);
    const needsBounce = entry.recipients.some((r) => r.state === 'failed' && !r.notified);
    // all delivered: removing the entry is the durable record (one write fewer per message)
    if (left.length > 0 || needsBounce) await this.persist(entry);

    await this.bounce(entry, data);

    if (left.length === 0) {
      await this.spool.remove(id, !this.stateless.delete(id));
      this.index.delete(id);
      this.log.info({ event: 'queue_done', id, attempts: entry.attempts }, 'entry complete; removed from the queue');
    }
  }

  /** Enqueue one DSN for the failed recipients not yet reported; the bounce id is derived, so a crash never duplicates it. */
  private async bounce(entry: QueueEntry, data: Buffer): Promise<void> {
    const unreported = entry.recipients.filter((r) => r.state === 'failed' && !r.notified);
    if (unreported.length === 0) return;
    const sender = entry.sender === '' ? null : normalizeAddress(entry.sender);
    if (sender === null || !sender.ok) {
      this.log.warn({ event: 'bounce_dropped', id: entry.id, from: entry.sender, rcpts: unreported.map((r) => r.address) }, entry.sender === '' ? 'failed message had the null sender; not bounced' : 'sender address unusable; not bounced');
    } else {
      const bounceId = `${entry.id}b${entry.bounces}`;
      if (!(await this.spool.exists(bounceId))) {
        const failed: FailedRecipient[] = unreported.map((r) => ({ address: r.address, status: r.status ?? '5.0.0', diagnostic: r.lastError ?? 'delivery failed' }));
        const dsn = buildBounce({ hostname: this.rt.config.hostname, originalSender: entry.sender, originalId: entry.id, arrival: new Date(entry.createdAt), failed, originalData: data });
        const env: Envelope = { sender: '', recipients: [sender.address], clientIp: '127.0.0.1', helo: this.rt.config.hostname, user: null, tls: false, session: `bounce-${entry.id}` };
        const b = entryFromEnvelope(bounceId, env, dsn.length);
        await this.spool.create(b, dsn);
        this.index.set(bounceId, b);
        this.counts.bounces++;
        this.log.info({ event: 'bounce_queued', id: entry.id, bounce: bounceId, to: entry.sender, rcpts: failed.length }, 'bounce queued');
        this.kick();
      }
      entry.bounces++;
    }
    for (const r of unreported) r.notified = true;
    await this.persist(entry);
  }
}

/** One queue per process and spool; the listener creates it and calls `start()` once it is bound. */
export function createMailQueue(rt: Runtime, options: QueueOptions = {}): MailQueueImpl {
  return new Queue(rt, options);
}
