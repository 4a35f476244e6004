/**
 * `selectivity migrate`: the offline step of an upgrade. It upgrades a
 * store of an earlier schema, does nothing to one already up to date,
 * changes nothing with --dry-run, and refuses while a service uses the
 * directory or a store of a newer engine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { startService } from '../src/service/service.js';
import { openStore, SCHEMA_VERSION, STORE_FILE } from '../src/store/sqlite.js';
import { runCli } from './helpers.js';
import { tokensEnv } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-migrate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const schemaOf = (path: string) => { const db = new Database(path, { readonly: true }); try { return db.pragma('user_version', { simple: true }) as number; } finally { db.close(); } };

describe('selectivity migrate', () => {
  it('upgrades a store of an earlier schema; --dry-run changes nothing; a second run has nothing to do', async () => {
    const data = join(dir, 'old');
    const path = join(data, STORE_FILE);
    openStore(path, 7).close(); // the store as an engine of schema 7 left it
    const dry = await runCli(['migrate', '--data-dir', data, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`is at schema 7; migrate would upgrade it to ${SCHEMA_VERSION}`);
    expect(schemaOf(path)).toBe(7);
    const run = await runCli(['migrate', '--data-dir', data]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`upgraded from schema 7 to ${SCHEMA_VERSION} in [0-9.]+ s`));
    expect(run.stderr).toContain('migrate: schema 7 → 8…');
    expect(schemaOf(path)).toBe(SCHEMA_VERSION);
    const again = await runCli(['migrate', '--data-dir', data]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to do');
  });

  it('refuses while a service uses the directory, a store of a newer engine, and a directory without a store', async () => {
    const data = join(dir, 'served');
    const s = await startService({ host: '127.0.0.1', port: 0, dataDir: data, tokensEnv, threads: 0, metricsIntervalMs: 60_000 });
    try {
      const busy = await runCli(['migrate', '--data-dir', data]);
      expect(busy.code).toBe(2);
      expect(busy.stderr).toContain('SEL_ERR_DATA_DIR_BUSY');
    } finally {
      await s.close();
    }
    const db = new Database(join(data, STORE_FILE));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const newer = await runCli(['migrate', '--data-dir', data]);
    expect(newer.code).toBe(1); // SEL_ERR_STORAGE is a 500: exit 1
    expect(newer.stderr).toContain(`newer than this engine's ${SCHEMA_VERSION}`);
    expect(schemaOf(join(data, STORE_FILE))).toBe(SCHEMA_VERSION + 1);
    const none = await runCli(['migrate', '--data-dir', join(dir, 'nothing')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
  }, 60_000);
});
