/**
 * Locates files of the package (the WASM kernel, the worker entry, examples)
 * whether code runs from src/ (tests) or from dist/ (built).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  root = findPackageDir(dirname(fileURLToPath(import.meta.url)), 'selectivity-engine');
  if (!root) throw new Error('selectivity-engine: package root not found');
  return root;
}

/** The engine's version, from its package.json ('0.0.0' where that cannot be read). */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** The nearest directory at or above `start` whose package.json is named `name`. */
export function findPackageDir(start: string, name: string): string | undefined {
  for (let dir = start; ; dir = dirname(dir)) {
    if (packageNameAt(dir) === name) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

function packageNameAt(dir: string): string | undefined {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) return undefined;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}

export function kernelWasmPath(debug = false): string {
  return join(packageRoot(), 'build', debug ? 'kernel.debug.wasm' : 'kernel.wasm');
}

export function workerPath(name = 'score-worker'): string {
  return join(packageRoot(), 'dist', 'workers', `${name}.js`);
}

const NO_REQUIRE_ESM = '--no-experimental-require-module';

/**
 * execArgv for the Piscina pools' workers: this process's own (those a
 * worker takes: acceptedByWorkers), with require(esm) turned off. Piscina first tries `require()` on a worker file
 * and falls back to `import()`; on Node 20 the require(esm) path can abort the
 * whole process ("v8::Module::IsGraphAsync must be used on an instantiated
 * module", seen once in a test run), while `import()` is the loader our ES
 * module workers are written for. Left as it is where Node does not know the flag.
 */
export function workerExecArgv(): string[] {
  if (execArgv) return execArgv;
  const own = acceptedByWorkers(process.execArgv);
  // ours first: an argument of this process's that a worker reads as a script name would end its options there
  execArgv = own.includes(NO_REQUIRE_ESM) || !process.allowedNodeEnvironmentFlags.has(NO_REQUIRE_ESM) ? own : [NO_REQUIRE_ESM, ...own];
  return execArgv;
}

let execArgv: string[] | undefined;

/**
 * The options of `args` that a worker thread takes. Node refuses a worker
 * whose execArgv holds V8 or whole-process options (`--max-old-space-size`,
 * `--expose-gc`, `--stack-size`, `--title` …: ERR_WORKER_INVALID_EXEC_ARGV),
 * though a worker given none inherits them; these apply to the whole process
 * anyway. Found by starting a worker that runs nothing, once per process; the
 * flags it names are left out.
 */
export function acceptedByWorkers(args: readonly string[]): string[] {
  let list = [...args];
  for (let attempt = 0; attempt < 4 && list.length > 0; attempt++) {
    try {
      const w = new Worker('', { eval: true, execArgv: list, stdout: true, stderr: true });
      w.unref();
      void w.terminate().catch(() => undefined);
      return list;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw e;
      const named = new Set((e as Error).message.split(': ').slice(1).join(': ').split(', ').map((x) => x.trim()));
      // a refused option given as two arguments (--title foo): its value goes with it (left alone, Node
      // would read it as a script name and ignore every option after it)
      const kept: string[] = [];
      for (let i = 0; i < list.length; i++) {
        if (!named.has(list[i])) { kept.push(list[i]); continue; }
        if (!list[i].includes('=') && i + 1 < list.length && !list[i + 1].startsWith('-')) i++;
      }
      list = kept.length < list.length ? kept : [];
    }
  }
  return list;
}
