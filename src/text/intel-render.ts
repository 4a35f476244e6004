/**
 * Exports of an intelligence network (src/text/intel.ts): GraphML for
 * Gephi, yEd or Cytoscape, and one self-contained HTML page with the network
 * drawn as inline SVG (a deterministic force-directed layout computed here,
 * no script and no network access at view time) and tables of suggestions,
 * nodes and edges.
 */
import type { IntelNetwork, IntelNode, IntelNodeKind } from './intel.js';

// ---------------------------------------------------------------------------
// GraphML.

/** Characters XML 1.0 does not allow (controls other than tab and line ends, lone surrogates, U+FFFE/FFFF). */
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Text safe in XML content and attribute values: the five special characters escaped, characters XML cannot hold replaced by U+FFFD. */
export function xmlEscape(s: string): string {
  return s.replace(XML_INVALID, '\ufffd').replace(/[&<>"']/g, (c) => XML_ESCAPES[c]);
}

const GRAPHML_KEYS: readonly [id: string, target: 'graph' | 'node' | 'edge', type: string][] = [
  ['documents', 'graph', 'int'],
  ['label', 'node', 'string'],
  ['kind', 'node', 'string'],
  ['df', 'node', 'int'],
  ['riskArea', 'node', 'string'],
  ['lists', 'node', 'string'],
  ['weight', 'edge', 'double'],
  ['association', 'edge', 'double'],
  ['lift', 'edge', 'double'],
];

/**
 * The network as GraphML (undirected): `<key>` declarations for every
 * attribute (node label, kind, df, riskArea, lists; edge weight, association,
 * lift; graph documents), node ids as in the network, edges `e0`, `e1`, …
 */
export function toGraphML(network: IntelNetwork): string {
  const data = (key: string, v: string | number) => `<data key="${key}">${xmlEscape(String(v))}</data>`;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
    '         xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ...GRAPHML_KEYS.map(([id, target, type]) => `  <key id="${id}" for="${target}" attr.name="${id}" attr.type="${type}"/>`),
    '  <graph id="intel" edgedefault="undirected">',
    `    ${data('documents', network.documents)}`,
  ];
  for (const nd of network.nodes) {
    let line = `    <node id="${xmlEscape(nd.id)}">${data('label', nd.label)}${data('kind', nd.kind)}${data('df', nd.df)}`;
    if (nd.riskArea !== undefined) line += data('riskArea', nd.riskArea);
    if (nd.lists !== undefined) line += data('lists', nd.lists.join(','));
    out.push(`${line}</node>`);
  }
  network.edges.forEach((e, i) => {
    out.push(`    <edge id="e${i}" source="${xmlEscape(e.source)}" target="${xmlEscape(e.target)}">${data('weight', e.weight)}${data('association', e.association)}${data('lift', e.lift)}</edge>`);
  });
  out.push('  </graph>', '</graphml>', '');
  return out.join('\n');
}

// ---------------------------------------------------------------------------
// Layout.

export interface LayoutEdge { a: number; b: number; weight: number }

/**
 * Fruchterman–Reingold layout of n nodes in a width × height box, with
 * attraction scaled by edge weight and a linear pull towards the centre (so
 * that unconnected nodes stay in the picture), then scaled to fill the box
 * less a margin. Deterministic: nodes start on a sunflower spiral in their
 * given order, and the iteration count is fixed.
 */
export function layoutNetwork(n: number, edges: readonly LayoutEdge[], width: number, height: number, iterations = 300): { x: number; y: number }[] {
  const cx = width / 2, cy = height / 2;
  const margin = 40;
  if (n === 0) return [];
  if (n === 1) return [{ x: cx, y: cy }];
  const x = new Float64Array(n), y = new Float64Array(n);
  const r0 = Math.min(width, height) * 0.45;
  for (let i = 0; i < n; i++) {
    const r = r0 * Math.sqrt((i + 0.5) / n);
    const a = i * 2.399963229728653; // the golden angle
    x[i] = cx + r * Math.cos(a);
    y[i] = cy + r * Math.sin(a);
  }
  // The repulsion a node far out feels sums to about k²·n / distance = 0.36·width·height / distance, whatever n: a pull of
  // 1.2 × distance balances it at about half the box.
  const k = 0.6 * Math.sqrt((width * height) / n);
  const k2 = k * k;
  const gravity = 1.2;
  const maxW = edges.reduce((m, e) => Math.max(m, e.weight), 1);
  const dx = new Float64Array(n), dy = new Float64Array(n);
  for (let it = 0; it < iterations; it++) {
    dx.fill(0);
    dy.fill(0);
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        let ex = x[i] - x[j], ey = y[i] - y[j];
        let d2 = ex * ex + ey * ey;
        if (d2 < 0.01) { ex = 0.1; ey = 0.1 * (((i + j) % 3) - 1); d2 = ex * ex + ey * ey; }
        const f = k2 / d2;
        dx[i] += ex * f; dy[i] += ey * f;
        dx[j] -= ex * f; dy[j] -= ey * f;
      }
    }
    for (const e of edges) {
      const ex = x[e.a] - x[e.b], ey = y[e.a] - y[e.b];
      const d = Math.sqrt(ex * ex + ey * ey) || 0.01;
      const f = (d / k) * (0.3 + 0.7 * (e.weight / maxW));
      dx[e.a] -= ex * f; dy[e.a] -= ey * f;
      dx[e.b] += ex * f; dy[e.b] += ey * f;
    }
    const t = (width / 10) * (1 - it / iterations) + 0.5;
    for (let i = 0; i < n; i++) {
      dx[i] += (cx - x[i]) * gravity;
      dy[i] += (cy - y[i]) * gravity * (width / height);
      const d = Math.sqrt(dx[i] * dx[i] + dy[i] * dy[i]);
      if (d > 0) { const s = Math.min(d, t) / d; x[i] += dx[i] * s; y[i] += dy[i] * s; }
    }
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) { x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]); y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]); }
  const sx = x1 > x0 ? (width - 2 * margin - 120) / (x1 - x0) : 0; // room on the right for labels
  const sy = y1 > y0 ? (height - 2 * margin) / (y1 - y0) : 0;
  return Array.from(x, (xi, i) => ({ x: sx ? margin + (xi - x0) * sx : cx, y: sy ? margin + (y[i] - y0) * sy : cy }));
}

