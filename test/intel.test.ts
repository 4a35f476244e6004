/**
 * selectivity intel: readers (text, JSON lines, RSS/Atom), extraction,
 * co-occurrence counts, suggestions, GraphML and HTML exports, and the CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers.js';
import {
  analyseIntel, buildIntel, htmlToText, logLikelihoodRatio, npmi, parseFeed, parseJsonLines, parsePlainText, readIntelDocuments,
  renderIntelHtml, toGraphML, toJson, type IntelDocument, type IntelNetwork,
} from '../src/text/intel.js';
import { validateWatchLists } from '../src/text/watchlist.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-intel-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'selectivity.js');
const exampleLists = join(root, 'examples', 'watchlists.json');

const LISTS = validateWatchLists({
  watchLists: [
    { id: 'IPR', riskArea: 'ipr', terms: ['replica', 'copy watch'] },
    { id: 'BAT', riskArea: 'safety', terms: ['power bank'] },
    { id: 'REV', riskArea: 'revenue', terms: ['samples'] },
  ],
});

const docs = (...texts: string[]): IntelDocument[] => texts.map((text, i) => ({ id: `d${i + 1}`, title: '', text }));
const byId = (net: IntelNetwork) => new Map(net.nodes.map((n) => [n.id, n]));
const edge = (net: IntelNetwork, a: string, b: string) => net.edges.find((e) => (e.source === a && e.target === b) || (e.source === b && e.target === a));

function write(path: string, text: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
  return path;
}

const run = runCli;

/**
 * A small well-formedness check of an XML text: one root, balanced and
 * properly nested tags, quoted attributes, no raw "<" in text or attribute
 * values, and every "&" starting one of the five entities or a numeric
 * reference. Returns the elements as [name, attributes] in document order.
 */
function checkXml(xml: string): [string, Record<string, string>][] {
  const amp = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  const elements: [string, Record<string, string>][] = [];
  let roots = 0;
  const re = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*"[^"]*")*)\s*(\/?)>|<!--[\s\S]*?-->/g;
  let at = 0;
  for (const m of body.matchAll(re)) {
    const text = body.slice(at, m.index);
    expect(text, `text before ${m[0].slice(0, 40)}`).not.toMatch(/[<>]/);
    expect(text).not.toMatch(amp);
    at = m.index! + m[0].length;
    if (m[0].startsWith('<!--')) continue;
    const [, close, name, attrs, selfClose] = m;
    if (close) {
      expect(stack.pop(), `closing </${name}>`).toBe(name);
      continue;
    }
    if (stack.length === 0) roots++;
    const a: Record<string, string> = {};
    for (const [, k, v] of attrs.matchAll(/([\w:.-]+)\s*=\s*"([^"]*)"/g)) {
      expect(v).not.toMatch(/</);
      expect(v).not.toMatch(amp);
      a[k] = unescape(v);
    }
    elements.push([name, a]);
    if (!selfClose) stack.push(name);
  }
  expect(body.slice(at).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  return elements;
}

