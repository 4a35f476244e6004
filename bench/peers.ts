/**
 * `npm run bench:peers` (part of `npm run bench`): building peer statistics
 * from history and deviation studies, on synthetic CSV files. Prints
 * markdown tables and writes bench/PEERS-RESULTS.md (not with --quick). Figures are reported,
 * never asserted.
 *
 * Every phase runs in its own child process, so that its peak RSS
 * (getrusage maxrss) is its own:
 *   read     the baseline: stream the file through the CSV reader and the
 *            column mapping into columnar batches, nothing else;
 *   build    `peers build`: the same read, plus the sketches, then the
 *            snapshot written (MessagePack);
 *   exact    what the sketch replaces: every value kept, exact medians
 *            (memory grows with the rows);
 *   update   fold 10 % more rows into the 1M-row snapshot;
 *   score    the baseline of a study: read and score every row (kernel on
 *            the calling thread, as the study does);
 *   study    `study`: read, score, rank (top 100), group summaries,
 *            distributions.
 *
 * Options: --rows N (default 1,000,000), --quick (200,000 rows).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../src/engine.js';
import { writeSynthetic } from '../src/generate/synthetic.js';
import { readDeclarations } from '../src/model/readers.js';
import { featureValues, levelKey, NF, parseLevels, DEFAULT_LEVELS, PeerTableBuilder, robustStats } from '../src/peers/peer-groups.js';
import { loadPeerSnapshot, loadPeers, loadPeerTables, savePeerSnapshot } from '../src/peers/peer-store.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { foldPeersFromFile } from '../src/score-file.js';
import { studyFile } from '../src/study/study.js';
import { packageRoot } from '../src/paths.js';
import { benchArgs } from './args.js';

// --phase, --file, --peers and --out: the runs of one phase in a child process (see child())
const values = benchArgs('bench:peers', { rows: { type: 'string' }, quick: { type: 'boolean' }, phase: { type: 'string' }, file: { type: 'string' }, peers: { type: 'string' }, out: { type: 'string' } }, `
  --rows N  declarations (default 1000000)
  --quick   200,000 declarations; bench/PEERS-RESULTS.md left as it is`);

interface PhaseResult { phase: string; rows: number; seconds: number; rssMB: number; extra?: Record<string, number | string> }

const rss = () => Math.round(process.resourceUsage().maxRSS / 1024);
/** Heap still reachable (children run with --expose-gc): the state a phase holds, without the reader's garbage. */
const retainedMB = (): number => { (globalThis as { gc?: () => void }).gc?.(); return Math.round(process.memoryUsage().heapUsed / 1e5) / 10; };

async function phase(name: string, file: string, peers?: string, out?: string): Promise<PhaseResult> {
  const t0 = performance.now();
  let rows = 0;
  const extra: Record<string, number | string> = {};
  switch (name) {
    case 'read':
      for await (const c of readDeclarations(file)) rows += c.batch.size;
      break;
    case 'build': {
      const b = await foldPeersFromFile(file);
      rows = b.rows;
      extra.retainedMB = retainedMB();
      const t1 = performance.now();
      savePeerSnapshot(out!, b.snapshot());
      extra.saveSeconds = (performance.now() - t1) / 1000;
      extra.snapshotMB = statSync(out!).size / 1e6;
      extra.groups = b.groupCounts().reduce((a, c) => a + c, 0);
      break;
    }
    case 'exact': {
      const levels = parseLevels(DEFAULT_LEVELS);
      const acc = levels.map(() => new Map<string, number[][]>());
      const x = new Float64Array(NF);
      for await (const c of readDeclarations(file)) {
        const b = c.batch;
        for (let i = 0; i < b.size; i++) {
          featureValues(b.numeric.customsValue[i], b.numeric.netMass[i], b.numeric.quantity[i], x);
          const hs = b.dicts.hs[b.codes.hs[i]];
          levels.forEach((lv, l) => {
            const key = levelKey(lv, hs, lv.field ? b.dicts[lv.field][b.codes[lv.field][i]] : '');
            if (key === undefined) return;
            let g = acc[l].get(key);
            if (!g) { g = [[], [], []]; acc[l].set(key, g); }
            for (let f = 0; f < NF; f++) if (x[f] === x[f]) g[f].push(x[f]);
          });
        }
        rows += b.size;
      }
      extra.retainedMB = retainedMB();
      let groups = 0;
      for (const m of acc) for (const g of m.values()) { groups++; for (const v of g) robustStats(Float64Array.from(v)); }
      extra.groups = groups;
      break;
    }
    case 'update': {
      const b = PeerTableBuilder.fromSnapshot(loadPeerSnapshot(peers!));
      const before = b.rows;
      await foldPeersFromFile(file, { builder: b });
      rows = b.rows - before;
      savePeerSnapshot(out!, b.snapshot());
      break;
    }
    case 'score': {
      const engine = createEngine({ ruleset: createRuleset({ peers: loadPeerTables(peers!) }), threads: 0 });
      for await (const c of readDeclarations(file)) { if (c.batch.size) await engine.scoreBatch(c.batch); rows += c.batch.size; }
      await engine.close();
      break;
    }
    case 'study': {
      const r = await studyFile(file, loadPeers(peers!), { top: 100 });
      rows = r.scored;
      extra.outliers = r.outliers;
      break;
    }
    default:
      throw new Error(`unknown phase ${name}`);
  }
  return { phase: name, rows, seconds: (performance.now() - t0) / 1000, rssMB: rss(), extra };
}

