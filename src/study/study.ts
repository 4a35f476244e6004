/**
 * Deviation studies: which declarations of a file deviate most from their
 * peers, and which peer groups hold the most outliers. One streaming pass:
 * the kernel computes each feature's robust z against the group it falls
 * back to; the study keeps the top N in a bounded heap and one small counter
 * per peer group met, so memory is bounded by N and the number of groups.
 *
 * Library API (the CLI's `selectivity study` and the service's
 * POST /v1/studies call it): studyFile(path, peers, options).
 */
import { statSync } from 'node:fs';
import { errors } from '../errors.js';
import { createEngine } from '../engine.js';
import { formatIsoDate } from '../model/schema.js';
import { readDeclarations, type ReadOptions } from '../model/readers.js';
import {
  BatchGroups, featureValues, FEATURES, isPeerSnapshot, levelKey, NF, parseLevel, robustScale, snapshotTables,
  type Feature, type PeerGroup, type PeerSnapshot, type PeerTables,
} from '../peers/peer-groups.js';
import { createRuleset, DEFAULT_SETTINGS, type RulesetSettingsInput } from '../ruleset/ruleset.js';
import type { StudyDeclaration, StudyDistribution, StudyFeature, StudyGroup, StudyReport } from './report.js';

/** The peers version a report names when its snapshot was built from the studied file (never saved, so it has none). */
export const IN_SAMPLE = 'in-sample (built from the studied file, not saved)';

export const RANK_BY = ['maxAbsZ', ...FEATURES] as const;
export type RankBy = (typeof RANK_BY)[number];
export type Direction = 'under' | 'over' | 'both';

export interface StudyOptions {
  /** Declarations listed in the report (default 50, at most 100,000). */
  top?: number;
  /** Ranking measure: the largest |z| of any feature (default), or one feature's z. */
  rankBy?: RankBy;
  /** Which side counts: below the peers, above, or both (default). */
  direction?: Direction;
  /** Scoring settings (zThreshold, minGroupSize, madFloor …) over the defaults and the snapshot's minGroupSize. */
  settings?: RulesetSettingsInput;
  /** Groups listed in the report (default 100). */
  groups?: number;
  /** Distribution plots: the unit-value groups of the first top declarations (default 5). */
  distributions?: number;
  /** A group to plot as well: level name and key, e.g. { level: 'hs6,origin', key: '845210|CN' }. */
  group?: { level: string; key: string };
  columns?: ReadOptions['columns'];
  batchSize?: number;
  /** Name shown as the report's source (default: the path). */
  sourceName?: string;
  onProgress?: (bytesRead: number, totalBytes: number, rows: number) => void;
}

/** A kept top-N row: what the report needs of it once the file is gone. */
interface Kept {
  deviation: number;
  seq: number;
  id: string;
  date: number;
  hs: string;
  origin: string;
  importer: string;
  fields: string[];
  customsValue: number;
  netMass: number;
  quantity: number;
  score: number;
  x: number[];
  z: number[];
  level: number[];
}

/** Min-heap on (deviation, −seq): the root is the weakest kept row; earlier rows win ties. */
class TopHeap {
  readonly items: Kept[] = [];
  constructor(readonly capacity: number) {}
  private less(a: Kept, b: Kept): boolean {
    return a.deviation < b.deviation || (a.deviation === b.deviation && a.seq > b.seq);
  }
  /** Would a row with this deviation enter the heap? */
  admits(deviation: number): boolean {
    return this.items.length < this.capacity || deviation > this.items[0].deviation;
  }
  push(k: Kept): void {
    const h = this.items;
    if (h.length < this.capacity) {
      h.push(k);
      let i = h.length - 1;
      while (i > 0) { const p = (i - 1) >> 1; if (!this.less(h[i], h[p])) break; [h[i], h[p]] = [h[p], h[i]]; i = p; }
      return;
    }
    if (!this.less(h[0], k)) return;
    h[0] = k;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l], h[m])) m = l;
      if (r < h.length && this.less(h[r], h[m])) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
  sorted(): Kept[] {
    return this.items.slice().sort((a, b) => b.deviation - a.deviation || a.seq - b.seq);
  }
}

interface GroupCounter { level: number; key: string; studied: number; outliers: number; under: number; over: number }

const fin = (x: number): number | null => (Number.isFinite(x) ? x : null);

function groupLabel(levelName: string, key: string): string {
  const [hs, field] = key.split('|');
  const parts = levelName.split(',');
  const out: string[] = [];
  for (const p of parts) out.push(p.startsWith('hs') ? `${p} ${hs}` : `${p} ${field}`);
  return out.join(' · ');
}

