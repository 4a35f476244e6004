/**
 * Reads the decision log, whichever layout holds a decision:
 *  - decision_chunks (migration 7, written by this version): one chunk row
 *    per scored request, its decisions as the reply encoded them and its
 *    declaration rows (src/feedback/log-rows.ts), decision first_seq + k
 *    being row k; an id's decisions are found in decision_ids (migration
 *    8), part by part of the log, newest part first, skipping the sealed
 *    parts whose filter (migration 9, src/store/id-filter.ts) says the id
 *    is not there;
 *  - decision_log (migration 5): one row per decision, written by earlier
 *    versions and kept as it is. Its seqs are all below the chunks' seqs.
 * Feedback's join, GET /v1/decisions/:id, `feedback show` and training from
 * the store read through here and see one list of decisions per id, in seq
 * order.
 */
import { errors } from '../errors.js';
import type { Channel } from '../model/channels.js';
import type { Reason } from '../decisions.js';
import type { Db } from '../store/sqlite.js';
import { ID_FILTER_SCHEME, IdFilter, IdHash } from '../store/id-filter.js';
import { Chunk, CHUNK_MSGPACK, CHUNK_NDJSON, type ChunkFormat } from './log-rows.js';

export interface LoggedDeclaration { date: string; office: string; importer: string; declarant?: string; seller?: string; hs: string; origin: string; departure?: string; transportMode?: string; customsValue: number; netMass: number; quantity?: number; taxRate?: number; aeo?: boolean }

export interface LoggedDecision {
  /** The decision's number in the log (increasing: a later one is a later decision). */
  seq: number;
  declarationId: string;
  decidedAt: string;
  rulesetVersion: string;
  score: number;
  channel: Channel;
  controlGroup: boolean;
  reasons: Reason[];
  declaration: LoggedDeclaration;
}

/** A row of decision_log (migration 5). */
interface LegacyRow { seq: number; declaration_id: string; decided_at: number; ruleset_version: string; score: number; channel: string; control_group: number; reasons: string; date: string; office: string; importer: string; declarant: string | null; seller: string | null; hs: string; origin: string; departure: string | null; transport_mode: string | null; customs_value: number; net_mass: number; quantity: number | null; tax_rate: number | null; aeo: number | null }

interface ChunkHead { first_seq: number; count: number; decided_at: number; ruleset_version: string; format: ChunkFormat }

/** The declaration fields of a decision_log row (absent where NULL). */
function legacyDeclaration(r: LegacyRow): LoggedDeclaration {
  const d: LoggedDeclaration = { date: r.date, office: r.office, importer: r.importer, hs: r.hs, origin: r.origin, customsValue: r.customs_value, netMass: r.net_mass };
  if (r.declarant !== null) d.declarant = r.declarant;
  if (r.seller !== null) d.seller = r.seller;
  if (r.departure !== null) d.departure = r.departure;
  if (r.transport_mode !== null) d.transportMode = r.transport_mode;
  if (r.quantity !== null) d.quantity = r.quantity;
  if (r.tax_rate !== null) d.taxRate = r.tax_rate;
  if (r.aeo !== null) d.aeo = r.aeo === 1;
  return d;
}

function fromLegacy(r: LegacyRow): LoggedDecision {
  return { seq: r.seq, declarationId: r.declaration_id, decidedAt: new Date(r.decided_at).toISOString(), rulesetVersion: r.ruleset_version, score: r.score, channel: r.channel as Channel, controlGroup: r.control_group === 1, reasons: JSON.parse(r.reasons) as Reason[], declaration: legacyDeclaration(r) };
}

function fromChunk(h: ChunkHead, c: Chunk, seq: number): LoggedDecision {
  const { decision: x, declaration: r } = c.row(seq - h.first_seq);
  const d: LoggedDeclaration = { date: r[0], office: r[1], importer: r[2], hs: r[5], origin: r[6], customsValue: r[9], netMass: r[10] };
  if (r[3] !== null) d.declarant = r[3];
  if (r[4] !== null) d.seller = r[4];
  if (r[7] !== null) d.departure = r[7];
  if (r[8] !== null) d.transportMode = r[8];
  if (r[11] !== null) d.quantity = r[11];
  if (r[12] !== null) d.taxRate = r[12];
  if (r[13] !== null) d.aeo = r[13] === 1;
  return { seq, declarationId: x.id, decidedAt: new Date(h.decided_at).toISOString(), rulesetVersion: h.ruleset_version, score: x.score, channel: x.channel, controlGroup: x.controlGroup, reasons: x.reasons, declaration: d };
}

