import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { resolveProjectName } from '../../api/connect.js';
import { formatTable } from '../../ui/ui.js';
import { unexpectedAnswer } from '../../api/client.js';
import { buildStateOf, textOf, type ProjectStatusView } from '../../api/schemas.js';
import type { RemoteProjectOptions, StatusOptions } from './remote.command.js';

/** `cycle project prepare`: the API's init (optional; jobs prepare on demand). */
export async function prepare(options: RemoteProjectOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await ctx.api(options);
  const answer = await api.init(name);
  if (options.json) ctx.ui.json(answer);
  else {
    const revision = answer.revision === undefined || answer.revision === null ? '' : ` revision ${answer.revision}`;
    const state = buildStateOf(answer) ?? answer.status;
    ctx.ui.success(`preparing ${name}${revision}${state ? ` (build: ${state})` : ''}; follow it with: cycle project status --watch`);
  }
  return ExitCode.ok;
}

/** `cycle project invalidate`: drop the prepared images on the backend. */
export async function invalidate(options: RemoteProjectOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await ctx.api(options);
  const answer = await api.invalidate(name);
  if (options.json) ctx.ui.json(answer);
  else {
    const dropped = typeof answer.removed_images === 'number' ? `: ${answer.removed_images} prepared image(s) dropped` : '';
    ctx.ui.success(`invalidated ${name}${dropped}; the next job builds again`);
  }
  return ExitCode.ok;
}

/** `cycle project status`: published, ready, build state; --details per node; --watch until ready or failed. */
export async function status(options: StatusOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await ctx.api(options);
  const route = `GET /api/v1/projects/${encodeURIComponent(name)}/status${options.details ? '/details' : ''}`;
  for (;;) {
    const answer = options.details ? await api.details(name) : await api.status(name);
    if (!answer) {
      throw new CycleError({ message: `no project "${name}" on ${api.baseUrl}`, hint: 'upload it first: cycle project upload', exitCode: ExitCode.failure });
    }
    const outcome = buildOutcome(answer);
    // Only --watch needs to know when the build ends: without a build state or readiness it cannot.
    if (options.watch && outcome === undefined)
      throw unexpectedAnswer(route, 'has no `build.state` or `ready_for_jobs` field (expected one, to tell when the build ends)');
    const settled = outcome !== undefined && outcome !== 'building';
    if (options.json) {
      if (options.watch) ctx.ui.jsonLine(answer);
      else ctx.ui.json(answer);
    } else if (!options.watch || settled || ctx.ui.options.interactive === false) {
      printStatus(answer, ctx);
      if (options.details && !options.watch) await printMachines(api, ctx);
    } else ctx.ui.live(`${name}: revision ${answer.revision ?? '-'}, build ${buildStateOf(answer) ?? 'not ready'}…`);
    if (!options.watch || settled) return outcome === 'failed' && options.watch ? ExitCode.jobFailed : ExitCode.ok;
    await ctx.clock.sleep(2000, ctx.signal);
  }
}

/**
 * The machines that run the server's queue (cycle server's `GET /api/v1/machines`), under the
 * details; nothing from a server without the route (Computalot's nodes are in the status itself).
 */
async function printMachines(api: Awaited<ReturnType<Context['api']>>, ctx: Context): Promise<void> {
  const machines = await api.machines().catch(() => undefined);
  if (!machines?.length) return;
  const { machineTable } = await import('../machine.js');
  ctx.ui.out('');
  ctx.ui.out(machineTable(machines, ctx));
}

/** Where the build is: from its state where the server sends one, else from `ready_for_jobs`; undefined when neither says. */
function buildOutcome(answer: ProjectStatusView): 'ready' | 'failed' | 'building' | undefined {
  const state = buildStateOf(answer);
  if (state !== undefined) return state === 'ready' || state === 'failed' ? state : 'building';
  if (typeof answer.ready_for_jobs === 'boolean') return answer.ready_for_jobs ? 'ready' : 'building';
  return undefined;
}

function printStatus(status: ProjectStatusView, ctx: Context): void {
  const { c } = ctx.ui;
  const shown = (v: string | number | null | undefined): string => (v === undefined || v === null || v === '' ? '-' : String(v));
  const yes = (v: boolean | null | undefined): string => (v === true ? c.green('yes') : v === false ? c.yellow('no') : '-');
  const build = typeof status.build === 'object' && status.build !== null ? status.build : undefined;
  const error = textOf(build?.error);
  ctx.ui.out(`project              ${shown(status.project)}${status.format ? ` (${status.format})` : ''}`);
  ctx.ui.out(`revision             ${shown(status.revision)}${status.published_at ? `, published ${status.published_at}` : ''}`);
  ctx.ui.out(`content hash         ${shown(status.content_hash)}`);
  ctx.ui.out(`build hash           ${shown(status.build_hash)}`);
  ctx.ui.out(`can accept new jobs  ${yes(status.can_accept_new_jobs)}`);
  ctx.ui.out(`ready for jobs       ${yes(status.ready_for_jobs)}`);
  ctx.ui.out(`build                ${shown(buildStateOf(status))}${error ? `: ${error.split('\n')[0]}` : ''}`);
  // A status word cycle does not send itself: shown as the server wrote it.
  if (typeof status.status === 'string') ctx.ui.out(`status               ${status.status}`);
  if (status.nodes) {
    ctx.ui.out('');
    ctx.ui.out(
      formatTable(
        ['NODE', 'STATE', 'READY', 'ERROR'],
        status.nodes.map((n) => [
          shown(n.node),
          shown(n.state),
          n.ready === true ? 'yes' : n.ready === false ? 'no' : '-',
          textOf(n.error)?.split('\n')[0] ?? '',
        ]),
      ),
    );
  }
}
