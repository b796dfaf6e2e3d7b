/*
 * The per-minute ring buffers behind the status page's charts: counters sum within a minute, gauges keep the
 * minute's highest sample, minutes before the series began are null, a slot is reused (cleared) when the
 * ring wraps, and names that were not declared are ignored (a hostile label cannot add a series).
 */
import { describe, expect, it } from 'vitest';
import { MINUTE_MS, MinuteSeries } from '../../src/net/series.js';

const T0 = Date.UTC(2026, 11, 6, 3, 0, 0); // a minute boundary

describe('MinuteSeries', () => {
  it('sums counters per minute, oldest first, current minute last; null before it began', () => {
    const s = new MinuteSeries(['hits'], [], 5, T0);
    s.add('hits', 1, T0 + 1000);
    s.add('hits', 2, T0 + 59_000);
    s.add('hits', 1, T0 + MINUTE_MS + 5);
    const snap = s.snapshot(T0 + MINUTE_MS + 10);
    expect(snap.stepMs).toBe(MINUTE_MS);
    expect(snap.start).toBe(T0 - 3 * MINUTE_MS);
    expect(snap.series.hits).toEqual([null, null, null, 3, 1]);
  });

  it('keeps the highest gauge sample of each minute, and quiet minutes read 0', () => {
    const s = new MinuteSeries([], ['depth'], 4, T0);
    s.sample('depth', 3, T0);
    s.sample('depth', 7, T0 + 10_000);
    s.sample('depth', 2, T0 + 20_000);
    s.sample('depth', 1, T0 + 2 * MINUTE_MS);
    expect(s.snapshot(T0 + 3 * MINUTE_MS).series.depth).toEqual([7, 0, 1, 0]);
  });

  it('forgets what is older than the window when the ring wraps', () => {
    const s = new MinuteSeries(['hits'], [], 3, T0);
    s.add('hits', 5, T0);
    s.add('hits', 1, T0 + 3 * MINUTE_MS); // same slot as T0, three minutes later
    expect(s.snapshot(T0 + 3 * MINUTE_MS).series.hits).toEqual([0, 0, 1]);
    expect(s.snapshot(T0 + 10 * MINUTE_MS).series.hits).toEqual([0, 0, 0]);
  });

  it.each([
    ['an undeclared name', (s: MinuteSeries) => s.add('other', 1, T0)],
    ['a gauge fed as a counter', (s: MinuteSeries) => s.add('depth', 1, T0)],
    ['a counter fed as a gauge', (s: MinuteSeries) => s.sample('hits', 9, T0)],
    ['a non-finite amount', (s: MinuteSeries) => s.add('hits', Number.NaN, T0)],
  ])('ignores %s', (_what, act) => {
    const s = new MinuteSeries(['hits'], ['depth'], 2, T0);
    act(s);
    const snap = s.snapshot(T0);
    expect(Object.keys(snap.series).sort()).toEqual(['depth', 'hits']);
    expect(snap.series.hits).toEqual([null, 0]);
    expect(snap.series.depth).toEqual([null, 0]);
  });

  it('refuses a window it cannot bound', () => {
    expect(() => new MinuteSeries(['x'], [], 0)).toThrow(RangeError);
    expect(() => new MinuteSeries(['x'], [], 100_000)).toThrow(RangeError);
  });
});
