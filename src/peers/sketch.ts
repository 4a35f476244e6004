/**
 * Streaming statistics of one numeric feature of one peer group, in log units.
 *
 * - count, mean and standard deviation: Welford's recurrence. Folding new
 *   values into a saved state continues the same recurrence, so folding rows
 *   into a snapshot gives bit for bit the state a rebuild over the same rows,
 *   in the same order, gives.
 * - min and max: exact.
 * - median and MAD: exact while the group holds at most `exactLimit` values
 *   (they are kept); beyond that the values move into a log-bin histogram —
 *   DDSketch's logarithmic mapping, applied to values that are already
 *   logarithms: bin k holds [k·w, (k+1)·w) and stands for its centre. The
 *   state is a function of the multiset of values alone, so fold and rebuild
 *   agree exactly here too, and memory per group is bounded by
 *   min(exactLimit, range / w) entries whatever the number of rows.
 *
 * Error bound of the histogram (docs/peers.md): every value is represented
 * within w/2 of itself, so the median is within w/2 of the exact median and
 * the MAD within w of the exact MAD (order statistics are 1-Lipschitz; each
 * deviation moves by at most |m̂ − m| + w/2). With the default relative
 * accuracy α = 0.005, w = ln((1+α)/(1−α)) ≈ 0.0100: the median unit value
 * is within ±0.5 % and the MAD within 0.01 log units.
 */

export interface SketchParams {
  /** Values kept exactly per group and feature before switching to bins. */
  exactLimit: number;
  /** Relative accuracy α of the bins, in (0, 0.5). */
  relativeAccuracy: number;
}

export const DEFAULT_SKETCH: Readonly<SketchParams> = Object.freeze({ exactLimit: 64, relativeAccuracy: 0.005 });

/** Width of a bin in log units for a relative accuracy α. */
export function binWidth(relativeAccuracy: number): number {
  return Math.log((1 + relativeAccuracy) / (1 - relativeAccuracy));
}

/** The serialisable state of a FeatureSketch. */
export interface SketchState {
  n: number;
  mean: number;
  m2: number;
  min: number;
  max: number;
  /** Exact values (insertion order), while n <= exactLimit. */
  values?: number[];
  /** Histogram: [bin index, count] pairs, by index, once n > exactLimit. */
  bins?: [number, number][];
}

export interface SketchSummary {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); NaN below two values. */
  std: number;
  min: number;
  max: number;
  median: number;
  /** Median absolute deviation from the median (unscaled). */
  mad: number;
  /** True when median and MAD are exact (the group never outgrew exactLimit). */
  exact: boolean;
}

/** Exact median of a numeric array (sorted in place). */
export function median(values: Float64Array): number {
  const n = values.length;
  if (n === 0) return NaN;
  values.sort();
  const h = n >> 1;
  return n % 2 === 1 ? values[h] : (values[h - 1] + values[h]) / 2;
}

/** Exact robust statistics of a set of values: median and MAD (the sketch's exact regime). */
export function robustStats(values: Float64Array): { n: number; median: number; mad: number } {
  const n = values.length;
  if (n === 0) return { n: 0, median: NaN, mad: NaN };
  const med = median(values);
  const dev = new Float64Array(n);
  for (let i = 0; i < n; i++) dev[i] = Math.abs(values[i] - med);
  return { n, median: med, mad: median(dev) };
}

/**
 * Median of (value, count) pairs given in ascending value order; counts sum to n.
 * For even n, the mean of the values at ranks n/2 − 1 and n/2 (0-based).
 */
function weightedMedian(values: ArrayLike<number>, counts: ArrayLike<number>, n: number): number {
  const lo = (n - 1) >> 1;
  const hi = n >> 1;
  let seen = 0;
  let a = 0;
  let found = false;
  for (let i = 0; i < values.length; i++) {
    const c = counts[i];
    if (c === 0) continue;
    const next = seen + c;
    if (!found && lo < next) { a = values[i]; found = true; }
    if (hi < next) return (a + values[i]) / 2;
    seen = next;
  }
  return a;
}

/**
 * Dense histogram store: counts[k − offset] for bin k, grown by doubling.
 * Dense beats a hash map here: bins of one group's feature are contiguous
 * (a few hundred for a group spanning e^±2 at w ≈ 0.01), and folding is the
 * hot loop of `peers build`.
 */
class DenseBins {
  counts = new Int32Array(16);
  offset = 0;
  used = false;

  add(k: number, c = 1): void {
    if (!this.used) { this.offset = k - 8; this.used = true; }
    let i = k - this.offset;
    if (i < 0 || i >= this.counts.length) { this.grow(k); i = k - this.offset; }
    this.counts[i] += c;
  }

