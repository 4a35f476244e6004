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
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { workerPath } from '../paths.js';
import { BUSY_TIMEOUT_MS } from './sqlite.js';

/** The most problems a check reports (quick_check stops after this many). */
export const STORE_CHECK_PROBLEMS = 10;

export interface StoreCheckResult {
  ok: boolean;
  /** What quick_check found (at most STORE_CHECK_PROBLEMS), or why the check could not run; empty when ok. */
  problems: string[];
  /** How long the check took, ms. */
  ms: number;
}

/** Checks the store file at `storePath` on this thread (see the module's comment). Never throws: a failure to read is a problem. */
export function checkStore(storePath: string): StoreCheckResult {
  const started = performance.now();
  const done = (problems: string[]): StoreCheckResult => ({ ok: problems.length === 0, problems, ms: Math.round(performance.now() - started) });
  let db: Database.Database | undefined;
  try {
    db = new Database(storePath, { fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const rows = db.pragma(`quick_check(${STORE_CHECK_PROBLEMS})`) as { quick_check: string }[];
    return done(rows.map((r) => r.quick_check).filter((s) => s !== 'ok'));
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return done([`the check could not read the store: ${typeof code === 'string' ? `${code} ` : ''}${(e as Error).message}`]);
  } finally {
    db?.close();
  }
}

/** A check running in the background: its result, and a way to stop it (at shutdown). */
export interface BackgroundCheck {
  result: Promise<StoreCheckResult>;
  /** Ends the check's thread; `result` then says the check was stopped. */
  stop(): Promise<void>;
}

/**
 * checkStore on a thread of its own (dist/workers/store-check-worker.js),
 * so that the service answers meanwhile; on this thread, at the next turn
 * of the event loop, where the worker is not built (library use from
 * source).
 */
export function checkStoreInBackground(storePath: string): BackgroundCheck {
  const file = workerPath('store-check-worker');
  if (!existsSync(file)) {
    return { result: new Promise((resolve) => setImmediate(() => resolve(checkStore(storePath)))), stop: async () => {} };
  }
  const started = performance.now();
  const worker = new Worker(file, { workerData: { storePath } });
  const result = new Promise<StoreCheckResult>((resolve) => {
    let settled = false;
    const settle = (r: StoreCheckResult) => { if (!settled) { settled = true; resolve(r); } };
    const failed = (why: string) => settle({ ok: false, problems: [why], ms: Math.round(performance.now() - started) });
    worker.once('message', (r: StoreCheckResult) => settle(r));
    worker.once('error', (e) => failed(`the store check failed: ${e.message}`));
    worker.once('exit', (code) => failed(`the store check was stopped before its end (thread exit code ${code})`));
  });
  return { result, stop: async () => { await worker.terminate(); } };
}
