import { describe, expect, it } from 'vitest';
import { Kernel } from '../src/kernel/kernel.js';
import { referenceScore } from '../src/kernel/reference.js';
import { toBatch } from '../src/model/columnar.js';
import type { Declaration } from '../src/model/schema.js';
import {
  buildPeerTables, featureValues, levelKey, median, parseLevel, parseLevels, PeerTableBuilder, robustScale, robustStats, DEFAULT_LEVELS, MAX_LEVELS, NF,
} from '../src/peers/peer-groups.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';

// ---- independent re-statement of the statistics, for expected values
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
function med(xs: number[]): number {
  const s = sorted(xs);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}
const madOf = (xs: number[]) => { const m = med(xs); return med(xs.map((x) => Math.abs(x - m))); };
const unitValue = (d: Declaration) => Math.log(d.customsValue) - Math.log(d.netMass);
const lnMass = (d: Declaration) => Math.log(d.netMass);
const valuePerItem = (d: Declaration) => Math.log(d.customsValue) - Math.log(d.quantity!);

let n = 0;
function decl(hs: string, origin: string, customsValue: number, netMass: number, quantity?: number): Declaration {
  const d: Declaration = { id: `H${n++}`, date: '2025-03-01', office: 'OF1', importer: 'IMP1', hs, origin, customsValue, netMass };
  if (quantity !== undefined) d.quantity = quantity;
  return d;
}

// hs 851712 × CN: unit values 10, 20, 30, 40, 50; masses 50, 100, 200, 100, 400;
// one without quantity, one with zero mass (and no quantity).
const CN = [
  decl('851712', 'CN', 500, 50, 10),
  decl('851712', 'CN', 2000, 100, 20),
  decl('851712', 'CN', 6000, 200, 10),
  decl('851712', 'CN', 4000, 100, 50),
  decl('851712', 'CN', 20000, 400),
  decl('851712', 'CN', 700, 0),
];
// hs 851712 × VN: two declarations (a group too small on its own)
const VN = [decl('851712', 'VN', 100, 10, 1), decl('851712', 'VN', 600, 20, 3)];
// hs 851713 × DE: four declarations, unit values 8, 16, 32, 64 (an even count)
const DE = [decl('851713', 'DE', 80, 10, 2), decl('851713', 'DE', 160, 10, 2), decl('851713', 'DE', 320, 10, 4), decl('851713', 'DE', 640, 10, 8)];
const HISTORY = [...CN, ...VN, ...DE];
const LEVELS = ['hs6,origin', 'hs6', 'hs4'];

const valid = (xs: Declaration[], f: (d: Declaration) => number) => xs.map(f).filter((x) => Number.isFinite(x));

