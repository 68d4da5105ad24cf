import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run as projectTest } from '../../src/commands/project/test.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { cycleswapProject, fakeContext, writeFiles, VALID_MANIFEST } from '../helpers/context.js';
import { ExecNotFound, type Exec } from '../../src/util/exec.js';
import type { ContainerSpec } from '../../src/docker/driver.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');
const smi =
  (name: string): Exec =>
  async (file) => {
    if (file !== 'nvidia-smi') throw new ExecNotFound(file);
    return { exitCode: 0, stdout: await fs.readFile(path.join(fixtures, name), 'utf8'), stderr: '' };
  };
const options = { rebuild: false, clean: false, volume: [], json: false, skipLimits: false };

async function gpuProject(cuda: string): Promise<string> {
  return cycleswapProject({ '.cycleswap/manifest.toml': VALID_MANIFEST.replace('[job]\n', `[job]\ncuda = "${cuda}"\n`) });
}

describe('project test with fake Docker: the build decisions', () => {
  it('builds, reuses, layers, rebuilds and cleans as the rules say', async () => {
    const root = await cycleswapProject({ 'req.txt': 'a' });
    await writeFiles(root, { '.cycleswap/manifest.toml': VALID_MANIFEST.replace('build_files = []', 'build_files = ["req.txt"]') });
    const docker = new FakeDocker();
    const run = async (flags: Partial<typeof options> = {}) => {
      const { ctx, stderr } = fakeContext({ cwd: root, docker });
      const code = await projectTest({ ...options, ...flags }, ctx);
      return { code, stderr: stderr.text, builds: docker.called('build') as Array<{ dockerfile: string }> };
    };
    const first = await run();
    expect(first.code).toBe(0);
    expect(first.builds).toHaveLength(1);
    expect(first.builds[0]!.dockerfile).toMatch(/^FROM ubuntu:24\.04$/m);

    const second = await run();
    expect(second.builds).toHaveLength(1); // no new build
    expect(second.stderr).toContain('up to date');

    await writeFiles(root, { 'req.txt': 'b' });
    const third = await run();
    expect(third.builds).toHaveLength(2);
    expect(third.builds[1]!.dockerfile).toMatch(/^FROM cycle\/demo:from-[0-9a-f]{12}$/m);
    expect(docker.called('tagImage')).toHaveLength(1);

    await run({ rebuild: true });
    expect(docker.called('build')).toHaveLength(3);
    await run({ clean: true });
    const builds = docker.called('build') as Array<{ dockerfile: string }>;
    expect(builds).toHaveLength(4);
    expect(builds[3]!.dockerfile).toMatch(/^FROM ubuntu:24\.04$/m);
    // the helper tags used for FROM are removed again
    expect([...docker.images.values()].flatMap((i) => i.tags).filter((t) => t.includes(':from-'))).toEqual([]);
  });

  it('a trusted build image deleted from Docker: the run reads image-missing, builds again and runs', async () => {
    const root = await cycleswapProject();
    try {
      const docker = new FakeDocker();
      expect(await projectTest(options, fakeContext({ cwd: root, docker }).ctx)).toBe(0);
      for (const [id, image] of docker.images) if (image.tags.some((tag) => tag.startsWith('cycle/'))) docker.images.delete(id);
      const { ctx, stderr } = fakeContext({ cwd: root, docker });
      expect(await projectTest(options, ctx)).toBe(0);
      expect(stderr.text).toContain('the recorded build image is gone from Docker: building it again');
      expect(docker.called('build')).toHaveLength(2);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it('--rebuild with --clean is a usage error before anything runs', async () => {
    const root = await cycleswapProject();
    const docker = new FakeDocker();
    await expect(projectTest({ ...options, rebuild: true, clean: true }, fakeContext({ cwd: root, docker }).ctx)).rejects.toMatchObject({ exitCode: 2 });
    expect(docker.calls).toEqual([]);
  });

  it('an invalid project is refused before Docker is touched', async () => {
    const root = await cycleswapProject({ '.cycleswap/manifest.toml': '[main]\nname = "x"\n' });
    const docker = new FakeDocker();
    await expect(projectTest(options, fakeContext({ cwd: root, docker }).ctx)).rejects.toMatchObject({ exitCode: 3 });
    expect(docker.calls).toEqual([]);
  });
});

describe('project test: --resume', () => {
  it('a run that does not exist (or kept no artifacts) is a usage error naming the flag, before Docker runs a task', async () => {
    const root = await cycleswapProject();
    try {
      const docker = new FakeDocker();
      await expect(projectTest({ ...options, resume: 'latest' }, fakeContext({ cwd: root, docker }).ctx)).rejects.toMatchObject({
        message: '--resume: no earlier run of this project kept artifacts',
        exitCode: 2,
      });
      await expect(projectTest({ ...options, resume: 'nope' }, fakeContext({ cwd: root, docker }).ctx)).rejects.toMatchObject({
        message: expect.stringContaining('--resume nope: no run "nope"'),
        exitCode: 2,
      });
      expect(docker.called('runContainer')).toEqual([]);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it('a file the fake job writes to /artifacts is captured into the run folder; --resume puts it back', async () => {
    const root = await cycleswapProject();
    try {
      const docker = new FakeDocker();
      let seen: string[] = [];
      docker.onRun = async (spec) => {
        const mount = spec.mounts.find((m) => m.target === '/artifacts');
        if (!mount) return 0; // the reclaim helper
        seen = await fs.readdir(mount.source);
        await fs.writeFile(path.join(mount.source, `file-${seen.length}.txt`), 'x');
        return 0;
      };
      const first = fakeContext({ cwd: root, docker });
      expect(await projectTest(options, first.ctx)).toBe(0);
      expect(seen).toEqual([]);
      expect(first.stderr.text).toContain('1 artifact (FIFO) in');
      const second = fakeContext({ cwd: root, docker });
      expect(await projectTest({ ...options, resume: 'latest' }, second.ctx)).toBe(0);
      expect(seen).toEqual(['file-0.txt']);
      expect(second.stderr.text).toContain('2 artifacts (FIFO) in');
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('project test: the CUDA rule', () => {
  it('no driver: refused, naming the driver needed', async () => {
    const docker = new FakeDocker();
    const { ctx } = fakeContext({ cwd: await gpuProject('12.4'), docker, exec: async () => Promise.reject(new ExecNotFound('nvidia-smi')) });
    await expect(projectTest(options, ctx)).rejects.toMatchObject({
      message: expect.stringContaining('no NVIDIA driver was found'),
      hint: expect.stringContaining('550.54.14'),
    });
    expect(docker.called('build')).toEqual([]);
  });

  it('driver too old: refused with the version needed', async () => {
    const { ctx } = fakeContext({ cwd: await gpuProject('12.8'), docker: new FakeDocker(), exec: smi('smi-550.144.03-cuda12.4-1gpu-a100.txt') });
    await expect(projectTest(options, ctx)).rejects.toMatchObject({
      message: '[job].cuda = "12.8" needs a driver that supports CUDA 12.8, but driver 550.144.03 supports CUDA 12.4 at most',
      hint: expect.stringContaining('570.26 or newer'),
    });
  });

  it('nvidia-smi failing: refused with its reason', async () => {
    const text = await fs.readFile(path.join(fixtures, 'smi-fail-nvml-mismatch.txt'), 'utf8');
    const { ctx } = fakeContext({ cwd: await gpuProject('12.4'), docker: new FakeDocker(), exec: async () => ({ exitCode: 18, stdout: text, stderr: '' }) });
    await expect(projectTest(options, ctx)).rejects.toMatchObject({
      message: expect.stringContaining('Driver/library version mismatch'),
      hint: expect.stringContaining('reboot'),
    });
  });

  it('no NVIDIA container runtime: refused with how to install it', async () => {
    const { ctx } = fakeContext({ cwd: await gpuProject('12.4'), docker: new FakeDocker(), exec: smi('smi-580.82.09-cuda13.0-1gpu.txt') });
    await expect(projectTest(options, ctx)).rejects.toMatchObject({
      message: expect.stringContaining('Docker has no NVIDIA container runtime'),
      hint: expect.stringContaining('nvidia-ctk'),
    });
  });

  it('all checks pass (12.10 > 12.4, numerically): the container gets the GPUs', async () => {
    const docker = new FakeDocker();
    docker.info_ = { runtimes: ['runc', 'nvidia'] };
    const { ctx, stderr } = fakeContext({ cwd: await gpuProject('12.4'), docker, exec: smi('smi-580.82.09-cuda13.0-1gpu.txt') });
    expect(await projectTest(options, ctx)).toBe(0);
    expect(stderr.text).toContain('GPU: driver 580.82.09 supports CUDA 13.0 (needs 12.4)');
    const runs = docker.called('runContainer') as ContainerSpec[];
    expect(runs.at(-1)!.gpus).toBe('all');
    const cpu = new FakeDocker();
    await projectTest(options, fakeContext({ cwd: await cycleswapProject(), docker: cpu }).ctx);
    expect((cpu.called('runContainer') as ContainerSpec[]).at(-1)!.gpus).toBeUndefined();
  });

  it('Docker without an NVIDIA runtime at run time is explained', async () => {
    const docker = new FakeDocker();
    docker.info_ = { runtimes: ['nvidia'] };
    docker.runContainer = async (spec) =>
      spec.gpus
        ? { exitCode: 125, dockerFailure: { kind: 'no-gpu-runtime', daemonMessage: 'could not select device driver "" with capabilities: [[gpu]]' } }
        : { exitCode: 0 };
    const root = await gpuProject('12.4');
    try {
      const { ctx } = fakeContext({ cwd: root, docker, exec: smi('smi-560.35.03-cuda12.6-2gpu-rtx3090.txt') });
      await expect(projectTest(options, ctx)).rejects.toMatchObject({
        message: 'Docker cannot give GPUs to containers (no NVIDIA container runtime)',
        hint: expect.stringContaining('nvidia-ctk'),
        exitCode: 1,
      });
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it('Docker refusing GPUs at run time is explained', async () => {
    const docker = new FakeDocker();
    docker.info_ = { runtimes: ['nvidia'] };
    const refusal = await fs.readFile(path.join(fixtures, 'docker-requirement-cuda12.8-run-no-unknown.txt'), 'utf8');
    docker.runContainer = async (spec) =>
      spec.gpus ? { exitCode: 125, dockerFailure: { kind: 'cuda-requirement', requiredCuda: '12.8', daemonMessage: refusal } } : { exitCode: 0 };
    const { ctx } = fakeContext({ cwd: await gpuProject('12.4'), docker, exec: smi('smi-560.35.03-cuda12.6-2gpu-rtx3090.txt') });
    await expect(projectTest(options, ctx)).rejects.toMatchObject({
      message: 'the image requires CUDA 12.8, newer than the driver supports',
      hint: expect.stringContaining('570.26'),
    });
  });
});
