import { ExecNotFound, type Exec } from '../util/exec.js';
import { compareVersions, cudaForDriver, minimumDriverFor, CUDA_MIN_DRIVER } from './cuda-drivers.js';

export interface GpuInfo {
  index: number;
  name: string;
}

/** What the host's NVIDIA driver says about itself. */
export interface NvidiaReport {
  driverVersion: string;
  /** The newest CUDA the driver supports; from the table when nvidia-smi says N/A. */
  cudaVersion: string | undefined;
  cudaSource: 'nvidia-smi' | 'driver-table' | 'unknown';
  gpus: GpuInfo[];
}

export type NvidiaProbe =
  | { ok: true; report: NvidiaReport }
  | { ok: false; reason: 'not-installed' | 'driver-not-loaded' | 'version-mismatch' | 'failed'; detail: string };

const GPU_ROW = /^\|\s+(\d+)\s+(.+?)\s+(On|Off|WDDM|TCC|MCDM)\s*\|\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d/;

/**
 * Parses the default `nvidia-smi` table, in every layout from R440 to R610
 * (`Driver Version:` became `KMD Version:`, `CUDA Version:` became `CUDA UMD Version:`).
 */
export function parseNvidiaSmiTable(text: string): NvidiaReport | undefined {
  const driver = /(?:Driver|KMD) Version:\s*([0-9]+(?:\.[0-9]+)+)/.exec(text)?.[1];
  if (!driver) return undefined;
  const cudaRaw = /CUDA (?:UMD )?Version:\s*([0-9]+\.[0-9]+|N\/A)/.exec(text)?.[1];
  const gpus: GpuInfo[] = [];
  for (const line of text.split('\n')) {
    const match = GPU_ROW.exec(line);
    if (match) gpus.push({ index: Number(match[1]), name: match[2]!.trim() });
  }
  return withCuda(driver, cudaRaw, gpus);
}

/** Parses `nvidia-smi --version` (classic and R610 "KMD version" forms). */
export function parseNvidiaSmiVersion(text: string): NvidiaReport | undefined {
  const driver = /^(?:DRIVER|KMD) version\s*:\s*([0-9]+(?:\.[0-9]+)+)\s*$/im.exec(text)?.[1];
  if (!driver) return undefined;
  const cudaRaw = /^CUDA (?:UMD )?version\s*:\s*([0-9]+\.[0-9]+)\s*$/im.exec(text)?.[1];
  return withCuda(driver, cudaRaw, []);
}

/** Parses `--query-gpu=... --format=csv[,noheader]` output into rows keyed by field name. */
export function parseQueryCsv(text: string, fields?: string[]): Array<Record<string, string>> {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length === 0) return [];
  const header =
    fields ??
    lines
      .shift()!
      .split(',')
      .map((f) => f.trim().replace(/\s*\[.*\]$/, ''));
  return lines.map((line) => {
    const cells = line.split(',').map((c) => c.trim());
    return Object.fromEntries(header.map((field, i) => [field, cells[i] ?? '']));
  });
}

function withCuda(driver: string, cudaRaw: string | undefined, gpus: GpuInfo[]): NvidiaReport {
  if (cudaRaw && cudaRaw !== 'N/A') return { driverVersion: driver, cudaVersion: cudaRaw, cudaSource: 'nvidia-smi', gpus };
  const fromTable = cudaForDriver(driver);
  return { driverVersion: driver, cudaVersion: fromTable, cudaSource: fromTable ? 'driver-table' : 'unknown', gpus };
}

