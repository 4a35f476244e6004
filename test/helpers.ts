/**
 * Random inputs for property tests: declarations, profiles and settings drawn
 * from small vocabularies so that peer groups fill up and profiles match.
 */
import { formatIsoDate, parseIsoDate, type Declaration } from '../src/model/schema.js';
import type { Profile, NumericOperand } from '../src/profiles/profile.js';
import { NUMERIC_OPERANDS, NUMERIC_OPS } from '../src/profiles/profile.js';
import { CHANNELS } from '../src/model/channels.js';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One of xs, drawn with r. */
export const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

export const VOCAB = {
  hs: ['8517120000', '851712', '85171290', '8471300000', '847130', '6109100010', '610910', '6203420000', '0901210000', '2203000000', '39269097', '940350'],
  origin: ['CN', 'VN', 'DE', 'US', 'TR', 'IN'],
  office: ['OF1', 'OF2', 'OF3'],
  mode: ['1', '3', '4'],
  importer: ['IMP1', 'IMP2', 'IMP3', 'IMP4', 'IMP5', 'IMP6', 'IMP7', 'IMP8'],
  declarant: ['DCL1', 'DCL2', 'DCL3'],
};

/** Goods descriptions with watch-list terms in their variants (plural, case, punctuation, non-ASCII). */
export const DESCRIPTIONS = [
  'Replica watches, assorted', 'REPLICAS of designer bags', 'power banks 10000mAh lithium', 'POWER-BANK portable charger',
  'cotton t-shirts, knitted', 'roasted coffee, not decaffeinated', 'smartphones for cellular networks', 'portable laptop computers',
  'precursor chemicals (ephedrine)', 'parts', 'Café crème — réplica watch straps', '', 'beer made from malt', 'plastic household articles',
];
export const KEYWORDS = ['replica', 'power bank', 'precursor', 'lithium', 'designer bag', 'ephedrine', 'smartphone', 'watch', 'coffee', 'portable'];

export function randomDeclarations(count: number, seed: number, options: { descriptions?: boolean } = {}): Declaration[] {
  const r = rng(seed);
  const out: Declaration[] = [];
  for (let i = 0; i < count; i++) {
    const mass = r() < 0.03 ? 0 : Math.exp(r() * 8);
    const price = Math.exp(1 + r() * 3 + (r() < 0.1 ? -2 : 0));
    const d: Declaration = {
      id: `T${seed}-${i}`,
      date: '2025-03-01',
      office: pick(r, VOCAB.office),
      importer: pick(r, VOCAB.importer),
      hs: pick(r, VOCAB.hs),
      origin: pick(r, VOCAB.origin),
      customsValue: r() < 0.02 ? 0 : Math.round(mass * price * 100) / 100,
      netMass: Math.round(mass * 1000) / 1000,
    };
    if (r() < 0.8) d.quantity = r() < 0.05 ? 0 : Math.ceil(r() * 500);
    if (r() < 0.9) d.taxRate = Math.round(r() * 300) / 10;
    if (r() < 0.7) d.departure = pick(r, VOCAB.origin);
    if (r() < 0.8) d.transportMode = pick(r, VOCAB.mode);
    if (r() < 0.9) d.declarant = pick(r, VOCAB.declarant);
    if (r() < 0.1) d.aeo = true;
    if (options.descriptions) d.description = pick(r, DESCRIPTIONS);
    out.push(d);
  }
  return out;
}

/** Declarations over 120 days from 2025-01-01, in date order, with descriptions (never empty ones). */
export function datedDeclarations(n: number, seed: number, prefix = `H${seed}-`): Declaration[] {
  const start = parseIsoDate('2025-01-01');
  return randomDeclarations(n, seed, { descriptions: true }).map((d, i) => {
    const out: Declaration = { ...d, id: `${prefix}${i}`, date: formatIsoDate(start + Math.floor((i * 120) / n)) };
    if (out.description === '') delete out.description; // an empty description is an absent one
    return out;
  });
}

export function randomProfiles(count: number, seed: number, options: { keywords?: boolean } = {}): Profile[] {
  const r = rng(seed);
  const out: Profile[] = [];
  for (let i = 0; i < count; i++) {
    const conditions: Profile['conditions'] = {};
    if (r() < 0.6) {
      const k = 1 + Math.floor(r() * 3);
      conditions.hs = [...new Set(Array.from({ length: k }, () => { const h = pick(r, VOCAB.hs); return h.slice(0, 2 * (1 + Math.floor(r() * (h.length / 2)))); }))];
    }
    if (r() < 0.4) conditions.origin = [...new Set([pick(r, VOCAB.origin), pick(r, VOCAB.origin)])];
    if (r() < 0.2) conditions.departure = [pick(r, VOCAB.origin)];
    if (r() < 0.2) conditions.office = [pick(r, VOCAB.office)];
    if (r() < 0.2) conditions.transportMode = [pick(r, VOCAB.mode)];
    if (r() < 0.2) conditions.importer = [...new Set([pick(r, VOCAB.importer), pick(r, VOCAB.importer)])];
    if (r() < 0.1) conditions.declarant = [pick(r, VOCAB.declarant)];
    if (r() < 0.1) conditions.aeo = r() < 0.5;
    if (r() < 0.4) {
      conditions.numeric = Array.from({ length: 1 + Math.floor(r() * 2) }, () => {
        const field = pick(r, NUMERIC_OPERANDS) as NumericOperand;
        const value = field.startsWith('z.') ? (r() - 0.5) * 6 : field === 'taxRate' ? r() * 30 : Math.exp(r() * 10);
        return { field, op: pick(r, NUMERIC_OPS), value };
      });
    }
    if (options.keywords && r() < 0.5) conditions.keywords = [...new Set([pick(r, KEYWORDS), pick(r, KEYWORDS)])];
    const p: Profile = { id: `P${i}`, weight: Math.round(r() * 40) / 10, conditions };
    if (r() < 0.3) p.counterMeasure = { channel: pick(r, CHANNELS) };
    out.push(p);
  }
  return out;
}

/** Runs the CLI in-process, capturing what it writes to stdout and stderr. */
export async function runCli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { vi } = await import('vitest');
  const { main } = await import('../src/cli/main.js');
  let stdout = '', stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { stdout += String(chunk); return true; });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { stderr += String(chunk); return true; });
  try {
    return { code: await main(argv), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
