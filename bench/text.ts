/**
 * `npm run bench:text` (part of `npm run bench`): the text module's speed on
 * goods descriptions, one thread. Prints markdown and writes
 * bench/TEXT-RESULTS.md. Figures are reported, never asserted.
 *
 * Descriptions: the synthetic generator's (HS catalogue descriptions, some
 * vague), half of them with a watch-list term appended, all distinct (an
 * id suffix defeats the stem cache's best case for the first pass).
 * Baseline: splitting into lower-case words only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { generateDeclarations } from '../src/generate/synthetic.js';
import { packageRoot } from '../src/paths.js';
import { hsFitModel } from '../src/text/hs-fit.js';
import { stems, words } from '../src/text/tokens.js';
import { compileWatchLists, validateWatchLists } from '../src/text/watchlist.js';

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };
const N = 20_000;
const extra = ['power bank', 'replica', 'precursor', 'gift', 'lithium battery'];
const rows = [...generateDeclarations({ rows: N, seed: 3, hsCodes: 300 })];
const descriptions = rows.map((r, i) => `${r.declaration.description ?? 'goods'}${i % 2 ? ` ${extra[i % extra.length]}` : ''}`);
const hs = rows.map((r) => r.declaration.hs);
const lists = compileWatchLists(validateWatchLists(JSON.parse(readFileSync(join(packageRoot(), 'examples', 'watchlists.json'), 'utf8'))));
const model = hsFitModel();

const bench = new Bench({ time: 2000, warmupIterations: 2 });
let hits = 0;
bench.add('words (baseline: normalise and split)', () => { for (const d of descriptions) words(d); });
bench.add('stems (words + Porter, cached)', () => { for (const d of descriptions) stems(d); });
bench.add(`watch-list match (${lists.terms.length} terms)`, () => { hits = 0; for (const d of descriptions) hits += lists.match(d).length; });
bench.add('HS fit, full report (ranks, top candidates)', () => { for (let i = 0; i < N; i++) model.fit(hs[i], descriptions[i], 1); });
bench.add('HS fit, scoring path (quickFit: fit of the declared chapter and heading, best heading)', () => { for (let i = 0; i < N; i++) model.quickFit(hs[i], descriptions[i]); });
// in a batch, descriptions are dictionary-encoded: the fit is computed once per distinct (code, description)
bench.add('HS fit, scoring path, once per distinct (code, description) of each 8,192-row batch', () => {
  for (let start = 0; start < N; start += 8192) {
    const seen = new Map<string, unknown>();
    for (let i = start; i < Math.min(N, start + 8192); i++) {
      const key = `${hs[i]}\u0000${descriptions[i]}`;
      if (!seen.has(key)) seen.set(key, model.quickFit(hs[i], descriptions[i]));
    }
  }
});
await bench.run();

out('# Text module: benchmark results');
out();
out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} · ${availableParallelism()} cores · one thread`);
out();
out(`${fmt(N)} synthetic goods descriptions (generator seed 3), half with a watch-list term; ${fmt(hits)} term hits per pass.`);
out();
out('| step | descriptions/s | vs baseline |');
out('|---|---:|---:|');
const base = N / ((bench.tasks[0].result as { latency: { mean: number } }).latency.mean / 1000);
for (const t of bench.tasks) {
  const rate = N / ((t.result as { latency: { mean: number } }).latency.mean / 1000);
  out(`| ${t.name} | ${fmt(rate)} | ${(rate / base).toFixed(2)}x |`);
}
out();
writeFileSync(join(packageRoot(), 'bench', 'TEXT-RESULTS.md'), `${lines.join('\n')}\n`);
console.error('wrote bench/TEXT-RESULTS.md');
