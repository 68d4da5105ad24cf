import path from 'node:path';
import { CycleError, ExitCode } from '../errors.js';
import type { DockerDriver, ImageDetails } from '../docker/driver.js';
import { DockerBuildError } from '../docker/errors.js';
import { presentBuildLine } from '../docker/build-output.js';
import type { InitCommand } from '../project/computalot.js';
import { tarStream } from '../pack/tar.js';

/*
 * `runtime.init.commands` run as generated follow-up builds, one per command, each `FROM` the
 * image before it, rather than as a container that is then committed. Why: a build keeps the
 * image config by construction (`docker commit` merges the container's overridden
 * entrypoint, cmd, env and workdir into the image, and cannot remove an env var again), needs
 * no new driver method, and works alike with the legacy builder and BuildKit. An init command
 * is preparation, like the Dockerfile's RUN steps: it runs as they do (the image's user, the
 * build's network, so `uv sync` can fetch), not with a job's lock-down.
 */

/** Build arguments that carry values into the generated Dockerfile (a value is never written into it: no quoting). */
const SET_PREFIX = 'CYCLE_INIT_SET_';
const RESTORE_PREFIX = 'CYCLE_INIT_RESTORE_';
const CWD_ARG = 'CYCLE_INIT_CWD';
const WORKDIR_ARG = 'CYCLE_INIT_WORKDIR';

export interface InitRun {
  docker: DockerDriver;
  /** The image the Dockerfile built, by a tag (BuildKit resolves `FROM sha256:…` as a registry name). */
  from: string;
  /** Its config, which the prepared image keeps. */
  built: ImageDetails;
  commands: readonly InitCommand[];
  /** `runtime.workdir`: what a relative `cwd` is relative to. */
  workdir: string;
  /** The tag of the prepared image, and the labels only it carries (the build hash: a half-prepared image is never reused). */
  finalTag: string;
  finalLabels: Record<string, string>;
  /** A tag for the image after command `index` (the last one gets `finalTag`); removed again. */
  stepTag: (index: number) => string;
  report: (message: string) => void;
  onOutput: (line: string) => void;
  signal?: AbortSignal;
}

/** What names an init command in progress and errors: its label, else its command. */
export function initLabel(command: InitCommand): string {
  return command.label ?? command.command.join(' ');
}

/** The folder an init command runs in: its `cwd` against `runtime.workdir`, default the workdir. */
export function initCwd(workdir: string, cwd: string | undefined): string {
  return path.posix.resolve(workdir, cwd ?? '.');
}

/** Runs the init commands in order on top of `from`; returns the prepared image's id. */
export async function applyInitCommands(run: InitRun): Promise<string> {
  const { docker, commands } = run;
  const temporary: string[] = [];
  let from = run.from;
  let imageId = '';
  try {
    for (const [index, command] of commands.entries()) {
      const last = index === commands.length - 1;
      const tag = last ? run.finalTag : run.stepTag(index);
      const label = initLabel(command);
      run.report(`running init "${label}"`);
      const step = initDockerfile(from, command, run.built, initCwd(run.workdir, command.cwd), last ? run.finalLabels : {});
      const dockerfile = Buffer.from(step.dockerfile);
      try {
        ({ imageId } = await docker.build({
          context: {
            kind: 'tar',
            open: () => tarStream([{ path: 'Dockerfile', type: 'file', size: dockerfile.length, executable: false, source: dockerfile }]),
          },
          buildArgs: step.buildArgs,
          tags: [tag],
          // Labels are in the Dockerfile (each --label is a step of its own on the legacy builder).
          labels: {},
          // cycle decides when init runs: Docker's cache must not skip it.
          noCache: true,
          onOutput: run.onOutput,
          ...(run.signal ? { signal: run.signal } : {}),
        }));
      } catch (error) {
        if (error instanceof DockerBuildError) throw initFailed(index, label, error);
        throw error;
      }
      if (!last) temporary.push(tag);
      from = tag;
    }
  } finally {
    for (const tag of temporary) await docker.removeImage(tag).catch(() => undefined);
  }
  return imageId;
}

