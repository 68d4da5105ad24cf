import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, inject, onTestFinished, TestRunner } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's temp root (test/helpers/temp-root.ts): every tempDir() is made under it. */
    tempRoot?: string;
  }
}

/** Folders made outside a test (beforeAll, describe bodies): removed after the file's last hook. */
const madeOutsideTests: string[] = [];

/**
 * A new empty folder (its real path, so tests compare paths the way the product sees them),
 * under the run's temp root. Removed when the test that made it finishes (after its afterEach
 * hooks), or, if made outside a test, after the file's afterAll hooks (test/helpers/temp-cleanup.ts);
 * the root itself goes when the run ends. Not for `it.concurrent`: the current test is global.
 */
export async function tempDir(prefix = 'cycle-test-'): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(tempRoot(), prefix)));
  if (TestRunner.getCurrentTest()) onTestFinished(() => removeTempDir(dir));
  else madeOutsideTests.push(dir);
  return dir;
}

/** Removes the folders made outside tests; registered once per file by test/helpers/temp-cleanup.ts. */
export function removeTempDirsAfterAll(): void {
  afterAll(async () => {
    for (const dir of madeOutsideTests.splice(0)) await removeTempDir(dir);
  });
}

function tempRoot(): string {
  // Without the global setup (a config that does not list it), folders go straight to the
  // system temp folder; they are still removed after their test or file.
  return inject('tempRoot') ?? os.tmpdir();
}

async function removeTempDir(dir: string): Promise<void> {
  // maxRetries: a process a test stopped may still be closing files inside (ENOTEMPTY, EBUSY).
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 5 });
}
