/**
 * Seeded synthetic customs declarations with planted, labelled frauds.
 *
 * The generator builds a small "world" from the options (HS codes with price and
 * mass profiles, origin countries, importers, brokers, sellers, offices) and then
 * draws declarations from it. Everything comes from one seed through a
 * xoshiro128** generator (never Math.random), so the same options always give the
 * same rows and a byte-identical file.
 *
 * Legitimate structure:
 * - each drawn HS6 code has a base unit price (value per kg): log-normal around a
 *   chapter median (overall median about 15–20/kg, clamped to 0.5–2000/kg), a
 *   within-code log-sd of 0.2–0.5, a log-normal net mass and a fixed mass per item
 *   (quantity = mass / unit mass, with 5 % noise); popularity is log-normal;
 * - 30 origin countries (ISO alpha-2, CN about 30 % of weight) each with a price
 *   factor; every code is sourced from a random subset of them;
 * - importers follow a Zipf (s = 1) frequency and mostly import from a portfolio of
 *   codes concentrated in a home chapter; about 5 % are AEO; brokers number about
 *   importers / 10 (3 % of importers file themselves, leaving declarant empty);
 *   sellers are per origin country; 12 offices OF01–OF12 (OF01–06 sea, OF07–09 air,
 *   OF10–12 road) with a home office per importer; transport mode '1' sea, '4' air
 *   (likelier for dear goods), '3' road; departure is the origin 85 % of the time,
 *   else a hub (HK, SG, AE, NL); duty rate per HS chapter (0–30 %);
 * - 1 % of legitimate rows get a heavy-tailed price deviation (genuine outliers).
 *
 * Planted frauds (fraud = 1), each rate a share of all rows (see DEFAULT_FRAUD_RATES):
 * - `undervaluation`: customs value times a factor in [0.15, 0.5];
 * - `risky_pair`: 5 (HS4, origin) pairs (at most two per origin, one per HS4)
 *   where a large share of declarations (aimed at 35 %, in practice 30–60 %) are
 *   fraudulent misdescriptions; values look normal (a quarter carry a vague
 *   description such as "parts");
 * - `suspicious_trader`: 1 % of importers (at least 3, never AEO) whose declarations
 *   are fraudulent about 40 % of the time (30–50 %), mildly undervalued (factor
 *   0.6–0.85).
 * AEO importers commit each kind of fraud five times less often. The in-group rates
 * are tuned from the expected traffic of the chosen pairs and importers so that the
 * overall shares match the configured rates.
 */
import { errors } from '../errors.js';
import { AtomicOutput } from '../store/atomic-output.js';
import { FIELDS, formatIsoDate, parseIsoDate, type Declaration } from '../model/schema.js';
import { HS_CATALOGUE } from './hs-catalogue.js';

export interface SyntheticOptions {
  /** Number of declarations to generate (a positive integer). */
  rows: number;
  /** Seed of the pseudo-random generator (a safe integer, default 1). */
  seed?: number;
  /** How many distinct HS6 codes to draw from the catalogue (default 200, at most HS_CATALOGUE.length). */
  hsCodes?: number;
  /** Number of importers (default max(50, round(rows / 40))). */
  importers?: number;
  /** First acceptance date, YYYY-MM-DD (default '2025-01-01'). */
  startDate?: string;
  /** Number of days the dates spread over (default 365); dates never decrease with the id. */
  days?: number;
  /** Share of all rows planted as each kind of fraud; see DEFAULT_FRAUD_RATES. Each in [0, 0.5]. */
  fraudRate?: { undervaluation?: number; riskyPair?: number; trader?: number };
}

export type SyntheticFraudType = '' | 'undervaluation' | 'risky_pair' | 'suspicious_trader';

export interface SyntheticRow {
  declaration: Declaration;
  fraud: 0 | 1;
  fraudType: SyntheticFraudType;
}

export interface Planted {
  riskyPairs: { hs4: string; origin: string }[];
  suspiciousImporters: string[];
}

/** Label columns the generator adds after the schema fields (readers pass them through). */
export const SYNTHETIC_LABEL_COLUMNS = ['fraud', 'fraud_type'] as const;

/** Default share of all rows planted as each kind of fraud (about 7 % frauds in all). */
export const DEFAULT_FRAUD_RATES = { undervaluation: 0.03, riskyPair: 0.02, trader: 0.02 } as const;

/** Generator parameters, exported for documentation and tests. */
export const SYNTHETIC_PARAMETERS = {
  defaultSeed: 1,
  defaultHsCodes: 200,
  minImporters: 50,
  rowsPerImporter: 40,
  defaultStartDate: '2025-01-01',
  defaultDays: 365,
  riskyPairCount: 5,
  riskyPairFraudShare: 0.35,
  suspiciousImporterShare: 0.01,
  minSuspiciousImporters: 3,
  suspiciousTraderFraudShare: 0.4,
  undervaluationFactor: [0.15, 0.5],
  traderUndervaluationFactor: [0.6, 0.85],
  aeoShare: 0.05,
  aeoFraudMultiplier: 0.2,
  portfolioShare: 0.8,
  offices: 12,
  hubs: ['HK', 'SG', 'AE', 'NL'],
  maxFraudRate: 0.5,
} as const;

