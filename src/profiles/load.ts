import { readFile } from 'node:fs/promises';
import { errors, isSelectivityError } from '../errors.js';
import { validateProfiles, type Profile } from './profile.js';

/** Reads and validates a profile set file (an array, or {"profiles": [...]}). */
export async function loadProfiles(path: string): Promise<Profile[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read profiles file ${path}: ${(e as Error).message}`, { field: 'profiles', expected: 'a readable JSON file', got: path });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw errors.SEL_ERR_PROFILE_INVALID(`${path} is not valid JSON: ${(e as Error).message}`, { field: 'profiles', expected: 'JSON', got: path });
  }
  try {
    return validateProfiles(raw);
  } catch (e) {
    if (isSelectivityError(e)) e.message = `${path}: ${e.message}`;
    throw e;
  }
}
