import { arg, defineCommand, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const kvFlags = { ...apiUrlFlag, ...jsonFlag };
const project = arg.required('the project');
const key = arg.required('the key');
const getArgs = { project, key };
export type GetOptions = OptionsFrom<typeof getArgs, typeof kvFlags>;
const setArgs = { project, key, value: arg.required('JSON (a string needs quotes), @file, or -') };
export type SetOptions = OptionsFrom<typeof setArgs, typeof kvFlags>;
const listArgs = { project };
export type ListOptions = OptionsFrom<typeof listArgs, typeof kvFlags>;

export const get = defineCommand({
  name: 'get',
  summary: 'print a value as JSON',
  args: getArgs,
  flags: kvFlags,
  examples: ['cycle kv get my-exp best_lr'],
  load: async () => ({ run: (await import('./kv.js')).get }),
});

export const set = defineCommand({
  name: 'set',
  summary: 'set a value: JSON, @file, or - for stdin',
  args: setArgs,
  flags: kvFlags,
  examples: ['cycle kv set my-exp best_lr 0.003', 'cycle kv set my-exp config @config.json'],
  load: async () => ({ run: (await import('./kv.js')).set }),
});

export const list = defineCommand({
  name: 'list',
  summary: "list a project's keys and values",
  args: listArgs,
  flags: kvFlags,
  examples: ['cycle kv list my-exp'],
  load: async () => ({ run: (await import('./kv.js')).list }),
});
