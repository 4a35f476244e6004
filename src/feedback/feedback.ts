/**
 * Feedback: examination results per declaration, joined to the logged
 * decision they answer (the latest decision for the id, or the latest of a
 * named ruleset version), stored with every change kept, and fed into the
 * profile-effectiveness tables (examinations, examination_profiles) so that
 * `selectivity profiles stats` shows hit rates from real results.
 *
 * One item = { declarationId, date, channel, inspected, outcome,
 * irregularity?, revenueRecovered?, notes?, rulesetVersion? } (docs/feedback.md).
 * A batch records its valid items in one durable transaction; each invalid
 * item gets its own named error and changes nothing.
 */
import { errors, preview, type SelectivityError } from '../errors.js';
import { CHANNELS, type Channel } from '../model/channels.js';
import { parseIsoDate } from '../model/schema.js';
import type { Reason } from '../decisions.js';
import { recordExamination } from '../profiles/effectiveness.js';
import type { Db } from '../store/sqlite.js';
import { DecisionLogReader, type DecisionPage, type LoggedDecision } from './log-reader.js';

export type { LoggedDecision } from './log-reader.js';

export const OUTCOMES = ['no-discrepancy', 'discrepancy', 'seizure'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Suggested irregularity kinds (the field is free text up to 64 characters; these keep reports comparable). */
export const IRREGULARITY_KINDS = ['undervaluation', 'misclassification', 'origin', 'quantity', 'prohibited-goods', 'ipr', 'sps', 'documents', 'other'] as const;

export const MAX_NOTES_LENGTH = 2000;
export const MAX_IRREGULARITY_LENGTH = 64;

export interface Feedback {
  declarationId: string;
  /** Date of the examination (or of the decision not to examine), YYYY-MM-DD. */
  date: string;
  /** The channel the declaration actually went through. */
  channel: Channel;
  inspected: boolean;
  outcome: Outcome;
  irregularity?: string;
  /** Duties and taxes recovered, national currency, >= 0 (default 0). */
  revenueRecovered: number;
  notes?: string;
  /** Join to the latest decision of this ruleset version instead of the latest decision. */
  rulesetVersion?: string;
}

export const FEEDBACK_FIELDS = ['declarationId', 'date', 'channel', 'inspected', 'outcome', 'irregularity', 'revenueRecovered', 'notes', 'rulesetVersion'] as const;
const KNOWN = new Set<string>(FEEDBACK_FIELDS);
/** A day YYYY-MM-DD, read as declarations' dates are (parseIsoDate checks the form too: years 0000 to 9999; Date.UTC took 0000-0099 for 1900-1999). */
const isDay = (s: string): boolean => !Number.isNaN(parseIsoDate(s));

/** Validates one feedback item; the first fault as SEL_ERR_FEEDBACK_INVALID naming the field. */
export function validateFeedback(raw: unknown): { ok: true; value: Feedback } | { ok: false; error: SelectivityError; declarationId?: string } {
  const bad = (field: string, expected: string, got: unknown) => {
    const id = raw !== null && typeof raw === 'object' && typeof (raw as { declarationId?: unknown }).declarationId === 'string' ? (raw as { declarationId: string }).declarationId : undefined;
    return { ok: false as const, error: errors.SEL_ERR_FEEDBACK_INVALID(`${field}: expected ${expected}`, { field, expected, got: preview(got) }), ...(id !== undefined ? { declarationId: id } : {}) };
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return bad('$', 'an object', Array.isArray(raw) ? 'an array' : raw);
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!KNOWN.has(k)) return bad(k, `only the fields ${FEEDBACK_FIELDS.join(', ')}`, k);
  const present = (k: string) => r[k] !== undefined && r[k] !== null;
  const { date, channel, inspected, outcome } = r;
  // trimmed, as a declaration's id is when it is scored: " F3 " was logged as "F3"
  const declarationId = typeof r.declarationId === 'string' ? r.declarationId.trim() : r.declarationId;
  if (typeof declarationId !== 'string' || declarationId.length === 0 || declarationId.length > 64) return bad('declarationId', 'a declaration id of 1 to 64 characters', r.declarationId);
  if (typeof date !== 'string' || !isDay(date)) return bad('date', 'a date YYYY-MM-DD', date);
  if (typeof channel !== 'string' || !(CHANNELS as readonly string[]).includes(channel)) return bad('channel', CHANNELS.join(' | '), channel);
  if (typeof inspected !== 'boolean') return bad('inspected', 'true or false', inspected);
  if (typeof outcome !== 'string' || !(OUTCOMES as readonly string[]).includes(outcome)) return bad('outcome', OUTCOMES.join(' | '), outcome);
  // a discrepancy or a seizure is what an examination found: not inspected, the result was counted nowhere
  // (its revenue included) while it read as a finding; one found after release is recorded as inspected
  if (!inspected && outcome !== 'no-discrepancy') return bad('outcome', 'no-discrepancy when inspected is false (a discrepancy or seizure found after release is an inspected result, on the channel applied)', outcome);
  const value: Feedback = { declarationId, date, channel: channel as Channel, inspected, outcome: outcome as Outcome, revenueRecovered: 0 };
  if (present('irregularity')) {
    const v = r.irregularity;
    if (typeof v !== 'string' || v.trim() === '' || v.length > MAX_IRREGULARITY_LENGTH) return bad('irregularity', `text of 1 to ${MAX_IRREGULARITY_LENGTH} characters (e.g. ${IRREGULARITY_KINDS.join(', ')})`, v);
    value.irregularity = v;
  }
  if (present('revenueRecovered')) {
    const v = r.revenueRecovered;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1e15) return bad('revenueRecovered', 'a number in [0, 1e15]', v);
    value.revenueRecovered = v;
  }
  if (present('notes')) {
    const v = r.notes;
    if (typeof v !== 'string' || v.length > MAX_NOTES_LENGTH) return bad('notes', `text of at most ${MAX_NOTES_LENGTH} characters`, typeof v === 'string' ? `${v.length} characters` : v);
    if (v !== '') value.notes = v;
  }
  if (present('rulesetVersion')) {
    const v = r.rulesetVersion;
    if (typeof v !== 'string' || !/^[0-9a-f]{16}$/.test(v)) return bad('rulesetVersion', 'a ruleset version (16 hex digits) named by a decision', v);
    value.rulesetVersion = v;
  }
  return { ok: true, value };
}

