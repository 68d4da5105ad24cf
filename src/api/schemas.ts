import * as z from 'zod';
import { PROJECT_NAME_PATTERN } from '../project/names.js';
import { JOB_TYPES } from './job-kinds.js';

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

/**
 * Where the next page of a paged answer (`/tasks`, `/results`, `/output`) starts: pass it as
 * `?cursor=`; null or absent on the last page (a server that does not page sends none).
 */
export const nextCursor = z.string().nullable().optional();

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

// ---- What the client reads from answers (liberal) ----
//
// The shapes above are what our own server writes. A real server's answers carry other fields
// and leave out some of ours (platform-facts.md B), so the client reads each answer through a
// loose schema that requires only what a command reads: unknown fields are kept (and printed
// unchanged by --json), a status is any string, and a job is named by `id` or `job_id`.

const looseCounts = z.looseObject({
  total: z.number().optional(),
  queued: z.number().optional(),
  running: z.number().optional(),
  succeeded: z.number().optional(),
  failed: z.number().optional(),
  cancelled: z.number().optional(),
});
export type JobCounts = z.infer<typeof looseCounts>;

const optionalText = z.string().nullable().optional();
/** A revision: a number (ours), or whatever text a server names it by. */
const revisionNumber = z.union([z.number(), z.string()]).nullable().optional();

const jobViewFields = z.looseObject({
  id: z.string().optional(),
  job_id: z.string().optional(),
  status: z.string(),
  type: z.string().optional(),
  project: optionalText,
  revision: revisionNumber,
  counts: looseCounts.optional(),
  error: z.unknown().optional(),
  recommended_action: z.unknown().optional(),
  tags: z.array(z.string()).nullable().optional(),
  depends_on: z.array(z.string()).nullable().optional(),
  meta: z.unknown().optional(),
  variant: optionalText,
  client_ref: optionalText,
  created_at: optionalText,
  started_at: optionalText,
  finished_at: optionalText,
  last_event_id: z.union([z.string(), z.number()]).nullable().optional(),
});
const namesAJob = (job: { id?: string | undefined; job_id?: string | undefined }): boolean => job.id !== undefined || job.job_id !== undefined;
const noJobId = { error: "has no `id` or `job_id` field (expected the job's id)", path: ['id'] };

/** A job as the client reads it: `status` and an id (`id` or `job_id`) are all it needs. */
export const jobViewSchema = jobViewFields.refine(namesAJob, noJobId);
export type JobView = z.infer<typeof jobViewSchema>;

/** A submission's answer (not documented): the new job's id is all `submit` needs; no status yet is fine. */
export const submittedJobViewSchema = jobViewFields.extend({ status: z.string().optional() }).refine(namesAJob, noJobId);
export type SubmittedJobView = z.infer<typeof submittedJobViewSchema>;

/** A cancel's answer (not documented): nothing in it is needed (the id is the one asked for); empty is fine. */
export const cancelledJobViewSchema = jobViewFields.extend({ status: z.string().optional() }).nullable();
export type CancelledJobView = z.infer<typeof cancelledJobViewSchema>;

/** A job's id, whichever name the server gave it (the schema checks that one is there). */
export const jobIdOf = (job: Pick<JobView, 'id' | 'job_id'>): string => job.id ?? job.job_id ?? '';

