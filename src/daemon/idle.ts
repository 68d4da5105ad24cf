import type { MachineActivity } from '../api/machines.js';
import type { ControlState } from './control.js';

/** The platform's idle rule (platform-facts.md §A); each bound is inclusive ("≤ 5 %" is idle at 5). */
export const IDLE_THRESHOLDS = {
  cpuPercent: 5,
  memoryBytes: 16 * 1024 ** 3,
  gpuUtilPercent: 5,
  vramBytes: 2 * 1024 ** 3,
  inputIdleMs: 5 * 60_000,
} as const;
export type IdleThresholds = { [K in keyof typeof IDLE_THRESHOLDS]: number };

/** What the probe measured of the load that is not the daemon's jobs. */
export interface MachineLoad {
  /** Non-job CPU, in percent of the whole machine (all CPUs); undefined when it could not be read. */
  cpuPercent?: number;
  /** Non-job memory in use (MemTotal − MemAvailable − the jobs' memory). */
  memoryBytes?: number;
  /** Per GPU without a job process on it: its SM utilisation; and per GPU, VRAM used by non-job processes. */
  gpus: Array<{ index: number; utilPercent?: number; nonJobVramBytes?: number }>;
  /** Time since the last keyboard/mouse input of the desktop session; undefined when there is no desktop. */
  inputIdleMs?: number;
}

const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GB`;
const pct = (value: number): string => `${Math.round(value * 10) / 10} %`;

/** Whether the load meets the idle rule, and each rule it fails with its numbers. */
export function judgeIdle(load: MachineLoad, thresholds: IdleThresholds = IDLE_THRESHOLDS): { idle: boolean; busy_reasons: string[] } {
  const reasons: string[] = [];
  if (load.cpuPercent !== undefined && load.cpuPercent > thresholds.cpuPercent)
    reasons.push(`non-job CPU ${pct(load.cpuPercent)} > ${thresholds.cpuPercent} %`);
  if (load.memoryBytes !== undefined && load.memoryBytes > thresholds.memoryBytes)
    reasons.push(`non-job RAM ${gib(load.memoryBytes)} > ${gib(thresholds.memoryBytes)}`);
  for (const gpu of load.gpus) {
    if (gpu.utilPercent !== undefined && gpu.utilPercent > thresholds.gpuUtilPercent)
      reasons.push(`GPU ${gpu.index} SM ${pct(gpu.utilPercent)} > ${thresholds.gpuUtilPercent} % (no job of this daemon runs on it)`);
    if (gpu.nonJobVramBytes !== undefined && gpu.nonJobVramBytes > thresholds.vramBytes)
      reasons.push(`GPU ${gpu.index} non-job VRAM ${gib(gpu.nonJobVramBytes)} > ${gib(thresholds.vramBytes)}`);
  }
  if (load.inputIdleMs !== undefined && load.inputIdleMs < thresholds.inputIdleMs)
    reasons.push(`keyboard/mouse input ${Math.floor(load.inputIdleMs / 1000)} s ago < ${thresholds.inputIdleMs / 60_000} min`);
  return { idle: reasons.length === 0, busy_reasons: reasons };
}

export interface BusyDecision {
  /** Whether the daemon may lease a new task now. */
  takeWork: boolean;
  /** Whether it must give back (release to the queue) the tasks it runs now. */
  giveBack: boolean;
  /** In words, for the daemon's log and `cycle daemon status`. */
  reason: string;
}

/**
 * What a daemon does with its activity and its owner's control state (docs/daemon.md):
 * - paused: takes no new task; what runs finishes (unless the busy rule below gives it back);
 * - idle: takes work;
 * - busy with forbid-busy-assign on (the default): takes no task and gives back what it runs,
 *   which goes back to the queue (platform-facts.md §A: a job on a machine that becomes busy);
 * - busy with forbid-busy-assign off (`cycle daemon allow-busy-assign`: the owner allows
 *   assignment while busy): keeps what it runs and may take work.
 */
export function decideBusy(activity: Pick<MachineActivity, 'idle' | 'busy_reasons'>, control: ControlState, now: number): BusyDecision {
  const paused = control.paused_until !== null && Date.parse(control.paused_until) > now;
  const busy = !activity.idle;
  const why = activity.busy_reasons.join('; ') || 'not idle';
  const giveBack = busy && control.forbid_busy_assign;
  const takeWork = !paused && (!busy || !control.forbid_busy_assign);
  let reason: string;
  if (giveBack) reason = `busy (${why}) and forbid-busy-assign is on: gives back what it runs${paused ? `; paused until ${control.paused_until}` : ''}`;
  else if (paused)
    reason = `paused until ${control.paused_until}: takes no new task, what runs finishes${busy ? `; busy (${why}), busy assignment allowed` : ''}`;
  else if (busy) reason = `busy (${why}) but busy assignment is allowed (forbid-busy-assign is off): takes work`;
  else reason = 'idle: takes work';
  return { takeWork, giveBack, reason };
}
