import { arg, defineCommand, defineGroup, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const machineFlags = { ...apiUrlFlag, ...jsonFlag };
const tokenFlags = {
  ...machineFlags,
  name: flag.value('--name <name>', 'the machine this token may enrol (default: the name its daemon gives)', { emptyIsUnset: true }),
};
export type TokenCreateOptions = OptionsFrom<{}, typeof tokenFlags>;
export type ListOptions = OptionsFrom<{}, typeof machineFlags>;
const byName = { name: arg.required('the machine (cycle machine list shows them)') };
export type ByNameOptions = OptionsFrom<typeof byName, typeof machineFlags>;

export const tokenCreate = defineCommand({
  name: 'create',
  summary: 'make a machine token for `cycle daemon run` (shown once; the server keeps its hash)',
  args: {},
  flags: tokenFlags,
  notes:
    'On a terminal it says how to start the daemon with it; otherwise it prints the token alone, for a\nfile or a secret store. The token can enrol a machine, lease, renew and report on its own leases:\nnothing else. `cycle machine remove NAME` revokes it.',
  examples: [
    'cycle machine token create --name gpu-a',
    'cycle machine token create --name gpu-a > /etc/cycle/machine-token && chmod 600 /etc/cycle/machine-token',
  ],
  load: async () => ({ run: (await import('./machine.js')).tokenCreate }),
});

const byTokenId = { tokenId: arg.required("the token's id (token_id in `cycle machine token create --json`)") };
export type TokenRevokeOptions = OptionsFrom<typeof byTokenId, typeof machineFlags>;

export const tokenRevoke = defineCommand({
  name: 'revoke',
  summary: 'revoke a machine token by its id (the machine that enrolled with it is removed)',
  args: byTokenId,
  flags: machineFlags,
  notes: 'An enrolled machine is removed by its name: cycle machine remove NAME (that revokes its token too).',
  examples: ['cycle machine token revoke mtok_0abc'],
  load: async () => ({ run: (await import('./machine.js')).tokenRevoke }),
});

export const token = defineGroup({
  name: 'token',
  summary: 'machine tokens: what a daemon enrols its machine with',
  examples: ['cycle machine token create --name gpu-a'],
  commands: [tokenCreate, tokenRevoke],
});

export const list = defineCommand({
  name: 'list',
  summary: 'the enrolled machines: state, running tasks, GPUs, driver and CUDA, last heartbeat',
  args: {},
  flags: machineFlags,
  notes: "States: idle, busy (running a task, or not idle by the platform's rule), paused, draining, offline\n(no heartbeat within a lease's life).",
  examples: ['cycle machine list', "cycle machine list --json | jq '.[] | {name, state}'"],
  load: async () => ({ run: (await import('./machine.js')).list }),
});

export const show = defineCommand({
  name: 'show',
  summary: 'one machine: what it has, what it runs, and why queued tasks are not placed on it',
  args: byName,
  flags: machineFlags,
  examples: ['cycle machine show gpu-a'],
  load: async () => ({ run: (await import('./machine.js')).show }),
});

export const drain = defineCommand({
  name: 'drain',
  summary: 'let a machine finish what it runs and offer it nothing new',
  args: byName,
  flags: machineFlags,
  examples: ['cycle machine drain gpu-a', 'cycle machine undrain gpu-a'],
  load: async () => ({ run: (await import('./machine.js')).drain }),
});

export const undrain = defineCommand({
  name: 'undrain',
  summary: 'end a drain: the machine takes work again',
  args: byName,
  flags: machineFlags,
  examples: ['cycle machine undrain gpu-a'],
  load: async () => ({ run: (await import('./machine.js')).undrain }),
});

export const remove = defineCommand({
  name: 'remove',
  summary: 'remove a machine: its token is revoked, its running tasks go back to the queue',
  args: byName,
  flags: machineFlags,
  examples: ['cycle machine remove gpu-a'],
  load: async () => ({ run: (await import('./machine.js')).remove }),
});
