/**
 * What was acknowledged survives a crash. A real `selectivity serve`
 * process (a scoring worker, the decision-log writer thread) takes batches,
 * a bulk stream and examination results from concurrent clients and is killed with
 * SIGKILL in the middle of that load: no graceful stop, no flush. Every
 * decision a client received an answer for must be in the log afterwards,
 * as answered, and every examination result and profile change
 * acknowledged must be stored; the service then starts again on the same
 * data directory and goes on.
 * Runs from dist/ (`npm run build:ts` first), like the other process tests.
 */
import { request as httpRequest } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';
import { openStore, STORE_FILE } from '../src/store/sqlite.js';
import { DecisionLogReader } from '../src/feedback/log-reader.js';
import { FeedbackStore } from '../src/feedback/feedback.js';
import { ProfileStore } from '../src/profiles/store.js';
import type { Profile } from '../src/profiles/profile.js';
import type { Decision } from '../src/decisions.js';
import { call, declarations, spawnServe, TOKENS } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The service under test: one scoring worker and the decision log's writer thread. */
const serve = (dataDir: string) => spawnServe(dataDir, ['--threads', '1', '--decision-log', 'on']);

describe('a crash of serve under load', () => {
  it('loses no acknowledged decision, examination result or profile change, and the service starts again on the same data', async () => {
    const dataDir = join(dir, 'data');
    const first = await serve(dataDir);
    /** Every decision answered, by declaration id. */
    const answered = new Map<string, Decision>();
    /** Every examination result acknowledged as recorded, by declaration id. */
    const recorded = new Map<string, string>();
    /** What was acknowledged: batches answered, streamed decisions received, profile imports answered (the first `acknowledged` weights sent). */
    let batches = 0;
    let streamed = 0;
    let acknowledged = 0;
    let stop = false;
    let killed = false;
    /** Kills serve, at once, once enough of everything has been acknowledged (called as stream answers arrive). */
    const killWhenDue = () => {
      if (killed || batches < 40 || recorded.size < 50 || acknowledged < 5 || streamed < 2000) return;
      killed = true;
      first.child.kill('SIGKILL');
    };
    const failures: unknown[] = [];

    // four clients scoring batches of 25 fresh ids, one recording results for decisions already answered (batches' and the stream's)
    const scorer = async (c: number) => {
      for (let b = 0; !stop; b++) {
        const decls = declarations(25, 1000 * c + b, `C${c}-B${b}-`);
        try {
          const r = await call(first.base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: decls }) });
          if (r.status !== 200) { if (r.status !== 503) failures.push(`${r.status} ${r.body.toString('utf8').slice(0, 300)}`); continue; }
          for (const d of r.json().decisions as Decision[]) answered.set(d.id, d);
          batches++;
        } catch { return; } // the connection died with the process: not acknowledged
      }
    };
    const reporter = async () => {
      const outcomes = ['no-discrepancy', 'discrepancy', 'seizure'];
      for (let k = 0; !stop; k++) {
        const ids = [...answered.keys()].filter((id) => !recorded.has(id)).slice(0, 10);
        if (ids.length === 0) { await new Promise((r) => setTimeout(r, 5)); continue; }
        const results = ids.map((id, i) => ({ declarationId: id, date: '2026-11-24', channel: answered.get(id)!.channel, inspected: true, outcome: outcomes[(k + i) % 3] }));
        try {
          const r = await call(first.base, 'POST', '/v1/feedback', { role: 'port', type: 'application/json', body: JSON.stringify({ results }) });
          if (r.status !== 200) { if (r.status !== 503) failures.push(`${r.status} ${r.body.toString('utf8').slice(0, 300)}`); continue; }
          for (const x of r.json().results as { declarationId: string; status: string }[]) {
            if (x.status === 'recorded') recorded.set(x.declarationId, results.find((y) => y.declarationId === x.declarationId)!.outcome);
          }
        } catch { return; }
      }
    };
    // an analyst changing a profile's weight, one import of the example set at a time
    const example = (JSON.parse(readFileSync(join(packageRoot(), 'examples', 'profiles.json'), 'utf8')) as { profiles: Profile[] }).profiles;
    const changed = example[0].id;
    /** The weights sent, in order. */
    const weights: number[] = [];
    const analyst = async () => {
      for (let k = 1; !stop; k++) {
        const weight = 1 + k / 100;
        weights.push(weight);
        const profiles = example.map((p) => (p.id === changed ? { ...p, weight } : p));
        try {
          const r = await call(first.base, 'POST', '/v1/profiles/import', { role: 'analyst', type: 'application/json', body: JSON.stringify({ profiles }) });
          if (r.status !== 200) { failures.push(`${r.status} ${r.body.toString('utf8').slice(0, 300)}`); return; }
          acknowledged = weights.length;
        } catch { return; }
      }
    };
    // a port streaming NDJSON: every decision line it has received counts as answered
    const streamer = () => new Promise<void>((resolve) => {
      const req = httpRequest(`${first.base}/v1/score/stream`, { method: 'POST', headers: { authorization: `Bearer ${TOKENS.port}`, 'content-type': 'application/x-ndjson', accept: 'application/x-ndjson' } }, (res) => {
        let tail = '';
        res.on('data', (c: Buffer) => {
          const lines = (tail + c.toString('utf8')).split('\n');
          tail = lines.pop()!;
          for (const line of lines) {
            const d = JSON.parse(line) as Decision & { error?: unknown };
            if (d.error === undefined) { answered.set(d.id, d); streamed++; }
          }
          // killed the moment a stream answer arrives: a decision sent before its commit would be caught here
          killWhenDue();
        });
        res.on('error', () => resolve());
        res.on('close', () => resolve());
      });
      req.on('error', () => resolve()); // the process died: what was received is what counts
      let k = 0;
      const pump = () => {
        while (!stop) {
          const lines = declarations(50, 9000 + k, `ST${k}-`).map((d) => JSON.stringify(d)).join('\n') + '\n';
          k++;
          if (!req.write(lines)) { req.once('drain', pump); return; }
        }
        req.end();
      };
      pump();
    });
    const clients = [0, 1, 2, 3].map(scorer).concat(reporter(), analyst(), streamer());
    // kill it once enough has been acknowledged, while the clients keep sending
    const deadline = Date.now() + 30_000;
    while (!killed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    stop = true;
    await Promise.all(clients);
    expect(failures).toEqual([]);
    expect(batches).toBeGreaterThanOrEqual(40);
    expect(recorded.size).toBeGreaterThanOrEqual(50);
    expect(acknowledged).toBeGreaterThanOrEqual(5);
    expect(streamed).toBeGreaterThanOrEqual(2000);

    // everything acknowledged is in the store, as it was answered
    const db = openStore(join(dataDir, STORE_FILE));
    try {
      const reader = new DecisionLogReader(db);
      for (const [id, d] of answered) {
        const logged = reader.latest(id);
        expect(logged, id).toBeDefined();
        expect([logged!.channel, logged!.score, logged!.rulesetVersion, logged!.reasons]).toEqual([d.channel, d.score, d.rulesetVersion, d.reasons]);
      }
      const feedback = new FeedbackStore(db);
      for (const [id, outcome] of recorded) expect(feedback.show(id).feedback, id).toMatchObject({ outcome });
      // every acknowledged weight is a version of the profile, in order; the current one is the last acknowledged or one sent after it
      const versions = new ProfileStore(db).history(changed).map((v) => v.profile.weight);
      const kept = weights.slice(0, acknowledged);
      expect(versions.filter((w) => kept.includes(w))).toEqual(kept);
      expect(weights.slice(acknowledged - 1)).toContain(versions.at(-1));
    } finally {
      db.close();
    }

    // the service starts again on the same data and goes on: a decision after the crash joins the log
    const again = await serve(dataDir);
    try {
      const [id, before] = [...answered][0];
      const decl = declarations(25, 0, 'X-').map((d) => ({ ...d, id }))[0];
      const r = await call(again.base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: [decl] }) });
      expect(r.status).toBe(200);
      const listed = await call(again.base, 'GET', `/v1/decisions/${encodeURIComponent(id)}`, { role: 'analyst' });
      expect(listed.status).toBe(200);
      const seqs = (listed.json().decisions as { seq: number; score: number }[]);
      expect(seqs).toHaveLength(2);
      expect(seqs[0].score).toBe(before.score);
      expect(seqs[1].seq).toBeGreaterThan(seqs[0].seq);
    } finally {
      again.child.kill('SIGTERM');
      expect(await again.exited).toBe(0);
    }
  }, 90_000);
});
