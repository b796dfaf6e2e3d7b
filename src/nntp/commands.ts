/*
 * The NNTP command table. The reader commands nntp-server implements well (ARTICLE, HEAD, BODY, STAT,
 * GROUP, LISTGROUP, LIST NEWSGROUPS, DATE) are taken from its table unchanged; the rest are ours: OVER/XOVER
 * (without the library's per-row streams), HDR (225, RFC 3977 §8.5) and the RFC 2980 forms older readers use,
 * XHDR and XPAT (221, as INN: articles without the header are left out), LIST OVERVIEW.FMT and LIST HEADERS (derived from what OVER and HDR serve, so the three agree),
 * CAPABILITIES and MODE READER (state-dependent), STARTTLS, AUTHINFO (through the policy core), POST, NEXT,
 * LAST, IHAVE (refused: no peering), LIST ACTIVE (posting flag per identity), LIST ACTIVE.TIMES, NEWGROUPS and
 * NEWNEWS (the library's versions are a month off), HELP and QUIT. Hidden groups stay hidden in every one:
 * articles are found only through the session's readable groups, and Newsgroups/Followup-To/Xref values are
 * cut to them before any pattern is matched.
 * `reader: true` marks commands that need read access (480 before authentication unless anonymous may read).
 */
import type { Readable } from 'node:stream';
import nntp from 'nntp-server';
import wildmat from 'nntp-server/lib/wildmat.js';
import type { LibMessage, NntpSession } from './session.js';
import type { StoredArticle } from './store.js';
import { check, feedCapabilities, ihave, modeStream, takethis } from './feed-in.js';

export type Reply = string | number | null | undefined | Readable | Reply[];

export interface Command {
  readonly validate: RegExp;
  readonly reader?: boolean;
  run(session: NntpSession, line: string): Reply | Promise<Reply>;
}

const lib = nntp.commands;

function fromLibrary(head: string, reader = true): Command {
  const c = lib[head];
  if (!c) throw new Error(`nntp-server has no ${head} command`);
  return { validate: c.validate, reader, run: (s, line) => c.run(s, line) };
}

/** NEWGROUPS/NEWNEWS date and time (RFC 3977 §7.3): yyyymmdd or yymmdd, hhmmss, always UTC here. */
export function parseNntpDate(date: string, time: string, now = new Date()): number | null {
  let d = date;
  if (d.length === 6) {
    const year = now.getUTCFullYear();
    const century = Math.floor(year / 100);
    d = `${Number(d.slice(0, 2)) > year % 100 ? century - 1 : century}${d}`;
  }
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(d);
  const t = /^(\d{2})(\d{2})(\d{2})$/.exec(time);
  if (!m || !t) return null;
  const [y, mo, da, h, mi, s] = [m[1], m[2], m[3], t[1], t[2], t[3]].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || da < 1 || da > 31 || h > 23 || mi > 59 || s > 60) return null;
  return Date.UTC(y, mo - 1, da, h, mi, s);
}

function pattern(p: string | undefined): RegExp | string | null {
  if (!p) return null;
  try {
    return wildmat(p);
  } catch (err) {
    return `501 ${(err as Error).message}`;
  }
}

function listActive(s: NntpSession, wm: string | undefined, since: number | null): Reply {
  const re = pattern(wm);
  if (typeof re === 'string') return re;
  const { store } = s.shared;
  const out: string[] = [];
  for (const name of [...s.readableSet()].sort()) {
    if (re && !re.test(name)) continue;
    const g = store.group(name)!;
    if (since !== null && g.created < since) continue;
    // y: this reader may post there now, or could after logging in (tin offers posting only in y groups)
    const flag = s.rt.policy.groupPostableAfterLogin(s.ctx.identity, name) ? 'y' : 'n';
    out.push(`${name} ${g.high} ${g.low} ${flag}`);
  }
  return [since === null ? '215 List of newsgroups follows' : '231 List of new newsgroups follows', ...out, '.'];
}

