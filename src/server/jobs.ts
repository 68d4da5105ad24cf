import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import * as z from 'zod';
import {
  jobRequestSchema,
  isTerminalJobStatus,
  type Artifact,
  type Job,
  type JobRequest,
  type JobStatus,
  type Results,
  type Task,
  type TaskStatus,
} from '../api/schemas.js';
import { type DB, now, parseJson } from './db.js';
import type { EventLog } from './events.js';
import { HttpError } from './http.js';
import { newId } from './ids.js';
import type { Layout } from './layout.js';
import { planJob } from './planner.js';
import { DIRECTIVE_NAME_PATTERN, DIRECTIVE_NAME_RULE } from '../project/names.js';
import type { ProjectService } from './projects.js';

export interface JobRow {
  id: string;
  seq: number;
  project: string;
  revision: number | null;
  type: Job['type'];
  status: JobStatus;
  request: string;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  callback_state: string | null;
  cancel_requested: number;
}

export interface TaskRow {
  id: string;
  job_id: string;
  idx: number;
  kind: 'task' | 'map' | 'reduce';
  status: TaskStatus;
  attempt: number;
  payload: string;
  items: number;
  command: string | null;
  result: string | null;
  error: string | null;
  exit_code: number | null;
  latest_progress: string | null;
  output_tail: string;
  last_failed: string | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface ArtifactRow {
  id: string;
  job_id: string;
  task_id: string;
  name: string;
  size: number;
  sha256: string;
  ord: number;
  path: string;
  created_at: string;
}

export const isTerminal = isTerminalJobStatus;

export interface JobServiceOptions {
  db: DB;
  events: EventLog;
  projects: ProjectService;
  layout: Layout;
  /** Whether this server can give tasks a GPU. */
  hasGpu: () => Promise<boolean>;
  /** Called after new jobs are committed (the scheduler wakes up). */
  onSubmitted: () => void;
}

/** Jobs: submission (validated, planned, committed in one transaction), reads, results, cancel. */
export class JobService {
  constructor(private readonly options: JobServiceOptions) {}

  /** Validates and plans a job; throws HttpError (400/404/422) naming the field. */
  async prepare(body: unknown): Promise<{ request: JobRequest; plan: ReturnType<typeof planJob>; revision: number }> {
    const parsed = jobRequestSchema.safeParse(body);
    if (!parsed.success) throw zodError(parsed.error);
    const request = parsed.data;
    const revision = this.options.projects.requireActive(request.project);
    for (const dependency of request.depends_on) {
      if (!this.row(dependency)) throw new HttpError(422, 'invalid_job', `depends_on: no job "${dependency}"`, 'depends_on');
    }
    checkDirectives(request.payload, request.depends_on, 'payload');
    if ((request.requirements?.gpu ?? 0) > 0 || request.profile === 'gpu') {
      if (!(await this.options.hasGpu())) throw new HttpError(422, 'no_gpu', 'this server has no GPU (nvidia-smi found no driver): drop profile "gpu" and requirements.gpu', request.profile === 'gpu' ? 'profile' : 'requirements.gpu');
    }
    const plan = planJob(request);
    // A fan-out item can bring directives of its own (fan_out.items, fan_out.by "_artifacts").
    plan.forEach((task, index) => checkDirectives(task.payload, request.depends_on, `task ${index}: payload`));
    return { request, plan, revision: revision.number };
  }

