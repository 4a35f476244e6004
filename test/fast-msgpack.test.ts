/**
 * The MessagePack hot path (src/service/fast-msgpack.ts) against msgpackr:
 *  - FastDeclarationReader: on clean and mutated declarations, in every
 *    encoding MessagePack allows, the reader finds the value's end, and either
 *    declines (value undefined) or returns exactly what
 *    validateDeclaration(unpack(bytes)).value is; never a value where
 *    validation fails. Clean declarations must take the fast path.
 *    readInto writes the batch row that BatchBuilder.push would write for
 *    that value, or nothing when it declines.
 *  - truncated input: end -1 at every cut; 0xc1 throws SEL_ERR_REQUEST_PARSE.
 *  - encodeMsgpack: the bytes msgpackr's Packr writes, so the decoding is the same.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { FLOAT32_OPTIONS, Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { SelectivityError } from '../src/errors.js';
import { BatchBuilder, CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, toBatch, type ColumnarBatch } from '../src/model/columnar.js';
import { FIELDS, validateDeclaration, type Declaration, type FieldKind, type Validation } from '../src/model/schema.js';
import { EncodedMsgpack, encodeDecision, encodeDecisions, encodeMsgpack, FAST_READER_ENABLED, FastDeclarationReader, InlineDecisions, msgpackEnd } from '../src/service/fast-msgpack.js';
import { randomDeclarations, rng } from './helpers.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });
const packr32 = new Packr({ useRecords: false, variableMapSize: true, useFloat32: FLOAT32_OPTIONS.ALWAYS });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
/** msgpackr reuses its output buffer: copy. */
const pack = (v: unknown): Uint8Array => new Uint8Array(packr.pack(v));
const pack32 = (v: unknown): Uint8Array => new Uint8Array(packr32.pack(v));
const utf8 = new TextEncoder();

// ---- a MessagePack writer that uses every encoding the format allows ---------------------

/** Bytes written as they are (invalid UTF-8, 64-bit ints, ext types, 0xc1…). */
class Raw {
  constructor(readonly bytes: readonly number[]) {}
}

interface VariantOptions {
  /** Allow str16/str32 keys (valid MessagePack that the reader leaves to msgpackr). */
  wideKeys?: boolean;
  /** Allow uint64/int64 numbers (msgpackr decodes them as BigInt). */
  int64?: boolean;
}

function pushU32(out: number[], n: number): void {
  out.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function pushBytes(out: number[], bytes: ArrayLike<number>): void {
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]);
}

function pushStr(out: number[], s: string, r: () => number, wide: boolean): void {
  const b = utf8.encode(s);
  const n = b.length;
  const x = r();
  if (n < 32 && x < 0.55) out.push(0xa0 | n);
  else if (n < 256 && (x < 0.85 || !wide)) out.push(0xd9, n);
  else if (n < 65536 && x < 0.95) out.push(0xda, n >> 8, n & 0xff);
  else { out.push(0xdb); pushU32(out, n); }
  pushBytes(out, b);
}

function pushNumber(out: number[], v: number, r: () => number, opts: VariantOptions): void {
  const dv = new DataView(new ArrayBuffer(8));
  const choices: (() => void)[] = [
    () => { dv.setFloat64(0, v); out.push(0xcb); pushBytes(out, new Uint8Array(dv.buffer)); },
    () => pushBytes(out, pack(v)),
  ];
  if (Number.isNaN(v) || Math.fround(v) === v) choices.push(() => { dv.setFloat32(0, v); out.push(0xca); pushBytes(out, new Uint8Array(dv.buffer, 0, 4)); });
  if (Number.isInteger(v) && !Object.is(v, -0)) {
    if (v >= 0 && v < 0x80) choices.push(() => out.push(v));
    if (v >= -32 && v < 0) choices.push(() => out.push(0x100 + v));
    if (v >= 0 && v < 0x100) choices.push(() => out.push(0xcc, v));
    if (v >= 0 && v < 0x10000) choices.push(() => out.push(0xcd, v >> 8, v & 0xff));
    if (v >= 0 && v < 2 ** 32) choices.push(() => { out.push(0xce); pushU32(out, v); });
    if (v >= -128 && v < 128) choices.push(() => out.push(0xd0, v & 0xff));
    if (v >= -32768 && v < 32768) choices.push(() => out.push(0xd1, (v >> 8) & 0xff, v & 0xff));
    if (v >= -(2 ** 31) && v < 2 ** 31) choices.push(() => { out.push(0xd2); pushU32(out, v >>> 0); });
    if (opts.int64 && Number.isSafeInteger(v)) {
      const big = BigInt(v);
      if (v >= 0) choices.push(() => { dv.setBigUint64(0, big); out.push(0xcf); pushBytes(out, new Uint8Array(dv.buffer)); });
      choices.push(() => { dv.setBigInt64(0, big); out.push(0xd3); pushBytes(out, new Uint8Array(dv.buffer)); });
    }
  }
  choices[Math.floor(r() * choices.length)]();
}

function pushValue(out: number[], v: unknown, r: () => number, opts: VariantOptions): void {
  if (v instanceof Raw) pushBytes(out, v.bytes);
  else if (typeof v === 'string') pushStr(out, v, r, true);
  else if (typeof v === 'number') pushNumber(out, v, r, opts);
  else pushBytes(out, pack(v));
}

