/*
 * An NNTP session's input: the shared LineReader (src/net/line-reader.ts) for command lines, one at a time.
 * After a 340 the whole article is taken as one block instead: the input is searched for the terminating dot
 * line and the bytes before it are handed over at once, without a Buffer and a result object per line
 * (splitting, unstuffing and checking happen in article.ts, which keeps the per-line definition for anything
 * that is not plain CRLF text). Memory stays bounded: an article whose raw bytes grow past twice its size limit
 * is discarded as it arrives (it could not fit after unstuffing either) and only reported as too big once its
 * dot line is seen.
 */
import { LineReader } from '../net/line-reader.js';

export type ArticleResult =
  /** raw: the received bytes before the dot line (still dot-stuffed, each line ending in LF or CRLF) */
  | { readonly kind: 'article'; readonly raw: Buffer }
  /** the article was larger than allowed; its bytes were discarded */
  | { readonly kind: 'too_big' };

const LF = 0x0a;
const CR = 0x0d;
/** Bytes kept from the end of the scanned input: a dot line split across two reads is still found. */
const KEEP = 3;

export class NntpInput extends LineReader {
  /** article mode: input already searched (no dot line in it) */
  private scanned: Buffer[] = [];
  private scannedBytes = 0;
  /** article mode: the last bytes searched, or a LF standing for the start of the article */
  private tail: Buffer = START;
  /** article mode: bytes were discarded (too big) */
  private dropped = false;

  /** Drop everything held (e.g. input pipelined before a TLS handshake). */
  override clear(): void {
    super.clear();
    this.resetArticle();
  }

  private resetArticle(): void {
    this.scanned = [];
    this.scannedBytes = 0;
    this.tail = START;
    this.dropped = false;
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
