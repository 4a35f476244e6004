/**
 * Scores a declaration file end to end: (peer tables built from the file
 * itself when none are given) → streaming reader → worker pool → decisions
 * written in input order, with label columns carried through. Used by
 * `selectivity score` and available to library users.
 */
import { createWriteStream, openSync, statSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { errors } from './errors.js';
import { createEngine } from './engine.js';
import { channelCounts, decisionAt, emptyCounts, type Decision, type Reason } from './decisions.js';
import type { Channel } from './model/channels.js';
import { readDeclarations, type RecordError, type ReadOptions } from './model/readers.js';
import { DEFAULT_LEVELS, PeerTableBuilder, type PeerSnapshot, type PeerTables } from './peers/peer-groups.js';
import type { Profile } from './profiles/profile.js';
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

function csvCell(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
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
      case 'HISTORY': return `HISTORY:${r.dimension}=${r.value}:${r.contribution}`;
      case 'MISCLASSIFICATION': return `MISCLASSIFICATION:${r.declaredChapter}->${r.bestHeading}:fit=${r.fit}`;
    }
  }).join('|');
}

async function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream as WriteStream, 'drain');
}

function openOutput(file: string, option: string): number {
  try {
    return openSync(file, 'w');
  } catch (e) {
    throw errors.SEL_ERR_OPTION_INVALID(`cannot write --${option} ${file}: ${(e as Error).message}`, { field: option, expected: 'a writable file path (its directory must exist)', got: file });
  }
}

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
  // Open the outputs first: a bad --out fails before minutes of reading, with a named error.
  let format: Format = 'ndjson';
  let out: NodeJS.WritableStream | undefined;
  let ownOut = false;
  if (typeof options.out === 'string') {
    format = outputFormat(options.out);
    out = createWriteStream('', { fd: openOutput(options.out, 'out') });
    ownOut = true;
  } else if (options.out) {
    out = options.out;
  }
  const errorsOut = options.errorsOut ? createWriteStream('', { fd: openOutput(options.errorsOut, 'errors') }) : undefined;

  const peers = options.peers ?? (await buildPeersFromFile(path, options, total));
  const tPeers = performance.now();
  const ruleset = createRuleset({ peers, profiles: options.profiles ?? [], watchLists: options.watchLists, history: options.history, settings: options.settings });
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
    if (format === 'csv' && !header) {
      header = ['id', 'channel', 'score', 'control_group', 'ruleset_version', 'reasons', ...passCols];
      await write(out, header.map(csvCell).join(',') + '\n');
    }
    let text = '';
    for (let i = 0; i < result.size; i++) {
      const d: Decision = decisionAt(result, i, ids[i], meta);
      if (format === 'ndjson') {
        const line: Record<string, unknown> = { ...d };
        for (const c of passCols) line[c] = pass[c][i];
        text += JSON.stringify(line) + '\n';
      } else {
        text += [d.id, d.channel, String(d.score), d.controlGroup ? '1' : '0', d.rulesetVersion, reasonsText(d.reasons), ...passCols.map((c) => pass[c][i])].map(csvCell).join(',') + '\n';
      }
    }
    await write(out, text);
  };

  const tScore = performance.now();
  try {
    for await (const chunk of readDeclarations(path, { columns: options.columns, batchSize: options.batchSize })) {
      rows = chunk.rowsRead;
      for (const e of chunk.errors) {
        // a record with several bad fields has one error per field, consecutively: count records
        if (e.line !== lastBadLine) { invalid++; lastBadLine = e.line; }
        if (firstErrors.length < 10) firstErrors.push(e);
        if (errorsOut) await write(errorsOut, JSON.stringify(e) + '\n');
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
  } finally {
    await Promise.allSettled(inFlight.map((f) => f.result));
    await engine.close();
    if (ownOut && out) { (out as WriteStream).end(); await once(out as WriteStream, 'finish'); }
    if (errorsOut) { errorsOut.end(); await once(errorsOut, 'finish'); }
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
    peerGroups: Object.fromEntries(peers.levels.map((l, i) => [l.name, peers.groups[i].size])),
    seconds: { peers: (tPeers - t0) / 1000, scoring: scoringSeconds, total: (tEnd - t0) / 1000 },
    declarationsPerSecond: scoringSeconds > 0 ? scored / scoringSeconds : 0,
    kernelSeconds: kernelNs / 1e9,
    firstErrors,
  };
}
