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
import { pack, unpackMultiple } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type RunningService } from '../src/service/service.js';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLog } from '../src/feedback/decision-log.js';
import { encodeLogRows } from '../src/feedback/log-rows.js';
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
    expect(logRows(dataDir, "declaration_id LIKE 'M%'").map((x) => x.declaration_id).sort()).toEqual(packed.map((d) => d.id).sort());

    const streamed = declarations(5000, 3, 'S');
    const ndjson = `${streamed.map((d) => JSON.stringify(d)).join('\n')}\n{"id":"S-bad"}\n`;
    const s = await call(base, 'POST', '/v1/score/stream', { role: 'port', type: 'application/x-ndjson', body: ndjson });
    expect(s.status).toBe(200);
    const out = s.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out.length).toBe(streamed.length + 1);
    const rows = logRows(dataDir, "declaration_id LIKE 'S%'");
    expect(rows.length).toBe(streamed.length);
    const channels = new Map(rows.map((x) => [x.declaration_id, x.channel]));
    for (const o of out.slice(0, -1)) expect(channels.get(o.id)).toBe(o.channel);

    const again = declarations(300, 4, 'P');
    const ms = await call(base, 'POST', '/v1/score/stream', { role: 'port', type: 'application/msgpack', body: Buffer.concat([...again, again[0]].map((d) => Buffer.from(pack(d)))) });
    expect(unpackMultiple(ms.body).length).toBe(again.length + 1);
    const pRows = logRows(dataDir, "declaration_id LIKE 'P%'");
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
    expect(log.stats).toEqual({ rows: 3, commits: 3, payloads: 3 });
    await log.close();
    await expect(log.append(encodeLogRows([d('A', 'a'.repeat(16))], [x], 'a'.repeat(16)))).rejects.toMatchObject({ code: 'SEL_ERR_NOT_READY' });
    const db = openStore(path);
    try {
      const rows = db.prepare('SELECT declaration_id, ruleset_version, channel, reasons, hs, tax_rate FROM decision_log ORDER BY seq').all() as Record<string, unknown>[];
      expect(rows.map((r) => r.ruleset_version)).toEqual(['1111111111111111', '2222222222222222', '3333333333333333']);
      expect(rows[0]).toMatchObject({ declaration_id: 'A', channel: 'yellow', hs: MEAT.hs, tax_rate: MEAT.taxRate });
      expect(JSON.parse(rows[0].reasons as string)).toEqual(d('A', '').reasons);
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
      try { expect(db.prepare('SELECT COUNT(*) AS n FROM decision_log WHERE declaration_id = ?').get(m.id)).toEqual({ n: 1 }); } finally { db.close(); }
    })));
    expect(log.stats.rows).toBe(50);
    expect(log.stats.payloads).toBe(50);
    expect(log.stats.commits).toBeLessThanOrEqual(50);
    await log.close();
  });
});
