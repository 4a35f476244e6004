/**
 * Decisions: a channel per declaration, the score, and the reasons in words
 * an officer (and an auditor replaying the decision) can follow. Decoded from
 * a kernel result with the metadata of the ruleset version that made it.
 */
import { CHANNELS, type Channel } from './model/channels.js';
import { FEATURES, NF, type Feature } from './peers/peer-groups.js';
import type { CompiledMeta } from './ruleset/compile.js';
import type { RiskArea } from './profiles/profile.js';
import { historyIndex, isRatingDimension, smoothedRate, type BatchHistory, type HistoryIndex, type HistoryTables } from './learn/history.js';
import { FLAG_CONTROL, FLAG_PROFILE_CHANNEL, type ScoreResult } from './kernel/layout.js';
import type { TextSignal } from './text/signals.js';

/**
 * HISTORY reasons: contributions of at least this much (either sign), the
 * largest first, at most HISTORY_REASONS. The trader dimensions' (the
 * behavioural rating) are cited below it or past the last place too, when
 * without them the score would be on the other side of the yellow or red
 * line: the rating is shown whenever it moves a decision.
 */
export const HISTORY_REASON_MIN = 0.25;
export const HISTORY_REASONS = 5;

type HistoryReason = Extract<Reason, { code: 'HISTORY' }>;

/**
 * The HISTORY reasons of a ruleset's tables, one per table entry whose
 * contribution reaches HISTORY_REASON_MIN, built on first use and shared (frozen)
 * by every decision that cites the entry: a reason depends on the entry only.
 */
class HistoryReasons {
  private readonly index: HistoryIndex;
  /** Per dimension, each entry's weight × lift as the kernel adds it (HistoryIndex; empty when the dimension is not loaded: nothing to cite). */
  private readonly weighted: Float64Array[];
  /** Per dimension and entry: 0 not built yet, -1 nothing to cite, else 1 + the reason's index in `reasons`. */
  private readonly slot: Int32Array[];
  private readonly reasons: HistoryReason[] = [];
  /** Per reason (same index): |contribution|, the order of a row's reasons. */
  private readonly size: number[] = [];

  /** The dimensions with at least one entry to cite, in dimension order: the others are never looked up. */
  private readonly citable: number[];
  /** The loaded dimensions of the behavioural rating (with an importer or declarant part: isRatingDimension), in dimension order. */
  private readonly trader: number[];
  /** Per reason (same index as `reasons`): its exact contribution when its dimension is a trader one, else NaN. */
  private readonly traderContribution: number[] = [];
  /** Reasons of trader entries too small to cite on their own, built when one moved a decision (key: dimension × 2^32 + entry). */
  private readonly small = new Map<number, HistoryReason>();
  /** The trader dimensions with no entry to cite, and the most any row's entries of them can add up to either way. */
  private readonly quiet: number[];
  private readonly quietBound: number;

  constructor(private readonly t: HistoryTables) {
    this.index = historyIndex(t);
    this.weighted = this.index.dims.map((d) => d.weightedLift);
    this.slot = t.dimensions.map((d) => new Int32Array(d.keys.length));
    this.aeo = Object.freeze({ code: 'AEO', contribution: -round(t.aeoReduction ?? 0) });
    this.citable = [];
    t.dimensions.forEach((_, d) => { if (this.weighted[d].some((c) => Math.abs(c) >= HISTORY_REASON_MIN)) this.citable.push(d); });
    this.trader = [];
    t.dimensions.forEach((dim, d) => { if (this.weighted[d].length > 0 && isRatingDimension(dim.name)) this.trader.push(d); });
    this.quiet = this.trader.filter((d) => !this.citable.includes(d));
    this.quietBound = this.quiet.reduce((s, d) => s + this.weighted[d].reduce((m, c) => Math.max(m, Math.abs(c)), 0), 0);
  }