/** Chunks decoded recently (a chunk never changes once written): feedback for one request's declarations reads one chunk. */
const CACHED_CHUNKS = 8;

/** Parts of the id index that latest() searches one by one, newest first, before the rest in one query. */
const RECENT_PARTS = 2;

/** An id whose latest decision is asked for, or its latest by a ruleset version. */
export interface LatestRequest { declarationId: string; rulesetVersion?: string }

/** Where the log holds a decision: its chunk's head, or (older layout) its row. */
interface Found { seq: number; head?: ChunkHead; row?: LegacyRow }

/** See DecisionLogReader.page. */
export interface DecisionPage {
  declarationId: string;
  total: number;
  decisions: LoggedDecision[];
  before: number | null;
}

/** The lowest and the highest part the id index holds. */
interface PartRange { low: number; high: number }

export class DecisionLogReader {
  private readonly parts;
  private readonly partSeqs;
  private readonly legacySeqs;
  private readonly head;
  private readonly rows;
  private readonly legacy;
  private readonly legacyAll;
  private readonly heads;
  private readonly newFilters;
  private readonly listedSeqs;
  private readonly cache = new Map<number, Chunk>();
  /** The sealed parts' filters read so far (they never change; prune deletes a part's with its rows). */
  private readonly filters = new Map<number, IdFilter>();
  /** The highest part whose filter has been looked for. */
  private filtersTo = -1;
  /** The lowest part of the index when the filters were last trimmed (prune removes the parts below it). */
  private filtersFrom = 0;

  constructor(db: Db) {
    this.parts = db.prepare('SELECT (SELECT part FROM decision_ids ORDER BY part LIMIT 1) AS low, (SELECT part FROM decision_ids ORDER BY part DESC LIMIT 1) AS high');
    this.partSeqs = db.prepare('SELECT seq FROM decision_ids WHERE part = ? AND declaration_id = ? ORDER BY seq').pluck();
    // the parts listed (a JSON array): one search of the primary key each
    this.listedSeqs = db.prepare(`SELECT d.seq FROM json_each(@parts) AS j CROSS JOIN decision_ids AS d ON d.part = j.value AND d.declaration_id = @id ORDER BY d.seq`).pluck();
    this.newFilters = db.prepare('SELECT part, scheme, bits FROM decision_id_filters WHERE part > ? ORDER BY part');
    this.legacySeqs = db.prepare('SELECT seq FROM decision_log WHERE declaration_id = ? ORDER BY seq').pluck();
    this.head = db.prepare('SELECT first_seq, count, decided_at, ruleset_version, format FROM decision_chunks WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1');
    this.rows = db.prepare('SELECT rows FROM decision_chunks WHERE first_seq = ?').pluck();
    this.legacy = db.prepare('SELECT * FROM decision_log WHERE seq = ?');
    this.legacyAll = db.prepare('SELECT * FROM decision_log ORDER BY seq');
    this.heads = db.prepare('SELECT first_seq, count, decided_at, ruleset_version, format FROM decision_chunks ORDER BY first_seq');
  }

  /** Every logged decision, in seq order (older layout first). */
  *scan(): Generator<LoggedDecision> {
    for (const r of this.legacyAll.iterate() as IterableIterator<LegacyRow>) yield fromLegacy(r);
    for (const h of this.heads.all() as ChunkHead[]) {
      const c = this.chunk(h);
      for (let k = 0; k < h.count; k++) yield fromChunk(h, c, h.first_seq + k);
    }
  }

  /** The range of parts the id index holds, if any. */
  private partRange(): PartRange | undefined {
    const { low, high } = this.parts.get() as { low: number | null; high: number | null };
    return low === null || high === null ? undefined : { low, high };
  }

