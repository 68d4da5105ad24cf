import fs from 'node:fs/promises';
import { expect } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { tempDir } from './context.js';
import { FakeDocker } from './fake-docker.js';
import { pushValidProject, startFakeDockerServer } from './server.js';

/** An answer of `TimedApi`: its status, its body (parsed JSON, else the text), the bytes sent and how long it took. */
export interface TimedAnswer {
  status: number;
  // A test reads whatever document the route answers.
  body: any;
  bytes: number;
  ms: number;
}

/** A request to the server with its token: `body` as JSON, `text` as JSON already written, `raw` as bytes. */
export type TimedApi = (method: string, route: string, options?: { body?: unknown; raw?: Buffer; text?: string }) => Promise<TimedAnswer>;

export function timedApi(server: { url: string; token: string }): TimedApi {
  return async (method, route, options = {}) => {
    const body = options.raw ?? options.text ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined);
    const json = options.body !== undefined || options.text !== undefined;
    const started = performance.now();
    const response = await fetch(`${server.url}${route}`, {
      method,
      headers: { authorization: `Bearer ${server.token}`, ...(json ? { 'content-type': 'application/json' } : {}) },
      body,
    });
    const text = await response.text();
    const ms = performance.now() - started;
    let answer: unknown = text;
    try {
      answer = JSON.parse(text);
    } catch {
      // not JSON: kept as text for the assertion that fails
    }
    return { status: response.status, body: answer, bytes: Buffer.byteLength(text), ms };
  };
}

export interface HeldServer {
  server: RunningServer;
  dataDir: string;
  api: TimedApi;
  /** Stops the server first (so released containers start nothing new), then releases them and removes the data folder. */
  close(): Promise<void>;
}

/**
 * `cycle server` in this process on 127.0.0.1 with a fake Docker whose containers wait until
 * `close()`: `projects` are pushed, then a first job of one task per worker holds every worker,
 * so the tasks of later jobs stay queued and nothing runs in the background.
 */
export async function startHeldServer(options: { prefix: string; workers: number; projects: string[] }): Promise<HeldServer> {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const docker = new FakeDocker();
  docker.onRun = async () => {
    await held;
    return 0;
  };
  const dataDir = await tempDir(options.prefix);
  const server = await startFakeDockerServer(docker, { dataDir, workers: options.workers });
  const api = timedApi(server);
  for (const project of options.projects) expect(await pushValidProject(server, project)).toBe(201);
  // Every worker busy from the start (the first task's build done), so later jobs stay queued.
  const workers = Array.from({ length: options.workers }, (_, i) => i);
  const warm = (await api('POST', '/api/v1/jobs', { body: { project: options.projects[0], payload: { w: workers }, fan_out: { by: 'w' } } })).body;
  for (let polls = 0; (await api('GET', `/api/v1/jobs/${warm.id}`)).body.counts.running < options.workers; polls++) expect(polls).toBeLessThan(10_000);
  return {
    server,
    dataDir,
    api,
    close: async () => {
      const closing = server.close();
      release();
      await closing;
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}
