import { afterAll, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kernel } from '../src/kernel/kernel.js';
import { homeSlot } from '../src/kernel/hash.js';
import { referenceScore } from '../src/kernel/reference.js';
import { toBatch } from '../src/model/columnar.js';
import { buildPeerTables } from '../src/peers/peer-groups.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { batchKeys, historyIndex, HistoryIndex, DEFAULT_DIMENSIONS, isTraderDimension, keyOf, lifts, parseDimension, revenueAtRisk, smoothedRate, validateHistory, type HistoryTables } from '../src/learn/history.js';
import { candidateProfiles, logisticRegression, STRENGTH_GRID, trainModel } from '../src/learn/train.js';
import { validateProfiles } from '../src/profiles/profile.js';
import { evaluate } from '../src/evaluate/evaluate.js';
import { createEngine } from '../src/engine.js';
import { toDecisions, HISTORY_REASON_MIN, HISTORY_REASONS, type Reason } from '../src/decisions.js';
import { main } from '../src/cli/main.js';
import { learnOptions } from '../src/cli/train.js';
import { datedDeclarations, randomDeclarations, randomProfiles, rng } from './helpers.js';
import type { Declaration } from '../src/model/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-learn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** History tables over random declarations with random labels. */
function randomTables(seed: number, dims: readonly string[]): HistoryTables {
  return tablesOf(randomDeclarations(300, seed), dims, seed);
}

/** History tables of given declarations with random labels; now and then a key repeated with other counts (its last entry counts), now and then a dimension of weight 0. */
function tablesOf(decls: readonly Declaration[], dims: readonly string[], seed: number): HistoryTables {
  const r = rng(seed);
  const dimensions = dims.map((name) => {
    const parts = parseDimension(name);
    const counts = new Map<string, [number, number]>();
    for (const d of decls) {
      const key = keyOf(parts, (f) => (f === 'taxRate' ? String(d.taxRate ?? NaN) : f === 'hs' ? d.hs : String((d as unknown as Record<string, unknown>)[f] ?? '')));
      if (key === undefined) continue;
      const c = counts.get(key) ?? [0, 0];
      c[0] += 1; c[1] += r() < 0.3 ? 1 : 0;
      counts.set(key, c);
    }
    const keys = [...counts.keys()], n = [...counts.values()].map((c) => c[0]), positives = [...counts.values()].map((c) => c[1]);
    if (keys.length > 0 && r() < 0.3) { keys.push(keys[0]); n.push(n[0] + 5); positives.push(positives[0] + 5); }
    // now and then weight 0: a dimension training dropped, which the kernel does not load
    const w = r() < 0.15 ? 0 : Math.round((r() * 4 - 1) * 100) / 100;
    return { name, weight: w, keys, n, positives };
  });
  const t: HistoryTables = { prior: 0.3, strength: 1 + r() * 20, halfLifeDays: 0, dimensions };
  if (r() < 0.5) t.aeoReduction = Math.LN2;
  return t;
}

/**
 * `rows` declarations (randomDeclarations(rows, seed)) whose importers come in
 * runs of size() declarations each (IMP0, IMP1, …), each with origin() as its
 * origin when given; their batch and peer tables.
 */
function importerRuns(rows: number, seed: number, size: () => number, origin?: () => string) {
  const importer: string[] = [];
  for (let k = 0; importer.length < rows; k++) { const n = size(); for (let j = 0; j < n; j++) importer.push(`IMP${k}`); }
  const decls = randomDeclarations(rows, seed).map((d, i) => ({ ...d, importer: importer[i], ...(origin ? { origin: origin() } : {}) }));
  const { batch } = toBatch(decls);
  return { decls, batch, peers: buildPeerTables([batch], ['hs6', 'hs4']) };
}

