import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, writeFiles } from '../helpers/context.js';
import { cycle, docker } from '../helpers/e2e.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';

const execFileAsync = promisify(execFile);
let server: ServerProcess;

const RECIPES = path.join(import.meta.dirname, '..', 'fixtures', 'recipes');

beforeAll(async () => {
  // $10: init needs $5; the script's big job (10 tasks × a day) must not fit.
  server = await startServerProcess({ args: ['--balance', '10', '--recipes', RECIPES] });
});

afterAll(async () => {
  await server.stop();
  for (const project of ['server:my-project', 'server:recipe:packing']) {
    const images = (await docker(['images', '-q', '--filter', `label=cycle.project-key=${project}`])).split('\n').filter(Boolean);
    if (images.length) await docker(['rmi', '-f', ...new Set(images)]).catch(() => undefined);
  }
});

describe("Computalot's documented curl examples against cycle server", () => {
  it('test/e2e/docs-examples.sh: projects, setup, jobs, results & artifacts, billing, recipes, as written', async () => {
    const { stdout, stderr } = await execFileAsync('bash', [path.join(import.meta.dirname, 'docs-examples.sh')], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, BASE_URL: server.url, TOKEN: server.token },
      maxBuffer: 16 << 20,
    }).catch((error: { stdout: string; stderr: string }) => {
      throw new Error(`docs-examples.sh failed:\n${error.stdout}\n${error.stderr}\nserver log:\n${server.log()}`);
    });
    expect(stdout).toContain('docs examples OK');
    expect(stderr).toBe('');
  }, 240_000);

  it('cycle recipe list, show and submit --wait against the same server', async () => {
    const cwd = await tempDir('cycle-e2e-recipe-');
    const env = { CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token, XDG_CONFIG_HOME: cwd };
    const list = await cycle(['recipe', 'list'], { cwd, env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^packing\t.+\n$/);
    const show = await cycle(['recipe', 'show', 'packing'], { cwd, env });
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/^payload_schema: \{/m);
    expect(show.stdout).not.toMatch(/^schema: /m); // the same schema, shown once
    const candidate = Array.from({ length: 45 }, (_, i) => (i % 10) / 10);
    await writeFiles(cwd, { 'payload.json': JSON.stringify({ operation: 'eval', candidate }) });
    const submit = await cycle(['recipe', 'submit', 'packing', '--payload', '@payload.json', '--timeout', '2m', '--wait', '--json'], { cwd, env });
    expect(submit.code, submit.stderr).toBe(0);
    const job = JSON.parse(submit.stdout);
    expect(job).toMatchObject({ status: 'completed', recipe: 'packing', timeout_s: 120 });
    const results = await cycle(['job', 'results', job.id, '--json'], { cwd, env });
    const mean = candidate.reduce((a, b) => a + b, 0) / candidate.length;
    expect(JSON.parse(results.stdout).items[0].result).toMatchObject({ operation: 'eval', score: Number(mean.toFixed(6)), feasible: true });
    // A payload off the schema: the server's 422, naming the field, as a usage-free failure.
    const bad = await cycle(['recipe', 'submit', 'packing', '--payload', '{"operation": "eval"}'], { cwd, env });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/payload\.candidate: required/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 120_000);
});
