/**
 * The decision log's payload and chunk format. The scoring worker that made a
 * request's decisions builds its log chunk: the decisions exactly as the
 * reply encodes them (the same bytes, encoded once), and the declaration
 * fields learning needs. The chunk travels to the log writer in one buffer
 * (transferred, never cloned or decoded on the main thread), and is stored as
 * it is: one `decision_chunks` row per request (batch or stream chunk)
 * (migration 7), the ids in `decision_ids` (migration 8). Readers
 * decode one row on demand.
 *
 * Payload (one ArrayBuffer):
 *   u32 LE  header byte length H
 *   H bytes MessagePack header { t: decided at (ms since 1970), v: ruleset version, n: rows,
 *           f: chunk format, ids: JSON array text of the n declaration ids }
 *   rest    the chunk (stored as decision_chunks.rows):
 *             u32 LE  byte length of the decisions
 *             the n decisions, as the reply encoded them:
 *               format 1 (MessagePack replies): a MessagePack array of n decision maps
 *               format 2 (JSON replies): n lines of JSON, one decision each, "\n"-terminated
 *             a MessagePack array of n declaration rows, each
 *               [date, office, importer, declarant, seller, hs, origin, departure, transportMode,
 *                customsValue, netMass, quantity, taxRate, aeo 0|1]   (null where absent)
 * The ids JSON goes to SQLite's json_each, so the id index of a chunk is
 * filled by one statement.
 */
import { Unpackr } from 'msgpackr';
import { encodeMsgpack, msgpackEnd } from '../service/fast-msgpack.js';
import type { Declaration } from '../model/schema.js';
import type { Decision } from '../decisions.js';

/** Chunk formats (the `format` column): how the decisions are encoded. */
export const CHUNK_MSGPACK = 1;
export const CHUNK_NDJSON = 2;
export type ChunkFormat = typeof CHUNK_MSGPACK | typeof CHUNK_NDJSON;

/** The header of a payload: what the writer needs to store and index a chunk. */
export interface LogHeader {
  /** Decided at, ms since 1970. */
  t: number;
  /** Ruleset version that decided every row. */
  v: string;
  /** Rows. */
  n: number;
  f: ChunkFormat;
  /** JSON array text of the rows' declaration ids, in row order. */
  ids: string;
}

/** A declaration row of a chunk. */
export type DeclarationRow = [date: string, office: string, importer: string, declarant: string | null, seller: string | null, hs: string, origin: string,
  departure: string | null, transportMode: string | null, customsValue: number, netMass: number, quantity: number | null, taxRate: number | null, aeo: 0 | 1 | null];

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const utf8 = new TextDecoder();

/** A MessagePack array header for n elements. */
export function msgpackArrayHeader(n: number): Uint8Array {
  if (n < 0x10) return Uint8Array.of(0x90 | n);
  if (n < 0x10000) return Uint8Array.of(0xdc, n >> 8, n & 0xff);
  return Uint8Array.of(0xdd, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/**
 * The log payload of a request: `decisions` (their ids in `ids`) decided
 * `declarations`, in the same order; `encoded` holds the decisions as the
 * reply encoded them (format 1: a MessagePack array, format 2: NDJSON).
 * Returns a buffer that owns its ArrayBuffer exactly (transferable).
 */
export function encodeLogChunk(format: ChunkFormat, encoded: readonly Uint8Array[], ids: readonly string[], declarations: readonly Declaration[], rulesetVersion: string, now = Date.now()): Uint8Array {
  const n = declarations.length;
  const header = encodeMsgpack({ t: now, v: rulesetVersion, n, f: format, ids: JSON.stringify(ids) } satisfies LogHeader);
  let decisionBytes = 0;
  for (const e of encoded) decisionBytes += e.length;
  const w = new RowWriter(4 + header.length + 4 + decisionBytes + 120 * n + 64);
  w.u32le(header.length);
  w.bytes(header);
  w.u32le(decisionBytes);
  for (const e of encoded) w.bytes(e);
  w.arrayHeader(n);
  for (let k = 0; k < n; k++) {
    const x = declarations[k];
    w.byte(0x9e); // fixarray of 14: a DeclarationRow
    w.str(x.date); w.str(x.office); w.str(x.importer); w.optStr(x.declarant); w.optStr(x.seller); w.str(x.hs); w.str(x.origin);
    w.optStr(x.departure); w.optStr(x.transportMode); w.num(x.customsValue); w.num(x.netMass); w.optNum(x.quantity); w.optNum(x.taxRate);
    w.byte(x.aeo === undefined ? 0xc0 : x.aeo ? 1 : 0);
  }
  return w.finish();
}

/**
 * The declaration rows written straight into the payload, field by field,
 * as encodeMsgpack would write the same arrays (no array per row is built).
 */
class RowWriter {
  private buf: Uint8Array;
  private view: DataView;
  private at = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): void { this.room(1); this.buf[this.at++] = b; }
  u32le(v: number): void { this.room(4); this.view.setUint32(this.at, v, true); this.at += 4; }
  bytes(b: Uint8Array): void { this.room(b.length); this.buf.set(b, this.at); this.at += b.length; }
  arrayHeader(n: number): void { this.bytes(msgpackArrayHeader(n)); }

  str(s: string): void {
    const n = s.length;
    if (n < 0x20) {
      // short ASCII strings, the usual codes and dates, byte by byte
      this.room(1 + n);
      const o = this.buf;
      let p = this.at + 1;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) { this.bytes(encodeMsgpack(s)); return; }
        o[p++] = c;
      }
      o[this.at] = 0xa0 | n;
      this.at = p;
      return;
    }
    this.bytes(encodeMsgpack(s));
  }

  optStr(s: string | undefined): void { if (s === undefined) this.byte(0xc0); else this.str(s); }

  num(v: number): void {
    if (v >>> 0 === v && v < 0x80) { this.byte(v); return; }
    // anything else as float64 (msgpack readers give the same number back)
    this.room(9);
    this.buf[this.at] = 0xcb;
    this.view.setFloat64(this.at + 1, v);
    this.at += 9;
  }

  optNum(v: number | undefined): void { if (v === undefined) this.byte(0xc0); else this.num(v); }

  /** The bytes written, in a buffer of their own (transferable). */
  finish(): Uint8Array {
    return this.at === this.buf.length ? this.buf : this.buf.slice(0, this.at);
  }
}

