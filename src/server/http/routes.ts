import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { batchRequestSchema, JOB_STATUSES, projectName, TASK_STATUSES, type Job } from '../../api/schemas.js';
import type { EventLog } from '../events.js';
import { serveSse, type StreamGate } from './sse.js';
import { DomainError, gone, zodError } from '../errors.js';
import {
  contentDisposition,
  declaredLength,
  headerValue,
  HttpError,
  percentEncode,
  readJson,
  Router,
  sendJson,
  sendJsonStreamed,
  type RouteContext,
} from './router.js';
import { indexListParam, intParam, pageRequest } from './paging.js';
import { fingerprint, isTerminal, OUTPUT_DEFAULT_TAIL, OUTPUT_MAX_TAIL, type JobRow, type JobService, type PreparedJob } from '../jobs.js';
import { JOB_LOG_DEFAULT_LINES, JOB_LOG_MAX_LINES } from '../jobs/job-log.js';
import { PROGRESS_DEFAULT_POINTS, PROGRESS_DEFAULT_TASKS, PROGRESS_MAX_POINTS, PROGRESS_MAX_TASKS } from '../jobs/progress.js';
import { SESSION_ROUTES } from '../web/session-routes.js';
import type { WebSessions } from '../web/sessions.js';
import { addWebRoutes } from './web-routes.js';
import { feedbackRequestSchema, storeFeedback } from '../feedback.js';
import type { Account } from '../account.js';
import type { Clock } from '../../context.js';
import type { DB } from '../db.js';
import type { ProjectService } from '../projects.js';
import { RecipeService } from '../recipes.js';
import { directUploadSchema, type UploadService } from '../uploads.js';
import type { WorkQueue } from '../queue/work-queue.js';
import { VolumeService } from '../volumes.js';
import type { MachineRegistry } from '../machines/registry.js';
import { addMachineRoutes } from './machine-routes.js';

export interface AppOptions {
  token: string;
  db: DB;
  /** Where stored timestamps come from (the system's clock unless set). */
  clock?: Clock;
  account: Account;
  uploads: UploadService;
  version: string;
  projects: ProjectService;
  recipes: RecipeService;
  jobs: JobService;
  queue: Pick<WorkQueue, 'cancel' | 'placement'>;
  /** The machine pool: its user routes, and machine tokens on machine routes. */
  machines: MachineRegistry;
  volumes: VolumeService;
  events: EventLog;
  heartbeatMs: number;
  /** The cap on open event streams, and how each treats a slow reader. */
  streams: StreamGate;
  log: (line: string) => void;
  /** Never shown in an error answer (the data folder). */
  hostPaths: string[];
  /** This server's own address (`http://host:port`, as it listens): never the request's Host header. */
  baseUrl: () => string;
  /** The web page's sign-in codes and sessions. */
  sessions: WebSessions;
}

const JSON_LIMIT = 1 << 20;
const BATCH_LIMIT = 16 << 20;
/** A volume's file list: 200,000 files of ~150 bytes of JSON each fit. */
const VOLUME_MANIFEST_LIMIT = 64 << 20;

