/**
 * Decision-log retention (src/feedback/prune.ts, `selectivity feedback
 * prune`): what goes, what stays, and the two rules that keep the log sound
 * (the newest decision stays; decisions that feedback joins to go only when
 * asked).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DECISION_ID_PART_BITS, openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLog } from '../src/feedback/decision-log.js';
import { DecisionLogReader as LogReader } from '../src/feedback/log-reader.js';
import { encodeLogRows } from '../src/feedback/log-rows.js';
import { FeedbackStore } from '../src/feedback/feedback.js';
import { pruneDecisionLog } from '../src/feedback/prune.js';
import { main } from '../src/cli/main.js';
import type { Declaration } from '../src/model/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-prune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE: Declaration = { id: 'X', date: '2026-01-01', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN', customsValue: 1200, netMass: 900 };
const day = (d: string) => Date.parse(`${d}T00:00:00Z`);

/** Logs one chunk per [day, ids] (decided at noon that day, or now without a day). */
async function append(path: string, chunks: [string | undefined, string[]][]): Promise<void> {
  const log = new DecisionLog({ storePath: path, thread: false });
  for (const [d, ids] of chunks) {
    const decisions = ids.map((id) => ({ id, channel: 'red' as const, score: 5, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [] }));
    await log.append(encodeLogRows(decisions, ids.map((id) => ({ ...BASE, id, date: d ?? BASE.date })), 'aaaaaaaaaaaaaaaa', d === undefined ? Date.now() : day(d) + 43_200_000));
  }
  await log.close();
}

/** A new store, `prepare`d, then with one chunk per [day, ids]; its path. */
async function store(name: string, chunks: [string, string[]][], prepare?: (db: ReturnType<typeof openStore>) => void): Promise<string> {
  const path = join(dir, name, STORE_FILE);
  const db = openStore(path);
  try { prepare?.(db); } finally { db.close(); }
  await append(path, chunks);
  return path;
}

/** Every table the log lives in, as plain rows: what "nothing changed" compares. */
function snapshot(path: string): unknown {
  const db = openStore(path);
  try {
    return ['decision_chunks', 'decision_ids', 'decision_log', 'feedback'].map((t) => db.prepare(`SELECT * FROM ${t}`).all());
  } finally {
    db.close();
  }
}

function withDb<T>(path: string, f: (db: ReturnType<typeof openStore>) => T): T {
  const db = openStore(path);
  try { return f(db); } finally { db.close(); }
}

const CHUNKS: [string, string[]][] = [
  ['2026-01-10', ['A1', 'A2', 'A3']],
  ['2026-02-10', ['B1', 'A1']], // A1 decided again
  ['2026-03-10', ['C1']],
];

