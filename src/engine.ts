/**
 * The library entry point: createEngine(options) → scoreBatch / setRuleset /
 * close. Scoring runs in a Piscina pool of workers, each with its own WASM
 * kernel (threads: 0 scores on the calling thread instead, for tools and
 * tests). Options are validated once, here, and frozen.
 */
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';
import { Piscina } from 'piscina';
import { errors, fromWorker, isSelectivityError, type WorkerFailure } from './errors.js';
import { Kernel } from './kernel/kernel.js';
import { resultViews, type ScoreResult } from './kernel/layout.js';
import { packBatch, validateBatch, type ColumnarBatch } from './model/columnar.js';
import { compileRuleset, type CompiledMeta, type CompiledRuleset } from './ruleset/compile.js';
import type { Ruleset } from './ruleset/ruleset.js';
import { workerExecArgv, workerPath } from './paths.js';
import type { AbandonedReply, ScoreReply, ScoreTask } from '../workers/score-worker.js';
import { scoreWire, type WireReply, type WireRequest } from './service/wire.js';

export interface EngineOptions {
  /** The ruleset to score with (see createRuleset). */
  ruleset: Ruleset;
  /** Worker threads; 0 scores on the calling thread. Default: available parallelism. */
  threads?: number;
  /** Batches allowed to wait when every worker is busy; beyond it scoreBatch rejects. Default: max(4, 4 × threads). */
  maxQueue?: number;
  /**
   * scoreWire requests whose body is at most this many bytes are scored on
   * the calling thread (no hop to a worker: lower latency for single
   * declarations, at a few tens of microseconds of the caller's time each).
   * Default 0: never.
   */
  inlineMaxBytes?: number;
  /**
   * Young-generation size of each worker's heap, in MiB (Node's
   * resourceLimits.maxYoungGenerationSizeMb). A scoring worker makes a few
   * hundred bytes of short-lived objects per declaration; with V8's default
   * the scavenges they cause (and their helper threads) cost about a quarter
   * of the service's CPU. Default 64; 0 leaves V8's default.
   */
  youngGenerationMb?: number;
  /**
   * How long close() waits for the batches already sent (running or queued)
   * before it ends the workers; the batches not scored by then reject with
   * SEL_ERR_ENGINE_CLOSED. Default 30,000 ms.
   */
  closeTimeoutMs?: number;
}

/** Default young generation of a scoring worker (EngineOptions.youngGenerationMb): see docs/benchmarks.md for the measurement. */
export const WORKER_YOUNG_GENERATION_MB = 64;

export interface Engine {
  readonly options: Readonly<Required<Omit<EngineOptions, 'ruleset'>>>;
  /** Version of the ruleset new batches are scored with. */
  readonly rulesetVersion: string;
  /** Metadata of a ruleset version still held (the current one by default). */
  meta(version?: string): CompiledMeta;
  /** Scores a batch. With threads > 0 the batch's buffer is transferred (consumed). */
  scoreBatch(batch: ColumnarBatch): Promise<ScoreResult>;
  /**
   * Scores an encoded request (the HTTP service's path: decode, validate,
   * score and encode happen in the worker). The request body is transferred
   * when it owns its whole buffer. Never rejects for bad input: the reply says
   * ok: false with a named error instead.
   *
   * `signal`: abort it when the reply is no longer wanted (the HTTP client
   * went away). A request still waiting for a worker is then skipped when
   * its turn comes, and the promise rejects with SEL_ERR_ABANDONED; one
   * already being scored finishes (a worker is never interrupted).
   */
  scoreWire(request: WireRequest, options?: { signal?: AbortSignal }): Promise<WireReply>;
  /** Whether scoreWire scores a body of this many bytes on the calling thread (threads 0, or at most inlineMaxBytes). */
  scoresInline(bodyBytes: number): boolean;
  /** Tasks waiting for a worker (0 with threads: 0). */
  readonly queueSize: number;
  /** Compiles and swaps in a ruleset; batches already sent finish on the version they were sent with. */
  setRuleset(ruleset: Ruleset): string;
  /** Swaps in a ruleset already compiled (compileRuleset), as setRuleset does after compiling. */
  installCompiled(compiled: CompiledRuleset): string;
  /**
   * Stops taking batches (scoreBatch and scoreWire then reject with
   * SEL_ERR_ENGINE_CLOSED) and resolves once the workers have ended: the
   * batches already sent are scored first, for up to closeTimeoutMs, and
   * those still unscored then reject with SEL_ERR_ENGINE_CLOSED. Every call
   * returns the same promise.
   */
  close(): Promise<void>;
}

const KEEP_VERSIONS = 8;

