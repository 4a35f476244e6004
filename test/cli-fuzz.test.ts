/**
 * Every command of the CLI, run in process: first a working invocation of
 * each, then seeded mutations of it (an option's value replaced by an odd
 * one, an option added or dropped, the input swapped for an empty file, a
 * header alone, cut JSON, binary bytes, a directory, a missing path or a
 * path where no file can be made). Whatever comes in, a failure names its
 * error (a SEL_ERR code, or the help for a missing subcommand) and exits
 * non-zero; nothing, failure or success, prints a stack trace
 * (docs/errors.md, docs/api.md#exit-codes).
 */
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';
import { pick, rng, runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-cli-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RUNS = 400;
/** FUZZ_TRACE=<file>: each run's arguments, then its exit code and time, appended to the file. */
const TRACE = process.env.FUZZ_TRACE;
const at = (...p: string[]) => join(dir, ...p);

describe('the CLI, fuzzed', () => {
  it(`names every failure and never prints a stack trace, over ${RUNS} seeded mutations of a working call of every command`, async () => {
    const data = at('data');
    expect((await runCli(['generate', '--rows', '1000', '--seed', '3', '--out', at('g.csv')])).code).toBe(0);
    writeFileSync(at('empty.csv'), '');
    writeFileSync(at('header.csv'), 'id,date\n');
    writeFileSync(at('bad.ndjson'), '{"id":\n[1,2]\n"x"\n');
    writeFileSync(at('cut.json'), '{');
    writeFileSync(at('array.json'), '[]');
    writeFileSync(at('binary.csv'), Buffer.from([0, 255, 254, 1, 2, 10, 44, 44, 10]));
    mkdirSync(at('texts'));
    writeFileSync(at('texts', 'a.txt'), 'Seizure of counterfeit watches shipped by sea from CN, undervalued.');
    writeFileSync(at('texts', 'b.txt'), 'Cocaine found in a container of bananas from EC; falsely declared.');
    cpSync(join(packageRoot(), 'examples', 'profiles.json'), at('profiles.json'));
    const broken = ['empty.csv', 'header.csv', 'bad.ndjson', 'cut.json', 'array.json', 'binary.csv', 'missing.csv', '.'].map((f) => at(f));
    // where no file can be made, in a directory that exists (Linux: /proc takes no new files, root or not)
    const unwritable = process.platform === 'linux' ? ['/proc/selectivity-fuzz.csv'] : [];
    const ODD = ['', '0', '-1', '1e309', 'NaN', 'abc', '2026-13-01', '2026-02-30', '0.5', '1.5', '100', 'kcs', 'auto', 'day', 'fraud', 'Fraud', '999999999999', ...broken, ...unwritable];
    // a working call of each command; the data directory gets its history before backtest and feedback read it
    const BASES: string[][] = [
      ['generate', '--rows', '50', '--seed', '5', '--out', at('gen.csv')],
      ['score', at('g.csv'), '--threads', '0', '--out', at('decisions.ndjson'), '--random-rate', '0.05'],
      ['study', at('g.csv'), '--top', '20', '--out', at('study.json')],
      ['peers', 'build', at('g.csv'), '--out', join(data, 'peers.json'), '--min-group-size', '5'], // the peer tables backtest reads
      ['train', '--train', at('g.csv'), '--label', 'fraud', '--out', at('model.json'), '--threads', '0'],
      ['evaluate', '--file', at('g.csv'), '--split', '0.7', '--label', 'fraud', '--top', '0.05', '--threads', '0'],
      ['replay', '--file', at('g.csv'), '--label', 'fraud', '--inspect', '30'],
      ['history', 'import', at('g.csv'), '--label', 'fraud', '--data-dir', data],
      ['profiles', 'import', at('profiles.json'), '--data-dir', data],
      ['profiles', 'list', '--data-dir', data],
      ['feedback', 'report', '--data-dir', data, '--per', 'month'],
      ['backtest', '--profiles', at('profiles.json'), '--data-dir', data, '--threads', '0'],
      ['text', 'match', 'counterfeit watches and cocaine'],
      ['intel', at('texts'), '--out', at('intel/')],
    ];
    const codes = new Map<number, number>();
    const bad: { args: string; code: number; stderr: string }[] = [];
    const run = async (args: string[], command: string) => {
      if (TRACE) appendFileSync(TRACE, `${args.join(' ').replaceAll(dir, '$D')}\n`); // written before the run: the last line names a run that hangs
      const t0 = performance.now();
      const r = await runCli(args);
      if (TRACE) appendFileSync(TRACE, `  -> exit ${r.code}, ${(performance.now() - t0).toFixed(0)} ms\n`);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      const stack = /\n\s+at .+:\d+:\d+\)?/.test(r.stderr);
      // a command that takes a subcommand, given none, prints its help and exits 1
      const named = /SEL_ERR_[A-Z_]+/.test(r.stderr) || (r.code === 1 && r.stdout.includes(`selectivity ${command}`));
      if (stack || (r.code !== 0 && !named)) bad.push({ args: args.join(' ').replaceAll(dir, '$D'), code: r.code, stderr: r.stderr.slice(0, 400) });
      return r;
    };
    const cwd = process.cwd();
    const before = readdirSync(cwd).sort();
    // odd values land where paths go (--out 0.5, --data-dir ''), and a dropped --data-dir means ./data: all
    // that is relative is made in the fuzz's directory, not in the working tree (the pool is 'forks': chdir works)
    process.chdir(dir);
    try {
      for (const base of BASES) {
        const r = await run(base, base[0]);
        expect(r.code, `${base.join(' ')}: ${r.stderr}`).toBe(0);
      }
      const r = rng(20261206);
      for (let k = 0; k < RUNS; k++) {
        const base = BASES[k % BASES.length];
        const args = [...base];
        const options = args.map((a, i) => (a.startsWith('--') ? i : -1)).filter((i) => i >= 0);
        const positional = args.findIndex((a, i) => i > 0 && !a.startsWith('--') && !args[i - 1].startsWith('--') && a.startsWith(dir));
        const what = r();
        if (what < 0.5 && options.length > 0) {
          // an option's value replaced by an odd one
          const o = pick(r, options);
          if (o + 1 < args.length && !args[o + 1].startsWith('--')) args[o + 1] = pick(r, ODD);
          else args.splice(o + 1, 0, pick(r, ODD));
        } else if (what < 0.7 && positional > 0) {
          args[positional] = pick(r, broken); // the input swapped for a broken one
        } else if (what < 0.85 && options.length > 0) {
          const o = pick(r, options); // an option dropped (with its value)
          args.splice(o, o + 1 < args.length && !args[o + 1].startsWith('--') ? 2 : 1);
        } else {
          args.push(pick(r, base.filter((a) => a.startsWith('--')).concat('--json', '--out', '--columns')), pick(r, ODD)); // an option repeated or added
        }
        await run(args, base[0]);
      }
    } finally {
      process.chdir(cwd);
    }
    expect(readdirSync(cwd).sort()).toEqual(before); // nothing made in the working tree
    expect(bad).toEqual([]);
    // the mutations reached both ends: refusals, and calls that still did their work
    expect(codes.get(2) ?? 0).toBeGreaterThan(RUNS / 4);
    expect(codes.get(0) ?? 0).toBeGreaterThan(RUNS / 10);
  }, 180_000);
});
