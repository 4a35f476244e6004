/**
 * Column mappings: where each schema field comes from in a real file, and how
 * its text is parsed (units, number separators, date formats, zero padding,
 * boolean words). docs/columns.md documents the format.
 *
 * resolveColumns() turns a preset name, a JSON file path or an object into a
 * checked ColumnMapping (or throws SEL_ERR_COLUMNS_INVALID naming the fault).
 * RecordMapper applies a mapping to CSV rows (bound to a header) or to JSON
 * objects, and validates the result with validateDeclaration().
 */
import { readFileSync, statSync } from 'node:fs';
import { errors, preview, type ErrorFactory } from '../errors.js';
import {
  FIELDS, validateDeclaration,
  type Declaration, type FieldIssue, type FieldKind, type FieldSpec, type Validation,
} from './schema.js';

export type FieldName = keyof Declaration;

/** Mass units accepted for netMass, with their size in kilograms. */
export const MASS_UNITS = { kg: 1, g: 0.001, t: 1000, lb: 0.45359237 } as const;
export type MassUnit = keyof typeof MASS_UNITS;

export const DATE_FORMATS = ['YYYY-MM-DD', 'YYYYMMDD', 'DD/MM/YYYY', 'MM/DD/YYYY', 'DD.MM.YYYY'] as const;
export type DateFormat = (typeof DATE_FORMATS)[number];

export const DECIMAL_SEPARATORS = ['.', ','] as const;
/** Thousands separators: none, comma, dot, space, apostrophe, no-break spaces, underscore. */
export const THOUSANDS_SEPARATORS = ['', ',', '.', ' ', "'", '\u00a0', '\u202f', '_'] as const;

export interface NumberFormat {
  decimal: (typeof DECIMAL_SEPARATORS)[number];
  thousands: (typeof THOUSANDS_SEPARATORS)[number];
}

/** A field read from a column (CSV header name, or JSON key). */
export interface ColumnSource {
  column: string;
  /** The file may lack this column; the field is then absent. Default false. */
  optional?: boolean;
  /** netMass only: the unit of the column (converted to kg). Default kg. */
  unit?: MassUnit;
  /** Number fields: factor applied after parsing (> 0). */
  multiply?: number;
  /** hs, code and id fields: left-pad an all-digit value with zeros to this length. */
  pad?: number;
  /** date only: the format of the column. Default YYYY-MM-DD. */
  format?: DateFormat;
  /** aeo only: the words meaning true / false (compared trimmed, case-insensitively). */
  true?: string[];
  false?: string[];
}

/** A field with the same value for every record. */
export interface ConstSource {
  const: string | number | boolean;
}

export type FieldSource = ColumnSource | ConstSource;

/** A checked, normalised column mapping (every field source is an object). */
export interface ColumnMapping {
  /** Preset name, mapping file path, or "inline". */
  name: string;
  fields: Partial<Record<FieldName, FieldSource>>;
  number: NumberFormat;
  /** CSV delimiter (one character). Default ','. */
  delimiter: string;
  /** Columns carried through untouched beside each batch (labels, keys). */
  passThrough: string[];
}

export function isConstSource(s: FieldSource): s is ConstSource {
  return Object.prototype.hasOwnProperty.call(s, 'const');
}

const SPEC_BY_NAME = new Map<string, FieldSpec>(FIELDS.map((f) => [f.name, f]));
const DEFAULT_TRUE = ['true', '1', 'y', 'yes'];
const DEFAULT_FALSE = ['false', '0', 'n', 'no'];

// ---------------------------------------------------------------- presets

