/*
 * Article format (RFC 5536) and injection (RFC 5537) for POST: parse the received lines, refuse what is
 * malformed or ambiguous (missing or duplicated key headers, bare CR/LF, bad Newsgroups/Message-ID/Date),
 * then build the stored article: our Path, the client's headers minus those the server owns, Message-ID and
 * Date when absent, Injection-Date and Injection-Info. The body is kept byte for byte. Text is handled as
 * binary (latin1) strings so 8-bit content round-trips exactly.
 */
import { randomHex } from '../net/random.js';

export interface ReceivedLine {
  readonly line: Buffer;
  readonly end: 'crlf' | 'lf';
}

export interface InjectionContext {
  readonly hostname: string;
  readonly user: string | null;
  readonly ip: string;
  readonly session: string;
  readonly now: Date;
  /**
   * A relayed article (IHAVE/TAKETHIS from a peer): the same checks, but Message-ID, Date and Path must be
   * present, every header is kept as sent and our name is put in front of its Path (RFC 5537 §3.5).
   */
  readonly relay?: boolean;
  /** how the article arrived when not by POST (mail-to-news: 'mail'); named in Injection-Info */
  readonly via?: string;
}

export type Prepared =
  | { readonly ok: false; readonly reason: string }
  | {
      readonly ok: true;
      readonly messageId: string;
      readonly groups: readonly string[];
      readonly head: string;
      readonly article: Buffer;
      readonly lines: number;
      /** a relayed article's Path as received, split at `!` (empty for an injected one) */
      readonly path?: readonly string[];
    };

export const NEWSGROUP_RE = /^[a-z0-9+_-]+(\.[a-z0-9+_-]+)*$/;
const FIELD_NAME_RE = /^[\x21-\x39\x3b-\x7e]+$/;
const MSGID_RE = /^<[\x21-\x3b\x3d\x3f-\x5a\x5e-\x7e]+@[\x21-\x3b\x3d\x3f-\x5a\x5e-\x7e]+>$/;
/** Headers that may appear at most once (RFC 5536 §3, RFC 5322 §3.6). */
const SINGLE = new Set(['from', 'subject', 'newsgroups', 'message-id', 'date', 'references', 'followup-to', 'control', 'supersedes', 'distribution', 'sender', 'reply-to', 'organization', 'expires', 'approved']);
/** Headers the injecting server owns: a client copy is dropped. */
const OWNED = new Set(['path', 'xref', 'injection-date', 'injection-info', 'nntp-posting-host', 'nntp-posting-date', 'x-trace', 'x-complaints-to', 'lines']);
const MAX_HEADER_LINE = 998;
const MAX_GROUPS = 32;

export function isMessageId(s: string): boolean {
  return s.length <= 250 && MSGID_RE.test(s);
}

/** The last date formatted (every POST formats its arrival time once or twice; toUTCString is slow). */
let lastDate = { second: NaN, text: '' };

export function rfc5322Date(d: Date): string {
  const second = Math.floor(d.getTime() / 1000);
  if (second !== lastDate.second) lastDate = { second, text: d.toUTCString().replace(/GMT$/, '+0000') };
  return lastDate.text;
}

/** 72 random bits from the shared id pool (one CSPRNG call per id cost ~20 µs). */
export function newMessageId(hostname: string, now: Date): string {
  return `<${now.getTime().toString(36)}.${randomHex(9)}@${hostname}>`;
}

interface Field {
  readonly name: string;
  readonly lower: string;
  /** raw header lines (first + continuations) */
  readonly raw: string[];
}

export function unfold(raw: readonly string[], name: string): string {
  if (raw.length === 1) {
    // One line without a tab or a run of spaces (the usual header): nothing to collapse.
    const v = raw[0]!.slice(name.length + 1);
    if (!v.includes('\t') && !v.includes('  ')) return v.trim();
  }
  return raw.join('').slice(name.length + 1).replace(/[\t ]+/g, ' ').trim();
}

/** Body bytes taken as received: every line ends in CRLF, none starts with a dot, no other CR. */
export interface RawBody {
  readonly bytes: Buffer;
  readonly lines: number;
}

export interface SplitArticle {
  /** the lines, unstuffed; when `body` is set, only the header lines and the blank line after them */
  readonly lines: ReceivedLine[];
  readonly body: RawBody | null;
  /** size as counted against article_bytes: each line unstuffed plus CRLF */
  readonly bytes: number;
}