  /**
   * The parts of a range that may hold an id, newest first: the parts with
   * no filter (the open part; a part sealed since the last look is read
   * first) and the sealed parts whose filter may hold it.
   */
  private candidates(range: PartRange, id: string): number[] {
    // the part below the newest is sealed (its filter written with the commit that left it): read what is new
    if (range.high - 1 > this.filtersTo) {
      for (const f of this.newFilters.all(this.filtersTo) as { part: number; scheme: number; bits: Buffer }[]) {
        // a filter of another scheme is not understood: its part is searched
        if (f.scheme === ID_FILTER_SCHEME) this.filters.set(f.part, new IdFilter(new Uint8Array(f.bits.buffer, f.bits.byteOffset, f.bits.byteLength)));
        this.filtersTo = Math.max(this.filtersTo, f.part);
      }
    }
    // pruned parts' filters go
    if (range.low > this.filtersFrom) {
      for (const part of this.filters.keys()) if (part < range.low) this.filters.delete(part);
      this.filtersFrom = range.low;
    }
    const h = new IdHash(id);
    const out: number[] = [];
    for (let part = range.high; part >= range.low; part--) {
      const f = this.filters.get(part);
      if (f === undefined || f.mayHold(h)) out.push(part);
    }
    return out;
  }

  /** The seqs of an id's decisions in these parts, ascending. */
  private seqsIn(parts: readonly number[], id: string): number[] {
    if (parts.length === 0) return [];
    if (parts.length === 1) return this.partSeqs.all(parts[0], id) as number[];
    return this.listedSeqs.all({ parts: JSON.stringify(parts), id }) as number[];
  }

  /** The seqs of a declaration id's decisions, ascending. */
  seqs(declarationId: string): number[] {
    const range = this.partRange();
    const logged = range === undefined ? [] : this.seqsIn(this.candidates(range, declarationId), declarationId);
    return [...(this.legacySeqs.all(declarationId) as number[]), ...logged];
  }

  /** The chunk holding seq, if a chunk does (else the decision, if any, is a decision_log row). */
  private headOf(seq: number): ChunkHead | undefined {
    const h = this.head.get(seq) as ChunkHead | undefined;
    return h && seq < h.first_seq + h.count ? h : undefined;
  }

  private chunk(h: ChunkHead): Chunk {
    let c = this.cache.get(h.first_seq);
    if (c) {
      this.cache.delete(h.first_seq);
      this.cache.set(h.first_seq, c);
      return c;
    }
    if (h.format !== CHUNK_MSGPACK && h.format !== CHUNK_NDJSON) throw errors.SEL_ERR_STORAGE(`decision chunk at seq ${h.first_seq} has format ${h.format}, which this engine does not read`, { field: 'store', expected: `chunk format ${CHUNK_MSGPACK} or ${CHUNK_NDJSON}`, got: h.format });
    c = new Chunk(h.first_seq, h.count, h.format, this.rows.get(h.first_seq) as Buffer);
    this.cache.set(h.first_seq, c);
    if (this.cache.size > CACHED_CHUNKS) this.cache.delete(this.cache.keys().next().value as number);
    return c;
  }

  /** Where the log holds the decision with this seq (its chunk's head, or its older-layout row), if it does. */
  private find(seq: number): Found | undefined {
    const head = this.headOf(seq);
    if (head) return { seq, head };
    const row = this.legacy.get(seq) as LegacyRow | undefined;
    return row && { seq, row };
  }

  /** The decision found there. */
  private read(f: Found): LoggedDecision {
    return f.head ? fromChunk(f.head, this.chunk(f.head), f.seq) : fromLegacy(f.row!);
  }

  /** The decision with this seq, if the log holds it. */
  at(seq: number): LoggedDecision | undefined {
    const f = this.find(seq);
    return f && this.read(f);
  }

  /** Every logged decision of a declaration id, oldest first. */
  decisions(declarationId: string): LoggedDecision[] {
    return this.page(declarationId, Infinity).decisions;
  }

