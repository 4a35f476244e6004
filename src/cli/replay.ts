/**
 * `selectivity replay`: labelled history replayed month by month with
 * feedback only from the inspected declarations (src/learn/replay.ts).
 */
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { labelledReader } from '../evaluate/evaluate.js';
import { parseLabel } from '../evaluate/metrics.js';
import { replay, type ReplayReport } from '../learn/replay.js';
import type { ColumnarBatch } from '../model/columnar.js';
import { LEARN_HELP, LEARN_OPTIONS, learnOptions } from './train.js';
import { numberOption } from './options.js';

export const REPLAY_HELP = `Usage: selectivity replay --file <file> [--file <file> …] --label <column> [options]

Replays labelled history in date order as an administration lives it: the
first month's results are known (warm-up); each later month is scored with
the model learnt from the results known so far (selectivity train's path),
its top --inspect % is inspected and so is the random control group, only
their results become known, and the model is refitted before the next month.
Reports per month the hit rate of targeted inspections, the control group's
estimate of the non-compliance of the untargeted green traffic it is drawn
from, and the true rates of that traffic and of all untargeted traffic.

Options:
  --label <column>          non-compliance label column
  --positive <value>        label value meaning non-compliant, repeatable
  --columns <preset|file>   column mapping: "kcs", "default" (default) or a JSON file
  --inspect <percent>       share of each month inspected by score (default 5)
  --control-rate <percent>  random control group (default 2)
  --no-control-feedback     do not learn from the control group's results
${LEARN_HELP}  --json                    print the report as JSON
`;

const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)} %`);
const withInterval = (x: number | null, ci: { low: number; high: number } | null) => (x === null || ci === null ? '—' : `${pct(x)} (${(100 * ci.low).toFixed(0)}–${(100 * ci.high).toFixed(0)})`);

export function formatReplay(r: ReplayReport): string {
  const lines = [
    `warm-up ${r.warmup.period}: ${r.warmup.declarations.toLocaleString('en-US')} declarations with known results; inspect ${pct(r.inspectionRate)} by score, control group ${pct(r.controlRate)}${r.learnFromControl ? ' (its results feed the model)' : ' (not learnt from)'}`,
    '',
    '  month     declarations  known results  inspected  hit rate   control  control estimate (95 %)     green untargeted (true)  all untargeted (true)  month rate',
    ...r.periods.map((p) => `  ${p.period}  ${String(p.declarations).padStart(12)}  ${String(p.knownResults).padStart(13)}  ${String(p.inspected).padStart(9)}  ${pct(p.hitRate).padStart(8)}  ${String(p.control).padStart(8)}  ${withInterval(p.controlEstimate, p.controlInterval).padStart(26)}  ${pct(p.greenRate).padStart(23)}  ${pct(p.untargetedRate).padStart(21)}  ${pct(p.prevalence).padStart(10)}`),
    `  all       ${String(r.total.declarations).padStart(12)}  ${''.padStart(13)}  ${String(r.total.inspected).padStart(9)}  ${pct(r.total.hitRate).padStart(8)}  ${String(r.total.control).padStart(8)}  ${withInterval(r.total.controlEstimate, r.total.controlInterval).padStart(26)}  ${pct(r.total.greenRate).padStart(23)}  ${pct(r.total.untargetedRate).padStart(21)}`,
  ];
  return lines.join('\n');
}

export async function replayCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      file: { type: 'string', multiple: true }, label: { type: 'string' }, positive: { type: 'string', multiple: true }, columns: { type: 'string' },
      inspect: { type: 'string' }, 'control-rate': { type: 'string' }, 'no-control-feedback': { type: 'boolean' },
      json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...LEARN_OPTIONS,
    },
  });
  if (values.help) { process.stdout.write(REPLAY_HELP); return 0; }
  if (!values.file?.length) throw errors.SEL_ERR_OPTION_INVALID('replay needs --file <file>', { field: 'file', expected: 'one or more labelled files', got: values.file });
  if (!values.label) throw errors.SEL_ERR_OPTION_INVALID('replay needs --label <column>', { field: 'label', expected: 'the non-compliance label column', got: values.label });
  const read = labelledReader(values.columns, values.label);
  const batches: ColumnarBatch[] = [];
  const labels: Uint8Array[] = [];
  for (const f of values.file) {
    for await (const chunk of read(f)) {
      if (chunk.batch.size === 0) continue;
      const v = chunk.passThrough[values.label];
      if (!v) throw errors.SEL_ERR_OPTION_INVALID(`no column "${values.label}" passed through from ${f}`, { field: 'label', expected: 'a pass-through column', got: values.label });
      batches.push(chunk.batch);
      labels.push(Uint8Array.from({ length: chunk.batch.size }, (_, i) => parseLabel(v[i], values.positive)));
    }
  }
  const report = await replay(batches, labels, {
    inspectionRate: values.inspect !== undefined ? numberOption(values.inspect, 'inspect', 0.01, 100) / 100 : undefined,
    controlRate: values['control-rate'] !== undefined ? numberOption(values['control-rate'], 'control-rate', 0, 100) / 100 : undefined,
    learnFromControl: !values['no-control-feedback'],
    learn: learnOptions(values),
    onPeriod: (p) => process.stderr.write(`  ${p.period}: hit rate ${pct(p.hitRate)}\n`),
  });
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatReplay(report)}\n`);
  return 0;
}
