/*
 * The mail queue: durable enqueue (see spool.ts for the layout and crash reasoning) and the delivery worker.
 * The worker keeps an in-memory index of the spool, picks due entries with bounded concurrency, delivers each
 * pending recipient (Maildir for local users, smarthost or MX otherwise), records every outcome durably right
 * after it happens, schedules retries on `queue.retry_s`, bounces permanent failures and expired mail
 * (RFC 3464), and removes an entry only when every recipient is final.
 */
import type { Runtime } from '../runtime.js';
import type { Logger } from '../net/log.js';
import type { Envelope, MailQueue } from './queue-types.js';
import { newQueueId, Spool, type QueueEntry } from './spool.js';

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

class Queue implements MailQueueImpl {
  readonly spool: Spool;
  private log: Logger;
  private readonly index = new Map<string, QueueEntry>();

  constructor(private rt: Runtime) {
    this.spool = new Spool(rt.config.paths.spoolDir);
    this.log = rt.log.child({ svc: 'smtp', component: 'queue' });
    const removed = this.spool.recoverSync();
    for (const e of this.spool.listSync()) this.index.set(e.id, e);
    this.log.info({ event: 'queue_recover', entries: this.index.size, tmpRemoved: removed.tmp, orphansRemoved: removed.orphans }, 'queue loaded');
  }

  async enqueue(envelope: Envelope, data: Buffer): Promise<string> {
    if (envelope.recipients.length === 0) throw new Error('enqueue: no recipients');
    const id = newQueueId();
    const entry = entryFromEnvelope(id, envelope, data.length);
    await this.spool.create(entry, data);
    this.index.set(id, entry);
    this.log.info({ event: 'queued', id, from: envelope.sender, rcpts: envelope.recipients.length, size: data.length, session: envelope.session }, 'message queued');
    return id;
  }

  start(): void {
    /* delivery worker lands in the next commit */
  }

  async stop(_graceMs: number): Promise<void> {
    /* nothing in flight yet */
  }

  reload(rt: Runtime): void {
    this.rt = rt;
    this.log = rt.log.child({ svc: 'smtp', component: 'queue' });
  }

  stats(): QueueStats {
    let oldest = Date.now();
    for (const e of this.index.values()) oldest = Math.min(oldest, e.createdAt);
    return { depth: this.index.size, oldestAgeS: Math.floor((Date.now() - oldest) / 1000), inFlight: 0, delivered: 0, deferred: 0, failed: 0, bounces: 0 };
  }
}

/** One queue per process and spool; the listener creates it and calls `start()` once it is bound. */
export function createMailQueue(rt: Runtime): MailQueueImpl {
  return new Queue(rt);
}
