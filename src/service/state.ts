/**
 * The service's ruleset sources and their lifecycle: the data directory,
 * the profiles file and the peer-table file, seeded from the bundled example
 * on a first start, re-read on reload, and written durably (then swapped in)
 * when profiles are replaced through the API.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../errors.js';
import { loadProfiles } from '../profiles/load.js';
import { validateProfiles, type Profile } from '../profiles/profile.js';
import { loadPeers, parsePeerSnapshot, savePeerSnapshot } from '../peers/peer-store.js';
import { isPeerSnapshot, snapshotTables, type PeerSnapshot, type PeerTables } from '../peers/peer-groups.js';
import { createRuleset, type Ruleset } from '../ruleset/ruleset.js';
import { buildPeerSnapshotFromFile } from '../score-file.js';
import { packageRoot } from '../paths.js';
import { writeFileDurable } from '../store/durable.js';

export interface RulesetFiles {
  profilesPath: string;
  peersPath: string;
}

export interface SeedReport {
  dataDir: string;
  /** Files created from the bundled example on this start. */
  created: string[];
}

function saveProfiles(path: string, profiles: readonly Profile[]): void {
  writeFileDurable(path, `${JSON.stringify({ profiles }, null, 2)}\n`);
}

export function examplePaths(): { declarations: string; profiles: string } {
  const root = packageRoot();
  return { declarations: join(root, 'examples', 'declarations.csv'), profiles: join(root, 'examples', 'profiles.json') };
}

/** Creates the data directory (owner-only) and seeds missing ruleset files from the bundled example. */
export async function prepareDataDir(dataDir: string, files: Partial<RulesetFiles> = {}): Promise<RulesetFiles & SeedReport> {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (!statSync(dataDir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw errors.SEL_ERR_CONFIG_INVALID(`cannot use data directory ${dataDir}: ${(e as Error).message}`, { field: 'dataDir', expected: 'a writable directory', got: dataDir });
  }
  const created: string[] = [];
  const profilesPath = files.profilesPath ?? join(dataDir, 'profiles.json');
  const peersPath = files.peersPath ?? join(dataDir, 'peers.json');
  const example = examplePaths();
  if (!files.profilesPath && !existsSync(profilesPath)) {
    const profiles = validateProfiles(JSON.parse(readFileSync(example.profiles, 'utf8')));
    saveProfiles(profilesPath, profiles);
    created.push(profilesPath);
  }
  if (!files.peersPath && !existsSync(peersPath)) {
    savePeerSnapshot(peersPath, await buildPeerSnapshotFromFile(example.declarations));
    created.push(peersPath);
  }
  try { chmodSync(dataDir, 0o700); } catch { /* not ours to change (mounted volume): leave it */ }
  return { dataDir, profilesPath, peersPath, created };
}

export class RulesetSource {
  private peers: PeerTables | undefined;
  /** The loaded snapshot with its sketches (absent for a format-1 file). */
  private snapshot: PeerSnapshot | undefined;
  private profiles: Profile[] = [];

  constructor(readonly files: RulesetFiles) {}

  /** Reads both files; throws a named error and changes nothing if either is invalid. */
  async load(): Promise<Ruleset> {
    const loaded = loadPeers(this.files.peersPath);
    const snapshot = isPeerSnapshot(loaded) ? loaded : undefined;
    const peers = snapshot ? snapshotTables(snapshot) : (loaded as PeerTables);
    const profiles = await loadProfiles(this.files.profilesPath);
    const ruleset = createRuleset({ peers, profiles });
    this.peers = peers;
    this.snapshot = snapshot;
    this.profiles = profiles;
    return ruleset;
  }

  get currentProfiles(): readonly Profile[] { return this.profiles; }

  /** The active peer statistics: the snapshot when there is one (studies plot from it), else the tables. */
  get currentPeers(): PeerSnapshot | PeerTables | undefined { return this.snapshot ?? this.peers; }

  /** Version and provenance of the active peer statistics. */
  get peersInfo(): { version: string; createdAt: string | null; rows: number | null; levels: string[]; groups: Record<string, number>; foldable: boolean } | undefined {
    const t = this.peers;
    if (!t) return undefined;
    return {
      version: t.info?.version ?? 'format-1', createdAt: t.info?.createdAt ?? null, rows: t.info?.rows ?? null,
      levels: t.levels.map((l) => l.name), groups: Object.fromEntries(t.levels.map((l, i) => [l.name, t.groups[i].size])), foldable: this.snapshot !== undefined,
    };
  }

  /**
   * Validates an uploaded peer snapshot (format 2, JSON or MessagePack bytes),
   * writes it durably to the peers file, and returns the ruleset to swap in.
   * A damaged or mismatched snapshot throws a named error and changes nothing.
   */
  replacePeers(bytes: Uint8Array): Ruleset {
    const snapshot = parsePeerSnapshot(bytes, 'uploaded snapshot');
    const peers = snapshotTables(snapshot);
    const ruleset = createRuleset({ peers, profiles: this.profiles });
    savePeerSnapshot(this.files.peersPath, snapshot);
    this.peers = peers;
    this.snapshot = snapshot;
    return ruleset;
  }

  /**
   * Validates a new profile set against the current peers, writes it durably
   * to the profiles file, and returns the ruleset to swap in. Nothing is
   * written if validation fails.
   */
  replaceProfiles(raw: unknown): Ruleset {
    if (!this.peers) throw errors.SEL_ERR_NOT_READY('no ruleset loaded yet', { field: 'ruleset' });
    const profiles = validateProfiles(raw);
    const ruleset = createRuleset({ peers: this.peers, profiles });
    saveProfiles(this.files.profilesPath, profiles);
    this.profiles = profiles;
    return ruleset;
  }
}
