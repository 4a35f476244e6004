/**
 * Versioned documents in the store: every change a new version (who, when,
 * what changed), the latest version carrying the status (active or
 * retired). Profiles and keyword watch lists are kept this way, so that any
 * decision can be explained against the versions that made it.
 */
import { errors, type ErrorFactory } from '../errors.js';
import type { Db } from './sqlite.js';

/** What a versioned document needs: an id, and a version the store sets. */
export interface Versioned { id: string; version?: number }

export type DocumentStatus = 'active' | 'retired';

/** One version of a document: the document under key K ("profile", "watchList"), and who changed what when. */
export type VersionRecord<T, K extends string> = { [P in K]: T & { version: number } } & VersionInfo;

export interface VersionInfo {
  status: DocumentStatus;
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

interface Row { id: string; version: number; status: DocumentStatus; doc: string; changed_by: string; changed_at: string; change: string }

/** A document as stored: normalised, without its version. */
function canonical(p: Versioned): string {
  const { version: _v, ...rest } = p;
  return JSON.stringify(rest);
}

function changedKeys(before: Versioned, after: Versioned): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  keys.delete('version');
  const b = before as unknown as Record<string, unknown>, a = after as unknown as Record<string, unknown>;
  return [...keys].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort();
}

function toRecord<T extends Versioned, K extends string>(r: Row, key: K): VersionRecord<T, K> {
  return {
    [key]: { ...(JSON.parse(r.doc) as T), version: r.version },
    status: r.status, changedBy: r.changed_by, changedAt: r.changed_at, change: r.change,
  } as VersionRecord<T, K>;
}

function checkActor(by: string): string {
  if (typeof by !== 'string' || by.trim() === '' || by.length > 128) {
    throw errors.SEL_ERR_OPTION_INVALID('who makes a change must be named', { field: 'by', expected: 'a non-empty name of at most 128 characters', got: by });
  }
  return by.trim();
}

export class VersionedDocuments<T extends Versioned, K extends string> {
  private readonly q;

  /**
   * @param table   table prefix: `<table>_versions` and `<table>_heads` (see src/store/sqlite.ts)
   * @param key     the record's key for the document ("profile", "watchList")
   * @param validateSet  validates a whole set (throws a named error), returns normalised documents
   * @param notFound     the error for an unknown id or version
   */
  constructor(protected readonly db: Db, table: 'profile' | 'watchlist', private readonly key: K, private readonly validateSet: (raw: unknown) => T[], private readonly notFound: ErrorFactory, private readonly noun: string) {
    this.q = {
      head: db.prepare<[string], Row>(`SELECT v.* FROM ${table}_heads h JOIN ${table}_versions v ON v.id = h.id AND v.version = h.version WHERE h.id = ?`),
      active: db.prepare<[], number>(`SELECT count(*) FROM ${table}_heads h JOIN ${table}_versions v ON v.id = h.id AND v.version = h.version WHERE v.status = 'active'`).pluck(),
      heads: db.prepare<[], Row>(`SELECT v.* FROM ${table}_heads h JOIN ${table}_versions v ON v.id = h.id AND v.version = h.version ORDER BY h.id`),
      history: db.prepare<[string], Row>(`SELECT * FROM ${table}_versions WHERE id = ? ORDER BY version`),
      version: db.prepare<[string, number], Row>(`SELECT * FROM ${table}_versions WHERE id = ? AND version = ?`),
      insert: db.prepare(`INSERT INTO ${table}_versions (id, version, status, doc, changed_by, changed_at, change) VALUES (?, ?, ?, ?, ?, ?, ?)`),
      setHead: db.prepare(`INSERT INTO ${table}_heads (id, version) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version`),
    };
  }

  /**
   * Checks the active documents a write would leave (`count` of them; a
   * subclass may read them with list('active'), in the same transaction),
   * inside its transaction: a throw rolls the write back, and nothing
   * changes. Default: any. ProfileStore and WatchListStore refuse more
   * profiles or terms than a ruleset takes, so that what is stored always
   * compiles (at a restart too).
   */
  protected checkActive(_count: number): void {}

  private write(id: string, version: number, status: DocumentStatus, doc: string, by: string, at: string, change: string): void {
    this.q.insert.run(id, version, status, doc, by, at, change);
    this.q.setHead.run(id, version);
  }