export const FRAUD_TYPES = ['undervaluation', 'risky_pair', 'suspicious_trader'] as const;

// ---------------------------------------------------------------------------
// Pseudo-random numbers: xoshiro128** seeded through murmur3's fmix32.

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = NaN;

  constructor(seed: number, stream: number) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let s = fmix32(lo ^ Math.imul(stream + 1, 0x9e3779b9));
    s = fmix32(s ^ hi ^ 0x6a09e667);
    this.a = s;
    this.b = fmix32(s + 0x9e3779b9);
    this.c = fmix32(this.b + 0x9e3779b9);
    this.d = fmix32(this.c + 0x9e3779b9);
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  u32(): number {
    const b = this.b;
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    this.c ^= this.a;
    this.d ^= b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller, the second value cached). */
  normal(): number {
    const s = this.spare;
    if (s === s) {
      this.spare = NaN;
      return s;
    }
    const u1 = 1 - this.next();
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Index i with cum[i-1] <= u * total < cum[i] (cum is an inclusive prefix sum). */
function sampleCum(cum: Float64Array, from: number, length: number, u: number): number {
  const target = u * cum[from + length - 1];
  let lo = 0;
  let hi = length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cum[from + mid] > target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Walker/Vose alias table: O(1) draws from a discrete distribution. */
interface Alias {
  prob: Float64Array;
  alias: Int32Array;
}

function aliasTable(weights: ArrayLike<number>): Alias {
  const n = weights.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += weights[i];
  const scaled = new Float64Array(n);
  for (let i = 0; i < n; i++) scaled[i] = (weights[i] * n) / total;
  const prob = new Float64Array(n);
  const alias = new Int32Array(n);
  const small: number[] = [];
  const large: number[] = [];
  for (let i = n - 1; i >= 0; i--) (scaled[i] < 1 ? small : large).push(i);
  while (small.length > 0 && large.length > 0) {
    const s = small.pop()!;
    const l = large.pop()!;
    prob[s] = scaled[s];
    alias[s] = l;
    scaled[l] = scaled[l] + scaled[s] - 1;
    (scaled[l] < 1 ? small : large).push(l);
  }
  for (const i of large) prob[i] = 1;
  for (const i of small) prob[i] = 1;
  return { prob, alias };
}

/** One draw from an alias table with a single uniform u in [0, 1). */
function sampleAlias(t: Alias, u: number): number {
  const x = u * t.prob.length;
  const i = Math.floor(x);
  return x - i < t.prob[i] ? i : t.alias[i];
}

function prefixSum(weights: ArrayLike<number>): Float64Array {
  const out = new Float64Array(weights.length);
  let s = 0;
  for (let i = 0; i < weights.length; i++) out[i] = s += weights[i];
  return out;
}

// ---------------------------------------------------------------------------
// Static tables.

/** Origin countries: weight (share of trade) and price factor. */
const ORIGINS: readonly [string, number, number][] = [
  ['CN', 30, 0.85], ['US', 7, 1.25], ['VN', 6, 0.8], ['DE', 5, 1.3], ['JP', 5, 1.3],
  ['IN', 4, 0.8], ['IT', 3, 1.35], ['TW', 3, 1.05], ['TH', 3, 0.9], ['MY', 2.5, 0.95],
  ['ID', 2.5, 0.85], ['MX', 2, 0.9], ['FR', 2, 1.3], ['KR', 2, 1.1], ['GB', 1.8, 1.25],
  ['TR', 1.8, 0.9], ['BD', 1.8, 0.7], ['PK', 1.2, 0.7], ['BR', 1.2, 0.95], ['CH', 1, 1.6],
  ['ES', 1, 1.15], ['NL', 1, 1.2], ['PL', 1, 1.0], ['CA', 1, 1.15], ['AU', 0.8, 1.1],
  ['PH', 0.8, 0.85], ['KH', 0.8, 0.7], ['HK', 0.6, 1.0], ['SG', 0.6, 1.1], ['AE', 0.5, 1.0],
];
const HUBS = SYNTHETIC_PARAMETERS.hubs;

/** Offices by transport mode; weights favour the first office of each mode. */
const SEA_OFFICES = ['OF01', 'OF02', 'OF03', 'OF04', 'OF05', 'OF06'];
const AIR_OFFICES = ['OF07', 'OF08', 'OF09'];
const ROAD_OFFICES = ['OF10', 'OF11', 'OF12'];
const MODE_OFFICES = [SEA_OFFICES, AIR_OFFICES, ROAD_OFFICES];
const MODE_CODES = ['1', '4', '3'];
const OFFICE_CUMS = MODE_OFFICES.map((list) => prefixSum(list.map((_, i) => 1 / (i + 1))));

const TAX_RATES = [0, 0, 3, 5, 5, 6.5, 8, 8, 8, 10, 12, 13, 16, 20, 30];
const BRANDS = ['Acme', 'Norvik', 'Zentra', 'Kolba', 'Orion', 'Vesta', 'Miraflex', 'Tekno', 'Sunlit', 'Polaris', 'Kaito', 'Brightway'];
const VAGUE = ['parts', 'accessories', 'general merchandise', 'samples', 'spare parts', 'household goods', 'goods as per invoice'];
const DOMINANT_CHAPTERS = new Set([39, 42, 61, 62, 64, 84, 85, 87, 90, 94, 95]);

/** Median value per kg by HS chapter, before per-code noise. */
function chapterMedianPrice(ch: number): number {
  if (ch <= 5) return 6;
  if (ch <= 14) return 2.5;
  if (ch === 15) return 2;
  if (ch === 22) return 3;
  if (ch === 24) return 20;
  if (ch <= 24) return 5;
  if (ch <= 27) return 0.6;
  if (ch <= 29) return 4;
  if (ch === 30) return 80;
  if (ch === 31) return 0.6;
  if (ch === 33) return 20;
  if (ch <= 38) return 6;
  if (ch === 39) return 4;
  if (ch === 40) return 5;
  if (ch <= 43) return 40;
  if (ch <= 46) return 1.5;
  if (ch === 49) return 10;
  if (ch <= 48) return 2;
  if (ch === 50) return 60;
  if (ch <= 60) return 8;
  if (ch <= 62) return 30;
  if (ch === 63) return 8;
  if (ch <= 67) return 30;
  if (ch <= 70) return 3;
  if (ch === 71) return 800;
  if (ch <= 73) return 1.5;
  if (ch === 75) return 18;
  if (ch === 80) return 25;
  if (ch === 81) return 40;
  if (ch === 82) return 20;
  if (ch <= 83) return 9;
  if (ch === 84) return 35;
  if (ch === 85) return 50;
  if (ch === 86) return 8;
  if (ch === 87) return 12;
  if (ch === 88) return 300;
  if (ch === 89) return 10;
  if (ch === 90) return 150;
  if (ch === 91) return 300;
  if (ch === 92) return 40;
  if (ch === 93) return 60;
  if (ch === 94) return 8;
  if (ch === 95) return 15;
  if (ch === 96) return 12;
  return 500;
}

// ---------------------------------------------------------------------------
// Options.

interface Normalized {
  rows: number;
  seed: number;
  hsCodes: number;
  importers: number;
  startDate: string;
  days: number;
  rates: { undervaluation: number; riskyPair: number; trader: number };
}

function invalid(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_OPTION_INVALID(`synthetic generator option ${field}: expected ${expected}, got ${JSON.stringify(got) ?? String(got)}`, {
    field,
    expected,
    got,
  });
}

function intOption(field: string, v: unknown, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    invalid(field, min === 1 && max >= 1e9 ? 'a positive integer' : `an integer in [${min}, ${max}]`, v);
  }
  return v;
}

function rateOption(field: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > SYNTHETIC_PARAMETERS.maxFraudRate) {
    invalid(field, `a number in [0, ${SYNTHETIC_PARAMETERS.maxFraudRate}]`, v);
  }
  return v;
}

