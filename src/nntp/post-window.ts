/*
 * nntp.limits.posts_per_minute: the posts of each poster (user, or address when anonymous) in the last minute,
 * shared by POST (session.ts) and mail-to-news (gateway.ts). Times are kept oldest first; the expired head is
 * skipped by an index and cut off only once it is most of the array, so a POST costs O(1) amortised whatever
 * the limit (a `splice(0, k)` per POST moved the whole window: ~60,000 numbers at 1,000 posts a minute).
 */

/** The span counted, ms. */
export const POST_WINDOW_MS = 60_000;

export class PostWindow {
  private times: number[] = [];
  private head = 0;

  /** Posts within the window ending at `now` (a time older than `now - POST_WINDOW_MS` no longer counts). */
  count(now: number): number {
    const times = this.times;
    let head = this.head;
    while (head < times.length && times[head]! <= now - POST_WINDOW_MS) head++;
    if (head > 64 && head * 2 > times.length) {
      this.times = times.slice(head);
      head = 0;
    }
    this.head = head;
    return this.times.length - head;
  }

  add(now: number): void {
    this.times.push(now);
  }
}

/**
 * Whether `key` is below `limit` posts in the last minute; with `record`, the post made now is counted first
 * (as before: the answer then includes it). A poster with nothing left in the window is forgotten.
 */
export function postRateOk(windows: Map<string, PostWindow>, key: string, limit: number, record: boolean, now = Date.now()): boolean {
  const w = windows.get(key) ?? new PostWindow();
  if (record) w.add(now);
  const n = w.count(now);
  if (n > 0) windows.set(key, w);
  else windows.delete(key);
  return n < limit;
}
