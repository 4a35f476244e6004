import { isSelectivityError, errors } from '../errors.js';
import { readJsonFile } from '../store/json-file.js';
import { validateProfiles, type Profile } from './profile.js';

/**
 * Reads and validates a profile set file (an array, or {"profiles": [...]}):
 * SEL_ERR_FILE_NOT_FOUND when it cannot be read, SEL_ERR_PROFILE_INVALID
 * when it is not JSON or a profile fails validation (the path prefixed to
 * the message).
 */
export async function loadProfiles(path: string): Promise<Profile[]> {
  const raw = readJsonFile(path, 'the profiles file', 'profiles', errors.SEL_ERR_PROFILE_INVALID);
  try {
    return validateProfiles(raw);
  } catch (e) {
    if (isSelectivityError(e)) e.message = `${path}: ${e.message}`;
    throw e;
  }
}
