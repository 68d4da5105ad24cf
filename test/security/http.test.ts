import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { createHttpServer, depthExceededAt, mayHoldProtoKey } from '../../src/server/http/router.js';
import { DEFAULT_HTTP_LIMITS } from '../../src/server/limits.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { fakeContext, tempDir } from '../helpers/context.js';
import { rawTar, VALID_PROJECT } from '../helpers/tarballs.js';
import { startServerProcess, type ServerProcess, startFakeDockerServer } from '../helpers/server.js';
import { waitFor } from '../helpers/e2e.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function inProcessServer(
  init: { dataDir?: string; docker?: FakeDocker; steps?: Array<() => Promise<unknown>> } = {},
): Promise<RunningServer & { logged: string[] }> {
  const steps = init.steps ?? cleanup;
  const dataDir = init.dataDir ?? (await tempDir('cycle-sec-http-'));
  const logged: string[] = [];
  const server = await startFakeDockerServer(init.docker ?? new FakeDocker(), {
    dataDir,
    log: (line) => logged.push(line),
  });
  steps.push(() => fs.rm(dataDir, { recursive: true, force: true }));
  steps.push(() => server.close());
  return Object.assign(server, { logged });
}

async function call(
  server: { url: string; token: string },
  method: string,
  route: string,
  init: { body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** A ustar entry with a pax header for a name of any length (as tar writes names over 100 bytes). */
function longNameEntry(name: string, body: string): Buffer {
  let record = '';
  for (let length = name.length + 8; ; length++) {
    record = `${length} path=${name}\n`;
    if (Buffer.byteLength(record) === length) break;
  }
  const pax = rawTar([{ name: 'PaxHeader', body: record }]).subarray(0, -1024);
  pax.write('x', 156, 1, 'ascii'); // the pax type: rawTar writes only the plain types
  let sum = 0;
  pax.fill(0x20, 148, 156);
  for (const byte of pax.subarray(0, 512)) sum += byte;
  pax.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return Buffer.concat([pax, rawTar([{ name: name.slice(0, 99), body }]).subarray(0, -1024)]);
}

function pushable(extra: Buffer): Buffer {
  return gzipSync(Buffer.concat([rawTar(VALID_PROJECT).subarray(0, -1024), extra, Buffer.alloc(1024)]));
}

const DEEP = '['.repeat(5000) + ']'.repeat(5000);

describe('client faults are 4xx, and no answer shows a host path', () => {
  let server: RunningServer & { logged: string[] };
  const shared: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    server = await inProcessServer({ steps: shared });
    const fresh = await call(server, 'POST', '/api/v1/projects/p/push', { body: gzipSync(rawTar(VALID_PROJECT)) });
    expect(fresh.status).toBe(201);
  });
  afterAll(async () => {
    for (const step of shared.splice(0).reverse()) await step();
  });

  it.each([
    ['GET', '/api/v1/jobs/%ZZ', 'id'],
    ['GET', '/api/v1/jobs/%E0%A4%A/tasks', 'id'],
    ['GET', '/api/v1/projects/p/kv/%ZZ', 'key'],
    ['PUT', '/api/v1/projects/%/kv/k', 'name'],
    ['GET', '/api/v1/artifacts/%ZZ', 'id'],
  ])('a malformed %%-escape, %s %s: a 400 naming the %s', async (method, route, field) => {
    const answer = await call(server, method, route);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text)).toEqual({ error: { code: 'invalid_path', message: expect.stringContaining('%-escape'), field } });
  });

  it.each([
    ['GET', `/api/v1/jobs/${'j'.repeat(256)}`],
    ['GET', `/api/v1/artifacts/${'a'.repeat(300)}`],
    ['GET', `/api/v1/projects/${'p'.repeat(300)}/status`],
    ['PUT', `/api/v1/projects/p/kv/${'k'.repeat(300)}`],
  ])('a name over 255 bytes in the path: %s %s is a 400', async (method, route) => {
    const answer = await call(server, method, route, method === 'PUT' ? { body: '{"value":1}', headers: { 'content-type': 'application/json' } } : {});
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text).error.code).toBe('name_too_long');
  });

  it('a pushed file name over 255 bytes is a 4xx that shows no host path', async () => {
    const answer = await call(server, 'POST', '/api/v1/projects/long/push', { body: pushable(longNameEntry('x'.repeat(300), 'hi')) });
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(500);
    expect(answer.text).not.toContain(server.dataDir);
    expect(answer.text).not.toMatch(/\/tmp\/|\/home\//);
  });

  it.each([
    ['POST', '/api/v1/jobs', DEEP],
    ['POST', '/api/v1/jobs', JSON.stringify({ project: 'p', payload: { a: 1 } }).replace('1', '{"a":'.repeat(5000) + '1' + '}'.repeat(5000))],
    ['POST', '/api/v1/jobs/batch', `{"jobs":[${DEEP}]}`],
    ['PUT', '/api/v1/projects/p/kv/k', `{"value":${DEEP}}`],
    ['POST', '/api/v1/projects/p/init', DEEP],
  ])('JSON nested 5,000 deep: %s %s is a 400 json_too_deep', async (method, route, body) => {
    const answer = await call(server, method, route, { body, headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text).error.code).toBe('json_too_deep');
  });

  it('JSON nested up to the limit is accepted', async () => {
    const nested = '{"a":'.repeat(60) + '1' + '}'.repeat(60);
    const answer = await call(server, 'PUT', '/api/v1/projects/p/kv/deep', { body: `{"value":${nested}}`, headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(200);
  });

  it('an internal error is a 500 with a reference to the log, not the error itself', async () => {
    const db = new Database(path.join(server.dataDir, 'cycle.db'));
    db.prepare("INSERT INTO kv (project, key, value, updated_at) VALUES ('p', 'broken', 'not json', '')").run();
    db.close();
    const answer = await call(server, 'GET', '/api/v1/projects/p/kv');
    expect(answer.status).toBe(500);
    const { error } = JSON.parse(answer.text) as { error: { code: string; message: string } };
    expect(error.code).toBe('internal');
    const reference = /reference ([0-9a-f]{8})/.exec(error.message)?.[1];
    expect(reference).toBeDefined();
    expect(error.message).not.toMatch(/JSON|token|position/);
    expect(server.logged.some((line) => line.includes(`internal error ${reference}`) && /JSON/.test(line))).toBe(true);
  });
});

describe('artifact ranges', () => {
  it('a Range at or past the end is a 416 saying the size; a range inside is a 206; a complete part file still downloads', async () => {
    const docker = new FakeDocker();
    docker.onRun = async (spec) => {
      const outputs = spec.mounts.find((m) => m.target === '/artifacts')!;
      await fs.writeFile(path.join(outputs.source, 'hello.txt'), 'hello world');
      return 0;
    };
    const server = await inProcessServer({ docker });
    expect((await call(server, 'POST', '/api/v1/projects/p/push', { body: gzipSync(rawTar(VALID_PROJECT)) })).status).toBe(201);
    const job = JSON.parse((await call(server, 'POST', '/api/v1/jobs', { body: '{"project":"p"}', headers: { 'content-type': 'application/json' } })).text) as {
      id: string;
    };
    let artifacts: Array<{ id: string; size: number }> = [];
    await waitFor(
      async () => (artifacts = JSON.parse((await call(server, 'GET', `/api/v1/artifacts?job=${job.id}`)).text).artifacts).length > 0,
      30_000,
      'the artifact',
    );
    const id = artifacts[0]!.id;
    for (const start of [11, 12, 1_000_000]) {
      const answer = await call(server, 'GET', `/api/v1/artifacts/${id}`, { headers: { range: `bytes=${start}-` } });
      expect(answer.status).toBe(416);
      expect(answer.headers.get('content-range')).toBe('bytes */11');
      expect(JSON.parse(answer.text).error.code).toBe('range_not_satisfiable');
    }
    const middle = await call(server, 'GET', `/api/v1/artifacts/${id}`, { headers: { range: 'bytes=2-4' } });
    expect(middle.status).toBe(206);
    expect(middle.text).toBe('llo');
    expect(middle.headers.get('content-range')).toBe('bytes 2-4/11');
    expect((await call(server, 'GET', `/api/v1/artifacts/${id}`, { headers: { range: 'bytes=6-' } })).text).toBe('world');

    // A download that stopped after the last byte but before the rename resumes to the whole file.
    const out = await tempDir('cycle-sec-download-');
    cleanup.push(() => fs.rm(out, { recursive: true, force: true }));
    await fs.writeFile(path.join(out, `.${id}.cycle-part`), 'hello world');
    const { download } = await import('../../src/commands/artifacts.js');
    const { ctx } = fakeContext({ cwd: out, env: { CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token } });
    expect(await download({ ids: [id], out, json: false, overwrite: false }, ctx)).toBe(0);
    expect(await fs.readFile(path.join(out, 'hello.txt'), 'utf8')).toBe('hello world');
  });
});

describe('the data folder is private', () => {
  it('0700 for the folder and 0600 for the database, also when they existed with looser modes', async () => {
    const dataDir = await tempDir('cycle-sec-perms-');
    await fs.chmod(dataDir, 0o755);
    await fs.writeFile(path.join(dataDir, 'cycle.db'), '', { mode: 0o644 });
    await fs.chmod(path.join(dataDir, 'cycle.db'), 0o644);
    const server = await inProcessServer({ dataDir });
    expect((await call(server, 'PUT', '/api/v1/projects/p/kv/k', { body: '{"value":1}', headers: { 'content-type': 'application/json' } })).status).toBe(404); // a write: the WAL exists
    expect((await fs.stat(dataDir)).mode & 0o777).toBe(0o700);
    for (const name of ['cycle.db', 'cycle.db-wal', 'cycle.db-shm', 'token'])
      expect({ name, mode: (await fs.stat(path.join(dataDir, name))).mode & 0o777 }).toEqual({ name, mode: 0o600 });
  });
});

describe('the HTTP server has no total request timeout, only idleness', () => {
  it('requestTimeout is off (a slow push is fine), headers and idleness are timed', () => {
    const server = createHttpServer(() => undefined, DEFAULT_HTTP_LIMITS);
    expect(server.requestTimeout).toBe(0);
    expect(server.headersTimeout).toBe(DEFAULT_HTTP_LIMITS.headersTimeoutMs);
    expect(server.timeout).toBe(DEFAULT_HTTP_LIMITS.idleTimeoutMs);
    expect(depthExceededAt('{"a":"[[[[[[[[[[[[[["}', 3)).toBe(-1);
    expect(depthExceededAt('[[[[', 3)).toBe(3);
  });
});

describe('a body is walked for "__proto__" keys only when its text can hold one', () => {
  it('every way JSON can write the key is caught by the text check; a body without any is not walked', () => {
    for (const text of ['{"__proto__":1}', '{"\\u005f_proto__":1}', '{"__pr\\u006fto__":1}', '{"\\u005F\\u005Fproto__":1}'])
      expect(mayHoldProtoKey(text), text).toBe(true);
    // The key written with JSON's short escapes is not __proto__ (none of them makes a letter or "_").
    expect(Object.keys(JSON.parse('{"__proto\\/__":1}'))).toEqual(['__proto/__']);
    expect(mayHoldProtoKey(JSON.stringify({ n: Array.from({ length: 1000 }, (_, i) => i), path: 'a/b\n' }))).toBe(false);
  });
});

// ---- the real binary, attacked over TCP on 127.0.0.1 ----

/** Tasks fail at once (no Docker client): these tests are about the HTTP layer. */
const NO_DOCKER = { CYCLE_DOCKER_BIN: '/nonexistent/docker' };

async function binary(env: Record<string, string> = {}, dataDir?: string): Promise<ServerProcess> {
  const server = await startServerProcess({ workers: 1, env: { ...NO_DOCKER, ...env }, ...(dataDir ? { dataDir } : {}) });
  cleanup.push(() => fs.rm(server.dataDir, { recursive: true, force: true }));
  cleanup.push(() => server.stop('SIGKILL'));
  return server;
}

const sockets: net.Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});

