/**
 * MessagePack on the scoring hot path, specialised for this service.
 *
 * FastDeclarationReader reads one declaration map straight from request bytes
 * and returns the validated Declaration for the common clean case (keys are
 * schema field names, strings already trimmed, countries upper case, HS codes
 * plain digits, numbers in range): no generic object, no per-field string
 * allocation for repeated values (a small byte-keyed string cache hands back
 * the same instance), no second validation pass. Anything unusual returns
 * value: undefined and the caller decodes that one value with msgpackr and
 * runs validateDeclaration, which normalises it or reports the proper error.
 * The reader must never accept what validateDeclaration rejects, and what it
 * accepts must deep-equal validateDeclaration's value (test/fast-msgpack.test.ts).
 *
 * encodeMsgpack writes the reply documents (decisions, record errors) with the
 * bytes msgpackr's Packr({ useRecords: false, variableMapSize: true }) would
 * write for plain value trees, into one growable buffer: objects walked with
 * for-in (V8 loads the values by field index), the encoded bytes of object keys
 * cached, short ASCII strings written by a plain loop. Anything that is not a
 * plain object, array, string, number, boolean, null or undefined is handed
 * to msgpackr itself.
 *
 * Both keep module or instance state (buffers, caches): use them from one
 * thread, which is how scoring workers run.
 */
import { Packr } from 'msgpackr';
import { errors } from '../errors.js';
import { FIELDS, MAX_CODE_LENGTH, MAX_DESCRIPTION_LENGTH, parseIsoDate, type Declaration, type FieldKind } from '../model/schema.js';
import { CATEGORICAL_COLUMNS, type BatchBuilder } from '../model/columnar.js';

// ---- the schema, as the reader knows it -------------------------------------------

/**
 * The field table the reader was written for, in FIELDS order. If schema.ts
 * ever disagrees (a field added, renamed, re-kinded or made required), the
 * reader turns itself off: every value falls back to msgpackr +
 * validateDeclaration, which is slower but never wrong.
 */
const EXPECTED: readonly (readonly [string, FieldKind, boolean])[] = [
  ['id', 'id', true],
  ['date', 'date', true],
  ['office', 'code', true],
  ['importer', 'code', true],
  ['declarant', 'code', false],
  ['seller', 'code', false],
  ['hs', 'hs', true],
  ['origin', 'country', true],
  ['departure', 'country', false],
  ['transportMode', 'code', false],
  ['customsValue', 'number', true],
  ['netMass', 'number', true],
  ['quantity', 'number', false],
  ['taxRate', 'number', false],
  ['description', 'text', false],
  ['aeo', 'boolean', false],
];

const NFIELDS = 16;

const K_ID = 0, K_CODE = 1, K_DATE = 2, K_HS = 3, K_COUNTRY = 4, K_TEXT = 5, K_NUMBER = 6, K_BOOLEAN = 7;
const KIND_CODE: Record<FieldKind, number> = { id: K_ID, code: K_CODE, date: K_DATE, hs: K_HS, country: K_COUNTRY, text: K_TEXT, number: K_NUMBER, boolean: K_BOOLEAN };

/** Whether FIELDS is exactly the table above (else the reader always falls back). */
export const FAST_READER_ENABLED: boolean =
  FIELDS.length === EXPECTED.length &&
  EXPECTED.every(([name, kind, required], i) => FIELDS[i].name === name && FIELDS[i].kind === kind && FIELDS[i].required === required) &&
  FIELDS.every((f) => f.kind !== 'number' || (typeof f.min === 'number' && typeof f.max === 'number'));

const KIND = new Uint8Array(NFIELDS);
const MIN = new Float64Array(NFIELDS);
const MAX = new Float64Array(NFIELDS);
let REQUIRED_MASK = 0;
for (let f = 0; f < NFIELDS; f++) {
  const [, kind, required] = EXPECTED[f];
  KIND[f] = KIND_CODE[kind];
  const spec = FIELDS.find((s) => s.name === EXPECTED[f][0]);
  MIN[f] = spec?.min ?? Infinity; // no spec: nothing is in range
  MAX[f] = spec?.max ?? -Infinity;
  if (required) REQUIRED_MASK |= 1 << f;
}

/** UTF-8 bytes of a string of at most MAX_CODE_LENGTH UTF-16 units fit in 3 bytes per unit. */
const MAX_CODE_BYTES = MAX_CODE_LENGTH * 3;
const MAX_TEXT_BYTES = MAX_DESCRIPTION_LENGTH * 3;

// Key lookup: a collision-free hash of (first byte, last byte, length) over the
// 16 field names, found at load time; a hit is confirmed against every byte of
// the name (keyIs).
const KEY_BYTES: Uint8Array[] = EXPECTED.map(([name]) => new TextEncoder().encode(name));
const KEY_SLOTS = 64;
const KEY_SLOT = new Int8Array(KEY_SLOTS);
let KEY_SEED = 0;
let KEYS_HASHED = false;
const keyHash = (first: number, last: number, len: number, seed: number) => Math.imul((first << 16) | (last << 8) | len, seed) >>> 26;
for (let seed = 0x9e3779b1 | 0, tries = 0; tries < 100_000; tries++, seed = Math.imul(seed, 0x2c1b3c6d) + 0x297a2d39 | 0) {
  KEY_SLOT.fill(-1);
  let ok = true;
  for (let f = 0; f < NFIELDS && ok; f++) {
    const k = KEY_BYTES[f];
    const h = keyHash(k[0], k[k.length - 1], k.length, seed);
    if (KEY_SLOT[h] !== -1) ok = false;
    else KEY_SLOT[h] = f;
  }
  if (ok) { KEY_SEED = seed; KEYS_HASHED = true; break; }
}

