/**
 * Readers of intelligence texts (news items, seizure reports, irregularity
 * reports) from files on disk, for `selectivity intel`:
 *
 *   .txt, .md                  one document per file (title: its first non-empty line)
 *   .jsonl, .ndjson            one document per line: `title` and the string fields
 *                              `text`, `body`, `content`, `description`, `summary`
 *   .xml, .rss, .atom          RSS 0.9x/2.0/1.0 `<item>` and Atom `<entry>`: title and
 *                              description / summary / content / content:encoded
 *
 * Feeds are read by a small extractor, not a full XML parser: CDATA sections,
 * comments, the five XML entities and numeric character references are
 * handled, entity declarations are not expanded, and the HTML inside a field
 * (escaped or in CDATA) is reduced to text. A folder is read recursively in
 * sorted order, skipping names that start with "."; other extensions are
 * skipped and counted.
 *
 * Bad records do not stop a run: a line that is not JSON, a JSON line with no
 * text, an XML file that is not a feed, an unclosed item are skipped and
 * reported with file, line and reason. With `strict` they raise
 * SEL_ERR_INTEL_INPUT instead. Documents whose normalised text repeats one
 * already read (syndicated news) are counted as duplicates and left out.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { errors } from '../errors.js';

/** One text: where it came from (`file`, `file:line` or `file#item`), a title, and its text (the title included). */
export interface IntelDocument {
  id: string;
  title: string;
  text: string;
}

/** A file or record left out, and why. */
export interface IntelSkip {
  path: string;
  /** 1-based line (JSON lines) or item number (feeds). */
  line?: number;
  reason: string;
}

export interface IntelCorpus {
  documents: IntelDocument[];
  /** Files read (with documents or not); skipped files are not counted. */
  files: number;
  skippedFiles: IntelSkip[];
  skippedRecords: IntelSkip[];
  /** Documents left out because their text repeats an earlier one. */
  duplicates: number;
}

export interface ReadIntelOptions {
  /** A malformed record or feed raises SEL_ERR_INTEL_INPUT instead of being skipped (default false). */
  strict?: boolean;
  /** Called after each file with (files done, files in all). */
  onProgress?: (done: number, total: number) => void;
}

/** Largest file read (larger ones are skipped). */
export const MAX_INTEL_FILE_BYTES = 256 * 1024 * 1024;

const KINDS: Record<string, 'text' | 'jsonl' | 'feed'> = {
  '.txt': 'text', '.md': 'text', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.xml': 'feed', '.rss': 'feed', '.atom': 'feed',
};

/** Text fields of a JSON-lines record, in the order they are joined. */
export const JSON_TEXT_FIELDS = ['text', 'body', 'content', 'description', 'summary'] as const;

// ---------------------------------------------------------------------------
// Entities and HTML.

const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const HTML_ENTITIES: Record<string, string> = {
  ...XML_ENTITIES, nbsp: ' ', ndash: '–', mdash: '—', hellip: '…', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«', raquo: '»',
  bull: '•', middot: '·', copy: '©', reg: '®', trade: '™', deg: '°', euro: '€', pound: '£', yen: '¥', times: '×',
  eacute: 'é', egrave: 'è', agrave: 'à', aacute: 'á', ccedil: 'ç', uuml: 'ü', ouml: 'ö', auml: 'ä', ntilde: 'ñ', oacute: 'ó', iacute: 'í', uacute: 'ú', szlig: 'ß',
};

function codePoint(n: number): string {
  return Number.isInteger(n) && n > 0 && n <= 0x10ffff && !(n >= 0xd800 && n <= 0xdfff) ? String.fromCodePoint(n) : '\ufffd';
}

function decodeWith(s: string, table: Record<string, string>): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,9}|[A-Za-z][A-Za-z0-9]{1,31});/g, (whole, ref: string) => {
    if (ref[0] === '#') return codePoint(ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10));
    return table[ref] ?? whole;
  });
}

/** Decodes the five XML entities and numeric character references (`&#233;`, `&#xE9;`); others are left as they are. */
export function decodeXmlEntities(s: string): string {
  return decodeWith(s, XML_ENTITIES);
}

/**
 * Plain text of an HTML fragment: comments, `<script>` and `<style>` with
 * their content and every tag removed (a tag becomes a space), entities
 * decoded (the XML five, numeric references, and common named ones such as
 * `&nbsp;`), runs of white space collapsed.
 */
