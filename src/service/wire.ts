/**
 * Request bodies in, response bodies out, in one function that runs inside a
 * scoring worker (or on the calling thread with threads: 0): decode JSON /
 * NDJSON / MessagePack, validate every declaration, build the columnar batch,
 * score it, and encode the decisions. The service's main thread only moves
 * bytes, so decoding and encoding scale with the pool like scoring does.
 *
 * Two kinds of request:
 *  - batch:  one document { "declarations": [ … ] } → one document
 *            { rulesetVersion, counts, decisions: [ … ], errors: [ … ] };
 *  - stream: a chunk of complete records (NDJSON lines, or concatenated
 *            MessagePack values), one declaration each → one output record per
 *            input record, in order: a decision, or { index, line?, error }.
 */
import { Unpackr } from 'msgpackr';
import { errors, SelectivityError, type ErrorDetails } from '../errors.js';
import type { Kernel } from '../kernel/kernel.js';
import { BatchBuilder } from '../model/columnar.js';
import { validateDeclaration, type Declaration, type FieldIssue } from '../model/schema.js';
import { EncodedMsgpack, FastDeclarationReader, InlineDecisions, encodeDecision, encodeDecisions, encodeMsgpack, msgpackEnd as msgpackValueEnd, msgpackStringsValid, type DecisionShape } from './fast-msgpack.js';
import { channelCounts, emptyCounts, profileMatchCounts, toDecisions, type Decision } from '../decisions.js';
import type { Channel } from '../model/channels.js';
import { CHUNK_MSGPACK, CHUNK_NDJSON, encodeLogChunk, msgpackArrayHeader, type ChunkFormat } from '../feedback/log-rows.js';
import { unpackBody } from './msgpack-body.js';

export type WireFormat = 'json' | 'msgpack';

export interface WireRequest {
  kind: 'batch' | 'stream';
  /** Encoding of body: json (batch: a JSON document; stream: NDJSON) or msgpack. */
  format: WireFormat;
  /** Encoding of the reply body. */
  accept: WireFormat;
  body: Uint8Array;
  /** Most declarations a batch may hold. */
  maxDeclarations: number;
  /** Stream: index of the chunk's first record in the whole stream. */
  firstIndex?: number;
  /** Stream, NDJSON: line number (1-based) of the chunk's first line. */
  firstLine?: number;
  /** Also return the decision-log rows of the scored declarations (src/feedback/log-rows.ts). */
  log?: boolean;
}

export interface WireError {
  code: string;
  message: string;
  statusCode: number;
  details: ErrorDetails;
}

export interface WireStats {
  rulesetVersion: string;
  /** Records seen (valid and invalid). */
  records: number;
  scored: number;
  invalid: number;
  counts: Record<Channel | 'control', number>;
  /** Invalid declarations by error code. */
  errorCodes: Record<string, number>;
  kernelNs: number;
  /** Declarations matched per profile: [profile index, count, …] (kernel order of the ruleset's meta). */
  profileMatches: number[];
}

/** `log`: the decision-log payload (one MessagePack buffer of its own, transferable) when the request asked for it and something was scored. */
export type WireReply = ({ ok: true; body: Uint8Array; log?: Uint8Array } & WireStats) | { ok: false; error: WireError };

