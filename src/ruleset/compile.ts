/**
 * Compiles a ruleset into the kernel's form: one SharedArrayBuffer holding a
 * JSON header (dictionaries the host needs to encode a batch, profile ids for
 * decoding) and a relocatable binary image (peer hash table, group statistics,
 * profile bitmap rows, numeric predicates, settings). Workers receive the
 * buffer by reference (no copy) and load it into kernel memory once per
 * version; the version is a hash of the content.
 *
 * Profile matching: each condition field becomes a "match group" whose
 * members map a field value to a bitmap row (the set of profiles accepting
 * that value, including the profiles with no condition on the field). The
 * kernel ANDs the groups; within the HS group it ORs the prefix levels.
 */
import { createHash } from 'node:crypto';
import { errors } from '../errors.js';
import { channelCode, type Channel } from '../model/channels.js';
import type { CategoricalColumn } from '../model/columnar.js';
import { isLevelKey, levelKeyForm, NF, PEER_FIELDS, robustScale, type PeerField } from '../peers/peer-groups.js';
import { NUMERIC_OPERANDS, PROFILE_SET_FIELDS, MAX_PROFILES, type Profile } from '../profiles/profile.js';
import type { Ruleset, RulesetSettings } from './ruleset.js';
import { termKey, textConfig, type TextConfig } from '../text/signals.js';
import { historyIndex, type HistoryTables } from '../learn/history.js';
import { hashTableBits, homeSlot } from '../kernel/hash.js';

export const FORMAT_VERSION = 4;
const MAGIC = 0x524c4553; // "SELR"
const MASK64 = (1n << 64n) - 1n;
export const NONE32 = 0xffffffff;
/** Largest categorical id a peer key can hold (24 bits, NONE excluded). */
const MAX_PEER_ID = (1 << 24) - 1;

export interface MatchMember {
  column: CategoricalColumn;
  /** HS members: number of leading digits compared. */
  hsDigits?: number;
  /** Field values (or HS prefixes) with their bitmap rows. */
  values: string[];
  rows: number[];
  /** Row for any value not listed. */
  defaultRow: number;
}

/**
 * Numeric conditions on one operand. Its distinct thresholds t0 < … < t(k-1)
 * cut the line into 2k+2 regions: region 2j is the open interval
 * (t(j-1), t(j)), region 2j+1 is the point t(j), region 2k+1 is NaN. Every
 * profile's conditions on the operand are constant over a region, so each
 * region has a bitmap row like a categorical value.
 */
export interface NumericGroup {
  operand: number;
  thresholds: number[];
  rows: number[];
}

export interface CompiledMeta {
  formatVersion: number;
  version: string;
  settings: RulesetSettings;
  levels: { name: string; hsDigits: number; field: number }[];
  /** Per peer field (PEER_FIELDS order): id → value. Only fields used by a level are filled. */
  peerDicts: string[][];
  peerCapacity: number;
  peerShift: number;
  numGroupStats: number;
  words: number;
  numRows: number;
  allRow: number;
  matchGroups: { field: string; members: MatchMember[] }[];
  /** Numeric conditions as region bitmaps, one group per operand (see compileNumericGroups). */
  numericGroups: NumericGroup[];
  /** Keyword terms and the misclassification signal (src/text/signals.ts). */
  text: TextConfig;
  /**
   * The keyword match group (field "keywords", column "description"), when a
   * profile has a keywords condition: per term, the bitmap row of the profiles
   * requiring it (0 when none does), and the row of the profiles without the
   * condition. The host ORs them per distinct description of a batch.
   */
  keywordRows: { termRows: number[]; wildcardRow: number } | null;
  /** Historical non-compliance tables and their weights, or null (src/learn/history.ts). */
  history: HistoryTables | null;
  /** Where the tables' integer hash tables lie in the image's history section, or null without tables. */
  historyImage: CompiledHistory | null;
  /** The keyword watch lists whose terms were compiled, in order, with their store version (when known). */
  watchLists: { id: string; version?: number }[];
  /** Profiles in kernel order, with the store version that was compiled (when known). */
  profiles: { id: string; version?: number; channel?: Channel; weight: number; instructions?: string }[];
  sections: Record<'settings' | 'peerSlots' | 'stats' | 'levels' | 'rows' | 'weights' | 'channels' | 'numeric' | 'history', number>;
  imageByteLength: number;
}

