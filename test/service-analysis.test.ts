/**
 * The analyst routes: peer snapshots (GET/PUT /v1/peers), deviation studies
 * and evaluations, through Fastify's inject with in-process scoring.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { generateDeclarations } from '../src/generate/synthetic.js';
import { toBatch } from '../src/model/columnar.js';
import { PeerTableBuilder } from '../src/peers/peer-groups.js';
import { encodeSnapshot, loadPeerTables, lockPeerSnapshot } from '../src/peers/peer-store.js';
import type { Metrics } from '../src/service/metrics.js';
import { prepareDataDir, RulesetSource } from '../src/service/state.js';
import { inProcessService, type InProcessService } from './service-helpers.js';

const TOKENS = { port: 'port-token-0123456789abcdef', analyst: 'analyst-token-0123456789abcdef', admin: 'admin-token-0123456789abcdef' };
const auth = (role: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[role]}` });
const dir = mkdtempSync(join(tmpdir(), 'sel-analysis-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OPTS = { seed: 21, hsCodes: 25, fraudRate: { undervaluation: 0.05, riskyPair: 0, trader: 0 } };
const rows = [...generateDeclarations({ ...OPTS, rows: 7000 })];
const history = rows.slice(0, 5000);
const recent = rows.slice(5000);

/** A valid profile set of one, for the Accept checks of an import. */
const ACCEPT_SET = { profiles: [{ id: 'ACCEPT-1', title: 'Accept check', riskArea: 'valuation', weight: 1, conditions: { hs: ['85'] } }] };

