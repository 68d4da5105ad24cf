import http from 'node:http';
import type { Duplex } from 'node:stream';
import { errnoCode } from '../errors.js';
import type { CliDockerDriver, CliDockerDriverOptions } from './cli-driver.js';
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
  type PreparedContainer,
  isPrepared,
} from './driver.js';
import { classifyDockerMessage, toDockerError, type DockerError, type DockerErrorKind, type DockerFailure } from './errors.js';
import type { DockerEndpoint } from './endpoint.js';

interface EngineResponse {
  status: number;
  body: string;
}

/**
 * Docker through the Engine API for the operations on the hot path of a run (create, attach,
 * start, wait, remove, inspect): one HTTP request each on the daemon's socket instead of a
 * docker process. Everything else (builds with either builder, image housekeeping, `info`) is
 * handed to a docker CLI driver it owns, which is what the user's Docker setup is known to
 * work with. Failures are classified from the HTTP status, and from the daemon's JSON message
 * where the status does not say.
 */
export class EngineDockerDriver implements DockerDriver {
  /**
   * Loaded on first use: a run of an unchanged project makes Engine API calls only, and the
   * CLI driver brings node:child_process and the process helpers with it.
   */
  private cliDriver: Promise<CliDockerDriver> | undefined;
  /**
   * Connections to the daemon kept open between requests (a task makes several: create, wait,
   * start, inspect, remove); idle ones do not keep the process alive. Attach has its own (upgraded).
   */
  private readonly agent = new http.Agent({ keepAlive: true });

  constructor(
    readonly endpoint: DockerEndpoint,
    private readonly options: CliDockerDriverOptions,
  ) {}

  private cli(): Promise<CliDockerDriver> {
    return (this.cliDriver ??= import('./cli-driver.js').then(({ CliDockerDriver }) => new CliDockerDriver(this.options)));
  }

  private debugLine(line: string): void {
    this.options.debug?.(line);
  }

  async build(request: BuildRequest): Promise<{ imageId: string }> {
    return (await this.cli()).build(request);
  }

  async listImages(filter: { label?: string[]; reference?: string }): Promise<ImageSummary[]> {
    return (await this.cli()).listImages(filter);
  }

  async tagImage(source: string, target: string): Promise<void> {
    return (await this.cli()).tagImage(source, target);
  }

  async removeImage(ref: string, options?: { force?: boolean }): Promise<void> {
    return (await this.cli()).removeImage(ref, options);
  }

  async flattenImage(ref: string, tag: string, changes: string[]): Promise<string> {
    return (await this.cli()).flattenImage(ref, tag, changes);
  }

  async listContainers(filter: { label?: string[]; all?: boolean }): Promise<Array<{ id: string; names: string; state: string; labels: string }>> {
    return (await this.cli()).listContainers(filter);
  }

  /**
   * Where requests go. `servername` is given (it names a TLS server, and this is plain HTTP):
   * left out, Node's agent works one out with `net.isIP`, whose first call compiles the IPv6
   * pattern, ~4 ms of every `project test`.
   */
  private connection(): http.RequestOptions & { servername: string } {
    return this.endpoint.kind === 'unix'
      ? { socketPath: this.endpoint.socketPath, servername: '' }
      : { host: this.endpoint.host, port: this.endpoint.port, servername: '' };
  }

