/**
 * Watch lists: analyst-maintained keywords and multi-word phrases per risk
 * area ("replica", "power bank", "precursor"), matched on stems.
 *
 * compileWatchLists() turns the lists into one trie over stem sequences;
 * a matcher walks a description's stems once and reports, for each term
 * found, its index (the bit of the declaration's keyword bitmap). A phrase
 * matches its words in sequence whatever separates them ("Power-Banks",
 * "power bank", "POWER/BANK").
 */
import { errors } from '../errors.js';
import { MAX_PHRASE_WORDS, MAX_TERM_CHARS, MAX_TITLE_CHARS, RISK_AREAS, type RiskArea } from '../profiles/profile.js';
import { stem, stems, words } from './tokens.js';

export interface WatchList {
  /** 1–64 letters, digits, ".", "_", ":" or "-". */
  id: string;
  title?: string;
  riskArea: RiskArea;
  /** Keywords and phrases (1–8 words each), at least one. */
  terms: string[];
  /** Set by the store. */
  version?: number;
}

/** One compiled term: its list, its text, and its stems. */
export interface WatchTerm {
  list: string;
  riskArea: RiskArea;
  term: string;
  stems: string[];
  /** Every stem sequence the term matches (termSequences: its stems first, then its joined forms). */
  sequences: string[][];
}

interface Node {
  next: Map<string, Node>;
  /** Terms ending here (indices into CompiledWatchLists.terms). */
  ends: number[];
}

export interface CompiledWatchLists {
  terms: WatchTerm[];
  /** Words of the longest phrase. */
  maxWords: number;
  /** Indices of the terms found in a text, ascending, without repeats. */
  match(text: string): number[];
  /** The same for pre-computed stems. */
  matchStems(s: readonly string[]): number[];
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
export const MAX_TERMS = 65_535;

function invalid(field: string, expected: string, got: unknown): never {
  throw errors.SEL_ERR_WATCHLIST_INVALID(`${field}: expected ${expected}, got ${JSON.stringify(got)}`, { field, expected, got });
}

/** Validates one list; returns a normalised copy (terms trimmed, duplicates by stems removed). */
export function validateWatchList(raw: unknown, where = 'watchList'): WatchList {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) invalid(where, 'an object', raw);
  const w = raw as Record<string, unknown>;
  for (const k of Object.keys(w)) if (!['id', 'title', 'riskArea', 'terms', 'version'].includes(k)) invalid(`${where}.${k}`, 'one of id, title, riskArea, terms, version', k);
  if (typeof w.id !== 'string' || !ID_RE.test(w.id)) invalid(`${where}.id`, 'an id of 1–64 letters, digits, ".", "_", ":" or "-"', w.id);
  const at = `${where}(${w.id})`;
  if (w.title !== undefined && (typeof w.title !== 'string' || w.title.length > MAX_TITLE_CHARS)) invalid(`${at}.title`, `a string of at most ${MAX_TITLE_CHARS} characters`, w.title);
  if (!(RISK_AREAS as readonly unknown[]).includes(w.riskArea)) invalid(`${at}.riskArea`, `one of ${RISK_AREAS.join(', ')}`, w.riskArea);
  if (!Array.isArray(w.terms) || w.terms.length === 0) invalid(`${at}.terms`, 'a non-empty array of keywords or phrases', w.terms);
  const seen = new Set<string>();
  const terms: string[] = [];
  (w.terms as unknown[]).forEach((t, i) => {
    if (typeof t !== 'string' || t.length > MAX_TERM_CHARS) invalid(`${at}.terms[${i}]`, `a keyword or phrase of at most ${MAX_TERM_CHARS} characters`, t);
    const s = stems(t);
    if (s.length === 0 || s.length > MAX_PHRASE_WORDS) invalid(`${at}.terms[${i}]`, `1–${MAX_PHRASE_WORDS} words of letters or digits`, t);
    const key = s.join(' ');
    if (seen.has(key)) return; // "replica" and "replicas" are one term
    seen.add(key);
    terms.push(t.trim());
  });
  const out: WatchList = { id: w.id, riskArea: w.riskArea as RiskArea, terms };
  if (typeof w.title === 'string') out.title = w.title;
  if (w.version !== undefined) {
    if (!Number.isInteger(w.version) || (w.version as number) < 1) invalid(`${at}.version`, 'an integer >= 1', w.version);
    out.version = w.version as number;
  }
  return out;
}

