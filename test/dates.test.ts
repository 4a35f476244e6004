import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatIsoDate, parseIsoDate } from '../src/model/schema.js';

describe('parseIsoDate (arithmetic, no Date object)', () => {
  it('agrees with Date.UTC on every day of random years between 1600 and 2400', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1600, 0, 1) / 86_400_000, max: Date.UTC(2400, 11, 31) / 86_400_000 }), (day) => {
        const s = new Date(day * 86_400_000).toISOString().slice(0, 10);
        expect(parseIsoDate(s)).toBe(day);
        expect(formatIsoDate(parseIsoDate(s))).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects impossible calendar dates and malformed strings', () => {
    for (const s of ['2023-02-29', '1900-02-29', '2024-02-30', '2024-04-31', '2024-13-01', '2024-00-10', '2024-01-00',
      '2024-1-01', '2024-01-1', '20240101', '2024/01/01', 'abcd-01-01', '2024-01-01T00:00', ' 2024-01-01', '']) {
      expect(parseIsoDate(s), s).toBeNaN();
    }
  });

  it('accepts leap days of leap years, including 2000', () => {
    expect(parseIsoDate('2000-02-29')).toBe(Date.UTC(2000, 1, 29) / 86_400_000);
    expect(parseIsoDate('2024-02-29')).toBe(Date.UTC(2024, 1, 29) / 86_400_000);
  });
});
