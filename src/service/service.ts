/**
 * Starts the whole service: data directory (seeded with the example ruleset
 * on a first start), tokens, ruleset, worker pool, metrics, HTTP listener,
 * reload on SIGHUP and graceful shutdown on SIGTERM/SIGINT (stop accepting,
 * finish in-flight requests, close the pool).
 */
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createEngine, type Engine } from '../engine.js';
import { packageVersion } from '../paths.js';
import { errors } from '../errors.js';
import { ProcessLock } from '../store/process-lock.js';
import { dataDirTokensPath, loadTokens, ReloadableTokens, type TokenEntry } from './auth.js';
import { createMetrics, type Gauge, type Metrics } from './metrics.js';
import { processGauges, type ProcessGauges } from './process-gauges.js';
import { buildServer, DEFAULT_BODY_LIMIT, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_BATCH } from './server.js';
import type { StoreMigration } from '../store/sqlite.js';
import { prepareDataDir, RulesetSource } from './state.js';
import { DecisionLog } from '../feedback/decision-log.js';
import { checkStoreInBackground, type BackgroundCheck, type StoreCheckResult } from '../store/check.js';
import { STORE_CHECK_WAIT_MS, storeNotReady, type StoreCheckState } from './readiness.js';
import { BacktestJobs } from '../backtest/jobs.js';
import { historyDir } from '../history/store.js';
import { toBatch } from '../model/columnar.js';
import type { Declaration } from '../model/schema.js';

/** ServiceConfig.shutdownGraceMs's default. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;
/** Inspected results after a model's training that start an automatic retrain (--retrain-after). */
export const DEFAULT_RETRAIN_AFTER = 1000;

export interface ServiceConfig {
  host: string;
  port: number;
  dataDir: string;
  /** A profile set file imported at start (replacing the active set); default: the store as it is (seeded from the example on a first start). */
  profiles?: string;
  /** Peer tables file; default <dataDir>/peers.json (built from the example declarations). */
  peers?: string;
  /** Tokens file; default <dataDir>/tokens.json (generated on a first start). */
  tokensFile?: string;
  /** SELECTIVITY_TOKENS value, if set. */
  tokensEnv?: string;
  threads?: number;
  maxQueue?: number;
  /** Requests with bodies up to this many bytes are scored on the main thread (default 16 KiB; 0: never). */
  inlineMaxBytes?: number;
  /** Young generation of each scoring worker's heap, MiB (EngineOptions.youngGenerationMb; default 64, 0: V8's default). */
  youngGenerationMb?: number;
  bodyLimit?: number;
  maxBatch?: number;
  /** ServiceOptions.idleTimeoutMs (default 120,000; 0: never). */
  idleTimeoutMs?: number;
  /**
   * How long close() lets in-flight requests and streams finish, ms (default
   * 30,000): then their connections are closed. Every decision already
   * answered is logged; a stream cut off gets no more decisions.
   */
  shutdownGraceMs?: number;
  metricsIntervalMs?: number;
  logger?: boolean | object;
  /** Log every returned decision to the store (default true; see docs/feedback.md). */
  decisionLog?: boolean;
  /**
   * Check the store at start, in the background (PRAGMA quick_check; not
   * ready until it passes, src/service/readiness.ts): 'quick' (default) or
   * 'off'.
   */
  storeCheck?: 'quick' | 'off';
  /** Told of each migration when the store of an earlier version is upgraded at start (see openStore). */
  onStoreMigration?: (m: StoreMigration) => void;
  /**
   * Retrain the compliance model by itself once this many inspected
   * declarations got their current result (new, or changed) after the
   * model's training (default 1,000; 0: only on request). See
   * RulesetSource.startAutoRetrain.
   */
  retrainAfter?: number;
  /** Prior strength of the tables a retrain from the store fits (TrainOptions.strength: a number, default 10, or 'auto'). */
  retrainStrength?: number | 'auto';
  /** Least z a weight of such a retrain must reach (TrainOptions.minZ, default 1.96). */
  retrainMinZ?: number;
  /** How often the feedback count is checked, ms (default 60,000). */
  retrainCheckMs?: number;
  /** Worker threads of a back-test job (default: half the cores, at least 1; scoring keeps the rest). */
  backtestThreads?: number;
  /** Finished back-test jobs kept, the most recently finished first (0, the default: every one until it is deleted; src/backtest/jobs.ts JobsOptions.keep). */
  backtestKeep?: number;
  /**
   * Aborted during the start (a signal that came meanwhile): the start
   * finishes what it began (a migration is not cut short) but does not
   * listen; the service it returns has `listening: false` and only closes.
   */
  signal?: AbortSignal;
}

