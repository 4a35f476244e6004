/**
 * `npm run bench:log`: what the decision log costs as it grows. Prints
 * markdown and writes bench/LOG-RESULTS.md (not with --quick). Figures are
 * reported, never asserted.
 *
 * The service commits each request's decisions before it answers
 * (src/feedback/decision-log.ts): one chunk row per request, and each
 * declaration id into the id index (decision_ids, by part of the log, then
 * id). How much an id costs can depend on where it lands in that index, so
 * the same log is written three times, with three kinds of declaration ids:
 *
 *  - reused: 20,000 ids over and over, as `npm run bench:service` sends
 *    them (every id is already in the index, in older parts; each decision
 *    adds a row of its own in the newest);
 *  - increasing: a fresh id per declaration, each above the last (every
 *    insert lands at the right edge of the index: the baseline);
 *  - random: a fresh id per declaration, in no order, as in the Korea
 *    Customs Service data (random 8-digit numbers) and wherever ids are
 *    not assigned in one sequence.
 *
 * Each commit holds 8 requests of 1,000 decisions (what the service's group
 * commit gathers under `bench:service`'s batch load: 8 connections); reported
 * per step of the log's size: the median commit and its cost per decision,
 * and the ratio to the increasing ids at the same size. At the end of each
 * log, single-decision commits (one id each, of the same kind) give the
 * latency a lone request waits for its commit, and lookups of an id's
 * decisions (what each examination result recorded does first) the cost of
 * finding them: ids decided first, ids decided last, and unknown ids.
 *
 * Options: --decisions N (per kind of id, default 1,600,000), --quick
 * (400,000), --dir DIR (a temporary directory, removed after).
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { LogWriter } from '../src/feedback/decision-log.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import { openStore } from '../src/store/sqlite.js';
import { Kernel } from '../src/kernel/kernel.js';
import type { Declaration } from '../src/model/schema.js';
import { packageRoot } from '../src/paths.js';
import { compileRuleset } from '../src/ruleset/compile.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { scoreWire } from '../src/service/wire.js';
import { benchProfiles, median, peerTables, quantile, world } from './data.js';
import { benchArgs } from './args.js';

const values = benchArgs('bench:log', { decisions: { type: 'string' }, quick: { type: 'boolean' }, dir: { type: 'string' } }, `
  --decisions N  decisions per kind of id (default 1600000, at least 64000)
  --quick        400,000 decisions
  --dir DIR      where the store goes (default: a temporary directory, removed after)`);
const QUICK = values.quick === true;
const TOTAL = Number(values.decisions ?? (QUICK ? 400_000 : 1_600_000));
if (!Number.isInteger(TOTAL) || TOTAL < 64_000) {
  console.error(`bench:log: --decisions must be an integer of at least 64000, got ${values.decisions}`);
  process.exit(2);
}
const REQUEST = 1000;
const GROUP = 8;
const PER_COMMIT = REQUEST * GROUP;
/** Commits per step of the log's size; a step's figures are the median of its commits. */
const STEP = Math.max(1, Math.round(TOTAL / PER_COMMIT / 8));
const SINGLES = QUICK ? 500 : 2000;
const POOL = 20_000;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines: string[] = [];
const out = (s = '') => { console.log(s); lines.push(s); };
const progress = (s: string) => process.stderr.write(`[log bench ${(performance.now() / 1000).toFixed(1).padStart(6)} s] ${s}\n`);
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'selectivity-bench-log-'));

type IdKind = 'reused' | 'increasing' | 'random';
const KINDS: IdKind[] = ['increasing', 'reused', 'random'];

progress(`generating ${fmt(POOL)} synthetic declarations and a ruleset…`);
const { history, scored } = world(20_000, POOL, 11);
const kernel = new Kernel();
kernel.loadRuleset(compileRuleset(createRuleset({ peers: peerTables(history), profiles: benchProfiles(64, 5, history.slice(0, 5000)) })));

/** Ids of one kind; the random ones from a fixed-seed generator, so that runs compare. */
function idSource(kind: IdKind): (d: Declaration) => string {
  let next = 0;
  let seed = 0x2545f491;
  const random = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0; };
  if (kind === 'reused') return (d) => d.id;
  if (kind === 'increasing') return () => `D${String(next++).padStart(12, '0')}`;
  return () => `D${random().toString(36).padStart(7, '0')}${random().toString(36).padStart(7, '0')}`;
}

/** The log payload of one request, as a scoring worker builds it (scoreWire with the log on). */
function payload(declarations: Declaration[]): Uint8Array {
  const r = scoreWire(kernel, { kind: 'batch', format: 'msgpack', accept: 'msgpack', body: pack({ declarations }), maxDeclarations: REQUEST, log: true });
  if (!r.ok || !r.log) throw new Error(`bench:log: scoring failed: ${r.ok ? 'no log payload' : r.error.message}`);
  return r.log;
}

const fileBytes = (path: string) => { try { return statSync(path).size; } catch { return 0; } };

interface Step { decisions: number; commitMs: number; bytes: number }
interface Lookups { first: number; last: number; unknown: number }
interface KindResult { steps: Step[]; single: { p50: number; p99: number; max: number }; latest: Lookups; all: Lookups }

const LOOKUPS = QUICK ? 200 : 1000;

/** Median µs of `find` per id (true: the id was found); throws if a known id is not found or an unknown one is. */
function timed(ids: string[], known: boolean, find: (id: string) => boolean): number {
  const us: number[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    const found = find(id);
    us.push((performance.now() - t0) * 1000);
    if (known !== found) throw new Error(`bench:log: id ${id} ${known ? 'not found' : 'found'}`);
  }
  return median(us);
}

