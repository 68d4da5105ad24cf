import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { dataDirFlag } from './shared-flags.js';

const unitFlags = {
  apiUrl: flag.value('--api-url <url>', 'the queue server the daemon works for (as for `cycle daemon run`)', { emptyIsUnset: true }),
  name: flag.value('--name <name>', "this machine's name (as for `cycle daemon run`)", { emptyIsUnset: true }),
  slots: flag.withDefault('--slots <n>', 'tasks at once (default 1: the platform runs one job per machine)', '1'),
  ...dataDirFlag,
  environmentFile: flag.value('--environment-file <file>', 'the file holding CYCLE_MACHINE_TOKEN=... (default /etc/cycle/daemon-NAME.env)', {
    emptyIsUnset: true,
  }),
  user: flag.value('--user <user>', 'the user the daemon runs as, who may use Docker (default: you)', { emptyIsUnset: true }),
  insecure: flag.boolean('--insecure', 'let the daemon use plain http:// to a host that is not this machine (the token then travels in clear)'),
  output: flag.value('--output <file>', 'write the unit to this file instead of stdout (e.g. /etc/systemd/system/cycle-daemon.service)', {
    emptyIsUnset: true,
  }),
};
export type UnitOptions = OptionsFrom<{}, typeof unitFlags>;

export const unit = defineCommand({
  name: 'unit',
  summary: "print a systemd unit that runs this machine's daemon as a service",
  args: {},
  flags: unitFlags,
  notes:
    'The token is never in the unit: put `CYCLE_MACHINE_TOKEN=...` in the environment file (0600). Then: sudo systemctl daemon-reload && sudo systemctl enable --now cycle-daemon. See docs/daemon.md.',
  examples: [
    'cycle daemon unit --api-url https://queue.example:8443 --name gpu-a',
    'sudo cycle daemon unit --api-url https://queue.example:8443 --name gpu-a --user ml --output /etc/systemd/system/cycle-daemon.service',
  ],
  load: async () => ({ run: (await import('./unit.js')).unit }),
});
