/**
 * The history store: declarations (and their examination results, when
 * known) kept on disk for fast sequential replay through the kernel.
 *
 * Format: Apache Arrow IPC files (the "Feather v2" file format), one per
 * segment of at most `segmentRows` declarations, each holding record batches
 * of `batchRows` rows. Numbers are Float64 (NaN = absent), the date is
 * DateDay, categorical fields are dictionary-encoded (one dictionary per
 * field per segment, shared by the segment's batches; the narrowest signed
 * index type that fits). Any Arrow reader (pyarrow, DuckDB, polars) opens a
 * segment as it is.
 *
 * Appending never rewrites: an import writes new segment files (temporary
 * name, fsync, rename), then the manifest is replaced atomically. A segment
 * the manifest does not list is not part of the store (an import that
 * crashed before its commit); the next import removes it.
 */
import { open as openAsync, type FileHandle } from 'node:fs/promises';
import { closeSync, existsSync, fchmodSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  DateDay, Dictionary, Field, Float64, Int8, Int16, Int32, makeData, makeVector, RecordBatch, Schema, Struct, Table, tableFromIPC, tableToIPC, Uint32, Uint8, Utf8,
  type Data, type DataType,
} from 'apache-arrow';
import { ProcessLock } from '../store/process-lock.js';
import { errors } from '../errors.js';
import { batchLayout, batchViews, CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, type CategoricalColumn, type ColumnarBatch, type Dictionaries } from '../model/columnar.js';
import { DATA_FILE_MODE, makeDirs, writeFileDurable } from '../store/durable.js';

export const HISTORY_DIR = 'history';
export const MANIFEST_FILE = 'manifest.json';
export const HISTORY_FORMAT = 'selectivity-history';
export const HISTORY_FORMAT_VERSION = 1;
/** Rows per segment file (default). */
export const DEFAULT_SEGMENT_ROWS = 1 << 20;
/** Rows per Arrow record batch inside a segment (default). */
export const DEFAULT_BATCH_ROWS = 1 << 16;
/** Examination result: not known. */
export const RESULT_UNKNOWN = -1;

/** Categorical fields kept as Arrow dictionaries (aeo is a 0/1 Uint8 column). */
export const DICT_COLUMNS = CATEGORICAL_COLUMNS.filter((c) => c !== 'aeo') as Exclude<CategoricalColumn, 'aeo'>[];
type DictColumn = (typeof DICT_COLUMNS)[number];

export interface SegmentInfo {
  /** File name inside the store directory. */
  file: string;
  rows: number;
  /** Rows per record batch (the last batch may hold fewer). */
  batchRows: number;
  bytes: number;
  /** First and last date (days since 1970-01-01). */
  firstDay: number;
  lastDay: number;
  /** Rows whose examination result is known. */
  withResult: number;
  /** Rows found non-compliant. */
  nonCompliant: number;
  createdAt: string;
}

export interface ImportRecord {
  at: string;
  sources: string[];
  rows: number;
  segments: string[];
}

export interface HistoryManifest {
  format: typeof HISTORY_FORMAT;
  formatVersion: number;
  createdAt: string;
  updatedAt: string;
  rows: number;
  nextSegment: number;
  segments: SegmentInfo[];
  imports: ImportRecord[];
}

export function historyDir(dataDir: string): string {
  return join(dataDir, HISTORY_DIR);
}

function emptyManifest(): HistoryManifest {
  const now = new Date().toISOString();
  return { format: HISTORY_FORMAT, formatVersion: HISTORY_FORMAT_VERSION, createdAt: now, updatedAt: now, rows: 0, nextSegment: 1, segments: [], imports: [] };
}

/** Reads a store's manifest; an absent store is empty, a damaged one a named error. */
export function readManifest(dir: string): HistoryManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return emptyManifest();
  return parseManifest(readFileSync(path), path);
}

