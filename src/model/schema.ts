/**
 * The declaration schema (item level) and its validation. docs/declarations.md
 * documents every field; a test keeps the two in step.
 *
 * Validation never throws for bad data: it returns the issues found, each with
 * a named error code, the field, and what was expected, so a batch reader can
 * report one bad declaration and score the rest.
 */
import { errors, preview, type ErrorFactory } from '../errors.js';

export interface Declaration {
  /** Declaration (item) identifier, unique per declaration item. */
  id: string;
  /** Acceptance date, YYYY-MM-DD. */
  date: string;
  /** Customs office of declaration. */
  office: string;
  /** Importer (consignee) identifier. */
  importer: string;
  /** Declarant (broker) identifier. */
  declarant?: string;
  /** Seller (foreign supplier) identifier. */
  seller?: string;
  /** Commodity code, 6 to 10 digits (HS6 plus national subdivisions). */
  hs: string;
  /** Country of origin, ISO 3166-1 alpha-2. */
  origin: string;
  /** Country of departure (consignment), ISO 3166-1 alpha-2. */
  departure?: string;
  /** Mode of transport at the border (national or UN Rec. 19 code). */
  transportMode?: string;
  /** Customs value in the national currency. */
  customsValue: number;
  /** Net mass in kilograms. */
  netMass: number;
  /** Quantity in supplementary units. */
  quantity?: number;
  /** Duty rate in percent. */
  taxRate?: number;
  /** Goods description as declared. */
  description?: string;
  /** Whether the importer holds Authorised Economic Operator status. */
  aeo?: boolean;
}

export type FieldKind = 'id' | 'date' | 'code' | 'hs' | 'country' | 'number' | 'text' | 'boolean';

export interface FieldSpec {
  name: keyof Declaration;
  kind: FieldKind;
  required: boolean;
  description: string;
  /** For numbers: inclusive bounds. */
  min?: number;
  max?: number;
}

export const MAX_CODE_LENGTH = 64;
export const MAX_DESCRIPTION_LENGTH = 4096;

export const FIELDS: readonly FieldSpec[] = [
  { name: 'id', kind: 'id', required: true, description: 'Declaration item identifier (1–64 characters), unique per item.' },
  { name: 'date', kind: 'date', required: true, description: 'Acceptance date, YYYY-MM-DD.' },
  { name: 'office', kind: 'code', required: true, description: 'Customs office of declaration.' },
  { name: 'importer', kind: 'code', required: true, description: 'Importer identifier.' },
  { name: 'declarant', kind: 'code', required: false, description: 'Declarant (customs broker) identifier.' },
  { name: 'seller', kind: 'code', required: false, description: 'Seller (foreign supplier) identifier.' },
  { name: 'hs', kind: 'hs', required: true, description: 'Commodity code: 6 to 10 digits, leading zeros kept (a string).' },
  { name: 'origin', kind: 'country', required: true, description: 'Country of origin, ISO 3166-1 alpha-2 (upper-cased).' },
  { name: 'departure', kind: 'country', required: false, description: 'Country of departure, ISO 3166-1 alpha-2 (upper-cased).' },
  { name: 'transportMode', kind: 'code', required: false, description: 'Mode of transport at the border.' },
  { name: 'customsValue', kind: 'number', required: true, min: 0, max: 1e15, description: 'Customs value, national currency, >= 0.' },
  { name: 'netMass', kind: 'number', required: true, min: 0, max: 1e12, description: 'Net mass in kg, >= 0 (0 leaves mass-based features undefined).' },
  { name: 'quantity', kind: 'number', required: false, min: 0, max: 1e12, description: 'Quantity in supplementary units, >= 0.' },
  { name: 'taxRate', kind: 'number', required: false, min: 0, max: 1000, description: 'Duty rate in percent, 0–1000.' },
  { name: 'description', kind: 'text', required: false, description: 'Goods description (up to 4096 characters).' },
  { name: 'aeo', kind: 'boolean', required: false, description: 'Importer holds AEO status (default false).' },
];

export const FIELD_NAMES: ReadonlySet<string> = new Set(FIELDS.map((f) => f.name));

export interface FieldIssue {
  code: string;
  field: string;
  expected: string;
  got?: unknown;
  message: string;
}

export type Validation =
  | { ok: true; value: Declaration }
  | { ok: false; issues: FieldIssue[]; id?: string };

