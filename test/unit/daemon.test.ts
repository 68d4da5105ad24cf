import { afterEach, describe, expect, it } from 'vitest';
import type { MachineActivity } from '../../src/api/machines.js';
import { systemClock } from '../../src/context.js';
import type { RunningServer } from '../../src/server/index.js';
import { startDaemon, type RunningDaemon } from '../../src/server/worker/daemon.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { tempDir } from '../helpers/context.js';
import { createMachineToken, startFakeDockerServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** startDaemon (what `cycle daemon run` runs) against the in-process server, on the fake Docker, its probe injected. */
const INVENTORY = { cpus: 4, memory_bytes: 8 << 30, free_disk_bytes: 100 << 30, gpus: [], docker: true, gvisor: false };
let server: RunningServer | undefined;
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  await server?.close();
  server = undefined;
});

async function setup(): Promise<{ docker: FakeDocker; activity: MachineActivity; daemon: RunningDaemon; dataDir: string }> {
  const docker = new FakeDocker();
  docker.hold = true;
  server = await startFakeDockerServer(docker, { dataDir: await tempDir('cycle-daemon-server-'), localWorker: false });
  const { token } = await createMachineToken(server, 'm1');
  const pushed = await fetch(`${server.url}/api/v1/projects/p/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: rawTarGz(VALID_PROJECT),
  });
  expect(pushed.status).toBeLessThan(300);
  const activity: MachineActivity = { idle: true, busy_reasons: [], paused_until: new Date(Date.now() + 3_600_000).toISOString(), forbid_busy_assign: false };
  const controller = new AbortController();
  const dataDir = await tempDir('cycle-daemon-data-');
  const daemon = await startDaemon({
    apiUrl: server.url,
    token,
    name: 'm1',
    slots: 1,
    dataDir,
    version: 'test',
    docker: async () => docker,
    env: {},
    clock: systemClock,
    log: () => undefined,
    probe: async () => ({ inventory: INVENTORY, activity: { ...activity } }),
    signal: controller.signal,
    heartbeatMs: 50,
  });
  stops.push(async () => {
    controller.abort();
    await daemon.done;
  });
  return { docker, activity, daemon, dataDir };
}

const api = async (method: string, route: string, body?: unknown): Promise<any> => {
  const response = await fetch(`${server!.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${server!.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return response.json();
};

describe('the daemon: pause and busy', () => {
  it('a paused machine takes no task; once resumed it takes it; busy with forbid-busy-assign gives it back', async () => {
    const { docker, activity, daemon } = await setup();
    const job = (await api('POST', '/api/v1/jobs', { project: 'p', payload: { n: 1 } })).id as string;
    // Several heartbeats go by while paused: the task stays queued.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(docker.runningNames()).toEqual([]);
    expect((await api('GET', `/api/v1/jobs/${job}/tasks`)).tasks[0].status).toBe('queued');
    activity.paused_until = null;
    await docker.whenRunning(1);
    expect(daemon.running()).toBe(1);
    activity.idle = false;
    activity.busy_reasons = ['non-job CPU 40 % > 5 %'];
    activity.forbid_busy_assign = true;
    await waitFor(async () => (await api('GET', `/api/v1/jobs/${job}/tasks`)).tasks[0].status === 'queued', 10_000, 'the task to be given back');
    expect(docker.runningNames()).toEqual([]);
    const output = JSON.stringify(await api('GET', `/api/v1/jobs/${job}/output`));
    expect(output).toContain('became busy');
  });

  it('a machine drained on the server reads "draining" in its daemon status (the heartbeat answer says so); undrained, it reads idle again', async () => {
    const { activity, daemon } = await setup();
    activity.paused_until = null;
    expect((await api('POST', '/api/v1/machines/m1/drain', {})).draining).toBe(true);
    await waitFor(() => daemon.status().state === 'draining', 10_000, 'the daemon to hear of the drain');
    await api('DELETE', '/api/v1/machines/m1/drain');
    await waitFor(() => daemon.status().state === 'idle', 10_000, 'the daemon to hear of the undrain');
  });
});
