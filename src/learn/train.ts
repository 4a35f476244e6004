/**
 * The compliance model: from labelled history, fit the weights that combine
 * the engine's signals into one score, and write them into a ruleset (the
 * kernel keeps scoring with a dot product).
 *
 * Features of a declaration, all on the score's scale:
 * - deviation components: per feature, min(max(−z − T, 0), C) (under) and
 *   min(max(z − T, 0), C) (over), z against the training peers;
 * - misclassification: 1 when the description fits the declared chapter
 *   poorly (src/text/signals.ts), when descriptions are present;
 * - per historical dimension, the log-odds lift of the declaration's value
 *   (src/learn/history.ts), computed out of fold (each fold's rows against
 *   tables of the other folds) so that a row's own label does not leak into
 *   its feature.
 * A logistic regression with an L2 penalty (Newton's method) gives one
 * coefficient per feature. Every coefficient is kept non-negative: each
 * feature says "riskier" as it grows (a larger deviation, a poor fit, a
 * value with a worse record), so a negative weight would only correct the
 * feature's overlap with others (hs6 against hs6×origin), and would make a
 * value's bad record lower a declaration's score, which no officer could
 * follow. Features whose fitted weights are negative are dropped (weight 0)
 * and the model refitted, until none is. Then the feature whose weight is
 * least significant (the lowest z: the weight over its standard error,
 * from the inverse Hessian) is dropped and the model refitted, one at a
 * time, while that z is below `minZ` (default 1.96): a weight the training
 * data cannot tell from 0 adds noise to every score, a table to every
 * kernel call and reasons to decisions. The deviation and
 * misclassification coefficients become settings.weights and
 * settings.misclassification.weight, the dimension coefficients the tables'
 * weights; a dimension of weight 0 stays in the model (its counts still
 * propose candidate profiles) but adds nothing, so the kernel does not load
 * it (src/learn/history.ts HistoryIndex). The intercept b places the
 * channel thresholds: red where the modelled probability of non-compliance
 * reaches `redAt` (score ≥ logit(redAt) − b), yellow at `yellowAt`.
 * Profiles keep their analysts' weights, on the same log-odds scale.
 */
import { errors } from '../errors.js';
import { createEngine } from '../engine.js';
import type { ColumnarBatch } from '../model/columnar.js';
import { NF, FEATURES, type PeerTables } from '../peers/peer-groups.js';
import { createRuleset, resolveSettings, type RulesetSettings, type RulesetSettingsInput } from '../ruleset/ruleset.js';
import { compileExpression, DEFAULT_REVENUE, REVENUE_FIELDS } from '../evaluate/expression.js';
import { batchKeys, DEFAULT_DIMENSIONS, dimensionName, isRatingDimension, isTraderDimension, lifts, parseDimension, revenueAtRisk, type HistoryTables } from './history.js';

export interface TrainOptions {
  /** Dimensions of the historical tables (default DEFAULT_DIMENSIONS). */
  dimensions?: readonly string[];
  /**
   * Prior strength m, in declarations (default 10). 'auto': the strength of
   * STRENGTH_GRID whose fitted model has the lowest training log-loss (the
   * rates are out of fold, so that loss measures how well each strength's
   * rates predict labels they were not computed from); ties to the larger.
   */
  strength?: number | 'auto';
  /**
   * Least prior strength of the trader dimensions (those with an importer,
   * declarant or seller part), in declarations (default
   * DEFAULT_TRADER_STRENGTH, 10): they take the larger of this and the
   * strength, given or chosen by 'auto', so that a trader's rate is never
   * judged on a few declarations; the model records it as
   * history.traderStrength where it differs from the strength. 0: the trader
   * dimensions take the strength as the others do.
   */
  traderStrength?: number;
  /**
   * Half-life of the recency weighting of the trader dimensions (those with
   * importer or declarant: the behavioural rating), days (default 365; 0:
   * every declaration weighs 1). Other dimensions weigh every declaration 1.
   */
  halfLifeDays?: number;
  /**
   * When the model is trained, ms since the epoch (default: now). The
   * recency weighting counts each declaration's age from the newest
   * declaration dated no later than this day. One dated after it (a
   * mistyped year, say 2205) weighs 1, and does not age every other
   * declaration by centuries, which wiped the trader rating out.
   */
  asOf?: number;
  /** AEO status as a reduction of the score, log-odds (default ln 2: an AEO importer's odds halved). */
  aeoReduction?: number;
  /** Folds for the out-of-fold lifts (default 5). */
  folds?: number;
  /** L2 penalty per declaration (default 0.001). */
  l2?: number;
  /**
   * Least z (weight / standard error) a feature's weight must reach to stay
   * in the model (default DEFAULT_MIN_Z, 1.96): the least significant is
   * dropped and the model refitted until every weight reaches it. 0: keep
   * every feature whose weight is not negative.
   */
  minZ?: number;
  /** Modelled probabilities at which the channel turns red / yellow (default 0.5 / 0.25). */
  redAt?: number;
  yellowAt?: number;
  /** Threads for scoring the training rows (deviation features). */
  threads?: number;
}

