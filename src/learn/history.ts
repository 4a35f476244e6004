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
import { hashTableBits, homeSlot } from '../kernel/hash.js';
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
  /**
   * Per value (optional): the weighted revenue of its non-compliant
   * declarations (by default customsValue × taxRate / 100: what went
   * uncollected), for its revenue at risk (revenueAtRisk). Evidence for
   * analysts; the kernel does not read it.
   */
  revenue?: number[];
}

/** The tables of a ruleset (Ruleset.history). */
export interface HistoryTables {
  /** Overall non-compliance rate of the history (p0). */
  prior: number;
  /** Prior strength m, in declarations. */
  strength: number;
  /**
   * Prior strength of the trader dimensions (those with an importer,
   * declarant or seller part; isTraderDimension), when it differs from
   * `strength`: training keeps it at least DEFAULT_TRADER_STRENGTH, so that a
   * trader's rate is not judged on a few declarations whatever strength the
   * other dimensions take. Absent: `strength`.
   */
  traderStrength?: number;
  /** Half-life of the recency weighting in days (0: none). */
  halfLifeDays: number;
  /**
   * AEO status as a documented reduction of the trader rating: subtracted
   * from the score of a declaration by an AEO-certified importer (log-odds;
   * ln 2 halves the odds). Absent: 0.
   */
  aeoReduction?: number;
  /** Revenue of non-compliance per declaration over the whole history (r0, the prior of revenueAtRisk); absent when the tables hold no revenue. */
  revenuePrior?: number;
  dimensions: HistoryDimension[];
}

const logit = (p: number) => Math.log(p / (1 - p));

/** The fields that name a trader: a dimension with one of them rates traders (TrainOptions.traderStrength). */
export const TRADER_FIELDS: readonly DimensionField[] = ['importer', 'declarant', 'seller'];

/** Whether a dimension ("importer×hs4", …) rates traders: one of its parts is an importer, declarant or seller. */
export function isTraderDimension(name: string): boolean {
  let x = traderDimensions.get(name);
  if (x === undefined) traderDimensions.set(name, (x = parseDimension(name).some((p) => TRADER_FIELDS.includes(p.field))));
  return x;
}
const traderDimensions = new Map<string, boolean>();

/**
 * Whether a dimension is part of the behavioural rating: one of its parts is
 * an importer or a declarant (the dimensions whose counts are
 * recency-weighted; a seller is a trader too, but not rated on its history
 * with this administration).
 */
export function isRatingDimension(name: string): boolean {
  return parseDimension(name).some((p) => p.field === 'importer' || p.field === 'declarant');
}

/** The prior strength of a dimension's rates: the tables' traderStrength for a trader dimension, where given, else their strength. */
export const strengthOf = (t: HistoryTables, d: HistoryDimension): number => (t.traderStrength !== undefined && isTraderDimension(d.name) ? t.traderStrength : t.strength);

/** Lift of each value of a dimension: logit of the smoothed rate minus logit(p0). */
export function lifts(t: HistoryTables, d: HistoryDimension): Float64Array {
  const out = new Float64Array(d.keys.length);
  const l0 = logit(t.prior);
  const m = strengthOf(t, d);
  for (let i = 0; i < out.length; i++) out[i] = logit((d.positives[i] + m * t.prior) / (d.n[i] + m)) - l0;
  return out;
}

/** The smoothed rate of value i. */
export const smoothedRate = (t: HistoryTables, d: HistoryDimension, i: number): number => {
  const m = strengthOf(t, d);
  return (d.positives[i] + m * t.prior) / (d.n[i] + m);
};

/**
 * Revenue at risk of value i: the revenue of non-compliance per declaration
 * with that value, smoothed as the rate is, (revenue + m·r0) / (n + m);
 * undefined when the tables hold no revenue.
 */
export function revenueAtRisk(t: HistoryTables, d: HistoryDimension, i: number): number | undefined {
  if (t.revenuePrior === undefined || d.revenue === undefined) return undefined;
  const m = strengthOf(t, d);
  return (d.revenue[i] + m * t.revenuePrior) / (d.n[i] + m);
}

/** Joins the values of a combination's key; a value holding it has no place in a combination (it would read as two values). */
export const KEY_SEPARATOR = '|';

