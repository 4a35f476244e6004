import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { toBatch } from '../src/model/columnar.js';
import type { Declaration } from '../src/model/schema.js';
import { generateDeclarations } from '../src/generate/synthetic.js';
import { FEATURES, PeerTableBuilder, robustStats, snapshotTables, type PeerTables } from '../src/peers/peer-groups.js';
import { loadPeerSnapshot, loadPeerTables, parsePeerTables, savePeerSnapshot } from '../src/peers/peer-store.js';
import { binWidth, FeatureSketch } from '../src/peers/sketch.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { compileRuleset } from '../src/ruleset/compile.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-peers-'));
const synthetic = (rows: number, seed: number): Declaration[] => [...generateDeclarations({ rows, seed, hsCodes: 20 })].map((r) => r.declaration);

function build(decls: Declaration[], options: ConstructorParameters<typeof PeerTableBuilder>[0] = {}): PeerTableBuilder {
  const b = new PeerTableBuilder(options);
  for (let i = 0; i < decls.length; i += 1000) b.add(toBatch(decls.slice(i, i + 1000)).batch);
  return b;
}

describe('FeatureSketch', () => {
  const W = binWidth(0.005);

  it('is exact (same as robustStats) up to exactLimit values', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: -20, max: 20, noNaN: true }), { minLength: 1, maxLength: 64 }), (xs) => {
      const s = new FeatureSketch(64, W);
      for (const x of xs) s.add(x);
      const sum = s.summary();
      const want = robustStats(Float64Array.from(xs));
      expect(sum.exact).toBe(true);
      expect(sum.median).toBe(want.median);
      expect(sum.mad).toBe(want.mad);
      expect(sum.min).toBe(Math.min(...xs));
      expect(sum.max).toBe(Math.max(...xs));
    }));
  });

  it('keeps median within w/2 and MAD within w of the exact values beyond exactLimit', () => {
    fc.assert(fc.property(
      fc.array(fc.oneof(fc.double({ min: -3, max: 3, noNaN: true }), fc.double({ min: -25, max: 25, noNaN: true })), { minLength: 2, maxLength: 600 }),
      fc.integer({ min: 0, max: 20 }),
      (xs, limit) => {
        const s = new FeatureSketch(limit, W);
        for (const x of xs) s.add(x);
        const sum = s.summary();
        const want = robustStats(Float64Array.from(xs));
        expect(sum.exact).toBe(xs.length <= limit);
        expect(Math.abs(sum.median - want.median)).toBeLessThanOrEqual(W / 2 + 1e-12);
        expect(Math.abs(sum.mad - want.mad)).toBeLessThanOrEqual(W + 1e-12);
      },
    ), { numRuns: 300 });
  });

  it('computes mean and sample standard deviation (Welford) like the two-pass formulas', () => {
    const xs = Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3 + 10);
    const s = new FeatureSketch(0, W);
    for (const x of xs) s.add(x);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
    const sum = s.summary();
    expect(sum.mean).toBeCloseTo(mean, 12);
    expect(sum.std).toBeCloseTo(sd, 12);
    expect(sum.n).toBe(1000);
    // memory: 1000 values in a range of 6 log units → at most 6/W + 1 bins, not 1000 values
    expect(s.values).toBeUndefined();
    expect(s.histogram().length).toBeLessThanOrEqual(Math.ceil(6 / W) + 1);
    expect(s.histogram().reduce((a, [, c]) => a + c, 0)).toBe(1000);
  });

  it('round-trips its state', () => {
    for (const limit of [0, 5, 1000]) {
      const s = new FeatureSketch(limit, W);
      for (let i = 0; i < 100; i++) s.add(Math.cos(i) * 4);
      const t = FeatureSketch.fromState(JSON.parse(JSON.stringify(s.state())), limit, W);
      expect(t.summary()).toEqual(s.summary());
      expect(t.state()).toEqual(s.state());
    }
  });
});