/** Labelled training data: batches, a label per row, and which rows to use. */
export interface TrainingData {
  batches: ColumnarBatch[];
  /** Per batch, per row: 1 non-compliant, 0 compliant. */
  labels: Uint8Array[];
  /** Per batch, per row: 1 when the row trains (absent: every row). */
  keep?: (Uint8Array | undefined)[];
  /** Per batch, per row: the revenue at stake (absent: customsValue × taxRate / 100, 0 where either is missing). */
  revenue?: (Float64Array | undefined)[];
  /**
   * Per batch, per row: 1 when the description fits its declared chapter
   * poorly, as found when the row was scored (the decision log keeps the
   * MISCLASSIFICATION reason, not the description). Given, it is the
   * misclassification feature instead of the rows' own descriptions.
   */
  misclassified?: Uint8Array[];
}

export interface TrainedModel {
  format: 'selectivity-model';
  formatVersion: 1;
  /** Settings to merge over the others: deviation weights, misclassification weight, thresholds. */
  settings: { weights: { under: number[]; over: number[] }; misclassification: { weight: number }; thresholds: { yellow: number; red: number } };
  history: HistoryTables;
  intercept: number;
  /** Every fitted coefficient by feature name (0 where dropped). */
  coefficients: Record<string, number>;
  training: {
    rows: number; positives: number; prior: number; logLoss: number; firstDay: number; lastDay: number; iterations: number;
    /** With strength 'auto': each strength tried and its model's training log-loss (the chosen one is history.strength). */
    strengths?: { strength: number; logLoss: number }[];
    /** The least z a weight had to reach (TrainOptions.minZ), and each kept weight's z (weight / standard error); absent in models written before them. */
    minZ?: number;
    z?: Record<string, number>;
  };
}

/**
 * Whether training kept no weight (every coefficient 0: each fitted
 * negative or fell below minZ). Such a model scores every declaration alike,
 * at the training data's rate of non-compliance, which above the yellow line
 * sends every declaration without a profile hit to yellow. The service does
 * not swap such a refit in; `selectivity train` writes it with a warning.
 */
export const keptNoWeight = (m: Pick<TrainedModel, 'coefficients'>): boolean => Object.values(m.coefficients).every((c) => c === 0);

/** The warning `selectivity train` prints for such a model. */
export const noWeightWarning = (m: Pick<TrainedModel, 'training'>): string =>
  `selectivity train: warning: no weight kept (none is positive with z of at least ${m.training.minZ ?? DEFAULT_MIN_Z}): this model scores every declaration alike, at the training rate of non-compliance (${(100 * m.training.prior).toFixed(2)} %); above the yellow line, every declaration without a profile hit goes yellow. More data, or a lower --min-z, may keep weights.\n`;

/** The prior strength of the tables when none is given, in declarations. */
export const DEFAULT_STRENGTH = 10;
/** The least prior strength of the trader dimensions when none is given (TrainOptions.traderStrength). */
export const DEFAULT_TRADER_STRENGTH = 10;

