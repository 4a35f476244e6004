/**
 * How well a goods description fits its declared HS code.
 *
 * A TF-IDF model of the vocabulary of every HS chapter (2 digits) and
 * heading (4 digits), learnt from the nomenclature's own descriptions
 * (src/text/hs/harmonized-system.csv, PDDL): a heading's document is its
 * description and those of its subheadings; a chapter's, its description and
 * those of its headings and subheadings. Terms are Porter stems without
 * stopwords; weights are (1 + ln tf) · ln(N / df), vectors L2-normalised,
 * and similarity is the cosine, computed through an inverted index (cost
 * proportional to the postings of the description's own terms).
 *
 * fit() scores the declared heading and chapter against the best-fitting
 * ones: fit = similarity(declared) / similarity(best) in [0, 1]. A poor fit
 * with another heading named is a misclassification signal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../errors.js';
import { parseCsv } from '../model/csv.js';
import { packageRoot } from '../paths.js';
import { stems, STOPWORDS } from './tokens.js';

export interface HsEntry { code: string; description: string; level: number }

export interface HsCandidate { code: string; description: string; similarity: number }

export interface HsFit {
  hs: string;
  description: string;
  /** Stems the model knows, out of the description's. */
  knownTerms: number;
  terms: number;
  /** rank and fit are null when no word of the description is known to the nomenclature: no fit, as scoring sees it (no misclassification signal). */
  chapter: { code: string; similarity: number; rank: number | null; fit: number | null };
  heading: { code: string; similarity: number; rank: number | null; fit: number | null } | null;
  bestChapters: HsCandidate[];
  bestHeadings: HsCandidate[];
}

/** A stem's entry in one level: its idf and its postings (documents and their normalised weights; none when the idf is 0). */
interface Term { idf: number; doc: Int32Array; w: Float64Array }

/** A stem of the nomenclature: its entry in each level (undefined: not in that level's documents). */
interface Stem { chapter: Term | undefined; heading: Term | undefined }

/** A description's known stems, in the order first seen: per stem, its entry in each level (undefined: not in that level's vocabulary) and its count. */
interface Bag { chapter: (Term | undefined)[]; heading: (Term | undefined)[]; count: number[] }

/** The scoring path's fit of a description to its declared code (HsFitModel.quickFit). */
export interface QuickFit { chapterFit: number; headingFit: number; bestHeading: string }

/** HsFitModel.chapterFit's result: the declared chapter's fit, and the description's stems and best chapter for headingFit. */
export interface ChapterFit { chapterFit: number; bag: Bag; bestChapter: number }

/** One TF-IDF level (chapters or headings). */
class Level {
  readonly codes: string[] = [];
  readonly labels: string[] = [];
  /** Every stem of the level's documents. */
  readonly terms = new Map<string, Term>();
  private readonly scores: Float64Array;
  /**
   * The documents the last similarities() call gave a score (the first
   * `touchedCount`): the only non-zero entries of `scores`, so that a call
   * resets and a reader scans those, not every document (a description's
   * terms reach a few hundred of the 1,200 headings). Read, not written,
   * outside this class.
   */
  readonly touched: Int32Array;
  touchedCount = 0;
  /** Scratch: the query's weight of each stem. */
  private qw = new Float64Array(64);

  constructor(docs: Map<string, { label: string; text: string[] }>) {
    const tfs: Map<string, number>[] = [];
    const df = new Map<string, number>();
    for (const [code, d] of docs) {
      const tf = new Map<string, number>();
      for (const t of d.text) for (const s of stems(t)) if (!STOPWORDS.has(s)) tf.set(s, (tf.get(s) ?? 0) + 1);
      for (const s of tf.keys()) df.set(s, (df.get(s) ?? 0) + 1);
      this.codes.push(code);
      this.labels.push(d.label);
      tfs.push(tf);
    }
    const n = this.codes.length;
    const idf = new Map<string, number>();
    for (const [s, c] of df) idf.set(s, Math.log(n / c));
    const postings = new Map<string, { doc: number[]; w: number[] }>();
    tfs.forEach((tf, doc) => {
      let norm = 0;
      const ws: [string, number][] = [];
      for (const [s, c] of tf) { const w = (1 + Math.log(c)) * idf.get(s)!; ws.push([s, w]); norm += w * w; }
      norm = Math.sqrt(norm) || 1;
      for (const [s, w] of ws) {
        if (w === 0) continue;
        let p = postings.get(s);
        if (!p) { p = { doc: [], w: [] }; postings.set(s, p); }
        p.doc.push(doc);
        p.w.push(w / norm);
      }
    });
    for (const [s, x] of idf) {
      const p = postings.get(s);
      this.terms.set(s, { idf: x, doc: Int32Array.from(p?.doc ?? []), w: Float64Array.from(p?.w ?? []) });
    }
    this.scores = new Float64Array(n);
    this.touched = new Int32Array(n);
  }

