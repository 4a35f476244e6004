import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadProfiles } from '../src/profiles/load.js';
import { MAX_PROFILES, NUMERIC_OPERANDS, NUMERIC_OPS, validateProfile, validateProfiles, type Profile } from '../src/profiles/profile.js';

const GOOD: Profile = {
  id: 'P-phones.CN:1',
  title: 'Phones from CN',
  description: 'under-valued phones',
  weight: 2.5,
  counterMeasure: { channel: 'orange', instructions: 'scan' },
  conditions: {
    hs: ['8517', '85171200'],
    origin: ['CN'],
    departure: ['VN'],
    office: ['OF1'],
    transportMode: ['1'],
    importer: ['IMP1'],
    declarant: ['DCL1'],
    seller: ['S1'],
    aeo: false,
    numeric: [{ field: 'z.unitValue', op: '<', value: -2 }, { field: 'customsValue', op: '>=', value: 1000 }],
  },
};

const base = (over: Record<string, unknown> = {}, cond: Record<string, unknown> = {}) => ({ id: 'P1', weight: 1, conditions: { ...cond }, ...over });

/** Expects raw to be rejected with SEL_ERR_PROFILE_INVALID whose details.field is `field`. */
function rejected(raw: unknown, field: string): void {
  let err: unknown;
  try { validateProfile(raw); } catch (e) { err = e; }
  expect(err, `expected ${JSON.stringify(raw)} to be rejected`).toMatchObject({ code: 'SEL_ERR_PROFILE_INVALID', statusCode: 400, details: { field } });
  expect((err as Error).message.startsWith(`${field}: expected `)).toBe(true);
}

