/**
 * Targeting performance from the feedback loop: per channel, what the
 * examinations of the declarations sent there found, beside the
 * random-selection control group's estimate of the non-compliance of the
 * green traffic. The control group is drawn at random from declarations the
 * score sent to green (settings.randomSelection), so its non-compliance rate
 * estimates, without the targeting's bias, what passes unexamined; the
 * targeted channels' hit rates say how much better targeting does.
 *
 * The report reads the current examination results whose examination date
 * is in the period and joins each to the logged decision it answers (its
 * channel and whether the control group drew it). `selectivity feedback
 * report` and `GET /v1/feedback/report` show it (docs/feedback.md).
 */
import { errors } from '../errors.js';
import { resolvePeriod } from '../model/period.js';
import { formatIsoDate, parseIsoDate, LAST_DAY } from '../model/schema.js';
import { CHANNELS, type Channel } from '../model/channels.js';
import type { Db } from '../store/sqlite.js';
import { DecisionLogReader } from './log-reader.js';

/** What the examinations of a group of decisions found. */
export interface ExaminedGroup {
  /** Current results recorded for the group's decisions (inspected or not). */
  results: number;
  /** Of them, inspected. */
  inspected: number;
  /** Inspected and found non-compliant (discrepancy or seizure). */
  nonCompliant: number;
  /** nonCompliant / inspected (null: none inspected). */
  hitRate: number | null;
  /** Revenue recovered by the non-compliant ones. */
  revenueRecovered: number;
}

export interface TargetingReport {
  /** The period of examination dates, inclusive (YYYY-MM-DD). */
  from: string;
  to: string;
  /** Declarations scored in the period (every channel, the control group included). */
  scored: number;
  /** Current results with an examination date in the period. */
  results: number;
  /** Of them, those whose decision is no longer in the log (pruned): counted nowhere below. */
  unjoined: number;
  /** Decisions outside the control group, by the channel the score (or a counter-measure) gave them: every channel, in CHANNELS order. */
  channels: (ExaminedGroup & { channel: Channel })[];
  /** The targeted channels together: every channel but green, outside the control group. */
  targeted: ExaminedGroup;
  /**
   * The control group: its hit rate is the estimate of the green traffic's
   * non-compliance, with its 95 % Wilson interval (null: none inspected).
   */
  controlGroup: ExaminedGroup & { low: number | null; high: number | null };
  /** targeted.hitRate / controlGroup.hitRate: how many times more often targeting finds non-compliance (null: either missing, or no non-compliance in the control group). */
  lift: number | null;
  /** With `per`: the same for each day, week (Monday to Sunday) or month of the period, oldest first, every one listed (cut to the period at its ends). */
  periods?: PeriodPerformance[];
}

/** One period of a report broken down by day, week or month. */
export interface PeriodPerformance {
  from: string;
  to: string;
  /** Current results with an examination date in this period (their decision pruned: counted here only). */
  results: number;
  targeted: ExaminedGroup;
  controlGroup: ExaminedGroup & { low: number | null; high: number | null };
  lift: number | null;
}

/** The breakdowns a report can give. */
export const REPORT_BREAKDOWNS = ['day', 'week', 'month'] as const;
export type ReportBreakdown = (typeof REPORT_BREAKDOWNS)[number];

export interface ReportOptions {
  /** First examination date (default: 29 days before `to`). */
  from?: string;
  /** Last examination date (default: today, UTC). */
  to?: string;
  /** Break the period down per day, week or month (TargetingReport.periods). */
  per?: ReportBreakdown;
  /** Results read from the store at a time (default REPORT_PAGE; tests page through few). */
  page?: number;
}

/** The first day of the day, week (Monday) or month holding `date` (YYYY-MM-DD). */
function periodStart(date: string, by: ReportBreakdown): string {
  if (by === 'day') return date;
  if (by === 'month') return `${date.slice(0, 7)}-01`;
  // the week's Monday, or 0000-01-01 for the days before the first Monday a date can name
  return formatIsoDate(Math.max(FIRST_DAY, monday(parseIsoDate(date))));
}

