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

/**
 * Scores plan[P_N] declarations. Returns the number of matched-profile entries
 * the batch produced; when it exceeds plan[P_MATCH_CAPACITY] the match list
 * was truncated and the host must grow it and call again.
 */
export function score(plan: usize): i32 {
  const n = load<i32>(plan + (<usize>P_N << 2));
  const settings = slot(plan, P_SETTINGS);
  const peerKeys = slot(plan, P_PEER_KEYS);
  const peerMask = <u32>slot(plan, P_PEER_MASK);
  const peerShift = <u64>slot(plan, P_PEER_SHIFT);
  const numLevels = <i32>slot(plan, P_NUM_LEVELS);
  const levels = slot(plan, P_LEVELS);
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
  const hsLut = slot(plan, P_HS_LUT);
  const hsDict = slot(plan, P_HS_DICT);
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

  const minGroup = setting(settings, S_MIN_GROUP);
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
  // A tight loop of its own, so that the CPU overlaps the cache misses of
  // successive declarations' hash probes.
  for (let i = 0; i < n; i++) {
    const i8 = <usize>i << 3;
    const v = load<f64>(colValue + i8);
    const m = load<f64>(colMass + i8);
    const q = load<f64>(colQty + i8);
    const lv = Math.log(v);
    const lm = Math.log(m);
    const lq = Math.log(q);
    let remaining: u32 = 0;
    let x0: f64 = NaN;
    let x1: f64 = NaN;
    let x2: f64 = NaN;
    if (v > 0 && m > 0) { x0 = lv - lm; remaining |= 1; }
    if (m > 0) { x1 = lm; remaining |= 2; }
    if (v > 0 && q > 0) { x2 = lv - lq; remaining |= 4; }
    let s0: usize = 0;
    let s1: usize = 0;
    let s2: usize = 0;
    let lev0: i32 = -1;
    let lev1: i32 = -1;
    let lev2: i32 = -1;
    const hsCode = <usize>load<u32>(colHs + (<usize>i << 2));
    for (let l = 0; l < numLevels && remaining != 0; l++) {
      const prefix = load<u64>(hsLut + ((<usize>l * hsDict + hsCode) << 3));
      if (prefix == NONE64) continue;
      const pf = load<i32>(levels + (<usize>l << 3) + 4);
      let cat: u64 = 0;
      if (pf >= 0) {
        const code = load<u32>(slot(plan, P_PEER_COLS + pf) + (<usize>i << 2));
        const id = load<u32>(slot(plan, P_PEER_LUTS + pf) + (<usize>code << 2));
        if (id == NONE32) continue;
        cat = <u64>id;
      }
      const at = findSlot(peerKeys, peerMask, peerShift, (<u64>l << 58) | (prefix << 24) | cat);
      if (at == 0) continue;
      const ok = load<u32>(at + 12) & remaining;
      if (ok == 0) continue;
      if ((ok & 1) != 0) { s0 = at; lev0 = l; }
      if ((ok & 2) != 0) { s1 = at; lev1 = l; }
      if ((ok & 4) != 0) { s2 = at; lev2 = l; }
      remaining &= ~ok;
    }
    const zRow = outZ + <usize>(i * NF) * 8;
    const levelRow = outLevel + <usize>(i * NF);
    let z0: f64 = NaN;
    let z1: f64 = NaN;
    let z2: f64 = NaN;
    if (s0 != 0) z0 = (x0 - load<f64>(s0 + 16)) / load<f64>(s0 + 24);
    if (s1 != 0) z1 = (x1 - load<f64>(s1 + 32)) / load<f64>(s1 + 40);
    if (s2 != 0) z2 = (x2 - load<f64>(s2 + 48)) / load<f64>(s2 + 56);
    store<f64>(zRow, z0);
    store<f64>(zRow + 8, z1);
    store<f64>(zRow + 16, z2);
    store<i8>(levelRow, <i8>lev0);
    store<i8>(levelRow + 1, <i8>lev1);
    store<i8>(levelRow + 2, <i8>lev2);
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
    for (let i = 0; i < n; i++) {
      const i4 = <usize>i << 2;
      let a0 = all0;
      let a1 = all1;
      if (bitmaps) {
        let addr = <usize>load<u32>(<usize>load<u32>(scratch + 4) + (<usize>load<u32>(<usize>load<u32>(scratch) + i4) << 2));
        a0 = v128.load(addr);
        a1 = v128.and(v128.load(addr + 16), hiMask);
        for (let g = 1; g < numGroups; g++) {
          const d = scratch + (<usize>g << 3);
          addr = <usize>load<u32>(<usize>load<u32>(d + 4) + (<usize>load<u32>(<usize>load<u32>(d) + i4) << 2));
          a0 = v128.and(a0, v128.load(addr));
          a1 = v128.and(a1, v128.load(addr + 16));
        }
      }
      if (v128.any_true(v128.or(a0, a1))) {
        for (let ng = 0; ng < numNumeric; ng++) {
          const d = numericDesc + (<usize>ng << 4);
          const x = operandValue(load<u32>(d), <usize>i, colValue, colMass, colQty, colTax, outZ);
          const lut = imageBase + <usize>load<u32>(d + 12);
          const src = rows + <usize>load<u32>(lut + (<usize>region(imageBase + <usize>load<u32>(d + 8), load<u32>(d + 4), x) << 2)) * rowBytes;
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