/** A manifest's bytes, as read from `path` (named in errors), checked as readManifest checks them. */
export function parseManifest(bytes: Uint8Array, path: string): HistoryManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw errors.SEL_ERR_HISTORY_INVALID(`cannot read the history manifest ${path}: ${(e as Error).message}`, { field: 'manifest', expected: 'a JSON manifest written by selectivity history import', got: path });
  }
  const m = raw as Partial<HistoryManifest>;
  if (m?.format !== HISTORY_FORMAT || !Array.isArray(m.segments)) {
    throw errors.SEL_ERR_HISTORY_INVALID(`${path} is not a history manifest`, { field: 'manifest', expected: `format "${HISTORY_FORMAT}"`, got: m?.format });
  }
  if (m.formatVersion !== HISTORY_FORMAT_VERSION) {
    throw errors.SEL_ERR_HISTORY_INVALID(`${path} has format version ${m.formatVersion}; this engine reads ${HISTORY_FORMAT_VERSION}`, { field: 'formatVersion', expected: String(HISTORY_FORMAT_VERSION), got: m.formatVersion });
  }
  return m as HistoryManifest;
}

/** The segments of a store that overlap [fromDay, toDay], with their paths. */
export function segmentsIn(dir: string, manifest: HistoryManifest, fromDay = -Infinity, toDay = Infinity): (SegmentInfo & { path: string })[] {
  return manifest.segments
    .filter((s) => s.lastDay >= fromDay && s.firstDay <= toDay)
    .map((s) => ({ ...s, path: join(dir, s.file) }));
}

// ---- writing -----------------------------------------------------------------

class Growable<T extends Float64Array | Int32Array | Uint32Array | Int8Array | Uint8Array> {
  n = 0;
  constructor(public a: T, private readonly make: (n: number) => T) {}
  reserve(extra: number): void {
    if (this.n + extra <= this.a.length) return;
    const next = this.make(Math.max(this.a.length * 2, this.n + extra));
    next.set(this.a.subarray(0, this.n) as never);
    this.a = next;
  }
}

/** One segment being filled: columns, the segment's dictionaries and the row ids. */
class SegmentBuilder {
  rows = 0;
  readonly numeric = NUMERIC_COLUMNS.map(() => new Float64Array(0));
  date: Int32Array;
  idHash: Uint32Array;
  aeo: Uint8Array;
  result: Int8Array;
  revenue: Float64Array;
  readonly codes: Record<DictColumn, Int32Array> = {} as Record<DictColumn, Int32Array>;
  readonly dicts: Record<DictColumn, string[]> = {} as Record<DictColumn, string[]>;
  readonly maps: Record<DictColumn, Map<string, number>> = {} as Record<DictColumn, Map<string, number>>;
  readonly ids: string[] = [];
  firstDay = Infinity;
  lastDay = -Infinity;
  withResult = 0;
  nonCompliant = 0;

  constructor(readonly capacity: number) {
    for (let k = 0; k < NUMERIC_COLUMNS.length; k++) this.numeric[k] = new Float64Array(capacity);
    this.date = new Int32Array(capacity);
    this.idHash = new Uint32Array(capacity);
    this.aeo = new Uint8Array(capacity);
    this.result = new Int8Array(capacity);
    this.revenue = new Float64Array(capacity);
    for (const c of DICT_COLUMNS) { this.codes[c] = new Int32Array(capacity); this.dicts[c] = []; this.maps[c] = new Map(); }
  }

  /** Appends rows [from, to) of a batch; returns how many were taken (stops when full). */
  add(batch: ColumnarBatch, ids: readonly string[], result: Int8Array | undefined, revenue: Float64Array | undefined, from: number): number {
    const take = Math.min(batch.size - from, this.capacity - this.rows);
    const at = this.rows;
    NUMERIC_COLUMNS.forEach((c, k) => this.numeric[k].set(batch.numeric[c].subarray(from, from + take), at));
    this.date.set(batch.date.subarray(from, from + take), at);
    this.idHash.set(batch.idHash.subarray(from, from + take), at);
    for (let i = 0; i < take; i++) this.aeo[at + i] = batch.codes.aeo[from + i];
    for (const c of DICT_COLUMNS) {
      // batch code → segment code, once per batch dictionary value
      const bd = batch.dicts[c];
      const lut = new Int32Array(bd.length);
      const map = this.maps[c], dict = this.dicts[c];
      for (let j = 0; j < bd.length; j++) {
        let code = map.get(bd[j]);
        if (code === undefined) { code = dict.length; dict.push(bd[j]); map.set(bd[j], code); }
        lut[j] = code;
      }
      const src = batch.codes[c], dst = this.codes[c];
      for (let i = 0; i < take; i++) dst[at + i] = lut[src[from + i]];
    }
    for (let i = 0; i < take; i++) {
      const r = result ? result[from + i] : RESULT_UNKNOWN;
      this.result[at + i] = r;
      this.revenue[at + i] = revenue ? revenue[from + i] : NaN;
      if (r !== RESULT_UNKNOWN) { this.withResult++; if (r === 1) this.nonCompliant++; }
      const d = batch.date[from + i];
      if (d < this.firstDay) this.firstDay = d;
      if (d > this.lastDay) this.lastDay = d;
      this.ids.push(ids[from + i]);
    }
    this.rows += take;
    return take;
  }

