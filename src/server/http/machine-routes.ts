import { z } from 'zod';
import { machineName } from '../../api/machines.js';
import { zodError } from '../errors.js';
import type { MachineRegistry } from '../machines/registry.js';
import type { WorkQueue } from '../queue/work-queue.js';
import { HttpError, readJson, type RouteContext, type Router, sendJson } from './router.js';

const JSON_LIMIT = 64 * 1024;

const tokenRequestSchema = z.strictObject({ name: machineName.optional() });
const drainRequestSchema = z.strictObject({ drain: z.boolean().optional() });

/**
 * The user's routes of the machine pool (docs/api.md, "Machines"; a cycle-server extension, with
 * the user's token): machine tokens, the machines' list and documents, drain and remove; and why a
 * job's queued tasks wait (`GET /api/v1/jobs/:id/placement`). The daemons' own routes, with a
 * machine token, are elsewhere.
 */
export function addMachineRoutes(router: Router, options: { machines: MachineRegistry; queue: Pick<WorkQueue, 'placement'> }): void {
  const { machines, queue } = options;
  const name = (ctx: RouteContext): string => {
    const value = ctx.params.name!;
    if (!machineName.safeParse(value).success) throw new HttpError(400, 'invalid_machine_name', `invalid machine name "${value.slice(0, 80)}"`, 'name');
    return value;
  };
  router.add('POST', '/api/v1/machines/tokens', async (ctx) => {
    const parsed = tokenRequestSchema.safeParse((await readJson(ctx.req, JSON_LIMIT)) ?? {});
    if (!parsed.success) throw zodError(parsed.error);
    sendJson(ctx.res, 201, machines.createToken(parsed.data.name));
  });
  router.add('DELETE', '/api/v1/machines/tokens/:id', (ctx) => sendJson(ctx.res, 200, machines.revokeToken(ctx.params.id!)));
  router.add('GET', '/api/v1/machines', (ctx) => sendJson(ctx.res, 200, { machines: machines.list() }));
  router.add('GET', '/api/v1/machines/:name', (ctx) => sendJson(ctx.res, 200, machines.show(name(ctx))));
  router.add('POST', '/api/v1/machines/:name/drain', async (ctx) => {
    const parsed = drainRequestSchema.safeParse((await readJson(ctx.req, JSON_LIMIT)) ?? {});
    if (!parsed.success) throw zodError(parsed.error);
    sendJson(ctx.res, 200, machines.drain(name(ctx), parsed.data.drain ?? true));
  });
  router.add('DELETE', '/api/v1/machines/:name/drain', (ctx) => sendJson(ctx.res, 200, machines.drain(name(ctx), false)));
  router.add('DELETE', '/api/v1/machines/:name', (ctx) => sendJson(ctx.res, 200, machines.remove(name(ctx))));
  router.add('GET', '/api/v1/jobs/:id/placement', async (ctx) => {
    const jobId = ctx.params.id!;
    sendJson(ctx.res, 200, (await queue.placement(jobId)) ?? { job_id: jobId, queued: 0, reason: null, workers: [] });
  });
}
