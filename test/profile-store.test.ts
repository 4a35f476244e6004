import { errors } from '../src/errors.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runCli } from './helpers.js';
import type { FastifyInstance } from 'fastify';
import { main } from '../src/cli/main.js';
import { MAX_PROFILES, validateProfile, validateProfiles } from '../src/profiles/profile.js';
import { ProfileStore } from '../src/profiles/store.js';
import { recordExamination, UsageRecorder } from '../src/profiles/effectiveness.js';
import { prepareDataDir, RulesetSource } from '../src/service/state.js';
import { openStore } from '../src/store/sqlite.js';
import { inProcessService } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-profiles-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshStore = () => { const path = join(dir, `s${n++}.db`); return { path, store: new ProfileStore(openStore(path)) }; };
const code = (fn: () => unknown) => { try { fn(); } catch (e) { return (e as { code?: string; details?: { field?: string } }); } return undefined; };

const P = (id: string, extra: Record<string, unknown> = {}) => ({ id, weight: 1, conditions: { origin: ['CN'] }, ...extra });

describe('profile format: risk area, assessment, window, owner, version', () => {
  it('derives level and (absent) weight from likelihood × consequence', () => {
    const p = validateProfile({ id: 'A', riskArea: 'revenue', assessment: { likelihood: 4, consequence: 4 }, conditions: {} });
    expect(p.assessment).toEqual({ likelihood: 4, consequence: 4, level: 'high' });
    expect(p.weight).toBe(3.2);
    expect(validateProfile({ id: 'B', assessment: { likelihood: 2, consequence: 3 }, weight: 7, conditions: {} })).toMatchObject({ weight: 7, assessment: { level: 'medium' } });
    expect(validateProfile({ id: 'C', assessment: { likelihood: 1, consequence: 5 }, conditions: {} }).assessment!.level).toBe('low');
  });

  it('normalises the active window to ISO instants, and owner', () => {
    const p = validateProfile({ ...P('W'), activeFrom: '2026-11-23', activeUntil: '2026-11-24T06:00:00+02:00', owner: ' Risk unit ' });
    expect(p.activeFrom).toBe('2026-11-23T00:00:00.000Z');
    expect(p.activeUntil).toBe('2026-11-24T04:00:00.000Z');
    expect(p.owner).toBe('Risk unit');
  });

  it('names the field at fault', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...P('X'), riskArea: 'tax' }, 'profile(X).riskArea'],
      [{ id: 'X', assessment: { likelihood: 6, consequence: 1 }, conditions: {} }, 'profile(X).assessment.likelihood'],
      [{ id: 'X', conditions: {} }, 'profile(X).weight'],
      [{ ...P('X'), activeFrom: 'tomorrow' }, 'profile(X).activeFrom'],
      [{ ...P('X'), activeFrom: '2026-11-24', activeUntil: '2026-11-23' }, 'profile(X).activeUntil'],
      [{ ...P('X'), owner: '' }, 'profile(X).owner'],
      [{ ...P('X'), version: 0 }, 'profile(X).version'],
    ];
    for (const [raw, field] of cases) {
      const e = code(() => validateProfile(raw));
      expect(e, field).toMatchObject({ code: 'SEL_ERR_PROFILE_INVALID', details: { field } });
    }
  });
});

