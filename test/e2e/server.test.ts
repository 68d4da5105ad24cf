import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, readSse, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { docker, removeTestProjectImages, testProjectName, waitFor } from '../helpers/e2e.js';
import { tempDir, writeFiles } from '../helpers/context.js';

const fixture = path.join(import.meta.dirname, '..', 'fixtures', 'projects', 'tools');
let server: ServerProcess;
let api: ReturnType<typeof client>;
let tools: string;
const TOOLS = testProjectName('tools');
const OCI_DEMO = testProjectName('oci-demo');
const INIT_DEMO = testProjectName('init-demo');
const INIT_FAIL = testProjectName('init-fail');
const OCI_SERVICES = testProjectName('oci-services');
const DOCS_EXAMPLES = ['docs-minimal', 'docs-build', 'docs-validation', 'docs-runtime-init', 'docs-runtime-services', 'docs-all-sections'];
const docsExampleProject = (example: string): string => testProjectName(example);
const DOCS_PROJECTS = DOCS_EXAMPLES.map(docsExampleProject);

beforeAll(async () => {
  server = await startServerProcess({ workers: 3 });
  api = client(server);
  tools = await tempDir('cycle-e2e-tools-');
  await fs.cp(fixture, tools, { recursive: true });
  const pushed = await api.push(TOOLS, tools);
  expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
});

afterAll(async () => {
  await server.stop('SIGTERM');
  await removeTestProjectImages([TOOLS, OCI_DEMO, INIT_DEMO, INIT_FAIL, OCI_SERVICES, ...DOCS_PROJECTS]);
});

const runner = (mode: string) => ['python3', 'tools.py', mode];

