import type { Context } from '../context.js';
import { ExitCode } from '../errors.js';
import type { DashboardOptions } from './dashboard.command.js';

/** The program that opens a URL in the user's browser, by platform. */
function opener(platform: NodeJS.Platform): { file: string; args: (url: string) => string[] } {
  if (platform === 'darwin') return { file: 'open', args: (url) => [url] };
  if (platform === 'win32') return { file: 'cmd', args: (url) => ['/c', 'start', '""', url] };
  return { file: 'xdg-open', args: (url) => [url] };
}

export async function run(options: DashboardOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const link = await api.dashboardLink();
  const terminal = ctx.io.stdout.isTTY === true;
  if (!terminal) {
    ctx.ui.out(link.url);
    return ExitCode.ok;
  }
  ctx.ui.out(`Sign in to the web page (the link works once, for 10 minutes):`);
  ctx.ui.out(`  ${link.url}`);
  if (options.open === false) return ExitCode.ok;
  const { file, args } = opener(process.platform);
  try {
    const result = await ctx.exec(file, args(link.url), { timeoutMs: 10_000 });
    if (result.exitCode !== 0) ctx.ui.info(`could not open a browser (${file} exited with ${result.exitCode}): open the link above yourself`);
  } catch {
    ctx.ui.info(`could not open a browser (${file} is not installed): open the link above yourself`);
  }
  return ExitCode.ok;
}