describe('ProfileStore', () => {
  it('keeps every change as a version: who, when, what', () => {
    const { store } = freshStore();
    expect(store.importSet([P('A'), P('B')], { by: 'alice' })).toEqual({ created: ['A', 'B'], updated: [], unchanged: [], retired: [] });
    expect(store.importSet([P('A'), P('B', { weight: 2 })], { by: 'bob' })).toEqual({ created: [], updated: ['B'], unchanged: ['A'], retired: [] });
    const b = store.history('B');
    expect(b.map((r) => [r.profile.version, r.changedBy, r.change])).toEqual([[1, 'alice', 'created'], [2, 'bob', 'updated: weight']]);
    expect(store.version('B', 1).profile.weight).toBe(1);
    expect(store.get('B')!.profile.weight).toBe(2);
    store.setStatus('A', 'retired', 'carol');
    expect(store.get('A')).toMatchObject({ status: 'retired', change: 'retired', changedBy: 'carol', profile: { version: 2 } });
    expect(store.activeAt().map((p) => p.id)).toEqual(['B']);
    store.setStatus('A', 'active', 'carol');
    expect(store.history('A').map((r) => r.status)).toEqual(['active', 'retired', 'active']);
    expect(code(() => store.setStatus('nope', 'retired', 'x'))).toMatchObject({ code: 'SEL_ERR_PROFILE_NOT_FOUND' });
    expect(code(() => store.version('B', 9))).toMatchObject({ code: 'SEL_ERR_PROFILE_NOT_FOUND' });
  });

  it('replace retires what the set lacks; an invalid set writes nothing', () => {
    const { store } = freshStore();
    store.importSet([P('A'), P('B'), P('C')], { by: 'a' });
    expect(store.importSet({ profiles: [P('B')] }, { by: 'a', replace: true }).retired).toEqual(['A', 'C']);
    const before = JSON.stringify(store.list());
    expect(code(() => store.importSet([P('D'), { id: 'E', weight: 'x', conditions: {} }], { by: 'a' }))).toMatchObject({ code: 'SEL_ERR_PROFILE_INVALID' });
    expect(code(() => store.importSet([P('D'), P('D')], { by: 'a' }))).toMatchObject({ code: 'SEL_ERR_PROFILE_DUPLICATE' });
    expect(JSON.stringify(store.list())).toBe(before);
  });

  it('applies profiles only within their window, and says when the set changes next', () => {
    const { store } = freshStore();
    const t0 = Date.parse('2026-11-23T08:00:00Z');
    store.importSet([P('ALWAYS'), P('DAY', { activeFrom: '2026-11-23T10:00:00Z', activeUntil: '2026-11-23T18:00:00Z' }), P('OLD', { activeUntil: '2026-11-01' })], { by: 'a' });
    expect(store.activeAt(t0).map((p) => p.id)).toEqual(['ALWAYS']);
    expect(store.nextChange(t0)).toBe(Date.parse('2026-11-23T10:00:00Z'));
    expect(store.activeAt(Date.parse('2026-11-23T10:00:00Z')).map((p) => p.id)).toEqual(['ALWAYS', 'DAY']);
    expect(store.nextChange(Date.parse('2026-11-23T10:00:00Z'))).toBe(Date.parse('2026-11-23T18:00:00Z'));
    expect(store.activeAt(Date.parse('2026-11-23T18:00:00Z')).map((p) => p.id)).toEqual(['ALWAYS']);
    expect(store.nextChange(Date.parse('2026-11-23T18:00:00Z'))).toBeUndefined();
  });

  it('exports a set that imports elsewhere to the same active profiles', () => {
    const { store } = freshStore();
    store.importSet([P('A', { riskArea: 'sps', owner: 'unit 3' }), P('B')], { by: 'a' });
    store.setStatus('B', 'retired', 'a');
    const exported = store.exportSet(true);
    expect(exported.profiles.map((p) => p.id)).toEqual(['A']);
    expect(exported.retired!.map((p) => p.id)).toEqual(['B']);
    const other = freshStore().store;
    other.importSet(JSON.parse(JSON.stringify(exported)), { by: 'import' });
    const strip = (ps: { version?: number }[]) => ps.map(({ version: _v, ...rest }) => rest);
    expect(strip(other.activeAt())).toEqual(strip(store.activeAt()));
    expect(validateProfiles(exported).length).toBe(1);
  });

  it('survives closing and reopening the file (committed before it returns)', () => {
    const { path, store } = freshStore();
    store.importSet([P('A')], { by: 'a' });
    store.setStatus('A', 'retired', 'b');
    const again = new ProfileStore(openStore(path));
    expect(again.history('A').map((r) => r.change)).toEqual(['created', 'retired']);
  });

  it('refuses, before the commit, a change that would leave more active profiles than the kernel scores', () => {
    const { store } = freshStore();
    const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => P(`P${from + i}`));
    store.importSet([...ids(0, MAX_PROFILES - 1), P('R')], { by: 'a' });
    store.setStatus('R', 'retired', 'a');
    expect(store.list('active')).toHaveLength(MAX_PROFILES - 1);
    // a merge import: each set is within the limit, together they are not
    const merged = code(() => store.importSet(ids(MAX_PROFILES, 2), { by: 'b' }));
    expect(merged).toMatchObject({ code: 'SEL_ERR_PROFILE_LIMIT', details: { field: 'profiles', got: MAX_PROFILES + 1 } });
    expect(store.list('active')).toHaveLength(MAX_PROFILES - 1);
    expect(store.get(`P${MAX_PROFILES}`)).toBeUndefined();
    // up to the limit, and an activation past it
    store.importSet(ids(MAX_PROFILES, 1), { by: 'b' });
    expect(code(() => store.setStatus('R', 'active', 'c'))).toMatchObject({ code: 'SEL_ERR_PROFILE_LIMIT', details: { got: MAX_PROFILES + 1 } });
    expect(store.get('R')?.status).toBe('retired');
    // with replace the set is the whole active set: within the limit, it goes in
    expect(store.importSet(ids(0, 10), { by: 'c', replace: true }).retired).toHaveLength(MAX_PROFILES - 10);
    expect(store.setStatus('R', 'active', 'c').status).toBe('active');
  });
});

