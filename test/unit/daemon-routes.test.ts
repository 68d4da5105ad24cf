import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transport, type RequestOptions } from '../../src/api/transport.js';
import { Router } from '../../src/server/http/router.js';
import type { RunningServer } from '../../src/server/index.js';
import { InMemoryMachineAuth } from '../../src/server/machines/auth.js';
import { StaleLease } from '../../src/server/queue/lease.js';
import { HttpQueueClient } from '../../src/server/worker/http-queue-client.js';
import { HttpTaskInputs } from '../../src/server/worker/http-task-inputs.js';
import { Worker } from '../../src/server/worker/worker.js';
import { systemClock } from '../../src/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { tempDir } from '../helpers/context.js';
import { faultProxy } from '../helpers/proxy.js';
import { client, createMachineToken, startFakeDockerServer } from '../helpers/server.js';

/**
 * The machine routes (`/api/v1/machine/...`) on the in-process server with no local worker, and
 * the daemon's side (HttpQueueClient, HttpTaskInputs, the same Worker) against them on 127.0.0.1.
 */
/** Machine tokens from the server's registry (`cycle machine token create`), made at each start. */
let M1 = '';
let M2 = '';
let M1_ID = '';
const INVENTORY = { cpus: 4, memory_bytes: 8 << 30, free_disk_bytes: 100 << 30, gpus: [], docker: true, gvisor: false };
const ACTIVITY = { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false };

let server: RunningServer | undefined;
let docker: FakeDocker;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await server?.close();
  server = undefined;
});