/**
 * The key of one row for a dimension from its field values ('' and NaN are
 * missing: no key). In a combination, a value holding KEY_SEPARATOR gives no
 * key either: ("A|B", "C") and ("A", "B|C") would both read "A|B|C".
 */
export function keyOf(parts: readonly DimensionPart[], value: (f: DimensionField) => string): string | undefined {
  let key = '';
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k];
    let v = value(p.field);
    // a missing tax rate is NaN, String(NaN) its value; a categorical value spelled "NaN" is a value like any other
    if (v === '' || (p.field === 'taxRate' && v === 'NaN')) return undefined;
    if (p.digits) {
      if (v.length < p.digits) return undefined;
      v = v.slice(0, p.digits);
    }
    if (parts.length > 1 && v.includes(KEY_SEPARATOR)) return undefined;
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
        if (parts.length > 1 && v.includes(KEY_SEPARATOR)) { lut[c] = -1; continue; } // as keyOf
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
      for (let k = 1; k < parts.length; k++) key += `${KEY_SEPARATOR}${values[k][ids[k][i]]}`;
      keys.push(key);
      if (dense) dense[combo] = e; else sparse!.set(combo, e);
    }
    row[i] = e;
  }
  return { row, keys };
}

/** A column the tables read: a categorical column, or the tax rate (coded per row by the kernel: 0 for none, else 1 + the rate's value id). */
export type HistoryColumn = CategoricalColumn | 'taxRate';

/**
 * The history part of a batch's scores: enough to find, for row i and
 * dimension d, the table entry (-1: unseen) with HistoryIndex.entry, when a
 * decision is built. Nothing per row and dimension is computed or copied
 * while scoring: the columns are views of the scored batch's own columns,
 * with the part value id of each dictionary code.
 */
export interface BatchHistory {
  dimensions: number;
  /** Per part of the index: per code of its column, the part's value id (-1: missing, too short, or not in the tables); for the taxRate part, per kernel tax code. */
  partLut: Int32Array[];
  /** Per column of the index (HistoryIndex.columns order): the batch's codes; null for the tax rate, read from `taxRate`. */
  codes: (Uint32Array | null)[];
  /** The batch's tax rates, when a dimension reads them. */
  taxRate?: Float64Array;
  /** The batch's aeo codes (1: AEO-certified importer), when the tables have an AEO reduction. */
  aeo?: Uint32Array;
  /** Per row, the HISTORY reasons its decision cites (decisions.ts HistoryReasons.rows): filled when the first decision is built. */
  reasons?: Int32Array;
  /** Rows the behavioural rating moved across a line, with the trader reasons `reasons` does not hold (decisions.ts HistoryReasons.rows). */
  movedBy?: Map<number, Extract<import('../decisions.js').Reason, { code: 'HISTORY' }>[]>;
  /** Per part of the index, each row's value id, as HistoryIndex.dimEntries computed them for the reasons (kept for the other dimensions on the part). */
  partIds?: (Int32Array | undefined)[];
  /**
   * What the kernel's probes found: per combination (HistoryIndex.combinations
   * order), then per row, the slot of the combination's hash table where the
   * row's probe stopped: its entry's, or an empty slot when the table has
   * none (a row with a part not in the tables probes a key no slot holds).
   * dimEntries reads the entries from it (slotEntries) instead of probing again.
   * Uint16Array when every combination's table has at most 65,536 slots.
   */
  slots?: Uint16Array | Uint32Array;
}

/**
 * Whether a dimension is loaded for scoring: one of weight 0 (training drops
 * those whose weight fits negative or is not significant) adds nothing to
 * any score, so the index, the image, the kernel, the reference scorer and
 * the reasons leave it out.
 */
export const dimensionLoaded = (d: Pick<HistoryDimension, 'weight'>): boolean => d.weight !== 0;

