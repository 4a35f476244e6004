/**
 * Worker entry for refitting the compliance model from the service's store
 * (POST /v1/model/retrain and automatic retraining): the training reads the
 * decision log and the feedback with its own connection and fits the model
 * off the main thread, so scoring is not held up while it runs. The model
 * document comes back; the main thread validates, writes and swaps it.
 */
import { catchForWorker, type WorkerFailure } from '../src/errors.js';
import { openStore } from '../src/store/sqlite.js';
import { loadPeerTables } from '../src/peers/peer-store.js';
import { modelFromStore, STORE_SOURCE } from '../src/learn/from-store.js';
import type { TrainOptions } from '../src/learn/train.js';

export interface RetrainTask {
  storePath: string;
  peersPath: string;
  /** When the model is made (ms since the epoch). */
  now: number;
  /** The prior strength and the significance bar to fit with (serve --retrain-strength, --retrain-min-z); the defaults otherwise. */
  options?: Pick<TrainOptions, 'strength' | 'minZ'>;
}

export default function retrain(task: RetrainTask): Promise<Awaited<ReturnType<typeof modelFromStore>> | WorkerFailure> {
  return catchForWorker(async () => {
    const db = openStore(task.storePath);
    try {
      return await modelFromStore(db, loadPeerTables(task.peersPath), task.options ?? {}, STORE_SOURCE, new Date(task.now));
    } finally {
      db.close();
    }
  });
}
