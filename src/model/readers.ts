/**
 * Streaming readers for declaration files (CSV and NDJSON). Files are read in
 * chunks (never whole), mapped through a column mapping, validated, and
 * packed into columnar batches. One bad record never stops a file: it is
 * reported with its line number and the rest is read.
 */
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { extname } from 'node:path';
import { errors, isSelectivityError, preview } from '../errors.js';
import { BatchBuilder, type ColumnarBatch } from './columnar.js';
import { validateDeclaration, type FieldIssue, type Validation } from './schema.js';
import { CsvParser } from './csv.js';
import { RecordMapper, resolveColumns, type ColumnMapping, type HeaderBinding } from './columns.js';

export interface RecordError {
  /** Line (1-based) where the record starts (the CSV header is line 1). */
  line: number;
  /** 0-based index of the record in the file (blank lines and the CSV header not counted). */
  index: number;
  /** The declaration id, when it could be read. */
  id?: string;
  code: string;
  /** Schema field at fault, or '$' for the record as a whole. */
  field: string;
  expected: string;
  got?: unknown;
  message: string;
}

export interface ReadChunk {
  batch: ColumnarBatch;
  ids: string[];
  /** passThrough column name → values, in batch row order (valid records only). */
  passThrough: Record<string, string[]>;
  /**
   * Invalid records met while filling this batch (they are NOT in the batch),
   * one entry per issue: a record with two bad fields gives two entries with
   * the same line and index.
   */
  errors: RecordError[];
  /** Cumulative records read so far (valid + invalid). */
  rowsRead: number;
  /** Cumulative bytes consumed so far (for progress bars). */
  bytesRead: number;
}

export interface ReadOptions {
  /** Column mapping: preset name, JSON file path or object. CSV default: the `default` preset; NDJSON default: none (strict). */
  columns?: string | object;
  /** Rows per batch (default 8192). */
  batchSize?: number;
  /** Default from the extension: .csv → csv; .ndjson, .jsonl → ndjson. */
  format?: 'csv' | 'ndjson';
  /** Bytes per read from the file (default 1 MiB). */
  chunkSize?: number;
}

export const DEFAULT_BATCH_SIZE = 8192;
const DEFAULT_CHUNK_SIZE = 1 << 20;

/** Detects the file format from the extension, or throws SEL_ERR_FILE_FORMAT. */
export function formatOf(path: string, format?: string): 'csv' | 'ndjson' {
  if (format !== undefined) {
    if (format === 'csv' || format === 'ndjson') return format;
    throw errors.SEL_ERR_FILE_FORMAT(`unsupported input format "${format}"`, { field: 'format', expected: 'csv or ndjson', got: format });
  }
  // a gzip file is read as the file it holds: declarations.csv.gz is a CSV file
  const ext = extname(gzipped(path) ? path.slice(0, -3) : path).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.ndjson' || ext === '.jsonl') return 'ndjson';
  throw errors.SEL_ERR_FILE_FORMAT(`cannot tell the format of ${path} from its extension "${ext}"`, {
    field: 'format', expected: 'a .csv, .ndjson or .jsonl file (or one of them gzipped: .csv.gz…), or an explicit format', got: ext || path,
  });
}

function positiveInt(name: string, v: unknown, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw errors.SEL_ERR_OPTION_INVALID(`${name} must be an integer from 1 to ${max}`, { field: name, expected: `an integer from 1 to ${max}`, got: v });
  }
  return v;
}

/** Collects valid records into batches and invalid ones into errors. */
class Collector {
  private builder: BatchBuilder;
  private errs: RecordError[] = [];
  private pt: string[][];
  ptNames: readonly string[];
  rowsRead = 0;
  bytesRead = 0;
  private readonly errorFlush: number;

  /** Sets the passThrough columns once a CSV header has been bound ("*" expanded). */
  setPassThroughNames(names: readonly string[]): void {
    this.ptNames = names;
    this.pt = names.map(() => []);
  }

  constructor(batchSize: number, ptNames: readonly string[]) {
    this.builder = new BatchBuilder(batchSize);
    this.ptNames = ptNames;
    this.pt = ptNames.map(() => []);
    // Many invalid records in a row would pile up errors without filling a batch: flush them.
    this.errorFlush = Math.max(batchSize, 1024);
  }

  /** Adds one record's outcome; returns true when a chunk should be yielded. */
  add(v: Validation, line: number, ptValues?: readonly string[]): boolean {
    const index = this.rowsRead++;
    if (v.ok) {
      this.builder.push(v.value);
      if (ptValues) for (let k = 0; k < ptValues.length; k++) this.pt[k].push(ptValues[k]);
      return this.builder.full;
    }
    for (const issue of v.issues) this.errs.push(recordError(issue, line, index, v.id));
    return this.errs.length >= this.errorFlush;
  }

