import type { CapturedArtifact } from '../../runner/artifacts.js';
import type { Clock } from '../../context.js';
import { settledWithin } from '../../util/wait.js';
import { yieldToIo } from '../../util/pace.js';
import type { Machine, MachineInventory } from '../../api/machines.js';
import { sha256File } from '../../util/fs.js';
import type { DB } from '../db.js';
import type { EventLog } from '../events.js';
import { newId } from '../ids.js';
import type { Layout } from '../layout.js';
import { isTerminal, type JobRow, type JobService, type TaskRow } from '../jobs.js';
import { InternalError, logInternalError, type JobStates, type TaskOutcome } from '../state.js';
import type { ProjectService } from '../projects.js';
import { DirectiveResolver } from './directives.js';
import {
  LEASES_AHEAD,
  MAX_REPORT_PROGRESS_POINTS,
  STOP_WAIT_MS,
  StaleLease,
  type Lease,
  type LeaseOutcome,
  type LeaseReport,
  type WorkerOffer,
} from './lease.js';
import { candidateOf, noCandidateReason, pickGpus, taskNeeds, unfit, type Candidate, type ManifestNeeds, type TaskNeeds } from './placement.js';

/** A task that was running when the server stopped (or whose worker lost it) runs again, once. */
const MAX_ATTEMPTS = 2;
const TAIL_BYTES = 4096;
const EVENT_TEXT_MAX = 256 * 1024;
/** A lease ends this long after it was handed out or last renewed (a setting for remote workers later). */
export const DEFAULT_LEASE_MS = 30_000;

export interface WorkQueueOptions {
  db: DB;
  events: EventLog;
  states: JobStates;
  jobs: JobService;
  projects: ProjectService;
  layout: Layout;
  /** Lease expiry and renewals run on it (tests advance a manual one). */
  clock: Clock;
  log: (line: string) => void;
  leaseMs?: number;
  /** The enrolled machines (machines/registry.ts): whether one may take work, and what each has. None: the server's own worker only. */
  machines?: MachinePool;
}

/** What the queue asks of the machine registry. */
export interface MachinePool {
  mayTakeWork(name: string): { ok: true } | { ok: false; reason: string };
  /** Why a machine takes no work now (offline, draining, paused, busy); undefined when it may. */
  whyIdleNow(name: string): string | undefined;
  /** The tasks a machine runs at once, as its daemon enrolled it (`--slots`); undefined when it is not enrolled. */
  slotsOf(name: string): number | undefined;
  placementMachines(): Array<{ name: string; inventory: MachineInventory }>;
}

/** Why a job's queued tasks wait (`GET /api/v1/jobs/:id/placement`). */
export interface JobPlacement {
  job_id: string;
  /** Its queued tasks. */
  queued: number;
  /** Why they wait; null when nothing holds them but free room on a worker that can run them. */
  reason: string | null;
  /** Per worker (the server's own one and each enrolled machine): why it cannot run them, or null when it can. */
  workers: Array<{ name: string; reason: string | null }>;
}

/** A lease the queue handed out and that is still current. */
interface Held {
  lease: Lease;
  job: JobRow;
  task: TaskRow;
  workerId: string;
  /** The enrolled machine it runs on (undefined: the server's own worker). */
  machine?: string;
  /** The last output of this attempt (the task's output_tail). */
  tail: string;
  /** The task's captured artifacts when the lease went out (a later one means this attempt ran). */
  artifactsAtLease: number;
  /** Settled once the lease ends (an outcome, a release, an expiry, a revoke): a cancel waits on it. */
  ended: Promise<void>;
  end: () => void;
}

/**
 * A worker's place in line for work (a machine's long poll, `WorkQueue.awaitTurn`): woken once
 * when it is its turn. `end` takes it out of the line; a wake it got and will not act on (it
 * leaves with leases it had already, or its poll is over) goes on to the next in line.
 */
export interface WorkTurn {
  /** Settles when it is woken. */
  readonly woken: Promise<void>;
  readonly isWoken: () => boolean;
  /** Out of the line; `willAsk`: it asks for a lease next (that request passes the wake on if there is more work). */
  end(willAsk: boolean): void;
}

interface Waiter {
  workerId: string;
  wake: () => void;
}

/** Why a lease was taken back: its job was cancelled, it expired, or its machine was removed. */
export type RevokeReason = 'cancelled' | 'expired' | 'removed';

/** A task picked to run, with where it may go on the asking worker. */
interface Picked {
  job: JobRow;
  task: TaskRow;
  needs: TaskNeeds | undefined;
  /** The machine's GPUs it gets (machines only; the server's own worker gives a GPU task all of its GPUs). */
  gpuIndices?: number[];
}

