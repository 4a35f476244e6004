/**
 * Text normalisation for goods descriptions and intelligence texts:
 * Unicode NFKD, invisible format characters removed (a soft hyphen or a
 * zero-width space inside "rep\u200blica" must not split the word), the
 * combining marks of Latin, Greek and Cyrillic letters removed ("Café" →
 * "cafe"), recomposed (NFC: in Japanese, Devanagari or Thai the marks are
 * part of the spelling, and バッグ "bag" is not パック "pack"), lower case with
 * ς and ß folded (σ, ss), split on anything that is not a letter, a digit
 * or such a mark
 * (so "power-bank", "power/bank" and "POWER BANK" give the same tokens),
 * then the Porter stemmer of `natural` ("replicas" → "replica"). natural is
 * imported by module path: its package entry loads database clients and a
 * word net.
 *
 * Stems are cached (descriptions repeat heavily in customs traffic); the
 * cache is bounded and cleared when full.
 */
import PorterStemmer from 'natural/lib/natural/stemmers/porter_stemmer.js';

/** Word characters: letters, digits, and the marks left (those of scripts where they are part of the spelling: a Devanagari vowel sign). */
const SPLIT = /[^\p{L}\p{M}\p{N}]+/u;
/** Combining marks on a Latin, Greek or Cyrillic letter (accents there: "café" is "cafe"). */
const MARKS = /([\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}])\p{M}+/gu;
/** Invisible format characters (soft hyphen, zero-width space and joiners, word joiner, byte-order mark, direction marks). */
const FORMAT = /\p{Cf}+/gu;
const CACHE_LIMIT = 200_000;
const stemCache = new Map<string, string>();

/** Lower-cased tokens of a text, diacritics removed, not stemmed. */
export function words(text: string): string[] {
  if (!text) return [];
  const plain = /^[\x20-\x7e]*$/.test(text)
    ? text.toLowerCase()
    : text.normalize('NFKD').replace(FORMAT, '').replace(MARKS, '$1').normalize('NFC').toLowerCase().replace(/ς/g, 'σ').replace(/ß/g, 'ss');
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
