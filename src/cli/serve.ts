import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import v8 from 'node:v8';
import { constants as osConstants } from 'node:os';
import { errors } from '../errors.js';
import { startService, type RunningService, type ServiceConfig, type ServiceSettings } from '../service/service.js';
import { DEFAULT_BODY_LIMIT } from '../service/server.js';
import { intOption } from './options.js';
import { minZOption, strengthOption } from './train.js';

export const SERVE_HELP = `Usage: selectivity serve [options]

Runs the scoring service (HTTP). On a first start it creates the data
directory, seeds it with the example ruleset (profiles and peer tables built
from the bundled example declarations) and generates one bearer token per
role into <data-dir>/tokens.json (owner-only), printing how to use them.

Options (environment variable in brackets):
  --host <addr>          listen address (default 127.0.0.1) [SELECTIVITY_HOST]
  --port <n>             listen port, 0 for any (default 8080) [SELECTIVITY_PORT]
  --data-dir <dir>       data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --profiles <file>      import this profile set at start (it replaces the active set;
                         default: the profiles in <data-dir>/selectivity.db)
  --peers <file>         peer tables file (default <data-dir>/peers.json)
  --tokens <file>        tokens file (default <data-dir>/tokens.json)
                         [SELECTIVITY_TOKENS=port:<token>,analyst:<token>,admin:<token>]
  --threads <n>          scoring worker threads (default: all cores)
  --max-queue <n>        batches allowed to wait for a worker before 503 (default max(4, 4 × threads))
  --backtest-threads <n> worker threads of a back-test job (default half the cores, at least 1)
  --backtest-keep <n>    finished back-test jobs kept, the most recently finished first; older
                         ones are removed with their reports (default 0: every one, until deleted)
  --retrain-after <n>    refit the compliance model by itself once n inspected declarations got their
                         result (new or changed) after its training (default 1000; 0: only on
                         request, POST /v1/model/retrain)
  --retrain-strength <m|auto>  prior strength of the tables such a refit fits (default 10; auto:
                         the one that fits the feedback best, see docs/learning.md)
  --retrain-min-z <z>    least z a weight of such a refit must reach to stay (default 1.96;
                         0: keep every weight that is not negative, see docs/learning.md)
  --inline-max <size>    bodies up to this size are scored on the main thread, without
                         a hop to a worker (lower latency for single declarations;
                         default 16kb, 0 = always use the pool)
  --young-mb <n>         young generation of each scoring worker's heap, MiB (default 64;
                         0: V8's default; see docs/benchmarks.md)
  --heap-growing-percent <n>
                         how far the heap may grow past what is live before V8 collects
                         it fully, percent (default 200; 0: V8's own heuristic, which
                         under load runs a full collection of the main thread every
                         ~0.1 s; see docs/benchmarks.md)
  --body-limit <size>    largest request body, e.g. 64mb (default 64mb)
  --max-batch <n>        most declarations per /v1/score batch (default 100000)
  --metrics-interval <s> latency interval histograms reset every s seconds (default 60)
  --idle-timeout <s>     close a connection on which nothing moves for s seconds: a stalled
                         upload or stream, a reader that stopped reading, and also a request
                         that takes longer than s to answer (default 120; 0: never)
  --shutdown-grace <s>   on SIGTERM, how long in-flight requests and streams may go on before
                         their connections are closed (default 30)
  --decision-log on|off  log every returned decision to <data-dir>/selectivity.db, committed
                         before the response (default on; feedback joins to it, see
                         docs/feedback.md) [SELECTIVITY_DECISION_LOG]
  --store-check quick|off  check the store at start (PRAGMA quick_check, in the background,
                         about 1.5 s per GB): /readyz answers 503 until it passes, and for
                         good if the store is damaged (default quick) [SELECTIVITY_STORE_CHECK]
  --log-level <level>    fatal, error, warn, info, debug, trace or silent (default info: one line
                         per request and its answer; warn: warnings and errors only)
                         [SELECTIVITY_LOG_LEVEL]
  --quiet                no request log: --log-level warn (warnings and errors are still logged)

Signals: SIGHUP reloads the ruleset files and the tokens file; SIGTERM/SIGINT shut down gracefully.
`;

