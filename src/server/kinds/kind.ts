import type { JobRequest } from '../../api/schemas.js';
import type { TaskRow } from '../jobs/rows.js';
import type { JobPlan, Planning } from './shared.js';

/**
 * A job kind: everything that differs between `structured_runner`, `sweep`, `map_reduce` and
 * `benchmark` in one object, so a new kind is one module and a line in `registry.ts`. The
 * service around it (submission, storage, paging, leases) is the same for every kind.
 */
export interface JobKind {
  /** The request's `type`. */
  readonly name: string;
  /**
   * Checks the request's kind-specific fields and plans its tasks, counted and sized before any
   * is made (`shared.ts` `checked` refuses a plan over a cap). Throws `invalid` naming the field.
   */
  plan(request: JobRequest, planning: Planning): JobPlan;
  /**
   * The kind's summary of its results (`aggregate` in `/results`), over every task of the job;
   * null when the kind has none (then `tasks` is never called).
   */
  aggregate(source: AggregateSource): unknown;
  /** Whether a queued task may start now (a reduce task waits for its job's maps). Absent: always. */
  mayStart?(task: TaskRow, jobs: KindTaskReads): boolean;
  /**
   * What a task receives beyond its composed payload, merged over it (a reduce task: the map
   * results). Throws why the task cannot run (its message is the task's error). Absent: nothing.
   */
  receives?(task: TaskRow, jobs: KindTaskReads): Record<string, unknown>;
}

/** What `aggregate` reads: the job's tasks, one at a time. */
export interface AggregateSource {
  /** Every task of the job in index order (an open iterator: read it through, once). */
  tasks(): Iterable<TaskRow>;
  /** A task's own part of its payload, without the job's base (a sweep's `params`, a benchmark's `_benchmark`). */
  payloadOf(task: TaskRow): Record<string, unknown>;
  /** False when the results do not fit the page's budget: leave them out and say `results_omitted`. */
  withResults: boolean;
}

/** What a kind may read of its job's other tasks when one of them starts (the job service has these). */
export interface KindTaskReads {
  hasUnfinishedMaps(jobId: string): boolean;
  resultBytes(jobId: string, kind?: TaskRow['kind']): number;
  mapResults(jobId: string): Array<{ index: number; status: string; result: unknown; error: string | null }>;
}
