/**
 * Benchmark inputs: synthetic declarations from the generator (history for
 * peer tables, a separate batch to score) and a realistic profile set drawn
 * from the same vocabulary: most profiles target HS × origin combinations,
 * some importers, some numeric thresholds on value or deviation. Thresholds
 * are round numbers, as analysts write them (z <= -3, value >= 50,000).
 */
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { generateDeclarations } from '../src/generate/synthetic.js';
import { BatchBuilder, batchViews, type ColumnarBatch } from '../src/model/columnar.js';
import type { Declaration } from '../src/model/schema.js';
import { buildPeerTables, type PeerTables } from '../src/peers/peer-groups.js';
import type { Profile } from '../src/profiles/profile.js';
import { CHANNELS } from '../src/model/channels.js';

/** The middle value of samples (the upper one of an even count), as the benchmarks report it. */
export const median = (xs: readonly number[]): number => quantile(xs, 0.5);

/** The sample at rank ⌊q·n⌋ of the sorted samples (the last one at most). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

export function declarations(rows: number, seed: number): Declaration[] {
  const out: Declaration[] = [];
  for (const r of generateDeclarations({ rows, seed, hsCodes: 300 })) out.push(r.declaration);
  return out;
}

/** The planted-fraud labels of declarations(rows, seed), 1 for fraud. */
export function fraudLabels(rows: number, seed: number): Uint8Array {
  const out = new Uint8Array(rows);
  let i = 0;
  for (const r of generateDeclarations({ rows, seed, hsCodes: 300 })) out[i++] = r.fraud;
  return out;
}

/**
 * History and later traffic of one administration: a seed fixes the synthetic
 * world (codes, prices, traders), so both parts come from one generator run;
 * the declarations to score are the later ones.
 */
export function world(historyRows: number, scoredRows: number, seed: number): { history: Declaration[]; scored: Declaration[] } {
  const all = declarations(historyRows + scoredRows, seed);
  return { history: all.slice(0, historyRows), scored: all.slice(historyRows) };
}

export function batchesOf(decls: readonly Declaration[], size: number): ColumnarBatch[] {
  const out: ColumnarBatch[] = [];
  let b = new BatchBuilder(size);
  for (const d of decls) {
    b.push(d);
    if (b.full) { out.push(b.finish().batch); b = new BatchBuilder(size); }
  }
  if (b.length > 0) out.push(b.finish().batch);
  return out;
}

/** Batches of `size` declarations with their labels (`labels[i]` is declaration i's), as trainModel takes them. */
export function labelledBatches(decls: readonly Declaration[], labels: Uint8Array, size: number): { batches: ColumnarBatch[]; labels: Uint8Array[] } {
  const batches = batchesOf(decls, size);
  let at = 0;
  return { batches, labels: batches.map((b) => { const l = labels.subarray(at, at + b.size); at += b.size; return l; }) };
}

/** A copy of a batch with its own buffer (a pool consumes what it is sent). */
export function cloneBatch(b: ColumnarBatch): ColumnarBatch {
  return batchViews(b.buffer.slice(0), b.capacity, b.size, b.dicts);
}

export function peerTables(history: readonly Declaration[], levels = ['hs6,origin', 'hs6', 'hs4', 'hs2']): PeerTables {
  return buildPeerTables(batchesOf(history, 65536), levels);
}

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function benchProfiles(count: number, seed: number, sample: readonly Declaration[]): Profile[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const hs = [...new Set(sample.map((d) => d.hs))];
  const origins = [...new Set(sample.map((d) => d.origin))];
  const importers = [...new Set(sample.map((d) => d.importer))];
  const offices = [...new Set(sample.map((d) => d.office))];
  const modes = [...new Set(sample.map((d) => d.transportMode ?? '1'))];
  const declarants = [...new Set(sample.map((d) => d.declarant ?? ''))].filter(Boolean);
  const out: Profile[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r();
    const c: Profile['conditions'] = {};
    if (kind < 0.5) {
      c.hs = [...new Set(Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(hs).slice(0, r() < 0.5 ? 4 : 6)))];
      c.origin = [...new Set([pick(origins), pick(origins)])];
    } else if (kind < 0.7) {
      c.hs = [pick(hs).slice(0, r() < 0.5 ? 2 : 4)];
      c.numeric = [{ field: 'z.unitValue', op: '<=', value: pick([-2, -2.5, -3, -3.5, -4]) }];
    } else if (kind < 0.8) {
      c.importer = [...new Set(Array.from({ length: 1 + Math.floor(r() * 5) }, () => pick(importers)))];
    } else if (kind < 0.9) {
      c.origin = [pick(origins)];
      c.transportMode = [pick(modes)];
      c.numeric = [{ field: 'customsValue', op: '>=', value: pick([1, 2, 5]) * 10 ** (4 + Math.floor(r() * 3)) }];
    } else {
      c.hs = [pick(hs).slice(0, 4)];
      c.office = [pick(offices)];
      if (declarants.length) c.declarant = [pick(declarants)];
    }
    const p: Profile = { id: `BP-${String(i).padStart(4, '0')}`, weight: Math.round((0.5 + r() * 2.5) * 10) / 10, conditions: c };
    if (r() < 0.2) p.counterMeasure = { channel: pick(CHANNELS.slice(1)) };
    out.push(p);
  }
  return out;
}

/** Drops the OS page cache when the machine allows it (root on Linux); true when it did. */
export function dropPageCache(): boolean {
  try {
    execSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}
