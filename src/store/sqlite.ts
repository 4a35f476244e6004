/**
 * The embedded store: one SQLite file under the data directory
 * (better-sqlite3). WAL journal with synchronous=FULL, so a committed
 * transaction survives a crash or a power cut before the caller
 * acknowledges anything. Schema migrations run in order at open; the
 * applied version is kept in `PRAGMA user_version`.
 *
 * This is the `store` of the design: profiles and their versions, watch
 * lists, the decision log and feedback (src/feedback/); trader ratings and
 * peer-snapshot lineage later. Everything the
 * service holds in memory can be rebuilt from it.
 */
import { createOwnerOnly, makeDirs } from './durable.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { errors, isSelectivityError } from '../errors.js';
import { DECISION_ID_PART_BITS, fillIdFilters } from './id-filter.js';

export { DECISION_ID_PART_BITS };

export type Db = Database.Database;

export const STORE_FILE = 'selectivity.db';

/** The store's lock wait (busy_timeout) on every connection openStore opens, ms. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * The tables of a versioned document kind (src/store/versioned.ts): every
 * version, and the head of each id. Migrations 1 and 4 are made of it: never
 * change its text; a new column needs a new migration.
 */
function versionedTables(kind: string): string {
  return `CREATE TABLE ${kind}_versions (
     id          TEXT    NOT NULL,
     version     INTEGER NOT NULL,
     status      TEXT    NOT NULL CHECK (status IN ('active', 'retired')),
     doc         TEXT    NOT NULL,
     changed_by  TEXT    NOT NULL,
     changed_at  TEXT    NOT NULL,
     change      TEXT    NOT NULL,
     PRIMARY KEY (id, version)
   ) WITHOUT ROWID;
   CREATE TABLE ${kind}_heads (
     id       TEXT PRIMARY KEY,
     version  INTEGER NOT NULL
   ) WITHOUT ROWID;`;
}

/**
 * Migrations, in order; index + 1 is the schema version they bring: SQL, or
 * a function of the connection where SQL alone cannot do it. Each runs in
 * one transaction with the version change. Never edit one that has
 * shipped: add another.
 */
