import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseLabel, topKMetrics, type Cut } from '../src/evaluate/metrics.js';
import { compileExpression, MAX_EXPRESSION_DEPTH } from '../src/evaluate/expression.js';
import { isSelectivityError } from '../src/errors.js';

function run(scores: number[], labels: number[], revenue: number[], fractions: number[]) {
  return topKMetrics(Float64Array.from(scores), Uint8Array.from(labels), Float64Array.from(revenue), fractions);
}

function expectCut(cut: Cut, want: Partial<Cut>): void {
  for (const [key, value] of Object.entries(want)) {
    expect(cut[key as keyof Cut], key).toBeCloseTo(value as number, 12);
  }
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (isSelectivityError(e)) return e.code;
    throw e;
  }
  return undefined;
}

function errorOf(fn: () => unknown): { code: string; message: string; details: Record<string, unknown> } {
  try {
    fn();
  } catch (e) {
    if (isSelectivityError(e)) return { code: e.code, message: e.message, details: e.details };
    throw e;
  }
  throw new Error('expected an error');
}

describe('topKMetrics, hand-computed', () => {
  it('ranks by score descending, with no ties', () => {
    const r = run([0.5, 0.9, 0.6, 0.8, 0.7], [0, 1, 0, 0, 1], [10, 100, 20, 50, 30], [0.2, 0.4, 0.6, 1]);
    expect(r.n).toBe(5);
    expect(r.positives).toBe(2);
    expect(r.totalRevenue).toBe(130); // positives only
    expectCut(r.cuts[0], { fraction: 0.2, selected: 1, frauds: 1, precision: 1, recall: 0.5, revenueCaptured: 100, revenueShare: 100 / 130 });
    expectCut(r.cuts[1], { selected: 2, frauds: 1, precision: 0.5, recall: 0.5, revenueCaptured: 100 });
    expectCut(r.cuts[2], { selected: 3, frauds: 2, precision: 2 / 3, recall: 1, revenueCaptured: 130, revenueShare: 1 });
    expectCut(r.cuts[3], { selected: 5, frauds: 2, precision: 0.4, recall: 1, revenueCaptured: 130, revenueShare: 1 });
    expectCut(r.random[0], { selected: 1, frauds: 0.4, precision: 0.4, recall: 0.2, revenueCaptured: 26, revenueShare: 0.2 });
    expectCut(r.random[3], { selected: 5, frauds: 2, precision: 0.4, recall: 1, revenueCaptured: 130, revenueShare: 1 });
  });

  it('snaps k to an integer when f·N is one up to rounding', () => {
    const r = run([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], Array(10).fill(1), [0.3, 0.7]);
    expect(r.cuts[0].selected).toBe(3); // 0.3 · 10 = 3.0000000000000004
    expect(r.cuts[0].frauds).toBe(3);
    expect(r.cuts[1].selected).toBe(7);
  });

  it('splits a tie group straddling the cut pro rata', () => {
    // rank: 5 | 3 3 3 (2 positives, revenue 10 + 30) | 1 1
    const r = run([5, 3, 3, 3, 1, 1], [0, 1, 0, 1, 1, 0], [1000, 10, 20, 30, 40, 50], [0.5, 0.25, 4 / 6, 5 / 6]);
    expect(r.positives).toBe(3);
    expect(r.totalRevenue).toBe(80);
    // k = 3: 2 of the 3 tied → 2/3 · 2 positives, 2/3 · 40 revenue
    expectCut(r.cuts[0], { selected: 3, frauds: 4 / 3, precision: 4 / 9, recall: 4 / 9, revenueCaptured: 80 / 3, revenueShare: 1 / 3 });
    // k = 1.5 (fractional): half a declaration of the tie group of 3 → 1/6 of it
    expectCut(r.cuts[1], { selected: 1.5, frauds: 1 / 3, precision: 2 / 9, revenueCaptured: 20 / 3 });
    // k = 4: the whole tie group, exactly
    expect(r.cuts[2].frauds).toBe(2);
    expect(r.cuts[2].revenueCaptured).toBe(40);
    // k = 5: half of the last tie group (1 positive, revenue 40)
    expectCut(r.cuts[3], { selected: 5, frauds: 2.5, revenueCaptured: 60, revenueShare: 0.75 });
  });

  it('takes a share of the fractional last declaration', () => {
    const r = run([3, 2, 1], [1, 1, 0], [10, 20, 30], [0.5]);
    expectCut(r.cuts[0], { selected: 1.5, frauds: 1.5, precision: 1, recall: 0.75, revenueCaptured: 20, revenueShare: 2 / 3 });
  });

  it('fractional k of 1 % of 8,134 declarations', () => {
    const n = 8134;
    const scores = Array.from({ length: n }, (_, i) => n - i);
    const labels = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0));
    const r = run(scores, labels, Array(n).fill(1), [0.01]);
    // top 81.34: rows 0..80 hold 41 positives; row 81 is negative
    expectCut(r.cuts[0], { selected: 81.34, frauds: 41, precision: 41 / 81.34 });
  });

  it('all-equal scores reproduce the random baseline exactly', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.double({ min: 0, max: 1e6, noNaN: true })), { minLength: 1, maxLength: 50 }),
        fc.double({ min: 0, max: 1, noNaN: true }).filter((f) => f > 0),
        fc.constantFrom(0, 0.25, -3, NaN),
        (rows, f, score) => {
          const r = run(rows.map(() => score), rows.map(([l]) => (l ? 1 : 0)), rows.map(([, v]) => v), [f, 1]);
          expect(r.cuts).toEqual(r.random);
        },
      ),
    );
  });

  it('NaN scores rank last, tied with −Infinity; −0 ties with 0', () => {
    // rank: 2 (+) | 1 (−) | {NaN (+), −Inf (+)}
    const r = run([NaN, 1, -Infinity, 2], [1, 0, 1, 1], [1, 1, 1, 1], [0.25, 0.5, 0.75]);
    expect(r.cuts.map((c) => c.frauds)).toEqual([1, 1, 2]);
    expect(run([NaN, 0, 1], [1, 0, 0], [1, 1, 1], [2 / 3]).cuts[0].frauds).toBe(0);
    expect(run([-0, 0], [1, 0], [1, 1], [0.5]).cuts[0].frauds).toBe(0.5);
  });

  it('zero positives: recall and revenue share are 0', () => {
    const r = run([3, 2, 1], [0, 0, 0], [5, 5, 5], [0.5, 1]);
    expect(r.positives).toBe(0);
    expect(r.totalRevenue).toBe(0);
    for (const c of [...r.cuts, ...r.random]) {
      expect(c.frauds).toBe(0);
      expect(c.precision).toBe(0);
      expect(c.recall).toBe(0);
      expect(c.revenueCaptured).toBe(0);
      expect(c.revenueShare).toBe(0);
    }
  });

  it('counts revenue only for positives, and a non-finite revenue as 0', () => {
    const r = run([3, 2, 1], [1, 0, 1], [NaN, 1000, 7], [1 / 3, 1]);
    expect(r.totalRevenue).toBe(7);
    expect(r.cuts[0].revenueCaptured).toBe(0);
    expect(r.cuts[1].revenueCaptured).toBe(7);
    // a negative revenue (an expression such as customsValue * taxRate / 100 - 5000) counts as 0, as in training:
    // it gave -5 % "revenue captured" at the top 1 %
    const neg = run([3, 2, 1], [1, 1, 1], [-5000, 40, 60], [1 / 3, 1]);
    expect(neg.totalRevenue).toBe(100);
    expect(neg.cuts[0].revenueCaptured).toBe(0);
    expect(neg.cuts[1].revenueShare).toBe(1);
  });

  it('handles an empty set', () => {
    const r = run([], [], [], [0.5]);
    expect(r.n).toBe(0);
    expect(r.cuts[0]).toEqual({ fraction: 0.5, selected: 0, precision: 0, recall: 0, revenueCaptured: 0, revenueShare: 0, frauds: 0 });
  });

  it('validates its inputs with SEL_ERR_OPTION_INVALID', () => {
    const s = new Float64Array(3), l = new Uint8Array(3), v = new Float64Array(3);
    expect(codeOf(() => topKMetrics(s, new Uint8Array(2), v, [0.1]))).toBe('SEL_ERR_OPTION_INVALID');
    expect(codeOf(() => topKMetrics(s, l, new Float64Array(4), [0.1]))).toBe('SEL_ERR_OPTION_INVALID');
    for (const bad of [0, -0.1, 1.5, NaN, Infinity]) {
      expect(codeOf(() => topKMetrics(s, l, v, [0.1, bad]))).toBe('SEL_ERR_OPTION_INVALID');
    }
    expect(codeOf(() => topKMetrics(s, l, v, []))).toBe('SEL_ERR_OPTION_INVALID');
    expect(errorOf(() => topKMetrics(s, l, v, [2])).details.field).toBe('fractions');
  });
});

