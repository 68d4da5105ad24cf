import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cycleswapProject, runMain, writeFiles } from '../helpers/context.js';
import { listenLocal } from '../helpers/local-http.js';

// Issue 11: a cloned repository's .cycle/config.toml must not be able to send CYCLE_TOKEN anywhere.
const TOKEN = 'flk_my-real-token';
let root: string;
let seen: string[];
let server: http.Server;
let url: string;

beforeEach(async () => {
  seen = [];
  server = http.createServer((req, res) => {
    seen.push(String(req.headers.authorization ?? ''));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jobs: [] }));
  });
  url = await listenLocal(server);
  root = await cycleswapProject();
  await writeFiles(root, { '.cycle/config.toml': `api_url = "${url}"\n` });
});
afterEach(async () => {
  await new Promise((resolve) => server.close(resolve));
  await fs.rm(root, { recursive: true, force: true });
});

async function cycle(args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return runMain(args, { env: { HOME: root, XDG_CONFIG_HOME: path.join(root, '.cfg'), CYCLE_HTTP_RETRIES: '1', ...env }, cwd: root });
}

describe('which server gets CYCLE_TOKEN', () => {
  it("not the api_url of a project's .cycle/config.toml: nothing is sent, the error names the file and the fix", async () => {
    const result = await cycle(['job', 'list'], { CYCLE_TOKEN: TOKEN });
    expect(seen).toEqual([]);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`CYCLE_TOKEN is not sent to ${url}`);
    expect(result.stderr).toContain(path.join(root, '.cycle', 'config.toml'));
    expect(result.stderr).toContain(`--api-url ${url}`);
    expect(result.stderr).not.toContain(TOKEN);
  });

  it('the same URL chosen by the user (--api-url, CYCLE_API_URL or the user config) does get it', async () => {
    expect((await cycle(['job', 'list', '--api-url', url], { CYCLE_TOKEN: TOKEN })).code).toBe(0);
    expect((await cycle(['job', 'list'], { CYCLE_TOKEN: TOKEN, CYCLE_API_URL: url })).code).toBe(0);
    await writeFiles(root, { '.cfg/cycle/config.toml': `api_url = "${url}"\n` });
    expect((await cycle(['job', 'list'], { CYCLE_TOKEN: TOKEN })).code).toBe(0);
    expect(seen).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });
});
