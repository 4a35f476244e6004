/**
 * Top-k metrics for `selectivity evaluate`: rank declarations by score, take
 * the top fraction f (k = f·N inspections, a real number), and report
 * precision, recall and revenue captured beside random selection.
 *
 * Ties are honest: declarations with equal scores are indistinguishable to the
 * engine, so a tie group straddling the cut contributes pro rata — the
 * expected value under a random order of the ties. A fractional k takes the
 * same share of the next declaration. Every figure is therefore an expected
 * value, and all-equal scores reproduce the random baseline.
 *
 * Pure and O(N log N): the scores are sorted once (native Float64Array sort),
 * rows are binned into tie groups by binary search, and each cut is a binary
 * search over the cumulative group totals.
 */
import { errors } from '../errors.js';

export interface Cut {
  /** The fraction f of declarations selected, in (0, 1]. */
  fraction: number;
  /** k = f·N inspections (real-valued). */
  selected: number;
  /** frauds / selected (0 when nothing is selected). */
  precision: number;
  /** frauds / positives (0 when there are no positives). */
  recall: number;
  /** Revenue of the selected positives (expected value). */
  revenueCaptured: number;
  /** revenueCaptured / revenue of all positives (0 when that is 0). */
  revenueShare: number;
  /** Expected number of positives among the selected. */
  frauds: number;
}

export interface TopKResult {
  /** Number of declarations. */
  n: number;
  /** Number of positives (labels ≠ 0). */
  positives: number;
  /** Revenue of all positives (the revenue at stake; negatives' revenue is not counted). */
  totalRevenue: number;
  /** One cut per fraction, in the order given, for the ranking by score. */
  cuts: Cut[];
  /** One cut per fraction for random selection (expected values). */
  random: Cut[];
}

function invalid(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_OPTION_INVALID(`evaluate: ${field} must be ${expected}`, { field, expected, got });
}

/**
 * k = f·N, snapped to the nearest integer when it is one up to rounding
 * (0.3 · 10 is 3.0000000000000004 in binary floating point).
 */
function selectedCount(fraction: number, n: number): number {
  const k = fraction * n;
  const r = Math.round(k);
  return Math.abs(k - r) <= 1e-12 * Math.max(1, k) ? r : k;
}

function makeCut(fraction: number, k: number, frauds: number, revenueCaptured: number, positives: number, totalRevenue: number): Cut {
  return {
    fraction,
    selected: k,
    precision: k > 0 ? frauds / k : 0,
    recall: positives > 0 ? frauds / positives : 0,
    revenueCaptured,
    revenueShare: totalRevenue !== 0 ? revenueCaptured / totalRevenue : 0,
    frauds,
  };
}

/**
 * Ranks by score descending (NaN ranks last, tied with −Infinity) and measures
 * the top fraction of declarations for each of `fractions`. A label ≠ 0 is a
 * positive; revenue counts only for positives, and a non-finite revenue
 * counts as 0.
 */
export function topKMetrics(
  scores: Float64Array,
  labels: Uint8Array,
  revenue: Float64Array,
  fractions: readonly number[],
): TopKResult {
  const n = scores.length;
  if (labels.length !== n) invalid('labels', `one label per score (${n})`, labels.length);
  if (revenue.length !== n) invalid('revenue', `one revenue per score (${n})`, revenue.length);
  if (!Array.isArray(fractions) || fractions.length === 0) invalid('fractions', 'a non-empty list of fractions in (0, 1]', fractions);
  for (const f of fractions) {
    if (typeof f !== 'number' || !(f > 0 && f <= 1)) invalid('fractions', 'numbers in (0, 1]', f);
  }

  // Sort keys: NaN → −Infinity (ranks last), −0 → 0 (one tie group with +0).
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = scores[i];
    keys[i] = s !== s ? -Infinity : s === 0 ? 0 : s;
  }
  const sorted = keys.slice().sort(); // ascending, numeric
  let groups = 0;
  for (let i = 0; i < n; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[groups++] = sorted[i];
  }
  const distinct = sorted.subarray(0, groups);

  // Per tie group (ascending score): size, positives, positive revenue.
  const size = new Float64Array(groups);
  const pos = new Float64Array(groups);
  const rev = new Float64Array(groups);
  let positives = 0;
  let totalRevenue = 0;
  for (let i = 0; i < n; i++) {
    const key = keys[i];
    let lo = 0, hi = groups - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (distinct[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    size[lo] += 1;
    if (labels[i] !== 0) {
      const r = revenue[i];
      const v = r - r === 0 && r > 0 ? r : 0; // finite and positive, else 0 (as training counts it: revenue at stake is never negative)
      pos[lo] += 1;
      rev[lo] += v;
      positives += 1;
      totalRevenue += v;
    }
  }

  // Cumulative totals in rank order (descending score): end[g] = rows in groups 0..g.
  const end = new Float64Array(groups);
  const cumPos = new Float64Array(groups);
  const cumRev = new Float64Array(groups);
  let c = 0, p = 0, r = 0;
  for (let g = 0; g < groups; g++) {
    const a = groups - 1 - g;
    c += size[a]; p += pos[a]; r += rev[a];
    end[g] = c; cumPos[g] = p; cumRev[g] = r;
  }

  const cuts: Cut[] = [];
  const random: Cut[] = [];
  for (const fraction of fractions) {
    const k = selectedCount(fraction, n);
    let frauds = 0, captured = 0;
    if (groups > 0) {
      // First group whose end reaches k (k > 0, and end[groups - 1] = n >= k).
      let lo = 0, hi = groups - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (end[mid] < k) lo = mid + 1;
        else hi = mid;
      }
      const a = groups - 1 - lo; // the same group in ascending order
      const share = (k - (end[lo] - size[a])) / size[a]; // the straddling group's share, pro rata
      frauds = (lo > 0 ? cumPos[lo - 1] : 0) + share * pos[a];
      captured = (lo > 0 ? cumRev[lo - 1] : 0) + share * rev[a];
    }
    cuts.push(makeCut(fraction, k, frauds, captured, positives, totalRevenue));
    // Random selection: every declaration is selected with probability k/N.
    const u = n > 0 ? k / n : 0;
    random.push(makeCut(fraction, k, u * positives, u * totalRevenue, positives, totalRevenue));
  }
  return { n, positives, totalRevenue, cuts, random };
}

const NEGATIVE_WORDS = new Set(['', '0', 'false', 'no', 'n']);

/**
 * Reads a ground-truth label. With `positives`, 1 iff the trimmed value is one
 * of them (exact match). Otherwise 1 unless the trimmed value is '', '0',
 * 'false', 'no' or 'n' (any case), or a number equal to zero ('0.0', '-0').
 */
export function parseLabel(value: string, positives?: readonly string[]): 0 | 1 {
  const t = value.trim();
  if (positives !== undefined) {
    for (const p of positives) if (p.trim() === t) return 1;
    return 0;
  }
  if (NEGATIVE_WORDS.has(t.toLowerCase())) return 0;
  const x = Number(t);
  if (x === x) return x !== 0 ? 1 : 0; // numeric
  return 1;
}
