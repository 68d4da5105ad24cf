import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
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
import type { Clock } from '../context.js';
import { type DB, timestamp, parseJson } from './db.js';
import { zodError } from './errors.js';
import { HttpError } from './http.js';
import type { Layout } from './layout.js';
import {
  composedPayloadBytes,
  composePayload,
  MAX_TASK_BYTES,
  MAX_TASK_PAYLOAD_BYTES,
  MAX_TASKS,
  mib,
  planJob,
  taskBaseSizes,
  type JobPlan,
  type PlannedTask,
  type TaskBase,
  type TaskPart,
} from './planner.js';
import { DIRECTIVE_NAME_PATTERN, DIRECTIVE_NAME_RULE } from '../project/names.js';
import { recipeOfProject, type ProjectService } from './projects.js';
import type { JobStates } from './state.js';

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
  /** JSON of planner.ts `TaskBase`; null for jobs stored before it (their tasks hold whole payloads). */
  task_base: string | null;
  inserting: number;
}

export interface TaskRow {
  id: string;
  job_id: string;
  idx: number;
  kind: 'task' | 'map' | 'reduce';
  status: TaskStatus;
  attempt: number;
  /** JSON of the task's part (planner.ts `TaskPart`), or its whole payload when its job has no `task_base`. */
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

export interface PreparedJob {
  request: JobRequest;
  plan: JobPlan;
  revision: number;
}

/** Tasks written per transaction when a job is inserted; the event loop runs between chunks. */
const INSERT_CHUNK = 500;

/** Paging of `/tasks`, `/results` and `/output` (docs/api.md): tasks per page by default, at most. */
export const PAGE_DEFAULT_LIMIT = 100;
export const PAGE_MAX_LIMIT = 1000;
/** A page stops before the task whose entries (as sent) would take it past this many bytes (one task at least). */
export const PAGE_MAX_BYTES = 4 * 1024 * 1024;
/**
 * A task's payload is shown composed (its job's base merged in) in `/tasks` and `/results` up to
 * this many bytes; a larger one shows only the task's own part, with `payload_composed: false`.
 */
export const SHOWN_PAYLOAD_MAX_BYTES = 1 << 20;
/** `/output`: the last bytes of each task's log, by default and at most. */
export const OUTPUT_DEFAULT_TAIL = 1 << 20;
export const OUTPUT_MAX_TAIL = 64 << 20;

/** Which tasks a page holds: from the task with index `cursor` on. */
export interface PageRequest {
  cursor: number;
  limit: number;
  maxBytes: number;
}

/** Every task at once: for the server's own reads (a dependency's results), never for HTTP. */
const WHOLE_JOB: PageRequest = { cursor: 0, limit: Number.MAX_SAFE_INTEGER, maxBytes: Number.POSITIVE_INFINITY };

/** How a task's payload is shown: composed when small enough, else only its own part. */
interface ShownPayload {
  payload: Record<string, unknown>;
  /** False when the job's base is left out (`payload_composed: false` in the document). */
  composed: boolean;
  /** The task's stored part (undefined for jobs stored before the base was kept apart). */
  part: TaskPart | undefined;
}

/** The bytes of `value` as JSON in UTF-8: what a page entry costs when sent. */
function sentBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null');
}

/** The tasks of a whole request (a batch's jobs together) against the caps, before any is made. */
function checkRequestTotals(prepared: PreparedJob[]): void {
  const count = prepared.reduce((n, p) => n + p.plan.count, 0);
  if (count > MAX_TASKS)
    throw new HttpError(
      422,
      'invalid_job',
      `the jobs would make ${count} tasks together; at most ${MAX_TASKS} per request: send them in several requests`,
      'jobs',
    );
  const bytes = prepared.reduce((n, p) => n + p.plan.bytes, 0);
  if (bytes > MAX_TASK_BYTES)
    throw new HttpError(
      422,
      'invalid_job',
      `the jobs' tasks would store about ${mib(bytes)} of payload together; at most ${mib(MAX_TASK_BYTES)} per request: send them in several requests`,
      'jobs',
    );
}