/** A TCP connection to the server that tracks whether the server closed it. */
async function connect(url: string): Promise<net.Socket & { closedByServer: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const closedByServer = new Promise<void>((resolve) => {
    socket.on('error', () => undefined);
    socket.once('close', () => resolve());
    socket.once('end', () => resolve());
  });
  return Object.assign(socket, { closedByServer });
}

/** Resolves with the time it took, or rejects after `ms`. */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The text a raw socket receives until the server closes it. */
function received(socket: net.Socket): Promise<string> {
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return new Promise((resolve) => socket.once('close', () => resolve(text)));
}

async function rssBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

describe('slow and hostile clients', () => {
  it('a client that sends no headers, or only part of them, is disconnected after the header timeout', async () => {
    const server = await binary({ CYCLE_SERVER_HEADERS_TIMEOUT_MS: '1000' });
    const silent = await connect(server.url);
    const partial = await connect(server.url);
    partial.write('GET /api/v1/health HTTP/1.1\r\nHost: x\r\n');
    await within(6_000, 'the silent client to be disconnected', silent.closedByServer);
    await within(6_000, 'the client with partial headers to be disconnected', partial.closedByServer);
  });

  it('an upload that stops sending is answered 408 after the idle timeout; one that keeps sending slowly for longer succeeds', async () => {
    const server = await binary({ CYCLE_SERVER_IDLE_TIMEOUT_MS: '1500' });
    const stalled = await connect(server.url);
    const answer = received(stalled);
    stalled.write(
      `POST /api/v1/projects/p/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.token}\r\nContent-Length: 100000\r\n\r\n` + 'x'.repeat(10),
    );
    expect(await within(8_000, 'the stalled upload to be answered', answer)).toMatch(/^HTTP\/1\.1 408 [^]*"code":"request_timeout"/);

    const tarball = gzipSync(rawTar(VALID_PROJECT));
    const slow = await connect(server.url);
    const slowAnswer = received(slow);
    slow.write(
      `POST /api/v1/projects/p/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.token}\r\nContent-Length: ${tarball.length}\r\nConnection: close\r\n\r\n`,
    );
    // 2.5 s or more in all, more than the idle timeout, but never idle for long.
    const pieces = 10;
    const step = Math.ceil(tarball.length / pieces);
    for (let i = 0; i < pieces; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      slow.write(tarball.subarray(i * step, (i + 1) * step));
    }
    expect(await within(20_000, 'the slow upload to be answered', slowAnswer)).toMatch(/^HTTP\/1\.1 201 /);
  });

  it('connections are capped: past the cap, idle connections make room, and requests still answer at once', async () => {
    const server = await binary();
    const idle = [];
    for (let i = 0; i < DEFAULT_HTTP_LIMITS.maxConnections + 44; i++) idle.push(await connect(server.url));
    const started = performance.now();
    expect((await call(server, 'GET', '/api/v1/health')).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_000);
    // The oldest idle connections were closed to make room (the header timeout is 10 s away).
    await within(3_000, 'the oldest idle connections to be closed', Promise.all(idle.slice(0, 45).map((s) => s.closedByServer)));
  });

  it('issue 18: 256 connections trickling bodies to the public POST /api/v1/feedback take no service from /health or authenticated requests, and are cut well before 60 s', async () => {
    const server = await binary({ CYCLE_SERVER_PUBLIC_BODY_TIMEOUT_MS: '4000' });
    const tricklers: Array<Awaited<ReturnType<typeof connect>>> = [];
    for (let i = 0; i < DEFAULT_HTTP_LIMITS.maxConnections; i++) {
      const socket = await connect(server.url);
      socket.write('POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"m');
      tricklers.push(socket);
    }
    const answers = tricklers.map((socket) => received(socket));
    // A byte every 300 ms: never idle, so only a deadline on the whole body cuts them.
    const drip = setInterval(() => {
      for (const socket of tricklers) if (!socket.destroyed) socket.write('x');
    }, 300);
    try {
      for (let i = 0; i < 5; i++) {
        for (const [method, route, authorized] of [
          ['GET', '/health', false],
          ['GET', '/api/v1/projects', true],
        ] as const) {
          const started = performance.now();
          const answer = await call(authorized ? server : { url: server.url, token: '' }, method, route);
          expect({ route, status: answer.status }).toEqual({ route, status: 200 });
          expect(performance.now() - started).toBeLessThan(1_000);
        }
      }
      // Every trickling body is answered and closed: refused at once past the public cap, else cut at its deadline.
      const texts = await within(20_000, 'every trickling body to be cut', Promise.all(answers));
      for (const text of texts) expect(text).toMatch(/^HTTP\/1\.1 (408 [^]*"code":"request_timeout"|503 )/);
      expect(texts.filter((text) => text.startsWith('HTTP/1.1 408')).length).toBeGreaterThan(0);
    } finally {
      clearInterval(drip);
    }
    // The defaults: a trickle is cut well before 60 s, and public bodies hold a small part of the connections.
    expect(DEFAULT_HTTP_LIMITS.publicBodyTimeoutMs).toBeLessThanOrEqual(15_000);
    expect(DEFAULT_HTTP_LIMITS.maxPublicBodies).toBeLessThanOrEqual(DEFAULT_HTTP_LIMITS.maxConnections / 4);
  });

  it('load: 50 SSE clients that never read a 10 MB backlog, 200 silent and 20 half-speaking sockets; submissions answer within 1 s, RSS stays bounded, stalled streams are dropped', async () => {
    // A project with a long history: 1,250 events of 8 KiB (a backlog of 10 MB for a client resuming from 0).
    const first = await binary();
    expect((await call(first, 'POST', '/api/v1/projects/p/push', { body: gzipSync(rawTar(VALID_PROJECT)) })).status).toBe(201);
    expect(await first.stop('SIGTERM')).toBe(0);
    const db = new Database(path.join(first.dataDir, 'cycle.db'));
    const insert = db.prepare("INSERT INTO events (project, type, data, at) VALUES ('p', 'kv', ?, '2026-01-01T00:00:00.000Z')");
    db.transaction(() => {
      for (let i = 0; i < 1_250; i++) insert.run(JSON.stringify({ key: `k${i}`, pad: 'x'.repeat(8 * 1024) }));
    })();
    db.close();

    // Longer than opening the 64 streams takes on a loaded machine, so that none is dropped before the cap is checked.
    const server = await binary({ CYCLE_SERVER_STREAM_STALL_MS: '60000' }, first.dataDir);
    const baseline = await rssBytes(server.child.pid!);
    const streams = [];
    const latest = 2_000_000; // past the newest event: a stream that resumes there has no backlog
    for (let i = 0; i < DEFAULT_HTTP_LIMITS.maxStreams; i++) {
      const socket = await connect(server.url);
      socket.pause();
      const streaming = new Promise<void>((resolve) => socket.once('readable', () => resolve()));
      // 50 replay the whole history and never read it; the rest fill the cap, resuming at the end.
      socket.write(
        `GET /api/v1/projects/p/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.token}\r\n${i < 50 ? '' : `Last-Event-ID: ${latest}\r\n`}\r\n`,
      );
      if (i < 50) streams.push(socket);
      await within(10_000, `stream ${i} to start`, streaming);
    }
    for (let i = 0; i < 200; i++) await connect(server.url);
    for (let i = 0; i < 20; i++) (await connect(server.url)).write('POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Le');

    // One stream more than the cap is refused, with when to retry.
    const refused = await fetch(`${server.url}/api/v1/projects/p/stream`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('too_many_streams');

    let peak = 0;
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const submitted = await call(server, 'POST', '/api/v1/jobs', { body: '{"project":"p"}', headers: { 'content-type': 'application/json' } });
      expect(submitted.status, submitted.text).toBe(201);
      expect(performance.now() - started).toBeLessThan(1_000);
      peak = Math.max(peak, await rssBytes(server.child.pid!));
    }
    // 50 clients × 10 MB (less the ~4 MB the kernel holds for each) would be 300 MB queued; paused streams hold a few events each.
    expect(peak - baseline).toBeLessThan(80 * 1024 * 1024);

    // Nobody read for 60 s: every stream is dropped, and its slot is free again.
    await waitFor(() => (server.log().match(/dropped an event stream client/g) ?? []).length >= streams.length, 100_000, 'the stalled streams to be dropped');
    const again = await fetch(`${server.url}/api/v1/projects/p/stream`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(again.status).toBe(200);
    await again.body?.cancel();
  });
});
