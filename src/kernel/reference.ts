/**
 * The reference scorer: the specification of the kernel's maths, in plain
 * TypeScript over the uncompiled ruleset (Maps of peer groups, a loop over
 * profiles). The kernel must agree with it on every batch: same channel, same
 * flags, same matched profiles, same peer levels, score and z within 1e-9
 * relative. It is also the baseline the kernel is benchmarked against.
 */
import { channelCode } from '../model/channels.js';
import type { ColumnarBatch } from '../model/columnar.js';
import { featureValues, levelKey, robustScale, NF } from '../peers/peer-groups.js';
import type { NumericCondition, Profile } from '../profiles/profile.js';
import { randomThreshold } from '../ruleset/compile.js';
import type { Ruleset } from '../ruleset/ruleset.js';
import { mix32 } from './hash.js';
import { termKey, TextScorer, textConfig, type TextSignal, type BatchText } from '../text/signals.js';
import { dimensionLoaded, keyOf, lifts, parseDimension, type DimensionField } from '../learn/history.js';
import { FLAG_CONTROL, FLAG_PROFILE_CHANNEL } from './layout.js';

export interface ReferenceResult {
  size: number;
  score: Float64Array;
  z: Float64Array;
  level: Int8Array;
  channel: Uint8Array;
  flags: Uint8Array;
  /** Matched profile indices per declaration, ascending. */
  matches: number[][];
  /** Text signals, when the ruleset has any. */
  text?: BatchText;
}

interface Row {
  v: number; m: number; q: number; t: number;
  hs: string; aeo: boolean;
  /** Keys of the keyword terms found in the description. */
  keywords: Set<string>;
  get(field: string): string;
}

function operand(c: NumericCondition, r: Row, z: Float64Array, zAt: number): number {
  switch (c.field) {
    case 'customsValue': return r.v;
    case 'netMass': return r.m;
    case 'quantity': return r.q;
    case 'taxRate': return r.t;
    case 'unitValue': return r.v / r.m;
    case 'z.unitValue': return z[zAt];
    case 'z.netMass': return z[zAt + 1];
    case 'z.valuePerItem': return z[zAt + 2];
  }
}

function holds(c: NumericCondition, a: number): boolean {
  switch (c.op) {
    case '<': return a < c.value;
    case '<=': return a <= c.value;
    case '>': return a > c.value;
    case '>=': return a >= c.value;
  }
}

export function profileMatches(p: Profile, r: Row, z: Float64Array, zAt: number): boolean {
  const c = p.conditions;
  if (c.hs && !c.hs.some((prefix) => r.hs.startsWith(prefix))) return false;
  for (const f of ['origin', 'departure', 'office', 'transportMode', 'importer', 'declarant', 'seller'] as const) {
    const list = c[f];
    if (list && !list.includes(r.get(f))) return false;
  }
  if (c.aeo !== undefined && c.aeo !== r.aeo) return false;
  if (c.numeric) for (const n of c.numeric) if (!holds(n, operand(n, r, z, zAt))) return false;
  if (c.keywords && !c.keywords.some((k) => r.keywords.has(termKey(k)))) return false;
  return true;
}

