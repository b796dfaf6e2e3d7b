// When an upload's writes go inline (event loop) or through the thread pool again: afterInlineWrite, table-tested.
import { describe, expect, it } from 'vitest';
import { afterInlineWrite, inlineAllowed, type InlineState } from '../../src/ftp/jail-fs.js';

const MiB = 1024 * 1024;
const full: InlineState = { budget: 100, at: 1000, after: 0 };

describe('afterInlineWrite: slow inline writes spend a budget of event-loop time; a spent one means 10 s through the pool', () => {
  const cases: [string, InlineState, { now: number; ms: number; bytes: number }, InlineState][] = [
    ['a fast 1 MiB write costs nothing', full, { now: 1001, ms: 0.4, bytes: MiB }, { budget: 100, at: 1001, after: 0 }],
    ['4 ms for 1 MiB is not slow', full, { now: 1001, ms: 4, bytes: MiB }, { budget: 100, at: 1001, after: 0 }],
    ['a 35 ms stall is taken out of the budget, writes stay inline', full, { now: 1035, ms: 35, bytes: MiB }, { budget: 65, at: 1035, after: 0 }],
    ['a small write is allowed the time of 1 MiB', full, { now: 1003, ms: 3, bytes: 16 * 1024 }, { budget: 100, at: 1003, after: 0 }],
    ['3 MiB in 10 ms is not slow, in 13 ms it is', full, { now: 1013, ms: 13, bytes: 3 * MiB }, { budget: 87, at: 1013, after: 0 }],
    ['a stall beyond the budget stops inline writes for 10 s', { budget: 20, at: 1000, after: 0 }, { now: 1030, ms: 30, bytes: MiB }, { budget: -9.7, at: 1030, after: 11_030 }],
    ['the budget refills at 10 ms per second: 2 s later the same stall leaves 20 + 20 − 30', { budget: 20, at: 1000, after: 0 }, { now: 3000, ms: 30, bytes: MiB }, { budget: 10, at: 3000, after: 0 }],
    ['the refill stops at 100 ms', { budget: 90, at: 1000, after: 0 }, { now: 61_000, ms: 0.3, bytes: MiB }, { budget: 100, at: 61_000, after: 0 }],
    ['a pause running further is kept', { budget: -5, at: 1000, after: 20_000 }, { now: 1050, ms: 50, bytes: MiB }, { budget: -54.5, at: 1050, after: 20_000 }],
  ];
  for (const [name, s, w, want] of cases) {
    it(name, () => {
      const got = afterInlineWrite(s, w.now, w.ms, w.bytes);
      expect(got.at).toBe(want.at);
      expect(got.after).toBe(want.after);
      expect(got.budget).toBeCloseTo(want.budget, 6);
    });
  }
});

describe('inlineAllowed: not during a pause, nor while the budget is overdrawn', () => {
  const cases: [string, InlineState, number, boolean][] = [
    ['a full budget, no pause', full, 1001, true],
    ['during a pause', { budget: -10, at: 1000, after: 11_000 }, 5000, false],
    ['after the pause, the budget paid back', { budget: -10, at: 1000, after: 11_000 }, 11_000, true],
    ['after the pause, a 5 s stall not yet paid back (10 ms/s)', { budget: -5000, at: 1000, after: 11_000 }, 11_000, false],
    ['... and paid back 500 s later', { budget: -5000, at: 1000, after: 11_000 }, 501_000, true],
  ];
  for (const [name, s, now, want] of cases) {
    it(name, () => {
      expect(inlineAllowed(s, now)).toBe(want);
    });
  }
});
