import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { readDeclarations, type ReadChunk, type ReadOptions, type RecordError } from '../src/model/readers.js';
import { rowOf } from '../src/model/columnar.js';
import { parseCsv } from '../src/model/csv.js';
import type { Declaration } from '../src/model/schema.js';
import { isSelectivityError } from '../src/errors.js';

const here = dirname(fileURLToPath(import.meta.url));
const KCS_SAMPLE = join(here, 'fixtures', 'kcs-sample.csv');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sel-readers-'));
});

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

async function readAll(path: string, options?: ReadOptions) {
  const chunks: ReadChunk[] = [];
  for await (const c of readDeclarations(path, options)) chunks.push(c);
  const rows: Declaration[] = [];
  const errors: RecordError[] = [];
  const passThrough: Record<string, string[]> = {};
  for (const c of chunks) {
    for (let i = 0; i < c.batch.size; i++) rows.push(rowOf(c.batch, i, c.ids[i]));
    errors.push(...c.errors);
    for (const [k, v] of Object.entries(c.passThrough)) (passThrough[k] ??= []).push(...v);
    expect(c.ids).toHaveLength(c.batch.size);
    for (const v of Object.values(c.passThrough)) expect(v).toHaveLength(c.batch.size);
  }
  return { chunks, rows, errors, passThrough };
}

async function readError(path: string, options?: ReadOptions) {
  try {
    await readAll(path, options);
  } catch (e) {
    if (isSelectivityError(e)) return e;
    throw e;
  }
  throw new Error('expected the read to fail');
}

const HEADER = 'id,date,office,importer,hs,origin,customsValue,netMass,description,aeo';

