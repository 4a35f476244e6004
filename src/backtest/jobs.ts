/**
 * Back-tests as jobs for the HTTP service: accepted at once (202), run one
 * at a time on their own worker pool (a share of the cores, so scoring keeps
 * the rest), with progress to poll and a report to fetch. Every job is a
 * file in <data-dir>/backtests (<id>.json), written durably when it is
 * accepted and when it ends, so a report survives a restart. A finished job's report
 * is a file of its own (<id>.report.json), read when it is asked for: held
 * in memory with every job, 100 reports of 5.6 MB made a service of 1.5 GB
 * that took 12.7 s to start. At most MAX_QUEUED_JOBS wait.
 *
 * An accepted job is not lost to a restart: its two profile sets are a file
 * of their own too (<id>.input.json, written before the job is
 * acknowledged), so a job that a stop or a crash cut short is queued again
 * at the next start (resume()), composed with the peers, watch lists and
 * model of that start. A job the service died under MAX_CUT_RUNS times (a
 * crash each time, perhaps its own doing) is not run a further time: it is
 * marked interrupted.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errors, isSelectivityError } from '../errors.js';
import type { Ruleset } from '../ruleset/ruleset.js';
import { DATA_FILE_MODE, makeDirs, writeFileDurable } from '../store/durable.js';
import { runBacktest, type BacktestReport } from './backtest.js';
import type { CapacitySpec } from './accumulate.js';

const OWNER_ONLY = { createMode: DATA_FILE_MODE };

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted';

export interface JobRequest {
  names: [string, string];
  from?: string;
  to?: string;
  capacity?: CapacitySpec;
  tooMuch?: number;
  /** Profile counts of both sets (what was asked, for listings). */
  profiles: [number, number];
}

export interface BacktestJob {
  id: string;
  status: JobStatus;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  request: JobRequest;
  progress: { done: number; total: number; fraction: number };
  error: { code: string; message: string; details?: unknown } | null;
  result: BacktestReport | null;
  /** Times the job was queued again at a start, after a stop or a crash cut it short (absent in job files before 2026-12-08: 0). */
  resumed?: number;
  /** Runs of the job that a crash cut short (the job was found running at a start). */
  cutRuns?: number;
}

export interface JobsOptions {
  /**
   * The finished jobs (done, failed, cancelled, interrupted) kept, the most
   * recently finished first; older ones are removed with their report and
   * files, at the start and whenever a job ends. 0 (the default): every
   * one, until it is deleted.
   */
  keep?: number;
  /** Told the ids of the finished jobs `keep` removed (the service logs them). */
  onRemoved?: (ids: string[]) => void;
}

/** The profile sets of a job (<id>.input.json): what resume() composes again. */
interface JobInput { candidate: unknown; baseline: unknown }

const REPORT_SUFFIX = '.report.json';
const INPUT_SUFFIX = '.input.json';
const ID = /^bt-[0-9a-z]+-[0-9a-f]{8}$/;
/** Jobs that may wait for the running one; another is refused with SEL_ERR_OVERLOADED (1,000 were accepted in 8 s). */
export const MAX_QUEUED_JOBS = 16;

/** Runs of a job that a crash may cut short before the job is no longer queued again at a start. */
export const MAX_CUT_RUNS = 3;

/** What an interrupted job says: one that cannot be queued again at a start (no input file, as jobs before 2026-12-08 had; or cut short too often). */
const NO_INPUT = { code: 'SEL_ERR_NOT_READY', message: 'the service stopped before this back-test finished, and its profile sets were not kept (a job of an earlier version); submit it again' } as const;
const CUT_TOO_OFTEN = { code: 'SEL_ERR_NOT_READY', message: `the service stopped ${MAX_CUT_RUNS} times while this back-test ran (a crash each time; see the service's log); it is not run again: submit it again` } as const;

/** A job to run again from its start: queued, not started, no progress. */
function markQueued(job: BacktestJob): void {
  job.status = 'queued';
  job.startedAt = null;
  job.progress = { done: 0, total: 0, fraction: 0 };
}

export class BacktestJobs {
  private readonly jobs = new Map<string, BacktestJob>();
  private readonly rulesets = new Map<string, [Ruleset, Ruleset]>();
  private readonly queue: string[] = [];
  private running: { id: string; abort: AbortController; done: Promise<void> } | undefined;
  private closed = false;