const KCS_RAW = {
  description: 'Korea Customs Service synthetic import declarations (Customs-Declaration-Datasets, df_syn_*_eng.csv).',
  fields: {
    id: 'Declaration ID',
    date: 'Date',
    office: 'Office ID',
    importer: 'Importer ID',
    declarant: 'Declarant ID',
    seller: 'Seller ID',
    hs: { column: 'HS6 Code', pad: 6 },
    origin: 'Country of Origin',
    departure: 'Country of Departure',
    transportMode: 'Mode of Transport',
    customsValue: 'Item Price',
    netMass: { column: 'Net Mass', unit: 'kg' },
    taxRate: 'Tax Rate',
  },
  passThrough: ['Fraud', 'Critical Fraud'],
};

const DEFAULT_RAW = {
  description: 'Identity mapping: the file uses the schema field names; optional columns may be missing.',
  fields: Object.fromEntries(FIELDS.map((f) => [
    f.name,
    f.kind === 'boolean'
      ? { column: f.name, optional: !f.required, true: ['true', '1', 'Y', 'yes'], false: ['false', '0', 'N', 'no'] }
      : { column: f.name, optional: !f.required },
  ])),
  passThrough: ['*'],
};

// ---------------------------------------------------------------- resolving

function invalid(message: string, field: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_COLUMNS_INVALID(message, { field, expected, got: preview(got) });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Resolves a column mapping: undefined → the `default` preset; a preset name;
 * a path to a JSON mapping file; or a mapping object (checked).
 * Throws SEL_ERR_COLUMNS_INVALID (or SEL_ERR_FILE_NOT_FOUND for a missing
 * mapping file given as a path).
 */
export function resolveColumns(spec?: string | object): ColumnMapping {
  if (spec === undefined) return PRESETS.default;
  if (typeof spec === 'string') {
    if (Object.prototype.hasOwnProperty.call(PRESETS, spec)) return PRESETS[spec];
    let isFile = false;
    try {
      isFile = statSync(spec).isFile();
    } catch {
      isFile = false;
    }
    if (!isFile) {
      if (/[\\/]/.test(spec) || /\.json$/i.test(spec)) {
        throw errors.SEL_ERR_FILE_NOT_FOUND(`column mapping file not found: ${spec}`, {
          field: 'columns', expected: 'a readable JSON mapping file', got: spec,
        });
      }
      invalid(`unknown column mapping "${spec}": neither a preset (${Object.keys(PRESETS).join(', ')}) nor a file`, 'columns',
        `a preset name (${Object.keys(PRESETS).join(', ')}) or a path to a JSON mapping file`, spec);
    }
    let text: string;
    try {
      text = readFileSync(spec, 'utf8');
    } catch (e) {
      throw errors.SEL_ERR_FILE_NOT_FOUND(`column mapping file cannot be read: ${spec} (${(e as Error).message})`, {
        field: 'columns', expected: 'a readable JSON mapping file', got: spec,
      });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch (e) {
      invalid(`column mapping file ${spec} is not valid JSON: ${(e as Error).message}`, 'columns', 'a JSON object', spec);
    }
    return parseMapping(raw, spec);
  }
  return parseMapping(spec, 'inline');
}

const TOP_KEYS = new Set(['fields', 'number', 'delimiter', 'passThrough', 'name', 'description', '$schema', '$comment']);
const SOURCE_KEYS = new Set(['column', 'optional', 'unit', 'multiply', 'pad', 'format', 'true', 'false']);

/** Checks and normalises a raw mapping object. Throws SEL_ERR_COLUMNS_INVALID. */
export function parseMapping(raw: unknown, name = 'inline'): ColumnMapping {
  if (!isPlainObject(raw)) invalid('a column mapping must be a JSON object', 'columns', 'an object with "fields"', raw);
  for (const key of Object.keys(raw)) {
    if (!TOP_KEYS.has(key)) invalid(`unknown key "${key}" in column mapping`, key, `one of ${[...TOP_KEYS].join(', ')}`, raw[key]);
  }
  const number = parseNumberFormat(raw.number);
  const delimiter = raw.delimiter === undefined ? ',' : raw.delimiter;
  if (typeof delimiter !== 'string' || delimiter.length !== 1 || delimiter === '"' || delimiter === '\r' || delimiter === '\n') {
    invalid('the CSV delimiter must be one character other than a quote, CR or LF', 'delimiter', 'one character, e.g. "," or ";"', delimiter);
  }
  if (!isPlainObject(raw.fields)) invalid('a column mapping needs "fields": an object from schema field to column', 'fields', 'an object', raw.fields);
  const fields: Partial<Record<FieldName, FieldSource>> = {};
  for (const [field, src] of Object.entries(raw.fields)) {
    const spec = SPEC_BY_NAME.get(field);
    if (!spec) invalid(`"${field}" is not a schema field`, field, `one of the schema fields (${FIELDS.map((f) => f.name).join(', ')})`, field);
    fields[spec.name] = parseSource(spec, src, number);
  }
  for (const spec of FIELDS) {
    if (spec.required && !fields[spec.name]) {
      invalid(`the mapping does not say where the required field "${spec.name}" comes from`, spec.name,
        'a column name, {"column": …} or {"const": …}', undefined);
    }
  }
  let passThrough: string[] = [];
  if (raw.passThrough !== undefined) {
    if (!Array.isArray(raw.passThrough)) invalid('"passThrough" must be an array of column names', 'passThrough', 'an array of strings', raw.passThrough);
    const seen = new Set<string>();
    for (const c of raw.passThrough) {
      if (typeof c !== 'string' || c.trim() === '') invalid('"passThrough" must hold non-empty column names', 'passThrough', 'a non-empty string', c);
      if (seen.has(c)) invalid(`column "${c}" is listed twice in "passThrough"`, 'passThrough', 'distinct column names', c);
      seen.add(c);
    }
    passThrough = [...raw.passThrough] as string[];
  }
  return { name, fields, number, delimiter, passThrough };
}

function parseNumberFormat(raw: unknown): NumberFormat {
  if (raw === undefined) return { decimal: '.', thousands: '' };
  if (!isPlainObject(raw)) invalid('"number" must be an object {decimal, thousands}', 'number', 'an object', raw);
  for (const key of Object.keys(raw)) {
    if (key !== 'decimal' && key !== 'thousands') invalid(`unknown key "${key}" in "number"`, `number.${key}`, 'decimal or thousands', raw[key]);
  }
  const decimal = raw.decimal ?? '.';
  const thousands = raw.thousands ?? '';
  if (!(DECIMAL_SEPARATORS as readonly unknown[]).includes(decimal)) {
    invalid('unsupported decimal separator', 'number.decimal', '"." or ","', decimal);
  }
  if (!(THOUSANDS_SEPARATORS as readonly unknown[]).includes(thousands)) {
    invalid('unsupported thousands separator', 'number.thousands',
      `one of ${THOUSANDS_SEPARATORS.map((t) => JSON.stringify(t)).join(', ')}`, thousands);
  }
  if (decimal === thousands) invalid('the decimal and thousands separators must differ', 'number.thousands', `a separator other than "${decimal}"`, thousands);
  return { decimal, thousands } as NumberFormat;
}

const STRING_KINDS: ReadonlySet<FieldKind> = new Set(['id', 'code', 'hs']);

function parseSource(spec: FieldSpec, src: unknown, number: NumberFormat): FieldSource {
  const f = spec.name;
  if (typeof src === 'string') {
    if (src.trim() === '') invalid(`field "${f}": the column name is empty`, f, 'a column name', src);
    return spec.kind === 'boolean' ? { column: src, true: DEFAULT_TRUE, false: DEFAULT_FALSE } : { column: src };
  }
  if (!isPlainObject(src)) invalid(`field "${f}": expected a column name or an object`, f, 'a column name, {"column": …} or {"const": …}', src);
  if (Object.prototype.hasOwnProperty.call(src, 'const')) {
    const extra = Object.keys(src).filter((k) => k !== 'const');
    if (extra.length > 0) invalid(`field "${f}": {"const"} takes no other key (found ${extra.join(', ')})`, f, '{"const": value}', src);
    const v = src.const;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      invalid(`field "${f}": a constant must be a string, number or boolean`, f, 'a string, number or boolean', v);
    }
    const source: ConstSource = { const: v };
    // The constant must pass the field's own checks (an origin "China" is caught here, not on every row).
    const issues: FieldIssue[] = [];
    const conv = compileField(spec, source, number).convert(v, issues);
    const bad = issues[0] ?? (conv === BAD ? undefined : fieldIssueOf(spec.name, conv));
    if (bad) invalid(`field "${f}": the constant ${JSON.stringify(v)} is not valid (${bad.message})`, f, bad.expected, v);
    if (conv === ABSENT && spec.required) invalid(`field "${f}": a required field cannot be a blank constant`, f, 'a non-blank value', v);
    return source;
  }
  for (const key of Object.keys(src)) {
    if (!SOURCE_KEYS.has(key)) invalid(`field "${f}": unknown option "${key}"`, f, `options among ${[...SOURCE_KEYS].join(', ')}`, key);
  }
  const out: ColumnSource = { column: '' };
  if (typeof src.column !== 'string' || src.column.trim() === '') invalid(`field "${f}": "column" must be a non-empty column name`, f, 'a column name', src.column);
  out.column = src.column;
  if (src.optional !== undefined) {
    if (typeof src.optional !== 'boolean') invalid(`field "${f}": "optional" must be true or false`, f, 'true or false', src.optional);
    out.optional = src.optional;
  }
  if (src.unit !== undefined) {
    if (f !== 'netMass') invalid(`field "${f}": "unit" applies to netMass only`, f, 'no "unit" option', src.unit);
    if (typeof src.unit !== 'string' || !Object.prototype.hasOwnProperty.call(MASS_UNITS, src.unit)) {
      invalid(`field "${f}": unknown mass unit`, f, `one of ${Object.keys(MASS_UNITS).join(', ')}`, src.unit);
    }
    out.unit = src.unit as MassUnit;
  }
  if (src.multiply !== undefined) {
    if (spec.kind !== 'number') invalid(`field "${f}": "multiply" applies to number fields only`, f, 'no "multiply" option', src.multiply);
    if (typeof src.multiply !== 'number' || !Number.isFinite(src.multiply) || src.multiply <= 0) {
      invalid(`field "${f}": "multiply" must be a finite number > 0`, f, 'a finite number > 0', src.multiply);
    }
    out.multiply = src.multiply;
  }
  if (src.pad !== undefined) {
    if (!STRING_KINDS.has(spec.kind)) invalid(`field "${f}": "pad" applies to hs, id and code fields only`, f, 'no "pad" option', src.pad);
    if (typeof src.pad !== 'number' || !Number.isInteger(src.pad) || src.pad < 1 || src.pad > 64) {
      invalid(`field "${f}": "pad" must be an integer from 1 to 64`, f, 'an integer from 1 to 64', src.pad);
    }
    out.pad = src.pad;
  }
  if (src.format !== undefined) {
    if (spec.kind !== 'date') invalid(`field "${f}": "format" applies to the date field only`, f, 'no "format" option', src.format);
    if (!(DATE_FORMATS as readonly unknown[]).includes(src.format)) {
      invalid(`field "${f}": unsupported date format`, f, `one of ${DATE_FORMATS.join(', ')}`, src.format);
    }
    out.format = src.format as DateFormat;
  }
  if (src.true !== undefined || src.false !== undefined) {
    if (spec.kind !== 'boolean') invalid(`field "${f}": "true"/"false" apply to boolean fields only`, f, 'no "true"/"false" options', src.true ?? src.false);
  }
  if (spec.kind === 'boolean') {
    const words = (key: 'true' | 'false', dflt: string[]): string[] => {
      const v = src[key];
      if (v === undefined) return dflt;
      if (!Array.isArray(v) || v.some((w) => typeof w !== 'string')) invalid(`field "${f}": "${key}" must be an array of strings`, f, 'an array of strings', v);
      return [...(v as string[])];
    };
    out.true = words('true', DEFAULT_TRUE);
    out.false = words('false', DEFAULT_FALSE);
    const t = new Set(out.true.map((w) => w.trim().toLowerCase()));
    const both = out.false.find((w) => t.has(w.trim().toLowerCase()));
    if (both !== undefined) invalid(`field "${f}": "${both}" is listed as both true and false`, f, 'disjoint true and false words', both);
  }
  return out;
}

// ---------------------------------------------------------------- conversion

/** Marks a blank value: the field is left out of the record. */
const ABSENT: unique symbol = Symbol('absent');
/** Marks a value that failed to convert (an issue was recorded). */
const BAD: unique symbol = Symbol('bad');
type Converted = unknown;

function makeIssue(factory: ErrorFactory, field: string, expected: string, got: unknown): FieldIssue {
  const shown = got === undefined ? 'nothing' : JSON.stringify(preview(got));
  return { code: factory.code, field, expected, got: preview(got), message: `${field}: expected ${expected}, got ${shown}` };
}

/** The validation issue (if any) that a single converted field value would get. */
function fieldIssueOf(field: FieldName, value: unknown): FieldIssue | undefined {
  if (value === ABSENT) return undefined;
  const v = validateDeclaration({ [field]: value }, { rejectUnknown: false });
  return v.ok ? undefined : v.issues.find((i) => i.field === field);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Describes a number format in words (for issues). */
export function describeNumberFormat(fmt: NumberFormat): string {
  const t = fmt.thousands === '' ? 'no thousands separator' : `thousands separator ${JSON.stringify(fmt.thousands)}`;
  return `a number (decimal separator ${JSON.stringify(fmt.decimal)}, ${t})`;
}

/**
 * A number parser for a format: returns NaN when the text is not a number in
 * that format (exponents allowed, thousands groups of three digits).
 */
export function numberParser(fmt: NumberFormat): (text: string) => number {
  const D = escapeRe(fmt.decimal);
  const T = escapeRe(fmt.thousands);
  const plain = `\\d+(?:${D}\\d*)?|${D}\\d+`;
  const grouped = fmt.thousands === '' ? '' : `|\\d{1,3}(?:${T}\\d{3})+(?:${D}\\d*)?`;
  const re = new RegExp(`^[+-]?(?:${plain}${grouped})(?:[eE][+-]?\\d+)?$`);
  const thousands = fmt.thousands;
  const decimal = fmt.decimal;
  if (thousands === '' && decimal === '.') {
    return (text) => {
      const t = text.trim();
      return re.test(t) ? Number(t) : NaN;
    };
  }
  return (text) => {
    let t = text.trim();
    if (!re.test(t)) return NaN;
    if (thousands !== '') t = t.split(thousands).join('');
    if (decimal !== '.') t = t.replace(decimal, '.');
    return Number(t);
  };
}

const DATE_PATTERNS: Record<DateFormat, { re: RegExp; y: number; m: number; d: number }> = {
  'YYYY-MM-DD': { re: /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$/, y: 1, m: 2, d: 3 },
  YYYYMMDD: { re: /^(\d{4})(\d{2})(\d{2})(?:[T ].*)?$/, y: 1, m: 2, d: 3 },
  'DD/MM/YYYY': { re: /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?:[T ].*)?$/, y: 3, m: 2, d: 1 },
  'MM/DD/YYYY': { re: /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?:[T ].*)?$/, y: 3, m: 1, d: 2 },
  'DD.MM.YYYY': { re: /^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[T ].*)?$/, y: 3, m: 2, d: 1 },
};

