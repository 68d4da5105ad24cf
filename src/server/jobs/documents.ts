import fs from 'node:fs/promises';
import type { Artifact, Job, Results, Task, TaskStatus } from '../../api/schemas.js';
import { TASK_STAGES, type TaskStages, type TaskTimings } from '../../api/timings.js';
import { type DB, parseJson } from '../db.js';
import { notFound } from '../errors.js';
import { type JobKinds, kindOf } from '../kinds/registry.js';
import { composedPayloadBytes, composePayload, taskBaseSizes, type TaskBase, type TaskPart } from '../kinds/shared.js';
import type { Layout } from '../layout.js';
import { recipeOfProject } from '../projects.js';
import type { JobStates } from '../state.js';
import { type PageRequest, SHOWN_PAYLOAD_MAX_BYTES, sentBytes, WHOLE_JOB } from './paging.js';
import { type ArtifactRow, isTerminal, type JobRow, requestOf, type TaskRow, taskBaseOf } from './rows.js';

/** How a task's payload is shown: composed when small enough, else only its own part. */
interface ShownPayload {
  payload: Record<string, unknown>;
  /** False when the job's base is left out (`payload_composed: false` in the document). */
  composed: boolean;
  /** The task's stored part (undefined for jobs stored before the base was kept apart). */
  part: TaskPart | undefined;
}

/**
 * The read documents of jobs: the job, its tasks and results a page at a time (each entry sized
 * as sent), its artifacts and output. The per-kind aggregate comes from the job's kind module.
 */
export class JobDocuments {
  constructor(private readonly options: { db: DB; states: JobStates; layout: Layout; kinds?: JobKinds }) {}

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
    const base = taskBaseOf(job);
    const sizes = base && taskBaseSizes(base);
    const { entries, next } = this.entryPage(job.id, page, (t) => this.taskDocument(t, base, sizes), status);
    return { job_id: job.id, tasks: entries, next_cursor: next };
  }

  /** `GET /jobs/:id/timings`: a page of the tasks' stage times (api/timings.ts). */
  timingsPage(job: JobRow, page: PageRequest): { job_id: string; tasks: TaskTimings[]; next_cursor: string | null } {
    const queued = Date.parse(job.created_at);
    const { entries, next } = this.entryPage(job.id, page, (task): TaskTimings => {
      const worker = parseJson<TaskStages>(task.stages, {});
      const stages: TaskStages = { queued };
      if (task.started_at) stages.leased = Date.parse(task.started_at);
      for (const stage of TASK_STAGES) if (typeof worker[stage] === 'number') stages[stage] = worker[stage];
      if (task.finished_at) stages.stored = Date.parse(task.finished_at);
      return { task_id: task.id, index: task.idx, attempt: task.attempt, status: task.status, stages };
    });
    return { job_id: job.id, tasks: entries, next_cursor: next };
  }

  counts(jobId: string): Job['counts'] {
    return this.options.states.counts(jobId);
  }

  /** The public job document: what was submitted and where it stands, no placement details. */
  document(row: JobRow): Job {
    const request = requestOf(row);
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

  /** Newest first; `before`: the `next_cursor` of the page before (a job's seq), for the next page. */
  list(filter: { tag?: string; status?: string; project?: string; limit: number; before?: number }): { jobs: Job[]; next_cursor: string | null } {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.before !== undefined) {
      where.push('seq < ?');
      args.push(filter.before);
    }
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
    const rows = this.options.db
      .prepare(`SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`)
      .all(...args, filter.limit + 1) as JobRow[];
    const more = rows.length > filter.limit;
    const shown = rows.slice(0, filter.limit);
    return { jobs: shown.map((row) => this.document(row)), next_cursor: more ? String(shown.at(-1)!.seq) : null };
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
    const base = taskBaseOf(row);
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
    const request = requestOf(row);
    // The aggregate repeats the tasks' results: on a page, only while they fit its budget
    // together (summed by the database first); else it says `results_omitted` (they are in the pages).
    const aggregated =
      next === null
        ? kindOf(row.type, this.options.kinds).aggregate({
            // Read only when the kind aggregates (an open iterator keeps the connection busy).
            tasks: () => this.options.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').iterate(row.id) as IterableIterator<TaskRow>,
            payloadOf: (t) => this.ownPayload(base, t),
            withResults: !Number.isFinite(page.maxBytes) || this.resultBytes(row.id) <= page.maxBytes,
          })
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
    if (!row) throw notFound(`no artifact "${id}"`, 'id');
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
      // Lines appended while its file was being opened are written first (task-logs.ts).
      await this.options.states.logs.flushed(task.id);
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
