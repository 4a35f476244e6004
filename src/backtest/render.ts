/**
 * The back-test report as one self-contained HTML page (Chart.js inlined):
 * channel shares, precision and revenue captured against the inspection
 * rate, the months, channel changes with examples, profiles (never / too
 * much flagged) and the capacity view. Text for the terminal too.
 */
import { CHANNELS } from '../model/channels.js';
import { chartJsSource, CSS, esc, jsonForScript, scriptSafe } from '../study/render.js';
import type { BacktestReport, ProfileLine, SetReport } from './backtest.js';

const pct = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? '—' : `${(100 * x).toFixed(d)} %`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const money = (n: number) => Math.round(n).toLocaleString('en-US');
const COLOURS: Record<string, string> = { green: '#2e7d32', blue: '#1565c0', yellow: '#f9a825', orange: '#ef6c00', red: '#c62828' };

/** How the top-of-ranking figures are counted (an exact ranking, as evaluate's, can differ in the last digit). */
const BINNED = 'approximate: scores counted in bins of 1/64, a bin at the cut pro rata';

/** The report as text (selectivity backtest without --json). */
export function formatBacktest(r: BacktestReport): string {
  const [a, b] = r.sets;
  const lines: string[] = [];
  lines.push(`history ${r.store.from} … ${r.store.to}: ${int(r.store.declarations)} declarations, ${int(r.store.withResult)} with a known result (${int(r.store.nonCompliant)} non-compliant); ${r.seconds.toFixed(1)} s, ${int(r.declarationsPerSecond)} declarations/s on ${r.threads || 1} thread(s)`);
  lines.push(`${a.name}: ruleset ${a.rulesetVersion}, ${a.profiles} profiles · ${b.name}: ruleset ${b.rulesetVersion}, ${b.profiles} profiles`);
  lines.push('');
  lines.push(`  channel   ${a.name.padStart(22)} ${b.name.padStart(22)}   hit rate (${a.name} / ${b.name})`);
  for (let c = 0; c < CHANNELS.length; c++) {
    const x = a.channels[c], y = b.channels[c];
    lines.push(`  ${x.channel.padEnd(8)}  ${`${int(x.declarations)} (${pct(x.share)})`.padStart(22)} ${`${int(y.declarations)} (${pct(y.share)})`.padStart(22)}   ${pct(x.hitRate)} / ${pct(y.hitRate)}`);
  }
  lines.push(`  controlled ${`${pct(a.controlled.share)}`.padStart(21)} ${pct(b.controlled.share).padStart(22)}   precision ${pct(a.controlled.precision)} / ${pct(b.controlled.precision)}, revenue captured ${pct(a.controlled.revenueCaptured)} / ${pct(b.controlled.revenueCaptured)}`);
  if (a.controlGroup.declarations > 0 || b.controlGroup.declarations > 0) {
    const share = (s: typeof a) => (r.store.declarations > 0 ? s.controlGroup.declarations / r.store.declarations : 0);
    lines.push(`  control group ${`${int(a.controlGroup.declarations)} (${pct(share(a))})`.padStart(18)} ${`${int(b.controlGroup.declarations)} (${pct(share(b))})`.padStart(22)}   non-compliant ${pct(a.controlGroup.rate)} / ${pct(b.controlGroup.rate)} (random draw from green: not in the channels above)`);
  }
  lines.push('');
  lines.push(`  top of the score ranking   ${a.name} precision · revenue      ${b.name} precision · revenue   (${BINNED})`);
  for (let i = 0; i < a.atRates.length; i++) {
    const x = a.atRates[i], y = b.atRates[i];
    lines.push(`  ${pct(x.rate, 2).padStart(8)}                  ${pct(x.precision).padStart(8)} · ${pct(x.revenueCaptured).padEnd(8)}        ${pct(y.precision).padStart(8)} · ${pct(y.revenueCaptured)}`);
  }
  lines.push('');
  lines.push(`channel changes: ${int(r.changes.changed)} declarations (${pct(r.changes.share)})`);
  for (const m of r.changes.matrix.filter((x) => x.from !== x.to).sort((p, q) => q.declarations - p.declarations).slice(0, 10)) {
    lines.push(`  ${m.from} → ${m.to}: ${int(m.declarations)}${m.examples.length ? `  e.g. ${m.examples.slice(0, 3).map((e) => e.id).join(', ')}` : ''}`);
  }
  for (const [s, list] of r.profiles.entries()) {
    const never = list.filter((p) => p.flag === 'never'), much = list.filter((p) => p.flag === 'too-much');
    lines.push(`${r.sets[s].name} profiles: ${never.length} never match${never.length ? ` (${never.slice(0, 8).map((p) => p.id).join(', ')}${never.length > 8 ? ', …' : ''})` : ''}; ${much.length} match more than ${pct(r.tooMuch, 0)}${much.length ? ` (${much.slice(0, 8).map((p) => p.id).join(', ')})` : ''}`);
  }
  if (a.capacity && b.capacity && r.capacitySpec) {
    lines.push('');
    lines.push(`capacity view (${capacityText(r)}), filled from the top of each ranking:`);
    for (const s of r.sets) {
      const c = s.capacity!;
      lines.push(`  ${s.name}: ${int(c.filled)} inspected (${pct(c.share)}), hit rate ${pct(c.hitRate)}, revenue ${money(c.revenueFilled)}; the set's own orange/red: ${int(c.setPhysical)}, ${int(c.overflow)} beyond capacity on ${int(c.overflowGroups)} office-days`);
    }
  }
  return lines.join('\n');
}