function checkOptions(o: StudyOptions): Required<Pick<StudyOptions, 'top' | 'rankBy' | 'direction' | 'groups' | 'distributions'>> {
  const top = o.top ?? 50;
  const z = o.settings?.zThreshold;
  if (z !== undefined && !(typeof z === 'number' && Number.isFinite(z) && z >= 0 && z <= 1000)) throw errors.SEL_ERR_OPTION_INVALID('zThreshold must be a number in [0, 1000]', { field: 'zThreshold', expected: 'a number in [0, 1000]', got: z });
  if (!Number.isInteger(top) || top < 1 || top > 100_000) throw errors.SEL_ERR_OPTION_INVALID('top must be an integer in [1, 100000]', { field: 'top', expected: 'an integer in [1, 100000]', got: top });
  const rankBy = o.rankBy ?? 'maxAbsZ';
  if (!(RANK_BY as readonly string[]).includes(rankBy)) throw errors.SEL_ERR_OPTION_INVALID(`unknown ranking "${rankBy}"`, { field: 'rankBy', expected: RANK_BY.join(' | '), got: rankBy });
  const direction = o.direction ?? 'both';
  if (!['under', 'over', 'both'].includes(direction)) throw errors.SEL_ERR_OPTION_INVALID(`unknown direction "${direction}"`, { field: 'direction', expected: 'under | over | both', got: direction });
  const groups = o.groups ?? 100;
  if (!Number.isInteger(groups) || groups < 0 || groups > 100_000) throw errors.SEL_ERR_OPTION_INVALID('groups must be an integer in [0, 100000]', { field: 'groups', expected: 'an integer in [0, 100000]', got: groups });
  const distributions = o.distributions ?? 5;
  if (!Number.isInteger(distributions) || distributions < 0 || distributions > 100) throw errors.SEL_ERR_OPTION_INVALID('distributions must be an integer in [0, 100]', { field: 'distributions', expected: 'an integer in [0, 100]', got: distributions });
  return { top, rankBy, direction, groups, distributions };
}

/**
 * The group a study is asked to plot, checked against the snapshot before
 * the file is read (a wrong one used to fail only after the whole pass):
 * its level as the snapshot names it ("origin,hs6" is hs6,origin), and a
 * key the snapshot holds. Tables without a snapshot (a format-1 file) have no
 * distributions to plot: refused, not ignored.
 */
