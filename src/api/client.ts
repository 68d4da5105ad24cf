import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import { CycleError, ExitCode } from '../errors.js';
import {
  artifactRefSchema,
  artifactViewSchema,
  balanceViewSchema,
  batchEntryViewSchema,
  cancelledJobViewSchema,
  invalidateViewSchema,
  jobViewSchema,
  kvEntryViewSchema,
  kvListedViewSchema,
  kvValueViewSchema,
  nextCursor,
  prepareViewSchema,
  projectStatusViewSchema,
  pushViewSchema,
  recipeViewSchema,
  resultsViewSchema,
  submittedJobViewSchema,
  taskViewSchema,
  volumeViewSchema,
  type JobRequestInput,
  type ResultsView,
  type TaskView,
  type VolumeFile,
} from './schemas.js';
import { jobPlacementSchema, machineSchema, machineTokenSchema } from './machines.js';
import { taskTimingsSchema, type TaskTimings } from './timings.js';
import { ApiError, PAGE_LIMIT, type RawResponse, STREAM_IDLE_MS, Transport, type UploadBody } from './transport.js';

export {
  ApiError,
  type ApiClientOptions,
  findShortfall,
  MAX_JSON_ANSWER_BYTES,
  type RawResponse,
  unexpectedAnswer,
  type UploadBody,
} from './transport.js';

/** One function per endpoint of docs/api.md, over the transport (transport.ts: undici, retries that never act twice). */
export class ApiClient extends Transport {
  health() {
    return this.request('GET', '/api/v1/health', { schema: z.looseObject({ ok: z.boolean().optional(), version: z.string().optional() }) }).then((r) => r.body);
  }

  /**
   * Whether the server takes the token: `GET /api/v1/jobs?limit=1` answers without an error.
   * Nothing of the answer is read (`auth login` and `auth status` need only the yes).
   */
  async checkToken(): Promise<void> {
    const answer = await this.request('GET', '/api/v1/jobs', { query: { limit: 1 }, raw: true });
    await answer.body.dump().catch(() => undefined);
  }

  /** Pushes are content-addressed: the same bytes make no second revision, so a retry is safe. */
  push(name: string, upload: UploadBody, flags: { rebuild?: boolean; clean?: boolean; buildHash?: string }, signal?: AbortSignal) {
    return this.request('POST', `/api/v1/projects/${encodeURIComponent(name)}/push`, {
      schema: pushViewSchema,
      upload,
      ...(signal ? { signal } : {}),
      query: { rebuild: flags.rebuild ? 1 : undefined, clean: flags.clean ? 1 : undefined },
      idempotencyKey: randomUUID(),
      ...(flags.buildHash ? { headers: { 'x-cycle-build-hash': flags.buildHash } } : {}),
    }).then((r) => r.body);
  }

  /** The project's status, or undefined when the server has never seen it. */
  async status(name: string, signal?: AbortSignal) {
    // request() checks the schema for 2xx answers only; a 404 is an answer here, not an error.
    const answer = await this.request('GET', `/api/v1/projects/${encodeURIComponent(name)}/status`, {
      schema: projectStatusViewSchema,
      accept: [404],
      ...(signal ? { signal } : {}),
    });
    return answer.status === 404 ? undefined : answer.body;
  }

