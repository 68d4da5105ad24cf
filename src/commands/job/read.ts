import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { ApiError, type ApiClient } from '../../api/client.js';
import { followEvents, type FollowedEvent } from '../../api/sse.js';
import { describeTaskEvent, splitLog, systemLine, taskEventDataOf } from '../../api/log-lines.js';
import { isTerminalJobStatus, jobIdOf, JOB_STATUSES, textOf, type CancelledJobView, type JobView } from '../../api/schemas.js';
import { formatTable, formatDuration } from '../../ui/ui.js';
import { applyEvent, followJob, jobLine, pollJobs, reportFailures } from './follow.js';
import type { ListOptions, ByIdOptions, LogsOptions, IdsOptions, TailOptions, TasksOptions } from './read.command.js';
import { STAGE_SPANS, stageSpans } from '../../api/timings.js';

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  if (options.status && !(JOB_STATUSES as readonly string[]).includes(options.status))
    throw new CycleError({ message: `--status ${options.status}: expected one of ${JOB_STATUSES.join(', ')}`, exitCode: ExitCode.usage });
  const limit = options.limit === undefined ? 20 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new CycleError({ message: `--limit ${options.limit}: expected 1-1000`, exitCode: ExitCode.usage });
  const api = await ctx.api(options);
  const jobs = await api.listJobs({
    ...(options.tag ? { tag: options.tag } : {}),
    ...(options.status ? { status: options.status } : {}),
    ...(options.project ? { project: options.project } : {}),
    limit,
  });
  if (options.json) {
    ctx.ui.json(jobs);
    return ExitCode.ok;
  }
  if (jobs.length === 0) {
    ctx.ui.info('no jobs');
    return ExitCode.ok;
  }
  const tasksOf = (j: JobView): string => (j.counts?.total === undefined ? '-' : `${j.counts.succeeded ?? 0}/${j.counts.total}`);
  if (!ctx.io.stdout.isTTY) {
    for (const job of jobs)
      ctx.ui.out(`${jobIdOf(job)}\t${job.status}\t${job.project ?? ''}\t${tasksOf(job)}\t${job.created_at ?? ''}\t${(job.tags ?? []).join(',')}`);
    return ExitCode.ok;
  }
  ctx.ui.out(
    formatTable(
      ['JOB', 'STATUS', 'TYPE', 'PROJECT', 'TASKS', 'CREATED', 'TAGS'],
      jobs.map((j) => [
        jobIdOf(j),
        colorStatus(j.status, ctx),
        j.type ?? '',
        j.project ?? '',
        tasksOf(j),
        (j.created_at ?? '').replace('T', ' ').slice(0, 19),
        (j.tags ?? []).join(','),
      ]),
    ),
  );
  return ExitCode.ok;
}

export async function get(options: ByIdOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const job = await api.getJob(options.id);
  if (options.json) ctx.ui.json(job);
  else {
    printJob(job, ctx);
    const waiting = await waitingReason(api, job.counts?.queued, options.id);
    if (waiting) ctx.ui.out(`${'waiting'.padEnd(11)} ${waiting}`);
  }
  return ExitCode.ok;
}

/**
 * Why a job's queued tasks wait (cycle server's `GET /api/v1/jobs/:id/placement`): asked only when
 * some are queued; nothing from a server without the route. The job document itself stays as the
 * platform has it.
 */
async function waitingReason(api: Awaited<ReturnType<Context['api']>>, queued: number | undefined, id: string): Promise<string | undefined> {
  if (!queued) return undefined;
  const placement = await api.placement(id);
  if (!placement) return undefined;
  if (placement.reason) return placement.reason;
  return placement.reason === null ? 'for a free slot on a machine that can run it' : undefined;
}