describe('readers', () => {
  it('RSS: CDATA, XML entities, numeric references, escaped and CDATA HTML reduced to text', () => {
    const xml = `<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY boom "BOOM">]>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Feed</title>
<!-- <item><title>commented out</title></item> -->
<item><title>Fakes &amp; replicas &#8220;AAA&#x201D;</title>
  <description><![CDATA[<p>Found <b>replica</b> bags &amp; <script>alert("x")</script>watches</p>]]></description></item>
<item><title><![CDATA[Second <i>item</i> ]]]]><![CDATA[>]]></title>
  <description>&lt;p&gt;Power&lt;br/&gt;banks &amp;amp; chargers&lt;/p&gt;</description>
  <content:encoded><![CDATA[<div>Full text: power banks</div>]]></content:encoded></item>
<item><title></title><description>  </description></item>
<item><title>Unclosed</title>
</channel></rss>`;
    const { documents, skipped } = parseFeed(xml, 'feed.xml');
    expect(documents.map((d) => d.id)).toEqual(['feed.xml#1', 'feed.xml#2']);
    expect(documents[0].title).toBe('Fakes & replicas “AAA”');
    expect(documents[0].text).toBe('Fakes & replicas “AAA”\n\nFound replica bags & watches');
    expect(documents[1].title).toBe('Second item ]]>');
    expect(documents[1].text).toBe('Second item ]]>\n\nPower banks & chargers\n\nFull text: power banks');
    expect(documents.some((d) => d.text.includes('commented'))).toBe(false);
    expect(skipped).toEqual([
      { path: 'feed.xml', line: 3, reason: 'item without title or text' },
      { path: 'feed.xml', line: 4, reason: 'malformed XML: an <item> or <entry> is not closed' },
    ]);
  });

  it('Atom: entries with summary and XHTML content; files that are not feeds are one skip', () => {
    const atom = `<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>
<entry><title type="html">A &lt;em&gt;seizure&lt;/em&gt;</title><summary>Short</summary>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Long <b>text</b> &amp; more</p></div></content></entry>
<atom:entry><atom:title>Prefixed</atom:title></atom:entry></feed>`;
    const { documents, skipped } = parseFeed(atom, 'a.atom');
    expect(skipped).toEqual([]);
    expect(documents.map((d) => [d.title, d.text])).toEqual([
      ['A seizure', 'A seizure\n\nShort\n\nLong text & more'],
      ['Prefixed', 'Prefixed'],
    ]);
    expect(parseFeed('<html><body>x</body></html>', 'p.xml').skipped[0].reason).toMatch(/not an RSS or Atom feed/);
    expect(parseFeed('<rss><channel><item><title><![CDATA[open', 'c.xml').skipped[0].reason).toMatch(/CDATA/);
  });

  it('reads malformed feeds and texts in time linear in their size (these took hours, or minutes, before: the test times out then)', () => {
    // an unclosed DOCTYPE holding many [] (the pattern backtracked exponentially): 60 pairs
    const doctype = parseFeed(`<rss><channel><item><title>replica watches</title></item></channel></rss><!DOCTYPE x ${'[]'.repeat(60)}`, 'd.xml');
    expect(doctype.documents.map((d) => d.title)).toEqual(['replica watches']);
    // a DOCTYPE with an internal subset, closed, is dropped as before
    expect(parseFeed('<!DOCTYPE rss [<!ENTITY a "]">]><rss><item><title>T</title></item></rss>', 'e.xml').documents.map((d) => d.title)).toEqual(['T']);
    // '<' and a letter with no '>' after it, 200,000 times (quadratic before)
    const text = htmlToText('replica watches, unit price <USD 5 each '.repeat(200_000));
    expect(text.length).toBeGreaterThan(5_000_000);
    expect(text.startsWith('replica watches, unit price <USD 5 each')).toBe(true);
    // 100,000 unclosed items, unclosed comments, and an item of 100,000 unclosed titles
    const items = parseFeed(`<rss><channel>${'<item><title>x</title>'.repeat(100_000)}</channel></rss>`, 'i.xml');
    expect(items.documents).toEqual([]);
    expect(items.skipped).toHaveLength(100_000);
    expect(parseFeed(`<rss><channel>${'<!-- x '.repeat(100_000)}<item><title>a</title></item></channel></rss>`, 'c.xml').documents.map((d) => d.title)).toEqual(['a']);
    expect(parseFeed(`<rss><channel><item>${'<title x '.repeat(100_000)}</item></channel></rss>`, 't.xml').skipped).toEqual([{ path: 't.xml', line: 1, reason: 'item without title or text' }]);
  });

  it('HTML to text drops tags, scripts, styles and comments and decodes entities', () => {
    expect(htmlToText('<style>p{x:1}</style><p>A&nbsp;b</p><!-- c --><p>d &#233;&#xE9; &bogus; 1 < 2</p>')).toBe('A b d éé &bogus; 1 < 2');
  });

  it('JSON lines: title and text fields; a malformed line is skipped with file, line and reason', () => {
    const text = [
      '{"title": "Power banks", "text": "<p>6,500 power banks</p>", "summary": "batteries"}',
      '',
      '{"title": "broken", "text": ',
      '[1, 2]',
      '{"id": 7, "url": "https://x"}',
      '{"body": "replica sneakers"}',
    ].join('\n');
    const { documents, skipped } = parseJsonLines(text, 'r.jsonl');
    expect(documents).toEqual([
      { id: 'r.jsonl:1', title: 'Power banks', text: 'Power banks\n\n6,500 power banks\n\nbatteries' },
      { id: 'r.jsonl:6', title: '', text: 'replica sneakers' },
    ]);
    expect(skipped.map((s) => [s.line, s.reason.slice(0, 12)])).toEqual([[3, 'not JSON: Un'], [4, 'not a JSON o'], [5, 'no text: non']]);
  });

  it('plain text: one document per file, title from the first line', () => {
    expect(parsePlainText('\n# Replica sneakers\n\nBody.', 'a.md')).toEqual([{ id: 'a.md', title: 'Replica sneakers', text: '\n# Replica sneakers\n\nBody.' }]);
    expect(parsePlainText(' \n ', 'b.txt')).toEqual([]);
  });

  it('folders: recursive, sorted, hidden and unknown files skipped and counted, duplicates left out; strict mode', () => {
    const d = join(dir, 'corpus');
    write(join(d, 'b.txt'), 'Second text');
    write(join(d, 'a', 'z.md'), 'First text');
    write(join(d, 'a', 'dup.txt'), '  second   TEXT ');
    write(join(d, '.hidden.txt'), 'hidden');
    write(join(d, 'notes.pdf'), 'binary');
    write(join(d, 'c.jsonl'), '{"text": "third"}\nnot json\n');
    const corpus = readIntelDocuments(d);
    expect(corpus.documents.map((x) => x.id)).toEqual([join(d, 'a', 'dup.txt'), join(d, 'a', 'z.md'), join(d, 'c.jsonl:1')]);
    expect(corpus.duplicates).toBe(1);
    expect(corpus.files).toBe(4);
    expect(corpus.skippedFiles).toEqual([{ path: join(d, 'notes.pdf'), reason: expect.stringMatching(/unknown extension ".pdf"/) }]);
    expect(corpus.skippedRecords).toEqual([{ path: join(d, 'c.jsonl'), line: 2, reason: expect.stringMatching(/^not JSON/) }]);
    expect(() => readIntelDocuments(d, { strict: true })).toThrow(expect.objectContaining({ code: 'SEL_ERR_INTEL_INPUT', details: expect.objectContaining({ got: `${join(d, 'c.jsonl')}:2`, line: 2 }) }));
    expect(() => readIntelDocuments(join(dir, 'no-such'))).toThrow(expect.objectContaining({ code: 'SEL_ERR_FILE_NOT_FOUND' }));
    write(join(dir, 'empty', 'x.pdf'), '');
    expect(() => readIntelDocuments(join(dir, 'empty'))).toThrow(expect.objectContaining({ code: 'SEL_ERR_INTEL_INPUT' }));
  });
});

