/**
 * Durable file writes for everything the service acknowledges (rulesets,
 * tokens, later profiles and feedback): write a temporary file beside the
 * target, fsync it, rename it over the target, fsync the directory. A crash
 * at any point leaves either the old file or the new one, never a torn one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeSync, chmodSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { errors } from '../errors.js';

export interface DurableWriteOptions {
  /**
   * File mode, set whatever the umask (tokens use 0o600). Default: the mode
   * of the file replaced, else what the umask leaves of 0o666 (it was 0o644
   * whatever the umask, so a umask of 077 did not keep a model, an export or
   * a report from other users, and a file kept 0o600 became readable).
   */
  mode?: number;
  /**
   * The mode of a file that does not exist yet, whatever the umask (the
   * data directory's own files: 0o600, owner-only); a file replaced keeps
   * its mode (an operator's chmod stands). Ignored when `mode` is given.
   */
  createMode?: number;
}

/** The mode of the files the service writes into its data directory when it creates them: owner-only, as the store and the tokens. */
export const DATA_FILE_MODE = 0o600;

/**
 * Creates `path` empty and owner-only (DATA_FILE_MODE) when it does not
 * exist; an existing file is left as it is, mode included. For a file that
 * SQLite opens next: SQLite keeps the mode of a file that exists (and gives
 * it to its -wal and -shm files), where it would make a new one 0644 less
 * the umask.
 */
export function createOwnerOnly(path: string): void {
  try {
    closeSync(openSync(path, 'wx', DATA_FILE_MODE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

/**
 * `mkdir -p` that always returns: makes `path` and its missing parents
 * (each with `mode`), and does nothing when `path` is a directory already.
 *
 * Node's own recursive mkdir (sync and async) never returns,
 * spinning a core, when a directory on the path exists but answers ENOENT
 * for a new entry, as /proc does: Node takes ENOENT for a missing parent,
 * makes the parent (EEXIST) and tries again, for ever (seen with Node
 * 20.20 on Linux). Here each level is tried at most twice, before and
 * after its parent is made: a second ENOENT is thrown like any other error.
 */
export function makeDirs(path: string, mode = 0o777): void {
  makeDir(resolve(path), mode, true);
}

/** One level of makeDirs: on ENOENT, the parent is made and, when `retry`, this level tried once more. */
function makeDir(target: string, mode: number, retry: boolean): void {
  try {
    mkdirSync(target, { mode });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(target).isDirectory()) return; // there already, or made meanwhile
    const parent = dirname(target);
    if (code !== 'ENOENT' || !retry || parent === target) throw e;
    makeDir(parent, mode, true);
    makeDir(target, mode, false);
  }
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    // Some filesystems refuse fsync on directories (EISDIR/EINVAL); the rename is still atomic there.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The same file, however named (a relative path, a link): an output must not be an input, nor another output. */
export function samePath(a: string, b: string): boolean {
  const real = (p: string) => { try { return realpathSync(p); } catch { return resolve(p); } };
  return real(a) === real(b);
}

/**
 * A temporary file's path beside `path`, hidden and unique to this process:
 * written, then renamed over `path`. Those an earlier writer of `path` left
 * (killed with SIGKILL, which no handler sees: 13.5 MB each for an output,
 * piling up) are removed first (removeStaleTemps).
 */
export function tempPathFor(path: string): string {
  removeStaleTemps(path);
  return join(dirname(path), `.${basename(path)}.${TEMP_HOST}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * This machine (or container) in a temporary file's name: a process id is
 * checked only against this host's processes, so the files of a writer on
 * another host or in another container sharing the directory are never
 * taken for a dead one's.
 */
export const TEMP_HOST = (hostname().replace(/[^A-Za-z0-9-]/g, '').slice(0, 32) || 'host').toLowerCase();

/** How old a left temporary file must be before another writer removes it (a writer on another machine sharing the directory may still be writing one younger). */
export const STALE_TEMP_MS = 60_000;

/**
 * Removes the temporary files of `path` (tempPathFor's names) written on
 * this host whose process is gone and that were last written over
 * STALE_TEMP_MS ago; returns how many. Never throws: a directory that
 * cannot be read has nothing removed.
 */
export function removeStaleTemps(path: string, now = Date.now()): number {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.${TEMP_HOST}.`;
  let names: string[];
  try { names = readdirSync(dir); } catch { return 0; }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const file = join(dir, name);
    try {
      if (now - statSync(file).mtimeMs < STALE_TEMP_MS) continue;
      rmSync(file, { force: true });
      removed++;
    } catch { /* gone meanwhile, or not ours to remove */ }
  }
  return removed;
}

/** Whether a process with this id runs (one of another user counts: EPERM). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Atomically replaces `path` with `data` and makes it durable before returning. */
export function writeFileDurable(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): void {
  const dir = dirname(path);
  let mode = options.mode;
  if (mode === undefined) { try { mode = statSync(path).mode & 0o7777; } catch { mode = options.createMode; /* a new file: createMode, else the umask decides */ } }
  const tmp = tempPathFor(path);
  try {
    makeDirs(dir);
    const fd = openSync(tmp, 'wx', mode ?? 0o666);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (mode !== undefined) chmodSync(tmp, mode); // the umask may have narrowed the mode given to open
    renameSync(tmp, path);
    fsyncDir(dir);
  } catch (e) {
    // the temporary file may not exist, nor its directory be reachable (a path through a file): what failed is e
    try { rmSync(tmp, { force: true }); } catch { /* nothing to remove */ }
    throw errors.SEL_ERR_STORAGE(`cannot write ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a writable data directory', got: path });
  }
}
