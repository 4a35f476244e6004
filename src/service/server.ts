/**
 * The scoring service: Fastify routes over the engine's worker pool.
 *
 *   GET  /healthz, /readyz                     public
 *   POST /v1/score          JSON | MessagePack  port, analyst, admin
 *   POST /v1/score/stream   NDJSON | MessagePack sequence, streamed both ways
 *   GET  /v1/ruleset                            analyst, admin
 *   POST /v1/ruleset/reload                     admin
 *   POST /v1/tokens/reload                      admin (re-read the tokens file: revoke or add without a restart)
 *   GET  /v1/model, POST /v1/model/retrain      analyst, admin (learn from the feedback in the store)
 *   PUT  /v1/ruleset/profiles                   analyst, admin (durable before 200)
 *   GET|PUT /v1/peers, POST /v1/studies, POST /v1/evaluations   analyst, admin (analysis.ts)
 *   /v1/profiles…  list, show, versions, import, export, activate, retire   analyst, admin (profile-routes.ts)
 *   /v1/watchlists…  the same for keyword watch lists                     analyst, admin (watchlist-routes.ts)
 *   POST|GET /v1/feedback, GET /v1/decisions/:id   examination results and the decision log (feedback-routes.ts)
 *   GET  /metrics (Prometheus), /v1/metrics     admin, analyst
 *   GET  /v1/openapi.json                       any token
 *
 * Scoring answers carry `Server-Timing: app;dur=…, kernel;dur=…` (ms).
 * The main thread moves bytes: decoding, validation, scoring and encoding
 * run in the pool (src/service/wire.ts). Every error is a named code.
 * With a decision log, every decision is committed to it before the
 * response (or the stream chunk) that carries it is sent.
 */
import Database from 'better-sqlite3';
import { Readable } from 'node:stream';
import { IncomingMessage, STATUS_CODES } from 'node:http';
import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify';
import swagger from '@fastify/swagger';
import { errors, SelectivityError, isSelectivityError } from '../errors.js';
import type { Engine } from '../engine.js';
import { FIELDS } from '../model/schema.js';
import { CHANNELS } from '../model/channels.js';
import { emptyCounts, REASON_CODES } from '../decisions.js';
import { encodeMsgpack } from './fast-msgpack.js';
import { ReloadableTokens, ROLES, ROUTE_ROLES, type Access, type Role, type TokenStore } from './auth.js';
import type { Metrics } from './metrics.js';
import { DECISION_LOG_SERIES, KERNEL_SERIES, PROMETHEUS_CONTENT_TYPE } from './metrics.js';
import type { RulesetSource } from './state.js';
import { CSV_TYPES as ANALYSIS_CSV_TYPES, NDJSON_TYPES as ANALYSIS_NDJSON_TYPES, registerAnalysisRoutes } from './analysis.js';
import { registerBacktestRoutes } from './backtest-routes.js';
import type { BacktestJobs } from '../backtest/jobs.js';
import { registerProfileRoutes } from './profile-routes.js';
import { registerWatchListRoutes } from './watchlist-routes.js';
import { registerFeedbackRoutes } from './feedback-routes.js';
import { prepareBody } from './content-encoding.js';
import { acceptMsgpackBodies, asBuffer, chooseAnswer, mediaType, MSGPACK_TYPES, negotiate, requestFormat } from './msgpack-body.js';
import type { DecisionLog } from '../feedback/decision-log.js';
import { storeNotReady, type StoreCheckState } from './readiness.js';
import { msgpackValueEnd, type WireFormat, type WireReply } from './wire.js';

/** The routes that ignore query parameters (see the onRoute hook in buildServer); every other route declares what it takes. */
const QUERY_IGNORED = new Set(['/v1/score', '/v1/score/stream', '/healthz', '/readyz', '/metrics']);

/** The routes' paths (patterns with :params) and their methods: which methods a path that has no route for a request's method has (405). */
class RoutePaths {
  private readonly routes: { pattern: RegExp; methods: Set<string> }[] = [];
  private readonly byUrl = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  add(url: string, method: string | string[]): void {
    let r = this.byUrl.get(url);
    if (!r) {
      const source = url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
      r = { pattern: new RegExp(`^${source}$`), methods: new Set() };
      this.byUrl.set(url, r);
      this.routes.push(r);
    }
    for (const m of Array.isArray(method) ? method : [method]) r.methods.add(m);
  }

  /** The methods of the routes whose pattern matches `path`, sorted (none: no such path). */
  methods(path: string): string[] {
    const out = new Set<string>();
    for (const r of this.routes) if (r.pattern.test(path)) for (const m of r.methods) out.add(m);
    return [...out].sort();
  }
}
const NO_QUERY = { type: 'object', additionalProperties: false, properties: {} } as const;

/** ServiceOptions.idleTimeoutMs's default. */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/** Most declarations in one /v1/score batch when none is configured (--max-batch). */
export const DEFAULT_MAX_BATCH = 100_000;

/** The largest request body when none is configured (--body-limit). */
export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;

export interface ServiceOptions {
  engine: Engine;
  source: RulesetSource;
  tokens: TokenStore;
  metrics: Metrics;
  /** Largest request body for /v1/score and the JSON routes, bytes. Default 64 MiB. */
  bodyLimit?: number;
  /** Most declarations in one /v1/score batch. Default 100,000. */
  maxBatch?: number;
  /** Stream chunking: records per chunk sent to a worker. Default 2,048. */
  streamChunkRecords?: number;
  /** Longest NDJSON line / MessagePack record in a stream, bytes. Default 1 MiB. */
  maxRecordBytes?: number;
  logger?: boolean | object;
  version?: string;
  /**
   * A connection on which nothing moves for this long, ms, is closed: a
   * request body or stream that stalls, a reader that stopped reading, and
   * a request that takes longer to answer (nothing moves meanwhile).
   * Default 120,000; 0: never.
   */
  idleTimeoutMs?: number;
  /**
   * Where every returned decision is logged (src/feedback/decision-log.ts);
   * undefined: decisions are not logged. The service opens one unless
   * started with --decision-log off.
   */
  decisionLog?: DecisionLog;
  /** Where the store's check at start stands (readiness.ts; default: no check). */
  storeCheck?: () => StoreCheckState;
  /** Back-test jobs over the history store (routes /v1/backtests); absent: no such routes. */
  backtests?: { jobs: BacktestJobs; historyDir: string };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access | 'public' | 'any';
  }
  interface FastifyRequest {
    role?: Role;
    /** Who made the request, as changes record it ("analyst:Jane Doe", or "analyst token"). */
    actor?: string;
    scoreStats?: Pick<Extract<WireReply, { ok: true }>, 'scored' | 'invalid' | 'counts' | 'errorCodes' | 'kernelNs'>;
    /** The request's counters were recorded (by onResponse, or for a stream whose client hung up, when its response closed). */
    countersRecorded?: boolean;
    /** A stream that ended with a fatal record (counted with status "fatal"). */
    streamFatal?: boolean;
  }
}

const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/json-seq'];

