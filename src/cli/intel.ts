/**
 * `selectivity intel <path…>`: reads intelligence texts (news items, seizure
 * and irregularity reports), builds the keyword co-occurrence network and
 * suggests new watch-list terms; writes JSON, GraphML and an HTML page.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { RISK_AREAS, type RiskArea } from '../profiles/profile.js';
import { writeFileDurable } from '../store/durable.js';
import { readJsonFile } from '../store/json-file.js';
import { openExistingStore, STORE_FILE } from '../store/sqlite.js';
import { buildIntel, DEFAULT_HIGH_RISK_AREAS, renderIntelHtml, toGraphML, toJson, type IntelNetwork } from '../text/intel.js';
import { WatchListStore } from '../text/store.js';
import { validateWatchLists, type WatchList } from '../text/watchlist.js';
import { intOption } from './options.js';
import { Progress } from './progress.js';

export const INTEL_HELP = `Usage: selectivity intel <file or folder>... [options]

Reads news items, seizure reports and irregularity reports (.txt and .md: one
document per file; .jsonl and .ndjson: one per line, fields title, text, body,
content, description, summary; .xml, .rss and .atom: RSS items and Atom
entries), finds watch-list terms, modes of transport, countries, goods (HS
chapters) and frequent terms, and builds their co-occurrence network
(documents together, NPMI). Suggests new watch-list terms: frequent terms
ranked by association (G²) with high-risk watch-list terms.

Options:
  --watchlists <file.json>  watch lists to use (default: the store's active lists)
  --data-dir <dir>          the store holding the watch lists (default ./data)
  --out <prefix|dir/>       write <prefix>.json, .graphml and .html (a folder, or a
                            path ending in "/": intel.json, intel.graphml, intel.html in it)
  --graphml <file>          write the network as GraphML
  --html <file>             write the HTML page (network drawing, suggestions)
  --json                    print the whole network as JSON on stdout
  --max-terms <n>           frequent-term nodes (default 200)
  --min-df <n>              documents a frequent term needs (default 2)
  --min-support <n>         documents an edge and a suggestion need (default 2)
  --max-edges <n>           edges kept, heaviest first (default 2000)
  --suggestions <n>         suggestions (default 25)
  --risk-areas <a,b,…>      high-risk areas (default ${DEFAULT_HIGH_RISK_AREAS.join(',')})
  --strict                  fail (SEL_ERR_INTEL_INPUT) on a malformed line or feed
                            instead of skipping it
`;

/** The files --out, --graphml and --html name. */
function outputs(values: { out?: string; graphml?: string; html?: string }): { json?: string; graphml?: string; html?: string } {
  const files: { json?: string; graphml?: string; html?: string } = {};
  if (values.out !== undefined) {
    const out = values.out;
    if (out === '') throw errors.SEL_ERR_OPTION_INVALID('--out needs a prefix or a folder', { field: 'out', expected: 'a path prefix or a folder', got: out });
    const dir = /[\\/]$/.test(out) || (existsSync(out) && statSync(out).isDirectory());
    const prefix = dir ? join(out, 'intel') : out.replace(/\.(json|graphml|html)$/i, '');
    Object.assign(files, { json: `${prefix}.json`, graphml: `${prefix}.graphml`, html: `${prefix}.html` });
  }
  if (values.graphml !== undefined) files.graphml = values.graphml;
  if (values.html !== undefined) files.html = values.html;
  return files;
}

function riskAreas(raw: string): RiskArea[] {
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const a of list) {
    if (!(RISK_AREAS as readonly string[]).includes(a)) {
      throw errors.SEL_ERR_OPTION_INVALID(`--risk-areas: unknown risk area "${a}"`, { field: 'risk-areas', expected: `a comma-separated list of ${RISK_AREAS.join(', ')}`, got: raw });
    }
  }
  if (list.length === 0) throw errors.SEL_ERR_OPTION_INVALID('--risk-areas needs at least one risk area', { field: 'risk-areas', expected: 'a comma-separated list of risk areas', got: raw });
  return list as RiskArea[];
}

/** The store's active lists; a data directory without a store is an error (it made an empty one, and the analysis ran with no watch lists, saying nothing). */
function storeLists(dataDir: string | undefined): WatchList[] {
  const db = openExistingStore(resolve(dataDir ?? process.env.SELECTIVITY_DATA_DIR ?? 'data'), `a data directory holding ${STORE_FILE} with watch lists, or --watchlists <file.json>`);
  try {
    return new WatchListStore(db).active();
  } finally {
    db.close();
  }
}

