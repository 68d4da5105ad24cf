import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliDockerDriver } from '../../src/docker/cli-driver.js';
import { classifyDockerMessage, DockerBuildError } from '../../src/docker/errors.js';
import { tempDir } from '../helpers/context.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');
const read = (name: string): Promise<string> => fs.readFile(path.join(fixtures, name), 'utf8');

describe("Docker's words, classified in one place", () => {
  it.each([
    ['docker-no-gpu-driver.txt', 'no-gpu-runtime'],
    ['docker-no-gpu-driver-erro.txt', 'no-gpu-runtime'],
    ['docker-no-gpu-driver-nvidia-compose.txt', 'no-gpu-runtime'],
    ['docker-nvidia-smi-not-in-path.txt', 'command-not-found'],
    ['docker-requirement-cuda10.1-escaped.txt', 'cuda-requirement'],
    ['docker-requirement-cuda11.0-docker19.txt', 'cuda-requirement'],
    ['docker-requirement-cuda12.4-run.txt', 'cuda-requirement'],
    ['docker-requirement-cuda12.8-compose.txt', 'cuda-requirement'],
    ['docker-requirement-cuda12.8-run-no-unknown.txt', 'cuda-requirement'],
  ])('%s → %s', async (name, kind) => {
    const failure = classifyDockerMessage(await read(name));
    expect(failure?.kind).toBe(kind);
    const version = /cuda(\d+\.\d+)/.exec(name)?.[1];
    if (failure?.kind === 'cuda-requirement') expect(failure.requiredCuda).toBe(version);
  });

  it('names nothing it does not know', () => {
    expect(classifyDockerMessage('Error response from daemon: driver failed programming external connectivity')).toBeUndefined();
  });
});

/**
 * The docker CLI driver against a fake `docker`: a script that prints $FAKE_STDERR on stderr
 * and exits with $FAKE_EXIT, whatever it is asked.
 */
describe('docker CLI driver: typed failures from the exit code and stderr', () => {
  let dir: string;
  let binary: string;
  beforeAll(async () => {
    dir = await tempDir('cycle-cli-driver-');
    binary = path.join(dir, 'docker');
    await fs.writeFile(binary, '#!/bin/sh\nprintf "%s" "$FAKE_STDERR" >&2\nexit "$FAKE_EXIT"\n', { mode: 0o755 });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const driver = (exit: number, stderr: string): CliDockerDriver =>
    new CliDockerDriver({ binary, env: { PATH: process.env.PATH, FAKE_EXIT: String(exit), FAKE_STDERR: stderr, DOCKER_BUILDKIT: '0' } });
  const spec = { image: 'cycle/demo:abc', name: 'cycle-demo-task', command: ['bash', 'run.sh'], env: {}, mounts: [], labels: {} };
  const io = { stdout: () => undefined, stderr: () => undefined };

  it('no docker binary: not-installed, exit 5, with how to install it', async () => {
    const missing = new CliDockerDriver({ binary: path.join(dir, 'no-such-docker'), env: { PATH: process.env.PATH } });
    await expect(missing.info()).rejects.toMatchObject({ kind: 'not-installed', exitCode: 5, hint: expect.stringContaining('install Docker') });
  });

  it('a daemon that is down, or refuses this user: its own kind each, exit 5', async () => {
    await expect(driver(1, 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?').info()).rejects.toMatchObject({
      kind: 'daemon-unreachable',
      exitCode: 5,
      message: 'the Docker daemon is not running or cannot be reached',
    });
    await expect(
      driver(1, 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock').listImages({}),
    ).rejects.toMatchObject({
      kind: 'daemon-permission-denied',
      message: 'permission denied talking to the Docker daemon',
    });
  });

  it('docker run of a missing image: image-missing, exit 125', async () => {
    const stderr =
      "Unable to find image 'cycle/demo:abc' locally\ndocker: Error response from daemon: pull access denied for cycle/demo, repository does not exist or may require 'docker login'.\n";
    const exit = await driver(125, stderr).runContainer(spec, io);
    expect(exit).toEqual({ exitCode: 125, dockerFailure: { kind: 'image-missing', daemonMessage: stderr.trim() } });
  });

  it('docker run refused GPUs: no-gpu-runtime; an image that needs a newer CUDA: cuda-requirement with the version', async () => {
    expect((await driver(125, await read('docker-no-gpu-driver.txt')).runContainer({ ...spec, gpus: 'all' }, io)).dockerFailure?.kind).toBe('no-gpu-runtime');
    const cuda = await driver(125, await read('docker-requirement-cuda12.4-run.txt')).runContainer({ ...spec, gpus: 'all' }, io);
    expect(cuda.dockerFailure).toMatchObject({ kind: 'cuda-requirement', requiredCuda: '12.4' });
  });

  it('a command that cannot start: 127 command-not-found; a job that exits 127 by itself is no Docker failure', async () => {
    const exit = await driver(127, await read('docker-nvidia-smi-not-in-path.txt')).runContainer(spec, io);
    expect(exit).toMatchObject({ exitCode: 127, dockerFailure: { kind: 'command-not-found' } });
    expect(await driver(127, 'bash: frobnicate: command not found\n').runContainer(spec, io)).toEqual({ exitCode: 127 });
  });

  it('docker run failing for a reason of its own: container-start-failed with its words', async () => {
    const exit = await driver(125, 'docker: Error response from daemon: driver failed programming external connectivity.\n').runContainer(spec, io);
    expect(exit).toEqual({
      exitCode: 125,
      dockerFailure: { kind: 'container-start-failed', daemonMessage: 'docker: Error response from daemon: driver failed programming external connectivity.' },
    });
  });

  it('docker run with the daemon gone: thrown, daemon-unreachable', async () => {
    await expect(
      driver(125, 'docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n').runContainer(spec, io),
    ).rejects.toMatchObject({ kind: 'daemon-unreachable' });
  });

  it('inspect and remove: a missing image or container is an answer, anything else a typed failure', async () => {
    expect(await driver(1, 'Error: No such image: cycle/demo:abc\n').inspectImage('cycle/demo:abc')).toBeUndefined();
    await driver(1, 'Error response from daemon: No such image: cycle/demo:abc\n').removeImage('cycle/demo:abc');
    await driver(1, 'Error response from daemon: No such container: c1\n').removeContainer('c1');
    await driver(1, 'Error response from daemon: removal of container c1 is already in progress\n').removeContainer('c1');
    await expect(
      driver(1, 'Error response from daemon: conflict: unable to remove repository reference (must force)\n').removeImage('cycle/demo:abc'),
    ).rejects.toMatchObject({
      kind: 'request-failed',
      exitCode: 5,
      message: 'Docker could not remove image cycle/demo:abc: conflict: unable to remove repository reference (must force)',
    });
  });

  it('a build whose step fails: DockerBuildError with the step exit code; with the daemon gone: daemon-unreachable', async () => {
    const context = { kind: 'directory' as const, path: dir };
    const failed = driver(1, "The command '/bin/sh -c exit 3' returned a non-zero code: 3\n").build({ context, tags: [], labels: {} });
    await expect(failed).rejects.toBeInstanceOf(DockerBuildError);
    await expect(failed).rejects.toMatchObject({ kind: 'build-failed', stepExitCode: 3 });
    await expect(
      driver(1, 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n').build({ context, tags: [], labels: {} }),
    ).rejects.toMatchObject({ kind: 'daemon-unreachable' });
  });
});
