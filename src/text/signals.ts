/**
 * Text signals in the scoring path: what the goods description of each
 * declaration adds before the kernel scores it.
 *
 * - Keywords: the watch-list terms and profile keywords (one term per stem
 *   sequence) found in the description. Profiles with a `keywords` condition
 *   match through them (the kernel receives, per distinct description, the
 *   bitmap row of the profiles its terms satisfy); every term found is a
 *   KEYWORD reason of the decision.
 * - Misclassification: the fit of the description to the declared HS chapter
 *   (src/text/hs-fit.ts quickFit: similarity of the declared chapter over the
 *   best chapter's). Below `settings.misclassification.below` the
 *   declaration gets `weight` added to its score and a MISCLASSIFICATION
 *   reason naming the best-fitting heading.
 *
 * Work is per distinct description (keywords) and per distinct
 * (HS heading, description) pair (fit) of a batch, and both are cached across
 * batches (customs traffic repeats its descriptions), as is each
 * (HS code, description) pair's signal, so the cost per declaration falls
 * with repetition. The same TextScorer serves the kernel's
 * host and the reference scorer, so that both see the same signals.
 */
import type { ColumnarBatch } from '../model/columnar.js';
import type { Profile, RiskArea } from '../profiles/profile.js';
import { hsFitModel, type HsFitModel, type QuickFit } from './hs-fit.js';
import { stems } from './tokens.js';
import { stemTrie, termSequences, type WatchList } from './watchlist.js';

/** One keyword term of a ruleset: a stem sequence, from watch lists and/or profiles. */
export interface KeywordTerm {
  /** The stems, joined by one space: the term's identity ("power bank"). */
  key: string;
  /** The term as first written (in a watch list, else in a profile). */
  text: string;
  /** Watch lists holding the term (none when only profiles use it). */
  lists: { id: string; riskArea: RiskArea }[];
}

export interface MisclassificationSettings {
  /** Added to the score of a declaration whose description fits its declared chapter poorly; 0 turns the signal off. */
  weight: number;
  /** Fit (declared chapter's similarity / best chapter's, 0–1) below which the signal fires. */
  below: number;
}

/** The text part of a ruleset, as compiled into its metadata. */
export interface TextConfig {
  terms: KeywordTerm[];
  /** Null when the misclassification signal is off (weight 0). */
  misclassification: MisclassificationSettings | null;
}

/** The term key of a keyword or phrase. */
export const termKey = (text: string): string => stems(text).join(' ');

/** Terms of watch lists (in list order), then profile keywords not already there. */
export function textConfig(profiles: readonly Profile[], watchLists: readonly WatchList[], misclassification: MisclassificationSettings): TextConfig {
  const terms: KeywordTerm[] = [];
  const byKey = new Map<string, KeywordTerm>();
  const add = (text: string, list?: WatchList) => {
    const key = termKey(text);
    let t = byKey.get(key);
    if (!t) { t = { key, text, lists: [] }; byKey.set(key, t); terms.push(t); }
    // a list's terms arrive together: a repeat can only be the last list (some() was quadratic in the lists sharing a term)
    if (list && t.lists[t.lists.length - 1]?.id !== list.id) t.lists.push({ id: list.id, riskArea: list.riskArea });
  };
  for (const l of watchLists) for (const term of l.terms) add(term, l);
  for (const p of profiles) for (const k of p.conditions.keywords ?? []) add(k);
  return { terms, misclassification: misclassification.weight !== 0 ? { ...misclassification } : null };
}

/** What a declaration's description contributes. */
export interface TextSignal {
  /** Keyword terms found (indices into TextConfig.terms), ascending. */
  terms: readonly number[];
  /**
   * Fit of the declared chapter (0–1, NaN when no term of the description is
   * known); when the signal fired, also of the declared heading, and the
   * heading to name (else NaN and '': nothing reads them, and they are half
   * the cost of a new description).
   */
  fit?: QuickFit;
  /** The declared chapter (with fit). */
  chapter?: string;
  /** The misclassification signal fired. */
  misclassified: boolean;
  /** Added to the score (the misclassification weight, or 0). */
  extra: number;
}

/** The text signals of a batch. */
export interface BatchText {
  /** Per row, the index of its signal. */
  row: Uint32Array;
  signals: TextSignal[];
  /** Per description code of the batch, the keyword terms found. */
  descriptionTerms: (readonly number[])[];
}

const NO_TERMS: readonly number[] = Object.freeze([]);
/** Descriptions a scorer keeps what it found for before it starts over. */
const CACHE_LIMIT = 100_000;
/** Characters of descriptions a scorer keeps before it starts over (about 32 MB of strings): counted only, 100,000 descriptions of 4,000 characters held about 650 MB in each scoring thread. */
const CACHE_CHARS = 16_000_000;
/** HS codes (or headings) a description keeps signals (fits) for: a description declared under many codes computes the rest each time. */
const PER_DESCRIPTION = 64;

/**
 * What a scorer found for one description: its keyword terms, its fit by
 * declared heading and its signal by declared HS code. The first heading's
 * fit and the first code's signal are held inline (a description is nearly
 * always declared under one code), more in a map (fields, not a small object
 * per map: that measured 6–14 % slower on new descriptions).
 */
interface Known {
  terms: readonly number[] | undefined;
  fitHeading: string | undefined;
  fit: QuickFit | undefined;
  fits: Map<string, QuickFit> | undefined;
  signalHs: string | undefined;
  signal: TextSignal | undefined;
  signals: Map<string, TextSignal> | undefined;
}

