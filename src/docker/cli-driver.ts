import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CycleError, ExitCode } from '../errors.js';
import { runProcess, type SpawnOptions, type SpawnResult } from '../util/process.js';
import { lineSplitter } from '../util/lines.js';
import { DOCKER_RUN_NOISE } from './build-output.js';
import {
  classifyDockerMessage,
  DockerBuildError,
  DockerError,
  toDockerError,
  dockerErrorFromOutput,
  dockerNotInstalled,
  type DockerFailure,
} from './errors.js';
import {
  dockerNetwork,
  imageDetails,
  type BuildRequest,
  type Confinement,
  type ContainerExit,
  type ContainerIO,
  type ContainerSpec,
  type DockerDriver,
  type DockerInfo,
  type ImageDetails,
  type ImageSummary,
} from './driver.js';
import type { Env } from '../ui/streams.js';

export interface CliDockerDriverOptions {
  env: Env;
  /** `CYCLE_DOCKER_BIN` or `docker` */
  binary?: string;
  debug?: (line: string) => void;
}

/**
 * Docker through its CLI: works with any daemon, context or DOCKER_HOST the user's `docker`
 * works with. Its failures are read from the docker CLI's exit code and stderr (its only
 * channel), classified in one place (classifyDockerMessage).
 */
export class CliDockerDriver implements DockerDriver {
  private readonly binary: string;
  private builderCache: Promise<'buildkit' | 'legacy'> | undefined;

  constructor(private readonly options: CliDockerDriverOptions) {
    this.binary = options.binary ?? options.env.CYCLE_DOCKER_BIN ?? 'docker';
  }

  private async docker(args: string[], options: SpawnOptions = {}): Promise<SpawnResult> {
    this.options.debug?.(`$ ${this.binary} ${args.join(' ')}`);
    const result = await runProcess(this.binary, args, { env: { ...this.options.env }, ...options });
    this.options.debug?.(`  exit ${result.exitCode ?? result.signal}`);
    if (result.spawnError?.code === 'ENOENT') throw dockerNotInstalled(this.binary);
    if (result.spawnError)
      throw new DockerError(
        { kind: 'request-failed', daemonMessage: result.spawnError.message },
        { message: `cannot run ${this.binary}: ${result.spawnError.message}` },
      );
    return result;
  }

  /** Runs a docker command that must succeed; Docker's own message becomes the error. */
  private async must(args: string[], what: string): Promise<string> {
    const result = await this.docker(args);
    if (result.exitCode !== 0) throw dockerErrorFromOutput(what, result.stderr || result.stdout);
    return result.stdout;
  }

  async info(): Promise<DockerInfo> {
    const version = await this.docker(['version', '--format', '{{json .}}']);
    let parsed: { Client?: { Version?: string }; Server?: { Version?: string } | null } = {};
    try {
      parsed = JSON.parse(version.stdout.trim().split('\n')[0] ?? '{}');
    } catch {
      parsed = {};
    }
    if (version.exitCode !== 0 || !parsed.Server?.Version) throw dockerErrorFromOutput('reach the Docker daemon', version.stderr || version.stdout);
    const info = await this.docker(['info', '--format', '{{json .}}']);
    let details: { Runtimes?: Record<string, unknown>; CDISpecDirs?: string[]; OperatingSystem?: string; Architecture?: string } = {};
    try {
      details = JSON.parse(info.stdout.trim().split('\n')[0] ?? '{}');
    } catch {
      details = {};
    }
    return {
      serverVersion: parsed.Server.Version,
      clientVersion: parsed.Client?.Version ?? 'unknown',
      builder: await this.builder(),
      runtimes: Object.keys(details.Runtimes ?? {}),
      cdiSpecDirs: details.CDISpecDirs ?? [],
      operatingSystem: details.OperatingSystem ?? '',
      architecture: details.Architecture ?? '',
      transport: 'the docker CLI',
    };
  }