const MIGRATIONS: (string | ((db: Db) => void))[] = [
  // 1: profiles, every change a version
  versionedTables('profile'),
  // 2: effectiveness: matches per profile and day, traffic per day, examination results
  `CREATE TABLE profile_usage (
     day      TEXT    NOT NULL,
     id       TEXT    NOT NULL,
     version  INTEGER NOT NULL,
     matched  INTEGER NOT NULL,
     PRIMARY KEY (day, id, version)
   ) WITHOUT ROWID;
   CREATE TABLE traffic (
     day     TEXT PRIMARY KEY,
     scored  INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE examinations (
     declaration_id     TEXT    PRIMARY KEY,
     day                TEXT    NOT NULL,
     inspected          INTEGER NOT NULL CHECK (inspected IN (0, 1)),
     result             TEXT    NOT NULL CHECK (result IN ('compliant', 'non-compliant', 'not-examined')),
     revenue_recovered  REAL    NOT NULL DEFAULT 0,
     recorded_at        TEXT    NOT NULL
   );
   CREATE TABLE examination_profiles (
     declaration_id  TEXT    NOT NULL REFERENCES examinations (declaration_id) ON DELETE CASCADE,
     id              TEXT    NOT NULL,
     version         INTEGER NOT NULL,
     PRIMARY KEY (declaration_id, id)
   ) WITHOUT ROWID;
   CREATE INDEX examinations_day ON examinations (day);`,
  // 3: every ruleset the service installed: which profile versions and peer snapshot made its decisions
  `CREATE TABLE rulesets (
     version       TEXT PRIMARY KEY,
     installed_at  TEXT NOT NULL,
     peers         TEXT,
     profiles      TEXT NOT NULL,
     settings      TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // 4: keyword watch lists, versioned like profiles
  versionedTables('watchlist'),
  // 5: the decision log: every decision the service returned, with the declaration fields learning needs
  `CREATE TABLE decision_log (
     seq              INTEGER PRIMARY KEY,
     declaration_id   TEXT    NOT NULL,
     decided_at       INTEGER NOT NULL,
     ruleset_version  TEXT    NOT NULL,
     score            REAL    NOT NULL,
     channel          TEXT    NOT NULL,
     control_group    INTEGER NOT NULL,
     reasons          TEXT    NOT NULL,
     date             TEXT    NOT NULL,
     office           TEXT    NOT NULL,
     importer         TEXT    NOT NULL,
     declarant        TEXT,
     seller           TEXT,
     hs               TEXT    NOT NULL,
     origin           TEXT    NOT NULL,
     departure        TEXT,
     transport_mode   TEXT,
     customs_value    REAL    NOT NULL,
     net_mass         REAL    NOT NULL,
     quantity         REAL,
     tax_rate         REAL,
     aeo              INTEGER
   );
   CREATE INDEX decision_log_declaration ON decision_log (declaration_id, seq);`,
  // 6: feedback: examination results joined to the logged decision they answer; every change kept
  `CREATE TABLE feedback (
     seq                INTEGER PRIMARY KEY,
     declaration_id     TEXT    NOT NULL,
     current            INTEGER NOT NULL CHECK (current IN (0, 1)),
     decision_seq       INTEGER NOT NULL,
     date               TEXT    NOT NULL,
     channel            TEXT    NOT NULL,
     inspected          INTEGER NOT NULL CHECK (inspected IN (0, 1)),
     outcome            TEXT    NOT NULL CHECK (outcome IN ('no-discrepancy', 'discrepancy', 'seizure')),
     irregularity       TEXT,
     revenue_recovered  REAL    NOT NULL,
     notes              TEXT,
     ruleset_version    TEXT,
     recorded_at        TEXT    NOT NULL,
     recorded_by        TEXT    NOT NULL
   );
   CREATE INDEX feedback_declaration ON feedback (declaration_id, seq);`,
  // 7: the decision log in chunks: one row per scored request holding its decisions and declaration
  // fields (src/feedback/log-rows.ts); decision first_seq + k is row k of a chunk. The ids: the latest
  // decision of each id, and for a later decision of an id, the one before it (the trigger fills it
  // when the latest changes), so that an id decided again touches its own index entry only. Seqs
  // continue after those of decision_log, whose rows stay where they are and are still read.
  `CREATE TABLE decision_chunks (
     first_seq        INTEGER PRIMARY KEY,
     count            INTEGER NOT NULL CHECK (count > 0),
     decided_at       INTEGER NOT NULL,
     ruleset_version  TEXT    NOT NULL,
     format           INTEGER NOT NULL,
     rows             BLOB    NOT NULL
   );
   CREATE TABLE decision_latest (
     declaration_id  TEXT    PRIMARY KEY,
     seq             INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE decision_previous (
     seq       INTEGER PRIMARY KEY,
     previous  INTEGER NOT NULL
   );
   CREATE TRIGGER decision_latest_previous AFTER UPDATE OF seq ON decision_latest
   BEGIN
     INSERT INTO decision_previous (seq, previous) VALUES (NEW.seq, OLD.seq);
   END;`,
  // 8: the id index by part of the log: one row per decision, keyed by (part, id, seq) with part =
  // seq >> DECISION_ID_PART_BITS, so that a commit changes pages of the newest part only (65,536
  // decisions) however large the log: with migration 7's index, keyed by id, each fresh id in no
  // order changed a page of its own once the index was large (docs/feedback.md). An id's decisions
  // are found part by part. The rows of migration 7's tables move over: every decision of each id,
  // its chain walked back, but for the pruned decision a link may still name (prune kept the links
  // of the decisions it kept; pruned decisions are the chunks below the first one left).
  `CREATE TABLE decision_ids (
     part            INTEGER NOT NULL,
     declaration_id  TEXT    NOT NULL,
     seq             INTEGER NOT NULL,
     PRIMARY KEY (part, declaration_id, seq)
   ) WITHOUT ROWID;
   WITH RECURSIVE chain (declaration_id, seq) AS (
     SELECT declaration_id, seq FROM decision_latest
     UNION ALL
     SELECT chain.declaration_id, p.previous FROM chain JOIN decision_previous p ON p.seq = chain.seq
   )
   INSERT INTO decision_ids (part, declaration_id, seq) SELECT seq >> 16, declaration_id, seq FROM chain
     WHERE seq >= (SELECT min(first_seq) FROM decision_chunks)
     ORDER BY 1, 2, 3;
   DROP TRIGGER decision_latest_previous;
   DROP TABLE decision_latest;
   DROP TABLE decision_previous;`,
  // 9: a filter of each sealed part's ids (src/store/id-filter.ts), so that a lookup searches the
  // parts that may hold an id rather than every part. Built here for the parts an existing log has
  // sealed (from the id index, a part at a time); the writer adds each part's when the log leaves it.
  (db) => {
    db.exec(`CREATE TABLE decision_id_filters (
       part    INTEGER PRIMARY KEY,
       scheme  INTEGER NOT NULL,
       bits    BLOB    NOT NULL
     )`);
    fillIdFilters(db);
  },
  // 10: the watch lists (id, version) whose terms a ruleset compiled: a KEYWORD reason is traced to a list version
  `ALTER TABLE rulesets ADD COLUMN watch_lists TEXT;`,
  // 11: the current results in decision order, for the targeting report to read a page at a time
  // (it read a period's every result at once, then sorted them)
  `CREATE INDEX feedback_current_decision ON feedback (current, decision_seq);`,
  // 12: the compliance model a ruleset scored with (its file's SHA-256, when and on what it was trained):
  // a retrain replaces model.json, and the ruleset version alone did not say which model it had been
  `ALTER TABLE rulesets ADD COLUMN model TEXT;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** A migration of an existing store: before it runs (done false) and after (done true, ms taken). */
export interface StoreMigration { path: string; from: number; to: number; done: boolean; ms: number }

export interface OpenStoreOptions {
  /**
   * Told of each migration of a store that already had a schema (an
   * upgrade, which can take a while on a large decision log), not of a new
   * store's: `serve` says so on stderr.
   */
  onMigration?: (m: StoreMigration) => void;
}

/**
 * Opens (creating if needed) the store at `path` and brings its schema up to
 * date. `upTo` stops at an older schema version: for tests of a migration.
 */
/**
 * Opens <dataDir>/selectivity.db for a command that reads what is in it, or
 * changes what is there (list, show, export, stats, activate, retire): a
 * missing store is SEL_ERR_FILE_NOT_FOUND, not a new empty one, so that a
 * mistyped --data-dir does not answer "no profiles" with exit 0 and leave
 * a new store behind. Commands that add to a store (imports) use openStore.
 */
export function openExistingStore(dataDir: string, expected = `a data directory holding ${STORE_FILE} (made by selectivity serve or an import)`): Db {
  const path = join(dataDir, STORE_FILE);
  if (!existsSync(path)) throw errors.SEL_ERR_FILE_NOT_FOUND(`no store at ${path}`, { field: 'data-dir', expected, got: dataDir });
  return openStore(path);
}

export function openStore(path: string, upTo = SCHEMA_VERSION, options: OpenStoreOptions = {}): Db {
  let db: Db;
  try {
    makeDirs(dirname(path), 0o700);
    // a new store is owner-only (it holds the decision log and the examination results); an existing store keeps the mode it has
    createOwnerOnly(path);
    db = new Database(path);
  } catch (e) {
    throw errors.SEL_ERR_STORAGE(`cannot open the store ${path}: ${(e as Error).message}`, { field: 'store', expected: 'a writable SQLite file', got: path });
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // the version first: a store of a newer engine is refused before anything of it changes
    // (journal_mode is written into the file)
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw errors.SEL_ERR_STORAGE(`the store ${path} has schema version ${current}, newer than this engine's ${SCHEMA_VERSION}`, { field: 'store', expected: `schema version <= ${SCHEMA_VERSION}`, got: current });
    }
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    for (let v = current; v < upTo; v++) {
      const t0 = performance.now();
      if (current > 0) options.onMigration?.({ path, from: v, to: v + 1, done: false, ms: 0 });
      // the write lock first, then the version again: another process opening the same store may have
      // migrated it since this one read the version (it waits for that one's migration, then skips)
      db.transaction(() => {
        if ((db.pragma('user_version', { simple: true }) as number) > v) return;
        const m = MIGRATIONS[v];
        if (typeof m === 'string') db.exec(m);
        else m(db);
        db.pragma(`user_version = ${v + 1}`);
      }).immediate();
      if (current > 0) options.onMigration?.({ path, from: v, to: v + 1, done: true, ms: performance.now() - t0 });
    }
  } catch (e) {
    db.close();
    if (e instanceof Error && (e as { code?: string }).code?.startsWith('SEL_ERR_')) throw e;
    throw errors.SEL_ERR_STORAGE(`cannot use the store ${path}: ${(e as Error).message}`, { field: 'store', expected: 'a SQLite file of this engine', got: path });
  }
  return db;
}

/**
 * SQLite could not take a lock (another connection holds it): SQLITE_BUSY
 * and its extended codes, raw or as the SEL_ERR_STORAGE a store wrapped it
 * in (its details.got).
 */
export function isStoreBusy(e: unknown): boolean {
  if (e instanceof Database.SqliteError) return e.code.startsWith('SQLITE_BUSY');
  const got = isSelectivityError(e) && e.code === 'SEL_ERR_STORAGE' ? e.details.got : undefined;
  return typeof got === 'string' && got.startsWith('SQLITE_BUSY');
}

/**
 * Runs a write (a function that runs one IMMEDIATE transaction) on a
 * connection that serves other work on the same thread, without blocking
 * that thread while another connection holds the write lock: the lock is
 * tried without waiting (busy_timeout 0 for the call), and on SQLITE_BUSY
 * the write is tried again after a pause of 1, 2, 4, then 8 ms, for up to
 * BUSY_TIMEOUT_MS in all; then the busy error is thrown. The service's main
 * thread records examination results this way beside the decision log's
 * writer thread, whose commits hold the lock for up to tens of ms under
 * load (docs/feedback.md).
 */
export async function writeWhenFree<T>(db: Db, write: () => T, timeoutMs = BUSY_TIMEOUT_MS): Promise<T> {
  const started = Date.now();
  for (let pause = 1; ; pause = Math.min(2 * pause, 8)) {
    db.pragma('busy_timeout = 0');
    try {
      return write();
    } catch (e) {
      if (!isStoreBusy(e) || Date.now() - started >= timeoutMs) throw e;
    } finally {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

