import { afterAll, describe, expect, it } from 'vitest';
import { channelCounts, emptyCounts, roundBeside, toDecisions, type Decision, type Reason } from '../src/decisions.js';
import { createEngine, type Engine } from '../src/engine.js';
import type { ScoreResult } from '../src/kernel/layout.js';
import { CHANNELS } from '../src/model/channels.js';
import { toBatch } from '../src/model/columnar.js';
import type { Declaration } from '../src/model/schema.js';
import { buildPeerTables, NF } from '../src/peers/peer-groups.js';
import type { Profile } from '../src/profiles/profile.js';
import { createRuleset, type RulesetSettingsInput } from '../src/ruleset/ruleset.js';

function decl(id: string, unitValue: number, netMass: number, importer = 'IMP1'): Declaration {
  return { id, date: '2025-03-01', office: 'OF1', importer, hs: '8517120000', origin: 'CN', customsValue: unitValue * netMass, netMass, quantity: 10 };
}

// 20 peers: unit values 24 … 35.4 around 30, masses 100 … 290
const HISTORY = Array.from({ length: 20 }, (_, i) => decl(`H${i}`, 30 * (1 + 0.02 * (i - 10)), 100 + 10 * i));
const peers = buildPeerTables([toBatch(HISTORY).batch], ['hs6,origin', 'hs6', 'hs4']);

const PROFILES: Profile[] = [
  { id: 'P-IMP2', weight: 0.5, conditions: { importer: ['IMP2'] } },
  { id: 'P-CM', weight: 0, counterMeasure: { channel: 'orange', instructions: 'scan' }, conditions: { importer: ['IMP9'], hs: ['8517'] } },
  { id: 'P-CN-YELLOW', weight: 0, counterMeasure: { channel: 'yellow' }, conditions: { importer: ['IMP8'], origin: ['CN'] } },
];

const PROBE = [
  decl('A-normal', 30, 200),
  decl('B-profile', 30, 200, 'IMP2'),
  decl('C-under', 1, 200),
  decl('D-counter', 30, 200, 'IMP9'),
  decl('E-under-cm', 1, 200, 'IMP8'),
];

const engines: Engine[] = [];
afterAll(async () => { await Promise.all(engines.map((e) => e.close())); });

async function decide(settings: RulesetSettingsInput): Promise<{ result: ScoreResult; decisions: Decision[] }> {
  const ruleset = createRuleset({ peers, profiles: PROFILES, settings });
  const engine = createEngine({ ruleset, threads: 0 });
  engines.push(engine);
  const { batch, ids } = toBatch(PROBE);
  const result = await engine.scoreBatch(batch);
  return { result, decisions: toDecisions(result, ids, engine.meta(result.rulesetVersion)) };
}

const NO_RANDOM: RulesetSettingsInput = { randomSelection: { rate: 0, channel: 'red', seed: 1 } };
const byId = (ds: Decision[], id: string) => ds.find((d) => d.id === id)!;
const codes = (d: Decision) => d.reasons.map((r) => r.code);
const reasonsOf = <C extends Reason['code']>(d: Decision, code: C) => d.reasons.filter((r): r is Extract<Reason, { code: C }> => r.code === code);

