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

/** One TF-IDF level (chapters or headings). */
class Level {
  readonly codes: string[] = [];
  readonly labels: string[] = [];
  private readonly index = new Map<string, { doc: Int32Array; w: Float64Array }>();
  readonly idf = new Map<string, number>();
  private readonly scores: Float64Array;

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
    for (const [s, c] of df) this.idf.set(s, Math.log(n / c));
    const postings = new Map<string, { doc: number[]; w: number[] }>();
    tfs.forEach((tf, doc) => {
      let norm = 0;
      const ws: [string, number][] = [];
      for (const [s, c] of tf) { const w = (1 + Math.log(c)) * this.idf.get(s)!; ws.push([s, w]); norm += w * w; }
      norm = Math.sqrt(norm) || 1;
      for (const [s, w] of ws) {
        if (w === 0) continue;
        let p = postings.get(s);
        if (!p) { p = { doc: [], w: [] }; postings.set(s, p); }
        p.doc.push(doc);
        p.w.push(w / norm);
      }
    });
    for (const [s, p] of postings) this.index.set(s, { doc: Int32Array.from(p.doc), w: Float64Array.from(p.w) });
    this.scores = new Float64Array(n);
  }

  /** Cosine similarity of a stem bag with every document (the returned array is reused by the next call). */
  similarities(bag: Map<string, number>): Float64Array {
    const sc = this.scores;
    sc.fill(0);
    let norm = 0;
    const q: [string, number][] = [];
    for (const [s, c] of bag) {
      const idf = this.idf.get(s);
      if (idf === undefined || idf === 0) continue;
      const w = (1 + Math.log(c)) * idf;
      q.push([s, w]);
      norm += w * w;
    }
    if (norm === 0) return sc;
    norm = Math.sqrt(norm);
    for (const [s, w] of q) {
      const p = this.index.get(s)!;
      const qw = w / norm;
      for (let k = 0; k < p.doc.length; k++) sc[p.doc[k]] += qw * p.w[k];
    }
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
    this.chapters.codes.forEach((c, i) => this.chapterIndex.set(c, i));
    this.headings.codes.forEach((c, i) => this.headingIndex.set(c, i));
    this.headingChapter = Int32Array.from(this.headings.codes, (c) => this.chapterIndex.get(c.slice(0, 2)) ?? -1);
  }

  /** Number of chapters and headings the model knows. */
  get size(): { chapters: number; headings: number } {
    return { chapters: this.chapters.codes.length, headings: this.headings.codes.length };
  }

  private bag(description: string): { bag: Map<string, number>; terms: number; known: number } {
    const bag = new Map<string, number>();
    let terms = 0, known = 0;
    for (const s of stems(description)) {
      if (STOPWORDS.has(s)) continue;
      terms++;
      if (this.headings.idf.has(s) || this.chapters.idf.has(s)) known++;
      bag.set(s, (bag.get(s) ?? 0) + 1);
    }
    return { bag, terms, known };
  }

  /** The chapter that fits a description best ('' when no term is known). */
  bestChapter(description: string): string {
    const sc = this.chapters.similarities(this.bag(description).bag);
    let best = -1;
    for (let i = 0; i < sc.length; i++) if (sc[i] > 0 && (best < 0 || sc[i] > sc[best])) best = i;
    return best < 0 ? '' : this.chapters.codes[best];
  }

  /**
   * The scoring path's view: fit of the declared chapter and heading (0–1,
   * NaN when no term of the description is known) and the best heading, in
   * one scan (no sorting). The code must be valid (the declaration schema
   * checks it); an unknown chapter or heading gives NaN.
   */
  quickFit(hs: string, description: string): { chapterFit: number; headingFit: number; bestHeading: string } {
    const { bag } = this.bag(description);
    const cs = this.chapters.similarities(bag);
    let cBest = 0, bestChapter = -1;
    for (let i = 0; i < cs.length; i++) if (cs[i] > cBest) { cBest = cs[i]; bestChapter = i; }
    const c = this.chapterIndex.get(hs.slice(0, 2));
    const chapterFit = cBest > 0 && c !== undefined ? cs[c] / cBest : NaN;
    const hsc = this.headings.similarities(bag);
    // the best heading overall gives the heading fit; the one named is the best of the best chapter:
    // a MISCLASSIFICATION reason (the chapter fits poorly) must not send the officer back to the
    // declared heading, which can score best among headings while its chapter does not among chapters
    let hBest = 0, best = -1, inChapter = -1;
    for (let i = 0; i < hsc.length; i++) {
      if (hsc[i] > hBest) { hBest = hsc[i]; best = i; }
      if (this.headingChapter[i] === bestChapter && hsc[i] > 0 && (inChapter < 0 || hsc[i] > hsc[inChapter])) inChapter = i;
    }
    const h = this.headingIndex.get(hs.slice(0, 4));
    const headingFit = hBest > 0 && h !== undefined ? hsc[h] / hBest : NaN;
    const named = inChapter >= 0 ? inChapter : best;
    return { chapterFit, headingFit, bestHeading: named >= 0 ? this.headings.codes[named] : '' };
  }

  /** How well a description fits a declared HS code (2–10 digits), with the best-fitting chapters and headings. */
  fit(hs: string, description: string, k = 3): HsFit {
    if (!/^\d{2}(\d{2}){0,4}$/.test(hs)) throw errors.SEL_ERR_OPTION_INVALID('hs must be an HS code of 2, 4, 6, 8 or 10 digits', { field: 'hs', expected: 'digits, e.g. 851712', got: hs });
    const { bag, terms, known } = this.bag(description);
    const c = this.chapterIndex.get(hs.slice(0, 2));
    if (c === undefined) throw errors.SEL_ERR_OPTION_INVALID(`HS chapter ${hs.slice(0, 2)} is not in the nomenclature`, { field: 'hs', expected: 'a code of the HS nomenclature', got: hs });
    const cs = this.chapters.similarities(bag);
    const bestChapters = top(this.chapters, cs, k);
    const cBest = bestChapters[0]?.similarity ?? 0;
    // nothing known (every similarity 0): no fit and no rank, as scoring's quickFit (NaN) sees it, not "fit 0 %, rank 1"
    const chapter = { code: this.chapters.codes[c], similarity: cs[c], rank: cBest > 0 ? rankOf(cs, c) : null, fit: cBest > 0 ? cs[c] / cBest : null };
    const hsc = this.headings.similarities(bag);
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