export interface RecordError {
  index: number;
  line?: number;
  id?: string;
  code: string;
  message: string;
  issues: Omit<FieldIssue, 'message'>[] | { code: string; field: string; expected: string; message: string }[];
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
const BATCH_KEYS = new Set(['declarations']);

function fail(e: SelectivityError): WireReply {
  return { ok: false, error: { code: e.code, message: e.message, statusCode: e.statusCode, details: e.details } };
}

/** Reads clean declaration maps straight from MessagePack bytes (src/service/fast-msgpack.ts). */
const fastReader = new FastDeclarationReader();
const DECLARATIONS = Array.from('declarations', (c) => c.charCodeAt(0));

/** Where the array of a {"declarations": [...]} MessagePack document starts, or undefined for any other shape. */
function declarationsArray(b: Uint8Array): { count: number; pos: number } | undefined {
  const u16 = (p: number) => (b[p] << 8) | b[p + 1];
  const u32 = (p: number) => ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
  if (b.length < 20) return undefined;
  let p: number;
  // a map of one entry (fixmap, map16 or map32: encoders differ)
  if (b[0] === 0x81) p = 1;
  else if (b[0] === 0xde && u16(1) === 1) p = 3;
  else if (b[0] === 0xdf && u32(1) === 1) p = 5;
  else return undefined;
  // its key "declarations" (fixstr or str8)
  if (b[p] === 0xa0 + DECLARATIONS.length) p += 1;
  else if (b[p] === 0xd9 && b[p + 1] === DECLARATIONS.length) p += 2;
  else return undefined;
  for (let i = 0; i < DECLARATIONS.length; i++) if (b[p + i] !== DECLARATIONS[i]) return undefined;
  p += DECLARATIONS.length;
  const t = b[p];
  if (t >= 0x90 && t <= 0x9f) return { count: t & 0x0f, pos: p + 1 };
  if (t === 0xdc) return { count: u16(p + 1), pos: p + 3 };
  if (t === 0xdd) return { count: u32(p + 1), pos: p + 5 };
  return undefined;
}

function parseRecord(bytes: Uint8Array, from: number, to: number, what: string): unknown {
  const record = bytes.subarray(from, to);
  if (!msgpackStringsValid(record, 0)) throw errors.SEL_ERR_REQUEST_PARSE(`${what} holds a string that is not valid UTF-8`, { field: 'body', expected: 'MessagePack strings in UTF-8', got: what });
  try {
    return unpackr.unpack(record);
  } catch (e) {
    throw errors.SEL_ERR_REQUEST_PARSE(`${what} is not valid MessagePack: ${(e as Error).message}`, { field: 'body', expected: 'MessagePack maps', got: what });
  }
}

function parseDocument(req: WireRequest): unknown {
  if (req.format === 'msgpack') return unpackBody(req.body, 'request body', 'a MessagePack document { "declarations": [...] }');
  try {
    return JSON.parse(utf8.decode(req.body));
  } catch (e) {
    throw errors.SEL_ERR_REQUEST_PARSE(`request body is not valid JSON: ${(e as Error).message}`, { field: 'body', expected: 'a JSON document { "declarations": [...] }' });
  }
}

/** Collects the validated declarations of a request, scores them, and keeps the invalid ones as record errors. */
class Scoring {
  readonly builder: BatchBuilder;
  /** For each valid declaration (batch row), its index in the request. */
  readonly rowIndex: number[] = [];
  readonly bad: RecordError[] = [];
  readonly errorCodes: Record<string, number> = {};
  /** With the decision log on: the valid declarations, in batch row order. */
  private readonly declarations: Declaration[] | undefined;

  constructor(capacity: number, log = false) {
    this.builder = new BatchBuilder(Math.max(1, capacity));
    if (log) this.declarations = [];
  }

  /**
   * The value at pos, read by the fast reader straight into the batch if it
   * is a clean declaration (then true, and fastReader.lastEnd is its end).
   * False: nothing was added, and the caller takes the general path.
   */
  readFast(b: Uint8Array, pos: number, index: number): boolean {
    if (!fastReader.readInto(b, pos, this.builder)) return false;
    this.rowIndex.push(index);
    this.declarations?.push(fastReader.declaration());
    return true;
  }

  /** Whether the decision log wants this request's decisions (and something was scored). */
  logs(decisions: readonly Decision[]): boolean {
    return this.declarations !== undefined && decisions.length > 0;
  }

  /** The decision-log payload of what run() decided, with the decisions as the reply encoded them (src/feedback/log-rows.ts). */
  logPayload(format: ChunkFormat, encoded: readonly Uint8Array[], decisions: readonly Decision[], rulesetVersion: string): Uint8Array {
    const ids: string[] = new Array(decisions.length);
    for (let k = 0; k < decisions.length; k++) ids[k] = decisions[k].id;
    return encodeLogChunk(format, encoded, ids, this.declarations!, rulesetVersion);
  }

