/**
 * `npm run bench`: every benchmark in turn (bench/suites.ts), each in its
 * own process, its output as it comes; at the end, one line per benchmark.
 * `--quick` goes to every benchmark (its quick mode); `--only` and
 * `--skip` choose among them. Exits 1 when a benchmark failed (the others
 * still ran), 2 for a bad option, 130 when stopped by Ctrl-C.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { BENCHMARKS, plan, runSteps, summary, type Step } from './suites.js';

const names = BENCHMARKS.map((b) => `    ${b.name.padEnd(9)} npm run bench:${b.name.padEnd(9)} ${b.about}`).join('\n');
const values = benchArgs('bench', { quick: { type: 'boolean' }, only: { type: 'string' }, skip: { type: 'string' }, 'dry-run': { type: 'boolean' } }, `
  --quick            each benchmark's quick mode (shorter runs; a quick run leaves the
                     committed RESULTS files as they are)
  --only a,b         run these benchmarks only
  --skip a,b         run all but these
  --dry-run          print the commands, run nothing

  The benchmarks, in the order they run (each has its own options: npm run bench:NAME -- --help):
${names}`);

const list = (s: string | undefined) => (s === undefined ? undefined : s.split(',').map((x) => x.trim()).filter((x) => x !== ''));
let steps: Step[];
try {
  steps = plan({ quick: values.quick === true, only: list(values.only), skip: list(values.skip) });
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\nOptions: npm run bench -- --help\n`);
  process.exit(2);
}
const distBench = dirname(fileURLToPath(import.meta.url));
if (values['dry-run'] === true) {
  for (const s of steps) process.stdout.write(`node ${distBench}/${s.benchmark.file}${s.args.length ? ` ${s.args.join(' ')}` : ''}\n`);
  process.exit(0);
}
// Ctrl-C reaches the running benchmark too (same process group): it stops, and no further one starts
let stopped = false;
process.on('SIGINT', () => { stopped = true; });
const t0 = performance.now();
const results = await runSteps(steps, distBench, { stopped: () => stopped });
process.stderr.write(`\nnpm run bench: ${((performance.now() - t0) / 60000).toFixed(1)} min\n${summary(steps, results).join('\n')}\n`);
process.exit(stopped ? 130 : results.some((r) => r.status !== 0) ? 1 : 0);
