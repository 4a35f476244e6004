/**
 * Piscina worker entry for back-tests: reads record batches of one history
 * segment (the file is cached per worker: a segment's tasks mostly land on
 * the same workers, and the page cache serves the rest), turns each into a
 * kernel batch, scores it with the candidate and the baseline ruleset (one
 * kernel each, loaded once per version) and counts what the report needs.
 * Only the counts go back to the main thread.
 */
import { catchForWorker, type WorkerFailure } from '../src/errors.js';
import { Kernel } from '../src/kernel/kernel.js';
import { openSegment, remapScratch, toKernelBatch, type OpenSegment } from '../src/history/store.js';
import { addBatch, CapacityTracker, emptyPart, type CapacitySpec, type PartState } from '../src/backtest/accumulate.js';

export interface RulesetRef {
  version: string;
  buffer: SharedArrayBuffer;
  profiles: number;
}

export interface BacktestTask {
  /** Segment file and its index in the run (examples are ordered by it). */
  path: string;
  segmentIndex: number;
  /** Record batches [from, to) of the segment. */
  fromBatch: number;
  toBatch: number;
  /** Rows of the segment before fromBatch (for example order keys). */
  firstRow: number;
  fromDay: number;
  toDay: number;
  /** Month of fromDay as year × 12 + month (0-based), and the number of months in the run. */
  monthBase: number;
  months: number;
  candidate: RulesetRef;
  baseline: RulesetRef;
  capacity?: CapacitySpec;
}

const kernels: [Kernel | undefined, Kernel | undefined] = [undefined, undefined];
let open: { path: string; seg: OpenSegment; scratch: ReturnType<typeof remapScratch> } | undefined;

function kernelFor(k: 0 | 1, ref: RulesetRef): Kernel {
  const kernel = (kernels[k] ??= new Kernel());
  if (kernel.rulesetVersion !== ref.version) kernel.loadRuleset(ref.buffer);
  return kernel;
}

function monthIndex(day: number, base: number): number {
  const d = new Date(day * 86_400_000);
  return d.getUTCFullYear() * 12 + d.getUTCMonth() - base;
}

let reuse: ArrayBuffer | undefined;

export default function backtestTask(task: BacktestTask): Promise<PartState | WorkerFailure> {
  return catchForWorker(() => runTask(task));
}

function runTask(task: BacktestTask): PartState {
  if (open?.path !== task.path) {
    open = undefined; // let the previous segment go before the next is read
    const seg = openSegment(task.path);
    open = { path: task.path, seg, scratch: remapScratch(seg) };
  }
  const { seg, scratch } = open;
  const cand = kernelFor(0, task.candidate), base = kernelFor(1, task.baseline);
  const shareText = cand.textKey === base.textKey; // same watch lists and keyword terms: the text signals are the same
  const part = emptyPart([task.candidate.profiles, task.baseline.profiles], task.months);
  const capacity = task.capacity ? new CapacityTracker(task.capacity) : undefined;
  let first = task.firstRow;
  for (let k = task.fromBatch; k < task.toBatch; k++) {
    const rb = seg.table.batches[k];
    const n0 = rb.numRows;
    const dates = rb.getChild('date')!.data[0].values as Int32Array;
    let rows: Int32Array | undefined;
    let inRange = 0, lo = 2 ** 31, hi = -(2 ** 31);
    for (let i = 0; i < n0; i++) {
      const d = dates[i];
      if (d >= task.fromDay && d <= task.toDay) { inRange++; if (d < lo) lo = d; if (d > hi) hi = d; }
    }
    if (inRange === 0) { first += n0; continue; }
    if (inRange < n0) {
      rows = new Int32Array(inRange);
      for (let i = 0, j = 0; i < n0; i++) if (dates[i] >= task.fromDay && dates[i] <= task.toDay) rows[j++] = i;
    }
    const batch = toKernelBatch(rb, seg, scratch, rows, reuse);
    reuse = batch.buffer; // the kernel copies a batch in; the next batch reuses the buffer
    const n = batch.size;
    const resultCol = rb.getChild('result')!.data[0].values as Int8Array;
    const revenueCol = rb.getChild('revenue')!.data[0].values as Float64Array;
    const result = rows ? Int8Array.from(rows, (r) => resultCol[r]) : resultCol;
    const revenue = rows ? Float64Array.from(rows, (r) => revenueCol[r]) : revenueCol;
    // month of each row, through a table of the batch's days
    const monthOfDay = new Int32Array(hi - lo + 1);
    for (let d = lo; d <= hi; d++) monthOfDay[d - lo] = monthIndex(d, task.monthBase);
    const month = new Int32Array(n);
    for (let i = 0; i < n; i++) month[i] = monthOfDay[batch.date[i] - lo];
    const idCol = rb.getChild('id')!;
    const rowAt = (i: number) => (rows ? rows[i] : i);
    const firstKey = task.segmentIndex * 2 ** 32 + first;
    // both results are read by addBatch and dropped: each kernel refills its own buffer (a new one per batch
    // of thousands of rows was pages faulted in one by one)
    const rc = cand.score(batch, undefined, { reuse: true });
    const rbase = base.score(batch, shareText ? rc.text : undefined, { reuse: true });
    addBatch(part, {
      size: n,
      results: [rc, rbase],
      result, revenue, date: batch.date, month, months: task.months,
      key: (i) => firstKey + rowAt(i),
      id: (i) => String(idCol.get(rowAt(i))),
      officeCode: batch.codes.office, officeDict: batch.dicts.office,
      hs: (i) => batch.dicts.hs[batch.codes.hs[i]],
    }, capacity);
    first += n0;
  }
  if (capacity) part.capacity = capacity.list();
  return part;
}