describe('extraction', () => {
  it('finds watch terms on stems, transport, routes and goods, and masks their words out of the frequent terms', () => {
    const net = analyseIntel(docs(
      'REPLICAS and Power-Banks in a container from the United Arab Emirates. Sneakers too.',
      'Replica power bank; containing sneakers. Equatorial Guinea by truck.',
    ), { watchLists: LISTS, minSupport: 1 });
    const nodes = byId(net);
    expect(nodes.get('watch:replica')).toMatchObject({ label: 'replica', kind: 'watch', df: 2, riskArea: 'ipr', lists: ['IPR'] });
    expect(nodes.get('watch:power_bank')).toMatchObject({ label: 'power bank', df: 2, riskArea: 'safety' });
    expect(nodes.get('transport:sea')).toMatchObject({ df: 1 }); // "container", not "containing"
    expect(nodes.get('transport:road')).toMatchObject({ df: 1 });
    expect(nodes.get('route:AE')).toMatchObject({ label: 'United Arab Emirates', kind: 'route', df: 1 });
    expect(nodes.get('route:GQ')).toMatchObject({ df: 1 });
    expect(nodes.has('route:GN')).toBe(false); // longest match only
    expect(nodes.get('goods:64')).toMatchObject({ kind: 'goods', df: 2 });
    expect(nodes.get('term:sneaker')).toMatchObject({ label: 'sneakers', kind: 'term', df: 2 });
    for (const masked of ['term:replica', 'term:power', 'term:bank', 'term:unit', 'term:arab', 'term:emir', 'term:guinea']) expect(nodes.has(masked), masked).toBe(false);
    // a watch phrase written as one word is the watch term, masked too (it came back as a new term)
    const joined = byId(analyseIntel(docs('Seized powerbanks shipped by air.', 'Powerbanks shipped again.'), { watchLists: LISTS, minSupport: 1, minDf: 2 }));
    expect(joined.get('watch:power_bank')).toMatchObject({ df: 2 });
    expect([...joined.keys()].filter((k) => k.startsWith('term:') && k.includes('powerbank'))).toEqual([]);
  });

  it('labels terms by their most common surface form and prefers a bigram to the unigrams it always holds', () => {
    const net = analyseIntel(docs('Free zone transit. Hoverboards.', 'free-zone transit; hoverboard, hoverboards', 'Free Zones. Zone.'), { minSupport: 1 });
    const nodes = byId(net);
    expect(nodes.get('term:hoverboard')).toMatchObject({ label: 'hoverboards', df: 2 });
    expect(nodes.get('term:free_zone')).toMatchObject({ label: 'free zone', df: 3 });
    expect(nodes.has('term:free')).toBe(false); // every "free" is in "free zone"
    expect(nodes.get('term:zone')).toMatchObject({ df: 3 }); // "Zone." alone as well
    expect(nodes.get('term:zone_transit')).toMatchObject({ label: 'zone transit', df: 2 });
    expect(nodes.has('term:transit')).toBe(false); // every "transit" is in "zone transit"
    expect(nodes.has('term:transit_hoverboard')).toBe(false); // bigrams do not cross sentences
  });
});

