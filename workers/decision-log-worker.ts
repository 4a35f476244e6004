/**
 * The decision-log writer thread (src/feedback/decision-log.ts): its own
 * connection to the store; payloads are committed in groups. A message
 * arriving while a transaction commits waits for the next one, which takes
 * everything that arrived meanwhile: group commit without a timer, one fsync
 * per group. Each group is acknowledged with the ids of its payloads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LogWriter } from '../src/feedback/decision-log.js';

const port = parentPort!;
const writer = new LogWriter((workerData as { storePath: string }).storePath);
let queued: { id: number; bytes: Uint8Array }[] = [];
let scheduled = false;

function commit(): void {
  scheduled = false;
  const batch = queued;
  queued = [];
  if (batch.length === 0) return;
  const ids = batch.map((b) => b.id);
  try {
    port.postMessage({ ids, rows: writer.commit(batch.map((b) => b.bytes)) });
  } catch (e) {
    port.postMessage({ ids, rows: 0, error: { message: `decision log write failed: ${(e as Error).message}` } });
  }
}

port.on('message', (m: { id: number; bytes: Uint8Array } | { close: true }) => {
  if ('close' in m) {
    commit();
    writer.close();
    port.close();
    return;
  }
  queued.push(m);
  if (!scheduled) { scheduled = true; setImmediate(commit); }
});
