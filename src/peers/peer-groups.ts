/**
 * Peer groups: declarations "like this one" at each level of a hierarchy
 * (e.g. HS6×origin → HS6 → HS4 → HS2), with robust statistics (median, MAD)
 * of each numeric feature. The kernel takes the most specific group with at
 * least `minGroupSize` valid values of a feature and computes a robust z-score.
 */
import { errors } from '../errors.js';
import type { ColumnarBatch } from '../model/columnar.js';

/** Numeric features, in kernel order. All are natural logarithms. */
export const FEATURES = ['unitValue', 'netMass', 'valuePerItem'] as const;
export type Feature = (typeof FEATURES)[number];
export const NF = FEATURES.length;

/** Categorical fields a peer level may combine with an HS prefix (kernel order). */
export const PEER_FIELDS = ['origin', 'departure', 'office', 'transportMode'] as const;
export type PeerField = (typeof PEER_FIELDS)[number];

export interface PeerLevel {
  /** Canonical name, e.g. "hs6,origin". */
  name: string;
  /** HS digits in the key: 0 (none), 2, 4, 6, 8 or 10. */
  hsDigits: number;
  /** Optional categorical field in the key. */
  field?: PeerField;
}

export const DEFAULT_LEVELS = ['hs6,origin', 'hs6', 'hs4', 'hs2'] as const;
export const MAX_LEVELS = 16;

/** Parses "hs6,origin" / "hs4" / "origin" into a level. */
export function parseLevel(spec: string): PeerLevel {
  const parts = spec.split(/[,×x*]/).map((s) => s.trim()).filter(Boolean);
  let hsDigits = 0;
  let field: PeerField | undefined;
  for (const p of parts) {
    const hs = /^hs(2|4|6|8|10)$/i.exec(p);
    if (hs) {
      if (hsDigits) throw errors.SEL_ERR_PEERS_INVALID(`peer level "${spec}" names two HS levels`, { field: 'levels', expected: 'at most one of hs2, hs4, hs6, hs8, hs10', got: spec });
      hsDigits = +hs[1];
    } else if ((PEER_FIELDS as readonly string[]).includes(p)) {
      if (field) throw errors.SEL_ERR_PEERS_INVALID(`peer level "${spec}" names two categorical fields`, { field: 'levels', expected: `at most one of ${PEER_FIELDS.join(', ')}`, got: spec });
      field = p as PeerField;
    } else {
      throw errors.SEL_ERR_PEERS_INVALID(`unknown part "${p}" in peer level "${spec}"`, { field: 'levels', expected: `hs2|hs4|hs6|hs8|hs10 and/or one of ${PEER_FIELDS.join(', ')}`, got: spec });
    }
  }
  if (!hsDigits && !field) throw errors.SEL_ERR_PEERS_INVALID('empty peer level', { field: 'levels', expected: 'e.g. "hs6,origin"', got: spec });
  const name = [hsDigits ? `hs${hsDigits}` : '', field ?? ''].filter(Boolean).join(',');
  return field ? { name, hsDigits, field } : { name, hsDigits };
}

export function parseLevels(specs: readonly string[]): PeerLevel[] {
  if (specs.length === 0 || specs.length > MAX_LEVELS) {
    throw errors.SEL_ERR_PEERS_INVALID(`a peer hierarchy needs 1–${MAX_LEVELS} levels`, { field: 'levels', expected: `1–${MAX_LEVELS} levels`, got: specs.length });
  }
  const levels = specs.map(parseLevel);
  const names = new Set(levels.map((l) => l.name));
  if (names.size !== levels.length) throw errors.SEL_ERR_PEERS_INVALID('a peer level is repeated', { field: 'levels', expected: 'distinct levels', got: specs });
  return levels;
}

/**
 * The features of one declaration: [ln(value/mass), ln(mass), ln(value/quantity)],
 * NaN where undefined. The kernel computes ln(v) - ln(m) in the same way.
 */
