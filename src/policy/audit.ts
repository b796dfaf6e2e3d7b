/** One audit record per decision: the log line, the `explain` output and the metrics label at once. */
import type { Decision, Identity, Service } from './types.js';
import { identityLabel } from './types.js';

export interface DecisionRecord {
  readonly time: string;
  readonly service: Service;
  readonly phase: string;
  readonly verdict: 'allow' | 'deny';
  readonly rule: string;
  readonly reason: string;
  readonly ip: string;
  readonly user: string;
  readonly session: string;
  readonly object?: string;
  /** the PROXY protocol peer that relayed the client (its address beside the client's `ip`) */
  readonly proxy?: string;
}

export type AuditSink = (record: DecisionRecord) => void;

export interface AuditContext {
  readonly service: Service;
  readonly ip: string;
  readonly identity: Identity;
  readonly session: string;
  /** set when the client came through a PROXY protocol peer: that peer's address */
  readonly proxy?: string;
}

export function toRecord(ctx: AuditContext, phase: string, decision: Decision, object?: string, now = new Date()): DecisionRecord {
  // built in one literal with the optional keys last (no spreads: this runs for every decision)
  const rec: { -readonly [K in keyof DecisionRecord]: DecisionRecord[K] } = {
    time: now.toISOString(),
    service: ctx.service,
    phase,
    verdict: decision.allow ? 'allow' : 'deny',
    rule: decision.rule,
    reason: decision.reason,
    ip: ctx.ip,
    user: identityLabel(ctx.identity),
    session: ctx.session,
  };
  if (ctx.proxy !== undefined) rec.proxy = ctx.proxy;
  if (object !== undefined) rec.object = object.slice(0, 512);
  return rec;
}