/**
 * The Server-Timing header of a scoring answer (W3C Server Timing): `app`,
 * ms from the request's arrival to its answer being ready (body read,
 * scoring, the decision-log commit; not the write to the socket); `kernel`,
 * ms inside the WASM kernel. Lets a client tell network and queueing from
 * the service's own time.
 */
export function serverTiming(appMs: number, kernelNs: number): string {
  return `app;dur=${appMs.toFixed(3)}, kernel;dur=${(kernelNs / 1e6).toFixed(3)}`;
}


/**
 * A signal that aborts when the connection closes before the reply is
 * written: the client went away, and the request's scoring, if it has not
 * begun, is skipped (Engine.scoreWire).
 */
function whileConnected(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  res.once('close', () => { if (!res.writableFinished) ac.abort(); });
  return ac.signal;
}

function wireError(r: Extract<WireReply, { ok: false }>): SelectivityError {
  return new SelectivityError(r.error.code, r.error.message, r.error.statusCode, r.error.details);
}

/** What a request held where a schema refused it, for details.got: a short value itself, else its kind. */
function found(data: unknown): unknown {
  if (data === null || typeof data === 'number' || typeof data === 'boolean') return data;
  if (typeof data === 'string') return data.length > 80 ? `${data.slice(0, 79)}…` : data;
  return Array.isArray(data) ? 'an array' : typeof data === 'object' ? 'an object' : typeof data;
}

/**
 * The schema error to report. An `anyOf` (a number or an object, say) gives
 * one error per branch, then its own: the first was the first branch's
 * ("must be integer" for an object with a bad key). The deepest error, one
 * that is not about the kind of value where several are, is the one that
 * says what is wrong in the branch the request took.
 */
function closestError<T extends { instancePath?: string; keyword?: string }>(errs: T[]): T {
  if (errs.length === 1) return errs[0];
  const depth = (x: T) => (x.instancePath ?? '').split('/').length;
  const generic = (x: T) => (x.keyword === 'type' || x.keyword === 'anyOf' || x.keyword === 'oneOf' ? 1 : 0);
  return [...errs].sort((a, b) => depth(b) - depth(a) || generic(a) - generic(b))[0];
}

/** Maps Fastify's own errors onto the named codes. */
/** The body types each route that reads a body takes (its content-type parsers); any other: JSON. For a 415's `expected`. */
const BODY_TYPES: Record<string, readonly string[]> = {
  '/v1/score': ['application/json', ...MSGPACK_TYPES],
  '/v1/score/stream': [...NDJSON_TYPES, ...MSGPACK_TYPES],
  '/v1/feedback': ['application/json', ...MSGPACK_TYPES],
  '/v1/ruleset/profiles': ['application/json', ...MSGPACK_TYPES],
  '/v1/peers': ['application/json', 'application/octet-stream', ...MSGPACK_TYPES],
  '/v1/studies': ['application/json', ...ANALYSIS_NDJSON_TYPES, ...ANALYSIS_CSV_TYPES],
  '/v1/evaluations': ['application/json', ...ANALYSIS_NDJSON_TYPES, ...ANALYSIS_CSV_TYPES],
};

/**
 * The routes whose every answer, errors included, is JSON or MessagePack as
 * Accept asks: OpenAPI's content types for their answers (OpenAPI gives one
 * list per operation; a study's HTML or CSV, a stream's NDJSON are in the
 * routes' descriptions, their errors being JSON). They negotiate Accept
 * themselves; every other write answers JSON only.
 */
const ANSWER_TYPES: Record<string, readonly string[]> = {
  'POST /v1/score': ['application/json', ...MSGPACK_TYPES],
  'POST /v1/feedback': ['application/json', ...MSGPACK_TYPES],
  'PUT /v1/ruleset/profiles': ['application/json', ...MSGPACK_TYPES],
};

export function toSelectivityError(e: FastifyError & { validation?: { instancePath?: string; keyword?: string; params?: Record<string, unknown>; message?: string; data?: unknown }[] }, req?: FastifyRequest): SelectivityError {
  if (isSelectivityError(e)) return e;
  // the store refused (busy past busy_timeout, full, read-only, I/O): the transaction rolled back, nothing was acknowledged
  if (e instanceof Database.SqliteError) return errors.SEL_ERR_STORAGE(`the store could not be written: ${e.message}`, { field: 'store', expected: 'a writable store', got: e.code });
  if (e.validation && e.validation.length > 0) {
    const v = closestError(e.validation);
    const p = v.params ?? {};
    const path = (v.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
    const field = [path, p.missingProperty ?? p.additionalProperty].filter((x) => x !== undefined && x !== '').join('.') || 'body';
    // expected: what the schema asks (the allowed values, where it lists them); got: what the request held there
    // (the schemas are compiled verbose, so each error carries its data), or the unknown key
    const expected = Array.isArray(p.allowedValues) ? `one of ${p.allowedValues.join(', ')}` : v.message ?? 'a valid value';
    const got = p.additionalProperty ?? (p.missingProperty !== undefined ? 'nothing' : 'data' in v ? found(v.data) : undefined);
    return errors.SEL_ERR_REQUEST_INVALID(`${field}: ${v.message ?? 'invalid'}`, { field, expected, got });
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': {
      // the route's limit (--body-limit, or a route's own), and the length the request declared
      const limit = req?.routeOptions.bodyLimit;
      const length = req?.headers['content-length'];
      const coding = req?.headers['content-encoding'];
      const sent = length === undefined ? 'more (chunked)' : coding !== undefined && coding !== 'identity' ? `${length} bytes ${coding}-encoded, more once decoded` : `${length} bytes`;
      return errors.SEL_ERR_BODY_TOO_LARGE(e.message, { field: 'body', expected: limit !== undefined ? `a body of at most ${limit} bytes, decoded (--body-limit)` : 'a smaller body (see --body-limit)', got: sent });
    }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': {
      // what this route reads, and what the request said it sent
      const types = BODY_TYPES[req?.routeOptions.url ?? ''] ?? ['application/json'];
      return errors.SEL_ERR_MEDIA_TYPE(e.message, { field: 'content-type', expected: types.join(', '), got: req?.headers['content-type'] ?? null });
    }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return errors.SEL_ERR_REQUEST_PARSE(e.message, { field: 'body', expected: 'a JSON document' });
    // the router's own (Fastify's frameworkErrors): before any route runs
    case 'FST_ERR_BAD_URL':
      return errors.SEL_ERR_REQUEST_INVALID(`the URL is not well-formed: ${e.message}`, { field: 'url', expected: 'path segments of valid percent-encoding' });
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return errors.SEL_ERR_REQUEST_INVALID(`a path parameter is too long: ${e.message.slice(0, 200)}`, { field: 'url', expected: `path parameters of at most ${MAX_PARAM_LENGTH} characters (ids take at most 64)` });
    default:
      break;
  }
  if (e instanceof SyntaxError || (e as { statusCode?: number }).statusCode === 400) {
    return errors.SEL_ERR_REQUEST_PARSE(e.message, { field: 'body', expected: 'a well-formed body' });
  }
  return errors.SEL_ERR_INTERNAL('internal error', { field: 'request' });
}

/** Longest path parameter the router takes (Fastify's default; ids take at most 64 characters). */
const MAX_PARAM_LENGTH = 100;

