/**
 * A closed-loop load generator for throughput, for `npm run bench:service`:
 * each of N keep-alive connections sends a request, reads the whole response,
 * and sends the next, for a given time; then it stops sending and waits for
 * the answers still due, so no request is cut off mid-flight.
 *
 * Why not autocannon for the batch tests: on this 2-core machine the load
 * generator shares the cores with the server, so its own CPU per request
 * takes from the server's. autocannon 8 appends every response body to a
 * JavaScript string (`req.body += data`), which for a 130 kB MessagePack reply
 * is a UTF-8 decode of binary data per response, about a third of its CPU.
 * This client writes pre-built HTTP/1.1 requests on raw sockets and reads
 * responses by their status line and Content-Length, counting body bytes
 * without copying them, each socket reading into one reused buffer (net's
 * `onread`: no stream machinery and no new Buffer per read). It checks what autocannon checks (status, whole
 * body) and keeps the first 2xx body so the caller can check its content.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** Where requests go and what they carry: shared by this client and the paced one (bench/paced.ts). */
export interface RequestSpec {
  host: string;
  port: number;
  path: string;
  /** Request bodies, used in turn. */
  bodies: Buffer[];
  headers: Record<string, string>;
}

export interface ClosedSpec extends RequestSpec {
  /** Keep-alive connections, each with one request in flight. */
  connections: number;
  /** Seconds during which requests are sent. */
  duration: number;
}

export interface ClosedResult {
  /** Per 2xx response, ms from the write of its request to the end of its body. */
  latencies: Float64Array;
  ok: number;
  non2xx: number;
  /** Requests lost to a socket that closed or failed before answering. */
  errors: number;
  statuses: Record<string, { count: number }>;
  /** ms from the first write to the last response. */
  elapsedMs: number;
  /** Body of the first 2xx response. */
  firstBody: Buffer | undefined;
}

/** The bytes of each request: headers and body, written in one go. */
export function httpRequests(spec: RequestSpec): Buffer[] {
  return spec.bodies.map((b) => {
    const head = [`POST ${spec.path} HTTP/1.1`, `Host: ${spec.host}:${spec.port}`, 'Connection: keep-alive', ...Object.entries(spec.headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${b.byteLength}`, '', ''].join('\r\n');
    return Buffer.concat([Buffer.from(head, 'latin1'), b]);
  });
}

interface Conn {
  socket: Socket;
  busy: boolean;
  sentAt: number;
  /** Header bytes of a response not yet complete (its head split across reads). */
  head: Buffer | undefined;
  /** Body bytes still to come of the response being read; -1 while reading a head. */
  remaining: number;
  status: number;
  /** Parts of the body being kept (the first 2xx response only). */
  keep: Buffer[] | undefined;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Bytes per socket read. */
const READ_BUFFER = 256 * 1024;

/** Runs the load and resolves when the last answer due has come (or its socket has gone). */
export function closedLoad(spec: ClosedSpec): Promise<ClosedResult> {
  if (!(spec.connections >= 1) || !(spec.duration > 0) || spec.bodies.length === 0) throw new RangeError('closedLoad: connections >= 1, duration > 0 and at least one body');
  const requests = httpRequests(spec);
  const latencies: number[] = [];
  const statuses: Record<string, { count: number }> = {};
  let ok = 0, non2xx = 0, errors = 0, next = 0, open = 0, closed = 0;
  let firstBody: Buffer | undefined;
  let keeping = false;
  let t0 = 0, lastEnd = 0, stopAt = Infinity;
  const conns: Conn[] = [];

  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = () => {
      if (settled || conns.some((c) => c.busy && !c.socket.destroyed)) return;
      settled = true;
      for (const c of conns) c.socket.destroy();
      resolve({ latencies: Float64Array.from(latencies), ok, non2xx, errors, statuses, elapsedMs: lastEnd - t0, firstBody });
    };
    const send = (c: Conn) => {
      c.busy = true;
      c.sentAt = performance.now();
      c.socket.write(requests[next++ % requests.length]);
    };
    const answered = (c: Conn) => {
      const end = performance.now();
      lastEnd = end;
      (statuses[String(c.status)] ??= { count: 0 }).count++;
      if (c.status >= 200 && c.status < 300) { ok++; latencies.push(end - c.sentAt); }
      else non2xx++;
      if (c.keep) { firstBody = Buffer.concat(c.keep); c.keep = undefined; }
      c.busy = false;
      if (end < stopAt) send(c);
      else settle();
    };
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      for (const c of conns) c.socket.destroy();
      reject(new Error(`closed-loop client: ${message}`));
    };
    /** Reads response heads and counts body bytes off a connection's reads. */
    const onData = (c: Conn, chunk: Buffer) => {
      let buf = chunk;
      let p = 0;
      while (p < buf.length) {
        if (c.remaining > 0) {
          const take = Math.min(c.remaining, buf.length - p);
          if (c.keep) c.keep.push(Buffer.from(buf.subarray(p, p + take)));
          c.remaining -= take;
          p += take;
          if (c.remaining === 0) { c.remaining = -1; answered(c); }
          continue;
        }
        if (c.head) { buf = Buffer.concat([c.head, buf.subarray(p)]); p = 0; c.head = undefined; }
        const end = buf.indexOf(CRLFCRLF, p);
        if (end < 0) { c.head = Buffer.from(buf.subarray(p)); return; }
        const head = buf.toString('latin1', p, end);
        c.status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (!m) { fail(`a response without Content-Length (${head.split('\r\n', 1)[0]})`); return; }
        c.remaining = Number(m[1]);
        if (!keeping && c.status >= 200 && c.status < 300) { keeping = true; c.keep = []; }
        p = end + 4;
        if (c.remaining === 0) { c.remaining = -1; answered(c); }
      }
    };

    for (let k = 0; k < spec.connections; k++) {
      // reads land in one buffer per socket, reused (net's onread): no stream machinery or new Buffer per read; onData copies what it keeps
      const c: Conn = {
        socket: connect({ host: spec.host, port: spec.port, noDelay: true, onread: { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, b: Uint8Array) => { onData(c, Buffer.from(b.buffer, b.byteOffset, n)); return true; } } }),
        busy: false, sentAt: 0, head: undefined, remaining: -1, status: 0, keep: undefined,
      };
      conns.push(c);
      c.socket.on('connect', () => {
        if (++open < spec.connections) return;
        // every socket is up: start the clock and the load
        t0 = performance.now();
        stopAt = t0 + spec.duration * 1000;
        for (const x of conns) send(x);
      });
      c.socket.on('error', () => undefined); // 'close' follows
      c.socket.on('close', () => {
        closed++;
        if (open < spec.connections) { fail(`cannot connect to ${spec.host}:${spec.port}`); return; }
        if (c.busy) {
          // closed (by the server, or failed) with a request in flight: lost
          errors++;
          (statuses['socket error'] ??= { count: 0 }).count++;
          c.busy = false;
        }
        if (closed === conns.length || !conns.some((x) => x.busy && !x.socket.destroyed)) settle();
      });
    }
  });
}