export interface JobServiceOptions {
  db: DB;
  /** Where stored timestamps come from (the system's clock unless set). */
  clock?: Clock;
  states: JobStates;
  projects: ProjectService;
  layout: Layout;
  /** Whether this server can give tasks a GPU. */
  hasGpu: () => Promise<boolean>;
  /** Called after new jobs are committed (the work queue wakes its workers). */
  onSubmitted: () => void;
}

/** Jobs: submission (validated, planned, committed in one transaction), reads, results, cancel. */
export class JobService {
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(private readonly options: JobServiceOptions) {}

  /** Validates and plans a job (counted and sized, no task made yet); throws HttpError (400/404/422) naming the field. */
  async prepare(body: unknown): Promise<PreparedJob> {
    const parsed = jobRequestSchema.safeParse(body);
    if (!parsed.success) throw zodError(parsed.error);
    return this.prepareRequest(parsed.data);
  }

  /** Plans a request already validated (a project job's, or the one a recipe job runs as). */
  async prepareRequest(request: JobRequest): Promise<PreparedJob> {
    const revision = this.options.projects.requireActive(request.project);
    // A job depends only on jobs of its own project: another project's job is answered as absent.
    for (const dependency of request.depends_on) {
      if (!this.projectJob(dependency, request.project))
        throw new HttpError(422, 'invalid_job', `depends_on: no job "${dependency}" in project "${request.project}"`, 'depends_on');
    }
    checkDirectives(request.payload, request.depends_on, 'payload');
    if ((request.requirements?.gpu ?? 0) > 0 || request.profile === 'gpu') {
      if (!(await this.options.hasGpu()))
        throw new HttpError(
          422,
          'no_gpu',
          'this server has no GPU (nvidia-smi found no driver): drop profile "gpu" and requirements.gpu',
          request.profile === 'gpu' ? 'profile' : 'requirements.gpu',
        );
    }
    const plan = planJob(request);
    // A fan-out item can bring directives of its own (fan_out.items, fan_out.by "_artifacts"):
    // check each task's own part (small), not its composed payload (the base is checked above).
    let index = 0;
    for (const task of plan.tasks()) {
      const parts = 'batch' in task.part ? task.part.items : [task.part.merge];
      for (const part of parts) checkDirectives(part, request.depends_on, `task ${index}: payload`);
      index++;
    }
    return { request, plan, revision: revision.number };
  }

