import { defineCommand, flag, type OptionsFrom } from './declaration.js';
import { jsonFlag } from './shared-flags.js';

// A sibling of `server`, not `server gc`: a group has no action of its own, and `cycle server`
// must go on starting the server.
const serverGcFlags = {
  dataDir: flag.value('--data-dir <dir>', 'the server data folder (default $XDG_DATA_HOME/cycle/server, as for `cycle server`)'),
  keepRevisions: flag.withDefault(
    '--keep-revisions <n>',
    'newest revisions kept per project (the active one and those a queued/running job uses always stay)',
    '5',
  ),
  olderThan: flag.withDefault('--older-than <age>', 'finished jobs older than this lose artifacts, logs, work folders and events (e.g. 30d, 12h)', '30d'),
  dryRun: flag.boolean('--dry-run', 'print what would be deleted; delete nothing'),
  ...jsonFlag,
};
export type ServerGcCommandOptions = OptionsFrom<{}, typeof serverGcFlags>;

export const serverGc = defineCommand({
  name: 'server-gc',
  summary: "delete a local server's old revisions, trees, artifacts, logs and events (retention)",
  args: {},
  flags: serverGcFlags,
  notes: 'Safe while the server runs: rows go in one transaction, files after. See docs/api.md "Retention".',
  examples: ['cycle server-gc --dry-run', 'cycle server-gc --keep-revisions 3 --older-than 7d --data-dir /srv/cycle'],
  load: () => import('./server-gc.js'),
});