async function start(options: { maxTaskArtifactBytes?: number } = {}): Promise<RunningServer> {
  docker = new FakeDocker();
  docker.hold = true;
  server = await startFakeDockerServer(docker, { dataDir: await tempDir('cycle-machine-routes-'), localWorker: false, ...options });
  ({ token: M1, tokenId: M1_ID } = await createMachineToken(server));
  ({ token: M2 } = await createMachineToken(server));
  const pushed = await fetch(`${server.url}/api/v1/projects/p/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: rawTarGz(VALID_PROJECT),
  });
  expect(pushed.status).toBeLessThan(300);
  return server;
}

/** A request with this token (a machine's, or the user's): the shared test client. */
function call(token: string, method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return client({ url: server!.url, token }).call(method, route, body, headers);
}

const user = (method: string, route: string, body?: unknown) => call(server!.token, method, route, body);
const heartbeat = (token: string, name: string) =>
  call(token, 'POST', '/api/v1/machine/heartbeat', { name, slots: 2, inventory: INVENTORY, activity: ACTIVITY });
const submit = async (body: Record<string, unknown> = {}): Promise<string> => {
  const answer = await user('POST', '/api/v1/jobs', { project: 'p', payload: { n: 1 }, ...body });
  expect(answer.status).toBe(201);
  return answer.body.id;
};

describe('machine routes: who may call them', () => {
  it('a machine token opens the machine routes only; the user token opens none of them', async () => {
    await start();
    expect((await heartbeat(server!.token, 'm1')).body.error.code).toBe('not_a_machine_token');
    expect((await heartbeat(server!.token, 'm1')).status).toBe(403);
    expect((await heartbeat('nope', 'm1')).status).toBe(401);
    const jobs = await call(M1, 'GET', '/api/v1/jobs');
    expect(jobs.status).toBe(403);
    expect(jobs.body.error.code).toBe('machine_token');
    expect((await call(M1, 'POST', '/api/v1/jobs', { project: 'p', payload: {} })).status).toBe(403);
    expect((await call(M1, 'POST', '/api/v1/projects/p/push', Buffer.from('x'))).status).toBe(403);
    const enrolled = await heartbeat(M1, 'm1');
    expect(enrolled.status).toBe(200);
    expect(enrolled.body).toMatchObject({ name: 'm1', server_version: 'test', draining: false });
    expect(enrolled.body.lease_ms).toBeGreaterThan(0);
    // A name stays with its token.
    expect((await heartbeat(M2, 'm1')).status).toBe(409);
    expect((await call(server!.token, 'DELETE', `/api/v1/machines/tokens/${M1_ID}`)).status).toBe(200);
    expect((await heartbeat(M1, 'm1')).status).toBe(401);
  });

  it("both tokens count as authenticated for the HTTP layer's limits (a daemon's uploads and long polls are not held to the unauthenticated caps)", () => {
    const machines = new InMemoryMachineAuth();
    machines.add('t1', M1);
    const router = new Router({ token: 'cyc_user_token_0123456789abcdef0123', log: () => undefined, hostPaths: [], machines });
    const request = (authorization?: string) => ({ headers: authorization ? { authorization } : {} }) as IncomingMessage;
    expect(router.authenticated(request(`Bearer ${M1}`))).toBe(true);
    expect(router.authenticated(request('Bearer cyc_user_token_0123456789abcdef0123'))).toBe(true);
    expect(router.authenticated(request('Bearer something_else'))).toBe(false);
    expect(router.authenticated(request())).toBe(false);
    machines.revoke('t1');
    expect(router.authenticated(request(`Bearer ${M1}`))).toBe(false);
  });

  it("a machine request's token is looked up once: the HTTP layer's check and the route's share the answer, and a later request looks again", async () => {
    const token = 'cym_one_lookup_token_0123456789abcdef';
    const machines = new InMemoryMachineAuth();
    machines.add('t1', token, 'm1');
    const lookups = vi.spyOn(machines, 'authenticate');
    const router = new Router({ token: 'cyc_user_token_0123456789abcdef0123', log: () => undefined, hostPaths: [], machines });
    const callers: unknown[] = [];
    router.add('POST', '/api/v1/machine/x', (ctx) => void callers.push(ctx.machine), { auth: 'machine' });
    const request = () => ({ method: 'POST', url: '/api/v1/machine/x', headers: { authorization: `Bearer ${token}` } }) as IncomingMessage;
    const answer = { setHeader: () => undefined } as unknown as ServerResponse;
    const first = request();
    expect(router.authenticated(first)).toBe(true);
    await router.handle(first, answer);
    expect(lookups).toHaveBeenCalledTimes(1);
    expect(callers).toEqual([{ tokenId: 't1', name: 'm1' }]);
    // A request the HTTP layer did not check (no body) looks the token up itself.
    await router.handle(request(), answer);
    expect(lookups).toHaveBeenCalledTimes(2);
    expect(callers).toHaveLength(2);
  });

  it('a heartbeat is validated: a bad name or inventory is refused, naming the field', async () => {
    await start();
    const badName = await call(M1, 'POST', '/api/v1/machine/heartbeat', { name: '../x', slots: 1, inventory: INVENTORY, activity: ACTIVITY });
    expect(badName.status).toBeGreaterThanOrEqual(400);
    expect(badName.status).toBeLessThan(500);
    expect(JSON.stringify(badName.body)).toMatch(/name/);
    const extra = await call(M1, 'POST', '/api/v1/machine/heartbeat', { name: 'm1', slots: 1, inventory: INVENTORY, activity: ACTIVITY, admin: true });
    expect(extra.status).toBeGreaterThanOrEqual(400);
    expect(extra.status).toBeLessThan(500);
  });
});

describe('machine routes: leases', () => {
  it('lease, renew, report, complete: the job finishes with the output; the lease carries a duration, not the server clock', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const jobId = await submit();
    const leased = await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 });
    expect(leased.status).toBe(200);
    expect(leased.body.leases).toHaveLength(1);
    const lease = leased.body.leases[0];
    expect(lease.expiresAt).toBeUndefined();
    expect(lease.expires_in_ms).toBeGreaterThan(0);
    expect(lease.jobId).toBe(jobId);
    const renewed = await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/renew`, {});
    expect(renewed.body).toMatchObject({ cancel: false });
    expect(renewed.body.expires_in_ms).toBeGreaterThan(0);
    expect((await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/report`, { output: 'hello from m1\n', progress: { step: 1 } })).status).toBe(200);
    expect((await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/complete`, { status: 'succeeded', result: { ok: 1 }, exit_code: 0 })).status).toBe(200);
    const job = await user('GET', `/api/v1/jobs/${jobId}`);
    expect(job.body.status).toBe('completed');
    const output = await user('GET', `/api/v1/jobs/${jobId}/output`);
    expect(JSON.stringify(output.body)).toContain('hello from m1');
    // A second outcome on the same lease is refused as stale.
    const again = await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/complete`, { status: 'failed' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('stale_lease');
  });

  it("another machine's lease is stale to it, and so are its inputs", async () => {
    await start();
    await heartbeat(M1, 'm1');
    await heartbeat(M2, 'm2');
    await submit();
    const lease = (await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 })).body.leases[0];
    for (const [route, body] of [
      ['renew', {}],
      ['report', { output: 'spoiled' }],
      ['complete', { status: 'failed', error: 'spoiled' }],
      ['release', { reason: 'spoiled' }],
    ] as const) {
      const answer = await call(M2, 'POST', `/api/v1/machine/leases/${lease.id}/${route}`, body);
      expect(answer.status, route).toBe(409);
      expect(answer.body.error.code, route).toBe('stale_lease');
    }
    expect((await call(M2, 'GET', `/api/v1/machine/projects/p/revisions/${lease.revision}/tarball`)).status).toBe(404);
    expect((await call(M2, 'GET', `/api/v1/machine/tasks/${lease.taskId}/captured`)).status).toBe(404);
    // The holder gets them, the tarball with its sha256.
    const meta = await call(M1, 'GET', `/api/v1/machine/projects/p/revisions/${lease.revision}`);
    expect(meta.body.content_hash).toMatch(/^[0-9a-f]{64}$/);
    const tarball = await fetch(`${server!.url}/api/v1/machine/projects/p/revisions/${lease.revision}/tarball`, { headers: { authorization: `Bearer ${M1}` } });
    expect(tarball.status).toBe(200);
    expect(tarball.headers.get('x-checksum-sha256')).toBe(meta.body.content_hash);
    await tarball.arrayBuffer();
    // The task still runs for m1: nothing m2 said reached it.
    expect((await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/renew`, {})).status).toBe(200);
  });

  it('a release says why in the task log; one marked unstarted (nothing reported) is not counted as an attempt, one after a report is', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const jobId = await submit();
    const lease = async () => (await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 })).body.leases[0];
    const first = await lease();
    expect(first.attempt).toBe(1);
    expect((await call(M1, 'POST', `/api/v1/machine/leases/${first.id}/release`, { reason: 'paused before it started', unstarted: true })).status).toBe(200);
    const second = await lease();
    expect(second.attempt).toBe(1); // not counted
    await call(M1, 'POST', `/api/v1/machine/leases/${second.id}/report`, { output: 'started\n' });
    await call(M1, 'POST', `/api/v1/machine/leases/${second.id}/release`, { reason: 'became busy', unstarted: true });
    const third = await lease();
    expect(third.attempt).toBe(2); // it had run: counted
    const output = JSON.stringify((await user('GET', `/api/v1/jobs/${jobId}/output`)).body);
    expect(output).toContain('machine m1: paused before it started');
    expect(output).toContain('machine m1: became busy');
  });

  it('the long poll answers as soon as a job is submitted, well before its wait is over', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const started = Date.now();
    const polling = call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 20_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await submit();
    const answer = await polling;
    expect(answer.body.leases).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(10_000); // the wait was 20 s
  });

  it('300 machines each holding a long poll are all answered, and all get a task of a job submitted meanwhile (issue 20: 200 daemons take more than 256 connections)', async () => {
    await start();
    const machines = 300;
    const tokens: string[] = [];
    for (let i = 0; i < machines; i++) tokens.push((await createMachineToken(server!)).token);
    await Promise.all(tokens.map(async (token, i) => expect((await heartbeat(token, `m${i}`)).status).toBe(200)));
    const polls = tokens.map((token) => call(token, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 15_000 }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await submit({ payload: { n: Array.from({ length: machines }, (_, i) => i) }, fan_out: { by: 'n' } });
    const answers = await Promise.all(polls);
    expect(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${JSON.stringify(a.body).slice(0, 120)}`)).toEqual([]);
    expect(answers.reduce((sum, a) => sum + a.body.leases.length, 0)).toBe(machines);
  }, 60_000);

  it('a machine that may not take work (drained) is offered nothing, and told why', async () => {
    await start();
    await heartbeat(M1, 'm1');
    await submit();
    expect((await call(server!.token, 'POST', '/api/v1/machines/m1/drain', {})).status).toBe(200);
    const answer = await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 });
    expect(answer.body).toEqual({ leases: [], not_offered: expect.stringMatching(/^machine m1 is draining/) });
  });

  it('a lease without a heartbeat first is refused, saying so', async () => {
    await start();
    const answer = await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 });
    expect(answer.status).toBe(409);
    expect(answer.body.error.message).toMatch(/heartbeat/);
  });
});

describe('machine routes: captured artifacts from a machine', () => {
  const query = (p: string) => `?path=${encodeURIComponent(p)}&first_seen=1&last_captured=1&mtime_ns=1000&upload_key=1`;

  it('stored in the task folder and listed on the job; a path leading out is refused; the per-task cap holds', async () => {
    await start({ maxTaskArtifactBytes: 1000 });
    await heartbeat(M1, 'm1');
    const jobId = await submit();
    const lease = (await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 })).body.leases[0];
    const put = (p: string, body: Buffer) =>
      call(M1, 'PUT', `/api/v1/machine/leases/${lease.id}/captured${query(p)}`, body, { 'content-type': 'application/octet-stream' });
    expect((await put('out/a.txt', Buffer.from('captured bytes'))).status).toBe(200);
    for (const bad of ['../escape.txt', 'a/../../escape.txt', '/etc/passwd', 'a//b', './a']) {
      const answer = await put(bad, Buffer.from('x'));
      expect(answer.status, bad).toBe(422);
      expect(answer.body.error.field, bad).toBe('path');
    }
    expect(await fs.readdir(path.dirname(server!.dataDir))).not.toContain('escape.txt');
    const over = await put('big.bin', Buffer.alloc(2000));
    expect(over.status).toBe(413);
    const listed = await user('GET', `/api/v1/artifacts?job=${jobId}`);
    expect(listed.body.artifacts.map((a: { name: string }) => a.name)).toEqual(['out/a.txt']);
    const id = listed.body.artifacts[0].id;
    const bytes = await fetch(`${server!.url}/api/v1/artifacts/${id}`, { headers: { authorization: `Bearer ${server!.token}` } });
    expect(await bytes.text()).toBe('captured bytes');
    // Restorable by the machine that holds the task, by id.
    const captured = await call(M1, 'GET', `/api/v1/machine/tasks/${lease.taskId}/captured`);
    expect(captured.body.files).toEqual([expect.objectContaining({ id, path: 'out/a.txt', size: 14 })]);
    expect(JSON.stringify(captured.body)).not.toContain(server!.dataDir);
  });

  it('a report body over the cap or with unknown fields is refused', async () => {
    await start();
    await heartbeat(M1, 'm1');
    await submit();
    const lease = (await call(M1, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 })).body.leases[0];
    const unknown = await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/report`, { output: 'x', artifact: { captured: { absolute: '/etc/passwd' } } });
    expect(unknown.status).toBeGreaterThanOrEqual(400);
    expect(unknown.status).toBeLessThan(500);
    const huge = await call(M1, 'POST', `/api/v1/machine/leases/${lease.id}/report`, { output: 'x'.repeat(40 << 20) });
    expect(huge.status).toBe(413);
  });
});

