/**
 * Scores a declaration file end to end: (peer tables built from the file
 * itself when none are given) → streaming reader → worker pool → decisions
 * written in input order, with label columns carried through. Used by
 * `selectivity score` and available to library users.
 */
import { statSync } from 'node:fs';
import { AtomicOutput, drained } from './store/atomic-output.js';
import { samePath } from './store/durable.js';
import { errors } from './errors.js';
import { createEngine } from './engine.js';
import { channelCounts, decisionAt, emptyCounts, type Decision, type Reason } from './decisions.js';
import type { Channel } from './model/channels.js';
import { readDeclarations, type RecordError, type ReadOptions } from './model/readers.js';
import { csvCellSafe } from './model/csv.js';
import { DEFAULT_LEVELS, PeerTableBuilder, type PeerSnapshot, type PeerTables } from './peers/peer-groups.js';
import { inWindow, type Profile } from './profiles/profile.js';
import type { WatchList } from './text/watchlist.js';
import { createRuleset, type RulesetSettingsInput } from './ruleset/ruleset.js';
import type { ScoreResult } from './kernel/layout.js';

export interface ScoreFileOptions {
  columns?: ReadOptions['columns'];
  profiles?: Profile[];
  /** Keyword watch lists (their terms become KEYWORD reasons). */
  watchLists?: WatchList[];
  /** Historical tables of a trained model (validated by createRuleset). */
  history?: unknown;
  /** Peer tables to score against; built from the file itself when absent. */
  peers?: PeerTables;
  /** Peer hierarchy when peers are built from the file. */
  levels?: readonly string[];
  settings?: RulesetSettingsInput;
  threads?: number;
  batchSize?: number;
  /**
   * The instant (ms since the epoch) whose profiles score the file: a profile
   * applies only within [activeFrom, activeUntil), as in the service
   * (default: now). The others are left out and counted.
   */
  at?: number;
  /** Where decisions go: a path ending .ndjson/.jsonl/.csv, or a writable stream (NDJSON). */
  out?: string | NodeJS.WritableStream;
  /** Invalid records are written here as NDJSON, when given. */
  errorsOut?: string;
  onProgress?: (phase: 'peers' | 'score', bytesRead: number, totalBytes: number, rows: number) => void;
}

export interface ScoreSummary {
  file: string;
  rows: number;
  scored: number;
  invalid: number;
  channels: Record<Channel, number>;
  controlGroup: number;
  rulesetVersion: string;
  profiles: number;
  /** Profiles given but not in force at `at` (outside [activeFrom, activeUntil)): left out. */
  profilesOutsideWindow: number;
  /** The instant whose profiles scored the file (ISO 8601). */
  at: string;
  peerGroups: Record<string, number>;
  seconds: { peers: number; scoring: number; total: number };
  /** Declarations per second over the scoring pass (reading and parsing included). */
  declarationsPerSecond: number;
  /** Seconds spent inside the kernel, summed over batches. */
  kernelSeconds: number;
  /** The first invalid records (at most 10). */
  firstErrors: RecordError[];
}

type Format = 'ndjson' | 'csv';

function outputFormat(path: string): Format {
  if (/\.(nd)?jsonl?$/i.test(path) || /\.ndjson$/i.test(path)) return 'ndjson';
  if (/\.csv$/i.test(path)) return 'csv';
  throw errors.SEL_ERR_FILE_FORMAT(`cannot tell the output format of ${path}`, { field: 'out', expected: 'a path ending .ndjson, .jsonl or .csv', got: path });
}

/** Compact one-cell form of the reasons, for CSV output. */
export function reasonsText(reasons: Reason[]): string {
  return reasons.map((r): string => {
    switch (r.code) {
      case 'PROFILE': return `PROFILE:${r.profile}`;
      case 'DEVIATION': return `DEVIATION:${r.feature}:${r.direction}:z=${r.z}@${r.peerLevel}`;
      case 'SCORE_THRESHOLD': return `SCORE_THRESHOLD:${r.channel}`;
      case 'COUNTER_MEASURE': return `COUNTER_MEASURE:${r.channel}:${r.profiles.join('+')}`;
      case 'RANDOM_SELECTION': return `RANDOM_SELECTION:${r.channel}`;
      case 'KEYWORD': return `KEYWORD:${r.term}${r.lists.length ? `@${r.lists.join('+')}` : ''}`;
      case 'AEO': return `AEO:${r.contribution}`;
      // a combination's value joins its parts with | (848310|ID), the cell's separator: here with × as the dimension's name does
      case 'HISTORY': return `HISTORY:${r.dimension}=${r.value.replaceAll('|', '×')}:${r.contribution}`;
      case 'MISCLASSIFICATION': return `MISCLASSIFICATION:${r.declaredChapter}->${r.bestHeading}:fit=${r.fit}`;
    }
  }).join('|');
}

