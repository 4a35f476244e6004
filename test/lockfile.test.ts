import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// npm ci refuses a lock file that lacks any optional dependency of a locked
// package, even one for another platform; npm install on this registry mirror
// sometimes leaves those out (see docs/development.md). Caught here, not in CI.
describe('package-lock.json', () => {
  it('records every optional dependency of every locked package', () => {
    const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
      packages: Record<string, { optionalDependencies?: Record<string, string> }>;
    };
    const missing: string[] = [];
    for (const [path, pkg] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
        const nested = `${path ? `${path}/` : ''}node_modules/${dep}`;
        if (!(nested in lock.packages) && !(`node_modules/${dep}` in lock.packages)) missing.push(`${path || '(root)'} → ${dep}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