// Key bytes as little-endian 32-bit words at 0, 4, 8… and at length-4 (every
// field name has at least 4 bytes but id, hs and aeo, compared by 16-bit words).
const KEY_WORDS = new Int32Array(NFIELDS * 4);
const KEY_TAIL = new Int32Array(NFIELDS);
const KEY_WORDS_16 = new Int32Array(NFIELDS);
for (let f = 0; f < NFIELDS; f++) {
  const k = KEY_BYTES[f];
  const v = new DataView(k.buffer, k.byteOffset, k.byteLength);
  for (let j = 0; j + 4 <= k.length && j < 16; j += 4) KEY_WORDS[f * 4 + (j >> 2)] = v.getInt32(j, true);
  KEY_TAIL[f] = k.length >= 4 ? v.getInt32(k.length - 4, true) : v.getUint16(k.length - 2, true);
  KEY_WORDS_16[f] = v.getUint16(0, true);
}

const KEY_LEN = new Uint8Array(KEY_BYTES.map((k) => k.length));

// The batch's categorical columns, by CATEGORICAL_COLUMNS index: the field each
// one holds (a string field, or aeo, the boolean). If the two tables ever
// disagree, readInto() turns itself off (it declines every value, and the
// caller takes the general path: msgpackr and validateDeclaration).
const NCOLUMNS = CATEGORICAL_COLUMNS.length;
const COLUMN_FIELD = new Int8Array(CATEGORICAL_COLUMNS.map((c) => EXPECTED.findIndex(([name]) => name === c)));
const AEO_COLUMN = CATEGORICAL_COLUMNS.indexOf('aeo');
const COLUMNS_MAPPED: boolean =
  AEO_COLUMN >= 0 && EXPECTED[COLUMN_FIELD[AEO_COLUMN]][1] === 'boolean' &&
  Array.from(COLUMN_FIELD).every((f, c) => f >= 0 && (c === AEO_COLUMN || ['code', 'hs', 'country', 'text'].includes(EXPECTED[f][1])));
const F_ID = 0, F_DATE = 1, F_VALUE = 10, F_MASS = 11, F_QUANTITY = 12, F_TAX = 13;

/** Whether the `klen` bytes at pos are the name of field f (f < 0: no field). */
function keyIs(dv: DataView, pos: number, klen: number, f: number): boolean {
  if (f < 0 || KEY_LEN[f] !== klen) return false;
  if (klen < 4) return dv.getUint16(pos, true) === KEY_WORDS_16[f] && dv.getUint16(pos + klen - 2, true) === KEY_TAIL[f];
  let k = 0;
  for (; k + 4 <= klen; k += 4) if (dv.getInt32(pos + k, true) !== KEY_WORDS[(f << 2) | (k >> 2)]) return false;
  return k === klen || dv.getInt32(pos + klen - 4, true) === KEY_TAIL[f];
}

// ---- small helpers ----------------------------------------------------------------

const fromCharCode = String.fromCharCode;
const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
const latin1Slice: Latin1Slice | undefined = typeof Buffer === 'function' && typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === 'function'
  ? (Buffer.prototype as unknown as { latin1Slice: Latin1Slice }).latin1Slice
  : undefined;

/** Bytes [s, s+n) that are all ASCII, as a string (no TextDecoder). */
function asciiString(b: Uint8Array, s: number, n: number): string {
  switch (n) {
    case 0: return '';
    case 1: return fromCharCode(b[s]);
    case 2: return fromCharCode(b[s], b[s + 1]);
    case 3: return fromCharCode(b[s], b[s + 1], b[s + 2]);
    case 4: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3]);
    case 5: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4]);
    case 6: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5]);
    case 7: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6]);
    case 8: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]);
    case 9: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8]);
    case 10: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9]);
    case 11: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10]);
    case 12: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11]);
    default:
      if (latin1Slice !== undefined && n > 24) return latin1Slice.call(b, s, s + n); // ASCII is Latin-1
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11]) + asciiString(b, s + 12, n - 12);
  }
}

/** Non-ASCII UTF-8 (strict), or undefined for invalid UTF-8 or a leading BOM (decoders disagree on it). */
function utf8String(b: Uint8Array, s: number, n: number): string | undefined {
  if (n >= 3 && b[s] === 0xef && b[s + 1] === 0xbb && b[s + 2] === 0xbf) return undefined;
  try {
    return utf8Fatal.decode(b.subarray(s, s + n));
  } catch {
    return undefined;
  }
}

function decodeString(b: Uint8Array, v: DataView, s: number, n: number): string | undefined {
  const e = s + n, e4 = e - 3;
  let i = s;
  for (; i < e4; i += 4) if ((v.getInt32(i, true) & 0x80808080) !== 0) return utf8String(b, s, n);
  for (; i < e; i++) if (b[i] >= 0x80) return utf8String(b, s, n);
  return asciiString(b, s, n);
}

const printable = (c: number) => c > 0x20 && c < 0x7f;

/** One step of the string cache's hash. */
function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x01000193);
  return h ^ (h >>> 15);
}

// ---- the end of any value -----------------------------------------------------------

function notMsgpack(b: number, pos: number): Error {
  return errors.SEL_ERR_REQUEST_PARSE(`byte 0x${b.toString(16)} at offset ${pos} is not MessagePack`, { field: 'body', expected: 'MessagePack values', got: `0x${b.toString(16)}` });
}

const u16 = (b: Uint8Array, p: number) => (b[p] << 8) | b[p + 1];
const u32 = (b: Uint8Array, p: number) => b[p] * 0x1000000 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);

/**
 * End of the MessagePack value that starts at `pos`, without decoding it; -1
 * if the buffer ends first. Throws SEL_ERR_REQUEST_PARSE on 0xc1.
 */
