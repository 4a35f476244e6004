/**
 * Peer-statistics snapshots on disk: versioned, checksummed, written durably.
 * JSON (.json) or MessagePack (.msgpack / .mpk), chosen by the extension when
 * writing and by the first byte when reading. docs/peers.md documents the
 * format; in short (format version 2):
 *
 * { "format": "selectivity-peers", "formatVersion": 2,
 *   "version": "peers-<16 hex>", "checksum": "sha256:<64 hex>", "createdAt": "…",
 *   "parent": null | "peers-…", "rows": 1000000, "sources": [{ file, rows, addedAt }],
 *   "sketch": { "exactLimit": 64, "relativeAccuracy": 0.005 }, "minGroupSize": 5,
 *   "features": ["unitValue", "netMass", "valuePerItem"],
 *   "levels": ["hs6,origin", "hs6", "hs4", "hs2"],
 *   "groups": [ [ [key, count, firstDay, lastDay, F, F, F], … ] per level ] }
 *
 * where each F = [n, mean, m2, min, max, median, mad, values | null, bins | null]
 * (log units; null for a non-finite number; values: the exact values while
 * n ≤ exactLimit; bins: [index, count] pairs after). The checksum is the
 * SHA-256 of the canonical JSON of everything but version, checksum and
 * createdAt; version is its first 16 hex digits, so equal content has an
 * equal version. Format version 1 (median/MAD only) is still read, for
 * scoring, but cannot be folded into.
 *
 * Loading checks everything before returning: a corrupt file (bad JSON or
 * MessagePack, wrong checksum, malformed rows) is SEL_ERR_PEERS_CORRUPT; a
 * file of another format, format version or feature set is
 * SEL_ERR_PEERS_MISMATCH. The caller's current snapshot is never touched.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ProcessLock } from '../store/process-lock.js';
import { pack, unpack } from 'msgpackr';
import { errors } from '../errors.js';
import { makeDirs, writeFileDurable, type DurableWriteOptions } from '../store/durable.js';
import { dirname } from 'node:path';
import {
  FEATURES, isLevelKey, levelKeyForm, NF, parseLevels, snapshotTables,
  type GroupState, type PeerGroup, type PeerSnapshot, type PeerTables, type SnapshotInfo,
} from './peer-groups.js';
import { binWidth, FeatureSketch, type SketchState } from './sketch.js';

export const PEERS_FORMAT = 'selectivity-peers';
export const PEERS_FORMAT_VERSION = 2;

type Num = number | null;
type FeatureRow = [n: number, mean: Num, m2: Num, min: Num, max: Num, median: Num, mad: Num, values: number[] | null, bins: [number, number][] | null];
type GroupRow = [key: string, count: number, firstDay: Num, lastDay: Num, ...features: FeatureRow[]];

const num = (x: number): Num => (Number.isFinite(x) ? x : null);
const unnum = (x: Num, fallback = NaN): number => (x === null ? fallback : x);

function corrupt(source: string, message: string, field: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_PEERS_CORRUPT(`${source}: ${message}`, { field, expected, got });
}

function mismatch(source: string, message: string, field: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_PEERS_MISMATCH(`${source}: ${message}`, { field, expected, got });
}

function groupRows(snapshot: PeerSnapshot): GroupRow[][] {
  return snapshot.groups.map((m) => [...m].map(([key, g]): GroupRow => [
    key, g.count, num(g.firstDate), num(g.lastDate),
    ...g.sketches.map((sk): FeatureRow => {
      const s = sk.state();
      const sum = sk.summary();
      return [s.n, num(s.mean), num(s.m2), num(s.min), num(s.max), num(sum.median), num(sum.mad), s.values ?? null, s.bins ?? null];
    }),
  ]));
}

interface Body {
  parent: string | null;
  rows: number;
  sources: SnapshotInfo['sources'];
  sketch: SnapshotInfo['sketch'];
  minGroupSize: number;
  features: readonly string[];
  levels: string[];
  groups: GroupRow[][];
}

function digest(body: Body): string {
  const canonical = JSON.stringify([body.parent, body.rows, body.sources, body.sketch, body.minGroupSize, body.features, body.levels, body.groups]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** The document a snapshot is saved as; also sets snapshot.info.version. */
export function snapshotDocument(snapshot: PeerSnapshot): Record<string, unknown> {
  const i = snapshot.info;
  const body: Body = {
    parent: i.parent, rows: i.rows, sources: i.sources, sketch: i.sketch, minGroupSize: i.minGroupSize,
    features: FEATURES, levels: snapshot.levels.map((l) => l.name), groups: groupRows(snapshot),
  };
  const sha = digest(body);
  i.version = `peers-${sha.slice(0, 16)}`;
  return { format: PEERS_FORMAT, formatVersion: PEERS_FORMAT_VERSION, version: i.version, checksum: `sha256:${sha}`, createdAt: i.createdAt, ...body };
}

