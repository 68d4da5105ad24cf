import { writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer, pushValidProject } from '../helpers/server.js';
import { MALICIOUS_TARBALLS, rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { tempDir } from '../helpers/context.js';
import { waitFor } from '../helpers/wait.js';

let server: RunningServer;
let dataDir: string;
const docker = new FakeDocker();

async function start(extra: { balance?: number } = {}): Promise<RunningServer> {
  const dir = await tempDir('cycle-server-');
  return startFakeDockerServer(docker, {
    dataDir: dir,
    workers: 2,
    maxFiles: 50,
    maxExtractBytes: 2 << 20,
    ...extra,
  });
}

beforeAll(async () => {
  server = await start();
  dataDir = server.dataDir;
});
afterAll(async () => server.close());

async function api(
  method: string,
  route: string,
  options: { body?: unknown; raw?: Buffer; token?: string | null; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? server.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers,
    body: options.raw ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, body, headers: response.headers };
}

const ROUTES: Array<[string, string]> = [
  ['GET', '/api/v1/projects'],
  ['POST', '/api/v1/projects'],
  ['POST', '/api/v1/projects/p/push'],
  ['POST', '/api/v1/projects/p/init'],
  ['POST', '/api/v1/projects/p/invalidate'],
  ['GET', '/api/v1/projects/p/status'],
  ['GET', '/api/v1/projects/p/status/details'],
  ['GET', '/api/v1/projects/p/stream'],
  ['GET', '/api/v1/projects/p/kv'],
  ['GET', '/api/v1/projects/p/kv/k'],
  ['PUT', '/api/v1/projects/p/kv/k'],
  ['POST', '/api/v1/jobs'],
  ['POST', '/api/v1/jobs/batch'],
  ['GET', '/api/v1/jobs'],
  ['GET', '/api/v1/jobs/watch?ids=x'],
  ['GET', '/api/v1/jobs/stream'],
  ['GET', '/api/v1/jobs/x/progress'],
  ['POST', '/api/v1/dashboard/links'],
  ['GET', '/api/v1/session'],
  ['GET', '/api/v1/jobs/x'],
  ['GET', '/api/v1/jobs/x/tasks'],
  ['GET', '/api/v1/jobs/x/output'],
  ['GET', '/api/v1/jobs/x/stream'],
  ['PUT', '/api/v1/jobs/x/cancel'],
  ['GET', '/api/v1/results/x'],
  ['GET', '/api/v1/artifacts'],
  ['GET', '/api/v1/artifacts/x'],
  ['POST', '/api/v1/artifacts'],
  ['POST', '/api/v1/artifacts/direct'],
  ['GET', '/api/v1/account/balance'],
  ['GET', '/api/v1/account/holds'],
  ['GET', '/api/v1/account/ledger'],
  ['GET', '/api/v1/account/quotes'],
  ['POST', '/api/v1/recipes/r/jobs'],
  ['GET', '/api/v1/recipes'],
  ['GET', '/api/v1/recipes/r'],
];

describe('the local backend: auth', () => {
  it('the health check is open', async () => {
    const { status, body } = await api('GET', '/api/v1/health', { token: null });
    expect(status).toBe(200);
    expect(body).toEqual({ ok: true, status: 'ok', version: 'test' });
  });

  it.each(ROUTES)('%s %s: 401 JSON without a token, and with a wrong one', async (method, route) => {
    const none = await api(method, route, { token: null });
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('bearer token') } });
    const wrong = await api(method, route, { token: 'cyc_wrong' });
    expect(wrong.status).toBe(401);
  });

  it('the token file is 0600 and survives a restart', async () => {
    expect((await fs.stat(path.join(dataDir, 'token'))).mode & 0o777).toBe(0o600);
    expect(server.tokenCreated).toBe(true);
  });
});

