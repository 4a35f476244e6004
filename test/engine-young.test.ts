/**
 * The scoring workers' young generation (EngineOptions.youngGenerationMb):
 * the engine hands it to Piscina as resourceLimits, and validates it.
 */
import { describe, expect, it, vi } from 'vitest';
import { createEngine } from '../src/engine.js';
import { referenceScore } from '../src/kernel/reference.js';
import { toBatch } from '../src/model/columnar.js';
import { buildPeerTables } from '../src/peers/peer-groups.js';
import { createRuleset } from '../src/ruleset/ruleset.js';
import { randomDeclarations, randomProfiles } from './helpers.js';

/** The options of every pool made in this file. */
const made = vi.hoisted(() => [] as Record<string, unknown>[]);
vi.mock('piscina', async (importOriginal) => {
  const real = await importOriginal<typeof import('piscina')>();
  class Recording extends real.Piscina {
    constructor(options: ConstructorParameters<typeof real.Piscina>[0]) {
      made.push(options as Record<string, unknown>);
      super(options);
    }
  }
  return { ...real, Piscina: Recording };
});

const history = randomDeclarations(500, 17);
const ruleset = createRuleset({ peers: buildPeerTables([toBatch(history).batch]), profiles: randomProfiles(16, 18), settings: { thresholds: { yellow: 1, red: 3 } } });

describe('engine: the workers\' young generation', () => {
  it('is 64 MiB by default, as set, or V8\'s own with 0; the workers score the same either way', async () => {
    const batch = () => toBatch(randomDeclarations(300, 19)).batch;
    const want = Array.from(referenceScore(ruleset, batch()).channel);
    for (const [youngGenerationMb, limit] of [[undefined, 64], [32, 32], [0, undefined]] as const) {
      made.length = 0;
      const engine = createEngine({ ruleset, threads: 1, youngGenerationMb });
      try {
        expect(engine.options.youngGenerationMb).toBe(youngGenerationMb ?? 64);
        expect(made).toHaveLength(1);
        expect((made[0].resourceLimits as { maxYoungGenerationSizeMb?: number } | undefined)?.maxYoungGenerationSizeMb).toBe(limit);
        const r = await engine.scoreBatch(batch());
        expect(Array.from(r.channel)).toEqual(want);
      } finally {
        await engine.close();
      }
    }
  });

  it('rejects a size that is not an integer in [0, 4096] with the field named', () => {
    for (const bad of [-1, 1.5, 5000, Number.NaN, '64' as unknown as number]) {
      expect(() => createEngine({ ruleset, threads: 1, youngGenerationMb: bad })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'youngGenerationMb' }) }));
    }
  });
});
