import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * Global setup (vitest.config.ts, every project): one temp root per run and project, under
 * which test/helpers/temp.ts makes every test folder. Tests remove their own folders; removing
 * the root at the end catches what a crashed or interrupted test left.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), `cycle-tests-${project.name}-`)));
  project.provide('tempRoot', root);
  return async () => {
    await fs.rm(root, { recursive: true, force: true, maxRetries: 5 });
  };
}
