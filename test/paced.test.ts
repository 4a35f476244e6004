/**
 * The benchmark's open-loop client (bench/paced.ts), against a local HTTP
 * server whose answers are known: every request is sent and read back once,
 * statuses and Server-Timing are parsed, and the schedule is kept (requests
 * go out at the rate asked, not all at once). Its threads run from dist/:
 * `npm run build:ts` first. Nothing here asserts a latency.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The built module: its threads load their own .js file. */
const built = fileURLToPath(new URL('../dist/bench/paced.js', import.meta.url));
const { pacedLoad: run } = (await import(built)) as typeof import('../bench/paced.js');

describe('paced load generator', () => {
  let server: http.Server;
  let port: number;
  const bodies: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        bodies.push(body);
        // body b4 gets a 503, the rest their body back with a timing header
        if (body.endsWith('4')) { res.writeHead(503, { 'content-length': '4' }); res.end('busy'); return; }
        res.writeHead(200, { 'content-type': 'text/plain', 'server-timing': 'app;dur=0.250, kernel;dur=0.010', 'content-length': String(body.length) });
        res.end(body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); });

  it('sends every request once at the rate asked and reads every answer', async () => {
    const rate = 400, duration = 0.5, total = rate * duration;
    const payloads = ['b0', 'b1', 'b2', 'b3', 'b4'].map((s) => Buffer.from(s));
    const r = await run({ host: '127.0.0.1', port, path: '/x', bodies: payloads, headers: { 'content-type': 'text/plain' }, connections: 3, rate, duration });

    expect(bodies).toHaveLength(total);
    // bodies used in turn (they may arrive out of order: they travel on different sockets)
    const uses: Record<string, number> = {};
    for (const b of bodies) uses[b] = (uses[b] ?? 0) + 1;
    expect(uses).toEqual({ b0: total / 5, b1: total / 5, b2: total / 5, b3: total / 5, b4: total / 5 });
    expect(r.ok).toBe(total * 4 / 5);
    expect(r.non2xx).toBe(total / 5);
    expect(r.errors).toBe(0);
    expect(r.statuses).toEqual({ 200: { count: total * 4 / 5 }, 503: { count: total / 5 } });
    expect(r.latencies).toHaveLength(r.ok);
    expect(r.serverMs).toHaveLength(r.ok);
    expect([...new Set(r.serverMs)]).toEqual([0.25]);
    expect(r.sendLag).toHaveLength(total);
    expect(r.wakeLag).toHaveLength(total);
    for (const x of r.latencies) expect(x).toBeGreaterThan(0);
    // paced, not a burst: nothing goes out before it is due, and the last answer comes after the last due time
    for (const x of r.sendLag) expect(x).toBeGreaterThanOrEqual(0);
    expect(r.elapsedMs).toBeGreaterThanOrEqual((total - 1) * (1000 / rate));
  });

  it('counts the requests of sockets the server closes as errors, and still finishes', async () => {
    const closing = http.createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => closing.listen(0, '127.0.0.1', r));
    try {
      const p = (closing.address() as AddressInfo).port;
      const r = await run({ host: '127.0.0.1', port: p, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 2, rate: 200, duration: 0.05 });
      expect([r.ok, r.non2xx, r.errors]).toEqual([0, 0, 10]);
      expect(r.statuses).toEqual({ 'socket error': { count: 10 } });
    } finally {
      closing.closeAllConnections();
      await new Promise<void>((r) => closing.close(() => r()));
    }
  });

  it('fails with a clear error when it cannot connect', async () => {
    const gone = http.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const p = (gone.address() as AddressInfo).port;
    await new Promise<void>((r) => gone.close(() => r()));
    await expect(run({ host: '127.0.0.1', port: p, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 1, rate: 100, duration: 0.05 })).rejects.toThrow(/cannot connect/);
  });

  it('fails with a clear error when an answer has no Content-Length', async () => {
    const chunked = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.write('a'); res.end('b'); }); });
    await new Promise<void>((r) => chunked.listen(0, '127.0.0.1', r));
    try {
      const p = (chunked.address() as AddressInfo).port;
      await expect(run({ host: '127.0.0.1', port: p, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 1, rate: 100, duration: 0.05 })).rejects.toThrow(/without Content-Length/);
    } finally {
      chunked.closeAllConnections();
      await new Promise<void>((r) => chunked.close(() => r()));
    }
  });
});
