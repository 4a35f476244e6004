import { describe, expect, it } from 'vitest';
import { parseCsv } from '../src/model/csv.js';
import { FEATURES } from '../src/peers/peer-groups.js';
import type { StudyFeature, StudyGroup, StudyReport } from '../src/study/report.js';
import { formatValue, renderStudyHtml, studyGroupsCsv, studyTopCsv } from '../src/study/render.js';

const HOSTILE = '<script>&"x';

function feature(f: StudyFeature['feature'], value: number | null, z: number | null, level: string | null = 'hs6,origin', key: string | null = '845210|CN'): StudyFeature {
  const has = value !== null && level !== null;
  return {
    feature: f,
    value,
    z: has ? z : null,
    peerLevel: has ? level : null,
    peerKey: has ? key : null,
    peerCount: has ? 1234 : null,
    median: has ? 17.250049 : null,
    spread: has ? 0.4123456789 : null,
    typicalLow: has ? 4.1 : null,
    typicalHigh: has ? 72.5 : null,
  };
}

function group(over: Partial<StudyGroup>): StudyGroup {
  return {
    level: 'hs6,origin', key: '845210|CN', label: 'hs6 845210 · origin CN', feature: 'unitValue',
    size: 1234, median: 17.25, spread: 0.41, mean: 18.123456789, std: 0.52, min: 0.0012, max: 987654.321,
    studied: 40, outliers: 6, under: 4, over: 2, outlierShare: 0.15,
    ...over,
  };
}

const report: StudyReport = {
  generatedAt: '2025-03-01T10:00:00.000Z',
  source: 'data/imports, 2024 "Q4".csv',
  peers: { version: 'snap-7', createdAt: '2025-02-28T00:00:00.000Z', levels: ['hs6,origin', 'hs6', 'hs4'], rows: 250000 },
  settings: { top: 3, rankBy: 'maxAbsZ', direction: 'both', zThreshold: 3, minGroupSize: 30, madFloor: 0.05 },
  rows: 1000, scored: 990, invalid: 10, outliers: 37, seconds: 1.234,
  top: [
    {
      rank: 1, id: HOSTILE, date: '2024-11-02', hs: '8452100000', origin: 'CN', importer: 'IMP, "North"',
      customsValue: 1234567.89, netMass: 0.125, quantity: 3, deviation: 5.123456789, score: 87.5,
      features: [feature('unitValue', 0.000123456789, -5.123456789), feature('netMass', 0.125, 0.3), feature('valuePerItem', 411522.63, 3.51)],
    },
    {
      rank: 2, id: 'DECL,"2"', date: '2024-11-03', hs: '8452100000', origin: 'CN', importer: 'IMP2',
      customsValue: 500, netMass: 2000, quantity: null, deviation: 4.2, score: 40,
      features: [feature('unitValue', 0.25, -4.2), feature('netMass', 2000, 2.9), feature('valuePerItem', null, null)],
    },
    {
      rank: 3, id: 'D3', date: '2024-11-04', hs: '0901210000', origin: 'VN', importer: 'IMP3',
      customsValue: 10, netMass: 1, quantity: null, deviation: 3.1, score: 12,
      features: [feature('unitValue', 10, 3.1, 'hs4', '0901'), feature('netMass', 1, null, null, null), feature('valuePerItem', null, null)],
    },
  ],
  groups: [
    group({}),
    group({ level: 'hs4', key: '0901', label: 'hs4 0901 <b>&"', studied: 3, outliers: 1, under: 0, over: 1, outlierShare: 1 / 3, median: null, spread: null, mean: null, std: null, min: null, max: null }),
  ],
  distributions: [
    {
      level: 'hs6,origin', key: '845210|CN', label: 'hs6 845210 · origin CN', feature: 'unitValue',
      bins: [
        { lo: 0.001, hi: 0.01, count: 2 },
        { lo: 0.01, hi: 0.1, count: 10 },
        { lo: 0.1, hi: 1, count: 50 },
        { lo: 1, hi: 10, count: 400 },
        { lo: 10, hi: 100, count: 700 },
        { lo: 100, hi: 1000, count: 72 },
      ],
      median: 17.25,
      marked: [
        { id: HOSTILE, value: 0.000123456789, z: -5.123456789, rank: 1 },
        { id: 'DECL,"2"', value: 0.25, z: -4.2, rank: 2 },
      ],
    },
  ],
};

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b)));

