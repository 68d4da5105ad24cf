import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readResult, RESULT_MAX_BYTES } from '../../src/runner/task.js';
import { cycle, e2eCycleswapProject, removeProjectImages, type E2EProject } from '../helpers/e2e.js';
import { client, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { tempDir } from '../helpers/context.js';

// Issue 11.2: the result file is the job's to shape. A symlink to a host file must not bring that
// file back as the result, nor into the task's error text.
const SECRET = `host-secret-${process.pid}-${Date.now()}`;
let hostDir: string;
let jsonSecret: string;
let textSecret: string;

beforeAll(async () => {
  hostDir = await tempDir('cycle-sec-host-');
  jsonSecret = path.join(hostDir, 'secret.json');
  textSecret = path.join(hostDir, 'secret.txt');
  await fs.writeFile(jsonSecret, JSON.stringify({ secret: SECRET }));
  await fs.writeFile(textSecret, `${SECRET} is not JSON`);
});
afterAll(async () => {
  await fs.rm(hostDir, { recursive: true, force: true });
});

describe('readResult: what a job leaves as its result file', () => {
  it('refuses a symbolic link, even to valid JSON, without quoting the target', async () => {
    const link = path.join(hostDir, 'link.json');
    await fs.symlink(jsonSecret, link);
    const result = await readResult(link);
    expect(result).toEqual({ ok: false, missing: false, error: expect.stringContaining('symbolic link') });
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it('refuses a FIFO without waiting for a writer', { timeout: 5_000 }, async () => {
    const fifo = path.join(hostDir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    expect(await readResult(fifo)).toEqual({ ok: false, missing: false, error: 'the result file is not a regular file' });
  });

  it(`refuses a file over ${RESULT_MAX_BYTES} bytes`, async () => {
    const big = path.join(hostDir, 'big.json');
    await fs.writeFile(big, '');
    await fs.truncate(big, RESULT_MAX_BYTES + 1);
    const result = await readResult(big);
    expect(result.ok).toBe(false);
    expect(JSON.stringify(result)).toContain(`larger than ${RESULT_MAX_BYTES} bytes`);
  });

  it('says where bad JSON breaks, never what it says', async () => {
    const result = await readResult(textSecret);
    expect(result.ok).toBe(false);
    const error = result.ok ? '' : (result.error ?? '');
    expect(error).toMatch(/^the result file is not valid JSON at line 1, column \d+/);
    expect(error).not.toContain('host-secret');
  });

  it('still reads a plain result, and reports a missing one as missing', async () => {
    const plain = path.join(hostDir, 'plain.json');
    await fs.writeFile(plain, '{"ok": 1}');
    expect(await readResult(plain)).toEqual({ ok: true, value: { ok: 1 } });
    expect(await readResult(path.join(hostDir, 'absent.json'))).toEqual({ ok: false, missing: true });
  });
});

describe('a job that makes its result a symlink to a host file', () => {
  const made: E2EProject[] = [];
  let server: ServerProcess | undefined;
  afterAll(async () => {
    await server?.stop('SIGTERM');
    for (const p of made) await removeProjectImages(p.root);
    for (const p of made) await fs.rm(p.root, { recursive: true, force: true });
    if (server) await fs.rm(server.dataDir, { recursive: true, force: true }).catch(() => undefined);
  });

  it('project test: fails, naming the symlink, and shows nothing of the host file', async () => {
    const p = await e2eCycleswapProject({ run: `ln -s ${JSON.stringify(jsonSecret)} "$COMPUTALOT_TASK_RESULT"\n` });
    made.push(p);
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.stdout + result.stderr).not.toContain(SECRET);
    expect(result.stderr).toContain('the result file is a symbolic link');
    expect(result.code).toBe(6);
  });

  it('cycle server: the task fails, its result and error hold nothing of the host file', async () => {
    const p = await e2eCycleswapProject();
    made.push(p);
    server = await startServerProcess({ workers: 2 });
    const api = client(server);
    const pushed = await api.push(p.name, p.root);
    expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
    const link = (target: string): string[] => ['bash', '-c', `ln -s ${JSON.stringify(target)} "$COMPUTALOT_TASK_RESULT"`];
    for (const target of [jsonSecret, textSecret]) {
      const job = await api.submit({ project: p.name, runner_command: link(target), payload: {} });
      const done = await api.waitJob(job.id);
      const tasks = (await api.call('GET', `/api/v1/jobs/${job.id}/tasks`)).body;
      const results = (await api.call('GET', `/api/v1/results/${job.id}`)).body;
      const everything = JSON.stringify([done, tasks, results]);
      expect(everything).not.toContain(SECRET);
      expect(done.status).toBe('failed');
      expect(tasks.tasks[0].error).toContain('the result file is a symbolic link');
    }
  });
});