export function referenceScore(ruleset: Ruleset, batch: ColumnarBatch): ReferenceResult {
  const { settings, peers, profiles } = ruleset;
  const n = batch.size;
  const out: ReferenceResult = {
    size: n,
    score: new Float64Array(n),
    z: new Float64Array(n * NF).fill(NaN),
    level: new Int8Array(n * NF).fill(-1),
    channel: new Uint8Array(n),
    flags: new Uint8Array(n),
    matches: [],
  };
  const x = new Float64Array(NF);
  const wUnder = settings.weights.under, wOver = settings.weights.over;
  const yellow = channelCode('yellow'), red = channelCode('red');
  const threshold = randomThreshold(settings.randomSelection.rate);
  const randomChannel = channelCode(settings.randomSelection.channel);
  const textScorer = new TextScorer(textConfig(profiles, ruleset.watchLists ?? [], settings.misclassification));
  const text = textScorer.batch(batch);
  const terms = textScorer.config.terms;
  let signal: TextSignal | undefined;
  // historical tables: per loaded dimension its parts and a key → weight × lift map
  const dims = (ruleset.history?.dimensions ?? []).filter(dimensionLoaded).map((d) => {
    const l = lifts(ruleset.history!, d);
    const parts = parseDimension(d.name);
    // a combination's weight × lift is held in float32 (see HistoryIndex.weightedLift)
    const round = parts.length > 1 ? Math.fround : (x: number) => x;
    return { parts, weighted: new Map(d.keys.map((k, j) => [k, round(d.weight * l[j])])) };
  });
  // added as the kernel adds them (src/learn/history.ts HistoryIndex): the single-field dimensions column
  // by column (in order of first use), each column's summed in dimension order; the AEO reduction; then
  // the combinations in dimension order. Floating-point sums in another order can differ in the last bit,
  // and a score on a threshold then takes another channel.
  const singleGroups: (typeof dims)[] = [];
  const groupOf = new Map<string, typeof dims>();
  for (const d of dims) {
    if (d.parts.length !== 1) continue;
    const column = d.parts[0].field;
    let g = groupOf.get(column);
    if (!g) { g = []; groupOf.set(column, g); singleGroups.push(g); }
    g.push(d);
  }
  const combinations = dims.filter((d) => d.parts.length > 1);
  const weightOf = (d: (typeof dims)[number]): number => {
    const key = keyOf(d.parts, fieldValue);
    return (key === undefined ? undefined : d.weighted.get(key)) ?? 0;
  };
  const fieldValue = (f: DimensionField): string => (f === 'taxRate' ? String(row.t) : row.get(f));
  let i = 0;
  const row: Row = {
    v: 0, m: 0, q: 0, t: 0, hs: '', aeo: false, keywords: new Set(),
    get: (field: string) => batch.dicts[field as 'origin'][batch.codes[field as 'origin'][i]],
  };
  for (i = 0; i < n; i++) {
    row.v = batch.numeric.customsValue[i];
    row.m = batch.numeric.netMass[i];
    row.q = batch.numeric.quantity[i];
    row.t = batch.numeric.taxRate[i];
    row.hs = batch.dicts.hs[batch.codes.hs[i]];
    row.aeo = batch.codes.aeo[i] === 1;
    signal = text?.signals[text.row[i]];
    row.keywords = new Set((signal?.terms ?? []).map((t) => terms[t].key));
    featureValues(row.v, row.m, row.q, x);
    const zAt = i * NF;

    // 1. peer deviation
    const pending = new Set<number>();
    for (let f = 0; f < NF; f++) if (!Number.isNaN(x[f])) pending.add(f);
    for (let l = 0; l < peers.levels.length && pending.size > 0; l++) {
      const level = peers.levels[l];
      const key = levelKey(level, row.hs, level.field ? row.get(level.field) : '');
      if (key === undefined) continue;
      const group = peers.groups[l].get(key);
      if (!group) continue;
      for (const f of [...pending]) {
        const s = group.features[f];
        if (s.n >= settings.minGroupSize) {
          out.z[zAt + f] = (x[f] - s.median) / robustScale(s.mad, settings.madFloor);
          out.level[zAt + f] = l;
          pending.delete(f);
        }
      }
    }

    // 2. deviation components, then matched profile weights in profile order
    let s = 0;
    for (let f = 0; f < NF; f++) {
      const z = out.z[zAt + f];
      if (Number.isNaN(z)) continue;
      const u = -z - settings.zThreshold;
      if (u > 0) s += wUnder[f] * Math.min(u, settings.zCap);
      const o = z - settings.zThreshold;
      if (o > 0) s += wOver[f] * Math.min(o, settings.zCap);
    }
    const matched: number[] = [];
    let profileChannel = 0;
    for (let p = 0; p < profiles.length; p++) {
      if (!profileMatches(profiles[p], row, out.z, zAt)) continue;
      matched.push(p);
      s += profiles[p].weight;
      const cm = profiles[p].counterMeasure;
      if (cm) profileChannel = Math.max(profileChannel, channelCode(cm.channel));
    }

    // 3. text signals (misclassification), then channel: thresholds, counter-measures (raise only), random control group
    let extra = signal ? signal.extra : 0;
    for (const g of singleGroups) {
      let sum = 0;
      for (const d of g) sum += weightOf(d);
      extra += sum;
    }
    if (row.aeo && ruleset.history?.aeoReduction) extra -= ruleset.history.aeoReduction;
    for (const d of combinations) extra += weightOf(d);
    if (signal || ruleset.history) s += extra;
    let channel = s >= settings.thresholds.red ? red : s >= settings.thresholds.yellow ? yellow : 0;
    let flags = 0;
    if (profileChannel > channel) { channel = profileChannel; flags |= FLAG_PROFILE_CHANNEL; }
    if (channel === 0 && threshold > 0 && mix32(batch.idHash[i] ^ settings.randomSelection.seed) < threshold) {
      channel = randomChannel;
      flags |= FLAG_CONTROL;
    }
    out.score[i] = s;
    out.channel[i] = channel;
    out.flags[i] = flags;
    out.matches.push(matched);
  }
  if (text) out.text = text;
  return out;
}
