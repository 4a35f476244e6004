/**
 * `npm run bench:result-buffer`: what the copy of a result out of the
 * kernel's memory costs, into a new buffer (Kernel.score's default: the
 * result leaves with its own buffer) against the kernel's reused one
 * (ScoreOptions.reuse), docs/benchmarks.md "Why the kernel call swings".
 * One kernel, the spine's ruleset (256 profiles), the two ways in
 * alternating rounds; per round the median of its calls, reported the
 * medians of the rounds and of their ratios. Each batch size runs in a
 * process of its own: what a new buffer costs depends on the C library's
 * state, which the sizes before would set (glibc keeps memory of the size
 * it last unmapped). Reported, never asserted.
 *
 * Options: --rows a,b,… (batch sizes, default 100000,8192,4096,2048,1000),
 * --rounds N (default 12).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Kernel } from '../src/kernel/kernel.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { batchesOf, benchProfiles, median, peerTables, world } from './data.js';
import { benchArgs } from './args.js';

const opt = benchArgs('bench:result-buffer', { rows: { type: 'string' }, rounds: { type: 'string' }, child: { type: 'boolean' } }, `
  --rows a,b,…   batch sizes (default 100000,8192,4096,2048,1000)
  --rounds N     alternating rounds per size (default 12)
`);
const sizes = (opt.rows ?? '100000,8192,4096,2048,1000').split(',').map(Number);
const rounds = Number(opt.rounds ?? 12);
if (sizes.some((n) => !Number.isInteger(n) || n < 1) || !Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write('bench:result-buffer: --rows takes positive integers, --rounds a positive integer\n');
  process.exit(2);
}
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
if (!opt.child) {
  console.log('| rows | result bytes | new buffer, ms per call | reused, ms per call | speed-up (median of the rounds\' ratios) | rounds\' ratios |');
  console.log('|---:|---:|---:|---:|---:|---|');
  for (const n of sizes) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--rows', String(n), '--rounds', String(rounds)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) process.exit(r.status ?? 1);
    process.stdout.write(r.stdout);
  }
  process.exit(0);
}
const { history, scored } = world(100_000, Math.max(...sizes), 11);
const peers = peerTables(history);
const kernel = new Kernel();
kernel.loadRuleset(compileRuleset(createRuleset({ peers, profiles: benchProfiles(256, 5, history.slice(0, 50_000)), settings: { misclassification: { weight: 0 } } })));

for (const n of sizes) {
  const [batch] = batchesOf(scored.slice(0, n), n);
  const bytes = kernel.score(batch).buffer.byteLength;
  const calls = Math.max(5, Math.min(200, Math.round(2e6 / n)));
  const ms: number[][] = [[], []];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const m = [false, true].map((reuse) => {
      for (let w = 0; w < 2; w++) kernel.score(batch, undefined, { reuse });
      const t: number[] = [];
      for (let c = 0; c < calls; c++) { const t0 = performance.now(); kernel.score(batch, undefined, { reuse }); t.push(performance.now() - t0); }
      return median(t);
    });
    ms[0].push(m[0]);
    ms[1].push(m[1]);
    ratios.push(m[0] / m[1]);
  }
  console.log(`| ${fmt(n)} | ${fmt(bytes)} | ${median(ms[0]).toFixed(3)} | ${median(ms[1]).toFixed(3)} | ${median(ratios).toFixed(2)}x | ${ratios.map((x) => x.toFixed(2)).join(' ')} |`);
}
