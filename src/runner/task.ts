import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  isPrepared,
  type Confinement,
  type ContainerExit,
  type ContainerIO,
  type ContainerSpec,
  type ContainerStage,
  type DockerDriver,
  type Mount,
  type PreparedContainer,
} from '../docker/driver.js';
import type { DockerFailure } from '../docker/errors.js';
import { ProgressFilter, type ProgressEvent } from './progress.js';
import { LABELS } from './images.js';
import { errnoCode } from '../errors.js';
import { outOfMemoryReason, reclaimConfinement } from './limits.js';
import { ARTIFACTS_DIR } from './artifacts.js';
import { systemClock, type Clock } from '../context.js';

/** Where the runner protocol's files appear inside the container. */
export const TASK_DIR = '/computalot/task';
/** The most bytes a result file may hold (docs/computalot.md); a bigger one fails the task. */
export const RESULT_MAX_BYTES = 16 * 1024 * 1024;

export interface TaskSpec {
  image: string;
  /**
   * Where the task's private folder (its payload, its result) is made: the server's data folder,
   * swept at start, so a `kill -9` leaves nothing in the system's temp folder. The system's
   * temp folder when unset (`cycle project test`, which removes it when the task ends).
   */
  scratchDir?: string;
  /** Container name: unique, so an interrupted or timed-out task can be removed. */
  name: string;
  labels: Record<string, string>;
  command: string[];
  /** Replaces the image's entrypoint (OCI projects: the manifest's entrypoint.command[0]). */
  entrypoint?: string;
  workdir?: string;
  /** The job's own variables (manifest env_vars, entrypoint.env). */
  env: Record<string, string>;
  payload: unknown;
  /** A tar stream of the project source, extracted into /app before the command runs. */
  source?: () => Readable;
  /** Host folder mounted at /artifacts (the job writes there; a capture copies from it). */
  artifactsDir: string;
  mounts: Mount[];
  /** The GPUs: all of them, or these devices (whole GPUs leased to this task on a machine with several slots). */
  gpus: boolean | readonly number[];
  /** Lock-down and limits; none: Docker's defaults. */
  confinement?: Confinement;
  /** The network the container joins (`none`: no network). */
  network?: string;
  /** A runner command must write a result; `.cycleswap/run.sh` may. */
  resultRequired: boolean;
  timeoutMs?: number;
}

export interface TaskCallbacks {
  stdout(chunk: string): void;
  stderr(chunk: Buffer): void;
  progress(event: ProgressEvent): void;
  /** The container reached a stage (created, started, exited): per-task timings. */
  stage?(stage: ContainerStage): void;
}

export type TaskStatus = 'succeeded' | 'failed' | 'timed-out' | 'interrupted';

export interface TaskOutcome {
  status: TaskStatus;
  exitCode: number;
  /** The parsed result file, when there is a valid one. */
  result?: unknown;
  /** Why the task failed, in words (non-zero exit, missing result, Docker error, timeout). */
  reason?: string;
  /** Set when Docker itself could not run the task; its kind says why. */
  dockerFailure?: DockerFailure;
  /** The kernel killed it for memory (Docker's OOMKilled); `reason` says so with the limit. */
  outOfMemory?: boolean;
  durationMs: number;
}

/**
 * Runs one task in a container with the runner protocol: the payload in
 * $COMPUTALOT_TASK_PAYLOAD, the result from $COMPUTALOT_TASK_RESULT, COMPUTALOT_PROGRESS: lines
 * as progress, everything else as the live log. The same code serves `cycle project test`
 * and the local backend. `clock` runs the timeout (a test advances a fake one instead of waiting).
 */
export async function runTask(
  docker: DockerDriver,
  spec: TaskSpec,
  callbacks: TaskCallbacks,
  signal?: AbortSignal,
  clock: Clock = systemClock,
): Promise<TaskOutcome> {
  return (await prepareTask(docker, spec, callbacks, signal, clock)).run();
}

/** A task made ready to run (its folder written, its container created where the driver can): runTask in two steps. */
export interface PreparedTask {
  /** Runs it (once): its timeout starts now. */
  run(): Promise<TaskOutcome>;
  /** Gives it up unrun: its container and folder are removed. */
  discard(): Promise<void>;
}

/**
 * What runTask does before the task's command may run: its private folder and payload, and,
 * with a driver that can (DockerDriver.prepareContainer), its container created and attached
 * (with `startAhead` and a source to copy in, started too: its command waits on the source tar).
 * A worker prepares its next task so while a slot is busy; `run()` then costs only the start.
 */