describe('usage counters', () => {
  it('flush on their timer without blocking the thread while another writer holds the store', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sel-usage-')), 'store.db');
    const db = openStore(path);
    const other = openStore(path);
    const meta = { profiles: [{ id: 'P1', version: 3, weight: 1 }] } as unknown as Parameters<UsageRecorder['record']>[0];
    const usage = new UsageRecorder(db, 5, () => Date.parse('2026-11-23T12:00:00Z'));
    try {
      usage.record(meta, 10, [0, 4]);
      other.prepare('BEGIN IMMEDIATE').run(); // the decision log's writer, committing
      const ticks: number[] = [];
      const timer = setInterval(() => ticks.push(Date.now()), 2);
      await new Promise((r) => setTimeout(r, 60));
      other.prepare('COMMIT').run();
      clearInterval(timer);
      // blocked in SQLite's busy handler, the thread would have run no timer until the lock was free
      // (at least one tick: more would be a timing, and a loaded machine runs a 2 ms timer a few times in 60 ms)
      expect(ticks.length).toBeGreaterThanOrEqual(1);
      expect(db.prepare('SELECT count(*) FROM traffic').pluck().get()).toBe(0);
      await new Promise((r) => setTimeout(r, 60));
      expect(db.prepare('SELECT scored FROM traffic').all()).toEqual([{ scored: 10 }]);
      expect(usage.failedFlushes).toBe(0);
    } finally {
      usage.close();
      other.close();
      db.close();
    }
  });

  it('keep their counts when the store is busy, and write them at the next flush', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sel-usage-')), 'store.db');
    const db = openStore(path);
    const other = openStore(path);
    try {
      db.pragma('busy_timeout = 20');
      const meta = { profiles: [{ id: 'P1', version: 3, weight: 1 }] } as unknown as Parameters<UsageRecorder['record']>[0];
      const usage = new UsageRecorder(db, 0, () => Date.parse('2026-11-23T12:00:00Z'));
      usage.record(meta, 10, [0, 4]);
      other.prepare('BEGIN IMMEDIATE').run(); // another writer holds the store
      expect(() => usage.flush()).toThrow(/busy|locked/i);
      expect(usage.failedFlushes).toBe(1);
      usage.record(meta, 5, [0, 1]);
      other.prepare('COMMIT').run();
      usage.flush();
      expect(db.prepare('SELECT scored FROM traffic').all()).toEqual([{ scored: 15 }]);
      expect(db.prepare('SELECT id, version, matched FROM profile_usage').all()).toEqual([{ id: 'P1', version: 3, matched: 5 }]);
    } finally {
      other.close();
      db.close();
    }
  });
});

/**
 * A source over a data directory of its own on a fake clock (the windows open and close when the test
 * says, however loaded the machine is), given one profile with its window; closed after `body`.
 */
