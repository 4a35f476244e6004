/**
 * The history store: Arrow segments written and read back row for row,
 * appends that never rewrite, all-or-nothing imports, one writer at a time,
 * and damaged stores reported by name.
 */
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC, DataType } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { rowOf, toBatch } from '../src/model/columnar.js';
import { parseIsoDate, type Declaration } from '../src/model/schema.js';
import { HistoryWriter, openSegment, readManifest, remapScratch, SegmentReadAhead, segmentsIn, toKernelBatch, RESULT_UNKNOWN } from '../src/history/store.js';
import { importHistory } from '../src/history/import.js';
import { datedDeclarations } from './helpers.js';
import { packageRoot } from '../src/paths.js';
import type { ProcessLock } from '../src/store/process-lock.js';

const root = mkdtempSync(join(tmpdir(), 'sel-history-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function labelsOf(n: number, seed: number): { result: Int8Array; revenue: Float64Array } {
  const result = new Int8Array(n), revenue = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = (i * 2654435761 + seed) % 7;
    result[i] = r === 0 ? 1 : r === 1 ? RESULT_UNKNOWN : 0;
    revenue[i] = result[i] === RESULT_UNKNOWN ? NaN : i * 1.5;
  }
  return { result, revenue };
}

/** Every row of a store, in order, as declarations with their result and revenue. */
function readAll(dir: string): { d: Declaration; result: number; revenue: number }[] {
  const out: { d: Declaration; result: number; revenue: number }[] = [];
  for (const s of segmentsIn(dir, readManifest(dir))) {
    const seg = openSegment(s.path);
    const scratch = remapScratch(seg);
    for (const rb of seg.table.batches) {
      const b = toKernelBatch(rb, seg, scratch);
      const ids = rb.getChild('id')!;
      const res = rb.getChild('result')!.data[0].values as Int8Array;
      const rev = rb.getChild('revenue')!.data[0].values as Float64Array;
      for (let i = 0; i < b.size; i++) out.push({ d: rowOf(b, i, String(ids.get(i))), result: res[i], revenue: rev[i] });
    }
  }
  return out;
}

