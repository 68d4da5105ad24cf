import * as z from 'zod';

/**
 * The client's views of the API's answers, read liberally (schemas.ts has the shapes our own
 * server writes and the requests it takes; schemas.ts re-exports these).
 */

/**
 * Where the next page of a paged answer (`/tasks`, `/results`, `/output`) starts: pass it as
 * `?cursor=`; null or absent on the last page (a server that does not page sends none).
 */
export const nextCursor = z.string().nullable().optional();

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
