/**
 * `selectivity train`: fit the compliance model (historical non-compliance
 * tables and the weights that combine every signal, src/learn/train.ts) on
 * labelled files, and write it with the training peer statistics, for
 * `selectivity score --model --peers` and `selectivity serve --model`.
 */
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { labelledReader, trainFromFiles } from '../evaluate/evaluate.js';
import { DEFAULT_DIMENSIONS } from '../learn/history.js';
import { candidateProfiles, keptNoWeight, noWeightWarning, type TrainOptions } from '../learn/train.js';
import { savePeerSnapshot } from '../peers/peer-store.js';
import { writeFileDurable } from '../store/durable.js';
import { intOption, numberOption } from './options.js';
import { join, resolve } from 'node:path';
import { openStore, STORE_FILE } from '../store/sqlite.js';
import { modelFromStore, STORE_SOURCE } from '../learn/from-store.js';
import { loadPeerTables } from '../peers/peer-store.js';
import { Progress } from './progress.js';

export const LEARN_HELP = `  --dimensions <list>       historical dimensions, comma-separated, pairs with ×
                            (default ${DEFAULT_DIMENSIONS.join(',')})
  --strength <m>|auto       prior strength of the smoothed rates, declarations (default 10);
                            auto: the strength (0.1 to 100) whose model fits the training
                            labels best, out of fold
  --trader-strength <m>     least prior strength of the trader dimensions (importer,
                            declarant, seller and their pairs; default 10): they take
                            the larger of it and --strength, so that a trader is not
                            judged on a few declarations; 0: they take --strength
  --half-life <days>        recency weighting of history (default 365; 0: none)
  --red-at <p>, --yellow-at <p>  modelled probability of non-compliance where the
                            channel turns red / yellow (default 0.5 / 0.25)
  --min-z <z>               least z (weight / standard error) a weight must reach to
                            stay in the model (default 1.96); the least significant is
                            dropped and the model refitted until all reach it; 0: keep
                            every weight that is not negative
`;

export const LEARN_OPTIONS = {
  dimensions: { type: 'string' }, strength: { type: 'string' }, 'trader-strength': { type: 'string' }, 'half-life': { type: 'string' }, 'red-at': { type: 'string' }, 'yellow-at': { type: 'string' }, 'min-z': { type: 'string' },
} as const;

/** A prior strength option: a number of declarations, or auto (TrainOptions.strength); `name` is the option refused on. */
export function strengthOption(raw: string, name: string): number | 'auto' {
  return raw.trim() === 'auto' ? 'auto' : numberOption(raw, name, 0.001, 1e9);
}

/** --min-z and serve's --retrain-min-z (named by `name`): the least z of a kept weight, 0 or more. */
export function minZOption(raw: string, name: string): number {
  return numberOption(raw, name, 0, 1e6);
}

export function learnOptions(v: { dimensions?: string; strength?: string; 'trader-strength'?: string; 'half-life'?: string; 'red-at'?: string; 'yellow-at'?: string; 'min-z'?: string }): TrainOptions {
  const o: TrainOptions = {};
  if (v.dimensions !== undefined) o.dimensions = v.dimensions.split(',').map((d) => d.trim()).filter((d) => d !== '');
  if (v.strength !== undefined) o.strength = strengthOption(v.strength, 'strength');
  if (v['trader-strength'] !== undefined) o.traderStrength = numberOption(v['trader-strength'], 'trader-strength', 0, 1e9);
  if (v['half-life'] !== undefined) o.halfLifeDays = numberOption(v['half-life'], 'half-life', 0, 1e6);
  if (v['red-at'] !== undefined) o.redAt = numberOption(v['red-at'], 'red-at', 0.001, 0.999);
  if (v['yellow-at'] !== undefined) o.yellowAt = numberOption(v['yellow-at'], 'yellow-at', 0.001, 0.999);
  if (v['min-z'] !== undefined) o.minZ = minZOption(v['min-z'], 'min-z');
  return o;
}