/**
 * The follow-up build of one init command: exec-form `RUN` (no shell needed) in `cwd`, with
 * its env. Env the image does not set comes in as `ARG`s, which the image config never keeps;
 * env the image sets (an ARG cannot override an ENV) is set with `ENV` and put back after, as
 * is the workdir, so the prepared image's config (entrypoint, cmd, workdir, env, user) is the
 * built one's. Values travel as build arguments and are only referenced in the Dockerfile.
 */
export function initDockerfile(
  from: string,
  command: InitCommand,
  built: Pick<ImageDetails, 'env' | 'workdir'>,
  cwd: string,
  labels: Record<string, string>,
): { dockerfile: string; buildArgs: Record<string, string> } {
  const imageEnv = new Map(
    built.env.map((variable) => {
      const eq = variable.indexOf('=');
      return eq === -1 ? [variable, ''] : [variable.slice(0, eq), variable.slice(eq + 1)];
    }),
  );
  const lines = [`FROM ${from}`];
  const after: string[] = [];
  const buildArgs: Record<string, string> = {};
  for (const key of Object.keys(command.env).sort()) {
    const value = command.env[key]!;
    const original = imageEnv.get(key);
    if (original === undefined) {
      lines.push(`ARG ${key}`);
      buildArgs[key] = value;
    } else {
      lines.push(`ARG ${SET_PREFIX}${key}`, `ENV ${key}="\${${SET_PREFIX}${key}}"`);
      buildArgs[`${SET_PREFIX}${key}`] = value;
      after.push(`ARG ${RESTORE_PREFIX}${key}`, `ENV ${key}="\${${RESTORE_PREFIX}${key}}"`);
      buildArgs[`${RESTORE_PREFIX}${key}`] = original;
    }
  }
  if (cwd !== built.workdir) {
    lines.push(`ARG ${CWD_ARG}`, `WORKDIR "\${${CWD_ARG}}"`);
    buildArgs[CWD_ARG] = cwd;
    // An image without a WORKDIR runs in /: put back "/", the same folder.
    after.push(`ARG ${WORKDIR_ARG}`, `WORKDIR "\${${WORKDIR_ARG}}"`);
    buildArgs[WORKDIR_ARG] = built.workdir || '/';
  }
  lines.push(`RUN ${JSON.stringify(command.command)}`, ...after);
  const label = Object.entries(labels)
    .map(([key, value]) => `${JSON.stringify(key)}=${JSON.stringify(value)}`)
    .join(' ');
  if (label) lines.push(`LABEL ${label}`);
  return { dockerfile: lines.join('\n') + '\n', buildArgs };
}

function initFailed(index: number, label: string, error: DockerBuildError): CycleError {
  const field = `runtime.init.commands[${index}]`;
  // Docker's own step lines are noise here: show what the command printed last.
  const output = error.tail
    .map((line) => presentBuildLine(line))
    .filter((line): line is string => line !== undefined && !/returned a non-zero code|did not complete successfully|executor failed running/.test(line));
  // The legacy builder gives no exit code for a program that is not in the image; BuildKit says 1.
  const notFound = error.tail.some((line) => line.includes('executable file not found'));
  const hint = notFound
    ? `install the program in the Dockerfile, or fix "command" in ${field} of computalot.project.json`
    : `fix the command (or what it needs in the Dockerfile) in ${field} of computalot.project.json, then run again`;
  const message =
    error.stepExitCode !== undefined
      ? `${field} "${label}" exited with code ${error.stepExitCode}`
      : `${field} "${label}" could not run: ${error.failure.daemonMessage}`;
  const shown = error.stepExitCode !== undefined ? output : output.filter((line) => line.trim() !== error.failure.daemonMessage);
  return new CycleError({
    message,
    hint,
    exitCode: ExitCode.jobFailed,
    details: shown.length > 0 ? ['last lines of its output:', ...shown.slice(-15).map((line) => `  ${line}`)] : [],
  });
}
