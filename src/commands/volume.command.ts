import { arg, defineCommand, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const volumeFlags = { ...apiUrlFlag, ...jsonFlag };
const uploadArgs = { dir: arg.required('the folder to upload') };
const uploadFlags = { ...volumeFlags, name: flag.value('--name <name>', "the volume's name (default: the folder's name)", { emptyIsUnset: true }) };
export type UploadOptions = OptionsFrom<typeof uploadArgs, typeof uploadFlags>;
export type ListOptions = OptionsFrom<{}, typeof volumeFlags>;
const rmArgs = { name: arg.required('the volume') };
export type RmOptions = OptionsFrom<typeof rmArgs, typeof volumeFlags>;

export const upload = defineCommand({
  name: 'upload',
  summary: 'upload a folder as a volume: only files the backend lacks are sent',
  args: uploadArgs,
  flags: uploadFlags,
  notes: 'Jobs of a project whose [main].volumes names the volume see it read-only at /volumes/<name>. Uploading again replaces its content.',
  examples: ['cycle volume upload ./data --name training-data', 'cycle volume upload ./data --json | jq .sent_files'],
  load: async () => ({ run: (await import('./volume.js')).upload }),
});

export const list = defineCommand({
  name: 'list',
  summary: "list the backend's volumes",
  args: {},
  flags: volumeFlags,
  examples: ['cycle volume list'],
  load: async () => ({ run: (await import('./volume.js')).list }),
});

export const rm = defineCommand({
  name: 'rm',
  summary: 'remove a volume from the backend',
  args: rmArgs,
  flags: volumeFlags,
  examples: ['cycle volume rm training-data'],
  load: async () => ({ run: (await import('./volume.js')).rm }),
});
