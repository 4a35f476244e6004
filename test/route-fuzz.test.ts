/**
 * Every route of the service, walked from its own OpenAPI description with
 * seeded random requests: odd path parameters and query values, bodies that
 * are valid ones with a leaf changed, cut JSON, stray bytes, the wrong media
 * type, every role. Whatever comes in, the answer is never a 5xx, and every
 * refusal carries a named code (docs/errors.md). In-process (inject), with
 * the decision log on, so that feedback has decisions to join to.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { packageRoot } from '../src/paths.js';
import { pick, randomDeclarations, rng } from './helpers.js';
import { inProcessService, type InProcessService } from './service-helpers.js';

const TOKENS = { port: 'port-fuzz-token-0123456789abcdef', analyst: 'analyst-fuzz-token-0123456789abcdef', admin: 'admin-fuzz-token-0123456789abcdef' };
const dir = mkdtempSync(join(tmpdir(), 'sel-route-fuzz-'));

const ODD_STRINGS = ['', ' ', '0', '-1', '1e309', 'NaN', 'null', 'true', '[]', '{}', '2026-13-01', '2026-02-30', '9999-12-31', 'x'.repeat(3000), '%', '\u0000', 'é', '../../etc/passwd', '99999999999999999999', 'day', 'red', 'seizure'];
const ODD_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, '', 'x', 'x'.repeat(20_000), [], {}, [1, 'a'], { a: 1 }, '2026-13-01', 'red', 'seizure', 'no-discrepancy', 'valuation', '85', 'CN', '>=', 'z.unitValue'];

describe('every route, fuzzed from the OpenAPI description', () => {
  let app: FastifyInstance;
  let service: InProcessService;

  beforeAll(async () => {
    service = await inProcessService(join(dir, 'data'), { tokens: Object.entries(TOKENS).map(([r, t]) => `${r}:${t}`).join(','), decisionLog: true, server: { bodyLimit: 512 * 1024, maxBatch: 500 } });
    app = service.app;
  });
  afterAll(async () => {
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never answers 5xx, and names every refusal, over 800 seeded requests', async () => {
    const r = rng(20261206);
    const decl = (i: number) => ({ ...randomDeclarations(1, 1000 + i)[0], id: `FZ${i}` });
    // decisions to join feedback to
    const scored = await app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${TOKENS.port}` }, payload: { declarations: Array.from({ length: 20 }, (_, i) => decl(i)) } });
    expect(scored.statusCode).toBe(200);
    const examples = (name: string) => JSON.parse(readFileSync(join(packageRoot(), 'examples', name), 'utf8')) as unknown;
    const result = (i: number) => ({ declarationId: `FZ${i}`, date: '2026-11-03', channel: 'red', inspected: true, outcome: 'discrepancy', irregularity: 'undervaluation', revenueRecovered: 100, notes: 'x' });
    /** Valid bodies of the routes that take one; the rest get made-up ones. */
    const seeds: Record<string, () => unknown> = {
      'post /v1/score': () => ({ declarations: [decl(1), decl(2), decl(3)] }),
      'post /v1/feedback': () => ({ results: [result(1), result(2), result(3)] }),
      'post /v1/profiles/import': () => examples('profiles.json'),
      'put /v1/ruleset/profiles': () => examples('profiles.json'),
      'post /v1/watchlists/import': () => examples('watchlists.json'),
      'post /v1/studies': () => ({ declarations: Array.from({ length: 20 }, (_, i) => decl(i)) }),
      'post /v1/evaluations': () => ({ file: Array.from({ length: 20 }, (_, i) => ({ ...decl(i), fraud: i % 3 === 0 ? '1' : '0' })), label: 'fraud', top: [0.1] }),
    };
    /** A value with one leaf replaced, removed, or a key added. */
    const mutate = (v: unknown, depth = 0): unknown => {
      if (v === null || typeof v !== 'object') return pick(r, ODD_VALUES);
      const c: Record<string, unknown> | unknown[] = Array.isArray(v) ? [...v] : { ...(v as Record<string, unknown>) };
      const keys = Object.keys(c);
      const x = r();
      if (keys.length === 0 || x < 0.1) { if (Array.isArray(c)) c.push(pick(r, ODD_VALUES)); else c[pick(r, ['zz', 'id', 'weight', 'constructor'])] = pick(r, ODD_VALUES); return c; }
      const k = pick(r, keys);
      if (x < 0.2) { if (Array.isArray(c)) c.splice(Number(k), 1); else delete c[k]; return c; }
      (c as Record<string, unknown>)[k] = x < 0.45 || depth > 5 ? pick(r, ODD_VALUES) : mutate((c as Record<string, unknown>)[k], depth + 1);
      return c;
    };
    const api = (await app.inject({ url: '/v1/openapi.json', headers: { authorization: `Bearer ${TOKENS.admin}` } })).json() as { paths: Record<string, Record<string, { parameters?: { in: string; name: string }[] }>> };
    const operations = Object.entries(api.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));
    expect(operations.length).toBeGreaterThan(30);
    const refused: string[] = [];
    const statuses = new Map<number, number>();
    for (let k = 0; k < 800; k++) {
      const { path, method, op } = pick(r, operations);
      let url = path.replace(/\{(\w+)\}/g, () => encodeURIComponent(pick(r, ['FZ1', 'REV-UV-85', 'x', '0', '-1', 'é', 'a'.repeat(101), '..', '%25', '1', '0123456789abcdef'])));
      const query = (op.parameters ?? []).filter((p) => p.in === 'query' && r() < 0.7).map((p) => `${p.name}=${encodeURIComponent(pick(r, ODD_STRINGS))}`);
      if (r() < 0.1) query.push('unknown=1');
      if (query.length > 0) url += `?${query.join('&')}`;
      const headers: Record<string, string> = { authorization: `Bearer ${pick(r, Object.values(TOKENS))}` };
      let payload: string | Buffer | undefined;
      if (method !== 'get' && method !== 'delete') {
        const seed = seeds[`${method} ${path}`];
        let body: unknown = seed ? seed() : pick(r, ODD_VALUES);
        for (let m = 0, n = 1 + Math.floor(r() * 3); m < n; m++) body = mutate(body);
        const kind = r();
        if (kind < 0.6) { headers['content-type'] = 'application/json'; payload = JSON.stringify(body); }
        else if (kind < 0.75) { headers['content-type'] = 'application/msgpack'; payload = Buffer.from(pack(body)); }
        else if (kind < 0.85) { headers['content-type'] = 'application/json'; payload = (JSON.stringify(body) ?? '').slice(0, Math.floor(r() * 40)); }
        else if (kind < 0.92) { headers['content-type'] = pick(r, ['text/plain', 'application/xml', 'application/x-ndjson', 'text/csv']); payload = JSON.stringify(body); }
        else { headers['content-type'] = 'application/msgpack'; payload = Buffer.from(Array.from({ length: 24 }, () => Math.floor(r() * 256))); }
        if (r() < 0.2) headers.accept = pick(r, ['application/msgpack', 'application/x-ndjson', 'text/csv', 'text/html', '*/*']);
      }
      const res = await app.inject({ method: method.toUpperCase() as 'GET', url, headers, payload });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      const what = `${method.toUpperCase()} ${url.slice(0, 120)} [${headers['content-type'] ?? ''}] → ${res.statusCode}`;
      if (res.statusCode >= 500) refused.push(`${what}: ${res.body.slice(0, 200)}`);
      else if (res.statusCode >= 400 && !/SEL_ERR_[A-Z_]+/.test(res.rawPayload.toString('latin1'))) refused.push(`${what} without a named code: ${res.body.slice(0, 200)}`);
    }
    expect(refused).toEqual([]);
    // the walk reached past the gate: accepted requests, refusals of several kinds
    expect(statuses.get(200) ?? 0).toBeGreaterThan(50);
    expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThanOrEqual(4);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  }, 120_000);

  it('answers hostile MessagePack bodies with named codes, without allocating what their headers claim: huge headers, deep nesting, unused bytes, extensions', async () => {
    const key = (k: string) => Buffer.concat([Buffer.from([0xa0 | k.length]), Buffer.from(k)]);
    const doc = (k: string, inner: Buffer) => Buffer.concat([Buffer.from([0x81]), key(k), inner]);
    const decl = { ...randomDeclarations(1, 77)[0], id: 'MP1' };
    const bodies: Record<string, (k: string) => Buffer> = {
      'an array header claiming 2^32 - 1 elements': (k) => doc(k, Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])),
      'a map header claiming 2^32 - 1 entries': () => Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]),
      'a string header claiming 4 GB': (k) => doc(k, Buffer.concat([Buffer.from([0x91, 0x81]), key('id'), Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])])),
      '100,000 nested arrays': (k) => doc(k, Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])])),
      'the unused byte 0xc1': () => Buffer.from([0xc1]),
      'an unknown extension': (k) => doc(k, Buffer.from([0x91, 0xd4, 0x05, 0x00])),
      'trailing bytes': (k) => Buffer.concat([doc(k, Buffer.from(pack([decl]))), Buffer.from([0xc0, 0xc0])]),
      'a truncated document': (k) => doc(k, Buffer.from(pack([decl]))).subarray(0, 40),
    };
    for (const [route, k, type] of [['/v1/score', 'declarations', 'application/msgpack'], ['/v1/score/stream', 'declarations', 'application/msgpack'], ['/v1/feedback', 'results', 'application/msgpack']] as const) {
      for (const [name, body] of Object.entries(bodies)) {
        const res = await app.inject({ method: 'POST', url: route, headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': type, accept: 'application/json' }, payload: body(k) });
        const what = `${route}, ${name}: ${res.statusCode} ${res.body.slice(0, 160)}`;
        expect(res.statusCode, what).toBeLessThan(500);
        // a stream answers 200 and ends with a fatal record (or, for a whole document read as one record, a record error)
        expect(res.body, what).toMatch(/SEL_ERR_[A-Z_]+/);
      }
    }
  }, 120_000);
});
