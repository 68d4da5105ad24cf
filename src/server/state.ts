import { randomBytes } from 'node:crypto';
import { type Job, type JobRequest, type JobStatus, TASK_STATUSES, type TaskStatus } from '../api/schemas.js';
import { systemLine, type TaskEventData } from '../api/log-lines.js';
import { systemClock, type Clock } from '../context.js';
import type { Statement } from 'better-sqlite3';
import { type DB, timestamp } from './db.js';
import type { EventLog, RecordEvent } from './events.js';
import type { JobRow, TaskRow } from './jobs/rows.js';
import { newId } from './ids.js';
import type { Layout } from './layout.js';
import { TaskLogs } from './task-logs.js';
import type { PlannedTask, TaskBase } from './planner.js';
import type { CapturedArtifact } from '../runner/artifacts.js';
import type { WorkerStages } from './queue/lease.js';

export type FinishedJobStatus = 'completed' | 'partial' | 'failed' | 'cancelled';

export interface TaskOutcome {
  status: 'succeeded' | 'failed' | 'cancelled';
  result?: unknown;
  error?: string;
  exitCode?: number;
  artifactIds?: string[];
  /** Its worker's stages (`tasks.stages`, served by `GET /api/v1/jobs/:id/timings`). */
  stages?: WorkerStages;
}

/**
 * The allowed status changes: from-state → the states it may go to. Every status UPDATE names
 * the states it leaves from this table (`WHERE id = ? AND status IN (…)`), so a row that moved
 * on meanwhile is not overwritten.
 */
export const JOB_TRANSITIONS: { readonly [from in JobStatus]: readonly JobStatus[] } = {
  planning: ['queued'],
  // A queued job can end before it ran: cancelled, failed (a dependency failed), or no task left to run.
  queued: ['running', 'completed', 'partial', 'failed', 'cancelled'],
  running: ['completed', 'partial', 'failed', 'cancelled'],
  completed: [],
  partial: [],
  failed: [],
  cancelled: [],
};

