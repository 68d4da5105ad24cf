import { describe, expect, it } from 'vitest';
import { parseComputalotManifest } from '../../src/project/computalot.js';
import { loadProject, type ComputalotProject } from '../../src/project/load.js';
import { computalotBuildHash, ociBuildContext } from '../../src/build-hash/oci-hash.js';
import { ensureOciImage, runValidationChecks } from '../../src/runner/oci-build.js';
import { run as validate } from '../../src/commands/project/validate.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import type { ImageBuildOptions } from '../../src/runner/cycleswap-build.js';
import type { BuildRecord } from '../../src/runner/build-store.js';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { jobContainer } from '../../src/runner/limits.js';
import { fakeContext, tempDir, writeFiles } from '../helpers/context.js';

const runtime = { kind: 'oci', sandbox: 'gvisor', workdir: '/workspace' };
const entrypoint = { command: ['python3', 'job.py'] };

function parse(manifest: Record<string, unknown>) {
  return parseComputalotManifest(JSON.stringify(manifest, null, 2));
}

async function ociProject(manifest: Record<string, unknown>, files: Record<string, string> = {}): Promise<ComputalotProject> {
  const root = await tempDir();
  await writeFiles(root, {
    Dockerfile: 'FROM ubuntu:24.04\nCOPY . /workspace\n',
    'job.py': 'print(1)\n',
    ...files,
    'computalot.project.json': JSON.stringify({ version: 1, runtime, entrypoint, ...manifest }),
  });
  const project = await loadProject(root);
  if (project.format !== 'computalot') throw new Error('expected an OCI project');
  return project;
}

describe('computalot.project.json: runtime.sandbox', () => {
  it('missing: valid, with a warning that public execution requires "gvisor" (exit 0)', async () => {
    const parsed = parse({ version: 1, runtime: { kind: 'oci', workdir: '/workspace' }, entrypoint });
    expect(parsed.manifest).toBeDefined();
    expect(parsed.diagnostics).toEqual([
      expect.objectContaining({
        severity: 'warning',
        field: 'runtime.sandbox',
        line: 3,
        message: 'no sandbox: public execution requires "sandbox": "gvisor"',
        hint: 'add "sandbox": "gvisor" to "runtime"',
      }),
    ]);

    const root = await tempDir();
    await writeFiles(root, {
      Dockerfile: 'FROM ubuntu:24.04\n',
      'computalot.project.json': JSON.stringify({ version: 1, runtime: { kind: 'oci', workdir: '/workspace' }, entrypoint }),
    });
    const { ctx, stdout } = fakeContext({ cwd: root });
    expect(await validate({ json: false }, ctx)).toBe(0);
    expect(stdout.text).toContain('computalot.project.json:1:14: warning: runtime.sandbox: no sandbox');
  });
});

describe('computalot.project.json: defaults and normal forms', () => {
  it('services and init commands get their documented fields, with cycle-chosen defaults', () => {
    const { manifest, diagnostics } = parse({
      version: 1,
      runtime: { ...runtime, init: { commands: [{ command: ['uv', 'sync'] }] }, services: [{ name: 'embedder', command: ['python3', '-m', 'embedder'] }] },
      entrypoint,
    });
    expect(diagnostics).toEqual([]);
    expect(manifest?.runtime.services).toEqual([
      { name: 'embedder', command: ['python3', '-m', 'embedder'], scope: 'task', restart: 'never', env: {}, ready_timeout_s: 60 },
    ]);
    expect(manifest?.runtime.init?.commands).toEqual([{ command: ['uv', 'sync'], env: {} }]);
  });

  it('build defaults to the root Dockerfile, and to <context>/Dockerfile for another context', () => {
    expect(parse({ version: 1, runtime, entrypoint }).manifest?.build).toEqual({ dockerfile: 'Dockerfile', context: '.', args: {} });
    expect(parse({ version: 1, runtime, entrypoint, build: { context: 'app' } }).manifest?.build).toEqual({
      dockerfile: 'app/Dockerfile',
      context: 'app',
      args: {},
    });
  });

  it('validation checks: {label, command}, the older {name, command} and a bare array all get a label', () => {
    const { manifest } = parse({
      version: 1,
      runtime,
      entrypoint,
      validation: {
        commands: [
          { label: 'numpy import', command: ['python3', '-c', 'import numpy'] },
          { name: 'torch', command: ['python3', '-c', 'import torch'], timeout_s: 5 },
          ['true'],
        ],
      },
    });
    expect(manifest?.validation?.commands).toEqual([
      { label: 'numpy import', command: ['python3', '-c', 'import numpy'] },
      { label: 'torch', command: ['python3', '-c', 'import torch'], timeout_s: 5 },
      { label: 'true', command: ['true'] },
    ]);
  });

  it('a top-level "services" (the shape cycle guessed before the docs) is a warning pointing into "runtime"', () => {
    const { manifest, diagnostics } = parse({ version: 1, runtime, entrypoint, services: [{ name: 'redis', command: ['redis-server'] }] });
    expect(manifest).toBeDefined();
    expect(diagnostics).toEqual([expect.objectContaining({ severity: 'warning', field: 'services', line: 14, hint: 'move "services" into "runtime"' })]);
  });
});

