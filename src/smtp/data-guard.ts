/*
 * DATA checks (SMTP smuggling defence, CVE-2023-51764 class). smtp-server ends DATA only on CRLF.CRLF but
 * passes bare CR and bare LF through to us; a downstream MTA that accepts LF.LF could then split one of our
 * messages into two. We refuse any message with a bare CR or LF (as Postfix's smtpd_forbid_bare_newline),
 * a NUL byte, a line longer than 998 octets (RFC 5321 4.5.3.1.6) or more than the size limit. The guard
 * collects the (already dot-unstuffed) body up to the limit so the listener can queue it unchanged (or, for a
 * large message, hands it over with `detach` and only scans the rest).
 */

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;

/** Longest line allowed, without its CRLF (RFC 5321 section 4.5.3.1.6). */
export const MAX_LINE_OCTETS = 998;

export type GuardFault = 'bare_lf' | 'bare_cr' | 'nul' | 'line_too_long' | 'too_big';

export interface GuardVerdict {
  readonly ok: boolean;
  readonly fault: GuardFault | null;
  /** bytes of message content seen (also after a fault) */
  readonly bytes: number;
}

export class DataGuard {
  private chunks: Buffer[] = [];
  private stored = 0;
  private seen = 0;
  private lineLength = 0;
  private pendingCr = false;
  private fault: GuardFault | null = null;
  /** false once the body went elsewhere (detach): chunks are scanned, not kept */
  private keeping = true;

  constructor(
    private readonly maxBytes: number,
    private readonly maxLine = MAX_LINE_OCTETS,
  ) {}

  get failed(): GuardFault | null {
    return this.fault;
  }

  write(chunk: Buffer): void {
    this.seen += chunk.length;
    if (this.fault) return;
    if (this.seen > this.maxBytes) {
      this.fail('too_big');
      return;
    }
    const fault = this.scan(chunk);
    if (fault) {
      this.fail(fault);
      return;
    }
    if (!this.keeping) return;
    this.chunks.push(chunk);
    this.stored += chunk.length;
  }

  /** bytes kept so far (0 after a fault or detach) */
  get storedBytes(): number {
    return this.stored;
  }

  /**
   * Hand over the chunks kept so far and keep no more (the listener writes a large message to the spool as it
   * arrives): later chunks are only scanned, `body` is empty.
   */
  detach(): Buffer[] {
    const kept = this.chunks;
    this.chunks = [];
    this.stored = 0;
    this.keeping = false;
    return kept;
  }

  /**
   * The first fault of `chunk` in byte order, continuing the line state of the previous chunks (the rules of
   * the module comment). Line by line with Buffer.indexOf (memchr) instead of a JavaScript loop per byte.
   */
  private scan(chunk: Buffer): GuardFault | null {
    const len = chunk.length;
    let p = 0;
    if (this.pendingCr && len > 0) {
      this.pendingCr = false;
      if (chunk[0] !== LF) return 'bare_cr';
      this.lineLength = 0;
      p = 1;
    }
    const nul = chunk.indexOf(NUL, p); // only the first one can matter
    while (p < len) {
      const cr = chunk.indexOf(CR, p);
      const end = cr < 0 ? len : cr;
      // [p, end) holds no CR: its first LF or NUL, or the byte that makes the line too long, is the fault
      let first = len;
      let fault: GuardFault | null = null;
      const lf = chunk.indexOf(LF, p);
      if (lf >= 0 && lf < end) {
        first = lf;
        fault = 'bare_lf';
      }
      if (nul >= p && nul < end && nul < first) {
        first = nul;
        fault = 'nul';
      }
      const room = this.maxLine - this.lineLength;
      if (end - p > room && p + room < first) fault = 'line_too_long';
      if (fault) return fault;
      this.lineLength += end - p;
      if (cr < 0) return null;
      if (cr + 1 === len) {
        this.pendingCr = true;
        return null;
      }
      if (chunk[cr + 1] !== LF) return 'bare_cr';
      this.lineLength = 0;
      p = cr + 2;
    }
    return null;
  }

  /** Call once the stream ended. */
  end(): GuardVerdict {
    if (!this.fault && this.pendingCr) this.fail('bare_cr');
    return { ok: this.fault === null, fault: this.fault, bytes: this.seen };
  }

  /**
   * The whole message, after `prefix` (the Received: header) when given: one copy of a large message, not two;
   * only meaningful when `end().ok`.
   */
  body(prefix?: Buffer): Buffer {
    if (!prefix) return Buffer.concat(this.chunks, this.stored);
    return Buffer.concat([prefix, ...this.chunks], prefix.length + this.stored);
  }

  private fail(fault: GuardFault): void {
    this.fault = fault;
    this.chunks = [];
    this.stored = 0;
  }
}

/** Scan a whole buffer at once (what the listener does, chunk by chunk, via DataGuard). */
export function checkData(data: Buffer, maxBytes: number): GuardVerdict {
  const g = new DataGuard(maxBytes);
  g.write(data);
  return g.end();
}