/** A map of these entries (duplicates and all), every header, key and value in a randomly chosen encoding. */
function encodeVariant(entries: readonly (readonly [string, unknown])[], seed: number, opts: VariantOptions = {}): Uint8Array {
  const r = rng(seed);
  const out: number[] = [];
  const n = entries.length;
  const h = r();
  if (n < 16 && h < 0.6) out.push(0x80 | n);
  else if (h < 0.85) out.push(0xde, n >> 8, n & 0xff);
  else { out.push(0xdf); pushU32(out, n); }
  for (const [k, v] of entries) {
    pushStr(out, k, r, opts.wideKeys === true);
    pushValue(out, v, r, opts);
  }
  return Uint8Array.from(out);
}

/** An object with exactly these own keys ("__proto__" included) for msgpackr's Packr. */
function objectOf(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, configurable: true, writable: true });
  return o;
}

// ---- the reference and the check ------------------------------------------------------------

const reader = new FastDeclarationReader();
/** One slot per cache: every string collides with the one before, so only the byte comparison keeps it right. */
const tinyReader = new FastDeclarationReader({ cacheSlots: 1, textCacheSlots: 1 });

function reference(bytes: Uint8Array): Validation | undefined {
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(bytes);
  } catch {
    return undefined; // msgpackr itself refuses it (an unknown extension type)
  }
  return reference2(decoded);
}

function reference2(decoded: unknown): Validation | undefined {
  try {
    return validateDeclaration(decoded);
  } catch {
    return undefined; // validateDeclaration throws on a BigInt it reports (JSON.stringify): the reader declines int64 anyway
  }
}

/**
 * Reads `bytes` placed at offset 3 of a view that starts 5 bytes into its
 * buffer and has bytes after the value; checks the end and the value against
 * the reference with both readers. Returns whether the fast path took it.
 */
function check(bytes: Uint8Array): boolean {
  const host = new Uint8Array(bytes.length + 16).fill(0xc0);
  host.set(bytes, 8);
  const view = host.subarray(5, 8 + bytes.length + 4);
  const ref = reference(bytes);
  let accepted = true;
  for (const rd of [reader, tinyReader]) {
    const r = rd.read(view, 3);
    expect(r.end).toBe(3 + bytes.length);
    // readInto agrees with read: the same decision, and the row push() would write for the same value
    const into = new BatchBuilder(1);
    const took = rd.readInto(view, 3, into);
    expect(took).toBe(r.value !== undefined);
    if (r.value === undefined) { expect(into.length).toBe(0); accepted = false; continue; }
    expect(rd.lastEnd).toBe(3 + bytes.length);
    expect(rd.declaration()).toStrictEqual(r.value);
    expectSameRows(into.finish(), toBatch([r.value]));
    expect(ref?.ok).toBe(true);
    if (ref?.ok) expect(r.value).toStrictEqual(ref.value);
  }
  return accepted;
}

/** Two batches hold the same rows: every column, categorical values compared as strings (codes are per batch). */
function expectSameRows(a: { batch: ColumnarBatch; ids: string[] }, b: { batch: ColumnarBatch; ids: string[] }): void {
  expect(a.ids).toStrictEqual(b.ids);
  expect(a.batch.size).toBe(b.batch.size);
  for (let i = 0; i < a.batch.size; i++) {
    for (const c of NUMERIC_COLUMNS) expect(Object.is(a.batch.numeric[c][i], b.batch.numeric[c][i]), `${c}: ${a.batch.numeric[c][i]} vs ${b.batch.numeric[c][i]}`).toBe(true);
    expect(a.batch.date[i]).toBe(b.batch.date[i]);
    expect(a.batch.idHash[i]).toBe(b.batch.idHash[i]);
    for (const c of CATEGORICAL_COLUMNS) expect(a.batch.dicts[c][a.batch.codes[c][i]], c).toBe(b.batch.dicts[c][b.batch.codes[c][i]]);
  }
}

const DESCRIPTIONS = [
  'bolts, of steel', 'Footwear', 'blouses, shirts and shirt-blouses, brand Sunlit',
  'vegetables; pumpkins, squash and gourds (cucurbita spp.), fresh or chilled', 'Écrous en acier inoxydable', '漢字のテスト 🙂',
  ' leading space is kept', 'trailing space is kept ', `${'long description '.repeat(20)}end`, 'd'.repeat(4096),
];

/** Clean declarations: every optional field present in some, absent in others. */
const base: Declaration[] = randomDeclarations(400, 11).map((d, i) => {
  const x: Declaration = { ...d };
  if (i % 3 !== 0) x.seller = `S${i % 23}`;
  if (i % 4 !== 0) x.description = DESCRIPTIONS[i % DESCRIPTIONS.length];
  if (i % 7 === 0) x.aeo = false;
  if (i % 9 === 0) { x.customsValue = i; x.netMass = i * 70_000; x.taxRate = 1000; }
  if (i % 11 === 0) x.id = `ID-${'x'.repeat(58)}-${i % 10}`; // 64 characters
  return x;
});

const INVALID_UTF8 = new Raw([0xa4, 0x41, 0xff, 0xfe, 0x42]);
const SURROGATE_UTF8 = new Raw([0xa4, 0x41, 0xed, 0xa0, 0x80]); // a lone surrogate, WTF-8
const BOM_TEXT = new Raw([0xa4, 0xef, 0xbb, 0xbf, 0x41]);