/**
 * What Node's HTTP parser refused before Fastify saw a request (Fastify's
 * clientErrorHandler): headers over the parser's limit, a request that did
 * not arrive in time, or bytes that are not HTTP.
 */
export function clientError(err: Error & { code?: string }): SelectivityError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return errors.SEL_ERR_HEADERS_TOO_LARGE('the request line and headers exceed 16 KiB', { field: 'headers', expected: 'a request line and headers of at most 16 KiB (send long lists in a body)' });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return errors.SEL_ERR_REQUEST_TIMEOUT('the request did not arrive in full in time', { field: 'request', expected: "the whole request within the server's request timeout" });
    default:
      return errors.SEL_ERR_REQUEST_PARSE(`the request is not well-formed HTTP: ${err.message}`, { field: 'http', expected: 'an HTTP/1.1 request', got: err.code });
  }
}

const declarationSchema = {
  type: 'object',
  description: 'One declaration (item level). See docs/declarations.md.',
  required: FIELDS.filter((f) => f.required).map((f) => f.name),
  properties: Object.fromEntries(FIELDS.map((f) => [f.name, {
    type: f.kind === 'number' ? 'number' : f.kind === 'boolean' ? 'boolean' : 'string',
    description: f.description,
  }])),
  additionalProperties: false,
} as const;

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
      required: ['code', 'message'],
    },
  },
} as const;

const countsSchema = { type: 'object', properties: Object.fromEntries([...CHANNELS, 'control'].map((c) => [c, { type: 'integer' }])) } as const;

const decisionSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    channel: { type: 'string', enum: [...CHANNELS] },
    score: { type: 'number' },
    controlGroup: { type: 'boolean' },
    rulesetVersion: { type: 'string' },
    reasons: { type: 'array', items: { type: 'object', additionalProperties: true, properties: { code: { type: 'string', enum: REASON_CODES } } } },
  },
} as const;

/** What X-Request-Id a caller may set: up to 128 characters of letters, digits and . _ : - (anything else is replaced by our own). */
const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const REQUEST_ID_PREFIX = randomBytes(6).toString('base64url');
let requestCount = 0;

/** A request's id (Fastify's genReqId): the caller's X-Request-Id when it is one CALLER_REQUEST_ID allows, else `<process prefix>-<n>`. */
export function requestId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && CALLER_REQUEST_ID.test(given)) return given;
  return `${REQUEST_ID_PREFIX}-${(++requestCount).toString(36)}`;
}

/** Accept any body at validation time: the worker validates declarations one by one. */
const acceptAll = () => () => true;

