/*
 * NAME
 *   policy/gateway — the two cross-service decisions: may a mail become a news article (mail-to-news), and may an
 *   upload notice go to a reader (drop-box notices).
 *
 * DESCRIPTION
 *   decideMailToNews(facts) — a message queued for <group>@<nntp.mail_gateway.domain>:
 *     gateway.loop          reject  the mail already carries this server's news Path (it came from here)
 *     gateway.origin        reject  neither an authenticated SMTP user nor a trusted network sent it
 *     gateway.group         reject  the group does not exist or the identity may not read it: the words are the
 *                                   same for both, so a hidden group cannot be told from a missing one
 *     gateway.post          permit  the identity may post there under the group's rights
 *     gateway.default       reject  readable but not postable
 *
 *   decideNoticeRecipient(facts) — one reader of a share's `notify.to`:
 *     notice.local_unknown  reject  a local address whose user does not exist
 *     notice.local          permit  a local user (Maildir)
 *     notice.relay          permit/reject  a remote address: the relay verdict for the server's own origin
 *
 *   Pure functions of their facts; the listener/queue gathers the facts and records the decision.
 */
import { evaluate, permit, reject, dunno } from './decision.js';
import type { Decision } from './types.js';

export interface MailToNewsFacts {
  readonly group: string;
  /** the SMTP login, null when the mail came unauthenticated */
  readonly user: string | null;
  /** the client address is inside smtp.trusted_networks */
  readonly trusted: boolean;
  /** a Path header of the mail names this server */
  readonly loop: boolean;
  /** the identity may read / post the group (false for an unknown group) */
  readonly readable: boolean;
  readonly postable: boolean;
}

export function decideMailToNews(f: MailToNewsFacts): Decision {
  return evaluate<MailToNewsFacts>(
    [
      { name: 'gateway.loop', check: (x) => (x.loop ? reject("mail carries this server's own news Path (loop)") : dunno()) },
      { name: 'gateway.origin', check: (x) => (x.user === null && !x.trusted ? reject('mail-to-news needs an authenticated SMTP user or a trusted network') : dunno()) },
      // postable without readable is possible in the config; the group is then posted to blind, as over NNTP
      { name: 'gateway.group', check: (x) => (!x.readable && !x.postable ? reject(`no such newsgroup ${x.group}`) : dunno()) },
      { name: 'gateway.post', check: (x) => (x.postable ? permit(`${x.group}: posting granted to ${x.user ?? 'trusted network'}`) : dunno()) },
    ],
    f,
    { rule: 'gateway.default', reason: `posting to ${f.group} is not allowed` },
  );
}

export interface NoticeRecipientFacts {
  readonly address: string;
  /** the address's domain is a local domain */
  readonly local: boolean;
  /** for a local address: the user exists */
  readonly userExists: boolean;
  /** for a remote address: the relay verdict for mail the server itself sends */
  readonly relay: Decision | null;
}

export function decideNoticeRecipient(f: NoticeRecipientFacts): Decision {
  return evaluate<NoticeRecipientFacts>(
    [
      { name: 'notice.local_unknown', check: (x) => (x.local && !x.userExists ? reject(`${x.address}: no such local user`) : dunno()) },
      { name: 'notice.local', check: (x) => (x.local ? permit(`${x.address}: local mailbox`) : dunno()) },
      {
        name: 'notice.relay',
        check: (x) => (x.relay === null ? dunno() : x.relay.allow ? permit(`${x.address}: relay permitted (${x.relay.rule})`) : reject(`${x.address}: relay refused (${x.relay.rule}: ${x.relay.reason})`)),
      },
    ],
    f,
    { rule: 'notice.default', reason: `${f.address}: no verdict for this reader` },
  );
}
