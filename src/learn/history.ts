/**
 * Historical non-compliance tables: for each risk dimension (HS code at a
 * level, origin, importer, HS × origin, …), the smoothed non-compliance rate
 * of each of its values in labelled history, as kernel inputs.
 *
 * A value seen n times with k non-compliant outcomes (weights w, for recency)
 * has the rate (Σw·y + m·p0) / (Σw + m): a prior p0 (the overall rate) with
 * the strength of m declarations, so that a trader seen twice is not judged
 * on two declarations. What a dimension adds to a declaration's score is
 * weight · (logit(rate) − logit(p0)), the log-odds lift of its value; an
 * unseen value adds 0. The weights come from the compliance model
 * (src/learn/train.ts); the kernel adds the sum through its extra-score
 * column, so scoring stays a dot product.
 */
import { errors } from '../errors.js';
import type { CategoricalColumn, ColumnarBatch } from '../model/columnar.js';

/** Fields a dimension can combine. */
export const DIMENSION_FIELDS = ['hs', 'origin', 'departure', 'office', 'transportMode', 'importer', 'declarant', 'seller', 'taxRate'] as const;
export type DimensionField = (typeof DIMENSION_FIELDS)[number];

export interface DimensionPart {
  field: DimensionField;
  /** HS parts: leading digits compared (2–10). */
  digits?: number;
}

/** The dimensions fitted by default: single fields and their useful pairs. */
export const DEFAULT_DIMENSIONS = [
  'hs2', 'hs4', 'hs6', 'origin', 'departure', 'office', 'transportMode', 'importer', 'declarant', 'seller', 'taxRate',
  'hs6×origin', 'hs6×taxRate', 'importer×hs4', 'importer×seller', 'declarant×importer', 'declarant×office',
] as const;

/** Parses "hs6×origin" (or "hs6*origin", "hs6,origin"): 1–3 parts. */
export function parseDimension(name: string): DimensionPart[] {
  const parts = name.split(/[×*,]/).map((p) => p.trim());
  if (parts.length < 1 || parts.length > 3 || parts.some((p) => p === '')) {
    throw errors.SEL_ERR_OPTION_INVALID(`dimension "${name}": expected 1–3 fields joined by ×`, { field: 'dimensions', expected: 'e.g. hs6, importer, hs6×origin', got: name });
  }
  return parts.map((p) => {
    const hs = /^hs(2|4|6|8|10)$/.exec(p);
    if (hs) return { field: 'hs', digits: Number(hs[1]) };
    if (!(DIMENSION_FIELDS as readonly string[]).includes(p) || p === 'hs') {
      throw errors.SEL_ERR_OPTION_INVALID(`dimension "${name}": unknown field "${p}"`, { field: 'dimensions', expected: `hs2|hs4|hs6|hs8|hs10 or one of ${DIMENSION_FIELDS.filter((f) => f !== 'hs').join(', ')}`, got: p });
    }
    return { field: p as DimensionField };
  });
}

/** The canonical name of a dimension. */
export const dimensionName = (parts: readonly DimensionPart[]): string => parts.map((p) => (p.field === 'hs' ? `hs${p.digits}` : p.field)).join('×');

/** One dimension's table. */
export interface HistoryDimension {
  name: string;
  /** Added to the score per unit of lift (from the compliance model; 1 before fitting). */
  weight: number;
  /** Values ("851712|CN" for a pair), their weighted count and weighted non-compliant count. */
  keys: string[];
  n: number[];
  positives: number[];
}

/** The tables of a ruleset (Ruleset.history). */
export interface HistoryTables {
  /** Overall non-compliance rate of the history (p0). */
  prior: number;
  /** Prior strength m, in declarations. */
  strength: number;
  /** Half-life of the recency weighting in days (0: none). */
  halfLifeDays: number;
  /**
   * AEO status as a documented reduction of the trader rating: subtracted
   * from the score of a declaration by an AEO-certified importer (log-odds;
   * ln 2 halves the odds). Absent: 0.
   */
  aeoReduction?: number;
  dimensions: HistoryDimension[];
}

