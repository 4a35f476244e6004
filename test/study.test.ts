import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDeclarations, writeSynthetic } from '../src/generate/synthetic.js';
import { referenceScore } from '../src/kernel/reference.js';
import { toBatch } from '../src/model/columnar.js';
import { FEATURES, NF, PeerTableBuilder, snapshotTables, type PeerSnapshot } from '../src/peers/peer-groups.js';
import { createRuleset, DEFAULT_SETTINGS } from '../src/ruleset/ruleset.js';
import { deviationOf, IN_SAMPLE, studyFile } from '../src/study/study.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-study-'));
const OPTS = { seed: 11, hsCodes: 30, fraudRate: { undervaluation: 0.03, riskyPair: 0, trader: 0 } };
const HISTORY = 8000;
const STUDIED = 3000;
const file = join(dir, 'studied.csv');
let snapshot: PeerSnapshot;
let rows: ReturnType<typeof generateDeclarations> extends Generator<infer R> ? R[] : never;

beforeAll(async () => {
  // one world, two slices: the first rows are history, the rest are studied
  rows = [...generateDeclarations({ ...OPTS, rows: HISTORY + STUDIED })];
  const b = new PeerTableBuilder();
  b.add(toBatch(rows.slice(0, HISTORY).map((r) => r.declaration)).batch);
  snapshot = b.snapshot();
  // writeSynthetic cannot start mid-stream, so write all rows and study the whole file against history
  await writeSynthetic(file, { ...OPTS, rows: HISTORY + STUDIED });
});

/** The reference scorer's z for every row of the file, in file order. */
function referenceZ(): { ids: string[]; z: Float64Array; level: Int8Array } {
  const decls = rows.map((r) => r.declaration);
  const ruleset = createRuleset({ peers: snapshotTables(snapshot), settings: { randomSelection: { ...DEFAULT_SETTINGS.randomSelection, rate: 0 } } });
  const ref = referenceScore(ruleset, toBatch(decls).batch);
  return { ids: decls.map((d) => d.id), z: ref.z, level: ref.level };
}

