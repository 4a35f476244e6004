import { describe, expect, it, vi } from 'vitest';
import { randomDeclarations, runCli } from './helpers.js';
import { toBatch } from '../src/model/columnar.js';
import { TextScorer, textConfig } from '../src/text/signals.js';
import { main } from '../src/cli/main.js';
import { HsFitModel, hsFitModel, loadNomenclature } from '../src/text/hs-fit.js';
import { stem, stems, words } from '../src/text/tokens.js';
import { compileWatchLists, validateWatchList, validateWatchLists } from '../src/text/watchlist.js';
import { WatchListStore } from '../src/text/store.js';
import { openStore } from '../src/store/sqlite.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LISTS = validateWatchLists({
  watchLists: [
    { id: 'IPR', riskArea: 'ipr', terms: ['replica', 'copy watch', 'Replicas'] },
    { id: 'BAT', riskArea: 'safety', terms: ['power bank', 'lithium battery'] },
    { id: 'DRG', riskArea: 'drugs', terms: ['precursor'] },
  ],
});
const m = compileWatchLists(LISTS);
const found = (text: string) => m.match(text).map((i) => m.terms[i].term);

describe('tokens and stems', () => {
  it('normalises case, diacritics and inflection', () => {
    expect(stems('replicas')).toEqual(stems('REPLICA'));
    expect(stems('Replica')).toEqual(['replica']);
    expect(words('Café crème, 100% coton')).toEqual(['cafe', 'creme', '100', 'coton']);
    expect(words('Реплика часов')).toEqual(['реплика', 'часов']); // non-Latin kept, not stemmed
    expect(words('')).toEqual([]);
    expect(words(' ,;- ')).toEqual([]);
  });

  it('splits a plain ASCII text (its own fast path) as the general path does', () => {
    // a no-break space is a separator that sends a text down the general path (NFKD, Unicode classes)
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const alphabet = 'aZq09 -_,.;:/\\|\'"()[]{}<>!?@#$%^&*+=~`xY';
    for (let k = 0; k < 2000; k++) {
      let t = '';
      for (let i = Math.floor(rnd() * 24); i > 0; i--) t += alphabet[Math.floor(rnd() * alphabet.length)];
      expect(words(t), JSON.stringify(t)).toEqual(words(`${t}\u00a0`));
    }
    expect(words('Power-Bank_X200 (2024)')).toEqual(['power', 'bank', 'x200', '2024']);
    expect(words('tab\tand\nnewline')).toEqual(['tab', 'and', 'newline']); // control characters: the general path
  });

  it('ignores invisible format characters inside a word: a soft hyphen or zero-width space does not hide "replica"', () => {
    for (const t of ['REPLI\u00adCA handbags', 'rep\u200blica handbags', 'repl\u200d\u2060ica handbags', '\ufeffreplica handbags']) {
      expect(words(t), JSON.stringify(t)).toEqual(['replica', 'handbags']);
      expect(found(t), JSON.stringify(t)).toEqual(['replica']);
    }
  });

  it('removes the accents of Latin, Greek and Cyrillic letters only: in Japanese and Devanagari the marks are part of the spelling', () => {
    expect(words('バッグ パック ガス カス')).toEqual(['バッグ', 'パック', 'ガス', 'カス']); // bag, pack, gas, dregs
    expect(new Set(words('バッグ パック')).size).toBe(2);
    expect(words('काला केला')).toEqual(['काला', 'केला']); // black, banana: the vowel signs kept, not split on
    expect(words('Ελληνικά ΝΈΑ Ёлка naïve')).toEqual(['ελληνικα', 'νεα', 'елка', 'naive']);
    expect(words('한국 수입')).toEqual(['한국', '수입']);
  });

  it('folds Cyrillic and Greek look-alike letters in a Latin word, and leaves Russian and Greek text as written', () => {
    // a Cyrillic е and а, a Cyrillic І, Greek capitals: the keyword is found
    for (const t of ['r\u0435plic\u0430 handbags', 'REPL\u0406CA handbags', 'REPL\u0399C\u0391 handbags', 'R\u0415PLICA handbags']) {
      expect(words(t), JSON.stringify(t)).toEqual(['replica', 'handbags']);
      expect(found(t), JSON.stringify(t)).toEqual(['replica']);
    }
    // case decides: a Greek capital Η is an H, a small η an n; Ν is N, ν is v
    expect(words('\u0397P laptop \u039dew')).toEqual(['hp', 'laptop', 'new']);
    expect(words('\u03b7ew \u03bdalve')).toEqual(['new', 'valve']);
    // capitals whose small letters only are common look-alikes (descriptions are often in capitals)
    expect(words('\u04baOVERBOARD \u0500RONE \u00e9')).toEqual(['hoverboard', 'drone', 'e']);
    // a word made only of look-alikes, in a Latin text: "РС" in Cyrillic
    expect(words('\u0420\u0421 parts')).toEqual(['pc', 'parts']);
    // Russian and Greek descriptions are left as written, look-alike words included
    expect(words('Реплика часов Rolex')).toEqual(['реплика', 'часов', 'rolex']);
    expect(words('сера и соль')).toEqual(['сера', 'и', 'соль']);
    expect(words('Ελληνικά ΝΈΑ')).toEqual(['ελληνικα', 'νεα']);
    expect(found('Реплика часов')).toEqual([]);
  });

  it('does not stem a word over 64 characters (the stemmer is quadratic in a word\'s length), and refuses a term over 200', () => {
    const long = `${'b'.repeat(70)}s`;
    expect(stem(long)).toBe(long); // Porter would drop the s
    expect(stem('replicas')).toBe('replica');
    expect(() => validateWatchList({ id: 'L', riskArea: 'ipr', terms: ['x'.repeat(201)] })).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID', details: expect.objectContaining({ field: 'watchList(L).terms[0]' }) }));
    expect(() => validateWatchList({ id: 'L', riskArea: 'ipr', title: 't'.repeat(201), terms: ['x'] })).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID' }));
    expect(validateWatchList({ id: 'L', riskArea: 'ipr', terms: ['y'.repeat(200)] }).terms).toHaveLength(1);
  });

  it('folds the Greek final sigma and the German sharp s', () => {
    expect(words('ΟΠΛΟΣ.ΜΕΡΗ')).toEqual(words('όπλος μερη'));
    expect(words('οπλοσ')).toEqual(words('ΟΠΛΟΣ'));
    expect(words('Straße')).toEqual(words('STRASSE'));
  });
});

