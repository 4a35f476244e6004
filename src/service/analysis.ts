/**
 * Analyst routes of the service: peer snapshots, deviation studies and
 * evaluations on labelled data.
 *
 *   GET  /v1/peers          read    version and provenance of the active snapshot
 *   PUT  /v1/peers          write   upload a snapshot (JSON or MessagePack file); durable before 200
 *   POST /v1/studies        read    study declarations against the active snapshot
 *   POST /v1/evaluations    read    train on some declarations, measure on others
 *
 * Study and evaluation bodies are written to a private temporary directory
 * and read back by the same streaming readers the CLI uses (bounded memory),
 * then removed. Column mappings are presets only: a request never names a
 * file on the server.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, sep } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chooseAnswer } from './msgpack-body.js';
import { errors, isSelectivityError } from '../errors.js';
import type { Engine } from '../engine.js';
import { evaluate } from '../evaluate/evaluate.js';
import { PRESETS } from '../model/columns.js';
import { renderStudyHtml, studyTopCsv } from '../study/render.js';
import { RANK_BY, studyFile, type Direction, type RankBy } from '../study/study.js';
import { queryNumber } from './query.js';
import type { RulesetSource } from './state.js';

const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];
/** The body types an analysis reads besides JSON (server.ts BODY_TYPES names them in a 415). */
export const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson', 'application/jsonl'];
export const CSV_TYPES = ['text/csv'];

export interface AnalysisOptions {
  engine: Engine;
  source: RulesetSource;
  bodyLimit: number;
  errorSchema: object;
  /** What the ruleset routes answer, after a snapshot swap. */
  rulesetInfo: (version?: string) => object;
}

type Records = unknown[] | string;

/** The largest `top` of a study over HTTP: a study of 100,000 rows rendered as HTML was 170 MB, built on the main thread for 12 s. */
export const MAX_HTTP_STUDY_TOP = 5000;
/**
 * Studies and evaluations that run at once; another is answered 503
 * SEL_ERR_OVERLOADED (Retry-After). Each reads, parses and renders on the
 * main thread in places: eight evaluations at once took 75 s each and
 * held /healthz up to 9 s in an audit.
 */
export const ANALYSES_AT_ONCE = 1;

function invalid(field: string, message: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_REQUEST_INVALID(message, { field, expected, got });
}

/** Writes declarations (an array of objects → NDJSON, or CSV / NDJSON text) to a file in dir. */
function writeRecords(dir: string, name: string, records: Records, field: string, textFormat: 'csv' | 'ndjson'): string {
  if (Array.isArray(records)) {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    return path;
  }
  if (typeof records === 'string') {
    const path = join(dir, `${name}.${textFormat}`);
    writeFileSync(path, records);
    return path;
  }
  return invalid(field, `${field} must be an array of declarations or a CSV/NDJSON text`, 'an array of objects, or a string', typeof records);
}

function preset(columns: unknown): string | undefined {
  if (columns === undefined) return undefined;
  // the code --columns gets for an unknown preset (docs/errors.md)
  if (typeof columns !== 'string' || !Object.hasOwn(PRESETS, columns)) throw errors.SEL_ERR_COLUMNS_INVALID('columns must name a preset', { field: 'columns', expected: `one of ${Object.keys(PRESETS).join(', ')}`, got: columns });
  return columns as string;
}

/**
 * Runs fn on a temporary directory for the request's records, removed after.
 * The server's paths stay on the server: in the errors fn raises, a file of
 * that directory is named as the request's part it holds ("train.ndjson",
 * "file.csv"), as the evaluation's report names them.
 */
