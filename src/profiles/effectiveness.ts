/**
 * Profile effectiveness: how much traffic each profile selects, and what the
 * examinations of the selected declarations found.
 *
 * - Usage: the service counts, per day, the declarations each profile
 *   version matched and the declarations scored (UsageRecorder: in memory,
 *   flushed to the store every few seconds and at shutdown; a crash loses at
 *   most the last interval of these counters, never an acknowledged write).
 * - Examinations: one row per examined declaration with the profile versions
 *   that matched it, whether it was inspected, the result and the revenue
 *   recovered. The feedback loop writes them (recordExamination); here is
 *   the query side.
 *
 * profileStats() joins both over a period: matched, share of traffic,
 * inspected, non-compliant (hit rate), revenue recovered; and flags profiles
 * that match too much or never hit.
 */
import { errors } from '../errors.js';
import type { CompiledMeta } from '../ruleset/compile.js';
import type { Transaction } from 'better-sqlite3';
import { writeWhenFree, type Db } from '../store/sqlite.js';
import { resolvePeriod } from '../model/period.js';

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export class UsageRecorder {
  private matched = new Map<string, number>();
  private scored = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly addUsage;
  private readonly addTraffic;

  constructor(private readonly db: Db, intervalMs = 5000, private readonly now: () => number = Date.now) {
    this.addUsage = db.prepare('INSERT INTO profile_usage (day, id, version, matched) VALUES (?, ?, ?, ?) ON CONFLICT (day, id, version) DO UPDATE SET matched = matched + excluded.matched');
    this.addTraffic = db.prepare('INSERT INTO traffic (day, scored) VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET scored = scored + excluded.scored');
    if (intervalMs > 0) {
      this.timer = setInterval(() => this.tryFlush(), intervalMs);
      this.timer.unref();
    }
  }

  /** Counts one scored batch: `matches` is [profile index, count, …] in the meta's profile order. */
  record(meta: CompiledMeta, scored: number, matches: readonly number[]): void {
    if (scored === 0) return;
    const d = day(this.now());
    this.scored.set(d, (this.scored.get(d) ?? 0) + scored);
    for (let k = 0; k < matches.length; k += 2) {
      const p = meta.profiles[matches[k]];
      if (!p) continue;
      const key = `${d}\u0000${p.id}\u0000${p.version ?? 0}`;
      this.matched.set(key, (this.matched.get(key) ?? 0) + matches[k + 1]);
    }
  }

  /** Flushes that failed (the store stayed busy past its timeout); their counts were kept for the next one. */
  failedFlushes = 0;

  /** Writes the counters gathered since the last flush, in one transaction; on failure they are kept and the error thrown. */
  flush(): void {
    try {
      this.write();
    } catch (e) {
      this.failedFlushes++;
      throw e;
    }
  }

  private write(): void {
    if (this.scored.size === 0 && this.matched.size === 0) return;
    const matched = this.matched, scored = this.scored;
    this.matched = new Map();
    this.scored = new Map();
    try {
      this.db.transaction(() => {
        for (const [d, n] of scored) this.addTraffic.run(d, n);
        for (const [key, n] of matched) {
          const [d, id, v] = key.split('\u0000');
          this.addUsage.run(d, id, Number(v), n);
        }
      }).immediate();
    } catch (e) {
      // nothing was written (the transaction rolled back): put the counts back for the next flush
      for (const [d, n] of scored) this.scored.set(d, (this.scored.get(d) ?? 0) + n);
      for (const [k, n] of matched) this.matched.set(k, (this.matched.get(k) ?? 0) + n);
      throw e;
    }
  }

  private flushing = false;

  /**
   * The timer's flush, on the service's main thread: it waits for the
   * store's write lock (the decision log's writer thread holds it during
   * its commits) without blocking the thread (writeWhenFree). A store kept
   * busy past the timeout must not bring the service down; the counts wait
   * for the next interval.
   */
  private tryFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    this.flushWhenFree()
      .catch(() => undefined) // counted; retried at the next interval
      .finally(() => { this.flushing = false; });
  }

  /**
   * flush() for the service's main thread: waits for the store's write lock
   * without blocking the thread (writeWhenFree). The reports that read the
   * counters (profile stats, the targeting report) call it first.
   */
  async flushWhenFree(): Promise<void> {
    try {
      await writeWhenFree(this.db, () => this.write());
    } catch (e) {
      this.failedFlushes++;
      throw e;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }
}

export interface Examination {
  declarationId: string;
  /** When the declaration was examined (or decided): YYYY-MM-DD or an ISO instant. */
  date: string;
  /** Profile versions that matched the declaration ("id@version" or { id, version }). */
  profiles: { id: string; version: number }[];
  inspected: boolean;
  result: 'compliant' | 'non-compliant' | 'not-examined';
  revenueRecovered?: number;
}

/** Records (or replaces) one examination result. The feedback loop calls this; durable on return. */
export function recordExamination(db: Db, e: Examination, now = new Date()): void {
  const bad = (field: string, expected: string, got: unknown): never => { throw errors.SEL_ERR_REQUEST_INVALID(`examination ${field}: expected ${expected}`, { field, expected, got }); };
  if (typeof e.declarationId !== 'string' || e.declarationId === '') bad('declarationId', 'a declaration id', e.declarationId);
  const t = Date.parse(e.date);
  if (typeof e.date !== 'string' || Number.isNaN(t)) bad('date', 'an ISO 8601 date', e.date);
  if (!['compliant', 'non-compliant', 'not-examined'].includes(e.result)) bad('result', 'compliant | non-compliant | not-examined', e.result);
  const revenue = e.revenueRecovered ?? 0;
  if (!Number.isFinite(revenue) || revenue < 0) bad('revenueRecovered', 'a number >= 0', e.revenueRecovered);
  examinationWrite(db).immediate(e, day(t), revenue, now.toISOString());
}

