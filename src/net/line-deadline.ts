/**
 * The `limits.line_deadline_s` of the text protocols: a line must be complete within the deadline of its first
 * byte, so a client trickling a byte at a time (which keeps resetting the idle timer) cannot hold a session.
 * Given when the line being received began (0: between lines) and the chunk that just arrived, when does it
 * begin now? 0 when the chunk ends a line, `now` when a new line starts in it, unchanged when it only adds to
 * the same unfinished line.
 */
export function lineStart(since: number, chunk: Buffer, now: number): number {
  if (chunk.length === 0) return since;
  const nl = chunk.lastIndexOf(10);
  if (nl === chunk.length - 1) return 0;
  return nl >= 0 || since === 0 ? now : since;
}
