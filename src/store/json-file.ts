import { readFileSync } from 'node:fs';
import type { ErrorFactory } from '../errors.js';

/**
 * Reads and parses a JSON file (an import set, a watch-list file). A file
 * that cannot be read or is not JSON raises `invalid`, naming `what` and
 * the option `field` it came from.
 */
export function readJsonFile(path: string, what: string, field: string, invalid: ErrorFactory): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw invalid(`cannot read ${what} ${path}: ${(e as Error).message}`, { field, expected: 'a readable JSON file', got: path });
  }
}
