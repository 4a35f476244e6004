/**
 * `selectivity history import`: declaration files (CSV, NDJSON; any column
 * mapping) appended to the history store, with their examination results
 * when the files carry a label column. Invalid records are reported and
 * skipped; the import commits once, at the end, so an import is all or
 * nothing.
 */
import { statSync } from 'node:fs';
import { errors } from '../errors.js';
import { readDeclarations, type RecordError } from '../model/readers.js';
import { resolveColumns } from '../model/columns.js';
import { compileExpression, DEFAULT_REVENUE, REVENUE_FIELDS, type CompiledExpression } from '../evaluate/expression.js';
import { parseLabel } from '../evaluate/metrics.js';
import { HistoryWriter, RESULT_UNKNOWN, storeBytes, type HistoryManifest, type SegmentInfo } from './store.js';

export interface HistoryImportOptions {
  /** Column mapping: preset name, JSON file or object (default: the `default` preset for CSV, strict for NDJSON). */
  columns?: string | object;
  /** Label column (pass-through) holding the examination result; an empty cell is "not known". */
  label?: string;
  /** Label values meaning non-compliant (default: any value but '', 0, false, no, n). */
  positives?: string[];
  /** Revenue at stake, an expression over the schema's numbers and pass-through columns (default customsValue * taxRate / 100). */
  revenue?: string;
  segmentRows?: number;
  batchRows?: number;
  onProgress?: (file: string, bytesRead: number, bytesTotal: number, rows: number) => void;
}

export interface HistoryImportReport {
  files: string[];
  rows: number;
  invalid: number;
  /** The first invalid records (at most 20). */
  errors: RecordError[];
  withResult: number;
  nonCompliant: number;
  segments: SegmentInfo[];
  seconds: number;
  rowsPerSecond: number;
  store: { rows: number; segments: number; bytes: number; bytesPerDeclaration: number };
}

export async function importHistory(dir: string, files: string[], o: HistoryImportOptions = {}): Promise<HistoryImportReport> {
  if (files.length === 0) throw errors.SEL_ERR_OPTION_INVALID('history import needs at least one file', { field: 'files', expected: 'one or more CSV or NDJSON files' });
  const sizes = files.map((f) => {
    try { return statSync(f).size; } catch { throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${f}`, { field: 'file', expected: 'an existing file', got: f }); }
  });
  let columns = o.columns;
  if (o.label) {
    const mapping = resolveColumns(o.columns ?? 'default');
    const named = mapping.passThrough.filter((p) => p !== '*' && p !== o.label);
    columns = { ...mapping, passThrough: mapping.passThrough.includes('*') ? ['*', o.label, ...named] : [o.label, ...named] };
  }
  const started = performance.now();
  const writer = new HistoryWriter(dir, { segmentRows: o.segmentRows, batchRows: o.batchRows, sources: files });
  const report = { rows: 0, invalid: 0, errors: [] as RecordError[], withResult: 0, nonCompliant: 0 };
  let committed: { rows: number; segments: SegmentInfo[]; manifest: HistoryManifest };
  try {
    for (let f = 0; f < files.length; f++) {
      const file = files[f];
      let expr: CompiledExpression | undefined;
      let lastBad = -1;
      for await (const chunk of readDeclarations(file, { columns, batchSize: 16384 })) {
        for (const e of chunk.errors) {
          if (e.line !== lastBad) { report.invalid++; lastBad = e.line; }
          if (report.errors.length < 20) report.errors.push(e);
        }
        const b = chunk.batch;
        o.onProgress?.(file, chunk.bytesRead, sizes[f], report.rows + b.size);
        if (b.size === 0) continue;
        let result: Int8Array | undefined, revenue: Float64Array | undefined;
        if (o.label) {
          const labels = chunk.passThrough[o.label];
          const cols = Object.keys(chunk.passThrough);
          if (!labels) throw errors.SEL_ERR_CSV_HEADER(`no column "${o.label}" in ${file}`, { field: 'label', column: o.label, expected: `a label column; the file has: ${cols.join(', ') || '(no pass-through columns)'}`, got: o.label });
          expr ??= compileExpression(o.revenue ?? DEFAULT_REVENUE, [...REVENUE_FIELDS, ...cols]);
          result = new Int8Array(b.size);
          revenue = new Float64Array(b.size);
          const vals = new Float64Array(REVENUE_FIELDS.length + cols.length);
          for (let i = 0; i < b.size; i++) {
            const cell = labels[i];
            if (cell === undefined || cell.trim() === '') { result[i] = RESULT_UNKNOWN; revenue[i] = NaN; continue; }
            const r = parseLabel(cell, o.positives);
            result[i] = r;
            report.withResult++;
            if (r === 1) report.nonCompliant++;
            for (const j of expr.indices) vals[j] = j < REVENUE_FIELDS.length ? b.numeric[REVENUE_FIELDS[j]][i] : Number(chunk.passThrough[cols[j - REVENUE_FIELDS.length]][i]);
            const v = expr.evaluate((j) => vals[j]);
            revenue[i] = Number.isFinite(v) ? v : 0;
          }
        }
        writer.add(b, chunk.ids, result, revenue);
        report.rows += b.size;
      }
    }
    committed = writer.commit();
  } catch (e) {
    writer.abort();
    throw e;
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = storeBytes(dir, committed.manifest);
  return {
    files, ...report, segments: committed.segments, seconds, rowsPerSecond: report.rows / Math.max(seconds, 1e-9),
    store: { rows: committed.manifest.rows, segments: committed.manifest.segments.length, bytes, bytesPerDeclaration: committed.manifest.rows > 0 ? bytes / committed.manifest.rows : 0 },
  };
}
