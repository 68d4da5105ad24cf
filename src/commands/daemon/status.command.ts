import { defineCommand, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';
import { dataDirFlag } from './shared-flags.js';

const statusFlags = { ...dataDirFlag, ...jsonFlag };
export type DaemonStatusOptions = OptionsFrom<{}, typeof statusFlags>;

export const status = defineCommand({
  name: 'status',
  summary: "this machine's daemon: its state, pause, what it runs, its last heartbeat, its GPUs and why it is busy",
  args: {},
  flags: statusFlags,
  notes:
    'Asks the daemon running on this machine through its control socket (DATA_DIR/control.sock, owner-only): run it as the user the daemon runs as. Exit 5 when no daemon runs for that data folder.',
  examples: ['cycle daemon status', 'cycle daemon status --json | jq .activity.busy_reasons', 'cycle daemon status --data-dir /var/lib/cycle/daemon'],
  load: async () => ({ run: (await import('./status.js')).status }),
});
