/*
 * A faster DATA scanner for smtp-server's command parser (SMTPStream), with the library's semantics byte for
 * byte. The library's `_feedDataStream` looks at every byte of a message in a JavaScript loop for a dot after a
 * line feed (the end CRLF.CRLF, or a dot-stuffed line), and waits a setImmediate after every dot-stuffed line:
 * on a large message that loop was ~40 % of the server's CPU. `feedDataStream` finds the same places with
 * Buffer.indexOf("\n.") (a native search) and does the same at each:
 *   - the message ends only on exact CR LF "." CR LF; what precedes the "." is content (the last line's CRLF
 *     included), what follows goes back to the command parser (`_endDataMode`);
 *   - a dot that follows a line feed (bare or not) and is followed by a dot is removed (dot-unstuffing);
 *   - at the start of DATA (`_atDataStart`: the library's smuggling-era fix, which holds until a payload byte
 *     was consumed, whatever the TCP segmentation) ".\r\n" ends an empty message and a leading ".." loses its
 *     first dot; the second byte of the data is never taken for a line start (the library's loop starts at
 *     index 2), so a message beginning "\n.." keeps both dots, as with the library;
 *   - a dot is only judged once the two bytes after it have arrived: the last 4 bytes of a chunk (or all of a
 *     shorter rest) are kept in `_lastBytes` for the next one, exactly as the library keeps them (but read
 *     across the seam instead of copying every chunk behind them, the library's other per-chunk cost);
 *   - payload is counted with the library's `_countDataBytes` (byteLength, sizeExceeded, `_atDataStart`), written
 *     to the data stream only while it is writable, and the parser waits for 'drain' (or 'close') when a write
 *     says so.
 * The data may reach the stream in fewer, larger writes than with the library (all the pieces between removed
 * dots of one chunk at once, no setImmediate between them): the bytes are the same.
 * Relies on smtp-server internals (3.21): SMTPStream's `_feedDataStream(chunk, done)` being the one data-mode
 * entry (called from `_write`), and its fields `_dataStream`, `_lastBytes`, `_atDataStart`, `_countDataBytes`
 * and `_endDataMode(chunk, remainder, done)`. test/smtp/data-scan.test.ts feeds the same streams through the
 * library's parser and through this one, split at every boundary, and fails if the two ever differ.
 */
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
/** a dot at the start of a line, as the library's loop finds it: the byte before it is a line feed */
const LF_DOT = Buffer.from('\n.', 'latin1');
/** bytes the library keeps back at the end of a chunk (a dot is judged with the two bytes after it) */
const KEEP = 4;
/** a chunk shorter than this is joined to the kept bytes (see feedDataStream) */
const JOIN_BELOW = 8;
const NOTHING: Buffer = Buffer.alloc(0);

type Done = (err?: Error | null) => void;

/**
 * The data-mode half of SMTPStream, as a replacement for its `_feedDataStream` (called with the parser as
 * `this`). Same results as the library's for any split of the input (see the module comment).
 */