// ---------------------------------------------------------------------------
// HTML.

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/** Colours of the node kinds. */
export const KIND_COLOURS: Record<IntelNodeKind, string> = {
  watch: '#c62828', transport: '#1565c0', route: '#2e7d32', goods: '#ef6c00', term: '#78909c',
};

const KIND_NAMES: Record<IntelNodeKind, string> = {
  watch: 'watch-list term', transport: 'mode of transport', route: 'country / place', goods: 'goods (HS chapter)', term: 'frequent term',
};

/** Most nodes and edges drawn; the tables list them all. */
const MAX_DRAWN_NODES = 150;
const MAX_DRAWN_EDGES = 600;
const WIDTH = 1200;
const HEIGHT = 800;

const CSS = `
:root{--fg:#1f2933;--muted:#6b7785;--line:#d9dee3;--bg:#fff;--head:#f3f5f7}
*{box-sizing:border-box}
body{margin:0 auto;padding:24px;max-width:1400px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
.muted{color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.swatch{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 4px 0 12px}
.legend .swatch:first-child{margin-left:0}
svg.network{width:100%;height:auto;border:1px solid var(--line);border-radius:4px;background:#fcfcfd}
svg.network line{stroke:#90a4ae;stroke-opacity:.45}
svg.network line:hover{stroke:#263238;stroke-opacity:.9}
svg.network text{font-size:11px;fill:#1f2933;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round;pointer-events:none}
svg.network circle{stroke:#fff;stroke-width:1.5}
svg.network g.node:hover circle{stroke:#000;stroke-width:2}
svg.network circle.suggested{stroke:#c62828;stroke-width:2.5;stroke-dasharray:3 2}
details{margin:4px 0}
`;