describe('analysis routes', () => {
  let app: FastifyInstance;
  let engine: Engine;
  let metrics: Metrics;
  let files: Awaited<ReturnType<typeof prepareDataDir>>;
  let service: InProcessService;

  beforeAll(async () => {
    service = await inProcessService(join(dir, 'data'), { tokens: Object.entries(TOKENS).map(([r, t]) => `${r}:${t}`).join(','), server: { bodyLimit: 32 * 1024 * 1024 } });
    ({ app, engine, metrics, files } = service);
  });
  afterAll(() => service.close());

  it('reports the active snapshot, to analysts and admins only', async () => {
    const r = await app.inject({ url: '/v1/peers', headers: auth('analyst') });
    expect(r.statusCode).toBe(200);
    expect(r.json().version).toBe(loadPeerTables(files.peersPath).info!.version);
    expect(r.json().foldable).toBe(true);
    expect((await app.inject({ url: '/v1/peers', headers: auth('port') })).statusCode).toBe(403);
    expect((await app.inject({ url: '/v1/ruleset', headers: auth('admin') })).json().peers).toBe(r.json().version);
  });

  it('swaps in an uploaded snapshot durably; a damaged one changes nothing', async () => {
    const b = new PeerTableBuilder();
    b.add(toBatch(history.map((r) => r.declaration)).batch);
    b.addSource('history', history.length);
    const bytes = encodeSnapshot(b.snapshot(), 'msgpack');
    const version = b.snapshot().info.version || (() => { const s = b.snapshot(); encodeSnapshot(s, 'json'); return s.info.version; })();
    const before = engine.rulesetVersion;

    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 3] ^= 0xff;
    const onDisk = readFileSync(files.peersPath);
    for (const [body, code] of [[damaged, 'SEL_ERR_PEERS_CORRUPT'], [Buffer.from(JSON.stringify({ format: 'selectivity-peers', formatVersion: 7 })), 'SEL_ERR_PEERS_MISMATCH']] as const) {
      const r = await app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...auth('analyst'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: body });
      expect(r.statusCode).toBeGreaterThanOrEqual(400);
      expect(r.json().error.code).toBe(code);
    }
    expect(engine.rulesetVersion).toBe(before);
    expect(readFileSync(files.peersPath).equals(onDisk)).toBe(true);
    expect((await app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...auth('port'), 'content-type': 'application/msgpack' }, payload: bytes })).statusCode).toBe(403);
    // a `peers update` of the same file holds its lock: 409, nothing written, nothing swapped
    const held = lockPeerSnapshot(files.peersPath, 'selectivity peers update');
    try {
      const busy = await app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...auth('analyst'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: bytes });
      expect(busy.statusCode).toBe(409);
      expect(busy.json().error).toMatchObject({ code: 'SEL_ERR_PEERS_BUSY', details: { field: 'snapshot' } });
      expect(busy.json().error.message).toContain('selectivity peers update');
    } finally {
      held.release();
    }
    expect(engine.rulesetVersion).toBe(before);
    expect(readFileSync(files.peersPath).equals(onDisk)).toBe(true);

    const ok = await app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...auth('analyst'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: bytes });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().peers.version).toBe(version);
    expect(engine.rulesetVersion).not.toBe(before);
    // written before the answer: a restart (a new source over the same files) loads the same snapshot
    const again = new RulesetSource(files);
    const ruleset = await again.load();
    expect(ruleset.peers.info!.version).toBe(version);
    expect(ruleset.peers.info!.rows).toBe(history.length);
  });

  it('studies posted declarations against the active snapshot: JSON, HTML and CSV', async () => {
    const declarations = recent.map((r) => r.declaration);
    const r = await app.inject({ method: 'POST', url: '/v1/studies?top=20&rankBy=unitValue&direction=under', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
    const report = r.json();
    expect(r.statusCode, r.body).toBe(200);
    expect(report.scored).toBe(declarations.length);
    expect(report.top).toHaveLength(20);
    const planted = new Set(recent.filter((x) => x.fraudType === 'undervaluation').map((x) => x.declaration.id));
    expect(report.top.filter((t: { id: string }) => planted.has(t.id)).length).toBeGreaterThan(10);
    expect(report.peers.version).toBe((await app.inject({ url: '/v1/peers', headers: auth('analyst') })).json().version);

    const html = await app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('admin'), 'content-type': 'application/json', accept: 'text/html' }, payload: { declarations } });
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.body).toContain('<canvas');
    const ndjson = declarations.map((d) => JSON.stringify(d)).join('\n');
    const csv = await app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('analyst'), 'content-type': 'application/x-ndjson', accept: 'text/csv' }, payload: ndjson });
    expect(csv.statusCode).toBe(200);
    expect(csv.body.trim().split('\n')).toHaveLength(6);

    expect((await app.inject({ method: 'POST', url: '/v1/studies', headers: { ...auth('port'), 'content-type': 'application/json' }, payload: { declarations } })).statusCode).toBe(403);
    // what selectivity study refuses, the route refuses the same way: SEL_ERR_OPTION_INVALID naming the option
    for (const [q, field] of [['rankBy=price', 'rankBy'], ['direction=sideways', 'direction'], ['top=abc', 'top'], ['top=0', 'top'], ['top=', 'top'], ['zThreshold=5000', 'zThreshold'], ['zThreshold=x', 'zThreshold']]) {
      const badQuery = await app.inject({ method: 'POST', url: `/v1/studies?${q}`, headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
      expect(badQuery.statusCode, q).toBe(400);
      expect(badQuery.json().error, q).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field } });
      // top: the HTTP limit and the text sent (it read 'an integer in [1, 100000]', got NaN)
      if (field === 'top') expect(badQuery.json().error.details, q).toMatchObject({ expected: 'an integer in [1, 5000]', got: q.slice(4) });
    }
    // an unknown query parameter is still refused by the schema
    expect((await app.inject({ method: 'POST', url: '/v1/studies?bogus=1', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } })).json().error.code).toBe('SEL_ERR_REQUEST_INVALID');
    const badColumns = await app.inject({ method: 'POST', url: '/v1/studies?columns=/etc/passwd', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
    expect(badColumns.json().error).toMatchObject({ code: 'SEL_ERR_COLUMNS_INVALID', details: { field: 'columns' } });
    // a name on Object.prototype is no preset either
    const proto = await app.inject({ method: 'POST', url: '/v1/studies?columns=constructor', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
    expect(proto.json().error).toMatchObject({ code: 'SEL_ERR_COLUMNS_INVALID', details: { field: 'columns' } });
    // an Accept no answer fits: 406, as the other routes (it answered JSON)
    const xml = await app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('analyst'), 'content-type': 'application/json', accept: 'application/xml' }, payload: { declarations } });
    expect(xml.statusCode).toBe(406);
    expect(xml.json().error).toMatchObject({ code: 'SEL_ERR_NOT_ACCEPTABLE', details: { field: 'accept' } });
    // Accept as RFC 9110 weighs it: q 0 refuses a type, the highest q wins, a type that merely contains "json" is not JSON
    for (const [accept, type] of [['text/html;q=0, application/json', 'application/json'], ['application/json, text/csv;q=0.1', 'application/json'], ['text/csv;q=0.9, text/html', 'text/html'], ['text/*;q=0.5, application/json;q=0.4', 'text/html'], ['*/*', 'application/json']] as const) {
      const r = await app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('analyst'), 'content-type': 'application/json', accept }, payload: { declarations } });
      expect(r.statusCode, accept).toBe(200);
      expect(r.headers['content-type'], accept).toMatch(new RegExp(`^${type}`));
    }
    for (const accept of ['application/x-ndjson', 'application/json;q=0, text/html;q=0, text/csv;q=0']) {
      expect((await app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('analyst'), 'content-type': 'application/json', accept }, payload: { declarations } })).statusCode, accept).toBe(406);
    }
    // a write that answers JSON only refuses an Accept it cannot meet before it writes anything
    const before = (await app.inject({ url: '/v1/profiles', headers: auth('analyst') })).json();
    const refused = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: { ...auth('analyst'), accept: 'text/html' }, payload: ACCEPT_SET });
    expect(refused.statusCode).toBe(406);
    expect(refused.json().error).toMatchObject({ code: 'SEL_ERR_NOT_ACCEPTABLE', details: { field: 'accept', expected: 'application/json' } });
    expect((await app.inject({ url: '/v1/profiles', headers: auth('analyst') })).json()).toEqual(before);
    // the same import with an Accept it can meet is made
    expect((await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: { ...auth('analyst'), accept: 'text/html;q=0.5, application/json' }, payload: ACCEPT_SET })).statusCode).toBe(200);
    // over HTTP a study lists at most 5,000 declarations (100,000 as HTML was 170 MB built on the main thread)
    const tooMany = await app.inject({ method: 'POST', url: '/v1/studies?top=5001', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().error).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'top' } });
    // one analysis at a time: a second one meanwhile is 503 with Retry-After, and runs once the first is done
    const study = () => app.inject({ method: 'POST', url: '/v1/studies?top=5', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { declarations } });
    const [first, second] = await Promise.all([study(), study()]);
    expect(first.statusCode).toBe(200);
    expect(second.statusCode).toBe(503);
    expect(second.headers['retry-after']).toBe('5');
    expect(second.json().error).toMatchObject({ code: 'SEL_ERR_OVERLOADED', details: { field: 'analyses' } });
    expect((await study()).statusCode).toBe(200);
  });

  it('evaluates on posted labelled declarations without touching the active ruleset', async () => {
    const before = engine.rulesetVersion;
    const label = (x: (typeof rows)[number]) => ({ ...x.declaration, fraud: x.fraud });
    const r = await app.inject({ method: 'POST', url: '/v1/evaluations', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { train: history.map(label), test: recent.map(label), label: 'fraud', top: [0.05, 0.1] } });
    expect(r.statusCode, r.body).toBe(200);
    const e = r.json();
    expect(e.n).toBe(recent.length);
    expect(e.positives).toBe(recent.filter((x) => x.fraud === 1).length);
    expect(e.cuts.map((c: { fraction: number }) => c.fraction)).toEqual([0.05, 0.1]);
    expect(e.cuts[0].precision).toBeGreaterThan(3 * e.random[0].precision);
    expect(engine.rulesetVersion).toBe(before);
    // the request's parts, not the server's temporary paths
    expect(e.train.files).toEqual(['train.ndjson']);
    expect(e.test.file).toBe('test.ndjson');
    expect(r.body).not.toContain(tmpdir());
    // the same sets as NDJSON text give the same figures (a text was always read as CSV: SEL_ERR_CSV_HEADER)
    const nd = (xs: (typeof rows)[number][]) => xs.map((x) => JSON.stringify(label(x))).join('\n');
    const asText = await app.inject({ method: 'POST', url: '/v1/evaluations', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { train: nd(history), test: nd(recent), label: 'fraud', top: [0.05, 0.1] } });
    expect(asText.statusCode, asText.body).toBe(200);
    expect(asText.json().cuts).toEqual(e.cuts);
    // nor in an error about a file the server wrote
    const few = await app.inject({ method: 'POST', url: '/v1/evaluations', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { file: recent.slice(0, 1).map(label), label: 'fraud' } });
    expect(few.statusCode).toBe(400);
    expect(few.json().error.message).toMatch(/^file\.ndjson has 1 valid declarations/);
    expect(few.body).not.toContain(tmpdir());
    const bad = await app.inject({ method: 'POST', url: '/v1/evaluations', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: { test: recent.map(label), label: 'fraud' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.details.field).toBe('train');
    // what selectivity evaluate refuses, the route refuses the same way: SEL_ERR_OPTION_INVALID naming the option
    const file = recent.map(label);
    for (const [body, field] of [[{ file }, 'label'], [{ file, label: '' }, 'label'], [{ file, label: 'fraud', split: 'half' }, 'split'], [{ file, label: 'fraud', split: 1 }, 'split'], [{ file, label: 'fraud', top: [5] }, 'top'], [{ file, label: 'fraud', top: [] }, 'top'], [{ file, label: 'fraud', top: ['x'] }, 'top']] as const) {
      const r2 = await app.inject({ method: 'POST', url: '/v1/evaluations', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: body });
      expect(r2.statusCode, JSON.stringify(body).slice(-40)).toBe(400);
      expect(r2.json().error, field).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field } });
    }
  });
});
