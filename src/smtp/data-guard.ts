/*
 * DATA checks (SMTP smuggling defence, CVE-2023-51764 class). smtp-server ends DATA only on CRLF.CRLF but
 * passes bare CR and bare LF through to us; a downstream MTA that accepts LF.LF could then split one of our
 * messages into two. We refuse any message with a bare CR or LF (as Postfix's smtpd_forbid_bare_newline),
 * a NUL byte, a line longer than 998 octets (RFC 5321 4.5.3.1.6) or more than the size limit. The guard
 * collects the (already dot-unstuffed) body up to the limit so the listener can queue it unchanged.
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
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.pendingCr) {
        this.pendingCr = false;
        if (b !== LF) {
          this.fail('bare_cr');
          return;
        }
        this.lineLength = 0;
        continue;
      }
      if (b === CR) {
        this.pendingCr = true;
      } else if (b === LF) {
        this.fail('bare_lf');
        return;
      } else if (b === NUL) {
        this.fail('nul');
        return;
      } else if (++this.lineLength > this.maxLine) {
        this.fail('line_too_long');
        return;
      }
    }
    this.chunks.push(chunk);
    this.stored += chunk.length;
  }

  /** Call once the stream ended. */
  end(): GuardVerdict {
    if (!this.fault && this.pendingCr) this.fail('bare_cr');
    return { ok: this.fault === null, fault: this.fault, bytes: this.seen };
  }

  /** The whole message; only meaningful when `end().ok`. */
  body(): Buffer {
    return Buffer.concat(this.chunks, this.stored);
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
