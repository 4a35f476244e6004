/**
 * Feedback: examination results joined to the logged decisions, validated
 * per item, idempotent, durable, and read by profile effectiveness. Through a
 * real listener with a worker pool (decisions logged by the writer thread).
 * Workers run from dist/: `npm run build:ts` first.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type RunningService } from '../src/service/service.js';
import { createEngine, type Engine } from '../src/engine.js';
import { prepareDataDir, RulesetSource } from '../src/service/state.js';
import { isStoreBusy, openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import { profileStats } from '../src/profiles/effectiveness.js';
import { DecisionLog } from '../src/feedback/decision-log.js';
import { encodeLogRows } from '../src/feedback/log-rows.js';
import { examinationResult, FeedbackStore, resultsAfter, validateFeedback } from '../src/feedback/feedback.js';
import type { Declaration } from '../src/model/schema.js';
import type { Decision } from '../src/decisions.js';
import { runCli } from './helpers.js';
import { STRENGTH_GRID } from '../src/learn/train.js';
import { MAX_REPORT_PERIODS, targetingReport, targetingReportPaced, wilsonInterval } from '../src/feedback/report.js';
import { pruneDecisionLog } from '../src/feedback/prune.js';
import { CHANNELS } from '../src/model/channels.js';
import { call, declarations, inProcessService, logRows, MEAT, TOKENS, tokensEnv, type InProcessService } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-feedback-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('feedback (service over loopback, worker pool)', () => {
  const dataDir = join(dir, 'live');
  let service: RunningService;
  let base: string;
  const start = async () => {
    service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 2, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
    base = service.url;
  };
  beforeAll(async () => {
    await start();
    const r = await call(base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [MEAT, ...declarations(10, 1, 'J')] }) });
    expect(r.status).toBe(200);
  });
  afterAll(async () => { await service?.close(); });

  it('records feedback: per-item errors naming the field, unknown declarations rejected, the rest recorded', async () => {
    const results = [
      { declarationId: MEAT.id, date: '2026-11-24', channel: 'red', inspected: true, outcome: 'seizure', irregularity: 'sps', revenueRecovered: 350, notes: 'no health certificate' },
      { declarationId: 'J0', date: '2026-11-24', channel: 'green', inspected: 'yes', outcome: 'no-discrepancy' },
      { declarationId: 'NEVER-SCORED', date: '2026-11-24', channel: 'green', inspected: false, outcome: 'no-discrepancy' },
      { declarationId: 'J1', date: '2026-11-24', channel: 'yellow', inspected: true, outcome: 'no-discrepancy', revenueRecovered: -1 },
      { declarationId: 'J2', date: '2026-11-24', channel: 'yellow', inspected: true, outcome: 'no-discrepancy' },
    ];
    const r = await call(base, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results }) });
    expect(r.status).toBe(200);
    const body = r.json();
    expect(body.counts).toEqual({ recorded: 2, replaced: 0, duplicate: 0, rejected: 3 });
    expect(body.results.map((x: { status: string }) => x.status)).toEqual(['recorded', 'rejected', 'rejected', 'rejected', 'recorded']);
    expect(body.results[1].error.code).toBe('SEL_ERR_FEEDBACK_INVALID');
    expect(body.results[1].error.details.field).toBe('inspected');
    expect(body.results[2].error.code).toBe('SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION');
    expect(body.results[3].error.details.field).toBe('revenueRecovered');
    const logged = logRows(dataDir, (x) => x.declaration_id === MEAT.id);
    expect(body.results[0].decision.seq).toBe(logged[logged.length - 1].seq);

    const shown = await call(base, 'GET', `/v1/feedback?declarationId=${MEAT.id}`, { role: 'port' });
    expect(shown.status).toBe(200);
    expect(shown.json().feedback).toMatchObject({ outcome: 'seizure', inspected: true, revenueRecovered: 350, irregularity: 'sps', current: true, recordedBy: 'port token' });
    expect(shown.json().decision.reasons.some((x: { profile?: string }) => x.profile === 'SPS-MEAT-CN')).toBe(true);

    const unknown = await call(base, 'GET', '/v1/feedback?declarationId=NEVER-SCORED');
    expect(unknown.status).toBe(404);
    expect(unknown.json().error.code).toBe('SEL_ERR_NOT_FOUND');
  });

  it('is idempotent: the same result again is a duplicate; a different one replaces it and keeps the history', async () => {
    const item = { declarationId: 'J2', date: '2026-11-24', channel: 'yellow', inspected: true, outcome: 'no-discrepancy' };
    const dup = await call(base, 'POST', '/v1/feedback', { type: 'application/msgpack', accept: 'application/json', body: Buffer.from(pack({ results: [item] })) });
    expect(dup.json().counts).toEqual({ recorded: 0, replaced: 0, duplicate: 1, rejected: 0 });
    const changed = await call(base, 'POST', '/v1/feedback', { type: 'application/json', body: JSON.stringify({ results: [{ ...item, outcome: 'discrepancy', irregularity: 'undervaluation', revenueRecovered: 80 }] }) });
    expect(changed.json().results[0].status).toBe('replaced');
    const shown = (await call(base, 'GET', '/v1/feedback?declarationId=J2')).json();
    expect(shown.feedback.outcome).toBe('discrepancy');
    expect(shown.history.map((h: { outcome: string; current: boolean }) => [h.outcome, h.current])).toEqual([['no-discrepancy', false], ['discrepancy', true]]);
  });

  it('rejects a malformed request whole and enforces roles', async () => {
    const bad = await call(base, 'POST', '/v1/feedback', { type: 'application/json', body: JSON.stringify({ result: [] }) });
    expect(bad.status).toBe(400);
    expect(bad.json().error.code).toBe('SEL_ERR_REQUEST_INVALID');
    expect((await call(base, 'GET', `/v1/decisions/${MEAT.id}`, { role: 'port' })).json().error.code).toBe('SEL_ERR_FORBIDDEN');
    const decisions = await call(base, 'GET', `/v1/decisions/${MEAT.id}`);
    expect(decisions.json().decisions[0].declaration).toMatchObject({ hs: MEAT.hs, importer: MEAT.importer, customsValue: MEAT.customsValue, taxRate: MEAT.taxRate });
  });

  it('keeps the feedback across a restart on the same data directory; profile stats show the hit rate', async () => {
    const before = logRows(dataDir).length;
    await service.close();
    await start();
    expect(logRows(dataDir).length).toBe(before);
    const shown = (await call(base, 'GET', `/v1/feedback?declarationId=${MEAT.id}`)).json();
    expect(shown.feedback.outcome).toBe('seizure');
    const db = openStore(join(dataDir, STORE_FILE));
    try {
      const st = profileStats(db, { from: '2026-11-01', to: '2026-11-30' });
      const meat = st.profiles.find((p) => p.id === 'SPS-MEAT-CN')!;
      expect(meat.inspected).toBeGreaterThanOrEqual(1);
      expect(meat.nonCompliant).toBe(meat.inspected);
      expect(meat.hitRate).toBe(1);
      expect(meat.revenueRecovered).toBe(350);
    } finally {
      db.close();
    }
  });
});

describe('feedback with the decision log off', () => {
  it('has nothing to join to: unknown declaration', async () => {
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'off'), tokensEnv, threads: 1, metricsIntervalMs: 60_000, decisionLog: false });
    try {
      expect((await call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [MEAT] }) })).status).toBe(200);
      const f = await call(service.url, 'POST', '/v1/feedback', { type: 'application/json', body: JSON.stringify({ results: [{ declarationId: MEAT.id, date: '2026-11-24', channel: 'red', inspected: true, outcome: 'seizure' }] }) });
      expect(f.json().results[0].error.code).toBe('SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION');
    } finally {
      await service.close();
    }
  });
});

describe('feedback bodies and answers (in process)', () => {
  const auth = (role: keyof typeof TOKENS, type = 'application/json') => ({ authorization: `Bearer ${TOKENS[role]}`, 'content-type': type });
  const result = (declarationId: string) => ({ declarationId, date: '2026-11-24', channel: 'green', inspected: false, outcome: 'no-discrepancy' });
  let service: InProcessService;
  beforeAll(async () => {
    service = await inProcessService(join(dir, 'in-process'), { decisionLog: true });
    const r = await service.app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: JSON.stringify({ declarations: declarations(6, 3, 'Q') }) });
    expect(r.statusCode).toBe(200);
  });
  afterAll(async () => { await service?.close(); });

  it('a "__proto__" or "constructor" key is one rejected item (an unknown field), not a refused body', async () => {
    // JSON.stringify cannot write a "__proto__" key: the body is written by hand
    const body = `{"results":[${JSON.stringify(result('Q0'))},${JSON.stringify(result('Q1')).replace('{', '{"__proto__":{"polluted":1},')},${JSON.stringify(result('Q2')).replace('{', '{"constructor":{"prototype":{"polluted":1}},')}]}`;
    const r = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers: auth('port'), payload: body });
    expect(r.statusCode).toBe(200);
    const answer = r.json();
    expect(answer.counts).toEqual({ recorded: 1, replaced: 0, duplicate: 0, rejected: 2 });
    expect(answer.results[1].error).toMatchObject({ code: 'SEL_ERR_FEEDBACK_INVALID', details: { field: '__proto__' } });
    expect(answer.results[2].error).toMatchObject({ code: 'SEL_ERR_FEEDBACK_INVALID', details: { field: 'constructor' } });
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    // and the good item was recorded
    expect((await service.app.inject({ method: 'GET', url: '/v1/feedback?declarationId=Q0', headers: auth('port') })).json().feedback.outcome).toBe('no-discrepancy');
  });

  it('answers in MessagePack when Accept asks for it or the request was MessagePack; 406 before anything is recorded when nothing fits', async () => {
    const asJson = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers: auth('port'), payload: JSON.stringify({ results: [result('Q3')] }) });
    expect(asJson.headers['content-type']).toMatch(/^application\/json/);
    const cases: [Record<string, string>, string | Buffer][] = [
      [{ ...auth('port'), accept: 'application/msgpack' }, JSON.stringify({ results: [result('Q3')] })],
      [auth('port', 'application/msgpack'), Buffer.from(pack({ results: [result('Q3')] }))],
      [{ ...auth('port', 'application/x-msgpack'), accept: '*/*' }, Buffer.from(pack({ results: [result('Q3')] }))],
    ];
    for (const [headers, payload] of cases) {
      const r = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers, payload });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe('application/msgpack');
      // what the JSON answer says, the second time: a duplicate
      const json = asJson.json();
      expect(unpack(r.rawPayload)).toEqual({ ...json, counts: { ...json.counts, recorded: 0, duplicate: 1 }, results: [{ ...json.results[0], status: 'duplicate' }] });
    }
    // MessagePack in, JSON asked for
    const back = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('port', 'application/msgpack'), accept: 'application/json' }, payload: Buffer.from(pack({ results: [result('Q3')] })) });
    expect(back.headers['content-type']).toMatch(/^application\/json/);
    expect(back.json().counts.duplicate).toBe(1);
    // nothing fits: refused before the handler, so Q4 gets no result
    const refused = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('port'), accept: 'text/html' }, payload: JSON.stringify({ results: [result('Q4')] }) });
    expect(refused.statusCode).toBe(406);
    expect(refused.json().error).toMatchObject({ code: 'SEL_ERR_NOT_ACCEPTABLE', details: { field: 'accept' } });
    const shown = (await service.app.inject({ method: 'GET', url: '/v1/feedback?declarationId=Q4', headers: auth('port') })).json();
    expect(shown.history).toEqual([]);
    // an error answer follows Accept too
    const bad = await service.app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('port'), accept: 'application/msgpack' }, payload: '{"results": 5}' });
    expect(bad.statusCode).toBe(400);
    expect((unpack(bad.rawPayload) as { error: { code: string } }).error.code).toBe('SEL_ERR_REQUEST_INVALID');
  });

  it('GET /v1/decisions/<id> pages through an id\'s decisions, the latest first; both lookups trim the id as scoring does', async () => {
    const same = declarations(1, 5, 'PG')[0];
    // one id decided 7 times: 3 batches, one of them holding it 5 times
    for (const ds of [[same], Array(5).fill(same), [same]]) {
      expect((await service.app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: JSON.stringify({ declarations: ds }) })).statusCode).toBe(200);
    }
    const get = async (url: string) => (await service.app.inject({ method: 'GET', url, headers: auth('analyst') })).json();
    const all = await get(`/v1/decisions/${same.id}`);
    expect(all.total).toBe(7);
    expect(all.before).toBeNull();
    const seqs: number[] = all.decisions.map((d: { seq: number }) => d.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const first = await get(`/v1/decisions/%20${same.id}%20?limit=3`);
    expect(first.decisions.map((d: { seq: number }) => d.seq)).toEqual(seqs.slice(4));
    expect(first).toMatchObject({ declarationId: same.id, total: 7, before: seqs[4] });
    const second = await get(`/v1/decisions/${same.id}?limit=3&before=${first.before}`);
    expect(second.decisions.map((d: { seq: number }) => d.seq)).toEqual(seqs.slice(1, 4));
    const last = await get(`/v1/decisions/${same.id}?limit=3&before=${second.before}`);
    expect(last.decisions.map((d: { seq: number }) => d.seq)).toEqual(seqs.slice(0, 1));
    expect(last.before).toBeNull();
    const shown = await get(`/v1/feedback?declarationId=%20${same.id}&limit=2`);
    expect(shown.decisions.map((d: { seq: number }) => d.seq)).toEqual(seqs.slice(5));
    expect(shown.decisionsTotal).toBe(7);
    expect(shown.decision.seq).toBe(seqs[6]);
    for (const url of [`/v1/decisions/${same.id}?limit=0`, `/v1/decisions/${same.id}?limit=1001`, `/v1/decisions/${same.id}?before=x`, `/v1/feedback?declarationId=${same.id}&limit=0`]) {
      const r = await service.app.inject({ method: 'GET', url, headers: auth('analyst') });
      expect(r.statusCode, url).toBe(400);
    }
  });

  it('PUT /v1/ruleset/profiles answers as Accept asks', async () => {
    const profiles = (await service.app.inject({ method: 'GET', url: '/v1/profiles/export', headers: auth('analyst') })).json().profiles;
    const r = await service.app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers: { ...auth('analyst'), accept: 'application/msgpack' }, payload: JSON.stringify({ profiles }) });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('application/msgpack');
    expect((unpack(r.rawPayload) as { version: string }).version).toBe(service.engine.rulesetVersion);
  });
});

