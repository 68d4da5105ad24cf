import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { newTestRun, removeTestImages, testImageScope } from '../helpers/test-images.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** This run's id: every project a test makes is named `e2e-<run>-...` (testProjectName, test/helpers/e2e.ts). */
    testRun?: string;
  }
}

/**
 * e2e tests need the real Docker daemon and the local base images (scripts/setup.sh makes
 * both). They are never skipped: without Docker the run fails here, saying what to do.
 *
 * At the end, the images the run's tests built are removed (by the `e2e-<run>-` names of their
 * projects, with what was built on them). Other runs may share the daemon, so only this run's
 * go, unless CI is set or CYCLE_TEST_IMAGES=all: then every test-made image (`e2e-*` projects)
 * and the dangling steps of interrupted cycle builds go too. Base images are never removed.
 */
export default function setup(project: TestProject): () => Promise<void> {
  const fail = (message: string): never => {
    throw new Error(`e2e tests need Docker: ${message}\nRun \`bash scripts/setup.sh\` first (it installs and starts Docker and builds the base image).`);
  };
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe' });
  } catch (error) {
    fail(
      `the daemon is not reachable (${
        String((error as { stderr?: Buffer }).stderr ?? error)
          .trim()
          .split('\n')[0]
      })`,
    );
  }
  for (const image of ['ubuntu:24.04', 'ubuntu:22.04']) {
    try {
      execFileSync('docker', ['image', 'inspect', image], { stdio: 'pipe' });
    } catch {
      fail(`the base image ${image} is missing`);
    }
  }
  execFileSync('node', ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  const run = newTestRun();
  project.provide('testRun', run);
  return async () => {
    const all = (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') || process.env.CYCLE_TEST_IMAGES === 'all';
    await removeTestImages(testImageScope(run, all));
  };
}