export async function prepareTask(
  docker: DockerDriver,
  spec: TaskSpec,
  callbacks: TaskCallbacks,
  signal?: AbortSignal,
  clock: Clock = systemClock,
  options: { startAhead?: boolean } = {},
): Promise<PreparedTask> {
  // A fresh folder per attempt: mkdtemp makes it 0700, so no other host user can reach into it.
  // Only the `io` folder inside is shared with the container, world-writable because the job
  // may run as any user of its image.
  const privateDir = await fs.mkdtemp(path.join(spec.scratchDir ?? os.tmpdir(), 'cycle-task-'));
  const removeFolder = (): Promise<void> => fs.rm(privateDir, { recursive: true, force: true }).catch(() => undefined);
  const ioDir = path.join(privateDir, 'io');
  try {
    await fs.mkdir(ioDir);
    await fs.chmod(ioDir, 0o777);
    await fs.writeFile(path.join(ioDir, 'payload.json'), JSON.stringify(spec.payload ?? {}));
    await fs.mkdir(spec.artifactsDir, { recursive: true });
    await fs.chmod(spec.artifactsDir, 0o777); // the job may run as any user of its image
  } catch (error) {
    await removeFolder();
    throw error;
  }
  const env: Record<string, string> = {
    ...spec.env,
    INSIDE_CYCLESWAP_CONTAINER: '1',
    COMPUTALOT_TASK_PAYLOAD: `${TASK_DIR}/payload.json`,
    COMPUTALOT_TASK_RESULT: `${TASK_DIR}/result.json`,
    CYCLE_ARTIFACTS_DIR: ARTIFACTS_DIR,
    COMPUTALOT_ARTIFACT_DIR: ARTIFACTS_DIR,
  };
  // The source is copied (never bind-mounted), as a remote worker does: piped into `tar -x`.
  const command = spec.source ? ['bash', '-c', 'mkdir -p /app && tar -xf - -C /app && exec "$@"', 'cycle-task', ...spec.command] : spec.command;
  const filter = new ProgressFilter(callbacks.stdout, callbacks.progress);
  const containerSpec: ContainerSpec = {
    image: spec.image,
    name: spec.name,
    labels: { ...spec.labels, [LABELS.run]: spec.name },
    command,
    ...(spec.entrypoint !== undefined && !spec.source ? { entrypoint: spec.entrypoint } : {}),
    ...(spec.workdir ? { workdir: spec.workdir } : {}),
    env,
    mounts: [{ type: 'bind', source: ioDir, target: TASK_DIR }, { type: 'bind', source: spec.artifactsDir, target: ARTIFACTS_DIR }, ...spec.mounts],
    ...(spec.gpus === true || (Array.isArray(spec.gpus) && spec.gpus.length)
      ? { gpus: spec.gpus === true ? ('all' as const) : [...(spec.gpus as readonly number[])] }
      : {}),
    ...(spec.confinement ? { confinement: spec.confinement } : {}),
    ...(spec.network ? { network: spec.network } : {}),
  };
  const io: ContainerIO = {
    ...(spec.source ? { stdin: spec.source() } : {}),
    stdout: (chunk) => filter.push(chunk),
    stderr: callbacks.stderr,
    ...(callbacks.stage ? { onStage: (stage: ContainerStage) => callbacks.stage?.(stage) } : {}),
  };
  const onAbort = (): void => void docker.removeContainer(spec.name).catch(() => undefined);
  signal?.addEventListener('abort', onAbort, { once: true });
  let prepared: PreparedContainer | ContainerExit | undefined;
  try {
    prepared = docker.prepareContainer ? await docker.prepareContainer(containerSpec, io, signal, options) : undefined;
  } catch (error) {
    signal?.removeEventListener('abort', onAbort);
    io.stdin?.destroy();
    await removeFolder();
    throw error;
  }
  let settled = false;
  const run = async (): Promise<TaskOutcome> => {
    if (settled) throw new Error(`task ${spec.name} was already run or given up`);
    settled = true;
    const started = Date.now();
    let timedOut = false;
    // Aborted when the task ends, which disarms the timeout.
    const timer = new AbortController();
    if (spec.timeoutMs)
      clock.sleep(spec.timeoutMs, timer.signal).then(
        () => {
          timedOut = true;
          void docker.removeContainer(spec.name).catch(() => undefined);
        },
        () => undefined,
      );
    try {
      const exit = prepared === undefined ? await docker.runContainer(containerSpec, io, signal) : isPrepared(prepared) ? await prepared.run() : prepared;
      filter.flush();
      const durationMs = Date.now() - started;
      if (signal?.aborted) return { status: 'interrupted', exitCode: 130, reason: 'interrupted', durationMs };
      if (timedOut) return { status: 'timed-out', exitCode: exit.exitCode, reason: `timed out after ${Math.round((spec.timeoutMs ?? 0) / 1000)}s`, durationMs };
      if (exit.dockerFailure)
        return {
          status: 'failed',
          exitCode: exit.exitCode,
          reason: `Docker could not run the task: ${exit.dockerFailure.daemonMessage}`,
          dockerFailure: exit.dockerFailure,
          durationMs,
        };
      const result = await readResult(path.join(ioDir, 'result.json'));
      if (exit.oomKilled) {
        return {
          status: 'failed',
          exitCode: exit.exitCode,
          reason: outOfMemoryReason(spec.confinement?.memoryBytes),
          outOfMemory: true,
          ...(result.ok ? { result: result.value } : {}),
          durationMs,
        };
      }
      if (exit.exitCode !== 0) {
        return {
          status: 'failed',
          exitCode: exit.exitCode,
          reason: `exited with code ${exit.exitCode}${exit.exitCode === 137 ? ' (killed: out of memory, or stopped)' : ''}`,
          ...(result.ok ? { result: result.value } : {}),
          durationMs,
        };
      }
      if (!result.ok) {
        if (result.missing && !spec.resultRequired) return { status: 'succeeded', exitCode: 0, durationMs };
        return {
          status: 'failed',
          exitCode: 0,
          reason: result.missing
            ? 'exited 0 but wrote no result: the runner protocol needs JSON in the file $COMPUTALOT_TASK_RESULT names'
            : `exited 0 but ${result.error}`,
          durationMs,
        };
      }
      return { status: 'succeeded', exitCode: 0, result: result.value, durationMs };
    } finally {
      timer.abort();
      signal?.removeEventListener('abort', onAbort);
      await removeFolder();
    }
  };
  const discard = async (): Promise<void> => {
    if (settled) return;
    settled = true;
    signal?.removeEventListener('abort', onAbort);
    io.stdin?.destroy();
    if (prepared !== undefined && isPrepared(prepared)) await prepared.discard();
    await removeFolder();
  };
  return { run, discard };
}

