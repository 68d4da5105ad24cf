import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { run as upload } from '../../src/commands/project/upload.js';
import { status as projectStatus, prepare, invalidate } from '../../src/commands/project/remote.js';
import { login, status as authStatus, logout } from '../../src/commands/auth.js';
import { ApiClient } from '../../src/api/client.js';
import { jobSchema } from '../../src/api/schemas.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer } from '../helpers/server.js';
import { faultProxy, type Fault } from '../helpers/proxy.js';
import { cycleswapProject, fakeContext, tempDir, writeFiles } from '../helpers/context.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startFakeDockerServer(new FakeDocker(), {
    dataDir: await tempDir('cycle-upload-server-'),
  });
});
afterAll(async () => server.close());

const base = { rebuild: false, clean: false, force: false, json: true };
let counter = 0;
async function project(): Promise<{ root: string; name: string }> {
  const name = `up-${counter++}`;
  const root = await cycleswapProject({
    '.cycleswap/manifest.toml': `[main]\nname = "${name}"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n`,
    'main.py': 'print(1)\n',
  });
  return { root, name };
}
// The client's own HTTP timeout (30 s): a short one fires on a loaded machine, and the test then
// sees a retry it did not cause. Only the stalled-server case needs one to fire: 5 s, not 1.
const envFor = (url: string) => ({ CYCLE_API_URL: url, CYCLE_TOKEN: server.token });
const STALL_TIMEOUT = { CYCLE_HTTP_TIMEOUT: '5' };
const revisions = async (name: string): Promise<number> => {
  const answer = await fetch(`${server.url}/api/v1/projects/${name}/status`, { headers: { authorization: `Bearer ${server.token}` } });
  return answer.status === 404 ? 0 : ((await answer.json()) as { revision: number }).revision;
};

