import { writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { isCycleError } from '../../src/errors.js';
import type { RunningServer } from '../../src/server/index.js';
import { loadRecipes } from '../../src/server/recipes.js';
import { tempDir, writeFiles } from '../helpers/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Recipes (issue 13, part 3): the operator's folders under --recipes, served as sealed runtimes
// whose jobs are checked against a JSON Schema and run as the recipe's internal project.
const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'recipes');
const CANDIDATE = Array.from({ length: 45 }, (_, i) => i / 100);

let server: RunningServer;
const docker = new FakeDocker();
/** The containers the recipe jobs ran, in order. */
const ran: ContainerSpec[] = [];

beforeAll(async () => {
  // Each container answers as the fixture's packing.py would: the operation, echoed.
  docker.onRun = (spec) => {
    ran.push(spec);
    const file = spec.env.COMPUTALOT_TASK_RESULT;
    const mount = spec.mounts.find((m) => file?.startsWith(`${m.target}/`));
    if (file && mount) writeFileSync(path.join(mount.source, path.posix.relative(mount.target, file)), JSON.stringify({ scored: true }));
    return 0;
  };
  server = await startFakeDockerServer(docker, {
    dataDir: await tempDir('cycle-recipes-'),
    recipesDir: FIXTURES,
  });
});
afterAll(async () => server?.close());

async function api(method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function finished(id: string): Promise<any> {
  let job: any;
  await waitFor(
    async () => {
      job = (await api('GET', `/api/v1/jobs/${id}`)).body;
      return ['completed', 'partial', 'failed', 'cancelled'].includes(job.status);
    },
    15_000,
    `job ${id} to finish`,
  );
  return job;
}

describe('GET /api/v1/recipes[/:name]', () => {
  it('lists the registered recipes with their documented fields', async () => {
    const list = await api('GET', '/api/v1/recipes');
    expect(list.status).toBe(200);
    expect(list.body.recipes).toEqual([
      {
        name: 'packing',
        description: expect.stringContaining('packing'),
        operations: [
          { name: 'eval', description: expect.any(String) },
          { name: 'eval_batch', description: expect.any(String) },
        ],
        timeout_s: 300,
      },
    ]);
  });

  it("shows one recipe's payload schema (as the operator wrote it) and operations", async () => {
    const schema = JSON.parse(await fs.readFile(path.join(FIXTURES, 'packing', 'payload.schema.json'), 'utf8'));
    const detail = await api('GET', '/api/v1/recipes/packing');
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ name: 'packing', description: expect.any(String), payload_schema: schema, schema, timeout_s: 300 });
    expect(detail.body.operations.map((o: { name: string }) => o.name)).toEqual(['eval', 'eval_batch']);
  });

  it('an unknown recipe is a 404 naming it, on every route', async () => {
    const one = await api('GET', '/api/v1/recipes/simple-amm');
    expect(one.status).toBe(404);
    expect(one.body.error).toMatchObject({ code: 'recipe_not_found', field: 'name', message: expect.stringMatching(/no recipe "simple-amm".*"packing"/) });
    const routed = await api('POST', '/api/v1/recipes/simple-amm/jobs', { payload: {} });
    expect(routed.status).toBe(404);
    expect(routed.body.error).toMatchObject({ code: 'recipe_not_found', field: 'name' });
    const generic = await api('POST', '/api/v1/jobs', { recipe: 'simple-amm', payload: {}, timeout_s: 60 });
    expect(generic.status).toBe(404);
    expect(generic.body.error).toMatchObject({ code: 'recipe_not_found', field: 'recipe' });
  });
});

