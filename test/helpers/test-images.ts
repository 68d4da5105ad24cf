import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { LABELS } from '../../src/runner/images.js';

/**
 * The images e2e and security tests build, and their removal. Every project a test names is
 * `e2e-<run>-<slug>` (testProjectName in e2e.ts), so the images of one run are told apart from
 * other runs' on a shared daemon by the labels cycle puts on them (cycle.project, and
 * cycle.project-key `server:<name>`). No vitest import: the global setup loads this file.
 */

/** A run's id: 8 hex digits, for `e2e-<run>-` names. */
export function newTestRun(): string {
  return randomBytes(4).toString('hex');
}

/** The prefix of every project name a run's tests make. */
export function testRunPrefix(run: string): string {
  return `e2e-${run}-`;
}

/** Any run's test projects (and the fixed names older tests used): what CI may remove at the end. */
export const ANY_TEST_PROJECT = /^e2e-/;

/** The staging folder of cycle's .cycleswap/ builds (cycleswap-build.ts): a COPY step into it names a cycle build. */
const CYCLE_BUILD_STAGE = ' in /tmp/cycle-build/';

/**
 * What a run removes at its end: its own projects' images; with `all` (a daemon the tests have
 * to themselves: CI), every test project's and the dangling steps of interrupted cycle builds.
 */
export function testImageScope(run: string, all: boolean): TestImageScope {
  const prefix = testRunPrefix(run);
  return { projects: (name) => (all ? ANY_TEST_PROJECT.test(name) : name.startsWith(prefix)), strayBuildSteps: all };
}

export interface TestImageScope {
  /** Whether a project name (cycle.project, or cycle.project-key `server:<name>`) is one to remove. */
  projects: (name: string) => boolean;
  /**
   * Also dangling, unlabelled images left by interrupted or failed cycle builds (the legacy
   * builder keeps the COPY step's image). Nothing says which run made them: only for a daemon
   * the tests have to themselves (CI), never while other runs share it.
   */
  strayBuildSteps: boolean;
}

interface InspectedImage {
  Id: string;
  Parent: string;
  RepoTags: string[] | null;
  Config?: { Labels?: Record<string, string> | null } | null;
  ContainerConfig?: { Cmd?: string[] | null } | null;
}

/**
 * Removes the images of the projects in scope (a build on a project's image inherits its
 * labels, so later builds and their steps are in scope too), children first; Docker prunes the
 * untagged parents each leaves. Images of other projects, and tagged base images such as
 * ubuntu:24.04 or cycle-test-base:*, are never touched. Returns the ids it asked Docker to remove.
 */
export async function removeTestImages(scope: TestImageScope): Promise<string[]> {
  const ids = [...new Set((await dockerOutput(['image', 'ls', '--all', '--no-trunc', '--quiet'])).split('\n').filter(Boolean))];
  if (ids.length === 0) return [];
  // An image removed meanwhile makes inspect fail for it alone: what it printed for the others is used.
  const images: InspectedImage[] = JSON.parse((await dockerOutput(['image', 'inspect', ...ids])) || '[]');
  const byId = new Map(images.map((image) => [image.Id, image]));
  const hasChildren = new Set(images.map((image) => image.Parent).filter(Boolean));
  const inScope = (image: InspectedImage): boolean => {
    const labels = image.Config?.Labels ?? {};
    const project = labels[LABELS.project];
    const key = labels[LABELS.projectKey];
    if (project !== undefined && scope.projects(project)) return true;
    // A server's (server:NAME) and a daemon's (daemon:NAME) builds of a test project.
    const owner = key === undefined ? undefined : /^(?:server|daemon):(.*)$/.exec(key)?.[1];
    return owner !== undefined && scope.projects(owner);
  };
  const strayBuildStep = (image: InspectedImage): boolean =>
    scope.strayBuildSteps &&
    !image.RepoTags?.length &&
    !hasChildren.has(image.Id) &&
    Object.keys(image.Config?.Labels ?? {}).every((label) => !label.startsWith('cycle.')) &&
    (image.ContainerConfig?.Cmd ?? []).join(' ').includes(CYCLE_BUILD_STAGE);
  const chosen = new Set(images.filter((image) => inScope(image) || strayBuildStep(image)).map((image) => image.Id));
  // Children first (an image built on another, as a later build on the previous one): a parent
  // with children cannot be removed, and each removal prunes its untagged parents.
  const depth = (image: InspectedImage): number => {
    let chosenAncestors = 0;
    for (let parent = byId.get(image.Parent); parent; parent = byId.get(parent.Parent)) if (chosen.has(parent.Id)) chosenAncestors++;
    return chosenAncestors;
  };
  const levels = new Map<number, string[]>();
  for (const image of images.filter((candidate) => chosen.has(candidate.Id))) {
    const level = depth(image);
    levels.set(level, [...(levels.get(level) ?? []), image.Id]);
  }
  for (const level of [...levels.keys()].sort((a, b) => b - a)) await dockerOutput(['image', 'rm', '--force', ...(levels.get(level) ?? [])]);
  return [...chosen];
}

/** Runs docker; its stdout whatever the exit (a partial answer is still an answer). */
function dockerOutput(args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile('docker', args, { maxBuffer: 256 << 20 }, (_error, stdout) => resolve(String(stdout).trim()));
  });
}