function shorten(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

const fmt = (x: number, digits: number) => (Number.isInteger(x) ? String(x) : x.toFixed(digits));

function drawing(network: IntelNetwork): { svg: string; drawnNodes: number; drawnEdges: number } {
  const suggested = new Set(network.suggestions.map((s) => s.id));
  const priority = (nd: IntelNode) => (nd.kind === 'watch' ? 0 : suggested.has(nd.id) ? 1 : 2);
  const drawn = network.nodes
    .map((nd, i) => ({ nd, i }))
    .sort((a, b) => priority(a.nd) - priority(b.nd) || b.nd.df - a.nd.df || a.i - b.i)
    .slice(0, MAX_DRAWN_NODES)
    .sort((a, b) => a.i - b.i)
    .map((x) => x.nd);
  const at = new Map(drawn.map((nd, i) => [nd.id, i]));
  const edges = network.edges.filter((e) => at.has(e.source) && at.has(e.target)).slice(0, MAX_DRAWN_EDGES);
  const lEdges = edges.map((e) => ({ a: at.get(e.source)!, b: at.get(e.target)!, weight: e.weight }));
  const pos = layoutNetwork(drawn.length, lEdges, WIDTH, HEIGHT);
  const maxDf = drawn.reduce((m, nd) => Math.max(m, nd.df), 1);
  const minW = edges.reduce((m, e) => Math.min(m, e.weight), Infinity);
  const maxW = edges.reduce((m, e) => Math.max(m, e.weight), 0);
  const p = (v: number) => v.toFixed(1);
  const lines = edges.map((e, i) => {
    const a = pos[lEdges[i].a], b = pos[lEdges[i].b];
    const width = 0.6 + (maxW > minW ? (4.4 * (e.weight - minW)) / (maxW - minW) : 1.4);
    const tip = `${drawn[lEdges[i].a].label} — ${drawn[lEdges[i].b].label}: ${e.weight} documents, NPMI ${fmt(e.association, 3)}, lift ${fmt(e.lift, 2)}`;
    return `<line x1="${p(a.x)}" y1="${p(a.y)}" x2="${p(b.x)}" y2="${p(b.y)}" stroke-width="${width.toFixed(2)}"><title>${esc(tip)}</title></line>`;
  });
  const circles = drawn.map((nd, i) => {
    const r = 5 + 10 * Math.sqrt(nd.df / maxDf);
    const tip = `${nd.label} (${KIND_NAMES[nd.kind]}${nd.riskArea ? `, ${nd.riskArea}` : ''}${nd.lists ? `, ${nd.lists.join(', ')}` : ''}): ${nd.df} documents`
      + (suggested.has(nd.id) ? ' · suggested watch-list term' : '');
    const cls = suggested.has(nd.id) ? ' class="suggested"' : '';
    return `<g class="node" data-id="${esc(nd.id)}"><circle cx="${p(pos[i].x)}" cy="${p(pos[i].y)}" r="${r.toFixed(1)}" fill="${KIND_COLOURS[nd.kind]}"${cls}><title>${esc(tip)}</title></circle>`
      + `<text x="${p(pos[i].x + r + 2)}" y="${p(pos[i].y + 4)}">${esc(shorten(nd.label, 28))}</text></g>`;
  });
  const svg = `<svg class="network" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Keyword co-occurrence network">`
    + `\n<g class="edges">\n${lines.join('\n')}\n</g>\n<g class="nodes">\n${circles.join('\n')}\n</g>\n</svg>`;
  return { svg, drawnNodes: drawn.length, drawnEdges: edges.length };
}

function suggestionsTable(network: IntelNetwork): string {
  if (network.suggestions.length === 0) {
    return `<p class="muted">No suggestion: ${network.settings.highRiskTerms === 0 ? 'no high-risk watch-list term (give watch lists)' : `no frequent term co-occurs with a high-risk watch-list term in ${network.settings.minSupport} or more documents more often than chance`}.</p>`;
  }
  const rows = network.suggestions.map((s, i) => `<tr><td class="num">${i + 1}</td><td><strong>${esc(s.term)}</strong></td><td class="num">${esc(fmt(s.score, 2))}</td>`
    + `<td class="num">${s.support}</td><td class="num">${s.df}</td><td>${s.watchTerms.map((w) => `${esc(w.term)} <span class="muted">(${esc(w.riskArea)}, ${w.together} docs, G² ${esc(fmt(w.score, 2))})</span>`).join('; ')}</td></tr>`);
  return '<div class="scroll"><table id="suggestions"><thead><tr><th class="num">#</th><th>term</th><th class="num">score (G²)</th><th class="num">with high-risk terms</th>'
    + `<th class="num">documents</th><th>associated watch-list terms</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function nodesTable(network: IntelNetwork): string {
  const rows = network.nodes.map((nd) => `<tr><td><span class="swatch" style="background:${KIND_COLOURS[nd.kind]}"></span>${esc(KIND_NAMES[nd.kind])}</td><td>${esc(nd.label)}</td>`
    + `<td><code>${esc(nd.id)}</code></td><td class="num">${nd.df}</td><td>${esc([nd.riskArea, ...(nd.lists ?? [])].filter(Boolean).join(' · '))}</td></tr>`);
  return `<div class="scroll"><table id="nodes"><thead><tr><th>kind</th><th>label</th><th>id</th><th class="num">documents</th><th>risk area · lists</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function edgesTable(network: IntelNetwork, limit: number): string {
  if (network.edges.length === 0) return `<p class="muted">No pair of nodes occurs together in ${network.settings.minSupport} or more documents.</p>`;
  const label = new Map(network.nodes.map((nd) => [nd.id, nd.label]));
  const rows = network.edges.slice(0, limit).map((e) => `<tr><td>${esc(label.get(e.source) ?? e.source)}</td><td>${esc(label.get(e.target) ?? e.target)}</td>`
    + `<td class="num">${e.weight}</td><td class="num">${esc(fmt(e.association, 3))}</td><td class="num">${esc(fmt(e.lift, 2))}</td></tr>`);
  return `<div class="scroll"><table id="edges"><thead><tr><th>node</th><th>node</th><th class="num">documents together</th><th class="num">NPMI</th><th class="num">lift</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function skippedSection(network: IntelNetwork): string {
  const input = network.input;
  if (!input || (input.skippedFiles.length === 0 && input.skippedRecords.length === 0)) return '';
  const item = (s: { path: string; line?: number; reason: string }) => `<li><code>${esc(s.path)}${s.line !== undefined ? `:${s.line}` : ''}</code>: ${esc(s.reason)}</li>`;
  return `<details><summary>${input.skippedFiles.length} file(s) and ${input.skippedRecords.length} record(s) skipped</summary><ul>`
    + `${[...input.skippedFiles, ...input.skippedRecords].slice(0, 500).map(item).join('')}</ul></details>`;
}

/**
 * One self-contained HTML page of the network: a summary, the drawing
 * (inline SVG, nodes coloured by kind and sized by documents, edge width by
 * weight, tooltips; at most 150 nodes and 600 edges drawn, watch terms and
 * suggested terms first), and tables of suggestions, nodes and the
 * strongest edges. All text is HTML-escaped; the page loads nothing.
 */
export function renderIntelHtml(network: IntelNetwork): string {
  const { svg, drawnNodes, drawnEdges } = drawing(network);
  const s = network.settings;
  const counts = new Map<IntelNodeKind, number>();
  for (const nd of network.nodes) counts.set(nd.kind, (counts.get(nd.kind) ?? 0) + 1);
  const legend = (Object.keys(KIND_COLOURS) as IntelNodeKind[])
    .map((k) => `<span class="swatch" style="background:${KIND_COLOURS[k]}"></span>${esc(KIND_NAMES[k])} (${counts.get(k) ?? 0})`).join('');
  const item = (k: string, v: string) => `<dt>${esc(k)}</dt><dd>${v}</dd>`;
  const input = network.input;
  const source = input ? input.paths.join(', ') : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`Intelligence network${source ? ` · ${source}` : ''}`)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Intelligence network</h1>
<dl class="meta">
${input ? item('source', esc(source)) : ''}
${item('documents', `${network.documents}${input ? ` from ${input.files} file(s) · ${input.skippedFiles.length} file(s) and ${input.skippedRecords.length} record(s) skipped · ${input.duplicates} duplicate(s)` : ''}`)}
${item('network', `${network.nodes.length} nodes · ${network.edges.length} edges (documents together ≥ ${s.minSupport})`)}
${item('watch lists', `${s.watchTerms} terms · ${s.highRiskTerms} high-risk (${esc(s.highRiskAreas.join(', '))})`)}
${item('settings', `max terms ${s.maxTerms} · frequent terms in ≥ ${s.minDf} documents · min support ${s.minSupport} · max edges ${s.maxEdges}`)}
</dl>
${skippedSection(network)}
<h2>Network</h2>
<p class="legend">${legend}</p>
<p class="muted">Co-occurrence in documents: ${drawnNodes} of ${network.nodes.length} nodes and ${drawnEdges} of ${network.edges.length} edges drawn. Node size: documents; edge width: documents together. Suggested terms have a dashed red ring. Hover for details.</p>
${svg}
<h2>Suggested watch-list terms</h2>
<p class="muted">Frequent terms ranked by their strongest association with one high-risk watch-list term: the log-likelihood ratio G² of documents with and without each (above 3.84 is significant at 5 % for one pair).</p>
${suggestionsTable(network)}
<h2>Strongest edges</h2>
${edgesTable(network, 100)}
<h2>Nodes</h2>
${nodesTable(network)}
</body>
</html>
`;
}
