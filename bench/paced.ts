/**
 * An open-loop load generator for latency at a fixed rate, for
 * `npm run bench:service`: request i is due at t0 + i / rate, and its latency
 * runs from that moment, so a request that waits (for a connection, or for a
 * late client) counts its wait and a server stall shows in the percentiles.
 *
 * Why not autocannon's overallRate or Node's setTimeout: autocannon lets each
 * connection send its share of a second back to back at the start of the
 * second (a burst, not a rate), and libuv timers tick in whole milliseconds,
 * so a 0.5 ms schedule cannot be kept with them. Here a clock thread sleeps
 * with Atomics.wait (a futex with a sub-millisecond timeout) and hands each due
 * request to an I/O thread, which writes pre-built HTTP/1.1 requests on raw
 * keep-alive sockets and reads the responses by Content-Length. Both threads
 * sleep between requests, so the client costs little CPU on a small machine.
 *
 * The result carries what a reader needs to tell a slow server from a late
 * client or a noisy machine: the client's own lateness (send time − due
 * time), the clock thread's wake-up lateness (how late a sleeping thread gets
 * the CPU back on this machine: its scheduling noise, with no server in it),
 * and, when the server sends one, the time it reports in a `Server-Timing:
 * app;dur=<ms>` header (request read to answer ready, inside the server).
 */