export async function buildServer(options: ServiceOptions): Promise<FastifyInstance> {
  const { engine, source, tokens, metrics } = options;
  // the label-free control-group counter and one per channel exist from the start, at 0: a
  // Prometheus rate() or alert on them then works before the first such decision
  metrics.count('selectivity_control_group_total', {}, 0);
  for (const c of CHANNELS) metrics.count('selectivity_declarations_total', { channel: c }, 0);
  // and every error code's series: an alert on the increase of one (SEL_ERR_STORAGE, SEL_ERR_OVERLOADED) works before its first
  for (const code of Object.keys(errors)) metrics.count('selectivity_errors_total', { code }, 0);
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const chunkRecords = options.streamChunkRecords ?? 2048;
  const maxRecordBytes = options.maxRecordBytes ?? 1024 * 1024;
  const decisionLog = options.decisionLog;
  const log = decisionLog !== undefined;
  /**
   * Commits a reply's decision-log rows (a no-op without a log or rows); the
   * reply may be sent once this resolves. The wait is recorded (the
   * decision_log series): how much of an answer's time the log's commit is.
   */
  const logged = async (r: WireReply): Promise<WireReply> => {
    if (decisionLog && r.ok && r.log) {
      const started = process.hrtime.bigint();
      await decisionLog.append(r.log);
      metrics.recordSince(DECISION_LOG_SERIES, started);
    }
    return r;
  };
  let ready = true;
  const routePaths = new RoutePaths();

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit,
    // the socket's inactivity timeout (Node's server.timeout): a stalled body or stream is not held for ever
    connectionTimeout: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    // once close() began, the access hook answers SEL_ERR_NOT_READY (Fastify still adds Connection: close)
    return503OnClosing: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // A "__proto__" or "constructor" key is parsed as JSON.parse parses it, an own key like any
    // other, and refused by the route's validation as an unknown field, item by item: Fastify's
    // default refused the whole body ("not valid JSON"), so one such key sank a feedback batch.
    // Nothing copies a parsed body with assignment (validators read Object.keys), so no
    // prototype is ever set from it.
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    frameworkErrors: (err, req, reply) => sendError(req, reply, toSelectivityError(err, req)),
    clientErrorHandler: (err, socket) => {
      // a client that hangs up (reset, or closed in the middle of its request: HPE_INVALID_EOF_STATE) has
      // gone: nobody reads an answer, and it is no malformed request (it was counted SEL_ERR_REQUEST_PARSE)
      const code = (err as { code?: string }).code;
      if (code === 'ECONNRESET' || code === 'HPE_INVALID_EOF_STATE' || socket.destroyed) { socket.destroy(); return; }
      const e = clientError(err);
      metrics.count('selectivity_errors_total', { code: e.code });
      const body = JSON.stringify({ error: e.toJSON() });
      if (socket.writable) socket.write(`HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
      socket.destroy(err);
    },
    forceCloseConnections: 'idle',
    // X-Request-Id: a caller's own (a gateway's, a port system's) is kept, so its logs and ours meet;
    // else one unique across restarts (this process's random prefix, then a counter). Answered on every response.
    genReqId: requestId,
    // verbose: a validation error carries the value it refused (details.got)
    // allowUnionTypes: the import routes take an object or an array (type: ["object", "array"]), said on purpose
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, verbose: true, allowUnionTypes: true } },
  });

  // the JSON routes take application/json (and MessagePack where they say so), not Fastify's default
  // text/plain: a JSON document sent as text/plain is refused by its type (415), not by its shape (400)
  app.removeContentTypeParser('text/plain');
  // a body in a charset other than UTF-8 is refused (415); one sent compressed (Content-Encoding) is
  // decoded before any parser reads it, and its limits count decoded bytes
  app.addHook('preParsing', prepareBody);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Customs selectivity engine', version: options.version ?? '0.0.0', description: 'Scores customs declarations into channels (green, blue, yellow, orange, red) with reasons. Every error has a named code (docs/errors.md).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  // A route that takes no query parameters refuses any (400 SEL_ERR_REQUEST_INVALID naming it), as
  // the routes that take some refuse unknown ones: `GET /v1/backtests?status=running` is not an
  // unfiltered list that looks filtered. The scoring routes and the probes still ignore them: a
  // port's client or a load balancer may add its own, and the scoring path stays as it is.
  app.addHook('onRoute', (route) => {
    routePaths.add(route.url, route.method);
    // the roles each operation takes, in its OpenAPI description and as x-roles, and the 401 and 403
    // it may answer (the table is ROUTE_ROLES, as the access hook enforces it)
    const access = (route.config as { access?: string } | undefined)?.access ?? 'admin';
    const s = (route.schema ??= {}) as Record<string, unknown> & { response?: Record<string, unknown> };
    // the body and answer types other than JSON, for OpenAPI (a body is described where the route has a body schema)
    const bodyTypes = BODY_TYPES[route.url];
    if (bodyTypes && s.body !== undefined) s.consumes ??= [...bodyTypes];
    const answerTypes = ANSWER_TYPES[`${[route.method].flat()[0]} ${route.url}`];
    if (answerTypes) s.produces ??= [...answerTypes];
    // once per schema: a GET's HEAD route shares it
    if (access !== 'public' && s['x-roles'] === undefined) {
      const roles = access === 'any' ? [...ROLES] : [...ROUTE_ROLES[access as Access]];
      s.description = `${typeof s.description === 'string' ? `${s.description}\n\n` : ''}Roles: ${roles.join(', ')}${access === 'any' ? ' (any valid token)' : ''}.`;
      s['x-roles'] = roles;
      if (!s.hide) {
        s.response ??= {};
        s.response['401'] ??= { description: 'No bearer token, or an unknown one (SEL_ERR_UNAUTHORIZED).', ...errorSchema };
        if (access !== 'any') s.response['403'] ??= { description: `The token's role may not use this route (SEL_ERR_FORBIDDEN): ${roles.join(', ')} only.`, ...errorSchema };
      }
    }
    // the writes that answer JSON only: an Accept JSON does not fit is refused before anything is
    // written (an import was committed, then answered in JSON whatever Accept said)
    if ((access === 'write' || access === 'admin') && answerTypes === undefined) {
      const check = async (req: FastifyRequest) => { chooseAnswer(req.headers.accept, ['application/json']); };
      route.preValidation = route.preValidation === undefined ? check : [check, ...[route.preValidation].flat()];
    }
    if (QUERY_IGNORED.has(route.url)) return;
    const schema = (route.schema ??= {});
    schema.querystring ??= NO_QUERY;
  });

  // ---- errors ---------------------------------------------------------------
  const sendError = (req: FastifyRequest, reply: FastifyReply, e: SelectivityError) => {
    metrics.count('selectivity_errors_total', { code: e.code });
    if (e.code === errors.SEL_ERR_OVERLOADED.code || e.code === errors.SEL_ERR_NOT_READY.code) reply.header('retry-after', String(e.details.retryAfterSeconds ?? 1));
    if (e.code === errors.SEL_ERR_UNAUTHORIZED.code) reply.header('www-authenticate', 'Bearer realm="selectivity"');
    const body = { error: e.toJSON() };
    let asMsgpack = false;
    try { asMsgpack = negotiate(req.headers.accept, requestFormat(req)) === 'msgpack'; } catch { /* answer in JSON */ }
    reply.code(e.statusCode);
    if (asMsgpack) return reply.type('application/msgpack').send(asBuffer(encodeMsgpack(body)));
    return reply.type('application/json; charset=utf-8').send(JSON.stringify(body));
  };
  app.setErrorHandler((err, req, reply) => {
    const e = toSelectivityError(err as FastifyError, req);
    if (e.code === errors.SEL_ERR_INTERNAL.code) req.log.error({ err }, 'internal error');
    // every other failure of the service's own (a store that cannot be written: full, corrupt, read-only) is
    // an error an operator must see; the answers of an overload or a shutdown are the service working as meant
    else if (e.statusCode >= 500 && e.code !== errors.SEL_ERR_OVERLOADED.code && e.code !== errors.SEL_ERR_NOT_READY.code) req.log.error({ code: e.code, details: e.details }, e.message);
    else if (e.code === errors.SEL_ERR_ABANDONED.code) req.log.info({ code: e.code }, 'the client went away before its batch was scored: not scored, not logged');
    return sendError(req, reply, e);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    // a path with routes for other methods: 405 and the methods it has (GET /v1/score is not "no route")
    const allow = routePaths.methods(path);
    if (allow.length > 0) {
      reply.header('allow', allow.join(', '));
      return sendError(req, reply, errors.SEL_ERR_METHOD_NOT_ALLOWED(`${path} has no ${req.method} route`, { field: 'method', expected: allow.join(' | '), got: req.method }));
    }
    return sendError(req, reply, errors.SEL_ERR_NOT_FOUND(`no route ${req.method} ${path}`, { field: 'url', expected: 'a route listed in /v1/openapi.json', got: `${req.method} ${path}` }));
  });

  source.attachEngine(engine);

  /** Per-profile match counts for effectiveness statistics (flushed to the store by the recorder). */
  const recordUsage = (r: Extract<WireReply, { ok: true }>) => {
    if (r.scored === 0) return;
    // statistics never fail a scoring request: a version no longer held loses its counts, nothing else
    try { source.usage.record(engine.meta(r.rulesetVersion), r.scored, r.profileMatches ?? []); } catch { /* counted in nothing */ }
  };

  // ---- access ---------------------------------------------------------------
  app.addHook('onRequest', async (req) => {
    // a path no route has: any valid token, then the not-found handler's 404 (a route of another
    // role answers 403; an unknown path is not such a route, and the routes are public in OpenAPI)
    const access = req.routeOptions.url === undefined ? 'any' : (req.routeOptions.config.access ?? 'admin');
    if (access === 'public') return;
    if (!ready) throw errors.SEL_ERR_NOT_READY('the service is shutting down', { field: 'service', expected: 'a service that takes new work: another instance, or this one once it is back', got: 'shutting down', retryAfterSeconds: 1 });
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const who = m ? tokens.identify(m[1]) : undefined;
    const role = who?.role;
    if (!role) throw errors.SEL_ERR_UNAUTHORIZED(m ? 'unknown bearer token' : 'a bearer token is required', { field: 'authorization', expected: 'Authorization: Bearer <token>' });
    if (access !== 'any' && !(ROUTE_ROLES[access] as readonly Role[]).includes(role)) {
      throw errors.SEL_ERR_FORBIDDEN(`role ${role} may not use ${req.method} ${req.routeOptions.url}`, { field: 'role', expected: ROUTE_ROLES[access].join(' | '), got: role });
    }
    req.role = role;
    req.actor = who!.name ? `${role}:${who!.name}` : `${role} token`;
  });

  // ---- latency and counters, recorded after the response is written ----------
  /** The request count and what the request scored; once per request. */
  const recordCounters = (req: FastifyRequest, route: string, status: string) => {
    if (req.countersRecorded) return;
    req.countersRecorded = true;
    metrics.count('selectivity_requests_total', { route, status });
    const s = req.scoreStats;
    if (s) {
      if (s.kernelNs > 0) metrics.record(KERNEL_SERIES, s.kernelNs);
      for (const c of CHANNELS) if (s.counts[c] > 0) metrics.count('selectivity_declarations_total', { channel: c }, s.counts[c]);
      if (s.counts.control > 0) metrics.count('selectivity_control_group_total', {}, s.counts.control);
      for (const [code, n] of Object.entries(s.errorCodes)) metrics.count('selectivity_invalid_declarations_total', { code }, n);
    }
  };
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ? `${req.method} ${req.routeOptions.url}` : 'unmatched';
    metrics.record(route, Math.round(reply.elapsedTime * 1e6));
    // a stream that ended with a fatal record answered 200 before the fault: counted as status "fatal"
    recordCounters(req, route, req.streamFatal ? 'fatal' : String(reply.statusCode));
  });

  // ---- health ---------------------------------------------------------------
  app.get('/healthz', { config: { access: 'public' }, schema: { tags: ['health'], summary: 'Liveness: the process answers.', security: [] } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { access: 'public' }, schema: { tags: ['health'], summary: 'Readiness: a ruleset is loaded and new work is accepted.', security: [] } }, async (_req, reply) => {
    if (!ready) return sendError(_req, reply, errors.SEL_ERR_NOT_READY('the service is shutting down', { field: 'service', expected: 'a service that takes new work: another instance, or this one once it is back', got: 'shutting down' }));
    const store = storeNotReady(options.storeCheck?.() ?? { state: 'off' }, decisionLog);
    if (store) return sendError(_req, reply, errors.SEL_ERR_NOT_READY(store.message, { field: store.field, expected: store.expected, got: store.got }));
    return { status: 'ready', rulesetVersion: engine.rulesetVersion, queued: engine.queueSize };
  });

  // ---- scoring: one batch ----------------------------------------------------
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(['application/json', ...MSGPACK_TYPES], { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
    scope.post('/v1/score', {
      config: { access: 'score' },
      validatorCompiler: acceptAll,
      schema: {
        tags: ['scoring'],
        summary: 'Score a batch of declarations.',
        description: 'JSON or MessagePack (Content-Type application/json, application/msgpack or application/x-msgpack); the answer follows Accept, else the request encoding. Invalid declarations are listed in errors[] (with their index) and the rest are scored.',
        body: { type: 'object', required: ['declarations'], additionalProperties: false, properties: { declarations: { type: 'array', maxItems: maxBatch, items: declarationSchema } } },
        response: {
          200: { type: 'object', properties: { rulesetVersion: { type: 'string' }, counts: countsSchema, decisions: { type: 'array', items: decisionSchema }, errors: { type: 'array', items: { type: 'object', additionalProperties: true } } } },
          '4xx': errorSchema,
          '5xx': errorSchema,
        },
      },
    }, async (req, reply) => {
      const format = requestFormat(req);
      const accept = negotiate(req.headers.accept, format);
      const body = req.body as Buffer;
      if (!Buffer.isBuffer(body) || body.length === 0) throw errors.SEL_ERR_REQUEST_PARSE('the request body is empty', { field: 'body', expected: 'a document { "declarations": [...] }' });
      // a body scored on this thread is scored before a hang-up could be seen: no signal (an AbortController costs ~5 µs)
      const r = await engine.scoreWire({ kind: 'batch', format, accept, body, maxDeclarations: maxBatch, log }, { signal: engine.scoresInline(body.byteLength) ? undefined : whileConnected(reply) });
      if (!r.ok) throw wireError(r);
      await logged(r); // durable before acknowledgement
      req.scoreStats = r;
      recordUsage(r);
      // elapsedTime counts from the request's routing because an onResponse hook exists (Fastify starts the clock only then)
      reply.header('x-ruleset-version', r.rulesetVersion).header('server-timing', serverTiming(reply.elapsedTime, r.kernelNs)).type(accept === 'json' ? 'application/json; charset=utf-8' : 'application/msgpack');
      return reply.send(asBuffer(r.body));
    });
  });

  // ---- scoring: bulk streams ---------------------------------------------------
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser([...NDJSON_TYPES, ...MSGPACK_TYPES], (_req, payload, done) => done(null, payload));
    scope.post('/v1/score/stream', {
      config: { access: 'score' },
      validatorCompiler: acceptAll,
      schema: {
        tags: ['scoring'],
        summary: 'Score a stream of declarations; decisions stream back as they are made.',
        description: 'NDJSON (application/x-ndjson: one declaration per line) or a MessagePack sequence (application/msgpack: concatenated maps). One output record per input record, in order: a decision, or { line | index, id?, error }. Backpressure runs end to end: the service reads the request only as fast as the client reads the response.',
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    }, async (req, reply) => {
      const format = requestFormat(req);
      const accept = negotiate(req.headers.accept, format, ['application/x-ndjson', 'application/ndjson', 'application/json']);
      const body = req.body as IncomingMessage | undefined;
      // no Content-Type and no body: Fastify ran no parser, so there is no stream to read (nor a format to read it in)
      if (body === undefined || body === null) throw errors.SEL_ERR_MEDIA_TYPE('a stream needs a Content-Type and a body', { field: 'content-type', expected: `${NDJSON_TYPES.join(', ')} or ${MSGPACK_TYPES.join(', ')}`, got: req.headers['content-type'] ?? null });
      const input: IncomingMessage = body;
      const stats = { scored: 0, invalid: 0, counts: emptyCounts(), errorCodes: {} as Record<string, number>, kernelNs: 0 };
      req.scoreStats = stats;
      const depth = Math.max(2, engine.options.threads + 1);
      const signal = whileConnected(reply);
      // A client that hangs up mid-stream gets no onResponse: what was scored (and logged) is counted
      // once the response has closed and every chunk sent to the pool has settled.
      let hungUp = false, settled = false;
      const countHungUp = () => { if (hungUp && settled) recordCounters(req, 'POST /v1/score/stream', 'closed'); };
      reply.raw.once('close', () => { if (!reply.raw.writableFinished) { hungUp = true; countHungUp(); } });
      // chunks sent to the pool and not settled yet (a count, not the promises: their replies would stay in memory)
      let inflight = 0;
      let whenIdle: (() => void) | undefined;
      const track = (chunk: Promise<WireReply>) => {
        inflight++;
        const done = () => { if (--inflight === 0) whenIdle?.(); };
        chunk.then(done, done);
      };
      // complete: whether the request's body arrived whole (a client that hangs up ends it early, and without an
      // error); a request made in process (Fastify's inject) has no such flag: it is whole
      const complete = () => req.raw.complete !== false;
      const frames = format === 'json' ? ndjsonFrames(input, chunkRecords, maxRecordBytes, FRAME_BYTES, complete) : msgpackFrames(input, chunkRecords, maxRecordBytes, FRAME_BYTES, complete);
      const fatal = (e: unknown) => {
        // the client hung up mid-upload: reading the request failed ("aborted"), or the framer found its last
        // record cut short. Neither is the service's fault nor the records': the stream is counted as closed
        // (countHungUp), and nobody reads this record. They were SEL_ERR_INTERNAL (an alert: "a bug") and
        // SEL_ERR_REQUEST_PARSE, and the first logged an error with a stack trace.
        const abandoned = isSelectivityError(e) && e.code === errors.SEL_ERR_ABANDONED.code;
        const gone = abandoned || signal.aborted || reply.raw.destroyed || req.raw.socket?.destroyed === true;
        let se: SelectivityError;
        if (gone) {
          req.log.info({ reason: (e as Error)?.message }, 'stream: the client went away');
          se = abandoned ? e : clientGone();
        } else if (isSelectivityError(e)) se = e;
        else {
          req.log.error({ err: e }, 'stream failed');
          se = errors.SEL_ERR_INTERNAL('stream failed', { field: 'body' });
        }
        if (se.code !== errors.SEL_ERR_ABANDONED.code) metrics.count('selectivity_errors_total', { code: se.code }); // counted per chunk in score()
        const rec = { fatal: true, error: se.toJSON() };
        return accept === 'json' ? Buffer.from(`${JSON.stringify(rec)}\n`) : asBuffer(encodeMsgpack(rec));
      };
      const score = async (f: Frame): Promise<WireReply> => {
        for (let attempt = 0; ; attempt++) {
          try {
            // a chunk's decisions are committed to the log before its reply joins the response
            const r = await logged(await engine.scoreWire({ kind: 'stream', format, accept, body: f.bytes, maxDeclarations: chunkRecords, firstIndex: f.firstIndex, firstLine: f.firstLine, log }, { signal }));
            if (r.ok) {
              // counted once scored and logged, sent or not (a client may hang up before it is sent)
              recordUsage(r);
              stats.scored += r.scored;
              stats.invalid += r.invalid;
              // the kernel's time per chunk, as per batch (summed over a stream, one sample mixed a stream's
              // minutes of kernel time with single batches' and made the series' percentiles meaningless)
              if (r.kernelNs > 0) metrics.record(KERNEL_SERIES, r.kernelNs);
              for (const k of Object.keys(stats.counts) as (keyof typeof stats.counts)[]) stats.counts[k] += r.counts[k];
              for (const [c, n] of Object.entries(r.errorCodes)) stats.errorCodes[c] = (stats.errorCodes[c] ?? 0) + n;
            }
            return r;
          } catch (e) {
            // A stream waits for room in the queue instead of failing: that is its backpressure.
            if (isSelectivityError(e) && e.code === errors.SEL_ERR_OVERLOADED.code && attempt < 2000) { await new Promise((r) => setTimeout(r, 5)); continue; }
            // a chunk skipped because the client went away: counted here, the stream's output is gone
            if (isSelectivityError(e) && e.code === errors.SEL_ERR_ABANDONED.code) metrics.count('selectivity_errors_total', { code: e.code });
            throw e;
          }
        }
      };
      async function* output(): AsyncGenerator<Buffer> {
        const pending: Promise<WireReply>[] = [];
        const take = async (): Promise<Buffer> => {
          const r = await pending.shift()!;
          if (!r.ok) throw wireError(r);
          return asBuffer(r.body);
        };
        let failure: unknown;
        try {
          try {
            for await (const f of frames) {
              const chunk = score(f);
              chunk.catch(() => undefined); // observed below, in order
              pending.push(chunk);
              track(chunk);
              if (pending.length >= depth) yield await take();
            }
          } catch (e) {
            failure = e; // answer what was read before the fault, then say what went wrong
          }
          try {
            while (pending.length > 0) yield await take();
          } catch (e) {
            failure ??= e;
            pending.length = 0;
          }
          if (failure !== undefined) {
            req.streamFatal = true;
            yield fatal(failure);
            // the answer ends once the request has (discardRest): a client still sending reads all of it
            const socket = reply.raw.socket;
            if (!(await discardRest(req.raw, input))) reply.raw.once('finish', () => socket?.destroy());
          }
        } finally {
          // also when the response is destroyed (the client hung up): the chunks in flight still count
          if (inflight > 0) await new Promise<void>((resolve) => { whenIdle = resolve; });
          settled = true;
          countHungUp();
        }
      }
      reply.header('x-ruleset-version', engine.rulesetVersion).type(accept === 'json' ? 'application/x-ndjson' : 'application/msgpack');
      return reply.send(Readable.from(output(), { objectMode: false, highWaterMark: 1 }));
    });
  });

  // ---- ruleset ---------------------------------------------------------------
  // `version`: the ruleset a change installed (a later change may have followed it since); by default the one scoring now
  const rulesetInfo = (version?: string) => {
    const meta = engine.meta(version);
    return {
      version: meta.version,
      profiles: meta.profiles.length,
      profileIds: meta.profiles.map((p) => p.id),
      profileVersions: Object.fromEntries(meta.profiles.map((p) => [p.id, p.version ?? null])),
      watchLists: meta.watchLists.map((w) => ({ id: w.id, version: w.version ?? null })),
      peerLevels: meta.levels.map((l) => l.name),
      peers: (version !== undefined && version !== engine.rulesetVersion ? source.rulesetRecord(version)?.peers : source.peersInfo?.version) ?? null,
      // the compliance model it scores with (GET /v1/model has its dimensions); null: none
      model: (version !== undefined && version !== engine.rulesetVersion ? source.rulesetRecord(version)?.model : meta.history ? source.modelIdentity : null) ?? null,
      settings: meta.settings,
      files: source.files,
    };
  };
  const rulesetSchema = { type: 'object', additionalProperties: true, properties: { version: { type: 'string' }, profiles: { type: 'integer' } } } as const;
  app.get('/v1/rulesets/:version', {
    config: { access: 'read' },
    schema: {
      tags: ['ruleset'],
      summary: 'What made a ruleset version (as named by decisions): the profile versions, the watch-list versions, the peer snapshot, the compliance model (its file\'s SHA-256, when and on what it was trained; null: none) and the settings; kept in the store for every ruleset this service installed (watchLists null for one recorded before store migration 10, model absent for one recorded before migration 12).',
      params: { type: 'object', required: ['version'], properties: { version: { type: 'string', pattern: '^[0-9a-f]{16}$' } } },
      response: { 200: { type: 'object', additionalProperties: true }, '4xx': errorSchema },
    },
  }, async (req) => {
    const { version } = req.params as { version: string };
    const r = source.rulesetRecord(version);
    if (!r) throw errors.SEL_ERR_NOT_FOUND(`no ruleset ${version} was installed by this service`, { field: 'version', expected: 'a version named by a decision', got: version });
    return r;
  });
  app.get('/v1/ruleset', { config: { access: 'read' }, schema: { tags: ['ruleset'], summary: 'The active ruleset: version, profiles, watch lists, peer levels, settings.', response: { 200: rulesetSchema } } }, async () => rulesetInfo());
  app.post('/v1/ruleset/reload', { config: { access: 'admin' }, schema: { tags: ['ruleset'], summary: 'Re-read the peer file and model.json, rebuild the ruleset with the active profiles and watch lists of the store, and swap it in without a restart. If a file is invalid, the active ruleset stays.', response: { 200: rulesetSchema, '4xx': errorSchema } } }, async () => {
    return rulesetInfo(await source.reload());
  });
  // ---- access: the tokens, re-read without a restart ----------------------------
  app.post('/v1/tokens/reload', {
    config: { access: 'admin' },
    schema: {
      tags: ['access'],
      summary: 'Re-read the tokens file (--tokens or <data-dir>/tokens.json) and use its tokens from the next request on: a token is revoked or added without a restart. A file that does not hold (malformed, a short token, an unknown role, readable by others) answers SEL_ERR_CONFIG_INVALID and the tokens in use stay; so do tokens from SELECTIVITY_TOKENS, which cannot be re-read. The answer gives the number of tokens per role, never a token.',
      response: { 200: { type: 'object', properties: { source: { type: 'string' }, path: { type: 'string' }, counts: { type: 'object', additionalProperties: { type: 'integer' } } } }, '4xx': errorSchema },
    },
  }, async (req) => {
    if (!(tokens instanceof ReloadableTokens)) throw errors.SEL_ERR_CONFIG_INVALID('this service was built with a fixed token set', { field: 'tokens', expected: 'a service started from a tokens file' });
    const counts = tokens.reload();
    req.log.info({ counts, by: req.actor }, 'tokens reloaded');
    return { source: tokens.source, path: tokens.path, counts };
  });
  // ---- the compliance model: learnt from the feedback in the store ------------
  const modelSchema = { type: 'object', additionalProperties: true } as const;
  app.get('/v1/model', { config: { access: 'read' }, schema: { tags: ['ruleset'], summary: 'The compliance model in use (historical tables and weights): when it was trained, on how many declarations, its dimensions; {"model": null} without one. autoRetrain: the threshold of automatic retraining and the inspected declarations with feedback in the store (null when off).', response: { 200: modelSchema } } },
    async () => ({ model: source.modelInfo ?? null, autoRetrain: source.autoRetrain ?? null }));
  app.post('/v1/model/retrain', { config: { access: 'write' }, schema: { tags: ['ruleset'], summary: 'Refit the compliance model on the inspected declarations with feedback (decision log joined to current feedback), write it durably to the data directory, and swap it in. Too little feedback answers SEL_ERR_OPTION_INVALID and nothing changes.', response: { 200: modelSchema, '4xx': errorSchema } } }, async () => {
    const r = await source.retrainAndSwap();
    return { model: source.modelInfo, training: r.training, ruleset: rulesetInfo(r.version) };
  });
  await app.register(async (scope) => {
    acceptMsgpackBodies(scope, bodyLimit);
    scope.put('/v1/ruleset/profiles', {
      config: { access: 'write' },
      schema: {
        tags: ['ruleset'],
        summary: 'Replace the active profile set (profiles absent from it are retired). Validated whole, written to the store in one durable transaction (each changed profile gets a new version), then swapped in; 200 only after the commit.',
        body: { type: 'object', required: ['profiles'], additionalProperties: false, properties: { profiles: { type: 'array', items: { type: 'object', additionalProperties: true } } } },
        response: { 200: rulesetSchema, '4xx': errorSchema },
      },
    }, async (req) => {
      const { summary, version } = await source.replaceProfiles(req.body, req.actor);
      return { ...rulesetInfo(version), changes: summary };
    });
  });

  // ---- profiles: the store's lifecycle -----------------------------------------
  await registerProfileRoutes(app, { engine, source, bodyLimit, errorSchema, rulesetInfo });

  // ---- keyword watch lists ------------------------------------------------------
  await registerWatchListRoutes(app, { source, errorSchema, rulesetInfo });

  // ---- feedback: examination results, the decision log ---------------------------
  await registerFeedbackRoutes(app, { source, bodyLimit, errorSchema });

  // ---- analysis: peer snapshots, studies, evaluations -------------------------
  await registerAnalysisRoutes(app, { engine, source, bodyLimit, errorSchema, rulesetInfo });
  if (options.backtests) await registerBacktestRoutes(app, { ...options.backtests, source, errorSchema });

  // ---- metrics and API description --------------------------------------------
  app.get('/metrics', { config: { access: 'metrics' }, schema: { tags: ['metrics'], summary: 'Prometheus text exposition: latency percentiles per route and for the kernel, counters.' } }, async (_req, reply) => {
    reply.type(PROMETHEUS_CONTENT_TYPE);
    return metrics.prometheus();
  });
  app.get<{ Querystring: { histograms?: 'true' | 'false' } }>('/v1/metrics', {
    config: { access: 'metrics' },
    schema: {
      tags: ['metrics'],
      summary: 'Latency percentiles (ms) per route and for the kernel: cumulative, last interval, current interval.',
      description: 'With histograms=true, each series also carries its cumulative histogram (`histogram`: values in ns, HdrHistogram compressed V2, base64): subtract two reads for the percentiles of what happened between them, add those of several services for percentiles over all of them (docs/service.md).',
      querystring: { type: 'object', additionalProperties: false, properties: { histograms: { type: 'string', enum: ['true', 'false'] } } },
    },
  }, async (req) => metrics.summary({ histograms: req.query.histograms === 'true' }));
  app.get('/v1/openapi.json', { config: { access: 'any' }, schema: { tags: ['meta'], summary: 'This API, as OpenAPI 3.' } }, async () => app.swagger());

  app.addHook('preClose', async () => { ready = false; });
  // an answer finished after close() began ends its connection: a keep-alive connection busy when
  // the service began to close would otherwise stay open, idle, until its keep-alive timeout (72 s)
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (!ready) reply.header('connection', 'close');
  });
  return app;
}