describe('studyTopCsv', () => {
  const text = studyTopCsv(report);
  const { rows } = parseCsv(text, { skipEmptyLines: false });
  const [header, ...body] = rows;
  const col = (name: string) => {
    const i = header.indexOf(name);
    expect(i, name).toBeGreaterThanOrEqual(0);
    return body.map((r) => r[i]);
  };

  it('has the documented header, one row per declaration, LF line ends', () => {
    expect(header).toEqual([
      'rank', 'id', 'date', 'hs', 'origin', 'importer', 'customs_value', 'net_mass', 'quantity', 'deviation', 'score',
      ...FEATURES.flatMap((f) => [f, `${f}_z`, `${f}_peer_level`, `${f}_peer_key`, `${f}_peer_count`, `${f}_median`, `${f}_spread`]),
    ]);
    expect(body).toHaveLength(report.top.length);
    for (const r of body) expect(r).toHaveLength(header.length);
    expect(text.endsWith('\n')).toBe(true);
    expect(text).not.toContain('\r');
    expect(text.split('\n')).toHaveLength(report.top.length + 2);
  });

  it('quotes commas and quotes, and the strings round-trip', () => {
    expect(col('id')).toEqual(report.top.map((d) => d.id));
    expect(col('importer')).toEqual(report.top.map((d) => d.importer));
    expect(text).toContain('"DECL,""2"""');
    expect(text).toContain('"IMP, ""North"""');
  });

  it('writes null as an empty cell, never "null" or "NaN"', () => {
    expect(col('quantity')).toEqual(['3', '', '']);
    expect(col('valuePerItem')).toEqual(['411523', '', '']);
    expect(col('valuePerItem_peer_level')).toEqual(['hs6,origin', '', '']);
    expect(col('netMass_z')[2]).toBe('');
    expect(col('netMass_peer_key')[2]).toBe('');
    expect(text).not.toMatch(/null|NaN|undefined/);
  });

  it('writes numbers that read back closely (declaration values exactly)', () => {
    expect(col('customs_value').map(Number)).toEqual(report.top.map((d) => d.customsValue));
    expect(col('net_mass').map(Number)).toEqual(report.top.map((d) => d.netMass));
    expect(col('rank').map(Number)).toEqual([1, 2, 3]);
    col('deviation').forEach((v, i) => close(Number(v), report.top[i].deviation));
    col('unitValue').forEach((v, i) => close(Number(v), report.top[i].features[0].value!));
    col('unitValue_z').forEach((v, i) => close(Number(v), report.top[i].features[0].z!));
    col('unitValue_spread').forEach((v, i) => close(Number(v), report.top[i].features[0].spread!));
    expect(col('unitValue_peer_count')).toEqual(['1234', '1234', '1234']);
    for (const v of col('unitValue_median')) expect(v.replace(/[^0-9]/g, '').length).toBeLessThanOrEqual(6);
  });
});

describe('studyGroupsCsv', () => {
  const { rows } = parseCsv(studyGroupsCsv(report), { skipEmptyLines: false });
  const [header, ...body] = rows;

  it('has one snake_case column per StudyGroup field and one row per group', () => {
    expect(header).toEqual(Object.keys(report.groups[0]).map(snake));
    expect(body).toHaveLength(report.groups.length);
    for (const r of body) expect(r).toHaveLength(header.length);
  });

  it('round-trips values; null is empty', () => {
    body.forEach((r, i) => {
      const g = report.groups[i] as unknown as Record<string, unknown>;
      Object.keys(g).forEach((k, j) => {
        const v = g[k];
        if (v === null) expect(r[j], k).toBe('');
        else if (typeof v === 'number') close(Number(r[j]), v);
        else expect(r[j], k).toBe(v);
      });
    });
  });
});

describe('formatValue', () => {
  it('reads well from 1e-7 to 1e15', () => {
    expect(formatValue(null)).toBe('–');
    expect(formatValue(0)).toBe('0');
    expect(formatValue(0.000123456)).toBe('0.0001235');
    expect(formatValue(0.5)).toBe('0.5');
    expect(formatValue(12.3456)).toBe('12.35');
    expect(formatValue(999.96)).toBe('1,000');
    expect(formatValue(1234567.89)).toBe('1,234,568');
    expect(formatValue(-2500)).toBe('-2,500');
    expect(formatValue(1e9)).toBe('1,000,000,000');
    expect(formatValue(1.5e-8)).toBe('1.5e-8');
  });
});

