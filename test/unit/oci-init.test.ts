import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run as projectTest } from '../../src/commands/project/test.js';
import { computalotBuildHash } from '../../src/build-hash/oci-hash.js';
import { loadProject } from '../../src/project/load.js';
import { isCycleError } from '../../src/errors.js';
import { presentBuildLine } from '../../src/docker/build-output.js';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { FakeDocker, type BuildRun } from '../helpers/fake-docker.js';
import { fakeContext, tempDir, writeFiles } from '../helpers/context.js';

const options = { rebuild: false, clean: false, volume: [], json: false, skipLimits: false };
const DOCKERFILE = 'FROM ubuntu:24.04\nENV A=1\nWORKDIR /workspace\nUSER app\nENTRYPOINT ["python3"]\nCMD ["job.py"]\nCOPY . .\n';
const INIT = [
  { label: 'sync deps', command: ['uv', 'sync'], cwd: '.', env: { UV_LINK_MODE: 'copy', A: 'from-init' } },
  { command: ['make', 'data'], cwd: 'data' },
  { label: 'absolute', command: ['true'], cwd: '/opt' },
];

async function ociProject(init: unknown[] = INIT): Promise<string> {
  const root = await tempDir('cycle-init-');
  await writeFiles(root, {
    Dockerfile: DOCKERFILE,
    'job.py': 'print(1)\n',
    'computalot.project.json': JSON.stringify({
      version: 1,
      name: 'initdemo',
      runtime: { kind: 'oci', workdir: '/workspace', init: { commands: init } },
      entrypoint: { command: ['python3', 'job.py'] },
    }),
  });
  return root;
}

/** A fake Docker whose task containers succeed with a result, recording the build steps run. */
function docker(): { docker: FakeDocker; steps: BuildRun[] } {
  const fake = new FakeDocker();
  const steps: BuildRun[] = [];
  fake.onBuildRun = (step) => {
    // The Dockerfile's COPY has no RUN: every step seen here is an init command.
    steps.push(step);
    return 0;
  };
  fake.onRun = async (spec) => {
    const file = spec.env.COMPUTALOT_TASK_RESULT;
    const mount = spec.mounts.find((m) => file?.startsWith(`${m.target}/`));
    if (file && mount) await fs.writeFile(path.join(mount.source, path.posix.relative(mount.target, file)), '{}');
    return 0;
  };
  return { docker: fake, steps };
}

async function test(root: string, fake: FakeDocker, flags: Partial<typeof options> = {}): Promise<{ code: number; stderr: string }> {
  const { ctx, stderr } = fakeContext({ cwd: root, docker: fake });
  const code = await projectTest({ ...options, ...flags }, ctx);
  return { code, stderr: stderr.text };
}