/** The Monday on or before day d (1970-01-01, day 0, was a Thursday). */
const monday = (d: number): number => d - ((((d + 3) % 7) + 7) % 7);

/** The day numbers of 0000-01-01 and 9999-12-31, the first and last days a date YYYY-MM-DD can name. */
const FIRST_DAY = parseIsoDate('0000-01-01');

/** Most periods a broken-down report gives (27 years of days): more is refused, not computed. */
export const MAX_REPORT_PERIODS = 10_000;

/** The first day of the next period after the one starting at `start`; undefined past 9999-12-31. */
function nextStart(start: string, by: ReportBreakdown): string | undefined {
  if (by !== 'month') {
    const d = by === 'day' ? parseIsoDate(start) + 1 : monday(parseIsoDate(start)) + 7;
    return d > LAST_DAY ? undefined : formatIsoDate(d);
  }
  const y = Number(start.slice(0, 4)), m = Number(start.slice(5, 7));
  if (m === 12) return y >= 9999 ? undefined : `${String(y + 1).padStart(4, '0')}-01-01`;
  return `${start.slice(0, 4)}-${String(m + 1).padStart(2, '0')}-01`;
}

/** The start of every period from the one holding `from` to the one holding `to`, at most MAX_REPORT_PERIODS. */
function periodStarts(from: string, to: string, by: ReportBreakdown): string[] {
  const out: string[] = [];
  for (let p: string | undefined = periodStart(from, by); p !== undefined && p <= to; p = nextStart(p, by)) {
    if (out.length === MAX_REPORT_PERIODS) {
      throw errors.SEL_ERR_OPTION_INVALID(`from ${from} to ${to} per ${by} is more than ${MAX_REPORT_PERIODS} periods`, { field: 'per', expected: `at most ${MAX_REPORT_PERIODS} periods: a shorter span, or a longer period`, got: by });
    }
    out.push(p);
  }
  return out;
}