describe('numbers shown beside a line', () => {
  it('roundBeside rounds, but never onto or across the line the value is beside', () => {
    expect(roundBeside(3.9999998, 6, 4)).toBe(3.999999);
    expect(roundBeside(4.0000002, 6, 4)).toBe(4.000001);
    expect(roundBeside(-3.0002, 3, -3)).toBe(-3.001);
    expect(roundBeside(3.0004, 3, 3)).toBe(3.001);
    expect(roundBeside(2.5002, 6, 4)).toBe(2.5002); // far from the line: plain rounding
    expect(roundBeside(4, 6, 4)).toBe(4);
  });

  it('roundBeside keeps a value on its side of two lines closer together than its digits, judged against the value itself', () => {
    // yellow 2, red 2.0000004: 1.9999996 (green) was shown 2, on the yellow line
    expect(roundBeside(1.9999996, 6, [2.0000004, 2])).toBe(1.999999);
    // yellow 3.9999995, red 4: 3.99999975 (yellow) was shown 3.999999, below the yellow line; no 6 decimals fit between
    const r = roundBeside(3.99999975, 6, [4, 3.9999995]);
    expect(r).toBeGreaterThan(3.9999995);
    expect(r).toBeLessThan(4);
    expect(r).toBe(3.9999998);
    expect(roundBeside(3.99999975, 4, [4, 3.9999995])).toBe(3.9999998); // the reason's 4 decimals: more where needed
    // a value on a line stays on it (at or above), however it rounds
    expect(roundBeside(3.9999995, 6, [4, 3.9999995])).toBe(3.9999995);
    expect(roundBeside(2.5002, 6, [4, 3])).toBe(2.5002);
  });

  it('a score just under the red line is not shown on it', async () => {
    // one profile of weight 3.9999998 and the red line at 4: yellow, and the score must not read 4
    const ruleset = createRuleset({ peers, profiles: [{ id: 'P-NEAR', weight: 3.9999998, conditions: { importer: ['IMP2'] } }], settings: { ...NO_RANDOM, thresholds: { yellow: 2, red: 4 } } });
    const engine = createEngine({ ruleset, threads: 0 });
    engines.push(engine);
    const { batch, ids } = toBatch([decl('NEAR', 30, 200, 'IMP2')]);
    const result = await engine.scoreBatch(batch);
    const [d] = toDecisions(result, ids, engine.meta(result.rulesetVersion));
    expect(d.channel).toBe('yellow');
    expect(d.score).toBeLessThan(4);
    expect(reasonsOf(d, 'SCORE_THRESHOLD')[0]).toMatchObject({ channel: 'yellow', threshold: 2 });
    expect(reasonsOf(d, 'SCORE_THRESHOLD')[0].score).toBeLessThan(4);
  });

  it('a score between two lines closer together than its decimals is shown between them, in the decision and in its reason', async () => {
    // yellow 3.9999995, red 4: a yellow score of 3.99999975 has no 6 (or 4) decimals between the lines
    const ruleset = createRuleset({ peers, profiles: [{ id: 'P-TIGHT', weight: 3.99999975, conditions: { importer: ['IMP2'] } }], settings: { ...NO_RANDOM, thresholds: { yellow: 3.9999995, red: 4 } } });
    const engine = createEngine({ ruleset, threads: 0 });
    engines.push(engine);
    const { batch, ids } = toBatch([decl('TIGHT', 30, 200, 'IMP2')]);
    const result = await engine.scoreBatch(batch);
    const [d] = toDecisions(result, ids, engine.meta(result.rulesetVersion));
    expect(d.channel).toBe('yellow');
    for (const shown of [d.score, reasonsOf(d, 'SCORE_THRESHOLD')[0].score]) {
      expect(shown).toBeGreaterThanOrEqual(3.9999995);
      expect(shown).toBeLessThan(4);
    }
  });

  it('a cited deviation is not shown at the threshold it passed', async () => {
    // a z threshold inside the raw |z|: the deviation is cited, and shown beyond the threshold
    const probe = await decide(NO_RANDOM);
    const raw = probe.result.z[PROBE.findIndex((p) => p.id === 'C-under') * NF];
    expect(raw).toBeLessThan(-3);
    // the threshold just inside the raw |z| (22.79618…: T = 22.796), where plain rounding to 3 decimals shows |z| = T
    const T = Math.floor(Math.abs(raw) * 1000) / 1000;
    expect(Math.abs(Math.round(raw * 1000) / 1000)).toBe(T); // the setup: the old rounding would show the threshold itself
    const near = byId((await decide({ ...NO_RANDOM, zThreshold: T })).decisions, 'C-under');
    const dev = reasonsOf(near, 'DEVIATION').find((r) => r.feature === 'unitValue')!;
    expect(Math.abs(dev.z)).toBeGreaterThan(T);
  });
});