  /**
   * Imports a set (e.g. an export). The whole set is validated first;
   * nothing is written if any document is invalid. A new or changed document
   * gets a new version (and is active); an unchanged one is left alone; with
   * `replace`, active documents absent from the set are retired. One
   * transaction: all or nothing.
   */
  importSet(raw: unknown, options: { by: string; replace?: boolean; now?: Date }): ImportSummary {
    return this.prepareImport(raw, options)();
  }

  /**
   * importSet in two steps: validates now (throws a named error, writes
   * nothing), and returns the write, one IMMEDIATE transaction that reads
   * the heads it compares against inside it. The write can be tried again
   * after a busy failure (src/store/sqlite.ts writeWhenFree) without
   * validating the set again.
   */
  prepareImport(raw: unknown, options: { by: string; replace?: boolean; now?: Date }): () => ImportSummary {
    const by = checkActor(options.by);
    const set = this.validateSet(raw);
    const at = (options.now ?? new Date()).toISOString();
    return () => this.writeSet(set, by, at, options.replace === true);
  }

  private writeSet(set: T[], by: string, at: string, replace: boolean): ImportSummary {
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
        const before = JSON.parse(head.doc) as T;
        if (head.doc === doc && head.status === 'active') { summary.unchanged.push(p.id); continue; }
        const keys = changedKeys(before, p);
        const change = [keys.length ? `updated: ${keys.join(', ')}` : '', head.status === 'retired' ? 'activated' : ''].filter(Boolean).join('; ');
        this.write(p.id, head.version + 1, 'active', doc, by, at, change);
        summary.updated.push(p.id);
      }
      if (replace) {
        for (const head of this.q.heads.all()) {
          if (ids.has(head.id) || head.status === 'retired') continue;
          this.write(head.id, head.version + 1, 'retired', head.doc, by, at, 'retired (absent from an imported set)');
          summary.retired.push(head.id);
        }
      }
      this.checkActive(this.q.active.get()!);
    }).immediate();
    return summary;
  }

  /** Activates or retires a document (a new version); one already in that state is left alone. */
  setStatus(id: string, status: DocumentStatus, by: string, now = new Date()): VersionRecord<T, K> {
    return this.prepareStatus(id, status, by, now)();
  }

  /**
   * setStatus in two steps, as prepareImport: checks the actor now, and
   * returns the write, which reads the head inside its IMMEDIATE
   * transaction (an unknown id throws there, having written nothing).
   */
  prepareStatus(id: string, status: DocumentStatus, by: string, now = new Date()): () => VersionRecord<T, K> {
    const actor = checkActor(by);
    return () => this.db.transaction(() => {
      const head = this.q.head.get(id);
      if (!head) throw this.notFound(`no ${this.noun} "${id}"`, { field: 'id', expected: `the id of a stored ${this.noun}`, got: id });
      if (head.status === status) return toRecord<T, K>(head, this.key);
      this.write(id, head.version + 1, status, head.doc, actor, now.toISOString(), status === 'active' ? 'activated' : 'retired');
      if (status === 'active') this.checkActive(this.q.active.get()!);
      return toRecord<T, K>(this.q.head.get(id)!, this.key);
    }).immediate();
  }

  /** Current versions, by id; `status` filters (default: all). */
  list(status: DocumentStatus | 'all' = 'all'): VersionRecord<T, K>[] {
    return this.q.heads.all().filter((r) => status === 'all' || r.status === status).map((r) => toRecord<T, K>(r, this.key));
  }

  get(id: string): VersionRecord<T, K> | undefined {
    const r = this.q.head.get(id);
    return r ? toRecord<T, K>(r, this.key) : undefined;
  }

  /** Every version of a document, oldest first. */
  history(id: string): VersionRecord<T, K>[] {
    const rows = this.q.history.all(id);
    if (rows.length === 0) throw this.notFound(`no ${this.noun} "${id}"`, { field: 'id', expected: `the id of a stored ${this.noun}`, got: id });
    return rows.map((r) => toRecord<T, K>(r, this.key));
  }

  /** One past or current version (what a decision made with it saw). */
  version(id: string, version: number): VersionRecord<T, K> {
    const r = this.q.version.get(id, version);
    if (!r) throw this.notFound(`no version ${version} of ${this.noun} "${id}"`, { field: 'version', expected: 'a stored version', got: `${id}@${version}` });
    return toRecord<T, K>(r, this.key);
  }
}