/** Names what went wrong when nvidia-smi did not print a report. */
export function classifyNvidiaSmiFailure(output: string): { reason: 'not-installed' | 'driver-not-loaded' | 'version-mismatch' | 'failed'; detail: string } {
  const text = output.trim();
  if (/command not found|not recognized as an internal|No such file/i.test(text)) return { reason: 'not-installed', detail: text };
  if (/couldn't communicate with the NVIDIA driver|No devices were found|driver is not loaded/i.test(text))
    return { reason: 'driver-not-loaded', detail: text };
  if (/Driver\/library version mismatch/i.test(text)) return { reason: 'version-mismatch', detail: text };
  return { reason: 'failed', detail: text.split('\n')[0] ?? '' };
}

/** Reads the host's driver with the real `nvidia-smi`. */
export async function probeNvidia(exec: Exec): Promise<NvidiaProbe> {
  let result;
  try {
    result = await exec('nvidia-smi', [], { timeoutMs: 20_000 });
  } catch (error) {
    if (error instanceof ExecNotFound) return { ok: false, reason: 'not-installed', detail: 'nvidia-smi was not found on PATH' };
    throw error;
  }
  const output = `${result.stdout}\n${result.stderr}`;
  if (result.exitCode === 0) {
    const report = parseNvidiaSmiTable(result.stdout);
    if (report) return { ok: true, report };
    // An unknown layout: `--version` names the driver in a stable form.
    const version = await exec('nvidia-smi', ['--version'], { timeoutMs: 20_000 });
    const fromVersion = parseNvidiaSmiVersion(version.stdout);
    if (fromVersion) return { ok: true, report: fromVersion };
    return { ok: false, reason: 'failed', detail: 'could not read the driver version from nvidia-smi output' };
  }
  return { ok: false, ...classifyNvidiaSmiFailure(output) };
}

export type CudaCheck = { ok: true; report: NvidiaReport } | { ok: false; message: string; hint: string };

/** The CUDA rule: the host driver must support CUDA `required` (MAJOR.MINOR) or newer. */
export function checkCudaRequirement(required: string, probe: NvidiaProbe): CudaCheck {
  if (!probe.ok) {
    switch (probe.reason) {
      case 'not-installed':
        return {
          ok: false,
          message: `[job].cuda = "${required}" needs an NVIDIA GPU, but no NVIDIA driver was found (nvidia-smi is not installed)`,
          hint: `install an NVIDIA driver ${driverNeeded(required)}, or remove [job].cuda to run on CPU`,
        };
      case 'driver-not-loaded':
        return {
          ok: false,
          message: `[job].cuda = "${required}" needs an NVIDIA GPU, but nvidia-smi cannot talk to the driver (${probe.detail.split('\n')[0]})`,
          hint: 'check that the GPU is visible (`lspci | grep -i nvidia`) and the kernel module is loaded (`sudo modprobe nvidia`), or reboot after a driver install',
        };
      case 'version-mismatch':
        return {
          ok: false,
          message: `nvidia-smi failed: the NVIDIA kernel driver and user libraries have different versions (${probe.detail.replace(/\n/g, '; ')})`,
          hint: 'reboot so the newly installed driver is loaded (or reload the nvidia kernel modules)',
        };
      default:
        return { ok: false, message: `nvidia-smi failed: ${probe.detail}`, hint: 'run `nvidia-smi` yourself to see the problem, then `cycle doctor`' };
    }
  }
  const { report } = probe;
  if (report.cudaVersion === undefined) {
    return {
      ok: false,
      message: `cannot tell which CUDA version driver ${report.driverVersion} supports (nvidia-smi shows no CUDA version)`,
      hint: 'run nvidia-smi on the host (not inside a driver container) and check its "CUDA Version"',
    };
  }
  if (compareVersions(report.cudaVersion, required) < 0) {
    return {
      ok: false,
      message: `[job].cuda = "${required}" needs a driver that supports CUDA ${required}, but driver ${report.driverVersion} supports CUDA ${report.cudaVersion} at most`,
      hint: `upgrade the NVIDIA driver ${driverNeeded(required)}, or lower [job].cuda to "${report.cudaVersion}" if the job works with it`,
    };
  }
  return { ok: true, report };
}

/** "to 550.54.14 or newer (NVIDIA's minimum for CUDA 12.4)" */
export function driverNeeded(cuda: string): string {
  const row = minimumDriverFor(cuda);
  if (row) return `to ${row.driver} or newer (NVIDIA's minimum Linux driver for CUDA ${cuda}${row.verified ? '' : ', from secondary sources'})`;
  const newer = [...CUDA_MIN_DRIVER].reverse().find((r) => compareVersions(r.cuda, cuda) > 0);
  if (newer) return `to one whose nvidia-smi reports CUDA ${cuda} or newer (NVIDIA lists no CUDA ${cuda} toolkit; CUDA ${newer.cuda} needs ${newer.driver})`;
  return `to one whose nvidia-smi reports CUDA ${cuda} or newer (newer than the table cycle knows; see NVIDIA's CUDA release notes)`;
}

/**
 * How Docker can give GPUs to containers here, in words, or undefined when it cannot: the
 * nvidia runtime, CDI specs (Docker 25+), or the NVIDIA container toolkit's hook, which makes
 * `--gpus` work without a registered runtime.
 */
export async function dockerGpuSupport(info: { runtimes: string[]; cdiSpecDirs: string[] }, exec: Exec): Promise<string | undefined> {
  if (info.runtimes.includes('nvidia')) return 'the nvidia container runtime is registered';
  if (info.cdiSpecDirs.length > 0) return `CDI specs in ${info.cdiSpecDirs.join(', ')}`;
  for (const program of ['nvidia-container-runtime-hook', 'nvidia-container-toolkit']) {
    try {
      const result = await exec(program, ['--help'], { timeoutMs: 5000 });
      if (result.exitCode === 0 || result.stdout || result.stderr) return `the NVIDIA container toolkit (${program})`;
    } catch {
      // not installed
    }
  }
  return undefined;
}

export const NO_CONTAINER_RUNTIME_HINT =
  'install the NVIDIA Container Toolkit (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), run `sudo nvidia-ctk runtime configure --runtime=docker`, and restart Docker';
