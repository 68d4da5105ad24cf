import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import {
  capturedQuerySchema,
  completeRequestSchema,
  heartbeatRequestSchema,
  leaseRequestSchema,
  MAX_REPORT_BYTES,
  releaseRequestSchema,
  reportRequestSchema,
} from '../../api/machine-protocol.js';
import type { z } from 'zod';
import { gone, zodError } from '../errors.js';
import type { MachineCaller, MachineWork } from '../machines/work.js';
import { declaredLength, HttpError, readJson, type Router, type RouteContext, sendJson } from './router.js';

const JSON_LIMIT = 1 << 20;
/** A task's outcome carries its result (the runner caps a result file well below this). */
const COMPLETE_LIMIT = 80 << 20;

/**
 * The daemon's routes (`cycle daemon run`; docs/api.md, "Machines: the daemon's protocol"),
 * each for a machine token only: enrol and heartbeat, a long poll for leases, calls on the
 * caller's own leases, and the inputs of the leases it holds now.
 */
export function addDaemonRoutes(router: Router, work: MachineWork): void {
  const machine = { auth: 'machine' as const };
  const caller = (ctx: RouteContext): MachineCaller => ctx.machine!;
  const body = async <T>(ctx: RouteContext, schema: z.ZodType<T>, limit = JSON_LIMIT): Promise<T> => {
    const parsed = schema.safeParse(await readJson(ctx.req, limit));
    if (!parsed.success) throw zodError(parsed.error);
    return parsed.data;
  };

  router.add(
    'POST',
    '/api/v1/machine/heartbeat',
    async (ctx) => sendJson(ctx.res, 200, work.heartbeat(caller(ctx), await body(ctx, heartbeatRequestSchema))),
    machine,
  );
  router.add(
    'POST',
    '/api/v1/machine/lease',
    async (ctx) => {
      const { max, wait_ms } = await body(ctx, leaseRequestSchema);
      // The poll ends early when the daemon hangs up: the leases made meanwhile are given back.
      // (Only when unanswered: an abort makes a DOMException, which a busy pool felt on every poll.)
      const gone = new AbortController();
      ctx.res.once('close', () => {
        if (!ctx.res.writableEnded) gone.abort();
      });
      sendJson(ctx.res, 200, await work.lease(caller(ctx), max, wait_ms, gone.signal));
    },
    machine,
  );
  router.add(
    'POST',
    '/api/v1/machine/leases/:id/renew',
    async (ctx) => {
      await readJson(ctx.req, JSON_LIMIT);
      sendJson(ctx.res, 200, await work.renew(caller(ctx), ctx.params.id!));
    },
    machine,
  );
  router.add(
    'POST',
    '/api/v1/machine/leases/:id/report',
    async (ctx) => {
      await work.report(caller(ctx), ctx.params.id!, await body(ctx, reportRequestSchema, MAX_REPORT_BYTES));
      sendJson(ctx.res, 200, { ok: true });
    },
    machine,
  );
  router.add(
    'POST',
    '/api/v1/machine/leases/:id/complete',
    async (ctx) => {
      await work.complete(caller(ctx), ctx.params.id!, await body(ctx, completeRequestSchema, COMPLETE_LIMIT));
      sendJson(ctx.res, 200, { ok: true });
    },
    machine,
  );
  router.add(
    'POST',
    '/api/v1/machine/leases/:id/release',
    async (ctx) => {
      const { reason, unstarted } = await body(ctx, releaseRequestSchema);
      await work.release(caller(ctx), ctx.params.id!, reason, unstarted === true);
      sendJson(ctx.res, 200, { ok: true });
    },
    machine,
  );
  router.add(
    'PUT',
    '/api/v1/machine/leases/:id/captured',
    async (ctx) => {
      const parsed = capturedQuerySchema.safeParse(Object.fromEntries(ctx.query));
      if (!parsed.success) throw zodError(parsed.error);
      sendJson(ctx.res, 200, await work.captured(caller(ctx), ctx.params.id!, parsed.data, ctx.req, declaredLength(ctx.req)));
    },
    machine,
  );

  // ---- inputs of the leases the machine holds now ----
  router.add(
    'GET',
    '/api/v1/machine/projects/:name/revisions/:number',
    (ctx) => {
      const { content_hash, format } = work.revision(caller(ctx), ctx.params.name!, revisionNumber(ctx));
      sendJson(ctx.res, 200, { content_hash, format });
    },
    machine,
  );
  router.add(
    'GET',
    '/api/v1/machine/projects/:name/revisions/:number/tarball',
    async (ctx) => {
      const revision = work.revision(caller(ctx), ctx.params.name!, revisionNumber(ctx));
      await sendFile(ctx, revision.tarball, revision.content_hash, `revision ${ctx.params.number} of ${ctx.params.name}`);
    },
    machine,
  );
  router.add(
    'GET',
    '/api/v1/machine/artifacts/:id',
    async (ctx) => {
      const artifact = work.download(caller(ctx), ctx.params.id!);
      await sendFile(ctx, artifact.path, artifact.sha256, `artifact ${ctx.params.id}`);
    },
    machine,
  );
  router.add(
    'GET',
    '/api/v1/machine/tasks/:id/captured',
    (ctx) => {
      sendJson(ctx.res, 200, { files: work.capturedList(caller(ctx), ctx.params.id!).map(({ stored: _stored, ...file }) => file) });
    },
    machine,
  );
  router.add(
    'GET',
    '/api/v1/machine/tasks/:id/captured/:artifact',
    async (ctx) => {
      const file = work.capturedList(caller(ctx), ctx.params.id!).find((f) => f.id === ctx.params.artifact);
      if (!file) throw new HttpError(404, 'not_found', `task ${ctx.params.id} captured no artifact ${ctx.params.artifact}`, 'artifact');
      await sendFile(ctx, file.stored, file.sha256, `artifact ${file.id}`);
    },
    machine,
  );
  router.add('GET', '/api/v1/machine/volumes/:name', (ctx) => sendJson(ctx.res, 200, work.volume(caller(ctx), volumeParam(ctx))), machine);
  router.add(
    'GET',
    '/api/v1/machine/volumes/:name/blobs/:sha',
    async (ctx) => {
      const sha = ctx.params.sha!;
      await sendFile(ctx, work.volumeBlob(caller(ctx), volumeParam(ctx), sha), sha, `a file of volume ${ctx.params.name}`);
    },
    machine,
  );
}

function revisionNumber(ctx: RouteContext): number {
  const value = Number(ctx.params.number);
  if (!Number.isInteger(value) || value < 1)
    throw new HttpError(400, 'invalid_request', `the revision must be a number from 1, got ${ctx.params.number}`, 'number');
  return value;
}

/** A volume's name in the path (`builtin/x` sent %-encoded as one segment). */
function volumeParam(ctx: RouteContext): string {
  return ctx.params.name!;
}

/** A stored file, whole, with its sha256 (the daemon checks what it got). Never follows a link. */
async function sendFile(ctx: RouteContext, file: string, sha256: string, what: string): Promise<void> {
  const handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => undefined);
  if (!handle) throw gone('gone', `${what} is no longer stored`);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw gone('gone', `${what} is no longer stored`);
    ctx.res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': stat.size, 'X-Checksum-Sha256': sha256 });
    const stream = handle.createReadStream({ autoClose: false });
    await new Promise<void>((resolve, reject) => stream.on('error', reject).pipe(ctx.res).on('finish', resolve).on('error', reject).on('close', resolve));
  } finally {
    await handle.close();
  }
}
