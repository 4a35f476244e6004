/**
 * validateDeclaration's fast path (cleanDeclaration) against the general path:
 * on random declarations, clean and mutated in every way the general path
 * normalises or rejects, both give the same verdict and the same value.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cleanDeclaration, FIELDS, validateDeclaration, validateDeclarationGeneral } from '../src/model/schema.js';
import { randomDeclarations } from './helpers.js';

const base = randomDeclarations(200, 31).map((d, i) => ({ ...d, departure: d.origin, transportMode: '1', taxRate: 5, quantity: 3 + i, description: 'bolts, of steel', aeo: i % 2 === 0 }));

const oddValues: unknown[] = [
  undefined, null, '', ' ', '  x', 'x ', 'x', 'cn', 'CN', 'C', 'CHN', '8517.12', '851712 ', ' 851712', '85171', '85171200001', '851712',
  '2025-02-29', '2024-02-29', '2024-2-29', ' 2024-02-29', 0, -0, -1, 1.5, 1e16, 1e13, 1001, NaN, Infinity, true, false, 'true',
  [], {}, 'é', '\u00a0x', 'x\u2028', 'a'.repeat(64), 'a'.repeat(65), 'd'.repeat(4097), '\tdesc', 'ÉCROUS',
];

describe('validateDeclaration fast path', () => {
  it('accepts the clean declarations itself', () => {
    for (const d of base) expect(cleanDeclaration(d), d.id).toBeDefined();
  });

  it('gives exactly the general verdict and value on mutated declarations', () => {
    const names = FIELDS.map((f) => f.name as string).concat(['unknownField', '__proto__']);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length - 1 }), fc.array(fc.tuple(fc.constantFrom(...names), fc.constantFrom(...oddValues), fc.boolean()), { maxLength: 3 }), fc.boolean(), (k, edits, rejectUnknown) => {
        const d: Record<string, unknown> = { ...base[k] };
        for (const [field, value, remove] of edits) {
          if (remove) delete d[field];
          else if (field === '__proto__') Object.defineProperty(d, '__proto__', { value, enumerable: true, configurable: true, writable: true });
          else d[field] = value;
        }
        const options = { rejectUnknown };
        expect(validateDeclaration(d, options)).toEqual(validateDeclarationGeneral(d, options));
      }),
      { numRuns: 3000 },
    );
  });

  it('leaves non-plain objects and non-objects to the general path', () => {
    expect(cleanDeclaration(Object.assign(Object.create({ hs: '851712' }), base[0]))).toBeUndefined();
    expect(cleanDeclaration(null)).toBeUndefined();
    expect(cleanDeclaration([base[0]])).toBeUndefined();
    expect(validateDeclaration('x')).toEqual(validateDeclarationGeneral('x'));
  });
});

describe('validateDeclaration on values JSON cannot hold', () => {
  it('reports a BigInt (a MessagePack int64) as a type error instead of throwing', () => {
    const v = validateDeclaration({ ...base[0], customsValue: 12n });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.issues[0]).toMatchObject({ code: 'SEL_ERR_DECL_FIELD_TYPE', field: 'customsValue', got: '12n' });
    expect(() => JSON.stringify(v)).not.toThrow();
  });
});
