/**
 * `npm run bench` (bench/all.ts, bench/suites.ts): every benchmark in turn,
 * --quick passed to each, --only and --skip, a failed benchmark reported
 * without stopping the others. The benchmarks themselves are not run here
 * (speed lives in benchmarks, not tests): the steps run stand-in commands.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BENCHMARKS, plan, runSteps, summary } from '../bench/suites.js';

const all = fileURLToPath(new URL('../dist/bench/all.js', import.meta.url));
const cli = (args: string[]) => spawnSync(process.execPath, [all, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('npm run bench: the plan', () => {
  it('runs every benchmark in order, --quick passed to each', () => {
    const steps = plan({ quick: true });
    expect(steps.map((s) => s.benchmark.name)).toEqual(['kernel', 'service', 'peers', 'profiles', 'text', 'backtest', 'log']);
    for (const s of steps) expect(s.args).toEqual(['--quick']);
    expect(plan({}).every((s) => s.args.length === 0)).toBe(true);
  });

  it('--only keeps the benchmarks order whatever order they are named in; --skip drops', () => {
    expect(plan({ only: ['log', 'kernel'] }).map((s) => s.benchmark.name)).toEqual(['kernel', 'log']);
    expect(plan({ skip: ['backtest', 'service'] }).map((s) => s.benchmark.name)).toEqual(['kernel', 'peers', 'profiles', 'text', 'log']);
    expect(plan({ only: ['kernel', 'text'], skip: ['text'] }).map((s) => s.benchmark.name)).toEqual(['kernel']);
  });

  it('refuses a name that is not a benchmark, and a choice that leaves nothing', () => {
    expect(() => plan({ only: ['kernel', 'kernal'] })).toThrow('--only: no benchmark "kernal"; the benchmarks are kernel, service, peers, profiles, text, backtest, log');
    expect(() => plan({ skip: ['nope'] })).toThrow('--skip: no benchmark "nope"');
    expect(() => plan({ only: ['text'], skip: ['text'] })).toThrow('leave no benchmark to run');
  });

  it('every benchmark has its built script and its own npm script', async () => {
    const pkg = (await import('../package.json', { with: { type: 'json' } })).default as { scripts: Record<string, string> };
    expect(pkg.scripts.bench).toBe('node dist/bench/all.js');
    for (const b of BENCHMARKS) expect(pkg.scripts[`bench:${b.name}`]).toBe(`node dist/bench/${b.file}`);
  });
});

describe('npm run bench: running the steps', () => {
  const node = (code: string) => ({ file: process.execPath, args: ['-e', code] });

  it('a failed benchmark is reported and the next ones still run', async () => {
    const steps = plan({ only: ['kernel', 'service', 'peers'] });
    const ran: string[] = [];
    const lines: string[] = [];
    const results = await runSteps(steps, '/nowhere', {
      command: (s) => { ran.push(s.benchmark.name); return node(s.benchmark.name === 'service' ? 'process.exit(3)' : ''); },
      progress: (l) => lines.push(l),
    });
    expect(ran).toEqual(['kernel', 'service', 'peers']);
    expect(results.map((r) => [r.name, r.status])).toEqual([['kernel', 0], ['service', 3], ['peers', 0]]);
    expect(lines).toContain('[bench 2/3] bench:service failed (exit status 3) in 0 s');
    const sum = summary(steps, results);
    expect(sum[1]).toMatch(/^ {2}bench:service {3}FAILED +\d+ s \(exit status 3\)$/);
    expect(sum[0]).toMatch(/^ {2}bench:kernel {4}ok/);
  });

  it('once stopped, no further benchmark starts', async () => {
    let stopped = false;
    const steps = plan({ only: ['kernel', 'service'] });
    const results = await runSteps(steps, '/nowhere', { command: () => { stopped = true; return node(''); }, progress: () => {}, stopped: () => stopped });
    expect(results.map((r) => r.name)).toEqual(['kernel']);
    expect(summary(steps, results)[1]).toBe('  bench:service   not run (stopped)');
  });

  it('the default command runs the built script with the step\'s arguments', async () => {
    // bench:text's --help: the one benchmark run here, for its help only
    const steps = plan({ only: ['text'] });
    steps[0].args = ['--help'];
    const results = await runSteps(steps, fileURLToPath(new URL('../dist/bench', import.meta.url)), { progress: () => {} });
    expect(results[0].status).toBe(0);
  });
});

describe('npm run bench: the command line', () => {
  it('--help lists the benchmarks with their own npm scripts', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    for (const b of BENCHMARKS) expect(r.stdout).toContain(`npm run bench:${b.name}`);
    expect(r.stdout).toContain('--only a,b');
  });

  it('--dry-run prints the commands, --quick on each', () => {
    const r = cli(['--quick', '--skip', 'service', '--dry-run']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(BENCHMARKS.length - 1);
    for (const l of lines) expect(l).toMatch(/^node .*\/dist\/bench\/[a-z-]+\.js --quick$/);
    expect(lines.some((l) => l.includes('service.js'))).toBe(false);
  });

  it('a name that is not a benchmark exits 2 with one line, before anything runs', () => {
    const r = cli(['--only', 'kernal']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('bench: --only: no benchmark "kernal"; the benchmarks are kernel, service, peers, profiles, text, backtest, log\nOptions: npm run bench -- --help\n');
  });
});
