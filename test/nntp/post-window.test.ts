/*
 * posts_per_minute's window (src/nntp/post-window.ts): the count at each moment, the boundary (a post exactly a
 * minute old no longer counts), forgetting an idle poster, and the compaction of a long expired head.
 */
import { describe, expect, it } from 'vitest';
import { POST_WINDOW_MS, PostWindow, postRateOk } from '../../src/nntp/post-window.js';

describe('postRateOk', () => {
  // [time ms, record?, expected answer, posts counted afterwards] in order, limit 3, one poster
  const steps: [number, boolean, boolean, number][] = [
    [0, false, true, 0],
    [0, true, true, 1],
    [1_000, true, true, 2],
    [2_000, true, false, 3], // the third post in the minute: the answer counts it
    [2_500, false, false, 3], // a fourth would be over
    [59_999, false, false, 3],
    [POST_WINDOW_MS, false, true, 2], // the post at 0 is exactly a minute old: no longer counted
    [POST_WINDOW_MS + 1_000, false, true, 1],
    [POST_WINDOW_MS + 2_000, false, true, 0],
  ];
  it.each(steps.map((s, i) => [i, ...s] as const))('step %i: at %i ms, record %s -> %s, %i counted', (i, _t, _r, _ok, _n) => {
    const windows = new Map<string, PostWindow>();
    let last = true;
    for (const [t, record, , ] of steps.slice(0, i + 1)) last = postRateOk(windows, 'user:a', 3, record, t);
    const [t, , ok, n] = steps[i]!;
    expect(last).toBe(ok);
    expect(windows.get('user:a')?.count(t) ?? 0).toBe(n);
    // a poster with nothing in the window is forgotten
    expect(windows.has('user:a')).toBe(n > 0);
  });

  it('keeps posters apart', () => {
    const windows = new Map<string, PostWindow>();
    expect(postRateOk(windows, 'user:a', 1, true, 0)).toBe(false);
    expect(postRateOk(windows, 'user:b', 1, false, 0)).toBe(true);
    expect(postRateOk(windows, 'ip:127.0.0.1', 1, false, 0)).toBe(true);
  });
});

describe('PostWindow', () => {
  it('counts exactly through many expiries and compactions (against a plain filter)', () => {
    const w = new PostWindow();
    const all: number[] = [];
    let t = 0;
    for (let i = 0; i < 20_000; i++) {
      t += (i * 7919) % 13; // uneven steps, several posts in the same ms
      w.add(t);
      all.push(t);
      if (i % 97 === 0 || i > 19_900) expect(w.count(t)).toBe(all.filter((x) => x > t - POST_WINDOW_MS).length);
    }
    // long after: nothing counts, and the window starts again from empty
    expect(w.count(t + POST_WINDOW_MS)).toBe(0);
    w.add(t + POST_WINDOW_MS);
    expect(w.count(t + POST_WINDOW_MS)).toBe(1);
  });
});