/** The payload of decisions and declarations that were never encoded as a reply (tools, tests): format 1. */
export function encodeLogRows(decisions: readonly Decision[], declarations: readonly Declaration[], rulesetVersion: string, now = Date.now()): Uint8Array {
  return encodeLogChunk(CHUNK_MSGPACK, [encodeMsgpack(decisions)], decisions.map((d) => d.id), declarations, rulesetVersion, now);
}

/** Splits a payload into its header and the chunk (a view, not a copy). */
export function readPayload(payload: Uint8Array): { header: LogHeader; chunk: Uint8Array } {
  const h = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0, true);
  const header = unpackr.unpack(payload.subarray(4, 4 + h)) as LogHeader;
  return { header, chunk: payload.subarray(4 + h) };
}

/** Start of each of the n elements of the MessagePack array at `pos`, and its end (n + 1 offsets): a structural walk, nothing decoded. */
function arrayStarts(b: Uint8Array, pos: number, n: number, what: string): Uint32Array {
  const t = b[pos];
  let count: number;
  if (t >= 0x90 && t <= 0x9f) { count = t & 0x0f; pos += 1; }
  else if (t === 0xdc) { count = (b[pos + 1] << 8) | b[pos + 2]; pos += 3; }
  else if (t === 0xdd) { count = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(pos + 1); pos += 5; }
  else throw new Error(`${what} is not a MessagePack array`);
  if (count !== n) throw new Error(`${what} holds ${count} rows, the chunk ${n}`);
  const starts = new Uint32Array(n + 1);
  for (let k = 0; k < n; k++) {
    starts[k] = pos;
    pos = msgpackEnd(b, pos);
    if (pos < 0) throw new Error(`${what} ends inside row ${k}`);
  }
  starts[n] = pos;
  return starts;
}

/** Start of each of the n lines of NDJSON at [from, to), and the end of the last one (+ 1). */
function lineStarts(b: Uint8Array, from: number, to: number, n: number, what: string): Uint32Array {
  const starts = new Uint32Array(n + 1);
  let pos = from;
  for (let k = 0; k < n; k++) {
    starts[k] = pos;
    const nl = b.indexOf(10, pos);
    if (nl < 0 || nl >= to) throw new Error(`${what} holds ${k} lines, the chunk ${n}`);
    pos = nl + 1;
  }
  starts[n] = pos;
  return starts;
}

/**
 * A stored chunk, decoded row by row on demand: where each row starts is
 * found the first time a row is asked for (a walk over the bytes that
 * decodes nothing).
 */
export class Chunk {
  private decisionStarts: Uint32Array | undefined;
  private declarationStarts: Uint32Array | undefined;

  constructor(readonly firstSeq: number, readonly count: number, readonly format: ChunkFormat, private readonly bytes: Uint8Array) {}

  private index(): void {
    const b = this.bytes;
    const what = `decision chunk at seq ${this.firstSeq}`;
    const length = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
    const end = 4 + length;
    if (end > b.length) throw new Error(`${what} is shorter than its decisions`);
    this.decisionStarts = this.format === CHUNK_MSGPACK ? arrayStarts(b, 4, this.count, `${what}: decisions`) : lineStarts(b, 4, end, this.count, `${what}: decisions`);
    this.declarationStarts = arrayStarts(b, end, this.count, `${what}: declarations`);
  }

  /** Row k (0-based): the decision as it was answered, and the declaration row. */
  row(k: number): { decision: Decision; declaration: DeclarationRow } {
    if (!(k >= 0 && k < this.count)) throw new RangeError(`row ${k} is outside the chunk of ${this.count} rows at seq ${this.firstSeq}`);
    if (!this.decisionStarts) this.index();
    const d = this.decisionStarts!, x = this.declarationStarts!;
    const bytes = this.bytes.subarray(d[k], d[k + 1]);
    const decision = (this.format === CHUNK_MSGPACK ? unpackr.unpack(bytes) : JSON.parse(utf8.decode(bytes))) as Decision;
    return { decision, declaration: unpackr.unpack(this.bytes.subarray(x[k], x[k + 1])) as DeclarationRow };
  }
}
