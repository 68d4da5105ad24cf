import type { Readable } from 'node:stream';
import type { DockerFailure } from './errors.js';
import type { Env } from '../ui/streams.js';

/**
 * The Docker operations cycle needs, behind one interface so tests can fake Docker. Two
 * siblings implement it (the docker CLI, the Engine API); both throw a DockerError whose kind
 * says what went wrong (see errors.ts), and a fake must do the same.
 */
export interface DockerDriver {
  /** Server facts; throws a DockerError (exit 5) with the fix when Docker is missing or down. */
  info(): Promise<DockerInfo>;
  build(request: BuildRequest): Promise<{ imageId: string }>;
  inspectImage(ref: string): Promise<ImageDetails | undefined>;
  listImages(filter: { label?: string[]; reference?: string }): Promise<ImageSummary[]>;
  tagImage(source: string, target: string): Promise<void>;
  removeImage(ref: string, options?: { force?: boolean }): Promise<void>;
  /** Squashes an image into one layer, keeping its config; returns the new image id. */
  flattenImage(ref: string, tag: string, changes: string[]): Promise<string>;
  /**
   * `docker run`: creates, starts and attaches in one call (each docker CLI call costs tens of
   * milliseconds). Streams output as it comes; returns when the container exits.
   */
  runContainer(spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal): Promise<ContainerExit>;
  /**
   * Creates the container (and attaches to it) now, to be run later by `run()`: a worker
   * prepares its next task while a slot is busy. With `startAhead` and a stdin, the container is
   * also started now: its command waits on its stdin, which `run()` then lets flow (nothing of the
   * job runs before). Optional: a driver without it is run whole by `runContainer` (the CLI, fakes).
   * Answers a ContainerExit when Docker refused (the same failures as runContainer's).
   */
  prepareContainer?(spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal, options?: { startAhead?: boolean }): Promise<PreparedContainer | ContainerExit>;
  /** Kills (if running) and removes a container; no error when it is already gone. */
  removeContainer(nameOrId: string): Promise<void>;
  listContainers(filter: { label?: string[]; all?: boolean }): Promise<Array<{ id: string; names: string; state: string; labels: string }>>;
}

export interface DockerInfo {
  serverVersion: string;
  clientVersion: string;
  /** Which builder `docker build` uses here. */
  builder: 'buildkit' | 'legacy';
  /** Container runtimes the daemon knows (`nvidia` means GPUs can be handed out). */
  runtimes: string[];
  /** CDI spec folders (another way Docker hands out GPUs, Docker 25+). */
  cdiSpecDirs: string[];
  operatingSystem: string;
  architecture: string;
  /** How cycle reaches the daemon: "the docker CLI", or the Engine API socket it runs containers through. */
  transport: string;
}

export interface BuildRequest {
  /** A tar stream of the build context, with the Dockerfile at `dockerfile` inside it. */
  context: { kind: 'tar'; open: () => Readable } | { kind: 'directory'; path: string };
  /** The Dockerfile's path inside the context (default `Dockerfile`). */
  dockerfile?: string;
  /** The stage to build (`--target`). */
  target?: string;
  /** `--build-arg KEY=VALUE` for each entry. */
  buildArgs?: Record<string, string>;
  tags: string[];
  labels: Record<string, string>;
  network?: string;
  /** false: let Docker reuse its layer cache (OCI images); default: build every step. */
  noCache?: boolean;
  /** Called with each line of build output as it is produced. */
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

export interface ImageDetails {
  id: string;
  parent: string;
  layers: string[];
  labels: Record<string, string>;
  env: string[];
  workdir: string;
  entrypoint: string[] | null;
  cmd: string[] | null;
  created: string;
  repoTags: string[];
}

export interface ImageSummary {
  id: string;
  repository: string;
  tag: string;
  createdAt: string;
}

export type Mount = { type: 'bind'; source: string; target: string; readonly?: boolean } | { type: 'volume'; source: string; target: string };

export interface ContainerSpec {
  image: string;
  /** Named, so that an interrupted run can be found and removed. */
  name: string;
  command: string[];
  entrypoint?: string;
  workdir?: string;
  /** `--user` (e.g. `0:0`); none: the image's USER. */
  user?: string;
  env: Record<string, string>;
  mounts: Mount[];
  labels: Record<string, string>;
  /** All GPUs, or these device indices (`--gpus device=0,1`). */
  gpus?: 'all' | number[];
  network?: string;
  /** Remove the container when it exits (default true). */
  remove?: boolean;
  /** A job container's lock-down and limits (src/runner/limits.ts decides them); none: Docker's defaults. */
  confinement?: Confinement;
}

/** What Docker is told to restrict a container to: one shape, applied alike by both drivers. */
export interface Confinement {
  /** `--security-opt no-new-privileges`: setuid binaries gain nothing. */
  noNewPrivileges: boolean;
  /** `--cap-drop` (e.g. ALL), then `--cap-add` of the few given back. */
  capDrop: string[];
  capAdd: string[];
  /** `--runtime` (e.g. `runsc`, gVisor); none: the daemon's default. */
  runtime?: string;
  /** `--memory` and `--memory-swap` (the same: no swap beyond the limit), in bytes. */
  memoryBytes?: number;
  /** `--pids-limit`. */
  pidsLimit?: number;
  /** `--cpus`, as the Engine API's NanoCpus (CPUs x 1e9). */
  nanoCpus?: number;
}

export interface ContainerIO {
  /** Fed to the container's stdin, which is then closed. */
  stdin?: import('node:stream').Readable;
  stdout: (chunk: Buffer) => void;
  stderr: (chunk: Buffer) => void;
  /** Heard as the container reaches each stage (a driver that cannot tell leaves some out): per-task timings. */
  onStage?: (stage: ContainerStage) => void;
}

export type ContainerStage = 'created' | 'started' | 'exited';

/** A container made ahead of its run (DockerDriver.prepareContainer). */
export interface PreparedContainer {
  /** Starts it (or lets its stdin flow, when started ahead); resolves when it exits, as runContainer does. Once. */
  run(): Promise<ContainerExit>;
  /** Removes it unrun (a prepared task given back). */
  discard(): Promise<void>;
}

/** Whether prepareContainer answered a container to run, not a refusal. */
export function isPrepared(value: PreparedContainer | ContainerExit): value is PreparedContainer {
  return typeof (value as PreparedContainer).run === 'function';
}

export interface ContainerExit {
  exitCode: number;
  /** Set when Docker itself failed (no such image, runtime error, GPU request refused). */
  dockerFailure?: DockerFailure;
  /** Docker says the kernel killed a process of the container for memory (State.OOMKilled). */
  oomKilled?: boolean;
}

// ---- shared by both drivers ----

/** The network a build or container joins: the one asked for, else CYCLE_DOCKER_NETWORK. */
export function dockerNetwork(env: Env, requested: string | undefined): string | undefined {
  return requested ?? env.CYCLE_DOCKER_NETWORK;
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
