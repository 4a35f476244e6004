/**
 * A ruleset is everything the kernel needs, immutable once made: peer tables,
 * profiles and the settings that combine them. Every decision carries the
 * version of the ruleset that made it.
 */
import { errors } from '../errors.js';
import { CHANNELS, isChannel, type Channel } from '../model/channels.js';
import { NF, FEATURES, type PeerTables } from '../peers/peer-groups.js';
import { validateProfiles, type Profile } from '../profiles/profile.js';
import type { MisclassificationSettings } from '../text/signals.js';
import { validateWatchLists, type WatchList } from '../text/watchlist.js';
import { validateHistory, type HistoryTables } from '../learn/history.js';

export interface RulesetSettings {
  /** Smallest number of valid values a peer group needs before it is used. */
  minGroupSize: number;
  /** Floor of the robust scale (log units) so that a zero-MAD group gives finite z. */
  madFloor: number;
  /** |z| beyond which a feature adds to the score (and is listed as a reason). */
  zThreshold: number;
  /** Cap on (|z| - zThreshold) so that one extreme feature cannot dominate. */
  zCap: number;
  /** Per feature, in FEATURES order: weight of deviation below (under) and above (over) the peers. */
  weights: { under: number[]; over: number[] };
  /** Score at or above which a declaration goes yellow / red. */
  thresholds: { yellow: number; red: number };
  /** Deterministic random selection of green declarations for the control group. */
  randomSelection: { rate: number; channel: Channel; seed: number };
  /** Goods description vs declared HS chapter (src/text/signals.ts): weight added when the fit is below `below`; weight 0 turns it off. */
  misclassification: MisclassificationSettings;
}

/** Settings as given: any subset, nested groups key by key ({ thresholds: { yellow: 3 } } keeps the default red). */
export type RulesetSettingsInput = {
  [K in keyof RulesetSettings]?: RulesetSettings[K] extends number[] | number ? RulesetSettings[K] : RulesetSettings[K] extends object ? Partial<RulesetSettings[K]> : RulesetSettings[K];
};

export interface Ruleset {
  settings: RulesetSettings;
  peers: PeerTables;
  profiles: Profile[];
  /** Watch lists whose terms are looked for in every goods description (keyword reasons; profile keyword conditions). */
  watchLists: WatchList[];
  /** Historical non-compliance tables with their weights (src/learn/history.ts), from `selectivity train`. */
  history?: HistoryTables;
}

/** Default misclassification signal (calibration in docs/text.md). */
const MISCLASSIFICATION_WEIGHT = 1.5;
const MISCLASSIFICATION_BELOW = 0.3;

/**
 * Defaults. Under-valuation (unit value below peers) is the revenue risk and
 * weighs most; over-valuation weighs less (money laundering, dumping).
 */
export const DEFAULT_SETTINGS: Readonly<RulesetSettings> = Object.freeze({
  minGroupSize: 5,
  madFloor: 0.05,
  zThreshold: 2,
  zCap: 8,
  weights: { under: [1, 0, 0.5], over: [0.4, 0.2, 0.2] },
  thresholds: { yellow: 2, red: 4 },
  randomSelection: { rate: 0.01, channel: 'red' as Channel, seed: 0x5e1ec7 },
  misclassification: { weight: MISCLASSIFICATION_WEIGHT, below: MISCLASSIFICATION_BELOW },
});

function bad(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_RULESET_INVALID(`${field}: expected ${expected}, got ${JSON.stringify(got)}`, { field, expected, got });
}

function finite(v: unknown, field: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(field, `a finite number in [${min}, ${max}]`, v);
  return v;
}