describe('project upload against the local server', () => {
  it('uploads, skips an unchanged second upload, and passes --rebuild/--clean', async () => {
    const p = await project();
    const proxy = await faultProxy(server.url, [], /push/);
    try {
      const first = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      expect(await upload(base, first.ctx)).toBe(0);
      expect(JSON.parse(first.stdout.text)).toMatchObject({ project: p.name, uploaded: true, revision: 1, rebuild: true, format: 'cycleswap' });
      const second = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      await upload(base, second.ctx);
      expect(JSON.parse(second.stdout.text)).toMatchObject({ uploaded: false, reason: 'unchanged', revision: 1 });
      expect(proxy.seen.filter((r) => r.url.includes('/push'))).toHaveLength(1);

      await upload({ ...base, rebuild: true }, fakeContext({ cwd: p.root, env: envFor(proxy.url) }).ctx);
      await upload({ ...base, clean: true }, fakeContext({ cwd: p.root, env: envFor(proxy.url) }).ctx);
      const pushes = proxy.seen.filter((r) => r.url.includes('/push')).map((r) => r.url);
      expect(pushes[1]).toContain('rebuild=1');
      expect(pushes[2]).toContain('clean=1');
      expect(await revisions(p.name)).toBe(3);

      await writeFiles(p.root, { 'main.py': 'print(2)\n' });
      const changed = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      await upload(base, changed.ctx);
      expect(JSON.parse(changed.stdout.text)).toMatchObject({ uploaded: true, revision: 4 });

      const status = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      await projectStatus({ json: true, details: true, watch: false }, status.ctx);
      expect(JSON.parse(status.stdout.text)).toMatchObject({ project: p.name, revision: 4, can_accept_new_jobs: true, nodes: [{ node: 'local' }] });
      const prepared = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      await prepare({ json: true }, prepared.ctx);
      expect(JSON.parse(prepared.stdout.text)).toMatchObject({ project: p.name, revision: 4 });
      const dropped = fakeContext({ cwd: p.root, env: envFor(proxy.url) });
      await invalidate({ json: false }, dropped.ctx);
      expect(dropped.stderr.text).toContain(`invalidated ${p.name}`);
    } finally {
      await proxy.close();
    }
  });

  it('creates the project (POST /api/v1/projects) when the backend answers 404 to the push, then pushes again', async () => {
    const p = await project();
    const http = await import('node:http');
    const seen: string[] = [];
    let created = false;
    const backend = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url?.split('?')[0]}`);
      req.resume();
      req.on('end', () => {
        const send = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        };
        if (req.method === 'POST' && req.url === '/api/v1/projects') {
          created = true;
          return send(201, { name: p.name });
        }
        if (req.method === 'POST' && req.url?.startsWith(`/api/v1/projects/${p.name}/push`) && created) {
          return send(200, {
            project: p.name,
            format: 'cycleswap',
            revision: 1,
            content_hash: 'c'.repeat(64),
            build_hash: 'b'.repeat(64),
            unchanged: false,
            rebuild: true,
            build_hash_matches: null,
          });
        }
        send(404, { detail: 'Project not found' });
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    try {
      const address = backend.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      const run = fakeContext({ cwd: p.root, env: { CYCLE_API_URL: url, CYCLE_TOKEN: 'flk_test', CYCLE_HTTP_RETRIES: '1' } });
      expect(await upload(base, run.ctx), run.stderr.text).toBe(0);
      expect(seen).toEqual([
        `GET /api/v1/projects/${p.name}/status`,
        `POST /api/v1/projects/${p.name}/push`,
        'POST /api/v1/projects',
        `POST /api/v1/projects/${p.name}/push`,
      ]);
      expect(run.stderr.text).toMatch(`the backend has no project ${p.name}: creating it`);
      expect(JSON.parse(run.stdout.text)).toMatchObject({ project: p.name, uploaded: true, revision: 1 });
    } finally {
      backend.close();
    }
  });

  it('refuses an invalid project before any network call (exit 3)', async () => {
    const p = await project();
    await writeFiles(p.root, { '.cycleswap/manifest.toml': '[main]\nname = 5\n' });
    const proxy = await faultProxy(server.url, [], /./);
    try {
      await expect(upload(base, fakeContext({ cwd: p.root, env: envFor(proxy.url) }).ctx)).rejects.toMatchObject({ exitCode: 3 });
      expect(proxy.seen).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it.each<[Fault[], string]>([
    [['drop-mid-upload'], 'a connection dropped mid-upload'],
    [['503'], '503 then 200'],
    [['503', '503'], 'two 503s'],
    [['429'], '429 with Retry-After: 1'],
    [['stall'], 'a stalled server'],
    [['drop-response'], 'the answer lost after the server acted'],
  ])('%j (%s): succeeds exactly once, nothing pushed twice', async (faults) => {
    const p = await project();
    const proxy = await faultProxy(server.url, faults, /\/push/);
    try {
      const { ctx, stdout } = fakeContext({ cwd: p.root, env: { ...envFor(proxy.url), ...(faults.includes('stall') ? STALL_TIMEOUT : {}) } });
      const before = ctx.clock.now();
      expect(await upload(base, ctx)).toBe(0);
      expect(JSON.parse(stdout.text)).toMatchObject({ uploaded: true, revision: 1 });
      expect(await revisions(p.name)).toBe(1);
      expect(proxy.seen.filter((r) => r.url.includes('/push'))).toHaveLength(faults.length + 1);
      if (faults[0] === '429') expect(ctx.clock.now() - before).toBeGreaterThanOrEqual(1000); // honoured Retry-After
    } finally {
      await proxy.close();
    }
  });

  it('fails with a clear error when the faults outlast the retries', async () => {
    const p = await project();
    const proxy = await faultProxy(server.url, ['503', '503', '503'], /\/push/);
    try {
      const { ctx } = fakeContext({ cwd: p.root, env: { ...envFor(proxy.url), CYCLE_HTTP_RETRIES: '3' } });
      await expect(upload(base, ctx)).rejects.toMatchObject({ exitCode: 5, message: expect.stringContaining('(HTTP 503): try later') });
      expect(await revisions(p.name)).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('a server that is down: exit 5 with what to check', async () => {
    const p = await project();
    const { ctx } = fakeContext({ cwd: p.root, env: { CYCLE_API_URL: 'http://127.0.0.1:9', CYCLE_TOKEN: 'x', CYCLE_HTTP_RETRIES: '2' } });
    await expect(upload(base, ctx)).rejects.toMatchObject({ exitCode: 5, message: expect.stringContaining('connection refused') });
  });
});

describe('auth', () => {
  it('login checks the token and saves it 0600; status never shows it; logout forgets it', async () => {
    const cwd = await tempDir();
    const wrong = fakeContext({ cwd, stdin: 'cyc_not-the-token\n' });
    await expect(login({ apiUrl: server.url, withToken: true }, wrong.ctx)).rejects.toMatchObject({ exitCode: 4 });
    const { ctx, stderr } = fakeContext({ cwd, stdin: `${server.token}\n` });
    expect(await login({ apiUrl: server.url, withToken: true }, ctx)).toBe(0);
    const file = path.join(ctx.configDir, 'credentials.json');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect(stderr.text).not.toContain(server.token);

    const check = fakeContext({ cwd });
    check.ctx.ui.options.debug = true;
    expect(await authStatus({ json: true }, check.ctx)).toBe(0);
    const doc = JSON.parse(check.stdout.text);
    expect(doc).toMatchObject({ api_url: server.url, api_url_source: 'user', token_set: true, token_source: 'credentials', accepted: true });
    expect(check.stdout.text + check.stderr.text).not.toContain(server.token);

    await logout({}, fakeContext({ cwd }).ctx);
    const after = fakeContext({ cwd });
    expect(await authStatus({ json: false }, after.ctx)).toBe(4);
    expect(after.stdout.text).toContain('token   not set');
  });

  it('no token: exit 4 with how to log in; a refused token: exit 4', async () => {
    const p = await project();
    await expect(upload(base, fakeContext({ cwd: p.root, env: { CYCLE_API_URL: server.url } }).ctx)).rejects.toMatchObject({
      exitCode: 4,
      hint: expect.stringContaining('cycle auth login'),
    });
    await expect(upload(base, fakeContext({ cwd: p.root, env: { CYCLE_API_URL: server.url, CYCLE_TOKEN: 'cyc_wrong' } }).ctx)).rejects.toMatchObject({
      exitCode: 4,
      message: expect.stringContaining('refused the token (HTTP 401)'),
    });
  });

  it('--debug traces show requests, never the token', async () => {
    const p = await project();
    const { ctx, stdout, stderr } = fakeContext({ cwd: p.root, env: envFor(server.url) });
    ctx.ui.options.debug = true;
    await upload(base, ctx);
    expect(stderr.text).toMatch(/debug \+\d+ms: POST \/api\/v1\/projects\/up-\d+\/push → 201/);
    expect(stdout.text + stderr.text).not.toContain(server.token);
  });
});

describe('the API client', () => {
  it('says which endpoint and field when an answer has an unexpected shape', async () => {
    const http = await import('node:http');
    const odd = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'job_1', counts: { total: 'many' } }));
    });
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
    const api = new ApiClient({ baseUrl: `http://127.0.0.1:${(odd.address() as { port: number }).port}`, token: 't', version: 'test', attempts: 1 });
    try {
      await expect(api.getJob('job_1')).rejects.toMatchObject({
        exitCode: 5,
        message: "cycle does not understand the server's answer to GET /api/v1/jobs/job_1: it has no `status` field (expected text)",
      });
    } finally {
      odd.close();
      await api.close();
    }
    expect(jobSchema).toBeDefined();
  });

  it('does not retry a POST without an idempotency key', async () => {
    const proxy = await faultProxy(server.url, ['503'], /\/init/);
    const api = new ApiClient({ baseUrl: proxy.url, token: server.token, version: 'test', sleep: async () => undefined });
    try {
      const result = await api.request('POST', '/api/v1/projects/x/init', { json: {} }).catch((error: { message: string }) => error);
      expect((result as { message: string }).message).toContain('HTTP 503');
      expect(proxy.seen).toHaveLength(1);
    } finally {
      await proxy.close();
      await api.close();
    }
  });

  it('sends User-Agent cycle/<version>', async () => {
    const http = await import('node:http');
    let agent = '';
    const echo = http.createServer((req, res) => {
      agent = req.headers['user-agent'] ?? '';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true,"version":"x"}');
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const api = new ApiClient({ baseUrl: `http://127.0.0.1:${(echo.address() as { port: number }).port}`, token: 't', version: '9.9.9' });
    try {
      await api.health();
      expect(agent).toMatch(/^cycle\/9\.9\.9 \(node /);
    } finally {
      echo.close();
      await api.close();
    }
  });
});