function capacityText(r: BacktestReport): string {
  const c = r.capacitySpec!;
  const by = Object.entries(c.byOffice ?? {}).map(([o, n]) => `${o} ${n}`);
  return `${by.length ? `${by.join(', ')}, others ` : ''}${c.perOfficeDay} per office per day`;
}

function channelTable(r: BacktestReport): string {
  const [a, b] = r.sets;
  const rows = CHANNELS.map((_, c) => {
    const x = a.channels[c], y = b.channels[c];
    return `<tr><td><span class="swatch" style="background:${COLOURS[x.channel]}"></span>${x.channel}</td>
<td class="num first">${int(x.declarations)}</td><td class="num">${pct(x.share)}</td><td class="num">${int(x.withResult)}</td><td class="num">${pct(x.hitRate)}</td><td class="num">${money(x.revenue)}</td>
<td class="num first">${int(y.declarations)}</td><td class="num">${pct(y.share)}</td><td class="num">${int(y.withResult)}</td><td class="num">${pct(y.hitRate)}</td><td class="num">${money(y.revenue)}</td></tr>`;
  }).join('\n');
  const ctl = (s: SetReport) => `<td class="num first">${int(s.controlled.declarations)}</td><td class="num">${pct(s.controlled.share)}</td><td class="num">${int(s.controlled.withResult)}</td><td class="num">${pct(s.controlled.precision)}</td><td class="num">${money(s.controlled.revenue)} (${pct(s.controlled.revenueCaptured)})</td>`;
  return `<div class="scroll"><table><thead><tr><th></th><th class="group" colspan="5">${esc(a.name)}</th><th class="group" colspan="5">${esc(b.name)}</th></tr>
<tr><th>channel</th>${'<th class="num">declarations</th><th class="num">share</th><th class="num">with result</th><th class="num">hit rate</th><th class="num">revenue found</th>'.repeat(2)}</tr></thead>
<tbody>${rows}
<tr><td><b>not green</b></td>${ctl(a)}${ctl(b)}</tr>
<tr><td class="muted">control group</td><td class="num first">${int(a.controlGroup.declarations)}</td><td></td><td class="num">${int(a.controlGroup.withResult)}</td><td class="num">${pct(a.controlGroup.rate)}</td><td></td><td class="num first">${int(b.controlGroup.declarations)}</td><td></td><td class="num">${int(b.controlGroup.withResult)}</td><td class="num">${pct(b.controlGroup.rate)}</td><td></td></tr>
</tbody></table></div>`;
}

