import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { MachineActivity, MachineInventory } from '../../api/machines.js';
import { heartbeatAnswerSchema } from '../../api/machine-protocol.js';
import { ApiError, Transport } from '../../api/transport.js';
import type { Clock } from '../../context.js';
import type { DockerDriver } from '../../docker/driver.js';
import { CycleError, ExitCode } from '../../errors.js';
import type { Env } from '../../ui/streams.js';
import type { ControlState, DaemonStatusReport } from '../../daemon/control.js';
import { decideBusy } from '../../daemon/idle.js';
import { HttpQueueClient } from './http-queue-client.js';
import { HttpTaskInputs } from './http-task-inputs.js';
import { Worker } from './worker.js';

export interface DaemonOptions {
  apiUrl: string;
  /** The machine token (CYCLE_MACHINE_TOKEN or --token-file). */
  token: string;
  name: string;
  slots: number;
  dataDir: string;
  version: string;
  docker: () => Promise<DockerDriver>;
  /** Read for job containers' settings (CYCLE_MEMORY_LIMIT, CYCLE_DOCKER_NETWORK). */
  env: Env;
  clock: Clock;
  log: (line: string) => void;
  /** What the machine has and whether it is idle (the daemon's probe, src/daemon/probe.ts; tests inject one). */
  probe: () => Promise<{ inventory: MachineInventory; activity: MachineActivity }>;
  /** The owner's say (`cycle daemon pause`, `forbid-busy-assign`): the control socket's state; without one, what the probe's activity says. */
  control?: () => ControlState;
  /** Ends the daemon: its containers stop and its leases go back to the queue. */
  signal: AbortSignal;
  heartbeatMs?: number;
  /** Waiting on the server for an answer or its next bytes (the lease's life bounds renewals anyway). */
  timeoutMs?: number;
}

/** A daemon that is running: told what its probe says, stopped by the signal. */
export interface RunningDaemon {
  /** Settles when the daemon has stopped (its containers stopped, its leases given back). */
  done: Promise<void>;
  /** Tasks running now. */
  running(): number;
  /** What `cycle daemon status` shows of it. */
  status(): DaemonStatusReport;
  /** The GPUs its tasks hold (undefined: a task holds them all): their load is the jobs'. */
  gpusInUse(): number[] | undefined;
  /** The control state changed (a pause, a resume): acted on now, not at the next heartbeat. */
  poke(): void;
}

/** The daemon's serverKey (labels its containers, so a restart removes what a crash left). */
export function daemonServerKey(dataDir: string): string {
  return `daemon-${createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16)}`;
}

const DEFAULT_HEARTBEAT_MS = 5_000;

