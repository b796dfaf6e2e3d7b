/*
 * NAME
 *   policy/limits — connection caps, global and per client address; how long a line may take to arrive.
 *
 * THREAT
 *   One client (or a botnet) exhausting sockets, memory or bcrypt time. Every listener acquires a slot
 *   before it greets and releases it when the socket closes. A client that trickles a byte at a time never
 *   goes idle and would hold its slot for ever: every listener asks decideLineDeadline about a line still
 *   arriving (src/net/line-deadline.ts tells when it began).
 *
 * RULES
 *   limits.connections          reject   the service already has `connections` sessions
 *   limits.connections_per_ip   reject   this address already has `connections_per_ip` sessions
 *   limits.ok                   permit
 *   limits.line_deadline        reject   a line is still incomplete `line_deadline_s` after its first byte
 *   limits.line_ok              permit
 *
 * RULES for a session's budgets (asked after each error reply / failed login; a refusal ends the session)
 *   limits.max_errors           reject   SMTP: `smtp.limits.max_errors` error replies in one session
 *   limits.max_login_failures   reject   FTP: `ftp.limits.max_login_failures` failed logins in one session
 *   limits.budget_ok            permit
 *
 * RULES for a post (NNTP POST, mail-to-news), from the poster's count in the last minute (nntp/post-window, or
 * the shared state store)
 *   state_store.unavailable     reject   the shared counter is unreachable and state_store.on_error is refuse
 *   limits.posts_per_minute     reject   `nntp.limits.posts_per_minute` posts already in the last minute
 *   limits.post_rate_ok         permit
 *
 * RULES for one more recipient of a message (SMTP RCPT TO, before the relay rules)
 *   limits.recipients           reject   the message has `smtp.limits.recipients` recipients and this is a new one
 *                                        (a repeat of one it has is no new recipient: smtp-server keeps one entry)
 *   limits.recipients_ok        permit
 *
 * RULES for a message's size (SMTP: MAIL FROM's declared SIZE=, then the bytes DATA brought)
 *   limits.message_bytes        reject   more than `smtp.limits.message_bytes`, declared or received (or
 *                                        smtp-server's own count passed its limit, lowered by a reload since the
 *                                        session began)
 *   limits.message_size_ok      permit
 *
 * RULES for a news article's size (NNTP POST and mail-to-news; a peer's feed is policy/feed's feed.format)
 *   nntp.article_bytes          reject   more than `nntp.limits.article_bytes` octets (each line unstuffed, plus
 *                                        CRLF), or so many that the reader discarded it unread
 *   nntp.article_size_ok        permit
 */
import { allow, deny, dunno, evaluate, permit, reject, type Rule } from './decision.js';
import type { Decision } from './types.js';

export class ConnectionSlots {
  private total = 0;
  private readonly perIp = new Map<string, number>();

  constructor(
    private max: number,
    private maxPerIp: number,
  ) {}

  configure(max: number, maxPerIp: number): void {
    this.max = max;
    this.maxPerIp = maxPerIp;
  }

  get active(): number {
    return this.total;
  }

  acquire(ip: string): Decision {
    if (this.total >= this.max) return deny('limits.connections', `too many connections (${this.max})`);
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.maxPerIp) return deny('limits.connections_per_ip', `too many connections from ${ip} (${this.maxPerIp})`);
    this.total++;
    this.perIp.set(ip, n + 1);
    return allow('limits.ok', 'connection slot granted');
  }

  release(ip: string): void {
    const n = this.perIp.get(ip);
    if (n === undefined) return;
    this.total = Math.max(0, this.total - 1);
    if (n <= 1) this.perIp.delete(ip);
    else this.perIp.set(ip, n - 1);
  }
}

/** May a line whose first byte arrived at `sinceMs` (0: no line in progress) still be waited for at `nowMs`? */
export function decideLineDeadline(sinceMs: number, nowMs: number, deadlineS: number): Decision {
  if (sinceMs === 0 || nowMs - sinceMs <= deadlineS * 1000) return allow('limits.line_ok', 'no line overdue');
  return deny('limits.line_deadline', `a line was still incomplete ${Math.round((nowMs - sinceMs) / 1000)} s after its first byte (limit ${deadlineS} s)`);
}

export interface BudgetFacts {
  /** what the session has spent so far, this one included */
  readonly errors?: number;
  readonly maxErrors?: number;
  readonly loginFailures?: number;
  readonly maxLoginFailures?: number;
}

