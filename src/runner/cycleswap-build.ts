import path from 'node:path';
import fs from 'node:fs/promises';
import { CycleError, ExitCode, usageError } from '../errors.js';
import type { DockerDriver, ImageDetails } from '../docker/driver.js';
import { DockerBuildError } from '../docker/errors.js';
import type { CycleswapProject } from '../project/load.js';
import { collectBuildInputs } from '../build-hash/hash.js';
import { tarStream, type TarEntry } from '../pack/tar.js';
import { sortByBytes } from '../project/build-files.js';
import { LABELS, repositoryComponent, shortHash } from './images.js';
import { presentBuildLine } from '../docker/build-output.js';
import type { BuildStore } from './build-store.js';

export interface BuildFlags {
  rebuild: boolean;
  clean: boolean;
}

export interface ImageBuildOptions {
  docker: DockerDriver;
  store: BuildStore;
  /** Owner of the images (see LABELS.projectKey). */
  projectKey: string;
  /** Repository prefix: `cycle` locally, `cycle-server` for the local backend. */
  repositoryPrefix: string;
  flags: BuildFlags;
  /** Past this many layers the previous image is flattened before building on it. */
  maxLayers: number;
  /** Progress messages (what is being built, and why). */
  report: (message: string) => void;
  /** Each line of build output, live. */
  onOutput: (line: string) => void;
  signal?: AbortSignal;
  now: () => Date;
  /** Ask Docker that a recorded image still exists instead of trusting the record. */
  verify?: boolean;
  /** Keep the stat cache in the project's .cycle/ (not for the server's read-only trees). */
  useStatCache?: boolean;
}

export type BuildMode = 'reused' | 'first' | 'incremental' | 'rebuild' | 'clean';

export interface ImageBuildResult {
  imageId: string;
  tag: string;
  hash: string;
  mode: BuildMode;
  /** The image this build started from (an image id or the base image). */
  from?: string;
  flattened: boolean;
  /** false when a build record was trusted without asking Docker. */
  verified: boolean;
}

export const DEFAULT_MAX_LAYERS = 64;

export function checkBuildFlags(flags: BuildFlags): void {
  if (flags.rebuild && flags.clean) {
    throw usageError(
      '--rebuild and --clean cannot be used together',
      '--rebuild re-runs build.sh on the previous build image; --clean starts from the base image',
    );
  }
}

/**
 * The build rules: unchanged hash → reuse the image; changed → build.sh on top of the previous
 * build image (or the base image when there is none); --rebuild → on top of the previous
 * image anyway; --clean → from the base image. The context holds .cycleswap/ and the build
 * files only.
 */
