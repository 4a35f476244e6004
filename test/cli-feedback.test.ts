/**
 * `selectivity feedback import|show`, in-process through main(argv), on a
 * store whose decision log was written by the log writer thread.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
import { profileStats } from '../src/profiles/effectiveness.js';
import { DecisionLog } from '../src/feedback/decision-log.js';
import { encodeLogRows } from '../src/feedback/log-rows.js';
import { main } from '../src/cli/main.js';
import { runCli } from './helpers.js';
import type { Declaration } from '../src/model/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-cli-feedback-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MEAT: Declaration = { id: 'D-MEAT-1', date: '2026-11-23', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN', customsValue: 1200, netMass: 900 };

describe('selectivity feedback (CLI)', () => {
  it('imports CSV and NDJSON, reporting accepted, duplicates and rejected lines with codes; shows a declaration', async () => {
    const dataDir = join(dir, 'cli');
    const path = join(dataDir, STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path });
    await log.append(encodeLogRows(['C1', 'C2', 'C3'].map((id) => ({ id, channel: 'red', score: 5, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [{ code: 'PROFILE', profile: 'CLI-P', version: 1, weight: 5 }] })), ['C1', 'C2', 'C3'].map((id) => ({ ...MEAT, id })), 'aaaaaaaaaaaaaaaa'));
    await log.close();
    const csv = join(dir, 'results.csv');
    writeFileSync(csv, [
      'declarationId,date,channel,inspected,outcome,irregularity,revenueRecovered,notes',
      'C1,2026-11-20,red,true,discrepancy,undervaluation,120.5,"value, re-assessed"',
      'C2,2026-11-20,red,maybe,no-discrepancy,,,',
      'C9,2026-11-20,red,true,no-discrepancy,,,',
      'C3,2026-11-20,red,true,no-discrepancy,,0,',
    ].join('\n'));
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let code: number, code2: number, code3: number;
    try {
      code = await main(['feedback', 'import', csv, '--data-dir', dataDir, '--json']);
      const nd = join(dir, 'results.ndjson');
      writeFileSync(nd, `${JSON.stringify({ declarationId: 'C1', date: '2026-11-20', channel: 'red', inspected: true, outcome: 'discrepancy', irregularity: 'undervaluation', revenueRecovered: 120.5, notes: 'value, re-assessed' })}\n{not json\n`);
      code2 = await main(['feedback', 'import', nd, '--data-dir', dataDir, '--json']);
      code3 = await main(['feedback', 'show', 'C1', '--data-dir', dataDir]);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(2);
    const first = JSON.parse(out[0]);
    expect(first.accepted).toBe(2);
    expect(first.rejected.map((r: { line: number; code: string; field: string }) => [r.line, r.code, r.field])).toEqual([[3, 'SEL_ERR_FEEDBACK_INVALID', 'inspected'], [4, 'SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION', 'declarationId']]);
    expect(code2).toBe(2);
    const second = JSON.parse(out[1]);
    expect(second.duplicates).toBe(1);
    expect(second.rejected.map((r: { line: number }) => r.line)).toEqual([2]);
    expect(code3).toBe(0);
    expect(out[2]).toMatch(/discrepancy \(undervaluation\), revenue recovered 120.5/);
    const db = openStore(path);
    try {
      const st = profileStats(db, { from: '2026-11-01', to: '2026-11-30' });
      expect(st.profiles.find((p) => p.id === 'CLI-P')).toMatchObject({ inspected: 2, nonCompliant: 1, hitRate: 0.5, revenueRecovered: 120.5 });
    } finally {
      db.close();
    }
  });

  it('reports a quote left open on the last lines as one rejected line and records the rest; skips a byte-order mark', async () => {
    const dataDir = join(dir, 'quote');
    const path = join(dataDir, STORE_FILE);
    openStore(path).close();
    const ids = Array.from({ length: 1500 }, (_, i) => `Q${i + 1}`);
    const log = new DecisionLog({ storePath: path });
    await log.append(encodeLogRows(ids.map((id) => ({ id, channel: 'red', score: 5, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [] })), ids.map((id) => ({ ...MEAT, id })), 'aaaaaaaaaaaaaaaa'));
    await log.close();
    // 1,200 good lines (more than one transaction of 1,000), then a quote never closed
    const csv = join(dir, 'open-quote.csv');
    writeFileSync(csv, `\ufeffdeclarationId,date,channel,inspected,outcome,notes\n${ids.slice(0, 1200).map((id) => `${id},2026-11-24,red,true,no-discrepancy,ok\n`).join('')}Q1201,2026-11-24,red,true,no-discrepancy,"open\nQ1202,2026-11-24,red,true,no-discrepancy,ok\n`);
    const nd = join(dir, 'bom.ndjson');
    writeFileSync(nd, `\ufeff${JSON.stringify({ declarationId: 'Q1300', date: '2026-11-24', channel: 'red', inspected: true, outcome: 'discrepancy' })}\n`);
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let code: number, code2: number;
    try {
      code = await main(['feedback', 'import', csv, '--data-dir', dataDir, '--json']);
      code2 = await main(['feedback', 'import', nd, '--data-dir', dataDir, '--json']);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(2);
    const report = JSON.parse(out[0]);
    expect(report.accepted).toBe(1200);
    expect(report.rejected).toEqual([expect.objectContaining({ line: 1202, code: 'SEL_ERR_FEEDBACK_INVALID', message: expect.stringContaining('unterminated quoted field') })]);
    expect(code2).toBe(0);
    expect(JSON.parse(out[1]).accepted).toBe(1);
  });

  it('reads results.csv.gz and results.ndjson.gz as the files they hold; a .gz that is not gzip is SEL_ERR_FILE_FORMAT', async () => {
    const dataDir = join(dir, 'gz');
    const path = join(dataDir, STORE_FILE);
    openStore(path).close();
    const ids = ['G1', 'G2', 'G3'];
    const log = new DecisionLog({ storePath: path });
    await log.append(encodeLogRows(ids.map((id) => ({ id, channel: 'red', score: 5, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [] })), ids.map((id) => ({ ...MEAT, id })), 'aaaaaaaaaaaaaaaa'));
    await log.close();
    const csv = join(dir, 'results.csv.gz');
    writeFileSync(csv, gzipSync('declarationId,date,channel,inspected,outcome\nG1,2026-11-24,red,true,discrepancy\nG2,2026-11-24,red,true,no-discrepancy\n'));
    const nd = join(dir, 'results.ndjson.gz');
    writeFileSync(nd, gzipSync(`${JSON.stringify({ declarationId: 'G3', date: '2026-11-24', channel: 'red', inspected: true, outcome: 'seizure' })}\n`));
    const notGzip = join(dir, 'plain.csv.gz');
    writeFileSync(notGzip, 'declarationId,date,channel,inspected,outcome\n');
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
    let codes: number[];
    try {
      codes = [await main(['feedback', 'import', csv, '--data-dir', dataDir, '--json']), await main(['feedback', 'import', nd, '--data-dir', dataDir, '--json'])];
    } finally {
      process.stdout.write = write;
    }
    expect(codes).toEqual([0, 0]);
    expect(JSON.parse(out[0]).accepted).toBe(2);
    expect(JSON.parse(out[1]).accepted).toBe(1);
    const bad = await runCli(['feedback', 'import', notGzip, '--data-dir', dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SEL_ERR_FILE_FORMAT');
    expect(bad.stderr).toContain('is not a whole gzip file');
  });

  it('a gzip file cut short changes nothing: refused before the first result is recorded', async () => {
    const dataDir = join(dir, 'gz-cut');
    const path = join(dataDir, STORE_FILE);
    openStore(path).close();
    const ids = Array.from({ length: 5000 }, (_, i) => `T${i}`);
    const log = new DecisionLog({ storePath: path });
    await log.append(encodeLogRows(ids.map((id) => ({ id, channel: 'red', score: 5, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [] })), ids.map((id) => ({ ...MEAT, id })), 'aaaaaaaaaaaaaaaa'));
    await log.close();
    // random notes keep gzip from squeezing the file into a few bytes: the cut falls after thousands of lines
    const lines = ids.map((id, i) => JSON.stringify({ declarationId: id, date: '2026-11-26', channel: 'red', inspected: true, outcome: 'no-discrepancy', notes: `n${(i * 2654435761) % 1000003}` }));
    const whole = gzipSync(lines.join('\n') + '\n');
    const cut = join(dir, 'cut.ndjson.gz');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.8)));
    const r = await runCli(['feedback', 'import', cut, '--data-dir', dataDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SEL_ERR_FILE_FORMAT');
    const db = openStore(path);
    try {
      expect((db.prepare('SELECT count(*) AS n FROM feedback').get() as { n: number }).n).toBe(0);
    } finally {
      db.close();
    }
  });

  it('show and import need a store that exists: a mistyped --data-dir is SEL_ERR_FILE_NOT_FOUND and leaves no store behind', async () => {
    const csv = join(dir, 'one.csv');
    writeFileSync(csv, 'declarationId,date,channel,inspected,outcome\nX1,2026-11-24,red,true,discrepancy\n');
    for (const argv of [['feedback', 'show', 'X1'], ['feedback', 'import', csv]]) {
      const typo = join(dir, `typo-${argv[1]}`, 'deeper');
      const r = await runCli([...argv, '--data-dir', typo]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
      expect(existsSync(join(typo, STORE_FILE))).toBe(false);
    }
  });

  it('show: the latest 100 decisions of an id by default, --limit for another number (0: all), the id trimmed', async () => {
    const dataDir = join(dir, 'many');
    const path = join(dataDir, STORE_FILE);
    openStore(path).close();
    const log = new DecisionLog({ storePath: path });
    // one id decided 250 times, in 5 chunks
    for (let k = 0; k < 5; k++) {
      const ids = Array.from({ length: 50 }, () => 'SAME');
      await log.append(encodeLogRows(ids.map((id, i) => ({ id, channel: 'green', score: k * 50 + i, controlGroup: false, rulesetVersion: 'aaaaaaaaaaaaaaaa', reasons: [] })), ids.map((id) => ({ ...MEAT, id })), 'aaaaaaaaaaaaaaaa'));
    }
    await log.close();
    const scores = (json: string) => (JSON.parse(json) as { decisions: { score: number }[] }).decisions.map((d) => d.score);
    const byDefault = await runCli(['feedback', 'show', '  SAME ', '--data-dir', dataDir, '--json']);
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(scores(byDefault.stdout)).toEqual(Array.from({ length: 100 }, (_, i) => 150 + i));
    expect(JSON.parse(byDefault.stdout).decisionsTotal).toBe(250);
    expect(scores((await runCli(['feedback', 'show', 'SAME', '--data-dir', dataDir, '--json', '--limit', '3'])).stdout)).toEqual([247, 248, 249]);
    expect(scores((await runCli(['feedback', 'show', 'SAME', '--data-dir', dataDir, '--json', '--limit', '0'])).stdout)).toHaveLength(250);
    const text = await runCli(['feedback', 'show', 'SAME', '--data-dir', dataDir, '--limit', '2']);
    expect(text.stdout).toContain('decisions (the latest 2 of 250; --limit for more):');
    expect((await runCli(['feedback', 'show', 'SAME', '--data-dir', dataDir, '--limit', '-1'])).stderr).toContain('SEL_ERR_OPTION_INVALID');
  });
});