/** The fields a person reads, each only where the server sent it. */
function printJob(job: JobView, ctx: Context): void {
  const error = textOf(job.error);
  const rows: Array<[string, string]> = [
    ['job', jobIdOf(job)],
    ['status', colorStatus(job.status, ctx) + (error ? ` (${error})` : '')],
  ];
  const action = textOf(job.recommended_action);
  if (action) rows.push(['do', action]);
  if (job.type) rows.push(['type', job.type]);
  if (job.project) rows.push(['project', `${job.project} (revision ${job.revision ?? '?'})`]);
  const c = job.counts;
  if (c?.total !== undefined)
    rows.push([
      'tasks',
      `${c.total} (${c.succeeded ?? 0} succeeded, ${c.failed ?? 0} failed, ${c.running ?? 0} running, ${c.queued ?? 0} queued, ${c.cancelled ?? 0} cancelled)`,
    ]);
  if (job.created_at) rows.push(['created', job.created_at]);
  if (job.started_at) rows.push(['started', job.started_at]);
  if (job.finished_at)
    rows.push(['finished', `${job.finished_at}${job.started_at ? ` (${formatDuration(Date.parse(job.finished_at) - Date.parse(job.started_at))})` : ''}`]);
  if (job.tags?.length) rows.push(['tags', job.tags.join(', ')]);
  if (job.depends_on?.length) rows.push(['depends on', job.depends_on.join(', ')]);
  if (typeof job.meta === 'object' && job.meta !== null && Object.keys(job.meta).length) rows.push(['meta', JSON.stringify(job.meta)]);
  if (job.variant) rows.push(['variant', job.variant]);
  if (job.client_ref) rows.push(['client ref', job.client_ref]);
  for (const [key, value] of rows) ctx.ui.out(`${key.padEnd(11)} ${value}`);
}

export async function tasks(options: TasksOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  if (options.timings) return taskTimings(api, options, ctx);
  const list = await api.tasks(options.id);
  if (options.json) {
    ctx.ui.json(list);
    return ExitCode.ok;
  }
  const waiting = await waitingReason(api, list.filter((t) => t.status === 'queued').length, options.id);
  ctx.ui.out(
    formatTable(
      ['#', 'TASK', 'STATUS', 'TRY', 'EXIT', 'TIME', 'ERROR'],
      list.map((t) => [
        String(t.index ?? '-'),
        t.id ?? t.task_id ?? '-',
        colorStatus(t.status, ctx),
        String(t.attempt ?? '-'),
        t.exit_code === null || t.exit_code === undefined ? '-' : String(t.exit_code),
        t.duration_s === null || t.duration_s === undefined ? '-' : formatDuration(t.duration_s * 1000),
        (textOf(t.error) ?? '').split('\n')[0] ?? '',
      ]),
    ),
  );
  // On stderr: the table on stdout stays what a script reads.
  if (waiting) ctx.ui.info(`queued tasks wait: ${waiting}`);
  return ExitCode.ok;
}

/** `job tasks --timings`: each task's stage durations, and their sums. */
async function taskTimings(api: ApiClient, options: TasksOptions, ctx: Context): Promise<number> {
  const list = await api.timings(options.id);
  if (!list)
    throw new CycleError({
      message: `job ${options.id}: this server does not report task timings (GET /api/v1/jobs/${options.id}/timings answered 404)`,
      hint: 'task timings are a cycle server feature: run `cycle job tasks ID` without --timings, or upgrade the server',
      exitCode: ExitCode.usage,
    });
  if (options.json) {
    ctx.ui.json(list);
    return ExitCode.ok;
  }
  const shown = (ms: number | undefined): string => (ms === undefined ? '-' : formatDuration(ms));
  const totals = new Map<string, number>();
  const rows = list.map((t) => {
    const spans = stageSpans(t.stages);
    for (const span of STAGE_SPANS) totals.set(span.name, (totals.get(span.name) ?? 0) + (spans[span.name] ?? 0));
    const total = t.stages.stored !== undefined && t.stages.queued !== undefined ? t.stages.stored - t.stages.queued : undefined;
    return [String(t.index), t.task_id, colorStatus(t.status, ctx), ...STAGE_SPANS.map((span) => shown(spans[span.name])), shown(total)];
  });
  if (list.length > 1) rows.push(['', 'sum', '', ...STAGE_SPANS.map((span) => shown(totals.get(span.name))), '']);
  ctx.ui.out(formatTable(['#', 'TASK', 'STATUS', ...STAGE_SPANS.map((span) => span.name.toUpperCase()), 'TOTAL'], rows));
  return ExitCode.ok;
}

