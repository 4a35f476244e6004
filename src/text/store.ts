/**
 * Keyword watch lists in the store, versioned like profiles
 * (src/store/versioned.ts): import / export one exchange file, list, show
 * with history, activate, retire. The active lists compile into the
 * matcher the scoring path uses (compileWatchLists).
 */
import { errors } from '../errors.js';
import type { Db } from '../store/sqlite.js';
import { VersionedDocuments, type VersionRecord } from '../store/versioned.js';
import { validateWatchLists, type WatchList } from './watchlist.js';

export type WatchListRecord = VersionRecord<WatchList, 'watchList'>;

export const WATCHLIST_EXPORT_FORMAT = 'selectivity-watchlists';

export class WatchListStore extends VersionedDocuments<WatchList, 'watchList'> {
  constructor(db: Db) {
    super(db, 'watchlist', 'watchList', validateWatchLists, errors.SEL_ERR_WATCHLIST_NOT_FOUND, 'watch list');
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