  /**
   * A page of an id's logged decisions: the `limit` latest whose seq is below
   * `before` (all seqs when undefined), oldest first. `total`: how many the
   * id has in all; `before`: the page's first seq when older ones remain
   * (what asks for the next page), else null. Only the page's decisions are
   * read and decoded: an id decided 100,000 times (a probe re-scoring one
   * declaration) is no longer read whole for one look.
   */
  page(declarationId: string, limit: number, before?: number): DecisionPage {
    const seqs = this.seqs(declarationId);
    const total = seqs.length;
    let end = seqs.length;
    if (before !== undefined) while (end > 0 && seqs[end - 1] >= before) end--;
    const start = Math.max(0, end - limit);
    const decisions: LoggedDecision[] = [];
    for (let k = start; k < end; k++) {
      const d = this.at(seqs[k]);
      if (d) decisions.push(d);
    }
    return { declarationId, total, decisions, before: start > 0 ? seqs[start] : null };
  }

  /** The latest decision of an id, or the latest one made by a ruleset version. */
  latest(declarationId: string, rulesetVersion?: string): LoggedDecision | undefined {
    const f = this.findLatest(declarationId, rulesetVersion);
    return f && this.read(f);
  }

  /**
   * latest() for many ids at once, in their order: the seqs are found
   * first, then the decisions read in seq order, so that each chunk is
   * read and walked once however the ids are spread over the log (a batch
   * of examination results names declarations decided over days).
   */
  latestMany(requests: readonly LatestRequest[]): (LoggedDecision | undefined)[] {
    const out: (LoggedDecision | undefined)[] = [];
    for (const _ of this.latestSteps(requests, out, Infinity)) { /* no pause */ }
    return out;
  }

  /** latestMany() with a pause for the event loop after every `slice` requests (the service's main thread). */
  async latestManyPaced(requests: readonly LatestRequest[], slice = 250): Promise<(LoggedDecision | undefined)[]> {
    const out: (LoggedDecision | undefined)[] = [];
    for (const _ of this.latestSteps(requests, out, slice)) await new Promise((resolve) => setImmediate(resolve));
    return out;
  }

  /** latestMany's work, yielding after every `slice` lookups and reads. */
  private *latestSteps(requests: readonly LatestRequest[], out: (LoggedDecision | undefined)[], slice: number): Generator<void> {
    const found: (Found | undefined)[] = new Array(requests.length);
    for (let k = 0; k < requests.length; k++) {
      found[k] = this.findLatest(requests[k].declarationId, requests[k].rulesetVersion);
      if ((k + 1) % slice === 0) yield;
    }
    const order = found.map((_, k) => k).filter((k) => found[k] !== undefined).sort((a, b) => found[a]!.seq - found[b]!.seq);
    out.length = requests.length;
    out.fill(undefined);
    let last: LoggedDecision | undefined;
    for (let j = 0; j < order.length; j++) {
      const f = found[order[j]]!;
      out[order[j]] = last?.seq === f.seq ? last : (last = this.read(f));
      if ((j + 1) % slice === 0) yield;
    }
  }

  /** Where an id's latest decision is, or the latest one a ruleset version made (no chunk read). */
  private findLatest(declarationId: string, rulesetVersion?: string): Found | undefined {
    const range = this.partRange();
    if (range !== undefined) {
      // the newest parts that may hold it first, one by one: feedback mostly joins to a recent decision; then the rest in one query
      const parts = this.candidates(range, declarationId);
      for (let k = 0; k < Math.min(RECENT_PARTS, parts.length); k++) {
        const f = this.latestOf(this.partSeqs.all(parts[k], declarationId) as number[], rulesetVersion);
        if (f) return f;
      }
      if (parts.length > RECENT_PARTS) {
        const f = this.latestOf(this.seqsIn(parts.slice(RECENT_PARTS), declarationId), rulesetVersion);
        if (f) return f;
      }
    }
    return this.latestOf(this.legacySeqs.all(declarationId) as number[], rulesetVersion);
  }

  /** Where the decision of the highest of these seqs (ascending) is that the log holds and, if given, a ruleset version made. */
  private latestOf(seqs: number[], rulesetVersion: string | undefined): Found | undefined {
    for (let k = seqs.length - 1; k >= 0; k--) {
      // a chunk's version is in its head: no rows decoded
      const f = this.find(seqs[k]);
      if (f && (rulesetVersion === undefined || (f.head ? f.head.ruleset_version : f.row!.ruleset_version) === rulesetVersion)) return f;
    }
    return undefined;
  }
}