export interface ServiceSettings {
  threads: number;
  maxQueue: number;
  bodyLimit: number;
  inlineMaxBytes: number;
  maxBatch: number;
  idleTimeoutMs: number;
  shutdownGraceMs: number;
  backtestThreads: number;
  backtestKeep: number;
  retrainAfter: number;
  storeCheck: 'quick' | 'off';
}

export interface RunningService {
  app: FastifyInstance;
  engine: Engine;
  metrics: Metrics;
  /** The tokens in use; `tokens.reload()` re-reads their file (SIGHUP, POST /v1/tokens/reload). */
  tokens: ReloadableTokens;
  /** The decision log (undefined when off). */
  decisionLog?: DecisionLog;
  /** Tokens generated on this (first) start. */
  generatedTokens?: TokenEntry[];
  /** Files created in the data directory on this start. */
  seeded: string[];
  /** False when the start was stopped before it listened (ServiceConfig.signal): no port was opened. */
  listening: boolean;
  /** The settings in effect, defaults resolved (what serve's banner prints). */
  settings: ServiceSettings;
  url: string;
  /** Re-reads the ruleset files and swaps them in. */
  reload(): Promise<string>;
  /** Graceful: stop accepting, finish in-flight work, close the pool. Idempotent. */
  close(): Promise<void>;
}

/** A host as it stands in a URL or before ":port" (an IPv6 address in brackets). */
const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/**
 * Why the listener could not open, as a named error: the port taken by
 * another process, a port below 1024 without the right, a host that is not
 * an address of this machine or does not resolve. Anything else as it came.
 */
export function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const at = `${urlHost(host)}:${port}`;
  switch (code) {
    case 'EADDRINUSE':
      return errors.SEL_ERR_CONFIG_INVALID(`cannot listen on ${at}: another process is using that address (a service already running?); stop it or choose another --port`, { field: 'port', expected: 'a free port', got: port });
    case 'EACCES':
      return errors.SEL_ERR_CONFIG_INVALID(`cannot listen on ${at}: permission denied (ports below 1024 need privileges); choose a port from 1024 up or put a proxy in front`, { field: 'port', expected: 'a port this user may open', got: port });
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return errors.SEL_ERR_CONFIG_INVALID(`cannot listen on ${at}: ${code === 'EADDRNOTAVAIL' ? 'not an address of this machine' : 'the host name does not resolve'}`, { field: 'host', expected: 'an address of this machine (127.0.0.1, 0.0.0.0, ::, or one of its interfaces)', got: host });
    default:
      return e;
  }
}

/**
 * Binds host:port once and lets it go: a port in use, a port without the
 * right or a host not of this machine is refused (listenError) before the
 * data directory is made or seeded. The listen itself may still lose a race
 * for the port, and then says the same. With port 0 only the host is tried.
 */
export async function probeListen(host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  }).catch((e: unknown) => { throw listenError(e, host, port); });
}

/** The lock of a data directory's service (src/store/process-lock.ts): one service per data directory. */
export const SERVE_LOCK = '.serve.lock';

export async function startService(config: ServiceConfig): Promise<RunningService> {
  // the configured tokens and the address first: a bad configuration is refused before the data directory is created or seeded
  const tokenOptions = { dataDir: config.dataDir, file: config.tokensFile, env: config.tokensEnv };
  const configured = loadTokens({ ...tokenOptions, generate: false });
  await probeListen(config.host, config.port);
  // One service per data directory: a second one would score with its own copy of the ruleset, blind to
  // the first one's imports and swaps. The command-line tools may still work beside it (as documented).
  // Taken once the directory exists (prepareDataDir checks the files named on the command line first),
  // before anything in it is seeded or opened.
  let lock: ProcessLock | undefined;
  const takeLock = () => {
    lock = ProcessLock.take(join(config.dataDir, SERVE_LOCK), `selectivity serve on ${config.host}:${config.port}`, (holder) => errors.SEL_ERR_DATA_DIR_BUSY(`another service${holder ? ` (${holder})` : ''} uses the data directory ${config.dataDir}`, { field: 'dataDir', expected: 'a data directory no other service uses (stop that one, or give this one its own --data-dir)', got: config.dataDir }));
  };
  try {
    const files = await prepareDataDir(config.dataDir, { profilesFile: config.profiles, peersPath: config.peers }, { onMigration: config.onStoreMigration, onDirectory: takeLock });
    const service = await startLocked(config, configured, tokenOptions, files);
    const held = lock!;
    const close = service.close;
    service.close = () => close().finally(() => held.release());
    return service;
  } catch (e) {
    lock?.release();
    throw e;
  }
}

