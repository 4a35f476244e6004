// Selectivity scoring kernel.
//
// The host (src/kernel/kernel.ts) owns the memory layout: it copies a compiled
// ruleset image and a columnar batch into linear memory above __heap_base,
// writes a "plan" (a table of u32 pointers and counts, see src/kernel/layout.ts)
// and calls score(plan). Nothing here allocates; every access is a raw load or
// store at an offset. The maths is specified by src/kernel/reference.ts, and
// the two are property-tested to agree.

// ---- plan slots (u32 each); keep in step with src/kernel/layout.ts --------
const P_N: i32 = 0;
const P_SETTINGS: i32 = 1;
const P_PEER_KEYS: i32 = 2;
const P_PEER_VALS: i32 = 3; // unused since format 2: slots hold key, group and mask together
const P_PEER_MASK: i32 = 4;
const P_STATS: i32 = 5;
const P_NUM_LEVELS: i32 = 6;
const P_LEVELS: i32 = 7;
const P_WORDS: i32 = 8;
const P_ROWS: i32 = 9;
const P_NUM_PROFILES: i32 = 10;
const P_WEIGHTS: i32 = 11;
const P_CHANNELS: i32 = 12;
const P_PEER_CACHE: i32 = 13;
const P_PEER_CACHE_KEYS: i32 = 14;
const P_PEER_CACHE_SHIFT: i32 = 15;
const P_ALL_ROW: i32 = 16;
const P_NUM_GROUPS: i32 = 17;
const P_GROUPS: i32 = 18;
const P_COL_VALUE: i32 = 19;
const P_COL_MASS: i32 = 20;
const P_COL_QTY: i32 = 21;
const P_COL_TAX: i32 = 22;
const P_COL_IDHASH: i32 = 23;
const P_COL_HS: i32 = 24;
const P_HS_LUT: i32 = 25;
const P_HS_DICT: i32 = 26;
const P_PEER_COLS: i32 = 27; // 4 slots
const P_PEER_LUTS: i32 = 31; // 4 slots
const P_OUT_SCORE: i32 = 35;
const P_OUT_Z: i32 = 36;
const P_OUT_LEVEL: i32 = 37;
const P_OUT_CHANNEL: i32 = 38;
const P_OUT_FLAGS: i32 = 39;
const P_OUT_MATCH_OFFSET: i32 = 40;
const P_OUT_MATCH_LIST: i32 = 41;
const P_MATCH_CAPACITY: i32 = 42;
const P_SCRATCH: i32 = 43;
const P_PEER_SHIFT: i32 = 44;
const P_BLOCK: i32 = 45;
const P_IMAGE_BASE: i32 = 46;
const P_NUM_NUMERIC: i32 = 47;
const P_NUMERIC: i32 = 48;
const P_PEER_ENTRIES: i32 = 49;
const P_PEER_ROW_ENTRY: i32 = 50;
const P_NUMERIC_ROWS: i32 = 51;
const P_PEER_STRIDES: i32 = 52; // 4 slots
const P_COL_EXTRA: i32 = 56; // f64 per row added to the score (text signals, historical tables), 0 when none
const P_HISTORY: i32 = 57; // the history block (historyPass), 0 when the ruleset has no historical tables

// ---- settings (f64 each) --------------------------------------------------
const S_MIN_GROUP: i32 = 0;
const S_Z_THRESHOLD: i32 = 1;
const S_Z_CAP: i32 = 2;
const S_YELLOW: i32 = 3;
const S_RED: i32 = 4;
const S_RANDOM_THRESHOLD: i32 = 5;
const S_RANDOM_CHANNEL: i32 = 6;
const S_SEED: i32 = 7;
const S_W_UNDER: i32 = 8; // NF values, then NF values of W_OVER

const NF: i32 = 3;
/** Rows per block of the numeric-condition columns; NUMERIC_BLOCK in src/kernel/layout.ts. */
const NUMERIC_BLOCK: i32 = 256;
const NONE32: u32 = 0xffffffff;
const NONE64: u64 = 0xffffffffffffffff;
const GOLDEN: u64 = 0x9e3779b97f4a7c15;
/** A combination key no table holds (keys are below 2^53; all ones marks an empty slot). */
const ABSENT_KEY: u64 = 0xfffffffffffffffe;

const CH_GREEN: i32 = 0;
const CH_YELLOW: i32 = 2;
const CH_RED: i32 = 4;

const FLAG_CONTROL: u8 = 1;
const FLAG_PROFILE_CHANNEL: u8 = 2;

