import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CliDockerDriver, confinementFlags } from '../../src/docker/cli-driver.js';
import { confinementHostConfig, EngineDockerDriver } from '../../src/docker/engine-driver.js';
import {
  JOB_CAPABILITIES,
  jobContainer,
  memoryLimitSetting,
  outOfMemoryReason,
  RECLAIM_CAPABILITIES,
  RECLAIM_MEMORY_BYTES,
  RECLAIM_PIDS_LIMIT,
} from '../../src/runner/limits.js';
import { runProjectTask } from '../../src/runner/task-service.js';
import { loadProject } from '../../src/project/load.js';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { runTask } from '../../src/runner/task.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { cycleswapProject, tempDir } from '../helpers/context.js';

const GiB = 2 ** 30;
const host = { memoryBytes: 16 * GiB, cpus: 8 };

describe('a job container: one set of lock-down and limits for project test and the server', () => {
  it('locks down: no new privileges, every capability dropped but the documented few, no network', () => {
    const { confinement, network, warnings } = jobContainer({ skipLimits: false, gvisorRegistered: false, env: {}, host });
    expect(confinement).toMatchObject({ noNewPrivileges: true, capDrop: ['ALL'], capAdd: JOB_CAPABILITIES });
    expect(network).toBe('none');
    expect(warnings).toEqual([]);
    expect(jobContainer({ skipLimits: false, gvisorRegistered: false, env: { CYCLE_DOCKER_NETWORK: 'host' }, host }).network).toBe('host');
  });

  it('limits memory to 90% of the host RAM and processes to 4096; --skip-limits lifts both but keeps the lock-down', () => {
    expect(jobContainer({ skipLimits: false, gvisorRegistered: false, env: {}, host }).confinement).toMatchObject({
      memoryBytes: Math.floor(16 * GiB * 0.9),
      pidsLimit: 4096,
    });
    const skipped = jobContainer({ skipLimits: true, gvisorRegistered: false, env: {}, host }).confinement;
    expect(skipped.memoryBytes).toBeUndefined();
    expect(skipped.pidsLimit).toBeUndefined();
    expect(skipped.noNewPrivileges).toBe(true);
  });

  it('CYCLE_MEMORY_LIMIT sets the memory limit; a request asks for less, never more; cpu is capped at the host', () => {
    expect(jobContainer({ skipLimits: false, gvisorRegistered: false, env: { CYCLE_MEMORY_LIMIT: '256m' }, host }).confinement.memoryBytes).toBe(256 * 2 ** 20);
    expect(jobContainer({ skipLimits: false, gvisorRegistered: false, env: {}, host, requirements: { memory_gb: 2, cpu: 1.5 } }).confinement).toMatchObject({
      memoryBytes: 2 * GiB,
      nanoCpus: 1.5e9,
    });
    expect(jobContainer({ skipLimits: false, gvisorRegistered: false, env: {}, host, requirements: { memory_gb: 64, cpu: 32 } }).confinement).toMatchObject({
      memoryBytes: Math.floor(16 * GiB * 0.9),
      nanoCpus: 8e9,
    });
  });

  it('reads memory sizes as Docker does (binary units); a bad one names the variable and the form expected', () => {
    expect(memoryLimitSetting({ CYCLE_MEMORY_LIMIT: '1.5GiB' })).toBe(1.5 * GiB);
    expect(memoryLimitSetting({ CYCLE_MEMORY_LIMIT: '2g' })).toBe(2 * GiB);
    expect(memoryLimitSetting({ CYCLE_MEMORY_LIMIT: '104857600' })).toBe(100 * 2 ** 20);
    expect(memoryLimitSetting({})).toBeUndefined();
    expect(() => memoryLimitSetting({ CYCLE_MEMORY_LIMIT: 'lots' })).toThrow(/CYCLE_MEMORY_LIMIT="lots": expected a memory size of at least 6m/);
    expect(() => memoryLimitSetting({ CYCLE_MEMORY_LIMIT: '1k' })).toThrow(/at least 6m/);
  });

  it('gVisor when the manifest asks and Docker has it; without it, a warning that the job runs unsandboxed and how to fix it', () => {
    expect(jobContainer({ sandbox: 'gvisor', skipLimits: false, gvisorRegistered: true, env: {}, host }).confinement.runtime).toBe('runsc');
    const missing = jobContainer({ sandbox: 'gvisor', skipLimits: false, gvisorRegistered: false, env: {}, host });
    expect(missing.confinement.runtime).toBeUndefined();
    expect(missing.warnings.join()).toMatch(/runs unsandboxed.*scripts\/setup\.sh/);
    expect(jobContainer({ skipLimits: false, gvisorRegistered: true, env: {}, host }).confinement.runtime).toBeUndefined();
  });
});

