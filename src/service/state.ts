/**
 * The service's ruleset sources and their lifecycle: the data directory, the
 * store (SQLite: profiles and their versions) and the peer snapshot file,
 * seeded from the bundled example on a first start, re-read on reload, and
 * written durably (then swapped in) when profiles or peers change through
 * the API. Profiles activate and expire by their dates: a timer rebuilds the
 * ruleset at the next boundary, without a restart.
 */
import { readJsonFile, readJsonFileHashed } from '../store/json-file.js';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errors, fromWorker } from '../errors.js';
import { ProfileStore, type ImportSummary } from '../profiles/store.js';
import { validateProfiles } from '../profiles/profile.js';
import { WatchListStore } from '../text/store.js';
import { DEFAULT_MIN_Z, keptNoWeight, modelRuleset, type TrainedModel, type TrainOptions } from '../learn/train.js';
import { dimensionLoaded, type HistoryTables } from '../learn/history.js';
import { isFromStore, modelFromStore, STORE_SOURCE } from '../learn/from-store.js';
import { DATA_FILE_MODE, makeDirs, writeFileDurable } from '../store/durable.js';
import { UsageRecorder } from '../profiles/effectiveness.js';
import { loadPeers, lockPeerSnapshot, parsePeerSnapshot, savePeerSnapshot } from '../peers/peer-store.js';
import { isPeerSnapshot, snapshotTables, type PeerSnapshot, type PeerTables } from '../peers/peer-groups.js';
import { createRuleset, type Ruleset } from '../ruleset/ruleset.js';
import { compileRuleset, type CompiledMeta, type CompiledRuleset } from '../ruleset/compile.js';
import type { Engine } from '../engine.js';
import { buildPeerSnapshotFromFile } from '../score-file.js';
import { packageRoot, workerExecArgv, workerPath } from '../paths.js';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import type { RetrainTask } from '../../workers/retrain-worker.js';
import { openStore, SCHEMA_VERSION, STORE_FILE, writeWhenFree, type Db, type OpenStoreOptions } from '../store/sqlite.js';
import { newestFeedbackSeq, resultsAfter } from '../feedback/feedback.js';

export interface RulesetFiles {
  /** The SQLite store (profiles and their versions). */
  storePath: string;
  peersPath: string;
  /** The compliance model (selectivity train, or POST /v1/model/retrain); used when the file exists. Default: model.json beside the store. */
  modelPath?: string;
}

export interface SeedReport {
  dataDir: string;
  /** Files created, or profile sets imported, on this start. */
  created: string[];
  /** The peers file named by the caller, as read (checked) before anything was created: for the first RulesetSource.load. */
  peers?: PeerSnapshot | PeerTables;
}

export function examplePaths(): { declarations: string; profiles: string; watchLists: string } {
  const root = packageRoot();
  return { declarations: join(root, 'examples', 'declarations.csv'), profiles: join(root, 'examples', 'profiles.json'), watchLists: join(root, 'examples', 'watchlists.json') };
}


/**
 * Creates the data directory (owner-only), the store and the peer snapshot.
 * Profiles: `profilesFile`, when given, is imported at every start (it
 * replaces the active set: the operator asked for it); otherwise an empty
 * store is seeded once, from <dataDir>/profiles.json when an earlier version
 * left one there, else from the bundled example. Watch lists: an empty
 * store is seeded once from the bundled example.
 */