describe('cycle server with real Docker', () => {
  it('prepares a pushed project with init, then reports it ready', async () => {
    const init = await api.call('POST', `/api/v1/projects/${TOOLS}/init`, {});
    expect(init.status).toBe(202);
    await waitFor(async () => (await api.call('GET', `/api/v1/projects/${TOOLS}/status`)).body.ready_for_jobs === true, 120_000, 'ready_for_jobs');
    const details = (await api.call('GET', `/api/v1/projects/${TOOLS}/status/details`)).body;
    expect(details.nodes[0]).toMatchObject({ node: 'local', state: 'ready', ready: true });
  });

  it('a fan-out of 20 items with batch_size 5: 4 tasks and 20 results, artifacts collected', async () => {
    const job = await api.submit({
      project: TOOLS,
      runner_command: runner('square'),
      payload: { n: Array.from({ length: 20 }, (_, i) => i + 1) },
      fan_out: { by: 'n' },
      batch_size: 5,
      tags: ['fanout'],
    });
    const done = await api.waitJob(job.id);
    expect(done.status).toBe('completed');
    const tasks = (await api.call('GET', `/api/v1/jobs/${job.id}/tasks`)).body.tasks;
    expect(tasks).toHaveLength(4);
    expect(tasks.every((t: { items: number; status: string }) => t.items === 5 && t.status === 'succeeded')).toBe(true);
    const results = (await api.call('GET', `/api/v1/results/${job.id}`)).body;
    expect(results.complete).toBe(true);
    expect(results.items).toHaveLength(20);
    expect(results.items.map((i: { result: { square: number } }) => i.result.square)).toEqual(Array.from({ length: 20 }, (_, i) => (i + 1) ** 2));
    expect(results.artifact_ids).toHaveLength(20);
    const artifacts = (await api.call('GET', `/api/v1/artifacts?job=${job.id}`)).body.artifacts;
    const sq7 = artifacts.find((a: { name: string }) => a.name === 'sq-7.txt');
    const download = await fetch(`${server.url}/api/v1/artifacts/${sq7.id}`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(await download.text()).toBe('49');
    expect(download.headers.get('x-checksum-sha256')).toBe(sq7.sha256);
    expect((await api.call('GET', '/api/v1/jobs?tag=fanout')).body.jobs.map((j: { id: string }) => j.id)).toEqual([job.id]);
  });

  it('a sweep over a grid, with results per point', async () => {
    const job = await api.submit({ type: 'sweep', project: TOOLS, runner_command: runner('eval'), payload: { grid: { lr: [1, 2], depth: [3, 5] } } });
    const done = await api.waitJob(job.id);
    expect(done.status).toBe('completed');
    const results = (await api.call('GET', `/api/v1/results/${job.id}`)).body;
    expect(results.aggregate.points.map((p: { params: unknown; result: { score: number } }) => [p.params, p.result.score])).toEqual([
      [{ lr: 1, depth: 3 }, 3],
      [{ lr: 1, depth: 5 }, 5],
      [{ lr: 2, depth: 3 }, 6],
      [{ lr: 2, depth: 5 }, 10],
    ]);
  });

  it('map_reduce: the reduce task gets every map result', async () => {
    const job = await api.submit({
      type: 'map_reduce',
      project: TOOLS,
      runner_command: runner('square'),
      reduce_command: runner('reduce'),
      payload: { n: [1, 2, 3, 4] },
      fan_out: { by: 'n' },
    });
    const done = await api.waitJob(job.id);
    expect(done.status).toBe('completed');
    const results = (await api.call('GET', `/api/v1/results/${job.id}`)).body;
    expect(results.aggregate.reduce.result).toEqual({ total: 30, maps: 4 });
  });

  it('benchmark: strategies × repeats, aggregated per strategy', async () => {
    const job = await api.submit({
      type: 'benchmark',
      project: TOOLS,
      runner_command: runner('bench'),
      payload: { strategies: { a: { base: 10 }, b: { base: 20 } }, repeats: 2 },
    });
    expect((await api.waitJob(job.id)).status).toBe('completed');
    const { strategies } = (await api.call('GET', `/api/v1/results/${job.id}`)).body.aggregate;
    expect(strategies.a).toMatchObject({ runs: 2, succeeded: 2, metrics: { value: { mean: 10.5, min: 10, max: 11 } } });
    expect(strategies.b.metrics.value.mean).toBe(20.5);
  });

  it('a DAG of two jobs hands off an artifact, and kv values resolve', async () => {
    await api.call('PUT', `/api/v1/projects/${TOOLS}/kv/threshold`, { value: 0.75 });
    const producer = await api.submit({ project: TOOLS, runner_command: runner('write'), payload: { csv: 'x,y\n1,2\n3,4\n' } });
    const consumer = await api.submit({
      project: TOOLS,
      runner_command: runner('read'),
      depends_on: [producer.id],
      payload: {
        _artifacts: { download: { data: { job_id: producer.id, artifact: 'dataset.csv' } } },
        _shared: { resolve: { threshold: { kv: 'threshold' }, rows: { job: producer.id, path: 'items.0.result.rows' } } },
      },
    });
    expect((await api.waitJob(consumer.id)).status).toBe('completed');
    const result = (await api.call('GET', `/api/v1/results/${consumer.id}`)).body.items[0].result;
    expect(result).toEqual({ data: 'x,y\n1,2\n3,4\n', shared: { threshold: 0.75, rows: 2 } });
  });

  it('a failed dependency fails the downstream job with the reason', async () => {
    const failing = await api.submit({ project: TOOLS, runner_command: runner('fail') });
    const downstream = await api.submit({ project: TOOLS, runner_command: runner('square'), payload: { n: 2 }, depends_on: [failing.id] });
    expect((await api.waitJob(failing.id)).status).toBe('failed');
    const done = await api.waitJob(downstream.id);
    expect(done.status).toBe('failed');
    expect(done.error).toBe(`dependency ${failing.id} ended failed`);
    const output = (await api.call('GET', `/api/v1/jobs/${failing.id}/output`)).body;
    expect(output.tasks[0].output).toContain('about to fail');
    const tasks = (await api.call('GET', `/api/v1/jobs/${failing.id}/tasks`)).body.tasks;
    expect(tasks[0]).toMatchObject({ status: 'failed', exit_code: 3, error: 'exited with code 3' });
  });

  it('a partial job: some tasks fail', async () => {
    const job = await api.submit({ project: TOOLS, runner_command: runner('square'), fan_out: { items: [{ n: 2 }, { no_n: true }] } });
    const done = await api.waitJob(job.id);
    expect(done.status).toBe('partial');
    expect(done.counts).toMatchObject({ total: 2, succeeded: 1, failed: 1 });
  });

  it('cancel stops a running job and its container', async () => {
    const job = await api.submit({ project: TOOLS, runner_command: runner('sleep'), payload: { seconds: 60 } });
    await waitFor(async () => (await api.call('GET', `/api/v1/jobs/${job.id}`)).body.status === 'running', 60_000, 'running');
    await waitFor(async () => (await docker(['ps', '--filter', `label=cycle.project-key=server:${TOOLS}`, '-q'])) !== '', 30_000, 'a container');
    const cancelled = await api.call('PUT', `/api/v1/jobs/${job.id}/cancel`);
    expect(cancelled.body.status).toBe('cancelled');
    const tasks = (await api.call('GET', `/api/v1/jobs/${job.id}/tasks`)).body.tasks;
    expect(tasks[0].status).toBe('cancelled');
    await waitFor(async () => (await docker(['ps', '-a', '--filter', `label=cycle.task=${tasks[0].id}`, '-q'])) === '', 20_000, 'the container to go');
  });

  it('timeout_s kills the container and fails the task "timed out"', async () => {
    const job = await api.submit({ project: TOOLS, runner_command: runner('sleep'), payload: { seconds: 60 }, timeout_s: 2 });
    const done = await api.waitJob(job.id, 60_000);
    expect(done.status).toBe('failed');
    const tasks = (await api.call('GET', `/api/v1/jobs/${job.id}/tasks`)).body.tasks;
    expect(tasks[0].error).toBe('timed out after 2s');
    expect(tasks[0].latest_progress).toMatchObject({ second: expect.any(Number) });
  });

  it('SSE: a client that disconnects and resumes with Last-Event-ID gets every event exactly once', async () => {
    const job = await api.submit({ project: TOOLS, runner_command: runner('sleep'), payload: { seconds: 3 } });
    const first = await readSse(server, `/api/v1/jobs/${job.id}/stream`, { stopAfter: (events) => events.some((e) => e.event === 'progress') });
    expect(first.ended).toBe(false);
    const lastId = first.events.at(-1)!.id;
    const rest = await readSse(server, `/api/v1/jobs/${job.id}/stream`, { lastEventId: lastId });
    expect(rest.ended).toBe(true);
    const resumed = [...first.events, ...rest.events];
    const whole = await readSse(server, `/api/v1/jobs/${job.id}/stream`);
    expect(resumed.map((e) => e.id)).toEqual(whole.events.map((e) => e.id));
    expect(new Set(resumed.map((e) => e.id)).size).toBe(resumed.length);
    expect(resumed.map((e) => Number(e.id))).toEqual([...resumed.map((e) => Number(e.id))].sort((a, b) => a - b));
    expect(whole.events.at(-1)).toMatchObject({ event: 'job', data: { data: { status: 'completed' } } });
    expect(rest.pings + first.pings).toBeGreaterThan(0);
    const watch = await readSse(server, `/api/v1/jobs/watch?ids=${job.id}`);
    expect(watch.ended).toBe(true);
    expect(watch.events.map((e) => e.id)).toEqual(whole.events.map((e) => e.id));
  });

  it('calls callback_url when the job finishes, retrying a failing endpoint with the same delivery id', async () => {
    const received: Array<{ event: string; delivery: string; job: { id: string; status: string } }> = [];
    let attempts = 0;
    const deliveryIds: unknown[] = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        attempts++;
        deliveryIds.push(req.headers['x-cycle-delivery']);
        if (attempts === 1) {
          res.writeHead(503).end();
          return;
        }
        received.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const port = (hook.address() as { port: number }).port;
    try {
      const job = await api.submit({ project: TOOLS, runner_command: runner('square'), payload: { n: 3 }, callback_url: `http://127.0.0.1:${port}/done` });
      await api.waitJob(job.id);
      await waitFor(() => received.length > 0, 20_000, 'the callback');
      expect(attempts).toBe(2);
      expect(received[0]).toMatchObject({ event: 'job.finished', job: { id: job.id, status: 'completed' } });
      // The retry carries the first try's delivery id, which the receiver dedupes on.
      expect(deliveryIds).toEqual([received[0]!.delivery, received[0]!.delivery]);
      expect(received[0]!.delivery).toMatch(/\S/);
    } finally {
      hook.close();
    }
  });

  it('runs an OCI project with its entrypoint', async () => {
    const root = await tempDir('cycle-e2e-oci-');
    await writeFiles(root, {
      Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n',
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: { kind: 'oci', workdir: '/workspace' },
        entrypoint: { command: ['python3', 'job.py'] },
      }),
      'job.py':
        'import json, os\np = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))\njson.dump({"twice": p["x"] * 2}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))\n',
    });
    expect((await api.push(OCI_DEMO, root)).status).toBe(201);
    const job = await api.submit({ project: OCI_DEMO, fan_out: { items: [{ x: 1 }, { x: 21 }] } });
    expect((await api.waitJob(job.id)).status).toBe('completed');
    expect((await api.call('GET', `/api/v1/results/${job.id}`)).body.items.map((i: { result: unknown }) => i.result)).toEqual([{ twice: 2 }, { twice: 42 }]);
  });

  it('runtime.init runs once while preparing a revision: two tasks of a job and a second job all see the files of that one run', async () => {
    const root = await tempDir('cycle-e2e-init-');
    await fs.cp(path.join(import.meta.dirname, '..', 'fixtures', 'manifests', 'docs-runtime-init'), root, { recursive: true });
    expect((await api.push(INIT_DEMO, root)).status).toBe(201);
    const inits = (): number =>
      server
        .log()
        .split('\n')
        .filter((line) => line.includes(`project ${INIT_DEMO}: running init "sync deps"`)).length;
    const initOf = async (jobId: string): Promise<string[]> =>
      (await api.call('GET', `/api/v1/results/${jobId}`)).body.items.map((i: { result: { init: string } }) => i.result.init);
    const first = await api.submit({ project: INIT_DEMO, fan_out: { items: [{ n: 1 }, { n: 2 }] } });
    expect((await api.waitJob(first.id)).status).toBe('completed');
    const [one, two] = await initOf(first.id);
    expect(one).toMatch(/^synced in \/workspace with UV_LINK_MODE=copy, run [0-9a-f-]{36}$/);
    expect(two).toBe(one);
    const second = await api.submit({ project: INIT_DEMO, payload: { n: 3 } });
    expect((await api.waitJob(second.id)).status).toBe('completed');
    expect(await initOf(second.id)).toEqual([one]);
    expect(inits()).toBe(1);
  });

  it("a failing init command fails the revision's build, and its jobs say which command and why", async () => {
    const root = await tempDir('cycle-e2e-init-fail-');
    await writeFiles(root, {
      Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n',
      'job.py': 'raise SystemExit("the task must not run")\n',
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: { kind: 'oci', workdir: '/workspace', init: { commands: [{ label: 'seed data', command: ['sh', '-c', 'echo "about to fail"; exit 7'] }] } },
        entrypoint: { command: ['python3', 'job.py'] },
      }),
    });
    expect((await api.push(INIT_FAIL, root)).status).toBe(201);
    const job = await api.submit({ project: INIT_FAIL, payload: {} });
    expect((await api.waitJob(job.id)).status).toBe('failed');
    const [task] = (await api.call('GET', `/api/v1/jobs/${job.id}/tasks`)).body.tasks;
    expect(task.error).toContain('the project build failed: runtime.init.commands[0] "seed data" exited with code 7');
    expect(task.error).toContain('about to fail');
    expect(task.error).not.toContain(server.dataDir);
    const status = (await api.call('GET', `/api/v1/projects/${INIT_FAIL}/status`)).body;
    expect(status.build).toMatchObject({ state: 'failed', error: expect.stringContaining('runtime.init.commands[0] "seed data" exited with code 7') });
  });
});