export class TextScorer {
  private readonly match: (s: readonly string[]) => number[];
  /**
   * By description, what was found for it: one lookup of the description
   * (whose hash V8 keeps on the string) where three caches each took one,
   * one of them with a key string built per (heading, description).
   */
  private readonly known = new Map<string, Known>();
  /** The characters of the descriptions in `known`. */
  private knownChars = 0;
  private model: HsFitModel | undefined;

  constructor(readonly config: TextConfig) {
    this.match = stemTrie(config.terms.map((t) => termSequences(t.text)));
  }

  /** Whether the ruleset has any text signal (keyword terms or misclassification). */
  get active(): boolean {
    return this.config.terms.length > 0 || this.config.misclassification !== null;
  }

  /** The entry of a description, made (and the cache started over when full) if new. */
  private entry(description: string): Known {
    let k = this.known.get(description);
    if (k === undefined) {
      if (this.known.size >= CACHE_LIMIT || this.knownChars + description.length > CACHE_CHARS) {
        this.known.clear();
        this.knownChars = 0;
      }
      this.knownChars += description.length;
      k = { terms: undefined, fitHeading: undefined, fit: undefined, fits: undefined, signalHs: undefined, signal: undefined, signals: undefined };
      this.known.set(description, k);
    }
    return k;
  }

  /** Keyword terms found in a description (`stemmed`: gives its stems, when the caller keeps them for the fit as well). */
  termsOf(description: string, stemmed: () => readonly string[] = () => stems(description), known?: Known): readonly number[] {
    if (this.config.terms.length === 0 || description === '') return NO_TERMS;
    const k = known ?? this.entry(description);
    if (k.terms === undefined) {
      const found = this.match(stemmed());
      k.terms = found.length ? found : NO_TERMS;
    }
    return k.terms;
  }

  /** Fit of a description to a declared code (kept per heading and description); the heading part only where the signal fires (TextSignal.fit). */
  fitOf(hs: string, description: string, stemmed?: () => readonly string[], known?: Known): QuickFit {
    const k = known ?? this.entry(description);
    const heading = hs.slice(0, 4);
    if (k.fitHeading === heading) return k.fit!;
    const more = k.fits?.get(heading);
    if (more) return more;
    const model = (this.model ??= hsFitModel());
    const c = model.chapterFit(hs, description, stemmed?.());
    // the headings only name the best one in the signal's reason: not computed for a fit that gives none
    const below = this.config.misclassification?.below ?? Infinity;
    const fit = c.chapterFit < below ? { chapterFit: c.chapterFit, ...model.headingFit(hs, c) } : { chapterFit: c.chapterFit, headingFit: NaN, bestHeading: '' };
    if (k.fitHeading === undefined) { k.fitHeading = heading; k.fit = fit; } else if ((k.fits ??= new Map()).size < PER_DESCRIPTION) k.fits.set(heading, fit);
    return fit;
  }

  /** The signal of one declaration. */
  signal(hs: string, description: string, terms = this.termsOf(description), stemmed?: () => readonly string[], known?: Known): TextSignal {
    const m = this.config.misclassification;
    if (!m) return { terms, misclassified: false, extra: 0 };
    const fit = this.fitOf(hs, description, stemmed, known);
    const misclassified = fit.chapterFit < m.below; // NaN (nothing known) never fires
    return { terms, fit, chapter: hs.slice(0, 2), misclassified, extra: misclassified ? m.weight : 0 };
  }

  /** signal(), kept across batches per (description, HS code); signals are never modified once made. */
  private cachedSignal(hs: string, description: string, terms: readonly number[], stemmed: () => readonly string[], known: Known): TextSignal {
    if (known.signalHs === hs) return known.signal!;
    let signal = known.signals?.get(hs);
    if (signal === undefined) {
      signal = this.signal(hs, description, terms, stemmed, known);
      if (known.signalHs === undefined) { known.signalHs = hs; known.signal = signal; } else if ((known.signals ??= new Map()).size < PER_DESCRIPTION) known.signals.set(hs, signal);
    }
    return signal;
  }

  /** The signals of a batch, or undefined when the ruleset has none. */
  batch(batch: ColumnarBatch): BatchText | undefined {
    if (!this.active) return undefined;
    const n = batch.size;
    const descDict = batch.dicts.description;
    const descCodes = batch.codes.description;
    // each description's stems, made at most once per batch, for its keywords and for its fit
    const stemmed: (readonly string[] | undefined)[] = new Array(descDict.length);
    const stemsOf = descDict.map((d, k) => () => (stemmed[k] ??= stems(d)));
    const known = descDict.map((d) => this.entry(d));
    const descriptionTerms = descDict.map((d, k) => this.termsOf(d, stemsOf[k], known[k]));
    const row = new Uint32Array(n);
    if (!this.config.misclassification) {
      // one signal per description
      row.set(descCodes.subarray(0, n));
      return { row, signals: descriptionTerms.map((terms) => ({ terms, misclassified: false, extra: 0 })), descriptionTerms };
    }
    // one signal per distinct (HS code, description) pair
    const hsDict = batch.dicts.hs;
    const hsCodes = batch.codes.hs;
    const D = descDict.length;
    const signals: TextSignal[] = [];
    const space = hsDict.length * D;
    const dense = space <= 4 * n + 65_536 ? new Int32Array(space).fill(-1) : undefined;
    const sparse = dense ? undefined : new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const h = hsCodes[i], d = descCodes[i];
      const key = h * D + d;
      let k = dense ? dense[key] : sparse!.get(key) ?? -1;
      if (k < 0) {
        k = signals.length;
        signals.push(this.cachedSignal(hsDict[h], descDict[d], descriptionTerms[d], stemsOf[d], known[d]));
        if (dense) dense[key] = k; else sparse!.set(key, k);
      }
      row[i] = k;
    }
    return { row, signals, descriptionTerms };
  }
}