/** serve's log levels (pino's), from the fewest lines to the most: a level logs its own lines and those of the levels before it; silent logs nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function parseSize(raw: string, name: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$/i.exec(raw);
  if (!m) throw errors.SEL_ERR_OPTION_INVALID(`--${name} must be a size such as 512kb or 64mb`, { field: name, expected: 'a number with an optional unit b, kb, mb, gb', got: raw });
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const bytes = Math.floor(Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1));
  if (bytes < 1024 || bytes > 2 * 1024 ** 3) throw errors.SEL_ERR_OPTION_INVALID(`--${name} must be between 1kb and 2gb`, { field: name, expected: 'between 1kb and 2gb', got: raw });
  return bytes;
}

/** serve's default for --heap-growing-percent (docs/benchmarks.md, "The main thread's full collections"). */
export const DEFAULT_HEAP_GROWING_PERCENT = 200;

/**
 * Sets V8's heap growing factor for the whole process (every isolate, the
 * scoring workers' included) to 1 + percent/100; 0 leaves V8's heuristic. It
 * is read whenever V8 sets a heap's next limit, so setting it before the
 * service starts is enough. `set` is v8.setFlagsFromString (a parameter for tests).
 */
export function applyHeapGrowingPercent(percent: number, set: (flags: string) => void = v8.setFlagsFromString): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) throw errors.SEL_ERR_OPTION_INVALID('--heap-growing-percent must be an integer from 0 to 1000', { field: 'heap-growing-percent', expected: 'an integer from 0 to 1000', got: percent });
  if (percent > 0) set(`--heap-growing-percent=${percent}`);
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      profiles: { type: 'string' },
      peers: { type: 'string' },
      tokens: { type: 'string' },
      threads: { type: 'string' },
      'backtest-threads': { type: 'string' },
      'backtest-keep': { type: 'string' },
      'retrain-after': { type: 'string' },
      'retrain-strength': { type: 'string' },
      'retrain-min-z': { type: 'string' },
      'max-queue': { type: 'string' },
      'body-limit': { type: 'string' },
      'inline-max': { type: 'string' },
      'young-mb': { type: 'string' },
      'heap-growing-percent': { type: 'string' },
      'max-batch': { type: 'string' },
      'metrics-interval': { type: 'string' },
      'idle-timeout': { type: 'string' },
      'shutdown-grace': { type: 'string' },
      'decision-log': { type: 'string' },
      'store-check': { type: 'string' },
      quiet: { type: 'boolean' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(SERVE_HELP); return 0; }
  void positionals;
  const env = process.env;
  /**
   * A setting from its option, else its environment variable, else its
   * default; `name` is what an error calls it: the option as given
   * (`--port`, field `port`), or the variable (`SELECTIVITY_PORT`), so that a
   * bad value set in a unit file or a container's environment is named where it was set.
   */
  const setting = (flag: keyof typeof values & string, variable: string, fallback: string) => {
    const given = values[flag] as string | undefined;
    if (given !== undefined) return { value: given, name: `--${flag}`, field: flag };
    const set = env[variable];
    return set !== undefined ? { value: set, name: variable, field: variable } : { value: fallback, name: `--${flag}`, field: flag };
  };
  /** A setting that takes one of `allowed` (see setting()); another value is refused, named where it was set. */
  const choice = <T extends string>(flag: keyof typeof values & string, variable: string, fallback: T, allowed: readonly T[]): T => {
    const s = setting(flag, variable, fallback);
    if (!(allowed as readonly string[]).includes(s.value)) {
      const said = allowed.length === 2 ? `${allowed[0]} or ${allowed[1]}` : `one of ${allowed.join(', ')}`;
      throw errors.SEL_ERR_OPTION_INVALID(`${s.name} must be ${said}`, { field: s.field, expected: allowed.join(' | '), got: s.value });
    }
    return s.value as T;
  };
  const decisionLog = choice('decision-log', 'SELECTIVITY_DECISION_LOG', 'on', ['on', 'off']);
  const storeCheck = choice('store-check', 'SELECTIVITY_STORE_CHECK', 'quick', ['quick', 'off']);
  if (values.quiet && values['log-level'] !== undefined) throw errors.SEL_ERR_OPTION_INVALID('--quiet and --log-level say the same thing: give one', { field: 'log-level', expected: '--quiet (warn) or --log-level <level>', got: values['log-level'] });
  const logLevel = values.quiet ? 'warn' : choice('log-level', 'SELECTIVITY_LOG_LEVEL', 'info', LOG_LEVELS);
  const dataDir = resolve(setting('data-dir', 'SELECTIVITY_DATA_DIR', 'data').value);
  // an empty host (SELECTIVITY_HOST= , --host "$UNSET") would listen on every interface: refused, not taken for the default
  const hostSetting = setting('host', 'SELECTIVITY_HOST', '127.0.0.1');
  const host = hostSetting.value;
  if (host === '' || /\s/.test(host)) throw errors.SEL_ERR_OPTION_INVALID(`${hostSetting.name} must be an address or a host name, got ${JSON.stringify(host)}`, { field: hostSetting.field, expected: 'an address of this machine (127.0.0.1, 0.0.0.0, ::, …) or its host name', got: host });
  const portSetting = setting('port', 'SELECTIVITY_PORT', '8080');
  const port = intOption(portSetting.value, portSetting.field, 0, 65535, portSetting.name);
  // before the service builds its heap. Process-wide, so the command sets it, not startService: a process that embeds the service keeps its own
  applyHeapGrowingPercent(values['heap-growing-percent'] !== undefined ? intOption(values['heap-growing-percent'], 'heap-growing-percent', 0, 1000) : DEFAULT_HEAP_GROWING_PERCENT);
  const bodyLimit = values['body-limit'] !== undefined ? parseSize(values['body-limit'], 'body-limit') : undefined;
  const inlineMax = values['inline-max'] !== undefined ? (values['inline-max'].trim() === '0' ? 0 : parseSize(values['inline-max'], 'inline-max')) : undefined;
  // a threshold above the largest body the service takes says nothing more than the largest body: a slip, refused
  if (inlineMax !== undefined && inlineMax > (bodyLimit ?? DEFAULT_BODY_LIMIT)) throw errors.SEL_ERR_OPTION_INVALID(`--inline-max (${values['inline-max']}) is above --body-limit (${values['body-limit'] ?? '64mb, the default'}): no body that large is accepted`, { field: 'inline-max', expected: `at most --body-limit (${bodyLimit ?? DEFAULT_BODY_LIMIT} bytes); --threads 0 scores every body on the main thread`, got: values['inline-max'] });
  const config: ServiceConfig = {
    host,
    port,
    dataDir,
    profiles: values.profiles,
    peers: values.peers,
    tokensFile: values.tokens,
    tokensEnv: env.SELECTIVITY_TOKENS,
    threads: values.threads !== undefined ? intOption(values.threads, 'threads', 0, 1024) : undefined,
    backtestThreads: values['backtest-threads'] !== undefined ? intOption(values['backtest-threads'], 'backtest-threads', 0, 1024) : undefined,
    backtestKeep: values['backtest-keep'] !== undefined ? intOption(values['backtest-keep'], 'backtest-keep', 0, 1_000_000) : undefined,
    retrainAfter: values['retrain-after'] !== undefined ? intOption(values['retrain-after'], 'retrain-after', 0, 1e9) : undefined,
    retrainStrength: values['retrain-strength'] !== undefined ? strengthOption(values['retrain-strength'], 'retrain-strength') : undefined,
    retrainMinZ: values['retrain-min-z'] !== undefined ? minZOption(values['retrain-min-z'], 'retrain-min-z') : undefined,
    maxQueue: values['max-queue'] !== undefined ? intOption(values['max-queue'], 'max-queue', 1) : undefined,
    bodyLimit,
    youngGenerationMb: values['young-mb'] !== undefined ? intOption(values['young-mb'], 'young-mb', 0, 4096) : undefined,
    inlineMaxBytes: inlineMax,
    maxBatch: values['max-batch'] !== undefined ? intOption(values['max-batch'], 'max-batch', 1, 10_000_000) : undefined,
    metricsIntervalMs: values['metrics-interval'] !== undefined ? intOption(values['metrics-interval'], 'metrics-interval', 1, 86_400) * 1000 : undefined,
    idleTimeoutMs: values['idle-timeout'] !== undefined ? intOption(values['idle-timeout'], 'idle-timeout', 0, 86_400) * 1000 : undefined,
    shutdownGraceMs: values['shutdown-grace'] !== undefined ? intOption(values['shutdown-grace'], 'shutdown-grace', 0, 86_400) * 1000 : undefined,
    logger: logLevel === 'silent' ? false : { level: logLevel },
    decisionLog: decisionLog === 'on',
    storeCheck,
    // an upgrade of a large decision log takes a while before the service listens: say so
    onStoreMigration: (m) => process.stderr.write(m.done
      ? `selectivity: store upgraded to schema ${m.to} in ${(m.ms / 1000).toFixed(1)} s\n`
      : `selectivity: upgrading the store ${m.path} from schema ${m.from} to ${m.to}…\n`),
  };
  // the signals are the service's from here, for good: one during a long start (a store migration, a
  // large store's first checks) lets the start finish and then stops cleanly, where the default action
  // killed the process and a migration rolled back, to start over at the next start (and be killed
  // again). One set of listeners, installed once: between removing one and adding another, a signal
  // would meet the default action (a SIGTERM sent as soon as "listening on" was read killed the process)
  let early: string | undefined;
  const stopped = new AbortController(); // tells the start not to listen
  let running: ((signal: NodeJS.Signals) => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (running) { running(signal); return; }
    if (signal === 'SIGHUP') { process.stderr.write('selectivity: SIGHUP during start: ignored (the start reads the files and tokens anyway)\n'); return; }
    if (early) { process.stderr.write(`selectivity: ${signal} again during start, exiting now\n`); process.exit(signalExitCode(signal)); }
    early = signal;
    stopped.abort();
    process.stderr.write(`selectivity: ${signal} during start: stopping once the start has finished…\n`);
  };
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, onSignal);
  let service: RunningService;
  try {
    service = await startService({ ...config, signal: stopped.signal });
  } catch (e) {
    for (const sig of signals) process.off(sig, onSignal);
    throw e;
  }
  const out = process.stdout;
  keepRunningWithoutReader(out);
  if (early) {
    await service.close();
    for (const sig of signals) process.off(sig, onSignal);
    if (service.generatedTokens) out.write(`selectivity: first start: one bearer token per role was generated into ${service.tokens.path} (owner-only)\n`);
    out.write(`selectivity: ${early} during start: stopped\n`);
    return 0;
  }
  const meta = service.engine.meta();
  out.write(`selectivity: listening on ${service.url} (${service.engine.options.threads} scoring workers)\n`);
  out.write(`  data directory ${dataDir}${service.seeded.length ? ` (seeded with the example ruleset: ${service.seeded.join(', ')})` : ''}\n`);
  out.write(`  decision log ${service.decisionLog ? 'on' : 'off'}\n`);
  out.write(`  ${settingsLine(service.settings, logLevel)}\n`);
  out.write(`  ruleset ${meta.version}: ${meta.profiles.length} profiles, peer levels ${meta.levels.map((l) => l.name).join(' → ')}\n`);
  out.write(`  tokens: ${service.tokens.source}${service.tokens.path ? ` (${service.tokens.path})` : ''}: ${Object.entries(service.tokens.counts).map(([r, n]) => `${n} ${r}`).join(', ')}\n`);
  if (service.generatedTokens) {
    out.write('\nFirst start: one bearer token per role was generated (shown once; kept owner-only in the tokens file):\n');
    for (const t of service.generatedTokens) out.write(`  ${t.role.padEnd(8)} ${t.token}\n`);
    const port = service.generatedTokens.find((t) => t.role === 'port')!.token;
    out.write(`\nTry it:\n  curl -s -H 'authorization: Bearer ${port}' -H 'content-type: application/json' \\\n    -d '{"declarations":[{"id":"D1","date":"2026-11-23","office":"OF01","importer":"IM00001","hs":"020890","origin":"CN","customsValue":1200,"netMass":900}]}' \\\n    ${service.url}/v1/score\n\n`);
  }
  out.write(`  API description: ${service.url}/v1/openapi.json · health ${service.url}/healthz · docs/service.md\n`);

  return await new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) { out.write(`selectivity: ${signal} again, exiting now\n`); process.exit(signalExitCode(signal)); }
      stopping = true;
      out.write(`selectivity: ${signal}: finishing in-flight requests…\n`);
      // the listeners go with the service (an embedding process may start another)
      const done = (code: number) => { for (const sig of signals) process.off(sig, onSignal); resolveExit(code); };
      service.close().then(() => { out.write('selectivity: stopped\n'); done(0); }, (e) => { process.stderr.write(`selectivity: shutdown failed: ${(e as Error).message}\n`); done(1); });
    };
    const reload = () => {
      // the tokens file too, when the tokens come from one: a revoked token stops working at once
      if (service.tokens.source !== 'env') {
        try {
          const c = service.tokens.reload();
          out.write(`selectivity: SIGHUP: tokens reloaded from ${service.tokens.path} (${Object.entries(c).map(([r, n]) => `${r} ${n}`).join(', ')})\n`);
        } catch (e) {
          process.stderr.write(`selectivity: SIGHUP: tokens not reloaded, the tokens in use stay: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}\n`);
        }
      }
      service.reload().then(
        (v) => out.write(`selectivity: SIGHUP: ruleset ${v} loaded\n`),
        (e) => process.stderr.write(`selectivity: SIGHUP: reload failed, the active ruleset stays: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}\n`),
      );
    };
    running = (signal) => (signal === 'SIGHUP' ? reload() : stop(signal));
  });
}