export function msgpackEnd(buf: Uint8Array, pos: number, onString?: (from: number, to: number) => void): number {
  if (!Number.isInteger(pos) || pos < 0) throw new RangeError(`pos must be a non-negative integer, got ${pos}`);
  const len = buf.length;
  let pending = 1;
  while (pending > 0) {
    if (pos >= len) return -1;
    const b = buf[pos];
    pending--;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) { pos += 1; continue; }
    if (b <= 0x8f) { pending += 2 * (b & 0x0f); pos += 1; continue; }
    if (b <= 0x9f) { pending += b & 0x0f; pos += 1; continue; }
    if (b <= 0xbf) { if (onString) onString(pos + 1, pos + 1 + (b & 0x1f)); pos += 1 + (b & 0x1f); continue; }
    switch (b) {
      case 0xc4: case 0xd9: if (pos + 2 > len) return -1; if (onString && b === 0xd9) onString(pos + 2, pos + 2 + buf[pos + 1]); pos += 2 + buf[pos + 1]; break;
      case 0xc5: case 0xda: if (pos + 3 > len) return -1; if (onString && b === 0xda) onString(pos + 3, pos + 3 + u16(buf, pos + 1)); pos += 3 + u16(buf, pos + 1); break;
      case 0xc6: case 0xdb: if (pos + 5 > len) return -1; if (onString && b === 0xdb) onString(pos + 5, pos + 5 + u32(buf, pos + 1)); pos += 5 + u32(buf, pos + 1); break;
      case 0xc7: if (pos + 2 > len) return -1; pos += 3 + buf[pos + 1]; break;
      case 0xc8: if (pos + 3 > len) return -1; pos += 4 + u16(buf, pos + 1); break;
      case 0xc9: if (pos + 5 > len) return -1; pos += 6 + u32(buf, pos + 1); break;
      case 0xca: pos += 5; break;
      case 0xcb: pos += 9; break;
      case 0xcc: case 0xd0: pos += 2; break;
      case 0xcd: case 0xd1: pos += 3; break;
      case 0xce: case 0xd2: pos += 5; break;
      case 0xcf: case 0xd3: pos += 9; break;
      case 0xd4: pos += 3; break;
      case 0xd5: pos += 4; break;
      case 0xd6: pos += 6; break;
      case 0xd7: pos += 10; break;
      case 0xd8: pos += 18; break;
      case 0xdc: if (pos + 3 > len) return -1; pending += u16(buf, pos + 1); pos += 3; break;
      case 0xdd: if (pos + 5 > len) return -1; pending += u32(buf, pos + 1); pos += 5; break;
      case 0xde: if (pos + 3 > len) return -1; pending += 2 * u16(buf, pos + 1); pos += 3; break;
      case 0xdf: if (pos + 5 > len) return -1; pending += 2 * u32(buf, pos + 1); pos += 5; break;
      default: throw notMsgpack(b, pos); // 0xc1, the one byte MessagePack never uses
    }
  }
  return pos <= len ? pos : -1;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Whether every string (keys included) of the whole MessagePack value at
 * `pos` is valid UTF-8. msgpackr's decoder does not check: it reads bad
 * bytes as U+FFFD, so two different ids could come out as one. For the
 * values the fast reader hands back (it checks as it reads), not needed.
 */
export function msgpackStringsValid(buf: Uint8Array, pos: number): boolean {
  try {
    msgpackEnd(buf, pos, (from, to) => { if (to <= buf.length) strictUtf8.decode(buf.subarray(from, to)); });
    return true;
  } catch (e) {
    if (e instanceof TypeError) return false; // TextDecoder's fatal error
    throw e;
  }
}

// ---- the declaration reader -----------------------------------------------------------

/**
 * Strings by their bytes: the same bytes give the same string instance, with
 * no allocation. Direct-mapped: a slot holds the last string whose bytes hash
 * there. The hash (FNV-1a style, over 32-bit words) takes every word of
 * strings up to 16 bytes and six spread words of longer ones; a hit is
 * confirmed against every byte the cached string was decoded from.
 */
export class StringCache {
  readonly maxBytes: number;
  private readonly mask: number;
  private readonly strings: (string | undefined)[];
  private readonly lengths: Uint16Array;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(slots: number, maxBytes: number) {
    if (!Number.isInteger(slots) || slots < 1 || slots > 1 << 20 || (slots & (slots - 1)) !== 0) throw new RangeError('string cache slots must be a power of two up to 2^20');
    if (!Number.isInteger(maxBytes) || maxBytes < 4 || maxBytes > 4096) throw new RangeError('string cache maxBytes must be an integer in [4, 4096]');
    this.maxBytes = maxBytes;
    this.mask = slots - 1;
    this.strings = new Array(slots).fill(undefined);
    this.lengths = new Uint16Array(slots);
    this.bytes = new Uint8Array(slots * maxBytes);
    this.view = new DataView(this.bytes.buffer);
  }

  /** The string of the `n` bytes at `s` (`v` views `b`); undefined for invalid UTF-8. Longer than maxBytes: decoded, not cached. */
  get(b: Uint8Array, v: DataView, s: number, n: number): string | undefined {
    if (n > this.maxBytes) return decodeString(b, v, s, n);
    const last = s + n - 4; // the last whole word (overlapping the one before when n % 4 !== 0)
    let h = Math.imul(0x811c9dc5 ^ n, 0x01000193);
    if (n >= 4) {
      h = mix(h, v.getInt32(last, true));
      if (n <= 16) {
        for (let i = s; i < last; i += 4) h = mix(h, v.getInt32(i, true));
      } else {
        h = mix(h, v.getInt32(s, true));
        h = mix(h, v.getInt32(s + 4, true));
        h = mix(h, v.getInt32(s + 8, true));
        h = mix(h, v.getInt32(s + (n >> 1), true));
        h = mix(h, v.getInt32(last - 4, true));
      }
    } else {
      for (let i = s; i < s + n; i++) h = mix(h, b[i]);
    }
    const slot = (h ^ (h >>> 16)) & this.mask;
    const hit = this.strings[slot];
    const o = slot * this.maxBytes;
    if (hit !== undefined && this.lengths[slot] === n && this.same(b, v, s, n, o)) return hit;
    const str = decodeString(b, v, s, n);
    if (str === undefined) return undefined;
    this.strings[slot] = str;
    this.lengths[slot] = n;
    const cb = this.bytes;
    for (let i = 0; i < n; i++) cb[o + i] = b[s + i]; // no view made per miss
    return str;
  }

