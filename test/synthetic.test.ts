import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateCommand, type GenerateIO } from '../src/cli/generate.js';
import { isSelectivityError } from '../src/errors.js';
import { HS_CATALOGUE } from '../src/generate/hs-catalogue.js';
import {
  DEFAULT_FRAUD_RATES,
  SYNTHETIC_CSV_HEADER,
  SYNTHETIC_LABEL_COLUMNS,
  csvCell,
  generateDeclarations,
  plantedFrauds,
  writeSynthetic,
  type SyntheticOptions,
  type SyntheticRow,
} from '../src/generate/synthetic.js';
import { FIELDS, parseIsoDate, validateDeclaration } from '../src/model/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'synthetic-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cache = new Map<string, SyntheticRow[]>();
function rowsFor(options: SyntheticOptions): SyntheticRow[] {
  const key = JSON.stringify(options);
  let rows = cache.get(key);
  if (!rows) cache.set(key, (rows = [...generateDeclarations(options)]));
  return rows;
}

const BIG: SyntheticOptions = { rows: 60_000, seed: 3 };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Unit value of each row divided by the median unit value of the legitimate rows of its HS6 code. */
function unitValueRatios(rows: SyntheticRow[]): Map<SyntheticRow, number> {
  const byHs = new Map<string, number[]>();
  for (const r of rows) {
    if (r.fraud) continue;
    const list = byHs.get(r.declaration.hs) ?? [];
    list.push(r.declaration.customsValue / r.declaration.netMass);
    byHs.set(r.declaration.hs, list);
  }
  const med = new Map([...byHs].filter(([, l]) => l.length >= 5).map(([hs, l]) => [hs, median(l)]));
  const out = new Map<SyntheticRow, number>();
  for (const r of rows) {
    const m = med.get(r.declaration.hs);
    if (m !== undefined) out.set(r, r.declaration.customsValue / r.declaration.netMass / m);
  }
  return out;
}