  /**
   * BuildKit when DOCKER_BUILDKIT says so, or when the buildx plugin is there (what
   * `docker build` then uses by default); otherwise the legacy builder.
   */
  builder(): Promise<'buildkit' | 'legacy'> {
    this.builderCache ??= (async () => {
      const flag = this.options.env.DOCKER_BUILDKIT;
      if (flag !== undefined && flag !== '') return flag === '0' || flag.toLowerCase() === 'false' ? 'legacy' : 'buildkit';
      const buildx = await this.docker(['buildx', 'version']).catch(() => ({ exitCode: 1 }));
      return buildx.exitCode === 0 ? 'buildkit' : 'legacy';
    })();
    return this.builderCache;
  }

  async build(request: BuildRequest): Promise<{ imageId: string }> {
    const builder = await this.builder();
    const tempDir = await fs.mkdtemp(path.join(os.tmpdir(), 'cycle-build-'));
    const iidFile = path.join(tempDir, 'iid');
    // --no-cache: cycle decides when to build; a cached RUN step would skip build.sh.
    const args = ['build', '--iidfile', iidFile, '--force-rm', '--pull=false'];
    if (request.noCache !== false) args.push('--no-cache');
    if (builder === 'buildkit') args.push('--progress=plain');
    for (const tag of request.tags) args.push('--tag', tag);
    for (const [key, value] of Object.entries(request.labels)) args.push('--label', `${key}=${value}`);
    const network = dockerNetwork(this.options.env, request.network);
    if (network) args.push('--network', network);
    if (request.dockerfile) args.push('--file', request.dockerfile);
    if (request.target) args.push('--target', request.target);
    for (const [key, value] of Object.entries(request.buildArgs ?? {})) args.push('--build-arg', `${key}=${value}`);
    args.push(request.context.kind === 'tar' ? '-' : request.context.path);
    const tail: string[] = [];
    const split = lineSplitter((line) => {
      tail.push(line);
      if (tail.length > 200) tail.shift();
      request.onOutput?.(line);
    });
    try {
      const result = await this.docker(args, {
        env: { ...this.options.env, DOCKER_BUILDKIT: builder === 'buildkit' ? '1' : '0', BUILDKIT_PROGRESS: 'plain' },
        input: request.context.kind === 'tar' ? request.context.open() : undefined,
        capture: false,
        onStdout: (chunk) => split.push(chunk),
        onStderr: (chunk) => split.push(chunk),
        signal: request.signal,
      });
      split.flush();
      if (request.signal?.aborted) throw new CycleError({ message: 'build interrupted', exitCode: ExitCode.interrupted });
      if (result.exitCode !== 0) {
        const text = tail.join('\n');
        const failure = classifyDockerMessage(text);
        if (isDaemonFailure(failure)) throw toDockerError('reach the Docker daemon', failure);
        throw new DockerBuildError(`docker build failed (exit ${result.exitCode ?? result.signal})`, parseBuildStepExit(text), tail.slice(-40));
      }
      return { imageId: (await fs.readFile(iidFile, 'utf8')).trim() };
    } finally {
      await fs.rm(tempDir, { recursive: true, force: true });
    }
  }

  async inspectImage(ref: string): Promise<ImageDetails | undefined> {
    const result = await this.docker(['image', 'inspect', '--format', '{{json .}}', ref]);
    if (result.exitCode !== 0) {
      const error = dockerErrorFromOutput(`inspect image ${ref}`, result.stderr);
      if (error.kind === 'image-missing') return undefined;
      throw error;
    }
    return imageDetails(JSON.parse(result.stdout));
  }

  async listImages(filter: { label?: string[]; reference?: string }): Promise<ImageSummary[]> {
    const args = ['image', 'ls', '--no-trunc', '--format', '{{json .}}'];
    for (const label of filter.label ?? []) args.push('--filter', `label=${label}`);
    if (filter.reference) args.push('--filter', `reference=${filter.reference}`);
    return jsonLines<{ ID: string; Repository: string; Tag: string; CreatedAt: string }>(await this.must(args, 'list images')).map((row) => ({
      id: row.ID,
      repository: row.Repository,
      tag: row.Tag,
      createdAt: row.CreatedAt,
    }));
  }

