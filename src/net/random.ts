/**
 * Random identifiers (session and queue ids, temporary names) as hex, from a pool refilled 4 KiB at a time:
 * one crypto call per few hundred ids instead of one each (a `randomBytes` call was ~25 µs of every SMTP
 * session on a slow core). For names and ids only, never for keys or secrets: those call `crypto` directly.
 */
import crypto from 'node:crypto';

const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let pos = 0;

export function randomHex(bytes: number): string {
  if (bytes > POOL_BYTES) return crypto.randomBytes(bytes).toString('hex');
  if (pos + bytes > pool.length) {
    pool = crypto.randomBytes(POOL_BYTES);
    pos = 0;
  }
  const out = pool.toString('hex', pos, pos + bytes);
  pos += bytes;
  return out;
}