  private same(b: Uint8Array, v: DataView, s: number, n: number, o: number): boolean {
    if (n < 4) {
      const cb = this.bytes;
      for (let i = 0; i < n; i++) if (cb[o + i] !== b[s + i]) return false;
      return true;
    }
    const cv = this.view;
    const last = n - 4;
    for (let i = 0; i < last; i += 4) if (cv.getInt32(o + i, true) !== v.getInt32(s + i, true)) return false;
    return cv.getInt32(o + last, true) === v.getInt32(s + last, true);
  }
}

export interface FastDeclarationReaderOptions {
  /** Slots of the cache of code values (offices, importers, HS codes, dates…; up to 64 bytes), a power of two (default 8192). */
  cacheSlots?: number;
  /** Slots of the cache of descriptions (up to 256 bytes), a power of two (default 2048). */
  textCacheSlots?: number;
}

export class FastDeclarationReader {
  private readonly codes: StringCache;
  private readonly texts: StringCache;
  private lastBytes: Uint8Array | undefined;
  private lastView: DataView = new DataView(new ArrayBuffer(0));
  private readonly countries: (string | undefined)[] = new Array(26 * 26).fill(undefined);
  private lastDate = '';
  private lastDays = 0;
  // the current declaration's fields, by field index
  private readonly str: (string | undefined)[] = new Array(NFIELDS).fill(undefined);
  private readonly num: number[] = new Array(NFIELDS).fill(0);
  /** The fields present in the last declaration read (a bit per field). */
  private seen = 0;
  private end = 0;
  private readonly rowCodes = new Int32Array(NCOLUMNS);
  private lastSeen = -1;
  private lastBuild: Builder = builderFor(0);
  /** Field index by place in the map, as the last declaration had them. */
  private readonly order = new Int8Array(NFIELDS).fill(-1);

  constructor(options: FastDeclarationReaderOptions = {}) {
    this.codes = new StringCache(options.cacheSlots ?? 8192, 64);
    this.texts = new StringCache(options.textCacheSlots ?? 2048, 256);
  }

  /** End offset of the value the last successful readInto() read. */
  get lastEnd(): number {
    return this.end;
  }

  /**
   * Reads the MessagePack value starting at `pos`. Returns its end offset and,
   * when the value is a map that validateDeclaration would accept as it is,
   * the object validateDeclaration(unpack(value)).value would return. Returns
   * value: undefined whenever anything is unusual (the caller then decodes that
   * value with msgpackr and validates it); end is right either way. end is -1
   * if the buffer ends inside the value. Throws SEL_ERR_REQUEST_PARSE on 0xc1.
   */
  read(bytes: Uint8Array, pos: number): { end: number; value: Declaration | undefined } {
    if (FAST_READER_ENABLED && KEYS_HASHED && this.parse(bytes, pos)) return { end: this.end, value: this.declaration() };
    return { end: msgpackEnd(bytes, pos), value: undefined };
  }

  /**
   * Like read(), but a clean declaration goes straight into `batch`'s columns
   * (BatchBuilder.codeOf, pushCoded), with no Declaration object in between.
   * Returns true if it did, with the value's end in lastEnd (and the same
   * declaration from declaration(), until the next read). Returns false for
   * anything unusual, having written nothing: the caller decodes that value
   * the general way (msgpackEnd finds its end). Throws only what pushCoded
   * throws (a full batch).
   */
  readInto(bytes: Uint8Array, pos: number, batch: BatchBuilder): boolean {
    if (!(FAST_READER_ENABLED && KEYS_HASHED && COLUMNS_MAPPED) || !this.parse(bytes, pos)) return false;
    const { str, num, seen, rowCodes } = this;
    for (let c = 0; c < NCOLUMNS; c++) {
      const f = COLUMN_FIELD[c], present = (seen & (1 << f)) !== 0;
      rowCodes[c] = c === AEO_COLUMN ? (present && num[f] === 1 ? 1 : 0) : batch.codeOf(c, present ? str[f]! : '');
    }
    const quantity = (seen & (1 << F_QUANTITY)) !== 0 ? num[F_QUANTITY] : NaN, taxRate = (seen & (1 << F_TAX)) !== 0 ? num[F_TAX] : NaN;
    batch.pushCoded(str[F_ID]!, num[F_DATE], num[F_VALUE], num[F_MASS], quantity, taxRate, rowCodes);
    return true;
  }

  /** The Declaration of the value the last successful read: the object validateDeclaration(unpack(value)).value would be. */
  declaration(): Declaration {
    // keys in FIELDS order, made in one go
    if (this.seen !== this.lastSeen) { this.lastSeen = this.seen; this.lastBuild = builderFor(this.seen); }
    return this.lastBuild(this.str, this.num);
  }

  /** A DataView over the bytes being read (kept while the same bytes come back, as they do for the values of one body). */
  private viewOf(b: Uint8Array): DataView {
    if (b !== this.lastBytes) {
      this.lastBytes = b;
      this.lastView = new DataView(b.buffer, b.byteOffset, b.byteLength);
    }
    return this.lastView;
  }

  private country(b0: number, b1: number): string {
    const k = (b0 - 65) * 26 + (b1 - 65);
    let s = this.countries[k];
    if (s === undefined) s = this.countries[k] = fromCharCode(b0, b1);
    return s;
  }

