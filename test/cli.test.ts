/**
 * The `selectivity` CLI, run in-process through main(argv) with --threads 0
 * (no worker pool, so no dist/ needed). Output to process.stdout/stderr is
 * captured by replacing their write methods for the duration of each call.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers.js';
import { CHANNELS } from '../src/model/channels.js';
import { FIELDS } from '../src/model/schema.js';
import { packageRoot } from '../src/paths.js';
import { SCHEMA_VERSION } from '../src/store/sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = runCli;

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');

// 12 declarations of one HS6 × origin group (peer groups are built from the file
// itself); row 7 has a bad HS code, row 10 is strongly under-valued.
const HEADER = 'id,date,office,importer,hs,origin,customsValue,netMass,quantity,fraud';
const ROWS = Array.from({ length: 12 }, (_, i) => {
  const mass = 100 + 10 * i;
  const unit = i === 9 ? 1 : 30 * (1 + 0.02 * (i - 6));
  const hs = i === 6 ? '85A712' : '851712';
  return `C${i + 1},2025-03-0${1 + (i % 9)},OF1,IMP${i % 3},${hs},CN,${(unit * mass).toFixed(2)},${mass},10,${i === 9 ? 1 : 0}`;
});
const csv = join(dir, 'decl.csv');
writeFileSync(csv, [HEADER, ...ROWS].join('\n') + '\n');

describe('selectivity score', () => {
  it('refuses --out or --errors that is the input or the other output, and leaves the input whole', async () => {
    const before = readFileSync(csv, 'utf8');
    for (const args of [['--out', csv], ['--errors', csv], ['--out', join(dir, '.', 'decl.csv')], ['--out', join(dir, 'same.ndjson'), '--errors', join(dir, 'same.ndjson')]]) {
      const r = await run(['score', csv, '--threads', '0', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/SEL_ERR_OPTION_INVALID: --(out|errors) .* is the (input file|--out file)/);
    }
    expect(readFileSync(csv, 'utf8')).toBe(before);
    expect(existsSync(join(dir, 'same.ndjson'))).toBe(false);
  });

  it('puts --out in place only once the run completes: a failed run leaves the earlier file as it was, and no temporary file', async () => {
    const out = join(dir, 'kept.ndjson');
    expect((await run(['score', csv, '--threads', '0', '--out', out, '--random-rate', '0'])).code).toBe(0);
    const earlier = readFileSync(out, 'utf8');
    expect(lines(out)).toHaveLength(11);
    const headless = join(dir, 'headless.csv');
    writeFileSync(headless, '');
    const r = await run(['score', headless, '--threads', '0', '--out', out, '--errors', join(dir, 'kept-errors.ndjson')]);
    expect(r.code).toBe(2);
    expect(readFileSync(out, 'utf8')).toBe(earlier);
    expect(existsSync(join(dir, 'kept-errors.ndjson'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('scores with the profiles in force at --at (default now): a profile outside its window is left out and counted, as the service would', async () => {
    const profiles = join(dir, 'windows.json');
    writeFileSync(profiles, JSON.stringify({ profiles: [
      { id: 'EXPIRED', weight: 5, counterMeasure: { channel: 'red' }, conditions: { hs: ['85'] }, activeFrom: '2020-01-01', activeUntil: '2020-01-02' },
      { id: 'FUTURE', weight: 5, counterMeasure: { channel: 'red' }, conditions: { hs: ['85'] }, activeFrom: '2099-01-01' },
    ] }));
    const run1 = async (...extra: string[]) => {
      const out = join(dir, 'windows.ndjson');
      const r = await run(['score', csv, '--threads', '0', '--profiles', profiles, '--random-rate', '0', '--out', out, '--json', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { summary: JSON.parse(r.stdout), decisions: lines(out).map((l) => JSON.parse(l)) };
    };
    const now = await run1();
    expect(now.summary).toMatchObject({ profiles: 0, profilesOutsideWindow: 2 });
    expect(now.decisions.some((d) => d.reasons.some((x: { code: string }) => x.code === 'PROFILE'))).toBe(false);
    const then = await run1('--at', '2020-01-01T12:00:00Z');
    expect(then.summary).toMatchObject({ profiles: 1, profilesOutsideWindow: 1, at: '2020-01-01T12:00:00.000Z' });
    expect(then.decisions.every((d) => d.channel === 'red' && d.reasons.some((x: { code: string; profile?: string }) => x.code === 'PROFILE' && x.profile === 'EXPIRED'))).toBe(true);
    expect((await run1('--at', '2099-01-01')).summary).toMatchObject({ profiles: 1, profilesOutsideWindow: 1 });
    for (const bad of ['2026-02-30', 'yesterday', '2026-13-01T00:00:00Z']) {
      const r = await run(['score', csv, '--threads', '0', '--at', bad]);
      expect(r.code, bad).toBe(2);
      expect(r.stderr, bad).toContain('SEL_ERR_OPTION_INVALID: --at');
    }
  });

  it('writes a pass-through column named as a decision field as input.<name>: the decision keeps its own channel and score', async () => {
    const labelled = join(dir, 'labelled.csv');
    writeFileSync(labelled, [`${HEADER},channel,score`, ...ROWS.map((r) => `${r},green,0`)].join('\n') + '\n');
    const profiles = join(dir, 'all-cn.json');
    writeFileSync(profiles, JSON.stringify({ profiles: [{ id: 'ALL-CN', weight: 10, conditions: { origin: ['CN'] }, counterMeasure: { channel: 'red' } }] }));
    const nd = join(dir, 'labelled.ndjson'), cs = join(dir, 'labelled-out.csv');
    expect((await run(['score', labelled, '--threads', '0', '--profiles', profiles, '--random-rate', '0', '--out', nd])).code).toBe(0);
    for (const d of lines(nd).map((l) => JSON.parse(l))) expect(d).toMatchObject({ channel: 'red', score: expect.any(Number), 'input.channel': 'green', 'input.score': '0', fraud: expect.any(String) });
    expect((await run(['score', labelled, '--threads', '0', '--profiles', profiles, '--random-rate', '0', '--out', cs])).code).toBe(0);
    const [head, first] = lines(cs);
    expect(head).toBe('id,channel,score,control_group,ruleset_version,reasons,fraud,input.channel,input.score');
    expect(first.split(',').slice(1, 2)).toEqual(['red']);
    expect(first.split(',').slice(-2)).toEqual(['green', '0']);
  });

  it('reports the invalid row and writes one decision per valid row to --out (NDJSON)', async () => {
    const out = join(dir, 'out.ndjson');
    const errs = join(dir, 'errors.ndjson');
    const r = await run(['score', csv, '--threads', '0', '--out', out, '--errors', errs, '--random-rate', '0', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ file: csv, rows: 12, scored: 11, invalid: 1, controlGroup: 0, profiles: 0 });
    expect(summary.firstErrors).toHaveLength(1);
    expect(summary.firstErrors[0]).toMatchObject({ line: 8, index: 6, id: 'C7', code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'hs', got: '85A712' });
    expect(CHANNELS.reduce((s: number, c) => s + summary.channels[c], 0)).toBe(11);
    expect(summary.peerGroups).toEqual({ 'hs6,origin': 1, hs6: 1, hs4: 1, hs2: 1 });

    const decisions = lines(out).map((l) => JSON.parse(l));
    expect(decisions).toHaveLength(11);
    expect(decisions.map((d) => d.id)).toEqual(ROWS.map((_, i) => `C${i + 1}`).filter((id) => id !== 'C7'));
    for (const d of decisions) {
      expect(Object.keys(d).sort()).toEqual(['channel', 'controlGroup', 'fraud', 'id', 'reasons', 'rulesetVersion', 'score']);
      expect(CHANNELS).toContain(d.channel);
      expect(typeof d.score).toBe('number');
      expect(d.rulesetVersion).toBe(summary.rulesetVersion);
      expect(Array.isArray(d.reasons)).toBe(true);
      expect(d.controlGroup).toBe(false);
    }
    // the label column is passed through as text; the under-valued row is flagged
    const c10 = decisions.find((d) => d.id === 'C10');
    expect(c10.fraud).toBe('1');
    expect(c10.channel).toBe('red');
    expect(c10.reasons).toContainEqual(expect.objectContaining({ code: 'DEVIATION', feature: 'unitValue', direction: 'under', peerLevel: 'hs6,origin' }));
    expect(decisions.filter((d) => d.channel !== 'green').map((d) => d.id)).toEqual(['C10']);

    const bad = lines(errs).map((l) => JSON.parse(l));
    expect(bad).toEqual([expect.objectContaining({ line: 8, id: 'C7', code: 'SEL_ERR_DECL_FIELD_FORMAT', field: 'hs' })]);
  });

  it('counts a record with several bad fields once', async () => {
    const two = join(dir, 'two-bad.csv');
    writeFileSync(two, [HEADER, ...ROWS.slice(0, 6), 'C99,2025-13-40,OF1,IMP0,12,CN,-5,100,10,0'].join('\n') + '\n');
    const errs = join(dir, 'two-bad-errors.ndjson');
    const r = await run(['score', two, '--threads', '0', '--out', join(dir, 'two-bad.ndjson'), '--errors', errs, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ rows: 7, scored: 6, invalid: 1 });
    expect(lines(errs).length).toBeGreaterThanOrEqual(3); // date, hs and customsValue each reported
  });

  it('prints a readable summary without --json, naming the invalid line', async () => {
    const out = join(dir, 'out2.ndjson');
    const r = await run(['score', csv, '--threads', '0', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('12 declarations read, 11 scored, 1 invalid');
    expect(r.stdout).toMatch(/invalid line 8 \(C7\): SEL_ERR_DECL_FIELD_FORMAT/);
    expect(lines(out)).toHaveLength(11);
  });

  it('with a model: a CSV reason of a combination keeps its value in one reason (× between the parts), and --misclassification 0 turns the model\'s signal off', async () => {
    const examples = join(fileURLToPath(new URL('..', import.meta.url)), 'examples', 'declarations.csv');
    const model = join(dir, 'm', 'model.json');
    expect((await runCli(['train', '--train', examples, '--label', 'fraud', '--out', model])).code).toBe(0);
    const score = async (extra: string[]) => {
      const out = join(dir, 'm', `x${extra.length}.csv`);
      const r = await runCli(['score', examples, '--model', model, '--peers', join(dir, 'm', 'model.peers.msgpack'), '--out', out, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return readFileSync(out, 'utf8');
    };
    const withModel = await score([]);
    const combined = withModel.match(/HISTORY:[a-z0-9]+×[a-z0-9]+=[^:|,]+/g) ?? [];
    expect(combined.length).toBeGreaterThan(0);
    for (const c of combined) expect(c).toMatch(/=[^|]+×[^|]+$/); // 020830×CN, not 020830 then a reason "CN:…"
    // every |-separated piece of a reasons cell is a whole reason
    const codes = /^(PROFILE|DEVIATION|SCORE_THRESHOLD|COUNTER_MEASURE|RANDOM_SELECTION|KEYWORD|AEO|HISTORY|MISCLASSIFICATION):/;
    for (const row of withModel.trim().split('\n').slice(1)) {
      // the sixth cell, quoted when it holds a comma (a peer level such as hs6,origin)
      const m = /^(?:[^,]*,){5}("(?:[^"]|"")*"|[^,]*)/.exec(row)!;
      const cell = m[1].startsWith('"') ? m[1].slice(1, -1).replaceAll('""', '"') : m[1];
      if (cell) for (const piece of cell.split('|')) expect(piece, row).toMatch(codes);
    }
    expect(withModel).toContain('MISCLASSIFICATION:'); // the model learnt a weight for it
    expect(await score(['--misclassification', '0'])).not.toContain('MISCLASSIFICATION:');
    // the model names the snapshot it was trained against: scored against another one, a warning (and the scoring goes on)
    const half = join(dir, 'm', 'half.csv');
    const text = readFileSync(examples, 'utf8').trim().split('\n');
    writeFileSync(half, `${text.slice(0, 1 + Math.floor((text.length - 1) / 2)).join('\n')}\n`);
    expect((await runCli(['train', '--train', half, '--label', 'fraud', '--out', join(dir, 'm', 'other.json')])).code).toBe(0);
    const matching = await runCli(['score', examples, '--model', model, '--peers', join(dir, 'm', 'model.peers.msgpack'), '--out', join(dir, 'm', 'same.csv')]);
    expect(matching.stderr).not.toContain('warning');
    const other = await runCli(['score', examples, '--model', model, '--peers', join(dir, 'm', 'other.peers.msgpack'), '--out', join(dir, 'm', 'other.csv')]);
    expect(other.code, other.stderr).toBe(0);
    expect(other.stderr).toMatch(/warning: the model .*model\.json was trained against peer snapshot \S+, and --peers .*other\.peers\.msgpack holds \S+/);
  });

  it('writes CSV decisions when --out ends in .csv', async () => {
    const out = join(dir, 'out.csv');
    const r = await run(['score', csv, '--threads', '0', '--out', out, '--random-rate', '0']);
    expect(r.code).toBe(0);
    const rows = lines(out);
    expect(rows).toHaveLength(12);
    expect(rows[0]).toBe('id,channel,score,control_group,ruleset_version,reasons,fraud');
    expect(rows.find((l) => l.startsWith('C10,'))).toMatch(/^C10,red,[\d.]+,0,[^,]+,.*DEVIATION:unitValue:under/);
    // a file with a header and no row: the CSV still has its header (it was an empty file)
    const headerOnly = join(dir, 'header-only.csv');
    writeFileSync(headerOnly, `${HEADER}\n`);
    expect((await run(['score', headerOnly, '--threads', '0', '--out', out])).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('id,channel,score,control_group,ruleset_version,reasons\n');
  });

  it.each([
    [['--threads=-1'], 'threads'],
    [['--threads', 'two'], 'threads'],
    [['--random-rate', '2'], 'random-rate'],
    [['--random-rate', 'abc'], 'random-rate'],
    [['--min-group-size', '0'], 'min-group-size'],
    [['--batch-size', '1.5'], 'batch-size'],
  ])('a bad option value %j gives SEL_ERR_OPTION_INVALID and exit code 2', async (args, field) => {
    const out = join(dir, 'never.ndjson');
    const r = await run(['score', csv, '--out', out, ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect(r.stderr).toContain(`"field":"${field}"`);
    expect(existsSync(out)).toBe(false);
  });

  it('an unknown option is refused with a non-zero exit code naming the option', async () => {
    const r = await run(['score', csv, '--threads', '0', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--bogus');
    expect(r.stdout).toBe('');
  });

  // BUG: `score` lets node:util parseArgs' TypeError (ERR_PARSE_ARGS_UNKNOWN_OPTION)
  // through to main(), which prints it without a SEL_ERR_* code, whereas
  // `generate` maps the same error to SEL_ERR_OPTION_INVALID with details.field.
  it('an unknown score option is reported as SEL_ERR_OPTION_INVALID (as generate does)', async () => {
    const r = await run(['score', csv, '--threads', '0', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect(r.stderr).toContain('"field":"bogus"');
  });

  it('needs exactly one input file; a missing file gives SEL_ERR_FILE_NOT_FOUND', async () => {
    const none = await run(['score', '--threads', '0']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('SEL_ERR_OPTION_INVALID');
    const two = await run(['score', csv, csv, '--threads', '0']);
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('SEL_ERR_OPTION_INVALID');
    const missing = await run(['score', join(dir, 'nope.csv'), '--threads', '0']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
  });

  it('an invalid --by peer level gives SEL_ERR_PEERS_INVALID', async () => {
    const r = await run(['score', csv, '--threads', '0', '--by', 'hs6,origin', '--by', 'hs3', '--out', join(dir, 'never.ndjson')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SEL_ERR_PEERS_INVALID');
    expect(r.stderr).toContain('"field":"levels"');
  });

  it('--by sets the peer hierarchy reported in the summary', async () => {
    const r = await run(['score', csv, '--threads', '0', '--by', 'hs4', '--by', 'origin', '--out', join(dir, 'by.ndjson'), '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).peerGroups).toEqual({ hs4: 1, origin: 1 });
  });

  // BUG: an --out (or --errors) path in a directory that does not exist makes the
  // write stream emit an unhandled 'error' event: the process dies with a Node
  // stack trace (exit 1) instead of a named SEL_ERR_* error and exit code 2.
  // Run as a child process (built CLI, dist/ from `npm run build`) because the
  // crash would take the test worker down.
  it('an --out path in a missing directory gives a named error, not a crash', () => {
    const bin = fileURLToPath(new URL('../bin/selectivity.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, 'score', csv, '--threads', '0', '--out', join(dir, 'no-such-dir', 'out.ndjson')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).not.toContain('Unhandled');
    expect(r.stderr).toMatch(/SEL_ERR_[A-Z_]+/);
    expect(r.status).toBe(2);
  });

  // node --max-old-space-size=… (or --expose-gc, --stack-size): the pools passed this process's options to their
  // workers, and Node refuses a worker given V8 or whole-process options (ERR_WORKER_INVALID_EXEC_ARGV)
  it('scores on worker threads when node was started with V8 and process options', () => {
    const bin = fileURLToPath(new URL('../bin/selectivity.js', import.meta.url));
    const out = join(dir, 'v8-flags.ndjson');
    const r = spawnSync(process.execPath, ['--max-old-space-size=2048', '--expose-gc', '--stack-size=900', bin, 'score', csv, '--threads', '2', '--out', out], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toContain('ERR_WORKER_INVALID_EXEC_ARGV');
    expect(r.status).toBe(0);
    // the same decisions as in process
    const plain = join(dir, 'v8-flags-plain.ndjson');
    expect(spawnSync(process.execPath, [bin, 'score', csv, '--threads', '0', '--out', plain], { encoding: 'utf8', timeout: 60_000 }).status).toBe(0);
    expect(lines(out).length).toBeGreaterThan(5);
    expect(lines(out)).toEqual(lines(plain));
  });

  // `selectivity score big.csv | head`: the reader goes away while decisions are still being written.
  it('stops quietly with exit status 141 when the reader of its output goes away', async () => {
    const bin = fileURLToPath(new URL('../bin/selectivity.js', import.meta.url));
    const big = join(dir, 'big.csv');
    expect(spawnSync(process.execPath, [bin, 'generate', '--rows', '20000', '--out', big], { encoding: 'utf8', timeout: 60_000 }).status).toBe(0);
    for (const args of [['score', big, '--threads', '0'], ['generate', '--rows', '3', '--out', join(dir, 'small.csv')]]) {
      const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      if (args[0] === 'score') await new Promise((resolve) => child.stdout.once('data', resolve)); // the first decisions came, then the reader goes
      child.stdout.destroy();
      expect(await exited).toBe(141);
      expect(stderr).not.toMatch(/Unhandled|EPIPE|at /);
    }
  }, 60_000);

  it('loads --profiles and reports a bad profile file with its code', async () => {
    const profiles = join(dir, 'profiles.json');
    writeFileSync(profiles, JSON.stringify([{ id: 'IMP1-watch', weight: 0, counterMeasure: { channel: 'yellow' }, conditions: { importer: ['IMP1'] } }]));
    const out = join(dir, 'out3.ndjson');
    const r = await run(['score', csv, '--threads', '0', '--profiles', profiles, '--out', out, '--random-rate', '0', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).profiles).toBe(1);
    const decisions = lines(out).map((l) => JSON.parse(l));
    // C2, C5, C8, C11 have importer IMP1 (C10 is IMP0)
    expect(decisions.filter((d) => d.channel === 'yellow').map((d) => d.id)).toEqual(['C2', 'C5', 'C8', 'C11']);

    writeFileSync(profiles, JSON.stringify([{ id: 'x', weight: 'high', conditions: {} }]));
    const bad = await run(['score', csv, '--threads', '0', '--profiles', profiles]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SEL_ERR_PROFILE_INVALID');
  });
});

describe('outputs interrupted', () => {
  // the built CLI in a child process: the signal ends that process, not the test's
  it('generate stopped by SIGINT leaves no file that looks complete, nor its temporary file, and dies of the signal', async () => {
    const bin = fileURLToPath(new URL('../bin/selectivity.js', import.meta.url));
    const where = mkdtempSync(join(dir, 'sigint-'));
    const child = spawn(process.execPath, [bin, 'generate', '--rows', '5000000', '--out', join(where, 'big.csv')], { stdio: 'ignore' });
    const ended = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    // once it writes (its temporary file is there), stop it
    for (let t = 0; t < 600 && readdirSync(where).length === 0; t++) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(where)).toEqual([expect.stringMatching(/^\.big\.csv\.[a-z0-9-]+\.\d+\.[0-9a-f]+\.tmp$/)]);
    child.kill('SIGINT');
    expect(await ended).toEqual({ code: null, signal: 'SIGINT' });
    expect(readdirSync(where)).toEqual([]);
  }, 60_000);
});

describe('selectivity (dispatch)', () => {
  it('unknown command → exit 2 with help; no command → exit 1; --help → exit 0', async () => {
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const none = await run([]);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('Usage: selectivity');
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: selectivity');
    const scoreHelp = await run(['score', '--help']);
    expect(scoreHelp.code).toBe(0);
    expect(scoreHelp.stdout).toContain('--threads');
  });

  it('--version prints the package version and the store schema this engine writes', async () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V', 'version']) {
      const r = await run([flag]);
      expect(r.code, flag).toBe(0);
      expect(r.stdout).toBe(`selectivity ${pkg.version} (store schema ${SCHEMA_VERSION}, Node ${process.version})\n`);
    }
  });

  it.each(['history', 'peers', 'profiles', 'feedback', 'text'])('%s: no subcommand → exit 1 with its help; --help → exit 0; an unknown subcommand → exit 2', async (command) => {
    const none = await run([command]);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain(`selectivity ${command}`);
    const help = await run([command, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(none.stdout);
    const unknown = await run([command, 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('frobnicate');
  });
});

describe('selectivity generate', () => {
  it('--rows 200 --seed 3 writes a header and 200 rows with a fraud column, deterministically', async () => {
    const a = join(dir, 'gen-a.csv');
    const r = await run(['generate', '--rows', '200', '--seed', '3', '--out', a]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^generated 200 declarations, \d+ frauds/);
    const text = readFileSync(a, 'utf8');
    const rows = lines(a);
    expect(rows).toHaveLength(201);
    expect(text.split('\n')).toHaveLength(202); // final newline
    const header = rows[0].split(',');
    expect(header).toContain('fraud');
    expect(header.slice(0, FIELDS.length)).toEqual(FIELDS.map((f) => f.name));
    expect(header.slice(FIELDS.length)).toEqual(['fraud', 'fraud_type']);

    const b = join(dir, 'gen-b.csv');
    expect((await run(['generate', '--rows', '200', '--seed', '3', '--out', b])).code).toBe(0);
    expect(readFileSync(b, 'utf8')).toBe(text);
    const c = join(dir, 'gen-c.csv');
    expect((await run(['generate', '--rows', '200', '--seed', '4', '--out', c])).code).toBe(0);
    expect(readFileSync(c, 'utf8')).not.toBe(text);
  });

  it('its output can be scored end to end', async () => {
    const gen = join(dir, 'gen-a.csv');
    if (!existsSync(gen)) await run(['generate', '--rows', '200', '--seed', '3', '--out', gen]);
    const out = join(dir, 'gen-decisions.ndjson');
    const r = await run(['score', gen, '--threads', '0', '--out', out, '--json']);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ rows: 200, scored: 200, invalid: 0 });
    const decisions = lines(out).map((l) => JSON.parse(l));
    expect(decisions).toHaveLength(200);
    expect(decisions.every((d) => d.fraud === '0' || d.fraud === '1')).toBe(true);
    expect(decisions.filter((d) => d.controlGroup).length).toBe(summary.controlGroup);
  });

  it.each([
    [['--rows', '0', '--out', 'x.csv'], 'rows'],
    [['--out', 'x.csv'], 'rows'],
    [['--rows', '10'], 'out'],
    [['--rows', '10', '--out', 'x.csv', '--format', 'xml'], 'format'],
    [['--rows', '10', '--out', 'x.csv', '--bogus'], 'bogus'],
    [['--rows', '10', '--out', 'x.csv', '--undervaluation-rate', '0.9'], 'undervaluation-rate'],
  ])('bad options %j give SEL_ERR_OPTION_INVALID naming the option and exit code 2', async (args, field) => {
    const fixed = args.map((a) => (a === 'x.csv' ? join(dir, 'x.csv') : a));
    const r = await run(['generate', ...fixed]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect(r.stderr).toContain(`"field":"${field}"`);
    expect(existsSync(join(dir, 'x.csv'))).toBe(false);
  });
});
