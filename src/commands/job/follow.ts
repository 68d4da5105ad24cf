import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { ApiError, type ApiClient } from '../../api/client.js';
import { isTerminalJobStatus, jobIdOf, textOf, type JobCounts, type JobView } from '../../api/schemas.js';
import { followEvents, type FollowedEvent } from '../../api/sse.js';
import { formatDuration } from '../../ui/ui.js';

/** How often a job is asked for when the server has no event stream (the docs' own poll loop). */
export const POLL_INTERVAL_MS = 5000;

export function progressBar(done: number, total: number, width = 20): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
}

/**
 * What a stream event changes in a job as a client sees it: job events carry the status, job and
 * task events the counts, and a first task event means the job runs. Other events change nothing.
 */
export function applyEvent(job: JobView, type: string, data: unknown): void {
  if (typeof data !== 'object' || data === null) return;
  const status: unknown = Reflect.get(data, 'status');
  const counts: unknown = Reflect.get(data, 'counts');
  if (type === 'job' && typeof status === 'string') job.status = status;
  if ((type === 'job' || type === 'task') && typeof counts === 'object' && counts !== null) job.counts = { ...job.counts, ...counts };
  if (type === 'task' && job.status === 'queued') job.status = 'running';
}

export function jobLine(job: Pick<JobView, 'id' | 'job_id' | 'status' | 'counts'>, extra = ''): string {
  const c: JobCounts = job.counts ?? {};
  const head = `${jobIdOf(job)} ${job.status.padEnd(9)}`;
  if (c.total === undefined) return `${head}${extra ? `  ${extra}` : ''}`;
  const done = (c.succeeded ?? 0) + (c.failed ?? 0) + (c.cancelled ?? 0);
  const parts = [`${done}/${c.total} done`];
  if (c.running) parts.push(`${c.running} running`);
  if (c.failed) parts.push(`${c.failed} failed`);
  return `${head} ${progressBar(done, c.total)} ${parts.join(' · ')}${extra ? `  ${extra}` : ''}`;
}

/**
 * A job's events to its end: its SSE stream, or, where the server has no stream route (404), a
 * `job` event made from `GET /api/v1/jobs/:id` every `POLL_INTERVAL_MS` until the status is a
 * known terminal one (an unknown status is waited through).
 */
export async function* followJob(
  api: ApiClient,
  id: string,
  ctx: Context,
  lastEventId: string | undefined,
  onPolling?: () => void,
): AsyncGenerator<FollowedEvent> {
  let streamed = false;
  try {
    for await (const event of followEvents(api, `/api/v1/jobs/${encodeURIComponent(id)}/stream`, {
      ...(lastEventId === undefined ? {} : { lastEventId }),
      signal: ctx.signal,
      sleep: (ms) => ctx.clock.sleep(ms, ctx.signal).catch(() => undefined),
      onReconnect: (attempt, reason) => ctx.ui.debug(`stream dropped (${reason}); reconnecting, attempt ${attempt}`),
    })) {
      streamed = true;
      yield event;
    }
    return;
  } catch (error) {
    if (streamed || !(error instanceof ApiError) || error.status !== 404) throw error;
    ctx.ui.debug(`no event stream for ${id} (HTTP 404); asking for the job every ${POLL_INTERVAL_MS / 1000}s`);
  }
  onPolling?.();
  yield* pollJobs(api, [id], ctx);
}

