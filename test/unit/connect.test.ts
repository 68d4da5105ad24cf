import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { resolveApiConnection, resolveProjectName } from '../../src/api/connect.js';
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

describe('ctx.api(): the client a command gets', () => {
  it('one client per settings: the same for the same flags, another for another --api-url or token', async () => {
    const cwd = await tempDir();
    const { ctx } = fakeContext({ cwd, env: { CYCLE_API_URL: 'http://127.0.0.1:9', CYCLE_TOKEN: 't' } });
    const first = await ctx.api({});
    expect(first).toBeInstanceOf(ApiClient);
    expect(first.baseUrl).toBe('http://127.0.0.1:9');
    expect(await ctx.api({})).toBe(first);
    expect(await ctx.api({ apiUrl: 'http://127.0.0.1:9/' })).toBe(first);
    const other = await ctx.api({ apiUrl: 'http://127.0.0.1:10' });
    expect(other).not.toBe(first);
    expect(other.baseUrl).toBe('http://127.0.0.1:10');
    const { ctx: otherToken } = fakeContext({ cwd, env: { CYCLE_API_URL: 'http://127.0.0.1:9', CYCLE_TOKEN: 'u' } });
    expect(await otherToken.api({})).not.toBe(first);
  });

  it('the HTTP settings come from CYCLE_HTTP_TIMEOUT and CYCLE_HTTP_RETRIES, ignored when not positive', async () => {
    const cwd = await tempDir();
    const env = { CYCLE_API_URL: 'http://127.0.0.1:9', CYCLE_TOKEN: 't' };
    expect(await resolveApiConnection(fakeContext({ cwd, env: { ...env, CYCLE_HTTP_TIMEOUT: '2', CYCLE_HTTP_RETRIES: '3' } }).ctx)).toEqual({
      baseUrl: 'http://127.0.0.1:9',
      token: 't',
      timeoutMs: 2000,
      attempts: 3,
    });
    expect(await resolveApiConnection(fakeContext({ cwd, env: { ...env, CYCLE_HTTP_TIMEOUT: '0', CYCLE_HTTP_RETRIES: 'x' } }).ctx)).toEqual({
      baseUrl: 'http://127.0.0.1:9',
      token: 't',
    });
  });

  it('no API URL anywhere: the usage error that says how to name one, before any request', async () => {
    const { ctx } = fakeContext({ cwd: await tempDir(), env: { CYCLE_TOKEN: 't' } });
    await expect(ctx.api({})).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(/no API URL/), hint: expect.stringMatching(/--api-url/) });
  });

  it("a project's config cannot send CYCLE_TOKEN to its own URL: exit 4", async () => {
    const cwd = await cycleswapProject({ '.cycle/config.toml': 'api_url = "http://elsewhere.invalid"\n' });
    const { ctx } = fakeContext({ cwd, env: { CYCLE_TOKEN: 't' } });
    await expect(ctx.api({})).rejects.toMatchObject({ exitCode: 4, message: expect.stringMatching(/CYCLE_TOKEN is not sent to http:\/\/elsewhere\.invalid/) });
  });
});
