import { arg, defineCommand, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';
import { dataDirFlag } from './shared-flags.js';

const pauseArgs = { duration: arg.optional('how long (e.g. 2h, 30m, 1h30m, or seconds)', '8h') };
const controlFlags = { ...dataDirFlag, ...jsonFlag };
export type PauseOptions = OptionsFrom<typeof pauseArgs, typeof controlFlags>;
export type ResumeOptions = OptionsFrom<{}, typeof controlFlags>;

export const pause = defineCommand({
  name: 'pause',
  summary: "stop this machine's daemon taking new tasks for a while (default 8 hours); what runs finishes",
  args: pauseArgs,
  flags: controlFlags,
  notes: 'The pause is kept in the data folder: a restarted daemon stays paused until the time is up, or until `cycle daemon resume`.',
  examples: ['cycle daemon pause', 'cycle daemon pause 2h', 'cycle daemon pause 30m'],
  load: async () => ({ run: (await import('./pause.js')).pause }),
});

export const resume = defineCommand({
  name: 'resume',
  summary: 'end a pause: the daemon takes tasks again at once',
  args: {},
  flags: controlFlags,
  examples: ['cycle daemon resume'],
  load: async () => ({ run: (await import('./pause.js')).resume }),
});
