/**
 * The benchmarks' command lines: node:util parseArgs (strict), plus --help.
 * An unknown option or an option without its value is said in one line,
 * with the way to the list of options, and exits 2; no stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<T extends Options> = ReturnType<typeof parseArgs<{ options: T }>>['values'];

/** Parses process.argv for benchmark `name` (as npm runs it: "bench:service"); --help prints `usage` and exits 0. */
export function benchArgs<T extends Options>(name: string, options: T, usage: string): Values<T> {
  let parsed: { values: Record<string, unknown> };
  try {
    parsed = parseArgs({ options: { ...options, help: { type: 'boolean' } } });
  } catch (e) {
    if (!(e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) throw e;
    process.stderr.write(`${name}: ${e.message}\nOptions: npm run ${name} -- --help\n`);
    process.exit(2);
  }
  if (parsed.values.help === true) {
    process.stdout.write(`npm run ${name} -- [options]\n\n${usage.replace(/^\n+|\s+$/g, '')}\n`);
    process.exit(0);
  }
  return parsed.values as Values<T>;
}
