/**
 * A period of days for the reports (profile effectiveness, targeting):
 * `from` and `to` inclusive, YYYY-MM-DD (UTC). Either may be absent: `to`
 * defaults to today, `from` to 29 days before `to` (30 days in all).
 */
import { errors } from '../errors.js';
import { formatIsoDate, parseIsoDate } from './schema.js';

/** The period asked for, checked: a day that is not one, or `from` after `to`, gives SEL_ERR_OPTION_INVALID naming the field. */
export function resolvePeriod(o: { from?: string; to?: string }, now = Date.now()): { from: string; to: string } {
  for (const [k, v] of [['from', o.from], ['to', o.to]] as const) {
    if (v !== undefined && Number.isNaN(parseIsoDate(v))) throw errors.SEL_ERR_OPTION_INVALID(`${k} must be a date YYYY-MM-DD`, { field: k, expected: 'YYYY-MM-DD', got: v });
  }
  const to = o.to ?? formatIsoDate(Math.floor(now / 86_400_000));
  const from = o.from ?? formatIsoDate(parseIsoDate(to) - 29);
  if (from > to) throw errors.SEL_ERR_OPTION_INVALID('from is after to', { field: 'from', expected: `a day on or before ${to}`, got: from });
  return { from, to };
}
