/**
 * MessagePack for the JSON-shaped routes (profile sets, feedback) as for the
 * scoring routes: the media types, the choice of a reply's encoding from
 * Accept, one content-type parser that decodes a body to plain objects or
 * answers SEL_ERR_REQUEST_PARSE, and the reply encoded as Accept asks.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Unpackr } from 'msgpackr';
import { errors } from '../errors.js';
import { encodeMsgpack, msgpackStringsValid } from './fast-msgpack.js';
import type { WireFormat } from './wire.js';

export const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];

/** A Buffer view of encoded bytes (no copy), for reply.send. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0].trim().toLowerCase();
}

export function requestFormat(req: FastifyRequest): WireFormat {
  return MSGPACK_TYPES.includes(mediaType(req.headers['content-type'])) ? 'msgpack' : 'json';
}

/** An Accept header's ranges: each media range (lower case) and its q (0 where it is not a number). */
function acceptRanges(accept: string): { type: string; q: number }[] {
  return accept.split(',').map((part) => {
    const [typeRaw, ...params] = part.split(';');
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split('=').map((s) => s.trim().toLowerCase());
      if (k === 'q') q = Number(v);
    }
    return { type: typeRaw.trim().toLowerCase(), q: Number.isFinite(q) ? q : 0 };
  });
}

/**
 * Of `offered` (names, in the route's order of preference, each with the
 * media types that mean it: aliases), the one the most specific range that
 * matches any of its types gives the highest q (RFC 9110 12.5.1:
 * `type/subtype` before `type/*` before `*\/*`); the first on a tie, or
 * with `headerOrder`, the one whose range comes first in the header (then
 * the first offered: two matched through one wildcard). Undefined when none
 * is acceptable (q 0, or no range matches).
 */
function chooseOffered<T>(ranges: readonly { type: string; q: number }[], offered: readonly (readonly [T, readonly string[]])[], headerOrder = false): T | undefined {
  let best: T | undefined;
  let bestQ = 0, bestAt = Infinity;
  for (const [name, types] of offered) {
    let q = -1, specificity = -1, at = Infinity;
    for (const t of types) {
      const major = t.slice(0, t.indexOf('/'));
      for (let k = 0; k < ranges.length; k++) {
        const r = ranges[k];
        const s = r.type === t ? 2 : r.type === `${major}/*` ? 1 : r.type === '*/*' ? 0 : -1;
        // the most specific range decides; of equally specific ones (two aliases named, a type twice), the highest q
        if (s > specificity || (s === specificity && s >= 0 && r.q > q)) { specificity = s; q = r.q; at = k; }
      }
    }
    if (q > bestQ || (headerOrder && q === bestQ && q > 0 && at < bestAt)) { best = name; bestQ = q; bestAt = at; }
  }
  return best;
}

/**
 * Picks what a route answers from Accept (RFC 9110 12.5.1): of `offered`
 * (in the route's order of preference), the one the most specific matching
 * range gives the highest q (`type/subtype` before `type/*` before `*\/*`),
 * the first offered on a tie; no header, the first. None acceptable (q 0 or
 * no range matches): SEL_ERR_NOT_ACCEPTABLE, before any work.
 */
export function chooseAnswer(accept: string | undefined, offered: readonly string[]): string {
  if (!accept || accept.trim() === '') return offered[0];
  const best = chooseOffered(acceptRanges(accept), offered.map((t) => [t, [t]] as const));
  if (best === undefined) throw errors.SEL_ERR_NOT_ACCEPTABLE(`cannot answer in any of: ${accept.slice(0, 200)}`, { field: 'accept', expected: offered.join(', '), got: accept.slice(0, 200) });
  return best;
}

/**
 * The encoding of a scoring answer from Accept, as chooseAnswer weighs it:
 * MessagePack (either of its media types) or JSON (`jsonTypes`); on a tie,
 * the one named first in the header, and for a wildcard or no header, the
 * request's own encoding (`fallback`).
 * A q of 0 on one MessagePack type refuses MessagePack, even where the other
 * type matches only through a wildcard: they name one encoding.
 */