const logit = (p: number) => Math.log(p / (1 - p));

/** Lift of each value of a dimension: logit of the smoothed rate minus logit(p0). */
export function lifts(t: HistoryTables, d: HistoryDimension): Float64Array {
  const out = new Float64Array(d.keys.length);
  const l0 = logit(t.prior);
  for (let i = 0; i < out.length; i++) out[i] = logit((d.positives[i] + t.strength * t.prior) / (d.n[i] + t.strength)) - l0;
  return out;
}

/** The smoothed rate of value i. */
export const smoothedRate = (t: HistoryTables, d: HistoryDimension, i: number): number => (d.positives[i] + t.strength * t.prior) / (d.n[i] + t.strength);

/** The key of one row for a dimension from its field values ('' and NaN are missing: no key). */
export function keyOf(parts: readonly DimensionPart[], value: (f: DimensionField) => string): string | undefined {
  let key = '';
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k];
    let v = value(p.field);
    if (v === '' || v === 'NaN') return undefined;
    if (p.digits) {
      if (v.length < p.digits) return undefined;
      v = v.slice(0, p.digits);
    }
    key = k === 0 ? v : `${key}|${v}`;
  }
  return key;
}

/**
 * The keys of a batch for one dimension: per row an index into `keys`
 * (-1: no key), computed per distinct value (and per distinct combination
 * for pairs), not per row, where the batch's dictionaries allow.
 */
export function batchKeys(batch: ColumnarBatch, parts: readonly DimensionPart[]): { row: Int32Array; keys: string[] } {
  const n = batch.size;
  // per part: a per-row id into that part's distinct values
  const ids: Int32Array[] = [];
  const values: string[][] = [];
  for (const p of parts) {
    const id = new Int32Array(n);
    const vals: string[] = [];
    if (p.field === 'taxRate') {
      const seen = new Map<number, number>();
      const col = batch.numeric.taxRate;
      for (let i = 0; i < n; i++) {
        const x = col[i];
        if (Number.isNaN(x)) { id[i] = -1; continue; }
        let k = seen.get(x);
        if (k === undefined) { k = vals.length; vals.push(String(x)); seen.set(x, k); }
        id[i] = k;
      }
    } else {
      const column = p.field as CategoricalColumn;
      const dict = batch.dicts[column];
      const lut = new Int32Array(dict.length);
      const seen = new Map<string, number>();
      for (let c = 0; c < dict.length; c++) {
        let v = dict[c];
        if (v === '' || (p.digits !== undefined && v.length < p.digits)) { lut[c] = -1; continue; }
        if (p.digits !== undefined) v = v.slice(0, p.digits);
        let k = seen.get(v);
        if (k === undefined) { k = vals.length; vals.push(v); seen.set(v, k); }
        lut[c] = k;
      }
      const codes = batch.codes[column];
      for (let i = 0; i < n; i++) id[i] = lut[codes[i]];
    }
    ids.push(id);
    values.push(vals);
  }
  if (parts.length === 1) return { row: ids[0], keys: values[0] };
  // combinations: a dense memo when the product is small, else a map
  const row = new Int32Array(n);
  const keys: string[] = [];
  const sizes = values.map((v) => v.length);
  const space = sizes.reduce((a, b) => a * b, 1);
  const dense = space <= 4 * n + 65_536 ? new Int32Array(space).fill(-1) : undefined;
  const sparse = dense ? undefined : new Map<number, number>();
  for (let i = 0; i < n; i++) {
    let combo = 0;
    let missing = false;
    for (let k = 0; k < parts.length; k++) {
      const v = ids[k][i];
      if (v < 0) { missing = true; break; }
      combo = combo * sizes[k] + v;
    }
    if (missing) { row[i] = -1; continue; }
    let e = dense ? dense[combo] : sparse!.get(combo) ?? -1;
    if (e < 0) {
      e = keys.length;
      let key = values[0][ids[0][i]];
      for (let k = 1; k < parts.length; k++) key += `|${values[k][ids[k][i]]}`;
      keys.push(key);
      if (dense) dense[combo] = e; else sparse!.set(combo, e);
    }
    row[i] = e;
  }
  return { row, keys };
}

