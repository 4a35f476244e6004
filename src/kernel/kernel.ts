/**
 * Host side of the WebAssembly kernel: loads the module once, keeps a compiled
 * ruleset image in linear memory, lays a batch out above it (columns, lookup
 * tables, plan, outputs) through cached typed-array views, calls score(plan)
 * and takes the result out with one slice. Views are recreated whenever
 * memory.grow() replaced the buffer.
 */
import { readFileSync } from 'node:fs';
import { errors } from '../errors.js';
import type { CategoricalColumn, ColumnarBatch } from '../model/columnar.js';
import { PEER_FIELDS } from '../peers/peer-groups.js';
import { NUMERIC_OPERANDS } from '../profiles/profile.js';
import { openCompiled, NONE32, type CompiledMeta, type CompiledRuleset } from '../ruleset/compile.js';
import { kernelWasmPath } from '../paths.js';
import { TextScorer, type BatchText } from '../text/signals.js';
import { historyIndex, type HistoryColumn, type HistoryIndex } from '../learn/history.js';
import { NUMERIC_BLOCK, PLAN, PLAN_SLOTS, resultLayout, resultViews, type ScoreResult } from './layout.js';

interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  mix32(x: number): number;
  score(plan: number): number;
}

interface LoadedRuleset {
  meta: CompiledMeta;
  base: number;
  end: number;
  /** Per match group, per member: value → bitmap row. */
  memberMaps: Map<string, number>[][];
  /** Per peer field (PEER_FIELDS order): value → id; undefined when no level uses the field. */
  peerMaps: (Map<string, number> | undefined)[];
  /** Code columns the kernel reads for this ruleset. */
  columns: CategoricalColumn[];
  /** Text signals of a batch (keyword terms, misclassification). */
  text: TextScorer;
  /** Historical non-compliance tables, when the ruleset has them. */
  history?: HistoryIndex;
  /** The keyword match group, when profiles have keyword conditions. */
  keyword?: KeywordGroup;
}

/** Host side of the keyword match group: bitmap rows ORed per distinct set of terms. */
interface KeywordGroup {
  group: number;
  termRows: number[];
  wildcardRow: number;
  /** Bitmap row r of the image, as u32 words. */
  row(r: number): Uint32Array;
  /** Combined rows by term set ("3,17"), bounded. */
  combined: Map<string, Uint32Array>;
}

const COMBINED_LIMIT = 65_536;

const PAGE = 65536;
/** A reused result buffer up to this size is kept whatever the results that follow (ScoreOptions.reuse); a larger one, while they fill a quarter of it. */
export const SPARE_KEEP_BYTES = 16 * 1024 * 1024;

/**
 * The size of the buffer score() with reuse copies a result of `bytes`
 * into, given the size of the one it has (0: none; a transferred buffer
 * reads 0 too): the same while it holds the result (and is not far too
 * large), else the result's size with room to grow, in whole pages.
 */
export function spareSize(current: number, bytes: number): number {
  if (current >= bytes && !(current > SPARE_KEEP_BYTES && current > 4 * bytes)) return current;
  return alignUp(Math.max(bytes, Math.min(1.25 * current, 2 * bytes)), PAGE);
}
/** Peer key spaces up to this size (or 4 × batch size) are cached in a dense index. */
const DENSE_PEER_KEYS = 65536;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Codes of a column the tables read: the batch's dictionary, or for the tax rate none plus one per rate value of the tables. */
const codeCount = (hx: HistoryIndex, batch: ColumnarBatch, c: HistoryColumn): number => (c === 'taxRate' ? hx.parts[hx.taxPart].values.length + 1 : batch.dicts[c].length);
/** Flag of a combination's parts word in the history block: its table has 8-byte slots (assembly/index.ts NARROW). */
const NARROW_COMBINATION = 0x100;

let cachedModule: WebAssembly.Module | undefined;
let cachedDebugModule: WebAssembly.Module | undefined;

function compileModule(debug: boolean): WebAssembly.Module {
  const cached = debug ? cachedDebugModule : cachedModule;
  if (cached) return cached;
  let bytes: Buffer;
  const path = kernelWasmPath(debug);
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw errors.SEL_ERR_KERNEL_LOAD(`cannot read ${path}: ${(e as Error).message}; run \`npm run build\``, { field: 'kernel', expected: 'a built kernel', got: path });
  }
  const mod = new WebAssembly.Module(bytes);
  if (debug) cachedDebugModule = mod; else cachedModule = mod;
  return mod;
}