/** Back-test jobs waiting and running (a job stays queued while another runs). */
function backtestGauges(jobs: BacktestJobs): Gauge[] {
  let queued = 0, running = 0;
  for (const j of jobs.list()) {
    if (j.status === 'queued') queued++;
    else if (j.status === 'running') running++;
  }
  return [
    { name: 'selectivity_backtests', help: 'Back-test jobs queued and running.', labels: { status: 'queued' }, value: queued },
    { name: 'selectivity_backtests', help: '', labels: { status: 'running' }, value: running },
  ];
}

/** Logs the finished back-test jobs that --backtest-keep removed. */
function logRemovedJobs(app: FastifyInstance, ids: string[], keep: number): void {
  app.log.info({ backtests: ids }, `${ids.length} finished back-test${ids.length === 1 ? '' : 's'} removed (--backtest-keep ${keep})`);
}

/** Logs the end of the store's check at start. */
function reportCheck(app: FastifyInstance, r: StoreCheckResult): void {
  if (r.ok) app.log.info({ ms: r.ms }, 'store check passed (quick_check)');
  else if (!r.ran) app.log.error({ ms: r.ms, problems: r.problems }, 'store check could not run: /readyz answers 503 until a restart whose check runs (or one with --store-check off)');
  else app.log.error({ ms: r.ms, problems: r.problems }, 'store check FAILED: the store is damaged; /readyz answers 503 until a restart on a sound store (docs/service.md, "Backup, restore and upgrades")');
}