export const TASK_TRANSITIONS: { readonly [from in TaskStatus]: readonly TaskStatus[] } = {
  // cancelled: a cancel, or its job failed before it ran.
  queued: ['running', 'cancelled'],
  // queued: a shutdown stopped it, or a restart found it interrupted (it runs again).
  running: ['succeeded', 'failed', 'cancelled', 'queued'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

/**
 * Races that are not errors: an update that finds its row in `found` (not a state it may leave)
 * when it wanted to move it to one of `wanted` changes nothing, by design. Any other update that
 * changes no row is an `InternalError`.
 */
export const JOB_SETTLED_RACES: ReadonlyArray<{ found: JobStatus; wanted: readonly JobStatus[]; why: string }> = [
  { found: 'cancelled', wanted: ['completed', 'partial', 'failed'], why: 'a cancel ended the job first: the cancel stands' },
];
export const TASK_SETTLED_RACES: ReadonlyArray<{ found: TaskStatus; wanted: readonly TaskStatus[]; why: string }> = [
  {
    found: 'cancelled',
    wanted: ['succeeded', 'failed', 'cancelled', 'queued'],
    why: 'a cancel settled the task while its container was stopping: the cancel stands',
  },
];

/** The states that may go to `to` (what an UPDATE to `to` may leave). */
export function statesLeadingTo<S extends string>(transitions: { readonly [from in S]: readonly S[] }, to: S): S[] {
  return (Object.keys(transitions) as S[]).filter((from) => transitions[from].includes(to));
}

/**
 * A state the server's own rules say cannot happen (a status update that changed no row, a
 * transition the table does not allow): a bug, not the client's fault. HTTP answers it 500 with a
 * reference, and the server's log has this message.
 */
export class InternalError extends Error {
  override readonly name = 'InternalError';
}

/** Logs an internal error in full with a short reference (what a 500 or a caller can quote); returns the reference. */
export function logInternalError(log: (line: string) => void, where: string, error: Error): string {
  const reference = randomBytes(4).toString('hex');
  log(`internal error ${reference} in ${where}: ${error.stack ?? error.message}`);
  return reference;
}

/** Retention (`cycle server-gc`): a finished job's artifact rows go (their files go with them). */
export function deleteJobArtifacts(db: DB, jobId: string): void {
  db.prepare('DELETE FROM artifacts WHERE job_id = ?').run(jobId);
}

/** How many jobs' task totals JobStates.counts keeps (a few bytes each; forgotten all at once past it). */
const KEPT_TOTALS = 10_000;

function largestStatus(counts: Record<TaskStatus, number>): TaskStatus {
  return TASK_STATUSES.reduce((best, status) => (counts[status] > counts[best] ? status : best), TASK_STATUSES[0]);
}

/** Counts a job's tasks by status. */
export function taskCounts(db: DB, jobId: string): Job['counts'] {
  const rows = db.prepare('SELECT status, COUNT(*) AS n FROM tasks WHERE job_id = ? GROUP BY status').all(jobId) as Array<{ status: TaskStatus; n: number }>;
  const counts = { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const row of rows) {
    counts[row.status] += row.n;
    counts.total += row.n;
  }
  return counts;
}

type Table = 'jobs' | 'tasks';

/** Tasks inserted by one statement (insertTasks). */
const INSERT_ROWS = 50;
const TASK_INSERT_COLUMNS = 'id, job_id, idx, kind, status, payload, items, command';
const TASK_INSERT_ROW = '(?, ?, ?, ?, ?, ?, ?, ?)';

/**
 * Every write to the `jobs`, `job_tags`, `tasks` and `artifacts` rows, in one place (their
 * insertion, status changes checked against `JOB_TRANSITIONS` / `TASK_TRANSITIONS`, a task's live
 * output and artifacts, a job's callback state). Each transition runs its UPDATEs and records its events in one transaction
 * (`EventLog.transaction`): a reader never sees a state without its event or the reverse, and
 * listeners (SSE streams, the work queue) hear of it only after the commit. A task's transitions
 * also write a system line (`[cycle] …`) into its log. Timestamps come from the injected clock.
 */
export class JobStates {
  private readonly finishedListeners = new Set<(job: JobRow) => void>();
  private insertTaskRows: Statement | undefined;
  private countByStatus: Statement | undefined;
  /**
   * counts(): each job's task total, and the status that held the most of them when last
   * counted; and, once counted, all its counts (`exact`), kept up to date by this class's own
   * moves of one task whose old status the move implies (queued → running, running → succeeded
   * …). Any other change to the job's tasks (a set update, a move to `cancelled`, which leaves
   * queued or running) drops `exact`, and a rolled-back transaction drops every job's.
   */
  private readonly totals = new Map<string, { total: number; largest: TaskStatus; exact?: Job['counts'] }>();
  /** Tasks written so far of each job being inserted (`insertTasks`): its total once `queueSubmitted`. */
  private readonly written = new Map<string, number>();
  private insertTaskRow: Statement | undefined;
  private readonly clock: Clock;

  /** The tasks' log files: open while their task runs, closed when an attempt ends (task-logs.ts). */
  readonly logs: TaskLogs;

  constructor(private readonly options: { db: DB; events: EventLog; layout: Layout; clock?: Clock; logs?: TaskLogs }) {
    this.clock = options.clock ?? systemClock;
    this.logs = options.logs ?? new TaskLogs(options.layout);
    // Counts kept up to date inside a transaction that then rolled back would count moves that never happened.
    options.events.onRollback(() => {
      for (const known of this.totals.values()) this.dropExact(known);
    });
  }

  /**
   * A job's task counts. Every task start and finish records them in its event, and a count of
   * a 100,000-task job by status reads 100,000 index entries (~30 ms): so after the first count,
   * a job's total is kept (tasks are added and removed only here, which forgets it) and its
   * counts are kept as this class moves its tasks (`totals`' `exact`): a busy pool's task start
   * or finish then reads no index at all (four count queries each were ~4% of its server). When
   * only the total is known, the status that held the most tasks last time is not counted but
   * derived from it; the others are read by an index range each, small for all but that one.
   */
  counts(jobId: string): Job['counts'] {
    const known = this.totals.get(jobId);
    if (known?.exact) return { ...known.exact };
    if (!known) {
      const counts = taskCounts(this.options.db, jobId);
      if (this.totals.size >= KEPT_TOTALS) this.totals.clear();
      this.totals.set(jobId, { total: counts.total, largest: largestStatus(counts), exact: { ...counts } });
      return counts;
    }
    this.countByStatus ??= this.options.db.prepare('SELECT COUNT(*) AS n FROM tasks WHERE job_id = ? AND status = ?');
    const counts = { total: known.total, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    let others = 0;
    for (const status of TASK_STATUSES) {
      if (status === known.largest) continue;
      counts[status] = (this.countByStatus.get(jobId, status) as { n: number }).n;
      others += counts[status];
    }
    counts[known.largest] = known.total - others;
    known.largest = largestStatus(counts);
    known.exact = { ...counts };
    return counts;
  }

  /** One task of the job moved to `to`: its kept counts follow when the move implies where it came from, else they are read again. */
  private taskMoved(jobId: string, to: TaskStatus): void {
    const known = this.totals.get(jobId);
    if (!known?.exact) return;
    const from = statesLeadingTo(TASK_TRANSITIONS, to);
    if (from.length === 1 && known.exact[from[0]!] > 0) {
      known.exact[from[0]!]--;
      known.exact[to]++;
    } else this.dropExact(known);
  }

  /** The job's counts are read again at the next `counts` (from its total and the largest status, as last known). */
  private dropExact(known: { total: number; largest: TaskStatus; exact?: Job['counts'] }): void {
    if (!known.exact) return;
    known.largest = largestStatus(known.exact);
    delete known.exact;
  }

  /** Tasks of the job were added or removed: its total is counted again. */
  private forgetTotal(jobId: string): void {
    this.totals.delete(jobId);
  }

  /** Heard after a job reached its final status and that committed (callbacks, billing). */
  onJobFinished(listener: (job: JobRow) => void): () => void {
    this.finishedListeners.add(listener);
    return () => this.finishedListeners.delete(listener);
  }

  /**
   * New jobs, hidden (`inserting`) and `planning` until `queueSubmitted`, all or none; returns
   * their ids. Their tasks come next, in chunks (`insertTasks`).
   */
  insertPlanning(jobs: Array<{ request: JobRequest; revision: number; base: TaskBase }>): string[] {
    const { db } = this.options;
    const at = timestamp(this.clock);
    return db.transaction(() =>
      jobs.map(({ request, revision, base }) => {
        const id = newId('job');
        const seq = ((db.prepare('SELECT MAX(seq) AS s FROM jobs').get() as { s: number | null }).s ?? 0) + 1;
        db.prepare(
          'INSERT INTO jobs (id, seq, project, revision, type, status, request, created_at, callback_state, task_base, inserting) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)',
        ).run(
          id,
          seq,
          request.project,
          revision,
          request.type,
          'planning',
          JSON.stringify(request),
          at,
          request.callback_url ? 'pending' : null,
          JSON.stringify(base),
        );
        for (const tag of new Set(request.tags)) db.prepare('INSERT INTO job_tags (job_id, tag) VALUES (?, ?)').run(id, tag);
        return id;
      }),
    )();
  }

  /** One chunk of a planning job's tasks, queued, numbered from `first`, in one transaction. */
  insertTasks(jobId: string, first: number, tasks: PlannedTask[]): void {
    const { db } = this.options;
    // Rows go in groups of INSERT_ROWS per statement: a 100,000-task fan-out spent more time
    // crossing into SQLite once per row than writing.
    const many = (this.insertTaskRows ??= db.prepare(
      `INSERT INTO tasks (${TASK_INSERT_COLUMNS}) VALUES ${Array(INSERT_ROWS).fill(TASK_INSERT_ROW).join(', ')}`,
    ));
    const one = (this.insertTaskRow ??= db.prepare(`INSERT INTO tasks (${TASK_INSERT_COLUMNS}) VALUES ${TASK_INSERT_ROW}`));
    const values = (task: PlannedTask, index: number): unknown[] => [
      newId('task'),
      jobId,
      index,
      task.kind,
      'queued',
      JSON.stringify(task.part),
      task.items,
      task.command ? JSON.stringify(task.command) : null,
    ];
    this.forgetTotal(jobId);
    db.transaction(() => {
      let i = 0;
      for (; i + INSERT_ROWS <= tasks.length; i += INSERT_ROWS) {
        const group: unknown[] = [];
        for (let k = i; k < i + INSERT_ROWS; k++) group.push(...values(tasks[k]!, first + k));
        many.run(group);
      }
      for (; i < tasks.length; i++) one.run(values(tasks[i]!, first + i));
    })();
    this.forgetTotal(jobId); // a count taken while the chunk was being written
    this.written.set(jobId, (this.written.get(jobId) ?? 0) + tasks.length);
  }

  /** Jobs whose insertion failed or did not finish: they go with their tasks and tags. */
  removeInserting(ids: string[]): void {
    const { db } = this.options;
    for (const id of ids) {
      this.forgetTotal(id);
      this.written.delete(id);
    }
    db.transaction(() => {
      for (const id of ids) {
        db.prepare('DELETE FROM tasks WHERE job_id = ?').run(id);
        db.prepare('DELETE FROM job_tags WHERE job_id = ?').run(id);
        db.prepare('DELETE FROM jobs WHERE id = ?').run(id);
      }
    })();
  }

  /** planning → queued: every task of these submitted jobs is written; they become visible. */
  queueSubmitted(jobs: Array<{ id: string; project: string; tasks: number }>): void {
    this.options.events.transaction((record) => {
      for (const job of jobs) this.move('jobs', job.id, 'queued', 'inserting = 0', []);
      for (const job of jobs) {
        record({ type: 'job', job_id: job.id, project: job.project, data: { status: 'planning' } });
        record({ type: 'job', job_id: job.id, project: job.project, data: { status: 'queued', tasks: job.tasks } });
      }
    });
    // Known without counting: all its tasks, queued (the answer's counts then read small index
    // ranges, not a 100,000-row GROUP BY while the submitter waits).
    for (const job of jobs) {
      const written = this.written.get(job.id);
      this.written.delete(job.id);
      if (written === undefined) continue;
      if (this.totals.size >= KEPT_TOTALS) this.totals.clear();
      this.totals.set(job.id, { total: written, largest: 'queued' });
    }
  }

  /** planning → queued for jobs a restart found still planning (their tasks are all written); often none. */
  queuePlanning(): void {
    this.options.db.prepare("UPDATE jobs SET status = 'queued' WHERE status = 'planning' AND inserting = 0").run();
  }

  /**
   * queued → running for a task (and its job, on its first task); returns the task as it now is.
   * `placement`: the pool machine it was leased to and its GPUs, told in the event and the log.
   */
  startTask(job: JobRow, task: TaskRow, placement: { machine?: string; gpuIndices?: readonly number[] } = {}): TaskRow {
    const at = timestamp(this.clock);
    const attempt = task.attempt + 1;
    const jobStarts = job.status === 'queued';
    const started = {
      index: task.idx,
      status: 'running',
      attempt,
      ...(placement.machine ? { machine: placement.machine } : {}),
      ...(placement.machine && placement.gpuIndices?.length ? { gpus: [...placement.gpuIndices] } : {}),
    };
    this.options.events.transaction((record) => {
      this.moveTask(task, 'running', 'attempt = ?, started_at = ?, finished_at = NULL, error = NULL, exit_code = NULL, result = NULL, stages = NULL', [
        attempt,
        at,
      ]);
      if (jobStarts) {
        this.move('jobs', job.id, 'running', 'started_at = COALESCE(started_at, ?)', [at]);
        this.recordJob(record, job.id);
      }
      record({ type: 'task', job_id: job.id, task_id: task.id, data: { ...started, counts: this.counts(job.id) } });
    });
    if (jobStarts) job.status = 'running';
    if (attempt > 1) this.logs.append(task.id, `\n--- attempt ${attempt} ---\n`);
    this.writeSystemLine(task.id, started);
    return { ...task, status: 'running', attempt, started_at: at, finished_at: null, error: null, exit_code: null, result: null };
  }

  /**
   * running → succeeded | failed | cancelled. False when a settled race (`TASK_SETTLED_RACES`)
   * made it a no-op: nothing written, no event.
   */
  finishTask(task: TaskRow, outcome: TaskOutcome): boolean {
    const changed = this.options.events.transaction((record) => {
      const moved = this.moveTask(task, outcome.status, 'result = ?, error = ?, exit_code = ?, finished_at = ?, stages = ?', [
        outcome.result === undefined ? null : JSON.stringify(outcome.result),
        outcome.error ?? null,
        outcome.exitCode ?? null,
        timestamp(this.clock),
        outcome.stages ? JSON.stringify(outcome.stages) : null,
      ]);
      if (!moved) return false;
      record({
        type: 'task',
        job_id: task.job_id,
        task_id: task.id,
        data: {
          index: task.idx,
          status: outcome.status,
          error: outcome.error ?? null,
          exit_code: outcome.exitCode ?? null,
          artifact_ids: outcome.artifactIds ?? [],
          counts: this.counts(task.job_id),
        },
      });
      return true;
    });
    if (changed) this.writeSystemLine(task.id, { index: task.idx, status: outcome.status, error: outcome.error ?? null });
    else this.logs.close(task.id);
    return changed;
  }

  /**
   * running → queued for a task a shutdown stopped: it runs again on the next start, not
   * counted as an attempt. No event: the server is going away (the restart's own requeue has one).
   */
  requeueStopped(task: TaskRow, reason = 'the server stopped while the task ran; it runs again when the server starts'): void {
    if (!this.moveTask(task, 'queued', 'attempt = MAX(attempt - 1, 0), started_at = NULL', [])) return;
    this.writeSystemLine(task.id, { index: task.idx, status: 'queued', reason });
  }

  /** After a restart, a task that was running: queued again, or failed once it had `maxAttempts`. */
  recoverInterrupted(task: TaskRow, maxAttempts: number): 'queued' | 'failed' {
    const lastFailed = JSON.stringify({ attempt: task.attempt, error: 'interrupted: the server stopped while the task ran', output_tail: task.output_tail });
    const status = task.attempt >= maxAttempts ? 'failed' : 'queued';
    const error = `the server stopped while the task ran (${task.attempt} attempts)`;
    this.options.events.transaction((record) => {
      if (status === 'failed') this.moveTask(task, 'failed', 'error = ?, finished_at = ?, last_failed = ?', [error, timestamp(this.clock), lastFailed]);
      else this.moveTask(task, 'queued', "last_failed = ?, output_tail = ''", [lastFailed]);
      record({ type: 'task', job_id: task.job_id, task_id: task.id, data: { index: task.idx, status, reason: 'server restart' } });
    });
    this.writeSystemLine(
      task.id,
      status === 'failed' ? { index: task.idx, status, error } : { index: task.idx, status, reason: `server restart: attempt ${task.attempt} was interrupted` },
    );
    return status;
  }

  /**
   * running → queued (or failed once it had `maxAttempts`) for a task whose worker lost it: its
   * lease expired, or its worker gave it back. The attempt counts; the reason goes into its log.
   */
  requeueLost(task: TaskRow, reason: string, maxAttempts: number): 'queued' | 'failed' {
    const lastFailed = JSON.stringify({ attempt: task.attempt, error: `interrupted: ${reason}`, output_tail: task.output_tail });
    const status = task.attempt >= maxAttempts ? 'failed' : 'queued';
    const error = `${reason} (${task.attempt} attempts)`;
    this.options.events.transaction((record) => {
      if (status === 'failed') this.moveTask(task, 'failed', 'error = ?, finished_at = ?, last_failed = ?', [error, timestamp(this.clock), lastFailed]);
      else this.moveTask(task, 'queued', "last_failed = ?, output_tail = '', started_at = NULL", [lastFailed]);
      record({
        type: 'task',
        job_id: task.job_id,
        task_id: task.id,
        data: { index: task.idx, status, reason, ...(status === 'failed' ? { error } : {}), counts: this.counts(task.job_id) },
      });
    });
    this.writeSystemLine(
      task.id,
      status === 'failed' ? { index: task.idx, status, error } : { index: task.idx, status, reason: `${reason}: attempt ${task.attempt} was interrupted` },
    );
    return status;
  }

  /**
   * A cancel asked for: the job is marked, so none of its tasks is leased from now on. Its queued
   * tasks are cancelled after, by `cancelQueuedTasks` in slices (WorkQueue.cancel; after a crash
   * between the two, WorkQueue.recover); running ones finish as they stop.
   */
  requestCancel(jobId: string): void {
    this.expectOne(
      this.options.db.prepare('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(jobId).changes,
      `job ${jobId}: no row to mark cancel_requested`,
    );
  }

  /** A job that cannot run (a dependency failed): queued tasks cancelled, the job failed. */
  failJob(jobId: string, reason: string): void {
    this.finishJob(jobId, 'failed', reason, () => this.cancelQueuedTasks(jobId, reason));
  }

  /**
   * queued | running → its final status (the job's last event); then the finished listeners.
   * False when a settled race (`JOB_SETTLED_RACES`) made it a no-op (no event, no listeners).
   */
  finishJob(jobId: string, status: FinishedJobStatus, error: string | null, alsoInTransaction?: () => void): boolean {
    const job = this.options.events.transaction((record) => {
      if (!this.move('jobs', jobId, status, 'error = ?, finished_at = ?', [error, timestamp(this.clock)])) return undefined;
      alsoInTransaction?.();
      return this.recordJob(record, jobId);
    });
    if (!job) return false;
    for (const listener of this.finishedListeners) listener(job);
    return true;
  }

  /**
   * A captured file as an artifact row, with its event (both commit together; listeners hear
   * after the commit). A file captured again keeps its id, with the new size and checksum. `ord`
   * is the place in upload order, which a capture can change, so the task's rows are renumbered.
   */
  recordArtifact(jobId: string, taskId: string, file: CapturedArtifact, sha256: string): void {
    const { db, events } = this.options;
    const existing = db.prepare('SELECT id FROM artifacts WHERE task_id = ? AND name = ?').get(taskId, file.path) as { id: string } | undefined;
    const id = existing?.id ?? newId('art');
    // One row written per capture (found by the (task_id, name) index), never the task's other
    // rows: `ord` is the file's own upload-order key, so capturing n files costs O(n), not O(n²).
    events.transaction((record) => {
      if (existing)
        db.prepare('UPDATE artifacts SET size = ?, sha256 = ?, path = ?, ord = ?, created_at = ? WHERE id = ?').run(
          file.size,
          sha256,
          file.absolute,
          file.uploadKey,
          timestamp(this.clock),
          id,
        );
      else
        db.prepare('INSERT INTO artifacts (id, job_id, task_id, name, size, sha256, ord, path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
          id,
          jobId,
          taskId,
          file.path,
          file.size,
          sha256,
          file.uploadKey,
          file.absolute,
          timestamp(this.clock),
        );
      record({ type: 'artifact', job_id: jobId, task_id: taskId, data: { id, name: file.path, size: file.size } });
    });
  }

  /** A task's live output: the tail of its log and its latest progress (not a status change). */
  recordOutput(taskId: string, tail: string, latestProgress: unknown): void {
    const { changes } = this.options.db
      .prepare('UPDATE tasks SET output_tail = ?, latest_progress = COALESCE(?, latest_progress) WHERE id = ?')
      .run(tail, latestProgress === undefined ? null : JSON.stringify(latestProgress), taskId);
    this.expectOne(changes, `task ${taskId}: no row to record its output in`);
  }

  /**
   * A finished job's callback is about to be sent (server/callbacks.ts): pending → delivering,
   * committed before the POST. False when there is none to send (settled, or the job not
   * finished). One left `delivering` by a stop or a crash is claimed again on the next start.
   */
  claimCallback(jobId: string): boolean {
    const { changes } = this.options.db
      .prepare(
        "UPDATE jobs SET callback_state = 'delivering' WHERE id = ? AND callback_state IN ('pending', 'delivering') AND status IN ('completed', 'partial', 'failed', 'cancelled')",
      )
      .run(jobId);
    return changes === 1;
  }

  /** How a job's callback ended: delivered, or failed after its retries. */
  recordCallback(jobId: string, state: 'delivered' | 'failed'): void {
    this.expectOne(
      this.options.db.prepare('UPDATE jobs SET callback_state = ? WHERE id = ?').run(state, jobId).changes,
      `job ${jobId}: no row to record its callback in`,
    );
  }

  /**
   * A job's queued tasks → cancelled, at most `limit` of them (all when unset); how many it
   * changed. A set update: a job with no queued task left has none to cancel, so changing no row
   * is fine here.
   */
  cancelQueuedTasks(jobId: string, error: string, limit = -1): number {
    const known = this.totals.get(jobId);
    if (known) this.dropExact(known);
    return this.options.db
      .prepare(
        "UPDATE tasks SET status = 'cancelled', error = ?, finished_at = ? WHERE id IN (SELECT id FROM tasks WHERE job_id = ? AND status = 'queued' LIMIT ?)",
      )
      .run(error, timestamp(this.clock), jobId, limit).changes;
  }

  /** `move` for one task, its job's kept counts following the move. */
  private moveTask(task: Pick<TaskRow, 'id' | 'job_id'>, to: TaskStatus, set: string, params: unknown[]): boolean {
    const moved = this.move('tasks', task.id, to, set, params);
    if (moved) this.taskMoved(task.job_id, to);
    return moved;
  }

  /**
   * One row's status → `to`, leaving only a state the table lets go to `to`; `set` and `params`
   * are the other columns the change writes. True when it changed the row; false when it found a
   * settled race (the row stays as it is); an `InternalError` otherwise.
   */
  private move(table: 'jobs', id: string, to: JobStatus, set: string, params: unknown[]): boolean;
  private move(table: 'tasks', id: string, to: TaskStatus, set: string, params: unknown[]): boolean;
  private move(table: Table, id: string, to: string, set: string, params: unknown[]): boolean {
    const transitions: Readonly<Record<string, readonly string[]>> = table === 'jobs' ? JOB_TRANSITIONS : TASK_TRANSITIONS;
    const from = statesLeadingTo(transitions, to);
    const { changes } = this.options.db
      .prepare(`UPDATE ${table} SET status = ?, ${set} WHERE id = ? AND status IN (${from.map(() => '?').join(', ')})`)
      .run(to, ...params, id, ...from);
    if (changes === 1) return true;
    const kind = table === 'jobs' ? 'job' : 'task';
    const found = (this.options.db.prepare(`SELECT status FROM ${table} WHERE id = ?`).get(id) as { status: string } | undefined)?.status;
    if (found === undefined) throw new InternalError(`${kind} ${id} → ${to}: there is no such ${kind}`);
    const races: ReadonlyArray<{ found: string; wanted: readonly string[] }> = table === 'jobs' ? JOB_SETTLED_RACES : TASK_SETTLED_RACES;
    if (races.some((race) => race.found === found && race.wanted.includes(to))) return false;
    const allowed = transitions[found] ?? [];
    throw new InternalError(`${kind} ${id} cannot go from ${found} to ${to} (from ${found} it may go to: ${allowed.join(', ') || 'nothing, it is final'})`);
  }

  private expectOne(changes: number, what: string): void {
    if (changes !== 1) throw new InternalError(`${what} (${changes} rows changed)`);
  }

  private recordJob(record: RecordEvent, jobId: string): JobRow {
    const job = this.options.db.prepare('SELECT * FROM jobs WHERE id = ?').get(jobId) as JobRow;
    record({ type: 'job', job_id: jobId, project: job.project, data: { status: job.status, error: job.error, counts: this.counts(jobId) } });
    return job;
  }

  /** Best effort: a log line must not fail a transition that committed. Any status but running ends the attempt: its log file is closed. */
  private writeSystemLine(taskId: string, data: TaskEventData): void {
    this.logs.append(taskId, systemLine(data));
    if (data.status !== 'running') this.logs.close(taskId);
  }
}
