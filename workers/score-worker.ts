/**
 * Piscina worker entry: one WASM kernel instance per worker, loaded once; the
 * compiled ruleset arrives by reference (SharedArrayBuffer) with each task and
 * is copied into kernel memory only when its version changes, so a ruleset
 * swap is atomic per task: a batch is scored wholly by the version it was
 * sent with. Batches arrive transferred; results leave transferred.
 *
 * Two kinds of task: a columnar batch (library API, CLI), or a wire request
 * (the HTTP service: encoded bytes in, encoded decisions out; see
 * src/service/wire.ts).
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { Kernel } from '../src/kernel/kernel.js';
import { isSelectivityError, type WorkerFailure } from '../src/errors.js';
import { unpackBatch, type PackedBatch } from '../src/model/columnar.js';
import { scoreWire, type WireReply, type WireRequest } from '../src/service/wire.js';
import type { BatchText } from '../src/text/signals.js';
import type { BatchHistory } from '../src/learn/history.js';

export interface ScoreTask {
  rulesetVersion: string;
  ruleset: SharedArrayBuffer;
  batch?: PackedBatch;
  wire?: WireRequest;
  /** Wire requests: an Int32 that the caller sets to 1 when it no longer wants the reply (its client went away). */
  abandoned?: SharedArrayBuffer;
}

/** What a wire task returns instead of a reply when it was abandoned before it began. */
export interface AbandonedReply {
  abandoned: true;
}

export interface ScoreReply {
  buffer: ArrayBuffer;
  size: number;
  rulesetVersion: string;
  kernelNs: number;
  text?: BatchText;
  history?: BatchHistory;
}

let kernel: Kernel | undefined;

class Transfer<T> {
  constructor(private readonly value: T, private readonly buffers: ArrayBuffer[]) {}
  get [transferableSymbol](): ArrayBuffer[] { return this.buffers; }
  get [valueSymbol](): T { return this.value; }
}

/**
 * A named error (SEL_ERR_KERNEL_MEMORY for a batch too large, …) is returned
 * as a WorkerFailure, which the engine raises again: thrown, it would reach
 * the caller as a plain Error, its code and status lost (a service would
 * answer 500).
 */
export default function score(task: ScoreTask): unknown {
  try {
    return scoreTask(task);
  } catch (e) {
    if (isSelectivityError(e)) return { selectivityError: e.toJSON() } satisfies WorkerFailure;
    throw e;
  }
}

function scoreTask(task: ScoreTask): unknown {
  kernel ??= new Kernel();
  if (kernel.rulesetVersion !== task.rulesetVersion) kernel.loadRuleset(task.ruleset);
  if (task.wire) {
    // a task that waited in the queue for a client that has gone since is not scored (nor logged)
    if (task.abandoned && Atomics.load(new Int32Array(task.abandoned), 0) !== 0) return { abandoned: true } satisfies AbandonedReply;
    const reply: WireReply = scoreWire(kernel, task.wire);
    // the reply body and the decision-log payload (when asked for) leave transferred
    const buffers = reply.ok ? [reply.body.buffer as ArrayBuffer] : [];
    if (reply.ok && reply.log) buffers.push(reply.log.buffer as ArrayBuffer);
    return move(new Transfer(reply, buffers) as never);
  }
  const batch = unpackBatch(task.batch!);
  const result = kernel.score(batch);
  const reply: ScoreReply = { buffer: result.buffer, size: result.size, rulesetVersion: result.rulesetVersion, kernelNs: result.kernelNs };
  if (result.text) reply.text = result.text; // signals are cloned (small: one per distinct description)
  const buffers = [result.buffer];
  if (result.history) {
    // its columns are views of the batch: the batch's buffer goes back with them, transferred
    reply.history = result.history;
    buffers.push(batch.buffer);
    if (result.history.slots) buffers.push(result.history.slots.buffer as ArrayBuffer); // its own buffer (a copy out of the kernel's memory)
  }
  return move(new Transfer<ScoreReply>(reply, buffers) as never);
}
