import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runMain, tempDir } from '../helpers/context.js';
import { serveForTest } from '../helpers/local-http.js';

// Issue 11 (client side): what a hostile or broken server can make `cycle artifacts download` write.
let root: string;
beforeEach(async () => {
  root = await tempDir('cycle-sec-client-');
});

const serve = serveForTest;

async function download(apiUrl: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return runMain(['artifacts', 'download', ...args, '--out', path.join(root, 'a', 'b', 'out')], {
    env: { HOME: root, XDG_CONFIG_HOME: path.join(root, '.cfg'), CYCLE_API_URL: apiUrl, CYCLE_TOKEN: 'secret-token', CYCLE_HTTP_RETRIES: '1' },
    cwd: root,
  });
}

/** Every file under root, as relative paths. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('artifacts download from a hostile server', () => {
  it('an artifact id with "/../" from the server writes nothing outside --out', async () => {
    const evilId = 'x/../../../pwned';
    const url = await serve((req, res) => {
      if (req.url?.startsWith('/api/v1/artifacts?')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            artifacts: [{ id: evilId, job_id: 'job_1', task_id: 'task_1', name: 'a.txt', size: 5, sha256: 'x', order: 0, created_at: '2026-01-01T00:00:00Z' }],
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-artifact-size': '5' });
      res.end('owned');
    });
    const result = await download(url, ['--job', 'job_1']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('invalid id');
    expect(await filesUnder(root)).toEqual([]);
  });

  it('an id with "/../" typed by the user is a usage error', async () => {
    const url = await serve((_req, res) => res.end('owned'));
    const result = await download(url, ['x/../../../pwned']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('invalid artifact id "x/../../../pwned"');
    expect(await filesUnder(root)).toEqual([]);
  });

  it('a redirect is not saved as the artifact', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere', 'content-length': '0' });
      res.end();
    });
    const result = await download(url, ['art_1']);
    expect(result.code).toBe(5);
    expect(result.stderr).toContain('HTTP 302');
    expect(await filesUnder(root)).toEqual([]);
  });

  it('an empty answer that does not declare an empty artifact is not saved', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-artifact-name': 'model.bin' });
      res.end();
    });
    const result = await download(url, ['art_1']);
    expect(result.code).toBe(5);
    expect(await filesUnder(root)).toEqual([]);
  });

  it('an answer longer than declared is stopped as it arrives, and nothing is kept', async () => {
    const chunk = Buffer.alloc(64 * 1024, 120);
    const limit = 64 << 20; // bounded, so the test cannot fill the disk of a client that does not stop
    let sent = 0;
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-artifact-name': 'big.bin', 'x-artifact-size': '10' });
      const more = (): void => {
        while (!res.destroyed && sent < limit) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end();
      };
      more();
    });
    const result = await download(url, ['art_1']);
    expect(result.code).toBe(5);
    expect(result.stderr).toContain('more than the 10 bytes it declared');
    expect(await filesUnder(root)).toEqual([]);
    expect(sent).toBeLessThan(limit);
  });

  it('a malformed X-Artifact-Name falls back to the id instead of crashing', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-artifact-name': '%E0%A4%A', 'x-artifact-size': '2' });
      res.end('ok');
    });
    const result = await download(url, ['art_1']);
    expect(result.code, result.stderr).toBe(0);
    expect(await filesUnder(root)).toEqual([path.join('a', 'b', 'out', 'art_1')]);
  });
});