/** How long one turn of the event loop serves lease requests before it lets other work run. */
const LEASE_SLICE_MS = 8;
/** Queued tasks a cancel ends per turn of the event loop (about 10 ms of SQLite here). */
export const CANCEL_SLICE = 2000;
/** Manifest needs kept at most for this many revisions (a cache: reloaded when needed). */
const MANIFEST_CACHE_MAX = 1000;
/** Jobs read when telling why queued tasks are not placed on a machine, and lines told. */
const NOT_PLACED_SCAN = 50;
const NOT_PLACED_MAX = 5;

/**
 * The work queue: which task may run next (job order, dependencies, map before reduce, what the
 * asking worker offers), handed to a worker as a lease that it renews; the worker's reports
 * (output, progress, artifacts) and outcome; and what happens when a lease expires or its worker
 * gives it back. It runs nothing itself: a worker (src/server/worker/) does. Records everything as
 * it happens, so a restart picks up where it stopped.
 */
export class WorkQueue {
  private readonly held = new Map<string, Held>();
  private readonly workListeners = new Set<() => void>();
  /** Workers waiting in line for work (machines' long polls), the longest waiting first. */
  private readonly waiters = new Set<Waiter>();
  /** Each kick starts a round; a worker is woken at most once a round (so a wake passed on for work it cannot run ends). */
  private wakeRound = 0;
  private readonly wokenInRound = new Map<string, number>();
  private readonly revokeListeners = new Set<(leaseId: string, why: RevokeReason) => void>();
  /** Lease requests waiting to be served, in order (`serveLeases`: one at a time, a task is handed out once). */
  private readonly leaseRequests: Array<{ offer: WorkerOffer; max: number; resolve: (leases: Lease[]) => void; reject: (error: unknown) => void }> = [];
  private leasesScheduled = false;
  private stopped = false;
  /** The sleep until the earliest lease expiry (none while no lease is out). */
  private sweep: AbortController | undefined;
  /** When that sleep ends (the clock of `elapsed()`). */
  private sweepAt = Infinity;
  private readonly leaseMs: number;
  /** What a task's directives (`_artifacts.download`, `_shared.resolve`) bring into its payload. */
  private readonly directives: DirectiveResolver;
  /** What each (project, revision)'s manifest asks of a worker ([job].cuda, the sandbox): known before the synchronous pick. */
  private readonly manifestNeeds = new Map<string, ManifestNeeds>();
  /** The server's own worker's latest offer (placement reasons name it beside the machines). */
  private localOffer: WorkerOffer | undefined;

  constructor(private readonly options: WorkQueueOptions) {
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.directives = new DirectiveResolver(options);
  }

  /** After a crash or restart: requeue interrupted tasks, finish what is finished (callbacks.ts sends their callbacks). */
  recover(): void {
    const { db, states } = this.options;
    const unfinished = this.options.jobs.removeUnfinishedInserts();
    if (unfinished) this.options.log(`removed ${unfinished} job(s) whose submission the server did not finish`);
    const interrupted = db.prepare("SELECT * FROM tasks WHERE status = 'running'").all() as TaskRow[];
    for (const task of interrupted) states.recoverInterrupted(task, MAX_ATTEMPTS);
    states.queuePlanning();
    const open = db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running')").all() as JobRow[];
    for (const job of open) {
      // Cancelled before the stop, with tasks still queued (cut between the mark and the last
      // slice) or requeued just now: they are never leased, so they end here (before any request is served).
      if (job.cancel_requested) states.cancelQueuedTasks(job.id, 'cancelled');
      this.maybeFinish(job.id);
    }
    if (interrupted.length) this.options.log(`recovered ${interrupted.length} interrupted task(s)`);
  }

  /** Heard when there may be work for a waiting worker (new jobs, finished tasks, finished dependencies). */
  onWork(listener: () => void): () => void {
    this.workListeners.add(listener);
    return () => this.workListeners.delete(listener);
  }