/** Values that validateDeclaration normalises, rejects or drops, or that the reader must decline. */
const ODD: unknown[] = [
  undefined, null, '', ' ', '   ', '\t', '\n', '\u3000', '  x', 'x ', '\tx', 'x\n', '\u00a0x', 'x\u00a0', 'x\u2028', '\ufeffx', '\u200bx',
  '\u0001x', 'x\u007f', 'x\u0000', 'x', 'cn', 'Cn', 'cN', 'CN', 'C', 'CHN', 'ÉS', 'C ', ' CN',
  '8517.12', '851712 ', ' 851712', '8517 12', '85171', '85171200001', '851712', '8517120000', '85171a', '８５１７１２',
  '2025-02-29', '2024-02-29', '2024-2-29', ' 2024-02-29', '2024-02-29 ', '2024-13-01', '2024-00-10', '2024-01-00', '0000-01-01', '9999-12-31', '2024/02/29', '2024-02-2９',
  0, -0, -1, -0.5, 1.5, 0.1, 1e12, 1e12 + 1, 1e15, 1e15 + 2, 1e16, 1000, 1000.0001, 1001, 999.9999, NaN, Infinity, -Infinity,
  2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, -(2 ** 40), Number.MIN_VALUE, Number.MAX_VALUE,
  true, false, 'true', 'false', 1, [], {}, ['CN'], { a: 1 }, new Date(0), 10n, 2n ** 63n, -5n,
  'é', 'IMPÖ', 'Ö1', '1Ö', '漢字', '🙂', 'a🙂b', 'a'.repeat(64), 'a'.repeat(65), `${'é'.repeat(62)}ab`, 'é'.repeat(65), `a${'🙂'.repeat(31)}b`, `a${'🙂'.repeat(32)}b`,
  'd'.repeat(4096), 'd'.repeat(4097), 'é'.repeat(4096), 'é'.repeat(4097), `${'x'.repeat(300)} `,
  INVALID_UTF8, SURROGATE_UTF8, BOM_TEXT,
  new Raw([0xcf, 0, 0, 0, 0, 0, 0, 0, 5]), new Raw([0xd3, 0, 0, 0, 0, 0, 0, 0, 5]), // 64-bit ints: BigInt in msgpackr
  new Raw([0xc4, 0x02, 0x43, 0x4e]), // bin 8 "CN"
  new Raw([0xd4, 0x00, 0x00]), // msgpackr's undefined
  new Raw([0xd6, 0xff, 0, 0, 0, 1]), // timestamp 32
  new Raw([0xd4, 0x05, 0x00]), // an extension msgpackr does not know
  new Raw([0x92, 0xa2, 0x43, 0x4e, 0xc0]), // ["CN", null]
  new Raw([0x81, 0xa1, 0x61, 0xdc, 0x00, 0x01, 0x01]), // { a: [1] } with array16
];

const NAMES = FIELDS.map((f) => f.name as string);
const KEYS = [...NAMES, 'unknownField', '__proto__', 'ID', 'Id', 'i', 'hs ', 'transportmode', 'customsValue\u0000', 'aeo2', ''];

const anyValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ODD) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 6 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.float().map((x) => Math.fround(x)) },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 32 }) },
);

type Mutation =
  | { kind: 'remove'; at: number }
  | { kind: 'set'; key: string; value: unknown }
  | { kind: 'add'; key: string; value: unknown }
  | { kind: 'duplicate'; at: number; value: unknown; same: boolean };

const printableAscii = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
/** A value validation keeps as it is, for each kind of field. */
const cleanValue: Record<FieldKind, fc.Arbitrary<unknown>> = {
  id: fc.tuple(printableAscii, fc.string({ unit: 'grapheme', maxLength: 30 }), printableAscii).map(([a, m, b]) => `${a}${m}${b}`.slice(0, 64)),
  code: fc.oneof(fc.string({ unit: printableAscii, minLength: 1, maxLength: 64 }), fc.tuple(printableAscii, fc.string({ unit: 'grapheme', maxLength: 20 }), printableAscii).map(([a, m, b]) => `${a}${m}${b}`)),
  date: fc.date({ min: new Date('1000-01-01T00:00:00Z'), max: new Date('9999-12-31T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10)),
  hs: fc.stringMatching(/^\d{6,10}$/),
  country: fc.tuple(fc.integer({ min: 65, max: 90 }), fc.integer({ min: 65, max: 90 })).map(([a, b]) => String.fromCharCode(a, b)),
  number: fc.oneof(fc.double({ min: 0, max: 1000, noNaN: true }), fc.integer({ min: 0, max: 1000 }), fc.float({ min: 0, max: 1000, noNaN: true })),
  text: fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 120 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 40 })),
  boolean: fc.boolean(),
};

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...FIELDS).chain((f) => cleanValue[f.kind].map((value) => ({ kind: 'set' as const, key: f.name as string, value }))) },
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('set' as const), key: fc.constantFrom(...NAMES), value: anyValue }),
  fc.record({ kind: fc.constant('add' as const), key: fc.constantFrom(...KEYS), value: anyValue }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), value: anyValue, same: fc.boolean() }),
);

function mutate(d: Declaration, mutations: readonly Mutation[], shuffleSeed: number | undefined): [string, unknown][] {
  let entries = Object.entries(d) as [string, unknown][];
  for (const m of mutations) {
    if (entries.length === 0) break;
    if (m.kind === 'remove') entries.splice(m.at % entries.length, 1);
    else if (m.kind === 'set') {
      const i = entries.findIndex(([k]) => k === m.key);
      if (i >= 0) entries[i] = [m.key, m.value];
      else entries.push([m.key, m.value]);
    } else if (m.kind === 'add') entries.push([m.key, m.value]);
    else {
      const [k, v] = entries[m.at % entries.length];
      entries.push([k, m.same ? v : m.value]);
    }
  }
  if (shuffleSeed !== undefined) {
    const r = rng(shuffleSeed);
    entries = entries.map((e) => [r(), e] as const).sort((a, b) => a[0] - b[0]).map(([, e]) => e);
  }
  return entries;
}

/**
 * A decoded declaration that validation returns unchanged, with code fields
 * that start and end with printable ASCII and no BOM before a description:
 * what the reader is meant to take itself.
 */