export async function ensureCycleswapImage(project: CycleswapProject, options: ImageBuildOptions): Promise<ImageBuildResult> {
  checkBuildFlags(options.flags);
  const { docker, store, flags } = options;
  const { inputs, hash } = await collectBuildInputs(project, { useCache: options.useStatCache !== false });
  const base = project.manifest.image.ref;
  const repository = `${options.repositoryPrefix}/${repositoryComponent(project.name)}`;
  const tag = `${repository}:${shortHash(hash)}`;
  const last = await store.last();

  if (!flags.rebuild && !flags.clean) {
    // An image id is a content hash: when the record matches, the image is what it says. Not
    // asking Docker saves a round trip on every unchanged run; a deleted image shows up when
    // the run fails, and the caller then asks again with `verify`.
    if (!options.verify && last?.hash === hash && last.image.tag === tag)
      return { imageId: last.image.id, tag, hash, mode: 'reused', flattened: false, verified: false };
    const current = await findImage(docker, options.projectKey, hash, last);
    if (current) return { imageId: current.id, tag, hash, mode: 'reused', flattened: false, verified: true };
  }

  let previous = flags.clean ? undefined : await findPrevious(docker, options.projectKey, base, last);
  let flattened = false;
  if (previous && previous.layers.length + 2 > options.maxLayers) {
    options.report(`the build image has ${previous.layers.length} layers (limit ${options.maxLayers}): flattening it into one layer before building on it`);
    const flatId = await docker.flattenImage(previous.id, `${repository}:flattened`, flattenChanges(previous));
    previous = await docker.inspectImage(flatId);
    flattened = true;
  }
  const mode: BuildMode = flags.clean ? 'clean' : !previous ? 'first' : flags.rebuild && last?.hash === hash ? 'rebuild' : 'incremental';
  options.report(describeBuild(mode, base, last, hash));

  // BuildKit resolves `FROM sha256:…` as a registry name: the previous image needs a tag.
  const fromTag = previous ? `${repository}:from-${previous.id.replace(/^sha256:/, '').slice(0, 12)}` : undefined;
  if (previous && fromTag) await docker.tagImage(previous.id, fromTag);
  const from = fromTag ?? base;
  const labels = { [LABELS.project]: project.name, [LABELS.projectKey]: options.projectKey, [LABELS.buildHash]: hash, [LABELS.base]: base };
  const context = await buildContext(project, from, labels);
  let imageId: string;
  try {
    ({ imageId } = await docker.build({
      context: { kind: 'tar', open: () => tarStream(context) },
      tags: [tag],
      // Labels are in the Dockerfile: one LABEL step, where each --label flag is a step of its own.
      labels: {},
      onOutput: options.onOutput,
      ...(options.signal ? { signal: options.signal } : {}),
    }));
  } catch (error) {
    if (error instanceof DockerBuildError) throw buildFailed(error);
    throw error;
  } finally {
    if (fromTag) await docker.removeImage(fromTag).catch(() => undefined);
    if (flattened) await docker.removeImage(`${repository}:flattened`).catch(() => undefined);
  }
  await store.save({ hash, inputs, image: { id: imageId, tag }, base, builtAt: options.now().toISOString() });
  // The superseded tag goes; its layers stay as long as the new image builds on them.
  if (last && last.image.tag !== tag && last.image.id !== imageId) await docker.removeImage(last.image.tag).catch(() => undefined);
  return { imageId, tag, hash, mode, from: previous?.id ?? base, flattened, verified: true };
}

async function findImage(
  docker: DockerDriver,
  projectKey: string,
  hash: string,
  last: { hash: string; image: { id: string } } | undefined,
): Promise<ImageDetails | undefined> {
  if (last?.hash === hash) {
    const image = await docker.inspectImage(last.image.id);
    if (image && image.labels[LABELS.buildHash] === hash) return image;
  }
  const [match] = await docker.listImages({ label: [`${LABELS.projectKey}=${projectKey}`, `${LABELS.buildHash}=${hash}`] });
  return match ? docker.inspectImage(match.id) : undefined;
}

/** The previous build image of this project on the same base, if it still exists. */
async function findPrevious(
  docker: DockerDriver,
  projectKey: string,
  base: string,
  last: { image: { id: string } } | undefined,
): Promise<ImageDetails | undefined> {
  if (last) {
    const image = await docker.inspectImage(last.image.id);
    if (image && image.labels[LABELS.base] === base && image.labels[LABELS.projectKey] === projectKey) return image;
  }
  // No record (a fresh checkout, deleted .cycle/): the newest image of this project on this base.
  const candidates = await docker.listImages({ label: [`${LABELS.projectKey}=${projectKey}`, `${LABELS.base}=${base}`] });
  const newest = candidates.sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
  return newest ? docker.inspectImage(newest.id) : undefined;
}

/** `docker import` drops the image config: put back what a build image has. */
function flattenChanges(image: ImageDetails): string[] {
  const changes = [`WORKDIR ${image.workdir || '/app'}`];
  for (const variable of image.env) {
    const eq = variable.indexOf('=');
    changes.push(`ENV ${variable.slice(0, eq)}=${JSON.stringify(variable.slice(eq + 1))}`);
  }
  for (const [key, value] of Object.entries(image.labels)) changes.push(`LABEL ${JSON.stringify(key)}=${JSON.stringify(value)}`);
  if (image.cmd) changes.push(`CMD ${JSON.stringify(image.cmd)}`);
  return changes;
}

function describeBuild(mode: BuildMode, base: string, last: { hash: string } | undefined, hash: string): string {
  switch (mode) {
    case 'first':
      return `building the image from ${base} (no previous build image)`;
    case 'clean':
      return `building the image from ${base} (--clean)`;
    case 'rebuild':
      return `re-running build.sh on the previous build image (--rebuild)`;
    default:
      return last && last.hash !== hash
        ? `build inputs changed: running build.sh on top of the previous build image`
        : `running build.sh on top of the previous build image`;
  }
}