/**
 * A start or end tag. Its attributes stop at the next '<' as well as at '>':
 * with [^>]* every '<' and a letter with no '>' after it scanned to the end
 * of the text, and a text of many made the removal quadratic (3.2 MB: 200 s).
 */
const TAG = /<\/?[A-Za-z][^<>]*>/g;

export function htmlToText(html: string): string {
  const noTags = html
    .replace(/<!--[\s\S]*?(?:-->|$)/g, ' ')
    .replace(/<(script|style)\b[^<>]*>[\s\S]*?(?:<\/\1\s*>|$)/gi, ' ')
    .replace(TAG, ' ');
  return decodeWith(noTags, HTML_ENTITIES).replace(/\s+/g, ' ').trim();
}

// ---------------------------------------------------------------------------
// Feeds.

const CDATA_MARK = '\u0000';

/** Field elements read from an item or entry, in order (one of each, the first found); all but content:encoded with any namespace prefix. */
const FEED_FIELDS: readonly [name: string, re: RegExp, close: RegExp][] = ['title', 'description', 'summary', 'content', 'content:encoded'].map((field) => {
  const name = field.includes(':') ? field : `(?:[A-Za-z_][\\w.-]*:)?${field}`;
  return [field, new RegExp(`<(${name})(?:\\s[^<>]*)?>([\\s\\S]*?)</\\1\\s*>`), new RegExp(`</${name}\\s*>`)];
});

/** The text without its XML comments; one left open runs to the end and stays (as the pattern it replaces left it). Linear. */
function withoutComments(xml: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const open = xml.indexOf('<!--', at);
    if (open < 0) return out + xml.slice(at);
    const close = xml.indexOf('-->', open + 4);
    if (close < 0) return out + xml.slice(at);
    out += xml.slice(at, open);
    at = close + 3;
  }
}

/**
 * The text without its DOCTYPE declarations (an internal subset in [...]
 * included). Linear: the pattern this replaces backtracked exponentially on
 * an unclosed declaration holding many '[]' (a 210-byte feed ran for hours).
 * One left open stays as it is.
 */
function withoutDoctype(xml: string): string {
  const re = /<!DOCTYPE/gi;
  let out = '';
  let at = 0;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    let i = m.index + m[0].length;
    let depth = 0;
    for (; i < xml.length; i++) {
      const c = xml.charCodeAt(i);
      if (c === 0x5b) depth++; // [
      else if (c === 0x5d && depth > 0) depth--; // ]
      else if (c === 0x3e && depth === 0) break; // >
    }
    if (i >= xml.length) break; // not closed: left as it is, and nothing after it can close either
    out += xml.slice(at, m.index);
    at = i + 1;
    re.lastIndex = at;
  }
  return out + xml.slice(at);
}

/**
 * The <item> and <entry> elements (any namespace prefix), in order: each
 * start tag with the text up to the first end tag of its name after it. A
 * start tag with no such end tag after it is passed over, and so is every
 * later one of its name without searching again: the pattern this replaces
 * searched to the end from each one, quadratic in unclosed items.
 */
function* elements(xml: string): Generator<{ name: string; inner: string }> {
  const open = /<((?:[A-Za-z_][\w.-]*:)?(?:item|entry))(?:\s[^<>]*)?>/g;
  const closes = new Map<string, RegExp>();
  const unclosedFrom = new Map<string, number>();
  for (let m = open.exec(xml); m; m = open.exec(xml)) {
    const name = m[1];
    if ((unclosedFrom.get(name) ?? Infinity) <= m.index) continue;
    let close = closes.get(name);
    if (!close) closes.set(name, (close = new RegExp(`</${name.replace(/[.]/g, '\\.')}\\s*>`, 'g')));
    close.lastIndex = open.lastIndex;
    const c = close.exec(xml);
    if (!c) { unclosedFrom.set(name, m.index); continue; }
    yield { name, inner: xml.slice(open.lastIndex, c.index) };
    open.lastIndex = c.index + c[0].length;
  }
}

/**
 * Documents of an RSS or Atom feed. `source` names the file in ids and
 * skips. Returns the documents and the items that could not be read. A text
 * that is not a feed (no `<rss>`, `<feed>` or `<rdf:RDF>`) or holds an
 * unclosed CDATA section is one skip with no line.
 */
