import { createHash } from 'node:crypto';
import { pacer, yieldToIo } from '../util/pace.js';
import { type Artifact, type Job, type JobRequest, jobRequestSchema, type Task, type TaskStatus } from '../api/schemas.js';
import type { Clock } from '../context.js';
import { type DB, parseJson, timestamp } from './db.js';
import { invalid, notFound, zodError } from './errors.js';
import { checkDirectives, checkRequestTotals } from './jobs/checks.js';
import { JobDocuments } from './jobs/documents.js';
import { type JobLog, jobLog } from './jobs/job-log.js';
import { type ProgressPage, progressPage, type ProgressTasks } from './jobs/progress.js';
import type { PageRequest } from './jobs/paging.js';
import { type ArtifactRow, type JobRow, requestOf, type TaskRow, taskBaseOf } from './jobs/rows.js';
import type { JobKind } from './kinds/kind.js';
import { type JobKinds, kindOf } from './kinds/registry.js';
import type { Layout } from './layout.js';
import {
  composedPayloadBytes,
  composePayload,
  MAX_TASK_PAYLOAD_BYTES,
  mib,
  planJob,
  taskBaseSizes,
  type JobPlan,
  type PlannedTask,
  type TaskBase,
  type TaskPart,
} from './planner.js';
import type { ProjectService } from './projects.js';
import type { JobStates } from './state.js';

/**
 * Jobs: the service (this file: submission, the rows the queue reads, idempotency) and its parts
 * in jobs/: rows.ts (the table rows), checks.ts (the checks every kind shares), documents.ts (the
 * read documents), paging.ts (page sizes and the query parameters that ask for a page). What
 * differs per job kind is in kinds/.
 */
export { isTerminal, type ArtifactRow, type JobRow, type TaskRow } from './jobs/rows.js';
export {
  OUTPUT_DEFAULT_TAIL,
  OUTPUT_MAX_TAIL,
  PAGE_DEFAULT_LIMIT,
  PAGE_MAX_BYTES,
  PAGE_MAX_LIMIT,
  type PageRequest,
  SHOWN_PAYLOAD_MAX_BYTES,
} from './jobs/paging.js';
export { artifactDocument } from './jobs/documents.js';

export interface PreparedJob {
  request: JobRequest;
  plan: JobPlan;
  revision: number;
}

/** Every column of `jobs` but its two texts that never change once inserted (`JobService.openJobs`). */
const JOB_COLUMNS_BUT_TEXTS =
  'id, seq, project, revision, type, status, error, created_at, started_at, finished_at, callback_state, cancel_requested, inserting';

/** Jobs whose parsed request `JobService.request` keeps (forgotten all at once past it). */
const MAX_PARSED_REQUESTS = 1000;
/** Tasks written per transaction when a job is inserted; the event loop runs between chunks. */
const INSERT_CHUNK = 500;

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
  /** The job kinds this server runs: kinds/registry.ts's unless set (a test adds a kind of its own). */
  kinds?: JobKinds;
}

/** Jobs: submission (validated, planned, committed in one transaction), reads, results, cancel. */
export class JobService {
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private readonly parsedRequests = new Map<string, JobRequest>();
  /** `openJobs`: the open jobs' `request` and `task_base` texts, read once per job (never changed once inserted). */
  private readonly openJobTexts = new Map<string, { request: string; task_base: string | null }>();

  private readonly documents: JobDocuments;

  constructor(private readonly options: JobServiceOptions) {
    this.documents = new JobDocuments(options);
  }

