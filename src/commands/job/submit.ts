import type { Context } from '../../context.js';
import { ExitCode, usageError } from '../../errors.js';
import { resolveProjectName } from '../../api/connect.js';
import type { ApiClient } from '../../api/client.js';
import { jobIdOf, jobRequestSchema, JOB_TYPES, type JobRequestInput, type SubmittedJobView } from '../../api/schemas.js';
import { readArgumentText, readJsonArgument, parseJsonText, parseDuration, parseKeyValues, parseRequirements, positiveInteger, shellWords } from '../args.js';
import { waitForJob } from './follow.js';
import type { SubmitOptions } from './submit.command.js';

/** The job request the flags describe; every mistake is a usage error before any request. */
export async function buildJobRequest(options: SubmitOptions, ctx: Context): Promise<JobRequestInput> {
  if (options.runner !== undefined && options.runnerJson !== undefined) throw usageError('--runner and --runner-json are the same thing: use one');
  if (options.reduce !== undefined && options.reduceJson !== undefined) throw usageError('--reduce and --reduce-json are the same thing: use one');
  const fanOutKinds = [
    options.fanOutBy !== undefined && '--fan-out-by',
    options.fanOutItems !== undefined && '--fan-out-items',
    (options.chunks ?? options.rangeField ?? options.total) !== undefined && '--chunks/--range-field/--total',
  ].filter(Boolean);
  if (fanOutKinds.length > 1)
    throw usageError(
      `${fanOutKinds.join(' and ')} cannot be mixed: a job has one fan-out shape`,
      'choose --fan-out-by FIELD, --fan-out-items @items.jsonl, or --chunks N --range-field F --total T',
    );
  if (
    (options.chunks ?? options.rangeField ?? options.total) !== undefined &&
    (options.chunks === undefined || options.rangeField === undefined || options.total === undefined)
  ) {
    throw usageError('--chunks, --range-field and --total go together', 'e.g. --chunks 20 --range-field seeds --total 10000');
  }
  if (options.type !== undefined && !(JOB_TYPES as readonly string[]).includes(options.type))
    throw usageError(`--type ${options.type}: expected one of ${JOB_TYPES.join(', ')}`);
  const stdinUsed = [options.payload === '-', options.fanOutItems === '-'].filter(Boolean).length;
  if (stdinUsed > 1) throw usageError('only one of --payload and --fan-out-items can read stdin (-)');

  const request: JobRequestInput = { project: await resolveProjectName(ctx, options.project) };
  if (options.type) request.type = options.type as JobRequestInput['type'];
  if (options.runner !== undefined) request.runner_command = shellWords(options.runner, '--runner');
  if (options.runnerJson !== undefined) request.runner_command = stringArray(parseJsonText(options.runnerJson, '--runner-json'), '--runner-json');
  if (options.reduce !== undefined) request.reduce_command = shellWords(options.reduce, '--reduce');
  if (options.reduceJson !== undefined) request.reduce_command = stringArray(parseJsonText(options.reduceJson, '--reduce-json'), '--reduce-json');
  if (options.payload !== undefined) {
    const payload = await readJsonArgument('--payload', options.payload, { cwd: ctx.cwd, stdin: ctx.io.stdin });
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) throw usageError('--payload must be a JSON object, e.g. {"model": "m1"}');
    request.payload = payload as Record<string, unknown>;
  }
  if (options.fanOutBy !== undefined) request.fan_out = { by: options.fanOutBy };
  if (options.fanOutItems !== undefined) request.fan_out = { items: await readItems(options.fanOutItems, ctx) };
  if (options.chunks !== undefined)
    request.fan_out = {
      chunks: positiveInteger(options.chunks, '--chunks'),
      range_field: options.rangeField!,
      total: positiveInteger(options.total!, '--total'),
    };
  if (options.batchSize !== undefined) request.batch_size = positiveInteger(options.batchSize, '--batch-size');
  if (options.profile !== undefined) request.profile = options.profile;
  if (options.timeout !== undefined) request.timeout_s = parseDuration(options.timeout, '--timeout');
  if (options.require !== undefined) request.requirements = parseRequirements(options.require, '--require');
  if (options.tag.length) request.tags = options.tag;
  if (options.meta.length) request.meta = parseKeyValues(options.meta, '--meta');
  if (options.variant !== undefined) request.variant = options.variant;
  if (options.dependsOn.length) request.depends_on = options.dependsOn;
  if (options.callbackUrl !== undefined) request.callback_url = options.callbackUrl;
  if (options.clientRef !== undefined) request.client_ref = options.clientRef;
  const checked = jobRequestSchema.safeParse(request);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw usageError(`invalid job: ${issue.path.join('.') || '(job)'}: ${issue.message}`, flagFor(issue.path[0]));
  }
  return request;
}

