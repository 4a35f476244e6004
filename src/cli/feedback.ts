/**
 * `selectivity feedback import|show`: examination results from files into
 * the store of a data directory (the one the service logs decisions to), and
 * what is recorded for a declaration. Results join to the logged decisions
 * exactly as POST /v1/feedback does (src/feedback/feedback.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { gzipped, textChunks } from '../model/readers.js';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { CsvParser } from '../model/csv.js';
import { parseInstant } from '../model/schema.js';
import { FEEDBACK_FIELDS, FeedbackStore, type FeedbackCounts } from '../feedback/feedback.js';
import { openExistingStore } from '../store/sqlite.js';
import { intOption } from './options.js';
import { pruneDecisionLog } from '../feedback/prune.js';
import { targetingReport, type ExaminedGroup, type ReportBreakdown } from '../feedback/report.js';

export const FEEDBACK_HELP = `Usage: selectivity feedback <command> [options]

Examination results per declaration, joined to the decision the service
logged for it (docs/feedback.md).

Commands:
  import <file.csv|file.ndjson>   record results from a file: CSV whose header names
                                  are the JSON field names (${FEEDBACK_FIELDS.join(', ')}),
                                  or NDJSON (one JSON object per line). Reports
                                  accepted, duplicates and rejected (line and code);
                                  exit code 2 when any line was rejected
  show <declarationId>            the current result, its history, and the logged
                                  decisions of the declaration (the latest 100;
                                  --limit N for another number, 0 for all)
  report [--from D] [--to D]      targeting performance over the examination dates
                                  from D to D (default: the last 30 days): per channel
                                  the results, inspected, non-compliant (hit rate) and
                                  revenue recovered, beside the control group's
                                  estimate of the green traffic's non-compliance
                                  (95 % interval); --per day|week|month adds the
                                  targeted and control figures of each such period
  prune --before <date>           delete the decisions logged before a date (UTC day
                                  or ISO time) from the decision log, whole chunks,
                                  in short transactions (the service may run). The
                                  newest decision always stays. Refuses when current
                                  results join to decisions before the date, unless
                                  --include-feedback

Options:
  --data-dir <dir>   data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --by <name>        who records the results (default: the OS user)
  --json             print JSON
  --from, --to       report: first and last examination date (YYYY-MM-DD)
  --per <period>     report: day, week (Monday to Sunday) or month
  --dry-run          prune: count what would go, change nothing
  --include-feedback prune: also prune decisions that results join to
  --limit <n>        show: the latest n logged decisions (default 100; 0: all)
`;

/** Items per transaction while importing. */
const CHUNK = 1000;

interface Rejected { line: number; declarationId?: string; code: string; field?: string; message: string }

/** A CSV cell as a JSON value: empty → absent; inspected → boolean; revenueRecovered → number (left as text when it does not parse, so validation names it). */
function cellValue(field: string, cell: string): unknown {
  if (cell === '') return undefined;
  if (field === 'inspected') return cell === 'true' || cell === '1' ? true : cell === 'false' || cell === '0' ? false : cell;
  if (field === 'revenueRecovered') return /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(cell) ? Number(cell) : cell;
  return cell;
}

