import path from 'node:path';
import { CycleError, ExitCode } from '../errors.js';
import type { DockerDriver } from '../docker/driver.js';
import type { JobContainer } from './limits.js';
import { DockerBuildError, type DockerFailure } from '../docker/errors.js';
import type { ComputalotProject } from '../project/load.js';
import { computalotBuildHash, ociBuildContext } from '../build-hash/oci-hash.js';
import { tarStream } from '../pack/tar.js';
import { toTarEntries } from '../pack/select.js';
import { LABELS, repositoryComponent, shortHash } from './images.js';
import { applyInitCommands } from './oci-init.js';
import { shellQuote } from '../util/shell.js';
import { checkBuildFlags, type BuildMode, type ImageBuildOptions, type ImageBuildResult } from './cycleswap-build.js';

/**
 * An OCI project's prepared image: `docker build` of its context (what an upload ships,
 * honouring .dockerignore), then its `runtime.init.commands` in order on top (oci-init.ts).
 * Unchanged build hash (context, build settings, init commands) → reused, init not run again;
 * --rebuild → built again with Docker's layer cache; --clean → without it. Only the prepared
 * image carries the build-hash label and is recorded, so a failed init runs again next time.
 */
export async function ensureOciImage(project: ComputalotProject, name: string, options: ImageBuildOptions): Promise<ImageBuildResult> {
  checkBuildFlags(options.flags);
  const { docker, store, flags } = options;
  const { hash } = await computalotBuildHash(project, { useCache: options.useStatCache !== false });
  const tag = `${options.repositoryPrefix}/${repositoryComponent(name)}:${shortHash(hash)}`;
  const last = await store.last();
  if (!flags.rebuild && !flags.clean) {
    if (last?.hash === hash) {
      const image = await docker.inspectImage(last.image.id);
      if (image) return { imageId: image.id, tag, hash, mode: 'reused', flattened: false, verified: true };
    }
    const [match] = await docker.listImages({ label: [`${LABELS.projectKey}=${options.projectKey}`, `${LABELS.buildHash}=${hash}`] });
    if (match) return { imageId: match.id, tag, hash, mode: 'reused', flattened: false, verified: true };
  }
  const mode: BuildMode = flags.clean ? 'clean' : flags.rebuild ? 'rebuild' : last ? 'incremental' : 'first';
  options.report(
    mode === 'clean'
      ? "building the image without Docker's cache (--clean)"
      : `building the image from the Dockerfile${mode === 'incremental' ? ' (the build context changed)' : ''}`,
  );
  const { build, runtime } = project.manifest;
  const initCommands = runtime.init?.commands ?? [];
  const entries = await ociBuildContext(project.root, build);
  const context = toTarEntries(entries);
  const labels = { [LABELS.project]: name, [LABELS.projectKey]: options.projectKey, [LABELS.base]: 'Dockerfile' };
  // With init commands, the Dockerfile's image is a step on the way: a tag of its own, no build hash.
  const builtTag = initCommands.length > 0 ? `${tag}-dockerfile` : tag;
  let imageId: string;
  try {
    ({ imageId } = await docker.build({
      context: { kind: 'tar', open: () => tarStream(context) },
      // The tar holds the context folder's files: the Dockerfile path is taken inside it.
      dockerfile: path.posix.relative(path.posix.normalize(build.context), path.posix.normalize(build.dockerfile)),
      ...(build.target !== undefined ? { target: build.target } : {}),
      buildArgs: build.args,
      tags: [builtTag],
      labels: initCommands.length > 0 ? labels : { ...labels, [LABELS.buildHash]: hash },
      noCache: flags.clean,
      onOutput: options.onOutput,
      ...(options.signal ? { signal: options.signal } : {}),
    }));
  } catch (error) {
    if (error instanceof DockerBuildError) {
      throw new CycleError({
        message: `docker build failed${error.stepExitCode !== undefined ? ` (a step exited with code ${error.stepExitCode})` : ''}`,
        hint: 'fix the Dockerfile and run again',
        exitCode: ExitCode.jobFailed,
        details: ['last lines of the build:', ...error.tail.slice(-15).map((line) => `  ${line}`)],
      });
    }
    throw error;
  }
  if (initCommands.length > 0) {
    try {
      const built = await docker.inspectImage(imageId);
      if (!built) throw new CycleError({ message: `the image docker build just made (${builtTag}) is gone from Docker`, hint: 'run again' });
      imageId = await applyInitCommands({
        docker,
        from: builtTag,
        built,
        commands: initCommands,
        workdir: runtime.workdir,
        finalTag: tag,
        finalLabels: { [LABELS.buildHash]: hash },
        stepTag: (index) => `${tag}-init-${index}`,
        report: options.report,
        onOutput: options.onOutput,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } finally {
      await docker.removeImage(builtTag).catch(() => undefined);
    }
  }
  await store.save({ hash, image: { id: imageId, tag }, base: 'Dockerfile', builtAt: options.now().toISOString() });
  if (last && last.image.tag !== tag && last.image.id !== imageId) await docker.removeImage(last.image.tag).catch(() => undefined);
  return { imageId, tag, hash, mode, flattened: false, verified: true };
}

export interface CheckResult {
  kind: 'executable' | 'file' | 'command';
  name: string;
  ok: boolean;
  detail?: string;
}

/**
 * The manifest's validation checks, run inside the built image as the platform runs them
 * when it prepares a worker: executables on PATH, files that exist, commands that exit 0.
 * Each check container has the job's lock-down and limits (`container`, from jobContainer()).
 */
export async function runValidationChecks(
  project: ComputalotProject,
  imageId: string,
  docker: DockerDriver,
  containerName: (suffix: string) => string,
  container: JobContainer,
  signal?: AbortSignal,
): Promise<CheckResult[]> {
  const validation = project.manifest.validation;
  if (!validation) return [];
  const workdir = project.manifest.runtime.workdir;
  const results: CheckResult[] = [];
  if (validation.executables.length > 0 || validation.files.length > 0) {
    const script = [
      ...validation.executables.map(
        (exe) =>
          `if command -v ${shellQuote(exe)} >/dev/null 2>&1; then printf 'ok executable %s\\n' ${shellQuote(exe)}; else printf 'fail executable %s\\n' ${shellQuote(exe)}; fi`,
      ),
      ...validation.files.map(
        (file) => `if [ -e ${shellQuote(file)} ]; then printf 'ok file %s\\n' ${shellQuote(file)}; else printf 'fail file %s\\n' ${shellQuote(file)}; fi`,
      ),
    ].join('\n');
    const output = await capture(
      docker,
      container,
      { image: imageId, name: containerName('checks'), entrypoint: '/bin/sh', command: ['-c', script], ...(workdir ? { workdir } : {}) },
      signal,
    );
    const lines = output.stdout.split('\n');
    for (const exe of validation.executables) results.push(checkLine(lines, 'executable', exe, output, 'not found on PATH'));
    for (const file of validation.files) results.push(checkLine(lines, 'file', file, output, 'does not exist'));
  }
  for (const [index, command] of validation.commands.entries()) {
    // The label names the check (a check without one is labelled with its command).
    const name = command.label;
    const result = await capture(
      docker,
      container,
      {
        image: imageId,
        name: containerName(`check-${index}`),
        entrypoint: command.command[0]!,
        command: command.command.slice(1),
        ...(workdir ? { workdir } : {}),
      },
      signal,
      (command.timeout_s ?? 120) * 1000,
    );
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
    results.push(
      result.exitCode === 0
        ? { kind: 'command', name, ok: true }
        : {
            kind: 'command',
            name,
            ok: false,
            detail: result.timedOut
              ? `timed out after ${command.timeout_s ?? 120}s`
              : result.dockerFailure
                ? result.dockerFailure.daemonMessage
                : `exited with code ${result.exitCode}${tail ? `: ${tail}` : ''}`,
          },
    );
  }
  return results;
}

/** The error for failed validation checks (undefined when all passed): each named, with the fix. */
export function describeFailedChecks(checks: readonly CheckResult[]): CycleError | undefined {
  const failed = checks.filter((c) => !c.ok);
  if (failed.length === 0) return undefined;
  return new CycleError({
    message: `${failed.length} of ${checks.length} validation check${checks.length === 1 ? '' : 's'} failed in the built image`,
    hint: 'install what is missing in the Dockerfile, or fix "validation" in computalot.project.json',
    exitCode: ExitCode.invalidProject,
    details: failed.map((c) => `${c.kind} ${c.name}: ${c.detail ?? 'failed'}`),
  });
}

function checkLine(
  lines: string[],
  kind: 'executable' | 'file',
  name: string,
  output: { exitCode: number; stderr: string; dockerFailure?: DockerFailure },
  missing: string,
): CheckResult {
  if (lines.includes(`ok ${kind} ${name}`)) return { kind, name, ok: true };
  if (lines.includes(`fail ${kind} ${name}`)) return { kind, name, ok: false, detail: missing };
  const reason = output.dockerFailure?.daemonMessage ?? output.stderr.trim().split('\n').pop() ?? `exit ${output.exitCode}`;
  return { kind, name, ok: false, detail: `could not check (the image needs /bin/sh for executable and file checks): ${reason}` };
}

async function capture(
  docker: DockerDriver,
  container: JobContainer,
  spec: { image: string; name: string; entrypoint: string; command: string[]; workdir?: string },
  signal?: AbortSignal,
  timeoutMs = 120_000,
): Promise<{ exitCode: number; stdout: string; stderr: string; dockerFailure?: DockerFailure; timedOut: boolean }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void docker.removeContainer(spec.name);
  }, timeoutMs);
  const onAbort = (): void => void docker.removeContainer(spec.name);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const exit = await docker.runContainer(
      { ...spec, env: {}, mounts: [], labels: { [LABELS.run]: spec.name }, confinement: container.confinement, network: container.network },
      { stdout: (c) => out.push(c), stderr: (c) => err.push(c) },
      signal,
    );
    return {
      exitCode: exit.exitCode,
      stdout: Buffer.concat(out).toString(),
      stderr: Buffer.concat(err).toString(),
      ...(exit.dockerFailure ? { dockerFailure: exit.dockerFailure } : {}),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
