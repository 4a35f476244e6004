/**
 * How a request body's bytes are to be read, settled before any route reads
 * them: its charset (the service reads text as UTF-8 only) and its coding.
 *
 * Bodies sent compressed (Content-Encoding: gzip, deflate or br) are
 * decoded before any route reads them: a port can gzip a bulk batch or a
 * stream on a slow link. Every limit counts decoded bytes (the body limit,
 * a stream's record and frame limits), so a small compressed body that
 * decodes to gigabytes is refused as an oversize one is; a stream is decoded
 * as it is read, with its backpressure.
 */
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';

/** The content codings a request body may arrive in, by their (lower-case) token. */
const DECODERS: Record<string, () => Transform> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

/** What Content-Encoding may say, for the errors. */
export const CONTENT_CODINGS = 'gzip, deflate, br or identity (one coding)';

/** The charsets a body may say it is in: UTF-8, and ASCII (a part of it). */
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);
const CHARSET_PARAM = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

/**
 * Fastify preParsing hook: a body whose Content-Type names a charset other
 * than UTF-8 (or ASCII) is refused with SEL_ERR_MEDIA_TYPE (415) before it
 * is read; read as UTF-8, a UTF-16 document would only fail to parse. Then
 * decodeContent.
 */
export function prepareBody(req: FastifyRequest, reply: FastifyReply, payload: Readable, done: (err: Error | null, payload?: Readable) => void): void {
  if (req.method === 'GET' || req.method === 'HEAD') { done(null, payload); return; } // no body to read
  const type = req.headers['content-type'];
  if (type !== undefined && type.length > 0) {
    const charset = CHARSET_PARAM.exec(type)?.[1];
    if (charset !== undefined && !CHARSETS.has(charset.toLowerCase())) {
      done(errors.SEL_ERR_MEDIA_TYPE(`charset ${charset.slice(0, 40)} is not supported: bodies are read as UTF-8`, { field: 'content-type', expected: 'charset=utf-8, or no charset', got: type.slice(0, 100) }));
      return;
    }
  }
  decodeContent(req, reply, payload, done);
}

/**
 * Fastify preParsing hook: the payload as it is without a coding (or
 * identity), else a stream of its decoded bytes. An unknown coding, or more
 * than one, is refused with SEL_ERR_MEDIA_TYPE (415) before the body is read;
 * bytes that are not what their coding says fail the request with
 * SEL_ERR_REQUEST_PARSE (400; a stream's fatal record).
 */
export function decodeContent(req: FastifyRequest, _reply: FastifyReply, payload: Readable, done: (err: Error | null, payload?: Readable) => void): void {
  const header = req.headers['content-encoding'];
  if (header === undefined) { done(null, payload); return; }
  const coding = header.trim().toLowerCase();
  if (coding === '' || coding === 'identity') { done(null, payload); return; }
  const make = Object.hasOwn(DECODERS, coding) ? DECODERS[coding] : undefined;
  if (make === undefined) {
    done(errors.SEL_ERR_MEDIA_TYPE(`Content-Encoding ${header.slice(0, 100)} is not supported`, { field: 'content-encoding', expected: CONTENT_CODINGS, got: header.slice(0, 100) }));
    return;
  }
  const decoder = make();
  const out = new DecodedBody();
  payload.on('data', (chunk: Buffer) => { out.receivedEncodedLength += chunk.length; });
  decoder.on('error', (e: Error) => {
    const err = errors.SEL_ERR_REQUEST_PARSE(`the body is not valid ${coding} data (Content-Encoding): ${e.message}`, { field: 'content-encoding', expected: `a body encoded as ${coding}`, got: header.slice(0, 100) });
    if (!out.iterated) { out.destroy(err); return; }
    // a stream's reader: the bytes decoded before the fault are read first, then the fault is thrown
    out.failure = err;
    decoder.unpipe(out);
    // what the decoder had decoded and not yet passed on (out was full), then the end
    for (let c = decoder.read() as Buffer | null; c !== null; c = decoder.read() as Buffer | null) out.write(c);
    out.end();
  });
  // a body nobody reads (a route that takes none, a refusal before the body is read) fails unobserved
  // when its coding breaks: that is nothing to report (unlistened, the error would end the process)
  out.on('error', () => undefined);
  // the client went away: the readers of `out` see it end in an error, as they would see the request's
  payload.on('error', (e: Error) => out.destroy(e));
  out.on('close', () => { if (!decoder.destroyed) decoder.destroy(); });
  payload.pipe(decoder).pipe(out);
  done(null, out);
}

/**
 * A request body's decoded bytes. Fastify reads a body by its events: an
 * error of the coding destroys the stream with it. A stream route reads it
 * with for await: there the bytes decoded before the fault come first, then
 * the fault is thrown (a destroyed stream would drop what it holds, and
 * with it decisions for records that were sent whole).
 */
class DecodedBody extends PassThrough {
  /** What Fastify reads: it checks the body limit against both lengths, and Content-Length against this one. */
  receivedEncodedLength = 0;
  iterated = false;
  failure: Error | undefined;

  override async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    this.iterated = true;
    yield* super[Symbol.asyncIterator]() as AsyncIterableIterator<Buffer>;
    if (this.failure) throw this.failure;
  }
}