  /** Validates and plans a job (counted and sized, no task made yet); a bad one throws a DomainError naming the field. */
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
        throw invalid('invalid_job', `depends_on: no job "${dependency}" in project "${request.project}"`, 'depends_on');
    }
    checkDirectives(request.payload, request.depends_on, 'payload');
    if ((request.requirements?.gpu ?? 0) > 0 || request.profile === 'gpu') {
      if (!(await this.options.hasGpu()))
        throw invalid(
          'no_gpu',
          'this server has no GPU (nvidia-smi found no driver): drop profile "gpu" and requirements.gpu',
          request.profile === 'gpu' ? 'profile' : 'requirements.gpu',
        );
    }
    // A turn of the event loop that lets other requests in between the body's parse and check
    // and the plan: together they were one ~50 ms piece of a 100,000-task submit (issue 22: no
    // /health answer over 50 ms).
    await yieldToIo();
    // Paced from before the plan: a plan that took a slice's time (sizing 100,000 items) is
    // followed by a turn of the loop at once, not by another slice of checks.
    const pace = pacer();
    const plan = planJob(request, this.options.kinds);
    // A fan-out item can bring directives of its own (fan_out.items, fan_out.by "_artifacts"):
    // check each task's own part (small), not its composed payload (the base is checked above).
    // Paced: a 100,000-task fan-out's check took ~50 ms of CPU in one piece, a /health stall.
    // The clock is read every 256 tasks only (a batch of 200 such jobs checks 20 million).
    let index = 0;
    for (const task of plan.tasks()) {
      const wait = (index & 255) === 0 ? pace() : undefined;
      if (wait) await wait;
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
          await yieldToIo();
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
    /** The request's fingerprint (`fingerprint()`), made only when there is a key (a 100,000-item body takes ms to hash). */
    requestFingerprint: () => string,
    act: () => Promise<{ status: number; body: T }>,
  ): Promise<{ status: number; body: unknown; replayed: boolean }> {
    if (!key) return act().then((r) => ({ ...r, replayed: false }));
    const fingerprint = requestFingerprint();
    const pending = this.inFlight.get(key);
    if (pending) {
      await pending.catch(() => undefined);
      return this.idempotent(key, () => fingerprint, act);
    }
    const { db } = this.options;
    const existing = db.prepare('SELECT fingerprint, status, body FROM idempotency WHERE key = ?').get(key) as
      | { fingerprint: string; status: number; body: string }
      | undefined;
    if (existing) {
      if (existing.fingerprint !== fingerprint)
        throw invalid('idempotency_key_reused', 'this Idempotency-Key was used for a different request', 'Idempotency-Key');
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

  /** A job kind's module (kinds/), by the `type` a request or a stored job names. */
  kindOf(type: string): JobKind {
    return kindOf(type, this.options.kinds);
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
    if (!row) throw notFound(`no job "${id}"`, 'id');
    return row;
  }

  /**
   * The queued and running jobs, in job order: what the work queue picks from at every lease
   * request. Their `request` and `task_base` texts are read once per job and kept while it is
   * open (they never change once inserted): read with every pick, a 4,000-item fan-out's request
   * text was ~70 µs of each of a busy pool's lease requests. The other columns are read each time.
   */
  openJobs(): JobRow[] {
    const rows = this.options.db.prepare(`SELECT ${JOB_COLUMNS_BUT_TEXTS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq`).all() as Array<
      Omit<JobRow, 'request' | 'task_base'>
    >;
    const open = rows.map((row): JobRow => {
      let texts = this.openJobTexts.get(row.id);
      if (!texts) {
        texts = this.options.db.prepare('SELECT request, task_base FROM jobs WHERE id = ?').get(row.id) as { request: string; task_base: string | null };
        this.openJobTexts.set(row.id, texts);
      }
      return { ...row, ...texts };
    });
    // Kept for open jobs only: a finished job's texts go at the next pick.
    if (this.openJobTexts.size > open.length) {
      const ids = new Set(open.map((row) => row.id));
      for (const id of this.openJobTexts.keys()) if (!ids.has(id)) this.openJobTexts.delete(id);
    }
    return open;
  }

  /**
   * The job's request, parsed once per job (kept for `MAX_PARSED_REQUESTS` jobs): the work queue
   * reads it for every job at every lease request, and parsing it each time was ~3% of a busy
   * pool's server. A stored request never changes (no statement updates `jobs.request`, and a
   * job id is never used again). Callers read it, never change it.
   */
  request(row: JobRow): JobRequest {
    const parsed = this.parsedRequests.get(row.id);
    if (parsed) return parsed;
    const request = requestOf(row);
    if (this.parsedRequests.size >= MAX_PARSED_REQUESTS) this.parsedRequests.clear();
    this.parsedRequests.set(row.id, request);
    return request;
  }

  /** What every task of the job shares (undefined for jobs stored before it was kept apart). */
  taskBase(job: JobRow): TaskBase | undefined {
    return taskBaseOf(job);
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

  /** What a reduce task gets: every map task's outcome. */
  mapResults(jobId: string): Array<{ index: number; status: string; result: unknown; error: string | null }> {
    const rows = this.options.db.prepare("SELECT idx, status, result, error FROM tasks WHERE job_id = ? AND kind = 'map' ORDER BY idx").all(jobId) as Array<
      Pick<TaskRow, 'idx' | 'status' | 'result' | 'error'>
    >;
    return rows.map((t) => ({ index: t.idx, status: t.status, result: parseJson(t.result, null), error: t.error }));
  }

  // The read documents (jobs/documents.ts), answered through the service as routes and the queue call them.
  tasksPage(job: JobRow, page: PageRequest, status?: TaskStatus): ReturnType<JobDocuments['tasksPage']> {
    return this.documents.tasksPage(job, page, status);
  }

  timingsPage(job: JobRow, page: PageRequest): ReturnType<JobDocuments['timingsPage']> {
    return this.documents.timingsPage(job, page);
  }

  counts(jobId: string): Job['counts'] {
    return this.documents.counts(jobId);
  }

  document(row: JobRow): Job {
    return this.documents.document(row);
  }

  list(filter: Parameters<JobDocuments['list']>[0]): ReturnType<JobDocuments['list']> {
    return this.documents.list(filter);
  }

  /** A page of tasks' progress series (jobs/progress.ts). */
  progress(job: JobRow, which: ProgressTasks, maxPoints: number): ProgressPage {
    return progressPage(this.options.db, job.id, which, maxPoints);
  }

  /** Every task's newest lines, interleaved as heard (jobs/job-log.ts). */
  log(job: JobRow, maxLines: number): JobLog {
    return jobLog(this.options.db, job.id, maxLines);
  }

  taskDocument(row: TaskRow, base: TaskBase | undefined): Task {
    return this.documents.taskDocument(row, base);
  }

  results(row: JobRow, page?: PageRequest): ReturnType<JobDocuments['results']> {
    return this.documents.results(row, page);
  }

  resultBytes(jobId: string, kind?: TaskRow['kind']): number {
    return this.documents.resultBytes(jobId, kind);
  }

  artifacts(filter: { jobId?: string; limit?: number }): Artifact[] {
    return this.documents.artifacts(filter);
  }

  artifact(id: string): ArtifactRow {
    return this.documents.artifact(id);
  }

  output(row: JobRow, tail: number, page: PageRequest): ReturnType<JobDocuments['output']> {
    return this.documents.output(row, tail, page);
  }
}

export function fingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path} ${JSON.stringify(body)}`)
    .digest('hex');
}