  /** Records an unreadable record (malformed JSON line, wrong CSV cell count). */
  addParseError(line: number, expected: string, got: unknown, message: string, id?: string): boolean {
    const index = this.rowsRead++;
    const e: RecordError = { line, index, code: errors.SEL_ERR_DECL_PARSE.code, field: '$', expected, got: preview(got), message: `line ${line}: ${message}` };
    if (id !== undefined) e.id = id;
    this.errs.push(e);
    return this.errs.length >= this.errorFlush;
  }

  get pending(): boolean {
    return this.builder.length > 0 || this.errs.length > 0;
  }

  take(): ReadChunk {
    const { batch, ids } = this.builder.finish();
    const passThrough: Record<string, string[]> = {};
    this.ptNames.forEach((name, k) => { passThrough[name] = this.pt[k]; });
    const chunk: ReadChunk = { batch, ids, passThrough, errors: this.errs, rowsRead: this.rowsRead, bytesRead: this.bytesRead };
    this.errs = [];
    this.pt = this.ptNames.map(() => []);
    return chunk;
  }
}

function recordError(issue: FieldIssue, line: number, index: number, id: string | undefined): RecordError {
  const e: RecordError = { line, index, code: issue.code, field: issue.field, expected: issue.expected, message: `line ${line}: ${issue.message}` };
  if (id !== undefined) e.id = id;
  if ('got' in issue) e.got = issue.got;
  return e;
}

/** Whether a file is read through gzip: its name ends in .gz. */
export function gzipped(path: string): boolean {
  return path.toLowerCase().endsWith('.gz');
}

/**
 * Opens the file, or throws SEL_ERR_FILE_NOT_FOUND; yields decoded text
 * chunks and counts the file's bytes read (of a .gz file, the compressed
 * bytes: progress is against the file's size). A .gz file that is not
 * gzip, or is cut short, throws SEL_ERR_FILE_FORMAT after the text before
 * the fault.
 */
export async function* textChunks(path: string, chunkSize: number, counter: { bytesRead: number }): AsyncGenerator<string> {
  let fh;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
  } catch (e) {
    await fh?.close().catch(() => undefined);
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a readable file', got: path });
  }
  const stream = fh.createReadStream({ highWaterMark: chunkSize });
  const gunzip = gzipped(path) ? createGunzip({ chunkSize: Math.max(64, Math.min(chunkSize, 1 << 20)) }) : undefined;
  let unzipFailed = false;
  if (gunzip) {
    stream.on('data', (buf: string | Buffer) => { counter.bytesRead += buf.length; });
    stream.on('error', (e) => gunzip.destroy(e));
    gunzip.on('error', () => { unzipFailed = true; });
    stream.pipe(gunzip);
  }
  const decoder = new StringDecoder('utf8');
  try {
    for await (const buf of (gunzip ?? stream) as AsyncIterable<Buffer>) {
      if (!gunzip) counter.bytesRead += buf.length;
      const text = decoder.write(buf);
      if (text.length > 0) yield text;
    }
  } catch (e) {
    if (isSelectivityError(e)) throw e;
    if (unzipFailed) throw errors.SEL_ERR_FILE_FORMAT(`${path} is not a whole gzip file: ${(e as Error).message}`, { field: 'path', expected: 'a gzip file (its name ends in .gz)', got: path });
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a readable file', got: path });
  } finally {
    gunzip?.destroy();
    stream.destroy();
  }
  const rest = decoder.end();
  if (rest.length > 0) yield rest;
}

/**
 * Reads declarations from a CSV or NDJSON file in columnar batches.
 *
 * Throws (on the first `next()`): SEL_ERR_FILE_NOT_FOUND, SEL_ERR_FILE_FORMAT,
 * SEL_ERR_COLUMNS_INVALID, SEL_ERR_CSV_HEADER, SEL_ERR_OPTION_INVALID.
 * Bad records are reported in `errors` of the chunk that was filling.
 */
export async function* readDeclarations(path: string, options: ReadOptions = {}): AsyncGenerator<ReadChunk> {
  const format = formatOf(path, options.format);
  const batchSize = positiveInt('batchSize', options.batchSize, DEFAULT_BATCH_SIZE, 1 << 24);
  const chunkSize = positiveInt('chunkSize', options.chunkSize, DEFAULT_CHUNK_SIZE, 1 << 30);
  if (format === 'csv') {
    yield* readCsv(path, resolveColumns(options.columns), batchSize, chunkSize);
  } else {
    yield* readNdjson(path, options.columns === undefined ? undefined : resolveColumns(options.columns), batchSize, chunkSize);
  }
}

