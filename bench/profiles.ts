/**
 * `npm run bench:profiles` (part of `npm run bench`): the cost of changing
 * the profile set of a running service. Prints markdown and writes
 * bench/PROFILES-RESULTS.md (not with --quick). Figures are reported, never
 * asserted.
 *
 *  1. compiling a ruleset (peer tables + N profiles into bitmaps and the
 *     kernel image), N = 64, 256, 1024, 4096: median of repeated compiles;
 *  2. swapping it into a running pool of 2 workers: from setRuleset() to the
 *     first batch of 8,192 declarations scored on the new version by every
 *     worker, against the same batches on an unchanged version (baseline);
 *  3. kernel throughput with 1,024 profiles against 64 (one thread).
 *
 * Options: --quick.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { createEngine } from '../src/engine.js';
import { Kernel } from '../src/kernel/kernel.js';
import { packageRoot } from '../src/paths.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset, type Ruleset } from '../src/ruleset/ruleset.js';
import { batchesOf, benchProfiles, cloneBatch, median, peerTables, world } from './data.js';
import { benchArgs } from './args.js';

const values = benchArgs('bench:profiles', { quick: { type: 'boolean' } }, `
  --quick  fewer repetitions; bench/PROFILES-RESULTS.md left as it is`);
const QUICK = values.quick === true;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };

console.error('generating synthetic data…');
const { history, scored } = world(QUICK ? 100_000 : 300_000, 100_000 + 4 * 8192, 11);
const peers = peerTables(history);
const sample = history.slice(0, 50_000);
// each set differs from the last (seed), so every swap is a real change
// profiles alone: text signals off (their cost is measured by bench:text)
const ruleset = (n: number, seed = 5): Ruleset => createRuleset({ peers, profiles: benchProfiles(n, seed, sample), settings: { misclassification: { weight: 0 } } });

out('# Profile set changes: benchmark results');
out();
out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} · ${availableParallelism()} cores${QUICK ? ' · quick mode' : ''}`);
out();
out(`Peer tables from ${fmt(history.length)} synthetic declarations (${peers.groups.map((g, i) => `${peers.levels[i].name}: ${fmt(g.size)}`).join(', ')} groups); profiles drawn like analysts write them (bench/data.ts).`);
out();

// ---- 1. compile ------------------------------------------------------------------
{
  const rows: (string | number)[][] = [];
  for (const n of [64, 256, 1024, 4096]) {
    const sets = Array.from({ length: QUICK ? 3 : 7 }, (_, i) => ruleset(n, 100 + i));
    compileRuleset(sets[0]); // warm
    const ms = sets.map((rs) => { const t0 = performance.now(); compileRuleset(rs); return performance.now() - t0; });
    rows.push([n, median(ms).toFixed(1), Math.max(...ms).toFixed(1)]);
    console.error(`compile ${n}…`);
  }
  out('## 1. Compiling a ruleset (main thread)');
  out();
  out('| profiles | median ms | max ms |');
  out('|---:|---:|---:|');
  for (const r of rows) out(`| ${r.join(' | ')} |`);
  out();
}

// ---- 2. swap into a running pool -------------------------------------------------------
{
  const BATCH = 8192;
  const threads = 2;
  const batches = batchesOf(scored.slice(100_000), BATCH).slice(0, 4);
  const rows: (string | number)[][] = [];
  for (const n of [64, 1024]) {
    const engine = createEngine({ ruleset: ruleset(n, 1), threads });
    await Promise.all(batches.map((b) => engine.scoreBatch(cloneBatch(b)))); // warm every worker
    const steady: number[] = [];
    const swap: number[] = [];
    const compile: number[] = [];
    for (let run = 0; run < (QUICK ? 3 : 9); run++) {
      // baseline: one batch per worker on the version they hold
      let t0 = performance.now();
      await Promise.all(batches.slice(0, threads).map((b) => engine.scoreBatch(cloneBatch(b))));
      steady.push(performance.now() - t0);
      // swap: compile + install, then one batch per worker on the new version (each worker loads it)
      const next = ruleset(n, 1000 + run);
      t0 = performance.now();
      const version = engine.setRuleset(next);
      compile.push(performance.now() - t0);
      const results = await Promise.all(batches.slice(0, threads).map((b) => engine.scoreBatch(cloneBatch(b))));
      swap.push(performance.now() - t0);
      if (results.some((r) => r.rulesetVersion !== version)) throw new Error('a batch was scored on the old version after the swap');
    }
    await engine.close();
    rows.push([n, median(compile).toFixed(1), median(swap).toFixed(1), median(steady).toFixed(1), (median(swap) - median(steady)).toFixed(1)]);
    console.error(`swap ${n}…`);
  }
  out(`## 2. Swapping a new profile set into a running pool (${threads} workers, one batch of ${fmt(BATCH)} per worker)`);
  out();
  out('| profiles | setRuleset (compile + install) ms | swap → every worker scored a batch on the new version, ms | same batches, unchanged version (baseline), ms | cost of the swap, ms |');
  out('|---:|---:|---:|---:|---:|');
  for (const r of rows) out(`| ${r.join(' | ')} |`);
  out();
}

// ---- 3. throughput 1,024 vs 64 profiles ---------------------------------------------------
{
  const [batch] = batchesOf(scored.slice(0, 100_000), 100_000);
  const rates: Record<number, number> = {};
  for (const n of [64, 1024]) {
    const kernel = new Kernel();
    kernel.loadRuleset(compileRuleset(ruleset(n)));
    const bench = new Bench({ time: QUICK ? 300 : 1500, warmupIterations: 3, ...(QUICK ? { iterations: 5 } : {}) });
    bench.add(String(n), () => { kernel.score(batch); });
    await bench.run();
    rates[n] = 100_000 / ((bench.tasks[0].result as { latency: { mean: number } }).latency.mean / 1000);
    console.error(`throughput ${n}…`);
  }
  out('## 3. Kernel throughput, 100,000 declarations, one thread');
  out();
  out('| profiles | declarations/s | vs 64 profiles |');
  out('|---:|---:|---:|');
  out(`| 64 | ${fmt(rates[64])} | 1.00x |`);
  out(`| 1,024 | ${fmt(rates[1024])} | ${(rates[1024] / rates[64]).toFixed(2)}x |`);
  out();
}

const file = join(packageRoot(), 'bench', 'PROFILES-RESULTS.md');
// a quick run is a check, not a record: the committed results stay as they are
if (QUICK) console.error(`quick run: ${file} left as it is`);
else {
  writeFileSync(file, `${lines.join('\n')}\n`);
  console.error(`wrote ${file}`);
}
