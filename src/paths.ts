/**
 * Locates files of the package (the WASM kernel, the worker entry, examples)
 * whether code runs from src/ (tests) or from dist/ (built).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  root = findPackageDir(dirname(fileURLToPath(import.meta.url)), 'selectivity-engine');
  if (!root) throw new Error('selectivity-engine: package root not found');
  return root;
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
 * execArgv for the Piscina pools' workers: this process's own, with
 * require(esm) turned off. Piscina first tries `require()` on a worker file
 * and falls back to `import()`; on Node 20 the require(esm) path can abort the
 * whole process ("v8::Module::IsGraphAsync must be used on an instantiated
 * module", seen once in a test run), while `import()` is the loader our ES
 * module workers are written for. Left as it is where Node does not know the flag.
 */
export function workerExecArgv(): string[] {
  const own = process.execArgv;
  if (own.includes(NO_REQUIRE_ESM) || !process.allowedNodeEnvironmentFlags.has(NO_REQUIRE_ESM)) return own;
  return [...own, NO_REQUIRE_ESM];
}
