import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import { checkProject } from '../../project/load.js';
import { formatDiagnostic } from '../../project/diagnostics.js';
import type { ValidateOptions } from './validate.command.js';

export async function run(options: ValidateOptions, ctx: Context): Promise<number> {
  // The schema check is a pure function of the manifest's text: an unchanged valid manifest is
  // read from the cache (no zod, no TOML parser); the filesystem rules run every time.
  const check = await checkProject(ctx.cwd, { useCache: true });
  const errors = check.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = check.diagnostics.length - errors;
  const valid = errors === 0;
  if (options.json) {
    ctx.ui.json({ valid, root: check.root, format: check.format, name: check.project?.name ?? null, errors, warnings, diagnostics: check.diagnostics });
    return valid ? ExitCode.ok : ExitCode.invalidProject;
  }
  const { c } = ctx.ui;
  const colors = { error: (s: string) => c.red(s), warning: (s: string) => c.yellow(s), dim: (s: string) => c.dim(s) };
  // Diagnostics are the data of this command: stdout, one per line, greppable.
  for (const d of check.diagnostics) for (const line of formatDiagnostic(d, colors)) ctx.ui.out(line);
  if (valid) {
    const what = check.format === 'cycleswap' ? '.cycleswap/' : 'computalot.project.json';
    const suffix = warnings > 0 ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : '';
    ctx.ui.success(`${what} project ${check.project?.name ? `"${check.project.name}" ` : ''}is valid${suffix}`);
    return ExitCode.ok;
  }
  ctx.ui.info(c.red(`${errors} error${errors === 1 ? '' : 's'}`) + (warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : '') + ` in ${check.root}`);
  return ExitCode.invalidProject;
}
