import path from 'node:path';
import type { Context } from '../context.js';
import { ExitCode, usageError } from '../errors.js';
import { formatBytes } from '../ui/ui.js';
import type { ServerGcCommandOptions } from './server-gc.command.js';

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30d`, `12h`, `90m` as milliseconds. */
export function parseAge(text: string): number | undefined {
  const match = /^(\d+)([mhd])$/.exec(text.trim());
  const unit = match?.[2] === undefined ? undefined : UNIT_MS[match[2]];
  return match?.[1] === undefined || unit === undefined ? undefined : Number(match[1]) * unit;
}

export async function run(options: ServerGcCommandOptions, ctx: Context): Promise<number> {
  const keepRevisions = Number(options.keepRevisions);
  if (!Number.isInteger(keepRevisions) || keepRevisions < 1)
    throw usageError(`--keep-revisions ${options.keepRevisions}: expected a whole number of revisions, 1 or more (e.g. 5): the newest always stays`);
  const olderThanMs = parseAge(options.olderThan);
  if (olderThanMs === undefined) throw usageError(`--older-than ${options.olderThan}: expected an age such as 30d, 12h or 90m`);
  const dataDir = path.resolve(ctx.cwd, options.dataDir ?? path.join(ctx.dataDir, 'server'));
  const { existsSync } = await import('node:fs');
  const { layout } = await import('../server/layout.js');
  const where = layout(dataDir);
  if (!existsSync(where.db)) throw usageError(`--data-dir ${dataDir}: no server database there (cycle.db)`, 'pass the folder `cycle server` was started with');
  const { openDatabase } = await import('../server/db.js');
  const { planRetention, applyRetention } = await import('../server/retention.js');
  const db = openDatabase(where.db);
  try {
    const plan = await planRetention(db, where, { keepRevisions, olderThanMs }, ctx.clock.now());
    if (!options.dryRun) await applyRetention(db, where, plan);
    if (options.json) {
      ctx.ui.json({ dry_run: options.dryRun, ...plan });
      return ExitCode.ok;
    }
    const verb = options.dryRun ? 'would delete' : 'deleted';
    for (const revision of plan.revisions) ctx.ui.info(`${verb} revision ${revision.project}#${revision.number}`);
    for (const job of plan.jobs) ctx.ui.info(`${verb} files and events of job ${job.id} (${job.artifacts} artifacts, ${job.events} events)`);
    for (const relative of plan.paths) ctx.ui.info(`${verb} ${relative}`);
    ctx.ui.success(
      `${verb} ${plan.revisions.length} revisions, the files of ${plan.jobs.length} jobs, ${plan.paths.length} paths (${formatBytes(plan.bytes)})${options.dryRun ? ' (dry run)' : ''}`,
    );
    return ExitCode.ok;
  } finally {
    db.close();
  }
}