export async function results(options: ByIdOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const doc = await api.results(options.id);
  if (options.json) ctx.ui.json(doc);
  else {
    // Our items, else the docs' per-task results.
    const rows = doc.items ?? doc.tasks ?? [];
    rows.forEach((item, n) =>
      ctx.ui.out(
        `${item.index ?? n}\t${item.status ?? ''}\t${item.result === null || item.result === undefined ? (textOf(item.error) ?? '') : JSON.stringify(item.result)}`,
      ),
    );
    const aggregate = doc.aggregate ?? doc.aggregate_result;
    if (aggregate !== null && aggregate !== undefined) ctx.ui.out(`aggregate\t${JSON.stringify(aggregate)}`);
    const c = doc.counts;
    const counts = c?.total === undefined ? '' : `: ${c.succeeded ?? 0}/${c.total} tasks succeeded`;
    ctx.ui.info(`${doc.status ?? 'results'}${doc.complete ? ', complete' : ''}${counts}, ${rows.length} results, ${doc.artifact_ids?.length ?? 0} artifacts`);
  }
  return ExitCode.ok;
}

export async function cancel(options: IdsOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const out: NonNullable<CancelledJobView>[] = [];
  let failures = 0;
  for (const id of options.ids) {
    try {
      // The answer is not documented: an empty one still means the cancel was taken.
      const job = (await api.cancel(id)) ?? { job_id: id };
      out.push(job);
      if (!options.json) ctx.ui.out(`${jobIdOf(job) || id}\t${job.status ?? '-'}`);
    } catch (error) {
      if (options.ids.length === 1 || !(error instanceof CycleError)) throw error;
      failures++;
      ctx.ui.warn(`${id}: ${error.message}`);
    }
  }
  if (options.json) ctx.ui.json(out);
  return failures ? ExitCode.failure : ExitCode.ok;
}

/** `job logs ID [--follow] [--task N]`: the output so far, or live to the end. */
export async function logs(options: LogsOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const only = options.task === undefined ? undefined : Number(options.task);
  if (only !== undefined && (!Number.isInteger(only) || only < 0))
    throw new CycleError({ message: `--task ${options.task}: expected a task index (0, 1, …)`, exitCode: ExitCode.usage });
  const printOutput = async (): Promise<void> => {
    const output = await outputOf(api, options.id);
    const chosen = output.filter((t) => only === undefined || t.index === only);
    if (only !== undefined && chosen.length === 0) throw new CycleError({ message: `job ${options.id} has no task ${only}`, exitCode: ExitCode.failure });
    // `lines` tells the system's lines (start, completion, failure, retry) from the task's own output.
    if (options.json) ctx.ui.json(chosen.map((task) => ({ ...task, lines: splitLog(task.output ?? '') })));
    else
      for (const task of chosen) {
        const text = task.output ?? '';
        if (chosen.length > 1) ctx.ui.info(ctx.ui.c.bold(`== task ${task.index ?? '?'} (${task.status ?? '?'})${task.truncated ? ' [start cut]' : ''}`));
        ctx.ui.rawOut(text.endsWith('\n') || text === '' ? text : `${text}\n`);
      }
  };
  if (!options.follow) {
    await printOutput();
    return ExitCode.ok;
  }
  const multi = only === undefined;
  let polled = false;
  for await (const { type, event } of followJob(api, options.id, ctx, undefined, () => (polled = true))) {
    if (typeof event.data !== 'object' || event.data === null) continue;
    const index: unknown = Reflect.get(event.data, 'index');
    if (only !== undefined && index !== only) continue;
    if (type === 'task') {
      // A task's start, end or retry: the same system line the server writes into the task's log.
      const data = taskEventDataOf(event.data);
      if (!data) continue;
      if (options.json) ctx.ui.jsonLine({ task: index, text: describeTaskEvent(data), source: 'system' });
      else ctx.ui.rawOut(systemLine(data));
      continue;
    }
    const text: unknown = Reflect.get(event.data, 'text');
    if (type !== 'output' || typeof text !== 'string') continue;
    if (options.json) ctx.ui.jsonLine({ task: index, text, source: 'output' });
    else ctx.ui.rawOut(multi ? text.replace(/^(?=.)/gm, `[${String(index)}] `) : text);
  }
  if (ctx.signal.aborted) throw new CycleError({ message: 'interrupted (the job goes on)', exitCode: ExitCode.interrupted });
  // Polled (no stream): the output was not live; it is shown once the job has ended.
  if (polled) await printOutput();
  return ExitCode.ok;
}

