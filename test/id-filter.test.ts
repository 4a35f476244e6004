/**
 * The filters of the id index's sealed parts (src/store/id-filter.ts): a
 * filter never says no for an id it holds (a lookup would miss a decision),
 * rarely says yes for one it does not (a lookup would search a part for
 * nothing), and keeps its hash: the filters are stored, and a reader must
 * compute the bits the writer set.
 */
import { describe, expect, it } from 'vitest';
import { DECISION_ID_PART_SIZE, ID_FILTER_BYTES, ID_FILTER_PROBES, IdFilter, IdHash, partOf } from '../src/store/id-filter.js';
import { rng } from './helpers.js';

/** Ids as the Korea Customs Service data has them (random 8-digit numbers), or as letters and digits of any length. */
function randomIds(n: number, seed: number): string[] {
  const r = rng(seed);
  const out = new Set<string>();
  while (out.size < n) {
    if (r() < 0.5) out.add(String(10_000_000 + Math.floor(r() * 90_000_000)));
    else out.add(Array.from({ length: 1 + Math.floor(r() * 24) }, () => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-é'[Math.floor(r() * 38)]).join(''));
  }
  return [...out];
}

describe('id filter of a sealed part', () => {
  it('holds every id added to it, a whole part of them, and few others (under 0.5 %)', () => {
    const ids = randomIds(2 * DECISION_ID_PART_SIZE, 7);
    const held = ids.slice(0, DECISION_ID_PART_SIZE);
    const f = new IdFilter();
    for (const id of held) f.add(id);
    for (const id of held) expect(f.mayHold(new IdHash(id))).toBe(true);
    const others = ids.slice(DECISION_ID_PART_SIZE);
    const wrong = others.filter((id) => f.mayHold(new IdHash(id))).length;
    expect(wrong / others.length).toBeLessThan(0.005);
    // each id sets ID_FILTER_PROBES bits of one 64-byte block
    const one = new IdFilter();
    one.add(held[0]);
    const h = new IdHash(held[0]);
    const set = [...one.bytes].map((b, i) => [b, i] as const).filter(([b]) => b !== 0);
    expect(set.every(([, i]) => i >= h.block && i < h.block + 64)).toBe(true);
    expect(set.reduce((s, [b]) => s + b.toString(2).split('1').length - 1, 0)).toBe(ID_FILTER_PROBES);
  });

  it('reads back from its bytes, and refuses bytes of another size', () => {
    const f = new IdFilter();
    for (const id of ['A', 'B', '21000001']) f.add(id);
    const back = new IdFilter(Uint8Array.from(f.bytes));
    for (const id of ['A', 'B', '21000001']) expect(back.mayHold(new IdHash(id))).toBe(true);
    expect(() => new IdFilter(new Uint8Array(ID_FILTER_BYTES - 1))).toThrow(RangeError);
  });

  it('keeps the hash of scheme 1: stored filters stay readable (a change of hash needs a new scheme and a migration)', () => {
    const at = (id: string) => { const h = new IdHash(id); return [h.block, h.start, h.step]; };
    expect(at('21000001')).toEqual([34176, 70, 205]);
    expect(at('KCS-2020-0042')).toEqual([121024, 179, 129]);
    expect(at('ü-ид')).toEqual([122496, 405, 165]);
  });

  it('numbers the parts of seqs beyond 32 bits', () => {
    expect(partOf(DECISION_ID_PART_SIZE - 1)).toBe(0);
    expect(partOf(DECISION_ID_PART_SIZE)).toBe(1);
    expect(partOf(2 ** 40 + 5)).toBe(2 ** 24);
  });
});