  get full(): boolean { return this.rows >= this.capacity; }
}

function utf8Data(values: readonly string[]): Data<Utf8> {
  const offsets = new Int32Array(values.length + 1);
  let bytes = 0;
  for (let i = 0; i < values.length; i++) { bytes += Buffer.byteLength(values[i], 'utf8'); offsets[i + 1] = bytes; }
  const data = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < values.length; i++) data.write(values[i], offsets[i], 'utf8');
  return makeData({ type: new Utf8(), length: values.length, nullCount: 0, valueOffsets: offsets, data: new Uint8Array(data.buffer, data.byteOffset, bytes) });
}

function indexType(size: number): { type: Int8 | Int16 | Int32; narrow: (a: Int32Array) => Int8Array | Int16Array | Int32Array } {
  if (size <= 0x7f) return { type: new Int8(), narrow: (a) => Int8Array.from(a) };
  if (size <= 0x7fff) return { type: new Int16(), narrow: (a) => Int16Array.from(a) };
  return { type: new Int32(), narrow: (a) => a };
}

/** Encodes a filled segment as Arrow IPC (file format). */
function encodeSegment(s: SegmentBuilder, batchRows: number): Uint8Array {
  const n = s.rows;
  const plain: { name: string; type: DataType; values: ArrayLike<number> & { subarray(a: number, b: number): unknown } }[] = [
    ...NUMERIC_COLUMNS.map((c, k) => ({ name: c, type: new Float64() as DataType, values: s.numeric[k].subarray(0, n) })),
    { name: 'date', type: new DateDay(), values: s.date.subarray(0, n) },
    { name: 'idHash', type: new Uint32(), values: s.idHash.subarray(0, n) },
    { name: 'aeo', type: new Uint8(), values: s.aeo.subarray(0, n) },
    { name: 'result', type: new Int8(), values: s.result.subarray(0, n) },
    { name: 'revenue', type: new Float64(), values: s.revenue.subarray(0, n) },
  ];
  const dicts = DICT_COLUMNS.map((c, k) => {
    const { type, narrow } = indexType(s.dicts[c].length);
    return { name: c, type: new Dictionary(new Utf8(), type, k), dictionary: utf8Data(s.dicts[c]), indices: narrow(s.codes[c].subarray(0, n)) };
  });
  const fields = [
    new Field('id', new Utf8(), false),
    ...plain.map((p) => new Field(p.name, p.type, false)),
    ...dicts.map((d) => new Field(d.name, d.type, false)),
  ];
  const schema = new Schema(fields, new Map([['selectivity.format', `${HISTORY_FORMAT}/${HISTORY_FORMAT_VERSION}`]]));
  const dictVectors = dicts.map((d) => makeVectorOf(d.dictionary));
  const batches: RecordBatch[] = [];
  for (let from = 0; from < n; from += batchRows) {
    const to = Math.min(n, from + batchRows);
    const len = to - from;
    const children: Data[] = [
      utf8Data(s.ids.slice(from, to)),
      ...plain.map((p) => makeData({ type: p.type, length: len, nullCount: 0, data: p.values.subarray(from, to) } as never) as Data),
      ...dicts.map((d, k) => makeData({ type: d.type, length: len, nullCount: 0, data: d.indices.subarray(from, to), dictionary: dictVectors[k] } as never) as Data),
    ];
    batches.push(new RecordBatch(schema, makeData({ type: new Struct(fields), length: len, nullCount: 0, children })));
  }
  return tableToIPC(new Table(schema, batches), 'file');
}

