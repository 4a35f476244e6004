/**
 * Risk profiles: a conjunction of predicates on declaration fields, a weight
 * added to the score of every declaration it matches, and an optional
 * counter-measure (a channel the matched declaration gets at least).
 * Format documented in docs/profiles.md.
 */
import { parseIsoDate } from '../model/schema.js';
import { errors } from '../errors.js';
import { CHANNELS, isChannel, type Channel } from '../model/channels.js';
import { FEATURES } from '../peers/peer-groups.js';
import { stems } from '../text/tokens.js';

/** Categorical condition fields (besides `hs`, which matches by prefix). */
export const PROFILE_SET_FIELDS = ['origin', 'departure', 'office', 'transportMode', 'importer', 'declarant', 'seller'] as const;
export type ProfileSetField = (typeof PROFILE_SET_FIELDS)[number];

/** Numeric operands, in kernel order (index = operand code). */
export const NUMERIC_OPERANDS = [
  'customsValue', 'netMass', 'quantity', 'taxRate', 'unitValue',
  ...FEATURES.map((f) => `z.${f}` as const),
] as const;
export type NumericOperand = (typeof NUMERIC_OPERANDS)[number];

export const NUMERIC_OPS = ['<', '<=', '>', '>='] as const;
export type NumericOp = (typeof NUMERIC_OPS)[number];

export interface NumericCondition {
  field: NumericOperand;
  op: NumericOp;
  value: number;
}

export interface ProfileConditions {
  /** HS prefixes (2, 4, 6, 8 or 10 digits); matches when any prefix matches. */
  hs?: string[];
  origin?: string[];
  departure?: string[];
  office?: string[];
  transportMode?: string[];
  importer?: string[];
  declarant?: string[];
  seller?: string[];
  /** Only declarations of AEO (true) or non-AEO (false) importers. */
  aeo?: boolean;
  /** All must hold; comparisons with an undefined value (e.g. no peer group) fail. */
  numeric?: NumericCondition[];
  /**
   * Keyword present: the goods description contains at least one of these
   * keywords or phrases (1–8 words), matched on Porter stems like watch-list
   * terms ("replicas" matches "replica", "power-bank" matches "power bank").
   */
  keywords?: string[];
}

export interface CounterMeasure {
  channel: Channel;
  instructions?: string;
}

/** Risk areas a profile addresses (WCO risk management: what is at stake). */
export const RISK_AREAS = [
  'revenue', 'valuation', 'classification', 'origin', 'ipr', 'drugs', 'weapons', 'security', 'sps', 'safety', 'environment', 'prohibitions', 'other',
] as const;
export type RiskArea = (typeof RISK_AREAS)[number];

export type RiskLevel = 'high' | 'medium' | 'low';

/** Likelihood × consequence on 1–5 scales: the risk matrix behind a profile's level and (default) weight. */
export interface Assessment {
  likelihood: number;
  consequence: number;
  /** Derived: likelihood × consequence ≥ 15 high, ≥ 6 medium, else low. */
  level: RiskLevel;
}

export interface Profile {
  id: string;
  title?: string;
  description?: string;
  riskArea?: RiskArea;
  assessment?: Assessment;
  /** Added to the score of each matched declaration (default from the assessment: likelihood × consequence / 5). */
  weight: number;
  counterMeasure?: CounterMeasure;
  conditions: ProfileConditions;
  /** ISO 8601 instants: the profile applies from activeFrom (inclusive) until activeUntil (exclusive). */
  activeFrom?: string;
  activeUntil?: string;
  /** Who answers for the profile (analyst, unit). */
  owner?: string;
  /** Version number, set by the profile store on every change. */
  version?: number;
}

/** Level of a likelihood × consequence product (1–25). */
export function riskLevel(likelihood: number, consequence: number): RiskLevel {
  const r = likelihood * consequence;
  return r >= 15 ? 'high' : r >= 6 ? 'medium' : 'low';
}

