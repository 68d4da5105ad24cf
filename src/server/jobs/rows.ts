import { isTerminalJobStatus, type Job, type JobRequest, type JobStatus, type TaskStatus } from '../../api/schemas.js';
import type { TaskBase } from '../kinds/shared.js';

/** The rows of the jobs, tasks and artifacts tables, as better-sqlite3 reads them (db.ts has the schema). */

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
  /** JSON of lease.ts `WorkerStages` (absent in rows read before the column existed). */
  stages?: string | null;
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

/** The request a job was submitted with (validated then). */
export function requestOf(row: JobRow): JobRequest {
  return JSON.parse(row.request) as JobRequest;
}

/** What every task of the job shares (undefined for jobs stored before it was kept apart). */
export function taskBaseOf(job: JobRow): TaskBase | undefined {
  return job.task_base === null ? undefined : (JSON.parse(job.task_base) as TaskBase);
}
