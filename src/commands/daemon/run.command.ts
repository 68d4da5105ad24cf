import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { dataDirFlag } from './shared-flags.js';

const runFlags = {
  apiUrl: flag.value('--api-url <url>', "the server's address (https://, or http:// to this machine; --insecure for another host)"),
  name: flag.value('--name <name>', 'this machine\'s name in the pool (lowercase letters, digits, ".", "_", "-")'),
  slots: flag.withDefault('--slots <n>', 'tasks run at the same time (the platform runs one job per machine)', '1'),
  ...dataDirFlag,
  tokenFile: flag.value('--token-file <file>', 'read the machine token from FILE (else CYCLE_MACHINE_TOKEN)'),
  insecure: flag.boolean('--insecure', 'allow plain http:// to another host (the token then travels in clear)'),
};
export type DaemonRunOptions = OptionsFrom<{}, typeof runFlags>;

export const run = defineCommand({
  name: 'run',
  summary: "run this machine's share of a cycle server's queue (foreground)",
  args: {},
  flags: runFlags,
  notes:
    "The token is a machine token (`cycle machine token create` on the server), from CYCLE_MACHINE_TOKEN or\n--token-file: never a flag value, which `ps` would show. Logs go to stderr. Ctrl-C or SIGTERM stops the\nrunning containers and gives their tasks back to the queue. A daemon that cannot renew a lease for the\nlease's life (the server unreachable) stops that task's container itself.",
  examples: [
    'CYCLE_MACHINE_TOKEN=$(cat token) cycle daemon run --api-url https://queue.example:8787 --name gpu-a',
    'cycle daemon run --api-url https://queue.example:8787 --name gpu-b --slots 2 --token-file /etc/cycle/machine-token',
  ],
  load: () => import('./run.js'),
});
