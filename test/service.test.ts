/**
 * The HTTP service, through Fastify's inject (in-process scoring, threads 0)
 * for the request/response contract, and over loopback (a real listener and
 * a worker pool) for streams, backpressure, overload and shutdown.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { pack, unpack, unpackMultiple } from 'msgpackr';
import { decodeFromCompressedBase64 } from 'hdr-histogram-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../src/engine.js';
import { toBatch } from '../src/model/columnar.js';
import { CHANNELS } from '../src/model/channels.js';
import { toDecisions } from '../src/decisions.js';
import { Kernel } from '../src/kernel/kernel.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { loadTokens, parseTokensEnv, readTokensFile, ReloadableTokens } from '../src/service/auth.js';
import type { Metrics } from '../src/service/metrics.js';
import { buildServer, clientError, toSelectivityError } from '../src/service/server.js';
import { createMetrics } from '../src/service/metrics.js';
import { createTokenStore } from '../src/service/auth.js';
import { createEngine } from '../src/engine.js';
import { errors } from '../src/errors.js';
import type { DecisionLog } from '../src/feedback/decision-log.js';
import { negotiate } from '../src/service/msgpack-body.js';
import { prepareDataDir, RulesetSource } from '../src/service/state.js';
import { listenError, startService, warmUp, type RunningService } from '../src/service/service.js';
import { msgpackValueEnd } from '../src/service/wire.js';
import type { Declaration } from '../src/model/schema.js';
import { randomDeclarations } from './helpers.js';
import { packageRoot as packageRootForTest } from '../src/paths.js';
import { inProcessService, type InProcessService } from './service-helpers.js';

const TOKENS = { port: 'port-token-0123456789abcdef', analyst: 'analyst-token-0123456789abcdef', admin: 'admin-token-0123456789abcdef', monitor: 'monitor-token-0123456789abcdef' };
const auth = (role: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[role]}` });
const tokensEnv = Object.entries(TOKENS).map(([r, t]) => `${r}:${t}`).join(',');

const dir = mkdtempSync(join(tmpdir(), 'sel-service-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function declarations(n: number, seed: number): Declaration[] {
  return randomDeclarations(n, seed).filter((d) => d.netMass > 0);
}

describe('service contract (inject, in-process scoring)', () => {
  let app: FastifyInstance;
  let engine: Engine;
  let metrics: Metrics;
  let source: RulesetSource;
  let service: InProcessService;

  beforeAll(async () => {
    service = await inProcessService(join(dir, 'inject'), { tokens: tokensEnv, server: { bodyLimit: 256 * 1024, maxBatch: 500 } });
    ({ app, engine, metrics, source } = service);
  });
  afterAll(() => service.close());

  it('seeds a fresh data directory with the example ruleset', () => {
    const files = readdirSync(join(dir, 'inject'));
    expect(files).toEqual(expect.arrayContaining(['peers.json', 'selectivity.db']));
    expect(source.profiles.list('active').length).toBe(engine.meta().profiles.length);
    expect(engine.meta().profiles.length).toBeGreaterThan(0);
    expect(statSync(join(dir, 'inject')).mode & 0o777).toBe(0o700);
    // the store, which holds the decision log and the examination results, is owner-only, and so is its WAL
    expect(statSync(join(dir, 'inject', 'selectivity.db')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'inject', 'selectivity.db-wal')).mode & 0o777).toBe(0o600);
  });

  it('answers health and readiness without a token, everything else only with one', async () => {
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().rulesetVersion).toBe(engine.rulesetVersion);
    for (const [method, url] of [['POST', '/v1/score'], ['GET', '/metrics'], ['GET', '/v1/ruleset'], ['GET', '/v1/openapi.json']] as const) {
      const r = await app.inject({ method, url });
      expect(r.statusCode, url).toBe(401);
      expect(r.json().error.code).toBe('SEL_ERR_UNAUTHORIZED');
      expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    const wrong = await app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: 'Bearer not-a-real-token-at-all' } });
    expect(wrong.statusCode).toBe(401);
  });

  it("answers the router's own refusals with named codes: a path parameter over 100 characters, a malformed percent-encoding", async () => {
    const long = await app.inject({ url: `/v1/decisions/${'a'.repeat(101)}`, headers: auth('analyst') });
    expect(long.statusCode).toBe(400);
    expect(long.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'url' } });
    expect(long.json().error.details.expected).toMatch(/at most 100 characters/);
    // 64 characters, the longest id, still reach the route (and its own 404)
    const id = await app.inject({ url: `/v1/decisions/${'a'.repeat(64)}`, headers: auth('analyst') });
    expect(id.json().error.code).toBe('SEL_ERR_NOT_FOUND');
    const bad = await app.inject({ url: '/v1/decisions/%E0%A4%A', headers: auth('analyst') });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'url' } });
    // in MessagePack when the client asks for it, as every other error
    const packed = await app.inject({ url: `/v1/decisions/${'a'.repeat(101)}`, headers: { ...auth('analyst'), accept: 'application/msgpack' } });
    expect(packed.headers['content-type']).toMatch(/^application\/msgpack/);
    expect(unpack(packed.rawPayload).error.code).toBe('SEL_ERR_REQUEST_INVALID');
  });

  it('enforces roles: port scores only, analyst reads the ruleset, admin reloads', async () => {
    expect((await app.inject({ url: '/v1/ruleset', headers: auth('port') })).json().error.code).toBe('SEL_ERR_FORBIDDEN');
    expect((await app.inject({ url: '/v1/ruleset', headers: auth('analyst') })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: auth('analyst') })).statusCode).toBe(403);
    expect((await app.inject({ url: '/metrics', headers: auth('port') })).statusCode).toBe(403);
    // monitor: the figures a monitoring system scrapes, and nothing else (a scraper's token cannot change the ruleset)
    expect((await app.inject({ url: '/metrics', headers: auth('monitor') })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v1/metrics', headers: auth('monitor') })).statusCode).toBe(200);
    for (const [method, url] of [['GET', '/v1/ruleset'], ['POST', '/v1/score'], ['POST', '/v1/ruleset/reload'], ['GET', '/v1/feedback?declarationId=X'], ['PUT', '/v1/ruleset/profiles']] as const) {
      expect((await app.inject({ method, url, headers: auth('monitor') })).statusCode, `${method} ${url}`).toBe(403);
    }
    const body = { declarations: declarations(3, 1) };
    for (const role of ['port', 'analyst', 'admin'] as const) {
      expect((await app.inject({ method: 'POST', url: '/v1/score', headers: auth(role), payload: body })).statusCode, role).toBe(200);
    }
  });

  it('scores a JSON batch exactly as the kernel does, and reports invalid declarations by index', async () => {
    const good = declarations(40, 2);
    const batchIn: unknown[] = [...good];
    batchIn.splice(5, 0, { ...good[0], id: 'BAD-HS', hs: '12' });
    batchIn.splice(9, 0, 'not an object');
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: { declarations: batchIn } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const out = r.json();
    expect(out.rulesetVersion).toBe(engine.rulesetVersion);
    expect(out.errors.map((e: { index: number; code: string }) => [e.index, e.code])).toEqual([[5, 'SEL_ERR_DECL_FIELD_FORMAT'], [9, 'SEL_ERR_DECL_NOT_OBJECT']]);
    expect(out.errors[0]).toMatchObject({ id: 'BAD-HS', issues: [{ field: 'hs' }] });

    const kernel = new Kernel();
    const compiled = compileRuleset(await source.load());
    kernel.loadRuleset(compiled);
    const { batch, ids } = toBatch(good);
    const expected = toDecisions(kernel.score(batch), ids, compiled.meta);
    expect(out.decisions).toEqual(JSON.parse(JSON.stringify(expected)));
    const counted = Object.entries(out.counts).filter(([k]) => k !== 'control').reduce((s, [, n]) => s + (n as number), 0);
    expect(counted).toBe(good.length);
    // the service's own time, and the kernel's inside it (ms)
    const timing = /^app;dur=(\d+\.\d{3}), kernel;dur=(\d+\.\d{3})$/.exec(String(r.headers['server-timing']));
    expect(timing, String(r.headers['server-timing'])).not.toBeNull();
    expect(Number(timing![2])).toBeGreaterThan(0);
    expect(Number(timing![2])).toBeLessThanOrEqual(Number(timing![1]));
  });

  it('speaks MessagePack both ways, chosen by Content-Type and Accept', async () => {
    const good = declarations(10, 3);
    const body = Buffer.from(pack({ declarations: good })); // msgpackr reuses its output buffer
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/x-msgpack' }, payload: body });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('application/msgpack');
    const out = unpack(r.rawPayload) as { decisions: { id: string }[] };
    expect(out.decisions.map((d) => d.id)).toEqual(good.map((d) => d.id));
    const asJson = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: body });
    expect(asJson.headers['content-type']).toMatch(/^application\/json/);
    expect(asJson.json().decisions).toHaveLength(good.length);
    const asPack = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), accept: 'application/json;q=0.5, application/msgpack' }, payload: { declarations: good } });
    expect(asPack.headers['content-type']).toBe('application/msgpack');
    const refused = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), accept: 'text/html' }, payload: { declarations: good } });
    expect(refused.statusCode).toBe(406);
    expect(refused.json().error.code).toBe('SEL_ERR_NOT_ACCEPTABLE');
  });

  it('answers a MessagePack batch (read by the fast path) exactly as the same batch in JSON', async () => {
    const good = declarations(60, 6);
    const mixed: unknown[] = good.map((d, i) => {
      switch (i % 7) {
        case 1: return { ...d, origin: d.origin.toLowerCase() };        // normalised by the general path
        case 2: return { ...d, hs: `${d.hs.slice(0, 4)}.${d.hs.slice(4)}` };
        case 3: return { ...d, netMass: -1 };                           // invalid
        case 4: return { ...d, extra: 'x' };                            // invalid
        case 5: return { ...d, declarant: null, description: '  ' };    // blanks dropped
        default: return d;
      }
    });
    mixed.push('not a declaration', 42, null);
    const viaJson = await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: { declarations: mixed } });
    const viaPack = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(pack({ declarations: mixed })) });
    expect(viaPack.statusCode).toBe(200);
    const a = viaJson.json(), b = viaPack.json();
    expect(b.errors.length).toBeGreaterThan(10);
    expect(b.decisions.length).toBeGreaterThan(30);
    expect(b).toEqual(a);
    const packed = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack' }, payload: Buffer.from(pack({ declarations: mixed })) });
    expect(unpack(packed.rawPayload)).toEqual(a);
  });

  it('decodes a body sent gzip, deflate or br (Content-Encoding) before reading it, holds the decoded bytes to the body limit, and refuses a charset other than UTF-8', async () => {
    const batch = { declarations: declarations(40, 31) };
    const json = Buffer.from(JSON.stringify(batch));
    const plain = await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: batch });
    expect(plain.statusCode).toBe(200);
    const codings: [string, Buffer][] = [['gzip', gzipSync(json)], ['x-gzip', gzipSync(json)], ['deflate', deflateSync(json)], ['br', brotliCompressSync(json)], [' GZIP ', gzipSync(json)], ['identity', json]];
    for (const [coding, body] of codings) {
      const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/json', 'content-encoding': coding }, payload: body });
      expect(r.statusCode, coding).toBe(200);
      expect(r.json(), coding).toEqual(plain.json());
    }
    // MessagePack, read by the fast path once decoded
    const packed = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', 'content-encoding': 'gzip', accept: 'application/json' }, payload: gzipSync(pack(batch)) });
    expect(packed.json()).toEqual(plain.json());

    const refused = async (headers: Record<string, string>, payload: Buffer) => {
      const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/json', ...headers }, payload });
      return { status: r.statusCode, error: r.json().error };
    };
    // a coding the service does not know, or two of them: refused by name before the body is read
    for (const coding of ['compress', 'zstd', 'gzip, br', '__proto__']) {
      expect(await refused({ 'content-encoding': coding }, json), coding).toMatchObject({ status: 415, error: { code: 'SEL_ERR_MEDIA_TYPE', details: { field: 'content-encoding', got: coding } } });
    }
    // bytes that are not what the header says, or cut short
    expect(await refused({ 'content-encoding': 'gzip' }, json)).toMatchObject({ status: 400, error: { code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'content-encoding' } } });
    expect(await refused({ 'content-encoding': 'gzip' }, gzipSync(json).subarray(0, 100))).toMatchObject({ status: 400, error: { code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'content-encoding' } } });
    // 1.3 KB of gzip that decodes to 1 MB, over this service's 256 KB limit: refused as the decoded body it is
    const bomb = gzipSync(Buffer.from(`{"declarations": ["${'x'.repeat(1024 * 1024)}"]}`));
    expect(bomb.length).toBeLessThan(256 * 1024);
    expect(await refused({ 'content-encoding': 'gzip' }, bomb)).toMatchObject({ status: 413, error: { code: 'SEL_ERR_BODY_TOO_LARGE', details: { got: expect.stringMatching(/^\d+ bytes gzip-encoded, more once decoded$/) } } });
    // a body no route reads, whose coding breaks: nothing to answer for (unobserved, it once ended the process)
    const unread = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'text/plain', 'content-encoding': 'gzip' }, payload: json });
    expect(unread.statusCode).toBe(415);
    expect((await app.inject({ url: '/healthz', headers: { 'content-encoding': 'gzip', 'content-type': 'application/json; charset=latin1' } })).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    // a charset other than UTF-8: refused by name (read as UTF-8, a UTF-16 document only failed to parse)
    const utf16 = Buffer.from(`\ufeff${JSON.stringify(batch)}`, 'utf16le');
    for (const type of ['application/json; charset=utf-16', 'application/json;charset="UTF-16LE"', 'application/x-ndjson; charset=iso-8859-1']) {
      expect(await refused({ 'content-type': type }, utf16), type).toMatchObject({ status: 415, error: { code: 'SEL_ERR_MEDIA_TYPE', details: { field: 'content-type', got: type } } });
    }
    for (const type of ['application/json; charset=utf-8', 'application/json; charset=UTF8', 'application/json; charset="us-ascii"']) {
      expect((await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': type }, payload: json })).json(), type).toEqual(plain.json());
    }
    // and on the other routes: a feedback post, gzipped, is read as the same post
    const post = JSON.stringify({ results: [{ declarationId: 'NEVER-SCORED', date: '2026-11-24', channel: 'green', inspected: false }] });
    const fb = await app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('analyst'), 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: gzipSync(post) });
    const fbPlain = await app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('analyst'), 'content-type': 'application/json' }, payload: post });
    expect(fb.json()).toMatchObject({ counts: { rejected: 1 }, results: [{ declarationId: 'NEVER-SCORED', status: 'rejected' }] });
    expect(fb.json()).toEqual(fbPlain.json());
  });

  it('says in OpenAPI which roles each operation takes, and that it may answer 401 and 403: as the service enforces them', async () => {
    type Op = { description?: string; 'x-roles'?: string[]; responses?: Record<string, unknown> };
    const api = (await app.inject({ url: '/v1/openapi.json', headers: auth('analyst') })).json() as { paths: Record<string, Record<string, Op>> };
    let checked = 0;
    for (const [path, ops] of Object.entries(api.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (method === 'head') continue;
        const roles = op['x-roles'];
        if (path === '/healthz' || path === '/readyz') { expect(roles, path).toBeUndefined(); continue; }
        expect(roles, `${method} ${path}`).toBeDefined();
        expect(op.description, `${method} ${path}`).toContain(`Roles: ${roles!.join(', ')}`);
        expect(op.responses?.['401'], `${method} ${path}`).toBeDefined();
        // what the table says is what the service does: a role not listed is refused (403), before the path's parameters count
        if (path.includes('{') || method !== 'get') { checked++; continue; }
        for (const role of ['port', 'analyst', 'admin', 'monitor'] as const) {
          const r = await app.inject({ url: path, headers: auth(role) });
          expect(r.statusCode === 403, `${role} GET ${path}: ${r.statusCode}`).toBe(!roles!.includes(role));
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
    expect(api.paths['/v1/score'].post['x-roles']).toEqual(['port', 'analyst', 'admin']);
    expect(api.paths['/v1/ruleset/reload'].post['x-roles']).toEqual(['admin']);
    expect(api.paths['/v1/ruleset/reload'].post.responses?.['403']).toBeDefined();
    // the body and answer types beside JSON, where the route reads and answers them
    type Full = { requestBody?: { content: Record<string, unknown> }; responses: Record<string, { content?: Record<string, unknown> }> };
    const full = api as unknown as { paths: Record<string, Record<string, Full>> };
    for (const [path, method] of [['/v1/score', 'post'], ['/v1/feedback', 'post'], ['/v1/ruleset/profiles', 'put']] as const) {
      const op = full.paths[path][method];
      expect(Object.keys(op.requestBody!.content).sort(), path).toEqual(['application/json', 'application/msgpack', 'application/x-msgpack']);
      expect(Object.keys(op.responses['200'].content!).sort(), path).toEqual(['application/json', 'application/msgpack', 'application/x-msgpack']);
    }
    // a route that reads JSON only says so
    expect(Object.keys(full.paths['/v1/profiles/import'].post.requestBody!.content)).toEqual(['application/json']);
  });

  it('refuses query parameters on a route that takes none, and ignores them only on the scoring routes and the probes', async () => {
    const api = (await app.inject({ url: '/v1/openapi.json', headers: auth('admin') })).json() as { paths: Record<string, Record<string, { parameters?: { in: string }[] }>> };
    const ignoring = ['/healthz', '/readyz', '/metrics'];
    const refused: string[] = [];
    for (const [path, ops] of Object.entries(api.paths)) {
      const op = ops.get;
      // the GET routes without a path parameter: nothing else needed to reach the query check
      if (!op || path.includes('{')) continue;
      const takes = (op.parameters ?? []).some((p) => p.in === 'query');
      const r = await app.inject({ url: `${path}?bogus=1`, headers: auth('admin') });
      if (ignoring.includes(path)) {
        expect(takes, path).toBe(false);
        expect(r.statusCode, path).toBe(200);
        continue;
      }
      expect(r.statusCode, `${path}: ${r.body}`).toBe(400);
      // (a route with a required parameter may name that one first)
      expect(r.json().error, path).toMatchObject(takes ? { code: 'SEL_ERR_REQUEST_INVALID' } : { code: 'SEL_ERR_REQUEST_INVALID', details: { got: 'bogus' } });
      if (!takes) refused.push(path);
    }
    expect(refused).toEqual(expect.arrayContaining(['/v1/ruleset', '/v1/model', '/v1/peers', '/v1/watchlists', '/v1/openapi.json']));
    // a write route refuses before it changes anything: the ruleset stays the one in use
    const before = (await app.inject({ url: '/v1/ruleset', headers: auth('admin') })).json().version;
    const reload = await app.inject({ method: 'POST', url: '/v1/ruleset/reload?dryRun=true', headers: auth('admin') });
    expect(reload.statusCode).toBe(400);
    expect(reload.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { got: 'dryRun' } });
    expect((await app.inject({ url: '/v1/ruleset', headers: auth('admin') })).json().version).toBe(before);
    // the scoring routes score whatever the query holds
    const scored = await app.inject({ method: 'POST', url: '/v1/score?source=port-gateway', headers: auth('port'), payload: { declarations: declarations(2, 4) } });
    expect(scored.statusCode).toBe(200);
    expect(scored.json().decisions).toHaveLength(2);
  });

  it('reports a MessagePack int64 field as a bad declaration, not a server error', async () => {
    const [d] = declarations(1, 8);
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(pack({ declarations: [{ ...d, customsValue: 2n ** 40n }, d] })) });
    expect(r.statusCode).toBe(200);
    expect(r.json().errors).toEqual([expect.objectContaining({ index: 0, code: 'SEL_ERR_DECL_FIELD_TYPE', issues: [expect.objectContaining({ field: 'customsValue' })] })]);
    expect(r.json().decisions).toHaveLength(1);
  });

  it('names a value nested thousands deep, or holding an int64, in one declaration\'s or result\'s error, and answers for the rest', async () => {
    const [d, e] = declarations(2, 9);
    const deep = `${'['.repeat(5000)}"x"${']'.repeat(5000)}`;
    const body = JSON.stringify({ declarations: [d, { ...e, office: 'DEEP' }] }).replace('"DEEP"', deep);
    const json = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/json' }, payload: body });
    expect(json.statusCode, json.body.slice(0, 300)).toBe(200);
    expect(json.json().decisions.map((x: { id: string }) => x.id)).toEqual([d.id]);
    expect(json.json().errors).toEqual([expect.objectContaining({ index: 1, issues: [expect.objectContaining({ field: 'office', got: 'an array' })] })]);
    const packed = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(pack({ declarations: [d, { ...e, office: [5n] }, { ...e, id: `${e.id}-2`, extra: { a: 5n } }] })) });
    expect(packed.statusCode, packed.body.slice(0, 300)).toBe(200);
    expect(packed.json().decisions).toHaveLength(1);
    expect(packed.json().errors.map((x: { index: number }) => x.index)).toEqual([1, 2]);
    expect(packed.json().errors[0].issues[0]).toMatchObject({ field: 'office', got: ['5n'] });
    // a result with an int64 is refused on its own: the answer is written, not a 500 after the commit
    const fb = await app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('analyst'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(pack({ results: [{ declarationId: d.id, date: '2026-11-24', channel: 'red', inspected: true, outcome: 'seizure', revenueRecovered: 5n }] })) });
    expect(fb.statusCode, fb.body.slice(0, 300)).toBe(200);
    expect(fb.json().results[0].error).toMatchObject({ code: 'SEL_ERR_FEEDBACK_INVALID', details: { field: 'revenueRecovered', got: '5n' } });
  });

  it('refuses a MessagePack string that is not UTF-8 (it used to be read as U+FFFD, merging ids)', async () => {
    const [d, e] = declarations(2, 10);
    const withBadId = (body: unknown) => {
      const bytes = Buffer.from(pack(body));
      const at = bytes.indexOf(Buffer.from([0xa2, 0x5a, 0x51])); // the id "ZQ"
      bytes[at + 2] = 0xff;
      return bytes;
    };
    // in a batch: that declaration's error, the other one scored
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: withBadId({ declarations: [d, { ...e, id: 'ZQ' }] }) });
    expect(r.statusCode, r.body.slice(0, 300)).toBe(200);
    expect(r.json().decisions.map((x: { id: string }) => x.id)).toEqual([d.id]);
    expect(r.json().errors).toEqual([expect.objectContaining({ index: 1, code: 'SEL_ERR_DECL_PARSE', message: expect.stringContaining('not valid UTF-8') })]);
    // in a feedback body: the body is refused, as a JSON body with such bytes is
    const fb = await app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('analyst'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: withBadId({ results: [{ declarationId: 'ZQ', date: '2026-11-24', channel: 'red', inspected: true, outcome: 'seizure' }] }) });
    expect(fb.statusCode).toBe(400);
    expect(fb.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', message: expect.stringContaining('not valid UTF-8') });
  });

  it('turns bad requests into named 4xx errors', async () => {
    const post = (payload: string | Buffer, headers: Record<string, string> = {}) =>
      app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/json', ...headers }, payload });
    const cases: [Awaited<ReturnType<typeof post>>, number, string, string?][] = [
      [await post('{"declarations": ['), 400, 'SEL_ERR_REQUEST_PARSE', 'body'],
      [await post(Buffer.from([0xc1, 0x00]), { 'content-type': 'application/msgpack' }), 400, 'SEL_ERR_REQUEST_PARSE', 'body'],
      // the unused byte alone (msgpackr reads it as an object of its own), and a timestamp: not maps
      [await post(Buffer.from([0xc1]), { 'content-type': 'application/msgpack' }), 400, 'SEL_ERR_REQUEST_PARSE', 'body'],
      [await post(Buffer.from(pack(new Date(0))), { 'content-type': 'application/msgpack' }), 400, 'SEL_ERR_REQUEST_PARSE', 'body'],
      [await app.inject({ method: 'POST', url: '/v1/feedback', headers: { ...auth('port'), 'content-type': 'application/msgpack' }, payload: Buffer.from([0xc1]) }), 400, 'SEL_ERR_REQUEST_PARSE', 'body'],
      [await post('[1,2]'), 400, 'SEL_ERR_REQUEST_INVALID', 'body'],
      [await post('{"declarations": [], "priority": 1}'), 400, 'SEL_ERR_REQUEST_INVALID', 'priority'],
      [await post('{"declarations": {"id": "x"}}'), 400, 'SEL_ERR_REQUEST_INVALID', 'declarations'],
      [await post(JSON.stringify({ declarations: new Array(501).fill({}) })), 413, 'SEL_ERR_BATCH_TOO_LARGE', 'declarations'],
      [await post(`{"declarations": ["${'x'.repeat(300 * 1024)}"]}`), 413, 'SEL_ERR_BODY_TOO_LARGE', 'body'],
      [await post('hello', { 'content-type': 'text/plain' }), 415, 'SEL_ERR_MEDIA_TYPE'],
      [await post(''), 400, 'SEL_ERR_REQUEST_PARSE'],
    ];
    for (const [r, status, code, field] of cases) {
      expect(r.statusCode, code).toBe(status);
      // errors come in the request's encoding unless Accept says otherwise
      const err = (r.headers['content-type'] === 'application/msgpack' ? unpack(r.rawPayload) : r.json()).error;
      expect(err.code).toBe(code);
      if (field) expect(err.details.field).toBe(field);
    }
    // a path no route has: 404 for every role (not the 403 of another role's route), 401 without a token
    for (const role of ['port', 'analyst', 'admin', 'monitor'] as const) {
      const nf = await app.inject({ url: '/v1/nothing', headers: auth(role) });
      expect(nf.statusCode, role).toBe(404);
      expect(nf.json().error).toMatchObject({ code: 'SEL_ERR_NOT_FOUND', message: 'no route GET /v1/nothing' });
    }
    // a path that has routes, for other methods: 405 with the methods it has (RFC 9110), for every role
    for (const [method, url, allow] of [['GET', '/v1/score', 'POST'], ['DELETE', '/v1/score?x=1', 'POST'], ['PUT', '/v1/ruleset', 'GET, HEAD'], ['POST', '/v1/profiles/P1/versions/3', 'GET, HEAD'], ['DELETE', '/v1/profiles/P1/activate', 'POST']] as const) {
      const r = await app.inject({ method, url, headers: auth('port') });
      expect(r.statusCode, `${method} ${url}`).toBe(405);
      expect(r.headers.allow, `${method} ${url}`).toBe(allow);
      expect(r.json().error, `${method} ${url}`).toMatchObject({ code: 'SEL_ERR_METHOD_NOT_ALLOWED', details: { field: 'method', expected: allow.replace(', ', ' | '), got: method } });
    }
    // a path with one more segment than a route's, or a trailing slash: no route (not a 405 naming the method sent)
    expect((await app.inject({ method: 'POST', url: '/v1/profiles/P1/activate/now', headers: auth('admin') })).statusCode).toBe(404);
    expect((await app.inject({ method: 'POST', url: '/v1/score/', headers: auth('port'), payload: { declarations: [] } })).statusCode).toBe(404);
    expect((await app.inject({ url: '/v1/ruleset/', headers: auth('admin') })).statusCode).toBe(404);
    expect((await app.inject({ url: '/v1/nothing' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/score' })).statusCode).toBe(401);
    // a stream request without a Content-Type or a body: no stream to read, refused before streaming starts
    const noStream = await app.inject({ method: 'POST', url: '/v1/score/stream', headers: auth('port') });
    expect(noStream.statusCode).toBe(415);
    expect(noStream.json().error).toMatchObject({ code: 'SEL_ERR_MEDIA_TYPE', details: { field: 'content-type' } });
    // a schema's refusal says what the request held there, and the allowed values where the schema lists them
    const notArray = await app.inject({ method: 'POST', url: '/v1/feedback', headers: auth('analyst'), payload: { results: {} } });
    expect(notArray.statusCode).toBe(400);
    expect(notArray.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'results', expected: 'must be array', got: 'an object' } });
    // one result too many: the batch limit's 413, as on the score route; nothing is recorded
    const tooMany = await app.inject({ method: 'POST', url: '/v1/feedback', headers: auth('analyst'), payload: { results: Array.from({ length: 10_001 }, () => ({ declarationId: 'NOPE' })) } });
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json().error).toMatchObject({ code: 'SEL_ERR_BATCH_TOO_LARGE', details: { field: 'results', expected: 'at most 10000 results', got: 10_001 } });
    const atLimit = await app.inject({ method: 'POST', url: '/v1/feedback', headers: auth('analyst'), payload: { results: Array.from({ length: 10_000 }, () => ({ declarationId: 'NOPE' })) } });
    expect(atLimit.statusCode).toBe(200);
    expect(atLimit.json().counts).toMatchObject({ recorded: 0, rejected: 10_000 });
    const notListed = await app.inject({ url: '/v1/profiles?status=bogus', headers: auth('analyst') });
    expect(notListed.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'status', got: 'bogus' } });
    expect(notListed.json().error.details.expected).toMatch(/^one of active, /);
    // a JSON route given text/plain: refused by its type, as the score route does, not by its shape
    for (const [method, url] of [['POST', '/v1/profiles/import'], ['PUT', '/v1/ruleset/profiles'], ['POST', '/v1/feedback'], ['POST', '/v1/score']] as const) {
      const r = await app.inject({ method, url, headers: { ...auth('admin'), 'content-type': 'text/plain' }, payload: '{"profiles":[]}' });
      expect(r.statusCode, url).toBe(415);
      expect(r.json().error.code, url).toBe('SEL_ERR_MEDIA_TYPE');
      // what this route reads, and what was sent: MessagePack is named only where it is read
      expect(r.json().error.details, url).toMatchObject({ field: 'content-type', got: 'text/plain' });
      expect(r.json().error.details.expected.includes('application/msgpack'), url).toBe(url !== '/v1/profiles/import');
    }
    const msgpackImport = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: { ...auth('admin'), 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(pack({ profiles: [] })) });
    expect(msgpackImport.json().error).toMatchObject({ code: 'SEL_ERR_MEDIA_TYPE', details: { expected: 'application/json', got: 'application/msgpack' } });
    // a body over the limit: the limit and the length sent
    const big = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...auth('port'), 'content-type': 'application/json' }, payload: `{"declarations": ["${'x'.repeat(300 * 1024)}"]}` });
    expect(big.json().error.details).toMatchObject({ field: 'body', expected: expect.stringMatching(/^a body of at most \d+ bytes/), got: `${300 * 1024 + 22} bytes` });
    // still healthy, and the good path still works
    expect((await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: { declarations: declarations(2, 4) } })).statusCode).toBe(200);
  });

  it('replaces profiles durably and atomically; an invalid set changes nothing', async () => {
    const before = engine.rulesetVersion;
    const activeBefore = source.profiles.list('active').map((r) => `${r.profile.id}@${r.profile.version}`);
    const bad = await app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers: auth('analyst'), payload: { profiles: [{ id: 'X', weight: 'heavy', conditions: {} }] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('SEL_ERR_PROFILE_INVALID');
    expect(engine.rulesetVersion).toBe(before);
    expect(source.profiles.list('active').map((r) => `${r.profile.id}@${r.profile.version}`)).toEqual(activeBefore);
    const unknown = await app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers: auth('analyst'), payload: { profiles: [], extra: true } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'extra' } });

    const profiles = [{ id: 'ALL-CN-RED', weight: 5, counterMeasure: { channel: 'red' }, conditions: { origin: ['CN'] } }];
    const ok = await app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers: auth('analyst'), payload: { profiles } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().profileIds).toEqual(['ALL-CN-RED']);
    expect(ok.json().changes.created).toEqual(['ALL-CN-RED']);
    expect(ok.json().changes.retired.length).toBe(activeBefore.length);
    expect(engine.rulesetVersion).not.toBe(before);
    // committed before the answer: a second store handle over the same file sees it
    const other = new RulesetSource(source.files);
    try {
      expect(other.profiles.list('active').map((r) => r.profile.id)).toEqual(['ALL-CN-RED']);
      expect(other.profiles.get('ALL-CN-RED')!.changedBy).toBe('analyst token');
    } finally {
      other.close();
    }
    const scored = await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: { declarations: [{ ...declarations(1, 5)[0], origin: 'CN' }] } });
    expect(scored.json().decisions[0].channel).toBe('red');

    // restore the example set: the same profiles are active again (as new versions)
    const example = JSON.parse(readFileSync(join(packageRootForTest(), 'examples', 'profiles.json'), 'utf8'));
    const restore = await app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers: auth('admin'), payload: example });
    expect(restore.statusCode).toBe(200);
    expect(restore.json().profileIds).toEqual(activeBefore.map((s) => s.split('@')[0]).sort());
  });

  it('keeps the active ruleset when a reload finds a broken file', async () => {
    const before = engine.rulesetVersion;
    const text = readFileSync(source.files.peersPath, 'utf8');
    writeFileSync(source.files.peersPath, '{"format": "selectivity-peers", "formatVersion": 1, "levels": ["hs6"], "groups": [[["x", -1]]]}');
    try {
      const r = await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: auth('admin') });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('SEL_ERR_PEERS_CORRUPT');
      expect(engine.rulesetVersion).toBe(before);
    } finally {
      writeFileSync(source.files.peersPath, text);
    }
  });

  it('exposes each channel\'s counter and the control group\'s at 0 before anything is scored', async () => {
    const fresh = await inProcessService(join(dir, 'fresh-metrics'), { tokens: tokensEnv });
    try {
      const text = (await fresh.app.inject({ url: '/metrics', headers: auth('admin') })).body;
      for (const c of CHANNELS) expect(text).toContain(`selectivity_declarations_total{channel="${c}"} 0\n`);
      expect(text).toMatch(/^# TYPE selectivity_control_group_total counter$/m);
      expect(text).toMatch(/^selectivity_control_group_total 0$/m);
    } finally {
      await fresh.close();
    }
  });

  it('exposes latency percentiles in Prometheus text and JSON, per route and for the kernel', async () => {
    for (let i = 0; i < 5; i++) await app.inject({ method: 'POST', url: '/v1/score', headers: auth('port'), payload: { declarations: declarations(20, 10 + i) } });
    const prom = await app.inject({ url: '/metrics', headers: auth('admin') });
    expect(prom.statusCode).toBe(200);
    expect(prom.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = prom.body;
    expect(text).toMatch(/^selectivity_request_duration_seconds\{route="POST \/v1\/score",quantile="0\.99"\} [0-9.e-]+$/m);
    expect(text).toMatch(/^selectivity_kernel_duration_seconds\{quantile="0\.5"\} [0-9.e-]+$/m);
    expect(text).toMatch(/^selectivity_declarations_total\{channel="[a-z]+"\} \d+$/m);
    expect(text).toMatch(/^selectivity_errors_total\{code="SEL_ERR_UNAUTHORIZED"\} \d+$/m);
    const json = (await app.inject({ url: '/v1/metrics', headers: auth('analyst') })).json();
    const series = json.series['POST /v1/score'];
    expect(series.cumulative.count).toBeGreaterThanOrEqual(5);
    expect(series.cumulative.p99).toBeGreaterThan(0);
    expect(series.cumulative.max).toBeGreaterThanOrEqual(series.cumulative.p50);
    expect(json.series.kernel.cumulative.count).toBeGreaterThanOrEqual(5);
    // this server has no decision log: no wait to record
    expect(json.series.decision_log).toBeUndefined();
    expect(text).not.toMatch(/^selectivity_decision_log_wait_seconds/m);
    expect(series.histogram).toBeUndefined();
    // ?histograms=true: each series' cumulative histogram (ns, HdrHistogram compressed), holding every request counted
    const withHistograms = (await app.inject({ url: '/v1/metrics?histograms=true', headers: auth('analyst') })).json();
    const h = decodeFromCompressedBase64(withHistograms.series['POST /v1/score'].histogram);
    expect(h.totalCount).toBe(withHistograms.series['POST /v1/score'].cumulative.count);
    expect(Math.abs(h.getValueAtPercentile(99) / 1e6 - withHistograms.series['POST /v1/score'].cumulative.p99)).toBeLessThanOrEqual(0.01 * withHistograms.series['POST /v1/score'].cumulative.p99 + 0.001);
    const bad = await app.inject({ url: '/v1/metrics?histograms=yes', headers: auth('analyst') });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID' });
  });

  it('describes itself in OpenAPI, generated from the route schemas', async () => {
    const doc = (await app.inject({ url: '/v1/openapi.json', headers: auth('port') })).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/score', '/v1/score/stream', '/v1/ruleset', '/v1/ruleset/reload', '/v1/ruleset/profiles', '/healthz', '/readyz', '/metrics']));
    const item = doc.paths['/v1/score'].post.requestBody.content['application/json'].schema.properties.declarations.items;
    expect(item.required).toEqual(expect.arrayContaining(['id', 'date', 'hs', 'origin', 'customsValue', 'netMass']));
  });

  it('negotiates Accept with q-values', () => {
    expect(negotiate(undefined, 'msgpack')).toBe('msgpack');
    expect(negotiate('*/*', 'json')).toBe('json');
    expect(negotiate('application/json;q=0.1, application/x-msgpack;q=0.9', 'json')).toBe('msgpack');
    expect(negotiate('application/msgpack;q=0, application/json', 'msgpack')).toBe('json');
    expect(() => negotiate('text/csv', 'json')).toThrow(expect.objectContaining({ code: 'SEL_ERR_NOT_ACCEPTABLE' }));
    // as chooseAnswer weighs Accept (RFC 9110): a q of 0 on MessagePack is not undone by a wildcard that
    // matches its other media type, and a parameter name is case-insensitive (Q=0 is q=0)
    expect(negotiate('application/msgpack;q=0, */*', 'msgpack')).toBe('json');
    expect(negotiate('application/x-msgpack;q=0, application/*', 'msgpack')).toBe('json');
    expect(negotiate('application/json;Q=0, application/msgpack', 'json')).toBe('msgpack');
    expect(() => negotiate('application/json;Q=0', 'json')).toThrow(expect.objectContaining({ code: 'SEL_ERR_NOT_ACCEPTABLE' }));
    // equal q: the one named first, and a wildcard answers in the request's encoding
    expect(negotiate('application/msgpack, application/json', 'json')).toBe('msgpack');
    expect(negotiate('application/json, application/msgpack', 'msgpack')).toBe('json');
    expect(negotiate('application/json;q=0.5, */*;q=0.5', 'msgpack')).toBe('json');
    expect(negotiate('*/*;q=0.5, application/json;q=0.5', 'msgpack')).toBe('msgpack');
    expect(negotiate('application/*', 'msgpack')).toBe('msgpack');
    expect(negotiate('application/ndjson', 'json', ['application/x-ndjson', 'application/ndjson', 'application/json'])).toBe('json');
    // of two aliases both named, the higher q counts (either order)
    expect(negotiate('application/msgpack;q=0, application/x-msgpack', 'msgpack')).toBe('msgpack');
    expect(negotiate('application/x-msgpack, application/msgpack;q=0', 'msgpack')).toBe('msgpack');
    expect(negotiate('application/x-ndjson;q=0, application/json', 'json', ['application/x-ndjson', 'application/ndjson', 'application/json'])).toBe('json');
    expect(negotiate('application/msgpack;q=0.1, application/x-msgpack;q=0.9, application/json;q=0.5', 'json')).toBe('msgpack');
  });
});

