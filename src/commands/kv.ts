import type { Context } from '../context.js';
import { ExitCode, usageError } from '../errors.js';
import { parseJsonText, readArgumentText } from './args.js';
import type { GetOptions, SetOptions, ListOptions } from './kv.command.js';

export async function get(options: GetOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const entry = await api.kvGet(options.project, options.key);
  // The value itself, as JSON, is what scripts want (`cycle kv get p k | jq`).
  ctx.ui.out(JSON.stringify(options.json ? entry : entry.value, null, options.json ? 2 : 0));
  return ExitCode.ok;
}

export async function set(options: SetOptions, ctx: Context): Promise<number> {
  const { text, source } = await readArgumentText('VALUE', options.value, { cwd: ctx.cwd, stdin: ctx.io.stdin });
  let value: unknown;
  try {
    value = parseJsonText(text, source);
  } catch (error) {
    throw usageError((error as Error).message, `values are JSON: a string needs quotes, e.g. cycle kv set ${options.project} ${options.key} '"text"'`);
  }
  const api = await ctx.api(options);
  const entry = await api.kvPut(options.project, options.key, value);
  // A server that answers nothing (204) has still stored what was sent.
  if (options.json) ctx.ui.json(entry ?? { project: options.project, key: options.key, value });
  else ctx.ui.success(`${options.project}/${options.key} = ${JSON.stringify(entry && 'value' in entry ? entry.value : value).slice(0, 120)}`);
  return ExitCode.ok;
}

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const entries = await api.kvList(options.project);
  if (options.json) ctx.ui.json(entries);
  // A server may list the keys only: a value it did not send is `-` (a JSON text would be quoted).
  else for (const entry of entries) ctx.ui.out(`${entry.key}\t${'value' in entry ? JSON.stringify(entry.value) : '-'}`);
  return ExitCode.ok;
}
