/**
 * Columnar batches: one typed array per numeric field, categorical fields
 * dictionary-encoded to integers (codes are per batch; the dictionary travels
 * with the batch). All columns of a batch live in ONE ArrayBuffer so that a
 * batch moves to a worker by transfer, not by structured clone.
 */
import { parseIsoDate, type Declaration } from './schema.js';
import { fnv1a32 } from '../kernel/hash.js';
import { errors } from '../errors.js';

export const NUMERIC_COLUMNS = ['customsValue', 'netMass', 'quantity', 'taxRate'] as const;
export type NumericColumn = (typeof NUMERIC_COLUMNS)[number];

/**
 * Categorical columns. `aeo` is encoded with the fixed dictionary
 * ["false", "true"] so that code = 0/1.
 */
export const CATEGORICAL_COLUMNS = [
  'hs', 'origin', 'departure', 'office', 'transportMode', 'importer', 'declarant', 'seller', 'aeo', 'description',
] as const;
export type CategoricalColumn = (typeof CATEGORICAL_COLUMNS)[number];

export type Dictionaries = Record<CategoricalColumn, string[]>;

/** Index of each categorical column in CATEGORICAL_COLUMNS (BatchBuilder.codeOf, pushCoded). */
export const CATEGORICAL_INDEX = Object.fromEntries(CATEGORICAL_COLUMNS.map((c, i) => [c, i])) as Record<CategoricalColumn, number>;
const AEO_INDEX = CATEGORICAL_INDEX.aeo;

export interface ColumnarBatch {
  /** Number of declarations in the batch. */
  readonly size: number;
  /** Row capacity of the underlying buffer (>= size). */
  readonly capacity: number;
  /** The single buffer behind every column (transferable). */
  readonly buffer: ArrayBuffer;
  readonly numeric: Record<NumericColumn, Float64Array>;
  /** Days since 1970-01-01. */
  readonly date: Int32Array;
  /** FNV-1a 32 of the declaration id (drives deterministic random selection). */
  readonly idHash: Uint32Array;
  readonly codes: Record<CategoricalColumn, Uint32Array>;
  readonly dicts: Dictionaries;
}

const layoutCache = new Map<number, { offsets: Record<string, number>; byteLength: number }>();

/** Byte layout of the columns inside a batch buffer of a given capacity (cached per capacity). */
export function batchLayout(capacity: number): { offsets: Record<string, number>; byteLength: number } {
  const cached = layoutCache.get(capacity);
  if (cached) return cached;
  const layout = computeLayout(capacity);
  if (layoutCache.size >= 64) layoutCache.delete(layoutCache.keys().next().value as number);
  layoutCache.set(capacity, layout);
  return layout;
}

function computeLayout(capacity: number): { offsets: Record<string, number>; byteLength: number } {
  const offsets: Record<string, number> = {};
  let at = 0;
  for (const c of NUMERIC_COLUMNS) { offsets[c] = at; at += capacity * 8; }
  offsets.date = at; at += capacity * 4;
  offsets.idHash = at; at += capacity * 4;
  for (const c of CATEGORICAL_COLUMNS) { offsets[`code:${c}`] = at; at += capacity * 4; }
  return { offsets, byteLength: at };
}

/** Rebuilds a batch's views over a (transferred) buffer. */
export function batchViews(buffer: ArrayBuffer, capacity: number, size: number, dicts: Dictionaries): ColumnarBatch {
  const { offsets, byteLength } = batchLayout(capacity);
  if (buffer.byteLength < byteLength) throw new RangeError(`batch buffer of ${buffer.byteLength} bytes is too small for capacity ${capacity}`);
  const numeric = {} as Record<NumericColumn, Float64Array>;
  for (const c of NUMERIC_COLUMNS) numeric[c] = new Float64Array(buffer, offsets[c], size);
  const codes = {} as Record<CategoricalColumn, Uint32Array>;
  for (const c of CATEGORICAL_COLUMNS) codes[c] = new Uint32Array(buffer, offsets[`code:${c}`], size);
  return {
    size,
    capacity,
    buffer,
    numeric,
    date: new Int32Array(buffer, offsets.date, size),
    idHash: new Uint32Array(buffer, offsets.idHash, size),
    codes,
    dicts,
  };
}

/**
 * Checks a batch made outside this module (a library caller's): what the
 * kernel and a worker rely on. Its buffer whole (not detached: a batch sent
 * to a worker is consumed) and long enough for its capacity, size within
 * capacity, every column a view of that buffer at the batch layout's place
 * (a worker rebuilds the views from the layout), every dictionary present,
 * every code below its dictionary's length (the kernel indexes per-batch
 * tables by code). O(rows × columns) for the codes: a few percent of
 * scoring. Throws SEL_ERR_BATCH_INVALID naming the field.
 */
