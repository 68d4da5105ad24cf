import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { connect } from '../../api/connect.js';
import { followEvents } from '../../api/sse.js';
import { describeTaskEvent, splitLog, systemLine, type TaskEventData } from '../../api/log-lines.js';
import { isTerminalJobStatus, JOB_STATUSES, type Job } from '../../api/schemas.js';
import { formatTable, formatDuration } from '../../ui/ui.js';
import { applyEvent, jobLine, reportFailures } from './follow.js';
import type { ListOptions, ByIdOptions, LogsOptions, IdsOptions, TailOptions } from './read.command.js';

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  if (options.status && !(JOB_STATUSES as readonly string[]).includes(options.status)) throw new CycleError({ message: `--status ${options.status}: expected one of ${JOB_STATUSES.join(', ')}`, exitCode: ExitCode.usage });
  const limit = options.limit === undefined ? 20 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CycleError({ message: `--limit ${options.limit}: expected 1-1000`, exitCode: ExitCode.usage });
  const api = await connect(ctx, options);
  const jobs = await api.listJobs({ ...(options.tag ? { tag: options.tag } : {}), ...(options.status ? { status: options.status } : {}), ...(options.project ? { project: options.project } : {}), limit });
  if (options.json) {
    ctx.ui.json(jobs);
    return ExitCode.ok;
  }
  if (jobs.length === 0) {
    ctx.ui.info('no jobs');
    return ExitCode.ok;
  }
  if (!ctx.io.stdout.isTTY) {
    for (const job of jobs) ctx.ui.out(`${job.id}\t${job.status}\t${job.project}\t${job.counts.succeeded}/${job.counts.total}\t${job.created_at}\t${job.tags.join(',')}`);
    return ExitCode.ok;
  }
  ctx.ui.out(formatTable(['JOB', 'STATUS', 'TYPE', 'PROJECT', 'TASKS', 'CREATED', 'TAGS'], jobs.map((j) => [j.id, colorStatus(j.status, ctx), j.type, j.project, `${j.counts.succeeded}/${j.counts.total}`, j.created_at.replace('T', ' ').slice(0, 19), j.tags.join(',')])));
  return ExitCode.ok;
}

export async function get(options: ByIdOptions, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const job = await api.getJob(options.id);
  if (options.json) ctx.ui.json(job);
  else printJob(job, ctx);
  return ExitCode.ok;
}

function printJob(job: Job, ctx: Context): void {
  const rows: Array<[string, string]> = [
    ['job', job.id],
    ['status', colorStatus(job.status, ctx) + (job.error ? ` (${job.error})` : '')],
    ['type', job.type],
    ['project', `${job.project} (revision ${job.revision ?? '?'})`],
    ['tasks', `${job.counts.total} (${job.counts.succeeded} succeeded, ${job.counts.failed} failed, ${job.counts.running} running, ${job.counts.queued} queued, ${job.counts.cancelled} cancelled)`],
    ['created', job.created_at],
  ];
  if (job.started_at) rows.push(['started', job.started_at]);
  if (job.finished_at) rows.push(['finished', `${job.finished_at}${job.started_at ? ` (${formatDuration(Date.parse(job.finished_at) - Date.parse(job.started_at))})` : ''}`]);
  if (job.tags.length) rows.push(['tags', job.tags.join(', ')]);
  if (job.depends_on.length) rows.push(['depends on', job.depends_on.join(', ')]);
  if (Object.keys(job.meta).length) rows.push(['meta', JSON.stringify(job.meta)]);
  if (job.variant) rows.push(['variant', job.variant]);
  if (job.client_ref) rows.push(['client ref', job.client_ref]);
  for (const [key, value] of rows) ctx.ui.out(`${key.padEnd(11)} ${value}`);
}

export async function tasks(options: ByIdOptions, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const list = await api.tasks(options.id);
  if (options.json) {
    ctx.ui.json(list);
    return ExitCode.ok;
  }
  ctx.ui.out(
    formatTable(
      ['#', 'TASK', 'STATUS', 'TRY', 'EXIT', 'TIME', 'ERROR'],
      list.map((t) => [String(t.index), t.id, colorStatus(t.status, ctx), String(t.attempt), t.exit_code === null ? '-' : String(t.exit_code), t.duration_s === null ? '-' : formatDuration(t.duration_s * 1000), (t.error ?? '').split('\n')[0]!]),
    ),
  );
  return ExitCode.ok;
}

export async function results(options: ByIdOptions, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const doc = await api.results(options.id);
  if (options.json) ctx.ui.json(doc);
  else {
    for (const item of doc.items) ctx.ui.out(`${item.index}\t${item.status}\t${item.result === null ? (item.error ?? '') : JSON.stringify(item.result)}`);
    if (doc.aggregate !== null) ctx.ui.out(`aggregate\t${JSON.stringify(doc.aggregate)}`);
    ctx.ui.info(`${doc.status}${doc.complete ? ', complete' : ''}: ${doc.counts.succeeded}/${doc.counts.total} tasks succeeded, ${doc.items.length} results, ${doc.artifact_ids.length} artifacts`);
  }
  return ExitCode.ok;
}

