/**
 * What a back-test counts while the history streams through the kernel. Each
 * worker fills one `PartState` per task from the two results of every batch
 * (candidate and baseline set); parts are plain objects of typed arrays, so
 * they cross the thread boundary by structured clone, and they merge by
 * addition (and, for the examples and the capacity heaps, by keeping the
 * smallest keys / the highest scores), so the report does not depend on the
 * order tasks finish in (up to floating-point summation order).
 */
import { FLAG_CONTROL, type ScoreResult } from '../kernel/layout.js';
import { CHANNELS } from '../model/channels.js';

export const NCH = CHANNELS.length;
/** Score histogram: BINS bins of width 1/BIN_SCALE from SCORE_MIN; scores outside go to the end bins. */
export const SCORE_MIN = -16;
export const BIN_SCALE = 64;
export const BINS = 4096;
/** Per bin: declarations, with a known result, non-compliant, revenue of the non-compliant. */
export const HIST_STRIDE = 4;

export function scoreBin(score: number): number {
  const b = Math.floor((score - SCORE_MIN) * BIN_SCALE);
  return b < 0 ? 0 : b >= BINS ? BINS - 1 : b;
}

/** Channels that mean a control before or after release (not green). */
export function isControlled(channel: number): boolean {
  return channel !== 0;
}

export interface SetState {
  /** Per channel: declarations, with a known result, non-compliant, revenue of the non-compliant (the control group's rows left out). */
  channel: Float64Array; // NCH × 4
  /** The random control group: declarations, known, non-compliant. */
  control: Float64Array; // 3
  /** Per profile: matches, known, non-compliant, revenue of the non-compliant. */
  profile: Float64Array; // P × 4
  /** Per profile and month: matches, non-compliant. */
  profileMonth: Float64Array; // P × M × 2
  /** Per month: declarations, controlled (the control group left out), non-compliant among controlled, known among controlled. */
  month: Float64Array; // M × 4
  hist: Float64Array; // BINS × 4
}

export interface CapacityHeap { score: Float64Array; key: Float64Array; result: Int8Array; revenue: Float64Array; size: number; physical: number; physicalHits: number }

/** A capacity group (one office, one day): the top-C declarations by score for each set. */
export interface CapacityGroup {
  office: string;
  day: number;
  rows: number;
  /**
   * Per set: the heap (scores, order keys, results, revenue), its size, and
   * the set's own physical/scan controls there (count, non-compliant). Ties
   * in score go to the earlier declaration (smaller key), so the kept rows do
   * not depend on the order rows arrive in.
   */
  sets: CapacityHeap[];
}

export interface ChangeExample {
  /** Order key: segment index × 2^32 + row in segment (smallest kept). */
  key: number;
  id: string;
  date: number;
  office: string;
  hs: string;
  scores: [number, number];
  result: number;
}

export interface PartState {
  rows: number;
  known: number;
  nonCompliant: number;
  revenue: number;
  sets: [SetState, SetState];
  /** baseline channel × candidate channel → declarations. */
  transitions: Float64Array; // NCH × NCH
  /** Per transition cell: the first examples (by order key). */
  examples: ChangeExample[][];
  capacity?: CapacityGroup[];
}

export function emptySet(profiles: number, months: number): SetState {
  return {
    channel: new Float64Array(NCH * 4), control: new Float64Array(3), profile: new Float64Array(profiles * 4),
    profileMonth: new Float64Array(profiles * months * 2), month: new Float64Array(months * 4), hist: new Float64Array(BINS * HIST_STRIDE),
  };
}

export function emptyPart(profiles: [number, number], months: number): PartState {
  return {
    rows: 0, known: 0, nonCompliant: 0, revenue: 0,
    sets: [emptySet(profiles[0], months), emptySet(profiles[1], months)],
    transitions: new Float64Array(NCH * NCH), examples: Array.from({ length: NCH * NCH }, () => []),
  };
}

export interface CapacitySpec {
  /** Inspections per office per day, for offices not listed. */
  perOfficeDay: number;
  /** Per office. */
  byOffice?: Record<string, number>;
}

/** Keeps, per office and day, the top-C rows by score of each set (C from the capacity spec). */
export class CapacityTracker {
  private readonly groups = new Map<number, CapacityGroup>();
  private readonly officeIds = new Map<string, number>();

  constructor(private readonly spec: CapacitySpec) {}

  capacityOf(office: string): number {
    return this.spec.byOffice?.[office] ?? this.spec.perOfficeDay;
  }

  private readonly officeNames: string[] = [];

  officeId(office: string): number {
    let oid = this.officeIds.get(office);
    if (oid === undefined) { oid = this.officeNames.length; this.officeIds.set(office, oid); this.officeNames.push(office); }
    return oid;
  }