describe('computalot.project.json: a key written twice', () => {
  it('is a warning naming the key and both lines (the last one is used, as by JSON parsers); keys inside are not repeated', () => {
    const text = `{
  "version": 1,
  "runtime": { "kind": "oci", "sandbox": "gvisor", "workdir": "/workspace" },
  "entrypoint": { "command": ["python3", "job.py"] },
  "runtime": { "kind": "oci", "sandbox": "gvisor", "workdir": "/app" }
}`;
    const { manifest, diagnostics } = parseComputalotManifest(text);
    expect(manifest?.runtime.workdir).toBe('/app');
    expect(diagnostics).toEqual([
      {
        severity: 'warning',
        file: 'computalot.project.json',
        line: 5,
        column: 3,
        field: 'runtime',
        message: 'key "runtime" is written twice: at line 3 and again at line 5; JSON parsers keep the last one',
        hint: 'keep one of the two (lines 3 and 5)',
      },
    ]);
  });
});

describe('OCI builds: build.dockerfile, context, target and args', () => {
  it('the build hash covers each setting; a default build keeps the hash of a manifest without "build"', async () => {
    // The manifest is left out of the build context, so that only the settings differ.
    const files = {
      'docker/Dockerfile': 'FROM ubuntu:24.04\n',
      '.dockerignore': 'computalot.project.json\n',
      'docker/.dockerignore': 'computalot.project.json\n',
    };
    const hashOf = async (build?: Record<string, unknown>): Promise<string> =>
      (await computalotBuildHash(await ociProject(build ? { build } : {}, files), { useCache: false })).hash;
    const none = await hashOf();
    expect(await hashOf({ dockerfile: 'Dockerfile', context: '.', args: {} })).toBe(none);
    const variants = await Promise.all([
      hashOf({ target: 'runtime' }),
      hashOf({ args: { PYTHON_VERSION: '3.11' } }),
      hashOf({ args: { PYTHON_VERSION: '3.12' } }),
      hashOf({ dockerfile: 'docker/Dockerfile' }),
      hashOf({ context: 'docker' }),
    ]);
    expect(new Set([none, ...variants]).size).toBe(6);
    // Canonical: the order args are written in does not matter.
    expect(await hashOf({ args: { A: '1', B: '2' } })).toBe(await hashOf({ args: { B: '2', A: '1' } }));
  });

  it('a context folder: its files, relative to it, filtered by its own .dockerignore', async () => {
    const project = await ociProject(
      { build: { context: 'app' } },
      { 'app/Dockerfile': 'FROM ubuntu:24.04\n', 'app/main.py': '', 'app/.dockerignore': 'secret.txt\n', 'app/secret.txt': '', 'outside.txt': '' },
    );
    const paths = (await ociBuildContext(project.root, project.manifest.build)).map((entry) => entry.path);
    expect(paths.sort()).toEqual(['.dockerignore', 'Dockerfile', 'main.py']);
  });

  it('docker build gets the Dockerfile path inside the context, the target and the build args', async () => {
    const project = await ociProject(
      { build: { dockerfile: 'app/docker/Dockerfile', context: 'app', target: 'runtime', args: { PYTHON_VERSION: '3.11' } } },
      { 'app/docker/Dockerfile': 'FROM ubuntu:24.04\n' },
    );
    const docker = new FakeDocker();
    const saved: BuildRecord[] = [];
    const options: ImageBuildOptions = {
      docker,
      store: { last: async () => undefined, save: async (record) => void saved.push(record) },
      flags: { rebuild: false, clean: false },
      repositoryPrefix: 'cycle-test',
      projectKey: 'key',
      maxLayers: 100,
      report: () => undefined,
      onOutput: () => undefined,
      now: () => new Date(0),
      useStatCache: false,
    };
    await ensureOciImage(project, 'demo', options);
    const build = docker.calls.find((call) => call.method === 'build');
    expect(build?.args).toMatchObject({ target: 'runtime', buildArgs: { PYTHON_VERSION: '3.11' } });
    expect(saved).toHaveLength(1);
  });
});

describe('validation checks run in the built image', () => {
  const lockedDown = jobContainer({ sandbox: 'gvisor', skipLimits: false, gvisorRegistered: true, env: {}, host: { memoryBytes: 8 * 2 ** 30, cpus: 4 } });

  it('a failed command check is named by its label', async () => {
    const project = await ociProject({ validation: { commands: [{ label: 'numpy import', command: ['python3', '-c', 'import numpy'] }, ['true']] } });
    const docker = new FakeDocker();
    docker.onRun = (spec) => (spec.entrypoint === 'python3' ? 1 : 0);
    const image = docker.addImage({ tags: ['built'], layers: ['base'], labels: {} });
    const checks = await runValidationChecks(project, image.id, docker, (suffix) => `check-${suffix}`, lockedDown);
    expect(checks).toEqual([
      { kind: 'command', name: 'numpy import', ok: false, detail: 'exited with code 1' },
      { kind: 'command', name: 'true', ok: true },
    ]);
  });

  it("each check container has the job's lock-down, limits and network (it had Docker's defaults)", async () => {
    const project = await ociProject({ validation: { executables: ['python3'], files: ['job.py'], commands: [['true']] } });
    const docker = new FakeDocker();
    docker.onRun = (spec, io) => {
      if (spec.entrypoint === '/bin/sh') io.stdout(Buffer.from('ok executable python3\nok file job.py\n'));
      return 0;
    };
    const image = docker.addImage({ tags: ['built'], layers: ['base'], labels: {} });
    const checks = await runValidationChecks(project, image.id, docker, (suffix) => `check-${suffix}`, lockedDown);
    expect(checks.every((check) => check.ok)).toBe(true);
    const specs = docker.called('runContainer') as ContainerSpec[];
    expect(specs).toHaveLength(2);
    for (const spec of specs) {
      expect(spec.confinement).toEqual(lockedDown.confinement);
      expect(spec.network).toBe('none');
    }
  });
});