describe('readDeclarations: CSV', () => {
  const csv = [
    HEADER, // line 1
    'A1,2024-01-02,OF1,IMP1,847130,cn,1000,12.5,"Laptops, 15""",true', // 2
    'A2,2024-01-03,OF2,IMP2,030490,DE,200.25,3,"two\nline",N', // 3-4
    'A3,2024-01-03,OF2,IMP2,030490,DE,abc,3,,', // 5: bad number
    '', // 6: blank
    'A4,2024-13-01,OF1,IMP1,847130,CN,1,1,,', // 7: bad date
    'A5,2024-01-04,OF1,IMP1,847130,CN,1,1', // 8: too few cells
    'A6,2024-01-05,OF3,IMP3,6109100010,VN,50,0,,0', // 9
  ].join('\r\n') + '\r\n';

  it('reads valid rows into the batch and reports invalid ones with line and code', async () => {
    const path = file('mixed.csv', '\uFEFF' + csv);
    const { rows, errors, chunks } = await readAll(path);
    expect(rows).toEqual([
      { id: 'A1', date: '2024-01-02', office: 'OF1', importer: 'IMP1', hs: '847130', origin: 'CN', customsValue: 1000, netMass: 12.5, description: 'Laptops, 15"', aeo: true },
      { id: 'A2', date: '2024-01-03', office: 'OF2', importer: 'IMP2', hs: '030490', origin: 'DE', customsValue: 200.25, netMass: 3, description: 'two\nline' },
      { id: 'A6', date: '2024-01-05', office: 'OF3', importer: 'IMP3', hs: '6109100010', origin: 'VN', customsValue: 50, netMass: 0 },
    ]);
    expect(errors.map((e) => [e.line, e.code, e.field])).toEqual([
      [5, 'SEL_ERR_DECL_FIELD_FORMAT', 'customsValue'],
      [7, 'SEL_ERR_DECL_FIELD_FORMAT', 'date'],
      [8, 'SEL_ERR_DECL_PARSE', '$'],
    ]);
    expect(errors[0]).toMatchObject({ id: 'A3', got: 'abc', index: 2 });
    expect(errors[1]).toMatchObject({ id: 'A4', index: 3 });
    expect(errors[2]).toMatchObject({ got: 8, index: 4 });
    const last = chunks[chunks.length - 1];
    expect(last.rowsRead).toBe(6);
    expect(last.bytesRead).toBe(statSync(path).size);
  });

  it('gives the same result whatever the read chunk size (UTF-8 split across chunks)', async () => {
    const path = file('utf8.csv', csv.replace('Laptops', 'Ordinateurs portés 日本'));
    const big = await readAll(path);
    expect(big.rows[0].description).toBe('Ordinateurs portés 日本, 15"');
    for (const chunkSize of [1, 2, 3, 7, 64]) {
      const small = await readAll(path, { chunkSize });
      expect(small.rows, `chunkSize ${chunkSize}`).toEqual(big.rows);
      expect(small.errors, `chunkSize ${chunkSize}`).toEqual(big.errors);
    }
  });

  it('splits batches at batchSize with cumulative rowsRead and growing bytesRead', async () => {
    const lines = [HEADER];
    for (let i = 0; i < 10; i++) lines.push(`B${i},2024-02-01,OF${i % 3},IMP${i},847130,CN,${i * 10},${i},,`);
    lines.splice(5, 0, 'BX,2024-02-01,OF1,IMP1,847130,CN,-1,1,,'); // invalid, between rows B3 and B4
    const path = file('batches.csv', lines.join('\n') + '\n');
    const { chunks, rows } = await readAll(path, { batchSize: 3, chunkSize: 50 });
    expect(chunks.map((c) => c.batch.size)).toEqual([3, 3, 3, 1]);
    expect(chunks.map((c) => c.rowsRead)).toEqual([3, 7, 10, 11]);
    expect(chunks.map((c) => c.errors.map((e) => e.line))).toEqual([[], [6], [], []]);
    expect(chunks[1].errors[0].code).toBe('SEL_ERR_DECL_FIELD_RANGE');
    for (let k = 1; k < chunks.length; k++) expect(chunks[k].bytesRead).toBeGreaterThanOrEqual(chunks[k - 1].bytesRead);
    expect(chunks[chunks.length - 1].bytesRead).toBe(statSync(path).size);
    expect(rows.map((r) => r.id)).toEqual(['B0', 'B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B9']);
    expect(rows.map((r) => r.office)).toEqual(['OF0', 'OF1', 'OF2', 'OF0', 'OF1', 'OF2', 'OF0', 'OF1', 'OF2', 'OF0']);
    expect(rows.map((r) => r.customsValue)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  });

  it('yields no trailing empty chunk: exact multiples of batchSize, and a header-only file', async () => {
    const rows3 = [HEADER, 'E1,2024-02-01,O,I,847130,CN,1,1,,', 'E2,2024-02-01,O,I,847130,CN,1,1,,', 'E3,2024-02-01,O,I,847130,CN,1,1,,'];
    const path = file('exact.csv', rows3.join('\n') + '\n');
    expect((await readAll(path, { batchSize: 3 })).chunks.map((c) => c.batch.size)).toEqual([3]);
    expect((await readAll(path, { batchSize: 1 })).chunks.map((c) => c.batch.size)).toEqual([1, 1, 1]);
    const headerOnly = file('header-only.csv', `${HEADER}\n`);
    expect((await readAll(headerOnly)).chunks).toEqual([]);
    const emptyNd = file('empty.ndjson', '\n\n');
    expect((await readAll(emptyNd)).chunks).toEqual([]);
  });

  it('yields a last chunk with an empty batch when it only has errors', async () => {
    const path = file('tail-errors.csv', `${HEADER}\nC1,2024-02-01,O,I,847130,CN,1,1,,\nC2,2024-02-01,O,I,847130,CN,x,1,,\n`);
    const { chunks } = await readAll(path, { batchSize: 1 });
    expect(chunks).toHaveLength(2);
    expect(chunks[1].batch.size).toBe(0);
    expect(chunks[1].errors.map((e) => [e.line, e.code])).toEqual([[3, 'SEL_ERR_DECL_FIELD_FORMAT']]);
  });

  it('reports an unterminated quote at the end as a parse error on its line and keeps the rows before', async () => {
    const path = file('unterminated.csv', `${HEADER}\nD1,2024-02-01,O,I,847130,CN,1,1,,\nD2,2024-02-01,O,I,847130,CN,1,1,"open\nstill,\n`);
    const { rows, errors } = await readAll(path);
    expect(rows.map((r) => r.id)).toEqual(['D1']);
    expect(errors.map((e) => [e.line, e.code])).toEqual([[3, 'SEL_ERR_DECL_PARSE']]);
  });

  it('carries passThrough columns aligned with the valid rows', async () => {
    const mapping = {
      fields: {
        id: 'Ref', date: { column: 'When', format: 'DD/MM/YYYY' }, office: 'Office', importer: 'Importer',
        hs: { column: 'HS', pad: 6 }, origin: 'Origin', customsValue: { column: 'Value', multiply: 0.001 },
        netMass: { column: 'Mass', unit: 'g' }, aeo: { column: 'AEO', true: ['Y'], false: ['N', ''] },
      },
      number: { decimal: ',', thousands: '.' },
      delimiter: ';',
      passThrough: ['Label', 'Note'],
    };
    const text = [
      'Ref;When;Office;Importer;HS;Origin;Value;Mass;AEO;Label;Note',
      'R1;01/02/2024;O1;I1;30490;CN;1.500.000;2.500;Y;1;first',
      'R2;02/02/2024;O1;I1;30490;CN;oops;2500;N;0;bad',
      'R3;03/02/2024;O2;I2;847130;DE;2.000,5;750;;0;"third; quoted"',
    ].join('\n');
    const path = file('mapped.csv', text);
    const { rows, errors, passThrough } = await readAll(path, { columns: mapping });
    expect(rows).toEqual([
      { id: 'R1', date: '2024-02-01', office: 'O1', importer: 'I1', hs: '030490', origin: 'CN', customsValue: 1500, netMass: 2.5, aeo: true },
      { id: 'R3', date: '2024-02-03', office: 'O2', importer: 'I2', hs: '847130', origin: 'DE', customsValue: 2000.5 * 0.001, netMass: 0.75 },
    ]);
    expect(errors.map((e) => [e.line, e.code, e.field, e.got])).toEqual([[3, 'SEL_ERR_DECL_FIELD_FORMAT', 'customsValue', 'oops']]);
    expect(passThrough).toEqual({ Label: ['1', '0'], Note: ['first', 'third; quoted'] });
  });

  it('raises SEL_ERR_CSV_HEADER naming the field when the header lacks a mapped column', async () => {
    const path = file('noimporter.csv', 'id,date,office,hs,origin,customsValue,netMass\nX,2024-01-01,O,847130,CN,1,1\n');
    const e = await readError(path);
    expect(e.code).toBe('SEL_ERR_CSV_HEADER');
    expect(e.details.field).toBe('importer');
    const empty = file('empty.csv', '');
    expect((await readError(empty)).code).toBe('SEL_ERR_CSV_HEADER');
  });

  it('raises SEL_ERR_FILE_NOT_FOUND, SEL_ERR_FILE_FORMAT, SEL_ERR_COLUMNS_INVALID and SEL_ERR_OPTION_INVALID', async () => {
    expect((await readError(join(dir, 'nope.csv'))).code).toBe('SEL_ERR_FILE_NOT_FOUND');
    expect((await readError(dir, { format: 'csv' })).code).toBe('SEL_ERR_FILE_NOT_FOUND');
    const txt = file('decl.txt', `${HEADER}\n`);
    expect((await readError(txt)).code).toBe('SEL_ERR_FILE_FORMAT');
    expect((await readError(txt, { format: 'xml' as 'csv' })).code).toBe('SEL_ERR_FILE_FORMAT');
    expect((await readError(txt, { columns: 'nosuchpreset', format: 'csv' })).code).toBe('SEL_ERR_COLUMNS_INVALID');
    expect((await readError(txt, { batchSize: 0, format: 'csv' })).code).toBe('SEL_ERR_OPTION_INVALID');
  });

  it('reads a file with an unknown extension when the format is given, skipping blank lines before the header', async () => {
    const txt = file('decl2.txt', `\n  \n${HEADER}\nT1,2024-02-01,O,I,847130,CN,1,1,,\n   \n`);
    const { rows, errors } = await readAll(txt, { format: 'csv' });
    expect(rows.map((r) => r.id)).toEqual(['T1']);
    expect(errors).toEqual([]);
  });
});

describe('readDeclarations: unmapped CSV columns with the default mapping', () => {
  it('carries every column the schema does not use, in header order, aligned with the rows', async () => {
    const p = file('labels.csv', [
      'fraud,id,date,office,importer,hs,origin,customsValue,netMass,fraud_type',
      '1,A1,2025-01-02,OF1,IMP1,851712,CN,100,2,undervaluation',
      '0,A2,2025-01-02,OF1,IMP1,851712,XX1,100,2,',
      '0,A3,2025-01-03,OF2,IMP2,610910,VN,50,1,',
    ].join('\n'));
    const { rows, errors, passThrough } = await readAll(p);
    expect(rows.map((r) => r.id)).toEqual(['A1', 'A3']);
    expect(errors.map((e) => e.line)).toEqual([3]);
    expect(Object.keys(passThrough)).toEqual(['fraud', 'fraud_type']);
    expect(passThrough.fraud).toEqual(['1', '0']);
    expect(passThrough.fraud_type).toEqual(['undervaluation', '']);
  });
});

describe('readDeclarations: NDJSON', () => {
  const good = (id: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ id, date: '2024-05-01', office: 'O1', importer: 'I1', hs: '847130', origin: 'CN', customsValue: 10, netMass: 2, ...extra });

  it('validates objects strictly without a mapping and keeps reading after bad lines', async () => {
    const text = [
      good('N1', { aeo: true, quantity: 4 }), // 1
      '{"id": "N2", "date": ', // 2: malformed
      '', // 3: blank
      good('N3', { weight: 5 }), // 4: unknown field
      good('N4', { customsValue: '10' }), // 5: string where a number is expected
      '[1,2]', // 6: not an object
      good('N5', { description: 'ok' }), // 7, no trailing newline
    ].join('\r\n');
    const path = file('decl.ndjson', '\uFEFF' + text);
    const { rows, errors, chunks } = await readAll(path);
    expect(rows.map((r) => r.id)).toEqual(['N1', 'N5']);
    expect(rows[0]).toEqual({ id: 'N1', date: '2024-05-01', office: 'O1', importer: 'I1', hs: '847130', origin: 'CN', customsValue: 10, netMass: 2, aeo: true, quantity: 4 });
    expect(rows[1].description).toBe('ok');
    expect(errors.map((e) => [e.line, e.code, e.field])).toEqual([
      [2, 'SEL_ERR_DECL_PARSE', '$'],
      [4, 'SEL_ERR_DECL_UNKNOWN_FIELD', 'weight'],
      [5, 'SEL_ERR_DECL_FIELD_TYPE', 'customsValue'],
      [6, 'SEL_ERR_DECL_NOT_OBJECT', '$'],
    ]);
    expect(errors[1].id).toBe('N3');
    expect(chunks[chunks.length - 1].rowsRead).toBe(6);
    expect(chunks[chunks.length - 1].bytesRead).toBe(statSync(path).size);
    expect(chunks.every((c) => Object.keys(c.passThrough).length === 0)).toBe(true);
  });

  it('gives the same result whatever the read chunk size, and splits batches', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 7; i++) lines.push(good(`M${i}`, { description: `é${i}日` }));
    lines.splice(3, 0, '{bad');
    const path = file('many.jsonl', lines.join('\n') + '\n');
    const ref = await readAll(path, { batchSize: 3 });
    expect(ref.chunks.map((c) => c.batch.size)).toEqual([3, 3, 1]);
    expect(ref.errors.map((e) => e.line)).toEqual([4]);
    for (const chunkSize of [1, 5, 13]) {
      const got = await readAll(path, { batchSize: 3, chunkSize });
      expect(got.rows).toEqual(ref.rows);
      expect(got.errors).toEqual(ref.errors);
    }
    expect(ref.rows.map((r) => r.description)).toEqual(['é0日', 'é1日', 'é2日', 'é3日', 'é4日', 'é5日', 'é6日']);
  });

  it('looks keys up through a mapping, with strings or numbers, and carries passThrough', async () => {
    const text = [
      JSON.stringify({ 'Declaration ID': 1, Date: '2020-01-01', 'Office ID': 30, 'Importer ID': 'I', 'HS6 Code': 30490, 'Country of Origin': 'cn', 'Item Price': '100.5', 'Net Mass': 2, Fraud: 1, 'Critical Fraud': 2 }),
      JSON.stringify({ 'Declaration ID': 2, Date: '2020-01-01', 'Office ID': 30, 'Importer ID': 'I', 'HS6 Code': 30490, 'Country of Origin': 'cn', 'Item Price': 'n/a', 'Net Mass': 2, Fraud: 0, 'Critical Fraud': 0 }),
      JSON.stringify({ 'Declaration ID': 3, Date: '2020-01-02', 'Office ID': 40, 'Importer ID': 'J', 'HS6 Code': '847130', 'Country of Origin': 'DE', 'Item Price': 7, 'Net Mass': '1.5', Fraud: 0, 'Critical Fraud': 0 }),
    ].join('\n');
    const path = file('kcs.ndjson', text);
    const { rows, errors, passThrough } = await readAll(path, { columns: 'kcs' });
    expect(rows).toEqual([
      { id: '1', date: '2020-01-01', office: '30', importer: 'I', hs: '030490', origin: 'CN', customsValue: 100.5, netMass: 2 },
      { id: '3', date: '2020-01-02', office: '40', importer: 'J', hs: '847130', origin: 'DE', customsValue: 7, netMass: 1.5 },
    ]);
    expect(errors.map((e) => [e.line, e.code, e.field, e.id])).toEqual([[2, 'SEL_ERR_DECL_FIELD_FORMAT', 'customsValue', '2']]);
    expect(passThrough).toEqual({ Fraud: ['1', '0'], 'Critical Fraud': ['2', '0'] });
  });
});