describe('studyFile', () => {
  it('ranks the same declarations as the reference scorer, by largest |z|', async () => {
    const report = await studyFile(file, snapshot, { top: 40 });
    const { ids, z } = referenceZ();
    const ranked = ids.map((id, i) => ({ id, d: deviationOf(z, i * NF, 'maxAbsZ', 'both') })).filter((r) => !Number.isNaN(r.d)).sort((a, b) => b.d - a.d);
    expect(report.top.map((t) => t.id)).toEqual(ranked.slice(0, 40).map((r) => r.id));
    report.top.forEach((t, k) => expect(t.deviation).toBeCloseTo(ranked[k].d, 9));
    expect(report.rows).toBe(HISTORY + STUDIED);
    expect(report.scored).toBe(HISTORY + STUDIED);
    expect(report.outliers).toBe(ids.filter((_, i) => [0, 1, 2].some((f) => Math.abs(z[i * NF + f]) > 2)).length);
  });

  it('explains each top declaration against its group: median, spread, typical range, z', async () => {
    const report = await studyFile(file, snapshot, { top: 10, rankBy: 'unitValue', direction: 'under' });
    const tables = snapshotTables(snapshot);
    for (const t of report.top) {
      const uv = t.features[0];
      expect(uv.feature).toBe('unitValue');
      expect(uv.z!).toBeLessThan(0);
      expect(t.deviation).toBeCloseTo(-uv.z!, 12);
      const l = tables.levels.findIndex((x) => x.name === uv.peerLevel);
      const g = tables.groups[l].get(uv.peerKey!)!;
      expect(uv.peerCount).toBe(g.features[0].n);
      expect(uv.median!).toBeCloseTo(Math.exp(g.features[0].median), 9);
      expect(uv.value!).toBeCloseTo(t.customsValue / t.netMass, 9);
      // z as the kernel computes it, restated: (ln value − median) / spread
      expect(uv.z!).toBeCloseTo((Math.log(uv.value!) - g.features[0].median) / uv.spread!, 9);
      expect(uv.typicalLow!).toBeLessThan(uv.median!);
      expect(uv.value!).toBeLessThan(uv.typicalLow!);
    }
    // ranked most negative first
    for (let k = 1; k < report.top.length; k++) expect(report.top[k - 1].features[0].z!).toBeLessThanOrEqual(report.top[k].features[0].z!);
  });

  it('finds the planted under-valuations: the top of the under ranking is mostly planted fraud', async () => {
    const report = await studyFile(file, snapshot, { top: 50, rankBy: 'unitValue', direction: 'under' });
    const planted = new Set(rows.filter((r) => r.fraudType === 'undervaluation').map((r) => r.declaration.id));
    const hits = report.top.filter((t) => planted.has(t.id)).length;
    const baseRate = planted.size / rows.length;
    expect(baseRate).toBeLessThan(0.05);
    expect(hits / report.top.length).toBeGreaterThan(0.6);
  });

  it('summarises groups: counts add up, and outlier shares match the reference', async () => {
    const report = await studyFile(file, snapshot, { top: 5, groups: 100_000 });
    const { z, level } = referenceZ();
    let outlying = 0;
    for (let i = 0; i < rows.length; i++) if (level[i * NF] >= 0 && Math.abs(z[i * NF]) > 2) outlying++;
    expect(report.groups.reduce((a, g) => a + g.outliers, 0)).toBe(outlying);
    for (const g of report.groups) {
      expect(g.feature).toBe('unitValue');
      expect(g.under + g.over).toBe(g.outliers);
      expect(g.outlierShare).toBeCloseTo(g.outliers / g.studied, 12);
      expect(g.outliers).toBeGreaterThan(0);
      // the group's statistics in natural units (spread and std aside): the geometric mean lies between min and max
      if (g.size > 0) {
        expect(g.min!).toBeLessThanOrEqual(g.median!);
        expect(g.median!).toBeLessThanOrEqual(g.max!);
        expect(g.mean!).toBeGreaterThanOrEqual(g.min! * (1 - 1e-12));
        expect(g.mean!).toBeLessThanOrEqual(g.max! * (1 + 1e-12));
      }
    }
    const big = report.groups.filter((g) => g.studied >= 5);
    for (let k = 1; k < big.length; k++) expect(big[k - 1].outlierShare).toBeGreaterThanOrEqual(big[k].outlierShare);
  });

  it('plots the unit-value distribution of the top groups from the snapshot, with the declarations marked', async () => {
    const report = await studyFile(file, snapshot, { top: 20, rankBy: 'unitValue', distributions: 3 });
    expect(report.distributions.length).toBe(3);
    const tables = snapshotTables(snapshot);
    for (const d of report.distributions) {
      const l = tables.levels.findIndex((x) => x.name === d.level);
      const n = tables.groups[l].get(d.key)!.features[0].n;
      expect(d.bins.reduce((a, b) => a + b.count, 0)).toBe(n);
      expect(d.bins.length).toBeLessThanOrEqual(40);
      for (let k = 1; k < d.bins.length; k++) expect(d.bins[k].lo).toBeCloseTo(d.bins[k - 1].hi, 9);
      expect(d.marked.length).toBeGreaterThan(0);
      for (const m of d.marked) {
        const t = report.top.find((x) => x.id === m.id)!;
        expect(t.features[0].peerKey).toBe(d.key);
      }
    }
  });

  it('refuses bad options with a named error', async () => {
    await expect(studyFile(file, snapshot, { top: 0 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'top' } });
    await expect(studyFile(file, snapshot, { rankBy: 'price' as never })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'rankBy' } });
    await expect(studyFile(file, snapshot, { group: { level: 'hs6', key: 'nope|' } })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'group' } });
    await expect(studyFile(join(dir, 'missing.csv'), snapshot)).rejects.toMatchObject({ code: 'SEL_ERR_FILE_NOT_FOUND' });
  });

  it('one direction lists only rows on that side of their peers, even when fewer than --top are', async () => {
    for (const direction of ['under', 'over'] as const) {
      const report = await studyFile(file, snapshot, { top: 10_000, rankBy: 'unitValue', direction });
      expect(report.top.length).toBeGreaterThan(100);
      expect(report.top.length).toBeLessThan(9000); // not filled up from the other side (11,000 rows, about half on each)
      for (const t of report.top) {
        expect(t.deviation).toBeGreaterThan(0);
        const z = t.features[0].z;
        if (direction === 'under') expect(z).toBeLessThan(0); else expect(z).toBeGreaterThan(0);
      }
    }
  });

  it('an in-sample study (peers built from the file, never saved) names its peers as such, not by an empty version', async () => {
    const b = new PeerTableBuilder();
    b.add(toBatch(rows.map((r) => r.declaration)).batch);
    const report = await studyFile(file, b.snapshot(), { top: 3 });
    expect(report.peers.version).toBe(IN_SAMPLE);
    expect((await studyFile(file, snapshot, { top: 3 })).peers.version).toBe(IN_SAMPLE); // the beforeAll snapshot was never saved either
  });

  it('checks the group to plot before reading the file: its level as the snapshot names it, a key it holds, a snapshot (not bare tables)', async () => {
    const missing = join(dir, 'not-there.csv');
    // refused for the group, not for the missing file: checked first
    for (const group of [{ level: 'hs5', key: 'x' }, { level: 'hs6,departure', key: 'x' }, { level: 'hs6', key: 'nope|' }]) {
      await expect(studyFile(missing, snapshot, { group })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'group' } });
    }
    await expect(studyFile(missing, snapshotTables(snapshot), { group: { level: 'hs6', key: 'x' } })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'group', expected: 'a snapshot from selectivity peers build' } });
    // the level written the other way round is the same level
    const key = snapshot.groups[0].keys().next().value as string;
    const report = await studyFile(file, snapshot, { top: 5, group: { level: 'origin,hs6', key } });
    expect(report.distributions[0]).toMatchObject({ level: 'hs6,origin', key });
  });

  it('writes its JSON report with every feature listed', async () => {
    const report = await studyFile(file, snapshot, { top: 3 });
    const round = JSON.parse(JSON.stringify(report));
    expect(round.top[0].features.map((f: { feature: string }) => f.feature)).toEqual([...FEATURES]);
    expect(readFileSync(file, 'utf8').split('\n').length).toBe(HISTORY + STUDIED + 2);
  });
});