/** Is the profile within its active window at instant `now` (ms since the epoch)? */
export function inWindow(p: Pick<Profile, 'activeFrom' | 'activeUntil'>, now: number): boolean {
  return (p.activeFrom === undefined || Date.parse(p.activeFrom) <= now) && (p.activeUntil === undefined || now < Date.parse(p.activeUntil));
}

export const MAX_PROFILES = 65_535;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const HS_PREFIX_RE = /^(\d{2}|\d{4}|\d{6}|\d{8}|\d{10})$/;
const COUNTRY_FIELDS = new Set(['origin', 'departure']);
const KNOWN_KEYS = new Set(['id', 'title', 'description', 'riskArea', 'assessment', 'weight', 'counterMeasure', 'conditions', 'activeFrom', 'activeUntil', 'owner', 'version']);
/** Dates: YYYY-MM-DD (midnight UTC) or a full ISO 8601 instant with a time zone. */
const INSTANT_RE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$/;
const KNOWN_CONDITIONS = new Set(['hs', ...PROFILE_SET_FIELDS, 'aeo', 'numeric', 'keywords']);
/** Most words in a keyword phrase (profiles and watch lists). */
export const MAX_PHRASE_WORDS = 8;
/** Characters of a keyword or watch-list term (a phrase of up to 8 words). */
export const MAX_TERM_CHARS = 200;
/** Characters of a profile's or list's title, of a profile's description, and of a counter-measure's instructions (copied into every decision the profile raises). */
export const MAX_TITLE_CHARS = 200;
export const MAX_DESCRIPTION_CHARS = 2000;
export const MAX_INSTRUCTIONS_CHARS = 1000;

function invalid(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_PROFILE_INVALID(`${field}: expected ${expected}, got ${JSON.stringify(got)}`, { field, expected, got });
}

function stringList(value: unknown, field: string, re?: RegExp, expected = 'a non-empty array of non-empty strings'): string[] {
  if (!Array.isArray(value) || value.length === 0) invalid(field, expected, value);
  return value.map((v, i) => {
    if (typeof v !== 'string' || v.trim() === '' || (re && !re.test(v.trim()))) invalid(`${field}[${i}]`, expected, v);
    return v.trim();
  });
}

