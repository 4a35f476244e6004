/**
 * Bearer tokens with roles. Tokens come from, in order: the environment
 * (SELECTIVITY_TOKENS=port:<token>,analyst:<token>,…), a tokens file given on
 * the command line, or <dataDir>/tokens.json. On a first start with none of
 * them, one token per role is generated into <dataDir>/tokens.json with
 * owner-only permissions, and the caller prints how to use them.
 *
 * Roles: port (score, feedback), analyst (score, profiles, studies, feedback),
 * admin (everything, including ruleset reload and metrics).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../errors.js';
import { writeFileDurable } from '../store/durable.js';

export const ROLES = ['port', 'analyst', 'admin', 'monitor'] as const;
export type Role = (typeof ROLES)[number];

export interface TokenEntry {
  role: Role;
  token: string;
  /** Free text: who holds it. */
  name?: string;
}

export interface TokenStore {
  /** Where the tokens came from. */
  readonly source: 'env' | 'file' | 'generated';
  readonly path?: string;
  /** Number of tokens per role. */
  readonly counts: Record<Role, number>;
  /** The role of a presented token, or undefined. Constant time per stored token. */
  roleOf(token: string): Role | undefined;
  /** Role and holder's name of a presented token (the name is what changes are recorded under). */
  identify(token: string): { role: Role; name?: string } | undefined;
}

const MIN_TOKEN_LENGTH = 16;
/** Longest token: a request carrying a longer one would pass Node's 16 KiB header limit long before. */
const MAX_TOKEN_LENGTH = 1024;
/** A token's characters: printable ASCII without space (RFC 6750's b64token and more), what every HTTP client sends as it is. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

function checkEntry(e: unknown, where: string): TokenEntry {
  // no value of an entry is ever echoed: a role and a token written the wrong way round would print the token
  if (e === null || typeof e !== 'object') throw errors.SEL_ERR_CONFIG_INVALID(`${where} is not an object`, { field: where, expected: '{ "role": …, "token": … }', got: e === null ? null : typeof e });
  const { role, token, name } = e as Record<string, unknown>;
  if (!isRole(role)) throw errors.SEL_ERR_CONFIG_INVALID(`${where}.role is not a role`, { field: `${where}.role`, expected: ROLES.join(' | '), got: typeof role === 'string' ? `${role.length} characters (not shown)` : typeof role });
  // a token no client can send (control characters, a non-ASCII letter sent as UTF-8 by one client and
  // Latin-1 by another, 30,000 characters) would be accepted here and never authenticate
  if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH || !TOKEN_CHARS.test(token)) {
    throw errors.SEL_ERR_CONFIG_INVALID(`${where}.token is too short, too long, or has a character other than printable ASCII (spaces included)`, { field: `${where}.token`, expected: `${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} printable ASCII characters without spaces`, got: typeof token === 'string' ? `${token.length} characters` : typeof token });
  }
  if (name !== undefined && typeof name !== 'string') throw errors.SEL_ERR_CONFIG_INVALID(`${where}.name is not a string`, { field: `${where}.name`, expected: 'a string', got: name });
  return name === undefined ? { role, token } : { role, token, name };
}

/** Parses SELECTIVITY_TOKENS: role:token pairs separated by commas. */
export function parseTokensEnv(value: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  value.split(',').map((s) => s.trim()).filter(Boolean).forEach((pair, i) => {
    const at = pair.indexOf(':');
    if (at < 0) throw errors.SEL_ERR_CONFIG_INVALID(`SELECTIVITY_TOKENS entry ${i + 1} has no role`, { field: 'SELECTIVITY_TOKENS', expected: `role:token pairs separated by commas, roles ${ROLES.join(' | ')}`, got: `entry ${i + 1}` });
    out.push(checkEntry({ role: pair.slice(0, at), token: pair.slice(at + 1) }, `SELECTIVITY_TOKENS[${i}]`));
  });
  if (out.length === 0) throw errors.SEL_ERR_CONFIG_INVALID('SELECTIVITY_TOKENS is set but empty', { field: 'SELECTIVITY_TOKENS', expected: 'at least one role:token pair' });
  return out;
}

/** Reads a tokens file: { "tokens": [ { "role", "token", "name"? } ] }. */
export function readTokensFile(path: string): TokenEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw errors.SEL_ERR_FILE_NOT_FOUND(`tokens file ${path} not found`, { field: 'tokens', expected: 'a readable JSON file', got: path });
    // the parser's message quotes the text around the fault, a token perhaps: only where it is
    const where = /position (\d+)/.exec((e as Error).message)?.[1];
    throw errors.SEL_ERR_CONFIG_INVALID(`tokens file ${path} is not valid JSON${where ? ` (at character ${where})` : ''}`, { field: 'tokens', expected: 'JSON { "tokens": [...] }', got: path });
  }
  const list = (raw as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list) || list.length === 0) throw errors.SEL_ERR_CONFIG_INVALID(`tokens file ${path} has no tokens`, { field: 'tokens', expected: 'a non-empty "tokens" array', got: list });
  return list.map((e, i) => checkEntry(e, `tokens[${i}]`));
}

export function generateTokens(): TokenEntry[] {
  return ROLES.map((role) => ({ role, token: `sel_${role}_${randomBytes(24).toString('base64url')}`, name: `generated ${new Date().toISOString()}` }));
}