/** Minimal RFC 4180 parser (quoted cells, doubled quotes, commas and newlines inside quotes). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

function expectOptionError(fn: () => unknown, field: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isSelectivityError(caught), `expected a SelectivityError for ${field}`).toBe(true);
  const err = caught as { code: string; details: { field?: string } };
  expect(err.code).toBe('SEL_ERR_OPTION_INVALID');
  expect(err.details.field).toBe(field);
}

async function expectCliError(argv: string[], field: string): Promise<void> {
  let caught: unknown;
  try {
    await generateCommand(argv, silentIO().io);
  } catch (e) {
    caught = e;
  }
  expect(isSelectivityError(caught), `expected a SelectivityError for ${argv.join(' ')}`).toBe(true);
  const err = caught as { code: string; details: { field?: string; expected?: string } };
  expect(err.code).toBe('SEL_ERR_OPTION_INVALID');
  expect(err.details.field).toBe(field);
  expect(typeof err.details.expected).toBe('string');
}

function silentIO(isTTY = false): { io: GenerateIO; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s), isTTY } },
    out,
    err,
  };
}

describe('HS catalogue', () => {
  it('holds about 400 distinct HS6 codes across many chapters, weighted to the big trade chapters', () => {
    expect(HS_CATALOGUE.length).toBeGreaterThanOrEqual(350);
    expect(HS_CATALOGUE.length).toBeLessThanOrEqual(450);
    expect(new Set(HS_CATALOGUE.map((c) => c.hs)).size).toBe(HS_CATALOGUE.length);
    expect(HS_CATALOGUE.filter((c) => !/^\d{6}$/.test(c.hs) || c.description.length < 4)).toEqual([]);
    const chapters = new Map<string, number>();
    for (const c of HS_CATALOGUE) chapters.set(c.hs.slice(0, 2), (chapters.get(c.hs.slice(0, 2)) ?? 0) + 1);
    expect(chapters.size).toBeGreaterThanOrEqual(80);
    for (const ch of ['39', '42', '61', '62', '64', '84', '85', '87', '90', '94', '95']) expect(chapters.get(ch)).toBeGreaterThanOrEqual(10);
    for (const ch of ['02', '08', '29', '30', '72', '73']) expect(chapters.get(ch)).toBeGreaterThanOrEqual(2);
  });
});

describe('generateDeclarations', () => {
  it('is deterministic for a seed and changes with the seed', () => {
    const a = [...generateDeclarations({ rows: 3000, seed: 7 })];
    const b = [...generateDeclarations({ rows: 3000, seed: 7 })];
    const c = [...generateDeclarations({ rows: 3000, seed: 8 })];
    expect(b).toEqual(a);
    expect(JSON.stringify(c)).not.toBe(JSON.stringify(a));
    // Most rows differ, not just a few.
    const same = a.filter((r, i) => JSON.stringify(r) === JSON.stringify(c[i])).length;
    expect(same).toBeLessThan(30);
    expect(plantedFrauds({ rows: 3000, seed: 7 })).toEqual(plantedFrauds({ rows: 3000, seed: 7 }));
    expect(plantedFrauds({ rows: 3000, seed: 7 })).not.toEqual(plantedFrauds({ rows: 3000, seed: 8 }));
  });

  it('uses the default seed 1 when none is given', () => {
    expect([...generateDeclarations({ rows: 200 })]).toEqual([...generateDeclarations({ rows: 200, seed: 1 })]);
  });

  it('produces declarations that all pass validateDeclaration, with unique ids and dates in range', () => {
    for (const options of [BIG, { rows: 2000, seed: 11, hsCodes: 3, importers: 4, days: 1, startDate: '2024-02-29' }]) {
      const rows = rowsFor(options);
      expect(rows.length).toBe(options.rows);
      const ids = new Set<string>();
      const start = parseIsoDate(options.startDate ?? '2025-01-01');
      const days = options.days ?? 365;
      let lastDay = -Infinity;
      const problems: string[] = [];
      for (const r of rows) {
        const d = r.declaration;
        const v = validateDeclaration(d);
        if (!v.ok) problems.push(`${d.id}: ${v.issues.map((i) => i.message).join('; ')}`);
        // Validation changes nothing: the generator already emits canonical values.
        else if (JSON.stringify(v.value) !== JSON.stringify(d)) problems.push(`${d.id}: normalised to ${JSON.stringify(v.value)}`);
        ids.add(d.id);
        const day = parseIsoDate(d.date);
        if (!(day >= start && day < start + days && day >= lastDay)) problems.push(`${d.id}: date ${d.date} out of range or order`);
        lastDay = day;
        if (r.fraud !== (r.fraudType === '' ? 0 : 1)) problems.push(`${d.id}: fraud ${r.fraud} with type '${r.fraudType}'`);
      }
      expect(problems.slice(0, 5)).toEqual([]);
      expect(ids.size).toBe(rows.length);
    }
    const dates = new Set(rowsFor(BIG).map((r) => r.declaration.date));
    expect(dates.size).toBe(365);
  });

  it('draws the requested number of HS codes and has a realistic structure', () => {
    const rows = rowsFor({ rows: 20_000, seed: 5, hsCodes: 25 });
    const codes = new Set(rows.map((r) => r.declaration.hs));
    expect(codes.size).toBeLessThanOrEqual(25);
    expect(codes.size).toBeGreaterThanOrEqual(22);
    const catalogue = new Set(HS_CATALOGUE.map((c) => c.hs));
    for (const hs of codes) expect(catalogue.has(hs)).toBe(true);

    const big = rowsFor(BIG);
    const count = (key: (r: SyntheticRow) => string | undefined) => {
      const m = new Map<string, number>();
      for (const r of big) {
        const k = key(r) ?? '';
        m.set(k, (m.get(k) ?? 0) + 1);
      }
      return m;
    };
    // CN is the most frequent origin; about 30 origins in all.
    const origins = count((r) => r.declaration.origin);
    const topOrigin = [...origins].sort((a, b) => b[1] - a[1])[0];
    expect(topOrigin[0]).toBe('CN');
    expect(origins.size).toBeGreaterThanOrEqual(25);
    // Importers: default count max(50, rows/40) and a skewed (Zipf-like) frequency.
    const importers = count((r) => r.declaration.importer);
    expect(importers.size).toBeLessThanOrEqual(1500);
    expect(importers.size).toBeGreaterThan(1000);
    const freq = [...importers.values()].sort((a, b) => b - a);
    expect(freq[0]).toBeGreaterThan(50 * freq[Math.floor(freq.length / 2)]);
    // Brokers fewer than importers; offices about 12; modes sea, air, road with sea first.
    const brokers = count((r) => r.declaration.declarant);
    expect(brokers.size).toBeLessThan(importers.size / 5);
    expect(count((r) => r.declaration.office).size).toBe(12);
    const modes = count((r) => r.declaration.transportMode);
    expect([...modes.keys()].sort()).toEqual(['1', '3', '4']);
    expect(modes.get('1')!).toBeGreaterThan(modes.get('4')!);
    // Departure is mostly the origin, otherwise a hub.
    const viaHub = big.filter((r) => r.declaration.departure !== r.declaration.origin);
    expect(viaHub.length / big.length).toBeGreaterThan(0.05);
    expect(viaHub.length / big.length).toBeLessThan(0.3);
    expect([...new Set(viaHub.map((r) => r.declaration.departure))].sort()).toEqual(['AE', 'HK', 'NL', 'SG']);
    // About 5 % of importers are AEO; a duty rate per chapter in 0–30 %.
    const aeoImporters = new Set(big.filter((r) => r.declaration.aeo).map((r) => r.declaration.importer));
    expect(aeoImporters.size / importers.size).toBeGreaterThan(0.02);
    expect(aeoImporters.size / importers.size).toBeLessThan(0.09);
    const taxByChapter = new Map<string, Set<number>>();
    for (const r of big) {
      const ch = r.declaration.hs.slice(0, 2);
      if (!taxByChapter.has(ch)) taxByChapter.set(ch, new Set());
      taxByChapter.get(ch)!.add(r.declaration.taxRate!);
    }
    const allRates = [...taxByChapter.values()].flatMap((set) => [...set]);
    expect(Math.min(...allRates)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...allRates)).toBeLessThanOrEqual(30);
    expect(new Set(allRates).size).toBeGreaterThan(4);
    expect([...taxByChapter.values()].filter((set) => set.size !== 1)).toEqual([]);
    // Mass per item is stable within a code.
    const perItem = new Map<string, number[]>();
    for (const r of big) {
      if (r.declaration.quantity! < 20) continue;
      const list = perItem.get(r.declaration.hs) ?? [];
      list.push(r.declaration.netMass / r.declaration.quantity!);
      perItem.set(r.declaration.hs, list);
    }
    let stable = 0;
    let total = 0;
    for (const list of perItem.values()) {
      const m = median(list);
      for (const x of list) {
        total++;
        if (Math.abs(x / m - 1) < 0.25) stable++;
      }
    }
    expect(stable / total).toBeGreaterThan(0.95);
    // Legitimate unit values spread widely across codes (0.5 to 2000 per kg medians).
    const unitValues = new Map<string, number[]>();
    for (const r of big) {
      if (r.fraud) continue;
      const list = unitValues.get(r.declaration.hs) ?? [];
      list.push(r.declaration.customsValue / r.declaration.netMass);
      unitValues.set(r.declaration.hs, list);
    }
    const medians = [...unitValues.values()].map(median);
    expect(Math.max(...medians) / Math.min(...medians)).toBeGreaterThan(100);
    // Descriptions vary: some lower-cased, some with a brand.
    expect(big.some((r) => r.declaration.description!.includes(', brand '))).toBe(true);
    expect(big.some((r) => r.declaration.description === r.declaration.description!.toLowerCase() && /[a-z]/.test(r.declaration.description!))).toBe(true);
  });

  it('plants each fraud type at roughly its configured share', () => {
    const rows = rowsFor(BIG);
    const share = (t: string) => rows.filter((r) => r.fraudType === t).length / rows.length;
    expect(share('undervaluation')).toBeGreaterThan(DEFAULT_FRAUD_RATES.undervaluation * 0.8);
    expect(share('undervaluation')).toBeLessThan(DEFAULT_FRAUD_RATES.undervaluation * 1.2);
    expect(share('risky_pair')).toBeGreaterThan(DEFAULT_FRAUD_RATES.riskyPair * 0.7);
    expect(share('risky_pair')).toBeLessThan(DEFAULT_FRAUD_RATES.riskyPair * 1.3);
    expect(share('suspicious_trader')).toBeGreaterThan(DEFAULT_FRAUD_RATES.trader * 0.6);
    expect(share('suspicious_trader')).toBeLessThan(DEFAULT_FRAUD_RATES.trader * 1.4);

    const custom = rowsFor({ rows: 30_000, seed: 9, fraudRate: { undervaluation: 0.1, riskyPair: 0, trader: 0 } });
    const under = custom.filter((r) => r.fraudType === 'undervaluation').length / custom.length;
    expect(under).toBeGreaterThan(0.085);
    expect(under).toBeLessThan(0.115);
    expect(custom.every((r) => r.fraudType === '' || r.fraudType === 'undervaluation')).toBe(true);
    expect(plantedFrauds({ rows: 30_000, seed: 9, fraudRate: { riskyPair: 0, trader: 0 } })).toEqual({ riskyPairs: [], suspiciousImporters: [] });

    const none = rowsFor({ rows: 5000, seed: 9, fraudRate: { undervaluation: 0, riskyPair: 0, trader: 0 } });
    expect(none.every((r) => r.fraud === 0)).toBe(true);
  });

  it('undervalues planted rows well below their HS6 peers, and leaves risky-pair values normal', () => {
    const rows = rowsFor(BIG);
    const ratios = unitValueRatios(rows);
    const ofType = (t: string) => rows.filter((r) => r.fraudType === t && ratios.has(r)).map((r) => ratios.get(r)!);
    expect(median(ofType(''))).toBeGreaterThan(0.9);
    expect(median(ofType(''))).toBeLessThan(1.1);
    expect(median(ofType('undervaluation'))).toBeLessThan(0.6);
    expect(median(ofType('suspicious_trader'))).toBeLessThan(0.9);
    expect(median(ofType('suspicious_trader'))).toBeGreaterThan(0.5);
    expect(median(ofType('risky_pair'))).toBeGreaterThan(0.75);
  });

  it('concentrates risky-pair frauds in the planted (HS4, origin) pairs', () => {
    const planted = plantedFrauds(BIG);
    expect(planted.riskyPairs.length).toBe(5);
    const drawn = new Set(rowsFor(BIG).map((r) => `${r.declaration.hs.slice(0, 4)}|${r.declaration.origin}`));
    for (const p of planted.riskyPairs) {
      expect(p.hs4).toMatch(/^\d{4}$/);
      expect(drawn.has(`${p.hs4}|${p.origin}`)).toBe(true);
    }
    const keys = new Set(planted.riskyPairs.map((p) => `${p.hs4}|${p.origin}`));
    const rows = rowsFor(BIG);
    const inPair = rows.filter((r) => keys.has(`${r.declaration.hs.slice(0, 4)}|${r.declaration.origin}`));
    const outside = rows.filter((r) => !keys.has(`${r.declaration.hs.slice(0, 4)}|${r.declaration.origin}`));
    expect(inPair.length).toBeGreaterThan(500);
    const rate = (rs: SyntheticRow[]) => rs.filter((r) => r.fraud).length / rs.length;
    expect(inPair.filter((r) => r.fraudType === 'risky_pair').length / inPair.length).toBeGreaterThan(0.2);
    expect(rate(inPair)).toBeGreaterThan(3 * rate(outside));
    expect(outside.some((r) => r.fraudType === 'risky_pair')).toBe(false);
  });

  it('makes the planted suspicious importers defraud at a high rate, and AEO importers rarely', () => {
    const planted = plantedFrauds(BIG);
    const rows = rowsFor(BIG);
    const importers = new Set(rows.map((r) => r.declaration.importer)).size;
    expect(planted.suspiciousImporters.length).toBeGreaterThanOrEqual(3);
    expect(planted.suspiciousImporters.length).toBeLessThanOrEqual(Math.max(3, Math.round(0.012 * 1500)));
    expect(planted.suspiciousImporters.length).toBeLessThan(importers / 20);
    const suspicious = new Set(planted.suspiciousImporters);
    const theirs = rows.filter((r) => suspicious.has(r.declaration.importer));
    const others = rows.filter((r) => !suspicious.has(r.declaration.importer));
    expect(theirs.length).toBeGreaterThan(500);
    expect(theirs.filter((r) => r.fraudType === 'suspicious_trader').length / theirs.length).toBeGreaterThan(0.25);
    expect(theirs.filter((r) => r.fraud).length / theirs.length).toBeGreaterThan(4 * (others.filter((r) => r.fraud).length / others.length));
    expect(others.some((r) => r.fraudType === 'suspicious_trader')).toBe(false);
    expect(theirs.some((r) => r.declaration.aeo)).toBe(false);

    const aeo = rows.filter((r) => r.declaration.aeo);
    const nonAeo = rows.filter((r) => !r.declaration.aeo);
    expect(aeo.length).toBeGreaterThan(300);
    const rate = (rs: SyntheticRow[]) => rs.filter((r) => r.fraud).length / rs.length;
    expect(rate(aeo)).toBeLessThan(0.5 * rate(nonAeo));
  });

  it('rejects invalid options with SEL_ERR_OPTION_INVALID, at the call', () => {
    expectOptionError(() => generateDeclarations({ rows: 0 }), 'rows');
    expectOptionError(() => generateDeclarations({ rows: 1.5 }), 'rows');
    expectOptionError(() => generateDeclarations({ rows: '10' as unknown as number }), 'rows');
    expectOptionError(() => generateDeclarations({ rows: 10, seed: 0.5 }), 'seed');
    expectOptionError(() => generateDeclarations({ rows: 10, hsCodes: HS_CATALOGUE.length + 1 }), 'hsCodes');
    expectOptionError(() => generateDeclarations({ rows: 10, importers: 0 }), 'importers');
    expectOptionError(() => generateDeclarations({ rows: 10, startDate: '2025-02-30' }), 'startDate');
    expectOptionError(() => generateDeclarations({ rows: 10, days: 0 }), 'days');
    expectOptionError(() => generateDeclarations({ rows: 10, fraudRate: { undervaluation: 0.9 } }), 'fraudRate.undervaluation');
    expectOptionError(() => plantedFrauds({ rows: 10, fraudRate: { trader: -0.1 } }), 'fraudRate.trader');
    expect(() => generateDeclarations({ rows: 10, hsCodes: HS_CATALOGUE.length })).not.toThrow();
  });
});

describe('writeSynthetic', () => {
  it('writes CSV that parses back to the generated rows, quoting per RFC 4180', async () => {
    const options: SyntheticOptions = { rows: 5000, seed: 21 };
    const path = join(dir, 'a.csv');
    const progress: number[] = [];
    const summary = await writeSynthetic(path, { ...options, onProgress: (n) => progress.push(n) });
    const rows = rowsFor(options);
    expect(summary.rows).toBe(5000);
    expect(summary.frauds).toBe(rows.filter((r) => r.fraud).length);
    for (const t of ['undervaluation', 'risky_pair', 'suspicious_trader']) {
      expect(summary.byType[t]).toBe(rows.filter((r) => r.fraudType === t).length);
    }
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(5000);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThan(progress[i - 1]);

    const text = readFileSync(path, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const table = parseCsv(text);
    const header = table[0];
    expect(header).toEqual([...FIELDS.map((f) => f.name), 'fraud', 'fraud_type']);
    expect(SYNTHETIC_CSV_HEADER).toBe(header.join(','));
    expect(table.length).toBe(5001);
    expect(/"[^"\n]*,[^"\n]*"/.test(text)).toBe(true); // descriptions with commas are quoted
    const mismatches: string[] = [];
    for (let i = 0; i < rows.length; i++) {
      const cells = table[i + 1];
      if (cells.length !== header.length) mismatches.push(`row ${i + 1}: ${cells.length} cells`);
      const d = rows[i].declaration as unknown as Record<string, unknown>;
      FIELDS.forEach((f, j) => {
        const v = d[f.name];
        const ok = v === undefined ? cells[j] === '' : typeof v === 'number' ? Number(cells[j]) === v : cells[j] === String(v);
        if (!ok) mismatches.push(`row ${i + 1} ${f.name}: ${JSON.stringify(cells[j])} for ${JSON.stringify(v)}`);
      });
      if (cells[header.length - 2] !== String(rows[i].fraud) || cells[header.length - 1] !== rows[i].fraudType) {
        mismatches.push(`row ${i + 1}: labels ${cells.slice(-2).join(',')}`);
      }
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
    expect(rows.some((r) => r.declaration.declarant === undefined)).toBe(true); // empty cells occur too
    // Money in cents, mass in grams.
    for (const r of rows.slice(0, 500)) {
      expect(Math.abs(r.declaration.customsValue * 100 - Math.round(r.declaration.customsValue * 100))).toBeLessThan(1e-6);
      expect(Math.abs(r.declaration.netMass * 1000 - Math.round(r.declaration.netMass * 1000))).toBeLessThan(1e-6);
    }
  });

  it('quotes cells holding commas, quotes or newlines', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a, b')).toBe('"a, b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell(undefined)).toBe('');
    expect(csvCell(12.5)).toBe('12.5');
    expect(csvCell(false)).toBe('false');
    expect(parseCsv(`x,${csvCell('a "b", c\nd')},y\n`)).toEqual([['x', 'a "b", c\nd', 'y']]);
  });

  it('writes byte-identical files for the same options and different ones for another seed', async () => {
    const a = join(dir, 'same1.csv');
    const b = join(dir, 'same2.csv');
    const c = join(dir, 'other.csv');
    await writeSynthetic(a, { rows: 10_000, seed: 4 });
    await writeSynthetic(b, { rows: 10_000, seed: 4 });
    await writeSynthetic(c, { rows: 10_000, seed: 5 });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false);
  });

  it('writes NDJSON: the declaration fields plus the label columns', async () => {
    const options: SyntheticOptions = { rows: 3000, seed: 21 };
    const path = join(dir, 'a.ndjson');
    const summary = await writeSynthetic(path, options); // format from the extension
    expect(summary.rows).toBe(3000);
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(3000);
    expect(SYNTHETIC_LABEL_COLUMNS).toEqual(['fraud', 'fraud_type']);
    const rows = rowsFor(options);
    const mismatches: number[] = [];
    lines.forEach((line, i) => {
      const obj = JSON.parse(line) as Record<string, unknown>;
      const { fraud, fraud_type, ...decl } = obj;
      const keys = Object.keys(obj);
      const expectedKeys = [...FIELDS.map((f) => f.name).filter((k) => k in rows[i].declaration), ...SYNTHETIC_LABEL_COLUMNS];
      if (
        fraud !== rows[i].fraud ||
        fraud_type !== rows[i].fraudType ||
        JSON.stringify(decl) !== JSON.stringify(rows[i].declaration) ||
        keys.join() !== expectedKeys.join()
      ) {
        mismatches.push(i);
      }
      if (i < 50) {
        // A strict reader must be told about the labels; without them the rest validates.
        expect(validateDeclaration(obj).ok).toBe(false);
        expect(validateDeclaration(obj, { rejectUnknown: false }).ok).toBe(true);
        expect(validateDeclaration(decl).ok).toBe(true);
      }
    });
    expect(mismatches.slice(0, 5)).toEqual([]);
    // An explicit format wins over the extension.
    await writeSynthetic(join(dir, 'b.ndjson'), { ...options, format: 'csv' });
    expect(readFileSync(join(dir, 'b.ndjson'), 'utf8').startsWith('id,date,')).toBe(true);
  });

  it('rejects a bad format and reports a missing directory', async () => {
    await expect(writeSynthetic(join(dir, 'x.csv'), { rows: 10, format: 'xml' as 'csv' })).rejects.toMatchObject({
      code: 'SEL_ERR_OPTION_INVALID',
      details: { field: 'format' },
    });
    await expect(writeSynthetic(join(dir, 'missing', 'x.csv'), { rows: 10 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'out' } });
  });
});

describe('selectivity generate', () => {
  it('writes the file, prints a one-line summary and returns 0', async () => {
    const out = join(dir, 'cli.csv');
    const { io, out: stdout, err } = silentIO();
    const code = await generateCommand(['--rows', '2500', '--seed', '21', '--hs-codes', '50', '--out', out], io);
    expect(code).toBe(0);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(2501);
    expect(new Set(lines.slice(1).map((l) => l.split(',')[6])).size).toBeLessThanOrEqual(50);
    expect(stdout.join('')).toMatch(/^generated 2500 declarations, \d+ frauds \(undervaluation \d+, risky_pair \d+, suspicious_trader \d+\) to .*cli\.csv \(csv\) in [\d.]+ s\n$/);
    expect(err.join('')).toBe(''); // no progress when stderr is not a TTY

    // Same as the library call with the same options.
    const lib = join(dir, 'lib.csv');
    await writeSynthetic(lib, { rows: 2500, seed: 21, hsCodes: 50 });
    expect(readFileSync(out).equals(readFileSync(lib))).toBe(true);
  });

  it('shows progress on a TTY and honours --format and the fraud-rate options', async () => {
    const out = join(dir, 'cli.out');
    const { io, err } = silentIO(true);
    await generateCommand(['--rows', '10000', '--format', 'ndjson', '--trader-rate', '0', '--risky-pair-rate', '0', '-o', out], io);
    expect(err.join('')).toContain('10,000 / 10,000 rows');
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(10_000);
    const types = new Set(lines.map((l) => (JSON.parse(l) as { fraud_type: string }).fraud_type));
    expect([...types].sort()).toEqual(['', 'undervaluation']);
  });

  it('prints help', async () => {
    const { io, out } = silentIO();
    expect(await generateCommand(['--help'], io)).toBe(0);
    expect(out.join('')).toContain('Usage: selectivity generate --rows N --out FILE');
  });

  it('rejects bad options with SEL_ERR_OPTION_INVALID naming the option', async () => {
    const out = join(dir, 'bad.csv');
    await expectCliError(['--out', out], 'rows');
    await expectCliError(['--rows', '0', '--out', out], 'rows');
    await expectCliError(['--rows', '-5', '--out', out], 'rows');
    await expectCliError(['--rows', 'abc', '--out', out], 'rows');
    await expectCliError(['--rows', '1.5', '--out', out], 'rows');
    await expectCliError(['--rows', '10', '--seed', 'x', '--out', out], 'seed');
    await expectCliError(['--rows', '10', '--hs-codes', String(HS_CATALOGUE.length + 1), '--out', out], 'hs-codes');
    await expectCliError(['--rows', '10', '--format', 'xml', '--out', out], 'format');
    await expectCliError(['--rows', '10', '--start-date', '2025-13-01', '--out', out], 'start-date');
    // a span past 9999-12-31 (the file held +010000-01-01, which no reader takes); up to it is fine
    await expectCliError(['--rows', '10', '--start-date', '9999-12-01', '--out', out], 'start-date');
    await expectCliError(['--rows', '10', '--start-date', '9999-12-01', '--days', '32', '--out', out], 'days');
    expect(await generateCommand(['--rows', '40', '--start-date', '9999-12-01', '--days', '31', '--out', out], silentIO().io)).toBe(0);
    expect(readFileSync(out, 'utf8').split('\n').slice(1, -1).every((l) => /,9999-12-(0[1-9]|[12]\d|3[01]),/.test(l))).toBe(true);
    await expectCliError(['--rows', '10', '--undervaluation-rate', '0.7', '--out', out], 'undervaluation-rate');
    await expectCliError(['--rows', '10'], 'out');
    await expectCliError(['--rows', '10', '--out', join(dir, 'no-such-dir', 'x.csv')], 'out');
    await expectCliError(['--rows', '10', '--out', dir], 'out');
    // a directory that exists but takes no file (Linux's /proc): the open fails, and the option is named
    if (process.platform === 'linux') await expectCliError(['--rows', '10', '--out', '/proc/selectivity-test.csv'], 'out');
    await expectCliError(['--rows', '10', '--out', out, '--bogus', '1'], 'bogus');
    await expectCliError(['--rows', '10', '--out', out, 'extra'], 'arguments');
    await expectCliError(['--rows'], 'rows');
  });
});
