import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createParser } from 'eventsource-parser';
import { selectFiles, toTarEntries } from '../../src/pack/select.js';
import { tarStream } from '../../src/pack/tar.js';
import { gzipDeterministic } from '../../src/pack/gzip.js';
import { BIN } from './e2e.js';
import { waitFor } from './wait.js';
import { tempDir } from './context.js';
import type { FakeDocker } from './fake-docker.js';
import { rawTarGz, VALID_PROJECT } from './tarballs.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/index.js';
import { ExecNotFound } from '../../src/util/exec.js';

export interface ServerProcess {
  url: string;
  token: string;
  dataDir: string;
  child: ChildProcess;
  log: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The real `cycle server` binary on a free port. */
export async function startServerProcess(
  options: { dataDir?: string; workers?: number; env?: Record<string, string>; args?: string[]; port?: number } = {},
): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? (await tempDir('cycle-e2e-server-'));
  const child = spawn(
    process.execPath,
    [BIN, 'server', '--port', String(options.port ?? 0), '--data-dir', dataDir, '--workers', String(options.workers ?? 2), ...(options.args ?? [])],
    {
      env: { PATH: process.env.PATH, HOME: process.env.HOME ?? dataDir, NO_COLOR: '1', CYCLE_SERVER_HEARTBEAT_MS: '500', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await waitFor(() => /listening on (https?:\/\/\S+)/.test(log) || child.exitCode !== null, 30_000, 'the server to listen');
  const url = /listening on (https?:\/\/\S+)/.exec(log)?.[1];
  if (!url) throw new Error(`the server did not start:\n${log}`);
  const token = (await fs.readFile(path.join(dataDir, 'token'), 'utf8')).trim();
  return {
    url,
    token,
    dataDir,
    child,
    log: () => log,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

export function client(server: { url: string; token: string }) {
  const call = async (method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> => {
    const response = await fetch(`${server.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${server.token}`,
        ...(body !== undefined && !(body instanceof Buffer) ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : body instanceof Buffer ? body : JSON.stringify(body),
    });
    const text = await response.text();
    try {
      return { status: response.status, body: JSON.parse(text) };
    } catch {
      return { status: response.status, body: text };
    }
  };
  return {
    call,
    push: async (name: string, dir: string, query = '') => call('POST', `/api/v1/projects/${name}/push${query}`, await packDir(dir)),
    submit: async (job: Record<string, unknown>) => {
      const answer = await call('POST', '/api/v1/jobs', job);
      if (answer.status !== 201) throw new Error(`submit failed: ${answer.status} ${JSON.stringify(answer.body)}`);
      return answer.body as { id: string };
    },
    waitJob: async (id: string, timeoutMs = 120_000): Promise<any> => {
      let job: any;
      await waitFor(
        async () => {
          job = (await call('GET', `/api/v1/jobs/${id}`)).body;
          return ['completed', 'partial', 'failed', 'cancelled'].includes(job.status);
        },
        timeoutMs,
        `job ${id} to finish`,
        () => `status ${JSON.stringify(job?.status)}`,
      );
      return job;
    },
  };
}

/**
 * A request that must succeed, to the server `server()` names when it is called (a test may
 * start another): its JSON answer, or an Error naming the request, the status and the answer.
 */
export function okApi(server: () => { url: string; token: string }) {
  // The answer is whatever document the route sends; the tests read its fields.
  return async (method: string, route: string, body?: unknown): Promise<any> => {
    const { url, token } = server();
    const response = await fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status >= 400) throw new Error(`${method} ${route}: ${response.status} ${text}`);
    return JSON.parse(text);
  };
}

export async function packDir(dir: string): Promise<Buffer> {
  const selection = await selectFiles(dir);
  const chunks: Buffer[] = [];
  for await (const chunk of gzipDeterministic(tarStream(toTarEntries(selection.entries)))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface SseEvent {
  id: string;
  event: string;
  data: any;
}

/**
 * Reads an SSE stream until it ends or `stopAfter` says to stop (a disconnect mid-stream).
 * Returns the events and the last event id.
 */
export async function readSse(
  server: { url: string; token: string },
  route: string,
  options: { lastEventId?: string; stopAfter?: (events: SseEvent[]) => boolean } = {},
): Promise<{ events: SseEvent[]; ended: boolean; pings: number }> {
  const controller = new AbortController();
  const events: SseEvent[] = [];
  let ended = false;
  let pings = 0;
  const response = await fetch(`${server.url}${route}`, {
    headers: { authorization: `Bearer ${server.token}`, accept: 'text/event-stream', ...(options.lastEventId ? { 'last-event-id': options.lastEventId } : {}) },
    signal: controller.signal,
  });
  const parser = createParser({
    onEvent: (event) => {
      if (event.event === 'end') {
        ended = true;
        return;
      }
      events.push({ id: event.id ?? '', event: event.event ?? 'message', data: JSON.parse(event.data) });
      if (options.stopAfter?.(events)) controller.abort();
    },
    onComment: () => {
      pings++;
    },
  });
  try {
    const decoder = new TextDecoder();
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  }
  return { events, ended, pings };
}

/**
 * `cycle server` in this process on 127.0.0.1, on a fake Docker and with no GPU (nvidia-smi not
 * found), one worker, logging nowhere: a test passes what it changes in `options`.
 */
export function startFakeDockerServer(docker: FakeDocker, options: Pick<ServerOptions, 'dataDir'> & Partial<ServerOptions>): Promise<RunningServer> {
  return startServer({
    host: '127.0.0.1',
    port: 0,
    workers: 1,
    version: 'test',
    docker: async () => docker,
    exec: async () => Promise.reject(new ExecNotFound('nvidia-smi')),
    log: () => undefined,
    ...options,
  });
}

/** Pushes the test project (tarballs.ts, VALID_PROJECT) as `name`: the answer's status. */
export async function pushValidProject(server: { url: string; token: string }, name = 'p'): Promise<number> {
  const response = await fetch(`${server.url}/api/v1/projects/${name}/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: rawTarGz(VALID_PROJECT),
  });
  await response.arrayBuffer();
  return response.status;
}

/**
 * A machine token from the server's registry, as `cycle machine token create` makes one (over the
 * user's `POST /api/v1/machines/tokens`); bound to `name` when given.
 */
export async function createMachineToken(server: { url: string; token: string }, name?: string): Promise<{ token: string; tokenId: string }> {
  const answer = await client(server).call('POST', '/api/v1/machines/tokens', name ? { name } : {});
  if (answer.status !== 201) throw new Error(`creating a machine token: ${answer.status} ${JSON.stringify(answer.body)}`);
  return { token: answer.body.token, tokenId: answer.body.token_id };
}
