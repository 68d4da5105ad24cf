import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import {
  DockerBuildError,
  type BuildRequest,
  type ContainerSpec,
  type ContainerState,
  type DockerDriver,
  type DockerInfo,
  type ImageDetails,
  type ImageSummary,
  type OutputSinks,
} from './driver.js';
import type { Env } from '../ui/streams.js';

export interface CliDockerDriverOptions {
  env: Env;
  /** `CYCLE_DOCKER_BIN` or `docker` */
  binary?: string;
  debug?: (line: string) => void;
}

interface Captured {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const DOCKER_MISSING_HINT = 'install Docker (https://docs.docker.com/engine/install/, or `apt-get install docker.io`), then run `cycle doctor`';
const DAEMON_DOWN_HINT = 'start the Docker daemon (`sudo systemctl start docker`, or open Docker Desktop), then run `cycle doctor`';

/** Docker through its CLI: works with any daemon the user's `docker` works with. */
export class CliDockerDriver implements DockerDriver {
  private readonly binary: string;
  private builderCache: Promise<'buildkit' | 'legacy'> | undefined;

  constructor(private readonly options: CliDockerDriverOptions) {
    this.binary = options.binary ?? options.env.CYCLE_DOCKER_BIN ?? 'docker';
  }

  private childEnv(): Record<string, string | undefined> {
    return { ...this.options.env };
  }

  private async capture(args: string[], input?: string): Promise<Captured> {
    this.options.debug?.(`$ ${this.binary} ${args.join(' ')}`);
    try {
      const result = await execa(this.binary, args, { env: this.childEnv(), extendEnv: false, reject: false, input, encoding: 'utf8', stripFinalNewline: false });
      if (result.exitCode === undefined) {
        if (errnoCode(result.cause) === 'ENOENT' || /ENOENT/.test(String(result.message))) throw dockerMissing(this.binary);
        return { exitCode: 1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? result.message) };
      }
      return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
    } catch (error) {
      if (error instanceof CycleError) throw error;
      if (errnoCode(error) === 'ENOENT') throw dockerMissing(this.binary);
      throw error;
    }
  }

  /** Runs a docker command that must succeed; Docker's own message becomes the error. */
  private async must(args: string[], what: string, input?: string): Promise<string> {
    const result = await this.capture(args, input);
    if (result.exitCode !== 0) throw dockerFailure(what, result.stderr || result.stdout);
    return result.stdout;
  }

