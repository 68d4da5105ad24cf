import type { Context } from '../../context.js';
import { ExitCode, usageError } from '../../errors.js';
import { MAX_PAUSE_SECONDS, type DaemonStatus } from '../../daemon/control.js';
import { parseDuration } from '../args.js';
import { formatDuration } from '../../ui/ui.js';
import type { PauseOptions, ResumeOptions } from './pause.command.js';
import { daemonClient, describeDaemon } from './status.js';

/** `cycle daemon pause [DURATION]`: 8 hours unless told. */
export async function pause(options: PauseOptions, ctx: Context): Promise<number> {
  const text = options.duration;
  const seconds = parseDuration(text, 'DURATION');
  if (seconds <= 0) throw usageError(`DURATION ${text}: a pause lasts at least a second`, 'e.g. cycle daemon pause 2h');
  if (seconds > MAX_PAUSE_SECONDS)
    throw usageError(`DURATION ${text}: a pause lasts at most ${MAX_PAUSE_SECONDS / 86400} days`, 'pause for less, or stop the daemon');
  const doc = await daemonClient(options, ctx).pause(new Date(ctx.clock.now() + seconds * 1000));
  report(options, ctx, doc, `paused for ${formatDuration(seconds * 1000)}, until ${doc.paused_until}: takes no new task; what runs finishes`);
  return ExitCode.ok;
}

/** `cycle daemon resume`. */
export async function resume(options: ResumeOptions, ctx: Context): Promise<number> {
  const doc = await daemonClient(options, ctx).resume();
  report(options, ctx, doc, 'resumed: takes tasks again');
  return ExitCode.ok;
}

export function report(options: { json: boolean }, ctx: Context, doc: DaemonStatus, done: string): void {
  if (options.json) {
    ctx.ui.json(doc);
    return;
  }
  ctx.ui.success(`daemon ${doc.name}: ${done}`);
  for (const line of describeDaemon(doc)) ctx.ui.out(line);
}
