/**
 * Intelligence texts for analysts (`selectivity intel`): news items, seizure
 * reports and irregularity reports become a keyword co-occurrence network
 * and a ranked list of new watch-list terms.
 *
 * Each document yields a set of nodes, found sentence by sentence:
 *   watch      watch-list terms (Porter stems, compileWatchLists)
 *   transport  modes of transport (built-in vocabulary, src/text/intel-vocab.ts)
 *   route      countries, ISO 3166 alpha-2, and ports and hubs that stand for them
 *   goods      HS chapters, from a built-in goods vocabulary
 *   term       frequent unigrams and bigrams of stems (stopwords, numbers, words
 *              under 3 letters and the words of watch, transport and route
 *              phrases left out), in at least minDf documents
 *
 * Co-occurrence is counted per document: an edge's weight is the number of
 * documents holding both nodes, its association the normalised pointwise
 * mutual information (NPMI, −1…1) and its lift N·n_ab / (n_a·n_b).
 *
 * Suggestions rank candidate terms (frequent terms, which are never watch
 * terms) by their strongest association with one high-risk watch term:
 * the signed log-likelihood ratio G² (Dunning) of the 2×2 table of documents
 * (candidate present or not × watch term present or not), counted only when
 * they co-occur in at least minSupport documents and more often than
 * independence predicts. See docs/intel.md.
 */
import { errors } from '../errors.js';
import { RISK_AREAS, type RiskArea } from '../profiles/profile.js';
import { COUNTRIES, foldPlural, GOODS, INTEL_STOPWORDS, TRANSPORT_MODES, Vocabulary } from './intel-vocab.js';
import { readIntelDocuments, type IntelDocument, type IntelSkip, type ReadIntelOptions } from './intel-read.js';
import { stem, words } from './tokens.js';
import { compileWatchLists, type WatchList } from './watchlist.js';

export { decodeXmlEntities, htmlToText, parseFeed, parseJsonLines, parsePlainText, readIntelDocuments } from './intel-read.js';
export type { IntelCorpus, IntelDocument, IntelSkip, ReadIntelOptions } from './intel-read.js';
export { renderIntelHtml, toGraphML } from './intel-render.js';

export type IntelNodeKind = 'watch' | 'transport' | 'route' | 'goods' | 'term';

/** Node kinds in the order nodes are listed. */
export const INTEL_NODE_KINDS: readonly IntelNodeKind[] = ['watch', 'transport', 'route', 'goods', 'term'];

export interface IntelNode {
  /** `kind:key`: `watch:power_bank`, `transport:sea`, `route:CN`, `goods:85`, `term:hoverboard`. */
  id: string;
  label: string;
  kind: IntelNodeKind;
  /** Documents holding the node. */
  df: number;
  /** Watch terms: the risk area of the (first) list. */
  riskArea?: RiskArea;
  /** Watch terms: the lists holding the term. */
  lists?: string[];
}

export interface IntelEdge {
  /** Node ids; the source comes first in the node order. */
  source: string;
  target: string;
  /** Documents holding both nodes. */
  weight: number;
  /** NPMI: ln(N·n_ab / (n_a·n_b)) / −ln(n_ab / N), in [−1, 1]; 1 when both nodes are in every document. */
  association: number;
  /** N·n_ab / (n_a·n_b). */
  lift: number;
}

/** A watch term a suggestion co-occurs with. */
export interface IntelEvidence {
  id: string;
  term: string;
  riskArea: RiskArea;
  /** Documents holding both. */
  together: number;
  /** Signed G² of the pair. */
  score: number;
}

export interface IntelSuggestion {
  /** Display form: the most common surface form of the stems. */
  term: string;
  /** Node id (suggested terms are always nodes of the network). */
  id: string;
  /** max over high-risk watch terms of G², among pairs with support ≥ minSupport and positive association. */
  score: number;
  /** Documents where the term occurs with at least one high-risk watch term. */
  support: number;
  /** Documents holding the term. */
  df: number;
  /** High-risk watch terms positively associated with it, strongest first (at most 5). */
  watchTerms: IntelEvidence[];
}

export interface IntelSettings {
  maxTerms: number;
  minDf: number;
  minSupport: number;
  maxEdges: number;
  maxSuggestions: number;
  /** Risk areas whose watch terms drive suggestions. */
  highRiskAreas: RiskArea[];
  /** Watch terms compiled, and how many of them are high-risk (every term when no list is in a high-risk area). */
  watchTerms: number;
  highRiskTerms: number;
}

