/**
 * Shared by the tests that drive the service: a service in process (Fastify
 * inject, scoring on the calling thread) for the route tests, and, for those
 * that drive a real service over loopback (decision log, feedback): tokens
 * per role, one HTTP call, the decision-log rows of a data directory, and
 * declarations that score.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import Database from 'better-sqlite3';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from '../src/paths.js';
import type { Declaration } from '../src/model/schema.js';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import { randomDeclarations } from './helpers.js';
import type { FastifyInstance } from 'fastify';
import { createEngine, type Engine } from '../src/engine.js';
import { DecisionLog } from '../src/feedback/decision-log.js';
import { createTokenStore, parseTokensEnv, type TokenStore } from '../src/service/auth.js';
import { createMetrics, type Metrics } from '../src/service/metrics.js';
import { buildServer, type ServiceOptions } from '../src/service/server.js';
import { prepareDataDir, RulesetSource } from '../src/service/state.js';

export const TOKENS = { port: 'port-token-0123456789abcdef', analyst: 'analyst-token-0123456789abcdef', admin: 'admin-token-0123456789abcdef' };
export const tokensEnv = Object.entries(TOKENS).map(([r, t]) => `${r}:${t}`).join(',');

/** A service in process: the parts a test may reach into, and close() for all of them. */
export interface InProcessService {
  app: FastifyInstance;
  engine: Engine;
  source: RulesetSource;
  metrics: Metrics;
  files: Awaited<ReturnType<typeof prepareDataDir>>;
  /** The decision log, when asked for. */
  log?: DecisionLog;
  close(): Promise<void>;
}

/**
 * The service of a data directory (seeded on first use) in process, ready
 * for app.inject: the data directory's ruleset, scoring on the calling
 * thread, metrics, and the tokens of TOKENS (every role) unless others are
 * given, as SELECTIVITY_TOKENS text or a store.
 */
export async function inProcessService(dataDir: string, o: {
  tokens?: string | TokenStore;
  /** Log every decision (feedback joins to them). */
  decisionLog?: boolean;
  /** Runs on the source before its ruleset is loaded (profiles to import, …). */
  prepare?: (source: RulesetSource) => void;
  /** buildServer's other options (body limit, batch size, backtests, …). */
  server?: Partial<Omit<ServiceOptions, 'engine' | 'source' | 'tokens' | 'metrics' | 'decisionLog'>>;
} = {}): Promise<InProcessService> {
  const files = await prepareDataDir(dataDir);
  const source = new RulesetSource(files);
  o.prepare?.(source);
  const engine = createEngine({ ruleset: await source.load(), threads: 0 });
  const metrics = await createMetrics({ intervalMs: 60_000 });
  const log = o.decisionLog ? new DecisionLog({ storePath: files.storePath }) : undefined;
  const tokens = typeof o.tokens === 'object' ? o.tokens : createTokenStore(parseTokensEnv(o.tokens ?? tokensEnv), 'env');
  const app = await buildServer({ ...o.server, engine, source, tokens, metrics, decisionLog: log });
  await app.ready();
  return {
    app, engine, source, metrics, files, log,
    async close() {
      await app.close();
      await engine.close();
      await log?.close();
      metrics.close();
      source.close();
    },
  };
}

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

/** A `selectivity serve` child process, listening. */
export interface ServeProcess {
  child: ChildProcess;
  /** http://127.0.0.1:<port> */
  base: string;
  port: number;
  /** Resolves with the signal that ended it, or else its exit code. */
  exited: Promise<NodeJS.Signals | number | null>;
  /** What it wrote to stderr so far. */
  stderr(): string;
}

/** The environment without SELECTIVITY_TOKENS (set, even empty, it is the token configuration). */
function withoutTokensEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SELECTIVITY_TOKENS;
  return env;
}

/**
 * Starts `bin/selectivity.js serve` on a data directory (port 0, loopback,
 * the tokens given as SELECTIVITY_TOKENS, then `args`); resolves once it
 * prints the port it listens on. stdout stays a pipe the caller may read or
 * close.
 */
export async function spawnServe(dataDir: string, args: readonly string[], tokens = tokensEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'selectivity.js'), 'serve', '--data-dir', dataDir, '--host', '127.0.0.1', '--port', '0', ...args],
    { env: tokens === '' ? withoutTokensEnv() : { ...process.env, SELECTIVITY_TOKENS: tokens }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  let head = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => { head += c.toString('utf8'); const m = /listening on http:\/\/[^:]+:(\d+)/.exec(head); if (m) resolve(Number(m[1])); });
    child.on('exit', (code) => reject(new Error(`serve exited (${code}) before listening: ${stderr}`)));
  });
  return { child, base: `http://127.0.0.1:${port}`, port, exited, stderr: () => stderr };
}

/**
 * Overwrites the root page of a stopped service's decision-log id index
 * with garbage: its store then fails PRAGMA quick_check, and every later
 * decision-log commit fails (SQLITE_CORRUPT).
 */
export function damageIdIndex(storePath: string): void {
  const db = new Database(storePath);
  const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'decision_ids'").get() as { rootpage: number };
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const fd = openSync(storePath, 'r+');
  try {
    writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (rootpage - 1) * pageSize);
  } finally {
    closeSync(fd);
  }
}