  /**
   * Per row of a batch, the HISTORY reasons its decision cites: at
   * `(HISTORY_REASONS + 1) × i`, their count, then the indexes of the
   * reasons in `reasons`, the largest |contribution| first, ties in dimension
   * order, at most HISTORY_REASONS (what a stable sort by |contribution|
   * then a cut gives). Found dimension by dimension for the whole batch,
   * once, and kept on `h`. A row whose score (`score`) the trader
   * contributions left out would put on the other side of the yellow or
   * red line gets them too, in `h.movedBy`.
   */
  rows(h: BatchHistory, n: number, score: Float64Array, yellow: number, red: number): Int32Array {
    const W = HISTORY_REASONS + 1;
    const kept = h.reasons;
    if (kept && kept.length >= n * W) return kept;
    const out = new Int32Array(n * W);
    /** Per row, the trader contributions not cited (too small, or past the last place) of the citable dimensions. */
    let uncited: Float64Array | undefined;
    const traderEntries = new Map<number, Int32Array>();
    const size = this.size, tc = this.traderContribution;
    for (const d of this.citable) {
      const entries = this.index.dimEntries(h, n, d);
      const trader = this.trader.includes(d);
      if (trader) { traderEntries.set(d, entries); uncited ??= new Float64Array(n); }
      for (let i = 0; i < n; i++) {
        const e = entries[i];
        if (e < 0) continue;
        const r = this.reasonIndex(d, e);
        if (r < 0) { if (trader) uncited![i] += this.weighted[d][e]; continue; }
        // insert r after every reason at least as large, dropping what falls past the last place
        const row = i * W, count = out[row];
        let p = count;
        while (p > 0 && size[out[row + p]] < size[r]) {
          if (p < HISTORY_REASONS) out[row + 1 + p] = out[row + p];
          else if (!Number.isNaN(tc[out[row + p]])) (uncited ??= new Float64Array(n))[i] += tc[out[row + p]]; // a trader reason cut off
          p--;
        }
        if (p < HISTORY_REASONS) {
          out[row + 1 + p] = r;
          if (count < HISTORY_REASONS) out[row] = count + 1;
        } else if (!Number.isNaN(tc[r])) (uncited ??= new Float64Array(n))[i] += tc[r];
      }
    }
    if (this.trader.length > 0) {
      const side = (x: number) => (x >= red ? 2 : x >= yellow ? 1 : 0);
      // the trader dimensions with nothing large enough to cite add at most quietBound either way: their
      // entries are looked up only for the rows within that of a line (few)
      const slack = this.quietBound * (1 + 1e-9);
      const near = (x: number) => (x >= yellow - slack && x <= yellow + slack) || (x >= red - slack && x <= red + slack);
      const entryOf = (d: number, i: number) => traderEntries.get(d)?.[i] ?? this.index.entry(h, i, d);
      for (let i = 0; i < n; i++) {
        let u = uncited?.[i] ?? 0;
        const x = score[i];
        if (this.quiet.length > 0 && (near(x) || near(x - u) || side(x) !== side(x - u))) {
          for (const d of this.quiet) { const e = entryOf(d, i); if (e >= 0) u += this.weighted[d][e]; }
        }
        if (u === 0 || side(x) === side(x - u)) continue;
        // the rating moved this decision: every trader contribution it does not cite is added, the largest
        // first (ties in dimension order)
        const cited = new Set<number>();
        for (let k = 1; k <= out[i * W]; k++) cited.add(out[i * W + k]);
        const extra: HistoryReason[] = [];
        for (const d of this.trader) {
          const e = entryOf(d, i);
          if (e < 0 || this.weighted[d][e] === 0) continue;
          const r = this.reasonIndex(d, e);
          if (r >= 0 && cited.has(r)) continue;
          extra.push(r >= 0 ? this.reasons[r] : this.smallReason(d, e));
        }
        extra.sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
        (h.movedBy ??= new Map()).set(i, extra);
      }
    }
    h.reasons = out;
    return out;
  }

  /** The reason of trader entry e of dimension d, whatever its size (one that moved a decision). */
  private smallReason(d: number, e: number): HistoryReason {
    const key = d * 2 ** 32 + e;
    let r = this.small.get(key);
    if (r === undefined) this.small.set(key, (r = this.makeReason(d, e)));
    return r;
  }

  private makeReason(d: number, e: number): HistoryReason {
    const dim = this.t.dimensions[d];
    return Object.freeze<HistoryReason>({ code: 'HISTORY', dimension: dim.name, value: dim.keys[e], rate: round(smoothedRate(this.t, dim, e), 3), n: round(dim.n[e], 1), contribution: round(this.weighted[d][e]) });
  }

  /** The AEO reason (one reduction for every AEO importer). */
  readonly aeo: Extract<Reason, { code: 'AEO' }>;