/**
 * The historical tables in the image (section `history`; offsets relative
 * to the image). Each is an open-addressing hash table, capacity a power of
 * two (load ≤ 2/3), home slot (key × 0x9E3779B97F4A7C15 mod 2^64) >>
 * (64 − log2(capacity)), linear probing; a key of all ones marks an empty
 * slot.
 */
export interface CompiledHistory {
  /** Tax rates: 16-byte slots of (u64 bits of the rate, u32 value id of the taxRate part, 4 bytes unused); capacity 0 when no dimension reads the tax rate. */
  taxCapacity: number;
  taxSlots: number;
  /**
   * Per combination dimension (HistoryIndex.combinations order): slots of
   * the key Σ id_j · stride_j and weight × lift (a float32 value, see
   * HistoryIndex). Narrow (8-byte slots: u32 key, f32 value) when every key
   * is below 2^32 − 2, the usual case; else 16-byte slots (u64 key, f64
   * holding the same float32 value). Half the bytes of the wide slot keep
   * twice as many of a large table's slots in the CPU's caches.
   */
  combinations: { dimension: number; capacity: number; slots: number; narrow: boolean }[];
}

export interface CompiledRuleset {
  version: string;
  buffer: SharedArrayBuffer;
  meta: CompiledMeta;
  /** Offset of the image inside buffer. */
  imageOffset: number;
}

const align = (n: number, a = 64) => Math.ceil(n / a) * a;

/** Settings block layout (f64 slots), twin of assembly/index.ts S_*. */
export function settingsBlock(s: RulesetSettings): Float64Array {
  const out = new Float64Array(8 + 2 * NF);
  out[0] = s.minGroupSize;
  out[1] = s.zThreshold;
  out[2] = s.zCap;
  out[3] = s.thresholds.yellow;
  out[4] = s.thresholds.red;
  out[5] = randomThreshold(s.randomSelection.rate);
  out[6] = channelCode(s.randomSelection.channel);
  out[7] = s.randomSelection.seed;
  for (let f = 0; f < NF; f++) { out[8 + f] = s.weights.under[f]; out[8 + NF + f] = s.weights.over[f]; }
  return out;
}

/** A declaration is in the control group when mix32(idHash ^ seed) < this. */
export function randomThreshold(rate: number): number {
  return rate * 4294967296;
}

/** Packs a peer key as the kernel does: level (bits 58+), HS prefix (24–57), categorical id (0–23). */
export function packPeerKey(level: number, hsPrefix: number, catId: number): bigint {
  return (BigInt(level) << 58n) | (BigInt(hsPrefix) << 24n) | BigInt(catId);
}

class Bitset {
  readonly u32: Uint32Array;
  constructor(words64: number) { this.u32 = new Uint32Array(words64 * 2); }
  set(p: number): this { this.u32[p >>> 5] |= 1 << (p & 31); return this; }
  or(o: Bitset): this { for (let i = 0; i < this.u32.length; i++) this.u32[i] |= o.u32[i]; return this; }
  clone(): Bitset { const b = new Bitset(this.u32.length / 2); b.u32.set(this.u32); return b; }
  key(): string { return this.u32.join(','); }
  count(): number { let c = 0; for (const w of this.u32) { let x = w; while (x) { x &= x - 1; c++; } } return c; }
}

