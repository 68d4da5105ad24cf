import fs from 'node:fs';
import path from 'node:path';
import type { Job, TaskStatus } from '../api/schemas.js';
import { systemLine, type TaskEventData } from '../api/log-lines.js';
import { type DB, now } from './db.js';
import type { EventLog, RecordEvent } from './events.js';
import type { JobRow, TaskRow } from './jobs.js';
import type { Layout } from './layout.js';

export type FinishedJobStatus = 'completed' | 'partial' | 'failed' | 'cancelled';

export interface TaskOutcome {
  status: 'succeeded' | 'failed' | 'cancelled';
  result?: unknown;
  error?: string;
  exitCode?: number;
  artifactIds?: string[];
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

/**
 * Every status change of a job or a task, in one place. Each transition runs its UPDATEs and
 * records its events in one transaction (`EventLog.transaction`): a reader never sees a state
 * without its event or the reverse, and listeners (SSE streams, the scheduler) hear of it only
 * after the commit. A task's transitions also write a system line (`[cycle] …`) into its log.
 *
 *   job:  planning → queued → running → completed | partial | failed | cancelled
 *   task: queued → running → succeeded | failed | cancelled; running → queued (retry)
 */
export class JobStates {
  private readonly finishedListeners = new Set<(job: JobRow) => void>();

  constructor(private readonly options: { db: DB; events: EventLog; layout: Layout }) {}

  counts(jobId: string): Job['counts'] {
    return taskCounts(this.options.db, jobId);
  }

  /** Heard after a job reached its final status and that committed (callbacks, billing). */
  onJobFinished(listener: (job: JobRow) => void): () => void {
    this.finishedListeners.add(listener);
    return () => this.finishedListeners.delete(listener);
  }

  /** planning → queued: every task of these submitted jobs is written; they become visible. */
  queueSubmitted(jobs: Array<{ id: string; project: string; tasks: number }>): void {
    const { db, events } = this.options;
    const update = db.prepare("UPDATE jobs SET status = 'queued', inserting = 0 WHERE id = ?");
    events.transaction((record) => {
      for (const job of jobs) update.run(job.id);
      for (const job of jobs) {
        record({ type: 'job', job_id: job.id, project: job.project, data: { status: 'planning' } });
        record({ type: 'job', job_id: job.id, project: job.project, data: { status: 'queued', tasks: job.tasks } });
      }
    });
  }

  /** planning → queued for jobs a restart found still planning (their tasks are all written). */
  queuePlanning(): void {
    this.options.db.prepare("UPDATE jobs SET status = 'queued' WHERE status = 'planning' AND inserting = 0").run();
  }

  /** queued → running for a task (and its job, on its first task); returns the task as it now is. */
  startTask(job: JobRow, task: TaskRow): TaskRow {
    const { db, events } = this.options;
    const at = now();
    const attempt = task.attempt + 1;
    const jobStarts = job.status === 'queued';
    events.transaction((record) => {
      db.prepare(
        "UPDATE tasks SET status = 'running', attempt = ?, started_at = ?, finished_at = NULL, error = NULL, exit_code = NULL, result = NULL WHERE id = ?",
      ).run(attempt, at, task.id);
      if (jobStarts) {
        db.prepare("UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?").run(at, job.id);
        this.recordJob(record, job.id);
      }
      record({ type: 'task', job_id: job.id, task_id: task.id, data: { index: task.idx, status: 'running', attempt, counts: this.counts(job.id) } });
    });
    if (jobStarts) job.status = 'running';
    this.writeSystemLine(task.id, { index: task.idx, status: 'running', attempt });
    return { ...task, status: 'running', attempt, started_at: at, finished_at: null, error: null, exit_code: null, result: null };
  }

  /** running → succeeded | failed | cancelled (or queued → failed, when it could not start). */
  finishTask(task: TaskRow, outcome: TaskOutcome): void {
    const { db, events } = this.options;
    events.transaction((record) => {
      db.prepare('UPDATE tasks SET status = ?, result = ?, error = ?, exit_code = ?, finished_at = ? WHERE id = ?').run(
        outcome.status,
        outcome.result === undefined ? null : JSON.stringify(outcome.result),
        outcome.error ?? null,
        outcome.exitCode ?? null,
        now(),
        task.id,
      );
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
    });
    this.writeSystemLine(task.id, { index: task.idx, status: outcome.status, error: outcome.error ?? null });
  }

