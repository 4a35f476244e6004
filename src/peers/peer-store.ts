/**
 * Peer tables on disk: one JSON document, written durably. The service keeps
 * its active tables in <dataDir>/peers.json; issue-level tools (building from
 * history, studies) read and write the same format.
 *
 * { "format": "selectivity-peers", "formatVersion": 1, "createdAt": "…",
 *   "levels": ["hs6,origin", "hs6", …],
 *   "groups": [ [ ["8452|HK", count, [n, median, mad], [n, median, mad], [n, median, mad]], … ], … ] }
 *
 * groups[l] lists level l's groups: key (see levelKey), declaration count,
 * then one [n, median, mad] per feature in FEATURES order (null for NaN).
 */
import { readFileSync } from 'node:fs';
import { errors } from '../errors.js';
import { writeFileDurable } from '../store/durable.js';
import { FEATURES, NF, parseLevels, type PeerGroup, type PeerTables } from './peer-groups.js';

export const PEERS_FORMAT = 'selectivity-peers';
export const PEERS_FORMAT_VERSION = 1;

const num = (x: number) => (Number.isFinite(x) ? x : null);

export function serializePeerTables(tables: PeerTables): string {
  const doc = {
    format: PEERS_FORMAT,
    formatVersion: PEERS_FORMAT_VERSION,
    createdAt: new Date().toISOString(),
    features: FEATURES,
    levels: tables.levels.map((l) => l.name),
    groups: tables.groups.map((m) => [...m].map(([key, g]) => [key, g.count, ...g.features.map((f) => [f.n, num(f.median), num(f.mad)])])),
  };
  return `${JSON.stringify(doc)}\n`;
}

export function savePeerTables(path: string, tables: PeerTables): void {
  writeFileDurable(path, serializePeerTables(tables));
}

function bad(message: string, field: string, expected: string, got?: unknown): never {
  throw errors.SEL_ERR_PEERS_INVALID(message, { field, expected, got });
}

export function parsePeerTables(text: string, source = 'peer tables'): PeerTables {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    return bad(`${source} is not valid JSON: ${(e as Error).message}`, 'peers', 'a JSON document');
  }
  if (doc === null || typeof doc !== 'object' || doc.format !== PEERS_FORMAT) return bad(`${source} is not a peer table file`, 'format', `"${PEERS_FORMAT}"`, doc?.format);
  if (doc.formatVersion !== PEERS_FORMAT_VERSION) return bad(`${source} has format version ${String(doc.formatVersion)}`, 'formatVersion', String(PEERS_FORMAT_VERSION), doc.formatVersion);
  if (!Array.isArray(doc.levels)) return bad(`${source}: levels missing`, 'levels', 'an array of level names');
  const levels = parseLevels(doc.levels as string[]);
  const groupsIn = doc.groups;
  if (!Array.isArray(groupsIn) || groupsIn.length !== levels.length) return bad(`${source}: groups must list one array per level`, 'groups', `${levels.length} arrays`, Array.isArray(groupsIn) ? groupsIn.length : groupsIn);
  const groups = groupsIn.map((list, l) => {
    if (!Array.isArray(list)) return bad(`${source}: groups[${l}] is not an array`, `groups[${l}]`, 'an array');
    const m = new Map<string, PeerGroup>();
    list.forEach((row: unknown, r) => {
      const where = `groups[${l}][${r}]`;
      if (!Array.isArray(row) || row.length !== 2 + NF || typeof row[0] !== 'string' || !Number.isInteger(row[1]) || (row[1] as number) < 0) {
        bad(`${source}: ${where} is malformed`, where, `[key, count, ${NF} × [n, median, mad]]`, row);
      }
      const features = (row.slice(2) as unknown[]).map((f, k) => {
        if (!Array.isArray(f) || f.length !== 3 || !Number.isInteger(f[0]) || (f[1] !== null && typeof f[1] !== 'number') || (f[2] !== null && typeof f[2] !== 'number')) {
          return bad(`${source}: ${where} feature ${FEATURES[k]} is malformed`, `${where}[${2 + k}]`, '[n, median|null, mad|null]', f);
        }
        return { n: f[0] as number, median: (f[1] as number | null) ?? NaN, mad: (f[2] as number | null) ?? NaN };
      });
      m.set(row[0] as string, { count: row[1] as number, features });
    });
    return m;
  });
  return { levels, groups };
}

export function loadPeerTables(path: string): PeerTables {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw errors.SEL_ERR_FILE_NOT_FOUND(`cannot read peer tables ${path}: ${(e as Error).message}`, { field: 'peers', expected: 'a readable file', got: path });
  }
  return parsePeerTables(text, path);
}
