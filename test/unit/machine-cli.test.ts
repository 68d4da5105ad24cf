import { describe, expect, it } from 'vitest';
import type { Machine } from '../../src/api/machines.js';
import { runCycle, tempDir } from '../helpers/context.js';
import { httpStubs, json } from '../helpers/http-stubs.js';
import { cpuInventory, gpuInventory, IDLE, OLDER_DRIVER } from '../helpers/machines.js';

// `cycle machine ...` and the waiting reason in `job get` / `job tasks`, against stubbed answers
// (the real client over the stubs); machine-routes.test.ts covers the server's side.

const TOKEN = `cym_${'A'.repeat(43)}`;

function machine(overrides: Partial<Machine> = {}): Machine {
  return {
    name: 'gpu-b',
    state: 'idle',
    slots: 2,
    running: [{ job_id: 'job_1', task_id: 'task_1', started_at: '2026-11-23T12:00:00.000Z' }],
    inventory: gpuInventory(OLDER_DRIVER),
    activity: IDLE,
    last_heartbeat_at: '2026-11-23T12:00:05.000Z',
    enrolled_at: '2026-11-23T11:00:00.000Z',
    not_placed: [{ job_id: 'job_9', reason: '[job].cuda = "13.0" needs a newer driver: gpu-b supports CUDA 12.4' }],
    ...overrides,
  };
}

describe('cycle machine token create', () => {
  it('not on a terminal: the token alone on stdout, nothing else', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/machines/tokens', json(201, { token: TOKEN, token_id: 'mtok_1', name: 'gpu-a' }), {
      body: (body) => (body as { name?: string }).name === 'gpu-a',
    });
    const result = await runCycle(['machine', 'token', 'create', '--name', 'gpu-a'], { cwd: await tempDir(), http });
    expect(result).toEqual({ code: 0, stdout: `${TOKEN}\n`, stderr: '' });
    http.verify();
  });

  it('on a terminal: the token, that it is shown once, and how to start the daemon with it', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/machines/tokens', json(201, { token: TOKEN, token_id: 'mtok_1', name: null }));
    const result = await runCycle(['machine', 'token', 'create'], { cwd: await tempDir(), http, tty: true });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(TOKEN);
    expect(result.stderr).toMatch(/shown once/);
    expect(result.stderr).toMatch(new RegExp(`CYCLE_MACHINE_TOKEN=${TOKEN} cycle daemon run --api-url http\\S+ --name NAME`));
  });

  it('--json: the answer as JSON', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/machines/tokens', json(201, { token: TOKEN, token_id: 'mtok_1', name: 'gpu-a' }));
    const result = await runCycle(['machine', 'token', 'create', '--name', 'gpu-a', '--json'], { cwd: await tempDir(), http });
    expect(JSON.parse(result.stdout)).toEqual({ token: TOKEN, token_id: 'mtok_1', name: 'gpu-a' });
  });
});

