/*
 * The queue's side of mail-to-news: recipients in `nntp.mail_gateway.domain` are not mailboxes and not relayed;
 * they are handed to the NNTP service's checked POST (hub.news, see nntp/gateway.ts) and their outcome is
 * recorded like any delivery, so a refusal becomes a DSN through the queue's existing bounce code, and a
 * temporary failure (news service not up yet, store write failed) is retried on queue.retry_s.
 */
import type { Runtime } from '../runtime.js';
import type { Outcome } from './delivery.js';
import type { QueueEntry, RecipientState } from './spool.js';

export function isNewsRecipient(rt: Runtime, r: RecipientState): boolean {
  const gw = rt.config.nntp.mail_gateway;
  return gw !== null && r.domain.toLowerCase() === gw.domain;
}

export async function deliverToNews(rt: Runtime, entry: QueueEntry, recipients: readonly RecipientState[], data: Buffer): Promise<Map<string, Outcome>> {
  const out = new Map<string, Outcome>();
  const poster = rt.hub?.news ?? null;
  if (!poster) {
    const off = !rt.config.nntp.enabled;
    for (const r of recipients) {
      out.set(r.address, off ? { address: r.address, result: 'permanent', detail: '550 5.3.0 the news service is not enabled here', status: '5.3.0' } : { address: r.address, result: 'temporary', detail: 'news service not running yet', status: '4.3.0' });
    }
    return out;
  }
  const byGroup = new Map<string, RecipientState[]>();
  for (const r of recipients) {
    const g = r.local.toLowerCase();
    byGroup.set(g, [...(byGroup.get(g) ?? []), r]);
  }
  const outcomes = await poster.post({ queueId: entry.id, groups: [...byGroup.keys()], user: entry.user, clientIp: entry.clientIp, data });
  for (const o of outcomes) {
    for (const r of byGroup.get(o.group) ?? []) {
      out.set(r.address, o.result === 'posted' ? { address: r.address, result: 'delivered', detail: o.detail, status: null } : { address: r.address, result: o.result, detail: o.detail, status: o.status });
    }
  }
  return out;
}