const NEXT_LAST = (dir: 1 | -1) => (s: NntpSession): Reply => {
  const group = s.currentGroup();
  if (!group) return '412 No newsgroup selected';
  const cur = s.group.current_article;
  if (cur <= 0) return '420 Current article number is invalid';
  const n = s.shared.store.step(group, cur, dir);
  if (n === null) return dir === 1 ? '421 No next article in this group' : '422 No previous article in this group';
  const a = s.shared.store.byNumber(group, n)!;
  s.group.current_article = n;
  return `223 ${n} ${a.messageId} retrieved`;
};

const OVER_RE = /^X?OVER(?: (?:(\d{1,15})(-(\d{1,15})?)?|(<[^\s<>]+>)))?$/i;
/**
 * The overview fields after the article number, in order: header names OVER reads through _buildHeaderField,
 * then the metadata. LIST OVERVIEW.FMT is printed from this table (RFC 3977 §8.4), so it cannot disagree.
 */
const OVER_FIELDS = ['subject', 'from', 'date', 'message-id', 'references'];
// Bytes:/Lines: rather than :bytes/:lines: RFC 3977 §8.4.2 allows them and tells clients to read them as the
// metadata; slrn 1.0 turns XOVER off for anything but the RFC 2980 list (and INN prints the same)
export const OVERVIEW_FMT = ['Subject:', 'From:', 'Date:', 'Message-ID:', 'References:', 'Bytes:', 'Lines:', 'Xref:full'];
/** LIST HEADERS (RFC 3977 §8.6): HDR/XHDR serve any header (":") and these metadata items. */
export const HDR_METADATA = [':bytes', ':lines'];
/**
 * Per stored article: the identity-independent part of its overview row (everything but Xref), and the row tail
 * with the Xref a reader who sees all of its groups gets (the usual case), for the hostname it was built with.
 */
const overviewCache = new WeakMap<StoredArticle, { fixed: string; host: string; allVisible: string }>();
/** An overview/HDR value: unfolded, and no TAB, CR, LF or NUL left (RFC 3977 §8.3.2, §8.5.2). */
const clean = (f: string) => f.replace(/\r?\n/g, '').replace(/[\0\t\r\n]/g, ' ');

/** OVER/XOVER (RFC 3977 §8.3), synchronous over the in-memory overview (the library's streams cost 2x). */
async function over(s: NntpSession, line: string): Promise<Reply> {
  const [, first, dash, last, id] = OVER_RE.exec(line)!;
  const readable = s.readableSet();
  const host = s.rt.config.hostname;
  const row = (index: number, msg: LibMessage) => {
    let c = overviewCache.get(msg.entry);
    if (c === undefined || c.host !== host) {
      const fields = OVER_FIELDS.map((f) => s._buildHeaderField(s, msg, f));
      fields.push(String(msg.entry.bytes), String(msg.entry.lines));
      const fixed = fields.map(clean).join('\t');
      const all = Object.entries(msg.entry.numbers).map(([g, n]) => `${g}:${n}`);
      c = { fixed, host, allVisible: `${fixed}\tXref: ${clean(`${host} ${all.join(' ')}`)}` };
      overviewCache.set(msg.entry, c);
    }
    if (Object.keys(msg.entry.numbers).every((g) => readable.has(g))) return `${index}\t${c.allVisible}`;
    return `${index}\t${c.fixed}\tXref: ${clean(s.xref(msg.entry))}`;
  };
  if (id !== undefined) {
    const msg = await s._getArticle(s, id);
    return msg ? ['224 Overview information follows', row(0, msg), '.'] : '430 No such article';
  }
  if (!s.currentGroup()) return '412 No newsgroup selected';
  if (first === undefined) {
    const cur = s.group.current_article;
    const msg = cur > 0 ? await s._getArticle(s, String(cur)) : null;
    return msg ? ['224 Overview information follows', row(cur, msg), '.'] : '420 Current article number is invalid';
  }
  const lo = Number(first);
  const hi = !dash ? lo : last === undefined ? Number.MAX_SAFE_INTEGER : Number(last);
  const msgs = await s._getRange(s, lo, hi);
  if (msgs.length === 0) return '423 No articles in that range';
  return ['224 Overview information follows', ...msgs.map((m) => row(m.index, m)), '.'];
}