describe('the local backend: pushes', () => {
  it.each(MALICIOUS_TARBALLS)('refuses $name with 400, leaving nothing behind', async ({ tarball, reason }) => {
    const treesBefore = await fs.readdir(path.join(dataDir, 'trees')).catch(() => []);
    const { status, body } = await api('POST', '/api/v1/projects/evil/push', { raw: tarball() });
    expect(status).toBe(400);
    expect(body.error.code).toBe('unsafe_tarball');
    expect(body.error.message).toMatch(reason);
    expect(await fs.readdir(path.join(dataDir, 'tmp'))).toEqual([]);
    expect(await fs.readdir(path.join(dataDir, 'trees')).catch(() => [])).toEqual(treesBefore);
    expect((await api('GET', '/api/v1/projects/evil/status')).status).toBe(404);
    await expect(fs.access('/tmp/cycle-evil.txt')).rejects.toThrow();
  });

  it('stores a valid project; the same content again is "unchanged"', async () => {
    const tarball = rawTarGz([...VALID_PROJECT, { name: 'main.py', body: 'print(1)\n' }, { name: 'link', type: '2', linkname: 'main.py' }]);
    const first = await api('POST', '/api/v1/projects/p/push', { raw: tarball, headers: { 'x-cycle-build-hash': 'not-the-hash' } });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ project: 'p', format: 'cycleswap', revision: 1, unchanged: false, rebuild: true, build_hash_matches: false });
    const again = await api('POST', '/api/v1/projects/p/push', { raw: tarball });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ revision: 1, unchanged: true });
    const status = await api('GET', '/api/v1/projects/p/status');
    expect(status.body).toMatchObject({ project: 'p', revision: 1, can_accept_new_jobs: true, content_hash: first.body.content_hash });
    const details = await api('GET', '/api/v1/projects/p/status/details');
    expect(details.body.nodes).toHaveLength(1);
  });

  it('an invalid project is a 422 naming the problem', async () => {
    const tarball = rawTarGz([
      { name: '.cycleswap/manifest.toml', body: '[main]\nname = 1\n' },
      { name: '.cycleswap/run.sh', body: '' },
      { name: '.cycleswap/build.sh', body: '' },
    ]);
    const { status, body } = await api('POST', '/api/v1/projects/bad/push', { raw: tarball });
    expect(status).toBe(422);
    expect(body.error.message).toContain('.cycleswap/manifest.toml:2:8: error: main.name');
  });

  it('an empty body, a bad name, rebuild+clean', async () => {
    expect((await api('POST', '/api/v1/projects/p/push', { raw: Buffer.alloc(0) })).body.error.code).toBe('empty_body');
    expect((await api('POST', '/api/v1/projects/Bad_Name!/push', { raw: Buffer.from('x') })).status).toBe(400);
    expect((await api('POST', '/api/v1/projects/p/push?rebuild=1&clean=1', { raw: Buffer.from('x') })).status).toBe(422);
  });
});