describe('feedback internals', () => {
  it('counts, after a model\'s mark, the results a refit would learn differently from: new inspections and inspections withdrawn since the mark', () => {
    const path = join(dir, 'since', STORE_FILE);
    mkdirSync(join(dir, 'since'), { recursive: true });
    const db = openStore(path);
    try {
      const put = db.prepare(`INSERT INTO feedback (seq, declaration_id, current, decision_seq, date, channel, inspected, outcome, revenue_recovered, recorded_at, recorded_by)
        VALUES (?, ?, ?, 1, '2026-11-25', 'red', ?, 'no-discrepancy', 0, '2026-11-25T00:00:00Z', 'test')`);
      // [seq, id, current, inspected]; the model's mark is 5
      const rows: [number, string, number, number][] = [
        [1, 'D1', 0, 1], [2, 'D1', 0, 0], [6, 'D1', 1, 0], // withdrawn before the mark, corrected again after: the model saw it withdrawn
        [7, 'D2', 0, 1], [8, 'D2', 1, 0], // inspected and withdrawn after the mark: the model never saw it
        [3, 'D3', 0, 1], [9, 'D3', 1, 0], // inspected as the model saw it, withdrawn since: counts
        [10, 'D4', 1, 1], // a new inspection: counts
        [4, 'D5', 1, 1], // inspected before the mark, unchanged
      ];
      for (const [seq, id, current, inspected] of rows) put.run(seq, id, current, inspected);
      expect(resultsAfter(db, 5)).toBe(2);
      expect(resultsAfter(db, 0)).toBe(2); // from the start: the current inspected ones (D4, D5)
    } finally {
      db.close();
    }
  });

  it('validates each field with the field named', () => {
    const good = { declarationId: 'X', date: '2026-02-28', channel: 'red', inspected: true, outcome: 'discrepancy' };
    expect(validateFeedback(good).ok).toBe(true);
    const cases: [Record<string, unknown>, string][] = [
      [{ ...good, date: '2026-02-30' }, 'date'],
      [{ ...good, channel: 'purple' }, 'channel'],
      [{ ...good, outcome: 'bad' }, 'outcome'],
      [{ ...good, notes: 'x'.repeat(2001) }, 'notes'],
      [{ ...good, irregularity: 'x'.repeat(65) }, 'irregularity'],
      [{ ...good, rulesetVersion: 'v1' }, 'rulesetVersion'],
      [{ ...good, extra: 1 }, 'extra'],
      [{ ...good, declarationId: '' }, 'declarationId'],
      [{ ...good, declarationId: '   ' }, 'declarationId'],
      // not inspected, nothing was found: a discrepancy or a seizure contradicts it (it was counted nowhere, its revenue lost)
      [{ ...good, inspected: false }, 'outcome'],
      [{ ...good, inspected: false, outcome: 'seizure', revenueRecovered: 500 }, 'outcome'],
      [{ ...good, date: '0099-02-29' }, 'date'], // not a leap year (Date.UTC read 0099 as 1999, not one either: the rule is the same)
    ];
    for (const [raw, field] of cases) {
      const v = validateFeedback(raw);
      expect(v.ok, field).toBe(false);
      if (!v.ok) { expect(v.error.code).toBe('SEL_ERR_FEEDBACK_INVALID'); expect(v.error.details.field).toBe(field); }
    }
    // the id trimmed as a declaration's is when it is scored; dates of years 0000-0099 as declarations take them
    expect(validateFeedback({ ...good, declarationId: ' F3 ' })).toMatchObject({ ok: true, value: { declarationId: 'F3' } });
    expect(validateFeedback({ ...good, date: '0004-02-29' }).ok).toBe(true);
    expect(validateFeedback({ ...good, date: '0050-06-01' }).ok).toBe(true);
    expect(validateFeedback({ ...good, inspected: false, outcome: 'no-discrepancy' }).ok).toBe(true);
    expect(examinationResult({ inspected: false, outcome: 'seizure' })).toBe('not-examined');
    expect(examinationResult({ inspected: true, outcome: 'no-discrepancy' })).toBe('compliant');
    expect(examinationResult({ inspected: true, outcome: 'discrepancy' })).toBe('non-compliant');
  });

  it('joins to the latest decision of a named ruleset version', async () => {
    const path = join(dir, 'versions', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const d = (v: string): Decision => ({ id: 'A', channel: 'yellow', score: 3, controlGroup: false, rulesetVersion: v, reasons: [{ code: 'PROFILE', profile: 'P1', version: 2, weight: 3 }] });
    const x: Declaration = { ...MEAT, id: 'A' };
    for (const v of ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']) await log.append(encodeLogRows([d(v)], [x], v));
    await log.close();
    const db = openStore(path);
    try {
      const store = new FeedbackStore(db);
      expect(store.decisions('A').decisions.map((r) => r.rulesetVersion)).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
      const item = { declarationId: 'A', date: '2026-11-24', channel: 'yellow', inspected: true, outcome: 'no-discrepancy' };
      const r = store.record([{ ...item, rulesetVersion: 'aaaaaaaaaaaaaaaa' }, { ...item, rulesetVersion: 'cccccccccccccccc' }], 'test');
      expect(r.results[0].decision?.rulesetVersion).toBe('aaaaaaaaaaaaaaaa');
      expect(r.results[1].error?.code).toBe('SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION');
      expect(r.results[1].error?.details.field).toBe('rulesetVersion');
      // without a version: the latest decision; a different join is a new result, not a duplicate
      expect(store.record([item], 'test').results[0]).toMatchObject({ status: 'replaced', decision: { rulesetVersion: 'bbbbbbbbbbbbbbbb' } });
      expect(store.record([item], 'test').results[0].status).toBe('duplicate');
    } finally {
      db.close();
    }
  });
});

describe('feedback against a log of many chunks', () => {
  const path = join(dir, 'many', STORE_FILE);
  const versions = ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', 'cccccccccccccccc'];
  beforeAll(async () => {
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    // 30 chunks of 40 decisions over 200 ids (each decided about 6 times), three ruleset versions in turn
    let n = 0;
    for (let c = 0; c < 30; c++) {
      const v = versions[c % 3];
      const ids = Array.from({ length: 40 }, () => `M${(n++ * 37) % 200}`);
      await log.append(encodeLogRows(ids.map((id, k) => ({ id, channel: 'yellow', score: c * 100 + k, controlGroup: false, rulesetVersion: v, reasons: [{ code: 'PROFILE', profile: `P${k % 3}`, version: 1, weight: 1 }] })), ids.map((id) => ({ ...MEAT, id })), v));
    }
    await log.close();
  });

  it('latestMany finds, for each request in its order, the decision latest() finds; the paced form too, pausing for the event loop', async () => {
    const db = openStore(path);
    try {
      const reader = new DecisionLogReader(db);
      const requests = Array.from({ length: 400 }, (_, k) => ({ declarationId: `M${(k * 53) % 210}`, ...(k % 3 === 0 ? { rulesetVersion: versions[k % 4 === 0 ? 0 : 2] } : {}) }));
      const many = reader.latestMany(requests);
      const one = requests.map((r) => new DecisionLogReader(db).latest(r.declarationId, r.rulesetVersion));
      expect(many).toEqual(one);
      let paused = false;
      setImmediate(() => { paused = true; });
      expect(await new DecisionLogReader(db).latestManyPaced(requests, 50)).toEqual(one);
      expect(paused).toBe(true);
      expect(many.filter((d) => d === undefined).length).toBeGreaterThan(0); // ids M200..M209 were never decided
      expect(many.filter((d) => d !== undefined).length).toBeGreaterThan(300);
    } finally {
      db.close();
    }
  });

  it('prepares the joins without the store\'s write lock, and commits once the lock is free (a failed commit wrote nothing)', () => {
    const db = openStore(path);
    const holder = openStore(path);
    try {
      const store = new FeedbackStore(db);
      db.pragma('busy_timeout = 0'); // a lock taken here would fail at once, not wait
      const items = Array.from({ length: 100 }, (_, k) => ({ declarationId: `M${k}`, date: '2026-11-24', channel: 'yellow', inspected: true, outcome: k % 2 ? 'discrepancy' : 'no-discrepancy' }));
      holder.prepare('BEGIN IMMEDIATE').run(); // the decision log's writer, committing
      const recording = store.prepare([...items, { declarationId: 'M205', date: '2026-11-24', channel: 'red', inspected: false, outcome: 'no-discrepancy' }], 'test');
      const e = (() => { try { recording.commit(); return undefined; } catch (x) { return x; } })();
      expect(isStoreBusy(e)).toBe(true);
      expect(db.prepare('SELECT count(*) FROM feedback').pluck().get()).toBe(0);
      holder.prepare('COMMIT').run();
      const r = recording.commit();
      expect(r.counts).toEqual({ recorded: 100, replaced: 0, duplicate: 0, rejected: 1 });
      const reader = new DecisionLogReader(db);
      for (const [k, x] of r.results.slice(0, 100).entries()) expect(x.decision?.seq, `M${k}`).toBe(reader.latest(`M${k}`)?.seq);
      expect(r.results[100].error?.code).toBe('SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION');
      expect(db.prepare('SELECT count(*) FROM feedback').pluck().get()).toBe(100);
      expect(db.prepare('SELECT count(*) FROM examinations').pluck().get()).toBe(100);
    } finally {
      holder.close();
      db.close();
    }
  });
});

describe('a large batch of feedback, in slices', () => {
  it('commits slice by slice, one transaction each, the event loop going on between them; a failed slice leaves the earlier ones recorded', async () => {
    const path = join(dir, 'sliced', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const v = 'aaaaaaaaaaaaaaaa';
    const ids = Array.from({ length: 1000 }, (_, k) => `S${k}`);
    await log.append(encodeLogRows(ids.map((id, k) => ({ id, channel: 'red', score: k, controlGroup: false, rulesetVersion: v, reasons: [] })), ids.map((id) => ({ ...MEAT, id })), v));
    await log.close();
    const db = openStore(path);
    const other = openStore(path); // sees only what was committed
    const stored = () => other.prepare('SELECT count(*) FROM feedback').pluck().get() as number;
    try {
      const store = new FeedbackStore(db);
      const item = (k: number) => ({ declarationId: `S${k}`, date: '2026-11-24', channel: 'red', inspected: true, outcome: k % 3 ? 'no-discrepancy' : 'seizure' });
      // 1,000 results, an invalid one, and S5's again (the same result: a duplicate, found in a later slice)
      const items = [...ids.map((_, k) => item(k)), { declarationId: 'S1', date: 'not a date' }, item(5)];
      let turns = 0;
      let spinning = true;
      const spin = () => { turns++; if (spinning) setImmediate(spin); };
      setImmediate(spin);

      // the third slice fails: the first two stay recorded, nothing of the third
      let calls = 0;
      const failing = store.prepare(items, 'test').commitSliced(300, async (slice) => {
        if (++calls === 3) throw new Error('disk full');
        slice();
      });
      await expect(failing).rejects.toThrow('disk full');
      expect(stored()).toBe(600);

      // again: what was recorded answers as duplicates; each slice commits before the next, with event-loop turns between
      const seen: number[] = [], atTurn: number[] = [];
      const r = await store.prepare(items, 'test').commitSliced(300, async (slice) => { seen.push(stored()); atTurn.push(turns); slice(); });
      spinning = false;
      expect(seen).toEqual([600, 600, 600, 900]);
      for (let k = 1; k < atTurn.length; k++) expect(atTurn[k]).toBeGreaterThan(atTurn[k - 1]);
      expect(r.counts).toEqual({ recorded: 400, replaced: 0, duplicate: 601, rejected: 1 });
      expect(r.results.map((x) => x.index)).toEqual(items.map((_, k) => k));
      expect(r.results[1000]).toMatchObject({ status: 'rejected', error: { code: 'SEL_ERR_FEEDBACK_INVALID' } });
      expect(r.results[1001]).toMatchObject({ declarationId: 'S5', status: 'duplicate' });
      expect(stored()).toBe(1000);
      // one transaction for everything gives the same answers
      expect(store.prepare(items, 'test').commit()).toEqual({ counts: { recorded: 0, replaced: 0, duplicate: 1001, rejected: 1 }, results: r.results.map((x) => (x.status === 'recorded' ? { ...x, status: 'duplicate' } : x)) });
    } finally {
      other.close();
      db.close();
    }
  });
});

describe('the targeting report (control group beside the targeted channels)', () => {
  it('counts the results of each channel and of the control group over a period, with the estimate\'s interval; the CLI and GET /v1/feedback/report say the same', async () => {
    const dataDir = join(dir, 'report');
    const path = join(dataDir, STORE_FILE);
    mkdirSync(dataDir, { recursive: true });
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const v = 'abababababababab';
    // an old chunk (pruned below: its results no longer join), then 300 decisions over the channels, every tenth drawn by the control group
    const old = Array.from({ length: 20 }, (_, k) => `U${k}`);
    await log.append(encodeLogRows(old.map((id) => ({ id, channel: 'red', score: 9, controlGroup: false, rulesetVersion: v, reasons: [] })), old.map((id) => ({ ...MEAT, id })), v, Date.parse('2026-01-05')));
    const ids = Array.from({ length: 300 }, (_, k) => `R${k}`);
    const control = (k: number) => k % 10 === 7;
    // control-group decisions on green too (randomSelection.channel may be any channel)
    const channelOf = (k: number) => (k % 20 === 7 ? 'green' : CHANNELS[k % 5]);
    await log.append(encodeLogRows(ids.map((id, k) => ({ id, channel: channelOf(k), score: k, controlGroup: control(k), rulesetVersion: v, reasons: [] })), ids.map((id) => ({ ...MEAT, id })), v));
    await log.close();
    const db = openStore(path);
    try {
      const outcome = (k: number) => (k % 4 === 0 ? 'seizure' : k % 4 === 1 ? 'discrepancy' : 'no-discrepancy');
      const inPeriod = (k: number) => k < 250;
      const items = [
        ...ids.map((id, k) => ({ declarationId: id, date: inPeriod(k) ? '2026-11-10' : '2026-09-01', channel: channelOf(k), inspected: k % 3 !== 0, outcome: k % 3 !== 0 ? outcome(k) : 'no-discrepancy', revenueRecovered: k })),
        ...old.map((id) => ({ declarationId: id, date: '2026-11-12', channel: 'red', inspected: true, outcome: 'seizure', revenueRecovered: 1 })),
      ];
      expect(new FeedbackStore(db).record(items, 'test').counts.recorded).toBe(320);
      // a replaced result counts once, as its current one: R1 (blue, inspected) was a discrepancy, now no discrepancy
      expect(new FeedbackStore(db).record([{ ...items[1], outcome: 'no-discrepancy' }], 'test').counts.replaced).toBe(1);
      pruneDecisionLog(db, { before: Date.parse('2026-02-01'), includeFeedback: true });
      db.prepare("INSERT INTO traffic (day, scored) VALUES ('2026-11-10', 5000), ('2026-09-01', 77)").run();

      const r = targetingReport(db, { from: '2026-11-01', to: '2026-11-30' });
      // the same counts, directly
      const expected = (pick: (k: number) => boolean) => {
        const ks = ids.map((_, k) => k).filter((k) => inPeriod(k) && pick(k));
        const insp = ks.filter((k) => k % 3 !== 0);
        const bad = insp.filter((k) => (k === 1 ? 'no-discrepancy' : outcome(k)) !== 'no-discrepancy');
        return { results: ks.length, inspected: insp.length, nonCompliant: bad.length, hitRate: insp.length ? bad.length / insp.length : null, revenueRecovered: bad.reduce((a, k) => a + k, 0) };
      };
      expect(r).toMatchObject({ from: '2026-11-01', to: '2026-11-30', scored: 5000, results: 270, unjoined: 20 });
      for (const g of r.channels) expect(g, g.channel).toEqual({ channel: g.channel, ...expected((k) => !control(k) && channelOf(k) === g.channel) });
      expect(r.targeted).toEqual(expected((k) => !control(k) && channelOf(k) !== 'green'));
      const c = expected(control);
      expect(r.controlGroup).toMatchObject(c);
      expect(c.inspected).toBeGreaterThan(10);
      expect(r.controlGroup.low!).toBeLessThan(c.hitRate!);
      expect(r.controlGroup.high!).toBeGreaterThan(c.hitRate!);
      expect(r.controlGroup.low!).toBeCloseTo(wilsonInterval(c.nonCompliant, c.inspected).low, 12);
      expect(r.lift).toBeCloseTo(r.targeted.hitRate! / c.hitRate!, 12);
      // the Wilson interval itself: 3 of 10 → 0.1078–0.6032
      expect(wilsonInterval(3, 10).low).toBeCloseTo(0.1078, 4);
      expect(wilsonInterval(3, 10).high).toBeCloseTo(0.6032, 4);
      // read a page at a time: 7 results a page (39 pages) give the same report, per month too
      expect(targetingReport(db, { from: '2026-11-01', to: '2026-11-30', page: 7 })).toEqual(r);
      expect(targetingReport(db, { from: '2026-11-01', to: '2026-11-30', per: 'week', page: 7 })).toEqual(targetingReport(db, { from: '2026-11-01', to: '2026-11-30', per: 'week' }));
      // another period: what was examined then
      expect(targetingReport(db, { from: '2026-09-01', to: '2026-09-01' })).toMatchObject({ scored: 77, results: 50, unjoined: 0 });
      // a bad period: a named error
      expect(() => targetingReport(db, { from: '2026-11-31' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'from' }) }));
      expect(() => targetingReport(db, { from: '2026-12-01', to: '2026-11-01' })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'from' }) }));
      // per month and per week: each period's targeted and control figures, cut to the report's period at its ends
      const all = (pick: (k: number) => boolean) => {
        const ks = ids.map((_, k) => k).filter(pick);
        const insp = ks.filter((k) => k % 3 !== 0);
        const bad = insp.filter((k) => (k === 1 ? 'no-discrepancy' : outcome(k)) !== 'no-discrepancy');
        return { results: ks.length, inspected: insp.length, nonCompliant: bad.length, hitRate: insp.length ? bad.length / insp.length : null, revenueRecovered: bad.reduce((a, k) => a + k, 0) };
      };
      const monthly = targetingReport(db, { from: '2026-09-01', to: '2026-11-30', per: 'month' });
      expect(monthly.periods!.map((p) => [p.from, p.to, p.results])).toEqual([['2026-09-01', '2026-09-30', 50], ['2026-10-01', '2026-10-31', 0], ['2026-11-01', '2026-11-30', 270]]);
      expect(monthly.periods![0].targeted).toEqual(all((k) => !inPeriod(k) && !control(k) && channelOf(k) !== 'green'));
      expect(monthly.periods![0].controlGroup).toMatchObject(all((k) => !inPeriod(k) && control(k)));
      expect(monthly.periods![1]).toMatchObject({ targeted: { inspected: 0, hitRate: null }, controlGroup: { inspected: 0, hitRate: null, low: null }, lift: null });
      expect(monthly.periods![2]).toEqual({ from: '2026-11-01', to: '2026-11-30', results: 270, targeted: r.targeted, controlGroup: r.controlGroup, lift: r.lift });
      expect(monthly.channels).toEqual(targetingReport(db, { from: '2026-09-01', to: '2026-11-30' }).channels);
      const weekly = targetingReport(db, { from: '2026-11-01', to: '2026-11-30', per: 'week' });
      // 1 November 2026 is a Sunday, the 30th a Monday: weeks run Monday to Sunday
      expect(weekly.periods!.map((p) => `${p.from}/${p.to}/${p.results}`)).toEqual(['2026-11-01/2026-11-01/0', '2026-11-02/2026-11-08/0', '2026-11-09/2026-11-15/270', '2026-11-16/2026-11-22/0', '2026-11-23/2026-11-29/0', '2026-11-30/2026-11-30/0']);
      expect(targetingReport(db, { from: '2026-11-09', to: '2026-11-11', per: 'day' }).periods!.map((p) => p.results)).toEqual([0, 250, 0]);
      expect(() => targetingReport(db, { per: 'year' as never })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'per' }) }));
      // the ends of the calendar: the last month of 9999 (its next month cannot be written: the loop ran for
      // ever) and the days before the first Monday of year 0
      const span = (from: string, to: string, per: 'day' | 'week' | 'month') => targetingReport(db, { from, to, per }).periods!.map((p) => `${p.from}/${p.to}`);
      expect(span('9999-11-15', '9999-12-31', 'month')).toEqual(['9999-11-15/9999-11-30', '9999-12-01/9999-12-31']);
      expect(span('9999-12-25', '9999-12-31', 'week')).toEqual(['9999-12-25/9999-12-26', '9999-12-27/9999-12-31']);
      expect(span('9999-12-30', '9999-12-31', 'day')).toEqual(['9999-12-30/9999-12-30', '9999-12-31/9999-12-31']);
      expect(span('0000-01-01', '0000-01-11', 'week')).toEqual(['0000-01-01/0000-01-02', '0000-01-03/0000-01-09', '0000-01-10/0000-01-11']);
      // a breakdown of more than MAX_REPORT_PERIODS periods is refused, not computed
      expect(targetingReport(db, { from: '2000-01-01', to: '2027-05-18', per: 'day' }).periods).toHaveLength(MAX_REPORT_PERIODS);
      expect(() => targetingReport(db, { from: '0000-01-01', to: '9999-12-31', per: 'day' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'per' }) }));
      expect(targetingReport(db, { from: '1900-01-01', to: '2026-12-31', per: 'month' }).periods).toHaveLength(127 * 12);
      expect(r.periods).toBeUndefined();
      // the paced form gives the same, pausing for the event loop
      let paused = false;
      setImmediate(() => { paused = true; });
      expect(await targetingReportPaced(db, { from: '2026-11-01', to: '2026-11-30' }, Date.now(), 50)).toEqual(r);
      expect(paused).toBe(true);

      // the command line
      const cli = await runCli(['feedback', 'report', '--data-dir', dataDir, '--from', '2026-11-01', '--to', '2026-11-30', '--json']);
      expect(cli.code).toBe(0);
      expect(JSON.parse(cli.stdout)).toEqual(r);
      const text = await runCli(['feedback', 'report', '--data-dir', dataDir, '--from', '2026-11-01', '--to', '2026-11-30']);
      expect(text.stdout).toContain(`95 % interval ${(100 * r.controlGroup.low!).toFixed(1)} %`);
      expect(text.stdout).toContain('20 whose decision was pruned');
      const weeks = await runCli(['feedback', 'report', '--data-dir', dataDir, '--from', '2026-11-01', '--to', '2026-11-30', '--per', 'week']);
      expect(weeks.stdout).toMatch(/2026-11-09 – 2026-11-15 +270 /);
      const bad = await runCli(['feedback', 'report', '--data-dir', dataDir, '--to', '2026-13-01']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('SEL_ERR_OPTION_INVALID');
    } finally {
      db.close();
    }

    // the service
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
    try {
      const got = await call(service.url, 'GET', '/v1/feedback/report?from=2026-11-01&to=2026-11-30');
      expect(got.status).toBe(200);
      expect(got.json()).toEqual(JSON.parse(JSON.stringify(targetingReportOf(dataDir))));
      expect((await call(service.url, 'GET', '/v1/feedback/report?from=2026-11-01&to=2026-11-30', { role: 'port' })).status).toBe(403);
      const wrong = await call(service.url, 'GET', '/v1/feedback/report?from=2026-12-01&to=2026-11-01');
      expect(wrong.status).toBe(400);
      expect(wrong.json().error).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'from' } });
      // what the command refuses, the route refuses with the same code and field
      for (const [query, field] of [['from=yesterday', 'from'], ['to=2026-02-30', 'to'], ['per=year', 'per']]) {
        const bad = await call(service.url, 'GET', `/v1/feedback/report?${query}`);
        expect(bad.status, query).toBe(400);
        expect(bad.json().error, query).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field } });
      }
      const perMonth = await call(service.url, 'GET', '/v1/feedback/report?from=2026-09-01&to=2026-11-30&per=month');
      expect(perMonth.json().periods.map((p: { results: number }) => p.results)).toEqual([50, 0, 270]);
    } finally {
      await service.close();
    }
  });
});

