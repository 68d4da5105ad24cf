import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHeldServer, type TimedApi } from '../helpers/held-server.js';
import { MAX_TASK_PAYLOAD_BYTES } from '../../src/server/planner.js';
import { PAGE_MAX_BYTES } from '../../src/server/jobs.js';

/**
 * Issue 18, findings 1, 3, 5 and the `__proto__` one: what one task receives is sized before a
 * request is accepted; reads of tasks and results are paged by the bytes they send and never
 * build a document the request did not pay for; a job names only jobs of its own project; a
 * `__proto__` key is refused, named. The server runs in this process with a fake Docker whose
 * containers wait until the test ends (one worker, held by a first job), so the other jobs'
 * tasks stay queued and the test writes their outcomes into the server's database itself.
 */

let dataDir: string;
let api: TimedApi;
let closeServer: () => Promise<void>;
let db: Database.Database;

beforeAll(async () => {
  ({ dataDir, api, close: closeServer } = await startHeldServer({ prefix: 'cycle-task-data-', workers: 1, projects: ['p', 'q'] }));
  db = new Database(path.join(dataDir, 'cycle.db'));
  db.pragma('busy_timeout = 5000');
});

afterAll(async () => {
  db?.close();
  await closeServer();
});

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const keys = (n: number) => Object.fromEntries(range(n).map((i) => [`k${i}`, 0]));

/** Marks a job's tasks finished with `result(index)`, as the scheduler would have. */
function finishTasks(jobId: string, result: (index: number) => unknown): void {
  const update = db.prepare("UPDATE tasks SET status = 'succeeded', result = ?, started_at = ?, finished_at = ? WHERE job_id = ? AND idx = ?");
  const tasks = db.prepare('SELECT idx FROM tasks WHERE job_id = ?').all(jobId) as Array<{ idx: number }>;
  const at = new Date().toISOString();
  db.transaction(() => {
    for (const { idx } of tasks) update.run(JSON.stringify(result(idx)), at, at, jobId, idx);
  })();
}

describe('finding 1: what one task receives is sized before the request is accepted', () => {
  const refused: Array<[string, string, unknown, string]> = [
    [
      "the issue's request: a 50,000-key payload under each of 100,000 items in one batch",
      '/api/v1/jobs',
      { project: 'p', payload: { ...keys(50_000), n: range(100_000).map(() => 0) }, fan_out: { by: 'n' }, batch_size: 100_000 },
      'batch_size',
    ],
    [
      'fan_out.chunks in batches of 2,000 under a 20 KB payload',
      '/api/v1/jobs',
      { project: 'p', payload: keys(2_000), fan_out: { chunks: 2_000, range_field: 'r', total: 2_000 }, batch_size: 2_000 },
      'batch_size',
    ],
    [
      'a sweep in batches of 1,000 points under a 20 KB payload',
      '/api/v1/jobs',
      { project: 'p', type: 'sweep', payload: { ...keys(2_000), grid: { a: range(100), b: range(10) } }, batch_size: 1_000 },
      'batch_size',
    ],
    [
      'map_reduce maps in batches (batch_per_task) of 5,000 chunks under a 20 KB payload',
      '/api/v1/jobs',
      {
        project: 'p',
        type: 'map_reduce',
        reduce_command: ['r'],
        payload: keys(2_000),
        fan_out: { chunks: 5_000, range_field: 'r', total: 5_000 },
        batch_per_task: 5_000,
      },
      'batch_per_task',
    ],
  ];

  it.each(refused)('%s: 422 naming the field and the limit, fast, nothing stored', async (_name, route, body, field) => {
    const jobsBefore = (await api('GET', '/api/v1/jobs?limit=1000')).body.jobs.length;
    const rssBefore = process.memoryUsage().rss;
    const answer = await api('POST', route, { body });
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(422);
    expect(answer.body.error).toMatchObject({ code: 'task_payload_too_large', field });
    expect(answer.body.error.message).toContain(`at most ${MAX_TASK_PAYLOAD_BYTES / (1024 * 1024)}.0 MiB per task`);
    expect(answer.body.limit_bytes).toBe(MAX_TASK_PAYLOAD_BYTES);
    expect(answer.ms).toBeLessThan(10_000);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(300 * 1024 * 1024);
    expect((await api('GET', '/api/v1/jobs?limit=1000')).body.jobs.length).toBe(jobsBefore);
  });

  it('in a batch request, the entry over the limit is refused by itself, naming its field', async () => {
    const answer = await api('POST', '/api/v1/jobs/batch', {
      body: { jobs: [{ project: 'p', payload: { ...keys(2_000), n: range(2_000) }, fan_out: { by: 'n' }, batch_size: 2_000 }, { project: 'p' }] },
    });
    expect(answer.status).toBe(200);
    expect(answer.body.jobs[0]).toMatchObject({ ok: false, error: { code: 'task_payload_too_large', field: 'batch_size' } });
    expect(answer.body.jobs[1]).toMatchObject({ ok: true });
  });

  it('a batched job whose tasks receive less than the limit is accepted (the bound is not a blanket refusal)', async () => {
    const answer = await api('POST', '/api/v1/jobs', {
      body: { project: 'p', payload: { ...keys(500), n: range(1_000) }, fan_out: { by: 'n' }, batch_size: 1_000 },
    });
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(201);
  });

  it('reading the tasks of a job stored with a huge base (before the cap) never composes it: bounded pages, payload_composed false', async () => {
    const job = (await api('POST', '/api/v1/jobs', { body: { project: 'p', payload: { n: range(200) }, fan_out: { by: 'n' }, batch_size: 200 } })).body;
    // As a server without the cap would have stored it: a 20,000-key base under 200 items (48 MB composed).
    db.prepare('UPDATE jobs SET task_base = ? WHERE id = ?').run(JSON.stringify({ item: { ...keys(20_000), n: null }, directives: {} }), job.id);
    const rssBefore = process.memoryUsage().rss;
    const tasks = await api('GET', `/api/v1/jobs/${job.id}/tasks`);
    expect(tasks.status).toBe(200);
    expect(tasks.bytes).toBeLessThan(PAGE_MAX_BYTES);
    const [task] = tasks.body.tasks;
    expect(task).toMatchObject({ index: 0, items: 200, payload_composed: false });
    expect(task.payload._batch).toMatchObject({ index: 0, count: 1, size: 200, first_item: 0 });
    expect(task.payload._batch.items).toEqual(range(200).map((n) => ({ n })));
    const results = await api('GET', `/api/v1/results/${job.id}`);
    expect(results.status).toBe(200);
    expect(results.bytes).toBeLessThan(PAGE_MAX_BYTES);
    expect(results.body.items).toHaveLength(200);
    expect(results.body.items[7]).toMatchObject({ index: 7, payload: { n: 7 }, payload_composed: false });
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(300 * 1024 * 1024);
  });
});

