import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { loadProject, type Project } from '../../project/load.js';
import { RUN_SCRIPT_PATH } from '../../project/paths.js';
import { ensureStateDir, statePaths } from '../../project/state.js';
import { checkBuildFlags, DEFAULT_MAX_LAYERS, ensureCycleswapImage, type ImageBuildOptions, type ImageBuildResult } from '../../runner/cycleswap-build.js';
import { localBuildStore } from '../../runner/build-store.js';
import { localProjectKey, repositoryComponent, LABELS } from '../../runner/images.js';
import type { TaskOutcome, TaskSpec } from '../../runner/task.js';
import { runProjectTask } from '../../runner/task-service.js';
import { resolveVolumes } from '../../runner/volumes.js';
import { gvisorRegistered, jobContainer, type JobContainer } from '../../runner/limits.js';
import { readJsonArgument } from '../args.js';
import type { DockerDriver } from '../../docker/driver.js';
import { presentBuildLine } from '../../docker/build-output.js';
import { formatBytes, formatDuration } from '../../ui/ui.js';
import { toProjectName } from '../../project/names.js';
import type { Service } from '../../project/computalot.js';
import type { TestOptions } from './test.command.js';

export async function run(options: TestOptions, ctx: Context): Promise<number> {
  checkBuildFlags(options);
  const project = await loadProject(ctx.cwd);
  const payload = options.payload !== undefined ? await readJsonArgument('--payload', options.payload, { cwd: ctx.cwd, stdin: ctx.io.stdin }) : {};
  for (const d of project.diagnostics) ctx.ui.warn(`${d.file}:${d.line}:${d.column}: ${d.field ? `${d.field}: ` : ''}${d.message}`);
  const name = project.name ?? toProjectName(path.basename(project.root));
  const docker = await ctx.docker();
  const { ui } = ctx;
  const event = (doc: Record<string, unknown>): void => {
    if (options.json) ui.jsonLine(doc);
  };

  const gpus = project.format === 'cycleswap' && project.manifest.job.cuda !== undefined ? await checkGpu(project.manifest.job.cuda, docker, ctx) : false;
  const mounts = project.format === 'cycleswap' ? await resolveVolumes(project.root, project.manifest.main.volumes, options.volume, ctx.cwd) : [];
  if (project.format === 'computalot' && options.volume.length > 0) {
    throw new CycleError({ message: '--volume is for .cycleswap/ projects (their [main].volumes)', exitCode: ExitCode.usage });
  }
  // Before the build: a bad CYCLE_MEMORY_LIMIT is told at once.
  const sandbox = project.format === 'computalot' ? project.manifest.runtime.sandbox : undefined;
  const container = jobContainer({
    sandbox,
    skipLimits: options.skipLimits,
    gvisorRegistered: sandbox === 'gvisor' && (await gvisorRegistered(docker)),
    env: ctx.env,
  });
  for (const warning of container.warnings) ui.warn(warning);

  const buildOptions: ImageBuildOptions = {
    docker,
    store: localBuildStore(project.root),
    projectKey: localProjectKey(project.root),
    repositoryPrefix: 'cycle',
    flags: { rebuild: options.rebuild, clean: options.clean },
    maxLayers: Number(ctx.env.CYCLE_MAX_LAYERS) || DEFAULT_MAX_LAYERS,
    report: (message) => {
      ui.info(ui.c.bold(message));
      event({ event: 'build', message });
    },
    onOutput: (line) => {
      const shown = ui.options.debug ? line : presentBuildLine(line);
      if (shown !== undefined && !ui.options.quiet) ui.rawErr(ui.c.dim(shown) + '\n');
    },
    signal: ctx.signal,
    now: () => new Date(ctx.clock.now()),
  };
  const ensureImage = (verify: boolean): Promise<ImageBuildResult> =>
    project.format === 'cycleswap'
      ? ensureCycleswapImage(project, { ...buildOptions, verify })
      : import('../../runner/oci-build.js').then(({ ensureOciImage }) => ensureOciImage(project, name, buildOptions));
  let image = await ensureImage(false);
  if (image.mode === 'reused') ui.info(`image ${image.tag} is up to date (build hash ${image.hash.slice(0, 12)}): no build`);
  else ui.success(`built ${image.tag}${image.flattened ? ' (flattened first)' : ''}`);
  event({ event: 'image', tag: image.tag, id: image.imageId, hash: image.hash, mode: image.mode });

  const runId = `${new Date(ctx.clock.now()).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}-${randomBytes(2).toString('hex')}`;
  const containerName = (suffix: string): string => `cycle-${repositoryComponent(name)}-${runId}-${suffix}`;

  if (project.format === 'computalot') await validateImage(project, image, docker, containerName, container, ctx, event);

  await ensureStateDir(project.root);
  const runDir = path.join(statePaths.runs(project.root), runId);
  const resumeFrom = options.resume !== undefined ? await previousRun(project.root, options.resume, runId) : undefined;
  if (resumeFrom) ui.info(`resuming from run ${resumeFrom.id}: its ${resumeFrom.files} artifact${resumeFrom.files === 1 ? '' : 's'} put back in /artifacts`);

  const command = project.format === 'cycleswap' ? `bash ${RUN_SCRIPT_PATH}` : project.manifest.entrypoint.command.slice(1).join(' ');
  ui.info(ui.c.bold(`running ${command} in ${image.tag}`));
  if (project.format === 'computalot') reportServices(project.manifest.runtime.services, ctx);
  let lastProgress = '';
  const { outcome, spec, artifacts, order } = await runProjectTask({
    docker,
    project,
    imageId: image.imageId,
    name: containerName('task'),
    labels: { [LABELS.projectKey]: buildOptions.projectKey },
    payload,
    mounts,
    gpus,
    container,
    artifacts: {
      liveDir: path.join(runDir, 'live'),
      storeDir: path.join(runDir, 'artifacts'),
      ...(resumeFrom ? { resumeFrom: resumeFrom.artifactsDir } : {}),
      onCaptured: (artifact) => {
        if (options.json) event({ event: 'artifact', path: artifact.path, size: artifact.size });
        else ui.info(`${ui.c.cyan('artifact')} ${artifact.path}  ${ui.c.dim(formatBytes(artifact.size))}`);
      },
      onRefused: (relative, why) => ui.warn(`/artifacts/${relative} not captured: ${why}`),
    },
    callbacks: {
      stdout: (text) => (options.json ? ui.rawErr(text) : ui.rawOut(text)),
      stderr: (chunk) => ui.rawErr(chunk),
      progress: ({ data, raw }) => {
        if (options.json) event({ event: 'progress', data });
        else if (ui.options.interactive) ui.live(`${ui.c.cyan('progress')} ${formatProgress(data)}`);
        else ui.info(`progress: ${raw}`);
        lastProgress = raw;
      },
    },
    signal: ctx.signal,
    // The recorded image was deleted (docker image prune…): build it again, then run.
    ...(image.verified
      ? {}
      : {
          rebuildImage: async () => {
            ui.info('the recorded build image is gone from Docker: building it again');
            image = await ensureImage(true);
            return image.imageId;
          },
        }),
  });
  ui.clearLive();
  const record = {
    project: name,
    format: project.format,
    image: { tag: image.tag, id: image.imageId, buildHash: image.hash, build: image.mode },
    status: outcome.status,
    exitCode: outcome.exitCode,
    reason: outcome.reason ?? null,
    durationMs: outcome.durationMs,
    payload,
    result: outcome.result ?? null,
    lastProgress: lastProgress || null,
    artifactOrder: order,
    artifacts: artifacts.map((a) => ({ path: a.path, size: a.size })),
    runDir: path.relative(ctx.cwd, runDir) || '.',
  };
  await fs.writeFile(path.join(runDir, 'run.json'), JSON.stringify(record, null, 2) + '\n');
  if (artifacts.length === 0) await fs.rm(runDir, { recursive: true, force: true }).catch(() => undefined);

  if (options.json) event({ event: 'done', ...record });
  else if (outcome.result !== undefined) ui.out(JSON.stringify(outcome.result, null, 2));
  if (artifacts.length > 0) {
    ui.info(`${artifacts.length} artifact${artifacts.length === 1 ? '' : 's'} (${order}) in ${record.runDir}/artifacts:`);
    for (const a of artifacts) ui.info(`  ${a.path}  ${ui.c.dim(formatBytes(a.size))}`);
  }
  return finish(outcome, spec, ctx);
}

