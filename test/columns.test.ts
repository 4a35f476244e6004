import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PRESETS, RecordMapper, convertDate, numberParser, resolveColumns,
  type ColumnMapping,
} from '../src/model/columns.js';
import { FIELDS, type Validation } from '../src/model/schema.js';
import { isSelectivityError, type SelectivityError } from '../src/errors.js';

function caught(fn: () => unknown): SelectivityError {
  try {
    fn();
  } catch (e) {
    if (isSelectivityError(e)) return e;
    throw e;
  }
  throw new Error('expected a SelectivityError, nothing was thrown');
}

const BASE = {
  id: 'ID', date: 'Date', office: 'Office', importer: 'Importer', hs: 'HS', origin: 'Origin',
  customsValue: 'Value', netMass: 'Mass',
};
const BASE_HEADER = ['ID', 'Date', 'Office', 'Importer', 'HS', 'Origin', 'Value', 'Mass'];
const BASE_ROW = ['D1', '2024-03-01', 'OF1', 'IMP1', '847130', 'CN', '1000', '12.5'];

/** Maps one row through `fields` merged over BASE (and other mapping keys). */
function mapRow(extra: { fields?: Record<string, unknown>; [k: string]: unknown }, header: string[], row: string[]): Validation {
  const mapping = resolveColumns({ ...extra, fields: { ...BASE, ...(extra.fields ?? {}) } });
  return new RecordMapper(mapping).bindHeader([...BASE_HEADER, ...header]).map([...BASE_ROW, ...row]);
}

function ok(v: Validation) {
  if (!v.ok) throw new Error(`expected a valid record, got ${JSON.stringify(v.issues)}`);
  return v.value;
}