describe('submitting a recipe job', () => {
  it('POST /api/v1/recipes/:name/jobs: a normal job on the recipe, its entrypoint, its default timeout', async () => {
    const before = ran.length;
    const submitted = await api('POST', '/api/v1/recipes/packing/jobs', { payload: { operation: 'eval', candidate: CANDIDATE } });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({ recipe: 'packing', type: 'structured_runner', runner_command: null, timeout_s: 300, quote: { outcome: 'held' } });
    const job = await finished(submitted.body.id);
    expect(job.status).toBe('completed');
    // The recipe's entrypoint ran, with the payload as sent.
    expect(ran.length).toBe(before + 1);
    expect([ran.at(-1)!.entrypoint, ...ran.at(-1)!.command]).toEqual(['python3', 'packing.py']);
    const results = (await api('GET', `/api/v1/results/${job.id}`)).body;
    expect(results.items).toEqual([
      expect.objectContaining({ status: 'succeeded', result: { scored: true }, payload: { operation: 'eval', candidate: CANDIDATE } }),
    ]);
  });

  it('POST /api/v1/jobs with "recipe": the same, with the timeout given', async () => {
    const submitted = await api('POST', '/api/v1/jobs', { recipe: 'packing', payload: { operation: 'eval', candidate: CANDIDATE }, timeout_s: 60 });
    expect(submitted.status).toBe(201);
    expect(submitted.body).toMatchObject({ recipe: 'packing', timeout_s: 60 });
    expect((await finished(submitted.body.id)).status).toBe('completed');
    // The job is listed as any other; the recipe's project is not among the user's projects.
    expect((await api('GET', '/api/v1/jobs')).body.jobs.map((j: { id: string }) => j.id)).toContain(submitted.body.id);
    expect((await api('GET', '/api/v1/projects')).body.projects).toEqual([]);
  });

  it('a batch entry may be a recipe job', async () => {
    const batch = await api('POST', '/api/v1/jobs/batch', {
      jobs: [
        { recipe: 'packing', payload: { operation: 'eval', candidate: CANDIDATE } },
        { recipe: 'packing', payload: { operation: 'eval' } },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.jobs[0]).toMatchObject({ ok: true, job: { recipe: 'packing' } });
    expect(batch.body.jobs[1]).toMatchObject({ ok: false, error: { code: 'invalid_payload', field: 'payload.candidate' } });
    await finished(batch.body.jobs[0].job.id);
  });

  it('answers a repeated Idempotency-Key with the first job', async () => {
    const body = { payload: { operation: 'eval', candidate: CANDIDATE } };
    const first = await api('POST', '/api/v1/recipes/packing/jobs', body, { 'idempotency-key': 'recipe-key-1' });
    const again = await api('POST', '/api/v1/recipes/packing/jobs', body, { 'idempotency-key': 'recipe-key-1' });
    expect(again.body.id).toBe(first.body.id);
    await finished(first.body.id);
  });

  it.each([
    ['a missing required field', { candidate: CANDIDATE }, 'payload.operation', /required/],
    ['a wrong type', { operation: 'eval', candidate: CANDIDATE, penalty: 'high' }, 'payload.penalty', /expected number/],
    ['a value outside the enum', { operation: 'optimize' }, 'payload.operation', /expected one of "eval", "eval_batch"/],
    ['a field required by the operation', { operation: 'eval' }, 'payload.candidate', /required/],
    ['a nested element', { operation: 'eval_batch', candidates: [CANDIDATE, [...CANDIDATE.slice(1), 'x']] }, 'payload.candidates.1.44', /expected number/],
    ['a field the schema does not have', { operation: 'eval', candidate: CANDIDATE, seed: 1 }, 'payload.seed', /not a field this recipe takes/],
    ['an array too short', { operation: 'eval', candidate: [0.5] }, 'payload.candidate', /fewer than 45 items/],
  ])('a payload with %s is a 422 naming the field, with the fix', async (_label, payload, field, message) => {
    for (const [route, body] of [
      ['/api/v1/recipes/packing/jobs', { payload }],
      ['/api/v1/jobs', { recipe: 'packing', payload }],
    ] as const) {
      const answer = await api('POST', route, body);
      expect(answer.status).toBe(422);
      expect(answer.body.error).toMatchObject({ code: 'invalid_payload', field });
      expect(answer.body.error.message).toMatch(message);
      expect(answer.body.error.message).toContain('GET /api/v1/recipes/packing shows the schema');
    }
  });

  it.each([
    ['runner_command', ['python3', 'other.py']],
    ['type', 'structured_runner'],
    ['project', 'packing'],
    ['fan_out', { items: [{}, {}] }],
  ])('"recipe" with %s is a 422 naming the field', async (field, value) => {
    const answer = await api('POST', '/api/v1/jobs', { recipe: 'packing', payload: { operation: 'eval', candidate: CANDIDATE }, [field]: value });
    expect(answer.status).toBe(422);
    expect(answer.body.error).toMatchObject({ code: 'invalid_job', field, message: expect.stringContaining('leave it out') });
    const routed = await api('POST', '/api/v1/recipes/packing/jobs', { payload: { operation: 'eval', candidate: CANDIDATE }, [field]: value });
    expect(routed.body.error).toMatchObject({ field });
  });

  it("the recipe's project cannot be pushed to, read or used by a project job", async () => {
    const push = await fetch(`${server.url}/api/v1/projects/recipe:packing/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}` },
      body: Buffer.from('x'),
    });
    expect(push.status).toBe(400);
    expect((await api('GET', '/api/v1/projects/recipe:packing/status')).status).toBe(400);
    const job = await api('POST', '/api/v1/jobs', { project: 'recipe:packing', payload: {} });
    expect(job.body.error.field).toBe('project');
  });
});

