import { constants as fsConstants, createWriteStream, type WriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DockerDriver, Mount } from '../docker/driver.js';
import type { Project } from '../project/load.js';
import { selectFiles, toTarEntries } from '../pack/select.js';
import type { TarEntry } from '../pack/tar.js';
import { runProjectTask } from '../runner/task-service.js';
import type { CapturedArtifact } from '../runner/artifacts.js';
import { volumeMountPath } from '../runner/volumes.js';
import { gvisorRegistered, jobContainer } from '../runner/limits.js';
import type { Env } from '../ui/streams.js';
import type { Clock } from '../context.js';
import { LABELS } from '../runner/images.js';
import { sha256File } from '../util/fs.js';
import { joinInside } from '../util/paths.js';
import { deliverCallback } from './callbacks.js';
import { type DB, now } from './db.js';
import type { EventLog } from './events.js';
import { newId } from './ids.js';
import type { Layout } from './layout.js';
import { isTerminal, type JobRow, type JobService, type TaskRow } from './jobs.js';
import { MAX_TASK_PAYLOAD_BYTES, mib } from './planner.js';
import type { JobStates, TaskOutcome } from './state.js';
import type { ProjectService } from './projects.js';
import { volumeMountSource } from './volumes.js';

/** A task that was running when the server stopped runs again, once. */
const MAX_ATTEMPTS = 2;
const TAIL_BYTES = 4096;
const FLUSH_MS = 250;
const EVENT_TEXT_MAX = 256 * 1024;
/** How long a cancel or a shutdown waits for running containers to stop. */
const STOP_WAIT_MS = 15_000;
/** Finished jobs whose results document `_shared.resolve` keeps (each may be a whole job's results). */
const RESOLVED_RESULTS_KEPT = 16;

export interface SchedulerOptions {
  db: DB;
  events: EventLog;
  states: JobStates;
  jobs: JobService;
  projects: ProjectService;
  layout: Layout;
  docker: () => Promise<DockerDriver>;
  workers: number;
  /** Read for job containers' settings (CYCLE_MEMORY_LIMIT, CYCLE_DOCKER_NETWORK). */
  env: Env;
  /** Labels this server's containers, so the next start can remove leftovers. */
  serverKey: string;
  /** Checks a `[job].cuda` requirement against this machine (undefined: fine). */
  gpuProblem: (cuda: string | undefined, wantsGpu: boolean) => Promise<string | undefined>;
  log: (line: string) => void;
  callbackBaseDelayMs?: number;
  /** Runs task timeouts (the system's clock unless set; the scheduler's tests advance a fake one). */
  clock?: Clock;
}

interface Running {
  jobId: string;
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Runs queued tasks on up to `workers` containers at a time, in job order, once their job's
 * dependencies completed. Records everything as it happens, so a restart picks up where it
 * stopped.
 */
export class Scheduler {
  private readonly running = new Map<string, Running>();
  private readonly sources = new Map<string, TarEntry[]>();
  private ticking = false;
  private again = false;
  private stopped = false;
  /** Aborted on stop: callback retries waiting out their backoff give up, so nothing keeps the process alive. */
  private readonly lifetime = new AbortController();
  /** Whether Docker has gVisor: asked once (a docker info), when a sandboxed task first runs. */
  private gvisor: Promise<boolean> | undefined;
  /**
   * `_shared.resolve` of a job's results: a finished job's never change, so its document is
   * built once, not once per task of every job that resolves it (oldest dropped first).
   */
  private readonly finishedResults = new Map<string, unknown>();

  constructor(private readonly options: SchedulerOptions) {
    options.states.onJobFinished((job) => this.callback(job.id));
  }

  /** After a crash or restart: requeue interrupted tasks, remove leftover containers, finish what is finished. */
  async recover(): Promise<void> {
    const { db, states } = this.options;
    const unfinished = this.options.jobs.removeUnfinishedInserts();
    if (unfinished) this.options.log(`removed ${unfinished} job(s) whose submission the server did not finish`);
    const interrupted = db.prepare("SELECT * FROM tasks WHERE status = 'running'").all() as TaskRow[];
    for (const task of interrupted) states.recoverInterrupted(task, MAX_ATTEMPTS);
    states.queuePlanning();
    try {
      const docker = await this.options.docker();
      for (const container of await docker.listContainers({ all: true, label: [`cycle.server=${this.options.serverKey}`] }))
        await docker.removeContainer(container.id);
    } catch (error) {
      this.options.log(`could not clean up old containers: ${(error as Error).message}`);
    }
    const open = db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running')").all() as JobRow[];
    for (const job of open) this.maybeFinish(job.id);
    const pending = db
      .prepare("SELECT * FROM jobs WHERE callback_state = 'pending' AND status IN ('completed', 'partial', 'failed', 'cancelled')")
      .all() as JobRow[];
    for (const job of pending) this.callback(job.id);
    if (interrupted.length) this.options.log(`recovered ${interrupted.length} interrupted task(s)`);
  }

