import type { CapturedArtifact } from '../../runner/artifacts.js';
import type { Clock } from '../../context.js';
import { settledWithin } from '../../util/wait.js';
import { compareVersions } from '../../docker/cuda-drivers.js';
import { sha256File } from '../../util/fs.js';
import { deliverCallback } from '../callbacks.js';
import type { DB } from '../db.js';
import type { EventLog } from '../events.js';
import { newId } from '../ids.js';
import { appendTaskLog, type Layout } from '../layout.js';
import { isTerminal, type JobRow, type JobService, type TaskRow } from '../jobs.js';
import { InternalError, logInternalError, type JobStates, type TaskOutcome } from '../state.js';
import type { ProjectService } from '../projects.js';
import { DirectiveResolver } from './directives.js';
import { MAX_REPORT_PROGRESS_POINTS, STOP_WAIT_MS, StaleLease, type Lease, type LeaseOutcome, type LeaseReport, type WorkerOffer } from './lease.js';

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
  callbackBaseDelayMs?: number;
}

/** A lease the queue handed out and that is still current. */
interface Held {
  lease: Lease;
  job: JobRow;
  task: TaskRow;
  workerId: string;
  /** The last output of this attempt (the task's output_tail). */
  tail: string;
  /** Settled once the lease ends (an outcome, a release, an expiry, a revoke): a cancel waits on it. */
  ended: Promise<void>;
  end: () => void;
}

