/**
 * What an operator relies on: readiness on the store's account
 * (src/service/readiness.ts: the check of the store at start, and a
 * decision log whose commits fail), the gauges of /metrics beside the
 * scoring figures, and a partly restored data directory refused. A service that
 * says ready gets traffic; with a store that refuses its decisions it would
 * fail every scoring request it got, so it must say not ready instead.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { errors } from '../src/errors.js';
import type { DecisionLog } from '../src/feedback/decision-log.js';
import { startService, type ServiceConfig } from '../src/service/service.js';
import { prepareDataDir } from '../src/service/state.js';
import { STORE_FAULT_HOLD_MS, storeNotReady, type StoreCheckState } from '../src/service/readiness.js';
import { checkStore, checkStoreInBackground } from '../src/store/check.js';
import { SCHEMA_VERSION, STORE_FILE } from '../src/store/sqlite.js';
import { packageVersion } from '../src/paths.js';
import { settingsLine } from '../src/cli/serve.js';
import { call, damageIdIndex, declarations, TOKENS, tokensEnv } from './service-helpers.js';
import { request as httpRequest } from 'node:http';
import { datedDeclarations, randomProfiles } from './helpers.js';
import { historyDir, HistoryWriter } from '../src/history/store.js';
import { toBatch } from '../src/model/columnar.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-ready-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const start = (dataDir: string, extra: Partial<ServiceConfig> = {}) =>
  startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, metricsIntervalMs: 60_000, ...extra });

/** A data directory seeded by a first start, with a history store of `rows` labelled declarations (the back-tests' input). */
async function seededWithHistory(d: string, rows: number, seed: number): Promise<void> {
  await (await start(d, { backtestThreads: 0 })).close();
  const w = new HistoryWriter(historyDir(d), { batchRows: 500 });
  const decls = datedDeclarations(rows, seed);
  const { batch, ids } = toBatch(decls);
  w.add(batch, ids, Int8Array.from(decls, (_, i) => (i % 7 === 0 ? 1 : 0)), Float64Array.from(decls, (x) => x.customsValue / 10));
  w.commit();
}

const score = (base: string, prefix: string) =>
  call(base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: declarations(5, 7, prefix) }) });

