import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startCycle, waitFor } from '../helpers/e2e.js';
import { cycleswapProject, writeFiles } from '../helpers/context.js';

// Issue 11 (low): Ctrl-C during `project upload` must stop the upload and exit 130, not finish it.
let server: http.Server | undefined;
let root: string | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((resolve) => server!.close(resolve));
  if (root) await fs.rm(root, { recursive: true, force: true });
  server = undefined;
  root = undefined;
});

describe('project upload and Ctrl-C', () => {
  it('SIGINT while the tarball is being sent: the request is cut and the command exits 130', async () => {
    root = await cycleswapProject();
    // Incompressible and bigger than the socket buffers, so the upload is still going when paused.
    await writeFiles(root, { 'data.bin': randomBytes(24 << 20).toString('base64') });
    let paused: http.IncomingMessage | undefined;
    let pushEnded = false;
    server = http.createServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'not_found', message: 'no such project' } }));
        return;
      }
      req.once('data', () => {
        req.pause();
        paused = req;
      });
      req.on('end', () => {
        pushEnded = true;
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            project: 'demo',
            format: 'cycleswap',
            revision: 1,
            content_hash: 'c',
            build_hash: 'b',
            unchanged: false,
            rebuild: true,
            build_hash_matches: null,
          }),
        );
      });
      req.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const run = startCycle(['project', 'upload'], { cwd: root, env: { CYCLE_API_URL: url, CYCLE_TOKEN: 't', CYCLE_HTTP_RETRIES: '1' } });
    await waitFor(() => paused !== undefined || run.child.exitCode !== null, 60_000, 'the upload to start');
    run.child.kill('SIGINT');
    // The handler has run once it says so; only then may the server read on.
    await waitFor(() => run.output().stderr.includes('interrupting') || run.child.exitCode !== null, 30_000, 'the interrupt message');
    paused?.resume();
    const code = await run.exited;
    expect(code, run.output().stderr).toBe(130);
    expect(pushEnded).toBe(false);
  });
});