describe('both drivers tell Docker the same', () => {
  const confinement = {
    noNewPrivileges: true,
    capDrop: ['ALL'],
    capAdd: ['CHOWN', 'KILL'],
    runtime: 'runsc',
    memoryBytes: 256 * 2 ** 20,
    pidsLimit: 4096,
    nanoCpus: 1.5e9,
  };

  it('as docker run flags and as Engine API HostConfig fields', () => {
    expect(confinementFlags(confinement)).toEqual([
      '--security-opt',
      'no-new-privileges',
      '--cap-drop',
      'ALL',
      '--cap-add',
      'CHOWN',
      '--cap-add',
      'KILL',
      '--runtime',
      'runsc',
      '--memory',
      '268435456b',
      '--memory-swap',
      '268435456b',
      '--pids-limit',
      '4096',
      '--cpus',
      '1.5',
    ]);
    expect(confinementHostConfig(confinement)).toEqual({
      SecurityOpt: ['no-new-privileges'],
      CapDrop: ['ALL'],
      CapAdd: ['CHOWN', 'KILL'],
      Runtime: 'runsc',
      Memory: 268435456,
      MemorySwap: 268435456,
      PidsLimit: 4096,
      NanoCpus: 1.5e9,
    });
    expect(confinementFlags(undefined)).toEqual([]);
  });

  const dirs: string[] = [];
  const servers: http.Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) server.close();
    for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
  });
  const spec = {
    image: 'cycle/demo:abc',
    name: 'cycle-demo-task',
    command: ['python3', 'job.py'],
    env: {},
    mounts: [],
    labels: {},
    network: 'none',
    confinement,
  };
  const io = { stdout: () => undefined, stderr: () => undefined };

  it('Engine API: the create request carries the limits; an OOM-killed container is inspected, reported and removed', async () => {
    const dir = await tempDir('cycle-limits-engine-');
    dirs.push(dir);
    const socketPath = path.join(dir, 'docker.sock');
    let created: { HostConfig?: Record<string, unknown> } = {};
    const seen: string[] = [];
    const server = http.createServer((request, response) => {
      seen.push(`${request.method} ${request.url?.replace(/\?.*/, '')}`);
      if (request.url?.startsWith('/containers/create')) {
        let text = '';
        request.on('data', (chunk: Buffer) => (text += chunk.toString()));
        request.on('end', () => {
          created = JSON.parse(text);
          response.writeHead(201).end(JSON.stringify({ Id: 'm1' }));
        });
      } else if (request.url?.startsWith('/containers/m1/wait')) response.writeHead(200).end(JSON.stringify({ StatusCode: 137 }));
      else if (request.url === '/containers/m1/json') response.writeHead(200).end(JSON.stringify({ State: { OOMKilled: true, ExitCode: 137 } }));
      else response.writeHead(204).end();
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const driver = new EngineDockerDriver({ kind: 'unix', socketPath, description: `unix://${socketPath}` }, { env: {} });
    driver['attach'] = async () => {
      const socket = new PassThrough();
      socket.end();
      setImmediate(() => socket.destroy());
      return { socket, head: Buffer.alloc(0) };
    };
    expect(await driver.runContainer(spec, io)).toEqual({ exitCode: 137, oomKilled: true });
    expect(created.HostConfig).toMatchObject({ ...confinementHostConfig(confinement), NetworkMode: 'none', AutoRemove: false });
    expect(seen.slice(-2)).toEqual(['GET /containers/m1/json', 'DELETE /containers/m1']);
  });

  it('docker CLI: the flags go to docker run; an OOM-killed container is inspected, reported and removed', async () => {
    const dir = await tempDir('cycle-limits-cli-');
    dirs.push(dir);
    const binary = path.join(dir, 'docker');
    const log = path.join(dir, 'calls');
    // A fake docker: records each call; `run` dies as an OOM kill does, `inspect` says so.
    await fs.writeFile(binary, `#!/bin/sh\necho "$*" >> ${JSON.stringify(log)}\ncase "$1" in run) exit 137;; container) echo true;; esac\nexit 0\n`, {
      mode: 0o755,
    });
    const driver = new CliDockerDriver({ binary, env: { PATH: process.env.PATH } });
    expect(await driver.runContainer(spec, io)).toEqual({ exitCode: 137, oomKilled: true });
    const calls = (await fs.readFile(log, 'utf8')).trim().split('\n');
    expect(calls[0]).toContain(`--network none ${confinementFlags(confinement).join(' ')} cycle/demo:abc python3 job.py`);
    expect(calls[0]).not.toContain('--rm');
    expect(calls.slice(1)).toEqual(['container inspect --format {{.State.OOMKilled}} cycle-demo-task', 'rm --force --volumes cycle-demo-task']);
  });
});