export async function prepareDataDir(dataDir: string, files: { peersPath?: string; profilesFile?: string } = {}, options: OpenStoreOptions & { onDirectory?: () => void; seed?: boolean } = {}): Promise<RulesetFiles & SeedReport> {
  // the files named on the command line first: a missing or invalid one is refused before anything is created
  const profileSet = files.profilesFile ? readJsonFile(files.profilesFile, 'the profile set', 'profiles', errors.SEL_ERR_PROFILE_INVALID) : undefined;
  if (profileSet !== undefined) validateProfiles(profileSet);
  if (files.peersPath && !existsSync(files.peersPath)) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`peer snapshot ${files.peersPath} not found`, { field: 'peers', expected: 'a readable file', got: files.peersPath });
  }
  // read whole (format, checksum) now, and handed to the first load rather than read twice
  const peers = files.peersPath ? loadPeers(files.peersPath) : undefined;
  try {
    makeDirs(dataDir, 0o700);
    if (!statSync(dataDir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw errors.SEL_ERR_CONFIG_INVALID(`cannot use data directory ${dataDir}: ${(e as Error).message}`, { field: 'dataDir', expected: 'a writable directory', got: dataDir });
  }
  // the directory exists, nothing in it is touched yet (startService takes its lock here)
  options.onDirectory?.();
  const created: string[] = [];
  const storePath = join(dataDir, STORE_FILE);
  const peersPath = files.peersPath ?? join(dataDir, 'peers.json');
  const example = examplePaths();
  if (!existsSync(storePath)) created.push(storePath);
  const db = openStore(storePath, SCHEMA_VERSION, options);
  try {
    // a store that has recorded a ruleset served with peer tables: with its peers.json gone (a partial
    // restore, a deleted file), the example's would score in their place, unseen; refused instead
    const served = db.prepare('SELECT 1 FROM rulesets LIMIT 1').get() !== undefined;
    if (served && !files.peersPath && !existsSync(peersPath)) {
      throw errors.SEL_ERR_FILE_NOT_FOUND(`the data directory's peer snapshot ${peersPath} is missing, but its store has served rulesets: restore peers.json from the backup (docs/service.md, "Backup, restore and upgrades"), or name a snapshot with --peers`, { field: 'peers', expected: `${peersPath}, as the store's rulesets used it (GET /v1/rulesets names its version)`, got: 'no such file' });
    }
    const store = new ProfileStore(db);
    if (files.profilesFile) {
      store.importSet(profileSet, { by: `serve --profiles ${files.profilesFile}`, replace: true });
      created.push(`profiles from ${files.profilesFile}`);
    } else if (options.seed !== false && store.list('all').length === 0) {
      const legacy = join(dataDir, 'profiles.json');
      const from = existsSync(legacy) ? legacy : example.profiles;
      store.importSet(readJsonFile(from, 'the profile set', 'profiles', errors.SEL_ERR_PROFILE_INVALID), { by: 'first start', replace: true });
      created.push(`profiles from ${from}`);
    }
    const lists = new WatchListStore(db);
    if (options.seed !== false && lists.list('all').length === 0) {
      lists.importSet(readJsonFile(example.watchLists, 'the watch lists', 'watchLists', errors.SEL_ERR_WATCHLIST_INVALID), { by: 'first start', replace: true });
      created.push(`watch lists from ${example.watchLists}`);
    }
  } finally {
    db.close();
  }
  if (options.seed !== false && !files.peersPath && !existsSync(peersPath)) {
    savePeerSnapshot(peersPath, await buildPeerSnapshotFromFile(example.declarations), { createMode: DATA_FILE_MODE });
    created.push(peersPath);
  }
  try { chmodSync(dataDir, 0o700); } catch { /* not ours to change (mounted volume): leave it */ }
  return { dataDir, storePath, peersPath, created, peers };
}

/** Version and provenance of peer statistics (GET /v1/peers). */
export interface PeersInfo { version: string; createdAt: string | null; rows: number | null; levels: string[]; groups: Record<string, number>; foldable: boolean }

function peersInfoOf(t: PeerTables, foldable: boolean): PeersInfo {
  return {
    version: t.info?.version ?? 'format-1', createdAt: t.info?.createdAt ?? null, rows: t.info?.rows ?? null,
    levels: t.levels.map((l) => l.name), groups: Object.fromEntries(t.levels.map((l, i) => [l.name, t.groups[i].size])), foldable,
  };
}

/**
 * The compliance model a source holds (RulesetSource.model). `sha256`: of
 * its file's bytes, as read or as written by a retrain (what `sha256sum`
 * prints for that model.json).
 */
type Model = { settings: TrainedModel['settings']; history: HistoryTables; sha256?: string; trainedAt?: string; rows?: number; fromStore?: boolean; feedbackSeq?: number; minZ?: number; z?: Record<string, number> };

/**
 * Which model a ruleset scored with, as its record keeps it: the model
 * file's SHA-256, when it was trained, on how many declarations, from where
 * (the store's feedback or labelled files) and up to which result.
 */
export interface ModelIdentity {
  sha256: string | null;
  trainedAt: string | null;
  rows: number | null;
  source: 'store' | 'files';
  feedbackSeq: number | null;
}

/** A model's identity for the ruleset record (null: no model). */
function modelIdentity(m: Model | undefined): ModelIdentity | null {
  return m ? { sha256: m.sha256 ?? null, trainedAt: m.trainedAt ?? null, rows: m.rows ?? null, source: m.fromStore ? 'store' : 'files', feedbackSeq: m.feedbackSeq ?? null } : null;
}

/** A refit, not yet written or swapped in: the model, its file's text, and what the training reports. */
interface Fitted {
  model: Model;
  file: string;
  training: TrainedModel['training'];
}

/**
 * What a change (RulesetSource.commitChange) made, inside the transaction:
 * its result, the peers or model it brings (absent: the current ones;
 * `model: undefined` present: no model), and the file it writes last.
 */
export interface Change<T> {
  result: T;
  peers?: PeerTables;
  snapshot?: PeerSnapshot;
  model?: Model | undefined;
  write?: () => void;
}

/** The largest delay setTimeout takes; boundaries further away are re-checked then. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class RulesetSource {
  private peers: PeerTables | undefined;
  /** The loaded snapshot with its sketches (absent for a format-1 file). */
  private snapshot: PeerSnapshot | undefined;
  private readonly db: Db;
  readonly profiles: ProfileStore;
  /** Keyword watch lists (their active terms are looked for in every description). */
  readonly watchLists: WatchListStore;
  /** Matches per profile and day, flushed to the store every few seconds. */
  readonly usage: UsageRecorder;
  private engine: Engine | undefined;
  private clock: { apply: () => unknown; timer?: NodeJS.Timeout } | undefined;

  /** What a retrain fits with (the prior strength and the significance bar: serve --retrain-strength, --retrain-min-z); the defaults otherwise. */
  readonly retrainOptions: Pick<TrainOptions, 'strength' | 'minZ'>;
  private readonly now: () => number;

  constructor(readonly files: RulesetFiles, options: { retrain?: Pick<TrainOptions, 'strength' | 'minZ'>; now?: () => number } = {}) {
    this.retrainOptions = options.retrain ?? {};
    this.now = options.now ?? Date.now;
    this.db = openStore(files.storePath);
    this.profiles = new ProfileStore(this.db);
    this.watchLists = new WatchListStore(this.db);
    this.usage = new UsageRecorder(this.db);
  }

  /** The store's database (effectiveness queries, feedback). */
  get database(): Db { return this.db; }

  /** The compliance model in use (weights, thresholds, historical tables), if any. */
  private model: Model | undefined;

  private get modelPath(): string { return this.files.modelPath ?? join(dirname(this.files.storePath), 'model.json'); }

  /**
   * A ruleset of these peers with the profiles and watch lists active now,
   * and `model` (undefined: none). No default for it: a change that removes
   * the model passes undefined, which a default would read as "the current
   * one" (a reload after model.json was deleted kept scoring with it).
   */
  private compose(peers: PeerTables, model: Model | undefined, profiles: unknown = this.profiles.activeAt(this.now())): Ruleset {
    const base = { peers, profiles, watchLists: this.watchLists.active() };
    return model ? createRuleset({ ...base, settings: model.settings, history: model.history }) : createRuleset(base);
  }

  /**
   * A ruleset of the current peers, watch lists and model with other
   * profiles (a candidate set for a back-test); validates them, changes
   * nothing.
   */
  composeWith(profiles: unknown): Ruleset {
    if (!this.peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
    return this.compose(this.peers, this.model, profiles);
  }

  /** Reads the model file when there is one (a named error if it is not a model; nothing changes then). */
  private readModel(): typeof this.model {
    if (!existsSync(this.modelPath)) return undefined;
    const { value, sha256 } = readJsonFileHashed(this.modelPath, 'the model', 'model', errors.SEL_ERR_RULESET_INVALID);
    const raw = value as { createdAt?: string; training?: { rows?: number; minZ?: unknown; z?: unknown }; source?: string; feedbackSeq?: unknown };
    const feedbackSeq = Number.isSafeInteger(raw.feedbackSeq) && (raw.feedbackSeq as number) >= 0 ? (raw.feedbackSeq as number) : undefined; // absent in models written before it was recorded
    // the significance bar and each kept weight's z: absent in models written before them
    const minZ = typeof raw.training?.minZ === 'number' ? raw.training.minZ : undefined;
    const z = raw.training?.z !== null && typeof raw.training?.z === 'object' ? (raw.training.z as Record<string, number>) : undefined;
    return { ...modelRuleset(raw), sha256, trainedAt: raw.createdAt, rows: raw.training?.rows, fromStore: isFromStore(raw.source), feedbackSeq, minZ, z };
  }

  /** The identity of the model in use, as a ruleset record keeps it (null without a model). */
  get modelIdentity(): ModelIdentity | null { return modelIdentity(this.model); }

  /** What the model in use was trained on (undefined without a model). */
  get modelInfo(): { path: string; sha256: string | null; trainedAt: string | null; rows: number | null; strength: number; traderStrength: number; minZ: number | null; dimensions: { name: string; weight: number; z: number | null; values: number }[] } | undefined {
    const m = this.model;
    const zOf = (name: string): number | null => { const z = m?.z?.[`history.${name}`]; return typeof z === 'number' ? z : null; };
    return m && {
      path: this.modelPath, sha256: m.sha256 ?? null, trainedAt: m.trainedAt ?? null, rows: m.rows ?? null, strength: m.history.strength, traderStrength: m.history.traderStrength ?? m.history.strength, minZ: m.minZ ?? null,
      // weight 0: dropped by training (negative, or z below minZ), not loaded; z: the kept weight over its standard error
      dimensions: m.history.dimensions.map((d) => ({ name: d.name, weight: d.weight, z: dimensionLoaded(d) ? zOf(d.name) : null, values: d.keys.length })),
    };
  }

  /** The retrain running now (a second call waits for it rather than fitting twice). */
  private retraining: Promise<Fitted> | undefined;
  private retrainPool: Piscina | undefined;

  /**
   * Refits the compliance model on the inspected declarations whose feedback
   * the store holds (the decision log joined to current feedback), against
   * the current peers, in a worker thread (scoring goes on meanwhile), and
   * returns it with its file's text, neither written nor swapped in
   * (retrainAndSwap does both). Too little feedback is a named error.
   */
  retrain(): Promise<Fitted> {
    this.retraining ??= this.fit().finally(() => { this.retraining = undefined; });
    return this.retraining;
  }

  /**
   * Refits the model (retrain) and swaps it in (commitChange): the model file
   * is written in the transaction that records the ruleset it leads to, so a
   * refit whose swap fails leaves the file, the model reported and the
   * ruleset scoring as they were. Resolves with what the training reports.
   */
  async retrainAndSwap(): Promise<{ training: TrainedModel['training']; version: string }> {
    const fitted = await this.retrain();
    const { result, version } = await this.commitChange(() => ({ result: fitted.training, model: fitted.model, write: () => writeFileDurable(this.modelPath, fitted.file, { createMode: DATA_FILE_MODE }) }));
    return { training: result, version };
  }

  private async fit(): Promise<Fitted> {
    if (!this.peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
    const task: RetrainTask = { storePath: this.files.storePath, peersPath: this.files.peersPath, now: this.now(), options: this.retrainOptions };
    const file = workerPath('retrain-worker');
    let doc: Awaited<ReturnType<typeof modelFromStore>>;
    if (existsSync(file)) {
      this.retrainPool ??= new Piscina({ filename: pathToFileURL(file).href, execArgv: workerExecArgv(), minThreads: 0, maxThreads: 1, idleTimeout: 10_000 });
      doc = fromWorker(await this.retrainPool.run(task));
    } else {
      doc = await modelFromStore(this.db, this.peers, task.options ?? {}, STORE_SOURCE, new Date(task.now)); // not built (library use from source): in this thread
    }
    // a refit that kept no weight scores every declaration alike (at the rate of non-compliance in
    // the feedback: all yellow when that is above the yellow line): it does not replace the model in use
    if (keptNoWeight(doc)) {
      const minZ = doc.training.minZ ?? DEFAULT_MIN_Z;
      throw errors.SEL_ERR_OPTION_INVALID(`the refit kept no weight: no signal in the ${doc.training.rows} inspected declarations with feedback (${doc.nonCompliant} non-compliant) reaches z ${minZ}; the model in use stays`, { field: 'feedback', expected: `feedback from which at least one weight reaches the significance bar (serve --retrain-min-z, ${minZ})`, got: { inspected: doc.training.rows, nonCompliant: doc.nonCompliant } });
    }
    const text = `${JSON.stringify(doc)}\n`;
    const next = { settings: doc.settings, history: doc.history, sha256: createHash('sha256').update(text).digest('hex'), trainedAt: doc.createdAt, rows: doc.training.rows, fromStore: true, feedbackSeq: doc.feedbackSeq, minZ: doc.training.minZ, z: doc.training.z };
    this.compose(this.peers, next); // validates before anything is written
    return { model: next, file: text, training: doc.training };
  }

  /** Inspected declarations with current feedback in the store (what a retrain learns from). */
  inspectedWithFeedback(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM feedback WHERE current = 1 AND inspected = 1').get() as { n: number }).n;
  }

  /** The inspected declarations the model in use learnt from the store (0 for a model from labelled files, or none). */
  private get trainedOn(): number { return this.model?.fromStore ? this.model.rows ?? 0 : 0; }

  /**
   * Inspected declarations whose current result was recorded after the
   * model in use was trained (new results and changed ones, an inspection
   * withdrawn included; resultsAfter): what automatic retraining counts.
   * Without a model, every one; for a model file that does not record its
   * newest result (written before feedbackSeq), the difference between the
   * store's count and the rows it was trained on.
   */
  resultsSinceModel(): number {
    const mark = this.model?.fromStore ? this.model.feedbackSeq : undefined;
    if (mark === undefined) return Math.max(0, this.inspectedWithFeedback() - this.trainedOn);
    return resultsAfter(this.db, mark);
  }

  private auto: { timer: NodeJS.Timeout; after: number } | undefined;

  /**
   * Retrains by itself as feedback arrives: every `checkMs`, when at least
   * `after` inspected declarations got their current result after the model
   * in use was trained (resultsSinceModel: new results, and changed ones),
   * the model is refitted (in a worker) and handed to `apply`. Results whose
   * decision was pruned from the log count once, not at every check. A model
   * that did not come from the store (selectivity train on labelled files)
   * is never replaced this way. A failed refit (too little feedback of one
   * kind, say) is reported to `report`; the next attempt waits for a new
   * result instead of reading the store again at every check.
   */
  startAutoRetrain(o: { after: number; checkMs?: number; report?: (event: { ok: boolean; rows?: number; error?: unknown }) => void }): void {
    if (this.auto) clearInterval(this.auto.timer);
    this.auto = undefined;
    if (!(o.after > 0)) return;
    /** The newest result when the last attempt failed: the next waits for a result after it (not every check again). */
    let failedAt: number | undefined;
    const timer = setInterval(() => {
      if (this.retraining || (this.model && !this.model.fromStore)) return;
      const newest = newestFeedbackSeq(this.db);
      if (failedAt !== undefined && newest <= failedAt) return;
      if (this.resultsSinceModel() < o.after) return;
      this.retrainAndSwap().then((r) => { failedAt = undefined; o.report?.({ ok: true, rows: r.training.rows }); }).catch((error: unknown) => { failedAt = newest; o.report?.({ ok: false, error }); });
    }, o.checkMs ?? 60_000);
    timer.unref();
    this.auto = { timer, after: o.after };
  }

  /** Automatic retraining: the threshold, and how far the store is from it (undefined when off). */
  get autoRetrain(): { after: number; inspectedWithFeedback: number; trainedOn: number; sinceTraining: number } | undefined {
    return this.auto && { after: this.auto.after, inspectedWithFeedback: this.inspectedWithFeedback(), trainedOn: this.trainedOn, sinceTraining: this.resultsSinceModel() };
  }

  /**
   * Reads the peer file and the active profiles; throws a named error and
   * changes nothing if either is invalid. `read`: the peer file as already
   * read (prepareDataDir's), instead of reading it again.
   */
  async load(read?: PeerSnapshot | PeerTables): Promise<Ruleset> {
    const { peers, snapshot, model, ruleset } = this.readFiles(read);
    this.model = model;
    this.peers = peers;
    this.snapshot = snapshot;
    this.reschedule();
    return ruleset;
  }

  /** The peer file and the model file, read and checked by composing the ruleset they give (a named error if either is invalid); nothing assigned. */
  private readFiles(read?: PeerSnapshot | PeerTables): { peers: PeerTables; snapshot: PeerSnapshot | undefined; model: Model | undefined; ruleset: Ruleset } {
    const loaded = read ?? loadPeers(this.files.peersPath);
    const snapshot = isPeerSnapshot(loaded) ? loaded : undefined;
    const peers = snapshot ? snapshotTables(snapshot) : (loaded as PeerTables);
    const model = this.readModel();
    return { peers, snapshot, model, ruleset: this.compose(peers, model) };
  }

  /**
   * Reads the peer and model files again and swaps in the ruleset they give
   * (POST /v1/ruleset/reload, SIGHUP): an invalid file, or a swap that fails,
   * leaves the ruleset, the peers and the model reported as they were.
   */
  async reload(): Promise<string> {
    // the files are read in the change, after every change queued before it has written its own:
    // read before, a reload that waited behind an upload installed the files as they were before it
    return (await this.commitChange(() => {
      const { peers, snapshot, model } = this.readFiles();
      return { result: undefined, peers, snapshot, model };
    })).version;
  }

  /** The ruleset of the current peers and the profiles active now (after a profile change, or at a boundary). */
  rebuild(): Ruleset {
    if (!this.peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
    const ruleset = this.compose(this.peers, this.model);
    this.reschedule();
    return ruleset;
  }

  /**
   * Swaps rulesets in by the clock: at the next activeFrom / activeUntil of
   * any active profile, the ruleset is rebuilt and handed to `apply`.
   */
  startClock(apply: () => unknown): void {
    this.clock = { apply };
    this.reschedule();
  }

  private reschedule(): void {
    const c = this.clock;
    if (!c) return;
    if (c.timer) clearTimeout(c.timer);
    c.timer = undefined;
    const now = this.now();
    const next = this.profiles.nextChange(now);
    if (next === undefined) return;
    c.timer = setTimeout(() => {
      c.timer = undefined;
      // apply may be asynchronous (swapCurrent): a failure either way (the store busy past its wait) keeps
      // the current ruleset, and is tried again, sooner and sooner apart up to a minute, until one holds:
      // the boundary has passed, so the next one would come too late
      let pause = 500;
      const attempt = () => {
        Promise.resolve().then(() => c.apply()).then(() => this.reschedule(), () => {
          pause = Math.min(2 * pause, 60_000);
          c.timer = setTimeout(attempt, pause);
          c.timer.unref();
        });
      };
      attempt();
    }, Math.min(Math.max(0, next - now + 1), MAX_DELAY_MS));
    c.timer.unref();
  }

  /**
   * Imports a profile set as the new active set (profiles absent from it are
   * retired): validated whole, written in one durable transaction, then the
   * ruleset to swap in is returned. Nothing is written if validation fails.
   * The write waits for the store's lock without blocking the thread
   * (writeWhenFree: the decision log's writer holds it while it commits).
   */
  async replaceProfiles(raw: unknown, by = 'api'): Promise<{ summary: ImportSummary; version: string }> {
    if (!this.peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
    const { result, version } = await this.commitWrite(this.profiles.prepareImport(raw, { by, replace: true })); // validated first
    return { summary: result, version };
  }

  /**
   * A prepared store write (a profile or watch-list import, activation,
   * retirement: ProfileStore.prepareImport, prepareStatus) and the ruleset it
   * leads to, in one step (commitChange).
   */
  commitWrite<T>(write: () => T): Promise<{ result: T; version: string }> {
    return this.commitChange(() => ({ result: write() }));
  }

  /**
   * Makes a change and swaps in the ruleset it leads to, as one step. In one
   * IMMEDIATE store transaction (the lock waited for without blocking the
   * thread: writeWhenFree), `change` makes its store writes (a profile
   * import, say) and names the peers or model it brings; the ruleset is
   * composed from the state as the change leaves it, compiled and recorded
   * under its version; last, the change's file is written (`write`: the
   * peer snapshot, the model). Only once that transaction commits do the
   * state this source reports and the engine move to the new ruleset, which
   * cannot fail. A failure before (the store busy past its wait, a full
   * disk, a snapshot's lock held, an invalid ruleset) changes nothing: not
   * the store, not the files, not what is scoring or reported. Before, the
   * change was stored first and the swap could fail after it: the answer
   * was an error, GET /v1/ruleset named the new peers while the old ruleset
   * scored, and the next reload swapped the "failed" change in. Changes
   * (and swaps) run one at a time, in the order asked.
   */
  async commitChange<T>(change: () => Change<T>): Promise<{ result: T; version: string }> {
    const engine = this.engine;
    if (!engine) throw errors.SEL_ERR_NOT_READY('no engine attached', { field: 'engine' });
    return this.serially(async () => {
      let made: Change<T> | undefined;
      let compiled: CompiledRuleset | undefined;
      await writeWhenFree(this.db, () => this.db.transaction(() => {
        made = change();
        const peers = made.peers ?? this.peers;
        if (!peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
        const model = 'model' in made ? made.model : this.model;
        compiled = compileRuleset(this.compose(peers, model));
        this.recordRuleset(compiled.meta, peers, model);
        made.write?.();
      }).immediate());
      // committed: from here nothing can fail
      const m = made!;
      if (m.peers) { this.peers = m.peers; this.snapshot = m.snapshot; }
      if ('model' in m) this.model = m.model;
      const version = engine.installCompiled(compiled!);
      this.lastInstalledAt = this.now();
      this.reschedule();
      return { result: m.result, version };
    });
  }

  /** The ruleset of the state as it is (a profile's window opened or closed, say), recorded and swapped in as commitChange does. */
  async swapCurrent(): Promise<string> {
    return (await this.commitChange(() => ({ result: undefined }))).version;
  }

  /** The swaps asked for, one after the other (each waits for the one before). */
  private swapping: Promise<unknown> = Promise.resolve();

  /**
   * Swaps a ruleset into the engine attached with attachEngine, after
   * recording what made it (profile versions, peer snapshot, settings)
   * under its version in the store: every decision names that version, so
   * it can be explained after a restart too (GET /v1/rulesets/<version>).
   * The ruleset is compiled at once (an invalid one rejects, nothing
   * changes); the record waits for the store's write lock without blocking
   * the thread (writeWhenFree); if it cannot be written, the ruleset is not
   * installed and the active one stays. Swaps run one at a time in the
   * order asked, so an earlier ruleset still waiting never replaces a later
   * one. Resolves with the version installed.
   */
  async swap(ruleset: Ruleset): Promise<string> {
    const engine = this.engine;
    if (!engine) throw errors.SEL_ERR_NOT_READY('no engine attached', { field: 'engine' });
    const compiled = compileRuleset(ruleset);
    return this.serially(async () => {
      await writeWhenFree(this.db, () => this.recordRuleset(compiled.meta, ruleset.peers, this.model));
      const version = engine.installCompiled(compiled);
      this.lastInstalledAt = this.now();
      return version;
    });
  }

  /** Runs `run` once every swap and change asked for before it has settled (swapping). */
  private serially<T>(run: () => Promise<T>): Promise<T> {
    const done = this.swapping.then(run, run);
    this.swapping = done.catch(() => undefined);
    return done;
  }

  /** When a ruleset was last installed in the engine (ms since the epoch; 0 before attachEngine): a reload, a change, a retrain, a profile's window. */
  lastInstalledAt = 0;

  /** When the compliance model in use was trained (ms since the epoch), or undefined: none, or none recorded. */
  get modelTrainedAt(): number | undefined {
    const t = this.model?.trainedAt ? Date.parse(this.model.trainedAt) : Number.NaN;
    return Number.isFinite(t) ? t : undefined;
  }

  /** The engine rulesets are swapped into (its current ruleset is recorded at once). */
  attachEngine(engine: Engine): void {
    this.engine = engine;
    this.lastInstalledAt = this.now();
    try {
      this.recordRuleset(engine.meta(), this.peers, this.model);
    } catch (e) {
      // a store that cannot be written (read-only, full) at start: named, not a raw SQLite error
      throw errors.SEL_ERR_STORAGE(`cannot record the ruleset in use in the store: ${(e as Error).message}`, { field: 'store', expected: 'a writable store', got: (e as { code?: string }).code });
    }
  }

  /**
   * Records what made a ruleset: `peers`, the tables it was composed with
   * (not whatever this source holds when a queued swap runs), and `model`,
   * the compliance model it was composed with (its identity; null when the
   * ruleset has no historical tables).
   */
  private recordRuleset(meta: CompiledMeta, peers: PeerTables | undefined, model: Model | undefined): void {
    this.db.prepare('INSERT OR IGNORE INTO rulesets (version, installed_at, peers, profiles, settings, watch_lists, model) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(meta.version, new Date(this.now()).toISOString(), peers?.info?.version ?? null, JSON.stringify(meta.profiles.map((p) => ({ id: p.id, version: p.version ?? null }))), JSON.stringify(meta.settings),
        JSON.stringify(meta.watchLists.map((w) => ({ id: w.id, version: w.version ?? null }))), JSON.stringify(meta.history ? modelIdentity(model) : null));
  }

  /**
   * What made a ruleset version (undefined when this store never installed
   * it). `watchLists` is null for a ruleset recorded before store migration
   * 10; `model` is absent for one recorded before migration 12, and null
   * for a ruleset without a compliance model.
   */
  rulesetRecord(version: string): { version: string; installedAt: string; peers: string | null; profiles: { id: string; version: number | null }[]; watchLists: { id: string; version: number | null }[] | null; settings: unknown; model?: ModelIdentity | null } | undefined {
    const r = this.db.prepare('SELECT * FROM rulesets WHERE version = ?').get(version) as { version: string; installed_at: string; peers: string | null; profiles: string; settings: string; watch_lists: string | null; model: string | null } | undefined;
    if (!r) return undefined;
    const record = { version: r.version, installedAt: r.installed_at, peers: r.peers, profiles: JSON.parse(r.profiles), watchLists: r.watch_lists === null ? null : JSON.parse(r.watch_lists), settings: JSON.parse(r.settings) };
    return r.model === null ? record : { ...record, model: JSON.parse(r.model) as ModelIdentity | null };
  }

  /** Waits for a retrain in flight (its model is written and kept) and stops the retrain worker. */
  async drain(): Promise<void> {
    if (this.auto) clearInterval(this.auto.timer);
    this.auto = undefined;
    await this.retraining?.catch(() => undefined);
    await this.retrainPool?.destroy();
    this.retrainPool = undefined;
  }

  close(): void {
    if (this.auto) clearInterval(this.auto.timer);
    this.auto = undefined;
    void this.retrainPool?.destroy();
    if (this.clock?.timer) clearTimeout(this.clock.timer);
    this.clock = undefined;
    this.usage.close();
    this.db.close();
  }

  /** The active peer statistics: the snapshot when there is one (studies plot from it), else the tables. */
  get currentPeers(): PeerSnapshot | PeerTables | undefined { return this.snapshot ?? this.peers; }

  /** Version and provenance of the active peer statistics. */
  get peersInfo(): PeersInfo | undefined {
    return this.peers && peersInfoOf(this.peers, this.snapshot !== undefined);
  }

  /**
   * Validates an uploaded peer snapshot (format 2, JSON or MessagePack bytes),
   * writes it durably to the peers file, and returns the ruleset to swap in.
   * A damaged or mismatched snapshot throws a named error and changes nothing.
   */
  async replacePeers(bytes: Uint8Array): Promise<{ version: string; peers: PeersInfo }> {
    const snapshot = parsePeerSnapshot(bytes, 'uploaded snapshot');
    const peers = snapshotTables(snapshot);
    this.compose(peers, this.model); // validates before anything is written
    const write = () => {
      const lock = lockPeerSnapshot(this.files.peersPath, 'selectivity serve (PUT /v1/peers)');
      try {
        savePeerSnapshot(this.files.peersPath, snapshot, { createMode: DATA_FILE_MODE });
      } finally {
        lock.release();
      }
    };
    const { version } = await this.commitChange(() => ({ result: undefined, peers, snapshot, write }));
    return { version, peers: peersInfoOf(peers, true) };
  }

}