describe('historical tables in the kernel', () => {
  const kernel = new Kernel();
  /** The declarations scored by the kernel with the compiled ruleset, every score checked against the reference scorer's. */
  const scoredAsReference = (compiled: ReturnType<typeof compileRuleset>, ruleset: ReturnType<typeof createRuleset>, decls: Declaration[]) => {
    const { batch } = toBatch(decls);
    kernel.loadRuleset(compiled);
    const got = kernel.score(batch);
    const want = referenceScore(ruleset, batch);
    let off = 0;
    for (let i = 0; i < decls.length; i++) if (Math.abs(got.score[i] - want.score[i]) > 1e-9 * Math.max(1, Math.abs(want.score[i]))) off++;
    expect(off).toBe(0);
    return got;
  };
  it('partLuts gives every dictionary value its id in every part, batch after batch, also when its cache of values starts over', () => {
    const dims = ['hs2', 'hs4', 'hs6', 'hs10', 'origin', 'departure', 'importer', 'declarant', 'hs6×origin', 'importer×taxRate', 'office×transportMode'];
    const tables = tablesOf(randomDeclarations(400, 31), dims, 31);
    for (const d of tables.dimensions) if (d.weight === 0) d.weight = 1; // every part in the index
    for (const valueCacheLimit of [3, 1 << 16]) {
      const hx = new HistoryIndex(tables, { valueCacheLimit });
      let found = 0, missing = 0;
      for (let b = 0; b < 40; b++) {
        const { batch } = toBatch(randomDeclarations(1 + ((b * 37) % 90), 100 + b));
        const luts = hx.partLuts(batch);
        expect(luts.length).toBe(hx.parts.length);
        hx.parts.forEach(({ part, column, ids, values }, k) => {
          if (column === 'taxRate') { expect(Array.from(luts[k])).toEqual(Array.from({ length: values.length + 1 }, (_, c) => c - 1)); return; }
          const d = part.digits;
          const want = batch.dicts[column].map((v) => (v === '' || (d !== undefined && v.length < d) ? -1 : ids.get(d === undefined ? v : v.slice(0, d)) ?? -1));
          expect(Array.from(luts[k]), `${column}${d ?? ''}, limit ${valueCacheLimit}`).toEqual(want);
          for (const id of want) if (id >= 0) found++; else missing++;
        });
      }
      expect(found).toBeGreaterThan(1000);
      expect(missing).toBeGreaterThan(50);
    }
  });

  it('the kernel agrees with the reference scorer on random tables, batches and profiles', () => {
    let entries = 0;
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 300 }), fc.subarray([...DEFAULT_DIMENSIONS], { minLength: 1 }),
      (seed, rows, numProfiles, dims) => {
        const peers = buildPeerTables([toBatch(randomDeclarations(300, seed + 1)).batch], ['hs6', 'hs4']);
        const ruleset = createRuleset({ peers, profiles: randomProfiles(numProfiles, seed + 2), history: randomTables(seed + 4, dims), settings: { thresholds: { yellow: 1, red: 3 } } });
        kernel.loadRuleset(compileRuleset(ruleset));
        const { batch } = toBatch(randomDeclarations(rows, seed + 3, { descriptions: true }));
        const got = kernel.score(batch);
        const want = referenceScore(ruleset, batch);
        expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
        for (let i = 0; i < rows; i++) expect(Math.abs(got.score[i] - want.score[i]) <= 1e-9 * Math.max(1, Math.abs(want.score[i])), `row ${i}: ${got.score[i]} vs ${want.score[i]}`).toBe(true);
        for (let i = 0; i < rows; i++) for (let d = 0; d < dims.length; d++) if (historyIndex(ruleset.history!).entry(got.history!, i, d) >= 0) entries++;
      },
    ), { numRuns: 25 });
    // the tables did something: rows found their values in them
    expect(entries).toBeGreaterThan(1000);
  });

  it('a dimension of weight 0 (one training dropped) is not loaded: no part, column or table, and the scores are those without it', () => {
    const dims = ['hs6', 'origin', 'importer', 'hs6×origin', 'declarant×office'];
    const tables = tablesOf(randomDeclarations(400, 61), dims, 61);
    tables.dimensions.forEach((d, k) => { d.weight = k === 2 || k === 3 ? 0 : 1 + k / 4; });
    const without = { ...tables, dimensions: tables.dimensions.filter((d) => d.weight !== 0) };
    const live = { ...tables, dimensions: tables.dimensions.map((d) => ({ ...d, weight: d.weight || 1 })) };
    const index = new HistoryIndex(tables);
    expect(index.columns).not.toContain('importer');
    expect(index.parts.map((p) => p.column)).toEqual(['hs', 'origin', 'declarant', 'office']);
    expect(index.combinations).toEqual([4]);
    expect(index.singleColumns.flatMap((c) => c.dims)).toEqual([0, 1]);
    const peers = buildPeerTables([toBatch(randomDeclarations(300, 62)).batch], ['hs6', 'hs4']);
    const make = (history: HistoryTables) => createRuleset({ peers, profiles: randomProfiles(20, 63), history, settings: { thresholds: { yellow: 1, red: 3 } } });
    const compiled = compileRuleset(make(tables));
    // the image holds one combination table, as without the two dimensions, not the three of the same tables all weighted
    expect(compiled.meta.imageByteLength).toBe(compileRuleset(make(without)).meta.imageByteLength);
    expect(compiled.meta.imageByteLength).toBeLessThan(compileRuleset(make(live)).meta.imageByteLength);
    const { batch, ids } = toBatch(randomDeclarations(500, 61)); // the tables' own declarations: their values are found
    kernel.loadRuleset(compiled);
    const got = kernel.score(batch);
    const meta = kernel.rulesetMeta!;
    const decisions = toDecisions(got, ids, meta);
    kernel.loadRuleset(compileRuleset(make(without)));
    const bare = kernel.score(batch);
    const want = referenceScore(make(tables), batch);
    expect(Array.from(got.score)).toEqual(Array.from(bare.score));
    expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
    for (let i = 0; i < 500; i++) expect(Math.abs(got.score[i] - want.score[i])).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(want.score[i])));
    // the dropped dimensions find no entry and are never cited; the others are
    const hx = historyIndex(meta.history!);
    for (const d of [2, 3]) expect(Array.from(hx.dimEntries(got.history!, 500, d)).every((e) => e === -1)).toBe(true);
    expect(Array.from(hx.dimEntries(got.history!, 500, 4)).some((e) => e >= 0)).toBe(true);
    const cited = new Set(decisions.flatMap((d) => d.reasons.flatMap((r) => (r.code === 'HISTORY' ? [r.dimension] : []))));
    expect(cited.has('importer') || cited.has('hs6×origin')).toBe(false);
    expect(cited.size).toBeGreaterThan(0);
    // every dimension dropped (a retrain on little feedback can come to that): no table at all, the AEO reduction still applies
    const none: HistoryTables = { ...tables, aeoReduction: Math.LN2, dimensions: tables.dimensions.map((d) => ({ ...d, weight: 0 })) };
    const empty = new HistoryIndex(none);
    expect([empty.parts.length, empty.columns.length, empty.combinations.length, empty.singleColumns.length]).toEqual([0, 0, 0, 0]);
    kernel.loadRuleset(compileRuleset(make(none)));
    const bareAeo = kernel.score(batch);
    const wantAeo = referenceScore(make(none), batch);
    for (let i = 0; i < 500; i++) expect(Math.abs(bareAeo.score[i] - wantAeo.score[i])).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(wantAeo.score[i])));
    const aeoRows = Array.from(batch.codes.aeo).filter((a) => a === 1).length;
    expect(aeoRows).toBeGreaterThan(0);
    const noneDecisions = toDecisions(bareAeo, ids, kernel.rulesetMeta!);
    expect(noneDecisions.filter((d) => d.reasons.some((r) => r.code === 'HISTORY'))).toHaveLength(0);
    expect(noneDecisions.filter((d) => d.reasons.some((r) => r.code === 'AEO'))).toHaveLength(aeoRows);
  });

  it('a batch of several of the kernel\'s history blocks (4,096 rows each) agrees with the reference row by row, pairs and triples included', () => {
    const dims = [...DEFAULT_DIMENSIONS, 'hs6×origin×importer', 'importer×seller×taxRate'];
    const peers = buildPeerTables([toBatch(randomDeclarations(300, 41)).batch], ['hs6', 'hs4']);
    const ruleset = createRuleset({ peers, profiles: randomProfiles(40, 42), history: randomTables(43, dims), settings: { thresholds: { yellow: 1, red: 3 } } });
    kernel.loadRuleset(compileRuleset(ruleset));
    const rows = 2 * 4096 + 1234;
    const { batch } = toBatch(randomDeclarations(rows, 44));
    const got = kernel.score(batch);
    const want = referenceScore(ruleset, batch);
    const index = historyIndex(ruleset.history!);
    let found = 0, off = 0;
    for (let i = 0; i < rows; i++) {
      if (Math.abs(got.score[i] - want.score[i]) > 1e-9 * Math.max(1, Math.abs(want.score[i]))) off++;
      if (i >= 4096 && index.combinations.some((d) => index.entry(got.history!, i, d) >= 0)) found++;
    }
    expect(off).toBe(0);
    expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
    // rows past the first block found their combinations in the tables
    expect(found).toBeGreaterThan(100);
    // the entries behind the reasons, read from the slots the kernel found, are those a probe in JavaScript finds
    const h = got.history!;
    expect(h.slots?.length).toBe(index.combinations.length * rows);
    expect(h.slots).toBeInstanceOf(Uint16Array); // every table of at most 65,536 slots
    let fromKernel = 0;
    for (const d of index.combinations) {
      const fromSlots = index.dimEntries(h, rows, d);
      expect(Array.from(fromSlots)).toEqual(Array.from(index.dimEntries({ ...h, slots: undefined }, rows, d)));
      fromKernel += fromSlots.filter((e) => e >= 0).length;
      for (let i = 0; i < rows; i += 97) expect(fromSlots[i], `dimension ${d} row ${i}`).toBe(index.entry(h, i, d));
    }
    expect(fromKernel).toBeGreaterThan(100);
  });

  it('a combination\'s hash table places the entries of most declarations first: none waits behind an entry of fewer on its probe path', () => {
    const r = rng(81);
    // random pairs: a sparse part of the key space, so that home slots collide (consecutive keys would not)
    const keys = [...new Set(Array.from({ length: 3000 }, () => `I${Math.floor(r() * 5000)}|D${Math.floor(r() * 600)}`))];
    const n = keys.map(() => 1 + Math.floor(r() * 1000));
    const tables: HistoryTables = { prior: 0.2, strength: 5, halfLifeDays: 0, dimensions: [{ name: 'importer×declarant', weight: 0.5, keys, n, positives: n.map((x) => Math.floor(r() * x)) }] };
    const index = new HistoryIndex(tables);
    const table = index.slotEntries(0);
    const bits = Math.log2(table.length), mask = table.length - 1;
    const numeric = index.dims[0].keys!;
    let displaced = 0;
    table.forEach((e, s) => {
      if (e < 0) return;
      for (let i = homeSlot(BigInt(numeric[e]), bits); i !== s; i = (i + 1) & mask) {
        displaced++;
        expect(n[table[i]]).toBeGreaterThanOrEqual(n[e]);
      }
    });
    expect(displaced).toBeGreaterThan(100); // collisions happened: the property was put to the test
  });

  it('a table of more than 65,536 slots: the slots found come back as u32 (u16 otherwise), and give the entries a probe in JavaScript finds', () => {
    // 50,000 importer × declarant keys: 2^17 slots (at most two thirds full); the small table beside it alone would give u16
    const K = 50_000, r = rng(71);
    const big = Array.from({ length: K }, (_, i) => `I${i}|D${i % 97}`);
    const small = Array.from({ length: 300 }, (_, i) => `I${i}|S${i % 13}`);
    const counts = (keys: string[]) => ({ keys, n: keys.map(() => 1 + Math.floor(r() * 50)), positives: keys.map(() => 0) });
    const tables: HistoryTables = { prior: 0.2, strength: 5, halfLifeDays: 0, dimensions: [
      { name: 'importer×declarant', weight: 0.9, ...counts(big) },
      { name: 'importer×seller', weight: 0.6, ...counts(small) },
    ] };
    for (const d of tables.dimensions) d.positives = d.n.map((n) => Math.floor(r() * (n + 1)));
    const peers = buildPeerTables([toBatch(randomDeclarations(100, 72)).batch], ['hs6']);
    const ruleset = createRuleset({ peers, history: tables, settings: { randomSelection: { rate: 0 }, misclassification: { weight: 0 } } });
    const compiled = compileRuleset(ruleset);
    expect(compiled.meta.historyImage!.combinations.map((c) => c.capacity)).toEqual([131072, 512]);
    const decls = randomDeclarations(5000, 73).map((d, i) => {
      const a = Math.floor(r() * (i % 3 === 0 ? 300 : K)); // a third on the small table's importers
      return { ...d, importer: `I${a}`, declarant: i % 4 === 3 ? 'nobody' : `D${a % 97}`, seller: `S${a % 13}` };
    });
    const got = scoredAsReference(compiled, ruleset, decls);
    const h = got.history!;
    expect(h.slots).toBeInstanceOf(Uint32Array);
    expect(Math.max(...h.slots!)).toBeGreaterThan(65535); // slots past u16's range were found
    const index = new HistoryIndex(tables);
    for (const d of index.combinations) {
      const fromSlots = index.dimEntries(h, decls.length, d);
      expect(Array.from(fromSlots)).toEqual(Array.from(index.dimEntries({ ...h, slots: undefined }, decls.length, d)));
      expect(fromSlots.filter((e) => e >= 0).length).toBeGreaterThan(1000);
    }
  });

  it('a combination whose parts make more keys than a u32 holds gets wide slots (u64 key), the others narrow ones (u32 key, float32 value); both agree with the reference', () => {
    // 1,700 values per part: the triple's parts make 1,700^3 ≈ 4.9e9 keys, the pair's 2.9e6
    const K = 1700, r = rng(61);
    const triple = Array.from({ length: K }, (_, i) => `I${i}|D${i}|S${i}`);
    const pair = Array.from({ length: K }, (_, i) => `I${i}|D${(i * 7) % K}`);
    const counts = (keys: string[]) => ({ keys, n: keys.map(() => 1 + Math.floor(r() * 50)), positives: keys.map(() => 0) });
    const tables: HistoryTables = { prior: 0.2, strength: 5, halfLifeDays: 0, dimensions: [
      { name: 'importer×declarant', weight: 0.7, ...counts(pair) },
      { name: 'importer×declarant×seller', weight: 1.3, ...counts(triple) },
    ] };
    for (const d of tables.dimensions) d.positives = d.n.map((n) => Math.floor(r() * (n + 1)));
    const index = new HistoryIndex(tables);
    expect(index.combinations.map((d) => index.keySpace(d))).toEqual([K * K, K * K * K]);
    const peers = buildPeerTables([toBatch(randomDeclarations(100, 62)).batch], ['hs6']);
    const ruleset = createRuleset({ peers, history: tables, settings: { randomSelection: { rate: 0 }, misclassification: { weight: 0 } } });
    const compiled = compileRuleset(ruleset);
    expect(compiled.meta.historyImage!.combinations.map((c) => c.narrow)).toEqual([true, false]);
    // rows on a key of both tables, of one, and of none (values the tables never saw)
    const pick = () => Math.floor(r() * K);
    const decls = randomDeclarations(3000, 63).map((d, i) => {
      const a = pick(), kind = i % 3;
      return { ...d, importer: `I${a}`, declarant: kind === 0 ? `D${a}` : kind === 1 ? `D${(a * 7) % K}` : `D${pick()}`, seller: kind === 2 ? 'nobody' : `S${a}` };
    });
    const got = scoredAsReference(compiled, ruleset, decls);
    const found = index.combinations.map((d) => decls.filter((_, i) => index.entry(got.history!, i, d) >= 0).length);
    expect(found[0]).toBeGreaterThan(900);
    expect(found[1]).toBeGreaterThan(900);
    // the slots the kernel found, in either layout, give the entries a probe in JavaScript finds
    for (const d of index.combinations) expect(Array.from(index.dimEntries(got.history!, decls.length, d))).toEqual(decls.map((_, i) => index.entry(got.history!, i, d)));
    // the scores differ by each found entry's weight × lift, rounded to float32 as the tables hold it
    const base = referenceScore(createRuleset({ peers, settings: { randomSelection: { rate: 0 }, misclassification: { weight: 0 } } }), toBatch(decls).batch);
    const l = tables.dimensions.map((d) => lifts(tables, d));
    for (const i of [0, 1, 2, 3, 4, 5]) {
      const e = index.combinations.map((d) => index.entry(got.history!, i, d));
      const add = e.reduce((sum, x, c) => sum + (x < 0 ? 0 : Math.fround(tables.dimensions[c].weight * l[c][x])), 0);
      expect(got.score[i] - base.score[i]).toBeCloseTo(add, 9);
    }
  });

  it('with many dimensions (HS prefixes, tax rates, pairs, triples), unseen values, repeated keys and AEO: the kernel agrees with the reference, and HISTORY reasons name the rows\' own entries', () => {
    const POOL = [...DEFAULT_DIMENSIONS, 'hs8', 'hs10', 'hs2×departure', 'seller×taxRate', 'hs6×origin×importer', 'office×transportMode×declarant', 'importer×seller×taxRate', 'hs4×seller'];
    let reasons = 0, unseen = 0, aeoRows = 0, moved = 0;
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 200 }), fc.subarray(POOL, { minLength: 1 }), fc.boolean(), fc.boolean(),
      (seed, rows, numProfiles, dims, aeo, text) => {
        const r = rng(seed + 9);
        const sellers = ['S1', 'S2', 'S3', 'S4', 'S5', 'S6', 'S7', ''];
        const withSellers = (ds: Declaration[]) => ds.map((d) => ({ ...d, seller: sellers[Math.floor(r() * sellers.length)] || undefined }));
        // the tables come from other declarations than the scored ones: some values are unseen
        const tables = tablesOf(withSellers(randomDeclarations(200, seed)), dims, seed + 4);
        if (aeo) tables.aeoReduction = Math.LN2; else delete tables.aeoReduction;
        const peers = buildPeerTables([toBatch(randomDeclarations(300, seed + 1)).batch], ['hs6', 'hs4']);
        const ruleset = createRuleset({ peers, profiles: randomProfiles(numProfiles, seed + 2), history: tables, settings: { thresholds: { yellow: 1, red: 3 }, ...(text ? {} : { misclassification: { weight: 0 } }) } });
        kernel.loadRuleset(compileRuleset(ruleset));
        const decls = withSellers(randomDeclarations(rows, seed + 3, { descriptions: true }));
        const { batch, ids } = toBatch(decls);
        const got = kernel.score(batch);
        const want = referenceScore(ruleset, batch);
        expect(Array.from(got.channel)).toEqual(Array.from(want.channel));
        expect(Array.from(got.flags)).toEqual(Array.from(want.flags));
        for (let i = 0; i < rows; i++) expect(Math.abs(got.score[i] - want.score[i]) <= 1e-9 * Math.max(1, Math.abs(want.score[i])), `row ${i}: ${got.score[i]} vs ${want.score[i]}`).toBe(true);
        // HISTORY and AEO reasons: each dimension's entry found from the row's values as the reference does (the last entry of a repeated key)
        const decisions = toDecisions(got, ids, kernel.rulesetMeta!);
        const l = tables.dimensions.map((d) => lifts(tables, d));
        const byKey = tables.dimensions.map((d) => new Map(d.keys.map((k, e) => [k, e])));
        decls.forEach((d, i) => {
          const expected: Reason[] = [];
          /** Every trader entry of the row with its exact contribution (cited or not). */
          const traderAll: { reason: Reason; c: number }[] = [];
          tables.dimensions.forEach((dim, k) => {
            const key = keyOf(parseDimension(dim.name), (f) => (f === 'taxRate' ? String(d.taxRate ?? NaN) : String((d as unknown as Record<string, unknown>)[f] ?? '')));
            const e = key === undefined ? undefined : byKey[k].get(key);
            if (e === undefined) { if (key !== undefined) unseen++; return; }
            // a combination's weight × lift as the kernel holds it, in float32
            const c = parseDimension(dim.name).length > 1 ? Math.fround(dim.weight * l[k][e]) : dim.weight * l[k][e];
            const reason: Reason = { code: 'HISTORY', dimension: dim.name, value: dim.keys[e], rate: Math.round(smoothedRate(tables, dim, e) * 1e3) / 1e3, n: Math.round(dim.n[e] * 10) / 10, contribution: Math.round(c * 1e4) / 1e4 };
            if (Math.abs(c) >= HISTORY_REASON_MIN) expected.push(reason);
            // the rating: dimensions with an importer or declarant part (a seller's are not rated)
            if (parseDimension(dim.name).some((p) => p.field === 'importer' || p.field === 'declarant') && dim.weight !== 0 && c !== 0) traderAll.push({ reason, c });
          });
          const size = (x: Reason) => Math.abs((x as { contribution: number }).contribution);
          expected.sort((a, b) => size(b) - size(a));
          const history = expected.slice(0, HISTORY_REASONS);
          // the rating cited when the trader contributions not cited would move the score across a line (yellow 1, red 3)
          const left = traderAll.filter((t) => !history.includes(t.reason));
          const side = (x: number) => (x >= 3 ? 2 : x >= 1 ? 1 : 0);
          const u = left.reduce((s, t) => s + t.c, 0);
          if (left.length > 0 && side(got.score[i]) !== side(got.score[i] - u)) { history.push(...left.map((t) => t.reason).sort((a, b) => size(b) - size(a))); moved++; }
          if (aeo && d.aeo) { history.push({ code: 'AEO', contribution: -0.6931 }); aeoRows++; }
          reasons += history.length;
          expect(decisions[i].reasons.filter((x) => x.code === 'HISTORY' || x.code === 'AEO'), `row ${i}`).toEqual(history);
        });
      },
    ), { numRuns: 25 });
    // the cases happened: reasons, values the tables never saw, AEO importers
    expect(reasons).toBeGreaterThan(500);
    expect(unseen).toBeGreaterThan(100);
    expect(aeoRows).toBeGreaterThan(10);
    expect(moved).toBeGreaterThan(0);
  });

  it('a value holding "|" (the key separator) gives no key in a combination: training, kernel and reference agree, and no two rows share a key by accident', () => {
    // importer "A|B" with seller "C" and importer "A" with seller "B|C" would both read "A|B|C"
    const [base] = randomDeclarations(1, 41);
    const decls: Declaration[] = [
      { importer: 'A|B', seller: 'C' }, { importer: 'A', seller: 'B|C' }, { importer: 'A|B', seller: 'C' },
      { importer: 'A', seller: 'B' }, { importer: 'A|B', seller: undefined }, { importer: 'Q', seller: 'C' },
    ].map((x, i) => ({ ...base, ...x, id: `BAR-${i}` }));
    const value = (d: Declaration) => (f: string) => String((d as unknown as Record<string, unknown>)[f] ?? '');
    const pair = parseDimension('importer×seller');
    expect(keyOf(pair, value(decls[0]))).toBeUndefined();
    expect(keyOf(pair, value(decls[1]))).toBeUndefined();
    expect(keyOf(pair, value(decls[3]))).toBe('A|B');
    expect(keyOf(parseDimension('importer'), value(decls[0]))).toBe('A|B'); // one field: the value is the key
    const { batch } = toBatch(decls);
    const pk = batchKeys(batch, pair);
    expect(pk.keys.sort()).toEqual(['A|B', 'Q|C']);
    expect(Array.from(pk.row).map((e) => e >= 0)).toEqual([false, false, false, true, false, true]);
    expect(batchKeys(batch, parseDimension('importer')).keys).toContain('A|B');
    // a model written before this rule may still hold such a key: the kernel and the reference both ignore it
    const tables: HistoryTables = { prior: 0.2, strength: 2, halfLifeDays: 0, dimensions: [
      { name: 'importer', weight: 1, keys: ['A|B', 'A'], n: [10, 10], positives: [9, 1] },
      { name: 'importer×seller', weight: 1, keys: ['A|B|C', 'A|B'], n: [10, 10], positives: [10, 0] },
    ] };
    const peers = buildPeerTables([toBatch(randomDeclarations(100, 42)).batch], ['hs6']);
    const ruleset = createRuleset({ peers, history: tables, settings: { randomSelection: { rate: 0 }, misclassification: { weight: 0 } } });
    kernel.loadRuleset(compileRuleset(ruleset));
    const got = kernel.score(batch);
    const want = referenceScore(ruleset, batch);
    for (let i = 0; i < decls.length; i++) expect(got.score[i], `row ${i}`).toBeCloseTo(want.score[i], 9);
    // the rows differ only in importer and seller: the tables alone tell their scores apart
    const l = tables.dimensions.map((d) => lifts(tables, d));
    // A|B as a pair (A, B); (A, B|C) no pair. A combination's weight × lift is held in float32
    expect(want.score[3] - want.score[1]).toBeCloseTo(Math.fround(l[1][1]), 12);
    expect(want.score[0] - want.score[5]).toBeCloseTo(l[0][0], 9); // importer A|B; no pair for (A|B, C) though the model lists A|B|C
    expect(want.score[2]).toBeCloseTo(want.score[0], 12);
    expect(want.score[4]).toBeCloseTo(want.score[0], 12);
  });

  it('decisions built from a worker\'s result equal those built on the calling thread (the batch\'s columns travel back with the result)', async () => {
    const dims = ['hs4', 'importer', 'taxRate', 'hs6×origin', 'importer×declarant', 'office×transportMode×declarant'];
    const tables = { ...tablesOf(randomDeclarations(300, 21), dims, 22), aeoReduction: Math.LN2 };
    const peers = buildPeerTables([toBatch(randomDeclarations(300, 23)).batch], ['hs6']);
    const ruleset = createRuleset({ peers, history: tables, settings: { randomSelection: { rate: 0 } } });
    const decls = randomDeclarations(500, 24);
    const inline = createEngine({ ruleset, threads: 0 });
    const pooled = createEngine({ ruleset, threads: 1 });
    try {
      const a = toBatch(decls), b = toBatch(decls);
      const ra = await inline.scoreBatch(a.batch);
      const rb = await pooled.scoreBatch(b.batch);
      const da = toDecisions(ra, a.ids, inline.meta(ra.rulesetVersion));
      const db = toDecisions(rb, b.ids, pooled.meta(rb.rulesetVersion));
      expect(db).toEqual(da);
      expect(db.flatMap((d) => d.reasons).filter((x) => x.code === 'HISTORY').length).toBeGreaterThan(50);
    } finally {
      await inline.close();
      await pooled.close();
    }
  });

  it('batch keys equal the row-by-row keys, for single fields, HS prefixes, tax rates and pairs', () => {
    const decls = randomDeclarations(500, 9);
    const { batch } = toBatch(decls);
    for (const name of DEFAULT_DIMENSIONS) {
      const parts = parseDimension(name);
      const { row, keys } = batchKeys(batch, parts);
      decls.forEach((d, i) => {
        const want = keyOf(parts, (f) => (f === 'taxRate' ? String(d.taxRate ?? NaN) : String((d as unknown as Record<string, unknown>)[f] ?? '')));
        expect(row[i] < 0 ? undefined : keys[row[i]], `${name} row ${i}`).toBe(want);
      });
    }
  });

  it('rejects malformed tables and dimensions with named errors', () => {
    const good = randomTables(1, ['hs6×origin']);
    expect(validateHistory(good)).toBe(good);
    expect(() => validateHistory({ ...good, prior: 1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'history.prior' }) }));
    // a name that is no dimension at all is the model file's fault, named as such (docs/learning.md), as a non-canonical one is
    for (const name of ['origin×hs6x', 'foo', 'hs7']) {
      expect(() => validateHistory({ ...good, dimensions: [{ ...good.dimensions[0], name }] }), name).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'history.dimensions[0].name', got: name }) }));
    }
    expect(() => validateHistory({ ...good, dimensions: [{ ...good.dimensions[0], positives: good.dimensions[0].n.map((n) => n + 1) }] })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.dimensions[0][0]' }) }));
    expect(() => parseDimension('hs5')).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
    const d0 = good.dimensions[0];
    expect(validateHistory({ ...good, revenuePrior: 12.5, dimensions: [{ ...d0, revenue: d0.keys.map(() => 3) }] })).toBeDefined();
    expect(() => validateHistory({ ...good, revenuePrior: -1 })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.revenuePrior' }) }));
    expect(() => validateHistory({ ...good, dimensions: [{ ...d0, revenue: [1] }] })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.dimensions[0].revenue' }) }));
    expect(() => validateHistory({ ...good, dimensions: [{ ...d0, revenue: d0.keys.map((_, k) => (k === 2 ? Number.NaN : 1)) }] })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.dimensions[0].revenue[2]' }) }));
    // within the counts' tolerance (positives up to n + 1e-9), a tiny strength smooths a rate past 1: its lift is NaN,
    // and every declaration with the value would score NaN, which is green
    const past = { ...good, strength: 1e-12, dimensions: [{ ...d0, n: d0.n.map((n, k) => (k === 1 ? 0 : n)), positives: d0.positives.map((p, k) => (k === 1 ? 1e-9 : p)) }] };
    expect(() => validateHistory(past)).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'history.dimensions[0][1]' }) }));
    expect(() => validateHistory({ ...good, dimensions: [{ ...d0, n: d0.n.map((n, k) => (k === 0 ? Infinity : n)) }] })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.dimensions[0][0]' }) }));
  });

  it('a HISTORY reason names the dimension, value, rate and contribution that moved the score', async () => {
    const peers = buildPeerTables([toBatch(randomDeclarations(200, 3)).batch], ['hs6']);
    const history: HistoryTables = { prior: 0.2, strength: 10, halfLifeDays: 0, dimensions: [{ name: 'importer', weight: 1, keys: ['IMP1', 'IMP2'], n: [90, 50], positives: [81, 10] }] };
    const engine = createEngine({ ruleset: createRuleset({ peers, history, settings: { randomSelection: { rate: 0 } } }), threads: 1 });
    try {
      const decls = randomDeclarations(2, 4).map((d, i) => ({ ...d, importer: i === 0 ? 'IMP1' : 'IMP2', aeo: false }));
      const { batch, ids } = toBatch(decls);
      const result = await engine.scoreBatch(batch);
      const [a, b] = toDecisions(result, ids, engine.meta(result.rulesetVersion));
      const rate = (81 + 10 * 0.2) / (90 + 10);
      const lift = Math.log(rate / (1 - rate)) - Math.log(0.2 / 0.8);
      expect(a.reasons.find((r) => r.code === 'HISTORY')).toEqual({ code: 'HISTORY', dimension: 'importer', value: 'IMP1', rate: 0.83, n: 90, contribution: Math.round(lift * 1e4) / 1e4 });
      // IMP2's rate is the prior's: its lift is 0, below the reason threshold
      expect(b.reasons.filter((r) => r.code === 'HISTORY')).toEqual([]);
    } finally {
      await engine.close();
    }
    // an AEO importer: the documented reduction, as a reason and in the score
    const withAeo = createEngine({ ruleset: createRuleset({ peers, history: { ...history, aeoReduction: Math.LN2 }, settings: { randomSelection: { rate: 0 } } }), threads: 0 });
    try {
      const [d0] = randomDeclarations(1, 4);
      const decls = [{ ...d0, importer: 'IMP2', aeo: true }, { ...d0, id: `${d0.id}-b`, importer: 'IMP2', aeo: false }];
      const { batch, ids } = toBatch(decls);
      const result = await withAeo.scoreBatch(batch);
      const [a, b] = toDecisions(result, ids, withAeo.meta(result.rulesetVersion));
      expect(a.reasons.filter((r) => r.code === 'AEO')).toEqual([{ code: 'AEO', contribution: -0.6931 }]);
      expect(b.reasons.filter((r) => r.code === 'AEO')).toEqual([]);
      expect(result.score[0] - result.score[1]).toBeCloseTo(-Math.LN2, 9);
    } finally {
      await withAeo.close();
    }
  });
});