describe('a task killed for memory', () => {
  it('fails with a message that says it ran out of memory and what the limit was', async () => {
    const docker = new FakeDocker();
    docker.onRun = () => ({ exitCode: 137, oomKilled: true });
    const artifactsDir = await tempDir('cycle-limits-artifacts-');
    try {
      const outcome = await runTask(
        docker,
        {
          image: 'ubuntu:24.04',
          name: 't',
          labels: {},
          command: ['true'],
          env: {},
          payload: {},
          artifactsDir,
          mounts: [],
          gpus: false,
          resultRequired: false,
          confinement: { noNewPrivileges: true, capDrop: [], capAdd: [], memoryBytes: 256 * 2 ** 20 },
        },
        { stdout: () => undefined, stderr: () => undefined, progress: () => undefined },
      );
      expect(outcome).toMatchObject({ status: 'failed', exitCode: 137, outOfMemory: true, reason: 'ran out of memory (limit 256 MiB): the kernel killed it' });
      expect(outOfMemoryReason(3 * GiB)).toContain('limit 3.0 GiB');
    } finally {
      await fs.rm(artifactsDir, { recursive: true, force: true });
    }
  });
});

describe('the reclaim helper (gives back files a job left owned by root)', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  async function runJob(writes: boolean, sandboxed: boolean): Promise<FakeDocker> {
    // As a user other than the files' owner (the test may run as root, which needs no helper).
    vi.spyOn(process, 'getuid').mockReturnValue(4321);
    vi.spyOn(process, 'getgid').mockReturnValue(4321);
    const root = await cycleswapProject();
    const work = await tempDir('cycle-reclaim-');
    const docker = new FakeDocker();
    docker.onRun = async (spec) => {
      const artifacts = spec.mounts.find((mount) => mount.target === '/artifacts');
      if (writes && artifacts) await fs.writeFile(path.join(artifacts.source, 'out.txt'), 'x');
      return 0;
    };
    try {
      const project = await loadProject(root);
      await runProjectTask({
        docker,
        project,
        imageId: 'ubuntu:24.04',
        name: 'cycle-t1',
        labels: {},
        payload: {},
        mounts: [],
        gpus: false,
        container: jobContainer({ ...(sandboxed ? { sandbox: 'gvisor' } : {}), skipLimits: false, gvisorRegistered: true, env: {}, host }),
        sourceFiles: [],
        artifacts: { liveDir: path.join(work, 'live'), storeDir: path.join(work, 'store') },
        callbacks: { stdout: () => undefined, stderr: () => undefined, progress: () => undefined },
      });
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
    return docker;
  }

  const helperOf = (docker: FakeDocker): ContainerSpec[] => docker.containersRun.filter((spec) => spec.name === 'cycle-t1-reclaim');

  it('runs as root with no network, CHOWN and DAC_READ_SEARCH only, no new privileges, small limits', async () => {
    const [helper, ...more] = helperOf(await runJob(true, false));
    expect(more).toEqual([]);
    expect(helper).toMatchObject({ entrypoint: 'chown', user: '0:0', command: ['-R', '4321:4321', '/reclaim'], network: 'none' });
    expect(helper?.confinement).toEqual({
      noNewPrivileges: true,
      capDrop: ['ALL'],
      capAdd: RECLAIM_CAPABILITIES,
      memoryBytes: RECLAIM_MEMORY_BYTES,
      pidsLimit: RECLAIM_PIDS_LIMIT,
    });
    expect(RECLAIM_CAPABILITIES).toEqual(['CHOWN', 'DAC_READ_SEARCH']);
  });

  it('runs in gVisor when the job did; does not run when the job left nothing of another owner', async () => {
    expect(helperOf(await runJob(true, true))[0]?.confinement?.runtime).toBe('runsc');
    expect(helperOf(await runJob(false, true))).toEqual([]);
  });
});
