import type { JobRequest } from '../api/schemas.js';
import { JOB_KINDS, kindOf, type JobKinds } from './kinds/registry.js';
import { planningOf, type JobPlan } from './kinds/shared.js';

/**
 * The one entry point from a request to its plan: the request's kind (kinds/registry.ts) plans
 * it. The shapes and caps a plan is made of live in kinds/shared.ts, re-exported here for the
 * services that store and compose tasks.
 */
export {
  composedPayloadBytes,
  composePayload,
  jsonBytes,
  MAX_TASK_BYTES,
  MAX_TASK_PAYLOAD_BYTES,
  MAX_TASKS,
  mib,
  taskBaseSizes,
  type JobPlan,
  type PlannedTask,
  type TaskBase,
  type TaskPart,
} from './kinds/shared.js';

/**
 * Validates a job and plans its tasks without making them: the count and size come from the
 * request's shape (fan-out length, grid sizes, strategies × repeats, divided by the batch size),
 * so a request for millions of tasks is refused before one is built. Fan-out: `by` splits an
 * array field of the payload, `items` gives each task's payload, `chunks` splits [0, total) into
 * `{start, end}` ranges in `range_field`. With `batch_size`, one task runs several items and
 * gets `payload._batch`.
 */
export function planJob(request: JobRequest, kinds: JobKinds = JOB_KINDS): JobPlan {
  const planning = planningOf(request);
  return kindOf(request.type, kinds).plan(request, planning);
}