  /**
   * Cosine similarity of a description's stems (their entries in this level,
   * with their counts) with every document; the returned array is reused by
   * the next call; the first `touchedCount` of `touched` are the documents
   * whose entry may be non-zero, in the order reached.
   */
  similarities(terms: readonly (Term | undefined)[], count: readonly number[]): Float64Array {
    const sc = this.scores, touched = this.touched;
    for (let k = 0; k < this.touchedCount; k++) sc[touched[k]] = 0;
    this.touchedCount = 0;
    let norm = 0;
    if (this.qw.length < terms.length) this.qw = new Float64Array(Math.max(terms.length, 2 * this.qw.length));
    const qw = this.qw;
    for (let k = 0; k < terms.length; k++) {
      const t = terms[k];
      qw[k] = 0;
      if (t === undefined || t.idf === 0) continue;
      const w = (1 + Math.log(count[k])) * t.idf;
      qw[k] = w;
      norm += w * w;
    }
    if (norm === 0) return sc;
    norm = Math.sqrt(norm);
    let reached = 0;
    for (let k = 0; k < terms.length; k++) {
      if (qw[k] === 0) continue;
      const { doc, w } = terms[k]!;
      const q = qw[k] / norm;
      for (let j = 0; j < doc.length; j++) {
        const d = doc[j];
        // a posting's weight is never 0, nor is q: an entry at 0 has not been reached yet
        if (sc[d] === 0) touched[reached++] = d;
        sc[d] += q * w[j];
      }
    }
    this.touchedCount = reached;
    return sc;
  }
}

function top(level: Level, sc: Float64Array, k: number): HsCandidate[] {
  const idx = Array.from(sc.keys()).filter((i) => sc[i] > 0).sort((a, b) => sc[b] - sc[a] || (level.codes[a] < level.codes[b] ? -1 : 1)).slice(0, k);
  return idx.map((i) => ({ code: level.codes[i], description: level.labels[i], similarity: sc[i] }));
}

function rankOf(sc: Float64Array, i: number): number {
  let r = 1;
  for (let j = 0; j < sc.length; j++) if (sc[j] > sc[i]) r++;
  return r;
}

export interface HsFitModelOptions {
  /** Levels whose descriptions feed the documents (default 2, 4, 6: all of them). */
  levels?: readonly number[];
}

export class HsFitModel {
  private readonly chapters: Level;
  private readonly headings: Level;
  /** Per stem of either level, its entry in each (null: a stopword): one lookup per stem of a description. */
  private readonly vocabulary = new Map<string, Stem | null>();
  private readonly chapterIndex = new Map<string, number>();
  private readonly headingIndex = new Map<string, number>();
  /** Per heading, the index of its chapter (-1: a chapter the nomenclature lacks). */
  private headingChapter = new Int32Array(0);

  constructor(entries: readonly HsEntry[], options: HsFitModelOptions = {}) {
    const use = new Set(options.levels ?? [2, 4, 6]);
    const ch = new Map<string, { label: string; text: string[] }>();
    const hd = new Map<string, { label: string; text: string[] }>();
    for (const e of entries) {
      const c = e.code.slice(0, 2);
      if (!ch.has(c)) ch.set(c, { label: '', text: [] });
      if (e.level === 2) ch.get(c)!.label = e.description;
      if (use.has(e.level)) ch.get(c)!.text.push(e.description);
      if (e.level >= 4) {
        const h = e.code.slice(0, 4);
        if (!hd.has(h)) hd.set(h, { label: '', text: [] });
        if (e.level === 4) hd.get(h)!.label = e.description;
        if (use.has(e.level)) hd.get(h)!.text.push(e.description);
      }
    }
    this.chapters = new Level(ch);
    this.headings = new Level(hd);
    for (const [stem, t] of this.chapters.terms) this.vocabulary.set(stem, { chapter: t, heading: undefined });
    for (const [stem, t] of this.headings.terms) {
      const v = this.vocabulary.get(stem);
      if (v) v.heading = t;
      else this.vocabulary.set(stem, { chapter: undefined, heading: t });
    }
    for (const w of STOPWORDS) this.vocabulary.set(w, null); // never a term of either level
    this.chapters.codes.forEach((c, i) => this.chapterIndex.set(c, i));
    this.headings.codes.forEach((c, i) => this.headingIndex.set(c, i));
    this.headingChapter = Int32Array.from(this.headings.codes, (c) => this.chapterIndex.get(c.slice(0, 2)) ?? -1);
  }