export type SnapshotEncoding = 'json' | 'msgpack';

export function encodingOf(path: string): SnapshotEncoding {
  if (/\.json$/i.test(path)) return 'json';
  if (/\.(msgpack|mpk)$/i.test(path)) return 'msgpack';
  throw errors.SEL_ERR_FILE_FORMAT(`cannot tell the snapshot format of ${path}`, { field: 'out', expected: 'a path ending .json, .msgpack or .mpk', got: path });
}

export function encodeSnapshot(snapshot: PeerSnapshot, encoding: SnapshotEncoding): Buffer {
  const doc = snapshotDocument(snapshot);
  return encoding === 'json' ? Buffer.from(`${JSON.stringify(doc)}\n`) : pack(doc);
}

/** Writes a snapshot durably (temp file, fsync, rename) and returns its info (version set). */
export function savePeerSnapshot(path: string, snapshot: PeerSnapshot, options: DurableWriteOptions = {}): SnapshotInfo {
  writeFileDurable(path, encodeSnapshot(snapshot, encodingOf(path)), options);
  return snapshot.info;
}

/**
 * The lock of a snapshot file's writers, `<path>.lock` (src/store/process-lock.ts),
 * taken by `peers build` and `peers update` for the whole run and by the
 * service around its write (PUT /v1/peers): two updates of one snapshot each
 * read it, folded their own file and renamed their result over it, and the
 * last one silently dropped the other's rows. Held elsewhere: SEL_ERR_PEERS_BUSY
 * at once. The lock file stays (removing it could let two holders in).
 */
export function lockPeerSnapshot(path: string, what: string): ProcessLock {
  // the snapshot's directory is made as writing the snapshot makes it (a directory that cannot be made: the lock's error names it)
  try { makeDirs(dirname(path)); } catch { /* named below */ }
  return ProcessLock.take(`${path}.lock`, what, (holder) => errors.SEL_ERR_PEERS_BUSY(`another writer${holder ? ` (${holder})` : ''} is writing the peer snapshot ${path}; nothing was changed`, { field: 'snapshot', expected: 'one writer of a snapshot at a time', got: path }));
}

/** What changes when a file is replaced or written: its inode, size and modification time (undefined: no file). */
export function fileStamp(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}

