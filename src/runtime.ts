/*
 * What a listener is given (Runtime) and what it must offer (Listener). The composition root
 * (gatehouse.ts) builds one Runtime, hands it to each enabled listener, and swaps it on SIGHUP.
 */
import type { Config } from './config/load.js';
import type { UserStore } from './identity/users.js';
import type { Logger, Logging } from './net/log.js';
import type { StateStore } from './net/state-store.js';
import type { TlsMaterial } from './net/tls.js';
import type { Policy, Service } from './policy/index.js';
import { randomHex } from './net/random.js';
import type { Envelope } from './smtp/queue-types.js';

export interface Runtime {
  readonly config: Config;
  readonly policy: Policy;
  readonly users: UserStore;
  readonly tls: TlsMaterial;
  readonly log: Logger;
  readonly logging: Logging;
  /** how services reach each other's durable paths (cross-service features); absent in unit-test runtimes */
  readonly hub?: ServiceHub;
  /** shared counters (state_store); absent = in-process only */
  readonly store?: StateStore;
}

/**
 * The composition root's switchboard (ARCHITECTURE "Second wave": cross-service features use each service's own
 * durable path). A listener registers what it offers when it starts and clears it when it stops; a feature asks
 * here instead of opening another service's files. The object survives reloads (the Runtime is copied, not it).
 */
export interface ServiceHub {
  /** the SMTP queue's durable enqueue (set while the SMTP listener runs) */
  mail: { enqueue(envelope: Envelope, data: Buffer): Promise<string> } | null;
  /** the NNTP store's checked POST for mail-to-news (set while the NNTP listener runs) */
  news: NewsPoster | null;
  /** upload notices (set by the composition root) */
  notices: UploadNoticeSink | null;
}

export interface NewsPostRequest {
  /** queue id of the mail: the article's logging-data, and its Message-ID when the mail has no valid one */
  readonly queueId: string;
  readonly groups: readonly string[];
  /** SMTP login, or null (trusted network) */
  readonly user: string | null;
  readonly clientIp: string;
  /** the message as queued (CRLF lines) */
  readonly data: Buffer;
}

export type NewsPostOutcome =
  | { readonly group: string; readonly result: 'posted'; readonly detail: string }
  | { readonly group: string; readonly result: 'permanent' | 'temporary'; readonly detail: string; readonly status: string };

export interface NewsPoster {
  post(req: NewsPostRequest): Promise<NewsPostOutcome[]>;
}

export interface UploadNoticeSink {
  /** Called after an upload is committed and before its 226: durably journals a notice when the share asks for one. */
  uploaded(u: { readonly mount: string; readonly virtual: string; readonly abs: string; readonly bytes: number; readonly uploader: string; readonly ip: string; readonly session: string }): Promise<void>;
}

export interface BoundAddress {
  /** e.g. `plain`, `implicit_tls` */
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

export interface Listener {
  readonly service: Service;
  /** Bind and start accepting; resolves with what was actually bound (port 0 → the real port). */
  start(): Promise<BoundAddress[]>;
  /** Sessions open now (what the connection caps count); the status page charts it. */
  activeSessions?(): number;
  /** Take a new config/users/TLS; open sessions keep going. */
  reload(rt: Runtime): void;
  /** Stop accepting, give open sessions up to `graceMs` to finish, then close them. */
  stop(graceMs: number): Promise<void>;
}

export type ListenerFactory = (rt: Runtime) => Listener;

/** 48 random bits as hex: the id that ties a session's log lines and decisions together (not a secret). */
export function newSessionId(): string {
  return randomHex(6);
}
