/**
 * Back-tests: every figure of the report recomputed from the engine scoring
 * the same declarations from memory (one batch, in-process), the pool
 * agreeing with the calling thread, date ranges, the capacity view's top of
 * the ranking, the HTML page, and the CLI.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Piscina } from 'piscina';
import { createEngine } from '../src/engine.js';
import type { ScoreResult } from '../src/kernel/layout.js';
import { FLAG_CONTROL } from '../src/kernel/layout.js';
import { CHANNELS } from '../src/model/channels.js';
import { toBatch } from '../src/model/columnar.js';
import { parseIsoDate, type Declaration } from '../src/model/schema.js';
import { PeerTableBuilder } from '../src/peers/peer-groups.js';
import { createRuleset, type Ruleset } from '../src/ruleset/ruleset.js';
import { HistoryWriter, RESULT_UNKNOWN } from '../src/history/store.js';
import { atRate, parseCapacity, runBacktest, type BacktestReport } from '../src/backtest/backtest.js';
import { BINS, HIST_STRIDE, SCORE_MIN, BIN_SCALE } from '../src/backtest/accumulate.js';
import { formatBacktest, renderBacktestHtml } from '../src/backtest/render.js';
import { datedDeclarations, randomProfiles, runCli } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'sel-backtest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const N = 3000;
const decls = datedDeclarations(N, 11);
const result = Int8Array.from({ length: N }, (_, i) => { const r = (i * 2654435761) % 5; return r === 0 ? 1 : r === 1 ? RESULT_UNKNOWN : 0; });
const revenue = Float64Array.from({ length: N }, (_, i) => (result[i] === RESULT_UNKNOWN ? NaN : 10 + (i % 97)));
const dir = join(root, 'history');
let candidate: Ruleset, baseline: Ruleset;
let expected: [ScoreResult, ScoreResult];
const CAPACITY = { perOfficeDay: 3, byOffice: { OF1: 1 } };

beforeAll(async () => {
  const w = new HistoryWriter(dir, { segmentRows: 1100, batchRows: 256 });
  for (let at = 0; at < N; at += 900) {
    const part = decls.slice(at, at + 900);
    const { batch, ids } = toBatch(part);
    w.add(batch, ids, result.subarray(at, at + part.length), revenue.subarray(at, at + part.length));
  }
  w.commit();
  const b = new PeerTableBuilder();
  b.add(toBatch(decls).batch);
  const peers = b.finish();
  candidate = createRuleset({ peers, profiles: randomProfiles(40, 1), settings: { randomSelection: { rate: 0.02 } } });
  baseline = createRuleset({ peers, profiles: randomProfiles(25, 2) });
  expected = [await scoreAll(candidate, decls), await scoreAll(baseline, decls)];
});

async function scoreAll(rs: Ruleset, ds: Declaration[]): Promise<ScoreResult> {
  const engine = createEngine({ ruleset: rs, threads: 0 });
  try { return await engine.scoreBatch(toBatch(ds).batch); } finally { await engine.close(); }
}

/** A second of timers, for threads and files a run let go of to be gone. */
const settle = async () => { for (let t = 0; t < 40; t++) await new Promise((r) => setTimeout(r, 25)); };

const known = (i: number) => result[i] !== RESULT_UNKNOWN;
const hit = (i: number) => result[i] === 1;

