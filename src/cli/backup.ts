/**
 * `selectivity backup`: a consistent copy of a data directory, taken while
 * the service runs. The store through SQLite's online backup (a snapshot
 * of one moment: a file copy of a store being written can come back
 * damaged), checked with quick_check; then the files beside it, each as
 * it stood: peers.json, model.json, tokens.json, the back-test jobs, and
 * the history store (the segments its manifest lists, as the manifest was
 * read, then that manifest). The copy is itself a data directory:
 * `selectivity serve --data-dir <copy>` runs on it.
 */
import { chmodSync, closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { errors } from '../errors.js';
import { createOwnerOnly, DATA_FILE_MODE, fsyncDir, writeFileDurable } from '../store/durable.js';
import { BUSY_TIMEOUT_MS, STORE_FILE } from '../store/sqlite.js';
import { checkStore } from '../store/check.js';
import { HISTORY_DIR, MANIFEST_FILE, parseManifest } from '../history/store.js';

export const BACKUP_HELP = `Usage: selectivity backup --to <dir> [options]

Copies a data directory, consistently, while the service runs (or not):
the store selectivity.db through SQLite's online backup, checked with
PRAGMA quick_check, then peers.json, model.json, tokens.json, the back-test
jobs (backtests/) and the history store (history/). The copy is itself a
data directory: "selectivity serve --data-dir <dir>" runs on it. Restore by
putting it in the place of the data directory, the service stopped
(docs/service.md, "Backup, restore and upgrades").

Options:
  --to <dir>        where the copy goes: a new or empty directory, outside the data directory
                    (written beside it as .<name>.unfinished-<pid>, renamed at the end)
  --data-dir <dir>  the data directory to copy (default ./data) [SELECTIVITY_DATA_DIR]
  --json            print what was copied as JSON
`;

/** The files of a data directory a backup copies beside the store, when they are there. */
const SINGLE_FILES = ['peers.json', 'model.json', 'tokens.json'];
const BACKTESTS_DIR = 'backtests';

interface Copied { file: string; bytes: number }

/** Copies src to dst through a temporary file, made durable (fsync, rename); the copy is owner-only, whatever the mode of src (files made before 2026-12-08 kept the umask's). */
function copyDurable(src: string, dst: string): number {
  const tmp = `${dst}.partial`;
  copyFileSync(src, tmp);
  chmodSync(tmp, DATA_FILE_MODE);
  const fd = openSync(tmp, 'r+');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, dst);
  return statSync(dst).size;
}

/** The store's online backup into `dst`: one step, so the copy is the store as it stood at one moment (a step of a few pages would start over each time the service commits). */
async function backupStore(src: string, dst: string): Promise<number> {
  createOwnerOnly(dst); // owner-only, as the service makes its store
  const db = new Database(src, { fileMustExist: true });
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    await db.backup(dst, { progress: () => 2 ** 30 });
  } finally {
    db.close();
  }
  const fd = openSync(dst, 'r+');
  try { fsyncSync(fd); } finally { closeSync(fd); }
  return statSync(dst).size;
}