/**
 * The history part of a batch's scores: enough to find, for row i and
 * dimension d, the table entry (-1: unseen) — see historyEntry. Single-field
 * dimensions keep one code per row for their column (shared by the
 * dimensions on that column) and an entry per code; pairs keep an entry per row.
 */
export interface BatchHistory {
  dimensions: number;
  /** Per dimension: index into `codes` (single fields) or -1 (pairs). */
  codeOf: number[];
  /** Per dimension: entry by code (single fields) or null. */
  byCode: (Int32Array | null)[];
  /** Per dimension: entry by row (pairs) or null. */
  byRow: (Int32Array | null)[];
  /** Per row, the code of each column a single-field dimension reads. */
  codes: Uint32Array[];
  /** Per row, 1 for an AEO importer (when the tables have an AEO reduction). */
  aeo?: Uint8Array;
}

/** The table entry of row i for dimension d (-1: none). */
export function historyEntry(h: BatchHistory, i: number, d: number): number {
  const r = h.byRow[d];
  return r ? r[i] : h.byCode[d]![h.codes[h.codeOf[d]][i]];
}

/** Open-addressing hash of float64 keys (exact integers < 2^53) to int32 values. */
class NumberHash {
  private readonly keys: Float64Array;
  private readonly vals: Int32Array;
  private readonly mask: number;
  private readonly shift: number;
  readonly capacity: number;
  constructor(capacity: number) {
    let size = 16, bits = 4;
    while (size < capacity * 2) { size *= 2; bits++; }
    this.shift = 32 - bits;
    this.keys = new Float64Array(size).fill(-1);
    this.vals = new Int32Array(size);
    this.mask = size - 1;
    this.capacity = size;
  }
  private slot(k: number): number {
    const lo = k >>> 0, hi = (k / 4294967296) >>> 0;
    // Fibonacci hashing: the top bits of the product index the table
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }
  /** A copy with twice the slots. */
  grown(): NumberHash {
    const g = new NumberHash(this.capacity);
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== -1) g.set(this.keys[i], this.vals[i]);
    return g;
  }
  set(k: number, v: number): void {
    let i = this.slot(k);
    while (this.keys[i] !== -1 && this.keys[i] !== k) i = (i + 1) & this.mask;
    this.keys[i] = k;
    this.vals[i] = v;
  }
  get(k: number): number {
    let i = this.slot(k);
    for (;;) {
      const x = this.keys[i];
      if (x === k) return this.vals[i];
      if (x === -1) return -1;
      i = (i + 1) & this.mask;
    }
  }
}

/** extra[i] += add[code[i]]. */
function addByCode(n: number, code: Uint32Array, add: Float64Array, extra: Float64Array): void {
  for (let i = 0; i < n; i++) extra[i] += add[code[i]];
}

/** A pair dimension whose batch-code combinations fit a dense memo: one hash lookup per distinct combination. */
function pairsMemo(n: number, ac: Uint32Array, al: Int32Array, bc: Uint32Array, bl: Int32Array, s1: number, memo: Int32Array, hash: NumberHash, wl: Float64Array, entry: Int32Array, extra: Float64Array): void {
  const bn = bl.length;
  for (let i = 0; i < n; i++) {
    const ca = ac[i], cb = bc[i];
    const k = ca * bn + cb;
    let e = memo[k];
    if (e === -2) {
      const ga = al[ca], gb = bl[cb];
      e = memo[k] = (ga | gb) < 0 ? -1 : hash.get(ga * s1 + gb);
    }
    entry[i] = e;
    if (e >= 0) extra[i] += wl[e];
  }
}