  /** Heard when a lease is taken back (its job was cancelled, it expired): its worker stops the task. */
  onRevoked(listener: (leaseId: string, why: RevokeReason) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  /**
   * A place in line for work (a machine's long poll). Taken before the worker's lease request, so
   * a wake that comes while that request runs is not lost.
   */
  awaitTurn(workerId: string): WorkTurn {
    let woken = false;
    let wake = (): void => undefined;
    const settled = new Promise<void>((resolve) => (wake = resolve));
    const waiter: Waiter = {
      workerId,
      wake: () => {
        woken = true;
        wake();
      },
    };
    this.waiters.add(waiter);
    return {
      woken: settled,
      isWoken: () => woken,
      end: (willAsk) => {
        this.waiters.delete(waiter);
        if (woken && !willAsk) this.wakeNext();
      },
    };
  }

  /**
   * Wakes waiting workers: the listeners (the in-process worker), and the first in line. Not the
   * whole line: 200 machines woken by every finished task each asked for a lease that found
   * nothing. A lease request that finds work (or work this worker cannot run) wakes the next in
   * line (`wakeNext`), so a crowd is woken one by one while there is work, each once a round.
   */
  kick(): void {
    if (this.stopped) return;
    for (const listener of this.workListeners) listener();
    this.wakeRound++;
    this.wakeNext();
  }

  /** Wakes the first in line not woken yet this round. */
  private wakeNext(): void {
    if (this.stopped) return;
    for (const waiter of this.waiters) {
      if (this.wokenInRound.get(waiter.workerId) === this.wakeRound) continue;
      this.wokenInRound.set(waiter.workerId, this.wakeRound);
      this.waiters.delete(waiter);
      waiter.wake();
      return;
    }
  }

  /**
   * Lease times run on the clock that never jumps: a laptop suspended while its own server runs
   * a task (or a wall-clock change) must not expire the in-process worker's leases on waking.
   */
  private elapsed(): number {
    const { clock } = this.options;
    return clock.elapsed ? clock.elapsed() : clock.now();
  }

  /** Leases now out (a shutdown says how many tasks it stops). */
  get leasedCount(): number {
    return this.held.size;
  }

  /** The worker that holds a lease now (undefined: the lease is not current): a machine may act only on its own. */
  holder(leaseId: string): string | undefined {
    const held = this.held.get(leaseId);
    return held && held.lease.expiresAt > this.elapsed() ? held.workerId : undefined;
  }

  /** The current leases of one worker (a machine may fetch only their inputs). */
  leasesOf(workerId: string): Lease[] {
    const at = this.elapsed();
    return [...this.held.values()].filter((h) => h.workerId === workerId && h.lease.expiresAt > at).map((h) => h.lease);
  }

  /** How long a lease has left, as a duration: a worker on another machine never sees this clock's values. */
  msLeft(expiresAt: number): number {
    return Math.max(0, expiresAt - this.elapsed());
  }

  /** Up to `max` tasks this worker can run, next in job order, each as a lease. */
  lease(offer: WorkerOffer, max: number): Promise<Lease[]> {
    return new Promise<Lease[]>((resolve, reject) => {
      this.leaseRequests.push({ offer, max, resolve, reject });
      this.serveLeasesSoon();
    });
  }

  private serveLeasesSoon(): void {
    if (this.leasesScheduled) return;
    this.leasesScheduled = true;
    setImmediate(() => void this.serveLeases());
  }

  /**
   * Lease requests are served one at a time (a task is handed out once), in the order they came,
   * on a turn of the event loop of their own: as many as fit in `LEASE_SLICE_MS`, then the loop
   * is free again (sockets, timers, /health) before the next slice. One request a turn, as
   * before, made a crowd of 200 machines wait for 200 turns; all in one turn would stall the loop.
   */
  private async serveLeases(): Promise<void> {
    const began = performance.now();
    try {
      for (let request = this.leaseRequests.shift(); request; request = this.leaseRequests.shift()) {
        await this.leaseNow(request.offer, request.max).then(request.resolve, request.reject);
        if (performance.now() - began >= LEASE_SLICE_MS) break;
      }
    } finally {
      this.leasesScheduled = false;
      if (this.leaseRequests.length) this.serveLeasesSoon();
    }
  }

  private async leaseNow(offer: WorkerOffer, max: number): Promise<Lease[]> {
    const pick = { skipped: false };
    const leases = await this.leaseFrom(offer, max, pick);
    // There may be more (it found some, or some this worker cannot run): the next in line asks.
    if (leases.length > 0 || pick.skipped) this.wakeNext();
    return leases;
  }

  /** `leaseNow`'s work; `pick.skipped`: it did not look at the queue, or passed over tasks this worker cannot run. */
  private async leaseFrom(offer: WorkerOffer, max: number, pick: { skipped: boolean }): Promise<Lease[]> {
    pick.skipped = true;
    if (this.stopped || max <= 0) return [];
    if (!offer.machine) this.localOffer = offer;
    // A draining, paused or busy machine (that forbids work while busy) is offered nothing new.
    if (offer.machine && this.options.machines && !this.options.machines.mayTakeWork(offer.machine.name).ok) return [];
    this.expireDue();
    // A machine holds at most its slots' worth of leases (and the one its worker prepares ahead),
    // whatever it asks for: a hostile or confused daemon cannot take the whole queue.
    if (offer.machine && this.options.machines) {
      const slots = this.options.machines.slotsOf(offer.machine.name);
      if (slots === undefined) return [];
      max = Math.min(max, slots + LEASES_AHEAD - this.runningOn(offer.machine.name).length);
      if (max <= 0) return [];
    }
    // The open jobs, read once for the manifests and the pick when no manifest must be read first
    // (then nothing else ran between the two: no await).
    let open: JobRow[] | undefined = this.options.jobs.openJobs();
    const loading = this.loadManifestNeeds(open);
    if (loading) {
      await loading;
      open = undefined;
    }
    pick.skipped = false;
    const leases: Lease[] = [];
    // A task that cannot be handed out (it failed while its lease was made) frees its place for the next.
    while (leases.length < max) {
      const started = this.next(offer, max - leases.length, pick, open);
      open = undefined; // read again after the leases' awaits
      if (started.length === 0) break;
      for (const picked of started) {
        const { job, task } = picked;
        const lease = await this.leaseFor(offer, picked).catch((error: Error) => {
          if (error instanceof InternalError) logInternalError(this.options.log, `task ${task.id}`, error);
          else this.finishTask(task, { status: 'failed', error: error.message });
          this.maybeFinish(job.id);
          this.kick(); // jobs depending on this one can now go on (or fail)
          return undefined;
        });
        if (lease) leases.push(lease);
      }
    }
    if (leases.length) this.scheduleSweep();
    return leases;
  }

  /**
   * The next queued tasks that may run on this worker, marked running (synchronously: no other
   * request sees them queued). A task the worker cannot run stays queued for one that can
   * (placement.ts); `placement()` tells why it waits.
   */
  private next(offer: WorkerOffer, max: number, pick: { skipped: boolean } = { skipped: false }, open = this.options.jobs.openJobs()): Picked[] {
    const { jobs } = this.options;
    const started: Picked[] = [];
    const candidate = candidateOf(offer);
    // GPUs already leased on this machine are not free (GPU tasks get whole GPUs of their own).
    const gpusInUse = new Set(offer.machine ? this.gpusLeasedOn(offer.machine.name) : []);
    for (const job of open) {
      if (started.length >= max) break;
      if (job.cancel_requested) continue;
      if (job.status === 'queued' && !this.dependenciesReady(job)) continue;
      // Unknown needs (the revision could not be loaded): handed out, and its lease fails the task saying why.
      const needs = this.needsOf(job);
      if (needs && unfit(needs, candidate)) {
        pick.skipped = true;
        continue;
      }
      // Only the next queued tasks are read (by an index), not every task of the job.
      for (const task of jobs.queuedTasks(job.id, max - started.length)) {
        if (started.length >= max) break;
        if (jobs.kindOf(job.type).mayStart?.(task, jobs) === false) continue;
        let gpuIndices: number[] | undefined;
        if (needs && needs.gpus > 0 && offer.machine) {
          gpuIndices = pickGpus(needs, offer.machine.inventory, gpusInUse);
          if (!gpuIndices) {
            pick.skipped = true;
            break; // not enough free GPUs now: the job's other tasks wait too
          }
          for (const index of gpuIndices) gpusInUse.add(index);
        }
        const placement = { ...(offer.machine ? { machine: offer.machine.name } : {}), ...(gpuIndices ? { gpuIndices } : {}) };
        started.push({ job, task: this.options.states.startTask(job, task, placement), needs, ...(gpuIndices ? { gpuIndices } : {}) });
      }
    }
    return started;
  }

  private manifestKey(project: string, revision: number): string {
    return `${project}\u0000${revision}`;
  }

  /** What the job's tasks need of a worker; undefined while its revision's manifest is not known. */
  private needsOf(job: JobRow): TaskNeeds | undefined {
    const manifest = this.manifestNeeds.get(this.manifestKey(job.project, job.revision!));
    return manifest ? taskNeeds(this.options.jobs.request(job), manifest) : undefined;
  }

  /**
   * Reads the manifests of the open jobs' revisions not read yet (before the synchronous pick; a
   * revision is immutable). Undefined, at once, when every one is known (the usual case).
   */
  private loadManifestNeeds(open: JobRow[]): Promise<void> | undefined {
    const missing = open.filter((job) => job.revision !== null && !this.manifestNeeds.has(this.manifestKey(job.project, job.revision)));
    if (missing.length === 0) return undefined;
    return (async () => {
      // A revision that cannot be loaded stays unknown: its task's lease fails, saying why (as before placement).
      for (const job of missing) await this.manifestNeedsOf(job.project, job.revision!).catch(() => undefined);
    })();
  }

  private async manifestNeedsOf(project: string, revision: number): Promise<ManifestNeeds> {
    const key = this.manifestKey(project, revision);
    const cached = this.manifestNeeds.get(key);
    if (cached) return cached;
    const loaded = await this.options.projects.load(project, revision);
    const needs: ManifestNeeds =
      loaded.format === 'cycleswap'
        ? { ...(loaded.manifest.job.cuda !== undefined ? { cuda: loaded.manifest.job.cuda } : {}), gvisor: false }
        : { gvisor: loaded.manifest.runtime.sandbox === 'gvisor' };
    if (this.manifestNeeds.size >= MANIFEST_CACHE_MAX) this.manifestNeeds.clear();
    this.manifestNeeds.set(key, needs);
    return needs;
  }

  private gpusLeasedOn(machine: string): number[] {
    return [...this.held.values()].filter((h) => h.machine === machine).flatMap((h) => h.lease.gpuIndices ?? []);
  }

  /** The workers a task may go to: the server's own (once it asked for work) and every enrolled machine. */
  private candidates(): Candidate[] {
    const machines = this.options.machines?.placementMachines() ?? [];
    return [
      ...(this.localOffer ? [candidateOf(this.localOffer)] : []),
      ...machines.map((m): Candidate => ({ name: m.name, local: false, inventory: m.inventory })),
    ];
  }

  /**
   * Why a job's queued tasks are not placed: its dependencies, no worker that can ever run them
   * ("no machine supports CUDA 13.0; best: gpu-b with 12.4"), or none with room now. Undefined
   * when the job has no queued task.
   */
  async placement(jobId: string): Promise<JobPlacement | undefined> {
    const { jobs } = this.options;
    const job = jobs.require(jobId);
    const queued = jobs.counts(job.id).queued;
    if (isTerminal(job.status) || queued === 0) return undefined;
    const candidates = this.candidates();
    const base = { job_id: job.id, queued };
    if (job.status === 'planning') return { ...base, reason: 'the job is being planned', workers: [] };
    const waiting = this.options.jobs.request(job).depends_on.filter((id) => jobs.row(id)?.status !== 'completed');
    if (job.status === 'queued' && waiting.length)
      return { ...base, reason: `waiting for ${waiting.length === 1 ? 'job' : 'jobs'} ${waiting.join(', ')} to complete`, workers: [] };
    let needs: TaskNeeds;
    try {
      needs = taskNeeds(jobs.request(job), await this.manifestNeedsOf(job.project, job.revision!));
    } catch (error) {
      return { ...base, reason: `its project revision cannot be read: ${(error as Error).message}`, workers: [] };
    }
    const workers = candidates.map((c) => ({ name: c.name, reason: unfit(needs, c) ?? this.unavailable(c) ?? null }));
    const never = noCandidateReason(needs, candidates);
    if (never) return { ...base, reason: never, workers };
    const ready = workers.filter((w) => w.reason === null).map((w) => w.name);
    return {
      ...base,
      reason: ready.length
        ? null
        : `the machines that can run it take no work now: ${workers
            .filter((w) => w.reason)
            .map((w) => w.reason)
            .join('; ')}`,
      workers,
    };
  }

  /** Why a worker that could run a task takes none now (offline, draining, paused, busy), undefined when it may. */
  private unavailable(c: Candidate): string | undefined {
    return c.local ? undefined : this.options.machines?.whyIdleNow(c.name);
  }

  /** The tasks a machine runs now (its leases). */
  runningOn(machine: string): Machine['running'] {
    return [...this.held.values()].filter((h) => h.machine === machine).map((h) => ({ job_id: h.job.id, task_id: h.task.id, started_at: h.task.started_at }));
  }

  /** Why queued tasks are not placed on a machine: the first few open jobs it can never run, each with its reason. */
  notPlacedOn(machine: string, inventory: MachineInventory | null): NonNullable<Machine['not_placed']> {
    if (!inventory) return [];
    const candidate: Candidate = { name: machine, local: false, inventory };
    // The first open jobs with a queued task (found by the tasks' (job_id, status) index): one query per machine.
    const open = this.options.db
      .prepare(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND cancel_requested = 0 AND EXISTS (SELECT 1 FROM tasks WHERE tasks.job_id = jobs.id AND tasks.status = 'queued') ORDER BY seq LIMIT ?",
      )
      .all(NOT_PLACED_SCAN) as JobRow[];
    const lines: NonNullable<Machine['not_placed']> = [];
    for (const job of open) {
      if (lines.length >= NOT_PLACED_MAX) break;
      const needs = this.needsOf(job);
      const why = needs && unfit(needs, candidate);
      if (why) lines.push({ job_id: job.id, reason: why });
    }
    return lines;
  }

  /** A removed machine: its leases end, their tasks go back to the queue with the reason in their logs. */
  releaseMachine(machine: string, reason: string): void {
    this.wokenInRound.delete(machine);
    for (const held of [...this.held.values()]) {
      if (held.machine !== machine) continue;
      this.endLease(held);
      this.options.states.requeueLost({ ...held.task, output_tail: held.tail }, reason, MAX_ATTEMPTS);
      this.revoked(held.lease.id, 'removed');
      this.afterLease(held);
    }
  }

  /** True when every dependency completed; fails the job when one ended otherwise. */
  private dependenciesReady(job: JobRow): boolean {
    const request = this.options.jobs.request(job);
    for (const dependency of request.depends_on) {
      const row = this.options.jobs.row(dependency);
      if (!row) return this.failJob(job, `dependency ${dependency} no longer exists`);
      if (!isTerminal(row.status)) return false;
      if (row.status !== 'completed') return this.failJob(job, `dependency ${dependency} ended ${row.status}`);
    }
    return true;
  }

  private failJob(job: JobRow, reason: string): false {
    this.options.states.failJob(job.id, reason);
    this.kick(); // jobs depending on this one can now fail too
    return false;
  }

  /** A running task's lease (placed by `next`), its payload composed. Throws why it cannot run. */
  private async leaseFor(offer: WorkerOffer, picked: Picked): Promise<Lease> {
    const { jobs } = this.options;
    const { job, task } = picked;
    const request = jobs.request(job);
    const revision = job.revision!;
    // Picked with unknown needs: its revision is read now, and one that cannot be read fails the task, saying why.
    const needs = picked.needs ?? taskNeeds(request, await this.manifestNeedsOf(job.project, revision));
    const gpus = needs.gpus > 0;
    // Sized before it is built: a task whose composed payload is over the cap fails, naming it.
    const composed = jobs.runPayload(job, task);
    if ('error' in composed) throw new Error(composed.error);
    const resolved = this.directives.resolve(composed.payload, job.project);
    // What the task's kind adds (a reduce task: the map results); throws why the task cannot run.
    const payload = { ...resolved.payload, ...jobs.kindOf(job.type).receives?.(task, jobs) };
    const runnerCommand = task.command ? (JSON.parse(task.command) as string[]) : request.runner_command;
    const lease: Lease = {
      id: newId('lease'),
      taskId: task.id,
      jobId: job.id,
      attempt: task.attempt,
      expiresAt: this.elapsed() + this.leaseMs,
      renewEveryMs: Math.max(1, Math.floor(this.leaseMs / 3)),
      project: job.project,
      revision,
      kind: task.kind,
      index: task.idx,
      payload,
      downloads: resolved.downloads,
      ...(runnerCommand ? { runnerCommand } : {}),
      ...(request.timeout_s ? { timeoutS: request.timeout_s } : {}),
      ...(request.requirements ? { requirements: request.requirements } : {}),
      gpus,
      ...(picked.gpuIndices && picked.gpuIndices.length ? { gpuIndices: picked.gpuIndices } : {}),
    };
    let end = (): void => undefined;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const machine = offer.machine?.name;
    this.held.set(lease.id, {
      lease,
      job,
      task,
      workerId: offer.workerId,
      ...(machine ? { machine } : {}),
      tail: '',
      artifactsAtLease: this.artifactIds(task.id).length,
      ended,
      end,
    });
    return lease;
  }

  /** Extends a lease; says whether its job was cancelled (a remote worker hears of a cancel this way). */
  async renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    const held = this.current(leaseId);
    held.lease.expiresAt = this.elapsed() + this.leaseMs;
    this.scheduleSweep();
    // One column, not the job's row (its request can be a 100,000-item payload's text).
    const job = this.options.db.prepare('SELECT cancel_requested FROM jobs WHERE id = ?').get(held.job.id) as { cancel_requested: number } | undefined;
    return { expiresAt: held.lease.expiresAt, cancel: job?.cancel_requested === 1 };
  }

