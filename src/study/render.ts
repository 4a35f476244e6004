/**
 * Renderers of a deviation study report (src/study/report.ts): two CSV tables
 * (top declarations, groups) and one self-contained HTML page. The page
 * inlines Chart.js (read once from the installed package) and the report as a
 * JSON block; its tables are plain HTML, so it reads without JavaScript too.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { errors } from '../errors.js';
import { csvCellSafe } from '../model/csv.js';
import { findPackageDir } from '../paths.js';
import { FEATURES, type Feature } from '../peers/peer-groups.js';
import type { StudyDeclaration, StudyDistribution, StudyFeature, StudyGroup, StudyReport } from './report.js';

// ---------------------------------------------------------------------------
// Number formatting.

/**
 * CSV form of a computed number: integers as they are, other numbers to at
 * most 6 significant digits; null (or a non-finite number) is an empty cell.
 */
function csvNumber(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '';
  if (Number.isInteger(n)) return String(n);
  return String(Number(n.toPrecision(6)));
}

/** CSV form of a number read from the declaration itself (customs value, mass, quantity): exact. */
function csvExact(n: number | null): string {
  return n === null || !Number.isFinite(n) ? '' : String(n);
}

function trimZeros(s: string): string {
  if (!s.includes('.')) return s;
  const [mantissa, exp] = s.split('e');
  const m = mantissa.replace(/0+$/, '').replace(/\.$/, '');
  return exp === undefined ? m : `${m}e${exp}`;
}

