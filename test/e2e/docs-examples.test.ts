import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/e2e.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';

const execFileAsync = promisify(execFile);
let server: ServerProcess;

beforeAll(async () => {
  // $10: init needs $5; the script's big job (10 tasks × a day) must not fit.
  server = await startServerProcess({ args: ['--balance', '10'] });
});

afterAll(async () => {
  await server.stop();
  const images = (await docker(['images', '-q', '--filter', 'label=cycle.project-key=server:my-project'])).split('\n').filter(Boolean);
  if (images.length) await docker(['rmi', '-f', ...new Set(images)]).catch(() => undefined);
});

describe("Computalot's documented curl examples against cycle server", () => {
  it('test/e2e/docs-examples.sh: projects, setup, jobs, results & artifacts, billing, as written', async () => {
    const { stdout, stderr } = await execFileAsync('bash', [path.join(import.meta.dirname, 'docs-examples.sh')], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, BASE_URL: server.url, TOKEN: server.token },
      maxBuffer: 16 << 20,
    }).catch((error: { stdout: string; stderr: string }) => {
      throw new Error(`docs-examples.sh failed:\n${error.stdout}\n${error.stderr}\nserver log:\n${server.log()}`);
    });
    expect(stdout).toContain('docs examples OK');
    expect(stderr).toBe('');
  }, 240_000);
});