/** Validates one profile; throws SEL_ERR_PROFILE_INVALID naming the field. Returns a normalised copy. */
export function validateProfile(raw: unknown, where = 'profile'): Profile {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) invalid(where, 'an object', raw);
  const p = raw as Record<string, unknown>;
  for (const k of Object.keys(p)) if (!KNOWN_KEYS.has(k)) invalid(`${where}.${k}`, `one of ${[...KNOWN_KEYS].join(', ')}`, k);
  if (typeof p.id !== 'string' || !ID_RE.test(p.id)) invalid(`${where}.id`, 'an id of 1–64 letters, digits, ".", "_", ":" or "-"', p.id);
  const id = p.id;
  const at = `${where}(${id})`;
  if (p.title !== undefined && (typeof p.title !== 'string' || p.title.length > MAX_TITLE_CHARS)) invalid(`${at}.title`, `a string of at most ${MAX_TITLE_CHARS} characters`, p.title);
  if (p.description !== undefined && (typeof p.description !== 'string' || p.description.length > MAX_DESCRIPTION_CHARS)) invalid(`${at}.description`, `a string of at most ${MAX_DESCRIPTION_CHARS} characters`, p.description);
  let assessment: Assessment | undefined;
  if (p.assessment !== undefined) {
    const a = p.assessment as Record<string, unknown>;
    if (a === null || typeof a !== 'object' || Array.isArray(a)) invalid(`${at}.assessment`, 'an object {likelihood, consequence}', a);
    for (const k of Object.keys(a)) if (k !== 'likelihood' && k !== 'consequence' && k !== 'level') invalid(`${at}.assessment.${k}`, 'likelihood, consequence (level is derived)', k);
    for (const k of ['likelihood', 'consequence'] as const) {
      if (!Number.isInteger(a[k]) || (a[k] as number) < 1 || (a[k] as number) > 5) invalid(`${at}.assessment.${k}`, 'an integer 1–5', a[k]);
    }
    assessment = { likelihood: a.likelihood as number, consequence: a.consequence as number, level: riskLevel(a.likelihood as number, a.consequence as number) };
  }
  let weight: number;
  if (p.weight === undefined && assessment) {
    weight = Math.round((assessment.likelihood * assessment.consequence * 100) / 5) / 100;
  } else {
    if (typeof p.weight !== 'number' || !Number.isFinite(p.weight) || Math.abs(p.weight) > 1e6) invalid(`${at}.weight`, 'a finite number (|w| <= 1e6), or an assessment to derive it from', p.weight);
    weight = p.weight;
  }
  const out: Profile = { id, weight, conditions: {} };
  if (typeof p.title === 'string') out.title = p.title;
  if (typeof p.description === 'string') out.description = p.description;
  if (p.riskArea !== undefined) {
    if (!(RISK_AREAS as readonly unknown[]).includes(p.riskArea)) invalid(`${at}.riskArea`, `one of ${RISK_AREAS.join(', ')}`, p.riskArea);
    out.riskArea = p.riskArea as RiskArea;
  }
  if (assessment) out.assessment = assessment;
  for (const k of ['activeFrom', 'activeUntil'] as const) {
    const v = p[k];
    if (v === undefined) continue;
    // the calendar date itself too: Date.parse rolls 2026-02-30 over to 2026-03-02
    if (typeof v !== 'string' || !INSTANT_RE.test(v) || Number.isNaN(Date.parse(v)) || Number.isNaN(parseIsoDate(v.slice(0, 10)))) invalid(`${at}.${k}`, 'an ISO 8601 date (YYYY-MM-DD, UTC) or instant with a time zone (2026-11-23T08:00:00Z)', v);
    out[k] = new Date(Date.parse(v)).toISOString();
  }
  if (out.activeFrom && out.activeUntil && Date.parse(out.activeUntil) <= Date.parse(out.activeFrom)) invalid(`${at}.activeUntil`, `an instant after activeFrom (${out.activeFrom})`, out.activeUntil);
  if (p.owner !== undefined) {
    if (typeof p.owner !== 'string' || p.owner.trim() === '' || p.owner.length > 128) invalid(`${at}.owner`, 'a non-empty string of at most 128 characters', p.owner);
    out.owner = p.owner.trim();
  }
  if (p.version !== undefined) {
    if (!Number.isInteger(p.version) || (p.version as number) < 1) invalid(`${at}.version`, 'an integer >= 1 (set by the profile store)', p.version);
    out.version = p.version as number;
  }
  if (p.counterMeasure !== undefined) {
    const cm = p.counterMeasure as Record<string, unknown>;
    if (cm === null || typeof cm !== 'object') invalid(`${at}.counterMeasure`, 'an object {channel, instructions?}', cm);
    for (const k of Object.keys(cm)) if (k !== 'channel' && k !== 'instructions') invalid(`${at}.counterMeasure.${k}`, 'only channel and instructions', k);
    if (!isChannel(cm.channel)) invalid(`${at}.counterMeasure.channel`, `one of ${CHANNELS.join(', ')}`, cm.channel);
    if (cm.instructions !== undefined && (typeof cm.instructions !== 'string' || cm.instructions.length > MAX_INSTRUCTIONS_CHARS)) invalid(`${at}.counterMeasure.instructions`, `a string of at most ${MAX_INSTRUCTIONS_CHARS} characters (it is copied into every decision the profile raises)`, cm.instructions);
    out.counterMeasure = { channel: cm.channel as Channel };
    if (typeof cm.instructions === 'string') out.counterMeasure.instructions = cm.instructions;
  }
  const c = p.conditions;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) invalid(`${at}.conditions`, 'an object', c);
  const cond = c as Record<string, unknown>;
  for (const k of Object.keys(cond)) if (!KNOWN_CONDITIONS.has(k)) invalid(`${at}.conditions.${k}`, `one of ${[...KNOWN_CONDITIONS].join(', ')}`, k);
  const oc = out.conditions;
  if (cond.hs !== undefined) oc.hs = [...new Set(stringList(cond.hs, `${at}.conditions.hs`, HS_PREFIX_RE, 'HS prefixes of 2, 4, 6, 8 or 10 digits'))];
  for (const f of PROFILE_SET_FIELDS) {
    if (cond[f] === undefined) continue;
    const list = COUNTRY_FIELDS.has(f)
      ? stringList(cond[f], `${at}.conditions.${f}`, /^[A-Za-z]{2}$/, 'ISO 3166-1 alpha-2 codes').map((s) => s.toUpperCase())
      : stringList(cond[f], `${at}.conditions.${f}`);
    oc[f] = [...new Set(list)];
  }
  if (cond.aeo !== undefined) {
    if (typeof cond.aeo !== 'boolean') invalid(`${at}.conditions.aeo`, 'true or false', cond.aeo);
    oc.aeo = cond.aeo;
  }
  if (cond.numeric !== undefined) {
    if (!Array.isArray(cond.numeric) || cond.numeric.length === 0 || cond.numeric.length > 16) invalid(`${at}.conditions.numeric`, 'an array of 1–16 conditions', cond.numeric);
    oc.numeric = cond.numeric.map((n: unknown, i: number) => {
      const nf = `${at}.conditions.numeric[${i}]`;
      const q = n as Record<string, unknown>;
      if (q === null || typeof q !== 'object') invalid(nf, 'an object {field, op, value}', n);
      for (const k of Object.keys(q)) if (k !== 'field' && k !== 'op' && k !== 'value') invalid(`${nf}.${k}`, 'only field, op and value', k);
      if (!(NUMERIC_OPERANDS as readonly string[]).includes(q.field as string)) invalid(`${nf}.field`, `one of ${NUMERIC_OPERANDS.join(', ')}`, q.field);
      if (!(NUMERIC_OPS as readonly string[]).includes(q.op as string)) invalid(`${nf}.op`, `one of ${NUMERIC_OPS.join(' ')}`, q.op);
      if (typeof q.value !== 'number' || !Number.isFinite(q.value)) invalid(`${nf}.value`, 'a finite number', q.value);
      return { field: q.field as NumericOperand, op: q.op as NumericOp, value: q.value as number };
    });
  }
  if (cond.keywords !== undefined) {
    const expected = `keywords or phrases of 1–${MAX_PHRASE_WORDS} words of letters or digits, at most ${MAX_TERM_CHARS} characters`;
    const list = stringList(cond.keywords, `${at}.conditions.keywords`, undefined, expected);
    const seen = new Set<string>();
    oc.keywords = [];
    list.forEach((k, i) => {
      if (k.length > MAX_TERM_CHARS) invalid(`${at}.conditions.keywords[${i}]`, expected, k);
      const s = stems(k);
      if (s.length === 0 || s.length > MAX_PHRASE_WORDS) invalid(`${at}.conditions.keywords[${i}]`, expected, k);
      const key = s.join(' ');
      if (!seen.has(key)) { seen.add(key); oc.keywords!.push(k); }
    });
  }
  return out;
}

/** Validates a whole set: every profile valid, ids unique, size within the kernel's limit. */
export function validateProfiles(raw: unknown): Profile[] {
  const list = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Array.isArray((raw as { profiles?: unknown }).profiles)
    ? (raw as { profiles: unknown[] }).profiles
    : raw;
  if (!Array.isArray(list)) invalid('profiles', 'an array of profiles or {"profiles": [...]}', typeof raw);
  if (list.length > MAX_PROFILES) throw errors.SEL_ERR_PROFILE_LIMIT(`${list.length} profiles exceed the kernel's limit of ${MAX_PROFILES}`, { field: 'profiles', expected: `at most ${MAX_PROFILES}`, got: list.length });
  const seen = new Set<string>();
  return list.map((p, i) => {
    const v = validateProfile(p, `profiles[${i}]`);
    if (seen.has(v.id)) throw errors.SEL_ERR_PROFILE_DUPLICATE(`profile id "${v.id}" appears twice`, { field: `profiles[${i}].id`, expected: 'unique ids', got: v.id });
    seen.add(v.id);
    return v;
  });
}