/** The 95 % Wilson score interval of k successes in n trials. */
export function wilsonInterval(k: number, n: number, z = 1.96): { low: number; high: number } {
  const p = k / n, z2 = z * z, den = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / den;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / den;
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

interface Tally { results: number; inspected: number; nonCompliant: number; revenueRecovered: number }
const tally = (): Tally => ({ results: 0, inspected: 0, nonCompliant: 0, revenueRecovered: 0 });
const group = (t: Tally): ExaminedGroup => ({ ...t, hitRate: t.inspected > 0 ? t.nonCompliant / t.inspected : null });
const add = (into: Tally, t: Tally) => { into.results += t.results; into.inspected += t.inspected; into.nonCompliant += t.nonCompliant; into.revenueRecovered += t.revenueRecovered; };
const count = (t: Tally, inspected: boolean, outcome: string, revenue: number) => {
  t.results++;
  if (!inspected) return;
  t.inspected++;
  if (outcome !== 'no-discrepancy') { t.nonCompliant++; t.revenueRecovered += revenue; }
};
/** The control group's figures with the 95 % interval of its estimate, and the lift of the targeted hit rate over it. */
function versus(targeted: Tally, control: Tally): { targeted: ExaminedGroup; controlGroup: ExaminedGroup & { low: number | null; high: number | null }; lift: number | null } {
  const interval = control.inspected > 0 ? wilsonInterval(control.nonCompliant, control.inspected) : undefined;
  const c = group(control), tg = group(targeted);
  return { targeted: tg, controlGroup: { ...c, low: interval?.low ?? null, high: interval?.high ?? null }, lift: tg.hitRate !== null && c.hitRate ? tg.hitRate / c.hitRate : null };
}

/** Results the targeting report reads from the store at a time. */
export const REPORT_PAGE = 2000;

/**
 * The report's work, yielding after every `slice` results joined (each join
 * may read a chunk of the log): the service runs it with pauses for the
 * event loop (targetingReportPaced), the command line at once.
 */
function* reportSteps(db: Db, o: ReportOptions, now: number, slice: number, done: (r: TargetingReport) => void): Generator<void> {
  const { from, to } = resolvePeriod(o, now);
  const by = o.per;
  if (by !== undefined && !(REPORT_BREAKDOWNS as readonly string[]).includes(by)) throw errors.SEL_ERR_OPTION_INVALID(`per must be ${REPORT_BREAKDOWNS.join(', ')}`, { field: 'per', expected: REPORT_BREAKDOWNS.join(' | '), got: by });
  const scored = (db.prepare('SELECT COALESCE(SUM(scored), 0) FROM traffic WHERE day BETWEEN ? AND ?').pluck().get(from, to) as number);
  const log = new DecisionLogReader(db);
  const byChannel = new Map<Channel, Tally>(CHANNELS.map((c) => [c, tally()]));
  const control = tally();
  /** With `per`: per period start, its results and its targeted and control tallies. */
  const periods = new Map<string, { results: number; targeted: Tally; control: Tally }>();
  if (by) for (const p of periodStarts(from, to, by)) periods.set(p, { results: 0, targeted: tally(), control: tally() });
  let results = 0, unjoined = 0;
  // in decision order, so that the decisions of one chunk of the log are read together; a page at a time
  // (store migration 11's index), after the last (decision, result) read: a period's every result read at
  // once held them all in memory and the thread for as long as the read and its sort took
  const page = db.prepare(`SELECT feedback.seq AS result, decision_seq AS decision, date, inspected, outcome, revenue_recovered AS revenue FROM feedback
    WHERE current = 1 AND (decision_seq > ? OR (decision_seq = ? AND feedback.seq > ?)) AND date BETWEEN ? AND ? ORDER BY decision_seq, feedback.seq LIMIT ?`);
  type Row = { result: number; decision: number; date: string; inspected: number; outcome: string; revenue: number };
  const pageSize = o.page ?? REPORT_PAGE;
  const pages = function* (): Generator<Row> {
    let afterDecision = -1, afterResult = -1;
    for (;;) {
      const rows = page.all(afterDecision, afterDecision, afterResult, from, to, pageSize) as Row[];
      yield* rows;
      if (rows.length < pageSize) return;
      ({ decision: afterDecision, result: afterResult } = rows[rows.length - 1]);
    }
  };
  for (const r of pages()) {
    results++;
    const period = by ? periods.get(periodStart(r.date, by)) : undefined;
    if (period) period.results++;
    const d = log.at(r.decision);
    if (!d) unjoined++;
    else {
      count(d.controlGroup ? control : byChannel.get(d.channel)!, r.inspected === 1, r.outcome, r.revenue);
      if (period && (d.controlGroup || d.channel !== 'green')) count(d.controlGroup ? period.control : period.targeted, r.inspected === 1, r.outcome, r.revenue);
    }
    if (results % slice === 0) yield;
  }
  const targeted = tally();
  for (const c of CHANNELS) if (c !== 'green') add(targeted, byChannel.get(c)!);
  done({
    from, to, scored, results, unjoined,
    channels: CHANNELS.map((channel) => ({ channel, ...group(byChannel.get(channel)!) })),
    ...versus(targeted, control),
    ...(by ? {
      periods: [...periods].map(([start, p]) => {
        const next = nextStart(start, by);
        const end = formatIsoDate(next === undefined ? LAST_DAY : parseIsoDate(next) - 1);
        return { from: start < from ? from : start, to: end > to ? to : end, results: p.results, ...versus(p.targeted, p.control) };
      }),
    } : {}),
  });
}

/** The targeting report of a period (docs/feedback.md); a bad period gives SEL_ERR_OPTION_INVALID naming the field. */
export function targetingReport(db: Db, o: ReportOptions = {}, now = Date.now()): TargetingReport {
  let out: TargetingReport | undefined;
  for (const _ of reportSteps(db, o, now, Infinity, (r) => { out = r; })) { /* no pause */ }
  return out!;
}

/** targetingReport() with a pause for the event loop after every `slice` results joined (the service's main thread). */
export async function targetingReportPaced(db: Db, o: ReportOptions = {}, now = Date.now(), slice = 500): Promise<TargetingReport> {
  let out: TargetingReport | undefined;
  for (const _ of reportSteps(db, o, now, slice, (r) => { out = r; })) await new Promise((resolve) => setImmediate(resolve));
  return out!;
}