describe('toDecisions', () => {
  it('keeps ids and order, and stamps the ruleset version', async () => {
    const { result, decisions } = await decide(NO_RANDOM);
    expect(decisions.map((d) => d.id)).toEqual(PROBE.map((d) => d.id));
    for (const d of decisions) expect(d.rulesetVersion).toBe(result.rulesetVersion);
    expect(result.rulesetVersion).toMatch(/\S/);
  });

  it('a declaration in line with its peers and matching nothing is green with no reasons', async () => {
    const { decisions } = await decide(NO_RANDOM);
    const a = byId(decisions, 'A-normal');
    expect(a).toMatchObject({ channel: 'green', controlGroup: false, reasons: [] });
    expect(a.score).toBe(0);
  });

  it('a matched profile gives a PROFILE reason with its id and weight, added to the score', async () => {
    const { decisions } = await decide(NO_RANDOM);
    const b = byId(decisions, 'B-profile');
    expect(b.reasons).toEqual([{ code: 'PROFILE', profile: 'P-IMP2', weight: 0.5 }]);
    expect(b.score).toBe(0.5);
    expect(b.channel).toBe('green');
    // no other declaration matched P-IMP2
    for (const d of decisions) if (d.id !== 'B-profile') expect(reasonsOf(d, 'PROFILE').map((r) => r.profile)).not.toContain('P-IMP2');
  });

  it('a strongly under-valued declaration gets a DEVIATION reason with feature, z and peer level, and goes red', async () => {
    const { result, decisions } = await decide(NO_RANDOM);
    const i = PROBE.findIndex((d) => d.id === 'C-under');
    const c = decisions[i];
    const dev = reasonsOf(c, 'DEVIATION').find((r) => r.feature === 'unitValue');
    expect(dev).toBeDefined();
    expect(dev!.direction).toBe('under');
    expect(dev!.peerLevel).toBe('hs6,origin');
    expect(dev!.z).toBeLessThan(-2);
    expect(dev!.z).toBeCloseTo(result.z[i * NF], 3);
    expect(result.level[i * NF]).toBe(0);
    // the peers' median unit value is 30 (ln 30 − ln 1 ≈ 3.4 log units above): z is far beyond the threshold
    expect(dev!.z).toBeLessThan(-10);
    expect(c.channel).toBe('red');
    const thr = reasonsOf(c, 'SCORE_THRESHOLD');
    expect(thr).toEqual([{ code: 'SCORE_THRESHOLD', channel: 'red', score: expect.any(Number), threshold: 4 }]);
    // the reason's score is rounded to 4 decimals, the decision's to 6
    expect(thr[0].score).toBeCloseTo(c.score, 4);
    expect(c.score).toBeCloseTo(result.score[i], 6);
    // unit value capped at zCap (weight 1 × 8) plus value per item (weight 0.5 × capped excess)
    expect(c.score).toBeGreaterThan(8);
    expect(c.score).toBeLessThanOrEqual(8 + 0.5 * 8);
    expect(c.score).toBeGreaterThanOrEqual(4);
    // deviation reasons only for |z| beyond the threshold
    for (const r of reasonsOf(c, 'DEVIATION')) expect(Math.abs(r.z)).toBeGreaterThan(2);
    expect(reasonsOf(byId(decisions, 'A-normal'), 'DEVIATION')).toEqual([]);
    // each deviation says what it added: unit value under, weight 1, capped at 8
    expect(dev!.contribution).toBe(8);
    // and the deviation contributions are the whole score when no profile matched
    if (reasonsOf(c, 'PROFILE').length === 0) {
      const sum = reasonsOf(c, 'DEVIATION').reduce((a, r) => a + r.contribution, 0);
      expect(sum).toBeCloseTo(c.score, 3);
    }
  });

  it('a counter-measure raises the channel and gives COUNTER_MEASURE naming the profile and its instructions', async () => {
    const { decisions } = await decide(NO_RANDOM);
    const d = byId(decisions, 'D-counter');
    expect(d.channel).toBe('orange');
    expect(d.score).toBe(0);
    expect(d.controlGroup).toBe(false);
    expect(d.reasons).toEqual([
      { code: 'PROFILE', profile: 'P-CM', weight: 0, channel: 'orange' },
      { code: 'COUNTER_MEASURE', channel: 'orange', profiles: ['P-CM'], instructions: ['scan'] },
    ]);
  });

  it('a counter-measure never lowers the channel: a red declaration stays red without COUNTER_MEASURE', async () => {
    const { decisions } = await decide(NO_RANDOM);
    const e = byId(decisions, 'E-under-cm');
    expect(e.channel).toBe('red');
    expect(codes(e)).toContain('PROFILE');
    expect(reasonsOf(e, 'PROFILE')).toEqual([{ code: 'PROFILE', profile: 'P-CN-YELLOW', weight: 0, channel: 'yellow' }]);
    expect(codes(e)).not.toContain('COUNTER_MEASURE');
  });

  it('random selection at rate 1 puts every green declaration, and only those, in the control group', async () => {
    const { decisions } = await decide({ randomSelection: { rate: 1, channel: 'blue', seed: 7 } });
    const { decisions: base } = await decide(NO_RANDOM);
    for (const [k, d] of decisions.entries()) {
      const was = base[k];
      expect(d.score).toBe(was.score);
      if (was.channel === 'green') {
        expect(d.controlGroup, d.id).toBe(true);
        expect(d.channel).toBe('blue');
        expect(d.reasons.at(-1)).toEqual({ code: 'RANDOM_SELECTION', channel: 'blue', rate: 1 });
      } else {
        expect(d.controlGroup, d.id).toBe(false);
        expect(d.channel).toBe(was.channel);
        expect(codes(d)).not.toContain('RANDOM_SELECTION');
      }
    }
    expect(decisions.filter((d) => d.controlGroup).map((d) => d.id)).toEqual(['A-normal', 'B-profile']);
  });

  it('at rate 0 nobody is selected at random', async () => {
    const { decisions } = await decide(NO_RANDOM);
    expect(decisions.some((d) => d.controlGroup || codes(d).includes('RANDOM_SELECTION'))).toBe(false);
  });
});