describe('finding 3: results of a batched job with multi-MiB results', () => {
  const RESULT_CHARS = 2 * 1024 * 1024;
  const TASKS = 10;
  const PER_TASK = 4;

  /** Reads every page of a route, checking each; the entries of `key` in order. */
  async function readAll(route: string, key: string): Promise<{ entries: any[]; pages: number; maxPageBytes: number }> {
    const entries: any[] = [];
    let cursor: string | null = null;
    let pages = 0;
    let maxPageBytes = 0;
    do {
      const page: { status: number; body: any; bytes: number } = await api('GET', `${route}${cursor ? `?cursor=${cursor}` : ''}`);
      expect(page.status, String(page.body).slice(0, 200)).toBe(200);
      entries.push(...page.body[key]);
      maxPageBytes = Math.max(maxPageBytes, page.bytes);
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 100);
    return { entries, pages, maxPageBytes };
  }

  it('a result that is not per item is sent once per task, never copied into each item; pages by bytes sent; /health answers meanwhile', async () => {
    const job = (
      await api('POST', '/api/v1/jobs', { body: { project: 'p', payload: { n: range(TASKS * PER_TASK) }, fan_out: { by: 'n' }, batch_size: PER_TASK } })
    ).body;
    finishTasks(job.id, (idx) => ({ task: idx, blob: 'r'.repeat(RESULT_CHARS) }));
    const rssBefore = process.memoryUsage().rss;
    let reading = true;
    const healthMs: number[] = [];
    const probing = (async () => {
      while (reading) healthMs.push((await api('GET', '/health')).ms);
    })();
    const read = await readAll(`/api/v1/results/${job.id}`, 'items').finally(() => (reading = false));
    await probing;
    expect(read.entries.map((item) => item.index)).toEqual(range(TASKS * PER_TASK));
    for (const item of read.entries) {
      expect(item.result).toBeNull();
      expect(item.payload).toEqual({ n: item.index });
    }
    // One task's result is 2 MiB: a page holds what fits its budget, and one task at least.
    expect(read.maxPageBytes).toBeLessThan(PAGE_MAX_BYTES + RESULT_CHARS + 64 * 1024);
    expect(read.pages).toBeGreaterThanOrEqual(TASKS / 2);
    expect(healthMs.length).toBeGreaterThan(0);
    expect(Math.max(...healthMs)).toBeLessThan(2_000);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(400 * 1024 * 1024);
    // Each task's whole result, once, in its task entry.
    const tasks = await readAll(`/api/v1/results/${job.id}`, 'tasks');
    expect(tasks.entries.map((t) => [t.index, t.result.task, t.result.blob.length])).toEqual(range(TASKS).map((i) => [i, i, RESULT_CHARS]));
  });

  it('a per-item result gives each item its own entry only; /tasks pages by bytes too', async () => {
    const job = (
      await api('POST', '/api/v1/jobs', { body: { project: 'p', payload: { n: range(TASKS * PER_TASK) }, fan_out: { by: 'n' }, batch_size: PER_TASK } })
    ).body;
    const entry = 'e'.repeat(RESULT_CHARS / PER_TASK);
    finishTasks(job.id, (idx) => range(PER_TASK).map((i) => ({ item: idx * PER_TASK + i, entry })));
    const read = await readAll(`/api/v1/results/${job.id}`, 'items');
    expect(read.entries.map((item) => [item.index, item.result.item, item.result.entry.length])).toEqual(
      range(TASKS * PER_TASK).map((i) => [i, i, entry.length]),
    );
    expect(read.maxPageBytes).toBeLessThan(PAGE_MAX_BYTES + 2 * RESULT_CHARS + 64 * 1024);
    const tasks = await readAll(`/api/v1/jobs/${job.id}/tasks`, 'tasks');
    expect(tasks.entries.map((t) => t.index)).toEqual(range(TASKS));
    expect(tasks.maxPageBytes).toBeLessThan(PAGE_MAX_BYTES + RESULT_CHARS + 64 * 1024);
    expect(tasks.pages).toBeGreaterThanOrEqual(TASKS / 2);
  });
});