/** Merges partial settings over the defaults and validates the result (frozen). */
export function resolveSettings(partial: RulesetSettingsInput = {}): RulesetSettings {
  const d = DEFAULT_SETTINGS;
  if (partial === null || typeof partial !== 'object') bad('settings', 'an object', partial);
  for (const key of Object.keys(partial)) if (!(key in d)) bad(key, `one of the settings ${Object.keys(d).join(', ')}`, key);
  // nested settings merge key by key: { thresholds: { yellow: 3 } } keeps the default red
  for (const group of ['weights', 'thresholds', 'randomSelection', 'misclassification'] as const) {
    const g = partial[group] as unknown;
    if (g === undefined) continue;
    if (g === null || typeof g !== 'object' || Array.isArray(g)) bad(group, 'an object', g);
    for (const key of Object.keys(g as object)) if (!(key in d[group])) bad(`${group}.${key}`, `one of ${Object.keys(d[group]).join(', ')}`, key);
  }
  const w = { ...d.weights, ...(partial.weights ?? {}) };
  const t = { ...d.thresholds, ...(partial.thresholds ?? {}) };
  const r = { ...d.randomSelection, ...(partial.randomSelection ?? {}) };
  const mc = { ...d.misclassification, ...(partial.misclassification ?? {}) };
  const s: RulesetSettings = {
    minGroupSize: finite(partial.minGroupSize ?? d.minGroupSize, 'minGroupSize', 1, 1e9),
    madFloor: finite(partial.madFloor ?? d.madFloor, 'madFloor', 1e-9, 100),
    zThreshold: finite(partial.zThreshold ?? d.zThreshold, 'zThreshold', 0, 1000),
    zCap: finite(partial.zCap ?? d.zCap, 'zCap', 0, 1e6),
    weights: { under: [], over: [] },
    thresholds: { yellow: finite(t.yellow, 'thresholds.yellow'), red: finite(t.red, 'thresholds.red') },
    randomSelection: { rate: finite(r.rate, 'randomSelection.rate', 0, 1), channel: r.channel, seed: finite(r.seed, 'randomSelection.seed', 0, 0xffffffff) },
    misclassification: { weight: finite(mc.weight, 'misclassification.weight', 0, 1e6), below: finite(mc.below, 'misclassification.below', 0, 1) },
  };
  if (!Number.isInteger(s.minGroupSize)) bad('minGroupSize', 'an integer >= 1', s.minGroupSize);
  if (!Number.isInteger(s.randomSelection.seed)) bad('randomSelection.seed', 'an integer in [0, 2^32)', s.randomSelection.seed);
  if (!isChannel(r.channel)) bad('randomSelection.channel', `one of ${CHANNELS.join(', ')}`, r.channel);
  if (s.thresholds.red < s.thresholds.yellow) bad('thresholds.red', `a number >= thresholds.yellow (${s.thresholds.yellow})`, s.thresholds.red);
  for (const side of ['under', 'over'] as const) {
    const arr = w[side];
    if (!Array.isArray(arr) || arr.length !== NF) bad(`weights.${side}`, `${NF} numbers (${FEATURES.join(', ')})`, arr);
    s.weights[side] = arr.map((x, i) => finite(x, `weights.${side}[${i}]`, 0, 1e6));
  }
  return deepFreeze(s);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * Assembles a validated ruleset: settings merged over the defaults (minGroupSize
 * defaults to the peer snapshot's own, when it records one), profiles checked.
 */
export function createRuleset(input: { peers: PeerTables; profiles?: unknown; watchLists?: unknown; history?: unknown; settings?: RulesetSettingsInput }): Ruleset {
  // in id order, as the store lists them: a declaration's PROFILE and KEYWORD reasons (and a counter-measure's
  // profiles) come in the same order whether the set came from a file (library, selectivity score) or the service
  const byId = <T extends { id: string }>(list: T[]): T[] => list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const profiles = input.profiles === undefined ? [] : byId(validateProfiles(input.profiles));
  const watchLists = input.watchLists === undefined ? [] : byId(validateWatchLists(input.watchLists));
  // a snapshot carries the minGroupSize it was built for; explicit settings win
  const mgs = input.peers.info?.minGroupSize;
  const settings = mgs !== undefined && input.settings?.minGroupSize === undefined ? { ...input.settings, minGroupSize: mgs } : input.settings;
  const out: Ruleset = { settings: resolveSettings(settings), peers: input.peers, profiles, watchLists };
  if (input.history !== undefined) out.history = validateHistory(input.history);
  return out;
}