// ---- stream framing -------------------------------------------------------------

export interface Frame {
  bytes: Uint8Array;
  /** Index of the first record in the stream (MessagePack). */
  firstIndex: number;
  /** Line number of the first line (NDJSON). */
  firstLine: number;
}

const NL = 0x0a;

/**
 * A frame is cut at `records` records or once it holds this many bytes,
 * whichever comes first: 2,048 records of up to 1 MiB each would make one
 * frame of 2 GiB, copied a few times on its way.
 */
export const FRAME_BYTES = 4 * 1024 * 1024;

/**
 * The chunks of `input`; if reading it fails, the failure goes to `onFault`
 * and the chunks end there, so that a framer answers the whole records it
 * holds before it throws. A framer that stops early leaves a stream as it is
 * (not destroyed): what is left of the request is read and thrown away
 * (discardRest), so that the connection stays usable.
 */
async function* untilFault(input: AsyncIterable<Buffer | string>, onFault: (error: unknown) => void): AsyncGenerator<Buffer | string> {
  try {
    // the request itself is left as it is (discardRest reads the rest); a decoder's output (DecodedBody,
    // whose own iterator reads the bytes decoded before a fault, then throws it) is read as it says
    const chunks = input instanceof IncomingMessage ? input.iterator({ destroyOnReturn: false }) : input;
    for await (const chunk of chunks) yield chunk;
  } catch (e) {
    onFault(e);
  }
}

