/*
 * Mail-to-news (issue 18, part 2): the NNTP side of `nntp.mail_gateway`. The SMTP queue hands over a queued mail
 * for <group>@<domain> recipients (smtp/news-route.ts); this turns it into a POST through the same checks as the
 * NNTP listener's: the policy core's decision (policy/gateway decideMailToNews: loop, origin, group rights with a
 * hidden group worded like a missing one), the article size limit, RFC 5536 format and RFC 5537 injection
 * (prepareArticle: our Path, Injection-Date, Injection-Info naming the SMTP login with via="mail"), Message-ID
 * uniqueness, the poster's nntp.limits.posts_per_minute (shared with NNTP POST; over it the mail is retried
 * later, not bounced), and the store's durability rule (posted only once the record is on disk).
 *
 * Mail headers that make no sense in news are dropped (Received, Return-Path, Delivered-To, X-Original-To, Bcc,
 * and the mail's own Newsgroups/Path); Newsgroups is the envelope's groups. A valid Message-ID is kept; a missing
 * or malformed one is replaced by <queue-id.mail@hostname>, derived from the queue id so that a retry after a
 * crash (posted, but the queue had not yet recorded it) finds its own article and counts it as posted instead
 * of posting twice. An existing article with the same Message-ID that did not come from this mail is a duplicate
 * and bounces.
 */
import { allow } from '../policy/decision.js';
import { NOBODY } from '../policy/index.js';
import { decideArticleSize, decidePostRate } from '../policy/limits.js';
import type { NewsPostOutcome, NewsPostRequest, NewsPoster, Runtime } from '../runtime.js';
import { enqueueFeeds } from './feed-out.js';
import { isMessageId, prepareArticle, type ReceivedLine } from './article.js';
import type { ArticleStore } from './store.js';
import { postRateOk, type PostWindow } from './post-window.js';

const DROP = new Set(['received', 'return-path', 'delivered-to', 'x-original-to', 'bcc', 'newsgroups', 'path', 'message-id']);

interface MailHead {
  /** header lines kept (first + continuation lines), as latin1 strings */
  readonly kept: string[];
  readonly messageId: string | null;
  readonly paths: string[];
  /** index in `lines` of the first body line */
  readonly bodyAt: number;
}

function splitLines(data: Buffer): ReceivedLine[] {
  const out: ReceivedLine[] = [];
  let pos = 0;
  while (pos < data.length) {
    let at = data.indexOf(0x0a, pos);
    if (at < 0) at = data.length;
    const crlf = at > pos && data[at - 1] === 0x0d;
    out.push({ line: data.subarray(pos, crlf ? at - 1 : at), end: crlf || at === data.length ? 'crlf' : 'lf' });
    pos = at + 1;
  }
  return out;
}

function readHead(lines: readonly ReceivedLine[]): MailHead {
  const kept: string[] = [];
  const paths: string[] = [];
  const ids: string[] = [];
  let current = '';
  let i = 0;
  let field: string[] = [];
  const flush = () => {
    if (!current) return;
    const value = field.join('').slice(current.length + 1).replace(/\s+/g, ' ').trim();
    const lower = current.toLowerCase();
    if (lower === 'path') paths.push(value);
    if (lower === 'message-id') ids.push(value);
    if (!DROP.has(lower)) kept.push(...field);
  };
  for (; i < lines.length; i++) {
    const text = lines[i]!.line.toString('latin1');
    if (text === '') {
      i++;
      break;
    }
    if ((text[0] === ' ' || text[0] === '\t') && current) {
      field.push(text);
      continue;
    }
    flush();
    const colon = text.indexOf(':');
    current = colon > 0 ? text.slice(0, colon) : text;
    field = [text];
  }
  flush();
  // two Message-IDs are not a valid one: the derived id is used (RFC 5536 allows exactly one)
  return { kept, messageId: ids.length === 1 ? ids[0]! : null, paths, bodyAt: i };
}

/** Does any Path header name this server as a path element (the article went out from here before)? */
export function carriesOwnPath(paths: readonly string[], hostname: string): boolean {
  const me = hostname.toLowerCase();
  return paths.some((p) => p.toLowerCase().split('!').some((el) => el.trim() === me));
}

function statusOf(rule: string): string {
  if (rule === 'gateway.group') return '5.1.1';
  if (rule === 'gateway.loop') return '5.4.6';
  return '5.7.1';
}

/** The NNTP listener's per-user post window (same keys as NntpSession.rateOk): mail posts count against it too. */
function rateOk(postTimes: Map<string, PostWindow>, key: string, limit: number, record: boolean): boolean {
  return postRateOk(postTimes, key, limit, record);
}

