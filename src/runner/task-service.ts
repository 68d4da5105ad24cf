import type { DockerDriver, Mount } from '../docker/driver.js';
import type { Project } from '../project/load.js';
import type { ArtifactOrder } from '../project/cycleswap.js';
import { selectFiles, toTarEntries } from '../pack/select.js';
import { tarStream, type TarEntry } from '../pack/tar.js';
import { taskSpec } from './spec.js';
import fs from 'node:fs/promises';
import { prepareTask, reclaimOutputs, runTask, type PreparedTask, type TaskCallbacks, type TaskOutcome, type TaskSpec } from './task.js';
import { ArtifactCapture, type CapturedArtifact } from './artifacts.js';
import type { JobContainer } from './limits.js';
import type { Clock } from '../context.js';
import { noShellReason, ServiceLog } from './services.js';

export interface ProjectTaskRequest {
  docker: DockerDriver;
  /** A loaded project, either format. */
  project: Project;
  /** Its built image. */
  imageId: string;
  /** Container name (unique); `<name>-reclaim` names the helper that gives files back. */
  name: string;
  labels: Record<string, string>;
  payload: unknown;
  /** Volumes and other mounts the caller resolved (local folders, directive files). */
  mounts: Mount[];
  /** All GPUs, or these devices (whole GPUs of its own). */
  gpus: boolean | readonly number[];
  /** Lock-down, limits and network (jobContainer()), the same for project test and the server. */
  container: JobContainer;
  /**
   * `.cycleswap/` projects: the source files copied into /app. When absent they are selected
   * from the project root (with its ignore rules).
   */
  sourceFiles?: readonly TarEntry[];
  runnerCommand?: string[];
  timeoutMs?: number;
  artifacts: {
    /** Host folder mounted at /artifacts while the job runs (made empty first; removed after). */
    liveDir: string;
    /** Where captured files are kept, by relative path. */
    storeDir: string;
    /** Files put back in /artifacts before the job starts (a retry, a resumed run). */
    resumeFrom?: string;
    /** Each file as it is captured (again when rewritten), while the job runs. */
    onCaptured?: (artifact: CapturedArtifact) => void | Promise<void>;
    onRefused?: (relative: string, why: string) => void;
    /** ArtifactCaptureOptions.maxBytes: the cap on what the task's captured files take (none when unset). */
    maxBytes?: number;
  };
  callbacks: TaskCallbacks;
  signal?: AbortSignal;
  /** TaskSpec.scratchDir: where the task's private folder is made (the system's temp folder when unset). */
  scratchDir?: string;
  /** Runs the task's timeout (the system's clock unless set). */
  clock?: Clock;
  /**
   * Called when Docker says the image is gone: returns a new image to run instead (once).
   * Without it, the failure is the outcome.
   */
  rebuildImage?: () => Promise<string>;
}

export interface ProjectTaskResult {
  outcome: TaskOutcome;
  spec: TaskSpec;
  /** The image that ran (a new one when it was rebuilt). */
  imageId: string;
  order: ArtifactOrder;
  /** Every captured file, in upload order. */
  artifacts: CapturedArtifact[];
}

/** The order a project's artifacts are taken in: the manifest's for `.cycleswap/`, FIFO for OCI projects. */
export function artifactOrder(project: Project): ArtifactOrder {
  return project.format === 'cycleswap' ? project.manifest.job.artifact_upload_order : 'FIFO';
}

/**
 * Runs one task of a project, the same way for `cycle project test` and the server's worker:
 * the spec per format, the source copy, env, mounts and GPUs, the runner protocol, the result and
 * the artifacts. Callers keep their own concerns (UI and run records; rows and events).
 */
export async function runProjectTask(request: ProjectTaskRequest): Promise<ProjectTaskResult> {
  return (await prepareProjectTask(request)).run();
}

/** A project task made ready (runProjectTask in two steps): its folders, restored artifacts and container. */
export interface PreparedProjectTask {
  /** Runs it (once), as runProjectTask does. */
  run(): Promise<ProjectTaskResult>;
  /** Gives it up unrun: its container and live folder are removed, nothing captured. */
  discard(): Promise<void>;
}

/**
 * All runProjectTask does before the task's command may run: the live /artifacts folder, the
 * task's earlier artifacts put back, its folder and its container (prepareTask; `startAhead`
 * as there). A worker prepares its next task so while its slots are busy.
 */