/** A field the server may send as text or as anything else (an object, a list): shown as text. */
export function textOf(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export const taskViewSchema = z.looseObject({
  id: z.string().optional(),
  task_id: z.string().optional(),
  index: z.number().optional(),
  status: z.string(),
  attempt: z.number().optional(),
  error: z.unknown().optional(),
  exit_code: z.number().nullable().optional(),
  duration_s: z.number().nullable().optional(),
  output: z.string().nullable().optional(),
  live_feedback: z.looseObject({ output_tail: z.string().nullable().optional() }).nullable().optional(),
  artifact_ids: z.array(z.string()).optional(),
});
export type TaskView = z.infer<typeof taskViewSchema>;

/** A results document: its items (ours) or task results (the docs'), everything else kept. */
export const resultsViewSchema = z.looseObject({
  job_id: z.string().optional(),
  id: z.string().optional(),
  status: z.string().optional(),
  complete: z.boolean().optional(),
  counts: looseCounts.optional(),
  items: z
    .array(z.looseObject({ index: z.number().optional(), status: z.string().optional(), result: z.unknown().optional(), error: z.unknown().optional() }))
    .optional(),
  tasks: z
    .array(
      z.looseObject({
        id: z.string().optional(),
        index: z.number().optional(),
        status: z.string().optional(),
        result: z.unknown().optional(),
        error: z.unknown().optional(),
      }),
    )
    .optional(),
  aggregate: z.unknown().optional(),
  aggregate_result: z.unknown().optional(),
  artifact_ids: z.array(z.string()).optional(),
  next_cursor: nextCursor,
});
export type ResultsView = z.infer<typeof resultsViewSchema>;

/** What an SSE event's `data:` must hold for the client to use it; the rest is kept. */
export const streamEventViewSchema = z.looseObject({
  type: z.string().optional(),
  job_id: z.string().nullable().optional(),
  task_id: z.string().nullable().optional(),
  project: z.string().nullable().optional(),
  data: z.unknown().optional(),
  at: z.string().optional(),
});
export type StreamEventView = z.infer<typeof streamEventViewSchema>;

/** A sum of money: the docs show numbers; text such as "12.50" is read too. */
const money = z.union([z.number(), z.string()]).nullable().optional();

export const balanceViewSchema = z.looseObject({ ledger_balance_usd: money, held_usd: money, available_usd: money });
export type BalanceView = z.infer<typeof balanceViewSchema>;

export const recipeViewSchema = z.looseObject({ name: z.string(), description: z.string().nullable().optional() });
export type RecipeView = z.infer<typeof recipeViewSchema>;

/**
 * An uploaded artifact as the client reads it: an id (`id` or `artifact_id`), and from the
 * direct route whether the backend already had the bytes (`exists`, or `already_exists`).
 */
export const artifactRefSchema = z.looseObject({
  id: z.string().optional(),
  artifact_id: z.string().optional(),
  exists: z.boolean().optional(),
  already_exists: z.boolean().optional(),
  upload_url: z.string().nullable().optional(),
});
export type ArtifactRef = z.infer<typeof artifactRefSchema>;
export const artifactIdOf = (ref: ArtifactRef): string | undefined => ref.id ?? ref.artifact_id;

// ---- project, kv, batch, artifact and volume answers, as the client reads them ----
//
// None of these bodies is documented (platform-facts.md B): each view requires only what its
// command cannot do without, and every other field is optional (shown as `-` when absent).

const optionalFlag = z.boolean().nullable().optional();

/** A build state as ours (`build: {state, error}`) or as bare text (`build: "ready"`). */
const looseBuild = z.union([z.string(), z.looseObject({ state: optionalText, error: z.unknown().optional(), updated_at: optionalText })]);

/** A project's status (`/status`, `/status/details`): every field nice to have. */
export const projectStatusViewSchema = z.looseObject({
  project: optionalText,
  format: optionalText,
  revision: revisionNumber,
  content_hash: optionalText,
  build_hash: optionalText,
  published_at: optionalText,
  can_accept_new_jobs: optionalFlag,
  ready_for_jobs: optionalFlag,
  build: looseBuild.nullable().optional(),
  nodes: z
    .array(z.looseObject({ node: optionalText, state: optionalText, ready: optionalFlag, error: z.unknown().optional() }))
    .nullable()
    .optional(),
});
export type ProjectStatusView = z.infer<typeof projectStatusViewSchema>;

/** The build's state, wherever the answer put it (`build.state` or `build`), if anywhere. */
export function buildStateOf(answer: { build?: z.infer<typeof looseBuild> | null | undefined }): string | undefined {
  const build = answer.build;
  if (typeof build === 'string') return build || undefined;
  return build?.state ?? undefined;
}

/** A push's answer: nothing in it is needed (what was sent is known); shown where present. */
export const pushViewSchema = z.looseObject({
  project: optionalText,
  format: optionalText,
  revision: revisionNumber,
  content_hash: optionalText,
  build_hash: optionalText,
  unchanged: optionalFlag,
  rebuild: optionalFlag,
  build_hash_matches: optionalFlag,
});
export type PushView = z.infer<typeof pushViewSchema>;

/** `init` (`project prepare`) and `invalidate`: shown where present, nothing needed. */
export const prepareViewSchema = z.looseObject({
  project: optionalText,
  revision: revisionNumber,
  build: looseBuild.nullable().optional(),
  status: optionalText,
});
export const invalidateViewSchema = z.looseObject({ project: optionalText, removed_images: z.number().nullable().optional() });

/** A kv entry: `kv get` needs its `value` (checked where it is read), `kv list` its `key`. */
export const kvEntryViewSchema = z.looseObject({ project: optionalText, key: z.string().optional(), value: z.unknown().optional(), updated_at: optionalText });
export type KvEntryView = z.infer<typeof kvEntryViewSchema>;
export const kvValueViewSchema = kvEntryViewSchema.refine((entry) => 'value' in entry, {
  error: 'has no `value` field (expected the JSON value)',
  path: ['value'],
});
export const kvListedViewSchema = kvEntryViewSchema.extend({ key: z.string() });

/**
 * A message from whatever a server sends as an error: text, `{message}`, `{detail}` (text, or
 * FastAPI's list of `{loc, msg}`, each with where it is), `{error: …}` nested, `{title}`.
 */
export function errorTextOf(value: unknown, depth = 0): string | undefined {
  if (value === undefined || value === null || depth > 3) return undefined;
  if (typeof value === 'string') return value.trim() || undefined;
  if (Array.isArray(value)) {
    const parts = value.map((item) => errorTextOf(item, depth + 1)).filter((part) => part !== undefined);
    return parts.length ? parts.join('; ') : undefined;
  }
  if (typeof value !== 'object') return String(value);
  const field = (key: string): unknown => Reflect.get(value, key);
  for (const key of ['message', 'detail', 'error', 'msg', 'title', 'description']) {
    const text = errorTextOf(field(key), depth + 1);
    if (text === undefined) continue;
    const where = field('loc');
    return Array.isArray(where) && where.length > 0 ? `${where.join('.')}: ${text}` : text;
  }
  return JSON.stringify(value).slice(0, 300);
}

/**
 * One entry of a batch's answer: which job of the request (`index`, else its place), whether it
 * was accepted (`ok`, else no `error`), and for an accepted one its id (`job.id`, `job.job_id`,
 * `id` or `job_id`).
 */
export const batchEntryViewSchema = z
  .looseObject({
    index: z.number().int().min(0).optional(),
    ok: z.boolean().optional(),
    id: z.string().optional(),
    job_id: z.string().optional(),
    job: z.looseObject({ id: z.string().optional(), job_id: z.string().optional() }).nullable().optional(),
    error: z.unknown().optional(),
  })
  .refine((entry) => !batchEntryAccepted(entry) || batchJobIdOf(entry) !== undefined, {
    error: 'has an accepted job without an `id` or `job_id` field',
    path: ['job', 'id'],
  });
export type BatchEntryView = z.infer<typeof batchEntryViewSchema>;
type BatchEntryFields = {
  ok?: boolean | undefined;
  error?: unknown;
  id?: string | undefined;
  job_id?: string | undefined;
  job?: { id?: string | undefined; job_id?: string | undefined } | null | undefined;
};
export function batchEntryAccepted(entry: BatchEntryFields): boolean {
  return entry.ok ?? (entry.error === undefined || entry.error === null);
}
export const batchJobIdOf = (entry: BatchEntryFields): string | undefined => entry.job?.id ?? entry.job?.job_id ?? entry.id ?? entry.job_id;

/** A listed artifact: its id (`id` or `artifact_id`) is needed; name, size, sha256 are used where sent. */
export const artifactViewSchema = artifactRefSchema
  .extend({
    job_id: optionalText,
    task_id: optionalText,
    name: optionalText,
    filename: optionalText,
    size: z.number().nullable().optional(),
    sha256: optionalText,
  })
  .refine((artifact) => artifactIdOf(artifact) !== undefined, { error: 'has an artifact without an `id` or `artifact_id` field', path: ['id'] });
export type ArtifactView = z.infer<typeof artifactViewSchema>;
/** An artifact's file name as the server gives it (`name`, or the upload's `filename`). */
export const artifactNameOf = (artifact: ArtifactView): string | undefined => artifact.name ?? artifact.filename ?? undefined;

/** A volume as listed: its name is needed, the counts are shown where sent. */
export const volumeViewSchema = z.looseObject({
  name: z.string(),
  files: z.number().nullable().optional(),
  bytes: z.number().nullable().optional(),
  updated_at: optionalText,
});
export type VolumeView = z.infer<typeof volumeViewSchema>;
