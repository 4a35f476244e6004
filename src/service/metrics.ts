/**
 * Service metrics: latency histograms (HdrHistogram, WebAssembly mode), counters
 * and read-time gauges, reported as JSON (summary()) or in the Prometheus text
 * exposition format 0.0.4 (prometheus()).
 *
 * Recording is kept off the request's critical section: record() only writes the
 * value and a series index into a preallocated pending buffer; the buffer is
 * drained into the histograms by a setImmediate task (at most one per tick), when
 * it is full, at every interval boundary and before every read.
 *
 * Each named series (one per HTTP route, e.g. `POST /v1/score`, plus `kernel` and `decision_log`)
 * keeps three histograms: cumulative, the current interval and the last finished
 * interval. Every `intervalMs` the current interval becomes the last one and a
 * fresh (reset) one starts. Values are nanoseconds (integers, 0 ns to 1 hour; a
 * larger value is recorded as 1 hour and counted in `clamped`); negative, NaN or
 * infinite values are dropped and counted in `dropped`. Sums are kept exactly, in
 * nanoseconds, beside each histogram (HdrHistogram only has an approximate mean).
 *
 * WebAssembly histograms live outside the JS heap: close() destroys them all.
 */

import { build, encodeIntoCompressedBase64, initWebAssembly } from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { errors } from '../errors.js';

/** Series name for the kernel's own scoring time (no route label in Prometheus). */
export const KERNEL_SERIES = 'kernel';

/** Series name for the time an answer waited for its decision-log commit (no route label in Prometheus). */
export const DECISION_LOG_SERIES = 'decision_log';

/** Content-Type for the body of prometheus(). */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Largest value a histogram tracks, in ns (1 hour); larger values are clamped to it. */
export const MAX_TRACKABLE_NS = 3_600_000_000_000;

/** A gauge sampled at read time (from the `gauges` option). */
export interface Gauge {
  /** Metric name, e.g. `selectivity_queue_depth`. */
  name: string;
  /** One-line description for `# HELP`. */
  help: string;
  labels?: Record<string, string>;
  value: number;
}

export interface MetricsOptions {
  /** Length of a reporting interval in ms (default 60000). */
  intervalMs?: number;
  /** Gauges to report, called on every prometheus() read. */
  gauges?: () => Gauge[];
  /** Capacity of the pending-record buffer (default 4096); a full buffer is flushed at once. */
  bufferSize?: number;
  /** Most series kept (default 256); records for further series are dropped and counted. */
  maxSeries?: number;
  /** `# HELP` text for counters, by counter name (with or without `_total`). */
  counterHelp?: Record<string, string>;
}

/** Latency statistics in milliseconds (rounded to the microsecond); null when count is 0. */
export interface LatencyStats {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  mean: number | null;
}

export interface SeriesSummary {
  cumulative: LatencyStats;
  lastInterval: LatencyStats;
  currentInterval: LatencyStats;
  /**
   * With summary({ histograms: true }) only: the cumulative histogram, values
   * in nanoseconds, in HdrHistogram's compressed encoding (V2, base64), which
   * every HdrHistogram implementation decodes. Histograms of two reads can be
   * subtracted (the percentiles of what happened between them) and those of
   * several services added (percentiles over all of them), which percentiles
   * cannot.
   */
  histogram?: string;
}

export interface MetricsSummary {
  unit: 'ms';
  intervalMs: number;
  /**
   * startedAt/endedAt: bounds of the last finished interval (the one `lastInterval`
   * reports), ISO 8601, both null before the first boundary; currentStartedAt: start
   * of the interval `currentInterval` reports.
   */
  interval: { startedAt: string | null; endedAt: string | null; currentStartedAt: string };
  series: Record<string, SeriesSummary>;
  /** Counter values keyed by their Prometheus series, e.g. `selectivity_errors_total{code="SEL_ERR_X"}`. */
  counters: Record<string, number>;
  /** Records and counts dropped for bad values (negative, NaN, infinite, bad name), too many series, or after close(). */
  dropped: number;
  /** Values over MAX_TRACKABLE_NS recorded as MAX_TRACKABLE_NS. */
  clamped: number;
}