/**
 * Split an article block as received after a 340 (dot-stuffed, lines ending in LF or CRLF, without its dot line)
 * into the lines prepareArticle checks. A body that is plain CRLF text with no line starting with a dot is kept
 * as one piece: unstuffing and splitting it would give back the same bytes.
 */
export function splitArticle(raw: Buffer): SplitArticle {
  const lines: ReceivedLine[] = [];
  let bytes = 0;
  let pos = 0;
  let inHeader = true;
  while (pos < raw.length) {
    let at = raw.indexOf(0x0a, pos);
    if (at < 0) at = raw.length; // cannot happen for a block ended by its dot line; taken as a last line
    const crlf = at > pos && raw[at - 1] === 0x0d;
    let line = raw.subarray(pos, crlf ? at - 1 : at);
    if (line[0] === 0x2e) line = line.subarray(1);
    lines.push({ line, end: crlf ? 'crlf' : 'lf' });
    bytes += line.length + 2;
    pos = at + 1;
    if (inHeader && line.length === 0) {
      inHeader = false;
      const body = crlf ? plainBody(raw.subarray(pos)) : null;
      if (body) return { lines, body, bytes: bytes + body.bytes.length };
    }
  }
  return { lines, body: null, bytes };
}

function plainBody(b: Buffer): RawBody | null {
  if (b.length === 0) return { bytes: b, lines: 0 };
  if (b[0] === 0x2e || b.includes(LF_DOT)) return null;
  let n = 0;
  for (let at = b.indexOf(0x0a); at >= 0; at = b.indexOf(0x0a, at + 1)) {
    if (at === 0 || b[at - 1] !== 0x0d) return null;
    n++;
  }
  let crs = 0;
  for (let at = b.indexOf(0x0d); at >= 0; at = b.indexOf(0x0d, at + 1)) crs++;
  if (crs !== n || b[b.length - 1] !== 0x0a) return null;
  return { bytes: b, lines: n };
}

const LF_DOT = Buffer.from('\n.');

/**
 * Check and inject an article given as its received lines (unstuffed). With `rawBody`, `received` holds the header
 * and the blank line only and the body follows as one checked piece (splitArticle).
 */
export function prepareArticle(received: readonly ReceivedLine[], ctx: InjectionContext, rawBody: RawBody | null = null): Prepared {
  const fields: Field[] = [];
  let i = 0;
  for (; i < received.length; i++) {
    const { line, end } = received[i]!;
    if (line.length === 0) {
      if (end === 'lf') return { ok: false, reason: 'bare LF in the header' };
      i++;
      break;
    }
    if (end === 'lf') return { ok: false, reason: 'bare LF in the header' };
    if (line.includes(0x0d)) return { ok: false, reason: 'bare CR in the header' };
    if (line.includes(0x00)) return { ok: false, reason: 'NUL in the header' };
    if (line.length > MAX_HEADER_LINE) return { ok: false, reason: 'header line longer than 998 octets' };
    const text = line.toString('latin1');
    if (text[0] === ' ' || text[0] === '\t') {
      const last = fields[fields.length - 1];
      if (!last) return { ok: false, reason: 'header starts with a continuation line' };
      last.raw.push(text);
      continue;
    }
    const colon = text.indexOf(':');
    const name = colon > 0 ? text.slice(0, colon) : '';
    if (!FIELD_NAME_RE.test(name)) return { ok: false, reason: 'malformed header line' };
    fields.push({ name, lower: name.toLowerCase(), raw: [text] });
  }
  const body = received.slice(i);
  for (const b of body) {
    if (b.line.includes(0x0d)) return { ok: false, reason: 'bare CR in the body' };
  }

  const seen = new Map<string, Field>();
  for (const f of fields) {
    if (SINGLE.has(f.lower) && seen.has(f.lower)) return { ok: false, reason: `duplicate ${f.name} header` };
    seen.set(f.lower, f);
  }
  const value = (k: string): string | null => {
    const f = seen.get(k);
    return f ? unfold(f.raw, f.name) : null;
  };
  for (const [k, label] of [['from', 'From'], ['subject', 'Subject'], ['newsgroups', 'Newsgroups']] as const) {
    if (!value(k)) return { ok: false, reason: `missing ${label} header` };
  }
  const groups = [...new Set(value('newsgroups')!.split(',').map((g) => g.trim()))];
  if (groups.some((g) => !NEWSGROUP_RE.test(g))) return { ok: false, reason: 'malformed Newsgroups header' };
  if (groups.length > MAX_GROUPS) return { ok: false, reason: `more than ${MAX_GROUPS} newsgroups` };

  let messageId = value('message-id');
  if (messageId !== null && !isMessageId(messageId)) return { ok: false, reason: 'malformed Message-ID header' };
  const date = value('date');
  if (date !== null && Number.isNaN(Date.parse(date))) return { ok: false, reason: 'malformed Date header' };

  if (ctx.relay) return relayed(ctx, fields, value, messageId, date, groups, body, rawBody);
  const out: string[] = [`Path: ${ctx.hostname}!not-for-mail`];
  for (const f of fields) if (!OWNED.has(f.lower)) out.push(...f.raw);
  if (messageId === null) {
    messageId = newMessageId(ctx.hostname, ctx.now);
    out.push(`Message-ID: ${messageId}`);
  }
  if (date === null) out.push(`Date: ${rfc5322Date(ctx.now)}`);
  out.push(`Injection-Date: ${rfc5322Date(ctx.now)}`);
  const info = [ctx.hostname];
  if (ctx.user) info.push(`posting-account="${ctx.user}"`);
  info.push(`posting-host="${ctx.ip}"`, `logging-data="${ctx.session}"`);
  if (ctx.via) info.push(`via="${ctx.via}"`);
  out.push(`Injection-Info: ${info.join('; ')}`);

  const head = out.join('\r\n');
  const parts: Buffer[] = [Buffer.from(`${head}\r\n\r\n`, 'latin1')];
  for (const b of body) parts.push(b.line, CRLF);
  if (rawBody) parts.push(rawBody.bytes);
  return { ok: true, messageId, groups, head, article: Buffer.concat(parts), lines: body.length + (rawBody?.lines ?? 0) };
}

