import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { acceptedByWorkers, workerExecArgv, workerPath } from '../src/paths.js';
import { createEngine, type Engine } from '../src/engine.js';
import { referenceScore } from '../src/kernel/reference.js';
import { batchLayout, batchViews, CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, packBatch, toBatch, type ColumnarBatch } from '../src/model/columnar.js';
import { fromWorker } from '../src/errors.js';
import type { ScoreResult } from '../src/kernel/layout.js';
import { buildPeerTables } from '../src/peers/peer-groups.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { toDecisions, type Decision } from '../src/decisions.js';
import { Chunk, CHUNK_MSGPACK, CHUNK_NDJSON, readPayload } from '../src/feedback/log-rows.js';
import { pack, unpack, unpackMultiple } from 'msgpackr';
import { randomDeclarations, randomProfiles } from './helpers.js';

const history = randomDeclarations(2000, 7);
const peers = buildPeerTables([toBatch(history).batch]);
const rulesetA = createRuleset({ peers, profiles: randomProfiles(64, 8), settings: { thresholds: { yellow: 1, red: 3 } } });
const rulesetB = createRuleset({ peers, profiles: randomProfiles(32, 9), settings: { thresholds: { yellow: 0.5, red: 2 } } });

describe('engine', () => {
  const engines: Engine[] = [];
  afterAll(async () => { await Promise.all(engines.map((e) => e.close())); });

  it('validates its options with named codes', () => {
    expect(() => createEngine({ ruleset: rulesetA, threads: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'threads' }) }));
    expect(() => createEngine({ ruleset: rulesetA, threads: 1, maxQueue: 0 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
    expect(() => createEngine({} as never)).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'ruleset' }) }));
  });

  it('scores in a worker pool the same as the reference, results transferred', async () => {
    const engine = createEngine({ ruleset: rulesetA, threads: 2 });
    engines.push(engine);
    const parts = [0, 1, 2, 3].map((k) => toBatch(randomDeclarations(500, 100 + k)));
    const expected = parts.map(({ batch }) => referenceScore(rulesetA, batch));
    const results = await Promise.all(parts.map(({ batch }) => engine.scoreBatch(batch)));
    results.forEach((r, k) => {
      expect(Array.from(r.channel)).toEqual(Array.from(expected[k].channel));
      expect(r.rulesetVersion).toBe(engine.rulesetVersion);
    });
    // the batch buffer was transferred to the worker, not cloned
    expect(parts[0].batch.buffer.byteLength).toBe(0);
    const decisions = toDecisions(results[0], parts[0].ids, engine.meta(results[0].rulesetVersion));
    expect(decisions[0].id).toBe(parts[0].ids[0]);
  });

  it('swaps rulesets: batches sent before the swap finish on the old version', async () => {
    const engine = createEngine({ ruleset: rulesetA, threads: 2 });
    engines.push(engine);
    const a = toBatch(randomDeclarations(3000, 21));
    const b = toBatch(randomDeclarations(3000, 21));
    const wantA = referenceScore(rulesetA, a.batch);
    const wantB = referenceScore(rulesetB, b.batch);
    const versionA = engine.rulesetVersion;
    const pa = engine.scoreBatch(a.batch);
    const versionB = engine.setRuleset(rulesetB);
    const pb = engine.scoreBatch(b.batch);
    const [ra, rb] = await Promise.all([pa, pb]);
    expect(versionA).not.toBe(versionB);
    expect(ra.rulesetVersion).toBe(versionA);
    expect(rb.rulesetVersion).toBe(versionB);
    expect(Array.from(ra.channel)).toEqual(Array.from(wantA.channel));
    expect(Array.from(rb.channel)).toEqual(Array.from(wantB.channel));
    expect(Array.from(ra.channel)).not.toEqual(Array.from(rb.channel));
    expect(engine.meta(versionA).profiles).toHaveLength(64);
  });

  it('scores in-process with threads: 0 and rejects work after close', async () => {
    const engine = createEngine({ ruleset: rulesetA, threads: 0 });
    const { batch } = toBatch(randomDeclarations(100, 5));
    const r = await engine.scoreBatch(batch);
    expect(Array.from(r.channel)).toEqual(Array.from(referenceScore(rulesetA, batch).channel));
    await engine.close();
    await expect(engine.scoreBatch(batch)).rejects.toMatchObject({ code: 'SEL_ERR_ENGINE_CLOSED' });
  });
});