async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'selectivity-'));
  const prefix = `${dir}${sep}`;
  const scrub = (s: string) => s.split(prefix).join('');
  try {
    return await fn(dir);
  } catch (e) {
    if (isSelectivityError(e)) {
      e.message = scrub(e.message);
      for (const [k, v] of Object.entries(e.details)) if (typeof v === 'string') (e.details as Record<string, unknown>)[k] = scrub(v);
    }
    throw e;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function registerAnalysisRoutes(app: FastifyInstance, o: AnalysisOptions): Promise<void> {
  const { source, bodyLimit, errorSchema } = o;
  let running = 0;
  /** Runs one analysis, or refuses it while ANALYSES_AT_ONCE run. */
  const oneAtATime = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    if (running >= ANALYSES_AT_ONCE) throw errors.SEL_ERR_OVERLOADED(`another study or evaluation is running; ${what} waits for it`, { field: 'analyses', expected: `at most ${ANALYSES_AT_ONCE} at once`, got: running, retryAfterSeconds: 5 });
    running++;
    try { return await fn(); } finally { running--; }
  };

  app.get('/v1/peers', {
    config: { access: 'read' },
    schema: { tags: ['peers'], summary: 'The active peer snapshot: version, creation time, rows folded in, levels and groups per level.', response: { 200: { type: 'object', additionalProperties: true } } },
  }, async () => source.peersInfo ?? {});

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(['application/json', 'application/octet-stream', ...MSGPACK_TYPES], { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
    scope.put('/v1/peers', {
      config: { access: 'write' },
      schema: {
        tags: ['peers'],
        summary: 'Replace the peer snapshot without a restart.',
        description: 'The body is a snapshot file as written by `selectivity peers build` (JSON or MessagePack, format 2). It is checked whole (checksum, features, shape), written durably to the service\'s peers file, then swapped in; 200 only after the write. A damaged or mismatched file answers SEL_ERR_PEERS_CORRUPT / SEL_ERR_PEERS_MISMATCH and the active snapshot stays.',
        response: { 200: { type: 'object', additionalProperties: true }, '4xx': errorSchema, '5xx': errorSchema },
      },
    }, async (req) => {
      const body = req.body as Buffer;
      if (!Buffer.isBuffer(body) || body.length === 0) throw errors.SEL_ERR_REQUEST_PARSE('the request body is empty', { field: 'body', expected: 'a peer snapshot file' });
      const { version, peers } = await source.replacePeers(body);
      return { peers, ruleset: o.rulesetInfo(version) };
    });
  });

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
      try { done(null, JSON.parse(body as string)); } catch (e) { done(errors.SEL_ERR_REQUEST_PARSE(`body is not valid JSON: ${(e as Error).message}`, { field: 'body', expected: 'JSON' }) as unknown as Error); }
    });
    scope.addContentTypeParser([...NDJSON_TYPES, ...CSV_TYPES], { parseAs: 'string', bodyLimit }, (_req, body, done) => done(null, body));

    scope.post('/v1/studies', {
      config: { access: 'read' },
      schema: {
        tags: ['analysis'],
        summary: 'Deviation study of the posted declarations against the active peer snapshot.',
        description: 'Body: JSON { "declarations": [...] }, NDJSON (application/x-ndjson) or CSV (text/csv). Query: top, rankBy (maxAbsZ | unitValue | netMass | valuePerItem), direction (under | over | both), zThreshold, columns (a preset, e.g. kcs). The report is JSON, or HTML (Accept: text/html, self-contained with plots) or CSV of the top declarations (Accept: text/csv).',
        querystring: {
          type: 'object', additionalProperties: false,
          properties: {
            // the values are checked by studyFile, as for `selectivity study`: SEL_ERR_OPTION_INVALID naming the field either way
            top: { type: 'string', description: `an integer in [1, ${MAX_HTTP_STUDY_TOP}] (default 50)` },
            rankBy: { type: 'string', description: RANK_BY.join(' | ') },
            direction: { type: 'string', description: 'under | over | both' },
            zThreshold: { type: 'string', description: 'a number in [0, 1000] (default 2)' },
            columns: { type: 'string', description: 'a column preset, e.g. kcs' },
          },
        },
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    }, async (req, reply) => {
      // query strings stay strings (the service does not coerce types): numbers are parsed here
      const q = req.query as { top?: string; rankBy?: RankBy; direction?: Direction; zThreshold?: string; columns?: string };
      const peers = source.currentPeers;
      if (!peers) throw errors.SEL_ERR_NOT_READY('no peer snapshot loaded yet', { field: 'peers' });
      const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      let records: Records;
      if (type === 'application/json') {
        const body = req.body as { declarations?: unknown } | null;
        if (!body || typeof body !== 'object' || !Array.isArray(body.declarations)) invalid('declarations', 'the body must be { "declarations": [...] }', 'an array of declarations', body && typeof body);
        records = body.declarations as unknown[];
      } else {
        records = req.body as string;
      }
      // JSON, HTML or CSV, as Accept weighs them; an Accept none of them fits is refused before the work
      const answer = chooseAnswer(req.headers.accept, ['application/json', 'text/html', 'text/csv']);
      const top = queryNumber(q.top);
      // the HTTP limit, and what the request held (abc, not the NaN it reads as)
      if (top !== undefined && !(Number.isInteger(top) && top >= 1 && top <= MAX_HTTP_STUDY_TOP)) {
        throw errors.SEL_ERR_OPTION_INVALID(top > MAX_HTTP_STUDY_TOP ? `top over HTTP is at most ${MAX_HTTP_STUDY_TOP} (selectivity study takes more)` : `top must be an integer from 1 to ${MAX_HTTP_STUDY_TOP}`, { field: 'top', expected: `an integer in [1, ${MAX_HTTP_STUDY_TOP}]`, got: q.top });
      }
      const report = await oneAtATime('this study', () => withTempDir((dir) => {
        const path = writeRecords(dir, 'studied', records, 'declarations', CSV_TYPES.includes(type) ? 'csv' : 'ndjson');
        return studyFile(path, peers, {
          top, rankBy: q.rankBy, direction: q.direction, columns: preset(q.columns),
          settings: q.zThreshold !== undefined ? { zThreshold: queryNumber(q.zThreshold) } : undefined, sourceName: 'request',
        });
      }));
      if (answer === 'text/html') return reply.type('text/html; charset=utf-8').send(renderStudyHtml(report));
      if (answer === 'text/csv') return reply.type('text/csv; charset=utf-8').send(studyTopCsv(report));
      return reply.type('application/json; charset=utf-8').send(JSON.stringify(report));
    });

    scope.post('/v1/evaluations', {
      config: { access: 'read' },
      schema: {
        tags: ['analysis'],
        summary: 'Train on some labelled declarations, score others, and report precision, recall and revenue captured at the top k %.',
        description: 'JSON body. Either train and test, or file (split by date at split, default 0.8). Each is an array of declaration objects carrying the label field, or a CSV text (with columns, e.g. "kcs"), or an NDJSON text (one beginning with "{"). Nothing is kept: the active ruleset is not touched.',
        body: {
          type: 'object', additionalProperties: false,
          // label, split and top are checked by evaluate, as for `selectivity evaluate`: SEL_ERR_OPTION_INVALID naming the field either way
          properties: {
            train: {}, test: {}, file: {},
            split: { description: 'the share of the file, by date, to train on, in (0, 1) (default 0.8)' },
            label: { description: 'the column holding the label' },
            positives: { type: 'array', items: { type: 'string' } },
            revenue: { type: 'string' },
            columns: { type: 'string' },
            top: { description: '1 to 20 shares of the test set in (0, 1], e.g. [0.01, 0.05] (the command takes them in %)' },
          },
        },
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    }, async (req) => {
      const b = req.body as { train?: Records; test?: Records; file?: Records; split?: number; label: string; positives?: string[]; revenue?: string; columns?: string; top?: number[] };
      const columns = preset(b.columns);
      // a text is CSV, or NDJSON when it begins with an object (it was always read as CSV: SEL_ERR_CSV_HEADER)
      const textFormat = (r: Records | undefined): 'csv' | 'ndjson' => (typeof r === 'string' && r.trimStart().startsWith('{') ? 'ndjson' : 'csv');
      const report = await oneAtATime('this evaluation', () => withTempDir(async (dir) => {
        if (b.file !== undefined) {
          if (b.train !== undefined || b.test !== undefined) invalid('file', 'give either file, or train and test', 'file, or train and test');
          return evaluate({ file: writeRecords(dir, 'file', b.file, 'file', textFormat(b.file)), split: b.split, label: b.label, positives: b.positives, revenue: b.revenue, columns, fractions: b.top, threads: 0 });
        }
        if (b.train === undefined || b.test === undefined) invalid('train', 'train and test are both required (or file)', 'train and test');
        return evaluate({
          train: [writeRecords(dir, 'train', b.train, 'train', textFormat(b.train))], test: writeRecords(dir, 'test', b.test, 'test', textFormat(b.test)),
          label: b.label, positives: b.positives, revenue: b.revenue, columns, fractions: b.top, threads: 0,
        });
      }));
      // the files were the request's parts, written to a temporary directory: named as those parts, not by the server's paths
      return { ...report, train: { ...report.train, files: report.train.files.map((f) => basename(f)) }, test: { ...report.test, file: basename(report.test.file) } };
    });
  });
}
