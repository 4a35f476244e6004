/**
 * The decision log's payload: the rows of one scored request (batch or stream
 * chunk), built in the scoring worker next to the decisions and carried to
 * the log writer as one MessagePack buffer (transferred, never cloned or
 * decoded on the main thread). Each row is a flat array in LOG_COLUMNS order.
 */
import { encodeMsgpack } from '../service/fast-msgpack.js';
import { CHANNELS } from '../model/channels.js';
import type { Declaration } from '../model/schema.js';
import type { Decision } from '../decisions.js';

/** Columns of decision_log after seq, in row order (src/store/sqlite.ts, migration 5). */
export const LOG_COLUMNS = [
  'declaration_id', 'decided_at', 'ruleset_version', 'score', 'channel', 'control_group', 'reasons',
  'date', 'office', 'importer', 'declarant', 'seller', 'hs', 'origin', 'departure', 'transport_mode',
  'customs_value', 'net_mass', 'quantity', 'tax_rate', 'aeo',
] as const;

export type LogRow = (string | number | null)[];

/** The payload: { t: decided at (ms since epoch), v: ruleset version, rows }. */
export interface LogPayload {
  t: number;
  v: string;
  /** [id, score, channel code, control 0|1, reasons JSON, date, office, importer, declarant, seller, hs, origin, departure, transportMode, customsValue, netMass, quantity, taxRate, aeo] */
  rows: (string | number | null)[][];
}

const opt = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

/** Encodes the log rows of a request: decisions[k] decided declarations[k]. A buffer that owns its ArrayBuffer (transferable). */
export function encodeLogRows(decisions: readonly Decision[], declarations: readonly Declaration[], rulesetVersion: string, now = Date.now()): Uint8Array {
  const rows: LogPayload['rows'] = new Array(decisions.length);
  for (let k = 0; k < decisions.length; k++) {
    const d = decisions[k], x = declarations[k];
    rows[k] = [d.id, d.score, CHANNELS.indexOf(d.channel), d.controlGroup ? 1 : 0, JSON.stringify(d.reasons),
      x.date, x.office, x.importer, opt(x.declarant), opt(x.seller), x.hs, x.origin, opt(x.departure), opt(x.transportMode),
      x.customsValue, x.netMass, opt(x.quantity), opt(x.taxRate), x.aeo === undefined ? null : x.aeo ? 1 : 0];
  }
  return encodeMsgpack({ t: now, v: rulesetVersion, rows } satisfies LogPayload);
}

/** Payload rows as decision_log rows (LOG_COLUMNS order). */
export function logRows(p: LogPayload): LogRow[] {
  return p.rows.map((r) => [r[0], p.t, p.v, r[1], CHANNELS[r[2] as number], r[3], ...r.slice(4)]);
}
