import { fanOutShape, type JobRequest } from '../../api/schemas.js';
import { invalid } from '../errors.js';

/**
 * What the job kinds share: the caps, the shapes of a plan (a base stored once per job, a part
 * per task), the fan-out shapes (`by`, `items`, `chunks`), batching, and the sizing that refuses
 * a plan over a cap before any task is made. A kind module (`./<kind>.ts`) builds on these.
 */

/** Most tasks one request may create (one job, or all the jobs of a batch together). */
export const MAX_TASKS = 100_000;

/**
 * Most bytes the tasks of one request may store beyond their job's base payload (which is
 * stored once per job): what differs per task (fan-out values, items, grid points, strategies).
 */
export const MAX_TASK_BYTES = 64 * 1024 * 1024;

/**
 * Most bytes of payload one task may receive, as its container gets it: the job's base merged
 * under each of its items (a batched task gets the base once per item). Sized from the
 * request's shape before it is accepted, and checked again before a stored task is composed.
 */
export const MAX_TASK_PAYLOAD_BYTES = 16 * 1024 * 1024;

/** What every task of a job shares, stored once with the job. */
export interface TaskBase {
  /** The payload each item starts from; the item's own fields are merged over it. */
  item: Record<string, unknown>;
  /** The platform directives (`_artifacts`, `_shared`): what batched and reduce tasks start from. */
  directives: Record<string, unknown>;
}

/** What one task stores: only what differs from its job's base. */
export type TaskPart =
  | { merge: Record<string, unknown>; onto?: 'directives' }
  | { batch: { index: number; count: number; size: number; first_item: number }; items: Array<Record<string, unknown>> };

export interface PlannedTask {
  kind: 'task' | 'map' | 'reduce';
  part: TaskPart;
  items: number;
  /** The runner command, when not the project's default. */
  command?: string[];
}

/** A job's tasks, counted and sized before any is made; `tasks()` makes them one at a time. */
export interface JobPlan {
  count: number;
  /** About how many bytes the task parts take as JSON (the base not included). */
  bytes: number;
  /** At most how many bytes of payload one task receives (its base and its part, composed). */
  taskPayloadBytes: number;
  base: TaskBase;
  tasks(): Generator<PlannedTask>;
}

/** Keys of the payload that are directives for the platform, kept on every task. */
export const DIRECTIVES = ['_artifacts', '_shared'];

/** The payload a task runs with: its job's base and its own part. */
export function composePayload(base: TaskBase, part: TaskPart): Record<string, unknown> {
  if ('batch' in part) return { ...base.directives, _batch: { ...part.batch, items: part.items.map((item) => ({ ...base.item, ...item })) } };
  return { ...(part.onto === 'directives' ? base.directives : base.item), ...part.merge };
}

/**
 * The bytes of a task's composed payload, from the sizes of its parts (nothing is built): a
 * batched task gets the base item once per item. An upper bound (keys an item overrides count twice).
 */
export function composedPayloadBytes(sizes: { item: number; directives: number }, part: { bytes: number; items: number; batched: boolean }): number {
  return part.batched ? sizes.directives + part.bytes + part.items * sizes.item : sizes.item + part.bytes;
}

/** The sizes `composedPayloadBytes` needs, of a job's stored base. */
export function taskBaseSizes(base: TaskBase): { item: number; directives: number } {
  return { item: jsonBytes(base.item), directives: jsonBytes(base.directives) };
}

/** The items of a job before batching: how many, their size, and a way to make them. */
export interface ItemSource {
  count: number;
  bytes: number;
  /** The largest item's bytes (what one task's items can take, with the batch size). */
  maxItemBytes: number;
  /** The request field that makes the items (named when there are too many). */
  field: string;
  base: Record<string, unknown>;
  parts(): Generator<Record<string, unknown>>;
}

/** What every kind plans with, read from the request once: batching, the directives kept per task, the runner command. */
export interface Planning {
  batch: number | undefined;
  batchField: 'batch_size' | 'batch_per_task';
  /** The payload's platform directives (`_artifacts`, `_shared`): what batched and reduce tasks start from. */
  directives: Record<string, unknown>;
  command: string[] | undefined;
}

/** The request's batching, directives and command; `batch_size` with `batch_per_task` is refused. */
export function planningOf(request: JobRequest): Planning {
  if (request.batch_size !== undefined && request.batch_per_task !== undefined) {
    throw invalid('invalid_job', 'use batch_size or batch_per_task, not both', 'batch_per_task');
  }
  return {
    batch: request.batch_size ?? request.batch_per_task,
    batchField: request.batch_size !== undefined ? 'batch_size' : 'batch_per_task',
    directives: keepDirectives(request.payload),
    command: request.runner_command,
  };
}

