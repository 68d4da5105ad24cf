import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDocker } from '../helpers/fake-docker.js';
import { tempDir } from '../helpers/context.js';
import { BIN } from '../helpers/e2e.js';
import { rawTar, VALID_PROJECT } from '../helpers/tarballs.js';
import { startFakeDockerServer, startServerProcess, type ServerProcess } from '../helpers/server.js';

/** Issue 18, the server's data folder: one server per folder, nothing left in the system's temp folder, URLs from the server's own address. */

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const NO_DOCKER = { CYCLE_DOCKER_BIN: '/nonexistent/docker' };

async function binary(dataDir?: string): Promise<ServerProcess> {
  const server = await startServerProcess({ workers: 1, env: NO_DOCKER, ...(dataDir ? { dataDir } : {}) });
  cleanup.push(() => fs.rm(server.dataDir, { recursive: true, force: true }));
  cleanup.push(() => server.stop('SIGKILL'));
  return server;
}

/** `cycle server` run to its end (it must stop by itself): its exit code and output. */
function runToEnd(dataDir: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [BIN, 'server', '--port', '0', '--data-dir', dataDir, '--workers', '1'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME ?? dataDir, NO_COLOR: '1', ...NO_DOCKER },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.push(async () => void (child.exitCode === null && child.kill('SIGKILL')));
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  // Bounded: a server that keeps running (the old behaviour) is stopped after 30 s, and the test fails on its exit code.
  const limit = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(limit);
      resolve({ code, output });
    }),
  );
}

describe('one server per data folder', () => {
  it("a second `cycle server` on the same --data-dir exits, naming the folder and the running pid; the first one's upload in progress survives", async () => {
    const first = await binary();
    const tarball = gzipSync(rawTar(VALID_PROJECT));
    const { hostname, port } = new URL(first.url);
    const upload = net.connect(Number(port), hostname);
    cleanup.push(async () => void upload.destroy());
    let answer = '';
    upload.on('data', (c: Buffer) => (answer += c.toString()));
    const answered = new Promise<void>((resolve) => upload.once('close', () => resolve()));
    await new Promise<void>((resolve) => upload.once('connect', () => resolve()));
    upload.write(
      `POST /api/v1/projects/p/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${first.token}\r\nContent-Length: ${tarball.length}\r\nConnection: close\r\n\r\n`,
    );
    upload.write(tarball.subarray(0, 10));
    // The upload's temp file exists in the data folder's tmp/ before the second server starts.
    const tmp = path.join(first.dataDir, 'tmp');
    for (let polls = 0; (await fs.readdir(tmp)).length === 0; polls++) expect(polls).toBeLessThan(100_000);

    const second = await runToEnd(first.dataDir);
    expect(second.code).not.toBe(0);
    expect(second.output).toContain(first.dataDir);
    expect(second.output).toContain(`pid ${first.child.pid}`);
    expect(second.output).not.toMatch(/listening on/);

    upload.write(tarball.subarray(10));
    await answered;
    expect(answer, first.log()).toMatch(/^HTTP\/1\.1 201 /);
  });

  it('a lock left by a server killed with -9 is taken over, and the folders its tasks left are swept', async () => {
    const first = await binary();
    const leftover = path.join(first.dataDir, 'tmp', 'cycle-task-left');
    await fs.mkdir(leftover);
    await fs.writeFile(path.join(leftover, 'payload.json'), '{}');
    expect(await first.stop('SIGKILL')).toBeNull();
    const again = await binary(first.dataDir);
    expect((await fetch(`${again.url}/health`)).status).toBe(200);
    await expect(fs.stat(leftover)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe("a task's payload folder is under the data folder, not the system's temp folder", () => {
  it("the folder mounted at the task's io path lies inside --data-dir", async () => {
    const dataDir = await tempDir('cycle-sec-scratch-');
    const sources: string[] = [];
    const docker = new FakeDocker();
    docker.onRun = async (spec) => {
      for (const mount of spec.mounts) if (mount.target !== '/artifacts') sources.push(mount.source);
      return 0;
    };
    const server = await startFakeDockerServer(docker, { dataDir });
    cleanup.push(() => fs.rm(dataDir, { recursive: true, force: true }));
    cleanup.push(() => server.close());
    const headers = { authorization: `Bearer ${server.token}` };
    expect((await fetch(`${server.url}/api/v1/projects/p/push`, { method: 'POST', headers, body: gzipSync(rawTar(VALID_PROJECT)) })).status).toBe(201);
    const job = (await (
      await fetch(`${server.url}/api/v1/jobs`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{"project":"p"}' })
    ).json()) as { id: string };
    for (let polls = 0; ; polls++) {
      const status = ((await (await fetch(`${server.url}/api/v1/jobs/${job.id}`, { headers })).json()) as { status: string }).status;
      if (status === 'completed' || status === 'failed') break;
      expect(polls).toBeLessThan(100_000);
    }
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(path.resolve(source).startsWith(path.resolve(dataDir) + path.sep), source).toBe(true);
  });
});

describe('URLs the server hands out', () => {
  it("the direct upload URL is built from the server's own address, never the request's Host", async () => {
    const server = await binary();
    for (const host of ['evil.example', 'evil.example:80', '10.0.0.1:9']) {
      const answer = await new Promise<string>((resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const socket = net.connect(Number(port), hostname);
        const body = JSON.stringify({ sha256: 'a'.repeat(64), size: 3, filename: 'x.txt' });
        let text = '';
        socket.on('data', (c: Buffer) => (text += c.toString()));
        socket.once('close', () => resolve(text));
        socket.once('error', reject);
        socket.write(
          `POST /api/v1/artifacts/direct HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      });
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      const document = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { upload_url: string };
      expect(document.upload_url).toBe(`${server.url}/api/v1/artifacts`);
    }
  });
});
