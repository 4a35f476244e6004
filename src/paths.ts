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
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!isOurPackage(dir)) {
    const up = dirname(dir);
    if (up === dir) throw new Error('selectivity-engine: package root not found');
    dir = up;
  }
  root = dir;
  return dir;
}

function isOurPackage(dir: string): boolean {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'selectivity-engine';
  } catch {
    return false;
  }
}

export function kernelWasmPath(debug = false): string {
  return join(packageRoot(), 'build', debug ? 'kernel.debug.wasm' : 'kernel.wasm');
}

export function workerPath(): string {
  return join(packageRoot(), 'dist', 'workers', 'score-worker.js');
}
