import fs from 'node:fs/promises';
import path from 'node:path';
import type { DockerDriver, Mount } from '../../docker/driver.js';
import { prepareProjectTask } from '../../runner/task-service.js';
import type { CapturedArtifact } from '../../runner/artifacts.js';
import { volumeMountPath } from '../../runner/volumes.js';
import { gvisorRegistered, jobContainer } from '../../runner/limits.js';
import type { Env } from '../../ui/streams.js';
import { type Clock, systemClock } from '../../context.js';
import { settledWithin } from '../../util/wait.js';
import { LABELS } from '../../runner/images.js';
import { joinInside } from '../../util/paths.js';
import {
  MAX_REPORT_PROGRESS_POINTS,
  STOP_WAIT_MS,
  StaleLease,
  type Lease,
  type LeaseOutcome,
  type LeaseReport,
  type WorkerOffer,
  type WorkerStages,
} from '../queue/lease.js';
import type { RevokeReason } from '../queue/work-queue.js';
import type { WorkQueueClient } from './queue-client.js';
import type { TaskInputs } from './task-inputs.js';

const FLUSH_MS = 250;

export interface WorkerOptions {
  queue: WorkQueueClient;
  inputs: TaskInputs;
  docker: () => Promise<DockerDriver>;
  /** Tasks this worker runs at a time (`cycle server --workers`). */
  slots: number;
  /** Read for job containers' settings (CYCLE_MEMORY_LIMIT, CYCLE_DOCKER_NETWORK). */
  env: Env;
  /** Labels this server's containers, so the next start can remove leftovers. */
  serverKey: string;
  /** What this machine has (asked once, when the worker first asks for work). */
  offer: () => Promise<WorkerOffer>;
  /** Runs task timeouts and lease renewals (tests advance a manual one). */
  clock: Clock;
  log: (line: string) => void;
  /** Where a task's payload folders go (the server's `tmp/`, swept at start). */
  scratchDir?: string;
  /** The cap on what one task's captured artifacts take (apparent or allocated bytes, the larger). */
  maxTaskArtifactBytes?: number;
  /**
   * Whether this machine takes a new task now (`cycle daemon pause`, a busy machine): asked
   * before each request for work; undefined: always. What runs is not touched (see `giveBack`).
   */
  mayTakeWork?: () => boolean;
  /** Container names start with this (`cycle-server-` unless set: a daemon's are `cycle-daemon-`). */
  containerPrefix?: string;
  /**
   * Tasks prepared ahead while every slot is busy (their inputs, image, restored artifacts and
   * container made, the container started with its command waiting on its source), so that a
   * freed slot only lets one go. 1 unless set; 0: none. See `tick` for when one is leased.
   */
  aheadLimit?: number;
}

/** What one task's captured artifacts may take on the server's disk, by default (ServerOptions.maxTaskArtifactBytes). */
export const DEFAULT_MAX_TASK_ARTIFACT_BYTES = 20 * 1024 ** 3;

/**
 * Where a held lease stands: `ahead`, prepared (or being prepared) and waiting for a slot;
 * `slot`, holding a slot (being prepared for it, or its container running); `finishing`, its
 * container exited (the slot is free again) while its artifacts, result and outcome are stored.
 */
type Phase = 'ahead' | 'slot' | 'finishing';

interface Running {
  lease: Lease;
  phase: Phase;
  /** Lets an `ahead` task go once it has a slot (set while it waits for one). */
  promote?: () => void;
  /** Why a task prepared ahead is given back before it started (a pause, a drain): released, not counted as an attempt. */
  unstartedRelease?: string;
  controller: AbortController;
  done: Promise<void>;
  /** The queue took the lease back (expired, stale): the task stops and nothing more is reported. */
  lost: boolean;
  /** Its job was cancelled: it ends cancelled (prepared ahead or running alike). */
  cancelled?: boolean;
  /** Why this worker gives the task back unfinished (a machine turned busy): it stops and is released. */
  givenBack?: string;
  /** When this worker took it (ISO). */
  startedAt: string;
  /** When the task reached each stage here, reported with its outcome. */
  stages: WorkerStages;
}

