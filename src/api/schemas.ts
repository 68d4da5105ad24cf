import * as z from 'zod';
import { PROJECT_NAME_PATTERN } from '../project/names.js';
import { JOB_TYPES } from './job-kinds.js';
import { nextCursor } from './views.js';

/**
 * The API's request and response shapes, shared by the client (`src/api/client.ts`, which
 * validates what servers answer) and the local backend (`src/server/`, which validates what
 * clients send). docs/api.md describes the same shapes in words.
 */

export { JOB_TYPES, type JobType } from './job-kinds.js';
export const JOB_STATUSES = ['planning', 'queued', 'running', 'completed', 'partial', 'failed', 'cancelled'] as const;
export const TERMINAL_JOB_STATUSES = ['completed', 'partial', 'failed', 'cancelled'] as const;
/** A job in one of these states will not change any more. */
export const isTerminalJobStatus = (status: string): boolean => (TERMINAL_JOB_STATUSES as readonly string[]).includes(status);
export const TASK_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const MAX_BATCH_JOBS = 200;

export type JobStatus = (typeof JOB_STATUSES)[number];
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const projectName = z.string().regex(PROJECT_NAME_PATTERN, { error: 'expected a project name: lowercase letters, digits, ".", "_" or "-", at most 63' });
const command = z.array(z.string().min(1)).min(1, { error: 'expected a non-empty array of strings, e.g. ["python3", "job.py"]' });
const jsonObject = z.record(z.string(), z.unknown());

/** One of the three fan-out shapes; which one is checked in `fanOutShape` (mixing is a 422). */
export const fanOutSchema = z.strictObject({
  by: z.string().min(1).optional(),
  items: z.array(jsonObject).min(1).max(100_000).optional(),
  chunks: z.number().int().min(1).max(100_000).optional(),
  range_field: z.string().min(1).optional(),
  total: z.number().int().min(1).optional(),
});
export type FanOut = z.infer<typeof fanOutSchema>;

export type FanOutShape =
  | { kind: 'by'; field: string }
  | { kind: 'items'; items: Array<Record<string, unknown>> }
  | { kind: 'chunks'; chunks: number; rangeField: string; total: number };

/** Exactly one shape, or a message saying what is wrong. */
export function fanOutShape(fanOut: FanOut): FanOutShape | { error: string } {
  const shapes = [
    fanOut.by !== undefined,
    fanOut.items !== undefined,
    fanOut.chunks !== undefined || fanOut.total !== undefined || fanOut.range_field !== undefined,
  ].filter(Boolean).length;
  if (shapes !== 1) return { error: 'fan_out: use exactly one of {"by": field}, {"items": [...]} or {"chunks": n, "range_field": f, "total": t}' };
  if (fanOut.by !== undefined) return { kind: 'by', field: fanOut.by };
  if (fanOut.items !== undefined) return { kind: 'items', items: fanOut.items };
  if (fanOut.chunks === undefined || fanOut.total === undefined || fanOut.range_field === undefined) {
    return { error: 'fan_out: chunks needs all of "chunks", "range_field" and "total"' };
  }
  if (fanOut.chunks > fanOut.total) return { error: `fan_out: ${fanOut.chunks} chunks of a total of ${fanOut.total} would leave empty chunks` };
  return { kind: 'chunks', chunks: fanOut.chunks, rangeField: fanOut.range_field, total: fanOut.total };
}

export const requirementsSchema = z.strictObject({
  gpu: z.number().int().min(0).max(64).optional(),
  cpu: z.number().positive().max(1024).optional(),
  memory_gb: z.number().positive().max(65536).optional(),
  storage_gb: z.number().positive().max(1_000_000).optional(),
});

/** A job's `timeout_s`: whole seconds, at most a week (project jobs and recipe jobs alike). */
export const jobTimeoutSeconds = z
  .number()
  .int()
  .min(1)
  .max(7 * 24 * 3600);

