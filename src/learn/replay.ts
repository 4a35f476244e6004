/**
 * Replay of labelled history in date order, as an administration lives it:
 * each month is scored with the model learnt from the feedback known so far,
 * the top of the ranking (the inspection rate) is inspected (declarations
 * of equal score in an order of their ids), and so is the random control
 * group; only their results become known; then the model is refitted and
 * the next month is scored.
 *
 * The first period (the warm-up) is history whose results are all known
 * (an administration starts from its past inspections). Peer statistics use
 * every declaration cleared before the month (no labels needed). Reported
 * per month: the targeted inspections' hit rate, the control group's hit
 * rate — an unbiased estimate of the non-compliance of the traffic that was
 * not targeted — beside the true rate (known here because every row is
 * labelled), and how much feedback the model had.
 */
import { createEngine } from '../engine.js';
import { FLAG_CONTROL } from '../kernel/layout.js';
import { CHANNELS } from '../model/channels.js';
import type { ColumnarBatch } from '../model/columnar.js';
import { formatIsoDate } from '../model/schema.js';
import { DEFAULT_LEVELS, PeerTableBuilder } from '../peers/peer-groups.js';
import { createRuleset, type RulesetSettingsInput } from '../ruleset/ruleset.js';
import { trainModel, type TrainOptions } from './train.js';
import { wilsonInterval } from '../feedback/report.js';

export interface ReplayOptions {
  /** Share of each month's declarations inspected by score (default 0.05). */
  inspectionRate?: number;
  /** Random control group rate (settings.randomSelection.rate; default 0.02). */
  controlRate?: number;
  /** Do the control group's results feed the model? (default true) */
  learnFromControl?: boolean;
  levels?: readonly string[];
  settings?: RulesetSettingsInput;
  learn?: TrainOptions;
  onPeriod?: (p: ReplayPeriod) => void;
}

export interface ReplayPeriod {
  period: string;
  declarations: number;
  /** Labelled results the model was fitted on. */
  knownResults: number;
  inspected: number;
  hits: number;
  /** hits / inspected: the precision of targeting at the inspection rate (null when none was inspected: a month too small for the rate). */
  hitRate: number | null;
  control: number;
  controlHits: number;
  /** controlHits / control: the control group's estimate of the non-compliance of the traffic it is drawn from, green traffic not targeted (null when no control row). */
  controlEstimate: number | null;
  /** Its 95 % Wilson interval (null when no control row): a month's control group is a few dozen declarations. */
  controlInterval: { low: number; high: number } | null;
  /** The true non-compliance of the non-targeted declarations of every channel (known offline). */
  untargetedRate: number;
  /** Non-targeted declarations the control group is drawn from: green ones (the control group's own included). */
  green: number;
  /** Their true non-compliance (known offline): what controlEstimate estimates. */
  greenRate: number;
  /** Non-compliance of the whole month. */
  prevalence: number;
}

export interface ReplayReport {
  warmup: { period: string; declarations: number };
  inspectionRate: number;
  controlRate: number;
  learnFromControl: boolean;
  periods: ReplayPeriod[];
  /** Over all replayed months. */
  total: { declarations: number; inspected: number; hits: number; hitRate: number | null; control: number; controlHits: number; controlEstimate: number | null; controlInterval: { low: number; high: number } | null; untargetedRate: number; green: number; greenRate: number };
}

/**
 * Where a declaration stands among those of its score: a hash of its id
 * (the batch's idHash, mixed again so that the order is not the one the
 * random control group is drawn by).
 */
