/**
 * One registry of named error codes (SEL_ERR_*). Every error the engine raises
 * is built here, carries an HTTP status for the service, and is documented in
 * docs/errors.md (a test walks both). A code is never reused for a new meaning.
 */

export interface ErrorDetails {
  /** The field (or option, or column) at fault, if any. */
  field?: string;
  /** What was expected there, in words. */
  expected?: string;
  /** What was found (truncated for long values). */
  got?: unknown;
  [key: string]: unknown;
}

export class SelectivityError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly details: ErrorDetails;

  constructor(code: string, message: string, statusCode: number, details: ErrorDetails = {}) {
    super(message);
    this.name = 'SelectivityError';
    this.code = code;
    this.statusCode = statusCode;
    // what was found, as JSON can write it and bounded: a BigInt or a value nested thousands deep
    // would fail the answer's serialiser after the work was done (a 500 for a stored feedback post)
    this.details = 'got' in details ? { ...details, got: preview(details.got, 1000) } : details;
  }

  toJSON(): { code: string; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export interface ErrorFactory {
  (message: string, details?: ErrorDetails): SelectivityError;
  readonly code: string;
  readonly statusCode: number;
  readonly summary: string;
}

function define(code: string, statusCode: number, summary: string): ErrorFactory {
  const factory = ((message: string, details: ErrorDetails = {}) =>
    new SelectivityError(code, message, statusCode, details)) as ErrorFactory;
  Object.defineProperties(factory, {
    code: { value: code, enumerable: true },
    statusCode: { value: statusCode, enumerable: true },
    summary: { value: summary, enumerable: true },
  });
  return factory;
}

/** Every error code the engine can produce, keyed by the code itself. */
export const errors = {
  // Declarations (one bad declaration is reported; the rest of its batch is scored)
  SEL_ERR_DECL_NOT_OBJECT: define('SEL_ERR_DECL_NOT_OBJECT', 400, 'A declaration is not a JSON object.'),
  SEL_ERR_DECL_FIELD_REQUIRED: define('SEL_ERR_DECL_FIELD_REQUIRED', 400, 'A required declaration field is missing or empty.'),
  SEL_ERR_DECL_FIELD_TYPE: define('SEL_ERR_DECL_FIELD_TYPE', 400, 'A declaration field has the wrong type.'),
  SEL_ERR_DECL_FIELD_FORMAT: define('SEL_ERR_DECL_FIELD_FORMAT', 400, 'A declaration field does not have the expected format.'),
  SEL_ERR_DECL_FIELD_RANGE: define('SEL_ERR_DECL_FIELD_RANGE', 400, 'A numeric declaration field is out of range.'),
  SEL_ERR_DECL_UNKNOWN_FIELD: define('SEL_ERR_DECL_UNKNOWN_FIELD', 400, 'A declaration carries a field the schema does not know.'),
  SEL_ERR_DECL_PARSE: define('SEL_ERR_DECL_PARSE', 400, 'A record could not be parsed (malformed JSON line or CSV row).'),

  // Files and column mappings
  SEL_ERR_FILE_NOT_FOUND: define('SEL_ERR_FILE_NOT_FOUND', 404, 'An input file does not exist or cannot be read.'),
  SEL_ERR_FILE_FORMAT: define('SEL_ERR_FILE_FORMAT', 400, 'An input file has an unsupported extension or format.'),
  SEL_ERR_CSV_HEADER: define('SEL_ERR_CSV_HEADER', 400, 'A CSV file lacks a column that the column mapping needs.'),
  SEL_ERR_COLUMNS_INVALID: define('SEL_ERR_COLUMNS_INVALID', 400, 'A column mapping (or preset name) is invalid.'),
  SEL_ERR_INTEL_INPUT: define('SEL_ERR_INTEL_INPUT', 400, 'Intelligence texts yield no document, or (in strict mode) hold a malformed record or feed.'),

  // Risk profiles
  SEL_ERR_PROFILE_INVALID: define('SEL_ERR_PROFILE_INVALID', 400, 'A risk profile fails validation; the active set is unchanged.'),
  SEL_ERR_PROFILE_DUPLICATE: define('SEL_ERR_PROFILE_DUPLICATE', 409, 'Two risk profiles in one set share an id.'),
  SEL_ERR_WATCHLIST_INVALID: define('SEL_ERR_WATCHLIST_INVALID', 400, 'A keyword watch list fails validation; the active lists are unchanged.'),
  SEL_ERR_WATCHLIST_NOT_FOUND: define('SEL_ERR_WATCHLIST_NOT_FOUND', 404, 'No stored watch list (or watch-list version) has this id.'),
  SEL_ERR_PROFILE_NOT_FOUND: define('SEL_ERR_PROFILE_NOT_FOUND', 404, 'No stored profile (or profile version) has this id.'),
  SEL_ERR_PROFILE_LIMIT: define('SEL_ERR_PROFILE_LIMIT', 400, 'A profile set exceeds the number of profiles the kernel supports.'),

  // Peer groups and rulesets
  SEL_ERR_PEERS_INVALID: define('SEL_ERR_PEERS_INVALID', 400, 'Peer-group tables or their level specification are invalid.'),
  SEL_ERR_PEERS_CORRUPT: define('SEL_ERR_PEERS_CORRUPT', 400, 'A peer snapshot file is damaged (unreadable, checksum mismatch, malformed group); the current snapshot is kept.'),
  SEL_ERR_PEERS_MISMATCH: define('SEL_ERR_PEERS_MISMATCH', 409, "A peer snapshot does not fit this engine or this operation (format, format version, features, levels); the current snapshot is kept."),
  SEL_ERR_HISTORY_INVALID: define('SEL_ERR_HISTORY_INVALID', 400, 'The history store (manifest or a segment) is unreadable or of another format; nothing was changed.'),
  SEL_ERR_DATA_DIR_BUSY: define('SEL_ERR_DATA_DIR_BUSY', 409, 'Another service uses this data directory; this one did not start.'),
  SEL_ERR_HISTORY_BUSY: define('SEL_ERR_HISTORY_BUSY', 409, 'Another import is writing to the history store; nothing was changed.'),
  SEL_ERR_PEERS_BUSY: define('SEL_ERR_PEERS_BUSY', 409, 'Another writer is writing this peer snapshot, or wrote it while this one ran; nothing was changed.'),
  SEL_ERR_HISTORY_EMPTY: define('SEL_ERR_HISTORY_EMPTY', 400, 'The history store holds no declaration in the requested date range.'),
  SEL_ERR_BACKTEST_NOT_FOUND: define('SEL_ERR_BACKTEST_NOT_FOUND', 404, 'No back-test job has this id.'),
  SEL_ERR_BACKTEST_NO_REPORT: define('SEL_ERR_BACKTEST_NO_REPORT', 410, 'The back-test ended without a report (it failed, was cancelled, or a stop interrupted it): it will never have one.'),
  SEL_ERR_BACKTEST_PENDING: define('SEL_ERR_BACKTEST_PENDING', 409, 'The back-test has no report yet: it is queued or running.'),
  SEL_ERR_RULESET_INVALID: define('SEL_ERR_RULESET_INVALID', 400, 'A ruleset setting (weights, thresholds, random selection) is invalid.'),

  // Engine, kernel, options
  SEL_ERR_OPTION_INVALID: define('SEL_ERR_OPTION_INVALID', 400, 'An engine, CLI or generator option is invalid.'),
  SEL_ERR_KERNEL_LOAD: define('SEL_ERR_KERNEL_LOAD', 500, 'The WebAssembly kernel could not be loaded (run `npm run build`).'),
  SEL_ERR_KERNEL_MEMORY: define('SEL_ERR_KERNEL_MEMORY', 507, 'The kernel could not grow its linear memory for a batch or ruleset.'),
  SEL_ERR_BATCH_INVALID: define('SEL_ERR_BATCH_INVALID', 400, 'A columnar batch given to the engine is malformed (detached or short buffer, a column not in the batch layout, a code outside its dictionary); nothing was scored.'),
  SEL_ERR_ENGINE_CLOSED: define('SEL_ERR_ENGINE_CLOSED', 503, 'The engine was closed; no further batches are accepted.'),
  SEL_ERR_ABANDONED: define('SEL_ERR_ABANDONED', 499, 'The request was abandoned (its client went away) before a worker began to score it: it was not scored, logged or answered.'),

  // HTTP service: requests, access, load
  SEL_ERR_REQUEST_PARSE: define('SEL_ERR_REQUEST_PARSE', 400, 'A request body is not well-formed JSON, NDJSON or MessagePack (or the request is not well-formed HTTP).'),
  SEL_ERR_REQUEST_INVALID: define('SEL_ERR_REQUEST_INVALID', 400, 'A request is well-formed but does not have the expected shape (missing, unknown or mistyped field or parameter).'),
  SEL_ERR_HEADERS_TOO_LARGE: define('SEL_ERR_HEADERS_TOO_LARGE', 431, 'The request line and headers exceed the HTTP parser\'s limit (16 KiB; a long query string counts).'),
  SEL_ERR_REQUEST_TIMEOUT: define('SEL_ERR_REQUEST_TIMEOUT', 408, 'The request was not received in full within the server\'s request timeout.'),
  SEL_ERR_BODY_TOO_LARGE: define('SEL_ERR_BODY_TOO_LARGE', 413, 'A request body exceeds the configured body limit.'),
  SEL_ERR_BATCH_TOO_LARGE: define('SEL_ERR_BATCH_TOO_LARGE', 413, 'A batch holds more items than its maximum (declarations to score, examination results).'),
  SEL_ERR_MEDIA_TYPE: define('SEL_ERR_MEDIA_TYPE', 415, 'A request body has a Content-Type the route does not accept.'),
  SEL_ERR_NOT_ACCEPTABLE: define('SEL_ERR_NOT_ACCEPTABLE', 406, 'The Accept header asks for a representation the route cannot produce.'),
  SEL_ERR_UNAUTHORIZED: define('SEL_ERR_UNAUTHORIZED', 401, 'No bearer token, or an unknown one.'),
  SEL_ERR_FORBIDDEN: define('SEL_ERR_FORBIDDEN', 403, "The token's role may not use this route."),
  SEL_ERR_NOT_FOUND: define('SEL_ERR_NOT_FOUND', 404, 'No such route or resource.'),
  SEL_ERR_METHOD_NOT_ALLOWED: define('SEL_ERR_METHOD_NOT_ALLOWED', 405, 'The path has routes, but not for this method; the Allow header lists those it has.'),
  SEL_ERR_OVERLOADED: define('SEL_ERR_OVERLOADED', 503, 'The scoring queue is full; retry after the number of seconds in Retry-After.'),
  SEL_ERR_NOT_READY: define('SEL_ERR_NOT_READY', 503, 'The service is starting or shutting down and does not take new work.'),
  SEL_ERR_CONFIG_INVALID: define('SEL_ERR_CONFIG_INVALID', 400, 'Service configuration (environment, tokens file, data directory) is invalid.'),
  SEL_ERR_FEEDBACK_INVALID: define('SEL_ERR_FEEDBACK_INVALID', 400, 'An examination result (feedback item) fails validation; it is not recorded.'),
  SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION: define('SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION', 404, 'An examination result names a declaration with no logged decision (or none of the named ruleset version); it is not recorded.'),
  SEL_ERR_STORAGE: define('SEL_ERR_STORAGE', 500, 'A durable write to the data directory failed; nothing was acknowledged.'),
  SEL_ERR_INTERNAL: define('SEL_ERR_INTERNAL', 500, 'An unexpected internal error; the request changed nothing. Report it with the request id.'),
} as const satisfies Record<string, ErrorFactory>;

export type ErrorCode = keyof typeof errors;

export function isSelectivityError(e: unknown): e is SelectivityError {
  return e instanceof SelectivityError;
}

/**
 * A value as error details show it: what JSON can write, and short. A
 * BigInt (MessagePack's int64) becomes `"5n"`; a string longer than `max`
 * is cut; an array or object is kept (as a copy) when it is small, at most
 * four levels deep and about `max` characters of JSON in all, else it
 * becomes "an array" or "an object". Nothing in it is walked further than
 * that, so a value nested thousands deep or a megabyte long costs no more.
 */
export function preview(value: unknown, max = 80): unknown {
  if (value === null || typeof value !== 'object') return scalar(value, max);
  const budget = { left: max };
  const kept = shallowCopy(value, 0, budget, max);
  return kept !== TOO_BIG ? kept : Array.isArray(value) ? 'an array' : 'an object';
}

const TOO_BIG = Symbol('too big');

function scalar(value: unknown, max: number): unknown {
  if (typeof value === 'bigint') return `${value}n`; // JSON has no BigInt (msgpack int64 decodes to one)
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value); // JSON would write null (MessagePack floats can be NaN, ±Infinity)
  if (typeof value === 'string' && value.length > max) return `${value.slice(0, max)}…`;
  return value;
}