/** The report of a data directory's store, read on a connection of its own. */
function targetingReportOf(dataDir: string) {
  const db = openStore(join(dataDir, STORE_FILE));
  try { return targetingReport(db, { from: '2026-11-01', to: '2026-11-30' }); } finally { db.close(); }
}

/**
 * Scores `decls` through the service, then records an inspected result for
 * each: every declaration of importer IMP3 non-compliant, one in ten of the
 * others (a signal a refit can find). Returns `decls`.
 */
async function scoredWithResults(url: string, decls: Declaration[]): Promise<Declaration[]> {
  expect((await call(url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: decls }) })).status).toBe(200);
  const results = decls.map((d, i) => ({ declarationId: d.id, date: '2026-11-25', channel: 'red', inspected: true, outcome: d.importer === 'IMP3' || i % 10 === 0 ? 'discrepancy' : 'no-discrepancy' }));
  expect((await call(url, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results }) })).json().counts.recorded).toBe(decls.length);
  return decls;
}

describe('learning from the feedback in the store (POST /v1/model/retrain)', () => {
  it('refits on inspected declarations, swaps the model in, shows it as reasons, and keeps it across a restart', async () => {
    const dataDir = join(dir, 'learn');
    let service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
    try {
      // too little feedback: a named error, nothing changes
      const early = await call(service.url, 'POST', '/v1/model/retrain');
      expect(early.status).toBe(400);
      expect(early.json().error.code).toBe('SEL_ERR_OPTION_INVALID');
      expect((await call(service.url, 'GET', '/v1/model')).json().model).toBeNull();
      const decls = await scoredWithResults(service.url, declarations(400, 7, 'L'));
      const before = (await call(service.url, 'GET', '/v1/ruleset')).json().version;
      const r = await call(service.url, 'POST', '/v1/model/retrain');
      expect(r.status).toBe(200);
      expect(r.json().training.rows).toBe(decls.length);
      expect(r.json().ruleset.version).not.toBe(before);
      expect(r.json().model.strength).toBe(10); // the default: no --retrain-strength
      expect(r.json().model.traderStrength).toBe(10);
      expect(r.json().training.strengths).toBeUndefined();
      const importer = r.json().model.dimensions.find((d: { name: string }) => d.name === 'importer');
      expect(importer.weight).toBeGreaterThan(0);
      // each kept weight's z, at least the model's bar; none for a dimension training dropped
      expect(r.json().model.minZ).toBe(1.96);
      expect(importer.z).toBe(r.json().training.z['history.importer']);
      for (const d of r.json().model.dimensions as { name: string; weight: number; z: number | null }[]) {
        if (d.weight === 0) expect(d.z, d.name).toBeNull();
        else expect(d.z, d.name).toBeGreaterThanOrEqual(1.96);
      }
      // a new IMP3 declaration: its importer's history is a reason
      const next = { ...decls.find((d) => d.importer === 'IMP3')!, id: 'L-NEW' };
      const scored = (await call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [next] }) })).json();
      expect(scored.decisions[0].reasons.some((x: { code: string; dimension?: string; value?: string }) => x.code === 'HISTORY' && x.dimension === 'importer' && x.value === 'IMP3')).toBe(true);
      await service.close();
      service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
      const reloaded = (await call(service.url, 'GET', '/v1/model')).json().model;
      expect(reloaded.rows).toBe(decls.length);
      // read back from the model file after a restart: the same weights and z
      expect(reloaded.dimensions).toEqual(r.json().model.dimensions);
      expect(reloaded.minZ).toBe(1.96);
      // the same from the CLI, reading the store beside the running service
      const cli = await runCli(['train', '--from-store', '--data-dir', dataDir, '--out', join(dir, 'cli-model.json'), '--json']);
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout).rows).toBe(decls.length);
    } finally {
      await service.close();
    }
  }, 60_000);
});

