import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { client, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { docker, removeTestProjectImages, testProjectName, waitFor } from '../helpers/e2e.js';

const fixture = path.join(import.meta.dirname, '..', 'fixtures', 'projects', 'tools');
const cleanup: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function started(dataDir?: string): Promise<ServerProcess> {
  const server = await startServerProcess({ workers: 1, ...(dataDir ? { dataDir } : {}) });
  cleanup.push(() => fs.rm(server.dataDir, { recursive: true, force: true }));
  cleanup.push(() => server.stop('SIGKILL'));
  return server;
}

async function pushTools(server: ServerProcess, name: string): Promise<void> {
  const tools = await fs.mkdtemp(path.join(path.dirname(server.dataDir), 'cycle-e2e-stop-tools-'));
  cleanup.push(() => fs.rm(tools, { recursive: true, force: true }));
  await fs.cp(fixture, tools, { recursive: true });
  const pushed = await client(server).push(name, tools);
  expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
}

/** Sends `signal` and measures how long the process takes to exit. */
async function timeToExit(server: ServerProcess, signal: NodeJS.Signals): Promise<{ ms: number; code: number | null }> {
  const sent = performance.now();
  const code = await server.stop(signal);
  return { ms: performance.now() - sent, code };
}

describe('cycle server stops fast', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('idle, it exits within 2 s of %s, and says nothing was running', async (signal) => {
    const server = await started();
    const { ms, code } = await timeToExit(server, signal);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(2_000);
    expect(server.log()).toContain('shutting down (no task running)');
    expect(server.log()).toContain('stopped');
  });

  it('idle with a client holding an SSE stream and a keep-alive connection open, it still exits within 2 s of SIGINT', async () => {
    const server = await started();
    const name = testProjectName('stop-idle');
    cleanup.push(() => removeTestProjectImages([name]));
    await pushTools(server, name);
    const stream = await fetch(`${server.url}/api/v1/projects/${name}/stream`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read(); // the stream is open and served
    const { ms, code } = await timeToExit(server, 'SIGINT');
    expect(code).toBe(0);
    expect(ms).toBeLessThan(2_000);
    await reader.cancel().catch(() => undefined);
  });

  it('busy, it stops the running container, says so, exits, and the task runs again on the next start', async () => {
    // A name of its own: the images it builds are removed by label without touching other tests'.
    const name = testProjectName(`stop-${Date.now().toString(36)}`);
    cleanup.push(() => removeTestProjectImages([name]));
    const server = await started();
    await pushTools(server, name);
    const job = await client(server).submit({ project: name, runner_command: ['python3', 'tools.py', 'sleep'], payload: { seconds: 120 } });
    const running = async (): Promise<string> => docker(['ps', '-q', '--filter', `label=cycle.project-key=server:${name}`]);
    await waitFor(async () => (await running()) !== '', 120_000, 'the task container to run');
    const { ms, code } = await timeToExit(server, 'SIGINT');
    expect(code).toBe(0);
    expect(ms).toBeLessThan(15_000);
    expect(server.log()).toContain('shutting down: stopping 1 running task (their containers are removed; they run again on the next start)');
    expect(await docker(['ps', '-aq', '--filter', `label=cycle.project-key=server:${name}`])).toBe('');

    const again = await started(server.dataDir);
    const tasks = (await client(again).call('GET', `/api/v1/jobs/${job.id}/tasks`)).body.tasks;
    expect(tasks[0]).toMatchObject({ status: expect.stringMatching(/^(queued|running)$/), last_failed_attempt: null });
    expect((await timeToExit(again, 'SIGINT')).code).toBe(0);
  });
});