  /** Number of chapters and headings the model knows. */
  get size(): { chapters: number; headings: number } {
    return { chapters: this.chapters.codes.length, headings: this.headings.codes.length };
  }

  /** A description's stems without stopwords: each distinct known one's entries and count, in the order first seen; how many there are, and how many the model knows. */
  private bag(description: string, stemmed: readonly string[] = stems(description)): Bag & { terms: number; known: number } {
    const seen: Stem[] = [];
    const count: number[] = [];
    let index: Map<Stem, number> | undefined; // past a few distinct stems: a scan of `seen` would be quadratic
    let terms = 0, known = 0;
    for (const s of stemmed) {
      const v = this.vocabulary.get(s);
      if (v === null) continue; // a stopword
      terms++;
      if (v === undefined) continue; // not in the nomenclature: no weight anywhere
      known++;
      let k = -1;
      if (index) k = index.get(v) ?? -1;
      else for (let j = 0; j < seen.length; j++) if (seen[j] === v) { k = j; break; }
      if (k < 0) {
        k = seen.length;
        seen.push(v);
        count.push(0);
        if (index) index.set(v, k);
        else if (seen.length > 16) index = new Map(seen.map((x, j) => [x, j]));
      }
      count[k]++;
    }
    return { chapter: seen.map((v) => v.chapter), heading: seen.map((v) => v.heading), count, terms, known };
  }

  /** The chapter that fits a description best ('' when no term is known). */
  bestChapter(description: string): string {
    const b = this.bag(description);
    const sc = this.chapters.similarities(b.chapter, b.count);
    let best = -1;
    for (let i = 0; i < sc.length; i++) if (sc[i] > 0 && (best < 0 || sc[i] > sc[best])) best = i;
    return best < 0 ? '' : this.chapters.codes[best];
  }

  /**
   * The scoring path's view: fit of the declared chapter and heading (0–1,
   * NaN when no term of the description is known) and the best heading, in
   * one scan (no sorting). The code must be valid (the declaration schema
   * checks it); an unknown chapter or heading gives NaN.
   * `stemmed`: stems(description), when the caller has them already.
   */
  quickFit(hs: string, description: string, stemmed?: readonly string[]): QuickFit {
    const c = this.chapterFit(hs, description, stemmed);
    const { headingFit, bestHeading } = this.headingFit(hs, c);
    return { chapterFit: c.chapterFit, headingFit, bestHeading };
  }

  /**
   * quickFit's first half: the declared chapter's fit, with what its second
   * half (headingFit) needs. Scoring stops here when the chapter fits well
   * enough for no signal: the headings are only named in a signal's reason.
   */
  chapterFit(hs: string, description: string, stemmed?: readonly string[]): ChapterFit {
    const b = this.bag(description, stemmed);
    const cs = this.chapters.similarities(b.chapter, b.count);
    let cBest = 0, bestChapter = -1;
    for (let i = 0; i < cs.length; i++) if (cs[i] > cBest) { cBest = cs[i]; bestChapter = i; }
    const c = this.chapterIndex.get(hs.slice(0, 2));
    return { chapterFit: cBest > 0 && c !== undefined ? cs[c] / cBest : NaN, bag: b, bestChapter };
  }

