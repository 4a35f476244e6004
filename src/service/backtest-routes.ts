/**
 * Back-test routes (analyst and admin): a back-test runs as a job, never as
 * a request that blocks.
 *
 *   POST   /v1/backtests              write  accept a job (202): candidate set, baseline, range, capacity
 *   GET    /v1/backtests              read   the jobs, newest first (without reports)
 *   GET    /v1/backtests/:id          read   status, progress, error, and the report when done
 *   GET    /v1/backtests/:id/report   read   the report: JSON, or HTML (Accept: text/html)
 *   DELETE /v1/backtests/:id          write  cancel a queued or running job; delete a finished one
 */
import type { FastifyInstance } from 'fastify';
import { chooseAnswer } from './msgpack-body.js';
import { errors } from '../errors.js';
import { validateCapacity, planRange } from '../backtest/backtest.js';
import type { CapacitySpec } from '../backtest/accumulate.js';
import type { BacktestJobs } from '../backtest/jobs.js';
import { renderBacktestHtml } from '../backtest/render.js';
import type { RulesetSource } from './state.js';

export interface BacktestRouteOptions {
  jobs: BacktestJobs;
  source: RulesetSource;
  historyDir: string;
  errorSchema: object;
}

const profileSet = { description: 'A profile set: an array of profiles, or { "profiles": [...] } as selectivity profiles export writes it.' };

export async function registerBacktestRoutes(app: FastifyInstance, o: BacktestRouteOptions): Promise<void> {
  const { jobs, source, errorSchema } = o;
  const jobSchema = { type: 'object', additionalProperties: true };

  app.post('/v1/backtests', {
    config: { access: 'write' },
    schema: {
      tags: ['backtests'],
      summary: 'Start a back-test: replay the history store with a candidate profile set beside a baseline (the active set by default).',
      description: 'Answers 202 with the job at once; poll GET /v1/backtests/{id} for progress and fetch the report when its status is done. Both sets use the active peers, watch lists and model. The job is written durably before the answer. Profiles are validated first (SEL_ERR_PROFILE_INVALID, nothing queued); a range with no stored declaration answers SEL_ERR_HISTORY_EMPTY.',
      body: {
        type: 'object', additionalProperties: false, required: ['profiles'],
        properties: {
          profiles: profileSet,
          against: { description: '"active" (default) or another profile set.' },
          name: { type: 'string', minLength: 1, maxLength: 100 },
          from: { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' },
          to: { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' },
          capacity: {
            description: 'Inspections per office per day: a number, or { "perOfficeDay": n, "byOffice": { "OF01": n } }.',
            anyOf: [
              { type: 'integer', minimum: 0 },
              { type: 'object', additionalProperties: false, required: ['perOfficeDay'], properties: { perOfficeDay: { type: 'integer', minimum: 0 }, byOffice: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } } } },
            ],
          },
          tooMuch: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        },
      },
      response: { 202: jobSchema, '4xx': errorSchema, '5xx': errorSchema },
    },
  }, async (req, reply) => {
    const b = req.body as { profiles: unknown; against?: unknown; name?: string; from?: string; to?: string; capacity?: number | CapacitySpec; tooMuch?: number };
    const candidate = source.composeWith(b.profiles);
    const against = b.against === undefined ? 'active' : b.against; // null is refused (it read as "active")
    let baseline;
    if (against === 'active') baseline = source.composeWith(source.profiles.activeAt(Date.now()));
    else if (typeof against === 'object' && against !== null) baseline = source.composeWith(against);
    else throw errors.SEL_ERR_REQUEST_INVALID('against must be "active" or a profile set', { field: 'against', expected: '"active", an array of profiles or { "profiles": [...] }', got: against });
    const capacity = typeof b.capacity === 'number' ? { perOfficeDay: b.capacity } : b.capacity;
    if (capacity) validateCapacity(capacity);
    planRange(o.historyDir, b.from, b.to); // a named error now rather than a failed job later
    const job = jobs.submit(candidate, baseline, { names: [b.name ?? 'candidate', against === 'active' ? 'active' : 'baseline'], from: b.from, to: b.to, capacity, tooMuch: b.tooMuch });
    return reply.code(202).header('location', `/v1/backtests/${job.id}`).send(job);
  });

  app.get('/v1/backtests', {
    config: { access: 'read' },
    schema: { tags: ['backtests'], summary: 'The back-test jobs of this data directory, newest first (reports left out).', response: { 200: { type: 'object', additionalProperties: true } } },
  }, async () => ({ jobs: jobs.list() }));

  const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } };

  app.get('/v1/backtests/:id', {
    config: { access: 'read' },
    schema: { tags: ['backtests'], summary: 'A back-test job: status (queued, running, done, failed, cancelled, interrupted), progress, error, and the report when done.', params: idParams, response: { 200: jobSchema, '4xx': errorSchema } },
  }, async (req) => jobs.get((req.params as { id: string }).id));

  app.get('/v1/backtests/:id/report', {
    config: { access: 'read' },
    schema: { tags: ['backtests'], summary: 'The report of a finished back-test: JSON, or a self-contained HTML page with charts (Accept: text/html).', params: idParams, response: { '4xx': errorSchema } },
  }, async (req, reply) => {
    const job = jobs.get((req.params as { id: string }).id);
    // queued or running: later; failed, cancelled or interrupted: never (it read 409 "pending" too, as if to retry)
    if (job.status === 'queued' || job.status === 'running') throw errors.SEL_ERR_BACKTEST_PENDING(`back-test ${job.id} is ${job.status}: no report yet`, { field: 'status', expected: 'done', got: job.status });
    if (job.status !== 'done' || !job.result) throw errors.SEL_ERR_BACKTEST_NO_REPORT(`back-test ${job.id} is ${job.status}: it has no report and will have none; submit it again`, { field: 'status', expected: 'done', got: job.status });
    if (chooseAnswer(req.headers.accept, ['application/json', 'text/html']) === 'text/html') return reply.type('text/html; charset=utf-8').send(renderBacktestHtml(job.result));
    return reply.type('application/json; charset=utf-8').send(JSON.stringify(job.result));
  });

  app.delete('/v1/backtests/:id', {
    config: { access: 'write' },
    schema: { tags: ['backtests'], summary: 'Cancel a queued or running back-test, or delete a finished one (its file too).', params: idParams, response: { 200: jobSchema, '4xx': errorSchema } },
  }, async (req) => {
    return jobs.remove((req.params as { id: string }).id);
  });
}