/** Every route of the API (docs/api.md lists them with their shapes). */
export function createRouter(options: AppOptions): Router {
  const { projects, recipes, jobs, queue, events, account } = options;
  type Held = ReturnType<Account['hold']>;
  /** A job request of `POST /api/v1/jobs` (or a batch entry): a project's job, or with `recipe`, a recipe's. */
  const prepare = (body: unknown): Promise<PreparedJob> =>
    RecipeService.isRecipeJob(body) ? jobs.prepareRequest(recipes.jobRequest(body)) : jobs.prepare(body);
  const holdFor = (prepared: PreparedJob): Held => account.hold(prepared.request.project, prepared.plan.count, prepared.request.timeout_s);
  /** Inserts prepared jobs whose holds are placed: each hold then names its job; a failed insert releases them. */
  const submit = async (entries: Array<{ prepared: PreparedJob; held: Held }>): Promise<Array<Job & { quote: Held['quote'] }>> => {
    let rows: JobRow[];
    try {
      rows = await jobs.insert(entries.map((e) => e.prepared));
    } catch (error) {
      for (const { held } of entries) account.release(held.holdId);
      throw error;
    }
    return rows.map((row, i) => {
      const { held } = entries[i]!;
      account.attach(held.holdId, held.quote.id, row.id);
      return { ...jobs.document(row), quote: { ...held.quote, job_id: row.id } };
    });
  };
  /** One job (project or recipe): planned, its hold placed, inserted; answered once per Idempotency-Key. */
  const submitOne = async (ctx: RouteContext, requestFingerprint: () => string, plan: () => Promise<PreparedJob>): Promise<void> => {
    const answer = await jobs.idempotent(idempotencyKey(ctx), requestFingerprint, async () => {
      const prepared = await plan();
      const [submitted] = await submit([{ prepared, held: holdFor(prepared) }]);
      return { status: 201, body: submitted! };
    });
    sendJson(ctx.res, answer.status, answer.body, answer.replayed ? { 'Idempotent-Replayed': 'true' } : {});
  };
  const router = new Router({
    token: options.token,
    log: options.log,
    hostPaths: options.hostPaths,
    machines: options.machines,
    sessions: options.sessions,
    sessionRoutes: SESSION_ROUTES,
  });
  addWebRoutes(router, { sessions: options.sessions });
  const name = (ctx: RouteContext): string => {
    const value = ctx.params.name!;
    if (!projectName.safeParse(value).success) throw new HttpError(400, 'invalid_project_name', `invalid project name "${value}"`, 'name');
    return value;
  };

  // Public, as on Computalot: liveness and the API's index.
  const health = (ctx: RouteContext): void => sendJson(ctx.res, 200, { ok: true, status: 'ok', version: options.version });
  router.add('GET', '/health', health, { public: true });
  router.add('GET', '/api/v1/health', health, { public: true });
  router.add('GET', '/api/v1/docs', (ctx) => sendJson(ctx.res, 200, apiIndex(options.version)), { public: true });
  router.add(
    'POST',
    '/api/v1/feedback',
    async (ctx) => {
      const parsed = feedbackRequestSchema.safeParse(await readJson(ctx.req, JSON_LIMIT));
      if (!parsed.success) throw zodError(parsed.error);
      sendJson(ctx.res, 201, storeFeedback(options.db, options.clock, parsed.data));
    },
    { public: true },
  );

  // ---- projects ----
  router.add('GET', '/api/v1/projects', (ctx) => sendJson(ctx.res, 200, { projects: projects.list() }));
  router.add('POST', '/api/v1/projects', async (ctx) => {
    const parsed = projectCreateSchema.safeParse(await readJson(ctx.req, JSON_LIMIT));
    if (!parsed.success) throw zodError(parsed.error);
    const { project, created } = projects.create(parsed.data.name, parsed.data.remote_dir ?? null);
    sendJson(ctx.res, created ? 201 : 200, { ...project, id: project.name, push_url: `/api/v1/projects/${project.name}/push` });
  });
  router.add('POST', '/api/v1/projects/:name/push', async (ctx) => {
    const header = ctx.req.headers['x-cycle-build-hash'];
    const result = await projects.push(name(ctx), ctx.req, {
      rebuild: flag(ctx.query.get('rebuild')),
      clean: flag(ctx.query.get('clean')),
      declaredBytes: declaredLength(ctx.req),
      ...(typeof header === 'string' ? { clientBuildHash: header } : {}),
    });
    sendJson(ctx.res, result.unchanged ? 200 : 201, result);
  });
  // ---- account (billing) ----
  router.add('GET', '/api/v1/account/balance', (ctx) => sendJson(ctx.res, 200, account.balance()));
  router.add('GET', '/api/v1/account/holds', (ctx) => sendJson(ctx.res, 200, { holds: account.holds() }));
  router.add('GET', '/api/v1/account/ledger', (ctx) => sendJson(ctx.res, 200, account.ledger()));
  router.add('GET', '/api/v1/account/quotes', (ctx) => sendJson(ctx.res, 200, { quotes: account.quotes() }));

  router.add('POST', '/api/v1/projects/:name/init', async (ctx) => {
    await readJson(ctx.req, JSON_LIMIT);
    sendJson(ctx.res, 202, projects.init(name(ctx)));
  });
  router.add('POST', '/api/v1/projects/:name/invalidate', async (ctx) => sendJson(ctx.res, 200, await projects.invalidate(name(ctx))));
  router.add('GET', '/api/v1/projects/:name/status', (ctx) => sendJson(ctx.res, 200, projects.status(name(ctx))));
  router.add('GET', '/api/v1/projects/:name/status/details', (ctx) => sendJson(ctx.res, 200, projects.details(name(ctx))));
  router.add('GET', '/api/v1/projects/:name/stream', async (ctx) => {
    const project = name(ctx);
    projects.requireActive(project);
    await serveSse(ctx, events, { filter: { project }, finished: () => false, heartbeatMs: options.heartbeatMs, gate: options.streams });
  });
  router.add('GET', '/api/v1/projects/:name/kv', (ctx) => sendJson(ctx.res, 200, { entries: projects.kvList(name(ctx)) }));
  router.add('GET', '/api/v1/projects/:name/kv/:key', (ctx) => sendJson(ctx.res, 200, projects.kvGet(name(ctx), ctx.params.key!)));
  router.add('PUT', '/api/v1/projects/:name/kv/:key', async (ctx) => {
    const body = (await readJson(ctx.req, 128 * 1024)) as { value?: unknown };
    if (body === null || typeof body !== 'object' || !('value' in body)) throw new HttpError(400, 'invalid_request', 'send {"value": <JSON>}', 'value');
    sendJson(ctx.res, 200, projects.kvPut(name(ctx), ctx.params.key!, body.value));
  });

  // ---- jobs ----
  router.add('POST', '/api/v1/jobs', async (ctx) => {
    const body = await readJson(ctx.req, JSON_LIMIT);
    await submitOne(
      ctx,
      () => fingerprint('POST', '/api/v1/jobs', body),
      () => prepare(body),
    );
  });
  router.add('POST', '/api/v1/jobs/batch', async (ctx) => {
    const body = await readJson(ctx.req, BATCH_LIMIT);
    const parsed = batchRequestSchema.safeParse(body);
    if (!parsed.success) throw zodError(parsed.error);
    const answer = await jobs.idempotent(
      idempotencyKey(ctx),
      () => fingerprint('POST', '/api/v1/jobs/batch', body),
      async () => {
        type Outcome =
          | { index: number; ok: true; prepared: PreparedJob; held: Held }
          | { index: number; ok: false; error: { code: string; message: string; field?: string } };
        const outcomes: Outcome[] = [];
        for (const [index, entry] of parsed.data.jobs.entries()) {
          try {
            const prepared = await prepare(entry);
            // Each entry holds its own quote: one the balance cannot cover is refused (402), the others go on.
            outcomes.push({ index, ok: true, prepared, held: holdFor(prepared) });
          } catch (error) {
            // A refused entry (a domain error) is answered in its place.
            if (!(error instanceof DomainError)) throw error;
            outcomes.push({
              index,
              ok: false,
              error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}), ...error.extra },
            });
          }
        }
        const okOnes = outcomes.filter((o): o is Extract<Outcome, { ok: true }> => o.ok);
        const documents = await submit(okOnes);
        const byIndex = new Map(okOnes.map((o, i) => [o.index, documents[i]!]));
        return {
          status: 200,
          body: {
            jobs: outcomes.map((o) => {
              if (!o.ok) return o;
              const job = byIndex.get(o.index)!;
              return { index: o.index, ok: true, job, payload: job.payload, meta: job.meta, variant: job.variant };
            }),
          },
        };
      },
    );
    sendJson(ctx.res, answer.status, answer.body, answer.replayed ? { 'Idempotent-Replayed': 'true' } : {});
  });
  router.add('GET', '/api/v1/jobs', (ctx) => {
    const status = ctx.query.get('status') ?? undefined;
    if (status && !(JOB_STATUSES as readonly string[]).includes(status))
      throw new HttpError(400, 'invalid_request', `status must be one of ${JOB_STATUSES.join(', ')}`, 'status');
    const limit = Number(ctx.query.get('limit') ?? 50);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, 'invalid_request', 'limit must be an integer from 1 to 1000', 'limit');
    const cursor = ctx.query.get('cursor');
    if (cursor !== null && !/^\d{1,15}$/.test(cursor))
      throw new HttpError(400, 'invalid_request', `cursor must be the next_cursor of a previous page, got "${cursor.slice(0, 40)}"`, 'cursor');
    // Read before the page: a stream opened from it misses nothing that changed after.
    const lastEventId = events.lastSeq();
    const page = jobs.list({
      ...(ctx.query.get('tag') ? { tag: ctx.query.get('tag')! } : {}),
      ...(status ? { status } : {}),
      ...(ctx.query.get('project') ? { project: ctx.query.get('project')! } : {}),
      ...(cursor !== null ? { before: Number(cursor) } : {}),
      limit,
    });
    sendJson(ctx.res, 200, { ...page, last_event_id: String(lastEventId) });
  });
  // Every job's status changes and counts (the web page's jobs list follows it).
  router.add('GET', '/api/v1/jobs/stream', (ctx) =>
    serveSse(ctx, events, { filter: { jobsActivity: true }, finished: () => false, heartbeatMs: options.heartbeatMs, gate: options.streams }),
  );
  router.add('GET', '/api/v1/jobs/watch', async (ctx) => {
    const ids = (ctx.query.get('ids') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (ids.length === 0) throw new HttpError(400, 'invalid_request', 'give the jobs to watch: ?ids=job_a,job_b', 'ids');
    for (const id of ids) jobs.require(id);
    const idSet = new Set(ids);
    await serveSse(ctx, events, {
      filter: { jobIds: idSet },
      finished: () => ids.every((id) => isTerminal(jobs.row(id)!.status)),
      heartbeatMs: options.heartbeatMs,
      gate: options.streams,
    });
  });
  router.add('GET', '/api/v1/jobs/:id', (ctx) => sendJson(ctx.res, 200, jobs.document(jobs.require(ctx.params.id!))));
  router.add('GET', '/api/v1/jobs/:id/tasks', async (ctx) => {
    const job = jobs.require(ctx.params.id!);
    const asked = ctx.query.get('status');
    const status = TASK_STATUSES.find((s) => s === asked);
    if (asked !== null && !status) throw new HttpError(400, 'invalid_request', `status must be one of ${TASK_STATUSES.join(', ')}`, 'status');
    await sendJsonStreamed(ctx.res, 200, jobs.tasksPage(job, pageRequest(ctx.query), status));
  });
  router.add('GET', '/api/v1/jobs/:id/progress', (ctx) => {
    const job = jobs.require(ctx.params.id!);
    const maxPoints = intParam(ctx.query, 'max_points', { min: 1, max: PROGRESS_MAX_POINTS, fallback: PROGRESS_DEFAULT_POINTS });
    // `?tasks=3,17,42`: the tasks the web page's user picked to draw, instead of a page of them.
    const picked = ctx.query.get('tasks');
    if (picked !== null)
      return sendJsonStreamed(ctx.res, 200, { ...jobs.progress(job, { indexes: indexListParam(ctx.query, 'tasks', PROGRESS_MAX_TASKS) }, maxPoints) });
    const { cursor } = pageRequest(ctx.query);
    const limit = intParam(ctx.query, 'limit', { min: 1, max: PROGRESS_MAX_TASKS, fallback: PROGRESS_DEFAULT_TASKS });
    return sendJsonStreamed(ctx.res, 200, { ...jobs.progress(job, { cursor, limit }, maxPoints) });
  });
  // Where each task's time went (api/timings.ts): beside the task documents, not in them.
  router.add('GET', '/api/v1/jobs/:id/timings', async (ctx) => {
    const job = jobs.require(ctx.params.id!);
    await sendJsonStreamed(ctx.res, 200, jobs.timingsPage(job, pageRequest(ctx.query)));
  });
  router.add('GET', '/api/v1/jobs/:id/output', async (ctx) => {
    const job = jobs.require(ctx.params.id!);
    const tail = intParam(ctx.query, 'tail', { min: 1, max: OUTPUT_MAX_TAIL, fallback: OUTPUT_DEFAULT_TAIL });
    await sendJsonStreamed(ctx.res, 200, await jobs.output(job, tail, pageRequest(ctx.query)));
  });
  // Every task's newest lines, interleaved as heard (the web page's "all tasks" log).
  router.add('GET', '/api/v1/jobs/:id/log', (ctx) => {
    const job = jobs.require(ctx.params.id!);
    const lines = intParam(ctx.query, 'lines', { min: 1, max: JOB_LOG_MAX_LINES, fallback: JOB_LOG_DEFAULT_LINES });
    return sendJsonStreamed(ctx.res, 200, { ...jobs.log(job, lines) });
  });
  router.add('GET', '/api/v1/jobs/:id/stream', async (ctx) => {
    const job = jobs.require(ctx.params.id!);
    await serveSse(ctx, events, {
      filter: { jobIds: new Set([job.id]) },
      finished: () => isTerminal(jobs.row(job.id)!.status),
      heartbeatMs: options.heartbeatMs,
      gate: options.streams,
    });
  });
  router.add('PUT', '/api/v1/jobs/:id/cancel', async (ctx) => {
    const job = jobs.require(ctx.params.id!);
    await queue.cancel(job.id);
    sendJson(ctx.res, 200, jobs.document(jobs.require(job.id)));
  });
  // ---- machines (the pool of `cycle daemon run` machines) and why queued tasks wait ----
  addMachineRoutes(router, { machines: options.machines, queue });

  router.add('GET', '/api/v1/results/:id', (ctx) => sendJsonStreamed(ctx.res, 200, jobs.results(jobs.require(ctx.params.id!), pageRequest(ctx.query))));

  // ---- artifacts ----
  router.add('GET', '/api/v1/artifacts', (ctx) => {
    const jobId = ctx.query.get('job') ?? ctx.query.get('job_id') ?? undefined;
    if (jobId) jobs.require(jobId);
    sendJson(ctx.res, 200, {
      artifacts: jobs.artifacts({ ...(jobId ? { jobId } : {}), limit: intParam(ctx.query, 'limit', { min: 1, max: 1000, fallback: 1000 }) }),
    });
  });
  router.add('POST', '/api/v1/artifacts', async (ctx) => {
    const { document, created } = await options.uploads.upload(ctx.req, {
      filename: headerValue(ctx.req, 'x-artifact-filename'),
      declared: declaredLength(ctx.req),
    });
    sendJson(ctx.res, created ? 201 : 200, document);
  });
  router.add('POST', '/api/v1/artifacts/direct', async (ctx) => {
    const parsed = directUploadSchema.safeParse(await readJson(ctx.req, JSON_LIMIT));
    if (!parsed.success) throw zodError(parsed.error);
    sendJson(ctx.res, 200, options.uploads.direct(parsed.data, options.baseUrl()));
  });
  router.add('GET', '/api/v1/artifacts/:id', async (ctx) => {
    // A client's upload, else a file a job left.
    const upload = options.uploads.row(ctx.params.id!);
    const artifact = upload ? { id: upload.id, path: upload.path, sha256: upload.sha256, name: upload.filename } : jobs.artifact(ctx.params.id!);
    // Opened without following a link and checked as a regular file: what the job left is never
    // a way to another host file.
    const handle = await fs.open(artifact.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => undefined);
    if (!handle) throw gone('gone', `artifact ${artifact.id} is no longer stored`);
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw gone('gone', `artifact ${artifact.id} is no longer stored`);
      // One range, `bytes=N-` or `bytes=N-M` (other forms are ignored: the whole file, as RFC 9110 allows).
      const range = /^bytes=(\d+)-(\d*)$/.exec(String(ctx.req.headers.range ?? ''));
      const start = range ? Number(range[1]) : 0;
      // A range that starts at or past the end is unsatisfiable (RFC 9110 §15.5.17).
      if (range && start >= stat.size) {
        const identity = {
          'Content-Range': `bytes */${stat.size}`,
          'Accept-Ranges': 'bytes',
          'X-Checksum-Sha256': artifact.sha256,
          'X-Artifact-Name': percentEncode(artifact.name),
          'X-Artifact-Size': String(stat.size),
        };
        sendJson(
          ctx.res,
          416,
          { error: { code: 'range_not_satisfiable', message: `the range starts at byte ${start}, but the artifact has ${stat.size} bytes` } },
          identity,
        );
        return;
      }
      const end = range?.[2] ? Math.min(Number(range[2]), stat.size - 1) : stat.size - 1;
      if (range && end < start) throw new HttpError(400, 'invalid_range', `the Range header ${range[0]} ends before it starts`, 'Range');
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/octet-stream',
        'Content-Length': Math.max(end - start + 1, 0),
        'Accept-Ranges': 'bytes',
        ETag: `"${artifact.sha256}"`,
        'X-Checksum-Sha256': artifact.sha256,
        'X-Artifact-Name': percentEncode(artifact.name),
        'X-Artifact-Size': stat.size,
        'Content-Disposition': contentDisposition(path.posix.basename(artifact.name)),
      };
      if (range) headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
      ctx.res.writeHead(range ? 206 : 200, headers);
      const body = handle.createReadStream({ start, end: Math.max(end, start), autoClose: false });
      await new Promise<void>((resolve, reject) => body.on('error', reject).pipe(ctx.res).on('finish', resolve).on('error', reject));
    } finally {
      await handle.close();
    }
  });

  // ---- volumes (the account's; docs/api.md, "Volumes") ----
  const volumeName = (ctx: RouteContext): string => VolumeService.checkName(ctx.params.name!);
  router.add('GET', '/api/v1/volumes', (ctx) => sendJson(ctx.res, 200, { volumes: options.volumes.list() }));
  router.add('POST', '/api/v1/volumes/:name/missing', async (ctx) => {
    volumeName(ctx);
    sendJson(ctx.res, 200, { missing: await options.volumes.missing(await readJson(ctx.req, VOLUME_MANIFEST_LIMIT)) });
  });
  router.add('PUT', '/api/v1/volumes/blobs/:sha', async (ctx) => {
    const blob = await options.volumes.putBlob(ctx.params.sha!, ctx.req, declaredLength(ctx.req));
    sendJson(ctx.res, blob.stored ? 201 : 200, blob);
  });
  // Paged like a job's tasks: a volume may hold 200,000 files.
  router.add('GET', '/api/v1/volumes/:name', (ctx) => sendJson(ctx.res, 200, options.volumes.filesPage(volumeName(ctx), pageRequest(ctx.query))));
  router.add('PUT', '/api/v1/volumes/:name', async (ctx) => {
    const volume = volumeName(ctx);
    sendJson(ctx.res, 200, await options.volumes.commit(volume, await readJson(ctx.req, VOLUME_MANIFEST_LIMIT)));
  });
  router.add('DELETE', '/api/v1/volumes/:name', async (ctx) => sendJson(ctx.res, 200, await options.volumes.remove(volumeName(ctx))));

  // ---- recipes (the operator's, from cycle server --recipes DIR) ----
  router.add('GET', '/api/v1/recipes', (ctx) => sendJson(ctx.res, 200, { recipes: recipes.list() }));
  router.add('GET', '/api/v1/recipes/:name', (ctx) => sendJson(ctx.res, 200, recipes.detail(ctx.params.name!)));
  router.add('POST', '/api/v1/recipes/:name/jobs', async (ctx) => {
    const body = await readJson(ctx.req, JSON_LIMIT);
    const recipe = ctx.params.name!;
    await submitOne(
      ctx,
      () => fingerprint('POST', `/api/v1/recipes/${recipe}/jobs`, body),
      () => jobs.prepareRequest(recipes.jobRequest(body, recipe)),
    );
  });

  return router;
}

