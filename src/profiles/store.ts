/**
 * The profile store: risk profiles in SQLite, every change a new version
 * (who, when, what changed), so that any decision can be explained against
 * the profile version that made it (a ruleset's meta lists id and version of
 * every profile it compiled).
 *
 * A profile's head version carries its status (active or retired). The set
 * the engine scores with is the active heads whose window
 * [activeFrom, activeUntil) holds the current instant; nextChange() says
 * when that set will change by the clock alone, so the service can swap the
 * ruleset without a restart.
 */
import { errors } from '../errors.js';
import type { Db } from '../store/sqlite.js';
import { inWindow, validateProfiles, type Profile } from './profile.js';

export type ProfileStatus = 'active' | 'retired';

export interface ProfileRecord {
  profile: Profile & { version: number };
  status: ProfileStatus;
  changedBy: string;
  changedAt: string;
  /** What this version changed: "created", "updated: weight, conditions", "retired", "activated". */
  change: string;
}

export interface ImportSummary {
  created: string[];
  updated: string[];
  unchanged: string[];
  /** With replace: profiles of the store absent from the imported set. */
  retired: string[];
}

export const PROFILE_EXPORT_FORMAT = 'selectivity-profiles';

interface Row { id: string; version: number; status: ProfileStatus; doc: string; changed_by: string; changed_at: string; change: string }

/** The profile as stored: normalised, without its version. */
function canonical(p: Profile): string {
  const { version: _v, ...rest } = p;
  return JSON.stringify(rest);
}

function changedKeys(before: Profile, after: Profile): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  keys.delete('version');
  const b = before as unknown as Record<string, unknown>, a = after as unknown as Record<string, unknown>;
  return [...keys].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort();
}

function toRecord(r: Row): ProfileRecord {
  return {
    profile: { ...(JSON.parse(r.doc) as Profile), version: r.version },
    status: r.status, changedBy: r.changed_by, changedAt: r.changed_at, change: r.change,
  };
}

function checkActor(by: string): string {
  if (typeof by !== 'string' || by.trim() === '' || by.length > 128) {
    throw errors.SEL_ERR_OPTION_INVALID('who makes a change must be named', { field: 'by', expected: 'a non-empty name of at most 128 characters', got: by });
  }
  return by.trim();
}

export class ProfileStore {
  private readonly q;

  constructor(private readonly db: Db) {
    this.q = {
      head: db.prepare<[string], Row>('SELECT v.* FROM profile_heads h JOIN profile_versions v ON v.id = h.id AND v.version = h.version WHERE h.id = ?'),
      heads: db.prepare<[], Row>('SELECT v.* FROM profile_heads h JOIN profile_versions v ON v.id = h.id AND v.version = h.version ORDER BY h.id'),
      history: db.prepare<[string], Row>('SELECT * FROM profile_versions WHERE id = ? ORDER BY version'),
      version: db.prepare<[string, number], Row>('SELECT * FROM profile_versions WHERE id = ? AND version = ?'),
      insert: db.prepare('INSERT INTO profile_versions (id, version, status, doc, changed_by, changed_at, change) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      setHead: db.prepare('INSERT INTO profile_heads (id, version) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version'),
    };
  }

  private write(id: string, version: number, status: ProfileStatus, doc: string, by: string, at: string, change: string): void {
    this.q.insert.run(id, version, status, doc, by, at, change);
    this.q.setHead.run(id, version);
  }

  /**
   * Imports a profile set (an array or {"profiles": [...]}, e.g. an export).
   * The whole set is validated first; nothing is written if any profile is
   * invalid. A new or changed profile gets a new version (and is active); an
   * unchanged one is left alone; with `replace`, active profiles absent from
   * the set are retired. One transaction: all or nothing.
   */
  importSet(raw: unknown, options: { by: string; replace?: boolean; now?: Date }): ImportSummary {
    const by = checkActor(options.by);
    const set = validateProfiles(raw);
    const at = (options.now ?? new Date()).toISOString();
    const summary: ImportSummary = { created: [], updated: [], unchanged: [], retired: [] };
    this.db.transaction(() => {
      const ids = new Set<string>();
      for (const p of set) {
        ids.add(p.id);
        const head = this.q.head.get(p.id);
        const doc = canonical(p);
        if (!head) {
          this.write(p.id, 1, 'active', doc, by, at, 'created');
          summary.created.push(p.id);
          continue;
        }
        const before = JSON.parse(head.doc) as Profile;
        if (head.doc === doc && head.status === 'active') { summary.unchanged.push(p.id); continue; }
        const keys = changedKeys(before, p);
        const change = [keys.length ? `updated: ${keys.join(', ')}` : '', head.status === 'retired' ? 'activated' : ''].filter(Boolean).join('; ');
        this.write(p.id, head.version + 1, 'active', doc, by, at, change);
        summary.updated.push(p.id);
      }
      if (options.replace) {
        for (const head of this.q.heads.all()) {
          if (ids.has(head.id) || head.status === 'retired') continue;
          this.write(head.id, head.version + 1, 'retired', head.doc, by, at, 'retired (absent from an imported set)');
          summary.retired.push(head.id);
        }
      }
    })();
    return summary;
  }

  /** Activates or retires a profile (a new version); a profile already in that state is left alone. */
  setStatus(id: string, status: ProfileStatus, by: string, now = new Date()): ProfileRecord {
    const actor = checkActor(by);
    const head = this.q.head.get(id);
    if (!head) throw errors.SEL_ERR_PROFILE_NOT_FOUND(`no profile "${id}"`, { field: 'id', expected: 'the id of a stored profile', got: id });
    if (head.status === status) return toRecord(head);
    this.db.transaction(() => this.write(id, head.version + 1, status, head.doc, actor, now.toISOString(), status === 'active' ? 'activated' : 'retired'))();
    return toRecord(this.q.head.get(id)!);
  }

  /** Current versions, by id; `status` filters (default: all). */
  list(status: ProfileStatus | 'all' = 'all'): ProfileRecord[] {
    return this.q.heads.all().filter((r) => status === 'all' || r.status === status).map(toRecord);
  }

  get(id: string): ProfileRecord | undefined {
    const r = this.q.head.get(id);
    return r ? toRecord(r) : undefined;
  }

  /** Every version of a profile, oldest first. */
  history(id: string): ProfileRecord[] {
    const rows = this.q.history.all(id);
    if (rows.length === 0) throw errors.SEL_ERR_PROFILE_NOT_FOUND(`no profile "${id}"`, { field: 'id', expected: 'the id of a stored profile', got: id });
    return rows.map(toRecord);
  }

  /** One past or current version (what a decision made with it saw). */
  version(id: string, version: number): ProfileRecord {
    const r = this.q.version.get(id, version);
    if (!r) throw errors.SEL_ERR_PROFILE_NOT_FOUND(`no version ${version} of profile "${id}"`, { field: 'version', expected: 'a stored version', got: `${id}@${version}` });
    return toRecord(r);
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