export interface IntelInputSummary {
  paths: string[];
  files: number;
  duplicates: number;
  skippedFiles: IntelSkip[];
  skippedRecords: IntelSkip[];
}

export interface IntelNetwork {
  format: 'selectivity-intel';
  formatVersion: 1;
  /** Documents analysed. */
  documents: number;
  input?: IntelInputSummary;
  settings: IntelSettings;
  nodes: IntelNode[];
  edges: IntelEdge[];
  suggestions: IntelSuggestion[];
}

export interface IntelOptions {
  /** Watch lists (validated by the caller: validateWatchLists or the store). */
  watchLists?: readonly WatchList[];
  /** Most frequent-term nodes (default 200); suggested terms are added beyond it. */
  maxTerms?: number;
  /** Documents a frequent term needs (default 2). */
  minDf?: number;
  /** Documents an edge, and a suggestion's pair, need (default 2). */
  minSupport?: number;
  /** Most edges kept, heaviest first (default 2000). */
  maxEdges?: number;
  /** Most suggestions (default 25). */
  maxSuggestions?: number;
  /** Risk areas whose watch terms count as high-risk (default DEFAULT_HIGH_RISK_AREAS). */
  highRiskAreas?: readonly RiskArea[];
  /** Called every 1,000 documents analysed and at the end with (done, total). */
  onAnalysed?: (done: number, total: number) => void;
}

/** Risk areas whose watch terms drive suggestions by default: the smuggling and safety areas, not revenue, valuation, classification or origin. */
export const DEFAULT_HIGH_RISK_AREAS: readonly RiskArea[] = ['ipr', 'drugs', 'weapons', 'security', 'sps', 'safety', 'environment', 'prohibitions'];

const FORMAT = 'selectivity-intel';

// ---------------------------------------------------------------------------
// Statistics.

/**
 * Dunning's log-likelihood ratio G² of a 2×2 table (k11 both, k12 first
 * only, k21 second only, k22 neither): 2 Σ k·ln(k·N / (row·col)), ≥ 0.
 */
export function logLikelihoodRatio(k11: number, k12: number, k21: number, k22: number): number {
  const n = k11 + k12 + k21 + k22;
  const r1 = k11 + k12, r2 = k21 + k22, c1 = k11 + k21, c2 = k12 + k22;
  const t = (k: number, r: number, c: number) => (k > 0 ? k * Math.log((k * n) / (r * c)) : 0);
  return Math.max(0, 2 * (t(k11, r1, c1) + t(k12, r1, c2) + t(k21, r2, c1) + t(k22, r2, c2)));
}

/** Normalised PMI of two events seen together in nab of n documents, alone in na and nb: in [−1, 1], 1 when nab = n. */
export function npmi(nab: number, na: number, nb: number, n: number): number {
  if (nab <= 0) return -1;
  if (nab >= n) return 1;
  return Math.log((n * nab) / (na * nb)) / -Math.log(nab / n);
}

const round = (x: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

// ---------------------------------------------------------------------------
// Options.

function intSetting(v: number | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw errors.SEL_ERR_OPTION_INVALID(`${name} must be an integer in [${min}, ${max}]`, { field: name, expected: `an integer in [${min}, ${max}]`, got: v });
  }
  return v;
}

function settingsOf(options: IntelOptions): Omit<IntelSettings, 'watchTerms' | 'highRiskTerms'> {
  const areas = options.highRiskAreas ?? DEFAULT_HIGH_RISK_AREAS;
  for (const a of areas) {
    if (!(RISK_AREAS as readonly string[]).includes(a)) {
      throw errors.SEL_ERR_OPTION_INVALID(`highRiskAreas: unknown risk area "${a}"`, { field: 'highRiskAreas', expected: `risk areas among ${RISK_AREAS.join(', ')}`, got: a });
    }
  }
  return {
    maxTerms: intSetting(options.maxTerms, 'maxTerms', 200, 0, 100_000),
    minDf: intSetting(options.minDf, 'minDf', 2, 1, 1_000_000_000),
    minSupport: intSetting(options.minSupport, 'minSupport', 2, 1, 1_000_000_000),
    maxEdges: intSetting(options.maxEdges, 'maxEdges', 2000, 0, 10_000_000),
    maxSuggestions: intSetting(options.maxSuggestions, 'maxSuggestions', 25, 0, 10_000),
    highRiskAreas: [...new Set(areas)],
  };
}