// --- brute force: average over every order of the ties ----------------------

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  const out: number[][] = [];
  for (const p of permutations(n - 1)) {
    for (let at = 0; at <= p.length; at++) out.push([...p.slice(0, at), n - 1, ...p.slice(at)]);
  }
  return out;
}

function bruteForce(scores: number[], labels: number[], revenue: number[], fraction: number): { frauds: number; captured: number } {
  const n = scores.length;
  const key = scores.map((s) => (Number.isNaN(s) ? -Infinity : s));
  const k = fraction * n;
  const whole = Math.floor(k + 1e-9);
  const part = Math.max(0, k - whole);
  let orders = 0, frauds = 0, captured = 0;
  for (const order of permutations(n)) {
    // keep the orders that rank by score descending (ties in any order)
    if (order.some((row, i) => i > 0 && key[order[i - 1]] < key[row])) continue;
    orders++;
    order.forEach((row, i) => {
      const weight = i < whole ? 1 : i === whole ? part : 0;
      if (labels[row] && weight > 0) {
        frauds += weight;
        captured += weight * (Number.isFinite(revenue[row]) ? revenue[row] : 0);
      }
    });
  }
  return { frauds: frauds / orders, captured: captured / orders };
}

describe('topKMetrics against the brute force over all tie orders', () => {
  it('agrees on frauds, revenue and the ratios', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            score: fc.constantFrom(NaN, -Infinity, -0, 0, 0.5, 1, 2),
            label: fc.boolean(),
            revenue: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constant(NaN)),
          }),
          { minLength: 1, maxLength: 7 },
        ),
        fc.oneof(
          fc.integer({ min: 1, max: 7 }).map((i) => i / 7),
          fc.integer({ min: 1, max: 100 }).map((i) => i / 100),
          fc.double({ min: 1e-6, max: 1, noNaN: true }),
        ),
        (rows, fraction) => {
          const scores = rows.map((r) => r.score);
          const labels = rows.map((r) => (r.label ? 1 : 0));
          const revenue = rows.map((r) => r.revenue);
          const got = run(scores, labels, revenue, [fraction]);
          const want = bruteForce(scores, labels, revenue, fraction);
          const cut = got.cuts[0];
          const positives = labels.reduce((a: number, b) => a + b, 0);
          const totalRevenue = revenue.reduce((a, v, i) => a + (labels[i] && Number.isFinite(v) ? v : 0), 0);
          expect(got.positives).toBe(positives);
          expect(got.totalRevenue).toBe(totalRevenue);
          expect(cut.selected).toBeCloseTo(fraction * rows.length, 9);
          expect(cut.frauds).toBeCloseTo(want.frauds, 9);
          expect(cut.revenueCaptured).toBeCloseTo(want.captured, 6);
          expect(cut.precision).toBeCloseTo(want.frauds / (fraction * rows.length), 6);
          expect(cut.recall).toBeCloseTo(positives > 0 ? want.frauds / positives : 0, 9);
          expect(cut.revenueShare).toBeCloseTo(totalRevenue > 0 ? want.captured / totalRevenue : 0, 9);
          const random = got.random[0];
          expect(random.frauds).toBeCloseTo(fraction * positives, 9);
          expect(random.precision).toBeCloseTo(rows.length > 0 ? positives / rows.length : 0, 9);
          expect(random.recall).toBeCloseTo(positives > 0 ? fraction : 0, 9);
          expect(random.revenueShare).toBeCloseTo(totalRevenue > 0 ? fraction : 0, 9);
          expect(random.revenueCaptured).toBeCloseTo(fraction * totalRevenue, 6);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('parseLabel', () => {
  it('reads the usual negatives and positives', () => {
    for (const v of ['', '  ', '0', 'false', 'FALSE', 'No', 'n', 'N', ' 0 ', '0.0', '-0', '0e5']) expect(parseLabel(v), JSON.stringify(v)).toBe(0);
    for (const v of ['1', 'true', 'yes', 'Y', 'fraud', '2', '-1', '0.5', ' 1 ']) expect(parseLabel(v), JSON.stringify(v)).toBe(1);
  });

  it('with a list of positive values, matches the trimmed value exactly', () => {
    expect(parseLabel(' fraud ', ['fraud', 'seizure'])).toBe(1);
    expect(parseLabel('seizure', ['fraud', 'seizure'])).toBe(1);
    expect(parseLabel('1', ['fraud'])).toBe(0);
    expect(parseLabel('Fraud', ['fraud'])).toBe(0);
  });
});

// --- revenue expressions ---------------------------------------------------

describe('compileExpression', () => {
  const known = ['customsValue', 'taxRate', 'Item Price', 'Tax Rate', 'duty.paid', 'x'];
  const row: Record<string, number> = { customsValue: 1000, taxRate: 12, 'Item Price': 50, 'Tax Rate': 8, 'duty.paid': 3, x: 2 };
  const calc = (text: string, values: Record<string, number> = row): number =>
    compileExpression(text, known).evaluate((i) => values[known[i]]);

  it('follows the usual precedence and associativity', () => {
    expect(calc('1 + 2 * 3')).toBe(7);
    expect(calc('(1 + 2) * 3')).toBe(9);
    expect(calc('10 - 4 - 3')).toBe(3);
    expect(calc('8 / 4 / 2')).toBe(1);
    expect(calc('2 * 3 + 4 * 5')).toBe(26);
    expect(calc('1e2 + .5 + 2.25E-1')).toBeCloseTo(100.725, 12);
  });

  it('has unary minus', () => {
    expect(calc('-2 * 3')).toBe(-6);
    expect(calc('2 * -3')).toBe(-6);
    expect(calc('- -2')).toBe(2);
    expect(calc('1--1')).toBe(2);
    expect(calc('-(1 + 2)')).toBe(-3);
    expect(calc('-x * -x')).toBe(4);
  });

  it('resolves plain, dotted and quoted names to column indices once', () => {
    const e = compileExpression('customsValue * taxRate / 100 + customsValue * 0', known);
    expect(e.names).toEqual(['customsValue', 'taxRate']);
    expect(e.indices).toEqual([0, 1]);
    expect(calc('customsValue * taxRate / 100')).toBe(120);
    expect(calc('"Item Price" * `Tax Rate` / 100')).toBe(4);
    expect(calc('duty.paid * x')).toBe(6);
    const asked: number[] = [];
    compileExpression('"Tax Rate" + x', known).evaluate((i) => { asked.push(i); return 1; });
    expect(asked.sort()).toEqual([3, 5]);
  });

  it('gives NaN for a missing value or a division by zero', () => {
    expect(calc('customsValue / 0')).toBeNaN();
    expect(calc('customsValue / (x - 2)')).toBeNaN();
    expect(calc('1 / 0')).toBeNaN();
    expect(calc('x * 2', { x: NaN })).toBeNaN();
    expect(calc('0 / x', { x: 0 })).toBeNaN();
  });

  it('rejects bad syntax with the position', () => {
    const cases: Array<[string, number]> = [
      ['', 1],
      ['1 +', 4],
      ['2 $ 3', 3],
      ['(1 + 2', 7],
      ['1 + 2)', 6],
      ['1 2', 3],
      ['x y', 3],
      ['"Item Price', 1],
      ['2x', 2],
      ['1.2.3', 4],
      ['1e', 2],
      ['x ** 2', 4],
      ['+x', 1],
      ['x[0]', 2],
      ['x; x', 2],
      ['x, x', 2],
      ['`` + 1', 1],
      ['x % 2', 3],
    ];
    for (const [text, position] of cases) {
      const e = errorOf(() => compileExpression(text, known));
      expect(e.code, text).toBe('SEL_ERR_OPTION_INVALID');
      expect(e.details.field, text).toBe('revenue');
      expect(e.details.position, text).toBe(position);
      expect(String(e.details.expected), text).toMatch(/arithmetic expression/);
      expect(e.message, text).toContain(`position ${position}`);
    }
  });

  it('rejects unknown names at compile time, listing the known ones; reaches no globals', () => {
    for (const text of ['process', 'process.exit', 'globalThis', 'constructor', '__proto__', 'toString', 'eval', 'this', 'Math.PI', 'customsvalue', '"Item  Price"']) {
      const e = errorOf(() => compileExpression(`1 + ${text}`, known));
      expect(e.code, text).toBe('SEL_ERR_OPTION_INVALID');
      expect(e.details.field).toBe('revenue');
      expect(e.details.position).toBe(5);
      expect(e.message).toContain('customsValue, taxRate, Item Price');
    }
    // a name that is a column is just a column, whatever it would mean in JavaScript
    expect(compileExpression('process * 2', ['process']).evaluate(() => 21)).toBe(42);
  });

  it('bounds nesting and length', () => {
    const deep = `${'('.repeat(MAX_EXPRESSION_DEPTH + 1)}1${')'.repeat(MAX_EXPRESSION_DEPTH + 1)}`;
    expect(codeOf(() => compileExpression(deep, known))).toBe('SEL_ERR_OPTION_INVALID');
    expect(codeOf(() => compileExpression('-'.repeat(1000) + '1', known))).toBe('SEL_ERR_OPTION_INVALID');
    expect(codeOf(() => compileExpression(Array(3000).fill('x').join('+'), known))).toBe('SEL_ERR_OPTION_INVALID');
    expect(calc(Array(1000).fill('x').join('+'))).toBe(2000);
  });

  it('agrees with a reference evaluator on random expressions', () => {
    type Tree = { n: number } | { v: number } | { neg: Tree } | { op: '+' | '-' | '*' | '/'; l: Tree; r: Tree };
    const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
      tree: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.integer({ min: 0, max: 20 }).map((n) => ({ n })),
        fc.integer({ min: 0, max: known.length - 1 }).map((v) => ({ v })),
        tie('tree').map((t) => ({ neg: t })),
        fc.record({ op: fc.constantFrom('+', '-', '*', '/'), l: tie('tree'), r: tie('tree') }) as fc.Arbitrary<Tree>,
      ),
    }));
    const values = [3, -2, 0, 7.5, 1, 4];
    const ref = (t: Tree): number => {
      if ('n' in t) return t.n;
      if ('v' in t) return values[t.v];
      if ('neg' in t) return -ref(t.neg);
      const a = ref(t.l), b = ref(t.r);
      return t.op === '+' ? a + b : t.op === '-' ? a - b : t.op === '*' ? a * b : b === 0 ? NaN : a / b;
    };
    const quote = (name: string): string => (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name) ? name : `"${name}"`);
    const show = (t: Tree): string => {
      if ('n' in t) return String(t.n);
      if ('v' in t) return quote(known[t.v]);
      if ('neg' in t) return `-(${show(t.neg)})`;
      return `(${show(t.l)} ${t.op} ${show(t.r)})`;
    };
    fc.assert(
      fc.property(tree, (t) => {
        const text = show(t);
        fc.pre(text.length <= 4000);
        const got = compileExpression(text, known).evaluate((i) => values[i]);
        expect(Object.is(got, ref(t)) || got === ref(t)).toBe(true);
      }),
    );
  });
});