describe('which model a ruleset scored with (the ruleset record)', () => {
  const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

  it('names the model file\'s SHA-256 and its training, and still names a model after a retrain has replaced its file', async () => {
    const dataDir = join(dir, 'record-model');
    const modelFile = join(dataDir, 'model.json');
    let service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
    try {
      const none = (await call(service.url, 'GET', '/v1/ruleset')).json();
      expect(none.model).toBeNull();
      expect((await call(service.url, 'GET', `/v1/rulesets/${none.version}`)).json().model).toBeNull();

      const decls = await scoredWithResults(service.url, declarations(400, 7, 'R'));
      const first = await call(service.url, 'POST', '/v1/model/retrain');
      expect(first.status).toBe(200);
      const firstSha = sha256(modelFile);
      expect(first.json().model.sha256).toBe(firstSha);
      const v1 = first.json().ruleset.version;
      const identity1 = { sha256: firstSha, trainedAt: first.json().model.trainedAt, rows: decls.length, source: 'store', feedbackSeq: expect.any(Number) };
      expect(first.json().ruleset.model).toEqual(identity1);
      expect((await call(service.url, 'GET', `/v1/rulesets/${v1}`)).json().model).toEqual(identity1);

      // more results, a second refit: model.json is replaced, and the first ruleset's record still names the first model
      const more = await scoredWithResults(service.url, declarations(200, 8, 'S'));
      const second = await call(service.url, 'POST', '/v1/model/retrain');
      expect(second.status).toBe(200);
      const secondSha = sha256(modelFile);
      expect(secondSha).not.toBe(firstSha);
      expect(second.json().ruleset.model).toMatchObject({ sha256: secondSha, rows: decls.length + more.length, source: 'store' });
      expect(second.json().ruleset.model.feedbackSeq).toBeGreaterThan(first.json().ruleset.model.feedbackSeq);
      expect((await call(service.url, 'GET', `/v1/rulesets/${v1}`)).json().model).toEqual(identity1);
      // the ruleset without a model stays recorded without one
      expect((await call(service.url, 'GET', `/v1/rulesets/${none.version}`)).json().model).toBeNull();
      await service.close();

      // after a restart the model is read from its file: the same identity, hashed from the bytes read
      service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
      expect((await call(service.url, 'GET', '/v1/model')).json().model.sha256).toBe(secondSha);
      expect((await call(service.url, 'GET', '/v1/ruleset')).json().model).toEqual(second.json().ruleset.model);
    } finally {
      await service.close();
    }
  }, 90_000);

  it('leaves the model out of a ruleset recorded before store migration 12, and keeps it null for one without a model', () => {
    const dataDir = join(dir, 'record-old');
    mkdirSync(dataDir, { recursive: true });
    const path = join(dataDir, STORE_FILE);
    const old = openStore(path, 11); // the layout before migration 12
    old.prepare('INSERT INTO rulesets (version, installed_at, peers, profiles, settings, watch_lists) VALUES (?, ?, ?, ?, ?, ?)').run('a'.repeat(16), '2026-12-01T00:00:00.000Z', null, '[]', '{}', '[]');
    old.close();
    const source = new RulesetSource({ storePath: path, peersPath: join(dataDir, 'peers.json') });
    try {
      const record = source.rulesetRecord('a'.repeat(16))!;
      expect(record.version).toBe('a'.repeat(16));
      expect('model' in record).toBe(false);
      source.database.prepare('INSERT INTO rulesets (version, installed_at, peers, profiles, settings, watch_lists, model) VALUES (?, ?, ?, ?, ?, ?, ?)').run('b'.repeat(16), '2026-12-02T00:00:00.000Z', null, '[]', '{}', '[]', 'null');
      expect(source.rulesetRecord('b'.repeat(16))!.model).toBeNull();
    } finally {
      source.close();
    }
  });
});