describe('the compliance model', () => {
  it('logistic regression recovers the coefficients of simulated data', () => {
    const r = rng(11);
    const N = 20_000, F = 3;
    const X = new Float64Array(N * F), y = new Uint8Array(N);
    const truth = [1.5, -2, 0], b = -0.5;
    for (let i = 0; i < N; i++) {
      let z = b;
      for (let j = 0; j < F; j++) { X[i * F + j] = r() * 2 - 1; z += truth[j] * X[i * F + j]; }
      y[i] = r() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
    }
    const fit = logisticRegression(X, y, F, [0, 1, 2], 1e-6);
    for (let j = 0; j < F; j++) expect(Math.abs(fit.coef[j] - truth[j]), `coef ${j}: ${fit.coef[j]}`).toBeLessThan(0.12);
    expect(Math.abs(fit.intercept - b)).toBeLessThan(0.08);
    // started from another fit (a refit after a dropped column): the same optimum, in fewer steps
    const again = logisticRegression(X, y, F, [0, 1, 2], 1e-6, undefined, fit);
    for (let j = 0; j < F; j++) expect(again.coef[j]).toBeCloseTo(fit.coef[j], 9);
    expect(again.iterations).toBeLessThan(fit.iterations);
    expect(again.iterations).toBeLessThanOrEqual(2);
    const dropped = logisticRegression(X, y, F, [0, 1], 1e-6);
    const warm = logisticRegression(X, y, F, [0, 1], 1e-6, undefined, fit);
    for (let j = 0; j < F; j++) expect(warm.coef[j]).toBeCloseTo(dropped.coef[j], 9);
    expect(warm.intercept).toBeCloseTo(dropped.intercept, 9);
    expect(warm.coef[2]).toBe(0);
  });

  it('converges from a start far from the optimum (a trader always non-compliant, a warm start that overshoots) instead of diverging', () => {
    // one indicator that is 1 exactly on the positives (a separating trader), two noise columns, a weak penalty
    const r = rng(13);
    const N = 400, F = 3;
    const X = new Float64Array(N * F), y = new Uint8Array(N);
    for (let i = 0; i < N; i++) {
      y[i] = i % 20 === 0 ? 1 : 0;
      X[i * F] = y[i] ? 3.2 : -0.15;
      X[i * F + 1] = r() * 2 - 1;
      X[i * F + 2] = r() < 0.3 ? 1 : 0;
    }
    const cold = logisticRegression(X, y, F, [0, 1, 2], 1e-3);
    expect(Number.isFinite(cold.intercept) && Math.abs(cold.intercept) < 50).toBe(true);
    // warm starts far off, as a refit after a dropped column can be: the same optimum, not an intercept of -1e8
    for (const start of [{ coef: Float64Array.of(40, -30, 25), intercept: -60 }, { coef: Float64Array.of(-5, 0, 0), intercept: 30 }]) {
      const warm = logisticRegression(X, y, F, [0, 1, 2], 1e-3, undefined, start);
      expect(warm.iterations).toBeLessThan(100);
      expect(warm.intercept).toBeCloseTo(cold.intercept, 5);
      for (let j = 0; j < F; j++) expect(warm.coef[j]).toBeCloseTo(cold.coef[j], 5);
      expect(warm.logLoss).toBeCloseTo(cold.logLoss, 8);
    }
  });

  it('gives each weight its standard error: for one binary feature, Woolf\'s for the log odds ratio', () => {
    const r = rng(12);
    const N = 20_000;
    const X = new Float64Array(N), y = new Uint8Array(N);
    const cell = [0, 0, 0, 0]; // x = 0 or 1, times y = 0 or 1
    for (let i = 0; i < N; i++) {
      X[i] = r() < 0.3 ? 1 : 0;
      y[i] = r() < 1 / (1 + Math.exp(-(-1 + 0.8 * X[i]))) ? 1 : 0;
      cell[X[i] * 2 + y[i]]++;
    }
    const fit = logisticRegression(X, y, 1, [0], 1e-12);
    // the fit is the saturated model of the 2 × 2 table: the log odds ratio, and its standard error sqrt(Σ 1/cell)
    expect(fit.coef[0]).toBeCloseTo(Math.log((cell[0] * cell[3]) / (cell[1] * cell[2])), 6);
    const woolf = Math.sqrt(cell.reduce((s, c) => s + 1 / c, 0));
    expect(Math.abs(fit.se[0] / woolf - 1)).toBeLessThan(1e-4);
  });

  it('drops the weights the training data cannot tell from 0 (z below --min-z), one at a time, and keeps those it can', async () => {
    // the label follows the importer; the origin is noise
    const r = rng(71);
    const { decls, batch, peers } = importerRuns(5000, 72, () => 5 + Math.floor(r() * 20), () => `O${Math.floor(r() * 30)}`);
    const risky = new Map<string, boolean>();
    const labels = Uint8Array.from(decls, (d) => {
      let x = risky.get(d.importer);
      if (x === undefined) { x = r() < 0.2; risky.set(d.importer, x); }
      return r() < (x ? 0.6 : 0.1) ? 1 : 0;
    });
    const data = { batches: [batch], labels: [labels] };
    const options = { dimensions: ['importer', 'origin'], threads: 0 };
    const weight = (m: Awaited<ReturnType<typeof trainModel>>, name: string) => m.history.dimensions.find((d) => d.name === name)!.weight;
    const kept = await trainModel(data, peers, {}, { ...options, minZ: 0 });
    const tested = await trainModel(data, peers, {}, options);
    // without the test the noise fits a small positive weight; with it, that weight goes and the importer's stays
    expect(weight(kept, 'origin')).toBeGreaterThan(0);
    expect(kept.training.z!['history.origin']).toBeLessThan(1.96);
    expect(weight(tested, 'origin')).toBe(0);
    expect(weight(tested, 'importer')).toBeGreaterThan(0.5);
    expect(tested.training.minZ).toBe(1.96);
    expect(tested.training.z!['history.importer']).toBeGreaterThan(10);
    for (const [name, z] of Object.entries(tested.training.z!)) {
      expect(z, name).toBeGreaterThanOrEqual(1.96);
      expect(tested.coefficients[name]).toBeGreaterThan(0);
    }
    expect(Object.keys(tested.training.z!).length).toBe(Object.values(tested.coefficients).filter((c) => c !== 0).length);
    // a bar no weight reaches leaves the intercept alone
    const none = await trainModel(data, peers, {}, { ...options, minZ: 1e6 });
    expect(Object.values(none.coefficients).every((c) => c === 0)).toBe(true);
    await expect(trainModel(data, peers, {}, { ...options, minZ: -1 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'minZ' } });
    // the thresholds: each named for what is wrong with it (a yellow line above the default red one is yellowAt's fault)
    await expect(trainModel(data, peers, {}, { ...options, yellowAt: 0.6 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'yellowAt', got: 0.6 } });
    await expect(trainModel(data, peers, {}, { ...options, redAt: 1 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'redAt', got: 1 } });
    expect(learnOptions({ 'min-z': '0' }).minZ).toBe(0);
    expect(learnOptions({ 'min-z': '3.5' }).minZ).toBe(3.5);
    for (const bad of ['-1', 'abc', '']) expect(() => learnOptions({ 'min-z': bad })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'min-z' }) }));
  }, 60_000);

  it("strength 'auto' takes the prior strength whose model fits best out of fold, and that strength's model", async () => {
    // importers of 1 to 40 declarations; 20 % of them risky (90 % non-compliant), the rest 5 %
    const r = rng(42);
    const { decls, batch, peers } = importerRuns(6000, 41, () => 1 + Math.floor(r() ** 2 * 40));
    const risky = new Map<string, boolean>();
    const informative = Uint8Array.from(decls, (d) => {
      let x = risky.get(d.importer);
      if (x === undefined) { x = r() < 0.2; risky.set(d.importer, x); }
      return r() < (x ? 0.9 : 0.05) ? 1 : 0;
    });
    const noise = Uint8Array.from(decls, () => (r() < 0.2 ? 1 : 0));
    const spread: number[] = [];
    for (const labels of [informative, noise]) {
      const data = { batches: [batch], labels: [labels] };
      // traderStrength 0: the importers' rates follow the strength tried (by default they keep at least 10)
      const auto = await trainModel(data, peers, {}, { dimensions: ['importer'], strength: 'auto', traderStrength: 0, threads: 0 });
      const tried = auto.training.strengths!;
      expect(tried.map((t) => t.strength)).toEqual([...STRENGTH_GRID]);
      // the lowest log-loss, ties to the larger strength
      const best = tried.reduce((a, t) => (t.logLoss <= a.logLoss ? t : a));
      expect(auto.history.strength).toBe(best.strength);
      expect(auto.training.logLoss).toBe(best.logLoss);
      // the model is the one that strength gives when asked for by number
      const fixed = await trainModel(data, peers, {}, { dimensions: ['importer'], strength: best.strength, traderStrength: 0, threads: 0 });
      expect(auto.coefficients).toEqual(fixed.coefficients);
      expect(auto.history).toEqual(fixed.history);
      expect(fixed.training.strengths).toBeUndefined();
      const losses = tried.map((t) => t.logLoss);
      spread.push(Math.max(...losses) - Math.min(...losses));
      if (labels === informative) {
        // thin importers tell something, but not everything: neither end of the grid fits best
        expect(best.strength).toBeGreaterThan(STRENGTH_GRID[0]);
        expect(best.strength).toBeLessThan(STRENGTH_GRID[STRENGTH_GRID.length - 1]);
        expect(Math.min(losses[0], losses[losses.length - 1]) - best.logLoss).toBeGreaterThan(0.005);
      }
    }
    // where the importer says nothing of the label, the strength hardly matters
    expect(spread[0]).toBeGreaterThan(0.01);
    expect(spread[1]).toBeLessThan(0.001);
    await expect(trainModel({ batches: [batch], labels: [noise] }, peers, {}, { strength: 'often' as never, threads: 0 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'strength' } });
    // the command line's --strength
    expect(learnOptions({ strength: 'auto' }).strength).toBe('auto');
    expect(learnOptions({ strength: '2.5' }).strength).toBe(2.5);
    expect(() => learnOptions({ strength: 'often' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  }, 60_000);

  it('says when a candidate\'s counts are recency-weighted (trader dimensions), instead of calling them declarations', async () => {
    const r = rng(71);
    // 100 importers of 30 declarations each, spread over a year; one in ten importers non-compliant 70 % of the time
    const decls = randomDeclarations(3000, 72).map((d, i) => ({ ...d, importer: `IMP${i % 100}`, date: `2025-${String(1 + (i % 12)).padStart(2, '0')}-15` }));
    const { batch } = toBatch(decls);
    const peers = buildPeerTables([batch], ['hs6', 'hs4']);
    const labels = Uint8Array.from(decls, (d) => (r() < (Number(d.importer.slice(3)) % 10 === 0 ? 0.7 : 0.05) ? 1 : 0));
    const data = { batches: [batch], labels: [labels] };
    for (const halfLifeDays of [90, 0]) {
      const m = await trainModel(data, peers, {}, { dimensions: ['origin', 'importer'], halfLifeDays, threads: 0, minZ: 0 });
      const cands = candidateProfiles(m, { minSupport: 1, minLift: 1.5 });
      const importer = cands.find((c) => c.evidence.dimension === 'importer')!;
      const declared = decls.filter((d) => d.importer === importer.evidence.value).length;
      expect(declared).toBe(30);
      if (halfLifeDays > 0) {
        expect(importer.evidence.recencyWeighted).toBe(true);
        expect(importer.evidence.support).toBeLessThan(declared / 2); // a year of declarations, a half-life of 90 days
        expect(importer.profile.description).toMatch(/of [\d.]+ recency-weighted declarations \(one 90 days older counts half\)/);
      } else {
        expect(importer.evidence).not.toHaveProperty('recencyWeighted');
        expect(importer.evidence.support).toBe(declared);
        expect(importer.profile.description).toMatch(/ of 30 declarations non-compliant/);
      }
      // the origin's counts are never weighted
      for (const c of cands.filter((x) => x.evidence.dimension === 'origin')) expect(c.evidence).not.toHaveProperty('recencyWeighted');
    }
  }, 60_000);

  it('ages declarations from the newest one dated by the training day: one mistyped far-future date does not wipe the trader rating out', async () => {
    const r = rng(73);
    const decls = randomDeclarations(3000, 74).map((d, i) => ({ ...d, importer: `IMP${i % 100}`, date: `2025-${String(1 + (i % 12)).padStart(2, '0')}-15` }));
    const labels = Uint8Array.from(decls, (d) => (r() < (Number(d.importer.slice(3)) % 10 === 0 ? 0.7 : 0.05) ? 1 : 0));
    const train = async (ds: Declaration[], asOf?: number) => {
      const { batch } = toBatch(ds);
      const m = await trainModel({ batches: [batch], labels: [labels] }, buildPeerTables([batch], ['hs6', 'hs4']), {}, { dimensions: ['importer'], halfLifeDays: 365, threads: 0, minZ: 0, ...(asOf === undefined ? {} : { asOf }) });
      return m.history.dimensions.find((d) => d.name === 'importer')!;
    };
    const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
    const base = await train(decls);
    // one declaration's year mistyped: 2205
    const typo = decls.map((d, i) => (i === 5 ? { ...d, date: '2205-06-15' } : d));
    const got = await train(typo, Date.UTC(2026, 11, 7));
    // that row now weighs 1 (it weighed 0.5 ** (its age / 365) before); every other row as before
    expect(Math.abs(sum(got.n) - sum(base.n))).toBeLessThan(1);
    expect(got.keys).toEqual(base.keys);
    got.n.forEach((n, k) => expect(n, base.keys[k]).toBeCloseTo(base.keys[k] === decls[5].importer ? n : base.n[k], 9));
    // the newest declaration still sets the age when it is not after the training day
    const asOfLater = await train(decls, Date.UTC(2026, 11, 7));
    expect(asOfLater.n).toEqual(base.n);
  }, 60_000);

  it('keeps the trader dimensions at a prior strength of at least 10 by default, whatever the strength of the others (auto included)', async () => {
    // importers of 1 to 6 declarations, each risky or not; origins as informative; both thin enough for the strength to matter
    const r = rng(61);
    const { decls, batch, peers } = importerRuns(4000, 62, () => 1 + Math.floor(r() * 6), () => `O${Math.floor(r() * 400)}`);
    const risk = new Map<string, number>();
    const riskOf = (key: string) => { let x = risk.get(key); if (x === undefined) risk.set(key, (x = r() < 0.2 ? 0.9 : 0.05)); return x; };
    const labels = Uint8Array.from(decls, (d) => (r() < Math.max(riskOf(d.importer), riskOf(d.origin)) ? 1 : 0));
    const data = { batches: [batch], labels: [labels] };
    const base = { dimensions: ['origin', 'importer', 'importer×origin'], halfLifeDays: 0, threads: 0 };

    // a numeric strength below the floor: the others take it, the trader dimensions 10
    const floored = await trainModel(data, peers, {}, { ...base, strength: 1 });
    expect(floored.history.strength).toBe(1);
    expect(floored.history.traderStrength).toBe(10);
    const t = floored.history;
    for (const d of t.dimensions) {
      const m = isTraderDimension(d.name) ? 10 : 1;
      const e = d.n.findIndex((n) => n >= 1 && n <= 3);
      expect(e).toBeGreaterThanOrEqual(0);
      expect(smoothedRate(t, d, e)).toBeCloseTo((d.positives[e] + m * t.prior) / (d.n[e] + m), 12);
      expect(lifts(t, d)[e]).toBeCloseTo(Math.log(smoothedRate(t, d, e) / (1 - smoothedRate(t, d, e))) - Math.log(t.prior / (1 - t.prior)), 12);
      expect(revenueAtRisk(t, d, e)).toBeCloseTo((d.revenue![e] + m * t.revenuePrior!) / (d.n[e] + m), 6);
    }
    expect(['origin', 'importer', 'importer×origin'].map(isTraderDimension)).toEqual([false, true, true]);
    // traderStrength 0 lets them follow the strength: another model, with no traderStrength recorded
    const free = await trainModel(data, peers, {}, { ...base, strength: 1, traderStrength: 0 });
    expect(free.history.traderStrength).toBeUndefined();
    expect(free.coefficients['history.importer']).not.toBeCloseTo(floored.coefficients['history.importer'], 3);
    // at or above the floor nothing changes: the model is the one it was before the floor existed
    const ten = await trainModel(data, peers, {}, { ...base, strength: 10 });
    expect(ten.history.traderStrength).toBeUndefined();
    expect(ten.coefficients).toEqual((await trainModel(data, peers, {}, { ...base, strength: 10, traderStrength: 0 })).coefficients);

    // auto on the trader dimensions alone: every strength up to 10 fits the same model, so ties go to 10
    const auto = await trainModel(data, peers, {}, { ...base, dimensions: ['importer'], strength: 'auto' });
    const losses = auto.training.strengths!.map((x) => x.logLoss);
    const atTen = STRENGTH_GRID.indexOf(10);
    for (let k = 0; k < atTen; k++) expect(losses[k]).toBe(losses[atTen]);
    expect(auto.history.strength).toBeGreaterThanOrEqual(10);
    expect(auto.history.traderStrength).toBeUndefined();

    // a model file's traderStrength is checked; the option too
    expect(() => validateHistory({ ...t, traderStrength: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'history.traderStrength' }) }));
    expect(() => validateHistory({ ...t, traderStrength: 'ten' })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'history.traderStrength' }) }));
    await expect(trainModel(data, peers, {}, { ...base, traderStrength: -1 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'traderStrength' } });
    expect(learnOptions({ 'trader-strength': '0' }).traderStrength).toBe(0);
    expect(() => learnOptions({ 'trader-strength': '-2' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  }, 60_000);

  it('keeps the revenue of each value\'s non-compliant declarations, and shows its revenue at risk in the candidate profiles', async () => {
    const decls = randomDeclarations(3000, 51).map((d, i) => ({ ...d, origin: ['CN', 'VN', 'DE', 'US'][i % 4] }));
    const { batch } = toBatch(decls);
    const peers = buildPeerTables([batch], ['hs6', 'hs4']);
    const r = rng(52);
    // CN: often non-compliant; DE: as often, on a fixed revenue of 1,000 each (given below, not from the columns)
    const labels = Uint8Array.from(decls, (d) => (r() < (d.origin === 'CN' || d.origin === 'DE' ? 0.6 : 0.1) ? 1 : 0));
    const options = { dimensions: ['origin'], strength: 4, halfLifeDays: 0, threads: 0 };
    const m = await trainModel({ batches: [batch], labels: [labels] }, peers, {}, options);
    const lost = (d: Declaration) => { const x = (d.customsValue * (d.taxRate ?? Number.NaN)) / 100; return x >= 0 && Number.isFinite(x) ? x : 0; };
    const dim = m.history.dimensions[0];
    let all = 0;
    for (const origin of ['CN', 'VN', 'DE', 'US']) {
      const sum = decls.reduce((s, d, i) => s + (d.origin === origin && labels[i] ? lost(d) : 0), 0);
      all += sum;
      expect(dim.revenue![dim.keys.indexOf(origin)], origin).toBeCloseTo(sum, 1);
    }
    expect(m.history.revenuePrior).toBeCloseTo(all / decls.length, 1);
    // revenue given per row replaces the default; the candidates carry it, smoothed as the rate is
    const given = Float64Array.from(decls, (d) => (d.origin === 'DE' ? 1000 : 0));
    const g = await trainModel({ batches: [batch], labels: [labels], revenue: [given] }, peers, {}, options);
    const gd = g.history.dimensions[0];
    const de = gd.keys.indexOf('DE');
    const nonCompliantDE = decls.filter((d, i) => d.origin === 'DE' && labels[i]).length;
    expect(gd.revenue![de]).toBe(1000 * nonCompliantDE);
    expect(gd.revenue![gd.keys.indexOf('CN')]).toBe(0);
    const cands = candidateProfiles(g, { minSupport: 10, minLift: 1.5 });
    const c = cands.find((x) => x.evidence.value === 'DE')!;
    expect(c.evidence.revenue).toBe(1000 * nonCompliantDE);
    expect(c.evidence.revenueAtRisk).toBeCloseTo((1000 * nonCompliantDE + 4 * g.history.revenuePrior!) / (gd.n[de] + 4), 2);
    expect(c.profile.description).toMatch(/at risk about \d+ per declaration/);
    expect(cands.find((x) => x.evidence.value === 'CN')!.evidence.revenueAtRisk).toBeLessThan(c.evidence.revenueAtRisk!);
    // tables without revenue (an older model file): no revenue in the evidence
    const { revenuePrior: _, ...old } = g.history;
    const plain = candidateProfiles({ ...g, history: { ...old, dimensions: old.dimensions.map(({ revenue: __, ...d }) => d) } }, { minSupport: 10, minLift: 1.5 });
    expect(plain.find((x) => x.evidence.value === 'DE')!.evidence).not.toHaveProperty('revenueAtRisk');
  }, 60_000);

  it('on synthetic traffic, learning beats the deviation score alone and random selection', async () => {
    const file = join(dir, 'syn.csv');
    expect(await main(['generate', '--rows', '30000', '--seed', '21', '--out', file])).toBe(0);
    const r = await evaluate({ file, split: 0.7, label: 'fraud', learn: true, threads: 0 });
    const at10 = r.cuts.find((c) => c.fraction === 0.1)!;
    const base10 = r.baseline!.find((c) => c.fraction === 0.1)!;
    expect(at10.recall).toBeGreaterThan(base10.recall + 0.1);
    expect(at10.precision).toBeGreaterThan(3 * r.prevalence);
    expect(r.model!.coefficients['under.unitValue']).toBeGreaterThan(0);
    expect(Object.values(r.model!.coefficients).every((c) => c >= 0)).toBe(true);
    expect(r.model!.dimensions.map((d) => d.name)).toEqual([...DEFAULT_DIMENSIONS].map((d) => d));
  }, 60_000);

  it('the "deviation alone" baseline of evaluate --learn is the deviation score alone: the misclassification signal left out', async () => {
    const file = join(dir, 'syn-base.csv');
    expect(await main(['generate', '--rows', '12000', '--seed', '22', '--out', file])).toBe(0);
    const learnt = await evaluate({ file, split: 0.7, label: 'fraud', learn: true, threads: 0 });
    const alone = await evaluate({ file, split: 0.7, label: 'fraud', threads: 0, settings: { misclassification: { weight: 0 } } });
    const withText = await evaluate({ file, split: 0.7, label: 'fraud', threads: 0 });
    expect(learnt.baseline).toEqual(alone.cuts);
    // the signal fires in this data, so the two rankings differ (the baseline was the second one)
    expect(withText.cuts).not.toEqual(alone.cuts);
  }, 60_000);

  it('selectivity train writes a model that selectivity score uses (HISTORY reasons, same peers)', async () => {
    const fixture = join(__dirname, 'fixtures', 'kcs-eval-sample.csv');
    const model = join(dir, 'kcs-model.json');
    let out = '';
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => { out += String(c); return true; });
    const e = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const candidates = join(dir, 'candidates.json');
      expect(await main(['train', '--train', fixture, '--columns', 'kcs', '--label', 'Fraud', '--out', model, '--candidates', candidates, '--threads', '0', '--json'])).toBe(0);
      const summary = JSON.parse(out);
      // candidate profiles: a valid profile set, each with evidence above the overall rate, strongest (by Wilson bound) first
      const cand = JSON.parse(readFileSync(candidates, 'utf8'));
      expect(validateProfiles(cand).length).toBe(cand.profiles.length);
      expect(cand.profiles.length).toBeGreaterThan(0);
      for (const e of cand.evidence) {
        expect(e.support).toBeGreaterThanOrEqual(20);
        expect(e.hitRate).toBeGreaterThanOrEqual(2 * summary.training.prior);
        expect(e.nonCompliant / e.support).toBeCloseTo(e.hitRate, 9);
      }
      expect(summary.training.rows).toBe(2003);
      expect(summary.dimensions.find((d: { name: string }) => d.name === 'hs6×origin').values).toBeGreaterThan(100);
      const saved = JSON.parse(readFileSync(model, 'utf8'));
      expect(saved.format).toBe('selectivity-model');
      // no weight is negative: those that fitted negative were dropped (0) and the rest refitted; the dropped dimensions keep their counts
      const coefficients = Object.values(saved.coefficients as Record<string, number>);
      expect(coefficients.every((c) => c >= 0)).toBe(true);
      const dropped = (saved.history.dimensions as { weight: number; keys: string[] }[]).filter((d) => d.weight === 0);
      expect(dropped.length).toBeGreaterThan(0);
      expect(dropped.every((d) => d.keys.length > 0)).toBe(true);
      // the text summary says how many weights were kept, and each kept weight's z
      out = '';
      expect(await main(['train', '--train', fixture, '--columns', 'kcs', '--label', 'Fraud', '--out', join(dir, 'kcs-model-2.json'), '--threads', '0'])).toBe(0);
      const kept = coefficients.filter((c) => c !== 0).length;
      expect(out).toContain(`weights (${kept} of ${coefficients.length} kept; a weight that fits negative or with z below 1.96 is dropped, 0):`);
      for (const [name, z] of Object.entries(saved.training.z as Record<string, number>)) expect(out).toMatch(new RegExp(`  ${name.replace('.', '\\.')} +[0-9.]+  z ${z.toFixed(1).replace('.', '\\.')}\n`));
      expect(Object.keys(saved.training.z).length).toBe(kept);
      out = '';
      const decisions = join(dir, 'kcs-decisions.ndjson');
      expect(await main(['score', fixture, '--columns', 'kcs', '--model', model, '--peers', join(dir, 'kcs-model.peers.msgpack'), '--threads', '0', '--out', decisions])).toBe(0);
      const ds = readFileSync(decisions, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reasons: { code: string; dimension?: string }[] });
      expect(ds).toHaveLength(2003);
      expect(ds.filter((d) => d.reasons.some((x) => x.code === 'HISTORY')).length).toBeGreaterThan(500);
      // a bad model file is a named error, exit code 2
      writeFileSync(join(dir, 'bad-model.json'), JSON.stringify({ format: 'nope' }));
      expect(await main(['score', fixture, '--columns', 'kcs', '--model', join(dir, 'bad-model.json'), '--threads', '0', '--out', decisions])).toBe(2);
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }, 60_000);

  it('selectivity train warns when it kept no weight (the model scores every declaration alike), and still writes the model', async () => {
    const fixture = join(__dirname, 'fixtures', 'kcs-eval-sample.csv');
    let err = '';
    const o = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => { err += String(c); return true; });
    try {
      // the default bar keeps weights: no warning
      expect(await main(['train', '--train', fixture, '--columns', 'kcs', '--label', 'Fraud', '--out', join(dir, 'kcs-some.json'), '--threads', '0', '--json'])).toBe(0);
      expect(err).not.toContain('no weight kept');
      // a bar no weight reaches
      const model = join(dir, 'kcs-none.json');
      expect(await main(['train', '--train', fixture, '--columns', 'kcs', '--label', 'Fraud', '--out', model, '--threads', '0', '--min-z', '1000000', '--json'])).toBe(0);
      const saved = JSON.parse(readFileSync(model, 'utf8'));
      expect(Object.values(saved.coefficients as Record<string, number>).every((c) => c === 0)).toBe(true);
      expect(err).toContain('selectivity train: warning: no weight kept (none is positive with z of at least 1000000)');
      expect(err).toContain(`at the training rate of non-compliance (${(100 * saved.training.prior).toFixed(2)} %)`);
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }, 60_000);

  it('on the KCS sample, the learnt ranking is well above random at 5 % (train on 2020, test on the later dates)', async () => {
    const fixture = join(__dirname, 'fixtures', 'kcs-eval-sample.csv');
    const r = await evaluate({ file: fixture, split: 0.8, columns: 'kcs', label: 'Fraud', learn: true, threads: 0 });
    const at5 = r.cuts.find((c) => c.fraction === 0.05)!;
    expect(at5.precision).toBeGreaterThan(1.5 * r.prevalence);
  }, 60_000);
});

