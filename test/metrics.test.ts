import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeFromCompressedBase64, WasmHistogram } from 'hdr-histogram-js';
import { createMetrics, DECISION_LOG_SERIES, KERNEL_SERIES, MAX_TRACKABLE_NS, type Metrics } from '../src/service/metrics.js';

// --- a tiny checker for the Prometheus text exposition format 0.0.4 ----------

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const SAMPLE = new RegExp(`^(${NAME})(\\{(?:${LABEL}(?:,${LABEL})*)?\\})? ([-+0-9.eE]+|NaN|\\+Inf|-Inf)$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|summary|histogram|untyped)$`);

interface Sample { name: string; labels: Record<string, string>; value: number }

function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;
  for (const m of text.matchAll(re)) {
    labels[m[1]] = m[2].replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

/** Checks every line and returns the samples; throws on the first violation. */
function checkExposition(text: string): Sample[] {
  expect(text.endsWith('\n')).toBe(true);
  const help = new Set<string>();
  const types = new Map<string, string>();
  const finished = new Set<string>();
  let open: string | null = null;
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const h = HELP.exec(line);
    const t = TYPE.exec(line);
    if (h) {
      if (help.has(h[1])) throw new Error(`second HELP for ${h[1]}`);
      help.add(h[1]);
      continue;
    }
    if (t) {
      if (types.has(t[1])) throw new Error(`second TYPE for ${t[1]}`);
      if (!help.has(t[1])) throw new Error(`TYPE before HELP for ${t[1]}`);
      types.set(t[1], t[2]);
      continue;
    }
    const s = SAMPLE.exec(line);
    if (!s) throw new Error(`not a valid exposition line: ${JSON.stringify(line)}`);
    const name = s[1];
    const base = name.replace(/_(sum|count)$/, '');
    const family = types.get(name) !== undefined ? name : types.get(base) === 'summary' ? base : null;
    if (family === null || !help.has(family)) throw new Error(`sample ${name} without HELP and TYPE before it`);
    if (family !== open) {
      if (finished.has(family)) throw new Error(`family ${family} is not contiguous`);
      if (open !== null) finished.add(open);
      open = family;
    }
    const raw = s[3];
    samples.push({ name, labels: parseLabels(s[2]), value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return samples;
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined {
  return samples.find((s) => s.name === name && Object.keys(labels).length === Object.keys(s.labels).length
    && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

// ------------------------------------------------------------------------------

const SCORE = 'POST /v1/score';

describe('metrics', () => {
  const open: Metrics[] = [];
  const make = async (options?: Parameters<typeof createMetrics>[0]): Promise<Metrics> => {
    const m = await createMetrics(options);
    open.push(m);
    return m;
  };
  afterEach(() => {
    for (const m of open.splice(0)) m.close();
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('validates its options with named codes', async () => {
    await expect(createMetrics({ intervalMs: 0 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'intervalMs' } });
    await expect(createMetrics({ bufferSize: 1.5 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'bufferSize' } });
    await expect(createMetrics({ gauges: 42 as never })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'gauges' } });
    const m = await make();
    expect(m.intervalMs).toBe(60_000);
  });

  it('gives percentiles, max, count and an exact mean for known values (1..1000 µs)', async () => {
    const m = await make();
    for (let us = 1; us <= 1000; us++) m.record(SCORE, us * 1000);
    const s = m.summary();
    expect(s.unit).toBe('ms');
    const c = s.series[SCORE].cumulative;
    expect(c.count).toBe(1000);
    // within HdrHistogram's 3 significant digits (0.1 %) and µs rounding
    expect(Math.abs(c.p50! - 0.5)).toBeLessThanOrEqual(0.5 * 0.001 + 0.001);
    expect(Math.abs(c.p90! - 0.9)).toBeLessThanOrEqual(0.9 * 0.001 + 0.001);
    expect(Math.abs(c.p99! - 0.99)).toBeLessThanOrEqual(0.99 * 0.001 + 0.001);
    expect(Math.abs(c.p999! - 0.999)).toBeLessThanOrEqual(0.999 * 0.001 + 0.001);
    expect(Math.abs(c.max! - 1)).toBeLessThanOrEqual(0.001 + 0.001);
    expect(c.mean).toBe(0.501); // 500.5 µs exactly, rounded to the µs
    expect(c.p50! < c.p90! && c.p90! < c.p99! && c.p99! <= c.p999! && c.p999! <= c.max!).toBe(true);
    // values are rounded to the microsecond
    for (const v of [c.p50!, c.p90!, c.p99!, c.p999!, c.max!]) expect(Math.round(v * 1000) / 1000).toBe(v);
    // the same data on the Prometheus side, in seconds, with the exact sum
    const samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_request_duration_seconds_count', { route: SCORE })?.value).toBe(1000);
    expect(find(samples, 'selectivity_request_duration_seconds_sum', { route: SCORE })?.value).toBeCloseTo(0.5005, 12);
    const p99 = find(samples, 'selectivity_request_duration_seconds', { route: SCORE, quantile: '0.99' })!.value;
    expect(Math.abs(p99 - 0.00099)).toBeLessThanOrEqual(0.00099 * 0.001);
    const max = find(samples, 'selectivity_request_duration_max_seconds', { route: SCORE })!.value;
    expect(Math.abs(max - 0.001)).toBeLessThanOrEqual(0.001 * 0.001);
  });

  it('never gives a quantile above the maximum (HDR answers the top of the value\'s bucket)', async () => {
    const m = await make();
    // one value just inside a bucket of its own at the top: HDR's p90 and p99 would be the bucket's top, above it
    for (let i = 0; i < 9; i++) m.record(SCORE, 1_000_000);
    m.record(SCORE, 5_611_986);
    const c = m.summary().series[SCORE].cumulative;
    for (const q of [c.p50!, c.p90!, c.p99!, c.p999!]) expect(q).toBeLessThanOrEqual(c.max!);
    const samples = checkExposition(m.prometheus());
    const max = find(samples, 'selectivity_request_duration_max_seconds', { route: SCORE })!.value;
    for (const quantile of ['0.5', '0.9', '0.99', '0.999']) expect(find(samples, 'selectivity_request_duration_seconds', { route: SCORE, quantile })!.value).toBeLessThanOrEqual(max);
  });

  it('hands out each series\' cumulative histogram on request: two reads subtracted give the percentiles of what came between, two services added those of both', async () => {
    const m = await make();
    for (let us = 1; us <= 1000; us++) m.record(SCORE, us * 1000); // 1 µs .. 1 ms
    expect(m.summary().series[SCORE].histogram).toBeUndefined(); // only when asked for
    const first = m.summary({ histograms: true }).series[SCORE].histogram!;
    for (let us = 1; us <= 1000; us++) m.record(SCORE, 10_000_000 + us * 1000); // 10.001 .. 11 ms
    const second = m.summary({ histograms: true });
    const all = decodeFromCompressedBase64(second.series[SCORE].histogram!);
    expect(all.totalCount).toBe(2000);
    expect(all.totalCount).toBe(second.series[SCORE].cumulative.count);
    const between = decodeFromCompressedBase64(second.series[SCORE].histogram!);
    between.subtract(decodeFromCompressedBase64(first));
    expect(between.totalCount).toBe(1000);
    // within HdrHistogram's 3 significant digits: the second batch alone, not the mix
    expect(Math.abs(between.minNonZeroValue - 10_001_000)).toBeLessThanOrEqual(10_001_000 * 0.001);
    expect(Math.abs(between.getValueAtPercentile(50) - 10_500_000)).toBeLessThanOrEqual(10_500_000 * 0.001);
    expect(Math.abs(between.getValueAtPercentile(99) - 10_990_000)).toBeLessThanOrEqual(10_990_000 * 0.001);
    // another service's histogram added: the counts of both
    const other = await make();
    for (let k = 0; k < 500; k++) other.record(SCORE, 5_000_000);
    const both = decodeFromCompressedBase64(second.series[SCORE].histogram!);
    both.add(decodeFromCompressedBase64(other.summary({ histograms: true }).series[SCORE].histogram!));
    expect(both.totalCount).toBe(2500);
    expect(Math.abs(both.getValueAtPercentile(50) - 5_000_000)).toBeLessThanOrEqual(5_000_000 * 0.001);
  });

  it('reports the decision-log wait as its own family, without a route label', async () => {
    const m = await make();
    m.record(SCORE, 2_000_000);
    m.record(DECISION_LOG_SERIES, 400_000);
    m.record(DECISION_LOG_SERIES, 600_000);
    const samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_decision_log_wait_seconds_count')?.value).toBe(2);
    expect(find(samples, 'selectivity_decision_log_wait_seconds_sum')?.value).toBeCloseTo(0.001, 12);
    expect(find(samples, 'selectivity_decision_log_wait_max_seconds')?.value).toBeCloseTo(0.0006, 6);
    for (const q of ['0.5', '0.9', '0.99', '0.999']) expect(find(samples, 'selectivity_decision_log_wait_interval_seconds', { quantile: q })).toBeDefined();
    expect(samples.some((x) => x.labels.route === DECISION_LOG_SERIES)).toBe(false);
    expect(samples.filter((x) => x.name === 'selectivity_request_duration_seconds_count').map((x) => x.labels.route)).toEqual([SCORE]);
    expect(m.summary().series[DECISION_LOG_SERIES].cumulative.count).toBe(2);
  });

  it('keeps one series per name, created on first use, and a kernel series without a route label', async () => {
    const m = await make();
    expect(m.summary().series).toEqual({});
    m.record(SCORE, 2_000_000);
    m.record('GET /v1/health', 50_000);
    m.record(KERNEL_SERIES, 700_000);
    m.record(KERNEL_SERIES, 300_000);
    const s = m.summary();
    expect(Object.keys(s.series).sort()).toEqual(['GET /v1/health', SCORE, KERNEL_SERIES].sort());
    expect(s.series[KERNEL_SERIES].cumulative.count).toBe(2);
    expect(s.series[SCORE].cumulative.p50).toBeCloseTo(2, 2);
    const samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_kernel_duration_seconds_count')?.value).toBe(2);
    expect(find(samples, 'selectivity_kernel_duration_seconds_sum')?.value).toBeCloseTo(0.001, 12);
    expect(find(samples, 'selectivity_kernel_duration_seconds', { quantile: '0.5' })).toBeDefined();
    expect(find(samples, 'selectivity_kernel_duration_max_seconds')?.value).toBeCloseTo(0.0007, 6);
    expect(samples.some((x) => x.name.startsWith('selectivity_request_') && x.labels.route === KERNEL_SERIES)).toBe(false);
    expect(samples.some((x) => x.name.startsWith('selectivity_kernel_') && 'route' in x.labels)).toBe(false);
    expect(samples.some((x) => x.name.startsWith('selectivity_decision_log_'))).toBe(false); // none recorded yet
    // every request quantile and interval quantile is there
    for (const q of ['0.5', '0.9', '0.99', '0.999']) {
      expect(find(samples, 'selectivity_request_duration_seconds', { route: 'GET /v1/health', quantile: q })).toBeDefined();
      expect(find(samples, 'selectivity_request_duration_interval_seconds', { route: 'GET /v1/health', quantile: q })).toBeDefined();
      expect(find(samples, 'selectivity_kernel_duration_interval_seconds', { quantile: q })).toBeDefined();
    }
  });

  it('rotates intervals: values move to lastInterval, currentInterval starts empty, cumulative keeps all', async () => {
    vi.useFakeTimers({ now: new Date('2025-01-01T00:00:00.000Z') });
    const m = await make({ intervalMs: 50 });
    for (let k = 1; k <= 10; k++) m.record(SCORE, k * 100_000);
    let s = m.summary();
    expect(s.intervalMs).toBe(50);
    expect(s.series[SCORE].currentInterval.count).toBe(10);
    expect(s.series[SCORE].lastInterval).toEqual({ count: 0, p50: null, p90: null, p99: null, p999: null, max: null, mean: null });
    expect(s.interval).toEqual({ startedAt: null, endedAt: null, currentStartedAt: '2025-01-01T00:00:00.000Z' });

    vi.advanceTimersByTime(50);
    s = m.summary();
    expect(s.series[SCORE].lastInterval.count).toBe(10);
    expect(s.series[SCORE].lastInterval.max).toBeCloseTo(1, 2);
    expect(s.series[SCORE].currentInterval.count).toBe(0);
    expect(s.series[SCORE].cumulative.count).toBe(10);
    expect(s.interval).toEqual({ startedAt: '2025-01-01T00:00:00.000Z', endedAt: '2025-01-01T00:00:00.050Z', currentStartedAt: '2025-01-01T00:00:00.050Z' });
    let samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_request_duration_interval_seconds', { route: SCORE, quantile: '0.5' })!.value).toBeCloseTo(0.0005, 6);

    // records still pending at a boundary belong to the interval that just ended
    for (let k = 0; k < 5; k++) m.record(SCORE, 7_000_000);
    vi.advanceTimersByTime(50);
    s = m.summary();
    expect(s.series[SCORE].lastInterval.count).toBe(5);
    expect(s.series[SCORE].lastInterval.p50).toBeCloseTo(7, 2);
    expect(s.series[SCORE].currentInterval.count).toBe(0);
    expect(s.series[SCORE].cumulative.count).toBe(15);

    // an interval with no traffic reports an empty last interval (NaN in Prometheus)
    vi.advanceTimersByTime(50);
    s = m.summary();
    expect(s.series[SCORE].lastInterval.count).toBe(0);
    expect(s.series[SCORE].cumulative.count).toBe(15);
    samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_request_duration_interval_seconds', { route: SCORE, quantile: '0.99' })!.value).toBeNaN();
    expect(find(samples, 'selectivity_request_duration_seconds_count', { route: SCORE })!.value).toBe(15);
  });

  it('flushes pending records on its own (setImmediate) and when the buffer is full', async () => {
    const m = await make({ bufferSize: 16 });
    for (let k = 0; k < 1000; k++) m.record(SCORE, 1_000 + k);
    expect(m.summary().series[SCORE].cumulative.count).toBe(1000);

    const spy = vi.spyOn(WasmHistogram.prototype, 'recordValue');
    m.record(SCORE, 5_000);
    expect(spy).not.toHaveBeenCalled(); // record() itself only buffers
    await new Promise((resolve) => setImmediate(resolve));
    expect(spy).toHaveBeenCalledTimes(2); // cumulative + current interval
    expect(m.summary().series[SCORE].cumulative.count).toBe(1001);
  });

  it('drops bad values without throwing and counts them; clamps values over one hour', async () => {
    const m = await make();
    const bad: unknown[] = [-1, NaN, Infinity, -Infinity, '5', undefined, null];
    for (const v of bad) expect(() => m.record(SCORE, v as number)).not.toThrow();
    expect(() => m.record('' as string, 5)).not.toThrow();
    expect(() => m.record(undefined as never, 5)).not.toThrow();
    expect(() => m.count('selectivity_declarations_total', { channel: 'red' }, -2)).not.toThrow();
    expect(() => m.count('selectivity_declarations_total', { channel: 'red' }, NaN)).not.toThrow();
    m.record(SCORE, 0);
    m.record(SCORE, 1234.6); // rounded to 1235 ns
    m.record(SCORE, MAX_TRACKABLE_NS * 3);
    const s = m.summary();
    expect(s.dropped).toBe(bad.length + 2 + 2);
    expect(s.clamped).toBe(1);
    expect(s.series[SCORE].cumulative.count).toBe(3);
    expect(s.series[SCORE].cumulative.max).toBeCloseTo(MAX_TRACKABLE_NS / 1e6, -4);
    expect(s.counters).toEqual({});
    const samples = checkExposition(m.prometheus());
    expect(find(samples, 'selectivity_metrics_dropped_total')?.value).toBe(bad.length + 4);
    expect(find(samples, 'selectivity_metrics_clamped_total')?.value).toBe(1);
    expect(find(samples, 'selectivity_request_duration_seconds_sum', { route: SCORE })?.value).toBeCloseTo((1235 + MAX_TRACKABLE_NS) / 1e9, 9);
  });

  it('limits the number of series', async () => {
    const m = await make({ maxSeries: 2 });
    m.record('a', 1);
    m.record('b', 1);
    m.record('c', 1);
    m.record('a', 1);
    const s = m.summary();
    expect(Object.keys(s.series).sort()).toEqual(['a', 'b']);
    expect(s.series.a.cumulative.count).toBe(2);
    expect(s.dropped).toBe(1);
  });

  it('sums counters per label set and writes them with _total names', async () => {
    const m = await make({ counterHelp: { selectivity_batches: 'Batches scored.' } });
    m.count('selectivity_declarations_total', { channel: 'red' });
    m.count('selectivity_declarations_total', { channel: 'red' }, 4);
    m.count('selectivity_declarations_total', { channel: 'green' }, 10);
    m.count('selectivity_errors_total', { code: 'SEL_ERR_REQUEST_INVALID' });
    m.count('selectivity_errors_total', { code: 'SEL_ERR_REQUEST_INVALID' }, 2);
    m.count('selectivity_batches');
    m.count('selectivity_batches', {}, 2);
    m.count('selectivity_multi_total', { b: '2', a: '1' });
    m.count('selectivity_multi_total', { a: '1', b: '2' });
    const s = m.summary();
    expect(s.counters).toEqual({
      'selectivity_declarations_total{channel="red"}': 5,
      'selectivity_declarations_total{channel="green"}': 10,
      'selectivity_errors_total{code="SEL_ERR_REQUEST_INVALID"}': 3,
      selectivity_batches_total: 3,
      'selectivity_multi_total{a="1",b="2"}': 2,
    });
    const text = m.prometheus();
    const samples = checkExposition(text);
    expect(text).toContain('# TYPE selectivity_declarations_total counter\n');
    expect(text).toContain('# HELP selectivity_batches_total Batches scored.\n');
    expect(text).toContain('# TYPE selectivity_batches_total counter\n');
    expect(find(samples, 'selectivity_declarations_total', { channel: 'red' })?.value).toBe(5);
    expect(find(samples, 'selectivity_errors_total', { code: 'SEL_ERR_REQUEST_INVALID' })?.value).toBe(3);
    expect(find(samples, 'selectivity_batches_total')?.value).toBe(3);
  });

  it('escapes label values (backslash, double quote, line feed) and HELP text', async () => {
    const nasty = 'POST /v1/"odd"\\path\nnext';
    const m = await make({
      gauges: () => [
        { name: 'selectivity_queue_depth', help: 'Batches waiting\nfor a worker \\ thread.', value: 3 },
        { name: 'selectivity_ruleset_info', help: 'Active ruleset.', labels: { version: 'v"1"\\\n' }, value: 1 },
        { name: 'selectivity_ruleset_info', help: 'ignored', labels: { version: 'v2' }, value: 0 },
        { name: 'selectivity_weird', help: 'Not finite.', value: Infinity },
      ],
    });
    m.record(nasty, 1_000);
    m.count('selectivity_errors_total', { code: 'a"b\\c\nd' });
    const text = m.prometheus();
    expect(text).toContain('route="POST /v1/\\"odd\\"\\\\path\\nnext"');
    expect(text).toContain('# HELP selectivity_queue_depth Batches waiting\\nfor a worker \\\\ thread.\n');
    const samples = checkExposition(text);
    expect(find(samples, 'selectivity_request_duration_seconds_count', { route: nasty })?.value).toBe(1);
    expect(find(samples, 'selectivity_errors_total', { code: 'a"b\\c\nd' })?.value).toBe(1);
    expect(find(samples, 'selectivity_queue_depth')?.value).toBe(3);
    expect(find(samples, 'selectivity_ruleset_info', { version: 'v"1"\\\n' })?.value).toBe(1);
    expect(find(samples, 'selectivity_ruleset_info', { version: 'v2' })?.value).toBe(0);
    expect(find(samples, 'selectivity_weird')?.value).toBe(Infinity);
    expect(text.match(/^# TYPE selectivity_ruleset_info gauge$/gm)).toHaveLength(1);
  });

  it('the exposition checker rejects malformed output', () => {
    expect(() => checkExposition('foo 1\n')).toThrow(/without HELP/);
    expect(() => checkExposition('# HELP foo x\n# TYPE foo gauge\nfoo{a="b} 1\n')).toThrow(/not a valid/);
    expect(() => checkExposition('# HELP foo x\n# TYPE foo gauge\nfoo{a="\n"} 1\n')).toThrow(/not a valid/);
    expect(() => checkExposition('# HELP foo x\n# TYPE foo gauge\nfoo one\n')).toThrow(/not a valid/);
    expect(() => checkExposition('# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\na 1\nb 1\na 2\n')).toThrow(/contiguous/);
    expect(checkExposition('# HELP s x\n# TYPE s summary\ns{quantile="0.5"} 1e-7\ns_sum 2\ns_count 3\n')).toHaveLength(3);
  });

  it('close() destroys every histogram once, stops recording and is idempotent', async () => {
    vi.useFakeTimers();
    const destroy = vi.spyOn(WasmHistogram.prototype, 'destroy');
    const m = await createMetrics({ intervalMs: 50 });
    m.record(SCORE, 1_000);
    m.record(KERNEL_SERIES, 1_000);
    expect(m.summary().series[SCORE].cumulative.count).toBe(1);
    m.close();
    expect(destroy).toHaveBeenCalledTimes(6); // 2 series × (cumulative, current, last)
    expect(() => m.close()).not.toThrow();
    expect(destroy).toHaveBeenCalledTimes(6);
    expect(() => m.record(SCORE, 1_000)).not.toThrow();
    const s = m.summary();
    expect(s.series).toEqual({});
    expect(s.dropped).toBe(1);
    checkExposition(m.prometheus());
    // the interval timer is gone: once the pending flush task has run, nothing is scheduled
    vi.runOnlyPendingTimers();
    expect(vi.getTimerCount()).toBe(0);
  });
});
