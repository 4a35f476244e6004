/**
 * `npm run bench:text` (part of `npm run bench`): the text module's speed on
 * goods descriptions, one thread. Prints markdown and writes
 * bench/TEXT-RESULTS.md (not with --quick). Figures are reported, never
 * asserted.
 *
 * Descriptions: the synthetic generator's (HS catalogue descriptions, some
 * vague), half of them with a watch-list term appended, each ending with a
 * model number of its own ("model 9IX"), so that all 20,000 are distinct:
 * the generator alone repeats a few thousand descriptions, and every cache
 * keyed by description would hit. Baseline: splitting into lower-case words
 * only.
 *
 * Section 2 measures the scoring path as a worker runs it (Kernel.score on
 * 8,192-row batches: text signals, then the kernel), with and without text
 * signals; caches cold (every pass scores descriptions never seen before:
 * new model numbers, and the ruleset reloaded, so every description is
 * stemmed, matched and fitted) and warm (the same batches again).
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
import { Kernel } from '../src/kernel/kernel.js';
import { toBatch, type ColumnarBatch } from '../src/model/columnar.js';
import { buildPeerTables, DEFAULT_LEVELS } from '../src/peers/peer-groups.js';
import { validateProfiles } from '../src/profiles/profile.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { benchArgs } from './args.js';

const values = benchArgs('bench:text', { quick: { type: 'boolean' } }, '  --quick  shorter measurements (0.5 s a step); bench/TEXT-RESULTS.md left as it is');
const QUICK = values.quick === true;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };
const N = 20_000;
const extra = ['power bank', 'replica', 'precursor', 'gift', 'lithium battery'];
const rows = [...generateDeclarations({ rows: N, seed: 3, hsCodes: 300 })];
/** Row i's description in pass `pass`: distinct across rows and passes (a model number of 3 to 5 letters and digits). */
const describe = (i: number, pass: number): string => `${rows[i].declaration.description ?? 'goods'}${i % 2 ? ` ${extra[i % extra.length]}` : ''} model ${((pass * N + i) * 7919 + 46_656).toString(36).toUpperCase()}`;
const descriptions = rows.map((_, i) => describe(i, 0));
const hs = rows.map((r) => r.declaration.hs);
const exampleLists = validateWatchLists(JSON.parse(readFileSync(join(packageRoot(), 'examples', 'watchlists.json'), 'utf8')));
const lists = compileWatchLists(exampleLists);
const model = hsFitModel();

const bench = new Bench({ time: QUICK ? 500 : 2000, warmupIterations: 2, ...(QUICK ? { iterations: 3 } : {}) });
let hits = 0;
bench.add('words (baseline: normalise and split)', () => { for (const d of descriptions) words(d); });
bench.add('stems (words + Porter, cached)', () => { for (const d of descriptions) stems(d); });
bench.add(`watch-list match (${lists.terms.length} terms)`, () => { hits = 0; for (const d of descriptions) hits += lists.match(d).length; });
bench.add('HS fit, full report (ranks, top candidates)', () => { for (let i = 0; i < N; i++) model.fit(hs[i], descriptions[i], 1); });
bench.add('HS fit, scoring path (quickFit: fit of the declared chapter and heading, best heading)', () => { for (let i = 0; i < N; i++) model.quickFit(hs[i], descriptions[i]); });
await bench.run();

