import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { JobService } from '../../src/server/jobs.js';
import type { RunningServer } from '../../src/server/index.js';
import { openDatabase } from '../../src/server/db.js';
import { layout } from '../../src/server/layout.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { manualClock, tempDir } from '../helpers/context.js';
import { okApi, pushValidProject, readSse, startFakeDockerServer } from '../helpers/server.js';

/**
 * The scheduler on the fake Docker: every container is held until the test ends it
 * (`docker.exit`) or the server removes it, so the order of things is the test's, not a race.
 */
let server: RunningServer | undefined;
let docker: FakeDocker;
/** Task timeouts run on it: a test advances it rather than waiting. */
let clock: ReturnType<typeof manualClock>;
/** What the server logged. */
let logged: string[] = [];

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(dataDir?: string, workers = 2): Promise<RunningServer> {
  server = await startFakeDockerServer(docker, {
    dataDir: dataDir ?? (await tempDir('cycle-scheduler-')),
    workers,
    clock,
    // These tests jump the manual clock past task timeouts and through whole runs; leases (and
    // their expiry when a clock jumps past them) are the work queue's tests (work-queue.test.ts).
    leaseMs: 3_600_000,
    log: (line) => logged.push(line),
  });
  return server;
}

const api = okApi(() => server!);

async function startWithProject(dataDir?: string, workers = 2): Promise<void> {
  docker = new FakeDocker();
  docker.hold = true;
  clock = manualClock();
  logged = [];
  await start(dataDir, workers);
  expect(await pushValidProject(server!)).toBeLessThan(300);
}

