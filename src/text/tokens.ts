/**
 * Text normalisation for goods descriptions and intelligence texts:
 * Unicode NFKD with combining marks removed ("Café" → "cafe"), lower case,
 * split on anything that is not a letter or a digit (so "power-bank",
 * "power/bank" and "POWER BANK" give the same tokens), then the Porter
 * stemmer of `natural` ("replicas" → "replica"). natural is imported by
 * module path: its package entry loads database clients and a word net.
 *
 * Stems are cached (descriptions repeat heavily in customs traffic); the
 * cache is bounded and cleared when full.
 */
import PorterStemmer from 'natural/lib/natural/stemmers/porter_stemmer.js';

const SPLIT = /[^\p{L}\p{N}]+/u;
const MARKS = /\p{M}+/gu;
const CACHE_LIMIT = 200_000;
const stemCache = new Map<string, string>();

/** Lower-cased tokens of a text, diacritics removed, not stemmed. */
export function words(text: string): string[] {
  if (!text) return [];
  const plain = /^[\x20-\x7e]*$/.test(text) ? text.toLowerCase() : text.normalize('NFKD').replace(MARKS, '').toLowerCase();
  const out: string[] = [];
  for (const w of plain.split(SPLIT)) if (w !== '') out.push(w);
  return out;
}

/** The Porter stem of one lower-case word (digits and non-Latin words are kept as they are). */
export function stem(word: string): string {
  let s = stemCache.get(word);
  if (s !== undefined) return s;
  s = /^[a-z]+$/.test(word) ? PorterStemmer.stem(word) : word;
  if (stemCache.size >= CACHE_LIMIT) stemCache.clear();
  stemCache.set(word, s);
  return s;
}

/** Stemmed tokens of a text. */
export function stems(text: string): string[] {
  return words(text).map(stem);
}

/** Words too common in goods descriptions to carry meaning for the HS-fit model. */
export const STOPWORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'by', 'for', 'from', 'in', 'into', 'is', 'it', 'its', 'not', 'of', 'on', 'or',
  'other', 'others', 'than', 'that', 'the', 'their', 'this', 'to', 'with', 'whether', 'excluding', 'including', 'n', 'e', 's',
  'nes', 'heading', 'headings', 'chapter', 'subheading', 'kind', 'kinds', 'used', 'such', 'thereof',
].map((w) => stem(w)));
