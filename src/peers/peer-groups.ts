/**
 * Peer groups: declarations "like this one" at each level of a hierarchy
 * (e.g. HS6×origin → HS6 → HS4 → HS2), with robust statistics (median, MAD)
 * of each numeric feature. The kernel takes the most specific group with at
 * least `minGroupSize` valid values of a feature and computes a robust z-score.
 */
import { errors } from '../errors.js';
import type { ColumnarBatch } from '../model/columnar.js';
import { binWidth, DEFAULT_SKETCH, FeatureSketch, type SketchParams } from './sketch.js';

export { median, robustStats } from './sketch.js';

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

/**
 * Whether `key` can be a group key of `level` (as levelKey makes them):
 * exactly the level's HS digits, a bar, then the field's value (not empty)
 * or nothing when the level has no field. A snapshot file's keys are checked
 * with it: compiled, "8517|" and "008517|" would pack to one key.
 */
export function isLevelKey(level: PeerLevel, key: string): boolean {
  const bar = key.indexOf('|');
  if (bar !== level.hsDigits) return false;
  for (let i = 0; i < bar; i++) {
    const c = key.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return level.field ? key.length > bar + 1 : key.length === bar + 1;
}

/** The form of a level's keys, for an error message. */
export const levelKeyForm = (level: PeerLevel): string => `${level.hsDigits ? `${level.hsDigits} digits` : ''}|${level.field ? `a ${level.field} value` : ''}`;

export interface FeatureStats {
  /** Number of declarations with this feature defined. */
  n: number;
  /** Median of the log values (exact, or within the sketch's bound: see sketch.ts). */
  median: number;
  /** Median absolute deviation from the median (unscaled, log units). */
  mad: number;
  /** Mean and sample standard deviation of the log values (NaN when undefined). */
  mean: number;
  std: number;
  /** Smallest and largest log value. */
  min: number;
  max: number;
  /** True when median and MAD are exact (the group never outgrew the sketch's exact limit). */
  exact: boolean;
}

export interface PeerGroup {
  /** Declarations in the group. */
  count: number;
  /** Acceptance dates of the group's declarations, days since 1970-01-01 (NaN when unknown). */
  firstDate: number;
  lastDate: number;
  features: FeatureStats[];
}

/** Identity and provenance of a peer-statistics snapshot (see peer-store.ts). */
export interface SnapshotInfo {
  /** Content version: "peers-" + 16 hex digits of the snapshot's SHA-256. */
  version: string;
  /** Version of the snapshot this one was folded from, null for a fresh build. */
  parent: string | null;
  createdAt: string;
  /** Declarations folded in, over all sources. */
  rows: number;
  sources: { file: string; rows: number; addedAt: string }[];
  sketch: SketchParams;
  /** Smallest group the engine uses by default when scoring against this snapshot. */
  minGroupSize: number;
}

export interface PeerTables {
  levels: PeerLevel[];
  /** One map per level: group key (see levelKey) → statistics. */
  groups: Map<string, PeerGroup>[];
  /** Present for snapshots built by PeerTableBuilder or loaded from a file. */
  info?: SnapshotInfo;
}

/** The accumulating state of one group: what a snapshot file stores. */
export interface GroupState {
  count: number;
  firstDate: number;
  lastDate: number;
  sketches: FeatureSketch[];
}

export interface BuilderOptions {
  /** Peer hierarchy, most specific first (default DEFAULT_LEVELS). */
  levels?: readonly string[];
  sketch?: Partial<SketchParams>;
  /** Default minGroupSize recorded in the snapshot (default 5). */
  minGroupSize?: number;
}

function checkSketchParams(p: Partial<SketchParams> = {}): SketchParams {
  const exactLimit = p.exactLimit ?? DEFAULT_SKETCH.exactLimit;
  const relativeAccuracy = p.relativeAccuracy ?? DEFAULT_SKETCH.relativeAccuracy;
  if (!Number.isInteger(exactLimit) || exactLimit < 0 || exactLimit > 1_000_000) {
    throw errors.SEL_ERR_PEERS_INVALID('sketch.exactLimit must be an integer in [0, 1000000]', { field: 'sketch.exactLimit', expected: 'an integer in [0, 1000000]', got: exactLimit });
  }
  if (typeof relativeAccuracy !== 'number' || !(relativeAccuracy >= 1e-6 && relativeAccuracy <= 0.2)) {
    throw errors.SEL_ERR_PEERS_INVALID('sketch.relativeAccuracy must be a number in [1e-6, 0.2]', { field: 'sketch.relativeAccuracy', expected: 'a number in [0.000001, 0.2]', got: relativeAccuracy });
  }
  return { exactLimit, relativeAccuracy };
}

/**
 * Builds peer statistics from declarations in one streaming pass: feed
 * batches with add() as they are read, then finish(). Memory is bounded by
 * the number of groups (each feature keeps at most sketch.exactLimit values,
 * then a histogram; see sketch.ts), not by the number of rows. A builder
 * can start from a saved snapshot (fromSnapshot) to fold new declarations in.
 */
export class PeerTableBuilder {
  readonly levels: PeerLevel[];
  readonly sketch: SketchParams;
  readonly minGroupSize: number;
  /** Rows folded in so far (including the snapshot's). */
  rows = 0;
  readonly sources: SnapshotInfo['sources'] = [];
  parent: string | null = null;
  private readonly acc: Map<string, GroupState>[];
  private readonly width: number;
  private readonly x = new Float64Array(NF);

  constructor(options: BuilderOptions | readonly string[] = {}) {
    const o: BuilderOptions = Array.isArray(options) ? { levels: options as readonly string[] } : (options as BuilderOptions);
    this.levels = parseLevels(o.levels ?? DEFAULT_LEVELS);
    this.sketch = checkSketchParams(o.sketch);
    this.width = binWidth(this.sketch.relativeAccuracy);
    const mgs = o.minGroupSize ?? 5;
    if (!Number.isInteger(mgs) || mgs < 1) throw errors.SEL_ERR_PEERS_INVALID('minGroupSize must be an integer >= 1', { field: 'minGroupSize', expected: 'an integer >= 1', got: mgs });
    this.minGroupSize = mgs;
    this.acc = this.levels.map(() => new Map());
  }

  /** A builder holding a snapshot's state, ready to fold more declarations in. */
  static fromSnapshot(snapshot: PeerSnapshot): PeerTableBuilder {
    const b = new PeerTableBuilder({ levels: snapshot.levels.map((l) => l.name), sketch: snapshot.info.sketch, minGroupSize: snapshot.info.minGroupSize });
    b.rows = snapshot.info.rows;
    b.sources.push(...snapshot.info.sources);
    b.parent = snapshot.info.version;
    snapshot.groups.forEach((m, l) => {
      for (const [key, g] of m) {
        b.acc[l].set(key, { count: g.count, firstDate: g.firstDate, lastDate: g.lastDate, sketches: g.sketches.map((s) => FeatureSketch.fromState(s.state(), b.sketch.exactLimit, b.width)) });
      }
    });
    return b;
  }

  /** Folds a batch in; `keep` (when given) selects the rows to use. Returns the rows used. */
  add(b: ColumnarBatch, keep?: (i: number) => boolean): number {
    const { levels, acc, x } = this;
    const nl = levels.length;
    const groups = new BatchGroups(levels, b, (l, key) => {
      let g = acc[l].get(key);
      if (!g) {
        g = { count: 0, firstDate: Infinity, lastDate: -Infinity, sketches: FEATURES.map(() => new FeatureSketch(this.sketch.exactLimit, this.width)) };
        acc[l].set(key, g);
      }
      return g;
    });
    let added = 0;
    for (let i = 0; i < b.size; i++) {
      if (keep && !keep(i)) continue;
      added++;
      featureValues(b.numeric.customsValue[i], b.numeric.netMass[i], b.numeric.quantity[i], x);
      const day = b.date[i];
      for (let l = 0; l < nl; l++) {
        const g = groups.at(l, i);
        if (g === null) continue;
        g.count++;
        if (day < g.firstDate) g.firstDate = day;
        if (day > g.lastDate) g.lastDate = day;
        const sk = g.sketches;
        // a feature that is missing (NaN) or infinite (an infinite value, for callers that skip validation) is left out
        for (let f = 0; f < NF; f++) if (Math.abs(x[f]) < Infinity) sk[f].add(x[f]);
      }
    }
    this.rows += added;
    return added;
  }

  /** Records where rows came from (kept in the snapshot's provenance). */
  addSource(file: string, rows: number): void {
    this.sources.push({ file, rows, addedAt: new Date().toISOString() });
  }

  /** Number of groups per level so far. */
  groupCounts(): number[] {
    return this.acc.map((m) => m.size);
  }

  /** The full state (sketches included), for saving and later folding. */
  snapshot(): PeerSnapshot {
    const info: SnapshotInfo = {
      version: '', parent: this.parent, createdAt: new Date().toISOString(), rows: this.rows,
      sources: this.sources.slice(), sketch: { ...this.sketch }, minGroupSize: this.minGroupSize,
    };
    return { info, levels: this.levels, groups: this.acc.map((m) => new Map(m)) };
  }

  /** The statistics the engine scores with. */
  finish(): PeerTables {
    return snapshotTables(this.snapshot());
  }
}

/**
 * Each row's group at each level, through a per-batch cache keyed by (HS
 * code, field code): key strings are built once per distinct combination in
 * the batch, not once per row, and `resolve(level, key)` maps a key to the
 * caller's object (a group's accumulator, a study's counter) once.
 */
export class BatchGroups<T> {
  private readonly caches: Map<number, T | null>[];
  private readonly fieldCodes: (Uint32Array | undefined)[];
  private readonly fieldDicts: (string[] | undefined)[];
  private readonly radix: number[];

  constructor(private readonly levels: readonly PeerLevel[], private readonly b: ColumnarBatch, private readonly resolve: (level: number, key: string) => T) {
    this.caches = levels.map(() => new Map());
    this.fieldCodes = levels.map((l) => (l.field ? b.codes[l.field] : undefined));
    this.fieldDicts = levels.map((l) => (l.field ? b.dicts[l.field] : undefined));
    this.radix = levels.map((l) => (l.field ? b.dicts[l.field].length + 1 : 1));
  }

  /** Row i's object at level l, or null when the row has no group there (see levelKey). */
  at(l: number, i: number): T | null {
    const hc = this.b.codes.hs[i];
    const codes = this.fieldCodes[l];
    const fc = codes ? codes[i] : 0;
    const ck = hc * this.radix[l] + fc;
    let g = this.caches[l].get(ck);
    if (g === undefined) {
      const key = levelKey(this.levels[l], this.b.dicts.hs[hc], codes ? this.fieldDicts[l]![fc] : '');
      g = key === undefined ? null : this.resolve(l, key);
      this.caches[l].set(ck, g);
    }
    return g;
  }
}

/** A snapshot: peer statistics with the sketches they came from (foldable). */
export interface PeerSnapshot {
  info: SnapshotInfo;
  levels: PeerLevel[];
  groups: Map<string, GroupState>[];
}

/** Tells a snapshot (sketches kept: foldable, plottable) from bare tables. An empty one counts as tables. */
export function isPeerSnapshot(p: PeerSnapshot | PeerTables): p is PeerSnapshot {
  for (const m of p.groups) for (const g of m.values()) return 'sketches' in g;
  return false;
}

export function groupStats(g: GroupState): PeerGroup {
  return { count: g.count, firstDate: g.firstDate, lastDate: g.lastDate, features: g.sketches.map((s) => s.summary()) };
}

/** Summarises a snapshot into the tables the engine scores with. */
export function snapshotTables(s: PeerSnapshot): PeerTables {
  return { levels: s.levels, groups: s.groups.map((m) => { const out = new Map<string, PeerGroup>(); for (const [k, g] of m) out.set(k, groupStats(g)); return out; }), info: s.info };
}

export function buildPeerTables(batches: Iterable<ColumnarBatch>, levelSpecs: readonly string[] = DEFAULT_LEVELS): PeerTables {
  const builder = new PeerTableBuilder({ levels: levelSpecs });
  for (const b of batches) builder.add(b);
  return builder.finish();
}

/** Robust scale of a group's feature: 1.4826·MAD, floored so that z stays finite. */
export function robustScale(mad: number, madFloor: number): number {
  return Math.max(1.4826 * mad, madFloor);
}