const hash = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('history store', () => {
  it('gives back every declaration, result and revenue it was given, across segments and batches', () => {
    const dir = join(root, 'roundtrip');
    const decls = datedDeclarations(2500, 3);
    const { result, revenue } = labelsOf(decls.length, 3);
    const w = new HistoryWriter(dir, { segmentRows: 1000, batchRows: 300 });
    for (let at = 0; at < decls.length; at += 700) {
      const part = decls.slice(at, at + 700);
      const { batch, ids } = toBatch(part);
      w.add(batch, ids, result.subarray(at, at + part.length), revenue.subarray(at, at + part.length));
    }
    const c = w.commit();
    expect(c.rows).toBe(2500);
    expect(c.segments.map((s) => s.rows)).toEqual([1000, 1000, 500]);
    const m = readManifest(dir);
    expect(m.rows).toBe(2500);
    expect(m.segments[0].firstDay).toBe(parseIsoDate(decls[0].date));
    expect(m.segments[2].lastDay).toBe(parseIsoDate(decls[2499].date));
    expect(m.segments.reduce((a, s) => a + s.withResult, 0)).toBe([...result].filter((r) => r !== RESULT_UNKNOWN).length);
    expect(m.segments.reduce((a, s) => a + s.nonCompliant, 0)).toBe([...result].filter((r) => r === 1).length);
    const back = readAll(dir);
    expect(back.map((x) => x.d)).toEqual(decls);
    expect(back.map((x) => x.result)).toEqual([...result]);
    back.forEach((x, i) => expect(Number.isNaN(revenue[i]) ? Number.isNaN(x.revenue) : x.revenue === revenue[i]).toBe(true));
  });

  it('selects rows and compacts long dictionaries into per-batch ones', () => {
    const dir = join(root, 'select');
    const decls = datedDeclarations(600, 4).map((d, i) => ({ ...d, importer: `IMP${i}` })); // 600 distinct importers
    const w = new HistoryWriter(dir, { batchRows: 600 });
    const { batch, ids } = toBatch(decls);
    w.add(batch, ids);
    w.commit();
    const seg = openSegment(segmentsIn(dir, readManifest(dir))[0].path);
    const rows = Int32Array.from({ length: 50 }, (_, k) => k * 11 + 3);
    const b = toKernelBatch(seg.table.batches[0], seg, remapScratch(seg), rows);
    expect(b.size).toBe(50);
    expect(b.dicts.importer.length).toBe(50); // 600 values in the segment: remapped to the 50 used
    expect(b.dicts.office).toBe(seg.dicts.office); // short: shared as it is
    for (let k = 0; k < 50; k++) expect(rowOf(b, k, decls[rows[k]].id)).toEqual(decls[rows[k]]);
    // without labels, results are unknown
    expect([...(seg.table.batches[0].getChild('result')!.data[0].values as Int8Array)].every((r) => r === RESULT_UNKNOWN)).toBe(true);
  });

  it('is a plain Arrow IPC file: typed columns and dictionary-encoded categoricals', () => {
    const dir = join(root, 'select');
    const path = segmentsIn(dir, readManifest(dir))[0].path;
    const t = tableFromIPC(readFileSync(path));
    expect(t.numRows).toBe(600);
    expect(DataType.isDictionary(t.schema.fields.find((f) => f.name === 'hs')!.type)).toBe(true);
    expect(DataType.isDictionary(t.schema.fields.find((f) => f.name === 'importer')!.type)).toBe(true);
    expect(DataType.isFloat(t.schema.fields.find((f) => f.name === 'customsValue')!.type)).toBe(true);
    expect(DataType.isDate(t.schema.fields.find((f) => f.name === 'date')!.type)).toBe(true);
    expect(t.getChild('hs')!.get(5)).toBe(datedDeclarations(600, 4)[5].hs);
    expect(t.schema.metadata.get('selectivity.format')).toBe('selectivity-history/1');
  });

  it('refuses a data directory that is a file with SEL_ERR_STORAGE naming it, not a raw error', () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    expect(() => new HistoryWriter(join(file, 'history'))).toThrow(expect.objectContaining({ code: 'SEL_ERR_STORAGE', details: expect.objectContaining({ field: 'data-dir', got: join(file, 'history') }) }));
  });

  it('appends new segments without rewriting the ones there', () => {
    const dir = join(root, 'append');
    const a = datedDeclarations(800, 5, 'A');
    const w1 = new HistoryWriter(dir, { segmentRows: 500 });
    const t1 = toBatch(a); w1.add(t1.batch, t1.ids); w1.commit();
    const before = Object.fromEntries(readManifest(dir).segments.map((s) => [s.file, hash(join(dir, s.file))]));
    const b = datedDeclarations(300, 6, 'B');
    const w2 = new HistoryWriter(dir, { segmentRows: 500 });
    const t2 = toBatch(b); w2.add(t2.batch, t2.ids); w2.commit();
    const m = readManifest(dir);
    expect(m.rows).toBe(1100);
    expect(m.segments.length).toBe(3);
    expect(m.imports.length).toBe(2);
    for (const [file, h] of Object.entries(before)) expect(hash(join(dir, file))).toBe(h);
    expect(readAll(dir).map((x) => x.d.id)).toEqual([...a, ...b].map((d) => d.id));
  });

  it('commits all or nothing: an import that dies leaves the store as it was, and its files are swept', () => {
    const dir = join(root, 'crash');
    const keep = datedDeclarations(200, 7, 'K');
    const w1 = new HistoryWriter(dir); const t1 = toBatch(keep); w1.add(t1.batch, t1.ids); w1.commit();
    const manifest = readFileSync(join(dir, 'manifest.json'), 'utf8');
    // a writer that flushed a segment, then "died": its lock let go of, as the system does for a dead process
    const dying = new HistoryWriter(dir, { segmentRows: 100 });
    const t2 = toBatch(datedDeclarations(250, 8, 'X')); dying.add(t2.batch, t2.ids);
    expect(readdirSync(dir).filter((f) => f.endsWith('.arrow')).length).toBe(3); // 1 committed + 2 flushed
    expect(() => new HistoryWriter(dir)).toThrowError(expect.objectContaining({ code: 'SEL_ERR_HISTORY_BUSY', message: expect.stringContaining(`process ${process.pid}, history import`) }));
    (dying as unknown as { lock: ProcessLock }).lock.release();
    expect(readFileSync(join(dir, 'manifest.json'), 'utf8')).toBe(manifest);
    expect(readAll(dir).map((x) => x.d.id)).toEqual(keep.map((d) => d.id));
    const next = new HistoryWriter(dir); // gets the lock the dead writer held, sweeps its orphans
    expect(readdirSync(dir).filter((f) => f.endsWith('.arrow')).length).toBe(1);
    next.abort();
    expect(readFileSync(join(dir, 'manifest.json'), 'utf8')).toBe(manifest);
  });

  it('reports a damaged manifest or segment by name and changes nothing', () => {
    const dir = join(root, 'damaged');
    const w = new HistoryWriter(dir); const t = toBatch(datedDeclarations(50, 9)); w.add(t.batch, t.ids); w.commit();
    const seg = segmentsIn(dir, readManifest(dir))[0].path;
    writeFileSync(seg, readFileSync(seg).subarray(0, 100));
    expect(() => openSegment(seg)).toThrowError(expect.objectContaining({ code: 'SEL_ERR_HISTORY_INVALID' }));
    writeFileSync(join(dir, 'manifest.json'), '{"format":"something-else","segments":[]}');
    expect(() => readManifest(dir)).toThrowError(expect.objectContaining({ code: 'SEL_ERR_HISTORY_INVALID', details: expect.objectContaining({ field: 'manifest' }) }));
    expect(() => new HistoryWriter(dir)).toThrowError(expect.objectContaining({ code: 'SEL_ERR_HISTORY_INVALID' }));
    // a failed open let go of the lock: the next one fails the same way, not as busy
    expect(() => new HistoryWriter(dir)).toThrowError(expect.objectContaining({ code: 'SEL_ERR_HISTORY_INVALID' }));
  });

  it('lets one process of several that open a writer at once have it, and a killed one\'s lock goes with it', async () => {
    const dir = join(root, 'race');
    const w = new HistoryWriter(dir); const t = toBatch(datedDeclarations(20, 11, 'R')); w.add(t.batch, t.ids); w.commit();
    const store = pathToFileURL(join(packageRoot(), 'dist', 'src', 'history', 'store.js')).href;
    // each child opens a writer, says whether it got it, and holds it until its stdin closes
    const child = () => spawn(process.execPath, ['--input-type=module', '-e', `
      const { HistoryWriter } = await import(${JSON.stringify(store)});
      let w;
      try { w = new HistoryWriter(${JSON.stringify(dir)}); console.log('taken'); } catch (e) { console.log(e.code); }
      process.stdin.on('data', () => {}).on('end', () => { w?.abort(); process.exit(0); });
    `], { stdio: ['pipe', 'pipe', 'inherit'] });
    const said = (c: ChildProcess) => new Promise<string>((resolve) => { let out = ''; c.stdout!.on('data', (b: Buffer) => { out += b; if (out.includes('\n')) resolve(out.trim()); }); });
    const children = Array.from({ length: 4 }, child);
    const answers = await Promise.all(children.map(said));
    expect(answers.filter((a) => a === 'taken')).toHaveLength(1);
    expect(answers.filter((a) => a === 'SEL_ERR_HISTORY_BUSY')).toHaveLength(3);
    // the holder killed: its lock is gone with it, and the next writer gets the store as it was
    const holder = children[answers.indexOf('taken')];
    const exited = new Promise((r) => holder.once('exit', r));
    holder.kill('SIGKILL');
    await exited;
    for (const c of children) c.stdin!.end();
    const next = new HistoryWriter(dir);
    next.abort();
    expect(readManifest(dir).rows).toBe(20);
  });

  it('imports files with labels and revenue, skipping and reporting invalid records', async () => {
    const dir = join(root, 'import');
    const csv = join(root, 'import.csv');
    writeFileSync(csv, [
      'id,date,office,importer,hs,origin,customsValue,netMass,taxRate,fraud',
      'I1,2025-02-01,OF01,IM1,020890,CN,1000,10,8,1',
      'I2,2025-02-02,OF01,IM2,020890,CN,2000,20,5,0',
      'I3,2025-02-03,OF01,IM3,02089X,CN,3000,30,5,1', // bad HS
      'I4,2025-02-04,OF02,IM4,610910,VN,4000,40,10,',
    ].join('\n') + '\n');
    const r = await importHistory(dir, [csv], { label: 'fraud' });
    expect(r.rows).toBe(3);
    expect(r.invalid).toBe(1);
    expect(r.errors[0]).toMatchObject({ line: 4, field: 'hs' });
    expect(r.withResult).toBe(2);
    expect(r.nonCompliant).toBe(1);
    const back = readAll(dir);
    expect(back.map((x) => [x.d.id, x.result])).toEqual([['I1', 1], ['I2', 0], ['I4', RESULT_UNKNOWN]]);
    expect(back[0].revenue).toBeCloseTo(80); // customsValue * taxRate / 100
    expect(Number.isNaN(back[2].revenue)).toBe(true);
    expect(r.store.rows).toBe(3);
    await expect(importHistory(dir, [csv], { label: 'nope' })).rejects.toMatchObject({ code: 'SEL_ERR_CSV_HEADER' });
    expect(readManifest(dir).rows).toBe(3); // the failed import added nothing
  });
});

