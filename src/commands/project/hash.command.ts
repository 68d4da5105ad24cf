import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';

const hashFlags = { ...jsonFlag, explain: flag.boolean('--explain', 'list what changed since the last build') };
export type HashOptions = OptionsFrom<{}, typeof hashFlags>;

export const hash = defineCommand({
  name: 'hash',
  summary: 'print the build hash (what decides whether the image is rebuilt)',
  args: {},
  flags: hashFlags,
  notes: 'The encoding is documented in docs/build-hash.md.',
  examples: ['cycle project hash', 'cycle project hash --explain'],
  load: () => import('./hash.js'),
});