  group(office: string, day: number): CapacityGroup {
    return this.groupOf(this.officeId(office), day);
  }

  groupOf(oid: number, day: number): CapacityGroup {
    const key = oid * 1_000_000 + (day + 500_000);
    let g = this.groups.get(key);
    if (!g) {
      const office = this.officeNames[oid];
      const c = this.capacityOf(office);
      g = { office, day, rows: 0, sets: [0, 1].map(() => ({ score: new Float64Array(c), key: new Float64Array(c), result: new Int8Array(c), revenue: new Float64Array(c), size: 0, physical: 0, physicalHits: 0 })) };
      this.groups.set(key, g);
    }
    return g;
  }

  list(): CapacityGroup[] { return [...this.groups.values()]; }
}

/** Whether (s1, k1) ranks below (s2, k2): a lower score, or the same score and a later declaration. */
function below(s1: number, k1: number, s2: number, k2: number): boolean {
  return s1 < s2 || (s1 === s2 && k1 > k2);
}

/** Pushes a row into a group's bounded min-heap (the root is the lowest-ranked row kept). */
export function heapPush(h: CapacityHeap, score: number, key: number, result: number, revenue: number): void {
  const cap = h.score.length;
  if (cap === 0) return;
  let i: number;
  if (h.size < cap) {
    i = h.size++;
    while (i > 0) { // sift up
      const p = (i - 1) >> 1;
      if (!below(score, key, h.score[p], h.key[p])) break;
      h.score[i] = h.score[p]; h.key[i] = h.key[p]; h.result[i] = h.result[p]; h.revenue[i] = h.revenue[p];
      i = p;
    }
  } else {
    if (!below(h.score[0], h.key[0], score, key)) return;
    i = 0; // replace the root, sift down
    for (;;) {
      const l = 2 * i + 1;
      if (l >= cap) break;
      const r = l + 1;
      const c = r < cap && below(h.score[r], h.key[r], h.score[l], h.key[l]) ? r : l;
      if (!below(h.score[c], h.key[c], score, key)) break;
      h.score[i] = h.score[c]; h.key[i] = h.key[c]; h.result[i] = h.result[c]; h.revenue[i] = h.revenue[c];
      i = c;
    }
  }
  h.score[i] = score; h.key[i] = key; h.result[i] = result; h.revenue[i] = revenue;
}

/** Rows of one batch, both results, and what is known of them. */
export interface BatchInput {
  size: number;
  results: [ScoreResult, ScoreResult];
  /** Examination result per row: -1 not known, 0 compliant, 1 non-compliant. */
  result: Int8Array;
  revenue: Float64Array;
  date: Int32Array;
  /** Month index per row (0 … months − 1). */
  month: Int32Array;
  months: number;
  /** Order key of a row (examples with the smallest keys are kept). */
  key: (i: number) => number;
  /** Declaration id and HS of a row (asked for examples only). */
  id: (i: number) => string;
  hs: (i: number) => string;
  /** Office of each row: code into the dictionary. */
  officeCode: Uint32Array;
  officeDict: readonly string[];
}

const EXAMPLES = 5;

function addSet(st: SetState, res: ScoreResult, x: BatchInput): void {
  const n = x.size, M = x.months;
  const ch = res.channel, flags = res.flags, score = res.score, off = res.matchOffset, list = res.matchList;
  const result = x.result, revenue = x.revenue, month = x.month;
  const channel = st.channel, control = st.control, hist = st.hist, months = st.month, profile = st.profile, profileMonth = st.profileMonth;
  for (let i = 0; i < n; i++) {
    const c = ch[i], r = result[i], hit = r === 1 ? 1 : 0, rev = hit ? revenue[i] : 0;
    const m = month[i];
    const k = r >= 0 ? 1 : 0;
    // the random control group is counted on its own, not in the channel it was sent to: its hit
    // rate estimates what green lets through, and mixed into a targeted channel's it dilutes it
    const drawn = (flags[i] & FLAG_CONTROL) !== 0;
    if (drawn) { control[0] += 1; control[1] += k; control[2] += hit; } else {
      const ci = c * 4;
      channel[ci] += 1; channel[ci + 1] += k; channel[ci + 2] += hit; channel[ci + 3] += rev;
    }
    let b = Math.floor((score[i] - SCORE_MIN) * BIN_SCALE);
    b = (b < 0 ? 0 : b >= BINS ? BINS - 1 : b) * HIST_STRIDE;
    hist[b] += 1; hist[b + 1] += k; hist[b + 2] += hit; hist[b + 3] += rev;
    const mi = m * 4;
    months[mi] += 1;
    if (c !== 0 && !drawn) { months[mi + 1] += 1; months[mi + 2] += hit; months[mi + 3] += k; }
    for (let j = off[i], e = off[i + 1]; j < e; j++) {
      const p = list[j];
      const pi = p * 4;
      profile[pi] += 1; profile[pi + 1] += k; profile[pi + 2] += hit; profile[pi + 3] += rev;
      const pm = (p * M + m) * 2;
      profileMonth[pm] += 1; profileMonth[pm + 1] += hit;
    }
  }
}