  /** A worker's report on a running task: output into its log, tail and events; progress; a captured artifact. */
  async report(leaseId: string, batch: LeaseReport): Promise<void> {
    const held = this.current(leaseId);
    if (batch.artifact) await this.recordArtifact(held.job, held.task, batch.artifact.captured);
    if (batch.output === undefined && batch.progress === undefined) return;
    if (batch.output) {
      this.options.states.logs.append(held.task.id, batch.output);
      held.tail = (held.tail + batch.output).slice(-TAIL_BYTES);
    }
    const { states, events } = this.options;
    const { job, task } = held;
    events.transaction((record) => {
      states.recordOutput(task.id, held.tail, batch.progress);
      if (batch.output) {
        // Events carry the whole new output (a follower rebuilds the log from them), up to a cap.
        const skipped = Math.max(0, batch.output.length - EVENT_TEXT_MAX);
        const text = skipped ? `[… ${skipped} characters skipped: see the job's output]\n${batch.output.slice(-EVENT_TEXT_MAX)}` : batch.output;
        record({ type: 'output', job_id: job.id, task_id: task.id, data: { index: task.idx, text } });
      }
      if (batch.progress !== undefined) {
        const points =
          Array.isArray(batch.progressPoints) && batch.progressPoints.length > 1 ? batch.progressPoints.slice(-MAX_REPORT_PROGRESS_POINTS) : undefined;
        record({ type: 'progress', job_id: job.id, task_id: task.id, data: { index: task.idx, progress: batch.progress, ...(points ? { points } : {}) } });
      }
    });
  }

