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

export interface Runtime {
  readonly config: Config;
  readonly policy: Policy;
  readonly users: UserStore;
  readonly tls: TlsMaterial;
  readonly log: Logger;
  readonly logging: Logging;
  /** shared counters (state_store); absent = in-process only */
  readonly store?: StateStore;
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