describe('resolveColumns', () => {
  it('returns the default preset for undefined and by name', () => {
    expect(resolveColumns(undefined)).toBe(PRESETS.default);
    expect(resolveColumns('default')).toBe(PRESETS.default);
    const d = resolveColumns('default');
    for (const f of FIELDS) {
      expect(d.fields[f.name]).toMatchObject({ column: f.name, optional: !f.required });
    }
    expect(d.passThrough).toEqual(['*']);
  });

  it('has the kcs preset with the columns of the KCS layout', () => {
    const k = resolveColumns('kcs');
    expect(k.name).toBe('kcs');
    expect(k.fields.id).toEqual({ column: 'Declaration ID' });
    expect(k.fields.hs).toEqual({ column: 'HS6 Code', pad: 6 });
    expect(k.fields.netMass).toEqual({ column: 'Net Mass', unit: 'kg' });
    expect(k.fields.customsValue).toEqual({ column: 'Item Price' });
    expect(k.fields.taxRate).toEqual({ column: 'Tax Rate' });
    expect(k.fields.origin).toEqual({ column: 'Country of Origin' });
    expect(k.fields.departure).toEqual({ column: 'Country of Departure' });
    expect(k.fields.transportMode).toEqual({ column: 'Mode of Transport' });
    expect(k.fields.aeo).toBeUndefined();
    expect(k.passThrough).toEqual(['Fraud', 'Critical Fraud']);
  });

  it('normalises an object: string shorthand becomes {column}, defaults are filled in', () => {
    const m = resolveColumns({ fields: BASE });
    expect(m.name).toBe('inline');
    expect(m.fields.hs).toEqual({ column: 'HS' });
    expect(m.number).toEqual({ decimal: '.', thousands: '' });
    expect(m.delimiter).toBe(',');
    expect(m.passThrough).toEqual([]);
    // a normalised mapping resolves to itself
    expect(resolveColumns(m as unknown as object)).toEqual({ ...m, name: 'inline' });
  });

  it('reads a mapping from a JSON file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-columns-'));
    const path = join(dir, 'map.json');
    writeFileSync(path, JSON.stringify({ fields: { ...BASE, hs: { column: 'HS', pad: 6 } }, passThrough: ['Label'] }));
    const m = resolveColumns(path);
    expect(m.name).toBe(path);
    expect(m.fields.hs).toEqual({ column: 'HS', pad: 6 });
    expect(m.passThrough).toEqual(['Label']);
  });

  it('raises SEL_ERR_FILE_NOT_FOUND for a missing mapping file and SEL_ERR_COLUMNS_INVALID for an unknown preset or bad JSON', () => {
    expect(caught(() => resolveColumns('/no/such/mapping.json')).code).toBe('SEL_ERR_FILE_NOT_FOUND');
    const e = caught(() => resolveColumns('nosuchpreset'));
    expect(e.code).toBe('SEL_ERR_COLUMNS_INVALID');
    expect(e.details.field).toBe('columns');
    const dir = mkdtempSync(join(tmpdir(), 'sel-columns-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "fields": ');
    expect(caught(() => resolveColumns(bad)).code).toBe('SEL_ERR_COLUMNS_INVALID');
  });

  const invalidCases: [string, unknown, string][] = [
    ['not an object', ['id'], 'columns'],
    ['unknown top-level key', { fields: BASE, colums: {} }, 'colums'],
    ['no fields', { number: {} }, 'fields'],
    ['unknown schema field', { fields: { ...BASE, weight: 'W' } }, 'weight'],
    ['required field not mapped', { fields: { ...BASE, importer: undefined } }, 'importer'],
    ['empty column name', { fields: { ...BASE, office: ' ' } }, 'office'],
    ['unknown option', { fields: { ...BASE, hs: { column: 'HS', padding: 6 } } }, 'hs'],
    ['bad unit', { fields: { ...BASE, netMass: { column: 'Mass', unit: 'oz' } } }, 'netMass'],
    ['unit on another field', { fields: { ...BASE, customsValue: { column: 'Value', unit: 'g' } } }, 'customsValue'],
    ['bad date format', { fields: { ...BASE, date: { column: 'Date', format: 'YY/MM/DD' } } }, 'date'],
    ['format on a non-date', { fields: { ...BASE, hs: { column: 'HS', format: 'YYYYMMDD' } } }, 'hs'],
    ['pad not an integer', { fields: { ...BASE, hs: { column: 'HS', pad: 6.5 } } }, 'hs'],
    ['pad on a number field', { fields: { ...BASE, netMass: { column: 'Mass', pad: 6 } } }, 'netMass'],
    ['multiply not a number', { fields: { ...BASE, customsValue: { column: 'Value', multiply: '1000' } } }, 'customsValue'],
    ['multiply zero', { fields: { ...BASE, customsValue: { column: 'Value', multiply: 0 } } }, 'customsValue'],
    ['multiply on a code', { fields: { ...BASE, office: { column: 'Office', multiply: 2 } } }, 'office'],
    ['true/false overlap', { fields: { ...BASE, aeo: { column: 'AEO', true: ['Y'], false: ['y'] } } }, 'aeo'],
    ['true/false on a non-boolean', { fields: { ...BASE, office: { column: 'Office', true: ['Y'] } } }, 'office'],
    ['true not an array', { fields: { ...BASE, aeo: { column: 'AEO', true: 'Y' } } }, 'aeo'],
    ['const with another key', { fields: { ...BASE, origin: { const: 'CN', column: 'X' } } }, 'origin'],
    ['const of the wrong shape', { fields: { ...BASE, origin: { const: 'China' } } }, 'origin'],
    ['const object', { fields: { ...BASE, origin: { const: { a: 1 } } } }, 'origin'],
    ['const negative number', { fields: { ...BASE, customsValue: { const: -1 } } }, 'customsValue'],
    ['const bad date', { fields: { ...BASE, date: { const: '2024-02-30' } } }, 'date'],
    ['const blank for a required field', { fields: { ...BASE, office: { const: '' } } }, 'office'],
    ['bad decimal separator', { fields: BASE, number: { decimal: ';' } }, 'number.decimal'],
    ['bad thousands separator', { fields: BASE, number: { thousands: '#' } }, 'number.thousands'],
    ['same separators', { fields: BASE, number: { decimal: ',', thousands: ',' } }, 'number.thousands'],
    ['unknown number key', { fields: BASE, number: { decimals: ',' } }, 'number.decimals'],
    ['passThrough not an array', { fields: BASE, passThrough: 'Fraud' }, 'passThrough'],
    ['passThrough duplicate', { fields: BASE, passThrough: ['a', 'a'] }, 'passThrough'],
    ['passThrough empty name', { fields: BASE, passThrough: [''] }, 'passThrough'],
    ['bad delimiter', { fields: BASE, delimiter: '"' }, 'delimiter'],
    ['optional not boolean', { fields: { ...BASE, seller: { column: 'S', optional: 'yes' } } }, 'seller'],
  ];
  for (const [name, spec, field] of invalidCases) {
    it(`raises SEL_ERR_COLUMNS_INVALID naming "${field}": ${name}`, () => {
      const e = caught(() => resolveColumns(JSON.parse(JSON.stringify(spec)) as object));
      expect(e.code).toBe('SEL_ERR_COLUMNS_INVALID');
      expect(e.details.field).toBe(field);
      expect(typeof e.details.expected).toBe('string');
    });
  }
});