function normalize(options: SyntheticOptions): Normalized {
  if (options === null || typeof options !== 'object') invalid('options', 'an object', options);
  const rows = intOption('rows', options.rows, NaN, 1, 1e12);
  if (Number.isNaN(rows)) invalid('rows', 'a positive integer', options.rows);
  const seed = options.seed === undefined ? SYNTHETIC_PARAMETERS.defaultSeed : options.seed;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) invalid('seed', 'an integer', options.seed);
  const hsCodes = intOption('hsCodes', options.hsCodes, Math.min(SYNTHETIC_PARAMETERS.defaultHsCodes, HS_CATALOGUE.length), 1, HS_CATALOGUE.length);
  const importers = intOption(
    'importers',
    options.importers,
    Math.max(SYNTHETIC_PARAMETERS.minImporters, Math.round(rows / SYNTHETIC_PARAMETERS.rowsPerImporter)),
    1,
    1e9,
  );
  const startDate = options.startDate === undefined ? SYNTHETIC_PARAMETERS.defaultStartDate : options.startDate;
  if (typeof startDate !== 'string' || Number.isNaN(parseIsoDate(startDate))) invalid('startDate', 'a date YYYY-MM-DD', options.startDate);
  const days = intOption('days', options.days, SYNTHETIC_PARAMETERS.defaultDays, 1, 36_500);
  const fr = options.fraudRate ?? {};
  if (fr === null || typeof fr !== 'object') invalid('fraudRate', 'an object', options.fraudRate);
  const rates = {
    undervaluation: rateOption('fraudRate.undervaluation', fr.undervaluation, DEFAULT_FRAUD_RATES.undervaluation),
    riskyPair: rateOption('fraudRate.riskyPair', fr.riskyPair, DEFAULT_FRAUD_RATES.riskyPair),
    trader: rateOption('fraudRate.trader', fr.trader, DEFAULT_FRAUD_RATES.trader),
  };
  return { rows, seed, hsCodes, importers, startDate, days, rates };
}

