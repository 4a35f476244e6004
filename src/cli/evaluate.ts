/**
 * `selectivity evaluate`: learn from training files, score a test file, and
 * report precision, recall and revenue captured at the top k % by score,
 * beside random selection.
 */
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { DEFAULT_FRACTIONS, evaluate, type EvaluationReport } from '../evaluate/evaluate.js';
import { DEFAULT_REVENUE } from '../evaluate/expression.js';
import { loadProfiles } from '../profiles/load.js';
import { DEFAULT_LEVELS } from '../peers/peer-groups.js';
import { dimensionLoaded } from '../learn/history.js';
import { intOption, numberOption } from './options.js';
import { Progress } from './progress.js';
import { LEARN_HELP, LEARN_OPTIONS, learnOptions } from './train.js';

export const EVALUATE_HELP = `Usage:
  selectivity evaluate --train <file> [--train <file> …] --test <file> --label <column> [options]
  selectivity evaluate --file <file> [--split 0.8] --label <column> [options]

Builds peer statistics from the training files only, scores the test file,
ranks its declarations by score and reports precision, recall and revenue
captured at the top 1, 2, 5 and 10 %, beside random selection (expected
values). Declarations with equal scores share a cut pro rata.

Options:
  --label <column>          fraud label column (passed through by the mapping)
  --positive <value>        label value meaning fraud, repeatable (default: anything
                            but empty, 0, false, no, n, in any case, or a number
                            equal to zero)
  --revenue <expr>          revenue per declaration (default: ${DEFAULT_REVENUE});
                            fields customsValue, netMass, quantity, taxRate and
                            pass-through columns ("quoted" when they hold spaces)
  --columns <preset|file>   column mapping: "kcs", "default" (default) or a JSON file
  --file <file> --split <s> one file split by date: the earliest share s trains (default 0.8)
  --profiles <file.json>    risk profiles to score with (default: none)
  --by <level>              peer level, repeatable (default: ${DEFAULT_LEVELS.join(' → ')})
  --min-group-size <n>      smallest peer group used (default 5)
  --top <list>              top shares in %, comma-separated (default ${DEFAULT_FRACTIONS.map((f) => f * 100).join(',')})
  --threads <n>             worker threads (default: all cores)
  --json                    print the report as one JSON object

Learning (the compliance model of "selectivity train", fitted on the training
rows, then scored on the test set beside the deviation score alone):
  --learn                   fit historical tables and weights from the labels
${LEARN_HELP}`;

const pct = (x: number, d = 1) => `${(100 * x).toFixed(d)} %`;
/** A share whose denominator is 0 (no fraud in the test set, no revenue): not a figure. */
const share = (x: number, defined: boolean) => (defined ? pct(x) : '—');
/** k = f·N inspections: whole, or with the fraction of the next declaration the cut takes pro rata. */
const inspections = (k: number) => (Number.isInteger(k) ? k.toFixed(0) : k.toFixed(1));

/** A warning when the test set shares declarations or dates with the training rows (the figures are then optimistic). */
function overlapWarning(r: EvaluationReport): string[] {
  const o = r.test.overlap;
  const parts: string[] = [];
  if (o.sameIds) parts.push(`${o.sameIds.toLocaleString('en-US')} have an id that is also among the training rows`);
  if (o.notAfterTraining > 0) parts.push(`${o.notAfterTraining.toLocaleString('en-US')} are dated on or before the last training date (${r.train.lastDate})`);
  const lines = parts.length ? [`warning: of the ${r.n.toLocaleString('en-US')} test declarations, ${parts.join(', and ')}: the figures may be optimistic (the test set leaks into training)`] : [];
  if (o.sameIds === null) lines.push('note: the training rows hold too many ids to check the test set\'s against them');
  return lines;
}

