/**
 * `selectivity backup`: a copy of a data directory taken while the service
 * writes is a data directory a service runs on, with every decision
 * acknowledged before the backup began; the copy of a store is checked; a
 * backup never writes over files.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backupCommand } from '../src/cli/backup.js';
import { historyCommand } from '../src/cli/history.js';
import { readManifest } from '../src/history/store.js';
import { packageRoot } from '../src/paths.js';
import { startService } from '../src/service/service.js';
import { STORE_FILE } from '../src/store/sqlite.js';
import { call, damageIdIndex, declarations, logRows, tokensEnv } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-backup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const start = (dataDir: string) => startService({ host: '127.0.0.1', port: 0, dataDir, tokensEnv, threads: 1, metricsIntervalMs: 60_000 });
const score = (base: string, prefix: string, n: number) =>
  call(base, 'POST', '/v1/score', { role: 'port', type: 'application/json', body: JSON.stringify({ declarations: declarations(n, 3, prefix) }) });

describe('selectivity backup', () => {
  it('copies a data directory while the service scores: the copy serves the same ruleset and holds every decision acknowledged before it began', async () => {
    const data = join(dir, 'live');
    const s = await start(data);
    const to = join(dir, 'copy');
    try {
      for (let k = 0; k < 5; k++) expect((await score(s.url, `B${k}-`, 200)).status).toBe(200);
      // a history store too (the back-tests' input): its segments and manifest are copied
      const quietly = process.stderr.write.bind(process.stderr);
      process.stderr.write = (() => true) as typeof process.stderr.write;
      try {
        expect(await historyCommand(['import', join(packageRoot(), 'examples', 'declarations.csv'), '--data-dir', data])).toBe(0);
      } finally {
        process.stderr.write = quietly;
      }
      chmodSync(join(data, 'peers.json'), 0o644); // as an earlier version left it
      const version = (await call(s.url, 'GET', '/readyz')).json().rulesetVersion as string;
      // the service goes on scoring while the backup runs
      let stop = false;
      let k = 0;
      const load = (async () => { while (!stop) expect((await score(s.url, `L${k++}-`, 100)).status).toBe(200); })();
      const lines: string[] = [];
      const write = process.stdout.write.bind(process.stdout);
      process.stdout.write = ((c: string) => { lines.push(String(c)); return true; }) as typeof process.stdout.write;
      let code: number;
      try {
        code = await backupCommand(['--data-dir', data, '--to', to, '--json']);
      } finally {
        process.stdout.write = write;
        stop = true;
        await load;
      }
      expect(code).toBe(0);
      const report = JSON.parse(lines.join('')) as { files: { file: string; bytes: number }[] };
      expect(report.files.map((f) => f.file)).toEqual(expect.arrayContaining([STORE_FILE, 'peers.json']));
      expect(statSync(to).mode & 0o777).toBe(0o700);
      // owner-only, as the service makes its store (the umask would give 0644)
      expect(statSync(join(to, STORE_FILE)).mode & 0o777).toBe(0o600);
      // and the copy's other files, whatever the source's mode (peers.json: 0644, as an earlier version made it)
      for (const f of ['peers.json', 'history/manifest.json', ...readManifest(join(to, 'history')).segments.map((x) => `history/${x.file}`)]) expect(statSync(join(to, f)).mode & 0o777, f).toBe(0o600);
      expect(readdirSync(dir).filter((f) => f.includes('.unfinished-'))).toEqual([]);
      // the copy: every decision of before the backup, and no partial file
      const before = logRows(to, (r) => String(r.declaration_id).startsWith('B'));
      expect(before.length).toBe(5 * declarations(200, 3, 'x').length);
      expect(readdirSync(to).filter((f) => f.endsWith('.partial'))).toEqual([]);
      const manifest = readManifest(join(to, 'history'));
      expect(manifest).toEqual(readManifest(join(data, 'history')));
      expect(manifest.rows).toBeGreaterThan(0);
      for (const seg of manifest.segments) expect(readFileSync(join(to, 'history', seg.file))).toEqual(readFileSync(join(data, 'history', seg.file)));
      await s.close();
      const again = await start(to);
      try {
        expect((await call(again.url, 'GET', '/readyz')).json()).toMatchObject({ status: 'ready', rulesetVersion: version });
        expect((await score(again.url, 'C-', 10)).status).toBe(200);
      } finally {
        await again.close();
      }
    } finally {
      await s.close();
    }
  }, 120_000);

  it('never writes over files, refuses a copy inside the data directory, and leaves nothing when the store is missing', async () => {
    const data = join(dir, 'live'); // made by the test above
    const busy = join(dir, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'keep.txt'), 'x');
    await expect(backupCommand(['--data-dir', data, '--to', busy])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'to' } });
    expect(readdirSync(busy)).toEqual(['keep.txt']);
    await expect(backupCommand(['--data-dir', data, '--to', join(data, 'inner')])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'to' } });
    expect(existsSync(join(data, 'inner'))).toBe(false);
    // a name inside it that begins with two dots is inside it too
    await expect(backupCommand(['--data-dir', data, '--to', join(data, '..x')])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'to' } });
    expect(existsSync(join(data, '..x'))).toBe(false);
    // an empty directory is taken (the finished copy takes its place)
    const empty = join(dir, 'empty-copy');
    mkdirSync(empty);
    expect(await backupCommand(['--data-dir', data, '--to', empty, '--json'])).toBe(0);
    expect(readdirSync(empty)).toContain(STORE_FILE);
    expect(statSync(empty).mode & 0o777).toBe(0o700);
    await expect(backupCommand(['--data-dir', join(dir, 'nothing'), '--to', join(dir, 'n2')])).rejects.toMatchObject({ code: 'SEL_ERR_FILE_NOT_FOUND', details: { field: 'data-dir' } });
    expect(existsSync(join(dir, 'n2'))).toBe(false);
    await expect(backupCommand(['--data-dir', data])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'to' } });
  });
});

describe('selectivity backup of a damaged store', () => {
  it('fails on the copy\'s check, names what it found, and leaves no copy', async () => {
    const data = join(dir, 'damaged');
    const s = await start(data);
    expect((await score(s.url, 'D-', 20)).status).toBe(200);
    await s.close();
    damageIdIndex(join(data, STORE_FILE));
    const to = join(dir, 'damaged-copy');
    const err = await backupCommand(['--data-dir', data, '--to', to, '--json']).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SEL_ERR_STORAGE', details: { field: 'store' } });
    expect((err as { details: { got: string[] } }).details.got.length).toBeGreaterThan(0);
    expect(existsSync(to)).toBe(false);
  }, 60_000);
});