  /**
   * running → queued for a task a shutdown stopped: it runs again on the next start, not
   * counted as an attempt. No event: the server is going away (the restart's own requeue has one).
   */
  requeueStopped(task: TaskRow): void {
    this.options.db.prepare("UPDATE tasks SET status = 'queued', attempt = MAX(attempt - 1, 0), started_at = NULL WHERE id = ?").run(task.id);
    this.writeSystemLine(task.id, { index: task.idx, status: 'queued', reason: 'the server stopped while the task ran; it runs again when the server starts' });
  }

  /** After a restart, a task that was running: queued again, or failed once it had `maxAttempts`. */
  recoverInterrupted(task: TaskRow, maxAttempts: number): 'queued' | 'failed' {
    const { db, events } = this.options;
    const lastFailed = JSON.stringify({ attempt: task.attempt, error: 'interrupted: the server stopped while the task ran', output_tail: task.output_tail });
    const status = task.attempt >= maxAttempts ? 'failed' : 'queued';
    const error = `the server stopped while the task ran (${task.attempt} attempts)`;
    events.transaction((record) => {
      if (status === 'failed')
        db.prepare("UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, last_failed = ? WHERE id = ?").run(error, now(), lastFailed, task.id);
      else db.prepare("UPDATE tasks SET status = 'queued', last_failed = ?, output_tail = '' WHERE id = ?").run(lastFailed, task.id);
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
    const { db, events } = this.options;
    const lastFailed = JSON.stringify({ attempt: task.attempt, error: `interrupted: ${reason}`, output_tail: task.output_tail });
    const status = task.attempt >= maxAttempts ? 'failed' : 'queued';
    const error = `${reason} (${task.attempt} attempts)`;
    events.transaction((record) => {
      if (status === 'failed')
        db.prepare("UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, last_failed = ? WHERE id = ?").run(error, now(), lastFailed, task.id);
      else db.prepare("UPDATE tasks SET status = 'queued', last_failed = ?, output_tail = '', started_at = NULL WHERE id = ?").run(lastFailed, task.id);
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

  /** A cancel asked for: the job is marked, its queued tasks cancelled (running ones finish as they stop). */
  requestCancel(jobId: string): void {
    const { db, events } = this.options;
    events.transaction(() => {
      db.prepare('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(jobId);
      db.prepare("UPDATE tasks SET status = 'cancelled', error = 'cancelled', finished_at = ? WHERE job_id = ? AND status = 'queued'").run(now(), jobId);
    });
  }

  /** A job that cannot run (a dependency failed): queued tasks cancelled, the job failed. */
  failJob(jobId: string, reason: string): void {
    const { db } = this.options;
    this.finishJob(jobId, 'failed', reason, () => {
      db.prepare("UPDATE tasks SET status = 'cancelled', error = ?, finished_at = ? WHERE job_id = ? AND status = 'queued'").run(reason, now(), jobId);
    });
  }

  /** queued | running → its final status (the job's last event); then the finished listeners. */
  finishJob(jobId: string, status: FinishedJobStatus, error: string | null, alsoInTransaction?: () => void): void {
    const { db, events } = this.options;
    const job = events.transaction((record) => {
      alsoInTransaction?.();
      db.prepare('UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ?').run(status, error, now(), jobId);
      return this.recordJob(record, jobId);
    });
    for (const listener of this.finishedListeners) listener(job);
  }

  private recordJob(record: RecordEvent, jobId: string): JobRow {
    const job = this.options.db.prepare('SELECT * FROM jobs WHERE id = ?').get(jobId) as JobRow;
    record({ type: 'job', job_id: jobId, project: job.project, data: { status: job.status, error: job.error, counts: this.counts(jobId) } });
    return job;
  }

  /** Best effort: a log line must not fail a transition that committed. */
  private writeSystemLine(taskId: string, data: TaskEventData): void {
    const file = this.options.layout.taskLog(taskId);
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.appendFileSync(file, systemLine(data));
    } catch {
      // the data folder is gone (the server is closing)
    }
  }
}