// ---------------------------------------------------------------------------
// The world: everything fixed before the first row is drawn.

interface Code {
  hs: string;
  hs4: string;
  chapter: number;
  description: string;
  shortDescription: string;
  lowerDescription: string;
  brandPrefix: string;
  logPrice: number;
  logSd: number;
  muMass: number;
  sdMass: number;
  unitMass: number;
  taxRate: number;
  /** Probability of air transport. */
  pAir: number;
}

interface World {
  opts: Normalized;
  codes: Code[];
  /** Per code, cumulative origin weights (codes.length × ORIGINS.length). */
  originCum: Float64Array;
  originLogFactor: Float64Array;
  sellerPool: Int32Array;
  importerIds: string[];
  importerAlias: Alias;
  codeAlias: Alias;
  importerLogFactor: Float64Array;
  aeo: Uint8Array;
  broker: Int32Array;
  brokerIds: string[];
  brokerCum: Float64Array;
  homeOffice: Int32Array; // importers × 3 modes
  portStart: Int32Array;
  portLen: Int32Array;
  portCodes: Int32Array;
  suspicious: Uint8Array;
  riskyMask: Uint8Array;
  pairRate: number;
  traderRate: number;
  underRate: number;
  planted: Planted;
}

const STREAM_WORLD = 0;
const STREAM_ROWS = 1;

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function shorten(description: string): string {
  const semi = description.indexOf(';');
  if (semi > 0) return description.slice(0, semi);
  const words = description.split(' ');
  return words.length > 5 ? words.slice(0, 5).join(' ') : description;
}

/**
 * Picks k of the eligible indices: at random among those whose share is within a
 * factor 2 of the target, then the nearest to it; `accept` can refuse a candidate
 * given those already chosen (only while enough others remain).
 */
function pickNear(
  rng: Rng,
  shares: ArrayLike<number>,
  eligible: number[],
  k: number,
  target: number,
  accept: (i: number, chosen: number[]) => boolean = () => true,
): number[] {
  const near = eligible.filter((i) => shares[i] >= target / 2 && shares[i] <= target * 2);
  for (let j = near.length - 1; j > 0; j--) {
    const r = rng.int(j + 1);
    [near[j], near[r]] = [near[r], near[j]];
  }
  const rest = eligible
    .filter((i) => shares[i] > 0 && !(shares[i] >= target / 2 && shares[i] <= target * 2))
    .sort((x, y) => Math.abs(Math.log(shares[x] / target)) - Math.abs(Math.log(shares[y] / target)) || x - y);
  const ordered = [...near, ...rest];
  const chosen: number[] = [];
  const taken = new Set<number>();
  for (const strict of [true, false]) {
    for (const i of ordered) {
      if (chosen.length >= k) break;
      if (taken.has(i) || (strict && !accept(i, chosen))) continue;
      chosen.push(i);
      taken.add(i);
    }
  }
  return chosen;
}

