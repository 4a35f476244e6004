/**
 * Piscina worker entry: one WASM kernel instance per worker, loaded once; the
 * compiled ruleset arrives by reference (SharedArrayBuffer) with each task and
 * is copied into kernel memory only when its version changes, so a ruleset
 * swap is atomic per task: a batch is scored wholly by the version it was
 * sent with. Batches arrive transferred; results leave transferred.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { Kernel } from '../src/kernel/kernel.js';
import { unpackBatch, type PackedBatch } from '../src/model/columnar.js';

export interface ScoreTask {
  rulesetVersion: string;
  ruleset: SharedArrayBuffer;
  batch: PackedBatch;
}

export interface ScoreReply {
  buffer: ArrayBuffer;
  size: number;
  rulesetVersion: string;
  kernelNs: number;
}

let kernel: Kernel | undefined;

class Reply {
  constructor(private readonly value: ScoreReply) {}
  get [transferableSymbol](): ArrayBuffer { return this.value.buffer; }
  get [valueSymbol](): ScoreReply { return this.value; }
}

export default function score(task: ScoreTask): unknown {
  kernel ??= new Kernel();
  if (kernel.rulesetVersion !== task.rulesetVersion) kernel.loadRuleset(task.ruleset);
  const result = kernel.score(unpackBatch(task.batch));
  return move(new Reply({ buffer: result.buffer, size: result.size, rulesetVersion: result.rulesetVersion, kernelNs: result.kernelNs }) as never);
}
