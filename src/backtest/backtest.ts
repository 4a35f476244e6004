/**
 * Back-testing: the history store replayed through the kernel with a
 * candidate profile set and a baseline set side by side (worker pool, all
 * cores), reported as channel shares, hit rates and revenue per channel and
 * per profile, channel changes, profiles that never match or match too much,
 * precision and revenue captured at the inspection rate each set produces,
 * and, given inspection capacity per office and day, what filling it from the
 * top of each set's score ranking would give. The capacity view is computed
 * beside the risk assessment: it never changes a score or a channel.
 */
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { errors, fromWorker } from '../errors.js';
import { compileRuleset, type CompiledRuleset } from '../ruleset/compile.js';
import type { Ruleset } from '../ruleset/ruleset.js';
import { CHANNELS, type Channel } from '../model/channels.js';
import { formatIsoDate, parseIsoDate } from '../model/schema.js';
import { workerExecArgv, workerPath } from '../paths.js';
import { readManifest, SegmentReadAhead, segmentsIn } from '../history/store.js';
import { BINS, BIN_SCALE, HIST_STRIDE, NCH, SCORE_MIN, emptyPart, mergeParts, type CapacityGroup, type CapacitySpec, type ChangeExample, type PartState, type SetState } from './accumulate.js';
import type { BacktestTask, RulesetRef } from '../../workers/backtest-worker.js';

export const DEFAULT_TOO_MUCH = 0.2;
/** Record batches per task: enough work per hop, small enough to spread over the workers. */
const BATCHES_PER_TASK = 4;
/** Inspection rates at which both sets are compared by score ranking. */
export const COMPARE_RATES = [0.01, 0.02, 0.05, 0.1] as const;

export interface BacktestOptions {
  candidate: Ruleset;
  baseline: Ruleset;
  /** Names shown in reports (default "candidate", "baseline"). */
  names?: [string, string];
  /** ISO dates (inclusive). Default: the whole store. */
  from?: string;
  to?: string;
  /** Worker threads; 0 runs in this thread. Default: available parallelism. */
  threads?: number;
  capacity?: CapacitySpec;
  /** A profile matching more than this share of declarations is flagged (default 0.2). */
  tooMuch?: number;
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
  signal?: AbortSignal;
}

