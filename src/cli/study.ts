/**
 * `selectivity study <file> --peers <snapshot>`: ranks declarations by
 * deviation from their peers and writes the report as JSON, CSV and/or a
 * self-contained HTML page.
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { loadPeers } from '../peers/peer-store.js';
import { samePath, writeFileDurable } from '../store/durable.js';
import { renderStudyHtml, studyGroupsCsv, studyTopCsv } from '../study/render.js';
import type { StudyReport } from '../study/report.js';
import { RANK_BY, studyFile, type Direction, type RankBy } from '../study/study.js';
import { buildPeerSnapshotFromFile } from '../score-file.js';
import { intOption, numberOption } from './options.js';
import { Progress } from './progress.js';

export const STUDY_HELP = `Usage: selectivity study <file.csv|file.ndjson> --peers <snapshot> [options]

Ranks the file's declarations by how far they deviate from their peer groups
(robust z of unit value, net mass, value per item) and reports the top N with
the group used, the values against the group's median and spread, and
per-group summaries (size, spread, share of outliers).

Options:
  --peers <file>          peer snapshot (from "selectivity peers build"); without it,
                          peers are built from the studied file itself
  --out <file>            report file, repeatable: .json, .csv (top N; groups go to
                          <name>.groups.csv) or .html (self-contained, with plots)
  --top <n>               declarations in the report (default 50)
  --rank-by <m>           ${RANK_BY.join(' | ')} (default maxAbsZ)
  --direction <d>         under | over | both (default both)
  --z-threshold <z>       |z| beyond which a value is an outlier (default 2)
  --min-group-size <n>    smallest peer group used (default: the snapshot's)
  --group <level:key>     also plot this group, e.g. "hs6,origin:845210|CN"
  --columns <preset|file> column mapping: "kcs", "default" or a mapping JSON file
  --json                  print the whole report as JSON on stdout
`;

function formatText(r: StudyReport, limit = 10): string {
  const lines = [
    `${r.source}: ${r.rows.toLocaleString('en-US')} declarations read, ${r.scored.toLocaleString('en-US')} studied, ${r.invalid} invalid, ${r.outliers.toLocaleString('en-US')} with |z| > ${r.settings.zThreshold} (${r.seconds.toFixed(2)} s)`,
    `peers ${r.peers.version} (${r.peers.levels.join(' → ')}); ranked by ${r.settings.rankBy} (${r.settings.direction})`,
    'rank  id                    hs          origin  deviation  strongest feature: value vs peer median (z @ level)',
  ];
  for (const d of r.top.slice(0, limit)) {
    const strongest = d.features.reduce((a, b) => (Math.abs(b.z ?? 0) > Math.abs(a.z ?? 0) ? b : a));
    const f = strongest;
    const text = f.value === null ? '—' : `${f.feature} ${f.value.toPrecision(4)} vs ${f.median === null ? '—' : f.median.toPrecision(4)} (${f.z === null ? '—' : f.z.toFixed(2)} @ ${f.peerLevel ?? 'none'})`;
    lines.push(`${String(d.rank).padStart(4)}  ${d.id.padEnd(20).slice(0, 20)}  ${d.hs.padEnd(10)}  ${d.origin.padEnd(6)}  ${d.deviation.toFixed(2).padStart(9)}  ${text}`);
  }
  if (r.groups.length > 0) {
    lines.push('most outlying groups:');
    for (const g of r.groups.slice(0, 5)) lines.push(`  ${g.label}: ${g.outliers}/${g.studied} outliers (${(100 * g.outlierShare).toFixed(1)} %), ${g.size} peers`);
  }
  return lines.join('\n');
}

/** Where a CSV report (`--out x.csv`) writes its group summaries: x.groups.csv. */
const groupsCsvPath = (out: string) => out.replace(/\.csv$/i, '.groups.csv');

