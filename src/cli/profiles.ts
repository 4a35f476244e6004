/**
 * `selectivity profiles import|export|list|show|activate|retire`: the
 * profile lifecycle on the store of a data directory (the one the service
 * uses). A running service picks changes up on its next reload (SIGHUP or
 * POST /v1/ruleset/reload), or use the HTTP routes, which swap at once.
 */
import { readJsonFile } from '../store/json-file.js';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { inWindow } from '../profiles/profile.js';
import { ProfileStore, type ProfileRecord } from '../profiles/store.js';
import { writeFileDurable } from '../store/durable.js';
import { openExistingStore, openStore, STORE_FILE } from '../store/sqlite.js';
import { intOption, numberOption } from './options.js';
import { profileStats } from '../profiles/effectiveness.js';

export const PROFILES_HELP = `Usage: selectivity profiles <command> [options]

The risk profiles stored in <data-dir>/${STORE_FILE} (SQLite), every change a
new version (who, when, what changed).

Commands:
  import <file.json> [--replace]   import a profile set (an array, {"profiles": [...]}
                                   or an export); new or changed profiles get a new
                                   version; --replace retires active profiles absent
                                   from the set
  export [--out <file>] [--all]    the active set as one exchange file (--all adds the
                                   retired ones under "retired")
  list [--status active|retired|all]
  show <id> [--version <n>]        a profile with its history, or one version
  activate <id>                    activate (a new version)
  retire <id>                      retire (a new version)
  stats [--from D] [--to D]        effectiveness per profile over a period (default: the
        [--max-share s]            last 30 days): declarations matched and share of
        [--min-inspected n]        traffic (counted by the service), inspected,
                                   non-compliant (hit rate), revenue recovered (from
                                   examination results); flags profiles that match more
                                   than --max-share of traffic (default 0.05) or never
                                   hit in --min-inspected inspections (default 20)

Options:
  --data-dir <dir>   data directory (default ./data) [SELECTIVITY_DATA_DIR]
  --by <name>        who makes the change (default: the OS user)
  --json             print JSON
`;

function line(r: ProfileRecord, now: number): string {
  const p = r.profile;
  const window = p.activeFrom || p.activeUntil ? ` ${p.activeFrom ?? '…'} → ${p.activeUntil ?? '…'}` : '';
  const inForce = r.status === 'active' && inWindow(p, now) ? 'in force' : r.status === 'active' ? 'scheduled/expired' : 'retired';
  return `${p.id.padEnd(24)} v${String(p.version).padEnd(3)} ${inForce.padEnd(17)} ${(p.riskArea ?? '').padEnd(12)} w=${p.weight}${p.counterMeasure ? ` → ${p.counterMeasure.channel}` : ''}${window}  ${p.title ?? ''}`;
}


