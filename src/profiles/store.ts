/**
 * The profile store: risk profiles in SQLite, every change a new version
 * (src/store/versioned.ts), so that any decision can be explained against
 * the profile version that made it (a ruleset's meta lists id and version of
 * every profile it compiled).
 *
 * The set the engine scores with is the active profiles whose window
 * [activeFrom, activeUntil) holds the current instant; nextChange() says
 * when that set will change by the clock alone, so the service can swap the
 * ruleset without a restart.
 */
import { errors } from '../errors.js';
import type { Db } from '../store/sqlite.js';
import { VersionedDocuments, type DocumentStatus, type ImportSummary, type VersionRecord } from '../store/versioned.js';
import { inWindow, MAX_PROFILES, validateProfiles, type Profile } from './profile.js';

export type ProfileStatus = DocumentStatus;
export type ProfileRecord = VersionRecord<Profile, 'profile'>;
export type { ImportSummary };

export const PROFILE_EXPORT_FORMAT = 'selectivity-profiles';

export class ProfileStore extends VersionedDocuments<Profile, 'profile'> {
  constructor(db: Db) {
    super(db, 'profile', 'profile', validateProfiles, errors.SEL_ERR_PROFILE_NOT_FOUND, 'profile');
  }

  /** More active profiles than the kernel scores: refused before the commit, not found by the ruleset's compile after it. */
  protected override checkActive(count: number): void {
    if (count > MAX_PROFILES) {
      throw errors.SEL_ERR_PROFILE_LIMIT(`the change would leave ${count} active profiles; the kernel scores at most ${MAX_PROFILES} (retire some, or import the whole set with replace)`, { field: 'profiles', expected: `at most ${MAX_PROFILES} active profiles`, got: count });
    }
  }

  /** The profiles the engine scores with at instant `now`: active, within their window, by id. */
  activeAt(now = Date.now()): Profile[] {
    return this.list('active').map((r) => r.profile).filter((p) => inWindow(p, now));
  }

  /** The next instant after `now` at which activeAt() changes by the clock alone (undefined: never). */
  nextChange(now = Date.now()): number | undefined {
    let next: number | undefined;
    for (const { profile: p } of this.list('active')) {
      for (const t of [p.activeFrom, p.activeUntil]) {
        if (t === undefined) continue;
        const ms = Date.parse(t);
        if (ms > now && (next === undefined || ms < next)) next = ms;
      }
    }
    return next;
  }

  /**
   * The current set as one exchange file: the active profiles (what an import
   * reads), and with `all` the retired ones beside them under `retired`
   * (which an import ignores).
   */
  exportSet(all = false): { format: string; formatVersion: number; exportedAt: string; profiles: Profile[]; retired?: Profile[] } {
    const out: { format: string; formatVersion: number; exportedAt: string; profiles: Profile[]; retired?: Profile[] } = {
      format: PROFILE_EXPORT_FORMAT,
      formatVersion: 1,
      exportedAt: new Date().toISOString(),
      profiles: this.list('active').map((r) => r.profile),
    };
    if (all) out.retired = this.list('retired').map((r) => r.profile);
    return out;
  }
}
