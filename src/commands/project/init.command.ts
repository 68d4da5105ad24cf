import { arg, defineCommand, flag, type OptionsFrom } from '../declaration.js';

const initArgs = { dir: arg.optional('folder to create the project in', '.') };
const initFlags = {
  format: flag.choice('--format <format>', 'project format', ['cycleswap', 'computalot']),
  template: flag.choice('--template <template>', 'starting point', ['python', 'shell']),
  name: flag.value('--name <name>', 'project name (default: from the folder name)'),
  force: flag.boolean('--force', 'replace an existing project (the old files are backed up under .cycle/backups/)'),
};
export type InitOptions = OptionsFrom<typeof initArgs, typeof initFlags>;

export const init = defineCommand({
  name: 'init',
  summary: 'create a project: .cycleswap/ (default) or computalot.project.json + Dockerfile',
  args: initArgs,
  flags: initFlags,
  examples: ['cycle project init', 'cycle project init my-exp --template shell --name my-exp', 'cycle project init api --format computalot'],
  load: () => import('./init.js'),
});
