/**
 * Profile lifecycle routes (analyst and admin): the store's profiles, their
 * versions, import / export of a set, activation and retirement. Every change
 * is committed to the store before the answer, then the ruleset is rebuilt
 * and swapped in (requests in flight finish on the version they started with).
 *
 *   GET  /v1/profiles?status=active|retired|all   current versions
 *   GET  /v1/profiles/:id                         current version and history
 *   GET  /v1/profiles/:id/versions/:version       one version (explains past decisions)
 *   POST /v1/profiles/import?replace=true|false   import a set (JSON)
 *   GET  /v1/profiles/export?all=true|false       the set as one exchange file
 *   POST /v1/profiles/:id/activate | /retire
 *   GET  /v1/profiles/stats?from&to&maxShare&minInspected   effectiveness
 */
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine.js';
import { queryNumber } from './query.js';
import type { RulesetSource } from './state.js';
import { profileStats } from '../profiles/effectiveness.js';

export interface ProfileRouteOptions {
  engine: Engine;
  source: RulesetSource;
  bodyLimit: number;
  errorSchema: object;
  rulesetInfo: (version?: string) => object;
}

const open = { type: 'object', additionalProperties: true } as const;

export async function registerProfileRoutes(app: FastifyInstance, o: ProfileRouteOptions): Promise<void> {
  const { engine, source, errorSchema } = o;
  const store = source.profiles;
  const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

  app.get('/v1/profiles', {
    config: { access: 'read' },
    schema: {
      tags: ['profiles'], summary: 'The stored profiles (current versions) with status and last change.',
      querystring: { type: 'object', additionalProperties: false, properties: { status: { type: 'string', enum: ['active', 'retired', 'all'] } } },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const { status } = req.query as { status?: 'active' | 'retired' | 'all' };
    const now = Date.now();
    const active = new Set(store.activeAt(now).map((p) => p.id));
    return { profiles: store.list(status ?? 'all').map((r) => ({ ...r, inForce: active.has(r.profile.id) })) };
  });

  app.get('/v1/profiles/export', {
    config: { access: 'read' },
    schema: {
      tags: ['profiles'], summary: 'The active set as one exchange file (import it elsewhere with POST /v1/profiles/import or selectivity profiles import); all=true adds the retired ones under "retired".',
      querystring: { type: 'object', additionalProperties: false, properties: { all: { type: 'string', enum: ['true', 'false'] } } },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => store.exportSet((req.query as { all?: string }).all === 'true'));

  app.get('/v1/profiles/stats', {
    config: { access: 'read' },
    schema: {
      tags: ['profiles'],
      summary: 'Effectiveness per profile over a period: declarations matched and share of traffic, inspected, non-compliant (hit rate), revenue recovered; flags matches-too-much, never-hits, no-matches.',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          // the values are checked by profileStats, as for `selectivity profiles stats`: SEL_ERR_OPTION_INVALID naming the field either way
          from: { type: 'string', description: 'first day, YYYY-MM-DD' }, to: { type: 'string', description: 'last day, YYYY-MM-DD' },
          maxShare: { type: 'string', description: 'a share of traffic in [0, 1] (default 0.05)' }, minInspected: { type: 'string', description: 'an integer of at least 1 (default 20)' },
        },
      },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const q = req.query as { from?: string; to?: string; maxShare?: string; minInspected?: string };
    await source.usage.flushWhenFree();
    return profileStats(source.database, { from: q.from, to: q.to, maxShare: queryNumber(q.maxShare), minInspected: queryNumber(q.minInspected) });
  });

  app.get('/v1/profiles/:id', {
    config: { access: 'read' },
    schema: { tags: ['profiles'], summary: 'A profile: its current version and every earlier one (who changed what, when).', params: idParams, response: { 200: open, '4xx': errorSchema } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    const history = store.history(id);
    return { current: history[history.length - 1], history };
  });

  app.get('/v1/profiles/:id/versions/:version', {
    config: { access: 'read' },
    schema: {
      tags: ['profiles'], summary: 'One version of a profile, as a decision made with it saw it (GET /v1/ruleset lists the versions in force).',
      params: { type: 'object', required: ['id', 'version'], properties: { id: { type: 'string', maxLength: 64 }, version: { type: 'string', pattern: '^[1-9][0-9]{0,8}$' } } },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const { id, version } = req.params as { id: string; version: string };
    return store.version(id, Number(version));
  });

  app.post('/v1/profiles/import', {
    config: { access: 'write' },
    schema: {
      tags: ['profiles'],
      summary: 'Import a profile set: validated whole, one durable transaction, new versions for new or changed profiles; replace=true retires the active profiles absent from the set. 200 after the commit.',
      querystring: { type: 'object', additionalProperties: false, properties: { replace: { type: 'string', enum: ['true', 'false'] } } },
      // what `selectivity profiles import` reads from its file: a set {"profiles": [...]} (an export too) or a bare array, checked by the store
      body: { type: ['object', 'array'], description: 'a profile set {"profiles": [...]} (as exported), or an array of profiles' },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const { result, version } = await source.commitWrite(store.prepareImport(req.body, { by: req.actor ?? 'api', replace: (req.query as { replace?: string }).replace === 'true' }));
    return { changes: result, ruleset: o.rulesetInfo(version) };
  });

  for (const action of ['activate', 'retire'] as const) {
    app.post(`/v1/profiles/:id/${action}`, {
      config: { access: 'write' },
      schema: {
        tags: ['profiles'],
        summary: action === 'activate' ? 'Activate a profile (a new version); it applies within its active window.' : 'Retire a profile (a new version); it stops applying at once.',
        params: idParams,
        response: { 200: open, '4xx': errorSchema },
      },
    }, async (req) => {
      const { id } = req.params as { id: string };
      const { result, version } = await source.commitWrite(store.prepareStatus(id, action === 'activate' ? 'active' : 'retired', req.actor ?? 'api'));
      return { profile: result, ruleset: o.rulesetInfo(version) };
    });
  }
}