describe('renderStudyHtml', () => {
  const html = renderStudyHtml(report);
  const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)].map((m) => ({ attrs: m[1], text: m[2] }));
  const library = scripts.find((s) => s.text.includes('Chart.js v4'));
  const withoutLibrary = library ? html.replace(library.text, '') : html;
  const body = withoutLibrary.slice(withoutLibrary.indexOf('<body>'));

  it('inlines Chart.js and needs no network', () => {
    expect(library).toBeDefined();
    expect(library!.text).toContain('Released under the MIT License');
    expect(library!.text.length).toBeGreaterThan(100_000);
    expect(html).not.toMatch(/src\s*=\s*["']?https?:/i);
    expect(html).not.toMatch(/href\s*=\s*["']?https?:/i);
    expect(html).not.toContain('<link');
    expect(html).not.toMatch(/<script[^>]*\ssrc=/i);
    expect(html).not.toMatch(/@import|url\(/);
  });

  it('has exactly the three script blocks it opens (no early </script>)', () => {
    expect(scripts.map((s) => s.attrs.trim())).toEqual(['type="application/json" id="study-data"', '', '']);
    expect(html.match(/<\/script/gi)).toHaveLength(3);
  });

  it('embeds the report as JSON that parses back', () => {
    const json = scripts.find((s) => s.attrs.includes('application/json'))!.text;
    expect(json).not.toContain('<');
    const data = JSON.parse(json) as { report: StudyReport; view: { distributions: unknown[] } };
    expect(data.report).toEqual(report);
    expect(data.report.top.map((d) => d.id)).toEqual(report.top.map((d) => d.id));
    expect(data.view.distributions).toHaveLength(report.distributions.length);
  });

  it('escapes report text everywhere outside the library', () => {
    expect(withoutLibrary).not.toContain(HOSTILE);
    expect(withoutLibrary).not.toContain('<b>&"');
    expect(withoutLibrary).not.toContain('<script>&');
    expect(body).toContain('&lt;script&gt;&amp;&quot;x');
    expect(body).toContain('hs4 0901 &lt;b&gt;&amp;&quot;');
    expect(html).toContain('<title>Deviation study · data/imports, 2024 &quot;Q4&quot;.csv</title>');
  });

  it('lists every top declaration and highlights z beyond the threshold', () => {
    const table = body.slice(body.indexOf('<table id="top-table"'), body.indexOf('</table>', body.indexOf('<table id="top-table"')));
    const rows = table.split('<tr>').filter((r) => r.includes('<td'));
    expect(rows).toHaveLength(report.top.length);
    report.top.forEach((d, i) => {
      const escaped = d.id.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
      expect(rows[i]).toContain(`<td class="id">${escaped}</td>`);
    });
    expect(rows[0]).toMatch(/<td class="num under">-5\.12<\/td>/);
    expect(rows[0]).toMatch(/<td class="num over">\+3\.51<\/td>/);
    expect(rows[1]).not.toMatch(/class="num over">\+2\.90/);
    expect(rows[1]).toContain('+2.90');
    expect(rows[2]).toContain('no group');
  });

  it('draws one canvas per distribution and one for the groups', () => {
    expect(html.match(/<canvas id="dist-\d+"/g)).toHaveLength(report.distributions.length);
    expect(html).toContain('<canvas id="groups-chart"');
    expect(body).toContain('#1 <code>&lt;script&gt;&amp;&quot;x</code>');
    expect(html.match(/<table id="groups-table"[\s\S]*?<\/table>/)![0].match(/<tr><td>/g)).toHaveLength(report.groups.length);
  });

  it('builds the charts from the JSON block (client script run against a stub DOM)', () => {
    const json = scripts.find((s) => s.attrs.includes('application/json'))!.text;
    const client = scripts[2].text;
    const made: { canvas: string; config: any }[] = [];
    function Chart(this: unknown, canvas: { id: string }, config: unknown) {
      made.push({ canvas: canvas.id, config });
    }
    (Chart as any).defaults = { font: { family: '' }, animation: true };
    const document = { getElementById: (id: string) => (id === 'study-data' ? { textContent: json } : { id }) };
    const run = new Function('document', 'Chart', 'getComputedStyle', client);
    run(document, Chart, () => ({ fontFamily: 'system-ui' }));

    expect(made.map((m) => m.canvas)).toEqual(['groups-chart', ...report.distributions.map((_, i) => `dist-${i}`)]);
    const groups = made[0].config;
    expect(groups.data.labels).toEqual(report.groups.map((g) => g.label));
    expect(groups.data.datasets[0].data).toEqual([15, 33.3]);
    expect(groups.options.plugins.tooltip.callbacks.afterLabel({ dataIndex: 1 })).toContain('studied 3');

    const dist = made[1].config;
    const d = report.distributions[0];
    expect(dist.data.labels).toHaveLength(d.bins.length);
    expect(dist.data.labels[0]).toBe('0.001–0.01');
    expect(dist.data.datasets[0].data).toEqual(d.bins.map((b) => b.count));
    const colours: string[] = dist.data.datasets[0].backgroundColor;
    expect(new Set(colours).size).toBe(2); // the bins holding marked values stand out
    expect(colours[0]).toBe(colours[2]);
    expect(colours[0]).not.toBe(colours[1]);

    // The marker plugin draws the median and each marked value as vertical lines at the right place.
    const lines: number[] = [];
    const texts: string[] = [];
    const ctx = {
      save() {}, restore() {}, beginPath() {}, stroke() {}, setLineDash() {}, lineTo() {},
      moveTo(x: number) { lines.push(x); },
      fillText(t: string) { texts.push(t); },
    };
    const chart = { scales: { x: { left: 0, width: 600 } }, chartArea: { top: 40, bottom: 300 }, ctx };
    dist.plugins[0].afterDatasetsDraw(chart);
    expect(texts).toEqual(['median', '#1', '#2']);
    close(lines[0], 100 * (3 + Math.log10(17.25))); // 100 px per decade, 10..100 is the fifth bin
    expect(lines[1]).toBe(0); // below the first bin: clamped to the left edge
    close(lines[2], 100 * (2 + Math.log10(2.5)));
  });
});