// keep the Declaration type import used (helpers build declarations)
export type { Declaration };

describe('replay in date order', () => {
  it('learns month by month from inspected declarations only; the control group estimates untargeted non-compliance', async () => {
    const file = join(dir, 'replay.csv');
    expect(await main(['generate', '--rows', '12000', '--seed', '8', '--days', '120', '--out', file])).toBe(0);
    const { labelledReader } = await import('../src/evaluate/evaluate.js');
    const { parseLabel } = await import('../src/evaluate/metrics.js');
    const { replay } = await import('../src/learn/replay.js');
    const batches = [], labels = [];
    for await (const c of labelledReader('default', 'fraud')(file)) {
      batches.push(c.batch);
      labels.push(Uint8Array.from(c.passThrough.fraud, (v) => parseLabel(v)));
    }
    const r = await replay(batches, labels, { inspectionRate: 0.05, controlRate: 0.05, settings: { misclassification: { weight: 0 } } });
    expect(r.periods.map((p) => p.period)).toEqual(['2025-02', '2025-03', '2025-04']);
    expect(r.warmup.declarations + r.total.declarations).toBe(12000);
    r.periods.forEach((p, k) => {
      expect(p.inspected).toBe(Math.round(0.05 * p.declarations));
      // what became known: the previous month's inspected and control rows, nothing else
      if (k > 0) expect(p.knownResults).toBe(r.periods[k - 1].knownResults + r.periods[k - 1].inspected + r.periods[k - 1].control);
    });
    expect(r.periods[0].knownResults).toBe(r.warmup.declarations);
    // targeting beats the month's rate several times over; the control estimate is near the truth
    expect(r.total.hitRate).toBeGreaterThan(4 * (r.total.hits + r.total.untargetedRate * (r.total.declarations - r.total.inspected)) / r.total.declarations);
    // the control group is drawn from the green untargeted declarations: its estimate is of their rate (within
    // three standard errors of a draw of its size), not of all untargeted traffic's
    const { control, controlEstimate, green, greenRate } = r.total;
    expect(green).toBeGreaterThan(control);
    expect(green).toBeLessThanOrEqual(r.total.declarations - r.total.inspected);
    expect(r.periods.reduce((s, p) => s + p.green, 0)).toBe(green);
    expect(Math.abs(controlEstimate! - greenRate)).toBeLessThan(3 * Math.sqrt((greenRate * (1 - greenRate)) / control));
  }, 120_000);

  it('takes declarations of equal score in an order of their ids, not of the file: the same history in another row order replays alike', async () => {
    const { replay } = await import('../src/learn/replay.js');
    // labels drawn at random: the model keeps no weight, most declarations score alike, and the quota cuts through them
    const r = rng(17);
    // and a last month of 5 declarations: 5 % of it is no inspection
    const decls = [...datedDeclarations(3000, 17), ...datedDeclarations(5, 18).map((d) => ({ ...d, date: '2025-06-02' }))];
    const y = decls.map(() => (r() < 0.1 ? 1 : 0));
    const month = (d: Declaration) => d.date.slice(0, 7);
    const order = (first: 0 | 1) => decls.map((d, i) => i).sort((a, b) => month(decls[a]).localeCompare(month(decls[b])) || (first ? y[b] - y[a] : y[a] - y[b]) || a - b);
    const run = async (first: 0 | 1) => {
      const idx = order(first);
      return replay([toBatch(idx.map((i) => decls[i])).batch], [Uint8Array.from(idx, (i) => y[i])], { inspectionRate: 0.05, controlRate: 0.02, settings: { misclassification: { weight: 0 } } });
    };
    const [a, b] = [await run(1), await run(0)];
    expect(a.periods.length).toBeGreaterThan(1);
    expect(b).toEqual(a);
    // and the pick among equals is no better than chance: the hit rate is near the months' prevalence (it was 100 % or 0 %)
    expect(a.total.hitRate).toBeLessThan(0.3);
    expect(a.total.hits).toBeGreaterThan(0);
    // a month with no inspection has no hit rate (it read 0.0 %); the control estimates carry their interval
    const last = a.periods.at(-1)!;
    expect([last.period, last.inspected, last.hitRate]).toEqual(['2025-06', 0, null]);
    const { formatReplay } = await import('../src/cli/replay.js');
    expect(formatReplay(a).split('\n').find((l) => l.trimStart().startsWith('2025-06'))).toMatch(/ 0 +— /);
    const withControl = a.periods.find((p) => p.control > 0)!;
    expect(withControl.controlInterval!.low).toBeLessThanOrEqual(withControl.controlEstimate!);
    expect(withControl.controlInterval!.high).toBeGreaterThanOrEqual(withControl.controlEstimate!);
  }, 120_000);
});

