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
 * For rows [from, to): the address of the bitmap row of the region of operand
 * `op` among a numeric group's thresholds, stored at dst + 4·row. Inlined with
 * a constant `op`, so each operand gets its own loop.
 */
// @ts-ignore: decorator
@inline function numericColumn(op: u32, from: i32, to: i32, dst: usize, th: usize, k: u32, lut: usize, rows: usize, rowBytes: usize, colValue: usize, colMass: usize, colQty: usize, colTax: usize, outZ: usize): void {
  for (let i = from; i < to; i++) {
    const x = operandValue(op, <usize>i, colValue, colMass, colQty, colTax, outZ);
    store<u32>(dst + (<usize>i << 2), <u32>(rows + <usize>load<u32>(lut + (<usize>region(th, k, x) << 2)) * rowBytes));
  }
}

/**
 * Region of x among k sorted thresholds: 2j for the open interval below t(j),
 * 2j+1 for x == t(j), 2k+1 for NaN. Branch-free lower bound.
 */
// @ts-ignore: decorator
@inline function region(th: usize, k: u32, x: f64): u32 {
  if (x != x) return 2 * k + 1;
  let base: u32 = 0;
  let len: u32 = k;
  while (len > 1) {
    const half = len >> 1;
    base = select<u32>(base + half, base, load<f64>(th + (<usize>(base + half - 1) << 3)) < x);
    len -= half;
  }
  const t = load<f64>(th + (<usize>base << 3));
  const lo = base + (t < x ? 1 : 0);
  return 2 * lo + (lo < k && load<f64>(th + (<usize>lo << 3)) == x ? 1 : 0);
}

/** Deviation part of the score: capped excess of |z| over the threshold, per feature and side. */
// @ts-ignore: decorator
@inline function deviation(zRow: usize, zThreshold: f64, zCap: f64, wu0: f64, wu1: f64, wu2: f64, wo0: f64, wo1: f64, wo2: f64): f64 {
  let s: f64 = 0;
  const z0 = load<f64>(zRow);
  if (z0 == z0) {
    const u = -z0 - zThreshold;
    if (u > 0) s += wu0 * min(u, zCap);
    const o = z0 - zThreshold;
    if (o > 0) s += wo0 * min(o, zCap);
  }
  const z1 = load<f64>(zRow + 8);
  if (z1 == z1) {
    const u = -z1 - zThreshold;
    if (u > 0) s += wu1 * min(u, zCap);
    const o = z1 - zThreshold;
    if (o > 0) s += wo1 * min(o, zCap);
  }
  const z2 = load<f64>(zRow + 16);
  if (z2 == z2) {
    const u = -z2 - zThreshold;
    if (u > 0) s += wu2 * min(u, zCap);
    const o = z2 - zThreshold;
    if (o > 0) s += wo2 * min(o, zCap);
  }
  return s;
}

