/**
 * The store's check at start (serve --store-check): SQLite's
 * `PRAGMA quick_check` over the whole file, on a thread of its own and its
 * own connection, while the service already answers. Until it passes,
 * `/readyz` says the service is not ready; a store it finds damaged keeps
 * it so (a restored copy taken without SQLite's backup, a disk fault),
 * rather than a service that says ready and fails every scoring request at
 * its decision-log commit. quick_check reads every page (about 1.5 s per
 * GB on a warm cache here) and checks each b-tree's structure, but not that
 * the indexes agree with their tables (integrity_check does, for a little
 * more time).
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { workerPath } from '../paths.js';
import { BUSY_TIMEOUT_MS } from './sqlite.js';

/** The most problems a check reports (quick_check stops after this many). */
export const STORE_CHECK_PROBLEMS = 10;

export interface StoreCheckResult {
  ok: boolean;
  /** False when the check could not run to its end (the store could not be read, the check's process failed): then `problems` says why, and says nothing of the store's pages. */
  ran: boolean;
  /** What quick_check found (at most STORE_CHECK_PROBLEMS), or why the check could not run; empty when ok. */
  problems: string[];
  /** How long the check took, ms. */
  ms: number;
}

/** Checks the store file at `storePath` on this thread (see the module's comment). Never throws: a failure to read is a problem. */
export function checkStore(storePath: string): StoreCheckResult {
  const started = performance.now();
  const done = (problems: string[], ran = true): StoreCheckResult => ({ ok: ran && problems.length === 0, ran, problems, ms: Math.round(performance.now() - started) });
  let db: Database.Database | undefined;
  try {
    db = new Database(storePath, { fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const rows = db.pragma(`quick_check(${STORE_CHECK_PROBLEMS})`) as { quick_check: string }[];
    return done(rows.map((r) => r.quick_check).filter((s) => s !== 'ok'));
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    // SQLITE_CORRUPT and SQLITE_NOTADB are what the check is for: the store is damaged; anything else (busy, no such file, …) says nothing of its pages
    const damaged = typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB');
    return done([`the check could not read the store: ${typeof code === 'string' ? `${code} ` : ''}${(e as Error).message}`], damaged);
  } finally {
    db?.close();
  }
}

/** A check running in the background: its result, and a way to stop it (at shutdown). */
export interface BackgroundCheck {
  /** The check's result; undefined when it was stopped before its end. */
  result: Promise<StoreCheckResult | undefined>;
  /** Ends the check at once (its process is killed: SQLite's read cannot be interrupted in a thread). */
  stop(): void;
}

/**
 * checkStore in a process of its own (dist/workers/store-check-worker.js),
 * so that the service answers meanwhile and a stop ends it at once; on this
 * thread, at the next turn of the event loop, where the worker is not
 * built (library use from source).
 */
export function checkStoreInBackground(storePath: string): BackgroundCheck {
  const file = workerPath('store-check-worker');
  if (!existsSync(file)) {
    return { result: new Promise((resolve) => setImmediate(() => resolve(checkStore(storePath)))), stop: () => {} };
  }
  const started = performance.now();
  let stopped = false;
  const child = fork(file, [storePath], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => { if (stderr.length < 2000) stderr += c.toString('utf8'); });
  const result = new Promise<StoreCheckResult | undefined>((resolve) => {
    let settled = false;
    const settle = (r: StoreCheckResult | undefined) => { if (!settled) { settled = true; resolve(r); } };
    const failed = (why: string) => settle(stopped ? undefined : { ok: false, ran: false, problems: [why], ms: Math.round(performance.now() - started) });
    child.once('message', (r: StoreCheckResult) => settle(r));
    child.once('error', (e) => failed(`the store check's process failed: ${e.message}`));
    child.once('exit', (code, signal) => failed(`the store check's process ended (${signal ?? `exit code ${code}`}) without a result${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
  });
  return { result, stop: () => { stopped = true; if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); } };
}