/**
 * Converts a date in the given format to YYYY-MM-DD; undefined if it does not
 * match the format or is not a calendar date. A time after the date (separated
 * by "T" or a space) is ignored.
 */
export function convertDate(text: string, format: DateFormat): string | undefined {
  const p = DATE_PATTERNS[format];
  const m = p.re.exec(text.trim());
  if (!m) return undefined;
  const y = +m[p.y], mo = +m[p.m], d = +m[p.d];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return undefined;
  if (format === 'YYYY-MM-DD' && text.length === 10 && m[2].length === 2 && m[3].length === 2) return text; // already canonical
  return `${m[p.y]}-${mo < 10 ? '0' : ''}${mo}-${d < 10 ? '0' : ''}${d}`;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

function isBlank(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim() === '');
}

interface CompiledField {
  name: FieldName;
  spec: FieldSpec;
  source: FieldSource;
  /** Converts a raw cell (string) or JSON value; pushes an issue and returns BAD when it cannot. */
  convert(raw: unknown, issues: FieldIssue[]): Converted;
}

const ALL_DIGITS = /^\d+$/;
const HS_FLOAT = /^(\d+)\.0*$/;

function compileField(spec: FieldSpec, source: FieldSource, fmt: NumberFormat): CompiledField {
  const name = spec.name;
  const col: ColumnSource = isConstSource(source) ? { column: '' } : source;
  let convert: CompiledField['convert'];
  switch (spec.kind) {
    case 'number': {
      const parse = numberParser(fmt);
      const factor = col.multiply ?? 1;
      const unit: MassUnit = name === 'netMass' ? col.unit ?? 'kg' : 'kg';
      const expected = describeNumberFormat(fmt);
      // g divides by 1000 (exact for integer grams) rather than multiplying by 0.001.
      const scale = (x: number): number => {
        let y = factor === 1 ? x : x * factor;
        if (unit === 'g') y /= 1000;
        else if (unit !== 'kg') y *= MASS_UNITS[unit];
        return y;
      };
      convert = (raw, issues) => {
        if (typeof raw === 'number') return scale(raw);
        if (typeof raw !== 'string') {
          if (isBlank(raw)) return ABSENT;
          issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_TYPE, name, expected, raw));
          return BAD;
        }
        if (raw.trim() === '') return ABSENT;
        const x = parse(raw);
        if (Number.isNaN(x)) {
          issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, expected, raw));
          return BAD;
        }
        return scale(x);
      };
      break;
    }
    case 'date': {
      const format = col.format ?? 'YYYY-MM-DD';
      const expected = `a date ${format}`;
      convert = (raw, issues) => {
        if (isBlank(raw)) return ABSENT;
        if (typeof raw !== 'string' && !(typeof raw === 'number' && format === 'YYYYMMDD')) {
          issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_TYPE, name, expected, raw));
          return BAD;
        }
        const iso = convertDate(String(raw), format);
        if (iso === undefined) {
          issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, expected, raw));
          return BAD;
        }
        return iso;
      };
      break;
    }
    case 'boolean': {
      const t = new Set((col.true ?? DEFAULT_TRUE).map((w) => w.trim().toLowerCase()));
      const f = new Set((col.false ?? DEFAULT_FALSE).map((w) => w.trim().toLowerCase()));
      const expected = `one of ${JSON.stringify(col.true ?? DEFAULT_TRUE)} (true) or ${JSON.stringify(col.false ?? DEFAULT_FALSE)} (false)`;
      convert = (raw, issues) => {
        if (typeof raw === 'boolean') return raw;
        if (typeof raw === 'string' || typeof raw === 'number') {
          const w = String(raw).trim().toLowerCase();
          if (t.has(w)) return true;
          if (f.has(w)) return false;
          if (w === '') return ABSENT;
          issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_FORMAT, name, expected, raw));
          return BAD;
        }
        if (isBlank(raw)) return ABSENT;
        issues.push(makeIssue(errors.SEL_ERR_DECL_FIELD_TYPE, name, expected, raw));
        return BAD;
      };
      break;
    }
    default: {
      // id, code, hs, country, text: strings (numbers from JSON are turned into strings).
      const pad = col.pad;
      const hs = spec.kind === 'hs';
      convert = (raw) => {
        let s: string;
        if (typeof raw === 'string') s = raw;
        else if (typeof raw === 'number' && Number.isFinite(raw)) s = String(raw);
        else return isBlank(raw) ? ABSENT : raw; // validation reports the wrong type
        if (s.trim() === '') return ABSENT;
        if (hs || pad !== undefined) {
          let t = s.trim();
          if (hs) {
            const m = HS_FLOAT.exec(t); // an HS code stored as a float: "30490.0"
            if (m) t = m[1];
          }
          if (pad !== undefined && t.length < pad && ALL_DIGITS.test(t)) t = t.padStart(pad, '0');
          return t;
        }
        return s;
      };
    }
  }
  return { name, spec, source, convert };
}