  /** Inserts prepared jobs in one transaction; with an idempotency key, a repeat gets the first answer. */
  insert(prepared: Array<{ request: JobRequest; plan: ReturnType<typeof planJob>; revision: number }>): JobRow[] {
    const { db } = this.options;
    const at = now();
    const rows = db.transaction(() => {
      const created: JobRow[] = [];
      for (const { request, plan, revision } of prepared) {
        const id = newId('job');
        const seq = ((db.prepare('SELECT MAX(seq) AS s FROM jobs').get() as { s: number | null }).s ?? 0) + 1;
        db.prepare('INSERT INTO jobs (id, seq, project, revision, type, status, request, created_at, callback_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
          id,
          seq,
          request.project,
          revision,
          request.type,
          'queued',
          JSON.stringify(request),
          at,
          request.callback_url ? 'pending' : null,
        );
        for (const tag of new Set(request.tags)) db.prepare('INSERT INTO job_tags (job_id, tag) VALUES (?, ?)').run(id, tag);
        const insertTask = db.prepare('INSERT INTO tasks (id, job_id, idx, kind, status, payload, items, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
        plan.forEach((task, index) => insertTask.run(newId('task'), id, index, task.kind, 'queued', JSON.stringify(task.payload), task.items, task.command ? JSON.stringify(task.command) : null));
        created.push(this.row(id)!);
      }
      return created;
    })();
    for (const row of rows) {
      this.options.events.append({ type: 'job', job_id: row.id, project: row.project, data: { status: 'planning' } });
      this.options.events.append({ type: 'job', job_id: row.id, project: row.project, data: { status: 'queued', tasks: this.counts(row.id).total } });
    }
    this.options.onSubmitted();
    return rows;
  }

  /** Answers a request once per idempotency key: a retried POST gets the first response. */
  idempotent<T>(key: string | undefined, fingerprint: string, act: () => Promise<{ status: number; body: T }>): Promise<{ status: number; body: unknown; replayed: boolean }> {
    if (!key) return act().then((r) => ({ ...r, replayed: false }));
    const { db } = this.options;
    const existing = db.prepare('SELECT fingerprint, status, body FROM idempotency WHERE key = ?').get(key) as { fingerprint: string; status: number; body: string } | undefined;
    if (existing) {
      if (existing.fingerprint !== fingerprint) throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used for a different request', 'Idempotency-Key');
      return Promise.resolve({ status: existing.status, body: JSON.parse(existing.body), replayed: true });
    }
    return act().then((result) => {
      if (result.status < 500) db.prepare('INSERT OR IGNORE INTO idempotency (key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?)').run(key, fingerprint, result.status, JSON.stringify(result.body), now());
      return { ...result, replayed: false };
    });
  }

  row(id: string): JobRow | undefined {
    return this.options.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
  }

  require(id: string): JobRow {
    const row = this.row(id);
    if (!row) throw new HttpError(404, 'not_found', `no job "${id}"`, 'id');
    return row;
  }

  request(row: JobRow): JobRequest {
    return JSON.parse(row.request) as JobRequest;
  }

  tasks(jobId: string): TaskRow[] {
    return this.options.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').all(jobId) as TaskRow[];
  }

  counts(jobId: string): Job['counts'] {
    const rows = this.options.db.prepare('SELECT status, COUNT(*) AS n FROM tasks WHERE job_id = ? GROUP BY status').all(jobId) as Array<{ status: TaskStatus; n: number }>;
    const counts = { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const row of rows) {
      counts[row.status] += row.n;
      counts.total += row.n;
    }
    return counts;
  }

  /** The public job document: what was submitted and where it stands, no placement details. */
  document(row: JobRow): Job {
    const request = this.request(row);
    return {
      id: row.id,
      type: row.type,
      project: row.project,
      revision: row.revision,
      status: row.status,
      payload: request.payload,
      runner_command: request.runner_command ?? null,
      fan_out: request.fan_out ?? null,
      batch_size: request.batch_size ?? request.batch_per_task ?? null,
      timeout_s: request.timeout_s ?? null,
      profile: request.profile ?? null,
      requirements: request.requirements ?? null,
      tags: request.tags,
      meta: request.meta,
      variant: request.variant ?? null,
      client_ref: request.client_ref ?? null,
      depends_on: request.depends_on,
      callback_url: request.callback_url ?? null,
      counts: this.counts(row.id),
      error: row.error,
      created_at: row.created_at,
      started_at: row.started_at,
      finished_at: row.finished_at,
      last_event_id: String((this.options.db.prepare('SELECT MAX(seq) AS seq FROM events WHERE job_id = ?').get(row.id) as { seq: number | null }).seq ?? 0),
    };
  }

  list(filter: { tag?: string; status?: string; project?: string; limit: number }): Job[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.tag) {
      where.push('id IN (SELECT job_id FROM job_tags WHERE tag = ?)');
      args.push(filter.tag);
    }
    if (filter.status) {
      where.push('status = ?');
      args.push(filter.status);
    }
    if (filter.project) {
      where.push('project = ?');
      args.push(filter.project);
    }
    const rows = this.options.db.prepare(`SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`).all(...args, filter.limit) as JobRow[];
    return rows.map((row) => this.document(row));
  }

  taskDocument(row: TaskRow): Task {
    const duration = row.started_at && row.finished_at ? (Date.parse(row.finished_at) - Date.parse(row.started_at)) / 1000 : null;
    return {
      id: row.id,
      job_id: row.job_id,
      index: row.idx,
      kind: row.kind,
      status: row.status,
      attempt: row.attempt,
      payload: JSON.parse(row.payload),
      items: row.items,
      result: parseJson(row.result, null),
      error: row.error,
      exit_code: row.exit_code,
      latest_progress: parseJson(row.latest_progress, null),
      live_feedback: { output_tail: row.output_tail },
      last_failed_attempt: parseJson(row.last_failed, null),
      artifact_ids: (this.options.db.prepare('SELECT id FROM artifacts WHERE task_id = ? ORDER BY ord').all(row.id) as Array<{ id: string }>).map((a) => a.id),
      started_at: row.started_at,
      finished_at: row.finished_at,
      duration_s: duration,
    };
  }

