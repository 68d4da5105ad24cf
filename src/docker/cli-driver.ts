import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CycleError, ExitCode } from '../errors.js';
import { runProcess, type SpawnOptions, type SpawnResult } from '../util/process.js';
import { lineSplitter } from '../util/lines.js';
import { DOCKER_RUN_NOISE } from './build-output.js';
import {
  DockerBuildError,
  type BuildRequest,
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

const DOCKER_MISSING_HINT = 'install Docker (https://docs.docker.com/engine/install/, or `apt-get install docker.io`), then run `cycle doctor`';
const DAEMON_DOWN_HINT = 'start the Docker daemon (`sudo systemctl start docker`, or open Docker Desktop), then run `cycle doctor`';

/** Docker through its CLI: works with any daemon, context or DOCKER_HOST the user's `docker` works with. */
export class CliDockerDriver implements DockerDriver {
  private readonly binary: string;
  private builderCache: Promise<'buildkit' | 'legacy'> | undefined;

  constructor(protected readonly options: CliDockerDriverOptions) {
    this.binary = options.binary ?? options.env.CYCLE_DOCKER_BIN ?? 'docker';
  }

  /** The network a build or container joins: the one asked for, else CYCLE_DOCKER_NETWORK. */
  protected networkFor(requested: string | undefined): string | undefined {
    return requested ?? this.options.env.CYCLE_DOCKER_NETWORK;
  }

  private async docker(args: string[], options: SpawnOptions = {}): Promise<SpawnResult> {
    this.options.debug?.(`$ ${this.binary} ${args.join(' ')}`);
    const result = await runProcess(this.binary, args, { env: { ...this.options.env }, ...options });
    this.options.debug?.(`  exit ${result.exitCode ?? result.signal}`);
    if (result.spawnError?.code === 'ENOENT') throw dockerMissing(this.binary);
    if (result.spawnError) throw new CycleError({ message: `cannot run ${this.binary}: ${result.spawnError.message}`, exitCode: ExitCode.network });
    return result;
  }

  /** Runs a docker command that must succeed; Docker's own message becomes the error. */
  private async must(args: string[], what: string): Promise<string> {
    const result = await this.docker(args);
    if (result.exitCode !== 0) throw dockerFailure(what, result.stderr || result.stdout);
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
    if (version.exitCode !== 0 || !parsed.Server?.Version) throw dockerFailure('reach the Docker daemon', version.stderr || version.stdout);
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
    const network = this.networkFor(request.network);
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
        if (isDaemonDown(text)) throw dockerFailure('reach the Docker daemon', text);
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
      if (/no such image|not found/i.test(result.stderr)) return undefined;
      throw dockerFailure(`inspect image ${ref}`, result.stderr);
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
    if (result.exitCode !== 0 && !/no such image/i.test(result.stderr)) throw dockerFailure(`remove image ${ref}`, result.stderr);
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
      if (exportCode !== 0) throw dockerFailure(`export ${ref}`, 'docker export failed');
      if (result.exitCode !== 0) throw dockerFailure(`import the flattened ${ref}`, result.stderr);
      return result.stdout.trim();
    } finally {
      await this.docker(['rm', '--force', id]);
    }
  }

  async runContainer(spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal): Promise<ContainerExit> {
    const args = ['run', '--name', spec.name];
    if (spec.remove !== false) args.push('--rm');
    if (io.stdin) args.push('--interactive');
    for (const [key, value] of Object.entries(spec.labels)) args.push('--label', `${key}=${value}`);
    if (spec.workdir) args.push('--workdir', spec.workdir);
    for (const [key, value] of Object.entries(spec.env)) args.push('--env', `${key}=${value}`);
    for (const mount of spec.mounts) {
      if (mount.type === 'bind') args.push('--mount', `type=bind,source=${mount.source},target=${mount.target}${mount.readonly ? ',readonly' : ''}`);
      else args.push('--mount', `type=volume,source=${mount.source},target=${mount.target}`);
    }
    if (spec.gpus) args.push('--gpus', spec.gpus);
    const network = this.networkFor(spec.network);
    if (network) args.push('--network', network);
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
    // docker run exits 125 when Docker failed, and 126/127 when the command could not run;
    // a job's own 126/127 has no "Error response from daemon" line.
    if (exitCode === 125 || ((exitCode === 126 || exitCode === 127) && /Error response from daemon|OCI runtime|failed to create shim/.test(stderrTail))) {
      const dockerError = stderrTail.split('\n').filter((line) => /docker:|Error response from daemon|OCI runtime|Unable to find image/.test(line)).join('\n') || stderrTail.trim();
      if (isDaemonDown(dockerError)) throw dockerFailure('reach the Docker daemon', dockerError);
      return { exitCode, dockerError };
    }
    return { exitCode };
  }

  async removeContainer(nameOrId: string): Promise<void> {
    const result = await this.docker(['rm', '--force', '--volumes', nameOrId]);
    if (result.exitCode !== 0 && !/no such container|is already in progress/i.test(result.stderr)) throw dockerFailure(`remove container ${nameOrId}`, result.stderr);
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

function isDaemonDown(text: string): boolean {
  return /Cannot connect to the Docker daemon|Is the docker daemon running|error during connect|docker daemon is not running|permission denied while trying to connect/i.test(text);
}

function dockerMissing(binary: string): CycleError {
  return new CycleError({ message: `Docker is not installed (\`${binary}\` was not found on PATH)`, hint: DOCKER_MISSING_HINT, exitCode: ExitCode.network });
}

export function dockerFailure(what: string, stderr: string): CycleError {
  const text = stderr.trim();
  if (isDaemonDown(text)) {
    const permission = /permission denied/i.test(text);
    return new CycleError({
      message: permission ? 'permission denied talking to the Docker daemon' : 'the Docker daemon is not running or cannot be reached',
      hint: permission ? 'add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again)' : DAEMON_DOWN_HINT,
      exitCode: ExitCode.network,
      details: text ? [text.split('\n')[0]!] : [],
    });
  }
  const firstLine = text.split('\n').find((line) => line.trim() !== '') ?? 'no output';
  return new CycleError({ message: `Docker could not ${what}: ${firstLine.replace(/^(docker: )?Error( response from daemon)?:\s*/i, '')}`, exitCode: ExitCode.network });
}

/** Docker's image inspect document (CLI `--format '{{json .}}'` and the Engine API alike), as cycle uses it. */
export function imageDetails(raw: {
  Id: string;
  Parent?: string;
  RootFS?: { Layers?: string[] };
  Config?: { Labels?: Record<string, string> | null; Env?: string[] | null; WorkingDir?: string; Entrypoint?: string[] | null; Cmd?: string[] | null };
  Created?: string;
  RepoTags?: string[] | null;
}): ImageDetails {
  return {
    id: raw.Id,
    parent: raw.Parent ?? '',
    layers: raw.RootFS?.Layers ?? [],
    labels: raw.Config?.Labels ?? {},
    env: raw.Config?.Env ?? [],
    workdir: raw.Config?.WorkingDir ?? '',
    entrypoint: raw.Config?.Entrypoint ?? null,
    cmd: raw.Config?.Cmd ?? null,
    created: raw.Created ?? '',
    repoTags: raw.RepoTags ?? [],
  };
}