/** How long after a stream's fatal record a client may go on sending before its connection is closed. */
export const FAULT_LINGER_MS = 5000;

/**
 * After a stream's fault (its fatal record written): the rest of the request
 * is read and thrown away, and the answer ends only once the request has
 * (true), or FAULT_LINGER_MS later (false: the connection is then closed).
 * An answer that ended first left unread bytes on the connection: Node
 * closes it after such an answer, and a connection closed with unread bytes
 * is reset, so a client still sending (a streaming client does not wait for
 * the answer) lost what it had not read yet (2,983 of 5,000 decisions in an
 * audit). Once the request has ended, a kept-alive connection carries the
 * next request as usual (before, it was closed, and a request already sent
 * on it was run and logged but never answered).
 */
function discardRest(raw: IncomingMessage, input: Readable): Promise<boolean> {
  if (input !== raw) { raw.unpipe(); input.destroy(); } // a decoder's output: the request's own bytes are what is left
  if (raw.complete && raw.readableEnded) return Promise.resolve(true);
  if (raw.destroyed) return Promise.resolve(raw.complete);
  return new Promise<boolean>((resolve) => {
    const done = (ended: boolean) => {
      clearTimeout(timer);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      resolve(ended);
    };
    const onEnd = () => done(true);
    const onClose = () => done(raw.complete);
    const timer = setTimeout(() => done(false), FAULT_LINGER_MS).unref();
    raw.once('end', onEnd);
    raw.once('close', onClose);
    raw.resume(); // nothing listens: the bytes are dropped
  });
}

