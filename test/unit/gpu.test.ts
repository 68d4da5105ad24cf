import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkCudaRequirement,
  classifyNvidiaSmiFailure,
  parseNvidiaSmiTable,
  parseNvidiaSmiVersion,
  parseQueryCsv,
  probeNvidia,
} from '../../src/docker/gpu.js';
import { CUDA_MIN_DRIVER, compareVersions, cudaForDriver, minimumDriverFor } from '../../src/docker/cuda-drivers.js';
import { ExecNotFound, type Exec } from '../../src/util/exec.js';

const dir = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');
const read = (name: string): Promise<string> => fs.readFile(path.join(dir, name), 'utf8');
const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.txt')).sort();

/** Driver and CUDA version from the file name: smi-<driver>-cuda<version>-… */
function expectedFromName(name: string): { driver: string; cuda: string | undefined } | undefined {
  const match = /^smi-(\d+(?:\.\d+)+)-cuda(\d+\.\d+|-NA)-/.exec(name);
  if (!match) return undefined;
  return { driver: match[1]!, cuda: match[2] === '-NA' ? undefined : match[2] };
}

describe('nvidia-smi default table: every recorded output', () => {
  const tables = files.filter((f) => expectedFromName(f));
  it('covers the table fixtures', () => expect(tables.length).toBeGreaterThanOrEqual(17));

  it.each(tables)('%s', async (name) => {
    const expected = expectedFromName(name)!;
    const report = parseNvidiaSmiTable(await read(name));
    expect(report).toBeDefined();
    expect(report!.driverVersion).toBe(expected.driver);
    if (expected.cuda) {
      expect(report!.cudaVersion).toBe(expected.cuda);
      expect(report!.cudaSource).toBe('nvidia-smi');
    } else {
      // `CUDA Version: N/A` (driver container): derived from the driver table.
      expect(report!.cudaSource).toBe('driver-table');
      expect(report!.cudaVersion).toBe(cudaForDriver(expected.driver));
    }
    const gpuCount = Number(/-(\d+)gpu/.exec(name)?.[1]);
    expect(report!.gpus.length).toBe(gpuCount);
    expect(report!.gpus.map((g) => g.index)).toEqual(Array.from({ length: gpuCount }, (_, i) => i));
  });

  it('reads GPU names, including Windows (WDDM) and MIG hosts', async () => {
    expect(parseNvidiaSmiTable(await read('smi-576.88-cuda12.9-1gpu-windows.txt'))!.gpus[0]!.name).toBe('NVIDIA GeForce RTX 5060');
    expect(parseNvidiaSmiTable(await read('smi-590.48.01-cuda13.1-1gpu-h100-mig.txt'))!.gpus).toEqual([{ index: 0, name: 'NVIDIA H100 80GB HBM3' }]);
    const h200 = parseNvidiaSmiTable(await read('smi-570.133.20-cuda12.8-8gpu-h200.txt'))!;
    expect(new Set(h200.gpus.map((g) => g.name))).toEqual(new Set(['NVIDIA H200']));
  });
});

describe('nvidia-smi --version', () => {
  it('classic form', async () => {
    expect(parseNvidiaSmiVersion(await read('smi-version-595.80.txt'))).toMatchObject({ driverVersion: '595.80', cudaVersion: '13.2' });
  });
  it('R610 form with KMD and CUDA UMD versions', async () => {
    expect(parseNvidiaSmiVersion(await read('smi-version-610.57.04-kmd.txt'))).toMatchObject({ driverVersion: '610.57.04', cudaVersion: '13.3' });
  });
  it('an R610 table (KMD Version / CUDA UMD Version) parses too', () => {
    const header = '| NVIDIA-SMI 610.57.04              KMD Version: 610.57.04      CUDA UMD Version: 13.3 |';
    expect(parseNvidiaSmiTable(header)).toMatchObject({ driverVersion: '610.57.04', cudaVersion: '13.3' });
  });
});

describe('--query-gpu CSV', () => {
  it('with a header', async () => {
    const rows = parseQueryCsv(await read('query-csv-compute_cap-compute_mode-driver_version-name-index-570.86.15-2gpu.txt'));
    expect(rows.map((r) => [r.driver_version, r.name, r.index])).toEqual([
      ['570.86.15', 'NVIDIA TITAN V', '0'],
      ['570.86.15', 'NVIDIA RTX 5880 Ada Generation', '1'],
    ]);
  });
  it('noheader, one line per GPU', async () => {
    expect(parseQueryCsv(await read('query-csv-driver_version-noheader-515.57-2gpu.txt'), ['driver_version']).map((r) => r.driver_version)).toEqual([
      '515.57',
      '515.57',
    ]);
    expect(parseQueryCsv(await read('query-csv-driver_version-noheader-id0-515.57.txt'), ['driver_version'])).toEqual([{ driver_version: '515.57' }]);
  });
  it('wide captures with hundreds of fields', async () => {
    const h200 = parseQueryCsv(await read('query-csv-wide-header-590.48.01-h200.txt'));
    expect(h200[0]).toMatchObject({ driver_version: '590.48.01', name: 'NVIDIA H200' });
    const r610 = parseQueryCsv(await read('query-csv-wide-header-610.57.04-1gpu.txt'));
    expect(r610[0]).toMatchObject({ driver_version: '610.57.04', kmd_version: '610.57.04', name: 'NVIDIA GeForce RTX 2080 SUPER' });
  });
  it('-L output is not a report', async () => {
    expect(parseNvidiaSmiTable(await read('smi-L-590.48.01-h100-mig.txt'))).toBeUndefined();
  });
});

