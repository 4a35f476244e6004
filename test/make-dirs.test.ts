/**
 * makeDirs (src/store/durable.ts), the mkdir -p every data directory and
 * output path goes through, and the commands that make directories, on
 * paths that cannot hold one: below a dangling symlink (a volume gone), and
 * under /proc, where Node's own recursive mkdir never returns. Each must
 * refuse with its named error, promptly.
 * Those cases run in child processes with a time limit, so that a
 * regression fails the test instead of hanging the suite.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDirs } from '../src/store/durable.js';
import { packageRoot } from '../src/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-make-dirs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('makeDirs', () => {
  it('makes missing parents with the mode given, accepts a directory that exists, and refuses a file in the way', () => {
    const deep = join(dir, 'a', 'b', 'c');
    makeDirs(deep, 0o700);
    expect(statSync(deep).isDirectory()).toBe(true);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700 & ~process.umask());
    makeDirs(deep); // there already: nothing to do
    makeDirs(join(dir, 'a', '.', 'b', '..', 'b', 'c')); // the same, spelt otherwise
    writeFileSync(join(dir, 'file'), 'x');
    expect(() => makeDirs(join(dir, 'file'))).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(() => makeDirs(join(dir, 'file', 'below'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  });
});

describe('directories that cannot be made', () => {
  const bin = join(packageRoot(), 'bin', 'selectivity.js');
  /** A command in a child process, stopped after 10 s (Node's recursive mkdir would spin there for ever). */
  const cli = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 10_000, cwd: dir, env: { ...process.env, CI: 'true', SELECTIVITY_TOKENS: 'port:abcdefghijklmnopqrstuvwx' } });
  mkdirSync(join(dir, 'links'), { recursive: true });
  const dangling = join(dir, 'links', 'unmounted');
  symlinkSync(join(dir, 'no-such-volume'), dangling); // a mount point's symlink, its volume gone
  const input = join(dir, 'g.csv');
  const setFile = join(dir, 'set.json');
  writeFileSync(setFile, JSON.stringify({ profiles: [{ id: 'P1', weight: 1, conditions: {} }] }));

  it('a data directory below a dangling symlink or under /proc: serve, history import, profiles and score --out refuse with named errors, and return', () => {
    expect(cli(['generate', '--rows', '50', '--out', input]).status).toBe(0);
    const places = [join(dangling, 'data'), ...(process.platform === 'linux' ? ['/proc/selectivity-test/data', '/proc/selectivity-test'] : [])];
    for (const place of places) {
      // exit 2 below HTTP status 500, 1 from 500 up (docs/api.md#exit-codes): SEL_ERR_STORAGE is a 500
      const runs: [string[], RegExp, number][] = [
        [['serve', '--data-dir', place, '--port', '0'], /SEL_ERR_CONFIG_INVALID/, 2],
        [['history', 'import', input, '--data-dir', place], /SEL_ERR_STORAGE/, 1],
        [['profiles', 'import', setFile, '--data-dir', place], /SEL_ERR_STORAGE/, 1],
        // a command that reads the store makes none: there is none to read
        [['profiles', 'list', '--data-dir', place], /SEL_ERR_FILE_NOT_FOUND/, 2],
        [['score', input, '--threads', '0', '--out', join(place, 'decisions.ndjson')], /SEL_ERR_OPTION_INVALID/, 2],
      ];
      for (const [args, code, status] of runs) {
        const r = cli(args);
        expect(r.signal, `${args.join(' ')} did not return`).toBeNull();
        expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(status);
        expect(r.stderr, args.join(' ')).toMatch(code);
        expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+\)?/);
      }
    }
  }, 120_000);
});
