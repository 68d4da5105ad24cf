import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import type { BusyAssignOptions } from './busy-assign.command.js';
import { report } from './pause.js';
import { daemonClient } from './status.js';

/** `cycle daemon forbid-busy-assign`. */
export async function forbid(options: BusyAssignOptions, ctx: Context): Promise<number> {
  const doc = await daemonClient(options, ctx).setForbidBusyAssign(true);
  report(options, ctx, doc, 'forbid-busy-assign is on: when busy, takes no task and gives back what it runs');
  return ExitCode.ok;
}

/** `cycle daemon allow-busy-assign`: forbid-busy-assign's undo. */
export async function allow(options: BusyAssignOptions, ctx: Context): Promise<number> {
  const doc = await daemonClient(options, ctx).setForbidBusyAssign(false);
  report(options, ctx, doc, 'allow-busy-assign: when busy, keeps its tasks and takes more');
  return ExitCode.ok;
}