  /**
   * A captured file becomes an artifact row at once (listed while the job runs); a file captured
   * again keeps its id, with the new size and checksum. `ord` is the place in upload order, which
   * a capture can change (LIFO: the newest first), so the task's rows are renumbered.
   */
  private async recordArtifact(job: JobRow, task: TaskRow, file: CapturedArtifact): Promise<void> {
    const sha256 = await sha256File(file.absolute, file.size);
    this.options.states.recordArtifact(job.id, task.id, file, sha256);
  }

  /** The task's outcome (its one outcome: the lease ends with it). */
  async complete(leaseId: string, outcome: LeaseOutcome): Promise<void> {
    const held = this.current(leaseId);
    this.endLease(held);
    this.finishTask(held.task, { ...outcome, artifactIds: this.artifactIds(held.task.id) });
    this.afterLease(held);
  }

  /** A broken state rule is logged with a reference and the task left as it is (finishing it again would break it again). */
  private finishTask(task: TaskRow, outcome: TaskOutcome): void {
    try {
      this.options.states.finishTask(task, outcome);
    } catch (error) {
      if (!(error instanceof InternalError)) throw error;
      logInternalError(this.options.log, `task ${task.id}`, error);
    }
  }

  /**
   * The worker gives the task back without an outcome: it runs again. While the server stops,
   * not counted as an attempt (as a shutdown always did); otherwise counted, the reason logged.
   */
  async release(leaseId: string, reason: string, options: { unstarted?: boolean } = {}): Promise<void> {
    const held = this.current(leaseId);
    this.endLease(held);
    const why = held.machine ? `machine ${held.machine} gave the task back: ${reason}` : reason;
    if (this.stopped) this.options.states.requeueStopped(held.task);
    // A lease its worker never started (a machine gone before it got it, or paused meanwhile):
    // not an attempt, as long as nothing was reported on it.
    else if (options.unstarted && held.tail === '' && this.artifactIds(held.task.id).length === held.artifactsAtLease)
      this.options.states.requeueStopped(held.task, `${why}; the task had not started (not counted as an attempt)`);
    else this.options.states.requeueLost({ ...held.task, output_tail: held.tail }, why, MAX_ATTEMPTS);
    this.afterLease(held);
  }