  add(raw: unknown, index: number, line?: number): void {
    const v = validateDeclaration(raw);
    if (v.ok) {
      this.builder.push(v.value);
      this.rowIndex.push(index);
      this.declarations?.push(v.value);
      return;
    }
    const first = v.issues[0];
    const err: RecordError = { index, code: first.code, message: v.issues.map((i) => i.message).join('; '), issues: v.issues.map(({ code, field, expected, got }) => (got === undefined ? { code, field, expected } : { code, field, expected, got })) };
    if (line !== undefined) err.line = line;
    if (v.id !== undefined) err.id = v.id;
    this.bad.push(err);
    this.errorCodes[first.code] = (this.errorCodes[first.code] ?? 0) + 1;
  }

  /**
   * A whole MessagePack value the fast reader handed over, decoded by
   * msgpackr: a declaration to validate, or, when the decoder refuses it (a
   * string that is not UTF-8, an unknown extension, a key that is not a
   * string), that record's own parse error.
   */
  addMsgpack(b: Uint8Array, from: number, to: number, what: string, index: number): void {
    let value: unknown;
    try {
      value = parseRecord(b, from, to, what);
    } catch (e) {
      this.parseError(index, (e as Error).message);
      return;
    }
    this.add(value, index);
  }

  parseError(index: number, message: string, line?: number): void {
    const code = errors.SEL_ERR_DECL_PARSE.code;
    const err: RecordError = { index, code, message, issues: [{ code, field: '$', expected: 'one well-formed record', message }] };
    if (line !== undefined) err.line = line;
    this.bad.push(err);
    this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
  }

