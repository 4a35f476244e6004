import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errors, isSelectivityError, preview, SelectivityError, type ErrorFactory } from '../src/errors.js';

const entries = Object.entries(errors) as [string, ErrorFactory][];
const docPath = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

describe('error registry', () => {
  it('holds codes (sanity: the registry is not empty and has the codes other modules raise)', () => {
    expect(entries.length).toBeGreaterThanOrEqual(10);
    for (const code of ['SEL_ERR_DECL_FIELD_REQUIRED', 'SEL_ERR_PROFILE_INVALID', 'SEL_ERR_OPTION_INVALID', 'SEL_ERR_FILE_NOT_FOUND', 'SEL_ERR_PEERS_INVALID']) {
      expect(Object.keys(errors)).toContain(code);
    }
  });

  it.each(entries)('%s: key equals code, code well formed, status 4xx/5xx, summary non-empty', (key, factory) => {
    expect(factory.code).toBe(key);
    expect(factory.code).toMatch(/^SEL_ERR_[A-Z_]+$/);
    expect(Number.isInteger(factory.statusCode)).toBe(true);
    expect(factory.statusCode).toBeGreaterThanOrEqual(400);
    expect(factory.statusCode).toBeLessThan(600);
    expect(typeof factory.summary).toBe('string');
    expect(factory.summary.trim().length).toBeGreaterThan(0);
  });

  it('has no two factories sharing a code', () => {
    const codes = entries.map(([, f]) => f.code);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('a factory builds a SelectivityError with code, status, message, details and a toJSON shape', () => {
    const details = { field: 'hs', expected: 'a string of 6 to 10 digits', got: '12' };
    const e = errors.SEL_ERR_DECL_FIELD_FORMAT('hs: bad', details);
    expect(e).toBeInstanceOf(SelectivityError);
    expect(e).toBeInstanceOf(Error);
    expect(isSelectivityError(e)).toBe(true);
    expect(e.name).toBe('SelectivityError');
    expect(e.code).toBe('SEL_ERR_DECL_FIELD_FORMAT');
    expect(e.statusCode).toBe(errors.SEL_ERR_DECL_FIELD_FORMAT.statusCode);
    expect(e.statusCode).toBe(400);
    expect(e.message).toBe('hs: bad');
    expect(e.details).toEqual(details);
    expect(e.toJSON()).toEqual({ code: 'SEL_ERR_DECL_FIELD_FORMAT', message: 'hs: bad', details });
    expect(Object.keys(e.toJSON()).sort()).toEqual(['code', 'details', 'message']);
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 'SEL_ERR_DECL_FIELD_FORMAT', message: 'hs: bad', details });
  });

  it('details default to an empty object; status follows the factory', () => {
    const e = errors.SEL_ERR_ENGINE_CLOSED('closed');
    expect(e.details).toEqual({});
    expect(e.statusCode).toBe(503);
    expect(errors.SEL_ERR_KERNEL_LOAD('x').statusCode).toBe(500);
    expect(errors.SEL_ERR_PROFILE_DUPLICATE('x').statusCode).toBe(409);
  });

  it('isSelectivityError rejects plain errors and look-alikes', () => {
    expect(isSelectivityError(new Error('x'))).toBe(false);
    expect(isSelectivityError({ code: 'SEL_ERR_DECL_PARSE', message: 'x' })).toBe(false);
    expect(isSelectivityError(null)).toBe(false);
  });

  it('preview shortens long strings only', () => {
    expect(preview('a'.repeat(100))).toBe(`${'a'.repeat(80)}…`);
    expect(preview('abc')).toBe('abc');
    expect(preview('a'.repeat(10), 5)).toBe('aaaaa…');
    expect(preview(12345)).toBe(12345);
  });

  it('preview gives what JSON can write, bounded: BigInt, NaN and ±Infinity as text, big or deep values summarised', () => {
    expect(preview(5n)).toBe('5n');
    expect([preview(NaN), preview(Infinity), preview(-Infinity)]).toEqual(['NaN', 'Infinity', '-Infinity']);
    expect(preview({ a: [1, 2n, NaN] })).toEqual({ a: [1, '2n', 'NaN'] });
    expect(preview(Array.from({ length: 1000 }, (_, i) => i))).toBe('an array');
    let deep: unknown = 1;
    for (let k = 0; k < 10_000; k++) deep = { k: deep };
    expect(preview(deep)).toBe('an object');
    // a key "__proto__" stays a key of the copy, not its prototype
    const odd = JSON.parse('{"__proto__": {"x": 1}}') as object;
    const shown = preview(odd) as Record<string, unknown>;
    expect(Object.getPrototypeOf(shown)).toBe(Object.prototype);
    expect(JSON.stringify(shown)).toBe('{"__proto__":{"x":1}}');
    // every error's details.got goes through it
    expect(errors.SEL_ERR_OPTION_INVALID('x', { got: { a: 5n } }).toJSON().details.got).toEqual({ a: '5n' });
  });
});

describe('docs/errors.md', () => {
  // docs/errors.md is written separately; this check holds once it exists.
  it('documents every code as a table row "| `CODE` |"', () => {
    expect(existsSync(docPath), `${docPath} does not exist`).toBe(true);
    const doc = readFileSync(docPath, 'utf8');
    const rows = new Set(doc.split(/\r?\n/).filter((l) => l.startsWith('| `')).map((l) => /^\| `([^`]+)` \|/.exec(l)?.[1]));
    const missing = entries.map(([code]) => code).filter((code) => !rows.has(code));
    expect(missing).toEqual([]);
  });
});