/**
 * The run whose artifacts `--resume [RUN]` puts back: RUN is a run id (a folder of .cycle/runs),
 * "latest" (the default) the newest run that kept artifacts.
 */
async function previousRun(root: string, wanted: string, current: string): Promise<{ id: string; artifactsDir: string; files: number }> {
  const runs = statePaths.runs(root);
  const { listFiles } = await import('../../runner/artifacts.js');
  const withArtifacts: string[] = [];
  for (const id of (await fs.readdir(runs).catch(() => [])).sort()) {
    if (id === current || id.startsWith('.')) continue;
    if ((await listFiles(path.join(runs, id, 'artifacts'))).length > 0) withArtifacts.push(id);
  }
  const id = wanted === 'latest' ? withArtifacts.at(-1) : withArtifacts.find((run) => run === wanted);
  if (id === undefined) {
    throw new CycleError({
      message:
        wanted === 'latest'
          ? '--resume: no earlier run of this project kept artifacts'
          : `--resume ${wanted}: no run "${wanted}" with artifacts in .cycle/runs`,
      hint: withArtifacts.length ? `runs with artifacts: ${withArtifacts.slice(-5).join(', ')}` : 'run `cycle project test` once without --resume',
      exitCode: ExitCode.usage,
    });
  }
  const artifactsDir = path.join(runs, id, 'artifacts');
  return { id, artifactsDir, files: (await listFiles(artifactsDir)).length };
}

