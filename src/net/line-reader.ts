/*
 * A bounded, pull-based line reader shared by the text protocols. Bytes are pushed in as they arrive; the
 * protocol pulls one line at a time with the length limit that applies at that moment (a command line, an
 * article line), so nothing is ever split with the wrong limit and nothing is buffered without a bound.
 * A line longer than the limit is reported once as an overflow and its bytes are discarded up to the next LF.
 * NNTP's session input (src/nntp/input.ts) extends it with taking a POSTed article as one block.
 */

export type LineEnd = 'crlf' | 'lf';

export type LineResult =
  | { readonly kind: 'line'; readonly line: Buffer; readonly end: LineEnd }
  | { readonly kind: 'overflow' };

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  protected chunks: Buffer[] = [];
  protected size = 0;
  /** discarding the tail of an over-long line until its LF */
  protected skipping = false;

  /** Bytes held and not yet returned as lines. */
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
  }

  /**
   * The next line without its terminator, an overflow (the line had more than `max` octets before its
   * terminator), or null when no complete line is held yet.
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

  protected consume(n: number, buf: Buffer): void {
    const rest = buf.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
  }
}