function ratesTable(r: BacktestReport): string {
  const [a, b] = r.sets;
  return `<p class="muted">${esc(BINNED)}</p><div class="scroll"><table><thead><tr><th class="num">top of ranking</th><th class="group" colspan="3">${esc(a.name)}</th><th class="group" colspan="3">${esc(b.name)}</th></tr>
<tr><th></th>${'<th class="num">precision</th><th class="num">recall</th><th class="num">revenue captured</th>'.repeat(2)}</tr></thead><tbody>
${a.atRates.map((x, i) => { const y = b.atRates[i]; return `<tr><td class="num">${pct(x.rate, 2)}${x.rate === a.controlled.share ? ` (${esc(a.name)}'s rate)` : ''}${x.rate === b.controlled.share ? ` (${esc(b.name)}'s rate)` : ''}</td><td class="num first">${pct(x.precision)}</td><td class="num">${pct(x.recall)}</td><td class="num">${pct(x.revenueCaptured)}</td><td class="num first">${pct(y.precision)}</td><td class="num">${pct(y.recall)}</td><td class="num">${pct(y.revenueCaptured)}</td></tr>`; }).join('\n')}
</tbody></table></div>`;
}

function changesTable(r: BacktestReport): string {
  const changed = r.changes.matrix.filter((m) => m.from !== m.to).sort((p, q) => q.declarations - p.declarations);
  if (!changed.length) return '<p class="muted">No declaration changes channel.</p>';
  return `<div class="scroll"><table><thead><tr><th>${esc(r.sets[1].name)} → ${esc(r.sets[0].name)}</th><th class="num">declarations</th><th>examples (id · date · office · HS · score ${esc(r.sets[1].name)} → ${esc(r.sets[0].name)} · result)</th></tr></thead><tbody>
${changed.map((m) => `<tr><td><span class="swatch" style="background:${COLOURS[m.from]}"></span>${m.from} → <span class="swatch" style="background:${COLOURS[m.to]}"></span>${m.to}</td><td class="num">${int(m.declarations)}</td><td class="id">${m.examples.map((e) => `<code>${esc(e.id)}</code> · ${e.date} · ${esc(e.office)} · ${esc(e.hs)} · ${e.baselineScore.toFixed(2)} → ${e.candidateScore.toFixed(2)} · ${e.result < 0 ? 'unknown' : e.result ? 'non-compliant' : 'compliant'}`).join('<br>')}</td></tr>`).join('\n')}
</tbody></table></div>`;
}

function profilesTable(list: ProfileLine[], months: string[], tooMuch: number): string {
  if (!list.length) return '<p class="muted">No profiles.</p>';
  const sorted = [...list].sort((p, q) => q.matches - p.matches || p.index - q.index);
  return `<div class="scroll"><table><thead><tr><th>profile</th><th class="num">matches</th><th class="num">share</th><th class="num">with result</th><th class="num">hit rate</th><th class="num">lift</th><th class="num">revenue found</th><th>flag</th><th>matches by month (${esc(months[0] ?? '')} … ${esc(months[months.length - 1] ?? '')})</th></tr></thead><tbody>
${sorted.map((p) => `<tr><td><code>${esc(p.id)}</code></td><td class="num">${int(p.matches)}</td><td class="num">${pct(p.share, 2)}</td><td class="num">${int(p.withResult)}</td><td class="num">${pct(p.hitRate)}</td><td class="num">${p.lift === null ? '—' : p.lift.toFixed(2)}</td><td class="num">${money(p.revenue)}</td><td>${p.flag === 'never' ? '<b>never matches</b>' : p.flag === 'too-much' ? `<b>matches more than ${pct(tooMuch, 0)}</b>` : ''}</td><td>${sparkline(p.monthly.matches)}</td></tr>`).join('\n')}
</tbody></table></div>`;
}

