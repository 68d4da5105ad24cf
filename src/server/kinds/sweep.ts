import type { TaskStatus } from '../../api/schemas.js';
import { parseJson } from '../db.js';
import { invalid } from '../errors.js';
import type { JobKind } from './kind.js';
import { batched, checked, jsonBytes, MAX_TASKS, type ItemSource } from './shared.js';

/** `sweep`: one item per point of `payload.grid` (its cartesian product); the aggregate is the result per point. */
export const sweep: JobKind = {
  name: 'sweep',
  plan(request, { batch, directives, command, batchField }) {
    if (request.fan_out) throw invalid('invalid_job', 'a sweep fans out over its grid: drop fan_out', 'fan_out');
    return checked(batched(gridItems(request.payload), batch, directives, 'task', command, batchField));
  },
  aggregate({ tasks, payloadOf, withResults }) {
    const points: Array<{ params: unknown; status: TaskStatus; result: unknown }> = [];
    for (const t of tasks()) points.push({ params: payloadOf(t).params ?? null, status: t.status, result: withResults ? parseJson(t.result, null) : null });
    return { points, ...(withResults ? {} : { results_omitted: true }) };
  },
};

/** A sweep's points: the cartesian product of `payload.grid`, counted and sized from the grid's lengths. */
function gridItems(payload: Record<string, unknown>): ItemSource {
  const grid = payload.grid;
  if (grid === null || typeof grid !== 'object' || Array.isArray(grid) || Object.keys(grid).length === 0) {
    throw invalid('invalid_job', 'a sweep needs payload.grid = {"param": [values, ...], ...}', 'payload.grid');
  }
  const entries: Array<[string, unknown[]]> = [];
  for (const [param, values] of Object.entries(grid)) {
    if (!Array.isArray(values) || values.length === 0)
      throw invalid('invalid_job', `payload.grid.${param} must be a non-empty array of values`, `payload.grid.${param}`);
    entries.push([param, values]);
  }
  const size = entries.reduce((n, [, values]) => n * values.length, 1);
  if (size > MAX_TASKS) throw invalid('invalid_job', `the grid has ${size} points; at most ${MAX_TASKS} per job`, 'payload.grid');
  // Each value of a parameter appears in size / (its count of values) points.
  const bytes = entries.reduce((sum, [param, values]) => sum + (jsonBytes(values) + values.length * (param.length + 4)) * (size / values.length), size * 12);
  // A point's `{"params": {...}}`: each parameter's largest value at most.
  const maxItemBytes = entries.reduce(
    (sum, [param, values]) => sum + param.length + 4 + values.reduce((max: number, v) => Math.max(max, jsonBytes(v ?? null)), 0),
    12,
  );
  const { grid: _grid, ...rest } = payload;
  void _grid;
  return {
    count: size,
    bytes,
    maxItemBytes,
    field: 'payload.grid',
    base: rest,
    *parts() {
      // An odometer over the grid: the last parameter turns fastest, as the nested loops would.
      const at = entries.map(() => 0);
      for (let point = 0; point < size; point++) {
        yield { params: Object.fromEntries(entries.map(([param, values], i) => [param, values[at[i]!]])) };
        for (let i = entries.length - 1; i >= 0; i--) {
          if (++at[i]! < entries[i]![1].length) break;
          at[i] = 0;
        }
      }
    },
  };
}