function isClean(decoded: unknown): boolean {
  const v = reference2(decoded);
  if (!v?.ok || !isDeepStrictEqual(v.value, decoded)) return false;
  const d = decoded as Record<string, unknown>;
  for (const f of FIELDS) {
    const x = d[f.name];
    if ((f.kind === 'id' || f.kind === 'code') && typeof x === 'string' && !/^[\x21-\x7e]([^]*[\x21-\x7e])?$/.test(x)) return false;
  }
  return typeof d.description !== 'string' || !d.description.startsWith('\ufeff');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Raw bytes, or a string with a lone surrogate (msgpackr writes it as WTF-8, not UTF-8): the reader leaves these to msgpackr. */
const hasRaw = (entries: readonly (readonly [string, unknown])[]) => entries.some(([, v]) => v instanceof Raw || (typeof v === 'string' && LONE_SURROGATE.test(v)));
const hasDuplicate = (entries: readonly (readonly [string, unknown])[]) => new Set(entries.map(([k]) => k)).size !== entries.length;

// ---- the reader -----------------------------------------------------------------------------

describe('FastDeclarationReader', () => {
  it('is on: the schema is the one it was written for', () => {
    expect(FAST_READER_ENABLED).toBe(true);
  });

  it('accepts clean declarations packed by msgpackr, with exactly the validated value', () => {
    for (const d of base) {
      const bytes = pack(d);
      expect(check(bytes), JSON.stringify(d)).toBe(true);
      const r = reader.read(bytes, 0);
      expect(r.value).toStrictEqual(validateDeclaration(d).ok ? d : undefined);
    }
  });

  it('accepts clean declarations with float32 numbers, non-minimal ints, str8 keys, map16/map32 headers and str8/16/32 values', () => {
    let n = 0;
    for (const [i, d] of base.entries()) {
      for (let s = 0; s < 4; s++) {
        expect(check(encodeVariant(Object.entries(d), i * 4 + s)), `${JSON.stringify(d)} seed ${i * 4 + s}`).toBe(true);
        n++;
      }
      expect(check(pack32(d))).toBe(true);
    }
    expect(n).toBe(base.length * 4);
    // float32 as msgpackr decodes it: the float32's value, not the decimal that was packed
    const d: Declaration = { ...base[1], customsValue: 0.1, netMass: 21881.89 };
    const r = reader.read(pack32(d), 0);
    expect(r.value?.customsValue).toBe(Math.fround(0.1));
    expect(r.value?.netMass).toBe(Math.fround(21881.89));
  });

  it('never accepts what validateDeclaration rejects, and matches its value on mutated declarations', () => {
    let mustAccept = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: base.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.constantFrom('packr', 'float32', 'variant', 'variant-wide'),
        fc.integer(),
        fc.boolean(),
        (k, mutations, encoding, seed, shuffle) => {
          const entries = mutate(base[k], mutations, shuffle ? seed : undefined);
          const msgpackrCan = encoding === 'packr' || encoding === 'float32' ? !entries.some(([, v]) => v instanceof Raw) && !hasDuplicate(entries) : true;
          const bytes = !msgpackrCan ? encodeVariant(entries, seed)
            : encoding === 'packr' ? pack(objectOf(entries))
              : encoding === 'float32' ? pack32(objectOf(entries))
                : encodeVariant(entries, seed, { wideKeys: encoding === 'variant-wide', int64: true });
          const accepted = check(bytes);
          // already clean (validation changes nothing), one value per key, narrow keys, nothing raw: the fast path must take it
          if (encoding !== 'variant-wide' && !hasRaw(entries) && !hasDuplicate(entries) && isClean(unpackr.unpack(bytes))) {
            mustAccept++;
            expect(accepted).toBe(true);
          }
        },
      ),
      { numRuns: 6000 },
    );
    expect(mustAccept).toBeGreaterThan(500);
  });

  it('leaves each unusual field to msgpackr and validateDeclaration, which reject or normalise it', () => {
    const d = base[1];
    for (const name of NAMES) {
      for (const value of ODD) {
        const entries = Object.entries({ ...d }).map(([k, v]) => [k, k === name ? value : v] as [string, unknown]);
        if (!entries.some(([k]) => k === name)) entries.push([name, value]);
        const bytes = value instanceof Raw ? encodeVariant(entries, 1) : pack(objectOf(entries));
        const accepted = check(bytes);
        const ref = reference(bytes);
        // spot checks of the rules, beyond agreement with the reference
        if (accepted && typeof value === 'string') {
          const got = reader.read(bytes, 0).value as unknown as Record<string, unknown>;
          expect(got[name]).toBe(value); // a string taken as it is: nothing to trim, upper-case or strip
        }
        if (ref?.ok === false) expect(accepted).toBe(false);
      }
    }
  });

  it('declines duplicate keys, unknown keys, non-map values and maps of more than 16 entries, with the right end', () => {
    const d = base[2];
    const entries = Object.entries(d);
    expect(check(encodeVariant([...entries, entries[0]], 3))).toBe(false); // same key, same value: valid, but declined
    expect(reference(encodeVariant([...entries, entries[0]], 3))?.ok).toBe(true);
    expect(check(pack({ ...d, extra: 1 }))).toBe(false);
    for (const v of [[d], 'x', 1, null, true, 1.5, [], {}, new Date(0), 'x'.repeat(70_000), Array.from({ length: 20 }, (_, i) => i)]) expect(check(pack(v))).toBe(false);
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i]));
    expect(check(pack(many))).toBe(false);
    expect(check(Uint8Array.of(0xd4, 0x00, 0x00))).toBe(false);
  });

  it('reads a stream of concatenated declarations value by value', () => {
    const parts = base.map((d, i) => (i % 5 === 4 ? pack({ ...d, origin: 'cn' }) : pack(d)));
    const stream = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) { stream.set(p, at); at += p.length; }
    let pos = 0, fast = 0;
    for (const [i, p] of parts.entries()) {
      const r = reader.read(stream, pos);
      expect(r.end).toBe(pos + p.length);
      if (r.value !== undefined) { fast++; expect(r.value).toStrictEqual((validateDeclaration(unpackr.unpack(p)) as { value: Declaration }).value); }
      else expect(i % 5).toBe(4);
      pos = r.end;
    }
    expect(fast).toBe(parts.length - Math.floor(parts.length / 5));
  });

  it('readInto builds a whole batch, mixed with push() for the values it declines, as push() alone would', () => {
    const parts = base.map((d, i) => (i % 5 === 4 ? pack({ ...d, origin: 'cn' }) : pack(d)));
    const stream = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) { stream.set(p, at); at += p.length; }
    for (const rd of [reader, tinyReader]) {
      const fastBatch = new BatchBuilder(parts.length);
      const validated: Declaration[] = [];
      let pos = 0;
      for (const p of parts) {
        const value = (validateDeclaration(unpackr.unpack(p)) as { value: Declaration }).value;
        validated.push(value);
        if (rd.readInto(stream, pos, fastBatch)) pos = rd.lastEnd;
        else { fastBatch.push(value); pos += p.length; }
      }
      expect(pos).toBe(stream.length);
      const got = fastBatch.finish();
      expectSameRows(got, toBatch(validated));
      // values repeated across rows share one dictionary entry, whichever way they came in
      for (const c of CATEGORICAL_COLUMNS) expect(new Set(got.batch.dicts[c]).size).toBe(got.batch.dicts[c].length);
    }
  });

  it('BatchBuilder.pushCoded refuses a code outside the batch dictionary, and the row is not added', () => {
    const b = new BatchBuilder(2);
    const codes = CATEGORICAL_COLUMNS.map((c) => (c === 'aeo' ? 0 : b.codeOf(CATEGORICAL_COLUMNS.indexOf(c), 'X')));
    const bad = [...codes];
    bad[CATEGORICAL_COLUMNS.indexOf('importer')] = 1; // only code 0 exists
    expect(() => b.pushCoded('A', 19_000, 1, 1, NaN, NaN, bad)).toThrow(/importer/);
    expect(b.length).toBe(0);
    b.pushCoded('B', 19_000, 1, 1, NaN, NaN, codes);
    const { batch, ids } = b.finish();
    expect(ids).toStrictEqual(['B']);
    expect(batch.dicts.importer[batch.codes.importer[0]]).toBe('X');
  });

  it('readInto into a full batch throws, and the batch keeps what it had', () => {
    const b = new BatchBuilder(1);
    expect(reader.readInto(pack(base[0]), 0, b)).toBe(true);
    expect(() => reader.readInto(pack(base[1]), 0, b)).toThrow(RangeError);
    expect(b.length).toBe(1);
    expect(b.finish().ids).toStrictEqual([base[0].id]);
  });
});