  /** Wakes the scheduler (new jobs, finished tasks, finished dependencies). */
  kick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    void this.tick()
      .catch((error: Error) => this.options.log(`scheduler: ${error.stack ?? error.message}`))
      .finally(() => {
        this.ticking = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async tick(): Promise<void> {
    const { db, jobs } = this.options;
    const open = db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq").all() as JobRow[];
    for (const job of open) {
      if (this.running.size >= this.options.workers) return;
      if (job.cancel_requested) continue;
      if (job.status === 'queued' && !this.dependenciesReady(job)) continue;
      // Only the next queued tasks are read (by an index), not every task of the job: at most
      // `workers` can start, fewer when some returned are still winding down in `running`.
      for (const task of jobs.queuedTasks(job.id, this.options.workers)) {
        if (this.running.size >= this.options.workers) return;
        if (this.running.has(task.id)) continue;
        if (task.kind === 'reduce' && jobs.hasUnfinishedMaps(job.id)) continue;
        this.start(job, task);
      }
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

  private start(job: JobRow, queued: TaskRow): void {
    const task = this.options.states.startTask(job, queued);
    const controller = new AbortController();
    const done = this.execute(job, task, controller.signal)
      .catch((error: Error) =>
        this.stopped && controller.signal.aborted ? this.requeue(task) : this.finishTask(task, { status: 'failed', error: error.message }),
      )
      .finally(() => {
        this.running.delete(task.id);
        this.maybeFinish(job.id);
        this.kick();
      });
    this.running.set(task.id, { jobId: job.id, controller, done });
  }

  private async execute(job: JobRow, task: TaskRow, signal: AbortSignal): Promise<void> {
    const { layout, projects, jobs } = this.options;
    const request = jobs.request(job);
    const revision = job.revision!;
    const project = await projects.load(job.project, revision);
    const wantsGpu =
      (request.requirements?.gpu ?? 0) > 0 || request.profile === 'gpu' || (project.format === 'cycleswap' && project.manifest.job.cuda !== undefined);
    const gpuProblem = wantsGpu ? await this.options.gpuProblem(project.format === 'cycleswap' ? project.manifest.job.cuda : undefined, true) : undefined;
    if (gpuProblem) return this.finishTask(task, { status: 'failed', error: gpuProblem });
    const imageId = await projects.ensureImage(job.project, revision);
    if (signal.aborted) return this.stopped ? this.requeue(task) : this.finishTask(task, { status: 'cancelled', error: 'cancelled' });

    const work = layout.taskWork(task.id);
    const artifactsDir = layout.taskOutputs(job.id, task.id);
    await fs.rm(work, { recursive: true, force: true });
    const mounts: Mount[] = [];
    // Sized before it is built: a task whose composed payload is over the cap fails, naming it.
    const composed = jobs.runPayload(job, task);
    if ('error' in composed) return this.finishTask(task, { status: 'failed', error: composed.error });
    let payload = await this.resolveDirectives(composed.payload, work, mounts, job.project);
    if (task.kind === 'reduce') {
      // The map results reach the reduce task in its payload: sized (by the database) before they are read.
      const mapBytes = jobs.resultBytes(job.id, 'map');
      if (mapBytes > MAX_TASK_PAYLOAD_BYTES) {
        await fs.rm(work, { recursive: true, force: true }); // what the directives put there
        return this.finishTask(task, {
          status: 'failed',
          error: `the map tasks' results are about ${mib(mapBytes)} together; at most ${mib(MAX_TASK_PAYLOAD_BYTES)} reach the reduce task in payload.map_results: have the maps write big outputs to /artifacts and return their names`,
        });
      }
      payload = { ...payload, map_results: jobs.mapResults(job.id) };
    }
    if (project.format === 'cycleswap') {
      for (const volume of project.manifest.main.volumes) {
        const source = await volumeMountSource(this.options.db, layout, volume);
        if (!source) {
          await fs.rm(work, { recursive: true, force: true }); // what the directives put there
          return this.finishTask(task, {
            status: 'failed',
            error: `volume "${volume}" (in [main].volumes) is not on this server: upload it with \`cycle volume upload DIR --name ${volume}\``,
          });
        }
        mounts.push({ type: 'bind', source, target: volumeMountPath(volume), readonly: true });
      }
    }
    const sourceFiles = project.format === 'cycleswap' ? await this.sourceFor(job.project, revision, project) : [];
    const docker = await this.options.docker();
    const sandbox = project.format === 'computalot' ? project.manifest.runtime.sandbox : undefined;
    const container = jobContainer({
      sandbox,
      requirements: request.requirements,
      skipLimits: false,
      gvisorRegistered: sandbox === 'gvisor' && (await (this.gvisor ??= gvisorRegistered(docker))),
      env: this.options.env,
    });
    const runnerCommand = task.command ? (JSON.parse(task.command) as string[]) : request.runner_command;

    const feed = new LiveFeed(this.options, job, task);
    for (const warning of container.warnings) feed.output(`[cycle] warning: ${warning}\n`);
    try {
      const { outcome } = await runProjectTask({
        docker,
        project,
        imageId,
        name: `cycle-server-${task.id}`,
        labels: { 'cycle.server': this.options.serverKey, [LABELS.projectKey]: `server:${job.project}`, 'cycle.task': task.id },
        payload,
        mounts,
        gpus: wantsGpu,
        container,
        sourceFiles,
        ...(runnerCommand ? { runnerCommand } : {}),
        ...(request.timeout_s ? { timeoutMs: request.timeout_s * 1000 } : {}),
        ...(this.options.clock ? { clock: this.options.clock } : {}),
        artifacts: {
          liveDir: path.join(work, 'live-artifacts'),
          storeDir: artifactsDir,
          // A task that runs again (after a crash, a retry) starts with what it had captured.
          resumeFrom: artifactsDir,
          onCaptured: (artifact, all) => this.recordArtifact(job, task, artifact, all),
          onRefused: (relative, why) => feed.output(`[cycle] /artifacts/${relative} not captured: ${why}\n`),
        },
        callbacks: {
          stdout: (text) => feed.output(text),
          stderr: (chunk) => feed.output(chunk.toString('utf8')),
          progress: (event) => feed.progress(event.data),
        },
        signal,
      });
      if (outcome.outOfMemory) feed.output(`[cycle] ${outcome.reason}\n`);
      await feed.close();
      if (outcome.status === 'interrupted' && this.stopped) return this.requeue(task);
      const artifactIds = (this.options.db.prepare('SELECT id FROM artifacts WHERE task_id = ? ORDER BY ord').all(task.id) as Array<{ id: string }>).map(
        (a) => a.id,
      );
      if (outcome.status === 'interrupted') return this.finishTask(task, { status: 'cancelled', error: 'cancelled', artifactIds });
      if (outcome.status === 'succeeded') return this.finishTask(task, { status: 'succeeded', result: outcome.result ?? null, exitCode: 0, artifactIds });
      return this.finishTask(task, {
        status: 'failed',
        error: outcome.reason ?? 'failed',
        exitCode: outcome.exitCode,
        result: outcome.result ?? null,
        artifactIds,
      });
    } finally {
      await feed.close();
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  private async sourceFor(name: string, revision: number, project: Project): Promise<TarEntry[]> {
    const key = `${name}@${revision}`;
    const cached = this.sources.get(key);
    if (cached) return cached;
    const selection = await selectFiles(project.root, { rules: false });
    const entries = toTarEntries(selection.entries);
    this.sources.set(key, entries);
    return entries;
  }

  /** `_artifacts.download` files into a mount, `_shared.resolve` values into the payload. */
  private async resolveDirectives(payload: Record<string, unknown>, work: string, mounts: Mount[], projectName: string): Promise<Record<string, unknown>> {
    const { db, jobs } = this.options;
    const artifacts = (payload._artifacts as { download?: Record<string, { job_id: string; artifact: string }> } | undefined)?.download;
    if (artifacts) {
      const dir = path.join(work, 'artifacts');
      const paths: Record<string, string> = {};
      for (const [name, spec] of Object.entries(artifacts)) {
        // Checked at submit too (depends_on); again here for jobs stored before that check.
        if (!jobs.projectJob(spec.job_id, projectName)) throw new Error(`_artifacts.download.${name}: no job "${spec.job_id}" in project "${projectName}"`);
        const candidates = jobs.artifacts({ jobId: spec.job_id });
        const wanted = spec.artifact;
        const match =
          candidates.find((a) => a.name === wanted) ??
          candidates.find((a) => path.posix.basename(a.name) === wanted) ??
          candidates.find((a) => path.posix.basename(a.name).replace(/\.[^.]*$/, '') === wanted);
        if (!match)
          throw new Error(
            `_artifacts.download.${name}: job ${spec.job_id} has no artifact "${wanted}" (it has: ${candidates.map((a) => a.name).join(', ') || 'none'})`,
          );
        const row = jobs.artifact(match.id);
        // The name was checked when the job came in; this is the last line if a check is missed.
        const fileName = path.posix.basename(match.name);
        const target = joinInside(dir, name, fileName);
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.copyFile(row.path, target, fsConstants.COPYFILE_EXCL);
        paths[name] = `/computalot/artifacts/${name}/${fileName}`;
      }
      mounts.push({ type: 'bind', source: dir, target: '/computalot/artifacts', readonly: true });
      payload = { ...payload, _artifacts: { ...(payload._artifacts as object), paths } };
    }
    const resolve = (payload._shared as { resolve?: Record<string, { kv?: string; job?: string; path?: string }> } | undefined)?.resolve;
    if (resolve) {
      const values: Record<string, unknown> = {};
      for (const [name, spec] of Object.entries(resolve)) {
        if (spec.kv !== undefined) {
          const row = db.prepare('SELECT value FROM kv WHERE project = ? AND key = ?').get(projectName, spec.kv) as { value: string } | undefined;
          if (!row) throw new Error(`_shared.resolve.${name}: project ${projectName} has no kv key "${spec.kv}"`);
          values[name] = JSON.parse(row.value);
        } else if (spec.job !== undefined) {
          if (!jobs.projectJob(spec.job, projectName)) throw new Error(`_shared.resolve.${name}: no job "${spec.job}" in project "${projectName}"`);
          // The whole results document of the job goes into this task's payload: sized first.
          const bytes = jobs.resultBytes(spec.job);
          if (bytes > MAX_TASK_PAYLOAD_BYTES)
            throw new Error(
              `_shared.resolve.${name}: job ${spec.job}'s results are about ${mib(bytes)}; at most ${mib(MAX_TASK_PAYLOAD_BYTES)} can be resolved into a payload: have it write big outputs to /artifacts and download them with _artifacts.download`,
            );
          const results = this.resultsOf(spec.job);
          values[name] = spec.path ? pick(results, spec.path) : results;
        }
      }
      payload = { ...payload, _shared: { ...(payload._shared as object), values } };
    }
    return payload;
  }

  /** A job's results document; a finished job's from the cache (the job must still exist: require). */
  private resultsOf(jobId: string): unknown {
    const { jobs } = this.options;
    const row = jobs.require(jobId);
    if (!isTerminal(row.status)) return jobs.results(row);
    let results = this.finishedResults.get(jobId);
    if (results === undefined) {
      results = jobs.results(row);
      this.finishedResults.set(jobId, results);
      const oldest = this.finishedResults.keys().next();
      if (this.finishedResults.size > RESOLVED_RESULTS_KEPT && !oldest.done) this.finishedResults.delete(oldest.value);
    }
    return results;
  }

  /**
   * A captured file becomes an artifact row at once (listed while the job runs); a file captured
   * again keeps its id, with the new size and checksum. `ord` is the place in upload order, which
   * a capture can change (LIFO: the newest first), so the task's rows are renumbered.
   */
  private async recordArtifact(job: JobRow, task: TaskRow, file: CapturedArtifact, all: CapturedArtifact[]): Promise<void> {
    const { db, events } = this.options;
    const sha256 = await sha256File(file.absolute, file.size);
    const existing = db.prepare('SELECT id FROM artifacts WHERE task_id = ? AND name = ?').get(task.id, file.path) as { id: string } | undefined;
    const id = existing?.id ?? newId('art');
    // The row and its event commit together; listeners hear after the commit.
    events.transaction((record) => {
      if (existing)
        db.prepare('UPDATE artifacts SET size = ?, sha256 = ?, path = ?, created_at = ? WHERE id = ?').run(file.size, sha256, file.absolute, now(), id);
      else
        db.prepare('INSERT INTO artifacts (id, job_id, task_id, name, size, sha256, ord, path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
          id,
          job.id,
          task.id,
          file.path,
          file.size,
          sha256,
          all.length,
          file.absolute,
          now(),
        );
      const place = db.prepare('UPDATE artifacts SET ord = ? WHERE task_id = ? AND name = ?');
      all.forEach((artifact, ord) => place.run(ord, task.id, artifact.path));
      record({ type: 'artifact', job_id: job.id, task_id: task.id, data: { id, name: file.path, size: file.size } });
    });
  }

  private finishTask(task: TaskRow, outcome: TaskOutcome): void {
    this.options.states.finishTask(task, outcome);
  }

  /** A task stopped by a shutdown runs again on the next start, not counted as an attempt. */
  private requeue(task: TaskRow): void {
    this.options.states.requeueStopped(task);
  }

  /** A job whose tasks are all done gets its final status (its last event). */
  private maybeFinish(jobId: string): void {
    if (this.stopped) return;
    const { jobs } = this.options;
    const job = jobs.row(jobId);
    if (!job || isTerminal(job.status)) return;
    const counts = jobs.counts(jobId);
    if (counts.queued + counts.running > 0 || [...this.running.values()].some((r) => r.jobId === jobId)) return;
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
    const { db, jobs } = this.options;
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
      db.prepare('UPDATE jobs SET callback_state = ? WHERE id = ?').run(ok ? 'delivered' : 'failed', jobId);
    });
  }

  /** Cancels a job: queued tasks at once, running containers stopped; answers when they are. */
  async cancel(jobId: string): Promise<void> {
    const { jobs } = this.options;
    const job = jobs.require(jobId);
    if (isTerminal(job.status)) return;
    this.options.states.requestCancel(jobId);
    const running = [...this.running.values()].filter((r) => r.jobId === jobId);
    for (const task of running) task.controller.abort();
    await settledWithin(Promise.all(running.map((r) => r.done)), STOP_WAIT_MS);
    this.maybeFinish(jobId);
  }

  /** Tasks running now (a shutdown says how many it stops). */
  get runningCount(): number {
    return this.running.size;
  }

  /**
   * Stops running containers; their tasks run again on the next start (not counted as attempts).
   * Returns at once when nothing runs: no timer is left behind to keep the process alive.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.lifetime.abort();
    const tasks = [...this.running.values()];
    for (const running of tasks) running.controller.abort();
    await settledWithin(Promise.all(tasks.map((r) => r.done)), STOP_WAIT_MS);
  }
}

/** Streams a task's output to its log file, and its tail and progress to the database and SSE, a few times a second. */
class LiveFeed {
  private readonly log: WriteStream;
  private tail = '';
  private dirty = false;
  private latestProgress: unknown = undefined;
  private timer: NodeJS.Timeout | undefined;
  private pendingText = '';
  private closed = false;

  constructor(
    private readonly options: SchedulerOptions,
    private readonly job: JobRow,
    private readonly task: TaskRow,
  ) {
    this.log = createWriteStream(options.layout.taskLog(task.id), { flags: 'a' });
    this.log.on('error', () => undefined);
    if (task.attempt > 1) this.log.write(`\n--- attempt ${task.attempt} ---\n`);
  }

  output(text: string): void {
    if (this.closed) return;
    this.log.write(text);
    this.tail = (this.tail + text).slice(-TAIL_BYTES);
    this.pendingText += text;
    this.schedule();
  }

  progress(data: unknown): void {
    if (this.closed) return;
    this.latestProgress = data;
    this.schedule();
  }

  private schedule(): void {
    this.dirty = true;
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    this.timer = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    const { db, events } = this.options;
    events.transaction((record) => {
      db.prepare('UPDATE tasks SET output_tail = ?, latest_progress = COALESCE(?, latest_progress) WHERE id = ?').run(
        this.tail,
        this.latestProgress === undefined ? null : JSON.stringify(this.latestProgress),
        this.task.id,
      );
      if (this.pendingText) {
        // Events carry the whole new output (a follower rebuilds the log from them), up to a cap.
        const skipped = Math.max(0, this.pendingText.length - EVENT_TEXT_MAX);
        const text = skipped ? `[… ${skipped} characters skipped: see the job's output]\n${this.pendingText.slice(-EVENT_TEXT_MAX)}` : this.pendingText;
        record({ type: 'output', job_id: this.job.id, task_id: this.task.id, data: { index: this.task.idx, text } });
      }
      if (this.latestProgress !== undefined)
        record({ type: 'progress', job_id: this.job.id, task_id: this.task.id, data: { index: this.task.idx, progress: this.latestProgress } });
    });
    this.pendingText = '';
    this.latestProgress = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
    this.closed = true;
    await new Promise<void>((resolve) => this.log.end(resolve));
  }
}

/** Waits for `work`, at most `ms`; the timer is cleared either way. */
async function settledWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function pick(value: unknown, dotted: string): unknown {
  let current = value;
  for (const part of dotted.split('.')) {
    if (current === null || typeof current !== 'object') return null;
    current = (current as Record<string, unknown>)[part];
  }
  return current ?? null;
}