/**
 * Cuts an NDJSON byte stream into chunks of whole lines (about `records`
 * lines each, FRAME_BYTES at most but for one long line). A line longer
 * than `maxLine` throws, after the chunk of the whole lines before it.
 */
export async function* ndjsonFrames(input: AsyncIterable<Buffer | string>, records: number, maxLine: number, frameBytes = FRAME_BYTES, complete?: () => boolean): AsyncGenerator<Frame> {
  let parts: Buffer[] = [];
  let size = 0;
  let lines = 0; // complete lines in parts
  let scanned = 0; // bytes of parts already scanned for newlines
  let lastNl = -1; // offset (in the concatenation) just after the last newline
  let nextLine = 1;
  let fault: { error: unknown } | undefined;
  /** The whole lines read and not yet framed, as a frame (a copy: the engine may transfer what it is given). */
  const wholeLines = (): Frame => ({ bytes: new Uint8Array((parts.length === 1 ? parts[0] : Buffer.concat(parts, size)).subarray(0, lastNl)), firstIndex: 0, firstLine: nextLine });
  for await (const chunk of untilFault(input, (error) => { fault = { error }; })) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    parts.push(buf);
    size += buf.length;
    // every line that ends in this read is checked (one longer than maxLine that ends in the read it began
    // in would pass a check of the unfinished tail only), and so is the unfinished tail
    let tooLong = false;
    for (let at = buf.indexOf(NL); at >= 0 && !tooLong; at = buf.indexOf(NL, at + 1)) {
      const end = scanned + at + 1;
      if (end - Math.max(lastNl, 0) - 1 > maxLine) { tooLong = true; break; }
      lines++;
      lastNl = end;
    }
    scanned += buf.length;
    if (tooLong || size - Math.max(lastNl, 0) > maxLine) {
      // the whole lines before it are answered first
      if (lastNl > 0) yield wholeLines();
      throw errors.SEL_ERR_REQUEST_PARSE(`line ${nextLine + lines} is longer than ${maxLine} bytes`, { field: 'body', expected: `NDJSON lines of at most ${maxLine} bytes`, got: `line ${nextLine + lines}` });
    }
    if ((lines >= records || lastNl >= frameBytes) && lastNl > 0) {
      const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
      // a copy: the engine may transfer (detach) what it is given
      const frame: Frame = { bytes: new Uint8Array(all.subarray(0, lastNl)), firstIndex: 0, firstLine: nextLine };
      const rest = all.subarray(lastNl);
      parts = rest.length > 0 ? [Buffer.from(rest)] : [];
      yield frame;
      nextLine += lines;
      size = rest.length;
      scanned = size;
      lines = 0;
      lastNl = -1;
      // the remainder has no newline (lastNl was the last one)
    }
  }
  // reading the input failed (a compressed body cut short), or the client went away mid-upload: the whole
  // lines before are answered first, and the line cut short is not a record
  const end = fault ? fault.error : complete && !complete() ? clientGone() : undefined;
  if (end !== undefined) {
    if (lastNl > 0) yield wholeLines();
    throw end;
  }
  if (size > 0) {
    yield { bytes: new Uint8Array(Buffer.concat(parts, size)), firstIndex: 0, firstLine: nextLine };
  }
}

