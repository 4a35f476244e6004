/**
 * Writing beside another writer (src/store/sqlite.ts writeWhenFree): the
 * service's main thread records examination results while the decision
 * log's writer thread holds the store's write lock for its group commits.
 * The write waits for the lock without blocking its thread, gives up with
 * the busy error after its time, and retries nothing else.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUSY_TIMEOUT_MS, isStoreBusy, openStore, STORE_FILE, writeWhenFree } from '../src/store/sqlite.js';
import { errors } from '../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-store-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeWhenFree', () => {
  const path = join(dir, STORE_FILE);
  const holder = openStore(path);
  const db = openStore(path);
  afterAll(() => { holder.close(); db.close(); });
  const insert = (day: string) => () => db.transaction(() => db.prepare('INSERT INTO traffic (day, scored) VALUES (?, 1)').run(day)).immediate();
  const count = (day: string) => db.prepare('SELECT count(*) FROM traffic WHERE day = ?').pluck().get(day);

  it('waits for another connection\'s write lock without blocking the thread, then writes', async () => {
    holder.prepare('BEGIN IMMEDIATE').run();
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(Date.now()), 2);
    const release = setTimeout(() => holder.prepare('COMMIT').run(), 60);
    try {
      await writeWhenFree(db, insert('2026-12-01'));
    } finally {
      clearInterval(timer);
      clearTimeout(release);
    }
    expect(count('2026-12-01')).toBe(1);
    // the thread ran its timers while the write waited (blocked in SQLite's busy handler, it would not have)
    expect(ticks.length).toBeGreaterThanOrEqual(5);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(BUSY_TIMEOUT_MS);
  });

  it('gives up with the busy error once its time is out, having written nothing', async () => {
    holder.prepare('BEGIN IMMEDIATE').run();
    try {
      const t0 = Date.now();
      const e = await writeWhenFree(db, insert('2026-12-02'), 40).catch((x: unknown) => x);
      expect(isStoreBusy(e)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    } finally {
      holder.prepare('COMMIT').run();
    }
    expect(count('2026-12-02')).toBe(0);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(BUSY_TIMEOUT_MS);
  });

  it('tries any other failure once, and tells a wrapped busy error from other storage errors', async () => {
    let calls = 0;
    const e = await writeWhenFree(db, () => { calls++; throw errors.SEL_ERR_STORAGE('disk full', { field: 'store', got: 'SQLITE_FULL' }); }).catch((x: unknown) => x);
    expect(calls).toBe(1);
    expect(isStoreBusy(e)).toBe(false);
    expect(isStoreBusy(errors.SEL_ERR_STORAGE('locked', { field: 'store', got: 'SQLITE_BUSY_SNAPSHOT' }))).toBe(true);
  });
});