function checkGroup(snapshot: PeerSnapshot | undefined, g: { level: string; key: string }): { level: string; key: string } {
  const bad = (message: string, expected: string) => errors.SEL_ERR_OPTION_INVALID(message, { field: 'group', expected, got: `${g.level}:${g.key}` });
  if (!snapshot) throw bad('a distribution plot (group) needs a peer snapshot; these peers are tables without sketches (a format-1 file)', 'a snapshot from selectivity peers build');
  let level: string;
  try { level = parseLevel(g.level).name; } catch { throw bad(`unknown peer level "${g.level}"`, `one of ${snapshot.levels.map((x) => x.name).join(', ')}`); }
  const l = snapshot.levels.findIndex((x) => x.name === level);
  if (l < 0) throw bad(`the snapshot has no level ${level}`, `one of ${snapshot.levels.map((x) => x.name).join(', ')}`);
  if (!snapshot.groups[l].has(g.key)) {
    const example = snapshot.groups[l].keys().next().value;
    throw bad(`no group "${g.key}" at level ${level} in the snapshot`, `a key of level ${level}, written as the snapshot writes it${example !== undefined ? ` (e.g. "${example}": HS digits, "|", the field's value)` : ''}`);
  }
  return { level, key: g.key };
}

/** The deviation of one row under a ranking: NaN when the row cannot be ranked. */
export function deviationOf(z: ArrayLike<number>, offset: number, rankBy: RankBy, direction: Direction): number {
  const signed = (v: number) => (direction === 'both' ? Math.abs(v) : direction === 'under' ? -v : v);
  if (rankBy !== 'maxAbsZ') return signed(z[offset + FEATURES.indexOf(rankBy)]);
  let best = NaN;
  for (let f = 0; f < NF; f++) {
    const v = signed(z[offset + f]);
    if (v === v && !(v <= best)) best = v;
  }
  return best;
}

/**
 * Studies a declaration file against peer statistics (a snapshot gives
 * distribution plots too; bare tables do not). Rows are scored by the kernel
 * on the calling thread: reading and parsing dominate the time, not scoring.
 */
export async function studyFile(path: string, peers: PeerSnapshot | PeerTables, options: StudyOptions = {}): Promise<StudyReport> {
  const t0 = performance.now();
  const o = checkOptions(options);
  const snapshot = isPeerSnapshot(peers) ? peers : undefined;
  const group = options.group && checkGroup(snapshot, options.group);
  const tables: PeerTables = snapshot ? snapshotTables(snapshot) : (peers as PeerTables);
  const ruleset = createRuleset({ peers: tables, profiles: [], settings: { ...options.settings, randomSelection: { ...DEFAULT_SETTINGS.randomSelection, rate: 0 } } });
  const s = ruleset.settings;
  const levels = tables.levels;
  const rankFeature = o.rankBy === 'maxAbsZ' ? 0 : FEATURES.indexOf(o.rankBy);
  let total = 0;
  try { total = statSync(path).size; } catch {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}`, { field: 'file', expected: 'a readable file', got: path });
  }

  const engine = createEngine({ ruleset, threads: 0 });
  const heap = new TopHeap(o.top);
  const counters: Map<string, GroupCounter>[] = levels.map(() => new Map());
  let rows = 0, scored = 0, invalid = 0, outliers = 0, seq = 0, lastBadLine = -1;
  const x = new Float64Array(NF);
  try {
    for await (const chunk of readDeclarations(path, { columns: options.columns, batchSize: options.batchSize })) {
      rows = chunk.rowsRead;
      for (const e of chunk.errors) if (e.line !== lastBadLine) { invalid++; lastBadLine = e.line; }
      const b = chunk.batch;
      if (b.size > 0) {
        const r = await engine.scoreBatch(b);
        scored += b.size;
        const groupsOf = new BatchGroups(levels, b, (l, key) => {
          let c = counters[l].get(key);
          if (!c) { c = { level: l, key, studied: 0, outliers: 0, under: 0, over: 0 }; counters[l].set(key, c); }
          return c;
        });
        for (let i = 0; i < b.size; i++) {
          const off = i * NF;
          let isOutlier = false;
          for (let f = 0; f < NF; f++) if (Math.abs(r.z[off + f]) > s.zThreshold) isOutlier = true;
          if (isOutlier) outliers++;
          // the group of the ranking feature (unit value for maxAbsZ) gets the row counted
          const l = r.level[off + rankFeature];
          if (l >= 0) {
            const c = groupsOf.at(l, i)!; // the kernel used this level, so the row has a group there
            const z = r.z[off + rankFeature];
            c.studied++;
            if (Math.abs(z) > s.zThreshold) { c.outliers++; if (z < 0) c.under++; else c.over++; }
          }
          const dev = deviationOf(r.z, off, o.rankBy, o.direction);
          // one side asked for: a row on the other side (or at the median) is not listed, however few are on this one
          if (dev === dev && (o.direction === 'both' || dev > 0) && heap.admits(dev)) {
            featureValues(b.numeric.customsValue[i], b.numeric.netMass[i], b.numeric.quantity[i], x);
            heap.push({
              deviation: dev, seq: seq + i, id: chunk.ids[i], date: b.date[i],
              hs: b.dicts.hs[b.codes.hs[i]], origin: b.dicts.origin[b.codes.origin[i]], importer: b.dicts.importer[b.codes.importer[i]],
              fields: levels.map((lv) => (lv.field ? b.dicts[lv.field][b.codes[lv.field][i]] : '')),
              customsValue: b.numeric.customsValue[i], netMass: b.numeric.netMass[i], quantity: b.numeric.quantity[i],
              score: r.score[i], x: Array.from(x), z: Array.from(r.z.subarray(off, off + NF)), level: Array.from(r.level.subarray(off, off + NF)),
            });
          }
        }
        seq += b.size;
      }
      options.onProgress?.(chunk.bytesRead, total, chunk.rowsRead);
    }
  } finally {
    await engine.close();
  }

  const statsOf = (l: number, key: string): PeerGroup | undefined => tables.groups[l]?.get(key);
  const top: StudyDeclaration[] = heap.sorted().map((k, idx) => ({
    rank: idx + 1,
    id: k.id,
    date: formatIsoDate(k.date),
    hs: k.hs,
    origin: k.origin,
    importer: k.importer,
    customsValue: k.customsValue,
    netMass: k.netMass,
    quantity: fin(k.quantity),
    deviation: k.deviation,
    score: k.score,
    features: FEATURES.map((feature, f): StudyFeature => {
      const l = k.level[f];
      const key = l >= 0 ? levelKey(levels[l], k.hs, k.fields[l]) ?? null : null;
      const g = l >= 0 && key !== null ? statsOf(l, key)?.features[f] : undefined;
      const spread = g ? robustScale(g.mad, s.madFloor) : NaN;
      return {
        feature,
        value: fin(Math.exp(k.x[f])),
        z: fin(k.z[f]),
        peerLevel: l >= 0 ? levels[l].name : null,
        peerKey: key,
        peerCount: g ? g.n : null,
        median: g ? fin(Math.exp(g.median)) : null,
        spread: fin(spread),
        typicalLow: g ? fin(Math.exp(g.median - s.zThreshold * spread)) : null,
        typicalHigh: g ? fin(Math.exp(g.median + s.zThreshold * spread)) : null,
      };
    }),
  }));

  const feature: Feature = FEATURES[rankFeature];
  const allGroups: StudyGroup[] = [];
  counters.forEach((m, l) => {
    for (const c of m.values()) {
      const g = statsOf(l, c.key)?.features[rankFeature];
      allGroups.push({
        level: levels[l].name, key: c.key, label: groupLabel(levels[l].name, c.key), feature,
        size: g?.n ?? 0,
        median: g ? fin(Math.exp(g.median)) : null,
        spread: g ? fin(robustScale(g.mad, s.madFloor)) : null,
        mean: g ? fin(Math.exp(g.mean)) : null, // the geometric mean: the sketch keeps the mean of the logs
        std: g ? fin(g.std) : null,
        min: g ? fin(Math.exp(g.min)) : null,
        max: g ? fin(Math.exp(g.max)) : null,
        studied: c.studied, outliers: c.outliers, under: c.under, over: c.over,
        outlierShare: c.studied > 0 ? c.outliers / c.studied : 0,
      });
    }
  });
  // groups with at least minGroupSize studied declarations first: 1 outlier in 1 is no pattern
  const big = (g: StudyGroup) => (g.studied >= s.minGroupSize ? 1 : 0);
  allGroups.sort((a, b) => big(b) - big(a) || b.outlierShare - a.outlierShare || b.outliers - a.outliers || b.studied - a.studied || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  const groups = allGroups.filter((g) => g.outliers > 0).slice(0, o.groups);

  const distributions = snapshot ? buildDistributions(snapshot, top, o.distributions, group) : [];
  return {
    generatedAt: new Date().toISOString(),
    source: options.sourceName ?? path,
    // a snapshot built from the studied file itself was never saved: its version is empty
    peers: { version: tables.info?.version || (tables.info ? IN_SAMPLE : 'unversioned'), createdAt: tables.info?.createdAt ?? '', levels: levels.map((l) => l.name), rows: tables.info?.rows ?? 0 },
    settings: { top: o.top, rankBy: o.rankBy, direction: o.direction, zThreshold: s.zThreshold, minGroupSize: s.minGroupSize, madFloor: s.madFloor },
    rows, scored, invalid, outliers,
    seconds: (performance.now() - t0) / 1000,
    top, groups, distributions,
  };
}

/** Display bins: the sketch's fine histogram merged into at most `target` equal-width bins (log space). */
function displayBins(hist: [number, number][], width: number, target = 40): { lo: number; hi: number; count: number }[] {
  if (hist.length === 0) return [];
  const first = hist[0][0], last = hist[hist.length - 1][0];
  const span = last - first + 1;
  const per = Math.max(1, Math.ceil(span / target));
  const out: { lo: number; hi: number; count: number }[] = [];
  for (let start = first; start <= last; start += per) {
    out.push({ lo: Math.exp(start * width), hi: Math.exp((start + per) * width), count: 0 });
  }
  for (const [k, c] of hist) out[Math.floor((k - first) / per)].count += c;
  return out;
}

function buildDistributions(snapshot: PeerSnapshot, top: StudyDeclaration[], count: number, chosen?: { level: string; key: string }): StudyDistribution[] {
  const f = 0; // unit value
  const wanted: { level: string; key: string }[] = [];
  if (chosen) {
    const l = snapshot.levels.findIndex((x) => x.name === chosen.level);
    if (l < 0 || !snapshot.groups[l].has(chosen.key)) {
      throw errors.SEL_ERR_OPTION_INVALID(`no group "${chosen.key}" at level ${chosen.level} in the snapshot`, { field: 'group', expected: `level:key with a level of ${snapshot.levels.map((x) => x.name).join(', ')}`, got: `${chosen.level}:${chosen.key}` });
    }
    wanted.push(chosen);
  }
  for (const d of top) {
    if (wanted.length >= count + (chosen ? 1 : 0)) break;
    const uf = d.features[f];
    if (uf.peerLevel && uf.peerKey && !wanted.some((w) => w.level === uf.peerLevel && w.key === uf.peerKey)) wanted.push({ level: uf.peerLevel, key: uf.peerKey });
  }
  return wanted.map(({ level, key }) => {
    const l = snapshot.levels.findIndex((x) => x.name === level);
    const sketch = snapshot.groups[l].get(key)!.sketches[f];
    const sum = sketch.summary();
    return {
      level, key, label: groupLabel(level, key), feature: FEATURES[f],
      bins: displayBins(sketch.histogram(), sketch.width),
      median: fin(Math.exp(sum.median)),
      marked: top.filter((d) => d.features[f].peerLevel === level && d.features[f].peerKey === key && d.features[f].value !== null)
        .map((d) => ({ id: d.id, value: d.features[f].value!, z: d.features[f].z, rank: d.rank })),
    };
  });
}