/** Channel from the thresholds, raised by counter-measures, then random selection of green rows. */
// @ts-ignore: decorator
@inline function finish(i: i32, s: f64, profileChannel: i32, redAt: f64, yellowAt: f64, randomThreshold: f64, randomChannel: i32, seed: u32, colIdHash: usize, outScore: usize, outChannel: usize, outFlags: usize): void {
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

/**
 * fdlibm log of both lanes, without branches: every branch of the scalar code
 * is computed and the right one selected per lane (for k = 0 the general
 * formulas give the same bits as fdlibm's shortcuts). Exact for positive
 * inputs (subnormals are scaled by 2^54 first, as in fdlibm); NaN and
 * +Infinity give x + x. Zero and negative inputs give meaningless values: the
 * features never use them.
 */
// @ts-ignore: decorator
@inline function log2x(x0: v128): v128 {
  const sub = f64x2.lt(x0, f64x2.splat(MIN_NORMAL));
  const x = v128.bitselect(f64x2.mul(x0, f64x2.splat(TWO54)), x0, sub);
  const hx = i64x2.shr_u(x, 32); // high words (x > 0)
  const hm = v128.and(hx, i64x2.splat(0x000fffff));
  const i0 = v128.and(i64x2.add(hm, i64x2.splat(0x95f64)), i64x2.splat(0x100000));
  const xn = v128.or(i64x2.shl(v128.or(hm, v128.xor(i0, i64x2.splat(0x3ff00000))), 32), v128.and(x, i64x2.splat(0xffffffff)));
  // k = exponent + (i0 >> 20) - 1023, minus 54 for subnormals; as f64 through 2^52 + 2^31 + k
  const k = i64x2.add(i64x2.add(i64x2.shr_u(hx, 20), i64x2.shr_u(i0, 20)), v128.and(sub, i64x2.splat(-54)));
  const dk = f64x2.sub(i64x2.add(k, i64x2.splat(0x4330000080000000 - 1023)), f64x2.splat(4503601774854144.0));
  const f = f64x2.sub(xn, f64x2.splat(1.0));
  const s = f64x2.div(f, f64x2.add(f64x2.splat(2.0), f));
  const z = f64x2.mul(s, s);
  const w = f64x2.mul(z, z);
  const t1 = f64x2.mul(w, f64x2.add(f64x2.splat(LG2), f64x2.mul(w, f64x2.add(f64x2.splat(LG4), f64x2.mul(w, f64x2.splat(LG6))))));
  const t2 = f64x2.mul(z, f64x2.add(f64x2.splat(LG1), f64x2.mul(w, f64x2.add(f64x2.splat(LG3), f64x2.mul(w, f64x2.add(f64x2.splat(LG5), f64x2.mul(w, f64x2.splat(LG7))))))));
  const r = f64x2.add(t2, t1);
  const hi = f64x2.mul(dk, f64x2.splat(LN2_HI));
  const lo = f64x2.mul(dk, f64x2.splat(LN2_LO));
  const hfsq = f64x2.mul(f64x2.mul(f64x2.splat(0.5), f), f);
  // (hx - 0x6147a) | (0x6b851 - hx) > 0: hi - ((hfsq - (s*(hfsq+r) + lo)) - f)
  const ra = f64x2.sub(hi, f64x2.sub(f64x2.sub(hfsq, f64x2.add(f64x2.mul(s, f64x2.add(hfsq, r)), lo)), f));
  // otherwise: hi - ((s*(f-r) - lo) - f)
  const rb = f64x2.sub(hi, f64x2.sub(f64x2.sub(f64x2.mul(s, f64x2.sub(f, r)), lo), f));
  // |f| < 2^-20: hi - ((f*f*(0.5 - 0.333…*f) - lo) - f)
  const rs = f64x2.sub(hi, f64x2.sub(f64x2.sub(f64x2.mul(f64x2.mul(f, f), f64x2.sub(f64x2.splat(0.5), f64x2.mul(f64x2.splat(0.33333333333333333), f))), lo), f));
  const pos = i64x2.gt_s(v128.or(i64x2.sub(hm, i64x2.splat(0x6147a)), i64x2.sub(i64x2.splat(0x6b851), hm)), i64x2.splat(0));
  const small = i64x2.lt_s(v128.and(i64x2.add(hm, i64x2.splat(2)), i64x2.splat(0x000fffff)), i64x2.splat(3));
  const res = v128.bitselect(rs, v128.bitselect(ra, rb, pos), small);
  return v128.bitselect(res, f64x2.add(x, x), f64x2.lt(x, f64x2.splat(Infinity)));
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
  // or when the feature is undefined (x is NaN); the level is -1 then.
  const nanV = f64x2.splat(NaN);
  const zeroV = f64x2.splat(0);
  for (let i = 0; i < n; i += 2) {
    const i8 = <usize>i << 3;
    const two = i + 1 < n;
    const v = two ? v128.load(colValue + i8) : f64x2.splat(load<f64>(colValue + i8));
    const m = two ? v128.load(colMass + i8) : f64x2.splat(load<f64>(colMass + i8));
    const q = two ? v128.load(colQty + i8) : f64x2.splat(load<f64>(colQty + i8));
    const lv = log2x(v);
    const lm = log2x(m);
    const lq = log2x(q);
    const vPos = f64x2.gt(v, zeroV);
    const mPos = f64x2.gt(m, zeroV);
    const x0 = v128.bitselect(f64x2.sub(lv, lm), nanV, v128.and(vPos, mPos));
    const x1 = v128.bitselect(lm, nanV, mPos);
    const x2 = v128.bitselect(f64x2.sub(lv, lq), nanV, v128.and(vPos, f64x2.gt(q, zeroV)));
    rowDeviation(<usize>i, v128.shuffle<f64>(x0, x1, 0, 2), f64x2.extract_lane(x2, 0), rowEntry, outZ, outLevel);
    if (two) rowDeviation(<usize>i + 1, v128.shuffle<f64>(x0, x1, 1, 3), f64x2.extract_lane(x2, 1), rowEntry, outZ, outLevel);
  }

  // ---- pass 2: profile bitmaps, score and channel ---------------------------
  const wUnder0 = setting(settings, S_W_UNDER);
  const wUnder1 = setting(settings, S_W_UNDER + 1);
  const wUnder2 = setting(settings, S_W_UNDER + 2);
  const wOver0 = setting(settings, S_W_UNDER + NF);
  const wOver1 = setting(settings, S_W_UNDER + NF + 1);
  const wOver2 = setting(settings, S_W_UNDER + NF + 2);

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

  if (vecs <= 2) {
    // Up to 256 profiles: one declaration at a time, its accumulator in two
    // v128 locals (the second stays zero with 128 profiles or fewer). The
    // (column, address LUT) pair of each group is gathered in scratch first.
    let gd = groups;
    for (let g = 0; g < numGroups; g++) {
      const members = <usize>load<u32>(gd);
      store<u32>(scratch + (<usize>g << 3), load<u32>(gd + 12));
      store<u32>(scratch + (<usize>g << 3) + 4, load<u32>(gd + 16));
      gd += 12 + (members << 3);
    }
    const hiMask = vecs == 2 ? i64x2.splat(-1) : i64x2.splat(0);
    const allAddr = rows + <usize>allRow * rowBytes;
    const all0 = numProfiles > 0 ? v128.load(allAddr) : i64x2.splat(0);
    const all1 = numProfiles > 0 ? v128.and(v128.load(allAddr + 16), hiMask) : i64x2.splat(0);
    const bitmaps = numProfiles > 0 && numGroups > 0;
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
        switch (load<u32>(d)) {
          case 0: numericColumn(0, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 1: numericColumn(1, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 2: numericColumn(2, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 3: numericColumn(3, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 4: numericColumn(4, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 5: numericColumn(5, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          case 6: numericColumn(6, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
          default: numericColumn(7, b0, bEnd, dst, th, k, lut, rows, rowBytes, colValue, colMass, colQty, colTax, outZ); break;
        }
      }
    }
    for (let i = b0; i < bEnd; i++) {
      const i4 = <usize>i << 2;
      let a0 = all0;
      let a1 = all1;
      if (bitmaps) {
        let r = groupRow(<usize>load<u32>(scratch), <usize>load<u32>(scratch + 4), i4);
        a0 = v128.load(r);
        a1 = v128.and(v128.load(r + 16), hiMask);
        for (let g = 1; g < numGroups; g++) {
          const d = scratch + (<usize>g << 3);
          r = groupRow(<usize>load<u32>(d), <usize>load<u32>(d + 4), i4);
          a0 = v128.and(a0, v128.load(r));
          a1 = v128.and(a1, v128.load(r + 16));
        }
      }
      if (numProfiles > 0) {
        const nr = numericRows + (<usize>(i - b0) << 2);
        for (let ng = 0; ng < numNumeric; ng++) {
          const src = <usize>load<u32>(nr + (<usize>ng * NUMERIC_BLOCK << 2));
          a0 = v128.and(a0, v128.load(src));
          a1 = v128.and(a1, v128.load(src + 16));
        }
      }
      const zRow = outZ + <usize>(i * NF) * 8;
      let s = deviation(zRow, zThreshold, zCap, wUnder0, wUnder1, wUnder2, wOver0, wOver1, wOver2);
      let profileChannel: i32 = CH_GREEN;
      store<u32>(outMatchOffset + i4, matchTotal);
      if (v128.any_true(v128.or(a0, a1))) {
        for (let w = 0; w < 4; w++) {
          let bits = w == 0 ? i64x2.extract_lane(a0, 0) : w == 1 ? i64x2.extract_lane(a0, 1) : w == 2 ? i64x2.extract_lane(a1, 0) : i64x2.extract_lane(a1, 1);
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
      }
      finish(i, s, profileChannel, redAt, yellowAt, randomThreshold, randomChannel, seed, colIdHash, outScore, outChannel, outFlags);
    }
    }
  } else {
    // More profiles: block by block (BLOCK rows), one match group at a time:
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
          const src = rows + <usize>load<u32>(lut + (<usize>region(th, k, x) << 2)) * rowBytes;
          andRow(acc + <usize>j * rowBytes, src, vecs);
        }
      }

      for (let j = 0; j < bn; j++) {
        const i = b0 + j;
        const zRow = outZ + <usize>(i * NF) * 8;
        let s = deviation(zRow, zThreshold, zCap, wUnder0, wUnder1, wUnder2, wOver0, wOver1, wOver2);
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
