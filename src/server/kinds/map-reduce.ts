import type { TaskStatus } from '../../api/schemas.js';
import { parseJson } from '../db.js';
import { invalid } from '../errors.js';
import type { JobKind } from './kind.js';
import { batched, checked, fanOutItems, MAX_TASK_PAYLOAD_BYTES, mib, type PlannedTask } from './shared.js';

/**
 * `map_reduce`: the fan-out's items as map tasks, then one reduce task (`reduce_command`) that
 * starts when every map has ended and receives their outcomes in `payload.map_results`.
 * The aggregate is the reduce task's outcome and the count of maps.
 */
export const mapReduce: JobKind = {
  name: 'map_reduce',
  plan(request, { batch, directives, command, batchField }) {
    if (!request.reduce_command) throw invalid('invalid_job', 'map_reduce needs reduce_command (the command that gets all map results)', 'reduce_command');
    const maps = batched(fanOutItems(request), batch, directives, 'map', command, batchField);
    const reduce: PlannedTask = { kind: 'reduce', part: { merge: {}, onto: 'directives' }, items: 1, command: request.reduce_command };
    return checked({
      ...maps,
      count: maps.count + 1,
      *tasks() {
        yield* maps.tasks();
        yield reduce;
      },
    });
  },
  aggregate({ tasks }) {
    let reduce: { status: TaskStatus; result: unknown; error: string | null } | null = null;
    let maps = 0;
    for (const t of tasks()) {
      if (t.kind === 'map') maps++;
      else if (t.kind === 'reduce') reduce = { status: t.status, result: parseJson(t.result, null), error: t.error };
    }
    return { reduce, maps };
  },
  mayStart: (task, jobs) => task.kind !== 'reduce' || !jobs.hasUnfinishedMaps(task.job_id),
  receives(task, jobs) {
    if (task.kind !== 'reduce') return {};
    // The map results reach the reduce task in its payload: sized (by the database) before they are read.
    const mapBytes = jobs.resultBytes(task.job_id, 'map');
    if (mapBytes > MAX_TASK_PAYLOAD_BYTES)
      throw new Error(
        `the map tasks' results are about ${mib(mapBytes)} together; at most ${mib(MAX_TASK_PAYLOAD_BYTES)} reach the reduce task in payload.map_results: have the maps write big outputs to /artifacts and return their names`,
      );
    return { map_results: jobs.mapResults(task.job_id) };
  },
};
