/*
 * The contract between the SMTP listener (which accepts mail) and the queue (which keeps and delivers it).
 * The listener hands over an accepted message; `enqueue` resolves only when message and envelope are on
 * disk (fsync of files and folder, atomic rename), and only then may the listener answer 250.
 */
import type { NormalizedAddress } from '../policy/index.js';

export interface Envelope {
  /** '' is the null sender (bounces) */
  readonly sender: string;
  readonly recipients: readonly NormalizedAddress[];
  /** who sent it, for the Received: header and the log */
  readonly clientIp: string;
  readonly helo: string;
  readonly user: string | null;
  readonly tls: boolean;
  readonly session: string;
}

export interface MailQueue {
  /**
   * Store a message durably. `data` is the message exactly as it must be delivered (the listener has
   * already prepended Received: and normalised line endings to CRLF). Resolves with the queue id: `id` when
   * given (the listener names it in Received:, from newQueueId), else a new one.
   */
  enqueue(envelope: Envelope, data: Buffer, id?: string, opts?: { handOver?: boolean }): Promise<string>;
  /**
   * Optional: an entry written as its message arrives (a large DATA), for the same result as `enqueue` with
   * all its bytes. The listener writes the message bytes in order, then commits (resolves with `id` once the
   * entry is durable, as enqueue) or aborts (nothing is queued).
   */
  draft?(envelope: Envelope, id: string): QueueDraft;
  /** Start the delivery worker (called once the listener is up). */
  start(): void;
  /** Stop the worker; in-flight deliveries get `graceMs` before they are abandoned (and retried later). */
  stop(graceMs: number): Promise<void>;
}

/** A queue entry being written as its message arrives (MailQueue.draft). */
export interface QueueDraft {
  /** Take the next bytes (the caller must not reuse `chunk`); false: pause the source until onRoom's callback. */
  write(chunk: Buffer): boolean;
  /** `fn` is called once there is room again after `write` answered false. */
  onRoom(fn: () => void): void;
  /** The message is complete: make it a durable entry; resolves with its id. */
  commit(): Promise<string>;
  /** No entry: drop what was written. */
  abort(): void;
}