describe('tokens', () => {
  it('generates one token per role on a first start, owner-only, and reads them back later', () => {
    const d = join(dir, 'tokens-first');
    const first = loadTokens({ dataDir: d });
    expect(first.generated?.map((t) => t.role)).toEqual(['port', 'analyst', 'admin', 'monitor']);
    const file = join(d, 'tokens.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = loadTokens({ dataDir: d });
    expect(again.generated).toBeUndefined();
    expect(again.store.roleOf(first.generated![2].token)).toBe('admin');
    expect(again.store.roleOf('sel_admin_guess')).toBeUndefined();
  });

  it('prefers SELECTIVITY_TOKENS, and rejects malformed values with a named code', () => {
    const { store } = loadTokens({ dataDir: join(dir, 'tokens-env'), env: 'port:abcdefghijklmnopqrstuvwx' });
    expect(store.source).toBe('env');
    expect(store.roleOf('abcdefghijklmnopqrstuvwx')).toBe('port');
    // tokens no HTTP client can send as they are: control characters, non-ASCII, longer than any header
    for (const bad of ['port', 'pilot:abcdefghijklmnopqrstuvwx', 'port:short', ' , ', '', 'port:ctl\u0001\u0002abcdefghijklmnop', 'port:tökentökentökentöken', `port:${'x'.repeat(1025)}`]) {
      expect(() => parseTokensEnv(bad), bad).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID' }));
    }
    // set but empty (an unset secret) is refused, not a fall back to the file's tokens or new ones
    expect(() => loadTokens({ dataDir: join(dir, 'tokens-env'), env: '' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID', details: expect.objectContaining({ field: 'SELECTIVITY_TOKENS' }) }));
    expect(parseTokensEnv(`port:${'x'.repeat(1024)}`)).toHaveLength(1);
    // a token never shows in an error: a pair written the wrong way round, a tokens file that is not JSON
    const secret = 'sel_SECRET_0123456789abcdef';
    let err: unknown;
    try { parseTokensEnv(`${secret}:admin`); } catch (e) { err = e; }
    expect(err).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID' });
    expect(JSON.stringify(err) + String((err as Error).message)).not.toContain('SECRET');
    const broken = join(dir, 'tokens-broken.json');
    writeFileSync(broken, `{"tokens":[{"role":"admin","token":${secret}"}]}`);
    try { readTokensFile(broken); err = undefined; } catch (e) { err = e; }
    expect(err).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID' });
    expect(JSON.stringify(err) + String((err as Error).message)).not.toContain('SECRET');
    // one token for two roles is ambiguous
    expect(() => loadTokens({ dataDir: join(dir, 'tokens-env'), env: 'port:abcdefghijklmnopqrstuvwx,admin:abcdefghijklmnopqrstuvwx' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID' }));
  });

  it('refuses a bad token configuration, or a missing or invalid file to start from (profiles, peers), before it creates or seeds the data directory', async () => {
    const d = join(dir, 'tokens-refused');
    const badProfiles = join(dir, 'bad-profiles.json');
    writeFileSync(badProfiles, JSON.stringify({ profiles: [{ id: 'P1' }] }));
    const badPeers = join(dir, 'bad-peers.json');
    writeFileSync(badPeers, '{"format": 2, "levels": [');
    const good = { tokensEnv: 'port:abcdefghijklmnopqrstuvwx' };
    for (const [config, code] of [
      [{ tokensEnv: 'port:short' }, 'SEL_ERR_CONFIG_INVALID'],
      [{ tokensFile: join(dir, 'no-such-tokens.json') }, 'SEL_ERR_FILE_NOT_FOUND'],
      [{ ...good, profiles: join(dir, 'no-such-profiles.json') }, 'SEL_ERR_FILE_NOT_FOUND'],
      [{ ...good, profiles: badProfiles }, 'SEL_ERR_PROFILE_INVALID'],
      [{ ...good, peers: join(dir, 'no-such-peers.json') }, 'SEL_ERR_FILE_NOT_FOUND'],
      [{ ...good, peers: badPeers }, 'SEL_ERR_PEERS_CORRUPT'],
    ] as const) {
      await expect(startService({ host: '127.0.0.1', port: 0, dataDir: d, threads: 0, ...config }), JSON.stringify(config)).rejects.toMatchObject({ code });
      expect(existsSync(d), JSON.stringify(config)).toBe(false);
    }
    // nothing configured: tokens are generated with nothing to check first
    expect(loadTokens({ dataDir: d, generate: false })).toBeUndefined();
    expect(existsSync(d)).toBe(false);
  });

  it('re-reads a tokens file on reload: revoked tokens are refused, new ones accepted; a file that does not hold changes nothing', () => {
    const d = join(dir, 'tokens-reload');
    const first = loadTokens({ dataDir: d });
    const tokens = new ReloadableTokens(first.store, true);
    const [port, , admin] = first.generated!;
    expect(tokens.roleOf(port.token)).toBe('port');
    const file = join(d, 'tokens.json');
    const fresh = 'port-after-reload-0123456789abcdef';
    writeFileSync(file, JSON.stringify({ tokens: [{ role: 'port', token: fresh, name: 'gate 2' }, admin] }));
    expect(tokens.reload()).toEqual({ port: 1, analyst: 0, admin: 1, monitor: 0 });
    expect(tokens.roleOf(port.token)).toBeUndefined();
    expect(tokens.identify(fresh)).toEqual({ role: 'port', name: 'gate 2' });
    expect(tokens.counts).toEqual({ port: 1, analyst: 0, admin: 1, monitor: 0 });
    for (const broken of ['{"tokens": [', JSON.stringify({ tokens: [{ role: 'port', token: 'short' }] }), JSON.stringify({ tokens: [{ role: 'pilot', token: fresh }] }), JSON.stringify({ tokens: [] })]) {
      writeFileSync(file, broken);
      expect(() => tokens.reload(), broken).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID' }));
      expect(tokens.roleOf(fresh), broken).toBe('port');
    }
    // the data directory's tokens.json must stay owner-only, on reload as at start
    writeFileSync(file, JSON.stringify({ tokens: [{ role: 'admin', token: 'admin-open-file-0123456789abcdef' }] }));
    chmodSync(file, 0o644);
    expect(() => tokens.reload()).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID', details: expect.objectContaining({ got: '644' }) }));
    expect(tokens.roleOf(fresh)).toBe('port');
    chmodSync(file, 0o600);
    // tokens from the environment cannot be re-read
    const env = new ReloadableTokens(loadTokens({ dataDir: d, env: 'port:abcdefghijklmnopqrstuvwx' }).store, false);
    expect(() => env.reload()).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID', details: expect.objectContaining({ got: 'SELECTIVITY_TOKENS' }) }));
    expect(env.roleOf('abcdefghijklmnopqrstuvwx')).toBe('port');
  });

  it('POST /v1/tokens/reload (admin) swaps the tokens in from the next request, and answers counts, never a token', async () => {
    const d = join(dir, 'tokens-route');
    await prepareDataDir(d); // the directory the tokens are generated into
    const first = loadTokens({ dataDir: d });
    const [port, analyst, admin] = first.generated!;
    const tokens = new ReloadableTokens(first.store, true);
    const service = await inProcessService(d, { tokens });
    const server = service.app;
    try {
      const reload = (token: string) => server.inject({ method: 'POST', url: '/v1/tokens/reload', headers: { authorization: `Bearer ${token}` } });
      expect((await reload(analyst.token)).statusCode).toBe(403);
      writeFileSync(join(d, 'tokens.json'), JSON.stringify({ tokens: [admin, analyst] }));
      const r = await reload(admin.token);
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ source: 'file', path: join(d, 'tokens.json'), counts: { port: 0, analyst: 1, admin: 1, monitor: 0 } });
      expect(r.body).not.toContain(admin.token);
      const scored = await server.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${port.token}` }, payload: { declarations: declarations(1, 3) } });
      expect(scored.statusCode).toBe(401);
      writeFileSync(join(d, 'tokens.json'), '{');
      const broken = await reload(admin.token);
      expect(broken.statusCode).toBe(400);
      expect(broken.json().error).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'tokens' } });
      expect((await server.inject({ url: '/v1/ruleset', headers: { authorization: `Bearer ${analyst.token}` } })).statusCode).toBe(200);
      // the file gone: a configuration that does not hold (400), not a missing route (404); the tokens in use stay
      rmSync(join(d, 'tokens.json'));
      const gone = await reload(admin.token);
      expect(gone.statusCode).toBe(400);
      expect(gone.json().error).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'tokens' } });
      expect((await server.inject({ url: '/v1/ruleset', headers: { authorization: `Bearer ${analyst.token}` } })).statusCode).toBe(200);
    } finally {
      await service.close();
    }
  });

  it('names why it cannot listen: the port taken (SEL_ERR_CONFIG_INVALID on field port), before it makes the data directory', async () => {
    const first = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'listen-a'), tokensEnv: 'port:abcdefghijklmnopqrstuvwx', threads: 1, metricsIntervalMs: 60_000 });
    try {
      const port = Number(new URL(first.url).port);
      await expect(startService({ host: '127.0.0.1', port, dataDir: join(dir, 'listen-b'), tokensEnv: 'port:abcdefghijklmnopqrstuvwx', threads: 1, metricsIntervalMs: 60_000 }))
        .rejects.toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'port', got: port } });
      expect(existsSync(join(dir, 'listen-b'))).toBe(false); // refused before anything was made
      expect((await fetch(`${first.url}/healthz`)).status).toBe(200); // the first one is untouched
      // the probe lets the port go: once the first service is gone, the port can be had
      await first.close();
      const again = await startService({ host: '127.0.0.1', port, dataDir: join(dir, 'listen-b'), tokensEnv: 'port:abcdefghijklmnopqrstuvwx', threads: 1, metricsIntervalMs: 60_000 });
      expect((await fetch(`${again.url}/healthz`)).status).toBe(200);
      await again.close();
    } finally {
      await first.close();
    }
    const err = (code: string) => Object.assign(new Error(code), { code });
    expect(listenError(err('EACCES'), '0.0.0.0', 80)).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'port', got: 80 } });
    expect(listenError(err('EADDRNOTAVAIL'), '10.9.9.9', 8080)).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'host', got: '10.9.9.9' } });
    expect(listenError(err('ENOTFOUND'), 'no-such-host', 8080)).toMatchObject({ code: 'SEL_ERR_CONFIG_INVALID', details: { field: 'host' } });
    const other = err('EMFILE');
    expect(listenError(other, '127.0.0.1', 8080)).toBe(other);
  }, 60_000);

  it('refuses a tokens file readable by others', () => {
    const d = join(dir, 'tokens-open');
    loadTokens({ dataDir: d });
    const file = join(d, 'tokens.json');
    writeFileSync(file, readFileSync(file), { mode: 0o644 });
    chmodSync(file, 0o644);
    expect(() => loadTokens({ dataDir: d })).toThrow(expect.objectContaining({ code: 'SEL_ERR_CONFIG_INVALID', details: expect.objectContaining({ field: 'tokens' }) }));
  });
});

describe('MessagePack framing', () => {
  it('finds the end of each value without decoding it, and -1 for a truncated one', () => {
    const values = [{ a: 1, b: 'x'.repeat(300), c: [1, 2.5, -3, null, true], d: { e: new Uint8Array(70000) } }, 'str', 12345678901, -1.5, [], {}];
    const bytes = Buffer.concat(values.map((v) => pack(v)));
    let pos = 0;
    const ends: number[] = [];
    while (pos < bytes.length) { pos = msgpackValueEnd(bytes, pos); ends.push(pos); }
    expect(ends).toHaveLength(values.length);
    expect(ends.at(-1)).toBe(bytes.length);
    const first = pack(values[0]);
    for (const cut of [1, 2, 10, first.length - 1]) expect(msgpackValueEnd(first.subarray(0, cut), 0)).toBe(-1);
    expect(() => msgpackValueEnd(Buffer.from([0xc1]), 0)).toThrow(expect.objectContaining({ code: 'SEL_ERR_REQUEST_PARSE' }));
  });
});

// ---- over loopback, with a worker pool --------------------------------------------

interface StreamResult { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

function streamRequest(service: RunningService, contentType: string, chunks: Iterable<Buffer>, headers: Record<string, string> = {}, onFirstData?: () => void): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const url = new URL('/v1/score/stream', service.url);
    // a connection of its own (no keep-alive pool shared with the other requests of the tests)
    const req = httpRequest(url, { method: 'POST', agent: false, headers: { ...auth('port'), 'content-type': contentType, ...headers } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => { if (parts.length === 0) onFirstData?.(); parts.push(c); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const it = chunks[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const n = it.next();
        if (n.done) { req.end(); return; }
        if (!req.write(n.value)) { req.once('drain', pump); return; }
      }
    };
    pump();
  });
}

function* ndjsonOf(decls: readonly unknown[], perChunk = 97): Generator<Buffer> {
  for (let i = 0; i < decls.length; i += perChunk) yield Buffer.from(decls.slice(i, i + perChunk).map((d) => `${typeof d === 'string' ? d : JSON.stringify(d)}\n`).join(''));
}

describe('service over loopback (worker pool)', () => {
  let service: RunningService;

  beforeAll(async () => {
    service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'live'), tokensEnv, threads: 2, maxQueue: 2, metricsIntervalMs: 60_000 });
  }, 30_000);
  afterAll(async () => { await service?.close(); });

  it('warms the main thread and every worker before it listens, and neither logs nor counts the warm-up', async () => {
    // the first test of this service: startService's warm-up scored, but no declaration is counted yet
    const counters = service.metrics.summary().counters;
    const counted = Object.keys(counters).filter((k) => k.startsWith('selectivity_declarations_total') || k.startsWith('selectivity_control_group_total'));
    expect(counted.length).toBe(6); // each channel's and the control group's, created at 0
    for (const k of counted) expect(counters[k], k).toBe(0);
    // what startService ran before listening, run again: one declaration on the main thread, one batch per worker
    const w = await warmUp(service.engine);
    expect(w.reply.ok).toBe(true);
    expect(w.reply.ok && [w.reply.scored, w.reply.invalid]).toEqual([1, 0]);
    expect(w.workerBatches).toBe(2);
    const logged = await fetch(`${service.url}/v1/decisions/warm-up`, { headers: auth('analyst') });
    expect(logged.status).toBe(404);
    expect(((await logged.json()) as { error: { code: string } }).error.code).toBe('SEL_ERR_NOT_FOUND');
  });

  it('records how long each answer waited for its decision-log commit, per request', async () => {
    const waits = () => service.metrics.summary().series.decision_log?.cumulative.count ?? 0;
    const before = waits();
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${service.url}/v1/score`, { method: 'POST', headers: { ...auth('port'), 'content-type': 'application/json' }, body: JSON.stringify({ declarations: declarations(10, 300 + i) }) });
      expect(r.status).toBe(200);
    }
    expect(waits()).toBe(before + 3);
    expect(service.metrics.summary().series.decision_log.cumulative.p50).toBeGreaterThan(0);
    const text = await (await fetch(`${service.url}/metrics`, { headers: auth('admin') })).text();
    expect(text).toMatch(/^selectivity_decision_log_wait_seconds\{quantile="0\.99"\} [0-9.e-]+$/m);
    expect(text).toMatch(new RegExp(`^selectivity_decision_log_wait_seconds_count ${before + 3}$`, 'm'));
    expect(text).not.toMatch(/route="decision_log"/);
  });

  it('streams NDJSON decisions back in input order, with bad lines answered in place', async () => {
    const decls: unknown[] = declarations(5000, 21);
    decls[10] = '{"id": broken';
    decls[4000] = { ...(decls[4000] as object), hs: 'ABC' };
    const r = await streamRequest(service, 'application/x-ndjson', ndjsonOf(decls));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const out = r.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out).toHaveLength(decls.length);
    expect(out[10]).toMatchObject({ line: 11, error: { code: 'SEL_ERR_DECL_PARSE' } });
    expect(out[4000]).toMatchObject({ line: 4001, error: { code: 'SEL_ERR_DECL_FIELD_FORMAT' } });
    out.forEach((o, i) => { if (i !== 10 && i !== 4000) expect(o.id).toBe((decls[i] as Declaration).id); });
  });

  it('reads a JSON text sequence (application/json-seq, RFC 7464): each record\'s leading RS is not part of it', async () => {
    const decls = declarations(50, 27);
    const body = Buffer.from(decls.map((d) => `\x1e${JSON.stringify(d)}\n`).join(''));
    const r = await streamRequest(service, 'application/json-seq', [body]);
    expect(r.status).toBe(200);
    const out = r.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out.map((o) => o.id)).toEqual(decls.map((d) => d.id));
    expect(out.every((o) => o.error === undefined)).toBe(true);
  });

  it('decodes a gzip stream as it reads it; a corrupt one ends with a fatal record after the decisions decoded before it', async () => {
    const decls = declarations(4000, 23);
    const zipped = gzipSync(Buffer.concat([...ndjsonOf(decls)]));
    const pieces = (b: Buffer) => Array.from({ length: Math.ceil(b.length / 8192) }, (_, i) => b.subarray(i * 8192, i * 8192 + 8192));
    const r = await streamRequest(service, 'application/x-ndjson', pieces(zipped), { 'content-encoding': 'gzip' });
    expect(r.status).toBe(200);
    const out = r.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out.map((o) => o.id)).toEqual(decls.map((d) => d.id));
    const records = (b: Buffer) => b.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    // cut in the middle: every whole line decoded before the end is answered, then the fatal record
    const cut = records((await streamRequest(service, 'application/x-ndjson', pieces(zipped.subarray(0, zipped.length >> 1)), { 'content-encoding': 'gzip' })).body);
    expect(cut.at(-1)).toMatchObject({ fatal: true, error: { code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'content-encoding' } } });
    expect(cut.length - 1).toBeGreaterThan(1500); // about half of them
    expect(cut.slice(0, -1).map((o) => o.id)).toEqual(decls.slice(0, cut.length - 1).map((d) => d.id));
    // garbage from the middle on: deflate may decode some of it into bad lines (answered as such) before it fails
    const garbled = records((await streamRequest(service, 'application/x-ndjson', pieces(Buffer.concat([zipped.subarray(0, zipped.length >> 1), Buffer.alloc(4096, 0x55)])), { 'content-encoding': 'gzip' })).body);
    expect(garbled.at(-1)).toMatchObject({ fatal: true, error: { code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'content-encoding' } } });
    expect(garbled.slice(0, 1500).map((o) => o.id)).toEqual(decls.slice(0, 1500).map((d) => d.id));
  });

  it('streams a MessagePack sequence, and ends a truncated one with a fatal record after the complete ones', async () => {
    const decls = declarations(3000, 22);
    const bytes = Buffer.concat(decls.map((d) => pack(d)));
    const r = await streamRequest(service, 'application/msgpack', [bytes.subarray(0, 100_000), bytes.subarray(100_000)]);
    expect(r.status).toBe(200);
    const out = unpackMultiple(r.body) as { id?: string }[];
    expect(out.map((o) => o.id)).toEqual(decls.map((d) => d.id));

    const cut = await streamRequest(service, 'application/msgpack', [bytes.subarray(0, bytes.length - 5)]);
    const recs = unpackMultiple(cut.body) as { id?: string; fatal?: boolean; error?: { code: string } }[];
    expect(recs.at(-1)).toMatchObject({ fatal: true, error: { code: 'SEL_ERR_REQUEST_PARSE' } });
    expect(recs.slice(0, -1).map((o) => o.id)).toEqual(decls.slice(0, recs.length - 1).map((d) => d.id));
    expect(recs.length - 1).toBeGreaterThanOrEqual(decls.length - 2048);
  });

  it('answers a stream record that is not UTF-8, or that MessagePack cannot read, on its own; after a fault the connection carries the next request', async () => {
    const decls = declarations(3000, 26);
    // NDJSON: line 2,501 holds a byte that is not UTF-8 (its chunk's other lines used to vanish with it)
    const lines = decls.map((d) => Buffer.from(`${JSON.stringify(d)}\n`));
    lines[2500] = Buffer.concat([Buffer.from('{"id":"X'), Buffer.from([0xff]), Buffer.from('"}\n')]);
    const r = await streamRequest(service, 'application/x-ndjson', [Buffer.concat(lines)]);
    const out = r.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { id?: string; line?: number; error?: { code: string; message: string } });
    expect(out).toHaveLength(decls.length);
    expect(out[2500]).toMatchObject({ line: 2501, error: { code: 'SEL_ERR_DECL_PARSE', message: 'line 2501: not valid UTF-8' } });
    out.forEach((o, i) => { if (i !== 2500) expect(o.id).toBe(decls[i].id); });
    // MessagePack: a whole value of an extension type no declaration has, between two declarations
    const ext = Buffer.from([0xd4, 0x05, 0x01]); // fixext 1, type 5
    const mp = await streamRequest(service, 'application/msgpack', [Buffer.concat([pack(decls[0]), ext, pack(decls[1])])]);
    const recs = unpackMultiple(mp.body) as { id?: string; index?: number; error?: { code: string } }[];
    expect(recs.map((x) => x.id ?? x.error?.code)).toEqual([decls[0].id, 'SEL_ERR_DECL_PARSE', decls[1].id]);
    expect(recs[1].index).toBe(1);
    // a line over the limit: the lines before it answered, then the fatal record; the rest of the request is
    // read and dropped, and the connection carries the next request (it was closed, and a request already
    // sent on it was run and logged but never answered)
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const head = decls.slice(0, 20).map((d) => `${JSON.stringify(d)}\n`).join('');
      const answer = await new Promise<{ body: string }>((resolve, reject) => {
        const req = httpRequest(new URL('/v1/score/stream', service.url), { method: 'POST', agent, headers: { ...auth('port'), 'content-type': 'application/x-ndjson' } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ body: Buffer.concat(parts).toString('utf8') }));
        });
        req.on('error', reject);
        req.write(head);
        req.end(`${'y'.repeat(3 * 1024 * 1024)}\n${head}`);
      });
      const recs2 = answer.body.trim().split('\n').map((l) => JSON.parse(l) as { id?: string; fatal?: boolean; error?: { code: string } });
      expect(recs2.slice(0, -1).map((x) => x.id)).toEqual(decls.slice(0, 20).map((d) => d.id));
      expect(recs2.at(-1)).toMatchObject({ fatal: true, error: { code: 'SEL_ERR_REQUEST_PARSE' } });
      // the next request, on the same connection, is answered
      const next = await new Promise<{ status: number; reused: boolean; body: string }>((resolve, reject) => {
        const req = httpRequest(new URL('/v1/score', service.url), { method: 'POST', agent, headers: { ...auth('port'), 'content-type': 'application/json' } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, body: Buffer.concat(parts).toString('utf8') }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ declarations: [{ ...decls[30], id: 'AFTER-FATAL' }] }));
      });
      expect(next.reused).toBe(true);
      expect(next.status).toBe(200);
      expect((JSON.parse(next.body) as { decisions: { id: string }[] }).decisions.map((d) => d.id)).toEqual(['AFTER-FATAL']);
    } finally {
      agent.destroy();
    }
  });

  it('a client still sending after a fatal record reads every decision before it and the fatal record (the rest of its upload is dropped)', async () => {
    const decls = declarations(3000, 29).map((d, i) => ({ ...d, id: `LINGER-${i}` }));
    const body = decls.map((d) => `${JSON.stringify(d)}\n`).join('');
    const more = Buffer.from(body.replaceAll('LINGER-', 'MORE-'));
    const got = await new Promise<{ text: string; error?: string }>((resolve) => {
      let text = '';
      const req = httpRequest(new URL('/v1/score/stream', service.url), { method: 'POST', agent: false, headers: { ...auth('port'), 'content-type': 'application/x-ndjson' } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => resolve({ text }));
        res.on('error', (e) => resolve({ text, error: String(e) }));
      });
      req.on('error', (e) => resolve({ text, error: String(e) }));
      req.write(body);
      req.write(`{"id":"${'x'.repeat(1_100_000)}"}\n`); // over the 1 MiB line limit: fatal
      // and it goes on sending, with backpressure, while it reads (a streaming client does not wait for the answer)
      void (async () => {
        for (let k = 0; k < 40 && !req.destroyed; k++) {
          if (!req.write(more)) await new Promise((r) => { req.once('drain', r); setTimeout(r, 100); });
        }
        req.end();
      })();
    });
    expect(got.error).toBeUndefined();
    const recs = got.text.trim().split('\n').map((l) => JSON.parse(l) as { id?: string; fatal?: boolean });
    expect(recs.slice(0, -1).map((r) => r.id)).toEqual(decls.map((d) => d.id));
    expect(recs.at(-1)).toMatchObject({ fatal: true });
  });

  it('applies backpressure end to end: a client that does not read stops the server reading', async () => {
    const pool = declarations(2000, 23).map((d) => JSON.stringify(d));
    const total = 400_000;
    let written = 0;
    let res: import('node:http').IncomingMessage | undefined;
    const url = new URL('/v1/score/stream', service.url);
    const req = httpRequest(url, { method: 'POST', headers: { ...auth('port'), 'content-type': 'application/x-ndjson' } }, (r) => { res = r; r.pause(); });
    let i = 0;
    const next = (): Buffer | undefined => {
      if (i >= total) return undefined;
      const lines: string[] = [];
      for (let k = 0; k < 500 && i < total; k++, i++) lines.push(pool[i % pool.length].replace(/"id":"[^"]*"/, `"id":"S${i}"`));
      return Buffer.from(`${lines.join('\n')}\n`);
    };
    // write until the socket stops taking data for a while
    let stalled = false;
    await new Promise<void>((resolve) => {
      const pump = () => {
        for (;;) {
          const b = next();
          if (!b) { req.end(); resolve(); return; }
          written += b.length;
          if (!req.write(b)) {
            const timer = setTimeout(() => { stalled = true; resolve(); }, 1500);
            req.once('drain', () => { clearTimeout(timer); if (!stalled) pump(); });
            return;
          }
        }
      };
      pump();
    });
    const approxTotalBytes = total * (written / Math.max(1, i));
    expect(stalled).toBe(true);
    expect(written).toBeLessThan(approxTotalBytes / 4);
    // now read: everything flows and every declaration gets its decision
    let lines = 0;
    let tail = '';
    const done = new Promise<void>((resolve, reject) => {
      const attach = () => {
        res!.on('data', (c: Buffer) => { const s = tail + c.toString('utf8'); const parts = s.split('\n'); tail = parts.pop()!; lines += parts.length; });
        res!.on('end', () => resolve());
        res!.on('error', reject);
        res!.resume();
      };
      if (res) attach(); else req.once('response', () => setImmediate(attach));
    });
    req.on('drain', () => undefined);
    const pumpRest = () => {
      for (;;) {
        const b = next();
        if (!b) { req.end(); return; }
        if (!req.write(b)) { req.once('drain', pumpRest); return; }
      }
    };
    pumpRest();
    await done;
    expect(lines).toBe(total);
  }, 120_000);

  it('answers 503 with Retry-After when the scoring queue is full, never 500', async () => {
    const body = JSON.stringify({ declarations: declarations(2000, 24) });
    const send = () => new Promise<{ status: number; retryAfter?: string; code?: string }>((resolve, reject) => {
      const req = httpRequest(new URL('/v1/score', service.url), { method: 'POST', headers: { ...auth('port'), 'content-type': 'application/json' } }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, code: res.statusCode === 200 ? undefined : JSON.parse(text).error.code });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
    const results = await Promise.all(Array.from({ length: 24 }, send));
    const statuses = new Set(results.map((r) => r.status));
    expect([...statuses].every((s) => s === 200 || s === 503)).toBe(true);
    const refused = results.filter((r) => r.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    for (const r of refused) { expect(r.code).toBe('SEL_ERR_OVERLOADED'); expect(Number(r.retryAfter)).toBeGreaterThan(0); }
  }, 60_000);

  /** A POST written on a raw socket (the port's token), so that a test can hang up whenever it likes. */
  const rawPost = (path: string, contentType: string, body: string) => {
    const url = new URL(path, service.url);
    const socket = connect(Number(url.port), url.hostname);
    socket.on('error', () => undefined);
    socket.write(`POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${TOKENS.port}\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
    socket.write(body);
    return socket;
  };

  it('skips a batch whose client went away while it waited for a worker: not scored, not logged, counted as SEL_ERR_ABANDONED', async () => {
    const url = new URL('/v1/score', service.url);
    const big = JSON.stringify({ declarations: declarations(20_000, 26) });
    const post = (body: string) => new Promise<number>((resolve, reject) => {
      const req = httpRequest(url, { method: 'POST', headers: { ...auth('port'), 'content-type': 'application/json' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
      req.on('error', reject);
      req.end(body);
    });
    const queued = async (n: number) => {
      for (let i = 0; i < 5000; i++) {
        const r = (await (await fetch(`${service.url}/readyz`)).json()) as { queued: number };
        if (r.queued >= n) return;
        await new Promise((r) => setTimeout(r, 2));
      }
      throw new Error(`the scoring queue never held ${n} batches`);
    };
    const ABANDONED = 'selectivity_errors_total{code="SEL_ERR_ABANDONED"}';
    const abandoned = () => service.metrics.summary().counters[ABANDONED] ?? 0;
    const before = abandoned();
    // two batches keep both workers busy and a third waits
    const busy = [post(big), post(big), post(big)];
    await queued(1);
    // then a batch (above the 16 KiB scored inline) from a client that hangs up once the batch is queued
    const gone = JSON.stringify({ declarations: declarations(200, 27).map((d, i) => ({ ...d, id: `GONE-${i}` })) });
    expect(Buffer.byteLength(gone)).toBeGreaterThan(16 * 1024);
    const socket = rawPost('/v1/score', 'application/json', gone);
    await queued(2);
    socket.destroy();
    expect(await Promise.all(busy)).toEqual([200, 200, 200]);
    for (let i = 0; i < 500 && abandoned() === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(abandoned()).toBe(before + 1);
    const logged = await fetch(`${service.url}/v1/decisions/GONE-0`, { headers: auth('analyst') });
    expect(logged.status).toBe(404);
  }, 60_000);

  it('records the kernel time of a stream per chunk, and counts a stream that ended with a fatal record as status "fatal"', async () => {
    const FATAL = 'selectivity_requests_total{route="POST /v1/score/stream",status="fatal"}';
    const OK = 'selectivity_requests_total{route="POST /v1/score/stream",status="200"}';
    const read = () => { const m = service.metrics.summary(); return { fatal: m.counters[FATAL] ?? 0, ok: m.counters[OK] ?? 0, kernel: m.series.kernel?.cumulative.count ?? 0 }; };
    const before = read();
    const decls = declarations(5000, 31).map((d, i) => ({ ...d, id: `FATAL-${i}` }));
    const answer = await streamRequest(service, 'application/x-ndjson', [...ndjsonOf(decls, 500), Buffer.from(`{"id":"${'x'.repeat(1_100_000)}"}\n`)]);
    const recs = answer.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { fatal?: boolean });
    expect(answer.status).toBe(200);
    expect(decls.length).toBeGreaterThan(4096);
    expect(recs.length).toBe(decls.length + 1);
    expect(recs.at(-1)).toMatchObject({ fatal: true });
    let after = read();
    for (let i = 0; i < 200 && after.fatal === before.fatal; i++) { await new Promise((r) => setTimeout(r, 10)); after = read(); }
    expect(after.fatal).toBe(before.fatal + 1);
    expect(after.ok).toBe(before.ok);
    // over 4,096 records in chunks of at most 2,048: three kernel samples, not one for the stream
    expect(after.kernel - before.kernel).toBeGreaterThanOrEqual(3);
    // the service's own counters have their own HELP text, not a placeholder
    const text = service.metrics.prometheus();
    for (const family of ['selectivity_control_group_total', 'selectivity_requests_total']) {
      expect(text).toMatch(new RegExp(`# HELP ${family} (?!Counter ${family})`));
    }
  });

  it('counts what a stream scored and logged when its client hangs up midway (no onResponse then)', async () => {
    const db = new Database(join(dir, 'live', 'selectivity.db'), { readonly: true });
    const loggedCount = () => db.prepare('SELECT coalesce(sum(count), 0) FROM decision_chunks').pluck().get() as number;
    const counted = () => Object.entries(service.metrics.summary().counters).filter(([k]) => k.startsWith('selectivity_declarations_total')).reduce((a, [, v]) => a + v, 0);
    const CLOSED = 'selectivity_requests_total{route="POST /v1/score/stream",status="closed"}';
    const closed = () => service.metrics.summary().counters[CLOSED] ?? 0;
    try {
      const [logged0, counted0, closed0] = [loggedCount(), counted(), closed()];
      const lines = declarations(60_000, 28).map((d, i) => JSON.stringify({ ...d, id: `HANG-${i}` })).join('\n') + '\n';
      const socket = rawPost('/v1/score/stream', 'application/x-ndjson', lines);
      // hang up once some decisions came back
      await new Promise<void>((resolve) => { let got = 0; socket.on('data', (c: Buffer) => { got += c.length; if (got > 200_000) { socket.destroy(); resolve(); } }); });
      for (let i = 0; i < 500 && closed() === closed0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(closed()).toBe(closed0 + 1);
      const logged = loggedCount() - logged0;
      expect(logged).toBeGreaterThan(0);
      expect(logged).toBeLessThan(60_000); // it stopped midway
      expect(counted() - counted0).toBe(logged);
    } finally {
      db.close();
    }
  }, 60_000);

  it('counts a client that hangs up while still uploading a stream as gone, not as a fault of the service or of its records', async () => {
    const counters = () => service.metrics.summary().counters;
    const CLOSED = 'selectivity_requests_total{route="POST /v1/score/stream",status="closed"}';
    const faults = () => ['SEL_ERR_INTERNAL', 'SEL_ERR_REQUEST_PARSE'].map((c) => counters()[`selectivity_errors_total{code="${c}"}`] ?? 0);
    const [closed0, faults0] = [counters()[CLOSED] ?? 0, faults()];
    // closed (FIN) in the middle of a record, and reset (RST, as a client killed mid-upload)
    for (let n = 0; n < 4; n++) {
      const lines = declarations(4000, 40 + n).map((d, i) => JSON.stringify({ ...d, id: `GONE-${n}-${i}` })).join('\n') + '\n';
      const partial = `${lines}${JSON.stringify(declarations(1, 50)[0]).slice(0, 20)}`; // mid-record, the rest never sent
      const url = new URL('/v1/score/stream', service.url);
      const socket = connect(Number(url.port), url.hostname);
      socket.on('error', () => undefined);
      socket.on('data', () => undefined);
      socket.write(`POST /v1/score/stream HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${TOKENS.port}\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(partial) + 10_000}\r\n\r\n`);
      socket.write(partial);
      await new Promise((r) => setTimeout(r, 300));
      if (n % 2 === 0) socket.destroy();
      else socket.resetAndDestroy();
    }
    for (let i = 0; i < 500 && (counters()[CLOSED] ?? 0) < closed0 + 4; i++) await new Promise((r) => setTimeout(r, 10));
    expect(counters()[CLOSED] ?? 0).toBe(closed0 + 4);
    await new Promise((r) => setTimeout(r, 200));
    expect(faults()).toEqual(faults0);
  }, 60_000);

  it('shuts down gracefully: an in-flight stream completes, then the port closes', async () => {
    const decls = declarations(20_000, 25);
    let closing: Promise<void> | undefined;
    // close as soon as the first decisions come back: the stream is in flight
    const r = await streamRequest(service, 'application/x-ndjson', ndjsonOf(decls, 500), {}, () => { closing = service.close(); });
    expect(closing).toBeDefined();
    await closing;
    expect(r.status, r.body.toString('utf8').slice(0, 300)).toBe(200);
    expect(r.body.toString('utf8').trim().split('\n')).toHaveLength(decls.length);
    await expect(fetch(`${service.url}/healthz`)).rejects.toThrow();
  }, 60_000);
});


/** Bytes written on a raw socket, and everything the server sent back until it closed the connection. */
function rawExchange(url: string, ...writes: (string | (() => Promise<void>))[]): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    const parts: Buffer[] = [];
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.on('error', () => undefined); // a reset after the answer: what came back is what counts
    socket.on('close', () => resolve(Buffer.concat(parts).toString('latin1')));
    socket.once('connect', async () => {
      try {
        for (const w of writes) { if (typeof w === 'string') socket.write(w); else await w(); }
      } catch (e) { reject(e); }
    });
  });
}

