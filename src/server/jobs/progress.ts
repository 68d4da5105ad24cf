import { type DB, parseJson } from '../db.js';

/*
 * `GET /api/v1/jobs/:id/progress`: the numbers a job's tasks printed as progress lines
 * (`COMPUTALOT_PROGRESS:{"step": 42, "loss": 0.05}`), a page of tasks at a time, each task's
 * series thinned to at most `maxPoints` (evenly, keeping the first and the last), so a job of
 * 10,000 tasks and 100,000 points is never sent or drawn whole. Read from the `progress` events
 * (each carries every point reported since the one before: `data.points`, else `data.progress`).
 */

export const PROGRESS_DEFAULT_TASKS = 20;
export const PROGRESS_MAX_TASKS = 200;
export const PROGRESS_DEFAULT_POINTS = 1000;
export const PROGRESS_MAX_POINTS = 10_000;

export interface ProgressPoint {
  /** When the server heard it (ms since the epoch): the x axis of a series without `step`. */
  at: number;
  /** The point's numeric fields (others are left out: they cannot be drawn). */
  values: Record<string, number>;
}

export interface TaskProgress {
  task_id: string;
  index: number;
  /** Points the task reported, before thinning. */
  points_total: number;
  points: ProgressPoint[];
}

export interface ProgressPage {
  job_id: string;
  /** Every numeric field of this page's points, sorted. */
  fields: string[];
  tasks: TaskProgress[];
  next_cursor: string | null;
}

/** Which tasks: a page from `cursor` on, or (`indexes`) the tasks the page's user picked, by index, each once (no next page). */
export type ProgressTasks = { cursor: number; limit: number } | { indexes: number[] };

export function progressPage(db: DB, jobId: string, which: ProgressTasks, maxPoints: number): ProgressPage {
  let shown: Array<{ id: string; idx: number }>;
  let nextCursor: string | null = null;
  if ('indexes' in which) {
    const byIndex = db.prepare('SELECT id, idx FROM tasks WHERE job_id = ? AND idx = ?');
    shown = [...new Set(which.indexes)].sort((a, b) => a - b).flatMap((index) => (byIndex.get(jobId, index) as { id: string; idx: number } | undefined) ?? []);
  } else {
    const tasks = db
      .prepare('SELECT id, idx FROM tasks WHERE job_id = ? AND idx >= ? ORDER BY idx LIMIT ?')
      .all(jobId, which.cursor, which.limit + 1) as Array<{
      id: string;
      idx: number;
    }>;
    if (tasks.length > which.limit) nextCursor = String(tasks[which.limit]!.idx);
    shown = tasks.slice(0, which.limit);
  }
  const read = db.prepare("SELECT data, at FROM events WHERE task_id = ? AND type = 'progress' ORDER BY seq");
  const fields = new Set<string>();
  const series = shown.map((task): TaskProgress => {
    const points: ProgressPoint[] = [];
    for (const row of read.iterate(task.id) as Iterable<{ data: string; at: string }>) {
      const data = parseJson<{ progress?: unknown; points?: unknown } | null>(row.data, null);
      const at = Date.parse(row.at);
      const reported = Array.isArray(data?.points) ? data.points : [data?.progress];
      for (const value of reported) {
        const values = numericFields(value);
        if (values) points.push({ at, values });
      }
    }
    const thinned = thin(points, maxPoints);
    for (const point of thinned) for (const field of Object.keys(point.values)) fields.add(field);
    return { task_id: task.id, index: task.idx, points_total: points.length, points: thinned };
  });
  return { job_id: jobId, fields: [...fields].sort(), tasks: series, next_cursor: nextCursor };
}

/** A progress value's finite numbers (a bare number is `value`); undefined when it has none. */
function numericFields(value: unknown): Record<string, number> | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? { value } : undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const values: Record<string, number> = {};
  let any = false;
  for (const [key, field] of Object.entries(value)) {
    if (typeof field === 'number' && Number.isFinite(field) && key !== '__proto__') {
      values[key] = field;
      any = true;
    }
  }
  return any ? values : undefined;
}

/** At most `max` points, evenly spaced over the series, the first and the last kept. */
export function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  if (max === 1) return [points.at(-1)!];
  const kept: T[] = [];
  for (let i = 0; i < max; i++) kept.push(points[Math.round((i * (points.length - 1)) / (max - 1))]!);
  return kept;
}