describe('numberParser and convertDate', () => {
  it('parses plain numbers and rejects junk', () => {
    const p = numberParser({ decimal: '.', thousands: '' });
    expect(p('12.5')).toBe(12.5);
    expect(p(' -3 ')).toBe(-3);
    expect(p('.5')).toBe(0.5);
    expect(p('1e3')).toBe(1000);
    for (const bad of ['', 'abc', '1,5', '0x10', 'Infinity', '1.2.3', '1 000', 'NaN', '--1']) expect(p(bad), bad).toBeNaN();
  });

  it('parses decimal comma with dot thousands, and rejects misgrouped numbers', () => {
    const p = numberParser({ decimal: ',', thousands: '.' });
    expect(p('1.234.567,89')).toBe(1234567.89);
    expect(p('1234,5')).toBe(1234.5);
    expect(p('12')).toBe(12);
    for (const bad of ['1.5', '1.23', '12.34.567', '1,2,3', '1.234.5']) expect(p(bad), bad).toBeNaN();
  });

  it('parses space and apostrophe thousands', () => {
    expect(numberParser({ decimal: ',', thousands: ' ' })('1 234 567,5')).toBe(1234567.5);
    expect(numberParser({ decimal: '.', thousands: "'" })("1'234.5")).toBe(1234.5);
    expect(numberParser({ decimal: '.', thousands: ',' })('1,234,567.25')).toBe(1234567.25);
  });

  it('converts every date format to YYYY-MM-DD and rejects non-dates', () => {
    expect(convertDate('2024-03-01', 'YYYY-MM-DD')).toBe('2024-03-01');
    expect(convertDate('2024-3-1', 'YYYY-MM-DD')).toBe('2024-03-01');
    expect(convertDate('2024-03-01T10:00:00Z', 'YYYY-MM-DD')).toBe('2024-03-01');
    expect(convertDate('20240301', 'YYYYMMDD')).toBe('2024-03-01');
    expect(convertDate('01/03/2024', 'DD/MM/YYYY')).toBe('2024-03-01');
    expect(convertDate('1/3/2024', 'DD/MM/YYYY')).toBe('2024-03-01');
    expect(convertDate('03/01/2024', 'MM/DD/YYYY')).toBe('2024-03-01');
    expect(convertDate('01.03.2024 08:15', 'DD.MM.YYYY')).toBe('2024-03-01');
    expect(convertDate('29.02.2024', 'DD.MM.YYYY')).toBe('2024-02-29');
    expect(convertDate('29.02.2023', 'DD.MM.YYYY')).toBeUndefined();
    expect(convertDate('31/04/2024', 'DD/MM/YYYY')).toBeUndefined();
    expect(convertDate('13/13/2024', 'MM/DD/YYYY')).toBeUndefined();
    expect(convertDate('2024-03-01', 'DD/MM/YYYY')).toBeUndefined();
    expect(convertDate('20240301 x', 'YYYYMMDD')).toBe('2024-03-01');
    expect(convertDate('2024031', 'YYYYMMDD')).toBeUndefined();
  });
});