const abandoned = () => errors.SEL_ERR_ABANDONED('the request was abandoned before scoring began', { field: 'signal', expected: 'a signal not aborted while the request waited for a worker' });

function validateOptions(options: EngineOptions): Required<Omit<EngineOptions, 'ruleset'>> {
  if (options === null || typeof options !== 'object') throw errors.SEL_ERR_OPTION_INVALID('options must be an object', { field: 'options', expected: 'an object', got: options });
  if (!options.ruleset || typeof options.ruleset !== 'object') throw errors.SEL_ERR_OPTION_INVALID('options.ruleset is required', { field: 'ruleset', expected: 'a ruleset from createRuleset()', got: options.ruleset });
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw errors.SEL_ERR_OPTION_INVALID('options.threads must be an integer in [0, 1024]', { field: 'threads', expected: 'an integer in [0, 1024]', got: options.threads });
  const maxQueue = options.maxQueue ?? Math.max(4, 4 * threads);
  if (!Number.isInteger(maxQueue) || maxQueue < 1) throw errors.SEL_ERR_OPTION_INVALID('options.maxQueue must be a positive integer', { field: 'maxQueue', expected: 'a positive integer', got: options.maxQueue });
  const inlineMaxBytes = options.inlineMaxBytes ?? 0;
  if (!Number.isInteger(inlineMaxBytes) || inlineMaxBytes < 0) throw errors.SEL_ERR_OPTION_INVALID('options.inlineMaxBytes must be a non-negative integer', { field: 'inlineMaxBytes', expected: 'an integer >= 0', got: options.inlineMaxBytes });
  const youngGenerationMb = options.youngGenerationMb ?? WORKER_YOUNG_GENERATION_MB;
  if (!Number.isInteger(youngGenerationMb) || youngGenerationMb < 0 || youngGenerationMb > 4096) throw errors.SEL_ERR_OPTION_INVALID('options.youngGenerationMb must be an integer in [0, 4096]', { field: 'youngGenerationMb', expected: 'an integer in [0, 4096] (MiB; 0: V8\'s default)', got: options.youngGenerationMb });
  const closeTimeoutMs = options.closeTimeoutMs ?? 30_000;
  if (!Number.isInteger(closeTimeoutMs) || closeTimeoutMs < 0) throw errors.SEL_ERR_OPTION_INVALID('options.closeTimeoutMs must be a non-negative integer', { field: 'closeTimeoutMs', expected: 'an integer >= 0 (ms)', got: options.closeTimeoutMs });
  return Object.freeze({ threads, maxQueue, inlineMaxBytes, youngGenerationMb, closeTimeoutMs });
}