// ---- 2. the scoring path with text signals ------------------------------------
/** The declarations of one pass in 8,192-row batches, with that pass's descriptions. */
const batchesOfPass = (pass: number): ColumnarBatch[] => {
  const decls = rows.map((r, i) => ({ ...r.declaration, description: describe(i, pass) }));
  const out: ColumnarBatch[] = [];
  for (let at = 0; at < N; at += 8192) out.push(toBatch(decls.slice(at, at + 8192)).batch);
  return out;
};
const batches = batchesOfPass(0);
let pass = 0;
const peers = buildPeerTables(batches, DEFAULT_LEVELS);
const allProfiles = validateProfiles(JSON.parse(readFileSync(join(packageRoot(), 'examples', 'profiles.json'), 'utf8')));
const variants = [
  { name: 'no text signals (baseline: example profiles without the keyword one, no watch lists, misclassification off)', profiles: allProfiles.filter((p) => !p.conditions.keywords), watchLists: [], weight: 0 },
  { name: 'keywords: example watch lists and keyword profile', profiles: allProfiles, watchLists: exampleLists, weight: 0 },
  { name: 'keywords + misclassification (the defaults of npm start)', profiles: allProfiles, watchLists: exampleLists, weight: 1.5 },
];
const kernel = new Kernel();
const path = new Bench({ time: QUICK ? 500 : 3000, warmupIterations: 1, ...(QUICK ? { iterations: 3 } : {}) });
for (const v of variants) {
  const compiled = compileRuleset(createRuleset({ peers, profiles: v.profiles, watchLists: v.watchLists, settings: { misclassification: { weight: v.weight } } }));
  for (const cold of v.weight === 0 && v.watchLists.length === 0 ? [false] : [true, false]) {
    // cold: before each pass (not timed), batches of descriptions never scored before, and the ruleset reloaded
    let work = batches;
    const beforeEach = cold ? () => { work = batchesOfPass(++pass); kernel.loadRuleset(compiled); } : () => { work = batches; };
    path.add(`${v.name}${v.watchLists.length ? (cold ? ', caches cold' : ', caches warm') : ''}`, () => {
      if (kernel.rulesetVersion !== compiled.version) kernel.loadRuleset(compiled);
      for (const b of work) kernel.score(b);
    }, { beforeEach });
  }
}
await path.run();

out('# Text module: benchmark results');
out();
out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} · ${availableParallelism()} cores · one thread${QUICK ? ' · quick mode' : ''}`);
out();
out(`${fmt(N)} synthetic goods descriptions (generator seed 3), half with a watch-list term, each with a model number of its own: ${fmt(new Set(descriptions).size)} distinct; ${fmt(hits)} term hits per pass. Each step runs over the same descriptions pass after pass: the stems of their words are cached after the first pass ("stems"); nothing else is.`);
out();
out('| step | descriptions/s | vs baseline |');
out('|---|---:|---:|');
const base = N / ((bench.tasks[0].result as { latency: { mean: number } }).latency.mean / 1000);
for (const t of bench.tasks) {
  const rate = N / ((t.result as { latency: { mean: number } }).latency.mean / 1000);
  out(`| ${t.name} | ${fmt(rate)} | ${(rate / base).toFixed(2)}x |`);
}
out();
out('## Scoring path with text signals (Kernel.score, 8,192-row batches, one worker thread)');
out();
out(`The same ${fmt(N)} declarations; peer tables from them; median of the passes. "Cold": each pass scores ${fmt(N)} descriptions never scored before (new model numbers; batches built and the ruleset reloaded before the pass, not timed), so every description is stemmed (its known words from the stem cache, its model number not), matched and fitted: the target's case, a worker's cost per new description. "Warm": the same batches again, every description from the caches, as in traffic that repeats its descriptions.`);
out();
out('| scoring | declarations (descriptions)/s | vs no text |');
out('|---|---:|---:|');
const median = (t: (typeof path.tasks)[number]) => (t.result as { latency: { p50?: number; mean: number } }).latency.p50 ?? (t.result as { latency: { mean: number } }).latency.mean;
const base2 = N / (median(path.tasks[0]) / 1000);
for (const t of path.tasks) {
  const rate = N / (median(t) / 1000);
  out(`| ${t.name} | ${fmt(rate)} | ${(rate / base2).toFixed(2)}x |`);
}
out();
// a quick run is a check, not a record: the committed results stay as they are
if (QUICK) console.error('quick run: bench/TEXT-RESULTS.md left as it is');
else {
  writeFileSync(join(packageRoot(), 'bench', 'TEXT-RESULTS.md'), `${lines.join('\n')}\n`);
  console.error('wrote bench/TEXT-RESULTS.md');
}