  /** Cancels a job: queued tasks at once; its workers are told to stop the running ones; answers when they did. */
  async cancel(jobId: string): Promise<void> {
    const { jobs, clock } = this.options;
    const job = jobs.require(jobId);
    if (isTerminal(job.status)) return;
    this.options.states.requestCancel(jobId);
    const running = [...this.held.values()].filter((h) => h.job.id === jobId);
    for (const held of running) this.revoked(held.lease.id, 'cancelled');
    await this.cancelQueued(jobId);
    await settledWithin(Promise.all(running.map((h) => h.ended)), STOP_WAIT_MS, clock);
    // A worker that did not answer in time: its lease is taken back, the task ends cancelled here.
    for (const held of running)
      if (this.held.get(held.lease.id) === held) {
        this.endLease(held);
        this.options.states.finishTask(held.task, { status: 'cancelled', error: 'cancelled', artifactIds: this.artifactIds(held.task.id) });
      }
    this.maybeFinish(jobId);
  }

  /**
   * A cancelled job's queued tasks → cancelled, CANCEL_SLICE at a time with waiting requests let
   * in between (yieldToIo): one statement over a 100,000-task job's would hold every request for half a second.
   */
  private async cancelQueued(jobId: string): Promise<void> {
    while (this.options.states.cancelQueuedTasks(jobId, 'cancelled', CANCEL_SLICE) === CANCEL_SLICE) await yieldToIo();
  }

