import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { parseInstant } from '../model/schema.js';
import { loadProfiles } from '../profiles/load.js';
import { readJsonFile } from '../store/json-file.js';
import { validateWatchLists } from '../text/watchlist.js';
import { modelRuleset } from '../learn/train.js';
import { loadPeerTables } from '../peers/peer-store.js';
import { scoreFile, type ScoreSummary } from '../score-file.js';
import { DEFAULT_LEVELS } from '../peers/peer-groups.js';
import { CHANNELS } from '../model/channels.js';
import { Progress } from './progress.js';
import { intOption, numberOption } from './options.js';

export const SCORE_HELP = `Usage: selectivity score <file.csv|file.ndjson> [options]

Scores every declaration of a file and writes one decision per declaration
(id, channel, score, reasons, plus any label columns passed through).

Options:
  --profiles <file.json>    risk profile set (default: peer deviation only)
  --model <model.json>      a compliance model from "selectivity train" (weights,
                            thresholds, historical tables); use it with --peers
  --watchlists <file.json>  keyword watch lists: their terms found in a goods
                            description become KEYWORD reasons
  --misclassification <w>   score weight of a description that fits its declared
                            HS chapter poorly (default 1.5; 0 turns it off)
  --peers <snapshot>        peer statistics from "selectivity peers build" (default:
                            built from the scored file itself)
  --columns <preset|file>   column mapping: "kcs", "default" or a mapping JSON file
  --out <file>              decisions as .ndjson/.jsonl or .csv (default: NDJSON on stdout)
  --errors <file.ndjson>    write invalid records there
  --by <level>              peer level, repeatable, most specific first
                            (default: ${DEFAULT_LEVELS.join(' → ')})
  --min-group-size <n>      smallest peer group used (default 5)
  --random-rate <r>         share of green declarations sent to the control group (default 0.01)
  --at <instant>            score with the profiles in force at this instant (their
                            activeFrom/activeUntil window), as the service would then;
                            YYYY-MM-DD or an ISO 8601 instant (default: now)
  --threads <n>             worker threads (default: all cores)
  --batch-size <n>          declarations per batch (default 8192)
  --json                    print the summary as JSON
`;

export function formatSummary(s: ScoreSummary): string {
  const pct = (n: number) => (s.scored > 0 ? ((100 * n) / s.scored).toFixed(2) : '0.00');
  const lines = [
    `${s.file}: ${s.rows.toLocaleString('en-US')} declarations read, ${s.scored.toLocaleString('en-US')} scored, ${s.invalid.toLocaleString('en-US')} invalid`,
    `ruleset ${s.rulesetVersion}: ${s.profiles} profiles${s.profilesOutsideWindow > 0 ? ` (${s.profilesOutsideWindow} more not in force at ${s.at}: left out)` : ''}, peer groups ${Object.entries(s.peerGroups).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    ...CHANNELS.map((c) => `  ${c.padEnd(7)} ${String(s.channels[c]).padStart(10)}  ${pct(s.channels[c]).padStart(6)} %`),
    `  control group (random selection) ${s.controlGroup}`,
    `throughput ${Math.round(s.declarationsPerSecond).toLocaleString('en-US')} declarations/s (read+parse+score+write, ${s.seconds.scoring.toFixed(2)} s; kernel ${s.kernelSeconds.toFixed(3)} s); total ${s.seconds.total.toFixed(2)} s`,
  ];
  for (const e of s.firstErrors.slice(0, 5)) lines.push(`  invalid line ${e.line}${e.id ? ` (${e.id})` : ''}: ${e.code} ${e.message}`);
  return lines.join('\n');
}

export async function scoreCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      profiles: { type: 'string' },
      at: { type: 'string' },
      watchlists: { type: 'string' },
      model: { type: 'string' },
      misclassification: { type: 'string' },
      peers: { type: 'string' },
      columns: { type: 'string' },
      out: { type: 'string' },
      errors: { type: 'string' },
      by: { type: 'string', multiple: true },
      'min-group-size': { type: 'string' },
      'random-rate': { type: 'string' },
      threads: { type: 'string' },
      'batch-size': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(SCORE_HELP); return 0; }
  if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID('score needs exactly one input file', { field: 'file', expected: 'one path', got: positionals });
  const file = positionals[0];
  const profiles = values.profiles ? await loadProfiles(values.profiles) : [];
  const settings: Record<string, unknown> = {};
  if (values['min-group-size'] !== undefined) settings.minGroupSize = intOption(values['min-group-size'], 'min-group-size', 1);
  if (values['random-rate'] !== undefined) settings.randomSelection = { rate: numberOption(values['random-rate'], 'random-rate', 0, 1) };
  if (values.misclassification !== undefined) settings.misclassification = { weight: numberOption(values.misclassification, 'misclassification', 0, 1e6) };
  let history: unknown;
  const peers = values.peers ? loadPeerTables(values.peers) : undefined;
  if (values.model) {
    const raw = readJsonFile(values.model, 'the model', 'model', errors.SEL_ERR_RULESET_INVALID);
    const m = modelRuleset(raw);
    // selectivity train names the snapshot it trained against: the weights were fitted on deviations from it
    const trainedOn = (raw as { peers?: unknown }).peers;
    if (typeof trainedOn === 'string' && peers?.info?.version !== undefined && peers.info.version !== trainedOn) {
      process.stderr.write(`selectivity score: warning: the model ${values.model} was trained against peer snapshot ${trainedOn}, and --peers ${values.peers} holds ${peers.info.version}; its weights were fitted on deviations from the other\n`);
    }
    // the model's settings, under what the command line says: --misclassification 0 turns the signal off even where the model learnt a weight
    Object.assign(settings, m.settings, { ...settings });
    history = m.history;
  }
  const watchLists = values.watchlists ? validateWatchLists(readJsonFile(values.watchlists, 'the watch lists', 'watchlists', errors.SEL_ERR_WATCHLIST_INVALID)) : undefined;
  let phase = '';
  let bar: Progress | undefined;
  let at: number | undefined;
  if (values.at !== undefined) {
    at = parseInstant(values.at);
    if (Number.isNaN(at)) {
      throw errors.SEL_ERR_OPTION_INVALID(`--at ${values.at} is not a date or an instant`, { field: 'at', expected: 'YYYY-MM-DD or an ISO 8601 instant (2026-11-23T08:00:00Z)', got: values.at });
    }
  }
  const summary = await scoreFile(file, {
    columns: values.columns,
    profiles,
    at,
    watchLists,
    history,
    peers,
    levels: values.by,
    settings,
    threads: values.threads !== undefined ? intOption(values.threads, 'threads', 0) : undefined,
    batchSize: values['batch-size'] !== undefined ? intOption(values['batch-size'], 'batch-size', 1) : undefined,
    out: values.out ?? process.stdout,
    errorsOut: values.errors,
    onProgress: (p, bytes, total, rows) => {
      if (p !== phase) { bar?.done(); phase = p; bar = new Progress(p === 'peers' ? 'peer groups' : 'scoring', total); }
      bar!.update(bytes, rows, bytes >= total);
    },
  });
  bar?.done();
  const report = values.json ? JSON.stringify(summary, null, 2) : formatSummary(summary);
  // Decisions on stdout → the summary goes to stderr so that the two never mix.
  (values.out ? process.stdout : process.stderr).write(report + '\n');
  return 0;
}
