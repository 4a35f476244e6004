import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../src/evaluate/evaluate.js';
import { formatEvaluation } from '../src/cli/evaluate.js';
import { topKMetrics } from '../src/evaluate/metrics.js';
import { writeSynthetic } from '../src/generate/synthetic.js';
import { referenceScore } from '../src/kernel/reference.js';
import { readDeclarations } from '../src/model/readers.js';
import { PeerTableBuilder } from '../src/peers/peer-groups.js';
import { createRuleset } from '../src/ruleset/ruleset.js';

const here = dirname(fileURLToPath(import.meta.url));
const KCS = join(here, 'fixtures', 'kcs-eval-sample.csv');
const dir = mkdtempSync(join(tmpdir(), 'sel-eval-'));
const trainFile = join(dir, 'train.csv');
const testFile = join(dir, 'test.csv');
const OPTS = { seed: 5, hsCodes: 40, fraudRate: { undervaluation: 0.04, riskyPair: 0.01, trader: 0.01 } };

beforeAll(async () => {
  // the same world (seed), two periods: 2025 trains, the first quarter of 2026 tests
  await writeSynthetic(trainFile, { ...OPTS, rows: 12000, startDate: '2025-01-01', days: 365 });
  await writeSynthetic(testFile, { ...OPTS, rows: 4000, startDate: '2026-01-01', days: 90 });
});