const HS_RE = /^\d{6,10}$/;
const COUNTRY_RE = /^[A-Za-z]{2}$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digitsAt(s: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** The last day a date may name (9999-12-31), in days since 1970-01-01. */
export const LAST_DAY = parseIsoDate('9999-12-31');

/**
 * Milliseconds since the epoch of a command-line date or instant: YYYY-MM-DD
 * (midnight UTC) or an ISO 8601 instant (YYYY-MM-DDThh:mm…); NaN otherwise.
 * Its date is checked as declarations' dates are: Date.parse takes
 * 2026-02-30 for 2 March.
 */
export function parseInstant(text: string): number {
  const day = parseIsoDate(text.slice(0, 10));
  return text.length === 10 ? day * 86_400_000 : text[10] === 'T' && !Number.isNaN(day) ? Date.parse(text) : NaN;
}

/**
 * Days since 1970-01-01 for a valid YYYY-MM-DD string, or NaN. Plain
 * arithmetic (days-from-civil), no Date object: the readers call it per row.
 */
export function parseIsoDate(s: string): number {
  if (s.length !== 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return NaN;
  const y = digitsAt(s, 0, 4), m = digitsAt(s, 5, 2), d = digitsAt(s, 8, 2);
  if (y < 0 || m < 1 || m > 12 || d < 1) return NaN;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  if (d > (m === 2 && leap ? 29 : DAYS_IN_MONTH[m - 1])) return NaN;
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

export function formatIsoDate(days: number): string {
  return new Date(days * 86_400_000).toISOString().slice(0, 10);
}

function issue(factory: ErrorFactory, field: string, expected: string, got: unknown): FieldIssue {
  const shown = got === undefined ? 'nothing' : JSON.stringify(preview(got));
  return { code: factory.code, field, expected, got: preview(got), message: `${field}: expected ${expected}, got ${shown}` };
}

function isBlank(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim() === '');
}

export interface ValidateOptions {
  /** Reject fields that are not in the schema (default true: a typo should not pass silently). */
  rejectUnknown?: boolean;
}

/**
 * Validates one declaration. Strings are trimmed, country codes upper-cased,
 * optional blanks dropped; nothing else is coerced (readers convert CSV text to
 * numbers before validation, through the column mapping).
 */
export function validateDeclaration(raw: unknown, options: ValidateOptions = {}): Validation {
  const fast = cleanDeclaration(raw, options.rejectUnknown !== false);
  if (fast !== undefined) return { ok: true, value: fast };
  return validateDeclarationGeneral(raw, options);
}

/** The general path of validateDeclaration (every rule, every issue); exported for the tests that pin the fast path to it. */
export function validateDeclarationGeneral(raw: unknown, options: ValidateOptions = {}): Validation {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, issues: [issue(errors.SEL_ERR_DECL_NOT_OBJECT, '$', 'an object', Array.isArray(raw) ? 'an array' : raw)] };
  }
  const src = raw as Record<string, unknown>;
  const issues: FieldIssue[] = [];
  const out: Record<string, unknown> = {};
  if (options.rejectUnknown !== false) {
    for (const key of Object.keys(src)) {
      if (!FIELD_NAMES.has(key)) issues.push(issue(errors.SEL_ERR_DECL_UNKNOWN_FIELD, key, `one of the schema fields (${[...FIELD_NAMES].join(', ')})`, src[key]));
    }
  }
  for (const spec of FIELDS) {
    const v = src[spec.name];
    if (isBlank(v)) {
      if (spec.required) issues.push(issue(errors.SEL_ERR_DECL_FIELD_REQUIRED, spec.name, describe(spec), v));
      continue;
    }
    const checked = checkField(spec, v);
    if ('issue' in checked) issues.push(checked.issue);
    else out[spec.name] = checked.value;
  }
  if (issues.length > 0) {
    const id = typeof src.id === 'string' ? src.id : typeof src.id === 'number' ? String(src.id) : undefined;
    return id === undefined ? { ok: false, issues } : { ok: false, issues, id };
  }
  return { ok: true, value: out as unknown as Declaration };
}

function describe(spec: FieldSpec): string {
  switch (spec.kind) {
    case 'id': return `a string of 1–${MAX_CODE_LENGTH} characters`;
    case 'date': return 'a date YYYY-MM-DD';
    case 'code': return `a string of 1–${MAX_CODE_LENGTH} characters`;
    case 'hs': return 'a string of 6 to 10 digits';
    case 'country': return 'an ISO 3166-1 alpha-2 code (two letters)';
    case 'number': return `a finite number in [${spec.min}, ${spec.max}]`;
    case 'text': return `a string of at most ${MAX_DESCRIPTION_LENGTH} characters`;
    case 'boolean': return 'true or false';
  }
}

function checkField(spec: FieldSpec, v: unknown): { value: unknown } | { issue: FieldIssue } {
  const name = spec.name;
  switch (spec.kind) {
    case 'id':
    case 'code': {
      if (typeof v !== 'string') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      const s = v.trim();
      if (s.length > MAX_CODE_LENGTH) return { issue: issue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, describe(spec), v) };
      return { value: s };
    }
    case 'date': {
      if (typeof v !== 'string') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      const s = v.trim();
      if (Number.isNaN(parseIsoDate(s))) return { issue: issue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, describe(spec), v) };
      return { value: s };
    }
    case 'hs': {
      if (typeof v !== 'string') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      const s = v.trim().replace(/[.\s]/g, '');
      if (!HS_RE.test(s)) return { issue: issue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, describe(spec), v) };
      return { value: s };
    }
    case 'country': {
      if (typeof v !== 'string') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      const s = v.trim();
      if (!COUNTRY_RE.test(s)) return { issue: issue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, describe(spec), v) };
      return { value: s.toUpperCase() };
    }
    case 'number': {
      if (typeof v !== 'number') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      if (!Number.isFinite(v) || v < (spec.min ?? -Infinity) || v > (spec.max ?? Infinity)) {
        return { issue: issue(errors.SEL_ERR_DECL_FIELD_RANGE, name, describe(spec), v) };
      }
      return { value: v };
    }
    case 'text': {
      if (typeof v !== 'string') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      if (v.length > MAX_DESCRIPTION_LENGTH) return { issue: issue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, describe(spec), v) };
      return { value: v };
    }
    case 'boolean': {
      if (typeof v !== 'boolean') return { issue: issue(errors.SEL_ERR_DECL_FIELD_TYPE, name, describe(spec), v) };
      return { value: v };
    }
  }
}