// ---------------------------------------------------------------- applying

/** A mapping bound to a CSV header. */
export interface HeaderBinding {
  /** The header cells (trimmed). */
  readonly header: readonly string[];
  /** Converts and validates one row (cells in header order). */
  map(cells: readonly string[]): Validation;
  /** Header index of each passThrough column, in mapping order ("*" expanded). */
  readonly passThroughIndex: readonly number[];
  /** Names of the passThrough columns, aligned with passThroughIndex. */
  readonly passThroughNames: readonly string[];
}

function combine(record: Record<string, unknown>, issues: FieldIssue[], rawId: unknown): Validation {
  const v = validateDeclaration(record);
  if (issues.length === 0) return v;
  const badFields = new Set(issues.map((i) => i.field));
  const all = v.ok ? issues : issues.concat(v.issues.filter((i) => !badFields.has(i.field)));
  const id = typeof record.id === 'string' ? record.id
    : typeof rawId === 'string' ? rawId
      : typeof rawId === 'number' ? String(rawId) : undefined;
  return id === undefined ? { ok: false, issues: all } : { ok: false, issues: all, id };
}

/** Applies a column mapping to CSV rows or JSON objects. */
export class RecordMapper {
  readonly mapping: ColumnMapping;
  private readonly compiled: CompiledField[];
  private readonly constants: { name: FieldName; value: unknown }[] = [];
  private readonly columns: CompiledField[] = [];

