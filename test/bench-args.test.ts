/**
 * The benchmarks' command lines (bench/args.ts): --help lists the options
 * and exits 0; an unknown option or one without its value is said in one
 * line, without a stack trace, and exits 2 before anything is measured or
 * written. The scripts run from dist/ (`npm run build:ts` first).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = (name: string) => fileURLToPath(new URL(`../dist/bench/${name}.js`, import.meta.url));
const run = (name: string, args: string[]) => spawnSync(process.execPath, [script(name), ...args], { encoding: 'utf8', timeout: 30_000 });

describe('benchmark options', () => {
  it.each([
    ['run', 'bench:kernel', '--suites'],
    ['service', 'bench:service', '--decision-log'],
    ['peers', 'bench:peers', '--rows'],
    ['profiles', 'bench:profiles', '--quick'],
    ['text', 'bench:text', '--quick'],
    ['backtest', 'bench:backtest', '--reuse'],
    ['decision-log', 'bench:log', '--decisions'],
    ['result-buffer', 'bench:result-buffer', '--rounds'],
  ])('%s: --help lists the options; an unknown option exits 2 with one line', (file, name, option) => {
    const help = run(file, ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain(`npm run ${name} -- [options]`);
    if (option) expect(help.stdout).toContain(option);
    const bad = run(file, ['--no-such-option']);
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toBe(`${name}: Unknown option '--no-such-option'\nOptions: npm run ${name} -- --help\n`);
  });

  it('an option without its value is named, not a stack trace', () => {
    const r = run('run', ['--suites']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("bench:kernel: Option '--suites <value>' argument missing");
    expect(r.stderr).not.toContain('    at ');
  });
});