describe('validateProfile', () => {
  it('accepts a profile using every condition and returns an equal normalised copy', () => {
    const v = validateProfile(structuredClone(GOOD));
    expect(v).toEqual(GOOD);
    expect(v).not.toBe(GOOD);
  });

  it('accepts a profile with no conditions (matches everything) and negative weights', () => {
    expect(validateProfile({ id: 'all', weight: -3, conditions: {} })).toEqual({ id: 'all', weight: -3, conditions: {} });
  });

  it('normalises: trims values, upper-cases country codes, drops duplicates', () => {
    const v = validateProfile(base({}, { origin: [' cn', 'CN', 'vn'], importer: [' IMP1 ', 'IMP1'], hs: [' 85 ', '85', '8517', '85'] }));
    expect(v.conditions.origin).toEqual(['CN', 'VN']);
    expect(v.conditions.importer).toEqual(['IMP1']);
    expect(v.conditions.hs).toEqual(['85', '8517']);
  });

  it('accepts keyword conditions, one per stem sequence, and rejects what cannot be a keyword', () => {
    expect(validateProfile(base({}, { keywords: [' Replica ', 'replicas', 'power bank', 'Power-Banks'] })).conditions.keywords).toEqual(['Replica', 'power bank']);
    rejected(base({}, { keywords: [] }), 'profile(P1).conditions.keywords');
    rejected(base({}, { keywords: 'replica' }), 'profile(P1).conditions.keywords');
    rejected(base({}, { keywords: ['replica', 7] }), 'profile(P1).conditions.keywords[1]');
    rejected(base({}, { keywords: ['ok', '!!! ---'] }), 'profile(P1).conditions.keywords[1]');
    rejected(base({}, { keywords: ['one two three four five six seven eight nine'] }), 'profile(P1).conditions.keywords[0]');
  });

  it('accepts every numeric operand and op', () => {
    for (const field of NUMERIC_OPERANDS) for (const op of NUMERIC_OPS) {
      expect(validateProfile(base({}, { numeric: [{ field, op, value: 1.5 }] })).conditions.numeric).toEqual([{ field, op, value: 1.5 }]);
    }
  });

  it('rejects non-objects and bad ids', () => {
    rejected(null, 'profile');
    rejected([], 'profile');
    rejected('P1', 'profile');
    rejected(base({ id: '' }), 'profile.id');
    rejected(base({ id: 'has space' }), 'profile.id');
    rejected(base({ id: '-starts-with-dash' }), 'profile.id');
    rejected(base({ id: 'x'.repeat(65) }), 'profile.id');
    rejected(base({ id: 7 }), 'profile.id');
  });

  it('rejects a bad weight', () => {
    for (const weight of [undefined, '1', NaN, Infinity, 1e7, -1e7, null]) rejected(base({ weight }), 'profile(P1).weight');
  });

  it('rejects unknown top-level keys and unknown condition keys', () => {
    rejected(base({ channel: 'red' }), 'profile.channel');
    rejected(base({}, { hsCode: ['85'] }), 'profile(P1).conditions.hsCode');
    rejected(base({}, { Origin: ['CN'] }), 'profile(P1).conditions.Origin');
  });

  it('rejects bad conditions', () => {
    rejected(base({ conditions: null }), 'profile(P1).conditions');
    rejected(base({ conditions: [] }), 'profile(P1).conditions');
    rejected(base({ conditions: undefined }), 'profile(P1).conditions');
    rejected(base({}, { hs: ['851'] }), 'profile(P1).conditions.hs[0]');
    rejected(base({}, { hs: ['85', '85171'] }), 'profile(P1).conditions.hs[1]');
    rejected(base({}, { hs: [] }), 'profile(P1).conditions.hs');
    rejected(base({}, { hs: '85' }), 'profile(P1).conditions.hs');
    rejected(base({}, { origin: ['CHN'] }), 'profile(P1).conditions.origin[0]');
    rejected(base({}, { importer: ['IMP1', ''] }), 'profile(P1).conditions.importer[1]');
    rejected(base({}, { office: [1] }), 'profile(P1).conditions.office[0]');
    rejected(base({}, { aeo: 'yes' }), 'profile(P1).conditions.aeo');
  });

  it('rejects a bad numeric operand, op or value', () => {
    rejected(base({}, { numeric: [{ field: 'weight', op: '<', value: 1 }] }), 'profile(P1).conditions.numeric[0].field');
    rejected(base({}, { numeric: [{ field: 'z.customsValue', op: '<', value: 1 }] }), 'profile(P1).conditions.numeric[0].field');
    rejected(base({}, { numeric: [{ field: 'taxRate', op: '<', value: 1 }, { field: 'taxRate', op: '==', value: 1 }] }), 'profile(P1).conditions.numeric[1].op');
    rejected(base({}, { numeric: [{ field: 'taxRate', op: '!=', value: 1 }] }), 'profile(P1).conditions.numeric[0].op');
    rejected(base({}, { numeric: [{ field: 'taxRate', op: '<', value: '1' }] }), 'profile(P1).conditions.numeric[0].value');
    rejected(base({}, { numeric: [{ field: 'taxRate', op: '<', value: NaN }] }), 'profile(P1).conditions.numeric[0].value');
    rejected(base({}, { numeric: [{ field: 'taxRate', op: '<', value: Infinity }] }), 'profile(P1).conditions.numeric[0].value');
    rejected(base({}, { numeric: [null] }), 'profile(P1).conditions.numeric[0]');
    rejected(base({}, { numeric: [] }), 'profile(P1).conditions.numeric');
    rejected(base({}, { numeric: Array.from({ length: 17 }, () => ({ field: 'taxRate', op: '<', value: 1 })) }), 'profile(P1).conditions.numeric');
  });

  it('rejects a date the calendar does not have (Date.parse rolled 2026-02-30 over to March 2), and unknown keys in a counter-measure or a numeric condition (they were dropped without a word)', () => {
    for (const d of ['2026-02-30', '2026-02-29', '2026-04-31', '2027-02-30T08:00:00Z']) {
      rejected(base({ activeFrom: d }), 'profile(P1).activeFrom');
      rejected(base({ activeUntil: d }), 'profile(P1).activeUntil');
    }
    expect(validateProfile(base({ activeFrom: '2028-02-29', activeUntil: '2028-03-01T00:00:00+01:00' }))).toMatchObject({ activeFrom: '2028-02-29T00:00:00.000Z', activeUntil: '2028-02-29T23:00:00.000Z' });
    rejected(base({ counterMeasure: { channel: 'red', instruction: 'Physical exam' } }), 'profile(P1).counterMeasure.instruction');
    rejected(base({}, { numeric: [{ field: 'customsValue', op: '>', value: 1, unit: 'USD' }] }), 'profile(P1).conditions.numeric[0].unit');
  });

  it('rejects a bad counter-measure', () => {
    rejected(base({ counterMeasure: { channel: 'purple' } }), 'profile(P1).counterMeasure.channel');
    rejected(base({ counterMeasure: { channel: 'RED' } }), 'profile(P1).counterMeasure.channel');
    rejected(base({ counterMeasure: {} }), 'profile(P1).counterMeasure.channel');
    rejected(base({ counterMeasure: null }), 'profile(P1).counterMeasure');
    rejected(base({ counterMeasure: 'red' }), 'profile(P1).counterMeasure');
    rejected(base({ counterMeasure: { channel: 'red', instructions: 3 } }), 'profile(P1).counterMeasure.instructions');
    // bounded texts: the instructions are copied into every decision the profile raises (1 MB made a 50 KB answer 50 MB)
    rejected(base({ counterMeasure: { channel: 'red', instructions: 'i'.repeat(1001) } }), 'profile(P1).counterMeasure.instructions');
    expect(validateProfile(base({ counterMeasure: { channel: 'red', instructions: 'i'.repeat(1000) } })).counterMeasure!.instructions).toHaveLength(1000);
    rejected(base({ title: 't'.repeat(201) }), 'profile(P1).title');
    rejected(base({ description: 'd'.repeat(2001) }), 'profile(P1).description');
    // a keyword over 200 characters is refused before it is stemmed (100,000 characters held the main thread 19 s)
    rejected(base({}, { keywords: ['b'.repeat(100_000)] }), 'profile(P1).conditions.keywords[0]');
  });
});