  /** The index in `reasons` of the reason entry e of dimension d gives, or -1 when its contribution is too small to cite. */
  private reasonIndex(d: number, e: number): number {
    const s = this.slot[d][e];
    if (s !== 0) return s > 0 ? s - 1 : -1;
    const c = this.weighted[d][e];
    if (Math.abs(c) < HISTORY_REASON_MIN) { this.slot[d][e] = -1; return -1; }
    const r = this.makeReason(d, e);
    this.reasons.push(r);
    this.size.push(Math.abs(r.contribution));
    this.traderContribution.push(this.trader.includes(d) ? c : NaN);
    this.slot[d][e] = this.reasons.length;
    return this.reasons.length - 1;
  }

  /** Row i's reasons, from rows(), written into `into` from `at`; returns the end. */
  write(rows: Int32Array, i: number, into: Reason[], at: number, movedBy?: Map<number, HistoryReason[]>): number {
    const row = i * (HISTORY_REASONS + 1);
    for (let k = 1; k <= rows[row]; k++) into[at++] = this.reasons[rows[row + k]];
    const extra = movedBy?.get(i);
    if (extra) for (const r of extra) into[at++] = r;
    return at;
  }
}

/**
 * `make(meta)`, made once per ruleset version and kept as long as the
 * version is (weakly). Every decision of a batch asks with the same meta:
 * the last one answers without the WeakMap.
 */
function perRuleset<T>(make: (meta: CompiledMeta) => T): (meta: CompiledMeta) => T {
  const cache = new WeakMap<CompiledMeta, T>();
  let lastMeta: CompiledMeta | undefined;
  let last: T | undefined;
  return (meta) => {
    if (meta === lastMeta) return last!;
    let x = cache.get(meta);
    if (x === undefined) { x = make(meta); cache.set(meta, x); }
    lastMeta = meta;
    last = x;
    return x;
  };
}

/** Called only for a meta with history tables. */
const historyReasons = perRuleset((meta) => new HistoryReasons(meta.history!));

/**
 * The reasons that depend on the ruleset alone: a profile's (PROFILE), a
 * keyword term's (KEYWORD) and the control group's on each channel
 * (RANDOM_SELECTION). Built once per ruleset version on first use and shared,
 * frozen (arrays too), by every decision that gives them, as HISTORY reasons
 * are: no objects, arrays or sets made per decision, and the MessagePack
 * encoder keeps the bytes of frozen objects after the first time.
 */
class RulesetReasons {
  private readonly profile: (Reason | undefined)[];
  private readonly keyword: (Reason | undefined)[];
  private readonly random = new Map<Channel, Reason>();

  constructor(private readonly meta: CompiledMeta) {
    this.profile = new Array<Reason | undefined>(meta.profiles.length).fill(undefined);
    this.keyword = new Array<Reason | undefined>(meta.text.terms.length).fill(undefined);
  }

  profileReason(k: number): Reason {
    let r = this.profile[k];
    if (r === undefined) {
      const p = this.meta.profiles[k];
      const x: Reason = { code: 'PROFILE', profile: p.id, weight: p.weight };
      if (p.version !== undefined) x.version = p.version;
      if (p.channel) x.channel = p.channel;
      r = this.profile[k] = Object.freeze(x);
    }
    return r;
  }

  keywordReason(t: number): Reason {
    let r = this.keyword[t];
    if (r === undefined) {
      const term = this.meta.text.terms[t];
      r = this.keyword[t] = Object.freeze<Reason>({ code: 'KEYWORD', term: term.text, lists: Object.freeze(term.lists.map((l) => l.id)) as string[], riskAreas: Object.freeze([...new Set(term.lists.map((l) => l.riskArea))]) as RiskArea[] });
    }
    return r;
  }

  randomReason(channel: Channel): Reason {
    let r = this.random.get(channel);
    if (r === undefined) { r = Object.freeze<Reason>({ code: 'RANDOM_SELECTION', channel, rate: this.meta.settings.randomSelection.rate }); this.random.set(channel, r); }
    return r;
  }
}

const rulesetReasons = perRuleset((meta) => new RulesetReasons(meta));

/**
 * The MISCLASSIFICATION reason of a text signal: it depends on the signal
 * alone, and signals are shared by the declarations with the same
 * description and HS code (and never modified), so one frozen reason each.
 */
const misclassificationReasons = new WeakMap<TextSignal, Reason>();

function misclassificationReason(signal: TextSignal & { fit: NonNullable<TextSignal['fit']> }): Reason {
  let r = misclassificationReasons.get(signal);
  if (r === undefined) {
    r = Object.freeze<Reason>({ code: 'MISCLASSIFICATION', declaredChapter: signal.chapter ?? '', fit: round(signal.fit.chapterFit, 3), bestHeading: signal.fit.bestHeading, contribution: signal.extra });
    misclassificationReasons.set(signal, r);
  }
  return r;
}

