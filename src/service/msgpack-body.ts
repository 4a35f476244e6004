/**
 * MessagePack request bodies for the JSON-shaped routes (profile sets,
 * feedback): the media types, and one content-type parser that decodes a
 * body to plain objects or answers SEL_ERR_REQUEST_PARSE.
 */
import type { FastifyInstance } from 'fastify';
import { Unpackr } from 'msgpackr';
import { errors } from '../errors.js';
import { msgpackStringsValid } from './fast-msgpack.js';

export const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];
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

/** Lets the routes of `scope` take MessagePack bodies (decoded like JSON ones) up to bodyLimit bytes. */
export function acceptMsgpackBodies(scope: FastifyInstance, bodyLimit: number): void {
  scope.addContentTypeParser(MSGPACK_TYPES, { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    try { done(null, unpackBody(body as Buffer)); } catch (e) { done(e as Error); }
  });
}
