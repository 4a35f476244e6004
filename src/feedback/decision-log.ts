/**
 * The decision log: every decision the service returns, written durably
 * before the response that carries it is sent.
 *
 * Scoring workers build each request's log rows next to its decisions (one
 * MessagePack buffer, src/feedback/log-rows.ts). The main thread only hands
 * that buffer on, transferred, to a log-writer thread (node:worker_threads,
 * workers/decision-log-worker.ts) that holds its own connection to the store
 * and stores each buffer as one chunk row plus its ids in the id index
 * (migrations 7 to 9; src/feedback/log-reader.ts reads them), with group commit: every payload that arrived while the
 * previous transaction was committing goes into the next one, so one fsync
 * covers many requests under load and a lone request waits for one commit.
 * append() resolves once its rows are committed (synchronous=FULL, WAL).
 *
 * Memory is bounded: when more than maxPendingBytes of payloads wait for a
 * commit, append() waits for room (it never drops rows).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Transaction } from 'better-sqlite3';
import { errors, SelectivityError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { buildIdFilter, DECISION_ID_PART_BITS, DECISION_ID_PART_SIZE, fillIdFilters, IdFilter, nextSeqReader, partOf, storeIdFilter } from '../store/id-filter.js';
import { BUSY_TIMEOUT_MS, isStoreBusy, openStore, type Db } from '../store/sqlite.js';
import { readPayload } from './log-rows.js';

/**
 * Ids per statement of the id index: a payload of more rows is indexed in
 * statements of this many, in row order. A statement of many rows keeps a
 * statement journal, the image of every index page it changes as it was;
 * the writer keeps it in memory (see LogWriter), and this bounds that
 * memory: about one 4 KiB page per id at most, so about 16 MiB, whatever
 * the size of a batch or of the index.
 */
export const ID_STATEMENT_ROWS = 4096;

/**
 * The writer's pause between tries for the store's write lock, ms. Another
 * connection's transaction (the main thread recording examination results
 * in slices, a profile import, a CLI tool) holds the lock a few ms; SQLite's
 * own busy handler would sleep up to 100 ms between tries and so come back
 * long after the lock is free, with every scoring answer waiting for it.
 */
const LOCK_POLL_MS = 0.5;
const lockPause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Stores decision-log payloads; the core of the writer thread (and of the
 * in-thread mode). Each payload becomes one decision_chunks row (the chunk
 * as the worker encoded it) and one decision_ids row per decision, (part of
 * its seq, id, seq), through json_each in one statement (a payload of more
 * than ID_STATEMENT_ROWS ids: one statement per that many). Only the newest
 * part's pages change, so a commit costs the same on a large log as on a
 * small one, whatever order the ids come in (migration 8). The only
 * per-decision JavaScript adds each id to the open part's filter, stored
 * when the log leaves the part (migration 9, src/store/id-filter.ts).
 */
export class LogWriter {
  private readonly db: Db;
  private readonly commitAll: Transaction<(payloads: readonly Uint8Array[]) => number>;
  /** The filter of the open part's ids so far (migration 9); written when the log leaves the part. */
  private open = { part: 0, filter: new IdFilter() };
  /** The seq this writer's last commit ended at; another start means the open filter must be read again. */
  private nextSeq = -1;

  constructor(storePath: string) {
    const db = (this.db = openStore(storePath));
    // The id statements' journals in memory: past 64 KiB SQLite would spill each to a temporary
    // file, one write per index page the statement changes (with migration 7's index keyed by id,
    // a page per fresh id in no order: in memory, 41.2 -> 28.7 µs per decision at 1.6 million,
    // bench:log). Bounded by ID_STATEMENT_ROWS.
    db.pragma('temp_store = MEMORY');
    // seqs continue after the last chunk and the rows of the older layout (migration 5)
    const readNextSeq = nextSeqReader(db);
    const insertChunk = db.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, ?, ?, ?, ?, ?)');
    // row k of the chunk at seq first + k, in the part of that seq
    const insertIds = db.prepare(`INSERT INTO decision_ids (part, declaration_id, seq) SELECT (@first + key) >> ${DECISION_ID_PART_BITS}, value, @first + key FROM json_each(@ids)`);
    // the lock is waited for by commit(), in short pauses, not by SQLite's busy handler
    db.pragma('busy_timeout = 0');
    this.commitAll = db.transaction((payloads: readonly Uint8Array[]) => {
      this.began = true;
      // read inside the (immediate) transaction: another writer on the same file cannot interleave
      let seq = readNextSeq();
      if (seq !== this.nextSeq) this.reopen(seq);
      let n = 0;
      for (const p of payloads) {
        const { header, chunk } = readPayload(p);
        if (header.n === 0) continue;
        insertChunk.run(seq, header.n, header.t, header.v, header.f, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        const ids = JSON.parse(header.ids) as string[];
        if (header.n <= ID_STATEMENT_ROWS) insertIds.run({ first: seq, ids: header.ids });
        else {
          // a large batch or stream chunk: its ids in pieces, each piece's rows at their seqs
          for (let from = 0; from < ids.length; from += ID_STATEMENT_ROWS) insertIds.run({ first: seq + from, ids: JSON.stringify(ids.slice(from, from + ID_STATEMENT_ROWS)) });
        }
        this.filter(ids, seq);
        seq += header.n;
        n += header.n;
      }
      this.nextSeq = seq;
      return n;
    });
  }