  /**
   * Leases past their expiry end: the task goes back to the queue (the attempt counts, the reason
   * is logged) and its worker, if it still listens, stops it. Runs on the clock and before every
   * lease request, so a late report is refused however the clocks line up.
   */
  expireDue(): void {
    const at = this.elapsed();
    for (const held of [...this.held.values()]) {
      if (held.lease.expiresAt > at) continue;
      this.endLease(held);
      const seconds = Math.round(this.leaseMs / 1000);
      this.options.states.requeueLost(
        { ...held.task, output_tail: held.tail },
        `${held.machine ? `machine ${held.machine}` : `worker ${held.workerId}`} stopped renewing its lease (${seconds}s)`,
        MAX_ATTEMPTS,
      );
      this.revoked(held.lease.id, 'expired');
      this.afterLease(held);
    }
    this.scheduleSweep();
  }

  /** Stops handing out work: leases given back from now on are not counted as attempts. */
  stop(): void {
    this.stopped = true;
    this.sweep?.abort();
    this.sweep = undefined;
  }

  /** The lease, if it is still current (expired ones end first); else StaleLease. */
  private current(leaseId: string): Held {
    const held = this.held.get(leaseId);
    if (held && held.lease.expiresAt <= this.elapsed()) this.expireDue();
    const still = this.held.get(leaseId);
    if (!still) throw new StaleLease(leaseId, 'it expired, was given back or revoked, or its task already has an outcome');
    return still;
  }