describe('finding 3: the results aggregate', () => {
  it("a sweep's aggregate leaves out results over the page budget together (they are in the pages)", async () => {
    const job = (await api('POST', '/api/v1/jobs', { body: { project: 'p', type: 'sweep', payload: { grid: { a: range(4) } } } })).body;
    finishTasks(job.id, (idx) => ({ point: idx, blob: 's'.repeat(2 * 1024 * 1024) }));
    let cursor: string | null = null;
    let last: any;
    for (let pages = 0; pages === 0 || cursor !== null; pages++) {
      expect(pages).toBeLessThan(10);
      const page: { status: number; body: any; bytes: number } = await api('GET', `/api/v1/results/${job.id}${cursor ? `?cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.bytes).toBeLessThan(PAGE_MAX_BYTES + 3 * 1024 * 1024);
      cursor = page.body.next_cursor;
      last = page.body;
    }
    expect(last.aggregate).toMatchObject({ results_omitted: true });
    expect(last.aggregate.points).toEqual(range(4).map((a) => ({ params: { a }, status: 'succeeded', result: null })));
  });
});

describe('finding 5: a job names only jobs of its own project', () => {
  let other: string;

  beforeAll(async () => {
    other = (await api('POST', '/api/v1/jobs', { body: { project: 'q' } })).body.id;
    expect(other).toMatch(/^job_/);
  });

  it.each([
    ['depends_on', { depends_on: ['OTHER'] }],
    ['_artifacts.download', { depends_on: ['OTHER'], payload: { _artifacts: { download: { model: { job_id: 'OTHER', artifact: 'model.bin' } } } } }],
    ['_shared.resolve', { depends_on: ['OTHER'], payload: { _shared: { resolve: { best: { job: 'OTHER', path: 'items.0.result' } } } } }],
  ])("%s naming another project's job: 422, answered as no such job in this project", async (_name, fields) => {
    const body = JSON.parse(JSON.stringify({ project: 'p', ...fields }).replaceAll('OTHER', other));
    const answer = await api('POST', '/api/v1/jobs', { body });
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(422);
    expect(answer.body.error.field).toBe('depends_on');
    expect(answer.body.error.message).toBe(`depends_on: no job "${other}" in project "p"`);
  });

  it("the same job is a dependency for its own project's jobs", async () => {
    const answer = await api('POST', '/api/v1/jobs', {
      body: { project: 'q', depends_on: [other], payload: { _shared: { resolve: { best: { job: other, path: 'items.0.result' } } } } },
    });
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(201);
  });
});

describe('a "__proto__" key is refused, named (never silently dropped)', () => {
  it.each([
    ['payload', '{"project":"p","payload":{"a":1,"__proto__":{"b":2}}}', 'payload.__proto__'],
    ['a fan-out item', '{"project":"p","fan_out":{"items":[{"x":1},{"y":{"__proto__":3}}]}}', 'fan_out.items.1.y.__proto__'],
    ['the body', '{"__proto__":{"project":"p"}}', '__proto__'],
    // Written with \u escapes (the body's text then has no "__proto__"): still found.
    ['an escaped key', '{"project":"p","payload":{"\\u005f_proto__":{"b":2}}}', 'payload.__proto__'],
    ['a key escaped in its middle', '{"project":"p","payload":{"a":{"__pr\\u006fto__":1}}}', 'payload.a.__proto__'],
  ])('in %s: 422 naming the field', async (_name, text, field) => {
    const answer = await api('POST', '/api/v1/jobs', { text });
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(422);
    expect(answer.body.error.field).toBe(field);
    expect(answer.body.error.message).toMatch(/"__proto__" is not accepted/);
  });
});