/** The items of a fan-out (or the one payload without one). */
export function fanOutItems(request: JobRequest): ItemSource {
  const base = request.payload;
  if (!request.fan_out)
    return {
      count: 1,
      bytes: 2,
      maxItemBytes: 2,
      field: 'payload',
      base,
      *parts() {
        yield {};
      },
    };
  const shape = fanOutShape(request.fan_out);
  if ('error' in shape) throw invalid('invalid_fan_out', shape.error, 'fan_out');
  switch (shape.kind) {
    case 'by': {
      const field = shape.field;
      const values = base[field];
      if (!Array.isArray(values)) throw invalid('invalid_fan_out', `fan_out.by: payload.${field} must be an array to fan out over`, `payload.${field}`);
      if (values.length === 0) throw invalid('invalid_fan_out', `fan_out.by: payload.${field} is empty`, `payload.${field}`);
      checkItems(values.length, `payload.${field}`);
      let bytes = 0;
      let maxItemBytes = 0;
      for (const value of values) {
        const itemBytes = jsonBytes(value ?? null) + field.length + 4;
        bytes += itemBytes;
        maxItemBytes = Math.max(maxItemBytes, itemBytes);
      }
      // The array itself is not part of any item: the base keeps only its key (for the key order).
      return {
        count: values.length,
        bytes,
        maxItemBytes,
        field: `payload.${field}`,
        base: { ...base, [field]: null },
        *parts() {
          for (const value of values) yield { [field]: value };
        },
      };
    }
    case 'items': {
      checkItems(shape.items.length, 'fan_out.items');
      const sizes = shape.items.map((item) => jsonBytes(item) + 1);
      return {
        count: shape.items.length,
        bytes: sizes.reduce((a, b) => a + b, 0),
        maxItemBytes: sizes.reduce((a, b) => Math.max(a, b), 0),
        field: 'fan_out.items',
        base: keepDirectives(base),
        *parts() {
          yield* shape.items;
        },
      };
    }
    case 'chunks': {
      const size = Math.ceil(shape.total / shape.chunks);
      const count = Math.ceil(shape.total / size);
      const itemBytes = shape.rangeField.length + 2 * String(shape.total).length + 24;
      return {
        count,
        bytes: count * itemBytes,
        maxItemBytes: itemBytes,
        field: 'fan_out.chunks',
        base,
        *parts() {
          for (let start = 0; start < shape.total; start += size) yield { [shape.rangeField]: { start, end: Math.min(start + size, shape.total) } };
        },
      };
    }
  }
}

/** Items as tasks: one each, or `batch` of them per task (with `payload._batch`). */
export function batched(
  source: ItemSource,
  batch: number | undefined,
  directives: Record<string, unknown>,
  kind: 'task' | 'map',
  command: string[] | undefined,
  batchField: 'batch_size' | 'batch_per_task',
): JobPlan & { field: string; batchField?: string } {
  const extra = command ? { command } : {};
  const base: TaskBase = { item: source.base, directives };
  const sizes = taskBaseSizes(base);
  if (batch === undefined || batch <= 1) {
    return {
      count: source.count,
      bytes: source.bytes,
      taskPayloadBytes: composedPayloadBytes(sizes, { bytes: source.maxItemBytes, items: 1, batched: false }),
      field: source.field,
      base,
      *tasks() {
        for (const merge of source.parts()) yield { kind, part: { merge }, items: 1, ...extra };
      },
    };
  }
  const count = Math.ceil(source.count / batch);
  // The fullest batch: `perTask` items, none larger than the largest, all of them at most.
  const perTask = Math.min(batch, source.count);
  return {
    count,
    bytes: source.bytes + count * 80,
    taskPayloadBytes: composedPayloadBytes(sizes, { bytes: Math.min(source.bytes, perTask * source.maxItemBytes) + 80, items: perTask, batched: true }),
    batchField,
    field: source.field,
    base,
    *tasks() {
      let slice: Array<Record<string, unknown>> = [];
      let index = 0;
      const flush = (): PlannedTask => {
        const task: PlannedTask = {
          kind,
          part: { batch: { index, count, size: slice.length, first_item: index * batch }, items: slice },
          items: slice.length,
          ...extra,
        };
        index++;
        slice = [];
        return task;
      };
      for (const item of source.parts()) {
        slice.push(item);
        if (slice.length === batch) yield flush();
      }
      if (slice.length) yield flush();
    },
  };
}

/** Refuses a plan over the task or byte caps, naming the field that made it so large. */
export function checked(plan: JobPlan & { field?: string; batchField?: string }): JobPlan {
  const field = plan.field ?? 'payload.strategies';
  if (plan.taskPayloadBytes > MAX_TASK_PAYLOAD_BYTES) {
    const batchedNote = plan.batchField
      ? `a batched task gets the payload merged under each of its items: lower ${plan.batchField}, or move what items share out of the payload (into a file or a dependency's artifact)`
      : `make ${field} smaller, or move what tasks share into a file or a dependency's artifact`;
    throw invalid(
      'task_payload_too_large',
      `each task would receive up to about ${mib(plan.taskPayloadBytes)} of payload; at most ${mib(MAX_TASK_PAYLOAD_BYTES)} per task: ${batchedNote}`,
      plan.batchField ?? field,
      { limit_bytes: MAX_TASK_PAYLOAD_BYTES, task_payload_bytes: plan.taskPayloadBytes },
    );
  }
  if (plan.count > MAX_TASKS) {
    throw invalid('invalid_job', `${plan.count} tasks; at most ${MAX_TASKS} per job: group items with batch_size, or split the job`, field);
  }
  if (plan.bytes > MAX_TASK_BYTES) {
    throw invalid(
      'invalid_job',
      `the tasks would store about ${mib(plan.bytes)} of payload; at most ${mib(MAX_TASK_BYTES)} per request: move what tasks share out of ${field} (the base payload is stored once), or split the job`,
      field,
    );
  }
  return plan;
}

export function keepDirectives(payload: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(payload).filter(([key]) => DIRECTIVES.includes(key)));
}

export function checkItems(count: number, field: string): void {
  if (count > MAX_TASKS) throw invalid('invalid_fan_out', `${count} items; at most ${MAX_TASKS} per job`, field);
}

/** The length of a value as JSON (its UTF-16 length: near enough to its UTF-8 bytes for a cap). */
export function jsonBytes(value: unknown): number {
  // A number is written as String() writes it (a non-finite one as null): the fan-out of
  // 100,000 numbers is sized in a third of the time, with no string made per item by JSON.
  if (typeof value === 'number') return Number.isFinite(value) ? String(value).length : 4;
  return JSON.stringify(value).length;
}

export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