/** `job tail ID`: `job logs ID --follow` under the real CLI's name. */
export function tail(options: TailOptions, ctx: Context): Promise<number> {
  return logs({ ...options, follow: true }, ctx);
}

/**
 * Each task's output: the `/output` route, else (a server without it) the `output` the docs
 * put on each task.
 */
async function outputOf(
  api: ApiClient,
  id: string,
): Promise<Array<{ index?: number | undefined; status?: string | undefined; output?: string | null | undefined; truncated?: boolean | undefined }>> {
  try {
    return (await api.output(id)).tasks;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    return api.tasks(id);
  }
}

/** `job watch ID…`: one live view of many jobs; --json gives newline-delimited events. */
export async function watch(options: IdsOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const jobs = new Map<string, JobView>();
  for (const id of options.ids) jobs.set(id, await api.getJob(id));
  const printed = new Map<string, string>();
  const print = (job: JobView): void => {
    const line = jobLine(job);
    if (printed.get(jobIdOf(job)) === line) return;
    printed.set(jobIdOf(job), line);
    ctx.ui.info(line);
  };
  const render = (): void => {
    const lines = [...jobs.values()].map((job) => jobLine(job));
    if (ctx.ui.options.interactive) ctx.ui.liveBlock(lines);
  };
  render();
  if (!options.json && !ctx.ui.options.interactive) for (const job of jobs.values()) print(job);
  if (![...jobs.values()].every((j) => isTerminalJobStatus(j.status))) {
    for await (const { id, type, event } of watchEvents(api, jobs, ctx)) {
      const job = event.job_id ? jobs.get(event.job_id) : undefined;
      // A polled event (no id) is news by itself; a streamed one only past what the job showed.
      if (!job || (id !== '' && Number(id) <= Number(job.last_event_id ?? 0))) continue;
      if (options.json) ctx.ui.jsonLine({ id, type, job_id: event.job_id, task_id: event.task_id, data: event.data, at: event.at });
      const before = job.status;
      applyEvent(job, type, event.data);
      if (ctx.ui.options.interactive) render();
      else if (!options.json && (job.status !== before || type === 'task')) print(job);
    }
  }
  ctx.ui.clearLive();
  if (ctx.signal.aborted) throw new CycleError({ message: 'interrupted (the jobs go on)', exitCode: ExitCode.interrupted });
  let failed = false;
  for (const id of options.ids) {
    const job = await api.getJob(id);
    if (!options.json) print(job);
    if (job.status !== 'completed') {
      failed = true;
      if (!options.json) await reportFailures(api, job, ctx);
    }
  }
  return failed ? ExitCode.jobFailed : ExitCode.ok;
}

/** The jobs' events from the many-jobs stream, or from polling where the server has none (404). */
async function* watchEvents(api: ApiClient, jobs: Map<string, JobView>, ctx: Context): AsyncGenerator<FollowedEvent> {
  const path = `/api/v1/jobs/watch?ids=${[...jobs.keys()].map(encodeURIComponent).join(',')}`;
  // From the oldest job's latest event; each job skips what its document already showed.
  const from = Math.min(...[...jobs.values()].map((j) => Number(j.last_event_id ?? 0)));
  let streamed = false;
  try {
    for await (const event of followEvents(api, path, {
      lastEventId: String(from),
      signal: ctx.signal,
      sleep: (ms) => ctx.clock.sleep(ms, ctx.signal).catch(() => undefined),
    })) {
      streamed = true;
      yield event;
    }
    return;
  } catch (error) {
    if (streamed || !(error instanceof ApiError) || error.status !== 404) throw error;
  }
  yield* pollJobs(
    api,
    [...jobs.entries()].filter(([, job]) => !isTerminalJobStatus(job.status)).map(([id]) => id),
    ctx,
  );
}

function colorStatus(status: string, ctx: Context): string {
  const { c } = ctx.ui;
  if (status === 'completed' || status === 'succeeded') return c.green(status);
  if (status === 'failed') return c.red(status);
  if (status === 'partial' || status === 'cancelled') return c.yellow(status);
  return status;
}