describe('FastDeclarationReader: truncated and malformed input', () => {
  const samples: Uint8Array[] = [
    pack(base[0]), pack(base[9]), pack32(base[3]), encodeVariant(Object.entries(base[4]), 5), encodeVariant(Object.entries(base[5]), 6, { wideKeys: true, int64: true }),
    encodeVariant([...Object.entries(base[6]), ['extra', new Raw([0xc7, 0x03, 0x07, 1, 2, 3])], ['more', [1, { a: 'x'.repeat(300) }]]], 7),
    encodeVariant([...Object.entries(base[7]), ['blob', new Raw([0xc5, 0x00, 0x03, 1, 2, 3])], ['big', new Raw([0xcf, 0, 0, 0, 0, 0, 0, 0, 5])]], 8),
    pack({ ...base[8], description: 'é'.repeat(3000) }), pack(Array.from({ length: 70 }, (_, i) => ({ i, s: 'x'.repeat(i) }))), pack('y'.repeat(70_000)),
    pack(Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i * 1.5]))), pack(new Map([[1, 2]])), pack(new Date(1e12)), Uint8Array.of(0xd8, 1, ...new Array(16).fill(0)),
  ];

  it('returns end -1 and no value for every cut inside a value', () => {
    for (const bytes of samples) {
      expect(reader.read(bytes, 0).end).toBe(bytes.length);
      const wrong: number[] = [];
      for (let cut = 0; cut < bytes.length; cut++) {
        const r = reader.read(bytes.subarray(0, cut), 0);
        if (r.end !== -1 || r.value !== undefined) wrong.push(cut);
        const shifted = new Uint8Array(cut + 2);
        shifted.set(bytes.subarray(0, cut), 2);
        const t = tinyReader.read(shifted, 2);
        if (t.end !== -1 || t.value !== undefined) wrong.push(-cut);
      }
      expect(wrong).toEqual([]);
    }
  });

  it('throws SEL_ERR_REQUEST_PARSE on 0xc1, wherever it sits in the value', () => {
    const parseError = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(SelectivityError);
        expect((e as SelectivityError).code).toBe('SEL_ERR_REQUEST_PARSE');
        return;
      }
      expect.unreachable('no error thrown');
    };
    parseError(() => reader.read(Uint8Array.of(0xc1), 0));
    parseError(() => reader.read(encodeVariant([...Object.entries(base[0]).slice(0, 3), ['office', new Raw([0xc1])]], 1), 0));
    parseError(() => reader.read(encodeVariant([...Object.entries(base[0]), ['extra', new Raw([0x93, 0x01, 0xc1, 0x02])]], 1), 0));
    // 0xc1 as string data, or after the value, is not the value's business
    const inString = encodeVariant([...Object.entries(base[0]), ['description', new Raw([0xa2, 0xc1, 0xc1])]], 1);
    expect(reader.read(inString, 0)).toEqual({ end: inString.length, value: undefined });
    const before = pack(base[0]);
    const after = new Uint8Array(before.length + 1);
    after.set(before);
    after[before.length] = 0xc1;
    expect(reader.read(after, 0).end).toBe(before.length);
    expect(reader.read(after, 0).value).toBeDefined();
  });

  it('finds the end of any MessagePack value msgpackr writes', () => {
    fc.assert(
      fc.property(fc.array(fc.anything({ withDate: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true, withSparseArray: true, withBoxedValues: true }), { minLength: 1, maxLength: 5 }), (values) => {
        const parts = values.map((v) => pack(v));
        const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
        let at = 0;
        for (const p of parts) { all.set(p, at); at += p.length; }
        let pos = 0;
        for (const p of parts) {
          expect(msgpackEnd(all, pos)).toBe(pos + p.length);
          expect(reader.read(all, pos).end).toBe(pos + p.length);
          pos += p.length;
        }
        if (all.length > 0) expect(msgpackEnd(all.subarray(0, all.length - 1), pos - parts[parts.length - 1].length)).toBe(-1);
      }),
      { numRuns: 500 },
    );
  });
});

