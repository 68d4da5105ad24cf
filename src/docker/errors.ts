import { CycleError, ExitCode } from '../errors.js';

/**
 * What went wrong in Docker, as callers tell the cases apart. Both drivers produce these where
 * they learn of the failure (the CLI driver from the docker CLI's exit code and stderr, the
 * Engine driver from the HTTP status and the daemon's JSON message); callers switch on the kind.
 */
export type DockerErrorKind =
  /** The docker CLI is not installed. */
  | 'not-installed'
  /** The daemon is down, or its socket is not there. */
  | 'daemon-unreachable'
  /** The daemon runs, but this user may not talk to it. */
  | 'daemon-permission-denied'
  | 'image-missing'
  | 'container-missing'
  /** The operation is already under way (a container's removal). */
  | 'in-progress'
  /** Docker cannot hand GPUs to containers (no NVIDIA container runtime). */
  | 'no-gpu-runtime'
  /** The image needs a newer CUDA than the host driver supports. */
  | 'cuda-requirement'
  /** The container's command does not exist (`docker run` exits 127). */
  | 'command-not-found'
  /** The container's command cannot be run (`docker run` exits 126). */
  | 'command-not-executable'
  | 'build-failed'
  /** Docker could not create or start a container, for another reason. */
  | 'container-start-failed'
  /** Any other operation Docker refused. */
  | 'request-failed';

/** A Docker failure: its kind, and Docker's own words (the daemon's message, or the CLI's). */
export type DockerFailure =
  | { kind: Exclude<DockerErrorKind, 'cuda-requirement'>; daemonMessage: string }
  | { kind: 'cuda-requirement'; requiredCuda: string; daemonMessage: string };

/** A Docker failure thrown: a CycleError (message, hint, exit code for the user) with its kind. */
export class DockerError extends CycleError {
  constructor(
    readonly failure: DockerFailure,
    init: { message: string; hint?: string; exitCode?: number; details?: string[] },
  ) {
    super({ exitCode: ExitCode.network, ...init });
    this.name = 'DockerError';
  }

  get kind(): DockerErrorKind {
    return this.failure.kind;
  }
}

/** Thrown by build() when the build ran and failed; carries the tail of the output. */
export class DockerBuildError extends DockerError {
  constructor(
    message: string,
    /** The exit code of the failing step; undefined when Docker itself failed (no step exited). */
    readonly stepExitCode: number | undefined,
    readonly tail: string[],
  ) {
    const lastLine = [...tail].reverse().find((line) => line.trim() !== '') ?? message;
    super({ kind: 'build-failed', daemonMessage: lastLine.trim() }, { message, exitCode: stepExitCode === undefined ? ExitCode.network : ExitCode.jobFailed });
    this.name = 'DockerBuildError';
  }
}

const DOCKER_MISSING_HINT = 'install Docker (https://docs.docker.com/engine/install/, or `apt-get install docker.io`), then run `cycle doctor`';
const DAEMON_DOWN_HINT = 'start the Docker daemon (`sudo systemctl start docker`, or open Docker Desktop), then run `cycle doctor`';

/**
 * The one place that reads Docker's words to tell failures apart: the docker CLI's stderr (its
 * only channel), and the message of an Engine API error where the HTTP status does not say
 * (GPU refusals and commands that cannot start both come as a 400/500 with a message).
 * Undefined when the text names none of the cases.
 */
export function classifyDockerMessage(text: string): DockerFailure | undefined {
  // Messages relayed from nvidia-container-cli come with escaped newlines.
  const unescaped = text.replace(/\\+n/g, '\n');
  const daemonMessage = text.trim();
  if (/permission denied while trying to connect/i.test(unescaped)) return { kind: 'daemon-permission-denied', daemonMessage };
  if (/Cannot connect to the Docker daemon|Is the docker daemon running|error during connect|docker daemon is not running/i.test(unescaped))
    return { kind: 'daemon-unreachable', daemonMessage };
  const requiredCuda = /unsatisfied condition: cuda>=([0-9]+\.[0-9]+)/.exec(unescaped)?.[1];
  if (requiredCuda !== undefined) return { kind: 'cuda-requirement', requiredCuda, daemonMessage };
  if (/could not select device driver ".*?" with capabilities: \[\[gpu\]\]/.test(unescaped)) return { kind: 'no-gpu-runtime', daemonMessage };
  if (/No such image|Unable to find image|pull access denied|repository does not exist|manifest unknown|invalid reference format/i.test(unescaped))
    return { kind: 'image-missing', daemonMessage };
  if (/no such container/i.test(unescaped)) return { kind: 'container-missing', daemonMessage };
  if (/is already in progress/i.test(unescaped)) return { kind: 'in-progress', daemonMessage };
  if (/executable file not found|no such file or directory/i.test(unescaped)) return { kind: 'command-not-found', daemonMessage };
  if (/permission denied/i.test(unescaped)) return { kind: 'command-not-executable', daemonMessage };
  return undefined;
}

/** The error for a failure of `what` ("inspect image x"), worded for the user. */
export function toDockerError(what: string, failure: DockerFailure): DockerError {
  const text = failure.daemonMessage.trim();
  if (failure.kind === 'daemon-unreachable' || failure.kind === 'daemon-permission-denied') {
    const permission = failure.kind === 'daemon-permission-denied';
    return new DockerError(failure, {
      message: permission ? 'permission denied talking to the Docker daemon' : 'the Docker daemon is not running or cannot be reached',
      hint: permission ? 'add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again)' : DAEMON_DOWN_HINT,
      details: text ? [text.split('\n')[0]!] : [],
    });
  }
  const firstLine = text.split('\n').find((line) => line.trim() !== '') ?? 'no output';
  return new DockerError(failure, { message: `Docker could not ${what}: ${firstLine.replace(/^(docker: )?Error( response from daemon)?:\s*/i, '')}` });
}

/** The error for a failure of `what`, from Docker's words (the docker CLI's stderr), classified. */
export function dockerErrorFromOutput(what: string, text: string): DockerError {
  return toDockerError(what, classifyDockerMessage(text) ?? { kind: 'request-failed', daemonMessage: text.trim() });
}

export function dockerNotInstalled(binary: string): DockerError {
  return new DockerError(
    { kind: 'not-installed', daemonMessage: `${binary}: not found` },
    { message: `Docker is not installed (\`${binary}\` was not found on PATH)`, hint: DOCKER_MISSING_HINT },
  );
}