  /** Jobs found queued or running at this start, waiting for resume() to compose their rulesets (oldest first). */
  private readonly toResume: string[] = [];

  private readonly keep: number;
  /** Jobs ended by this process (retention ranks them newest). */
  private readonly endedHere = new Set<string>();
  private readonly onRemoved?: (ids: string[]) => void;

  constructor(private readonly dir: string, private readonly historyDir: string, private readonly threads: number, options: JobsOptions = {}) {
    const keep = options.keep ?? 0;
    if (!Number.isInteger(keep) || keep < 0) throw errors.SEL_ERR_OPTION_INVALID('keep must be an integer >= 0', { field: 'backtestKeep', expected: 'an integer >= 0 (0: keep every finished job)', got: keep });
    this.keep = keep;
    this.onRemoved = options.onRemoved;
    makeDirs(dir, 0o700);
    const found: BacktestJob[] = [];
    const names = readdirSync(dir);
    for (const f of names) {
      if (!f.endsWith('.json') || f.endsWith(REPORT_SUFFIX) || f.endsWith(INPUT_SUFFIX)) continue;
      try {
        const job = JSON.parse(readFileSync(join(dir, f), 'utf8')) as BacktestJob;
        // a job's own fields, as every reader of the list takes them (a file without them is not a job of ours)
        if (typeof job !== 'object' || job === null || typeof job.id !== 'string' || !ID.test(job.id) || typeof job.createdAt !== 'string' || typeof job.status !== 'string') continue;
        if (job.finishedAt !== null && job.finishedAt !== undefined && typeof job.finishedAt !== 'string') continue;
        if (job.status === 'queued' || job.status === 'running') found.push(job);
        else if (job.result) this.persist(job); // a job file of before 2026-12-07, its report inline: split once
        job.result = null;
        this.jobs.set(job.id, job);
      } catch {
        // a file that is not a job (or a torn temporary): not ours to read
      }
    }
    // cut short by the last stop or crash: queued again, in the order they were accepted
    for (const job of found.sort((a, b) => a.createdAt.localeCompare(b.createdAt))) {
      // a clean stop writes its running job back as queued: found running, the service died under it
      const cutRuns = (job.cutRuns ?? 0) + (job.status === 'running' ? 1 : 0);
      job.cutRuns = cutRuns;
      if (!existsSync(this.inputPath(job.id))) this.end(job, 'interrupted', null, NO_INPUT);
      else if (cutRuns >= MAX_CUT_RUNS) { this.end(job, 'interrupted', null, CUT_TOO_OFTEN); rmSync(this.inputPath(job.id), { force: true }); }
      else {
        markQueued(job);
        this.persist(job);
        this.toResume.push(job.id);
      }
    }
    // profile sets no job waits for: a job file never written (a crash between submit()'s two writes), or a job
    // that ended meanwhile (a backup's copy taken between the two files)
    const waiting = new Set(this.toResume);
    for (const f of names) if (f.endsWith(INPUT_SUFFIX) && !waiting.has(f.slice(0, -INPUT_SUFFIX.length))) rmSync(join(dir, f), { force: true });
    this.retain();
  }

  /** Removes the oldest finished jobs beyond `keep` (none with keep 0); returns their ids. */
  private retain(): string[] {
    if (this.keep === 0) return [];
    // the jobs this process ended come first whatever their dates say: a job file dated ahead of this clock (a
    // clock set back, files restored from another host) would otherwise rank the one that just ended oldest
    const endedHere = (j: BacktestJob) => (this.endedHere.has(j.id) ? 1 : 0);
    const when = (j: BacktestJob) => (typeof j.finishedAt === 'string' ? j.finishedAt : j.createdAt);
    const finished = [...this.jobs.values()].filter((j) => j.status !== 'queued' && j.status !== 'running')
      .sort((a, b) => endedHere(b) - endedHere(a) || when(b).localeCompare(when(a)) || b.createdAt.localeCompare(a.createdAt));
    const gone = finished.slice(this.keep).map((j) => j.id);
    for (const id of gone) this.forget(id);
    if (gone.length > 0) this.onRemoved?.(gone);
    return gone;
  }

  /** A finished job's files, and the job. */
  private forget(id: string): void {
    rmSync(join(this.dir, `${id}.json`), { force: true });
    rmSync(join(this.dir, `${id}${REPORT_SUFFIX}`), { force: true });
    rmSync(this.inputPath(id), { force: true });
    this.jobs.delete(id);
    this.endedHere.delete(id);
  }

