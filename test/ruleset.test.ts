import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, resolveSettings } from '../src/ruleset/ruleset.js';

describe('resolveSettings', () => {
  it('merges nested settings key by key over the defaults', () => {
    const s = resolveSettings({ thresholds: { yellow: 1 } } as never);
    expect(s.thresholds).toEqual({ yellow: 1, red: DEFAULT_SETTINGS.thresholds.red });
    const w = resolveSettings({ weights: { under: [2, 0, 1] } } as never);
    expect(w.weights).toEqual({ under: [2, 0, 1], over: DEFAULT_SETTINGS.weights.over });
    expect(resolveSettings({ randomSelection: { rate: 0.5 } } as never).randomSelection).toEqual({ ...DEFAULT_SETTINGS.randomSelection, rate: 0.5 });
    expect(resolveSettings({ misclassification: { weight: 0 } }).misclassification).toEqual({ weight: 0, below: DEFAULT_SETTINGS.misclassification.below });
  });

  it('checks the misclassification signal settings', () => {
    expect(() => resolveSettings({ misclassification: { below: 1.5 } })).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'misclassification.below' }) }));
    expect(() => resolveSettings({ misclassification: { weight: -1 } })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'misclassification.weight' }) }));
    expect(() => resolveSettings({ misclassification: { threshold: 0.2 } } as never)).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'misclassification.threshold' }) }));
  });

  it('refuses unknown keys, at the top and nested, naming them', () => {
    expect(() => resolveSettings({ zTreshold: 3 } as never)).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'zTreshold' }) }));
    expect(() => resolveSettings({ thresholds: { orange: 3 } } as never)).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'thresholds.orange' }) }));
    expect(() => resolveSettings({ weights: [1, 2] } as never)).toThrow(expect.objectContaining({ code: 'SEL_ERR_RULESET_INVALID', details: expect.objectContaining({ field: 'weights' }) }));
  });

  it('still checks the merged values', () => {
    expect(() => resolveSettings({ thresholds: { red: 1 } } as never)).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'thresholds.red' }) }));
    expect(() => resolveSettings({ weights: { over: [1] } } as never)).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: 'weights.over' }) }));
  });
});