export function createNewsPoster(rt: () => Runtime, store: ArticleStore, postTimes: Map<string, PostWindow> = new Map()): NewsPoster {
  return {
    async post(req: NewsPostRequest): Promise<NewsPostOutcome[]> {
      const { config, policy, users } = rt();
      const fail = (group: string, status: string, reason: string, result: 'permanent' | 'temporary' = 'permanent'): NewsPostOutcome => ({
        group,
        result,
        status,
        detail: `${result === 'permanent' ? 550 : 451} ${status} ${reason}`,
      });
      if (!config.nntp.mail_gateway) return req.groups.map((g) => fail(g, '5.3.0', 'mail-to-news gateway is off'));
      const lines = splitLines(req.data);
      const head = readHead(lines);
      const loop = carriesOwnPath(head.paths, config.hostname);
      const identity = req.user ? (users.identityOf(req.user) ?? NOBODY) : NOBODY;
      const ctx = { service: 'nntp' as const, ip: req.clientIp, identity, session: `mail:${req.queueId}` };
      const out: NewsPostOutcome[] = [];
      const allowed: string[] = [];
      for (const g of req.groups) {
        const d = policy.mailToNews(ctx, g, req.user, loop);
        if (d.allow) allowed.push(g);
        else out.push(fail(g, statusOf(d.rule), d.reason));
      }
      if (allowed.length === 0) return out;
      const rateKey = identity.kind === 'user' ? `user:${identity.name}` : `ip:${req.clientIp}`;
      const rate = decidePostRate({ counter: rateOk(postTimes, rateKey, config.nntp.limits.posts_per_minute, false) ? 'ok' : 'limited', limit: config.nntp.limits.posts_per_minute });
      if (!rate.allow) {
        policy.record(ctx, 'post', rate, allowed.join(','));
        return [...out, ...allowed.map((g) => fail(g, '4.7.0', 'posting rate limit reached, retried later', 'temporary'))];
      }

      const ownId = `<${req.queueId}.mail@${config.hostname}>`;
      const messageId = head.messageId !== null && isMessageId(head.messageId) ? head.messageId : ownId;
      const received: ReceivedLine[] = [
        ...head.kept.map((t) => ({ line: Buffer.from(t, 'latin1'), end: 'crlf' as const })),
        { line: Buffer.from(`Newsgroups: ${allowed.join(',')}`, 'latin1'), end: 'crlf' },
        { line: Buffer.from(`Message-ID: ${messageId}`, 'latin1'), end: 'crlf' },
        { line: Buffer.alloc(0), end: 'crlf' },
        ...lines.slice(head.bodyAt),
      ];
      const size = decideArticleSize({ bytes: received.reduce((n, l) => n + l.line.length + 2, 0), limit: config.nntp.limits.article_bytes });
      if (!size.allow) {
        policy.record(ctx, 'post', size, allowed.join(','));
        return [...out, ...allowed.map((g) => fail(g, '5.3.4', size.reason))];
      }
      const prepared = prepareArticle(received, { hostname: config.hostname, user: req.user, ip: req.clientIp, session: `mail:${req.queueId}`, now: new Date(), via: 'mail' });
      if (!prepared.ok) return [...out, ...allowed.map((g) => fail(g, '5.6.0', `not a valid news article: ${prepared.reason}`))];

      if (!store.reserve(prepared.messageId)) {
        const existing = store.byMessageId(prepared.messageId);
        if (existing?.head.includes(`logging-data="mail:${req.queueId}"`)) {
          return [...out, ...allowed.map((g) => ({ group: g, result: 'posted' as const, detail: `already posted as ${prepared.messageId}` }))];
        }
        return [...out, ...allowed.map((g) => fail(g, '5.7.0', `duplicate Message-ID ${prepared.messageId}`))];
      }
      try {
        const stored = await store.add(prepared.messageId, prepared.groups, prepared.head, prepared.article, prepared.lines);
        // queued for the outgoing NNTP peers (feed-out.ts) like a POSTed article
        await enqueueFeeds(store, stored).catch((err: unknown) => rt().log.error({ event: 'nntp_feed_queue_error', error: String(err) }, 'article not queued for peers'));
      } catch (err) {
        store.release(prepared.messageId);
        rt().log.error({ event: 'nntp_store_error', session: ctx.session, error: String(err) }, 'mail-to-news article not stored');
        return [...out, ...allowed.map((g) => fail(g, '4.3.0', 'article could not be stored', 'temporary'))];
      }
      rateOk(postTimes, rateKey, config.nntp.limits.posts_per_minute, true);
      policy.record(ctx, 'post', allow('nntp.mail_posted', `posted by mail as ${prepared.messageId}`), allowed.join(','));
      return [...out, ...allowed.map((g) => ({ group: g, result: 'posted' as const, detail: `posted as ${prepared.messageId}` }))];
    },
  };
}
