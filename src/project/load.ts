import fs from 'node:fs/promises';
import path from 'node:path';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import { BUILD_SCRIPT_PATH, MANIFEST_PATH, RUN_SCRIPT_PATH, parseCycleswapManifest, type CycleswapManifest } from './cycleswap.js';
import { COMPUTALOT_MANIFEST_PATH, parseComputalotManifest, type ComputalotManifest } from './computalot.js';
import { diagnostic, formatDiagnostic, hasErrors, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { listBuildFiles, type BuildFile } from './build-files.js';

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

/** Walks up from `start` to the folder holding `.cycleswap/` or `computalot.project.json`. */
export async function findProjectRoot(start: string): Promise<{ root: string; format: ProjectFormat }> {
  let dir = path.resolve(start);
  for (;;) {
    const cycleswap = await exists(path.join(dir, '.cycleswap'));
    const computalot = await exists(path.join(dir, COMPUTALOT_MANIFEST_PATH));
    if (cycleswap && computalot) {
      throw new CycleError({
        message: `${dir} has both .cycleswap/ and ${COMPUTALOT_MANIFEST_PATH}; a project has one format`,
        hint: 'remove the one you do not use',
        exitCode: ExitCode.invalidProject,
      });
    }
    if (cycleswap) return { root: dir, format: 'cycleswap' };
    if (computalot) return { root: dir, format: 'computalot' };
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new CycleError({
        message: `no project found in ${path.resolve(start)} or any parent folder`,
        hint: 'run `cycle project init` to create one, or cd into a project (a folder with .cycleswap/ or computalot.project.json)',
        exitCode: ExitCode.invalidProject,
      });
    }
    dir = parent;
  }
}

export async function checkProject(start: string): Promise<ProjectCheck> {
  const { root, format } = await findProjectRoot(start);
  const check = format === 'cycleswap' ? await checkCycleswap(root) : await checkComputalot(root);
  return { ...check, diagnostics: sortDiagnostics(check.diagnostics) };
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    if (errnoCode(error) === 'EISDIR') return undefined;
    throw error;
  }
}

async function checkCycleswap(root: string): Promise<ProjectCheck> {
  const diagnostics: Diagnostic[] = [];
  const text = await readText(path.join(root, MANIFEST_PATH));
  if (text === undefined) {
    diagnostics.push(diagnostic('error', MANIFEST_PATH, { line: 1, column: 1 }, '', 'the manifest is missing', 'run `cycle project init --force` to recreate .cycleswap/, or write manifest.toml'));
  }
  for (const script of [RUN_SCRIPT_PATH, BUILD_SCRIPT_PATH]) {
    const stat = await fs.stat(path.join(root, script)).catch(() => undefined);
    if (!stat?.isFile()) {
      diagnostics.push(diagnostic('error', script, { line: 1, column: 1 }, '', `${path.basename(script)} is missing`, `create ${script} (an empty script is fine), or run \`cycle project init --force\``));
    }
  }
  if (text === undefined) return { root, format: 'cycleswap', diagnostics };
  const parsed = parseCycleswapManifest(text);
  diagnostics.push(...parsed.diagnostics);
  let buildFiles: BuildFile[] = [];
  if (parsed.buildFileEntries.length > 0 && parsed.positions) {
    const positions = parsed.positions;
    const listing = await listBuildFiles(root, parsed.buildFileEntries.map((e) => e.entry));
    buildFiles = listing.files;
    for (const problem of listing.problems) {
      const index = parsed.buildFileEntries[problem.index]!.index;
      diagnostics.push(diagnostic('error', MANIFEST_PATH, positions.valueOf(['main', 'build_files', index]), ['main', 'build_files', index], problem.message, problem.hint));
    }
  }
  if (!parsed.manifest || hasErrors(diagnostics)) return { root, format: 'cycleswap', diagnostics };
  return {
    root,
    format: 'cycleswap',
    diagnostics,
    project: { format: 'cycleswap', root, name: parsed.manifest.main.name, manifest: parsed.manifest, buildFiles, diagnostics },
  };
}

async function checkComputalot(root: string): Promise<ProjectCheck> {
  const diagnostics: Diagnostic[] = [];
  const text = (await readText(path.join(root, COMPUTALOT_MANIFEST_PATH))) ?? '';
  const parsed = parseComputalotManifest(text);
  diagnostics.push(...parsed.diagnostics);
  if (!(await exists(path.join(root, 'Dockerfile')))) {
    diagnostics.push(diagnostic('error', 'Dockerfile', { line: 1, column: 1 }, '', `no Dockerfile beside ${COMPUTALOT_MANIFEST_PATH}`, 'write a Dockerfile that installs the dependencies and copies the code (see `cycle project init --format computalot`)'));
  }
  if (!parsed.manifest || hasErrors(diagnostics)) return { root, format: 'computalot', diagnostics };
  return {
    root,
    format: 'computalot',
    diagnostics,
    project: { format: 'computalot', root, name: parsed.manifest.name, manifest: parsed.manifest, diagnostics },
  };
}

/** The valid project at or above `start`, or exit 3 with every problem listed. */
export async function loadProject(start: string): Promise<Project> {
  const check = await checkProject(start);
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
