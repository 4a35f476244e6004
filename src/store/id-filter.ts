/**
 * Filters of the decision-id index's sealed parts (migration 9).
 *
 * The id index (decision_ids, migration 8) is keyed by (part, id, seq), with
 * part = seq >> DECISION_ID_PART_BITS, so that a commit changes pages of the
 * newest part only. The price is on the reading side: an id's decisions may
 * lie in any part, and each part searched costs an index search. A part is
 * sealed once the log has moved past it (no decision is ever added to it
 * again); each sealed part gets a filter of its ids, a blocked Bloom filter
 * (decision_id_filters), so that a lookup searches only the parts that may
 * hold the id: the parts whose filter says "maybe" (every part that holds
 * it, and about one part in a thousand that does not) and the open part.
 *
 * The filter of a part: ID_FILTER_BYTES bytes, ID_FILTER_BLOCKS blocks of 64
 * bytes (a cache line); an id sets ID_FILTER_PROBES bits in one block
 * chosen by its hash. With 65,536 ids a part, 16 bits an id. The hash
 * (ID_FILTER_SCHEME 1) is fixed: filters are stored, and a reader must
 * compute the same bits as the writer that built them. A filter of another
 * scheme is ignored (its part is searched), so that a later version may
 * change the parameters with a migration that rebuilds them.
 */
import type { Database } from 'better-sqlite3';
import { mix32 } from '../kernel/hash.js';

/** Bits of a seq below the part of the decision id index (migration 8): 65,536 decisions per part. */
export const DECISION_ID_PART_BITS = 16;
/** Decisions per part of the id index. */
export const DECISION_ID_PART_SIZE = 2 ** DECISION_ID_PART_BITS;

/** The part of the id index a seq belongs to (seqs may pass 2^31: no bit operators). */
export function partOf(seq: number): number {
  return Math.floor(seq / DECISION_ID_PART_SIZE);
}

/** The hash and layout of the filters this version writes (decision_id_filters.scheme). */
export const ID_FILTER_SCHEME = 1;
export const ID_FILTER_BLOCKS = 2048;
export const ID_FILTER_BYTES = ID_FILTER_BLOCKS * 64;
export const ID_FILTER_PROBES = 8;

/** An id's hash: the block it lives in (a byte offset) and the start and step of its bits in the block. */
export class IdHash {
  readonly block: number;
  readonly start: number;
  readonly step: number;

  constructor(id: string) {
    // two 32-bit hashes of the UTF-16 code units (FNV-1a, and a multiply-xorshift), each finished with murmur3's mix
    let a = 0x811c9dc5;
    let b = 0x2545f491;
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 13;
    }
    const h1 = mix32(a ^ id.length);
    const h2 = mix32(b);
    this.block = (h1 & (ID_FILTER_BLOCKS - 1)) * 64;
    this.start = h2 & 511;
    // odd: the probes visit ID_FILTER_PROBES distinct bits of the block's 512
    this.step = ((h1 >>> 11) & 511) | 1;
  }
}

export class IdFilter {
  readonly bytes: Uint8Array;

  /** An empty filter, or one read back from the store (ID_FILTER_BYTES bytes). */
  constructor(bytes?: Uint8Array) {
    if (bytes !== undefined && bytes.byteLength !== ID_FILTER_BYTES) throw new RangeError(`an id filter has ${ID_FILTER_BYTES} bytes, not ${bytes.byteLength}`);
    this.bytes = bytes ?? new Uint8Array(ID_FILTER_BYTES);
  }

  add(id: string): void {
    const h = new IdHash(id);
    const bytes = this.bytes;
    for (let i = 0, bit = h.start; i < ID_FILTER_PROBES; i++, bit = (bit + h.step) & 511) bytes[h.block + (bit >>> 3)] |= 1 << (bit & 7);
  }

  /** False: the id is not in the filter's part. True: it may be. */
  mayHold(h: IdHash): boolean {
    const bytes = this.bytes;
    for (let i = 0, bit = h.start; i < ID_FILTER_PROBES; i++, bit = (bit + h.step) & 511) {
      if ((bytes[h.block + (bit >>> 3)] & (1 << (bit & 7))) === 0) return false;
    }
    return true;
  }
}

/** The filter of a part, from its rows in the id index. */
export function buildIdFilter(db: Database, part: number): IdFilter {
  const filter = new IdFilter();
  for (const id of db.prepare('SELECT declaration_id FROM decision_ids WHERE part = ?').pluck().iterate(part) as IterableIterator<string>) filter.add(id);
  return filter;
}

/** Stores a sealed part's filter (replacing any). */
export function storeIdFilter(db: Database, part: number, filter: IdFilter): void {
  db.prepare('INSERT OR REPLACE INTO decision_id_filters (part, scheme, bits) VALUES (?, ?, ?)').run(part, ID_FILTER_SCHEME, Buffer.from(filter.bytes.buffer, filter.bytes.byteOffset, filter.bytes.byteLength));
}

/**
 * The seq the next logged decision takes, as a function to call (inside the
 * transaction that uses it, for the decision log's writer): after the last
 * chunk's rows and after the older layout's (migration 5, read once: it is
 * no longer written); 1 for an empty log.
 */
export function nextSeqReader(db: Database): () => number {
  const legacyEnd = ((db.prepare('SELECT max(seq) FROM decision_log').pluck().get() as number | null) ?? 0) + 1;
  const chunkEnd = db.prepare('SELECT first_seq + count FROM decision_chunks ORDER BY first_seq DESC LIMIT 1').pluck();
  return () => Math.max(legacyEnd, (chunkEnd.get() as number | undefined) ?? 1);
}

/**
 * The open part: the part of the highest seq logged (chunks or the older
 * layout), 0 for an empty log. The parts below it are sealed.
 */
export function openPart(db: Database): number {
  return partOf(nextSeqReader(db)() - 1);
}

/**
 * Builds and stores the filter of every sealed part (below `below`) that
 * has rows in the id index and no filter of this scheme; the number built.
 * Migration 9 builds them all for an existing log; the writer calls it at
 * start, which finds none missing unless a log was written without filters.
 */
export function fillIdFilters(db: Database, below = openPart(db)): number {
  const missing = db.prepare(`WITH RECURSIVE parts (p) AS (
      SELECT (SELECT part FROM decision_ids ORDER BY part LIMIT 1)
      UNION ALL SELECT (SELECT part FROM decision_ids WHERE part > parts.p ORDER BY part LIMIT 1) FROM parts WHERE parts.p IS NOT NULL)
    SELECT p FROM parts WHERE p IS NOT NULL AND p < ? AND NOT EXISTS (SELECT 1 FROM decision_id_filters f WHERE f.part = p AND f.scheme = ?)`).pluck().all(below, ID_FILTER_SCHEME) as number[];
  for (const part of missing) storeIdFilter(db, part, buildIdFilter(db, part));
  return missing.length;
}
