import { defineCommand, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';

const validateFlags = { ...jsonFlag };
export type ValidateOptions = OptionsFrom<{}, typeof validateFlags>;

export const validate = defineCommand({
  name: 'validate',
  summary: 'check the project files and list every problem with file:line:column',
  args: {},
  flags: validateFlags,
  notes: 'Exit status 3 when the project is invalid.',
  examples: ['cycle project validate', 'cycle project validate --json | jq .diagnostics'],
  load: () => import('./validate.js'),
});