  /**
   * Whether the value at pos is a clean declaration: then its fields are in
   * str / num (the date's days in num too), the fields present in seen, and its end in end. False
   * for anything unusual. Never throws.
   */
  private parse(b: Uint8Array, pos: number): boolean {
    const n = b.length;
    if (pos < 0 || pos >= n) return false;
    let t = b[pos];
    let count: number;
    if (t >= 0x80 && t <= 0x8f) { count = t & 0x0f; pos += 1; }
    else if (t === 0xde) { if (pos + 3 > n) return false; count = (b[pos + 1] << 8) | b[pos + 2]; pos += 3; }
    else if (t === 0xdf) { if (pos + 5 > n) return false; count = b[pos + 1] * 0x1000000 + ((b[pos + 2] << 16) | (b[pos + 3] << 8) | b[pos + 4]); pos += 5; }
    else return false;
    if (count > NFIELDS) return false; // more entries than fields: an unknown or repeated key
    const str = this.str, num = this.num, order = this.order;
    const dv = this.viewOf(b);
    let seen = 0;
    for (let i = 0; i < count; i++) {
      // the key: fixstr or str8, one of the field names
      if (pos >= n) return false;
      t = b[pos];
      let klen: number;
      if (t >= 0xa2 && t <= 0xbf) { klen = t - 0xa0; pos += 1; }
      else if (t === 0xd9) { if (pos + 2 > n) return false; klen = b[pos + 1]; pos += 2; }
      else return false;
      if (pos + klen >= n) return false; // the key and at least one byte of value
      // most producers write the fields in one order: try the field that came at this place last time first
      let f = order[i];
      if (!keyIs(dv, pos, klen, f)) {
        f = KEY_SLOT[keyHash(b[pos], b[pos + klen - 1], klen, KEY_SEED)];
        if (!keyIs(dv, pos, klen, f)) return false;
        order[i] = f;
      }
      const bit = 1 << f;
      if ((seen & bit) !== 0) return false;
      seen |= bit;
      pos += klen;
      // the value
      t = b[pos];
      const kind = KIND[f];
      if (kind === K_NUMBER) {
        let v: number;
        if (t <= 0x7f) { v = t; pos += 1; }
        else if (t >= 0xe0) { v = t - 0x100; pos += 1; }
        else {
          switch (t) {
            // big-endian, as DataView reads by default; float32 becomes the float32's value, as in msgpackr
            case 0xca: if (pos + 5 > n) return false; v = dv.getFloat32(pos + 1); pos += 5; break;
            case 0xcb: if (pos + 9 > n) return false; v = dv.getFloat64(pos + 1); pos += 9; break;
            case 0xcc: if (pos + 2 > n) return false; v = b[pos + 1]; pos += 2; break;
            case 0xcd: if (pos + 3 > n) return false; v = dv.getUint16(pos + 1); pos += 3; break;
            case 0xce: if (pos + 5 > n) return false; v = dv.getUint32(pos + 1); pos += 5; break;
            case 0xd0: if (pos + 2 > n) return false; v = dv.getInt8(pos + 1); pos += 2; break;
            case 0xd1: if (pos + 3 > n) return false; v = dv.getInt16(pos + 1); pos += 3; break;
            case 0xd2: if (pos + 5 > n) return false; v = dv.getInt32(pos + 1); pos += 5; break;
            default: return false; // nil, (u)int64 (BigInt in msgpackr), strings, anything else
          }
        }
        if (!(v >= MIN[f] && v <= MAX[f])) return false; // NaN fails too
        num[f] = v;
        continue;
      }
      if (kind === K_BOOLEAN) {
        if (t === 0xc2) num[f] = 0;
        else if (t === 0xc3) num[f] = 1;
        else return false;
        pos += 1;
        continue;
      }
      // every other kind is a string
      let s: number, len: number;
      if (t >= 0xa0 && t <= 0xbf) { len = t & 0x1f; s = pos + 1; }
      else if (t === 0xd9) { if (pos + 2 > n) return false; len = b[pos + 1]; s = pos + 2; }
      else if (t === 0xda) { if (pos + 3 > n) return false; len = (b[pos + 1] << 8) | b[pos + 2]; s = pos + 3; }
      else if (t === 0xdb) { if (pos + 5 > n) return false; len = b[pos + 1] * 0x1000000 + ((b[pos + 2] << 16) | (b[pos + 3] << 8) | b[pos + 4]); s = pos + 5; }
      else return false;
      pos = s + len;
      if (pos > n) return false;
      let v: string | undefined;
      switch (kind) {
        case K_ID:
        case K_CODE:
          // trimmed already and not blank: printable ASCII at both ends
          if (len === 0 || len > MAX_CODE_BYTES || !printable(b[s]) || !printable(b[pos - 1])) return false;
          // ids are unique by design: decoded, not cached (they would only evict the repeated codes)
          v = kind === K_ID ? decodeString(b, dv, s, len) : this.codes.get(b, dv, s, len);
          if (v === undefined || v.length > MAX_CODE_LENGTH) return false;
          break;
        case K_DATE:
          if (len !== 10) return false;
          v = this.codes.get(b, dv, s, len);
          if (v === undefined) return false;
          if (v !== this.lastDate) {
            const days = parseIsoDate(v);
            if (Number.isNaN(days)) return false;
            this.lastDate = v;
            this.lastDays = days;
          }
          num[f] = this.lastDays;
          break;
        case K_HS:
          if (len < 6 || len > 10) return false;
          for (let k = s; k < pos; k++) if (b[k] < 0x30 || b[k] > 0x39) return false;
          v = this.codes.get(b, dv, s, len);
          break;
        case K_COUNTRY: {
          if (len !== 2) return false;
          const c0 = b[s], c1 = b[s + 1];
          if (c0 < 0x41 || c0 > 0x5a || c1 < 0x41 || c1 > 0x5a) return false; // lower case is upper-cased by validation: fall back
          v = this.country(c0, c1);
          break;
        }
        case K_TEXT:
          if (len === 0 || len > MAX_TEXT_BYTES) return false;
          v = this.texts.get(b, dv, s, len);
          if (v === undefined || v.length > MAX_DESCRIPTION_LENGTH) return false;
          // kept as it is (not trimmed); only a blank one (dropped by validation) falls back
          if (!printable(b[s]) && v.trim() === '') return false;
          break;
        default:
          return false;
      }
      str[f] = v;
    }
    if ((seen & REQUIRED_MASK) !== REQUIRED_MASK) return false;
    this.end = pos;
    this.seen = seen;
    return true;
  }
}