describe('PeerTableBuilder', () => {
  const peers = buildPeerTables([toBatch(HISTORY).batch], LEVELS);

  it('parses the levels and keys groups by HS prefix and field', () => {
    expect(peers.levels).toEqual([{ name: 'hs6,origin', hsDigits: 6, field: 'origin' }, { name: 'hs6', hsDigits: 6 }, { name: 'hs4', hsDigits: 4 }]);
    expect([...peers.groups[0].keys()].sort()).toEqual(['851712|CN', '851712|VN', '851713|DE']);
    expect([...peers.groups[1].keys()].sort()).toEqual(['851712|', '851713|']);
    expect([...peers.groups[2].keys()]).toEqual(['8517|']);
  });

  it('computes the exact median and MAD of each feature (odd count)', () => {
    const g = peers.groups[0].get('851712|CN')!;
    expect(g.count).toBe(6);
    const [uv, nm, vpi] = g.features;
    // unit value: ln 10 … ln 50 → median ln 30, MAD ln 1.5 (deviations 0, ln 4/3, ln 1.5, ln 5/3, ln 3)
    expect(uv.n).toBe(5);
    expect(uv.median).toBeCloseTo(Math.log(30), 12);
    expect(uv.mad).toBeCloseTo(Math.log(1.5), 12);
    expect(uv.median).toBe(med(valid(CN, unitValue)));
    expect(uv.mad).toBe(madOf(valid(CN, unitValue)));
    // net mass: ln 50, ln 100, ln 200, ln 100, ln 400 → median ln 100, MAD ln 2
    expect(nm.n).toBe(5);
    expect(nm.median).toBeCloseTo(Math.log(100), 12);
    expect(nm.mad).toBeCloseTo(Math.log(2), 12);
    expect(nm.median).toBe(med(valid(CN, lnMass)));
    expect(nm.mad).toBe(madOf(valid(CN, lnMass)));
    // value per item: 50, 100, 600, 80 → median (ln 80 + ln 100) / 2
    expect(vpi.n).toBe(4);
    expect(vpi.median).toBeCloseTo((Math.log(80) + Math.log(100)) / 2, 12);
    expect(vpi.median).toBe(med(valid(CN, valuePerItem)));
    expect(vpi.mad).toBe(madOf(valid(CN, valuePerItem)));
  });

  it('computes the exact median of an even count as the mean of the middle two', () => {
    const g = peers.groups[0].get('851713|DE')!;
    expect(g.count).toBe(4);
    expect(g.features[0].n).toBe(4);
    expect(g.features[0].median).toBeCloseTo((Math.log(16) + Math.log(32)) / 2, 12);
    // deviations from ln(16√2): 1.5·ln2, 0.5·ln2, 0.5·ln2, 1.5·ln2 → MAD ln 2
    expect(g.features[0].mad).toBeCloseTo(Math.log(2), 12);
    expect(g.features[1]).toMatchObject({ n: 4, median: Math.log(10), mad: 0, exact: true, min: Math.log(10), max: Math.log(10), std: 0 });
    expect(g.features[1].mean).toBeCloseTo(Math.log(10), 14);
  });

  it('pools declarations at coarser levels', () => {
    const hs6 = peers.groups[1].get('851712|')!;
    expect(hs6.count).toBe(8);
    const all = [...CN, ...VN];
    expect(hs6.features[0]).toMatchObject({ n: 7, median: med(valid(all, unitValue)), mad: madOf(valid(all, unitValue)) });
    expect(hs6.features[0].median).toBeCloseTo(Math.log(30), 12);
    expect(hs6.features[2]).toMatchObject({ n: 6, median: med(valid(all, valuePerItem)), mad: madOf(valid(all, valuePerItem)) });
    const hs4 = peers.groups[2].get('8517|')!;
    expect(hs4.count).toBe(12);
    expect(hs4.features.map((f) => f.n)).toEqual([11, 11, 10]);
    expect(hs4.features[1].median).toBe(med(valid(HISTORY, lnMass)));
    expect(hs4.features[1].mad).toBe(madOf(valid(HISTORY, lnMass)));
  });

  it('gives the same tables whether fed in one batch or several', () => {
    const b = new PeerTableBuilder(LEVELS);
    b.add(toBatch(CN).batch);
    b.add(toBatch(VN).batch);
    b.add(toBatch(DE).batch);
    expect(b.finish().groups).toEqual(peers.groups);
  });

  it('leaves out declarations whose HS code is shorter than the level, or whose field is blank', () => {
    const t = buildPeerTables([toBatch([decl('851712', 'CN', 10, 1), decl('8517120000', 'CN', 10, 1)]).batch], ['hs8', 'hs10', 'departure']);
    expect([...t.groups[0].keys()]).toEqual(['85171200|']);
    expect([...t.groups[1].keys()]).toEqual(['8517120000|']);
    expect(t.groups[2].size).toBe(0); // no departure in either declaration
    expect(levelKey(parseLevel('hs8'), '851712', '')).toBeUndefined();
    expect(levelKey(parseLevel('hs4,origin'), '851712', '')).toBeUndefined();
    expect(levelKey(parseLevel('hs4,origin'), '851712', 'CN')).toBe('8517|CN');
    expect(levelKey(parseLevel('office'), '851712', 'OF1')).toBe('|OF1');
  });

  it('leaves an infinite feature out, as a missing one, past the exact limit too (it used to grow the sketch for ever)', () => {
    const many = Array.from({ length: 200 }, (_, i) => decl('851712', 'CN', 100 + i, 10, 1));
    const t = buildPeerTables([toBatch([...many, decl('851712', 'CN', Infinity, 10, 1)]).batch], ['hs6']);
    const finite = buildPeerTables([toBatch(many).batch], ['hs6']);
    const g = t.groups[0].get('851712|')!, f = finite.groups[0].get('851712|')!;
    expect(g.count).toBe(201);
    // unit value and value per quantity: the infinite one left out, the statistics of the 200 others
    expect(g.features[0]).toEqual(f.features[0]);
    expect(g.features[2]).toEqual(f.features[2]);
    expect(g.features[0].n).toBe(200);
  });
});