function groupThousands(n: number): string {
  const digits = String(Math.abs(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 ? `-${digits}` : digits;
}

/**
 * Readable form of a natural-unit value (1e-3 .. 1e9 and beyond): 4
 * significant digits below 1000, whole numbers with thousands separators from
 * 1000, exponent form at the extremes; '–' for null.
 */
export function formatValue(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a >= 1e15 || a < 1e-6) return trimZeros(n.toExponential(3));
  if (a >= 999.95) return groupThousands(Math.round(n));
  return trimZeros(n.toPrecision(4));
}

/** A z-score with its sign and two decimals; '–' for null. */
function formatZ(z: number | null): string {
  if (z === null || !Number.isFinite(z)) return '–';
  return `${z > 0 ? '+' : ''}${z.toFixed(2)}`;
}

// ---------------------------------------------------------------------------
// CSV.

function csvTable(header: readonly string[], rows: readonly string[][]): string {
  let out = header.map(csvCellSafe).join(',') + '\n';
  for (const r of rows) out += r.map(csvCellSafe).join(',') + '\n';
  return out;
}

function featureOf(d: StudyDeclaration, f: Feature): StudyFeature | undefined {
  return d.features.find((x) => x.feature === f);
}

const FEATURE_COLUMNS: readonly [suffix: string, cell: (x: StudyFeature | undefined) => string][] = [
  ['', (x) => csvNumber(x?.value ?? null)],
  ['_z', (x) => csvNumber(x?.z ?? null)],
  ['_peer_level', (x) => x?.peerLevel ?? ''],
  ['_peer_key', (x) => x?.peerKey ?? ''],
  ['_peer_count', (x) => csvNumber(x?.peerCount ?? null)],
  ['_median', (x) => csvNumber(x?.median ?? null)],
  ['_spread', (x) => csvNumber(x?.spread ?? null)],
];

/** CSV of report.top: one row per declaration, features in FEATURES order. */
export function studyTopCsv(report: StudyReport): string {
  const header = [
    'rank', 'id', 'date', 'hs', 'origin', 'importer', 'customs_value', 'net_mass', 'quantity', 'deviation', 'score',
    ...FEATURES.flatMap((f) => FEATURE_COLUMNS.map(([suffix]) => f + suffix)),
  ];
  const rows = report.top.map((d) => [
    String(d.rank), d.id, d.date, d.hs, d.origin, d.importer,
    csvExact(d.customsValue), csvExact(d.netMass), csvExact(d.quantity),
    csvNumber(d.deviation), csvNumber(d.score),
    ...FEATURES.flatMap((f) => {
      const x = featureOf(d, f);
      return FEATURE_COLUMNS.map(([, cell]) => cell(x));
    }),
  ]);
  return csvTable(header, rows);
}

const GROUP_COLUMNS: readonly [header: string, cell: (g: StudyGroup) => string][] = [
  ['level', (g) => g.level],
  ['key', (g) => g.key],
  ['label', (g) => g.label],
  ['feature', (g) => g.feature],
  ['size', (g) => csvNumber(g.size)],
  ['median', (g) => csvNumber(g.median)],
  ['spread', (g) => csvNumber(g.spread)],
  ['mean', (g) => csvNumber(g.mean)],
  ['std', (g) => csvNumber(g.std)],
  ['min', (g) => csvNumber(g.min)],
  ['max', (g) => csvNumber(g.max)],
  ['studied', (g) => csvNumber(g.studied)],
  ['outliers', (g) => csvNumber(g.outliers)],
  ['under', (g) => csvNumber(g.under)],
  ['over', (g) => csvNumber(g.over)],
  ['outlier_share', (g) => csvNumber(g.outlierShare)],
];

/** CSV of report.groups: every field of StudyGroup, snake_case headers. */
export function studyGroupsCsv(report: StudyReport): string {
  return csvTable(GROUP_COLUMNS.map(([h]) => h), report.groups.map((g) => GROUP_COLUMNS.map(([, cell]) => cell(g))));
}

// ---------------------------------------------------------------------------
// Chart.js, inlined.

let chartJs: string | undefined;

/**
 * The text of Chart.js's UMD build. The package's "exports" map hides
 * package.json and dist/ subpaths, so the main entry is resolved (from src/
 * or dist/src/ alike) and the package folder found above it.
 */
export function chartJsSource(): string {
  if (chartJs !== undefined) return chartJs;
  let file = '';
  try {
    const dir = findPackageDir(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.js');
    if (!dir) throw new Error('no package.json named chart.js above its entry');
    file = join(dir, 'dist', 'chart.umd.min.js');
    chartJs = readFileSync(file, 'utf8');
  } catch (e) {
    throw errors.SEL_ERR_INTERNAL('Chart.js could not be loaded for the HTML report', {
      field: 'chart.js',
      expected: 'the chart.js 4.x package installed, with dist/chart.umd.min.js',
      got: file || (e instanceof Error ? e.message : String(e)),
    });
  }
  return chartJs;
}


/** Makes script text safe to place inside <script>…</script>. */
export function scriptSafe(js: string): string {
  return js.replace(/<\/script/gi, '<\\/script').replace(/<!--/g, '<\\!--');
}

/** JSON for a <script type="application/json"> block: no '<', '>', '&' or line separators left raw. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

// ---------------------------------------------------------------------------
// HTML.

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

const FEATURE_NAMES: Record<Feature, string> = {
  unitValue: 'unit value (per kg)',
  netMass: 'net mass (kg)',
  valuePerItem: 'value per item',
};

const COLOUR_UNDER = '#c62828';
const COLOUR_OVER = '#ef6c00';
const COLOUR_MARK = '#455a64';
const COLOUR_BIN = '#b0bec5';
const COLOUR_GROUP = '#5c6bc0';
const MAX_CHART_GROUPS = 20;

function zClass(z: number | null, threshold: number): string {
  if (z === null) return '';
  if (z < -threshold) return 'under';
  if (z > threshold) return 'over';
  return '';
}

function zColour(z: number | null): string {
  if (z === null) return COLOUR_MARK;
  return z < 0 ? COLOUR_UNDER : COLOUR_OVER;
}

function shorten(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Where a value falls along the bins, in bin units (0 = left edge of the first bin, n = right edge of the last), clamped. */
function binPosition(bins: StudyDistribution['bins'], v: number): { pos: number; bin: number; outside: boolean } {
  const n = bins.length;
  if (v < bins[0].lo) return { pos: 0, bin: 0, outside: true };
  if (v >= bins[n - 1].hi) return { pos: n, bin: n - 1, outside: v > bins[n - 1].hi };
  let i = 0;
  while (i < n - 1 && v >= bins[i].hi) i++;
  const { lo, hi } = bins[i];
  let frac = 0;
  if (hi > lo) frac = lo > 0 && v > 0 ? Math.log(v / lo) / Math.log(hi / lo) : (v - lo) / (hi - lo);
  return { pos: i + Math.min(1, Math.max(0, frac)), bin: i, outside: false };
}

interface DistributionView {
  labels: string[];
  counts: number[];
  colours: string[];
  /** Per bin, the marked declarations in it (tooltip lines). */
  notes: string[][];
  axis: string;
  median: number | null;
  marks: { pos: number; text: string; colour: string }[];
}

interface ChartView {
  groups: { labels: string[]; full: string[]; share: number[]; colours: string[]; tips: string[] };
  distributions: DistributionView[];
}

function distributionView(d: StudyDistribution): DistributionView {
  const view: DistributionView = {
    labels: d.bins.map((b) => `${formatValue(b.lo)}–${formatValue(b.hi)}`),
    counts: d.bins.map((b) => b.count),
    colours: d.bins.map(() => COLOUR_BIN),
    notes: d.bins.map(() => []),
    axis: FEATURE_NAMES[d.feature] ?? d.feature,
    median: null,
    marks: [],
  };
  if (d.bins.length === 0) return view;
  if (d.median !== null) view.median = binPosition(d.bins, d.median).pos;
  /** Per bin: whether a declaration is marked in it, and the z of largest magnitude among them (colours the bar). */
  const marked = d.bins.map(() => false);
  const strongest: (number | null)[] = d.bins.map(() => null);
  for (const m of d.marked) {
    const at = binPosition(d.bins, m.value);
    view.marks.push({ pos: at.pos, text: `#${m.rank}`, colour: zColour(m.z) });
    view.notes[at.bin].push(`#${m.rank} ${shorten(m.id, 40)}: ${formatValue(m.value)} (z ${formatZ(m.z)})${at.outside ? ', beyond the bins' : ''}`);
    marked[at.bin] = true;
    const prev = strongest[at.bin];
    if (m.z !== null && (prev === null || Math.abs(m.z) > Math.abs(prev))) strongest[at.bin] = m.z;
  }
  view.colours = d.bins.map((_, i) => (marked[i] ? zColour(strongest[i]) : COLOUR_BIN));
  return view;
}

function chartView(report: StudyReport): ChartView {
  const groups = report.groups.slice(0, MAX_CHART_GROUPS);
  return {
    groups: {
      labels: groups.map((g) => shorten(g.label, 48)),
      full: groups.map((g) => `${g.label} (${g.feature})`),
      share: groups.map((g) => Math.round(g.outlierShare * 1000) / 10),
      colours: groups.map((g) => (g.under > g.over ? COLOUR_UNDER : g.over > g.under ? COLOUR_OVER : COLOUR_GROUP)),
      tips: groups.map((g) => `studied ${g.studied} · outliers ${g.outliers} (under ${g.under}, over ${g.over}) · peers ${g.size}`),
    },
    distributions: report.distributions.map(distributionView),
  };
}

export const CSS = `
:root{--fg:#1f2933;--muted:#6b7785;--line:#d9dee3;--bg:#fff;--head:#f3f5f7;--under:${COLOUR_UNDER};--over:${COLOUR_OVER}}
*{box-sizing:border-box}
body{margin:0 auto;padding:24px;max-width:1400px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:20px 0 4px}
.muted{color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top;white-space:nowrap}
thead th{background:var(--head);position:sticky;top:0}
th.group{text-align:center;border-left:2px solid var(--line)}
td.first{border-left:2px solid var(--line)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.under{background:#fde2e2;color:var(--under);font-weight:600}
td.over{background:#ffead5;color:var(--over);font-weight:600}
td.id{white-space:normal;word-break:break-all;max-width:22em}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.chart{position:relative;width:100%}
.dist{margin:16px 0 28px}
.dist ul{margin:4px 0;padding-left:20px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
details{margin:4px 0}
@media print{.chart{break-inside:avoid}body{padding:0}}
`;

const CLIENT = `
(function () {
  'use strict';
  var el = document.getElementById('study-data');
  if (!el || typeof Chart === 'undefined') return;
  var view = JSON.parse(el.textContent).view;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;

  var g = view.groups;
  var gc = document.getElementById('groups-chart');
  if (gc && g.labels.length) {
    new Chart(gc, {
      type: 'bar',
      data: { labels: g.labels, datasets: [{ label: 'outliers (%)', data: g.share, backgroundColor: g.colours }] },
      options: {
        indexAxis: 'y',
        maintainAspectRatio: false,
        scales: {
          x: { min: 0, max: 100, title: { display: true, text: 'studied declarations beyond the threshold (%)' } },
          y: { ticks: { autoSkip: false } }
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: {
            title: function (items) { return g.full[items[0].dataIndex]; },
            label: function (item) { return item.formattedValue + '% outliers'; },
            afterLabel: function (item) { return g.tips[item.dataIndex]; }
          } }
        }
      }
    });
  }

  function markers(d) {
    return {
      id: 'markers',
      afterDatasetsDraw: function (chart) {
        var x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx, n = d.labels.length;
        function line(pos, colour, dash, text, row) {
          var px = x.left + pos * x.width / n;
          ctx.save();
          ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
          ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.bottom); ctx.stroke();
          ctx.font = '11px ' + Chart.defaults.font.family; ctx.textAlign = 'center';
          ctx.fillText(text, px, area.top - 4 - 12 * row);
          ctx.restore();
        }
        if (d.median !== null) line(d.median, '#263238', [6, 4], 'median', 0);
        d.marks.forEach(function (m, j) { line(m.pos, m.colour, [], m.text, (j % 2) + (d.median !== null ? 1 : 0)); });
      }
    };
  }

  view.distributions.forEach(function (d, i) {
    var c = document.getElementById('dist-' + i);
    if (!c || !d.labels.length) return;
    new Chart(c, {
      type: 'bar',
      data: { labels: d.labels, datasets: [{ label: 'peer values', data: d.counts, backgroundColor: d.colours, barPercentage: 1, categoryPercentage: 1 }] },
      options: {
        maintainAspectRatio: false,
        layout: { padding: { top: 40 } },
        scales: {
          x: { offset: true, ticks: { maxRotation: 60, minRotation: 30 }, title: { display: true, text: d.axis } },
          y: { beginAtZero: true, title: { display: true, text: 'peer values' } }
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { afterLabel: function (item) { return d.notes[item.dataIndex]; } } }
        }
      },
      plugins: [markers(d)]
    });
  });
})();
`;

function zCell(z: number | null, threshold: number, first = false): string {
  const cls = ['num', zClass(z, threshold), first ? 'first' : ''].filter(Boolean).join(' ');
  return `<td class="${cls}">${esc(formatZ(z))}</td>`;
}

function featureCells(x: StudyFeature | undefined, threshold: number): string {
  if (!x) return '<td class="num first muted">–</td><td class="num muted">–</td><td class="muted">–</td><td class="num muted">–</td>';
  const typical = x.typicalLow !== null && x.typicalHigh !== null
    ? ` title="typical ${esc(formatValue(x.typicalLow))}–${esc(formatValue(x.typicalHigh))}"` : '';
  const cls = ['num', 'first', zClass(x.z, threshold)].filter(Boolean).join(' ');
  const value = `<td class="${cls}"${typical}>${esc(formatValue(x.value))} <span class="muted">vs ${esc(formatValue(x.median))}</span></td>`;
  const peer = x.peerLevel === null
    ? '<td class="muted">no group</td>'
    : `<td>${esc(x.peerLevel)} <code>${esc(x.peerKey ?? '')}</code></td>`;
  return value + zCell(x.z, threshold) + peer + `<td class="num">${esc(formatValue(x.peerCount))}</td>`;
}

function topTable(report: StudyReport): string {
  const thr = report.settings.zThreshold;
  if (report.top.length === 0) return '<p class="muted">No declarations to show.</p>';
  const head1 = '<tr><th colspan="8"></th>' + FEATURES.map((f) => `<th class="group" colspan="4">${esc(FEATURE_NAMES[f])}</th>`).join('') + '</tr>';
  const head2 = '<tr><th class="num">rank</th><th>id</th><th>date</th><th>hs</th><th>origin</th><th>importer</th><th class="num">deviation</th><th class="num">score</th>'
    + FEATURES.map(() => '<th class="num group">value vs median</th><th class="num">z</th><th>peer group</th><th class="num">n</th>').join('') + '</tr>';
  const rows = report.top.map((d) =>
    `<tr><td class="num">${d.rank}</td><td class="id">${esc(d.id)}</td><td>${esc(d.date)}</td><td><code>${esc(d.hs)}</code></td>`
    + `<td>${esc(d.origin)}</td><td>${esc(d.importer)}</td><td class="num">${esc(formatValue(d.deviation))}</td><td class="num">${esc(formatValue(d.score))}</td>`
    + FEATURES.map((f) => featureCells(featureOf(d, f), thr)).join('') + '</tr>');
  return `<div class="scroll"><table id="top-table"><thead>${head1}${head2}</thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function groupsTable(report: StudyReport): string {
  if (report.groups.length === 0) return '<p class="muted">No groups.</p>';
  const head = '<tr><th>group</th><th>level</th><th>key</th><th>feature</th><th class="num">peers</th><th class="num">median</th><th class="num">spread</th>'
    + '<th class="num">mean</th><th class="num">std</th><th class="num">min</th><th class="num">max</th><th class="num">studied</th><th class="num">outliers</th>'
    + '<th class="num">under</th><th class="num">over</th><th class="num">share</th></tr>';
  const n = (v: number | null) => `<td class="num">${esc(formatValue(v))}</td>`;
  const rows = report.groups.map((g) =>
    `<tr><td>${esc(g.label)}</td><td>${esc(g.level)}</td><td><code>${esc(g.key)}</code></td><td>${esc(g.feature)}</td>`
    + n(g.size) + n(g.median) + n(g.spread) + n(g.mean) + n(g.std) + n(g.min) + n(g.max) + n(g.studied) + n(g.outliers)
    + `<td class="num${g.under ? ' under' : ''}">${g.under}</td><td class="num${g.over ? ' over' : ''}">${g.over}</td>`
    + `<td class="num">${(g.outlierShare * 100).toFixed(1)}%</td></tr>`);
  return `<div class="scroll"><table id="groups-table"><thead>${head}</thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function distributionSection(d: StudyDistribution, i: number): string {
  const total = d.bins.reduce((s, b) => s + b.count, 0);
  const marks = d.marked.map((m) =>
    `<li><span class="swatch" style="background:${zColour(m.z)}"></span>#${m.rank} <code>${esc(m.id)}</code>: ${esc(formatValue(m.value))} (z ${esc(formatZ(m.z))})</li>`).join('');
  const bins = d.bins.map((b) => `<tr><td class="num">${esc(formatValue(b.lo))}</td><td class="num">${esc(formatValue(b.hi))}</td><td class="num">${b.count}</td></tr>`).join('');
  const title = `${FEATURE_NAMES[d.feature] ?? d.feature} · ${d.label}`;
  return `<section class="dist"><h3>${esc(title)}</h3>`
    + `<p class="muted">level ${esc(d.level)} · key <code>${esc(d.key)}</code> · ${total} peer values · median ${esc(formatValue(d.median))}</p>`
    + `<div class="chart" style="height:300px"><canvas id="dist-${i}" role="img" aria-label="${esc(`Histogram of ${title}`)}"></canvas></div>`
    + (marks ? `<ul>${marks}</ul>` : '<p class="muted">No declarations marked.</p>')
    + `<details><summary>bins</summary><table class="bins"><thead><tr><th class="num">from</th><th class="num">to</th><th class="num">count</th></tr></thead><tbody>${bins}</tbody></table></details>`
    + '</section>';
}

function header(report: StudyReport): string {
  const s = report.settings;
  const p = report.peers;
  const item = (k: string, v: string) => `<dt>${esc(k)}</dt><dd>${v}</dd>`;
  return '<h1>Deviation study</h1><dl class="meta">'
    + item('source', esc(report.source))
    + item('peers', `snapshot <code>${esc(p.version)}</code> of ${esc(p.createdAt)} · ${groupThousands(p.rows)} rows · levels ${p.levels.map((l) => `<code>${esc(l)}</code>`).join(', ')}`)
    + item('settings', `top ${s.top} · rank by <code>${esc(s.rankBy)}</code> · direction ${esc(s.direction)} · |z| &gt; ${esc(String(s.zThreshold))} · min group size ${s.minGroupSize} · MAD floor ${esc(String(s.madFloor))}`)
    + item('declarations', `${groupThousands(report.rows)} rows · ${groupThousands(report.scored)} scored · ${groupThousands(report.invalid)} invalid · ${groupThousands(report.outliers)} outliers`)
    + item('time', `${report.seconds.toFixed(2)} s`)
    + item('generated', esc(report.generatedAt))
    + '</dl>';
}

/** One self-contained HTML page of the report: tables, and Chart.js charts built from an embedded JSON block. */
export function renderStudyHtml(report: StudyReport): string {
  const library = chartJsSource();
  const shownGroups = Math.min(report.groups.length, MAX_CHART_GROUPS);
  const data = jsonForScript({ report, view: chartView(report) });
  const thr = esc(String(report.settings.zThreshold));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`Deviation study · ${report.source}`)}</title>
<style>${CSS}</style>
</head>
<body>
${header(report)}
<h2>Top declarations</h2>
<p class="muted">z beyond ±${thr}: <span class="swatch" style="background:${COLOUR_UNDER}"></span>below the peers, <span class="swatch" style="background:${COLOUR_OVER}"></span>above the peers. Values in natural units; hover a value for its group's typical range.</p>
${topTable(report)}
<h2>Most deviating groups</h2>
${shownGroups ? `<p class="muted">Share of studied declarations beyond the threshold, first ${shownGroups} of ${report.groups.length} groups.</p>
<div class="chart" style="height:${60 + 26 * shownGroups}px"><canvas id="groups-chart" role="img" aria-label="Outlier share by group"></canvas></div>` : '<p class="muted">No groups.</p>'}
<h2>Distributions</h2>
${report.distributions.length ? report.distributions.map(distributionSection).join('\n') : '<p class="muted">No distributions.</p>'}
<h2>Groups</h2>
${groupsTable(report)}
<script type="application/json" id="study-data">${data}</script>
<script>${scriptSafe(library)}</script>
<script>${CLIENT}</script>
</body>
</html>
`;
}