export async function studyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      peers: { type: 'string' },
      out: { type: 'string', multiple: true },
      top: { type: 'string' },
      'rank-by': { type: 'string' },
      direction: { type: 'string' },
      'z-threshold': { type: 'string' },
      'min-group-size': { type: 'string' },
      group: { type: 'string' },
      columns: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(STUDY_HELP); return 0; }
  if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID('study needs exactly one input file', { field: 'file', expected: 'one path', got: positionals });
  const outs = values.out ?? [];
  for (const o of outs) {
    if (!/\.(json|csv|html?)$/i.test(o)) throw errors.SEL_ERR_OPTION_INVALID(`cannot tell the report format of ${o}`, { field: 'out', expected: 'a path ending .json, .csv or .html', got: o });
  }
  let group: { level: string; key: string } | undefined;
  if (values.group !== undefined) {
    const at = values.group.indexOf(':');
    if (at <= 0) throw errors.SEL_ERR_OPTION_INVALID('--group must be level:key', { field: 'group', expected: 'e.g. "hs6,origin:845210|CN"', got: values.group });
    group = { level: values.group.slice(0, at), key: values.group.slice(at + 1) };
  }
  const file = positionals[0];
  // a report written over the declarations or the snapshot it was made from would destroy them
  // (a CSV report writes <name>.groups.csv beside itself)
  for (const o of outs) {
    for (const written of /\.csv$/i.test(o) ? [o, groupsCsvPath(o)] : [o]) {
      const what = written === o ? `--out ${o}` : `--out ${o} writes ${written}, which`;
      if (samePath(written, file)) throw errors.SEL_ERR_OPTION_INVALID(`${what} is the input file`, { field: 'out', expected: 'a path other than the input', got: o });
      if (values.peers !== undefined && samePath(written, values.peers)) throw errors.SEL_ERR_OPTION_INVALID(`${what} is the --peers snapshot`, { field: 'out', expected: 'a path other than the --peers snapshot', got: o });
    }
  }
  // every option checked before the file is read (building the peers from a big file takes minutes), each named as typed;
  // --group needs the peers, and studyFile checks it before its pass
  if (values['rank-by'] !== undefined && !(RANK_BY as readonly string[]).includes(values['rank-by'])) throw errors.SEL_ERR_OPTION_INVALID(`unknown --rank-by "${values['rank-by']}"`, { field: 'rank-by', expected: RANK_BY.join(' | '), got: values['rank-by'] });
  if (values.direction !== undefined && !['under', 'over', 'both'].includes(values.direction)) throw errors.SEL_ERR_OPTION_INVALID(`unknown --direction "${values.direction}"`, { field: 'direction', expected: 'under | over | both', got: values.direction });
  const top = values.top !== undefined ? intOption(values.top, 'top', 1, 100_000) : undefined;
  const settings: Record<string, unknown> = {};
  if (values['z-threshold'] !== undefined) settings.zThreshold = numberOption(values['z-threshold'], 'z-threshold', 0, 1000);
  if (values['min-group-size'] !== undefined) settings.minGroupSize = intOption(values['min-group-size'], 'min-group-size', 1);
  const peers = values.peers ? loadPeers(values.peers) : await buildPeerSnapshotFromFile(file, { columns: values.columns });
  let total = 0;
  try { total = statSync(file).size; } catch { /* studyFile names the error */ }
  const bar = new Progress('study', total);
  const report = await studyFile(file, peers, {
    top,
    rankBy: values['rank-by'] as RankBy | undefined,
    direction: values.direction as Direction | undefined,
    settings,
    group,
    columns: values.columns,
    onProgress: (bytes, t, rows) => bar.update(bytes, rows, bytes >= t),
  });
  bar.done();
  for (const o of outs) {
    if (/\.json$/i.test(o)) writeFileDurable(o, `${JSON.stringify(report, null, 2)}\n`);
    else if (/\.csv$/i.test(o)) {
      writeFileDurable(o, studyTopCsv(report));
      writeFileDurable(groupsCsvPath(o), studyGroupsCsv(report));
    } else writeFileDurable(o, renderStudyHtml(report));
  }
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatText(report)}\n`);
  if (outs.length > 0 && !values.json) process.stdout.write(`wrote ${outs.join(', ')}\n`);
  return 0;
}
