/**
 * `npm run bench:kernel` (part of `npm run bench`): the scoring benchmarks.
 * Prints tables and writes bench/RESULTS.md (not with --quick). Figures are
 * reported, never asserted.
 *
 *  1. kernel vs reference scorer on the same 100k-declaration batch, 256
 *     profiles, 4-level peer hierarchy (declarations/s and the ratio);
 *  2. kernel throughput by profile count (0, 64, 256, 1024);
 *  3. worker pool throughput with 1 and 2 workers (batches of 8192);
 *  4. historical tables: the spine's ruleset with and without a trained
 *     model's tables, on the kernel call and on the service's scoring path.
 *
 * Options: --rows N (batch size of suite 1, default 100000), --quick,
 * --suites 1,2,3,4 (which suites to run; bench/RESULTS.md is written only
 * when all run, and not with --quick).
 */
import { writeFileSync } from 'node:fs';
import { cpus, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { Kernel } from '../src/kernel/kernel.js';
import { referenceScore } from '../src/kernel/reference.js';
import { createEngine } from '../src/engine.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset, type Ruleset } from '../src/ruleset/ruleset.js';
import { trainModel } from '../src/learn/train.js';
import { dimensionLoaded } from '../src/learn/history.js';
import { packageRoot } from '../src/paths.js';
import { scoreWire } from '../src/service/wire.js';
import { pack } from 'msgpackr';
import { batchesOf, benchProfiles, cloneBatch, fraudLabels, labelledBatches, median, peerTables, world } from './data.js';
import { benchArgs } from './args.js';

const values = benchArgs('bench:kernel', { rows: { type: 'string' }, quick: { type: 'boolean' }, suites: { type: 'string' } }, `
  --rows N          batch size of suite 1 (default 100000)
  --quick           fewer rounds and smaller batches; bench/RESULTS.md left as it is
  --suites 1,2,3,4  which suites to run; bench/RESULTS.md is written only when all run`);
const SUITES = new Set((values.suites ?? '1,2,3,4').split(',').map((x) => x.trim()));
for (const x of SUITES) if (!['1', '2', '3', '4'].includes(x)) { console.error(`bench: --suites takes numbers from 1 to 4, got ${values.suites}`); process.exit(2); }
const ALL = SUITES.size === 4;
const ROWS = values.rows ? Number(values.rows) : 100_000;
const QUICK = values.quick === true;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };

function table(headers: string[], rows: (string | number)[][]): void {
  out(`| ${headers.join(' | ')} |`);
  out(`|${headers.map(() => '---').join('|')}|`);
  for (const r of rows) out(`| ${r.join(' | ')} |`);
  out();
}

console.error('generating synthetic data…');
const { history, scored } = world(QUICK ? 100_000 : 300_000, ROWS + 8 * 8192, 11);
const peers = peerTables(history);
const [batch] = batchesOf(scored.slice(0, ROWS), ROWS);
// the kernel spine: text signals off (their cost is measured by bench:text)
const ruleset = (n: number): Ruleset => createRuleset({ peers, profiles: benchProfiles(n, 5, history.slice(0, 50_000)), settings: { misclassification: { weight: 0 } } });

