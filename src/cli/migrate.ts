/**
 * `selectivity migrate`: upgrades a data directory's store to this
 * engine's schema, offline, as its own step of an upgrade: the service is
 * then started on a store that needs nothing, and a supervisor's start
 * timeout cannot cut a long migration short (serve migrates at start too).
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { errors } from '../errors.js';
import { ProcessLock } from '../store/process-lock.js';
import { openStore, SCHEMA_VERSION, STORE_FILE } from '../store/sqlite.js';
import { SERVE_LOCK } from '../service/service.js';

export const MIGRATE_HELP = `Usage: selectivity migrate [options]

Upgrades the store of a data directory to this engine's schema (the
migrations serve would run at its start), while no service uses the
directory. Back up first (selectivity backup): an older engine refuses a
store a newer one has migrated.

Options:
  --data-dir <dir>  the data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --dry-run         say which schema the store has and which it would get; change nothing

Exit status: 0 upgraded (or nothing to do); 2 refused (no store, a service
running); 1 a store of a newer engine, or a migration that failed (each
migration is one transaction: the store stays at the last schema reached).
`;

/** The schema version of the store file at `path`, read without changing anything. */
function schemaOf(path: string): number {
  const db = new Database(path, { fileMustExist: true, readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

export async function migrateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'data-dir': { type: 'string' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(MIGRATE_HELP); return 0; }
  if (positionals.length > 0) throw errors.SEL_ERR_OPTION_INVALID(`migrate takes no arguments, got ${positionals.join(' ')}`, { field: 'argv', expected: 'options only', got: positionals });
  const dataDir = resolve(values['data-dir'] ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  const path = join(dataDir, STORE_FILE);
  if (!existsSync(path)) throw errors.SEL_ERR_FILE_NOT_FOUND(`no store at ${path}`, { field: 'data-dir', expected: `a data directory holding ${STORE_FILE}`, got: dataDir });
  // no service on the directory meanwhile: it would go on writing with the schema it started with
  const lock = ProcessLock.take(join(dataDir, SERVE_LOCK), 'selectivity migrate', (holder) => errors.SEL_ERR_DATA_DIR_BUSY(`a service${holder ? ` (${holder})` : ''} uses the data directory ${dataDir}: stop it first`, { field: 'dataDir', expected: 'a data directory no service uses', got: dataDir }));
  // a signal during the migration lets it finish (it holds the thread; the default action would cut it and it would roll back)
  let stopped: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => { stopped = signal; };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const from = schemaOf(path);
    if (from > SCHEMA_VERSION) throw errors.SEL_ERR_STORAGE(`the store ${path} has schema version ${from}, newer than this engine's ${SCHEMA_VERSION}`, { field: 'store', expected: `schema version <= ${SCHEMA_VERSION}`, got: from });
    if (from === SCHEMA_VERSION) { process.stdout.write(`the store ${path} is at schema ${from}, this engine's: nothing to do\n`); return 0; }
    if (values['dry-run']) { process.stdout.write(`the store ${path} is at schema ${from}; migrate would upgrade it to ${SCHEMA_VERSION}\n`); return 0; }
    const started = performance.now();
    const db = openStore(path, SCHEMA_VERSION, {
      onMigration: (m) => process.stderr.write(m.done ? `  schema ${m.to}: ${(m.ms / 1000).toFixed(1)} s\n` : `migrate: schema ${m.from} → ${m.to}…\n`),
    });
    db.close();
    await new Promise((r) => setImmediate(r)); // a signal that came during the migration (it held the thread) is seen now
    process.stdout.write(`the store ${path} upgraded from schema ${from} to ${SCHEMA_VERSION} in ${((performance.now() - started) / 1000).toFixed(1)} s${stopped ? ` (${stopped} received meanwhile: the migration was finished first)` : ''}\n`);
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    lock.release();
  }
}