  /** Per-task and per-item results, completeness, a per-type aggregate and the artifact ids. */
  results(row: JobRow): Results {
    const tasks = this.tasks(row.id);
    const items: Results['items'] = [];
    for (const task of tasks.filter((t) => t.kind !== 'reduce')) {
      const payload = JSON.parse(task.payload) as Record<string, unknown>;
      const result = parseJson<unknown>(task.result, null);
      const batch = payload._batch as { first_item: number; items: unknown[] } | undefined;
      if (batch) {
        // A batched task's result: an array with one entry per item, or {"results": [...]}.
        const perItem = Array.isArray(result) ? result : Array.isArray((result as { results?: unknown })?.results) ? (result as { results: unknown[] }).results : undefined;
        batch.items.forEach((itemPayload, i) => {
          items.push({ index: batch.first_item + i, task_id: task.id, status: task.status, payload: itemPayload, result: perItem && perItem.length === batch.items.length ? (perItem[i] ?? null) : result, error: task.error });
        });
      } else items.push({ index: items.length, task_id: task.id, status: task.status, payload, result, error: task.error });
    }
    const artifacts = this.artifacts({ jobId: row.id });
    const counts = this.counts(row.id);
    return {
      job_id: row.id,
      type: row.type,
      status: row.status,
      complete: isTerminal(row.status) && counts.total === counts.succeeded,
      counts,
      items,
      tasks: tasks.map((t) => ({ id: t.id, index: t.idx, kind: t.kind, status: t.status, result: parseJson(t.result, null), error: t.error, artifact_ids: artifacts.filter((a) => a.task_id === t.id).map((a) => a.id) })),
      aggregate: aggregate(row.type, tasks),
      artifact_ids: artifacts.map((a) => a.id),
    };
  }

  artifacts(filter: { jobId?: string; limit?: number }): Artifact[] {
    const rows = filter.jobId
      ? (this.options.db.prepare('SELECT a.* FROM artifacts a JOIN tasks t ON t.id = a.task_id WHERE a.job_id = ? ORDER BY t.idx, a.ord').all(filter.jobId) as ArtifactRow[])
      : (this.options.db.prepare('SELECT * FROM artifacts ORDER BY created_at DESC LIMIT ?').all(filter.limit ?? 1000) as ArtifactRow[]);
    return rows.map(artifactDocument);
  }

  artifact(id: string): ArtifactRow {
    const row = this.options.db.prepare('SELECT * FROM artifacts WHERE id = ?').get(id) as ArtifactRow | undefined;
    if (!row) throw new HttpError(404, 'not_found', `no artifact "${id}"`, 'id');
    return row;
  }