describe('a refit that keeps no weight', () => {
  it('is refused by name and changes nothing: no model file, the ruleset in use stays', async () => {
    // a significance bar no weight can reach: every weight of the refit is dropped
    const dataDir = join(dir, 'learn-nothing');
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000, retrainMinZ: 1e6 });
    try {
      const decls = await scoredWithResults(service.url, declarations(200, 11, 'N'));
      const before = (await call(service.url, 'GET', '/v1/ruleset')).json().version;
      const r = await call(service.url, 'POST', '/v1/model/retrain');
      expect(r.status).toBe(400);
      expect(r.json().error).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'feedback', got: { inspected: decls.length } } });
      expect(r.json().error.message).toContain('the refit kept no weight');
      expect((await call(service.url, 'GET', '/v1/model')).json().model).toBeNull();
      expect(existsSync(join(dataDir, 'model.json'))).toBe(false);
      expect((await call(service.url, 'GET', '/v1/ruleset')).json().version).toBe(before);
      // the CLI writes such a model where it is told to, with a warning
      const cli = await runCli(['train', '--from-store', '--data-dir', dataDir, '--out', join(dir, 'none-model.json'), '--min-z', '1000000']);
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stderr).toContain('selectivity train: warning: no weight kept');
      expect(existsSync(join(dir, 'none-model.json'))).toBe(true);
    } finally {
      await service.close();
    }
  }, 60_000);
});

