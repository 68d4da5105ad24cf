import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { tempDir } from '../helpers/context.js';
import { okApi, pushValidProject, readSse, startFakeDockerServer } from '../helpers/server.js';

/**
 * Issue 18, findings 1 and 5 where a task starts: what a task's container receives (its composed
 * payload, a reduce's map results, a resolved job's results) is sized before it is built, and a
 * directive reaches only jobs of the task's own project, also for jobs stored before the checks
 * at submit (the test writes them into the server's database as an older server would have).
 * The fake Docker holds every container until the test ends it, so the order is the test's.
 */

let server: RunningServer | undefined;
let db: Database.Database | undefined;
let docker: FakeDocker;

afterEach(async () => {
  db?.close();
  db = undefined;
  await server?.close();
  server = undefined;
});

async function start(): Promise<void> {
  docker = new FakeDocker();
  docker.hold = true;
  const dataDir = await tempDir('cycle-task-payload-');
  server = await startFakeDockerServer(docker, { dataDir });
  for (const project of ['p', 'q']) expect(await pushValidProject(server, project)).toBe(201);
  db = new Database(path.join(dataDir, 'cycle.db'));
  db.pragma('busy_timeout = 5000');
}

const api = okApi(() => server!);

const submit = async (body: Record<string, unknown>): Promise<string> => (await api('POST', '/api/v1/jobs', { project: 'p', ...body })).id;
const tasksOf = async (id: string): Promise<Array<{ id: string; index: number; kind: string; status: string; error: string | null }>> =>
  (await api('GET', `/api/v1/jobs/${id}/tasks`)).tasks;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const NINE_MIB = 'x'.repeat(9 * 1024 * 1024);

async function finished(id: string): Promise<any> {
  const { ended } = await readSse(server!, `/api/v1/jobs/${id}/stream`);
  expect(ended, `the event stream of job ${id} ended before the job finished`).toBe(true);
  return api('GET', `/api/v1/jobs/${id}`);
}

/**
 * The job's end, or 'a container ran' if one starts first (the old code ran the task with what it
 * should have refused, and the held container would keep the job from ending).
 */
async function endedWithoutRunning(id: string): Promise<any> {
  const ran = docker.whenRunning(1).then(() => 'a container ran');
  return Promise.race([finished(id), ran]);
}

/** Runs each of a job's held containers to the end with `result(index)`, one at a time. */
async function runAll(count: number, result: (n: number) => unknown): Promise<void> {
  for (let n = 0; n < count; n++) {
    const [spec] = await docker.whenRunning(1);
    docker.exit(spec!.name, 0, '', result(n));
  }
}

describe('what a task receives is sized before it is built, when it starts', () => {
  it('a stored batched task whose composed payload is over the cap fails, naming it; no container runs', async () => {
    await start();
    const warm = await submit({});
    await docker.whenRunning(1);
    const big = await submit({ payload: { n: range(200) }, fan_out: { by: 'n' }, batch_size: 200 });
    // As a server without the cap stored it: a 20,000-key base under each of 200 items (about 44 MB).
    const base = { item: { ...Object.fromEntries(range(20_000).map((i) => [`k${i}`, 0])), n: null }, directives: {} };
    db!.prepare('UPDATE jobs SET task_base = ? WHERE id = ?').run(JSON.stringify(base), big);
    await runAll(1, () => ({ ok: true }));
    expect((await finished(warm)).status).toBe('completed');
    expect(await endedWithoutRunning(big)).toMatchObject({ status: 'failed' });
    const [task] = await tasksOf(big);
    expect(task!.error).toMatch(/payload would be about \d+\.\d MiB .*at most 16\.0 MiB per task: resubmit with a lower batch_size/);
    expect(docker.called('runContainer')).toHaveLength(1);
  });

  it("a reduce whose maps' results are over the cap together fails, naming it, instead of receiving them", async () => {
    await start();
    const id = await submit({ type: 'map_reduce', payload: { n: [1, 2] }, fan_out: { by: 'n' }, reduce_command: ['reduce'] });
    await runAll(2, () => ({ blob: NINE_MIB }));
    // The maps succeeded, the reduce failed.
    expect(await endedWithoutRunning(id)).toMatchObject({ status: 'partial' });
    // The maps' 9 MiB results fill the first pages: the reduce is the failed one.
    const [reduce] = (await api('GET', `/api/v1/jobs/${id}/tasks?status=failed`)).tasks;
    expect(reduce).toMatchObject({ status: 'failed' });
    expect(reduce.error).toMatch(/map tasks' results are about 18\.0 MiB together; at most 16\.0 MiB reach the reduce task in payload\.map_results/);
    expect(docker.called('runContainer')).toHaveLength(2);
  });

  it('_shared.resolve of a job whose results are over the cap fails the task, naming the directive', async () => {
    await start();
    const first = await submit({ payload: { n: [1, 2] }, fan_out: { by: 'n' } });
    await runAll(2, () => ({ blob: NINE_MIB }));
    expect((await finished(first)).status).toBe('completed');
    const second = await submit({ depends_on: [first], payload: { _shared: { resolve: { whole: { job: first } } } } });
    expect(await endedWithoutRunning(second)).toMatchObject({ status: 'failed' });
    const [task] = await tasksOf(second);
    expect(task!.error).toMatch(new RegExp(`^_shared\\.resolve\\.whole: job ${first}'s results are about 18\\.0 MiB; at most 16\\.0 MiB`));
    expect(docker.called('runContainer')).toHaveLength(2);
  });
});

describe("a stored job's directives reach only jobs of its own project", () => {
  it.each([
    ['_shared.resolve', (other: string) => ({ _shared: { resolve: { best: { job: other } } } }), '_shared.resolve.best'],
    ['_artifacts.download', (other: string) => ({ _artifacts: { download: { model: { job_id: other, artifact: 'out.txt' } } } }), '_artifacts.download.model'],
  ])('%s naming a job that is now of another project: the task fails, the job is answered as absent', async (_name, directive, field) => {
    await start();
    const other = await submit({});
    await docker.whenRunning(1);
    const dependent = await submit({ depends_on: [other], payload: directive(other) });
    // As if submitted to a server without the check: the dependency is another project's job.
    db!.prepare("UPDATE jobs SET project = 'q' WHERE id = ?").run(other);
    await runAll(1, () => ({ secret: 'of project q' }));
    expect(await endedWithoutRunning(dependent)).toMatchObject({ status: 'failed' });
    const [task] = await tasksOf(dependent);
    expect(task!.error).toBe(`${field}: no job "${other}" in project "p"`);
    expect(docker.called('runContainer')).toHaveLength(1);
  });
});