import { connect, type Socket } from 'node:net';
import { MessageChannel, Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { httpRequests, type RequestSpec } from './closed.js';

export interface PacedSpec extends RequestSpec {
  /** Keep-alive sockets; a due request goes to an idle one, or waits for the first to free up. */
  connections: number;
  /** Requests per second. */
  rate: number;
  /** Seconds of load. */
  duration: number;
}

export interface PacedResult {
  /** Per response (2xx only), ms from due time to the end of the response. */
  latencies: Float64Array;
  /** Per request sent, ms from due time to the write (the client's lateness, including waits for a socket). */
  sendLag: Float64Array;
  /** Per tick, ms the clock thread woke after the due time (the machine's scheduling noise). */
  wakeLag: Float64Array;
  /** Per 2xx response with a Server-Timing app;dur header, that duration in ms. */
  serverMs: Float64Array;
  ok: number;
  non2xx: number;
  /** Requests lost to a closed or failed socket (never answered). */
  errors: number;
  statuses: Record<string, { count: number }>;
  /** ms from the first due time to the last response. */
  elapsedMs: number;
}

const nowNs = (): number => Number(process.hrtime.bigint());

/** Runs the load in two worker threads (clock and I/O) and resolves with every latency. */
export function pacedLoad(spec: PacedSpec): Promise<PacedResult> {
  const file = fileURLToPath(import.meta.url);
  const { port1, port2 } = new MessageChannel();
  const total = Math.round(spec.rate * spec.duration);
  const io = new Worker(file, { workerData: { role: 'io', spec: { ...spec, bodies: spec.bodies.map((b) => new Uint8Array(b)) }, total, ticks: port2 }, transferList: [port2] });
  const clock = new Worker(file, { workerData: { role: 'clock', ticks: port1, total, periodNs: 1e9 / spec.rate }, transferList: [port1] });
  return new Promise((resolve, reject) => {
    let ready = 0;
    let done: Omit<PacedResult, 'wakeLag'> | undefined, wakeLag: Float64Array | undefined;
    const settle = () => {
      if (!done || !wakeLag) return;
      resolve({ ...done, wakeLag });
      void io.terminate();
      void clock.terminate();
    };
    const fail = (e: Error) => { void io.terminate(); void clock.terminate(); reject(e); };
    /** Both threads are up (sockets open, code loaded): the first request is due 5 ms from now. */
    const up = () => { if (++ready === 2) clock.postMessage({ t0: nowNs() + 5e6 }); };
    clock.once('error', fail);
    clock.on('message', (m: { ready?: true; wakeLag?: Float64Array }) => {
      if (m.ready) up();
      else if (m.wakeLag) { wakeLag = m.wakeLag; settle(); }
    });
    io.once('error', fail);
    io.on('message', (m: { ready?: true; done?: Omit<PacedResult, 'wakeLag'>; error?: string }) => {
      if (m.ready) up();
      else if (m.error) fail(new Error(m.error));
      else if (m.done) { done = m.done; settle(); }
    });
  });
}

// ---- clock thread --------------------------------------------------------------------------

function runClock(ticks: MessagePort, total: number, periodNs: number, t0: number): void {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const wakeLag = new Float64Array(total);
  for (let i = 0; i < total; i++) {
    const due = t0 + i * periodNs;
    // never early: sleep while more than 20 µs remain, then spin the rest
    for (let left = due - nowNs(); left > 0; left = due - nowNs()) if (left > 20_000) Atomics.wait(sleeper, 0, 0, left / 1e6);
    wakeLag[i] = (nowNs() - due) / 1e6;
    ticks.postMessage(due);
  }
  parentPort!.postMessage({ wakeLag }, [wakeLag.buffer]);
}

// ---- I/O thread ----------------------------------------------------------------------------

interface Conn { socket: Socket; busy: boolean; due: number; buf: Buffer | undefined }

function runIo(spec: PacedSpec, total: number, ticks: MessagePort): void {
  const requests = httpRequests(spec);
  const latencies = new Float64Array(total);
  const sendLag = new Float64Array(total);
  const serverMs = new Float64Array(total);
  let timed = 0;
  const statuses: Record<string, { count: number }> = {};
  let ok = 0, non2xx = 0, errors = 0, sent = 0, finished = 0, next = 0, t0 = NaN, lastEnd = 0;
  const waiting: number[] = []; // due times of requests without a free socket
  const conns: Conn[] = [];

  const send = (c: Conn, due: number) => {
    c.busy = true;
    c.due = due;
    sendLag[sent++] = (nowNs() - due) / 1e6;
    c.socket.write(requests[next++ % requests.length]);
  };
  /** One more request answered or lost; the last one reports. */
  const complete = () => {
    if (++finished < total) return false;
    for (const x of conns) x.socket.destroy();
    ticks.close();
    parentPort!.postMessage({ done: { latencies: latencies.slice(0, ok), sendLag: sendLag.slice(0, sent), serverMs: serverMs.slice(0, timed), ok, non2xx, errors, statuses, elapsedMs: (lastEnd - t0) / 1e6 } satisfies Omit<PacedResult, 'wakeLag'> });
    return true;
  };
  /** A due request no socket is left to send it on: a socket error. */
  const lost = () => {
    errors++;
    (statuses['socket error'] ??= { count: 0 }).count++;
    complete();
  };
  const live = (x: Conn) => !x.socket.destroyed;
  const finish = (c: Conn, status: number, server = NaN) => {
    const end = nowNs();
    if (status >= 200 && status < 300) {
      latencies[ok++] = (end - c.due) / 1e6;
      if (server === server) serverMs[timed++] = server;
    }
    else if (status > 0) non2xx++;
    (statuses[status > 0 ? String(status) : 'socket error'] ??= { count: 0 }).count++;
    c.busy = false;
    lastEnd = end;
    if (complete() || !live(c)) return; // a failed socket takes no more requests
    const w = waiting.shift();
    if (w !== undefined) send(c, w);
  };
  /** Reads whole responses (status line, headers, Content-Length body) off a connection's bytes. */
  const onData = (c: Conn, chunk: Buffer) => {
    let buf = c.buf ? Buffer.concat([c.buf, chunk]) : chunk;
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) break;
      const head = buf.toString('latin1', 0, end);
      const status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!m) {
        parentPort!.postMessage({ error: `paced client: a response without Content-Length (${head.split('\r\n', 1)[0]})` });
        return;
      }
      const size = end + 4 + Number(m[1]);
      if (buf.length < size) break;
      buf = buf.subarray(size);
      const t = /\r\nserver-timing:[^\r]*\bapp;dur=([0-9.]+)/i.exec(head);
      finish(c, status, t ? Number(t[1]) : NaN);
    }
    c.buf = buf.length > 0 ? Buffer.from(buf) : undefined; // a copy: the read buffer is reused
  };

  let open = 0;
  for (let k = 0; k < spec.connections; k++) {
    // reads land in one reused buffer per socket (net's onread): no stream machinery or new Buffer per read
    const c: Conn = {
      socket: connect({ host: spec.host, port: spec.port, noDelay: true, onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: (n: number, b: Uint8Array) => { onData(c, Buffer.from(b.buffer, b.byteOffset, n)); return true; } } }),
      busy: false, due: 0, buf: undefined,
    };
    conns.push(c);
    c.socket.on('connect', () => { if (++open === spec.connections) parentPort!.postMessage({ ready: true }); });
    c.socket.on('error', () => undefined); // 'close' follows
    c.socket.on('close', () => {
      if (open < spec.connections) { parentPort!.postMessage({ error: `paced client: cannot connect to ${spec.host}:${spec.port}` }); return; }
      // the server closed it, or it failed: its request is lost, and with the last socket every waiting one
      if (c.busy) { errors++; finish(c, 0); }
      if (!conns.some(live)) while (waiting.length > 0) { waiting.shift(); lost(); }
    });
  }
  ticks.on('message', (due: number) => {
    if (Number.isNaN(t0)) t0 = due;
    const c = conns.find((x) => !x.busy && live(x));
    if (c) send(c, due);
    else if (conns.some(live)) waiting.push(due);
    else lost();
  });
}

if (!isMainThread && workerData?.role === 'clock') {
  parentPort!.once('message', (m: { t0: number }) => runClock(workerData.ticks, workerData.total, workerData.periodNs, m.t0));
  parentPort!.postMessage({ ready: true });
}
else if (!isMainThread && workerData?.role === 'io') runIo({ ...workerData.spec, bodies: workerData.spec.bodies.map((b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)) }, workerData.total, workerData.ticks);
