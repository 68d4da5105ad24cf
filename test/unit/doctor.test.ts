import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run as doctor } from '../../src/commands/doctor.js';
import { CycleError } from '../../src/errors.js';
import type { DockerDriver, DockerInfo } from '../../src/docker/driver.js';
import { ExecNotFound, type Exec } from '../../src/util/exec.js';
import { fakeContext, tempDir } from '../helpers/context.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');

function dockerWith(info: Partial<DockerInfo> | CycleError): DockerDriver {
  return {
    info: async () => {
      if (info instanceof CycleError) throw info;
      return {
        serverVersion: '27.0.0',
        clientVersion: '27.0.0',
        builder: 'buildkit',
        runtimes: ['runc'],
        cdiSpecDirs: [],
        operatingSystem: 'Ubuntu',
        architecture: 'x86_64',
        ...info,
      };
    },
  } as unknown as DockerDriver;
}

const noNvidia: Exec = async () => {
  throw new ExecNotFound('nvidia-smi');
};

/** nvidia-smi prints `text`; every other program (the toolkit hook) is not installed unless listed. */
const smiOnly =
  (text: string, installed: string[] = []): Exec =>
  async (file) => {
    if (file === 'nvidia-smi') return { exitCode: 0, stdout: text, stderr: '' };
    if (installed.includes(file)) return { exitCode: 0, stdout: 'usage', stderr: '' };
    throw new ExecNotFound(file);
  };

describe('doctor', () => {
  it('reports each check as ok / warn / fail in JSON, never the token', async () => {
    const cwd = await tempDir();
    const smi = await fs.readFile(path.join(fixtures, 'smi-550.144.03-cuda12.4-1gpu-a100.txt'), 'utf8');
    const { ctx, stdout } = fakeContext({
      cwd,
      env: { CYCLE_API_URL: 'http://127.0.0.1:8787', CYCLE_TOKEN: 'sekret-token-value' },
      docker: dockerWith({ runtimes: ['runc', 'nvidia'] }),
      exec: smiOnly(smi),
    });
    expect(await doctor({ json: true }, ctx)).toBe(0);
    const report = JSON.parse(stdout.text) as { ok: boolean; checks: Array<{ name: string; status: string; detail: string }> };
    expect(report.ok).toBe(true);
    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(byName.docker!.status).toBe('ok');
    expect(byName.builder!.detail).toBe('BuildKit');
    expect(byName.nvidia!.detail).toBe('driver 550.144.03, CUDA 12.4, 1 GPU: NVIDIA A100-SXM4-40GB');
    expect(byName['gpu in docker']!.status).toBe('ok');
    expect(byName['api url']!.detail).toBe('http://127.0.0.1:8787 (from the environment)');
    expect(byName.token!.detail).toBe('set (from the environment)');
    expect(stdout.text).not.toContain('sekret');
  });

  it('Docker down is a failure with the fix; no GPU and no API are warnings', async () => {
    const cwd = await tempDir();
    const down = new CycleError({ message: 'the Docker daemon is not running or cannot be reached', hint: 'start the Docker daemon', exitCode: 5 });
    const { ctx, stdout } = fakeContext({ cwd, docker: dockerWith(down), exec: noNvidia });
    expect(await doctor({ json: false }, ctx)).toBe(1);
    expect(stdout.text).toMatch(/^fail\s+docker\s+the Docker daemon is not running/m);
    expect(stdout.text).toMatch(/fix: start the Docker daemon/);
    expect(stdout.text).toMatch(/^warn\s+nvidia\s+no NVIDIA driver/m);
    expect(stdout.text).toMatch(/^warn\s+api url\s+no API URL set/m);
    expect(stdout.text).toMatch(/^ok\s+node\s+Node\.js/m);
  });

  it('a driver without the NVIDIA container runtime is a warning with the fix', async () => {
    const cwd = await tempDir();
    const smi = await fs.readFile(path.join(fixtures, 'smi-580.82.09-cuda13.0-1gpu.txt'), 'utf8');
    const { ctx, stdout } = fakeContext({ cwd, docker: dockerWith({ builder: 'legacy' }), exec: smiOnly(smi) });
    await doctor({ json: false }, ctx);
    expect(stdout.text).toMatch(/^warn\s+gpu in docker\s+Docker has no NVIDIA container runtime/m);
    expect(stdout.text).toContain('nvidia-ctk runtime configure');
  });

  it('the NVIDIA container toolkit hook counts, as it does for project test', async () => {
    const cwd = await tempDir();
    const smi = await fs.readFile(path.join(fixtures, 'smi-580.82.09-cuda13.0-1gpu.txt'), 'utf8');
    const { ctx, stdout } = fakeContext({ cwd, docker: dockerWith({}), exec: smiOnly(smi, ['nvidia-container-runtime-hook']) });
    await doctor({ json: false }, ctx);
    expect(stdout.text).toMatch(/^ok\s+gpu in docker\s+the NVIDIA container toolkit \(nvidia-container-runtime-hook\)/m);
  });
});
