import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { isPrepared } from '../../src/docker/driver.js';
import { demultiplex, EngineDockerDriver } from '../../src/docker/engine-driver.js';
import { tempDir } from '../helpers/context.js';

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
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom<1 | 2>(1, 2), fc.string({ minLength: 1, maxLength: 40 })), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 8 }),
        async (frames, cuts) => {
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
          expect(Buffer.concat(out).toString()).toBe(
            frames
              .filter(([s]) => s === 1)
              .map(([, t]) => t)
              .join(''),
          );
          expect(Buffer.concat(err).toString()).toBe(
            frames
              .filter(([s]) => s === 2)
              .map(([, t]) => t)
              .join(''),
          );
        },
      ),
    );
  });
});

describe('Engine API driver against a fake daemon', () => {
  const servers: http.Server[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) server.close();
    for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
  });

  async function fakeDaemon(handler: http.RequestListener): Promise<EngineDockerDriver> {
    const dir = await tempDir('cycle-engine-');
    dirs.push(dir);
    const socketPath = path.join(dir, 'docker.sock');
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
    expect(await driver.runContainer(spec, io)).toEqual({
      exitCode: 125,
      dockerFailure: { kind: 'image-missing', daemonMessage: "Unable to find image 'cycle/demo:abc' locally: No such image: cycle/demo:abc" },
    });
  });

  it('a command that cannot start: exit 127 and the daemon message; the container is removed', async () => {
    const seen: string[] = [];
    const container = waitUntilRemoved();
    const driver = await fakeDaemon((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'c1' }));
      else if (request.url?.startsWith('/containers/c1/attach')) response.writeHead(101, { Connection: 'Upgrade', Upgrade: 'tcp' }).end();
      else if (request.url?.startsWith('/containers/c1/start'))
        response.writeHead(400).end(JSON.stringify({ message: 'OCI runtime create failed: exec: "bash": executable file not found in $PATH' }));
      else if (request.method === 'DELETE') {
        response.writeHead(204).end();
        container.removed();
      } else if (request.url?.startsWith('/containers/c1/wait')) container.wait(response);
    });
    driver['attach'] = async () => ({ socket: new PassThrough(), head: Buffer.alloc(0) }); // the fake does not hijack
    const exit = await driver.runContainer(spec, io);
    expect(exit.exitCode).toBe(127);
    expect(exit.dockerFailure).toMatchObject({ kind: 'command-not-found', daemonMessage: expect.stringContaining('executable file not found') });
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
    expect(exit.dockerFailure).toMatchObject({ kind: 'no-gpu-runtime' });
  });

  /** A daemon that creates and attaches, then answers start with `status` and `message`. */
  async function refusingStart(status: number, message: string): Promise<EngineDockerDriver> {
    const driver = await fakeDaemon((request, response) => {
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'r1' }));
      else if (request.url?.startsWith('/containers/r1/start')) response.writeHead(status).end(JSON.stringify({ message }));
      else if (request.url?.startsWith('/containers/r1/wait')) setTimeout(() => response.writeHead(404).end('{}'), 20);
      else response.writeHead(204).end();
    });
    driver['attach'] = async () => ({ socket: new PassThrough(), head: Buffer.alloc(0) });
    return driver;
  }

  it('an image that needs a newer CUDA: the required version, typed', async () => {
    const message =
      'failed to create task for container: OCI runtime create failed: error running prestart hook #0: exit status 1, stdout: , stderr: nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.8, please update your driver';
    const exit = await (await refusingStart(500, message)).runContainer({ ...spec, gpus: 'all' }, io);
    expect(exit).toEqual({ exitCode: 125, dockerFailure: { kind: 'cuda-requirement', requiredCuda: '12.8', daemonMessage: message } });
  });

  it('a command that may not be run: exit 126, typed', async () => {
    const exit = await (await refusingStart(400, 'OCI runtime create failed: exec: "/app/run.sh": permission denied')).runContainer(spec, io);
    expect(exit).toMatchObject({ exitCode: 126, dockerFailure: { kind: 'command-not-executable' } });
  });

  it('any other refusal to start: exit 125, container-start-failed with the daemon message', async () => {
    const exit = await (await refusingStart(500, 'driver failed programming external connectivity')).runContainer(spec, io);
    expect(exit).toEqual({
      exitCode: 125,
      dockerFailure: { kind: 'container-start-failed', daemonMessage: 'driver failed programming external connectivity' },
    });
  });

  it('prepareContainer with startAhead: created, attached and started at once; its stdin flows, and "started" is heard, only at run()', async () => {
    const seen: string[] = [];
    const written: Buffer[] = [];
    let answerWait: (() => void) | undefined;
    const driver = await fakeDaemon((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'p1' }));
      else if (request.url?.startsWith('/containers/p1/wait')) answerWait = () => response.writeHead(200).end(JSON.stringify({ StatusCode: 0 }));
      else if (request.url?.startsWith('/containers/p1/json')) response.writeHead(200).end(JSON.stringify({ State: { OOMKilled: false } }));
      else response.writeHead(204).end();
    });
    // The container's end of the attach: what it reads on stdin; it exits (the stream closes) once stdin ends.
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk);
        callback();
      },
      final(callback) {
        callback();
        answerWait?.();
        setImmediate(() => socket.destroy());
      },
    });
    driver['attach'] = async () => ({ socket, head: Buffer.alloc(0) });
    const stages: string[] = [];
    const stdin = new PassThrough();
    const prepared = await driver.prepareContainer(spec, { ...io, stdin, onStage: (stage) => stages.push(stage) }, undefined, { startAhead: true });
    if (!isPrepared(prepared)) throw new Error(`not prepared: ${JSON.stringify(prepared)}`);
    stdin.end('the source tar');
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual(['POST /containers/create', 'POST /containers/p1/wait', 'POST /containers/p1/start']);
    expect(written).toEqual([]); // the command waits on its stdin: nothing of the job has run
    expect(stages).toEqual(['created']);
    expect(await prepared.run()).toEqual({ exitCode: 0 });
    expect(Buffer.concat(written).toString()).toBe('the source tar');
    expect(stages).toEqual(['created', 'started', 'exited']);
    expect(seen.filter((s) => s.endsWith('/start'))).toHaveLength(1);
    expect(seen.at(-1)).toBe('DELETE /containers/p1');
  });

  it('a prepared container given back (discard) is removed and never started', async () => {
    const seen: string[] = [];
    const container = waitUntilRemoved();
    const driver = await fakeDaemon((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'd1' }));
      else if (request.url?.startsWith('/containers/d1/wait')) container.wait(response);
      else {
        response.writeHead(204).end();
        if (request.method === 'DELETE') container.removed();
      }
    });
    driver['attach'] = async () => ({ socket: new PassThrough(), head: Buffer.alloc(0) });
    const prepared = await driver.prepareContainer(spec, io);
    if (!isPrepared(prepared)) throw new Error(`not prepared: ${JSON.stringify(prepared)}`);
    await prepared.discard();
    expect(seen.filter((s) => s.endsWith('/start'))).toEqual([]);
    expect(seen).toContain('DELETE /containers/d1');
    await expect(prepared.run()).rejects.toThrow(/already run/);
  });

  it('a container that vanished before attach: container-missing, thrown', async () => {
    const driver = await fakeDaemon((request, response) => {
      if (request.url?.startsWith('/containers/create')) response.writeHead(201).end(JSON.stringify({ Id: 'v1' }));
      else if (request.url?.startsWith('/containers/v1/attach')) response.writeHead(404).end(JSON.stringify({ message: 'No such container: v1' }));
      else response.writeHead(204).end();
    });
    await expect(driver.runContainer(spec, io)).rejects.toMatchObject({
      kind: 'container-missing',
      exitCode: 5,
      message: 'Docker could not attach to the container: No such container: v1',
    });
  });

  it('removing a container: gone (404) or already being removed (409) is fine; a 500 is a typed failure', async () => {
    const statuses = [404, 409, 500];
    const driver = await fakeDaemon((_request, response) => {
      const status = statuses.shift()!;
      response.writeHead(status).end(JSON.stringify({ message: status === 500 ? 'device or resource busy' : 'whatever' }));
    });
    await driver.removeContainer('a');
    await driver.removeContainer('b');
    await expect(driver.removeContainer('c')).rejects.toMatchObject({
      kind: 'request-failed',
      message: 'Docker could not remove container c: device or resource busy',
    });
  });

  it('inspecting an image: 404 is no image; another error is a typed failure', async () => {
    const driver = await fakeDaemon((request, response) => {
      if (request.url === '/images/gone/json') response.writeHead(404).end(JSON.stringify({ message: 'No such image: gone' }));
      else response.writeHead(500).end(JSON.stringify({ message: 'layer store is corrupt' }));
    });
    expect(await driver.inspectImage('gone')).toBeUndefined();
    await expect(driver.inspectImage('broken')).rejects.toMatchObject({
      kind: 'request-failed',
      exitCode: 5,
      message: 'Docker could not inspect image broken: layer store is corrupt',
    });
  });

  it('cannot connect: the daemon-down error with the socket named, exit 5', async () => {
    const driver = new EngineDockerDriver(
      { kind: 'unix', socketPath: '/nonexistent/docker.sock', description: 'unix:///nonexistent/docker.sock' },
      { env: {} },
    );
    await expect(driver.inspectImage('ubuntu:24.04')).rejects.toMatchObject({
      kind: 'daemon-unreachable',
      exitCode: 5,
      message: 'the Docker daemon is not running or cannot be reached',
    });
  });

  it('hands image housekeeping to the docker CLI (loaded on first use), once for all calls', async () => {
    const dir = await tempDir('cycle-engine-cli-');
    const log = path.join(dir, 'calls');
    const fake = path.join(dir, 'docker');
    await fs.writeFile(fake, `#!/bin/sh\necho "$*" >> '${log}'\n`, { mode: 0o755 });
    const driver = new EngineDockerDriver(
      { kind: 'unix', socketPath: '/nonexistent/docker.sock', description: 'unix:///nonexistent/docker.sock' },
      { env: { ...process.env, CYCLE_DOCKER_BIN: fake } },
    );
    await Promise.all([driver.tagImage('a:1', 'b:1'), driver.removeImage('c:1', { force: true })]);
    const calls = (await fs.readFile(log, 'utf8')).trim().split('\n').sort();
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatch(/^(image )?rm/);
    expect(calls[1]).toMatch(/^(image )?tag a:1 b:1$/);
  });
});