export async function profilesCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') { process.stdout.write(PROFILES_HELP); return sub ? 0 : 1; }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      'data-dir': { type: 'string' },
      by: { type: 'string' },
      replace: { type: 'boolean' },
      out: { type: 'string' },
      all: { type: 'boolean' },
      status: { type: 'string' },
      version: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'max-share': { type: 'string' },
      'min-inspected': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(PROFILES_HELP); return 0; }
  const dataDir = resolve(values['data-dir'] ?? process.env.SELECTIVITY_DATA_DIR ?? 'data');
  const by = values.by ?? `cli:${userInfo().username}`;
  const print = (text: string, obj: unknown) => process.stdout.write(`${values.json ? JSON.stringify(obj, null, 2) : text}\n`);
  const one = (what: string) => {
    if (positionals.length !== 1) throw errors.SEL_ERR_OPTION_INVALID(`profiles ${sub} needs exactly one ${what}`, { field: what, expected: `one ${what}`, got: positionals });
    return positionals[0];
  };
  const commands = ['import', 'export', 'list', 'show', 'activate', 'retire', 'stats'];
  if (!commands.includes(sub)) throw errors.SEL_ERR_OPTION_INVALID(`unknown profiles command "${sub}"`, { field: 'command', expected: commands.join(', '), got: sub });

  // only an import may make the store: the other commands read (or change) what is there
  const db = sub === 'import' ? openStore(join(dataDir, STORE_FILE)) : openExistingStore(dataDir);
  try {
    const store = new ProfileStore(db);
    const now = Date.now();
    switch (sub) {
      case 'import': {
        const file = one('file');
        const s = store.importSet(readJsonFile(file, 'the profile set', 'file', errors.SEL_ERR_PROFILE_INVALID), { by, replace: values.replace === true });
        print([
          `imported ${file} into ${join(dataDir, STORE_FILE)}:`,
          `  created ${s.created.length}${s.created.length ? `: ${s.created.join(', ')}` : ''}`,
          `  updated ${s.updated.length}${s.updated.length ? `: ${s.updated.join(', ')}` : ''}`,
          `  unchanged ${s.unchanged.length}`,
          `  retired ${s.retired.length}${s.retired.length ? `: ${s.retired.join(', ')}` : ''}`,
        ].join('\n'), s);
        return 0;
      }
      case 'export': {
        const set = store.exportSet(values.all === true);
        const text = `${JSON.stringify(set, null, 2)}\n`;
        if (values.out) {
          writeFileDurable(values.out, text);
          if (!values.json) process.stdout.write(`wrote ${values.out}: ${set.profiles.length} active profiles${set.retired ? `, ${set.retired.length} retired` : ''}\n`);
          else process.stdout.write(text);
        } else {
          process.stdout.write(text);
        }
        return 0;
      }
      case 'list': {
        const status = (values.status ?? 'all') as 'active' | 'retired' | 'all';
        if (!['active', 'retired', 'all'].includes(status)) throw errors.SEL_ERR_OPTION_INVALID('--status must be active, retired or all', { field: 'status', expected: 'active | retired | all', got: status });
        const records = store.list(status);
        print(records.length ? records.map((r) => line(r, now)).join('\n') : 'no profiles', records);
        return 0;
      }
      case 'show': {
        const id = one('id');
        if (values.version !== undefined) {
          const r = store.version(id, intOption(values.version, 'version', 1));
          print(`${line(r, now)}\n${JSON.stringify(r.profile, null, 2)}`, r);
          return 0;
        }
        const history = store.history(id);
        const current = history[history.length - 1];
        const text = [
          line(current, now),
          JSON.stringify(current.profile, null, 2),
          'history:',
          ...history.map((h) => `  v${h.profile.version} ${h.changedAt} ${h.changedBy}: ${h.change} (${h.status})`),
        ].join('\n');
        print(text, { current, history });
        return 0;
      }
      case 'stats': {
        const st = profileStats(db, {
          from: values.from, to: values.to,
          maxShare: values['max-share'] !== undefined ? numberOption(values['max-share'], 'max-share', 0, 1) : undefined,
          minInspected: values['min-inspected'] !== undefined ? intOption(values['min-inspected'], 'min-inspected', 1) : undefined,
        });
        const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
        const text = [
          `${st.from} – ${st.to}: ${st.scored.toLocaleString('en-US')} declarations scored`,
          'profile                   status    matched    share  inspected  non-compliant  hit rate  revenue recovered  flags',
          ...st.profiles.map((r) => `${r.id.padEnd(24)}  ${(r.status ?? '—').padEnd(8)} ${String(r.matched).padStart(8)} ${pct(r.share).padStart(8)} ${String(r.inspected).padStart(10)} ${String(r.nonCompliant).padStart(14)} ${(r.hitRate === null ? '—' : pct(r.hitRate)).padStart(9)} ${r.revenueRecovered.toFixed(2).padStart(18)}  ${r.flags.join(', ')}`),
        ].join('\n');
        print(text, st);
        return 0;
      }
      case 'activate':
      case 'retire': {
        const r = store.setStatus(one('id'), sub === 'activate' ? 'active' : 'retired', by);
        print(line(r, now), r);
        return 0;
      }
    }
    return 0;
  } finally {
    db.close();
  }
}