export function validateBatch(batch: ColumnarBatch): void {
  const bad = (field: string, expected: string, got: unknown): never => {
    throw errors.SEL_ERR_BATCH_INVALID(`batch ${field}: expected ${expected}`, { field, expected, got });
  };
  if (batch === null || typeof batch !== 'object') bad('batch', 'a ColumnarBatch (toBatch, BatchBuilder)', typeof batch);
  const { size, capacity, buffer } = batch;
  if (!Number.isInteger(capacity) || capacity < 0) bad('capacity', 'a non-negative integer', capacity);
  if (!Number.isInteger(size) || size < 0 || size > capacity) bad('size', `an integer in [0, capacity ${capacity}]`, size);
  if (!(buffer instanceof ArrayBuffer)) bad('buffer', 'an ArrayBuffer', buffer === null ? null : typeof buffer);
  const { offsets, byteLength } = batchLayout(capacity);
  if (buffer.byteLength < byteLength) bad('buffer', buffer.byteLength === 0 ? 'a buffer not detached (a batch sent to a worker is consumed: make a new one)' : `at least ${byteLength} bytes for capacity ${capacity}`, buffer.byteLength);
  const view = (field: string, v: unknown, at: number) => {
    if (!ArrayBuffer.isView(v) || v.buffer !== buffer || v.byteOffset !== at || (v as unknown as { length: number }).length < size) {
      bad(field, `a view of the batch's buffer at byte ${at} of at least ${size} values (batchViews)`, ArrayBuffer.isView(v) ? `${(v as unknown as { length: number }).length} values at byte ${v.byteOffset}${v.buffer === buffer ? '' : ' of another buffer'}` : typeof v);
    }
  };
  for (const c of NUMERIC_COLUMNS) view(`numeric.${c}`, batch.numeric?.[c], offsets[c]);
  view('date', batch.date, offsets.date);
  view('idHash', batch.idHash, offsets.idHash);
  for (const c of CATEGORICAL_COLUMNS) {
    const dict = batch.dicts?.[c];
    if (!Array.isArray(dict)) bad(`dicts.${c}`, 'an array of strings', dict === undefined ? null : typeof dict);
    const codes = batch.codes?.[c];
    view(`codes.${c}`, codes, offsets[`code:${c}`]);
    let max = 0;
    for (let i = 0; i < size; i++) if (codes[i] > max) max = codes[i];
    if (size > 0 && max >= dict.length) {
      bad(`codes.${c}`, `codes below the dictionary's length ${dict.length}`, `code ${max} at row ${codes.indexOf(max)}`);
    }
  }
  if (batch.dicts.aeo.length !== 2 || batch.dicts.aeo[0] !== 'false' || batch.dicts.aeo[1] !== 'true') bad('dicts.aeo', '["false", "true"]', batch.dicts.aeo.slice(0, 3));
}

/** What crosses a thread boundary: the buffer is transferred, the dictionaries cloned. */
export interface PackedBatch {
  buffer: ArrayBuffer;
  capacity: number;
  size: number;
  dicts: Dictionaries;
}

export function packBatch(batch: ColumnarBatch): PackedBatch {
  return { buffer: batch.buffer, capacity: batch.capacity, size: batch.size, dicts: batch.dicts };
}

export function unpackBatch(p: PackedBatch): ColumnarBatch {
  return batchViews(p.buffer, p.capacity, p.size, p.dicts);
}

/**
 * Accumulates validated declarations into a columnar batch. One builder makes
 * one batch at a time; `finish()` hands the batch over and starts a new one.
 */