export const TRAIN_HELP = `Usage: selectivity train --train <file> [--train <file> …] --label <column> --out <model.json> [options]
       selectivity train --from-store [--data-dir <dir>] [--out <model.json>] [options]

Fits the compliance model on labelled history: per risk dimension (HS code
levels, origin, importer, HS × origin, …) the smoothed non-compliance rate of
each value, and a logistic regression that weighs peer deviation, the
misclassification signal and those rates into one score. Writes the model
(settings and tables) and the training peer statistics.

--from-store learns from the service's own feedback loop instead: the logged
decisions of <data-dir> (default ./data) whose declarations were inspected,
labelled by their examination results, against the service's peer
statistics; the model goes to <data-dir>/model.json, which the service loads
on start and on POST /v1/ruleset/reload (POST /v1/model/retrain does all of
this in a running service).

Options:
  --label <column>          non-compliance label column (passed through by the mapping)
  --positive <value>        label value meaning non-compliant, repeatable
  --columns <preset|file>   column mapping: "kcs", "default" (default) or a JSON file
  --by <level>              peer level, repeatable
  --out <model.json>        the model
  --peers-out <file>        the training peer statistics (default: <model>.peers.msgpack)
  --candidates <file.json>  also write candidate risk profiles (the strongest
                            combinations, with support, hit rate and lift): a
                            profile set an analyst reviews and imports; nothing
                            is activated by training
${LEARN_HELP}  --threads <n>             worker threads (default: all cores)
  --json                    print the model summary as JSON

Then: selectivity score <file> --peers <peers> --model <model.json>
`;

