/**
 * Back-tests over HTTP: a job accepted at once, progress to poll, a report to
 * fetch (JSON, HTML), queued jobs cancelled, jobs that survive a restart
 * (finished, or cut short and run again), roles and named errors.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { toBatch } from '../src/model/columnar.js';
import type { Metrics } from '../src/service/metrics.js';
import type { RulesetSource } from '../src/service/state.js';
import { BacktestJobs } from '../src/backtest/jobs.js';
import { runBacktest } from '../src/backtest/backtest.js';
import { historyDir, HistoryWriter } from '../src/history/store.js';
import { datedDeclarations, randomProfiles } from './helpers.js';
import { inProcessService, type InProcessService, TOKENS, tokensEnv } from './service-helpers.js';

const auth = (role: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[role]}` });
const root = mkdtempSync(join(tmpdir(), 'sel-bt-service-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('back-test routes', () => {
  let app: FastifyInstance;
  let engine: Engine;
  let metrics: Metrics;
  let source: RulesetSource;
  let jobs: BacktestJobs;
  let service: InProcessService;
  const data = join(root, 'data');
  const jobsDir = join(data, 'backtests');
  const candidate = { profiles: randomProfiles(10, 3) };

  beforeAll(async () => {
    jobs = new BacktestJobs(jobsDir, historyDir(data), 0);
    service = await inProcessService(data, { tokens: tokensEnv, server: { backtests: { jobs, historyDir: historyDir(data) } } });
    ({ app, engine, metrics, source } = service);
  });
  afterAll(async () => { await service.close(); await jobs.close(); });

  const post = (body: unknown, role: keyof typeof TOKENS = 'analyst') => app.inject({ method: 'POST', url: '/v1/backtests', headers: { ...auth(role), 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  const waitDone = async (id: string) => {
    for (let i = 0; i < 400; i++) {
      const j = (await app.inject({ url: `/v1/backtests/${id}`, headers: auth('analyst') })).json();
      if (!['queued', 'running'].includes(j.status)) return j;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`back-test ${id} did not finish`);
  };

  it('refuses ports, an empty history and invalid profiles, queueing nothing', async () => {
    const port = await post(candidate, 'port');
    expect(port.statusCode, port.body).toBe(403);
    const empty = await post(candidate);
    expect(empty.statusCode).toBe(400);
    expect(empty.json().error.code).toBe('SEL_ERR_HISTORY_EMPTY');
    const w = new HistoryWriter(historyDir(data), { batchRows: 500 });
    const decls = datedDeclarations(2000, 21);
    const { batch, ids } = toBatch(decls);
    w.add(batch, ids, Int8Array.from(decls, (_, i) => (i % 6 === 0 ? 1 : 0)), Float64Array.from(decls, (d) => d.customsValue / 10));
    w.commit();
    const bad = await post({ profiles: [{ id: 'X', weight: 'heavy', conditions: {} }] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('SEL_ERR_PROFILE_INVALID');
    const extra = await post({ ...candidate, colour: 'red' });
    expect(extra.statusCode).toBe(400);
    expect((await post({ ...candidate, from: '2025-05-01', to: '2025-04-01' })).json().error.code).toBe('SEL_ERR_OPTION_INVALID');
    // a range outside the store names the bound given (it named from for a to)
    expect((await post({ ...candidate, to: '2020-01-01' })).json().error).toMatchObject({ code: 'SEL_ERR_HISTORY_EMPTY', details: { field: 'to' } });
    // a capacity object's fault is named where it is (it read "capacity: must be integer", the first branch's)
    for (const [capacity, field] of [[{ byOffice: { OF01: 1 } }, 'capacity.perOfficeDay'], [{ perOfficeDay: 1, byOffice: { OF01: -1 } }, 'capacity.byOffice.OF01'], [{ perOfficeDay: 1, extra: 1 }, 'capacity.extra']] as const) {
      const r = await post({ ...candidate, capacity });
      expect(r.statusCode).toBe(400);
      expect(r.json().error, field).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field } });
    }
    expect((await post({ ...candidate, capacity: -1 })).json().error).toMatchObject({ details: { field: 'capacity' } });
    // "against": null is no set (it read as "active")
    const nullAgainst = await post({ ...candidate, against: null });
    expect(nullAgainst.statusCode).toBe(400);
    expect(nullAgainst.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'against' } });
    expect((await app.inject({ url: '/v1/backtests', headers: auth('analyst') })).json().jobs).toEqual([]);
  });

  it('runs a job in the background and serves its report, as runBacktest computes it', async () => {
    const r = await post({ ...candidate, name: 'new set', capacity: { perOfficeDay: 4, byOffice: { OF1: 2 } } });
    expect(r.statusCode, r.body).toBe(202);
    const job = r.json();
    expect(job.id).toMatch(/^bt-/);
    expect(r.headers.location).toBe(`/v1/backtests/${job.id}`);
    expect(['queued', 'running']).toContain(job.status);
    expect(JSON.parse(readFileSync(join(jobsDir, `${job.id}.json`), 'utf8')).id).toBe(job.id); // durable before the answer
    const done = await waitDone(job.id);
    expect(done.status).toBe('done');
    expect(done.progress.fraction).toBe(1);
    const report = (await app.inject({ url: `/v1/backtests/${job.id}/report`, headers: auth('admin') })).json();
    const direct = await runBacktest(historyDir(data), { candidate: source.composeWith(candidate), baseline: source.rebuild(), threads: 0, capacity: { perOfficeDay: 4, byOffice: { OF1: 2 } } });
    expect(report.sets.map((s: { channels: { declarations: number }[] }) => s.channels.map((c) => c.declarations))).toEqual(direct.sets.map((s) => s.channels.map((c) => c.declarations)));
    expect(report.sets[0].capacity).toEqual(direct.sets[0].capacity);
    expect(report.sets[0].name).toBe('new set');
    expect(report.sets[1].name).toBe('active');
    const html = await app.inject({ url: `/v1/backtests/${job.id}/report`, headers: { ...auth('analyst'), accept: 'text/html' } });
    expect(html.headers['content-type']).toContain('text/html');
    expect(html.body).toContain('<h2>Capacity view');
    const list = (await app.inject({ url: '/v1/backtests', headers: auth('analyst') })).json().jobs;
    expect(list.map((j: { id: string }) => j.id)).toContain(job.id);
    expect(list[0].result).toBeUndefined();
  });

  it('queues jobs one at a time; a queued job has no report yet and can be cancelled', async () => {
    // submitted back to back, the second waits for the first
    const first = jobs.submit(source.composeWith(candidate), source.rebuild(), { names: ['a', 'active'] });
    const second = jobs.submit(source.composeWith(randomProfiles(5, 8)), source.composeWith(randomProfiles(4, 9)), { names: ['b', 'c'] });
    expect(first.status).toBe('running');
    expect(second.status).toBe('queued');
    expect((await app.inject({ url: `/v1/backtests/${second.id}`, headers: auth('analyst') })).json().request.profiles).toEqual([5, 4]);
    const pending = await app.inject({ url: `/v1/backtests/${second.id}/report`, headers: auth('analyst') });
    expect(pending.statusCode).toBe(409);
    expect(pending.json().error).toMatchObject({ code: 'SEL_ERR_BACKTEST_PENDING', details: { got: 'queued' } });
    const del = await app.inject({ method: 'DELETE', url: `/v1/backtests/${second.id}`, headers: auth('analyst') });
    expect(del.json()).toEqual({ id: second.id, status: 'cancelled' });
    expect((await waitDone(first.id)).status).toBe('done');
    expect((await app.inject({ url: `/v1/backtests/${second.id}`, headers: auth('analyst') })).json().status).toBe('cancelled');
    // a cancelled job will never have a report: 410, not "pending" (409 read as: ask again later)
    const never = await app.inject({ url: `/v1/backtests/${second.id}/report`, headers: auth('analyst') });
    expect(never.statusCode).toBe(410);
    expect(never.json().error).toMatchObject({ code: 'SEL_ERR_BACKTEST_NO_REPORT', details: { got: 'cancelled' } });
    const gone = await app.inject({ method: 'DELETE', url: `/v1/backtests/${first.id}`, headers: auth('analyst') });
    expect(gone.json()).toEqual({ id: first.id, status: 'deleted' });
    expect((await app.inject({ url: `/v1/backtests/${first.id}`, headers: auth('analyst') })).json().error.code).toBe('SEL_ERR_BACKTEST_NOT_FOUND');
  });

  it('keeps finished jobs across a restart and marks interrupted a cut job that kept no profile sets (an earlier version\'s)', async () => {
    const done = (await app.inject({ url: '/v1/backtests', headers: auth('analyst') })).json().jobs.find((j: { status: string }) => j.status === 'done');
    expect(done).toBeDefined();
    writeFileSync(join(jobsDir, 'bt-zzz-0123abcd.json'), JSON.stringify({ ...done, id: 'bt-zzz-0123abcd', status: 'running', result: null, finishedAt: null }));
    const again = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      expect(again.get(done.id).status).toBe('done');
      expect(again.get(done.id).result!.store.declarations).toBe(2000);
      const cut = again.get('bt-zzz-0123abcd');
      expect(cut.status).toBe('interrupted');
      expect(JSON.parse(readFileSync(join(jobsDir, 'bt-zzz-0123abcd.json'), 'utf8')).status).toBe('interrupted');
      // a report is a file of its own, read when asked for: the job's file (read at every start) holds none
      expect(JSON.parse(readFileSync(join(jobsDir, `${done.id}.json`), 'utf8')).result).toBeNull();
      expect(JSON.parse(readFileSync(join(jobsDir, `${done.id}.report.json`), 'utf8')).store.declarations).toBe(2000);
    } finally {
      await again.close();
    }
    // a job file of the former kind, its report inline, is split at the next start
    const full = again.get(done.id);
    writeFileSync(join(jobsDir, 'bt-old-0123abcd.json'), JSON.stringify({ ...full, id: 'bt-old-0123abcd' }));
    const third = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      expect(third.get('bt-old-0123abcd').result!.store.declarations).toBe(2000);
      expect(JSON.parse(readFileSync(join(jobsDir, 'bt-old-0123abcd.json'), 'utf8')).result).toBeNull();
      // at most 16 wait behind the running one (1,000 were accepted in 8 s)
      const accepted = [];
      let refused: unknown;
      try { for (let k = 0; k < 40; k++) accepted.push(third.submit(source.rebuild(), source.rebuild(), { names: ['a', 'b'] })); } catch (e) { refused = e; }
      expect(accepted.length).toBe(17);
      expect(refused).toMatchObject({ code: 'SEL_ERR_OVERLOADED', statusCode: 503, details: { field: 'backtest' } });
      await third.remove(accepted[0].id);
      for (const j of accepted.slice(1)) await third.remove(j.id);
    } finally {
      await third.close();
    }
  });

  it('records a job as running when it starts; one a stop cuts short stays queued on disk, and the next start runs it', async () => {
    const jobs = new BacktestJobs(jobsDir, historyDir(data), 0);
    const set = randomProfiles(5, 21);
    const job = jobs.submit(source.composeWith(set), source.rebuild(), { names: ['x', 'active'] });
    const onDisk = () => JSON.parse(readFileSync(join(jobsDir, `${job.id}.json`), 'utf8'));
    const input = join(jobsDir, `${job.id}.input.json`);
    expect(onDisk()).toMatchObject({ status: 'running', startedAt: job.startedAt });
    expect(job.startedAt).not.toBeNull();
    // the profile sets, durable with the job: what a restart runs again
    expect(JSON.parse(readFileSync(input, 'utf8')).candidate).toEqual(source.composeWith(set).profiles);
    await jobs.close(); // as at SIGTERM
    expect(onDisk()).toMatchObject({ status: 'queued', startedAt: null, error: null });
    expect(existsSync(input)).toBe(true);

    const next = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      expect(next.resumable).toBe(1);
      expect(next.get(job.id)).toMatchObject({ status: 'queued', cutRuns: 0 });
      expect(next.get(job.id).resumed).toBeUndefined(); // counted when it is queued again, not when found
      // while its sets are composed, the file counts a cut run (a crash then would leave it counted), taken back after
      const seen: number[] = [];
      next.resume((p) => { seen.push(onDisk().cutRuns); return source.composeWith(p); });
      expect(seen).toEqual([1, 1]);
      expect(onDisk().cutRuns).toBe(0);
      expect(next.get(job.id).resumed).toBe(1);
      let done = next.get(job.id);
      for (let i = 0; i < 400 && (done.status === 'queued' || done.status === 'running'); i++) { await new Promise((r) => setTimeout(r, 25)); done = next.get(job.id); }
      expect(done.status).toBe('done');
      // the same report a job that never stopped gives
      const direct = await runBacktest(historyDir(data), { candidate: source.composeWith(set), baseline: source.rebuild(), threads: 0 });
      expect(done.result!.sets.map((x) => x.channels.map((c) => c.declarations))).toEqual(direct.sets.map((x) => x.channels.map((c) => c.declarations)));
      expect(existsSync(input)).toBe(false); // ended: not needed again
    } finally {
      await next.close();
    }
  });

  it('runs again a job a crash cut short, but not one cut short three times, nor one that kept no profile sets', async () => {
    const jobs = new BacktestJobs(jobsDir, historyDir(data), 0);
    const job = jobs.submit(source.composeWith(randomProfiles(4, 31)), source.rebuild(), { names: ['y', 'active'] });
    await jobs.close();
    const file = join(jobsDir, `${job.id}.json`);
    const asACrashLeavesIt = () => writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), status: 'running', startedAt: new Date().toISOString() }));
    for (const cut of [1, 2]) {
      asACrashLeavesIt();
      const again = new BacktestJobs(jobsDir, historyDir(data), 0);
      expect(again.get(job.id)).toMatchObject({ status: 'queued', cutRuns: cut });
      await again.close(); // not resumed: still queued on disk
    }
    asACrashLeavesIt();
    const third = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      expect(third.resumable).toBe(0);
      expect(third.get(job.id)).toMatchObject({ status: 'interrupted', cutRuns: 3, error: { code: 'SEL_ERR_NOT_READY' } });
      expect(third.get(job.id).error!.message).toContain('3 times');
      expect(existsSync(join(jobsDir, `${job.id}.input.json`))).toBe(false);
      expect(JSON.parse(readFileSync(file, 'utf8')).status).toBe('interrupted');
    } finally {
      await third.close();
    }
    // a set that no longer composes fails its job, with the reason
    const bad = new BacktestJobs(jobsDir, historyDir(data), 0);
    const other = bad.submit(source.composeWith(randomProfiles(3, 41)), source.rebuild(), { names: ['z', 'active'] });
    await bad.close();
    writeFileSync(join(jobsDir, `${other.id}.input.json`), JSON.stringify({ candidate: [{ id: 'X', weight: 'heavy', conditions: {} }], baseline: [] }));
    const fourth = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      fourth.resume((p) => source.composeWith(p));
      expect(fourth.get(other.id)).toMatchObject({ status: 'failed', error: { code: 'SEL_ERR_PROFILE_INVALID' } });
      expect(fourth.get(other.id).error!.message).toMatch(/^resumed after a restart: /);
    } finally {
      await fourth.close();
    }
    // an input file without both sets fails its job: composed, nothing would have been the active set (another back-test's report)
    const fifth = new BacktestJobs(jobsDir, historyDir(data), 0);
    const third2 = fifth.submit(source.composeWith(randomProfiles(3, 43)), source.rebuild(), { names: ['w', 'active'] });
    await fifth.close();
    writeFileSync(join(jobsDir, `${third2.id}.input.json`), JSON.stringify({ candidate: randomProfiles(3, 43) }));
    const sixth = new BacktestJobs(jobsDir, historyDir(data), 0);
    try {
      sixth.resume((p) => source.composeWith(p));
      expect(sixth.get(third2.id)).toMatchObject({ status: 'failed', error: { code: 'SEL_ERR_INTERNAL' } });
      expect(sixth.get(third2.id).error!.message).toContain('does not hold both profile sets');
    } finally {
      await sixth.close();
    }
  });

  it('keeps the n most recently finished jobs with keep: n, removing older ones with their files, at the start and as jobs end', async () => {
    const dir = join(root, 'keep');
    const store = join(root, 'keep-history'); // its own history: the test runs alone too
    const w = new HistoryWriter(store, { batchRows: 500 });
    const decls = datedDeclarations(1500, 23);
    const { batch, ids: declIds } = toBatch(decls);
    w.add(batch, declIds, Int8Array.from(decls, (_, i) => (i % 5 === 0 ? 1 : 0)), Float64Array.from(decls, (d) => d.customsValue / 10));
    w.commit();
    const removed: string[] = [];
    const onRemoved = (gone: string[]) => { removed.push(...gone); };
    const untilEnded = async (jobs: BacktestJobs, id: string) => {
      for (let i = 0; i < 400 && ['queued', 'running'].includes(jobs.get(id).status); i++) await new Promise((r) => setTimeout(r, 10));
      return jobs.get(id);
    };
    const jobs = new BacktestJobs(dir, store, 0, { keep: 2, onRemoved });
    const ids: string[] = [];
    try {
      for (let k = 0; k < 4; k++) {
        const job = jobs.submit(source.composeWith(randomProfiles(3, 90 + k)), source.rebuild(), { names: [`k${k}`, 'active'] });
        expect((await untilEnded(jobs, job.id)).status).toBe('done');
        ids.push(job.id);
      }
      expect(jobs.list().map((j) => j.id).sort()).toEqual(ids.slice(2).sort());
      expect(removed).toEqual(ids.slice(0, 2));
      for (const id of ids.slice(0, 2)) for (const f of [`${id}.json`, `${id}.report.json`, `${id}.input.json`]) expect(existsSync(join(dir, f)), f).toBe(false);
      expect(existsSync(join(dir, `${ids[3]}.report.json`))).toBe(true);
    } finally {
      await jobs.close();
    }
    // keep 0 (the default) removes nothing
    const all = new BacktestJobs(dir, store, 0, { onRemoved });
    await all.close();
    expect(all.list().map((j) => j.id).sort()).toEqual(ids.slice(2).sort());
    // a job waiting to run again is never removed; a lower keep applies at the start
    const waiting = new BacktestJobs(dir, store, 0);
    const queued = waiting.submit(source.composeWith(randomProfiles(3, 99)), source.rebuild(), { names: ['q', 'active'] });
    await waiting.close(); // stopped: queued on disk
    const next = new BacktestJobs(dir, store, 0, { keep: 1, onRemoved });
    try {
      expect(next.list().map((j) => j.id).sort()).toEqual([ids[3], queued.id].sort());
      expect(removed).toEqual(ids.slice(0, 3));
      expect(next.get(queued.id).status).toBe('queued');
      // a job file dated ahead of this clock does not make the job that just ended rank oldest
      const ahead = JSON.parse(readFileSync(join(dir, `${ids[3]}.json`), 'utf8'));
      writeFileSync(join(dir, `${ids[3]}.json`), JSON.stringify({ ...ahead, finishedAt: '2099-01-01T00:00:00.000Z' }));
    } finally {
      await next.close();
    }
    const later = new BacktestJobs(dir, store, 0, { keep: 1, onRemoved });
    try {
      later.resume((p) => source.composeWith(p));
      expect((await untilEnded(later, queued.id)).status).toBe('done');
      expect(later.list().map((j) => j.id)).toEqual([queued.id]); // the one dated 2099 went, not the one that just ended
      expect(removed).toEqual(ids);
    } finally {
      await later.close();
    }
    expect(() => new BacktestJobs(dir, store, 0, { keep: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  });

  it('starts beside a job file it cannot read as a job, and drops profile sets whose job file was never written', async () => {
    // valid ids, no createdAt: the start threw on them ("reading 'localeCompare'")
    writeFileSync(join(jobsDir, 'bt-nocreated-0123abcd.json'), JSON.stringify({ id: 'bt-nocreated-0123abcd', status: 'queued' }));
    writeFileSync(join(jobsDir, 'bt-nocreated-4567abcd.json'), JSON.stringify({ id: 'bt-nocreated-4567abcd', status: 'running' }));
    // a finishedAt that is not a date: the start threw on it with a retention set ("localeCompare is not a function")
    writeFileSync(join(jobsDir, 'bt-badfinish-0123abcd.json'), JSON.stringify({ id: 'bt-badfinish-0123abcd', status: 'done', createdAt: '2026-01-01T00:00:00.000Z', finishedAt: 5 }));
    // a crash between submit()'s two writes: the sets, and no job
    const orphan = join(jobsDir, 'bt-orphan-89abcdef.input.json');
    writeFileSync(orphan, JSON.stringify({ candidate: [], baseline: [] }));
    const jobs = new BacktestJobs(jobsDir, historyDir(data), 0, { keep: 100 });
    try {
      expect(jobs.list().map((j) => j.id)).not.toContain('bt-nocreated-0123abcd');
      expect(jobs.list().map((j) => j.id)).not.toContain('bt-badfinish-0123abcd');
      expect(existsSync(orphan)).toBe(false);
    } finally {
      await jobs.close();
      rmSync(join(jobsDir, 'bt-nocreated-0123abcd.json'));
      rmSync(join(jobsDir, 'bt-nocreated-4567abcd.json'));
      rmSync(join(jobsDir, 'bt-badfinish-0123abcd.json'));
    }
  });
});