export interface KernelOptions {
  /** Use the debug build (bounds checks, names). */
  debug?: boolean;
  /**
   * How the kernel caches peer lookups per distinct key (HS code × peer field
   * codes) of a batch: `auto` (default) picks a dense index when the key space
   * is small, else a hash table; the others force a strategy (for tests).
   */
  peerCache?: PeerCacheMode;
}

export interface ScoreOptions {
  /**
   * The result's buffer is this kernel's own, refilled by its next score()
   * with reuse: read the result before then, and do not keep it (nor
   * transfer its buffer). For a caller that consumes each result in place
   * (a scoring worker's encoding, a back-test's counts). Without it every
   * result is a new buffer: for a large batch, fresh pages the system
   * faults in one by one (100,000 rows: 4.1 MB, whose copy took longer than
   * scoring them on the 2-core machine of docs/benchmarks.md).
   */
  reuse?: boolean;
}

export type PeerCacheMode = 'auto' | 'dense' | 'hashed' | 'off';
const PEER_CACHE_MODES: readonly PeerCacheMode[] = ['auto', 'dense', 'hashed', 'off'];

export class Kernel {
  private readonly exports: KernelExports;
  private readonly memory: WebAssembly.Memory;
  private readonly heap: number;
  private buf: ArrayBuffer;
  private u8!: Uint8Array;
  private u32!: Uint32Array;
  private f64!: Float64Array;
  private rs: LoadedRuleset | undefined;
  private matchCapacity = 0;
  /** The result buffer score() with reuse last filled (see ScoreOptions.reuse). */
  private spare: ArrayBuffer | undefined;
  private readonly peerCache: PeerCacheMode;

  constructor(options: KernelOptions = {}) {
    const peerCache = options.peerCache ?? 'auto';
    if (!PEER_CACHE_MODES.includes(peerCache)) {
      throw errors.SEL_ERR_OPTION_INVALID(`options.peerCache must be one of ${PEER_CACHE_MODES.join(', ')}`, { field: 'peerCache', expected: PEER_CACHE_MODES.join(' | '), got: peerCache });
    }
    this.peerCache = peerCache;
    const instance = new WebAssembly.Instance(compileModule(options.debug === true), {});
    this.exports = instance.exports as unknown as KernelExports;
    this.memory = this.exports.memory;
    this.heap = alignUp(this.exports.heapBase(), 64);
    this.buf = this.memory.buffer;
    this.refreshViews();
  }

  get rulesetVersion(): string | undefined {
    return this.rs?.meta.version;
  }

  get rulesetMeta(): CompiledMeta | undefined {
    return this.rs?.meta;
  }

  /** The kernel's own mix32 (for tests of the hash twin). */
  mix32(x: number): number {
    return this.exports.mix32(x) >>> 0;
  }