/**
 * `cycle daemon run`: the server's Worker on this machine, talking to the queue over the machine
 * routes (HttpQueueClient) and fetching its inputs from them (HttpTaskInputs). Heartbeats carry
 * the probe's inventory and activity; a paused or busy machine takes no new task, and a busy one
 * with forbid-busy-assign gives back what it runs. The first heartbeat must succeed: a refused
 * token or a taken name stops the start with the reason.
 */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const scratch = path.join(options.dataDir, 'tmp');
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(scratch, { mode: 0o700 });
  // Not bound to the daemon's signal: the releases after a Ctrl-C must still reach the server.
  const transport = new Transport({ baseUrl: options.apiUrl, token: options.token, version: options.version, timeoutMs: options.timeoutMs ?? 30_000 });
  let activity: MachineActivity = { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false };
  let inventory: MachineInventory | null = null;
  let lastHeartbeatAt: string | null = null;
  let lastError: string | null = null;
  /** The server drained this machine (`cycle machine drain`), as its last heartbeat answer said. */
  let drained = false;
  const control = (): ControlState => options.control?.() ?? { paused_until: activity.paused_until, forbid_busy_assign: activity.forbid_busy_assign };
  const heartbeat = async (): Promise<void> => {
    const probed = await options.probe();
    // The owner's say travels with the activity: the server shows it and places by it.
    activity = options.control ? { ...probed.activity, ...options.control() } : probed.activity;
    inventory = probed.inventory;
    try {
      const { body } = await transport.request('POST', '/api/v1/machine/heartbeat', {
        json: { name: options.name, slots: options.slots, inventory: probed.inventory, activity },
        schema: heartbeatAnswerSchema,
      });
      drained = body.draining === true;
      lastHeartbeatAt = new Date(options.clock.now()).toISOString();
      lastError = null;
    } catch (error) {
      lastError = (error as Error).message;
      throw error;
    }
  };
  try {
    await heartbeat();
  } catch (error) {
    await transport.close();
    if (error instanceof ApiError && (error.status === 401 || error.status === 403))
      throw new CycleError({
        message: `the server at ${options.apiUrl} refused the machine token: ${error.message}`,
        hint: 'give the token of `cycle machine token create` in CYCLE_MACHINE_TOKEN or --token-file (not the user token)',
        exitCode: ExitCode.auth,
      });
    if (error instanceof ApiError && error.status === 409)
      throw new CycleError({
        message: `the server refused the name "${options.name}": ${error.message}`,
        hint: 'run the daemon with another --name',
        exitCode: ExitCode.usage,
      });
    throw error;
  }
  // The platform's rule (platform-facts.md §A, src/daemon/idle.ts): paused or busy takes nothing new; busy with forbid-busy-assign gives back.
  const decision = () => decideBusy(activity, control(), options.clock.now());
  const mayTakeWork = (): boolean => decision().takeWork;
  const queue = new HttpQueueClient({ transport, clock: options.clock, log: options.log });
  const worker = new Worker({
    queue,
    inputs: new HttpTaskInputs({ transport, dataDir: options.dataDir, docker: options.docker, log: options.log }),
    docker: options.docker,
    slots: options.slots,
    env: options.env,
    serverKey: daemonServerKey(options.dataDir),
    offer: async () => ({ workerId: options.name }),
    clock: options.clock,
    log: options.log,
    scratchDir: scratch,
    // The machine's name in its containers' names: several daemons may share one Docker (tests, a big box split in two).
    containerPrefix: `cycle-daemon-${options.name}-`,
    mayTakeWork,
  });
  await worker.removeLeftovers();
  worker.start();
  options.log(`machine ${options.name} is taking work from ${options.apiUrl} (${options.slots} slot${options.slots === 1 ? '' : 's'})`);

  let couldTake = mayTakeWork();
  /** Acts on the owner's rules: gives back what runs on a busy machine that forbids it; takes work again once it may. */
  let told = '';
  const act = async (): Promise<void> => {
    const now = decision();
    // Each change of what the machine may do is logged once: an owner wondering why no task comes sees it.
    if (now.reason !== told) options.log(`machine ${options.name}: ${(told = now.reason)}`);
    if (now.giveBack && worker.runningCount > 0)
      worker.giveBack(`machine ${options.name} became busy (${activity.busy_reasons.join('; ') || 'not idle'}) and forbids busy assignment`);
    if (!now.takeWork) {
      // A task prepared ahead has not started: it goes back at once (not counted), for an idle machine to take.
      worker.releaseAhead(`machine ${options.name} takes no new task now: ${now.reason}`);
      await queue.holdOff(`machine ${options.name} takes no new task now: ${now.reason}`);
    } else if (drained) worker.releaseAhead(`machine ${options.name} is draining`);
    if (now.takeWork && !couldTake) worker.kick();
    couldTake = now.takeWork;
  };
  let wake = new AbortController();
  const done = (async () => {
    const every = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    while (!options.signal.aborted) {
      await options.clock.sleep(every, AbortSignal.any([options.signal, wake.signal])).catch(() => undefined);
      if (wake.signal.aborted) wake = new AbortController();
      if (options.signal.aborted) break;
      try {
        await heartbeat();
      } catch (error) {
        options.log(`heartbeat failed: ${(error as Error).message}`);
        continue;
      }
      await act();
    }
    const running = worker.runningCount;
    options.log(running ? `stopping: ${running} running task(s) are stopped and given back to the queue` : 'stopping');
    await worker.stop();
    await queue.close();
    await transport.close();
  })();
  return {
    done,
    running: () => worker.runningCount,
    poke: () => wake.abort(),
    gpusInUse: () => worker.gpusInUse(),
    status: () => {
      const now = decision();
      const offline = lastError !== null;
      return {
        name: options.name,
        api_url: options.apiUrl,
        state: offline ? 'offline' : drained ? 'draining' : !activity.idle || worker.runningCount > 0 ? 'busy' : now.takeWork ? 'idle' : 'busy',
        version: options.version,
        slots: options.slots,
        running: worker.runningTasks(),
        last_heartbeat_at: lastHeartbeatAt,
        server_ok: !offline,
        last_error: lastError,
        inventory,
        activity,
      };
    },
  };
}