describe('robust statistics helpers', () => {
  it('robustScale = max(1.4826·MAD, madFloor)', () => {
    expect(robustScale(0.1, 0.05)).toBeCloseTo(0.14826, 15);
    expect(robustScale(0.01, 0.05)).toBe(0.05);
    expect(robustScale(0, 0.05)).toBe(0.05);
    expect(robustScale(Math.log(1.5), 1e-9)).toBe(1.4826 * Math.log(1.5));
  });

  it('median and robustStats handle empty, single and sorted/unsorted input', () => {
    expect(median(new Float64Array())).toBeNaN();
    expect(median(Float64Array.from([5]))).toBe(5);
    expect(median(Float64Array.from([3, -1, 2, 10]))).toBe(2.5);
    expect(median(Float64Array.from([-10, -2, -30]))).toBe(-10);
    expect(robustStats(new Float64Array())).toEqual({ n: 0, median: NaN, mad: NaN });
    expect(robustStats(Float64Array.from([1, 2, 3, 4, 100]))).toEqual({ n: 5, median: 3, mad: 1 });
  });

  it('featureValues: ln(v) − ln(m), ln(m), ln(v) − ln(q); NaN where undefined', () => {
    const x = Array.from(featureValues(600, 20, 3));
    expect(x[0]).toBeCloseTo(Math.log(30), 14);
    expect(x[1]).toBe(Math.log(20));
    expect(x[2]).toBeCloseTo(Math.log(200), 14);
    expect(Array.from(featureValues(0, 20, 3)).map(Number.isNaN)).toEqual([true, false, true]);
    expect(Array.from(featureValues(10, 0, 3)).map(Number.isNaN)).toEqual([true, true, false]);
    expect(Array.from(featureValues(10, 5, NaN)).map(Number.isNaN)).toEqual([false, false, true]);
    expect(Array.from(featureValues(10, 5, 0)).map(Number.isNaN)).toEqual([false, false, true]);
  });
});

describe('scoring against peer groups: minGroupSize and fall-back', () => {
  const peers = buildPeerTables([toBatch(HISTORY).batch], LEVELS);
  const probe = [
    decl('851712', 'CN', 300, 100, 10), // 0: CN group for uv and mass (n = 5); vpi n = 4 → hs6
    decl('851712', 'VN', 300, 100, 10), // 1: VN group too small → hs6 for every feature
    decl('851713', 'DE', 50, 10, 5),    // 2: hs6 851713 has 4 → hs4
    decl('901000', 'CN', 300, 100, 10), // 3: no group at any level
    decl('851712', 'CN', 300, 0, 10),   // 4: zero mass: uv and mass undefined
  ];
  const { batch } = toBatch(probe);
  const kernel = new Kernel();

  function scoreBoth(minGroupSize: number, madFloor = 0.05) {
    const ruleset = createRuleset({ peers, settings: { minGroupSize, madFloor, randomSelection: { rate: 0, channel: 'red', seed: 0 } } });
    kernel.loadRuleset(compileRuleset(ruleset));
    const got = kernel.score(batch);
    const want = referenceScore(ruleset, batch);
    // the kernel must agree with the reference on the levels and the z-scores
    expect(Array.from(got.level)).toEqual(Array.from(want.level));
    for (let k = 0; k < probe.length * NF; k++) {
      if (Number.isNaN(want.z[k])) expect(got.z[k]).toBeNaN();
      else expect(got.z[k]).toBeCloseTo(want.z[k], 9);
    }
    return want;
  }
  const levelsOf = (r: { level: Int8Array }, i: number) => Array.from(r.level.subarray(i * NF, (i + 1) * NF));

  it('uses the most specific group with at least minGroupSize values, per feature', () => {
    const r = scoreBoth(5);
    expect(levelsOf(r, 0)).toEqual([0, 0, 1]);
    expect(levelsOf(r, 1)).toEqual([1, 1, 1]);
    expect(levelsOf(r, 2)).toEqual([2, 2, 2]);
    expect(levelsOf(r, 3)).toEqual([-1, -1, -1]);
    expect(levelsOf(r, 4)).toEqual([-1, -1, 1]);
    for (let f = 0; f < NF; f++) expect(r.z[3 * NF + f]).toBeNaN();
    expect(r.z[4 * NF]).toBeNaN();
    expect(r.z[4 * NF + 1]).toBeNaN();
  });

  it('z = (x − median) / max(1.4826·MAD, madFloor) with the stats of the chosen group', () => {
    const r = scoreBoth(5);
    const cn = peers.groups[0].get('851712|CN')!.features;
    const hs6 = peers.groups[1].get('851712|')!.features;
    const hs4 = peers.groups[2].get('8517|')!.features;
    // row 0: unit value 3 against the CN median 30 (MAD ln 1.5)
    expect(r.z[0]).toBeCloseTo((Math.log(3) - Math.log(30)) / (1.4826 * Math.log(1.5)), 12);
    expect(r.z[1]).toBeCloseTo((Math.log(100) - cn[1].median) / robustScale(cn[1].mad, 0.05), 12);
    expect(r.z[2]).toBeCloseTo((Math.log(30) - hs6[2].median) / robustScale(hs6[2].mad, 0.05), 12);
    // row 2: hs4 statistics
    expect(r.z[2 * NF]).toBeCloseTo((Math.log(5) - hs4[0].median) / robustScale(hs4[0].mad, 0.05), 12);
    // strongly under-valued against its peers
    expect(r.z[0]).toBeLessThan(-2);
  });

  it('a madFloor above 1.4826·MAD becomes the scale', () => {
    const r = scoreBoth(5, 10);
    expect(r.z[0]).toBeCloseTo((Math.log(3) - Math.log(30)) / 10, 12);
  });

  it('a zero-MAD group is scaled by madFloor (finite z)', () => {
    const r = scoreBoth(4);
    // with minGroupSize 4 the DE group (masses all 10 → MAD 0) qualifies
    expect(levelsOf(r, 2)).toEqual([0, 0, 0]);
    expect(r.z[2 * NF + 1]).toBe((Math.log(10) - Math.log(10)) / 0.05);
    expect(r.z[2 * NF]).toBeCloseTo((Math.log(5) - (Math.log(16) + Math.log(32)) / 2) / (1.4826 * Math.log(2)), 12);
  });

  it('minGroupSize is inclusive: lowering it to 4 lets the 4-value groups in, raising it to 8 pushes rows to hs4', () => {
    const r4 = scoreBoth(4);
    expect(levelsOf(r4, 0)).toEqual([0, 0, 0]);
    const r8 = scoreBoth(8);
    // hs6 851712 has 7 unit values, 7 masses, 6 values per item: all below 8 → hs4 (11, 11, 10)
    expect(levelsOf(r8, 0)).toEqual([2, 2, 2]);
    expect(levelsOf(r8, 1)).toEqual([2, 2, 2]);
    const r12 = scoreBoth(12);
    expect(levelsOf(r12, 0)).toEqual([-1, -1, -1]);
  });
});