export function parseFeed(xml: string, source: string): { documents: IntelDocument[]; skipped: IntelSkip[] } {
  const cdata: string[] = [];
  let masked = '';
  let at = 0;
  for (;;) {
    const open = xml.indexOf('<![CDATA[', at);
    if (open < 0) { masked += xml.slice(at); break; }
    const close = xml.indexOf(']]>', open + 9);
    if (close < 0) return { documents: [], skipped: [{ path: source, reason: 'malformed XML: a CDATA section is not closed' }] };
    masked += `${xml.slice(at, open)}${CDATA_MARK}${cdata.length}${CDATA_MARK}`;
    cdata.push(xml.slice(open + 9, close));
    at = close + 3;
  }
  masked = withoutDoctype(withoutComments(masked));
  if (!/<(?:[A-Za-z_][\w.-]*:)?(?:rss|feed|RDF)\b/.test(masked)) {
    return { documents: [], skipped: [{ path: source, reason: 'not an RSS or Atom feed (no <rss>, <feed> or <rdf:RDF> element)' }] };
  }
  const documents: IntelDocument[] = [];
  const skipped: IntelSkip[] = [];
  let opened = 0;
  for (const _ of masked.matchAll(/<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?:\s[^<>]*)?(?<!\/)>/g)) opened++;
  let n = 0;
  for (const m of elements(masked)) {
    n++;
    const inner = m.inner;
    const parts: string[] = [];
    let title = '';
    for (const [field, re, close] of FEED_FIELDS) {
      // no end tag: the search for one from every start tag would be quadratic in the item
      const f = close.test(inner) ? re.exec(inner) : null;
      if (!f) continue;
      const text = htmlToText(fieldText(f[2], cdata));
      if (field === 'title') title = text;
      if (text !== '' && !parts.includes(text)) parts.push(text);
    }
    if (parts.length === 0) { skipped.push({ path: source, line: n, reason: `${m.name} without title or text` }); continue; }
    documents.push({ id: `${source}#${n}`, title, text: parts.join('\n\n') });
  }
  for (let i = n; i < opened; i++) skipped.push({ path: source, line: i + 1, reason: 'malformed XML: an <item> or <entry> is not closed' });
  return { documents, skipped };
}

/** The text of an element's content: CDATA kept as it is; elsewhere, tags (XHTML content) removed and XML entities decoded. */
function fieldText(inner: string, cdata: readonly string[]): string {
  const pieces = inner.split(CDATA_MARK);
  let out = '';
  for (let i = 0; i < pieces.length; i++) {
    if (i % 2 === 1) out += cdata[Number(pieces[i])] ?? '';
    else out += decodeXmlEntities(pieces[i].replace(TAG, ' '));
  }
  return out;
}

// ---------------------------------------------------------------------------
// JSON lines and plain text.

/** Documents of a JSON-lines text; lines that are not JSON objects with some text are skipped with a reason. Blank lines are ignored. */
export function parseJsonLines(text: string, source: string): { documents: IntelDocument[]; skipped: IntelSkip[] } {
  const documents: IntelDocument[] = [];
  const skipped: IntelSkip[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      skipped.push({ path: source, line: i + 1, reason: `not JSON: ${(e as Error).message}` });
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) { skipped.push({ path: source, line: i + 1, reason: 'not a JSON object' }); return; }
    const o = v as Record<string, unknown>;
    const title = typeof o.title === 'string' ? htmlToText(o.title) : '';
    const parts = title ? [title] : [];
    for (const k of JSON_TEXT_FIELDS) {
      if (typeof o[k] !== 'string') continue;
      const t = htmlToText(o[k] as string);
      if (t !== '' && !parts.includes(t)) parts.push(t);
    }
    if (parts.length === 0) { skipped.push({ path: source, line: i + 1, reason: `no text: none of title, ${JSON_TEXT_FIELDS.join(', ')} is a non-empty string` }); return; }
    documents.push({ id: `${source}:${i + 1}`, title, text: parts.join('\n\n') });
  });
  return { documents, skipped };
}