/** A task stopped because the worker stops: given back to the queue, not finished. */
const INTERRUPTED = Symbol('interrupted');
/** A task prepared ahead that never started: given back to the queue, not counted as an attempt. */
const UNSTARTED = Symbol('unstarted');

/**
 * Runs what the work queue leases it, on up to `slots` containers at a time, through the runner's
 * task service (build rules, limits, volumes, live /artifacts, services, gVisor), and reports
 * back. All it says to the queue goes through WorkQueueClient, so the same code can run on
 * another machine; `cycle server` runs one in-process for its own machine.
 */
export class Worker {
  private readonly running = new Map<string, Running>();
  /** The last run of each task: a task leased again waits until its previous container is gone. */
  private readonly byTask = new Map<string, Promise<void>>();
  private ticking = false;
  private again = false;
  private stopped = false;
  private offer: Promise<WorkerOffer> | undefined;
  /** Whether Docker has gVisor: asked once (a docker info), when a sandboxed task first runs. */
  private gvisor: Promise<boolean> | undefined;
  private readonly unsubscribe: Array<() => void> = [];
  /** Each revision's image, asked of the inputs once (a revision never changes); asked again when Docker says it is gone. */
  private readonly images = new Map<string, Promise<string>>();
  /** The queue answered the last request for free slots in full: it may have more ready (see `tick`). */
  private backlog = false;

  constructor(private readonly options: WorkerOptions) {}

  /** Removes containers a previous run of this server left behind (a crash). */
  async removeLeftovers(): Promise<void> {
    try {
      const docker = await this.options.docker();
      for (const container of await docker.listContainers({ all: true, label: [`cycle.server=${this.options.serverKey}`] }))
        await docker.removeContainer(container.id);
    } catch (error) {
      this.options.log(`could not clean up old containers: ${(error as Error).message}`);
    }
  }

  /** Starts asking for work: now, and whenever the queue says there may be some. */
  start(): void {
    this.unsubscribe.push(
      this.options.queue.onWork(() => this.kick()),
      this.options.queue.onRevoked((leaseId, why) => this.revoked(leaseId, why)),
    );
    this.kick();
  }

  /** What runs now (`cycle daemon status`, the machine's probe); a task prepared ahead does not run yet. */
  runningTasks(): Array<{ job_id: string; task_id: string; started_at: string | null }> {
    return [...this.running.values()]
      .filter((r) => r.phase !== 'ahead')
      .map((r) => ({ job_id: r.lease.jobId, task_id: r.lease.taskId, started_at: r.startedAt }));
  }

  private count(phase: Phase): number {
    let n = 0;
    for (const entry of this.running.values()) if (entry.phase === phase) n++;
    return n;
  }

