/**
 * Writing beside another writer (src/store/sqlite.ts writeWhenFree): the
 * service's main thread records examination results while the decision
 * log's writer thread holds the store's write lock for its group commits.
 * The write waits for the lock without blocking its thread, gives up with
 * the busy error after its time, and retries nothing else. The service's
 * profile and watch-list writes wait the same way.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSY_TIMEOUT_MS, isStoreBusy, openStore, STORE_FILE, writeWhenFree, type Db } from '../src/store/sqlite.js';
import { errors } from '../src/errors.js';
import type { Engine } from '../src/engine.js';
import { packageRoot } from '../src/paths.js';
import type { Metrics } from '../src/service/metrics.js';
import type { RulesetSource } from '../src/service/state.js';
import { inProcessService, type InProcessService } from './service-helpers.js';
import { PeerTableBuilder } from '../src/peers/peer-groups.js';
import { encodeSnapshot, lockPeerSnapshot } from '../src/peers/peer-store.js';
import { toBatch } from '../src/model/columnar.js';
import { randomDeclarations } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-store-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The tests below that hold the lock from this thread count the ticks of a 2 ms timer while a write
// waits: at least one. More would be a timing (a loaded machine runs a 2 ms timer a few times in 60 ms).
// That the writes complete at all shows the wait does not block: blocked in SQLite's busy handler, this
// thread could not release the lock, and the write would run out its busy timeout and fail.
describe('writeWhenFree', () => {
  const path = join(dir, STORE_FILE);
  const holder = openStore(path);
  const db = openStore(path);
  afterAll(() => { holder.close(); db.close(); });
  const insert = (day: string) => () => db.transaction(() => db.prepare('INSERT INTO traffic (day, scored) VALUES (?, 1)').run(day)).immediate();
  const count = (day: string) => db.prepare('SELECT count(*) FROM traffic WHERE day = ?').pluck().get(day);

  it('waits for another connection\'s write lock without blocking the thread, then writes', async () => {
    holder.prepare('BEGIN IMMEDIATE').run();
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(Date.now()), 2);
    const release = setTimeout(() => holder.prepare('COMMIT').run(), 60);
    try {
      await writeWhenFree(db, insert('2026-12-01'));
    } finally {
      clearInterval(timer);
      clearTimeout(release);
    }
    expect(count('2026-12-01')).toBe(1);
    // the thread ran its timers while the write waited (blocked in SQLite's busy handler, it would not have)
    expect(ticks.length).toBeGreaterThanOrEqual(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(BUSY_TIMEOUT_MS);
  });

  it('gives up with the busy error once its time is out, having written nothing', async () => {
    holder.prepare('BEGIN IMMEDIATE').run();
    try {
      const t0 = Date.now();
      const e = await writeWhenFree(db, insert('2026-12-02'), 40).catch((x: unknown) => x);
      expect(isStoreBusy(e)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    } finally {
      holder.prepare('COMMIT').run();
    }
    expect(count('2026-12-02')).toBe(0);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(BUSY_TIMEOUT_MS);
  });

  it('tries any other failure once, and tells a wrapped busy error from other storage errors', async () => {
    let calls = 0;
    const e = await writeWhenFree(db, () => { calls++; throw errors.SEL_ERR_STORAGE('disk full', { field: 'store', got: 'SQLITE_FULL' }); }).catch((x: unknown) => x);
    expect(calls).toBe(1);
    expect(isStoreBusy(e)).toBe(false);
    expect(isStoreBusy(errors.SEL_ERR_STORAGE('locked', { field: 'store', got: 'SQLITE_BUSY_SNAPSHOT' }))).toBe(true);
  });
});

describe('profile and watch-list writes through the service, beside another writer', () => {
  const TOKEN = 'analyst-token-0123456789abcdef';
  const headers = { authorization: `Bearer ${TOKEN}` };
  let app: FastifyInstance, engine: Engine, metrics: Metrics, source: RulesetSource, holder: Db, service: InProcessService;

  beforeAll(async () => {
    service = await inProcessService(join(dir, 'service'), { tokens: `analyst:${TOKEN}` });
    ({ app, engine, metrics, source } = service);
    holder = openStore(service.files.storePath);
  });
  afterAll(async () => { holder.close(); await service.close(); });

  it('wait for the lock without blocking the thread, then write and swap the ruleset in', async () => {
    const profiles = (JSON.parse(readFileSync(join(packageRoot(), 'examples', 'profiles.json'), 'utf8')) as { profiles: { id: string; weight: number }[] }).profiles;
    const lists = JSON.parse(readFileSync(join(packageRoot(), 'examples', 'watchlists.json'), 'utf8')) as { watchLists: { id: string; terms: string[] }[] };
    const [a, b, c] = profiles;
    const before = engine.rulesetVersion;
    holder.prepare('BEGIN IMMEDIATE').run(); // the decision log's writer, committing
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(Date.now()), 2);
    const release = setTimeout(() => holder.prepare('COMMIT').run(), 80);
    let answers;
    try {
      answers = await Promise.all([
        app.inject({ method: 'POST', url: '/v1/profiles/import', headers, payload: { profiles: [{ ...a, weight: a.weight + 1 }] } }),
        app.inject({ method: 'POST', url: `/v1/profiles/${b.id}/retire`, headers }),
        app.inject({ method: 'POST', url: '/v1/watchlists/import', headers, payload: { watchLists: [{ ...lists.watchLists[0], terms: [...lists.watchLists[0].terms, 'mirror grade'] }] } }),
        // the whole set, agreeing with the writes beside it (they commit in any order): a changed, b and c absent
        app.inject({ method: 'PUT', url: '/v1/ruleset/profiles', headers, payload: { profiles: profiles.filter((p) => p.id !== b.id && p.id !== c.id).map((p) => (p.id === a.id ? { ...p, weight: a.weight + 1 } : p)) } }),
      ]);
    } finally {
      clearInterval(timer);
      clearTimeout(release);
    }
    expect(answers.map((r) => r.statusCode), answers.map((r) => r.body.slice(0, 200)).join('\n')).toEqual([200, 200, 200, 200]);
    // the thread ran its timers while the writes waited (in SQLite's busy handler it would not have)
    expect(ticks.length).toBeGreaterThanOrEqual(1);
    expect(source.profiles.get(a.id)?.profile.weight).toBe(a.weight + 1);
    expect(source.profiles.get(b.id)?.status).toBe('retired');
    expect(source.profiles.get(c.id)?.status).toBe('retired');
    expect(source.watchLists.get(lists.watchLists[0].id)?.watchList.terms).toContain('mirror grade');
    expect(engine.rulesetVersion).not.toBe(before);
    expect(engine.meta().profiles.map((p) => p.id)).not.toContain(c.id);
  });

  it('a swap records its ruleset first, waiting for the lock without blocking, and swaps run in the order asked', async () => {
    const now = source.rebuild(); // the ruleset in force: two others, told apart by their z threshold
    const a = { ...now, settings: { ...now.settings, zThreshold: now.settings.zThreshold + 0.25 } };
    const b = { ...now, settings: { ...now.settings, zThreshold: now.settings.zThreshold + 0.5 } };
    const before = engine.rulesetVersion;
    holder.prepare('BEGIN IMMEDIATE').run();
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(Date.now()), 2);
    let versions: string[];
    try {
      const first = source.swap(a);
      await new Promise((r) => setTimeout(r, 60));
      // waiting for the record: nothing installed yet, and the thread ran its timers meanwhile
      expect(engine.rulesetVersion).toBe(before);
      expect(ticks.length).toBeGreaterThanOrEqual(1);
      holder.prepare('COMMIT').run();
      // asked for after the lock is free, before the first one's next try: it still comes second
      const second = source.swap(b);
      versions = await Promise.all([first, second]);
    } finally {
      clearInterval(timer);
      if (holder.inTransaction) holder.prepare('COMMIT').run();
    }
    expect(new Set([before, ...versions]).size).toBe(3);
    // the later swap is the one in force, and both versions are explained by the store
    expect(engine.rulesetVersion).toBe(versions[1]);
    for (const v of versions) expect(source.rulesetRecord(v)?.version).toBe(v);
    expect((await app.inject({ url: `/v1/rulesets/${versions[0]}`, headers })).statusCode).toBe(200);
  });

  it('a change and the ruleset it leads to commit together: a failure after the change\'s writes (here its file) leaves the store, the files and the ruleset as they were', async () => {
    const before = engine.rulesetVersion;
    const rulesets = () => holder.prepare('SELECT count(*) FROM rulesets').pluck().get();
    const n = rulesets();
    const e = await source.commitChange(() => ({
      result: source.profiles.prepareImport([{ id: 'ATOMIC-1', title: 'one step', weight: 2, conditions: { hs: ['0208'] } }], { by: 'test' })(),
      write: () => { throw errors.SEL_ERR_STORAGE('disk full', { field: 'file', got: 'ENOSPC' }); },
    })).catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('SEL_ERR_STORAGE');
    expect(source.profiles.get('ATOMIC-1')).toBeUndefined(); // the profile write was rolled back with the record
    expect(rulesets()).toBe(n);
    expect(engine.rulesetVersion).toBe(before);
    // a rebuild (the next change, a reload) does not bring the failed change in
    expect(source.rebuild().profiles.map((p) => p.id)).not.toContain('ATOMIC-1');
    // and the same change without the failure goes through whole
    const ok = await source.commitChange(() => ({ result: source.profiles.prepareImport([{ id: 'ATOMIC-1', title: 'one step', weight: 2, conditions: { hs: ['0208'] } }], { by: 'test' })() }));
    expect(ok.version).toBe(engine.rulesetVersion);
    expect(engine.meta().profiles.map((p) => p.id)).toContain('ATOMIC-1');
    expect(source.rulesetRecord(ok.version)?.profiles.map((p) => p.id)).toContain('ATOMIC-1');
  });

  it('PUT /v1/peers that cannot finish changes nothing; two queued ones each record the snapshot their ruleset was built with', async () => {
    const build = (rows: number) => {
      const b = new PeerTableBuilder();
      b.add(toBatch(randomDeclarations(rows, rows)).batch);
      b.addSource(`r${rows}`, rows);
      return encodeSnapshot(b.snapshot(), 'msgpack');
    };
    const put = (body: Uint8Array) => app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...headers, 'content-type': 'application/msgpack', accept: 'application/json' }, payload: Buffer.from(body) });
    const [pb, pc] = [build(300), build(200)];
    const before = { version: engine.rulesetVersion, peers: (await app.inject({ url: '/v1/peers', headers })).json().version, file: readFileSync(service.files.peersPath) };
    // the snapshot's file cannot be written (a peers update holds its lock): 409, and nothing moved
    const held = lockPeerSnapshot(service.files.peersPath, 'a test');
    try {
      expect((await put(pb)).statusCode).toBe(409);
    } finally {
      held.release();
    }
    expect(engine.rulesetVersion).toBe(before.version);
    expect((await app.inject({ url: '/v1/peers', headers })).json().version).toBe(before.peers);
    expect((await app.inject({ url: '/v1/ruleset', headers })).json().peers).toBe(before.peers);
    expect(readFileSync(service.files.peersPath).equals(before.file)).toBe(true);
    // two uploads queued behind the lock: each ruleset's record names its own snapshot, and each answer its own
    holder.prepare('BEGIN IMMEDIATE').run();
    const release = setTimeout(() => holder.prepare('COMMIT').run(), 150);
    let answers;
    try {
      answers = await Promise.all([put(pb), new Promise((r) => setTimeout(r, 20)).then(() => put(pc))]);
    } finally {
      clearTimeout(release);
      if (holder.inTransaction) holder.prepare('COMMIT').run();
    }
    const [b, c] = answers.map((r) => r.json());
    expect(answers.map((r) => r.statusCode)).toEqual([200, 200]);
    expect(b.peers.version).not.toBe(c.peers.version);
    expect(b.ruleset.peers).toBe(b.peers.version);
    expect(c.ruleset.peers).toBe(c.peers.version);
    expect(source.rulesetRecord(b.ruleset.version)?.peers).toBe(b.peers.version);
    expect(source.rulesetRecord(c.ruleset.version)?.peers).toBe(c.peers.version);
    expect(engine.rulesetVersion).toBe(c.ruleset.version);
  });

  it('an unknown id found inside the write answers 404 and writes nothing', async () => {
    const versions = () => holder.prepare('SELECT count(*) FROM profile_versions').pluck().get();
    const n = versions();
    const r = await app.inject({ method: 'POST', url: '/v1/profiles/NO-SUCH-PROFILE/retire', headers });
    expect(r.statusCode).toBe(404);
    expect(r.json().error.code).toBe('SEL_ERR_PROFILE_NOT_FOUND');
    expect(versions()).toBe(n);
  });
});
