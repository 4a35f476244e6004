/**
 * `selectivity text fit|match`: the text module from the command line.
 *   fit    how well a goods description fits its declared HS code, and the
 *          best-fitting chapters and headings (TF-IDF over the nomenclature);
 *   match  which watch-list terms a text contains (stems, phrases).
 */
import { readJsonFile } from '../store/json-file.js';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { hsFitModel } from '../text/hs-fit.js';
import { compileWatchLists, validateWatchLists } from '../text/watchlist.js';
import { intOption } from './options.js';
import { WatchListStore, type WatchListRecord } from '../text/store.js';
import { openExistingStore, openStore, STORE_FILE } from '../store/sqlite.js';
import { writeFileDurable } from '../store/durable.js';

export const TEXT_HELP = `Usage:
  selectivity text fit --hs <code> "<description>" [--top <k>] [--json]
  selectivity text match [--watchlists <file.json>] "<text>" [--json]
  selectivity text lists import <file.json> [--replace] | export [--out <file>] | list
                         | show <id> | activate <id> | retire <id>   [--data-dir <dir>] [--by <name>] [--json]

fit     scores how well a goods description fits the declared HS code against
        a TF-IDF model of every chapter and heading of the HS nomenclature:
        similarity, rank and fit (similarity / best similarity, 0–1) of the
        declared chapter and heading, and the best-fitting ones.
match   lists the watch-list keywords and phrases found in a text (matched
        on Porter stems: "Replicas" matches "replica"; a phrase matches
        across punctuation: "power-bank" matches "power bank"); the lists come
        from --watchlists, or from the store's active lists.
lists   the watch lists in <data-dir>/selectivity.db (default ./data), every
        change a new version, as for profiles.
`;

const pct = (x: number) => `${(100 * x).toFixed(0)} %`;
/** rank and fit of a level, or what it means that there are none (no word of the text known). */
const placed = (l: { rank: number | null; fit: number | null }) => (l.fit === null ? 'no fit: no word of the text is in the nomenclature (scoring gives no misclassification signal)' : `rank ${l.rank}, fit ${pct(l.fit)}`);

export async function textCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(TEXT_HELP); return sub ? 0 : 1; }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      hs: { type: 'string' }, top: { type: 'string' }, watchlists: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      'data-dir': { type: 'string' }, by: { type: 'string' }, replace: { type: 'boolean' }, out: { type: 'string' },
    },
  });
  if (values.help) { process.stdout.write(TEXT_HELP); return 0; }
  if (sub === 'lists') return listsCommand(positionals, values);
  if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID(`text ${sub} needs one text argument (quote it)`, { field: 'text', expected: 'one quoted text', got: positionals });
  const text = positionals[0];
  const print = (s: string, obj: unknown) => process.stdout.write(`${values.json ? JSON.stringify(obj, null, 2) : s}\n`);
  if (sub === 'fit') {
    if (!values.hs) throw errors.SEL_ERR_OPTION_INVALID('text fit needs --hs <code>', { field: 'hs', expected: 'the declared HS code', got: values.hs });
    const f = hsFitModel().fit(values.hs, text, values.top !== undefined ? intOption(values.top, 'top', 1, 50) : 3);
    const lines = [
      `"${f.description}" declared ${f.hs} (${f.knownTerms} of ${f.terms} terms known to the nomenclature)`,
      `  chapter ${f.chapter.code}: similarity ${f.chapter.similarity.toFixed(3)}, ${placed(f.chapter)}`,
      f.heading ? `  heading ${f.heading.code}: similarity ${f.heading.similarity.toFixed(3)}, ${placed(f.heading)}` : '  heading: (declared code has 2 digits)',
      'best-fitting headings:',
      ...f.bestHeadings.map((h) => `  ${h.code} ${h.similarity.toFixed(3)}  ${h.description}`),
      'best-fitting chapters:',
      ...f.bestChapters.map((c) => `  ${c.code} ${c.similarity.toFixed(3)}  ${c.description}`),
    ];
    print(lines.join('\n'), f);
    return 0;
  }
  if (sub === 'match') {
    const compiled = compileWatchLists(values.watchlists ? validateWatchLists(readJsonFile(values.watchlists, 'the watch lists', 'file', errors.SEL_ERR_WATCHLIST_INVALID)) : withStore(values['data-dir'], (store) => store.active()));
    const hits = compiled.match(text).map((i) => compiled.terms[i]);
    print(hits.length ? hits.map((h) => `${h.list} (${h.riskArea}): ${h.term}`).join('\n') : 'no watch-list term found', hits.map(({ list, riskArea, term }) => ({ list, riskArea, term })));
    return 0;
  }
  throw errors.SEL_ERR_OPTION_INVALID(`unknown text subcommand "${sub}"`, { field: 'subcommand', expected: 'fit or match', got: sub });
}