async function run(kind: IdKind): Promise<KindResult> {
  const path = join(dir, `${kind}.db`);
  const writer = new LogWriter(path);
  const idOf = idSource(kind);
  let at = 0;
  const firstIds: string[] = [];
  const request = () => {
    const ds = Array.from({ length: REQUEST }, (_, k) => { const d = scored[(at + k) % POOL]; return { ...d, id: idOf(d) }; });
    if (firstIds.length === 0) firstIds.push(...ds.slice(0, LOOKUPS).map((d) => d.id));
    at += REQUEST;
    return payload(ds);
  };
  const steps: Step[] = [];
  let decisions = 0;
  try {
    while (decisions < TOTAL) {
      const ms: number[] = [];
      for (let c = 0; c < STEP && decisions < TOTAL; c++) {
        const group = Array.from({ length: GROUP }, request);
        const t0 = performance.now();
        writer.commit(group);
        ms.push(performance.now() - t0);
        decisions += PER_COMMIT;
      }
      steps.push({ decisions, commitMs: median(ms), bytes: fileBytes(path) + fileBytes(`${path}-wal`) });
      progress(`${kind}: ${fmt(decisions)} decisions, commit of ${fmt(PER_COMMIT)} ${median(ms).toFixed(1)} ms`);
    }
    // lone requests: one decision each, a pause between them (as single requests arrive)
    const single: number[] = [];
    const lastIds: string[] = [];
    for (let i = 0; i < SINGLES; i++) {
      const d = scored[(at + i) % POOL];
      const id = idOf(d);
      lastIds.push(id);
      const p = payload([{ ...d, id }]);
      const t0 = performance.now();
      writer.commit([p]);
      single.push(performance.now() - t0);
      if (i % 2 === 1) await new Promise((r) => setTimeout(r, 1));
    }
    const db = openStore(path);
    try {
      const reader = new DecisionLogReader(db);
      const three = (find: (id: string) => boolean): Lookups => ({
        first: timed(firstIds, true, find), last: timed(lastIds.slice(-LOOKUPS), true, find), unknown: timed(firstIds.map((id) => `${id}-unknown`), false, find),
      });
      const latest = three((id) => reader.latest(id) !== undefined);
      const all = three((id) => reader.seqs(id).length > 0);
      return { steps, single: { p50: quantile(single, 0.5), p99: quantile(single, 0.99), max: Math.max(...single) }, latest, all };
    } finally {
      db.close();
    }
  } finally {
    writer.close();
    for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  }
}

const results = new Map<IdKind, KindResult>();
try {
  for (const kind of KINDS) results.set(kind, await run(kind));
} finally {
  if (values.dir === undefined) rmSync(dir, { recursive: true, force: true });
}

out('# Decision log benchmark');
out();
out(`${new Date().toISOString()} · Node ${process.version} · ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}${QUICK ? ' · quick mode' : ''}`);
out();
out(`\`LogWriter.commit\` (the writer thread's call, here on the main thread) of ${GROUP} requests × ${fmt(REQUEST)} decisions, the payloads built by \`scoreWire\` with the log on, \`synchronous = FULL\` in WAL mode: median of ${STEP} commits per step of the log's size. "vs increasing": the commit's time over that of increasing ids at the same size.`);
out();
const base = results.get('increasing')!;
out(`| decisions in the log | ${KINDS.map((k) => `${k} ids: ms per commit (µs per decision)`).join(' | ')} | ${KINDS.filter((k) => k !== 'increasing').map((k) => `${k} vs increasing`).join(' | ')} | store MB (${KINDS.join(' / ')}) |`);
out(`|${['', ...KINDS, ...KINDS.filter((k) => k !== 'increasing'), ''].map(() => '---').join('|')}|`);
base.steps.forEach((s, i) => {
  const cells = KINDS.map((k) => { const x = results.get(k)!.steps[i]; return `${x.commitMs.toFixed(1)} (${((x.commitMs * 1000) / PER_COMMIT).toFixed(2)})`; });
  const ratios = KINDS.filter((k) => k !== 'increasing').map((k) => `${(results.get(k)!.steps[i].commitMs / s.commitMs).toFixed(2)}x`);
  const mb = KINDS.map((k) => (results.get(k)!.steps[i].bytes / 1e6).toFixed(0)).join(' / ');
  out(`| ${fmt(s.decisions)} | ${cells.join(' | ')} | ${ratios.join(' | ')} | ${mb} |`);
});
out();
out(`Single-decision commits at the end of each log (${fmt(SINGLES)} commits, one fresh id of the kind each, a 1 ms pause after every second one):`);
out();
out('| ids | p50 ms | p99 ms | max ms |');
out('|---|---|---|---|');
for (const k of KINDS) { const s = results.get(k)!.single; out(`| ${k} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.max.toFixed(2)} |`); }
out();
out(`Finding an id's decisions at the end, on a connection of its own, median µs of ${fmt(LOOKUPS)} ids each: ids of the first request, of the last single commits, and ids never decided. \`latest\` is what recording an examination result does (the latest decision, with its row decoded); \`seqs\` finds every decision of the id (\`GET /v1/decisions/<id>\`, \`feedback show\`).`);
out();
out('| ids | latest: first | latest: last | latest: unknown | seqs: first | seqs: last | seqs: unknown |');
out('|---|---|---|---|---|---|---|');
for (const k of KINDS) {
  const { latest: l, all: a } = results.get(k)!;
  out(`| ${k} | ${[l.first, l.last, l.unknown, a.first, a.last, a.unknown].map((x) => x.toFixed(1)).join(' | ')} |`);
}
out();
if (!QUICK) {
  writeFileSync(join(packageRoot(), 'bench', 'LOG-RESULTS.md'), lines.join('\n') + '\n');
  progress('wrote bench/LOG-RESULTS.md');
}