  /** Unversioned paths: the daemon answers with its own API version (old pinned versions get refused). */
  private request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<EngineResponse> {
    this.debugLine(`engine ${method} ${path}`);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const request = http.request({
        ...this.connection(),
        method,
        path,
        agent: this.agent,
        headers: { ...(data ? { 'Content-Type': 'application/json', 'Content-Length': String(data.length) } : {}), ...headers },
      });
      request.on('response', (response) => readResponse(response).then(resolve, reject));
      request.on('error', (error) => reject(this.unreachable(error)));
      request.end(data);
    });
  }

  /** Attach before start, so no output is missed; the connection becomes a raw stream. */
  private attach(id: string, stdin: boolean): Promise<{ socket: Duplex; head: Buffer }> {
    const path = `/containers/${id}/attach?stream=1&stdout=1&stderr=1${stdin ? '&stdin=1' : ''}`;
    this.debugLine(`engine POST ${path}`);
    return new Promise((resolve, reject) => {
      const request = http.request({ ...this.connection(), method: 'POST', path, agent: false, headers: { Connection: 'Upgrade', Upgrade: 'tcp' } });
      request.on('upgrade', (_response, socket, head) => resolve({ socket, head }));
      // No upgrade: Docker refused (no such container…), with the reason in the body.
      request.on('response', (response) =>
        readResponse(response).then((refused) => reject(apiError('attach to the container', refused, 'container-missing')), reject),
      );
      request.on('error', (error) => reject(this.unreachable(error)));
      request.end();
    });
  }

  private unreachable(error: Error): Error {
    const code = errnoCode(error);
    if (code === 'EACCES') {
      return toDockerError('reach the Docker daemon', {
        kind: 'daemon-permission-denied',
        daemonMessage: `permission denied while trying to connect to the Docker daemon socket at ${this.endpoint.description}`,
      });
    }
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE') {
      return toDockerError('reach the Docker daemon', {
        kind: 'daemon-unreachable',
        daemonMessage: `Cannot connect to the Docker daemon at ${this.endpoint.description}. Is the docker daemon running? (${code})`,
      });
    }
    return error;
  }

  /** The CLI's facts, once the socket containers run through answers too. */
  async info(): Promise<DockerInfo> {
    const ping = await this.request('GET', '/_ping');
    if (ping.status !== 200) throw apiError('answer on its API socket', ping);
    return { ...(await (await this.cli()).info()), transport: `the Engine API at ${this.endpoint.description} (builds: the docker CLI)` };
  }

  async inspectImage(ref: string): Promise<ImageDetails | undefined> {
    const response = await this.request('GET', `/images/${ref}/json`);
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw apiError(`inspect image ${ref}`, response);
    return imageDetails(JSON.parse(response.body));
  }

  async removeContainer(nameOrId: string): Promise<void> {
    const response = await this.request('DELETE', `/containers/${encodeURIComponent(nameOrId)}?force=1&v=1`);
    // 404: already gone; 409: its removal is already under way (AutoRemove, or a second Ctrl-C).
    if (response.status >= 300 && response.status !== 404 && response.status !== 409) throw apiError(`remove container ${nameOrId}`, response);
  }

  /** Whether Docker saw the kernel kill the container for memory; false when it cannot say. */
  private async oomKilled(id: string): Promise<boolean> {
    const response = await this.request('GET', `/containers/${id}/json`);
    if (response.status !== 200) return false;
    return (JSON.parse(response.body) as { State?: { OOMKilled?: boolean } }).State?.OOMKilled === true;
  }

  async runContainer(spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal): Promise<ContainerExit> {
    const prepared = await this.prepareContainer(spec, io, signal);
    return isPrepared(prepared) ? prepared.run() : prepared;
  }

  /**
   * Create, attach and the wait registered (and, with `startAhead` and a stdin, the start): what
   * runContainer does before the container's command may run. `run()` does the rest.
   */
  async prepareContainer(
    spec: ContainerSpec,
    io: ContainerIO,
    signal?: AbortSignal,
    options: { startAhead?: boolean } = {},
  ): Promise<PreparedContainer | ContainerExit> {
    const network = dockerNetwork(this.options.env, spec.network);
    const created = await this.request('POST', `/containers/create?name=${encodeURIComponent(spec.name)}`, {
      Image: spec.image,
      Cmd: spec.command,
      ...(spec.entrypoint !== undefined ? { Entrypoint: [spec.entrypoint] } : {}),
      ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
      ...(spec.user !== undefined ? { User: spec.user } : {}),
      Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
      Labels: spec.labels,
      AttachStdout: true,
      AttachStderr: true,
      ...(io.stdin ? { AttachStdin: true, OpenStdin: true, StdinOnce: true } : {}),
      HostConfig: {
        // Removed by us after the exit, not AutoRemove: it is inspected first (OOMKilled).
        AutoRemove: false,
        Mounts: spec.mounts.map((mount) =>
          mount.type === 'bind'
            ? { Type: 'bind', Source: mount.source, Target: mount.target, ReadOnly: mount.readonly === true }
            : { Type: 'volume', Source: mount.source, Target: mount.target },
        ),
        ...(network ? { NetworkMode: network } : {}),
        ...(spec.gpus
          ? {
              DeviceRequests: [
                spec.gpus === 'all'
                  ? { Driver: '', Count: -1, Capabilities: [['gpu']] }
                  : { Driver: '', DeviceIDs: spec.gpus.map(String), Capabilities: [['gpu']] },
              ],
            }
          : {}),
        ...confinementHostConfig(spec.confinement),
      },
    });
    if (created.status !== 201) {
      // Worded as `docker run` words it, so the user reads one message whichever driver ran.
      if (created.status === 404)
        return {
          exitCode: 125,
          dockerFailure: { kind: 'image-missing', daemonMessage: `Unable to find image '${spec.image}' locally: ${errorMessage(created)}` },
        };
      return { exitCode: 125, dockerFailure: engineFailure(created, 'container-start-failed') };
    }
    const id = (JSON.parse(created.body) as { Id: string }).Id;
    io.onStage?.('created');
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => (stopping ??= this.removeContainer(id).catch(() => undefined));
    const onAbort = (): void => void stop();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) {
      // Ctrl-C while the container was being created: removing it by name may have come too soon.
      await stop();
      signal.removeEventListener('abort', onAbort);
      return { exitCode: 130 };
    }
    let attached: { socket: Duplex; head: Buffer };
    try {
      attached = await this.attach(id, io.stdin !== undefined);
    } catch (error) {
      await stop();
      signal?.removeEventListener('abort', onAbort);
      throw error;
    }
    const { socket, head } = attached;
    const streamed = demultiplex(socket, head, io);
    // Registered before start: an AutoRemove container may be gone by the time we asked.
    const waited = this.request('POST', `/containers/${id}/wait?condition=next-exit`);
    waited.catch(() => undefined); // read by run(); a prepared container given back never is
    /** The start's refusal, as runContainer answers it; undefined: started. */
    const start = async (): Promise<ContainerExit | undefined> => {
      const started = await this.request('POST', `/containers/${id}/start`);
      if (started.status === 204 || started.status === 304) return undefined;
      socket.destroy();
      await stop();
      const failure = engineFailure(started, 'container-start-failed');
      // As `docker run` does: 127 when the command is not found, 126 when it cannot run.
      const exitCode = failure.kind === 'command-not-found' ? 127 : failure.kind === 'command-not-executable' ? 126 : 125;
      return { exitCode, dockerFailure: failure };
    };
    // Started ahead: the command waits on its stdin (the source tar) until run() lets it flow.
    let refusedAhead: ContainerExit | undefined;
    const startedAhead = options.startAhead === true && io.stdin !== undefined;
    if (startedAhead) {
      try {
        refusedAhead = await start();
      } catch (error) {
        socket.destroy();
        await stop();
        signal?.removeEventListener('abort', onAbort);
        throw error;
      }
    }
    let ran = false;
    const run = async (): Promise<ContainerExit> => {
      if (ran) throw new Error(`container ${spec.name} was already run`);
      ran = true;
      try {
        if (signal?.aborted) {
          socket.destroy();
          await stop();
          return { exitCode: 130 };
        }
        const refused = startedAhead ? refusedAhead : await start();
        if (refused) return refused;
        io.onStage?.('started');
        if (io.stdin) {
          io.stdin.pipe(socket, { end: false });
          io.stdin.once('end', () => socket.end()); // EOF on the container's stdin; output keeps coming
          io.stdin.once('error', () => socket.end());
        }
        const [result] = await Promise.all([waited, streamed]);
        io.onStage?.('exited');
        if (signal?.aborted) {
          await stop();
          return { exitCode: 130 };
        }
        if (result.status !== 200) {
          // The container was removed under us (timeout, Ctrl-C elsewhere): it did not finish.
          if (spec.remove !== false) await stop();
          return { exitCode: 137 };
        }
        const wait = JSON.parse(result.body) as { StatusCode: number; Error?: { Message?: string } | null };
        // Even after exit 0: a script may carry on after the kernel killed one of its processes.
        const oomKilled = !wait.Error?.Message && (await this.oomKilled(id));
        if (spec.remove !== false) await stop();
        if (wait.Error?.Message)
          return {
            exitCode: wait.StatusCode,
            dockerFailure: classifyDockerMessage(wait.Error.Message) ?? { kind: 'container-start-failed', daemonMessage: wait.Error.Message },
          };
        return oomKilled ? { exitCode: wait.StatusCode, oomKilled } : { exitCode: wait.StatusCode };
      } catch (error) {
        await stop();
        throw error;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    };
    const discard = async (): Promise<void> => {
      if (ran) return;
      ran = true;
      socket.destroy();
      signal?.removeEventListener('abort', onAbort);
      await stop();
    };
    return { run, discard };
  }
}

