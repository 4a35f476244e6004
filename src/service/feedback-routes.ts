/**
 * Feedback routes: examination results in, joined to the logged decisions
 * (src/feedback/feedback.ts), and the decision log out.
 *
 *   POST /v1/feedback                      port, analyst, admin   {"results": [...]} JSON or MessagePack; durable before 200 (transactions of 500)
 *   GET  /v1/feedback?declarationId=…      port, analyst, admin   current result, history, the decision it joins to
 *   GET  /v1/feedback/report?from=&to=&per= analyst, admin         targeting performance per channel beside the control group's estimate
 *   GET  /v1/decisions/:id                 analyst, admin         every logged decision for the id
 */
import type { FastifyInstance } from 'fastify';
import { errors } from '../errors.js';
import { FEEDBACK_SLICE, FeedbackStore } from '../feedback/feedback.js';
import { writeWhenFree } from '../store/sqlite.js';
import { REPORT_BREAKDOWNS, targetingReportPaced, type ReportBreakdown } from '../feedback/report.js';
import type { RulesetSource } from './state.js';
import { acceptMsgpackBodies } from './msgpack-body.js';

const open = { type: 'object', additionalProperties: true } as const;

/** The decisions of an id GET /v1/decisions/<id> and GET /v1/feedback answer by default (the latest), and the most they answer. */
export const DECISIONS_PAGE = 100;
export const MAX_DECISIONS_PAGE = 1000;
/** The query's limit: 1 to MAX_DECISIONS_PAGE (query values are strings: the schema checks the digits). */
const LIMIT = { type: 'string', pattern: '^([1-9][0-9]{0,2}|1000)$', description: `how many decisions, 1 to ${MAX_DECISIONS_PAGE}` };

/** Most results in one POST /v1/feedback. */
export const MAX_FEEDBACK_BATCH = 10_000;

