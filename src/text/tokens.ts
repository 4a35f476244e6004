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
 * Cyrillic and Greek look-alikes in a Latin word folded (foldLookAlikes),
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
/** A word the Porter stemmer handles: lower-case Latin letters only. */
const LETTERS = /^[a-z]+$/;
const stemCache = new Map<string, string>();

/** Lower-cased tokens of a text, diacritics removed, look-alike letters in a Latin word folded, not stemmed. */
export function words(text: string): string[] {
  if (!text) return [];
  const ascii = asciiWords(text);
  if (ascii) return ascii;
  const out: string[] = [];
  for (const w of text.normalize('NFKD').replace(FORMAT, '').replace(MARKS, '$1').normalize('NFC').split(SPLIT)) if (w !== '') out.push(w);
  // look-alikes are folded before lower case: a Greek Η is an H, its η an n
  foldLookAlikes(out);
  for (let i = 0; i < out.length; i++) out[i] = out[i].toLowerCase().replace(/ς/g, 'σ').replace(/ß/g, 'ss');
  return out;
}

/**
 * words() of a text of printable ASCII characters only (most descriptions),
 * in one scan: its words are its runs of letters and digits, lower-cased.
 * Undefined for any other text (the general path normalises it).
 */
function asciiWords(text: string): string[] | undefined {
  const out: string[] = [];
  let start = -1, upper = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return undefined;
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39)) {
      if (start < 0) start = i;
    } else if (c >= 0x41 && c <= 0x5a) {
      if (start < 0) start = i;
      upper = true;
    } else if (start >= 0) {
      // lower-cased word by word, only the words that need it (not the whole text copied)
      out.push(upper ? text.slice(start, i).toLowerCase() : text.slice(start, i));
      start = -1;
      upper = false;
    }
  }
  if (start >= 0) out.push(upper ? text.slice(start).toLowerCase() : text.slice(start));
  return out;
}

/**
 * Cyrillic and Greek letters that look like a Latin one, capitals and small
 * letters, after Unicode's confusables (UTS #39) for these scripts. Folded
 * after NFKD, so every key is its own NFKD form (the lunate sigma ϲ is σ by
 * then, and is not folded).
 */
const LOOK_ALIKE: ReadonlyMap<string, string> = new Map(Object.entries({
  А: 'A', В: 'B', Е: 'E', К: 'K', М: 'M', Н: 'H', О: 'O', Р: 'P', С: 'C', Т: 'T', Х: 'X', У: 'Y', І: 'I', Ј: 'J', Ѕ: 'S', Ԛ: 'Q', Ԝ: 'W', Ӏ: 'I', Һ: 'H', Ԁ: 'D',
  а: 'a', е: 'e', о: 'o', р: 'p', с: 'c', у: 'y', х: 'x', і: 'i', ј: 'j', ѕ: 's', һ: 'h', ԁ: 'd', ԛ: 'q', ԝ: 'w', ӏ: 'l',
  Α: 'A', Β: 'B', Ε: 'E', Ζ: 'Z', Η: 'H', Ι: 'I', Κ: 'K', Μ: 'M', Ν: 'N', Ο: 'O', Ρ: 'P', Τ: 'T', Υ: 'Y', Χ: 'X',
  α: 'a', η: 'n', ι: 'i', ν: 'v', ο: 'o', ρ: 'p', υ: 'u', χ: 'x',
}));
const LATIN = /\p{Script=Latin}/u;
const CYRILLIC_GREEK = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;
const DIGIT = /\p{N}/u;

/** Whether every letter of a Cyrillic or Greek word has a Latin look-alike ("РС" for "PC"). */
function allLookAlike(w: string): boolean {
  for (const ch of w) if (!LOOK_ALIKE.has(ch) && !DIGIT.test(ch)) return false;
  return true;
}

/**
 * Folds the look-alike letters of a word written in Latin letters with
 * Cyrillic or Greek ones mixed in, a way past keyword lists ("rеplicа" with
 * a Cyrillic е and а is "replica"): in a word that mixes Latin with Cyrillic
 * or Greek letters; and in a Cyrillic or Greek word whose every letter has
 * a Latin look-alike ("РС"), when the text has Latin words and no Cyrillic
 * or Greek word with a letter that has none (a Russian or Greek description
 * is left as written). Unicode's mixed-script and whole-script confusables
 * (UTS #39), for these two scripts.
 */
function foldLookAlikes(tokens: string[]): void {
  let latin = false, native = false;
  const kind = tokens.map((w) => {
    const l = LATIN.test(w);
    if (l) latin = true;
    if (!CYRILLIC_GREEK.test(w)) return 0;
    if (l) return 1; // mixed: folded
    if (allLookAlike(w)) return 2; // look-alikes only: folded in a Latin text
    native = true;
    return 0;
  });
  for (let i = 0; i < tokens.length; i++) {
    if (kind[i] === 1 || (kind[i] === 2 && latin && !native)) {
      let s = '';
      for (const ch of tokens[i]) s += LOOK_ALIKE.get(ch) ?? ch;
      tokens[i] = s;
    }
  }
}

/**
 * Words longer than this are not stemmed (kept as they are): natural's Porter
 * stemmer takes time that grows with the square of a word's length (16,000
 * consonants: half a second; a 100,000-character profile keyword held the
 * service's main thread for 19 s). No word of a language is this long.
 */
export const MAX_STEMMED_WORD = 64;

/** The Porter stem of one lower-case word (digits, non-Latin words and words over MAX_STEMMED_WORD characters are kept as they are). */
export function stem(word: string): string {
  if (word.length > MAX_STEMMED_WORD) return word;
  let s = stemCache.get(word);
  if (s !== undefined) return s;
  // not stemmed, so not cached: a model number or a reference ("x200", "2024") would only fill the cache
  if (!LETTERS.test(word)) return word;
  s = PorterStemmer.stem(word);
  if (stemCache.size >= CACHE_LIMIT) stemCache.clear();
  stemCache.set(word, s);
  return s;
}

/** Stemmed tokens of a text. */
export function stems(text: string): string[] {
  return words(text).map(stem);
}

/**
 * Words too common in goods descriptions to carry meaning for the HS-fit
 * model; with the pieces of the nomenclature's abbreviations: "n.e.s." and
 * "n.e.c." (not elsewhere specified, classified) and "heading no.", in about
 * 460 of its 1,229 headings each: they weighed nothing and made every
 * description that used them visit half the headings.
 */
export const STOPWORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'by', 'for', 'from', 'in', 'into', 'is', 'it', 'its', 'not', 'of', 'on', 'or',
  'other', 'others', 'than', 'that', 'the', 'their', 'this', 'to', 'with', 'whether', 'excluding', 'including', 'n', 'e', 's',
  'nes', 'nec', 'c', 'no', 'heading', 'headings', 'chapter', 'subheading', 'kind', 'kinds', 'used', 'such', 'thereof',
].map((w) => stem(w)));
