import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { connect, resolveProjectName } from '../../api/connect.js';
import { formatTable } from '../../ui/ui.js';
import type { ProjectStatus } from '../../api/schemas.js';
import type { RemoteProjectOptions, StatusOptions } from './remote.command.js';

/** `cycle project prepare`: the API's init (optional; jobs prepare on demand). */
export async function prepare(options: RemoteProjectOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await connect(ctx, options);
  const answer = await api.init(name);
  if (options.json) ctx.ui.json(answer);
  else ctx.ui.success(`preparing ${name} revision ${answer.revision} (build: ${answer.build}); follow it with: cycle project status --watch`);
  return ExitCode.ok;
}

/** `cycle project invalidate`: drop the prepared images on the backend. */
export async function invalidate(options: RemoteProjectOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await connect(ctx, options);
  const answer = await api.invalidate(name);
  if (options.json) ctx.ui.json(answer);
  else ctx.ui.success(`invalidated ${name}: ${answer.removed_images} prepared image(s) dropped; the next job builds again`);
  return ExitCode.ok;
}

/** `cycle project status`: published, ready, build state; --details per node; --watch until ready or failed. */
export async function status(options: StatusOptions, ctx: Context): Promise<number> {
  const name = await resolveProjectName(ctx, options.project);
  const api = await connect(ctx, options);
  for (;;) {
    const answer = options.details ? await api.details(name) : await api.status(name);
    if (!answer) {
      throw new CycleError({ message: `no project "${name}" on ${api.baseUrl}`, hint: 'upload it first: cycle project upload', exitCode: ExitCode.failure });
    }
    const settled = answer.build.state === 'ready' || answer.build.state === 'failed';
    if (options.json) {
      if (options.watch) ctx.ui.jsonLine(answer);
      else ctx.ui.json(answer);
    } else if (!options.watch || settled || ctx.ui.options.interactive === false) {
      printStatus(answer, ctx);
    } else ctx.ui.live(`${name}: revision ${answer.revision}, build ${answer.build.state}…`);
    if (!options.watch || settled) return answer.build.state === 'failed' && options.watch ? ExitCode.jobFailed : ExitCode.ok;
    await ctx.clock.sleep(2000, ctx.signal);
  }
}

function printStatus(status: ProjectStatus & { nodes?: Array<{ node: string; state: string; ready: boolean; error: string | null }> }, ctx: Context): void {
  const { c } = ctx.ui;
  const yes = (v: boolean): string => (v ? c.green('yes') : c.yellow('no'));
  ctx.ui.out(`project              ${status.project} (${status.format})`);
  ctx.ui.out(`revision             ${status.revision}, published ${status.published_at}`);
  ctx.ui.out(`content hash         ${status.content_hash}`);
  ctx.ui.out(`build hash           ${status.build_hash}`);
  ctx.ui.out(`can accept new jobs  ${yes(status.can_accept_new_jobs)}`);
  ctx.ui.out(`ready for jobs       ${yes(status.ready_for_jobs)}`);
  ctx.ui.out(`build                ${status.build.state}${status.build.error ? `: ${status.build.error.split('\n')[0]}` : ''}`);
  if (status.nodes) {
    ctx.ui.out('');
    ctx.ui.out(
      formatTable(
        ['NODE', 'STATE', 'READY', 'ERROR'],
        status.nodes.map((n) => [n.node, n.state, n.ready ? 'yes' : 'no', n.error?.split('\n')[0] ?? '']),
      ),
    );
  }
}