export const jobRequestSchema = z.strictObject({
  type: z.enum(JOB_TYPES).default('structured_runner'),
  project: projectName,
  runner_command: command.optional(),
  reduce_command: command.optional(),
  payload: jsonObject.default({}),
  timeout_s: jobTimeoutSeconds.optional(),
  profile: z.string().min(1).max(64).optional(),
  requirements: requirementsSchema.optional(),
  fan_out: fanOutSchema.optional(),
  batch_size: z.number().int().min(1).max(100_000).optional(),
  batch_per_task: z.number().int().min(1).max(100_000).optional(),
  tags: z.array(z.string().min(1).max(128)).max(64).default([]),
  meta: jsonObject.default({}),
  variant: z.string().max(256).optional(),
  callback_url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  depends_on: z.array(z.string().min(1)).max(100).default([]),
  client_ref: z.string().max(256).optional(),
});
export type JobRequest = z.infer<typeof jobRequestSchema>;
export type JobRequestInput = z.input<typeof jobRequestSchema>;

/**
 * A recipe's job (`POST /api/v1/recipes/:name/jobs`, or `POST /api/v1/jobs` with `recipe`): a
 * payload (checked against the recipe's JSON Schema) and the job fields that do not choose what
 * runs; the recipe provides the type, command and runtime.
 */
export const recipeJobRequestSchema = jobRequestSchema
  .pick({ payload: true, timeout_s: true, tags: true, meta: true, variant: true, callback_url: true, depends_on: true, client_ref: true })
  .extend({ recipe: z.string().min(1).max(63).optional() });

export const batchRequestSchema = z.strictObject({
  jobs: z
    .array(z.unknown())
    .min(1)
    .max(MAX_BATCH_JOBS, { error: `at most ${MAX_BATCH_JOBS} jobs per request` }),
});

export const taskCountsSchema = z.object({
  total: z.number(),
  queued: z.number(),
  running: z.number(),
  succeeded: z.number(),
  failed: z.number(),
  cancelled: z.number(),
});

export const jobSchema = z.object({
  id: z.string(),
  type: z.enum(JOB_TYPES),
  project: z.string(),
  revision: z.number().nullable(),
  status: z.enum(JOB_STATUSES),
  payload: jsonObject,
  runner_command: z.array(z.string()).nullable(),
  fan_out: fanOutSchema.nullable(),
  batch_size: z.number().nullable(),
  timeout_s: z.number().nullable(),
  profile: z.string().nullable(),
  requirements: requirementsSchema.nullable(),
  tags: z.array(z.string()),
  meta: jsonObject,
  variant: z.string().nullable(),
  client_ref: z.string().nullable(),
  depends_on: z.array(z.string()),
  callback_url: z.string().nullable(),
  counts: taskCountsSchema,
  error: z.string().nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  /** The id of the job's latest event: follow its stream from here to see only what is new. */
  last_event_id: z.string(),
  /** When the job failed or is partial: what to do about it (Computalot's field; optional from other servers). */
  recommended_action: z.string().nullable().optional(),
  /** The recipe a recipe job runs (null for a project's job; optional from other servers). */
  recipe: z.string().nullable().optional(),
});
export type Job = z.infer<typeof jobSchema>;

export const taskSchema = z.object({
  id: z.string(),
  job_id: z.string(),
  index: z.number(),
  kind: z.enum(['task', 'map', 'reduce']),
  status: z.enum(TASK_STATUSES),
  attempt: z.number(),
  payload: z.unknown(),
  /** false: the payload is too large to show composed; it holds the task's own part only (the base is the job's payload). */
  payload_composed: z.boolean().optional(),
  items: z.number(),
  result: z.unknown().nullable(),
  error: z.string().nullable(),
  exit_code: z.number().nullable(),
  latest_progress: z.unknown().nullable(),
  live_feedback: z.object({ output_tail: z.string() }),
  last_failed_attempt: z.object({ attempt: z.number(), error: z.string(), output_tail: z.string() }).nullable(),
  artifact_ids: z.array(z.string()),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  duration_s: z.number().nullable(),
  /** The last 10 KB of the task's output (Computalot's field). */
  output: z.string().optional(),
});
export type Task = z.infer<typeof taskSchema>;

export const resultItemSchema = z.object({
  index: z.number(),
  task_id: z.string(),
  status: z.enum(TASK_STATUSES),
  payload: z.unknown(),
  /** false: the payload holds the item's own fields only (the job's payload is its base). */
  payload_composed: z.boolean().optional(),
  result: z.unknown().nullable(),
  error: z.string().nullable(),
});