describe('runtime.init.commands run during preparation (fake Docker)', () => {
  it('run in order after the Dockerfile build, each in its cwd with its env, as the image user; the task runs in the result', async () => {
    const root = await ociProject();
    const { docker: fake, steps } = docker();
    const { code, stderr } = await test(root, fake);
    expect(code).toBe(0);
    expect(steps.map((s) => s.command)).toEqual([['uv', 'sync'], ['make', 'data'], ['true']]);
    expect(steps.map((s) => s.workdir)).toEqual(['/workspace', '/workspace/data', '/opt']);
    expect(steps.every((s) => s.user === 'app')).toBe(true);
    // Its env, over what the image sets (A) and beside it (PATH); the next command does not get it.
    expect(steps[0]!.env).toMatchObject({ UV_LINK_MODE: 'copy', A: 'from-init', PATH: '/usr/bin' });
    expect(steps[1]!.env).toMatchObject({ A: '1' });
    expect(steps[1]!.env).not.toHaveProperty('UV_LINK_MODE');
    // Progress, in order, on stderr; a command without a label is named by its command.
    const progress = stderr.split('\n').filter((line) => line.startsWith('running init'));
    expect(progress).toEqual(['running init "sync deps"', 'running init "make data"', 'running init "absolute"']);
    // The task ran in the prepared image, which is what the build record names.
    const record = JSON.parse(await fs.readFile(path.join(root, '.cycle', 'last-build.json'), 'utf8')) as { image: { id: string; tag: string } };
    const [task] = fake.called('runContainer') as ContainerSpec[];
    expect(task!.image).toBe(record.image.id);
    expect(fake.resolve(record.image.tag)?.id).toBe(record.image.id);
    // The steps' helper tags (the Dockerfile's image, each command's but the last) are gone.
    expect([...fake.images.values()].flatMap((i) => i.tags).filter((t) => /-(dockerfile|init-\d+)$/.test(t))).toEqual([]);
  });

  it("the prepared image's config (entrypoint, cmd, workdir, env, user) is the Dockerfile image's", async () => {
    const root = await ociProject();
    const { docker: fake } = docker();
    expect((await test(root, fake)).code).toBe(0);
    const record = JSON.parse(await fs.readFile(path.join(root, '.cycle', 'last-build.json'), 'utf8')) as { image: { id: string } };
    const prepared = fake.resolve(record.image.id)!;
    // The first build is the Dockerfile's; its image is the one the init steps started from.
    const built = (fake.called('build') as Array<{ dockerfile: string }>).length;
    expect(built).toBe(1 + INIT.length);
    expect({ env: prepared.env, workdir: prepared.workdir, entrypoint: prepared.entrypoint, cmd: prepared.cmd, user: prepared.user }).toEqual({
      env: ['PATH=/usr/bin', 'A=1'],
      workdir: '/workspace',
      entrypoint: ['python3'],
      cmd: ['job.py'],
      user: 'app',
    });
    // The build hash is on the prepared image only.
    const hash = (await computalotBuildHash(await computalot(root), { useCache: false })).hash;
    const labelled = [...fake.images.values()].filter((i) => i.labels['cycle.build-hash'] === hash);
    expect(labelled.map((i) => i.id)).toEqual([record.image.id]);
  });

  it('an unchanged project reuses the prepared image without running init; a changed init command, --rebuild and --clean run it again', async () => {
    const root = await ociProject();
    const { docker: fake, steps } = docker();
    expect((await test(root, fake)).code).toBe(0);
    expect(steps).toHaveLength(3);

    const again = await test(root, fake);
    expect(again.code).toBe(0);
    expect(steps).toHaveLength(3);
    expect(again.stderr).not.toContain('running init');
    expect(again.stderr).toContain('up to date');

    await writeManifestInit(root, [{ ...INIT[0]!, env: { UV_LINK_MODE: 'hardlink' } }, ...INIT.slice(1)]);
    expect((await test(root, fake)).code).toBe(0);
    expect(steps).toHaveLength(6);
    expect(steps[3]!.env).toMatchObject({ UV_LINK_MODE: 'hardlink' });

    expect((await test(root, fake, { rebuild: true })).code).toBe(0);
    expect(steps).toHaveLength(9);
    expect((await test(root, fake, { clean: true })).code).toBe(0);
    expect(steps).toHaveLength(12);
  });

  it('a failing init command fails the preparation naming its index and label, with its last output; nothing is recorded, so it runs again', async () => {
    const root = await ociProject();
    const { docker: fake, steps } = docker();
    fake.onBuildRun = (step, output) => {
      steps.push(step);
      if (step.command[0] !== 'make') return 0;
      output('make: *** No rule to make target data. Stop.');
      return 2;
    };
    const error = await test(root, fake).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!isCycleError(error)) throw new Error(`expected a CycleError, got ${String(error)}`);
    expect(error.message).toBe('runtime.init.commands[1] "make data" exited with code 2');
    expect(error.exitCode).toBe(6); // as a failed build
    expect(error.details.join('\n')).toContain('make: *** No rule to make target data. Stop.');
    expect(error.details.join('\n')).not.toContain('returned a non-zero code');
    expect(error.hint).toContain('runtime.init.commands[1] of computalot.project.json');
    expect(fake.called('runContainer')).toEqual([]);
    await expect(fs.access(path.join(root, '.cycle', 'last-build.json'))).rejects.toThrow();
    expect([...fake.images.values()].flatMap((i) => i.tags).filter((t) => t.startsWith('cycle/initdemo'))).toEqual([]);

    fake.onBuildRun = (step) => {
      steps.push(step);
      return 0;
    };
    expect((await test(root, fake)).code).toBe(0);
    expect(steps.map((s) => s.command[0])).toEqual(['uv', 'make', 'uv', 'make', 'true']);
  });

  it('the build hash covers the init commands even when the manifest is outside the build context; a project without any keeps its hash', async () => {
    const root = await tempDir('cycle-init-ctx-');
    const write = (runtime: Record<string, unknown>): Promise<void> =>
      writeFiles(root, {
        'image/Dockerfile': DOCKERFILE,
        'image/job.py': 'print(1)\n',
        'computalot.project.json': JSON.stringify({
          version: 1,
          name: 'initdemo',
          build: { context: 'image' },
          runtime: { kind: 'oci', workdir: '/workspace', ...runtime },
          entrypoint: { command: ['python3', 'job.py'] },
        }),
      });
    const hash = async (): Promise<string> => (await computalotBuildHash(await computalot(root), { useCache: false })).hash;
    await write({});
    const none = await hash();
    await write({ init: { commands: [] } });
    expect(await hash()).toBe(none);
    await write({ init: { commands: INIT } });
    const withInit = await hash();
    expect(withInit).not.toBe(none);
    // A label only names a command.
    await write({ init: { commands: [{ ...INIT[0]!, label: 'renamed' }, ...INIT.slice(1)] } });
    expect(await hash()).toBe(withInit);
    // What a command does, and where a relative cwd lands, count.
    await write({ init: { commands: [{ ...INIT[0]!, env: { UV_LINK_MODE: 'hardlink' } }, ...INIT.slice(1)] } });
    expect(await hash()).not.toBe(withInit);
    await write({ workdir: '/srv', init: { commands: INIT } });
    expect(await hash()).not.toBe(withInit);

    // So project test prepares again when only the init commands changed.
    const { docker: fake, steps } = docker();
    await write({ init: { commands: INIT } });
    expect((await test(root, fake)).code).toBe(0);
    await write({ init: { commands: [{ ...INIT[0]!, env: { UV_LINK_MODE: 'hardlink' } }, ...INIT.slice(1)] } });
    expect((await test(root, fake)).code).toBe(0);
    expect(steps.map((step) => step.env.UV_LINK_MODE)).toEqual(['copy', undefined, undefined, 'hardlink', undefined, undefined]);
  });
});

async function writeManifestInit(root: string, init: unknown[]): Promise<void> {
  const current = JSON.parse(await fs.readFile(path.join(root, 'computalot.project.json'), 'utf8')) as Record<string, unknown>;
  await fs.writeFile(
    path.join(root, 'computalot.project.json'),
    JSON.stringify({ ...current, runtime: { kind: 'oci', workdir: '/workspace', init: { commands: init } } }),
  );
}

async function computalot(root: string) {
  const project = await loadProject(root);
  if (project.format !== 'computalot') throw new Error('expected an OCI project');
  return project;
}

describe("an init command's output is shown like build output", () => {
  it("the legacy builder's colour codes around a step's stderr neither show nor hide its chatter", () => {
    expect(presentBuildLine('\x1b[91mmore')).toBe('more');
    expect(presentBuildLine('\x1b[0mRemoving intermediate container 5432c55893f5')).toBeUndefined();
    expect(presentBuildLine('about to fail')).toBe('about to fail');
  });
});
