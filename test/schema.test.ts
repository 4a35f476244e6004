import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errors } from '../src/errors.js';
import { FIELD_NAMES, FIELDS, MAX_CODE_LENGTH, MAX_DESCRIPTION_LENGTH, validateDeclaration, type FieldIssue, type Validation } from '../src/model/schema.js';

const docPath = fileURLToPath(new URL('../docs/declarations.md', import.meta.url));

const VALID = Object.freeze({
  id: 'D-0001',
  date: '2025-03-01',
  office: 'OF1',
  importer: 'IMP1',
  hs: '8517120000',
  origin: 'CN',
  customsValue: 1234.5,
  netMass: 12.5,
});

const FULL = Object.freeze({
  ...VALID,
  declarant: 'DCL1',
  seller: 'S1',
  departure: 'VN',
  transportMode: '1',
  quantity: 10,
  taxRate: 8,
  description: 'mobile phones',
  aeo: true,
});

function issuesOf(v: Validation): FieldIssue[] {
  expect(v.ok, 'expected validation to fail').toBe(false);
  return v.ok ? [] : v.issues;
}

/** Asserts exactly one issue, with this code and field; returns it. */
function single(raw: unknown, code: string, field: string): FieldIssue {
  const issues = issuesOf(validateDeclaration(raw));
  expect(issues.map((i) => [i.code, i.field])).toEqual([[code, field]]);
  const i = issues[0];
  expect(typeof i.expected).toBe('string');
  expect(i.expected.length).toBeGreaterThan(0);
  expect(i.message.startsWith(`${field}: expected `)).toBe(true);
  return i;
}

describe('validateDeclaration: valid input', () => {
  it('accepts a minimal declaration and returns it unchanged', () => {
    const v = validateDeclaration({ ...VALID });
    expect(v).toEqual({ ok: true, value: { ...VALID } });
  });

  it('accepts every optional field', () => {
    const v = validateDeclaration({ ...FULL });
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.value).toEqual({ ...FULL });
  });

  it('normalises: trims strings, upper-cases countries, strips dots in hs, drops blank optionals', () => {
    const v = validateDeclaration({ ...VALID, id: '  D-7 ', origin: 'cn', departure: ' vn ', hs: '8517.12', declarant: '', seller: null, quantity: undefined });
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.value.id).toBe('D-7');
    expect(v.value.origin).toBe('CN');
    expect(v.value.departure).toBe('VN');
    expect(v.value.hs).toBe('851712');
    expect('declarant' in v.value).toBe(false);
    expect('seller' in v.value).toBe(false);
    expect('quantity' in v.value).toBe(false);
  });

  it('accepts the boundaries: hs of 6 and 10 digits, zero value and mass, leap day, max lengths', () => {
    for (const hs of ['010121', '0101210000', '01012100']) expect(validateDeclaration({ ...VALID, hs }).ok, hs).toBe(true);
    expect(validateDeclaration({ ...VALID, customsValue: 0, netMass: 0, quantity: 0, taxRate: 0 }).ok).toBe(true);
    expect(validateDeclaration({ ...VALID, taxRate: 1000 }).ok).toBe(true);
    expect(validateDeclaration({ ...VALID, date: '2024-02-29' }).ok).toBe(true);
    expect(validateDeclaration({ ...VALID, id: 'x'.repeat(MAX_CODE_LENGTH) }).ok).toBe(true);
    expect(validateDeclaration({ ...VALID, description: 'd'.repeat(MAX_DESCRIPTION_LENGTH) }).ok).toBe(true);
  });

  it('does not modify its input', () => {
    const raw = { ...VALID, origin: ' cn ' };
    validateDeclaration(raw);
    expect(raw.origin).toBe(' cn ');
  });
});

