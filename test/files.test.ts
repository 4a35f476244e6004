/**
 * Small file helpers every command goes through: reading a JSON input file
 * (profile sets, watch lists, models) and writing an output durably.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errors } from '../src/errors.js';
import { readJsonFile } from '../src/store/json-file.js';
import { writeFileDurable } from '../src/store/durable.js';

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
