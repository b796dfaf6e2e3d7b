/*
 * An NNTP session's input. Command lines are pulled one at a time with the same bounds and results as the shared
 * LineReader (src/net/line-reader.ts). After a 340 the whole article is taken as one block instead: the input is
 * searched for the terminating dot line and the bytes before it are handed over at once, without a Buffer and a
 * result object per line (splitting, unstuffing and checking happen in article.ts, which keeps the per-line
 * definition for anything that is not plain CRLF text). Memory stays bounded: an article whose raw bytes grow
 * past twice its size limit is discarded as it arrives (it could not fit after unstuffing either) and only
 * reported as too big once its dot line is seen.
 */
import type { LineResult } from '../net/line-reader.js';

export type ArticleResult =
  /** raw: the received bytes before the dot line (still dot-stuffed, each line ending in LF or CRLF) */
  | { readonly kind: 'article'; readonly raw: Buffer }
  /** the article was larger than allowed; its bytes were discarded */
  | { readonly kind: 'too_big' };

const LF = 0x0a;
const CR = 0x0d;
/** Bytes kept from the end of the scanned input: a dot line split across two reads is still found. */
const KEEP = 3;

export class NntpInput {
  private chunks: Buffer[] = [];
  private size = 0;
  /** line mode: discarding the tail of an over-long line until its LF */
  private skipping = false;
  /** article mode: input already searched (no dot line in it) */
  private scanned: Buffer[] = [];
  private scannedBytes = 0;
  /** article mode: the last bytes searched, or a LF standing for the start of the article */
  private tail: Buffer = START;
  /** article mode: bytes were discarded (too big) */
  private dropped = false;

  /** Bytes held and not yet looked at (an article's searched bytes are bounded by its limit instead). */
  get buffered(): number {
    return this.size;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.skipping) {
      const at = chunk.indexOf(LF);
      if (at < 0) return;
      this.skipping = false;
      chunk = chunk.subarray(at + 1);
      if (chunk.length === 0) return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** Drop everything held (e.g. input pipelined before a TLS handshake). */
  clear(): void {
    this.chunks = [];
    this.size = 0;
    this.skipping = false;
    this.resetArticle();
  }

  private resetArticle(): void {
    this.scanned = [];
    this.scannedBytes = 0;
    this.tail = START;
    this.dropped = false;
  }

  /**
   * The next command line without its terminator, an overflow (more than `max` octets before the terminator),
   * or null when no complete line is held yet. Same results as LineReader.next.
   */
  next(max: number): LineResult | null {
    if (this.size === 0) return null;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [buf];
    const limit = Math.min(buf.length, max + 2);
    const at = buf.subarray(0, limit).indexOf(LF);
    if (at < 0) {
      if (buf.length < max + 2) return null;
      // No LF within the limit: the line is too long whatever follows. Discard it up to its LF.
      const end = buf.indexOf(LF, limit);
      if (end >= 0) {
        this.consume(end + 1, buf);
      } else {
        this.chunks = [];
        this.size = 0;
        this.skipping = true;
      }
      return { kind: 'overflow' };
    }
    const crlf = at > 0 && buf[at - 1] === CR;
    const line = buf.subarray(0, crlf ? at - 1 : at);
    this.consume(at + 1, buf);
    if (line.length > max) return { kind: 'overflow' };
    return { kind: 'line', line: Buffer.from(line), end: crlf ? 'crlf' : 'lf' };
  }

  private consume(n: number, buf: Buffer): void {
    const rest = buf.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
  }

  /**
   * The article being posted, once its terminating line (a lone "." ending in CRLF or LF) has arrived, else null.
   * The input after the dot line stays for next(). `limit` is the article size limit (article_bytes).
   */
  article(limit: number): ArticleResult | null {
    if (this.size === 0) return null;
    const fresh = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    // The dot line is LF "." [CR] LF, where the LF before the dot may be in the tail of what was searched before
    // (the tail is only joined to the new input when a LF in it is followed by a dot).
    const keep = dotAfterLf(this.tail, fresh) ? this.tail.length : 0;
    const joined = keep > 0 ? Buffer.concat([this.tail, fresh], keep + fresh.length) : fresh;
    for (let at = joined.indexOf(LF_DOT); at >= 0; at = joined.indexOf(LF_DOT, at + 1)) {
      const a = joined[at + 2];
      const b = joined[at + 3];
      let end: number;
      if (a === LF) end = at + 3;
      else if (a === CR && b === LF) end = at + 4;
      else if (a === undefined || (a === CR && b === undefined)) break; // the dot line may still be arriving
      else continue;
      // The article: everything before the dot (its LF included).
      const rest = joined.subarray(end);
      let raw: Buffer | null = null;
      if (!this.dropped) {
        const fromFresh = at + 1 - keep; // article bytes in `fresh` (negative: the dot is in the kept tail)
        const parts = fromFresh >= 0 ? [...this.scanned, fresh.subarray(0, fromFresh)] : this.scanned;
        const total = this.scannedBytes + fromFresh;
        raw = parts.length === 1 ? parts[0]!.subarray(0, total) : Buffer.concat(parts, this.scannedBytes + Math.max(fromFresh, 0)).subarray(0, total);
        if (raw.length > 2 * limit + 4) raw = null;
      }
      this.resetArticle();
      if (rest.length > 0) {
        this.chunks = [rest];
        this.size = rest.length;
      }
      return raw ? { kind: 'article', raw } : { kind: 'too_big' };
    }
    // No dot line yet: keep what was read (or only its end, once it cannot fit), search only new input next time.
    this.tail = joined.subarray(Math.max(0, joined.length - KEEP));
    if (!this.dropped) {
      this.scanned.push(fresh);
      this.scannedBytes += fresh.length;
      // Unstuffing removes at most one octet per line of two or more, and a LF-only line counts one more: an
      // article of more raw octets than twice the limit is too big whatever it holds.
      if (this.scannedBytes > 2 * limit + 4) {
        this.scanned = [];
        this.scannedBytes = 0;
        this.dropped = true;
      }
    }
    return null;
  }
}

/** Whether a LF in `tail` is followed by a dot (in the tail, or as the first byte of `next`). */
function dotAfterLf(tail: Buffer, next: Buffer): boolean {
  for (let i = tail.indexOf(LF); i >= 0; i = tail.indexOf(LF, i + 1)) {
    if ((i + 1 < tail.length ? tail[i + 1] : next[0]) === DOT) return true;
  }
  return false;
}

const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');
const START = Buffer.from('\n');
