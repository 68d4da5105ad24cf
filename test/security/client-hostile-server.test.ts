import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { followEvents } from '../../src/api/sse.js';
import { cycleBin } from '../helpers/binary.js';
import { runMain, tempDir } from '../helpers/context.js';
import { serveForTest } from '../helpers/local-http.js';

// Issue 18, Medium 6: the CLI trusted a server's size and speed. A huge answer was buffered whole,
// a stalled body hung the CLI until SIGKILL, an SSE line without its end grew until V8 aborted,
// and a stream dropped after each event was reconnected forever.
let root: string;
beforeEach(async () => {
  root = await tempDir('cycle-sec-hostile-');
});

const serve = serveForTest;

async function cycle(apiUrl: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return runMain(args, {
    env: { HOME: root, XDG_CONFIG_HOME: path.join(root, '.cfg'), CYCLE_API_URL: apiUrl, CYCLE_TOKEN: 'secret-token', CYCLE_HTTP_RETRIES: '1', ...env },
    cwd: root,
  });
}

/** Writes `total` bytes of `chunk`s, as fast as the reader takes them; counts what was sent. */
function flood(res: http.ServerResponse, total: number, counter: { sent: number }, chunk = Buffer.alloc(256 * 1024, 32)): void {
  const more = (): void => {
    while (!res.destroyed && counter.sent < total) {
      counter.sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    if (!res.destroyed) res.end();
  };
  res.on('error', () => undefined);
  more();
}

describe('answers too large or too slow', () => {
  it('a JSON answer over 128 MiB is refused, naming the route and the limit, without reading it all', async () => {
    const total = 256 << 20;
    const counter = { sent: 0 };
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id": "job_1", "status": "running", "pad": "');
      flood(res, total, counter);
    });
    const result = await cycle(url, ['job', 'get', 'job_1']);
    expect(result.code, result.stderr).toBe(5);
    expect(result.stderr).toContain('GET /api/v1/jobs/job_1');
    expect(result.stderr).toContain('larger than 128 MiB');
    expect(counter.sent).toBeLessThan(total);
  });

  it('a Content-Length over the limit is refused before the body is read', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(1 << 30) });
      res.write('{"id": "job_1"');
    });
    const result = await cycle(url, ['job', 'get', 'job_1']);
    expect(result.code).toBe(5);
    expect(result.stderr).toContain('larger than 128 MiB');
  }, 30_000);

  it('a body that stalls after its headers fails after CYCLE_HTTP_TIMEOUT, not never', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id": "job_1", ');
    });
    const started = Date.now();
    const result = await cycle(url, ['job', 'get', 'job_1'], { CYCLE_HTTP_TIMEOUT: '1' });
    expect(result.code).toBe(5);
    expect(result.stderr).toContain('the answer stalled (no data for 1s');
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 30_000);

  it('SIGTERM ends a request whose body stalls: exit 143, at once', async () => {
    let asked!: () => void;
    const requested = new Promise<void>((resolve) => (asked = resolve));
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id": "job_1", ', () => asked());
    });
    // The timeout only ends a run that would hang (the old behaviour), so no process outlives the test.
    const child = spawn(process.execPath, [cycleBin, 'job', 'get', 'job_1'], {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: root, XDG_CONFIG_HOME: path.join(root, '.cfg'), CYCLE_API_URL: url, CYCLE_TOKEN: 't', CYCLE_HTTP_TIMEOUT: '600' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    await requested;
    // The CLI reads the body's first bytes; then it waits on the stall.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const signalled = Date.now();
    child.kill('SIGTERM');
    const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
    expect({ code, signal }, stderr).toEqual({ code: 143, signal: null });
    expect(Date.now() - signalled).toBeLessThan(10_000);
    expect(stderr).toContain('terminated');
  }, 30_000);
});

describe('event streams', () => {
  const client = (url: string): ApiClient => new ApiClient({ baseUrl: url, token: 't', version: '0.0.0-test', attempts: 1 });
  const drain = async (stream: AsyncGenerator<unknown>): Promise<unknown[]> => {
    const seen: unknown[] = [];
    for await (const item of stream) seen.push(item);
    return seen;
  };

  it('a line that never ends is stopped at 16 MiB, and not asked for again', async () => {
    const total = 48 << 20;
    const counter = { sent: 0 };
    let requests = 0;
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (requests++ > 0) return void res.end('event: end\ndata: {}\n\n');
      res.write('data: ');
      flood(res, total, counter, Buffer.alloc(256 * 1024, 120));
    });
    const api = client(url);
    try {
      await expect(drain(followEvents(api, '/api/v1/jobs/job_1/stream', { sleep: async () => undefined }))).rejects.toThrow(
        'more than 16 MiB without ending an event',
      );
    } finally {
      await api.close();
    }
    expect(requests).toBe(1);
    expect(counter.sent).toBeLessThan(total);
  });

  it('a stream dropped after each event is reconnected with growing waits, then given up with a clear error', async () => {
    let requests = 0;
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      requests++;
      // Bounded: a client that never gives up ends here, and the test sees it did not.
      if (requests > 100) return void res.end('event: end\ndata: {}\n\n');
      const event = { type: 'job', job_id: 'job_1', task_id: null, project: 'demo', data: {}, at: '2026-11-23T12:00:00Z' };
      res.end(`id: ${requests}\nevent: job\ndata: ${JSON.stringify(event)}\n\n`);
    });
    const waits: number[] = [];
    const api = client(url);
    try {
      await expect(drain(followEvents(api, '/api/v1/jobs/job_1/stream', { sleep: async (ms) => void waits.push(ms), maxReconnects: 8 }))).rejects.toThrow(
        /could not reconnect: 8 reconnects in a row/,
      );
    } finally {
      await api.close();
    }
    expect(requests).toBe(9);
    expect(waits).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  });
});