describe('the local backend: jobs', () => {
  it.each([
    [{}, 400, 'project'],
    [{ project: 'nope' }, 404, 'project'],
    [{ project: 'p', colour: 'red' }, 400, ''],
    [{ project: 'p', type: 'magic' }, 422, 'type'],
    [{ project: 'p', payload: { a: [1] }, fan_out: { by: 'a', items: [{}] } }, 422, 'fan_out'],
    [{ project: 'p', payload: { a: 1 }, fan_out: { by: 'a' } }, 422, 'payload.a'],
    [{ project: 'p', depends_on: ['job_missing'] }, 422, 'depends_on'],
    [{ project: 'p', runner_command: 'python job.py' }, 400, 'runner_command'],
    [{ project: 'p', timeout_s: -1 }, 422, 'timeout_s'],
    [{ project: 'p', callback_url: 'ftp://x' }, 422, 'callback_url'],
    [{ project: 'p', profile: 'gpu' }, 422, 'profile'],
  ])('%j → %i naming %s', async (body, status, field) => {
    const answer = await api('POST', '/api/v1/jobs', { body });
    expect(answer.status).toBe(status);
    expect(answer.body.error.code).toBeTruthy();
    if (field) expect(answer.body.error.field).toBe(field);
  });

  it('lists jobs newest first a page at a time (next_cursor), with the event id to follow the jobs stream from', async () => {
    const tag = `paging-${Date.now()}`;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await api('POST', '/api/v1/jobs', { body: { project: 'p', tags: [tag] } })).body.id);
    const first = await api('GET', `/api/v1/jobs?tag=${tag}&limit=2`);
    expect(first.body.jobs.map((j: { id: string }) => j.id)).toEqual([ids[2], ids[1]]);
    expect(first.body.next_cursor).toMatch(/^\d+$/);
    expect(Number(first.body.last_event_id)).toBeGreaterThan(0);
    const second = await api('GET', `/api/v1/jobs?tag=${tag}&limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.jobs.map((j: { id: string }) => j.id)).toEqual([ids[0]]);
    expect(second.body.next_cursor).toBeNull();
    expect((await api('GET', '/api/v1/jobs?cursor=abc')).body.error.field).toBe('cursor');
    // A progress page of a job with no progress: every task, no points.
    const progress = await api('GET', `/api/v1/jobs/${ids[0]}/progress`);
    expect(progress.status).toBe(200);
    expect(progress.body).toMatchObject({ job_id: ids[0], fields: [], next_cursor: null });
    expect(progress.body.tasks).toEqual([{ task_id: expect.stringMatching(/^task_/), index: 0, points_total: 0, points: [] }]);
    expect((await api('GET', `/api/v1/jobs/${ids[0]}/progress?max_points=0`)).body.error.field).toBe('max_points');
  });

  it('progress of the tasks a user picked (?tasks=): those tasks by index, each once, sorted, no next page; a bad list is a 400 naming tasks', async () => {
    const id = (await api('POST', '/api/v1/jobs', { body: { project: 'p', payload: { seed: [1, 2, 3, 4, 5, 6] }, fan_out: { by: 'seed' } } })).body.id;
    const picked = await api('GET', `/api/v1/jobs/${id}/progress?tasks=4,1,4,99`);
    expect(picked.status).toBe(200);
    // Task 99 does not exist: left out, as a page past the end would be.
    expect(picked.body.tasks.map((t: { index: number }) => t.index)).toEqual([1, 4]);
    expect(picked.body.next_cursor).toBeNull();
    for (const bad of ['', 'a', '1,,2', '-1', Array.from({ length: 201 }, (_, i) => i).join(',')]) {
      const answer = await api('GET', `/api/v1/jobs/${id}/progress?tasks=${bad}`);
      expect(answer.status, bad).toBe(400);
      expect(answer.body.error.field).toBe('tasks');
    }
  });

  it('bad JSON is a 400, a huge body a 413', async () => {
    expect((await api('POST', '/api/v1/jobs', { raw: Buffer.from('{"project":'), headers: { 'content-type': 'application/json' } })).body.error.code).toBe(
      'invalid_json',
    );
    expect((await api('POST', '/api/v1/jobs', { raw: Buffer.alloc(2 << 20, 0x20), headers: { 'content-type': 'application/json' } })).status).toBe(413);
  });

  it('a batch is at most 200 jobs, with an outcome per entry', async () => {
    const tooMany = await api('POST', '/api/v1/jobs/batch', { body: { jobs: Array.from({ length: 201 }, () => ({ project: 'p' })) } });
    expect(tooMany.status).toBe(422);
    expect(tooMany.body.error.message).toContain('at most 200');
    const mixed = await api('POST', '/api/v1/jobs/batch', {
      body: { jobs: [{ project: 'p', meta: { i: 0 }, variant: 'a' }, { project: 'nope' }, { project: 'p', payload: { x: 1 } }] },
    });
    expect(mixed.status).toBe(200);
    expect(mixed.body.jobs.map((j: { index: number; ok: boolean }) => [j.index, j.ok])).toEqual([
      [0, true],
      [1, false],
      [2, true],
    ]);
    expect(mixed.body.jobs[0]).toMatchObject({ meta: { i: 0 }, variant: 'a', payload: {} });
    expect(mixed.body.jobs[1].error.code).toBe('not_found');
  });

  it('an Idempotency-Key answers a repeat with the first response', async () => {
    const body = { project: 'p', payload: { run: 1 }, tags: ['idem'] };
    const first = await api('POST', '/api/v1/jobs', { body, headers: { 'idempotency-key': 'key-12345678' } });
    const second = await api('POST', '/api/v1/jobs', { body, headers: { 'idempotency-key': 'key-12345678' } });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body.id).toBe(first.body.id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect((await api('GET', '/api/v1/jobs?tag=idem')).body.jobs).toHaveLength(1);
    const other = await api('POST', '/api/v1/jobs', { body: { ...body, payload: { run: 2 } }, headers: { 'idempotency-key': 'key-12345678' } });
    expect(other.status).toBe(422);
  });

  it('kv: put, get, list; bad keys; unknown keys', async () => {
    expect((await api('PUT', '/api/v1/projects/p/kv/best_lr', { body: { value: { lr: 0.01 } } })).body).toMatchObject({ key: 'best_lr', value: { lr: 0.01 } });
    expect((await api('GET', '/api/v1/projects/p/kv/best_lr')).body.value).toEqual({ lr: 0.01 });
    expect((await api('GET', '/api/v1/projects/p/kv')).body.entries).toHaveLength(1);
    expect((await api('GET', '/api/v1/projects/p/kv/missing')).status).toBe(404);
    expect((await api('PUT', '/api/v1/projects/p/kv/bad%20key', { body: { value: 1 } })).status).toBe(400);
    expect((await api('PUT', '/api/v1/projects/p/kv/k', { body: { nothing: 1 } })).status).toBe(400);
  });

  it('a task runs locked down, with its requirements as limits; one killed for memory fails saying so, with the limit', async () => {
    docker.onRun = () => ({ exitCode: 137, oomKilled: true });
    try {
      const job = await api('POST', '/api/v1/jobs', { body: { project: 'p', requirements: { memory_gb: 1, cpu: 1 } } });
      expect(job.status).toBe(201);
      // Waits for the job's end and asserts it (a loaded machine may take seconds).
      await waitFor(async () => (await api('GET', `/api/v1/jobs/${job.body.id}`)).body.status === 'failed', 20_000, 'the job to fail');
      const tasks = (await api('GET', `/api/v1/jobs/${job.body.id}/tasks`)).body.tasks as Array<{ id: string; error: string }>;
      expect(tasks[0]!.error).toBe('ran out of memory (limit 1.0 GiB): the kernel killed it');
      // This task's container (jobs of earlier tests may still be running theirs).
      const spec = (docker.called('runContainer') as Array<{ name: string; network?: string; confinement?: Record<string, unknown> }>).find(
        (run) => run.name === `cycle-server-${tasks[0]!.id}`,
      )!;
      expect(spec.network).toBe('none');
      expect(spec.confinement).toMatchObject({ noNewPrivileges: true, capDrop: ['ALL'], memoryBytes: 2 ** 30, nanoCpus: 1e9, pidsLimit: 4096 });
    } finally {
      docker.onRun = () => 0;
    }
  });

  it('public documents show no host paths, container names or image digests', async () => {
    const job = await api('POST', '/api/v1/jobs', { body: { project: 'p' } });
    let status = '';
    const finished = async (): Promise<boolean> =>
      ['completed', 'partial', 'failed', 'cancelled'].includes((status = (await api('GET', `/api/v1/jobs/${job.body.id}`)).body.status));
    await waitFor(finished, 15_000, `job ${job.body.id} to finish`, () => status);
    expect(status).toBe('completed'); // the documents below are those of a job that ran
    const images = [...docker.images.keys()];
    for (const route of [
      `/api/v1/jobs/${job.body.id}`,
      `/api/v1/jobs/${job.body.id}/tasks`,
      `/api/v1/results/${job.body.id}`,
      '/api/v1/jobs',
      '/api/v1/projects/p/status/details',
      '/api/v1/artifacts',
    ]) {
      const text = JSON.stringify((await api('GET', route)).body);
      expect(text).not.toContain(dataDir);
      expect(text).not.toContain('cycle-server-');
      for (const image of images) expect(text).not.toContain(image.replace('sha256:', ''));
    }
  });
});

describe('the local backend: init', () => {
  it('402 below $5, with how to fix it', async () => {
    const poor = await start({ balance: 1 });
    try {
      expect(await pushValidProject(poor)).toBe(201);
      const init = await fetch(`${poor.url}/api/v1/projects/p/init`, { method: 'POST', headers: { authorization: `Bearer ${poor.token}` } });
      expect(init.status).toBe(402);
      expect(((await init.json()) as { error: { message: string } }).error.message).toContain('$5');
    } finally {
      await poor.close();
    }
  });
});

describe('the local backend: validation checks while a revision is prepared', () => {
  const manifest = JSON.stringify({
    version: 1,
    runtime: { kind: 'oci', workdir: '/workspace' },
    entrypoint: { command: ['python3', 'job.py'] },
    validation: { executables: ['python3'], files: ['job.py'], commands: [{ label: 'numpy import', command: ['python3', '-c', 'import numpy'] }] },
  });
  const project: Parameters<typeof rawTarGz>[0] = [
    { name: 'Dockerfile', body: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n' },
    { name: 'computalot.project.json', body: manifest },
    { name: 'job.py', body: 'print("hi")\n' },
  ];

  it('each check runs locked down; a failing one fails the preparation and the job, named by its label; passing checks let the job run', async () => {
    let numpyInstalled = false;
    const checks: Array<{ name: string; network?: string; confinement?: unknown }> = [];
    docker.onRun = (spec, io) => {
      if (!spec.name.startsWith('cycle-server-check-')) {
        // The task: answers as job.py would, with a result file.
        const file = spec.env.COMPUTALOT_TASK_RESULT;
        const mount = spec.mounts.find((m) => file?.startsWith(`${m.target}/`));
        if (file && mount) writeFileSync(path.join(mount.source, path.posix.relative(mount.target, file)), '{"ran": true}');
        return 0;
      }
      checks.push(spec);
      if (spec.name.endsWith('-checks')) {
        io.stdout(Buffer.from('ok executable python3\nok file job.py\n'));
        return 0;
      }
      if (numpyInstalled) return 0;
      io.stderr(Buffer.from("ModuleNotFoundError: No module named 'numpy'\n"));
      return 1;
    };
    try {
      expect((await api('POST', '/api/v1/projects/checked/push', { raw: rawTarGz(project) })).status).toBe(201);
      const failing = await api('POST', '/api/v1/jobs', { body: { project: 'checked' } });
      expect(failing.status).toBe(201);
      await waitFor(async () => (await api('GET', `/api/v1/jobs/${failing.body.id}`)).body.status === 'failed', 20_000, 'the job to fail');
      const [task] = (await api('GET', `/api/v1/jobs/${failing.body.id}/tasks`)).body.tasks as Array<{ error: string }>;
      expect(task!.error).toContain('1 of 3 validation checks failed in the built image');
      expect(task!.error).toContain("command numpy import: exited with code 1: ModuleNotFoundError: No module named 'numpy'");
      expect((await api('GET', '/api/v1/projects/checked/status')).body.build).toMatchObject({ state: 'failed' });
      expect(checks.length).toBeGreaterThanOrEqual(2);
      for (const check of checks) {
        expect(check.network).toBe('none');
        expect(check.confinement).toMatchObject({ noNewPrivileges: true, capDrop: ['ALL'] });
      }

      // The Dockerfile now installs it: a new revision passes its checks and the job runs.
      numpyInstalled = true;
      const fixed = project.map((entry) => (entry.name === 'Dockerfile' ? { ...entry, body: `${entry.body}RUN pip install numpy\n` } : entry));
      expect((await api('POST', '/api/v1/projects/checked/push', { raw: rawTarGz(fixed) })).status).toBe(201);
      const passing = await api('POST', '/api/v1/jobs', { body: { project: 'checked' } });
      await waitFor(async () => ['completed', 'failed'].includes((await api('GET', `/api/v1/jobs/${passing.body.id}`)).body.status), 20_000, 'the job to end');
      const ended = (await api('GET', `/api/v1/jobs/${passing.body.id}`)).body;
      expect(ended.status, JSON.stringify((await api('GET', `/api/v1/jobs/${passing.body.id}/tasks`)).body)).toBe('completed');
    } finally {
      docker.onRun = () => 0;
    }
  });
});
