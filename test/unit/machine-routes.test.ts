import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { Router, sendJson } from '../../src/server/http/router.js';
import type { RunningServer } from '../../src/server/index.js';
import { MachineRegistry } from '../../src/server/machines/registry.js';
import { tempDir } from '../helpers/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer, pushValidProject } from '../helpers/server.js';
import { cpuInventory, gpuInventory, IDLE, OLDER_DRIVER } from '../helpers/machines.js';

// The machine pool's user routes (docs/api.md, "Machines") on a server without a GPU, and the
// separation of user and machine tokens.
let server: RunningServer;
/** A second connection to the server's database: enrols machines as a daemon's heartbeat would (the daemon's routes are not these). */
let db: DB;
let daemonSide: MachineRegistry;

beforeAll(async () => {
  const dataDir = await tempDir('cycle-machine-routes-');
  server = await startFakeDockerServer(new FakeDocker(), {
    dataDir,
  });
  db = openDatabase(path.join(dataDir, 'cycle.db'));
  daemonSide = new MachineRegistry({ db, leaseMs: 30_000 });
});
afterAll(async () => {
  db?.close();
  await server.close();
});

async function api(
  method: string,
  route: string,
  options: { body?: unknown; token?: string | null; url?: string } = {},
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? server.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${options.url ?? server.url}${route}`, {
    method,
    headers,
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    return { status: response.status, body: text };
  }
}

describe('machine routes', () => {
  it('POST /api/v1/machines/tokens makes a token shown once; a bad or taken name is refused with the field', async () => {
    const created = await api('POST', '/api/v1/machines/tokens', { body: { name: 'route-a' } });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ token: expect.stringMatching(/^cym_/), token_id: expect.stringMatching(/^mtok_/), name: 'route-a' });
    const unnamed = await api('POST', '/api/v1/machines/tokens');
    expect(unnamed).toMatchObject({ status: 201, body: { name: null } });
    const taken = await api('POST', '/api/v1/machines/tokens', { body: { name: 'route-a' } });
    expect(taken).toMatchObject({ status: 409, body: { error: { code: 'machine_name_taken', field: 'name' } } });
    const revoked = await api('DELETE', `/api/v1/machines/tokens/${unnamed.body.token_id}`);
    expect(revoked).toEqual({ status: 200, body: { token_id: unnamed.body.token_id, revoked: true } });
    expect(daemonSide.authenticate(unnamed.body.token)).toBeUndefined();
    const bad = await api('POST', '/api/v1/machines/tokens', { body: { name: 'Not A Name' } });
    expect(bad.status).toBe(422);
    expect(bad.body.error.message).toMatch(/a machine name is 1-63 characters/);
  });

  it('a machine token is not accepted on the user routes (and the user token makes no machine)', async () => {
    const { body } = await api('POST', '/api/v1/machines/tokens');
    for (const route of ['/api/v1/jobs', '/api/v1/machines', '/api/v1/projects']) {
      const refused = await api('GET', route, { token: body.token });
      expect(refused).toMatchObject({ status: 403, body: { error: { code: 'machine_token' } } });
    }
    expect(await api('POST', '/api/v1/machines/tokens', { token: body.token })).toMatchObject({ status: 403 });
    expect(daemonSide.authenticate(server.token)).toBeUndefined();
  });

  it('list, show, drain, undrain, remove; placement says why a GPU task waits, and it waits instead of failing', async () => {
    expect((await api('GET', '/api/v1/machines/nobody')).body.error.message).toMatch(/no machine "nobody" is enrolled/);
    const { body: token } = await api('POST', '/api/v1/machines/tokens', { body: { name: 'gpu-b' } });
    daemonSide.heartbeat(daemonSide.authenticate(token.token)!.tokenId, 'gpu-b', gpuInventory(OLDER_DRIVER), IDLE, 1);
    const cpu = daemonSide.createToken();
    daemonSide.heartbeat(cpu.token_id, 'cpu-a', cpuInventory(), IDLE, 2);
    const list = await api('GET', '/api/v1/machines');
    expect(list.status).toBe(200);
    expect(list.body.machines.map((m: { name: string; state: string }) => [m.name, m.state])).toEqual([
      ['cpu-a', 'idle'],
      ['gpu-b', 'idle'],
    ]);
    expect(list.body.machines[1]).toMatchObject({ slots: 1, running: [], inventory: { cuda: '12.4', driver: '550.144.03' }, activity: IDLE, not_placed: [] });
    // This server has no GPU, but an enrolled machine has: a GPU job is accepted, and waits for it.
    expect(await pushValidProject(server)).toBe(201);
    const drained = await api('POST', '/api/v1/machines/gpu-b/drain');
    expect(drained).toMatchObject({ status: 200, body: { name: 'gpu-b', state: 'draining', draining: true } });
    const job = await api('POST', '/api/v1/jobs', { body: { project: 'p', profile: 'gpu' } });
    expect(job.status).toBe(201);
    const waiting = await api('GET', `/api/v1/jobs/${job.body.id}/placement`);
    expect(waiting.status).toBe(200);
    expect(waiting.body).toMatchObject({ job_id: job.body.id, queued: 1, reason: expect.stringContaining('machine gpu-b is draining') });
    expect(waiting.body.workers).toContainEqual({ name: 'cpu-a', reason: 'the task needs a GPU: cpu-a has none (nvidia-smi: command not found)' });
    expect((await api('GET', '/api/v1/machines/cpu-a')).body.not_placed).toEqual([
      { job_id: job.body.id, reason: 'the task needs a GPU: cpu-a has none (nvidia-smi: command not found)' },
    ]);
    expect((await api('DELETE', '/api/v1/machines/gpu-b/drain')).body).toMatchObject({ state: 'idle', draining: false });
    expect((await api('GET', `/api/v1/jobs/${job.body.id}/placement`)).body.reason).toBeNull();
    expect((await api('DELETE', '/api/v1/machines/gpu-b')).body).toEqual({ name: 'gpu-b', removed: true });
    const after = await api('GET', `/api/v1/jobs/${job.body.id}/placement`);
    expect(after.body.reason).toMatch(/^no machine has a GPU for a task that needs one \(this server: /);
    expect((await api('GET', `/api/v1/jobs/${job.body.id}`)).body).toMatchObject({ status: 'queued' });
    // The job document stays as Computalot has it: no placement fields.
    expect(Object.keys((await api('GET', `/api/v1/jobs/${job.body.id}`)).body)).not.toContain('placement');
    // Removed: its token is refused on the machine routes at once (the server's registry, which
    // keeps verified tokens in memory, is the one that removed it).
    expect((await api('POST', '/api/v1/machine/heartbeat', { token: token.token, body: {} })).status).toBe(401);
    expect((await api('GET', '/api/v1/jobs/job_nope/placement')).status).toBe(404);
    await api('PUT', `/api/v1/jobs/${job.body.id}/cancel`);
  });
});

describe('machine routes in the router', () => {
  it('{auth: "machine"} takes a live machine token only: the user token and a bad token are refused; the handler learns the machine', async () => {
    const router = new Router({
      token: 'cyc_user-token-of-this-server-0123456789',
      log: () => undefined,
      hostPaths: [],
      machines: { authenticate: (token) => (token === 'cym_good' ? { tokenId: 'mtok_1', name: 'gpu-a' } : undefined) },
    });
    router.add('GET', '/api/v1/machine/whoami', (ctx) => sendJson(ctx.res, 200, ctx.machine), { auth: 'machine' });
    router.add('GET', '/api/v1/jobs', (ctx) => sendJson(ctx.res, 200, { ok: true }));
    const httpServer = http.createServer((req, res) => void router.handle(req, res));
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
    try {
      expect(await api('GET', '/api/v1/machine/whoami', { url, token: 'cym_good' })).toEqual({ status: 200, body: { tokenId: 'mtok_1', name: 'gpu-a' } });
      const user = await api('GET', '/api/v1/machine/whoami', { url, token: 'cyc_user-token-of-this-server-0123456789' });
      expect(user.status).toBe(403);
      expect(user.body.error).toMatchObject({ code: 'not_a_machine_token' });
      expect((await api('GET', '/api/v1/machine/whoami', { url, token: 'cym_bad' })).status).toBe(401);
      expect((await api('GET', '/api/v1/machine/whoami', { url, token: null })).status).toBe(401);
      expect((await api('GET', '/api/v1/jobs', { url, token: 'cym_good' })).status).toBe(403);
      expect((await api('GET', '/api/v1/jobs', { url, token: 'cyc_user-token-of-this-server-0123456789' })).status).toBe(200);
    } finally {
      httpServer.close();
    }
  });
});