  async tagImage(source: string, target: string): Promise<void> {
    await this.must(['tag', source, target], `tag ${source} as ${target}`);
  }

  async removeImage(ref: string, options: { force?: boolean } = {}): Promise<void> {
    const result = await this.docker(['image', 'rm', ...(options.force ? ['--force'] : []), ref]);
    if (result.exitCode === 0) return;
    const error = dockerErrorFromOutput(`remove image ${ref}`, result.stderr);
    if (error.kind !== 'image-missing') throw error;
  }

  async flattenImage(ref: string, tag: string, changes: string[]): Promise<string> {
    const id = (await this.must(['create', ref, 'true'], `create a container from ${ref}`)).trim();
    try {
      const { spawn } = await import('node:child_process');
      this.options.debug?.(`$ ${this.binary} export ${id} | ${this.binary} import … - ${tag}`);
      const exporter = spawn(this.binary, ['export', id], { env: { ...this.options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const importArgs = ['import', ...changes.flatMap((change) => ['--change', change]), '-', tag];
      const imported = this.docker(importArgs, { input: exporter.stdout });
      const exportCode = await new Promise<number | null>((resolve) => exporter.on('close', resolve));
      const result = await imported;
      if (exportCode !== 0) throw dockerErrorFromOutput(`export ${ref}`, 'docker export failed');
      if (result.exitCode !== 0) throw dockerErrorFromOutput(`import the flattened ${ref}`, result.stderr);
      return result.stdout.trim();
    } finally {
      await this.docker(['rm', '--force', id]);
    }
  }

  async runContainer(spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal): Promise<ContainerExit> {
    // No --rm: the container is inspected after its exit (OOMKilled), then removed.
    const args = ['run', '--name', spec.name];
    if (io.stdin) args.push('--interactive');
    for (const [key, value] of Object.entries(spec.labels)) args.push('--label', `${key}=${value}`);
    if (spec.workdir) args.push('--workdir', spec.workdir);
    if (spec.user !== undefined) args.push('--user', spec.user);
    for (const [key, value] of Object.entries(spec.env)) args.push('--env', `${key}=${value}`);
    for (const mount of spec.mounts) {
      if (mount.type === 'bind') args.push('--mount', `type=bind,source=${mount.source},target=${mount.target}${mount.readonly ? ',readonly' : ''}`);
      else args.push('--mount', `type=volume,source=${mount.source},target=${mount.target}`);
    }
    if (spec.gpus) args.push('--gpus', spec.gpus === 'all' ? 'all' : `"device=${spec.gpus.join(',')}"`);
    const network = dockerNetwork(this.options.env, spec.network);
    if (network) args.push('--network', network);
    args.push(...confinementFlags(spec.confinement));
    if (spec.entrypoint !== undefined) args.push('--entrypoint', spec.entrypoint);
    args.push(spec.image, ...spec.command);
    let stderrTail = '';
    let first = true;
    const result = await this.docker(args, {
      input: io.stdin,
      capture: false,
      onStdout: io.stdout,
      onStderr: (chunk) => {
        stderrTail = (stderrTail + chunk.toString('utf8')).slice(-8192);
        if (first) {
          // The docker client's warning about this daemon's network setup comes first, if at all.
          first = false;
          const text = chunk.toString('utf8');
          const cleaned = text.replace(DOCKER_RUN_NOISE, '');
          if (cleaned !== text) {
            if (cleaned) io.stderr(Buffer.from(cleaned));
            return;
          }
        }
        io.stderr(chunk);
      },
      // Ctrl-C: the caller removes the container by name; the client then ends by itself.
      signal,
      killAfterMs: 10_000,
    });
    const exitCode = result.exitCode ?? 128 + (result.signal === 'SIGKILL' ? 9 : 15);
    // `docker run` does not say when it created or started the container: only the exit is heard.
    io.onStage?.('exited');
    // Even after exit 0: a script may carry on after the kernel killed one of its processes.
    const oomKilled = await this.oomKilled(spec.name);
    if (spec.remove !== false) await this.removeContainer(spec.name).catch(() => undefined);
    // docker run exits 125 when Docker failed, and 126/127 when the command could not run;
    // a job's own 126/127 has no "Error response from daemon" line.
    if (exitCode === 125 || ((exitCode === 126 || exitCode === 127) && /Error response from daemon|OCI runtime|failed to create shim/.test(stderrTail))) {
      const daemonMessage =
        stderrTail
          .split('\n')
          .filter((line) => /docker:|Error response from daemon|OCI runtime|Unable to find image/.test(line))
          .join('\n') || stderrTail.trim();
      // The whole of stderr is Docker's here; a GPU refusal's reason is on a line of its own.
      const classified = classifyDockerMessage(stderrTail);
      const failure: DockerFailure = classified
        ? { ...classified, daemonMessage }
        : { kind: exitCode === 127 ? 'command-not-found' : exitCode === 126 ? 'command-not-executable' : 'container-start-failed', daemonMessage };
      if (isDaemonFailure(failure)) throw toDockerError('reach the Docker daemon', failure);
      return { exitCode, dockerFailure: failure };
    }
    return oomKilled ? { exitCode, oomKilled } : { exitCode };
  }

  /** Whether Docker saw the kernel kill the container for memory; false when it cannot say (e.g. it is gone). */
  private async oomKilled(name: string): Promise<boolean> {
    const result = await this.docker(['container', 'inspect', '--format', '{{.State.OOMKilled}}', name]).catch(() => undefined);
    return result?.exitCode === 0 && result.stdout.trim() === 'true';
  }

  async removeContainer(nameOrId: string): Promise<void> {
    const result = await this.docker(['rm', '--force', '--volumes', nameOrId]);
    if (result.exitCode === 0) return;
    const error = dockerErrorFromOutput(`remove container ${nameOrId}`, result.stderr);
    if (error.kind !== 'container-missing' && error.kind !== 'in-progress') throw error;
  }

  async listContainers(filter: { label?: string[]; all?: boolean }): Promise<Array<{ id: string; names: string; state: string; labels: string }>> {
    const args = ['ps', '--no-trunc', '--format', '{{json .}}'];
    if (filter.all) args.push('--all');
    for (const label of filter.label ?? []) args.push('--filter', `label=${label}`);
    return jsonLines<{ ID: string; Names: string; State: string; Labels: string }>(await this.must(args, 'list containers')).map((row) => ({
      id: row.ID,
      names: row.Names,
      state: row.State,
      labels: row.Labels,
    }));
  }
}

/** A Confinement as `docker run` flags (what the Engine driver sends as HostConfig fields). */
export function confinementFlags(confinement: Confinement | undefined): string[] {
  if (!confinement) return [];
  const flags: string[] = [];
  if (confinement.noNewPrivileges) flags.push('--security-opt', 'no-new-privileges');
  for (const capability of confinement.capDrop) flags.push('--cap-drop', capability);
  for (const capability of confinement.capAdd) flags.push('--cap-add', capability);
  if (confinement.runtime) flags.push('--runtime', confinement.runtime);
  if (confinement.memoryBytes !== undefined) flags.push('--memory', `${confinement.memoryBytes}b`, '--memory-swap', `${confinement.memoryBytes}b`);
  if (confinement.pidsLimit !== undefined) flags.push('--pids-limit', String(confinement.pidsLimit));
  if (confinement.nanoCpus !== undefined) flags.push('--cpus', String(confinement.nanoCpus / 1e9));
  return flags;
}

function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

/** The exit code of the failing RUN step, from legacy or BuildKit output. */
export function parseBuildStepExit(output: string): number | undefined {
  const patterns = [/returned a non-zero code: (\d+)/, /did not complete successfully: exit code: (\d+)/, /exit code: (\d+)/];
  for (const pattern of patterns) {
    const match = pattern.exec(output);
    if (match) return Number(match[1]);
  }
  return undefined;
}

function isDaemonFailure(failure: DockerFailure | undefined): failure is DockerFailure {
  return failure?.kind === 'daemon-unreachable' || failure?.kind === 'daemon-permission-denied';
}