/**
 * Reads the result file the container left, which the job controls entirely: it is opened
 * without following a symbolic link (one could point at any host file), without blocking on a
 * FIFO, and must be a regular file of at most RESULT_MAX_BYTES. Errors say what was wrong, never
 * what the file holds (it may be another file's contents).
 */
export async function readResult(file: string): Promise<{ ok: true; value: unknown } | { ok: false; missing: boolean; error?: string }> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT') return { ok: false, missing: true };
    // O_NOFOLLOW answers ELOOP on Linux, EMLINK on some BSDs.
    if (code === 'ELOOP' || code === 'EMLINK')
      return { ok: false, missing: false, error: 'the result file is a symbolic link: write the JSON into the file itself' };
    return { ok: false, missing: false, error: `the result file cannot be opened (${code ?? 'unknown error'})` };
  }
  let text: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return { ok: false, missing: false, error: 'the result file is not a regular file' };
    if (stat.size > RESULT_MAX_BYTES)
      return {
        ok: false,
        missing: false,
        error: `the result file is larger than ${RESULT_MAX_BYTES} bytes (${stat.size} bytes): write big outputs to /artifacts instead`,
      };
    // Read at most one byte past the cap, in case the file grew after the fstat.
    const buffer = Buffer.alloc(Math.min(stat.size, RESULT_MAX_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length > RESULT_MAX_BYTES)
      return { ok: false, missing: false, error: `the result file is larger than ${RESULT_MAX_BYTES} bytes: write big outputs to /artifacts instead` };
    text = buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, missing: false, error: `the result file is not valid JSON${await whereJsonBreaks(text)}` };
  }
}

/** Where a text stops being JSON (" at line L, column C: expected ..."), without quoting it. */
async function whereJsonBreaks(text: string): Promise<string> {
  if (text.trim() === '') return ' (it is empty)';
  const { parseJsonWithPositions } = await import('../project/json-positions.js');
  const first = parseJsonWithPositions(text).errors[0];
  return first ? ` at line ${first.at.line}, column ${first.at.column}: ${first.message}` : '';
}

/**
 * Files a container wrote into a bind mount belong to root (or the image's user): give them back
 * to the user (not needed as root, nor with rootless Docker, where they already belong to the
 * user). The helper runs the job's image as root, so it is locked down (reclaimConfinement): no
 * network, CHOWN and DAC_READ_SEARCH only, small limits, and the job's runtime (gVisor when the
 * job ran in it).
 */
export async function reclaimOutputs(docker: DockerDriver, request: { image: string; dir: string; name: string; runtime: string | undefined }): Promise<void> {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  if (uid === undefined || gid === undefined || uid === 0) return;
  const foreign = await ownedByOthers(request.dir, uid);
  if (!foreign) return;
  await docker
    .runContainer(
      {
        image: request.image,
        name: request.name,
        labels: { [LABELS.run]: request.name },
        entrypoint: 'chown',
        // Root, whatever the image's USER: capabilities are root's only.
        user: '0:0',
        command: ['-R', `${uid}:${gid}`, '/reclaim'],
        env: {},
        mounts: [{ type: 'bind', source: request.dir, target: '/reclaim' }],
        network: 'none',
        confinement: reclaimConfinement(request.runtime),
      },
      { stdout: () => undefined, stderr: () => undefined },
    )
    .catch(() => undefined);
}

async function ownedByOthers(dir: string, uid: number): Promise<boolean> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const file = path.join(dir, entry.name);
    const stat = await fs.lstat(file);
    if (stat.uid !== uid) return true;
    if (entry.isDirectory() && (await ownedByOthers(file, uid))) return true;
  }
  return false;
}