  private refreshViews(): void {
    this.buf = this.memory.buffer;
    this.u8 = new Uint8Array(this.buf);
    this.u32 = new Uint32Array(this.buf);
    this.f64 = new Float64Array(this.buf);
  }

  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      try {
        this.memory.grow(Math.ceil((bytes - have) / PAGE));
      } catch (e) {
        throw errors.SEL_ERR_KERNEL_MEMORY(`cannot grow kernel memory to ${bytes} bytes: ${(e as Error).message}`, { field: 'memory', expected: 'at most 4 GiB', got: bytes });
      }
    }
    if (this.memory.buffer !== this.buf) this.refreshViews();
  }

  /** Copies a compiled ruleset into kernel memory; later batches score with it. */
  loadRuleset(compiled: CompiledRuleset | SharedArrayBuffer): void {
    const c = compiled instanceof SharedArrayBuffer ? openCompiled(compiled) : compiled;
    const meta = c.meta;
    const base = this.heap;
    const end = alignUp(base + meta.imageByteLength, 64);
    this.ensure(end);
    this.u8.set(new Uint8Array(c.buffer, c.imageOffset, meta.imageByteLength), base);
    const columns = new Set<CategoricalColumn>(['hs']);
    const peerMaps: (Map<string, number> | undefined)[] = PEER_FIELDS.map(() => undefined);
    for (const level of meta.levels) {
      if (level.field < 0 || peerMaps[level.field]) continue;
      peerMaps[level.field] = new Map(meta.peerDicts[level.field].map((v, i) => [v, i]));
      columns.add(PEER_FIELDS[level.field]);
    }
    const memberMaps = meta.matchGroups.map((g) => g.members.map((m) => {
      columns.add(m.column);
      return new Map(m.values.map((v, i) => [v, m.rows[i]]));
    }));
    const rs: LoadedRuleset = { meta, base, end, memberMaps, peerMaps, columns: [...columns], text: new TextScorer(meta.text) };
    if (meta.history) rs.history = historyIndex(meta.history);
    const kg = meta.matchGroups.findIndex((g) => g.field === 'keywords');
    if (kg >= 0 && meta.keywordRows) {
      const image = new Uint32Array(c.buffer, c.imageOffset + meta.sections.rows, meta.numRows * meta.words * 2);
      const w = meta.words * 2;
      rs.keyword = { group: kg, ...meta.keywordRows, row: (r) => image.subarray(r * w, r * w + w), combined: new Map() };
    }
    this.rs = rs;
  }

  /**
   * The text configuration of the loaded ruleset as a string: two kernels
   * with the same key compute the same text signals for a batch, so one can
   * pass its `result.text` to the other (back-tests score every batch twice).
   */
  get textKey(): string {
    return JSON.stringify(this.rs?.meta.text ?? null);
  }

  /**
   * Scores one batch with the loaded ruleset. `text`: the batch's text
   * signals when already computed by a kernel with the same textKey.
   */
  score(batch: ColumnarBatch, text?: BatchText, options: ScoreOptions = {}): ScoreResult {
    const rs = this.rs;
    if (!rs) throw errors.SEL_ERR_RULESET_INVALID('no ruleset loaded in the kernel', { field: 'ruleset', expected: 'loadRuleset() before score()' });
    const meta = rs.meta;
    const n = batch.size;
    const L = meta.levels.length;
    const hsDict = batch.dicts.hs;
    text ??= rs.text.active ? rs.text.batch(batch) : undefined;
    const keywordLut = rs.keyword ? this.keywordRows(rs.keyword, text!) : undefined;
    // the extra score column: text signals, then (added by the kernel) historical-table contributions
    const textExtra = text !== undefined && text.signals.some((x) => x.extra !== 0);
    const hx = rs.history;
    const hLuts = hx ? hx.partLuts(batch) : undefined;
    const hAeo = hx !== undefined && (hx.tables.aeoReduction ?? 0) !== 0;
    let cap = Math.max(this.matchCapacity, 1024, n * 2);
    for (;;) {
      // ---- lay the batch out above the ruleset ------------------------------
      let at = rs.end;
      const alloc = (bytes: number, a = 16): number => { at = alignUp(at, a); const p = at; at += bytes; return p; };
      const pValue = alloc(n * 8), pMass = alloc(n * 8), pQty = alloc(n * 8), pTax = alloc(n * 8);
      const pIdHash = alloc(n * 4);
      const colPtr = new Map<CategoricalColumn, number>();
      for (const c of rs.columns) colPtr.set(c, alloc(n * 4));
      // the columns the historical tables read (the kernel writes the tax rate's codes)
      const hColPtr = hx ? hx.columns.map((c) => (c !== 'taxRate' && colPtr.has(c) ? colPtr.get(c)! : alloc(n * 4))) : [];
      const pAeo = hAeo ? colPtr.get('aeo') ?? alloc(n * 4) : 0;
      const pHsLut = alloc(L * hsDict.length * 8);
      // Peer cache: a row's groups depend only on its key (HS code and the codes
      // of the peer fields the levels use); the kernel resolves each distinct key once.
      const strides = PEER_FIELDS.map(() => 0);
      let keySpace = hsDict.length;
      rs.peerMaps.forEach((m, fi) => {
        if (!m) return;
        strides[fi] = keySpace;
        keySpace *= batch.dicts[PEER_FIELDS[fi]].length;
      });
      let cacheShift = 0, cacheBytes = 0;
      const mode = this.peerCache;
      if (keySpace >= 2 ** 32 || mode === 'off') {
        // no cache: the kernel resolves every row on its own
      } else if (mode === 'dense' || (mode === 'auto' && keySpace <= Math.max(DENSE_PEER_KEYS, 4 * n))) {
        cacheBytes = keySpace * 4; // dense: key → entry index
      } else {
        const bits = Math.max(4, Math.ceil(Math.log2(2 * Math.min(n, keySpace) + 1)));
        cacheShift = 32 - bits; // hashed: 2^bits buckets of (key + 1, entry index)
        cacheBytes = 2 ** bits * 8;
      }
      const pPeerCache = cacheBytes > 0 ? alloc(cacheBytes) : 0;
      // entry 0 is unused; at most one entry per distinct key, or one per row without a cache
      const pPeerEntries = alloc(((pPeerCache ? Math.min(n, keySpace) : n) + 1) * 64, 64);
      const pPeerRowEntry = alloc(n * 4);
      const pNumericRows = alloc(meta.numericGroups.length * NUMERIC_BLOCK * 4);
      const peerLutPtr = rs.peerMaps.map((m, fi) => (m ? alloc(batch.dicts[PEER_FIELDS[fi]].length * 4) : 0));
      const memberLutPtr = meta.matchGroups.map((g) => g.members.map((m) => alloc(batch.dicts[m.column].length * 4)));
      const memberCount = meta.matchGroups.reduce((s, g) => s + g.members.length, 0);
      const pGroups = alloc((3 * meta.matchGroups.length + 2 * memberCount) * 4);
      const rowBytes = meta.words * 8;
      // Several members of one group read one column; the kernel ORs their rows per distinct value here.
      const combinedPtr = meta.matchGroups.map((g) => (g.members.length > 1 ? alloc(batch.dicts[g.members[0].column].length * rowBytes, 64) : 0));
      const block = Math.max(8, Math.min(256, Math.floor(16384 / rowBytes)));
      const pScratch = alloc(block * rowBytes, 64); // per-block bitmap accumulators
      const pExtra = textExtra || hx ? alloc(n * 8) : 0;
      // historical tables: per part the value id of each code, per single-field
      // column the summed contribution of each code, then the block the kernel reads
      const pPartLuts = hLuts ? hLuts.map((l) => alloc(l.length * 4)) : [];
      const pAdds = hx ? hx.singleColumns.map((c) => alloc(codeCount(hx, batch, c.column) * 8)) : [];
      const pHistory = hx ? alloc(56 + 8 * hx.singleColumns.length + 64 * hx.combinations.length, 8) : 0;
      // per combination then row, the slot where the kernel's probe stopped (BatchHistory.slots)
      // (u16 when every combination's table has at most 65,536 slots: half the bytes to copy out)
      const slotBytes = hx && meta.historyImage!.combinations.every((c) => c.capacity <= 65536) ? 2 : 4;
      const pFound = hx && hx.combinations.length > 0 ? alloc(hx.combinations.length * n * slotBytes) : 0;
      // combined keyword rows, placed a whole number of rows above the image's rows
      // so that the kernel addresses them by row index like any other
      const rowsAt = rs.base + meta.sections.rows;
      let dynFirst = 0;
      if (keywordLut && keywordLut.rows.length > 0) {
        at = alignUp(at, 16);
        at += (rowBytes - ((at - rowsAt) % rowBytes)) % rowBytes;
        dynFirst = (at - rowsAt) / rowBytes;
        at += keywordLut.rows.length * rowBytes;
      }
      const pPlan = alloc(PLAN_SLOTS * 4);
      const R = resultLayout(n);
      const pOut = alloc(R.fixedBytes + cap * 2, 16);
      this.ensure(at);
      const { u8, u32, f64 } = this;

      // ---- columns (a batch's views may be longer than its size: the first n values) ----
      f64.set(batch.numeric.customsValue.subarray(0, n), pValue >>> 3);
      f64.set(batch.numeric.netMass.subarray(0, n), pMass >>> 3);
      f64.set(batch.numeric.quantity.subarray(0, n), pQty >>> 3);
      // the kernel reads taxRate only for a numeric condition on it, idHash only for random selection
      if (meta.numericGroups.some((g) => NUMERIC_OPERANDS[g.operand] === 'taxRate') || (hx && hx.taxPart >= 0)) f64.set(batch.numeric.taxRate.subarray(0, n), pTax >>> 3);
      if (meta.settings.randomSelection.rate > 0) u32.set(batch.idHash.subarray(0, n), pIdHash >>> 2);
      for (const [c, p] of colPtr) u32.set(batch.codes[c].subarray(0, n), p >>> 2);
      if (textExtra) {
        const { signals, row } = text!;
        const e = pExtra >>> 3;
        for (let i = 0; i < n; i++) f64[e + i] = signals[row[i]].extra;
      }
      if (hx) this.historyBlock(hx, rs, meta, batch, hLuts!, pPartLuts, pAdds, pHistory, hColPtr, pAeo, pTax, textExtra, pFound, slotBytes);
      if (keywordLut) keywordLut.rows.forEach((bits, k) => u32.set(bits, (rowsAt + (dynFirst + k) * rowBytes) >>> 2));

      // ---- per-batch lookup tables (work per distinct value, not per row) ----
      for (let l = 0; l < L; l++) {
        const d = meta.levels[l].hsDigits;
        let w = (pHsLut >>> 2) + l * hsDict.length * 2;
        for (let k = 0; k < hsDict.length; k++, w += 2) {
          const s = hsDict[k];
          if (d > 0 && s.length < d) { u32[w] = NONE32; u32[w + 1] = NONE32; continue; }
          const v = d > 0 ? Number(s.slice(0, d)) : 0;
          u32[w] = v % 4294967296;
          u32[w + 1] = Math.floor(v / 4294967296);
        }
      }
      rs.peerMaps.forEach((m, fi) => {
        if (!m) return;
        const dict = batch.dicts[PEER_FIELDS[fi]];
        const base = peerLutPtr[fi] >>> 2;
        for (let k = 0; k < dict.length; k++) u32[base + k] = m.get(dict[k]) ?? NONE32;
      });
      let gw = pGroups >>> 2;
      meta.matchGroups.forEach((g, gi) => {
        u32[gw++] = g.members.length;
        u32[gw++] = batch.dicts[g.members[0].column].length;
        u32[gw++] = combinedPtr[gi];
        g.members.forEach((m, mi) => {
          const dict = batch.dicts[m.column];
          const map = rs.memberMaps[gi][mi];
          const base = memberLutPtr[gi][mi] >>> 2;
          const d = m.hsDigits ?? 0;
          if (keywordLut && gi === rs.keyword!.group) {
            const lut = keywordLut.lut;
            for (let k = 0; k < dict.length; k++) u32[base + k] = lut[k] < 0 ? dynFirst + ~lut[k] : lut[k];
          } else for (let k = 0; k < dict.length; k++) {
            const s = dict[k];
            const key = d > 0 ? (s.length >= d ? s.slice(0, d) : undefined) : s;
            u32[base + k] = (key === undefined ? undefined : map.get(key)) ?? m.defaultRow;
          }
          u32[gw++] = colPtr.get(m.column)!;
          u32[gw++] = memberLutPtr[gi][mi];
        });
      });

      // ---- plan --------------------------------------------------------------
      const s = meta.sections;
      const b = rs.base;
      const pl = pPlan >>> 2;
      u32.fill(0, pl, pl + PLAN_SLOTS);
      u32[pl + PLAN.N] = n;
      u32[pl + PLAN.SETTINGS] = b + s.settings;
      u32[pl + PLAN.PEER_KEYS] = b + s.peerSlots;
      u32[pl + PLAN.PEER_MASK] = meta.peerCapacity - 1;
      u32[pl + PLAN.PEER_SHIFT] = meta.peerShift;
      u32[pl + PLAN.NUM_LEVELS] = L;
      u32[pl + PLAN.LEVELS] = b + s.levels;
      u32[pl + PLAN.WORDS] = meta.words;
      u32[pl + PLAN.ROWS] = b + s.rows;
      u32[pl + PLAN.NUM_PROFILES] = meta.profiles.length;
      u32[pl + PLAN.WEIGHTS] = b + s.weights;
      u32[pl + PLAN.CHANNELS] = b + s.channels;
      u32[pl + PLAN.IMAGE_BASE] = b;
      u32[pl + PLAN.NUM_NUMERIC] = meta.numericGroups.length;
      u32[pl + PLAN.NUMERIC] = s.numeric;
      u32[pl + PLAN.ALL_ROW] = meta.allRow;
      u32[pl + PLAN.NUM_GROUPS] = meta.matchGroups.length;
      u32[pl + PLAN.GROUPS] = pGroups;
      u32[pl + PLAN.COL_VALUE] = pValue;
      u32[pl + PLAN.COL_MASS] = pMass;
      u32[pl + PLAN.COL_QTY] = pQty;
      u32[pl + PLAN.COL_TAX] = pTax;
      u32[pl + PLAN.COL_IDHASH] = pIdHash;
      u32[pl + PLAN.COL_HS] = colPtr.get('hs')!;
      u32[pl + PLAN.HS_LUT] = pHsLut;
      u32[pl + PLAN.HS_DICT] = hsDict.length;
      PEER_FIELDS.forEach((f, fi) => {
        u32[pl + PLAN.PEER_COLS + fi] = colPtr.get(f) ?? 0;
        u32[pl + PLAN.PEER_LUTS + fi] = peerLutPtr[fi];
        u32[pl + PLAN.PEER_STRIDES + fi] = pPeerCache ? strides[fi] : 0;
      });
      u32[pl + PLAN.PEER_CACHE] = pPeerCache;
      u32[pl + PLAN.PEER_CACHE_KEYS] = cacheShift === 0 && pPeerCache ? keySpace : 0;
      u32[pl + PLAN.PEER_CACHE_SHIFT] = cacheShift;
      u32[pl + PLAN.PEER_ENTRIES] = pPeerEntries;
      u32[pl + PLAN.PEER_ROW_ENTRY] = pPeerRowEntry;
      u32[pl + PLAN.NUMERIC_ROWS] = pNumericRows;
      u32[pl + PLAN.OUT_SCORE] = pOut + R.score;
      u32[pl + PLAN.OUT_Z] = pOut + R.z;
      u32[pl + PLAN.OUT_LEVEL] = pOut + R.level;
      u32[pl + PLAN.OUT_CHANNEL] = pOut + R.channel;
      u32[pl + PLAN.OUT_FLAGS] = pOut + R.flags;
      u32[pl + PLAN.OUT_MATCH_OFFSET] = pOut + R.matchOffset;
      u32[pl + PLAN.OUT_MATCH_LIST] = pOut + R.matchList;
      u32[pl + PLAN.MATCH_CAPACITY] = cap;
      u32[pl + PLAN.SCRATCH] = pScratch;
      u32[pl + PLAN.BLOCK] = block;
      u32[pl + PLAN.COL_EXTRA] = pExtra;
      u32[pl + PLAN.HISTORY] = pHistory;

      const t0 = process.hrtime.bigint();
      const total = this.exports.score(pPlan) >>> 0;
      const kernelNs = Number(process.hrtime.bigint() - t0);
      if (total > cap) {
        cap = total;
        this.matchCapacity = total;
        continue;
      }
      const bytes = R.matchList + total * 2;
      let out: ArrayBuffer;
      if (options.reuse) {
        // the buffer of the last such call, when it is large enough and still here (not transferred away)
        // (a much smaller result than the buffer, of a much larger batch before, gets a buffer of its size: one
        // large batch does not keep its result's memory for ever)
        let spare = this.spare;
        const size = spareSize(spare?.byteLength ?? 0, bytes);
        if (spare === undefined || size !== spare.byteLength) spare = this.spare = new ArrayBuffer(size);
        new Uint8Array(spare, 0, bytes).set(u8.subarray(pOut, pOut + bytes));
        out = spare;
      } else out = u8.buffer.slice(pOut, pOut + bytes) as ArrayBuffer;
      const found = pFound ? u8.buffer.slice(pFound, pFound + hx!.combinations.length * n * slotBytes) : undefined;
      const slots = found && (slotBytes === 2 ? new Uint16Array(found) : new Uint32Array(found));
      return resultViews(out, n, meta.version, kernelNs, text, hx?.batchHistory(batch, hLuts!, slots), total);
    }
  }

  /**
   * Writes what the kernel needs to add the historical tables' contributions
   * (see historyPass in assembly/index.ts): the part LUTs, the summed
   * contribution per code of each single-field column, the batch's code
   * columns the tables read, and the history block.
   */
  private historyBlock(
    hx: HistoryIndex, rs: LoadedRuleset, meta: CompiledMeta, batch: ColumnarBatch, luts: Int32Array[], pPartLuts: number[], pAdds: number[],
    pHistory: number, hColPtr: number[], pAeo: number, pTax: number, textExtra: boolean, pFound: number, slotBytes: number,
  ): void {
    const { u32, f64 } = this;
    const layout = meta.historyImage!;
    luts.forEach((l, k) => u32.set(new Uint32Array(l.buffer, l.byteOffset, l.length), pPartLuts[k] >>> 2));
    // the code columns the spine does not copy already
    hx.columns.forEach((c, k) => { if (c !== 'taxRate' && !rs.columns.includes(c)) u32.set(batch.codes[c].subarray(0, batch.size), hColPtr[k] >>> 2); });
    if (pAeo && !rs.columns.includes('aeo')) u32.set(batch.codes.aeo.subarray(0, batch.size), pAeo >>> 2);
    const columnPtr = (c: HistoryColumn) => hColPtr[hx.columns.indexOf(c)];
    // single fields: per code of the column, the sum of its dimensions' weight × lift, in dimension order
    hx.singleColumns.forEach((col, k) => {
      const add = new Float64Array(codeCount(hx, batch, col.column));
      for (const d of col.dims) {
        const dim = hx.dims[d];
        const lk = luts[dim.parts[0]], single = dim.single!, wl = dim.weightedLift;
        for (let c = 0; c < add.length; c++) {
          const g = lk[c];
          const e = g < 0 || g >= single.length ? -1 : single[g];
          if (e >= 0) add[c] += wl[e];
        }
      }
      f64.set(add, pAdds[k] >>> 3);
    });
    const h = pHistory >>> 2;
    u32.fill(0, h, h + 14);
    u32[h] = textExtra ? 1 : 0;
    u32[h + 1] = hx.singleColumns.length;
    u32[h + 2] = hx.combinations.length;
    if (hx.taxPart >= 0 && layout.taxCapacity > 0) {
      u32[h + 3] = rs.base + layout.taxSlots;
      u32[h + 4] = layout.taxCapacity - 1;
      u32[h + 5] = 64 - Math.log2(layout.taxCapacity);
    }
    u32[h + 6] = pTax;
    u32[h + 7] = hx.taxPart >= 0 ? columnPtr('taxRate') : 0;
    u32[h + 8] = pAeo;
    u32[h + 9] = pFound;
    f64[(pHistory + 40) >>> 3] = hx.tables.aeoReduction ?? 0;
    u32[h + 12] = slotBytes === 2 ? 1 : 0;
    let w = h + 14;
    hx.singleColumns.forEach((col, k) => { u32[w++] = columnPtr(col.column); u32[w++] = pAdds[k]; });
    hx.combinations.forEach((d, c) => {
      const dim = hx.dims[d];
      const { capacity, slots, narrow } = layout.combinations[c];
      u32.fill(0, w, w + 16);
      u32[w] = rs.base + slots;
      u32[w + 1] = capacity - 1;
      u32[w + 2] = 64 - Math.log2(capacity);
      u32[w + 3] = dim.parts.length | (narrow ? NARROW_COMBINATION : 0);
      dim.parts.forEach((k, j) => {
        const at = w + 4 + 4 * j;
        u32[at] = columnPtr(hx.parts[k].column);
        u32[at + 1] = pPartLuts[k];
        u32[at + 2] = dim.strides![j] % 4294967296;
        u32[at + 3] = Math.floor(dim.strides![j] / 4294967296);
      });
      w += 16;
    });
  }

  /**
   * The keyword group's row per description code of the batch: the wildcard
   * row when no term a profile needs is found, else a combined row (term
   * rows ORed over the wildcard row), listed in `rows` and referred to as
   * ~index (negative) until its place in memory is known.
   */
  private keywordRows(kg: KeywordGroup, text: BatchText): { lut: Int32Array; rows: Uint32Array[] } {
    const terms = text.descriptionTerms;
    const lut = new Int32Array(terms.length);
    const rows: Uint32Array[] = [];
    const index = new Map<string, number>();
    for (let d = 0; d < terms.length; d++) {
      if (terms[d].length === 0) { lut[d] = kg.wildcardRow; continue; } // most descriptions: no term, and no array to filter
      const relevant = terms[d].filter((t) => kg.termRows[t] !== 0);
      if (relevant.length === 0) { lut[d] = kg.wildcardRow; continue; }
      const key = relevant.join(',');
      let k = index.get(key);
      if (k === undefined) {
        let bits = kg.combined.get(key);
        if (!bits) {
          bits = kg.row(kg.wildcardRow).slice();
          for (const t of relevant) {
            const r = kg.row(kg.termRows[t]);
            for (let w = 0; w < bits.length; w++) bits[w] |= r[w];
          }
          if (kg.combined.size >= COMBINED_LIMIT) kg.combined.clear();
          kg.combined.set(key, bits);
        }
        k = rows.length;
        rows.push(bits);
        index.set(key, k);
      }
      lut[d] = ~k;
    }
    return { lut, rows };
  }
}
