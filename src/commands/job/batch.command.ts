import { arg, defineCommand, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag, projectFlag } from '../shared-flags.js';

const batchArgs = { file: arg.required('one job per line (the body of POST /api/v1/jobs)') };
const batchFlags = { ...apiUrlFlag, ...jsonFlag, ...projectFlag('the project for lines that name none') };
export type BatchOptions = OptionsFrom<typeof batchArgs, typeof batchFlags>;

export const batch = defineCommand({
  name: 'batch',
  summary: 'submit many jobs from a JSON-lines file (or - for stdin), 200 per request',
  args: batchArgs,
  flags: batchFlags,
  notes: 'Every line is checked before anything is sent; a bad line is named by its number.',
  examples: ['cycle job batch jobs.jsonl', 'generate-jobs | cycle job batch - --json'],
  load: () => import('./batch.js'),
});