/** Deduplicated bitmap rows: row 0 is empty, row 1 holds every profile. */
class RowTable {
  readonly rows: Bitset[] = [];
  private readonly index = new Map<string, number>();
  constructor(readonly words: number, numProfiles: number) {
    this.add(new Bitset(words));
    const all = new Bitset(words);
    for (let p = 0; p < numProfiles; p++) all.set(p);
    this.add(all);
  }
  add(b: Bitset): number {
    const k = b.key();
    let r = this.index.get(k);
    if (r === undefined) { r = this.rows.length; this.rows.push(b); this.index.set(k, r); }
    return r;
  }
}

function compileMatchGroups(profiles: Profile[], table: RowTable, text: TextConfig): { groups: { field: string; members: MatchMember[]; wildcardShare: number }[]; keywordRows: CompiledMeta['keywordRows'] } {
  const W = table.words;
  const P = profiles.length;
  const groups: { field: string; members: MatchMember[]; wildcardShare: number }[] = [];
  let keywordRows: CompiledMeta['keywordRows'] = null;

  if (profiles.some((p) => p.conditions.keywords)) {
    // rows per term; the host ORs those of a description's terms over the wildcard row
    const wildcard = new Bitset(W);
    const byTerm = text.terms.map(() => new Bitset(W));
    const index = new Map(text.terms.map((t, i) => [t.key, i]));
    profiles.forEach((p, i) => {
      const kw = p.conditions.keywords;
      if (!kw) { wildcard.set(i); return; }
      for (const k of kw) byTerm[index.get(termKey(k))!].set(i);
    });
    const termRows = byTerm.map((b) => (b.count() > 0 ? table.add(b) : 0));
    const wildcardRow = table.add(wildcard);
    keywordRows = { termRows, wildcardRow };
    groups.push({ field: 'keywords', members: [{ column: 'description', values: [], rows: [], defaultRow: wildcardRow }], wildcardShare: wildcard.count() / P });
  }

  const withHs = profiles.some((p) => p.conditions.hs);
  if (withHs) {
    const wildcard = new Bitset(W);
    const byLength = new Map<number, Map<string, Bitset>>();
    profiles.forEach((p, i) => {
      const hs = p.conditions.hs;
      if (!hs) { wildcard.set(i); return; }
      for (const prefix of hs) {
        let m = byLength.get(prefix.length);
        if (!m) { m = new Map(); byLength.set(prefix.length, m); }
        let b = m.get(prefix);
        if (!b) { b = new Bitset(W); m.set(prefix, b); }
        b.set(i);
      }
    });
    const lengths = [...byLength.keys()].sort((a, b) => a - b);
    const members = lengths.map((len, k): MatchMember => {
      const m = byLength.get(len)!;
      const values = [...m.keys()];
      const rows = values.map((v) => table.add(k === 0 ? m.get(v)!.clone().or(wildcard) : m.get(v)!));
      return { column: 'hs', hsDigits: len, values, rows, defaultRow: k === 0 ? table.add(wildcard) : 0 };
    });
    groups.push({ field: 'hs', members, wildcardShare: wildcard.count() / P });
  }

  for (const f of PROFILE_SET_FIELDS) {
    if (!profiles.some((p) => p.conditions[f])) continue;
    const wildcard = new Bitset(W);
    const byValue = new Map<string, Bitset>();
    profiles.forEach((p, i) => {
      const list = p.conditions[f];
      if (!list) { wildcard.set(i); return; }
      for (const v of list) {
        let b = byValue.get(v);
        if (!b) { b = new Bitset(W); byValue.set(v, b); }
        b.set(i);
      }
    });
    const values = [...byValue.keys()];
    const rows = values.map((v) => table.add(byValue.get(v)!.or(wildcard)));
    groups.push({ field: f, members: [{ column: f, values, rows, defaultRow: table.add(wildcard) }], wildcardShare: wildcard.count() / P });
  }

  if (profiles.some((p) => p.conditions.aeo !== undefined)) {
    const wildcard = new Bitset(W);
    const yes = new Bitset(W);
    const no = new Bitset(W);
    profiles.forEach((p, i) => {
      const a = p.conditions.aeo;
      if (a === undefined) wildcard.set(i);
      else (a ? yes : no).set(i);
    });
    const rows = [table.add(no.or(wildcard)), table.add(yes.or(wildcard))];
    groups.push({ field: 'aeo', members: [{ column: 'aeo', values: ['false', 'true'], rows, defaultRow: table.add(wildcard) }], wildcardShare: wildcard.count() / P });
  }
  // Sparsest group first: most declarations are ruled out after one AND.
  return { groups: groups.sort((a, b) => a.wildcardShare - b.wildcardShare), keywordRows };
}

