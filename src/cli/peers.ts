/**
 * `selectivity peers build|update|show`: peer-statistics snapshots from
 * historical declarations (one streaming pass; memory bounded by the number
 * of groups), folded forward with newly cleared declarations, and inspected.
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { formatIsoDate } from '../model/schema.js';
import { DEFAULT_LEVELS, FEATURES, parseLevels, PeerTableBuilder, snapshotTables, type PeerSnapshot } from '../peers/peer-groups.js';
import { encodingOf, fileStamp, loadPeerSnapshot, lockPeerSnapshot, savePeerSnapshot } from '../peers/peer-store.js';
import { binWidth, DEFAULT_SKETCH } from '../peers/sketch.js';
import { foldPeersFromFile } from '../score-file.js';
import { intOption, numberOption } from './options.js';
import { Progress } from './progress.js';

export const PEERS_HELP = `Usage:
  selectivity peers build <history.csv|ndjson>… --out <peers.json|peers.msgpack> [options]
  selectivity peers update <snapshot> <new.csv|ndjson>… [--out <file>] [options]
  selectivity peers show <snapshot> [--level <level>] [--group <key>] [--json]

build   streams the history files once and writes a versioned snapshot of peer
        statistics per group and feature: count, mean, standard deviation,
        median and MAD (exact up to --exact-limit values, then a log-bin
        sketch within --accuracy), min/max and date range.
update  folds newly cleared declarations into a snapshot (same statistics as
        a rebuild over all the rows); writes --out, or replaces the snapshot.
show    prints a snapshot's version, provenance and group counts, or one group.

Options:
  --by <level>            peer level, repeatable, most specific first
                          (default: ${DEFAULT_LEVELS.join(' → ')}); update: must match the snapshot
  --columns <preset|file> column mapping: "kcs", "default" or a mapping JSON file
  --min-group-size <n>    smallest group the engine uses with this snapshot (default 5)
  --exact-limit <n>       values kept exactly per group and feature (default ${DEFAULT_SKETCH.exactLimit})
  --accuracy <α>          relative accuracy of the sketch beyond that (default ${DEFAULT_SKETCH.relativeAccuracy})
  --batch-size <n>        declarations per batch (default 8192)
  --json                  print the summary as JSON
`;

interface BuildSummary {
  out: string;
  version: string;
  parent: string | null;
  rows: number;
  rowsRead: number;
  invalid: number;
  groups: Record<string, number>;
  seconds: number;
  rowsPerSecond: number;
  peakRssMB: number;
  bytes: number;
}

function peakRssMB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

async function fold(builder: PeerTableBuilder, files: string[], columns: string | undefined, batchSize: number | undefined): Promise<{ rowsRead: number; invalid: number }> {
  let rowsRead = 0, invalid = 0;
  for (const file of files) {
    let total = 0;
    try { total = statSync(file).size; } catch {
      throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${file}`, { field: 'file', expected: 'a readable file', got: file });
    }
    const bar = new Progress(`peers ${file}`, total);
    const before = builder.rows;
    let last = 0;
    await foldPeersFromFile(file, {
      builder, columns, batchSize,
      onProgress: (_p, bytes, t, rows) => { last = rows; bar.update(bytes, rows, bytes >= t); },
    }, total);
    bar.done();
    rowsRead += last;
    invalid += last - (builder.rows - before);
  }
  return { rowsRead, invalid };
}

function summarise(out: string, snapshot: PeerSnapshot, t0: number, counts: { rowsRead: number; invalid: number }, rowsThisRun: number): BuildSummary {
  const seconds = (performance.now() - t0) / 1000;
  return {
    out,
    version: snapshot.info.version,
    parent: snapshot.info.parent,
    rows: snapshot.info.rows,
    rowsRead: counts.rowsRead,
    invalid: counts.invalid,
    groups: Object.fromEntries(snapshot.levels.map((l, i) => [l.name, snapshot.groups[i].size])),
    seconds,
    rowsPerSecond: seconds > 0 ? counts.rowsRead / seconds : 0,
    peakRssMB: peakRssMB(),
    bytes: statSync(out).size,
  };
}

function formatBuild(s: BuildSummary, verb: string): string {
  return [
    `${verb} ${s.out} (${(s.bytes / 1e6).toFixed(1)} MB): version ${s.version}${s.parent ? ` (from ${s.parent})` : ''}`,
    `  ${s.rowsRead.toLocaleString('en-US')} declarations read, ${s.invalid.toLocaleString('en-US')} invalid; snapshot holds ${s.rows.toLocaleString('en-US')}`,
    `  groups ${Object.entries(s.groups).map(([k, v]) => `${k}=${v.toLocaleString('en-US')}`).join(' ')}`,
    `  ${s.seconds.toFixed(2)} s, ${Math.round(s.rowsPerSecond).toLocaleString('en-US')} rows/s, peak RSS ${s.peakRssMB} MB`,
  ].join('\n');
}

const COMMON = {
  by: { type: 'string', multiple: true },
  columns: { type: 'string' },
  out: { type: 'string' },
  'min-group-size': { type: 'string' },
  'exact-limit': { type: 'string' },
  accuracy: { type: 'string' },
  'batch-size': { type: 'string' },
  level: { type: 'string' },
  group: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function peersCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(PEERS_HELP); return sub ? 0 : 1; }
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: COMMON });
  if (values.help) { process.stdout.write(PEERS_HELP); return 0; }
  const batchSize = values['batch-size'] !== undefined ? intOption(values['batch-size'], 'batch-size', 1, 1 << 20) : undefined;
  const print = (text: string, obj: unknown) => process.stdout.write(`${values.json ? JSON.stringify(obj, null, 2) : text}\n`);
  const t0 = performance.now();

  if (sub === 'build') {
    if (positionals.length < 1) throw errors.SEL_ERR_OPTION_INVALID('peers build needs at least one history file', { field: 'file', expected: 'one or more paths', got: positionals });
    if (!values.out) throw errors.SEL_ERR_OPTION_INVALID('peers build needs --out', { field: 'out', expected: 'a path ending .json, .msgpack or .mpk', got: values.out });
    encodingOf(values.out); // a bad extension fails before minutes of reading
    const builder = new PeerTableBuilder({
      levels: values.by ?? DEFAULT_LEVELS,
      minGroupSize: values['min-group-size'] !== undefined ? intOption(values['min-group-size'], 'min-group-size', 1) : undefined,
      sketch: {
        exactLimit: values['exact-limit'] !== undefined ? intOption(values['exact-limit'], 'exact-limit', 0, 1_000_000) : undefined,
        relativeAccuracy: values.accuracy !== undefined ? numberOption(values.accuracy, 'accuracy', 1e-6, 0.2) : undefined,
      },
    });
    const lock = lockPeerSnapshot(values.out, 'selectivity peers build');
    try {
      const counts = await fold(builder, positionals, values.columns, batchSize);
      const snapshot = builder.snapshot();
      savePeerSnapshot(values.out, snapshot);
      const s = summarise(values.out, snapshot, t0, counts, counts.rowsRead);
      print(formatBuild(s, 'wrote'), s);
    } finally {
      lock.release();
    }
    return 0;
  }

  if (sub === 'update') {
    if (positionals.length < 2) throw errors.SEL_ERR_OPTION_INVALID('peers update needs a snapshot and at least one file of new declarations', { field: 'file', expected: '<snapshot> <new file>…', got: positionals });
    const [snapshotPath, ...files] = positionals;
    const out = values.out ?? snapshotPath;
    encodingOf(out);
    for (const o of ['exact-limit', 'accuracy', 'min-group-size'] as const) {
      if (values[o] !== undefined) throw errors.SEL_ERR_OPTION_INVALID(`--${o} is fixed by the snapshot and cannot change in an update`, { field: o, expected: 'no value (rebuild to change it)', got: values[o] });
    }
    // one writer of the output at a time, from reading the snapshot to renaming the result over it
    const lock = lockPeerSnapshot(out, 'selectivity peers update');
    try {
      const before = fileStamp(out);
      const snapshot = loadPeerSnapshot(snapshotPath);
      if (values.by) {
        const want = parseLevels(values.by).map((l) => l.name);
        const have = snapshot.levels.map((l) => l.name);
        if (want.join(' ') !== have.join(' ')) throw errors.SEL_ERR_PEERS_MISMATCH(`--by ${want.join(' → ')} differs from the snapshot's levels ${have.join(' → ')}`, { field: 'by', expected: have.join(', '), got: want.join(', ') });
      }
      const builder = PeerTableBuilder.fromSnapshot(snapshot);
      const counts = await fold(builder, files, values.columns, batchSize);
      const next = builder.snapshot();
      // a writer that does not take the lock (a copy, an older engine) replaced the output meanwhile: its rows would be lost
      if (fileStamp(out) !== before) throw errors.SEL_ERR_PEERS_BUSY(`${out} changed while this update ran; nothing was written (run the update again)`, { field: 'snapshot', expected: 'a snapshot no other writer changes during the update', got: out });
      savePeerSnapshot(out, next);
      const s = summarise(out, next, t0, counts, counts.rowsRead);
      print(formatBuild(s, 'updated'), s);
    } finally {
      lock.release();
    }
    return 0;
  }

  if (sub === 'show') {
    if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID('peers show needs exactly one snapshot', { field: 'file', expected: 'one path', got: positionals });
    const snapshot = loadPeerSnapshot(positionals[0]);
    const tables = snapshotTables(snapshot);
    const i = snapshot.info;
    if (values.group !== undefined || values.level !== undefined) {
      const levelName = parseLevels([values.level ?? snapshot.levels[0].name])[0].name;
      const l = snapshot.levels.findIndex((x) => x.name === levelName);
      if (l < 0) throw errors.SEL_ERR_OPTION_INVALID(`the snapshot has no level ${levelName}`, { field: 'level', expected: snapshot.levels.map((x) => x.name).join(', '), got: values.level });
      const key = values.group ?? '';
      const g = tables.groups[l].get(key);
      if (!g) throw errors.SEL_ERR_OPTION_INVALID(`no group "${key}" at level ${levelName}`, { field: 'group', expected: 'a key such as "845210|CN" (hs|field)', got: key });
      const obj = {
        level: levelName, key, count: g.count,
        firstDate: Number.isFinite(g.firstDate) ? formatIsoDate(g.firstDate) : null, lastDate: Number.isFinite(g.lastDate) ? formatIsoDate(g.lastDate) : null,
        features: Object.fromEntries(FEATURES.map((f, k) => [f, g.features[k]])),
      };
      const lines = [`${levelName} ${key}: ${g.count} declarations, ${obj.firstDate} – ${obj.lastDate}`];
      FEATURES.forEach((f, k) => {
        const s = g.features[k];
        lines.push(`  ${f.padEnd(13)} n=${s.n} median=${s.median.toFixed(4)} (e^=${Math.exp(s.median).toPrecision(5)}) mad=${s.mad.toFixed(4)} mean=${s.mean.toFixed(4)} std=${s.std.toFixed(4)} min=${s.min.toFixed(4)} max=${s.max.toFixed(4)}${s.exact ? ' exact' : ' sketch'}`);
      });
      print(lines.join('\n'), obj);
      return 0;
    }
    const obj = { ...i, levels: snapshot.levels.map((l) => l.name), groups: Object.fromEntries(snapshot.levels.map((l, k) => [l.name, snapshot.groups[k].size])), binWidth: binWidth(i.sketch.relativeAccuracy) };
    const text = [
      `${positionals[0]}: ${i.version}${i.parent ? ` (folded from ${i.parent})` : ''}, created ${i.createdAt}`,
      `  ${i.rows.toLocaleString('en-US')} declarations from ${i.sources.length} source(s): ${i.sources.map((s) => `${s.file} (${s.rows})`).join(', ')}`,
      `  levels ${obj.levels.join(' → ')}; minGroupSize ${i.minGroupSize}; sketch exactLimit ${i.sketch.exactLimit}, accuracy ${i.sketch.relativeAccuracy}`,
      `  groups ${Object.entries(obj.groups).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    ].join('\n');
    print(text, obj);
    return 0;
  }
  throw errors.SEL_ERR_OPTION_INVALID(`unknown peers subcommand "${sub}"`, { field: 'subcommand', expected: 'build, update or show', got: sub });
}