/** Items of a file with their line numbers; a malformed line is an item of its own error. */
async function* readItems(file: string): AsyncGenerator<{ line: number; item?: unknown; parseError?: string }> {
  const ext = extname(gzipped(file) ? file.slice(0, -3) : file).toLowerCase();
  if (ext === '.csv') {
    const parser = new CsvParser();
    let header: string[] | undefined;
    const rows = function* (out: string[][], lines: number[]) {
      for (let k = 0; k < out.length; k++) {
        if (!header) {
          header = out[k].map((h) => h.trim());
          const unknown = header.find((h) => !(FEEDBACK_FIELDS as readonly string[]).includes(h));
          if (unknown !== undefined) throw errors.SEL_ERR_CSV_HEADER(`${file}: unknown column "${unknown}"`, { field: unknown, column: unknown, expected: `columns named ${FEEDBACK_FIELDS.join(', ')}`, got: unknown });
          continue;
        }
        const cells = out[k];
        if (cells.length !== header.length) { yield { line: lines[k], parseError: `expected ${header.length} cells, got ${cells.length}` }; continue; }
        const item: Record<string, unknown> = {};
        header.forEach((h, j) => { const v = cellValue(h, cells[j]); if (v !== undefined) item[h] = v; });
        yield { line: lines[k], item };
      }
    };
    for await (const chunk of textChunks(file, 1 << 20, { bytesRead: 0 })) {
      const out = parser.push(chunk);
      yield* rows(out, parser.lines);
    }
    // a quote left open at the end: the lines from it on are one bad line of their own, reported as such
    let last: string[][];
    try {
      last = parser.end();
    } catch (e) {
      yield { line: (e as { details?: { line?: number } }).details?.line ?? 0, parseError: (e as Error).message };
      return;
    }
    yield* rows(last, parser.lines);
    return;
  }
  if (ext !== '.ndjson' && ext !== '.jsonl') throw errors.SEL_ERR_FILE_FORMAT(`${file}: expected a .csv, .ndjson or .jsonl file (or one of them gzipped: .csv.gz…)`, { field: 'file', expected: '.csv | .ndjson | .jsonl, each also .gz', got: ext || file });
  let line = 0;
  for await (let text of createInterface({ input: Readable.from(textChunks(file, 1 << 20, { bytesRead: 0 })), crlfDelay: Infinity })) {
    line++;
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte-order mark, as the other readers skip
    if (text.trim() === '') continue;
    try { yield { line, item: JSON.parse(text) }; } catch (e) { yield { line, parseError: `not valid JSON (${(e as Error).message})` }; }
  }
}