/** Least z a weight must reach to stay in the model (TrainOptions.minZ): one-sided 2.5 %. */
export const DEFAULT_MIN_Z = 1.96;

/** The prior strengths `strength: 'auto'` tries, in declarations. */
export const STRENGTH_GRID: readonly number[] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100];

const logit = (p: number) => Math.log(p / (1 - p));

function bad(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_OPTION_INVALID(`${field}: expected ${expected}`, { field, expected, got });
}

/** Solves A x = b (dense, partial pivoting) in place; returns x. */
function solve(A: Float64Array[], b: Float64Array): Float64Array {
  const n = b.length;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    [b[c], b[p]] = [b[p], b[c]];
    const piv = A[c][c] || 1e-12;
    for (let r = c + 1; r < n; r++) {
      const f = A[r][c] / piv;
      if (f === 0) continue;
      for (let k = c; k < n; k++) A[r][k] -= f * A[c][k];
      b[r] -= f * b[c];
    }
  }
  const x = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let s = b[r];
    for (let k = r + 1; k < n; k++) s -= A[r][k] * x[k];
    x[r] = s / (A[r][r] || 1e-12);
  }
  return x;
}

/**
 * L2-penalised logistic regression by Newton's method over the columns
 * `use` of X (rows × F, row-major); the last coefficient is the intercept
 * (not penalised). Returns the coefficients (0 for unused columns), the
 * intercept, the mean log-loss, the iterations and each used coefficient's
 * standard error (0 for unused columns). `start`: a fit to start from (a
 * refit after dropping a column converges in fewer steps); it changes the
 * path, not the optimum: each Newton step is halved until the penalised
 * objective does not rise, so the iteration converges from any start.
 */
