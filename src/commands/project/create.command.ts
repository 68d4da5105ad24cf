import { arg, defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag } from '../shared-flags.js';

const createArgs = { name: arg.required('the project name') };
const createFlags = {
  ...apiUrlFlag,
  ...jsonFlag,
  remoteDir: flag.value('--remote-dir <dir>', "the project's folder on the backend (the server's default when absent)"),
};
export type CreateOptions = OptionsFrom<typeof createArgs, typeof createFlags>;

export const create = defineCommand({
  name: 'create',
  summary: 'create a project on the backend (`project upload` does it when needed)',
  args: createArgs,
  flags: createFlags,
  examples: ['cycle project create my-exp'],
  load: () => import('./create.js'),
});