export async function prepareProjectTask(request: ProjectTaskRequest, options: { startAhead?: boolean } = {}): Promise<PreparedProjectTask> {
  const { project, docker } = request;
  const sourceFiles = project.format === 'cycleswap' ? (request.sourceFiles ?? toTarEntries((await selectFiles(project.root)).entries)) : [];
  let spec = taskSpec({
    project,
    imageId: request.imageId,
    name: request.name,
    labels: request.labels,
    payload: request.payload,
    artifactsDir: request.artifacts.liveDir,
    mounts: request.mounts,
    gpus: request.gpus,
    container: request.container,
    source: () => tarStream(sourceFiles),
    ...(request.runnerCommand ? { runnerCommand: request.runnerCommand } : {}),
    ...(request.timeoutMs !== undefined ? { timeoutMs: request.timeoutMs } : {}),
  });
  if (request.scratchDir !== undefined) spec = { ...spec, scratchDir: request.scratchDir };
  const order = artifactOrder(project);
  const { liveDir, storeDir, resumeFrom, onCaptured, onRefused, maxBytes } = request.artifacts;
  await fs.rm(liveDir, { recursive: true, force: true });
  await fs.mkdir(liveDir, { recursive: true });
  await fs.mkdir(storeDir, { recursive: true });
  const capture = new ArtifactCapture({
    liveDir,
    storeDir,
    order,
    ...(onCaptured ? { onCaptured } : {}),
    ...(onRefused ? { onRefused } : {}),
    ...(maxBytes !== undefined ? { maxBytes } : {}),
  });
  const services = project.format === 'computalot' ? project.manifest.runtime.services : [];
  // A cancel stops the capture at once too (a job may have written thousands of files): nothing of the task runs on.
  const onAbort = (): void => void capture.abort();
  request.signal?.addEventListener('abort', onAbort, { once: true });
  const cleanUp = async (): Promise<void> => {
    request.signal?.removeEventListener('abort', onAbort);
    await capture.stop().catch(() => undefined);
    await fs.rm(liveDir, { recursive: true, force: true }).catch(() => undefined);
  };
  // The services' supervisor speaks on stderr: its failure marker is read, not logged.
  const serviceLog = services.length ? new ServiceLog(services, (text) => request.callbacks.stderr(Buffer.from(text))) : undefined;
  const callbacks: TaskCallbacks = serviceLog ? { ...request.callbacks, stderr: (chunk) => serviceLog.push(chunk) } : request.callbacks;
  let first: PreparedTask;
  try {
    if (resumeFrom !== undefined) await capture.resumeFrom(resumeFrom);
    first = await prepareTask(docker, spec, callbacks, request.signal, request.clock, options);
  } catch (error) {
    await cleanUp();
    throw error;
  }
  let settled = false;
  const explain = (outcome: TaskOutcome): TaskOutcome => {
    if (!serviceLog) return outcome;
    serviceLog.flush();
    if (outcome.dockerFailure?.kind === 'command-not-found') {
      // The container's command is the supervisor's shell: the image has none. A fault of the image, not of Docker.
      const { dockerFailure: _dockerFailure, ...rest } = outcome;
      return { ...rest, reason: noShellReason(outcome.dockerFailure.daemonMessage) };
    }
    return serviceLog.explain(outcome);
  };
  const run = async (): Promise<ProjectTaskResult> => {
    if (settled) throw new Error(`task ${request.name} was already run or given up`);
    settled = true;
    try {
      capture.start();
      let outcome = explain(await first.run());
      if (request.rebuildImage && outcome.dockerFailure?.kind === 'image-missing') {
        spec = { ...spec, image: await request.rebuildImage() };
        outcome = explain(await runTask(docker, spec, callbacks, request.signal, request.clock));
      }
      if (request.signal?.aborted) {
        await capture.abort();
        return { outcome, spec, imageId: spec.image, order, artifacts: capture.list() };
      }
      // Files the job left unreadable to this user are given back before the last sweep.
      await reclaimOutputs(docker, { image: spec.image, dir: liveDir, name: `${request.name}-reclaim`, runtime: request.container.confinement.runtime });
      await capture.stop();
      return { outcome, spec, imageId: spec.image, order, artifacts: capture.list() };
    } finally {
      await cleanUp();
    }
  };
  const discard = async (): Promise<void> => {
    if (settled) return;
    settled = true;
    await capture.abort();
    await first.discard().catch(() => undefined);
    await cleanUp();
  };
  return { run, discard };
}
