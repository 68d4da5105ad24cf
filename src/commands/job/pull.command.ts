import { arg, defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag } from '../shared-flags.js';

const pullArgs = { id: arg.required('the job id') };
const pullFlags = {
  ...apiUrlFlag,
  ...jsonFlag,
  out: flag.value('--out <dir>', 'the folder to write to (default: ./<job id>/)', { emptyIsUnset: true }),
  overwrite: flag.boolean('--overwrite', "replace a file already at an artifact's name whose bytes differ"),
};
export type PullOptions = OptionsFrom<typeof pullArgs, typeof pullFlags>;

export const pull = defineCommand({
  name: 'pull',
  summary: "download a job's artifacts so far (also while it runs); files already here are skipped",
  args: pullArgs,
  flags: pullFlags,
  notes:
    'Run it again to fetch only what is new: a file whose size and sha256 match the artifact is not downloaded again. Like `cycle artifacts download --job ID --out DIR`, with the skipping, and the same safety: no writing through links, no .git/… names, no file replaced without --overwrite.',
  examples: ['cycle job pull job_123', 'cycle job pull job_123 --out results/'],
  load: async () => ({ run: (await import('../artifacts.js')).pull }),
});