/**
 * Where the decisions or the errors go: a file (AtomicOutput: in place only
 * once the run completes), or a stream the caller gave (its errors are
 * kept and thrown, not left to end the process).
 */
interface Sink {
  write(text: string): Promise<void>;
  commit(): Promise<void>;
  discard(): void;
}

function streamSink(stream: NodeJS.WritableStream): Sink {
  let failure: Error | undefined;
  stream.on('error', (e: Error) => { failure ??= e; });
  const check = () => {
    if (failure) throw errors.SEL_ERR_STORAGE(`cannot write the decisions: ${failure.message}`, { field: 'out', expected: 'a writable stream', got: (failure as NodeJS.ErrnoException).code ?? 'a stream error' });
  };
  return {
    async write(text) {
      check();
      if (!stream.write(text)) {
        await drained(stream);
        check();
      }
    },
    async commit() { check(); },
    discard() { /* the caller's stream: left to the caller */ },
  };
}

/** A pass-through column's name in the output: its own, or input.<name> where a decision field has that name. */
function passThroughNames(columns: readonly string[], taken: ReadonlySet<string>): string[] {
  const used = new Set(taken);
  return columns.map((c) => {
    let name = c;
    while (used.has(name)) name = `input.${name}`;
    used.add(name);
    return name;
  });
}
const NDJSON_FIELDS: ReadonlySet<string> = new Set(['id', 'channel', 'score', 'controlGroup', 'rulesetVersion', 'reasons']);
/** The CSV output's own columns, before the pass-through ones. */
const CSV_HEADER = ['id', 'channel', 'score', 'control_group', 'ruleset_version', 'reasons'] as const;
const CSV_FIELDS: ReadonlySet<string> = new Set(CSV_HEADER);

export type PeerBuildOptions = Pick<ScoreFileOptions, 'levels' | 'columns' | 'batchSize' | 'onProgress'> & { builder?: PeerTableBuilder };

/** Folds every valid declaration of a file into a peer builder (a new one over `levels` unless one is given). */
export async function foldPeersFromFile(path: string, options: PeerBuildOptions = {}, total = 0): Promise<PeerTableBuilder> {
  const builder = options.builder ?? new PeerTableBuilder({ levels: options.levels ?? DEFAULT_LEVELS });
  let rows = 0;
  for await (const chunk of readDeclarations(path, { columns: options.columns, batchSize: options.batchSize })) {
    rows += builder.add(chunk.batch);
    options.onProgress?.('peers', chunk.bytesRead, total, chunk.rowsRead);
  }
  builder.addSource(path, rows);
  return builder;
}

export async function buildPeerSnapshotFromFile(path: string, options: PeerBuildOptions = {}, total = 0): Promise<PeerSnapshot> {
  return (await foldPeersFromFile(path, options, total)).snapshot();
}

export async function buildPeersFromFile(path: string, options: PeerBuildOptions = {}, total = 0): Promise<PeerTables> {
  return (await foldPeersFromFile(path, options, total)).finish();
}

