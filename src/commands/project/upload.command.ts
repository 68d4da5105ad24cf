import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag, projectFlag } from '../shared-flags.js';

const uploadFlags = {
  ...apiUrlFlag,
  ...jsonFlag,
  rebuild: flag.boolean('--rebuild', 'have the backend re-run build.sh on its previous build image'),
  clean: flag.boolean('--clean', 'have the backend build from the bare base image'),
  force: flag.boolean('--force', 'upload even when the content hash is unchanged'),
  ...projectFlag("upload under this name (default: the manifest's)"),
};
export type UploadOptions = OptionsFrom<{}, typeof uploadFlags>;

export const upload = defineCommand({
  name: 'upload',
  summary: 'validate, pack and push the project to the backend (skipped when nothing changed)',
  args: {},
  flags: uploadFlags,
  examples: ['cycle project upload', 'cycle project upload --rebuild', 'cycle project upload --json | jq .revision'],
  load: () => import('./upload.js'),
});
