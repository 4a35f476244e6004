/**
 * Request bodies sent compressed: the preParsing hook on its own, with a
 * reader as slow as a stream route's (the service's own tests, in
 * service.test.ts, send such bodies over inject and loopback).
 */
import { Readable } from 'node:stream';
import { constants, gzipSync, gunzipSync } from 'node:zlib';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { decodeContent } from '../src/service/content-encoding.js';

function decoded(coding: string | undefined, payload: Readable): Promise<Readable> {
  const req = { headers: coding === undefined ? {} : { 'content-encoding': coding } } as unknown as FastifyRequest;
  return new Promise((resolve, reject) => decodeContent(req, {} as FastifyReply, payload, (err, out) => (err ? reject(err) : resolve(out!))));
}

const text = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `{"id":"D${i}","hs":"${100000 + (i * 7919) % 900000}"}\n`).join(''));

describe('Content-Encoding', () => {
  it('hands the payload on as it is without a coding, or with identity', async () => {
    const payload = Readable.from([text]);
    expect(await decoded(undefined, payload)).toBe(payload);
    expect(await decoded(' Identity ', payload)).toBe(payload);
  });

  it('gives a slow reader every byte decoded before a fault, then the fault', async () => {
    const zipped = gzipSync(text);
    const cut = zipped.subarray(0, zipped.length >> 1);
    // what a cut gzip body decodes to: the prefix zlib can produce from it
    const prefix = gunzipSync(cut, { finishFlush: constants.Z_SYNC_FLUSH });
    expect(prefix.length).toBeGreaterThan(100_000);
    const out = await decoded('gzip', Readable.from([cut]));
    const got: Buffer[] = [];
    let failure: { code?: string; details?: { field?: string } } | undefined;
    try {
      for await (const c of out) { got.push(c as Buffer); await new Promise((r) => setTimeout(r, 1)); }
    } catch (e) {
      failure = e as typeof failure;
    }
    expect(failure).toMatchObject({ code: 'SEL_ERR_REQUEST_PARSE', details: { field: 'content-encoding' } });
    expect(Buffer.concat(got).equals(prefix)).toBe(true);
  });

  it('counts the encoded bytes it read, for the Content-Length check', async () => {
    const zipped = gzipSync(text);
    const out = (await decoded('gzip', Readable.from([zipped.subarray(0, 1000), zipped.subarray(1000)]))) as Readable & { receivedEncodedLength: number };
    const got: Buffer[] = [];
    for await (const c of out) got.push(c as Buffer);
    expect(Buffer.concat(got).equals(text)).toBe(true);
    expect(out.receivedEncodedLength).toBe(zipped.length);
  });
});