export type RevokeReason = 'cancelled' | 'expired';

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
  private readonly revokeListeners = new Set<(leaseId: string, why: RevokeReason) => void>();
  /** Lease requests run one at a time: a task is handed out once. */
  private leasing: Promise<unknown> = Promise.resolve();
  private stopped = false;
  /** Aborted on stop: callback retries waiting out their backoff give up, so nothing keeps the process alive. */
  private readonly lifetime = new AbortController();
  /** The sleep until the earliest lease expiry (none while no lease is out). */
  private sweep: AbortController | undefined;
  private readonly leaseMs: number;
  /** What a task's directives (`_artifacts.download`, `_shared.resolve`) bring into its payload. */
  private readonly directives: DirectiveResolver;

  constructor(private readonly options: WorkQueueOptions) {
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.directives = new DirectiveResolver(options);
    options.states.onJobFinished((job) => this.callback(job.id));
  }

  /** After a crash or restart: requeue interrupted tasks, finish what is finished, send pending callbacks. */
  recover(): void {
    const { db, states } = this.options;
    const unfinished = this.options.jobs.removeUnfinishedInserts();
    if (unfinished) this.options.log(`removed ${unfinished} job(s) whose submission the server did not finish`);
    const interrupted = db.prepare("SELECT * FROM tasks WHERE status = 'running'").all() as TaskRow[];
    for (const task of interrupted) states.recoverInterrupted(task, MAX_ATTEMPTS);
    states.queuePlanning();
    const open = db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running')").all() as JobRow[];
    for (const job of open) this.maybeFinish(job.id);
    const pending = db
      .prepare("SELECT * FROM jobs WHERE callback_state = 'pending' AND status IN ('completed', 'partial', 'failed', 'cancelled')")
      .all() as JobRow[];
    for (const job of pending) this.callback(job.id);
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

  /** Wakes waiting workers. */
  kick(): void {
    if (this.stopped) return;
    for (const listener of this.workListeners) listener();
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

  /** Up to `max` tasks this worker can run, next in job order, each as a lease. */
  lease(offer: WorkerOffer, max: number): Promise<Lease[]> {
    const run = this.leasing.then(() => this.leaseNow(offer, max));
    this.leasing = run.catch(() => undefined);
    return run;
  }

  private async leaseNow(offer: WorkerOffer, max: number): Promise<Lease[]> {
    if (this.stopped || max <= 0) return [];
    this.expireDue();
    const leases: Lease[] = [];
    // A task that cannot be handed out (it failed while its lease was made) frees its place for the next.
    while (leases.length < max) {
      const started = this.next(max - leases.length);
      if (started.length === 0) break;
      for (const { job, task } of started) {
        const lease = await this.leaseFor(offer, job, task).catch((error: Error) => {
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

  /** The next queued tasks that may run, marked running (synchronously: no other request sees them queued). */
  private next(max: number): Array<{ job: JobRow; task: TaskRow }> {
    const { db, jobs } = this.options;
    const started: Array<{ job: JobRow; task: TaskRow }> = [];
    const open = db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq").all() as JobRow[];
    for (const job of open) {
      if (started.length >= max) break;
      if (job.cancel_requested) continue;
      if (job.status === 'queued' && !this.dependenciesReady(job)) continue;
      // Only the next queued tasks are read (by an index), not every task of the job.
      for (const task of jobs.queuedTasks(job.id, max - started.length)) {
        if (started.length >= max) break;
        if (jobs.kindOf(job.type).mayStart?.(task, jobs) === false) continue;
        started.push({ job, task: this.options.states.startTask(job, task) });
      }
    }
    return started;
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

  /** A running task's lease: checked against the offer, its payload composed. Throws why it cannot run. */
  private async leaseFor(offer: WorkerOffer, job: JobRow, task: TaskRow): Promise<Lease> {
    const { jobs, projects, layout } = this.options;
    const request = jobs.request(job);
    const revision = job.revision!;
    const project = await projects.load(job.project, revision);
    const cuda = project.format === 'cycleswap' ? project.manifest.job.cuda : undefined;
    const gpus = (request.requirements?.gpu ?? 0) > 0 || request.profile === 'gpu' || cuda !== undefined;
    // One worker per server today: a task its worker cannot run fails, saying why. With workers on
    // other machines (the next step), it waits for one that can.
    const problem = gpus ? gpuProblem(offer, cuda) : undefined;
    if (problem) throw new Error(problem);
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
    };
    let end = (): void => undefined;
    const ended = new Promise<void>((resolve) => (end = resolve));
    this.held.set(lease.id, { lease, job, task, workerId: offer.workerId, tail: '', ended, end });
    if (task.attempt > 1) appendTaskLog(layout, task.id, `\n--- attempt ${task.attempt} ---\n`);
    return lease;
  }

  /** Extends a lease; says whether its job was cancelled (a remote worker hears of a cancel this way). */
  async renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    const held = this.current(leaseId);
    held.lease.expiresAt = this.elapsed() + this.leaseMs;
    this.scheduleSweep();
    return { expiresAt: held.lease.expiresAt, cancel: this.options.jobs.row(held.job.id)?.cancel_requested === 1 };
  }

  /** A worker's report on a running task: output into its log, tail and events; progress; a captured artifact. */
  async report(leaseId: string, batch: LeaseReport): Promise<void> {
    const held = this.current(leaseId);
    if (batch.artifact) await this.recordArtifact(held.job, held.task, batch.artifact.captured);
    if (batch.output === undefined && batch.progress === undefined) return;
    if (batch.output) {
      appendTaskLog(this.options.layout, held.task.id, batch.output);
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
  async release(leaseId: string, reason: string): Promise<void> {
    const held = this.current(leaseId);
    this.endLease(held);
    if (this.stopped) this.options.states.requeueStopped(held.task);
    else this.options.states.requeueLost({ ...held.task, output_tail: held.tail }, reason, MAX_ATTEMPTS);
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
        `worker ${held.workerId} stopped renewing its lease (${seconds}s)`,
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
    this.lifetime.abort();
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
    this.sweep?.abort();
    this.sweep = undefined;
    if (this.stopped || this.held.size === 0) return;
    const earliest = Math.min(...[...this.held.values()].map((h) => h.lease.expiresAt));
    const sweep = new AbortController();
    this.sweep = sweep;
    this.options.clock.sleep(Math.max(0, earliest - this.elapsed()), sweep.signal).then(
      () => {
        if (this.sweep === sweep) this.expireDue();
      },
      () => undefined,
    );
  }

  /** A job whose tasks are all done gets its final status (its last event). */
  private maybeFinish(jobId: string): void {
    if (this.stopped) return;
    const { jobs } = this.options;
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

  private callback(jobId: string): void {
    const { jobs } = this.options;
    const job = jobs.row(jobId);
    if (!job || job.callback_state !== 'pending') return;
    const url = jobs.request(job).callback_url;
    if (!url) return;
    void deliverCallback(url, jobs.document(job), {
      log: this.options.log,
      signal: this.lifetime.signal,
      ...(this.options.callbackBaseDelayMs !== undefined ? { baseDelayMs: this.options.callbackBaseDelayMs } : {}),
    }).then((ok) => {
      if (this.lifetime.signal.aborted) return; // still pending: the next start sends it
      this.options.states.recordCallback(jobId, ok ? 'delivered' : 'failed');
    });
  }
}

/** Why a task that wants the GPU cannot run on this worker (undefined: it can). */
export function gpuProblem(offer: WorkerOffer, cuda: string | undefined): string | undefined {
  const gpu = offer.gpu;
  if (!gpu?.ok) return `the task needs a GPU, but this server has none (${gpu?.reason ?? 'no GPU reported'})`;
  if (cuda && gpu.cuda && compareVersions(gpu.cuda, cuda) < 0) return `[job].cuda = "${cuda}" needs a newer driver: this server's supports CUDA ${gpu.cuda}`;
  return undefined;
}