describe('validateProfiles', () => {
  it('accepts an array or {"profiles": [...]} and names positions in errors', () => {
    const list = [base(), base({ id: 'P2' })];
    expect(validateProfiles(list).map((p) => p.id)).toEqual(['P1', 'P2']);
    expect(validateProfiles({ profiles: list }).map((p) => p.id)).toEqual(['P1', 'P2']);
    expect(validateProfiles([])).toEqual([]);
    expect(() => validateProfiles([base(), base({ id: 'P2', weight: 'x' })])).toThrow(expect.objectContaining({ code: 'SEL_ERR_PROFILE_INVALID', details: expect.objectContaining({ field: 'profiles[1](P2).weight' }) }));
  });

  it('rejects something that is not a list', () => {
    for (const raw of [null, 'x', 3, { profile: [] }]) {
      expect(() => validateProfiles(raw)).toThrow(expect.objectContaining({ code: 'SEL_ERR_PROFILE_INVALID', details: expect.objectContaining({ field: 'profiles' }) }));
    }
  });

  it('rejects duplicate ids with SEL_ERR_PROFILE_DUPLICATE', () => {
    expect(() => validateProfiles([base(), base({ id: 'P2' }), base({ weight: 3 })])).toThrow(expect.objectContaining({
      code: 'SEL_ERR_PROFILE_DUPLICATE', statusCode: 409, details: expect.objectContaining({ field: 'profiles[2].id', got: 'P1' }),
    }));
  });

  it(`rejects more than MAX_PROFILES (${MAX_PROFILES}) with SEL_ERR_PROFILE_LIMIT, accepts exactly MAX_PROFILES`, () => {
    expect(MAX_PROFILES).toBe(65_535);
    const list = Array.from({ length: MAX_PROFILES + 1 }, (_, i) => ({ id: `P${i}`, weight: 1, conditions: {} }));
    expect(() => validateProfiles(list)).toThrow(expect.objectContaining({ code: 'SEL_ERR_PROFILE_LIMIT', details: expect.objectContaining({ got: MAX_PROFILES + 1 }) }));
    expect(validateProfiles(list.slice(0, MAX_PROFILES))).toHaveLength(MAX_PROFILES);
  });
});

describe('loadProfiles', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sel-profiles-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads and validates a file holding an array or {"profiles": [...]}', async () => {
    const a = join(dir, 'a.json');
    writeFileSync(a, JSON.stringify([GOOD, base({ id: 'P2' })]));
    expect(await loadProfiles(a)).toEqual([GOOD, { id: 'P2', weight: 1, conditions: {} }]);
    const b = join(dir, 'b.json');
    writeFileSync(b, JSON.stringify({ profiles: [GOOD] }, null, 2));
    expect(await loadProfiles(b)).toEqual([GOOD]);
  });

  it('a missing file gives SEL_ERR_FILE_NOT_FOUND', async () => {
    const missing = join(dir, 'nope.json');
    await expect(loadProfiles(missing)).rejects.toMatchObject({ code: 'SEL_ERR_FILE_NOT_FOUND', statusCode: 404, details: { field: 'profiles', got: missing } });
  });

  it('malformed JSON gives SEL_ERR_PROFILE_INVALID naming the file', async () => {
    const f = join(dir, 'bad.json');
    writeFileSync(f, '[{"id": "P1", "weight": 1,');
    const err = await loadProfiles(f).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'SEL_ERR_PROFILE_INVALID', details: { field: 'profiles', got: f } });
    expect((err as Error).message).toContain(f);
  });

  it('an invalid profile in a file is reported with the path prefixed to the message', async () => {
    const f = join(dir, 'dup.json');
    writeFileSync(f, JSON.stringify([base(), base()]));
    const err = await loadProfiles(f).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'SEL_ERR_PROFILE_DUPLICATE', details: { field: 'profiles[1].id' } });
    expect((err as Error).message.startsWith(`${f}: `)).toBe(true);
  });
});