type Builder = (str: (string | undefined)[], num: number[]) => Declaration;
const builders = new Map<number, Builder>();

/**
 * The function that builds the declaration holding the fields in `seen` (a
 * bit per field): one object literal with exactly those keys, so the object
 * is allocated once with every property in place, not grown key by key. The
 * source is made from the schema's field names only.
 */
function builderFor(seen: number): Builder {
  let build = builders.get(seen);
  if (build !== undefined) return build;
  const parts: string[] = [];
  for (let f = 0; f < NFIELDS; f++) {
    if ((seen & (1 << f)) === 0) continue;
    const value = KIND[f] === K_NUMBER ? `n[${f}]` : KIND[f] === K_BOOLEAN ? `n[${f}] === 1` : `s[${f}]`;
    parts.push(`${JSON.stringify(EXPECTED[f][0])}: ${value}`);
  }
  try {
    build = new Function('s', 'n', `'use strict'; return { ${parts.join(', ')} };`) as Builder;
  } catch {
    // code generation disallowed (--disallow-code-generation-from-strings): key by key
    build = (str, num) => {
      const out: Record<string, unknown> = {};
      for (let f = 0; f < NFIELDS; f++) {
        if ((seen & (1 << f)) === 0) continue;
        out[EXPECTED[f][0]] = KIND[f] === K_NUMBER ? num[f] : KIND[f] === K_BOOLEAN ? num[f] === 1 : str[f];
      }
      return out as unknown as Declaration;
    };
  }
  builders.set(seen, build);
  return build;
}

// ---- the encoder ----------------------------------------------------------------------

const INITIAL_BUFFER = 64 * 1024;
/** A buffer grown past this is dropped after the call, so one huge reply does not pin memory. */
const KEEP_BUFFER = 4 * 1024 * 1024;

let out = new Uint8Array(INITIAL_BUFFER);
let view = new DataView(out.buffer);
let at = 0;
let encoding = false;
/** Whether Object.prototype has no enumerable property (then for-in over a plain object visits exactly Object.keys). */
let prototypeClean = true;

const textEncoder = new TextEncoder();
/** msgpackr itself, for what this encoder does not handle (Dates, Maps, typed arrays, bigints, class instances…). */
const fallbackPackr = new Packr({ useRecords: false, variableMapSize: true });

/** Encoded bytes (header included) of object keys seen before. */
const KEY_CACHE_MAX_LENGTH = 32;
const KEY_CACHE_MAX_ENTRIES = 2048;
const keyCache = new Map<string, Uint8Array>();

function room(n: number): void {
  if (at + n > out.length) grow(at + n);
}

function grow(need: number): void {
  let size = out.length * 2;
  while (size < need) size *= 2;
  const next = new Uint8Array(size);
  next.set(out.subarray(0, at));
  out = next;
  view = new DataView(next.buffer);
}

/**
 * MessagePack encoding of a tree of plain objects, arrays, strings, numbers,
 * booleans, null and undefined: byte for byte what
 * `new Packr({ useRecords: false, variableMapSize: true }).pack(value)` writes
 * (undefined as msgpackr's fixext 1 type 0, which it decodes as undefined;
 * -0 as 0; integers beyond 32 bits as float64, since msgpackr decodes int64 as
 * a BigInt). Any other value inside (Date, Map, Set, typed array, bigint,
 * class instance, null-prototype object…) is encoded by msgpackr itself. The
 * result is a fresh Uint8Array that owns its ArrayBuffer exactly.
 */
export function encodeMsgpack(value: unknown): Uint8Array {
  if (encoding) {
    // re-entered (from a getter): msgpackr encodes this one
    return new Uint8Array(fallbackPackr.pack(value));
  }
  return encodeWith(() => write(value));
}

/** Runs `body` against the module's output buffer and returns what it wrote (a fresh Uint8Array owning its bytes). Not re-entrant: callers check `encoding`. */
function encodeWith(body: () => void): Uint8Array {
  encoding = true;
  try {
    at = 0;
    prototypeClean = !hasEnumerable(Object.prototype);
    body();
    const result = out.slice(0, at);
    if (out.length > KEEP_BUFFER) { out = new Uint8Array(INITIAL_BUFFER); view = new DataView(out.buffer); }
    return result;
  } finally {
    encoding = false;
    at = 0;
  }
}

