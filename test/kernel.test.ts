import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Kernel, SPARE_KEEP_BYTES, spareSize } from '../src/kernel/kernel.js';
import { referenceScore } from '../src/kernel/reference.js';
import { toBatch } from '../src/model/columnar.js';
import { buildPeerTables, NF } from '../src/peers/peer-groups.js';
import { compileRuleset, type CompiledMeta } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { createEngine } from '../src/engine.js';
import { mix32 } from '../src/kernel/hash.js';
import { randomDeclarations, randomProfiles, KEYWORDS } from './helpers.js';
import type { WatchList } from '../src/text/watchlist.js';
import type { ScoreResult } from '../src/kernel/layout.js';

function matchesOf(r: ScoreResult): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < r.size; i++) out.push(Array.from(r.matchList.subarray(r.matchOffset[i], r.matchOffset[i + 1])));
  return out;
}

function relClose(a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

describe('kernel vs reference scorer', () => {
  const kernel = new Kernel();

  function agrees(seed: number, rows: number, numProfiles: number, minGroupSize: number, levels: readonly string[], rate: number, k: Kernel = kernel): { got: ScoreResult; meta: CompiledMeta } {
    const history = randomDeclarations(400, seed + 1);
    const peers = buildPeerTables([toBatch(history).batch], levels);
    const ruleset = createRuleset({
      peers, profiles: randomProfiles(numProfiles, seed + 2),
      settings: { minGroupSize, randomSelection: { rate, channel: 'yellow', seed: seed % 1000 }, thresholds: { yellow: 1, red: 3 } },
    });
    const compiled = compileRuleset(ruleset);
    k.loadRuleset(compiled);
    const { batch } = toBatch(randomDeclarations(rows, seed + 3));
    const got = k.score(batch);
    const want = referenceScore(ruleset, batch);
    expect(got.size).toBe(rows);
    expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
    expect(Array.from(got.flags)).toEqual(Array.from(want.flags));
    expect(Array.from(got.level)).toEqual(Array.from(want.level));
    expect(matchesOf(got)).toEqual(want.matches);
    for (let i = 0; i < rows; i++) expect(relClose(got.score[i], want.score[i]), `score row ${i}: ${got.score[i]} vs ${want.score[i]}`).toBe(true);
    for (let k = 0; k < rows * NF; k++) expect(relClose(got.z[k], want.z[k]), `z ${k}`).toBe(true);
    return { got, meta: compiled.meta };
  }
  const levelSets = fc.constantFrom(['hs6,origin', 'hs6', 'hs4', 'hs2'], ['hs10', 'hs8,office', 'hs4,departure', 'origin'], ['hs6', 'hs2,transportMode']);

  it('agrees on random batches, profiles and settings', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 8 }), levelSets, fc.double({ min: 0, max: 0.5, noNaN: true }),
        (seed, rows, numProfiles, minGroupSize, levels, rate) => { agrees(seed, rows, numProfiles, minGroupSize, levels, rate); },
      ),
      { numRuns: 60 },
    );
  });

  it('agrees with 257 to 1,024 profiles (bitmap rows of 3 to 8 vectors, accumulated in registers)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 257, max: 1024 }),
        fc.integer({ min: 1, max: 8 }), levelSets, fc.double({ min: 0, max: 0.5, noNaN: true }),
        (seed, rows, numProfiles, minGroupSize, levels, rate) => { agrees(seed, rows, numProfiles, minGroupSize, levels, rate); },
      ),
      { numRuns: 10 },
    );
  });

  it('agrees at every bitmap width up to 1,024 profiles and above, with numeric conditions and several match groups', () => {
    // 1 to 8 vectors of 128 profiles per row (first and last profile count of
    // a width, and some in between), then the block-wise path above 1,024
    const counts = [1, 128, 129, 256, 257, 300, 384, 385, 500, 512, 513, 640, 700, 768, 896, 897, 1000, 1023, 1024, 1025, 1300];
    counts.forEach((numProfiles, i) => {
      const { got, meta } = agrees(7919 * (i + 1), 300, numProfiles, 2, ['hs6,origin', 'hs6', 'hs4', 'hs2'], 0.1);
      expect(meta.words).toBe(2 * Math.ceil(numProfiles / 128));
      if (numProfiles >= 100) {
        expect(meta.numericGroups.length, `${numProfiles} profiles: numeric conditions`).toBeGreaterThan(1);
        expect(meta.matchGroups.length, `${numProfiles} profiles: match groups`).toBeGreaterThan(3);
        // matches among the last 128 profiles too (the highest words of a row)
        const from = numProfiles - 128;
        expect(Array.from(got.matchList.subarray(0, got.matchOffset[got.size])).some((p) => p >= from), `${numProfiles} profiles: matches from ${from}`).toBe(true);
      }
    });
  });

  it('agrees with more than 1,024 profiles (the block-wise bitmap path)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1025, max: 1500 }),
        fc.integer({ min: 1, max: 8 }), levelSets, fc.double({ min: 0, max: 0.5, noNaN: true }),
        (seed, rows, numProfiles, minGroupSize, levels, rate) => { agrees(seed, rows, numProfiles, minGroupSize, levels, rate); },
      ),
      { numRuns: 5 },
    );
  });

  for (const peerCache of ['dense', 'hashed', 'off'] as const) {
    it(`agrees with the peer cache forced to ${peerCache}`, () => {
      const forced = new Kernel({ peerCache });
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 100 }),
          fc.integer({ min: 1, max: 8 }), levelSets, fc.constant(0),
          (seed, rows, numProfiles, minGroupSize, levels, rate) => { agrees(seed, rows, numProfiles, minGroupSize, levels, rate, forced); },
        ),
        { numRuns: 15 },
      );
    });
  }

  it('adds the historical tables in the kernel\'s order, so that a score on a threshold takes the same channel; a value spelled "NaN" is a value', () => {
    const decl = { id: 'a', date: '2025-03-01', office: 'O', importer: 'IMP1', origin: 'CN', hs: '851712', customsValue: 100, netMass: 1 };
    const peers = buildPeerTables([toBatch([decl]).batch], ['hs6']);
    const { batch } = toBatch([decl]);
    const k = new Kernel();
    const dim = (name: string, key: string, n: number, p: number) => ({ name, weight: 1, keys: [key], n: [n], positives: [p] });
    // hs2, importer, hs4: the kernel adds (hs2 + hs4) of the hs column, then importer; dimension order
    // would add hs2, importer, hs4. Some counts make the two sums differ in their last bit.
    for (let n = 1; n < 40; n++) {
      for (let p = 0; p <= n; p++) {
        const history = { prior: 0.2, strength: 10, halfLifeDays: 365, dimensions: [dim('hs2', '85', 7, 3), dim('importer', 'IMP1', n, p), dim('hs4', '8517', 5, 4)] };
        const rs = createRuleset({ peers, history, settings: { randomSelection: { rate: 0 } } });
        k.loadRuleset(compileRuleset(rs));
        const got = k.score(batch).score[0];
        const want = referenceScore(rs, batch).score[0];
        expect(got, `importer n=${n} positives=${p}`).toBe(want);
        // with the yellow threshold on the score itself, both give yellow
        const on = createRuleset({ peers, history, settings: { randomSelection: { rate: 0 }, thresholds: { yellow: got, red: 100 } } });
        k.loadRuleset(compileRuleset(on));
        expect(k.score(batch).channel[0]).toBe(referenceScore(on, batch).channel[0]);
      }
    }
    // a categorical value spelled "NaN" is looked up like any other (a missing tax rate is what NaN means)
    const nan = { ...decl, importer: 'NaN' };
    const history = { prior: 0.2, strength: 10, halfLifeDays: 365, dimensions: [{ name: 'importer', weight: 1, keys: ['NaN'], n: [40], positives: [30] }] };
    const rs = createRuleset({ peers, history, settings: { randomSelection: { rate: 0 } } });
    k.loadRuleset(compileRuleset(rs));
    const b = toBatch([nan]).batch;
    const kernelScore = k.score(b).score[0];
    expect(kernelScore).toBeGreaterThan(1);
    expect(referenceScore(rs, b).score[0]).toBe(kernelScore);
  });

  it('scores the first `size` rows of a batch whose views are longer (a prefix of a larger batch), in the kernel and in an engine', async () => {
    const rows = randomDeclarations(400, 91);
    const peers = buildPeerTables([toBatch(rows).batch], ['hs6', 'hs4']);
    const ruleset = createRuleset({
      peers, profiles: [...randomProfiles(40, 92), { id: 'TAX', weight: 2, conditions: { numeric: [{ field: 'taxRate', op: '>', value: 0.05 }] } } as never],
      settings: { randomSelection: { rate: 0.3, channel: 'yellow', seed: 4 }, thresholds: { yellow: 1, red: 3 } },
    });
    const k = new Kernel();
    k.loadRuleset(compileRuleset(ruleset));
    const big: typeof rows = [];
    for (let i = 0; i < 200_000; i++) big.push({ ...rows[i % rows.length], id: `L${i}` });
    const full = toBatch(big).batch;
    const prefix = { ...full, size: 3 }; // views of 200,000 values: validateBatch accepts it
    const alone = toBatch(big.slice(0, 3)).batch;
    const want = k.score(alone);
    for (const got of [k.score(prefix), await (async () => { const e = createEngine({ ruleset, threads: 0 }); try { return await e.scoreBatch(prefix); } finally { await e.close(); } })()]) {
      expect(got.size).toBe(3);
      expect(Array.from(got.score)).toEqual(Array.from(want.score));
      expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
      expect(matchesOf(got)).toEqual(matchesOf(want));
    }
  });

  it('with reuse, gives the same results in the kernel\'s own buffer, refilled by the next such call and grown when too small', () => {
    const k = new Kernel();
    const history = randomDeclarations(400, 71);
    const peers = buildPeerTables([toBatch(history).batch], ['hs6,origin', 'hs4', 'hs2']);
    k.loadRuleset(compileRuleset(createRuleset({ peers, profiles: randomProfiles(60, 72), settings: { randomSelection: { rate: 0.1, channel: 'yellow', seed: 3 }, thresholds: { yellow: 1, red: 3 } } })));
    const same = (a: ScoreResult, b: ScoreResult) => {
      expect(b.size).toBe(a.size);
      for (const f of ['score', 'z', 'level', 'channel', 'flags', 'matchOffset', 'matchList'] as const) expect(Array.from(b[f]), f).toEqual(Array.from(a[f]));
    };
    const [big, small, bigger] = [300, 40, 2000].map((n, j) => toBatch(randomDeclarations(n, 80 + j)).batch);
    const first = k.score(big, undefined, { reuse: true });
    same(k.score(big), first);
    const own = first.buffer;
    const second = k.score(small, undefined, { reuse: true });
    expect(second.buffer).toBe(own); // refilled, not a new buffer
    expect(own.byteLength).toBeGreaterThan(second.matchList.byteOffset + second.matchList.byteLength); // longer than the result
    same(k.score(small), second);
    const third = k.score(bigger, undefined, { reuse: true });
    expect(third.buffer).not.toBe(own);
    same(k.score(bigger), third);
    // the buffer's size: kept while it holds the result, grown with room, and given back when a large one is far too large
    expect(spareSize(0, 1000)).toBe(65536);
    expect(spareSize(65536, 1000)).toBe(65536);
    expect(spareSize(65536, 70_000)).toBe(131072); // 1.25 × 65,536 is below 70,000: the result's size, in pages
    expect(spareSize(4 * 65536, 300_000)).toBe(327680); // 1.25 × 262,144 = 327,680, five pages
    expect(spareSize(SPARE_KEEP_BYTES, 1000)).toBe(SPARE_KEEP_BYTES); // up to 16 MiB: kept
    expect(spareSize(64 * 2 ** 20, 1000)).toBe(65536); // a large one far too large: given back
    expect(spareSize(64 * 2 ** 20, 20 * 2 ** 20)).toBe(64 * 2 ** 20); // a quarter of it filled: kept
    // without reuse, each result has a buffer of its own, exactly its size
    const a = k.score(small), b = k.score(small);
    expect(a.buffer).not.toBe(b.buffer);
    expect(a.buffer.byteLength).toBe(a.matchList.byteOffset + a.matchList.byteLength);
  });

  it('rejects an unknown peer cache mode', () => {
    expect(() => new Kernel({ peerCache: 'lru' as never })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  });

  it('computes features with the same natural log as the reference (bit for bit)', () => {
    const history = randomDeclarations(400, 7);
    const ruleset = createRuleset({ peers: buildPeerTables([toBatch(history).batch], ['hs6']), profiles: [], settings: { minGroupSize: 1 } });
    kernel.loadRuleset(compileRuleset(ruleset));
    const decls = randomDeclarations(300, 8);
    // awkward magnitudes: subnormal, tiny, huge, infinite, powers of two, just around 1
    const odd = [5e-324, 2.2e-308, 1e-300, 1e300, 1.7976931348623157e308, Infinity, 1024, 1 + 2 ** -30, 1 - 2 ** -30, 1 + 2 ** -21, 0.5, 3];
    decls.forEach((d, i) => { if (i < odd.length * 2) { d.customsValue = odd[i % odd.length]; d.netMass = odd[(i * 7) % odd.length]; d.quantity = odd[(i * 3) % odd.length]; } });
    const { batch } = toBatch(decls);
    const got = kernel.score(batch);
    const want = referenceScore(ruleset, batch);
    for (let k = 0; k < decls.length * NF; k++) expect(Object.is(got.z[k], want.z[k]) || (Number.isNaN(got.z[k]) && Number.isNaN(want.z[k])), `z ${k}: ${got.z[k]} vs ${want.z[k]}`).toBe(true);
  });

  describe('with text signals (keyword conditions, watch lists, misclassification)', () => {
    const watchLists: WatchList[] = [
      { id: 'ipr', riskArea: 'ipr', terms: ['replica', 'designer bag', 'counterfeit'] },
      { id: 'safety', riskArea: 'safety', terms: ['power bank', 'lithium'] },
      { id: 'drugs', riskArea: 'drugs', terms: ['precursor', 'ephedrine'] },
    ];
    let keywordMatches = 0, misclassified = 0;

    function agreesText(seed: number, rows: number, numProfiles: number, levels: readonly string[], weight: number): void {
      const history = randomDeclarations(400, seed + 1);
      const peers = buildPeerTables([toBatch(history).batch], levels);
      const profiles = randomProfiles(numProfiles, seed + 2, { keywords: true });
      const ruleset = createRuleset({
        peers, profiles, watchLists: seed % 3 === 0 ? [] : watchLists,
        settings: { minGroupSize: 3, thresholds: { yellow: 1, red: 3 }, misclassification: { weight, below: 0.5 } },
      });
      kernel.loadRuleset(compileRuleset(ruleset));
      const { batch } = toBatch(randomDeclarations(rows, seed + 3, { descriptions: true }));
      const got = kernel.score(batch);
      const want = referenceScore(ruleset, batch);
      expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
      expect(Array.from(got.flags)).toEqual(Array.from(want.flags));
      expect(matchesOf(got)).toEqual(want.matches);
      for (let i = 0; i < rows; i++) expect(relClose(got.score[i], want.score[i]), `score row ${i}: ${got.score[i]} vs ${want.score[i]}`).toBe(true);
      want.matches.forEach((m) => { for (const p of m) if (profiles[p].conditions.keywords) keywordMatches++; });
      if (got.text) for (let i = 0; i < rows; i++) if (got.text.signals[got.text.row[i]].misclassified) misclassified++;
    }

    it('agrees with the reference scorer up to 256 profiles', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 200 }), levelSets, fc.constantFrom(0, 1.5, 7),
          (seed, rows, numProfiles, levels, weight) => agreesText(seed, rows, numProfiles, levels, weight)),
        { numRuns: 40 },
      );
    });

    it('agrees with the reference scorer above 256 profiles', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 257, max: 1100 }), levelSets, fc.constantFrom(0, 2),
          (seed, rows, numProfiles, levels, weight) => agreesText(seed, rows, numProfiles, levels, weight)),
        { numRuns: 8 },
      );
    });

    it('exercised keyword profiles and the misclassification signal (the properties above were not vacuous)', () => {
      expect(keywordMatches).toBeGreaterThan(100);
      expect(misclassified).toBeGreaterThan(10);
    });

    it('a keyword profile matches every spelling of its term, and only descriptions that contain it', () => {
      const peers = buildPeerTables([toBatch(randomDeclarations(100, 5)).batch], ['hs6']);
      const ruleset = createRuleset({ peers, profiles: [{ id: 'KW', weight: 1, conditions: { keywords: ['power bank', 'Replica'] } }], settings: { misclassification: { weight: 0 } } });
      kernel.loadRuleset(compileRuleset(ruleset));
      const texts = ['Power-Banks, 20000 mAh', 'POWER/BANK', 'replicas of watches', 'REPLICA', 'power supply bank', 'bank power', 'réplica', ''];
      const decls = randomDeclarations(texts.length, 6).map((d, i) => ({ ...d, description: texts[i] }));
      const got = kernel.score(toBatch(decls).batch);
      expect(matchesOf(got)).toEqual([[0], [0], [0], [0], [], [], [0], []]);
      expect(KEYWORDS).toContain('power bank');
    });
  });

  it('mix32 in the kernel equals the TypeScript twin', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (x) => { expect(kernel.mix32(x)).toBe(mix32(x)); }));
  });
});