/** Runs fn on the data directory's watch lists; only an import (create) may make the store. */
function withStore<T>(dataDir: string | undefined, fn: (store: WatchListStore) => T, create = false): T {
  const dir = resolve(dataDir ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  const db = create ? openStore(join(dir, STORE_FILE)) : openExistingStore(dir);
  try {
    return fn(new WatchListStore(db));
  } finally {
    db.close();
  }
}

function listsCommand(args: string[], values: { 'data-dir'?: string; by?: string; replace?: boolean; out?: string; json?: boolean }): number {
  const [action, ...rest] = args;
  const by = values.by ?? `cli:${userInfo().username}`;
  const print = (s: string, obj: unknown) => process.stdout.write(`${values.json ? JSON.stringify(obj, null, 2) : s}\n`);
  const one = () => {
    if (rest.length !== 1) throw errors.SEL_ERR_OPTION_INVALID(`text lists ${action} needs one argument`, { field: 'id', expected: 'one id or file', got: rest });
    return rest[0];
  };
  const line = (r: WatchListRecord) => `${r.watchList.id.padEnd(24)} v${String(r.watchList.version).padEnd(3)} ${r.status.padEnd(8)} ${r.watchList.riskArea.padEnd(12)} ${r.watchList.terms.length} terms  ${r.watchList.title ?? ''}`;
  return withStore(values['data-dir'], (store) => {
    switch (action) {
      case 'import': {
        const s = store.importSet(readJsonFile(one(), 'the watch lists', 'file', errors.SEL_ERR_WATCHLIST_INVALID), { by, replace: values.replace === true });
        print(`created ${s.created.length}, updated ${s.updated.length}, unchanged ${s.unchanged.length}, retired ${s.retired.length}`, s);
        return 0;
      }
      case 'export': {
        const text = `${JSON.stringify(store.exportSet(), null, 2)}\n`;
        if (values.out) { writeFileDurable(values.out, text); process.stdout.write(values.json ? text : `wrote ${values.out}\n`); } else process.stdout.write(text);
        return 0;
      }
      case 'list': {
        const all = store.list();
        print(all.length ? all.map(line).join('\n') : 'no watch lists', all);
        return 0;
      }
      case 'show': {
        const history = store.history(one());
        const current = history[history.length - 1];
        print([line(current), ...current.watchList.terms.map((t) => `  ${t}`), 'history:', ...history.map((h) => `  v${h.watchList.version} ${h.changedAt} ${h.changedBy}: ${h.change}`)].join('\n'), { current, history });
        return 0;
      }
      case 'activate':
      case 'retire': {
        const r = store.setStatus(one(), action === 'activate' ? 'active' : 'retired', by);
        print(line(r), r);
        return 0;
      }
      default:
        throw errors.SEL_ERR_OPTION_INVALID(`unknown text lists command "${action ?? ''}"`, { field: 'command', expected: 'import, export, list, show, activate or retire', got: action });
    }
  }, action === 'import');
}