describe('co-occurrence network', () => {
  // df: alpha 3, bravo 2, charlie 2, delta 1; together: alpha–bravo 2, alpha–charlie 2, bravo–charlie 1.
  const corpus = docs('Alpha. Bravo.', 'Alpha. Bravo. Charlie.', 'Alpha. Charlie.', 'Delta.');

  it('counts documents, not occurrences, and computes NPMI and lift', () => {
    const net = analyseIntel(corpus, { minDf: 1, minSupport: 1 });
    expect(net.documents).toBe(4);
    expect(net.nodes.map((n) => [n.id, n.df])).toEqual([['term:alpha', 3], ['term:bravo', 2], ['term:charli', 2], ['term:delta', 1]]);
    expect(net.edges).toEqual([
      { source: 'term:alpha', target: 'term:bravo', weight: 2, association: 0.415, lift: 1.333 },
      { source: 'term:alpha', target: 'term:charli', weight: 2, association: 0.415, lift: 1.333 },
      { source: 'term:bravo', target: 'term:charli', weight: 1, association: 0, lift: 1 },
    ]);
    expect(npmi(2, 3, 2, 4)).toBeCloseTo(Math.log(4 / 3) / Math.log(2), 12);
    const repeated = analyseIntel(docs('Alpha alpha alpha. Bravo bravo.', 'Alpha. Bravo. Charlie.', 'Alpha. Charlie.', 'Delta.'), { minDf: 1, minSupport: 1 });
    expect(edge(repeated, 'term:alpha', 'term:bravo')?.weight).toBe(2);
  });

  it('bounds nodes and edges: minSupport, minDf, maxTerms, maxEdges', () => {
    expect(analyseIntel(corpus, { minDf: 1 }).edges.map((e) => e.weight)).toEqual([2, 2]); // minSupport 2 by default
    expect(analyseIntel(corpus).nodes.map((n) => n.id)).toEqual(['term:alpha', 'term:bravo', 'term:charli']); // minDf 2
    expect(analyseIntel(corpus, { minDf: 1, maxTerms: 2 }).nodes.map((n) => n.id)).toEqual(['term:alpha', 'term:bravo']);
    expect(analyseIntel(corpus, { minDf: 1, minSupport: 1, maxEdges: 1 }).edges).toHaveLength(1);
    expect(() => analyseIntel(corpus, { maxTerms: -1 })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'maxTerms' }) }));
    expect(() => analyseIntel(corpus, { highRiskAreas: ['fun' as never] })).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID' }));
  });

  it('is deterministic', () => {
    expect(toJson(analyseIntel(corpus, { minDf: 1 }))).toBe(toJson(analyseIntel(corpus, { minDf: 1 })));
  });
});

