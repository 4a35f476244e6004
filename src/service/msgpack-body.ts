/**
 * MessagePack request bodies for the JSON-shaped routes (profile sets,
 * feedback): the media types, and one content-type parser that decodes a
 * body to plain objects or answers SEL_ERR_REQUEST_PARSE.
 */
import type { FastifyInstance } from 'fastify';
import { Unpackr } from 'msgpackr';
import { errors } from '../errors.js';

export const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** Lets the routes of `scope` take MessagePack bodies (decoded like JSON ones) up to bodyLimit bytes. */
export function acceptMsgpackBodies(scope: FastifyInstance, bodyLimit: number): void {
  scope.addContentTypeParser(MSGPACK_TYPES, { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    try { done(null, unpackr.unpack(body as Buffer)); } catch (e) { done(errors.SEL_ERR_REQUEST_PARSE(`body is not valid MessagePack: ${(e as Error).message}`, { field: 'body', expected: 'MessagePack' }) as unknown as Error); }
  });
}