/** `job` events for each job, from polling, until every one has a known terminal status. */
export async function* pollJobs(api: ApiClient, ids: string[], ctx: Context): AsyncGenerator<FollowedEvent> {
  const open = new Set(ids);
  while (open.size > 0 && !ctx.signal.aborted) {
    for (const id of [...open]) {
      const job = await api.getJob(id);
      yield { id: '', type: 'job', event: { type: 'job', job_id: id, data: { status: job.status, ...(job.counts ? { counts: job.counts } : {}) } } };
      if (isTerminalJobStatus(job.status)) open.delete(id);
    }
    if (open.size > 0) await ctx.clock.sleep(POLL_INTERVAL_MS, ctx.signal).catch(() => undefined);
  }
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
export async function waitForJob(api: ApiClient, id: string, ctx: Context, options: WaitOptions): Promise<{ code: number; job: JobView }> {
  const { ui } = ctx;
  /** Ctrl-C: the job is cancelled (--cancel-on-interrupt) or left running, said either way. */
  const interrupted = async (): Promise<never> => {
    if (options.cancelOnInterrupt) {
      const cancelled = await api.cancel(id, true);
      throw new CycleError({
        message: `interrupted: job ${id} was cancelled${cancelled?.status ? ` (${cancelled.status})` : ''}`,
        exitCode: ExitCode.interrupted,
      });
    }
    throw new CycleError({
      message: `interrupted: job ${id} is still running on the server`,
      hint: `follow it again with \`cycle job watch ${id}\`, or stop it with \`cycle job cancel ${id}\``,
      exitCode: ExitCode.interrupted,
    });
  };
  // A Ctrl-C that cuts one of the requests (the first read, the last) is the same Ctrl-C as one
  // between events: before, it ended the command with a bare "interrupted", nothing cancelled.
  const unlessInterrupted = async <T>(request: Promise<T>): Promise<T> => {
    try {
      return await request;
    } catch (error) {
      if (ctx.signal.aborted) return interrupted();
      throw error;
    }
  };
  let job = await unlessInterrupted(api.getJob(id));
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
    const from = job.last_event_id === undefined || job.last_event_id === null ? undefined : String(job.last_event_id);
    try {
      for await (const { type, event } of followJob(api, id, ctx, from)) {
        applyEvent(job, type, event.data); // task events carry the counts: no request per task
        if (type === 'progress' && typeof event.data === 'object' && event.data !== null)
          lastProgress = `task ${String(Reflect.get(event.data, 'index'))}: ${JSON.stringify(Reflect.get(event.data, 'progress'))}`;
        if (options.json) ui.jsonLine({ event: type, job_id: event.job_id, task_id: event.task_id, data: event.data });
        show();
      }
    } catch (error) {
      ui.clearLive();
      if (ctx.signal.aborted) return interrupted();
      throw error;
    }
    ui.clearLive();
  }
  if (ctx.signal.aborted) return interrupted();
  job = await unlessInterrupted(api.getJob(id));
  if (jobLine(job) !== lastPrinted || ui.options.interactive) ui.info(jobLine(job));
  if (job.status === 'completed') return { code: ExitCode.ok, job };
  await reportFailures(api, job, ctx);
  return { code: ExitCode.jobFailed, job };
}

/** The failed tasks, each with its error and the last lines of its output; then what to do. */
export async function reportFailures(api: ApiClient, job: JobView, ctx: Context): Promise<void> {
  const { ui } = ctx;
  const id = jobIdOf(job);
  const error = textOf(job.error);
  ui.info(ui.c.red(`job ${id} ${job.status}${error ? `: ${error}` : ''}`));
  // Only the failed ones are asked for; the filter stays for a server that ignores `status`.
  const failed = await api.tasks(id, { status: 'failed' }).then(
    (tasks) => tasks.filter((t) => t.status === 'failed'),
    // A server without the tasks route still has a job to show: its recommended action below.
    (failure: unknown) => {
      if (failure instanceof ApiError && failure.status === 404) return [];
      throw failure;
    },
  );
  for (const task of failed.slice(0, 5)) {
    ui.info(`  task ${task.index ?? '?'} (${task.id ?? task.task_id ?? '?'}): ${textOf(task.error) ?? 'failed'}`);
    const tail = task.live_feedback?.output_tail ?? task.output ?? '';
    const lines = tail.trimEnd().split('\n').slice(-10);
    for (const line of lines) if (line) ui.info(`    │ ${line}`);
  }
  if (failed.length > 5) ui.info(`  … and ${failed.length - 5} more failed tasks: cycle job tasks ${id}`);
  const action = textOf(job.recommended_action);
  if (action) ui.info(`recommended action: ${action}`);
}