describe('learning from the store: the misclassification signal', () => {
  it('reads it from the logged MISCLASSIFICATION reasons (the log keeps no description), so a refit keeps a signal that carries risk', async () => {
    const { openStore } = await import('../src/store/sqlite.js');
    const { DecisionLog } = await import('../src/feedback/decision-log.js');
    const { encodeLogRows } = await import('../src/feedback/log-rows.js');
    const { FeedbackStore } = await import('../src/feedback/feedback.js');
    const { trainingDataFromStore, modelFromStore } = await import('../src/learn/from-store.js');
    const path = join(dir, 'mis-store', 'selectivity.db');
    openStore(path).close();
    const r = rng(31);
    const decls = randomDeclarations(1200, 31).filter((d) => d.netMass > 0).map((d, i) => ({ ...d, id: `MS${i}` }));
    // one in five descriptions fits its chapter poorly; those are non-compliant three times as often
    const flagged = decls.map(() => r() < 0.2);
    const version = 'bbbbbbbbbbbbbbbb';
    const log = new DecisionLog({ storePath: path });
    const mis: Reason = { code: 'MISCLASSIFICATION', declaredChapter: '85', fit: 0.01, bestHeading: '6109', contribution: 1.5 };
    await log.append(encodeLogRows(decls.map((d, i) => ({ id: d.id, channel: 'green', score: 0, controlGroup: false, rulesetVersion: version, reasons: flagged[i] ? [mis] : [] })), decls, version));
    await log.close();
    const db = openStore(path);
    try {
      new FeedbackStore(db).record(decls.map((d, i) => ({ declarationId: d.id, date: '2026-11-24', channel: 'red', inspected: true, outcome: r() < (flagged[i] ? 0.45 : 0.15) ? 'discrepancy' : 'no-discrepancy' })), 'test');
      const data = trainingDataFromStore(db);
      expect(data.misclassified.reduce((s, m) => s + m.reduce((a, v) => a + v, 0), 0)).toBe(flagged.filter(Boolean).length);
      const model = await modelFromStore(db, buildPeerTables([toBatch(decls).batch], ['hs6', 'hs4']), { minZ: 0 }, 'feedback in the store');
      // it used to be 0 for every refit from the store, so a retrain turned the live signal off
      expect(model.settings.misclassification.weight).toBeGreaterThan(0.5);
    } finally {
      db.close();
    }
  }, 60_000);
});