export function logisticRegression(X: Float64Array, y: Uint8Array, F: number, use: readonly number[], l2: number, weights?: Float64Array, start?: { coef: Float64Array; intercept: number }): { coef: Float64Array; intercept: number; logLoss: number; iterations: number; se: Float64Array } {
  const N = y.length;
  const P = use.length + 1;
  let w = new Float64Array(P);
  if (start) { use.forEach((c, j) => { w[j] = start.coef[c]; }); w[P - 1] = start.intercept; }
  let iterations = 0;
  let loss = 0;
  /** The last step's Hessian (penalty included), kept before solve() reduces it: the standard errors' source. */
  let hessian: Float64Array[] = [];
  /** The penalised objective at v: weighted log-loss (computed without clamping, so that far wrong fits still compare) plus the L2 penalty. */
  const objective = (v: Float64Array): number => {
    let o = 0, wsum = 0;
    for (let i = 0; i < N; i++) {
      let z = v[P - 1];
      for (let j = 0; j < P - 1; j++) z += v[j] * X[i * F + use[j]];
      const sw = weights ? weights[i] : 1;
      wsum += sw;
      const m = y[i] ? -z : z; // -log p = softplus(-z), -log(1 - p) = softplus(z)
      o += sw * (m > 0 ? m + Math.log1p(Math.exp(-m)) : Math.log1p(Math.exp(m)));
    }
    let pen = 0;
    for (let a = 0; a < P - 1; a++) pen += v[a] * v[a];
    return o + 0.5 * l2 * wsum * pen;
  };
  // the objective at w, carried from the step that reached it (the start's computed once)
  let here = objective(w);
  for (; iterations < 100; iterations++) {
    const g = new Float64Array(P);
    const H = Array.from({ length: P }, () => new Float64Array(P));
    const x = new Float64Array(P);
    loss = 0;
    let wsum = 0;
    for (let i = 0; i < N; i++) {
      let z = w[P - 1];
      for (let j = 0; j < P - 1; j++) { x[j] = X[i * F + use[j]]; z += w[j] * x[j]; }
      x[P - 1] = 1;
      const p = 1 / (1 + Math.exp(-z));
      const sw = weights ? weights[i] : 1;
      wsum += sw;
      loss -= sw * (y[i] ? Math.log(Math.max(p, 1e-15)) : Math.log(Math.max(1 - p, 1e-15)));
      const e = sw * (p - y[i]);
      const v = sw * Math.max(p * (1 - p), 1e-9);
      for (let a = 0; a < P; a++) {
        g[a] += e * x[a];
        const va = v * x[a];
        if (va === 0) continue;
        for (let b = a; b < P; b++) H[a][b] += va * x[b];
      }
    }
    loss /= wsum || 1;
    for (let a = 0; a < P; a++) for (let b = 0; b < a; b++) H[a][b] = H[b][a];
    for (let a = 0; a < P - 1; a++) { g[a] += l2 * wsum * w[a]; H[a][a] += l2 * wsum; }
    hessian = H.map((r) => r.slice());
    const d = solve(H, g);
    // Newton's step, halved until the penalised objective does not rise: from a start far from the
    // optimum (a refit's warm start, a trader who is always non-compliant) the full step can overshoot
    // to intercepts of -1e8 that Newton never comes back from. Near the optimum the full step is taken.
    // (A rise within rounding is no rise: near the optimum the full step's gain is below the sum's precision.)
    const ceiling = here + 1e-9 * (Math.abs(here) + 1);
    let t = 1;
    let next = new Float64Array(P);
    let there = Infinity;
    for (let halvings = 0; ; halvings++) {
      for (let a = 0; a < P; a++) next[a] = w[a] - t * d[a];
      there = objective(next);
      if (there <= ceiling || halvings === 40) break;
      t /= 2;
    }
    if (there <= ceiling) here = there;
    else next = w; // no step lowers it
    let step = 0;
    for (let a = 0; a < P; a++) step = Math.max(step, Math.abs(next[a] - w[a]));
    w = next;
    if (step < 1e-7) { iterations++; break; }
  }
  const coef = new Float64Array(F);
  use.forEach((c, j) => { coef[c] = w[j]; });
  // standard errors: square roots of the inverse Hessian's diagonal (the last step's: the optimum's, once converged)
  const se = new Float64Array(F);
  use.forEach((c, j) => {
    const e = new Float64Array(P);
    e[j] = 1;
    se[c] = Math.sqrt(Math.max(solve(hessian.map((r) => r.slice()), e)[j], 0));
  });
  return { coef, intercept: w[P - 1], logLoss: loss, iterations, se };
}

/**
 * Fits the model on labelled training data scored against `peers` (the
 * training peers). `settings` supplies T, C, the misclassification threshold
 * and anything not fitted.
 */
