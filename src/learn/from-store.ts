/**
 * Training data from the service's own store: the logged decisions
 * (src/feedback/log-reader.ts) whose declarations were inspected, labelled by their
 * current examination feedback (discrepancy or seizure = non-compliant).
 * This is how the engine learns from the feedback loop: retrain on what was
 * inspected, swap the model in (src/service/state.ts).
 */
import { errors } from '../errors.js';
import { BatchBuilder } from '../model/columnar.js';
import type { Declaration } from '../model/schema.js';
import type { Db } from '../store/sqlite.js';
import { DecisionLogReader } from '../feedback/log-reader.js';
import { newestFeedbackSeq } from '../feedback/feedback.js';
import type { PeerTables } from '../peers/peer-groups.js';
import { trainModel, type TrainedModel, type TrainingData, type TrainOptions } from './train.js';

/** The inspected declarations with current feedback, each joined to the decision the feedback answers; in order of declaration date, then decision. */
export function trainingDataFromStore(db: Db, batchSize = 8192): TrainingData & { misclassified: Uint8Array[]; rows: number; positives: number; feedbackSeq: number } {
  const log = new DecisionLogReader(db);
  // the newest result before the read: what arrives meanwhile may be learnt from too, and still counts as new
  const feedbackSeq = newestFeedbackSeq(db);
  // in decision order, so that the decisions of one chunk are read together
  const joined = db.prepare('SELECT decision_seq, outcome FROM feedback WHERE current = 1 AND inspected = 1 ORDER BY decision_seq').all() as { decision_seq: number; outcome: string }[];
  const rows: { seq: number; d: Declaration; y: number; mis: number }[] = [];
  for (const f of joined) {
    const logged = log.at(f.decision_seq);
    if (!logged) continue; // the decision was deleted from the log (retention): nothing to learn from
    // the log keeps no description, but it keeps what the text signal found: a MISCLASSIFICATION reason
    const mis = logged.reasons.some((r) => r.code === 'MISCLASSIFICATION') ? 1 : 0;
    rows.push({ seq: f.decision_seq, d: { id: logged.declarationId, ...logged.declaration }, y: f.outcome === 'discrepancy' || f.outcome === 'seizure' ? 1 : 0, mis });
  }
  rows.sort((a, b) => (a.d.date < b.d.date ? -1 : a.d.date > b.d.date ? 1 : a.seq - b.seq));
  const data: TrainingData & { misclassified: Uint8Array[] } = { batches: [], labels: [], misclassified: [] };
  let b = new BatchBuilder(batchSize);
  let labels: number[] = [], flags: number[] = [];
  let n = 0, positives = 0;
  const flush = () => {
    if (b.length === 0) return;
    data.batches.push(b.finish().batch);
    data.labels.push(Uint8Array.from(labels));
    data.misclassified.push(Uint8Array.from(flags));
    b = new BatchBuilder(batchSize);
    labels = [];
    flags = [];
  };
  for (const { d, y, mis } of rows) {
    b.push(d);
    labels.push(y);
    flags.push(mis);
    n++;
    positives += y;
    if (b.full) flush();
  }
  flush();
  if (n < 10 || positives === 0 || positives === n) {
    throw errors.SEL_ERR_OPTION_INVALID(`the store holds ${n} inspected declarations with feedback (${positives} non-compliant): too few to learn from`, { field: 'feedback', expected: 'at least 10 inspected declarations with feedback, compliant and non-compliant', got: { inspected: n, nonCompliant: positives } });
  }
  return { ...data, rows: n, positives, feedbackSeq };
}

/**
 * Fits the compliance model on the store's inspected declarations with
 * feedback against `peers` (the service's POST /v1/model/retrain and
 * `selectivity train --from-store`); returns the model file's document.
 */
/** The `source` of a model trained on the feedback in a data directory's store (the service's refits; `selectivity train --from-store` adds the directory in brackets). */
export const STORE_SOURCE = 'feedback in the store';

/** Whether a model file's `source` says it was trained on the feedback in the store: automatic retraining then replaces it, counting the results after its feedbackSeq. */
export function isFromStore(source: unknown): boolean {
  return typeof source === 'string' && (source === STORE_SOURCE || source.startsWith(`${STORE_SOURCE} (`));
}

export async function modelFromStore(db: Db, peers: PeerTables, options: TrainOptions, source: string, now = new Date()): Promise<TrainedModel & { createdAt: string; source: string; nonCompliant: number; feedbackSeq: number }> {
  const data = trainingDataFromStore(db);
  const model = await trainModel(data, peers, {}, { ...options, asOf: now.getTime(), threads: 0 });
  // feedbackSeq: the newest result the model may have learnt from; automatic retraining counts the results after it
  return { ...model, createdAt: now.toISOString(), source, nonCompliant: data.positives, feedbackSeq: data.feedbackSeq };
}