out(`# Benchmark results`);
out();
out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} · ${availableParallelism()} cores${QUICK ? ' · quick mode' : ''}`);
out();
out(`Data: synthetic declarations (generator seed 11, 300 HS6 codes); the scored declarations follow the history in time; peer tables from ${fmt(history.length)} declarations, levels hs6,origin → hs6 → hs4 → hs2 (${peers.groups.map((g, i) => `${peers.levels[i].name}: ${fmt(g.size)}`).join(', ')} groups).`);
out();

// ---- 1. kernel vs reference ---------------------------------------------------
if (SUITES.has('1')) {
  const rs = ruleset(256);
  const kernel = new Kernel();
  kernel.loadRuleset(compileRuleset(rs));
  const kernelNs: number[] = [];
  let matches = 0;
  const bench = new Bench({ time: QUICK ? 500 : 2000, warmupIterations: 3, ...(QUICK ? { iterations: 5 } : {}) });
  bench.add('kernel (WASM)', () => { const r = kernel.score(batch); kernelNs.push(r.kernelNs); matches = r.matchOffset[r.size]; });
  bench.add('reference (TypeScript)', () => { referenceScore(rs, batch); }, {});
  console.error('suite 1: kernel vs reference…');
  await bench.run();
  type Latency = { latency: { mean: number; p50?: number } };
  const [k, ref] = bench.tasks.map((t) => t.result as Latency);
  // the median is the steady state; the mean also carries V8's first optimising calls and GC pauses
  const insideMs = kernelNs.map((ns) => ns / 1e6).sort((a, b) => a - b);
  const insideMedian = insideMs[insideMs.length >> 1];
  const insideMean = insideMs.reduce((a, b) => a + b, 0) / insideMs.length;
  const rate = (ms: number) => ROWS / (ms / 1000);
  // each ratio compares like with like: the kernel's median with the reference's median, mean with mean
  const refMedianRate = rate(ref.latency.p50 ?? ref.latency.mean);
  const refRate = rate(ref.latency.mean);
  out(`## 1. Kernel vs reference scorer — ${fmt(ROWS)} declarations, 256 profiles, 4 peer levels, one thread`);
  out();
  out(`Matched profiles per declaration: ${(matches / ROWS).toFixed(3)}. ${insideMs.length} kernel calls measured (warm-up included in the means).`);
  out();
  table(['scorer', 'ms per batch: median', 'mean', 'declarations/s: median', 'mean', 'vs reference (median / mean)'], [
    ['kernel: whole call (copy in, lookup tables, score, copy out)', (k.latency.p50 ?? k.latency.mean).toFixed(2), k.latency.mean.toFixed(2), fmt(rate(k.latency.p50 ?? k.latency.mean)), fmt(rate(k.latency.mean)), `${(rate(k.latency.p50 ?? k.latency.mean) / refMedianRate).toFixed(1)}x / ${(rate(k.latency.mean) / refRate).toFixed(1)}x`],
    ['kernel: inside the WASM call only', insideMedian.toFixed(2), insideMean.toFixed(2), fmt(rate(insideMedian)), fmt(rate(insideMean)), `${(rate(insideMedian) / refMedianRate).toFixed(1)}x / ${(rate(insideMean) / refRate).toFixed(1)}x`],
    ['reference scorer (TypeScript)', (ref.latency.p50 ?? ref.latency.mean).toFixed(2), ref.latency.mean.toFixed(2), fmt(refMedianRate), fmt(refRate), '1.0x'],
  ]);
}

// ---- 2. profile count -----------------------------------------------------------
if (SUITES.has('2')) {
  out(`## 2. Kernel throughput by number of active profiles — ${fmt(ROWS)} declarations`);
  out();
  const rows: (string | number)[][] = [];
  let base = 0;
  for (const n of [0, 64, 256, 1024]) {
    const kernel = new Kernel();
    const rs = ruleset(n);
    const t0 = performance.now();
    const compiled = compileRuleset(rs);
    const compileMs = performance.now() - t0;
    kernel.loadRuleset(compiled);
    const bench = new Bench({ time: QUICK ? 300 : 1000, warmupIterations: 3, ...(QUICK ? { iterations: 5 } : {}) });
    let matches = 0;
    bench.add(`${n}`, () => { const r = kernel.score(batch); matches = r.matchOffset[r.size]; });
    console.error(`suite 2: ${n} profiles…`);
    await bench.run();
    const lat = (bench.tasks[0].result as { latency: { mean: number; p50?: number } }).latency;
    const rate = ROWS / ((lat.p50 ?? lat.mean) / 1000); // median: the steady state
    if (n === 64) base = rate;
    rows.push([n, compileMs.toFixed(1), (matches / ROWS).toFixed(3), fmt(rate), n >= 64 && base ? `${(rate / base).toFixed(2)}x` : '—']);
  }
  table(['profiles', 'compile ms', 'matches/declaration', 'declarations/s (median, whole call)', 'vs 64 profiles'], rows);
}

// ---- 3. worker pool -------------------------------------------------------------
if (SUITES.has('3')) {
  const rs = ruleset(256);
  const BATCH = 8192;
  const per = QUICK ? 24 : 64;
  const source = batchesOf(scored.slice(ROWS), BATCH);
  const rows: (string | number)[][] = [];
  let one = 0;
  for (const threads of [1, 2]) {
    const engine = createEngine({ ruleset: rs, threads, maxQueue: per + 8 });
    await Promise.all(source.map((b) => engine.scoreBatch(cloneBatch(b)))); // warm the workers
    const times: number[] = [];
    for (let run = 0; run < (QUICK ? 3 : 7); run++) {
      const work = Array.from({ length: per }, (_, i) => cloneBatch(source[i % source.length]));
      const t0 = performance.now();
      await Promise.all(work.map((b) => engine.scoreBatch(b)));
      times.push(performance.now() - t0);
    }
    await engine.close();
    times.sort((a, b) => a - b);
    const ms = times[times.length >> 1];
    const rate = (per * BATCH) / (ms / 1000);
    if (threads === 1) one = rate;
    rows.push([threads, fmt(per * BATCH), ms.toFixed(1), fmt(rate), `${(rate / one).toFixed(2)}x`]);
    console.error(`suite 3: ${threads} worker(s) done`);
  }
  out(`## 3. Worker pool — batches of ${fmt(BATCH)}, 256 profiles (median of runs; batches transferred in and results transferred out)`);
  out();
  table(['workers', 'declarations per run', 'ms per run', 'declarations/s', 'vs 1 worker'], rows);
}