const submit = async (body: Record<string, unknown>): Promise<string> => (await api('POST', '/api/v1/jobs', { project: 'p', ...body })).id;
const job = (id: string): Promise<any> => api('GET', `/api/v1/jobs/${id}`);
const tasks = async (id: string): Promise<Array<{ id: string; index: number; kind: string; status: string }>> =>
  (await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks;
const container = (taskId: string): string => `cycle-server-${taskId}`;
const heldTaskIds = (): string[] => docker.runningNames().map((name) => name.replace('cycle-server-', ''));

/** Where a file the container sees (in a bind mount) is on the host. */
function hostPath(spec: ContainerSpec, file: string): string {
  const mount = spec.mounts.find((m) => file.startsWith(`${m.target}/`));
  if (!mount) throw new Error(`${file} is in no mount of ${spec.name}`);
  return path.join(mount.source, path.posix.relative(mount.target, file));
}

/** Waits on the job's event stream, which the server ends once the job finished: told, not polled. */
async function finished(id: string): Promise<any> {
  const { ended } = await readSse(server!, `/api/v1/jobs/${id}/stream`);
  expect(ended, `the event stream of job ${id} ended before the job finished`).toBe(true);
  return job(id);
}

describe('the scheduler', () => {
  it('a job waits for its dependency, and starts once it completed', async () => {
    await startWithProject();
    const first = await submit({});
    await docker.whenRunning(1);
    const second = await submit({ depends_on: [first] });
    expect((await job(second)).status).toBe('queued');
    expect(heldTaskIds()).toEqual([(await tasks(first))[0]!.id]);
    docker.exit(container((await tasks(first))[0]!.id), 0);
    await docker.whenRunning(1);
    expect(heldTaskIds()).toEqual([(await tasks(second))[0]!.id]);
    docker.exit(container((await tasks(second))[0]!.id), 0);
    expect((await finished(second)).status).toBe('completed');
  });

  it('a failed dependency fails the dependent job, which never runs', async () => {
    await startWithProject();
    const first = await submit({});
    await docker.whenRunning(1);
    const second = await submit({ depends_on: [first] });
    docker.exit(container((await tasks(first))[0]!.id), 3);
    const dependent = await finished(second);
    expect(dependent).toMatchObject({ status: 'failed', error: `dependency ${first} ended failed` });
    expect((await tasks(second)).map((t) => t.status)).toEqual(['cancelled']);
    expect(docker.called('runContainer')).toHaveLength(1);
  });

  it('map then reduce: the reduce starts only after every map ended', async () => {
    await startWithProject();
    const id = await submit({ type: 'map_reduce', payload: { n: [1, 2, 3] }, fan_out: { by: 'n' }, reduce_command: ['reduce'] });
    const all = await tasks(id);
    const reduce = all.find((t) => t.kind === 'reduce')!;
    const maps = all.filter((t) => t.kind === 'map');
    expect(maps).toHaveLength(3);
    await docker.whenRunning(2);
    const firstTwo = heldTaskIds();
    expect(firstTwo).not.toContain(reduce.id);
    for (const taskId of firstTwo) docker.exit(container(taskId), 0);
    await docker.whenRunning(1);
    const third = heldTaskIds();
    expect(third).toHaveLength(1);
    expect(third[0]).not.toBe(reduce.id);
    docker.exit(container(third[0]!), 0);
    await docker.whenRunning(1);
    expect(heldTaskIds()).toEqual([reduce.id]);
    docker.exit(container(reduce.id), 0, '', { total: 6 });
    expect((await finished(id)).status).toBe('completed');
  });

  it('_shared.resolve of a finished job: its results document is built once, not once per task, and every task gets it', async () => {
    await startWithProject();
    const first = await submit({});
    await docker.whenRunning(1);
    docker.exit(container((await tasks(first))[0]!.id), 0, '', { score: 7 });
    expect((await finished(first)).status).toBe('completed');
    const built = vi.spyOn(JobService.prototype, 'results');
    try {
      const second = await submit({
        depends_on: [first],
        payload: { n: [1, 2, 3], _shared: { resolve: { score: { job: first, path: 'items.0.result.score' }, whole: { job: first } } } },
        fan_out: { by: 'n' },
      });
      const seen: unknown[] = [];
      // Each of the three tasks, as it runs: what its payload file says.
      while (seen.length < 3) {
        const [spec] = await docker.whenRunning(1);
        seen.push(JSON.parse(readFileSync(hostPath(spec!, spec!.env.COMPUTALOT_TASK_PAYLOAD!), 'utf8'))._shared.values);
        docker.exit(spec!.name, 0);
      }
      expect((await finished(second)).status).toBe('completed');
      for (const values of seen) expect(values).toMatchObject({ score: 7, whole: { items: [{ result: { score: 7 } }] } });
      expect(built).toHaveBeenCalledTimes(1);
    } finally {
      built.mockRestore();
    }
  });

  it('batches: items grouped by batch_size run as one task each', async () => {
    await startWithProject();
    const id = await submit({ payload: { n: [1, 2, 3, 4] }, fan_out: { by: 'n' }, batch_size: 2 });
    const specs = await docker.whenRunning(2);
    expect(specs).toHaveLength(2);
    for (const taskId of heldTaskIds()) docker.exit(container(taskId), 0);
    const done = await finished(id);
    expect(done).toMatchObject({ status: 'completed', counts: { total: 2, succeeded: 2 } });
    expect((await api('GET', `/api/v1/results/${id}`)).items).toHaveLength(4);
  });

  it('cancel removes running containers, cancels queued tasks and the job', async () => {
    await startWithProject(undefined, 2);
    const id = await submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' } });
    await docker.whenRunning(2);
    const running = docker.runningNames();
    await api('PUT', `/api/v1/jobs/${id}/cancel`);
    expect(docker.called('removeContainer')).toEqual(expect.arrayContaining(running));
    expect(docker.runningNames()).toEqual([]);
    const cancelled = await finished(id);
    expect(cancelled).toMatchObject({ status: 'cancelled', counts: { cancelled: 3 } });
    expect(docker.called('runContainer')).toHaveLength(2);
  });

  it('a task past timeout_s is stopped and fails, saying so', async () => {
    await startWithProject();
    const id = await submit({ timeout_s: 1 });
    await docker.whenRunning(1);
    await clock.whenSleeping(1);
    clock.advance(999);
    expect((await tasks(id))[0]!.status).toBe('running');
    expect(docker.called('removeContainer')).not.toContain(container((await tasks(id))[0]!.id));
    clock.advance(1);
    const done = await finished(id);
    expect(done.status).toBe('failed');
    expect((await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks[0].error).toBe('timed out after 1s');
    expect(docker.called('removeContainer')).toContain(container((await tasks(id))[0]!.id));
  });

  it('a task that ends within timeout_s disarms its timer', async () => {
    await startWithProject();
    const id = await submit({ timeout_s: 5 });
    await docker.whenRunning(1);
    await clock.whenSleeping(1);
    docker.exit(container((await tasks(id))[0]!.id), 0);
    expect((await finished(id)).status).toBe('completed');
    expect(clock.sleeping()).toBe(0);
  });

  it('after a crash, a running task runs again once, then fails; the log says so', async () => {
    const dataDir = await tempDir('cycle-scheduler-crash-');
    await startWithProject(dataDir);
    const id = await submit({});
    await docker.whenRunning(1);
    const [task] = await tasks(id);
    await server!.close(); // a shutdown requeues the task; the crash is made by hand below
    server = undefined;
    const crashed = (attempt: number): void => {
      const db = openDatabase(layout(dataDir).db);
      db.prepare("UPDATE tasks SET status = 'running', attempt = ? WHERE id = ?").run(attempt, task!.id);
      db.prepare("UPDATE jobs SET status = 'running' WHERE id = ?").run(id);
      db.close();
    };
    crashed(1);
    docker = new FakeDocker();
    docker.hold = true;
    await start(dataDir);
    await docker.whenRunning(1);
    expect((await tasks(id))[0]).toMatchObject({ status: 'running' });
    expect((await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks[0].attempt).toBe(2);
    await server!.close();
    server = undefined;
    crashed(2);
    docker = new FakeDocker();
    docker.hold = true;
    await start(dataDir);
    const done = await finished(id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/the server stopped while the task ran \(2 attempts\)/);
    expect(docker.called('runContainer')).toHaveLength(0);
    const log = (await api('GET', `/api/v1/jobs/${id}/output`)).tasks[0].output as string;
    expect(log).toContain('[cycle] task 0 queued again to run on another attempt (server restart: attempt 1 was interrupted)');
    expect(log).toContain('[cycle] task 0 started (attempt 2)');
    expect(log).toContain('[cycle] task 0 failed: the server stopped while the task ran (2 attempts)');
  });

  it("every stored time comes from the server's clock: the job's times, its tasks' and its events'", async () => {
    await startWithProject();
    const at = (seconds: number): string => new Date(Date.parse('2026-11-23T12:00:00Z') + seconds * 1000).toISOString();
    clock.advance(60_000);
    const id = await submit({});
    await docker.whenRunning(1);
    const taskId = (await tasks(id))[0]!.id;
    clock.advance(30_000);
    docker.exit(container(taskId), 0);
    expect(await finished(id)).toMatchObject({ status: 'completed', created_at: at(60), started_at: at(60), finished_at: at(90) });
    expect((await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks[0]).toMatchObject({ started_at: at(60), finished_at: at(90) });
    const { events } = await readSse(server!, `/api/v1/jobs/${id}/stream`);
    expect(events.map((e) => [`${e.event}:${e.data.data.status ?? ''}`, e.data.at])).toEqual([
      ['job:planning', at(60)],
      ['job:queued', at(60)],
      ['job:running', at(60)],
      ['task:running', at(60)],
      ['task:succeeded', at(90)],
      ['job:completed', at(90)],
    ]);
  });

  it('a status update the transition table refuses is an internal error, logged with a reference; the task is left as it is', async () => {
    await startWithProject();
    const id = await submit({});
    await docker.whenRunning(1);
    const taskId = (await tasks(id))[0]!.id;
    // Something outside the rules finished the task while its container ran.
    const db = openDatabase(layout(server!.dataDir).db);
    try {
      db.prepare("UPDATE tasks SET status = 'failed', error = 'elsewhere' WHERE id = ?").run(taskId);
    } finally {
      db.close();
    }
    docker.exit(container(taskId), 0);
    expect(await finished(id)).toMatchObject({ status: 'failed' });
    expect((await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks[0]).toMatchObject({ status: 'failed', error: 'elsewhere' });
    expect(logged.filter((line) => line.startsWith('internal error'))).toEqual([
      expect.stringMatching(new RegExp(`^internal error [0-9a-f]{8} in task ${taskId}: InternalError: task ${taskId} cannot go from failed to succeeded`)),
    ]);
  });

  it('an internal error on a request answers 500 with the reference the log has, never the details', async () => {
    await startWithProject(undefined, 1);
    const first = await submit({});
    await docker.whenRunning(1);
    const second = await submit({}); // queued behind the first (one worker)
    // Something outside the rules put the job back to planning: a cancel cannot end it from there.
    const db = openDatabase(layout(server!.dataDir).db);
    try {
      db.prepare("UPDATE jobs SET status = 'planning' WHERE id = ?").run(second);
    } finally {
      db.close();
    }
    const response = await fetch(`${server!.url}/api/v1/jobs/${second}/cancel`, { method: 'PUT', headers: { authorization: `Bearer ${server!.token}` } });
    const body = await response.text();
    expect(response.status).toBe(500);
    const reference = /reference ([0-9a-f]{8})/.exec(body)?.[1];
    expect(reference, body).toBeDefined();
    expect(body).not.toContain('cannot go from');
    expect(logged.some((line) => line.includes(`internal error ${reference}`) && line.includes(`job ${second} cannot go from planning to cancelled`))).toBe(
      true,
    );
    docker.exit(container((await tasks(first))[0]!.id), 0);
    expect((await finished(first)).status).toBe('completed');
  });

  it('events come in order, each after its change committed, and the log tells system lines from output', async () => {
    await startWithProject();
    const id = await submit({});
    await docker.whenRunning(1);
    const taskId = (await tasks(id))[0]!.id;
    docker.exit(container(taskId), 3, 'hello from the task\n');
    await finished(id);
    const { events, ended } = await readSse(server!, `/api/v1/jobs/${id}/stream`);
    expect(ended).toBe(true);
    expect(events.map((e) => `${e.event}:${e.data.data.status ?? ''}`)).toEqual([
      'job:planning',
      'job:queued',
      'job:running',
      'task:running',
      'output:',
      'task:failed',
      'job:failed',
    ]);
    expect(events.map((e) => Number(e.id))).toEqual([...events.map((e) => Number(e.id))].sort((a, b) => a - b));
    expect(events[5]!.data.data).toMatchObject({ error: 'exited with code 3', counts: { failed: 1, running: 0 } });
    const log = (await api('GET', `/api/v1/jobs/${id}/output`)).tasks[0].output;
    expect(log).toBe('[cycle] task 0 started (attempt 1)\nhello from the task\n[cycle] task 0 failed: exited with code 3\n');
  });
});

describe('issue 18: a job that writes thousands of artifact files', () => {
  /** Writes `count` small files into the task's /artifacts, a few hundred at a time. */
  async function writeArtifacts(spec: ContainerSpec, count: number): Promise<void> {
    const dir = hostPath(spec, '/artifacts/f');
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(path.dirname(dir), { recursive: true });
    for (let i = 0; i < count; i += 250)
      await Promise.all(
        Array.from({ length: Math.min(250, count - i) }, (_, j) =>
          writeFile(path.join(path.dirname(dir), `f${String(i + j).padStart(5, '0')}.txt`), `${i + j}`),
        ),
      );
  }
  const artifactCount = async (id: string): Promise<number> => (await api('GET', `/api/v1/artifacts?job=${id}`)).artifacts.length;

  it('2,000 files are captured at a linear cost, one row each, in upload order', { timeout: 120_000 }, async () => {
    await startWithProject();
    const id = await submit({});
    const [spec] = await docker.whenRunning(1);
    await writeArtifacts(spec!, 2_000);
    const started = performance.now();
    docker.exit(spec!.name, 0);
    const done = await finished(id);
    expect(done.status).toBe('completed');
    // Linear: well under a minute on a loaded machine. Renumbering every row on each capture (O(n²)
    // rows, each update scanning the task's rows) took many minutes.
    expect(performance.now() - started).toBeLessThan(60_000);
    const listed: Array<{ name: string; order: number }> = (await api('GET', `/api/v1/artifacts?job=${id}`)).artifacts;
    expect(listed).toHaveLength(2_000);
    // Listed in upload order (FIFO: first written first), each file with its own place.
    const orders = listed.map((a) => a.order);
    expect(orders).toEqual([...orders].sort((x, y) => x - y));
    expect(new Set(orders).size).toBe(2_000);
    const taskIds = (await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks[0].artifact_ids as string[];
    expect(new Set(taskIds).size).toBe(2_000);
  });

  it('cancel stops the container and the capture within 2 s, and nothing is captured after', { timeout: 120_000 }, async () => {
    await startWithProject();
    const id = await submit({});
    const [spec] = await docker.whenRunning(1);
    await writeArtifacts(spec!, 4_000);
    // The capture is under way (files are taken 500 ms after they stop changing).
    for (let polls = 0; (await artifactCount(id)) < 100; polls++) expect(polls).toBeLessThan(100_000);
    const healthStarted = performance.now();
    expect((await fetch(`${server!.url}/health`)).status).toBe(200);
    expect(performance.now() - healthStarted).toBeLessThan(1_000);
    const started = performance.now();
    await api('PUT', `/api/v1/jobs/${id}/cancel`);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(docker.runningNames()).toEqual([]);
    expect((await finished(id)).status).toBe('cancelled');
    const after = await artifactCount(id);
    expect(after).toBeLessThan(4_000);
    // Nothing of the task runs on: no capture (the stable wait is 500 ms, a poll every 200 ms).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await artifactCount(id)).toBe(after);
  });
});
