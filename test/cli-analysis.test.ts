/**
 * The analyst commands end to end, in-process through main(argv):
 * peers build / update / show, study and evaluate.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers.js';
import { writeSynthetic } from '../src/generate/synthetic.js';
import { execFile } from 'node:child_process';
import { loadPeerSnapshot, lockPeerSnapshot } from '../src/peers/peer-store.js';
import { packageRoot } from '../src/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-cli-analysis-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const OPTS = { seed: 3, hsCodes: 20 };
const all = join(dir, 'all.csv');

const run = runCli;

beforeAll(async () => {
  await writeSynthetic(all, { ...OPTS, rows: 6000 });
  // split the file: the first 4,000 rows are history, the last 2,000 newly cleared
  const lines = readFileSync(all, 'utf8').trim().split('\n');
  writeFileSync(join(dir, 'old.csv'), lines.slice(0, 4001).join('\n') + '\n');
  writeFileSync(join(dir, 'new.csv'), [lines[0], ...lines.slice(4001)].join('\n') + '\n');
});

describe('selectivity peers', () => {
  it('builds, folds and shows a snapshot; fold equals rebuild', async () => {
    const built = await run(['peers', 'build', join(dir, 'old.csv'), '--out', join(dir, 'p.msgpack'), '--json']);
    expect(built.code, built.stderr).toBe(0);
    const s1 = JSON.parse(built.stdout);
    expect(s1).toMatchObject({ rows: 4000, rowsRead: 4000, invalid: 0, parent: null });
    expect(s1.rowsPerSecond).toBeGreaterThan(0);
    expect(s1.peakRssMB).toBeGreaterThan(0);

    const updated = await run(['peers', 'update', join(dir, 'p.msgpack'), join(dir, 'new.csv'), '--out', join(dir, 'p2.json'), '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ rows: 6000, parent: s1.version });

    expect((await run(['peers', 'build', all, '--out', join(dir, 'full.json')])).code).toBe(0);
    const folded = loadPeerSnapshot(join(dir, 'p2.json'));
    const rebuilt = loadPeerSnapshot(join(dir, 'full.json'));
    for (let l = 0; l < rebuilt.levels.length; l++) {
      for (const [key, g] of rebuilt.groups[l]) {
        const f = folded.groups[l].get(key)!;
        expect(f.count).toBe(g.count);
        expect(f.sketches.map((s) => s.summary())).toEqual(g.sketches.map((s) => s.summary()));
      }
    }

    const shown = await run(['peers', 'show', join(dir, 'p2.json')]);
    expect(shown.stdout).toContain(folded.info.version);
    expect(shown.stdout).toContain('6,000 declarations from 2 source(s)');
    const key = [...folded.groups[1].keys()][0];
    const group = await run(['peers', 'show', join(dir, 'p2.json'), '--level', 'hs6', '--group', key, '--json']);
    expect(JSON.parse(group.stdout)).toMatchObject({ level: 'hs6', key, count: folded.groups[1].get(key)!.count });
  });

  it('refuses bad requests with named errors and leaves files alone', async () => {
    const noOut = await run(['peers', 'build', all]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect((await run(['peers', 'build', all, '--out', join(dir, 'x.txt')])).stderr).toContain('SEL_ERR_FILE_FORMAT');
    const levels = await run(['peers', 'update', join(dir, 'p.msgpack'), join(dir, 'new.csv'), '--by', 'hs4', '--out', join(dir, 'p3.json')]);
    expect(levels.stderr).toContain('SEL_ERR_PEERS_MISMATCH');
    writeFileSync(join(dir, 'broken.json'), '{"format":"selectivity-peers","formatVersion":2,');
    const before = readFileSync(join(dir, 'broken.json'), 'utf8');
    const broken = await run(['peers', 'update', join(dir, 'broken.json'), join(dir, 'new.csv')]);
    expect(broken.stderr).toContain('SEL_ERR_PEERS_CORRUPT');
    expect(readFileSync(join(dir, 'broken.json'), 'utf8')).toBe(before);
  });
});

describe('selectivity peers: one writer of a snapshot at a time', () => {
  it('an update or build of a snapshot whose lock another writer holds is refused at once, the file untouched', async () => {
    const snap = join(dir, 'locked.msgpack');
    expect((await run(['peers', 'build', join(dir, 'old.csv'), '--out', snap])).code).toBe(0);
    const before = readFileSync(snap);
    const held = lockPeerSnapshot(snap, 'a test');
    try {
      for (const argv of [['peers', 'update', snap, join(dir, 'new.csv')], ['peers', 'build', all, '--out', snap], ['peers', 'update', join(dir, 'p.msgpack'), join(dir, 'new.csv'), '--out', snap]]) {
        const r = await run(argv);
        expect(r.code, argv.join(' ')).toBe(2);
        expect(r.stderr).toContain('SEL_ERR_PEERS_BUSY');
        expect(r.stderr).toContain('a test');
      }
    } finally {
      held.release();
    }
    expect(readFileSync(snap).equals(before)).toBe(true);
    // once let go, the update runs
    const after = await run(['peers', 'update', snap, join(dir, 'new.csv'), '--json']);
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout).rows).toBe(6000);
  });

  it('two processes updating one snapshot at once: every update that reports success is in the snapshot', async () => {
    const snap = join(dir, 'shared.json');
    expect((await run(['peers', 'build', join(dir, 'old.csv'), '--out', snap])).code).toBe(0);
    await writeSynthetic(join(dir, 'a.csv'), { ...OPTS, seed: 31, rows: 20_000 });
    await writeSynthetic(join(dir, 'b.csv'), { ...OPTS, seed: 32, rows: 20_000 });
    const cli = join(packageRoot(), 'bin', 'selectivity.js');
    const update = (file: string) => new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, 'peers', 'update', snap, join(dir, file)], (e, _out, stderr) => resolve({ code: e ? (e.code as number) : 0, stderr }));
    });
    const results = await Promise.all([update('a.csv'), update('b.csv')]);
    for (const r of results) if (r.code !== 0) expect(r.stderr).toContain('SEL_ERR_PEERS_BUSY');
    const succeeded = results.filter((r) => r.code === 0).length;
    expect(succeeded).toBeGreaterThan(0);
    // the old build's 4,000 rows and 20,000 for each update that said it succeeded
    expect(loadPeerSnapshot(snap).info.rows).toBe(4000 + 20_000 * succeeded);
  });
});

describe('selectivity study', () => {
  it('writes JSON, CSV (top and groups) and HTML reports', async () => {
    const r = await run(['study', join(dir, 'new.csv'), '--peers', join(dir, 'p.msgpack'), '--top', '15', '--rank-by', 'unitValue', '--direction', 'under',
      '--out', join(dir, 'r.json'), '--out', join(dir, 'r.csv'), '--out', join(dir, 'r.html')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('ranked by unitValue (under)');
    const report = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
    expect(report.top).toHaveLength(15);
    expect(report.scored).toBe(2000);
    expect(readFileSync(join(dir, 'r.csv'), 'utf8').trim().split('\n')).toHaveLength(16);
    expect(readFileSync(join(dir, 'r.groups.csv'), 'utf8').split('\n')[0]).toContain('outlier_share');
    const html = readFileSync(join(dir, 'r.html'), 'utf8');
    expect(html).toContain(report.top[0].id);
    expect(html).not.toMatch(/src="https?:/);
    expect((await run(['study', join(dir, 'new.csv'), '--peers', join(dir, 'p.msgpack'), '--out', join(dir, 'r.xlsx')])).stderr).toContain('SEL_ERR_OPTION_INVALID');
    // a report written over the studied file or the snapshot would destroy it: refused before anything is read
    writeFileSync(join(dir, 'victim.csv'), readFileSync(join(dir, 'new.csv')));
    writeFileSync(join(dir, 'victim.groups.csv'), readFileSync(join(dir, 'new.csv')));
    const snapshotBytes = readFileSync(join(dir, 'p2.json'));
    for (const [args, said] of [
      [[join(dir, 'victim.csv'), '--out', join(dir, 'victim.csv')], 'is the input file'],
      [[join(dir, 'victim.groups.csv'), '--out', join(dir, 'victim.csv')], 'which is the input file'],
      [[join(dir, 'new.csv'), '--peers', join(dir, 'p2.json'), '--out', join(dir, '.', 'p2.json')], 'is the --peers snapshot'],
    ] as const) {
      const r = await run(['study', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('SEL_ERR_OPTION_INVALID');
      expect(r.stderr).toContain(said);
    }
    expect(readFileSync(join(dir, 'p2.json')).equals(snapshotBytes)).toBe(true);
    for (const f of ['victim.csv', 'victim.groups.csv']) expect(readFileSync(join(dir, f)).equals(readFileSync(join(dir, 'new.csv')))).toBe(true);
    // bad options are refused before the file is read (a missing file is not reached), named as typed
    for (const [args, field] of [[['--rank-by', 'bogus'], 'rank-by'], [['--direction', 'sideways'], 'direction'], [['--top', '0'], 'top'], [['--z-threshold', '-1'], 'z-threshold']] as const) {
      const r = await run(['study', join(dir, 'no-such-file.csv'), ...args, '--out', join(dir, 'x.json')]);
      expect(r.code, field).toBe(2);
      expect(r.stderr, field).toContain('SEL_ERR_OPTION_INVALID');
      expect(r.stderr, field).toContain(`"field":"${field}"`);
    }
  });
});

describe('selectivity evaluate', () => {
  it('prints precision, recall and revenue at the top k % beside random selection', async () => {
    const r = await run(['evaluate', '--train', join(dir, 'old.csv'), '--test', join(dir, 'new.csv'), '--label', 'fraud', '--threads', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(e.n).toBe(2000);
    expect(e.train.rows).toBe(4000);
    expect(e.cuts.map((c: { fraction: number }) => c.fraction)).toEqual([0.01, 0.02, 0.05, 0.1]);
    const text = await run(['evaluate', '--file', all, '--label', 'fraud', '--threads', '0', '--top', '5,20']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/5 %.*\n.*20 %/);
    // --learn: the model line says how many of the dimensions training kept (weight not 0)
    const learnt = await run(['evaluate', '--train', join(dir, 'old.csv'), '--test', join(dir, 'new.csv'), '--label', 'fraud', '--threads', '0', '--learn', '--json']);
    expect(learnt.code, learnt.stderr).toBe(0);
    const dims = JSON.parse(learnt.stdout).model.dimensions as { weight: number }[];
    const learntText = await run(['evaluate', '--train', join(dir, 'old.csv'), '--test', join(dir, 'new.csv'), '--label', 'fraud', '--threads', '0', '--learn']);
    expect(learntText.stdout).toContain(`; ${dims.filter((d) => d.weight !== 0).length} of ${dims.length} dimensions kept; largest weights `);
    expect((await run(['evaluate', '--test', all, '--label', 'fraud'])).stderr).toContain('SEL_ERR_OPTION_INVALID');
  });
});

describe('selectivity score --peers', () => {
  it('scores against a snapshot instead of the file itself', async () => {
    const r = await run(['score', join(dir, 'new.csv'), '--peers', join(dir, 'p.msgpack'), '--threads', '0', '--json', '--out', join(dir, 'd.ndjson')]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    const snapshot = loadPeerSnapshot(join(dir, 'p.msgpack'));
    expect(summary.peerGroups['hs6,origin']).toBe(snapshot.groups[0].size);
    expect(summary.seconds.peers).toBeLessThan(summary.seconds.total);
    const broken = await run(['score', join(dir, 'new.csv'), '--peers', join(dir, 'broken.json'), '--threads', '0']);
    expect(broken.stderr).toContain('SEL_ERR_PEERS_CORRUPT');
  });
});