export function formatEvaluation(r: EvaluationReport): string {
  const lines = [
    `train: ${r.train.files.join(', ')}: ${r.train.rows.toLocaleString('en-US')} declarations (${r.train.firstDate} – ${r.train.lastDate}), ${r.train.invalid} invalid`,
    `test:  ${r.test.file}: ${r.n.toLocaleString('en-US')} declarations (${r.test.firstDate} – ${r.test.lastDate})${r.splitDate ? `, split at ${r.splitDate}` : ''}, ${r.test.invalid} invalid`,
    `label ${r.label}: ${r.positives.toLocaleString('en-US')} frauds (${pct(r.prevalence, 2)}); revenue = ${r.revenue}; peers ${r.peers.version}`,
    ...overlapWarning(r),
    '',
    '  top     inspected   precision (random)   recall (random)   revenue captured (random)',
  ];
  const fraud = r.positives > 0, revenue = r.fraudRevenue !== 0;
  r.cuts.forEach((c, i) => {
    const q = r.random[i];
    lines.push(`  ${pct(c.fraction, 0).padStart(5)}  ${inspections(c.selected).padStart(10)}   ${share(c.precision, c.selected > 0).padStart(8)} (${share(q.precision, q.selected > 0)})   ${share(c.recall, fraud).padStart(7)} (${share(q.recall, fraud)})   ${share(c.revenueShare, revenue).padStart(7)} (${share(q.revenueShare, revenue)})`);
  });
  if (r.baseline) {
    lines.push('', '  deviation score alone (same peers and settings, no misclassification signal):');
    r.baseline.forEach((c) => lines.push(`  ${pct(c.fraction, 0).padStart(5)}  precision ${share(c.precision, c.selected > 0).padStart(8)}   recall ${share(c.recall, fraud).padStart(7)}   revenue ${share(c.revenueShare, revenue).padStart(7)}`));
  }
  if (r.model) {
    const top = Object.entries(r.model.coefficients).filter(([, v]) => v !== 0).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 8);
    lines.push('', `  model: ${r.model.training.rows.toLocaleString('en-US')} rows, prior ${pct(r.model.training.prior, 2)}, log-loss ${r.model.training.logLoss.toFixed(4)}, prior strength ${r.model.strength}${r.model.training.strengths ? ' (auto)' : ''}${r.model.traderStrength !== undefined ? ` (${r.model.traderStrength} for the trader dimensions)` : ''}; ${r.model.dimensions.filter(dimensionLoaded).length} of ${r.model.dimensions.length} dimensions kept; largest weights ${top.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  }
  lines.push('', `${r.seconds.toFixed(2)} s`);
  return lines.join('\n');
}

export async function evaluateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      train: { type: 'string', multiple: true },
      test: { type: 'string' },
      file: { type: 'string' },
      split: { type: 'string' },
      label: { type: 'string' },
      positive: { type: 'string', multiple: true },
      revenue: { type: 'string' },
      columns: { type: 'string' },
      profiles: { type: 'string' },
      by: { type: 'string', multiple: true },
      'min-group-size': { type: 'string' },
      top: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      learn: { type: 'boolean' },
      ...LEARN_OPTIONS,
    },
  });
  if (values.help) { process.stdout.write(EVALUATE_HELP); return 0; }
  if (!values.label) throw errors.SEL_ERR_OPTION_INVALID('evaluate needs --label <column>', { field: 'label', expected: 'the fraud label column', got: values.label });
  const fractions = values.top?.split(',').map((t) => numberOption(t, 'top', 0.001, 100) / 100);
  const settings: Record<string, unknown> = {};
  if (values['min-group-size'] !== undefined) settings.minGroupSize = intOption(values['min-group-size'], 'min-group-size', 1);
  let phase = '';
  let bar: Progress | undefined;
  const report = await evaluate({
    train: values.train,
    test: values.test,
    file: values.file,
    split: values.split !== undefined ? numberOption(values.split, 'split', 0, 1) : undefined,
    label: values.label,
    positives: values.positive,
    revenue: values.revenue,
    columns: values.columns,
    profiles: values.profiles ? await loadProfiles(values.profiles) : undefined,
    levels: values.by,
    settings,
    fractions,
    threads: values.threads !== undefined ? intOption(values.threads, 'threads', 0, 1024) : undefined,
    learn: values.learn ? learnOptions(values) : undefined,
    onProgress: (p, bytes, total, rows) => {
      if (p !== phase) { bar?.done(); phase = p; bar = new Progress(p, total); }
      bar!.update(bytes, rows, bytes >= total);
    },
  });
  bar?.done();
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatEvaluation(report)}\n`);
  return 0;
}
