/**
 * `selectivity backtest`: the history store replayed with a candidate
 * profile set beside the active one (or another file), side by side.
 */
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileDurable } from '../store/durable.js';
import { errors } from '../errors.js';
import { loadProfiles } from '../profiles/load.js';
import { prepareDataDir, RulesetSource } from '../service/state.js';
import { STORE_FILE } from '../store/sqlite.js';
import { historyDir } from '../history/store.js';
import { parseCapacity, runBacktest } from '../backtest/backtest.js';
import { formatBacktest, renderBacktestHtml } from '../backtest/render.js';
import { intOption, numberOption } from './options.js';
import { Progress } from './progress.js';

export const BACKTEST_HELP = `Usage: selectivity backtest --profiles <candidate set> [--against active|<file>] [options]

Replays the history store (<data-dir>/history, filled by selectivity history
import) through the kernel on every core, once with the candidate profile set
and once with the baseline (the active profiles of <data-dir> by default), on
the same peers, watch lists and model, and reports side by side: the share
of each channel, hit rate and revenue per channel and per profile, the
declarations whose channel changes (with examples), profiles that never
match or match too much, precision and revenue captured at the inspection
rate each set produces and at fixed rates, month by month. With --capacity,
each office-day's inspection capacity is filled from the top of each set's
score ranking (reported apart: scores and channels are not changed).

Options:
  --profiles <file>         the candidate profile set (the format of selectivity profiles export)
  --against active|<file>   the baseline: the active profiles (default) or another set
  --from <YYYY-MM-DD>       first day replayed (default: the first stored)
  --to <YYYY-MM-DD>         last day replayed (default: the last stored)
  --capacity <spec>         inspections per office per day: "20", or "OF01=30,OF02=10,*=20"
  --too-much <percent>      flag profiles matching more than this share (default 20)
  --peers <file>            peer snapshot to score with (default <data-dir>/peers.json)
  --threads <n>             worker threads (default: available parallelism)
  --data-dir <dir>          data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --json                    print the report as JSON
  --html <file>             write the report as a self-contained HTML page (charts)
`;

export async function backtestCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      profiles: { type: 'string' }, against: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, capacity: { type: 'string' },
      'too-much': { type: 'string' }, peers: { type: 'string' }, threads: { type: 'string' }, 'data-dir': { type: 'string' },
      json: { type: 'boolean' }, html: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(BACKTEST_HELP); return 0; }
  if (!values.profiles) throw errors.SEL_ERR_OPTION_INVALID('backtest needs --profiles <candidate set>', { field: 'profiles', expected: 'a profile set file', got: values.profiles });
  const dataDir = resolve(values['data-dir'] ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  // a data directory set up already: its active profiles, peer tables, watch lists and model are the
  // baseline's; nothing is seeded into it (seeded, the baseline would be the bundled example set)
  if (!existsSync(join(dataDir, STORE_FILE))) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`no profile store in ${dataDir}: a back-test compares with the active profiles of a data directory that a service has run on, or that "selectivity profiles import --data-dir" filled`, { field: 'data-dir', expected: `a data directory holding ${STORE_FILE}`, got: dataDir });
  }
  const peersFile = values.peers ? resolve(values.peers) : join(dataDir, 'peers.json');
  if (!existsSync(peersFile)) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`no peer tables: ${peersFile} does not exist (build them with "selectivity peers build", or pass --peers)`, { field: 'peers', expected: 'a peer snapshot', got: peersFile });
  }
  const files = await prepareDataDir(dataDir, { peersPath: values.peers ? resolve(values.peers) : undefined }, { seed: false });
  const source = new RulesetSource(files);
  try {
    const active = await source.load(files.peers);
    const candidate = source.composeWith(await loadProfiles(values.profiles));
    const against = values.against ?? 'active';
    const baseline = against === 'active' ? active : source.composeWith(await loadProfiles(against));
    const bar = new Progress('backtest', 1);
    const report = await runBacktest(historyDir(dataDir), {
      candidate, baseline,
      names: [basename(values.profiles), against === 'active' ? 'active' : basename(against)],
      from: values.from, to: values.to,
      capacity: values.capacity !== undefined ? parseCapacity(values.capacity) : undefined,
      tooMuch: values['too-much'] !== undefined ? numberOption(values['too-much'], 'too-much', 0.001, 100) / 100 : undefined,
      threads: values.threads !== undefined ? intOption(values.threads, 'threads', 0, 1024) : undefined,
      onProgress: (done, total) => { bar.setTotal(total); bar.update(done, done); },
    });
    bar.done();
    if (values.html) {
      writeFileDurable(values.html, renderBacktestHtml(report));
      process.stderr.write(`wrote ${values.html}\n`);
    }
    process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatBacktest(report)}\n`);
    return 0;
  } finally {
    source.close();
  }
}