describe('evaluate', () => {
  it('measures the ranking of a model trained on the training file only, as an independent recomputation does', async () => {
    const r = await evaluate({ train: [trainFile], test: testFile, label: 'fraud', threads: 1 });
    // recompute: peers from the training file, reference scorer on the test file, metrics
    const b = new PeerTableBuilder();
    for await (const c of readDeclarations(trainFile)) b.add(c.batch);
    const ruleset = createRuleset({ peers: b.finish() });
    const scores: number[] = [], labels: number[] = [], revenue: number[] = [];
    for await (const c of readDeclarations(testFile)) {
      const ref = referenceScore(ruleset, c.batch);
      for (let i = 0; i < c.batch.size; i++) {
        scores.push(ref.score[i]);
        labels.push(c.passThrough.fraud[i] === '1' ? 1 : 0);
        revenue.push((c.batch.numeric.customsValue[i] * c.batch.numeric.taxRate[i]) / 100);
      }
    }
    const want = topKMetrics(Float64Array.from(scores), Uint8Array.from(labels), Float64Array.from(revenue), [0.01, 0.02, 0.05, 0.1]);
    expect(r.n).toBe(4000);
    expect(r.positives).toBe(want.positives);
    expect(r.train.rows).toBe(12000);
    r.cuts.forEach((c, i) => {
      expect(c.precision).toBeCloseTo(want.cuts[i].precision, 9);
      expect(c.recall).toBeCloseTo(want.cuts[i].recall, 9);
      expect(c.revenueShare).toBeCloseTo(want.cuts[i].revenueShare, 9);
    });
    // peer deviation finds the planted under-valuations well above random selection
    expect(r.cuts[0].precision).toBeGreaterThan(4 * r.random[0].precision);
    expect(r.random[0].precision).toBeCloseTo(r.prevalence, 12);
    expect(r.train.lastDate! < r.test.firstDate!).toBe(true);
  });

  it('reports, and warns of, a test set that leaks into training: ids among the training rows, dates not after them', async () => {
    const clean = await evaluate({ train: [trainFile], test: testFile, label: 'fraud', threads: 0 });
    expect(clean.test.overlap.notAfterTraining).toBe(0);
    // the test file trained on as well: every test declaration is a training row
    const leaky = await evaluate({ train: [trainFile, testFile], test: testFile, label: 'fraud', threads: 0 });
    expect(leaky.test.overlap).toEqual({ sameIds: 4000, notAfterTraining: 4000 });
    expect(formatEvaluation(leaky)).toMatch(/warning: of the 4,000 test declarations, 4,000 have an id that is also among the training rows, and 4,000 are dated on or before the last training date/);
    expect(formatEvaluation(clean)).not.toMatch(/dated on or before/);
  });

  it('prints what is not a figure as "—" and k = f·N inspections with its fraction', async () => {
    // no value of the label means fraud: no recall to speak of
    const none = await evaluate({ train: [trainFile], test: testFile, label: 'fraud', positives: ['never'], fractions: [0.0123, 0.05], threads: 0 });
    expect(none.positives).toBe(0);
    const text = formatEvaluation(none);
    const row = text.split('\n').find((l) => l.trimStart().startsWith('1 %'))!;
    expect(row).toMatch(/ 49\.2 /); // 0.0123 × 4,000
    // precision is a figure (0 %: 49.2 inspected, none a fraud); recall and revenue captured are not (0.0 % before)
    expect(row.match(/— \(—\)/g)).toHaveLength(2);
  });

  it('splits a single file by date: earlier rows train, later rows test', async () => {
    const r = await evaluate({ file: trainFile, split: 0.75, label: 'fraud', threads: 0 });
    expect(r.train.rows + r.n).toBe(12000);
    expect(r.splitDate).not.toBeNull();
    expect(r.train.lastDate! < r.splitDate!).toBe(true);
    expect(r.test.firstDate).toBe(r.splitDate);
    expect(r.n / 12000).toBeGreaterThan(0.2);
    expect(r.n / 12000).toBeLessThan(0.3);
    // the test side's rows, not the whole file's; an invalid record (no date to place it by) is counted once
    expect(r.test.rows).toBe(r.n);
    const withBad = join(dir, 'with-bad.csv');
    writeFileSync(withBad, `${readFileSync(trainFile, 'utf8').trimEnd()}\nBAD-1,not-a-date\n`);
    const b = await evaluate({ file: withBad, split: 0.75, label: 'fraud', threads: 0 });
    expect(b.train.invalid + b.test.invalid).toBe(1);
    expect(b.test.rows).toBe(b.n);
  });

  it('runs on the KCS sample with the kcs preset: 2020 trains, 2021 Q1 tests', async () => {
    const r = await evaluate({ file: KCS, split: 1495 / 2003, columns: 'kcs', label: 'Fraud', threads: 0 });
    const lines = readFileSync(KCS, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    const test = lines.filter((c) => c[1] >= r.splitDate!);
    expect(r.splitDate! >= '2020-12-01').toBe(true);
    expect(r.n).toBe(test.length);
    expect(r.positives).toBe(test.filter((c) => c[20] === '1').length);
    expect(r.cuts.map((c) => c.fraction)).toEqual([0.01, 0.02, 0.05, 0.1]);
    for (const c of r.cuts) {
      expect(c.precision).toBeGreaterThanOrEqual(0);
      expect(c.precision).toBeLessThanOrEqual(1);
    }
    // revenue as an expression over pass-through columns works too
    const q = await evaluate({ file: KCS, columns: 'kcs', label: 'Critical Fraud', positives: ['2'], revenue: 'customsValue * taxRate / 100 * ("Critical Fraud" + 1)', threads: 0 });
    expect(q.positives).toBe(lines.filter((c) => c[1] >= q.splitDate! && c[21] === '2').length);
  });

  it('refuses bad requests with a named error, naming the field', async () => {
    // a label column the CSV lacks is a header error naming the column
    await expect(evaluate({ train: [trainFile], test: testFile, label: 'nope' })).rejects.toMatchObject({ code: 'SEL_ERR_CSV_HEADER', details: { column: 'nope' } });
    await expect(evaluate({ test: testFile, label: 'fraud' })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'train' } });
    await expect(evaluate({ file: trainFile, test: testFile, label: 'fraud' })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'file' } });
    await expect(evaluate({ file: trainFile, split: 1.5, label: 'fraud' })).rejects.toMatchObject({ details: { field: 'split' } });
    await expect(evaluate({ train: [trainFile], test: testFile, label: 'fraud', revenue: 'customsValue * dutyRate', threads: 0 })).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'revenue' } });
    await expect(evaluate({ train: [join(dir, 'missing.csv')], test: testFile, label: 'fraud' })).rejects.toMatchObject({ code: 'SEL_ERR_FILE_NOT_FOUND' });
  });
});