export class BatchBuilder {
  private readonly capacity: number;
  private views!: ColumnarBatch;
  private dicts!: Dictionaries;
  /** By CATEGORICAL_INDEX: the dictionaries, each one's codes by value, and the code columns. */
  private dictList!: string[][];
  private mapList!: Map<string, number>[];
  private codeList!: Uint32Array[];
  private n = 0;
  /** Declaration ids, in row order (kept on the host; the kernel sees only idHash). */
  ids: string[] = [];

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    this.reset();
  }

  get length(): number { return this.n; }
  get full(): boolean { return this.n >= this.capacity; }

  /** Allocates the next batch on first use after finish(), not before: a builder used once allocates once. */
  private fresh = false;

  private reset(): void {
    this.fresh = true;
    const buffer = new ArrayBuffer(batchLayout(this.capacity).byteLength);
    this.dicts = {} as Dictionaries;
    for (const c of CATEGORICAL_COLUMNS) this.dicts[c] = [];
    this.dicts.aeo = ['false', 'true'];
    this.views = batchViews(buffer, this.capacity, this.capacity, this.dicts);
    this.dictList = CATEGORICAL_COLUMNS.map((c) => this.dicts[c]);
    this.mapList = CATEGORICAL_COLUMNS.map(() => new Map<string, number>());
    this.codeList = CATEGORICAL_COLUMNS.map((c) => this.views.codes[c]);
    this.n = 0;
    this.ids = [];
  }

  /**
   * The code of `value` in categorical column `c` (CATEGORICAL_INDEX) of the
   * batch the next row goes to, added to its dictionary if new. For
   * pushCoded; `aeo` has its fixed codes and is not looked up.
   */
  codeOf(c: number, value: string): number {
    if (!this.fresh) this.reset();
    const map = this.mapList[c];
    let code = map.get(value);
    if (code === undefined) {
      const dict = this.dictList[c];
      code = dict.length;
      dict.push(value);
      map.set(value, code);
    }
    return code;
  }

  /**
   * Appends a declaration given as its columns: what push() would store
   * for a declaration that already passed validateDeclaration, with the
   * categorical codes from codeOf for this batch (`codes` by
   * CATEGORICAL_INDEX; the aeo entry is 0 or 1), `date` in days since
   * 1970-01-01 and the absent numbers as NaN. The service's MessagePack
   * reader writes rows this way, without a Declaration object.
   */
  pushCoded(id: string, date: number, customsValue: number, netMass: number, quantity: number, taxRate: number, codes: ArrayLike<number>): void {
    if (!this.fresh) this.reset();
    const cols = this.codeList, dicts = this.dictList;
    for (let c = 0; c < cols.length; c++) {
      const code = codes[c];
      if (c !== AEO_INDEX && !(code >= 0 && code < dicts[c].length)) throw new RangeError(`code ${code} of column ${CATEGORICAL_COLUMNS[c]} is not in this batch's dictionary (codeOf gives the codes)`);
    }
    const i = this.row(id, date, customsValue, netMass, quantity, taxRate);
    for (let c = 0; c < cols.length; c++) cols[c][i] = c === AEO_INDEX ? (codes[c] === 1 ? 1 : 0) : codes[c];
  }

  /** A new row with everything but its categorical codes written (push, pushCoded); its index. */
  private row(id: string, date: number, customsValue: number, netMass: number, quantity: number, taxRate: number): number {
    if (!this.fresh) this.reset();
    if (this.n >= this.capacity) throw new RangeError('batch is full');
    const i = this.n++;
    const v = this.views;
    v.numeric.customsValue[i] = customsValue;
    v.numeric.netMass[i] = netMass;
    v.numeric.quantity[i] = quantity;
    v.numeric.taxRate[i] = taxRate;
    v.date[i] = date;
    v.idHash[i] = fnv1a32(id);
    this.ids.push(id);
    return i;
  }

  private encode(c: CategoricalColumn, value: string): number {
    return this.codeOf(CATEGORICAL_INDEX[c], value);
  }

  /** Appends a declaration that already passed validateDeclaration. */
  push(d: Declaration): void {
    const i = this.row(d.id, parseIsoDate(d.date), d.customsValue, d.netMass, d.quantity ?? NaN, d.taxRate ?? NaN);
    const v = this.views;
    v.codes.hs[i] = this.encode('hs', d.hs);
    v.codes.origin[i] = this.encode('origin', d.origin);
    v.codes.departure[i] = this.encode('departure', d.departure ?? '');
    v.codes.office[i] = this.encode('office', d.office);
    v.codes.transportMode[i] = this.encode('transportMode', d.transportMode ?? '');
    v.codes.importer[i] = this.encode('importer', d.importer);
    v.codes.declarant[i] = this.encode('declarant', d.declarant ?? '');
    v.codes.seller[i] = this.encode('seller', d.seller ?? '');
    v.codes.aeo[i] = d.aeo === true ? 1 : 0;
    v.codes.description[i] = this.encode('description', d.description ?? '');
  }

  /** Returns the batch built so far (views trimmed to its size) and starts a new one. */
  finish(): { batch: ColumnarBatch; ids: string[] } {
    if (!this.fresh) this.reset(); // finish() twice in a row: an empty batch
    const batch = this.n === this.capacity ? this.views : batchViews(this.views.buffer, this.capacity, this.n, this.dicts);
    const ids = this.ids;
    this.fresh = false;
    this.n = 0;
    this.ids = [];
    return { batch, ids };
  }
}

/** Builds one batch from an array of valid declarations (tests, library use). */
export function toBatch(declarations: readonly Declaration[]): { batch: ColumnarBatch; ids: string[] } {
  const b = new BatchBuilder(Math.max(1, declarations.length));
  for (const d of declarations) b.push(d);
  return b.finish();
}

/** Reads row i of a batch back as a declaration (tests, reports). */
export function rowOf(batch: ColumnarBatch, i: number, id: string): Declaration {
  const str = (c: CategoricalColumn) => batch.dicts[c][batch.codes[c][i]];
  const d: Declaration = {
    id,
    date: new Date(batch.date[i] * 86_400_000).toISOString().slice(0, 10),
    office: str('office'),
    importer: str('importer'),
    hs: str('hs'),
    origin: str('origin'),
    customsValue: batch.numeric.customsValue[i],
    netMass: batch.numeric.netMass[i],
  };
  const opt = (k: 'declarant' | 'seller' | 'departure' | 'transportMode' | 'description') => {
    const s = str(k);
    if (s !== '') d[k] = s;
  };
  opt('declarant'); opt('seller'); opt('departure'); opt('transportMode'); opt('description');
  if (!Number.isNaN(batch.numeric.quantity[i])) d.quantity = batch.numeric.quantity[i];
  if (!Number.isNaN(batch.numeric.taxRate[i])) d.taxRate = batch.numeric.taxRate[i];
  if (batch.codes.aeo[i] === 1) d.aeo = true;
  return d;
}
