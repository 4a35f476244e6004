/**
 * `selectivity history import|show`: the columnar history store that
 * back-tests replay (src/history/).
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { errors } from '../errors.js';
import { formatIsoDate } from '../model/schema.js';
import { historyDir, readManifest, storeBytes } from '../history/store.js';
import { importHistory, type HistoryImportReport } from '../history/import.js';
import { intOption } from './options.js';
import { Progress } from './progress.js';

export const HISTORY_HELP = `Usage: selectivity history import <file> [<file> …] [options]
       selectivity history show [--data-dir <dir>] [--json]

import appends declarations (CSV or NDJSON, any column mapping) to the
history store in <data-dir>/history: Apache Arrow IPC segment files
(dictionary-encoded categoricals, typed columns) listed by a manifest. New
files never rewrite what is there; the import commits once, at the end (all
or nothing). With --label, each declaration's examination result is kept
(an empty cell: not known) with the revenue at stake, so back-tests report
hit rates and revenue. Invalid records are reported and skipped.

show prints what the store holds: segments, rows, dates, results, bytes.

Options:
  --data-dir <dir>          data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --columns <preset|file>   column mapping: "default" (CSV default), "kcs" or a JSON file
  --label <column>          examination result column (non-compliant when not '', 0, false, no, n)
  --positive <value>        label value meaning non-compliant, repeatable (instead of the rule above)
  --revenue <expression>    revenue at stake (default customsValue * taxRate / 100); schema
                            numbers and pass-through columns, + - * / ( )
  --segment-rows <n>        declarations per segment file (default 1048576)
  --json                    print the report as JSON
`;

function dataDirOf(v?: string): string {
  return resolve(v ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
}

export function formatImport(r: HistoryImportReport): string {
  const lines = [
    `imported ${r.rows.toLocaleString('en-US')} declarations from ${r.files.length} file(s) in ${r.seconds.toFixed(1)} s (${Math.round(r.rowsPerSecond).toLocaleString('en-US')}/s) into ${r.segments.length} new segment(s)`,
    `  with a known result: ${r.withResult.toLocaleString('en-US')} (${r.nonCompliant.toLocaleString('en-US')} non-compliant); invalid records skipped: ${r.invalid.toLocaleString('en-US')}`,
    `  store: ${r.store.rows.toLocaleString('en-US')} declarations in ${r.store.segments} segment(s), ${(r.store.bytes / 2 ** 20).toFixed(1)} MiB, ${r.store.bytesPerDeclaration.toFixed(1)} bytes per declaration`,
  ];
  for (const e of r.errors.slice(0, 5)) lines.push(`  line ${e.line}${e.id ? ` (${e.id})` : ''}: ${e.code} ${e.field}: ${e.message}`);
  if (r.invalid > 5) lines.push(`  … ${r.invalid - 5} more invalid records`);
  return lines.join('\n');
}

export async function historyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'data-dir': { type: 'string' }, columns: { type: 'string' }, label: { type: 'string' }, positive: { type: 'string', multiple: true },
      revenue: { type: 'string' }, 'segment-rows': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  const [sub, ...files] = positionals;
  if (values.help || !sub) { process.stdout.write(HISTORY_HELP); return values.help ? 0 : 1; } // no subcommand: exit 1, as for no command (docs/api.md)
  const dir = historyDir(dataDirOf(values['data-dir']));
  if (sub === 'import') {
    if (files.length === 0) throw errors.SEL_ERR_OPTION_INVALID('history import needs at least one file', { field: 'files', expected: 'one or more CSV or NDJSON files', got: files });
    const sizes = files.map((f) => { try { return statSync(f).size; } catch { return 0; } });
    const bar = new Progress('import', sizes.reduce((a, b) => a + b, 0));
    const report = await importHistory(dir, files, {
      columns: values.columns, label: values.label, positives: values.positive, revenue: values.revenue,
      segmentRows: values['segment-rows'] !== undefined ? intOption(values['segment-rows'], 'segment-rows', 1, 2 ** 26) : undefined,
      onProgress: (file, read, _total, rows) => {
        const before = sizes.slice(0, files.indexOf(file)).reduce((a, b) => a + b, 0);
        bar.update(before + read, rows);
      },
    });
    bar.done();
    process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatImport(report)}\n`);
    return 0;
  }
  if (sub === 'show') {
    const m = readManifest(dir);
    const bytes = storeBytes(dir, m);
    const summary = {
      dir, rows: m.rows, segments: m.segments.length, bytes, bytesPerDeclaration: m.rows ? bytes / m.rows : 0,
      from: m.segments.length ? formatIsoDate(Math.min(...m.segments.map((s) => s.firstDay))) : null,
      to: m.segments.length ? formatIsoDate(Math.max(...m.segments.map((s) => s.lastDay))) : null,
      withResult: m.segments.reduce((a, s) => a + s.withResult, 0), nonCompliant: m.segments.reduce((a, s) => a + s.nonCompliant, 0),
      imports: m.imports.map((i) => ({ at: i.at, rows: i.rows, sources: i.sources })),
    };
    if (values.json) { process.stdout.write(`${JSON.stringify({ ...summary, manifest: m }, null, 2)}\n`); return 0; }
    if (m.rows === 0) { process.stdout.write(`${dir}: empty (import with selectivity history import)\n`); return 0; }
    process.stdout.write(`${dir}: ${m.rows.toLocaleString('en-US')} declarations, ${summary.from} … ${summary.to}, ${m.segments.length} segment(s), ${(bytes / 2 ** 20).toFixed(1)} MiB (${summary.bytesPerDeclaration.toFixed(1)} bytes per declaration)\n`
      + `  with a known result: ${summary.withResult.toLocaleString('en-US')} (${summary.nonCompliant.toLocaleString('en-US')} non-compliant)\n`
      + m.imports.map((i) => `  ${i.at}: ${i.rows.toLocaleString('en-US')} from ${i.sources.join(', ') || '(library call)'}`).join('\n') + '\n');
    return 0;
  }
  throw errors.SEL_ERR_OPTION_INVALID(`unknown history subcommand "${sub}"`, { field: 'subcommand', expected: 'import or show', got: sub });
}