describe('cycle machine token revoke', () => {
  it('revokes by id', async () => {
    const http = httpStubs();
    http.register('DELETE', '/api/v1/machines/tokens/mtok_1', json(200, { token_id: 'mtok_1', revoked: true }));
    const result = await runCycle(['machine', 'token', 'revoke', 'mtok_1'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/machine token mtok_1 revoked/);
    http.verify();
  });
});

describe('cycle machine list|show|drain|undrain|remove', () => {
  it('list: a table of name, state, running, GPUs, driver, CUDA, heartbeat; --json the documents', async () => {
    const http = httpStubs();
    const cpu = machine({ name: 'cpu-a', state: 'offline', running: [], inventory: cpuInventory(), not_placed: [] });
    http.register('GET', '/api/v1/machines', json(200, { machines: [cpu, machine()] }), { times: 2 });
    const result = await runCycle(['machine', 'list'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+RUNNING\s+GPUS\s+DRIVER\s+CUDA\s+LAST HEARTBEAT$/);
    expect(lines[1]).toMatch(/^cpu-a\s+offline\s+0\/2\s+0\s+-\s+-\s+2026-11-23T12:00:05.000Z$/);
    expect(lines[2]).toMatch(/^gpu-b\s+idle\s+1\/2\s+1 NVIDIA A100\S*.*\s+550\.144\.03\s+12\.4\s+/);
    const asJson = await runCycle(['machine', 'list', '--json'], { cwd: await tempDir(), http });
    expect(JSON.parse(asJson.stdout).map((m: Machine) => m.name)).toEqual(['cpu-a', 'gpu-b']);
  });

  it('list with none enrolled: says how to enrol one (exit 0)', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/machines', json(200, { machines: [] }));
    const result = await runCycle(['machine', 'list'], { cwd: await tempDir(), http });
    expect(result).toMatchObject({ code: 0, stdout: '' });
    expect(result.stderr).toMatch(/no machine is enrolled: cycle machine token create --name NAME, then cycle daemon run/);
  });

  it('show: what it has, what it runs, why queued tasks are not placed on it', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/machines/gpu-b', json(200, machine()));
    const result = await runCycle(['machine', 'show', 'gpu-b'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^state\s+idle$/m);
    expect(result.stdout).toMatch(/^driver\s+550\.144\.03 \(CUDA 12\.4\)$/m);
    expect(result.stdout).toMatch(/^running\s+job_1 task_1 since 2026-11-23T12:00:00\.000Z$/m);
    expect(result.stdout).toMatch(/^not placed\s+job_9: \[job\]\.cuda = "13\.0" needs a newer driver: gpu-b supports CUDA 12\.4$/m);
  });

  it('drain, undrain, remove: the route each calls, and what it says', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/machines/gpu-b/drain', json(200, machine({ state: 'draining' })));
    http.register('DELETE', '/api/v1/machines/gpu-b/drain', json(200, machine({ state: 'busy' })));
    http.register('DELETE', '/api/v1/machines/gpu-b', json(200, { name: 'gpu-b', removed: true }));
    const cwd = await tempDir();
    expect((await runCycle(['machine', 'drain', 'gpu-b'], { cwd, http })).stderr).toMatch(
      /machine gpu-b is draining: it finishes 1 running task\(s\) and takes nothing new/,
    );
    expect((await runCycle(['machine', 'undrain', 'gpu-b'], { cwd, http })).stderr).toMatch(/machine gpu-b takes work again \(busy\)/);
    expect((await runCycle(['machine', 'remove', 'gpu-b'], { cwd, http })).stderr).toMatch(/machine gpu-b removed: its token is revoked/);
    http.verify();
  });

  it("an unknown machine: the server's message (which names the enrolled ones), exit 1", async () => {
    const http = httpStubs();
    http.register(
      'DELETE',
      '/api/v1/machines/nope',
      json(404, { error: { code: 'not_found', message: 'no machine "nope" is enrolled (enrolled: gpu-b)', field: 'name' } }),
    );
    const result = await runCycle(['machine', 'remove', 'nope'], { cwd: await tempDir(), http });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/no machine "nope" is enrolled \(enrolled: gpu-b\)/);
  });
});

describe('job get / job tasks: why queued tasks wait', () => {
  const queuedJob = { job_id: 'job_1', status: 'queued', counts: { total: 1, queued: 1 } };

  it('job get prints the reason from /placement; job tasks tells it on stderr (the table on stdout stays as it was)', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs/job_1', json(200, queuedJob));
    http.register(
      'GET',
      '/api/v1/jobs/job_1/placement',
      json(200, { job_id: 'job_1', queued: 1, reason: 'no machine supports CUDA 13.0; best: gpu-b with 12.4' }),
      { times: 2 },
    );
    http.register('GET', '/api/v1/jobs/job_1/tasks', json(200, { tasks: [{ id: 'task_1', index: 0, status: 'queued', attempt: 0 }] }));
    const cwd = await tempDir();
    const get = await runCycle(['job', 'get', 'job_1'], { cwd, http });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toMatch(/^waiting\s+no machine supports CUDA 13\.0; best: gpu-b with 12\.4$/m);
    const tasks = await runCycle(['job', 'tasks', 'job_1'], { cwd, http });
    expect(tasks.code, tasks.stderr).toBe(0);
    expect(tasks.stderr).toMatch(/queued tasks wait: no machine supports CUDA 13\.0; best: gpu-b with 12\.4/);
    expect(tasks.stdout).not.toMatch(/CUDA/);
    http.verify();
  });

  it('a server without the route (404): nothing more is printed; --json prints the job document untouched', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs/job_1', json(200, queuedJob), { times: 2 });
    http.register('GET', '/api/v1/jobs/job_1/placement', json(404, { error: { code: 'not_found', message: 'no route' } }));
    const cwd = await tempDir();
    const get = await runCycle(['job', 'get', 'job_1'], { cwd, http });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).not.toMatch(/waiting/);
    const asJson = await runCycle(['job', 'get', 'job_1', '--json'], { cwd, http });
    expect(JSON.parse(asJson.stdout)).toEqual(queuedJob);
    http.verify();
  });
});

describe('project status --details', () => {
  it('lists the machines under the status where the server has them', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/projects/demo/status/details', json(200, { project: 'demo', revision: 2, ready_for_jobs: true, build: { state: 'ready' } }));
    http.register('GET', '/api/v1/machines', json(200, { machines: [machine()] }));
    const result = await runCycle(['project', 'status', '--project', 'demo', '--details'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^revision\s+2$/m);
    expect(result.stdout).toMatch(/^gpu-b\s+idle\s+1\/2\s+/m);
    http.verify();
  });
});