/** Adds one batch to a part. */
export function addBatch(part: PartState, x: BatchInput, capacity?: CapacityTracker): void {
  const n = x.size;
  const result = x.result, revenue = x.revenue;
  part.rows += n;
  for (let i = 0; i < n; i++) {
    const r = result[i];
    if (r >= 0) { part.known++; if (r === 1) { part.nonCompliant++; part.revenue += revenue[i]; } }
  }
  addSet(part.sets[0], x.results[0], x);
  addSet(part.sets[1], x.results[1], x);
  const [cand, base] = x.results;
  const bc = base.channel, cc = cand.channel, tr = part.transitions;
  for (let i = 0; i < n; i++) {
    const a = bc[i], b = cc[i];
    const cell = a * NCH + b;
    tr[cell] += 1;
    if (a !== b) {
      const ex = part.examples[cell];
      if (ex.length < EXAMPLES) ex.push({ key: x.key(i), id: x.id(i), date: x.date[i], office: x.officeDict[x.officeCode[i]], hs: x.hs(i), scores: [cand.score[i], base.score[i]], result: result[i] });
    }
  }
  if (capacity) addCapacity(x, capacity);
}

/**
 * Offers every row to its office-day's heaps. Rows of a part arrive in
 * increasing key order, so a row that only ties the lowest kept score never
 * displaces it (the earlier row wins the tie) and is skipped here.
 */
function addCapacity(x: BatchInput, capacity: CapacityTracker): void {
  const n = x.size;
  const result = x.result, revenue = x.revenue;
  const offices = x.officeDict.map((o) => capacity.officeId(o));
  const oc = x.officeCode, date = x.date;
  const [cand, base] = x.results;
  const cc = cand.channel, cs = cand.score, bc = base.channel, bs = base.score;
  // rows come mostly in date order: the groups of the current day, by office
  let day = NaN;
  const today: (CapacityGroup | undefined)[] = [];
  for (let i = 0; i < n; i++) {
    const oid = offices[oc[i]];
    if (date[i] !== day) { day = date[i]; today.length = 0; }
    const g = (today[oid] ??= capacity.groupOf(oid, day));
    g.rows++;
    const r = result[i];
    const h0 = g.sets[0], h1 = g.sets[1];
    let c = cc[i];
    if (c === 3 || c === 4) { h0.physical++; if (r === 1) h0.physicalHits++; }
    c = bc[i];
    if (c === 3 || c === 4) { h1.physical++; if (r === 1) h1.physicalHits++; }
    const s0 = cs[i], s1 = bs[i];
    if (h0.size < h0.score.length || s0 > h0.score[0]) heapPush(h0, s0, x.key(i), r, revenue[i]);
    if (h1.size < h1.score.length || s1 > h1.score[0]) heapPush(h1, s1, x.key(i), r, revenue[i]);
  }
}

function addInto(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** Merges part b into a (a is changed). */
export function mergeParts(a: PartState, b: PartState): PartState {
  a.rows += b.rows; a.known += b.known; a.nonCompliant += b.nonCompliant; a.revenue += b.revenue;
  for (let s = 0; s < 2; s++) {
    const x = a.sets[s], y = b.sets[s];
    addInto(x.channel, y.channel); addInto(x.control, y.control); addInto(x.profile, y.profile);
    addInto(x.profileMonth, y.profileMonth); addInto(x.month, y.month); addInto(x.hist, y.hist);
  }
  addInto(a.transitions, b.transitions);
  for (let c = 0; c < a.examples.length; c++) {
    a.examples[c] = [...a.examples[c], ...b.examples[c]].sort((p, q) => p.key - q.key).slice(0, EXAMPLES);
  }
  if (b.capacity) {
    const byKey = new Map<string, CapacityGroup>();
    for (const g of a.capacity ?? []) byKey.set(`${g.office}\u0000${g.day}`, g);
    for (const g of b.capacity) {
      const k = `${g.office}\u0000${g.day}`;
      const have = byKey.get(k);
      if (!have) { byKey.set(k, g); continue; }
      have.rows += g.rows;
      for (let s = 0; s < 2; s++) {
        const h = have.sets[s], o = g.sets[s];
        h.physical += o.physical; h.physicalHits += o.physicalHits;
        for (let i = 0; i < o.size; i++) heapPush(h, o.score[i], o.key[i], o.result[i], o.revenue[i]);
      }
    }
    a.capacity = [...byKey.values()];
  }
  return a;
}