describe("cycle server: the Project Manifest page's examples run as pushed", () => {
  it.each(DOCS_EXAMPLES.map((example, index) => [example, DOCS_PROJECTS[index]!]))('%s', async (example, project) => {
    const root = await tempDir('cycle-e2e-docs-');
    await fs.cp(path.join(import.meta.dirname, '..', 'fixtures', 'manifests', example), root, { recursive: true });
    expect((await api.push(project, root)).status).toBe(201);
    const job = await api.submit({ project, payload: { n: 1 } });
    const done = await api.waitJob(job.id);
    const output = (await api.call('GET', `/api/v1/jobs/${job.id}/output`)).body.tasks[0].output as string;
    expect(done.status, output).toBe('completed');
    const [item] = (await api.call('GET', `/api/v1/results/${job.id}`)).body.items as Array<{ result: Record<string, unknown> }>;
    expect(item!.result.echo).toEqual({ n: 1 });
    // build.target and build.args reach the server's docker build (the stage after the target would fail).
    expect(item!.result.build_args).toBe(example === 'docs-build' || example === 'docs-all-sections' ? 'python 3.11' : null);
    if (example === 'docs-runtime-init' || example === 'docs-all-sections') {
      expect(item!.result.init).toMatch(/^synced in \/workspace with UV_LINK_MODE=copy, run [0-9a-f-]{36}$/);
      expect(server.log()).toContain(`project ${project}: running init "sync deps"`);
    }
    // The service was healthy before the entrypoint ran.
    if (example === 'docs-runtime-services' || example === 'docs-all-sections') {
      expect(output).toContain('[service embedder] healthy');
      expect(output.indexOf('[service embedder] healthy')).toBeLessThan(output.lastIndexOf('[cycle] task 0 succeeded'));
    }
    if (example === 'docs-runtime-services') expect(item!.result.service).toBe('hello from the embedder');
  });
});