describe('engine.scoreWire', () => {
  it('scores small bodies on the calling thread and large ones in the pool, with the same result and the current ruleset', async () => {
    const decls = randomDeclarations(30, 77).filter((d) => d.netMass > 0);
    const body = () => Buffer.from(JSON.stringify({ declarations: decls }));
    const req = () => ({ kind: 'batch' as const, format: 'json' as const, accept: 'json' as const, body: body(), maxDeclarations: 100 });
    const pooled = createEngine({ ruleset: rulesetA, threads: 1, inlineMaxBytes: 0 });
    const inline = createEngine({ ruleset: rulesetA, threads: 1, inlineMaxBytes: 1 << 20 });
    try {
      expect([pooled.scoresInline(req().body.byteLength), inline.scoresInline(req().body.byteLength), inline.scoresInline((1 << 20) + 1)]).toEqual([false, true, false]);
      const [a, b] = await Promise.all([pooled.scoreWire(req()), inline.scoreWire(req())]);
      expect(a.ok && b.ok).toBe(true);
      if (!a.ok || !b.ok) return;
      expect(Buffer.from(b.body).toString()).toBe(Buffer.from(a.body).toString());
      const versionB = inline.setRuleset(rulesetB);
      const c = await inline.scoreWire(req());
      expect(c.ok && c.rulesetVersion).toBe(versionB);
      expect(() => createEngine({ ruleset: rulesetA, threads: 1, inlineMaxBytes: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'inlineMaxBytes' }) }));
    } finally {
      await Promise.all([pooled.close(), inline.close()]);
    }
  });

  it('skips a request abandoned while it waited for a worker (SEL_ERR_ABANDONED); the others are scored', async () => {
    const decls = randomDeclarations(20_000, 79).filter((d) => d.netMass > 0);
    const req = (n: number) => ({ kind: 'batch' as const, format: 'json' as const, accept: 'json' as const, body: Buffer.from(JSON.stringify({ declarations: decls.slice(0, n) })), maxDeclarations: 20_000 });
    const engine = createEngine({ ruleset: rulesetA, threads: 1, inlineMaxBytes: 0 });
    try {
      // the one worker is busy with the first batch; the second waits in the queue and is abandoned there
      const busy = new AbortController(), waiting = new AbortController();
      const first = engine.scoreWire(req(decls.length), { signal: busy.signal });
      const second = engine.scoreWire(req(10), { signal: waiting.signal });
      const third = engine.scoreWire(req(10)); // no signal: scored
      expect(engine.queueSize).toBe(2);
      waiting.abort();
      await expect(second).rejects.toMatchObject({ code: 'SEL_ERR_ABANDONED', statusCode: 499 });
      const [a, c] = await Promise.all([first, third]);
      expect(a.ok && a.scored).toBe(decls.length);
      expect(c.ok && c.scored).toBe(10);
      // already aborted: refused before any work, inline or pooled
      const inline = createEngine({ ruleset: rulesetA, threads: 1, inlineMaxBytes: 1 << 20 });
      try {
        await expect(inline.scoreWire(req(1), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'SEL_ERR_ABANDONED' });
        const d = await inline.scoreWire(req(1), { signal: new AbortController().signal });
        expect(d.ok && d.scored).toBe(1);
      } finally {
        await inline.close();
      }
      await expect(engine.scoreWire(req(1), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'SEL_ERR_ABANDONED' });
    } finally {
      await engine.close();
    }
  }, 60_000);

  it('answers the same bytes with the decision log on, and logs the decisions as answered', async () => {
    const decls = randomDeclarations(40, 78).filter((d) => d.netMass > 0);
    const bad = { id: 'BAD', date: 'x' };
    const bodies = {
      batch: { json: Buffer.from(JSON.stringify({ declarations: [...decls, bad] })), msgpack: Buffer.from(pack({ declarations: [...decls, bad] })) },
      stream: { json: Buffer.from(`${[...decls, bad].map((d) => JSON.stringify(d)).join('\n')}\n`), msgpack: Buffer.concat([...decls, bad].map((d) => Buffer.from(pack(d)))) },
    };
    const engine = createEngine({ ruleset: rulesetA, threads: 0 });
    try {
      for (const kind of ['batch', 'stream'] as const) {
        for (const format of ['json', 'msgpack'] as const) {
          for (const accept of ['json', 'msgpack'] as const) {
            const req = (log: boolean) => ({ kind, format, accept, body: Buffer.from(bodies[kind][format]), maxDeclarations: 100, log });
            const off = await engine.scoreWire(req(false));
            const on = await engine.scoreWire(req(true));
            const what = `${kind} ${format} → ${accept}`;
            if (!off.ok || !on.ok) throw new Error(`${what}: not scored`);
            expect(Buffer.from(on.body).equals(Buffer.from(off.body)), what).toBe(true);
            expect(off.log, what).toBeUndefined();
            const { header, chunk } = readPayload(on.log!);
            expect(header.n, what).toBe(decls.length);
            expect(JSON.parse(header.ids), what).toEqual(decls.map((d) => d.id));
            expect(header.f, what).toBe(accept === 'msgpack' ? CHUNK_MSGPACK : CHUNK_NDJSON);
            const answered = (kind === 'batch' ? (accept === 'json' ? JSON.parse(Buffer.from(on.body).toString()) : unpack(on.body)).decisions
              : (accept === 'json' ? Buffer.from(on.body).toString().trim().split('\n').map((l) => JSON.parse(l)) : unpackMultiple(Buffer.from(on.body))).filter((r: { error?: unknown }) => !r.error)) as Decision[];
            const c = new Chunk(1, header.n, header.f, chunk);
            expect(decls.map((_, k) => c.row(k).decision), what).toEqual(answered);
            expect(c.row(3).declaration.slice(0, 3), what).toEqual([decls[3].date, decls[3].office, decls[3].importer]);
          }
        }
      }
    } finally {
      await engine.close();
    }
  });
});

