/**
 * The decision log: every decision the service returns (JSON and MessagePack
 * batches, NDJSON and MessagePack streams) is committed to the store before
 * the answer that carries it. Through a real listener with a worker pool (the
 * production path: scoring workers build the log rows, the writer thread
 * commits them). Workers run from dist/: `npm run build:ts` first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { pack, unpack, unpackMultiple } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type RunningService } from '../src/service/service.js';
import { DECISION_ID_PART_BITS, openStore, SCHEMA_VERSION, STORE_FILE, type StoreMigration } from '../src/store/sqlite.js';
import { DECISION_ID_PART_SIZE, ID_FILTER_SCHEME, IdFilter, IdHash } from '../src/store/id-filter.js';
import { pruneDecisionLog } from '../src/feedback/prune.js';
import { DecisionLog, ID_STATEMENT_ROWS, LogWriter } from '../src/feedback/decision-log.js';
import { CHUNK_MSGPACK, CHUNK_NDJSON, encodeLogChunk, encodeLogRows, readPayload } from '../src/feedback/log-rows.js';
import { FeedbackStore } from '../src/feedback/feedback.js';
import { trainingDataFromStore } from '../src/learn/from-store.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import type { Declaration } from '../src/model/schema.js';
import type { Decision } from '../src/decisions.js';
import { call, declarations, logRows, MEAT, tokensEnv } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-decision-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('decision log (service over loopback, worker pool)', () => {
  const dataDir = join(dir, 'live');
  let service: RunningService;
  let base: string;
  const start = async () => {
    service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 2, inlineMaxBytes: 0, metricsIntervalMs: 60_000 });
    base = service.url;
  };
  beforeAll(start);
  afterAll(async () => { await service?.close(); });

  it('logs every decision of a JSON batch with the declaration fields, committed before the answer', async () => {
    const decls = [MEAT, ...declarations(30, 1, 'J')];
    const r = await call(base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [...decls, { id: 'BAD', date: 'x' }] }) });
    expect(r.status).toBe(200);
    const decisions = r.json().decisions as Decision[];
    expect(decisions.length).toBe(decls.length);
    // read back through another connection right after the answer: committed already
    const rows = logRows(dataDir);
    expect(rows.length).toBe(decls.length);
    expect(rows.some((x) => x.declaration_id === 'BAD')).toBe(false);
    const byId = new Map(rows.map((x) => [x.declaration_id, x]));
    for (const [k, d] of decls.entries()) {
      const row = byId.get(d.id)!;
      const dec = decisions[k];
      expect(row.channel).toBe(dec.channel);
      expect(row.score).toBe(dec.score);
      expect(row.control_group).toBe(dec.controlGroup ? 1 : 0);
      expect(row.ruleset_version).toBe(dec.rulesetVersion);
      expect(JSON.parse(row.reasons)).toEqual(dec.reasons);
      expect([row.date, row.importer, row.declarant, row.hs, row.origin, row.office, row.transport_mode, row.customs_value, row.tax_rate, row.net_mass])
        .toEqual([d.date, d.importer, d.declarant ?? null, d.hs, d.origin, d.office, d.transportMode ?? null, d.customsValue, d.taxRate ?? null, d.netMass]);
      expect(Math.abs(row.decided_at - Date.now())).toBeLessThan(10 * 60_000);
    }
    const meat = byId.get(MEAT.id)!;
    expect(JSON.parse(meat.reasons).some((x: { code: string; profile?: string }) => x.code === 'PROFILE' && x.profile === 'SPS-MEAT-CN')).toBe(true);
  });

  it('logs MessagePack batches and both kinds of stream; re-scoring adds a row', async () => {
    const packed = declarations(20, 2, 'M');
    const r = await call(base, 'POST', '/v1/score', { role: 'port', type: 'application/msgpack', accept: 'application/json', body: Buffer.from(pack({ declarations: packed })) });
    expect(r.status).toBe(200);
    expect(logRows(dataDir, (x) => x.declaration_id.startsWith('M')).map((x) => x.declaration_id).sort()).toEqual(packed.map((d) => d.id).sort());
    // a MessagePack answer: the log holds the decisions the client received, field for field
    const native = declarations(20, 6, 'N');
    const rn = await call(base, 'POST', '/v1/score', { role: 'port', type: 'application/msgpack', accept: 'application/msgpack', body: Buffer.from(pack({ declarations: native })) });
    expect(rn.status).toBe(200);
    const answered = unpack(rn.body) as { rulesetVersion: string; decisions: Decision[]; errors: unknown[] };
    expect(answered.decisions.length).toBe(native.length);
    const nRows = logRows(dataDir, (x) => x.declaration_id.startsWith('N'));
    expect(nRows.map((x) => ({ id: x.declaration_id, channel: x.channel, score: x.score, controlGroup: x.control_group === 1, rulesetVersion: x.ruleset_version, reasons: JSON.parse(x.reasons) }))).toEqual(answered.decisions);

    const streamed = declarations(5000, 3, 'S');
    const ndjson = `${streamed.map((d) => JSON.stringify(d)).join('\n')}\n{"id":"S-bad"}\n`;
    const s = await call(base, 'POST', '/v1/score/stream', { role: 'port', type: 'application/x-ndjson', body: ndjson });
    expect(s.status).toBe(200);
    const out = s.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out.length).toBe(streamed.length + 1);
    const rows = logRows(dataDir, (x) => x.declaration_id.startsWith('S'));
    expect(rows.length).toBe(streamed.length);
    const channels = new Map(rows.map((x) => [x.declaration_id, x.channel]));
    for (const o of out.slice(0, -1)) expect(channels.get(o.id)).toBe(o.channel);

    const again = declarations(300, 4, 'P');
    const ms = await call(base, 'POST', '/v1/score/stream', { role: 'port', type: 'application/msgpack', body: Buffer.concat([...again, again[0]].map((d) => Buffer.from(pack(d)))) });
    expect(unpackMultiple(ms.body).length).toBe(again.length + 1);
    const pRows = logRows(dataDir, (x) => x.declaration_id.startsWith('P'));
    expect(pRows.length).toBe(again.length + 1);
    expect(pRows.filter((x) => x.declaration_id === again[0].id).length).toBe(2); // history kept
  });

  it('keeps the log across a restart on the same data directory', async () => {
    const before = logRows(dataDir);
    expect(before.length).toBeGreaterThan(0);
    await service.close();
    await start();
    expect(logRows(dataDir)).toEqual(before);
  });
});

describe('decision log off', () => {
  it('logs nothing for batches and streams', async () => {
    const dataDir = join(dir, 'off');
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, metricsIntervalMs: 60_000, decisionLog: false });
    try {
      expect(service.decisionLog).toBeUndefined();
      const r = await call(service.url, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [MEAT] }) });
      expect(r.status).toBe(200);
      const s = await call(service.url, 'POST', '/v1/score/stream', { role: 'port', type: 'application/x-ndjson', body: `${JSON.stringify(MEAT)}\n` });
      expect(s.status).toBe(200);
      expect(logRows(dataDir).length).toBe(0);
    } finally {
      await service.close();
    }
  });
});

describe('decision log writer', () => {
  it('in-thread writer: backpressure waits (never drops), rows survive close and reopen', async () => {
    const path = join(dir, 'inthread', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false, maxPendingBytes: 1 });
    const d = (id: string, v: string): Decision => ({ id, channel: 'yellow', score: 3, controlGroup: false, rulesetVersion: v, reasons: [{ code: 'PROFILE', profile: 'P1', version: 2, weight: 3 }] });
    const x: Declaration = { ...MEAT, id: 'A' };
    // maxPendingBytes 1: every append waits for the one before it to commit
    await Promise.all([1, 2, 3].map((k) => log.append(encodeLogRows([d('A', `${k}`.repeat(16))], [x], `${k}`.repeat(16)))));
    expect(log.stats).toEqual({ rows: 3, commits: 3, payloads: 3, failures: 0 });
    await log.close();
    await expect(log.append(encodeLogRows([d('A', 'a'.repeat(16))], [x], 'a'.repeat(16)))).rejects.toMatchObject({ code: 'SEL_ERR_NOT_READY' });
    const db = openStore(path);
    try {
      const rows = new DecisionLogReader(db).decisions('A');
      expect(rows.map((r) => r.rulesetVersion)).toEqual(['1111111111111111', '2222222222222222', '3333333333333333']);
      expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(rows[0]).toMatchObject({ declarationId: 'A', channel: 'yellow', declaration: { hs: MEAT.hs, taxRate: MEAT.taxRate } });
      expect(rows[0].reasons).toEqual(d('A', '').reasons);
    } finally {
      db.close();
    }
  });

  it('writer thread: concurrent appends are committed in groups, each acknowledged after its commit', async () => {
    const path = join(dir, 'thread', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path });
    const many = Array.from({ length: 50 }, (_, k) => ({ ...MEAT, id: `T${k}` }));
    const decisions = many.map((m): Decision => ({ id: m.id, channel: 'green', score: 0, controlGroup: false, rulesetVersion: 'f'.repeat(16), reasons: [] }));
    await Promise.all(many.map((m, k) => log.append(encodeLogRows([decisions[k]], [m], 'f'.repeat(16))).then(() => {
      const db = openStore(path); // committed: visible to another connection at once
      try { expect(new DecisionLogReader(db).decisions(m.id).map((x) => x.declarationId)).toEqual([m.id]); } finally { db.close(); }
    })));
    expect(log.stats.rows).toBe(50);
    expect(log.stats.payloads).toBe(50);
    expect(log.stats.commits).toBeLessThanOrEqual(50);
    await log.close();
  });
});

describe('decision log writer and the store\'s write lock', () => {
  it('waits for a lock another thread holds by trying again in short pauses (not in SQLite\'s busy handler), then commits', async () => {
    const path = join(dir, 'locked', STORE_FILE);
    openStore(path).close();
    const writer = new LogWriter(path);
    const sab = new SharedArrayBuffer(4);
    // another thread takes the write lock, says so, keeps it 150 ms and commits a row of its own
    const holder = new Worker(`
      const { workerData, parentPort } = require('node:worker_threads');
      const Database = require('better-sqlite3');
      const db = new Database(workerData.path);
      db.prepare('BEGIN IMMEDIATE').run();
      db.prepare("INSERT INTO traffic (day, scored) VALUES ('2026-01-01', 7)").run();
      Atomics.store(new Int32Array(workerData.sab), 0, 1);
      Atomics.wait(new Int32Array(workerData.sab), 0, 1, 150);
      db.prepare('COMMIT').run();
      db.close();
      parentPort.postMessage('done');
    `, { eval: true, workerData: { path, sab } });
    let failed: Error | undefined;
    const done = new Promise((resolve, reject) => { holder.once('message', resolve); holder.once('error', (e) => { failed = e; reject(e); }); });
    done.catch(() => undefined);
    const flag = new Int32Array(sab);
    while (Atomics.load(flag, 0) === 0 && !failed) await new Promise((r) => setTimeout(r, 1));
    if (failed) throw failed;
    try {
      // the writer's own connection does not wait in SQLite's busy handler (busy_timeout 0); commit() does, polling
      expect((writer as unknown as { db: { pragma(s: string, o: { simple: true }): number } }).db.pragma('busy_timeout', { simple: true })).toBe(0);
      const x: Declaration = { ...MEAT, id: 'L1' };
      expect(writer.commit([encodeLogRows([{ id: 'L1', channel: 'green', score: 0, controlGroup: false, rulesetVersion: 'e'.repeat(16), reasons: [] }], [x], 'e'.repeat(16))])).toBe(1);
      await done;
      const db = openStore(path);
      try {
        expect(new DecisionLogReader(db).decisions('L1').map((d) => d.seq)).toEqual([1]);
        expect(db.prepare("SELECT scored FROM traffic WHERE day = '2026-01-01'").pluck().get()).toBe(7);
      } finally {
        db.close();
      }
    } finally {
      writer.close();
      await holder.terminate();
    }
  });
});

describe('decision log layout: chunks and the id index', () => {
  const reasons: Decision['reasons'] = [{ code: 'PROFILE', profile: 'P1', version: 2, weight: 3, channel: 'yellow' }, { code: 'SCORE_THRESHOLD', channel: 'yellow', score: 3.5, threshold: 3 }];
  const decision = (id: string, v: string, score: number): Decision => ({ id, channel: 'yellow', score, controlGroup: score > 4, rulesetVersion: v, reasons });

  it('stores one chunk per payload, in either encoding, and reads every decision of an id back in order', async () => {
    const path = join(dir, 'layout', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const v1 = '1'.repeat(16), v2 = '2'.repeat(16);
    const x = (id: string, extra: Partial<Declaration> = {}): Declaration => ({ ...MEAT, id, ...extra });
    // chunk 1 (MessagePack decisions): A, B, and A again in the same chunk
    const c1 = [decision('A', v1, 1), decision('B', v1, 2), decision('A', v1, 3)];
    await log.append(encodeLogRows(c1, [x('A'), x('B', { declarant: undefined, quantity: 12, aeo: true }), x('A', { seller: 'S9', aeo: false })], v1));
    // chunk 2 (NDJSON decisions, as a JSON reply sends them): B and C
    const c2 = [decision('B', v2, 4.5), decision('C', v2, 5)];
    const ndjson = new TextEncoder().encode(c2.map((d) => `${JSON.stringify(d)}\n`).join(''));
    await log.append(encodeLogChunk(CHUNK_NDJSON, [ndjson], ['B', 'C'], [x('B'), x('C', { departure: 'DE', transportMode: '4' })], v2));
    expect(log.stats).toMatchObject({ rows: 5, payloads: 2 });
    await log.close();

    const db = openStore(path);
    try {
      expect(db.prepare('SELECT first_seq, count, ruleset_version, format FROM decision_chunks ORDER BY first_seq').all())
        .toEqual([{ first_seq: 1, count: 3, ruleset_version: v1, format: CHUNK_MSGPACK }, { first_seq: 4, count: 2, ruleset_version: v2, format: CHUNK_NDJSON }]);
      // one index row per decision, in the log's first part
      expect(db.prepare('SELECT part, declaration_id, seq FROM decision_ids ORDER BY seq').all())
        .toEqual([['A', 1], ['B', 2], ['A', 3], ['B', 4], ['C', 5]].map(([declaration_id, seq]) => ({ part: 0, declaration_id, seq })));
      const reader = new DecisionLogReader(db);
      const a = reader.decisions('A');
      expect(a.map((d) => [d.seq, d.score, d.rulesetVersion])).toEqual([[1, 1, v1], [3, 3, v1]]);
      expect(a[0]).toMatchObject({ declarationId: 'A', channel: 'yellow', controlGroup: false, reasons });
      expect(a[0].declaration).toEqual({ date: MEAT.date, office: MEAT.office, importer: MEAT.importer, declarant: MEAT.declarant, hs: MEAT.hs, origin: MEAT.origin, transportMode: MEAT.transportMode, customsValue: MEAT.customsValue, netMass: MEAT.netMass, taxRate: MEAT.taxRate });
      expect(a[1].declaration).toMatchObject({ seller: 'S9', aeo: false });
      const b = reader.decisions('B');
      expect(b.map((d) => [d.seq, d.rulesetVersion, d.controlGroup])).toEqual([[2, v1, false], [4, v2, true]]);
      expect(b[0].declaration).toMatchObject({ quantity: 12, aeo: true });
      expect('declarant' in b[0].declaration).toBe(false);
      expect(reader.decisions('C')[0].declaration).toMatchObject({ departure: 'DE', transportMode: '4' });
      expect(reader.latest('B')?.seq).toBe(4);
      expect(reader.latest('B', v1)?.seq).toBe(2);
      expect(reader.latest('B', 'f'.repeat(16))).toBeUndefined();
      expect(reader.decisions('NONE')).toEqual([]);
      expect([...reader.scan()].map((d) => `${d.seq}:${d.declarationId}`)).toEqual(['1:A', '2:B', '3:A', '4:B', '5:C']);
    } finally {
      db.close();
    }
  });

  it('indexes a payload of more ids than one id statement takes: every id at its row, an id repeated across the statements found at each', async () => {
    const path = join(dir, 'split', STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const v1 = '1'.repeat(16);
    // two whole statements and a part of a third; 'DUP' at the first row, on both sides of the first boundary and in the last statement
    const n = 2 * ID_STATEMENT_ROWS + 10;
    const dups = [0, ID_STATEMENT_ROWS - 1, ID_STATEMENT_ROWS, n - 1];
    const ids = Array.from({ length: n }, (_, i) => (dups.includes(i) ? 'DUP' : `X${i}`));
    await log.append(encodeLogRows(ids.map((id, i) => decision(id, v1, i / n)), ids.map((id) => ({ ...MEAT, id })), v1));
    // a second payload after it: its seqs follow the first payload's n rows
    await log.append(encodeLogRows([decision('X5', v1, 9)], [{ ...MEAT, id: 'X5' }], v1));
    await log.close();
    const db = openStore(path);
    try {
      // row k of the first chunk is seq 1 + k, indexed under its own id; then the second payload's row
      const rows = db.prepare('SELECT declaration_id, seq FROM decision_ids ORDER BY seq').all() as { declaration_id: string; seq: number }[];
      expect(rows).toEqual([...ids.map((id, k) => ({ declaration_id: id, seq: 1 + k })), { declaration_id: 'X5', seq: n + 1 }]);
      const reader = new DecisionLogReader(db);
      expect(reader.decisions('DUP').map((d) => d.seq)).toEqual(dups.map((k) => 1 + k));
      expect(reader.decisions('X5').map((d) => d.seq)).toEqual([6, n + 1]);
    } finally {
      db.close();
    }
  });

  it('finds the decisions of an id in every part of the log and reads them back oldest first', async () => {
    const path = join(dir, 'parts', STORE_FILE);
    const db0 = openStore(path);
    // a chunk just below the end of the first part (its rows are never read): the next seqs cross into the second part
    const last = 2 ** DECISION_ID_PART_BITS - 4;
    db0.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, 1, 0, ?, 1, ?)').run(last, 'f'.repeat(16), Buffer.alloc(8));
    db0.close();
    const log = new DecisionLog({ storePath: path, thread: false });
    const v1 = '1'.repeat(16);
    const ids = ['A', 'B', 'A', 'C', 'A', 'B', 'A'];
    await log.append(encodeLogRows(ids.map((id, k) => decision(id, v1, k)), ids.map((id) => ({ ...MEAT, id })), v1));
    await log.close();
    const db = openStore(path);
    try {
      const parts = db.prepare('SELECT part, declaration_id, seq FROM decision_ids ORDER BY seq').all() as { part: number; declaration_id: string; seq: number }[];
      expect(parts).toEqual(ids.map((id, k) => ({ part: Math.floor((last + 1 + k) / 2 ** DECISION_ID_PART_BITS), declaration_id: id, seq: last + 1 + k })));
      expect(new Set(parts.map((r) => r.part))).toEqual(new Set([0, 1]));
      const reader = new DecisionLogReader(db);
      const seqsOf = (id: string) => ids.flatMap((x, k) => (x === id ? [last + 1 + k] : []));
      for (const id of ['A', 'B', 'C']) expect(reader.decisions(id).map((d) => [d.seq, d.declarationId, d.score])).toEqual(seqsOf(id).map((seq) => [seq, id, seq - last - 1]));
      expect(reader.latest('A')?.seq).toBe(last + 7);
      expect(reader.decisions('D')).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('migrates a store of the id-chain layout: every decision of each id moves into the id index, readable as before', async () => {
    const path = join(dir, 'chain', STORE_FILE);
    const old = openStore(path, 7); // the layout of migration 7, written as that version's writer did
    const v1 = '1'.repeat(16);
    const insertChunk = old.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, ?, ?, ?, ?, ?)');
    const insertIds = old.prepare('INSERT INTO decision_latest (declaration_id, seq) SELECT value, ? + key FROM json_each(?) WHERE true ON CONFLICT (declaration_id) DO UPDATE SET seq = excluded.seq');
    const chunks = [['A', 'B', 'A'], ['C'], ['B', 'A', 'D']];
    let seq = 1;
    for (const ids of chunks) {
      const { header, chunk } = readPayload(encodeLogRows(ids.map((id) => decision(id, v1, seq)), ids.map((id) => ({ ...MEAT, id })), v1));
      insertChunk.run(seq, header.n, header.t, header.v, header.f, Buffer.from(chunk));
      insertIds.run(seq, header.ids);
      seq += header.n;
    }
    expect(old.prepare('SELECT count(*) FROM decision_previous').pluck().get()).toBe(3);
    old.close();

    // the upgrade is told, before and after each migration (serve prints it); a new or an up-to-date store's opening is not
    const events: StoreMigration[] = [];
    const db = openStore(path, SCHEMA_VERSION, { onMigration: (m) => events.push(m) });
    const steps = Array.from({ length: SCHEMA_VERSION - 7 }, (_, k) => [{ p: path, from: 7 + k, to: 8 + k, done: false }, { p: path, from: 7 + k, to: 8 + k, done: true }]).flat();
    expect(events.map(({ path: p, from, to, done }) => ({ p, from, to, done }))).toEqual(steps);
    expect(events[1].ms).toBeGreaterThan(0);
    openStore(path, SCHEMA_VERSION, { onMigration: (m) => events.push(m) }).close();
    openStore(join(dir, 'chain-new', STORE_FILE), SCHEMA_VERSION, { onMigration: (m) => events.push(m) }).close();
    expect(events).toHaveLength(steps.length);
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name IN ('decision_latest', 'decision_previous', 'decision_latest_previous')").all()).toEqual([]);
      expect(db.prepare('SELECT declaration_id, seq FROM decision_ids ORDER BY seq').all())
        .toEqual(chunks.flat().map((id, k) => ({ declaration_id: id, seq: 1 + k })));
      const reader = new DecisionLogReader(db);
      expect(reader.decisions('A').map((d) => d.seq)).toEqual([1, 3, 6]);
      expect(reader.decisions('B').map((d) => d.seq)).toEqual([2, 5]);
      expect(reader.latest('D')).toMatchObject({ seq: 7, declarationId: 'D', rulesetVersion: v1 });
    } finally {
      db.close();
    }
    // and the writer goes on after them
    const log = new DecisionLog({ storePath: path, thread: false });
    await log.append(encodeLogRows([decision('A', v1, 9)], [{ ...MEAT, id: 'A' }], v1));
    await log.close();
    const again = openStore(path);
    try {
      expect(new DecisionLogReader(again).decisions('A').map((d) => d.seq)).toEqual([1, 3, 6, 8]);
    } finally {
      again.close();
    }
  });

  it('opens a store that another connection migrates while this one waits to: each migration runs once', () => {
    const path = join(dir, 'race', STORE_FILE);
    openStore(path, 7).close();
    let other: ReturnType<typeof openStore> | undefined;
    // as this opening is about to run its first migration, another opening runs them all
    const db = openStore(path, SCHEMA_VERSION, { onMigration: (m) => { if (!m.done && !other) other = openStore(path); } });
    try {
      expect(other!.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'decision_ids'").pluck().get()).toBe(1);
    } finally {
      db.close();
      other?.close();
    }
  });

  it('refuses a store of a newer engine before changing anything of it (its journal mode stays)', () => {
    const path = join(dir, 'newer', STORE_FILE);
    openStore(path, 0).close(); // makes the directory and an empty file
    rmSync(path, { force: true });
    const raw = new Database(path);
    raw.pragma('journal_mode = DELETE');
    raw.exec('CREATE TABLE t (x)');
    raw.pragma(`user_version = ${SCHEMA_VERSION + 32}`);
    raw.close();
    let code: string | undefined;
    try { openStore(path).close(); } catch (e) { code = (e as { code?: string }).code; }
    expect(code).toBe('SEL_ERR_STORAGE');
    const after = new Database(path, { readonly: true });
    try {
      expect(after.pragma('journal_mode', { simple: true })).toBe('delete');
      expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION + 32);
    } finally {
      after.close();
    }
  });

  it('migrates a pruned store of the id-chain layout without the pruned decisions its links still name', async () => {
    const path = join(dir, 'chain-pruned', STORE_FILE);
    const old = openStore(path, 7);
    const v1 = '1'.repeat(16);
    const insertChunk = old.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, ?, ?, ?, ?, ?)');
    const insertIds = old.prepare('INSERT INTO decision_latest (declaration_id, seq) SELECT value, ? + key FROM json_each(?) WHERE true ON CONFLICT (declaration_id) DO UPDATE SET seq = excluded.seq');
    let seq = 1;
    for (const ids of [['A', 'B', 'E'], ['C'], ['B', 'A', 'D']]) {
      const { header, chunk } = readPayload(encodeLogRows(ids.map((id) => decision(id, v1, seq)), ids.map((id) => ({ ...MEAT, id })), v1));
      insertChunk.run(seq, header.n, header.t, header.v, header.f, Buffer.from(chunk));
      insertIds.run(seq, header.ids);
      seq += header.n;
    }
    // what that version's prune did with a cut at seq 4: the first chunk, the links from its decisions, the ids left with none
    old.exec('DELETE FROM decision_chunks WHERE first_seq < 4; DELETE FROM decision_previous WHERE seq < 4; DELETE FROM decision_latest WHERE seq < 4;');
    expect(old.prepare('SELECT seq, previous FROM decision_previous ORDER BY seq').all()).toEqual([{ seq: 5, previous: 2 }, { seq: 6, previous: 1 }]);
    old.close();
    const db = openStore(path);
    try {
      expect(db.prepare('SELECT declaration_id, seq FROM decision_ids ORDER BY seq').all())
        .toEqual([{ declaration_id: 'C', seq: 4 }, { declaration_id: 'B', seq: 5 }, { declaration_id: 'A', seq: 6 }, { declaration_id: 'D', seq: 7 }]);
      expect(new DecisionLogReader(db).decisions('A').map((d) => d.seq)).toEqual([6]);
    } finally {
      db.close();
    }
  });

  it('migrates a store of the earlier layout: its decision_log rows stay readable, joined by feedback and training, and new seqs follow them', async () => {
    const path = join(dir, 'migrate', STORE_FILE);
    const old = openStore(path, 6); // the schema the earlier version wrote
    const v0 = '0'.repeat(16), v1 = '1'.repeat(16);
    const insert = old.prepare(`INSERT INTO decision_log (declaration_id, decided_at, ruleset_version, score, channel, control_group, reasons, date, office, importer, declarant, seller, hs, origin, departure, transport_mode, customs_value, net_mass, quantity, tax_rate, aeo)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const decls = declarations(16, 5, 'OLD');
    expect(decls.length).toBeGreaterThanOrEqual(10);
    for (const d of decls) insert.run(d.id, Date.UTC(2026, 10, 20), v0, 2.5, 'yellow', 0, JSON.stringify(reasons), d.date, d.office, d.importer, d.declarant ?? null, d.seller ?? null, d.hs, d.origin, d.departure ?? null, d.transportMode ?? null, d.customsValue, d.netMass, d.quantity ?? null, d.taxRate ?? null, d.aeo === undefined ? null : d.aeo ? 1 : 0);
    expect(old.pragma('user_version', { simple: true })).toBe(6);
    old.close();

    // the new version opens it (migration 7) and logs a new decision of one of those ids
    const log = new DecisionLog({ storePath: path, thread: false });
    await log.append(encodeLogRows([decision(decls[0].id, v1, 6)], [decls[0]], v1));
    await log.close();
    const db = openStore(path);
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const reader = new DecisionLogReader(db);
      const first = reader.decisions(decls[0].id);
      const next = decls.length + 1; // the first seq after the old rows
      expect(first.map((d) => [d.seq, d.rulesetVersion])).toEqual([[1, v0], [next, v1]]);
      const { id: _id, description: _description, ...fields } = decls[0];
      expect(first[0].declaration).toEqual(fields);
      expect(first[0].reasons).toEqual(reasons);
      expect(first[1].declaration).toEqual(first[0].declaration);
      expect(new DecisionLogReader(db).decisions(decls[1].id).map((d) => d.seq)).toEqual([2]);

      // feedback joins to the latest decision, or to the old one by its ruleset version
      const store = new FeedbackStore(db);
      const item = { declarationId: decls[0].id, date: '2026-11-24', channel: 'yellow', inspected: true, outcome: 'discrepancy' };
      expect(store.record([item], 'test').results[0].decision).toMatchObject({ seq: next, rulesetVersion: v1 });
      expect(store.record([{ ...item, rulesetVersion: v0 }], 'test').results[0]).toMatchObject({ status: 'replaced', decision: { seq: 1, rulesetVersion: v0 } });
      expect(store.show(decls[0].id).decisions.map((d) => d.seq)).toEqual([1, next]);
      // training from the store reads the old rows like the new ones
      store.record(decls.slice(1).map((d, i) => ({ declarationId: d.id, date: '2026-11-24', channel: 'green', inspected: true, outcome: i % 3 === 0 ? 'discrepancy' : 'no-discrepancy' })), 'test');
      const training = trainingDataFromStore(db);
      expect(training.rows).toBe(decls.length);
      expect(training.positives).toBe(1 + Math.ceil((decls.length - 1) / 3));
    } finally {
      db.close();
    }
  });

  describe('filters of the id index\'s sealed parts (migration 9)', () => {
    const SIZE = DECISION_ID_PART_SIZE;
    const v1 = '1'.repeat(16);
    const payload = (ids: string[], score = 1) => encodeLogRows(ids.map((id) => decision(id, v1, score)), ids.map((id) => ({ ...MEAT, id })), v1);
    const filterOf = (db: ReturnType<typeof openStore>, part: number) => {
      const row = db.prepare('SELECT scheme, bits FROM decision_id_filters WHERE part = ?').get(part) as { scheme: number; bits: Buffer } | undefined;
      return row && { scheme: row.scheme, filter: new IdFilter(new Uint8Array(row.bits)) };
    };
    /** A store whose log ends just below the end of part 0: one decision of `id` at seq SIZE - 6 (its chunk's rows are never read). */
    const nearEnd = (path: string, id: string) => {
      const db = openStore(path);
      db.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, 1, 0, ?, 1, ?)').run(SIZE - 6, v1, Buffer.alloc(8));
      db.prepare('INSERT INTO decision_ids (part, declaration_id, seq) VALUES (0, ?, ?)').run(id, SIZE - 6);
      db.close();
    };

    it('seals a part\'s filter with the commit that leaves it, holding the ids written before a restart and by another writer', async () => {
      const path = join(dir, 'filters', STORE_FILE);
      nearEnd(path, 'OLD');
      // a first writer: A, B at SIZE - 5, SIZE - 4; part 0 stays open, no filter yet
      const first = new LogWriter(path);
      first.commit([payload(['A', 'B'])]);
      // a second writer on the same file, in between: Q at SIZE - 3
      const other = new LogWriter(path);
      other.commit([payload(['Q'])]);
      other.close();
      const db = openStore(path);
      try {
        expect(db.prepare('SELECT count(*) FROM decision_id_filters').pluck().get()).toBe(0);
        // the first writer again: C, D at SIZE - 2, SIZE - 1 (part 0's last), then E, A into part 1
        first.commit([payload(['C', 'D']), payload(['E', 'A'])]);
        first.close();
        const f0 = filterOf(db, 0)!;
        expect(f0.scheme).toBe(ID_FILTER_SCHEME);
        // every id of part 0, from the store before this writer, from the other writer, and its own
        for (const id of ['OLD', 'A', 'B', 'Q', 'C', 'D']) expect(f0.filter.mayHold(new IdHash(id))).toBe(true);
        expect(f0.filter.mayHold(new IdHash('E'))).toBe(false);
        // the open part has none
        expect(filterOf(db, 1)).toBeUndefined();

        const reader = new DecisionLogReader(db);
        expect(reader.seqs('A')).toEqual([SIZE - 5, SIZE + 1]);
        expect(reader.seqs('Q')).toEqual([SIZE - 3]);
        expect(reader.latest('B')?.seq).toBe(SIZE - 4);
        expect(reader.latest('A')?.seq).toBe(SIZE + 1);
        expect(reader.seqs('Z')).toEqual([]);
        // the reader trusts the filter: a part whose filter says no is not searched
        db.prepare('UPDATE decision_id_filters SET bits = zeroblob(length(bits)) WHERE part = 0').run();
        const trusting = new DecisionLogReader(db);
        expect(trusting.seqs('A')).toEqual([SIZE + 1]);
        expect(trusting.seqs('B')).toEqual([]);
        // a filter of a scheme it does not know is not trusted: the part is searched
        db.prepare('UPDATE decision_id_filters SET scheme = ? WHERE part = 0').run(ID_FILTER_SCHEME + 1);
        expect(new DecisionLogReader(db).seqs('B')).toEqual([SIZE - 4]);
      } finally {
        db.close();
      }
    });

    it('migration 9 builds the filters of the parts an existing log has sealed; prune drops the filters of the parts it empties', () => {
      const path = join(dir, 'filters-v8', STORE_FILE);
      const old = openStore(path, 8);
      const day = Date.UTC(2026, 10, 1);
      const insertChunk = old.prepare('INSERT INTO decision_chunks (first_seq, count, decided_at, ruleset_version, format, rows) VALUES (?, ?, ?, ?, 1, ?)');
      const insertId = old.prepare('INSERT INTO decision_ids (part, declaration_id, seq) VALUES (?, ?, ?)');
      // a chunk of 2 decisions at the start of each of parts 0, 1, 2, a day apart; part 2 is open
      const layout = [['X', 'Y'], ['Y', 'Z'], ['X', 'W']];
      layout.forEach((ids, part) => {
        const first = part === 0 ? 1 : part * SIZE;
        insertChunk.run(first, ids.length, day + part * 86_400_000, v1, Buffer.alloc(8));
        ids.forEach((id, k) => insertId.run(part, id, first + k));
      });
      old.close();

      const db = openStore(path);
      try {
        expect(db.prepare('SELECT part FROM decision_id_filters ORDER BY part').pluck().all()).toEqual([0, 1]);
        for (const part of [0, 1]) {
          const { filter } = filterOf(db, part)!;
          for (const id of ['X', 'Y', 'Z', 'W']) expect(filter.mayHold(new IdHash(id))).toBe(layout[part].includes(id));
        }
        const reader = new DecisionLogReader(db);
        expect(reader.seqs('X')).toEqual([1, 2 * SIZE]);
        expect(reader.seqs('Y')).toEqual([2, SIZE]);
        expect(reader.seqs('Z')).toEqual([SIZE + 1]);

        // prune before part 2's day: parts 0 and 1 are emptied, their filters go
        const report = pruneDecisionLog(db, { before: day + 2 * 86_400_000 });
        expect(report).toMatchObject({ cut: 2 * SIZE, decisions: 4, ids: 4 });
        expect(db.prepare('SELECT count(*) FROM decision_id_filters').pluck().get()).toBe(0);
        expect(reader.seqs('X')).toEqual([2 * SIZE]);
        expect(reader.seqs('Y')).toEqual([]);
      } finally {
        db.close();
      }
    });
  });
});
