import * as z from 'zod';

/**
 * Where a task's time went: `GET /api/v1/jobs/:id/timings` (a cycle-server route beside the task
 * documents, which stay as Computalot's contract has them). Each stage is the time (ms since the
 * epoch) the task's last attempt reached it: queued (its job accepted), leased (handed to a
 * worker), image_ready, created, started, exited (its container), captured (its artifacts and
 * result read), stored (its outcome recorded). A stage not reached is absent. queued, leased and
 * stored are the server's clock; the others its worker's.
 */
export const TASK_STAGES = ['queued', 'leased', 'image_ready', 'created', 'started', 'exited', 'captured', 'stored'] as const;
export type TaskStage = (typeof TASK_STAGES)[number];
export type TaskStages = Partial<Record<TaskStage, number>>;

export const taskTimingsSchema = z.looseObject({
  task_id: z.string(),
  index: z.number(),
  attempt: z.number(),
  status: z.string(),
  stages: z.record(z.string(), z.number()),
});
export type TaskTimings = { task_id: string; index: number; attempt: number; status: string; stages: TaskStages };

/** The spans a person reads (`job tasks --timings`) and the bench sums: each from one stage to the next. */
export const STAGE_SPANS = [
  { name: 'queue', from: 'queued', to: 'leased' },
  { name: 'image', from: 'leased', to: 'image_ready' },
  { name: 'create', from: 'image_ready', to: 'created' },
  { name: 'start', from: 'created', to: 'started' },
  { name: 'run', from: 'started', to: 'exited' },
  { name: 'capture', from: 'exited', to: 'captured' },
  { name: 'store', from: 'captured', to: 'stored' },
] as const satisfies ReadonlyArray<{ name: string; from: TaskStage; to: TaskStage }>;
export type StageSpan = (typeof STAGE_SPANS)[number]['name'];

/** Each span's length in ms; undefined where either end was not reached. */
export function stageSpans(stages: TaskStages): Record<StageSpan, number | undefined> {
  const spans = {} as Record<StageSpan, number | undefined>;
  for (const span of STAGE_SPANS) {
    const from = stages[span.from];
    const to = stages[span.to];
    spans[span.name] = from !== undefined && to !== undefined ? to - from : undefined;
  }
  return spans;
}