function summary(net: IntelNetwork, written: string[]): string {
  const input = net.input!;
  const byKind = new Map<string, number>();
  for (const nd of net.nodes) byKind.set(nd.kind, (byKind.get(nd.kind) ?? 0) + 1);
  const lines = [
    `intel: ${net.documents} document(s) from ${input.files} file(s); skipped ${input.skippedFiles.length} file(s), ${input.skippedRecords.length} record(s); ${input.duplicates} duplicate(s)`,
    `network: ${net.nodes.length} nodes (${[...byKind].map(([k, c]) => `${c} ${k}`).join(', ')}), ${net.edges.length} edges (documents together >= ${net.settings.minSupport})`,
  ];
  for (const s of [...input.skippedFiles, ...input.skippedRecords].slice(0, 5)) lines.push(`  skipped ${s.path}${s.line !== undefined ? `:${s.line}` : ''}: ${s.reason}`);
  const top = (kind: string) => net.nodes.filter((nd) => nd.kind === kind).slice(0, 8).map((nd) => `${nd.label} (${nd.df})`).join(', ');
  for (const kind of ['watch', 'transport', 'route', 'goods', 'term']) {
    const t = top(kind);
    if (t) lines.push(`top ${kind}: ${t}`);
  }
  if (net.suggestions.length === 0) {
    lines.push(net.settings.highRiskTerms === 0 ? 'suggestions: none (no high-risk watch-list term; give --watchlists or import lists)' : 'suggestions: none above the minimum support');
  } else {
    lines.push('suggested watch-list terms (score = G² with the strongest high-risk term):');
    net.suggestions.slice(0, 10).forEach((s, i) => {
      lines.push(`  ${String(i + 1).padStart(2)}. ${s.term.padEnd(24)} score ${s.score.toFixed(2).padStart(7)}  in ${s.df} docs, ${s.support} with high-risk terms: ${s.watchTerms.slice(0, 3).map((w) => `${w.term} (${w.together})`).join(', ')}`);
    });
  }
  for (const w of written) lines.push(`wrote ${w}`);
  return lines.join('\n');
}

export async function intelCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      watchlists: { type: 'string' },
      'data-dir': { type: 'string' },
      out: { type: 'string' },
      graphml: { type: 'string' },
      html: { type: 'string' },
      json: { type: 'boolean' },
      'max-terms': { type: 'string' },
      'min-df': { type: 'string' },
      'min-support': { type: 'string' },
      'max-edges': { type: 'string' },
      suggestions: { type: 'string' },
      'risk-areas': { type: 'string' },
      strict: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(INTEL_HELP); return 0; }
  if (positionals.length === 0) throw errors.SEL_ERR_OPTION_INVALID('intel needs at least one file or folder of texts', { field: 'path', expected: 'one or more paths', got: positionals });
  const files = outputs(values);
  const opt = (name: 'max-terms' | 'min-df' | 'min-support' | 'max-edges' | 'suggestions', min: number, max: number) =>
    values[name] !== undefined ? intOption(values[name]!, name, min, max) : undefined;
  const settings = {
    maxTerms: opt('max-terms', 0, 100_000),
    minDf: opt('min-df', 1, 1_000_000_000),
    minSupport: opt('min-support', 1, 1_000_000_000),
    maxEdges: opt('max-edges', 0, 10_000_000),
    maxSuggestions: opt('suggestions', 0, 10_000),
    highRiskAreas: values['risk-areas'] !== undefined ? riskAreas(values['risk-areas']) : undefined,
  };
  const watchLists = values.watchlists
    ? validateWatchLists(readJsonFile(values.watchlists, 'the watch lists', 'watchlists', errors.SEL_ERR_WATCHLIST_INVALID))
    : storeLists(values['data-dir']);

  let bar: Progress | undefined;
  const net = buildIntel(positionals, {
    ...settings,
    watchLists,
    strict: values.strict === true,
    onProgress: (done, total) => {
      if (total < 50) return;
      bar ??= new Progress('reading', total);
      bar.update(done, done, done === total);
      if (done === total) bar.done();
    },
  });

  const written: string[] = [];
  if (files.json) { writeFileDurable(files.json, toJson(net)); written.push(files.json); }
  if (files.graphml) { writeFileDurable(files.graphml, toGraphML(net)); written.push(files.graphml); }
  if (files.html) { writeFileDurable(files.html, renderIntelHtml(net)); written.push(files.html); }
  process.stdout.write(values.json ? toJson(net) : `${summary(net, written)}\n`);
  return 0;
}