  constructor(mapping: ColumnMapping) {
    this.mapping = mapping;
    this.compiled = [];
    for (const spec of FIELDS) {
      const src = mapping.fields[spec.name];
      if (!src) continue;
      const cf = compileField(spec, src, mapping.number);
      this.compiled.push(cf);
      if (isConstSource(src)) {
        const value = cf.convert(src.const, []);
        if (value !== ABSENT && value !== BAD) this.constants.push({ name: spec.name, value });
      } else {
        this.columns.push(cf);
      }
    }
  }

  /** The columns a file must have (required = not marked optional), in schema order, then passThrough. */
  neededColumns(): { column: string; field: string; optional: boolean }[] {
    const out = this.columns.map((c) => {
      const s = c.source as ColumnSource;
      return { column: s.column, field: c.name as string, optional: s.optional === true };
    });
    for (const p of this.mapping.passThrough) if (p !== '*') out.push({ column: p, field: p, optional: false });
    return out;
  }

  /**
   * Binds the mapping to a CSV header. Column names are matched after
   * trimming, exactly first, then ignoring case. Throws SEL_ERR_CSV_HEADER
   * (details.field = the schema field or passThrough column, details.column =
   * the column looked for) when a needed column is missing.
   */
  bindHeader(rawHeader: readonly string[]): HeaderBinding {
    const header = rawHeader.map((h) => h.trim());
    const exact = new Map<string, number>();
    const folded = new Map<string, number>();
    header.forEach((h, i) => {
      if (!exact.has(h)) exact.set(h, i);
      const k = h.toLowerCase();
      if (!folded.has(k)) folded.set(k, i);
    });
    const find = (column: string): number => {
      const c = column.trim();
      return exact.get(c) ?? folded.get(c.toLowerCase()) ?? -1;
    };
    const missing = (column: string, field: string): never => {
      throw errors.SEL_ERR_CSV_HEADER(
        `the CSV header has no column "${column}"${field === column ? ' (passThrough)' : ` (for field ${field})`}`,
        { field, column, expected: `a column named "${column}"`, got: preview(header.join(',')) },
      );
    };
    const idx: number[] = [];
    const fields: CompiledField[] = [];
    for (const cf of this.columns) {
      const s = cf.source as ColumnSource;
      const i = find(s.column);
      if (i < 0) {
        if (s.optional) continue;
        missing(s.column, cf.name);
      }
      idx.push(i);
      fields.push(cf);
    }
    // "*" stands for every column no field uses (CSV only), in header order.
    const passThroughNames: string[] = [];
    const passThroughIndex: number[] = [];
    for (const p of this.mapping.passThrough) {
      if (p === '*') {
        const used = new Set([...idx, ...this.mapping.passThrough.filter((q) => q !== '*').map(find)]);
        header.forEach((h, i) => { if (!used.has(i) && h !== '' && !passThroughNames.includes(h)) { passThroughNames.push(h); passThroughIndex.push(i); } });
        continue;
      }
      const i = find(p);
      if (i < 0) missing(p, p);
      passThroughNames.push(p);
      passThroughIndex.push(i);
    }
    const constants = this.constants;
    const idIndex = idx[fields.findIndex((f) => f.name === 'id')] ?? -1;
    const nf = fields.length;
    return {
      header,
      passThroughNames,
      passThroughIndex,
      map(cells: readonly string[]): Validation {
        const record: Record<string, unknown> = {};
        const issues: FieldIssue[] = [];
        for (let k = 0; k < constants.length; k++) record[constants[k].name] = constants[k].value;
        for (let k = 0; k < nf; k++) {
          const v = fields[k].convert(cells[idx[k]], issues);
          if (v !== ABSENT && v !== BAD) record[fields[k].name] = v;
        }
        return combine(record, issues, idIndex >= 0 ? cells[idIndex] : undefined);
      },
    };
  }

