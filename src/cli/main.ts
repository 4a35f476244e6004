/**
 * The `selectivity` command: dispatches to subcommands, prints named errors
 * (code, field, expected) instead of stack traces, and sets the exit code.
 */
import { errors, isSelectivityError } from '../errors.js';
import { packageVersion } from '../paths.js';
import { SCHEMA_VERSION } from '../store/sqlite.js';
import { scoreCommand, SCORE_HELP } from './score.js';
import { generateCommand } from './generate.js';
import { serveCommand } from './serve.js';
import { peersCommand } from './peers.js';
import { studyCommand } from './study.js';
import { evaluateCommand } from './evaluate.js';
import { profilesCommand } from './profiles.js';
import { textCommand } from './text.js';
import { intelCommand } from './intel.js';
import { trainCommand } from './train.js';
import { replayCommand } from './replay.js';
import { feedbackCommand } from './feedback.js';
import { historyCommand } from './history.js';
import { backtestCommand } from './backtest.js';
import { backupCommand } from './backup.js';
import { migrateCommand } from './migrate.js';

const HELP = `selectivity — customs selectivity engine

Usage: selectivity <command> [options]

Commands:
  serve             run the scoring service (HTTP; npm start)
  score <file>      score a declaration file (CSV or NDJSON) and write decisions
  generate          write a synthetic declaration file with planted frauds
  profiles          import, export, list, show, activate, retire risk profiles (versioned store)
  peers             build, update (fold) or show peer-statistics snapshots
  study <file>      rank declarations by deviation from their peers (JSON, CSV, HTML report)
  evaluate          train on some files, score another, report precision/recall/revenue at top k %
  train             fit the compliance model (historical rates, weights) on labelled files
  replay            replay labelled history month by month, learning only from inspected declarations
  text              goods-description fit to the HS code (fit), watch-list terms in a text (match), watch lists (lists)
  intel <path>      intelligence texts: keyword co-occurrence network (JSON, GraphML, HTML), watch-list suggestions
  feedback          import examination results (CSV, NDJSON) joined to logged decisions; show one; prune old decisions
  history           import declarations (and results) into the columnar history store; show it
  backtest          replay the history with a candidate profile set beside the active one
  backup            a consistent copy of a data directory, taken while the service runs
  migrate           upgrade a data directory's store to this engine's schema (offline step of an upgrade)

Run "selectivity <command> --help" for a command's options;
"selectivity --version" prints the version and the store schema it writes.
`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  serve: serveCommand,
  score: scoreCommand,
  generate: generateCommand,
  profiles: profilesCommand,
  peers: peersCommand,
  study: studyCommand,
  evaluate: evaluateCommand,
  text: textCommand,
  intel: intelCommand,
  train: trainCommand,
  replay: replayCommand,
  feedback: feedbackCommand,
  history: historyCommand,
  backtest: backtestCommand,
  backup: backupCommand,
  migrate: migrateCommand,
};

/** The exit status of a command whose output's reader went away: 128 + SIGPIPE, what a shell reports for tools stopped that way. */
export const BROKEN_PIPE = 141;

/**
 * For the process's standard output, in a process that runs one command
 * other than serve (bin/selectivity.js): when the reader of the output goes
 * away, the command has nothing left to do and the process exits quietly
 * with BROKEN_PIPE, instead of dying of an unhandled EPIPE 'error' with a
 * stack trace. serve outlives its reader instead (serve.ts).
 */
export function stopOnBrokenPipe(e: NodeJS.ErrnoException): void {
  if (e.code === 'EPIPE') process.exit(BROKEN_PIPE);
  throw e; // any other error: as if there were no listener
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`selectivity ${packageVersion()} (store schema ${SCHEMA_VERSION}, Node ${process.version})\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`selectivity: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (e) {
    // the reader of our output went away (`selectivity score x.csv | head`): stop quietly, as the shell's tools do
    if ((e as NodeJS.ErrnoException).code === 'EPIPE' && (e as NodeJS.ErrnoException).syscall === 'write') return BROKEN_PIPE;
    if (isSelectivityError(e)) {
      process.stderr.write(`selectivity ${name}: ${e.code}: ${e.message}\n`);
      if (Object.keys(e.details).length > 0) process.stderr.write(`  details: ${JSON.stringify(e.details)}\n`);
      return e.statusCode >= 500 ? 1 : 2;
    }
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      const option = /'(-{1,2}[^' ]+)/.exec(e.message)?.[1]?.replace(/^-+/, '') ?? 'argv';
      const err = errors.SEL_ERR_OPTION_INVALID(e.message, { field: option, expected: `an option listed by "selectivity ${name} --help"`, got: option });
      process.stderr.write(`selectivity ${name}: ${err.code}: ${err.message}\n  details: ${JSON.stringify(err.details)}\n`);
      return 2;
    }
    throw e;
  }
}

export { SCORE_HELP };