export async function backupCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { to: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(BACKUP_HELP); return 0; }
  if (positionals.length > 0) throw errors.SEL_ERR_OPTION_INVALID(`backup takes no arguments, got ${positionals.join(' ')}`, { field: 'argv', expected: '--to <dir>', got: positionals });
  if (!values.to) throw errors.SEL_ERR_OPTION_INVALID('backup needs --to <dir>, where the copy goes', { field: 'to', expected: 'a new or empty directory' });
  const dataDir = resolve(values['data-dir'] ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  const to = resolve(values.to);
  const storePath = join(dataDir, STORE_FILE);
  if (!existsSync(storePath)) throw errors.SEL_ERR_FILE_NOT_FOUND(`no store at ${storePath}`, { field: 'data-dir', expected: `a data directory holding ${STORE_FILE}`, got: dataDir });
  const inside = relative(dataDir, to);
  if (inside === '' || (inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside))) {
    throw errors.SEL_ERR_OPTION_INVALID(`--to ${to} is the data directory or inside it`, { field: 'to', expected: 'a directory outside the data directory', got: to });
  }
  if (existsSync(to) && (!statSync(to).isDirectory() || readdirSync(to).length > 0)) {
    throw errors.SEL_ERR_OPTION_INVALID(`--to ${to} is not a new or empty directory: a backup never writes over files`, { field: 'to', expected: 'a new or empty directory', got: to });
  }
  const say = (line: string) => { if (!values.json) process.stderr.write(`${line}\n`); };
  const started = Date.now();
  // everything goes into a directory beside --to, renamed to it at the end: an interrupted backup (a
  // signal, a crash) leaves a directory named as unfinished, never a copy that looks whole
  mkdirSync(dirname(to), { recursive: true });
  const final = to;
  const work = join(dirname(to), `.${basename(to)}.unfinished-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { mode: 0o700 });
  const copied: Copied[] = [];
  try {
    say(`backup: the store ${storePath}…`);
    const t0 = Date.now();
    const bytes = await backupStore(storePath, join(work, STORE_FILE));
    copied.push({ file: STORE_FILE, bytes });
    say(`backup: the store copied (${(bytes / 1e6).toFixed(1)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s); checking it…`);
    const check = checkStore(join(work, STORE_FILE));
    if (!check.ok) throw errors.SEL_ERR_STORAGE(`the copy of the store fails its check: ${check.problems.join('; ')}`, { field: 'store', expected: 'a store that passes PRAGMA quick_check (is the original damaged? serve\'s /readyz says so)', got: check.problems });
    for (const f of SINGLE_FILES) {
      if (existsSync(join(dataDir, f))) copied.push({ file: f, bytes: copyDurable(join(dataDir, f), join(work, f)) });
    }
    const jobs = join(dataDir, BACKTESTS_DIR);
    if (existsSync(jobs)) {
      mkdirSync(join(work, BACKTESTS_DIR), { mode: 0o700 });
      // each job and report file is replaced whole (rename) by the service: each is copied as one of its versions
      for (const f of readdirSync(jobs).filter((x) => x.endsWith('.json') && !x.startsWith('.')).sort()) {
        try {
          copied.push({ file: `${BACKTESTS_DIR}/${f}`, bytes: copyDurable(join(jobs, f), join(work, BACKTESTS_DIR, f)) });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // a job file removed meanwhile
        }
      }
      fsyncDir(join(work, BACKTESTS_DIR));
    }
    const history = join(dataDir, HISTORY_DIR);
    if (existsSync(join(history, MANIFEST_FILE))) {
      // the manifest as read now (one read: its bytes are what the copy's manifest is), and the segments it lists (written once, never changed): an import that
      // commits meanwhile adds segments this manifest does not list, so the copy is the store before it
      const manifestBytes = readFileSync(join(history, MANIFEST_FILE));
      const manifest = parseManifest(manifestBytes, join(history, MANIFEST_FILE));
      mkdirSync(join(work, HISTORY_DIR), { mode: 0o700 });
      for (const s of manifest.segments) copied.push({ file: `${HISTORY_DIR}/${s.file}`, bytes: copyDurable(join(history, s.file), join(work, HISTORY_DIR, s.file)) });
      writeFileDurable(join(work, HISTORY_DIR, MANIFEST_FILE), manifestBytes, { createMode: DATA_FILE_MODE });
      copied.push({ file: `${HISTORY_DIR}/${MANIFEST_FILE}`, bytes: manifestBytes.length });
    }
    fsyncDir(work);
    // an empty --to is replaced by the finished copy (rename(2) takes the place of an empty directory)
    try {
      renameSync(work, final);
    } catch (e) {
      throw errors.SEL_ERR_STORAGE(`cannot put the finished copy in place of ${final}: ${(e as Error).message}`, { field: 'to', expected: 'a new directory, or an empty one that is not a mount point', got: final });
    }
    fsyncDir(dirname(final));
  } catch (e) {
    rmSync(work, { recursive: true, force: true }); // no copy that looks whole
    throw e;
  }
  const total = copied.reduce((s, c) => s + c.bytes, 0);
  if (values.json) process.stdout.write(`${JSON.stringify({ dataDir, to, seconds: (Date.now() - started) / 1000, bytes: total, files: copied }, null, 2)}\n`);
  else process.stdout.write(`backup of ${dataDir} in ${to}: ${copied.length} files, ${(total / 1e6).toFixed(1)} MB, ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}