  async info(): Promise<DockerInfo> {
    const version = await this.capture(['version', '--format', '{{json .}}']);
    let parsed: { Client?: { Version?: string }; Server?: { Version?: string } | null } = {};
    try {
      parsed = JSON.parse(version.stdout.trim().split('\n')[0] ?? '{}');
    } catch {
      parsed = {};
    }
    if (version.exitCode !== 0 || !parsed.Server?.Version) throw dockerFailure('reach the Docker daemon', version.stderr || version.stdout);
    const info = await this.capture(['info', '--format', '{{json .}}']);
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
      const buildx = await this.capture(['buildx', 'version']).catch(() => ({ exitCode: 1 }));
      return buildx.exitCode === 0 ? 'buildkit' : 'legacy';
    })();
    return this.builderCache;
  }

  async build(request: BuildRequest): Promise<{ imageId: string }> {
    const builder = await this.builder();
    const tempDir = await fs.mkdtemp(path.join(os.tmpdir(), 'cycle-build-'));
    const iidFile = path.join(tempDir, 'iid');
    const args = ['build', '--iidfile', iidFile, '--force-rm'];
    if (builder === 'buildkit') args.push('--progress=plain');
    for (const tag of request.tags) args.push('--tag', tag);
    for (const [key, value] of Object.entries(request.labels)) args.push('--label', `${key}=${value}`);
    const network = request.network ?? this.options.env.CYCLE_DOCKER_NETWORK;
    if (network) args.push('--network', network);
    if (request.dockerfile) args.push('--file', request.dockerfile);
    args.push(request.context.kind === 'tar' ? '-' : request.context.path);
    const env = { ...this.childEnv(), DOCKER_BUILDKIT: builder === 'buildkit' ? '1' : '0', BUILDKIT_PROGRESS: 'plain' };
    this.options.debug?.(`$ ${this.binary} ${args.join(' ')}`);
    const tail: string[] = [];
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > 200) tail.shift();
      request.onOutput?.(line);
    };
    let child: ResultPromise;
    try {
      child = execa(this.binary, args, {
        env,
        extendEnv: false,
        reject: false,
        stdin: request.context.kind === 'tar' ? 'pipe' : 'ignore',
        buffer: false,
        cancelSignal: request.signal,
        forceKillAfterDelay: 2000,
      });
    } catch (error) {
      await fs.rm(tempDir, { recursive: true, force: true });
      if (errnoCode(error) === 'ENOENT') throw dockerMissing(this.binary);
      throw error;
    }
    const split = lineSplitter(onLine);
    child.stdout?.on('data', (chunk: Buffer) => split.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => split.push(chunk));
    const feeding =
      request.context.kind === 'tar' && child.stdin
        ? pipeline(request.context.open(), child.stdin).catch(() => undefined /* the build's own error says more */)
        : Promise.resolve();
    const result = await child;
    await feeding;
    split.flush();
    try {
      if (result.isCanceled || request.signal?.aborted) throw new CycleError({ message: 'build interrupted', exitCode: ExitCode.interrupted });
      if (result.exitCode === undefined && errnoCode(result.cause) === 'ENOENT') throw dockerMissing(this.binary);
      if (result.exitCode !== 0) {
        const text = tail.join('\n');
        if (isDaemonDown(text)) throw dockerFailure('reach the Docker daemon', text);
        throw new DockerBuildError(`docker build failed (exit ${result.exitCode ?? 'unknown'})`, parseBuildStepExit(text), tail.slice(-40));
      }
      const imageId = (await fs.readFile(iidFile, 'utf8')).trim();
      return { imageId };
    } finally {
      await fs.rm(tempDir, { recursive: true, force: true });
    }
  }

  async inspectImage(ref: string): Promise<ImageDetails | undefined> {
    const result = await this.capture(['image', 'inspect', '--format', '{{json .}}', ref]);
    if (result.exitCode !== 0) {
      if (/no such image|not found/i.test(result.stderr)) return undefined;
      throw dockerFailure(`inspect image ${ref}`, result.stderr);
    }
    const raw = JSON.parse(result.stdout) as {
      Id: string;
      Parent?: string;
      RootFS?: { Layers?: string[] };
      Config?: { Labels?: Record<string, string> | null; Env?: string[] | null; WorkingDir?: string; Entrypoint?: string[] | null; Cmd?: string[] | null };
      Created?: string;
      RepoTags?: string[] | null;
    };
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

  async listImages(filter: { label?: string[]; reference?: string }): Promise<ImageSummary[]> {
    const args = ['image', 'ls', '--no-trunc', '--format', '{{json .}}'];
    for (const label of filter.label ?? []) args.push('--filter', `label=${label}`);
    if (filter.reference) args.push('--filter', `reference=${filter.reference}`);
    const out = await this.must(args, 'list images');
    return out
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const row = JSON.parse(line) as { ID: string; Repository: string; Tag: string; CreatedAt: string };
        return { id: row.ID, repository: row.Repository, tag: row.Tag, createdAt: row.CreatedAt };
      });
  }

  async tagImage(source: string, target: string): Promise<void> {
    await this.must(['tag', source, target], `tag ${source} as ${target}`);
  }

  async removeImage(ref: string, options: { force?: boolean } = {}): Promise<void> {
    const result = await this.capture(['image', 'rm', ...(options.force ? ['--force'] : []), ref]);
    if (result.exitCode !== 0 && !/no such image/i.test(result.stderr)) throw dockerFailure(`remove image ${ref}`, result.stderr);
  }

  async flattenImage(ref: string, tag: string, changes: string[]): Promise<string> {
    const id = (await this.must(['create', ref, 'true'], `create a container from ${ref}`)).trim();
    try {
      const exporter = execa(this.binary, ['export', id], { env: this.childEnv(), extendEnv: false, buffer: false, reject: false });
      const importArgs = ['import'];
      for (const change of changes) importArgs.push('--change', change);
      importArgs.push('-', tag);
      const importer = execa(this.binary, importArgs, { env: this.childEnv(), extendEnv: false, reject: false, encoding: 'utf8' });
      if (exporter.stdout && importer.stdin) exporter.stdout.pipe(importer.stdin);
      const [exported, imported] = await Promise.all([exporter, importer]);
      if (exported.exitCode !== 0) throw dockerFailure(`export ${ref}`, String(exported.stderr ?? ''));
      if (imported.exitCode !== 0) throw dockerFailure(`import the flattened ${ref}`, String(imported.stderr ?? ''));
      return String(imported.stdout).trim();
    } finally {
      await this.capture(['rm', '--force', id]);
    }
  }

  async createContainer(spec: ContainerSpec): Promise<string> {
    const args = ['create'];
    if (spec.name) args.push('--name', spec.name);
    for (const [key, value] of Object.entries(spec.labels)) args.push('--label', `${key}=${value}`);
    if (spec.workdir) args.push('--workdir', spec.workdir);
    for (const [key, value] of Object.entries(spec.env)) args.push('--env', `${key}=${value}`);
    for (const mount of spec.mounts) {
      if (mount.type === 'bind') args.push('--mount', `type=bind,source=${mount.source},target=${mount.target}${mount.readonly ? ',readonly' : ''}`);
      else args.push('--mount', `type=volume,source=${mount.source},target=${mount.target}`);
    }
    if (spec.gpus) args.push('--gpus', spec.gpus);
    const network = spec.network ?? this.options.env.CYCLE_DOCKER_NETWORK;
    if (network) args.push('--network', network);
    if (spec.init) args.push('--init');
    if (spec.entrypoint !== undefined) args.push('--entrypoint', spec.entrypoint);
    args.push(spec.image, ...spec.command);
    const result = await this.capture(args);
    if (result.exitCode !== 0) throw dockerFailure(`create a container from ${spec.image}`, result.stderr);
    return result.stdout.trim().split('\n').pop()!.trim();
  }

  async copyInto(containerId: string, destination: string, tar: Readable): Promise<void> {
    this.options.debug?.(`$ ${this.binary} cp - ${containerId}:${destination}`);
    const child = execa(this.binary, ['cp', '-', `${containerId}:${destination}`], { env: this.childEnv(), extendEnv: false, reject: false, stdin: 'pipe', encoding: 'utf8' });
    const feeding = child.stdin ? pipeline(tar, child.stdin) : Promise.resolve();
    const [result] = await Promise.all([child, feeding.catch((error: unknown) => error)]);
    if (result.exitCode !== 0) throw dockerFailure(`copy files into the container`, String(result.stderr ?? ''));
  }

  async startAttached(containerId: string, output: OutputSinks, signal?: AbortSignal): Promise<number> {
    this.options.debug?.(`$ ${this.binary} start --attach ${containerId}`);
    const child = execa(this.binary, ['start', '--attach', containerId], {
      env: this.childEnv(),
      extendEnv: false,
      reject: false,
      buffer: false,
      stdin: 'ignore',
      cancelSignal: signal,
    });
    child.stdout?.on('data', (chunk: Buffer) => output.stdout(chunk));
    child.stderr?.on('data', (chunk: Buffer) => output.stderr(chunk));
    const result = await child;
    if (signal?.aborted) return 130;
    // The CLI's own exit code mixes Docker errors with the container's; ask the daemon.
    const state = await this.inspectContainer(containerId);
    if (state && !state.running && state.status !== 'created') return state.exitCode;
    if (state?.status === 'created') throw dockerFailure('start the container', state.error || `docker start exited ${result.exitCode}`);
    return result.exitCode ?? 1;
  }

  async inspectContainer(containerId: string): Promise<ContainerState | undefined> {
    const result = await this.capture(['container', 'inspect', '--format', '{{json .State}}', containerId]);
    if (result.exitCode !== 0) return undefined;
    const state = JSON.parse(result.stdout) as { Status: string; Running: boolean; ExitCode: number; OOMKilled: boolean; Error: string };
    return { status: state.Status, running: state.Running, exitCode: state.ExitCode, oomKilled: state.OOMKilled, error: state.Error };
  }

  async killContainer(containerId: string): Promise<void> {
    await this.capture(['kill', containerId]);
  }

  async removeContainer(containerId: string): Promise<void> {
    const result = await this.capture(['rm', '--force', '--volumes', containerId]);
    if (result.exitCode !== 0 && !/no such container/i.test(result.stderr)) throw dockerFailure(`remove container ${containerId}`, result.stderr);
  }

  async listContainers(filter: { label?: string[]; all?: boolean }): Promise<Array<{ id: string; names: string; state: string; labels: string }>> {
    const args = ['ps', '--no-trunc', '--format', '{{json .}}'];
    if (filter.all) args.push('--all');
    for (const label of filter.label ?? []) args.push('--filter', `label=${label}`);
    const out = await this.must(args, 'list containers');
    return out
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const row = JSON.parse(line) as { ID: string; Names: string; State: string; Labels: string };
        return { id: row.ID, names: row.Names, state: row.State, labels: row.Labels };
      });
  }
}

export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer | string): void; flush(): void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk.toString();
      let index: number;
      while ((index = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, index).replace(/\r$/, ''));
        pending = pending.slice(index + 1);
      }
    },
    flush() {
      if (pending !== '') onLine(pending);
      pending = '';
    },
  };
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
  return new CycleError({ message: `Docker could not ${what}: ${firstLine.replace(/^Error( response from daemon)?:\s*/i, '')}`, exitCode: ExitCode.network });
}