export async function trainModel(data: TrainingData, peers: PeerTables, settingsInput: RulesetSettingsInput = {}, options: TrainOptions = {}): Promise<TrainedModel> {
  const dimNames = (options.dimensions ?? DEFAULT_DIMENSIONS).map((d) => dimensionName(parseDimension(d)));
  if (new Set(dimNames).size !== dimNames.length) bad('dimensions', 'distinct dimensions', dimNames);
  const strengthOption = options.strength ?? DEFAULT_STRENGTH;
  if (strengthOption !== 'auto' && !(typeof strengthOption === 'number' && strengthOption > 0)) bad('strength', "a number > 0 or 'auto'", strengthOption);
  const traderMin = options.traderStrength ?? DEFAULT_TRADER_STRENGTH;
  if (!(typeof traderMin === 'number' && traderMin >= 0 && Number.isFinite(traderMin))) bad('traderStrength', 'a number >= 0', traderMin);
  const trader = dimNames.map(isTraderDimension);
  /** The strength of dimension d's rates when the others take m. */
  const strengthAt = (d: number, m: number) => (trader[d] ? Math.max(m, traderMin) : m);
  const halfLife = options.halfLifeDays ?? 365;
  if (!(halfLife >= 0)) bad('halfLifeDays', 'a number >= 0', halfLife);
  const K = options.folds ?? 5;
  if (!Number.isInteger(K) || K < 2) bad('folds', 'an integer >= 2', K);
  const l2 = options.l2 ?? 1e-3;
  if (!(l2 > 0)) bad('l2', 'a number > 0', l2);
  const minZ = options.minZ ?? DEFAULT_MIN_Z;
  if (!(typeof minZ === 'number' && minZ >= 0 && Number.isFinite(minZ))) bad('minZ', 'a number >= 0', minZ);
  const redAt = options.redAt ?? 0.5, yellowAt = options.yellowAt ?? 0.25;
  // each named for what is wrong with it (--yellow-at 0.6 alone is too high for the default --red-at 0.5)
  if (!(redAt > 0 && redAt < 1)) bad('redAt', 'a probability in (0, 1) (--red-at)', redAt);
  if (!(yellowAt > 0 && yellowAt <= redAt)) bad('yellowAt', `a probability in (0, ${redAt}]: at most redAt (--yellow-at at most --red-at, default 0.5)`, yellowAt);
  const settings: RulesetSettings = resolveSettings(settingsInput);

  // ---- rows in training order --------------------------------------------------
  const rowsOf = data.batches.map((b, k) => {
    const keep = data.keep?.[k];
    const idx: number[] = [];
    for (let i = 0; i < b.size; i++) if (!keep || keep[i]) idx.push(i);
    return idx;
  });
  const N = rowsOf.reduce((s, r) => s + r.length, 0);
  if (N < 10) bad('train', 'at least 10 labelled training declarations', N);
  const y = new Uint8Array(N);
  const day = new Int32Array(N);
  const revenue = new Float64Array(N);
  const defaultRevenue = compileExpression(DEFAULT_REVENUE, REVENUE_FIELDS);
  let at = 0;
  data.batches.forEach((b, k) => {
    const given = data.revenue?.[k];
    for (const i of rowsOf[k]) {
      y[at] = data.labels[k][i];
      day[at] = b.date[i];
      // given, or DEFAULT_REVENUE (customsValue × taxRate / 100); 0 where missing (NaN) or negative
      const r = given ? given[i] : defaultRevenue.evaluate((j) => b.numeric[REVENUE_FIELDS[j]][i]);
      revenue[at] = r >= 0 && Number.isFinite(r) ? r : 0;
      at++;
    }
  });
  // ages from the newest declaration dated no later than the training day (a later one weighs 1)
  const asOf = options.asOf ?? Date.now();
  if (!Number.isFinite(asOf)) bad('asOf', 'a time in ms since the epoch', asOf);
  const asOfDay = Math.floor(asOf / 86_400_000);
  let lastDay = -Infinity, firstDay = Infinity, ageFrom = -Infinity;
  for (let i = 0; i < N; i++) {
    const d = day[i];
    if (d > lastDay) lastDay = d;
    if (d < firstDay) firstDay = d;
    if (d <= asOfDay && d > ageFrom) ageFrom = d;
  }
  if (ageFrom === -Infinity) ageFrom = asOfDay; // every declaration after the training day: each weighs 1
  const recent = new Float64Array(N);
  for (let i = 0; i < N; i++) recent[i] = halfLife > 0 ? 0.5 ** (Math.max(0, ageFrom - day[i]) / halfLife) : 1;
  const ones = new Float64Array(N).fill(1);
  const positives = y.reduce((s, v) => s + v, 0);
  if (positives === 0 || positives === N) bad('label', 'both compliant and non-compliant training declarations', positives);
  const prior = positives / N;
  // folds: interleaved, so that each fold spans the whole period
  const fold = new Uint8Array(N);
  for (let i = 0; i < N; i++) fold[i] = i % K;

  // ---- historical tables, and out-of-fold lifts ------------------------------------
  const D = dimNames.length;
  const F0 = 2 * NF + 1; // deviation components, misclassification
  const F = F0 + D;
  const X = new Float64Array(N * F);
  const l0 = logit(prior);
  const dimensions: HistoryTables['dimensions'] = [];
  /** Per dimension: each row's value (-1: none), and the weighted counts per value, whole and per fold. */
  const counts: { rowKey: Int32Array; n: Float64Array; pos: Float64Array; nf: Float64Array; pf: Float64Array }[] = [];
  /** The dimensions' columns of X: each row's out-of-fold lift at prior strength m (strengthAt for the trader dimensions). */
  const fillLifts = (strength: number) => counts.forEach(({ rowKey, n, pos, nf, pf }, d) => {
    const m = strengthAt(d, strength);
    for (let i = 0; i < N; i++) {
      const g = rowKey[i];
      if (g < 0) { X[i * F + F0 + d] = 0; continue; }
      const nn = n[g] - nf[g * K + fold[i]], pp = pos[g] - pf[g * K + fold[i]];
      X[i * F + F0 + d] = logit((pp + m * prior) / (nn + m)) - l0;
    }
  });
  dimNames.forEach((name, d) => {
    const parts = parseDimension(name);
    const w = isRatingDimension(name) ? recent : ones;
    const keyIndex = new Map<string, number>();
    const rowKey = new Int32Array(N);
    let r = 0;
    data.batches.forEach((b, k) => {
      const { row, keys } = batchKeys(b, parts);
      const global = keys.map((key) => { let g = keyIndex.get(key); if (g === undefined) { g = keyIndex.size; keyIndex.set(key, g); } return g; });
      for (const i of rowsOf[k]) rowKey[r++] = row[i] < 0 ? -1 : global[row[i]];
    });
    const V = keyIndex.size;
    const n = new Float64Array(V), pos = new Float64Array(V), rev = new Float64Array(V);
    const nf = new Float64Array(V * K), pf = new Float64Array(V * K);
    for (let i = 0; i < N; i++) {
      const g = rowKey[i];
      if (g < 0) continue;
      n[g] += w[i]; pos[g] += w[i] * y[i];
      if (y[i]) rev[g] += w[i] * revenue[i];
      nf[g * K + fold[i]] += w[i]; pf[g * K + fold[i]] += w[i] * y[i];
    }
    counts.push({ rowKey, n, pos, nf, pf });
    const round = (x: number) => Math.round(x * 1e6) / 1e6;
    dimensions.push({ name, weight: 1, keys: [...keyIndex.keys()], n: Array.from(n, round), positives: Array.from(pos, round), revenue: Array.from(rev, (x) => Math.round(x * 100) / 100) });
  });

  // ---- deviation components and misclassification: score the training rows -----
  const engine = createEngine({ ruleset: createRuleset({ peers, settings: { ...settingsInput, randomSelection: { rate: 0 } } }), threads: options.threads ?? 0 });
  let hasText = false;
  try {
    at = 0;
    for (let k = 0; k < data.batches.length; k++) {
      const b = data.batches[k];
      const result = await engine.scoreBatch(b); // with threads > 0 the batch is transferred: nothing reads it after
      for (const i of rowsOf[k]) {
        for (let f = 0; f < NF; f++) {
          const z = result.z[i * NF + f];
          if (Number.isNaN(z)) continue;
          X[at * F + f] = Math.min(Math.max(-z - settings.zThreshold, 0), settings.zCap);
          X[at * F + NF + f] = Math.min(Math.max(z - settings.zThreshold, 0), settings.zCap);
        }
        const sig = result.text?.signals[result.text.row[i]];
        if (data.misclassified ? data.misclassified[k][i] === 1 : sig?.misclassified) { X[at * F + 2 * NF] = 1; hasText = true; }
        at++;
      }
    }
  } finally {
    await engine.close();
  }

  // ---- fit; drop the features with negative weights, then the least significant, one at a time; refit ----
  const names = [...FEATURES.map((f) => `under.${f}`), ...FEATURES.map((f) => `over.${f}`), 'misclassification', ...dimNames.map((d) => `history.${d}`)];
  const fitAt = (m: number) => {
    fillLifts(m);
    let use = Array.from({ length: F }, (_, j) => j).filter((j) => j !== 2 * NF || hasText);
    let fit = logisticRegression(X, y, F, use, l2);
    // each round drops at least one feature: at most F rounds
    for (;;) {
      const negative = use.filter((j) => fit.coef[j] < 0);
      let drop = negative;
      if (negative.length === 0) {
        let least = -1, leastZ = minZ;
        for (const j of use) {
          const z = fit.coef[j] / fit.se[j];
          if (z < leastZ) { least = j; leastZ = z; }
        }
        if (least < 0) break;
        drop = [least];
      }
      use = use.filter((j) => !drop.includes(j));
      fit = logisticRegression(X, y, F, use, l2, undefined, fit);
    }
    return fit;
  };
  let strength: number;
  let fit: ReturnType<typeof logisticRegression>;
  let tried: { strength: number; logLoss: number }[] | undefined;
  if (strengthOption === 'auto') {
    tried = [];
    let best: { strength: number; fit: typeof fit } | undefined;
    for (const m of STRENGTH_GRID) {
      const f = fitAt(m);
      tried.push({ strength: m, logLoss: f.logLoss });
      if (!best || f.logLoss <= best.fit.logLoss) best = { strength: m, fit: f };
    }
    strength = best!.strength;
    fit = best!.fit;
  } else {
    strength = strengthOption;
    fit = fitAt(strength);
  }
  const c = fit.coef;
  dimensions.forEach((d, k) => { d.weight = c[F0 + k]; });
  const b = fit.intercept;
  // the trader dimensions' strength (strengthAt), recorded where it differs from the others'
  const traderM = Math.max(strength, traderMin);
  const traderStrength = trader.includes(true) && traderM !== strength ? { traderStrength: traderM } : {};
  return {
    format: 'selectivity-model',
    formatVersion: 1,
    settings: {
      weights: { under: Array.from(c.subarray(0, NF)), over: Array.from(c.subarray(NF, 2 * NF)) },
      misclassification: { weight: c[2 * NF] },
      thresholds: { yellow: logit(yellowAt) - b, red: logit(redAt) - b },
    },
    history: { prior, strength, ...traderStrength, halfLifeDays: halfLife, aeoReduction: options.aeoReduction ?? Math.LN2, revenuePrior: Math.round((revenue.reduce((s, r, i) => s + (y[i] ? r : 0), 0) / N) * 100) / 100, dimensions },
    intercept: b,
    coefficients: Object.fromEntries(names.map((n, j) => [n, c[j]])),
    training: {
      rows: N, positives, prior, logLoss: fit.logLoss, firstDay, lastDay, iterations: fit.iterations, ...(tried ? { strengths: tried } : {}),
      minZ,
      z: Object.fromEntries(names.flatMap((n, j) => (c[j] !== 0 ? [[n, Math.round((c[j] / fit.se[j]) * 100) / 100]] : []))),
    },
  };
}

