import http from 'node:http';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { demultiplex, EngineDockerDriver } from '../../src/docker/engine-driver.js';
import { tempDir } from '../helpers/context.js';
import { classifyDockerGpuError } from '../../src/docker/gpu.js';

const frame = (stream: 1 | 2, text: string): Buffer => {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

describe("Docker's multiplexed attach stream", () => {
  it('splits stdout from stderr however the bytes are cut into chunks', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom<1 | 2>(1, 2), fc.string({ minLength: 1, maxLength: 40 })), { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 8 }), async (frames, cuts) => {
        const bytes = Buffer.concat(frames.map(([stream, text]) => frame(stream, text)));
        const socket = new PassThrough();
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        const headLength = Math.min(bytes.length, cuts[0]! - 1);
        const done = demultiplex(socket, bytes.subarray(0, headLength), { stdout: (c) => out.push(Buffer.from(c)), stderr: (c) => err.push(Buffer.from(c)) });
        let at = headLength;
        for (let i = 0; at < bytes.length; i++) {
          const size = cuts[i % cuts.length]!;
          socket.write(bytes.subarray(at, at + size));
          at += size;
        }
        socket.end();
        socket.destroy();
        await done;
        expect(Buffer.concat(out).toString()).toBe(frames.filter(([s]) => s === 1).map(([, t]) => t).join(''));
        expect(Buffer.concat(err).toString()).toBe(frames.filter(([s]) => s === 2).map(([, t]) => t).join(''));
      }),
    );
  });
});

describe('Engine API driver against a fake daemon', () => {
  const servers: http.Server[] = [];
  afterEach(() => {
    for (const server of servers.splice(0)) server.close();
  });

  async function fakeDaemon(handler: http.RequestListener): Promise<EngineDockerDriver> {
    const socketPath = path.join(await tempDir('cycle-engine-'), 'docker.sock');
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return new EngineDockerDriver({ kind: 'unix', socketPath, description: `unix://${socketPath}` }, { env: {} });
  }

  /** As the daemon does: a container's wait request is answered when the container is removed. */
  function waitUntilRemoved(): { wait(response: http.ServerResponse): void; removed(): void } {
    let removed = false;
    const waiting: http.ServerResponse[] = [];
    const answer = (response: http.ServerResponse): void => void response.writeHead(404).end('{}');
    return {
      wait: (response) => {
        if (removed) answer(response);
        else waiting.push(response);
      },
      removed: () => {
        removed = true;
        waiting.splice(0).forEach(answer);
      },
    };
  }

  const spec = { image: 'cycle/demo:abc', name: 'cycle-demo-task', command: ['bash', 'run.sh'], env: { A: '1' }, mounts: [], labels: {} };
  const io = { stdout: () => undefined, stderr: () => undefined };

  it('a missing image reads as `docker run` says it, so the caller builds again', async () => {
    const driver = await fakeDaemon((request, response) => {
      expect(request.url).toBe('/containers/create?name=cycle-demo-task');
      response.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ message: 'No such image: cycle/demo:abc' }));
    });
    expect(await driver.runContainer(spec, io)).toEqual({ exitCode: 125, dockerError: "Unable to find image 'cycle/demo:abc' locally: No such image: cycle/demo:abc" });
  });

  it('a command that cannot start: exit 127 and the daemon message; the container is removed', async () => {
    const seen: string[] = [];
    const container = waitUntilRemoved();
    const driver = await fakeDaemon((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'c1' }));
      else if (request.url?.startsWith('/containers/c1/attach')) response.writeHead(101, { Connection: 'Upgrade', Upgrade: 'tcp' }).end();
      else if (request.url?.startsWith('/containers/c1/start')) response.writeHead(400).end(JSON.stringify({ message: 'OCI runtime create failed: exec: "bash": executable file not found in $PATH' }));
      else if (request.method === 'DELETE') {
        response.writeHead(204).end();
        container.removed();
      } else if (request.url?.startsWith('/containers/c1/wait')) container.wait(response);
    });
    driver['attach'] = async () => ({ socket: new PassThrough(), head: Buffer.alloc(0) }); // the fake does not hijack
    const exit = await driver.runContainer(spec, io);
    expect(exit.exitCode).toBe(127);
    expect(exit.dockerError).toContain('executable file not found');
    expect(seen).toContain('DELETE /containers/c1');
  });

  it('Ctrl-C while the container is being created: it is removed once it exists, exit 130', async () => {
    const controller = new AbortController();
    const seen: string[] = [];
    const driver = await fakeDaemon((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) {
        controller.abort(); // the user presses Ctrl-C before the daemon answers
        response.writeHead(201).end(JSON.stringify({ Id: 'c2' }));
      } else response.writeHead(204).end();
    });
    expect(await driver.runContainer(spec, io, controller.signal)).toEqual({ exitCode: 130 });
    expect(seen).toEqual(['POST /containers/create', 'DELETE /containers/c2']);
  });

  it('asks for every GPU as `--gpus all` does; a daemon without the NVIDIA runtime reads as such', async () => {
    let createBody: { HostConfig?: { DeviceRequests?: unknown } } = {};
    const container = waitUntilRemoved();
    const driver = await fakeDaemon((request, response) => {
      if (request.url?.startsWith('/containers/create')) {
        let text = '';
        request.on('data', (chunk: Buffer) => (text += chunk.toString()));
        request.on('end', () => {
          createBody = JSON.parse(text);
          response.writeHead(201).end(JSON.stringify({ Id: 'g1' }));
        });
      } else if (request.url?.startsWith('/containers/g1/start')) {
        response.writeHead(500).end(JSON.stringify({ message: 'could not select device driver "" with capabilities: [[gpu]]' }));
      } else if (request.url?.startsWith('/containers/g1/wait')) container.wait(response);
      else {
        response.writeHead(204).end();
        if (request.method === 'DELETE') container.removed();
      }
    });
    driver['attach'] = async () => ({ socket: new PassThrough(), head: Buffer.alloc(0) });
    const exit = await driver.runContainer({ ...spec, gpus: 'all' }, io);
    expect(createBody.HostConfig?.DeviceRequests).toEqual([{ Driver: '', Count: -1, Capabilities: [['gpu']] }]);
    expect(exit.exitCode).toBe(125);
    expect(classifyDockerGpuError(exit.dockerError ?? '')).toMatchObject({ kind: 'no-runtime' });
  });

  it('cannot connect: the daemon-down error with the socket named, exit 5', async () => {
    const driver = new EngineDockerDriver({ kind: 'unix', socketPath: '/nonexistent/docker.sock', description: 'unix:///nonexistent/docker.sock' }, { env: {} });
    await expect(driver.inspectImage('ubuntu:24.04')).rejects.toMatchObject({ exitCode: 5, message: 'the Docker daemon is not running or cannot be reached' });
  });
});