export type Reason =
  /** A risk profile matched; its weight was added to the score. `version`: the stored profile version (store-backed rulesets). */
  | { code: 'PROFILE'; profile: string; version?: number; weight: number; channel?: Channel }
  /** A feature deviated from its peer group beyond the z threshold; contribution is what it added to the score (0 where that direction has no weight). */
  | { code: 'DEVIATION'; feature: Feature; z: number; direction: 'under' | 'over'; peerLevel: string; contribution: number }
  /** The goods description contains a watch-list term or profile keyword (matched on stems); `lists`/`riskAreas` of the watch lists holding it. */
  | { code: 'KEYWORD'; term: string; lists: string[]; riskAreas: RiskArea[] }
  /** The description fits the declared HS chapter poorly (fit below the setting); `bestHeading` fits it best; contribution is what it added to the score. */
  | { code: 'MISCLASSIFICATION'; declaredChapter: string; fit: number; bestHeading: string; contribution: number }
  /** A value of the declaration has a non-compliance history (historical tables): its smoothed rate over `n` declarations (recency-weighted ones in the importer and declarant dimensions: one `halfLifeDays` older counts half), and what it added to the score (weight × log-odds lift). */
  | { code: 'HISTORY'; dimension: string; value: string; rate: number; n: number; contribution: number }
  /** The importer is AEO-certified: the documented reduction of the trader rating (historical tables), subtracted from the score. */
  | { code: 'AEO'; contribution: number }
  /** The score reached a channel threshold. */
  | { code: 'SCORE_THRESHOLD'; channel: Channel; score: number; threshold: number }
  /** A matched profile's counter-measure raised the channel above the score's; `instructions`: what those profiles tell the officer to check. */
  | { code: 'COUNTER_MEASURE'; channel: Channel; profiles: string[]; instructions?: string[] }
  /** Deterministic random selection for the control group. */
  | { code: 'RANDOM_SELECTION'; channel: Channel; rate: number };

/** Every reason code, in the order reasons appear in a decision. */
export const REASON_CODES = ['PROFILE', 'DEVIATION', 'KEYWORD', 'MISCLASSIFICATION', 'HISTORY', 'AEO', 'SCORE_THRESHOLD', 'COUNTER_MEASURE', 'RANDOM_SELECTION'] as const satisfies readonly Reason['code'][];

export interface Decision {
  id: string;
  channel: Channel;
  score: number;
  controlGroup: boolean;
  rulesetVersion: string;
  reasons: Reason[];
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * x rounded to `digits` decimals, but never shown on the other side of a
 * limit than x is, nor on a limit x is not on: a score of 3.9999998 under a
 * red line of 4 is shown 3.999999, not 4 beside a yellow channel; a z of
 * -3.0002 that passed a threshold of 3 is shown -3.001, not -3, a value that
 * did not. Every limit is judged against x itself; when no value of
 * `digits` decimals lies on x's side of each (two lines closer together
 * than 10^-digits), more decimals are shown, up to x as it is.
 */
export function roundBeside(x: number, digits: number, limits: number | readonly number[]): number {
  const ls = typeof limits === 'number' ? [limits] : limits;
  const sameSide = (r: number) => ls.every((l) => (x < l ? r < l : x > l ? r > l : r >= l));
  for (let d = digits; d <= 17; d++) {
    const f = 10 ** d;
    let r = round(x, d);
    for (const l of ls) {
      if (x < l && r >= l) r = Math.floor(x * f) / f;
      else if (x > l && r <= l) r = Math.ceil(x * f) / f;
    }
    if (sameSide(r)) return r;
  }
  return x;
}

/** decisionAt's reasons while a decision is built (this thread builds one at a time). */
const scratchReasons: Reason[] = [];

