/**
 * A streaming RFC 4180 CSV parser (no dependency).
 *
 * - Fields may be quoted; inside quotes the delimiter, CR and LF are data and
 *   `""` is one quote character.
 * - Rows end at LF or CRLF. A lone CR outside quotes is kept as data (a CR at
 *   the very end of the input is dropped).
 * - A UTF-8 byte order mark at the start of the input is skipped.
 * - Chunks may be cut anywhere: inside quotes, between `""`, between CR and LF.
 * - Empty lines (no characters at all) are skipped by default. A line holding
 *   only `""` is a row with one empty cell.
 * - Lenient where RFC 4180 is silent: a quote inside an unquoted field is data
 *   (`5" pipe`), and text after a closing quote is appended to the field
 *   (`"ab"c` reads `abc`).
 * - An unterminated quoted field at the end of the input throws
 *   SEL_ERR_DECL_PARSE (details.line = the line where its row starts).
 *
 * The parser keeps only the unfinished part of the current row between chunks
 * and builds cells with slices, never character by character, so the cost is
 * linear in the input whatever the chunk sizes.
 */
import { errors } from '../errors.js';

const QUOTE = 34;
const LF = 10;
const CR = 13;
const BOM = 0xfeff;

// Parser states.
/** At the start of a field (or of a row). */
const FIELD_START = 0;
/** Inside an unquoted field. */
const UNQUOTED = 1;
/** Inside a quoted field. */
const QUOTED = 2;
/** Just after the closing quote of a quoted field. */
const AFTER_QUOTE = 3;
type State = 0 | 1 | 2 | 3;

export interface CsvOptions {
  /** One character; default ','. Must not be a quote, CR or LF. */
  delimiter?: string;
  /** Skip lines with no characters at all (default true). */
  skipEmptyLines?: boolean;
}

export class CsvParser {
  readonly delimiter: string;
  /**
   * The line (1-based) at which each row returned by the latest push() or
   * end() starts; parallel to the returned array. Rows may span lines (quoted
   * newlines), so this is the line of the row's first character.
   */
  lines: number[] = [];

  private readonly delim: number;
  private readonly skipEmpty: boolean;
  /** Unconsumed input: starts at the current field (or inside a quoted field). */
  private buf = '';
  /** Where to resume scanning inside `buf`. */
  private scan = 0;
  private state: State = FIELD_START;
  /** Cells of the current row completed so far. */
  private row: string[] = [];
  /** Decoded pieces of the current quoted field (only when it spans "" or chunks). */
  private parts: string[] = [];
  /** The value of a quoted field whose closing quote was seen (state AfterQuote), or a prefix for the unquoted text after it. */
  private pending = '';
  private prefix = '';
  /** Line number at the scanning position. */
  private line = 1;
  /** Line where the current row starts. */
  private rowLine = 1;
  private started = false;

  constructor(options: CsvOptions = {}) {
    const d = options.delimiter ?? ',';
    if (d.length !== 1 || d === '"' || d === '\r' || d === '\n') {
      throw errors.SEL_ERR_OPTION_INVALID(`invalid CSV delimiter ${JSON.stringify(d)}`, {
        field: 'delimiter', expected: 'one character other than a quote, CR or LF', got: d,
      });
    }
    this.delimiter = d;
    this.delim = d.charCodeAt(0);
    this.skipEmpty = options.skipEmptyLines ?? true;
  }

  /** The line number the parser has reached (1-based). */
  get currentLine(): number { return this.line; }

  /** Parses a chunk; returns the rows it completed (see `lines`). */
  push(chunk: string): string[][] {
    return this.parse(chunk, false);
  }

  /**
   * Ends the input: returns the last row if it had no line terminator. Throws
   * SEL_ERR_DECL_PARSE on an unterminated quoted field. The parser is reset
   * afterwards and may be reused for a new input.
   */
  end(): string[][] {
    try {
      return this.parse('', true);
    } finally {
      this.reset();
    }
  }

  private reset(): void {
    this.buf = '';
    this.scan = 0;
    this.state = FIELD_START;
    this.row = [];
    this.parts = [];
    this.pending = '';
    this.prefix = '';
    this.line = 1;
    this.rowLine = 1;
    this.started = false;
  }