export interface StoredFeedback extends Feedback {
  /** The seq of the logged decision it joins to. */
  decisionSeq: number;
  current: boolean;
  recordedAt: string;
  recordedBy: string;
}

export type FeedbackStatus = 'recorded' | 'replaced' | 'duplicate' | 'rejected';

export interface FeedbackItemResult {
  /** Position in the request (or line in a file, set by the caller). */
  index: number;
  declarationId?: string;
  status: FeedbackStatus;
  /** The decision it was joined to. */
  decision?: { seq: number; rulesetVersion: string; decidedAt: string; channel: Channel };
  error?: { code: string; message: string; details: Record<string, unknown> };
}

export interface FeedbackCounts { recorded: number; replaced: number; duplicate: number; rejected: number }

/** What record() answers: the counts, and each item's result in the order given. */
export interface FeedbackRecording { counts: FeedbackCounts; results: FeedbackItemResult[] }

/** Results validated and joined (FeedbackStore.prepare), to be written by commit() or commitSliced(). */
export interface PreparedFeedback {
  /** Writes every item in one IMMEDIATE transaction (durable on return). */
  commit(): FeedbackRecording;
  /**
   * Writes the items in slices of `size`, in the order given, one IMMEDIATE
   * transaction each (each durable before the next begins), pausing for the
   * event loop between slices: the service's main thread, so that neither
   * its other requests nor the decision log's writer (which waits for the
   * store's write lock) wait for a whole large batch. `write` runs a slice's
   * function, perhaps again after it failed with nothing written
   * (writeWhenFree). When a slice fails, the promise rejects and the slices
   * before it stay recorded: posting the same results again answers those
   * as duplicates.
   */
  commitSliced(size: number, write: (slice: () => void) => Promise<void>): Promise<FeedbackRecording>;
}