/** Decodes row i of a kernel result. */
export function decisionAt(result: ScoreResult, i: number, id: string, meta: CompiledMeta): Decision {
  const s = meta.settings;
  const channel = CHANNELS[result.channel[i]];
  const flags = result.flags[i];
  const score = result.score[i];
  // gathered in a scratch list and copied out at their exact count (a pushed-to array would hold room for 16)
  const reasons = scratchReasons;
  let nr = 0;
  const shared = rulesetReasons(meta);
  const from = result.matchOffset[i], to = result.matchOffset[i + 1];
  let raising: string[] | undefined;
  let instructions: string[] | undefined;
  for (let k = from; k < to; k++) {
    const p = meta.profiles[result.matchList[k]];
    reasons[nr++] = shared.profileReason(result.matchList[k]);
    if ((flags & FLAG_PROFILE_CHANNEL) !== 0 && p.channel === channel) {
      (raising ??= []).push(p.id);
      if (p.instructions && !instructions?.includes(p.instructions)) (instructions ??= []).push(p.instructions);
    }
  }
  for (let f = 0; f < NF; f++) {
    const z = result.z[i * NF + f];
    if (Number.isNaN(z) || Math.abs(z) <= s.zThreshold) continue;
    const under = z < 0;
    const contribution = (under ? s.weights.under[f] : s.weights.over[f]) * Math.min(Math.abs(z) - s.zThreshold, s.zCap);
    reasons[nr++] = { code: 'DEVIATION', feature: FEATURES[f], z: roundBeside(z, 3, under ? -s.zThreshold : s.zThreshold), direction: under ? 'under' : 'over', peerLevel: meta.levels[result.level[i * NF + f]].name, contribution: round(contribution) };
  }
  const signal = result.text?.signals[result.text.row[i]];
  if (signal) {
    const terms = signal.terms;
    for (let k = 0; k < terms.length; k++) reasons[nr++] = shared.keywordReason(terms[k]);
    if (signal.misclassified && signal.fit) reasons[nr++] = misclassificationReason(signal as TextSignal & { fit: NonNullable<TextSignal['fit']> });
  }
  const h = result.history;
  if (h && meta.history) {
    const t = meta.history;
    const hr = historyReasons(meta);
    nr = hr.write(hr.rows(h, result.size, result.score, s.thresholds.yellow, s.thresholds.red), i, reasons, nr, h.movedBy);
    if (t.aeoReduction && h.aeo?.[i] === 1) reasons[nr++] = hr.aeo;
  }
  // the score shown stays on its side of each line (roundBeside): never at the red line beside a yellow channel
  const lines = [s.thresholds.red, s.thresholds.yellow];
  const shown = (digits: number) => roundBeside(score, digits, lines);
  if (score >= s.thresholds.red) reasons[nr++] = { code: 'SCORE_THRESHOLD', channel: 'red', score: shown(4), threshold: s.thresholds.red };
  else if (score >= s.thresholds.yellow) reasons[nr++] = { code: 'SCORE_THRESHOLD', channel: 'yellow', score: shown(4), threshold: s.thresholds.yellow };
  if (raising !== undefined) reasons[nr++] = instructions ? { code: 'COUNTER_MEASURE', channel, profiles: raising, instructions } : { code: 'COUNTER_MEASURE', channel, profiles: raising };
  if ((flags & FLAG_CONTROL) !== 0) reasons[nr++] = shared.randomReason(channel);
  return { id, channel, score: shown(6), controlGroup: (flags & FLAG_CONTROL) !== 0, rulesetVersion: result.rulesetVersion, reasons: reasons.slice(0, nr) };
}

export function toDecisions(result: ScoreResult, ids: readonly string[], meta: CompiledMeta): Decision[] {
  const out: Decision[] = new Array(result.size);
  for (let i = 0; i < result.size; i++) out[i] = decisionAt(result, i, ids[i], meta);
  return out;
}

/** Counts per channel, and of the control group. */
export function channelCounts(result: ScoreResult, into: Record<Channel | 'control', number> = emptyCounts()): Record<Channel | 'control', number> {
  for (let i = 0; i < result.size; i++) {
    into[CHANNELS[result.channel[i]]]++;
    if ((result.flags[i] & FLAG_CONTROL) !== 0) into.control++;
  }
  return into;
}

export function emptyCounts(): Record<Channel | 'control', number> {
  return { green: 0, blue: 0, yellow: 0, orange: 0, red: 0, control: 0 };
}

/** Declarations matched per profile in a result: [profile index, count, …] for the profiles that matched. */
export function profileMatchCounts(result: ScoreResult): number[] {
  const end = result.matchOffset[result.size];
  if (end === 0) return [];
  const counts = new Map<number, number>();
  const list = result.matchList;
  for (let k = 0; k < end; k++) counts.set(list[k], (counts.get(list[k]) ?? 0) + 1);
  const out: number[] = [];
  for (const [i, c] of counts) out.push(i, c);
  return out;
}
