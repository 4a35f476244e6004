/**
 * Training data from the service's own store: the logged decisions
 * (decision_log) whose declarations were inspected, labelled by their
 * current examination feedback (discrepancy or seizure = non-compliant).
 * This is how the engine learns from the feedback loop: retrain on what was
 * inspected, swap the model in (src/service/state.ts).
 */
import { errors } from '../errors.js';
import { BatchBuilder } from '../model/columnar.js';
import type { Declaration } from '../model/schema.js';
import type { Db } from '../store/sqlite.js';
import { loggedDeclaration } from '../feedback/feedback.js';
import type { PeerTables } from '../peers/peer-groups.js';
import { trainModel, type TrainedModel, type TrainingData, type TrainOptions } from './train.js';

interface Row {
  declaration_id: string; date: string; office: string; importer: string; declarant: string | null; seller: string | null;
  hs: string; origin: string; departure: string | null; transport_mode: string | null;
  customs_value: number; net_mass: number; quantity: number | null; tax_rate: number | null; aeo: number | null; outcome: string;
}

/** The inspected declarations with current feedback, each joined to the decision the feedback answers. */
export function trainingDataFromStore(db: Db, batchSize = 8192): TrainingData & { rows: number; positives: number } {
  const rows = db.prepare(`
    SELECT d.declaration_id, d.date, d.office, d.importer, d.declarant, d.seller, d.hs, d.origin, d.departure, d.transport_mode,
           d.customs_value, d.net_mass, d.quantity, d.tax_rate, d.aeo, f.outcome
      FROM feedback f JOIN decision_log d ON d.seq = f.decision_seq
     WHERE f.current = 1 AND f.inspected = 1
     ORDER BY d.date, d.seq`).iterate() as IterableIterator<Row>;
  const data: TrainingData = { batches: [], labels: [] };
  let b = new BatchBuilder(batchSize);
  let labels: number[] = [];
  let n = 0, positives = 0;
  const flush = () => {
    if (b.length === 0) return;
    data.batches.push(b.finish().batch);
    data.labels.push(Uint8Array.from(labels));
    b = new BatchBuilder(batchSize);
    labels = [];
  };
  for (const r of rows) {
    const d: Declaration = { id: r.declaration_id, ...loggedDeclaration(r) };
    const y = r.outcome === 'discrepancy' || r.outcome === 'seizure' ? 1 : 0;
    b.push(d);
    labels.push(y);
    n++;
    positives += y;
    if (b.full) flush();
  }
  flush();
  if (n < 10 || positives === 0 || positives === n) {
    throw errors.SEL_ERR_OPTION_INVALID(`the store holds ${n} inspected declarations with feedback (${positives} non-compliant): too few to learn from`, { field: 'feedback', expected: 'at least 10 inspected declarations with feedback, compliant and non-compliant', got: { inspected: n, nonCompliant: positives } });
  }
  return { ...data, rows: n, positives };
}

/**
 * Fits the compliance model on the store's inspected declarations with
 * feedback against `peers` (the service's POST /v1/model/retrain and
 * `selectivity train --from-store`); returns the model file's document.
 */
export async function modelFromStore(db: Db, peers: PeerTables, options: TrainOptions, source: string, now = new Date()): Promise<TrainedModel & { createdAt: string; source: string; nonCompliant: number }> {
  const data = trainingDataFromStore(db);
  const model = await trainModel(data, peers, {}, { ...options, threads: 0 });
  return { ...model, createdAt: now.toISOString(), source, nonCompliant: data.positives };
}