// ---------------------------------------------------------------------------
// Extraction.

let vocabularies: { transport: Vocabulary; routes: Vocabulary; goods: Vocabulary } | undefined;

function vocab() {
  return (vocabularies ??= {
    transport: new Vocabulary(TRANSPORT_MODES, words),
    routes: new Vocabulary(COUNTRIES, words),
    goods: new Vocabulary(GOODS, words),
  });
}

/** Sentences of a text: split after . ! ? ; followed by white space, and at blank lines. */
export function sentences(text: string): string[] {
  return text.split(/(?<=[.!?;])\s+|\n[ \t]*\r?\n/).filter((s) => s.trim() !== '');
}

/** Whether a token may be (part of) a frequent term. */
function termToken(word: string, s: string): boolean {
  return word.length >= 3 && !/\d/.test(word) && !INTEL_STOPWORDS.has(s);
}

interface WatchNodeInfo { id: string; label: string; riskArea: RiskArea; lists: string[]; highRisk: boolean }

function startsAt(s: readonly string[], at: number, seq: readonly string[]): boolean {
  if (at + seq.length > s.length) return false;
  for (let k = 0; k < seq.length; k++) if (s[at + k] !== seq[k]) return false;
  return true;
}

/**
 * Builds the co-occurrence network and the suggestions of a set of
 * documents. Deterministic: the same documents in the same order give the
 * same network.
 */
