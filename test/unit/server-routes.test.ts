import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { tempDir } from '../helpers/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer } from '../helpers/server.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { waitFor } from '../helpers/wait.js';

// The Computalot routes beyond jobs and pushes (issue 13): public index, project create,
// feedback, artifact uploads.
let server: RunningServer;
const docker = new FakeDocker();

beforeAll(async () => {
  server = await startFakeDockerServer(docker, {
    dataDir: await tempDir('cycle-routes-'),
    maxArtifactBytes: 1024,
  });
});
afterAll(async () => server.close());

async function api(
  method: string,
  route: string,
  options: { body?: unknown; raw?: Buffer; token?: string | null; headers?: Record<string, string>; on?: RunningServer } = {},
): Promise<{ status: number; body: any }> {
  const target = options.on ?? server;
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? target.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${target.url}${route}`, {
    method,
    headers,
    body: options.raw ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined),
  });
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    return { status: response.status, body: text };
  }
}

describe('public routes', () => {
  it('GET /health and GET /api/v1/docs answer without a token', async () => {
    const health = await api('GET', '/health', { token: null });
    expect(health).toEqual({ status: 200, body: { ok: true, status: 'ok', version: 'test' } });
    const docs = await api('GET', '/api/v1/docs', { token: null });
    expect(docs.status).toBe(200);
    expect(docs.body).toMatchObject({ name: 'cycle server', status: 'ok', version: 'test', auth: { type: 'bearer' }, docs: { index: '/api/v1/docs' } });
    expect(typeof docs.body.description).toBe('string');
  });

  it('POST /api/v1/feedback stores a documented type, refuses another naming the field', async () => {
    const ok = await api('POST', '/api/v1/feedback', { token: null, body: { type: 'bug', title: 'It broke', description: 'steps...' } });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ id: expect.stringMatching(/^fb_/), type: 'bug', title: 'It broke' });
    const bad = await api('POST', '/api/v1/feedback', { token: null, body: { type: 'praise', title: 't', description: 'd' } });
    expect(bad.status).toBe(422);
    expect(bad.body.error.field).toBe('type');
  });
});

describe('POST /api/v1/projects', () => {
  it('creates a project (201), answers an existing one as it is (200), lists it', async () => {
    const created = await api('POST', '/api/v1/projects', { body: { name: 'my-project', remote_dir: '/home/me/my-project' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'my-project', remote_dir: '/home/me/my-project', revision: null, push_url: '/api/v1/projects/my-project/push' });
    const again = await api('POST', '/api/v1/projects', { body: { name: 'my-project' } });
    expect(again.status).toBe(200);
    expect(again.body.created_at).toBe(created.body.created_at);
    const list = await api('GET', '/api/v1/projects');
    expect(list.body.projects.map((p: { name: string }) => p.name)).toContain('my-project');
    // Known but never pushed: its status says to push.
    const status = await api('GET', '/api/v1/projects/my-project/status');
    expect(status.status).toBe(404);
    expect(status.body.error.message).toMatch(/push it first/);
  });

  it('refuses a bad name with 422 naming "name"', async () => {
    const bad = await api('POST', '/api/v1/projects', { body: { name: 'Bad Name!' } });
    expect(bad.status).toBe(422);
    expect(bad.body.error.field).toBe('name');
  });
});

describe('artifact uploads', () => {
  const bytes = Buffer.from('hello artifacts\n');
  const sha = createHash('sha256').update(bytes).digest('hex');
  const upload = (body: Buffer, filename?: string) =>
    api('POST', '/api/v1/artifacts', {
      raw: body,
      headers: { 'content-type': 'application/octet-stream', ...(filename !== undefined ? { 'x-artifact-filename': filename } : {}) },
    });

  it('stores raw bytes under a content-derived id: the same bytes give the same id (201, then 200), downloadable', async () => {
    const first = await upload(bytes, 'data.csv');
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ id: `art_${sha.slice(0, 32)}`, filename: 'data.csv', size: bytes.length, sha256: sha });
    const second = await upload(bytes, 'other.csv');
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    const download = await fetch(`${server.url}/api/v1/artifacts/${first.body.id}`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer())).toEqual(bytes);
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it.each([
    ['missing', undefined, /missing/],
    ['a path', '../etc/passwd', /path separator/],
    ['a backslash', 'a\\b', /path separator/],
    ['a dot-dot', '..', /not a file name/],
  ])('refuses X-Artifact-Filename %s with 400 naming the header', async (_label, filename, message) => {
    const answer = await upload(bytes, filename);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'invalid_filename', field: 'X-Artifact-Filename', message: expect.stringMatching(message) });
  });

  it('refuses a body over the configured cap with 413 and keeps nothing', async () => {
    const answer = await upload(Buffer.alloc(2048, 1), 'big.bin');
    expect(answer.status).toBe(413);
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('/direct says whether the bytes are here, else where to send them', async () => {
    await upload(bytes, 'data.csv');
    const known = await api('POST', '/api/v1/artifacts/direct', { body: { sha256: sha, size: bytes.length, filename: 'data.csv' } });
    expect(known.status).toBe(200);
    expect(known.body).toMatchObject({ exists: true, artifact_id: `art_${sha.slice(0, 32)}`, upload_url: null });
    const otherSha = createHash('sha256').update('new').digest('hex');
    const unknown = await api('POST', '/api/v1/artifacts/direct', { body: { sha256: otherSha, size: 3, filename: 'new.txt' } });
    expect(unknown.body).toMatchObject({
      exists: false,
      artifact_id: `art_${otherSha.slice(0, 32)}`,
      upload_url: `${server.url}/api/v1/artifacts`,
      method: 'POST',
      headers: { 'X-Artifact-Filename': 'new.txt' },
    });
    const bad = await api('POST', '/api/v1/artifacts/direct', { body: { sha256: 'xyz', size: 3, filename: 'a' } });
    expect(bad.status).toBe(422);
    expect(bad.body.error.field).toBe('sha256');
  });
});

describe('billing: balance, holds, ledger, quotes', () => {
  it('an unlimited server (no --balance) says so and refuses nothing', async () => {
    const balance = await api('GET', '/api/v1/account/balance');
    expect(balance.status).toBe(200);
    expect(balance.body).toMatchObject({ ledger_balance_usd: null, held_usd: 0, available_usd: null, unlimited: true });
  });

  it('holds the quote at submit, 402 with a shortfall quote when short (submit and init), settles at the end', async () => {
    const fake = new FakeDocker();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    fake.onRun = async () => {
      await gate;
      return 0;
    };
    const poor = await startFakeDockerServer(fake, {
      dataDir: await tempDir('cycle-billing-'),
      balance: 1,
      pricePerTaskSecondUsd: 0.001,
    });
    try {
      const on = poor;
      expect((await api('GET', '/api/v1/account/balance', { on })).body).toMatchObject({
        ledger_balance_usd: 1,
        held_usd: 0,
        available_usd: 1,
        unlimited: false,
      });
      expect((await api('POST', '/api/v1/projects/p/push', { on, raw: rawTarGz(VALID_PROJECT) })).status).toBe(201);
      const job = await api('POST', '/api/v1/jobs', { on, body: { project: 'p', timeout_s: 600 } });
      expect(job.status).toBe(201);
      expect(job.body.quote).toMatchObject({ required_usd: 0.6, tasks: 1, timeout_s: 600, outcome: 'held', job_id: job.body.id });
      expect((await api('GET', '/api/v1/account/balance', { on })).body).toMatchObject({ ledger_balance_usd: 1, held_usd: 0.6, available_usd: 0.4 });

      const refused = await api('POST', '/api/v1/jobs', {
        on,
        body: { project: 'p', timeout_s: 600 },
        headers: { 'idempotency-key': 'retry-after-funding-1' },
      });
      expect(refused.status).toBe(402);
      expect(refused.body.error.code).toBe('payment_required');
      expect(refused.body.error.message).toMatch(/--balance/);
      expect(refused.body.quote).toMatchObject({ required_usd: 0.6, available_usd: 0.4, shortfall_usd: 0.2 });
      const init = await api('POST', '/api/v1/projects/p/init', { on, body: {} });
      expect(init.status).toBe(402);
      expect(init.body.quote).toMatchObject({ purpose: 'init', required_usd: 5, available_usd: 0.4, shortfall_usd: 4.6 });

      release();
      let status = '';
      await waitFor(
        async () => (status = (await api('GET', `/api/v1/jobs/${job.body.id}`, { on })).body.status) === 'completed',
        15_000,
        'the job to complete',
        () => status,
      );
      const [hold] = (await api('GET', '/api/v1/account/holds', { on })).body.holds;
      expect(hold).toMatchObject({ job_id: job.body.id, amount_usd: 0.6, state: 'settled' });
      expect(hold.charged_usd).toBeLessThanOrEqual(0.6);
      const ledger = (await api('GET', '/api/v1/account/ledger', { on })).body;
      expect(ledger.opening_balance_usd).toBe(1);
      const charged = ledger.entries.reduce((sum: number, e: { amount_usd: number }) => sum + e.amount_usd, 0);
      expect(charged).toBeCloseTo(-hold.charged_usd, 6);
      const after = (await api('GET', '/api/v1/account/balance', { on })).body;
      expect(after.held_usd).toBe(0);
      expect(after.available_usd).toBeCloseTo(1 - hold.charged_usd, 6);
      const quotes = (await api('GET', '/api/v1/account/quotes', { on })).body.quotes;
      expect(quotes.map((q: { outcome: string; purpose: string }) => `${q.purpose}:${q.outcome}`).sort()).toEqual(['init:refused', 'job:held', 'job:refused']);
    } finally {
      release();
      await poor.close();
    }
  });
});

describe('documented job, task and result fields', () => {
  const finish = async (id: string): Promise<string> => {
    let status = '';
    await waitFor(
      async () => ['completed', 'partial', 'failed', 'cancelled'].includes((status = (await api('GET', `/api/v1/jobs/${id}`)).body.status)),
      15_000,
      `job ${id} to finish`,
      () => status,
    );
    return status;
  };

  it('results carry summary, aggregate_result, completeness, persistence flags, meta, variant; tasks result_quality, output', async () => {
    expect((await api('POST', '/api/v1/projects/fields/push', { raw: rawTarGz(VALID_PROJECT) })).status).toBe(201);
    const job = await api('POST', '/api/v1/jobs', { body: { project: 'fields', meta: { run: 7 }, variant: 'b' } });
    expect(job.status).toBe(201);
    expect(await finish(job.body.id)).toBe('completed');
    expect((await api('GET', `/api/v1/jobs/${job.body.id}`)).body.recommended_action).toBeNull();
    const results = (await api('GET', `/api/v1/results/${job.body.id}`)).body;
    expect(results).toMatchObject({
      summary: { status: 'completed', total: 1, succeeded: 1, failed: 0 },
      aggregate_result: null,
      aggregate_aliases: {},
      completeness: { complete: true, ratio: 1, succeeded: 1, total: 1 },
      result_persisted: true,
      output_persisted: true,
      meta: { run: 7 },
      variant: 'b',
    });
    expect(results.tasks[0]).toMatchObject({ result_quality: expect.any(Number), result_warnings: expect.any(Array) });
    const [task] = (await api('GET', `/api/v1/jobs/${job.body.id}/tasks`)).body.tasks;
    expect(typeof task.output).toBe('string');
  });

  it('a failed job carries recommended_action; its task result_quality is 0 with a warning', async () => {
    docker.onRun = () => 3;
    try {
      const job = await api('POST', '/api/v1/jobs', { body: { project: 'fields' } });
      expect(await finish(job.body.id)).toBe('failed');
      expect((await api('GET', `/api/v1/jobs/${job.body.id}`)).body.recommended_action).toMatch(new RegExp(`/api/v1/jobs/${job.body.id}/output`));
      const results = (await api('GET', `/api/v1/results/${job.body.id}`)).body;
      expect(results.tasks[0]).toMatchObject({ result_quality: 0, result_warnings: ['the task failed: no result'] });
      expect(results.completeness).toMatchObject({ complete: false, ratio: 0 });
    } finally {
      docker.onRun = () => 0;
    }
  });
});

describe('recipes (none registered on this server)', () => {
  it('lists none; a recipe or a recipe job is a 404 naming the recipe, not a 400', async () => {
    expect(await api('GET', '/api/v1/recipes')).toEqual({ status: 200, body: { recipes: [] } });
    const one = await api('GET', '/api/v1/recipes/simple-amm');
    expect(one.status).toBe(404);
    expect(one.body.error).toMatchObject({ code: 'recipe_not_found', field: 'name', message: expect.stringContaining('"simple-amm"') });
    const viaJobs = await api('POST', '/api/v1/jobs', { body: { recipe: 'simple-amm', payload: {}, timeout_s: 60 } });
    expect(viaJobs.status).toBe(404);
    expect(viaJobs.body.error).toMatchObject({ code: 'recipe_not_found', field: 'recipe' });
    expect((await api('POST', '/api/v1/recipes/simple-amm/jobs', { body: { payload: {} } })).status).toBe(404);
  });
});
