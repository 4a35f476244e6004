/**
 * Shared by the tests that drive a real service over loopback (decision log,
 * feedback): tokens per role, one HTTP call, the decision-log rows of a data
 * directory, and declarations that score.
 */
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { Declaration } from '../src/model/schema.js';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
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

export const logRows = (dataDir: string, where = '1 = 1', ...args: unknown[]) => {
  const db = openStore(join(dataDir, STORE_FILE));
  try { return db.prepare(`SELECT * FROM decision_log WHERE ${where} ORDER BY seq`).all(...args) as Record<string, any>[]; } finally { db.close(); }
};

export function declarations(n: number, seed: number, prefix: string): Declaration[] {
  return randomDeclarations(n, seed).filter((d) => d.netMass > 0).map((d, i) => ({ ...d, id: `${prefix}${i}` }));
}