// @ts-ignore: decorator
@inline function slot(plan: usize, i: i32): usize {
  return <usize>load<u32>(plan + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function setting(settings: usize, i: i32): f64 {
  return load<f64>(settings + (<usize>i << 3));
}

export function heapBase(): usize {
  return __heap_base;
}

/** murmur3 fmix32; src/kernel/hash.ts mix32 is its twin. */
export function mix32(x: u32): u32 {
  let h = x;
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/**
 * Looks a packed peer key up in the open-addressing table. A slot is one
 * 64-byte cache line: key (u64), group index (i32), a mask of the features
 * for which the group has at least minGroupSize values (u32), then median and
 * robust scale (f64, f64) of each feature. Returns the slot address, or 0
 * when the key is absent.
 */
// @ts-ignore: decorator
@inline function findSlot(slots: usize, mask: u32, shift: u64, key: u64): usize {
  let i = <u32>((key * GOLDEN) >> shift);
  while (true) {
    const at = slots + (<usize>i << 6);
    const k = load<u64>(at);
    if (k == key) return at;
    if (k == NONE64) return 0;
    i = (i + 1) & mask;
  }
}

// Row operations over `vecs` 128-bit vectors, unrolled for the common widths.
// @ts-ignore: decorator
@inline function copyRow(dst: usize, src: usize, vecs: i32): void {
  if (vecs == 2) {
    v128.store(dst, v128.load(src));
    v128.store(dst + 16, v128.load(src + 16));
  } else {
    for (let k = 0; k < vecs; k++) v128.store(dst + (<usize>k << 4), v128.load(src + (<usize>k << 4)));
  }
}

// @ts-ignore: decorator
@inline function andRow(dst: usize, src: usize, vecs: i32): void {
  if (vecs == 2) {
    v128.store(dst, v128.and(v128.load(dst), v128.load(src)));
    v128.store(dst + 16, v128.and(v128.load(dst + 16), v128.load(src + 16)));
  } else {
    for (let k = 0; k < vecs; k++) {
      const o = <usize>k << 4;
      v128.store(dst + o, v128.and(v128.load(dst + o), v128.load(src + o)));
    }
  }
}

// @ts-ignore: decorator
@inline function orRow(dst: usize, src: usize, vecs: i32): void {
  for (let k = 0; k < vecs; k++) {
    const o = <usize>k << 4;
    v128.store(dst + o, v128.or(v128.load(dst + o), v128.load(src + o)));
  }
}

/** The value of numeric operand `op` (src/profiles/profile.ts NUMERIC_OPERANDS) for row i. */
// @ts-ignore: decorator
@inline function operandValue(op: u32, i: usize, colValue: usize, colMass: usize, colQty: usize, colTax: usize, outZ: usize): f64 {
  const i8 = i << 3;
  if (op == 0) return load<f64>(colValue + i8);
  if (op == 1) return load<f64>(colMass + i8);
  if (op == 2) return load<f64>(colQty + i8);
  if (op == 3) return load<f64>(colTax + i8);
  if (op == 4) return load<f64>(colValue + i8) / load<f64>(colMass + i8);
  return load<f64>(outZ + (i * <usize>NF + <usize>op - 5) * 8);
}

/** Address of the row to AND for a match group (column, address LUT) at row offset i4. */
// @ts-ignore: decorator
@inline function groupRow(col: usize, lut: usize, i4: usize): usize {
  return <usize>load<u32>(lut + (<usize>load<u32>(col + i4) << 2));
}

/**
 * Pass 2 for declarations b0 to bEnd - 1 with up to 1,024 profiles: bitmap
 * rows of V v128 vectors, V = 0 (no profiles) to 8. V is a literal at every
 * call (see score), so that the optimizer drops the tests on it: each width
 * gets its own loop, with the accumulator in V v128 locals, reading exactly V
 * vectors of each row. A declaration ANDs the row of each match group (its
 * (column, address LUT) pair at pairs + 8g), or the all-profiles row when
 * there is no group, then the row of each numeric condition (addresses at
 * numericRows, NUMERIC_BLOCK entries per condition). A non-empty result is
 * stored at `acc` and walked word by word, over the non-empty words only.
 * Returns the new total of match-list entries.
 */
// @ts-ignore: decorator
@inline function scoreRows(
  V: i32, b0: i32, bEnd: i32, pairs: usize, numGroups: i32, allAddr: usize, numericRows: usize, numNumeric: i32, acc: usize,
  outZ: usize, zThresholdV: v128, zCapV: v128, wu01: v128, wo01: v128, wu2: v128, wo2: v128,
  weights: usize, channels: usize, outMatchOffset: usize, outMatchList: usize, matchCapacity: u32, matchTotal: u32,
  redAt: f64, yellowAt: f64, randomThreshold: f64, randomChannel: i32, seed: u32, colIdHash: usize, outScore: usize, outChannel: usize, outFlags: usize,
): u32 {
  for (let i = b0; i < bEnd; i++) {
    const i4 = <usize>i << 2;
    // bit w set: word w of the accumulator (stored at acc) has matches
    let nonEmpty: u32 = 0;
    if (V > 0) {
      let r = numGroups > 0 ? groupRow(<usize>load<u32>(pairs), <usize>load<u32>(pairs + 4), i4) : allAddr;
      let a0 = v128.load(r);
      let a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0; // unused above V
      if (V > 1) a1 = v128.load(r, 16);
      if (V > 2) a2 = v128.load(r, 32);
      if (V > 3) a3 = v128.load(r, 48);
      if (V > 4) a4 = v128.load(r, 64);
      if (V > 5) a5 = v128.load(r, 80);
      if (V > 6) a6 = v128.load(r, 96);
      if (V > 7) a7 = v128.load(r, 112);
      for (let g = 1; g < numGroups; g++) {
        const d = pairs + (<usize>g << 3);
        r = groupRow(<usize>load<u32>(d), <usize>load<u32>(d + 4), i4);
        a0 = v128.and(a0, v128.load(r));
        if (V > 1) a1 = v128.and(a1, v128.load(r, 16));
        if (V > 2) a2 = v128.and(a2, v128.load(r, 32));
        if (V > 3) a3 = v128.and(a3, v128.load(r, 48));
        if (V > 4) a4 = v128.and(a4, v128.load(r, 64));
        if (V > 5) a5 = v128.and(a5, v128.load(r, 80));
        if (V > 6) a6 = v128.and(a6, v128.load(r, 96));
        if (V > 7) a7 = v128.and(a7, v128.load(r, 112));
      }
      const nr = numericRows + (<usize>(i - b0) << 2);
      for (let ng = 0; ng < numNumeric; ng++) {
        r = <usize>load<u32>(nr + (<usize>ng * NUMERIC_BLOCK << 2));
        a0 = v128.and(a0, v128.load(r));
        if (V > 1) a1 = v128.and(a1, v128.load(r, 16));
        if (V > 2) a2 = v128.and(a2, v128.load(r, 32));
        if (V > 3) a3 = v128.and(a3, v128.load(r, 48));
        if (V > 4) a4 = v128.and(a4, v128.load(r, 64));
        if (V > 5) a5 = v128.and(a5, v128.load(r, 80));
        if (V > 6) a6 = v128.and(a6, v128.load(r, 96));
        if (V > 7) a7 = v128.and(a7, v128.load(r, 112));
      }
      let any = a0;
      if (V > 1) any = v128.or(any, a1);
      if (V > 2) any = v128.or(any, a2);
      if (V > 3) any = v128.or(any, a3);
      if (V > 4) any = v128.or(any, a4);
      if (V > 5) any = v128.or(any, a5);
      if (V > 6) any = v128.or(any, a6);
      if (V > 7) any = v128.or(any, a7);
      if (v128.any_true(any)) {
        // a set bit of i64x2.bitmask(i64x2.eq(a, 0)) marks an empty word
        const zero = i64x2.splat(0);
        v128.store(acc, a0);
        let empty = <u32>i64x2.bitmask(i64x2.eq(a0, zero));
        if (V > 1) { v128.store(acc, a1, 16); empty |= <u32>i64x2.bitmask(i64x2.eq(a1, zero)) << 2; }
        if (V > 2) { v128.store(acc, a2, 32); empty |= <u32>i64x2.bitmask(i64x2.eq(a2, zero)) << 4; }
        if (V > 3) { v128.store(acc, a3, 48); empty |= <u32>i64x2.bitmask(i64x2.eq(a3, zero)) << 6; }
        if (V > 4) { v128.store(acc, a4, 64); empty |= <u32>i64x2.bitmask(i64x2.eq(a4, zero)) << 8; }
        if (V > 5) { v128.store(acc, a5, 80); empty |= <u32>i64x2.bitmask(i64x2.eq(a5, zero)) << 10; }
        if (V > 6) { v128.store(acc, a6, 96); empty |= <u32>i64x2.bitmask(i64x2.eq(a6, zero)) << 12; }
        if (V > 7) { v128.store(acc, a7, 112); empty |= <u32>i64x2.bitmask(i64x2.eq(a7, zero)) << 14; }
        nonEmpty = ~empty & ((<u32>1 << (<u32>V << 1)) - 1);
      }
    }
    const zRow = outZ + <usize>(i * NF) * 8;
    let s = deviation(zRow, zThresholdV, zCapV, wu01, wo01, wu2, wo2);
    let profileChannel: i32 = CH_GREEN;
    store<u32>(outMatchOffset + i4, matchTotal);
    while (nonEmpty != 0) {
      const w = <i32>ctz(nonEmpty);
      nonEmpty &= nonEmpty - 1;
      let bits = load<u64>(acc + (<usize>w << 3));
      do {
        const p = (w << 6) + <i32>ctz(bits);
        bits &= bits - 1;
        s += load<f64>(weights + (<usize>p << 3));
        const pc = <i32>load<u8>(channels + <usize>p);
        if (pc > profileChannel) profileChannel = pc;
        if (matchTotal < matchCapacity) store<u16>(outMatchList + (<usize>matchTotal << 1), <u16>p);
        matchTotal++;
      } while (bits != 0);
    }
    finish(i, s, profileChannel, redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags);
  }
  return matchTotal;
}

/**
 * Region of x among k sorted thresholds: 2j for the open interval below t(j),
 * 2j+1 for x == t(j), 2k for above the last, 2k+1 for NaN. By counting rather
 * than searching: the thresholds are sorted and distinct, so the lower bound is the number of thresholds below x, and x
 * equals a threshold only at that index. Two thresholds per f64x2 compare, no
 * dependency between steps.
 */
// @ts-ignore: decorator
@inline function regionCount(th: usize, k: u32, x: f64): u32 {
  const xv = f64x2.splat(x);
  let below = i64x2.splat(0);
  let equal = i64x2.splat(0);
  const end = th + (<usize>(k & ~1) << 3);
  for (let t = th; t < end; t += 16) {
    const tv = v128.load(t);
    below = i64x2.sub(below, f64x2.lt(tv, xv));
    equal = v128.or(equal, f64x2.eq(tv, xv));
  }
  let lo = <u32>(i64x2.extract_lane(below, 0) + i64x2.extract_lane(below, 1));
  let eq = <u32>v128.any_true(equal);
  if ((k & 1) != 0) {
    const last = load<f64>(end);
    lo += <u32>(last < x);
    eq |= <u32>(last == x);
  }
  return x != x ? 2 * k + 1 : 2 * lo + eq;
}


/**
 * Deviation part of the score: for each feature, the under then the over
 * term, w · min(excess, zCap) when the excess of z over the threshold is
 * positive. Branch-free: a NaN z counts as 0 and a non-positive excess as 0,
 * whose term (w ≥ 0, so +0) leaves the sum unchanged; the sum is taken in the
 * reference's order. pmin/pmax are plain compares here (no NaN left).
 */
// @ts-ignore: decorator
@inline function deviation(zRow: usize, t: v128, cap: v128, wu01: v128, wo01: v128, wu2: v128, wo2: v128): f64 {
  const zero = f64x2.splat(0);
  const z01 = v128.load(zRow);
  const z2 = v128.load64_zero(zRow + 16);
  const y01 = v128.and(z01, f64x2.eq(z01, z01));
  const y2 = v128.and(z2, f64x2.eq(z2, z2));
  const u01 = f64x2.mul(wu01, f64x2.pmin(f64x2.pmax(f64x2.sub(f64x2.neg(y01), t), zero), cap));
  const o01 = f64x2.mul(wo01, f64x2.pmin(f64x2.pmax(f64x2.sub(y01, t), zero), cap));
  const u2 = f64x2.mul(wu2, f64x2.pmin(f64x2.pmax(f64x2.sub(f64x2.neg(y2), t), zero), cap));
  const o2 = f64x2.mul(wo2, f64x2.pmin(f64x2.pmax(f64x2.sub(y2, t), zero), cap));
  let s: f64 = 0;
  s += f64x2.extract_lane(u01, 0);
  s += f64x2.extract_lane(o01, 0);
  s += f64x2.extract_lane(u01, 1);
  s += f64x2.extract_lane(o01, 1);
  s += f64x2.extract_lane(u2, 0);
  s += f64x2.extract_lane(o2, 0);
  return s;
}

/** The batch's extra score column (plan[P_COL_EXTRA]), set by score(). */
let colExtra: usize = 0;

/** Extra score (text signals, historical tables), then channel from the thresholds, raised by counter-measures, then random selection of green rows. */
// @ts-ignore: decorator
@inline function finish(i: i32, s0: f64, profileChannel: i32, redAt: f64, yellowAt: f64, randomThreshold: f64, randomChannel: i32, seed: u32, colIdHash: usize, outScore: usize, outChannel: usize, outFlags: usize): void {
  const s = colExtra != 0 ? s0 + load<f64>(colExtra + (<usize>i << 3)) : s0;
  let channel: i32 = s >= redAt ? CH_RED : s >= yellowAt ? CH_YELLOW : CH_GREEN;
  let flags: u8 = 0;
  if (profileChannel > channel) { channel = profileChannel; flags |= FLAG_PROFILE_CHANNEL; }
  if (channel == CH_GREEN && randomThreshold > 0) {
    const h = mix32(load<u32>(colIdHash + (<usize>i << 2)) ^ seed);
    if (<f64>h < randomThreshold) { channel = randomChannel; flags |= FLAG_CONTROL; }
  }
  store<f64>(outScore + (<usize>i << 3), s);
  store<u8>(outChannel + <usize>i, <u8>channel);
  store<u8>(outFlags + <usize>i, flags);
}

// ---- historical tables ----------------------------------------------------------
// The history block, written by the host per batch (Kernel.historyBlock):
const H_INIT: usize = 0; // u32: 1 when the extra column already holds the text signals
const H_COLUMNS: usize = 4; // u32: single-field columns
const H_COMBINATIONS: usize = 8; // u32: combination dimensions
const H_TAX_SLOTS: usize = 12; // u32: the image's tax-rate slots (0: none)
const H_TAX_MASK: usize = 16; // u32: capacity - 1
const H_TAX_SHIFT: usize = 20; // u32: 64 - log2(capacity)
const H_TAX_COL: usize = 24; // u32: the taxRate column (f64 per row)
const H_TAX_CODES: usize = 28; // u32: the tax codes to write (u32 per row; 0: no dimension reads the tax rate)
const H_AEO_COL: usize = 32; // u32: the aeo codes (u32 per row; 0: no AEO reduction)
const H_SLOTS_OUT: usize = 36; // u32: per combination then row, the slot where the row's probe stopped, for the reasons
const H_AEO: usize = 40; // f64: the AEO reduction
const H_SLOTS16: usize = 48; // u32: 1 when H_SLOTS_OUT's slots are u16 (every combination's table has at most 65,536 slots), 0: u32
const H_LIST: usize = 56; // per column 8 B (u32 codes, u32 f64 table by code), then per combination 64 B:
// u32 slots, u32 capacity - 1, u32 64 - log2(capacity), u32 parts (2 or 3) | NARROW, then per part
// at 16 + 16j: u32 codes, u32 LUT (code → value id, -1: none), u64 stride
/** Flag of a combination's parts word: 8-byte slots (u32 key, f32 value) instead of 16 (u64 key, f64 value). */
const NARROW: u32 = 0x100;
/** The key of a row with a part not in the tables, in a narrow table (its keys are below it). */
const ABSENT_KEY32: u64 = 0xfffffffe;
const H_COMBINATION: usize = 64;
/** Rows per block of the history pass: the block's slices of the extra column and of the code columns stay in cache across its loops. */
const HISTORY_BLOCK: i32 = 4096;
/** Per row of a block, a combination's key and its home slot (addCombinations). */
const COMBINATION_KEYS: usize = memory.data(<i32>HISTORY_BLOCK << 3, 16);
const COMBINATION_HOMES: usize = memory.data(<i32>HISTORY_BLOCK << 2, 16);

/** Code of a tax rate: 1 + its value id in the image's tax-rate slots; 0 when absent (NaN) or not in the tables. */
// @ts-ignore: decorator
@inline function taxCode(slots: usize, mask: u32, shift: u64, x: f64): u32 {
  if (x != x) return 0;
  let bits = reinterpret<u64>(x);
  if (bits == 0x8000000000000000) bits = 0; // -0 is the rate 0
  let i = <u32>((bits * GOLDEN) >> shift);
  while (true) {
    const at = slots + (<usize>i << 4);
    const k = load<u64>(at);
    if (k == bits) return load<u32>(at + 8) + 1;
    if (k == NONE64) return 0;
    i = (i + 1) & mask;
  }
}

/** Value id of row offset i4 of a part (codes column, LUT by code). */
// @ts-ignore: decorator
@inline function partId(codes: usize, lut: usize, i4: usize): i32 {
  return load<i32>(lut + (<usize>load<u32>(codes + i4) << 2));
}

/**
 * Adds the combinations of rows b0 to bEnd - 1 found in one combination
 * dimension's slots to their extra values. A row's key is Σ id_j · stride_j
 * of its part value ids (none when one is -1); a slot is (u64 key, all ones
 * = empty; f64 weight × lift), or in a narrow table (u32 key, f32 weight ×
 * lift), home slot (key × GOLDEN) >> shift, linear probing (see
 * src/ruleset/compile.ts CompiledHistory).
 */
function addCombinations(d: usize, b0: i32, bEnd: i32, extra: usize, found: usize, slots16: bool): void {
  const partsWord = load<u32>(d + 12);
  const three = (partsWord & 0xff) == 3;
  const absent = partsWord & NARROW ? ABSENT_KEY32 : ABSENT_KEY;
  combinationKeys(d, three, absent, b0, bEnd);
  if (partsWord & NARROW) {
    if (slots16) probe<u32, f32, u16>(d, b0, bEnd, extra, found);
    else probe<u32, f32, u32>(d, b0, bEnd, extra, found);
  } else if (slots16) probe<u64, f64, u16>(d, b0, bEnd, extra, found);
  else probe<u64, f64, u32>(d, b0, bEnd, extra, found);
}

/** Per row of the block, its combination key (absent: a part not in the tables) and home slot, into COMBINATION_KEYS and COMBINATION_HOMES. */
// @ts-ignore: decorator
@inline function combinationKeys(d: usize, three: bool, absent: u64, b0: i32, bEnd: i32): void {
  const shift = <u64>load<u32>(d + 8);
  const c0 = <usize>load<u32>(d + 16), l0 = <usize>load<u32>(d + 20), s0 = load<u64>(d + 24);
  const c1 = <usize>load<u32>(d + 32), l1 = <usize>load<u32>(d + 36), s1 = load<u64>(d + 40);
  const c2 = <usize>load<u32>(d + 48), l2 = <usize>load<u32>(d + 52), s2 = load<u64>(d + 56);
  // first the rows' keys and home slots, then the probes: a loop of little
  // more than the probe's loads keeps many rows' cache misses in flight
  for (let i = b0; i < bEnd; i++) {
    const i4 = <usize>i << 2;
    const g0 = partId(c0, l0, i4), g1 = partId(c1, l1, i4);
    let key = <u64>g0 * s0 + <u64>g1 * s1;
    let g = g0 | g1;
    if (three) {
      const g2 = partId(c2, l2, i4);
      key += <u64>g2 * s2;
      g |= g2;
    }
    // a row with a part not in the tables takes a key no slot holds
    if (g < 0) key = absent;
    const j = <usize>(i - b0);
    store<u64>(COMBINATION_KEYS + (j << 3), key);
    store<u32>(COMBINATION_HOMES + (j << 2), <u32>((key * GOLDEN) >> shift));
  }
}

/**
 * The probes of a block's keys in one combination's table: K the key's type
 * (u64 in 16-byte slots, u32 in narrow 8-byte ones), V the value's (f64,
 * f32), S the type of the slot numbers written to `found` (u16 when every
 * table has at most 65,536 slots: half the bytes the host copies out);
 * all ones marks an empty slot.
 */
// @ts-ignore: decorator
@inline function probe<K, V, S>(d: usize, b0: i32, bEnd: i32, extra: usize, found: usize): void {
  const slots = <usize>load<u32>(d);
  const mask = load<u32>(d + 4);
  const SLOT_SHIFT: usize = sizeof<K>() == 8 ? 4 : 3;
  const EMPTY = <K>-1;
  for (let i = b0; i < bEnd; i++) {
    const j = <usize>(i - b0);
    const key = <K>load<u64>(COMBINATION_KEYS + (j << 3));
    let s = load<u32>(COMBINATION_HOMES + (j << 2));
    let p = slots + (<usize>s << SLOT_SHIFT);
    let k = load<K>(p);
    // the home slot is added without a branch (whether a row's combination is
    // in the tables is a coin toss); the probe goes on only past a slot of
    // another key (rare: tables at most two thirds full)
    if (k != key && k != EMPTY) {
      while (true) {
        s = (s + 1) & mask;
        p = slots + (<usize>s << SLOT_SHIFT);
        k = load<K>(p);
        if (k == key || k == EMPTY) break;
      }
    }
    const at = extra + (<usize>i << 3);
    const cur = load<f64>(at);
    store<f64>(at, select<f64>(cur + <f64>load<V>(p + sizeof<K>()), cur, k == key));
    store<S>(found + (<usize>i << alignof<S>()), <S>s); // where the probe stopped: the entry's slot, or an empty one
  }
}

/**
 * The historical tables' part of the extra score column, block by block: the
 * text signal (or 0), plus each single-field column's summed contribution of
 * the row's code, minus the AEO reduction for an AEO importer, plus each
 * combination found in its hash table (the slot where each row's probe
 * stopped, its entry's or an empty one, is written per combination and row
 * for the HISTORY reasons). Each row's
 * additions run in that order, the order of src/learn/history.ts
 * HistoryIndex (single columns, AEO, combinations). First the tax codes: per row, 1 + the value id of its
 * tax rate (0: none), a column like the others for the loops below.
 */
function historyPass(h: usize, n: i32, extra: usize): void {
  const taxCodes = <usize>load<u32>(h + H_TAX_CODES);
  if (taxCodes != 0) {
    const slots = <usize>load<u32>(h + H_TAX_SLOTS);
    const col = <usize>load<u32>(h + H_TAX_COL);
    const mask = load<u32>(h + H_TAX_MASK);
    const shift = <u64>load<u32>(h + H_TAX_SHIFT);
    if (slots == 0) memory.fill(taxCodes, 0, <usize>n << 2);
    else for (let i = 0; i < n; i++) store<u32>(taxCodes + (<usize>i << 2), taxCode(slots, mask, shift, load<f64>(col + (<usize>i << 3))));
  }
  const init = load<u32>(h + H_INIT) != 0;
  const numColumns = <usize>load<u32>(h + H_COLUMNS);
  const numCombinations = <usize>load<u32>(h + H_COMBINATIONS);
  const aeoCol = <usize>load<u32>(h + H_AEO_COL);
  const aeo = load<f64>(h + H_AEO);
  const slotsOut = <usize>load<u32>(h + H_SLOTS_OUT);
  const slots16 = load<u32>(h + H_SLOTS16) != 0;
  const slotShift: usize = slots16 ? 1 : 2;
  const columns = h + H_LIST;
  const combinations = columns + (numColumns << 3);
  for (let b0 = 0; b0 < n; b0 += HISTORY_BLOCK) {
    const bEnd = min(b0 + HISTORY_BLOCK, n);
    if (!init) memory.fill(extra + (<usize>b0 << 3), 0, <usize>(bEnd - b0) << 3);
    for (let c: usize = 0; c < numColumns; c++) {
      const codes = <usize>load<u32>(columns + (c << 3));
      const add = <usize>load<u32>(columns + (c << 3) + 4);
      for (let i = b0; i < bEnd; i++) {
        const at = extra + (<usize>i << 3);
        store<f64>(at, load<f64>(at) + load<f64>(add + (<usize>load<u32>(codes + (<usize>i << 2)) << 3)));
      }
    }
    if (aeoCol != 0) {
      for (let i = b0; i < bEnd; i++) {
        if (load<u32>(aeoCol + (<usize>i << 2)) == 1) {
          const at = extra + (<usize>i << 3);
          store<f64>(at, load<f64>(at) - aeo);
        }
      }
    }
    for (let k: usize = 0; k < numCombinations; k++) addCombinations(combinations + k * H_COMBINATION, b0, bEnd, extra, slotsOut + ((k * <usize>n) << slotShift), slots16);
  }
}

// ---- peer entries -------------------------------------------------------------
// One 64-byte entry per distinct peer key of a batch: +0 median of features 0
// and 1, +16 their robust scales, +32 median and +40 scale of feature 2 (NaN
// where no level qualifies), +48 the level of each feature (i8, -1 = none).

/**
 * Resolves the peer groups of row i into an entry: for each feature, the
 * first level (most specific first) whose group exists and has at least
 * minGroupSize values for it.
 */
function resolve(plan: usize, e: usize, i: usize): void {
  const peerKeys = slot(plan, P_PEER_KEYS);
  const peerMask = <u32>slot(plan, P_PEER_MASK);
  const peerShift = <u64>slot(plan, P_PEER_SHIFT);
  const numLevels = <i32>slot(plan, P_NUM_LEVELS);
  const levels = slot(plan, P_LEVELS);
  const hsLut = slot(plan, P_HS_LUT);
  const hsDict = slot(plan, P_HS_DICT);
  const hsCode = <usize>load<u32>(slot(plan, P_COL_HS) + (i << 2));
  v128.store(e, f64x2.splat(NaN));
  v128.store(e + 16, f64x2.splat(NaN));
  v128.store(e + 32, f64x2.splat(NaN));
  store<u32>(e + 48, 0xffffffff);
  let remaining: u32 = 7;
  for (let l = 0; l < numLevels && remaining != 0; l++) {
    const prefix = load<u64>(hsLut + ((<usize>l * hsDict + hsCode) << 3));
    if (prefix == NONE64) continue;
    const pf = load<i32>(levels + (<usize>l << 3) + 4);
    let cat: u64 = 0;
    if (pf >= 0) {
      const code = load<u32>(slot(plan, P_PEER_COLS + pf) + (i << 2));
      const id = load<u32>(slot(plan, P_PEER_LUTS + pf) + (<usize>code << 2));
      if (id == NONE32) continue;
      cat = <u64>id;
    }
    const at = findSlot(peerKeys, peerMask, peerShift, (<u64>l << 58) | (prefix << 24) | cat);
    if (at == 0) continue;
    const ok = load<u32>(at + 12) & remaining;
    if ((ok & 1) != 0) { store<f64>(e, load<f64>(at + 16)); store<f64>(e + 16, load<f64>(at + 24)); store<i8>(e + 48, <i8>l); }
    if ((ok & 2) != 0) { store<f64>(e + 8, load<f64>(at + 32)); store<f64>(e + 24, load<f64>(at + 40)); store<i8>(e + 49, <i8>l); }
    if ((ok & 4) != 0) { store<f64>(e + 32, load<f64>(at + 48)); store<f64>(e + 40, load<f64>(at + 56)); store<i8>(e + 50, <i8>l); }
    remaining &= ~ok;
  }
}

/** z and level of row i's three features from its peer entry. */
// @ts-ignore: decorator
@inline function rowDeviation(i: usize, x01: v128, x2: f64, rowEntry: usize, outZ: usize, outLevel: usize): void {
  const e = <usize>load<u32>(rowEntry + (i << 2));
  const zRow = outZ + i * 24;
  v128.store(zRow, f64x2.div(f64x2.sub(x01, v128.load(e)), v128.load(e + 16)));
  store<f64>(zRow + 16, (x2 - load<f64>(e + 32)) / load<f64>(e + 40));
  const x0 = f64x2.extract_lane(x01, 0);
  const x1 = f64x2.extract_lane(x01, 1);
  const levelRow = outLevel + i * 3;
  store<i8>(levelRow, x0 == x0 ? load<i8>(e + 48) : <i8>-1);
  store<i8>(levelRow + 1, x1 == x1 ? load<i8>(e + 49) : <i8>-1);
  store<i8>(levelRow + 2, x2 == x2 ? load<i8>(e + 50) : <i8>-1);
}

// ---- natural logarithm ----------------------------------------------------------
// The fdlibm e_log.c algorithm, which is also what V8 uses for Math.log, so
// that features are bit-identical to the reference scorer's.
//
// ====================================================
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice
// is preserved.
// ====================================================
const LN2_HI: f64 = 6.93147180369123816490e-01; // 3fe62e42 fee00000
const LN2_LO: f64 = 1.90821492927058770002e-10; // 3dea39ef 35793c76
const TWO54: f64 = 1.80143985094819840000e+16;
const LG1: f64 = 6.666666666666735130e-01;
const LG2: f64 = 3.999999999940941908e-01;
const LG3: f64 = 2.857142874366239149e-01;
const LG4: f64 = 2.222219843214978396e-01;
const LG5: f64 = 1.818357216161805012e-01;
const LG6: f64 = 1.531383769920937332e-01;
const LG7: f64 = 1.479819860511658591e-01;
const MIN_NORMAL: f64 = 2.2250738585072014e-308;

/** Scalar fdlibm log (all inputs); the fix-up path for lanes logFast does not handle. */
function fdlog(x: f64): f64 {
  let bits = reinterpret<u64>(x);
  let hx = <i32>(bits >> 32);
  const lx = <u32>bits;
  let k: i32 = 0;
  if (hx < 0x00100000) {
    if (((hx & 0x7fffffff) | lx) == 0) return -Infinity;
    if (hx < 0) return NaN;
    k -= 54;
    x *= TWO54;
    bits = reinterpret<u64>(x);
    hx = <i32>(bits >> 32);
  }
  if (hx >= 0x7ff00000) return x + x;
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const i0 = (hx + 0x95f64) & 0x100000;
  x = reinterpret<f64>((<u64>(hx | (i0 ^ 0x3ff00000)) << 32) | (bits & 0xffffffff));
  k += i0 >> 20;
  const f = x - 1.0;
  const dk = <f64>k;
  if ((0x000fffff & (2 + hx)) < 3) {
    if (f == 0) return k == 0 ? 0 : dk * LN2_HI + dk * LN2_LO;
    const r = f * f * (0.5 - 0.33333333333333333 * f);
    return k == 0 ? f - r : dk * LN2_HI - ((r - dk * LN2_LO) - f);
  }
  const s = f / (2.0 + f);
  const z = s * s;
  const w = z * z;
  const t1 = w * (LG2 + w * (LG4 + w * LG6));
  const t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
  const r = t2 + t1;
  if (((hx - 0x6147a) | (0x6b851 - hx)) > 0) {
    const hfsq = 0.5 * f * f;
    return k == 0 ? f - (hfsq - s * (hfsq + r)) : dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f);
  }
  return k == 0 ? f - s * (f - r) : dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f);
}

// Constants of logFast, two equal lanes each. They are loaded from memory
// because V8 rebuilds a v128.const (three instructions) at every use.
const LC_HM: usize = 0;
const LC_NORM_ADD: usize = 16;
const LC_BIT20: usize = 32;
const LC_ONE_HI: usize = 48;
const LC_LOW32: usize = 64;
const LC_K_BIAS: usize = 80;
const LC_K_MAGIC: usize = 96;
const LC_ONE: usize = 112;
const LC_TWO: usize = 128;
const LC_LG1: usize = 144;
const LC_LG2: usize = 160;
const LC_LG3: usize = 176;
const LC_LG4: usize = 192;
const LC_LG5: usize = 208;
const LC_LG6: usize = 224;
const LC_LG7: usize = 240;
const LC_LN2_HI: usize = 256;
const LC_LN2_LO: usize = 272;
const LC_HALF: usize = 288;
const LC_POS_LO: usize = 304;
const LC_POS_HI: usize = 320;
const LC_MIN_NORMAL: usize = 336;
const LC_INF: usize = 352;
const LC_SMALL_F: usize = 368;
const LC_ZERO: usize = 384;
const LOGC = memory.data<u64>([
  0x000fffff, 0x000fffff,
  0x95f64, 0x95f64,
  0x100000, 0x100000,
  0x3ff00000, 0x3ff00000,
  0xffffffff, 0xffffffff,
  0x4330000080000000 - 1023, 0x4330000080000000 - 1023, // 2^52 + 2^31 (bits) - exponent bias
  0x4330000080000000, 0x4330000080000000,
  0x3ff0000000000000, 0x3ff0000000000000, // 1.0
  0x4000000000000000, 0x4000000000000000, // 2.0
  0x3fe5555555555593, 0x3fe5555555555593, // LG1
  0x3fd999999997fa04, 0x3fd999999997fa04, // LG2
  0x3fd2492494229359, 0x3fd2492494229359, // LG3
  0x3fcc71c51d8e78af, 0x3fcc71c51d8e78af, // LG4
  0x3fc7466496cb03de, 0x3fc7466496cb03de, // LG5
  0x3fc39a09d078c69f, 0x3fc39a09d078c69f, // LG6
  0x3fc2f112df3e5244, 0x3fc2f112df3e5244, // LG7
  0x3fe62e42fee00000, 0x3fe62e42fee00000, // LN2_HI
  0x3dea39ef35793c76, 0x3dea39ef35793c76, // LN2_LO
  0x3fe0000000000000, 0x3fe0000000000000, // 0.5
  0x6147a - 1, 0x6147a - 1,
  0x6b851 + 1, 0x6b851 + 1,
  0x0010000000000000, 0x0010000000000000, // smallest normal (bits)
  0x7ff0000000000000, 0x7ff0000000000000, // +Infinity (bits)
  0x3eb0000000000000, 0x3eb0000000000000, // 2^-20
  0, 0,
], 16);

// @ts-ignore: decorator
@inline function lc(at: usize): v128 {
  return v128.load(LOGC + at);
}

/**
 * fdlibm log of both lanes for positive normal finite x, without branches:
 * both polynomial tails are computed and one is selected per lane (for k = 0
 * the general formulas give the same bits as fdlibm's shortcuts; f = 0 gives
 * k·ln2 as fdlibm does). The lanes it does not handle (positive subnormal,
 * +Infinity, 0 < |f| ≤ 2^-20, where fdlibm takes other branches) are ORed
 * into the mask at `rareAt` for the caller to redo with fdlog. Zero, negative
 * and NaN inputs give meaningless values: the features never use them.
 */
// @ts-ignore: decorator
@inline function logFast(x: v128, rareAt: usize): v128 {
  const hx = i64x2.shr_u(x, 32);
  const hm = v128.and(hx, lc(LC_HM));
  const i0 = v128.and(i64x2.add(hm, lc(LC_NORM_ADD)), lc(LC_BIT20));
  const xn = v128.or(i64x2.shl(v128.or(hm, v128.xor(i0, lc(LC_ONE_HI))), 32), v128.and(x, lc(LC_LOW32)));
  // k as f64: 2^52 + 2^31 + k carries k in its low mantissa bits
  const k = i64x2.add(i64x2.shr_u(hx, 20), i64x2.shr_u(i0, 20));
  const dk = f64x2.sub(i64x2.add(k, lc(LC_K_BIAS)), lc(LC_K_MAGIC));
  const f = f64x2.sub(xn, lc(LC_ONE));
  const s = f64x2.div(f, f64x2.add(lc(LC_TWO), f));
  const z = f64x2.mul(s, s);
  const w = f64x2.mul(z, z);
  const t1 = f64x2.mul(w, f64x2.add(lc(LC_LG2), f64x2.mul(w, f64x2.add(lc(LC_LG4), f64x2.mul(w, lc(LC_LG6))))));
  const t2 = f64x2.mul(z, f64x2.add(lc(LC_LG1), f64x2.mul(w, f64x2.add(lc(LC_LG3), f64x2.mul(w, f64x2.add(lc(LC_LG5), f64x2.mul(w, lc(LC_LG7))))))));
  const r = f64x2.add(t2, t1);
  const hi = f64x2.mul(dk, lc(LC_LN2_HI));
  const lo = f64x2.mul(dk, lc(LC_LN2_LO));
  const hfsq = f64x2.mul(f64x2.mul(lc(LC_HALF), f), f);
  // fdlibm: (hx - 0x6147a) | (0x6b851 - hx) > 0, i.e. 0x6147a < hx < 0x6b851 here
  const pos = v128.and(i64x2.gt_s(hm, lc(LC_POS_LO)), i64x2.gt_s(lc(LC_POS_HI), hm));
  const ta = f64x2.sub(hfsq, f64x2.add(f64x2.mul(s, f64x2.add(hfsq, r)), lo));
  const tb = f64x2.sub(f64x2.mul(s, f64x2.sub(f, r)), lo);
  const af = f64x2.abs(f);
  const rare = v128.or(
    v128.or(v128.and(i64x2.gt_s(x, lc(LC_ZERO)), i64x2.gt_s(lc(LC_MIN_NORMAL), x)), i64x2.eq(x, lc(LC_INF))),
    v128.and(f64x2.gt(af, lc(LC_ZERO)), f64x2.le(af, lc(LC_SMALL_F))),
  );
  v128.store(rareAt, v128.or(v128.load(rareAt), rare));
  return f64x2.sub(hi, f64x2.sub(v128.bitselect(ta, tb, pos), f));
}

/** fdlog of both lanes. */
// @ts-ignore: decorator
@inline function fdlog2(x: v128): v128 {
  return f64x2.replace_lane(f64x2.splat(fdlog(f64x2.extract_lane(x, 0))), 1, fdlog(f64x2.extract_lane(x, 1)));
}

/** Features of rows i and i + 1 (when `two`) from their values and logs, then their z and levels. */
// @ts-ignore: decorator
@inline function features(i: usize, two: bool, v: v128, m: v128, q: v128, lv: v128, lm: v128, lq: v128, rowEntry: usize, outZ: usize, outLevel: usize): void {
  const zero = f64x2.splat(0);
  const nan = f64x2.splat(NaN);
  const vPos = f64x2.gt(v, zero);
  const mPos = f64x2.gt(m, zero);
  const x0 = v128.bitselect(f64x2.sub(lv, lm), nan, v128.and(vPos, mPos));
  const x1 = v128.bitselect(lm, nan, mPos);
  const x2 = v128.bitselect(f64x2.sub(lv, lq), nan, v128.and(vPos, f64x2.gt(q, zero)));
  rowDeviation(i, v128.shuffle<f64>(x0, x1, 0, 2), f64x2.extract_lane(x2, 0), rowEntry, outZ, outLevel);
  if (two) rowDeviation(i + 1, v128.shuffle<f64>(x0, x1, 1, 3), f64x2.extract_lane(x2, 1), rowEntry, outZ, outLevel);
}

/**
 * Scores plan[P_N] declarations. Returns the number of matched-profile entries
 * the batch produced; when it exceeds plan[P_MATCH_CAPACITY] the match list
 * was truncated and the host must grow it and call again.
 */
export function score(plan: usize): i32 {
  const n = load<i32>(plan + (<usize>P_N << 2));
  const settings = slot(plan, P_SETTINGS);
  const words = <i32>slot(plan, P_WORDS);
  const rows = slot(plan, P_ROWS);
  const numProfiles = <i32>slot(plan, P_NUM_PROFILES);
  const weights = slot(plan, P_WEIGHTS);
  const channels = slot(plan, P_CHANNELS);
  const allRow = slot(plan, P_ALL_ROW);
  const numGroups = <i32>slot(plan, P_NUM_GROUPS);
  const groups = slot(plan, P_GROUPS);
  const colValue = slot(plan, P_COL_VALUE);
  const colMass = slot(plan, P_COL_MASS);
  const colQty = slot(plan, P_COL_QTY);
  const colTax = slot(plan, P_COL_TAX);
  const colIdHash = slot(plan, P_COL_IDHASH);
  const colHs = slot(plan, P_COL_HS);
  const outScore = slot(plan, P_OUT_SCORE);
  const outZ = slot(plan, P_OUT_Z);
  const outLevel = slot(plan, P_OUT_LEVEL);
  const outChannel = slot(plan, P_OUT_CHANNEL);
  const outFlags = slot(plan, P_OUT_FLAGS);
  const outMatchOffset = slot(plan, P_OUT_MATCH_OFFSET);
  const outMatchList = slot(plan, P_OUT_MATCH_LIST);
  const matchCapacity = <u32>slot(plan, P_MATCH_CAPACITY);
  const scratch = slot(plan, P_SCRATCH);
  const imageBase = slot(plan, P_IMAGE_BASE);
  const numNumeric = <i32>slot(plan, P_NUM_NUMERIC);
  const numericDesc = imageBase + slot(plan, P_NUMERIC);
  colExtra = slot(plan, P_COL_EXTRA);
  const history = slot(plan, P_HISTORY);
  if (history != 0) historyPass(history, n, colExtra);

  const zThreshold = setting(settings, S_Z_THRESHOLD);
  const zCap = setting(settings, S_Z_CAP);
  const yellowAt = setting(settings, S_YELLOW);
  const redAt = setting(settings, S_RED);
  const randomThreshold = setting(settings, S_RANDOM_THRESHOLD);
  const randomChannel = <i32>setting(settings, S_RANDOM_CHANNEL);
  const seed = <u32>setting(settings, S_SEED);

  const rowBytes = <usize>words << 3;
  const vecs = words >> 1;
  let matchTotal: u32 = 0;

  // ---- pass 1: features and peer deviation ----------------------------------
  // 1a. The peer groups of a row depend only on its HS code and its peer
  // field codes (its key). Each distinct key of the batch is resolved once
  // (walk the levels, probe the slot table) into a 64-byte entry; each row
  // gets the address of its key's entry.
  const peerCache = slot(plan, P_PEER_CACHE);
  const cacheKeys = <u32>slot(plan, P_PEER_CACHE_KEYS);
  const cacheShift = <u32>slot(plan, P_PEER_CACHE_SHIFT);
  const entries = slot(plan, P_PEER_ENTRIES);
  const rowEntry = slot(plan, P_PEER_ROW_ENTRY);
  const st0 = <u32>slot(plan, P_PEER_STRIDES);
  const st1 = <u32>slot(plan, P_PEER_STRIDES + 1);
  const st2 = <u32>slot(plan, P_PEER_STRIDES + 2);
  const st3 = <u32>slot(plan, P_PEER_STRIDES + 3);
  const pc0 = slot(plan, P_PEER_COLS);
  const pc1 = slot(plan, P_PEER_COLS + 1);
  const pc2 = slot(plan, P_PEER_COLS + 2);
  const pc3 = slot(plan, P_PEER_COLS + 3);
  let numEntries: u32 = 0;
  if (peerCache == 0) {
    // no cache (key space too large): one entry per row
    for (let i = 0; i < n; i++) {
      const e = entries + ((<usize>i + 1) << 6);
      resolve(plan, e, <usize>i);
      store<u32>(rowEntry + (<usize>i << 2), <u32>e);
    }
  } else if (cacheShift == 0) {
    // dense: key → entry index (0 = not resolved yet)
    memory.fill(peerCache, 0, <usize>cacheKeys << 2);
    for (let i = 0; i < n; i++) {
      const i4 = <usize>i << 2;
      let key = load<u32>(colHs + i4);
      if (st0 != 0) key += st0 * load<u32>(pc0 + i4);
      if (st1 != 0) key += st1 * load<u32>(pc1 + i4);
      if (st2 != 0) key += st2 * load<u32>(pc2 + i4);
      if (st3 != 0) key += st3 * load<u32>(pc3 + i4);
      const at = peerCache + (<usize>key << 2);
      let e = load<u32>(at);
      if (e == 0) {
        e = ++numEntries;
        store<u32>(at, e);
        resolve(plan, entries + (<usize>e << 6), <usize>i);
      }
      store<u32>(rowEntry + i4, <u32>(entries + (<usize>e << 6)));
    }
  } else {
    // hashed: buckets of (key + 1, entry index), linear probing
    const cacheMask: u32 = (<u32>1 << (32 - cacheShift)) - 1;
    memory.fill(peerCache, 0, (<usize>cacheMask + 1) << 3);
    for (let i = 0; i < n; i++) {
      const i4 = <usize>i << 2;
      let key = load<u32>(colHs + i4);
      if (st0 != 0) key += st0 * load<u32>(pc0 + i4);
      if (st1 != 0) key += st1 * load<u32>(pc1 + i4);
      if (st2 != 0) key += st2 * load<u32>(pc2 + i4);
      if (st3 != 0) key += st3 * load<u32>(pc3 + i4);
      const tag = key + 1;
      let h = (tag * 0x9e3779b1) >> cacheShift;
      let e: u32 = 0;
      while (true) {
        const at = peerCache + (<usize>h << 3);
        const t = load<u32>(at);
        if (t == tag) { e = load<u32>(at + 4); break; }
        if (t == 0) {
          e = ++numEntries;
          store<u32>(at, tag);
          store<u32>(at + 4, e);
          resolve(plan, entries + (<usize>e << 6), <usize>i);
          break;
        }
        h = (h + 1) & cacheMask;
      }
      store<u32>(rowEntry + i4, <u32>(entries + (<usize>e << 6)));
    }
  }

  // 1b. Features (three natural logs, two rows per f64x2) and robust z from
  // the row's entry. z is NaN when no group qualified (the entry holds NaN)
  // or when the feature is undefined (x is NaN); the level is -1 then. Pairs
  // with a value logFast does not handle are listed (in the match-offset
  // output, which pass 2 overwrites) and redone with the scalar log.
  const zeroV = f64x2.splat(0);
  const rareAt = scratch;
  const fixList = outMatchOffset;
  let numFix: u32 = 0;
  v128.store(rareAt, zeroV);
  for (let i = 0; i < n; i += 2) {
    const i8 = <usize>i << 3;
    const two = i + 1 < n;
    const v = two ? v128.load(colValue + i8) : f64x2.splat(load<f64>(colValue + i8));
    const m = two ? v128.load(colMass + i8) : f64x2.splat(load<f64>(colMass + i8));
    const q = two ? v128.load(colQty + i8) : f64x2.splat(load<f64>(colQty + i8));
    features(<usize>i, two, v, m, q, logFast(v, rareAt), logFast(m, rareAt), logFast(q, rareAt), rowEntry, outZ, outLevel);
    if (v128.any_true(v128.load(rareAt))) {
      store<u32>(fixList + (<usize>numFix << 2), <u32>i);
      numFix++;
      v128.store(rareAt, zeroV);
    }
  }
  for (let t: u32 = 0; t < numFix; t++) {
    const i = <i32>load<u32>(fixList + (<usize>t << 2));
    const i8 = <usize>i << 3;
    const two = i + 1 < n;
    const v = two ? v128.load(colValue + i8) : f64x2.splat(load<f64>(colValue + i8));
    const m = two ? v128.load(colMass + i8) : f64x2.splat(load<f64>(colMass + i8));
    const q = two ? v128.load(colQty + i8) : f64x2.splat(load<f64>(colQty + i8));
    features(<usize>i, two, v, m, q, fdlog2(v), fdlog2(m), fdlog2(q), rowEntry, outZ, outLevel);
  }

  // ---- pass 2: profile bitmaps, score and channel ---------------------------
  const wu01 = f64x2.replace_lane(f64x2.splat(setting(settings, S_W_UNDER)), 1, setting(settings, S_W_UNDER + 1));
  const wo01 = f64x2.replace_lane(f64x2.splat(setting(settings, S_W_UNDER + NF)), 1, setting(settings, S_W_UNDER + NF + 1));
  const wu2 = f64x2.splat(setting(settings, S_W_UNDER + 2));
  const wo2 = f64x2.splat(setting(settings, S_W_UNDER + NF + 2));
  const zThresholdV = f64x2.splat(zThreshold);
  const zCapV = f64x2.splat(zCap);

  // A group of several members (the HS prefix lengths) reads one column: OR
  // its members' rows once per distinct value of the batch, not once per row.
  // Then every group's first LUT is rewritten in place to hold, per distinct
  // value, the address of the row to AND (a combined row or a bitmap row), so
  // that the row loops below do one lookup per group.
  let gq = groups;
  for (let g = 0; g < numGroups; g++) {
    const members = <i32>load<u32>(gq);
    const dictSize = <i32>load<u32>(gq + 4);
    const lut0 = <usize>load<u32>(gq + 16);
    if (members > 1) {
      const combined = <usize>load<u32>(gq + 8);
      for (let code = 0; code < dictSize; code++) {
        const dst = combined + <usize>code * rowBytes;
        for (let mb = 0; mb < members; mb++) {
          const lut = <usize>load<u32>(gq + 16 + (<usize>mb << 3));
          const src = rows + <usize>load<u32>(lut + (<usize>code << 2)) * rowBytes;
          if (mb == 0) copyRow(dst, src, vecs); else orRow(dst, src, vecs);
        }
        store<u32>(lut0 + (<usize>code << 2), <u32>dst);
      }
    } else {
      for (let code = 0; code < dictSize; code++) {
        const at = lut0 + (<usize>code << 2);
        store<u32>(at, <u32>(rows + <usize>load<u32>(at) * rowBytes));
      }
    }
    gq += 12 + (<usize>members << 3);
  }

  if (vecs <= 8) {
    // Up to 1,024 profiles: one declaration at a time, its accumulator in
    // registers (scoreRows). The (column, address LUT) pair of each group is
    // gathered in scratch first; `acc`, after the pairs, receives the
    // accumulator of a declaration with matches.
    let gd = groups;
    for (let g = 0; g < numGroups; g++) {
      const members = <usize>load<u32>(gd);
      store<u32>(scratch + (<usize>g << 3), load<u32>(gd + 12));
      store<u32>(scratch + (<usize>g << 3) + 4, load<u32>(gd + 16));
      gd += 12 + (members << 3);
    }
    const acc = scratch + (((<usize>numGroups << 3) + 63) & ~<usize>63);
    const allAddr = rows + <usize>allRow * rowBytes;
    const numericRows = slot(plan, P_NUMERIC_ROWS);
    for (let b0 = 0; b0 < n; b0 += NUMERIC_BLOCK) {
    const bEnd = min(b0 + NUMERIC_BLOCK, n);
    // numeric conditions first, one tight loop per group: the address of the
    // bitmap row of each row's region, into numericRows[group][row - b0]
    if (numProfiles > 0) {
      for (let ng = 0; ng < numNumeric; ng++) {
        const d = numericDesc + (<usize>ng << 4);
        const dst = numericRows + (<usize>ng * NUMERIC_BLOCK << 2) - (<usize>b0 << 2);
        const k = load<u32>(d + 4);
        const th = imageBase + <usize>load<u32>(d + 8);
        const lut = imageBase + <usize>load<u32>(d + 12);
        const op = load<u32>(d);
        if (op == 4) {
          // unit value: customsValue / netMass
          for (let i = b0; i < bEnd; i++) {
            const x = load<f64>(colValue + (<usize>i << 3)) / load<f64>(colMass + (<usize>i << 3));
            store<u32>(dst + (<usize>i << 2), <u32>(rows + <usize>load<u32>(lut + (<usize>regionCount(th, k, x) << 2)) * rowBytes));
          }
        } else {
          // a column (ops 0-3) or a z feature (ops 5-7, stride NF × 8)
          const base = op == 0 ? colValue : op == 1 ? colMass : op == 2 ? colQty : op == 3 ? colTax : outZ + (<usize>(op - 5) << 3);
          const stride: usize = op < 4 ? 8 : <usize>NF << 3;
          for (let i = b0; i < bEnd; i++) {
            const x = load<f64>(base + <usize>i * stride);
            store<u32>(dst + (<usize>i << 2), <u32>(rows + <usize>load<u32>(lut + (<usize>regionCount(th, k, x) << 2)) * rowBytes));
          }
        }
      }
    }
    // one loop per width, V a literal: keep each call's first argument a
    // literal, or the widths fold into one loop with runtime tests
    switch (numProfiles > 0 ? vecs : 0) {
      case 0: matchTotal = scoreRows(0, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 1: matchTotal = scoreRows(1, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 2: matchTotal = scoreRows(2, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 3: matchTotal = scoreRows(3, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 4: matchTotal = scoreRows(4, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 5: matchTotal = scoreRows(5, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 6: matchTotal = scoreRows(6, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      case 7: matchTotal = scoreRows(7, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags); break;
      default: matchTotal = scoreRows(8, b0, bEnd, scratch, numGroups, allAddr, numericRows, numNumeric, acc, outZ, zThresholdV, zCapV, wu01, wo01, wu2, wo2,
          weights, channels, outMatchOffset, outMatchList, matchCapacity, matchTotal,
          redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags);
    }
    }
  } else {
    // More than 1,024 profiles: block by block (BLOCK rows), one match group at a time:
    // acc[j] (&)= the group's row. Branch-free loops over the block; then one
    // loop per declaration combines the score and walks the surviving profiles.
    const block = <i32>slot(plan, P_BLOCK);
    const acc = scratch;
    for (let b0 = 0; b0 < n; b0 += block) {
      const bn = min(block, n - b0);
      if (numGroups == 0) {
        for (let j = 0; j < bn; j++) memory.copy(acc + <usize>j * rowBytes, rows + <usize>allRow * rowBytes, rowBytes);
      } else {
        let gp = groups;
        for (let g = 0; g < numGroups; g++) {
          const members = <i32>load<u32>(gp);
          const col = <usize>load<u32>(gp + 12) + (<usize>b0 << 2);
          const lut = <usize>load<u32>(gp + 16);
          if (g == 0) {
            for (let j = 0; j < bn; j++) copyRow(acc + <usize>j * rowBytes, <usize>load<u32>(lut + (<usize>load<u32>(col + (<usize>j << 2)) << 2)), vecs);
          } else {
            for (let j = 0; j < bn; j++) andRow(acc + <usize>j * rowBytes, <usize>load<u32>(lut + (<usize>load<u32>(col + (<usize>j << 2)) << 2)), vecs);
          }
          gp += 12 + (<usize>members << 3);
        }
      }
      // numeric conditions: region of the operand → bitmap row
      for (let ng = 0; ng < numNumeric; ng++) {
        const d = numericDesc + (<usize>ng << 4);
        const operand = load<u32>(d);
        const k = load<u32>(d + 4);
        const th = imageBase + <usize>load<u32>(d + 8);
        const lut = imageBase + <usize>load<u32>(d + 12);
        for (let j = 0; j < bn; j++) {
          const x = operandValue(operand, <usize>(b0 + j), colValue, colMass, colQty, colTax, outZ);
          const src = rows + <usize>load<u32>(lut + (<usize>regionCount(th, k, x) << 2)) * rowBytes;
          andRow(acc + <usize>j * rowBytes, src, vecs);
        }
      }

      for (let j = 0; j < bn; j++) {
        const i = b0 + j;
        const zRow = outZ + <usize>(i * NF) * 8;
        let s = deviation(zRow, zThresholdV, zCapV, wu01, wo01, wu2, wo2);
        // matched profiles: weights, counter-measures
        let profileChannel: i32 = CH_GREEN;
        store<u32>(outMatchOffset + (<usize>i << 2), matchTotal);
        const a = acc + <usize>j * rowBytes;
        for (let w = 0; w < words; w++) {
          let bits = load<u64>(a + (<usize>w << 3));
          while (bits != 0) {
            const p = (w << 6) + <i32>ctz(bits);
            bits &= bits - 1;
            s += load<f64>(weights + (<usize>p << 3));
            const pc = <i32>load<u8>(channels + <usize>p);
            if (pc > profileChannel) profileChannel = pc;
            if (matchTotal < matchCapacity) store<u16>(outMatchList + (<usize>matchTotal << 1), <u16>p);
            matchTotal++;
          }
        }
        finish(i, s, profileChannel, redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags);
      }
    }
  }
  store<u32>(outMatchOffset + (<usize>n << 2), matchTotal);
  return <i32>matchTotal;
}