export function feedDataStream(this: SMTPStream, input: Buffer, done: Done): void {
  const dataStream = this._dataStream;
  // What is scanned is T = the bytes kept from the last chunk + this chunk. The library copies both into one
  // buffer for every chunk; here a large chunk is left where it is and T is read across the seam: the kept bytes
  // (`carry`, at most 4) are indexes 0 .. L - 1, the chunk's bytes follow. A short chunk, or one at the start of
  // DATA (where the start rules look at the first bytes), is joined as the library does.
  let carry: Buffer = NOTHING;
  let chunk = input;
  if (this._lastBytes && this._lastBytes.length) {
    if (this._atDataStart || input.length < JOIN_BELOW) chunk = Buffer.concat([this._lastBytes, input], this._lastBytes.length + input.length);
    else carry = this._lastBytes;
    this._lastBytes = false;
  }
  const L = carry.length;
  const len = L + chunk.length;
  if (L === 0 && this._atDataStart && len >= 3 && chunk[0] === DOT && chunk[1] === CR && chunk[2] === LF) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  /** where the content not yet emitted begins (in T) */
  let start = 0;
  if (L === 0 && this._atDataStart && len >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
    start = 1; // the escape dot is consumed payload: from now on a leading dot is content
    this._atDataStart = false;
  }
  let handled = true;
  const emit = (piece: Buffer): void => {
    this._countDataBytes(piece.length);
    if (dataStream?.writable) handled = dataStream.write(piece);
  };
  /** emit T[a, b) (a < b) */
  const emitRange = (a: number, b: number): void => {
    if (a < L) emit(carry.subarray(a, Math.min(b, L)));
    if (b > L) emit(chunk.subarray(Math.max(a, L) - L, b - L));
  };
  const at = (i: number): number | undefined => (i < L ? carry[i] : chunk[i - L]);
  /** the end at `dot`: T[start, dot) is the last content (the last line's CRLF included), T from dot + 3 goes back to the command parser */
  const end = (dot: number): void => {
    if (start < L) emit(carry.subarray(start, Math.min(dot, L)));
    const last = chunk.subarray(Math.max(start, L) - L, Math.max(dot - L, 0));
    this._countDataBytes(last.length);
    this._endDataMode(last, chunk.subarray(dot + 3 - L), done);
  };
  // the library judges the dots at index >= 2 of what it scans (after a removed dot: of the rest after it), and
  // only those with two bytes after them (index <= len - 3): here, line feeds in T at start + 1 .. len - 4.
  let from = start + 1;
  // line feeds in the carry or at the chunk's first byte: their window crosses the seam (L > 0 only; then
  // len >= L + JOIN_BELOW, so they all have their two bytes after the dot)
  for (let lf = from; lf <= L; lf++) {
    if (at(lf) !== LF || at(lf + 1) !== DOT) continue;
    const dot = lf + 1;
    if (at(lf - 1) === CR && at(dot + 1) === CR && at(dot + 2) === LF) return end(dot);
    if (at(dot + 1) === DOT) {
      // dot-stuffed: drop this dot, the next one is content
      emitRange(start, dot);
      start = dot + 1;
      from = dot + 2;
      lf = dot; // the loop goes on at dot + 1 (not a line feed: a dot), i.e. from
    }
  }
  // the rest: line feeds at chunk index >= 1, whose window lies in the chunk
  for (;;) {
    const q = chunk.indexOf(LF_DOT, Math.max(from - L, 1));
    if (q < 0 || q + L > len - KEEP) break;
    const dot = q + 1 + L;
    if (chunk[q - 1] === CR && chunk[q + 2] === CR && chunk[q + 3] === LF) return end(dot);
    if (chunk[q + 2] === DOT) {
      emitRange(start, dot);
      start = dot + 1;
      from = dot + 2;
      continue;
    }
    from = dot;
  }
  // keep the last bytes (all of a shorter rest) for the next chunk; emit what precedes them
  const rest = len - start;
  const keep = rest < KEEP ? rest : KEEP;
  this._lastBytes = chunk.subarray(chunk.length - keep);
  if (rest > keep) emitRange(start, len - keep);
  if (handled || !dataStream || dataStream.destroyed) {
    done();
    return;
  }
  // a stream that the application destroys never drains, it only closes
  const onDrain = (): void => {
    dataStream.removeListener('drain', onDrain);
    dataStream.removeListener('close', onDrain);
    done();
  };
  dataStream.once('drain', onDrain);
  dataStream.once('close', onDrain);
}

/** Give `parser` (a connection's SMTPStream) the indexOf scanner for DATA; returns it. */
export function useFastDataScan<P extends SMTPStream>(parser: P): P {
  parser._feedDataStream = feedDataStream;
  return parser;
}

/**
 * SMTPStream's `continue()` (smtp-server 3.21) runs the continuation `_endDataMode` left (read the commands
 * pipelined behind a message's end) and only then clears `_continueCallback`. When that continuation runs a
 * second pipelined DATA to its end synchronously (our MAIL and RCPT handlers answer at once), the second end's own
 * continuation, set during the call, is cleared with it: what was pipelined behind the second message (NOOP,
 * QUIT, a third MAIL) is never read and the session hangs until its idle timeout. This one clears the callback
 * before it runs it; otherwise the same (`true`: continue() came before the end of the stream).
 * test/smtp/pipelined-second-message.test.ts.
 */
function safeContinue(this: SMTPStream): void {
  const next = this._continueCallback;
  if (typeof next === 'function') {
    this._continueCallback = false;
    next();
  } else {
    this._continueCallback = true;
  }
}

/** Give `parser` a `continue()` that keeps a continuation set while it runs (see safeContinue); returns it. */
export function useSafeContinue<P extends SMTPStream>(parser: P): P {
  parser.continue = safeContinue;
  return parser;
}
