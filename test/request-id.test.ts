/**
 * X-Request-Id: a caller's own id is kept (its logs and the service's meet
 * on it) and every answer carries the request's id; without one, or with
 * one that could not go into a log line safely, the service makes its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inProcessService, MEAT, TOKENS, type InProcessService } from './service-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sel-reqid-'));
let service: InProcessService;
const lines: Record<string, unknown>[] = [];
beforeAll(async () => {
  service = await inProcessService(join(dir, 'data'), { server: { logger: { level: 'info', stream: { write: (l: string) => { lines.push(JSON.parse(l)); } } } as never } });
});
afterAll(async () => {
  await service.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('X-Request-Id', () => {
  it('keeps the caller\'s id, answers it, and logs the request under it', async () => {
    const id = 'port-gw:7f3a.0001_X';
    const r = await service.app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${TOKENS.port}`, 'x-request-id': id }, payload: { declarations: [MEAT] } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['x-request-id']).toBe(id);
    expect(lines.filter((l) => l.reqId === id).length).toBeGreaterThan(0);
    // errors too
    const refused = await service.app.inject({ method: 'POST', url: '/v1/score', headers: { 'x-request-id': id } });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['x-request-id']).toBe(id);
  });

  it('makes its own, different for every request, without one or for one it cannot take', async () => {
    const ids = new Set<string>();
    for (const given of [undefined, 'has spaces', 'x'.repeat(129), 'new\u00e9line', '']) {
      const r = await service.app.inject({ url: '/healthz', headers: given === undefined ? {} : { 'x-request-id': given } });
      const id = r.headers['x-request-id'] as string;
      expect(id, String(given)).toMatch(/^[A-Za-z0-9_-]{8}-[0-9a-z]+$/);
      ids.add(id);
    }
    expect(ids.size).toBe(5);
  });
});