/**
 * Declarations whose current result was recorded after result `mark` (a
 * model's feedbackSeq) and changes what a refit learns: it is inspected, or
 * the declaration's result as of the mark (its latest then) was inspected
 * and has since been withdrawn. A declaration counts once. What automatic
 * retraining counts (RulesetSource.resultsSinceModel).
 */
export function resultsAfter(db: Db, mark: number): number {
  return db.prepare(`SELECT COUNT(*) FROM feedback f WHERE f.seq > :mark AND f.current = 1
    AND (f.inspected = 1 OR EXISTS (SELECT 1 FROM feedback g WHERE g.declaration_id = f.declaration_id AND g.seq <= :mark AND g.inspected = 1
      AND NOT EXISTS (SELECT 1 FROM feedback h WHERE h.declaration_id = g.declaration_id AND h.seq > g.seq AND h.seq <= :mark)))`).pluck().get({ mark }) as number;
}

/** The seq of the newest result recorded (0: none): results after a mark are what came in since (automatic retraining). */
export function newestFeedbackSeq(db: Db): number {
  return (db.prepare('SELECT max(seq) FROM feedback').pluck().get() as number | null) ?? 0;
}

/** Items validated between pauses for the event loop (FeedbackStore.preparePaced): a few ms each. */
const VALIDATE_SLICE = 1000;

/** Results per transaction of POST /v1/feedback (PreparedFeedback.commitSliced): about 8 ms of the write lock each. */
export const FEEDBACK_SLICE = 500;

interface FeedbackRow { seq: number; declaration_id: string; current: number; decision_seq: number; date: string; channel: string; inspected: number; outcome: string; irregularity: string | null; revenue_recovered: number; notes: string | null; ruleset_version: string | null; recorded_at: string; recorded_by: string }

function toFeedback(r: FeedbackRow): StoredFeedback {
  const f: StoredFeedback = { declarationId: r.declaration_id, date: r.date, channel: r.channel as Channel, inspected: r.inspected === 1, outcome: r.outcome as Outcome, revenueRecovered: r.revenue_recovered, decisionSeq: r.decision_seq, current: r.current === 1, recordedAt: r.recorded_at, recordedBy: r.recorded_by };
  if (r.irregularity !== null) f.irregularity = r.irregularity;
  if (r.notes !== null) f.notes = r.notes;
  if (r.ruleset_version !== null) f.rulesetVersion = r.ruleset_version;
  return f;
}

/** Maps an outcome to the effectiveness tables' result: discrepancy and seizure are non-compliant; not inspected is not-examined. */
export function examinationResult(f: Pick<Feedback, 'inspected' | 'outcome'>): 'compliant' | 'non-compliant' | 'not-examined' {
  if (!f.inspected) return 'not-examined';
  return f.outcome === 'no-discrepancy' ? 'compliant' : 'non-compliant';
}

const sameResult = (a: StoredFeedback, b: Feedback, decisionSeq: number) =>
  a.decisionSeq === decisionSeq && a.date === b.date && a.channel === b.channel && a.inspected === b.inspected && a.outcome === b.outcome
  && (a.irregularity ?? null) === (b.irregularity ?? null) && a.revenueRecovered === b.revenueRecovered && (a.notes ?? null) === (b.notes ?? null)
  && (a.rulesetVersion ?? null) === (b.rulesetVersion ?? null);

export class FeedbackStore {
  private readonly log: DecisionLogReader;
  private readonly current;
  private readonly feedbackHistory;
  private readonly retire;
  private readonly insert;