/** Where the build files wait in the image until the step script puts them in /app. */
const STAGE = '/tmp/cycle-build';

/**
 * The step script: it removes the files of the previous build that are gone (a build image
 * keeps /app between builds, so `uv sync` finds its .venv), copies .cycleswap/ and the build
 * files into /app, and runs build.sh there.
 */
const STEP_SCRIPT = `set -euo pipefail
stage=${STAGE}
record=/var/lib/cycle/build-files.txt
if [ -f "$record" ]; then
  while IFS= read -r rel; do
    [ -e "$stage/files/$rel" ] || rm -f -- "/app/$rel"
  done < "$record"
fi
mkdir -p /app /var/lib/cycle
rm -rf /app/.cycleswap
cp -a "$stage/files/." /app/
(cd "$stage/files" && find . -type f -o -type l | sed 's|^\\./||') > "$record"
rm -rf "$stage"
cd /app
export INSIDE_CYCLESWAP_CONTAINER=1
exec bash .cycleswap/build.sh
`;

export function cycleswapDockerfile(from: string, labels: Record<string, string>): string {
  const label = Object.entries(labels)
    .map(([key, value]) => `${JSON.stringify(key)}=${JSON.stringify(value)}`)
    .join(' ');
  return `FROM ${from}
WORKDIR /app
COPY stage/ ${STAGE}/
RUN ["/bin/bash", "${STAGE}/step.sh"]
LABEL ${label}
`;
}

/** The build context: Dockerfile, the step script, .cycleswap/ and the build files; nothing else. */
export async function buildContext(project: CycleswapProject, from: string, labels: Record<string, string>): Promise<TarEntry[]> {
  const dockerfile = Buffer.from(cycleswapDockerfile(from, labels));
  const entries: TarEntry[] = [
    { path: 'Dockerfile', type: 'file', size: dockerfile.length, executable: false, source: dockerfile },
    { path: 'stage', type: 'directory', size: 0, executable: true },
    { path: 'stage/step.sh', type: 'file', size: Buffer.byteLength(STEP_SCRIPT), executable: true, source: Buffer.from(STEP_SCRIPT) },
  ];
  const files = new Map<string, string>();
  const walk = async (relative: string): Promise<void> => {
    for (const dirent of await fs.readdir(path.join(project.root, relative), { withFileTypes: true })) {
      const rel = `${relative}/${dirent.name}`;
      if (dirent.isDirectory()) await walk(rel);
      else files.set(rel, path.join(project.root, rel));
    }
  };
  await walk('.cycleswap');
  for (const file of project.buildFiles) files.set(file.path, file.absolute);
  const directories = new Set<string>();
  for (const rel of files.keys()) {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) directories.add(parts.slice(0, i).join('/'));
  }
  entries.push({ path: 'stage/files', type: 'directory', size: 0, executable: true });
  for (const dir of sortByBytes([...directories], (dir) => dir)) entries.push({ path: `stage/files/${dir}`, type: 'directory', size: 0, executable: true });
  for (const rel of sortByBytes([...files.keys()], (rel) => rel)) {
    const absolute = files.get(rel)!;
    const stat = await fs.stat(absolute); // symlinks inside the project are followed (validated)
    entries.push({ path: `stage/files/${rel}`, type: 'file', size: stat.size, executable: (stat.mode & 0o100) !== 0, source: absolute });
  }
  return entries;
}

function buildFailed(error: DockerBuildError): CycleError {
  if (error.stepExitCode === undefined) {
    // No step exited: Docker itself failed (a base image it cannot find, a full disk…).
    return new CycleError({
      message: `Docker could not build the image: ${error.failure.daemonMessage}`,
      exitCode: ExitCode.network,
      details: error.tail.slice(-8).map((line) => `  ${line}`),
    });
  }
  // Docker's own step lines are noise here: show what build.sh printed last.
  const lines = error.tail
    .map((line) => presentBuildLine(line))
    .filter((line): line is string => line !== undefined && !/returned a non-zero code|did not complete successfully|executor failed running/.test(line));
  return new CycleError({
    message: `build.sh failed with exit code ${error.stepExitCode}`,
    hint: 'fix .cycleswap/build.sh (or a build file) and run again; the previous image is untouched',
    exitCode: ExitCode.jobFailed,
    details: ['last lines of the build:', ...lines.slice(-15).map((line) => `  ${line}`)],
  });
}
