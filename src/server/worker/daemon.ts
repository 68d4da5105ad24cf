import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { MachineActivity } from '../../api/machines.js';
import { heartbeatAnswerSchema } from '../../api/machine-protocol.js';
import { ApiError, Transport } from '../../api/transport.js';
import type { Clock } from '../../context.js';
import type { DockerDriver } from '../../docker/driver.js';
import { CycleError, ExitCode } from '../../errors.js';
import type { Env } from '../../ui/streams.js';
import type { MachineProbe } from './basic-probe.js';
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
  /** What the machine has and whether it may take work (the daemon's probe; tests inject one). */
  probe: MachineProbe;
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
  await fs.chmod(options.dataDir, 0o700);
  const unlock = await lockDaemonFolder(options.dataDir);
  try {
    return await startLocked(options, unlock);
  } catch (error) {
    await unlock();
    throw error;
  }
}

async function startLocked(options: DaemonOptions, unlock: () => Promise<void>): Promise<RunningDaemon> {
  const scratch = path.join(options.dataDir, 'tmp');
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(scratch, { mode: 0o700 });
  // Not bound to the daemon's signal: the releases after a Ctrl-C must still reach the server.
  const transport = new Transport({ baseUrl: options.apiUrl, token: options.token, version: options.version, timeoutMs: options.timeoutMs ?? 30_000 });
  let activity: MachineActivity = { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false };
  const heartbeat = async (): Promise<void> => {
    const probed = await options.probe();
    activity = probed.activity;
    await transport.request('POST', '/api/v1/machine/heartbeat', {
      json: { name: options.name, slots: options.slots, inventory: probed.inventory, activity: probed.activity },
      schema: heartbeatAnswerSchema,
    });
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
  const mayTakeWork = (): boolean => {
    const paused = activity.paused_until !== null && Date.parse(activity.paused_until) > Date.now();
    return !paused && (activity.idle || !activity.forbid_busy_assign);
  };
  const queue = new HttpQueueClient({ transport, clock: options.clock, log: options.log });
  const worker = new Worker({
    queue,
    inputs: new HttpTaskInputs({ transport, dataDir: options.dataDir, docker: options.docker, log: options.log }),
    docker: options.docker,
    slots: options.slots,
    env: options.env,
    serverKey: `daemon-${createHash('sha256').update(path.resolve(options.dataDir)).digest('hex').slice(0, 16)}`,
    offer: async () => ({ workerId: options.name }),
    clock: options.clock,
    log: options.log,
    scratchDir: scratch,
    containerPrefix: 'cycle-daemon-',
    mayTakeWork,
  });
  await worker.removeLeftovers();
  worker.start();
  options.log(`machine ${options.name} is taking work from ${options.apiUrl} (${options.slots} slot${options.slots === 1 ? '' : 's'})`);

  const done = (async () => {
    const every = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    let couldTake = mayTakeWork();
    while (!options.signal.aborted) {
      await options.clock.sleep(every, options.signal).catch(() => undefined);
      if (options.signal.aborted) break;
      try {
        await heartbeat();
      } catch (error) {
        options.log(`heartbeat failed: ${(error as Error).message}`);
        continue;
      }
      // The seam for the daemon's own rules (pause, busy, forbid-busy-assign): what the probe says, acted on here.
      if (!activity.idle && activity.forbid_busy_assign && worker.runningCount > 0)
        worker.giveBack(`machine ${options.name} became busy (${activity.busy_reasons.join('; ') || 'not idle'}) and forbids busy assignment`);
      const canTake = mayTakeWork();
      if (!canTake) await queue.holdOff(`machine ${options.name} is paused or busy: it takes no new task now`);
      if (canTake && !couldTake) worker.kick();
      couldTake = canTake;
    }
    const running = worker.runningCount;
    options.log(running ? `stopping: ${running} running task(s) are stopped and given back to the queue` : 'stopping');
    await worker.stop();
    await queue.close();
    await transport.close();
    await unlock();
  })();
  return { done, running: () => worker.runningCount };
}

/** Data folders a daemon of this process holds (a lock with this pid is stale unless listed). */
const lockedHere = new Set<string>();

/**
 * One daemon per data folder (`daemon.lock`, holding its pid): a second one would sweep the
 * first one's scratch folder and run its tasks' containers twice. A lock whose process is gone
 * (a `kill -9`) is taken over.
 */
async function lockDaemonFolder(dataDir: string): Promise<() => Promise<void>> {
  const file = path.join(dataDir, 'daemon.lock');
  const folder = path.resolve(dataDir);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      lockedHere.add(folder);
      return async () => {
        lockedHere.delete(folder);
        await fs.rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && (pid === process.pid ? lockedHere.has(folder) : alive(pid)))
      throw new CycleError({
        message: `another cycle daemon (pid ${pid}) runs on the data folder ${dataDir}`,
        hint: `stop it first (kill ${pid}), or give this one another --data-dir`,
        exitCode: ExitCode.usage,
      });
    await fs.rm(file, { force: true }); // stale: its daemon is gone
  }
  throw new CycleError({ message: `could not take the lock ${file}: another daemon keeps taking it`, hint: 'run one daemon per --data-dir' });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