function buildWorld(opts: Normalized): World {
  const rng = new Rng(opts.seed, STREAM_WORLD);
  const P = SYNTHETIC_PARAMETERS;
  const nO = ORIGINS.length;

  // Duty rate per chapter.
  const chapterTax = new Float64Array(100);
  for (let ch = 0; ch < 100; ch++) chapterTax[ch] = TAX_RATES[rng.int(TAX_RATES.length)];

  // HS codes: a seeded sample of the catalogue, kept in code order.
  const idx = HS_CATALOGUE.map((_, i) => i);
  for (let j = 0; j < opts.hsCodes; j++) {
    const r = j + rng.int(idx.length - j);
    [idx[j], idx[r]] = [idx[r], idx[j]];
  }
  const picked = idx.slice(0, opts.hsCodes).sort((a, b) => a - b);
  const codes: Code[] = [];
  const popularity: number[] = [];
  const LN20 = Math.log(20);
  for (const ci of picked) {
    const entry = HS_CATALOGUE[ci];
    const chapter = Number(entry.hs.slice(0, 2));
    const logPrice = Math.min(Math.log(2000), Math.max(Math.log(0.5), Math.log(chapterMedianPrice(chapter)) + 0.7 * rng.normal()));
    const heavy = chapter >= 86 && chapter <= 89;
    const unitMass = Math.exp(heavy ? rng.uniform(Math.log(50), Math.log(2000)) : rng.uniform(Math.log(0.02), Math.log(25)));
    const muMass = Math.max(Math.log(unitMass) + 1.5, Math.log(1500) - 0.45 * (logPrice - LN20) + 0.7 * rng.normal());
    const pAir = 0.04 + 0.6 / (1 + Math.exp(-(logPrice - Math.log(60)) / 0.8));
    codes.push({
      hs: entry.hs,
      hs4: entry.hs.slice(0, 4),
      chapter,
      description: entry.description,
      shortDescription: shorten(entry.description),
      lowerDescription: entry.description.toLowerCase(),
      brandPrefix: `${shorten(entry.description).toLowerCase()}, brand `,
      logPrice,
      logSd: rng.uniform(0.2, 0.5),
      muMass,
      sdMass: rng.uniform(0.8, 1.3),
      unitMass,
      taxRate: chapterTax[chapter],
      pAir,
    });
    popularity.push(Math.exp(1.1 * rng.normal()) * (DOMINANT_CHAPTERS.has(chapter) ? 2 : 1));
  }
  const nC = codes.length;
  const popTotal = popularity.reduce((s, w) => s + w, 0);
  const pop = popularity.map((w) => w / popTotal);
  const codeCum = prefixSum(pop);
  const byChapter = new Map<number, number[]>();
  codes.forEach((c, i) => {
    const list = byChapter.get(c.chapter);
    if (list) list.push(i);
    else byChapter.set(c.chapter, [i]);
  });

  // Origins per code: a random subset of the countries, with jittered weights.
  const originCum = new Float64Array(nC * nO);
  const originProb = new Float64Array(nC * nO);
  for (let c = 0; c < nC; c++) {
    let total = 0;
    const w = new Float64Array(nO);
    for (let o = 0; o < nO; o++) {
      const active = rng.next() < (o === 0 ? 0.95 : 0.55);
      w[o] = active ? ORIGINS[o][1] * Math.exp(0.8 * rng.normal()) : 0;
      total += w[o];
    }
    if (total === 0) {
      w[0] = 1;
      total = 1;
    }
    let s = 0;
    for (let o = 0; o < nO; o++) {
      originProb[c * nO + o] = w[o] / total;
      originCum[c * nO + o] = s += w[o];
    }
  }
  const originLogFactor = new Float64Array(ORIGINS.map((o) => Math.log(o[2])));
  const originTotal = ORIGINS.reduce((s, o) => s + o[1], 0);
  const sellerPool = new Int32Array(ORIGINS.map((o) => Math.max(5, Math.round((opts.importers * 2 * o[1]) / originTotal))));

  // Importers: Zipf frequency over a shuffled ranking.
  const nI = opts.importers;
  const rank = new Int32Array(nI);
  for (let i = 0; i < nI; i++) rank[i] = i;
  for (let i = nI - 1; i > 0; i--) {
    const r = rng.int(i + 1);
    const t = rank[i];
    rank[i] = rank[r];
    rank[r] = t;
  }
  const q = new Float64Array(nI);
  let qTotal = 0;
  for (let i = 0; i < nI; i++) qTotal += q[i] = 1 / (rank[i] + 1);
  for (let i = 0; i < nI; i++) q[i] /= qTotal;
  const idWidth = Math.max(5, String(nI).length);
  const importerIds = Array.from({ length: nI }, (_, i) => `IM${pad(i + 1, idWidth)}`);
  const aeo = new Uint8Array(nI);
  const importerLogFactor = new Float64Array(nI);
  const nB = Math.max(5, Math.round(nI / 10));
  const brokerWidth = Math.max(4, String(nB).length);
  const brokerIds = Array.from({ length: nB }, (_, i) => `BR${pad(i + 1, brokerWidth)}`);
  const brokerCum = prefixSum(Array.from({ length: nB }, (_, i) => 1 / Math.pow(i + 1, 0.8)));
  const broker = new Int32Array(nI);
  const homeOffice = new Int32Array(nI * 3);
  const portStart = new Int32Array(nI);
  const portLen = new Int32Array(nI);
  const portList: number[] = [];
  let pAeo = 0;
  for (let i = 0; i < nI; i++) {
    aeo[i] = rng.next() < P.aeoShare ? 1 : 0;
    if (aeo[i]) pAeo += q[i];
    importerLogFactor[i] = 0.08 * rng.normal();
    broker[i] = rng.next() < 0.03 ? -1 : sampleCum(brokerCum, 0, nB, rng.next());
    for (let m = 0; m < 3; m++) homeOffice[i * 3 + m] = sampleCum(OFFICE_CUMS[m], 0, MODE_OFFICES[m].length, rng.next());
    // Portfolio: larger importers trade more codes; most codes share the home chapter.
    const size = Math.min(nC, Math.max(1, Math.round(Math.exp(Math.log(5) + 0.6 * rng.normal()) * (1 + 150 * q[i]))));
    const first = sampleCum(codeCum, 0, nC, rng.next());
    const home = byChapter.get(codes[first].chapter)!;
    const set = new Set<number>([first]);
    for (let tries = 0; set.size < size && tries < size * 4; tries++) {
      set.add(rng.next() < 0.6 ? home[rng.int(home.length)] : sampleCum(codeCum, 0, nC, rng.next()));
    }
    portStart[i] = portList.length;
    portLen[i] = set.size;
    for (const c of set) portList.push(c);
  }
  const portCodes = Int32Array.from(portList);

  // Expected share of rows per code (portfolio draws plus global draws).
  const codeShare = pop.map((p) => (1 - P.portfolioShare) * p);
  for (let i = 0; i < nI; i++) {
    const w = (P.portfolioShare * q[i]) / portLen[i];
    for (let k = 0; k < portLen[i]; k++) codeShare[portCodes[portStart[i] + k]] += w;
  }

  const { riskyPair: riskyRate, trader: traderRate, undervaluation: underRateAll } = opts.rates;
  const aeoMul = P.aeoFraudMultiplier;
  const aeoAdjust = 1 - (1 - aeoMul) * pAeo;

  // Risky (HS4, origin) pairs.
  const riskyMask = new Uint8Array(nC * nO);
  const riskyPairs: { hs4: string; origin: string }[] = [];
  let pairRate = 0;
  if (riskyRate > 0) {
    const pairKeys: string[] = [];
    const pairShares: number[] = [];
    const pairIndex = new Map<string, number>();
    for (let c = 0; c < nC; c++) {
      for (let o = 0; o < nO; o++) {
        const share = codeShare[c] * originProb[c * nO + o];
        if (share <= 0) continue;
        const key = `${codes[c].hs4}|${ORIGINS[o][0]}`;
        let k = pairIndex.get(key);
        if (k === undefined) {
          k = pairKeys.length;
          pairIndex.set(key, k);
          pairKeys.push(key);
          pairShares.push(0);
        }
        pairShares[k] += share;
      }
    }
    const target = riskyRate / (P.riskyPairFraudShare * P.riskyPairCount * aeoAdjust);
    // At most two pairs per origin and one per HS4, so that the planted risks are varied.
    const chosen = pickNear(rng, pairShares, pairKeys.map((_, k) => k), P.riskyPairCount, target, (k, sofar) => {
      const [hs4, origin] = pairKeys[k].split('|');
      const keys = sofar.map((x) => pairKeys[x].split('|'));
      return keys.filter(([, o]) => o === origin).length < 2 && !keys.some(([h]) => h === hs4);
    });
    chosen.sort((x, y) => (pairKeys[x] < pairKeys[y] ? -1 : 1));
    let total = 0;
    for (const k of chosen) {
      const [hs4, origin] = pairKeys[k].split('|');
      riskyPairs.push({ hs4, origin });
      total += pairShares[k];
      const o = ORIGINS.findIndex((x) => x[0] === origin);
      for (let c = 0; c < nC; c++) if (codes[c].hs4 === hs4) riskyMask[c * nO + o] = 1;
    }
    pairRate = total > 0 ? Math.min(0.9, riskyRate / (total * aeoAdjust)) : 0;
  }

  // Suspicious importers (never AEO).
  const suspicious = new Uint8Array(nI);
  const suspiciousImporters: string[] = [];
  let traderIn = 0;
  if (traderRate > 0) {
    const eligible: number[] = [];
    for (let i = 0; i < nI; i++) if (!aeo[i]) eligible.push(i);
    const count = Math.min(eligible.length, Math.max(P.minSuspiciousImporters, Math.round(P.suspiciousImporterShare * nI)));
    const target = traderRate / (P.suspiciousTraderFraudShare * Math.max(1, count));
    const chosen = pickNear(rng, q, eligible, count, target).sort((a, b) => a - b);
    let total = 0;
    for (const i of chosen) {
      suspicious[i] = 1;
      suspiciousImporters.push(importerIds[i]);
      total += q[i];
    }
    traderIn = total > 0 ? Math.min(0.9, traderRate / total) : 0;
  }

  // Undervaluation among the remaining rows, AEO five times less likely.
  const remaining = Math.max(0.5, 1 - riskyRate - traderRate);
  const underRate = Math.min(0.9, underRateAll / aeoAdjust / remaining);

  return {
    opts,
    codes,
    originCum,
    originLogFactor,
    sellerPool,
    importerIds,
    importerAlias: aliasTable(q),
    codeAlias: aliasTable(pop),
    importerLogFactor,
    aeo,
    broker,
    brokerIds,
    brokerCum,
    homeOffice,
    portStart,
    portLen,
    portCodes,
    suspicious,
    riskyMask,
    pairRate,
    traderRate: traderIn,
    underRate,
    planted: { riskyPairs, suspiciousImporters },
  };
}