describe('watch lists', () => {
  it('match stemming variants and phrases across punctuation', () => {
    expect(found('REPLICAS of designer bags')).toEqual(['replica']);
    expect(found('Power-Banks 10000mAh')).toEqual(['power bank']);
    expect(found('POWER/BANK')).toEqual(['power bank']);
    expect(found('lithium  batteries; power bank; precursors')).toEqual(['power bank', 'lithium battery', 'precursor']);
    expect(found('bank power')).toEqual([]);
    expect(found('power supply for a bank')).toEqual([]);
    expect(found('copy watches')).toEqual(['copy watch']);
  });

  it('match a phrase of up to 4 words with adjacent words written together, and not the other way round', () => {
    expect(found('Powerbanks 10000mAh')).toEqual(['power bank']);
    expect(found('POWERBANK')).toEqual(['power bank']);
    expect(found('copywatch')).toEqual(['copy watch']);
    expect(found('lithiumbatteries')).toEqual(['lithium battery']);
    expect(found('bankpower')).toEqual([]);
    expect(found('powerbankholder')).toEqual([]);
    const l = compileWatchLists(validateWatchLists([
      { id: 'L', riskArea: 'safety', terms: ['lithium ion battery', 'replicas watches', 'powerbank', 'one two three four five'] },
    ]));
    const hit = (t: string) => l.match(t).map((i) => l.terms[i].term);
    for (const t of ['lithium ion batteries', 'lithium-ion battery', 'lithiumion battery', 'lithium ionbattery', 'LITHIUMIONBATTERY']) expect(hit(t), t).toEqual(['lithium ion battery']);
    expect(hit('lithium battery ion')).toEqual([]);
    // a joined word is stemmed whole, from the words and from their stems
    expect(hit('replicawatches')).toEqual(['replicas watches']);
    expect(hit('replicaswatches')).toEqual(['replicas watches']);
    // a keyword written as one word does not match it split; a phrase of 5 words is matched only as written
    expect(hit('power bank')).toEqual([]);
    expect(hit('onetwothreefourfive')).toEqual([]);
    expect(hit('one two three four five')).toEqual(['one two three four five']);
  });

  it('handles empty, non-ASCII and very long descriptions', () => {
    expect(found('')).toEqual([]);
    expect(found('手表 реплика ☃')).toEqual([]);
    const long = `${'cotton t-shirts '.repeat(50_000)}replica`;
    expect(found(long)).toEqual(['replica']);
  });

  it('keeps one term per stem sequence, and numbers terms across lists in order', () => {
    expect(LISTS[0].terms).toEqual(['replica', 'copy watch']); // "Replicas" is "replica"
    expect(m.terms.map((t) => `${t.list}:${t.term}`)).toEqual(['IPR:replica', 'IPR:copy watch', 'BAT:power bank', 'BAT:lithium battery', 'DRG:precursor']);
    expect(m.match('precursor replica precursor')).toEqual([0, 4]);
  });

  it('rejects invalid lists naming the field', () => {
    const cases: [unknown, string][] = [
      [{ id: 'X', riskArea: 'fun', terms: ['a'] }, 'watchList(X).riskArea'],
      [{ id: 'X', riskArea: 'ipr', terms: [] }, 'watchList(X).terms'],
      [{ id: 'X', riskArea: 'ipr', terms: ['--'] }, 'watchList(X).terms[0]'],
      [{ id: 'X', riskArea: 'ipr', terms: ['a b c d e f g h i'] }, 'watchList(X).terms[0]'],
      [{ id: 'bad id', riskArea: 'ipr', terms: ['a'] }, 'watchList.id'],
    ];
    for (const [raw, field] of cases) expect(() => validateWatchList(raw), field).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID', details: expect.objectContaining({ field }) }));
    expect(() => validateWatchLists([{ id: 'A', riskArea: 'ipr', terms: ['x'] }, { id: 'A', riskArea: 'ipr', terms: ['y'] }])).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID' }));
  });

  it('the store refuses, before the commit, a change that would leave more terms in the active lists than compile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-wl-limit-'));
    const store = new WatchListStore(openStore(join(dir, 'store.db')));
    try {
      const list = (id: string, n: number) => ({ id, riskArea: 'ipr', terms: Array.from({ length: n }, (_, i) => `${id}term${i}`) });
      store.importSet([list('A', 40_000)], { by: 'a' });
      store.importSet([list('C', 20_000)], { by: 'a' });
      store.setStatus('C', 'retired', 'a');
      // each set within the limit, the active lists together not: nothing changes, and what is stored compiles
      expect(() => store.importSet([list('B', 30_000)], { by: 'b' })).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID', details: expect.objectContaining({ field: 'watchLists', got: 70_000 }) }));
      expect(store.get('B')).toBeUndefined();
      expect(compileWatchLists(store.active()).terms).toHaveLength(40_000);
      store.importSet([list('B', 25_000)], { by: 'b' });
      expect(() => store.setStatus('C', 'active', 'c')).toThrow(expect.objectContaining({ code: 'SEL_ERR_WATCHLIST_INVALID', details: expect.objectContaining({ got: 85_000 }) }));
      expect(store.get('C')?.status).toBe('retired');
      expect(compileWatchLists(store.active()).terms).toHaveLength(65_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('HS fit', () => {
  const entries = loadNomenclature();

  it('ranks the right chapter first for the nomenclature\'s own subheading descriptions', () => {
    const sub = entries.filter((e) => e.level === 6);
    expect(sub.length).toBeGreaterThan(5000);
    const model = hsFitModel();
    const inSample = sub.filter((e) => model.bestChapter(e.description) === e.code.slice(0, 2)).length / sub.length;
    // held out: chapters and headings learnt from their own descriptions only, tested on the subheadings
    const held = new HsFitModel(entries, { levels: [2, 4] });
    const heldOut = sub.filter((e) => held.bestChapter(e.description) === e.code.slice(0, 2)).length / sub.length;
    expect(inSample).toBeGreaterThan(0.85);   // measured 0.897
    expect(heldOut).toBeGreaterThan(0.75);    // measured 0.819
    expect(inSample).toBeGreaterThan(heldOut);
  });

  it('scores a good fit at 1 and names the better heading for a poor one', () => {
    const model = hsFitModel();
    const good = model.fit('610910', 'T-shirts of cotton, knitted');
    expect(good.heading).toMatchObject({ code: '6109', rank: 1, fit: 1 });
    expect(good.chapter).toMatchObject({ code: '61', rank: 1, fit: 1 });
    const poor = model.fit('851712', 'T-shirts of cotton, knitted');
    expect(poor.heading!.fit).toBeLessThan(0.2);
    expect(poor.heading!.rank).toBeGreaterThan(10);
    expect(poor.bestHeadings[0].code).toBe('6109');
    const none = model.fit('8517', 'xyzzy');
    expect(none.knownTerms).toBe(0);
    // nothing known: no fit and no rank (it said fit 0 %, rank 1: a misclassification scoring never flags, as quickFit is NaN)
    expect(none.chapter).toMatchObject({ code: '85', rank: null, fit: null });
    expect(none.heading).toMatchObject({ code: '8517', rank: null, fit: null });
    expect(Number.isNaN(model.quickFit('8517', 'xyzzy').chapterFit)).toBe(true);
    expect(() => model.fit('85A1', 'x')).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'hs' }) }));
    expect(() => model.fit('77', 'x')).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' })); // chapter 77 is reserved
  });

  it('gives each description the same fit whatever was fitted before it, and the fit the full report gives', () => {
    const model = hsFitModel();
    const entries = loadNomenclature().filter((e) => e.level === 6);
    const pick = (k: number) => entries[(k * 7919) % entries.length];
    for (let k = 0; k < 300; k++) {
      const e = pick(k), other = pick(k + 1000);
      const d = k % 3 === 0 ? `${e.description} ${other.description}` : e.description;
      const first = model.quickFit(e.code, d);
      model.quickFit(other.code, other.description); // another description's scores, to be reset
      model.fit(other.code, `${other.description} parts`);
      expect(model.quickFit(e.code, d), d).toEqual(first);
      const full = model.fit(e.code, d, 1);
      expect(first.chapterFit).toBe(full.chapter.fit ?? NaN);
      expect(first.headingFit).toBe(full.heading!.fit ?? NaN);
      if (full.chapter.rank === 1) expect(first.bestHeading.slice(0, 2), d).toBe(e.code.slice(0, 2));
    }
  });

  it('names the first of equally fitting headings, whichever the description reaches first', () => {
    const model = new HsFitModel([
      { code: '01', description: 'animals', level: 2 },
      { code: '0101', description: 'alpha', level: 4 },
      { code: '0102', description: 'beta', level: 4 },
      { code: '0103', description: 'gamma', level: 4 },
      { code: '02', description: 'plants', level: 2 },
      { code: '0201', description: 'delta', level: 4 },
    ]);
    // "beta" reaches 0102 before "alpha" reaches 0101; the two score alike
    const f = model.quickFit('0103', 'beta alpha');
    expect(f.bestHeading).toBe('0101');
    expect(f.headingFit).toBe(0);
    expect(f.chapterFit).toBe(1); // chapter 01 fits best: the heading named is the best of its headings
    expect(model.fit('0103', 'beta alpha').bestHeadings[0].code).toBe('0101');
  });

  it('names, for a description that fits another chapter better, the best heading of that chapter, not the declared heading', () => {
    const model = hsFitModel();
    // 2801 (halogens) scores best among headings on these words, but chapter 29 (organic) best among chapters
    const d = 'Brominated or iodinated derivatives of acyclic hydrocarbons; ethylene dibromide (ISO) (1,2-dibromoethane)';
    const f = model.quickFit('280110', d);
    expect(f.chapterFit).toBeLessThan(0.3); // a MISCLASSIFICATION reason would be given
    expect(model.bestChapter(d)).toBe('29');
    expect(f.bestHeading.slice(0, 2)).toBe('29');
    expect(f.bestHeading).not.toBe('2801');
    // a description that fits its own chapter names its heading as before
    expect(model.quickFit('851712', 'telephones for cellular networks, smartphones').bestHeading).toBe('8517');
  });

  it('is reachable from the CLI', async () => {
    let stdout = '';
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => { stdout += String(c); return true; });
    try {
      expect(await main(['text', 'fit', '--hs', '851712', 'T-shirts of cotton, knitted', '--json'])).toBe(0);
    } finally {
      out.mockRestore();
    }
    expect(JSON.parse(stdout).bestHeadings[0].code).toBe('6109');
  });
});