async function startLocked(config: ServiceConfig, configured: ReturnType<typeof loadTokens> | undefined, tokenOptions: { dataDir: string; file?: string; env?: string }, files: Awaited<ReturnType<typeof prepareDataDir>>): Promise<RunningService> {
  const { store: loaded, generated } = configured ?? loadTokens(tokenOptions);
  const tokens = new ReloadableTokens(loaded, loaded.path === dataDirTokensPath(config.dataDir));
  const source = new RulesetSource({ storePath: files.storePath, peersPath: files.peersPath }, { retrain: { ...(config.retrainStrength !== undefined ? { strength: config.retrainStrength } : {}), ...(config.retrainMinZ !== undefined ? { minZ: config.retrainMinZ } : {}) } });
  let ruleset;
  try {
    ruleset = await source.load(files.peers);
  } catch (e) {
    source.close();
    throw e;
  }
  let decisionLog: DecisionLog | undefined;
  try {
    if (config.decisionLog !== false) decisionLog = new DecisionLog({ storePath: files.storePath });
  } catch (e) {
    source.close();
    throw e;
  }
  let storeCheck: StoreCheckState = { state: 'off' };
  let check: BackgroundCheck | undefined;
  let operated: ProcessGauges | undefined;
  let app: FastifyInstance | undefined;
  const backtestThreads = config.backtestThreads ?? Math.max(1, Math.floor(availableParallelism() / 2));
  const backtestKeep = config.backtestKeep ?? 0;
  // finished jobs past --backtest-keep are removed (at this start too): logged once the server, and its log, are there
  const removedAtStart: string[] = [];
  const onRemoved = (ids: string[]) => { if (app) logRemovedJobs(app, ids, backtestKeep); else removedAtStart.push(...ids); };
  const backtests = { jobs: new BacktestJobs(join(config.dataDir, 'backtests'), historyDir(config.dataDir), backtestThreads, { keep: backtestKeep, onRemoved }), historyDir: historyDir(config.dataDir) };
  const engine = createEngine({ ruleset, threads: config.threads, maxQueue: config.maxQueue, inlineMaxBytes: config.inlineMaxBytes ?? 16 * 1024, youngGenerationMb: config.youngGenerationMb });
  // every setting in effect, resolved once: what the service runs with is what the banner prints
  const settings: ServiceSettings = {
    threads: engine.options.threads, maxQueue: engine.options.maxQueue, inlineMaxBytes: engine.options.inlineMaxBytes,
    bodyLimit: config.bodyLimit ?? DEFAULT_BODY_LIMIT, maxBatch: config.maxBatch ?? DEFAULT_MAX_BATCH, idleTimeoutMs: config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    shutdownGraceMs: config.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS, backtestThreads, backtestKeep, retrainAfter: config.retrainAfter ?? DEFAULT_RETRAIN_AFTER, storeCheck: config.storeCheck ?? 'quick',
  };
  const metrics = await createMetrics({
    intervalMs: config.metricsIntervalMs,
    gauges: () => [
      { name: 'selectivity_queue_waiting', help: 'Batches waiting for a scoring worker.', value: engine.queueSize },
      { name: 'selectivity_workers', help: 'Scoring worker threads (0: scoring on the main thread).', value: engine.options.threads },
      { name: 'selectivity_ruleset_info', help: 'The active ruleset (value 1; the version is a label).', labels: { version: engine.rulesetVersion }, value: 1 },
      { name: 'selectivity_ruleset_profiles', help: 'Profiles in the active ruleset.', value: engine.meta().profiles.length },
      { name: 'selectivity_store_ready', help: 'The store takes the service\'s writes (1), or keeps /readyz at 503 (0: being checked at start, found damaged or not checkable, or a decision-log commit failed; docs/service.md).', value: storeNotReady(storeCheck, decisionLog) ? 0 : 1 },
      ...(decisionLog ? [{ name: 'selectivity_decision_log_backlog_bytes', help: 'Decision-log payload bytes waiting for their commit.', value: decisionLog.backlogBytes }] : []),
      { name: 'selectivity_ruleset_installed_timestamp_seconds', help: 'When a ruleset was last swapped in (a reload, a change, a retrain, a profile\'s window opening or closing), seconds since the epoch.', value: source.lastInstalledAt / 1000 },
      { name: 'selectivity_model_trained_timestamp_seconds', help: 'When the compliance model in use was trained, seconds since the epoch (NaN: no model).', value: (source.modelTrainedAt ?? Number.NaN) / 1000 },
      ...backtestGauges(backtests.jobs),
      ...(operated?.gauges() ?? []),
    ],
    counterHelp: { selectivity_decision_log_failed_commits: 'Decision-log commits that failed (their requests answered SEL_ERR_STORAGE).' },
  });
  if (decisionLog) {
    metrics.count('selectivity_decision_log_failed_commits_total', {}, 0); // at 0 from the start: an alert on its increase works at once
    decisionLog.onCommitFailure = () => metrics.count('selectivity_decision_log_failed_commits_total', {}, 1);
  }
  try {
    operated = processGauges({ dataDir: config.dataDir, storePath: files.storePath, intervalMs: metrics.intervalMs });
    // the store's check runs while the service warms up and, for a large store, while it answers; /readyz waits for it
    if (settings.storeCheck !== 'off') {
      storeCheck = { state: 'checking', since: Date.now() };
      check = checkStoreInBackground(files.storePath);
      void check.result.then((r) => {
        if (r === undefined) return; // stopped at shutdown: nothing to say of the store
        storeCheck = { state: 'done', ...r };
        if (app) reportCheck(app, r);
      });
    }
    app = await buildServer({ engine, source, tokens, metrics, bodyLimit: settings.bodyLimit, maxBatch: settings.maxBatch, idleTimeoutMs: settings.idleTimeoutMs, logger: config.logger, version: packageVersion(), decisionLog, backtests, storeCheck: () => storeCheck });
    if (removedAtStart.length > 0) logRemovedJobs(app, removedAtStart, backtestKeep);
    const ended = storeCheck as StoreCheckState; // set by the check's callback
    if (ended.state === 'done') reportCheck(app, ended); // it ended before the server was built
    // profiles activate and expire by their dates: swap the ruleset at each boundary
    source.startClock(() => source.swapCurrent());
    // the model follows the feedback: refitted in a worker, swapped in like any ruleset change
    source.startAutoRetrain({
      after: settings.retrainAfter, checkMs: config.retrainCheckMs,
      report: (e) => (e.ok ? app!.log.info({ rows: e.rows }, 'compliance model retrained from feedback and swapped in') : app!.log.warn({ err: e.error }, 'automatic retrain failed; the model in use stays')),
    });
    await warmUp(engine); // before the port opens: the first request should not pay for loading
    // a store that is checked in a moment (most are) is checked before the port opens: ready from the first probe
    if (check) await Promise.race([check.result, new Promise((r) => setTimeout(r, STORE_CHECK_WAIT_MS).unref())]);
    // stopped meanwhile: no port opened, not even for the moment of the stop
    if (!config.signal?.aborted) await app.listen({ host: config.host, port: config.port }).catch((e: unknown) => { throw listenError(e, config.host, config.port); });
    // back-tests the last stop or crash cut short run again, after the warm-up (they would compete with it for the cores)
    const resumed = backtests.jobs.resumable;
    if (resumed > 0 && !config.signal?.aborted) {
      backtests.jobs.resume((profiles) => source.composeWith(profiles));
      app.log.info({ backtests: resumed }, `${resumed} back-test${resumed === 1 ? '' : 's'} cut short by the last stop or crash queued again`);
    }
  } catch (e) {
    check?.stop();
    operated?.close();
    await app?.close();
    await backtests.jobs.close();
    await engine.close();
    await decisionLog?.close();
    metrics.close();
    source.close();
    throw e;
  }
  const listening = app.server.listening;
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const host = urlHost(config.host);
  let closing: Promise<void> | undefined;
  const service: RunningService = {
    app,
    engine,
    metrics,
    tokens,
    decisionLog,
    generatedTokens: generated,
    seeded: files.created,
    listening,
    settings,
    url: `http://${host}:${port}`,
    async reload() {
      return source.reload();
    },
    close() {
      closing ??= (async () => {
        // in-flight requests and streams get a grace period; then their connections are closed, so that a
        // stream whose client goes on sending, or a stalled upload, does not hold the shutdown for ever
        const cut = setTimeout(() => app!.server.closeAllConnections(), settings.shutdownGraceMs);
        cut.unref();
        // first the back-tests: a running one is stopped and written back as queued (it and the queued ones run
        // again at the next start) before the grace period, which a supervisor's SIGKILL may end: found running
        // at the next start, it would count as a crash under it. Its cores go to the requests in flight
        const jobsClosed = backtests.jobs.close();
        await app!.close().finally(() => clearTimeout(cut)); // stops accepting; waits for in-flight requests and streams
        check?.stop(); // a check still reading a large store is ended, not waited for
        await jobsClosed;
        await source.drain(); // a retrain in flight finishes (its model written) before the store closes
        await engine.close();
        await decisionLog?.close(); // every acknowledged decision is already committed; this stops the writer
        metrics.close();
        operated?.close();
        source.close();
      })();
      return closing;
    },
  };
  return service;
}

