/**
 * Decision-log retention: deletes the decisions logged before a date, whole
 * chunks at a time, in short transactions so that a running service's log
 * writer is never kept waiting long (docs/feedback.md#retention).
 *
 * The cut is a seq: the first decision kept. Everything below it goes (the
 * chunks, the older layout's decision_log rows, the id index's rows of
 * pruned decisions, and the filters of the index's parts left empty);
 * everything from it on stays. Two rules keep the log
 * sound:
 *  - the newest decision always stays: the writer numbers the next decision
 *    after the highest seq it finds, and with none left the numbers would
 *    start again, so that feedback already recorded would join to new,
 *    unrelated decisions;
 *  - decisions that current feedback joins to are pruned only when asked
 *    (`includeFeedback`): their declaration fields are what
 *    `train --from-store` learns from.
 */
import type { Database as Db } from 'better-sqlite3';
import { errors } from '../errors.js';
import { partOf } from '../store/id-filter.js';

export interface PruneOptions {
  /** Decisions decided before this time (ms since 1970) are pruned. */
  before: number;
  /** Also prune decisions that current feedback joins to (default false: refuse with SEL_ERR_OPTION_INVALID). */
  includeFeedback?: boolean;
  /** Count only; change nothing. */
  dryRun?: boolean;
  /** Chunks deleted per transaction (default 200); older-layout rows: 1,000 times as many, rows of the id index: 25 times. */
  slice?: number;
  /** Called after each transaction with the decisions pruned so far and the total to prune. */
  onProgress?: (done: number, total: number) => void;
}

export interface PruneReport {
  /** The first seq kept (null: the log is empty). */
  cut: number | null;
  /** When the first decision kept was decided (ISO 8601), or null. */
  keptFrom: string | null;
  /** Decisions pruned (or, dry run, to prune). */
  decisions: number;
  /** Chunks pruned. */
  chunks: number;
  /** decision_log rows (the older layout) pruned. */
  legacyRows: number;
  /** Rows of the id index (decision_ids) removed: one per pruned decision of the chunks. */
  ids: number;
  /** Current feedback rows that join to pruned decisions (kept in `feedback`, without their decision). */
  feedback: number;
  dryRun: boolean;
}

