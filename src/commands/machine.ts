import type { Machine } from '../api/machines.js';
import type { Context } from '../context.js';
import { ExitCode } from '../errors.js';
import { formatTable } from '../ui/ui.js';
import type { ByNameOptions, ListOptions, TokenCreateOptions, TokenRevokeOptions } from './machine.command.js';

export async function tokenCreate(options: TokenCreateOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const created = await api.createMachineToken(options.name);
  if (options.json) {
    ctx.ui.json(created);
    return ExitCode.ok;
  }
  // Piped or redirected: the token alone, for a file or a secret store.
  if (ctx.io.stdout.isTTY !== true) {
    ctx.io.stdout.write(`${created.token}\n`);
    return ExitCode.ok;
  }
  const name = created.name ?? options.name ?? 'NAME';
  ctx.ui.out(created.token);
  ctx.ui.info(`This machine token is shown once (the server keeps only its hash); \`cycle machine remove ${name}\` revokes it.`);
  ctx.ui.info(`On the machine: CYCLE_MACHINE_TOKEN=${created.token} cycle daemon run --api-url ${api.baseUrl} --name ${name}`);
  ctx.ui.info('(or put it in a file only you can read and pass --token-file FILE: a token in a command line shows in ps)');
  return ExitCode.ok;
}

export async function tokenRevoke(options: TokenRevokeOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const answer = await api.revokeMachineToken(options.tokenId);
  if (options.json) ctx.ui.json(answer);
  else ctx.ui.success(`machine token ${options.tokenId} revoked`);
  return ExitCode.ok;
}

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const machines = await api.machines();
  if (options.json) {
    ctx.ui.json(machines);
    return ExitCode.ok;
  }
  if (machines.length === 0) {
    ctx.ui.info('no machine is enrolled: cycle machine token create --name NAME, then cycle daemon run on the machine');
    return ExitCode.ok;
  }
  ctx.ui.out(machineTable(machines, ctx));
  return ExitCode.ok;
}

/** The machines as `cycle machine list` prints them (also under `project status --details`). */
export function machineTable(machines: Machine[], ctx: Context): string {
  return formatTable(
    ['NAME', 'STATE', 'RUNNING', 'GPUS', 'DRIVER', 'CUDA', 'LAST HEARTBEAT'],
    machines.map((m) => [
      m.name,
      colorState(m.state, ctx),
      `${m.running.length}/${m.slots}`,
      gpusOf(m),
      m.inventory?.driver ?? '-',
      m.inventory?.cuda ?? '-',
      m.last_heartbeat_at ?? '-',
    ]),
  );
}

export async function show(options: ByNameOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const machine = await api.machine(options.name);
  if (options.json) ctx.ui.json(machine);
  else printMachine(machine, ctx);
  return ExitCode.ok;
}

export async function drain(options: ByNameOptions, ctx: Context): Promise<number> {
  return setDrain(options, ctx, true);
}

export async function undrain(options: ByNameOptions, ctx: Context): Promise<number> {
  return setDrain(options, ctx, false);
}

async function setDrain(options: ByNameOptions, ctx: Context, on: boolean): Promise<number> {
  const api = await ctx.api(options);
  const machine = await api.drainMachine(options.name, on);
  if (options.json) ctx.ui.json(machine);
  else
    ctx.ui.success(
      on
        ? `machine ${machine.name} is draining: it finishes ${machine.running.length} running task(s) and takes nothing new (cycle machine undrain ${machine.name} ends it)`
        : `machine ${machine.name} takes work again (${machine.state})`,
    );
  return ExitCode.ok;
}

export async function remove(options: ByNameOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const answer = await api.removeMachine(options.name);
  if (options.json) ctx.ui.json(answer);
  else ctx.ui.success(`machine ${options.name} removed: its token is revoked and its running tasks went back to the queue`);
  return ExitCode.ok;
}

function printMachine(m: Machine, ctx: Context): void {
  const rows: Array<[string, string]> = [
    ['machine', m.name],
    ['state', colorState(m.state, ctx)],
    ['slots', `${m.running.length} of ${m.slots} in use`],
  ];
  const inv = m.inventory;
  if (inv) {
    rows.push(['cpus', String(inv.cpus)], ['memory', gib(inv.memory_bytes)], ['free disk', gib(inv.free_disk_bytes)]);
    rows.push(['gpus', inv.gpus.length ? inv.gpus.map((g) => `${g.index}: ${g.name} (${Math.round(g.memory_mib / 1024)} GiB)`).join(', ') : 'none']);
    if (inv.driver) rows.push(['driver', `${inv.driver}${inv.cuda ? ` (CUDA ${inv.cuda})` : ''}`]);
    if (inv.gpu_problem) rows.push(['gpu problem', inv.gpu_problem]);
    rows.push(['docker', `${inv.docker ? 'yes' : 'no'}, gVisor ${inv.gvisor ? 'yes' : 'no'}`]);
    if (inv.version) rows.push(['cycle', inv.version]);
  }
  const activity = m.activity;
  if (activity) {
    if (!activity.idle) rows.push(['busy', activity.busy_reasons.join('; ') || 'not idle']);
    if (activity.paused_until) rows.push(['paused until', activity.paused_until]);
    rows.push(['busy assign', activity.forbid_busy_assign ? 'forbidden' : 'allowed']);
  }
  rows.push(['heartbeat', m.last_heartbeat_at ?? 'never'], ['enrolled', m.enrolled_at]);
  for (const task of m.running) rows.push(['running', `${task.job_id} ${task.task_id}${task.started_at ? ` since ${task.started_at}` : ''}`]);
  for (const line of m.not_placed ?? []) rows.push(['not placed', `${line.job_id}: ${line.reason}`]);
  for (const [key, value] of rows) ctx.ui.out(`${key.padEnd(12)} ${value}`);
}

function gpusOf(m: Machine): string {
  const gpus = m.inventory?.gpus ?? [];
  if (gpus.length === 0) return m.inventory ? '0' : '-';
  const names = [...new Set(gpus.map((g) => g.name))];
  return `${gpus.length} ${names.join('/')}`;
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function colorState(state: string, ctx: Context): string {
  const { c } = ctx.ui;
  if (state === 'idle') return c.green(state);
  if (state === 'offline') return c.red(state);
  if (state === 'busy') return c.cyan(state);
  return c.yellow(state);
}
