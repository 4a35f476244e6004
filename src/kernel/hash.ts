/**
 * Hashes shared by the host, the reference scorer and the kernel. The kernel
 * reimplements mix32 in assembly/; the two are tested to agree.
 */

/** FNV-1a, 32 bits, over the UTF-16 code units of a string. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3 fmix32 finaliser: spreads a 32-bit hash uniformly. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const GOLDEN = 0x9e3779b97f4a7c15n;
const MASK64 = (1n << 64n) - 1n;

/** log2 of the capacity of an open-addressing table of `count` keys in the ruleset image: the smallest power of two ≥ 1.5 × count (load ≤ 2/3). */
export function hashTableBits(count: number): number {
  let bits = 1;
  while ((1 << bits) < count * 1.5) bits++;
  return bits;
}

/** Home slot of a key in a table of 2^bits slots: (key × 0x9E3779B97F4A7C15 mod 2^64) >> (64 − bits), as the kernel computes it (peer tables, tax rates, combinations). */
export const homeSlot = (key: bigint, bits: number): number => Number(((key * GOLDEN) & MASK64) >> BigInt(64 - bits));
