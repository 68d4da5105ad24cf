import { defineCommand, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';
import { dataDirFlag } from './shared-flags.js';

const busyFlags = { ...dataDirFlag, ...jsonFlag };
export type BusyAssignOptions = OptionsFrom<{}, typeof busyFlags>;

export const forbidBusyAssign = defineCommand({
  name: 'forbid-busy-assign',
  summary: 'a busy machine takes no task and gives back what it runs (the default; undo: allow-busy-assign)',
  args: {},
  flags: busyFlags,
  notes:
    'Busy = not idle by the platform rule: non-job CPU over 5 %, non-job RAM over 16 GB, a GPU over 5 % SM or 2 GB VRAM not used by a job, or keyboard/mouse input in the last 5 minutes in a desktop session. Kept in the data folder across restarts.',
  examples: ['cycle daemon forbid-busy-assign'],
  load: async () => ({ run: (await import('./busy-assign.js')).forbid }),
});

export const allowBusyAssign = defineCommand({
  name: 'allow-busy-assign',
  summary: 'undo forbid-busy-assign: a busy machine keeps its tasks and takes more',
  args: {},
  flags: busyFlags,
  notes: 'For a machine whose owner does not mind sharing it: the idle rule then no longer stops or holds back its tasks (a pause still does).',
  examples: ['cycle daemon allow-busy-assign'],
  load: async () => ({ run: (await import('./busy-assign.js')).allow }),
});