describe('suggestions', () => {
  it('G² of 2×2 tables', () => {
    expect(logLikelihoodRatio(2, 0, 0, 2)).toBeCloseTo(8 * Math.log(2), 12);
    expect(logLikelihoodRatio(1, 1, 1, 1)).toBe(0);
    expect(logLikelihoodRatio(10, 0, 0, 10)).toBeGreaterThan(logLikelihoodRatio(2, 0, 0, 2));
  });

  // "hoverboards" always comes with "replica"; "warehouse" is everywhere; "invoice" meets replica in 2 of its 5
  // documents, less than chance (5 × 4 / 9); "gadget" always comes with "samples", a revenue term (not high-risk).
  const planted = docs(
    'Replica handbags and hoverboards in the warehouse, invoice attached.',
    'Replica watches; hoverboards. Warehouse check.',
    'Hoverboards declared as toys, replica logos, warehouse.',
    'Replica shoes in a warehouse with an invoice.',
    'Warehouse invoice for coffee.',
    'Warehouse invoice for tea.',
    'Samples of gadget parts in the warehouse.',
    'Free samples, gadget, warehouse invoice.',
    'Warehouse inventory.',
  );

  it('rank a planted associated term first, with its evidence; watch terms and low-risk associations are not suggested', () => {
    const net = analyseIntel(planted, { watchLists: LISTS });
    expect(net.settings).toMatchObject({ watchTerms: 4, highRiskTerms: 3 });
    const first = net.suggestions[0];
    expect(first).toMatchObject({ term: 'hoverboards', id: 'term:hoverboard', support: 3, df: 3 });
    // 9 documents: hoverboard 3, replica 4, together 3
    expect(first.score).toBeCloseTo(logLikelihoodRatio(3, 0, 1, 5), 3);
    expect(first.watchTerms[0]).toMatchObject({ id: 'watch:replica', term: 'replica', riskArea: 'ipr', together: 3 });
    const terms = net.suggestions.map((s) => s.term);
    expect(terms).not.toContain('warehouse'); // in every document: independent
    expect(terms).not.toContain('invoice'); // G² > 0, but less often together than chance
    expect(logLikelihoodRatio(2, 3, 2, 2)).toBeGreaterThan(0);
    expect(terms).not.toContain('gadget'); // only with a revenue term
    expect(terms).not.toContain('replica');
    expect(byId(net).get('term:hoverboard')).toBeDefined();
    // every watch term counts when no list is high-risk
    const revenueOnly = analyseIntel(planted, { watchLists: LISTS, highRiskAreas: ['revenue'] });
    expect(revenueOnly.suggestions[0].term).toBe('gadget');
    expect(analyseIntel(planted, { watchLists: LISTS, minSupport: 4 }).suggestions).toEqual([]);
    expect(analyseIntel(planted).suggestions).toEqual([]); // no watch lists
  });
});