describe('back-test', () => {
  let report: BacktestReport;
  beforeAll(async () => { report = await runBacktest(dir, { candidate, baseline, threads: 0, capacity: CAPACITY, tooMuch: 0.3 }); });

  it('counts channels, results and revenue per set as the engine decides them', () => {
    expect(report.store.declarations).toBe(N);
    expect(report.store.withResult).toBe([...result].filter((r) => r !== RESULT_UNKNOWN).length);
    expect(report.store.nonCompliant).toBe([...result].filter((r) => r === 1).length);
    for (let s = 0; s < 2; s++) {
      const res = expected[s];
      const set = report.sets[s];
      // the random control group is counted on its own, not in the channel it was sent to
      const drawn = (i: number) => (res.flags[i] & FLAG_CONTROL) !== 0;
      CHANNELS.forEach((ch, c) => {
        const rows = [...Array(N).keys()].filter((i) => res.channel[i] === c && !drawn(i));
        const line = set.channels[c];
        expect(line.channel).toBe(ch);
        expect(line.declarations).toBe(rows.length);
        expect(line.withResult).toBe(rows.filter(known).length);
        expect(line.nonCompliant).toBe(rows.filter(hit).length);
        expect(line.revenue).toBeCloseTo(rows.filter(hit).reduce((a, i) => a + revenue[i], 0), 6);
      });
      const ctl = [...Array(N).keys()].filter((i) => res.channel[i] !== 0 && !drawn(i));
      expect(set.controlled.declarations).toBe(ctl.length);
      expect(set.controlled.share).toBeCloseTo(ctl.length / N, 12);
      expect(set.monthly.reduce((a, m) => a + m.controlled, 0)).toBe(ctl.length);
      expect(set.controlled.precision).toBeCloseTo(ctl.filter(hit).length / ctl.filter(known).length, 12);
      const group = [...Array(N).keys()].filter(drawn);
      expect(set.controlGroup.declarations).toBe(group.length);
      expect(set.controlGroup.withResult).toBe(group.filter(known).length);
      expect(set.controlGroup.nonCompliant).toBe(group.filter(hit).length);
      expect(set.channels.reduce((a, l) => a + l.declarations, 0) + set.controlGroup.declarations).toBe(N);
      expect(set.rulesetVersion).toBe(res.rulesetVersion);
    }
    expect(report.sets[0].controlGroup.declarations).toBeGreaterThan(0); // the candidate has random selection on
    expect(formatBacktest(report)).toMatch(new RegExp(`control group +${report.sets[0].controlGroup.declarations} \\(`));
    // the top-of-ranking figures say they are binned (an exact ranking can differ a little)
    expect(formatBacktest(report)).toContain('bins of 1/64');
    expect(renderBacktestHtml(report)).toContain('bins of 1/64');
  });

  it('counts matches, hits and months per profile, and flags profiles that never match or match too much', () => {
    for (let s = 0; s < 2; s++) {
      const res = expected[s];
      const lines = report.profiles[s];
      const P = s === 0 ? 40 : 25;
      expect(lines.length).toBe(P);
      for (let p = 0; p < P; p++) {
        const rows = [...Array(N).keys()].filter((i) => res.matchList.subarray(res.matchOffset[i], res.matchOffset[i + 1]).includes(p));
        expect(lines[p].matches).toBe(rows.length);
        expect(lines[p].nonCompliant).toBe(rows.filter(hit).length);
        expect(lines[p].withResult).toBe(rows.filter(known).length);
        expect(lines[p].monthly.matches.reduce((a, b) => a + b, 0)).toBe(rows.length);
        expect(lines[p].monthly.matches[0]).toBe(rows.filter((i) => decls[i].date < '2025-02-01').length);
        expect(lines[p].flag).toBe(rows.length === 0 ? 'never' : rows.length / N > 0.3 ? 'too-much' : null);
      }
    }
    expect(report.months).toEqual(['2025-01', '2025-02', '2025-03', '2025-04']);
    expect(report.profiles[0].some((p) => p.flag !== null) || report.profiles[1].some((p) => p.flag !== null)).toBe(true);
  });

  it('counts channel changes, with the first declarations of each change as examples', () => {
    const [c, b] = expected;
    let changed = 0;
    for (const m of report.changes.matrix) {
      const a = CHANNELS.indexOf(m.from), z = CHANNELS.indexOf(m.to);
      const rows = [...Array(N).keys()].filter((i) => b.channel[i] === a && c.channel[i] === z);
      expect(m.declarations).toBe(rows.length);
      if (a !== z) {
        changed += rows.length;
        expect(m.examples.map((e) => e.id)).toEqual(rows.slice(0, 5).map((i) => decls[i].id));
        expect(m.examples[0].candidateScore).toBe(c.score[rows[0]]);
        expect(m.examples[0].baselineScore).toBe(b.score[rows[0]]);
      }
    }
    expect(report.changes.changed).toBe(changed);
    expect(changed).toBeGreaterThan(0);
  });

  it('fills each office-day from the top of each ranking, ties to the earlier declaration', () => {
    for (let s = 0; s < 2; s++) {
      const res = expected[s];
      const groups = new Map<string, number[]>();
      decls.forEach((d, i) => { const k = `${d.office}|${d.date}`; (groups.get(k) ?? groups.set(k, []).get(k)!).push(i); });
      let filled = 0, hits = 0, knownFilled = 0, rev = 0, physical = 0, overflow = 0;
      for (const [k, rows] of groups) {
        const office = k.split('|')[0];
        const cap = office === 'OF1' ? 1 : 3;
        const top = [...rows].sort((x, y) => res.score[y] - res.score[x] || x - y).slice(0, cap);
        filled += top.length;
        hits += top.filter(hit).length;
        knownFilled += top.filter(known).length;
        rev += top.filter(hit).reduce((a, i) => a + revenue[i], 0);
        const ph = rows.filter((i) => res.channel[i] >= 3).length;
        physical += ph;
        overflow += Math.max(0, ph - cap);
      }
      const c = report.sets[s].capacity!;
      expect(c.groups).toBe(groups.size);
      expect(c.filled).toBe(filled);
      expect(c.nonCompliantFilled).toBe(hits);
      expect(c.knownAmongFilled).toBe(knownFilled);
      expect(c.revenueFilled).toBeCloseTo(rev, 6);
      expect(c.setPhysical).toBe(physical);
      expect(c.overflow).toBe(overflow);
    }
  });

  it('gives the same report from a pool of workers', async () => {
    const pooled = await runBacktest(dir, { candidate, baseline, threads: 2, capacity: CAPACITY, tooMuch: 0.3 });
    const strip = (r: BacktestReport) => JSON.parse(JSON.stringify({ ...r, ranAt: 0, seconds: 0, declarationsPerSecond: 0, threads: 0 }), (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(10)) : v));
    expect(strip(pooled)).toEqual(strip(report));
  });

  it('a cancelled back-test leaves no worker thread behind', async () => {
    const threadsNow = () => readdirSync('/proc/self/task').length;
    // a whole run first: the threads a process keeps once started (libuv's pool for the file reads) are there
    await runBacktest(dir, { candidate, baseline, threads: 2 });
    await settle();
    const before = threadsNow();
    for (let k = 0; k < 4; k++) {
      const ac = new AbortController();
      // cancelled once the first part is done: workers busy with the others
      const run = runBacktest(dir, { candidate, baseline, threads: 2, signal: ac.signal, onProgress: () => ac.abort() });
      await expect(run).rejects.toMatchObject({ code: 'SEL_ERR_NOT_READY', details: { field: 'backtest' } });
    }
    await settle();
    // each cancel left its workers running (Piscina started new ones to keep its minimum while the pool was
    // being destroyed): 8 threads more after 4 cancels, and about 60 MB each in the service
    expect(threadsNow()).toBeLessThanOrEqual(before);
  });

  it('a back-test cancelled while its workers are still starting leaves no open file behind', async () => {
    // the files the leak held: modules (.js, .mjs); other descriptors come and go with the test run (it failed
    // once in CI at one descriptor over a bound of 2 when it counted every one)
    const fds = () => readdirSync('/proc/self/fd').filter((fd) => { try { return /\.m?js$/.test(readlinkSync(`/proc/self/fd/${fd}`)); } catch { return false; } }).length;
    await runBacktest(dir, { candidate, baseline, threads: 2 });
    await settle();
    const before = fds();
    // cancelled from 50 to 300 ms after the start: on this machine, from about 75 ms the workers were
    // loading their modules, and 150 files were left open after 7 such cancels
    for (let ms = 50; ms <= 300; ms += 25) {
      const ac = new AbortController();
      const run = runBacktest(dir, { candidate, baseline, threads: 2, signal: ac.signal });
      setTimeout(() => ac.abort(), ms);
      await run.catch(() => undefined);
    }
    await settle();
    // a worker terminated while Node loads its ES modules keeps the module files open: 15 to 20 a cancel
    expect(fds()).toBeLessThanOrEqual(before);
  });

  it('a cancel ends its tasks only once every worker of the pool has loaded: a task may sit on a worker still loading its modules', async () => {
    // Piscina ends the worker of a task it aborts at once, and hands tasks to workers still loading (a fresh
    // clone's first run left 36 module files open after 11 cancels): here each task's abort is checked
    const run = Piscina.prototype.run;
    const seen: { threads: number; loaded: number }[] = [];
    const loaded = new WeakMap<Piscina, Set<unknown>>();
    const spy = vi.spyOn(Piscina.prototype, 'run').mockImplementation(function (this: Piscina, task: unknown, options?: Parameters<Piscina['run']>[1]) {
      if (!loaded.has(this)) {
        const set = new Set<unknown>();
        loaded.set(this, set);
        this.on('workerCreate', (w: unknown) => set.add(w));
        this.on('workerDestroy', (w: unknown) => set.delete(w));
      }
      const set = loaded.get(this)!;
      (options?.signal as AbortSignal | undefined)?.addEventListener('abort', () => seen.push({ threads: this.threads.length, loaded: set.size }), { once: true });
      return run.call(this, task, options);
    });
    try {
      for (let k = 0; k < 3; k++) {
        const ac = new AbortController();
        const running = runBacktest(dir, { candidate, baseline, threads: 2, signal: ac.signal });
        ac.abort(); // at once: the workers have not loaded yet
        await expect(running).rejects.toMatchObject({ code: 'SEL_ERR_NOT_READY', details: { field: 'backtest' } });
      }
    } finally {
      spy.mockRestore();
    }
    expect(seen.length).toBeGreaterThan(0);
    // (a worker the abort of an earlier task ended may still be counted among the loaded ones)
    for (const s of seen) expect(s.loaded, JSON.stringify(s)).toBeGreaterThanOrEqual(s.threads);
  });

  it('a worker that answers a task its cancel dropped is no error thrown from the event loop', async () => {
    // the race, made certain: after the cancel, the pool reports what a worker ended by it may still post
    // (Piscina emits it as an error event; one with no listener was thrown, and failed a CI run)
    const run = Piscina.prototype.run;
    const spy = vi.spyOn(Piscina.prototype, 'run').mockImplementation(function (this: Piscina, task: unknown, options?: Parameters<Piscina['run']>[1]) {
      (options?.signal as AbortSignal | undefined)?.addEventListener('abort', () => this.emit('error', new Error('Unexpected message from Worker: (test)')), { once: true });
      return run.call(this, task, options);
    });
    try {
      const ac = new AbortController();
      await expect(runBacktest(dir, { candidate, baseline, threads: 2, signal: ac.signal, onProgress: () => ac.abort() })).rejects.toMatchObject({ code: 'SEL_ERR_NOT_READY', details: { field: 'backtest' } });
      // before a cancel, such an error fails the run with it
      const spy2 = vi.spyOn(Piscina.prototype, 'run').mockImplementation(function (this: Piscina, task: unknown, options?: Parameters<Piscina['run']>[1]) {
        setImmediate(() => this.emit('error', new Error('Unexpected message from Worker: (test)')));
        return run.call(this, task, options);
      });
      await expect(runBacktest(dir, { candidate, baseline, threads: 2 })).rejects.toThrow(/Unexpected message from Worker/);
      spy2.mockRestore();
    } finally {
      spy.mockRestore();
    }
  });

  it('replays only the requested dates', async () => {
    const r = await runBacktest(dir, { candidate, baseline, threads: 0, from: '2025-02-01', to: '2025-02-28' });
    const rows = [...Array(N).keys()].filter((i) => decls[i].date >= '2025-02-01' && decls[i].date <= '2025-02-28');
    expect(r.store.declarations).toBe(rows.length);
    expect(r.months).toEqual(['2025-02']);
    // the control group's rows are counted on their own, not in their channel
    CHANNELS.forEach((_, c) => expect(r.sets[0].channels[c].declarations).toBe(rows.filter((i) => expected[0].channel[i] === c && (expected[0].flags[i] & FLAG_CONTROL) === 0).length));
    expect(r.sets[0].controlGroup.declarations).toBe(rows.filter((i) => (expected[0].flags[i] & FLAG_CONTROL) !== 0).length);
    const first = r.changes.matrix.find((m) => m.from !== m.to && m.examples.length);
    if (first) expect(first.examples[0].date >= '2025-02-01').toBe(true);
    await expect(runBacktest(dir, { candidate, baseline, threads: 0, from: '2026-01-01' })).rejects.toMatchObject({ code: 'SEL_ERR_HISTORY_EMPTY' });
    await expect(runBacktest(dir, { candidate, baseline, threads: 0, from: '2025-03-01', to: '2025-02-01' })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'from' } });
    await expect(runBacktest(join(root, 'none'), { candidate, baseline, threads: 0 })).rejects.toMatchObject({ code: 'SEL_ERR_HISTORY_EMPTY' });
  });

  it('scores each set with its own keyword terms when the sets differ in them', async () => {
    const peers = candidate.peers;
    const kc = createRuleset({ peers, profiles: randomProfiles(30, 12, { keywords: true }) });
    const kb = createRuleset({ peers, profiles: randomProfiles(30, 13, { keywords: true }) });
    const r = await runBacktest(dir, { candidate: kc, baseline: kb, threads: 0 });
    const [ec, eb] = [await scoreAll(kc, decls), await scoreAll(kb, decls)];
    for (const [s, e] of [[0, ec], [1, eb]] as const) {
      CHANNELS.forEach((_, c) => expect(r.sets[s].channels[c].declarations).toBe([...e.channel].filter((x, i) => x === c && (e.flags[i] & FLAG_CONTROL) === 0).length));
      r.profiles[s].forEach((p, i) => expect(p.matches).toBe([...e.matchList.subarray(0, e.matchOffset[N])].filter((x) => x === i).length));
    }
  });

  it('reports a damaged segment by name, from the pool as from this thread', async () => {
    const bad = join(root, 'damaged');
    const w = new HistoryWriter(bad); const t = toBatch(decls.slice(0, 100)); w.add(t.batch, t.ids); w.commit();
    const seg = join(bad, 'seg-000001.arrow');
    writeFileSync(seg, readFileSync(seg).subarray(0, 200));
    for (const threads of [0, 1]) {
      await expect(runBacktest(bad, { candidate, baseline, threads })).rejects.toMatchObject({ code: 'SEL_ERR_HISTORY_INVALID', details: { got: seg } });
    }
  });

  it('ranks by score: precision, recall and revenue at a rate, ties split pro rata', () => {
    const hist = new Float64Array(BINS * HIST_STRIDE);
    const put = (score: number, n: number, k: number, h: number, rev: number) => {
      const b = Math.floor((score - SCORE_MIN) * BIN_SCALE) * HIST_STRIDE;
      hist[b] += n; hist[b + 1] += k; hist[b + 2] += h; hist[b + 3] += rev;
    };
    put(5, 10, 10, 8, 80); put(2, 20, 10, 2, 20); put(0, 70, 50, 5, 50);
    const totals = { nonCompliant: 15, revenue: 150 };
    expect(atRate(hist, 100, 0.1, totals)).toEqual({ rate: 0.1, precision: 0.8, recall: 8 / 15, revenueCaptured: 80 / 150 });
    const r = atRate(hist, 100, 0.2, totals); // all of the top bin, half of the next
    expect(r.precision).toBeCloseTo(9 / 15, 12);
    expect(r.revenueCaptured).toBeCloseTo(90 / 150, 12);
    expect(atRate(new Float64Array(BINS * HIST_STRIDE), 0, 0.1, totals).precision).toBeNull();
  });

  it('reads capacity specs and refuses bad ones by name', () => {
    expect(parseCapacity('20')).toEqual({ perOfficeDay: 20 });
    expect(parseCapacity('OF01=30, OF02=10,*=5')).toEqual({ perOfficeDay: 5, byOffice: { OF01: 30, OF02: 10 } });
    expect(() => parseCapacity('OF01:3')).toThrowError(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'capacity' }) }));
    expect(() => parseCapacity('OF01=9999999')).toThrowError(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  });

  it('renders a self-contained HTML page with every section', () => {
    const html = renderBacktestHtml(report);
    for (const s of ['Channels', 'Precision and revenue captured', 'Months', 'Channel changes', 'Profiles: candidate', 'Profiles: baseline', 'Capacity view']) expect(html).toContain(`<h2>${s}`);
    expect(html).toContain('new Chart(');
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).toContain(report.changes.matrix.find((m) => m.from !== m.to && m.examples.length)!.examples[0].id);
  });
});

