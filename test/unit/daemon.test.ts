import { afterEach, describe, expect, it } from 'vitest';
import type { MachineActivity } from '../../src/api/machines.js';
import { systemClock } from '../../src/context.js';
import type { RunningServer } from '../../src/server/index.js';
import { InMemoryMachineAuth } from '../../src/server/machines/auth.js';
import { startDaemon, type RunningDaemon } from '../../src/server/worker/daemon.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { tempDir } from '../helpers/context.js';
import { startFakeDockerServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** startDaemon (what `cycle daemon run` runs) against the in-process server, on the fake Docker, its probe injected. */
const TOKEN = 'cyc_machine_daemon_test_0123456789abcdef';
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
  const auth = new InMemoryMachineAuth();
  auth.add('t', TOKEN);
  server = await startFakeDockerServer(docker, { dataDir: await tempDir('cycle-daemon-server-'), localWorker: false, machineAuth: auth });
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
    token: TOKEN,
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

describe('the daemon: pause, busy, one per data folder', () => {
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

  it('a second daemon on the same data folder is refused, naming the folder and the pid', async () => {
    const { dataDir } = await setup();
    await expect(
      startDaemon({
        apiUrl: server!.url,
        token: TOKEN,
        name: 'm1',
        slots: 1,
        dataDir,
        version: 'test',
        docker: async () => new FakeDocker(),
        env: {},
        clock: systemClock,
        log: () => undefined,
        probe: async () => ({ inventory: INVENTORY, activity: { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false } }),
        signal: new AbortController().signal,
      }),
    ).rejects.toThrow(/another cycle daemon \(pid \d+\) runs on the data folder/);
  });
});