  details(name: string) {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(name)}/status/details`, { schema: projectStatusViewSchema }).then((r) => r.body);
  }

  init(name: string) {
    return this.request('POST', `/api/v1/projects/${encodeURIComponent(name)}/init`, {
      json: {},
      idempotencyKey: randomUUID(),
      schema: prepareViewSchema,
    }).then((r) => r.body);
  }

  invalidate(name: string) {
    return this.request('POST', `/api/v1/projects/${encodeURIComponent(name)}/invalidate`, {
      json: {},
      idempotencyKey: randomUUID(),
      schema: invalidateViewSchema,
    }).then((r) => r.body);
  }

  kvGet(name: string, key: string) {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(name)}/kv/${encodeURIComponent(key)}`, { schema: kvValueViewSchema }).then((r) => r.body);
  }

  /** The entry as the server answers it; null when it answers nothing (a 204). */
  kvPut(name: string, key: string, value: unknown) {
    return this.request('PUT', `/api/v1/projects/${encodeURIComponent(name)}/kv/${encodeURIComponent(key)}`, {
      json: { value },
      schema: kvEntryViewSchema.nullable(),
    }).then((r) => r.body);
  }

  /** `{entries: [...]}` (ours) or a bare list: each entry needs its `key`. */
  kvList(name: string) {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(name)}/kv`, { schema: listAnswer('entries', kvListedViewSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.entries,
    );
  }

  // ---- the machine pool (cycle server's extension: docs/api.md, "Machines") ----

  /** A new machine token, shown once. */
  createMachineToken(name?: string) {
    return this.request('POST', '/api/v1/machines/tokens', { json: name === undefined ? {} : { name }, schema: machineTokenSchema }).then((r) => r.body);
  }

  /** Revokes a machine token by its id; the machine that enrolled with it is removed. */
  revokeMachineToken(tokenId: string) {
    return this.request('DELETE', `/api/v1/machines/tokens/${encodeURIComponent(tokenId)}`, {
      schema: z.looseObject({ token_id: z.string().optional() }),
    }).then((r) => r.body);
  }

  machines() {
    return this.request('GET', '/api/v1/machines', { schema: listAnswer('machines', machineSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.machines,
    );
  }

  machine(name: string) {
    return this.request('GET', `/api/v1/machines/${encodeURIComponent(name)}`, { schema: machineSchema }).then((r) => r.body);
  }

  /** Drains a machine (it finishes what it runs and takes nothing new), or ends the drain. */
  drainMachine(name: string, drain: boolean) {
    const route = `/api/v1/machines/${encodeURIComponent(name)}/drain`;
    return (drain ? this.request('POST', route, { json: {}, schema: machineSchema }) : this.request('DELETE', route, { schema: machineSchema })).then(
      (r) => r.body,
    );
  }

  /** Removes a machine: its token is revoked and its running tasks go back to the queue. */
  removeMachine(name: string) {
    return this.request('DELETE', `/api/v1/machines/${encodeURIComponent(name)}`, { schema: z.looseObject({ name: z.string().optional() }) }).then(
      (r) => r.body,
    );
  }

  /**
   * Why a job's queued tasks wait; undefined from a server without the route (404: Computalot, an
   * older cycle server) or with an answer that cannot be read (it is an extra line, never a failure).
   */
  async placement(id: string) {
    try {
      const answer = await this.request('GET', `/api/v1/jobs/${encodeURIComponent(id)}/placement`, { schema: jobPlacementSchema, accept: [404] });
      return answer.status === 404 ? undefined : answer.body;
    } catch {
      return undefined;
    }
  }

  submitJob(job: JobRequestInput, idempotencyKey: string = randomUUID()) {
    return this.request('POST', '/api/v1/jobs', { json: job, idempotencyKey, schema: submittedJobViewSchema }).then((r) => r.body);
  }

  submitBatch(jobs: unknown[], idempotencyKey: string = randomUUID()) {
    // `{jobs: [...]}` (ours) or a bare list: one entry per job sent.
    return this.request('POST', '/api/v1/jobs/batch', { json: { jobs }, idempotencyKey, schema: listAnswer('jobs', batchEntryViewSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.jobs,
    );
  }

  listJobs(filter: { tag?: string; status?: string; project?: string; limit?: number }) {
    // `{jobs: [...]}` (ours) or a bare list: neither shape is documented.
    const schema = z.union([z.looseObject({ jobs: z.array(jobViewSchema) }), z.array(jobViewSchema)]);
    return this.request('GET', '/api/v1/jobs', { query: filter, schema }).then((r) => (Array.isArray(r.body) ? r.body : r.body.jobs));
  }

  getJob(id: string) {
    return this.request('GET', `/api/v1/jobs/${encodeURIComponent(id)}`, { schema: jobViewSchema }).then((r) => r.body);
  }

  /**
   * The pages of a paged route (`/tasks`, `/results`, `/output`), each page's `next_cursor` asked
   * for next until there is none (a server that does not page answers one page).
   */
  private async *pages<T extends { next_cursor?: string | null | undefined }>(
    path: string,
    query: Record<string, string | number | undefined>,
    schema: z.ZodType<T>,
  ): AsyncGenerator<T> {
    const seen = new Set<string>();
    for (let cursor: string | undefined; ; ) {
      const page = (await this.request('GET', path, { query: { ...query, limit: PAGE_LIMIT, cursor }, schema })).body;
      yield page;
      if (!page.next_cursor) return;
      if (seen.has(page.next_cursor))
        throw new CycleError({
          message: `GET ${path}: the server gave the cursor "${page.next_cursor}" twice`,
          hint: 'the server pages wrongly; check CYCLE_API_URL',
          exitCode: ExitCode.network,
        });
      seen.add((cursor = page.next_cursor));
    }
  }

  /** Every task of a job, following the pages (`?status=` for those in one state only). */
  async tasks(id: string, filter: { status?: string } = {}) {
    const tasks: TaskView[] = [];
    for await (const page of this.pages(
      `/api/v1/jobs/${encodeURIComponent(id)}/tasks`,
      filter,
      z.looseObject({ tasks: z.array(taskViewSchema), next_cursor: nextCursor }),
    ))
      tasks.push(...page.tasks);
    return tasks;
  }

  /**
   * Every task's stage times (api/timings.ts), following the pages; undefined when the server has
   * no such route (Computalot, an older cycle server) while the job itself exists.
   */
  async timings(id: string): Promise<TaskTimings[] | undefined> {
    const tasks: TaskTimings[] = [];
    try {
      const schema = z.looseObject({ tasks: z.array(taskTimingsSchema), next_cursor: nextCursor });
      for await (const page of this.pages(`/api/v1/jobs/${encodeURIComponent(id)}/timings`, {}, schema)) tasks.push(...page.tasks);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      await this.getJob(id); // a job that is not there: its own 404, worded as such
      return undefined;
    }
    return tasks;
  }

  /** Every task's output (its last `tail` bytes), following the pages. */
  async output(id: string, tail?: number) {
    const schema = z.looseObject({
      job_id: z.string().optional(),
      tasks: z.array(
        z.looseObject({
          task_id: z.string().optional(),
          index: z.number().optional(),
          status: z.string().optional(),
          attempt: z.number().optional(),
          output: z.string().nullable().optional(),
          truncated: z.boolean().optional(),
        }),
      ),
      next_cursor: nextCursor,
    });
    const all: { job_id: string; tasks: z.infer<typeof schema>['tasks'] } = { job_id: id, tasks: [] };
    for await (const page of this.pages(`/api/v1/jobs/${encodeURIComponent(id)}/output`, { tail }, schema)) {
      all.job_id = page.job_id ?? id;
      all.tasks.push(...page.tasks);
    }
    return all;
  }

  /** `afterInterrupt`: the command was interrupted and cancels what it started (the request ignores the interrupt). */
  cancel(id: string, afterInterrupt = false) {
    return this.request('PUT', `/api/v1/jobs/${encodeURIComponent(id)}/cancel`, { schema: cancelledJobViewSchema, afterInterrupt }).then((r) => r.body);
  }

  /**
   * A job's whole results document, following the pages: items, tasks and artifact ids of each
   * page in order; status, counts and the aggregate (sent with the last page) from the last.
   */
  async results(id: string): Promise<ResultsView> {
    const pages: ResultsView[] = [];
    for await (const page of this.pages(`/api/v1/results/${encodeURIComponent(id)}`, {}, resultsViewSchema)) pages.push(page);
    // One page (a server that does not page): its document as it came, for --json.
    if (pages.length === 1) return pages[0]!;
    const last = pages.at(-1);
    if (!last) throw new CycleError({ message: `GET /api/v1/results/${id}: no answer`, exitCode: ExitCode.network });
    const { next_cursor: _next, ...merged } = last;
    void _next;
    // Each list only where the server sends it, so that --json shows no field it did not.
    if (pages.some((p) => p.items)) merged.items = pages.flatMap((p) => p.items ?? []);
    if (pages.some((p) => p.tasks)) merged.tasks = pages.flatMap((p) => p.tasks ?? []);
    if (pages.some((p) => p.artifact_ids)) merged.artifact_ids = pages.flatMap((p) => p.artifact_ids ?? []);
    return merged;
  }

  artifacts(filter: { job?: string; limit?: number } = {}) {
    return this.request('GET', '/api/v1/artifacts', { query: filter, schema: listAnswer('artifacts', artifactViewSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.artifacts,
    );
  }

  // ---- recipes, account, project creation (platform-facts.md B; answers read liberally) ----

  recipes() {
    return this.request('GET', '/api/v1/recipes', { schema: listAnswer('recipes', recipeViewSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.recipes,
    );
  }

  recipe(name: string) {
    return this.request('GET', `/api/v1/recipes/${encodeURIComponent(name)}`, { schema: recipeViewSchema }).then((r) => r.body);
  }

  /** A recipe's job: a typed payload, no project (a payload off its schema is a 422). */
  submitRecipe(name: string, body: { payload: Record<string, unknown>; timeout_s?: number }, idempotencyKey: string = randomUUID()) {
    return this.request('POST', `/api/v1/recipes/${encodeURIComponent(name)}/jobs`, { json: body, idempotencyKey, schema: submittedJobViewSchema }).then(
      (r) => r.body,
    );
  }

  /** A one-time sign-in link for the web page (`cycle dashboard`): the server's path, joined to the address this client talks to. */
  async dashboardLink(): Promise<{ url: string; expiresAt: string | undefined }> {
    const answer = await this.request('POST', '/api/v1/dashboard/links', {
      schema: z.looseObject({ path: z.string().regex(/^\/signin\?code=[A-Za-z0-9_-]+$/), expires_at: z.string().optional() }),
      json: {},
    });
    return { url: this.baseUrl.replace(/\/$/, '') + answer.body.path, expiresAt: answer.body.expires_at };
  }

  balance() {
    return this.request('GET', '/api/v1/account/balance', { schema: balanceViewSchema }).then((r) => r.body);
  }

  /** `holds` or `ledger`: a list, bare or under its own name (neither shape is documented). */
  accountEntries(kind: 'holds' | 'ledger') {
    return this.request('GET', `/api/v1/account/${kind}`, { schema: listAnswer(kind, z.looseObject({})) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body[kind],
    );
  }

  /** `POST /api/v1/projects`: makes the project that pushes then go to. */
  createProject(name: string, remoteDir?: string) {
    return this.request('POST', '/api/v1/projects', {
      json: { name, ...(remoteDir === undefined ? {} : { remote_dir: remoteDir }) },
      idempotencyKey: randomUUID(),
      schema: z.looseObject({}),
    }).then((r) => r.body);
  }

  /**
   * Asks whether the backend already has these bytes (`POST /api/v1/artifacts/direct`): the
   * answer, or undefined where the route is missing (404).
   */
  async artifactByHash(file: { sha256: string; size: number; filename: string }) {
    const answer = await this.request('POST', '/api/v1/artifacts/direct', {
      json: file,
      idempotencyKey: randomUUID(),
      accept: [404],
      schema: artifactRefSchema,
    });
    return answer.status === 404 ? undefined : answer.body;
  }

  /** `POST /api/v1/artifacts`: the raw bytes, streamed; content-addressed, so a retry is safe. */
  uploadArtifact(filename: string, upload: UploadBody, signal?: AbortSignal) {
    return this.request('POST', '/api/v1/artifacts', {
      upload,
      idempotencyKey: randomUUID(),
      headers: { 'x-artifact-filename': filename },
      schema: artifactRefSchema,
      ...(signal ? { signal } : {}),
    }).then((r) => r.body);
  }

  /** The bytes of an artifact, from `start` on (resuming a download); 416 when `start` is at or past the end. */
  downloadArtifact(id: string, start = 0, signal?: AbortSignal): Promise<RawResponse> {
    return this.request('GET', `/api/v1/artifacts/${encodeURIComponent(id)}`, {
      raw: true,
      accept: [416],
      headers: start > 0 ? { range: `bytes=${start}-` } : {},
      ...(signal ? { signal } : {}),
    });
  }

  // ---- volumes (docs/api.md, "Volumes") ----

  listVolumes() {
    return this.request('GET', '/api/v1/volumes', { schema: listAnswer('volumes', volumeViewSchema) }).then((r) =>
      Array.isArray(r.body) ? r.body : r.body.volumes,
    );
  }

  /** The sha256s among `files` that the server's store lacks: only those need sending. */
  missingVolumeBlobs(name: string, files: VolumeFile[], signal?: AbortSignal) {
    // Asking changes nothing on the server: safe to retry, so it carries a key.
    return this.request('POST', `/api/v1/volumes/${encodeURIComponent(name)}/missing`, {
      json: { files },
      idempotencyKey: randomUUID(),
      schema: z.looseObject({ missing: z.array(z.string()) }),
      ...(signal ? { signal } : {}),
    }).then((r) => r.body.missing);
  }

  /** One file's bytes, stored under its sha256 (the server checks them). */
  putVolumeBlob(sha256: string, upload: UploadBody, signal?: AbortSignal) {
    return this.request('PUT', `/api/v1/volumes/blobs/${sha256}`, {
      upload,
      schema: z.looseObject({}).nullable(),
      ...(signal ? { signal } : {}),
    }).then((r) => r.body);
  }

  /** Makes `files` the volume's content (every blob sent first). */
  commitVolume(name: string, files: VolumeFile[], signal?: AbortSignal) {
    return this.request('PUT', `/api/v1/volumes/${encodeURIComponent(name)}`, {
      json: { files },
      schema: z.looseObject({ bytes: z.number().nullable().optional(), unchanged: z.boolean().nullable().optional() }).nullable(),
      ...(signal ? { signal } : {}),
    }).then((r) => r.body);
  }

  removeVolume(name: string) {
    return this.request('DELETE', `/api/v1/volumes/${encodeURIComponent(name)}`, { schema: z.looseObject({}).nullable() }).then((r) => r.body);
  }

  /** An SSE stream from `lastEventId` on (see src/api/sse.ts for reading it). */
  openStream(path: string, lastEventId: string | undefined, signal?: AbortSignal): Promise<RawResponse> {
    return this.request('GET', path, {
      raw: true,
      headers: { accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
      idleMs: Math.max(STREAM_IDLE_MS, this.timeoutMs),
      ...(signal ? { signal } : {}),
    });
  }
}

/** An answer that is a list, or an object holding the list under `key`. */
function listAnswer<K extends string, T extends z.ZodType>(key: K, item: T) {
  // TypeScript widens a computed key to `string`; the cast gives the object its literal key back.
  return z.union([z.array(item), z.looseObject({ [key]: z.array(item) } as { [P in K]: z.ZodArray<T> })]);
}