  /**
   * Queues again the jobs a stop or a crash cut short (found at this start),
   * their profile sets composed by `compose` (RulesetSource.composeWith: the
   * peers, watch lists and model of now). A set that no longer composes
   * fails its job with that error. Call once the rulesets can be composed.
   */
  resume(compose: (profiles: unknown) => Ruleset): void {
    for (const id of this.toResume.splice(0)) {
      const job = this.jobs.get(id);
      if (!job || job.status !== 'queued') continue; // deleted meanwhile
      // a crash while the sets are composed counts as a cut run too (the file says queued then): counted on disk
      // first, taken back once they are composed, so that a job whose composing kills the service stops at MAX_CUT_RUNS
      const cutRuns = job.cutRuns ?? 0;
      job.cutRuns = cutRuns + 1;
      try { this.persist(job); } catch { /* not counted if the service dies now; composing is tried all the same */ }
      try {
        const input = JSON.parse(readFileSync(this.inputPath(id), 'utf8')) as Partial<JobInput> | null;
        // both sets, or nothing: compose() of nothing would be the active set, a report of another back-test
        if (typeof input !== 'object' || input === null || !input.candidate || !input.baseline) throw new Error(`${this.inputPath(id)} does not hold both profile sets`);
        this.rulesets.set(id, [compose(input.candidate), compose(input.baseline)]);
        job.cutRuns = cutRuns;
        job.resumed = (job.resumed ?? 0) + 1;
        try { this.persist(job); } catch { /* counted in memory; the file says queued all the same */ }
        this.queue.push(id);
      } catch (e) {
        job.cutRuns = cutRuns;
        if (isSelectivityError(e)) this.end(job, 'failed', null, { code: e.code, message: `resumed after a restart: ${e.message}`, details: e.details });
        else this.end(job, 'failed', null, { code: 'SEL_ERR_INTERNAL', message: `resumed after a restart, its profile sets could not be read: ${(e as Error).message}` });
      }
    }
    this.pump();
  }

  /** Jobs waiting for resume(). */
  get resumable(): number { return this.toResume.length; }

  private inputPath(id: string): string { return join(this.dir, `${id}${INPUT_SUFFIX}`); }