  constructor(private readonly db: Db) {
    this.log = new DecisionLogReader(db);
    this.current = db.prepare('SELECT * FROM feedback WHERE declaration_id = ? AND current = 1');
    this.feedbackHistory = db.prepare('SELECT * FROM feedback WHERE declaration_id = ? ORDER BY seq');
    this.retire = db.prepare('UPDATE feedback SET current = 0 WHERE declaration_id = ? AND current = 1');
    this.insert = db.prepare(`INSERT INTO feedback (declaration_id, current, decision_seq, date, channel, inspected, outcome, irregularity, revenue_recovered, notes, ruleset_version, recorded_at, recorded_by)
      VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  }

  /**
   * A page of an id's logged decisions (DecisionLogReader.page): the `limit`
   * latest below seq `before`, oldest first, with the id's total.
   */
  decisions(declarationId: string, limit = Infinity, before?: number): DecisionPage {
    return this.log.page(declarationId, limit, before);
  }

  /**
   * The current feedback and its history (oldest first), the decision it
   * joins to (else the latest), and the id's latest `limit` decisions
   * (`decisionsTotal`: how many it has).
   */
  show(declarationId: string, limit = Infinity): { declarationId: string; feedback: StoredFeedback | null; decision: LoggedDecision | null; history: StoredFeedback[]; decisions: LoggedDecision[]; decisionsTotal: number } {
    const history = (this.feedbackHistory.all(declarationId) as FeedbackRow[]).map(toFeedback);
    const page = this.decisions(declarationId, limit);
    const decisions = page.decisions;
    const feedback = history.find((f) => f.current) ?? null;
    const decision = feedback ? decisions.find((d) => d.seq === feedback.decisionSeq) ?? this.log.at(feedback.decisionSeq) ?? null : decisions[decisions.length - 1] ?? null;
    return { declarationId, feedback, decision, history, decisions, decisionsTotal: page.total };
  }

  /**
   * Records a batch of feedback items (raw, validated here) in one durable
   * transaction: the valid ones are recorded, each invalid one gets its
   * error. Same result as the current one (and the same decision): duplicate,
   * nothing changes. A different result: it replaces the current one, which
   * stays in the history. The examination tables get the current result.
   */
  record(items: readonly unknown[], by: string, now = new Date()): FeedbackRecording {
    return this.prepare(items, by, now).commit();
  }

  /**
   * record() in two steps. prepare() validates the items and finds the
   * decision each joins to, reading only (each chunk of the log read once,
   * in seq order: DecisionLogReader.latestMany); commit() writes them in
   * one IMMEDIATE transaction (commitSliced: one per slice), which holds the
   * store's write lock only for the writes and the check against each
   * declaration's current result.
   * The decision log's writer thread waits for that lock: a batch of 1,000
   * results must not keep it, and every scoring answer, waiting for the
   * joins. commit() may be called again after it failed (nothing was
   * written): writeWhenFree does so while the lock is busy. A decision
   * logged between the two steps is not joined to (as if the results had
   * come a moment earlier).
   */
  prepare(items: readonly unknown[], by: string, now = new Date()): PreparedFeedback {
    const checked = this.check(items);
    return this.prepared(checked, this.log.latestMany(checked.requests), by, now);
  }

  /** prepare() with a pause for the event loop every few hundred joins and every VALIDATE_SLICE items checked: the service's main thread. */
  async preparePaced(items: readonly unknown[], by: string, now = new Date()): Promise<PreparedFeedback> {
    const results: ReturnType<typeof validateFeedback>[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      if (i > 0 && i % VALIDATE_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
      results[i] = validateFeedback(items[i]);
    }
    const checked = this.checked(results);
    return this.prepared(checked, await this.log.latestManyPaced(checked.requests), by, now);
  }

  private check(items: readonly unknown[]) {
    return this.checked(items.map((item) => validateFeedback(item)));
  }

  private checked(results: ReturnType<typeof validateFeedback>[]) {
    const valid = results.flatMap((v, i) => (v.ok ? [{ i, f: v.value }] : []));
    return { results, valid, requests: valid.map(({ f }) => ({ declarationId: f.declarationId, rulesetVersion: f.rulesetVersion || undefined })) };
  }

  private prepared({ results: checked, valid }: ReturnType<FeedbackStore['check']>, decisions: readonly (LoggedDecision | undefined)[], by: string, now: Date): PreparedFeedback {
    const at = now.toISOString();
    const joins = new Map(valid.map(({ i, f }, k) => [i, { f, decision: decisions[k] }]));
    const empty = (): FeedbackRecording => ({ counts: { recorded: 0, replaced: 0, duplicate: 0, rejected: 0 }, results: [] });
    /** Items from to to - 1 in one IMMEDIATE transaction; their results and counts, kept only once it committed. */
    const writeRange = (from: number, to: number): FeedbackRecording => {
      const { counts, results } = empty();
      try {
        this.db.transaction(() => {
          for (let i = from; i < to; i++) {
            const v = checked[i];
            if (!v.ok) {
              results.push({ index: i, ...(v.declarationId !== undefined ? { declarationId: v.declarationId } : {}), status: 'rejected', error: v.error.toJSON() });
              counts.rejected++;
              continue;
            }
            const { f, decision } = joins.get(i)!;
            if (!decision) {
              const e = errors.SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION(`no logged decision for declaration ${f.declarationId}${f.rulesetVersion ? ` by ruleset ${f.rulesetVersion}` : ''}`, { field: f.rulesetVersion ? 'rulesetVersion' : 'declarationId', expected: 'a declaration the service scored with the decision log on', got: f.rulesetVersion ? `${f.declarationId}@${f.rulesetVersion}` : f.declarationId });
              results.push({ index: i, declarationId: f.declarationId, status: 'rejected', error: e.toJSON() });
              counts.rejected++;
              continue;
            }
            const joined = { seq: decision.seq, rulesetVersion: decision.rulesetVersion, decidedAt: decision.decidedAt, channel: decision.channel };
            const cur = this.current.get(f.declarationId) as FeedbackRow | undefined;
            if (cur && sameResult(toFeedback(cur), f, decision.seq)) {
              results.push({ index: i, declarationId: f.declarationId, status: 'duplicate', decision: joined });
              counts.duplicate++;
              continue;
            }
            if (cur) this.retire.run(f.declarationId);
            this.insert.run(f.declarationId, decision.seq, f.date, f.channel, f.inspected ? 1 : 0, f.outcome, f.irregularity ?? null, f.revenueRecovered, f.notes ?? null, f.rulesetVersion ?? null, at, by);
            const profiles = decision.reasons.filter((r): r is Extract<Reason, { code: 'PROFILE' }> => r.code === 'PROFILE').map((r) => ({ id: r.profile, version: r.version ?? 0 }));
            recordExamination(this.db, { declarationId: f.declarationId, date: f.date, profiles, inspected: f.inspected, result: examinationResult(f), revenueRecovered: f.revenueRecovered }, now);
            const status = cur ? 'replaced' : 'recorded';
            results.push({ index: i, declarationId: f.declarationId, status, decision: joined });
            counts[status]++;
          }
        }).immediate();
      } catch (e) {
        // nothing of this range was written; the SQLite code tells a lock that was not free (SQLITE_BUSY: writeWhenFree tries again)
        throw errors.SEL_ERR_STORAGE(`feedback could not be recorded: ${(e as Error).message}`, { field: 'store', expected: 'a writable store', got: (e as { code?: string }).code });
      }
      return { counts, results };
    };
    const add = (into: FeedbackRecording, part: FeedbackRecording) => {
      for (const k of Object.keys(into.counts) as (keyof FeedbackCounts)[]) into.counts[k] += part.counts[k];
      for (const r of part.results) into.results.push(r);
    };
    return {
      commit: () => writeRange(0, checked.length),
      commitSliced: async (size, write) => {
        if (!(Number.isInteger(size) && size >= 1)) throw new RangeError('commitSliced: size must be a positive integer');
        const out = empty();
        for (let from = 0; from < checked.length; from += size) {
          if (from > 0) await new Promise((resolve) => setImmediate(resolve));
          let part: FeedbackRecording | undefined;
          await write(() => { part = writeRange(from, Math.min(from + size, checked.length)); });
          add(out, part!);
        }
        return out;
      },
    };
  }
}