/** A pair dimension with too many combinations for a memo: one hash lookup per row. */
function pairsHash(n: number, ac: Uint32Array, al: Int32Array, bc: Uint32Array, bl: Int32Array, s1: number, hash: NumberHash, wl: Float64Array, entry: Int32Array, extra: Float64Array): void {
  for (let i = 0; i < n; i++) {
    const ga = al[ac[i]], gb = bl[bc[i]];
    const e = (ga | gb) < 0 ? -1 : hash.get(ga * s1 + gb);
    entry[i] = e;
    if (e >= 0) extra[i] += wl[e];
  }
}

/** A part spec (field and HS digits) shared by dimensions: its values in the tables, numbered. */
interface PartIndex {
  part: DimensionPart;
  ids: Map<string, number>;
}

/**
 * Applies history tables to batches (in the worker, before the kernel).
 * Every value of every part (importer, hs6, …) found in the tables gets a
 * number; per batch, each distinct dictionary value is looked up once, and
 * per row a single-field dimension is an array read, a pair a lookup in an
 * integer hash (no string is built per row).
 */
export class HistoryScorer {
  private readonly parts: PartIndex[] = [];
  /** Per dimension: indices into parts, and the entry lookup. */
  private readonly dims: { parts: number[]; sizes: number[]; single?: Int32Array; hash?: NumberHash; weightedLift: Float64Array }[] = [];

  constructor(readonly tables: HistoryTables) {
    const partIndex = new Map<string, number>();
    for (const d of tables.dimensions) {
      const specs = parseDimension(d.name);
      const idx = specs.map((p) => {
        const name = p.field === 'hs' ? `hs${p.digits}` : p.field;
        let k = partIndex.get(name);
        if (k === undefined) { k = this.parts.length; this.parts.push({ part: p, ids: new Map() }); partIndex.set(name, k); }
        return k;
      });
      // number each part value, then key each entry by its parts' numbers
      const codes = d.keys.map((key) => {
        const values = specs.length === 1 ? [key] : key.split('|');
        return values.map((v, j) => {
          const ids = this.parts[idx[j]].ids;
          let g = ids.get(v);
          if (g === undefined) { g = ids.size; ids.set(v, g); }
          return g;
        });
      });
      const l = lifts(tables, d);
      const weightedLift = l.map((x) => d.weight * x);
      this.dims.push({ parts: idx, sizes: [], weightedLift, ...this.entryLookup(idx, codes) });
    }
    // sizes are known once every dimension numbered its values
    for (const d of this.dims) d.sizes = d.parts.map((k) => this.parts[k].ids.size);
    this.dims.forEach((d, k) => {
      if (d.hash) {
        const keys = tables.dimensions[k].keys;
        const hash = new NumberHash(keys.length);
        keys.forEach((key, e) => {
          const values = key.split('|');
          let code = 0;
          values.forEach((v, j) => { code = code * d.sizes[j] + this.parts[d.parts[j]].ids.get(v)!; });
          hash.set(code, e);
        });
        d.hash = hash;
      }
    });
  }

  private entryLookup(idx: number[], codes: number[][]): { single?: Int32Array; hash?: NumberHash } {
    if (idx.length > 1) return { hash: new NumberHash(1) }; // filled once sizes are final
    const single = new Int32Array(codes.reduce((m, c) => Math.max(m, c[0] + 1), 0)).fill(-1);
    codes.forEach((c, e) => { single[c[0]] = e; });
    return { single };
  }

