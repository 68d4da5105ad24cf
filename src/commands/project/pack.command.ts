import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';

const packFlags = {
  ...jsonFlag,
  out: flag.value('--out <file>', 'where to write it (default: <project>.tar.gz here)', { emptyIsUnset: true }),
  list: flag.boolean('--list', 'only list the files that would go in'),
};
export type PackOptions = OptionsFrom<{}, typeof packFlags>;

export const pack = defineCommand({
  name: 'pack',
  summary: 'write the deterministic .tar.gz an upload would send, or list what goes in',
  args: {},
  flags: packFlags,
  notes:
    'What goes in: every file, minus what .gitignore files (nested too) and .cycleignore leave out, minus .git/,\n.cycle/ and secret-looking files (.env*, *.pem, id_rsa*, .netrc, cloud credentials; "!name" in .cycleignore\nships one on purpose). The same tree gives the same bytes; the content hash is their sha256.',
  examples: ['cycle project pack --list', 'cycle project pack --out /tmp/p.tar.gz --json'],
  load: () => import('./pack.js'),
});
