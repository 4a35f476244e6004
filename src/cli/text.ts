/**
 * `selectivity text fit|match`: the text module from the command line.
 *   fit    how well a goods description fits its declared HS code, and the
 *          best-fitting chapters and headings (TF-IDF over the nomenclature);
 *   match  which watch-list terms a text contains (stems, phrases).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { hsFitModel } from '../text/hs-fit.js';
import { compileWatchLists, validateWatchLists } from '../text/watchlist.js';
import { intOption } from './options.js';

export const TEXT_HELP = `Usage:
  selectivity text fit --hs <code> "<description>" [--top <k>] [--json]
  selectivity text match --watchlists <file.json> "<text>" [--json]

fit     scores how well a goods description fits the declared HS code against
        a TF-IDF model of every chapter and heading of the HS nomenclature:
        similarity, rank and fit (similarity / best similarity, 0–1) of the
        declared chapter and heading, and the best-fitting ones.
match   lists the watch-list keywords and phrases found in a text (matched
        on Porter stems: "Replicas" matches "replica"; a phrase matches
        across punctuation: "power-bank" matches "power bank").
`;

const pct = (x: number) => `${(100 * x).toFixed(0)} %`;

export async function textCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(TEXT_HELP); return sub ? 0 : 1; }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { hs: { type: 'string' }, top: { type: 'string' }, watchlists: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(TEXT_HELP); return 0; }
  if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID(`text ${sub} needs one text argument (quote it)`, { field: 'text', expected: 'one quoted text', got: positionals });
  const text = positionals[0];
  const print = (s: string, obj: unknown) => process.stdout.write(`${values.json ? JSON.stringify(obj, null, 2) : s}\n`);
  if (sub === 'fit') {
    if (!values.hs) throw errors.SEL_ERR_OPTION_INVALID('text fit needs --hs <code>', { field: 'hs', expected: 'the declared HS code', got: values.hs });
    const f = hsFitModel().fit(values.hs, text, values.top !== undefined ? intOption(values.top, 'top', 1, 50) : 3);
    const lines = [
      `"${f.description}" declared ${f.hs} (${f.knownTerms} of ${f.terms} terms known to the nomenclature)`,
      `  chapter ${f.chapter.code}: similarity ${f.chapter.similarity.toFixed(3)}, rank ${f.chapter.rank}, fit ${pct(f.chapter.fit)}`,
      f.heading ? `  heading ${f.heading.code}: similarity ${f.heading.similarity.toFixed(3)}, rank ${f.heading.rank}, fit ${pct(f.heading.fit)}` : '  heading: (declared code has 2 digits)',
      'best-fitting headings:',
      ...f.bestHeadings.map((h) => `  ${h.code} ${h.similarity.toFixed(3)}  ${h.description}`),
      'best-fitting chapters:',
      ...f.bestChapters.map((c) => `  ${c.code} ${c.similarity.toFixed(3)}  ${c.description}`),
    ];
    print(lines.join('\n'), f);
    return 0;
  }
  if (sub === 'match') {
    if (!values.watchlists) throw errors.SEL_ERR_OPTION_INVALID('text match needs --watchlists <file.json>', { field: 'watchlists', expected: 'a watch-list file', got: values.watchlists });
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(values.watchlists, 'utf8'));
    } catch (e) {
      throw errors.SEL_ERR_WATCHLIST_INVALID(`cannot read ${values.watchlists}: ${(e as Error).message}`, { field: 'watchlists', expected: 'a readable JSON file', got: values.watchlists });
    }
    const compiled = compileWatchLists(validateWatchLists(raw));
    const hits = compiled.match(text).map((i) => compiled.terms[i]);
    print(hits.length ? hits.map((h) => `${h.list} (${h.riskArea}): ${h.term}`).join('\n') : 'no watch-list term found', hits.map(({ list, riskArea, term }) => ({ list, riskArea, term })));
    return 0;
  }
  throw errors.SEL_ERR_OPTION_INVALID(`unknown text subcommand "${sub}"`, { field: 'subcommand', expected: 'fit or match', got: sub });
}