  /** quickFit's second half, from its first (chapterFit, for the same code): the declared heading's fit and the heading to name. */
  headingFit(hs: string, c: ChapterFit): Omit<QuickFit, 'chapterFit'> {
    const { bag: b, bestChapter } = c;
    const hsc = this.headings.similarities(b.heading, b.count);
    // the best heading overall gives the heading fit; the one named is the best of the best chapter:
    // a MISCLASSIFICATION reason (the chapter fits poorly) must not send the officer back to the
    // declared heading, which can score best among headings while its chapter does not among chapters.
    // Only the headings reached can score above 0; among equal scores the first heading wins
    // (a subarray of them cost more than the scan: a typed-array view is an allocation V8 does not elide)
    let hBest = 0, best = -1, inChapter = -1;
    const reached = this.headings.touched, n = this.headings.touchedCount;
    for (let k = 0; k < n; k++) {
      const i = reached[k], x = hsc[i];
      if (x > hBest || (x === hBest && x > 0 && i < best)) { hBest = x; best = i; }
      if (this.headingChapter[i] === bestChapter && x > 0 && (inChapter < 0 || x > hsc[inChapter] || (x === hsc[inChapter] && i < inChapter))) inChapter = i;
    }
    const h = this.headingIndex.get(hs.slice(0, 4));
    const named = inChapter >= 0 ? inChapter : best;
    return { headingFit: hBest > 0 && h !== undefined ? hsc[h] / hBest : NaN, bestHeading: named >= 0 ? this.headings.codes[named] : '' };
  }

  /** How well a description fits a declared HS code (2–10 digits), with the best-fitting chapters and headings. */
  fit(hs: string, description: string, k = 3): HsFit {
    if (!/^\d{2}(\d{2}){0,4}$/.test(hs)) throw errors.SEL_ERR_OPTION_INVALID('hs must be an HS code of 2, 4, 6, 8 or 10 digits', { field: 'hs', expected: 'digits, e.g. 851712', got: hs });
    const b = this.bag(description);
    const { terms, known } = b;
    const c = this.chapterIndex.get(hs.slice(0, 2));
    if (c === undefined) throw errors.SEL_ERR_OPTION_INVALID(`HS chapter ${hs.slice(0, 2)} is not in the nomenclature`, { field: 'hs', expected: 'a code of the HS nomenclature', got: hs });
    const cs = this.chapters.similarities(b.chapter, b.count);
    const bestChapters = top(this.chapters, cs, k);
    const cBest = bestChapters[0]?.similarity ?? 0;
    // nothing known (every similarity 0): no fit and no rank, as scoring's quickFit (NaN) sees it, not "fit 0 %, rank 1"
    const chapter = { code: this.chapters.codes[c], similarity: cs[c], rank: cBest > 0 ? rankOf(cs, c) : null, fit: cBest > 0 ? cs[c] / cBest : null };
    const hsc = this.headings.similarities(b.heading, b.count);
    const bestHeadings = top(this.headings, hsc, k);
    const hBest = bestHeadings[0]?.similarity ?? 0;
    const h = hs.length >= 4 ? this.headingIndex.get(hs.slice(0, 4)) : undefined;
    const heading = h === undefined ? null : { code: this.headings.codes[h], similarity: hsc[h], rank: hBest > 0 ? rankOf(hsc, h) : null, fit: hBest > 0 ? hsc[h] / hBest : null };
    return { hs, description, knownTerms: known, terms, chapter, heading, bestChapters, bestHeadings };
  }
}

/** The nomenclature shipped with the package (src/text/hs/harmonized-system.csv). */
export function loadNomenclature(path = join(packageRoot(), 'src', 'text', 'hs', 'harmonized-system.csv')): HsEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read the HS nomenclature ${path}: ${(e as Error).message}`, { field: 'nomenclature', expected: 'src/text/hs/harmonized-system.csv', got: path });
  }
  const { rows } = parseCsv(text);
  const [header, ...body] = rows;
  const col = (name: string) => header.indexOf(name);
  const [ci, di, li] = [col('hscode'), col('description'), col('level')];
  return body.filter((r) => r.length >= header.length && /^\d+$/.test(r[ci])).map((r) => ({ code: r[ci], description: r[di], level: Number(r[li]) }));
}

let shared: HsFitModel | undefined;

/** The model over the whole shipped nomenclature, built once (about 0.5 s). */
export function hsFitModel(): HsFitModel {
  return (shared ??= new HsFitModel(loadNomenclature()));
}