describe('selectivity history and backtest', () => {
  it('imports files, shows the store, and back-tests a candidate set against the active one', async () => {
    const data = join(root, 'cli-data');
    const csv = join(root, 'h.csv');
    const header = 'id,date,office,importer,hs,origin,customsValue,netMass,taxRate,description,fraud';
    writeFileSync(csv, `${header}\n${decls.slice(0, 1500).map((d, i) => [d.id, d.date, d.office, d.importer, d.hs, d.origin, d.customsValue, d.netMass, d.taxRate ?? '', JSON.stringify(d.description ?? ''), i % 4 === 0 ? 1 : 0].join(',')).join('\n')}\n`);
    const imp = await runCli(['history', 'import', csv, '--label', 'fraud', '--data-dir', data, '--json']);
    expect(imp.code).toBe(0);
    const ir = JSON.parse(imp.stdout);
    expect([ir.rows, ir.invalid]).toEqual([1500, 0]);
    expect(ir.nonCompliant).toBeGreaterThan(0);
    const show = await runCli(['history', 'show', '--data-dir', data]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`${ir.store.rows.toLocaleString('en-US')} declarations, 2025-01-01`);
    const profiles = join(root, 'candidate.json');
    writeFileSync(profiles, JSON.stringify({ profiles: randomProfiles(12, 5) }));
    // a data directory with a history but no profile store: refused by name, and nothing is seeded into it
    // (it used to be seeded with the bundled example set, which then was the "active" baseline)
    const bare = await runCli(['backtest', '--profiles', profiles, '--data-dir', data, '--threads', '0']);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('SEL_ERR_FILE_NOT_FOUND: no profile store in');
    expect(readdirSync(data).sort()).toEqual(['history']);
    // set up as an analyst would: the active set imported, the peer tables built from the history file
    const active = join(root, 'active.json');
    writeFileSync(active, JSON.stringify({ profiles: randomProfiles(7, 6) }));
    expect((await runCli(['profiles', 'import', active, '--data-dir', data])).code).toBe(0);
    const noPeers = await runCli(['backtest', '--profiles', profiles, '--data-dir', data, '--threads', '0']);
    expect(noPeers.stderr).toContain('SEL_ERR_FILE_NOT_FOUND: no peer tables');
    expect((await runCli(['peers', 'build', csv, '--out', join(data, 'peers.json')])).code).toBe(0);
    const html = join(root, 'report.html');
    const bt = await runCli(['backtest', '--profiles', profiles, '--data-dir', data, '--capacity', '*=2', '--threads', '0', '--json', '--html', html]);
    expect(bt.code).toBe(0);
    const r = JSON.parse(bt.stdout) as BacktestReport;
    expect(r.store.declarations).toBe(ir.store.rows);
    expect(r.sets[0].profiles).toBe(12);
    expect(r.sets[1].name).toBe('active');
    expect(r.sets[1].profiles).toBe(7);
    expect(r.sets[0].channels.reduce((a, c) => a + c.declarations, 0) + r.sets[0].controlGroup.declarations).toBe(ir.store.rows);
    expect(readFileSync(html, 'utf8')).toContain('<h2>Capacity view');
    const text = await runCli(['backtest', '--profiles', profiles, '--data-dir', data, '--threads', '0', '--from', '2025-03-01']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/history 2025-03-01 … 2025-0[34]-\d\d: [\d,]+ declarations/);
    const empty = await runCli(['backtest', '--profiles', profiles, '--data-dir', data, '--threads', '0', '--from', '2030-01-01']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('SEL_ERR_HISTORY_EMPTY');
    const bad = await runCli(['backtest', '--data-dir', data]);
    expect(bad.stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect(parseIsoDate(r.store.from)).toBeGreaterThanOrEqual(parseIsoDate('2025-01-01'));
  });
});
