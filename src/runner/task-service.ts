import type { DockerDriver, Mount } from '../docker/driver.js';
import type { Project } from '../project/load.js';
import type { ArtifactOrder } from '../project/cycleswap.js';
import { selectFiles, toTarEntries } from '../pack/select.js';
import { tarStream, type TarEntry } from '../pack/tar.js';
import { taskSpec } from './spec.js';
import { reclaimOutputs, runTask, type TaskCallbacks, type TaskOutcome, type TaskSpec } from './task.js';
import { listOutputs, type OutputFile } from './outputs.js';

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
  gpus: boolean;
  /**
   * `.cycleswap/` projects: the source files copied into /app. When absent they are selected
   * from the project root (with its ignore rules).
   */
  sourceFiles?: readonly TarEntry[];
  runnerCommand?: string[];
  timeoutMs?: number;
  /** Host folder mounted at /outputs. */
  outputsDir: string;
  callbacks: TaskCallbacks;
  signal?: AbortSignal;
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
  artifacts: OutputFile[];
}

/** The order a project's artifacts are taken in: the manifest's for `.cycleswap/`, FIFO for OCI projects. */
export function artifactOrder(project: Project): ArtifactOrder {
  return project.format === 'cycleswap' ? project.manifest.job.artifact_upload_order : 'FIFO';
}

/**
 * Runs one task of a project, the same way for `cycle project test` and the server's scheduler:
 * the spec per format, the source copy, env, mounts and GPUs, the runner protocol, the result and
 * the artifacts. Callers keep their own concerns (UI and run records; rows and events).
 */
export async function runProjectTask(request: ProjectTaskRequest): Promise<ProjectTaskResult> {
  const { project, docker } = request;
  const sourceFiles = project.format === 'cycleswap' ? (request.sourceFiles ?? toTarEntries((await selectFiles(project.root)).entries)) : [];
  let spec = taskSpec({
    project,
    imageId: request.imageId,
    name: request.name,
    labels: request.labels,
    payload: request.payload,
    outputsDir: request.outputsDir,
    mounts: request.mounts,
    gpus: request.gpus,
    source: () => tarStream(sourceFiles),
    ...(request.runnerCommand ? { runnerCommand: request.runnerCommand } : {}),
    ...(request.timeoutMs !== undefined ? { timeoutMs: request.timeoutMs } : {}),
  });
  let outcome = await runTask(docker, spec, request.callbacks, request.signal);
  if (request.rebuildImage && outcome.dockerFailure?.kind === 'image-missing') {
    spec = { ...spec, image: await request.rebuildImage() };
    outcome = await runTask(docker, spec, request.callbacks, request.signal);
  }
  await reclaimOutputs(docker, spec.image, request.outputsDir, `${request.name}-reclaim`);
  const order = artifactOrder(project);
  return { outcome, spec, imageId: spec.image, order, artifacts: await listOutputs(request.outputsDir, order) };
}