describe('readDeclarations: gzip files (.gz)', () => {
  const good = (id: string) => JSON.stringify({ id, date: '2024-05-01', office: 'O1', importer: `I${id}`, hs: '847130', origin: 'CN', customsValue: 10, netMass: 2, description: `é${id}日` });
  const ndjson = Array.from({ length: 3000 }, (_, i) => (i === 1500 ? '{bad' : good(`G${i}`))).join('\n') + '\n';

  it('reads file.ndjson.gz and file.csv.gz as the files they hold; bytesRead counts the compressed bytes', async () => {
    const plain = await readAll(file('g.ndjson', ndjson), { batchSize: 700 });
    const zipped = file('g.ndjson.GZ', gzipSync(ndjson));
    for (const chunkSize of [7, 1 << 20]) {
      const got = await readAll(zipped, { batchSize: 700, chunkSize });
      expect(got.rows).toEqual(plain.rows);
      expect(got.errors).toEqual(plain.errors);
      expect(got.chunks.at(-1)!.bytesRead).toBe(statSync(zipped).size);
    }
    expect(plain.rows).toHaveLength(2999);
    const csv = readFileSync(KCS_SAMPLE);
    const a = await readAll(KCS_SAMPLE, { columns: 'kcs' });
    const b = await readAll(file('kcs.csv.gz', gzipSync(csv)), { columns: 'kcs' });
    expect(b.rows).toEqual(a.rows);
    expect(b.passThrough).toEqual(a.passThrough);
  });

  it('reads a gzip file cut short up to the cut, then raises SEL_ERR_FILE_FORMAT; one that is not gzip raises it at once', async () => {
    const whole = gzipSync(ndjson);
    const cut = file('cut.ndjson.gz', whole.subarray(0, whole.length >> 1));
    const rows: Declaration[] = [];
    let failure: unknown;
    try {
      for await (const c of readDeclarations(cut, { batchSize: 100 })) for (let i = 0; i < c.batch.size; i++) rows.push(rowOf(c.batch, i, c.ids[i]));
    } catch (e) {
      failure = e;
    }
    expect(failure).toMatchObject({ code: 'SEL_ERR_FILE_FORMAT', details: { field: 'path' } });
    expect(rows.length).toBeGreaterThan(1000);
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: rows.length }, (_, i) => `G${i < 1500 ? i : i + 1}`));
    await expect(readAll(file('plain.ndjson.gz', ndjson))).rejects.toMatchObject({ code: 'SEL_ERR_FILE_FORMAT' });
    // the name under .gz tells the format
    await expect(readAll(file('what.gz', whole))).rejects.toMatchObject({ code: 'SEL_ERR_FILE_FORMAT', details: { field: 'format' } });
    expect((await readAll(file('what.gz', whole), { format: 'ndjson' })).rows).toHaveLength(2999);
  });
});