export async function trainCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      train: { type: 'string', multiple: true }, label: { type: 'string' }, positive: { type: 'string', multiple: true },
      columns: { type: 'string' }, by: { type: 'string', multiple: true }, out: { type: 'string' }, 'peers-out': { type: 'string' }, candidates: { type: 'string' },
      threads: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...LEARN_OPTIONS,
      'from-store': { type: 'boolean' }, 'data-dir': { type: 'string' },
    },
  });
  if (values.help) { process.stdout.write(TRAIN_HELP); return 0; }
  if (values['from-store']) return trainFromStore(values);
  if (!values.train?.length) throw errors.SEL_ERR_OPTION_INVALID('train needs --train <file>', { field: 'train', expected: 'one or more labelled files', got: values.train });
  if (!values.label) throw errors.SEL_ERR_OPTION_INVALID('train needs --label <column>', { field: 'label', expected: 'the non-compliance label column', got: values.label });
  if (!values.out) throw errors.SEL_ERR_OPTION_INVALID('train needs --out <model.json>', { field: 'out', expected: 'a path for the model', got: values.out });
  let phase = '';
  let bar: Progress | undefined;
  const { snapshot, model, summary } = await trainFromFiles(values.train, {
    read: labelledReader(values.columns, values.label),
    label: values.label, positives: values.positive, levels: values.by,
    learn: learnOptions(values),
    threads: values.threads !== undefined ? intOption(values.threads, 'threads', 0, 1024) : undefined,
    onProgress: (p, bytes, total, rows) => {
      if (p !== phase) { bar?.done(); phase = p; bar = new Progress(p, total); }
      bar!.update(bytes, rows, bytes >= total);
    },
  });
  bar?.done();
  const peersOut = values['peers-out'] ?? `${values.out.replace(/\.json$/, '')}.peers.msgpack`;
  // the snapshot first, the model last: the model names the snapshot it was trained against, so a run
  // stopped between the two writes leaves the old model beside a new snapshot it does not name, never a
  // new model beside the old snapshot (score --model warns of a model and --peers that do not match)
  savePeerSnapshot(peersOut, snapshot);
  writeFileDurable(values.out, `${JSON.stringify({ ...model!, createdAt: new Date().toISOString(), label: values.label, train: summary, peers: snapshot.info.version })}\n`);
  const m = model!;
  if (keptNoWeight(m)) process.stderr.write(noWeightWarning(m));
  const candidates = values.candidates ? candidateProfiles(m) : [];
  if (values.candidates) writeFileDurable(values.candidates, `${JSON.stringify({ profiles: candidates.map((c) => c.profile), evidence: candidates.map((c) => ({ id: c.profile.id, ...c.evidence })) }, null, 2)}\n`);
  const report = { model: values.out, peers: peersOut, train: summary, intercept: m.intercept, coefficients: m.coefficients, training: m.training, settings: m.settings, dimensions: m.history.dimensions.map((d) => ({ name: d.name, weight: d.weight, values: d.keys.length })), candidates: candidates.map((c) => ({ id: c.profile.id, ...c.evidence })) };
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const lines = [
      `trained on ${summary.rows.toLocaleString('en-US')} declarations (${summary.firstDate} – ${summary.lastDate}); non-compliance ${(100 * m.training.prior).toFixed(2)} %; log-loss ${m.training.logLoss.toFixed(4)}; prior strength ${m.history.strength}${m.training.strengths ? ` (auto, of ${m.training.strengths.map((x) => x.strength).join(', ')})` : ''}${m.history.traderStrength !== undefined ? `, ${m.history.traderStrength} for the trader dimensions` : ''}`,
      `thresholds: yellow ${m.settings.thresholds.yellow.toFixed(3)}, red ${m.settings.thresholds.red.toFixed(3)} (score scale; intercept ${m.intercept.toFixed(3)})`,
      `weights (${Object.values(m.coefficients).filter((v) => v !== 0).length} of ${Object.keys(m.coefficients).length} kept; a weight that fits negative or with z below ${m.training.minZ} is dropped, 0):`,
      ...Object.entries(m.coefficients).map(([k, v]) => `  ${k.padEnd(28)} ${v.toFixed(4)}${v !== 0 && m.training.z?.[k] !== undefined ? `  z ${m.training.z[k].toFixed(1)}` : ''}`),
      ...(values.candidates ? [`candidate profiles (${candidates.length}, strongest first; review, then "selectivity profiles import"):`, ...candidates.slice(0, 10).map((c) => `  ${c.profile.id.padEnd(40)} ${c.evidence.recencyWeighted ? `${c.evidence.nonCompliant.toFixed(1)}/${c.evidence.support.toFixed(1)} recency-weighted` : `${c.evidence.nonCompliant.toFixed(0)}/${c.evidence.support.toFixed(0)}`} non-compliant (${(100 * c.evidence.hitRate).toFixed(1)} %, lift ${c.evidence.lift.toFixed(1)}${c.evidence.revenueAtRisk === undefined ? '' : `, revenue at risk ${Math.round(c.evidence.revenueAtRisk)} a declaration`})`)] : []),
      `wrote ${values.out} and ${peersOut}${values.candidates ? ` and ${values.candidates}` : ''}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return 0;
}

async function trainFromStore(values: { 'data-dir'?: string; out?: string; json?: boolean; dimensions?: string; strength?: string; 'trader-strength'?: string; 'half-life'?: string; 'red-at'?: string; 'yellow-at'?: string; 'min-z'?: string }): Promise<number> {
  const dataDir = resolve(values['data-dir'] ?? 'data');
  const peers = loadPeerTables(join(dataDir, 'peers.json'));
  const db = openStore(join(dataDir, STORE_FILE));
  let doc;
  try { doc = await modelFromStore(db, peers, learnOptions(values), `${STORE_SOURCE} (${dataDir})`); } finally { db.close(); }
  const out = values.out ?? join(dataDir, 'model.json');
  writeFileDurable(out, `${JSON.stringify(doc)}\n`);
  if (keptNoWeight(doc)) process.stderr.write(noWeightWarning(doc));
  const rows = doc.training.rows;
  const report = { model: out, rows, nonCompliant: doc.nonCompliant, training: doc.training, coefficients: doc.coefficients };
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `trained on ${rows} inspected declarations with feedback (${doc.nonCompliant} non-compliant); log-loss ${doc.training.logLoss.toFixed(4)}\nwrote ${out} (the service uses it after a restart or POST /v1/ruleset/reload)\n`);
  return 0;
}
