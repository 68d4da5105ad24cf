import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { openDatabase } from '../../src/server/db.js';
import { TASK_STAGES, stageSpans } from '../../src/api/timings.js';
import { client, startFakeDockerServer } from '../helpers/server.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { tempDir, runMain } from '../helpers/context.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';

/**
 * Issue 22: each task records when it reached its stages (queued, leased, image ready, container
 * created, started, exited, artifacts captured, outcome stored); `GET /api/v1/jobs/:id/timings`
 * serves them beside the task documents (which stay as Computalot's contract has them) and
 * `cycle job tasks ID --timings` shows them as durations.
 */

let server: RunningServer;
let jobId: string;
const docker = new FakeDocker();
docker.onRun = async (_spec, io) => {
  io.stdout(Buffer.from('hello\n'));
  return 0;
};

beforeAll(async () => {
  server = await startFakeDockerServer(docker, { dataDir: await tempDir('cycle-timings-') });
  const api = client(server);
  expect((await api.call('POST', '/api/v1/projects/demo/push', rawTarGz(VALID_PROJECT))).status).toBe(201);
  jobId = (await api.submit({ project: 'demo', payload: { n: [0, 1, 2] }, fan_out: { by: 'n' } })).id;
  expect((await api.waitJob(jobId, 30_000)).status).toBe('completed');
});
afterAll(async () => server.close());

async function cycle(args: string[], apiUrl = server.url): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = await tempDir();
  return runMain(args, {
    env: { HOME: home, XDG_CONFIG_HOME: path.join(home, '.cfg'), CYCLE_API_URL: apiUrl, CYCLE_TOKEN: server.token, CYCLE_HTTP_RETRIES: '1' },
    cwd: home,
  });
}

describe('task stage timings', () => {
  it('every stage of every task is recorded, in order', async () => {
    const answer = await client(server).call('GET', `/api/v1/jobs/${jobId}/timings`);
    expect(answer.status).toBe(200);
    expect(answer.body.tasks).toHaveLength(3);
    for (const task of answer.body.tasks as Array<{ index: number; stages: Record<string, number> }>) {
      expect(Object.keys(task.stages)).toEqual([...TASK_STAGES]);
      const times = TASK_STAGES.map((stage) => task.stages[stage]!);
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(Object.values(stageSpans(task.stages)).every((ms) => ms !== undefined && ms >= 0)).toBe(true);
    }
  });

  it('the task documents stay as the contract has them: no timings in them', async () => {
    const answer = await client(server).call('GET', `/api/v1/jobs/${jobId}/tasks`);
    expect(JSON.stringify(answer.body)).not.toMatch(/stages|image_ready/);
  });

  it('`job tasks --timings` shows each span per task and their sums; --json the stage times', async () => {
    const text = await cycle(['job', 'tasks', jobId, '--timings']);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^#\s+TASK\s+STATUS\s+QUEUE\s+IMAGE\s+CREATE\s+START\s+RUN\s+CAPTURE\s+STORE\s+TOTAL$/);
    expect(lines).toHaveLength(1 + 3 + 1);
    for (const line of lines.slice(1, 4)) expect(line).toMatch(/succeeded(\s+\d+(\.\d)?m?s){8}$/);
    expect(lines[4]).toMatch(/sum(\s+\d+(\.\d)?m?s){7}$/);
    const json = await cycle(['job', 'tasks', jobId, '--timings', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const tasks = JSON.parse(json.stdout) as Array<{ index: number; stages: Record<string, number> }>;
    expect(tasks.map((t) => t.index)).toEqual([0, 1, 2]);
    expect(typeof tasks[0]!.stages.started).toBe('number');
  });

  it('an unknown job: its own not-found message', async () => {
    const result = await cycle(['job', 'tasks', 'job_nope', '--timings']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/no job "job_nope"/);
  });

  it('a server without the timings route (404): a clear message, not a stack trace', async () => {
    const old = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/api/v1/jobs/job_1?') || req.url === '/api/v1/jobs/job_1') {
        res.end(JSON.stringify({ id: 'job_1', status: 'completed' }));
        return;
      }
      res.statusCode = 404;
      res.end(JSON.stringify({ error: { code: 'not_found', message: `no route ${req.url}` } }));
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    try {
      const result = await cycle(['job', 'tasks', 'job_1', '--timings'], `http://127.0.0.1:${(old.address() as { port: number }).port}`);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/does not report task timings/);
      expect(result.stderr).toMatch(/without --timings/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      old.close();
    }
  });

  it('a database made before the column gets it on open', async () => {
    const file = path.join(await tempDir(), 'old.db');
    openDatabase(file).close();
    const old = new Database(file);
    old.exec('ALTER TABLE tasks DROP COLUMN stages'); // as a database made before it
    old.close();
    const db = openDatabase(file);
    const columns = (db.prepare("SELECT name FROM pragma_table_info('tasks')").all() as Array<{ name: string }>).map((c) => c.name);
    db.close();
    expect(columns).toContain('stages');
  });
});