// ---------------------------------------------------------------------------
// Rows.

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function* rowsOf(world: World): Generator<SyntheticRow> {
  const { opts, codes, originCum, importerAlias, codeAlias } = world;
  const P = SYNTHETIC_PARAMETERS;
  const rng = new Rng(opts.seed, STREAM_ROWS);
  const nO = ORIGINS.length;
  const nB = world.brokerIds.length;
  const startDay = parseIsoDate(opts.startDate);
  const dates = Array.from({ length: opts.days }, (_, d) => formatIsoDate(startDay + d));
  const idWidth = Math.max(7, String(opts.rows).length);
  const [uLo, uHi] = P.undervaluationFactor;
  const [tLo, tHi] = P.traderUndervaluationFactor;
  const aeoMul = P.aeoFraudMultiplier;
  const isHub = ORIGINS.map(([o]) => (HUBS as readonly string[]).includes(o));
  const sellerIds: string[][] = ORIGINS.map(() => []);

  for (let i = 0; i < opts.rows; i++) {
    const imp = sampleAlias(importerAlias, rng.next());
    const c =
      rng.next() < P.portfolioShare
        ? world.portCodes[world.portStart[imp] + rng.int(world.portLen[imp])]
        : sampleAlias(codeAlias, rng.next());
    const code = codes[c];
    const o = sampleCum(originCum, c * nO, nO, rng.next());
    const origin = ORIGINS[o][0];
    const isAeo = world.aeo[imp] === 1;
    const fraudMul = isAeo ? aeoMul : 1;

    let fraudType: SyntheticFraudType = '';
    if (world.riskyMask[c * nO + o] === 1 && rng.next() < world.pairRate * fraudMul) fraudType = 'risky_pair';
    else if (world.suspicious[imp] === 1 && rng.next() < world.traderRate) fraudType = 'suspicious_trader';
    else if (rng.next() < world.underRate * fraudMul) fraudType = 'undervaluation';

    // Mass, quantity and value.
    const mass = Math.min(2e6, Math.max(0.001, round3(Math.exp(code.muMass + code.sdMass * rng.normal()))));
    const quantity = Math.max(1, Math.round((mass / code.unitMass) * Math.exp(0.05 * rng.normal())));
    let lnPrice = code.logPrice + world.originLogFactor[o] + world.importerLogFactor[imp] + code.logSd * rng.normal();
    if (fraudType === '' && rng.next() < 0.01) lnPrice += 0.8 * rng.normal();
    let value = Math.exp(lnPrice) * mass;
    if (fraudType === 'undervaluation') value *= rng.uniform(uLo, uHi);
    else if (fraudType === 'suspicious_trader') value *= rng.uniform(tLo, tHi);
    const customsValue = Math.min(1e12, Math.max(0.01, round2(value)));

    // Logistics.
    const heavyLoad = mass > 5000 ? 0.2 : 1;
    const u = rng.next();
    const mode = u < code.pAir * heavyLoad ? 1 : u < code.pAir * heavyLoad + 0.08 ? 2 : 0;
    const officeList = MODE_OFFICES[mode];
    const office = officeList[rng.next() < 0.85 ? world.homeOffice[imp * 3 + mode] : sampleCum(OFFICE_CUMS[mode], 0, officeList.length, rng.next())];
    let departure = origin;
    if (!isHub[o] && rng.next() >= 0.85) departure = HUBS[rng.int(HUBS.length)];
    const pool = world.sellerPool[o];
    const sellerIdx = rng.next() < 0.9 ? fmix32(Math.imul(imp, 0x27d4eb2d) ^ Math.imul(o + 1, 0x165667b1) ^ rng.int(3)) % pool : rng.int(pool);
    const seller = (sellerIds[o][sellerIdx] ??= `S${origin}${pad(sellerIdx + 1, 5)}`);
    const b = world.broker[imp];
    const brokerIdx = b < 0 ? -1 : rng.next() < 0.92 ? b : sampleCum(world.brokerCum, 0, nB, rng.next());

    // Description.
    let description: string;
    const dv = rng.next();
    if (fraudType === 'risky_pair' && rng.next() < 0.25) description = VAGUE[rng.int(VAGUE.length)];
    else if (dv < 0.5) description = code.description;
    else if (dv < 0.7) description = code.shortDescription;
    else if (dv < 0.85) description = code.lowerDescription;
    else description = code.brandPrefix + BRANDS[rng.int(BRANDS.length)];

    const id = `D${pad(i + 1, idWidth)}`;
    const date = dates[Math.floor((i * opts.days) / opts.rows)];
    const importer = world.importerIds[imp];
    const transportMode = MODE_CODES[mode];
    const taxRate = code.taxRate;
    const hs = code.hs;
    // Two literals so that the key order follows FIELDS and a self-filer has no declarant key.
    const declaration: Declaration =
      brokerIdx >= 0
        ? { id, date, office, importer, declarant: world.brokerIds[brokerIdx], seller, hs, origin, departure, transportMode, customsValue, netMass: mass, quantity, taxRate, description, aeo: isAeo }
        : { id, date, office, importer, seller, hs, origin, departure, transportMode, customsValue, netMass: mass, quantity, taxRate, description, aeo: isAeo };
    yield { declaration, fraud: fraudType === '' ? 0 : 1, fraudType };
  }
}