  run(kernel: Kernel): { decisions: Decision[]; stats: WireStats } {
    const meta = kernel.rulesetMeta;
    if (!meta) throw errors.SEL_ERR_RULESET_INVALID('no ruleset loaded', { field: 'ruleset' });
    const { batch, ids } = this.builder.finish();
    let decisions: Decision[] = [];
    let counts = emptyCounts();
    let kernelNs = 0;
    let profileMatches: number[] = [];
    if (batch.size > 0) {
      // read here and dropped: the kernel's own result buffer, not a new one per request
      const result = kernel.score(batch, undefined, { reuse: true });
      kernelNs = result.kernelNs;
      counts = channelCounts(result);
      profileMatches = profileMatchCounts(result);
      decisions = toDecisions(result, ids, meta); // one array of the batch's size, not grown by push
    }
    return {
      decisions,
      stats: { rulesetVersion: meta.version, records: decisions.length + this.bad.length, scored: decisions.length, invalid: this.bad.length, counts, errorCodes: this.errorCodes, kernelNs, profileMatches },
    };
  }
}

/**
 * The reply to a batch. With the decision log on, the decisions are encoded
 * once, for the reply and the log alike: the log keeps the very bytes the
 * client received (MessagePack: the decisions array; JSON: one decision per
 * line). The reply's bytes are the same either way.
 */
function batchReply(req: WireRequest, s: Scoring, decisions: Decision[], stats: WireStats): WireReply {
  const { rulesetVersion, counts } = stats;
  const logs = s.logs(decisions);
  if (req.accept === 'msgpack') {
    const shapes = decisions as unknown as DecisionShape[];
    // without the log, the decisions are written straight into the reply; with it, encoded once for both
    if (!logs) return { ok: true, body: encodeMsgpack({ rulesetVersion, counts, decisions: new InlineDecisions(shapes), errors: s.bad }), ...stats };
    const encoded = encodeDecisions(shapes);
    const body = encodeMsgpack({ rulesetVersion, counts, decisions: new EncodedMsgpack(encoded), errors: s.bad });
    return { ok: true, body, log: s.logPayload(CHUNK_MSGPACK, [encoded], decisions, rulesetVersion), ...stats };
  }
  if (!logs) return { ok: true, body: encoder.encode(JSON.stringify({ rulesetVersion, counts, decisions, errors: s.bad })), ...stats };
  let list = '', lines = '';
  for (let k = 0; k < decisions.length; k++) {
    const t = JSON.stringify(decisions[k]);
    list += k === 0 ? t : `,${t}`;
    lines += `${t}\n`;
  }
  const body = encoder.encode(`{"rulesetVersion":${JSON.stringify(rulesetVersion)},"counts":${JSON.stringify(counts)},"decisions":[${list}],"errors":${JSON.stringify(s.bad)}}`);
  return { ok: true, body, log: s.logPayload(CHUNK_NDJSON, [encoder.encode(lines)], decisions, rulesetVersion), ...stats };
}

function tooMany(req: WireRequest, n: number): SelectivityError {
  return errors.SEL_ERR_BATCH_TOO_LARGE(`a batch may hold at most ${req.maxDeclarations} declarations; this one holds ${n}`, { field: 'declarations', expected: `at most ${req.maxDeclarations} declarations`, got: n });
}

/** MessagePack batches in the usual shape: read declaration by declaration from the bytes. Undefined: use the general path. */
function scoreMsgpackBatch(kernel: Kernel, req: WireRequest): WireReply | undefined {
  const b = req.body;
  const head = declarationsArray(b);
  if (!head) return undefined;
  if (head.count > req.maxDeclarations) throw tooMany(req, head.count);
  const s = new Scoring(head.count, req.log);
  let pos = head.pos;
  for (let i = 0; i < head.count; i++) {
    if (s.readFast(b, pos, i)) { pos = fastReader.lastEnd; continue; }
    const end = msgpackValueEnd(b, pos);
    if (end < 0) return undefined; // truncated: the general path reports it
    s.addMsgpack(b, pos, end, `declarations[${i}]`, i);
    pos = end;
  }
  if (pos !== b.length) return undefined; // trailing bytes: the general path reports them
  const { decisions, stats } = s.run(kernel);
  return batchReply(req, s, decisions, stats);
}

function scoreBatchDocument(kernel: Kernel, req: WireRequest): WireReply {
  if (req.format === 'msgpack') {
    const fast = scoreMsgpackBatch(kernel, req);
    if (fast) return fast;
  }
  const doc = parseDocument(req);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw errors.SEL_ERR_REQUEST_INVALID('the request body must be an object { "declarations": [...] }', { field: 'body', expected: 'an object with a "declarations" array', got: Array.isArray(doc) ? 'an array' : doc === null ? null : typeof doc });
  }
  for (const key of Object.keys(doc)) {
    if (!BATCH_KEYS.has(key)) throw errors.SEL_ERR_REQUEST_INVALID(`unknown field "${key}" in the request body`, { field: key, expected: 'only "declarations"', got: key });
  }
  const list = (doc as { declarations?: unknown }).declarations;
  if (!Array.isArray(list)) throw errors.SEL_ERR_REQUEST_INVALID('"declarations" must be an array', { field: 'declarations', expected: 'an array of declarations', got: list === undefined ? 'nothing' : typeof list });
  if (list.length > req.maxDeclarations) throw tooMany(req, list.length);
  const s = new Scoring(list.length, req.log);
  for (let i = 0; i < list.length; i++) s.add(list[i], i);
  const { decisions, stats } = s.run(kernel);
  return batchReply(req, s, decisions, stats);
}

/**
 * The lines of an NDJSON chunk (split at \n), decoded as UTF-8; a line that
 * is not UTF-8 is null. The whole chunk is decoded at once when it can be.
 */
function ndjsonLines(body: Uint8Array): (string | null)[] {
  try {
    return utf8.decode(body).split('\n');
  } catch {
    const out: (string | null)[] = [];
    for (let from = 0; ;) {
      const nl = body.indexOf(0x0a, from);
      const end = nl < 0 ? body.length : nl;
      try { out.push(utf8.decode(body.subarray(from, end))); } catch { out.push(null); }
      if (nl < 0) return out;
      from = nl + 1;
    }
  }
}