  /** Converts and validates one JSON object, looking keys up as column names. */
  mapObject(obj: unknown): Validation {
    if (!isPlainObject(obj)) return validateDeclaration(obj); // reports SEL_ERR_DECL_NOT_OBJECT
    const record: Record<string, unknown> = {};
    const issues: FieldIssue[] = [];
    for (const c of this.constants) record[c.name] = c.value;
    let rawId: unknown;
    for (const cf of this.columns) {
      const col = (cf.source as ColumnSource).column;
      const raw = Object.prototype.hasOwnProperty.call(obj, col) ? obj[col] : undefined;
      if (cf.name === 'id') rawId = raw;
      const v = cf.convert(raw, issues);
      if (v !== ABSENT && v !== BAD) record[cf.name] = v;
    }
    return combine(record, issues, rawId);
  }

  /** The passThrough values of a JSON object, as strings ('' when missing). */
  passThroughOf(obj: Record<string, unknown>): string[] {
    return this.mapping.passThrough.filter((p) => p !== '*').map((p) => {
      const v = Object.prototype.hasOwnProperty.call(obj, p) ? obj[p] : undefined;
      if (v === undefined || v === null) return '';
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
  }
}

// ---------------------------------------------------------------- presets (built last: they use the checks above)

/** Built-in mappings by name. */
export const PRESETS: Readonly<Record<string, ColumnMapping>> = Object.freeze({
  default: parseMapping(DEFAULT_RAW, 'default'),
  kcs: parseMapping(KCS_RAW, 'kcs'),
});