  /** Per batch code of a part's column (or per distinct tax rate), the number of its value (-1: missing or not in the tables); and per row the code. */
  private partCodes(batch: ColumnarBatch, pi: PartIndex): { lut: Int32Array; code: Uint32Array } {
    const { part, ids } = pi;
    if (part.field === 'taxRate') {
      // rates as codes: an integer hash of the doubles (code 0 is NaN: absent)
      const n = batch.size;
      const col = batch.numeric.taxRate;
      let seen = new NumberHash(64);
      const values: number[] = [-1];
      const code = new Uint32Array(n);
      let last = NaN, lastCode = 0;
      for (let i = 0; i < n; i++) {
        const x = col[i];
        if (x === last) { code[i] = lastCode; continue; }
        let k = 0;
        if (x === x) {
          k = seen.get(x);
          if (k < 0) {
            k = values.length;
            values.push(ids.get(String(x)) ?? -1);
            seen.set(x, k);
            if (values.length > seen.capacity / 4) seen = seen.grown();
          }
        }
        code[i] = k;
        last = x;
        lastCode = k;
      }
      return { lut: Int32Array.from(values), code };
    }
    const column = part.field as CategoricalColumn;
    const dict = batch.dicts[column];
    const lut = new Int32Array(dict.length);
    for (let c = 0; c < dict.length; c++) {
      const v = dict[c];
      lut[c] = v === '' || (part.digits !== undefined && v.length < part.digits) ? -1 : ids.get(part.digits !== undefined ? v.slice(0, part.digits) : v) ?? -1;
    }
    return { lut, code: batch.codes[column] };
  }

  /** Adds each row's history contributions to `extra` (n values) and returns what finds the entries. */
  apply(batch: ColumnarBatch, extra: Float64Array): BatchHistory {
    const n = batch.size;
    const D = this.dims.length;
    const parts = this.parts.map((p) => this.partCodes(batch, p));
    const out: BatchHistory = { dimensions: D, codeOf: new Array(D).fill(-1), byCode: new Array(D).fill(null), byRow: new Array(D).fill(null), codes: [] };
    // single-field dimensions: per column (several parts may read one column: hs2, hs4, hs6),
    // the summed contribution per code, then one read per row and column
    const columns = new Map<Uint32Array, { index: number; add: Float64Array }>();
    for (let d = 0; d < D; d++) {
      const dim = this.dims[d];
      if (!dim.single) continue;
      const { lut, code } = parts[dim.parts[0]];
      let col = columns.get(code);
      if (!col) {
        col = { index: out.codes.length, add: new Float64Array(lut.length) };
        columns.set(code, col);
        out.codes.push(code.slice(0, n));
      }
      const single = dim.single, wl = dim.weightedLift;
      const e = new Int32Array(lut.length);
      for (let c = 0; c < lut.length; c++) {
        const g = lut[c];
        e[c] = g < 0 || g >= single.length ? -1 : single[g];
        if (e[c] >= 0) col.add[c] += wl[e[c]];
      }
      out.codeOf[d] = col.index;
      out.byCode[d] = e;
    }
    for (const [code, { add }] of columns) addByCode(n, code, add, extra);
    const aeo = this.tables.aeoReduction ?? 0;
    if (aeo !== 0) {
      const col = batch.codes.aeo;
      out.aeo = new Uint8Array(n);
      for (let i = 0; i < n; i++) if (col[i] === 1) { extra[i] -= aeo; out.aeo[i] = 1; }
    }
    // pairs (and triples): per distinct combination of batch codes, one hash lookup
    for (let d = 0; d < D; d++) {
      const dim = this.dims[d];
      if (dim.single) continue;
      const wl = dim.weightedLift;
      const hash = dim.hash!, sizes = dim.sizes;
      const ps = dim.parts.map((k) => parts[k]);
      const space = ps.reduce((m, p) => m * p.lut.length, 1);
      const memo = space <= 4 * n + 65_536 ? new Int32Array(space).fill(-2) : undefined;
      const entry = new Int32Array(n);
      if (ps.length === 2) {
        // the common case, in small monomorphic loops the JIT keeps tight
        if (memo) pairsMemo(n, ps[0].code, ps[0].lut, ps[1].code, ps[1].lut, sizes[1], memo, hash, wl, entry, extra);
        else pairsHash(n, ps[0].code, ps[0].lut, ps[1].code, ps[1].lut, sizes[1], hash, wl, entry, extra);
        out.byRow[d] = entry;
        continue;
      }
      for (let i = 0; i < n; i++) {
        let combo = 0, key = 0, missing = false;
        for (let j = 0; j < ps.length; j++) {
          const c = ps[j].code[i];
          combo = combo * ps[j].lut.length + c;
          const g = ps[j].lut[c];
          if (g < 0) missing = true;
          key = key * sizes[j] + g;
        }
        let e: number;
        if (missing) e = -1;
        else if (memo) { e = memo[combo]; if (e === -2) e = memo[combo] = hash.get(key); }
        else e = hash.get(key);
        entry[i] = e;
        if (e >= 0) extra[i] += wl[e];
      }
      out.byRow[d] = entry;
    }
    return out;
  }
}