export interface Metrics {
  readonly intervalMs: number;
  /** Records a duration in ns for a series (route name, KERNEL_SERIES or DECISION_LOG_SERIES). Never throws. */
  record(series: string, ns: number): void;
  /** Records `process.hrtime.bigint() - startNs` for a series. Never throws. */
  recordSince(series: string, startNs: bigint): void;
  /** Adds `by` (default 1) to a counter; `_total` is appended to the name if missing. Never throws. */
  count(name: string, labels?: Record<string, string>, by?: number): void;
  /** Moves pending records into the histograms now (reads do this themselves). */
  flush(): void;
  /** Percentiles per series, counters; `histograms`: each series' cumulative histogram too (SeriesSummary.histogram). */
  summary(options?: { histograms?: boolean }): MetricsSummary;
  prometheus(): string;
  /** Destroys every histogram and stops the interval timer; idempotent. */
  close(): void;
}

export const DEFAULT_METRICS_INTERVAL_MS = 60_000;
const DEFAULT_BUFFER_SIZE = 4096;
const DEFAULT_MAX_SERIES = 256;
const SUM_CHUNK = 2 ** 52;

const QUANTILES: ReadonlyArray<readonly [label: string, percentile: number]> = [
  ['0.5', 50],
  ['0.9', 90],
  ['0.99', 99],
  ['0.999', 99.9],
];

const BUILTIN_COUNTER_HELP: Record<string, string> = {
  selectivity_declarations_total: 'Declarations scored, by channel.',
  selectivity_errors_total: 'Errors returned, by named error code.',
  selectivity_requests_total: 'HTTP requests handled, by route and status (a stream that ended with a fatal record: "fatal"; one whose client hung up: "closed").',
  selectivity_control_group_total: 'Declarations drawn into the random control group.',
  selectivity_invalid_declarations_total: 'Declarations refused in a batch or stream (not scored), by named error code.',
};

/**
 * An exact running sum of non-negative integers below 2^52, as hi * 2^52 + lo, so
 * it never loses a nanosecond however long the process runs.
 */
class ExactSum {
  hi = 0;
  lo = 0;
  add(v: number): void {
    this.lo += v;
    if (this.lo >= SUM_CHUNK) {
      this.lo -= SUM_CHUNK;
      this.hi += 1;
    }
  }
  reset(): void {
    this.hi = 0;
    this.lo = 0;
  }
  /** The sum as a number (exact up to 2^53). */
  value(): number {
    return this.hi * SUM_CHUNK + this.lo;
  }
}

interface Window {
  histogram: Histogram;
  sum: ExactSum;
}

interface Series {
  name: string;
  cumulative: Window;
  current: Window;
  last: Window;
}

function newHistogram(): Histogram {
  return build({
    useWebAssembly: true,
    bitBucketSize: 32,
    autoResize: false,
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_TRACKABLE_NS,
    numberOfSignificantValueDigits: 3,
  });
}

function newWindow(): Window {
  return { histogram: newHistogram(), sum: new ExactSum() };
}

function positiveInteger(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw errors.SEL_ERR_OPTION_INVALID(`options.${field} must be a positive integer`, { field, expected: 'a positive integer', got: value });
  }
  return value;
}

/** ns → ms rounded to the microsecond. */
function nsToMs(ns: number): number {
  return Math.round(ns / 1000) / 1000;
}

/**
 * A histogram's value at a percentile, never above its largest value: HDR
 * answers the top of the value's bucket, which can pass the maximum
 * recorded (a p90 of 5.6156 ms beside a max of 5.6120 ms).
 */
function percentile(h: { getValueAtPercentile(p: number): number; maxValue: number }, p: number): number {
  return Math.min(h.getValueAtPercentile(p), h.maxValue);
}

