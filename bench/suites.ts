/**
 * What `npm run bench` runs: every benchmark script, one after the other,
 * each in a process of its own (so that one's memory and threads do not
 * weigh on the next), with the options that apply to all of them passed on
 * to each. npm hands the arguments of `npm run bench -- …` to the last
 * command of a chain only, so the chain is this one script (bench/all.ts).
 */
import { spawn } from 'node:child_process';

export interface Benchmark {
  /** Its own npm script (`npm run bench:kernel`) and the name --only and --skip take ("kernel"). */
  name: string;
  /** The built script under dist/bench. */
  file: string;
  /** What it writes and measures, for --help. */
  about: string;
}

/** In the order `npm run bench` runs them: the fast, most used first. */
export const BENCHMARKS: readonly Benchmark[] = [
  { name: 'kernel', file: 'run.js', about: 'kernel vs reference, profiles, worker pool, historical tables (bench/RESULTS.md)' },
  { name: 'service', file: 'service.js', about: 'the HTTP service under load (bench/SERVICE-RESULTS.md)' },
  { name: 'peers', file: 'peers.js', about: 'peer statistics and studies (bench/PEERS-RESULTS.md)' },
  { name: 'profiles', file: 'profiles.js', about: 'compiling and swapping profile sets in a running pool (bench/PROFILES-RESULTS.md)' },
  { name: 'text', file: 'text.js', about: 'the text module on goods descriptions (bench/TEXT-RESULTS.md)' },
  { name: 'backtest', file: 'backtest.js', about: 'the history store and back-tests at national scale (bench/BACKTEST-RESULTS.md)' },
  { name: 'log', file: 'decision-log.js', about: 'the decision log as it grows (bench/LOG-RESULTS.md)' },
];

export interface PlanOptions {
  quick?: boolean;
  /** Names to run, in BENCHMARKS' order whatever order they are given in. */
  only?: readonly string[];
  skip?: readonly string[];
}

export interface Step { benchmark: Benchmark; args: string[] }

/** Which benchmarks run, with their arguments; throws a one-line Error for a name that is not a benchmark, or when nothing is left to run. */
export function plan(options: PlanOptions): Step[] {
  const names = new Set(BENCHMARKS.map((b) => b.name));
  for (const [option, list] of [['--only', options.only], ['--skip', options.skip]] as const) {
    for (const n of list ?? []) if (!names.has(n)) throw new Error(`${option}: no benchmark "${n}"; the benchmarks are ${[...names].join(', ')}`);
  }
  const only = options.only && options.only.length > 0 ? new Set(options.only) : undefined;
  const skip = new Set(options.skip ?? []);
  const steps = BENCHMARKS.filter((b) => (only === undefined || only.has(b.name)) && !skip.has(b.name)).map((benchmark) => ({ benchmark, args: options.quick ? ['--quick'] : [] }));
  if (steps.length === 0) throw new Error('--only and --skip leave no benchmark to run');
  return steps;
}

export interface StepResult { name: string; status: number | null; signal: NodeJS.Signals | null; seconds: number }

export interface RunOptions {
  /** The command of a step (default: node dist/bench/<file> with its args). */
  command?: (step: Step) => { file: string; args: string[] };
  /** Where progress lines go (default: standard error). */
  progress?: (line: string) => void;
  /** Set to stop after the step that is running (SIGINT): no further step starts. */
  stopped?: () => boolean;
}

/**
 * Runs the steps in turn, each one's output straight to this process's;
 * a step that fails does not stop the others (a long run reports every
 * benchmark it could). Resolves with each step's exit.
 */
export async function runSteps(steps: readonly Step[], distBench: string, options: RunOptions = {}): Promise<StepResult[]> {
  const command = options.command ?? ((s: Step) => ({ file: process.execPath, args: [`${distBench}/${s.benchmark.file}`, ...s.args] }));
  const progress = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const results: StepResult[] = [];
  for (const [k, step] of steps.entries()) {
    if (options.stopped?.()) break;
    const { file, args } = command(step);
    progress(`[bench ${k + 1}/${steps.length}] bench:${step.benchmark.name}${step.args.length ? ` ${step.args.join(' ')}` : ''}: ${step.benchmark.about}`);
    const t0 = performance.now();
    const { status, signal } = await new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      const child = spawn(file, args, { stdio: 'inherit' });
      child.once('error', () => resolve({ status: 127, signal: null }));
      child.once('exit', (code, sig) => resolve({ status: code, signal: sig }));
    });
    const seconds = (performance.now() - t0) / 1000;
    results.push({ name: step.benchmark.name, status, signal, seconds });
    progress(`[bench ${k + 1}/${steps.length}] bench:${step.benchmark.name} ${status === 0 ? 'done' : `failed (${signal ?? `exit status ${status}`})`} in ${seconds.toFixed(0)} s`);
  }
  return results;
}

/** One line per step run (and per step not run), for the end of `npm run bench`. */
export function summary(steps: readonly Step[], results: readonly StepResult[]): string[] {
  return steps.map((s, k) => {
    const r = results[k];
    if (!r) return `  bench:${s.benchmark.name.padEnd(9)} not run (stopped)`;
    return `  bench:${s.benchmark.name.padEnd(9)} ${r.status === 0 ? 'ok    ' : 'FAILED'} ${r.seconds.toFixed(0).padStart(5)} s${r.status === 0 ? '' : ` (${r.signal ?? `exit status ${r.status}`})`}`;
  });
}
