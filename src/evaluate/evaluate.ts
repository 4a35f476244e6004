/**
 * Evaluation on labelled data: build everything the engine learns (peer
 * statistics) from training files only, score the test file, and measure
 * how well the ranking by score finds the labelled frauds — precision,
 * recall and revenue captured at the top k % — beside random selection.
 *
 * With a single file instead of train/test files, the file is split by
 * date: the earliest `split` share of declarations (by acceptance date)
 * trains, the rest tests. The split date itself goes to the test side.
 */
import { statSync } from 'node:fs';
import { errors } from '../errors.js';
import { createEngine } from '../engine.js';
import { resolveColumns } from '../model/columns.js';
import { formatIsoDate, parseIsoDate } from '../model/schema.js';
import { readDeclarations, type ReadChunk, type ReadOptions } from '../model/readers.js';
import { DEFAULT_LEVELS, PeerTableBuilder } from '../peers/peer-groups.js';
import { snapshotDocument } from '../peers/peer-store.js';
import type { Profile } from '../profiles/profile.js';
import { createRuleset, type RulesetSettingsInput } from '../ruleset/ruleset.js';
import { compileExpression, DEFAULT_REVENUE, REVENUE_FIELDS, type CompiledExpression } from './expression.js';
import { batchViews, type ColumnarBatch } from '../model/columnar.js';
import { trainModel, type TrainedModel, type TrainOptions, type TrainingData } from '../learn/train.js';
import { parseLabel, topKMetrics, type Cut } from './metrics.js';

export const DEFAULT_FRACTIONS = [0.01, 0.02, 0.05, 0.1] as const;

export interface EvaluateOptions {
  /** Training files (peer statistics are built from these only). */
  train?: string[];
  /** The test file scored and measured. */
  test?: string;
  /** Instead of train/test: one file split by date. */
  file?: string;
  /** Share of the single file's declarations (earliest dates) used to train (default 0.8). */
  split?: number;
  /** Label column (a pass-through column of the mapping). */
  label: string;
  /** Label values that mean fraud (default: anything but '', 0, false, no). */
  positives?: string[];
  /** Revenue of a declaration: an expression over customsValue, netMass, quantity, taxRate and pass-through columns. */
  revenue?: string;
  /** Column mapping (default: the "default" preset, which passes every extra column through). */
  columns?: ReadOptions['columns'];
  profiles?: Profile[];
  levels?: readonly string[];
  settings?: RulesetSettingsInput;
  /** Top shares reported (default 1, 2, 5, 10 %). */
  fractions?: readonly number[];
  threads?: number;
  batchSize?: number;
  /**
   * Learn from the training labels (src/learn/train.ts): historical tables
   * and the compliance model's weights, as \`selectivity train\` does; the test
   * set is then scored with the learnt ruleset, and also with the deviation
   * score alone (\`baseline\`).
   */
  learn?: TrainOptions | boolean;
  onProgress?: (phase: 'split' | 'train' | 'learn' | 'test', bytesRead: number, totalBytes: number, rows: number) => void;
}

export interface EvaluationReport {
  label: string;
  positiveValues: string[] | null;
  revenue: string;
  train: { files: string[]; rows: number; invalid: number; firstDate: string | null; lastDate: string | null };
  test: {
    file: string; rows: number; scored: number; invalid: number; firstDate: string | null; lastDate: string | null;
    /**
     * What the test set shares with the training rows, a leak that makes
     * the figures optimistic: declarations whose id is also among the
     * training rows (null when the training rows held more than
     * OVERLAP_ID_LIMIT ids: not checked), and (--train/--test) those dated
     * on or before the last training date.
     */
    overlap: { sameIds: number | null; notAfterTraining: number };
  };
  /** Single-file mode: the first test date. */
  splitDate: string | null;
  peers: { version: string; groups: Record<string, number> };
  rulesetVersion: string;
  /** Test declarations measured, frauds among them and their share. */
  n: number;
  positives: number;
  prevalence: number;
  /** Revenue of all frauds in the test set. */
  fraudRevenue: number;
  /** Ranking by the engine's score (ties shared pro rata). */
  cuts: Cut[];
  /** Random selection: expected values. */
  random: Cut[];
  /** With learn: the ranking by the deviation score alone (peers from training, the settings given, no misclassification signal: until 2026-12-07 it had the default one). */
  baseline?: Cut[];
  /** With learn: the fitted model (coefficients, training summary; tables summarised). */
  model?: Omit<TrainedModel, 'history'> & { strength: number; traderStrength?: number; dimensions: { name: string; weight: number; values: number }[] };
  seconds: number;
}