const HDR_RE = /^(X?HDR) (\S+)(?: (?:(\d{1,15})(-(\d{1,15})?)?|(<[^\s<>]+>)))?$/i;
const XPAT_RE = /^XPAT (\S+) (?:(\d{1,15})(-(\d{1,15})?)?|(<[^\s<>]+>)) (\S.*)$/i;

/**
 * A header value for HDR/XHDR/XPAT, as OVER shows the same field: `:bytes`/`:lines` (and the old overview
 * names Bytes/Lines) are the metadata, anything else the (visibility-filtered) header.
 */
function fieldValue(s: NntpSession, msg: LibMessage, field: string): string {
  const f = field.toLowerCase();
  const name = f === 'bytes' || f === 'lines' ? `:${f}` : f;
  return clean(s._buildHeaderField(s, msg, name));
}

/**
 * The articles a HDR-family command asks for: by message-id (visible ones only), a range of the current
 * group, or the current article. Returns the rows' keys or an error reply.
 */
async function selectArticles(s: NntpSession, first: string | undefined, dash: string | undefined, last: string | undefined, id: string | undefined): Promise<LibMessage[] | string> {
  if (id !== undefined) {
    const msg = await s._getArticle(s, id);
    return msg ? [msg] : '430 No such article';
  }
  if (!s.currentGroup()) return '412 No newsgroup selected';
  if (first === undefined) {
    const cur = s.group.current_article;
    const msg = cur > 0 ? await s._getArticle(s, String(cur)) : null;
    return msg ? [msg] : '420 Current article number is invalid';
  }
  const lo = Number(first);
  const hi = !dash ? lo : last === undefined ? Number.MAX_SAFE_INTEGER : Number(last);
  return s._getRange(s, lo, hi);
}

/** HDR (RFC 3977 §8.5: 225, "0" for a message-id, every article a row) and XHDR (RFC 2980 §2.6: 221, as INN). */
async function hdr(s: NntpSession, line: string): Promise<Reply> {
  const [, verb, field, first, dash, last, id] = HDR_RE.exec(line)!;
  const legacy = verb!.toUpperCase() === 'XHDR';
  const msgs = await selectArticles(s, first, dash, last, id);
  if (typeof msgs === 'string') return msgs;
  if (msgs.length === 0 && !legacy) return '423 No articles in that range';
  const rows: string[] = [];
  for (const m of msgs) {
    const value = fieldValue(s, m, field!);
    if (legacy && value === '') continue;
    // by message-id: HDR says 0 (RFC 3977); XHDR the number in the current group, else 0 (RFC 2980's format is
    // "number value", and Python's nntplib parses it so; INN would print the message-id)
    rows.push(`${id !== undefined && !legacy ? 0 : m.index} ${value}`);
  }
  return [legacy ? `221 Header information for ${field} follows` : '225 Headers follow', ...rows, '.'];
}

/** XPAT (RFC 2980 §2.9): XHDR's rows whose value matches the pattern (the rest of the line, spaces included). */
async function xpat(s: NntpSession, line: string): Promise<Reply> {
  const [, field, first, dash, last, id, pat] = XPAT_RE.exec(line)!;
  if (pat!.length > 256) return '501 Pattern too long';
  const msgs = await selectArticles(s, first, dash, last, id);
  if (typeof msgs === 'string') return msgs;
  const rows: string[] = [];
  for (const m of msgs) {
    const value = fieldValue(s, m, field!);
    if (value !== '' && simpleWildmat(value, pat!)) rows.push(`${m.index} ${value}`);
  }
  return [`221 Header information for ${field} follows`, ...rows, '.'];
}

/**
 * A simple wildmat (RFC 3977 §4 without the `,` and `!` lists, as INN's XPAT): `*`, `?`, `[set]` with ranges and
 * `^`/`!` negation, `\` quoting. Iterative with one backtrack point, so a hostile pattern costs at most
 * O(text × pattern) steps, no regular expression is built from client input.
 */