describe('the daemon side: HttpQueueClient and HttpTaskInputs with the same Worker', () => {
  /** A transport that notes each request's method and path. */
  class CountingTransport extends Transport {
    readonly seen: string[] = [];
    override request(method: string, route: string, options?: any): any {
      this.seen.push(`${method} ${route}`);
      return super.request(method, route, options as RequestOptions<unknown>);
    }
  }

  async function daemon(dataDir: string, baseUrl = server!.url) {
    const transport = new CountingTransport({ baseUrl, token: M1, version: 'test', attempts: 1, timeoutMs: 30_000 });
    const queue = new HttpQueueClient({ transport, clock: systemClock, log: () => undefined });
    const worker = new Worker({
      queue,
      inputs: new HttpTaskInputs({ transport, dataDir, docker: async () => docker, log: () => undefined }),
      docker: async () => docker,
      slots: 1,
      env: {},
      serverKey: 'daemon-test',
      offer: async () => ({ workerId: 'm1' }),
      clock: systemClock,
      log: () => undefined,
      scratchDir: path.join(dataDir, 'tmp'),
      containerPrefix: 'cycle-daemon-',
    });
    await fs.mkdir(path.join(dataDir, 'tmp'), { recursive: true });
    cleanups.push(async () => {
      await worker.stop();
      await queue.close();
      await transport.close();
    });
    return { transport, queue, worker };
  }

  it('runs a job end to end: output, result, a captured artifact; a second task of the revision fetches no tarball', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const { transport, worker } = await daemon(await tempDir('cycle-daemon-data-'));
    worker.start();
    const first = await submit();
    const [spec] = await docker.whenRunning(1);
    const live = spec!.mounts!.find((m) => m.target === '/artifacts')!;
    writeFileSync(path.join(live.source, 'model.txt'), 'weights');
    docker.exit(spec!.name, 0, 'trained\n', { loss: 0.1 });
    await waitForStatus(first, 'completed');
    const output = await user('GET', `/api/v1/jobs/${first}/output`);
    expect(JSON.stringify(output.body)).toContain('trained');
    const results = await user('GET', `/api/v1/results/${first}`);
    expect(JSON.stringify(results.body)).toContain('0.1');
    const artifacts = (await user('GET', `/api/v1/artifacts?job=${first}`)).body.artifacts;
    expect(artifacts.map((a: { name: string }) => a.name)).toEqual(['model.txt']);
    const tarballs = () => transport.seen.filter((s) => s.endsWith('/tarball')).length;
    expect(tarballs()).toBe(1);

    const second = await submit();
    const [next] = await docker.whenRunning(1);
    docker.exit(next!.name, 0, 'again\n', { loss: 0.05 });
    await waitForStatus(second, 'completed');
    expect(tarballs()).toBe(1);
  });

  it("a task's outcome that meets a server out of reach (a 503) is sent again: the job completes, once", async () => {
    await start();
    await heartbeat(M1, 'm1');
    const proxy = await faultProxy(server!.url, ['503'], /\/complete$/);
    cleanups.push(() => proxy.close());
    const { worker } = await daemon(await tempDir('cycle-daemon-data-'), proxy.url);
    worker.start();
    const job = await submit();
    const [spec] = await docker.whenRunning(1);
    docker.exit(spec!.name, 0, 'done\n', { ok: true });
    await waitForStatus(job, 'completed');
    expect(proxy.seen.filter((s) => s.url.endsWith('/complete')).map((s) => s.fault)).toEqual(['503', null]);
  });

  it('a volume the project links is fetched by content and mounted; another task of it fetches no file again', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const content = Buffer.from('training data');
    const sha = createHash('sha256').update(content).digest('hex');
    expect((await call(server!.token, 'PUT', `/api/v1/volumes/blobs/${sha}`, content, { 'content-type': 'application/octet-stream' })).status).toBeLessThan(
      300,
    );
    const committed = await user('PUT', '/api/v1/volumes/data', { files: [{ path: 'sub/train.txt', sha256: sha, size: content.length, executable: false }] });
    expect(committed.status).toBe(200);
    const manifest = '[main]\nname = "p"\nvolumes = ["data"]\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n';
    const pushed = await fetch(`${server!.url}/api/v1/projects/p/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server!.token}` },
      body: rawTarGz(VALID_PROJECT.map((e) => (e.name === '.cycleswap/manifest.toml' ? { ...e, body: manifest } : e))),
    });
    expect(pushed.status).toBeLessThan(300);
    const { transport, worker } = await daemon(await tempDir('cycle-daemon-data-'));
    worker.start();
    for (const round of [1, 2]) {
      const id = await submit();
      const [spec] = await docker.whenRunning(1);
      const mount = spec!.mounts!.find((m) => m.target === '/volumes/data')!;
      expect(await fs.readFile(path.join(mount.source, 'sub', 'train.txt'), 'utf8'), `round ${round}`).toBe('training data');
      docker.exit(spec!.name, 0, '', {});
      await waitForStatus(id, 'completed');
    }
    expect(transport.seen.filter((s) => s.includes('/blobs/')).length).toBe(1);
    // Only a machine holding a lease of a project that links it may read it.
    expect((await call(M2, 'GET', '/api/v1/machine/volumes/data')).status).toBeGreaterThanOrEqual(400);
  });

  it('a renewal of a lease the machine does not hold is a StaleLease', async () => {
    await start();
    await heartbeat(M1, 'm1');
    const { queue } = await daemon(await tempDir('cycle-daemon-data-'));
    await expect(queue.renew('lease_not_mine')).rejects.toBeInstanceOf(StaleLease);
  });

  it('a task that ran before is restored from the server before its container starts', async () => {
    await start();
    await heartbeat(M1, 'm1');
    await submit();
    // Another machine ran it first and captured a file, then gave it back.
    await heartbeat(M2, 'm2');
    const lease = (await call(M2, 'POST', '/api/v1/machine/lease', { max: 1, wait_ms: 0 })).body.leases[0];
    const put = await call(
      M2,
      'PUT',
      `/api/v1/machine/leases/${lease.id}/captured?path=ckpt%2Fstep-1.bin&first_seen=1&last_captured=1&mtime_ns=1000&upload_key=1`,
      Buffer.from('checkpoint 1'),
      { 'content-type': 'application/octet-stream' },
    );
    expect(put.status).toBe(200);
    expect((await call(M2, 'POST', `/api/v1/machine/leases/${lease.id}/release`, { reason: 'became busy' })).status).toBe(200);
    const dataDir = await tempDir('cycle-daemon-data-');
    const { worker } = await daemon(dataDir);
    worker.start();
    const [spec] = await docker.whenRunning(1);
    const live = spec!.mounts!.find((m) => m.target === '/artifacts')!;
    expect(await fs.readFile(path.join(live.source, 'ckpt', 'step-1.bin'), 'utf8')).toBe('checkpoint 1');
    docker.exit(spec!.name, 0, '', {});
  });
});

async function waitForStatus(jobId: string, status: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = await user('GET', `/api/v1/jobs/${jobId}`);
    if (job.body.status === status) return;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${job.body.status}, not ${status}: ${JSON.stringify(job.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