if (values.phase) {
  // child: run one phase, print its result as JSON
  const r = await phase(values.phase, values.file!, values.peers, values.out);
  process.stdout.write(JSON.stringify(r));
  process.exit(0);
}

const QUICK = values.quick === true;
const ROWS = values.rows ? Number(values.rows) : QUICK ? 200_000 : 1_000_000;
const self = fileURLToPath(import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'sel-bench-peers-'));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };
const child = (name: string, file: string, extra: string[] = []): PhaseResult => {
  console.error(`  ${name} ${file.split('/').pop()}…`);
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', self, '--phase', name, '--file', file, ...extra], { encoding: 'utf8', maxBuffer: 1 << 24 })) as PhaseResult;
};

try {
  const big = join(dir, 'history.csv');
  const quarter = join(dir, 'quarter.csv');
  const more = join(dir, 'more.csv');
  console.error(`generating ${fmt(ROWS)} + ${fmt(ROWS / 4)} + ${fmt(ROWS / 10)} synthetic rows…`);
  // one world per file size would differ; the seed and code count fix prices, so groups match across files
  const gen = { seed: 31, hsCodes: 300 };
  await writeSynthetic(big, { ...gen, rows: ROWS });
  await writeSynthetic(quarter, { ...gen, rows: Math.round(ROWS / 4) });
  await writeSynthetic(more, { ...gen, rows: Math.round(ROWS / 10), startDate: '2026-01-01', days: 36 });
  const snap = join(dir, 'peers.msgpack');

  const read = child('read', big);
  const build = child('build', big, ['--out', snap]);
  const buildQ = child('build', quarter, ['--out', join(dir, 'q.msgpack')]);
  const exact = child('exact', big);
  const exactQ = child('exact', quarter);
  const update = child('update', more, ['--peers', snap, '--out', join(dir, 'peers2.msgpack')]);
  const score = child('score', big, ['--peers', snap]);
  const study = child('study', big, ['--peers', snap]);

  out('# Peer statistics and studies: benchmark results');
  out();
  out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} · ${availableParallelism()} cores`);
  out();
  out(`Data: synthetic CSV (generator seed 31, 300 HS6 codes), ${fmt(ROWS)} rows (${(statSync(big).size / 1e6).toFixed(0)} MB); levels hs6,origin → hs6 → hs4 → hs2, ${fmt(Number(build.extra!.groups))} groups; sketch exactLimit 64, α = 0.005. Each phase runs in its own process; peak RSS is that process's maxrss.`);
  out();
  out('| phase | rows | seconds | rows/s | vs read | peak RSS (MB) | state held after the pass (MB) | notes |');
  out('|---|---:|---:|---:|---:|---:|---:|---|');
  const row = (label: string, r: PhaseResult, base: PhaseResult | undefined, notes = '') =>
    out(`| ${label} | ${fmt(r.rows)} | ${r.seconds.toFixed(2)} | ${fmt(r.rows / r.seconds)} | ${base ? `${(r.rows / r.seconds / (base.rows / base.seconds)).toFixed(2)}×` : '1.00×'} | ${r.rssMB} | ${r.extra?.retainedMB ?? ''} | ${notes} |`);
  row('read (baseline: CSV → columnar batches)', read, undefined);
  row('peers build (sketches + snapshot)', build, read, `snapshot ${Number(build.extra!.snapshotMB).toFixed(1)} MB written in ${Number(build.extra!.saveSeconds).toFixed(2)} s`);
  row(`peers build, ${fmt(buildQ.rows)} rows`, buildQ, read, 'memory at a quarter of the rows');
  row('exact medians (every value kept)', exact, read, 'what the sketch replaces');
  row(`exact medians, ${fmt(exactQ.rows)} rows`, exactQ, read, '');
  row(`peers update (fold ${fmt(update.rows)} rows into the snapshot)`, update, read, 'load + fold + save');
  row('score (baseline of a study: read + kernel)', score, read, '');
  row('study (top 100, groups, plots)', study, score, `vs score, not read; ${fmt(Number(study.extra!.outliers))} outliers`);
  out();
  out(`Build throughput: ${fmt(build.rows / build.seconds)} rows/s, ${(build.rows / build.seconds / (read.rows / read.seconds)).toFixed(2)}× the bare read; peak RSS ${build.rssMB} MB at ${fmt(build.rows)} rows against ${buildQ.rssMB} MB at ${fmt(buildQ.rows)}; the statistics held after the pass: ${build.extra!.retainedMB} MB against ${buildQ.extra!.retainedMB} MB (exact medians: ${exact.extra!.retainedMB} MB against ${exactQ.extra!.retainedMB} MB, peak RSS ${exact.rssMB} against ${exactQ.rssMB} MB). Study of ${fmt(study.rows)} rows: ${study.seconds.toFixed(2)} s (${(study.seconds / score.seconds).toFixed(2)}× the time of reading and scoring them).`);
  const file = join(packageRoot(), 'bench', 'PEERS-RESULTS.md');
  // a quick run is a check, not a record: the committed results stay as they are
  if (QUICK) console.error(`quick run: ${file} left as it is`);
  else {
    writeFileSync(file, `${lines.join('\n')}\n`);
    console.error(`wrote ${file}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
