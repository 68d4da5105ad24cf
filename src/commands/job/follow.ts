import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import type { ApiClient } from '../../api/client.js';
import { isTerminalJobStatus, type Job } from '../../api/schemas.js';
import { followEvents } from '../../api/sse.js';
import { formatDuration } from '../../ui/ui.js';


export function progressBar(done: number, total: number, width = 20): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
}

/**
 * What a stream event changes in a job as a client sees it: job events carry the status, job and
 * task events the counts, and a first task event means the job runs.
 */
export function applyEvent(job: Job, type: string, data: unknown): void {
  const fields = data as { status?: string; counts?: Job['counts'] };
  if (type === 'job' && fields.status) job.status = fields.status as Job['status'];
  if ((type === 'job' || type === 'task') && fields.counts) job.counts = fields.counts;
  if (type === 'task' && job.status === 'queued') job.status = 'running';
}

export function jobLine(job: Pick<Job, 'id' | 'status' | 'counts'>, extra = ''): string {
  const c = job.counts;
  const done = c.succeeded + c.failed + c.cancelled;
  const parts = [`${done}/${c.total} done`];
  if (c.running) parts.push(`${c.running} running`);
  if (c.failed) parts.push(`${c.failed} failed`);
  return `${job.id} ${job.status.padEnd(9)} ${progressBar(done, c.total)} ${parts.join(' · ')}${extra ? `  ${extra}` : ''}`;
}

export interface WaitOptions {
  json: boolean;
  cancelOnInterrupt: boolean;
}

/**
 * Follows a job to its end with live progress on stderr. Returns the exit code: 0 completed,
 * 6 failed/partial/cancelled (with the failed tasks' last lines); Ctrl-C: 130, the job left
 * running (or cancelled with --cancel-on-interrupt).
 */
export async function waitForJob(api: ApiClient, id: string, ctx: Context, options: WaitOptions): Promise<{ code: number; job: Job }> {
  const { ui } = ctx;
  let job = await api.getJob(id);
  const started = ctx.clock.now();
  let lastPrinted = '';
  let lastProgress = '';
  const show = (): void => {
    const line = jobLine(job, lastProgress);
    if (ui.options.interactive) ui.live(`${line}  ${formatDuration(ctx.clock.now() - started)}`);
    else if (line !== lastPrinted) {
      ui.info(line);
    }
    lastPrinted = line;
  };
  if (!isTerminalJobStatus(job.status)) {
    show();
    for await (const { event } of followEvents(api, `/api/v1/jobs/${encodeURIComponent(id)}/stream`, {
      lastEventId: job.last_event_id,
      signal: ctx.signal,
      sleep: (ms) => ctx.clock.sleep(ms, ctx.signal).catch(() => undefined),
      onReconnect: (attempt, reason) => ui.debug(`stream dropped (${reason}); reconnecting, attempt ${attempt}`),
    })) {
      const data = event.data as { progress?: unknown; index?: number };
      applyEvent(job, event.type, event.data); // task events carry the counts: no request per task
      if (event.type === 'progress') lastProgress = `task ${data.index}: ${JSON.stringify(data.progress)}`;
      if (options.json) ui.jsonLine({ event: event.type, job_id: event.job_id, task_id: event.task_id, data: event.data });
      show();
    }
    ui.clearLive();
  }
  if (ctx.signal.aborted) {
    if (options.cancelOnInterrupt) {
      const cancelled = await api.cancel(id);
      throw new CycleError({ message: `interrupted: job ${id} was cancelled (${cancelled.status})`, exitCode: ExitCode.interrupted });
    }
    throw new CycleError({ message: `interrupted: job ${id} is still running on the server`, hint: `follow it again with \`cycle job watch ${id}\`, or stop it with \`cycle job cancel ${id}\``, exitCode: ExitCode.interrupted });
  }
  job = await api.getJob(id);
  if (jobLine(job) !== lastPrinted || ui.options.interactive) ui.info(jobLine(job));
  if (job.status === 'completed') return { code: ExitCode.ok, job };
  await reportFailures(api, job, ctx);
  return { code: ExitCode.jobFailed, job };
}

/** The failed tasks, each with its error and the last lines of its output. */
export async function reportFailures(api: ApiClient, job: Job, ctx: Context): Promise<void> {
  const { ui } = ctx;
  ui.info(ui.c.red(`job ${job.id} ${job.status}${job.error ? `: ${job.error}` : ''}`));
  // Only the failed ones are asked for; the filter stays for a server that ignores `status`.
  const failed = (await api.tasks(job.id, { status: 'failed' })).filter((t) => t.status === 'failed');
  for (const task of failed.slice(0, 5)) {
    ui.info(`  task ${task.index} (${task.id}): ${task.error ?? 'failed'}`);
    const lines = task.live_feedback.output_tail.trimEnd().split('\n').slice(-10);
    for (const line of lines) if (line) ui.info(`    │ ${line}`);
  }
  if (failed.length > 5) ui.info(`  … and ${failed.length - 5} more failed tasks: cycle job tasks ${job.id}`);
}
