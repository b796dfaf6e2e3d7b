/*
 * Writes on a raw file descriptor, shared by the writers that stream into a file while its bytes arrive (the FTP
 * upload, ftp/jail-fs.ts; the SMTP spool draft, smtp/spool-draft.ts): a callback fs call as a promise without
 * FileHandle's extra frames, and writev until every byte is written (a short write goes on with the rest).
 */
import fs from 'node:fs';

/** One callback-style fs call as a promise. */
export function fdCall<T>(start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))));
}

/** The rest of `bufs` after `n` bytes of them were written. */
export function restAfter(bufs: readonly Buffer[], n: number): Buffer[] {
  let skip = n;
  const next: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) skip -= b.length;
    else {
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return next;
}

const total = (bufs: readonly Buffer[]): number => bufs.reduce((a, b) => a + b.length, 0);

/**
 * writev until every byte of `bufs` is written, at `position` onwards (or at the file position when none is
 * given); a short write goes on with the rest, an error or a write that makes no progress rejects.
 */
export async function writevAll(fd: number, bufs: readonly Buffer[], position?: number): Promise<void> {
  let rest = [...bufs];
  let at = position ?? null;
  for (let left = total(rest); left > 0; ) {
    const n = await fdCall<number>((cb) => fs.writev(fd, rest, at, cb));
    if (n === 0) throw new Error('write made no progress');
    if (at !== null) at += n;
    left -= n;
    if (left > 0) rest = restAfter(rest, n);
  }
}

/** The same on the calling thread (the FTP upload's inline writes into the page cache). */
export function writevAllSync(fd: number, bufs: readonly Buffer[]): void {
  let rest = [...bufs];
  for (let left = total(rest); left > 0; ) {
    const n = fs.writevSync(fd, rest);
    if (n === 0) throw new Error('write made no progress');
    left -= n;
    if (left > 0) rest = restAfter(rest, n);
  }
}