export function simpleWildmat(text: string, pattern: string): boolean {
  let t = 0;
  let p = 0;
  let starP = -1;
  let starT = 0;
  const one = (at: number, ch: string): { ok: boolean; next: number } => {
    const c = pattern[at]!;
    if (c === '?') return { ok: true, next: at + 1 };
    if (c === '\\' && at + 1 < pattern.length) return { ok: pattern[at + 1] === ch, next: at + 2 };
    if (c === '[') {
      let i = at + 1;
      const negate = pattern[i] === '^' || pattern[i] === '!';
      if (negate) i++;
      let hit = false;
      let firstInSet = true;
      while (i < pattern.length && (pattern[i] !== ']' || firstInSet)) {
        firstInSet = false;
        const lo = pattern[i]!;
        if (pattern[i + 1] === '-' && i + 2 < pattern.length && pattern[i + 2] !== ']') {
          if (ch >= lo && ch <= pattern[i + 2]!) hit = true;
          i += 3;
        } else {
          if (ch === lo) hit = true;
          i++;
        }
      }
      if (i >= pattern.length) return { ok: c === ch, next: at + 1 }; // no closing ]: a literal [
      return { ok: hit !== negate, next: i + 1 };
    }
    return { ok: c === ch, next: at + 1 };
  };
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === '*') {
      starP = ++p;
      starT = t;
      continue;
    }
    if (p < pattern.length) {
      const r = one(p, text[t]!);
      if (r.ok) {
        p = r.next;
        t++;
        continue;
      }
    }
    if (starP < 0) return false;
    p = starP;
    t = ++starT;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

async function capabilities(s: NntpSession): Promise<Reply> {
  const caps = ['VERSION 2', 'IMPLEMENTATION Gatehouse'];
  caps.push('READER');
  if (s.mayRead()) caps.push('HDR', 'OVER MSGID', 'LIST ACTIVE ACTIVE.TIMES NEWSGROUPS OVERVIEW.FMT HEADERS', 'NEWNEWS');
  // POST when this session could post now or after AUTHINFO (as the greeting's 200): tin offers posting from it
  if (s.postingOffered()) caps.push('POST');
  if (s.canStartTls) caps.push('STARTTLS');
  if (s.authUsable) caps.push('AUTHINFO USER');
  caps.push(...(await feedCapabilities(s)));
  return ['101 Capability list:', ...caps, '.'];
}