async function onFakeClock(name: string, window: (now: number) => { activeFrom: string; activeUntil: string }, id: string, body: (source: RulesetSource) => Promise<void>): Promise<void> {
  const files = await prepareDataDir(join(dir, name));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const source = new RulesetSource(files);
  try {
    source.profiles.importSet([P(id, window(Date.now()))], { by: 'test' });
    await body(source);
  } finally {
    source.close();
    vi.useRealTimers();
  }
}

/** The profile ids of the ruleset the source would swap in now (what the service's swapCurrent composes). */
const inForce = (source: RulesetSource) => source.rebuild().profiles.map((p) => p.id);

describe('the service swaps profiles in by the clock', () => {
  it('activates and expires a profile at its window edges without a restart', async () => {
    await onFakeClock('clock', (now) => ({ activeFrom: new Date(now + 300).toISOString(), activeUntil: new Date(now + 700).toISOString() }), 'SOON', async (source) => {
      const ruleset = await source.load();
      expect(ruleset.profiles.map((p) => p.id)).not.toContain('SOON');
      const seen: string[][] = [];
      source.startClock(() => seen.push(inForce(source)));
      await vi.advanceTimersByTimeAsync(299);
      expect(seen).toEqual([]);
      await vi.advanceTimersByTimeAsync(2);
      expect(seen.length).toBe(1);
      expect(seen[0]).toContain('SOON');
      await vi.advanceTimersByTimeAsync(400);
      expect(seen.length).toBe(2);
      expect(seen[1]).not.toContain('SOON');
    });
  });
});

describe('a swap at a window edge that fails', () => {
  it('is tried again, sooner and sooner apart, until it holds: the boundary that has passed is not waited out until the next one', async () => {
    await onFakeClock('clock-retry', (now) => ({ activeFrom: new Date(now + 300).toISOString(), activeUntil: new Date(now + 3_600_000).toISOString() }), 'LATER', async (source) => {
      await source.load();
      const seen: string[][] = [];
      let failures = 2; // the store busy past its wait, twice
      source.startClock(() => {
        if (failures-- > 0) throw errors.SEL_ERR_STORAGE('the store stayed locked', { field: 'store', got: 'SQLITE_BUSY' });
        seen.push(inForce(source));
      });
      await vi.advanceTimersByTimeAsync(301); // the edge: the first try fails
      expect(seen).toEqual([]);
      await vi.advanceTimersByTimeAsync(1000); // again after 1 s: fails
      expect(seen).toEqual([]);
      await vi.advanceTimersByTimeAsync(2000); // again after 2 s: holds
      expect(seen).toHaveLength(1);
      expect(seen[0]).toContain('LATER');
      await vi.advanceTimersByTimeAsync(60_000); // and is not tried again
      expect(seen).toHaveLength(1);
    });
  });
});

