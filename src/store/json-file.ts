import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errors, type ErrorFactory } from '../errors.js';

/**
 * Reads and parses a JSON file (an import set, a watch-list file, a model).
 * A file that cannot be read (missing, a directory, no permission) raises
 * SEL_ERR_FILE_NOT_FOUND, as every other input file does; one that is not
 * JSON raises `invalid`. Both name `what` and the option `field` it came from.
 * A leading UTF-8 byte-order mark is skipped.
 */
export function readJsonFile(path: string, what: string, field: string, invalid: ErrorFactory): unknown {
  return readJsonFileHashed(path, what, field, invalid).value;
}

/**
 * readJsonFile, with the SHA-256 of the file's bytes as read (what
 * `sha256sum` prints for it): the identity of the content that was parsed,
 * not of whatever the file holds by the time it is read again.
 */
export function readJsonFileHashed(path: string, what: string, field: string, invalid: ErrorFactory): { value: unknown; sha256: string } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read ${what} ${path}: ${(e as Error).message}`, { field, expected: 'a readable JSON file', got: path });
  }
  let text = bytes.toString('utf8');
  // a byte-order mark (as some Windows editors write) is not part of the document, as in every other input file
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return { value: JSON.parse(text), sha256: createHash('sha256').update(bytes).digest('hex') };
  } catch (e) {
    throw invalid(`${what} ${path} is not valid JSON: ${(e as Error).message}`, { field, expected: 'a JSON file', got: path });
  }
}
