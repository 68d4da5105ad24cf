import { fanOutShape, type JobRequest } from '../api/schemas.js';
import { HttpError } from './http.js';

export interface PlannedTask {
  kind: 'task' | 'map' | 'reduce';
  /** For batched tasks: the items it runs, in `payload._batch.items`. */
  payload: Record<string, unknown>;
  items: number;
  /** The runner command, when not the project's default. */
  command?: string[];
}

/** Most tasks one job may have. */
export const MAX_TASKS = 100_000;

/** Keys of the payload that are directives for the platform, kept on every task. */
const DIRECTIVES = ['_artifacts', '_shared'];

/**
 * Turns a job into its tasks. Fan-out: `by` splits an array field of the payload, `items` gives
 * each task's payload, `chunks` splits [0, total) into `{start, end}` ranges in `range_field`.
 * With `batch_size`, one task runs several items and gets `payload._batch`.
 */
export function planJob(request: JobRequest): PlannedTask[] {
  if (request.batch_size !== undefined && request.batch_per_task !== undefined) {
    throw new HttpError(422, 'invalid_job', 'use batch_size or batch_per_task, not both', 'batch_per_task');
  }
  const batch = request.batch_size ?? request.batch_per_task;
  const base = request.payload;
  switch (request.type) {
    case 'structured_runner':
      return batchItems(fanOutItems(request), batch, base, 'task', request.runner_command);
    case 'sweep': {
      const grid = base.grid;
      if (grid === null || typeof grid !== 'object' || Array.isArray(grid) || Object.keys(grid).length === 0) {
        throw new HttpError(422, 'invalid_job', 'a sweep needs payload.grid = {"param": [values, ...], ...}', 'payload.grid');
      }
      const entries = Object.entries(grid as Record<string, unknown>);
      for (const [param, values] of entries) {
        if (!Array.isArray(values) || values.length === 0) throw new HttpError(422, 'invalid_job', `payload.grid.${param} must be a non-empty array of values`, `payload.grid.${param}`);
      }
      const size = entries.reduce((n, [, values]) => n * (values as unknown[]).length, 1);
      if (size > MAX_TASKS) throw new HttpError(422, 'invalid_job', `the grid has ${size} points; at most ${MAX_TASKS}`, 'payload.grid');
      if (request.fan_out) throw new HttpError(422, 'invalid_job', 'a sweep fans out over its grid: drop fan_out', 'fan_out');
      const { grid: _grid, ...rest } = base;
      void _grid;
      const points = cartesian(entries.map(([param, values]) => (values as unknown[]).map((value) => [param, value] as const)));
      const items = points.map((point) => ({ ...rest, params: Object.fromEntries(point) }));
      return batchItems(items, batch, keepDirectives(rest), 'task', request.runner_command);
    }
    case 'map_reduce': {
      if (!request.reduce_command) throw new HttpError(422, 'invalid_job', 'map_reduce needs reduce_command (the command that gets all map results)', 'reduce_command');
      const maps = batchItems(fanOutItems(request), batch, base, 'map', request.runner_command);
      return [...maps, { kind: 'reduce', payload: keepDirectives(base), items: 1, command: request.reduce_command }];
    }
    case 'benchmark': {
      const strategies = base.strategies;
      if (strategies === null || typeof strategies !== 'object' || Array.isArray(strategies) || Object.keys(strategies).length === 0) {
        throw new HttpError(422, 'invalid_job', 'a benchmark needs payload.strategies = {"name": {payload}, ...}', 'payload.strategies');
      }
      const repeats = base.repeats ?? 1;
      if (typeof repeats !== 'number' || !Number.isInteger(repeats) || repeats < 1 || repeats > 1000) {
        throw new HttpError(422, 'invalid_job', 'payload.repeats must be an integer from 1 to 1000', 'payload.repeats');
      }
      if (request.fan_out) throw new HttpError(422, 'invalid_job', 'a benchmark fans out over its strategies: drop fan_out', 'fan_out');
      const tasks: PlannedTask[] = [];
      for (const [strategy, payload] of Object.entries(strategies as Record<string, unknown>)) {
        if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
          throw new HttpError(422, 'invalid_job', `payload.strategies.${strategy} must be an object (that strategy's payload)`, `payload.strategies.${strategy}`);
        }
        for (let repeat = 0; repeat < repeats; repeat++) {
          tasks.push({ kind: 'task', payload: { ...keepDirectives(base), ...(payload as Record<string, unknown>), _benchmark: { strategy, repeat } }, items: 1, ...(request.runner_command ? { command: request.runner_command } : {}) });
        }
      }
      return checkCount(tasks);
    }
  }
}

/** The payload of each item of a fan-out (or the one payload without one). */
function fanOutItems(request: JobRequest): Array<Record<string, unknown>> {
  const base = request.payload;
  if (!request.fan_out) return [base];
  const shape = fanOutShape(request.fan_out);
  if ('error' in shape) throw new HttpError(422, 'invalid_fan_out', shape.error, 'fan_out');
  switch (shape.kind) {
    case 'by': {
      const values = base[shape.field];
      if (!Array.isArray(values)) throw new HttpError(422, 'invalid_fan_out', `fan_out.by: payload.${shape.field} must be an array to fan out over`, `payload.${shape.field}`);
      if (values.length === 0) throw new HttpError(422, 'invalid_fan_out', `fan_out.by: payload.${shape.field} is empty`, `payload.${shape.field}`);
      checkItems(values.length);
      return values.map((value) => ({ ...base, [shape.field]: value }));
    }
    case 'items':
      checkItems(shape.items.length);
      return shape.items.map((item) => ({ ...keepDirectives(base), ...item }));
    case 'chunks': {
      const size = Math.ceil(shape.total / shape.chunks);
      const items: Array<Record<string, unknown>> = [];
      for (let start = 0; start < shape.total; start += size) items.push({ ...base, [shape.rangeField]: { start, end: Math.min(start + size, shape.total) } });
      return items;
    }
  }
}

function batchItems(items: Array<Record<string, unknown>>, batch: number | undefined, base: Record<string, unknown>, kind: 'task' | 'map', command: string[] | undefined): PlannedTask[] {
  const extra = command ? { command } : {};
  if (batch === undefined || batch <= 1) return checkCount(items.map((payload) => ({ kind, payload, items: 1, ...extra })));
  const tasks: PlannedTask[] = [];
  const count = Math.ceil(items.length / batch);
  for (let index = 0; index < count; index++) {
    const slice = items.slice(index * batch, (index + 1) * batch);
    tasks.push({
      kind,
      payload: { ...keepDirectives(base), _batch: { index, count, size: slice.length, first_item: index * batch, items: slice } },
      items: slice.length,
      ...extra,
    });
  }
  return checkCount(tasks);
}

function keepDirectives(payload: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(payload).filter(([key]) => DIRECTIVES.includes(key)));
}

function cartesian<T>(lists: T[][]): T[][] {
  return lists.reduce<T[][]>((acc, list) => acc.flatMap((prefix) => list.map((value) => [...prefix, value])), [[]]);
}

function checkItems(count: number): void {
  if (count > MAX_TASKS) throw new HttpError(422, 'invalid_fan_out', `${count} items; at most ${MAX_TASKS} per job`, 'fan_out');
}

function checkCount(tasks: PlannedTask[]): PlannedTask[] {
  if (tasks.length > MAX_TASKS) throw new HttpError(422, 'invalid_job', `${tasks.length} tasks; at most ${MAX_TASKS} per job`);
  return tasks;
}