describe('RecordMapper on CSV rows', () => {
  it('maps a plain row to a declaration', () => {
    expect(ok(mapRow({}, [], []))).toEqual({
      id: 'D1', date: '2024-03-01', office: 'OF1', importer: 'IMP1', hs: '847130', origin: 'CN', customsValue: 1000, netMass: 12.5,
    });
  });

  it('converts net mass units to kg', () => {
    const mass = (unit: string, cell: string) => ok(mapRow({ fields: { netMass: { column: 'M2', unit } } }, ['M2'], [cell])).netMass;
    expect(mass('kg', '12.5')).toBe(12.5);
    expect(mass('g', '1500')).toBe(1.5);
    expect(mass('t', '2.5')).toBe(2500);
    expect(mass('lb', '100')).toBeCloseTo(45.359237, 9);
  });

  it('scales numbers with multiply', () => {
    expect(ok(mapRow({ fields: { customsValue: { column: 'P', multiply: 0.001 } } }, ['P'], ['250000'])).customsValue).toBeCloseTo(250, 9);
    expect(ok(mapRow({ fields: { taxRate: { column: 'R', multiply: 100 } } }, ['R'], ['0.08'])).taxRate).toBeCloseTo(8, 9);
  });

  it('parses numbers with the mapping decimal comma and thousands dot', () => {
    const v = ok(mapRow({ number: { decimal: ',', thousands: '.' }, fields: { customsValue: 'P', netMass: 'M2' } }, ['P', 'M2'], ['1.234.567,5', '12,25']));
    expect(v.customsValue).toBe(1234567.5);
    expect(v.netMass).toBe(12.25);
  });

  it('reports a number cell that does not parse as a FORMAT issue on that field with the raw cell', () => {
    const v = mapRow({ fields: { customsValue: 'P' } }, ['P'], ['12,5']);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.issues).toHaveLength(1);
    expect(v.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'customsValue', got: '12,5' });
    expect(v.issues[0].expected).toMatch(/number/);
    expect(v.id).toBe('D1');
  });

  it('leaves a blank number out: absent when optional, REQUIRED when required', () => {
    const v1 = ok(mapRow({ fields: { taxRate: 'R' } }, ['R'], ['  ']));
    expect('taxRate' in v1).toBe(false);
    const v2 = mapRow({ fields: { customsValue: 'P' } }, ['P'], ['']);
    expect(v2.ok).toBe(false);
    if (v2.ok) return;
    expect(v2.issues.map((i) => [i.code, i.field])).toEqual([['SEL_ERR_DECL_FIELD_REQUIRED', 'customsValue']]);
  });

  it('reports a negative number as out of range (validation after mapping)', () => {
    const v = mapRow({}, [], []);
    expect(v.ok).toBe(true);
    const neg = new RecordMapper(resolveColumns({ fields: BASE })).bindHeader(BASE_HEADER).map([...BASE_ROW.slice(0, 6), '-5', '1']);
    expect(neg.ok).toBe(false);
    if (!neg.ok) expect(neg.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_RANGE', field: 'customsValue' });
  });

  it('left-pads HS codes that lost their leading zeros, also when stored as floats', () => {
    const hs = (cell: string, pad = 6) => mapRow({ fields: { hs: { column: 'H', pad } } }, ['H'], [cell]);
    expect(ok(hs('30490')).hs).toBe('030490');
    expect(ok(hs('30490.0')).hs).toBe('030490');
    expect(ok(hs('847130')).hs).toBe('847130');
    expect(ok(hs('123456789', 10)).hs).toBe('0123456789');
    const bad = hs('12AB');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'hs' });
    // pad also works on codes
    expect(ok(mapRow({ fields: { office: { column: 'O', pad: 4 } } }, ['O'], ['30'])).office).toBe('0030');
  });

  it('converts dates in the mapping format and reports a bad date with the raw cell', () => {
    const d = (format: string, cell: string) => mapRow({ fields: { date: { column: 'D', format } } }, ['D'], [cell]);
    expect(ok(d('DD/MM/YYYY', '31/12/2023')).date).toBe('2023-12-31');
    expect(ok(d('MM/DD/YYYY', '12/31/2023')).date).toBe('2023-12-31');
    expect(ok(d('YYYYMMDD', '20231231')).date).toBe('2023-12-31');
    expect(ok(d('DD.MM.YYYY', '31.12.2023')).date).toBe('2023-12-31');
    const bad = d('DD/MM/YYYY', '2023-12-31');
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.issues).toHaveLength(1);
      expect(bad.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'date', got: '2023-12-31', expected: 'a date DD/MM/YYYY' });
    }
  });

  it('fills constants for every row', () => {
    const v = ok(mapRow({ fields: { origin: { const: 'kr' }, aeo: { const: true }, quantity: { const: 1 } } }, [], []));
    expect(v.origin).toBe('KR');
    expect(v.aeo).toBe(true);
    expect(v.quantity).toBe(1);
  });

  it('reads aeo with the mapping words, case-insensitively, and reports unknown words', () => {
    const aeo = (cell: string) => mapRow({ fields: { aeo: { column: 'A', true: ['Y', '1', 'yes'], false: ['N', '0', 'no', ''] } } }, ['A'], [cell]);
    expect(ok(aeo('Y')).aeo).toBe(true);
    expect(ok(aeo('yes')).aeo).toBe(true);
    expect(ok(aeo(' 1 ')).aeo).toBe(true);
    expect(ok(aeo('N')).aeo).toBe(false);
    expect(ok(aeo('')).aeo).toBe(false);
    const bad = aeo('maybe');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'aeo', got: 'maybe' });
    // the default preset accepts true/false/1/0/Y/N
    const d = new RecordMapper(PRESETS.default);
    const header = ['id', 'date', 'office', 'importer', 'hs', 'origin', 'customsValue', 'netMass', 'aeo'];
    const row = (a: string) => d.bindHeader(header).map(['X', '2024-01-01', 'O', 'I', '123456', 'DE', '1', '1', a]);
    for (const [cell, want] of [['true', true], ['1', true], ['Y', true], ['false', false], ['0', false], ['N', false]] as const) {
      expect(ok(row(cell)).aeo, cell).toBe(want);
    }
    expect(row('2').ok).toBe(false);
  });

  it('keeps text fields as strings and trims codes', () => {
    const v = ok(mapRow({ fields: { description: 'Desc', seller: 'S' } }, ['Desc', 'S'], ['  Laptops, 15" ', ' S9 ']));
    expect(v.description).toBe('  Laptops, 15" ');
    expect(v.seller).toBe('S9');
  });

  it('matches header names after trimming and then ignoring case', () => {
    const m = new RecordMapper(resolveColumns({ fields: BASE }));
    const b = m.bindHeader([' id ', 'DATE', 'Office', 'Importer', 'HS', 'Origin', 'Value', 'Mass']);
    expect(ok(b.map(BASE_ROW)).id).toBe('D1');
  });

  it('raises SEL_ERR_CSV_HEADER naming the field when a mapped column is missing', () => {
    const m = new RecordMapper(resolveColumns({ fields: { ...BASE, seller: 'Seller' }, passThrough: ['Label'] }));
    const noImporter = BASE_HEADER.filter((h) => h !== 'Importer').concat(['Seller', 'Label']);
    let e = caught(() => m.bindHeader(noImporter));
    expect(e.code).toBe('SEL_ERR_CSV_HEADER');
    expect(e.details.field).toBe('importer');
    expect(e.details.column).toBe('Importer');
    // an optional schema field named by the mapping must be there too
    e = caught(() => m.bindHeader([...BASE_HEADER, 'Label']));
    expect(e.code).toBe('SEL_ERR_CSV_HEADER');
    expect(e.details.field).toBe('seller');
    // and so must passThrough columns
    e = caught(() => m.bindHeader([...BASE_HEADER, 'Seller']));
    expect(e.code).toBe('SEL_ERR_CSV_HEADER');
    expect(e.details.field).toBe('Label');
  });

  it('accepts a missing column marked optional', () => {
    const m = new RecordMapper(resolveColumns({ fields: { ...BASE, seller: { column: 'Seller', optional: true } } }));
    const v = ok(m.bindHeader(BASE_HEADER).map(BASE_ROW));
    expect('seller' in v).toBe(false);
  });

  it('reports several bad fields of one row, without a duplicate REQUIRED issue for them', () => {
    const m = new RecordMapper(resolveColumns({ fields: BASE }));
    const v = m.bindHeader(BASE_HEADER).map(['D9', 'nope', 'OF1', '', '847130', 'CN', 'x', '1']);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.issues.map((i) => `${i.code}:${i.field}`).sort()).toEqual([
      'SEL_ERR_DECL_FIELD_FORMAT:customsValue',
      'SEL_ERR_DECL_FIELD_FORMAT:date',
      'SEL_ERR_DECL_FIELD_REQUIRED:importer',
    ]);
    expect(v.id).toBe('D9');
  });
});