describe('decision-log retention', () => {
  it('prunes the chunks decided before the date and the id index rows of their decisions; what stays reads as before', async () => {
    const path = await store('basic', CHUNKS);
    const r = withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-02-01') }));
    expect(r).toMatchObject({ cut: 4, decisions: 3, chunks: 1, legacyRows: 0, ids: 3, feedback: 0, dryRun: false });
    expect(r.keptFrom).toBe('2026-02-10T12:00:00.000Z');
    withDb(path, (db) => {
      const log = new LogReader(db);
      expect(log.decisions('A2')).toEqual([]);
      expect(log.decisions('A3')).toEqual([]);
      // A1's first decision is gone, its second stays
      expect(log.decisions('A1').map((d) => d.seq)).toEqual([5]);
      expect(log.decisions('B1').map((d) => d.seq)).toEqual([4]);
      expect(log.decisions('C1').map((d) => d.seq)).toEqual([6]);
      expect([...log.scan()].map((d) => d.declarationId)).toEqual(['B1', 'A1', 'C1']);
      expect(db.prepare('SELECT declaration_id, seq FROM decision_ids ORDER BY seq').all()).toEqual([{ declaration_id: 'B1', seq: 4 }, { declaration_id: 'A1', seq: 5 }, { declaration_id: 'C1', seq: 6 }]);
    });
    // the next decisions are numbered after the newest, as before
    await append(path, [[undefined, ['D1']]]);
    withDb(path, (db) => expect(new LogReader(db).decisions('D1').map((d) => d.seq)).toEqual([7]));
  });

  it('prunes the id index in every part of the log below the cut, and in the part of the cut the rows below it only', async () => {
    // an old chunk just below the end of the first part (never read): CHUNKS' first chunk crosses into the second part
    const first = 2 ** DECISION_ID_PART_BITS - 3;
    const path = await store('parts', CHUNKS, (db) => {
      db.prepare("INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, 1, 0, 'aaaaaaaaaaaaaaaa', 1, ?)").run(first, Buffer.alloc(8));
      db.prepare('INSERT INTO decision_ids (part, declaration_id, seq) VALUES (0, ?, ?)').run('OLD', first);
    });
    const parts = withDb(path, (db) => db.prepare('SELECT part, count(*) AS n FROM decision_ids GROUP BY part ORDER BY part').all());
    expect(parts).toEqual([{ part: 0, n: 3 }, { part: 1, n: 4 }]);
    const r = withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-02-01'), slice: 1 }));
    // the old chunk and CHUNKS' first go; the cut is in the second part, after A3's row there
    expect(r).toMatchObject({ cut: first + 4, decisions: 4, chunks: 2, ids: 4 });
    withDb(path, (db) => {
      expect(db.prepare('SELECT part, declaration_id, seq FROM decision_ids ORDER BY seq').all())
        .toEqual([{ part: 1, declaration_id: 'B1', seq: first + 4 }, { part: 1, declaration_id: 'A1', seq: first + 5 }, { part: 1, declaration_id: 'C1', seq: first + 6 }]);
      const log = new LogReader(db);
      expect(log.decisions('A1').map((d) => d.seq)).toEqual([first + 5]);
      expect(log.decisions('A3')).toEqual([]);
      expect(log.decisions('OLD')).toEqual([]);
    });
  });

  it('always keeps the newest decision, so that seqs never start again', async () => {
    const path = await store('newest', CHUNKS);
    const r = withDb(path, (db) => pruneDecisionLog(db, { before: day('2027-01-01') }));
    expect(r).toMatchObject({ cut: 6, decisions: 5, chunks: 2 });
    await append(path, [[undefined, ['D1']]]);
    withDb(path, (db) => {
      const reader = new LogReader(db);
      expect(reader.decisions('C1').map((d) => d.seq)).toEqual([6]);
      expect(reader.decisions('D1').map((d) => d.seq)).toEqual([7]);
    });
    // an empty log: nothing to do
    const empty = join(dir, 'empty', STORE_FILE);
    openStore(empty).close();
    expect(withDb(empty, (db) => pruneDecisionLog(db, { before: day('2027-01-01') }))).toMatchObject({ cut: null, decisions: 0 });
  });

  it('refuses to prune decisions that current results join to, changing nothing, unless asked; a dry run changes nothing', async () => {
    const path = await store('feedback', CHUNKS);
    withDb(path, (db) => {
      const r = new FeedbackStore(db).record([{ declarationId: 'A2', date: '2026-01-12', channel: 'red', inspected: true, outcome: 'discrepancy', revenueRecovered: 10 }], 'test');
      expect(r.counts.recorded).toBe(1);
    });
    const before = snapshot(path);
    expect(() => withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-02-01') }))).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'include-feedback', got: 1 }) }));
    expect(snapshot(path)).toEqual(before);
    const dry = withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-02-01'), includeFeedback: true, dryRun: true }));
    expect(snapshot(path)).toEqual(before);
    // a date before the result's decision is fine
    expect(withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-01-01') }))).toMatchObject({ decisions: 0, cut: 1 });
    const real = withDb(path, (db) => pruneDecisionLog(db, { before: day('2026-02-01'), includeFeedback: true }));
    expect(real).toMatchObject({ decisions: 3, chunks: 1, ids: 3, feedback: 1, dryRun: false });
    expect({ ...dry, dryRun: false }).toEqual(real);
    // the result stays, without its decision
    withDb(path, (db) => expect(db.prepare('SELECT declaration_id FROM feedback').pluck().all()).toEqual(['A2']));
  });

  it('works in slices, with progress, to the same end; prunes rows of the older layout too', async () => {
    const chunks: [string, string[]][] = Array.from({ length: 30 }, (_, k) => [`2026-01-${String(k + 1).padStart(2, '0')}`, [`S${k}`, `T${k % 7}`]]);
    // older-layout rows below the chunks' seqs
    const legacy = (db: ReturnType<typeof openStore>) => {
      const row = db.prepare(`INSERT INTO decision_log (seq, declaration_id, decided_at, ruleset_version, score, channel, control_group, reasons, date, office, importer, hs, origin, customs_value, net_mass)
        VALUES (?, ?, ?, 'aaaaaaaaaaaaaaaa', 1, 'green', 0, '[]', '2025-12-01', 'OF01', 'IM1', '020890', 'CN', 1, 1)`);
      for (let s = 1; s <= 2500; s++) row.run(s, `L${s}`, day('2025-12-01') + s);
    };
    const [a, b] = [await store('slices-a', chunks, legacy), await store('slices-b', chunks, legacy)];
    // T ids are decided every 7 chunks, on both sides of the date: the id index holds a row per decision
    const indexed = (path: string, below: number) => withDb(path, (db) => db.prepare('SELECT count(*) FROM decision_ids WHERE seq < ?').pluck().get(below) as number);
    expect(indexed(a, 2500 + 41)).toBe(40);
    const progress: number[] = [];
    const sliced = withDb(a, (db) => pruneDecisionLog(db, { before: day('2026-01-21'), slice: 1, onProgress: (done) => progress.push(done) }));
    const whole = withDb(b, (db) => pruneDecisionLog(db, { before: day('2026-01-21'), slice: 1000 }));
    expect(sliced).toEqual(whole);
    expect(whole).toMatchObject({ decisions: 2500 + 40, chunks: 20, legacyRows: 2500 });
    expect(progress.length).toBeGreaterThan(20);
    expect(progress[progress.length - 1]).toBe(2540);
    expect(snapshot(a)).toEqual(snapshot(b));
    expect(sliced.cut).toBe(2500 + 41);
    expect(sliced.ids).toBe(40);
    expect(indexed(a, sliced.cut!)).toBe(0);
    expect(indexed(a, Infinity)).toBe(20);
    withDb(a, (db) => {
      expect(db.prepare('SELECT count(*) FROM decision_log').pluck().get()).toBe(0);
      const reader = new LogReader(db);
      expect(reader.decisions('S19')).toEqual([]);
      expect(reader.decisions('S20').length).toBe(1);
      // T ids decided both before and after the date keep their later decisions
      expect(reader.decisions('T6').map((d) => d.decidedAt.slice(0, 10))).toEqual(['2026-01-21', '2026-01-28']);
    });
  });

  it('selectivity feedback prune: JSON report, dry run, and named errors for a bad date or a missing store', async () => {
    const path = await store('cli', CHUNKS);
    const dataDir = join(dir, 'cli');
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let dry: number, real: number;
    try {
      dry = await main(['feedback', 'prune', '--before', '2026-02-01', '--dry-run', '--data-dir', dataDir, '--json']);
      real = await main(['feedback', 'prune', '--before', '2026-02-01', '--data-dir', dataDir]);
    } finally {
      process.stdout.write = write;
    }
    expect([dry, real]).toEqual([0, 0]);
    expect(JSON.parse(out[0])).toMatchObject({ cut: 4, decisions: 3, ids: 3, dryRun: true });
    expect(out[1]).toMatch(/^pruned 3 decisions \(1 chunks, 0 rows of the older layout\)/);
    withDb(path, (db) => expect(db.prepare('SELECT count(*) FROM decision_chunks').pluck().get()).toBe(2));
    const errs: string[] = [];
    const writeErr = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((x: string) => { errs.push(String(x)); return true; }) as typeof process.stderr.write;
    let codes: number[];
    try {
      codes = [
        await main(['feedback', 'prune', '--before', '2026-13-45', '--data-dir', dataDir]),
        await main(['feedback', 'prune', '--before', '2026-02-30', '--data-dir', dataDir]),
        await main(['feedback', 'prune', '--data-dir', dataDir]),
        await main(['feedback', 'prune', '--before', '2026-02-01', '--data-dir', join(dir, 'nowhere')]),
      ];
    } finally {
      process.stderr.write = writeErr;
    }
    expect(codes).toEqual([2, 2, 2, 2]);
    const text = errs.join('');
    expect(text).toMatch(/SEL_ERR_OPTION_INVALID: --before 2026-13-45 is not a date/);
    expect(text).toMatch(/SEL_ERR_OPTION_INVALID: --before 2026-02-30 is not a date/);
    expect(text).toMatch(/SEL_ERR_OPTION_INVALID: feedback prune needs --before/);
    expect(text).toMatch(/SEL_ERR_FILE_NOT_FOUND: no store at/);
    // nothing changed by the refused commands
    withDb(path, (db) => expect(db.prepare('SELECT count(*) FROM decision_chunks').pluck().get()).toBe(2));
  });
});
