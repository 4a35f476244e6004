/**
 * `selectivity generate`: writes seeded synthetic declarations with planted,
 * labelled frauds (src/generate/synthetic.ts) to a CSV or NDJSON file.
 */
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { formatIsoDate, LAST_DAY, parseIsoDate } from '../model/schema.js';
import { HS_CATALOGUE } from '../generate/hs-catalogue.js';
import { DEFAULT_FRAUD_RATES, SYNTHETIC_PARAMETERS, writeSynthetic, type SyntheticOptions } from '../generate/synthetic.js';

export const GENERATE_HELP = `Usage: selectivity generate --rows N --out FILE [options]

Writes synthetic customs declarations with planted, labelled frauds (columns
fraud and fraud_type after the schema fields). The same options always give a
byte-identical file.

Options:
  --rows N                   number of declarations (required, a positive integer)
  --out FILE, -o FILE        output file (required); its directory must exist
  --format csv|ndjson        output format (default: ndjson for .ndjson/.jsonl, else csv)
  --seed S                   seed of the pseudo-random generator (default ${SYNTHETIC_PARAMETERS.defaultSeed})
  --hs-codes K               distinct HS6 codes drawn from the bundled catalogue
                             (default ${SYNTHETIC_PARAMETERS.defaultHsCodes}, at most ${HS_CATALOGUE.length})
  --importers N              number of importers (default max(${SYNTHETIC_PARAMETERS.minImporters}, rows / ${SYNTHETIC_PARAMETERS.rowsPerImporter}))
  --start-date YYYY-MM-DD    first acceptance date (default ${SYNTHETIC_PARAMETERS.defaultStartDate})
  --days N                   days the dates spread over (default ${SYNTHETIC_PARAMETERS.defaultDays})
  --undervaluation-rate R    share of rows undervalued (default ${DEFAULT_FRAUD_RATES.undervaluation})
  --risky-pair-rate R        share of rows that are frauds in risky (HS4, origin) pairs (default ${DEFAULT_FRAUD_RATES.riskyPair})
  --trader-rate R            share of rows that are frauds by suspicious importers (default ${DEFAULT_FRAUD_RATES.trader})
  --help, -h                 show this help

Example:
  selectivity generate --rows 1000000 --seed 7 --out declarations.csv
`;

/** Where the command writes; defaults to the process streams (tests pass their own). */
export interface GenerateIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
}

const OPTIONS = {
  rows: { type: 'string' },
  out: { type: 'string', short: 'o' },
  format: { type: 'string' },
  seed: { type: 'string' },
  'hs-codes': { type: 'string' },
  importers: { type: 'string' },
  'start-date': { type: 'string' },
  days: { type: 'string' },
  'undervaluation-rate': { type: 'string' },
  'risky-pair-rate': { type: 'string' },
  'trader-rate': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function bad(field: string, expected: string, got: unknown): never {
  const shown = got === undefined ? 'nothing' : JSON.stringify(got);
  throw errors.SEL_ERR_OPTION_INVALID(`generate: --${field} expects ${expected}, got ${shown}`, { field, expected, got });
}

function integer(field: string, raw: string | undefined, min: number, max: number, expected: string): number | undefined {
  if (raw === undefined) return undefined;
  const s = raw.trim();
  const n = /^-?\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) bad(field, expected, raw);
  return n;
}

function rate(field: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const s = raw.trim();
  const n = /^(\d+(\.\d*)?|\.\d+)$/.test(s) ? Number(s) : NaN;
  const max = SYNTHETIC_PARAMETERS.maxFraudRate;
  if (!(n >= 0 && n <= max)) bad(field, `a number in [0, ${max}]`, raw);
  return n;
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  } catch (e) {
    const err = e as Error & { code?: string };
    if (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) {
      const name = /'(-[^' ]+)/.exec(err.message)?.[1] ?? /"([^"]+)"/.exec(err.message)?.[1];
      const field = name ? name.replace(/^-+/, '') : 'arguments';
      throw errors.SEL_ERR_OPTION_INVALID(`generate: ${err.message.split('. ')[0]} (see selectivity generate --help)`, {
        field,
        expected: 'an option listed by selectivity generate --help, with its value',
        got: name ?? argv.join(' '),
      });
    }
    throw e;
  }
}