describe('peer snapshots: build, fold, save and load', () => {
  const history = synthetic(6000, 7);
  const older = history.slice(0, 4000);
  const newer = history.slice(4000);

  it('records count, date range, and per-feature statistics per group', () => {
    const t = build(history).finish();
    const hs6 = t.groups[1];
    const [key, g] = [...hs6].sort((a, b) => b[1].count - a[1].count)[0];
    const members = history.filter((d) => d.hs.slice(0, 6) === key.split('|')[0]);
    expect(g.count).toBe(members.length);
    const days = members.map((d) => Date.parse(d.date) / 86400000);
    expect(g.firstDate).toBe(Math.min(...days));
    expect(g.lastDate).toBe(Math.max(...days));
    const uv = members.filter((d) => d.customsValue > 0 && d.netMass > 0).map((d) => Math.log(d.customsValue) - Math.log(d.netMass));
    const f = g.features[0];
    expect(f.n).toBe(uv.length);
    expect(f.min).toBe(Math.min(...uv));
    expect(f.max).toBe(Math.max(...uv));
    expect(f.mean).toBeCloseTo(uv.reduce((a, b) => a + b, 0) / uv.length, 10);
    const exact = robustStats(Float64Array.from(uv));
    expect(f.exact).toBe(uv.length <= 64);
    expect(Math.abs(f.median - exact.median)).toBeLessThanOrEqual(binWidth(0.005) / 2 + 1e-12);
    expect(Math.abs(f.mad - exact.mad)).toBeLessThanOrEqual(binWidth(0.005) + 1e-12);
  });

  for (const ext of ['json', 'msgpack']) {
    it(`folding new rows into a saved ${ext} snapshot equals rebuilding from scratch`, () => {
      const path = join(dir, `old.${ext}`);
      const first = build(older);
      first.addSource('older', older.length);
      const saved = savePeerSnapshot(path, first.snapshot());
      expect(saved.version).toMatch(/^peers-[0-9a-f]{16}$/);

      const loaded = loadPeerSnapshot(path);
      expect(loaded.info.version).toBe(saved.version);
      const folded = PeerTableBuilder.fromSnapshot(loaded);
      for (let i = 0; i < newer.length; i += 700) folded.add(toBatch(newer.slice(i, i + 700)).batch);
      const rebuilt = build(history);

      const a = folded.finish();
      const b = rebuilt.finish();
      expect(a.levels).toEqual(b.levels);
      for (let l = 0; l < a.levels.length; l++) {
        expect([...a.groups[l].keys()].sort()).toEqual([...b.groups[l].keys()].sort());
        for (const [key, g] of b.groups[l]) {
          const h = a.groups[l].get(key)!;
          // count, mean, sd, min, max: exactly; median/MAD: the same sketch state, so exactly too
          expect(h).toEqual(g);
        }
      }
      expect(folded.rows).toBe(history.length);
      expect(folded.parent).toBe(saved.version);
    });
  }

  it('gives equal content an equal version, and a fold a new version with its parent', () => {
    const p1 = join(dir, 'a.json');
    const p2 = join(dir, 'b.msgpack');
    const s = build(older).snapshot();
    const v1 = savePeerSnapshot(p1, s).version;
    const v2 = savePeerSnapshot(p2, s).version;
    expect(v2).toBe(v1);
    const f = PeerTableBuilder.fromSnapshot(loadPeerSnapshot(p1));
    f.add(toBatch(newer.slice(0, 10)).batch);
    const p3 = join(dir, 'c.json');
    const s3 = savePeerSnapshot(p3, f.snapshot());
    expect(s3.version).not.toBe(v1);
    expect(loadPeerSnapshot(p3).info.parent).toBe(v1);
  });

  it('scores with the snapshot minGroupSize unless settings say otherwise', () => {
    const t = build(older, { minGroupSize: 12 }).finish();
    expect(createRuleset({ peers: t }).settings.minGroupSize).toBe(12);
    expect(createRuleset({ peers: t, settings: { minGroupSize: 3 } }).settings.minGroupSize).toBe(3);
  });

  describe('refuses damaged or mismatched files with a named error', () => {
    const path = join(dir, 'good.json');
    savePeerSnapshot(path, build(older).snapshot());
    const text = readFileSync(path, 'utf8');
    const doc = JSON.parse(text) as Record<string, unknown>;
    const write = (name: string, content: string | Uint8Array) => { const p = join(dir, name); writeFileSync(p, content); return p; };
    const code = (fn: () => unknown) => { try { fn(); } catch (e) { return (e as { code?: string }).code; } return 'no error'; };

    it('a truncated file', () => {
      expect(code(() => loadPeerTables(write('trunc.json', text.slice(0, text.length >> 1))))).toBe('SEL_ERR_PEERS_CORRUPT');
    });
    it('a changed statistic (checksum)', () => {
      const g = doc.groups as unknown[][][];
      const changed = structuredClone(doc);
      const row = (changed.groups as unknown[][][])[0][0];
      (row as unknown[])[1] = (g[0][0][1] as number) + 1;
      expect(code(() => loadPeerTables(write('edited.json', JSON.stringify(changed))))).toBe('SEL_ERR_PEERS_CORRUPT');
    });
    it('garbage bytes', () => {
      expect(code(() => loadPeerTables(write('garbage.msgpack', Uint8Array.from([0xc1, 0xc1, 0x00]))))).toBe('SEL_ERR_PEERS_CORRUPT');
    });
    it('another format version, or another feature list', () => {
      expect(code(() => loadPeerTables(write('v9.json', JSON.stringify({ ...doc, formatVersion: 9 }))))).toBe('SEL_ERR_PEERS_MISMATCH');
      expect(code(() => loadPeerTables(write('feat.json', JSON.stringify({ ...doc, features: [...FEATURES].reverse() }))))).toBe('SEL_ERR_PEERS_MISMATCH');
      expect(code(() => loadPeerTables(write('other.json', JSON.stringify({ format: 'something-else' }))))).toBe('SEL_ERR_PEERS_MISMATCH');
    });
    it('a format-1 file scores but cannot be folded into', () => {
      const v1 = { format: 'selectivity-peers', formatVersion: 1, levels: ['hs6'], groups: [[['851712|', 3, [3, 1.5, 0.1], [3, 2, 0], [0, null, null]]]] };
      const p = write('v1.json', JSON.stringify(v1));
      const t: PeerTables = loadPeerTables(p);
      expect(t.groups[0].get('851712|')!.features[0]).toMatchObject({ n: 3, median: 1.5, mad: 0.1 });
      expect(code(() => loadPeerSnapshot(p))).toBe('SEL_ERR_PEERS_MISMATCH');
    });
    it('a key that is not one of its level (two keys that would compile to one, a letter in the HS part) is corrupt', () => {
      const row = (key: string) => [key, 3, [3, 1.5, 0.1], [3, 2, 0], [0, null, null]];
      const valid: Record<string, string> = { hs6: '008517|', 'hs6,origin': '851712|CN', origin: '|CN' };
      // at hs6, "8517|" and "008517|" both packed to the HS number 8517: the kernel used one group's statistics for the other's declarations
      for (const [level, key] of [['hs6', '8517|'], ['hs6', '85A712|'], ['hs6', '851712'], ['hs6,origin', '851712|'], ['hs6', '851712|CN'], ['origin', '85|CN']]) {
        const p = write(`v1-bad-${level}-${key.replace(/\W/g, '_')}.json`, JSON.stringify({ format: 'selectivity-peers', formatVersion: 1, levels: [level], groups: [[row(valid[level]), row(key)]] }));
        expect(() => loadPeerTables(p), key).toThrow(expect.objectContaining({ code: 'SEL_ERR_PEERS_CORRUPT', details: expect.objectContaining({ field: 'groups[0][1][0]', got: key }) }));
      }
      // a format-2 file with its checksum made to match
      const snapshot = build(older).snapshot();
      const [first, group] = [...snapshot.groups[0]][0];
      snapshot.groups[0].set(`0${first.slice(1)}`.replace(/^\d+/, (d) => d.slice(0, 4)), group);
      savePeerSnapshot(join(dir, 'v2-bad.json'), snapshot);
      expect(code(() => loadPeerTables(join(dir, 'v2-bad.json')))).toBe('SEL_ERR_PEERS_CORRUPT');
      // tables made in code are checked when compiled
      const tables = build(older).finish();
      tables.groups[0].set('8517|', [...tables.groups[0].values()][0]);
      expect(() => compileRuleset(createRuleset({ peers: tables }))).toThrow(expect.objectContaining({ code: 'SEL_ERR_PEERS_INVALID', details: expect.objectContaining({ field: 'peers.groups[0]', got: '8517|' }) }));
    });
    it('reads the same snapshot from MessagePack bytes', () => {
      const t = parsePeerTables(pack(unpack(pack(doc))));
      expect(snapshotTables(loadPeerSnapshot(path)).groups).toEqual(t.groups);
    });
  });
});
