/**
 * Shared by the tests that drive a real service over loopback (decision log,
 * feedback): tokens per role, one HTTP call, the decision-log rows of a data
 * directory, and declarations that score.
 */
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { Declaration } from '../src/model/schema.js';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import { randomDeclarations } from './helpers.js';

export const TOKENS = { port: 'port-token-0123456789abcdef', analyst: 'analyst-token-0123456789abcdef', admin: 'admin-token-0123456789abcdef' };
export const tokensEnv = Object.entries(TOKENS).map(([r, t]) => `${r}:${t}`).join(',');

/** Matches SPS-MEAT-CN of the example profiles (docs/service.md). */
export const MEAT: Declaration = { id: 'D-MEAT-1', date: '2026-11-23', office: 'OF01', importer: 'IM00001', declarant: 'DC9', hs: '020890', origin: 'CN', transportMode: '1', customsValue: 1200, netMass: 900, taxRate: 8 };

export async function call(base: string, method: string, path: string, o: { role?: keyof typeof TOKENS; body?: Buffer | string; type?: string; accept?: string } = {}): Promise<{ status: number; body: Buffer; json: () => any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers: { authorization: `Bearer ${TOKENS[o.role ?? 'analyst']}`, ...(o.type ? { 'content-type': o.type } : {}), ...(o.accept ? { accept: o.accept } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => { const body = Buffer.concat(parts); resolve({ status: res.statusCode!, body, json: () => JSON.parse(body.toString('utf8')) }); });
    });
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

/**
 * The logged decisions of a data directory (src/feedback/log-reader.ts, both layouts), as rows
 * with the columns of the original decision_log table (reasons as JSON text), in seq order.
 */
export const logRows = (dataDir: string, keep: (row: Record<string, any>) => boolean = () => true): Record<string, any>[] => {
  const db = openStore(join(dataDir, STORE_FILE));
  try {
    const out: Record<string, any>[] = [];
    for (const d of new DecisionLogReader(db).scan()) {
      const x = d.declaration;
      const row = {
        seq: d.seq, declaration_id: d.declarationId, decided_at: Date.parse(d.decidedAt), ruleset_version: d.rulesetVersion, score: d.score, channel: d.channel,
        control_group: d.controlGroup ? 1 : 0, reasons: JSON.stringify(d.reasons), date: x.date, office: x.office, importer: x.importer,
        declarant: x.declarant ?? null, seller: x.seller ?? null, hs: x.hs, origin: x.origin, departure: x.departure ?? null, transport_mode: x.transportMode ?? null,
        customs_value: x.customsValue, net_mass: x.netMass, quantity: x.quantity ?? null, tax_rate: x.taxRate ?? null, aeo: x.aeo === undefined ? null : x.aeo ? 1 : 0,
      };
      if (keep(row)) out.push(row);
    }
    return out;
  } finally {
    db.close();
  }
};

export function declarations(n: number, seed: number, prefix: string): Declaration[] {
  return randomDeclarations(n, seed).filter((d) => d.netMass > 0).map((d, i) => ({ ...d, id: `${prefix}${i}` }));
}