describe('peer level specifications', () => {
  it('parses and canonicalises valid specs', () => {
    expect(parseLevel('hs6,origin')).toEqual({ name: 'hs6,origin', hsDigits: 6, field: 'origin' });
    expect(parseLevel('origin, hs6')).toEqual({ name: 'hs6,origin', hsDigits: 6, field: 'origin' });
    expect(parseLevel('HS4')).toEqual({ name: 'hs4', hsDigits: 4 });
    expect(parseLevel('transportMode')).toEqual({ name: 'transportMode', hsDigits: 0, field: 'transportMode' });
    expect(parseLevel('hs10×office')).toEqual({ name: 'hs10,office', hsDigits: 10, field: 'office' });
    expect(parseLevels(DEFAULT_LEVELS).map((l) => l.name)).toEqual([...DEFAULT_LEVELS]);
  });

  it.each(['hs3', 'hs12', 'hs', 'hs6,hs4', 'origin,office', 'hs6,importer', 'foo', '', ' , ', 'hs6;origin'])('rejects level "%s" with SEL_ERR_PEERS_INVALID', (spec) => {
    expect(() => parseLevel(spec)).toThrow(expect.objectContaining({ code: 'SEL_ERR_PEERS_INVALID', details: expect.objectContaining({ field: 'levels' }) }));
    expect(() => new PeerTableBuilder([spec])).toThrow(expect.objectContaining({ code: 'SEL_ERR_PEERS_INVALID' }));
  });

  it('rejects empty, too long or repeated hierarchies', () => {
    const bad = (specs: string[]) => expect(() => buildPeerTables([], specs)).toThrow(expect.objectContaining({ code: 'SEL_ERR_PEERS_INVALID', details: expect.objectContaining({ field: 'levels' }) }));
    bad([]);
    bad(['hs6', 'hs6']);
    bad(['hs6,origin', 'origin,hs6']);
    bad(Array.from({ length: MAX_LEVELS + 1 }, (_, i) => ['hs2', 'hs4', 'hs6', 'hs8', 'hs10'][i % 5] + ',' + ['origin', 'departure', 'office', 'transportMode'][Math.floor(i / 5) % 4]));
    expect(parseLevels(Array.from({ length: MAX_LEVELS }, (_, i) => ['hs2', 'hs4', 'hs6', 'hs8'][i % 4] + ',' + ['origin', 'departure', 'office', 'transportMode'][Math.floor(i / 4)]))).toHaveLength(MAX_LEVELS);
  });
});
