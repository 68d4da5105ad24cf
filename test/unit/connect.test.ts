import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveProjectName } from '../../src/api/connect.js';
import { cycleswapProject, fakeContext, tempDir, writeFiles } from '../helpers/context.js';

describe('which project a command means', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
  });
  const made = <T extends string>(dir: T): T => {
    dirs.push(dir);
    return dir;
  };

  it('the flag, then $CYCLE_PROJECT, then the manifest name', async () => {
    const root = made(await cycleswapProject());
    expect(await resolveProjectName(fakeContext({ cwd: root }).ctx, 'given')).toBe('given');
    expect(await resolveProjectName(fakeContext({ cwd: root, env: { CYCLE_PROJECT: 'from-env' } }).ctx, undefined)).toBe('from-env');
    expect(await resolveProjectName(fakeContext({ cwd: root }).ctx, undefined)).toBe('demo');
  });

  it('no project here and none named: a usage error saying how to name one', async () => {
    const empty = made(await tempDir());
    await expect(resolveProjectName(fakeContext({ cwd: empty }).ctx, undefined)).rejects.toMatchObject({
      message: 'no project named, and no project here',
      exitCode: 2,
      hint: expect.stringContaining('--project NAME'),
    });
  });

  it('a project here that is invalid: its own error (exit 3), not "no project"', async () => {
    const root = made(await cycleswapProject());
    await writeFiles(root, { '.cycleswap/manifest.toml': '[main]\nname = \n' });
    await expect(resolveProjectName(fakeContext({ cwd: root }).ctx, undefined)).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining('is invalid'),
    });
  });
});