function scoreStreamChunk(kernel: Kernel, req: WireRequest): WireReply {
  const firstIndex = req.firstIndex ?? 0;
  let s: Scoring;
  let n = 0;
  if (req.format === 'json') {
    const lines = ndjsonLines(req.body);
    s = new Scoring(lines.length, req.log);
    let line = (req.firstLine ?? 1) - 1;
    for (const raw of lines) {
      line++;
      if (raw === null) {
        // a line that is not UTF-8 is its own record's error, not the chunk's
        s.parseError(firstIndex + n++, `line ${line}: not valid UTF-8`, line);
        continue;
      }
      let t = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      // a JSON text sequence (RFC 7464, application/json-seq) begins each record with RS (0x1E)
      if (t.charCodeAt(0) === 0x1e) t = t.slice(1);
      if (t.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(t);
      } catch (e) {
        s.parseError(firstIndex + n++, `line ${line}: not valid JSON (${(e as Error).message})`, line);
        continue;
      }
      s.add(value, firstIndex + n++, line);
    }
  } else {
    // whole records (the service frames them); each read straight from the bytes
    const b = req.body;
    const ends: number[] = [];
    for (let pos = 0; pos < b.length;) {
      const end = msgpackValueEnd(b, pos);
      if (end < 0) throw errors.SEL_ERR_REQUEST_PARSE(`stream chunk ends inside record ${firstIndex + ends.length}`, { field: 'body', expected: 'whole MessagePack values', got: `record ${firstIndex + ends.length}` });
      ends.push(end);
      pos = end;
    }
    s = new Scoring(ends.length, req.log);
    let pos = 0;
    for (const end of ends) {
      if (s.readFast(b, pos, firstIndex + n)) n++;
      else s.addMsgpack(b, pos, end, `record ${firstIndex + n}`, firstIndex + n++);
      pos = end;
    }
  }
  const { decisions, stats } = s.run(kernel);
  // one output record per input record, in input order: the decisions where the valid ones were, the errors elsewhere
  const slot = (index: number) => index - firstIndex;
  const errorRecord = (e: RecordError) => ({ ...(req.format === 'msgpack' ? { index: e.index } : { line: e.line }), ...(e.id !== undefined ? { id: e.id } : {}), error: { code: e.code, message: e.message, issues: e.issues } });
  let body: Uint8Array;
  let log: Uint8Array | undefined;
  if (req.accept === 'json') {
    const lines: string[] = new Array(n);
    for (let k = 0; k < decisions.length; k++) lines[slot(s.rowIndex[k])] = `${JSON.stringify(decisions[k])}\n`;
    for (const e of s.bad) lines[slot(e.index)] = `${JSON.stringify(errorRecord(e))}\n`;
    body = encoder.encode(lines.join(''));
    if (s.logs(decisions)) {
      let text = '';
      for (let k = 0; k < decisions.length; k++) text += lines[slot(s.rowIndex[k])];
      log = s.logPayload(CHUNK_NDJSON, [encoder.encode(text)], decisions, stats.rulesetVersion);
    }
  } else {
    const parts: Uint8Array[] = new Array(n);
    for (let k = 0; k < decisions.length; k++) parts[slot(s.rowIndex[k])] = encodeDecision(decisions[k] as unknown as DecisionShape);
    for (const e of s.bad) parts[slot(e.index)] = encodeMsgpack(errorRecord(e));
    let total = 0;
    for (const p of parts) total += p.length;
    body = new Uint8Array(total);
    let at = 0;
    for (const p of parts) { body.set(p, at); at += p.length; }
    if (s.logs(decisions)) {
      const encoded: Uint8Array[] = [msgpackArrayHeader(decisions.length)];
      for (let k = 0; k < decisions.length; k++) encoded.push(parts[slot(s.rowIndex[k])]);
      log = s.logPayload(CHUNK_MSGPACK, encoded, decisions, stats.rulesetVersion);
    }
  }
  return log ? { ok: true, body, log, ...stats } : { ok: true, body, ...stats };
}

/** Scores one wire request with a kernel that holds the ruleset to use. Never throws. */
export function scoreWire(kernel: Kernel, req: WireRequest): WireReply {
  try {
    return req.kind === 'batch' ? scoreBatchDocument(kernel, req) : scoreStreamChunk(kernel, req);
  } catch (e) {
    if (e instanceof SelectivityError) return fail(e);
    return fail(errors.SEL_ERR_INTERNAL(`scoring failed: ${(e as Error).message}`, { field: 'body' }));
  }
}

/**
 * End of the MessagePack value that starts at `pos`, without decoding it:
 * -1 if the buffer ends first; SEL_ERR_REQUEST_PARSE on a byte MessagePack
 * never uses. Used to cut a stream into whole records.
 */
export { msgpackEnd as msgpackValueEnd } from './fast-msgpack.js';
