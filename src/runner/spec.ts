import type { Readable } from 'node:stream';
import type { Mount } from '../docker/driver.js';
import type { Project } from '../project/load.js';
import { RUN_SCRIPT_PATH } from '../project/paths.js';
import { LABELS, repositoryComponent } from './images.js';
import type { TaskSpec } from './task.js';
import type { JobContainer } from './limits.js';
import { withServices } from './services.js';

export interface TaskSpecInput {
  project: Project;
  imageId: string;
  /** Container name (unique). */
  name: string;
  labels: Record<string, string>;
  payload: unknown;
  artifactsDir: string;
  mounts: Mount[];
  gpus: boolean | readonly number[];
  /** Lock-down, limits and network (jobContainer()). */
  container: JobContainer;
  /** `.cycleswap/` projects: the source to copy into /app. */
  source: () => Readable;
  /** A runner command instead of `bash .cycleswap/run.sh` / the OCI entrypoint. */
  runnerCommand?: string[];
  timeoutMs?: number;
}

/**
 * How a task of a project runs, the same in `cycle project test` and the local backend:
 * `.cycleswap/` → the source copied to /app and `bash .cycleswap/run.sh` (or the runner
 * command) with the manifest's env_vars; OCI → the entrypoint in the runtime's workdir, with
 * cache mounts as named volumes, behind the services' supervisor when `runtime.services` has any
 * (services.ts).
 */
export function taskSpec(input: TaskSpecInput): TaskSpec {
  const { project } = input;
  const common = {
    image: input.imageId,
    name: input.name,
    labels: { ...input.labels, [LABELS.project]: project.name ?? '' },
    payload: input.payload,
    artifactsDir: input.artifactsDir,
    gpus: input.gpus,
    confinement: input.container.confinement,
    network: input.container.network,
    ...(input.timeoutMs !== undefined ? { timeoutMs: input.timeoutMs } : {}),
  };
  if (project.format === 'cycleswap') {
    return {
      ...common,
      command: input.runnerCommand ?? ['bash', RUN_SCRIPT_PATH],
      workdir: '/app',
      env: project.manifest.job.env_vars,
      source: input.source,
      mounts: input.mounts,
      // run.sh may write a result; a runner command speaks the runner protocol.
      resultRequired: input.runnerCommand !== undefined,
    };
  }
  const { workdir, services } = project.manifest.runtime;
  const command = input.runnerCommand ?? project.manifest.entrypoint.command;
  const run = services.length > 0 ? withServices(command, services, workdir) : { entrypoint: command[0]!, command: command.slice(1) };
  const cacheMounts: Mount[] = (project.manifest.cache_mounts ?? []).map((mount, index) => ({
    type: 'volume',
    source: `cycle-cache-${repositoryComponent(project.name ?? 'project')}-${mount.name ?? index}`,
    target: mount.path,
  }));
  return {
    ...common,
    command: run.command,
    entrypoint: run.entrypoint,
    workdir,
    env: project.manifest.entrypoint.env ?? {},
    mounts: [...input.mounts, ...cacheMounts],
    resultRequired: true,
  };
}