/**
 * A service outlives whatever reads its output: when that reader goes (a
 * closed pipe, EPIPE), the service keeps serving and still stops gracefully
 * on SIGTERM, instead of dying of an unhandled 'error' event at its next
 * message (the one that says it is finishing in-flight requests). What is
 * written after that is dropped. Other write errors are told on stderr.
 */
export function keepRunningWithoutReader(stream: NodeJS.WritableStream): void {
  let told = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || told) return;
    told = true;
    process.stderr.write(`selectivity: cannot write to standard output (${e.code ?? e.message}); serving on without it\n`);
  });
}

/** The shell's code for a process ended by `signal` (128 + its number): 143 for SIGTERM, 130 for SIGINT, as supervisors read them. */
export function signalExitCode(signal: string): number {
  const n = (osConstants.signals as Record<string, number>)[signal];
  return n === undefined ? 1 : 128 + n;
}

/** 16384 → "16 KiB", 67108864 → "64 MiB", 1572864 → "1.5 MiB"; a size no unit gives exactly in at most two decimals, in bytes (the banner is checked against a deployment). */
function bytesText(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (n >= size && Number.isInteger((n / size) * 100)) return `${n / size} ${unit}`;
  return `${n.toLocaleString('en-US')} bytes`;
}

/** The banner's line of the settings in effect, defaults resolved: what an operator checks a deployment against. */
export function settingsLine(s: ServiceSettings, logLevel: string): string {
  const n = (x: number) => x.toLocaleString('en-US');
  // without workers every body is scored on the main thread: no queue, no inline threshold
  const scoring = s.threads === 0 ? 'no pool (every body scored on the main thread)' : `max queue ${n(s.maxQueue)}, ${s.inlineMaxBytes === 0 ? 'inline scoring off (every body to the pool)' : `scored inline up to ${bytesText(s.inlineMaxBytes)}`}`;
  return `settings: ${scoring}, body limit ${bytesText(s.bodyLimit)}, max batch ${n(s.maxBatch)}, `
    + `idle timeout ${s.idleTimeoutMs === 0 ? 'none' : `${s.idleTimeoutMs / 1000} s`}, shutdown grace ${s.shutdownGraceMs / 1000} s, store check ${s.storeCheck}, log level ${logLevel}, `
    + `back-test threads ${s.backtestThreads}, back-tests kept ${s.backtestKeep === 0 ? 'all' : n(s.backtestKeep)}, retrain after ${s.retrainAfter === 0 ? 'never by itself' : `${n(s.retrainAfter)} results`}`;
}
