import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import { DaemonControlClient, type DaemonStatus } from '../../daemon/control.js';
import { defaultDaemonDataDir } from '../../daemon/data-dir.js';
import { formatBytes } from '../../ui/ui.js';
import type { DaemonStatusOptions } from './status.command.js';

/** The control client of the daemon `--data-dir` picks (the default folder otherwise). */
export function daemonClient(options: { dataDir?: string }, ctx: Context): DaemonControlClient {
  return new DaemonControlClient(options.dataDir ? resolveDir(options.dataDir, ctx) : defaultDaemonDataDir(ctx.env));
}

function resolveDir(dir: string, ctx: Context): string {
  return dir.startsWith('/') ? dir : `${ctx.cwd.replace(/\/$/, '')}/${dir}`;
}

/** `cycle daemon status [--json]`. */
export async function status(options: DaemonStatusOptions, ctx: Context): Promise<number> {
  const doc = await daemonClient(options, ctx).status();
  if (options.json) ctx.ui.json(doc);
  else for (const line of describeDaemon(doc)) ctx.ui.out(line);
  return ExitCode.ok;
}

/** The status as lines of text (also what pause/resume print after a change). */
export function describeDaemon(doc: DaemonStatus): string[] {
  const lines = [`daemon ${doc.name} (pid ${doc.pid}, data ${doc.data_dir}) → ${doc.api_url}`];
  lines.push(`state: ${doc.state}${doc.paused_until ? ` (until ${doc.paused_until})` : ''}`);
  lines.push(
    `busy machines: ${doc.forbid_busy_assign ? 'take no task and give back what they run (forbid-busy-assign on)' : 'keep their tasks and take more (allow-busy-assign)'}`,
  );
  if (doc.activity) lines.push(doc.activity.idle ? 'activity: idle' : `activity: busy: ${doc.activity.busy_reasons.join('; ')}`);
  lines.push(`slots: ${doc.running.length}/${doc.slots} in use`);
  for (const task of doc.running) lines.push(`  runs ${task.job_id} / ${task.task_id}${task.started_at ? ` since ${task.started_at}` : ''}`);
  lines.push(
    `server: ${doc.server_ok ? 'reached' : 'NOT reached'}; last heartbeat ${doc.last_heartbeat_at ?? 'never'}${doc.last_error ? `; last error: ${doc.last_error}` : ''}`,
  );
  const inv = doc.inventory;
  if (inv) {
    lines.push(
      `machine: ${inv.cpus} CPUs, ${formatBytes(inv.memory_bytes)} RAM, ${formatBytes(inv.free_disk_bytes)} free disk; Docker ${inv.docker ? 'yes' : 'NO'}, gVisor ${inv.gvisor ? 'yes' : 'no'}`,
    );
    if (inv.gpus.length === 0) lines.push('GPUs: none');
    else
      lines.push(
        `GPUs: ${inv.gpus.map((g) => `${g.index}: ${g.name} (${g.memory_mib} MiB)`).join(', ')}; driver ${inv.driver ?? '?'}, CUDA ${inv.cuda ?? '?'}`,
      );
    if (inv.gpu_problem) lines.push(`GPU problem: ${inv.gpu_problem}`);
  }
  return lines;
}