export function analyseIntel(documents: readonly IntelDocument[], options: IntelOptions = {}): IntelNetwork {
  const base = settingsOf(options);
  const { minDf, minSupport } = base;
  const compiled = compileWatchLists(options.watchLists ?? []);
  const areas = new Set<string>(base.highRiskAreas);
  const anyHighRisk = compiled.terms.some((t) => areas.has(t.riskArea));

  // Watch terms with the same stems (in several lists) are one node.
  const watchNodes = new Map<string, WatchNodeInfo>();
  const watchNodeOf = compiled.terms.map((t) => {
    const id = `watch:${t.stems.join('_')}`;
    let w = watchNodes.get(id);
    if (!w) { w = { id, label: t.term, riskArea: t.riskArea, lists: [], highRisk: false }; watchNodes.set(id, w); }
    if (!w.lists.includes(t.list)) w.lists.push(t.list);
    if (!anyHighRisk || areas.has(t.riskArea)) w.highRisk = true;
    return w;
  });
  const settings: IntelSettings = { ...base, watchTerms: watchNodes.size, highRiskTerms: [...watchNodes.values()].filter((w) => w.highRisk).length };

  const { transport, routes, goods } = vocab();
  const termIndex = new Map<string, number>();
  const termKeys: string[] = [];
  const termDf: number[] = [];
  const termTf: number[] = [];
  const surfaces: Map<string, number>[] = [];
  const docNodes: string[][] = [];
  const docTerms: Int32Array[] = [];
  const knownDf = new Map<string, number>();

  const addTerm = (key: string, surface: string, seen: Set<number>) => {
    let i = termIndex.get(key);
    if (i === undefined) {
      i = termKeys.length;
      termIndex.set(key, i);
      termKeys.push(key);
      termDf.push(0);
      termTf.push(0);
      surfaces.push(new Map());
    }
    termTf[i]++;
    surfaces[i].set(surface, (surfaces[i].get(surface) ?? 0) + 1);
    if (!seen.has(i)) { seen.add(i); termDf[i]++; }
  };

  documents.forEach((doc, d) => {
    const nodes = new Set<string>();
    const terms = new Set<number>();
    for (const sentence of sentences(doc.text)) {
      const ws = words(sentence);
      if (ws.length === 0) continue;
      const ss = ws.map(stem);
      const folded = ws.map(foldPlural);
      const masked = new Uint8Array(ws.length);
      for (const t of compiled.matchStems(ss)) {
        nodes.add(watchNodeOf[t].id);
        // whichever way the term was written (its stems, or a joined form: "powerbanks" for power bank)
        for (const seq of compiled.terms[t].sequences) for (let i = 0; i < ss.length; i++) if (startsAt(ss, i, seq)) masked.fill(1, i, i + seq.length);
      }
      for (const h of transport.find(folded)) { nodes.add(`transport:${h.key}`); masked.fill(1, h.start, h.end); }
      for (const h of routes.find(folded)) { nodes.add(`route:${h.key}`); masked.fill(1, h.start, h.end); }
      for (const h of goods.find(folded)) nodes.add(`goods:${h.key}`);
      const ok = ws.map((w, i) => masked[i] === 0 && termToken(w, ss[i]));
      for (let i = 0; i < ws.length; i++) {
        if (!ok[i]) continue;
        addTerm(ss[i], ws[i], terms);
        if (i + 1 < ws.length && ok[i + 1]) addTerm(`${ss[i]} ${ss[i + 1]}`, `${ws[i]} ${ws[i + 1]}`, terms);
      }
    }
    const list = [...nodes].sort();
    for (const id of list) knownDf.set(id, (knownDf.get(id) ?? 0) + 1);
    docNodes.push(list);
    docTerms.push(Int32Array.from(terms).sort());
    if (options.onAnalysed && ((d + 1) % 1000 === 0 || d + 1 === documents.length)) options.onAnalysed(d + 1, documents.length);
  });
  const n = documents.length;

  // Frequent terms: df >= minDf; a unigram whose every occurrence is inside one frequent bigram is left out.
  const subsumed = new Uint8Array(termKeys.length);
  termKeys.forEach((key, i) => {
    const sp = key.indexOf(' ');
    if (sp < 0 || termDf[i] < minDf) return;
    for (const part of [key.slice(0, sp), key.slice(sp + 1)]) {
      const u = termIndex.get(part);
      if (u !== undefined && termTf[u] === termTf[i]) subsumed[u] = 1;
    }
  });
  const candidates = termKeys.map((_, i) => i).filter((i) => termDf[i] >= minDf && !subsumed[i])
    .sort((a, b) => termDf[b] - termDf[a] || termTf[b] - termTf[a] || (termKeys[a] < termKeys[b] ? -1 : termKeys[a] > termKeys[b] ? 1 : 0));
  const surfaceOf = (i: number) => {
    let best = '', count = -1;
    for (const [s, c] of surfaces[i]) if (c > count || (c === count && s < best)) { best = s; count = c; }
    return best;
  };
  const termId = (i: number) => `term:${termKeys[i].replace(' ', '_')}`;

  // Suggestions: per candidate, G² with each high-risk watch term it meets.
  const hrIds = [...watchNodes.values()].filter((w) => w.highRisk && knownDf.has(w.id)).map((w) => w.id);
  const hrIndex = new Map(hrIds.map((id, j) => [id, j]));
  const isCandidate = new Uint8Array(termKeys.length);
  for (const c of candidates) isCandidate[c] = 1;
  const together = new Map<number, Map<number, number>>();
  const supportAny = new Map<number, number>();
  for (let d = 0; d < n; d++) {
    const hr: number[] = [];
    for (const id of docNodes[d]) { const j = hrIndex.get(id); if (j !== undefined) hr.push(j); }
    if (hr.length === 0) continue;
    for (const c of docTerms[d]) {
      if (!isCandidate[c]) continue;
      supportAny.set(c, (supportAny.get(c) ?? 0) + 1);
      let m = together.get(c);
      if (!m) { m = new Map(); together.set(c, m); }
      for (const j of hr) m.set(j, (m.get(j) ?? 0) + 1);
    }
  }
  const scored: { c: number; score: number; evidence: IntelEvidence[] }[] = [];
  for (const [c, m] of together) {
    let best = 0;
    const evidence: IntelEvidence[] = [];
    for (const [j, k11] of m) {
      const id = hrIds[j];
      const dfT = knownDf.get(id)!;
      if (k11 * n <= termDf[c] * dfT) continue; // not above independence
      const g = logLikelihoodRatio(k11, termDf[c] - k11, dfT - k11, n - termDf[c] - dfT + k11);
      const w = watchNodes.get(id)!;
      evidence.push({ id, term: w.label, riskArea: w.riskArea, together: k11, score: round(g, 3) });
      if (k11 >= minSupport && g > best) best = g;
    }
    if (best <= 0) continue;
    evidence.sort((a, b) => b.score - a.score || b.together - a.together || (a.id < b.id ? -1 : 1));
    scored.push({ c, score: best, evidence: evidence.slice(0, 5) });
  }
  scored.sort((a, b) => b.score - a.score || supportAny.get(b.c)! - supportAny.get(a.c)! || termDf[b.c] - termDf[a.c] || (termKeys[a.c] < termKeys[b.c] ? -1 : 1));
  const suggestions: IntelSuggestion[] = scored.slice(0, base.maxSuggestions).map((s) => ({
    term: surfaceOf(s.c), id: termId(s.c), score: round(s.score, 3), support: supportAny.get(s.c)!, df: termDf[s.c], watchTerms: s.evidence,
  }));

  // Nodes: every watch, transport, route and goods node found; the maxTerms most frequent terms and the suggested ones.
  const chosen = new Set(candidates.slice(0, base.maxTerms));
  for (const s of scored.slice(0, base.maxSuggestions)) chosen.add(s.c);
  const nodes: IntelNode[] = [];
  for (const [id, df] of knownDf) {
    const colon = id.indexOf(':');
    const kind = id.slice(0, colon) as IntelNodeKind;
    const key = id.slice(colon + 1);
    if (kind === 'watch') {
      const w = watchNodes.get(id)!;
      nodes.push({ id, label: w.label, kind, df, riskArea: w.riskArea, lists: w.lists });
    } else {
      const label = (kind === 'transport' ? transport : kind === 'route' ? routes : goods).labels.get(key) ?? key;
      nodes.push({ id, label, kind, df });
    }
  }
  for (const c of chosen) nodes.push({ id: termId(c), label: surfaceOf(c), kind: 'term', df: termDf[c] });
  const kindRank = new Map(INTEL_NODE_KINDS.map((k, i) => [k, i]));
  nodes.sort((a, b) => kindRank.get(a.kind)! - kindRank.get(b.kind)! || b.df - a.df || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  // Edges: document co-occurrence of the nodes.
  const index = new Map(nodes.map((nd, i) => [nd.id, i]));
  const termNode = new Map<number, number>();
  for (const c of chosen) termNode.set(c, index.get(termId(c))!);
  const m = nodes.length;
  const pairs = new Map<number, number>();
  for (let d = 0; d < n; d++) {
    const present: number[] = [];
    for (const id of docNodes[d]) present.push(index.get(id)!);
    for (const c of docTerms[d]) { const i = termNode.get(c); if (i !== undefined) present.push(i); }
    present.sort((a, b) => a - b);
    for (let a = 0; a < present.length; a++) for (let b = a + 1; b < present.length; b++) {
      const key = present[a] * m + present[b];
      pairs.set(key, (pairs.get(key) ?? 0) + 1);
    }
  }
  const raw: { a: number; b: number; w: number; assoc: number }[] = [];
  for (const [key, w] of pairs) {
    if (w < minSupport) continue;
    const a = Math.floor(key / m), b = key % m;
    raw.push({ a, b, w, assoc: npmi(w, nodes[a].df, nodes[b].df, n) });
  }
  raw.sort((x, y) => y.w - x.w || y.assoc - x.assoc || x.a - y.a || x.b - y.b);
  const edges: IntelEdge[] = raw.slice(0, base.maxEdges).map((e) => ({
    source: nodes[e.a].id, target: nodes[e.b].id, weight: e.w, association: round(e.assoc, 4), lift: round((n * e.w) / (nodes[e.a].df * nodes[e.b].df), 3),
  }));

  return { format: FORMAT, formatVersion: 1, documents: n, settings, nodes, edges, suggestions };
}

/** Reads the texts under the given paths and analyses them; the network carries what was read and skipped in `input`. */
export function buildIntel(paths: string | readonly string[], options: IntelOptions & ReadIntelOptions = {}): IntelNetwork {
  const list = typeof paths === 'string' ? [paths] : [...paths];
  const corpus = readIntelDocuments(list, options);
  const net = analyseIntel(corpus.documents, options);
  return {
    format: net.format,
    formatVersion: net.formatVersion,
    documents: net.documents,
    input: { paths: list, files: corpus.files, duplicates: corpus.duplicates, skippedFiles: corpus.skippedFiles, skippedRecords: corpus.skippedRecords },
    settings: net.settings,
    nodes: net.nodes,
    edges: net.edges,
    suggestions: net.suggestions,
  };
}

/** The network as JSON text (two-space indent, final newline). */
export function toJson(network: IntelNetwork): string {
  return `${JSON.stringify(network, null, 2)}\n`;
}