/**
 * Runs `selectivity generate` with the arguments after `generate`. Bad options
 * throw SEL_ERR_OPTION_INVALID (details.field names the option); returns 0.
 */
export async function generateCommand(argv: string[], io: GenerateIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { values } = parse(argv);
  if (values.help) {
    io.stdout.write(GENERATE_HELP);
    return 0;
  }

  const rows = integer('rows', values.rows, 1, 1e12, 'a positive integer');
  if (rows === undefined) bad('rows', 'a positive integer', undefined);
  const seed = integer('seed', values.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 'an integer');
  const hsCodes = integer('hs-codes', values['hs-codes'], 1, HS_CATALOGUE.length, `an integer in [1, ${HS_CATALOGUE.length}]`);
  const importers = integer('importers', values.importers, 1, 1e9, 'a positive integer');
  const days = integer('days', values.days, 1, 36_500, 'an integer in [1, 36500]');
  const startDate = values['start-date']?.trim();
  if (startDate !== undefined && Number.isNaN(parseIsoDate(startDate))) bad('start-date', 'a date YYYY-MM-DD', values['start-date']);
  // the last date must be one a declaration can carry (up to 9999-12-31): past it the file held +010000-01-01, refused by every reader
  const first = parseIsoDate(startDate ?? SYNTHETIC_PARAMETERS.defaultStartDate), last = first + (days ?? SYNTHETIC_PARAMETERS.defaultDays) - 1;
  if (last > LAST_DAY) bad(values.days !== undefined ? 'days' : 'start-date', `a span ending by 9999-12-31 (from ${formatIsoDate(first)}, at most ${LAST_DAY - first + 1} days)`, values.days !== undefined ? values.days : values['start-date']);
  const fraudRate = {
    undervaluation: rate('undervaluation-rate', values['undervaluation-rate']),
    riskyPair: rate('risky-pair-rate', values['risky-pair-rate']),
    trader: rate('trader-rate', values['trader-rate']),
  };

  const out = values.out?.trim();
  if (!out) bad('out', 'an output file path', values.out);
  const path = resolve(out);
  const dir = statSync(dirname(path), { throwIfNoEntry: false });
  if (!dir?.isDirectory()) bad('out', 'a file in an existing directory', out);
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) bad('out', 'a file path, not a directory', out);

  let format: 'csv' | 'ndjson';
  if (values.format === undefined) format = /\.(ndjson|jsonl)$/i.test(out) ? 'ndjson' : 'csv';
  else if (values.format === 'csv' || values.format === 'ndjson') format = values.format;
  else bad('format', "'csv' or 'ndjson'", values.format);

  const options: SyntheticOptions = { rows, fraudRate };
  if (seed !== undefined) options.seed = seed;
  if (hsCodes !== undefined) options.hsCodes = hsCodes;
  if (importers !== undefined) options.importers = importers;
  if (startDate !== undefined) options.startDate = startDate;
  if (days !== undefined) options.days = days;

  const tty = io.stderr.isTTY === true;
  const started = performance.now();
  let lastProgress = 0;
  const result = await writeSynthetic(path, {
    ...options,
    format,
    onProgress: tty
      ? (n) => {
          const now = performance.now();
          if (n < rows && now - lastProgress < 200) return;
          lastProgress = now;
          io.stderr.write(`\rgenerate: ${n.toLocaleString('en-US')} / ${rows.toLocaleString('en-US')} rows (${((100 * n) / rows).toFixed(1)} %)`);
        }
      : undefined,
  }).catch((e: NodeJS.ErrnoException) => {
    // the file could not be opened or written (no permission, a full or read-only disk): the option names it
    if (typeof e?.code === 'string' && typeof e.syscall === 'string') throw errors.SEL_ERR_OPTION_INVALID(`cannot write --out ${out}: ${e.message}`, { field: 'out', expected: 'a writable file path (its directory must exist)', got: out });
    throw e;
  });
  if (tty) io.stderr.write('\r\x1b[K');
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const types = Object.entries(result.byType)
    .map(([type, n]) => `${type} ${n}`)
    .join(', ');
  io.stdout.write(`generated ${result.rows} declarations, ${result.frauds} frauds (${types}) to ${out} (${format}) in ${seconds} s\n`);
  return 0;
}