function stats(w: Window): LatencyStats {
  const h = w.histogram;
  const count = h.totalCount;
  if (count === 0) return { count: 0, p50: null, p90: null, p99: null, p999: null, max: null, mean: null };
  return {
    count,
    p50: nsToMs(percentile(h, 50)),
    p90: nsToMs(percentile(h, 90)),
    p99: nsToMs(percentile(h, 99)),
    p999: nsToMs(percentile(h, 99.9)),
    max: nsToMs(h.maxValue),
    mean: nsToMs(w.sum.value() / count),
  };
}

// --- Prometheus text format helpers -----------------------------------------

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function metricName(name: string): string {
  if (METRIC_NAME.test(name)) return name;
  const s = name.replace(/[^a-zA-Z0-9_:]/g, '_');
  return /^[0-9]/.test(s) || s === '' ? `_${s}` : s;
}

/** A valid counter name ending in `_total`. */
function counterName(name: string): string {
  const n = metricName(name);
  return n.endsWith('_total') ? n : `${n}_total`;
}

function labelName(name: string): string {
  if (LABEL_NAME.test(name)) return name;
  const s = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(s) || s === '' ? `_${s}` : s;
}

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** `{a="x",b="y"}` with names sorted, or '' for no labels. */
function labelSet(labels: Record<string, string> | undefined, extra: Array<[string, string]> = []): string {
  const pairs: Array<[string, string]> = [];
  if (labels) for (const k of Object.keys(labels)) pairs.push([labelName(k), String(labels[k])]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  pairs.push(...extra);
  if (pairs.length === 0) return '';
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

// --- the metrics object -------------------------------------------------------

export async function createMetrics(options: MetricsOptions = {}): Promise<Metrics> {
  if (options === null || typeof options !== 'object') {
    throw errors.SEL_ERR_OPTION_INVALID('metrics options must be an object', { field: 'options', expected: 'an object', got: options });
  }
  const intervalMs = positiveInteger(options.intervalMs, 'intervalMs', DEFAULT_METRICS_INTERVAL_MS);
  const bufferSize = positiveInteger(options.bufferSize, 'bufferSize', DEFAULT_BUFFER_SIZE);
  const maxSeries = Math.min(positiveInteger(options.maxSeries, 'maxSeries', DEFAULT_MAX_SERIES), 65_535);
  if (options.gauges !== undefined && typeof options.gauges !== 'function') {
    throw errors.SEL_ERR_OPTION_INVALID('options.gauges must be a function', { field: 'gauges', expected: 'a function returning gauges', got: typeof options.gauges });
  }
  const gauges = options.gauges;
  const counterHelp: Record<string, string> = { ...BUILTIN_COUNTER_HELP };
  for (const [k, v] of Object.entries(options.counterHelp ?? {})) counterHelp[counterName(k)] = String(v);

  await initWebAssembly();

  // series: index → name (registered on the hot path), index → histograms (made at flush)
  const seriesIndex = new Map<string, number>();
  const seriesNames: string[] = [];
  const series: Array<Series | undefined> = [];

  // pending records
  const pendingValue = new Float64Array(bufferSize);
  const pendingSeries = new Uint16Array(bufferSize);
  let pending = 0;
  let flushScheduled = false;

  // counters: name → (label set → value)
  const counters = new Map<string, Map<string, number>>();

  let dropped = 0;
  let clamped = 0;
  let closed = false;

  let currentStartedAt = Date.now();
  let lastStartedAt: number | null = null;
  let lastEndedAt: number | null = null;

  const timer = setInterval(rotate, intervalMs);
  timer.unref();

  function seriesAt(i: number): Series {
    let s = series[i];
    if (s === undefined) {
      s = { name: seriesNames[i], cumulative: newWindow(), current: newWindow(), last: newWindow() };
      series[i] = s;
    }
    return s;
  }

  function drain(): void {
    const n = pending;
    pending = 0;
    for (let k = 0; k < n; k++) {
      try {
        const s = seriesAt(pendingSeries[k]);
        let v = pendingValue[k];
        if (v > MAX_TRACKABLE_NS) {
          v = MAX_TRACKABLE_NS;
          clamped++;
        }
        s.cumulative.histogram.recordValue(v);
        s.cumulative.sum.add(v);
        s.current.histogram.recordValue(v);
        s.current.sum.add(v);
      } catch {
        dropped++;
      }
    }
  }

  function flush(): void {
    if (closed || pending === 0) return;
    drain();
  }

  function scheduledFlush(): void {
    flushScheduled = false;
    flush();
  }

  function rotate(): void {
    if (closed) return;
    flush();
    const now = Date.now();
    for (const s of series) {
      if (s === undefined) continue;
      const finished = s.current;
      s.current = s.last;
      s.current.histogram.reset();
      s.current.sum.reset();
      s.last = finished;
    }
    lastStartedAt = currentStartedAt;
    lastEndedAt = now;
    currentStartedAt = now;
  }

  function record(name: string, ns: number): void {
    try {
      if (closed || typeof ns !== 'number' || !(ns >= 0) || ns === Infinity || typeof name !== 'string' || name === '') {
        dropped++;
        return;
      }
      let i = seriesIndex.get(name);
      if (i === undefined) {
        if (seriesNames.length >= maxSeries) {
          dropped++;
          return;
        }
        i = seriesNames.length;
        seriesNames.push(name);
        seriesIndex.set(name, i);
      }
      pendingValue[pending] = Math.round(ns);
      pendingSeries[pending] = i;
      pending++;
      if (pending === bufferSize) {
        drain();
      } else if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(scheduledFlush);
      }
    } catch {
      dropped++;
    }
  }

  function recordSince(name: string, startNs: bigint): void {
    try {
      record(name, Number(process.hrtime.bigint() - startNs));
    } catch {
      dropped++;
    }
  }

  function count(name: string, labels: Record<string, string> = {}, by = 1): void {
    try {
      if (closed || typeof name !== 'string' || name === '' || typeof by !== 'number' || !(by >= 0) || by === Infinity) {
        dropped++;
        return;
      }
      const n = counterName(name);
      let family = counters.get(n);
      if (family === undefined) {
        family = new Map();
        counters.set(n, family);
      }
      const key = labelSet(labels !== null && typeof labels === 'object' ? labels : undefined);
      family.set(key, (family.get(key) ?? 0) + by);
    } catch {
      dropped++;
    }
  }

  function liveSeries(): Series[] {
    const out: Series[] = [];
    for (const s of series) if (s !== undefined) out.push(s);
    return out;
  }

  function summary(options: { histograms?: boolean } = {}): MetricsSummary {
    flush();
    const out: Record<string, SeriesSummary> = {};
    for (const s of liveSeries()) {
      out[s.name] = { cumulative: stats(s.cumulative), lastInterval: stats(s.last), currentInterval: stats(s.current) };
      if (options.histograms === true) out[s.name].histogram = encodeIntoCompressedBase64(s.cumulative.histogram);
    }
    const flat: Record<string, number> = {};
    for (const [name, family] of counters) for (const [labels, value] of family) flat[`${name}${labels}`] = value;
    return {
      unit: 'ms',
      intervalMs,
      interval: {
        startedAt: lastStartedAt === null ? null : new Date(lastStartedAt).toISOString(),
        endedAt: lastEndedAt === null ? null : new Date(lastEndedAt).toISOString(),
        currentStartedAt: new Date(currentStartedAt).toISOString(),
      },
      series: out,
      counters: flat,
      dropped,
      clamped,
    };
  }

  function prometheus(): string {
    flush();
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    };
    const all = liveSeries();
    const routes = all.filter((s) => s.name !== KERNEL_SERIES && s.name !== DECISION_LOG_SERIES);
    const kernel = all.filter((s) => s.name === KERNEL_SERIES);
    const logWait = all.filter((s) => s.name === DECISION_LOG_SERIES);

    const latency = (
      list: Series[],
      base: string,
      what: string,
      labelsOf: (s: Series) => Array<[string, string]>,
    ): void => {
      if (list.length === 0) return;
      family(base, 'summary', `${what}, in seconds (cumulative since start).`);
      for (const s of list) {
        const h = s.cumulative.histogram;
        const empty = h.totalCount === 0;
        for (const [q, p] of QUANTILES) {
          lines.push(`${base}${labelSet(undefined, [...labelsOf(s), ['quantile', q]])} ${formatValue(empty ? NaN : percentile(h, p) / 1e9)}`);
        }
        lines.push(`${base}_sum${labelSet(undefined, labelsOf(s))} ${formatValue(s.cumulative.sum.value() / 1e9)}`);
        lines.push(`${base}_count${labelSet(undefined, labelsOf(s))} ${formatValue(h.totalCount)}`);
      }
      const maxName = base.replace(/_seconds$/, '_max_seconds');
      family(maxName, 'gauge', `Largest ${what.toLowerCase()}, in seconds (cumulative since start).`);
      for (const s of list) {
        const h = s.cumulative.histogram;
        lines.push(`${maxName}${labelSet(undefined, labelsOf(s))} ${formatValue(h.totalCount === 0 ? NaN : h.maxValue / 1e9)}`);
      }
      const intervalName = base.replace(/_seconds$/, '_interval_seconds');
      family(intervalName, 'gauge', `${what} quantiles over the last finished ${intervalMs} ms interval, in seconds (NaN when it saw none).`);
      for (const s of list) {
        const h = s.last.histogram;
        const empty = h.totalCount === 0;
        for (const [q, p] of QUANTILES) {
          lines.push(`${intervalName}${labelSet(undefined, [...labelsOf(s), ['quantile', q]])} ${formatValue(empty ? NaN : percentile(h, p) / 1e9)}`);
        }
      }
    };
    latency(routes, 'selectivity_request_duration_seconds', 'HTTP request duration by route', (s) => [['route', s.name]]);
    latency(kernel, 'selectivity_kernel_duration_seconds', 'Scoring kernel time per batch or stream chunk', () => []);
    latency(logWait, 'selectivity_decision_log_wait_seconds', 'Time an answer waited for its decision-log commit', () => []);

    for (const [name, values] of counters) {
      family(name, 'counter', counterHelp[name] ?? `Counter ${name}.`);
      for (const [labels, value] of values) lines.push(`${name}${labels} ${formatValue(value)}`);
    }
    family('selectivity_metrics_dropped_total', 'counter', 'Metric records or counts dropped (bad value, too many series, or after close).');
    lines.push(`selectivity_metrics_dropped_total ${dropped}`);
    family('selectivity_metrics_clamped_total', 'counter', `Latency values over ${MAX_TRACKABLE_NS} ns recorded as ${MAX_TRACKABLE_NS} ns.`);
    lines.push(`selectivity_metrics_clamped_total ${clamped}`);

    if (gauges) {
      const byName = new Map<string, { help: string; samples: string[] }>();
      for (const g of gauges()) {
        const name = metricName(String(g.name));
        let entry = byName.get(name);
        if (entry === undefined) {
          entry = { help: String(g.help ?? `Gauge ${name}.`), samples: [] };
          byName.set(name, entry);
        }
        entry.samples.push(`${name}${labelSet(g.labels)} ${formatValue(Number(g.value))}`);
      }
      for (const [name, { help, samples }] of byName) {
        family(name, 'gauge', help);
        lines.push(...samples);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  function close(): void {
    if (closed) return;
    closed = true;
    clearInterval(timer);
    pending = 0;
    for (const s of series) {
      if (s === undefined) continue;
      s.cumulative.histogram.destroy();
      s.current.histogram.destroy();
      s.last.histogram.destroy();
    }
    series.length = 0;
    seriesNames.length = 0;
    seriesIndex.clear();
  }

  return Object.freeze({ intervalMs, record, recordSince, count, flush, summary, prometheus, close });
}