export async function feedbackCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(FEEDBACK_HELP); return sub ? 0 : 1; }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      'data-dir': { type: 'string' }, by: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      before: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'include-feedback': { type: 'boolean' },
      from: { type: 'string' }, to: { type: 'string' }, per: { type: 'string' }, limit: { type: 'string' },
    },
  });
  if (values.help) { process.stdout.write(FEEDBACK_HELP); return 0; }
  const dataDir = resolve(values['data-dir'] ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  if (sub === 'prune') return prune(dataDir, values, positionals);
  if (sub === 'report') return report(dataDir, values, positionals);
  if (sub !== 'import' && sub !== 'show') throw errors.SEL_ERR_OPTION_INVALID(`unknown feedback command "${sub}"`, { field: 'command', expected: 'import, show, report, prune', got: sub });
  if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID(`feedback ${sub} needs exactly one ${sub === 'import' ? 'file' : 'declaration id'}`, { field: sub === 'import' ? 'file' : 'declarationId', expected: 'one argument', got: positionals });
  const by = values.by ?? `cli:${userInfo().username}`;
  if (sub === 'import') {
    const file = positionals[0];
    if (!existsSync(file) || !statSync(file).isFile()) throw errors.SEL_ERR_FILE_NOT_FOUND(`feedback file ${file} not found`, { field: 'file', expected: 'a readable file', got: file });
    // a gzip file cut short would fail only at its end, after the results before the cut were
    // committed: it is read through once first, so that such a file changes nothing
    if (gzipped(file)) for await (const _ of textChunks(file, 1 << 20, { bytesRead: 0 })) { /* checked whole */ }
  }
  const limit = sub === 'show' && values.limit !== undefined ? intOption(values.limit, 'limit', 0) : 100;
  // results join to logged decisions: without a store there is nothing to join to (and a mistyped
  // --data-dir must not leave a new store behind)
  const db = openExistingStore(dataDir, 'the data directory of a service that logged decisions');
  try {
    const store = new FeedbackStore(db);
    if (sub === 'show') {
      // trimmed, as when it was scored
      const r = store.show(positionals[0].trim(), limit === 0 ? Infinity : limit);
      if (r.history.length === 0 && r.decisions.length === 0) throw errors.SEL_ERR_NOT_FOUND(`no feedback and no logged decision for declaration ${r.declarationId}`, { field: 'declarationId', expected: 'a declaration id the service scored', got: r.declarationId });
      if (values.json) { process.stdout.write(`${JSON.stringify(r, null, 2)}\n`); return 0; }
      const out: string[] = [`declaration ${r.declarationId}`];
      const f = r.feedback;
      out.push(f ? `  result: ${f.date} channel ${f.channel}, ${f.inspected ? 'inspected' : 'not inspected'}, ${f.outcome}${f.irregularity ? ` (${f.irregularity})` : ''}, revenue recovered ${f.revenueRecovered}${f.notes ? `\n  notes: ${f.notes}` : ''}\n  recorded ${f.recordedAt} by ${f.recordedBy}` : '  no examination result recorded');
      if (r.history.length > 1) out.push('  history:', ...r.history.map((h) => `    ${h.recordedAt} ${h.recordedBy}: ${h.outcome}, ${h.inspected ? 'inspected' : 'not inspected'}, ${h.revenueRecovered}${h.current ? ' (current)' : ''}`));
      out.push(r.decisionsTotal > r.decisions.length ? `  decisions (the latest ${r.decisions.length} of ${r.decisionsTotal}; --limit for more):` : '  decisions:', ...r.decisions.map((d) => `    #${d.seq} ${d.decidedAt} ruleset ${d.rulesetVersion}: ${d.channel} score ${d.score}${d.controlGroup ? ' (control group)' : ''}${r.decision?.seq === d.seq ? (f ? '  ← the result joins to this one' : '  ← latest') : ''}`));
      process.stdout.write(`${out.join('\n')}\n`);
      return 0;
    }
    const file = positionals[0];
    const counts: FeedbackCounts = { recorded: 0, replaced: 0, duplicate: 0, rejected: 0 };
    const rejected: Rejected[] = [];
    let pending: { line: number; item: unknown }[] = [];
    let seen = 0;
    const progress = !values.json && process.stderr.isTTY;
    const flush = () => {
      if (pending.length === 0) return;
      const r = store.record(pending.map((p) => p.item), by);
      for (const k of ['recorded', 'replaced', 'duplicate', 'rejected'] as const) counts[k] += r.counts[k];
      for (const x of r.results) {
        if (x.status !== 'rejected') continue;
        rejected.push({ line: pending[x.index].line, ...(x.declarationId !== undefined ? { declarationId: x.declarationId } : {}), code: x.error!.code, field: x.error!.details.field as string | undefined, message: x.error!.message });
      }
      pending = [];
    };
    for await (const x of readItems(file)) {
      seen++;
      if (x.parseError !== undefined) {
        counts.rejected++;
        rejected.push({ line: x.line, code: errors.SEL_ERR_FEEDBACK_INVALID.code, field: '$', message: `line ${x.line}: ${x.parseError}` });
      } else {
        pending.push({ line: x.line, item: x.item });
        if (pending.length >= CHUNK) flush();
      }
      if (progress && seen % 50_000 === 0) process.stderr.write(`\rfeedback import: ${seen.toLocaleString('en-US')} results read`);
    }
    flush();
    if (progress && seen >= 50_000) process.stderr.write('\n');
    rejected.sort((a, b) => a.line - b.line);
    const summary = { file, accepted: counts.recorded + counts.replaced, recorded: counts.recorded, replaced: counts.replaced, duplicates: counts.duplicate, rejected };
    if (values.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(`${file}: ${summary.accepted} accepted (${counts.recorded} new, ${counts.replaced} replacing an earlier result), ${counts.duplicate} duplicates, ${rejected.length} rejected\n`);
      for (const r of rejected) process.stdout.write(`  line ${r.line}${r.declarationId ? ` (${r.declarationId})` : ''}: ${r.code}: ${r.message}\n`);
    }
    return rejected.length > 0 ? 2 : 0;
  } finally {
    db.close();
  }
}