/** recordExamination's transaction and statements, made once per connection (feedback records one per result). */
const examinationWrites = new WeakMap<Db, Transaction<(e: Examination, d: string, revenue: number, at: string) => void>>();

function examinationWrite(db: Db) {
  let write = examinationWrites.get(db);
  if (!write) {
    const drop = db.prepare('DELETE FROM examinations WHERE declaration_id = ?');
    const insert = db.prepare('INSERT INTO examinations (declaration_id, day, inspected, result, revenue_recovered, recorded_at) VALUES (?, ?, ?, ?, ?, ?)');
    const profile = db.prepare('INSERT OR IGNORE INTO examination_profiles (declaration_id, id, version) VALUES (?, ?, ?)');
    write = db.transaction((e: Examination, d: string, revenue: number, at: string) => {
      drop.run(e.declarationId);
      insert.run(e.declarationId, d, e.inspected ? 1 : 0, e.result, revenue, at);
      for (const p of e.profiles) profile.run(e.declarationId, p.id, p.version);
    });
    examinationWrites.set(db, write);
  }
  return write;
}

export interface ProfileStatsRow {
  id: string;
  status: string | null;
  matched: number;
  /** matched / declarations scored in the period. */
  share: number;
  inspected: number;
  nonCompliant: number;
  /** nonCompliant / inspected (null when nothing was inspected). */
  hitRate: number | null;
  revenueRecovered: number;
  flags: ('matches-too-much' | 'never-hits' | 'no-matches')[];
}

export interface StatsOptions {
  /** First and last day (YYYY-MM-DD, inclusive); default: the last 30 days. */
  from?: string;
  to?: string;
  /** Share of traffic above which a profile "matches too much" (default 0.05). */
  maxShare?: number;
  /** Inspections after which a profile without a hit "never hits" (default 20). */
  minInspected?: number;
}

export interface ProfileStats {
  from: string;
  to: string;
  scored: number;
  profiles: ProfileStatsRow[];
}

export function profileStats(db: Db, o: StatsOptions = {}, now = Date.now()): ProfileStats {
  const { from, to } = resolvePeriod(o, now);
  const maxShare = o.maxShare ?? 0.05;
  const minInspected = o.minInspected ?? 20;
  // checked here, for the command and the route alike (the command names its options --max-share, --min-inspected)
  if (!(Number.isFinite(maxShare) && maxShare >= 0 && maxShare <= 1)) throw errors.SEL_ERR_OPTION_INVALID('maxShare must be a share of traffic in [0, 1]', { field: 'maxShare', expected: 'a number in [0, 1]', got: o.maxShare });
  if (!(Number.isSafeInteger(minInspected) && minInspected >= 1)) throw errors.SEL_ERR_OPTION_INVALID('minInspected must be an integer of at least 1', { field: 'minInspected', expected: 'an integer in [1, ∞]', got: o.minInspected });
  const scored = (db.prepare('SELECT COALESCE(SUM(scored), 0) AS n FROM traffic WHERE day BETWEEN ? AND ?').get(from, to) as { n: number }).n;
  const matched = new Map<string, number>();
  for (const r of db.prepare('SELECT id, SUM(matched) AS n FROM profile_usage WHERE day BETWEEN ? AND ? GROUP BY id').all(from, to) as { id: string; n: number }[]) matched.set(r.id, r.n);
  const exam = new Map<string, { inspected: number; hits: number; revenue: number }>();
  const rows = db.prepare(`SELECT p.id AS id, SUM(e.inspected) AS inspected,
      SUM(CASE WHEN e.inspected = 1 AND e.result = 'non-compliant' THEN 1 ELSE 0 END) AS hits,
      SUM(CASE WHEN e.result = 'non-compliant' THEN e.revenue_recovered ELSE 0 END) AS revenue
    FROM examination_profiles p JOIN examinations e ON e.declaration_id = p.declaration_id
    WHERE e.day BETWEEN ? AND ? GROUP BY p.id`).all(from, to) as { id: string; inspected: number; hits: number; revenue: number }[];
  for (const r of rows) exam.set(r.id, { inspected: r.inspected, hits: r.hits, revenue: r.revenue });
  const heads = db.prepare('SELECT h.id AS id, v.status AS status FROM profile_heads h JOIN profile_versions v ON v.id = h.id AND v.version = h.version').all() as { id: string; status: string }[];
  const status = new Map(heads.map((h) => [h.id, h.status]));
  const ids = [...new Set([...heads.map((h) => h.id), ...matched.keys(), ...exam.keys()])].sort();
  return {
    from, to, scored,
    profiles: ids.map((id) => {
      const m = matched.get(id) ?? 0;
      const e = exam.get(id) ?? { inspected: 0, hits: 0, revenue: 0 };
      const share = scored > 0 ? m / scored : 0;
      const flags: ProfileStatsRow['flags'] = [];
      if (share > maxShare) flags.push('matches-too-much');
      if (e.inspected >= minInspected && e.hits === 0) flags.push('never-hits');
      if (m === 0 && status.get(id) === 'active' && scored > 0) flags.push('no-matches');
      return {
        id, status: status.get(id) ?? null, matched: m, share, inspected: e.inspected, nonCompliant: e.hits,
        hitRate: e.inspected > 0 ? e.hits / e.inspected : null, revenueRecovered: e.revenue, flags,
      };
    }),
  };
}