  private grow(k: number): void {
    // an infinite or NaN bin would double the window for ever
    if (!Number.isSafeInteger(k)) throw new RangeError(`bin ${k} of a non-finite value`);
    const { counts, offset } = this;
    let lo = offset, hi = offset + counts.length; // [lo, hi)
    let size = counts.length;
    while (k < lo || k >= hi) {
      size *= 2;
      if (k < lo) lo = hi - size; else hi = lo + size;
    }
    const next = new Int32Array(hi - lo);
    next.set(counts, offset - lo);
    this.counts = next;
    this.offset = lo;
  }

  /** [bin, count] pairs with count > 0, by bin. */
  pairs(): [number, number][] {
    const out: [number, number][] = [];
    const { counts, offset } = this;
    for (let i = 0; i < counts.length; i++) if (counts[i] > 0) out.push([i + offset, counts[i]]);
    return out;
  }
}

export class FeatureSketch {
  n = 0;
  mean = 0;
  m2 = 0;
  min = Infinity;
  max = -Infinity;
  values: number[] | undefined = [];
  bins: DenseBins | undefined;
  private readonly inv: number;

  constructor(readonly exactLimit: number, readonly width: number) {
    this.inv = 1 / width;
  }

  /** Bin index of a log value. */
  bin(x: number): number {
    return Math.floor(x * this.inv);
  }

  add(x: number): void {
    const n = ++this.n;
    const d = x - this.mean;
    this.mean += d / n;
    this.m2 += d * (x - this.mean);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    const values = this.values;
    if (values) {
      values.push(x);
      if (values.length > this.exactLimit) this.toBins();
    } else {
      this.bins!.add(this.bin(x));
    }
  }

  private toBins(): void {
    const bins = new DenseBins();
    for (const x of this.values!) bins.add(this.bin(x));
    this.bins = bins;
    this.values = undefined;
  }

  summary(): SketchSummary {
    const { n } = this;
    const base = { n, mean: n > 0 ? this.mean : NaN, std: n > 1 ? Math.sqrt(this.m2 / (n - 1)) : NaN, min: n > 0 ? this.min : NaN, max: n > 0 ? this.max : NaN };
    if (n === 0) return { ...base, median: NaN, mad: NaN, exact: true };
    if (this.values) {
      const { median: med, mad } = robustStats(Float64Array.from(this.values));
      return { ...base, median: med, mad, exact: true };
    }
    const { counts: window, offset } = this.bins!;
    const w = this.width;
    // the occupied bins only: the window spans (max − min) / w bins, a few hundred at the default
    // accuracy but millions at 1e-6, and empty bins change neither median (weightedMedian skips them,
    // and the merge below keeps the others' order)
    let m = 0;
    for (let i = 0; i < window.length; i++) if (window[i] > 0) m++;
    const centres = new Float64Array(m);
    const counts = new Int32Array(m);
    for (let i = 0, j = 0; i < window.length; i++) {
      if (window[i] > 0) { centres[j] = (i + offset + 0.5) * w; counts[j++] = window[i]; }
    }
    const median = weightedMedian(centres, counts, n);
    // deviations |c − median| ascend outwards from the median: merge the two sides
    const dev = new Float64Array(m);
    const dc = new Int32Array(m);
    let right = 0;
    while (right < m && centres[right] < median) right++;
    let left = right - 1;
    for (let j = 0; j < m; j++) {
      const useRight = left < 0 || (right < m && centres[right] - median <= median - centres[left]);
      const i = useRight ? right++ : left--;
      dev[j] = Math.abs(centres[i] - median);
      dc[j] = counts[i];
    }
    return { ...base, median, mad: weightedMedian(dev, dc, n), exact: false };
  }

  /** Histogram of the values at the sketch's bin width: [bin index, count] pairs by index. */
  histogram(): [number, number][] {
    if (this.bins) return this.bins.pairs();
    const b = new DenseBins();
    for (const x of this.values!) b.add(this.bin(x));
    return b.pairs();
  }

  state(): SketchState {
    const s: SketchState = { n: this.n, mean: this.mean, m2: this.m2, min: this.min, max: this.max };
    if (this.values) s.values = this.values.slice();
    else s.bins = this.bins!.pairs();
    return s;
  }

  /** Restores a state; the caller has checked its shape (see peer-store). */
  static fromState(s: SketchState, exactLimit: number, width: number): FeatureSketch {
    const k = new FeatureSketch(exactLimit, width);
    k.n = s.n;
    k.mean = s.mean;
    k.m2 = s.m2;
    k.min = s.n > 0 ? s.min : Infinity;
    k.max = s.n > 0 ? s.max : -Infinity;
    if (s.bins) {
      k.values = undefined;
      k.bins = new DenseBins();
      for (const [bin, c] of s.bins) k.bins.add(bin, c);
    } else {
      k.values = (s.values ?? []).slice();
    }
    return k;
  }
}