describe('exports', () => {
  const lists = validateWatchLists({ watchLists: [{ id: 'X', riskArea: 'ipr', terms: ['R&D "fakes" <b>', 'replica'] }] });
  const net = analyseIntel(docs(
    'R&D "fakes" <b> with replica hoverboards.',
    'R&D fakes b and replica hoverboards from China by air cargo.',
    'Hoverboards, replica, air cargo from China.',
    'Tea.',
  ), { watchLists: lists });

  it('GraphML is well formed, declares its keys, escapes text, and every edge end is a node', () => {
    const xml = toGraphML(net);
    const elements = checkXml(xml);
    expect(elements[0][0]).toBe('graphml');
    const keys = new Set(elements.filter(([n]) => n === 'key').map(([, a]) => a.id));
    for (const k of ['label', 'kind', 'df', 'riskArea', 'weight', 'association']) expect(keys).toContain(k);
    for (const m of xml.matchAll(/<data key="([^"]+)"/g)) expect(keys).toContain(m[1]);
    const nodeIds = elements.filter(([n]) => n === 'node').map(([, a]) => a.id);
    expect(new Set(nodeIds).size).toBe(nodeIds.length);
    expect(nodeIds).toEqual(net.nodes.map((n) => n.id));
    const edges = elements.filter(([n]) => n === 'edge');
    expect(edges.length).toBe(net.edges.length);
    expect(edges.length).toBeGreaterThan(0);
    for (const [, a] of edges) { expect(nodeIds).toContain(a.source); expect(nodeIds).toContain(a.target); }
    expect(xml).toContain('<data key="label">R&amp;D &quot;fakes&quot; &lt;b&gt;</data>');
    expect(xml).not.toContain('<b>');
  });

  it('HTML draws every node, escapes text and loads nothing', () => {
    const html = renderIntelHtml({ ...net, input: { paths: ['<dir>&"x"'], files: 1, duplicates: 0, skippedFiles: [], skippedRecords: [{ path: 'a<b>.jsonl', line: 2, reason: 'not JSON: <oops>' }] } });
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<svg');
    expect(html.match(/<g class="node"/g)).toHaveLength(net.nodes.length);
    expect(html.match(/<line /g)).toHaveLength(net.edges.length);
    for (const n of net.nodes) expect(html).toContain(`data-id="${n.id}"`);
    expect(html).toContain('R&amp;D &quot;fakes&quot; &lt;b&gt;');
    expect(html).toContain('&lt;dir&gt;&amp;&quot;x&quot;');
    expect(html).toContain('not JSON: &lt;oops&gt;');
    expect(html).not.toContain('<b>');
    expect(html).not.toContain('<oops>');
    expect(html).not.toMatch(/<script|src=|href=|@import|url\(/i);
    expect(html).toMatch(/<table id="suggestions">[\s\S]*hoverboards/);
  });

  it('JSON round-trips', () => {
    expect(JSON.parse(toJson(net))).toEqual(net);
  });
});

describe('selectivity intel (CLI)', () => {
  it('analyses the examples end to end: exit 0, JSON, GraphML and HTML written, a suggestion made', () => {
    const out = join(dir, 'cli-out') + '/';
    const r = spawnSync(process.execPath, [bin, 'intel', join(root, 'examples', 'intel'), '--watchlists', exampleLists, '--out', out], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^intel: 9 document\(s\) from 5 file\(s\)/);
    expect(r.stdout).toContain('suggested watch-list terms');
    for (const f of ['intel.json', 'intel.graphml', 'intel.html']) expect(existsSync(join(out, f)), f).toBe(true);
    const net = JSON.parse(readFileSync(join(out, 'intel.json'), 'utf8')) as IntelNetwork;
    expect(net.format).toBe('selectivity-intel');
    expect(net.documents).toBe(9);
    for (const kind of ['watch', 'transport', 'route', 'goods', 'term']) expect(net.nodes.some((n) => n.kind === kind), kind).toBe(true);
    expect(net.suggestions.length).toBeGreaterThan(0);
    expect(net.suggestions.map((s) => s.term)).toEqual(expect.arrayContaining(['free zone', 'sneakers']));
    checkXml(readFileSync(join(out, 'intel.graphml'), 'utf8'));
    expect(readFileSync(join(out, 'intel.html'), 'utf8')).toContain('<svg');
  });

  it('prints JSON with --json, writes named files, and is deterministic', async () => {
    const args = ['intel', join(root, 'examples', 'intel'), '--watchlists', exampleLists, '--json', '--max-terms', '5', '--min-support', '3'];
    const a = await run([...args, '--graphml', join(dir, 'g.graphml'), '--html', join(dir, 'p.html')]);
    expect(a.code, a.stderr).toBe(0);
    const net = JSON.parse(a.stdout) as IntelNetwork;
    expect(net.settings).toMatchObject({ maxTerms: 5, minSupport: 3 });
    expect(net.edges.every((e) => e.weight >= 3)).toBe(true);
    expect(existsSync(join(dir, 'g.graphml')) && existsSync(join(dir, 'p.html'))).toBe(true);
    expect((await run(args)).stdout).toBe(a.stdout);
    const prefix = await run(['intel', join(root, 'examples', 'intel'), '--watchlists', exampleLists, '--out', join(dir, 'pre', 'net.json')]);
    expect(prefix.code).toBe(0);
    for (const f of ['net.json', 'net.graphml', 'net.html']) expect(existsSync(join(dir, 'pre', f)), f).toBe(true);
  });

  it('bad input: named error codes and exit code 2', async () => {
    const missing = spawnSync(process.execPath, [bin, 'intel', join(dir, 'no-such-folder'), '--watchlists', exampleLists], { encoding: 'utf8', timeout: 60_000 });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');

    const bad = join(dir, 'bad');
    write(join(bad, 'x.jsonl'), 'not json\n{"title": 1}\n');
    write(join(bad, 'y.xml'), '<html/>');
    const none = spawnSync(process.execPath, [bin, 'intel', bad, '--watchlists', exampleLists], { encoding: 'utf8', timeout: 60_000 });
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('SEL_ERR_INTEL_INPUT');

    write(join(bad, 'z.txt'), 'A replica report.');
    expect((await run(['intel', bad, '--watchlists', exampleLists])).code).toBe(0);
    const strict = await run(['intel', bad, '--watchlists', exampleLists, '--strict']);
    expect(strict.code).toBe(2);
    expect(strict.stderr).toContain('SEL_ERR_INTEL_INPUT');
    expect(strict.stderr).toContain('x.jsonl:1');

    const opt = await run(['intel', bad, '--watchlists', exampleLists, '--max-terms', 'many']);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain('SEL_ERR_OPTION_INVALID');
    // a --watchlists file that is not there: SEL_ERR_FILE_NOT_FOUND, as for every input file; one that is not JSON: the lists' own code
    expect((await run(['intel', bad, '--watchlists', join(dir, 'nope.json')])).stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
    writeFileSync(join(dir, 'broken-lists.json'), '{"watchLists": [');
    expect((await run(['intel', bad, '--watchlists', join(dir, 'broken-lists.json')])).stderr).toContain('SEL_ERR_WATCHLIST_INVALID');
    expect((await run(['intel', '--watchlists', exampleLists])).stderr).toContain('SEL_ERR_OPTION_INVALID');
    expect((await run(['intel', bad, '--risk-areas', 'ipr,fun', '--watchlists', exampleLists])).stderr).toContain('SEL_ERR_OPTION_INVALID');
  });

  it('reads the store\'s active lists without --watchlists', async () => {
    const dd = ['--data-dir', join(dir, 'store')];
    expect((await run(['text', 'lists', 'import', exampleLists, ...dd])).code).toBe(0);
    const r = await run(['intel', join(root, 'examples', 'intel'), ...dd, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const net = JSON.parse(r.stdout) as IntelNetwork;
    expect(net.settings.watchTerms).toBeGreaterThan(0);
    expect(net.suggestions.length).toBeGreaterThan(0);
    // a data directory with no store (mistyped): refused, and no empty store is left behind (it ran with no watch lists)
    const none = join(dir, 'no-store-here');
    const miss = await run(['intel', join(root, 'examples', 'intel'), '--data-dir', none, '--json']);
    expect(miss.code).toBe(2);
    expect(miss.stderr).toContain('SEL_ERR_FILE_NOT_FOUND');
    expect(existsSync(none)).toBe(false);
  });

  it('buildIntel records what was read', () => {
    const net = buildIntel(join(root, 'examples', 'intel'), { watchLists: LISTS });
    expect(net.input).toMatchObject({ files: 5, duplicates: 0, skippedFiles: [], skippedRecords: [] });
  });
});