describe('validateDeclaration: invalid input', () => {
  it('non-objects give SEL_ERR_DECL_NOT_OBJECT on "$"', () => {
    for (const raw of [null, undefined, 'D1', 42, true, [VALID]]) {
      const v = validateDeclaration(raw);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.issues.map((i) => [i.code, i.field])).toEqual([[errors.SEL_ERR_DECL_NOT_OBJECT.code, '$']]);
    }
  });

  it.each(FIELDS.filter((f) => f.required).map((f) => f.name))('missing required field %s → SEL_ERR_DECL_FIELD_REQUIRED', (name) => {
    const raw: Record<string, unknown> = { ...VALID };
    delete raw[name];
    single(raw, 'SEL_ERR_DECL_FIELD_REQUIRED', name);
    // blank (empty, whitespace, null) counts as missing
    single({ ...VALID, [name]: null }, 'SEL_ERR_DECL_FIELD_REQUIRED', name);
    if (typeof (VALID as Record<string, unknown>)[name] === 'string') single({ ...VALID, [name]: '   ' }, 'SEL_ERR_DECL_FIELD_REQUIRED', name);
  });

  it('the required set is exactly id, date, office, importer, hs, origin, customsValue, netMass', () => {
    expect(FIELDS.filter((f) => f.required).map((f) => f.name).sort()).toEqual(['customsValue', 'date', 'hs', 'id', 'importer', 'netMass', 'office', 'origin']);
  });

  it('wrong types → SEL_ERR_DECL_FIELD_TYPE naming the field', () => {
    const cases: [string, unknown][] = [
      ['id', 17], ['date', 20250301], ['office', ['OF1']], ['hs', 851712], ['origin', 1],
      ['customsValue', '1234.5'], ['netMass', {}], ['quantity', '10'], ['taxRate', true],
      ['description', 5], ['aeo', 'true'], ['declarant', 3], ['departure', false],
    ];
    for (const [field, value] of cases) {
      const i = single({ ...VALID, [field]: value }, 'SEL_ERR_DECL_FIELD_TYPE', field);
      expect(i.got, field).toEqual(value);
    }
  });

  it('hs must be 6 to 10 digits → SEL_ERR_DECL_FIELD_FORMAT', () => {
    for (const hs of ['85171', '1234', '85171200001', '85171a', 'ABCDEF', '8517-12', '12345678901234']) {
      single({ ...VALID, hs }, 'SEL_ERR_DECL_FIELD_FORMAT', 'hs');
    }
  });

  it('bad dates → SEL_ERR_DECL_FIELD_FORMAT on date', () => {
    for (const date of ['2025-02-29', '2025-13-01', '2025-00-10', '2025-04-31', '01/03/2025', '2025-3-1', '20250301', 'yesterday', '2025-03-01T10:00:00Z']) {
      const i = single({ ...VALID, date }, 'SEL_ERR_DECL_FIELD_FORMAT', 'date');
      expect(i.got).toBe(date);
    }
  });

  it('negative, non-finite or too large numbers → SEL_ERR_DECL_FIELD_RANGE', () => {
    const cases: [string, number][] = [
      ['customsValue', -1], ['customsValue', NaN], ['customsValue', Infinity], ['customsValue', 1e16],
      ['netMass', -0.001], ['netMass', -Infinity], ['quantity', -5], ['quantity', NaN], ['taxRate', -1], ['taxRate', 1000.5],
    ];
    for (const [field, value] of cases) single({ ...VALID, [field]: value }, 'SEL_ERR_DECL_FIELD_RANGE', field);
  });

  it('bad countries and over-long codes or descriptions → SEL_ERR_DECL_FIELD_FORMAT', () => {
    single({ ...VALID, origin: 'CHN' }, 'SEL_ERR_DECL_FIELD_FORMAT', 'origin');
    single({ ...VALID, origin: 'C1' }, 'SEL_ERR_DECL_FIELD_FORMAT', 'origin');
    single({ ...VALID, departure: 'X' }, 'SEL_ERR_DECL_FIELD_FORMAT', 'departure');
    single({ ...VALID, importer: 'i'.repeat(MAX_CODE_LENGTH + 1) }, 'SEL_ERR_DECL_FIELD_FORMAT', 'importer');
    single({ ...VALID, id: 'x'.repeat(MAX_CODE_LENGTH + 1) }, 'SEL_ERR_DECL_FIELD_FORMAT', 'id');
    const i = single({ ...VALID, description: 'd'.repeat(MAX_DESCRIPTION_LENGTH + 1) }, 'SEL_ERR_DECL_FIELD_FORMAT', 'description');
    // long values are previewed, not echoed whole
    expect(typeof i.got).toBe('string');
    expect((i.got as string).length).toBeLessThan(100);
  });

  it('unknown fields → SEL_ERR_DECL_UNKNOWN_FIELD, unless rejectUnknown is false', () => {
    const i = single({ ...VALID, hsCode: '851712' }, 'SEL_ERR_DECL_UNKNOWN_FIELD', 'hsCode');
    expect(i.got).toBe('851712');
    const v = validateDeclaration({ ...VALID, hsCode: '851712' }, { rejectUnknown: false });
    expect(v).toEqual({ ok: true, value: { ...VALID } });
  });

  it('reports every issue of a record, not just the first, and keeps the id', () => {
    const v = validateDeclaration({ id: 'D9', date: 'nope', hs: '12', customsValue: -1, netMass: 1, office: 'O', importer: 'I', extra: 1 });
    const issues = issuesOf(v);
    expect(issues.map((i) => `${i.code}:${i.field}`).sort()).toEqual([
      'SEL_ERR_DECL_FIELD_FORMAT:date',
      'SEL_ERR_DECL_FIELD_FORMAT:hs',
      'SEL_ERR_DECL_FIELD_RANGE:customsValue',
      'SEL_ERR_DECL_FIELD_REQUIRED:origin',
      'SEL_ERR_DECL_UNKNOWN_FIELD:extra',
    ]);
    if (!v.ok) expect(v.id).toBe('D9');
    // every issue code is a registered error code
    for (const i of issues) expect(Object.keys(errors)).toContain(i.code);
  });

  it('a failed record without a readable id has no id', () => {
    const v = validateDeclaration({ ...VALID, id: undefined, hs: '1' });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.id).toBeUndefined();
  });
});

describe('FIELDS', () => {
  it('names are unique and match FIELD_NAMES and the Declaration keys used above', () => {
    const names = FIELDS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    expect([...FIELD_NAMES].sort()).toEqual([...names].sort());
    expect(names.slice().sort()).toEqual(Object.keys(FULL).sort());
  });

  it('every number field has bounds with min <= max, every field a description', () => {
    for (const f of FIELDS) {
      expect(f.description.trim().length, f.name).toBeGreaterThan(0);
      if (f.kind === 'number') {
        expect(typeof f.min, f.name).toBe('number');
        expect(typeof f.max, f.name).toBe('number');
        expect(f.min!).toBeLessThanOrEqual(f.max!);
      }
    }
  });

  // docs/declarations.md is written separately; this check holds once it exists.
  it('every field is documented in docs/declarations.md as a row "| `name` |"', () => {
    expect(existsSync(docPath), `${docPath} does not exist`).toBe(true);
    const doc = readFileSync(docPath, 'utf8');
    const missing = FIELDS.map((f) => f.name).filter((n) => !doc.split(/\r?\n/).some((l) => l.startsWith(`| \`${n}\` |`)));
    expect(missing).toEqual([]);
  });
});
