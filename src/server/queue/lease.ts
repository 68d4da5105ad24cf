import type { CapturedArtifact } from '../../runner/artifacts.js';
import type { JobRequest } from '../../api/schemas.js';
import type { MachineInventory } from '../../api/machines.js';

/**
 * What a worker says it has when it asks for work. The queue offers it only tasks it can run.
 * Plain data: a worker on another machine sends the same over HTTP.
 */
export interface WorkerOffer {
  /** Names the worker in leases and logs. */
  workerId: string;
  /** This worker's GPU, as its probe found it (undefined: not probed, the worker runs no GPU task). */
  gpu?: { ok: boolean; reason?: string; cuda?: string };
  /**
   * An enrolled machine's name and what it has (`cycle daemon run`): the queue places tasks by
   * its inventory (CUDA, GPUs, requirements as minimums, gVisor). Absent: the server's own
   * in-process worker, placed by `gpu`.
   */
  machine?: { name: string; inventory: MachineInventory };
}

/** The server's in-process worker's `workerId`: a ":" no machine name has. */
export const LOCAL_WORKER_ID = 'server:local';

/**
 * Leases a machine may hold beyond its slots: the task its worker prepares while every slot is
 * busy (Worker's lease ahead), so a freed slot only lets it go.
 */
export const LEASES_AHEAD = 1;

/** How long a cancel or a shutdown waits for a worker's running tasks to stop. */
export const STOP_WAIT_MS = 15_000;

/** A task handed to one worker until `expiresAt`: everything the worker needs to run it. */
export interface Lease {
  id: string;
  taskId: string;
  jobId: string;
  /** Which attempt of the task this is (1 on the first run). */
  attempt: number;
  /** When the lease ends unless renewed (ms, on the clock that never jumps: `Clock.elapsed`). */
  expiresAt: number;
  /** How often the worker renews it: well within its life. */
  renewEveryMs: number;
  project: string;
  revision: number;
  kind: 'task' | 'map' | 'reduce';
  index: number;
  /** The composed payload: `_shared.resolve` values resolved, `map_results` of a reduce, `_artifacts.paths` filled in. */
  payload: Record<string, unknown>;
  /** `_artifacts.download` files the worker puts under /computalot/artifacts/NAME/FILE (read-only). */
  downloads: Array<{ name: string; artifactId: string; fileName: string }>;
  runnerCommand?: string[];
  timeoutS?: number;
  requirements?: JobRequest['requirements'];
  /** The task gets the GPUs (`profile: "gpu"`, a gpu requirement, a `[job].cuda`). */
  gpus: boolean;
  /**
   * The machine's GPUs the task gets (whole GPUs of its own: `--gpus "device=0,1"`), set for a
   * task leased to an enrolled machine. Absent: all of the worker's GPUs when `gpus` (the server's own worker).
   */
  gpuIndices?: number[];
}

/** Progress points one report carries at most (a task printing faster than that loses the oldest of a quarter second's points). */
export const MAX_REPORT_PROGRESS_POINTS = 1000;

/** What a worker reports on a running task: batched, a few times a second. */
export interface LeaseReport {
  /** New output (stdout and stderr, in order) since the last report. */
  output?: string;
  /** The latest progress event since the last report. */
  progress?: unknown;
  /** Every progress event since the last report, oldest first, `progress` last (at most MAX_REPORT_PROGRESS_POINTS: the newest kept); absent when there was one. */
  progressPoints?: unknown[];
  /** A file under /artifacts was captured (again); its `uploadKey` orders it among the task's others. */
  artifact?: { captured: CapturedArtifact };
}

/**
 * When a task reached each of its stages on its worker (ms since the epoch, the worker's clock):
 * the image was ready, the container created, started and exited, its artifacts captured. A stage
 * not reached (a task that failed before its container ran) is absent. Plain JSON, snake_case as
 * `GET /api/v1/jobs/:id/timings` serves it.
 */
export interface WorkerStages {
  image_ready?: number;
  created?: number;
  started?: number;
  exited?: number;
  captured?: number;
}

/** The stages a worker reports, in order. */
export const WORKER_STAGES = ['image_ready', 'created', 'started', 'exited', 'captured'] as const;

/** How a task ended, as its worker saw it. */
export interface LeaseOutcome {
  status: 'succeeded' | 'failed' | 'cancelled';
  result?: unknown;
  error?: string;
  exitCode?: number;
  /** Where the task's time went on its worker (optional: a worker that does not say is still heard). */
  stages?: WorkerStages;
}

/**
 * A report, renewal or outcome on a lease that is no longer current (it expired, it was released
 * or revoked, the task has an outcome): refused, so a task never gets two outcomes. A worker that
 * hears it stops that task.
 */
export class StaleLease extends Error {
  constructor(
    readonly leaseId: string,
    why: string,
  ) {
    super(`lease ${leaseId} is no longer current: ${why}`);
    this.name = 'StaleLease';
  }
}