export async function cancel(options: IdsOptions, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const out: Job[] = [];
  let failures = 0;
  for (const id of options.ids) {
    try {
      const job = await api.cancel(id);
      out.push(job);
      if (!options.json) ctx.ui.out(`${job.id}\t${job.status}`);
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
  const api = await connect(ctx, options);
  const only = options.task === undefined ? undefined : Number(options.task);
  if (only !== undefined && (!Number.isInteger(only) || only < 0)) throw new CycleError({ message: `--task ${options.task}: expected a task index (0, 1, …)`, exitCode: ExitCode.usage });
  if (!options.follow) {
    const output = await api.output(options.id);
    const chosen = output.tasks.filter((t) => only === undefined || t.index === only);
    if (only !== undefined && chosen.length === 0) throw new CycleError({ message: `job ${options.id} has no task ${only}`, exitCode: ExitCode.failure });
    // `lines` tells the system's lines (start, completion, failure, retry) from the task's own output.
    if (options.json) ctx.ui.json(chosen.map((task) => ({ ...task, lines: splitLog(task.output) })));
    else
      for (const task of chosen) {
        if (chosen.length > 1) ctx.ui.info(ctx.ui.c.bold(`== task ${task.index} (${task.status})${task.truncated ? ' [start cut]' : ''}`));
        ctx.ui.rawOut(task.output.endsWith('\n') || task.output === '' ? task.output : `${task.output}\n`);
      }
    return ExitCode.ok;
  }
  const multi = only === undefined;
  for await (const { event } of followEvents(api, `/api/v1/jobs/${encodeURIComponent(options.id)}/stream`, { signal: ctx.signal, sleep: (ms) => ctx.clock.sleep(ms, ctx.signal).catch(() => undefined) })) {
    if (event.type === 'task') {
      // A task's start, end or retry: the same system line the server writes into the task's log.
      const data = event.data as TaskEventData;
      if (only !== undefined && data.index !== only) continue;
      if (options.json) ctx.ui.jsonLine({ task: data.index, text: describeTaskEvent(data), source: 'system' });
      else ctx.ui.rawOut(systemLine(data));
      continue;
    }
    if (event.type !== 'output') continue;
    const data = event.data as { index: number; text: string };
    if (only !== undefined && data.index !== only) continue;
    if (options.json) ctx.ui.jsonLine({ task: data.index, text: data.text, source: 'output' });
    else ctx.ui.rawOut(multi ? data.text.replace(/^(?=.)/gm, `[${data.index}] `) : data.text);
  }
  if (ctx.signal.aborted) throw new CycleError({ message: 'interrupted (the job goes on)', exitCode: ExitCode.interrupted });
  return ExitCode.ok;
}

/** `job tail ID`: `job logs ID --follow` under the real CLI's name. */
export function tail(options: TailOptions, ctx: Context): Promise<number> {
  return logs({ ...options, follow: true }, ctx);
}

/** `job watch ID…`: one live view of many jobs; --json gives newline-delimited events. */
export async function watch(options: IdsOptions, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const jobs = new Map<string, Job>();
  for (const id of options.ids) jobs.set(id, await api.getJob(id));
  const printed = new Map<string, string>();
  const print = (job: Job): void => {
    const line = jobLine(job);
    if (printed.get(job.id) === line) return;
    printed.set(job.id, line);
    ctx.ui.info(line);
  };
  const render = (): void => {
    const lines = [...jobs.values()].map((job) => jobLine(job));
    if (ctx.ui.options.interactive) ctx.ui.liveBlock(lines);
  };
  render();
  if (!options.json && !ctx.ui.options.interactive) for (const job of jobs.values()) print(job);
  if (![...jobs.values()].every((j) => isTerminalJobStatus(j.status))) {
    const path = `/api/v1/jobs/watch?ids=${options.ids.map(encodeURIComponent).join(',')}`;
    // From the oldest job's latest event; each job skips what its document already showed.
    const from = Math.min(...[...jobs.values()].map((j) => Number(j.last_event_id)));
    for await (const { id, type, event } of followEvents(api, path, { lastEventId: String(from), signal: ctx.signal, sleep: (ms) => ctx.clock.sleep(ms, ctx.signal).catch(() => undefined) })) {
      const job = event.job_id ? jobs.get(event.job_id) : undefined;
      if (!job || Number(id) <= Number(job.last_event_id)) continue;
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

function colorStatus(status: string, ctx: Context): string {
  const { c } = ctx.ui;
  if (status === 'completed' || status === 'succeeded') return c.green(status);
  if (status === 'failed') return c.red(status);
  if (status === 'partial' || status === 'cancelled') return c.yellow(status);
  return status;
}