function bad(field: string, message: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_OPTION_INVALID(message, { field, expected, got });
}

function fileSize(path: string, field: string): number {
  try {
    return statSync(path).size;
  } catch {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}`, { field, expected: 'a readable file', got: path });
  }
}

class Growable {
  scores = new Float64Array(1 << 16);
  labels = new Uint8Array(1 << 16);
  revenue = new Float64Array(1 << 16);
  n = 0;
  reserve(extra: number): void {
    if (this.n + extra <= this.scores.length) return;
    let cap = this.scores.length;
    while (cap < this.n + extra) cap *= 2;
    const s = new Float64Array(cap); s.set(this.scores.subarray(0, this.n)); this.scores = s;
    const l = new Uint8Array(cap); l.set(this.labels.subarray(0, this.n)); this.labels = l;
    const r = new Float64Array(cap); r.set(this.revenue.subarray(0, this.n)); this.revenue = r;
  }
}

const dateText = (d: number): string | null => (Number.isFinite(d) ? formatIsoDate(d) : null);

/** A reader of declaration files whose mapping passes the label column through (NDJSON cannot expand "*"). */
export function labelledReader(columnsOption: ReadOptions['columns'] | undefined, label: string, batchSize?: number): (path: string) => AsyncIterable<ReadChunk> {
  const mapping = resolveColumns(columnsOption ?? 'default');
  const named = mapping.passThrough.filter((p) => p !== '*' && p !== label);
  const columns = { ...mapping, passThrough: mapping.passThrough.includes('*') ? ['*', label, ...named] : [label, ...named] };
  return (path) => readDeclarations(path, { columns, batchSize });
}

/** What the training files gave: peer statistics, the model (with learn) and a summary. */
/** Training ids kept to check the test set against (EvaluationReport.test.overlap): about 100 MB of strings at most. */
export const OVERLAP_ID_LIMIT = 2_000_000;

export interface TrainedFromFiles {
  snapshot: ReturnType<PeerTableBuilder['snapshot']>;
  tables: ReturnType<PeerTableBuilder['finish']>;
  model?: TrainedModel;
  summary: EvaluationReport['train'];
}

/**
 * The training side of evaluate and of `selectivity train`: one pass over
 * the training files builds the peer statistics; with `learn`, the rows
 * and their labels are kept and the compliance model is fitted on them.
 */
export async function trainFromFiles(files: string[], o: {
  read: (path: string) => AsyncIterable<ReadChunk>;
  label: string;
  positives?: string[];
  levels?: readonly string[];
  settings?: RulesetSettingsInput;
  learn?: TrainOptions | boolean;
  threads?: number;
  /** Rows of a chunk that train (single-file split); default every row. */
  keep?: (chunk: ReadChunk) => ((i: number) => boolean) | undefined;
  /** Filled with the training rows' ids, up to OVERLAP_ID_LIMIT of them (past it the set is cleared and `over` set). */
  ids?: { set: Set<string>; over: boolean };
  field?: string;
  onProgress?: EvaluateOptions['onProgress'];
}): Promise<TrainedFromFiles> {
  const builder = new PeerTableBuilder({ levels: o.levels ?? DEFAULT_LEVELS });
  const learning: TrainingData | undefined = o.learn ? { batches: [], labels: [], keep: [] } : undefined;
  const train = { files, rows: 0, invalid: 0, firstDate: Infinity, lastDate: -Infinity };
  for (const f of files) {
    const total = fileSize(f, o.field ?? 'train');
    let used = 0, lastBad = -1;
    for await (const chunk of o.read(f)) {
      const keep = o.keep?.(chunk);
      used += builder.add(chunk.batch, keep);
      if (learning && chunk.batch.size > 0) {
        const values = chunk.passThrough[o.label];
        if (!values) bad('label', `no column "${o.label}" passed through from ${f}`, `one of the pass-through columns: ${Object.keys(chunk.passThrough).join(', ') || '(none)'}`, o.label);
        const b = chunk.batch;
        learning.batches.push(b);
        learning.labels.push(Uint8Array.from({ length: b.size }, (_, i) => parseLabel(values[i], o.positives)));
        learning.keep!.push(keep ? Uint8Array.from({ length: b.size }, (_, i) => (keep(i) ? 1 : 0)) : undefined);
      }
      for (let i = 0; i < chunk.batch.size; i++) {
        if (keep && !keep(i)) continue;
        if (o.ids && !o.ids.over) {
          o.ids.set.add(chunk.ids[i]);
          if (o.ids.set.size > OVERLAP_ID_LIMIT) { o.ids.set.clear(); o.ids.over = true; }
        }
        const d = chunk.batch.date[i];
        if (d < train.firstDate) train.firstDate = d;
        if (d > train.lastDate) train.lastDate = d;
      }
      for (const e of chunk.errors) if (e.line !== lastBad) { train.invalid++; lastBad = e.line; }
      o.onProgress?.('train', chunk.bytesRead, total, chunk.rowsRead);
    }
    builder.addSource(f, used);
    train.rows += used;
  }
  if (train.rows === 0) bad(o.field ?? 'train', 'no valid training declarations', 'training files with valid declarations');
  const snapshot = builder.snapshot();
  snapshotDocument(snapshot); // sets the content version, so that reports name the statistics they used
  const tables = builder.finish();
  let model: TrainedModel | undefined;
  if (learning) {
    o.onProgress?.('learn', 0, 1, train.rows);
    model = await trainModel(learning, tables, o.settings, { threads: o.threads, ...(typeof o.learn === 'object' ? o.learn : {}) });
    o.onProgress?.('learn', 1, 1, train.rows);
  }
  return { snapshot, tables, model, summary: { ...train, firstDate: dateText(train.firstDate), lastDate: dateText(train.lastDate) } };
}

export async function evaluate(options: EvaluateOptions): Promise<EvaluationReport> {
  const t0 = performance.now();
  const o = options;
  if (typeof o.label !== 'string' || o.label === '') bad('label', 'evaluate needs a label column (--label, or label in the request)', 'a pass-through column holding the fraud label', o.label);
  const single = o.file !== undefined;
  if (single && (o.train?.length || o.test)) bad('file', '--file cannot be combined with --train/--test', 'either --file, or --train and --test');
  if (!single && (!o.train || o.train.length === 0 || !o.test)) bad('train', 'evaluate needs --train <file> (repeatable) and --test <file>, or a single --file', '--train and --test, or --file', { train: o.train, test: o.test });
  const split = o.split ?? 0.8;
  if (!(typeof split === 'number' && split > 0 && split < 1)) bad('split', 'split must be a share in (0, 1)', 'a share such as 0.8', split);
  const fractions = o.fractions ?? DEFAULT_FRACTIONS;
  // checked here for the command (--top in %, converted) and POST /v1/evaluations (top as fractions) alike
  if (!Array.isArray(fractions) || fractions.length < 1 || fractions.length > 20 || !fractions.every((f) => typeof f === 'number' && f > 0 && f <= 1)) {
    bad('top', 'top must list 1 to 20 shares of the test set in (0, 1] (the command takes them in %)', '1 to 20 numbers in (0, 1]', fractions);
  }
  // the label must pass through whatever the mapping says (NDJSON cannot expand "*")
  const read = labelledReader(o.columns, o.label, o.batchSize);
  const revenueText = o.revenue ?? DEFAULT_REVENUE;

  // ---- single file: find the split date -------------------------------------
  let splitDay = NaN;
  if (single) {
    const total = fileSize(o.file!, 'file');
    let dates = new Int32Array(1 << 16);
    let n = 0;
    for await (const chunk of read(o.file!)) {
      const d = chunk.batch.date;
      if (n + chunk.batch.size > dates.length) { const next = new Int32Array(Math.max(dates.length * 2, n + chunk.batch.size)); next.set(dates.subarray(0, n)); dates = next; }
      dates.set(d.subarray(0, chunk.batch.size), n);
      n += chunk.batch.size;
      o.onProgress?.('split', chunk.bytesRead, total, chunk.rowsRead);
    }
    const sorted = dates.subarray(0, n).sort();
    if (n < 2) bad('file', `${o.file} has ${n} valid declarations: too few to split`, 'at least 2 valid declarations');
    splitDay = sorted[Math.min(n - 1, Math.floor(split * n))];
    if (splitDay === sorted[0]) bad('split', `every declaration before the ${split} quantile has the same date (${formatIsoDate(splitDay)}): nothing would train`, 'a file spanning several dates, or another --split', split);
  }
  const trainFiles = single ? [o.file!] : o.train!;
  const testFile = single ? o.file! : o.test!;
  const keepTrain = (chunk: ReadChunk) => (single ? (i: number) => chunk.batch.date[i] < splitDay : undefined);

  // ---- train: peer statistics (and, with learn, the model) from the training rows only
  const trainIds = { set: new Set<string>(), over: false };
  const { snapshot, tables, model, summary: train } = await trainFromFiles(trainFiles, {
    read, label: o.label, positives: o.positives, levels: o.levels, settings: o.settings, learn: o.learn, threads: o.threads,
    keep: keepTrain, field: single ? 'file' : 'train', onProgress: o.onProgress, ids: trainIds,
  });
  const lastTrainDay = parseIsoDate(train.lastDate!);
  const ruleset = model
    ? createRuleset({ peers: tables, profiles: o.profiles ?? [], settings: { ...o.settings, ...model.settings }, history: model.history })
    : createRuleset({ peers: tables, profiles: o.profiles ?? [], settings: o.settings });
  // the deviation score alone: the text's misclassification signal (on by default) left out
  const baselineEngine = model ? createEngine({ ruleset: createRuleset({ peers: tables, settings: { ...o.settings, misclassification: { ...o.settings?.misclassification, weight: 0 } } }), threads: o.threads }) : undefined;
  const baselineScores = new Growable();

  // ---- test: score, and keep score, label and revenue per declaration ---------
  const engine = createEngine({ ruleset, threads: o.threads });
  const out = new Growable();
  const test = { file: testFile, rows: 0, scored: 0, invalid: 0, firstDate: Infinity, lastDate: -Infinity };
  const overlap = { sameIds: trainIds.over ? null : 0, notAfterTraining: 0 } as { sameIds: number | null; notAfterTraining: number };
  let expr: CompiledExpression | undefined;
  let labelValues: string[] = [];
  const pending: { result: ReturnType<typeof engine.scoreBatch>; baseline?: ReturnType<typeof engine.scoreBatch>; at: number; rows: Int32Array | null }[] = [];
  const collect = async (p: (typeof pending)[number]) => {
    const r = await p.result;
    if (p.rows) for (let k = 0; k < p.rows.length; k++) out.scores[p.at + k] = r.score[p.rows[k]];
    else out.scores.set(r.score, p.at);
    if (p.baseline) {
      const q = await p.baseline;
      if (p.rows) for (let k = 0; k < p.rows.length; k++) baselineScores.scores[p.at + k] = q.score[p.rows[k]];
      else baselineScores.scores.set(q.score, p.at);
    }
  };
  try {
    const total = fileSize(testFile, single ? 'file' : 'test');
    let lastBad = -1;
    const testSide = (chunk: ReadChunk): Int32Array | null => {
      if (!single) return null;
      const idx: number[] = [];
      for (let i = 0; i < chunk.batch.size; i++) if (chunk.batch.date[i] >= splitDay) idx.push(i);
      return Int32Array.from(idx);
    };
    for await (const chunk of read(testFile)) {
      // one file split by date: its invalid records (no date to place them by) are the training side's count
      if (!single) {
        test.rows = chunk.rowsRead;
        for (const e of chunk.errors) if (e.line !== lastBad) { test.invalid++; lastBad = e.line; }
      }
      const b = chunk.batch;
      if (b.size === 0) continue;
      if (!expr) {
        const cols = Object.keys(chunk.passThrough);
        if (!(o.label in chunk.passThrough)) bad('label', `no column "${o.label}" passed through from ${testFile}`, `one of the pass-through columns: ${cols.join(', ') || '(none: add it to the mapping\'s passThrough)'}`, o.label);
        expr = compileExpression(revenueText, [...REVENUE_FIELDS, ...cols]);
      }
      labelValues = chunk.passThrough[o.label];
      const rows = testSide(chunk);
      const m = rows ? rows.length : b.size;
      if (m === 0) continue;
      out.reserve(m);
      const cols = Object.keys(chunk.passThrough);
      const vals = new Float64Array(REVENUE_FIELDS.length + cols.length);
      for (let k = 0; k < m; k++) {
        const i = rows ? rows[k] : k;
        const at = out.n + k;
        out.labels[at] = parseLabel(labelValues[i], o.positives);
        for (const j of expr.indices) {
          vals[j] = j < REVENUE_FIELDS.length ? b.numeric[REVENUE_FIELDS[j]][i] : Number(chunk.passThrough[cols[j - REVENUE_FIELDS.length]][i]);
        }
        const v = expr.evaluate((j) => vals[j]);
        out.revenue[at] = Number.isFinite(v) ? v : 0;
        const d = b.date[i];
        if (d < test.firstDate) test.firstDate = d;
        if (d > test.lastDate) test.lastDate = d;
        if (overlap.sameIds !== null && trainIds.set.has(chunk.ids[i])) overlap.sameIds++;
        if (!single && d <= lastTrainDay) overlap.notAfterTraining++;
      }
      baselineScores.reserve(out.n + m - baselineScores.n);
      baselineScores.n = out.n + m;
      // the engine takes the batch's buffer (transfer): the baseline scores a copy
      const copy: ColumnarBatch | undefined = baselineEngine ? batchViews(b.buffer.slice(0), b.capacity, b.size, b.dicts) : undefined;
      pending.push({ result: engine.scoreBatch(b), baseline: copy ? baselineEngine!.scoreBatch(copy) : undefined, at: out.n, rows });
      out.n += m;
      test.scored += m;
      if (single) test.rows += m;
      while (pending.length > engine.options.threads * 2 + 1) await collect(pending.shift()!);
      o.onProgress?.('test', chunk.bytesRead, total, chunk.rowsRead);
    }
    while (pending.length > 0) await collect(pending.shift()!);
  } finally {
    await Promise.allSettled(pending.flatMap((p) => [p.result, p.baseline]));
    await engine.close();
    await baselineEngine?.close();
  }
  if (out.n === 0) bad(single ? 'file' : 'test', 'no valid test declarations', 'a test set with valid declarations');

  const m = topKMetrics(out.scores.subarray(0, out.n), out.labels.subarray(0, out.n), out.revenue.subarray(0, out.n), fractions);
  const extra: Pick<EvaluationReport, 'baseline' | 'model'> = {};
  if (model) {
    extra.baseline = topKMetrics(baselineScores.scores.subarray(0, out.n), out.labels.subarray(0, out.n), out.revenue.subarray(0, out.n), fractions).cuts;
    const { history, ...rest } = model;
    extra.model = { ...rest, strength: history.strength, ...(history.traderStrength !== undefined ? { traderStrength: history.traderStrength } : {}), dimensions: history.dimensions.map((d) => ({ name: d.name, weight: d.weight, values: d.keys.length })) };
  }
  return {
    ...extra,
    label: o.label,
    positiveValues: o.positives ?? null,
    revenue: revenueText,
    train,
    test: { ...test, firstDate: dateText(test.firstDate), lastDate: dateText(test.lastDate), overlap },
    splitDate: single ? formatIsoDate(splitDay) : null,
    peers: { version: snapshot.info.version, groups: Object.fromEntries(tables.levels.map((l, i) => [l.name, tables.groups[i].size])) },
    rulesetVersion: engine.rulesetVersion,
    n: m.n,
    positives: m.positives,
    prevalence: m.n > 0 ? m.positives / m.n : 0,
    fraudRevenue: m.totalRevenue,
    cuts: m.cuts,
    random: m.random,
    seconds: (performance.now() - t0) / 1000,
  };
}