export function featureValues(v: number, m: number, q: number, out: Float64Array | number[] = new Float64Array(NF)): Float64Array | number[] {
  const lv = Math.log(v), lm = Math.log(m), lq = Math.log(q);
  out[0] = v > 0 && m > 0 ? lv - lm : NaN;
  out[1] = m > 0 ? lm : NaN;
  out[2] = v > 0 && q > 0 ? lv - lq : NaN;
  return out;
}

/**
 * The key of a declaration's group at a level, or undefined when the
 * declaration cannot belong to one there (HS code too short, field blank).
 */
export function levelKey(level: PeerLevel, hs: string, fieldValue: string): string | undefined {
  if (level.hsDigits && hs.length < level.hsDigits) return undefined;
  if (level.field && fieldValue === '') return undefined;
  return `${level.hsDigits ? hs.slice(0, level.hsDigits) : ''}|${level.field ? fieldValue : ''}`;
}

export interface FeatureStats {
  /** Number of declarations with this feature defined. */
  n: number;
  median: number;
  /** Median absolute deviation from the median (unscaled). */
  mad: number;
}

export interface PeerGroup {
  /** Declarations in the group. */
  count: number;
  features: FeatureStats[];
}

export interface PeerTables {
  levels: PeerLevel[];
  /** One map per level: group key (see levelKey) → statistics. */
  groups: Map<string, PeerGroup>[];
}

/** Exact median of a numeric array (sorted in place). */
export function median(values: Float64Array): number {
  const n = values.length;
  if (n === 0) return NaN;
  values.sort();
  const h = n >> 1;
  return n % 2 === 1 ? values[h] : (values[h - 1] + values[h]) / 2;
}

export function robustStats(values: Float64Array): FeatureStats {
  const n = values.length;
  if (n === 0) return { n: 0, median: NaN, mad: NaN };
  const med = median(values);
  const dev = new Float64Array(n);
  for (let i = 0; i < n; i++) dev[i] = Math.abs(values[i] - med);
  return { n, median: med, mad: median(dev) };
}

/**
 * Builds peer tables from declarations held in memory (exact medians). Memory
 * grows with the number of declarations (about 8 bytes per feature and level);
 * feed batches with add() as they are read, then finish().
 */
export class PeerTableBuilder {
  readonly levels: PeerLevel[];
  private readonly acc: Map<string, { count: number; values: number[][] }>[];
  private readonly x = new Float64Array(NF);

  constructor(levelSpecs: readonly string[] = DEFAULT_LEVELS) {
    this.levels = parseLevels(levelSpecs);
    this.acc = this.levels.map(() => new Map());
  }

  add(b: ColumnarBatch): void {
    const { levels, acc, x } = this;
    const hsDict = b.dicts.hs;
    for (let i = 0; i < b.size; i++) {
      featureValues(b.numeric.customsValue[i], b.numeric.netMass[i], b.numeric.quantity[i], x);
      const hs = hsDict[b.codes.hs[i]];
      for (let l = 0; l < levels.length; l++) {
        const level = levels[l];
        const fv = level.field ? b.dicts[level.field][b.codes[level.field][i]] : '';
        const key = levelKey(level, hs, fv);
        if (key === undefined) continue;
        let g = acc[l].get(key);
        if (!g) { g = { count: 0, values: FEATURES.map(() => []) }; acc[l].set(key, g); }
        g.count++;
        for (let f = 0; f < NF; f++) if (!Number.isNaN(x[f])) g.values[f].push(x[f]);
      }
    }
  }

  finish(): PeerTables {
    const groups = this.acc.map((m) => {
      const out = new Map<string, PeerGroup>();
      for (const [key, g] of m) out.set(key, { count: g.count, features: g.values.map((v) => robustStats(Float64Array.from(v))) });
      return out;
    });
    return { levels: this.levels, groups };
  }
}

export function buildPeerTables(batches: Iterable<ColumnarBatch>, levelSpecs: readonly string[] = DEFAULT_LEVELS): PeerTables {
  const builder = new PeerTableBuilder(levelSpecs);
  for (const b of batches) builder.add(b);
  return builder.finish();
}

/** Robust scale of a group's feature: 1.4826·MAD, floored so that z stays finite. */
export function robustScale(mad: number, madFloor: number): number {
  return Math.max(1.4826 * mad, madFloor);
}
