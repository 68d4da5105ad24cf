import type { Context } from '../context.js';
import { ExitCode, usageError } from '../errors.js';
import { parseDuration, readJsonArgument } from './args.js';
import { reportSubmitted } from './job/submit.js';
import type { ListOptions, ShowOptions, SubmitOptions } from './recipe.command.js';

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const recipes = await api.recipes();
  if (options.json) ctx.ui.json(recipes);
  else if (recipes.length === 0) ctx.ui.info('this server offers no recipes');
  else for (const recipe of recipes) ctx.ui.out(`${recipe.name}\t${recipe.description ?? ''}`);
  return ExitCode.ok;
}

export async function show(options: ShowOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const recipe = await api.recipe(options.name);
  if (options.json) {
    ctx.ui.json(recipe);
    return ExitCode.ok;
  }
  const { name, description, ...rest } = recipe;
  ctx.ui.out(name);
  if (description) ctx.ui.out(description);
  // A server may send the schema under both of its names (`payload_schema` and `schema`): shown once.
  if ('payload_schema' in rest && JSON.stringify(rest.schema) === JSON.stringify(rest.payload_schema)) delete rest.schema;
  // The schema and operations are the server's: shown as it wrote them.
  for (const [key, value] of Object.entries(rest)) ctx.ui.out(`${key}: ${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}`);
  return ExitCode.ok;
}

export async function submit(options: SubmitOptions, ctx: Context): Promise<number> {
  const payload = options.payload === undefined ? {} : await readJsonArgument('--payload', options.payload, { cwd: ctx.cwd, stdin: ctx.io.stdin });
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload))
    throw usageError('--payload must be a JSON object, e.g. {"steps": 1000}', `\`cycle recipe show ${options.name}\` shows the fields it takes`);
  const body: { payload: Record<string, unknown>; timeout_s?: number } = { payload: Object.fromEntries(Object.entries(payload)) };
  if (options.timeout !== undefined) body.timeout_s = parseDuration(options.timeout, '--timeout');
  const api = await ctx.api(options);
  const job = await api.submitRecipe(options.name, body);
  return reportSubmitted(api, job, ctx, {
    json: options.json,
    wait: options.wait,
    cancelOnInterrupt: options.cancelOnInterrupt,
    what: `recipe ${options.name}`,
  });
}