function invalidHistory(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_RULESET_INVALID(`history.${field}: expected ${expected}`, { field: `history.${field}`, expected, got: typeof got === 'object' ? JSON.stringify(got)?.slice(0, 80) : got });
}

/** Checks history tables (from a model file); returns them unchanged. */
export function validateHistory(raw: unknown): HistoryTables {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) invalidHistory('', 'an object {prior, strength, halfLifeDays, dimensions}', raw);
  const t = raw as HistoryTables;
  if (typeof t.prior !== 'number' || !(t.prior > 0 && t.prior < 1)) invalidHistory('prior', 'a rate in (0, 1)', t.prior);
  if (typeof t.strength !== 'number' || !(t.strength > 0 && Number.isFinite(t.strength))) invalidHistory('strength', 'a number > 0', t.strength);
  if (typeof t.halfLifeDays !== 'number' || !(t.halfLifeDays >= 0)) invalidHistory('halfLifeDays', 'a number >= 0', t.halfLifeDays);
  if (t.aeoReduction !== undefined && (typeof t.aeoReduction !== 'number' || !(t.aeoReduction >= 0 && t.aeoReduction <= 10))) invalidHistory('aeoReduction', 'a number in [0, 10]', t.aeoReduction);
  if (!Array.isArray(t.dimensions)) invalidHistory('dimensions', 'an array', t.dimensions);
  const names = new Set<string>();
  t.dimensions.forEach((d, i) => {
    const at = `dimensions[${i}]`;
    if (d === null || typeof d !== 'object') invalidHistory(at, 'an object {name, weight, keys, n, positives}', d);
    if (typeof d.name !== 'string') invalidHistory(`${at}.name`, 'a dimension such as hs6×origin', d.name);
    const canonical = dimensionName(parseDimension(d.name));
    if (canonical !== d.name || names.has(d.name)) invalidHistory(`${at}.name`, `a canonical, unique dimension name (${canonical})`, d.name);
    names.add(d.name);
    if (typeof d.weight !== 'number' || !Number.isFinite(d.weight)) invalidHistory(`${at}.weight`, 'a finite number', d.weight);
    if (!Array.isArray(d.keys) || !Array.isArray(d.n) || !Array.isArray(d.positives) || d.n.length !== d.keys.length || d.positives.length !== d.keys.length) {
      invalidHistory(`${at}.keys`, 'keys, n and positives: arrays of one length', d.keys?.length);
    }
    for (let k = 0; k < d.keys.length; k++) {
      if (typeof d.keys[k] !== 'string' || !(d.n[k] >= 0) || !(d.positives[k] >= 0) || d.positives[k] > d.n[k] + 1e-9) invalidHistory(`${at}[${k}]`, 'a key with 0 <= positives <= n', [d.keys[k], d.n[k], d.positives[k]]);
    }
  });
  return t;
}