export const resultsSchema = z.object({
  job_id: z.string(),
  type: z.enum(JOB_TYPES),
  status: z.enum(JOB_STATUSES),
  complete: z.boolean(),
  counts: taskCountsSchema,
  items: z.array(resultItemSchema),
  tasks: z.array(
    z.object({
      id: z.string(),
      index: z.number(),
      kind: z.string(),
      status: z.enum(TASK_STATUSES),
      result: z.unknown().nullable(),
      error: z.string().nullable(),
      artifact_ids: z.array(z.string()),
      // Computalot's per-task fields (optional: other servers may not send them).
      result_quality: z.number().optional(),
      result_warnings: z.array(z.string()).optional(),
    }),
  ),
  aggregate: z.unknown().nullable(),
  artifact_ids: z.array(z.string()),
  next_cursor: nextCursor,
  // Computalot's documented result fields (optional: other servers may not send them).
  summary: z.unknown().optional(),
  aggregate_result: z.unknown().optional(),
  aggregate_aliases: z.record(z.string(), z.unknown()).optional(),
  completeness: z.unknown().optional(),
  result_persisted: z.boolean().optional(),
  output_persisted: z.boolean().optional(),
  meta: jsonObject.optional(),
  variant: z.string().nullable().optional(),
});
export type Results = Omit<z.infer<typeof resultsSchema>, 'next_cursor'>;

export const artifactSchema = z.object({
  id: z.string(),
  job_id: z.string(),
  task_id: z.string(),
  name: z.string(),
  size: z.number(),
  sha256: z.string(),
  order: z.number(),
  created_at: z.string(),
});
export type Artifact = z.infer<typeof artifactSchema>;

export const buildStateSchema = z.enum(['none', 'pending', 'building', 'ready', 'failed']);

/** What names one revision of a project: a project's status and a push's answer start with it. */
const projectRevisionSchema = z.object({
  project: z.string(),
  format: z.enum(['cycleswap', 'computalot']),
  revision: z.number(),
  content_hash: z.string(),
  build_hash: z.string(),
});

export const projectStatusSchema = projectRevisionSchema.extend({
  published_at: z.string(),
  can_accept_new_jobs: z.boolean(),
  ready_for_jobs: z.boolean(),
  build: z.object({ state: buildStateSchema, error: z.string().nullable(), updated_at: z.string().nullable() }),
});
export type ProjectStatus = z.infer<typeof projectStatusSchema>;

export const pushResponseSchema = projectRevisionSchema.extend({
  /** The same content as the active revision: no new revision was made. */
  unchanged: z.boolean(),
  /** The next preparation builds the image (build hash changed, --rebuild or --clean). */
  rebuild: z.boolean(),
  /** When the client sent X-Cycle-Build-Hash: whether the server computed the same. */
  build_hash_matches: z.boolean().nullable(),
});
export type PushResponse = z.infer<typeof pushResponseSchema>;

export const errorSchema = z.object({ error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }) });
export type ApiErrorBody = z.infer<typeof errorSchema>;

/** What an SSE event carries in `data:`. */
export const streamEventSchema = z.object({
  type: z.string(),
  job_id: z.string().nullable(),
  task_id: z.string().nullable(),
  project: z.string().nullable(),
  data: z.unknown(),
  at: z.string(),
});
export type StreamEvent = z.infer<typeof streamEventSchema>;

export const KV_KEY_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

// ---- volumes ----

/** A volume's files: where each sits in the volume, and its content (stored once per sha256). */
export const volumeFileSchema = z.strictObject({
  path: z.string().min(1).max(4096),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected a lowercase hex sha256 (64 characters)' }),
  size: z.number().int().min(0),
  executable: z.boolean().default(false),
});
export type VolumeFile = z.infer<typeof volumeFileSchema>;
/** At most this many files in one volume (the same cap as a pushed project's entries). */
export const MAX_VOLUME_FILES = 200_000;
export const volumeFilesRequestSchema = z.strictObject({
  files: z.array(volumeFileSchema).max(MAX_VOLUME_FILES, { error: `at most ${MAX_VOLUME_FILES} files per volume` }),
});

export const volumeSummarySchema = z.object({ name: z.string(), files: z.number(), bytes: z.number(), updated_at: z.string() });
export type VolumeSummary = z.infer<typeof volumeSummarySchema>;

// What the client reads from answers (liberal): views.ts.
export * from './views.js';
