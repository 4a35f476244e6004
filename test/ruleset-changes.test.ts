/**
 * Reloads against the other changes of the service's ruleset: a reload
 * installs the files as they are when its turn comes, and a model file
 * removed is no longer scored after one reload.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDeclarations } from '../src/generate/synthetic.js';
import { toBatch } from '../src/model/columnar.js';
import { PeerTableBuilder } from '../src/peers/peer-groups.js';
import { encodeSnapshot } from '../src/peers/peer-store.js';
import { openStore } from '../src/store/sqlite.js';
import { runCli } from './helpers.js';
import { inProcessService, TOKENS } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-changes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const admin = { authorization: `Bearer ${TOKENS.admin}` };

describe('a ruleset reload', () => {
  it('queued behind a peer upload installs the uploaded snapshot, not the file as it was when the reload was asked for', async () => {
    const service = await inProcessService(join(dir, 'queued'));
    const { app, engine, files } = service;
    const other = openStore(files.storePath);
    try {
      const b = new PeerTableBuilder();
      b.add(toBatch([...generateDeclarations({ rows: 3000, seed: 5, hsCodes: 20 })].map((r) => r.declaration)).batch);
      b.addSource('upload', 3000);
      const snapshot = b.snapshot();
      const before = (await app.inject({ url: '/v1/peers', headers: admin })).json().version;
      // another writer holds the store: the upload waits for its lock, and the reload behind it
      other.prepare('BEGIN IMMEDIATE').run();
      const upload = app.inject({ method: 'PUT', url: '/v1/peers', headers: { ...admin, 'content-type': 'application/msgpack', accept: 'application/json' }, payload: encodeSnapshot(snapshot, 'msgpack') });
      await new Promise((r) => setTimeout(r, 50));
      const reload = app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: admin });
      await new Promise((r) => setTimeout(r, 50));
      other.prepare('COMMIT').run();
      const [u, r] = await Promise.all([upload, reload]);
      expect(u.statusCode, u.body).toBe(200);
      expect(r.statusCode, r.body).toBe(200);
      const uploaded = u.json().peers.version;
      expect(uploaded).not.toBe(before);
      // what scores and what is reported is the upload, as on disk
      expect((await app.inject({ url: '/v1/peers', headers: admin })).json().version).toBe(uploaded);
      expect((await app.inject({ url: '/v1/ruleset', headers: admin })).json().peers).toBe(uploaded);
      const installed = engine.rulesetVersion;
      expect(r.json().version).toBe(installed);
      // another reload finds nothing new to install
      expect((await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: admin })).json().version).toBe(installed);
    } finally {
      other.close();
      await service.close();
    }
  });

  it('after model.json is removed scores without the model: one reload is enough', async () => {
    const service = await inProcessService(join(dir, 'model'));
    const { app, engine, files } = service;
    try {
      const examples = join(fileURLToPath(new URL('..', import.meta.url)), 'examples', 'declarations.csv');
      const modelPath = join(files.dataDir, 'model.json');
      const trained = await runCli(['train', '--train', examples, '--label', 'fraud', '--out', modelPath, '--threads', '0']);
      expect(trained.code, trained.stderr).toBe(0);
      const withModel = (await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: admin })).json().version;
      expect((await app.inject({ url: '/v1/model', headers: admin })).json().model).not.toBeNull();
      expect(engine.meta().historyImage).not.toBeNull();
      rmSync(modelPath);
      const r = await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: admin });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().version).not.toBe(withModel);
      expect((await app.inject({ url: '/v1/model', headers: admin })).json().model).toBeNull();
      // it kept the removed model's tables, until a second reload
      expect(engine.meta().historyImage).toBeNull();
      expect((await app.inject({ method: 'POST', url: '/v1/ruleset/reload', headers: admin })).json().version).toBe(r.json().version);
    } finally {
      await service.close();
    }
  }, 60_000);
});