/** The declaration warmUp scores: valid for any ruleset, with a description so the text models load too. */
const WARM_UP_DECLARATION: Declaration = {
  id: 'warm-up', date: '2026-01-01', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN',
  customsValue: 1200, netMass: 900, description: 'frozen boneless meat of bovine animals',
};

/**
 * Loads, before the service takes requests, what its first requests would
 * otherwise load: the kernel, the ruleset and the text models on the main
 * thread (small requests are scored there) and in every scoring worker. One
 * built-in declaration is scored on each; nothing is logged or counted.
 * Without it the first request after a start took about 300 ms
 * (docs/benchmarks.md). Returns what was scored: the main thread's reply
 * and the number of worker batches.
 */
export async function warmUp(engine: Engine): Promise<{ reply: Awaited<ReturnType<Engine['scoreWire']>>; workerBatches: number }> {
  const body = Buffer.from(JSON.stringify({ declarations: [WARM_UP_DECLARATION] }));
  const reply = await engine.scoreWire({ kind: 'batch', format: 'json', accept: 'json', body, maxDeclarations: 1 });
  // one batch per worker at once: the pool gives each idle worker one
  const batches = await Promise.all(Array.from({ length: engine.options.threads }, () => engine.scoreBatch(toBatch([WARM_UP_DECLARATION]).batch)));
  return { reply, workerBatches: batches.filter((b) => b.size === 1).length };
}
