/**
 * The kernel's memory contract: plan slots (u32 pointers and counts, twin of
 * the P_* constants in assembly/index.ts) and the layout of a score result,
 * which is identical in kernel memory and in the transferable result buffer
 * (so that a result leaves the kernel with one slice).
 */
import { NF } from '../peers/peer-groups.js';
import type { BatchText } from '../text/signals.js';
import type { BatchHistory } from '../learn/history.js';

export const PLAN = {
  N: 0, SETTINGS: 1, PEER_KEYS: 2, PEER_VALS: 3, PEER_MASK: 4, STATS: 5, NUM_LEVELS: 6, LEVELS: 7,
  WORDS: 8, ROWS: 9, NUM_PROFILES: 10, WEIGHTS: 11, CHANNELS: 12,
  PEER_CACHE: 13, PEER_CACHE_KEYS: 14, PEER_CACHE_SHIFT: 15, ALL_ROW: 16, NUM_GROUPS: 17, GROUPS: 18,
  COL_VALUE: 19, COL_MASS: 20, COL_QTY: 21, COL_TAX: 22, COL_IDHASH: 23, COL_HS: 24,
  HS_LUT: 25, HS_DICT: 26, PEER_COLS: 27, PEER_LUTS: 31,
  OUT_SCORE: 35, OUT_Z: 36, OUT_LEVEL: 37, OUT_CHANNEL: 38, OUT_FLAGS: 39,
  OUT_MATCH_OFFSET: 40, OUT_MATCH_LIST: 41, MATCH_CAPACITY: 42, SCRATCH: 43, PEER_SHIFT: 44, BLOCK: 45, IMAGE_BASE: 46, NUM_NUMERIC: 47, NUMERIC: 48,
  PEER_ENTRIES: 49, PEER_ROW_ENTRY: 50, NUMERIC_ROWS: 51, PEER_STRIDES: 52, COL_EXTRA: 56, HISTORY: 57,
} as const;
export const PLAN_SLOTS = 60;
/** Rows per block of the kernel's numeric-condition columns (NUMERIC_BLOCK in assembly/index.ts). */
export const NUMERIC_BLOCK = 256;

/** Decision flags. */
export const FLAG_CONTROL = 1;
export const FLAG_PROFILE_CHANNEL = 2;

export interface ResultLayout {
  score: number;
  z: number;
  matchOffset: number;
  level: number;
  channel: number;
  flags: number;
  matchList: number;
  /** Bytes before the match list. */
  fixedBytes: number;
}

export function resultLayout(n: number): ResultLayout {
  const score = 0;
  const z = score + n * 8;
  const matchOffset = z + n * NF * 8;
  const level = matchOffset + (n + 1) * 4;
  const channel = level + n * NF;
  const flags = channel + n;
  const matchList = Math.ceil((flags + n) / 8) * 8;
  return { score, z, matchOffset, level, channel, flags, matchList, fixedBytes: matchList };
}

/** A batch's scores, in one transferable buffer. */
export interface ScoreResult {
  size: number;
  /** Holds every view below (with Kernel.score's reuse, the kernel's own buffer, longer than the result). */
  buffer: ArrayBuffer;
  score: Float64Array;
  /** Robust z per feature, NaN when no peer group qualified (n × NF). */
  z: Float64Array;
  /** Peer level index used per feature, -1 when none (n × NF). */
  level: Int8Array;
  channel: Uint8Array;
  flags: Uint8Array;
  /** Matched profiles of row i: matchList[matchOffset[i] .. matchOffset[i+1]). */
  matchOffset: Uint32Array;
  matchList: Uint16Array;
  /** Ruleset version that made these decisions. */
  rulesetVersion: string;
  /** Time spent inside the kernel call, nanoseconds. */
  kernelNs: number;
  /** Text signals (keyword terms, misclassification) per row, when the ruleset has any. */
  text?: BatchText;
  /**
   * What finds each row's historical-table entries when its decision is built
   * (HistoryIndex.entry), when the ruleset has tables: views of the scored
   * batch's code columns, so the batch must not be modified while the result is in use.
   */
  history?: BatchHistory;
}

export function resultViews(buffer: ArrayBuffer, n: number, rulesetVersion: string, kernelNs: number, text?: BatchText, history?: BatchHistory, matches?: number): ScoreResult {
  const L = resultLayout(n);
  // the buffer may be longer than the result (a reused one, Kernel.score's reuse): `matches` says where it ends
  const total = matches ?? (buffer.byteLength - L.matchList) >> 1;
  const out: ScoreResult = {
    size: n,
    buffer,
    score: new Float64Array(buffer, L.score, n),
    z: new Float64Array(buffer, L.z, n * NF),
    level: new Int8Array(buffer, L.level, n * NF),
    channel: new Uint8Array(buffer, L.channel, n),
    flags: new Uint8Array(buffer, L.flags, n),
    matchOffset: new Uint32Array(buffer, L.matchOffset, n + 1),
    matchList: new Uint16Array(buffer, L.matchList, total),
    rulesetVersion,
    kernelNs,
  };
  if (text) out.text = text;
  if (history) out.history = history;
  return out;
}