const table: [string, Command][] = [
  ['CAPABILITIES', { validate: /^CAPABILITIES( \S+)?$/i, run: capabilities }],
  ['MODE READER', { validate: /^MODE READER$/i, run: (s) => (s.postingOffered() ? '200 Posting allowed' : '201 Posting not allowed') }],
  ['MODE', { validate: /^MODE \S+$/i, run: () => '501 Unknown MODE variant' }],
  ['QUIT', { validate: /^QUIT$/i, run: (s) => {
        s.quit();
        return null;
      }, }],
  ['HELP', { validate: /^HELP$/i, run: () => ['100 Help text follows', ...[...COMMAND_NAMES].sort(), '.'] }],
  ['DATE', fromLibrary('DATE', false)],
  ['STARTTLS', { validate: /^STARTTLS$/i, run: (s) => s.startTls() }],
  ['AUTHINFO USER', { validate: /^AUTHINFO USER \S.*$/i, run: (s, line) => s.authinfoUser(line.slice('AUTHINFO USER '.length)) }],
  ['AUTHINFO PASS', { validate: /^AUTHINFO PASS \S.*$/i, run: (s, line) => s.authinfoPass(line.slice('AUTHINFO PASS '.length)) }],
  ['AUTHINFO', { validate: /^AUTHINFO \S+/i, run: () => '503 Only AUTHINFO USER/PASS is supported' }],
  ['POST', { validate: /^POST$/i, run: (s) => s.beginPost() }],
  ['IHAVE', { validate: /^IHAVE <[^\s<>]+>$/i, run: ihave }],
  ['MODE STREAM', { validate: /^MODE STREAM$/i, run: modeStream }],
  ['CHECK', { validate: /^CHECK <[^\s<>]+>$/i, run: check }],
  ['TAKETHIS', { validate: /^TAKETHIS <[^\s<>]+>$/i, run: takethis }],
  ['GROUP', fromLibrary('GROUP')],
  ['LISTGROUP', fromLibrary('LISTGROUP')],
  ['ARTICLE', fromLibrary('ARTICLE')],
  ['HEAD', fromLibrary('HEAD')],
  ['BODY', fromLibrary('BODY')],
  ['STAT', fromLibrary('STAT')],
  ['NEXT', { validate: /^NEXT$/i, reader: true, run: NEXT_LAST(1) }],
  ['LAST', { validate: /^LAST$/i, reader: true, run: NEXT_LAST(-1) }],
  ['OVER', { validate: OVER_RE, reader: true, run: over }],
  ['XOVER', { validate: OVER_RE, reader: true, run: over }],
  ['HDR', { validate: HDR_RE, reader: true, run: hdr }],
  ['XHDR', { validate: HDR_RE, reader: true, run: hdr }],
  ['XPAT', { validate: XPAT_RE, reader: true, run: xpat }],
  ['LIST', { validate: /^LIST$/i, reader: true, run: (s) => listActive(s, undefined, null) }],
  ['LIST ACTIVE', { validate: /^LIST ACTIVE( \S+)?$/i, reader: true, run: (s, line) => listActive(s, line.split(' ')[2], null) }],
  [
    'LIST ACTIVE.TIMES',
    {
      validate: /^LIST ACTIVE\.TIMES( \S+)?$/i,
      reader: true,
      run: (s, line) => {
        const re = pattern(line.split(' ')[2]);
        if (typeof re === 'string') return re;
        const rows = [...s.readableSet()]
          .sort()
          .filter((n) => !re || re.test(n))
          .map((n) => `${n} ${Math.floor(s.shared.store.group(n)!.created / 1000)} gatehouse`);
        return ['215 Information follows', ...rows, '.'];
      },
    },
  ],
  ['LIST NEWSGROUPS', fromLibrary('LIST NEWSGROUPS')],
  ['LIST OVERVIEW.FMT', { validate: /^LIST OVERVIEW\.FMT$/i, reader: true, run: () => ['215 Order of fields in overview database', ...OVERVIEW_FMT, '.'] }],
  ['LIST HEADERS', { validate: /^LIST HEADERS( MSGID| RANGE)?$/i, reader: true, run: () => ['215 Header and metadata list follows', ':', ...HDR_METADATA, '.'] }],
  [
    'NEWGROUPS',
    {
      validate: /^NEWGROUPS (\d{6}|\d{8}) \d{6}( GMT)?$/i,
      reader: true,
      run: (s, line) => {
        const [, d, t] = line.split(' ');
        const since = parseNntpDate(d!, t!);
        return since === null ? '501 Bad date or time' : listActive(s, undefined, since);
      },
    },
  ],
  [
    'NEWNEWS',
    {
      validate: /^NEWNEWS \S+ (\d{6}|\d{8}) \d{6}( GMT)?$/i,
      reader: true,
      run: (s, line) => {
        const [, wm, d, t] = line.split(' ');
        const since = parseNntpDate(d!, t!);
        if (since === null) return '501 Bad date or time';
        const re = pattern(wm);
        if (typeof re === 'string' || re === null) return re ?? '501 Bad wildmat';
        const readable = s.readableSet();
        const ids = s.shared.store
          .arrivedSince(since)
          .filter((a) => Object.keys(a.numbers).some((g) => readable.has(g) && re.test(g)))
          .map((a) => a.messageId);
        return ['230 List of new articles follows', ...ids, '.'];
      },
    },
  ],
];

export const COMMANDS: ReadonlyMap<string, Command> = new Map(table);
const COMMAND_NAMES = new Set(table.map(([n]) => n).filter((n) => n !== 'MODE' && n !== 'AUTHINFO'));
