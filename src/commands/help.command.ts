import { arg, defineCommand, type OptionsFrom } from './declaration.js';

const helpArgs = { topic: arg.variadic('a command path (e.g. "project test") or "exit-codes"', { required: false }) };
export type HelpOptions = OptionsFrom<typeof helpArgs, {}>;

export const help = defineCommand({
  name: 'help',
  summary: 'show help for a command, or a topic: exit-codes',
  args: helpArgs,
  flags: {},
  examples: ['cycle help project init', 'cycle help exit-codes'],
  load: () => import('./help.js'),
});