const BUDGET_RULES: readonly Rule<BudgetFacts>[] = [
  { name: 'limits.max_errors', check: (f) => (f.errors !== undefined && f.maxErrors !== undefined && f.errors >= f.maxErrors ? reject(`${f.errors} error replies in one session`) : dunno()) },
  {
    name: 'limits.max_login_failures',
    check: (f) => (f.loginFailures !== undefined && f.maxLoginFailures !== undefined && f.loginFailures >= f.maxLoginFailures ? reject(`session closed after ${f.loginFailures} failed logins`) : dunno()),
  },
  { name: 'limits.budget_ok', check: () => permit('within the session budget') },
];

/** May a session go on after another error reply or failed login? */
export function decideSessionBudget(f: BudgetFacts): Decision {
  return evaluate(BUDGET_RULES, f, { rule: 'limits.max_errors', reason: 'session budget spent' });
}

export interface PostRateFacts {
  /** what the counter said: below the limit, at it, or unreachable (shared store, on_error: refuse) */
  readonly counter: 'ok' | 'limited' | 'unavailable';
  readonly limit: number;
}

const POST_RATE_RULES: readonly Rule<PostRateFacts>[] = [
  { name: 'state_store.unavailable', check: (f) => (f.counter === 'unavailable' ? reject('the shared post counter is unreachable and state_store.on_error is refuse') : dunno()) },
  { name: 'limits.posts_per_minute', check: (f) => (f.counter === 'limited' ? reject(`more than ${f.limit} posts per minute`) : dunno()) },
  { name: 'limits.post_rate_ok', check: (f) => permit(`within ${f.limit} posts per minute`) },
];

/** May this poster post now? */
export function decidePostRate(f: PostRateFacts): Decision {
  return evaluate(POST_RATE_RULES, f, { rule: 'limits.posts_per_minute', reason: 'post refused' });
}

export interface RecipientCountFacts {
  /** recipients the message already has */
  readonly count: number;
  /** smtp.limits.recipients of the session */
  readonly limit: number;
  /** this address is one of them already (compared without case) */
  readonly repeat: boolean;
}

const RECIPIENT_RULES: readonly Rule<RecipientCountFacts>[] = [
  { name: 'limits.recipients', check: (f) => (f.count >= f.limit && !f.repeat ? reject(`more than ${f.limit} recipients in one message`) : dunno()) },
  { name: 'limits.recipients_ok', check: (f) => permit(f.repeat ? 'a recipient the message has already' : `recipient ${f.count + 1} of at most ${f.limit}`) },
];

/** May the message take one more recipient? */
export function decideRecipientCount(f: RecipientCountFacts): Decision {
  return evaluate(RECIPIENT_RULES, f, { rule: 'limits.recipients', reason: 'recipient refused' });
}

export interface MessageSizeFacts {
  /** `mail`: the SIZE= a client declared; `data`: the bytes DATA brought (dot-unstuffed, all of them) */
  readonly stage: 'mail' | 'data';
  readonly bytes: number;
  /** smtp.limits.message_bytes of the session */
  readonly limit: number;
  /** smtp-server's own count passed the limit it was given (the server's current one, after a reload lower) */
  readonly overServerLimit?: boolean;
}

const MESSAGE_SIZE_RULES: readonly Rule<MessageSizeFacts>[] = [
  {
    name: 'limits.message_bytes',
    check: (f) => {
      if (f.bytes <= f.limit && f.overServerLimit !== true) return dunno();
      const what = f.stage === 'mail' ? `declared message size ${f.bytes}` : `message of ${f.bytes}+ bytes`;
      return reject(f.bytes > f.limit ? `${what} exceeds ${f.limit}` : `${what} exceeds the server's current limit (lowered by a reload)`);
    },
  },
  { name: 'limits.message_size_ok', check: (f) => permit(`${f.bytes} bytes, within ${f.limit}`) },
];

/** May a message of this (declared or received) size be taken? */
export function decideMessageSize(f: MessageSizeFacts): Decision {
  return evaluate(MESSAGE_SIZE_RULES, f, { rule: 'limits.message_bytes', reason: 'message refused' });
}

export interface ArticleSizeFacts {
  /** the article's size as counted against the limit; null when the reader discarded it for being over */
  readonly bytes: number | null;
  /** nntp.limits.article_bytes */
  readonly limit: number;
}

const ARTICLE_SIZE_RULES: readonly Rule<ArticleSizeFacts>[] = [
  { name: 'nntp.article_bytes', check: (f) => (f.bytes === null || f.bytes > f.limit ? reject(`article larger than ${f.limit} octets`) : dunno()) },
  { name: 'nntp.article_size_ok', check: (f) => permit(`${f.bytes} octets, within ${f.limit}`) },
];

/** May an article of this size be posted? */
export function decideArticleSize(f: ArticleSizeFacts): Decision {
  return evaluate(ARTICLE_SIZE_RULES, f, { rule: 'nntp.article_bytes', reason: 'article refused' });
}