describe('profiles over HTTP and the CLI', () => {
  const TOKENS = { analyst: 'analyst-token-0123456789abcdef', port: 'port-token-0123456789abcdef' };
  let app: FastifyInstance;

  const run = runCli;

  it('lists, shows, imports, retires and exports through the routes', async () => {
    const service = await inProcessService(join(dir, 'http'), { tokens: `analyst:${TOKENS.analyst},port:${TOKENS.port}` });
    const { engine, source, files } = service;
    app = service.app;
    const h = { authorization: `Bearer ${TOKENS.analyst}` };
    try {
      const list = await app.inject({ url: '/v1/profiles?status=active', headers: h });
      expect(list.statusCode).toBe(200);
      const ids = list.json().profiles.map((r: { profile: { id: string } }) => r.profile.id);
      expect(ids).toEqual(engine.meta().profiles.map((p) => p.id));
      expect((await app.inject({ url: '/v1/profiles', headers: { authorization: `Bearer ${TOKENS.port}` } })).statusCode).toBe(403);

      const imp = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: h, payload: { profiles: [P('NEW-1', { riskArea: 'drugs', counterMeasure: { channel: 'red', instructions: 'open it' } })] } });
      expect(imp.statusCode).toBe(200);
      expect(imp.json().changes.created).toEqual(['NEW-1']);
      // a bare array, as selectivity profiles import reads from a file; a body that is neither a set nor an array is named
      const bare = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: h, payload: [P('NEW-1', { riskArea: 'drugs', counterMeasure: { channel: 'red', instructions: 'open it' } })] });
      expect(bare.statusCode, bare.body).toBe(200);
      expect(bare.json().changes.unchanged).toEqual(['NEW-1']);
      const noSet = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: h, payload: { profile: [] } });
      expect(noSet.statusCode).toBe(400);
      expect(noSet.json().error.code).toBe('SEL_ERR_PROFILE_INVALID');
      const text = await app.inject({ method: 'POST', url: '/v1/profiles/import', headers: { ...h, 'content-type': 'application/json' }, payload: '"profiles"' });
      expect(text.statusCode).toBe(400);
      expect(text.json().error).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { field: 'body', got: 'profiles' } });
      expect(engine.meta().profiles.map((p) => p.id)).toContain('NEW-1');
      const ruleset = await app.inject({ url: '/v1/ruleset', headers: h });
      expect(ruleset.json().profileVersions['NEW-1']).toBe(1);
      // decisions name the profile version, and carry the officer's instructions of the profile that set the channel
      const d = (await app.inject({ method: 'POST', url: '/v1/score', headers: h, payload: { declarations: [{ id: 'D1', date: '2026-11-23', office: 'OF1', importer: 'I1', hs: '851712', origin: 'CN', customsValue: 100, netMass: 10 }] } })).json().decisions[0];
      expect(d.channel).toBe('red');
      expect(d.rulesetVersion).toBe(ruleset.json().version);
      expect(d.reasons).toContainEqual({ code: 'PROFILE', profile: 'NEW-1', version: 1, weight: 1, channel: 'red' });
      expect(d.reasons).toContainEqual({ code: 'COUNTER_MEASURE', channel: 'red', profiles: ['NEW-1'], instructions: ['open it'] });

      const retire = await app.inject({ method: 'POST', url: '/v1/profiles/NEW-1/retire', headers: h });
      expect(retire.json().profile).toMatchObject({ status: 'retired', changedBy: 'analyst token' });
      expect(engine.meta().profiles.map((p) => p.id)).not.toContain('NEW-1');
      const show = await app.inject({ url: '/v1/profiles/NEW-1', headers: h });
      expect(show.json().history.map((r: { change: string }) => r.change)).toEqual(['created', 'retired']);
      const v1 = await app.inject({ url: '/v1/profiles/NEW-1/versions/1', headers: h });
      expect(v1.json().profile.counterMeasure.instructions).toBe('open it');
      const missing = await app.inject({ url: '/v1/profiles/NOPE', headers: h });
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe('SEL_ERR_PROFILE_NOT_FOUND');
      const exp = await app.inject({ url: '/v1/profiles/export', headers: h });
      expect(exp.json().profiles.map((p: { id: string }) => p.id)).toEqual(ids);

      // a decision made while NEW-1 v1 was in force is explained by its ruleset version, from the store
      const decided = await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: { authorization: `Bearer ${TOKENS.analyst}` } });
      expect(decided.statusCode).toBe(403); // reload is admin-only; the record below comes from the import swap
      const rec = await app.inject({ url: `/v1/rulesets/${ruleset.json().version}`, headers: h });
      expect(rec.statusCode).toBe(200);
      expect(rec.json().profiles).toContainEqual({ id: 'NEW-1', version: 1 });
      expect(rec.json().peers).toBe(ruleset.json().peers);
      const other = new RulesetSource(files);
      try {
        expect(other.rulesetRecord(ruleset.json().version)!.profiles).toContainEqual({ id: 'NEW-1', version: 1 });
      } finally {
        other.close();
      }
      expect((await app.inject({ url: '/v1/rulesets/0000000000000000', headers: h })).json().error.code).toBe('SEL_ERR_NOT_FOUND');
    } finally {
      await service.close();
    }
  });

  it('answers a mistyped --data-dir of a command that reads the store with SEL_ERR_FILE_NOT_FOUND, and makes no store there', async () => {
    const nowhere = join(dir, 'no-such-data-dir');
    for (const args of [['profiles', 'list'], ['profiles', 'export'], ['profiles', 'show', 'P1'], ['profiles', 'stats'], ['profiles', 'retire', 'P1'], ['text', 'lists', 'list'], ['text', 'lists', 'export'], ['text', 'match', 'replica watches']]) {
      const r = await run([...args, '--data-dir', nowhere]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(`SEL_ERR_FILE_NOT_FOUND: no store at ${join(nowhere, 'selectivity.db')}`);
      expect(existsSync(nowhere), args.join(' ')).toBe(false);
    }
  });

  it('runs the lifecycle from the CLI on a data directory', async () => {
    const dataDir = join(dir, 'cli');
    const setFile = join(dir, 'set.json');
    writeFileSync(setFile, JSON.stringify({ profiles: [P('C-1', { riskArea: 'ipr' }), P('C-2')] }));
    const imp = await run(['profiles', 'import', setFile, '--data-dir', dataDir, '--by', 'tester', '--json']);
    expect(imp.code, imp.stderr).toBe(0);
    expect(JSON.parse(imp.stdout).created).toEqual(['C-1', 'C-2']);
    expect((await run(['profiles', 'retire', 'C-2', '--data-dir', dataDir, '--by', 'tester'])).code).toBe(0);
    const list = JSON.parse((await run(['profiles', 'list', '--data-dir', dataDir, '--status', 'active', '--json'])).stdout);
    expect(list.map((r: { profile: { id: string } }) => r.profile.id)).toEqual(['C-1']);
    const show = JSON.parse((await run(['profiles', 'show', 'C-2', '--data-dir', dataDir, '--json'])).stdout);
    expect(show.history.map((r: { changedBy: string; change: string }) => `${r.changedBy}:${r.change}`)).toEqual(['tester:created', 'tester:retired']);
    const out = join(dir, 'exported.json');
    expect((await run(['profiles', 'export', '--data-dir', dataDir, '--out', out])).code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).profiles.map((p: { id: string }) => p.id)).toEqual(['C-1']);
    const bad = await run(['profiles', 'show', 'NOPE', '--data-dir', dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SEL_ERR_PROFILE_NOT_FOUND');
    // a file that is not there is SEL_ERR_FILE_NOT_FOUND, as for every input file; one that is not JSON, the set's own code
    const missing = await run(['profiles', 'import', join(dir, 'no-such-set.json'), '--data-dir', dataDir]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
    const notJson = join(dir, 'not-json.json');
    writeFileSync(notJson, '{"profiles": [');
    const broken = await run(['profiles', 'import', notJson, '--data-dir', dataDir]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain('SEL_ERR_PROFILE_INVALID');
    expect(broken.stderr).toContain('is not valid JSON');
    const lists = await run(['text', 'lists', 'import', join(dir, 'no-such-lists.json'), '--data-dir', dataDir]);
    expect(lists.code).toBe(2);
    expect(lists.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
    // the service started on that directory scores with what the CLI left active
    const files = await prepareDataDir(dataDir);
    const source = new RulesetSource(files);
    try {
      expect((await source.load()).profiles.map((p) => p.id)).toEqual(['C-1']);
    } finally {
      source.close();
    }
  });
});

describe('profile effectiveness', () => {
  it('counts matches from scoring, joins examination results, and flags profiles', async () => {
    const token = 'analyst-token-0123456789abcdef';
    const service = await inProcessService(join(dir, 'stats'), {
      tokens: `analyst:${token}`,
      prepare: (source) => source.profiles.importSet([
        P('ALL-CN', { conditions: { origin: ['CN'] } }),
        P('NEVER', { conditions: { origin: ['ZZ'] } }),
        P('MISS', { conditions: { origin: ['VN'] } }),
      ], { by: 'test', replace: true }),
    });
    const { app, engine, source, files } = service;
    const h = { authorization: `Bearer ${token}` };
    try {
      const base = { date: '2026-11-23', office: 'OF1', importer: 'IMP1', hs: '851712', customsValue: 100, netMass: 10 };
      const declarations = [
        ...Array.from({ length: 6 }, (_, i) => ({ ...base, id: `CN${i}`, origin: 'CN' })),
        ...Array.from({ length: 4 }, (_, i) => ({ ...base, id: `VN${i}`, origin: 'VN' })),
      ];
      const r = await app.inject({ method: 'POST', url: '/v1/score', headers: h, payload: { declarations } });
      expect(r.statusCode).toBe(200);
      const ndjson = declarations.slice(0, 3).map((d) => JSON.stringify({ ...d, id: `S-${d.id}` })).join('\n');
      expect((await app.inject({ method: 'POST', url: '/v1/score/stream', headers: { ...h, 'content-type': 'application/x-ndjson' }, payload: ndjson })).statusCode).toBe(200);

      // examinations (the feedback loop records these): MISS inspected 25 times, never a hit; ALL-CN two hits
      const db = source.database;
      const day = new Date().toISOString().slice(0, 10);
      for (let i = 0; i < 25; i++) recordExamination(db, { declarationId: `X${i}`, date: day, profiles: [{ id: 'MISS', version: 1 }], inspected: true, result: 'compliant' });
      recordExamination(db, { declarationId: 'CN0', date: day, profiles: [{ id: 'ALL-CN', version: 1 }], inspected: true, result: 'non-compliant', revenueRecovered: 1200 });
      recordExamination(db, { declarationId: 'CN1', date: day, profiles: [{ id: 'ALL-CN', version: 1 }], inspected: true, result: 'non-compliant', revenueRecovered: 300 });
      recordExamination(db, { declarationId: 'CN2', date: day, profiles: [{ id: 'ALL-CN', version: 1 }], inspected: true, result: 'compliant' });
      expect(() => recordExamination(db, { declarationId: 'B', date: 'soon', profiles: [], inspected: true, result: 'compliant' })).toThrow(/date/);

      const st = await app.inject({ url: '/v1/profiles/stats', headers: h });
      expect(st.statusCode).toBe(200);
      const byId = Object.fromEntries(st.json().profiles.map((p: { id: string }) => [p.id, p]));
      expect(st.json().scored).toBe(13);
      expect(byId['ALL-CN']).toMatchObject({ matched: 9, inspected: 3, nonCompliant: 2, revenueRecovered: 1500, flags: ['matches-too-much'] });
      expect(byId['ALL-CN'].hitRate).toBeCloseTo(2 / 3, 12);
      expect(byId['ALL-CN'].share).toBeCloseTo(9 / 13, 12);
      expect(byId.MISS).toMatchObject({ matched: 4, inspected: 25, nonCompliant: 0, hitRate: 0 });
      expect(byId.MISS.flags).toEqual(['matches-too-much', 'never-hits']);
      expect(byId.NEVER).toMatchObject({ matched: 0, flags: ['no-matches'] });
      const narrow = await app.inject({ url: '/v1/profiles/stats?from=2000-01-01&to=2000-01-31', headers: h });
      expect(narrow.json().scored).toBe(0);
      // a share written as the command takes it (.5, 1e-2)
      expect((await app.inject({ url: '/v1/profiles/stats?maxShare=.5&minInspected=3', headers: h })).statusCode).toBe(200);
      expect((await app.inject({ url: '/v1/profiles/stats?maxShare=1e-2', headers: h })).statusCode).toBe(200);
      // what the command refuses, the route refuses the same way: days in the wrong form or that are not days,
      // a share outside [0, 1], fewer than one inspection
      for (const [q, field] of [['from=yesterday', 'from'], ['to=2026-13-01', 'to'], ['from=2026-02-30&to=2026-03-05', 'from'], ['maxShare=1.5', 'maxShare'], ['maxShare=', 'maxShare'], ['minInspected=0', 'minInspected'], ['minInspected=2.5', 'minInspected']]) {
        const bad = await app.inject({ url: `/v1/profiles/stats?${q}`, headers: h });
        expect(bad.statusCode, q).toBe(400);
        expect(bad.json().error, q).toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field } });
      }
    } finally {
      await service.close();
    }
    // the counters were flushed to the store: the CLI reads the same figures
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    let printed = '';
    out.mockImplementation((c: string | Uint8Array) => { printed += String(c); return true; });
    try {
      expect(await main(['profiles', 'stats', '--data-dir', join(dir, 'stats'), '--json'])).toBe(0);
    } finally {
      out.mockRestore();
    }
    const cli = JSON.parse(printed);
    expect(cli.profiles.find((p: { id: string }) => p.id === 'ALL-CN').matched).toBe(9);
  });
});