/** makeData takes a dictionary as a Vector. */
function makeVectorOf(d: Data<Utf8>) { return makeVector(d); }

function writeDurable(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', DATA_FILE_MODE); // owner-only, as the rest of the data directory
  try {
    fchmodSync(fd, DATA_FILE_MODE); // a temporary file left by a crash keeps the mode it was made with: set, not only asked for
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export interface HistoryWriterOptions {
  segmentRows?: number;
  batchRows?: number;
  /** Where the import came from (recorded in the manifest). */
  sources?: string[];
}

/** The import lock's file in the store (src/store/process-lock.ts). */
export const IMPORT_LOCK = '.import.lock';

/**
 * Appends declarations to a store. Nothing is visible until commit(): then
 * the new segments are listed in the manifest, atomically. One writer per
 * store at a time (ProcessLock on IMPORT_LOCK, let go of when the writer
 * closes or its process dies; a second writer gets SEL_ERR_HISTORY_BUSY).
 */
export class HistoryWriter {
  private readonly manifest: HistoryManifest;
  private seg: SegmentBuilder | undefined;
  private readonly written: SegmentInfo[] = [];
  private readonly segmentRows: number;
  private readonly batchRows: number;
  private readonly lock: ProcessLock;
  private closed = false;
  rows = 0;

  constructor(readonly dir: string, private readonly options: HistoryWriterOptions = {}) {
    this.segmentRows = options.segmentRows ?? DEFAULT_SEGMENT_ROWS;
    this.batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
    if (!Number.isInteger(this.segmentRows) || this.segmentRows < 1) throw errors.SEL_ERR_OPTION_INVALID('segmentRows must be a positive integer', { field: 'segmentRows', expected: 'an integer >= 1', got: this.segmentRows });
    if (!Number.isInteger(this.batchRows) || this.batchRows < 1) throw errors.SEL_ERR_OPTION_INVALID('batchRows must be a positive integer', { field: 'batchRows', expected: 'an integer >= 1', got: this.batchRows });
    try {
      makeDirs(dir, 0o700);
    } catch (e) {
      throw errors.SEL_ERR_STORAGE(`cannot create the history store ${dir}: ${(e as Error).message}`, { field: 'data-dir', expected: 'a writable data directory', got: dir });
    }
    this.lock = ProcessLock.take(join(dir, IMPORT_LOCK), 'history import', (holder) => errors.SEL_ERR_HISTORY_BUSY(`another import${holder ? ` (${holder})` : ''} is writing to this history store`, { field: 'history', expected: 'one writer at a time', got: dir }));
    try {
      this.manifest = readManifest(dir);
      // segments of an import that never committed
      const listed = new Set(this.manifest.segments.map((s) => s.file));
      for (const f of readdirSync(dir)) {
        if (/^seg-\d+\.arrow(\.tmp)?$/.test(f) && !listed.has(f)) rmSync(join(dir, f), { force: true });
      }
    } catch (e) {
      this.lock.release();
      throw e;
    }
  }

  /** Appends a batch's rows (with their examination results and revenue, when known). */
  add(batch: ColumnarBatch, ids: readonly string[], result?: Int8Array, revenue?: Float64Array): void {
    if (this.closed) throw errors.SEL_ERR_HISTORY_INVALID('the history writer is closed', { field: 'writer', expected: 'an open writer' });
    let from = 0;
    while (from < batch.size) {
      this.seg ??= new SegmentBuilder(this.segmentRows);
      const took = this.seg.add(batch, ids, result, revenue, from);
      from += took;
      this.rows += took;
      if (this.seg.full) this.flush();
    }
  }

  private flush(): void {
    const s = this.seg;
    this.seg = undefined;
    if (!s || s.rows === 0) return;
    const file = `seg-${String(this.manifest.nextSegment++).padStart(6, '0')}.arrow`;
    const bytes = encodeSegment(s, this.batchRows);
    try {
      writeDurable(join(this.dir, file), bytes);
    } catch (e) {
      throw errors.SEL_ERR_STORAGE(`cannot write ${join(this.dir, file)}: ${(e as Error).message}`, { field: 'path', expected: 'a writable data directory', got: this.dir });
    }
    this.written.push({ file, rows: s.rows, batchRows: this.batchRows, bytes: bytes.byteLength, firstDay: s.firstDay, lastDay: s.lastDay, withResult: s.withResult, nonCompliant: s.nonCompliant, createdAt: new Date().toISOString() });
  }

  /** Writes the last segment and lists the new segments in the manifest (atomic, durable). */
  commit(): { rows: number; segments: SegmentInfo[]; manifest: HistoryManifest } {
    if (this.closed) throw errors.SEL_ERR_HISTORY_INVALID('the history writer is closed', { field: 'writer', expected: 'an open writer' });
    try {
      this.flush();
      const m = this.manifest;
      m.segments.push(...this.written);
      m.rows += this.rows;
      m.updatedAt = new Date().toISOString();
      m.imports.push({ at: m.updatedAt, sources: this.options.sources ?? [], rows: this.rows, segments: this.written.map((s) => s.file) });
      writeFileDurable(join(this.dir, MANIFEST_FILE), `${JSON.stringify(m, null, 1)}\n`, { createMode: DATA_FILE_MODE });
      return { rows: this.rows, segments: [...this.written], manifest: m };
    } finally {
      this.close();
    }
  }

  /** Gives up: segments written so far are removed, the manifest is untouched. */
  abort(): void {
    if (this.closed) return;
    for (const s of this.written) rmSync(join(this.dir, s.file), { force: true });
    this.close();
  }

  private close(): void {
    this.closed = true;
    this.lock.release();
  }
}

// ---- reading -----------------------------------------------------------------

/** One opened segment: its Arrow table and its dictionaries as strings. */
export interface OpenSegment {
  table: Table;
  rows: number;
  dicts: Record<DictColumn, string[]>;
}

export function openSegment(path: string): OpenSegment {
  let table: Table;
  try {
    table = tableFromIPC(readFileSync(path));
  } catch (e) {
    throw errors.SEL_ERR_HISTORY_INVALID(`cannot read history segment ${path}: ${(e as Error).message}`, { field: 'segment', expected: 'an Arrow IPC file written by selectivity history import', got: path });
  }
  const dicts = {} as Record<DictColumn, string[]>;
  for (const c of DICT_COLUMNS) {
    const col = table.getChild(c);
    const first = col?.data[0];
    if (!first?.dictionary) throw errors.SEL_ERR_HISTORY_INVALID(`history segment ${path} has no dictionary column "${c}"`, { field: c, expected: 'a dictionary-encoded column', got: path });
    dicts[c] = first.dictionary.toArray() as string[];
  }
  return { table, rows: table.numRows, dicts };
}

/** One record batch of a segment, with the columns a replay needs. */
export interface SegmentBatch {
  rows: number;
  batch: RecordBatch;
}

/**
 * Turns rows of a segment's record batch into a kernel batch: numbers and
 * dates copied, categorical codes widened to u32. A column whose segment
 * dictionary is no longer than the batch shares that dictionary (the same
 * array for every batch of the segment, so per-value work stays proportional
 * to the batch); a longer one is remapped to a compact per-batch dictionary
 * (the kernel builds its lookup tables per dictionary value). `rows` selects
 * rows (all when absent). `scratch` holds one Int32Array per column, as long
 * as the segment dictionary, filled with -1 (left so on return). `buffer`,
 * when given and large enough, is reused for the batch's columns.
 */
export function toKernelBatch(rb: RecordBatch, seg: OpenSegment, scratch: Record<DictColumn, Int32Array>, rows?: Int32Array, buffer?: ArrayBuffer): ColumnarBatch {
  const n = rows ? rows.length : rb.numRows;
  const cap = Math.max(1, n);
  const bytes = batchLayout(cap).byteLength;
  const buf = buffer && buffer.byteLength >= bytes ? buffer : new ArrayBuffer(bytes);
  const dicts = {} as Dictionaries;
  const out = batchViews(buf, cap, n, dicts);
  const f64 = (name: string) => rb.getChild(name)!.data[0].values as Float64Array;
  for (const c of NUMERIC_COLUMNS) {
    const src = f64(c);
    if (rows) { const dst = out.numeric[c]; for (let i = 0; i < n; i++) dst[i] = src[rows[i]]; } else out.numeric[c].set(src.subarray(0, n));
  }
  const date = rb.getChild('date')!.data[0].values as Int32Array;
  const idHash = rb.getChild('idHash')!.data[0].values as Uint32Array;
  const aeo = rb.getChild('aeo')!.data[0].values as Uint8Array;
  if (rows) {
    for (let i = 0; i < n; i++) { const r = rows[i]; out.date[i] = date[r]; out.idHash[i] = idHash[r]; out.codes.aeo[i] = aeo[r]; }
  } else {
    out.date.set(date.subarray(0, n)); out.idHash.set(idHash.subarray(0, n)); out.codes.aeo.set(aeo.subarray(0, n));
  }
  dicts.aeo = ['false', 'true'];
  for (const c of DICT_COLUMNS) {
    const idx = rb.getChild(c)!.data[0].values as Int8Array | Int16Array | Int32Array;
    const full = seg.dicts[c];
    const dst = out.codes[c];
    if (full.length <= n) {
      if (rows) { for (let i = 0; i < n; i++) dst[i] = idx[rows[i]]; } else dst.set(idx.subarray(0, n));
      dicts[c] = full;
      continue;
    }
    const seen = scratch[c];
    const used: string[] = [];
    const back: number[] = [];
    for (let i = 0; i < n; i++) {
      const g = idx[rows ? rows[i] : i];
      let code = seen[g];
      if (code < 0) { code = used.length; seen[g] = code; used.push(full[g]); back.push(g); }
      dst[i] = code;
    }
    for (const g of back) seen[g] = -1;
    dicts[c] = used;
  }
  return out;
}

/** Scratch for toKernelBatch: one -1-filled Int32Array per column, as long as the segment's dictionary. */
export function remapScratch(seg: OpenSegment): Record<DictColumn, Int32Array> {
  const s = {} as Record<DictColumn, Int32Array>;
  for (const c of DICT_COLUMNS) s[c] = new Int32Array(seg.dicts[c].length).fill(-1);
  return s;
}

/** Bytes on disk of the store's segments and manifest. */
export function storeBytes(dir: string, manifest: HistoryManifest): number {
  let total = 0;
  for (const s of manifest.segments) total += s.bytes;
  const m = join(dir, MANIFEST_FILE);
  if (existsSync(m)) total += statSync(m).size;
  return total;
}

/**
 * Reads segment files ahead of the replay so that the workers find them in
 * the page cache: on a cold store a worker that opens a segment otherwise
 * waits for the disk with its core idle. The reads are asynchronous (libuv
 * threads, one 4 MiB buffer reused), at most `ahead` segments beyond the
 * lowest one still being replayed (`advance`), so memory stays bounded by the
 * page cache's own policy. A read that fails is left to the worker that needs
 * the file, which reports it with a named error.
 */
export class SegmentReadAhead {
  private lowest = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  readonly done: Promise<void>;
  /** Bytes read ahead so far. */
  bytes = 0;

  constructor(private readonly paths: readonly string[], private readonly ahead = 2, first = 1) {
    this.done = this.run(first);
  }

  /** The lowest segment index whose replay is not finished. */
  advance(lowest: number): void {
    if (lowest <= this.lowest) return;
    this.lowest = lowest;
    this.wake?.();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    return this.done;
  }

  private async run(first: number): Promise<void> {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let s = first; s < this.paths.length && !this.stopped;) {
      if (s > this.lowest + this.ahead) {
        await new Promise<void>((r) => { this.wake = r; });
        this.wake = undefined;
        continue;
      }
      let fh: FileHandle | undefined;
      try {
        fh = await openAsync(this.paths[s], 'r');
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          this.bytes += bytesRead;
          if (bytesRead === 0 || this.stopped) break;
        }
      } catch {
        // the worker that opens this segment reports what is wrong with it
      } finally {
        await fh?.close().catch(() => undefined);
      }
      s++;
    }
  }
}