export function validateWatchLists(raw: unknown): WatchList[] {
  const list = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Array.isArray((raw as { watchLists?: unknown }).watchLists)
    ? (raw as { watchLists: unknown[] }).watchLists
    : raw;
  if (!Array.isArray(list)) invalid('watchLists', 'an array of watch lists or {"watchLists": [...]}', typeof raw);
  const ids = new Set<string>();
  return list.map((w, i) => {
    const v = validateWatchList(w, `watchLists[${i}]`);
    if (ids.has(v.id)) invalid(`watchLists[${i}].id`, 'unique ids', v.id);
    ids.add(v.id);
    return v;
  });
}

/** Phrases of up to this many words also match with adjacent words written together (termSequences). */
export const MAX_JOINED_WORDS = 4;

/**
 * The stem sequences a keyword or phrase matches: its stems; and for a
 * phrase of 2 to MAX_JOINED_WORDS words, each way of writing adjacent words
 * together ("power bank" also matches "powerbank" and "Powerbanks", "lithium
 * ion battery" "lithium-ion battery", "lithiumion battery" and
 * "lithiumionbattery"), a common way past a phrase. A joined word is
 * stemmed whole, from the words and from their stems ("replicas watches":
 * "replicaswatch" and "replicawatch").
 */
export function termSequences(text: string): string[][] {
  const w = words(text);
  const base = w.map(stem);
  const out = [base];
  if (w.length < 2 || w.length > MAX_JOINED_WORDS) return out;
  const seen = new Set([base.join(' ')]);
  for (let joins = 1; joins < 1 << (w.length - 1); joins++) {
    for (const parts of [w, base]) {
      const seq: string[] = [];
      let cur = parts[0];
      for (let j = 1; j < parts.length; j++) {
        if (joins & (1 << (j - 1))) cur += parts[j];
        else { seq.push(stem(cur)); cur = parts[j]; }
      }
      seq.push(stem(cur));
      const key = seq.join(' ');
      if (!seen.has(key)) { seen.add(key); out.push(seq); }
    }
  }
  return out;
}

/**
 * A matcher over stem sequences: walks a text's stems once and returns the
 * indices (into `terms`) of the terms one of whose sequences is found,
 * ascending, without repeats.
 */
export function stemTrie(terms: readonly (readonly (readonly string[])[])[]): (s: readonly string[]) => number[] {
  const root: Node = { next: new Map(), ends: [] };
  terms.forEach((seqs, index) => seqs.forEach((seq) => {
    let node = root;
    for (const w of seq) {
      let n = node.next.get(w);
      if (!n) { n = { next: new Map(), ends: [] }; node.next.set(w, n); }
      node = n;
    }
    // indices arrive in order, a term's sequences together: a repeat can only be the last one (includes()
    // was quadratic in the terms sharing a sequence: one term in 65,535 lists)
    if (node.ends[node.ends.length - 1] !== index) node.ends.push(index);
  }));
  return (s: readonly string[]): number[] => {
    let found: number[] | undefined;
    for (let i = 0; i < s.length; i++) {
      let node: Node | undefined = root;
      for (let j = i; j < s.length && node; j++) {
        node = node.next.get(s[j]);
        if (node && node.ends.length) (found ??= []).push(...node.ends);
      }
    }
    if (!found) return [];
    return found.length === 1 ? found : [...new Set(found)].sort((a, b) => a - b);
  };
}

/** Compiles watch lists into one matcher. Term i is bit i of a keyword bitmap. */
export function compileWatchLists(lists: readonly WatchList[]): CompiledWatchLists {
  const terms: WatchTerm[] = [];
  for (const l of lists) for (const term of l.terms) { const sequences = termSequences(term); terms.push({ list: l.id, riskArea: l.riskArea, term, stems: sequences[0], sequences }); }
  if (terms.length > MAX_TERMS) invalid('watchLists', `at most ${MAX_TERMS} terms in all`, terms.length);
  const matchStems = stemTrie(terms.map((t) => t.sequences));
  const maxWords = terms.reduce((m, t) => Math.max(m, t.stems.length), 0);
  return { terms, maxWords, matchStems, match: (text: string) => matchStems(stems(text)) };
}