export async function run(options: SubmitOptions, ctx: Context): Promise<number> {
  const request = await buildJobRequest(options, ctx);
  const api = await ctx.api(options);
  const job = await api.submitJob(request, options.idempotencyKey);
  return reportSubmitted(api, job, ctx, {
    json: options.json,
    wait: options.wait,
    cancelOnInterrupt: options.cancelOnInterrupt,
    what: job.project ?? request.project,
  });
}

/**
 * What `job submit` and `recipe submit` print for a new job (its id on stdout), or, with
 * --wait, follow it to its end (the exit code says how it ended).
 */
export async function reportSubmitted(
  api: ApiClient,
  job: SubmittedJobView,
  ctx: Context,
  options: { json: boolean; wait: boolean; cancelOnInterrupt: boolean; what: string },
): Promise<number> {
  const id = jobIdOf(job);
  const total = job.counts?.total;
  const tasks = total === undefined ? '' : ` (${total} task${total === 1 ? '' : 's'})`;
  if (!options.wait) {
    if (options.json) ctx.ui.json(job);
    else {
      ctx.ui.out(id);
      ctx.ui.info(`submitted ${id} to ${options.what}${tasks}; follow it with: cycle job watch ${id}`);
    }
    return ExitCode.ok;
  }
  if (!options.json) ctx.ui.out(id);
  ctx.ui.info(`submitted ${id}${tasks}; waiting for it (Ctrl-C leaves it running${options.cancelOnInterrupt ? ', --cancel-on-interrupt cancels it' : ''})`);
  const { code, job: final } = await waitForJob(api, id, ctx, { json: false, cancelOnInterrupt: options.cancelOnInterrupt });
  if (options.json) ctx.ui.json(final);
  return code;
}

/** Items as JSON lines (one object each) or one JSON array, from @file or - (stdin). */
async function readItems(value: string, ctx: Context): Promise<Array<Record<string, unknown>>> {
  const { text, source } = await readArgumentText('--fan-out-items', value, { cwd: ctx.cwd, stdin: ctx.io.stdin });
  const trimmed = text.trim();
  let items: unknown[];
  if (trimmed.startsWith('[')) items = parseJsonText(trimmed, source) as unknown[];
  else {
    items = [];
    trimmed.split('\n').forEach((line, index) => {
      if (line.trim() === '') return;
      items.push(parseJsonText(line, `${source} line ${index + 1}`));
    });
  }
  if (items.length === 0) throw usageError(`${source}: no items`);
  items.forEach((item, index) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw usageError(`${source}: item ${index + 1} is not a JSON object`);
  });
  return items as Array<Record<string, unknown>>;
}

function stringArray(value: unknown, flag: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v !== ''))
    throw usageError(`${flag}: expected a non-empty JSON array of strings, e.g. '["python3","eval.py"]'`);
  return value as string[];
}

function flagFor(field: PropertyKey | undefined): string | undefined {
  const flags: Record<string, string> = {
    project: 'pass --project NAME',
    timeout_s: '--timeout takes seconds or 10m, 1h',
    callback_url: '--callback-url takes an http(s) URL',
    requirements: '--require takes gpu=N,cpu=N,memory_gb=N,storage_gb=N',
    tags: '--tag takes 1-128 characters',
  };
  return typeof field === 'string' ? flags[field] : undefined;
}