/** One document of a plain-text or Markdown file (none when it is blank); the title is its first non-empty line, without Markdown heading marks. */
export function parsePlainText(text: string, source: string): IntelDocument[] {
  if (text.trim() === '') return [];
  const first = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return [{ id: source, title: first.replace(/^\s*#+\s*/, '').trim().slice(0, 200), text }];
}

// ---------------------------------------------------------------------------
// Files and folders.

function listFiles(path: string, out: string[], seen: Set<string>): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a file or folder of texts', got: path });
  }
  const real = realpathSync(path);
  if (seen.has(real)) return;
  seen.add(real);
  if (st.isFile()) { out.push(path); return; }
  if (!st.isDirectory()) return;
  const entries = readdirSync(path, { withFileTypes: true }).filter((d) => !d.name.startsWith('.')).map((d) => d.name).sort();
  for (const name of entries) {
    const child = join(path, name);
    let cst;
    try {
      cst = statSync(child);
    } catch {
      out.push(child); // a dangling link: reported as a skipped file when read
      continue;
    }
    if (cst.isDirectory()) listFiles(child, out, seen);
    else if (cst.isFile()) {
      const r = realpathSync(child);
      if (!seen.has(r)) { seen.add(r); out.push(child); }
    }
  }
}

/**
 * Reads every document under the given files and folders (folders
 * recursively, in sorted order). A path that does not exist raises
 * SEL_ERR_FILE_NOT_FOUND; no document at all raises SEL_ERR_INTEL_INPUT.
 */
export function readIntelDocuments(paths: string | readonly string[], options: ReadIntelOptions = {}): IntelCorpus {
  const list = typeof paths === 'string' ? [paths] : paths;
  if (list.length === 0) throw errors.SEL_ERR_INTEL_INPUT('no input: give at least one file or folder of texts', { field: 'path', expected: 'a file or folder', got: [] });
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of list) listFiles(p, files, seen);
  const corpus: IntelCorpus = { documents: [], files: 0, skippedFiles: [], skippedRecords: [], duplicates: 0 };
  const texts = new Set<string>();
  const fail = (s: IntelSkip): never => {
    throw errors.SEL_ERR_INTEL_INPUT(`${s.path}${s.line !== undefined ? `:${s.line}` : ''}: ${s.reason}`, { field: 'path', expected: 'well-formed texts (strict mode)', got: s.line !== undefined ? `${s.path}:${s.line}` : s.path, line: s.line });
  };
  const skipFile = (s: IntelSkip, malformed: boolean): void => {
    if (malformed && options.strict) fail(s);
    corpus.skippedFiles.push(s);
  };
  files.forEach((file, i) => {
    const kind = KINDS[extname(file).toLowerCase()];
    let text: string | undefined;
    if (!kind) skipFile({ path: file, reason: `unknown extension "${extname(file)}" (expected ${Object.keys(KINDS).join(', ')})` }, false);
    else {
      try {
        if (statSync(file).size > MAX_INTEL_FILE_BYTES) skipFile({ path: file, reason: `larger than ${MAX_INTEL_FILE_BYTES} bytes` }, true);
        else text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
      } catch (e) {
        skipFile({ path: file, reason: `cannot read: ${(e as Error).message}` }, true);
      }
    }
    if (kind && text !== undefined) {
      let docs: IntelDocument[];
      let skipped: IntelSkip[] = [];
      if (kind === 'text') docs = parsePlainText(text, file);
      else ({ documents: docs, skipped } = kind === 'jsonl' ? parseJsonLines(text, file) : parseFeed(text, file));
      let fileSkipped = false;
      for (const s of skipped) {
        if (s.line === undefined) { skipFile(s, true); fileSkipped = true; continue; }
        if (options.strict) fail(s);
        corpus.skippedRecords.push(s);
      }
      if (!fileSkipped) corpus.files++;
      for (const d of docs) {
        const key = d.text.replace(/\s+/g, ' ').trim().toLowerCase();
        if (texts.has(key)) { corpus.duplicates++; continue; }
        texts.add(key);
        corpus.documents.push(d);
      }
    }
    options.onProgress?.(i + 1, files.length);
  });
  if (corpus.documents.length === 0) {
    throw errors.SEL_ERR_INTEL_INPUT(`no document found in ${list.join(', ')} (${files.length} file(s), ${corpus.skippedFiles.length} skipped, ${corpus.skippedRecords.length} record(s) skipped)`, {
      field: 'path', expected: 'texts in .txt, .md, .jsonl, .ndjson, .xml, .rss or .atom files', got: list.join(', '),
      skippedFiles: corpus.skippedFiles.slice(0, 10), skippedRecords: corpus.skippedRecords.slice(0, 10),
    });
  }
  return corpus;
}