describe('readDeclarations: the kcs preset on the shipped KCS sample', () => {
  it('reads all 300 rows with the right values and labels', async () => {
    const { rows, errors, passThrough, chunks } = await readAll(KCS_SAMPLE, { columns: 'kcs', batchSize: 128 });
    expect(errors).toEqual([]);
    expect(rows).toHaveLength(300);
    expect(chunks.map((c) => c.batch.size)).toEqual([128, 128, 44]);
    // first data row: 97061800,2020-01-01,30,B,11,21,11,10,ZZR1LT6,QLRUBN9,0VKY2BR,,440890,BE,BE,0.0,FEU1,G,108.0,372254.4,0,0
    expect(rows[0]).toEqual({
      id: '97061800', date: '2020-01-01', office: '30', importer: 'QLRUBN9', declarant: 'ZZR1LT6', seller: '0VKY2BR',
      hs: '440890', origin: 'BE', departure: 'BE', transportMode: '10', customsValue: 372254.4, netMass: 108, taxRate: 0,
    });
    // every row agrees with an independent parse of the fixture
    const { rows: raw } = parseCsv(readFileSync(KCS_SAMPLE, 'utf8'));
    const h = raw[0];
    const col = (name: string) => h.indexOf(name);
    expect(raw).toHaveLength(301);
    raw.slice(1).forEach((r, i) => {
      expect(rows[i].id).toBe(r[col('Declaration ID')]);
      expect(rows[i].hs).toBe(r[col('HS6 Code')].padStart(6, '0'));
      expect(rows[i].netMass).toBe(Number(r[col('Net Mass')]));
      expect(rows[i].customsValue).toBe(Number(r[col('Item Price')]));
      expect(rows[i].seller).toBe(r[col('Seller ID')] === '' ? undefined : r[col('Seller ID')]);
    });
    expect(passThrough.Fraud).toEqual(raw.slice(1).map((r) => r[col('Fraud')]));
    expect(passThrough['Critical Fraud']).toEqual(raw.slice(1).map((r) => r[col('Critical Fraud')]));
    expect(passThrough.Fraud.filter((f) => f === '1').length).toBeGreaterThan(0);
  });

  it('raises SEL_ERR_CSV_HEADER when the default mapping is used on the KCS layout', async () => {
    const e = await readError(KCS_SAMPLE);
    expect(e.code).toBe('SEL_ERR_CSV_HEADER');
    expect(e.details.field).toBe('id');
  });
});