describe('segment read-ahead', () => {
  const waitFor = async (cond: () => boolean) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  };

  it('reads at most `ahead` segments beyond the lowest one still replayed, and tolerates files that cannot be read', async () => {
    const dir = mkdtempSync(join(root, 'ahead-'));
    const sizes = [100_000, 200_000, 300_000, 400_000, 500_000];
    const paths = sizes.map((n, i) => { const p = join(dir, `seg-${i}.arrow`); writeFileSync(p, Buffer.alloc(n, i)); return p; });
    paths.splice(2, 0, join(dir, 'missing.arrow')); // index 2 cannot be read
    const ra = new SegmentReadAhead(paths, 1, 0);
    await waitFor(() => ra.bytes >= sizes[0] + sizes[1]);
    await new Promise((r) => setTimeout(r, 50));
    expect(ra.bytes).toBe(sizes[0] + sizes[1]); // segments 0 and 1, then it waits for the replay
    ra.advance(4); // segments up to 5 may now be read; the missing one is skipped
    const all = sizes.reduce((a, b) => a + b, 0);
    await waitFor(() => ra.bytes >= all);
    expect(ra.bytes).toBe(all);
    await ra.stop();
  });

  it('stops when told, with segments left unread', async () => {
    const dir = mkdtempSync(join(root, 'ahead-stop-'));
    const paths = [0, 1, 2, 3].map((i) => { const p = join(dir, `seg-${i}.arrow`); writeFileSync(p, Buffer.alloc(10_000, i)); return p; });
    const ra = new SegmentReadAhead(paths, 0, 0);
    await waitFor(() => ra.bytes >= 10_000);
    await ra.stop();
    expect(ra.bytes).toBe(10_000);
  });
});