export function createTokenStore(entries: readonly TokenEntry[], source: TokenStore['source'], path?: string): TokenStore {
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.token)) throw errors.SEL_ERR_CONFIG_INVALID('the same token is listed twice', { field: 'token', expected: 'distinct tokens' });
    seen.add(e.token);
  }
  const hashed = entries.map((e) => ({ role: e.role, name: e.name, hash: digest(e.token) }));
  const counts = Object.fromEntries(ROLES.map((r) => [r, 0])) as Record<Role, number>;
  for (const e of entries) counts[e.role]++;
  return {
    source,
    path,
    counts,
    roleOf(token) {
      return this.identify(token)?.role;
    },
    identify(token) {
      if (!token) return undefined;
      const h = digest(token);
      let found: (typeof hashed)[number] | undefined;
      for (const e of hashed) if (timingSafeEqual(e.hash, h)) found = e;
      return found ? (found.name ? { role: found.role, name: found.name } : { role: found.role }) : undefined;
    },
  };
}

/** The data directory's tokens file (generated on a first start). */
export const dataDirTokensPath = (dataDir: string): string => join(dataDir, 'tokens.json');

export interface LoadTokensOptions {
  dataDir: string;
  /** An explicit tokens file (--tokens). */
  file?: string;
  /** The SELECTIVITY_TOKENS value, if set. */
  env?: string;
  /** With nothing configured, generate tokens into the data directory (default true); false: return undefined instead, writing nothing. */
  generate?: boolean;
}

export interface LoadedTokens {
  store: TokenStore;
  /** Set on a first start: the tokens just generated, to print once. */
  generated?: TokenEntry[];
}

/**
 * A tokens file that others can read is refused: the data directory's
 * tokens.json always (the service generated it owner-only), an explicit
 * --tokens file not (its place and mode are the operator's choice).
 */
function readTokensChecked(path: string, ownerOnly: boolean): TokenEntry[] {
  if (ownerOnly && existsSync(path)) {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0 && process.platform !== 'win32') {
      throw errors.SEL_ERR_CONFIG_INVALID(`${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 on it`, { field: 'tokens', expected: 'owner-only permissions (0600)', got: mode.toString(8) });
    }
  }
  return readTokensFile(path);
}

/**
 * The service's tokens, re-read from their file on demand (SIGHUP, POST
 * /v1/tokens/reload): a token is revoked or added without a restart. The
 * file is read and checked whole first; a file that does not hold changes
 * nothing, and the tokens in use stay. Tokens from SELECTIVITY_TOKENS
 * cannot be re-read (the process's environment does not change).
 */
export class ReloadableTokens implements TokenStore {
  private current: TokenStore;
  constructor(initial: TokenStore, private readonly ownerOnly: boolean) { this.current = initial; }
  get source(): TokenStore['source'] { return this.current.source; }
  get path(): string | undefined { return this.current.path; }
  get counts(): Record<Role, number> { return this.current.counts; }
  roleOf(token: string): Role | undefined { return this.current.roleOf(token); }
  identify(token: string): { role: Role; name?: string } | undefined { return this.current.identify(token); }

  /** Re-reads the tokens file and swaps the tokens in; the counts per role of the new set. */
  reload(): Record<Role, number> {
    const { source, path } = this.current;
    if (source === 'env' || path === undefined) {
      throw errors.SEL_ERR_CONFIG_INVALID('the tokens come from SELECTIVITY_TOKENS and cannot be re-read; restart the service with the new value', { field: 'tokens', expected: 'tokens from a file (--tokens or <data-dir>/tokens.json) to reload them', got: 'SELECTIVITY_TOKENS' });
    }
    let entries: TokenEntry[];
    try {
      entries = readTokensChecked(path, this.ownerOnly);
    } catch (e) {
      // the route exists: a file gone since the start is a configuration that does not hold, as a malformed one is
      if ((e as { code?: string }).code === errors.SEL_ERR_FILE_NOT_FOUND.code) throw errors.SEL_ERR_CONFIG_INVALID(`tokens file ${path} not found; the tokens in use stay`, { field: 'tokens', expected: 'a readable JSON file', got: path });
      throw e;
    }
    this.current = createTokenStore(entries, 'file', path);
    return this.current.counts;
  }
}

export function loadTokens(options: LoadTokensOptions & { generate: false }): LoadedTokens | undefined;
export function loadTokens(options: LoadTokensOptions): LoadedTokens;
export function loadTokens(options: LoadTokensOptions): LoadedTokens | undefined {
  // set is set: an empty SELECTIVITY_TOKENS (an unset secret, say) is refused, not a silent fall back to
  // the file's tokens (perhaps ones meant to be retired) or to new ones
  if (options.env !== undefined) return { store: createTokenStore(parseTokensEnv(options.env), 'env') };
  if (options.file) return { store: createTokenStore(readTokensFile(options.file), 'file', options.file) };
  const path = dataDirTokensPath(options.dataDir);
  if (existsSync(path)) return { store: createTokenStore(readTokensChecked(path, true), 'file', path) };
  if (options.generate === false) return undefined;
  const generated = generateTokens();
  writeFileDurable(path, `${JSON.stringify({ tokens: generated }, null, 2)}\n`, { mode: 0o600 });
  return { store: createTokenStore(generated, 'generated', path), generated };
}

/** Which roles may use a route: the permission table the service enforces. */
export const ROUTE_ROLES = {
  score: ['port', 'analyst', 'admin'],
  /** Examination results: ports (where examinations happen) and analysts. */
  feedback: ['port', 'analyst', 'admin'],
  read: ['analyst', 'admin'],
  write: ['analyst', 'admin'],
  admin: ['admin'],
  /** The figures a monitoring system scrapes: also the monitor role, which may do nothing else. */
  metrics: ['admin', 'analyst', 'monitor'],
} as const satisfies Record<string, readonly Role[]>;
export type Access = keyof typeof ROUTE_ROLES;
