/**
 * `selectivity serve`'s process-level options: the heap growing percent it
 * sets for V8 before the service starts (docs/benchmarks.md, "The main
 * thread's full collections").
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyHeapGrowingPercent, DEFAULT_HEAP_GROWING_PERCENT, SERVE_HELP, serveCommand } from '../src/cli/serve.js';

describe('serve --heap-growing-percent', () => {
  it('sets V8\'s --heap-growing-percent to the value given, and leaves V8 alone with 0', () => {
    const set: string[] = [];
    applyHeapGrowingPercent(DEFAULT_HEAP_GROWING_PERCENT, (f) => set.push(f));
    applyHeapGrowingPercent(350, (f) => set.push(f));
    applyHeapGrowingPercent(0, (f) => set.push(f));
    expect(set).toEqual(['--heap-growing-percent=200', '--heap-growing-percent=350']);
    expect(SERVE_HELP).toContain('--heap-growing-percent <n>');
  });

  it('refuses what is not an integer from 0 to 1000 with SEL_ERR_OPTION_INVALID, setting nothing', () => {
    for (const bad of [-1, 1001, 2.5, Number.NaN]) {
      const set: string[] = [];
      expect(() => applyHeapGrowingPercent(bad, (f) => set.push(f))).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'heap-growing-percent' }) }));
      expect(set).toEqual([]);
    }
  });

  it('serve refuses a bad value before it starts anything (no data directory made)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-opt-'));
    try {
      for (const raw of ['abc', '-5', '1001', '1.5']) {
        await expect(serveCommand([`--heap-growing-percent=${raw}`, '--data-dir', join(dir, 'data'), '--port', '0', '--quiet'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'heap-growing-percent', got: raw } });
      }
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