const tieOrder = (idHash: number): number => Math.imul((idHash ^ (idHash >>> 15)) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
/** The control group's estimate of the non-compliance it samples, with its 95 % Wilson interval (null without a control row). */
const controlFigures = (hits: number, n: number) => ({ controlEstimate: n ? hits / n : null, controlInterval: n ? wilsonInterval(hits, n) : null });
const monthOf = (day: number): string => formatIsoDate(day).slice(0, 7);
/** The kernel's code of the green channel (a result's channel is an index into CHANNELS). */
const GREEN = CHANNELS.indexOf('green');

/** Replays labelled batches (every row labelled) month by month. */
export async function replay(batches: ColumnarBatch[], labels: Uint8Array[], options: ReplayOptions = {}): Promise<ReplayReport> {
  const inspectionRate = options.inspectionRate ?? 0.05;
  const controlRate = options.controlRate ?? 0.02;
  const learnFromControl = options.learnFromControl ?? true;
  const months = [...new Set(batches.flatMap((b) => Array.from(b.date.subarray(0, b.size), monthOf)))].sort();
  const monthIndex = new Map(months.map((m, i) => [m, i]));
  const rowMonth = batches.map((b) => Int16Array.from(b.date.subarray(0, b.size), (d) => monthIndex.get(monthOf(d))!));
  // results known to the administration: the warm-up month's, then inspected rows'
  const known = batches.map((b, k) => Uint8Array.from({ length: b.size }, (_, i) => (rowMonth[k][i] === 0 ? 1 : 0)));
  const periods: ReplayPeriod[] = [];
  for (let p = 1; p < months.length; p++) {
    const builder = new PeerTableBuilder({ levels: options.levels ?? DEFAULT_LEVELS });
    batches.forEach((b, k) => builder.add(b, (i) => rowMonth[k][i] < p));
    const peers = builder.finish();
    const model = await trainModel({ batches, labels, keep: known }, peers, options.settings, { ...options.learn, threads: 0 });
    const knownResults = known.reduce((s, k) => s + k.reduce((a, v) => a + v, 0), 0);
    const settings = { ...options.settings, ...model.settings, randomSelection: { rate: controlRate } };
    const engine = createEngine({ ruleset: createRuleset({ peers, settings, history: model.history }), threads: 0 });
    const rows: { k: number; i: number; score: number; tie: number; control: boolean; green: boolean }[] = [];
    try {
      for (let k = 0; k < batches.length; k++) {
        if (!rowMonth[k].includes(p)) continue;
        const r = await engine.scoreBatch(batches[k]); // threads 0: the batch stays usable
        for (let i = 0; i < batches[k].size; i++) if (rowMonth[k][i] === p) rows.push({ k, i, score: r.score[i], tie: tieOrder(batches[k].idHash[i]), control: (r.flags[i] & FLAG_CONTROL) !== 0, green: r.channel[i] === GREEN || (r.flags[i] & FLAG_CONTROL) !== 0 });
      }
    } finally {
      await engine.close();
    }
    // declarations of equal score are taken in an order of their ids, not of the files: a month
    // where the model knows little scores most declarations alike, and the quota cuts through them
    rows.sort((a, b) => b.score - a.score || a.tie - b.tie);
    const quota = Math.round(inspectionRate * rows.length);
    let hits = 0, control = 0, controlHits = 0, untargeted = 0, untargetedHits = 0, positives = 0, green = 0, greenHits = 0;
    rows.forEach((r, rank) => {
      const y = labels[r.k][r.i];
      positives += y;
      if (rank < quota) {
        hits += y;
        known[r.k][r.i] = 1;
        return;
      }
      untargeted++;
      untargetedHits += y;
      if (r.green) {
        green++;
        greenHits += y;
      }
      if (r.control) {
        control++;
        controlHits += y;
        if (learnFromControl) known[r.k][r.i] = 1;
      }
    });
    const period: ReplayPeriod = {
      period: months[p], declarations: rows.length, knownResults, inspected: quota, hits, hitRate: quota ? hits / quota : null,
      control, controlHits, ...controlFigures(controlHits, control),
      untargetedRate: untargeted ? untargetedHits / untargeted : 0, green, greenRate: green ? greenHits / green : 0, prevalence: rows.length ? positives / rows.length : 0,
    };
    periods.push(period);
    options.onPeriod?.(period);
  }
  const sum = (f: (p: ReplayPeriod) => number) => periods.reduce((s, p) => s + f(p), 0);
  const inspected = sum((p) => p.inspected), hits = sum((p) => p.hits), control = sum((p) => p.control), controlHits = sum((p) => p.controlHits);
  const untargeted = sum((p) => p.declarations - p.inspected);
  return {
    warmup: { period: months[0], declarations: rowMonth.reduce((s, m) => s + m.filter((x) => x === 0).length, 0) },
    inspectionRate, controlRate, learnFromControl, periods,
    total: {
      declarations: sum((p) => p.declarations), inspected, hits, hitRate: inspected ? hits / inspected : null, control, controlHits,
      ...controlFigures(controlHits, control),
      untargetedRate: untargeted ? sum((p) => p.untargetedRate * (p.declarations - p.inspected)) / untargeted : 0,
      green: sum((p) => p.green),
      greenRate: sum((p) => p.green) ? sum((p) => p.greenRate * p.green) / sum((p) => p.green) : 0,
    },
  };
}
