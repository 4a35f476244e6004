/**
 * Small file helpers every command goes through: reading a JSON input file
 * (profile sets, watch lists, models) and writing an output durably.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errors } from '../src/errors.js';
import { readJsonFile } from '../src/store/json-file.js';
import { STALE_TEMP_MS, TEMP_HOST, writeFileDurable } from '../src/store/durable.js';
import { AtomicOutput } from '../src/store/atomic-output.js';
import { scoreFile } from '../src/score-file.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readJsonFile', () => {
  it('skips a byte-order mark, as the declaration and mapping readers do', () => {
    const p = join(dir, 'bom.json');
    writeFileSync(p, `\ufeff${JSON.stringify({ profiles: [{ id: 'P1' }] })}`);
    expect(readJsonFile(p, 'profile set', 'profiles', errors.SEL_ERR_PROFILE_INVALID)).toEqual({ profiles: [{ id: 'P1' }] });
    // only a leading one: anything else that is not JSON is still refused with the set's own code
    writeFileSync(p, `{"a": 1}\ufeff`);
    expect(() => readJsonFile(p, 'profile set', 'profiles', errors.SEL_ERR_PROFILE_INVALID)).toThrow(expect.objectContaining({ code: 'SEL_ERR_PROFILE_INVALID' }));
  });
});

describe('writeFileDurable', () => {
  it('names the failure SEL_ERR_STORAGE when a parent of the path is a file (the cleanup of its temporary file used to throw ENOTDIR instead)', () => {
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    expect(() => writeFileDurable(join(file, 'out.json'), '{}')).toThrow(expect.objectContaining({ code: 'SEL_ERR_STORAGE', details: expect.objectContaining({ field: 'path' }) }));
    expect(readFileSync(file, 'utf8')).toBe('x');
  });
});

describe('writeFileDurable modes', () => {
  it('leaves a new file\'s mode to the umask, keeps the mode of the file it replaces, and sets a mode asked for', () => {
    const old = process.umask(0o077);
    try {
      const fresh = join(dir, 'model-077.json');
      writeFileDurable(fresh, '{}');
      expect(statSync(fresh).mode & 0o777).toBe(0o600); // it was 0o644 whatever the umask
      process.umask(0o022);
      writeFileDurable(fresh, '{"again":1}'); // replaced: still 0o600, not readable by others
      expect(statSync(fresh).mode & 0o777).toBe(0o600);
      const other = join(dir, 'export-022.json');
      writeFileDurable(other, '{}');
      expect(statSync(other).mode & 0o777).toBe(0o644);
      const secret = join(dir, 'tokens-like.json');
      writeFileDurable(secret, '{}', { mode: 0o600 });
      expect(statSync(secret).mode & 0o777).toBe(0o600);
      // createMode: a new file gets it whatever the umask; a file replaced keeps its own (an operator's chmod stands)
      const data = join(dir, 'peers-like.json');
      writeFileDurable(data, '{}', { createMode: 0o600 });
      expect(statSync(data).mode & 0o777).toBe(0o600);
      chmodSync(data, 0o640);
      writeFileDurable(data, '{"again":1}', { createMode: 0o600 });
      expect(statSync(data).mode & 0o777).toBe(0o640);
    } finally {
      process.umask(old);
    }
  });
});

describe('AtomicOutput', () => {
  it('replaces the file only on commit; a failed write throws SEL_ERR_STORAGE and leaves the earlier file and no temporary one', async () => {
    const path = join(dir, 'decisions.ndjson');
    writeFileSync(path, 'earlier\n');
    const ok = new AtomicOutput(path, 'out');
    await ok.write('one\n');
    expect(readFileSync(path, 'utf8')).toBe('earlier\n');
    await ok.commit();
    expect(readFileSync(path, 'utf8')).toBe('one\n');

    const bad = new AtomicOutput(path, 'out');
    await bad.write('two\n');
    bad.stream.destroy(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
    await expect(bad.write('three\n')).rejects.toMatchObject({ code: 'SEL_ERR_STORAGE', details: { field: 'out', got: 'ENOSPC' } });
    await expect(bad.commit()).resolves.toBeUndefined(); // discarded already: nothing to put in place
    expect(readFileSync(path, 'utf8')).toBe('one\n');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(process.listenerCount('SIGINT')).toBe(0);
  });
});

describe('temporary files left by a killed writer', () => {
  it('are removed by the next writer of the same file on the same host once their process is gone and they are a minute old; others stay', async () => {
    const at = join(dir, 'stale');
    mkdirSync(at);
    const dead = spawnSync(process.execPath, ['-e', '']).pid!; // a process that has exited
    const old = (Date.now() - 2 * STALE_TEMP_MS) / 1000;
    const make = (name: string, aged: boolean) => { const p = join(at, name); writeFileSync(p, 'partial'); if (aged) utimesSync(p, old, old); return name; };
    const h = TEMP_HOST;
    const gone = [make(`.model.json.${h}.${dead}.0123abcd.tmp`, true), make(`.out.csv.${h}.${dead}.0123abce.tmp`, true)];
    const kept = [
      make(`.model.json.${h}.${dead}.0123abcf.tmp`, false), // young
      make(`.model.json.${h}.${process.pid}.0123abd0.tmp`, true), // this process's
      make(`.model.json.${h}.1.0123abd1.tmp`, true), // a process that runs
      make(`.other.json.${h}.${dead}.0123abd2.tmp`, true), // another file's
      make(`.model.json.${h}.${dead}.tmp`, true), // not a name of ours
      make(`.model.json.another-host.${dead}.0123abd3.tmp`, true), // another host's (or container's): its pid means nothing here
      make(`.model.json.${dead}.0123abd4.tmp`, true), // the name before the host was in it: left as it is
    ];
    writeFileDurable(join(at, 'model.json'), '{}');
    const out = new AtomicOutput(join(at, 'out.csv'), 'out');
    await out.write('a\n');
    await out.commit();
    const left = readdirSync(at);
    for (const g of gone) expect(left, g).not.toContain(g);
    for (const k of kept) expect(left, k).toContain(k);
    expect(readFileSync(join(at, 'model.json'), 'utf8')).toBe('{}');
  });
});

describe('scoreFile', () => {
  it('fails with SEL_ERR_STORAGE when its output stream fails, instead of ending with nothing written and exit 0', async () => {
    const input = join(dir, 'in.csv');
    const rows = Array.from({ length: 3000 }, (_, i) => `S${i},2025-03-01,OF1,IMP${i % 7},851712,CN,${1000 + i},${10 + (i % 50)}`);
    writeFileSync(input, ['id,date,office,importer,hs,origin,customsValue,netMass', ...rows].join('\n') + '\n');
    let writes = 0;
    const full = new Writable({ highWaterMark: 16, write(_chunk, _enc, cb) { cb(++writes > 1 ? Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }) : null); } });
    await expect(scoreFile(input, { out: full, threads: 0, batchSize: 500 })).rejects.toMatchObject({ code: 'SEL_ERR_STORAGE', details: { got: 'ENOSPC' } });
  });
});
