/**
 * The benchmark's closed-loop client (bench/closed.ts), against local servers
 * whose answers are known: every request sent is answered and counted once,
 * statuses are told apart, bodies are counted to their Content-Length however
 * the bytes are split across reads, the first 2xx body comes back whole, and
 * the client stops sending at the end of its time but waits for the answers
 * it is owed. Nothing here asserts a latency.
 */
import http from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { closedLoad } from '../bench/closed.js';

const listen = async (server: http.Server | Server): Promise<number> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
};
const close = (server: http.Server | Server) => new Promise<void>((r) => server.close(() => r()));

describe('closed-loop load generator', () => {
  it('answers every request it sends, tells 2xx from the rest, and returns the first 2xx body whole', async () => {
    const bodies: string[] = [];
    const server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        bodies.push(body);
        if (body === 'b2') { res.writeHead(503, { 'content-length': '4' }); res.end('busy'); return; }
        // a body larger than one socket read, so that it arrives in pieces
        const reply = `${body}:${'x'.repeat(200_000)}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(reply.length) });
        res.end(reply);
      });
    });
    const port = await listen(server);
    try {
      const r = await closedLoad({ host: '127.0.0.1', port, path: '/x', bodies: ['b0', 'b1', 'b2'].map((s) => Buffer.from(s)), headers: { 'content-type': 'text/plain' }, connections: 3, duration: 0.3 });
      expect(r.ok + r.non2xx).toBe(bodies.length);
      expect(bodies.length).toBeGreaterThan(6);
      const uses: Record<string, number> = {};
      for (const b of bodies) uses[b] = (uses[b] ?? 0) + 1;
      expect(r.non2xx).toBe(uses.b2);
      expect(r.ok).toBe((uses.b0 ?? 0) + (uses.b1 ?? 0));
      expect(r.statuses).toEqual({ 200: { count: r.ok }, 503: { count: r.non2xx } });
      expect(r.errors).toBe(0);
      expect(r.latencies).toHaveLength(r.ok);
      for (const x of r.latencies) expect(x).toBeGreaterThan(0);
      const first = r.firstBody!.toString('utf8');
      expect(first).toMatch(/^b[01]:x{200000}$/);
      expect(r.elapsedMs).toBeGreaterThanOrEqual(300); // it kept sending for its whole time
    } finally {
      server.closeAllConnections();
      await close(server);
    }
  });

  it('reads answers whose head and body are split at every byte, and pipelined ones that share a read', async () => {
    // a raw server: each answer written in pieces of 1 to 5 bytes, and sometimes glued to the next write
    let served = 0;
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      let pending = '';
      socket.on('data', (c: Buffer) => {
        pending += c.toString('latin1');
        for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
          const len = Number(/content-length: (\d+)/i.exec(pending.slice(0, end))![1]);
          if (pending.length < end + 4 + len) break;
          pending = pending.slice(end + 4 + len);
          const n = served++;
          const body = `answer ${n}`;
          const bytes = Buffer.from(`HTTP/1.1 ${n % 4 === 3 ? 404 : 200} X\r\nContent-Length: ${body.length}\r\nX-Long: ${'h'.repeat(n % 7)}\r\n\r\n${body}`, 'latin1');
          let at = 0;
          const step = () => {
            if (at >= bytes.length || socket.destroyed) return;
            const size = 1 + ((n + at) % 5);
            socket.write(bytes.subarray(at, at + size));
            at += size;
            setImmediate(step);
          };
          step();
        }
      });
    });
    const port = await listen(server);
    try {
      const r = await closedLoad({ host: '127.0.0.1', port, path: '/', bodies: [Buffer.from('q')], headers: {}, connections: 2, duration: 0.2 });
      expect(r.ok + r.non2xx).toBe(served);
      expect(served).toBeGreaterThan(4);
      expect(r.errors).toBe(0);
      expect(r.statuses['404']?.count ?? 0).toBe(r.non2xx);
      expect(r.firstBody!.toString('latin1')).toMatch(/^answer \d+$/);
    } finally {
      for (const s of sockets) s.destroy();
      await close(server);
    }
  });

  it('counts the requests of sockets the server closes as errors, and still finishes', async () => {
    const server = http.createServer((req) => req.socket.destroy());
    const port = await listen(server);
    try {
      const r = await closedLoad({ host: '127.0.0.1', port, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 2, duration: 1 });
      expect([r.ok, r.non2xx, r.errors]).toEqual([0, 0, 2]);
      expect(r.statuses).toEqual({ 'socket error': { count: 2 } });
      expect(r.firstBody).toBeUndefined();
    } finally {
      server.closeAllConnections();
      await close(server);
    }
  });

  it('fails with a clear error when it cannot connect, and refuses a spec it cannot run', async () => {
    const gone = http.createServer();
    const port = await listen(gone);
    await close(gone);
    await expect(closedLoad({ host: '127.0.0.1', port, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 1, duration: 0.1 })).rejects.toThrow(/cannot connect/);
    expect(() => closedLoad({ host: '127.0.0.1', port, path: '/', bodies: [], headers: {}, connections: 1, duration: 0.1 })).toThrow(RangeError);
    expect(() => closedLoad({ host: '127.0.0.1', port, path: '/', bodies: [Buffer.from('x')], headers: {}, connections: 0, duration: 0.1 })).toThrow(RangeError);
  });
});
