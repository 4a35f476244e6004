/**
 * A period of days for the reports (profile effectiveness, targeting):
 * `from` and `to` inclusive, YYYY-MM-DD (UTC). Either may be absent: `to`
 * defaults to today, `from` to 29 days before `to` (30 days in all).
 */
import { errors } from '../errors.js';

const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
/** A real calendar day (Date.parse alone takes 2026-02-30 for 2 March). */
const isDay = (s: string) => DAY_RE.test(s) && !Number.isNaN(Date.parse(s)) && day(Date.parse(s)) === s;

/** The period asked for, checked: a day that is not one, or `from` after `to`, gives SEL_ERR_OPTION_INVALID naming the field. */
export function resolvePeriod(o: { from?: string; to?: string }, now = Date.now()): { from: string; to: string } {
  for (const [k, v] of [['from', o.from], ['to', o.to]] as const) {
    if (v !== undefined && !isDay(v)) throw errors.SEL_ERR_OPTION_INVALID(`${k} must be a date YYYY-MM-DD`, { field: k, expected: 'YYYY-MM-DD', got: v });
  }
  const to = o.to ?? day(now);
  const from = o.from ?? day(Date.parse(to) - 29 * 86_400_000);
  if (from > to) throw errors.SEL_ERR_OPTION_INVALID('from is after to', { field: 'from', expected: `a day on or before ${to}`, got: from });
  return { from, to };
}