describe('watch lists in the store: CLI and HTTP', () => {
  it('imports, versions, retires and exports; match reads the active lists', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'sel-wl-'));
    const file = join(dir, 'wl.json');
    writeFileSync(file, JSON.stringify({ watchLists: [{ id: 'IPR', riskArea: 'ipr', terms: ['replica'] }, { id: 'BAT', riskArea: 'safety', terms: ['power bank'] }] }));
    const run = runCli;
    const dd = ['--data-dir', dir];
    expect(JSON.parse((await run(['text', 'lists', 'import', file, ...dd, '--by', 'tester', '--json'])).stdout).created).toEqual(['IPR', 'BAT']); // in file order
    writeFileSync(file, JSON.stringify({ watchLists: [{ id: 'IPR', riskArea: 'ipr', terms: ['replica', 'imitation'] }] }));
    expect(JSON.parse((await run(['text', 'lists', 'import', file, ...dd, '--json'])).stdout)).toMatchObject({ updated: ['IPR'], unchanged: [] });
    // active lists compile by id (BAT before IPR), so term numbers follow that order
    expect(JSON.parse((await run(['text', 'match', 'Imitation Power-Bank', ...dd, '--json'])).stdout).map((h: { term: string }) => h.term)).toEqual(['power bank', 'imitation']);
    expect((await run(['text', 'lists', 'retire', 'BAT', ...dd])).code).toBe(0);
    expect(JSON.parse((await run(['text', 'match', 'Imitation Power-Bank', ...dd, '--json'])).stdout).map((h: { term: string }) => h.term)).toEqual(['imitation']);
    const shown = JSON.parse((await run(['text', 'lists', 'show', 'IPR', ...dd, '--json'])).stdout);
    expect(shown.history.map((h: { change: string }) => h.change)).toEqual(['created', 'updated: terms']);
    expect((await run(['text', 'lists', 'show', 'NOPE', ...dd])).stderr).toContain('SEL_ERR_WATCHLIST_NOT_FOUND');

    // the same store over HTTP
    const { inProcessService } = await import('./service-helpers.js');
    const token = 'analyst-token-0123456789abcdef';
    const portToken = 'port-token-0123456789abcdef01';
    const service = await inProcessService(dir, { tokens: `analyst:${token},port:${portToken}` });
    const { app, engine } = service;
    const h = { authorization: `Bearer ${token}` };
    const keywords = async () => {
      const declaration = { id: 'D1', date: '2026-11-23', office: 'OF01', importer: 'IM1', hs: '293941', origin: 'CN', customsValue: 100, netMass: 10, description: 'Precursors: ephedrine, imitation labels' };
      const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${portToken}` }, payload: { declarations: [declaration] } });
      expect(r.statusCode, r.body).toBe(200);
      return (r.json().decisions[0].reasons as { code: string; term?: string; lists?: string[] }[]).filter((x) => x.code === 'KEYWORD').map((x) => `${x.term}@${x.lists!.join('+')}`);
    };
    try {
      expect((await app.inject({ url: '/v1/watchlists', headers: h })).json().watchLists.map((r: { watchList: { id: string }; status: string }) => `${r.watchList.id}:${r.status}`)).toEqual(['BAT:retired', 'IPR:active']);
      const imp = await app.inject({ method: 'POST', url: '/v1/watchlists/import', headers: h, payload: { watchLists: [{ id: 'DRG', riskArea: 'drugs', terms: ['precursor'] }] } });
      expect(imp.json().changes.created).toEqual(['DRG']);
      // the import swapped a ruleset in: the active lists' terms are now reasons of decisions
      expect(imp.json().ruleset.version).toBe(engine.rulesetVersion);
      expect(await keywords()).toEqual(['precursor@DRG', 'imitation@IPR']) // lists by id;
      const bad = await app.inject({ method: 'POST', url: '/v1/watchlists/import', headers: h, payload: { watchLists: [{ id: 'X', riskArea: 'nope', terms: ['a'] }] } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBe('SEL_ERR_WATCHLIST_INVALID');
      // a filter these routes do not have is refused, not ignored (the profile routes take ?status= and ?all=)
      for (const url of ['/v1/watchlists?status=active', '/v1/watchlists/export?all=true']) {
        const r = await app.inject({ url, headers: h });
        expect(r.statusCode, url).toBe(400);
        expect(r.json().error, url).toMatchObject({ code: 'SEL_ERR_REQUEST_INVALID', details: { got: url.includes('status') ? 'status' : 'all' } });
      }
      // a bare array, as selectivity text lists import reads from a file
      const bare = await app.inject({ method: 'POST', url: '/v1/watchlists/import', headers: h, payload: [{ id: 'DRG', riskArea: 'drugs', terms: ['precursor', 'ephedrine'] }] });
      expect(bare.statusCode, bare.body).toBe(200);
      expect(bare.json().changes.updated).toEqual(['DRG']);
      expect((await app.inject({ url: '/v1/watchlists/export', headers: h })).json().watchLists.map((w: { id: string }) => w.id)).toEqual(['DRG', 'IPR']);
      const withDrg = engine.rulesetVersion;
      expect((await app.inject({ method: 'POST', url: '/v1/watchlists/DRG/retire', headers: h })).json().watchList.status).toBe('retired');
      expect(await keywords()).toEqual(['imitation@IPR']);
      // a past decision's KEYWORD reasons are traced to the list versions of its ruleset, from the store
      // (the record named only profiles, peers and settings: the two rulesets' records read alike)
      const record = async (v: string) => (await app.inject({ url: `/v1/rulesets/${v}`, headers: h })).json();
      expect((await record(withDrg)).watchLists).toEqual([{ id: 'DRG', version: 2 }, { id: 'IPR', version: 2 }]);
      expect((await record(engine.rulesetVersion)).watchLists).toEqual([{ id: 'IPR', version: 2 }]);
      expect((await app.inject({ url: '/v1/ruleset', headers: h })).json().watchLists).toEqual([{ id: 'IPR', version: 2 }]);
    } finally {
      await service.close();
    }
  });
});

describe('text signals in the scoring path', () => {
  const config = () => textConfig([], LISTS, { weight: 1.5, below: 0.3 });

  it('finds a watch-list phrase written as one word and a keyword spelled with look-alike letters, as the watch lists do', () => {
    const scorer = new TextScorer(config());
    const terms = (d: string) => scorer.termsOf(d).map((i) => scorer.config.terms[i].text);
    expect(terms('POWERBANKS 20000 mAh')).toEqual(['power bank']);
    expect(terms('r\u0435plic\u0430 copywatch')).toEqual(['replica', 'copy watch']);
    expect(terms('bankpower')).toEqual([]);
  });

  it('gives the same signals to a batch whether (HS code, description) pairs were seen in earlier batches or not', () => {
    const earlier = randomDeclarations(400, 71, { descriptions: true });
    const later = [...randomDeclarations(300, 72, { descriptions: true }), ...earlier.slice(0, 100)];
    // one description under more HS codes than the per-description memo keeps
    const codes = Array.from({ length: 80 }, (_, i) => `${String(1 + (i % 97)).padStart(2, '0')}${String(i).padStart(4, '0')}`);
    const spread = codes.map((hs, i) => ({ ...later[0], id: `SPREAD-${i}`, hs, description: 'lithium batteries for power banks' }));
    const warm = new TextScorer(config());
    const cold = new TextScorer(config());
    for (const batch of [toBatch(earlier).batch, toBatch(later).batch, toBatch(spread).batch, toBatch(spread).batch]) {
      const a = warm.batch(batch)!;
      const fresh = new TextScorer(config()).batch(batch)!;
      const b = cold.batch(batch)!;
      expect(a.signals.length).toBe(fresh.signals.length);
      for (let i = 0; i < batch.size; i++) {
        expect(a.signals[a.row[i]], `row ${i}`).toEqual(fresh.signals[fresh.row[i]]);
        expect(b.signals[b.row[i]], `row ${i}`).toEqual(fresh.signals[fresh.row[i]]);
      }
    }
    // the memo did its work: a pair seen before gives back the very signal made then
    const first = warm.batch(toBatch(earlier.slice(0, 10)).batch)!;
    const again = warm.batch(toBatch(earlier.slice(0, 10)).batch)!;
    expect(again.signals[again.row[0]]).toBe(first.signals[first.row[0]]);
    // and the misclassification signal fires somewhere in the spread (chapters that do not fit batteries)
    const spreadSignals = warm.batch(toBatch(spread).batch)!;
    expect(spreadSignals.signals.some((s) => s.misclassified)).toBe(true);
    expect(spreadSignals.signals.some((s) => s.terms.length > 0)).toBe(true);
  });

  it('keeps what it found for descriptions up to a number of characters, not only of descriptions: long ones do not hold memory for ever', () => {
    const scorer = new TextScorer(textConfig([], LISTS, { weight: 0, below: 0.3 }));
    const decl = randomDeclarations(1, 74, { descriptions: true })[0];
    const first = scorer.termsOf('replica handbags');
    expect(scorer.termsOf('replica handbags')).toBe(first); // kept
    // 4,000 descriptions of 4,096 characters (16.4 million): far fewer than the 100,000 descriptions kept
    const long = (i: number) => `${String(i).padStart(6, '0')} ${'cotton shirts '.repeat(292)}`.slice(0, 4096);
    for (let b = 0; b < 4; b++) scorer.batch(toBatch(Array.from({ length: 1000 }, (_, i) => ({ ...decl, id: `L${b}-${i}`, description: long(b * 1000 + i) }))).batch);
    const again = scorer.termsOf('replica handbags');
    expect(again).toEqual(first);
    expect(again).not.toBe(first); // found again: the cache started over
  });

  it('fits the headings only for a signal that fires: its reason names the best one, as the full fit does', () => {
    const scorer = new TextScorer(config());
    const decl = randomDeclarations(1, 73, { descriptions: true })[0];
    const model = hsFitModel();
    const cases = [
      { hs: '610910', description: 'T-shirts of cotton, knitted' }, // fits: no signal
      { hs: '851712', description: 'T-shirts of cotton, knitted' }, // another chapter: the signal, naming 6109
      { hs: '950300', description: 'Power-Banks 20000 mAh, lithium-ion accumulators' },
    ];
    const text = scorer.batch(toBatch(cases.map((c, i) => ({ ...decl, id: `F${i}`, ...c }))).batch)!;
    cases.forEach((c, i) => {
      const signal = text.signals[text.row[i]];
      const full = model.quickFit(c.hs, c.description);
      expect(signal.fit!.chapterFit, c.description).toBe(full.chapterFit);
      expect(signal.misclassified).toBe(full.chapterFit < 0.3);
      if (signal.misclassified) expect(signal.fit).toEqual(full);
      else expect(signal.fit).toEqual({ chapterFit: full.chapterFit, headingFit: NaN, bestHeading: '' });
    });
    expect(text.signals[text.row[1]].fit!.bestHeading).toBe('6109');
    expect(text.signals[text.row[0]].misclassified).toBe(false);
  });
});