  /**
   * Inserts prepared jobs, all or none: the jobs first (hidden, `inserting`), then their tasks a
   * few thousand per transaction with the event loop free between chunks (other requests are
   * answered meanwhile), then one transaction makes them all visible and schedulable. A failure
   * removes what was written; a crash leaves hidden rows that the next start removes. With an
   * idempotency key, a repeat gets the first answer (see `idempotent`).
   */
  async insert(prepared: PreparedJob[]): Promise<JobRow[]> {
    checkRequestTotals(prepared);
    const { states } = this.options;
    const ids = states.insertPlanning(prepared.map(({ request, plan, revision }) => ({ request, revision, base: plan.base })));
    try {
      for (const [n, { plan }] of prepared.entries()) {
        let chunk: PlannedTask[] = [];
        let written = 0;
        for (const task of plan.tasks()) {
          chunk.push(task);
          if (chunk.length < INSERT_CHUNK) continue;
          states.insertTasks(ids[n]!, written, chunk);
          written += chunk.length;
          chunk = [];
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        if (chunk.length) states.insertTasks(ids[n]!, written, chunk);
      }
      this.options.states.queueSubmitted(ids.map((id, n) => ({ id, project: prepared[n]!.request.project, tasks: prepared[n]!.plan.count })));
    } catch (error) {
      try {
        this.removeJobs(ids);
      } catch {
        // The database is gone (the server is closing): the next start removes the hidden rows.
      }
      throw error;
    }
    const rows = ids.map((id) => this.row(id)!);
    this.options.onSubmitted();
    return rows;
  }

  /** Jobs whose insertion did not finish (the server stopped during it): removed on start. */
  removeUnfinishedInserts(): number {
    const ids = (this.options.db.prepare('SELECT id FROM jobs WHERE inserting = 1').all() as Array<{ id: string }>).map((r) => r.id);
    this.removeJobs(ids);
    return ids.length;
  }

  private removeJobs(ids: string[]): void {
    this.options.states.removeInserting(ids);
  }

  /**
   * Answers a request once per idempotency key: a retried POST gets the first response. A
   * repeat that comes while the first is still being inserted waits for it.
   */
  async idempotent<T>(
    key: string | undefined,
    fingerprint: string,
    act: () => Promise<{ status: number; body: T }>,
  ): Promise<{ status: number; body: unknown; replayed: boolean }> {
    if (!key) return act().then((r) => ({ ...r, replayed: false }));
    const pending = this.inFlight.get(key);
    if (pending) {
      await pending.catch(() => undefined);
      return this.idempotent(key, fingerprint, act);
    }
    const { db } = this.options;
    const existing = db.prepare('SELECT fingerprint, status, body FROM idempotency WHERE key = ?').get(key) as
      | { fingerprint: string; status: number; body: string }
      | undefined;
    if (existing) {
      if (existing.fingerprint !== fingerprint)
        throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used for a different request', 'Idempotency-Key');
      return { status: existing.status, body: JSON.parse(existing.body), replayed: true };
    }
    const running = act();
    this.inFlight.set(key, running);
    try {
      const result = await running;
      if (result.status < 500)
        db.prepare('INSERT OR IGNORE INTO idempotency (key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?)').run(
          key,
          fingerprint,
          result.status,
          JSON.stringify(result.body),
          timestamp(this.options.clock),
        );
      return { ...result, replayed: false };
    } finally {
      this.inFlight.delete(key);
    }
  }

  /** A job, unless it does not exist or is still being inserted. */
  row(id: string): JobRow | undefined {
    return this.options.db.prepare('SELECT * FROM jobs WHERE id = ? AND inserting = 0').get(id) as JobRow | undefined;
  }

  /** A job of `project` (another project's job is not there for it: undefined, as a missing one). */
  projectJob(id: string, project: string): JobRow | undefined {
    const row = this.row(id);
    return row?.project === project ? row : undefined;
  }

  require(id: string): JobRow {
    const row = this.row(id);
    if (!row) throw new HttpError(404, 'not_found', `no job "${id}"`, 'id');
    return row;
  }

  request(row: JobRow): JobRequest {
    return JSON.parse(row.request) as JobRequest;
  }

  /** What every task of the job shares (undefined for jobs stored before it was kept apart). */
  taskBase(job: JobRow): TaskBase | undefined {
    return job.task_base === null ? undefined : (JSON.parse(job.task_base) as TaskBase);
  }

  /**
   * The payload a task's container receives: its job's base with its own part. Sized from the
   * parts before it is built: a task over MAX_TASK_PAYLOAD_BYTES (stored before the cap, or by
   * a server without it) gets an error to fail with instead, and nothing is built.
   */
  runPayload(job: JobRow, task: TaskRow): { payload: Record<string, unknown> } | { error: string } {
    const base = this.taskBase(job);
    const stored = JSON.parse(task.payload) as unknown;
    if (!base) return { payload: stored as Record<string, unknown> };
    const part = stored as TaskPart;
    const bytes = composedPayloadBytes(taskBaseSizes(base), { bytes: task.payload.length, items: task.items, batched: 'batch' in part });
    if (bytes > MAX_TASK_PAYLOAD_BYTES)
      return {
        error: `the task's payload would be about ${mib(bytes)} (the job's payload merged under each of its ${task.items} items); at most ${mib(MAX_TASK_PAYLOAD_BYTES)} per task: resubmit with a lower batch_size or a smaller payload`,
      };
    return { payload: composePayload(base, part) };
  }

  /**
   * A task's payload as `/tasks` and `/results` show it: composed when that is at most
   * SHOWN_PAYLOAD_MAX_BYTES (sized before it is built), else the task's own part over the
   * directives (a batched task's items hold only their own fields; the job document has the base).
   */
  private shownPayload(base: TaskBase | undefined, sizes: { item: number; directives: number } | undefined, task: TaskRow): ShownPayload {
    const stored = JSON.parse(task.payload) as unknown;
    if (!base || !sizes) return { payload: stored as Record<string, unknown>, composed: true, part: undefined };
    const part = stored as TaskPart;
    const batched = 'batch' in part;
    if (composedPayloadBytes(sizes, { bytes: task.payload.length, items: task.items, batched }) <= SHOWN_PAYLOAD_MAX_BYTES)
      return { payload: composePayload(base, part), composed: true, part };
    if (batched) return { payload: { ...base.directives, _batch: { ...part.batch, items: part.items } }, composed: false, part };
    return { payload: { ...base.directives, ...part.merge }, composed: false, part };
  }

  /** A task's own part of its payload (no base): what the aggregates read (a sweep's params, a benchmark's strategy). */
  private ownPayload(base: TaskBase | undefined, task: TaskRow): Record<string, unknown> {
    const stored = JSON.parse(task.payload) as unknown;
    if (!base) return stored as Record<string, unknown>;
    const part = stored as TaskPart;
    return 'batch' in part ? {} : part.merge;
  }

  /** Up to `limit` queued tasks of a job, in order (by an index: the other tasks are not read). */
  queuedTasks(jobId: string, limit: number): TaskRow[] {
    return this.options.db.prepare("SELECT * FROM tasks WHERE job_id = ? AND status = 'queued' ORDER BY idx LIMIT ?").all(jobId, limit) as TaskRow[];
  }

  /** Whether a job has map tasks still to run (its reduce task waits for them). */
  hasUnfinishedMaps(jobId: string): boolean {
    return (
      this.options.db.prepare("SELECT 1 FROM tasks WHERE job_id = ? AND kind = 'map' AND status IN ('queued', 'running') LIMIT 1").get(jobId) !== undefined
    );
  }

  /** The first failed task's error (what a job's error quotes). */
  firstError(jobId: string): string | null {
    const row = this.options.db.prepare("SELECT error FROM tasks WHERE job_id = ? AND status = 'failed' ORDER BY idx LIMIT 1").get(jobId) as
      | { error: string | null }
      | undefined;
    return row?.error ?? null;
  }

  /**
   * About how many bytes a job's task results and errors take (of one kind of task), summed by
   * the database: what a document that repeats them all would hold, known before it is built.
   */
  resultBytes(jobId: string, kind?: TaskRow['kind']): number {
    const row = this.options.db
      .prepare(
        `SELECT COALESCE(SUM(LENGTH(result)), 0) + COALESCE(SUM(LENGTH(error)), 0) + 64 * COUNT(*) AS bytes FROM tasks WHERE job_id = ? ${kind ? 'AND kind = ?' : ''}`,
      )
      .get(jobId, ...(kind ? [kind] : [])) as { bytes: number };
    return row.bytes;
  }

  /** What a reduce task gets: every map task's outcome. */
  mapResults(jobId: string): Array<{ index: number; status: string; result: unknown; error: string | null }> {
    const rows = this.options.db.prepare("SELECT idx, status, result, error FROM tasks WHERE job_id = ? AND kind = 'map' ORDER BY idx").all(jobId) as Array<
      Pick<TaskRow, 'idx' | 'status' | 'result' | 'error'>
    >;
    return rows.map((t) => ({ index: t.idx, status: t.status, result: parseJson(t.result, null), error: t.error }));
  }

  /**
   * One page of a job's tasks, from `page.cursor` (a task index) on: at most `page.limit`, and
   * no more once about `page.maxBytes` are taken (by `size`; one task at least). `next` is the
   * cursor of the next page, null after the last.
   */
  private taskPage(jobId: string, page: PageRequest, size: (task: TaskRow) => number, status?: TaskStatus): { tasks: TaskRow[]; next: string | null } {
    const rows = this.options.db
      .prepare(`SELECT * FROM tasks WHERE job_id = ? AND idx >= ? ${status ? 'AND status = ?' : ''} ORDER BY idx`)
      .iterate(jobId, page.cursor, ...(status ? [status] : [])) as IterableIterator<TaskRow>;
    const tasks: TaskRow[] = [];
    let bytes = 0;
    for (const row of rows) {
      const rowBytes = size(row);
      if (tasks.length === page.limit || (tasks.length > 0 && bytes + rowBytes > page.maxBytes)) {
        rows.return?.();
        return { tasks, next: String(row.idx) };
      }
      tasks.push(row);
      bytes += rowBytes;
    }
    return { tasks, next: null };
  }

  /**
   * One page of a job's entries, from `page.cursor` (a task index) on: each task's entry is built
   * and measured as it will be sent, and the page stops before the task that would take it past
   * `page.maxBytes` (one task at least) or `page.limit`. `next`: the next page's cursor, or null.
   */
  private entryPage<T>(jobId: string, page: PageRequest, build: (task: TaskRow) => T, status?: TaskStatus): { entries: T[]; next: string | null } {
    const rows = this.options.db
      .prepare(`SELECT * FROM tasks WHERE job_id = ? AND idx >= ? ${status ? 'AND status = ?' : ''} ORDER BY idx`)
      .iterate(jobId, page.cursor, ...(status ? [status] : [])) as IterableIterator<TaskRow>;
    const entries: T[] = [];
    const measured = Number.isFinite(page.maxBytes);
    let bytes = 0;
    for (const row of rows) {
      if (entries.length === page.limit) {
        rows.return?.();
        return { entries, next: String(row.idx) };
      }
      const entry = build(row);
      const entryBytes = measured ? sentBytes(entry) : 0;
      if (entries.length > 0 && bytes + entryBytes > page.maxBytes) {
        rows.return?.();
        return { entries, next: String(row.idx) };
      }
      entries.push(entry);
      bytes += entryBytes;
    }
    return { entries, next: null };
  }

  /** `GET /jobs/:id/tasks`: a page of task documents, sized by their bytes as sent. */
  tasksPage(job: JobRow, page: PageRequest, status?: TaskStatus): { job_id: string; tasks: Task[]; next_cursor: string | null } {
    const base = this.taskBase(job);
    const sizes = base && taskBaseSizes(base);
    const { entries, next } = this.entryPage(job.id, page, (t) => this.taskDocument(t, base, sizes), status);
    return { job_id: job.id, tasks: entries, next_cursor: next };
  }

  counts(jobId: string): Job['counts'] {
    return this.options.states.counts(jobId);
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
      recommended_action: recommendedAction(row),
      recipe: recipeOfProject(row.project),
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
    where.push('inserting = 0');
    const rows = this.options.db.prepare(`SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`).all(...args, filter.limit) as JobRow[];
    return rows.map((row) => this.document(row));
  }

  taskDocument(row: TaskRow, base: TaskBase | undefined, sizes = base && taskBaseSizes(base)): Task {
    const shown = this.shownPayload(base, sizes, row);
    const duration = row.started_at && row.finished_at ? (Date.parse(row.finished_at) - Date.parse(row.started_at)) / 1000 : null;
    return {
      id: row.id,
      job_id: row.job_id,
      index: row.idx,
      kind: row.kind,
      status: row.status,
      attempt: row.attempt,
      payload: shown.payload,
      ...(shown.composed ? {} : { payload_composed: false }),
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
      output: lastBytes(row.output_tail, TASK_OUTPUT_BYTES),
    };
  }

  /**
   * Per-task and per-item results, completeness, a per-type aggregate and the artifact ids, for
   * one page of tasks (the whole job by default). The aggregate covers the whole job and comes
   * with the last page only (null on the others).
   */
  results(row: JobRow, page: PageRequest = WHOLE_JOB): Results & { next_cursor: string | null } {
    const base = this.taskBase(row);
    const sizes = base && taskBaseSizes(base);
    const artifactsOf = this.options.db.prepare('SELECT id FROM artifacts WHERE task_id = ? ORDER BY ord');
    const { entries, next } = this.entryPage(row.id, page, (task) => {
      const artifactIds = (artifactsOf.all(task.id) as Array<{ id: string }>).map((a) => a.id);
      return { items: task.kind === 'reduce' ? [] : this.resultItems(task, base, sizes), task: this.resultTask(task, artifactIds), artifactIds };
    });
    const items = entries.flatMap((e) => e.items);
    const tasks = entries.map((e) => e.task);
    const artifacts = entries.flatMap((e) => e.artifactIds);
    const counts = this.counts(row.id);
    const request = this.request(row);
    // The aggregate repeats the tasks' results: on a page, only while they fit its budget
    // together (summed by the database first); else it says `results_omitted` (they are in the pages).
    const aggregated =
      next === null
        ? aggregate(
            row.type,
            () => this.options.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').iterate(row.id) as IterableIterator<TaskRow>,
            (t) => this.ownPayload(base, t),
            !Number.isFinite(page.maxBytes) || this.resultBytes(row.id) <= page.maxBytes,
          )
        : null;
    const complete = isTerminal(row.status) && counts.total === counts.succeeded;
    return {
      job_id: row.id,
      type: row.type,
      status: row.status,
      complete,
      counts,
      items,
      tasks,
      aggregate: aggregated,
      artifact_ids: artifacts,
      next_cursor: next,
      summary: { status: row.status, total: counts.total, succeeded: counts.succeeded, failed: counts.failed, cancelled: counts.cancelled, error: row.error },
      aggregate_result: aggregated,
      // Other names the aggregate is known by, per job type (the docs' aliases): none on this server beyond the type's own.
      aggregate_aliases: aggregated === null ? {} : { [row.type]: aggregated },
      completeness: { complete, ratio: counts.total === 0 ? 0 : counts.succeeded / counts.total, succeeded: counts.succeeded, total: counts.total },
      // Results and logs are in the server's database and data folder from the moment a task ends.
      result_persisted: isTerminal(row.status),
      output_persisted: isTerminal(row.status),
      meta: request.meta,
      variant: request.variant ?? null,
    };
  }

  /**
   * A task's entries in `items`: one, or one per item of a batched task. A batched item's result
   * is its own entry of the task's result (an array with one per item, or {"results": [...]}),
   * else null: the whole result is in the task's entry, once, never copied into each item.
   */
  private resultItems(task: TaskRow, base: TaskBase | undefined, sizes: { item: number; directives: number } | undefined): Results['items'] {
    const shown = this.shownPayload(base, sizes, task);
    const result = parseJson<unknown>(task.result, null);
    const marker = shown.composed ? {} : { payload_composed: false };
    const batch = shown.payload._batch as { first_item?: unknown; items?: unknown } | undefined;
    if (!batch || typeof batch.first_item !== 'number' || !Array.isArray(batch.items))
      return [{ index: task.idx, task_id: task.id, status: task.status, payload: shown.payload, ...marker, result, error: task.error }];
    const first = batch.first_item;
    const perItem = Array.isArray(result)
      ? result
      : Array.isArray((result as { results?: unknown } | null)?.results)
        ? (result as { results: unknown[] }).results
        : undefined;
    const own = perItem && perItem.length === batch.items.length ? perItem : undefined;
    return batch.items.map((itemPayload, i) => ({
      index: first + i,
      task_id: task.id,
      status: task.status,
      payload: itemPayload,
      ...marker,
      result: own ? (own[i] ?? null) : null,
      error: task.error,
    }));
  }

  private resultTask(task: TaskRow, artifactIds: string[]): Results['tasks'][number] {
    return {
      id: task.id,
      index: task.idx,
      kind: task.kind,
      status: task.status,
      result: parseJson(task.result, null),
      error: task.error,
      artifact_ids: artifactIds,
      ...resultQuality(task),
    };
  }

  artifacts(filter: { jobId?: string; limit?: number }): Artifact[] {
    const rows = filter.jobId
      ? (this.options.db
          .prepare('SELECT a.* FROM artifacts a JOIN tasks t ON t.id = a.task_id WHERE a.job_id = ? ORDER BY t.idx, a.ord')
          .all(filter.jobId) as ArtifactRow[])
      : (this.options.db.prepare('SELECT * FROM artifacts ORDER BY created_at DESC LIMIT ?').all(filter.limit ?? 1000) as ArtifactRow[]);
    return rows.map(artifactDocument);
  }

  artifact(id: string): ArtifactRow {
    const row = this.options.db.prepare('SELECT * FROM artifacts WHERE id = ?').get(id) as ArtifactRow | undefined;
    if (!row) throw new HttpError(404, 'not_found', `no artifact "${id}"`, 'id');
    return row;
  }

  /** Aggregated output, a page of tasks at a time: each task's log (its last `tail` bytes). */
  async output(
    row: JobRow,
    tail: number,
    page: PageRequest,
  ): Promise<{
    job_id: string;
    tasks: Array<{ task_id: string; index: number; status: string; attempt: number; output: string; truncated: boolean }>;
    next_cursor: string | null;
  }> {
    const { tasks, next } = this.taskPage(row.id, page, () => 0);
    const out: Array<{ task_id: string; index: number; status: string; attempt: number; output: string; truncated: boolean }> = [];
    let bytes = 0;
    for (const task of tasks) {
      // The byte budget counts what is read: a page stops before the task that would pass it.
      if (out.length > 0 && bytes >= page.maxBytes) return { job_id: row.id, tasks: out, next_cursor: String(task.idx) };
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
      bytes += Buffer.byteLength(output);
      out.push({ task_id: task.id, index: task.idx, status: task.status, attempt: task.attempt, output, truncated });
    }
    return { job_id: row.id, tasks: out, next_cursor: next };
  }
}

/** Computalot's `task.output`: the last 10 KB of what the task printed. */
const TASK_OUTPUT_BYTES = 10 * 1024;

/** The last `max` bytes of `text`, cut on a character boundary. */
function lastBytes(text: string, max: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return text;
  // A cut inside a multi-byte character leaves U+FFFD at the start: dropped.
  return bytes
    .subarray(bytes.length - max)
    .toString('utf8')
    .replace(/^\uFFFD+/, '');
}

/**
 * `result_quality` (0.0-1.0) and `result_warnings` per task: 1 for a succeeded task whose result
 * is a JSON object, less with a warning saying why otherwise.
 */
function resultQuality(task: TaskRow): { result_quality: number; result_warnings: string[] } {
  if (task.status !== 'succeeded') return { result_quality: 0, result_warnings: task.status === 'failed' ? ['the task failed: no result'] : [] };
  const result = parseJson<unknown>(task.result, null);
  if (result === null) return { result_quality: 0.5, result_warnings: ['the task wrote a null result'] };
  if (typeof result !== 'object' || Array.isArray(result)) return { result_quality: 0.9, result_warnings: ['the result is not a JSON object'] };
  return { result_quality: 1, result_warnings: [] };
}

/** Computalot's `recommended_action` for a job that went wrong (null otherwise). */
function recommendedAction(row: JobRow): string | null {
  if (row.status === 'failed' || row.status === 'partial') {
    if (row.error?.includes('GPU')) return 'run it on a server with a GPU, or drop profile "gpu" and requirements.gpu, then resubmit';
    if (row.error?.startsWith('dependency')) return 'fix the dependency job named in error, then resubmit this job';
    return `read the failed tasks' output (GET /api/v1/jobs/${row.id}/output or cycle job logs ${row.id}), fix the cause, then resubmit`;
  }
  return null;
}

export function artifactDocument(row: ArtifactRow): Artifact {
  return {
    id: row.id,
    job_id: row.job_id,
    task_id: row.task_id,
    name: row.name,
    size: row.size,
    sha256: row.sha256,
    order: row.ord,
    created_at: row.created_at,
  };
}

/** Per-type summaries, over every task of a job (read one at a time): sweep → result per grid point; benchmark → per strategy; map_reduce → the reduce result. */
function aggregate(type: Job['type'], rows: () => Iterable<TaskRow>, payloadOf: (task: TaskRow) => Record<string, unknown>, withResults: boolean): unknown {
  const omitted = withResults ? {} : { results_omitted: true };
  // Rows are read only for the types that aggregate (an open iterator keeps the connection busy).
  if (type === 'structured_runner') return null;
  const tasks = rows();
  switch (type) {
    case 'sweep': {
      const points: Array<{ params: unknown; status: TaskStatus; result: unknown }> = [];
      for (const t of tasks) points.push({ params: payloadOf(t).params ?? null, status: t.status, result: withResults ? parseJson(t.result, null) : null });
      return { points, ...omitted };
    }
    case 'map_reduce': {
      let reduce: { status: TaskStatus; result: unknown; error: string | null } | null = null;
      let maps = 0;
      for (const t of tasks) {
        if (t.kind === 'map') maps++;
        else if (t.kind === 'reduce') reduce = { status: t.status, result: parseJson(t.result, null), error: t.error };
      }
      return { reduce, maps };
    }
    case 'benchmark': {
      const strategies: Record<
        string,
        {
          runs: number;
          succeeded: number;
          mean_duration_s: number | null;
          results: unknown[];
          metrics: Record<string, { mean: number; min: number; max: number }>;
        }
      > = {};
      const durations = new Map<string, number[]>();
      const numbers = new Map<string, Map<string, number[]>>();
      for (const task of tasks) {
        const strategy = (payloadOf(task)._benchmark as { strategy?: string } | undefined)?.strategy ?? 'default';
        const entry = (strategies[strategy] ??= { runs: 0, succeeded: 0, mean_duration_s: null, results: [], metrics: {} });
        entry.runs++;
        if (task.status === 'succeeded') entry.succeeded++;
        const result = parseJson<unknown>(task.result, null);
        if (withResults) entry.results.push(result);
        if (task.started_at && task.finished_at) pushTo(durations, strategy, (Date.parse(task.finished_at) - Date.parse(task.started_at)) / 1000);
        if (result && typeof result === 'object' && !Array.isArray(result)) {
          const metrics = numbers.get(strategy) ?? new Map<string, number[]>();
          numbers.set(strategy, metrics);
          for (const [key, value] of Object.entries(result)) if (typeof value === 'number') pushTo(metrics, key, value);
        }
      }
      for (const [strategy, entry] of Object.entries(strategies)) {
        const times = durations.get(strategy) ?? [];
        entry.mean_duration_s = times.length ? times.reduce((a, b) => a + b, 0) / times.length : null;
        for (const [key, values] of numbers.get(strategy) ?? []) {
          entry.metrics[key] = {
            mean: values.reduce((a, b) => a + b, 0) / values.length,
            min: values.reduce((a, b) => Math.min(a, b)),
            max: values.reduce((a, b) => Math.max(a, b)),
          };
        }
      }
      return { strategies, ...omitted };
    }
    default:
      return null;
  }
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function checkDirectives(payload: Record<string, unknown>, dependsOn: string[], where: string): void {
  const artifacts = (payload._artifacts as { download?: unknown } | undefined)?.download;
  if (artifacts !== undefined) {
    if (artifacts === null || typeof artifacts !== 'object' || Array.isArray(artifacts))
      throw new HttpError(
        422,
        'invalid_job',
        `${where}._artifacts.download must be {"name": {"job_id": "...", "artifact": "..."}}`,
        `${where}._artifacts.download`,
      );
    for (const [name, spec] of Object.entries(artifacts as Record<string, unknown>)) {
      // The name becomes a folder, /computalot/artifacts/<name>/, inside the task's work folder.
      if (!DIRECTIVE_NAME_PATTERN.test(name))
        throw new HttpError(
          422,
          'invalid_job',
          `${where}._artifacts.download: invalid name ${JSON.stringify(name)}: expected ${DIRECTIVE_NAME_RULE}`,
          `${where}._artifacts.download`,
        );
      const s = spec as { job_id?: unknown; artifact?: unknown } | null;
      if (!s || typeof s.job_id !== 'string' || typeof s.artifact !== 'string')
        throw new HttpError(
          422,
          'invalid_job',
          `${where}._artifacts.download.${name} needs "job_id" and "artifact" strings`,
          `${where}._artifacts.download.${name}`,
        );
      if (!dependsOn.includes(s.job_id))
        throw new HttpError(422, 'invalid_job', `${where}._artifacts.download.${name}: job ${s.job_id} must be in depends_on`, 'depends_on');
    }
  }
  const resolve = (payload._shared as { resolve?: unknown } | undefined)?.resolve;
  if (resolve !== undefined) {
    if (resolve === null || typeof resolve !== 'object' || Array.isArray(resolve))
      throw new HttpError(
        422,
        'invalid_job',
        `${where}._shared.resolve must be {"name": {"kv": "key"} | {"job": "job_id", "path": "items.0.result"}}`,
        `${where}._shared.resolve`,
      );
    for (const [name, spec] of Object.entries(resolve as Record<string, unknown>)) {
      const s = spec as { kv?: unknown; job?: unknown } | null;
      if (!s || (typeof s.kv !== 'string' && typeof s.job !== 'string'))
        throw new HttpError(422, 'invalid_job', `${where}._shared.resolve.${name} needs "kv" or "job"`, `${where}._shared.resolve.${name}`);
      if (typeof s.job === 'string' && !dependsOn.includes(s.job))
        throw new HttpError(422, 'invalid_job', `${where}._shared.resolve.${name}: job ${s.job} must be in depends_on`, 'depends_on');
    }
  }
}

export function fingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path} ${JSON.stringify(body)}`)
    .digest('hex');
}