/** Whether `x op t(m)` holds throughout region r (see NumericGroup). */
function holdsInRegion(op: string, m: number, r: number): boolean {
  const j = r >> 1;
  if (r % 2 === 1) {
    switch (op) {
      case '<': return j < m;
      case '<=': return j <= m;
      case '>': return j > m;
      default: return j >= m;
    }
  }
  return op === '<' || op === '<=' ? j <= m : j > m;
}

function compileNumericGroups(profiles: Profile[], table: RowTable): NumericGroup[] {
  const out: NumericGroup[] = [];
  NUMERIC_OPERANDS.forEach((operand, o) => {
    const byProfile = new Map<number, { op: string; value: number }[]>();
    profiles.forEach((p, i) => {
      const preds = (p.conditions.numeric ?? []).filter((c) => c.field === operand);
      if (preds.length) byProfile.set(i, preds);
    });
    if (byProfile.size === 0) return;
    const thresholds = [...new Set([...byProfile.values()].flat().map((c) => c.value))].sort((a, b) => a - b);
    const index = new Map(thresholds.map((t, m) => [t, m]));
    const wildcard = new Bitset(table.words);
    profiles.forEach((_, i) => { if (!byProfile.has(i)) wildcard.set(i); });
    const regions = 2 * thresholds.length + 2;
    const rows: number[] = [];
    for (let r = 0; r < regions; r++) {
      const b = wildcard.clone();
      if (r < regions - 1) {
        for (const [i, preds] of byProfile) if (preds.every((c) => holdsInRegion(c.op, index.get(c.value)!, r))) b.set(i);
      }
      rows.push(table.add(b));
    }
    out.push({ operand: o, thresholds, rows });
  });
  return out;
}