// ---- 4. historical tables (the compliance model) ---------------------------------
if (SUITES.has('4')) {
  console.error('suite 4: training the compliance model on the history…');
  const trainRows = QUICK ? 50_000 : 100_000;
  const labelled = labelledBatches(history.slice(0, trainRows), fraudLabels(history.length + scored.length, 11), 8192); // labels from the same generator run as world()
  const t0 = performance.now();
  const model = await trainModel(labelled, peers, { misclassification: { weight: 0 } }, { threads: 0 });
  const trainMs = performance.now() - t0;
  const plain = ruleset(256);
  const learnt = createRuleset({ peers, profiles: plain.profiles, settings: { ...model.settings, misclassification: { weight: 0 } }, history: model.history });
  // the tables the kernel loads: a dimension training dropped (weight 0) is left out
  const loaded = model.history.dimensions.filter(dimensionLoaded);
  const values = loaded.reduce((s, d) => s + d.keys.length, 0);
  /**
   * Both rulesets in alternating rounds, so that drift of this machine's
   * speed (it can move by 1.5x within minutes) falls on both alike: per
   * round, each scores `calls` times (after `warm` calls); reported are the
   * medians of the rounds' medians, and the median of the rounds' ratios.
   */
  function interleaved(run: (() => void)[], unit: number, rounds: number, calls: number, warm: number): { rates: number[]; ratios: number[] } {
    const ms: number[][] = run.map(() => []);
    const ratios: number[][] = run.map(() => []);
    for (let r = 0; r < rounds; r++) {
      const round = run.map((f) => {
        for (let w = 0; w < warm; w++) f();
        const t: number[] = [];
        for (let c = 0; c < calls; c++) { const t0 = performance.now(); f(); t.push(performance.now() - t0); }
        return median(t);
      });
      round.forEach((x, k) => { ms[k].push(x); ratios[k].push(round[0] / x); });
    }
    return { rates: ms.map((m) => unit / (median(m) / 1000)), ratios: ratios.map(median) };
  }
  const rounds = QUICK ? 5 : 11;
  // the same tables with every weight divided by 1,000: the same lookups and sums, but no contribution
  // reaches the citing threshold, so no HISTORY reason is given (what the reasons cost, measured)
  const quiet = createRuleset({ peers, profiles: plain.profiles, settings: { ...model.settings, misclassification: { weight: 0 } }, history: { ...model.history, dimensions: model.history.dimensions.map((d) => ({ ...d, weight: d.weight / 1000 })) } });
  const kernels = [plain, learnt, quiet].map((rs) => { const k = new Kernel(); k.loadRuleset(compileRuleset(rs)); return k; });
  {
    const { rates, ratios: [, ratio] } = interleaved([() => kernels[0].score(batch), () => kernels[1].score(batch)], ROWS, rounds, QUICK ? 5 : 9, 3);
    out(`## 4. Historical tables — ${fmt(ROWS)} declarations, one thread, whole call (medians of ${rounds} alternating rounds)`);
    out();
    out(`Model trained on ${fmt(trainRows)} labelled history declarations in ${(trainMs / 1000).toFixed(1)} s (selectivity train's path; text signals off). The host maps each distinct dictionary value to its number in the tables; the kernel adds the single-field sums and probes the combinations' hash tables per row, into its extra-score column. The two rulesets score in alternating rounds; the ratio is the median of the rounds' ratios.`);
    out();
    table(['ruleset', 'declarations/s', 'vs spine'], [
      ['256 profiles (the spine, suite 2)', fmt(rates[0]), '1.00x'],
      [`256 profiles + ${loaded.length} historical tables (${fmt(values)} values; ${model.history.dimensions.length - loaded.length} of the model's ${model.history.dimensions.length} dropped by training, weight 0)`, fmt(rates[1]), `${ratio.toFixed(2)}x`],
    ]);
  }

  // the same two rulesets on the whole scoring path of the service: MessagePack
  // request bytes in, decisions with their reasons (HISTORY reasons included) encoded out
  {
    const bodies: Uint8Array[] = [];
    for (let b = 0; b < 20; b++) bodies.push(pack({ declarations: scored.slice(b * 1000, b * 1000 + 1000) }));
    let next = 0;
    const wire = (kernel: Kernel) => () => {
      const r = scoreWire(kernel, { kind: 'batch', format: 'msgpack', accept: 'msgpack', body: bodies[next++ % bodies.length], maxDeclarations: 1000 });
      if (!r.ok) throw new Error(r.error.message);
    };
    const { rates, ratios } = interleaved([wire(kernels[0]), wire(kernels[1]), wire(kernels[2])], 1000, rounds, QUICK ? 40 : 100, 40);
    out(`### 4b. The same, on the service's whole scoring path — MessagePack batches of 1,000, one thread (medians of ${rounds} alternating rounds)`);
    out();
    out('`scoreWire` (what a scoring worker runs per request, decision log off): decode and validate the request, build the batch, score, build every decision with its reasons (the HISTORY reasons found per batch), encode the reply. The third row scores with the same tables, every weight divided by 1,000: the same lookups, but no HISTORY reason reaches the citing threshold, so the difference between the last two rows is what finding, building and encoding the HISTORY reasons costs.');
    out();
    table(['ruleset', 'declarations/s', 'vs spine'], [
      ['256 profiles (the spine)', fmt(rates[0]), '1.00x'],
      ['256 profiles + historical tables', fmt(rates[1]), `${ratios[1].toFixed(2)}x`],
      ['the same tables, no HISTORY reason cited', fmt(rates[2]), `${ratios[2].toFixed(2)}x`],
    ]);
  }

  // the same two rulesets in the worker pool, as suite 3 measures the spine: batches of 8,192 in
  // flight on every worker, transferred in and out; the pool of each ruleset in turn, round by round
  {
    const BATCH = 8192;
    const per = QUICK ? 16 : 48;
    const source = batchesOf(scored.slice(ROWS), BATCH);
    const threads = Math.min(2, availableParallelism());
    // one pool at a time: with both pools alive their threads competed for the two cores, and the ratio
    // swung from 0.3x to 2x between runs; each round starts each ruleset's pool, warms it, times it, closes it
    // a fresh pool's first batches run before V8 has optimised the workers' code (suite 3 times a pool
    // long warm): each pool is warmed with three runs' worth of batches, then timed over three runs (median)
    const timed = async (rs: Ruleset): Promise<number> => {
      const e = createEngine({ ruleset: rs, threads, maxQueue: per + 8 });
      const run = async (): Promise<number> => {
        const work = Array.from({ length: per }, (_, i) => cloneBatch(source[i % source.length]));
        const t0 = performance.now();
        await Promise.all(work.map((b) => e.scoreBatch(b)));
        return performance.now() - t0;
      };
      try {
        for (let w = 0; w < 3; w++) await run();
        return median([await run(), await run(), await run()]);
      } finally {
        await e.close();
      }
    };
    const ms: number[][] = [[], []];
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t = [await timed(plain), await timed(learnt)];
      ms[0].push(t[0]); ms[1].push(t[1]); ratios.push(t[0] / t[1]);
    }
    const rates = ms.map((m) => (per * BATCH) / (median(m) / 1000));
    out(`### 4c. The same, in the worker pool — batches of ${fmt(BATCH)}, ${threads} workers (as suite 3; medians of ${rounds} alternating rounds)`);
    out();
    out(`${per} batches in flight per run, transferred in and results transferred out; each worker maps the batch's dictionary values to the tables' ids and probes them, as in suite 4. One pool at a time: each round starts the spine's pool, warms it (three runs), times three runs (their median), closes it, then does the same with the other's.`);
    out();
    table(['ruleset', 'declarations/s', 'vs spine'], [
      ['256 profiles (the spine, suite 3)', fmt(rates[0]), '1.00x'],
      ['256 profiles + historical tables', fmt(rates[1]), `${median(ratios).toFixed(2)}x`],
    ]);
  }
}

// a quick or partial run is a check, not a record: the committed results stay as they are
if (ALL && !QUICK) {
  writeFileSync(join(packageRoot(), 'bench', 'RESULTS.md'), lines.join('\n') + '\n');
  console.error('wrote bench/RESULTS.md');
} else console.error(`${QUICK ? 'quick' : 'partial'} run: bench/RESULTS.md left as it is`);
