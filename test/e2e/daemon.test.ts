import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  docker,
  e2eCycleswapProject,
  removeTestProjectImages,
  spawnDaemon,
  untilTakingWork,
  waitFor,
  type DaemonProcess,
  type E2EProject,
} from '../helpers/e2e.js';
import { client, createMachineToken, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { tempDir } from '../helpers/context.js';
import { tcpProxy } from '../helpers/tcp-proxy.js';

/**
 * `cycle server --no-local-worker` and one `cycle daemon run` on this machine, on real Docker:
 * the daemon reaches the server through a TCP proxy the test can cut. A job runs through the
 * daemon with its output and an artifact; a daemon cut off past its lease's life stops its
 * container itself.
 */
/** From `cycle machine token create` on the server (the registry), made in beforeAll. */
let MACHINE_TOKEN = '';
const LEASE_MS = 6_000;
let server: ServerProcess;
let project: E2EProject;
let proxy: Awaited<ReturnType<typeof tcpProxy>>;
let daemon: DaemonProcess;

beforeAll(async () => {
  server = await startServerProcess({
    args: ['--no-local-worker'],
    env: { CYCLE_SERVER_LEASE_MS: String(LEASE_MS) },
  });
  ({ token: MACHINE_TOKEN } = await createMachineToken(server, 'e2e-a'));
  project = await e2eCycleswapProject({
    run: 'echo "hello from the daemon"\necho weights > "$CYCLE_ARTIFACTS_DIR/model.txt"\nif grep -q \'"hold"\' "$COMPUTALOT_TASK_PAYLOAD"; then sleep 600; fi\nif grep -q \'"nap"\' "$COMPUTALOT_TASK_PAYLOAD"; then sleep 4; fi\n',
  });
  const pushed = await client(server).push(project.name, project.root);
  expect(pushed.status).toBeLessThan(300);
  proxy = await tcpProxy(Number(new URL(server.url).port));
  daemon = spawnDaemon({
    apiUrl: proxy.url,
    name: 'e2e-a',
    dataDir: await tempDir('cycle-e2e-daemon-'),
    token: MACHINE_TOKEN,
    // A machine with no GPU and no load of its own.
    fixture: 'smi-fail-command-not-found.txt',
  });
  await untilTakingWork(daemon, 30_000, 'the daemon to start');
}, 120_000);

afterAll(async () => {
  await daemon?.stop();
  await proxy?.close();
  await server?.stop();
  if (project) await removeTestProjectImages([project.name]);
});

describe('cycle daemon run against cycle server --no-local-worker', () => {
  it('runs a job to completion on the daemon: its output and its artifact reach the server', async () => {
    const api = client(server);
    const submitted = await api.call('POST', '/api/v1/jobs', { project: project.name, payload: { n: 1 } });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    expect(await jobEnd(id, 'the job to finish on the daemon')).toBe('completed');
    const output = await api.call('GET', `/api/v1/jobs/${id}/output`);
    expect(JSON.stringify(output.body)).toContain('hello from the daemon');
    const artifacts = (await api.call('GET', `/api/v1/artifacts?job=${id}`)).body.artifacts as Array<{ id: string; name: string }>;
    expect(artifacts.map((a) => a.name)).toEqual(['model.txt']);
    const file = await fetch(`${server.url}/api/v1/artifacts/${artifacts[0]!.id}`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(await file.text()).toBe('weights\n');
  }, 300_000);

  it('on its one slot the daemon prepares each next task while the one before runs: its container exists before the one before exits; one outcome each', async () => {
    const api = client(server);
    const submitted = await api.call('POST', '/api/v1/jobs', { project: project.name, payload: { n: [1, 2, 3], nap: true }, fan_out: { by: 'n' } });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    expect(await jobEnd(id, 'the fan-out to finish on the daemon')).toBe('completed');
    const tasks = (await api.call('GET', `/api/v1/jobs/${id}/timings`)).body.tasks as Array<{ stages: Record<string, number> }>;
    expect(tasks).toHaveLength(3);
    const byStart = tasks.map((t) => t.stages).sort((a, b) => a.started! - b.started!);
    // An ordering, not a timing: the next container was created (prepared ahead) while the task before slept its 4 s.
    for (let k = 1; k < byStart.length; k++) expect(byStart[k]!.created!, `task ${k + 1} of 3 by start`).toBeLessThan(byStart[k - 1]!.exited!);
    // Each ran once: no attempt given back or failed on the way (the log has no requeue line).
    const log = JSON.stringify((await api.call('GET', `/api/v1/jobs/${id}/output`)).body);
    expect(log).not.toMatch(/gave the task back|attempt 2/);
  }, 300_000);

  it('a daemon cut off from the server stops its container once the lease has run out, and the task goes back to the queue', async () => {
    const api = client(server);
    const { id, container } = await heldTaskRunning();
    proxy.cut();
    const cutAt = Date.now();
    await waitFor(
      async () => (await container()) === '',
      LEASE_MS + 30_000,
      'the daemon to stop the container',
      () => daemon.log(),
    );
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(LEASE_MS / 3); // not at the first failed renewal: at the lease's end
    expect(daemon.log()).toMatch(/lease \S+ expired without a renewal/);
    const tasks = (await api.call('GET', `/api/v1/jobs/${id}/tasks`)).body.tasks as Array<{ status: string }>;
    expect(tasks[0]!.status).toBe('queued'); // the server expired the lease too: it runs again
    await api.call('PUT', `/api/v1/jobs/${id}/cancel`);
    proxy.restore();
  }, 240_000);

  it('SIGTERM: the daemon stops its container, gives the task back to the queue and exits 0', async () => {
    const api = client(server);
    const { id, container } = await heldTaskRunning();
    expect(await daemon.stop()).toBe(0);
    expect(await container()).toBe('');
    expect(daemon.log()).toMatch(/stopping: 1 running task/);
    const task = (await api.call('GET', `/api/v1/jobs/${id}/tasks`)).body.tasks[0] as { status: string };
    expect(task.status).toBe('queued'); // given back at once, not left to expire
    await api.call('PUT', `/api/v1/jobs/${id}/cancel`);
  }, 240_000);
});

/** Waits (up to 4 minutes) until job `id` has ended; its status. */
async function jobEnd(id: string, what: string): Promise<string> {
  const api = client(server);
  let status = '';
  await waitFor(
    async () => ['completed', 'failed', 'partial'].includes((status = (await api.call('GET', `/api/v1/jobs/${id}`)).body.status)),
    240_000,
    what,
    () => `${status}\n${daemon.log()}`,
  );
  return status;
}

/** Submits a task that holds (sleeps) and waits until its container runs on the daemon; `container()` names it while it runs. */
async function heldTaskRunning(): Promise<{ id: string; container: () => Promise<string> }> {
  const api = client(server);
  const id = (await api.call('POST', '/api/v1/jobs', { project: project.name, payload: { hold: true } })).body.id as string;
  let taskId = '';
  await waitFor(
    async () => (taskId = ((await api.call('GET', `/api/v1/jobs/${id}/tasks`)).body.tasks[0]?.id as string | undefined) ?? '') !== '',
    30_000,
    'the task',
  );
  const container = async (): Promise<string> => docker(['ps', '--filter', `name=^cycle-daemon-e2e-a-${taskId}$`, '--format', '{{.Names}}']);
  await waitFor(
    async () => (await container()) !== '',
    120_000,
    'the task container to start',
    () => daemon.log(),
  );
  return { id, container };
}