function decode(bytes: Uint8Array, source: string): Record<string, unknown> {
  let i = 0;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09 || bytes[i] === 0xef || bytes[i] === 0xbb || bytes[i] === 0xbf)) i++;
  let doc: unknown;
  if (bytes[i] === 0x7b /* { */) {
    try {
      doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8', i));
    } catch (e) {
      return corrupt(source, `not valid JSON: ${(e as Error).message}`, 'peers', 'a JSON document');
    }
  } else {
    try {
      doc = unpack(bytes);
    } catch (e) {
      return corrupt(source, `not valid JSON or MessagePack: ${(e as Error).message}`, 'peers', 'a JSON or MessagePack document');
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return corrupt(source, 'not a peer snapshot document', 'peers', 'an object');
  return doc as Record<string, unknown>;
}

const isNum = (x: unknown): x is Num => x === null || typeof x === 'number';
const isCount = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0;

function readFeature(f: unknown, where: string, source: string, exactLimit: number, width: number): FeatureSketch {
  if (!Array.isArray(f) || f.length !== 9 || !isCount(f[0]) || !f.slice(1, 7).every(isNum)) {
    return corrupt(source, `${where} is malformed`, where, '[n, mean, m2, min, max, median, mad, values|null, bins|null]', f);
  }
  const [n, mean, m2, min, max, , , values, bins] = f as FeatureRow;
  const state: SketchState = { n, mean: unnum(mean, 0), m2: unnum(m2, 0), min: unnum(min, Infinity), max: unnum(max, -Infinity) };
  if (values !== null) {
    if (!Array.isArray(values) || values.length !== n || values.length > exactLimit || !values.every((v) => typeof v === 'number')) {
      return corrupt(source, `${where}: exact values do not match n = ${n}`, `${where}[7]`, `${n} numbers (at most exactLimit ${exactLimit})`, Array.isArray(values) ? values.length : values);
    }
    state.values = values;
  } else {
    if (!Array.isArray(bins) || !bins.every((b) => Array.isArray(b) && b.length === 2 && Number.isInteger(b[0]) && isCount(b[1]) && b[1] > 0)) {
      return corrupt(source, `${where}: bins malformed`, `${where}[8]`, '[[index, count], …]', bins);
    }
    const total = bins.reduce((s, b) => s + b[1], 0);
    if (total !== n) return corrupt(source, `${where}: bin counts sum to ${total}, not n = ${n}`, `${where}[8]`, `counts summing to ${n}`, total);
    state.bins = bins;
  }
  return FeatureSketch.fromState(state, exactLimit, width);
}

/** Parses a snapshot document (format 2). Throws SEL_ERR_PEERS_CORRUPT / _MISMATCH. */
function readV2(doc: Record<string, unknown>, source: string): PeerSnapshot {
  const features = doc.features;
  if (!Array.isArray(features) || features.length !== NF || features.some((f, i) => f !== FEATURES[i])) {
    return mismatch(source, 'its features differ from this engine\'s', 'features', JSON.stringify(FEATURES), features);
  }
  if (!Array.isArray(doc.levels) || !doc.levels.every((l) => typeof l === 'string')) return corrupt(source, 'levels missing', 'levels', 'an array of level names', doc.levels);
  const levels = parseLevels(doc.levels as string[]);
  const sk = doc.sketch as { exactLimit?: unknown; relativeAccuracy?: unknown } | undefined;
  if (!sk || !isCount(sk.exactLimit) || typeof sk.relativeAccuracy !== 'number' || !(sk.relativeAccuracy > 0 && sk.relativeAccuracy < 0.5)) {
    return corrupt(source, 'sketch parameters missing or invalid', 'sketch', '{ exactLimit: integer >= 0, relativeAccuracy: (0, 0.5) }', sk);
  }
  if (!isCount(doc.rows) || !isCount(doc.minGroupSize) || (doc.minGroupSize as number) < 1) return corrupt(source, 'rows or minGroupSize invalid', 'rows', 'integers (minGroupSize >= 1)', { rows: doc.rows, minGroupSize: doc.minGroupSize });
  if (doc.parent !== null && typeof doc.parent !== 'string') return corrupt(source, 'parent invalid', 'parent', 'null or a version string', doc.parent);
  if (!Array.isArray(doc.sources)) return corrupt(source, 'sources missing', 'sources', 'an array', doc.sources);
  const groupsIn = doc.groups;
  if (!Array.isArray(groupsIn) || groupsIn.length !== levels.length) {
    return corrupt(source, 'groups must list one array per level', 'groups', `${levels.length} arrays`, Array.isArray(groupsIn) ? groupsIn.length : typeof groupsIn);
  }
  const body: Body = {
    parent: doc.parent as string | null, rows: doc.rows as number, sources: doc.sources as SnapshotInfo['sources'],
    sketch: { exactLimit: sk.exactLimit as number, relativeAccuracy: sk.relativeAccuracy }, minGroupSize: doc.minGroupSize as number,
    features, levels: doc.levels as string[], groups: groupsIn as GroupRow[][],
  };
  const sha = digest(body);
  if (doc.checksum !== `sha256:${sha}`) return corrupt(source, 'checksum does not match the content (the file was altered or damaged)', 'checksum', `sha256:${sha}`, doc.checksum);
  const width = binWidth(body.sketch.relativeAccuracy);
  const groups = (groupsIn as unknown[]).map((list, l) => {
    if (!Array.isArray(list)) return corrupt(source, `groups[${l}] is not an array`, `groups[${l}]`, 'an array');
    const m = new Map<string, GroupState>();
    list.forEach((row: unknown, r) => {
      const where = `groups[${l}][${r}]`;
      if (!Array.isArray(row) || row.length !== 4 + NF || typeof row[0] !== 'string' || !isCount(row[1]) || !isNum(row[2]) || !isNum(row[3])) {
        corrupt(source, `${where} is malformed`, where, `[key, count, firstDay, lastDay, ${NF} features]`, row);
      }
      if (!isLevelKey(levels[l], row[0] as string)) corrupt(source, `${where} has a key that is not one of level ${levels[l].name}`, `${where}[0]`, levelKeyForm(levels[l]), row[0]);
      const sketches = (row.slice(4) as unknown[]).map((f, k) => readFeature(f, `${where}[${4 + k}]`, source, body.sketch.exactLimit, width));
      m.set(row[0] as string, { count: row[1] as number, firstDate: unnum(row[2] as Num), lastDate: unnum(row[3] as Num), sketches });
    });
    return m;
  });
  const info: SnapshotInfo = {
    version: `peers-${sha.slice(0, 16)}`, parent: body.parent, createdAt: typeof doc.createdAt === 'string' ? doc.createdAt : '',
    rows: body.rows, sources: body.sources, sketch: body.sketch, minGroupSize: body.minGroupSize,
  };
  return { info, levels, groups };
}

/** Parses format 1 (median/MAD only): scoring works, folding does not. */
function readV1(doc: Record<string, unknown>, source: string): PeerTables {
  if (!Array.isArray(doc.levels)) return corrupt(source, 'levels missing', 'levels', 'an array of level names');
  const levels = parseLevels(doc.levels as string[]);
  const groupsIn = doc.groups;
  if (!Array.isArray(groupsIn) || groupsIn.length !== levels.length) return corrupt(source, 'groups must list one array per level', 'groups', `${levels.length} arrays`, Array.isArray(groupsIn) ? groupsIn.length : groupsIn);
  const groups = groupsIn.map((list, l) => {
    if (!Array.isArray(list)) return corrupt(source, `groups[${l}] is not an array`, `groups[${l}]`, 'an array');
    const m = new Map<string, PeerGroup>();
    list.forEach((row: unknown, r) => {
      const where = `groups[${l}][${r}]`;
      if (!Array.isArray(row) || row.length !== 2 + NF || typeof row[0] !== 'string' || !isCount(row[1])) corrupt(source, `${where} is malformed`, where, `[key, count, ${NF} × [n, median, mad]]`, row);
      if (!isLevelKey(levels[l], row[0] as string)) corrupt(source, `${where} has a key that is not one of level ${levels[l].name}`, `${where}[0]`, levelKeyForm(levels[l]), row[0]);
      const features = (row.slice(2) as unknown[]).map((f, k) => {
        if (!Array.isArray(f) || f.length !== 3 || !isCount(f[0]) || !isNum(f[1]) || !isNum(f[2])) return corrupt(source, `${where} feature ${FEATURES[k]} is malformed`, `${where}[${2 + k}]`, '[n, median|null, mad|null]', f);
        return { n: f[0] as number, median: unnum(f[1]), mad: unnum(f[2]), mean: NaN, std: NaN, min: NaN, max: NaN, exact: true };
      });
      m.set(row[0] as string, { count: row[1] as number, firstDate: NaN, lastDate: NaN, features });
    });
    return m;
  });
  return { levels, groups };
}

function readDocument(bytes: Uint8Array, source: string): { snapshot?: PeerSnapshot; tables: PeerTables } {
  const doc = decode(bytes, source);
  if (doc.format !== PEERS_FORMAT) return mismatch(source, 'not a peer snapshot', 'format', `"${PEERS_FORMAT}"`, doc.format);
  if (doc.formatVersion === 1) return { tables: readV1(doc, source) };
  if (doc.formatVersion !== PEERS_FORMAT_VERSION) return mismatch(source, `format version ${String(doc.formatVersion)} is not supported`, 'formatVersion', `1 or ${PEERS_FORMAT_VERSION}`, doc.formatVersion);
  const snapshot = readV2(doc, source);
  return { snapshot, tables: snapshotTables(snapshot) };
}

function readBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read peer snapshot ${path}: ${(e as Error).message}`, { field: 'peers', expected: 'a readable file', got: path });
  }
}

/** Parses snapshot bytes (JSON or MessagePack) into the tables the engine scores with. */
export function parsePeerTables(bytes: Uint8Array | string, source = 'peer snapshot'): PeerTables {
  return readDocument(typeof bytes === 'string' ? Buffer.from(bytes) : bytes, source).tables;
}

/** Loads the tables the engine scores with (format 1 or 2). */
export function loadPeerTables(path: string): PeerTables {
  return parsePeerTables(readBytes(path), path);
}

/** Loads a foldable snapshot (format 2, sketches included). */
export function loadPeerSnapshot(path: string): PeerSnapshot {
  const { snapshot } = readDocument(readBytes(path), path);
  if (!snapshot) return mismatch(path, 'format version 1 holds medians only and cannot be folded into; rebuild it with "selectivity peers build"', 'formatVersion', String(PEERS_FORMAT_VERSION), 1);
  return snapshot;
}

/** Parses snapshot bytes into a foldable snapshot (format 2). */
export function parsePeerSnapshot(bytes: Uint8Array, source = 'peer snapshot'): PeerSnapshot {
  const { snapshot } = readDocument(bytes, source);
  if (!snapshot) return mismatch(source, 'format version 1 cannot be folded into', 'formatVersion', String(PEERS_FORMAT_VERSION), 1);
  return snapshot;
}

/** Loads a snapshot (format 2, sketches included) or, for format 1, the bare tables. */
export function loadPeers(path: string): PeerSnapshot | PeerTables {
  const { snapshot, tables } = readDocument(readBytes(path), path);
  return snapshot ?? tables;
}
