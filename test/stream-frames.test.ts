/**
 * The stream routes' framers (src/service/server.ts): a request body read in
 * pieces of any size is cut into chunks of whole records (MessagePack values,
 * NDJSON lines), in order, with each chunk's first index or line, and what
 * cannot be framed is refused with a named error.
 */
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { msgpackFrames, ndjsonFrames } from '../src/service/server.js';
import { rng as mulberry32 } from './helpers.js';

async function* reads(whole: Buffer, seed: number, maxRead: number): AsyncGenerator<Buffer> {
  const r = mulberry32(seed);
  for (let at = 0; at < whole.length;) {
    const n = 1 + Math.floor(r() * maxRead);
    yield whole.subarray(at, at + n);
    at += n;
  }
}

async function frames(gen: AsyncGenerator<{ bytes: Uint8Array; firstIndex: number; firstLine: number }>) {
  const out: { bytes: Buffer; firstIndex: number; firstLine: number }[] = [];
  for await (const f of gen) {
    // kept as given (a view, not a copy): a frame must not share bytes that the framer reuses afterwards
    out.push({ ...f, bytes: Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength) });
  }
  return out;
}

describe('stream framing', () => {
  it('cuts a MessagePack sequence read in arbitrary pieces into frames of whole records, in order', async () => {
    const r = mulberry32(9);
    const records = Array.from({ length: 500 }, (_, i) => ({ i, pad: 'x'.repeat(Math.floor(r() * 3000)) }));
    const encoded = records.map((x) => pack(x));
    const whole = Buffer.concat(encoded);
    // reads from 1 byte (records across many reads) to 20 kB (many records, even several frames, per read)
    for (const [seed, maxRead, per] of [[1, 7, 50], [2, 20_000, 7], [3, 4096, 1], [4, 70_000, 64]] as const) {
      const got = await frames(msgpackFrames(reads(whole, seed, maxRead), per, 8192));
      expect(Buffer.concat(got.map((f) => f.bytes)).equals(whole)).toBe(true);
      let index = 0;
      for (const [k, f] of got.entries()) {
        expect(f.firstIndex).toBe(index);
        let pos = 0, n = 0;
        for (; pos < f.bytes.length; n++) {
          const size = encoded[index + n].length;
          expect(unpack(f.bytes.subarray(pos, pos + size))).toEqual(records[index + n]);
          pos += size;
        }
        if (k < got.length - 1) expect(n).toBe(per);
        index += n;
      }
      expect(index).toBe(records.length);
    }
  });

  it('refuses a MessagePack stream that ends inside a record, or a record over the limit', async () => {
    const whole = Buffer.concat([pack({ a: 1 }), pack({ b: 'y'.repeat(100) })]);
    await expect(frames(msgpackFrames(reads(whole.subarray(0, whole.length - 3), 1, 10), 10, 8192))).rejects.toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', details: { got: `${whole.length - 3 - pack({ a: 1 }).length} trailing bytes` } });
    await expect(frames(msgpackFrames(reads(whole, 1, 10), 10, 50))).rejects.toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', message: expect.stringContaining('record 1 is longer than 50 bytes') });
  });

  it('cuts NDJSON into frames of whole lines with their first line numbers', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => JSON.stringify({ i, pad: 'z'.repeat(i % 97) }));
    const whole = Buffer.from(lines.join('\n') + '\n');
    const got = await frames(ndjsonFrames(reads(whole, 5, 900), 40, 4096));
    expect(Buffer.concat(got.map((f) => f.bytes)).equals(whole)).toBe(true);
    let line = 1;
    for (const f of got) {
      expect(f.firstLine).toBe(line);
      line += f.bytes.toString().split('\n').length - 1;
    }
    expect(line).toBe(301);
  });

  /** The frames a framer gives before it throws, and what it throws. */
  async function until(gen: AsyncGenerator<{ bytes: Uint8Array; firstIndex: number; firstLine: number }>) {
    const got: Buffer[] = [];
    try {
      for await (const f of gen) got.push(Buffer.from(f.bytes));
    } catch (e) {
      return { got: Buffer.concat(got), error: e as { code: string; message: string } };
    }
    return { got: Buffer.concat(got), error: undefined };
  }

  it('gives the whole records read before a fault, then the fault', async () => {
    // NDJSON: 50 lines, then one over the limit
    const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ i }));
    const before = Buffer.from(lines.join('\n') + '\n');
    const long = await until(ndjsonFrames(reads(Buffer.concat([before, Buffer.from(`${'x'.repeat(5000)}\n`)]), 3, 700), 2048, 4096));
    expect(long.error).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', message: expect.stringContaining('line 51 is longer') });
    expect(long.got.equals(before)).toBe(true);
    // MessagePack: 40 records, then a byte no value begins with, or a record over the limit
    const values = Buffer.concat(Array.from({ length: 40 }, (_, i) => pack({ i })));
    for (const tail of [Buffer.from([0xc1, 1, 2, 3]), pack({ pad: 'p'.repeat(3000) })]) {
      const r = await until(msgpackFrames(reads(Buffer.concat([values, tail]), 4, 300), 2048, 1024));
      expect(r.error?.code).toBe('SEL_ERR_REQUEST_PARSE');
      expect(r.got.equals(values)).toBe(true);
    }
  });

  it('gives the whole records read before the input itself fails (a compressed body cut short), then its error, and not the part of a record after them', async () => {
    async function* failing(whole: Buffer, cut: number): AsyncGenerator<Buffer> {
      yield* reads(whole.subarray(0, cut), 5, 500);
      throw new Error('unexpected end of file');
    }
    const lines = Buffer.from(Array.from({ length: 80 }, (_, i) => `${JSON.stringify({ i })}\n`).join(''));
    const cut = lines.indexOf('{"i":61}'), partial = cut + 4; // 61 whole lines, then part of one
    const nd = await until(ndjsonFrames(failing(lines, partial), 2048, 4096));
    expect(nd.error?.message).toBe('unexpected end of file');
    expect(nd.got.equals(lines.subarray(0, cut))).toBe(true);
    const encoded = Array.from({ length: 80 }, (_, i) => pack({ i }));
    const values = Buffer.concat(encoded), whole = Buffer.concat(encoded.slice(0, 61)).length;
    const mp = await until(msgpackFrames(failing(values, whole + 2), 2048, 1024));
    expect(mp.error?.message).toBe('unexpected end of file');
    expect(mp.got.equals(values.subarray(0, whole))).toBe(true);
  });

  it('ends a stream whose request did not arrive whole (its client hung up) after its whole records: the record cut short is no record', async () => {
    // NDJSON: a last line without its newline is a record when the request is whole, not when it was cut
    const text = Buffer.from('{"a":1}\n{"a":2}\n{"a":3,"b":"cut her');
    expect((await frames(ndjsonFrames(reads(text, 2, 5), 100, 1000))).map((f) => f.bytes.toString())).toEqual([text.toString()]);
    const cut: string[] = [];
    const gen = ndjsonFrames(reads(text, 2, 5), 100, 1000, undefined, () => false);
    await expect((async () => { for await (const f of gen) cut.push(Buffer.from(f.bytes).toString()); })()).rejects.toMatchObject({ code: 'SEL_ERR_ABANDONED', details: { field: 'body' } });
    expect(cut).toEqual(['{"a":1}\n{"a":2}\n']);
    // MessagePack: trailing bytes of a request cut short are the client gone, not a parse error
    const whole = Buffer.concat([pack({ a: 1 }), pack({ b: 'y'.repeat(100) })]);
    await expect(frames(msgpackFrames(reads(whole.subarray(0, whole.length - 3), 1, 10), 10, 8192, undefined, () => false))).rejects.toMatchObject({ code: 'SEL_ERR_ABANDONED' });
    // a request that arrived whole ends as before
    await expect(frames(msgpackFrames(reads(whole.subarray(0, whole.length - 3), 1, 10), 10, 8192, undefined, () => true))).rejects.toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE' });
  });

  it('refuses a line one byte over the limit even when it ends in the read it began in', async () => {
    const ok = `${JSON.stringify({ p: 'a'.repeat(100 - 8) })}`;
    expect(ok.length).toBe(100);
    const whole = (extra: string) => Buffer.from(`{"i":1}\n${ok}${extra}\n{"i":2}\n`);
    // one read holds every line: the limit is 100 bytes a line
    expect((await until(ndjsonFrames((async function* () { yield whole(''); })(), 2048, 100))).error).toBeUndefined();
    const over = await until(ndjsonFrames((async function* () { yield whole(' '); })(), 2048, 100));
    expect(over.error).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', message: expect.stringContaining('line 2 is longer than 100 bytes') });
    expect(over.got.toString()).toBe('{"i":1}\n');
  });

  it('cuts a frame once it holds frameBytes, however few records', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => JSON.stringify({ i, pad: 'q'.repeat(1000) }));
    const got = await frames(ndjsonFrames(reads(Buffer.from(lines.join('\n') + '\n'), 6, 5000), 2048, 4096, 4000));
    expect(got.length).toBeGreaterThanOrEqual(7);
    for (const f of got) expect(f.bytes.length).toBeLessThan(4000 + 1100);
    const packed = Buffer.concat(Array.from({ length: 30 }, (_, i) => pack({ i, pad: 'q'.repeat(1000) })));
    const mp = await frames(msgpackFrames(reads(packed, 7, 5000), 2048, 4096, 4000));
    expect(Buffer.concat(mp.map((f) => f.bytes)).equals(packed)).toBe(true);
    for (const f of mp) expect(f.bytes.length).toBeLessThan(4000 + 1100);
  });
});

