/**
 * A lock held by one process (or one holder in a process) at a time, for as
 * long as it lives: SQLite's exclusive lock on a small file of its own, held
 * in an open transaction. The operating system lets go of it when the
 * process dies, however it dies, so no lock is ever left behind to take
 * over, and taking it is one atomic step: two processes that try at the
 * same moment cannot both get it (a lock file read, checked, removed and
 * made again can be; a history import that reported success was lost that
 * way). A second connection in the same process is refused as well.
 *
 * Beside the lock file, `<file>.holder` names the holder (process id, what
 * it does, since when) for the refusal's message; it is information only.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { errors, type SelectivityError } from '../errors.js';
import { createOwnerOnly } from './durable.js';

export class ProcessLock {
  private constructor(private db: Database.Database | undefined, private readonly holderFile: string) {}

  /**
   * Takes the lock at `path` (created if absent), or throws `busy(holder)`
   * at once when another holder has it (`holder`: what its holder file
   * says, when readable). `what` describes this holder for the next one's
   * message. A file that cannot be created or locked: SEL_ERR_STORAGE.
   */
  static take(path: string, what: string, busy: (holder: string | undefined) => SelectivityError): ProcessLock {
    let db: Database.Database;
    try {
      createOwnerOnly(path); // owner-only, like the data directory's other files
      db = new Database(path, { timeout: 0 });
    } catch (e) {
      throw errors.SEL_ERR_STORAGE(`cannot open the lock file ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a writable data directory', got: path });
    }
    try {
      // the rollback journal (not WAL): an exclusive lock keeps every other connection out, readers too
      db.pragma('journal_mode = DELETE');
      db.exec('BEGIN EXCLUSIVE');
    } catch (e) {
      db.close();
      const code = (e as { code?: string }).code ?? '';
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) throw busy(readHolder(`${path}.holder`));
      throw errors.SEL_ERR_STORAGE(`cannot take the lock ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a writable data directory', got: path });
    }
    const holderFile = `${path}.holder`;
    try {
      writeFileSync(holderFile, `process ${process.pid}, ${what}, since ${new Date().toISOString()}\n`, { mode: 0o600 });
    } catch {
      // information only: the lock is what counts
    }
    return new ProcessLock(db, holderFile);
  }

  /** Lets go of the lock (idempotent). */
  release(): void {
    const db = this.db;
    if (!db) return;
    this.db = undefined;
    rmSync(this.holderFile, { force: true });
    try { db.exec('ROLLBACK'); } catch { /* closing lets go of it all the same */ }
    db.close();
  }
}

function readHolder(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
