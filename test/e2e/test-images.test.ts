import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { docker } from '../helpers/e2e.js';
import { newTestRun, removeTestImages, testImageScope, testRunPrefix } from '../helpers/test-images.js';

/** Builds a Dockerfile given on stdin; returns the image id. */
function build(dockerfile: string, tag: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('docker', ['build', '--quiet', '--tag', tag, '-'], (error, stdout, stderr) =>
      error ? reject(new Error(`docker build failed: ${stderr}`)) : resolve(stdout.trim()),
    );
    child.stdin?.end(dockerfile);
  });
}

const exists = async (ref: string): Promise<boolean> =>
  docker(['image', 'inspect', '--format', '{{.Id}}', ref]).then(
    () => true,
    () => false,
  );

describe('the e2e teardown removes the images its run built, and only those', () => {
  it("a run's local and server images and a build on them go; another run's images and the base image stay", async () => {
    // A run of its own, so that the removal cannot touch this run's other tests' images.
    const run = newTestRun();
    const mine = `${testRunPrefix(run)}teardown`;
    const theirs = `${testRunPrefix(newTestRun())}teardown`;
    const local = await build(`FROM ubuntu:24.04\nLABEL cycle.project="${mine}" cycle.project-key="local:0123456789abcdef"\n`, `cycle/${mine}:one`);
    // A later build on the first (as cycle's incremental builds are): it inherits the labels.
    const later = await build(`FROM cycle/${mine}:one\nRUN echo later > /later\n`, `cycle/${mine}:two`);
    const server = await build(`FROM ubuntu:24.04\nLABEL cycle.project-key="server:${mine}"\n`, `cycle-server/${mine}:one`);
    const other = await build(`FROM ubuntu:24.04\nLABEL cycle.project="${theirs}" cycle.project-key="server:${theirs}"\n`, `cycle-server/${theirs}:one`);
    try {
      const removed = await removeTestImages(testImageScope(run, false));
      expect(removed.sort()).toEqual([local, later, server].sort());
      for (const id of [local, later, server]) expect(await exists(id), id).toBe(false);
      expect(await exists(other)).toBe(true);
      expect(await exists('ubuntu:24.04')).toBe(true);
    } finally {
      await docker(['image', 'rm', '--force', other, `cycle/${mine}:two`, `cycle/${mine}:one`, `cycle-server/${mine}:one`]).catch(() => undefined);
    }
  });
});