describe('engine: malformed batches, named errors from the workers, close', () => {
  it('refuses a malformed batch with SEL_ERR_BATCH_INVALID naming the field, before it is scored or consumed, in process and in the pool', async () => {
    for (const threads of [0, 1]) {
      const engine = createEngine({ ruleset: rulesetA, threads });
      try {
        const refused = async (make: (b: ColumnarBatch) => unknown, field: string) => {
          const { batch } = toBatch(randomDeclarations(50, 61));
          const bad = make(batch) as ColumnarBatch;
          await expect(engine.scoreBatch(bad ?? batch), `${threads} ${field}`).rejects.toMatchObject({ code: 'SEL_ERR_BATCH_INVALID', details: expect.objectContaining({ field }) });
        };
        // a code one past its dictionary: scored as another value's (or from memory past a table) before
        await refused((b) => { b.codes.hs[7] = b.dicts.hs.length; }, 'codes.hs');
        await refused((b) => { b.codes.origin[0] = 1e6; }, 'codes.origin');
        await refused((b) => ({ ...b, size: b.capacity + 10 }), 'size');
        await refused((b) => ({ ...b, codes: { ...b.codes, office: new Uint32Array(b.size) } }), 'codes.office'); // not in the batch's buffer: lost on the way to a worker
        await refused((b) => ({ ...b, dicts: { ...b.dicts, importer: undefined } }), 'dicts.importer');
        await refused((b) => ({ ...b, dicts: { ...b.dicts, aeo: ['no', 'yes'] } }), 'dicts.aeo');
        await refused((b) => { structuredClone(b.buffer, { transfer: [b.buffer] }); }, 'buffer'); // detached: a batch already sent
        // a good batch after all that: scored, and in the pool consumed
        const { batch } = toBatch(randomDeclarations(50, 62));
        const want = referenceScore(rulesetA, batch);
        expect(Array.from((await engine.scoreBatch(batch)).channel)).toEqual(Array.from(want.channel));
        if (threads > 0) await expect(engine.scoreBatch(batch)).rejects.toMatchObject({ code: 'SEL_ERR_BATCH_INVALID', details: expect.objectContaining({ field: 'buffer' }) });
      } finally {
        await engine.close();
      }
    }
  });

  it('a worker returns a named error instead of throwing it (thrown, it reached the caller as a plain Error, its code lost)', async () => {
    const { default: score } = await import('../workers/score-worker.js');
    const { batch } = toBatch(randomDeclarations(10, 63));
    const reply = score({ rulesetVersion: 'not-this-one', ruleset: new SharedArrayBuffer(64), batch: packBatch(batch) });
    expect(reply).toMatchObject({ selectivityError: { code: 'SEL_ERR_RULESET_INVALID' } });
    expect(() => fromWorker(reply)).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', statusCode: 400 }));
  });

  it('close: every call waits for the same close; batches not scored within closeTimeoutMs reject with SEL_ERR_ENGINE_CLOSED', async () => {
    const engine = createEngine({ ruleset: rulesetA, threads: 1, maxQueue: 64, closeTimeoutMs: 0 });
    const small = toBatch(randomDeclarations(1000, 64)).batch;
    // large batches made fast: one batch tiled
    const big = () => {
      const n = 400_000;
      const b = batchViews(new ArrayBuffer(batchLayout(n).byteLength), n, n, small.dicts);
      const tile = (dst: Float64Array | Uint32Array | Int32Array, src: Float64Array | Uint32Array | Int32Array) => { for (let at = 0; at < n; at += small.size) dst.set(src.subarray(0, Math.min(small.size, n - at)), at); };
      for (const c of NUMERIC_COLUMNS) tile(b.numeric[c], small.numeric[c]);
      tile(b.date, small.date);
      tile(b.idHash, small.idHash);
      for (const c of CATEGORICAL_COLUMNS) tile(b.codes[c], small.codes[c]);
      return b;
    };
    const sent = Array.from({ length: 8 }, () => engine.scoreBatch(big()).then(() => 'scored', (e: { code?: string }) => e.code ?? String(e)));
    const first = engine.close();
    const second = engine.close();
    expect(second).toBe(first);
    await first;
    const outcomes = await Promise.all(sent);
    expect(outcomes.every((o) => o === 'scored' || o === 'SEL_ERR_ENGINE_CLOSED'), outcomes.join(' ')).toBe(true);
    expect(outcomes).toContain('SEL_ERR_ENGINE_CLOSED');
    await expect(engine.scoreBatch(toBatch(randomDeclarations(5, 65)).batch)).rejects.toMatchObject({ code: 'SEL_ERR_ENGINE_CLOSED' });
    expect(() => createEngine({ ruleset: rulesetA, closeTimeoutMs: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'closeTimeoutMs' }) }));
    // within the timeout, every batch already sent is scored, with two workers too (Piscina's own close
    // counted a worker idle between two tasks as done, and ended the pool with one still running)
    const two = createEngine({ ruleset: rulesetA, threads: 2, maxQueue: 256 });
    const batches = Array.from({ length: 24 }, (_, k) => toBatch(randomDeclarations(2000, 70 + k)).batch);
    const want = batches.map((b) => referenceScore(rulesetA, b));
    const results = batches.map((b) => two.scoreBatch(b));
    await two.close();
    const got = await Promise.allSettled(results);
    expect(got.filter((g) => g.status === 'rejected').map((g) => String((g as PromiseRejectedResult).reason?.code))).toEqual([]);
    got.forEach((g, k) => expect(Array.from((g as PromiseFulfilledResult<ScoreResult>).value.channel)).toEqual(Array.from(want[k].channel)));
  }, 60_000);
});