/**
 * A batch whose kernel layout reaches past 2 GiB: the host wrote its plan and
 * columns through signed shifts of their addresses, so above 2^31 the plan
 * was not written and every row came back green with score 0. About 9 GB of
 * memory and a minute or two: run with SELECTIVITY_HEAVY_TESTS=1.
 */
describe.runIf(process.env.SELECTIVITY_HEAVY_TESTS === '1')('a batch laid out past 2 GiB of kernel memory', () => {
  it('scores every row as the reference scores it', async () => {
    const { batchLayout, batchViews, CATEGORICAL_COLUMNS, NUMERIC_COLUMNS } = await import('../src/model/columnar.js');
    const history = randomDeclarations(2000, 91);
    const ruleset = createRuleset({ peers: buildPeerTables([toBatch(history).batch], ['hs6,origin', 'hs6', 'hs4']), profiles: randomProfiles(64, 92) });
    const small = toBatch(randomDeclarations(1000, 93)).batch;
    const want = referenceScore(ruleset, small);
    const m = small.size, n = 31_000_000;
    const big = batchViews(new ArrayBuffer(batchLayout(n).byteLength), n, n, small.dicts);
    const tile = (dst: { set(a: ArrayLike<number>, at: number): void }, src: { subarray(a: number, b: number): ArrayLike<number> } & ArrayLike<number>) => {
      for (let at = 0; at < n; at += m) dst.set(at + m <= n ? src : src.subarray(0, n - at), at);
    };
    for (const c of NUMERIC_COLUMNS) tile(big.numeric[c], small.numeric[c]);
    tile(big.date, small.date);
    tile(big.idHash, small.idHash);
    for (const c of CATEGORICAL_COLUMNS) tile(big.codes[c], small.codes[c]);
    const k = new Kernel();
    k.loadRuleset(compileRuleset(ruleset));
    const got = k.score(big);
    let wrong = 0;
    for (let i = 0; i < n; i++) if (got.channel[i] !== want.channel[i % m] || got.score[i] !== got.score[i % m]) wrong++;
    expect(wrong).toBe(0);
    for (let i = 0; i < m; i++) expect(relClose(got.score[n - m + i], want.score[(n - m + i) % m]), `row ${n - m + i}`).toBe(true);
    expect(want.channel.some((c) => c !== 0)).toBe(true);
  }, 600_000);
});