async function finish(outcome: TaskOutcome, spec: TaskSpec, ctx: Context): Promise<number> {
  const { ui } = ctx;
  switch (outcome.status) {
    case 'succeeded':
      ui.success(`finished in ${formatDuration(outcome.durationMs)}`);
      return ExitCode.ok;
    case 'interrupted':
      throw new CycleError({ message: 'interrupted: the container was stopped and removed', exitCode: ExitCode.interrupted });
    default: {
      const failure = outcome.dockerFailure;
      if (failure) {
        const { driverNeeded, NO_CONTAINER_RUNTIME_HINT } = await import('../../docker/gpu.js');
        if (failure.kind === 'no-gpu-runtime')
          throw new CycleError({
            message: 'Docker cannot give GPUs to containers (no NVIDIA container runtime)',
            hint: NO_CONTAINER_RUNTIME_HINT,
            exitCode: ExitCode.failure,
          });
        if (failure.kind === 'cuda-requirement')
          throw new CycleError({
            message: `the image requires CUDA ${failure.requiredCuda}, newer than the driver supports`,
            hint: `upgrade the NVIDIA driver ${driverNeeded(failure.requiredCuda)}`,
            exitCode: ExitCode.failure,
          });
        throw new CycleError({ message: outcome.reason ?? 'Docker could not run the task', exitCode: ExitCode.network });
      }
      const what = spec.command.includes('.cycleswap/run.sh') ? 'run.sh' : 'the job';
      throw new CycleError({ message: `${what} failed: ${outcome.reason ?? `exit ${outcome.exitCode}`}`, exitCode: ExitCode.jobFailed });
    }
  }
}

async function validateImage(
  project: Extract<Project, { format: 'computalot' }>,
  image: ImageBuildResult,
  docker: DockerDriver,
  containerName: (suffix: string) => string,
  container: JobContainer,
  ctx: Context,
  event: (doc: Record<string, unknown>) => void,
): Promise<void> {
  const { runValidationChecks, describeFailedChecks } = await import('../../runner/oci-build.js');
  const checks = await runValidationChecks(project, image.imageId, docker, containerName, container, ctx.signal);
  if (checks.length === 0) return;
  for (const check of checks) {
    const line = `${check.ok ? ctx.ui.c.green('✓') : ctx.ui.c.red('✗')} ${check.kind} ${check.name}${check.detail ? `: ${check.detail}` : ''}`;
    ctx.ui.info(line);
  }
  event({ event: 'validation', checks });
  const failure = describeFailedChecks(checks);
  if (failure) throw failure;
}

async function checkGpu(cuda: string, docker: DockerDriver, ctx: Context): Promise<boolean> {
  const { checkCudaRequirement, dockerGpuSupport, probeNvidia, NO_CONTAINER_RUNTIME_HINT } = await import('../../docker/gpu.js');
  const check = checkCudaRequirement(cuda, await probeNvidia(ctx.exec));
  if (!check.ok) throw new CycleError({ message: check.message, hint: check.hint, exitCode: ExitCode.failure });
  const info = await docker.info();
  if ((await dockerGpuSupport(info, ctx.exec)) === undefined) {
    throw new CycleError({
      message: `[job].cuda = "${cuda}" needs GPUs in the container, but Docker has no NVIDIA container runtime`,
      hint: NO_CONTAINER_RUNTIME_HINT,
      exitCode: ExitCode.failure,
    });
  }
  ctx.ui.info(`GPU: driver ${check.report.driverVersion} supports CUDA ${check.report.cudaVersion} (needs ${cuda})`);
  return true;
}

/** One line before the run: which services start first, and what scope "project" means here. */
function reportServices(services: readonly Service[], ctx: Context): void {
  if (services.length === 0) return;
  const names = (list: readonly Service[]): string => list.map((s) => s.name).join(', ');
  const projectScoped = services.filter((s) => s.scope === 'project');
  ctx.ui.info(
    `runtime.services start first, in the task's container, and must be healthy before the entrypoint runs: ${names(services)}` +
      (projectScoped.length > 0 ? ` (scope "project": ${names(projectScoped)} also start with each task here, as each local task has a fresh container)` : ''),
  );
}

function formatProgress(data: unknown): string {
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    return Object.entries(data as Record<string, unknown>)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join('  ');
  }
  return typeof data === 'string' ? data : JSON.stringify(data);
}