function shallowCopy(value: unknown, depth: number, budget: { left: number }, max: number): unknown {
  if (value === null || typeof value !== 'object') {
    const v = scalar(value, max);
    budget.left -= typeof v === 'string' ? v.length + 2 : 8;
    return budget.left < 0 ? TOO_BIG : v;
  }
  if (depth >= 4 || ArrayBuffer.isView(value)) return TOO_BIG;
  budget.left -= 2;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (let i = 0; i < value.length; i++) {
      const v = shallowCopy(value[i], depth + 1, budget, max);
      if (v === TOO_BIG) return TOO_BIG;
      out.push(v);
    }
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) {
    budget.left -= k.length + 3;
    const v = budget.left < 0 ? TOO_BIG : shallowCopy((value as Record<string, unknown>)[k], depth + 1, budget, max);
    if (v === TOO_BIG) return TOO_BIG;
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true }); // "__proto__" too, as a key
  }
  return out;
}

/**
 * What a worker thread returns instead of throwing a named error: a thrown
 * error crosses the thread boundary as a plain Error (its code and details
 * lost), so workers catch named errors and return them in this shape, and
 * the caller raises them again with `fromWorker`.
 */
export interface WorkerFailure {
  selectivityError: { code: string; message: string; details: ErrorDetails };
}

/** Runs a worker's body; a named error becomes a WorkerFailure, anything else is thrown. */
export async function catchForWorker<T>(body: () => T | Promise<T>): Promise<T | WorkerFailure> {
  try {
    return await body();
  } catch (e) {
    if (isSelectivityError(e)) return { selectivityError: e.toJSON() };
    throw e;
  }
}

/** A worker's reply: the value, or the named error it failed with raised again here. */
export function fromWorker<T>(reply: T | WorkerFailure): T {
  if (reply !== null && typeof reply === 'object' && 'selectivityError' in reply) {
    const { code, message, details } = (reply as WorkerFailure).selectivityError;
    const factory = (errors as Record<string, ErrorFactory>)[code] ?? errors.SEL_ERR_INTERNAL;
    throw factory(message, details);
  }
  return reply as T;
}