/** A tiny inline SVG of a monthly series. */
function sparkline(xs: number[]): string {
  if (xs.length === 0) return '';
  const w = 120, h = 18, max = Math.max(1, ...xs);
  const step = xs.length > 1 ? w / (xs.length - 1) : 0;
  const pts = xs.map((x, i) => `${(i * step).toFixed(1)},${(h - 1 - (x / max) * (h - 2)).toFixed(1)}`).join(' ');
  return `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" aria-hidden="true"><polyline fill="none" stroke="#1565c0" stroke-width="1.2" points="${pts}"/></svg>`;
}

function capacityTable(r: BacktestReport): string {
  const [a, b] = r.sets;
  if (!a.capacity || !b.capacity) return '<p class="muted">No capacity given (--capacity).</p>';
  const row = (s: SetReport) => {
    const c = s.capacity!;
    return `<tr><td>${esc(s.name)}</td><td class="num">${int(c.groups)}</td><td class="num">${int(c.capacity)}</td><td class="num">${int(c.filled)} (${pct(c.share)})</td><td class="num">${int(c.nonCompliantFilled)} of ${int(c.knownAmongFilled)} (${pct(c.hitRate)})</td><td class="num">${money(c.revenueFilled)}</td><td class="num">${int(c.setPhysical)} (${int(c.setPhysicalNonCompliant)} non-compliant)</td><td class="num">${int(c.overflow)} on ${int(c.overflowGroups)} office-days</td><td class="num">${int(c.idle)}</td></tr>`;
  };
  return `<p class="muted">${esc(capacityText(r))}. Each office-day's capacity is filled from the top of the set's score ranking; this view never changes a score or a channel.</p>
<div class="scroll"><table><thead><tr><th>set</th><th class="num">office-days</th><th class="num">capacity</th><th class="num">inspected</th><th class="num">non-compliant found (of known)</th><th class="num">revenue found</th><th class="num">set's own orange + red</th><th class="num">beyond capacity</th><th class="num">capacity left idle by the set</th></tr></thead>
<tbody>${row(a)}${row(b)}</tbody></table></div>`;
}

