import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag, projectFlag } from '../shared-flags.js';

const remoteFlags = { ...apiUrlFlag, ...jsonFlag, ...projectFlag() };
export type RemoteProjectOptions = OptionsFrom<{}, typeof remoteFlags>;

const statusFlags = {
  ...remoteFlags,
  details: flag.boolean('--details', 'per-node readiness'),
  watch: flag.boolean('--watch', 'follow until the build is ready or failed (exit 6 when it failed)'),
};
export type StatusOptions = OptionsFrom<{}, typeof statusFlags>;

export const prepare = defineCommand({
  name: 'prepare',
  summary: "prepare the uploaded project on the backend ahead of jobs (the API's init; optional)",
  args: {},
  flags: remoteFlags,
  notes: 'Needs at least $5 of balance on hosted backends (402 otherwise).',
  examples: ['cycle project prepare', 'cycle project prepare && cycle project status --watch'],
  load: async () => ({ run: (await import('./remote.js')).prepare }),
});

export const status = defineCommand({
  name: 'status',
  summary: 'is the uploaded project published and ready for jobs?',
  args: {},
  flags: statusFlags,
  examples: ['cycle project status', 'cycle project status --details --json', 'cycle project status --watch'],
  load: async () => ({ run: (await import('./remote.js')).status }),
});

export const invalidate = defineCommand({
  name: 'invalidate',
  summary: 'drop the prepared images on the backend (the next job builds again)',
  args: {},
  flags: remoteFlags,
  examples: ['cycle project invalidate'],
  load: async () => ({ run: (await import('./remote.js')).invalidate }),
});