export interface ChannelLine { channel: Channel; declarations: number; share: number; withResult: number; nonCompliant: number; hitRate: number | null; revenue: number }
export interface ProfileLine {
  id: string; index: number; matches: number; share: number; withResult: number; nonCompliant: number; hitRate: number | null; lift: number | null; revenue: number;
  flag: 'never' | 'too-much' | null;
  /** Per month of the run: matches and non-compliant among them. */
  monthly: { matches: number[]; nonCompliant: number[] };
}
export interface RateLine { rate: number; precision: number | null; recall: number | null; revenueCaptured: number | null }
export interface CapacityLine {
  groups: number; capacity: number; filled: number; share: number; knownAmongFilled: number; nonCompliantFilled: number; hitRate: number | null; revenueFilled: number;
  /** The set's own orange and red channels, against capacity. */
  setPhysical: number; setPhysicalNonCompliant: number; overflow: number; overflowGroups: number; idle: number;
}
export interface SetReport {
  name: string;
  rulesetVersion: string;
  profiles: number;
  channels: ChannelLine[];
  /** Every channel but green: the inspection rate the set produces and what it finds. */
  controlled: { declarations: number; share: number; withResult: number; nonCompliant: number; precision: number | null; revenue: number; revenueCaptured: number | null };
  controlGroup: { declarations: number; withResult: number; nonCompliant: number; rate: number | null };
  /** Top of the score ranking at fixed rates and at each set's own rate (ties in a 1/64 score bin split pro rata). */
  atRates: RateLine[];
  /** The same from 0.5 % to 30 % in steps of 0.5 % (for charts). */
  curve: RateLine[];
  monthly: { month: string; declarations: number; controlled: number; controlledShare: number; withResult: number; nonCompliant: number; hitRate: number | null }[];
  capacity?: CapacityLine;
  /** Score distribution (for charts): bin lower edges and counts, non-empty range only. */
  histogram: { from: number; width: number; counts: number[] };
}
export interface BacktestReport {
  format: 'selectivity-backtest';
  ranAt: string;
  seconds: number;
  declarationsPerSecond: number;
  threads: number;
  store: { from: string; to: string; declarations: number; withResult: number; nonCompliant: number; revenue: number; segments: number };
  months: string[];
  sets: [SetReport, SetReport];
  changes: { changed: number; share: number; matrix: { from: Channel; to: Channel; declarations: number; examples: (Omit<ChangeExample, 'key' | 'date' | 'scores'> & { date: string; candidateScore: number; baselineScore: number })[] }[] };
  profiles: [ProfileLine[], ProfileLine[]];
  capacitySpec?: CapacitySpec;
  tooMuch: number;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

function monthLabel(m: number): string {
  return `${Math.floor(m / 12)}-${String((m % 12) + 1).padStart(2, '0')}`;
}

function monthNumber(day: number): number {
  const d = new Date(day * 86_400_000);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

/** Top `rate` of the ranking by score from a histogram: non-compliant, known and revenue selected (pro rata inside the cut bin). */
export function atRate(hist: Float64Array, total: number, rate: number, totals: { nonCompliant: number; revenue: number }): RateLine {
  let want = rate * total;
  let known = 0, hits = 0, rev = 0;
  for (let b = BINS - 1; b >= 0 && want > 0; b--) {
    const at = b * HIST_STRIDE;
    const n = hist[at];
    if (n === 0) continue;
    const f = n <= want ? 1 : want / n;
    known += f * hist[at + 1]; hits += f * hist[at + 2]; rev += f * hist[at + 3];
    want -= n * f;
  }
  return { rate, precision: ratio(hits, known), recall: ratio(hits, totals.nonCompliant), revenueCaptured: ratio(rev, totals.revenue) };
}

function capacityLine(groups: CapacityGroup[], s: number, spec: CapacitySpec): CapacityLine {
  const out: CapacityLine = { groups: groups.length, capacity: 0, filled: 0, share: 0, knownAmongFilled: 0, nonCompliantFilled: 0, hitRate: null, revenueFilled: 0, setPhysical: 0, setPhysicalNonCompliant: 0, overflow: 0, overflowGroups: 0, idle: 0 };
  let rows = 0;
  for (const g of groups) {
    const h = g.sets[s];
    const cap = spec.byOffice?.[g.office] ?? spec.perOfficeDay;
    rows += g.rows;
    out.capacity += cap;
    out.filled += h.size;
    for (let i = 0; i < h.size; i++) {
      if (h.result[i] >= 0) out.knownAmongFilled++;
      if (h.result[i] === 1) { out.nonCompliantFilled++; out.revenueFilled += h.revenue[i]; }
    }
    out.setPhysical += h.physical;
    out.setPhysicalNonCompliant += h.physicalHits;
    if (h.physical > cap) { out.overflow += h.physical - cap; out.overflowGroups++; } else out.idle += cap - h.physical;
  }
  out.share = rows > 0 ? out.filled / rows : 0;
  out.hitRate = ratio(out.nonCompliantFilled, out.knownAmongFilled);
  return out;
}

function setReport(name: string, compiled: CompiledRuleset, st: SetState, part: PartState, months: string[], tooMuch: number, groups: CapacityGroup[] | undefined, s: number, spec: CapacitySpec | undefined): { report: Omit<SetReport, 'atRates' | 'curve'>; profiles: ProfileLine[] } {
  const rows = part.rows;
  const channels: ChannelLine[] = CHANNELS.map((channel, c) => {
    const n = st.channel[c * 4], k = st.channel[c * 4 + 1], h = st.channel[c * 4 + 2];
    return { channel, declarations: n, share: rows > 0 ? n / rows : 0, withResult: k, nonCompliant: h, hitRate: ratio(h, k), revenue: st.channel[c * 4 + 3] };
  });
  const ctl = channels.filter((c) => c.channel !== 'green');
  const sum = (f: (c: ChannelLine) => number) => ctl.reduce((a, c) => a + f(c), 0);
  const controlled = {
    declarations: sum((c) => c.declarations), share: rows > 0 ? sum((c) => c.declarations) / rows : 0, withResult: sum((c) => c.withResult),
    nonCompliant: sum((c) => c.nonCompliant), precision: ratio(sum((c) => c.nonCompliant), sum((c) => c.withResult)), revenue: sum((c) => c.revenue),
    revenueCaptured: ratio(sum((c) => c.revenue), part.revenue),
  };
  const M = months.length;
  const base = ratio(part.nonCompliant, part.known);
  const profiles: ProfileLine[] = compiled.meta.profiles.map((p, i) => {
    const n = st.profile[i * 4], k = st.profile[i * 4 + 1], h = st.profile[i * 4 + 2];
    const hr = ratio(h, k);
    const monthly = { matches: [] as number[], nonCompliant: [] as number[] };
    for (let m = 0; m < M; m++) { monthly.matches.push(st.profileMonth[(i * M + m) * 2]); monthly.nonCompliant.push(st.profileMonth[(i * M + m) * 2 + 1]); }
    return {
      id: p.id, index: i, matches: n, share: rows > 0 ? n / rows : 0, withResult: k, nonCompliant: h, hitRate: hr, lift: hr !== null && base ? hr / base : null, revenue: st.profile[i * 4 + 3],
      flag: n === 0 ? 'never' : rows > 0 && n / rows > tooMuch ? 'too-much' : null, monthly,
    };
  });
  const monthly = months.map((month, m) => {
    const n = st.month[m * 4], c = st.month[m * 4 + 1], h = st.month[m * 4 + 2], k = st.month[m * 4 + 3];
    return { month, declarations: n, controlled: c, controlledShare: n > 0 ? c / n : 0, withResult: k, nonCompliant: h, hitRate: ratio(h, k) };
  });
  let lo = BINS, hi = -1;
  for (let b = 0; b < BINS; b++) if (st.hist[b * HIST_STRIDE] > 0) { if (b < lo) lo = b; hi = b; }
  const counts: number[] = [];
  for (let b = lo; b <= hi; b++) counts.push(st.hist[b * HIST_STRIDE]);
  return {
    report: {
      name, rulesetVersion: compiled.version, profiles: compiled.meta.profiles.length, channels, controlled,
      controlGroup: { declarations: st.control[0], withResult: st.control[1], nonCompliant: st.control[2], rate: ratio(st.control[2], st.control[1]) },
      monthly, capacity: groups && spec ? capacityLine(groups, s, spec) : undefined,
      histogram: { from: hi < 0 ? 0 : SCORE_MIN + lo / BIN_SCALE, width: 1 / BIN_SCALE, counts },
    },
    profiles,
  };
}

function ref(c: CompiledRuleset): RulesetRef {
  return { version: c.version, buffer: c.buffer as SharedArrayBuffer, profiles: c.meta.profiles.length };
}

export async function runBacktest(dir: string, o: BacktestOptions): Promise<BacktestReport> {
  const started = performance.now();
  const { segments, fromDay, toDay } = planRange(dir, o.from, o.to);
  const lo = Math.max(fromDay, Math.min(...segments.map((s) => s.firstDay)));
  const hi = Math.min(toDay, Math.max(...segments.map((s) => s.lastDay)));
  const monthBase = monthNumber(lo);
  const months: string[] = [];
  for (let m = monthBase; m <= monthNumber(hi); m++) months.push(monthLabel(m));
  const tooMuch = o.tooMuch ?? DEFAULT_TOO_MUCH;
  if (!(tooMuch > 0 && tooMuch <= 1)) throw errors.SEL_ERR_OPTION_INVALID('tooMuch must be a share in (0, 1]', { field: 'too-much', expected: 'a share in (0, 1]', got: tooMuch });
  if (o.capacity) validateCapacity(o.capacity);
  const compiled = [compileRuleset(o.candidate), compileRuleset(o.baseline)] as const;
  const tasks: BacktestTask[] = [];
  segments.forEach((s, si) => {
    const nb = Math.ceil(s.rows / s.batchRows);
    for (let b = 0; b < nb; b += BATCHES_PER_TASK) {
      tasks.push({
        path: s.path, segmentIndex: si, fromBatch: b, toBatch: Math.min(nb, b + BATCHES_PER_TASK), firstRow: b * s.batchRows,
        fromDay: Number.isFinite(fromDay) ? fromDay : -2_147_483_648, toDay: Number.isFinite(toDay) ? toDay : 2_147_483_647,
        monthBase, months: months.length, candidate: ref(compiled[0]), baseline: ref(compiled[1]), capacity: o.capacity,
      });
    }
  });
  const rowsOf = (t: BacktestTask) => {
    const s = segments[t.segmentIndex];
    return Math.min(s.rows, t.toBatch * s.batchRows) - t.firstRow;
  };
  const total = tasks.reduce((a, t) => a + rowsOf(t), 0);
  const threads = o.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw errors.SEL_ERR_OPTION_INVALID('threads must be an integer in [0, 1024]', { field: 'threads', expected: 'an integer in [0, 1024]', got: threads });
  let merged = emptyPart([compiled[0].meta.profiles.length, compiled[1].meta.profiles.length], months.length);
  let done = 0;
  const finish = (t: BacktestTask, part: PartState) => {
    merged = mergeParts(merged, part);
    done += rowsOf(t);
    o.onProgress?.(done, total);
  };
  if (threads === 0) {
    const { default: run } = await import('../../workers/backtest-worker.js');
    for (const t of tasks) {
      if (o.signal?.aborted) throw abortError();
      finish(t, fromWorker(await run(t)));
      await new Promise((r) => setImmediate(r)); // let progress and other work through
    }
  } else {
    const file = workerPath('backtest-worker');
    if (!existsSync(file)) throw errors.SEL_ERR_KERNEL_LOAD(`worker entry ${file} not found; run \`npm run build\``, { field: 'worker', expected: 'a built worker', got: file });
    // minThreads 0: a pool being destroyed (a cancel) must not start workers again to keep a minimum
    const pool = new Piscina({ filename: pathToFileURL(file).href, execArgv: workerExecArgv(), minThreads: 0, maxThreads: threads, idleTimeout: 1000 });
    // the workers read segment 0 themselves; later segments are read ahead of them (a cold store otherwise leaves cores waiting on the disk)
    const readAhead = new SegmentReadAhead(segments.map((s) => s.path));
    const left = segments.map(() => 0);
    for (const t of tasks) left[t.segmentIndex]++;
    let lowest = 0;
    const segmentDone = (si: number) => {
      left[si]--;
      while (lowest < left.length && left[lowest] === 0) lowest++;
      readAhead.advance(lowest);
    };
    // A cancel drops the tasks not started and ends the workers running one (the signal given to pool.run;
    // minThreads 0, so no replacement starts: with a minimum, a thread and about 60 MB leaked per cancel).
    // The pool is destroyed only once every worker it started has loaded: a worker terminated while Node
    // loads its ES modules leaves the module files open (15 to 20 per cancel, a Node bug), and in a
    // service the cancels add up to EMFILE.
    const loaded = new Set<unknown>();
    pool.on('workerCreate', (w: unknown) => loaded.add(w));
    pool.on('workerDestroy', (w: unknown) => loaded.delete(w));
    const untilLoaded = async () => {
      for (let waited = 0; loaded.size < pool.threads.length && waited < WORKER_LOAD_WAIT_MS; waited += 10) await new Promise((r) => setTimeout(r, 10));
    };
    const destroyLoaded = async () => {
      await untilLoaded();
      await pool.destroy();
    };
    const signal = o.signal;
    // The tasks' own signal is aborted only once every worker has loaded: Piscina ends the worker of a
    // task it aborts at once, and a task may already be posted to a worker still loading its modules
    // (a fresh clone's first test run left 36 module files open after 11 cancels, with the pool's end
    // waiting for its workers to load as above: that worker had left the pool when the cancel ended it).
    const tasksSignal = new AbortController();
    const onAbort = () => { void untilLoaded().then(() => tasksSignal.abort(signal!.reason)); };
    signal?.addEventListener('abort', onAbort, { once: true });
    // A worker ended by a cancel may still post the result of the task it was running; the pool, which
    // has dropped that task, emits it as an error ("Unexpected message from Worker"), and an error event
    // with no listener is thrown from the event loop (it failed a test run). After a cancel that is
    // expected; before one, it is a fault of the run.
    let poolError: unknown;
    pool.on('error', (e: unknown) => { if (!signal?.aborted) poolError ??= e; });
    try {
      if (signal?.aborted) throw abortError();
      await Promise.all(tasks.map((t) => pool.run(t, signal ? { signal: tasksSignal.signal } : {}).then((p) => { finish(t, fromWorker<PartState>(p)); segmentDone(t.segmentIndex); })));
      // cancelled while the workers were loading, the tasks may all have finished before their signal
      if (signal?.aborted) throw abortError();
      if (poolError !== undefined) throw poolError;
    } catch (e) {
      if (signal?.aborted) throw abortError();
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await readAhead.stop();
      await destroyLoaded();
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return buildReport(merged, compiled, months, { from: formatIsoDate(lo), to: formatIsoDate(hi), segments: segments.length }, {
    names: o.names ?? ['candidate', 'baseline'], tooMuch, capacity: o.capacity, seconds, threads,
  });
}

/** How long a back-test's end waits for its pool's workers still loading before it destroys the pool anyway. */
const WORKER_LOAD_WAIT_MS = 10_000;

/** The segments a replay from `from` to `to` reads; a named error when there are none or the range is reversed. */
export function planRange(dir: string, from?: string, to?: string): { segments: ReturnType<typeof segmentsIn>; fromDay: number; toDay: number } {
  const manifest = readManifest(dir);
  const fromDay = from !== undefined ? parseDay(from, 'from') : -Infinity;
  const toDay = to !== undefined ? parseDay(to, 'to') : Infinity;
  if (fromDay > toDay) throw errors.SEL_ERR_OPTION_INVALID(`from ${from} is after to ${to}`, { field: 'from', expected: `a date on or before ${to}`, got: from });
  const segments = segmentsIn(dir, manifest, fromDay, toDay);
  const stored = manifest.segments.length ? `${formatIsoDate(Math.min(...manifest.segments.map((s) => s.firstDay)))} … ${formatIsoDate(Math.max(...manifest.segments.map((s) => s.lastDay)))}` : 'nothing stored';
  if (segments.length === 0) throw errors.SEL_ERR_HISTORY_EMPTY(`the history store holds no declaration${from || to ? ` from ${from ?? 'the start'} to ${to ?? 'the end'}` : ''}`, { field: from ? 'from' : to ? 'to' : 'history', expected: `dates within the stored range (${stored}); import with selectivity history import`, got: { from: from ?? null, to: to ?? null } });
  return { segments, fromDay, toDay };
}

function abortError() {
  return errors.SEL_ERR_NOT_READY('the back-test was cancelled', { field: 'backtest', expected: 'a run that is not cancelled' });
}

function parseDay(text: string, field: string): number {
  const d = parseIsoDate(text);
  if (!Number.isFinite(d)) throw errors.SEL_ERR_OPTION_INVALID(`--${field} must be a date (YYYY-MM-DD)`, { field, expected: 'YYYY-MM-DD', got: text });
  return d;
}

export function validateCapacity(c: CapacitySpec): void {
  const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 1_000_000;
  if (!ok(c.perOfficeDay)) throw errors.SEL_ERR_OPTION_INVALID('capacity per office and day must be an integer in [0, 1000000]', { field: 'capacity', expected: 'an integer in [0, 1000000]', got: c.perOfficeDay });
  for (const [office, n] of Object.entries(c.byOffice ?? {})) {
    if (!ok(n)) throw errors.SEL_ERR_OPTION_INVALID(`capacity of office ${office} must be an integer in [0, 1000000]`, { field: `capacity.${office}`, expected: 'an integer in [0, 1000000]', got: n });
  }
}

/** Parses "20" or "OF01=30,OF02=10,*=20" (the default for offices not listed is * , else 0). */
export function parseCapacity(text: string): CapacitySpec {
  const t = text.trim();
  if (/^\d+$/.test(t)) return { perOfficeDay: Number(t) };
  const spec: CapacitySpec = { perOfficeDay: 0, byOffice: {} };
  for (const part of t.split(',')) {
    const m = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m) throw errors.SEL_ERR_OPTION_INVALID(`--capacity: "${part}" is not office=n`, { field: 'capacity', expected: 'a number, or office=n pairs separated by commas (*=n for the rest)', got: text });
    if (m[1] === '*') spec.perOfficeDay = Number(m[2]); else spec.byOffice![m[1]] = Number(m[2]);
  }
  validateCapacity(spec);
  return spec;
}

export function buildReport(part: PartState, compiled: readonly [CompiledRuleset, CompiledRuleset], months: string[], store: { from: string; to: string; segments: number }, o: { names: [string, string]; tooMuch: number; capacity?: CapacitySpec; seconds: number; threads: number }): BacktestReport {
  const totals = { nonCompliant: part.nonCompliant, revenue: part.revenue };
  const sets = [0, 1].map((s) => setReport(o.names[s], compiled[s], part.sets[s], part, months, o.tooMuch, part.capacity, s, o.capacity));
  const ownRates = sets.map((x) => x.report.controlled.share);
  const rates = [...new Set([...COMPARE_RATES, ...ownRates])].filter((r) => r > 0).sort((a, b) => a - b);
  const steps = Array.from({ length: 60 }, (_, i) => (i + 1) / 200);
  const full = sets.map((x, s) => ({
    ...x.report,
    atRates: rates.map((r) => atRate(part.sets[s].hist, part.rows, r, totals)),
    curve: steps.map((r) => atRate(part.sets[s].hist, part.rows, r, totals)),
  })) as [SetReport, SetReport];
  const matrix: BacktestReport['changes']['matrix'] = [];
  let changed = 0;
  for (let a = 0; a < NCH; a++) {
    for (let b = 0; b < NCH; b++) {
      const n = part.transitions[a * NCH + b];
      if (a !== b) changed += n;
      if (n === 0) continue;
      matrix.push({
        from: CHANNELS[a], to: CHANNELS[b], declarations: n,
        examples: part.examples[a * NCH + b].map((e) => ({ id: e.id, date: formatIsoDate(e.date), office: e.office, hs: e.hs, candidateScore: e.scores[0], baselineScore: e.scores[1], result: e.result })),
      });
    }
  }
  return {
    format: 'selectivity-backtest',
    ranAt: new Date().toISOString(),
    seconds: o.seconds,
    declarationsPerSecond: part.rows / Math.max(o.seconds, 1e-9),
    threads: o.threads,
    store: { ...store, declarations: part.rows, withResult: part.known, nonCompliant: part.nonCompliant, revenue: part.revenue },
    months,
    sets: full,
    changes: { changed, share: part.rows > 0 ? changed / part.rows : 0, matrix },
    profiles: [sets[0].profiles, sets[1].profiles],
    capacitySpec: o.capacity,
    tooMuch: o.tooMuch,
  };
}