/** The end of a stream whose request did not arrive whole: its client went away. */
const clientGone = () => errors.SEL_ERR_ABANDONED('the client went away before the end of its stream', { field: 'body' });

/**
 * Cuts a MessagePack sequence into chunks of whole values (about `records`
 * each, FRAME_BYTES at most but for one long value). A value longer than
 * `maxRecord`, or bytes that cannot begin one, throw after the chunk of the
 * whole values before them.
 */
export async function* msgpackFrames(input: AsyncIterable<Buffer | string>, records: number, maxRecord: number, frameBytes = FRAME_BYTES, complete?: () => boolean): AsyncGenerator<Frame> {
  // the bytes not yet framed, in buf[0, len): a buffer that grows by doubling, so a frame that
  // spans many socket reads is copied once per read, not once per read for every read before it
  let buf: Buffer = Buffer.alloc(0);
  let len = 0;
  let pos = 0; // end of the last complete value found in buf
  let count = 0; // complete values in buf[0, pos)
  let index = 0; // stream index of buf's first value
  let fault: { error: unknown } | undefined;
  for await (const chunk of untilFault(input, (error) => { fault = { error }; })) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (len + b.length > buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(2 * buf.length, len + b.length, 64 * 1024));
      buf.copy(grown, 0, 0, len);
      buf = grown;
    }
    b.copy(buf, len);
    len += b.length;
    let held = buf.subarray(0, len);
    for (;;) {
      let end: number;
      try {
        end = msgpackValueEnd(held, pos);
      } catch (e) {
        if (count > 0) yield { bytes: Buffer.from(buf.subarray(0, pos)), firstIndex: index, firstLine: 0 };
        throw e;
      }
      if (end < 0) break;
      pos = end;
      count++;
      if (count >= records || pos >= frameBytes) {
        yield { bytes: Buffer.from(buf.subarray(0, pos)), firstIndex: index, firstLine: 0 };
        index += count;
        buf.copyWithin(0, pos, len);
        len -= pos;
        pos = 0;
        count = 0;
        held = buf.subarray(0, len);
      }
    }
    if (len - pos > maxRecord) {
      if (count > 0) yield { bytes: Buffer.from(buf.subarray(0, pos)), firstIndex: index, firstLine: 0 };
      throw errors.SEL_ERR_REQUEST_PARSE(`record ${index + count} is longer than ${maxRecord} bytes`, { field: 'body', expected: `MessagePack records of at most ${maxRecord} bytes`, got: `record ${index + count}` });
    }
  }
  if (count > 0) yield { bytes: Buffer.from(buf.subarray(0, pos)), firstIndex: index, firstLine: 0 };
  // reading the input failed (a compressed body cut short): thrown once the whole values before it are answered
  if (fault) throw fault.error;
  if (complete && !complete()) throw clientGone(); // the value it was sending is not a record
  if (pos < len) {
    throw errors.SEL_ERR_REQUEST_PARSE(`the stream ends inside record ${index + count}`, { field: 'body', expected: 'whole MessagePack values', got: `${len - pos} trailing bytes` });
  }
}