// ---- the encoder ------------------------------------------------------------------------------

/** Encodes with both; the bytes are identical and so is msgpackr's decoding of them. Both may throw (a bigint beyond 64 bits). */
function sameAsMsgpackr(value: unknown): void {
  let expected: Uint8Array | undefined, expectedError: unknown;
  try { expected = pack(value); } catch (e) { expectedError = e; }
  if (expectedError !== undefined) {
    expect(() => encodeMsgpack(value)).toThrow();
    return;
  }
  const got = encodeMsgpack(value);
  expect(got.byteOffset).toBe(0);
  expect(got.byteLength).toBe(got.buffer.byteLength);
  expect(Buffer.from(got).equals(Buffer.from(expected!))).toBe(true);
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(expected!);
  } catch {
    // a Map with non-string keys cannot be decoded with mapsAsObjects: neither can ours
    expect(() => unpackr.unpack(got)).toThrow();
    return;
  }
  expect(unpackr.unpack(got)).toStrictEqual(decoded);
}

const CHANNELS = ['green', 'blue', 'yellow', 'orange', 'red'] as const;
const channel = fc.constantFrom(...CHANNELS);
const score = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -0, 0.5, 12.345678, 1e-7, 2 ** 53, -(2 ** 31) - 1));
const shortText = fc.oneof(fc.constantFrom('P1', 'hs6,origin', 'unitValue', 'v-2025-07-01#3f9a'), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
const reason = fc.oneof(
  fc.record({ code: fc.constant('PROFILE'), profile: shortText, weight: score, channel }, { requiredKeys: ['code', 'profile', 'weight'] }),
  fc.record({ code: fc.constant('DEVIATION'), feature: fc.constantFrom('unitValue', 'valuePerKg', 'taxRate'), z: score, direction: fc.constantFrom('under', 'over'), peerLevel: shortText }),
  fc.record({ code: fc.constant('SCORE_THRESHOLD'), channel, score, threshold: score }),
  fc.record({ code: fc.constant('COUNTER_MEASURE'), channel, profiles: fc.array(shortText, { maxLength: 4 }) }),
  fc.record({ code: fc.constant('RANDOM_SELECTION'), channel, rate: score }),
);
const decision = fc.record({ id: shortText, channel, score, controlGroup: fc.boolean(), rulesetVersion: fc.constantFrom('v1', 'rs-20250701-3f9a2c'), reasons: fc.array(reason, { maxLength: 5 }) });
const issue = fc.record({ code: fc.constantFrom('SEL_ERR_DECL_FIELD_TYPE', 'SEL_ERR_DECL_FIELD_REQUIRED'), field: fc.constantFrom(...NAMES), expected: shortText, got: fc.oneof(fc.constant(undefined), fc.string(), fc.double(), fc.constant(null), fc.boolean()) }, { requiredKeys: ['code', 'field', 'expected'] });
const recordError = fc.record({ index: fc.nat(), line: fc.nat(), id: shortText, code: fc.constant('SEL_ERR_DECL_FIELD_TYPE'), message: fc.string({ maxLength: 300 }), issues: fc.array(issue, { maxLength: 3 }) }, { requiredKeys: ['index', 'code', 'message', 'issues'] });
const counts = fc.record({ green: fc.nat(), blue: fc.nat(), yellow: fc.nat(), orange: fc.nat(), red: fc.nat(), control: fc.nat() });
const reply = fc.record({ rulesetVersion: fc.constantFrom('v1', 'rs-20250701-3f9a2c'), counts, decisions: fc.array(decision, { maxLength: 40 }), errors: fc.array(recordError, { maxLength: 6 }) });
const streamRecord = fc.oneof(decision, fc.record({ index: fc.nat(), id: shortText, error: fc.record({ code: fc.string(), message: fc.string(), issues: fc.array(issue, { maxLength: 2 }) }) }, { requiredKeys: ['index', 'error'] }));

/** Decisions as decisionAt makes them: keys in its order (a DEVIATION reason with its contribution). */
const madeReason = fc.oneof(
  reason.filter((r) => r.code !== 'DEVIATION'), // decisionAt's DEVIATION reasons always carry a contribution: below
  fc.record({ code: fc.constant('DEVIATION'), feature: fc.constantFrom('unitValue', 'valuePerKg', 'taxRate'), z: score, direction: fc.constantFrom('under', 'over'), peerLevel: shortText, contribution: score }),
  fc.record({ code: fc.constant('HISTORY'), dimension: shortText, value: shortText, rate: score, n: score, contribution: score }).map((r) => Object.freeze(r)),
);
const madeDecision = fc.record({ id: shortText, channel, score, controlGroup: fc.boolean(), rulesetVersion: fc.constantFrom('v1', 'rs-20250701-3f9a2c'), reasons: fc.array(madeReason, { maxLength: 6 }) });

describe('encodeDecisions', () => {
  it('writes the bytes encodeMsgpack (and msgpackr) writes for the same decisions', () => {
    fc.assert(fc.property(fc.array(madeDecision, { maxLength: 40 }), (list) => {
      const bytes = Buffer.from(encodeDecisions(list));
      expect(bytes.equals(Buffer.from(encodeMsgpack(list)))).toBe(true);
      sameAsMsgpackr(list);
      for (const d of list) expect(Buffer.from(encodeDecision(d)).equals(Buffer.from(encodeMsgpack(d)))).toBe(true); // a stream's records
    }), { numRuns: 300 });
    const many = fc.sample(madeDecision, { numRuns: 70_000, seed: 5 }); // array32 header
    expect(Buffer.from(encodeDecisions(many)).equals(Buffer.from(encodeMsgpack(many)))).toBe(true);
  });

  it('writes the same bytes in place inside a reply (InlineDecisions) as encoded apart and spliced in', () => {
    const reply = (list: unknown) => ({ rulesetVersion: 'v1', counts: { green: 1, red: 0 }, decisions: list, errors: [] });
    fc.assert(fc.property(fc.array(madeDecision, { maxLength: 40 }), (list) => {
      const inline = Buffer.from(encodeMsgpack(reply(new InlineDecisions(list))));
      expect(inline.equals(Buffer.from(encodeMsgpack(reply(new EncodedMsgpack(encodeDecisions(list))))))).toBe(true);
      expect(inline.equals(Buffer.from(encodeMsgpack(reply(list))))).toBe(true);
    }), { numRuns: 300 });
  });
});

describe('encodeMsgpack', () => {
  it('writes the bytes msgpackr writes for decision replies and stream records', () => {
    fc.assert(fc.property(reply, (doc) => sameAsMsgpackr(doc)), { numRuns: 300 });
    fc.assert(fc.property(streamRecord, (rec) => sameAsMsgpackr(rec)), { numRuns: 300 });
  });

  it('writes an already encoded part as it is: a reply built around its encoded decisions is the same bytes', () => {
    fc.assert(fc.property(reply, (doc) => {
      const spliced = encodeMsgpack({ ...doc, decisions: new EncodedMsgpack(encodeMsgpack(doc.decisions)) });
      expect(Buffer.from(spliced).equals(Buffer.from(encodeMsgpack(doc)))).toBe(true);
    }), { numRuns: 200 });
  });

  it('writes frozen objects as msgpackr does, the first time and from its kept bytes after, and never keeps bytes that could change', () => {
    const deepFreeze = (v: unknown): unknown => {
      if (v !== null && typeof v === 'object') { for (const x of Object.values(v)) deepFreeze(x); Object.freeze(v); }
      return v;
    };
    fc.assert(fc.property(reply, (doc) => {
      const frozen = deepFreeze(structuredClone(doc));
      sameAsMsgpackr(frozen);
      sameAsMsgpackr(frozen); // the frozen leaves now come from the kept bytes
      expect(Buffer.from(encodeMsgpack(frozen)).equals(Buffer.from(encodeMsgpack(doc)))).toBe(true);
    }), { numRuns: 200 });
    // frozen, but holding something that can change: encoded afresh every time
    const inner = { a: 1 };
    const outer = Object.freeze({ inner, b: 'x' });
    sameAsMsgpackr(outer);
    inner.a = 2;
    expect(unpackr.unpack(encodeMsgpack(outer))).toEqual({ inner: { a: 2 }, b: 'x' });
    // frozen all the way down (a KEYWORD reason with its lists): its bytes kept, the same each time
    const keyword = Object.freeze({ code: 'KEYWORD', term: 't', lists: Object.freeze(['L1', 'L2']), riskAreas: Object.freeze(['revenue']) });
    sameAsMsgpackr(keyword);
    sameAsMsgpackr(keyword);
    // a frozen array holding an object that can change: encoded afresh every time
    const box = { v: 1 };
    const holder = Object.freeze({ list: Object.freeze([box]) });
    sameAsMsgpackr(holder);
    box.v = 2;
    expect(unpackr.unpack(encodeMsgpack(holder))).toEqual({ list: [{ v: 2 }] });
    // a frozen array of the last level it looks into holding a frozen array: not kept, still right
    const deep = Object.freeze({ a: Object.freeze([Object.freeze([Object.freeze([1])])]) });
    sameAsMsgpackr(deep);
    sameAsMsgpackr(deep);
    // frozen, with a getter: read every time
    let calls = 0;
    const getter = Object.freeze(Object.defineProperty({ k: 1 }, 'g', { enumerable: true, get: () => ++calls }));
    expect(unpackr.unpack(encodeMsgpack(getter))).toEqual({ k: 1, g: 1 });
    expect(unpackr.unpack(encodeMsgpack(getter))).toEqual({ k: 1, g: 2 });
  });

  it('writes the bytes msgpackr writes for any value tree (foreign values go through msgpackr)', () => {
    // (no typed arrays: msgpackr 2.1.3 packs an Int32Array as a bin of whatever bytes its buffer holds)
    const anything = fc.anything({ withDate: true, withMap: true, withSet: true, withNullPrototype: true, withSparseArray: true, withBoxedValues: true, withBigInt: true, withObjectString: true });
    fc.assert(fc.property(anything, (v) => sameAsMsgpackr(v)), { numRuns: 1500 });
  });

  it('matches msgpackr on edge numbers', () => {
    const numbers = [
      0, -0, 1, -1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 64,
      -31, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53), 1.5, -1.5, 0.1, 1e300, -1e-300, Number.MIN_VALUE, Number.MAX_VALUE,
      NaN, Infinity, -Infinity, Math.fround(0.1), 1e15, 1e12,
    ];
    for (const n of numbers) {
      sameAsMsgpackr(n);
      sameAsMsgpackr({ n, a: [n] });
    }
    // decoded values are numbers, not BigInts; -0 comes back as 0 (as from msgpackr)
    expect(unpackr.unpack(encodeMsgpack(2 ** 53))).toBe(2 ** 53);
    expect(Object.is(unpackr.unpack(encodeMsgpack(-0)), 0)).toBe(true);
    expect(unpackr.unpack(encodeMsgpack([NaN, Infinity, -Infinity, 1.5]))).toStrictEqual([NaN, Infinity, -Infinity, 1.5]);
  });

  it('matches msgpackr on large arrays and maps and long strings', () => {
    for (const n of [15, 16, 255, 256, 65535, 65536]) {
      sameAsMsgpackr(Array.from({ length: n }, (_, i) => i % 300));
      sameAsMsgpackr(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i % 3 === 0 ? 'v' : i])));
    }
    for (const n of [31, 32, 63, 64, 255, 256, 65535, 65536, 100_000]) {
      sameAsMsgpackr('x'.repeat(n));
      sameAsMsgpackr({ s: 'é'.repeat(n >> 1), t: '漢'.repeat(Math.ceil(n / 3)), u: `${'🙂'.repeat(n >> 2)}z` });
    }
    // lone surrogates: msgpackr's own encoding (WTF-8 below 64 units, U+FFFD above)
    for (const s of ['\ud800', 'a\udc00b', `${'x'.repeat(70)}\ud83d`, '\ud83d\ude42', 'é\u0000ß']) sameAsMsgpackr({ s });
  });

  it('keeps undefined properties and array slots, as msgpackr does', () => {
    const value = { a: undefined, b: [undefined, 1], c: 1, d: { e: undefined } };
    sameAsMsgpackr(value);
    const decoded = unpackr.unpack(encodeMsgpack(value)) as Record<string, unknown>;
    expect(Object.keys(decoded)).toEqual(['a', 'b', 'c', 'd']);
    expect('a' in decoded && decoded.a === undefined).toBe(true);
    expect(decoded.b).toStrictEqual([undefined, 1]);
    expect(Object.keys(decoded.d as object)).toEqual(['e']);
    expect(Array.from(encodeMsgpack(undefined))).toEqual([0xd4, 0x00, 0x00]);
  });

  it('hands foreign values to msgpackr: dates, maps, class instances, null prototypes, toJSON, an own "constructor"', () => {
    class Money { constructor(readonly amount: number) {} toJSON() { return { amount: String(this.amount) }; } }
    const nullProto = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
    for (const v of [new Date(1_700_000_000_000), new Map<unknown, unknown>([['a', 1], [2, 'b']]), new Set([1, 'x']), new Money(5), nullProto, { constructor: 'x', n: 1 }, { constructor: 'x', toJSON: () => 'json' }, new Uint8Array([1, 2, 3]), { d: new Date(0), list: [new Money(1)] }, 12n, -(2n ** 63n)]) {
      sameAsMsgpackr(v);
    }
  });

  it('matches msgpackr when Object.prototype has an enumerable property', () => {
    const proto = Object.prototype as Record<string, unknown>;
    proto.polluted = 'yes';
    try {
      sameAsMsgpackr({ a: 1, b: { c: [1, { d: 2 }] } });
      expect(Object.keys(unpackr.unpack(encodeMsgpack({ a: 1 })) as object)).toEqual(['a']);
    } finally {
      delete proto.polluted;
    }
    // a shared frozen reason whose bytes were kept before the prototype was polluted: the decisions' encoder
    // copies them, and they are still what msgpackr writes (own properties only)
    const shared = Object.freeze({ code: 'HISTORY', dimension: 'importer', value: 'IM1', rate: 0.5, n: 10, contribution: 1.25 });
    const decision = { id: 'D1', channel: 'red', score: 3.5, controlGroup: false, rulesetVersion: 'v1', reasons: [shared] };
    encodeDecisions([decision]); // its bytes kept
    proto.polluted = 'yes';
    try {
      expect(Buffer.from(encodeDecisions([decision])).equals(Buffer.from(pack([decision])))).toBe(true);
      expect(Buffer.from(encodeDecision(decision)).equals(Buffer.from(pack(decision)))).toBe(true);
    } finally {
      delete proto.polluted;
    }
  });

  it('returns fresh bytes each call, through buffer growth and shrink', () => {
    const first = encodeMsgpack({ id: 'D1', channel: 'green' });
    const copy = Uint8Array.from(first);
    const huge = { s: 'z'.repeat(9_000_000), decisions: Array.from({ length: 20_000 }, (_, i) => ({ id: `D${i}`, channel: CHANNELS[i % 5], score: i / 7 })) };
    sameAsMsgpackr(huge);
    const second = encodeMsgpack({ id: 'D2', channel: 'red' });
    expect(first).toEqual(copy);
    expect(unpackr.unpack(second)).toEqual({ id: 'D2', channel: 'red' });
    expect(first.buffer).not.toBe(second.buffer);
    expect(second.byteLength).toBe(second.buffer.byteLength);
  });
});