export function compileRuleset(ruleset: Ruleset): CompiledRuleset {
  const { settings, peers, profiles } = ruleset;
  const P = profiles.length;
  if (P > MAX_PROFILES) throw errors.SEL_ERR_PROFILE_LIMIT(`${P} profiles exceed ${MAX_PROFILES}`, { field: 'profiles', expected: `at most ${MAX_PROFILES}`, got: P });

  // ---- peer groups: dictionaries, packed keys, statistics ----------------
  const levels = peers.levels;
  const peerDicts: string[][] = PEER_FIELDS.map(() => []);
  const peerIds: Map<string, number>[] = PEER_FIELDS.map(() => new Map());
  const keys: bigint[] = [];
  const statsList: number[] = [];
  levels.forEach((level, l) => {
    const fi = level.field ? PEER_FIELDS.indexOf(level.field) : -1;
    for (const [key, group] of peers.groups[l]) {
      // tables made in code rather than read from a file: a key of another form would pack onto another's
      if (!isLevelKey(level, key)) throw errors.SEL_ERR_PEERS_INVALID(`peer group key ${JSON.stringify(key.slice(0, 40))} is not one of level ${level.name}`, { field: `peers.groups[${l}]`, expected: levelKeyForm(level), got: key.slice(0, 80) });
      const bar = key.indexOf('|');
      const prefix = level.hsDigits ? Number(key.slice(0, bar)) : 0;
      let catId = 0;
      if (fi >= 0) {
        const value = key.slice(bar + 1);
        let id = peerIds[fi].get(value);
        if (id === undefined) {
          id = peerDicts[fi].length;
          if (id >= MAX_PEER_ID) throw errors.SEL_ERR_PEERS_INVALID(`too many distinct ${level.field} values in peer tables`, { field: level.field!, expected: `fewer than ${MAX_PEER_ID}`, got: id });
          peerDicts[fi].push(value);
          peerIds[fi].set(value, id);
        }
        catId = id;
      }
      keys.push(packPeerKey(l, prefix, catId));
      for (let f = 0; f < NF; f++) {
        const s = group.features[f];
        statsList.push(s.n, s.median, s.n > 0 ? robustScale(s.mad, settings.madFloor) : NaN);
      }
    }
  });
  const G = keys.length;
  const bits = hashTableBits(G); // load factor <= 2/3
  const capacity = 1 << bits;
  const shift = 64 - bits;
  // Slots of 64 bytes (one cache line): key (u64), group index (i32), mask of
  // the features with at least minGroupSize values in the group (u32), then
  // median and robust scale of each feature: one probe answers everything.
  const slotKeys = new BigUint64Array(capacity).fill(MASK64);
  const slotGroup = new Int32Array(capacity).fill(-1);
  const slotMask = new Uint32Array(capacity);
  for (let g = 0; g < G; g++) {
    let i = homeSlot(keys[g], bits);
    while (slotKeys[i] !== MASK64) i = (i + 1) & (capacity - 1);
    slotKeys[i] = keys[g];
    slotGroup[i] = g;
    for (let f = 0; f < NF; f++) if (statsList[(g * NF + f) * 3] >= settings.minGroupSize) slotMask[i] |= 1 << f;
  }

  // ---- profiles: bitmap rows, weights, channels, numeric predicates -------
  const words = P > 0 ? Math.ceil(P / 128) * 2 : 2;
  const table = new RowTable(words, P);
  const text = textConfig(profiles, ruleset.watchLists ?? [], settings.misclassification);
  const { groups, keywordRows } = P > 0 ? compileMatchGroups(profiles, table, text) : { groups: [], keywordRows: null };
  const numericGroups = P > 0 ? compileNumericGroups(profiles, table) : [];
  // numeric section: per group a descriptor (operand, k, thresholds offset,
  // rows offset; offsets relative to the image), then thresholds and rows.
  const numericBytes = numericGroups.reduce((n, g) => n + 16 + g.thresholds.length * 8 + g.rows.length * 4 + 8, 0);
  const history = ruleset.history ? historySection(ruleset.history) : undefined;

  // ---- lay out the image -------------------------------------------------
  const sizes = {
    settings: (8 + 2 * NF) * 8,
    peerSlots: capacity * 64,
    stats: G * NF * 3 * 8,
    levels: levels.length * 8,
    rows: table.rows.length * words * 8,
    weights: P * 8,
    channels: P,
    numeric: numericBytes,
    history: history?.bytes.byteLength ?? 0,
  };
  const sections = {} as CompiledMeta['sections'];
  let at = 0;
  for (const [name, size] of Object.entries(sizes)) { sections[name as keyof typeof sizes] = at; at = align(at + size); }
  const imageByteLength = at;
  const image = new ArrayBuffer(imageByteLength);
  new Float64Array(image, sections.settings, 8 + 2 * NF).set(settingsBlock(settings));
  const slotView = new DataView(image, sections.peerSlots, capacity * 64);
  for (let i = 0; i < capacity; i++) {
    slotView.setBigUint64(i * 64, slotKeys[i], true);
    slotView.setInt32(i * 64 + 8, slotGroup[i], true);
    slotView.setUint32(i * 64 + 12, slotMask[i], true);
    const g = slotGroup[i];
    for (let f = 0; f < NF; f++) {
      slotView.setFloat64(i * 64 + 16 + f * 16, g >= 0 ? statsList[(g * NF + f) * 3 + 1] : NaN, true);
      slotView.setFloat64(i * 64 + 24 + f * 16, g >= 0 ? statsList[(g * NF + f) * 3 + 2] : NaN, true);
    }
  }
  new Float64Array(image, sections.stats, G * NF * 3).set(statsList);
  const lv = new Int32Array(image, sections.levels, levels.length * 2);
  levels.forEach((level, l) => { lv[l * 2] = level.hsDigits; lv[l * 2 + 1] = level.field ? PEER_FIELDS.indexOf(level.field) : -1; });
  const rowsU32 = new Uint32Array(image, sections.rows, table.rows.length * words * 2);
  table.rows.forEach((b, r) => rowsU32.set(b.u32, r * words * 2));
  new Float64Array(image, sections.weights, P).set(profiles.map((p) => p.weight));
  new Uint8Array(image, sections.channels, P).set(profiles.map((p) => (p.counterMeasure ? channelCode(p.counterMeasure.channel) : 0)));
  {
    const dv = new DataView(image, sections.numeric, numericBytes);
    let at = numericGroups.length * 16;
    numericGroups.forEach((g, n) => {
      at = Math.ceil(at / 8) * 8;
      dv.setUint32(n * 16, g.operand, true);
      dv.setUint32(n * 16 + 4, g.thresholds.length, true);
      dv.setUint32(n * 16 + 8, sections.numeric + at, true);
      g.thresholds.forEach((t, m) => dv.setFloat64(at + m * 8, t, true));
      at += g.thresholds.length * 8;
      dv.setUint32(n * 16 + 12, sections.numeric + at, true);
      g.rows.forEach((r, k) => dv.setUint32(at + k * 4, r, true));
      at += g.rows.length * 4;
    });
  }

  if (history) {
    new Uint8Array(image, sections.history, history.bytes.byteLength).set(history.bytes);
    history.layout.taxSlots += sections.history;
    for (const c of history.layout.combinations) c.slots += sections.history;
  }

  const metaBody: Omit<CompiledMeta, 'version'> = {
    formatVersion: FORMAT_VERSION,
    settings,
    levels: levels.map((l) => ({ name: l.name, hsDigits: l.hsDigits, field: l.field ? PEER_FIELDS.indexOf(l.field) : -1 })),
    peerDicts,
    peerCapacity: capacity,
    peerShift: shift,
    numGroupStats: G,
    words,
    numRows: table.rows.length,
    allRow: 1,
    matchGroups: groups.map(({ field, members }) => ({ field, members })),
    numericGroups,
    text,
    keywordRows,
    history: ruleset.history ?? null,
    historyImage: history?.layout ?? null,
    watchLists: ruleset.watchLists.map((w) => (w.version !== undefined ? { id: w.id, version: w.version } : { id: w.id })),
    profiles: profiles.map((p) => ({
      id: p.id,
      ...(p.version !== undefined ? { version: p.version } : {}),
      ...(p.counterMeasure ? { channel: p.counterMeasure.channel } : {}),
      weight: p.weight,
      ...(p.counterMeasure?.instructions ? { instructions: p.counterMeasure.instructions } : {}),
    })),
    sections,
    imageByteLength,
  };
  const hash = createHash('sha256');
  hash.update(JSON.stringify(metaBody));
  hash.update(new Uint8Array(image));
  const version = hash.digest('hex').slice(0, 16);
  const meta: CompiledMeta = { ...metaBody, version };
  const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
  const imageOffset = align(16 + metaBytes.length);
  const buffer = new SharedArrayBuffer(imageOffset + imageByteLength);
  const header = new Uint32Array(buffer, 0, 4);
  header[0] = MAGIC; header[1] = FORMAT_VERSION; header[2] = metaBytes.length; header[3] = imageByteLength;
  new Uint8Array(buffer, 16, metaBytes.length).set(metaBytes);
  new Uint8Array(buffer, imageOffset, imageByteLength).set(new Uint8Array(image));
  return { version, buffer, meta, imageOffset };
}

