/**
 * Keyword watch-list routes (analyst and admin), versioned like profiles.
 * Every change is committed to the store, then the ruleset is rebuilt with
 * the active lists and swapped in (its terms become KEYWORD reasons).
 *
 *   GET  /v1/watchlists                    current versions with status
 *   GET  /v1/watchlists/export             the active lists as one exchange file
 *   GET  /v1/watchlists/:id                current version and history
 *   POST /v1/watchlists/import?replace=    import a set; one durable transaction
 *   POST /v1/watchlists/:id/activate | /retire
 */
import type { FastifyInstance } from 'fastify';
import type { RulesetSource } from './state.js';

const open = { type: 'object', additionalProperties: true } as const;

export async function registerWatchListRoutes(app: FastifyInstance, o: { source: RulesetSource; errorSchema: object; rulesetInfo: (version?: string) => object }): Promise<void> {
  const { source, errorSchema } = o;
  const store = source.watchLists;
  const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
  // these routes take no query: ?status=active or ?all=true (which the profile routes take) is refused, not ignored
  app.get('/v1/watchlists', { config: { access: 'read' }, schema: { tags: ['watch lists'], summary: 'Keyword watch lists (current versions, every status) with status and last change.', response: { 200: open, '4xx': errorSchema } } },
    async () => ({ watchLists: store.list() }));
  app.get('/v1/watchlists/export', { config: { access: 'read' }, schema: { tags: ['watch lists'], summary: 'The active watch lists as one exchange file.', response: { 200: open, '4xx': errorSchema } } },
    async () => store.exportSet());
  app.get('/v1/watchlists/:id', { config: { access: 'read' }, schema: { tags: ['watch lists'], summary: 'A watch list: current version and history.', params: idParams, response: { 200: open, '4xx': errorSchema } } },
    async (req) => { const h = store.history((req.params as { id: string }).id); return { current: h[h.length - 1], history: h }; });
  app.post('/v1/watchlists/import', {
    config: { access: 'write' },
    schema: {
      tags: ['watch lists'], summary: 'Import watch lists ({"watchLists": [...]}): validated whole, one durable transaction, new versions for new or changed lists; replace=true retires active lists absent from the set.',
      querystring: { type: 'object', additionalProperties: false, properties: { replace: { type: 'string', enum: ['true', 'false'] } } },
      // what `selectivity text lists import` reads from its file: {"watchLists": [...]} (an export too) or a bare array, checked by the store
      body: { type: ['object', 'array'], description: 'watch lists {"watchLists": [...]} (as exported), or an array of lists' },
      response: { 200: open, '4xx': errorSchema },
    },
  }, async (req) => {
    const { result, version } = await source.commitWrite(store.prepareImport(req.body, { by: req.actor ?? 'api', replace: (req.query as { replace?: string }).replace === 'true' }));
    return { changes: result, ruleset: o.rulesetInfo(version) };
  });
  for (const action of ['activate', 'retire'] as const) {
    app.post(`/v1/watchlists/:id/${action}`, { config: { access: 'write' }, schema: { tags: ['watch lists'], summary: `${action === 'activate' ? 'Activate' : 'Retire'} a watch list (a new version).`, params: idParams, response: { 200: open, '4xx': errorSchema } } },
      async (req) => {
        const { result, version } = await source.commitWrite(store.prepareStatus((req.params as { id: string }).id, action === 'activate' ? 'active' : 'retired', req.actor ?? 'api'));
        return { watchList: result, ruleset: o.rulesetInfo(version) };
      });
  }
}
