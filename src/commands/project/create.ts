import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import { resolveProjectName } from '../../api/connect.js';
import type { CreateOptions } from './create.command.js';

export async function run(options: CreateOptions, ctx: Context): Promise<number> {
  // Checked here (a usage error) rather than by the server.
  const name = await resolveProjectName(ctx, options.name);
  const api = await ctx.api(options);
  const answer = await api.createProject(name, options.remoteDir);
  if (options.json) ctx.ui.json(answer);
  else ctx.ui.success(`created project ${name}; push to it with: cycle project upload --project ${name}`);
  return ExitCode.ok;
}