async function* readCsv(path: string, mapping: ColumnMapping, batchSize: number, chunkSize: number): AsyncGenerator<ReadChunk> {
  const mapper = new RecordMapper(mapping);
  const parser = new CsvParser({ delimiter: mapping.delimiter });
  const out = new Collector(batchSize, mapping.passThrough.filter((p) => p !== '*'));
  let binding: HeaderBinding | undefined;
  let width = 0;
  let ptIndex: readonly number[] = [];

  // Returns true when a chunk is due.
  const onRow = (cells: string[], line: number): boolean => {
    if (binding === undefined) {
      if (cells.length === 1 && cells[0].trim() === '') return false; // blank lines before the header
      binding = mapper.bindHeader(cells);
      width = cells.length;
      ptIndex = binding.passThroughIndex;
      out.setPassThroughNames(binding.passThroughNames);
      return false;
    }
    if (cells.length !== width) {
      if (cells.length === 1 && cells[0].trim() === '') return false; // a blank line (spaces only)
      return out.addParseError(line, `${width} cells, as in the header`, cells.length,
        `expected ${width} cells as in the header, got ${cells.length}`);
    }
    const v = binding.map(cells);
    if (!v.ok || ptIndex.length === 0) return out.add(v, line);
    const pt = new Array<string>(ptIndex.length);
    for (let k = 0; k < ptIndex.length; k++) pt[k] = cells[ptIndex[k]];
    return out.add(v, line, pt);
  };

  for await (const text of textChunks(path, chunkSize, out)) {
    const rows = parser.push(text);
    const lines = parser.lines;
    for (let r = 0; r < rows.length; r++) {
      if (onRow(rows[r], lines[r])) yield out.take();
    }
  }
  let last: string[][] = [];
  let lastLines: number[] = [];
  try {
    last = parser.end();
    lastLines = parser.lines;
  } catch (e) {
    if (!isSelectivityError(e) || e.code !== errors.SEL_ERR_DECL_PARSE.code || binding === undefined) throw e;
    const line = typeof e.details.line === 'number' ? e.details.line : 0;
    if (out.addParseError(line, 'a closing quote', 'end of file', 'unterminated quoted field (the record runs to the end of the file)')) yield out.take();
  }
  for (let r = 0; r < last.length; r++) {
    if (onRow(last[r], lastLines[r])) yield out.take();
  }
  if (binding === undefined) {
    // An empty file: no header at all.
    const first = mapper.neededColumns().find((c) => !c.optional);
    throw errors.SEL_ERR_CSV_HEADER(`${path} has no header row`, {
      field: first?.field ?? '$', column: first?.column, expected: 'a header row naming the mapped columns', got: '',
    });
  }
  if (out.pending) yield out.take();
}

async function* readNdjson(path: string, mapping: ColumnMapping | undefined, batchSize: number, chunkSize: number): AsyncGenerator<ReadChunk> {
  const mapper = mapping ? new RecordMapper(mapping) : undefined;
  // "*" (every other column) has no header to expand in NDJSON: only named columns pass through
  const ptNames = mapping?.passThrough.filter((p) => p !== '*') ?? [];
  const out = new Collector(batchSize, ptNames);
  const hasPt = ptNames.length > 0;
  let lineNo = 0;
  let partial: string[] = [];
  let first = true;

  const onLine = (raw: string, line: number): boolean => {
    const text = raw.length > 0 && raw.charCodeAt(raw.length - 1) === 13 ? raw.slice(0, -1) : raw;
    if (text.trim() === '') return false;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      return out.addParseError(line, 'a JSON object on one line', text, `malformed JSON: ${(e as Error).message}`);
    }
    if (!mapper) return out.add(validateDeclaration(obj), line);
    const v = mapper.mapObject(obj);
    if (!v.ok || !hasPt) return out.add(v, line);
    return out.add(v, line, mapper.passThroughOf(obj as Record<string, unknown>));
  };

  for await (let text of textChunks(path, chunkSize, out)) {
    if (first) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    let nl = text.indexOf('\n');
    while (nl >= 0) {
      let line: string;
      if (partial.length > 0) {
        partial.push(text.slice(start, nl));
        line = partial.join('');
        partial = [];
      } else {
        line = text.slice(start, nl);
      }
      lineNo++;
      if (onLine(line, lineNo)) yield out.take();
      start = nl + 1;
      nl = text.indexOf('\n', start);
    }
    if (start < text.length) partial.push(text.slice(start));
  }
  if (partial.length > 0) {
    lineNo++;
    if (onLine(partial.join(''), lineNo)) yield out.take();
  }
  if (out.pending) yield out.take();
}
