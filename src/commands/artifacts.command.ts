import { arg, defineCommand, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const listFlags = { ...apiUrlFlag, ...jsonFlag, job: flag.value('--job <id>', "only this job's artifacts") };
export type ListOptions = OptionsFrom<{}, typeof listFlags>;
const downloadArgs = { ids: arg.variadic('artifact ids', { required: false }) };
const downloadFlags = {
  ...apiUrlFlag,
  ...jsonFlag,
  job: flag.value('--job <id>', "all of a job's artifacts"),
  out: flag.value('--out <dir>', 'the folder to write to (default: ./<job id>/ with --job, ./artifacts/ for ids)', { emptyIsUnset: true }),
  overwrite: flag.boolean('--overwrite', "replace a file already at an artifact's name (never a folder, a link on the way, or .git/…)"),
};
export type DownloadOptions = OptionsFrom<typeof downloadArgs, typeof downloadFlags>;

const uploadArgs = { files: arg.variadic('files to upload', { required: true }) };
const uploadFlags = { ...apiUrlFlag, ...jsonFlag };
export type UploadOptions = OptionsFrom<typeof uploadArgs, typeof uploadFlags>;

export const list = defineCommand({
  name: 'list',
  summary: 'list artifacts (newest first, or of one job)',
  args: {},
  flags: listFlags,
  examples: ['cycle artifacts list --job job_123'],
  load: async () => ({ run: (await import('./artifacts.js')).list }),
});

export const download = defineCommand({
  name: 'download',
  summary: 'download artifacts: verified, resumable, written atomically inside --out',
  args: downloadArgs,
  flags: downloadFlags,
  notes:
    'Without --out, a folder of their own: ./<job id>/ for --job ID, ./artifacts/ for ids. Nothing is written through a symbolic link inside --out, no name with a .git (or .hg, .svn) component is written at any depth, and a file already there is not replaced unless --overwrite (the same bytes are no conflict). Refused artifacts are named, the others written, and the exit code is 1.',
  examples: ['cycle artifacts download --job job_123 --out results/', 'cycle artifacts download art_1 art_2'],
  load: async () => ({ run: (await import('./artifacts.js')).download }),
});

export const upload = defineCommand({
  name: 'upload',
  summary: 'upload files for payloads to refer to; prints each id (use it as a *_ref)',
  args: uploadArgs,
  flags: uploadFlags,
  notes: 'Artifacts are content-addressed: the sha256 is computed first and the bytes are skipped when the backend already has them.',
  examples: [
    'cycle artifacts upload train.csv',
    `ref=$(cycle artifacts upload data.parquet) && cycle recipe submit lightgbm-train --payload "{\\"dataset_ref\\": \\"$ref\\"}"`,
  ],
  load: async () => ({ run: (await import('./artifacts.js')).upload }),
});
