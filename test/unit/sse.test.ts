import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { followEvents } from '../../src/api/sse.js';

describe('following an event stream: what ends it, what is a drop', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  /** A server whose n-th answer (from 0) is answers[n]; returns a client for it and the count of requests. */
  async function serve(answers: Array<(response: http.ServerResponse) => void>): Promise<{ api: ApiClient; requests: () => number }> {
    let count = 0;
    const server = http.createServer((_request, response) => answers[Math.min(count++, answers.length - 1)]!(response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = new ApiClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't', version: '0.0.0-test', attempts: 1 });
    closers.push(async () => {
      await api.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { api, requests: () => count };
  }

  const drain = async (stream: AsyncGenerator<unknown>): Promise<unknown[]> => {
    const seen: unknown[] = [];
    for await (const item of stream) seen.push(item);
    return seen;
  };
  const noWait = { sleep: async () => undefined };

  it("a 404 is the server's answer: thrown with its status and code, no reconnect", async () => {
    const { api, requests } = await serve([
      (response) => response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: 'no job j1' } })),
    ]);
    await expect(drain(followEvents(api, '/api/v1/jobs/j1/events', noWait))).rejects.toMatchObject({
      status: 404,
      code: 'not_found',
      message: 'no job j1 (HTTP 404)',
    });
    expect(requests()).toBe(1);
  });

  it('a 500 is a drop: reconnects and reads the stream to its end', async () => {
    const event = { type: 'job', job_id: 'j1', task_id: null, project: 'demo', data: {}, at: '2026-11-23T12:00:00Z' };
    const { api, requests } = await serve([
      (response) => response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'internal', message: 'boom' } })),
      (response) =>
        response.writeHead(200, { 'content-type': 'text/event-stream' }).end(`id: 1\nevent: job\ndata: ${JSON.stringify(event)}\n\nevent: end\ndata: {}\n\n`),
    ]);
    const seen = await drain(followEvents(api, '/api/v1/jobs/j1/events', noWait));
    expect(seen).toEqual([{ id: '1', type: 'job', event }]);
    expect(requests()).toBe(2);
  });

  it('unnamed messages that are not events (a `data: ping` heartbeat, a JSON array) and unknown event types are skipped, not a drop', async () => {
    const event = { type: 'job', job_id: 'j1', task_id: null, project: 'demo', data: {}, at: '2026-11-23T12:00:00Z' };
    const { api, requests } = await serve([
      (response) =>
        response
          .writeHead(200, { 'content-type': 'text/event-stream' })
          .end(`data: ping\n\ndata: [1, 2]\n\nevent: heartbeat\ndata: not json\n\nid: 1\ndata: ${JSON.stringify(event)}\n\nevent: end\ndata: {}\n\n`),
    ]);
    const seen = await drain(followEvents(api, '/api/v1/jobs/j1/events', { ...noWait, maxReconnects: 0 }));
    expect(seen).toEqual([{ id: '1', type: 'job', event }]);
    expect(requests()).toBe(1);
  });
});