/** Key space (largest key + 1) up to which a combination table has narrow slots: all ones marks an empty slot, all ones − 1 is the kernel's key of a row with a part not in the tables. */
export const NARROW_KEYS = 0xfffffffe;

/**
 * The history section: the tax-rate table, then one hash table per
 * combination dimension, each 64-byte aligned (offsets relative to the
 * section). Single-field dimensions need nothing here: the host sums their
 * contributions per code of a batch's column.
 */
function historySection(tables: HistoryTables): { bytes: Uint8Array; layout: CompiledHistory } {
  const index = historyIndex(tables);
  const rates = index.taxRates();
  const taxBits = rates.length > 0 ? hashTableBits(rates.length) : 0;
  const layout: CompiledHistory = { taxCapacity: taxBits ? 1 << taxBits : 0, taxSlots: 0, combinations: [] };
  let at = layout.taxCapacity * 16;
  const slotTables = index.combinations.map((d) => {
    const table = index.slotEntries(d); // the slots' entries, laid out by the index (the decisions read it too)
    const narrow = index.keySpace(d) <= NARROW_KEYS;
    at = align(at);
    layout.combinations.push({ dimension: d, capacity: table.length, slots: at, narrow });
    at += table.length * (narrow ? 8 : 16);
    return table;
  });
  const bytes = new Uint8Array(align(at));
  const dv = new DataView(bytes.buffer);
  /** The value slot of a tax rate's bits in the tax-rate table (inserted when absent). */
  const put = (base: number, b: number, key: bigint): number => {
    const mask = (1 << b) - 1;
    let i = homeSlot(key, b);
    for (;;) {
      const k = dv.getBigUint64(base + i * 16, true);
      if (k === key || k === MASK64) break;
      i = (i + 1) & mask;
    }
    dv.setBigUint64(base + i * 16, key, true);
    return base + i * 16 + 8;
  };
  const f64 = new Float64Array(1);
  const u64 = new BigUint64Array(f64.buffer);
  for (let i = 0; i < layout.taxCapacity; i++) dv.setBigUint64(i * 16, MASK64, true);
  for (const { rate, id } of rates) {
    f64[0] = rate;
    dv.setUint32(put(0, taxBits, u64[0]), id, true);
  }
  index.combinations.forEach((d, c) => {
    const { slots, narrow } = layout.combinations[c];
    const { keys, weightedLift } = index.dims[d];
    slotTables[c].forEach((e, i) => {
      if (narrow) {
        dv.setUint32(slots + i * 8, e < 0 ? NONE32 : keys![e], true);
        if (e >= 0) dv.setFloat32(slots + i * 8 + 4, weightedLift[e], true);
      } else {
        dv.setBigUint64(slots + i * 16, e < 0 ? MASK64 : BigInt(keys![e]), true);
        if (e >= 0) dv.setFloat64(slots + i * 16 + 8, weightedLift[e], true);
      }
    });
  });
  return { bytes, layout };
}

/** Reads a compiled ruleset back from its shared buffer (in a worker). */
export function openCompiled(buffer: SharedArrayBuffer | ArrayBuffer): CompiledRuleset {
  const header = new Uint32Array(buffer, 0, 4);
  if (header[0] !== MAGIC || header[1] !== FORMAT_VERSION) {
    throw errors.SEL_ERR_RULESET_INVALID('not a compiled ruleset of this format version', { field: 'ruleset', expected: `magic SELR, format ${FORMAT_VERSION}`, got: [header[0], header[1]] });
  }
  const metaBytes = new Uint8Array(buffer, 16, header[2]).slice();
  const meta = JSON.parse(new TextDecoder().decode(metaBytes)) as CompiledMeta;
  return { version: meta.version, buffer: buffer as SharedArrayBuffer, meta, imageOffset: align(16 + header[2]) };
}

export type { PeerField };