export function pruneDecisionLog(db: Db, options: PruneOptions): PruneReport {
  const { before, includeFeedback = false, dryRun = false, onProgress } = options;
  const slice = options.slice ?? 200;
  if (!Number.isFinite(before)) throw errors.SEL_ERR_OPTION_INVALID('the prune date is not a valid time', { field: 'before', expected: 'a date (YYYY-MM-DD) or an ISO 8601 time', got: before });
  if (!Number.isInteger(slice) || slice < 1) throw errors.SEL_ERR_OPTION_INVALID('slice must be a positive integer', { field: 'slice', expected: 'an integer >= 1', got: slice });
  const one = (sql: string, ...args: unknown[]) => db.prepare(sql).pluck().get(...args) as number | null;

  // the first seq kept: the first decision decided at or after `before`, but never above the newest decision
  const newest = one('SELECT first_seq FROM decision_chunks ORDER BY first_seq DESC LIMIT 1') ?? one('SELECT max(seq) FROM decision_log');
  if (newest === null) return { cut: null, keptFrom: null, decisions: 0, chunks: 0, legacyRows: 0, ids: 0, feedback: 0, dryRun };
  const firstChunk = one('SELECT min(first_seq) FROM decision_chunks WHERE decided_at >= ?', before);
  const firstLegacy = one('SELECT min(seq) FROM decision_log WHERE decided_at >= ?', before);
  const cut = Math.min(newest, ...[firstChunk, firstLegacy].filter((x): x is number => x !== null));
  const keptAt = one('SELECT decided_at FROM decision_chunks WHERE first_seq = ?', cut) ?? one('SELECT decided_at FROM decision_log WHERE seq = ?', cut);

  const chunks = db.prepare('SELECT count(*) AS n, coalesce(sum(count), 0) AS decisions FROM decision_chunks WHERE first_seq < ?').get(cut) as { n: number; decisions: number };
  const legacyRows = one('SELECT count(*) FROM decision_log WHERE seq < ?', cut) ?? 0;
  const feedback = one('SELECT count(*) FROM feedback WHERE current = 1 AND decision_seq < ?', cut) ?? 0;
  const total = chunks.decisions + legacyRows;
  // the part of the id index the cut falls in (partOf: seqs may pass 2^31, where >> would go wrong)
  const cutPart = partOf(cut);
  const report: PruneReport = { cut, keptFrom: keptAt === null ? null : new Date(keptAt).toISOString(), decisions: total, chunks: chunks.n, legacyRows, ids: 0, feedback, dryRun };
  if (feedback > 0 && !includeFeedback) {
    throw errors.SEL_ERR_OPTION_INVALID(`${feedback} examination results join to decisions logged before the cut; pruning them would keep the results without their declarations`, {
      field: 'include-feedback', expected: 'an earlier date, or --include-feedback to prune those decisions too', got: feedback,
    });
  }
  if (dryRun) {
    report.ids = one('SELECT count(*) FROM decision_ids WHERE part <= ? AND seq < ?', cutPart, cut) ?? 0;
    return report;
  }

  let done = 0;
  // chunks, a slice of chunks per transaction
  const nextChunks = db.prepare('SELECT first_seq, count FROM decision_chunks WHERE first_seq < ? ORDER BY first_seq LIMIT ?');
  const dropChunks = db.prepare('DELETE FROM decision_chunks WHERE first_seq >= ? AND first_seq < ?');
  const chunkSlice = db.transaction(() => {
    const rows = nextChunks.all(cut, slice) as { first_seq: number; count: number }[];
    if (rows.length === 0) return 0;
    const lo = rows[0].first_seq, last = rows[rows.length - 1], hi = last.first_seq + last.count;
    dropChunks.run(lo, hi);
    return rows.reduce((s, r) => s + r.count, 0);
  });
  for (let n = chunkSlice.immediate(); n > 0; n = chunkSlice.immediate()) { done += n; onProgress?.(done, total); }

  // the older layout's rows, by seq
  const nextLegacy = db.prepare('SELECT seq FROM decision_log WHERE seq < ? ORDER BY seq LIMIT 1 OFFSET ?').pluck();
  const dropLegacy = db.prepare('DELETE FROM decision_log WHERE seq < ?');
  const legacySlice = db.transaction(() => {
    // the slice ends before the (slice × 1,000 + 1)th remaining row, or at the cut
    const end = Math.min(cut, (nextLegacy.get(cut, slice * 1000) as number | undefined) ?? cut);
    return dropLegacy.run(end).changes;
  });
  for (let n = legacySlice.immediate(); n > 0; n = legacySlice.immediate()) { done += n; onProgress?.(done, total); }

  // the id index's rows of pruned decisions: the parts up to the cut's, a range of ids of one part per transaction
  const idsFrom = db.prepare('SELECT declaration_id FROM decision_ids WHERE part = ? AND declaration_id > ? ORDER BY declaration_id LIMIT 1 OFFSET ?').pluck();
  const dropIds = db.prepare('DELETE FROM decision_ids WHERE part = ? AND declaration_id > ? AND declaration_id <= ? AND seq < ?');
  const dropIdsTail = db.prepare('DELETE FROM decision_ids WHERE part = ? AND declaration_id > ? AND seq < ?');
  const idSlice = db.transaction((part: number, after: string): string | undefined => {
    const end = idsFrom.get(part, after, 25 * slice - 1) as string | undefined;
    report.ids += end === undefined ? dropIdsTail.run(part, after, cut).changes : dropIds.run(part, after, end, cut).changes;
    return end;
  });
  const lowest = one('SELECT part FROM decision_ids ORDER BY part LIMIT 1');
  if (lowest !== null) {
    for (let part = lowest; part <= cutPart; part++) {
      // '' sorts before every id (ids are never empty)
      for (let after: string | undefined = ''; after !== undefined;) after = idSlice.immediate(part, after);
    }
  }
  // the filters of the parts left without rows (every part below the cut's; that part keeps its filter, which still holds its ids)
  db.prepare('DELETE FROM decision_id_filters WHERE part < ?').run(cutPart);
  return report;
}