export function createEngine(options: EngineOptions): Engine {
  const opts = validateOptions(options);
  const metas = new Map<string, CompiledMeta>();
  let current: CompiledRuleset;
  let closed = false;
  /** The kernel on the calling thread: all scoring with threads 0, small scoreWire requests otherwise. */
  let kernel: Kernel | undefined;
  let pool: Piscina | undefined;

  const install = (compiled: CompiledRuleset): string => {
    current = compiled;
    metas.delete(current.version);
    metas.set(current.version, current.meta);
    while (metas.size > KEEP_VERSIONS) metas.delete(metas.keys().next().value as string);
    if (kernel) kernel.loadRuleset(current);
    return current.version;
  };

  if (opts.threads === 0) {
    kernel = new Kernel();
  } else {
    const file = workerPath();
    if (!existsSync(file)) throw errors.SEL_ERR_KERNEL_LOAD(`worker entry ${file} not found; run \`npm run build\``, { field: 'worker', expected: 'a built worker', got: file });
    pool = new Piscina({
      filename: pathToFileURL(file).href, execArgv: workerExecArgv(), minThreads: opts.threads, maxThreads: opts.threads, maxQueue: opts.maxQueue, idleTimeout: 60_000,
      ...(opts.youngGenerationMb > 0 ? { resourceLimits: { maxYoungGenerationSizeMb: opts.youngGenerationMb } } : {}),
    });
  }
  install(compileRuleset(options.ruleset));

  const local = (): Kernel => {
    kernel ??= new Kernel();
    if (kernel.rulesetVersion !== current.version) kernel.loadRuleset(current);
    return kernel;
  };

  let closing: Promise<void> | undefined;
  /** The pool's tasks not settled yet (queued or running): close() waits for them. */
  const inflight = new Set<Promise<unknown>>();
  const run = <T>(task: ScoreTask, transferList: ArrayBuffer[]): Promise<T> => {
    const p = pool!.run(task, { transferList }) as Promise<T>;
    inflight.add(p);
    const settle = () => { inflight.delete(p); };
    p.then(settle, settle);
    return p.catch(whenClosing);
  };
  /** A task the pool dropped because close() ended the workers (Piscina's "Terminating worker thread", an AbortError): SEL_ERR_ENGINE_CLOSED; any other failure as it is. */
  const whenClosing = (e: unknown): never => {
    const dropped = e instanceof Error && (e.name === 'AbortError' || /Terminating worker thread|pool is closed/.test(e.message));
    if (closed && dropped) throw errors.SEL_ERR_ENGINE_CLOSED(`the engine closed before the batch was scored (${e.message})`, { field: 'engine' });
    throw e;
  };

  const scoresInline = (bodyBytes: number): boolean => opts.threads === 0 || bodyBytes <= opts.inlineMaxBytes;

  const checkQueue = () => {
    if (pool && pool.queueSize >= opts.maxQueue) {
      throw errors.SEL_ERR_OVERLOADED(`all ${opts.threads} workers are busy and ${pool.queueSize} batches are waiting`, { field: 'queue', expected: `fewer than ${opts.maxQueue} waiting batches`, got: pool.queueSize, retryAfterSeconds: 1 });
    }
  };

  return {
    options: opts,
    get rulesetVersion() { return current.version; },
    meta(version = current.version) {
      const m = metas.get(version);
      if (!m) throw errors.SEL_ERR_RULESET_INVALID(`ruleset version ${version} is no longer held`, { field: 'version', expected: `one of ${[...metas.keys()].join(', ')}`, got: version });
      return m;
    },
    get queueSize() { return pool ? pool.queueSize : 0; },
    async scoreBatch(batch) {
      if (closed) throw errors.SEL_ERR_ENGINE_CLOSED('engine is closed', { field: 'engine' });
      validateBatch(batch);
      if (opts.threads === 0) return local().score(batch);
      checkQueue();
      const task: ScoreTask = { rulesetVersion: current.version, ruleset: current.buffer, batch: packBatch(batch) };
      const reply = fromWorker(await run<ScoreReply | WorkerFailure>(task, [batch.buffer]));
      return resultViews(reply.buffer, reply.size, reply.rulesetVersion, reply.kernelNs, reply.text, reply.history);
    },
    async scoreWire(request, { signal } = {}) {
      if (closed) throw errors.SEL_ERR_ENGINE_CLOSED('engine is closed', { field: 'engine' });
      if (signal?.aborted) throw abandoned();
      if (scoresInline(request.body.byteLength)) return scoreWire(local(), request);
      checkQueue();
      const body = request.body;
      // Transfer the body only when it owns its buffer (never a slice of Node's shared Buffer pool).
      const owns = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.byteLength >= 4096 && !(body.buffer instanceof SharedArrayBuffer);
      const wire = owns ? request : { ...request, body: new Uint8Array(body) }; // a copy with its own buffer
      const task: ScoreTask = { rulesetVersion: current.version, ruleset: current.buffer, wire };
      // the worker reads the flag when the task's turn comes (Piscina's own abort would terminate a worker that has begun)
      let onAbort: (() => void) | undefined;
      if (signal) {
        const flag = new Int32Array(new SharedArrayBuffer(4));
        task.abandoned = flag.buffer as SharedArrayBuffer;
        onAbort = () => Atomics.store(flag, 0, 1);
        signal.addEventListener('abort', onAbort, { once: true });
      }
      try {
        const reply = fromWorker(await run<WireReply | AbandonedReply | WorkerFailure>(task, [wire.body.buffer as ArrayBuffer]));
        if ('abandoned' in reply) throw abandoned();
        return reply;
      } finally {
        if (onAbort) signal!.removeEventListener('abort', onAbort);
      }
    },
    scoresInline,
    setRuleset(ruleset) {
      if (closed) throw errors.SEL_ERR_ENGINE_CLOSED('engine is closed', { field: 'engine' });
      return install(compileRuleset(ruleset));
    },
    installCompiled(compiled) {
      if (closed) throw errors.SEL_ERR_ENGINE_CLOSED('engine is closed', { field: 'engine' });
      return install(compiled);
    },
    close() {
      closed = true;
      // every caller waits for the same close (a second one used to return before the pool had closed)
      closing ??= (async () => {
        if (!pool) return;
        // the batches in hand (queued or running) are scored first, for closeTimeoutMs at most; then the
        // workers end and the rest reject (SEL_ERR_ENGINE_CLOSED: whenClosing). Counted here: Piscina's own
        // close counted a worker idle between two tasks as done and ended a pool of two with a task running.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...inflight]),
          new Promise<void>((resolve) => { timer = setTimeout(resolve, opts.closeTimeoutMs); }),
        ]);
        clearTimeout(timer);
        await pool.destroy();
      })();
      return closing;
    },
  };
}