/** Checks a model file's shape; returns the parts a ruleset takes. */
export function modelRuleset(raw: unknown): { settings: TrainedModel['settings']; history: HistoryTables } {
  const m = raw as Partial<TrainedModel> | null;
  if (!m || typeof m !== 'object' || m.format !== 'selectivity-model' || m.formatVersion !== 1 || !m.settings || !m.history) {
    throw errors.SEL_ERR_RULESET_INVALID('not a model file of this format (selectivity train --out)', { field: 'model', expected: 'format "selectivity-model", formatVersion 1, settings and history', got: m && typeof m === 'object' ? (m as { format?: unknown }).format : typeof m });
  }
  return { settings: m.settings, history: m.history };
}

/** A candidate risk profile proposed from the history, with its evidence. Never active until an analyst imports it. */
export interface CandidateProfile {
  profile: { id: string; title: string; description: string; riskArea: 'revenue'; weight: number; conditions: Record<string, unknown> };
  /** revenue: of the value's non-compliant declarations; revenueAtRisk: per declaration with the value, smoothed (both absent when the model holds no revenue). */
  /**
   * support and nonCompliant are the table's counts: for a dimension of the
   * importer or declarant (recencyWeighted), recency-weighted sums (a
   * declaration halfLifeDays older counts half), not declarations.
   */
  evidence: { dimension: string; value: string; support: number; nonCompliant: number; hitRate: number; lift: number; recencyWeighted?: boolean; revenue?: number; revenueAtRisk?: number };
}