describe('the store check at start', () => {
  it('keeps a service on a damaged store not ready, where it used to say ready and fail every scoring request', async () => {
    const d = join(dir, 'damaged');
    let s = await start(d);
    expect((await score(s.url, 'A')).status).toBe(200);
    await s.close();
    damageIdIndex(join(d, STORE_FILE));
    expect(checkStore(join(d, STORE_FILE)).ok).toBe(false);

    s = await start(d);
    try {
      const r = await call(s.url, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.json().error).toMatchObject({ code: 'SEL_ERR_NOT_READY', details: { field: 'store', expected: 'a store that passes PRAGMA quick_check' } });
      const problems = r.json().error.details.got as string[];
      expect(problems.length).toBeGreaterThan(0);
      expect(problems.every((p) => typeof p === 'string' && p !== 'ok')).toBe(true);
      // what readiness stands for: the store refuses the decisions
      const scored = await score(s.url, 'B');
      expect(scored.status).toBe(500);
      expect(scored.json().error.code).toBe('SEL_ERR_STORAGE');
      const metrics = (await call(s.url, 'GET', '/metrics')).body.toString('utf8');
      expect(metrics).toMatch(/^selectivity_store_ready 0$/m);
      expect(metrics).toMatch(/^selectivity_decision_log_failed_commits_total 1$/m);
      expect(metrics).toMatch(/^# TYPE selectivity_decision_log_failed_commits_total counter$/m);
    } finally {
      await s.close();
    }

    // --store-check off: the operator's choice, the old behaviour (ready until a commit fails)
    s = await start(d, { storeCheck: 'off' });
    try {
      expect((await call(s.url, 'GET', '/readyz')).status).toBe(200);
      expect((await score(s.url, 'C')).status).toBe(500);
      const r = await call(s.url, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.json().error.details).toMatchObject({ field: 'decisionLog', expected: 'decision-log commits that succeed' });
    } finally {
      await s.close();
    }
  }, 60_000);

  it('passes a sound store, in its own process and on this thread', async () => {
    const d = join(dir, 'sound');
    const s = await start(d);
    try {
      expect((await score(s.url, 'S')).status).toBe(200);
      const r = await call(s.url, 'GET', '/readyz');
      expect(r.status).toBe(200);
      expect((await call(s.url, 'GET', '/metrics')).body.toString('utf8')).toMatch(/^selectivity_store_ready 1$/m);
      const threaded = await checkStoreInBackground(join(d, STORE_FILE)).result;
      expect(threaded).toMatchObject({ ok: true, problems: [] });
      expect(checkStore(join(d, STORE_FILE))).toMatchObject({ ok: true, problems: [] });
    } finally {
      await s.close();
    }
  }, 60_000);

  it('names a store it cannot read as the problem, without throwing: a file that is not a store is damaged, a missing one could not be checked', () => {
    const missing = checkStore(join(dir, 'nowhere', STORE_FILE));
    expect(missing).toMatchObject({ ok: false, ran: false });
    expect(missing.problems[0]).toMatch(/^the check could not read the store: /);
    const garbage = join(dir, 'garbage.db');
    writeFileSync(garbage, Buffer.alloc(8192, 0x5a));
    expect(checkStore(garbage)).toMatchObject({ ok: false, ran: true, problems: [expect.stringMatching(/SQLITE_NOTADB/)] });
  });

  it('is ended at once by stop(), which says nothing of the store (not "damaged")', async () => {
    const d = join(dir, 'sound'); // made by the test above
    const check = checkStoreInBackground(join(d, STORE_FILE));
    check.stop(); // before its process could have started
    expect(await check.result).toBeUndefined();
  });
});

describe('the operator\'s gauges', () => {
  it('reports the build, memory, event-loop delay, store files, free disk and back-tests in /metrics', async () => {
    const d = join(dir, 'gauges');
    const before = Date.now() / 1000;
    const s = await start(d, { metricsIntervalMs: 200 });
    try {
      expect((await score(s.url, 'G')).status).toBe(200);
      // the event-loop delay is reported once an interval has finished: read until it is (intervals of 200 ms)
      let text = '';
      for (let k = 0; k < 50; k++) {
        text = (await call(s.url, 'GET', '/metrics')).body.toString('utf8');
        if (/^selectivity_event_loop_delay_p99_seconds [0-9]/m.test(text)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const value = (sample: string) => {
        const m = new RegExp(`^${sample.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
        expect(m, sample).not.toBeNull();
        return Number(m![1]);
      };
      expect(value(`selectivity_build_info{node="${process.version}",schema="${SCHEMA_VERSION}",version="${packageVersion()}"}`)).toBe(1); // labels in name order
      expect(value('selectivity_process_resident_memory_bytes')).toBeGreaterThan(value('selectivity_main_heap_used_bytes'));
      expect(value('selectivity_main_heap_used_bytes')).toBeGreaterThan(1e6);
      const p99 = value('selectivity_event_loop_delay_p99_seconds');
      expect(p99).toBeGreaterThan(0);
      expect(value('selectivity_event_loop_delay_max_seconds')).toBeGreaterThanOrEqual(p99);
      expect(value('selectivity_store_file_bytes{file="db"}')).toBe(statSync(join(d, STORE_FILE)).size);
      expect(value('selectivity_store_file_bytes{file="wal"}')).toBeGreaterThan(0); // the decision just logged
      // another program may write to the disk meanwhile: between nothing and the file system's size
      const free = value('selectivity_data_dir_free_bytes');
      const fs = statfsSync(d);
      expect(free).toBeGreaterThan(0);
      expect(free).toBeLessThanOrEqual(fs.blocks * fs.bsize);
      expect(value('selectivity_backtests{status="queued"}')).toBe(0);
      expect(value('selectivity_backtests{status="running"}')).toBe(0);
      expect(value('selectivity_decision_log_backlog_bytes')).toBe(0);
      // every error code's series from the start, at 0 until it happens: an alert on its increase works at once
      for (const code of Object.keys(errors)) expect(value(`selectivity_errors_total{code="${code}"}`), code).toBe(0);
      // when the ruleset in use was swapped in, and the model's training (none here)
      const installed = value('selectivity_ruleset_installed_timestamp_seconds');
      expect(installed).toBeGreaterThanOrEqual(before);
      expect(installed).toBeLessThanOrEqual(Date.now() / 1000);
      expect(text).toMatch(/^selectivity_model_trained_timestamp_seconds NaN$/m);
      await new Promise((r) => setTimeout(r, 20));
      expect((await call(s.url, 'POST', '/v1/ruleset/reload', { role: 'admin' })).status).toBe(200);
      const after = (await call(s.url, 'GET', '/metrics')).body.toString('utf8');
      expect(Number(/^selectivity_ruleset_installed_timestamp_seconds (\S+)$/m.exec(after)![1])).toBeGreaterThan(installed);
      expect(text).toMatch(/^# TYPE selectivity_store_file_bytes gauge$/m);
      expect(text.match(/^# HELP selectivity_store_file_bytes /gm)).toHaveLength(1);
    } finally {
      await s.close();
    }
  }, 60_000);
});

describe('back-tests at a stop that waits for requests in flight', () => {
  it('writes the running job back as queued at once, not after the grace period (a SIGKILL then would count it a crash)', async () => {
    const d = join(dir, 'backtests-grace');
    await seededWithHistory(d, 40_000, 6); // a job of about half a second here: one runs when the stop comes
    const s = await start(d, { backtestThreads: 0, shutdownGraceMs: 20_000 });
    const answers = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((k) => call(s.url, 'POST', '/v1/backtests', { type: 'application/json', body: JSON.stringify({ profiles: randomProfiles(6, 60 + k) }) })));
    const jobIds = answers.map((r) => r.json().id as string);
    // a stream in flight, its body never finished: the stop waits for it (the grace period)
    const stream = httpRequest(`${s.url}/v1/score/stream`, { method: 'POST', headers: { authorization: `Bearer ${TOKENS.port}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } });
    stream.on('error', () => { /* cut at the end */ });
    stream.on('response', (res) => res.resume());
    stream.write(`${JSON.stringify(declarations(1, 9, 'G')[0])}\n`);
    await new Promise((r) => setTimeout(r, 300)); // the stream is in the service's hands
    let closed = false;
    const closing = s.close().then(() => { closed = true; });
    const statuses = () => jobIds.map((id) => JSON.parse(readFileSync(join(d, 'backtests', `${id}.json`), 'utf8')).status as string);
    try {
      for (let i = 0; i < 80 && statuses().includes('running'); i++) await new Promise((r) => setTimeout(r, 25));
      expect(statuses()).not.toContain('running');
      expect(statuses().filter((x) => x !== 'done' && x !== 'queued')).toEqual([]);
      expect(statuses()).toContain('queued');
      expect(closed).toBe(false); // still waiting for the stream
    } finally {
      stream.end();
      await closing;
    }
  }, 60_000);
});

describe('a start stopped before it listens', () => {
  it('finishes the start but never opens its port (it used to listen for the moment of the stop)', async () => {
    const d = join(dir, 'stopped-start');
    const s = await start(d, { signal: AbortSignal.abort() });
    try {
      expect(s.listening).toBe(false);
      expect(s.app.server.listening).toBe(false);
    } finally {
      await s.close();
    }
    // the start was whole: the next one finds the directory seeded and free, and listens
    const again = await start(d, { maxBatch: 500, shutdownGraceMs: 5000 });
    try {
      expect(again.listening).toBe(true);
      // the settings in effect, defaults resolved: what the banner prints
      const backtestThreads = Math.max(1, Math.floor(availableParallelism() / 2));
      expect(again.settings).toEqual({ threads: 1, maxQueue: 4, bodyLimit: 64 * 2 ** 20, inlineMaxBytes: 16 * 1024, maxBatch: 500, idleTimeoutMs: 120_000, shutdownGraceMs: 5000, backtestThreads, backtestKeep: 0, retrainAfter: 1000, storeCheck: 'quick' });
      expect(settingsLine(again.settings, 'info')).toBe(`settings: max queue 4, scored inline up to 16 KiB, body limit 64 MiB, max batch 500, idle timeout 120 s, shutdown grace 5 s, store check quick, log level info, back-test threads ${backtestThreads}, back-tests kept all, retrain after 1,000 results`);
      expect(settingsLine({ ...again.settings, inlineMaxBytes: 0, idleTimeoutMs: 0, retrainAfter: 0, bodyLimit: 1536 * 1024, backtestKeep: 50 }, 'warn')).toMatch(/^settings: max queue 4, inline scoring off \(every body to the pool\), body limit 1\.5 MiB, .*idle timeout none, .*log level warn, .*back-tests kept 50, retrain after never by itself$/);
      // sizes no unit gives exactly are in bytes; without workers there is no queue nor inline threshold
      expect(settingsLine({ ...again.settings, threads: 0, bodyLimit: 1_000_000 }, 'info')).toMatch(/^settings: no pool \(every body scored on the main thread\), body limit 1,000,000 bytes, /);
      expect(again.seeded).toEqual([]);
      expect((await score(again.url, 'S')).status).toBe(200);
    } finally {
      await again.close();
    }
  }, 60_000);
});

describe('back-tests across a restart', () => {
  it('runs again, at the next start, the jobs a stop cut short: accepted (202) is never lost', async () => {
    const d = join(dir, 'backtests');
    await seededWithHistory(d, 20_000, 5);
    let s = await start(d, { backtestThreads: 0 });
    let accepted: string[] = [];
    try {
      // sent together: one runs, the others wait behind it (one at a time, each over 20,000 declarations), and
      // the stop comes as soon as all are acknowledged
      const answers = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => call(s.url, 'POST', '/v1/backtests', { type: 'application/json', body: JSON.stringify({ profiles: randomProfiles(6, 50 + k), name: `set ${k}` }) })));
      for (const r of answers) expect(r.status, r.body.toString()).toBe(202);
      accepted = answers.map((r) => r.json().id as string);
    } finally {
      await s.close();
    }
    const onDisk = accepted.map((id) => JSON.parse(readFileSync(join(d, 'backtests', `${id}.json`), 'utf8')).status as string);
    expect(onDisk.filter((x) => x !== 'done' && x !== 'queued')).toEqual([]); // none interrupted, none left running
    const cut = accepted.filter((_, k) => onDisk[k] === 'queued');
    expect(cut.length).toBeGreaterThan(0);
    s = await start(d, { backtestThreads: 0 });
    try {
      for (const id of accepted) {
        let job = (await call(s.url, 'GET', `/v1/backtests/${id}`)).json();
        for (let i = 0; i < 400 && (job.status === 'queued' || job.status === 'running'); i++) {
          await new Promise((r) => setTimeout(r, 25));
          job = (await call(s.url, 'GET', `/v1/backtests/${id}`)).json();
        }
        expect(job.status, id).toBe('done');
        expect(job.result.store.declarations).toBe(20_000);
        expect(job.resumed ?? 0).toBe(cut.includes(id) ? 1 : 0);
      }
    } finally {
      await s.close();
    }
    // the data directory's files are owner-only, whatever the umask: the store, the peers, the jobs and their reports, the history
    const modes: Record<string, number> = {};
    const walk = (at: string, rel: string) => {
      for (const e of readdirSync(at, { withFileTypes: true })) {
        if (e.isDirectory()) { modes[`${rel}${e.name}/`] = statSync(join(at, e.name)).mode & 0o777; walk(join(at, e.name), `${rel}${e.name}/`); } else modes[`${rel}${e.name}`] = statSync(join(at, e.name)).mode & 0o777;
      }
    };
    walk(d, '');
    expect(Object.keys(modes)).toEqual(expect.arrayContaining(['peers.json', 'selectivity.db', 'backtests/', `backtests/${accepted[0]}.report.json`, 'history/', 'history/manifest.json']));
    expect(Object.entries(modes).filter(([, m]) => (m & 0o077) !== 0)).toEqual([]);
  }, 60_000);
});

describe('a partly restored data directory', () => {
  it('is refused when peers.json is gone from a directory whose store has served, instead of scoring with the example peers', async () => {
    const d = join(dir, 'partial');
    const first = await start(d);
    const version = (await call(first.url, 'GET', '/readyz')).json().rulesetVersion as string;
    await first.close();
    const peers = join(d, 'peers.json');
    const kept = readFileSync(peers);
    rmSync(peers);
    await expect(start(d)).rejects.toMatchObject({ code: 'SEL_ERR_FILE_NOT_FOUND', details: { field: 'peers', got: 'no such file' } });
    expect(existsSync(peers)).toBe(false); // nothing seeded in its place
    // naming a snapshot is the way on; restoring the file, the same ruleset as before
    writeFileSync(peers, kept);
    const again = await start(d);
    try {
      expect((await call(again.url, 'GET', '/readyz')).json().rulesetVersion).toBe(version);
    } finally {
      await again.close();
    }
  }, 60_000);

  it('still seeds a directory whose first start was cut short before its peer tables were written', async () => {
    const d = join(dir, 'cut-short');
    await prepareDataDir(d); // the store and its profiles, as a first start makes them before it serves
    rmSync(join(d, 'peers.json'));
    const s = await start(d);
    try {
      expect(s.seeded).toContain(join(d, 'peers.json'));
      expect((await call(s.url, 'GET', '/readyz')).status).toBe(200);
    } finally {
      await s.close();
    }
  }, 60_000);
});

describe('a decision log whose commits fail', () => {
  it('makes the service not ready until a commit succeeds again (the write lock held past the busy timeout)', async () => {
    const d = join(dir, 'busy');
    const s = await start(d);
    const other = new Database(join(d, STORE_FILE));
    try {
      expect((await call(s.url, 'GET', '/readyz')).status).toBe(200);
      other.exec('BEGIN IMMEDIATE'); // what a stuck tool would do: the log's commit waits 5 s, then fails
      const refused = await score(s.url, 'L');
      expect(refused.status).toBe(500);
      expect(refused.json().error).toMatchObject({ code: 'SEL_ERR_STORAGE', message: expect.stringMatching(/database is locked/) });
      const r = await call(s.url, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.json().error.details).toMatchObject({ field: 'decisionLog' });
      expect(r.json().error.message).toMatch(/the last decision-log commit failed/);
      other.exec('ROLLBACK');
      expect((await score(s.url, 'M')).status).toBe(200);
      expect((await call(s.url, 'GET', '/readyz')).status).toBe(200);
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
      await s.close();
    }
  }, 60_000);
});

describe('storeNotReady', () => {
  const failing = (at: number, permanent = false) => ({ fault: { error: errors.SEL_ERR_STORAGE('decision log write failed: database or disk is full', { field: 'decisionLog' }), at, permanent } }) as unknown as DecisionLog;
  const passed: StoreCheckState = { state: 'done', ok: true, ran: true, problems: [], ms: 3 };

  it('is not ready while the check runs, and when it found the store damaged', () => {
    expect(storeNotReady({ state: 'checking', since: 1_000 }, undefined, 3_500)).toMatchObject({ field: 'store', got: 'checking, for 2.5 s' });
    expect(storeNotReady({ state: 'done', ok: false, ran: true, problems: ['Page 7: btreeInitPage() returns error code 11'], ms: 9 }, undefined, 0)).toMatchObject({ field: 'store', got: ['Page 7: btreeInitPage() returns error code 11'], message: expect.stringMatching(/damaged/) });
    // a check that could not run says nothing of the pages: not ready, but not "damaged"
    expect(storeNotReady({ state: 'done', ok: false, ran: false, problems: ['the check could not read the store: SQLITE_BUSY database is locked'], ms: 5000 }, undefined, 0)).toMatchObject({ field: 'store', message: expect.stringMatching(/could not be checked/) });
    expect(storeNotReady(passed, undefined)).toBeUndefined();
    expect(storeNotReady({ state: 'off' }, undefined)).toBeUndefined();
  });

  it('holds a failed commit for STORE_FAULT_HOLD_MS, then lets traffic try the store again; a writer that is gone, for good', () => {
    const at = 50_000;
    expect(storeNotReady(passed, failing(at), at + 1)).toMatchObject({ field: 'decisionLog', got: 'decision log write failed: database or disk is full' });
    expect(storeNotReady(passed, failing(at), at + STORE_FAULT_HOLD_MS - 1)).toBeDefined();
    expect(storeNotReady(passed, failing(at), at + STORE_FAULT_HOLD_MS)).toBeUndefined();
    expect(storeNotReady(passed, failing(at, true), at + 100 * STORE_FAULT_HOLD_MS)).toMatchObject({ field: 'decisionLog', message: expect.stringMatching(/gone/) });
    expect(storeNotReady(passed, { fault: undefined } as unknown as DecisionLog, at)).toBeUndefined();
  });
});