const CRLF = Buffer.from('\r\n');

function relayed(ctx: InjectionContext, fields: readonly Field[], value: (k: string) => string | null, messageId: string | null, date: string | null, groups: string[], body: readonly ReceivedLine[], rawBody: RawBody | null): Prepared {
  if (messageId === null) return { ok: false, reason: 'missing Message-ID header' };
  if (date === null) return { ok: false, reason: 'missing Date header' };
  const pathValue = value('path');
  if (!pathValue) return { ok: false, reason: 'missing Path header' };
  const path = pathValue.split('!').map((e) => e.trim());
  if (path.some((e) => !/^[\x21-\x7e]+$/.test(e))) return { ok: false, reason: 'malformed Path header' };
  const out: string[] = [`Path: ${ctx.hostname}!${path.join('!')}`];
  for (const f of fields) if (f.lower !== 'path' && f.lower !== 'xref') out.push(...f.raw);
  const head = out.join('\r\n');
  const parts: Buffer[] = [Buffer.from(`${head}\r\n\r\n`, 'latin1')];
  for (const b of body) parts.push(b.line, CRLF);
  if (rawBody) parts.push(rawBody.bytes);
  return { ok: true, messageId, groups, head, article: Buffer.concat(parts), lines: body.length + (rawBody?.lines ?? 0), path };
}

/** Header fields of a stored header block: lower-case name → unfolded value (first occurrence). */
export function parseHead(head: string): Map<string, string> {
  const out = new Map<string, string>();
  let name = '';
  let raw: string[] = [];
  const flush = () => {
    if (name && !out.has(name.toLowerCase())) out.set(name.toLowerCase(), unfold(raw, name));
  };
  for (const line of head.split('\r\n')) {
    if (line[0] === ' ' || line[0] === '\t') {
      raw.push(line);
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    name = colon > 0 ? line.slice(0, colon) : '';
    raw = [line];
  }
  flush();
  return out;
}

/** The body lines of a stored article (binary strings, without terminators). */
export function bodyLines(article: Buffer): string[] {
  const at = article.indexOf('\r\n\r\n');
  if (at < 0) return [];
  const text = article.subarray(at + 4).toString('latin1');
  if (text.length === 0) return [];
  const lines = text.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** RFC 3977 §3.1.1 dot-stuffing for a line sent in a multi-line block. */
export function stuff(line: string): string {
  return line.startsWith('.') ? `.${line}` : line;
}
