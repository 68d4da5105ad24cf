import fs from 'node:fs/promises';
import path from 'node:path';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import { BUILD_SCRIPT_PATH, COMPUTALOT_MANIFEST_PATH, DEFAULT_BUILD_CONTEXT, DEFAULT_DOCKERFILE, MANIFEST_PATH, RUN_SCRIPT_PATH } from './paths.js';
import type { CycleswapManifest, ParsedCycleswapManifest } from './cycleswap.js';
import type { ComputalotManifest } from './computalot.js';
import { diagnostic, formatDiagnostic, hasErrors, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { listBuildFiles, type BuildFile } from './build-files.js';
import { ensureStateDir, stateDir } from './state.js';
import { readJsonFile, sha256Hex, writeFileAtomic } from '../util/fs.js';
import { cycleVersion } from '../version.js';
import { isInside } from '../util/paths.js';
import type { PositionMap } from './positions.js';

export type ProjectFormat = 'cycleswap' | 'computalot';

export interface CycleswapProject {
  format: 'cycleswap';
  root: string;
  name: string;
  manifest: CycleswapManifest;
  buildFiles: BuildFile[];
  diagnostics: Diagnostic[];
}

export interface ComputalotProject {
  format: 'computalot';
  root: string;
  /** From the manifest's `name` extension key, if set. */
  name: string | undefined;
  manifest: ComputalotManifest;
  diagnostics: Diagnostic[];
}

export type Project = CycleswapProject | ComputalotProject;

/** The outcome of checking a project: always the diagnostics, the project when valid. */
export interface ProjectCheck {
  root: string;
  format: ProjectFormat;
  project?: Project;
  diagnostics: Diagnostic[];
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** The formats whose marker sits in `dir` itself: none, one, or (an error) both. */
export async function projectFormatsAt(dir: string): Promise<ProjectFormat[]> {
  const formats: ProjectFormat[] = [];
  if (await exists(path.join(dir, '.cycleswap'))) formats.push('cycleswap');
  if (await exists(path.join(dir, COMPUTALOT_MANIFEST_PATH))) formats.push('computalot');
  return formats;
}

/** Walks up from `start` to the folder holding `.cycleswap/` or `computalot.project.json`. */
export async function findProjectRoot(start: string): Promise<{ root: string; format: ProjectFormat }> {
  const found = await locateProject(start);
  if (found) return found;
  throw new CycleError({
    message: `no project found in ${path.resolve(start)} or any parent folder`,
    hint: 'run `cycle project init` to create one, or cd into a project (a folder with .cycleswap/ or computalot.project.json)',
    exitCode: ExitCode.invalidProject,
  });
}

/** findProjectRoot for callers to whom no project is an answer, not an error: undefined then. */
export async function locateProject(start: string): Promise<{ root: string; format: ProjectFormat } | undefined> {
  let dir = path.resolve(start);
  for (;;) {
    const formats = await projectFormatsAt(dir);
    if (formats.length > 1) {
      throw new CycleError({
        message: `${dir} has both .cycleswap/ and ${COMPUTALOT_MANIFEST_PATH}; a project has one format`,
        hint: 'remove the one you do not use',
        exitCode: ExitCode.invalidProject,
      });
    }
    const [format] = formats;
    if (format !== undefined) return { root: dir, format };
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * Validated manifests, by the SHA-256 of their text and the cycle version: the schema check
 * is a pure function of the text, so an unchanged manifest needs no TOML parser or zod
 * (~70 ms of imports) on the hot path. Filesystem rules are checked every time.
 */
interface ManifestCache {
  key: string;
  manifest: unknown;
  warnings: Diagnostic[];
}

const manifestCachePath = (root: string): string => path.join(stateDir(root), 'manifest-cache.json');
/** Bumped when a parsed manifest's shape changes, so a cache written by an older cycle is not read. */
const MANIFEST_SHAPE_REVISION = 2;
const manifestCacheKey = (format: ProjectFormat, text: string): string => `${cycleVersion()}:${MANIFEST_SHAPE_REVISION}:${format}:${sha256Hex(text)}`;

async function readManifestCache(root: string, key: string): Promise<ManifestCache | undefined> {
  const cache = await readJsonFile<ManifestCache>(manifestCachePath(root));
  return cache?.key === key ? cache : undefined;
}

async function writeManifestCache(root: string, cache: ManifestCache): Promise<void> {
  await ensureStateDir(root)
    .then(() => writeFileAtomic(manifestCachePath(root), JSON.stringify(cache)))
    .catch(() => undefined); // a read-only checkout works, just without the cache
}

export interface CheckOptions {
  /** Use and update the validated-manifest cache (commands that run the project). */
  useCache?: boolean;
}

/** Checks the project at or above `start` (the folder a command runs in). */
export async function checkProject(start: string, options: CheckOptions = {}): Promise<ProjectCheck> {
  const { root, format } = await findProjectRoot(start);
  return checkProjectAt(root, format, options);
}

/** Checks the project rooted exactly at `root`, searching nowhere else (the server's trees). */
export async function checkProjectAt(root: string, format: ProjectFormat, options: CheckOptions = {}): Promise<ProjectCheck> {
  const check = format === 'cycleswap' ? await checkCycleswap(root, options) : await checkComputalot(root, options);
  return { ...check, diagnostics: sortDiagnostics(check.diagnostics) };
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'EISDIR') return undefined;
    throw error;
  }
}

async function checkCycleswap(root: string, options: CheckOptions): Promise<ProjectCheck> {
  const diagnostics: Diagnostic[] = [];
  const text = await readText(path.join(root, MANIFEST_PATH));
  if (text === undefined) {
    diagnostics.push(
      diagnostic(
        'error',
        MANIFEST_PATH,
        { line: 1, column: 1 },
        '',
        'the manifest is missing',
        'run `cycle project init --force` to recreate .cycleswap/, or write manifest.toml',
      ),
    );
  }
  for (const script of [RUN_SCRIPT_PATH, BUILD_SCRIPT_PATH]) {
    const stat = await fs.stat(path.join(root, script)).catch(() => undefined);
    if (!stat?.isFile()) {
      diagnostics.push(
        diagnostic(
          'error',
          script,
          { line: 1, column: 1 },
          '',
          `${path.basename(script)} is missing`,
          `create ${script} (an empty script is fine), or run \`cycle project init --force\``,
        ),
      );
    }
  }
  if (text === undefined) return { root, format: 'cycleswap', diagnostics };

  const key = manifestCacheKey('cycleswap', text);
  const cached = options.useCache ? await readManifestCache(root, key) : undefined;
  let parsed: ParsedCycleswapManifest;
  if (cached) {
    const manifest = cached.manifest as CycleswapManifest;
    parsed = { manifest, diagnostics: cached.warnings, buildFileEntries: manifest.main.build_files.map((entry, index) => ({ index, entry })) };
  } else {
    const { parseCycleswapManifest } = await import('./cycleswap.js');
    parsed = parseCycleswapManifest(text);
  }
  diagnostics.push(...parsed.diagnostics);

  let buildFiles: BuildFile[] = [];
  if (parsed.buildFileEntries.length > 0) {
    const listing = await listBuildFiles(
      root,
      parsed.buildFileEntries.map((e) => e.entry),
    );
    buildFiles = listing.files;
    if (listing.problems.length > 0) {
      const { indexTomlPositions } = await import('./toml-positions.js');
      const positions = parsed.positions ?? indexTomlPositions(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
      for (const problem of listing.problems) {
        const index = parsed.buildFileEntries[problem.index]!.index;
        diagnostics.push(
          diagnostic('error', MANIFEST_PATH, positions.valueOf(['main', 'build_files', index]), ['main', 'build_files', index], problem.message, problem.hint),
        );
      }
    }
  }
  if (!parsed.manifest || hasErrors(diagnostics)) return { root, format: 'cycleswap', diagnostics };
  if (options.useCache && !cached) await writeManifestCache(root, { key, manifest: parsed.manifest, warnings: parsed.diagnostics });
  return {
    root,
    format: 'cycleswap',
    diagnostics,
    project: { format: 'cycleswap', root, name: parsed.manifest.main.name, manifest: parsed.manifest, buildFiles, diagnostics },
  };
}

async function checkComputalot(root: string, options: CheckOptions): Promise<ProjectCheck> {
  const diagnostics: Diagnostic[] = [];
  const text = (await readText(path.join(root, COMPUTALOT_MANIFEST_PATH))) ?? '';
  const key = manifestCacheKey('computalot', text);
  const cached = options.useCache ? await readManifestCache(root, key) : undefined;
  const parsed = cached
    ? { manifest: cached.manifest as ComputalotManifest, diagnostics: cached.warnings }
    : (await import('./computalot.js')).parseComputalotManifest(text);
  diagnostics.push(...parsed.diagnostics);
  diagnostics.push(...(await checkDockerBuildPaths(root, parsed.manifest, text)));
  if (!parsed.manifest || hasErrors(diagnostics)) return { root, format: 'computalot', diagnostics };
  if (options.useCache && !cached) await writeManifestCache(root, { key, manifest: parsed.manifest, warnings: parsed.diagnostics });
  return {
    root,
    format: 'computalot',
    diagnostics,
    project: { format: 'computalot', root, name: parsed.manifest.name, manifest: parsed.manifest, diagnostics },
  };
}

/**
 * The Dockerfile and build context that `build` names (a root `Dockerfile` by default) exist
 * inside the project. With an invalid manifest only the default Dockerfile is looked for, and
 * only when the manifest names no other.
 */
async function checkDockerBuildPaths(root: string, manifest: ComputalotManifest | undefined, text: string): Promise<Diagnostic[]> {
  // Positions are needed only for a problem: the JSON parser stays off the hot path.
  let positions: PositionMap | undefined;
  const locate = async (): Promise<PositionMap> =>
    (positions ??= (await import('./json-positions.js')).parseJsonWithPositions(text.replace(/^\uFEFF/, '')).positions);
  const named = async (field: 'dockerfile' | 'context'): Promise<boolean> => (await locate()).get(['build', field]) !== undefined;
  if (!manifest && ((await named('dockerfile')) || (await named('context')))) return [];
  const build = manifest?.build ?? { dockerfile: DEFAULT_DOCKERFILE, context: DEFAULT_BUILD_CONTEXT };
  const inRoot = path.posix.normalize(build.context) === DEFAULT_BUILD_CONTEXT;
  const realRoot = await fs.realpath(root);
  const inspect = async (relative: string): Promise<'missing' | 'file' | 'folder' | 'other' | 'outside'> => {
    const real = await fs.realpath(path.join(root, relative)).catch(() => undefined);
    if (real === undefined) return 'missing';
    if (!isInside(realRoot, real)) return 'outside';
    const stat = await fs.stat(real);
    return stat.isFile() ? 'file' : stat.isDirectory() ? 'folder' : 'other';
  };
  const problem = (kind: 'missing' | 'outside' | 'file' | 'folder' | 'other', wanted: string): string =>
    kind === 'missing' ? 'does not exist' : kind === 'outside' ? 'leads out of the project (a symlink)' : `is not a ${wanted}`;

  const context = await inspect(build.context);
  if (context !== 'folder') {
    return [
      diagnostic(
        'error',
        COMPUTALOT_MANIFEST_PATH,
        (await locate()).valueOf(['build', 'context']),
        ['build', 'context'],
        `the build context ${JSON.stringify(build.context)} ${problem(context, 'folder')}; expected a folder inside the project`,
        'create the folder, or set "context" to "." (the project root)',
      ),
    ];
  }
  const dockerfile = await inspect(build.dockerfile);
  if (dockerfile === 'file') return [];
  if (dockerfile === 'missing' && !(await named('dockerfile'))) {
    return [
      diagnostic(
        'error',
        build.dockerfile,
        { line: 1, column: 1 },
        '',
        inRoot ? `no Dockerfile beside ${COMPUTALOT_MANIFEST_PATH}` : `no Dockerfile in the build context ${JSON.stringify(build.context)}`,
        'write a Dockerfile that installs the dependencies and copies the code (see `cycle project init --format computalot`), or name yours in "build": {"dockerfile": "…"}',
      ),
    ];
  }
  return [
    diagnostic(
      'error',
      COMPUTALOT_MANIFEST_PATH,
      (await locate()).valueOf(['build', 'dockerfile']),
      ['build', 'dockerfile'],
      `the Dockerfile ${JSON.stringify(build.dockerfile)} ${problem(dockerfile, 'file')}; expected a file inside the project`,
      'create it, or point "dockerfile" at your Dockerfile (relative to the project root)',
    ),
  ];
}

/** The valid project at or above `start` (through the manifest cache), or exit 3 with every problem. */
export async function loadProject(start: string): Promise<Project> {
  const check = await checkProject(start, { useCache: true });
  if (check.project) return check.project;
  throw invalidProjectError(check);
}

export function invalidProjectError(check: ProjectCheck): CycleError {
  const errors = check.diagnostics.filter((d) => d.severity === 'error');
  return new CycleError({
    message: `the project in ${check.root} is invalid (${errors.length} problem${errors.length === 1 ? '' : 's'})`,
    hint: 'fix the problems above, then run `cycle project validate`',
    exitCode: ExitCode.invalidProject,
    details: check.diagnostics.flatMap((d) => formatDiagnostic(d)),
  });
}