describe('RecordMapper on JSON objects', () => {
  const mapping: ColumnMapping = resolveColumns({
    fields: { ...BASE, hs: { column: 'HS', pad: 6 }, date: { column: 'Date', format: 'YYYYMMDD' }, aeo: 'AEO' },
    passThrough: ['Label', 'Extra'],
  });
  const m = new RecordMapper(mapping);

  it('accepts numbers or strings for mapped keys', () => {
    const v = ok(m.mapObject({ ID: 42, Date: 20240301, Office: 30, Importer: 'I', HS: 30490, Origin: 'cn', Value: '1000.5', Mass: 3, AEO: 1 }));
    expect(v).toEqual({ id: '42', date: '2024-03-01', office: '30', importer: 'I', hs: '030490', origin: 'CN', customsValue: 1000.5, netMass: 3, aeo: true });
  });

  it('reports wrong types and non-objects', () => {
    const v = m.mapObject({ ID: 'X', Date: '20240301', Office: 'O', Importer: 'I', HS: '847130', Origin: 'CN', Value: true, Mass: 1 });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_TYPE', field: 'customsValue' });
    const arr = m.mapObject([1, 2]);
    expect(arr.ok).toBe(false);
    if (!arr.ok) expect(arr.issues[0].code).toBe('SEL_ERR_DECL_NOT_OBJECT');
  });

  it('returns passThrough values as strings', () => {
    expect(m.passThroughOf({ Label: 1, Extra: null })).toEqual(['1', '']);
    expect(m.passThroughOf({ Label: 'a', Extra: { b: 2 } })).toEqual(['a', '{"b":2}']);
  });
});