/**
 * The strongest combinations of the tables (pairs first, then single
 * fields), as candidate profiles: values seen at least `minSupport` times
 * whose hit rate is at least `minLift` × the overall rate, ranked by the
 * lower bound of their hit rate (Wilson, 95 %), with support, hit rate and
 * lift as evidence. Weight: the model's contribution of the value, rounded.
 */
export function candidateProfiles(model: TrainedModel, options: { top?: number; minSupport?: number; minLift?: number } = {}): CandidateProfile[] {
  const top = options.top ?? 20, minSupport = options.minSupport ?? 20, minLift = options.minLift ?? 2;
  const t = model.history;
  const found: (CandidateProfile & { bound: number })[] = [];
  for (const d of t.dimensions) {
    const parts = parseDimension(d.name);
    const lift = lifts(t, d);
    // the trader dimensions' counts are recency-weighted (as training builds them): said so, not called declarations
    const weighted = t.halfLifeDays > 0 && isRatingDimension(d.name);
    const counted = (k: number, n: number) => (weighted
      ? `${k.toFixed(1)} of ${n.toFixed(1)} recency-weighted declarations (one ${t.halfLifeDays} days older counts half)`
      : `${Math.round(k)} of ${Math.round(n)} declarations`);
    d.keys.forEach((key, i) => {
      const n = d.n[i], k = d.positives[i];
      if (n < minSupport) return;
      const rate = k / n;
      if (rate < minLift * t.prior) return;
      const z = 1.96, den = 1 + (z * z) / n;
      const bound = (rate + (z * z) / (2 * n) - z * Math.sqrt((rate * (1 - rate)) / n + (z * z) / (4 * n * n))) / den;
      const values = parts.length === 1 ? [key] : key.split('|');
      const conditions: Record<string, unknown> = {};
      const numeric: { field: string; op: string; value: number }[] = [];
      parts.forEach((p, j) => {
        if (p.field === 'hs') conditions.hs = [values[j]];
        else if (p.field === 'taxRate') numeric.push({ field: 'taxRate', op: '>=', value: Number(values[j]) }, { field: 'taxRate', op: '<=', value: Number(values[j]) });
        else conditions[p.field] = [values[j]];
      });
      if (numeric.length) conditions.numeric = numeric;
      const ratio = rate / t.prior;
      const atRisk = revenueAtRisk(t, d, i);
      const money = atRisk === undefined ? '' : ` Revenue of the non-compliant: ${Math.round(d.revenue![i])}; at risk about ${Math.round(atRisk)} per declaration (${Math.round(t.revenuePrior!)} overall).`;
      const id = `CAND-${d.name.replace(/×/g, '-')}-${values.join('-')}`.replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, 64);
      found.push({
        bound,
        profile: {
          id, title: `${d.name} = ${values.join(' × ')}`,
          description: `Proposed from history: ${counted(k, n)} non-compliant (${(100 * rate).toFixed(1)} %, ${ratio.toFixed(1)}× the overall ${(100 * t.prior).toFixed(1)} %).${money}`,
          riskArea: 'revenue', weight: Math.round(Math.max(0.1, d.weight * lift[i]) * 100) / 100, conditions,
        },
        evidence: { dimension: d.name, value: key, support: n, nonCompliant: k, hitRate: rate, lift: ratio, ...(weighted ? { recencyWeighted: true } : {}), ...(atRisk === undefined ? {} : { revenue: d.revenue![i], revenueAtRisk: Math.round(atRisk * 100) / 100 }) },
      });
    });
  }
  found.sort((a, b) => b.bound - a.bound || b.evidence.support - a.evidence.support);
  const seen = new Set<string>();
  const out: CandidateProfile[] = [];
  for (const f of found) {
    if (seen.has(f.profile.id)) continue;
    seen.add(f.profile.id);
    out.push({ profile: f.profile, evidence: f.evidence });
    if (out.length >= top) break;
  }
  return out;
}