/** The JSON body of a raw HTTP/1.1 answer (Content-Length framed). */
const rawJson = (raw: string) => JSON.parse(Buffer.from(raw.slice(raw.indexOf('\r\n\r\n') + 4), 'latin1').toString('utf8'));

describe("requests refused before a route runs, and requests during shutdown (loopback)", () => {
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'refusals'), tokensEnv, threads: 1, metricsIntervalMs: 60_000 });
  }, 30_000);
  afterAll(async () => { await service?.close(); });

  it("answers what Node's HTTP parser refuses with a named code, and counts it", async () => {
    const host = new URL(service.url).host;
    const huge = await rawExchange(service.url, `GET /v1/profiles/stats?from=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(rawJson(huge).error).toMatchObject({ code: 'SEL_ERR_HEADERS_TOO_LARGE', details: { field: 'headers' } });
    const garbage = await rawExchange(service.url, 'NOT HTTP AT ALL\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(rawJson(garbage).error).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'http' } });
    const counters = service.metrics.summary().counters;
    expect(counters['selectivity_errors_total{code="SEL_ERR_HEADERS_TOO_LARGE"}']).toBeGreaterThanOrEqual(1);
    expect(counters['selectivity_errors_total{code="SEL_ERR_REQUEST_PARSE"}']).toBeGreaterThanOrEqual(1);
  });

  it('answers a request that arrives once shutdown began SEL_ERR_NOT_READY with Retry-After, after finishing the one in flight', async () => {
    const host = new URL(service.url).host;
    const decls = declarations(50, 41).map((d) => JSON.stringify(d)).join('\n') + '\n';
    const [head, tail] = [decls.slice(0, 1000), decls.slice(1000)];
    let closing: Promise<void> | undefined;
    const start = (body: string) => `POST /v1/score/stream HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${TOKENS.port}\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(decls)}\r\n\r\n${body}`;
    // a stream in flight when close() is called; a second request pipelined behind it on the same connection
    const raw = await rawExchange(service.url, start(head), async () => {
      await new Promise((r) => setTimeout(r, 100));
      closing = service.close();
      await new Promise((r) => setTimeout(r, 50));
    }, tail + `GET /v1/ruleset HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${TOKENS.analyst}\r\n\r\n`);
    await closing;
    const answers = raw.split(/(?=HTTP\/1\.1 )/);
    expect(answers.map((a) => a.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 503']);
    expect(answers[0].match(/"rulesetVersion"/g)).toHaveLength(50); // the stream in flight was finished, a decision each
    expect(answers[1]).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(answers[1]).toMatch(/\r\nconnection: close\r\n/i);
    expect(rawJson(answers[1]).error.code).toBe('SEL_ERR_NOT_READY');
  }, 30_000);
});

describe('connections at shutdown and when they stall (loopback)', () => {
  /** A raw request whose body stops after `sent` of its `length` bytes; resolves when the server closes the connection. */
  const stalled = (url: string) => {
    const u = new URL(url);
    const socket = connect(Number(u.port), u.hostname);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('connect', () => socket.write(`POST /v1/score HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${TOKENS.port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"declarations":[`));
    return new Promise<void>((resolve) => socket.once('close', () => resolve()));
  };

  it('closes a connection whose upload stalls, once nothing moved for the idle timeout', async () => {
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'stalls'), tokensEnv, threads: 1, metricsIntervalMs: 60_000, decisionLog: false, idleTimeoutMs: 300 });
    try {
      await stalled(service.url); // (before, held for ever)
    } finally {
      await service.close();
    }
  }, 30_000);

  it('ends a keep-alive connection whose answer was in flight at shutdown', async () => {
    // the default idle timeout: the batch's scoring, during which nothing moves on its connection, may take longer than a short one
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'in-flight'), tokensEnv, threads: 1, metricsIntervalMs: 60_000, decisionLog: false });
    try {
      // a batch in flight on a keep-alive connection when close() begins: answered in full, with Connection: close
      const agent = new HttpAgent({ keepAlive: true });
      const sent = declarations(20_000, 43);
      const body = JSON.stringify({ declarations: sent });
      let closing: Promise<void> | undefined;
      const answer = await new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        const req = httpRequest(`${service.url}/v1/score`, { method: 'POST', agent, headers: { authorization: `Bearer ${TOKENS.port}`, 'content-type': 'application/json' } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body: Buffer.concat(parts).toString('utf8') }));
        });
        req.on('error', reject);
        req.on('finish', () => { closing = service.close(); });
        req.end(body);
      });
      expect(answer.status).toBe(200);
      const answered = JSON.parse(answer.body) as { decisions: unknown[]; errors?: unknown[] };
      expect(answered.decisions).toHaveLength(sent.length);
      expect(answer.connection).toBe('close');
      // the port closes without waiting out the connection's keep-alive timeout (72 s)
      await closing;
      agent.destroy();
    } finally {
      await service.close();
    }
  }, 30_000);

  it('closes, after the shutdown grace, a connection that still holds a request', async () => {
    const service = await startService({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'grace'), tokensEnv, threads: 1, metricsIntervalMs: 60_000, decisionLog: false, idleTimeoutMs: 0, shutdownGraceMs: 300 });
    const gone = stalled(service.url);
    await new Promise((r) => setTimeout(r, 100));
    await service.close(); // with no idle timeout, only the grace ends the stalled upload
    await gone;
  }, 30_000);
});

describe('one service per data directory', () => {
  it('refuses a second service on a data directory in use, naming the first; the directory is free again once it stops', async () => {
    const d = join(dir, 'one-service');
    const first = await startService({ host: '127.0.0.1', port: 0, dataDir: d, tokensEnv, threads: 0, metricsIntervalMs: 60_000 });
    let second: RunningService | undefined;
    try {
      await expect(startService({ host: '127.0.0.1', port: 0, dataDir: d, tokensEnv, threads: 0, metricsIntervalMs: 60_000 })).rejects.toMatchObject({
        code: 'SEL_ERR_DATA_DIR_BUSY', details: { field: 'dataDir' }, message: expect.stringContaining(`process ${process.pid}, selectivity serve on 127.0.0.1:0`),
      });
      // the first goes on serving
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
    } finally {
      await first.close();
    }
    second = await startService({ host: '127.0.0.1', port: 0, dataDir: d, tokensEnv, threads: 0, metricsIntervalMs: 60_000 });
    await second.close();
  }, 30_000);
});

describe('clientError', () => {
  it('maps the HTTP parser\'s errors onto named codes', () => {
    expect(clientError(Object.assign(new Error('x'), { code: 'HPE_HEADER_OVERFLOW' }))).toMatchObject({ code: 'SEL_ERR_HEADERS_TOO_LARGE', statusCode: 431 });
    expect(clientError(Object.assign(new Error('x'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }))).toMatchObject({ code: 'SEL_ERR_REQUEST_TIMEOUT', statusCode: 408 });
    expect(clientError(Object.assign(new Error('Invalid method'), { code: 'HPE_INVALID_METHOD' }))).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', statusCode: 400, details: { got: 'HPE_INVALID_METHOD' } });
  });
});

describe('errors of the store', () => {
  it('logs a failure of its own store at error level, with its code and message (an operator saw only info lines for every 500 of a full disk)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sel-log-level-'));
    const files = await prepareDataDir(dataDir);
    const source = new RulesetSource(files);
    const engine = createEngine({ ruleset: await source.load(), threads: 0 });
    const metrics = await createMetrics({ intervalMs: 60_000 });
    const lines: { level: number; msg: string; code?: string }[] = [];
    // a decision log whose commits fail, as on a full disk or a damaged store
    const failing = { append: () => Promise.reject(errors.SEL_ERR_STORAGE('decision log write failed: database or disk is full', { field: 'decisionLog' })) } as unknown as DecisionLog;
    const app = await buildServer({ engine, source, tokens: createTokenStore(parseTokensEnv(`port:${'p'.repeat(24)}`), 'env'), metrics, decisionLog: failing, logger: { level: 'info', stream: { write: (l: string) => { lines.push(JSON.parse(l)); } } } as never });
    try {
      const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${'p'.repeat(24)}` }, payload: { declarations: declarations(2, 5) } });
      expect(r.statusCode).toBe(500);
      expect(r.json().error.code).toBe('SEL_ERR_STORAGE');
      const logged = lines.filter((l) => l.level >= 50);
      expect(logged).toEqual([expect.objectContaining({ code: 'SEL_ERR_STORAGE', msg: 'decision log write failed: database or disk is full' })]);
      // a client's fault (no such route) is not an error line
      const before = lines.length;
      await app.inject({ method: 'GET', url: '/v1/nothing', headers: { authorization: `Bearer ${'p'.repeat(24)}` } });
      expect(lines.slice(before).filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      await app.close();
      await engine.close();
      metrics.close();
      source.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('answers a SQLite failure (busy past the timeout, disk full, read-only) as SEL_ERR_STORAGE with the SQLite code, not as an internal error', () => {
    for (const code of ['SQLITE_BUSY', 'SQLITE_FULL', 'SQLITE_READONLY']) {
      const e = toSelectivityError(new Database.SqliteError('database is locked', code) as never);
      expect(e).toMatchObject({ code: 'SEL_ERR_STORAGE', statusCode: 500, details: { field: 'store', got: code } });
      expect(e.message).toContain('database is locked');
    }
    expect(toSelectivityError(new TypeError('x') as never).code).toBe('SEL_ERR_INTERNAL');
  });
});