export function renderBacktestHtml(r: BacktestReport): string {
  const [a, b] = r.sets;
  const view = {
    channels: CHANNELS,
    colours: CHANNELS.map((c) => COLOURS[c]),
    names: [a.name, b.name],
    shares: [a.channels.map((c) => c.share * 100), b.channels.map((c) => c.share * 100)],
    curve: [a.curve, b.curve].map((c) => c.map((x) => ({ rate: x.rate * 100, precision: x.precision === null ? null : x.precision * 100, revenue: x.revenueCaptured === null ? null : x.revenueCaptured * 100 }))),
    own: [a.controlled.share * 100, b.controlled.share * 100],
    months: r.months,
    monthly: [a.monthly, b.monthly].map((m) => m.map((x) => ({ share: x.controlledShare * 100, hit: x.hitRate === null ? null : x.hitRate * 100 }))),
  };
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`Back-test · ${a.name} vs ${b.name} · ${r.store.from} … ${r.store.to}`)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Back-test: ${esc(a.name)} against ${esc(b.name)}</h1>
<dl class="meta">
<dt>history</dt><dd>${r.store.from} … ${r.store.to}: ${int(r.store.declarations)} declarations, ${int(r.store.withResult)} with a known result, ${int(r.store.nonCompliant)} non-compliant (revenue ${money(r.store.revenue)})</dd>
<dt>${esc(a.name)}</dt><dd>ruleset ${esc(a.rulesetVersion)}, ${a.profiles} profiles</dd>
<dt>${esc(b.name)}</dt><dd>ruleset ${esc(b.rulesetVersion)}, ${b.profiles} profiles</dd>
<dt>run</dt><dd>${esc(r.ranAt)}, ${r.seconds.toFixed(1)} s, ${int(r.declarationsPerSecond)} declarations/s</dd>
</dl>
<h2>Channels</h2>
<div class="chart" style="height:260px"><canvas id="channels-chart" role="img" aria-label="Channel shares of both sets"></canvas></div>
${channelTable(r)}
<h2>Precision and revenue captured against the inspection rate</h2>
<p class="muted">Declarations ranked by score; precision among those with a known result; revenue captured out of the revenue of all non-compliant declarations. The table marks each set's own rate (its share of every channel but green).</p>
<div class="chart" style="height:300px"><canvas id="rate-chart" role="img" aria-label="Precision and revenue captured by inspection rate"></canvas></div>
${ratesTable(r)}
<h2>Months</h2>
<div class="chart" style="height:260px"><canvas id="month-chart" role="img" aria-label="Controlled share and hit rate by month"></canvas></div>
<h2>Channel changes</h2>
<p class="muted">${int(r.changes.changed)} declarations (${pct(r.changes.share)}) change channel.</p>
${changesTable(r)}
<h2>Profiles: ${esc(a.name)}</h2>
${profilesTable(r.profiles[0], r.months, r.tooMuch)}
<h2>Profiles: ${esc(b.name)}</h2>
${profilesTable(r.profiles[1], r.months, r.tooMuch)}
<h2>Capacity view</h2>
${capacityTable(r)}
<script type="application/json" id="backtest-data">${jsonForScript(view)}</script>
<script>${scriptSafe(chartJsSource())}</script>
<script>${CLIENT}</script>
</body>
</html>
`;
}

const CLIENT = `
(function () {
  'use strict';
  var v = JSON.parse(document.getElementById('backtest-data').textContent);
  if (typeof Chart === 'undefined') return;
  var dash = [[], [6, 4]];
  new Chart(document.getElementById('channels-chart'), {
    type: 'bar',
    data: { labels: v.channels, datasets: v.names.map(function (n, s) { return { label: n, data: v.shares[s], backgroundColor: v.colours.map(function (c) { return s ? c + '88' : c; }) }; }) },
    options: { maintainAspectRatio: false, scales: { y: { title: { display: true, text: '% of declarations' } } } }
  });
  var ds = [];
  v.names.forEach(function (n, s) {
    ds.push({ label: n + ' precision', data: v.curve[s].map(function (x) { return { x: x.rate, y: x.precision }; }), borderColor: s ? '#ef6c00' : '#1565c0', borderDash: [], pointRadius: 0, spanGaps: true });
    ds.push({ label: n + ' revenue captured', data: v.curve[s].map(function (x) { return { x: x.rate, y: x.revenue }; }), borderColor: s ? '#ffb74d' : '#64b5f6', borderDash: [4, 3], pointRadius: 0, spanGaps: true });
  });
  new Chart(document.getElementById('rate-chart'), {
    type: 'line', data: { datasets: ds },
    options: { maintainAspectRatio: false, parsing: false, scales: { x: { type: 'linear', title: { display: true, text: 'inspection rate (% of declarations, top of the ranking)' } }, y: { min: 0, max: 100, title: { display: true, text: '%' } } },
      plugins: { tooltip: { callbacks: { title: function (items) { return items.length ? items[0].parsed.x.toFixed(1) + ' %' : ''; } } } } }
  });
  var md = [];
  v.names.forEach(function (n, s) {
    md.push({ label: n + ' not green (%)', data: v.monthly[s].map(function (x) { return x.share; }), borderColor: s ? '#ef6c00' : '#1565c0', borderDash: dash[0], yAxisID: 'y' });
    md.push({ label: n + ' hit rate (%)', data: v.monthly[s].map(function (x) { return x.hit; }), borderColor: s ? '#ffb74d' : '#64b5f6', borderDash: dash[1], yAxisID: 'y', spanGaps: true });
  });
  new Chart(document.getElementById('month-chart'), { type: 'line', data: { labels: v.months, datasets: md }, options: { maintainAspectRatio: false, scales: { y: { min: 0, title: { display: true, text: '%' } } } } });
})();
`;