  /** Aggregated output: each task's log (its last `tail` bytes). */
  async output(row: JobRow, tail: number): Promise<{ job_id: string; tasks: Array<{ task_id: string; index: number; status: string; attempt: number; output: string; truncated: boolean }> }> {
    const tasks = await Promise.all(
      this.tasks(row.id).map(async (task) => {
        const file = this.options.layout.taskLog(task.id);
        let output = '';
        let truncated = false;
        try {
          const handle = await fs.open(file, 'r');
          try {
            const { size } = await handle.stat();
            const start = Math.max(0, size - tail);
            truncated = start > 0;
            const buffer = Buffer.alloc(size - start);
            await handle.read(buffer, 0, buffer.length, start);
            output = buffer.toString('utf8');
          } finally {
            await handle.close();
          }
        } catch {
          output = task.output_tail;
        }
        return { task_id: task.id, index: task.idx, status: task.status, attempt: task.attempt, output, truncated };
      }),
    );
    return { job_id: row.id, tasks };
  }
}

export function artifactDocument(row: ArtifactRow): Artifact {
  return { id: row.id, job_id: row.job_id, task_id: row.task_id, name: row.name, size: row.size, sha256: row.sha256, order: row.ord, created_at: row.created_at };
}

/** Per-type summaries: sweep → result per grid point; benchmark → per strategy; map_reduce → the reduce result. */
function aggregate(type: Job['type'], tasks: TaskRow[]): unknown {
  switch (type) {
    case 'sweep':
      return {
        points: tasks.map((t) => ({ params: (JSON.parse(t.payload) as { params?: unknown }).params ?? null, status: t.status, result: parseJson(t.result, null) })),
      };
    case 'map_reduce': {
      const reduce = tasks.find((t) => t.kind === 'reduce');
      return { reduce: reduce ? { status: reduce.status, result: parseJson(reduce.result, null), error: reduce.error } : null, maps: tasks.filter((t) => t.kind === 'map').length };
    }
    case 'benchmark': {
      const strategies: Record<string, { runs: number; succeeded: number; mean_duration_s: number | null; results: unknown[]; metrics: Record<string, { mean: number; min: number; max: number }> }> = {};
      for (const task of tasks) {
        const strategy = (JSON.parse(task.payload) as { _benchmark?: { strategy: string } })._benchmark?.strategy ?? 'default';
        const entry = (strategies[strategy] ??= { runs: 0, succeeded: 0, mean_duration_s: null, results: [], metrics: {} });
        entry.runs++;
        if (task.status === 'succeeded') entry.succeeded++;
        entry.results.push(parseJson(task.result, null));
      }
      for (const [strategy, entry] of Object.entries(strategies)) {
        const durations = tasks
          .filter((t) => (JSON.parse(t.payload) as { _benchmark?: { strategy: string } })._benchmark?.strategy === strategy && t.started_at && t.finished_at)
          .map((t) => (Date.parse(t.finished_at!) - Date.parse(t.started_at!)) / 1000);
        entry.mean_duration_s = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : null;
        const numbers = new Map<string, number[]>();
        for (const result of entry.results) {
          if (result && typeof result === 'object' && !Array.isArray(result)) {
            for (const [key, value] of Object.entries(result)) if (typeof value === 'number') numbers.set(key, [...(numbers.get(key) ?? []), value]);
          }
        }
        for (const [key, values] of numbers) entry.metrics[key] = { mean: values.reduce((a, b) => a + b, 0) / values.length, min: Math.min(...values), max: Math.max(...values) };
      }
      return { strategies };
    }
    default:
      return null;
  }
}

function checkDirectives(payload: Record<string, unknown>, dependsOn: string[], where: string): void {
  const artifacts = (payload._artifacts as { download?: unknown } | undefined)?.download;
  if (artifacts !== undefined) {
    if (artifacts === null || typeof artifacts !== 'object' || Array.isArray(artifacts)) throw new HttpError(422, 'invalid_job', `${where}._artifacts.download must be {"name": {"job_id": "...", "artifact": "..."}}`, `${where}._artifacts.download`);
    for (const [name, spec] of Object.entries(artifacts as Record<string, unknown>)) {
      // The name becomes a folder, /computalot/artifacts/<name>/, inside the task's work folder.
      if (!DIRECTIVE_NAME_PATTERN.test(name)) throw new HttpError(422, 'invalid_job', `${where}._artifacts.download: invalid name ${JSON.stringify(name)}: expected ${DIRECTIVE_NAME_RULE}`, `${where}._artifacts.download`);
      const s = spec as { job_id?: unknown; artifact?: unknown } | null;
      if (!s || typeof s.job_id !== 'string' || typeof s.artifact !== 'string') throw new HttpError(422, 'invalid_job', `${where}._artifacts.download.${name} needs "job_id" and "artifact" strings`, `${where}._artifacts.download.${name}`);
      if (!dependsOn.includes(s.job_id)) throw new HttpError(422, 'invalid_job', `${where}._artifacts.download.${name}: job ${s.job_id} must be in depends_on`, 'depends_on');
    }
  }
  const resolve = (payload._shared as { resolve?: unknown } | undefined)?.resolve;
  if (resolve !== undefined) {
    if (resolve === null || typeof resolve !== 'object' || Array.isArray(resolve)) throw new HttpError(422, 'invalid_job', `${where}._shared.resolve must be {"name": {"kv": "key"} | {"job": "job_id", "path": "items.0.result"}}`, `${where}._shared.resolve`);
    for (const [name, spec] of Object.entries(resolve as Record<string, unknown>)) {
      const s = spec as { kv?: unknown; job?: unknown } | null;
      if (!s || (typeof s.kv !== 'string' && typeof s.job !== 'string')) throw new HttpError(422, 'invalid_job', `${where}._shared.resolve.${name} needs "kv" or "job"`, `${where}._shared.resolve.${name}`);
      if (typeof s.job === 'string' && !dependsOn.includes(s.job)) throw new HttpError(422, 'invalid_job', `${where}._shared.resolve.${name}: job ${s.job} must be in depends_on`, 'depends_on');
    }
  }
}

export function zodError(error: z.ZodError): HttpError {
  const issue = error.issues[0]!;
  const field = issue.path.join('.');
  const problems = error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
  return new HttpError(issue.code === 'unrecognized_keys' || issue.code === 'invalid_type' ? 400 : 422, 'invalid_request', problems, field || undefined);
}

export function fingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256').update(`${method} ${path} ${JSON.stringify(body)}`).digest('hex');
}