/** Open-addressing hash of float64 keys (exact integers < 2^53) to int32 values. */
class NumberHash {
  private readonly keys: Float64Array;
  private readonly vals: Int32Array;
  private readonly mask: number;
  private readonly shift: number;
  constructor(capacity: number) {
    let size = 16, bits = 4;
    while (size < capacity * 2) { size *= 2; bits++; }
    this.shift = 32 - bits;
    this.keys = new Float64Array(size).fill(-1);
    this.vals = new Int32Array(size);
    this.mask = size - 1;
  }
  private slot(k: number): number {
    const lo = k >>> 0, hi = (k / 4294967296) >>> 0;
    // Fibonacci hashing: the top bits of the product index the table
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
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

/**
 * Distinct values a column's cache of part ids keeps before it starts over,
 * by default: sized by memory, about 100 bytes a value (the string kept
 * alive, the Map entry, the ids), so at most a few MB per column and thread.
 * A register with more distinct values in its recent traffic (an
 * administration's importers or sellers) empties it each time it fills, and
 * then pays a lookup in the parts' maps per new value: the benchmarks, whose
 * synthetic world has 18,071 sellers in a 100,000-row batch, never do.
 */
const VALUE_CACHE_LIMIT = 1 << 15;

/** See HistoryIndex.valueCache. */
interface ValueCache {
  column: Exclude<HistoryColumn, 'taxRate'>;
  /** Indices into HistoryIndex.parts. */
  parts: number[];
  /** Value → offset in `ids` of its id in each part (-1: none). */
  index: Map<string, number>;
  ids: Int32Array;
}

/** A part (field and HS digits) shared by dimensions: its values in the tables, numbered in order of first appearance. */
export interface HistoryPart {
  part: DimensionPart;
  column: HistoryColumn;
  /** id → value. */
  values: string[];
  ids: Map<string, number>;
}

/** One dimension of a HistoryIndex. */
export interface HistoryDimensionIndex {
  /** Indices into HistoryIndex.parts; none for a dimension of weight 0, which the index leaves out (no entry is ever found). */
  parts: number[];
  /** Single fields: part value id → entry (-1: none). */
  single?: Int32Array;
  /**
   * Combinations: the multiplier of each part's value id in the entry's key
   * Σ id_j · stride_j (the last stride is 1; stride_j is the product of the
   * value counts of the parts after j), and each entry's key (-1: a key
   * that does not split into one value per part, never matched).
   */
  strides?: number[];
  keys?: Float64Array;
  /** Combinations: the number of keys the parts can make (the product of their value counts; every key is below it). */
  keySpace?: number;
  /**
   * weight × lift of each entry; for a combination rounded to float32, the
   * precision its hash table in the kernel holds (Math.fround), so that the
   * reference scorer, the kernel and the HISTORY reasons add the same value.
   */
  weightedLift: Float64Array;
}

/** Largest combination key: keys are exact integers in a float64 here and in a u64 in the kernel. */
const MAX_COMBINATION_KEYS = 2 ** 53;

const indexes = new WeakMap<HistoryTables, HistoryIndex>();

/** The index of tables, built once per tables object. */
export function historyIndex(tables: HistoryTables): HistoryIndex {
  let x = indexes.get(tables);
  if (!x) { x = new HistoryIndex(tables); indexes.set(tables, x); }
  return x;
}

/**
 * Historical tables as integers. Every value of every part (importer, hs6,
 * …) of the loaded dimensions (dimensionLoaded) gets a number, in an order
 * fixed by the tables alone, so that the compiler (which writes the combination hash tables into
 * the ruleset image), the kernel's host (which maps each distinct dictionary
 * value of a batch to its number) and the decisions (which find the entries
 * behind HISTORY reasons) agree on the numbers without exchanging them.
 */
export class HistoryIndex {
  readonly parts: HistoryPart[] = [];
  readonly dims: HistoryDimensionIndex[] = [];
  /**
   * The columns of the single-field dimensions, in order of first use, with
   * their dimensions in order. The kernel adds a row's single-field
   * contributions column by column in this order, each column's summed per code.
   */
  readonly singleColumns: { column: HistoryColumn; dims: number[] }[] = [];
  /** The combination dimensions, in order (added after the single fields and the AEO reduction). */
  readonly combinations: number[] = [];
  /** Every column a part reads, in order of first use. */
  readonly columns: HistoryColumn[] = [];
  /** Per part: its column's index in `columns`. */
  readonly partColumn: number[];
  /** The taxRate part, when a dimension reads the tax rate (else -1). */
  readonly taxPart: number;
  private readonly hashes: (NumberHash | undefined)[] = [];
  /** Per dimension: its place in `combinations` (-1: not a combination). */
  private readonly combinationOf: number[] = [];
  private readonly slotTables: (Int32Array | undefined)[] = [];
  /** Tax rate → value id (Map keys: -0 and 0 are one). */
  private taxIds?: Map<number, number>;
  /**
   * Per column the parts read (taxRate aside): each value seen in a batch's
   * dictionary with its id in every part on that column, kept across
   * batches. A batch's distinct values are mostly ones seen before, and the
   * fast readers hand out the same string instance for the same bytes, so a
   * value costs one lookup of a string whose hash is known, not one per part
   * with a fresh HS prefix each.
   */
  private readonly valueCache: ValueCache[] = [];

  /** Distinct values a column's cache of part ids keeps before it starts over (see valueCache). */
  private readonly valueCacheLimit: number;

  constructor(readonly tables: HistoryTables, options: { valueCacheLimit?: number } = {}) {
    this.valueCacheLimit = options.valueCacheLimit ?? VALUE_CACHE_LIMIT;
    const partIndex = new Map<string, number>();
    const specs = tables.dimensions.map((d) => parseDimension(d.name));
    // a dimension not loaded (weight 0): no parts, columns or table for it
    const live = tables.dimensions.map(dimensionLoaded);
    specs.forEach((parts, di) => {
      if (!live[di]) return;
      for (const p of parts) {
        const name = p.field === 'hs' ? `hs${p.digits}` : p.field;
        if (partIndex.has(name)) continue;
        partIndex.set(name, this.parts.length);
        this.parts.push({ part: p, column: p.field === 'hs' ? 'hs' : p.field, values: [], ids: new Map() });
      }
    });
    this.taxPart = this.parts.findIndex((p) => p.column === 'taxRate');
    this.parts.forEach(({ column }, k) => {
      if (column === 'taxRate') return;
      const g = this.valueCache.find((x) => x.column === column);
      if (g) g.parts.push(k);
      else this.valueCache.push({ column, parts: [k], index: new Map(), ids: new Int32Array(0) });
    });
    // number each part value, in dimension then key order
    const number = (k: number, v: string): number => {
      const part = this.parts[k];
      let g = part.ids.get(v);
      if (g === undefined) { g = part.values.length; part.values.push(v); part.ids.set(v, g); }
      return g;
    };
    const codes = tables.dimensions.map((d, di) => {
      if (!live[di]) return undefined;
      const idx = specs[di].map((p) => partIndex.get(p.field === 'hs' ? `hs${p.digits}` : p.field)!);
      const ids = d.keys.map((key): number[] | undefined => {
        const values = idx.length === 1 ? [key] : key.split(KEY_SEPARATOR);
        return values.length === idx.length ? values.map((v, j) => number(idx[j], v)) : undefined;
      });
      return { idx, ids };
    });
    tables.dimensions.forEach((d, di) => {
      this.hashes.push(undefined);
      const code = codes[di];
      if (!code) { this.dims.push({ parts: [], weightedLift: new Float64Array(0) }); return; } // never read: no column or table
      const { idx, ids } = code;
      const weightedLift = lifts(tables, d).map((x) => d.weight * x);
      for (const k of idx) if (!this.columns.includes(this.parts[k].column)) this.columns.push(this.parts[k].column);
      if (idx.length === 1) {
        const single = new Int32Array(this.parts[idx[0]].values.length).fill(-1);
        ids.forEach((c, e) => { single[c![0]] = e; }); // a repeated key: the last entry wins
        this.dims.push({ parts: idx, single, weightedLift });
        const column = this.parts[idx[0]].column;
        let col = this.singleColumns.find((c) => c.column === column);
        if (!col) this.singleColumns.push((col = { column, dims: [] }));
        col.dims.push(di);
      } else {
        const sizes = idx.map((k) => this.parts[k].values.length);
        if (sizes.reduce((a, b) => a * b, 1) > MAX_COMBINATION_KEYS) {
          throw errors.SEL_ERR_RULESET_INVALID(`history.dimensions[${di}] (${d.name}): too many distinct values to combine`, { field: `history.dimensions[${di}]`, expected: `a product of the parts' value counts of at most 2^53`, got: sizes.join(' × ') });
        }
        const strides = sizes.map((_, j) => sizes.slice(j + 1).reduce((a, b) => a * b, 1));
        const keys = Float64Array.from(ids, (c) => (c ? c.reduce((s, g, j) => s + g * strides[j], 0) : -1));
        for (let e = 0; e < weightedLift.length; e++) weightedLift[e] = Math.fround(weightedLift[e]);
        this.dims.push({ parts: idx, strides, keys, keySpace: sizes.reduce((a, b) => a * b, 1), weightedLift });
        this.combinations.push(di);
      }
    });
    this.partColumn = this.parts.map((p) => this.columns.indexOf(p.column));
    this.combinationOf = this.dims.map((_, d) => this.combinations.indexOf(d));
  }

  /**
   * Combination dimension d's hash table as the ruleset image lays it out
   * (src/ruleset/compile.ts writes it from this): 2^hashTableBits(entries)
   * slots, each holding the entry whose key it has (-1: empty). Entries are
   * placed from their home slot (homeSlot), linear probing, the most
   * declarations first (n, then entry order): the values rows look up most
   * often sit in their home slot, where the kernel's probe stops without a
   * second step. Of entries with the same key, the last (highest index) wins.
   */
  slotEntries(d: number): Int32Array {
    let table = this.slotTables[d];
    if (table) return table;
    const keys = this.dims[d].keys!;
    const n = this.tables.dimensions[d].n;
    const bits = hashTableBits(keys.length);
    const mask = (1 << bits) - 1;
    table = new Int32Array(1 << bits).fill(-1);
    const order = Int32Array.from(keys, (_, e) => e).sort((a, b) => n[b] - n[a] || a - b);
    for (const e of order) {
      const k = keys[e];
      if (k < 0) continue;
      let i = homeSlot(BigInt(k), bits);
      while (table[i] >= 0 && keys[table[i]] !== k) i = (i + 1) & mask;
      if (table[i] < e) table[i] = e;
    }
    this.slotTables[d] = table;
    return table;
  }

  /** The number of keys combination dimension d's parts can make (0 for a single field or a dimension not loaded). */
  keySpace(d: number): number {
    return this.dims[d].keySpace ?? 0;
  }

  /** Tax rate values of the tables that a row's rate can equal: the rate (String(rate) is the value) and its id. */
  taxRates(): { rate: number; id: number }[] {
    if (this.taxPart < 0) return [];
    const out: { rate: number; id: number }[] = [];
    this.parts[this.taxPart].values.forEach((v, id) => {
      const rate = Number(v);
      if (rate === rate && String(rate) === v) out.push({ rate, id });
    });
    return out;
  }

  /**
   * Per part, the value id of each code of a batch's column (-1: missing, too
   * short for the HS digits, or not in the tables): work per distinct value.
   * The taxRate part's codes are the kernel's (0: none, else 1 + id).
   */
  partLuts(batch: ColumnarBatch): Int32Array[] {
    const luts: Int32Array[] = new Array(this.parts.length);
    for (const g of this.valueCache) {
      const dict = batch.dicts[g.column];
      const n = dict.length, P = g.parts.length;
      const out = g.parts.map(() => new Int32Array(n));
      for (let c = 0; c < n; c++) {
        const v = dict[c];
        let at = g.index.get(v);
        if (at === undefined) at = this.remember(g, v);
        for (let j = 0; j < P; j++) out[j][c] = g.ids[at + j];
      }
      for (let j = 0; j < P; j++) luts[g.parts[j]] = out[j];
    }
    if (this.taxPart >= 0) {
      const lut = new Int32Array(this.parts[this.taxPart].values.length + 1);
      for (let c = 0; c < lut.length; c++) lut[c] = c - 1;
      luts[this.taxPart] = lut;
    }
    return luts;
  }

  /** Looks a column value up in each of its parts and keeps the ids in the column's cache; the ids' offset in `g.ids`. */
  private remember(g: ValueCache, v: string): number {
    const P = g.parts.length;
    if (g.index.size >= this.valueCacheLimit) g.index.clear(); // bounded: start over (offsets are reused from 0)
    const at = g.index.size * P;
    if (at + P > g.ids.length) { const grown = new Int32Array(Math.max(64, g.ids.length * 2)); grown.set(g.ids); g.ids = grown; }
    for (let j = 0; j < P; j++) {
      const { part, ids } = this.parts[g.parts[j]];
      const d = part.digits;
      g.ids[at + j] = v === '' || (d !== undefined && v.length < d) ? -1 : ids.get(d === undefined ? v : v.slice(0, d)) ?? -1;
    }
    g.index.set(v, at);
    return at;
  }

  /** The batch's history record for its decisions: views of its columns, no copy, and the slots the kernel found (`slots`, see BatchHistory). */
  batchHistory(batch: ColumnarBatch, partLut: Int32Array[], slots?: Uint16Array | Uint32Array): BatchHistory {
    const h: BatchHistory = { dimensions: this.dims.length, partLut, codes: this.columns.map((c) => (c === 'taxRate' ? null : batch.codes[c])) };
    if (slots) h.slots = slots;
    if (this.taxPart >= 0) h.taxRate = batch.numeric.taxRate;
    if ((this.tables.aeoReduction ?? 0) !== 0) h.aeo = batch.codes.aeo;
    return h;
  }

  /** Row i's value id of part k (-1: missing or not in the tables). */
  private code(h: BatchHistory, i: number, k: number): number {
    if (k !== this.taxPart) return h.partLut[k][h.codes[this.partColumn[k]]![i]];
    const x = h.taxRate![i];
    return x === x ? (this.taxIds ??= new Map(this.taxRates().map((r) => [r.rate, r.id]))).get(x) ?? -1 : -1;
  }

  /**
   * Every row's table entry in dimension d (-1: missing or unseen value),
   * computed column by column for the whole batch: what the decisions of a
   * batch read for their HISTORY reasons (see decisions.ts HistoryReasons).
   */
  dimEntries(h: BatchHistory, n: number, d: number): Int32Array {
    const dim = this.dims[d];
    const out = new Int32Array(n);
    if (dim.parts.length === 0) return out.fill(-1);
    if (dim.single) {
      const g = this.partIds(h, n, dim.parts[0]), single = dim.single;
      for (let i = 0; i < n; i++) { const x = g[i]; out[i] = x < 0 || x >= single.length ? -1 : single[x]; }
      return out;
    }
    // the slots the kernel's probes found, when the batch carries them
    const c = this.combinationOf[d];
    if (h.slots && h.slots.length === this.combinations.length * n) {
      const table = this.slotEntries(d), slots = h.slots, at = c * n;
      for (let i = 0; i < n; i++) out[i] = table[slots[at + i]];
      return out;
    }
    // else probe: the key Σ id_j · stride_j, -1 once a part is missing
    const keys = new Float64Array(n);
    const parts = dim.parts, strides = dim.strides!;
    for (let j = 0; j < parts.length; j++) {
      const g = this.partIds(h, n, parts[j]), stride = strides[j];
      for (let i = 0; i < n; i++) { const x = g[i], k = keys[i]; keys[i] = x < 0 || k < 0 ? -1 : k + x * stride; }
    }
    const hash = this.hashOf(d);
    for (let i = 0; i < n; i++) { const k = keys[i]; out[i] = k < 0 ? -1 : hash.get(k); }
    return out;
  }

  /** Every row's value id of part k (-1: missing or not in the tables), computed once per batch and part and kept on `h`: dimensions that share a part (importer, importer×hs4, declarant×importer) read it once. */
  private partIds(h: BatchHistory, n: number, k: number): Int32Array {
    const kept = (h.partIds ??= [])[k];
    if (kept !== undefined && kept.length === n) return kept;
    const ids = new Int32Array(n);
    if (k !== this.taxPart) {
      const lut = h.partLut[k], codes = h.codes[this.partColumn[k]]!;
      for (let i = 0; i < n; i++) ids[i] = lut[codes[i]];
    } else {
      for (let i = 0; i < n; i++) ids[i] = this.code(h, i, k);
    }
    h.partIds[k] = ids;
    return ids;
  }

  private hashOf(d: number): NumberHash {
    let hash = this.hashes[d];
    if (!hash) {
      const keys = this.dims[d].keys!;
      const built = new NumberHash(keys.length);
      keys.forEach((k, e) => { if (k >= 0) built.set(k, e); }); // a repeated key: the last entry wins
      this.hashes[d] = hash = built;
    }
    return hash;
  }

  /** Row i's table entry for dimension d (-1: missing or unseen value). */
  entry(h: BatchHistory, i: number, d: number): number {
    const dim = this.dims[d];
    if (dim.parts.length === 0) return -1;
    if (dim.single) {
      const g = this.code(h, i, dim.parts[0]);
      return g < 0 || g >= dim.single.length ? -1 : dim.single[g];
    }
    const parts = dim.parts, strides = dim.strides!;
    let key = 0;
    for (let j = 0; j < parts.length; j++) {
      const g = this.code(h, i, parts[j]);
      if (g < 0) return -1;
      key += g * strides[j];
    }
    return this.hashOf(d).get(key);
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
  if (t.traderStrength !== undefined && (typeof t.traderStrength !== 'number' || !(t.traderStrength > 0 && Number.isFinite(t.traderStrength)))) invalidHistory('traderStrength', 'a number > 0', t.traderStrength);
  if (typeof t.halfLifeDays !== 'number' || !(t.halfLifeDays >= 0)) invalidHistory('halfLifeDays', 'a number >= 0', t.halfLifeDays);
  if (t.aeoReduction !== undefined && (typeof t.aeoReduction !== 'number' || !(t.aeoReduction >= 0 && t.aeoReduction <= 10))) invalidHistory('aeoReduction', 'a number in [0, 10]', t.aeoReduction);
  if (t.revenuePrior !== undefined && (typeof t.revenuePrior !== 'number' || !(t.revenuePrior >= 0 && Number.isFinite(t.revenuePrior)))) invalidHistory('revenuePrior', 'a finite number >= 0', t.revenuePrior);
  if (!Array.isArray(t.dimensions)) invalidHistory('dimensions', 'an array', t.dimensions);
  const names = new Set<string>();
  t.dimensions.forEach((d, i) => {
    const at = `dimensions[${i}]`;
    if (d === null || typeof d !== 'object') invalidHistory(at, 'an object {name, weight, keys, n, positives}', d);
    if (typeof d.name !== 'string') invalidHistory(`${at}.name`, 'a dimension such as hs6×origin', d.name);
    let canonical: string;
    try {
      canonical = dimensionName(parseDimension(d.name));
    } catch (e) {
      // not a dimension at all: the model file's field, not a command-line option, is what is wrong
      invalidHistory(`${at}.name`, 'a dimension such as hs6×origin', d.name);
    }
    if (canonical !== d.name || names.has(d.name)) invalidHistory(`${at}.name`, `a canonical, unique dimension name (${canonical})`, d.name);
    names.add(d.name);
    if (typeof d.weight !== 'number' || !Number.isFinite(d.weight)) invalidHistory(`${at}.weight`, 'a finite number', d.weight);
    if (!Array.isArray(d.keys) || !Array.isArray(d.n) || !Array.isArray(d.positives) || d.n.length !== d.keys.length || d.positives.length !== d.keys.length) {
      invalidHistory(`${at}.keys`, 'keys, n and positives: arrays of one length', d.keys?.length);
    }
    for (let k = 0; k < d.keys.length; k++) {
      if (typeof d.keys[k] !== 'string' || !(d.n[k] >= 0) || !(d.positives[k] >= 0) || d.positives[k] > d.n[k] + 1e-9 || !Number.isFinite(d.n[k])) invalidHistory(`${at}[${k}]`, 'a key with 0 <= positives <= n, n finite', [d.keys[k], d.n[k], d.positives[k]]);
    }
    // the tolerance above (counts decayed in floating point) with a tiny strength can smooth a rate to 1 or past it:
    // its lift is then infinite or NaN, and so is the score of every declaration with the value (NaN is green)
    const l = lifts(t, d);
    for (let k = 0; k < l.length; k++) {
      if (!Number.isFinite(l[k]) || !Number.isFinite(d.weight * l[k])) invalidHistory(`${at}[${k}]`, `counts whose smoothed rate (positives + strength × prior) / (n + strength) lies strictly between 0 and 1 (strength ${strengthOf(t, d)})`, [d.keys[k], d.n[k], d.positives[k]]);
    }
    if (d.revenue !== undefined) {
      if (!Array.isArray(d.revenue) || d.revenue.length !== d.keys.length) invalidHistory(`${at}.revenue`, 'an array as long as keys', Array.isArray(d.revenue) ? d.revenue.length : d.revenue);
      d.revenue.forEach((r, k) => { if (typeof r !== 'number' || !(r >= 0 && Number.isFinite(r))) invalidHistory(`${at}.revenue[${k}]`, 'a finite number >= 0', r); });
    }
  });
  return t;
}