describe('automatic retraining as feedback arrives', () => {
  it('refits in a worker once enough inspected results are in, swaps the model in, and waits for the next batch of results', async () => {
    const dataDir = join(dir, 'auto');
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000, retrainAfter: 100, retrainCheckMs: 50, retrainStrength: 'auto', retrainMinZ: 0 });
    try {
      const before = (await call(service.url, 'GET', '/v1/ruleset')).json().version;
      const decls = declarations(160, 9, 'AUTO');
      expect((await call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: decls }) })).status).toBe(200);
      const feed = (ds: typeof decls) => call(service.url, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results: ds.map((d, i) => ({ declarationId: d.id, date: '2026-11-25', channel: 'red', inspected: true, outcome: d.importer === 'IMP3' || i % 7 === 0 ? 'discrepancy' : 'no-discrepancy' })) }) });
      await feed(decls.slice(0, 60)); // below the threshold: nothing happens
      await new Promise((r) => setTimeout(r, 400));
      let m = (await call(service.url, 'GET', '/v1/model')).json();
      expect(m.model).toBeNull();
      expect(m.autoRetrain).toEqual({ after: 100, inspectedWithFeedback: 60, trainedOn: 0, sinceTraining: 60 });
      await feed(decls.slice(60)); // all of them now
      for (let i = 0; i < 200 && !m.model; i++) { await new Promise((r) => setTimeout(r, 50)); m = (await call(service.url, 'GET', '/v1/model')).json(); }
      expect(m.model.rows).toBe(decls.length);
      expect(m.autoRetrain.trainedOn).toBe(decls.length);
      expect(existsSync(join(dataDir, 'model.json'))).toBe(true);
      expect((await call(service.url, 'GET', '/v1/ruleset')).json().version).not.toBe(before);
      // retrainStrength 'auto': the refit tried every strength and kept the best, which GET /v1/model shows
      const doc = JSON.parse(readFileSync(join(dataDir, 'model.json'), 'utf8')) as { history: { strength: number }; training: { strengths?: { strength: number; logLoss: number }[] } };
      expect(doc.training.strengths?.map((t) => t.strength)).toEqual([...STRENGTH_GRID]);
      expect(doc.history.strength).toBe(doc.training.strengths!.reduce((a, t) => (t.logLoss <= a.logLoss ? t : a)).strength);
      expect(m.model.strength).toBe(doc.history.strength);
      // the trader dimensions keep a strength of at least 10 (TrainOptions.traderStrength), shown beside it
      expect(m.model.traderStrength).toBe(Math.max(10, doc.history.strength));
      // retrainMinZ 0: every weight that is not negative is kept, whatever its z
      expect(m.model.minZ).toBe(0);
    } finally {
      await service.close();
    }
  }, 60_000);

  it('after a failed refit (too little feedback of one kind), tries again only once a new result arrives, not at every check', async () => {
    const dataDir = join(dir, 'auto-failed');
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000, retrainAfter: 0 });
    const files = await prepareDataDir(dataDir);
    // minZ 0: the last refit's 59 results (9 seizures) need not make a weight significant for it to succeed
    const source = new RulesetSource({ storePath: files.storePath, peersPath: files.peersPath }, { retrain: { minZ: 0 } });
    const events: boolean[] = [];
    let engine: Engine | undefined;
    try {
      const ds = declarations(60, 31, 'FAIL');
      expect((await call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: ds }) })).status).toBe(200);
      const feed = (part: Declaration[], outcome: string) => call(service.url, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results: part.map((d) => ({ declarationId: d.id, date: '2026-11-25', channel: 'red', inspected: true, outcome })) }) });
      await feed(ds.slice(0, 50), 'no-discrepancy'); // every one compliant: nothing to learn from
      // a refit is swapped into an engine (as the service's is), in the transaction that writes its model
      engine = createEngine({ ruleset: await source.load(files.peers), threads: 0 });
      source.attachEngine(engine);
      source.startAutoRetrain({ after: 10, checkMs: 20, report: (e) => events.push(e.ok) });
      const settle = async (n: number) => { for (let i = 0; i < 200 && events.length < n; i++) await new Promise((r) => setTimeout(r, 20)); await new Promise((r) => setTimeout(r, 300)); };
      await settle(1);
      expect(events).toEqual([false]); // once, not every 20 ms
      await feed(ds.slice(50, 51), 'no-discrepancy'); // a new result: one more try
      await settle(2);
      expect(events).toEqual([false, false]);
      await feed(ds.slice(51), 'seizure');
      await settle(3);
      expect(events).toEqual([false, false, true]);
    } finally {
      source.startAutoRetrain({ after: 0 });
      await source.drain();
      await engine?.close();
      source.close();
      await service.close();
    }
  }, 60_000);

  it('counts results recorded after the model was trained: changed results trigger a refit, results whose decision was pruned do not trigger one at every check', async () => {
    const dataDir = join(dir, 'auto-since');
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, inlineMaxBytes: 0, metricsIntervalMs: 60_000, retrainAfter: 100, retrainCheckMs: 50 });
    const model = async () => (await call(service.url, 'GET', '/v1/model')).json();
    const createdAt = () => (JSON.parse(readFileSync(join(dataDir, 'model.json'), 'utf8')) as { createdAt: string; feedbackSeq: number });
    const until = async (what: string, ok: (m: any) => boolean) => {
      let m = await model();
      for (let i = 0; i < 300 && !ok(m); i++) { await new Promise((r) => setTimeout(r, 50)); m = await model(); }
      expect(ok(m), `${what}: ${JSON.stringify(m.autoRetrain)}`).toBe(true);
      return m;
    };
    const score = (ds: Declaration[]) => call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: ds }) });
    const feed = (ds: Declaration[], flip = false) => call(service.url, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results: ds.map((d, i) => ({ declarationId: d.id, date: '2026-11-25', channel: 'red', inspected: true, outcome: (d.importer === 'IMP3' || i % 7 === 0) !== flip ? 'discrepancy' : 'no-discrepancy' })) }) });
    try {
      const a = declarations(150, 21, 'OLD'), b = declarations(150, 22, 'NEW');
      expect((await score(a)).status).toBe(200);
      await feed(a);
      await until('the first refit', (m) => m.model?.rows === a.length);
      const cut = Date.now();
      await new Promise((r) => setTimeout(r, 20));
      expect((await score(b)).status).toBe(200);
      // retention: the first batch's decisions go, their results stay in the store (150 that no refit can learn from)
      const db = openStore(join(dataDir, STORE_FILE));
      try { expect(pruneDecisionLog(db, { before: cut, includeFeedback: true })).toMatchObject({ decisions: a.length, feedback: a.length }); } finally { db.close(); }
      await feed(b);
      const second = await until('the refit on the second batch', (m) => m.model?.rows === b.length);
      expect(second.autoRetrain).toMatchObject({ after: 100, inspectedWithFeedback: a.length + b.length, trainedOn: b.length, sinceTraining: 0 });
      const fitted = createdAt();
      expect(fitted.feedbackSeq).toBeGreaterThan(0);
      // 300 results against a model of 150 rows: counted by the old rule, this refitted at every check
      await new Promise((r) => setTimeout(r, 600));
      expect(createdAt().createdAt).toBe(fitted.createdAt);
      // 120 results changed (the laboratory found otherwise): as many declarations with feedback as before, but new results
      await feed(b.slice(0, 120), true);
      expect((await model()).autoRetrain.sinceTraining).toBe(120);
      await until('the refit on the changed results', (m) => m.model?.trainedAt !== second.model.trainedAt);
      expect(createdAt().feedbackSeq).toBeGreaterThan(fitted.feedbackSeq);
      // 40 inspections withdrawn (recorded again as not inspected): the model learnt from them, so they count as
      // changed results, though the store now holds 40 inspected declarations fewer
      expect((await model()).autoRetrain.sinceTraining).toBe(0);
      const withdrawn = await call(service.url, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results: b.slice(0, 40).map((d) => ({ declarationId: d.id, date: '2026-11-26', channel: 'red', inspected: false, outcome: 'no-discrepancy' })) }) });
      expect(withdrawn.json().counts.replaced).toBe(40);
      expect((await model()).autoRetrain).toMatchObject({ inspectedWithFeedback: a.length + b.length - 40, sinceTraining: 40 });
      // a model written by "selectivity train --from-store" beside the service counts as trained on the store
      // too (its source names the directory): new results after it still trigger a refit
      const cli = await runCli(['train', '--from-store', '--data-dir', dataDir, '--min-z', '0']);
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(dataDir, 'model.json'), 'utf8')).source).toBe(`feedback in the store (${dataDir})`);
      expect((await call(service.url, 'POST', '/v1/ruleset/reload', { role: 'admin' })).status).toBe(200);
      const byCli = await until('the CLI model in use', (m) => m.autoRetrain.sinceTraining === 0);
      expect(byCli.autoRetrain.trainedOn).toBe(b.length - 40); // the withdrawn inspections are not learnt from
      await feed(b.slice(0, 110));
      await until('the refit after the CLI model', (m) => m.model?.trainedAt !== byCli.model.trainedAt);
    } finally {
      await service.close();
    }
  }, 60_000);
});