const projectCreateSchema = z.strictObject({
  name: projectName,
  // Where the project's files live on the client's side; kept and shown, never used as a host path here.
  remote_dir: z.string().max(4096).optional(),
});

/** `GET /api/v1/docs`: Computalot's index fields (name, status, version, auth, description, docs). */
function apiIndex(version: string): Record<string, unknown> {
  return {
    name: 'cycle server',
    status: 'ok',
    version,
    description: 'A local Computalot-compatible backend: projects built and run in Docker on this machine.',
    auth: {
      type: 'bearer',
      header: 'Authorization: Bearer <token>',
      token: 'made on the first start, kept in <data-dir>/token',
      public_routes: ['GET /health', 'GET /api/v1/health', 'GET /api/v1/docs', 'POST /api/v1/feedback'],
    },
    docs: { index: '/api/v1/docs', api: 'docs/api.md in the cycle package', python_sdk: null },
  };
}

function flag(value: string | null): boolean {
  return value === '1' || value === 'true';
}

function idempotencyKey(ctx: RouteContext): string | undefined {
  const value = ctx.req.headers['idempotency-key'];
  const key = Array.isArray(value) ? value[0] : value;
  if (key !== undefined && (key.length < 8 || key.length > 200))
    throw new HttpError(400, 'invalid_request', 'Idempotency-Key must be 8-200 characters', 'Idempotency-Key');
  return key;
}