describe('registering recipes again on each start', () => {
  it('an unchanged folder (or a changed recipe.json) keeps its revision; changed code is a new one', async () => {
    const recipesDir = await tempDir('cycle-recipe-dir-');
    await fs.cp(path.join(FIXTURES, 'packing'), path.join(recipesDir, 'packing'), { recursive: true });
    const dataDir = await tempDir('cycle-recipe-data-');
    const revisionOfAJob = async (): Promise<number> => {
      const started = await startFakeDockerServer(docker, {
        dataDir,
        recipesDir,
      });
      try {
        const answer = await fetch(`${started.url}/api/v1/recipes/packing/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${started.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ payload: { operation: 'eval', candidate: CANDIDATE } }),
        });
        const job = (await answer.json()) as { revision: number };
        return job.revision;
      } finally {
        await started.close();
      }
    };
    expect(await revisionOfAJob()).toBe(1);
    expect(await revisionOfAJob()).toBe(1);
    await fs.writeFile(path.join(recipesDir, 'packing', 'recipe.json'), JSON.stringify({ description: 'described anew' }));
    expect(await revisionOfAJob()).toBe(1);
    await fs.appendFile(path.join(recipesDir, 'packing', 'packing.py'), '# changed\n');
    expect(await revisionOfAJob()).toBe(2);
  });
});

describe('loading recipes at start', () => {
  const PROJECT = {
    'computalot.project.json': JSON.stringify({
      version: 1,
      runtime: { kind: 'oci', sandbox: 'gvisor', workdir: '/w' },
      entrypoint: { command: ['python3', 'main.py'] },
    }),
    Dockerfile: 'FROM ubuntu:24.04\n',
    'main.py': 'print(1)\n',
  };
  const RECIPE = JSON.stringify({ description: 'a test recipe' });
  async function recipesWith(files: Record<string, string>): Promise<string> {
    const dir = await tempDir('cycle-recipe-dir-');
    await writeFiles(path.join(dir, 'demo'), { ...PROJECT, 'recipe.json': RECIPE, 'payload.schema.json': '{"type": "object"}', ...files });
    return dir;
  }
  async function refusal(dir: string): Promise<string> {
    const error = await loadRecipes(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!isCycleError(error)) throw new Error(`expected a CycleError, got ${String(error)}`);
    return [error.message, ...error.details].join('\n');
  }

  it.each([
    ['recipe.json without a description', { 'recipe.json': '{"operations": []}' }, /demo\/recipe\.json: description: /],
    ['recipe.json with an unknown field', { 'recipe.json': '{"description": "d", "timeout": 5}' }, /demo\/recipe\.json: .*timeout/],
    ['recipe.json that is not JSON', { 'recipe.json': '{' }, /demo\/recipe\.json: not JSON/],
    ['a schema that is not a JSON Schema', { 'payload.schema.json': '{"type": "nope"}' }, /demo\/payload\.schema\.json: not a valid JSON Schema/],
    ['a schema of an unknown draft', { 'payload.schema.json': '{"$schema": "http://json-schema.org/draft-04/schema#"}' }, /payload\.schema\.json: \$schema: /],
    ['no schema', { 'payload.schema.json': '' }, /demo\/payload\.schema\.json: not JSON/],
    ['an invalid project', { 'computalot.project.json': '{"version": 1}' }, /demo: the recipe's project is invalid\n.*computalot\.project\.json/],
  ])('refuses %s, naming the file and field', async (_label, files, message) => {
    expect(await refusal(await recipesWith(files))).toMatch(message);
  });

  it('refuses a folder name that is not a recipe name', async () => {
    const dir = await tempDir('cycle-recipe-dir-');
    await writeFiles(path.join(dir, 'Bad Name'), { ...PROJECT, 'recipe.json': RECIPE, 'payload.schema.json': '{}' });
    expect(await refusal(dir)).toMatch(/"Bad Name" is not a recipe name/);
  });

  it('the server does not start with a bad recipe, and writes nothing', async () => {
    const dataDir = path.join(await tempDir('cycle-recipe-data-'), 'data');
    const start = startFakeDockerServer(docker, {
      dataDir,
      recipesDir: await recipesWith({ 'recipe.json': '{}' }),
    });
    await expect(start).rejects.toThrow(/recipe\.json: description/);
    await expect(fs.stat(dataDir)).rejects.toThrow(/ENOENT/);
  });

  it('reads draft-07 schemas too ($ref into definitions, tuple items: not valid 2020-12)', async () => {
    const schema = {
      $schema: 'https://json-schema.org/draft-07/schema', // the https spelling, without "#": read as draft-07 too
      type: 'object',
      definitions: { steps: { type: 'integer', minimum: 1 } },
      properties: { steps: { $ref: '#/definitions/steps' }, pair: { type: 'array', items: [{ type: 'string' }, { type: 'integer' }] } },
    };
    const other = await startFakeDockerServer(docker, {
      dataDir: await tempDir('cycle-recipe-data-'),
      recipesDir: await recipesWith({ 'payload.schema.json': JSON.stringify(schema) }),
    });
    try {
      const submit = (payload: unknown) =>
        fetch(`${other.url}/api/v1/recipes/demo/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${other.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ payload }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
      expect((await submit({ steps: 3 })).status).toBe(201);
      const bad = await submit({ steps: 0 });
      expect(bad.status).toBe(422);
      expect(bad.body.error).toMatchObject({ field: 'payload.steps', message: expect.stringContaining('payload.steps: must be >= 1') });
      expect((await submit({ pair: ['a', 1] })).status).toBe(201);
      expect((await submit({ pair: ['a', 'b'] })).body.error).toMatchObject({ field: 'payload.pair.1', message: expect.stringContaining('expected integer') });
    } finally {
      await other.close();
    }
  });
});