// ---- the fast path --------------------------------------------------------------
// Most declarations are clean: every string already trimmed, countries upper
// case, HS codes plain digits. cleanDeclaration accepts exactly those, building
// the same object the general path would, and returns undefined for anything
// else (which the general path then validates, normalises or reports). It
// must never accept what the general path rejects; a property test checks it.

/** A string that trim() leaves alone and isBlank() does not drop: printable ASCII at both ends. */
function tidy(v: unknown, max: number): v is string {
  if (typeof v !== 'string') return false;
  const n = v.length;
  if (n === 0 || n > max) return false;
  const a = v.charCodeAt(0), b = v.charCodeAt(n - 1);
  return a > 0x20 && a < 0x7f && b > 0x20 && b < 0x7f;
}

function digits(v: string): boolean {
  for (let i = 0; i < v.length; i++) { const c = v.charCodeAt(i); if (c < 48 || c > 57) return false; }
  return true;
}

function upperCountry(v: unknown): v is string {
  if (typeof v !== 'string' || v.length !== 2) return false;
  const a = v.charCodeAt(0), b = v.charCodeAt(1);
  return a >= 65 && a <= 90 && b >= 65 && b <= 90;
}

/** [min, max] of a number field, from FIELDS: the fast path checks the very bounds the general path does. */
function bounds(name: keyof Declaration): readonly [number, number] {
  const spec = FIELDS.find((f) => f.name === name)!;
  return [spec.min ?? -Infinity, spec.max ?? Infinity];
}
const [VALUE_MIN, VALUE_MAX] = bounds('customsValue');
const [MASS_MIN, MASS_MAX] = bounds('netMass');
const [QUANTITY_MIN, QUANTITY_MAX] = bounds('quantity');
const [TAX_MIN, TAX_MAX] = bounds('taxRate');

function inRange(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && v >= min && v <= max; // NaN fails both comparisons
}

export function cleanDeclaration(raw: unknown, rejectUnknown = true): Declaration | undefined {
  if (raw === null || typeof raw !== 'object' || Object.getPrototypeOf(raw) !== Object.prototype) return undefined;
  const src = raw as Record<string, unknown>;
  if (rejectUnknown) for (const key in src) if (!FIELD_NAMES.has(key)) return undefined;
  const { id, date, office, importer, declarant, seller, hs, origin, departure, transportMode, customsValue, netMass, quantity, taxRate, description, aeo } = src;
  if (!tidy(id, MAX_CODE_LENGTH) || typeof date !== 'string' || Number.isNaN(parseIsoDate(date)) || !tidy(office, MAX_CODE_LENGTH) || !tidy(importer, MAX_CODE_LENGTH)) return undefined;
  if (typeof hs !== 'string' || hs.length < 6 || hs.length > 10 || !digits(hs) || !upperCountry(origin)) return undefined;
  if (!inRange(customsValue, VALUE_MIN, VALUE_MAX) || !inRange(netMass, MASS_MIN, MASS_MAX)) return undefined;
  const out: Record<string, unknown> = { id, date, office, importer };
  if (declarant !== undefined) { if (!tidy(declarant, MAX_CODE_LENGTH)) return undefined; out.declarant = declarant; }
  if (seller !== undefined) { if (!tidy(seller, MAX_CODE_LENGTH)) return undefined; out.seller = seller; }
  out.hs = hs;
  out.origin = origin;
  if (departure !== undefined) { if (!upperCountry(departure)) return undefined; out.departure = departure; }
  if (transportMode !== undefined) { if (!tidy(transportMode, MAX_CODE_LENGTH)) return undefined; out.transportMode = transportMode; }
  out.customsValue = customsValue;
  out.netMass = netMass;
  if (quantity !== undefined) { if (!inRange(quantity, QUANTITY_MIN, QUANTITY_MAX)) return undefined; out.quantity = quantity; }
  if (taxRate !== undefined) { if (!inRange(taxRate, TAX_MIN, TAX_MAX)) return undefined; out.taxRate = taxRate; }
  if (description !== undefined) {
    // not trimmed by the general path; a printable first character makes it non-blank
    if (typeof description !== 'string' || description.length > MAX_DESCRIPTION_LENGTH || !(description.charCodeAt(0) > 0x20 && description.charCodeAt(0) < 0x7f)) return undefined;
    out.description = description;
  }
  if (aeo !== undefined) { if (typeof aeo !== 'boolean') return undefined; out.aeo = aeo; }
  return out as unknown as Declaration;
}