describe('pool workers', () => {
  it('leave out the options a worker refuses, with a value given as a separate argument', () => {
    // Node names only the option; its value left behind was read as a script name and ended the worker's options
    expect(acceptedByWorkers(['--title', 'selectivity', '--enable-source-maps'])).toEqual(['--enable-source-maps']);
    expect(acceptedByWorkers(['--max-old-space-size=512', '--expose-gc', '--enable-source-maps'])).toEqual(['--enable-source-maps']);
    expect(acceptedByWorkers([])).toEqual([]);
  });

  it('load the ES-module worker files through import(), never require(esm): their execArgv turns require(esm) off and keeps this process\'s own', async () => {
    const argv = workerExecArgv();
    expect(argv).toEqual(expect.arrayContaining([...process.execArgv, '--no-experimental-require-module']));
    // in a thread started so, require() of a worker file fails (Piscina then imports it) and import() loads it
    const probe = `
      const { parentPort, workerData } = require('node:worker_threads');
      let required;
      try { require(workerData.file); required = 'loaded'; } catch (e) { required = e.code; }
      import(require('node:url').pathToFileURL(workerData.file).href).then((m) => parentPort.postMessage({ required, imported: typeof m.default }));`;
    const got = await new Promise<{ required: string; imported: string }>((resolve, reject) => {
      const w = new Worker(probe, { eval: true, execArgv: argv, workerData: { file: workerPath('score-worker') } });
      w.once('message', (m) => { resolve(m); void w.terminate(); });
      w.once('error', reject);
    });
    expect(got).toEqual({ required: 'ERR_REQUIRE_ESM', imported: 'function' });
    // and a pool started with them scores
    const peers = buildPeerTables([toBatch(randomDeclarations(200, 91)).batch], ['hs6']);
    const engine = createEngine({ ruleset: createRuleset({ peers }), threads: 1 });
    try {
      const { batch } = toBatch(randomDeclarations(50, 92));
      expect((await engine.scoreBatch(batch)).size).toBe(50);
    } finally {
      await engine.close();
    }
  });
});