  /**
   * Adds ids (at seqs first, first + 1, …) to the open part's filter; when
   * a seq leaves the part, the part is sealed: its filter is stored, in the
   * transaction of the commit that sealed it.
   */
  private filter(ids: readonly string[], first: number): void {
    let { part, filter } = this.open;
    let end = (part + 1) * DECISION_ID_PART_SIZE;
    for (let k = 0; k < ids.length; k++) {
      if (first + k >= end) {
        storeIdFilter(this.db, part, filter);
        part = partOf(first + k);
        filter = new IdFilter();
        end = (part + 1) * DECISION_ID_PART_SIZE;
        this.open = { part, filter };
      }
      filter.add(ids[k]);
    }
  }

  /**
   * Reads the open part's filter from the id index, and builds the filters
   * of sealed parts that lack one: at the first commit, after a failed one,
   * or when another writer has written since (`seq`: the next seq).
   */
  private reopen(seq: number): void {
    const part = partOf(seq - 1);
    fillIdFilters(this.db, part);
    this.open = { part, filter: buildIdFilter(this.db, part) };
  }

  /** Whether the transaction's body ran (the lock was taken) in the current try of commit(). */
  private began = false;

  /**
   * Stores every payload in one transaction (durable on return); the number
   * of decisions. While another connection holds the write lock, tries again
   * every LOCK_POLL_MS, for BUSY_TIMEOUT_MS in all; then the busy error is
   * thrown, as for any other failure (nothing of the payloads was written).
   */
  commit(payloads: readonly Uint8Array[]): number {
    const started = Date.now();
    for (;;) {
      this.began = false;
      try {
        return this.commitAll.immediate(payloads);
      } catch (e) {
        // a failure after the body ran may have left the open part's filter ahead of the store: read it again
        if (this.began) this.nextSeq = -1;
        if (isStoreBusy(e) && Date.now() - started < BUSY_TIMEOUT_MS) {
          Atomics.wait(lockPause, 0, 0, LOCK_POLL_MS);
          continue;
        }
        this.nextSeq = -1;
        throw e;
      }
    }
  }

  close(): void {
    this.db.close();
  }
}

export interface DecisionLogOptions {
  /** The store file (<data-dir>/selectivity.db). */
  storePath: string;
  /** Write from a dedicated thread (default true); false writes on the calling thread (tools, tests). */
  thread?: boolean;
  /** Payload bytes allowed to wait for a commit before append() waits (default 64 MiB). */
  maxPendingBytes?: number;
}

export interface DecisionLogStats {
  /** Rows committed, transactions committed, payloads committed. */
  rows: number;
  commits: number;
  payloads: number;
  /** Commits that failed (their payloads refused with SEL_ERR_STORAGE). */
  failures: number;
}

/** Why the log cannot take decisions now (DecisionLog.fault). */
export interface DecisionLogFault {
  error: SelectivityError;
  /** When the last commit failed (ms since the epoch). */
  at: number;
  /** The writer is gone: every append fails until a restart. */
  permanent: boolean;
}

interface Pending { resolve: () => void; reject: (e: Error) => void; bytes: number }

/** Where the writer thread's entry is (built: dist/workers/decision-log-worker.js). */
export function logWorkerPath(): string {
  return join(packageRoot(), 'dist', 'workers', 'decision-log-worker.js');
}

export class DecisionLog {
  readonly stats: DecisionLogStats = { rows: 0, commits: 0, payloads: 0, failures: 0 };
  /** Told of each commit that fails (the service counts them in /metrics). */
  onCommitFailure: (() => void) | undefined;
  private readonly maxPendingBytes: number;
  private readonly pending = new Map<number, Pending>();
  private pendingBytes = 0;
  private waiters: (() => void)[] = [];
  private nextId = 1;
  private failure: SelectivityError | undefined;
  /** The last commit's failure, while no commit has succeeded since. */
  private lastFailure: { error: SelectivityError; at: number } | undefined;
  private closing: Promise<void> | undefined;
  private readonly worker: Worker | undefined;
  /** In-thread mode: the writer and the payloads gathered for the next commit. */
  private readonly writer: LogWriter | undefined;
  private queued: { id: number; bytes: Uint8Array }[] = [];
  private scheduled = false;