  /** Accepts a job; it runs when the jobs before it are done. */
  submit(candidate: Ruleset, baseline: Ruleset, request: Omit<JobRequest, 'profiles'>): BacktestJob {
    if (this.closed) throw errors.SEL_ERR_NOT_READY('the service is shutting down', { field: 'backtest' });
    if (this.queue.length >= MAX_QUEUED_JOBS) throw errors.SEL_ERR_OVERLOADED(`${this.queue.length} back-tests are waiting`, { field: 'backtest', expected: `at most ${MAX_QUEUED_JOBS} waiting`, got: this.queue.length, retryAfterSeconds: 60 });
    const id = `bt-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const job: BacktestJob = {
      id, status: 'queued', createdAt: new Date().toISOString(), startedAt: null, finishedAt: null,
      request: { ...request, profiles: [candidate.profiles.length, baseline.profiles.length] },
      progress: { done: 0, total: 0, fraction: 0 }, error: null, result: null,
    };
    // durable before it is acknowledged: the profile sets first (what a restart queues again), then the job
    writeFileDurable(this.inputPath(id), JSON.stringify({ candidate: candidate.profiles, baseline: baseline.profiles } satisfies JobInput), OWNER_ONLY);
    try {
      this.persist(job);
    } catch (e) {
      rmSync(this.inputPath(id), { force: true });
      throw e;
    }
    this.jobs.set(id, job);
    this.rulesets.set(id, [candidate, baseline]);
    this.queue.push(id);
    this.pump();
    return job;
  }

  /** A job, with its report when it is done (read from its file). */
  get(id: string): BacktestJob {
    const job = this.job(id);
    return job.status === 'done' ? { ...job, result: this.report(id) } : job;
  }

  private job(id: string): BacktestJob {
    const job = this.jobs.get(id);
    if (!job) throw errors.SEL_ERR_BACKTEST_NOT_FOUND(`no back-test ${id}`, { field: 'id', expected: 'an id from POST /v1/backtests or GET /v1/backtests', got: id });
    return job;
  }

  /** A done job's report (null for any other, or when its file is gone). */
  report(id: string): BacktestReport | null {
    if (this.job(id).status !== 'done') return null;
    try {
      return JSON.parse(readFileSync(join(this.dir, `${id}${REPORT_SUFFIX}`), 'utf8')) as BacktestReport;
    } catch {
      return null;
    }
  }

  list(): Omit<BacktestJob, 'result'>[] {
    return [...this.jobs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).map(({ result: _r, ...rest }) => rest);
  }

  /** Cancels a queued or running job; removes a finished one. */
  async remove(id: string): Promise<{ id: string; status: JobStatus | 'deleted' }> {
    const job = this.job(id);
    if (job.status === 'queued') {
      const at = this.queue.indexOf(id);
      if (at >= 0) this.queue.splice(at, 1);
      const waiting = this.toResume.indexOf(id);
      if (waiting >= 0) this.toResume.splice(waiting, 1);
      this.rulesets.delete(id);
      this.end(job, 'cancelled');
      return { id, status: job.status };
    }
    if (job.status === 'running' && this.running?.id === id) {
      this.running.abort.abort();
      await this.running.done;
      return { id, status: job.status };
    }
    this.forget(id);
    return { id, status: 'deleted' };
  }

  private end(job: BacktestJob, status: JobStatus, result: BacktestReport | null = null, error: BacktestJob['error'] = null): void {
    job.status = status;
    job.finishedAt = new Date().toISOString();
    job.result = result;
    job.error = error;
    try {
      this.persist(job);
    } catch (e) {
      job.status = 'failed';
      job.error = { code: 'SEL_ERR_STORAGE', message: (e as Error).message };
    }
    job.result = null; // on disk, read when asked for
    // ended for good: its profile sets are not needed again (an interrupted job of an earlier version has none)
    if (status !== 'interrupted') rmSync(this.inputPath(job.id), { force: true });
    this.endedHere.add(job.id);
    this.retain();
  }

  /** A job a stop cuts short, written back as queued: the next start runs it again (a stop is not a crash: cutRuns stays). */
  private requeueOnDisk(job: BacktestJob): void {
    markQueued(job);
    try { this.persist(job); } catch { /* the file says queued or running: the next start queues it again all the same */ }
  }

  /** The job's file; its report first, in a file of its own (so a job file that says done has its report). */
  private persist(job: BacktestJob): void {
    if (job.result) writeFileDurable(join(this.dir, `${job.id}${REPORT_SUFFIX}`), JSON.stringify(job.result), OWNER_ONLY);
    writeFileDurable(join(this.dir, `${job.id}.json`), JSON.stringify({ ...job, result: null }), OWNER_ONLY);
  }

  private pump(): void {
    if (this.running || this.closed) return;
    const id = this.queue.shift();
    if (id === undefined) return;
    const job = this.jobs.get(id)!;
    const [candidate, baseline] = this.rulesets.get(id)!;
    this.rulesets.delete(id);
    const abort = new AbortController();
    job.status = 'running';
    job.startedAt = new Date().toISOString();
    // the running state on disk too: a job a crash cuts keeps when it started (its file said queued)
    try { this.persist(job); } catch { /* the queued record stays; a restart marks it interrupted all the same */ }
    const done = (async () => {
      try {
        const report = await runBacktest(this.historyDir, {
          candidate, baseline, names: job.request.names, from: job.request.from, to: job.request.to,
          capacity: job.request.capacity, tooMuch: job.request.tooMuch, threads: this.threads, signal: abort.signal,
          onProgress: (d, t) => { job.progress = { done: d, total: t, fraction: t > 0 ? d / t : 0 }; },
        });
        this.end(job, 'done', report);
      } catch (e) {
        if (abort.signal.aborted && this.closed) this.requeueOnDisk(job);
        else if (abort.signal.aborted) this.end(job, 'cancelled');
        else if (isSelectivityError(e)) this.end(job, 'failed', null, { code: e.code, message: e.message, details: e.details });
        else this.end(job, 'failed', null, { code: 'SEL_ERR_INTERNAL', message: (e as Error).message });
      } finally {
        this.running = undefined;
        this.pump();
      }
    })();
    this.running = { id, abort, done };
  }

  /** Stops: the running job is cut short; it and the queued ones stay queued on disk, and the next start runs them (resume()). */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.splice(0);
    if (this.running) {
      this.running.abort.abort();
      await this.running.done;
    }
  }

}