export async function registerFeedbackRoutes(app: FastifyInstance, o: { source: RulesetSource; bodyLimit: number; errorSchema: object }): Promise<void> {
  const { errorSchema } = o;
  const store = new FeedbackStore(o.source.database);
  await app.register(async (scope) => {
    acceptMsgpackBodies(scope, o.bodyLimit);
    scope.post('/v1/feedback', {
      config: { access: 'feedback' },
      // too many results is the batch limit's 413, as on the score route, not a schema refusal (400):
      // checked before the schema, whose maxItems stays for the OpenAPI description
      preValidation: async (req) => {
        const results = (req.body as { results?: unknown } | null)?.results;
        if (Array.isArray(results) && results.length > MAX_FEEDBACK_BATCH) {
          throw errors.SEL_ERR_BATCH_TOO_LARGE(`a feedback post may hold at most ${MAX_FEEDBACK_BATCH} results; this one holds ${results.length}`, { field: 'results', expected: `at most ${MAX_FEEDBACK_BATCH} results`, got: results.length });
        }
      },
      schema: {
        tags: ['feedback'],
        summary: 'Record examination results ({"results": [...]}, JSON or MessagePack), each joined to the latest logged decision for its declaration (or the latest of its rulesetVersion).',
        description: 'The valid items are committed before the answer, in durable transactions of up to 500 items in the order given (a storage failure part way answers SEL_ERR_STORAGE and leaves the earlier items recorded: posting again answers them as duplicates); each invalid item is answered with its error (SEL_ERR_FEEDBACK_INVALID, SEL_ERR_FEEDBACK_UNKNOWN_DECLARATION) and changes nothing. Posting the same result again: duplicate, nothing changes; a different result replaces the current one, which stays in the history. See docs/feedback.md.',
        body: { type: 'object', required: ['results'], additionalProperties: false, properties: { results: { type: 'array', maxItems: MAX_FEEDBACK_BATCH, items: {} } } },
        response: {
          200: {
            type: 'object',
            properties: {
              counts: { type: 'object', properties: { recorded: { type: 'integer' }, replaced: { type: 'integer' }, duplicate: { type: 'integer' }, rejected: { type: 'integer' } } },
              results: { type: 'array', items: open },
            },
          },
          '4xx': errorSchema,
          '5xx': errorSchema,
        },
      },
    }, async (req) => {
      const { results } = req.body as { results: unknown[] };
      // the joins read first, without the lock; then the writes, waiting for the lock (the decision
      // log's writer holds it during a group commit) without blocking the main thread
      const recording = await store.preparePaced(results, req.actor ?? 'api');
      // in transactions of FEEDBACK_SLICE results, the event loop and the log's writer going on between them
      return recording.commitSliced(FEEDBACK_SLICE, (slice) => writeWhenFree(o.source.database, slice));
    });
  });
  app.get('/v1/feedback', {
    config: { access: 'feedback' },
    schema: {
      tags: ['feedback'],
      summary: `The examination result recorded for a declaration (current and history) with the logged decision it joins to, and the declaration's latest logged decisions (limit, default ${DECISIONS_PAGE}; decisionsTotal: how many it has; GET /v1/decisions/<id> pages through them).`,
      querystring: {
        type: 'object', required: ['declarationId'], additionalProperties: false,
        properties: { declarationId: { type: 'string', minLength: 1, maxLength: 64 }, limit: LIMIT },
      },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const q = req.query as { declarationId: string; limit?: string };
    // trimmed, as when it was scored and when its result was posted
    const declarationId = q.declarationId.trim();
    const r = store.show(declarationId, q.limit !== undefined ? Number(q.limit) : DECISIONS_PAGE);
    if (r.history.length === 0 && r.decisions.length === 0) throw errors.SEL_ERR_NOT_FOUND(`no feedback and no logged decision for declaration ${declarationId}`, { field: 'declarationId', expected: 'a declaration id the service scored', got: declarationId });
    return r;
  });
  app.get('/v1/feedback/report', {
    config: { access: 'read' },
    schema: {
      tags: ['feedback'],
      summary: 'Targeting performance over a period of examination dates (default: the last 30 days): per channel the results, inspected, non-compliant (hit rate) and revenue recovered, beside the random-selection control group\'s estimate of the green traffic\'s non-compliance with its 95 % interval; per=day|week|month adds the same for each such period. See docs/feedback.md.',
      // the values are checked by the report itself, as for `selectivity feedback report`: the same
      // SEL_ERR_OPTION_INVALID naming the field either way (docs/feedback.md)
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          from: { type: 'string', description: 'first examination date, YYYY-MM-DD' }, to: { type: 'string', description: 'last examination date, YYYY-MM-DD' },
          per: { type: 'string', description: `${REPORT_BREAKDOWNS.join(' | ')}` },
        },
      },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const { from, to, per } = req.query as { from?: string; to?: string; per?: ReportBreakdown };
    // the day's scored count as of now (the usage counters are flushed every few seconds)
    await o.source.usage.flushWhenFree();
    return targetingReportPaced(o.source.database, { from, to, per });
  });
  app.get('/v1/decisions/:id', {
    config: { access: 'read' },
    schema: {
      tags: ['feedback'],
      summary: `The logged decisions for a declaration id (re-scoring adds one), with the declaration fields kept for learning: the latest \`limit\` (default ${DECISIONS_PAGE}, at most ${MAX_DECISIONS_PAGE}) whose seq is below \`before\` (default: all), oldest first; \`total\`: how many the id has; \`before\`: what asks for the page before this one (null: none).`,
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
      querystring: {
        type: 'object', additionalProperties: false,
        properties: { limit: LIMIT, before: { type: 'string', pattern: '^[1-9][0-9]{0,14}$', description: 'a seq: the page\'s decisions are older' } },
      },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    // trimmed, as when it was scored
    const id = (req.params as { id: string }).id.trim();
    const { limit, before } = req.query as { limit?: string; before?: string };
    const page = store.decisions(id, limit !== undefined ? Number(limit) : DECISIONS_PAGE, before !== undefined ? Number(before) : undefined);
    if (page.total === 0) throw errors.SEL_ERR_NOT_FOUND(`no logged decision for declaration ${id}`, { field: 'id', expected: 'a declaration id the service scored with the decision log on', got: id });
    return page;
  });
}