describe('channelCounts', () => {
  it('counts per channel sum to the number of decisions and match them; control counts the control group', async () => {
    for (const settings of [NO_RANDOM, { randomSelection: { rate: 1, channel: 'blue' as const, seed: 7 } }]) {
      const { result, decisions } = await decide(settings);
      const counts = channelCounts(result);
      expect(CHANNELS.reduce((s, c) => s + counts[c], 0)).toBe(decisions.length);
      for (const c of CHANNELS) expect(counts[c], c).toBe(decisions.filter((d) => d.channel === c).length);
      expect(counts.control).toBe(decisions.filter((d) => d.controlGroup).length);
    }
    const { result } = await decide(NO_RANDOM);
    expect(channelCounts(result)).toEqual({ green: 2, blue: 0, yellow: 0, orange: 1, red: 2, control: 0 });
  });

  it('accumulates into the counts it is given', async () => {
    const { result } = await decide(NO_RANDOM);
    const into = emptyCounts();
    channelCounts(result, into);
    channelCounts(result, into);
    expect(into).toEqual({ green: 4, blue: 0, yellow: 0, orange: 2, red: 4, control: 0 });
  });
});

describe('text reasons (watch lists, keyword profiles, misclassification), through a worker', () => {
  const withText = (id: string, description: string): Declaration => ({ ...decl(id, 30, 200), description });
  const DECLS = [
    withText('K-replica', 'telephone handsets, replicas'),
    withText('K-powerbank', 'Power-Banks for mobile telephones'),
    withText('M-coffee', 'roasted coffee beans, not decaffeinated'),
    withText('N-plain', 'telephone handsets for cellular networks'),
  ];
  const profiles: Profile[] = [{ id: 'P-KW', weight: 0.75, counterMeasure: { channel: 'orange', instructions: 'open and check for lithium cells' }, conditions: { keywords: ['power bank'] } }];
  const watchLists = [{ id: 'ipr-goods', riskArea: 'ipr', terms: ['replica', 'counterfeit'] }];

  async function decideText(misclassification: { weight: number; below: number }): Promise<Decision[]> {
    const engine = createEngine({ ruleset: createRuleset({ peers, profiles, watchLists, settings: { ...NO_RANDOM, misclassification } }), threads: 1 });
    engines.push(engine);
    const { batch, ids } = toBatch(DECLS);
    const result = await engine.scoreBatch(batch);
    return toDecisions(result, ids, engine.meta(result.rulesetVersion));
  }

  it('a watch-list term in the description is a KEYWORD reason naming its list and risk area, adding nothing by itself', async () => {
    const k = byId(await decideText({ weight: 1.5, below: 0.3 }), 'K-replica');
    expect(k.reasons).toEqual([{ code: 'KEYWORD', term: 'replica', lists: ['ipr-goods'], riskAreas: ['ipr'] }]);
    expect(k.score).toBe(0);
    expect(k.channel).toBe('green');
  });

  it('a profile keyword condition matches the phrase across punctuation and plural; its counter-measure applies', async () => {
    const k = byId(await decideText({ weight: 1.5, below: 0.3 }), 'K-powerbank');
    expect(codes(k)).toEqual(['PROFILE', 'KEYWORD', 'COUNTER_MEASURE']);
    expect(reasonsOf(k, 'KEYWORD')[0]).toEqual({ code: 'KEYWORD', term: 'power bank', lists: [], riskAreas: [] });
    expect(k.channel).toBe('orange');
    expect(k.score).toBe(0.75);
    expect(reasonsOf(k, 'COUNTER_MEASURE')[0].instructions).toEqual(['open and check for lithium cells']);
  });

  it('profiles and watch lists count in id order, however a file lists them: the same reasons, in the same order, as from the service\'s store', async () => {
    const decl = { ...DECLS.find((d) => d.id === 'K-replica')!, id: 'ORDER', importer: 'IMP2' };
    const decideWith = async (ps: Profile[], ws: typeof watchLists): Promise<Decision> => {
      const engine = createEngine({ ruleset: createRuleset({ peers, profiles: ps, watchLists: ws, settings: { ...NO_RANDOM, misclassification: { weight: 0 } } }), threads: 0 });
      engines.push(engine);
      const { batch, ids } = toBatch([decl]);
      const result = await engine.scoreBatch(batch);
      return toDecisions(result, ids, engine.meta(result.rulesetVersion))[0];
    };
    const z = { id: 'Z-IMP2', weight: 0.5, counterMeasure: { channel: 'yellow' as const, instructions: 'z' }, conditions: { importer: ['IMP2'] } };
    const a = { id: 'A-IMP2', weight: 0.25, counterMeasure: { channel: 'yellow' as const, instructions: 'a' }, conditions: { importer: ['IMP2'] } };
    // two lists holding the same stem: the term's text and its lists come from the first list by id
    const wz = { id: 'Z-IPR', riskArea: 'ipr', terms: ['replica'] };
    const wa = { id: 'A-IPR', riskArea: 'other', terms: ['Replicas'] };
    const fileOrder = await decideWith([z, a], [wz, wa]);
    const idOrder = await decideWith([a, z], [wa, wz]);
    expect(fileOrder.reasons).toEqual(idOrder.reasons);
    expect(reasonsOf(fileOrder, 'PROFILE').map((r) => r.profile)).toEqual(['A-IMP2', 'Z-IMP2']);
    expect(reasonsOf(fileOrder, 'KEYWORD')[0]).toMatchObject({ term: 'Replicas', lists: ['A-IPR', 'Z-IPR'] });
    expect(reasonsOf(fileOrder, 'COUNTER_MEASURE')[0].profiles).toEqual(['A-IMP2', 'Z-IMP2']);
  });

  it('reasons that depend on the ruleset alone are shared, frozen objects: the same profile, term or signal gives the same reason in every decision', async () => {
    const engine = createEngine({ ruleset: createRuleset({ peers, profiles, watchLists, settings: { ...NO_RANDOM, misclassification: { weight: 1.5, below: 0.3 } } }), threads: 0 });
    engines.push(engine);
    // each declaration twice, under two ids
    const twice = [...DECLS, ...DECLS.map((d) => ({ ...d, id: `${d.id}-2` }))];
    const { batch, ids } = toBatch(twice);
    const result = await engine.scoreBatch(batch);
    const ds = toDecisions(result, ids, engine.meta(result.rulesetVersion));
    let shared = 0;
    for (const d of DECLS) {
      const a = byId(ds, d.id), b = byId(ds, `${d.id}-2`);
      expect(b.reasons).toEqual(a.reasons);
      a.reasons.forEach((r, k) => {
        if (r.code === 'SCORE_THRESHOLD' || r.code === 'COUNTER_MEASURE' || r.code === 'DEVIATION') return; // made per decision
        expect(b.reasons[k]).toBe(r);
        expect(Object.isFrozen(r)).toBe(true);
        for (const v of Object.values(r)) if (typeof v === 'object' && v !== null) expect(Object.isFrozen(v)).toBe(true);
        shared++;
      });
    }
    expect(shared).toBeGreaterThanOrEqual(4); // PROFILE and KEYWORD (power bank), KEYWORD (replica), MISCLASSIFICATION (coffee)
    // a frozen reason cannot be changed by one decision's reader behind the others' backs
    const k = reasonsOf(byId(ds, 'K-replica'), 'KEYWORD')[0];
    expect(() => { (k.lists as string[]).push('x'); }).toThrow(TypeError);
  });

  it('a description that fits another chapter is a MISCLASSIFICATION reason naming the best heading, adding its weight', async () => {
    const ds = await decideText({ weight: 1.5, below: 0.3 });
    const m = byId(ds, 'M-coffee');
    const r = reasonsOf(m, 'MISCLASSIFICATION');
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ declaredChapter: '85', bestHeading: '0901', contribution: 1.5 });
    expect(r[0].fit).toBeLessThan(0.3);
    expect(m.score).toBe(1.5);
    expect(reasonsOf(byId(ds, 'N-plain'), 'MISCLASSIFICATION')).toEqual([]);
    // weight 0 turns the signal off: same declaration, no reason, no score
    const off = byId(await decideText({ weight: 0, below: 0.3 }), 'M-coffee');
    expect(off.reasons).toEqual([]);
    expect(off.score).toBe(0);
  });
});