describe('failures', () => {
  it.each([
    ['smi-fail-command-not-found.txt', 'not-installed'],
    ['smi-fail-driver-comm.txt', 'driver-not-loaded'],
    ['smi-fail-nvml-mismatch.txt', 'version-mismatch'],
    ['smi-fail-nvml-mismatch-libversion-550.144.txt', 'version-mismatch'],
  ])('%s → %s', async (name, reason) => {
    const text = await read(name);
    expect(parseNvidiaSmiTable(text)).toBeUndefined();
    expect(classifyNvidiaSmiFailure(text).reason).toBe(reason);
  });
});

describe('the driver table', () => {
  it("matches NVIDIA's table, GA row of each CUDA version", async () => {
    const table = await read('cuda-driver-table.md');
    // "Update" rows come before the GA row of each version in the file: the last row is the GA one.
    const lastRows = new Map<string, string>();
    for (const line of table.split('\n')) {
      const match = /^\| CUDA (\d+\.\d+)[^|]*\| `>= ?([\d.]+)`/.exec(line);
      if (match && !/RC/.test(line)) lastRows.set(match[1]!, match[2]!);
    }
    for (const row of CUDA_MIN_DRIVER.filter((r) => r.verified)) expect(lastRows.get(row.cuda), row.cuda).toBe(row.driver);
    expect(CUDA_MIN_DRIVER.filter((r) => r.verified).length).toBe([...lastRows.keys()].filter((k) => k !== '13.3').length);
  });

  it('compares versions numerically', () => {
    expect(compareVersions('12.10', '12.4')).toBe(1);
    expect(compareVersions('570.124.06', '570.26')).toBe(1);
    expect(compareVersions('13.0', '13')).toBe(0);
    expect(minimumDriverFor('12.4')?.driver).toBe('550.54.14');
  });
});

describe('the CUDA rule', () => {
  const reportFor = async (name: string) => ({ ok: true as const, report: parseNvidiaSmiTable(await read(name))! });

  it('passes when the driver supports the version or newer', async () => {
    expect((await checkCudaRequirement('12.4', await reportFor('smi-550.144.03-cuda12.4-1gpu-a100.txt'))).ok).toBe(true);
    expect((await checkCudaRequirement('12.10', await reportFor('smi-580.82.09-cuda13.0-1gpu.txt'))).ok).toBe(true);
  });

  it('refuses an old driver and names the driver needed', async () => {
    const check = checkCudaRequirement('12.8', await reportFor('smi-550.144.03-cuda12.4-1gpu-a100.txt'));
    expect(check.ok).toBe(false);
    if (check.ok) return;
    expect(check.message).toContain('driver 550.144.03 supports CUDA 12.4 at most');
    expect(check.hint).toContain('570.26');
  });

  it('compares 12.10 above 12.9', async () => {
    const check = checkCudaRequirement('12.10', await reportFor('smi-576.88-cuda12.9-1gpu-windows.txt'));
    expect(check.ok).toBe(false);
  });

  it.each([
    ['not-installed', 'no NVIDIA driver was found'],
    ['driver-not-loaded', 'cannot talk to the driver'],
    ['version-mismatch', 'different versions'],
    ['failed', 'nvidia-smi failed'],
  ] as const)('refuses when nvidia-smi %s', (reason, text) => {
    const check = checkCudaRequirement('12.4', { ok: false, reason, detail: 'x' });
    expect(check.ok).toBe(false);
    if (!check.ok) expect(check.message).toContain(text);
  });

  it('probes the real command and classifies its failures', async () => {
    const missing: Exec = async () => {
      throw new ExecNotFound('nvidia-smi');
    };
    expect(await probeNvidia(missing)).toMatchObject({ ok: false, reason: 'not-installed' });
    const comm = await read('smi-fail-driver-comm.txt');
    expect(await probeNvidia(async () => ({ exitCode: 9, stdout: comm, stderr: '' }))).toMatchObject({ ok: false, reason: 'driver-not-loaded' });
    const table = await read('smi-595.80-cuda13.2-1gpu-l40s.txt');
    expect(await probeNvidia(async () => ({ exitCode: 0, stdout: table, stderr: '' }))).toMatchObject({
      ok: true,
      report: { driverVersion: '595.80', cudaVersion: '13.2' },
    });
    const version = await read('smi-version-610.57.04-kmd.txt');
    const r610: Exec = async (_file, args) =>
      args.includes('--version') ? { exitCode: 0, stdout: version, stderr: '' } : { exitCode: 0, stdout: 'a layout cycle does not know\n', stderr: '' };
    expect(await probeNvidia(r610)).toMatchObject({ ok: true, report: { driverVersion: '610.57.04', cudaVersion: '13.3' } });
  });
});