  constructor(options: DecisionLogOptions) {
    const max = options.maxPendingBytes ?? 64 * 1024 * 1024;
    if (!Number.isInteger(max) || max < 1) throw errors.SEL_ERR_OPTION_INVALID('decision log maxPendingBytes must be a positive integer', { field: 'maxPendingBytes', expected: 'a positive integer', got: options.maxPendingBytes });
    this.maxPendingBytes = max;
    if (options.thread === false) {
      this.writer = new LogWriter(options.storePath);
      return;
    }
    const file = logWorkerPath();
    if (!existsSync(file)) throw errors.SEL_ERR_KERNEL_LOAD(`decision-log worker ${file} not found; run \`npm run build\``, { field: 'worker', expected: 'a built worker', got: file });
    this.worker = new Worker(file, { workerData: { storePath: options.storePath } });
    this.worker.on('message', (m: { ids: number[]; rows: number; error?: { message: string } }) => {
      if (m.error) this.settle(m.ids, 0, errors.SEL_ERR_STORAGE(m.error.message, { field: 'decisionLog' }));
      else this.settle(m.ids, m.rows);
    });
    this.worker.on('error', (e) => this.fail(errors.SEL_ERR_STORAGE(`the decision-log writer failed: ${e.message}`, { field: 'decisionLog' })));
    this.worker.on('exit', (code) => { if (!this.closing) this.fail(errors.SEL_ERR_STORAGE(`the decision-log writer exited (code ${code})`, { field: 'decisionLog' })); });
  }

  /** Payload bytes waiting for a commit. */
  get backlogBytes(): number { return this.pendingBytes; }

  /**
   * Why decisions cannot be logged now: the writer is gone (for good), or
   * the last commit failed and none has succeeded since (a full disk, a
   * damaged store); undefined while commits succeed.
   */
  get fault(): DecisionLogFault | undefined {
    if (this.failure) return { error: this.failure, at: this.lastFailure?.at ?? 0, permanent: true };
    return this.lastFailure && { ...this.lastFailure, permanent: false };
  }

  /**
   * Logs one request's payload (from WireReply.log); resolves when its rows
   * are committed, rejects with SEL_ERR_STORAGE if the write failed. The
   * payload's buffer is transferred to the writer (detached here).
   */
  async append(payload: Uint8Array): Promise<void> {
    if (this.closing) throw errors.SEL_ERR_NOT_READY('the decision log is closed', { field: 'decisionLog' });
    const n = payload.byteLength;
    // backpressure: wait for room rather than grow without bound (one payload always fits)
    while (this.pendingBytes > 0 && this.pendingBytes + n > this.maxPendingBytes && !this.failure) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    this.pendingBytes += n;
    const done = new Promise<void>((resolve, reject) => this.pending.set(id, { resolve, reject, bytes: n }));
    if (this.worker) {
      const owns = payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength && !(payload.buffer instanceof SharedArrayBuffer);
      const bytes = owns ? payload : new Uint8Array(payload);
      this.worker.postMessage({ id, bytes }, [bytes.buffer as ArrayBuffer]);
    } else {
      this.queued.push({ id, bytes: payload });
      if (!this.scheduled) { this.scheduled = true; setImmediate(() => this.commitQueued()); }
    }
    return done;
  }

  private commitQueued(): void {
    this.scheduled = false;
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    const ids = batch.map((b) => b.id);
    try {
      this.settle(ids, this.writer!.commit(batch.map((b) => b.bytes)));
    } catch (e) {
      this.settle(ids, 0, errors.SEL_ERR_STORAGE(`decision log write failed: ${(e as Error).message}`, { field: 'decisionLog' }));
    }
  }

  private settle(ids: readonly number[], rows: number, error?: SelectivityError): void {
    if (!error) {
      this.stats.rows += rows; this.stats.commits++; this.stats.payloads += ids.length;
      this.lastFailure = undefined;
    } else {
      this.stats.failures++;
      this.lastFailure = { error, at: Date.now() };
      this.onCommitFailure?.();
    }
    for (const id of ids) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      this.pendingBytes -= p.bytes;
      if (error) p.reject(error);
      else p.resolve();
    }
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private fail(e: SelectivityError): void {
    this.failure ??= e;
    this.lastFailure ??= { error: e, at: Date.now() };
    this.settle([...this.pending.keys()], 0, e);
  }

  /** Waits for every append to be committed, then stops the writer. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.pending.size > 0) await new Promise<void>((r) => this.waiters.push(r));
      if (this.worker) {
        const exited = new Promise<void>((r) => this.worker!.once('exit', () => r()));
        this.worker.postMessage({ close: true });
        await exited;
      } else {
        this.writer!.close();
      }
    })();
    return this.closing;
  }
}