export function negotiate(accept: string | undefined, fallback: WireFormat, jsonTypes: readonly string[] = ['application/json']): WireFormat {
  if (!accept || accept.trim() === '') return fallback;
  const json = ['json', jsonTypes] as const, msgpack = ['msgpack', MSGPACK_TYPES] as const;
  const best = chooseOffered<WireFormat>(acceptRanges(accept), fallback === 'msgpack' ? [msgpack, json] : [json, msgpack], true);
  if (best === undefined) {
    throw errors.SEL_ERR_NOT_ACCEPTABLE(`cannot answer in any of: ${accept.slice(0, 200)}`, { field: 'accept', expected: [...jsonTypes, ...MSGPACK_TYPES].join(', '), got: accept.slice(0, 200) });
  }
  return best;
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/**
 * A decoded body's top-level value as a JSON document would have it: a map,
 * an array or a scalar. msgpackr reads the unused byte 0xc1 as an object of
 * its own class, which would otherwise pass for a map with a field "name".
 */
function checkDecodedBody(value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw errors.SEL_ERR_REQUEST_PARSE('the body is not a MessagePack map: it holds a value MessagePack leaves unused (byte 0xc1) or an extension type', { field: 'body', expected: 'a MessagePack map', got: (proto as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? 'object' });
    }
  }
  return value;
}

/**
 * A MessagePack request body decoded to what the same JSON document would
 * give (checkDecodedBody), or SEL_ERR_REQUEST_PARSE: `what` names the body
 * in the message, `expected` what it should have been.
 */
export function unpackBody(bytes: Uint8Array, what = 'body', expected = 'MessagePack'): unknown {
  let value: unknown;
  // msgpackr reads bytes that are not UTF-8 as U+FFFD: two different ids would come out as one
  let valid = true;
  try { valid = msgpackStringsValid(bytes, 0); } catch { /* not MessagePack: unpack says how */ }
  if (!valid) throw errors.SEL_ERR_REQUEST_PARSE(`${what} holds a string that is not valid UTF-8`, { field: 'body', expected: `${expected}, its strings in UTF-8` });
  try {
    value = unpackr.unpack(bytes);
  } catch (e) {
    throw errors.SEL_ERR_REQUEST_PARSE(`${what} is not valid MessagePack: ${(e as Error).message}`, { field: 'body', expected });
  }
  return checkDecodedBody(value);
}

/**
 * Lets the routes of `scope` take MessagePack bodies (decoded like JSON ones)
 * up to bodyLimit bytes, and answer as Accept asks (negotiate; no Accept or a
 * wildcard: the request's encoding), as the scoring routes do. The answer's
 * encoding is chosen before the handler runs, so an Accept that nothing fits
 * is 406 SEL_ERR_NOT_ACCEPTABLE with nothing changed. A MessagePack answer
 * holds what the JSON one would (the route's response schema applies first).
 */
export function acceptMsgpackBodies(scope: FastifyInstance, bodyLimit: number): void {
  scope.addContentTypeParser(MSGPACK_TYPES, { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    try { done(null, unpackBody(body as Buffer)); } catch (e) { done(e as Error); }
  });
  scope.addHook('preHandler', async (req, reply) => {
    if (negotiate(req.headers.accept, requestFormat(req)) !== 'msgpack') return;
    // a serializer may return bytes (Fastify sends a Buffer as it is); its type says string
    reply.type('application/msgpack').serializer(((payload: { [key: string]: unknown }) => {
      const json = reply.getSerializationFunction(String(reply.statusCode));
      return asBuffer(encodeMsgpack(JSON.parse(json ? json(payload) : JSON.stringify(payload))));
    }) as unknown as (payload: unknown) => string);
  });
}