  private parse(chunk: string, final: boolean): string[][] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === BOM) text = text.slice(1);
    }
    const s = this.buf.length > 0 ? this.buf + text : text;
    const n = s.length;
    const d = this.delim;
    const ds = this.delimiter;
    let nextD = -2;
    let nextN = -2;
    const out: string[][] = [];
    const lines: number[] = [];
    const skipEmpty = this.skipEmpty;
    const parts = this.parts;
    let i = this.scan;
    let fieldStart = 0;
    let state: State = this.state;
    let row = this.row;
    let line = this.line;
    let rowLine = this.rowLine;
    let prefix = this.prefix;
    let pending = this.pending;
    // Set when a row ends: 1 = a row, 2 = an empty line.
    let ended = 0;

    for (;;) {
      if (state === FIELD_START) {
        if (i >= n) break;
        if (s.charCodeAt(i) === QUOTE) {
          state = QUOTED;
          i++;
          fieldStart = i;
          continue;
        }
        fieldStart = i;
        state = UNQUOTED;
      }
      if (state === UNQUOTED) {
        // Next delimiter and next LF at or after i, cached: each is searched
        // again only once passed, so the scanning stays linear.
        if (nextD !== -1 && nextD < i) nextD = s.indexOf(ds, i);
        if (nextN !== -1 && nextN < i) nextN = s.indexOf('\n', i);
        if (nextD >= 0 && (nextD < nextN || nextN < 0)) {
          row.push(prefix.length > 0 ? prefix + s.slice(fieldStart, nextD) : s.slice(fieldStart, nextD));
          prefix = '';
          i = nextD + 1;
          state = FIELD_START;
          continue;
        }
        if (nextN < 0) { i = n; break; } // the field goes on in the next chunk
        let end = nextN;
        if (end > fieldStart && s.charCodeAt(end - 1) === CR) end--; // CRLF
        ended = row.length === 0 && fieldStart === end && prefix.length === 0 ? 2 : 1;
        row.push(prefix.length > 0 ? prefix + s.slice(fieldStart, end) : s.slice(fieldStart, end));
        prefix = '';
        i = nextN + 1;
        state = FIELD_START;
      } else if (state === QUOTED) {
        const q = s.indexOf('"', i);
        const stop = q < 0 ? n : q;
        for (let k = s.indexOf('\n', i); k >= 0 && k < stop; k = s.indexOf('\n', k + 1)) line++;
        if (q < 0) {
          if (fieldStart < n) parts.push(s.slice(fieldStart, n));
          fieldStart = n;
          i = n;
          break;
        }
        if (q + 1 >= n && !final) {
          // Cannot tell "" from a closing quote yet: keep the quote for the next chunk.
          if (fieldStart < q) parts.push(s.slice(fieldStart, q));
          fieldStart = q;
          i = q;
          break;
        }
        if (q + 1 < n && s.charCodeAt(q + 1) === QUOTE) {
          parts.push(s.slice(fieldStart, q + 1));
          i = q + 2;
          fieldStart = i;
          continue;
        }
        if (parts.length > 0) {
          parts.push(s.slice(fieldStart, q));
          pending = parts.join('');
          parts.length = 0;
        } else {
          pending = s.slice(fieldStart, q);
        }
        i = q + 1;
        state = AFTER_QUOTE;
        continue;
      } else {
        // AFTER_QUOTE
        if (i >= n) break;
        const c = s.charCodeAt(i);
        if (c === d) {
          row.push(pending);
          pending = '';
          i++;
          state = FIELD_START;
          continue;
        }
        if (c === LF || (c === CR && i + 1 < n && s.charCodeAt(i + 1) === LF)) {
          row.push(pending);
          pending = '';
          i += c === LF ? 1 : 2;
          state = FIELD_START;
          ended = 1;
        } else if (c === CR && i + 1 >= n) {
          break; // wait: this CR may start a CRLF
        } else {
          // Text after the closing quote: append it to the field (lenient).
          prefix = pending;
          pending = '';
          fieldStart = i;
          state = UNQUOTED;
          continue;
        }
      }
      // A row ended.
      if (!(ended === 2 && skipEmpty)) {
        out.push(row);
        lines.push(rowLine);
      }
      ended = 0;
      row = [];
      line++;
      rowLine = line;
    }

    if (final) {
      let last = 0;
      if (state === FIELD_START) {
        if (row.length > 0) { row.push(''); last = 1; }
      } else if (state === UNQUOTED) {
        let end = n;
        if (end > fieldStart && s.charCodeAt(end - 1) === CR) end--;
        last = row.length === 0 && fieldStart === end && prefix.length === 0 ? 2 : 1;
        row.push(prefix + s.slice(fieldStart, end));
      } else if (state === QUOTED) {
        throw errors.SEL_ERR_DECL_PARSE(`unterminated quoted field in the CSV row starting at line ${rowLine}`, {
          field: '$', expected: 'a closing quote', got: 'end of input', line: rowLine,
        });
      } else {
        row.push(pending);
        last = 1;
      }
      if (last === 1 || (last === 2 && !skipEmpty)) {
        out.push(row);
        lines.push(rowLine);
      }
      this.lines = lines;
      return out;
    }

    // Keep the unfinished part for the next chunk.
    if (state === FIELD_START) {
      this.buf = '';
      this.scan = 0;
    } else if (state === UNQUOTED) {
      this.buf = s.slice(fieldStart);
      this.scan = i - fieldStart;
    } else if (state === QUOTED) {
      this.buf = fieldStart < n ? s.slice(fieldStart) : '';
      this.scan = 0;
    } else {
      this.buf = i < n ? s.slice(i) : '';
      this.scan = 0;
    }
    this.state = state;
    this.row = row;
    this.line = line;
    this.rowLine = rowLine;
    this.prefix = prefix;
    this.pending = pending;
    this.lines = lines;
    return out;
  }
}

/** Parses a whole CSV text (small inputs, tests). */
export function parseCsv(text: string, options?: CsvOptions): { rows: string[][]; lines: number[] } {
  const p = new CsvParser(options);
  const rows = p.push(text);
  const lines = p.lines;
  const last = p.end();
  return { rows: rows.concat(last), lines: lines.concat(p.lines) };
}

const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * One cell of a CSV file written for people (decisions, study reports), RFC
 * 4180 quoted, and safe to open in a spreadsheet: a cell that begins with
 * =, +, -, @, a tab or a carriage return and is not a plain number is
 * prefixed with ' so that it is read as text, not as a formula (ids and
 * pass-through columns come from traders: an id of =HYPERLINK(…) was written
 * as a live formula). OWASP's advice for CSV injection.
 */
export function csvCellSafe(s: string): string {
  const t = FORMULA_START.test(s) && !PLAIN_NUMBER.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}