  /** The GPUs this worker's tasks hold (their load is the jobs', not the machine's); undefined: a task holds them all. */
  gpusInUse(): number[] | undefined {
    const indices: number[] = [];
    for (const { lease } of this.running.values()) {
      if (!lease.gpus) continue;
      if (!lease.gpuIndices?.length) return undefined;
      indices.push(...lease.gpuIndices);
    }
    return indices;
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** Asks for work when a slot is free. */
  kick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    void this.tick()
      .catch((error: Error) => this.options.log(`worker: ${error.stack ?? error.message}`))
      .finally(() => {
        this.ticking = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /**
   * Fills free slots, first with the task prepared ahead, then from the queue; then, when every
   * slot is busy, leases one task ahead (at most `aheadLimit`) to prepare. The rule that keeps a
   * lease ahead from starving another machine: it is asked only (1) when every slot is taken,
   * (2) after the last request for free slots was answered in full (the queue had that many
   * ready), (3) while the machine may take work, and (4) without waiting (`leaseAhead`: the
   * queue answers at once with a task ready now, or none). An idle machine's long poll waits on
   * the queue and is served as soon as work comes; a lease ahead is asked only after this
   * worker's own answer came back, so it takes what the waiting machines left.
   */
  private async tick(): Promise<void> {
    if (this.options.mayTakeWork && !this.options.mayTakeWork()) {
      this.releaseAhead('the machine takes no new task now');
      return;
    }
    let free = this.options.slots - this.count('slot');
    for (const entry of this.running.values()) {
      if (free <= 0) break;
      // One given back meanwhile (a pause, a busy machine, a cancel) is not let go.
      if (entry.phase !== 'ahead' || entry.controller.signal.aborted) continue;
      entry.phase = 'slot';
      entry.promote?.();
      free--;
    }
    const { queue } = this.options;
    if (free > 0) {
      const offer = await this.offerOnce();
      if (this.stopped) return;
      const leases = await queue.lease(offer, free);
      for (const lease of leases) this.begin(lease, 'slot');
      this.backlog = leases.length === free;
      free -= leases.length;
    }
    const aheadLimit = this.options.aheadLimit ?? 1;
    if (free > 0 || !this.backlog || !queue.leaseAhead || this.count('ahead') >= aheadLimit || this.stopped) return;
    const lease = await queue.leaseAhead(await this.offerOnce()).catch((error: Error) => {
      // The queue out of reach: nothing ahead now (the long poll says so in its own words, and asks again).
      this.options.log(`worker: asking for a task to prepare ahead failed: ${error.message}`);
      this.backlog = false;
      return null;
    });
    if (lease === null) return;
    if (!lease) {
      // A machine's leases are capped at its slots and one ahead (LEASES_AHEAD), and a finishing
      // task holds its lease until its outcome is stored: asked again when one ends, else not.
      this.backlog = this.count('finishing') > 0;
      return;
    }
    // Paused or stopped while it was asked for: given back at once, unstarted.
    if (this.stopped || (this.options.mayTakeWork && !this.options.mayTakeWork()))
      await queue.release(lease.id, 'the machine took no new task by the time the lease came', { unstarted: true }).catch(() => undefined);
    else this.begin(lease, this.count('slot') < this.options.slots ? 'slot' : 'ahead');
  }

  /** What this machine has, asked once; a probe that failed is asked again at the next kick, not kept (the worker would never ask for work). */
  private offerOnce(): Promise<WorkerOffer> {
    return (this.offer ??= this.options.offer().catch((error: unknown) => {
      this.offer = undefined;
      throw error;
    }));
  }

  /**
   * Gives back the tasks prepared ahead that have not started (a pause, a drain, a busy
   * machine): their containers are removed and their leases released, not counted as attempts.
   */
  releaseAhead(reason: string): void {
    for (const entry of this.running.values()) {
      if (entry.phase !== 'ahead' || entry.unstartedRelease !== undefined) continue;
      entry.unstartedRelease = reason;
      entry.controller.abort();
    }
  }

  /** The task's container exited: its slot is free for the next task while this one's artifacts and outcome are stored. */
  private freeSlot(entry: Running): void {
    if (entry.phase !== 'slot') return;
    entry.phase = 'finishing';
    this.kick();
  }

  private begin(lease: Lease, phase: Phase = 'slot'): void {
    const entry: Running = {
      lease,
      phase,
      controller: new AbortController(),
      lost: false,
      done: Promise.resolve(),
      startedAt: new Date(this.options.clock.now()).toISOString(),
      stages: {},
    };
    const previous = this.byTask.get(lease.taskId);
    const done = (async () => {
      await previous;
      await this.run(entry);
    })()
      .catch((error: Error) => this.options.log(`worker: task ${lease.taskId}: ${error.stack ?? error.message}`))
      .finally(() => {
        this.running.delete(lease.id);
        if (this.byTask.get(lease.taskId) === done) this.byTask.delete(lease.taskId);
        this.kick();
      });
    entry.done = done;
    this.running.set(lease.id, entry);
    this.byTask.set(lease.taskId, done);
  }

  /** One lease: run the task while renewing the lease, then report its outcome (or give it back). */
  private async run(entry: Running): Promise<void> {
    const { lease, controller } = entry;
    const { queue } = this.options;
    const renewing = this.renewWhileRunning(entry);
    let outcome: LeaseOutcome | typeof INTERRUPTED | typeof UNSTARTED;
    try {
      outcome = this.stopped && entry.phase === 'ahead' ? UNSTARTED : this.stopped ? INTERRUPTED : await this.execute(entry, controller.signal);
    } catch (error) {
      // Aborted by a stop, a give-back or a pause: given back as notRun says; anything else failed it.
      const notRun = controller.signal.aborted ? this.notRun(entry) : undefined;
      outcome = notRun === UNSTARTED || notRun === INTERRUPTED ? notRun : { status: 'failed', error: (error as Error).message };
    } finally {
      renewing.abort();
    }
    if (entry.lost) return; // the queue took the task back: a report now would be refused
    if (entry.givenBack !== undefined && controller.signal.aborted && outcome !== UNSTARTED) outcome = INTERRUPTED;
    const final = outcome;
    const unstartedReason = (): string =>
      `${entry.unstartedRelease ?? entry.givenBack ?? 'the worker stopped'}; it was prepared ahead and had not started on this machine`;
    const send = (): Promise<void> =>
      final === UNSTARTED
        ? queue.release(lease.id, unstartedReason(), { unstarted: true })
        : final === INTERRUPTED
          ? queue.release(lease.id, entry.givenBack ?? 'the worker stopped while the task ran')
          : queue.complete(lease.id, Object.keys(entry.stages).length ? { ...final, stages: entry.stages } : final);
    // The outcome is the task's work: a queue out of reach (a network blip) is asked again, backing
    // off, for as long as the lease can still be current; after that the queue has given the task
    // to another worker and a report would be refused anyway.
    const giveUpAt = this.elapsed() + lease.renewEveryMs * 3;
    for (let wait = 250; ; wait = Math.min(wait * 2, 5_000)) {
      try {
        await send();
        return;
      } catch (error) {
        if (error instanceof StaleLease) {
          this.options.log(`worker: task ${lease.taskId}: ${error.message}`);
          return;
        }
        if (!queue.isTransient?.(error)) throw error;
        if (this.elapsed() + wait >= giveUpAt) {
          this.options.log(`worker: task ${lease.taskId}: its outcome could not be sent (${(error as Error).message}); it runs again once its lease ends`);
          return;
        }
        await this.options.clock.sleep(wait);
      }
    }
  }

  /** The clock that never jumps (a lease's life is measured on it). */
  private elapsed(): number {
    const { clock } = this.options;
    return clock.elapsed ? clock.elapsed() : clock.now();
  }

  /**
   * Renews the lease well within its life until the returned controller is aborted. A refused
   * renewal stops the task; a failed one (the server unreachable) is tried again, and once the
   * lease's life has passed without one the task stops here too: the queue has given it to
   * another worker by then, so this one must not go on writing.
   */
  private renewWhileRunning(entry: Running): AbortController {
    const stop = new AbortController();
    const { clock, queue } = this.options;
    const elapsed = (): number => (clock.elapsed ? clock.elapsed() : clock.now());
    let expiresAt = entry.lease.expiresAt;
    let failing = false;
    void (async () => {
      while (!stop.signal.aborted) {
        // After a failure, tried again sooner, and woken at the expiry whatever the renewal does.
        const wait = Math.min(failing ? Math.max(1, Math.floor(entry.lease.renewEveryMs / 3)) : entry.lease.renewEveryMs, Math.max(0, expiresAt - elapsed()));
        await clock.sleep(wait, stop.signal);
        if (elapsed() >= expiresAt) {
          this.options.log(
            `worker: task ${entry.lease.taskId}: its lease ${entry.lease.id} expired without a renewal (the queue cannot be reached): stopping it`,
          );
          return this.lose(entry);
        }
        const expiry = new AbortController();
        const renewal = queue.renew(entry.lease.id);
        const expired = clock.sleep(Math.max(0, expiresAt - elapsed()), AbortSignal.any([stop.signal, expiry.signal])).then(
          () => 'expired' as const,
          () => 'ended' as const, // the renewal answered first, or the task ended
        );
        try {
          const answer = await Promise.race([renewal, expired]);
          if (answer === 'expired' || answer === 'ended') continue; // the loop stops the task, or ends
          expiresAt = answer.expiresAt;
          failing = false;
          if (answer.cancel) {
            entry.cancelled = true;
            entry.controller.abort();
          }
        } catch (error) {
          if (error instanceof StaleLease) return this.lose(entry);
          if (stop.signal.aborted) return;
          failing = true;
          this.options.log(`worker: renewing the lease of task ${entry.lease.taskId}: ${(error as Error).message}`);
        } finally {
          expiry.abort();
          renewal.catch(() => undefined);
        }
      }
    })().catch((error: Error) => {
      if (!stop.signal.aborted) this.options.log(`worker: renewing the lease of task ${entry.lease.taskId}: ${error.message}`);
    });
    return stop;
  }

  /**
   * Stops every running task and gives it back to the queue with `reason` (a machine that became
   * busy, with `forbid-busy-assign`): they run again elsewhere, their captured artifacts restored.
   */
  giveBack(reason: string): void {
    for (const entry of this.running.values()) {
      entry.givenBack = reason;
      entry.controller.abort();
    }
  }

  private lose(entry: Running): void {
    entry.lost = true;
    entry.controller.abort();
  }

  private revoked(leaseId: string, why: RevokeReason): void {
    const entry = this.running.get(leaseId);
    if (!entry) return;
    if (why !== 'cancelled')
      this.lose(entry); // expired, or its machine removed: a report now would be refused
    else {
      entry.cancelled = true;
      entry.controller.abort();
    }
  }

  /** The revision's image: asked of the inputs once per revision (an inspect or a build check per task is not needed). */
  private image(project: string, revision: number): Promise<string> {
    const key = `${project}\u0000${revision}`;
    let image = this.images.get(key);
    if (!image) {
      image = this.options.inputs.image(project, revision);
      const asked = image;
      // A failed build or fetch is asked again by the next task, not remembered here.
      asked.catch(() => {
        if (this.images.get(key) === asked) this.images.delete(key);
      });
      this.images.set(key, image);
    }
    return image;
  }

  /** Docker said the image is gone (removed, a project invalidated): asked of the inputs again, which build it. */
  private imageAgain(project: string, revision: number): Promise<string> {
    this.images.delete(`${project}\u0000${revision}`);
    return this.image(project, revision);
  }

  /** Resolves true once a task prepared ahead has a slot, false when it is given back (aborted) first. */
  private waitForSlot(entry: Running, signal: AbortSignal): Promise<boolean> {
    if (entry.phase !== 'ahead') return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        entry.promote = undefined;
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.promote = () => {
        signal.removeEventListener('abort', onAbort);
        entry.promote = undefined;
        resolve(true);
      };
    });
  }

  /** What a task that did not run to its end becomes: given back unstarted (prepared ahead), given back (stop, busy), or cancelled. */
  private notRun(entry: Running): LeaseOutcome | typeof INTERRUPTED | typeof UNSTARTED {
    if (entry.phase === 'ahead' && !entry.cancelled) return UNSTARTED;
    if (this.stopped || entry.givenBack !== undefined) return INTERRUPTED;
    return { status: 'cancelled', error: 'cancelled' };
  }

  private async execute(entry: Running, signal: AbortSignal): Promise<LeaseOutcome | typeof INTERRUPTED | typeof UNSTARTED> {
    const { inputs } = this.options;
    const { lease } = entry;
    const project = await inputs.project(lease.project, lease.revision);
    const imageId = await this.image(lease.project, lease.revision);
    const at = (): number => this.options.clock.now();
    entry.stages.image_ready = at();
    if (signal.aborted) return this.notRun(entry);

    const work = inputs.workDir(lease.taskId);
    const artifactsDir = await inputs.artifactStore(lease.jobId, lease.taskId);
    await fs.rm(work, { recursive: true, force: true });
    try {
      const mounts: Mount[] = [];
      if (lease.downloads.length) {
        const dir = path.join(work, 'artifacts');
        for (const download of lease.downloads) {
          // The name was checked when the job came in; this is the last line if a check is missed.
          const target = joinInside(dir, download.name, download.fileName);
          await fs.mkdir(path.dirname(target), { recursive: true });
          await inputs.fetchArtifact(download.artifactId, target);
        }
        mounts.push({ type: 'bind', source: dir, target: '/computalot/artifacts', readonly: true });
      }
      if (project.format === 'cycleswap') {
        for (const volume of project.manifest.main.volumes) {
          const source = await inputs.volumeSource(volume);
          if (!source)
            return {
              status: 'failed',
              error: `volume "${volume}" (in [main].volumes) is not on this server: upload it with \`cycle volume upload DIR --name ${volume}\``,
            };
          mounts.push({ type: 'bind', source, target: volumeMountPath(volume), readonly: true });
        }
      }
      const sourceFiles = project.format === 'cycleswap' ? await inputs.sourceFiles(lease.project, lease.revision, project) : [];
      const docker = await this.options.docker();
      const sandbox = project.format === 'computalot' ? project.manifest.runtime.sandbox : undefined;
      const container = jobContainer({
        sandbox,
        requirements: lease.requirements,
        skipLimits: false,
        gvisorRegistered: sandbox === 'gvisor' && (await (this.gvisor ??= gvisorRegistered(docker))),
        env: this.options.env,
      });
      if (signal.aborted) return this.notRun(entry);

      const feed = new ReportFeed(this.options.queue, lease.id, () => this.lose(entry), this.options.log);
      try {
        const prepared = await prepareProjectTask(
          {
            docker,
            project,
            imageId,
            name: `${this.options.containerPrefix ?? 'cycle-server-'}${lease.taskId}`,
            labels: { 'cycle.server': this.options.serverKey, [LABELS.projectKey]: `server:${lease.project}`, 'cycle.task': lease.taskId },
            payload: lease.payload,
            mounts,
            // Whole GPUs of its own where the queue named them (a machine with several slots), else all.
            gpus: lease.gpus && lease.gpuIndices?.length ? lease.gpuIndices : lease.gpus,
            container,
            sourceFiles,
            ...(lease.runnerCommand ? { runnerCommand: lease.runnerCommand } : {}),
            ...(lease.timeoutS ? { timeoutMs: lease.timeoutS * 1000 } : {}),
            clock: this.options.clock,
            // Under the server's data folder (tmp/, swept at start), never the system's temp folder: a kill -9 leaves nothing behind.
            scratchDir: this.options.scratchDir,
            rebuildImage: () => this.imageAgain(lease.project, lease.revision),
            artifacts: {
              liveDir: path.join(work, 'live-artifacts'),
              storeDir: artifactsDir,
              // A task that runs again (after a crash, a retry) starts with what it had captured.
              resumeFrom: artifactsDir,
              onCaptured: (artifact) => feed.artifact(artifact),
              onRefused: (relative, why) => feed.output(`[cycle] /artifacts/${relative} not captured: ${why}\n`),
              maxBytes: this.options.maxTaskArtifactBytes ?? DEFAULT_MAX_TASK_ARTIFACT_BYTES,
            },
            callbacks: {
              stdout: (text) => feed.output(text),
              stderr: (chunk) => feed.output(chunk.toString('utf8')),
              progress: (event) => feed.progress(event.data),
              stage: (stage) => {
                entry.stages[stage] = at();
                if (stage === 'exited') this.freeSlot(entry);
              },
            },
            signal,
          },
          // A task prepared ahead is started too, its command waiting on its source tar (a GPU task only created: it would hold its GPUs).
          { startAhead: entry.phase === 'ahead' && !lease.gpus },
        );
        try {
          if (!(await this.waitForSlot(entry, signal))) return this.notRun(entry);
          // Nothing is said on the task before it has a slot: a task given back unstarted has an empty log.
          for (const warning of container.warnings) feed.output(`[cycle] warning: ${warning}\n`);
          const { outcome } = await prepared.run();
          entry.stages.captured = at();
          if (outcome.outOfMemory) feed.output(`[cycle] ${outcome.reason}\n`);
          await feed.close();
          if (outcome.status === 'interrupted') return this.notRun(entry);
          if (outcome.status === 'succeeded') return { status: 'succeeded', result: outcome.result ?? null, exitCode: 0 };
          return { status: 'failed', error: outcome.reason ?? 'failed', exitCode: outcome.exitCode, result: outcome.result ?? null };
        } finally {
          await prepared.discard(); // nothing when it ran
        }
      } finally {
        await feed.close();
      }
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Stops running containers; their tasks go back to the queue. Returns at once when nothing
   * runs: no timer is left behind to keep the process alive. Waits on real time (at most
   * STOP_WAIT_MS), not the task clock: a shutdown ends even where a test's clock stands still.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    const tasks = [...this.running.values()];
    for (const running of tasks) running.controller.abort();
    if (tasks.length === 0) return;
    await settledWithin(Promise.all(tasks.map((r) => r.done)), STOP_WAIT_MS, systemClock);
  }
}

/**
 * A task's output and progress, sent to the queue a few times a second (its tail, events and log
 * are the queue's); captured artifacts at once. Reports go one after another, in order.
 */
class ReportFeed {
  private dirty = false;
  private latestProgress: unknown = undefined;
  /** Every progress value since the last report (the curves on the web page draw them all). */
  private progressPoints: unknown[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pendingText = '';
  private closed = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly queue: WorkQueueClient,
    private readonly leaseId: string,
    /** The queue refused a report: the lease is gone. */
    private readonly onStale: () => void,
    private readonly log: (line: string) => void,
  ) {}

  output(text: string): void {
    if (this.closed) return;
    this.pendingText += text;
    this.schedule();
  }

  progress(data: unknown): void {
    if (this.closed) return;
    this.latestProgress = data;
    this.progressPoints.push(data);
    if (this.progressPoints.length > MAX_REPORT_PROGRESS_POINTS) this.progressPoints.shift();
    this.schedule();
  }

  /** Sent at once (the artifact is listed while the job runs), after the output before it. */
  artifact(captured: CapturedArtifact): Promise<void> {
    this.flush();
    return this.send({ artifact: { captured } });
  }

  private schedule(): void {
    this.dirty = true;
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    const batch: LeaseReport = {
      ...(this.pendingText ? { output: this.pendingText } : {}),
      ...(this.latestProgress !== undefined ? { progress: this.latestProgress } : {}),
      ...(this.progressPoints.length > 1 ? { progressPoints: this.progressPoints } : {}),
    };
    this.pendingText = '';
    this.latestProgress = undefined;
    this.progressPoints = [];
    this.send(batch).catch(() => undefined); // logged by send
  }

  /** Sends after the reports before it; a failure other than a stale lease reaches the caller (the capture), as before the split. */
  private send(batch: LeaseReport): Promise<void> {
    const sent = this.sending.then(() => this.queue.report(this.leaseId, batch));
    this.sending = sent.catch((error: Error) => {
      if (error instanceof StaleLease) this.onStale();
      else this.log(`worker: a report on lease ${this.leaseId} failed: ${error.message}`);
    });
    return sent.catch((error: Error) => {
      if (!(error instanceof StaleLease)) throw error;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    await this.sending;
  }
}