function hasEnumerable(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

function write(value: unknown): void {
  switch (typeof value) {
    case 'string': writeString(value); return;
    case 'number': writeNumber(value); return;
    case 'boolean': room(1); out[at++] = value ? 0xc3 : 0xc2; return;
    case 'undefined': room(3); out[at++] = 0xd4; out[at++] = 0; out[at++] = 0; return; // msgpackr's undefined: fixext 1, type 0
    case 'object':
      if (value === null) { room(1); out[at++] = 0xc0; return; }
      if (Array.isArray(value)) { writeArray(value); return; } // msgpackr writes every array (subclasses too) as an array
      if (Object.getPrototypeOf(value) === Object.prototype && prototypeClean) {
        if (Object.isFrozen(value)) writeFrozen(value as Record<string, unknown>);
        else writeObject(value as Record<string, unknown>);
        return;
      }
      break;
  }
  writeForeign(value);
}

/** Bytes already encoded, copied in (short ones, such as keys, by a plain loop). */
function writeBytes(b: Uint8Array): void {
  const m = b.length;
  room(m);
  if (m > 64) { out.set(b, at); at += m; return; }
  const o = out;
  let p = at;
  for (let i = 0; i < m; i++) o[p++] = b[i];
  at = p;
}

/** An array header of n elements. */
function writeArrayHeader(n: number): void {
  room(5);
  if (n < 0x10) out[at++] = 0x90 | n;
  else if (n < 0x10000) { out[at++] = 0xdc; out[at++] = n >> 8; out[at++] = n & 0xff; }
  else { out[at++] = 0xdd; view.setUint32(at, n); at += 4; }
}

const keyBytes = (key: string): Uint8Array => new Uint8Array(fallbackPackr.pack(key));
const DK_ID = keyBytes('id'), DK_CHANNEL = keyBytes('channel'), DK_SCORE = keyBytes('score'), DK_CONTROL = keyBytes('controlGroup');
const DK_VERSION = keyBytes('rulesetVersion'), DK_REASONS = keyBytes('reasons');
const DK_CODE = keyBytes('code'), DK_FEATURE = keyBytes('feature'), DK_Z = keyBytes('z'), DK_DIRECTION = keyBytes('direction');
const DK_PEER_LEVEL = keyBytes('peerLevel'), DK_CONTRIBUTION = keyBytes('contribution');

/** What decisionAt (src/decisions.ts) makes: the keys, in this order, and nothing else. */
export interface DecisionShape {
  id: string; channel: string; score: number; controlGroup: boolean; rulesetVersion: string;
  reasons: ({ code: string } & Record<string, unknown>)[];
}

/**
 * A list of decisions as decisionAt makes them, encoded byte for byte as
 * encodeMsgpack would encode the same list, without looking up their keys:
 * the decision's six keys and a DEVIATION reason's six (the most frequent
 * reason) are written from constants; every other reason through write().
 * Only for objects of exactly that shape (keys in that order, no others).
 */
export function encodeDecisions(decisions: readonly DecisionShape[]): Uint8Array {
  if (encoding) return encodeMsgpack(decisions);
  return encodeWith(() => writeDecisionList(decisions));
}

function writeDecisionList(decisions: readonly DecisionShape[]): void {
  writeArrayHeader(decisions.length);
  for (let k = 0; k < decisions.length; k++) writeDecision(decisions[k]);
}

/** One decision as decisionAt makes it (see encodeDecisions): a stream's record. */
export function encodeDecision(decision: DecisionShape): Uint8Array {
  if (encoding) return encodeMsgpack(decision);
  return encodeWith(() => writeDecision(decision));
}

function writeDecision(d: DecisionShape): void {
  room(1);
  out[at++] = 0x86;
  writeBytes(DK_ID); writeString(d.id);
  writeBytes(DK_CHANNEL); writeString(d.channel);
  writeBytes(DK_SCORE); writeNumber(d.score);
  writeBytes(DK_CONTROL); room(1); out[at++] = d.controlGroup ? 0xc3 : 0xc2;
  writeBytes(DK_VERSION); writeString(d.rulesetVersion);
  writeBytes(DK_REASONS);
  const reasons = d.reasons;
  const m = reasons.length;
  writeArrayHeader(m);
  for (let r = 0; r < m; r++) {
    const x = reasons[r];
    if (x.code !== 'DEVIATION') {
      // a shared frozen reason (HISTORY, PROFILE, AEO, …) whose bytes are kept: copied without write()'s
      // checks, which would come to the same bytes (kept bytes hold own properties only, as msgpackr writes)
      const kept = frozenBytes.get(x);
      if (kept !== undefined) writeBytes(kept);
      else write(x);
      continue;
    }
    room(1);
    out[at++] = 0x86;
    writeBytes(DK_CODE); writeString('DEVIATION');
    writeBytes(DK_FEATURE); writeString(x.feature as string);
    writeBytes(DK_Z); writeNumber(x.z as number);
    writeBytes(DK_DIRECTION); writeString(x.direction as string);
    writeBytes(DK_PEER_LEVEL); writeString(x.peerLevel as string);
    writeBytes(DK_CONTRIBUTION); writeNumber(x.contribution as number);
  }
}

/**
 * Bytes already encoded as one MessagePack value, written as they are where
 * encodeMsgpack meets this wrapper: a part encoded once and sent in two places
 * (a reply's decisions, and the decision log's copy of them) is encoded once.
 */
export class EncodedMsgpack {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Decisions as decisionAt makes them, written where encodeMsgpack meets this
 * wrapper exactly as encodeDecisions would write them, but in place: a reply
 * whose decisions are needed nowhere else is encoded in one go, not into a
 * buffer of its own first and copied in.
 */
export class InlineDecisions {
  constructor(readonly decisions: readonly DecisionShape[]) {}
}

function writeForeign(value: unknown): void {
  if (value instanceof EncodedMsgpack) { writeBytes(value.bytes); return; }
  if (value instanceof InlineDecisions) { writeDecisionList(value.decisions); return; }
  const bytes = fallbackPackr.pack(value);
  room(bytes.length);
  out.set(bytes, at);
  at += bytes.length;
}

/**
 * A plain object: its own enumerable string keys in Object.keys order (for-in
 * visits exactly those when the prototype is Object.prototype and that has no
 * enumerable property; V8 then loads the values by field index). The header is
 * written as a fixmap and widened afterwards in the rare object of 16 keys or more.
 */
function writeObject(o: Record<string, unknown>): void {
  room(1);
  const start = at++;
  let n = 0;
  for (const key in o) {
    if (key === 'constructor') {
      // an own "constructor" hides Object: msgpackr takes another path (toJSON…); let it encode this object
      at = start;
      writeForeign(o);
      return;
    }
    writeKey(key);
    write(o[key]);
    n++;
  }
  if (n < 0x10) { out[start] = 0x80 | n; return; }
  const shift = n < 0x10000 ? 2 : 4;
  room(shift);
  out.copyWithin(start + 1 + shift, start + 1, at);
  at += shift;
  if (shift === 2) { out[start] = 0xde; out[start + 1] = n >> 8; out[start + 2] = n & 0xff; }
  else { out[start] = 0xdf; view.setUint32(start + 1, n); }
}

/**
 * Frozen objects whose properties are all plain data of primitive values, or
 * of frozen plain arrays and objects of such values (two levels down at
 * most), cannot change: their bytes are kept (weakly) after the first time
 * and copied from then on. Decisions share such objects (the HISTORY reason
 * of a table entry is one frozen object, cited by every decision it applies
 * to; so are a profile's, a keyword term's with its frozen lists, …).
 */
const frozenBytes = new WeakMap<object, Uint8Array>();

function writeFrozen(o: Record<string, unknown>): void {
  const hit = frozenBytes.get(o);
  if (hit !== undefined) { writeBytes(hit); return; }
  const start = at;
  writeObject(o);
  if (immutableLeaf(o)) frozenBytes.set(o, out.slice(start, at));
}

function immutableLeaf(o: object, depth = 0): boolean {
  for (const d of Object.values(Object.getOwnPropertyDescriptors(o))) {
    if (!('value' in d)) return false;
    const v: unknown = d.value;
    if (typeof v === 'function') return false;
    if (v === null || typeof v !== 'object') continue;
    // a nested value: frozen plain data itself, written by write() the same way each time
    const proto = Object.getPrototypeOf(v);
    if (depth >= 2 || !Object.isFrozen(v) || (Array.isArray(v) ? proto !== Array.prototype : proto !== Object.prototype) || !immutableLeaf(v, depth + 1)) return false;
  }
  return Object.getOwnPropertySymbols(o).length === 0;
}

function writeArray(a: unknown[]): void {
  const n = a.length;
  writeArrayHeader(n);
  for (let i = 0; i < n; i++) write(a[i]); // holes read as undefined, as in msgpackr
}

function writeNumber(v: number): void {
  room(9);
  if (v >>> 0 === v) { // 0 ≤ v < 2^32, integer (and -0, which msgpackr writes as 0)
    if (v < 0x80) out[at++] = v;
    else if (v < 0x100) { out[at++] = 0xcc; out[at++] = v; }
    else if (v < 0x10000) { out[at++] = 0xcd; out[at++] = v >> 8; out[at++] = v & 0xff; }
    else { out[at++] = 0xce; view.setUint32(at, v); at += 4; }
  } else if (v >> 0 === v) { // -2^31 ≤ v < 0, integer
    if (v >= -0x20) out[at++] = 0x100 + v;
    else if (v >= -0x80) { out[at++] = 0xd0; out[at++] = v + 0x100; }
    else if (v >= -0x8000) { out[at++] = 0xd1; view.setInt16(at, v); at += 2; }
    else { out[at++] = 0xd2; view.setInt32(at, v); at += 4; }
  } else {
    // fractions, NaN, ±Infinity and integers beyond 32 bits: float64, as msgpackr
    out[at++] = 0xcb;
    view.setFloat64(at, v);
    at += 8;
  }
}

/** An object key: its encoded bytes come from the key cache after the first time. */
function writeKey(key: string): void {
  let hit = keyCache.get(key);
  if (hit === undefined) {
    const start = at;
    writeString(key);
    if (key.length <= KEY_CACHE_MAX_LENGTH) {
      if (keyCache.size >= KEY_CACHE_MAX_ENTRIES) keyCache.clear();
      keyCache.set(key, out.slice(start, at));
    }
    return;
  }
  writeBytes(hit);
}

/** A string: short ASCII ones by a plain loop, the rest as msgpackr encodes them. */
function writeString(s: string): void {
  const n = s.length;
  if (n < 0x20) {
    room(1 + n);
    const o = out;
    let p = at + 1;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) { encodeString(s, n); return; }
      o[p++] = c;
    }
    o[at] = 0xa0 | n;
    at = p;
    return;
  }
  encodeString(s, n);
}

