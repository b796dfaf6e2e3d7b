/*
 * Per-minute time series in bounded ring buffers: the last `minutes` minutes of named counters (summed per
 * minute) and gauges (the highest sample of each minute). Memory is fixed at creation (one Float64Array per
 * series, one slot per minute) whatever the traffic; names must be declared up front, so a hostile label
 * cannot add series. The clock is passed in, so tests drive time. Used by ops/metrics for the status page's
 * charts; nothing here knows about services or decisions.
 */

export const MINUTE_MS = 60_000;

export interface SeriesSnapshot {
  /** start of the oldest minute shown (ms since the epoch) */
  readonly start: number;
  readonly stepMs: number;
  /** one value per minute, oldest first, the current (partial) minute last; null = before the series began */
  readonly series: Readonly<Record<string, readonly (number | null)[]>>;
}

export class MinuteSeries<Name extends string = string> {
  private readonly values = new Map<Name, Float64Array>();
  private readonly gauges: ReadonlySet<Name>;
  /** which minute each slot currently holds (-1: never written) */
  private readonly stamp: Float64Array;
  private readonly firstMinute: number;

  constructor(
    counters: readonly Name[],
    gauges: readonly Name[] = [],
    private readonly minutes = 60,
    now = Date.now(),
  ) {
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 24 * 60) throw new RangeError('minutes must be 1..1440');
    for (const n of [...counters, ...gauges]) this.values.set(n, new Float64Array(minutes));
    this.gauges = new Set(gauges);
    this.stamp = new Float64Array(minutes).fill(-1);
    this.firstMinute = Math.floor(now / MINUTE_MS);
  }

  /** The slot for `minute`, cleared if it last held an older minute. */
  private slot(minute: number): number {
    const i = ((minute % this.minutes) + this.minutes) % this.minutes;
    if (this.stamp[i] !== minute) {
      this.stamp[i] = minute;
      for (const v of this.values.values()) v[i] = 0;
    }
    return i;
  }

  /** Add `n` to a counter in the current minute (unknown names and non-finite amounts are ignored). */
  add(name: Name, n = 1, now = Date.now()): void {
    const v = this.values.get(name);
    if (!v || this.gauges.has(name) || !Number.isFinite(n)) return;
    v[this.slot(Math.floor(now / MINUTE_MS))]! += n;
  }

  /** Record a gauge sample; the minute keeps its highest sample. */
  sample(name: Name, value: number, now = Date.now()): void {
    const v = this.values.get(name);
    if (!v || !this.gauges.has(name) || !Number.isFinite(value)) return;
    const i = this.slot(Math.floor(now / MINUTE_MS));
    if (value > v[i]!) v[i] = value;
  }

  snapshot(now = Date.now()): SeriesSnapshot {
    const current = Math.floor(now / MINUTE_MS);
    const first = current - this.minutes + 1;
    const series: Record<string, (number | null)[]> = {};
    for (const [name, v] of this.values) {
      const out: (number | null)[] = [];
      for (let m = first; m <= current; m++) {
        const i = ((m % this.minutes) + this.minutes) % this.minutes;
        out.push(m < this.firstMinute ? null : this.stamp[i] === m ? v[i]! : 0);
      }
      series[name] = out;
    }
    return { start: first * MINUTE_MS, stepMs: MINUTE_MS, series };
  }
}
