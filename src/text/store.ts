/**
 * Keyword watch lists in the store, versioned like profiles
 * (src/store/versioned.ts): import / export one exchange file, list, show
 * with history, activate, retire. The active lists compile into the
 * matcher the scoring path uses (compileWatchLists).
 */
import { errors } from '../errors.js';
import type { Db } from '../store/sqlite.js';
import { VersionedDocuments, type VersionRecord } from '../store/versioned.js';
import { MAX_TERMS, validateWatchLists, type WatchList } from './watchlist.js';

export type WatchListRecord = VersionRecord<WatchList, 'watchList'>;

export const WATCHLIST_EXPORT_FORMAT = 'selectivity-watchlists';

export class WatchListStore extends VersionedDocuments<WatchList, 'watchList'> {
  constructor(db: Db) {
    super(db, 'watchlist', 'watchList', validateWatchLists, errors.SEL_ERR_WATCHLIST_NOT_FOUND, 'watch list');
  }

  /** More terms in the active lists than a ruleset takes: refused before the commit, not found by the next rebuild after it. */
  protected override checkActive(): void {
    const terms = this.active().reduce((n, l) => n + l.terms.length, 0);
    if (terms > MAX_TERMS) {
      throw errors.SEL_ERR_WATCHLIST_INVALID(`the change would leave ${terms} terms in the active watch lists; at most ${MAX_TERMS} in all (retire a list, or import the whole set with replace)`, { field: 'watchLists', expected: `at most ${MAX_TERMS} terms in the active lists`, got: terms });
    }
  }

  /** The active lists, by id. */
  active(): WatchList[] {
    return this.list('active').map((r) => r.watchList);
  }

  /** The active lists as one exchange file (what import reads). */
  exportSet(): { format: string; formatVersion: number; exportedAt: string; watchLists: WatchList[] } {
    return { format: WATCHLIST_EXPORT_FORMAT, formatVersion: 1, exportedAt: new Date().toISOString(), watchLists: this.active() };
  }
}