describe('cycle server: runtime.services', () => {
  it('starts a service before each task (the job talks to it over loopback); one never healthy fails the task with its name and last output', async () => {
    const root = await tempDir('cycle-e2e-oci-services-');
    const manifest = (healthcheck: string[], readyTimeout: number) =>
      JSON.stringify({
        version: 1,
        runtime: {
          kind: 'oci',
          workdir: '/workspace',
          services: [
            {
              name: 'kv',
              command: ['sh', '-c', 'echo "serving static/"; exec python3 -m http.server 8080 --bind 127.0.0.1 --directory static'],
              ready_timeout_s: readyTimeout,
              healthcheck: { command: healthcheck },
            },
          ],
        },
        entrypoint: { command: ['python3', 'job.py'] },
      });
    await writeFiles(root, {
      Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n',
      'static/answer.txt': '42\n',
      'computalot.project.json': manifest(['python3', '-c', 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2)'], 60),
      'job.py':
        'import json, os, urllib.request\np = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))\nanswer = urllib.request.urlopen("http://127.0.0.1:8080/answer.txt", timeout=5).read().decode().strip()\njson.dump({"x": p["x"], "answer": answer}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))\n',
    });
    expect((await api.push(OCI_SERVICES, root)).status).toBe(201);
    const good = await api.submit({ project: OCI_SERVICES, fan_out: { items: [{ x: 1 }, { x: 2 }] } });
    expect((await api.waitJob(good.id)).status).toBe('completed');
    expect((await api.call('GET', `/api/v1/results/${good.id}`)).body.items.map((i: { result: unknown }) => i.result)).toEqual([
      { x: 1, answer: '42' },
      { x: 2, answer: '42' },
    ]);
    const goodOutput = (await api.call('GET', `/api/v1/jobs/${good.id}/output`)).body.tasks[0].output as string;
    expect(goodOutput).toContain('[service kv] serving static/\n');
    expect(goodOutput).toContain('[service kv] healthy\n');

    // A healthcheck that never passes (nothing listens on port 9).
    await writeFiles(root, {
      'computalot.project.json': manifest(['python3', '-c', 'import socket; socket.create_connection(("127.0.0.1", 9), timeout=1)'], 2),
    });
    expect((await api.push(OCI_SERVICES, root)).status).toBe(201);
    const bad = await api.submit({ project: OCI_SERVICES, payload: { x: 3 } });
    expect((await api.waitJob(bad.id)).status).toBe('failed');
    const tasks = (await api.call('GET', `/api/v1/jobs/${bad.id}/tasks`)).body.tasks;
    expect(tasks[0].error).toMatch(
      /^service "kv" was not healthy within 2s \(runtime\.services\[0\]; fix the service or its healthcheck, or raise its ready_timeout_s\); last output: serving static\/ \| not healthy within 2s: the last healthcheck exited with code 1 \| .*Connection refused/,
    );
    const badOutput = (await api.call('GET', `/api/v1/jobs/${bad.id}/output`)).body.tasks[0].output as string;
    expect(badOutput).toContain('[service kv] not healthy within 2s');
    expect(badOutput).not.toContain('COMPUTALOT_SERVICE_FAILED');
    expect(badOutput).toContain(`[cycle] task 0 failed: service "kv" was not healthy within 2s`);
  });
});

describe('cycle server: /artifacts captured while the task runs', () => {
  it('a.txt, ckpt/e1.bin, ckpt/e2.bin are listed while it runs, in FIFO order; a.txt with its last content; e1.bin kept after deletion', async () => {
    const job = await api.submit({ project: TOOLS, runner_command: runner('artifacts'), payload: { hold: 20 } });
    type Listed = { id: string; name: string; size: number; order: number };
    let listed: Listed[] = [];
    const second = Buffer.byteLength('second version\n');
    await waitFor(
      async () => {
        listed = (await api.call('GET', `/api/v1/artifacts?job=${job.id}`)).body.artifacts;
        return listed.length === 3 && listed.some((a) => a.name === 'a.txt' && a.size === second);
      },
      120_000,
      'the three artifacts, a.txt rewritten',
    );
    // Listed before the task ended (it holds for 20 s after writing).
    expect((await api.call('GET', `/api/v1/jobs/${job.id}`)).body.status).toBe('running');
    expect(listed.map((a) => a.name)).toEqual(['a.txt', 'ckpt/e1.bin', 'ckpt/e2.bin']);
    await api.call('PUT', `/api/v1/jobs/${job.id}/cancel`, {});
    const a = listed.find((x) => x.name === 'a.txt')!;
    const download = await fetch(`${server.url}/api/v1/artifacts/${a.id}`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(await download.text()).toBe('second version\n');
    const e1 = listed.find((x) => x.name === 'ckpt/e1.bin')!;
    expect(await (await fetch(`${server.url}/api/v1/artifacts/${e1.id}`, { headers: { authorization: `Bearer ${server.token}` } })).text()).toBe('e1');
  });
});

describe('cycle server: crash recovery', () => {
  it('kill -9 while tasks run: after a restart every job ends, nothing missing from /results', async () => {
    const dataDir = await tempDir('cycle-e2e-crash-');
    // A killed server cannot remove its tasks' temp folders: they go in one this test removes.
    const env = { TMPDIR: await tempDir('cycle-e2e-crash-tmp-') };
    const first = await startServerProcess({ dataDir, workers: 2, env });
    const crashApi = client(first);
    expect((await crashApi.push(TOOLS, tools)).status).toBe(201);
    // Submitted first, so it runs beside jobs[0]: it writes to /artifacts, then waits.
    const resuming = await crashApi.submit({ project: TOOLS, runner_command: runner('resume'), payload: { seconds: 8 } });
    const jobs: Array<Awaited<ReturnType<typeof crashApi.submit>>> = [];
    for (let i = 0; i < 3; i++)
      jobs.push(
        await crashApi.submit({
          project: TOOLS,
          runner_command: runner('sleep'),
          payload: { seconds: 2 },
          fan_out: { items: [{ seconds: 2 }, { seconds: 2 }] },
        }),
      );
    await waitFor(async () => (await crashApi.call('GET', `/api/v1/jobs/${jobs[0]!.id}`)).body.status === 'running', 120_000, 'a running task');
    // Killed once the resuming task's first file is captured (listed), while it still runs.
    await waitFor(
      async () => (await crashApi.call('GET', `/api/v1/artifacts?job=${resuming.id}`)).body.artifacts.length === 1,
      120_000,
      'the resuming task to have an artifact',
    );
    // Killed while a task's container runs: one has reported progress (not only been marked running).
    const reporting = async (): Promise<boolean> =>
      (await crashApi.call('GET', `/api/v1/jobs/${jobs[0]!.id}/tasks`)).body.tasks.some(
        (t: { status: string; latest_progress: unknown }) => t.status === 'running' && t.latest_progress != null,
      );
    await waitFor(reporting, 120_000, 'a running task to report progress from its container');
    first.child.kill('SIGKILL');
    await first.stop();

    const second = await startServerProcess({ dataDir, workers: 2, env });
    try {
      expect(second.log()).toMatch(/recovered \d+ interrupted task/);
      const again = client(second);
      for (const job of jobs) {
        const done = await again.waitJob(job.id, 180_000);
        expect(done.status).toBe('completed');
        const results = (await again.call('GET', `/api/v1/results/${job.id}`)).body;
        expect(results.complete).toBe(true);
        expect(results.items.map((i: { result: unknown }) => i.result)).toEqual([{ slept: 2 }, { slept: 2 }]);
      }
      const tasks = (await again.call('GET', `/api/v1/jobs/${jobs[0]!.id}/tasks`)).body.tasks;
      expect(tasks.some((t: { last_failed_attempt: { error: string } | null }) => t.last_failed_attempt?.error.includes('server stopped'))).toBe(true);
      // The task killed after writing to /artifacts ran again with that file back in place.
      const resumed = await again.waitJob(resuming.id, 180_000);
      expect(resumed.status).toBe('completed');
      const result = (await again.call('GET', `/api/v1/results/${resuming.id}`)).body.items[0].result;
      expect(result.found).toEqual(['attempt-0.txt']);
    } finally {
      await second.stop();
    }
  });
});