export async function scoreFile(path: string, options: ScoreFileOptions = {}): Promise<ScoreSummary> {
  const t0 = performance.now();
  let total = 0;
  try {
    total = statSync(path).size;
  } catch {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}`, { field: 'file', expected: 'a readable file', got: path });
  }
  // Open the outputs first: a bad --out fails before minutes of reading, with a named error. Neither
  // may be the input (opened for writing, it would be gone) or the other output.
  let format: Format = 'ndjson';
  const files: [string, string][] = [];
  if (typeof options.out === 'string') files.push(['out', options.out]);
  if (options.errorsOut) files.push(['errors', options.errorsOut]);
  for (const [option, file] of files) {
    if (samePath(file, path)) throw errors.SEL_ERR_OPTION_INVALID(`--${option} ${file} is the input file`, { field: option, expected: 'a path other than the input', got: file });
  }
  if (files.length === 2 && samePath(files[0][1], files[1][1])) throw errors.SEL_ERR_OPTION_INVALID(`--errors ${files[1][1]} is the --out file`, { field: 'errors', expected: 'a path other than --out', got: files[1][1] });
  if (typeof options.out === 'string') format = outputFormat(options.out);
  let out: Sink | undefined;
  let errorsOut: Sink | undefined;
  try {
    out = typeof options.out === 'string' ? new AtomicOutput(options.out, 'out') : options.out ? streamSink(options.out) : undefined;
    errorsOut = options.errorsOut ? new AtomicOutput(options.errorsOut, 'errors') : undefined;
  } catch (e) {
    out?.discard();
    throw e;
  }

  let peers: PeerTables;
  try {
    peers = options.peers ?? (await buildPeersFromFile(path, options, total));
  } catch (e) {
    out?.discard();
    errorsOut?.discard();
    throw e;
  }
  const tPeers = performance.now();
  const at = options.at ?? Date.now();
  const given = options.profiles ?? [];
  const inForce = given.filter((p) => inWindow(p, at));
  const ruleset = createRuleset({ peers, profiles: inForce, watchLists: options.watchLists, history: options.history, settings: options.settings });
  const engine = createEngine({ ruleset, threads: options.threads });
  const meta = engine.meta();

  const counts = emptyCounts();
  const firstErrors: RecordError[] = [];
  let rows = 0, scored = 0, invalid = 0, kernelNs = 0;
  let lastBadLine = -1;
  let header: string[] | undefined;
  const inFlight: { result: Promise<ScoreResult>; ids: string[]; pass: Record<string, string[]> }[] = [];
  const maxInFlight = engine.options.threads * 2 + 1;

  const emit = async (result: ScoreResult, ids: string[], pass: Record<string, string[]>): Promise<void> => {
    scored += result.size;
    kernelNs += result.kernelNs;
    channelCounts(result, counts);
    if (!out) return;
    const passCols = Object.keys(pass);
    // a pass-through column named as a decision field (an input's earlier channel or score) comes out as input.<name>
    const names = passThroughNames(passCols, format === 'csv' ? CSV_FIELDS : NDJSON_FIELDS);
    if (format === 'csv' && !header) {
      header = [...CSV_HEADER, ...names];
      await out.write(header.map(csvCellSafe).join(',') + '\n');
    }
    let text = '';
    for (let i = 0; i < result.size; i++) {
      const d: Decision = decisionAt(result, i, ids[i], meta);
      if (format === 'ndjson') {
        const line: Record<string, unknown> = { ...d };
        for (let k = 0; k < passCols.length; k++) line[names[k]] = pass[passCols[k]][i];
        text += JSON.stringify(line) + '\n';
      } else {
        text += [d.id, d.channel, String(d.score), d.controlGroup ? '1' : '0', d.rulesetVersion, reasonsText(d.reasons), ...passCols.map((c) => pass[c][i])].map(csvCellSafe).join(',') + '\n';
      }
    }
    await out.write(text);
  };

  const tScore = performance.now();
  try {
    for await (const chunk of readDeclarations(path, { columns: options.columns, batchSize: options.batchSize })) {
      rows = chunk.rowsRead;
      for (const e of chunk.errors) {
        // a record with several bad fields has one error per field, consecutively: count records
        if (e.line !== lastBadLine) { invalid++; lastBadLine = e.line; }
        if (firstErrors.length < 10) firstErrors.push(e);
        if (errorsOut) await errorsOut.write(JSON.stringify(e) + '\n');
      }
      if (chunk.batch.size > 0) inFlight.push({ result: engine.scoreBatch(chunk.batch), ids: chunk.ids, pass: chunk.passThrough });
      while (inFlight.length >= maxInFlight) {
        const head = inFlight.shift()!;
        await emit(await head.result, head.ids, head.pass);
      }
      options.onProgress?.('score', chunk.bytesRead, total, chunk.rowsRead);
    }
    while (inFlight.length > 0) {
      const head = inFlight.shift()!;
      await emit(await head.result, head.ids, head.pass);
    }
    // no valid row (a header-only file): a CSV of decisions still says what its columns are
    if (out && format === 'csv' && !header) await out.write(`${CSV_HEADER.join(',')}\n`);
    // the run is complete: the outputs go in place (a failure above leaves earlier files as they were)
    await out?.commit();
    await errorsOut?.commit();
  } finally {
    await Promise.allSettled(inFlight.map((f) => f.result));
    await engine.close();
    out?.discard();
    errorsOut?.discard();
  }
  const tEnd = performance.now();
  const { control, ...channels } = counts;
  const scoringSeconds = (tEnd - tScore) / 1000;
  return {
    file: path,
    rows,
    scored,
    invalid,
    channels,
    controlGroup: control,
    rulesetVersion: meta.version,
    profiles: meta.profiles.length,
    profilesOutsideWindow: given.length - inForce.length,
    at: new Date(at).toISOString(),
    peerGroups: Object.fromEntries(peers.levels.map((l, i) => [l.name, peers.groups[i].size])),
    seconds: { peers: (tPeers - t0) / 1000, scoring: scoringSeconds, total: (tEnd - t0) / 1000 },
    declarationsPerSecond: scoringSeconds > 0 ? scored / scoringSeconds : 0,
    kernelSeconds: kernelNs / 1e9,
    firstErrors,
  };
}