/**
 * Generates `options.rows` labelled declarations. Options are validated at the
 * call (a bad option throws SEL_ERR_OPTION_INVALID), the rows are produced lazily.
 */
export function generateDeclarations(options: SyntheticOptions): Generator<SyntheticRow> {
  return rowsOf(buildWorld(normalize(options)));
}

/** The risky (HS4, origin) pairs and suspicious importers planted for these options. */
export function plantedFrauds(options: SyntheticOptions): Planted {
  const { planted } = buildWorld(normalize(options));
  return {
    riskyPairs: planted.riskyPairs.map((p) => ({ ...p })),
    suspiciousImporters: [...planted.suspiciousImporters],
  };
}

// ---------------------------------------------------------------------------
// Output.

const NEEDS_QUOTES = /[",\r\n]/;

/** One CSV cell (RFC 4180 quoting). */
export function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'string' ? v : String(v);
  return NEEDS_QUOTES.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV header line (without newline): schema fields in FIELDS order, then the labels. */
export const SYNTHETIC_CSV_HEADER = [...FIELDS.map((f) => f.name), ...SYNTHETIC_LABEL_COLUMNS].join(',');

function genericCsvLine(row: SyntheticRow): string {
  const d = row.declaration as unknown as Record<string, unknown>;
  let line = '';
  for (const f of FIELDS) line += csvCell(d[f.name]) + ',';
  return line + row.fraud + ',' + row.fraudType;
}

/** The field order the fast serializer below is written for. */
const FAST_ORDER = 'id,date,office,importer,declarant,seller,hs,origin,departure,transportMode,customsValue,netMass,quantity,taxRate,description,aeo';

/**
 * Generated codes never need quoting (only the description can hold a comma or a
 * quote), so a hand-written line is used while FIELDS keeps the order it was
 * written for; otherwise the generic one.
 */
function fastCsvLine(row: SyntheticRow): string {
  const d = row.declaration;
  const desc = d.description ?? '';
  return (
    d.id + ',' + d.date + ',' + d.office + ',' + d.importer + ',' + (d.declarant ?? '') + ',' + (d.seller ?? '') + ',' +
    d.hs + ',' + d.origin + ',' + (d.departure ?? '') + ',' + (d.transportMode ?? '') + ',' + d.customsValue + ',' +
    d.netMass + ',' + (d.quantity ?? '') + ',' + (d.taxRate ?? '') + ',' + (NEEDS_QUOTES.test(desc) ? csvCell(desc) : desc) + ',' +
    (d.aeo ?? '') + ',' + row.fraud + ',' + row.fraudType
  );
}

/** One CSV line (no newline) for a generated row, cells in header order. */
export const syntheticCsvLine: (row: SyntheticRow) => string =
  FIELDS.map((f) => f.name).join(',') === FAST_ORDER ? fastCsvLine : genericCsvLine;

/** One NDJSON line (no newline): the declaration's fields, then `fraud` and `fraud_type`. */
export function syntheticNdjsonLine(row: SyntheticRow): string {
  // Splicing the labels into the declaration's JSON is much faster than spreading a copy.
  const json = JSON.stringify(row.declaration);
  return `${json.slice(0, -1)},"fraud":${row.fraud},"fraud_type":"${row.fraudType}"}`;
}

const BATCH_ROWS = 4096;

/**
 * Writes generated declarations to `path` as CSV (header, RFC 4180) or NDJSON,
 * with backpressure. The format defaults to NDJSON for .ndjson/.jsonl paths and CSV
 * otherwise. `onProgress` is called with the running row count after each batch.
 */
export async function writeSynthetic(
  path: string,
  options: SyntheticOptions & { format?: 'csv' | 'ndjson'; onProgress?: (rowsWritten: number) => void },
): Promise<{ rows: number; frauds: number; byType: Record<string, number> }> {
  if (typeof path !== 'string' || path === '') invalid('path', 'a file path', path);
  const format = options.format ?? (/\.(ndjson|jsonl)$/i.test(path) ? 'ndjson' : 'csv');
  if (format !== 'csv' && format !== 'ndjson') invalid('format', "'csv' or 'ndjson'", format);
  const rows = generateDeclarations(options);
  const byType: Record<string, number> = { undervaluation: 0, risky_pair: 0, suspicious_trader: 0 };
  let written = 0;
  let frauds = 0;
  const onProgress = options.onProgress;
  const toLine = format === 'csv' ? syntheticCsvLine : syntheticNdjsonLine;

  function* chunks(): Generator<string> {
    if (format === 'csv') yield SYNTHETIC_CSV_HEADER + '\n';
    let batch: string[] = [];
    for (const row of rows) {
      batch.push(toLine(row));
      if (row.fraud) {
        frauds++;
        byType[row.fraudType]++;
      }
      if (batch.length === BATCH_ROWS) {
        written += batch.length;
        yield batch.join('\n') + '\n';
        batch = [];
        onProgress?.(written);
      }
    }
    if (batch.length > 0) {
      written += batch.length;
      yield batch.join('\n') + '\n';
      onProgress?.(written);
    }
  }

  // in place only once complete: an interrupted run leaves no shorter file that looks whole
  const output = new AtomicOutput(path, 'out');
  try {
    for (const text of chunks()) await output.write(text);
    await output.commit();
  } finally {
    output.discard();
  }
  return { rows: written, frauds, byType };
}