/** A Confinement as the Engine API's HostConfig fields (what the CLI's flags become). */
export function confinementHostConfig(confinement: Confinement | undefined): Record<string, unknown> {
  if (!confinement) return {};
  return {
    ...(confinement.noNewPrivileges ? { SecurityOpt: ['no-new-privileges'] } : {}),
    ...(confinement.capDrop.length ? { CapDrop: confinement.capDrop } : {}),
    ...(confinement.capAdd.length ? { CapAdd: confinement.capAdd } : {}),
    ...(confinement.runtime ? { Runtime: confinement.runtime } : {}),
    ...(confinement.memoryBytes !== undefined ? { Memory: confinement.memoryBytes, MemorySwap: confinement.memoryBytes } : {}),
    ...(confinement.pidsLimit !== undefined ? { PidsLimit: confinement.pidsLimit } : {}),
    ...(confinement.nanoCpus !== undefined ? { NanoCpus: confinement.nanoCpus } : {}),
  };
}

/**
 * Splits Docker's multiplexed attach stream (no TTY): frames of an 8-byte header (stream type:
 * 1 stdout, 2 stderr; big-endian uint32 length at 4) then the payload. Ends with the stream.
 */
export function demultiplex(socket: Duplex, head: Buffer, io: ContainerIO): Promise<void> {
  let pending: Buffer = Buffer.alloc(0);
  const push = (chunk: Buffer): void => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const size = pending.readUInt32BE(4);
      if (pending.length < 8 + size) break;
      const payload = pending.subarray(8, 8 + size);
      if (pending[0] === 2) io.stderr(payload);
      else io.stdout(payload);
      pending = pending.subarray(8 + size);
    }
  };
  if (head.length > 0) push(head);
  return new Promise((resolve) => {
    socket.on('data', push);
    socket.once('close', () => resolve());
    // A container that exits before reading all of its stdin resets the connection: not our error.
    socket.on('error', () => resolve());
  });
}

function readResponse(response: http.IncomingMessage): Promise<EngineResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    response.on('error', reject);
  });
}

function errorMessage(response: EngineResponse): string {
  try {
    const message = (JSON.parse(response.body) as { message?: unknown }).message;
    if (typeof message === 'string' && message) return message;
  } catch {
    // not JSON: the body as it came
  }
  return response.body.trim() || `HTTP ${response.status}`;
}

/**
 * What an error answer means: 404 is `notFound` (the image or container the path names);
 * otherwise the daemon's message says (a 400 or 500 carries GPU refusals and commands that
 * cannot start alike), else `fallback`.
 */
function engineFailure(
  response: EngineResponse,
  fallback: Exclude<DockerErrorKind, 'cuda-requirement'>,
  notFound?: 'image-missing' | 'container-missing',
): DockerFailure {
  const daemonMessage = errorMessage(response);
  if (response.status === 404 && notFound) return { kind: notFound, daemonMessage };
  return classifyDockerMessage(daemonMessage) ?? { kind: fallback, daemonMessage };
}

function apiError(what: string, response: EngineResponse, notFound?: 'image-missing' | 'container-missing'): DockerError {
  return toDockerError(what, engineFailure(response, 'request-failed', notFound));
}
