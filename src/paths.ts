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