  private endLease(held: Held): void {
    this.held.delete(held.lease.id);
    held.end();
    this.scheduleSweep();
  }

  private afterLease(held: Held): void {
    this.maybeFinish(held.job.id);
    this.kick();
  }

  private revoked(leaseId: string, why: RevokeReason): void {
    for (const listener of this.revokeListeners) listener(leaseId, why);
  }

  private artifactIds(taskId: string): string[] {
    return (this.options.db.prepare('SELECT id FROM artifacts WHERE task_id = ? ORDER BY ord').all(taskId) as Array<{ id: string }>).map((a) => a.id);
  }

  /** One sleep on the clock until the earliest expiry; none while no lease is out (nothing keeps an idle server alive). */
  private scheduleSweep(): void {
    if (this.stopped || this.held.size === 0) {
      this.sweep?.abort();
      this.sweep = undefined;
      return;
    }
    let earliest = Infinity;
    for (const held of this.held.values()) earliest = Math.min(earliest, held.lease.expiresAt);
    // A sweep already due no later stays: it finds nothing due, or what is, and plans the next.
    // (Replacing it at every lease, renew and outcome made a busy pool's server spend its time
    // on timers and aborts.)
    if (this.sweep && this.sweepAt <= earliest) return;
    this.sweep?.abort();
    const sweep = new AbortController();
    this.sweep = sweep;
    this.sweepAt = earliest;
    this.options.clock.sleep(Math.max(0, earliest - this.elapsed()), sweep.signal).then(
      () => {
        if (this.sweep !== sweep) return;
        this.sweep = undefined;
        this.expireDue();
      },
      () => undefined,
    );
  }

  /** A job whose tasks are all done gets its final status (its last event). */
  private maybeFinish(jobId: string): void {
    if (this.stopped) return;
    const { jobs, db } = this.options;
    // While a task is queued or running (one index probe), the job goes on: most calls end here,
    // before the job's row (its request can be a 100,000-item payload's text) and its counts are read.
    if (db.prepare("SELECT 1 FROM tasks WHERE job_id = ? AND status IN ('queued', 'running') LIMIT 1").get(jobId)) return;
    const job = jobs.row(jobId);
    if (!job || isTerminal(job.status)) return;
    const counts = jobs.counts(jobId);
    if (counts.queued + counts.running > 0 || [...this.held.values()].some((h) => h.job.id === jobId)) return;
    const status = job.cancel_requested ? 'cancelled' : counts.succeeded === counts.total ? 'completed' : counts.succeeded === 0 ? 'failed' : 'partial';
    const firstError = status === 'completed' ? null : jobs.firstError(jobId);
    const error =
      status === 'completed'
        ? null
        : status === 'cancelled'
          ? 'cancelled'
          : `${counts.failed} of ${counts.total} task(s) failed${firstError ? `: ${firstError.split('\n')[0]}` : ''}`;
    this.options.states.finishJob(jobId, status, error);
    this.options.log(`job ${jobId}: ${status}`);
  }
}