/** msgpackr's string encoding: its own UTF-8 loop below 64 UTF-16 units, the platform's encoder above. */
function encodeString(s: string, n: number): void {
  const header = n < 0x20 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  room(header + n * 3);
  const start = at + header;
  let length: number;
  if (n < 0x40) {
    let p = start;
    for (let i = 0; i < n; i++) {
      let c1 = s.charCodeAt(i);
      let c2: number;
      if (c1 < 0x80) out[p++] = c1;
      else if (c1 < 0x800) { out[p++] = (c1 >> 6) | 0xc0; out[p++] = (c1 & 0x3f) | 0x80; }
      else if ((c1 & 0xfc00) === 0xd800 && ((c2 = s.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
        c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff);
        i++;
        out[p++] = (c1 >> 18) | 0xf0;
        out[p++] = ((c1 >> 12) & 0x3f) | 0x80;
        out[p++] = ((c1 >> 6) & 0x3f) | 0x80;
        out[p++] = (c1 & 0x3f) | 0x80;
      } else {
        // lone surrogates too, as msgpackr writes them
        out[p++] = (c1 >> 12) | 0xe0;
        out[p++] = ((c1 >> 6) & 0x3f) | 0x80;
        out[p++] = (c1 & 0x3f) | 0x80;
      }
    }
    length = p - start;
  } else {
    length = textEncoder.encodeInto(s, out.subarray(start)).written;
  }
  if (length < 0x20) {
    out[at++] = 0xa0 | length;
  } else if (length < 0x100) {
    if (header < 2) out.copyWithin(at + 2, at + 1, at + 1 + length);
    out[at++] = 0xd9;
    out[at++] = length;
  } else if (length < 0x10000) {
    if (header < 3) out.copyWithin(at + 3, at + header, at + header + length);
    out[at++] = 0xda;
    out[at++] = length >> 8;
    out[at++] = length & 0xff;
  } else {
    if (header < 5) out.copyWithin(at + 5, at + header, at + header + length);
    out[at++] = 0xdb;
    view.setUint32(at, length);
    at += 4;
  }
  at += length;
}