/** `feedback report`: targeting performance and the control group (src/feedback/report.ts). */
function report(dataDir: string, values: { json?: boolean; from?: string; to?: string; per?: string }, positionals: string[]): number {
  if (positionals.length > 0) throw errors.SEL_ERR_OPTION_INVALID('feedback report takes no arguments, only options', { field: 'command', expected: 'feedback report [--from <date>] [--to <date>]', got: positionals });
  const db = openExistingStore(dataDir, 'the data directory of a service that logged decisions');
  try {
    const r = targetingReport(db, { from: values.from, to: values.to, per: values.per as ReportBreakdown | undefined });
    if (values.json) { process.stdout.write(`${JSON.stringify(r, null, 2)}\n`); return 0; }
    const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)} %`);
    const line = (name: string, g: ExaminedGroup) => `  ${name.padEnd(15)} ${String(g.results).padStart(8)} ${String(g.inspected).padStart(10)} ${String(g.nonCompliant).padStart(14)} ${pct(g.hitRate).padStart(9)} ${g.revenueRecovered.toLocaleString('en-US').padStart(18)}`;
    const c = r.controlGroup;
    const out = [
      `targeting ${r.from} – ${r.to} (examination dates): ${r.scored.toLocaleString('en-US')} declarations scored, ${r.results.toLocaleString('en-US')} results${r.unjoined > 0 ? ` (${r.unjoined} whose decision was pruned, left out)` : ''}`,
      '',
      `  ${'decided'.padEnd(15)} ${'results'.padStart(8)} ${'inspected'.padStart(10)} ${'non-compliant'.padStart(14)} ${'hit rate'.padStart(9)} ${'revenue recovered'.padStart(18)}`,
      ...r.channels.map((g) => line(g.channel, g)),
      line('targeted', r.targeted),
      line('control group', c),
      '',
      c.hitRate === null
        ? '  control group: no inspected result in the period, so no estimate of the green traffic\'s non-compliance'
        : `  non-compliance of the green traffic (control group): ${pct(c.hitRate)}, 95 % interval ${pct(c.low)} – ${pct(c.high)}, from ${c.inspected} inspected${r.lift !== null ? `; targeting finds non-compliance ${r.lift.toFixed(1)}× as often` : ''}`,
    ];
    if (r.periods) {
      out.push('', `  ${'period'.padEnd(25)} ${'results'.padStart(8)} ${'targeted: inspected'.padStart(20)} ${'hit rate'.padStart(9)} ${'control: inspected'.padStart(19)} ${'estimate (95 %)'.padStart(24)} ${'lift'.padStart(6)}`);
      for (const p of r.periods) {
        const k = p.controlGroup;
        out.push(`  ${`${p.from} – ${p.to}`.padEnd(25)} ${String(p.results).padStart(8)} ${String(p.targeted.inspected).padStart(20)} ${pct(p.targeted.hitRate).padStart(9)} ${String(k.inspected).padStart(19)} ${(k.hitRate === null ? '—' : `${pct(k.hitRate)} (${pct(k.low)} – ${pct(k.high)})`).padStart(24)} ${(p.lift === null ? '—' : `${p.lift.toFixed(1)}×`).padStart(6)}`);
      }
    }
    process.stdout.write(`${out.join('\n')}\n`);
    return 0;
  } finally {
    db.close();
  }
}

/** `feedback prune`: decision-log retention (src/feedback/prune.ts). */
function prune(dataDir: string, values: { json?: boolean; before?: string; 'dry-run'?: boolean; 'include-feedback'?: boolean }, positionals: string[]): number {
  if (positionals.length > 0) throw errors.SEL_ERR_OPTION_INVALID('feedback prune takes no arguments, only options', { field: 'command', expected: 'feedback prune --before <date>', got: positionals });
  const text = values.before;
  if (text === undefined) throw errors.SEL_ERR_OPTION_INVALID('feedback prune needs --before <date>', { field: 'before', expected: 'a date (YYYY-MM-DD, UTC) or an ISO 8601 time' });
  const before = parseInstant(text);
  if (Number.isNaN(before)) throw errors.SEL_ERR_OPTION_INVALID(`--before ${text} is not a date`, { field: 'before', expected: 'a date (YYYY-MM-DD, UTC) or an ISO 8601 time', got: text });
  const db = openExistingStore(dataDir, 'the data directory of a service that logged decisions');
  try {
    const progress = !values.json && process.stderr.isTTY;
    const r = pruneDecisionLog(db, {
      before, dryRun: values['dry-run'] === true, includeFeedback: values['include-feedback'] === true,
      onProgress: progress ? (done, total) => process.stderr.write(`\rfeedback prune: ${done.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} decisions`) : undefined,
    });
    if (progress && r.decisions > 0 && !r.dryRun) process.stderr.write('\n');
    if (values.json) { process.stdout.write(`${JSON.stringify(r, null, 2)}\n`); return 0; }
    const verb = r.dryRun ? 'would prune' : 'pruned';
    process.stdout.write(r.cut === null ? 'the decision log is empty\n'
      : `${verb} ${r.decisions.toLocaleString('en-US')} decisions (${r.chunks} chunks, ${r.legacyRows} rows of the older layout); ${r.dryRun ? 'rows of the id index to remove' : 'rows of the id index removed'}: ${r.ids}; results that joined to them: ${r.feedback}\n`
        + `kept: the decisions from seq ${r.cut} on, decided from ${r.keptFrom}\n`);
    return 0;
  } finally {
    db.close();
  }
}
