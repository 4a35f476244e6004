/**
 * `selectivity serve`'s process-level options: the heap growing percent it
 * sets for V8 before the service starts (docs/benchmarks.md, "The main
 * thread's full collections"); and the process outliving the reader of its
 * output; SIGHUP re-reading the tokens file.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnServe } from './service-helpers.js';
import { packageRoot } from '../src/paths.js';
import { applyHeapGrowingPercent, DEFAULT_HEAP_GROWING_PERCENT, SERVE_HELP, serveCommand, signalExitCode } from '../src/cli/serve.js';

/** Runs `fn` with environment variable `name` set to `value`, in a new temporary directory; the variable is put back and the directory removed after. */
async function withEnv(name: string, value: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sel-serve-env-'));
  const before = process.env[name];
  process.env[name] = value;
  try {
    await fn(dir);
  } finally {
    if (before === undefined) delete process.env[name]; else process.env[name] = before;
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('serve --heap-growing-percent', () => {
  it('sets V8\'s --heap-growing-percent to the value given, and leaves V8 alone with 0', () => {
    const set: string[] = [];
    applyHeapGrowingPercent(DEFAULT_HEAP_GROWING_PERCENT, (f) => set.push(f));
    applyHeapGrowingPercent(350, (f) => set.push(f));
    applyHeapGrowingPercent(0, (f) => set.push(f));
    expect(set).toEqual(['--heap-growing-percent=200', '--heap-growing-percent=350']);
    expect(SERVE_HELP).toContain('--heap-growing-percent <n>');
  });

  it('refuses what is not an integer from 0 to 1000 with SEL_ERR_OPTION_INVALID, setting nothing', () => {
    for (const bad of [-1, 1001, 2.5, Number.NaN]) {
      const set: string[] = [];
      expect(() => applyHeapGrowingPercent(bad, (f) => set.push(f))).toThrow(expect.objectContaining({ code: 'SEL_ERR_OPTION_INVALID', details: expect.objectContaining({ field: 'heap-growing-percent' }) }));
      expect(set).toEqual([]);
    }
  });

  it('serve refuses a bad value before it starts anything (no data directory made)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-opt-'));
    try {
      for (const raw of ['abc', '-5', '1001', '1.5']) {
        await expect(serveCommand([`--heap-growing-percent=${raw}`, '--data-dir', join(dir, 'data'), '--port', '0', '--quiet'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'heap-growing-percent', got: raw } });
      }
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('serve refuses every bad option value before it makes anything', () => {
  it.each([
    [['--port', 'abc'], 'port'], [['--port', '70000'], 'port'], [['--port=-1'], 'port'],
    [['--host', ''], 'host'], [['--host', ' '], 'host'], [['--host', 'no-such-host.invalid'], 'host'],
    [['--threads', '1.5'], 'threads'], [['--threads=-1'], 'threads'], [['--backtest-threads', 'abc'], 'backtest-threads'],
    [['--retrain-after=-1'], 'retrain-after'], [['--retrain-strength', 'abc'], 'retrain-strength'], [['--retrain-strength', '0'], 'retrain-strength'],
    [['--retrain-min-z=-1'], 'retrain-min-z'], [['--retrain-min-z', 'abc'], 'retrain-min-z'],
    [['--max-queue', '0'], 'max-queue'], [['--body-limit', '0'], 'body-limit'], [['--body-limit', 'abc'], 'body-limit'],
    [['--inline-max', 'abc'], 'inline-max'], [['--young-mb', 'abc'], 'young-mb'], [['--max-batch', '0'], 'max-batch'],
    [['--metrics-interval', '0'], 'metrics-interval'], [['--decision-log', 'maybe'], 'decision-log'], [['--store-check', 'full'], 'store-check'],
    [['--peers', 'missing.json'], 'peers'], [['--tokens', 'missing.json'], 'tokens'],
  ])('%j: a named error on its field, no data directory', async (args, field) => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-opt-'));
    try {
      const withPort = args.some((a) => a.startsWith('--port')) ? args : [...args, '--port', '0']; // the last --port given wins: the bad one must be the only one
      await expect(serveCommand([...withPort, '--data-dir', join(dir, 'data'), '--quiet']))
        .rejects.toMatchObject({ code: expect.stringMatching(/^SEL_ERR_/), details: { field } });
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an empty SELECTIVITY_HOST is refused, not taken as every interface', async () => {
    await withEnv('SELECTIVITY_HOST', '', async (dir) => {
      await expect(serveCommand(['--data-dir', join(dir, 'data'), '--port', '0', '--quiet'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'SELECTIVITY_HOST', got: '' } });
      expect(readdirSync(dir)).toEqual([]);
    });
  });
});

describe('serve --inline-max', () => {
  it('is refused above --body-limit (or its 64mb default), naming inline-max, with nothing made', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-inline-'));
    try {
      for (const args of [['--inline-max', '100mb'], ['--inline-max', '2mb', '--body-limit', '1mb']]) {
        await expect(serveCommand(['--data-dir', join(dir, 'data'), '--quiet', ...args])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', message: expect.stringContaining('is above --body-limit'), details: { field: 'inline-max', got: args[1] } });
      }
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('serve names a bad value where it was set', () => {
  it.each([
    ['SELECTIVITY_PORT', 'abc', /^SELECTIVITY_PORT must be an integer/],
    ['SELECTIVITY_DECISION_LOG', 'maybe', /^SELECTIVITY_DECISION_LOG must be on or off/],
    ['SELECTIVITY_STORE_CHECK', 'full', /^SELECTIVITY_STORE_CHECK must be quick or off/],
    ['SELECTIVITY_HOST', ' ', /^SELECTIVITY_HOST must be an address/],
    ['SELECTIVITY_LOG_LEVEL', 'loud', /^SELECTIVITY_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent/],
  ])('%s=%j: the variable, not the option it stands for; nothing made', async (variable, bad, message) => {
    await withEnv(variable, bad, async (dir) => {
      await expect(serveCommand(['--data-dir', join(dir, 'data'), ...(variable === 'SELECTIVITY_LOG_LEVEL' ? [] : ['--quiet'])])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', message: expect.stringMatching(message), details: { field: variable, got: bad } });
      expect(readdirSync(dir)).toEqual([]);
    });
  });

  it('an option given beside its variable wins, and is the one named', async () => {
    await withEnv('SELECTIVITY_PORT', '8080', async (dir) => {
      await expect(serveCommand(['--data-dir', join(dir, 'data'), '--port', 'abc', '--quiet'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', message: expect.stringMatching(/^--port must be/), details: { field: 'port', got: 'abc' } });
    });
  });
});

describe('serve --log-level', () => {
  it('logs each request at info (the default), none at warn or with --quiet; a bad level, or both options, is refused naming the option', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-level-'));
    const token = 'port-serve-level-test-token-0123456789';
    const body = JSON.stringify({ declarations: [{ id: 'LVL-1', date: '2026-11-23', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN', customsValue: 1200, netMass: 900 }] });
    const logged = async (args: string[]) => {
      const { child, port, exited } = await spawnServe(join(dir, 'data'), ['--threads', '0', '--decision-log', 'off', ...args], `port:${token}`);
      let out = '';
      child.stdout!.on('data', (c: Buffer) => { out += c.toString('utf8'); });
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/score`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': `level-${args.join('')}` }, body });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      } finally {
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
      }
      return out.split('\n').filter((l) => l.includes(`"reqId":"level-${args.join('')}"`)).map((l) => JSON.parse(l).msg as string);
    };
    try {
      expect(await logged([])).toEqual(['incoming request', 'request completed']);
      expect(await logged(['--log-level', 'warn'])).toEqual([]);
      expect(await logged(['--quiet'])).toEqual([]);
      expect(await logged(['--log-level', 'debug'])).toEqual(expect.arrayContaining(['incoming request', 'request completed']));
      await expect(serveCommand(['--data-dir', join(dir, 'data'), '--log-level', 'loud'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'log-level', got: 'loud' } });
      await expect(serveCommand(['--data-dir', join(dir, 'data'), '--quiet', '--log-level', 'info'])).rejects.toMatchObject({ code: 'SEL_ERR_OPTION_INVALID', details: { field: 'log-level' } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('serve without a reader of its output', () => {
  it('goes on serving when its standard output is closed, and still stops gracefully on SIGTERM (exit 0)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-pipe-'));
    const token = 'port-serve-pipe-test-token-0123456789';
    try {
      const { child, port, exited, stderr } = await spawnServe(join(dir, 'data'), ['--threads', '1', '--decision-log', 'on'], `port:${token}`);
      try {
        child.stdout!.destroy(); // the reader goes away
        const body = JSON.stringify({ declarations: [{ id: 'PIPE-1', date: '2026-11-23', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN', customsValue: 1200, netMass: 900 }] });
        const res = await fetch(`http://127.0.0.1:${port}/v1/score`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { decisions: { id: string }[] }).decisions[0].id).toBe('PIPE-1');
        child.kill('SIGTERM'); // its first words after this go to the closed pipe
        expect(await exited).toBe(0);
        expect(stderr()).not.toMatch(/Unhandled|EPIPE/);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('serve and a signal during its start', () => {
  it('lets the start finish, then stops cleanly (exit 0, the data directory free), where SIGTERM used to kill it mid-start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-early-'));
    const data = join(dir, 'data');
    try {
      const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'selectivity.js'), 'serve', '--data-dir', data, '--host', '127.0.0.1', '--port', '0', '--threads', '1'],
        { env: { ...process.env, SELECTIVITY_TOKENS: 'port:early-start-token-0123456789ab' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      child.stdout!.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
      child.stderr!.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
      // the store is made inside the start, after the handlers are in place; the example's seeding and the
      // workers' warm-up come after it (several hundred ms)
      while (!existsSync(join(data, 'selectivity.db'))) await new Promise((r) => setTimeout(r, 2));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('SIGTERM during start: stopping once the start has finished');
      expect(stdout).toContain('SIGTERM during start: stopped');
      expect(stdout).not.toContain('listening on');
      // the start was finished, not cut: the next one finds a seeded directory and no lock held
      const again = await spawnServe(data, ['--threads', '1'], 'port:early-start-token-0123456789ab');
      again.child.kill('SIGTERM');
      expect(await again.exited).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('serve and a second signal', () => {
  it('exits at once with 128 + the signal\'s number: 143 for SIGTERM (it was 130, SIGINT\'s, for both)', async () => {
    expect(signalExitCode('SIGTERM')).toBe(143);
    expect(signalExitCode('SIGINT')).toBe(130);
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-twice-'));
    const data = join(dir, 'data');
    try {
      const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'selectivity.js'), 'serve', '--data-dir', data, '--host', '127.0.0.1', '--port', '0', '--threads', '1'],
        { env: { ...process.env, SELECTIVITY_TOKENS: 'port:twice-token-0123456789abcdef' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
      while (!existsSync(join(data, 'selectivity.db'))) await new Promise((r) => setTimeout(r, 2));
      child.kill('SIGTERM');
      while (!stderr.includes('stopping once the start has finished')) await new Promise((r) => setTimeout(r, 2));
      child.kill('SIGTERM');
      expect(await exited).toBe(143);
      expect(stderr).toContain('SIGTERM again during start, exiting now');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('exits 143 too when the second SIGTERM comes while the first waits for a stream in flight', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-twice-running-'));
    const token = 'port-twice-running-token-0123456789';
    try {
      const { child, port, exited } = await spawnServe(join(dir, 'data'), ['--threads', '1', '--decision-log', 'off', '--shutdown-grace', '60'], `port:${token}`);
      let out = '';
      child.stdout!.on('data', (c: Buffer) => { out += c.toString('utf8'); });
      // a stream whose body never ends: the graceful stop waits for it (up to --shutdown-grace)
      const stream = httpRequest(`http://127.0.0.1:${port}/v1/score/stream`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } });
      stream.on('error', () => { /* the process goes away */ });
      stream.on('response', (res) => res.resume());
      stream.write(`${JSON.stringify({ id: 'TWICE-1', date: '2026-11-23', office: 'OF01', importer: 'IM00001', hs: '020890', origin: 'CN', customsValue: 1200, netMass: 900 })}\n`);
      // the service has it in hand once its request log says so (the log is at info)
      const until = async (text: string) => { for (let i = 0; i < 2000 && !out.includes(text) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5)); expect(out).toContain(text); };
      try {
        await until('"url":"/v1/score/stream"');
        child.kill('SIGTERM');
        await until('finishing in-flight requests');
        child.kill('SIGTERM');
        expect(await exited).toBe(143);
        expect(out).toContain('SIGTERM again, exiting now');
        expect(out).not.toContain('selectivity: stopped');
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('serve and SIGHUP', () => {
  it('re-reads the tokens file: a revoked token is refused and a new one accepted, without a restart; a broken file changes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sel-serve-hup-'));
    const file = join(dir, 'tokens.json');
    const [oldPort, newPort, admin] = ['port-old-token-0123456789abcdef', 'port-new-token-0123456789abcdef', 'admin-hup-token-0123456789abcdef'];
    const write = (tokens: object[]) => { writeFileSync(file, JSON.stringify({ tokens })); chmodSync(file, 0o600); };
    write([{ role: 'port', token: oldPort }, { role: 'admin', token: admin }]);
    const { child, port, stderr } = await spawnServe(join(dir, 'data'), ['--threads', '1', '--tokens', file], '');
    let stdout = '';
    child.stdout!.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
    const status = async (token: string) => (await fetch(`http://127.0.0.1:${port}/v1/openapi.json`, { headers: { authorization: `Bearer ${token}` } })).status;
    const hup = async (says: () => boolean) => {
      child.kill('SIGHUP');
      for (let i = 0; i < 500 && !says(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(says(), `stdout: ${stdout}\nstderr: ${stderr()}`).toBe(true);
    };
    try {
      expect(await status(oldPort)).toBe(200);
      expect(await status(newPort)).toBe(401);
      write([{ role: 'port', token: newPort }, { role: 'admin', token: admin }]);
      await hup(() => /tokens reloaded from .*\(port 1, analyst 0, admin 1, monitor 0\)/.test(stdout));
      expect(await status(oldPort)).toBe(401);
      expect(await status(newPort)).toBe(200);
      // a file that does not hold: the tokens in use stay, and stderr says why
      writeFileSync(file, readFileSync(file, 'utf8').slice(0, 20));
      await hup(() => /tokens not reloaded, the tokens in use stay: SEL_ERR_CONFIG_INVALID/.test(stderr()));
      expect(await status(newPort)).toBe(200);
      expect(await status(oldPort)).toBe(401);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
